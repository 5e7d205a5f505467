#!/usr/bin/env python3
"""The latency a request sees when its model was evicted and is loaded again
on demand (`--eviction lru`), against the same request on a resident model.

Starts `anemone serve` on a repository of two fixture models, a small one
(small_convnet, 7 KB) and a larger one (resnet18, 47 MB), with a memory budget
that holds only one of them, then asks them in turn: every request is cold
(an on-demand load, which evicts the other model, plus the inference), and
is followed by warm requests. Every answer is checked against ONNX Runtime's
reference outputs (fixtures/generated, from its Python API).

    .venv/bin/python scripts/eviction_latency.py [--bin target/debug/anemone] [--rounds 5] [--warm 5]

It also prints the server's resident memory (VmRSS) after each round, to see
whether on-demand churn (a 47 MB model loaded and evicted every round) grows it.
"""
import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures/generated"
MODELS = {"small": "small_convnet", "large": "resnet18"}


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as r:
        return json.loads(r.read())


def run_of(case):
    c = json.loads((FIXTURES / case / "case.json").read_text())
    run = c["runs"][0]
    inputs = [
        (i["name"], np.load(FIXTURES / case / i["file"]).astype(np.float32)) for i in run["inputs"]
    ]
    outputs = [(o["name"], np.load(FIXTURES / case / o["file"])) for o in run["outputs"]]
    return inputs, outputs, c["rtol"], c["atol"]


def infer(base, model, case):
    inputs, outputs, rtol, atol = run_of(case)
    body = {
        "inputs": [
            {"name": n, "shape": list(a.shape), "datatype": "FP32", "data": a.ravel().tolist()}
            for n, a in inputs
        ]
    }
    start = time.perf_counter()
    answer = post(f"{base}/v2/models/{model}/infer", body)
    elapsed = time.perf_counter() - start
    for name, want in outputs:
        got = next(o for o in answer["outputs"] if o["name"] == name)
        np.testing.assert_allclose(
            np.array(got["data"], dtype=np.float32).reshape(want.shape), want, rtol=rtol, atol=atol
        )
    return elapsed


def rss_mib(pid):
    """The process's resident memory (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=str(ROOT / "target/debug/anemone"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warm", type=int, default=5)
    args = p.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="anemone-evict-"))
    try:
        for model, case in MODELS.items():
            (repo / model / "1").mkdir(parents=True)
            shutil.copy(FIXTURES / case / "model.onnx", repo / model / "1" / "model.onnx")
        # What each is charged (`anemone models`): a budget that holds the
        # larger one, never both.
        listed = subprocess.run(
            [args.bin, "models", "--model-repository", str(repo), "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        charge = {r["name"]: r["memory_bytes"] for r in json.loads(listed)}
        budget = charge["large"] + charge["small"] // 2
        server = subprocess.Popen(
            [args.bin, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
             "--memory-budget", str(budget), "--eviction", "lru"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            line = server.stdout.readline()
            port = re.search(r"HTTP listening on [^:]+:(\d+)", line).group(1)
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=5) as r:
                        if r.status == 200:
                            break
                except Exception:
                    pass
                time.sleep(0.2)
            cold = {m: [] for m in MODELS}
            warm = {m: [] for m in MODELS}
            rss = []
            for _ in range(args.rounds):
                for model, case in MODELS.items():
                    cold[model].append(infer(base, model, case))
                    for _ in range(args.warm):
                        warm[model].append(infer(base, model, case))
                rss.append(rss_mib(server.pid))
            with urllib.request.urlopen(f"{base}/metrics") as r:
                metrics = r.read().decode()
            loads = {
                m: re.search(rf'anemone_model_on_demand_loads_total{{model="{m}"}} (\d+)', metrics)
                for m in MODELS
            }
            print(f"charges {charge}; budget {budget} bytes; {args.rounds} cold and {args.rounds * args.warm} warm requests per model")
            print("| model | file | cold request (on-demand load + inference), median | min | max | warm request, median | on-demand loads |")
            print("|---|---|---|---|---|---|---|")
            for model, case in MODELS.items():
                size = (FIXTURES / case / "model.onnx").stat().st_size
                ms = lambda xs: f"{statistics.median(xs) * 1e3:.1f} ms"
                print(
                    f"| {model} ({case}) | {size / 1e6:.2f} MB | {ms(cold[model])} | {min(cold[model]) * 1e3:.1f} ms "
                    f"| {max(cold[model]) * 1e3:.1f} ms | {ms(warm[model])} | {loads[model].group(1) if loads[model] else 0} |"
                )
            print(f"server RSS after each round (both models loaded again once): "
                  f"{', '.join(f'{r:.0f}' for r in rss)} MiB")
        finally:
            server.terminate()
            server.wait(timeout=60)
    finally:
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
