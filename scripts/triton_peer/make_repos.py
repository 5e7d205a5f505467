#!/usr/bin/env python3
"""Writes two model repositories that serve the same models, one for the
real Triton (Python backend, as a pytriton user gets it) and one for
anemone, plus the request bodies and inputs the comparison sends.

Models:
- `add`: the trivial model of examples/models/add (x + y, x - y on
  FP32 [batch, 4]). Triton runs it in its Python backend with numpy;
  anemone runs the ONNX file on its default engine.
- `ocr_cls`: the pretrained PP-OCR direction classifier from the
  rapidocr-onnxruntime wheel (fixtures/generated/ocr_cls), FP32
  [batch, 3, 48, 192] -> [batch, 2]. Triton runs it with ONNX Runtime
  inside its Python backend; anemone with its ONNX Runtime backend. Both
  use the same number of ONNX Runtime threads.

Usage: make_repos.py OUT_DIR SITE_PACKAGES ORT_THREADS

SITE_PACKAGES may list several folders, separated by ':', searched in order.
"""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

import add_model

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(sys.argv[1]).resolve()
SITES = sys.argv[2].split(":")
THREADS = int(sys.argv[3])

ADD_ONNX = ROOT / "examples/models/add/1/model.onnx"
CLS_ONNX = ROOT / "fixtures/generated/ocr_cls/model.onnx"
CLS_OUT = "save_infer_model/scale_0.tmp_1"

# Neither server batches. `add`: Triton's Python backend runs one request at
# a time per instance (a process), so it gets two instances for the two
# cores; anemone gets its default (one instance, which may run inline on
# the I/O threads once it has proved tiny). `ocr_cls`: one instance each,
# ONNX Runtime with ORT_THREADS intra-op threads.
TWO_INSTANCES = 'instance_group [{ count: 2, kind: KIND_CPU }]'
ONE_INSTANCE = 'instance_group [{ count: 1, kind: KIND_CPU }]'

CLS_CONFIG = """name: "ocr_cls"
{platform}
max_batch_size: 8
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 3, 48, 192 ] }} ]
output [ {{ name: "{out}" data_type: TYPE_FP32 dims: [ 2 ] }} ]
{instances}
{extra}
"""

ORT_MODEL = add_model.prelude(SITES) + f"""import os
import onnxruntime as ort


class TritonPythonModel:
    def initialize(self, args):
        here = os.path.dirname(os.path.abspath(__file__))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = {THREADS}
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(here, "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            (y,) = self.session.run(["{CLS_OUT}"], {{"x": x}})
            out.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("{CLS_OUT}", y)]))
        return out
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def triton_repo(repo: Path) -> None:
    python = 'backend: "python"'
    write(repo / "add/config.pbtxt", add_model.config("add", python, TWO_INSTANCES))
    write(repo / "add/1/model.py", add_model.model_py(SITES))
    write(repo / "ocr_cls/config.pbtxt",
          CLS_CONFIG.format(platform=python, out=CLS_OUT, instances=ONE_INSTANCE, extra=""))
    write(repo / "ocr_cls/1/model.py", ORT_MODEL)
    shutil.copy(CLS_ONNX, repo / "ocr_cls/1/model.onnx")


def anemone_repo(repo: Path) -> None:
    # PIN_ORT=0 leaves the engine to anemone (no platform, no backends: its
    # load-time comparison and re-timing on the first requests decide)
    # instead of naming ONNX Runtime.
    pin = os.environ.get("PIN_ORT", "1") != "0"
    onnx = 'platform: "onnxruntime_onnx"' if pin else ""
    write(repo / "add/config.pbtxt", add_model.config("add", onnx, ""))
    (repo / "add/1").mkdir(parents=True, exist_ok=True)
    shutil.copy(ADD_ONNX, repo / "add/1/model.onnx")
    ort_only = 'parameters { key: "backends" value: { string_value: "onnxruntime" } }' if pin else ""
    write(repo / "ocr_cls/config.pbtxt",
          CLS_CONFIG.format(platform=onnx, out=CLS_OUT, instances=ONE_INSTANCE, extra=ort_only))
    (repo / "ocr_cls/1").mkdir(parents=True, exist_ok=True)
    shutil.copy(CLS_ONNX, repo / "ocr_cls/1/model.onnx")


def requests(out: Path) -> None:
    """JSON bodies for wrk and .npy inputs for `anemone bench`, batch 1."""
    rng = np.random.default_rng(7)
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    y = np.array([[10, 20, 30, 40]], dtype=np.float32)
    np.save(out / "add_x.npy", x)
    np.save(out / "add_y.npy", y)
    body = {"inputs": [
        {"name": n, "shape": list(a.shape), "datatype": "FP32", "data": a.ravel().tolist()}
        for n, a in (("x", x), ("y", y))]}
    (out / "add.json").write_text(json.dumps(body))
    img = rng.random((1, 3, 48, 192), dtype=np.float32)
    np.save(out / "ocr_cls_x.npy", img)
    body = {"inputs": [{"name": "x", "shape": list(img.shape), "datatype": "FP32",
                        "data": [round(float(v), 6) for v in img.ravel()]}]}
    (out / "ocr_cls.json").write_text(json.dumps(body))


def main() -> None:
    for d in ("triton", "anemone", "requests"):
        shutil.rmtree(OUT / d, ignore_errors=True)
        (OUT / d).mkdir(parents=True)
    triton_repo(OUT / "triton")
    anemone_repo(OUT / "anemone")
    requests(OUT / "requests")
    print(f"repositories and requests in {OUT}")


if __name__ == "__main__":
    main()
