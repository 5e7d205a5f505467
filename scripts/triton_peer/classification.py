#!/usr/bin/env python3
"""Asks the real Triton and anemone for the same classifications and
compares the answers string for string (docs/SERVING.md#classification).

Both serve `add` (x + y, x - y on FP32) twice: `addl` with a batch
dimension (`max_batch_size: 8`) and a `label_filename` on `sum`, and
`add0` without one (`max_batch_size: 0`, dims [-1, 4]); Triton in its
Python backend, anemone the ONNX file of examples/models/add. Each is asked
for `sum` with tritonclient's `class_count` 1, 2, 4 and 10, over HTTP (JSON
and binary) and gRPC, on a [2, 4] request with ties and negative values.

Prints one line a call with both answers; exit status 1 when any differ.

Usage: classification.py PEER_DIR ANEMONE_BIN
  PEER_DIR is scripts/triton_peer/setup.sh's output; run this with its
  venv's python (it has tritonclient and numpy).
"""
import shutil
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import add_model
import peer

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(sys.argv[1]).resolve()
ANEMONE = Path(sys.argv[2]).resolve()
OUT = PEER / "classification"
LABELS = "zero\none\ntwo\nthree\n"
X = np.array([[1, 9, 3, 4], [5, 0.5, 7.25, -8]], np.float32)
Y = np.array([[10, -20, 30, 40], [0, 1, 2, 3]], np.float32)
# Ties in the second row's sums: 5 + 0 and 0.5 + 4.5 would tie; keep one.
Y[1, 1] = 4.5


def model(repo: Path, name: str, batched: bool, triton: bool, sites: list) -> None:
    d = repo / name
    (d / "1").mkdir(parents=True)
    dims = "[ 4 ]" if batched else "[ -1, 4 ]"
    labels = ' label_filename: "labels.txt"' if batched else ""
    backend = 'backend: "python"' if triton else ""
    (d / "config.pbtxt").write_text(f"""name: "{name}"
{backend}
max_batch_size: {8 if batched else 0}
input [ {{ name: "x" data_type: TYPE_FP32 dims: {dims} }}, {{ name: "y" data_type: TYPE_FP32 dims: {dims} }} ]
output [ {{ name: "sum" data_type: TYPE_FP32 dims: {dims}{labels} }}, {{ name: "diff" data_type: TYPE_FP32 dims: {dims} }} ]
""")
    if batched:
        (d / "labels.txt").write_text(LABELS)
    if triton:
        (d / "1/model.py").write_text(add_model.model_py(sites))
    else:
        shutil.copy(ROOT / "examples/models/add/1/model.onnx", d / "1/model.onnx")


def calls(http: str, grpc: str) -> list[tuple[str, str]]:
    out = []
    for name in ("addl", "add0"):
        for proto in ("http-json", "http-binary", "grpc"):
            module = grpcclient if proto == "grpc" else httpclient
            client = module.InferenceServerClient(grpc if proto == "grpc" else http)
            tensors = [module.InferInput("x", list(X.shape), "FP32"), module.InferInput("y", list(Y.shape), "FP32")]
            for t, v in zip(tensors, (X, Y)):
                t.set_data_from_numpy(v)
            for count in (1, 2, 4, 10):
                kwargs = {"class_count": count}
                if module is httpclient:
                    kwargs["binary_data"] = proto == "http-binary"
                label = f"{name} {proto} class_count={count}"
                try:
                    r = client.infer(name, tensors, outputs=[module.InferRequestedOutput("sum", **kwargs)])
                    got = r.as_numpy("sum")
                    texts = [v.decode() if isinstance(v, bytes) else str(v) for v in got.reshape(-1)]
                    out.append((label, f"{list(got.shape)} {texts}"))
                except Exception as e:  # an error is an answer to compare too
                    out.append((label, f"error: {e}"))
    return out


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    sites = (PEER / "site-packages").read_text().split()
    for which, triton in (("triton", True), ("anemone", False)):
        for name, batched in (("addl", True), ("add0", False)):
            model(OUT / which, name, batched, triton, sites)
    t = peer.ask("triton", lambda r, h, g, log: peer.start_triton(PEER, r, h, g, log),
                 OUT / "triton", OUT, ["addl", "add0"], calls)
    a = peer.ask("anemone", lambda r, h, g, log: peer.start_anemone(ANEMONE, r, h, g, log),
                 OUT / "anemone", OUT, ["addl", "add0"], calls)
    peer.report(t, a)


if __name__ == "__main__":
    main()
