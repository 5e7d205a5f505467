#!/usr/bin/env python3
"""Ragged batching under load (docs/PERFORMANCE.md, "Ragged batching"):
requests of different lengths, batched without padding, against the same
model run one request a call.

The model is a token-wise MLP (64 -> 512 -> 64 with ReLU, fp32) that takes
every request's tokens as one flat `INPUT` (`allow_ragged_batch: true`,
dims `[-1, 64]`: a request of L tokens is `[1, L, 64]`) and answers each
request its own tokens (`batch_output`). It is served twice by one
`anemone serve`: `ragged_on` with `dynamic_batching`, `ragged_off` without
(each request alone). Clients on threads (`--clients`, tritonclient over
gRPC) send requests of L uniform in [--min, --max] tokens for `--seconds`
each; the answers are checked against numpy. Prints requests/s, tokens/s,
p50 and p99 latency, and the average batch (inference_count /
execution_count) of each side.

    .venv/bin/python scripts/bench_ragged.py --anemone target/release/anemone [--backend onnxruntime]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import tritonclient.grpc as grpcclient
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

sys.path.insert(0, str(Path(__file__).resolve().parent / "triton_peer"))
from peer import free_port, stop, wait_ready  # noqa: E402

WIDTH, HIDDEN = 64, 512
RNG = np.random.default_rng(7)
W1 = (RNG.standard_normal((WIDTH, HIDDEN)) / np.sqrt(WIDTH)).astype(np.float32)
W2 = (RNG.standard_normal((HIDDEN, WIDTH)) / np.sqrt(HIDDEN)).astype(np.float32)


def model(path: Path) -> None:
    nodes = [
        h.make_node("Reshape", ["INPUT", "rows"], ["tokens"]),
        h.make_node("MatMul", ["tokens", "w1"], ["hidden"]),
        h.make_node("Relu", ["hidden"], ["active"]),
        h.make_node("MatMul", ["active", "w2"], ["out"]),
        h.make_node("Reshape", ["out", "flat"], ["OUTPUT"]),
    ]
    inits = [nh.from_array(W1, "w1"), nh.from_array(W2, "w2"),
             nh.from_array(np.array([-1, WIDTH], np.int64), "rows"), nh.from_array(np.array([-1], np.int64), "flat")]
    graph = h.make_graph(nodes, "token_mlp", [h.make_tensor_value_info("INPUT", T.FLOAT, ["n"])],
                         [h.make_tensor_value_info("OUTPUT", T.FLOAT, ["n"])], initializer=inits)
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def config(backend: str, batching: bool) -> str:
    text = (
        "max_batch_size: 64\n"
        f'input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ -1, {WIDTH} ] allow_ragged_batch: true }} ]\n'
        f'output [ {{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1, {WIDTH} ] }} ]\n'
        'batch_output [ { target_name: "OUTPUT" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "INPUT" } ]\n'
    )
    if backend:
        text += f'parameters {{ key: "backends" value: {{ string_value: "{backend}" }} }}\n'
    if batching:
        text += "dynamic_batching { max_queue_delay_microseconds: 1000 }\n"
    return text


def drive(grpc: str, name: str, args) -> dict:
    latencies, tokens, errors = [], [0], []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        c = grpcclient.InferenceServerClient(grpc)
        while time.monotonic() < stop_at:
            n = int(rng.integers(args.min, args.max + 1))
            x = rng.standard_normal((1, n, WIDTH)).astype(np.float32)
            inp = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            t = time.monotonic()
            try:
                y = c.infer(name, [inp]).as_numpy("OUTPUT")
            except Exception as e:  # counted, and the run goes on
                errors.append(str(e))
                continue
            took = time.monotonic() - t
            want = np.maximum(x.reshape(-1, WIDTH) @ W1, 0) @ W2
            if not np.allclose(y.reshape(-1, WIDTH), want, rtol=1e-3, atol=1e-3):
                errors.append(f"wrong answer for {n} tokens")
            with lock:
                latencies.append(took)
                tokens[0] += n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    latencies.sort()
    return {"requests/s": len(latencies) / wall, "tokens/s": tokens[0] / wall,
            "p50 ms": 1e3 * statistics.median(latencies), "p99 ms": 1e3 * latencies[int(0.99 * (len(latencies) - 1))],
            "errors": len(errors), "first error": errors[0] if errors else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anemone", required=True, help="the anemone binary")
    p.add_argument("--backend", default="", help="the models' backends parameter (default: the server's order)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--min", type=int, default=8, help="fewest tokens a request")
    p.add_argument("--max", type=int, default=128, help="most tokens a request")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        for name, batching in (("ragged_on", True), ("ragged_off", False)):
            model(repo / name / "1" / "model.onnx")
            (repo / name / "config.pbtxt").write_text(config(args.backend, batching))
        http, grpc = free_port(), free_port()
        log = Path(tmp) / "serve.log"
        proc = subprocess.Popen([args.anemone, "serve", "--model-repository", str(repo), "--http-port", str(http),
                                 "--grpc-port", str(grpc), "--metrics-port", "0"],
                                stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{http}", proc, "anemone", log, ["ragged_on", "ragged_off"])
            for name in ("ragged_off", "ragged_on"):
                result = drive(f"127.0.0.1:{grpc}", name, args)
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{name}/stats") as r:
                    s = json.load(r)["model_stats"][0]
                result["average batch"] = s["inference_count"] / max(1, s["execution_count"])
                print(name, json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()}))
        finally:
            stop(proc)
            if os.environ.get("SHOW_LOG"):
                print(log.read_text())


if __name__ == "__main__":
    main()
