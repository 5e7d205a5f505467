"""gRPC against HTTP as a client sees them: `anemone serve` on
examples/models, then 300 sequential tritonclient requests to `add` per
protocol (after 30 of warm-up), every answer checked against numpy; prints
the mean latency per protocol and the gRPC/HTTP ratio.

    .venv/bin/python scripts/grpc_http_ratio.py [path/to/anemone]

The binary defaults to target/debug/anemone (docs/PERFORMANCE.md).
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parents[1]
if len(sys.argv) > 1:
    os.environ["ANEMONE_BIN"] = sys.argv[1]
sys.path.insert(0, str(ROOT / "tests/python"))
from serve_support import start_serve, stop_serve, wait_ready  # noqa: E402

proc, addr = start_serve(ROOT / "examples/models")
try:
    wait_ready(addr["HTTP"], seconds=120)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    y = x * 10
    mean = {}
    for name, mod, url in (("http", httpclient, addr["HTTP"]), ("grpc", grpcclient, addr["gRPC"])):
        client = mod.InferenceServerClient(url)
        inputs = [mod.InferInput("x", [1, 4], "FP32"), mod.InferInput("y", [1, 4], "FP32")]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(y)
        for _ in range(30):
            client.infer("add", inputs)
        start = time.perf_counter()
        for _ in range(300):
            answer = client.infer("add", inputs)
            np.testing.assert_array_equal(answer.as_numpy("sum"), x + y)
            np.testing.assert_array_equal(answer.as_numpy("diff"), x - y)
        mean[name] = (time.perf_counter() - start) / 300 * 1e6
    print({k: f"{v:.0f} µs" for k, v in mean.items()}, "gRPC/HTTP", round(mean["grpc"] / mean["http"], 2))
finally:
    stop_serve(proc)
