"""The repository index as tritonserver 2.51 answers it (read side by side):
a model serving several versions (`version_policy { all { } }`) has a row
per version, and an unloaded model is UNAVAILABLE with the reason
"unloaded" (Triton has no UNLOADED state), over HTTP and gRPC."""
import json
import urllib.request

import tritonclient.grpc as grpcclient
from serve_support import start_serve, stop_serve, wait_ready

CONFIG = """
backend: "python"
version_policy: { all { } }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

SOURCE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]) for r in requests]
"""


def http_index(http):
    request = urllib.request.Request(f"http://{http}/v2/repository/index", b"{}")
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_a_row_per_version_and_unavailable_once_unloaded(tmp_path):
    for version in (1, 2):
        (tmp_path / "vp" / str(version)).mkdir(parents=True)
        (tmp_path / "vp" / str(version) / "model.py").write_text(SOURCE)
    (tmp_path / "vp" / "config.pbtxt").write_text(CONFIG)
    proc, addresses = start_serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "vp")
    try:
        wait_ready(addresses["HTTP"])
        grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
        rows = [(r["name"], r["version"], r["state"]) for r in http_index(addresses["HTTP"])]
        assert sorted(rows) == [("vp", "1", "READY"), ("vp", "2", "READY")], rows
        rows = [(m.name, m.version, m.state) for m in grpc.get_model_repository_index().models]
        assert sorted(rows) == [("vp", "1", "READY"), ("vp", "2", "READY")], rows
        grpc.unload_model("vp")
        [row] = http_index(addresses["HTTP"])
        assert (row["name"], row["state"], row["reason"]) == ("vp", "UNAVAILABLE", "unloaded"), row
        [model] = grpc.get_model_repository_index().models
        assert (model.state, model.reason) == ("UNAVAILABLE", "unloaded"), model
    finally:
        stop_serve(proc)
