"""ONNX Runtime's ORT_ENABLE_ALL (99, anemone's `onnxruntime.optimization = all` since session 45)
against ORT_ENABLE_LAYOUT (3, what `all` ran before): the median latency of each model of
tests/python/fixtures/torch_architectures at its manifest's example shape, 2 intra-op threads,
anemone's other session options. Figures in docs/PERFORMANCE.md.

    python3 scripts/ort_level_timing.py [RUNS]
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

FIX = Path(__file__).resolve().parent.parent / "tests/python/fixtures/torch_architectures"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
manifest = json.loads((FIX / "manifest.json").read_text())["models"]
rng = np.random.default_rng(0)
print(f"onnxruntime {ort.__version__}, {RUNS} runs each, median µs")
print(f"{'model':32} {'LAYOUT (3)':>11} {'ALL (99)':>9} {'ratio':>6}")
for name, m in manifest.items():
    feeds = {}
    for i in m["inputs"]:
        shape = i["example_shape"]
        feeds[i["name"]] = (rng.integers(1, 50, shape).astype(np.int64) if i["dtype"] == "int64"
                            else rng.standard_normal(shape).astype(np.float32))
    medians = {}
    for level in ("ORT_ENABLE_LAYOUT", "ORT_ENABLE_ALL"):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = True
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        sess = ort.InferenceSession(str(FIX / f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
        for _ in range(20):
            sess.run(None, feeds)
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        medians[level] = np.median(times) * 1e6
    a, b = medians["ORT_ENABLE_LAYOUT"], medians["ORT_ENABLE_ALL"]
    print(f"{name:32} {a:11.1f} {b:9.1f} {b / a:6.2f}")
