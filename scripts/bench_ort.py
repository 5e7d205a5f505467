"""ONNX Runtime's Python API on the same models (ResNet-18-shaped, transformer block) and inputs as
`cargo bench -p anemone-runtime --bench engines`, with the same thread count.

Usage: .venv/bin/python scripts/bench_ort.py [--threads N] [--seconds S]
Prints the median and mean latency per batch size, in milliseconds.
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


def bench(session: ort.InferenceSession, x: np.ndarray, seconds: float) -> list[float]:
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 10:
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    print(f"onnxruntime {ort.__version__}, {args.threads} intra-op threads")
    for model, label, file in [
        ("resnet18", "batch 1", "run0_in_0.npy"),
        ("resnet18", "batch 8", "bench_b8.npy"),
        ("transformer_block", "batch 1", "run0_in_0.npy"),
    ]:
        case = ROOT / "fixtures/generated" / model
        session = ort.InferenceSession(str(case / "model.onnx"), options, providers=["CPUExecutionProvider"])
        times = bench(session, np.load(case / file), args.seconds)
        print(f"{model} {label}: median {statistics.median(times):.3f} ms, mean {statistics.mean(times):.3f} ms, "
              f"{len(times)} runs, {1000 / statistics.mean(times):.1f} inferences/s")


if __name__ == "__main__":
    main()
