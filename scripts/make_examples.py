"""Writes the tiny example models committed under examples/models/.

Run it only to change them: `.venv/bin/python scripts/make_examples.py`.
"""
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent


def add_model() -> onnx.ModelProto:
    """`sum = x + y` and `diff = x - y` on float32 [batch, 4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 4])
    d = helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "y"], ["sum"]), helper.make_node("Sub", ["x", "y"], ["diff"])],
        "add",
        [x, y],
        [s, d],
    )
    model = helper.make_model(graph, producer_name="anemone-examples", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    out = ROOT / "examples/models/add/1/model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(add_model(), out)
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")
