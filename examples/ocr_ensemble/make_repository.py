#!/usr/bin/env python3
"""Build the OCR-detection ensemble example's model files.

    .venv/bin/python examples/ocr_ensemble/make_repository.py [OUT_DIR]

writes, into OUT_DIR (default: examples/ocr_ensemble/model_repository, whose
config.pbtxt files are committed):

    preprocess/1/model.onnx  uint8 HWC image batch -> normalised float NCHW (built here with `onnx`)
    det/1/model.onnx         PP-OCRv4 text detection, from the rapidocr-onnxruntime wheel
    binarize/1/model.onnx    probability map -> uint8 text mask (prob > THRESHOLD), built here
    ocr/1/                   the ensemble's (empty) version directory

The normalisation is PaddleOCR's for detection: x = (pixel / 255 - mean) / std
per RGB channel. Image height and width must be multiples of 32 (the detector's stride).
"""

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
THRESHOLD = 0.3
DET_FILE = "ch_PP-OCRv4_det_infer.onnx"


def _model(nodes, name, inputs, outputs, inits):
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="anemone-ocr-ensemble",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def preprocess_model():
    """image UINT8 [batch, H, W, 3] -> x FP32 [batch, 3, H, W], (image / 255 - mean) / std."""
    scale = (1.0 / (255.0 * STD)).reshape(1, 3, 1, 1).astype(np.float32)
    shift = (-MEAN / STD).reshape(1, 3, 1, 1).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["chw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["chw", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["x"]),
    ]
    return _model(nodes, "preprocess",
                  [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "h", "w", 3])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
                  [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")])


def binarize_model():
    """prob FP32 [batch, 1, H, W] -> mask UINT8 [batch, 1, H, W], 1 where prob > THRESHOLD."""
    nodes = [
        helper.make_node("Greater", ["prob", "threshold"], ["above"]),
        helper.make_node("Cast", ["above"], ["mask"], to=TensorProto.UINT8),
    ]
    return _model(nodes, "binarize",
                  [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, "h", "w"])],
                  [helper.make_tensor_value_info("mask", TensorProto.UINT8, ["batch", 1, "h", "w"])],
                  [numpy_helper.from_array(np.array(THRESHOLD, np.float32), "threshold")])


def detector_path():
    """The PP-OCRv4 detector shipped in the rapidocr-onnxruntime wheel (not imported)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("make_repository: install the wheel first: "
                 ".venv/bin/pip install --no-deps rapidocr-onnxruntime==1.4.4")
    return Path(spec.submodule_search_locations[0]) / "models" / DET_FILE


def write(out):
    """Writes the three models and the ensemble's version directory under `out`."""
    out = Path(out)
    for name, model in [("preprocess", preprocess_model()), ("binarize", binarize_model())]:
        (out / name / "1").mkdir(parents=True, exist_ok=True)
        onnx.save(model, out / name / "1" / "model.onnx")
    (out / "det" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(detector_path(), out / "det" / "1" / "model.onnx")
    (out / "ocr" / "1").mkdir(parents=True, exist_ok=True)
    return out


def text_like_image(rng, batch, height, width):
    """Light paper with lines of dark glyph-like strokes (10x14 boxes of bars),
    which the detector takes for text."""
    image = np.full((batch, height, width, 3), 235, np.uint8)
    for b in range(batch):
        for row in range(8, height - 20, 24):
            for x in range(6, width - 12, 13):
                glyph = np.zeros((14, 10), bool)
                for _ in range(3):
                    if rng.random() < 0.5:
                        c = int(rng.integers(0, 9))
                        glyph[:, c:c + 2] = True
                    else:
                        r = int(rng.integers(0, 13))
                        glyph[r:r + 2, :] = True
                image[b, row:row + 14, x:x + 10][glyph] = 20
    return image


if __name__ == "__main__":
    target = write(sys.argv[1] if len(sys.argv) > 1 else HERE / "model_repository")
    print(f"wrote the OCR ensemble's models under {target}")
