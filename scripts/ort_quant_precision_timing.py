"""ONNX Runtime's `session.x64quantprecision` (anemone's `onnxruntime.x64_quant_precision`, on
by default since session 46) against its default (off): the median latency of quantized versions
of tests/python/fixtures/torch_architectures' BERT-like encoder and ResNet (onnxruntime's own
quantize_dynamic with int8 weights, and quantize_static QDQ with uint8 activations and int8
weights per channel), at their manifest's example shapes, 2 intra-op threads, ORT_ENABLE_ALL;
and how far the default's answer is from the exact one. On a CPU with VNNI the two are the same
session. Figures in docs/PERFORMANCE.md.

    python3 scripts/ort_quant_precision_timing.py [RUNS]
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

FIX = Path(__file__).resolve().parent.parent / "tests/python/fixtures/torch_architectures"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
manifest = json.loads((FIX / "manifest.json").read_text())["models"]
rng = np.random.default_rng(0)


def example(name):
    feeds = {}
    for i in manifest[name]["inputs"]:
        shape = i["example_shape"]
        feeds[i["name"]] = (rng.integers(1, 50, shape).astype(np.int64) if i["dtype"] == "int64"
                            else rng.standard_normal(shape).astype(np.float32))
    return feeds


class Reader(CalibrationDataReader):
    def __init__(self, name):
        self.it = iter([example(name) for _ in range(8)])

    def get_next(self):
        return next(self.it, None)


def session(path, precise):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.enable_cpu_mem_arena = False
    so.add_session_config_entry("session.x64quantprecision", precise)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def median_us(sess, feeds):
    for _ in range(20):
        sess.run(None, feeds)
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return np.median(times) * 1e6


tmp = Path(tempfile.mkdtemp(prefix="quant_precision"))
print(f"onnxruntime {ort.__version__}, {RUNS} runs each, median µs")
print(f"{'model':34} {'default (0)':>11} {'precise (1)':>11} {'ratio':>6} {'max |default - precise|':>24}")
for name in ["bert_like_encoder", "tiny_resnet"]:
    src = FIX / f"{name}.onnx"
    variants = {}
    variants[f"{name} dynamic s8"] = tmp / f"{name}_dyn.onnx"
    quantize_dynamic(src, variants[f"{name} dynamic s8"], weight_type=QuantType.QInt8)
    variants[f"{name} QDQ u8/s8 per channel"] = tmp / f"{name}_qdq.onnx"
    quantize_static(src, variants[f"{name} QDQ u8/s8 per channel"], Reader(name), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    feeds = example(name)
    for label, path in variants.items():
        fast = session(path, "0")
        try:
            precise = session(path, "1")
        except Exception as e:  # noqa: BLE001 (onnxruntime's own exception types)
            print(f"{label:34} {median_us(fast, feeds):11.1f} {'no load':>11}  ({str(e).split(':')[-1].strip()[:60]})")
            continue
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(fast.run(None, feeds), precise.run(None, feeds)))
        a, b = median_us(fast, feeds), median_us(precise, feeds)
        print(f"{label:34} {a:11.1f} {b:11.1f} {b / a:6.2f} {diff:24.4g}")
