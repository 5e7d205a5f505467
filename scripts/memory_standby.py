#!/usr/bin/env python3
"""RSS of a server holding the five real models (PP-OCR det/rec/cls, magika,
silero VAD), per backend setting: the default order (both CPU engines loaded
and timed, the slower one dropped) and each engine alone (`--strict`).

Starts `anemone serve` (model control none) on a repository of copies of the
fixtures, waits until every model is ready, and reads VmRSS; also reads an
empty server's.

    .venv/bin/python scripts/memory_standby.py [--bin target/debug/anemone]
"""
import argparse
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


def measure(binary, extra, cases):
    repo = Path(tempfile.mkdtemp(prefix="anemone-standby-"))
    for case in cases:
        (repo / case / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / case / "model.onnx", repo / case / "1" / "model.onnx")
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
            time.sleep(0.5)
        time.sleep(1.0)
        return rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(repo, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=str(ROOT / "target/debug/anemone"))
    args = p.parse_args()
    files = sum((FIXTURES / c / "model.onnx").stat().st_size for c in CASES) / 2**20
    empty = measure(args.bin, [], [])
    print(f"five models: {files:.1f} MiB of ONNX files; empty server {empty:.0f} MiB")
    print("| backends | RSS, all five ready | above the empty server | × model bytes |")
    print("|---|---|---|---|")
    for label, extra in [
        ("default order (both CPU engines timed)", []),
        ("onnxruntime --strict", ["--backends", "onnxruntime", "--strict"]),
        ("tract-cpu --strict", ["--backends", "tract-cpu", "--strict"]),
    ]:
        rss = measure(args.bin, extra, CASES)
        print(f"| {label} | {rss:.0f} MiB | {rss - empty:.0f} MiB | {(rss - empty) / files:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
