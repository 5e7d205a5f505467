"""The `add` example (x + y, x - y on FP32 [batch, 4]) as both servers are
given it by make_repos.py and batch_stats.py: its config.pbtxt, and the
model.py that the real Triton runs in its Python backend.
"""


def config(name: str, first: str, last: str) -> str:
    """The config of `add` named `name`, with the line `first` after the
    name (a backend or platform, or nothing) and `last` at the end (an
    instance group, dynamic batching, or nothing)."""
    return f"""name: "{name}"
{first}
max_batch_size: 8
input [
  {{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }},
  {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }}
]
output [
  {{ name: "sum" data_type: TYPE_FP32 dims: [ 4 ] }},
  {{ name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }}
]
{last}
"""


def prelude(sites: list) -> str:
    """The start of a Python backend model.py: the stub ignores PYTHONPATH,
    so it finds numpy and onnxruntime in `sites` (the peer's virtual
    environment)."""
    return f"""import sys
# The Python backend's stub ignores PYTHONPATH: find numpy and onnxruntime
# in the peer's virtual environment.
sys.path[:0] = {sites!r}
import numpy as np
import triton_python_backend_utils as pb_utils
"""


def model_py(sites: list) -> str:
    """`add` in Triton's Python backend, with numpy."""
    return prelude(sites) + """

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            y = pb_utils.get_input_tensor_by_name(r, "y").as_numpy()
            out.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("sum", x + y), pb_utils.Tensor("diff", x - y)]))
        return out
"""
