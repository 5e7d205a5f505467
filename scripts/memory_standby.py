#!/usr/bin/env python3
"""RSS of a server holding the five real models (PP-OCR det/rec/cls, magika,
silero VAD), per backend setting: the default order (both CPU engines timed,
in a child process by default, or in the server with --compare-in-child
false), with one allocator arena (the default) or glibc's default
(`--malloc-arenas 0`), and each engine alone (`--strict`); also each
engine's fixed cost (one tiny model, `identity`, on it).

Starts `anemone serve` (model control none) on a repository of copies of the
fixtures, waits until every model is ready, and reads VmRSS (and the time
from start to all ready); also reads an empty server's. Each configuration
runs --runs times (default 2) and the range is printed.

    .venv/bin/python scripts/memory_standby.py [--bin target/debug/anemone] [--runs 2]
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
CASES = ["ocr_det", "ocr_rec", "ocr_cls", "magika", "silero_vad"]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready(base, model):
    try:
        with urllib.request.urlopen(f"{base}/v2/models/{model}/ready", timeout=5) as r:
            return r.status == 200
    except Exception:
        return False


def backend(base, model):
    try:
        with urllib.request.urlopen(f"{base}/v2/models/{model}", timeout=5) as r:
            return json.load(r).get("platform", "?")
    except Exception:
        return "?"


def measure(binary, extra, cases):
    """(RSS in MiB once every case is ready, seconds from start to ready, backends)."""
    repo = Path(tempfile.mkdtemp(prefix="anemone-standby-"))
    for case in cases:
        (repo / case / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / case / "model.onnx", repo / case / "1" / "model.onnx")
    started = time.time()
    server = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0"]
        + extra,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = re.search(r":(\d+)", server.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 600
        while not all(ready(base, c) for c in cases):
            if time.time() > deadline:
                raise SystemExit("models never became ready")
            time.sleep(0.2)
        took = time.time() - started
        time.sleep(1.0)
        return rss_mib(server.pid), took, [backend(base, c) for c in cases]
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


# What each model is sent with --retime: real-looking shapes (OCR images,
# 2048 bytes for magika, a 512-sample 16 kHz chunk for silero VAD).
REQUESTS = {
    "ocr_det": [("x", "FP32", [1, 3, 320, 320])],
    "ocr_rec": [("x", "FP32", [1, 3, 48, 320])],
    "ocr_cls": [("x", "FP32", [1, 3, 48, 192])],
    "magika": [("bytes", "INT32", [1, 2048])],
    "silero_vad": [("input", "FP32", [1, 512]), ("state", "FP32", [2, 1, 128]), ("sr", "INT64", [])],
}


def infer(base, model):
    import random
    inputs = []
    for name, dtype, shape in REQUESTS[model]:
        n = 1
        for d in shape:
            n *= d
        if name == "sr":
            data = [16000]
        elif dtype == "INT32":
            data = [random.randrange(256) for _ in range(n)]
        else:
            data = [random.uniform(-1, 1) for _ in range(n)]
        inputs.append({"name": name, "datatype": dtype, "shape": shape, "data": data})
    body = json.dumps({"inputs": inputs}).encode()
    req = urllib.request.Request(f"{base}/v2/models/{model}/infer", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=600).read()


def retimed(binary, extra, cases, after=4, wait=True):
    """(RSS once every case was re-timed on `after` real requests, the moves);
    `wait=False`: without waiting for re-timing (one engine: nothing to re-time)."""
    repo = Path(tempfile.mkdtemp(prefix="anemone-retime-"))
    for case in cases:
        (repo / case / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / case / "model.onnx", repo / case / "1" / "model.onnx")
    server = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
         "--retime-after-requests", str(after)] + extra,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = re.search(r":(\d+)", server.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 600
        while not all(ready(base, c) for c in cases):
            if time.time() > deadline:
                raise SystemExit("models never became ready")
            time.sleep(0.2)
        for case in cases:
            for _ in range(after):
                infer(base, case)
        while True:
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
                text = r.read().decode()
            done = {m for m in cases if f'anemone_model_retime_seconds{{model="{m}"' in text}
            if not wait or done == set(cases) or time.time() > deadline:
                break
            time.sleep(0.5)
        time.sleep(3.5)  # past the idle trim: one idle look of the monitor (1 s) and the next
        moves = [l for l in text.splitlines() if l.startswith("anemone_model_moves_total{")]
        return rss_mib(server.pid), moves
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


def load_times(binary, extra, cases):
    """Seconds each case takes to load through the API, one after another
    (explicit model control), so loads do not overlap."""
    repo = Path(tempfile.mkdtemp(prefix="anemone-loadtime-"))
    for case in cases:
        (repo / case / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / case / "model.onnx", repo / case / "1" / "model.onnx")
    server = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
         "--model-control-mode", "explicit"] + extra,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = re.search(r":(\d+)", server.stdout.readline()).group(1)
        base = f"http://127.0.0.1:{port}"
        out = []
        for case in cases:
            t = time.time()
            req = urllib.request.Request(f"{base}/v2/repository/models/{case}/load", data=b"{}",
                                         method="POST", headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=600).read()
            out.append(time.time() - t)
        return out
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


def span(values, fmt="{:.0f}"):
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=str(ROOT / "target/debug/anemone"))
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--load-times", action="store_true",
                   help="only time each model's load, engines compared in a child and in the server")
    p.add_argument("--retime", action="store_true",
                   help="only the RSS once every model was re-timed on 4 real requests, in a child and in the server")
    args = p.parse_args()
    if args.retime:
        files = sum((FIXTURES / c / "model.onnx").stat().st_size for c in CASES) / 2**20
        empties = [measure(args.bin, [], [])[0] for _ in range(args.runs)]
        empty = sum(empties) / len(empties)
        print(f"five models: {files:.1f} MiB; empty server {span(empties)} MiB")
        print("| re-timing | RSS after re-timing | above the empty server | × model bytes | moves |")
        print("|---|---|---|---|---|")
        for label, extra in [("in a child (default)", []),
                             ("in the server (`--compare-in-child false`)", ["--compare-in-child", "false"]),
                             ("none: onnxruntime --strict", ["--backends", "onnxruntime", "--strict"]),
                             ("none: tract-cpu --strict", ["--backends", "tract-cpu", "--strict"])]:
            wait = "--strict" not in extra
            runs = [retimed(args.bin, extra, CASES, wait=wait) for _ in range(args.runs)]
            rss = [r[0] for r in runs]
            print(f"| {label} | {span(rss)} MiB | {span([r - empty for r in rss])} MiB | "
                  f"{span([(r - empty) / files for r in rss], '{:.1f}')} | {'; '.join(runs[-1][1])} |")
        return
    if args.load_times:
        print("| model | compared in a child | compared in the server | extra |")
        print("|---|---|---|---|")
        child = [load_times(args.bin, [], CASES) for _ in range(args.runs)]
        here = [load_times(args.bin, ["--compare-in-child", "false"], CASES) for _ in range(args.runs)]
        for i, case in enumerate(CASES):
            c = [r[i] for r in child]
            h = [r[i] for r in here]
            print(f"| {case} | {span(c, '{:.2f}')} s | {span(h, '{:.2f}')} s | "
                  f"{span([a - b for a, b in zip(c, h)], '{:+.2f}')} s |")
        return
    files = sum((FIXTURES / c / "model.onnx").stat().st_size for c in CASES) / 2**20
    empties = [measure(args.bin, [], [])[0] for _ in range(args.runs)]
    empty = sum(empties) / len(empties)
    print(f"five models: {files:.1f} MiB of ONNX files; empty server {span(empties)} MiB")
    print("| backends | RSS, all five ready | above the empty server | × model bytes | start to ready |")
    print("|---|---|---|---|---|")
    for label, extra in [
        ("default order: engines compared in a child, one allocator arena (the defaults)", []),
        ("default order, `--malloc-arenas 0` (glibc's 8 per core)", ["--malloc-arenas", "0"]),
        ("default order, `--compare-in-child false`", ["--compare-in-child", "false"]),
        ("default order, `--compare-in-child false --malloc-arenas 0` (before this change)",
         ["--compare-in-child", "false", "--malloc-arenas", "0"]),
        ("onnxruntime --strict", ["--backends", "onnxruntime", "--strict"]),
        ("tract-cpu --strict", ["--backends", "tract-cpu", "--strict"]),
        ("onnxruntime --strict --malloc-arenas 0", ["--backends", "onnxruntime", "--strict", "--malloc-arenas", "0"]),
        ("tract-cpu --strict --malloc-arenas 0", ["--backends", "tract-cpu", "--strict", "--malloc-arenas", "0"]),
    ]:
        runs = [measure(args.bin, extra, CASES) for _ in range(args.runs)]
        rss = [r[0] for r in runs]
        above = [r - empty for r in rss]
        print(f"| {label} | {span(rss)} MiB | {span(above)} MiB | "
              f"{span([a / files for a in above], '{:.1f}')} | {span([r[1] for r in runs], '{:.1f}')} s |")
        print(f"|   served on: {', '.join(f'{c} {b}' for c, b in zip(CASES, runs[-1][2]))} |||||", file=sys.stderr)
    print()
    print("fixed cost of each engine (one tiny model, identity, on it), above the empty server:")
    for label, extra in [
        ("onnxruntime", ["--backends", "onnxruntime", "--strict"]),
        ("tract-cpu", ["--backends", "tract-cpu", "--strict"]),
        ("default order", []),
    ]:
        rss = [measure(args.bin, extra, ["identity"])[0] for _ in range(args.runs)]
        print(f"| {label} | {span([r - empty for r in rss])} MiB |")


if __name__ == "__main__":
    sys.exit(main())
