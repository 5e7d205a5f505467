#!/usr/bin/env python3
"""Checks anemone's GPU metrics against nvidia-smi on a machine with NVIDIA GPUs.

    python3 scripts/gpu_metrics_check.py ANEMONE_BIN [MODEL_REPOSITORY]

Starts `anemone serve --triton-metrics true --metrics-interval-ms 200` and
compares what /metrics says with what `nvidia-smi` says, and with what a
load on the GPU must change (PyTorch makes the load):

- one sample per GPU in every family, labelled with nvidia-smi's UUIDs
  (anemone's `gpu`/`uuid` labels, Triton's `gpu_uuid`), with the same value
  under both names;
- memory total equal to nvidia-smi's (MiB), power limit equal to its
  power.limit, power draw within (0, 1.2 x limit];
- 8 GiB allocated by another process show in used memory;
- a matrix-product loop shows in utilization (> 0.5) and in the energy
  counter (it grows);
- `--allow-gpu-metrics false` and `CUDA_VISIBLE_DEVICES=` leave the GPU
  families out; `CUDA_VISIBLE_DEVICES=0` leaves GPU 0 only.

Exits 1 on the first failed check, 0 when every check passed. Skips (exit 0,
saying so) where nvidia-smi is missing.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = 0


def check(ok, what):
    global CHECKS
    CHECKS += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, repo, extra=(), env=None):
    port, metrics = free_port(), free_port()
    args = [binary, "serve", "--model-repository", repo, "--backends", "tract-cpu",
            "--http-port", str(port), "--grpc-port", "0", "--metrics-port", str(metrics),
            "--triton-metrics", "true", "--metrics-interval-ms", "200", *extra]
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{metrics}/metrics"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"anemone did not serve {url} in 30 s")


def scrape(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r'^(\w+)\{(.*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return text, samples


def by_uuid(samples, name, label):
    return {labels[label]: value for labels, value in samples.get(name, [])}


def smi():
    out = subprocess.check_output(
        ["nvidia-smi", "--query-gpu=index,uuid,memory.total,power.limit",
         "--format=csv,noheader,nounits"], text=True)
    rows = []
    for line in out.strip().splitlines():
        index, uuid, total, limit = [f.strip() for f in line.split(",")]
        rows.append({"index": int(index), "uuid": uuid, "total_mib": float(total),
                     "limit": float(limit) if limit not in ("[N/A]", "N/A") else None})
    return rows


def torch_load(code):
    """Runs `code` on the GPU in another process; returns once it printed
    `ready` (after importing torch and starting its work), so the next
    scrape sees the load."""
    script = f"""
import time, torch
t = time.time()
{code}
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        sys.exit(f"the load on the GPU did not start: {line!r}")
    time.sleep(1.0)  # five metrics intervals
    return proc


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    repo = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "examples", "models")
    if not shutil.which("nvidia-smi"):
        print("SKIPPED: no nvidia-smi on this machine (no NVIDIA GPU to compare with)")
        return
    gpus = smi()
    proc, url = start(binary, repo)
    try:
        time.sleep(0.6)
        text, s = scrape(url)
        pairs = [("anemone_gpu_utilization_ratio", "nv_gpu_utilization"),
                 ("anemone_gpu_memory_total_bytes", "nv_gpu_memory_total_bytes"),
                 ("anemone_gpu_memory_used_bytes", "nv_gpu_memory_used_bytes"),
                 ("anemone_gpu_power_watts", "nv_gpu_power_usage"),
                 ("anemone_gpu_power_limit_watts", "nv_gpu_power_limit"),
                 ("anemone_gpu_energy_joules_total", "nv_energy_consumption")]
        want = sorted(g["uuid"] for g in gpus)
        for ours, triton in pairs:
            a, t = by_uuid(s, ours, "uuid"), by_uuid(s, triton, "gpu_uuid")
            check(sorted(t) == want, f"{triton}: one sample per GPU, nvidia-smi's UUIDs {want}")
            check(a == t, f"{ours} equals {triton}")
        ordinals = sorted(int(l["gpu"]) for l, _ in s["anemone_gpu_utilization_ratio"])
        check(ordinals == list(range(len(gpus))), f"gpu labels are the CUDA ordinals {ordinals}")
        total = by_uuid(s, "nv_gpu_memory_total_bytes", "gpu_uuid")
        limit = by_uuid(s, "nv_gpu_power_limit", "gpu_uuid")
        power = by_uuid(s, "nv_gpu_power_usage", "gpu_uuid")
        for g in gpus:
            u = g["uuid"]
            check(abs(total[u] / 2**20 - g["total_mib"]) < 1.0,
                  f"{u}: memory total {total[u] / 2**20:.0f} MiB, nvidia-smi {g['total_mib']:.0f} MiB")
            if g["limit"] is not None:
                check(abs(limit[u] - g["limit"]) < 0.5,
                      f"{u}: power limit {limit[u]} W, nvidia-smi {g['limit']} W")
                check(0 < power[u] <= 1.2 * g["limit"], f"{u}: power draw {power[u]} W")
        first = gpus[0]["uuid"]

        # 8 GiB held by another process show in used memory.
        used_before = by_uuid(s, "nv_gpu_memory_used_bytes", "gpu_uuid")[first]
        holder = torch_load("x = torch.empty(8 << 30, dtype=torch.uint8, device='cuda:0')\n"
                            "torch.cuda.synchronize()\nprint('ready', flush=True)\ntime.sleep(3)")
        _, s = scrape(url)
        used = by_uuid(s, "nv_gpu_memory_used_bytes", "gpu_uuid")[first]
        holder.wait()
        check(used - used_before >= 7.5 * 2**30,
              f"8 GiB held elsewhere: used memory {used_before / 2**30:.2f} -> {used / 2**30:.2f} GiB")

        # A matrix-product loop: utilization and energy.
        energy_before = by_uuid(s, "nv_energy_consumption", "gpu_uuid")[first]
        busy = torch_load("a = torch.randn(8192, 8192, device='cuda:0')\n"
                          "b = a @ a\ntorch.cuda.synchronize()\nprint('ready', flush=True)\n"
                          "t = time.time()\nwhile time.time() - t < 4:\n    b = a @ a\n"
                          "torch.cuda.synchronize()")
        _, s = scrape(url)
        busy.wait()
        util = by_uuid(s, "nv_gpu_utilization", "gpu_uuid")[first]
        energy = by_uuid(s, "nv_energy_consumption", "gpu_uuid")[first]
        draw = by_uuid(s, "nv_gpu_power_usage", "gpu_uuid")[first]
        check(util > 0.5, f"matrix products running: utilization {util}")
        check(energy > energy_before, f"energy {energy_before:.1f} -> {energy:.1f} J (draw {draw} W)")
    finally:
        proc.terminate()
        proc.wait()

    for extra, env, what, expect in [
        (["--allow-gpu-metrics", "false"], None, "--allow-gpu-metrics false", []),
        ([], {"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES=''", []),
        ([], {"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_VISIBLE_DEVICES=0", ["0"]),
    ]:
        proc, url = start(binary, repo, extra, env)
        try:
            time.sleep(0.5)
            text, s = scrape(url)
            got = sorted(l["gpu"] for l, _ in s.get("anemone_gpu_utilization_ratio", []))
            check(got == expect and ("nv_gpu_" in text) == bool(expect),
                  f"{what}: GPU samples {got}")
            check("nv_cpu_utilization" in text or "nv_cpu_memory_total_bytes" in text,
                  f"{what}: CPU families still there")
        finally:
            proc.terminate()
            proc.wait()
    print(f"gpu_metrics_check: all {CHECKS} checks passed")


if __name__ == "__main__":
    main()
