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
    args = p.parse_args()
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
