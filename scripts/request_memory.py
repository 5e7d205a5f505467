#!/usr/bin/env python3
"""Peak memory of `anemone serve` under big JSON inference bodies, and how
fast /v2/health/live answers meanwhile.

Starts the server on the example `add` model (two FP32 inputs of shape [batch, 4]), sends
`--concurrent` JSON bodies of about `--mib` MiB each at once, probes
/v2/health/live every 20 ms while they run, and prints the server's peak RSS
(VmHWM) before and after, and the health latencies. Linux only (reads /proc).

    scripts/request_memory.py --anemone target/release/anemone --mib 60 --concurrent 4 \
        -- --max-concurrency 1
"""

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def body(mib):
    # "0.5," is 4 bytes a value; two inputs share the size.
    rows = mib * (1 << 20) // 32
    data = ",".join(["0.5"] * (rows * 4))
    return (
        '{"inputs":[{"name":"x","shape":[%d,4],"datatype":"FP32","data":[%s]},'
        '{"name":"y","shape":[%d,4],"datatype":"FP32","data":[%s]}]}' % (rows, data, rows, data)
    ).encode()


def post(port, payload, results, i):
    start = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v2/models/add/infer", payload, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    results[i] = (r.status, time.monotonic() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--anemone", default=os.path.join(ROOT, "target/release/anemone"))
    p.add_argument("--mib", type=int, default=60)
    p.add_argument("--concurrent", type=int, default=4)
    p.add_argument("serve_args", nargs="*")
    a = p.parse_args()

    repo = tempfile.mkdtemp(prefix="anemone-reqmem-")
    shutil.copytree(os.path.join(ROOT, "examples/models/add"), os.path.join(repo, "add"))
    server = subprocess.Popen(
        [a.anemone, "serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0"]
        + a.serve_args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = None
        for line in server.stdout:
            if line.startswith("HTTP listening on"):
                port = int(line.rsplit(":", 1)[1])
                break
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        payload = body(a.mib)
        before = vm(server.pid, "VmHWM")
        results = [None] * a.concurrent
        threads = [
            threading.Thread(target=post, args=(port, payload, results, i))
            for i in range(a.concurrent)
        ]
        for t in threads:
            t.start()
        health = []
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while any(t.is_alive() for t in threads):
            start = time.monotonic()
            probe.request("GET", "/v2/health/live")
            probe.getresponse().read()
            health.append(time.monotonic() - start)
            time.sleep(0.02)
        for t in threads:
            t.join()
        peak = vm(server.pid, "VmHWM")
        health.sort()
        print(f"body: {len(payload) / (1 << 20):.1f} MiB x {a.concurrent} at once; serve args: {a.serve_args}")
        print(f"answers: {[r[0] for r in results]}, slowest {max(r[1] for r in results):.2f} s")
        print(f"peak RSS: {before / (1 << 20):.0f} MiB before, {peak / (1 << 20):.0f} MiB after")
        print(
            f"/v2/health/live during: {len(health)} probes, median {health[len(health) // 2] * 1000:.1f} ms, "
            f"max {health[-1] * 1000:.1f} ms"
        )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
