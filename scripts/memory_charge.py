#!/usr/bin/env python3
"""What a model is charged against --memory-budget, next to its file size and
the server's real RSS increase when it loads, per engine.

Starts `anemone serve --model-control-mode explicit` on a repository of
fixture models (tens of MB), pinned to one engine, loads them one at a time
through the API, and reads the server's VmRSS before and after each load
(then once more after unloading them all).

    .venv/bin/python scripts/memory_charge.py [--bin target/debug/anemone]

With --cycles N (and --model, default resnet18): loads and unloads one model
N times through the API on each engine, and prints the RSS after every tenth
unload (whether memory stays flat over load/unload cycles).
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures/generated"
CASES = ["ocr_rec", "batching_mlp", "resnet18"]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(url):
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=300) as r:
        return r.read()


def measure(binary, engine):
    repo = Path(tempfile.mkdtemp(prefix="anemone-charge-"))
    for case in CASES:
        (repo / case / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / case / "model.onnx", repo / case / "1" / "model.onnx")
    server = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
         "--model-control-mode", "explicit", "--backends", engine, "--strict"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = re.search(r":(\d+)", server.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{port}"
        time.sleep(1.0)
        rows = []
        empty = rss_mib(server.pid)
        for case in CASES:
            before = rss_mib(server.pid)
            post(f"{base}/v2/repository/models/{case}/load")
            time.sleep(0.5)
            after = rss_mib(server.pid)
            with urllib.request.urlopen(f"{base}/metrics") as r:
                metrics = r.read().decode()
            charge = re.search(rf'anemone_model_memory_bytes{{model="{case}",[^}}]*}} (\d+)', metrics)
            size = (FIXTURES / case / "model.onnx").stat().st_size
            rows.append((case, size, int(charge.group(1)), after - before))
        loaded = rss_mib(server.pid)
        for case in CASES:
            post(f"{base}/v2/repository/models/{case}/unload")
        time.sleep(1.0)
        unloaded = rss_mib(server.pid)
        return rows, empty, loaded, unloaded
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


def cycles(binary, engine, model, n):
    """RSS (MiB) of an empty server, then after every tenth of `n` load/unload cycles."""
    repo = Path(tempfile.mkdtemp(prefix="anemone-cycles-"))
    (repo / model / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / model / "model.onnx", repo / model / "1" / "model.onnx")
    server = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
         "--model-control-mode", "explicit", "--backends", engine, "--strict"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = re.search(r":(\d+)", server.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{port}"
        time.sleep(1.0)
        seen = [rss_mib(server.pid)]
        for i in range(1, n + 1):
            post(f"{base}/v2/repository/models/{model}/load")
            post(f"{base}/v2/repository/models/{model}/unload")
            if i % max(1, n // 10) == 0:
                time.sleep(0.2)
                seen.append(rss_mib(server.pid))
        return seen
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=str(ROOT / "target/debug/anemone"))
    p.add_argument("--cycles", type=int, default=0,
                   help="load and unload one model this many times instead, RSS every tenth")
    p.add_argument("--model", default="resnet18", help="the model of --cycles")
    args = p.parse_args()
    if args.cycles:
        for engine in ["onnxruntime", "tract-cpu"]:
            seen = cycles(args.bin, engine, args.model, args.cycles)
            print(f"{engine}, {args.model}: empty {seen[0]:.0f} MiB; after every {args.cycles // 10} cycles: "
                  + ", ".join(f"{v:.0f}" for v in seen[1:]) + " MiB")
        return
    print("| engine | model | file | charged | RSS increase on load |")
    print("|---|---|---|---|---|")
    notes = []
    for engine in ["onnxruntime", "tract-cpu"]:
        rows, empty, loaded, unloaded = measure(args.bin, engine)
        for case, size, charge, delta in rows:
            print(f"| {engine} | {case} | {size / 2**20:.1f} MiB | {charge / 2**20:.1f} MiB | {delta:.1f} MiB |")
        notes.append(f"{engine}: empty server {empty:.0f} MiB, all three loaded {loaded:.0f} MiB, "
                     f"after unloading them {unloaded:.0f} MiB")
    print()
    for n in notes:
        print(n)


if __name__ == "__main__":
    sys.exit(main())
