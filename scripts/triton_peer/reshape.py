#!/usr/bin/env python3
"""Asks the real Triton and anemone the same questions about models whose
config has a `reshape` (docs/SERVING.md, "Reshape"), and compares the
answers.

Both serve `add` (x + y, x - y on FP32) under three configs: `flat` (no
batch dimension, the model's leading 1 hidden, as Triton's quickstart
densenet_onnx), `batched` (`max_batch_size: 8`, the batch dimension kept
outside the reshape) and `variable` (a -1 on both sides); Triton in its
Python backend, anemone the ONNX file of examples/models/add. For each:
the metadata's shapes, an inference over HTTP (JSON and binary) and gRPC
(output shapes and values), and a request in the model's own shape (the
status only; the two servers word their errors differently). Three more
models have reshapes that cannot work; both servers must leave them
unavailable (the repository index's state).

Prints one line a question with both answers; exit status 1 when any differ.

Usage: reshape.py PEER_DIR ANEMONE_BIN
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
OUT = PEER / "reshape"

# name: (max_batch_size, input lines, output lines, a good request, one in the model's shape)
MODELS = {
    "flat": (0,
             '{ name: "x" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 1, 4 ] } },'
             '{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 1, 4 ] } }',
             '{ name: "sum" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 1, 4 ] } },'
             '{ name: "diff" data_type: TYPE_FP32 dims: [ 1, 4 ] }',
             ([2, 2], [4]), ([1, 4], [1, 4])),
    "batched": (8,
                '{ name: "x" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 4 ] } },'
                '{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }',
                '{ name: "sum" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape { shape: [ 4 ] } },'
                '{ name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }',
                ([3, 2, 2], [3, 4]), ([3, 4], [3, 4])),
    "variable": (0,
                 '{ name: "x" data_type: TYPE_FP32 dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] } },'
                 '{ name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] }',
                 '{ name: "sum" data_type: TYPE_FP32 dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] } },'
                 '{ name: "diff" data_type: TYPE_FP32 dims: [ -1, 4 ] }',
                 ([3, 2, 2], [3, 4]), ([3, 4], [3, 4])),
}
# Reshapes that cannot work: as many elements, zero, runs between -1s.
BAD = {
    "bad_count": '{ name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] reshape { shape: [ 2, 3 ] } },'
                 '{ name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] }',
    "bad_zero": '{ name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] reshape { shape: [ 0, 4 ] } },'
                '{ name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] }',
    "bad_runs": '{ name: "x" data_type: TYPE_FP32 dims: [ 2, -1, 2 ] reshape { shape: [ 4, -1 ] } },'
                '{ name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] }',
}
PLAIN_OUT = '{ name: "sum" data_type: TYPE_FP32 dims: [ -1, 4 ] }, { name: "diff" data_type: TYPE_FP32 dims: [ -1, 4 ] }'


def write(repo: Path, name: str, batch: int, inputs: str, outputs: str, triton: bool, sites: list) -> None:
    d = repo / name
    (d / "1").mkdir(parents=True)
    backend = 'backend: "python"' if triton else ""
    (d / "config.pbtxt").write_text(
        f'name: "{name}"\n{backend}\nmax_batch_size: {batch}\ninput [ {inputs} ]\noutput [ {outputs} ]\n')
    if triton:
        (d / "1/model.py").write_text(add_model.model_py(sites))
    else:
        shutil.copy(ROOT / "examples/models/add/1/model.onnx", d / "1/model.onnx")


def values(shape, offset):
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float32) * 1.5 - 3 + offset).reshape(shape)


def status(e) -> str:
    return str(e.status())


def questions(http: str, grpc: str) -> list[tuple[str, str]]:
    out = []
    for name, (_, _, _, good, own) in MODELS.items():
        for proto in ("http-json", "http-binary", "grpc"):
            module = grpcclient if proto == "grpc" else httpclient
            client = module.InferenceServerClient(grpc if proto == "grpc" else http)
            if proto != "http-binary":
                meta = client.get_model_metadata(name)
                if module is grpcclient:
                    shapes = [(t.name, list(t.shape)) for t in list(meta.inputs) + list(meta.outputs)]
                else:
                    shapes = [(t["name"], t["shape"]) for t in meta["inputs"] + meta["outputs"]]
                out.append((f"{name} {proto} metadata", str(shapes)))
            for label, (xs, ys) in (("infer", good), ("model's shape", own)):
                x, y = values(xs, 0), values(ys, 100)
                tensors = [module.InferInput("x", xs, "FP32"), module.InferInput("y", ys, "FP32")]
                for t, v in zip(tensors, (x, y)):
                    if module is httpclient:
                        t.set_data_from_numpy(v, binary_data=proto == "http-binary")
                    else:
                        t.set_data_from_numpy(v)
                try:
                    r = client.infer(name, tensors)
                    got = {n: r.as_numpy(n) for n in ("sum", "diff")}
                    answer = "; ".join(f"{n} {list(v.shape)} {v.reshape(-1).tolist()}" for n, v in got.items())
                except Exception as e:  # an error is an answer to compare too (its status)
                    answer = f"error {status(e)}"
                out.append((f"{name} {proto} {label}", answer))
    index = httpclient.InferenceServerClient(http).get_model_repository_index()
    states = {m["name"]: m.get("state", "") for m in index}
    for name in BAD:
        out.append((f"{name} state", states.get(name, "missing")))
    return out


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    sites = (PEER / "site-packages").read_text().split()
    for which, triton in (("triton", True), ("anemone", False)):
        for name, (batch, inputs, outputs, _, _) in MODELS.items():
            write(OUT / which, name, batch, inputs, outputs, triton, sites)
        for name, inputs in BAD.items():
            write(OUT / which, name, 0, inputs, PLAIN_OUT, triton, sites)
    # Triton exits when a model fails to load unless told not to.
    triton = lambda r, h, g, log: peer.start_triton(PEER, r, h, g, log, ["--exit-on-error=false"])  # noqa: E731
    t = peer.ask("triton", triton, OUT / "triton", OUT, list(MODELS), questions)
    a = peer.ask("anemone", lambda r, h, g, log: peer.start_anemone(ANEMONE, r, h, g, log),
                 OUT / "anemone", OUT, list(MODELS), questions)
    peer.report(t, a)


if __name__ == "__main__":
    main()
