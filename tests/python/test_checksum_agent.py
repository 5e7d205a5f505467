"""Triton's checksum repository agent (docs/SERVING.md, "Checksums of a
model's files"): `model_repository_agents { agents [ { name: "checksum"
parameters { key: "MD5:1/model.onnx" value: "<md5>" } } ] }` loads the
model only when each named file's digest is the one given, as a user of
Triton's agent writes it (its README's example). anemone refused the field
before. The digests are Python's `hashlib`'s, not anemone's.
"""
import hashlib
import os
import time

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto as T
from onnx import helper as h
from serve_support import python_repository, start_serve, stop_serve


def add_model(path, bias=0.0):
    ins = [h.make_tensor_value_info(n, T.FLOAT, ["b", 4]) for n in ("x", "y")]
    outs = [h.make_tensor_value_info("sum", T.FLOAT, ["b", 4])]
    nodes = [h.make_node("Add", ["x", "y"], ["xy"]), h.make_node("Add", ["xy", "bias"], ["sum"])]
    graph = h.make_graph(nodes, "add", ins, outs, initializer=[h.make_tensor("bias", T.FLOAT, [], [bias])])
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def agent(*pairs, name="checksum"):
    params = " ".join(f'parameters {{ key: "{k}" value: "{v}" }}' for k, v in pairs)
    return f'model_repository_agents {{ agents [ {{ name: "{name}" {params} }} ] }}\n'


CONFIG = 'max_batch_size: 8\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'

MARKER_MODEL = '''import os
open(os.environ["CHECKSUM_MARKER"], "w").write("model.py ran")
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]
'''


def digest(path, algorithm="md5"):
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("checksum")
    marker = tmp_path_factory.mktemp("marker") / "ran"
    for name in ("good", "good_sha", "bad", "outside", "fifo", "other", "reloaded"):
        add_model(repo / name / "1" / "model.onnx")
    md5 = digest(repo / "good" / "1" / "model.onnx")
    os.mkfifo(repo / "fifo" / "1" / "pipe")
    configs = {
        "good": agent(("MD5:1/model.onnx", md5)),
        "good_sha": agent(("SHA256:1/model.onnx", digest(repo / "good_sha" / "1" / "model.onnx", "sha256").upper())),
        "bad": agent(("MD5:1/model.onnx", "d726e132f91f16ebee703d96f6f73cb1")),
        "outside": agent(("MD5:../good/1/model.onnx", md5)),
        "fifo": agent(("MD5:1/pipe", md5)),
        "other": agent(("key", "value"), name="relocation"),
        "reloaded": agent(("md5:1/model.onnx", md5)),
    }
    for name, text in configs.items():
        (repo / name / "config.pbtxt").write_text(CONFIG + text)
    python_repository(repo, models=[("py_tampered", 'backend: "python"\n' + agent(("MD5:1/model.py", "0" * 32)),
                                     MARKER_MODEL)])
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*",
                                  env={"CHECKSUM_MARKER": str(marker)})
    http = addresses["HTTP"]
    names = set(configs) | {"py_tampered"}
    for _ in range(600):
        index = {m["name"]: m for m in requests.post(f"http://{http}/v2/repository/index", timeout=10).json()}
        if all(index.get(n, {}).get("state") in ("READY", "UNAVAILABLE") for n in names):
            break
        time.sleep(0.2)
    yield {"http": http, "index": index, "repo": repo, "marker": marker}
    stop_serve(proc)


def infer(http, model):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body = {"inputs": [{"name": n, "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()} for n in "xy"]}
    r = requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=30)
    return r.status_code, r.json()


@pytest.mark.parametrize("model", ["good", "good_sha"])
def test_a_model_whose_files_match_their_checksums_loads_and_serves(server, model):
    assert server["index"][model]["state"] == "READY", server["index"][model]
    status, answer = infer(server["http"], model)
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == [2.0 * v for v in range(8)]


@pytest.mark.parametrize("model, words", [
    # Triton's agent's own words, then what to do.
    ("bad", ["Mismatched MD5 hash for file 1/model.onnx, expect: d726e132f91f16ebee703d96f6f73cb1, got: ",
             "update the checksum"]),
    ("outside", ["'../good/1/model.onnx' must name a regular file in the model's directory"]),
    ("fifo", ["'1/pipe' must name a regular file"]),
    ("other", ["'relocation'", "'checksum' agent only"]),
])
def test_a_file_that_does_not_match_or_cannot_be_checked_fails_the_load(server, model, words):
    row = server["index"][model]
    assert row["state"] == "UNAVAILABLE", row
    for w in words:
        assert w in row["reason"], (w, row["reason"])
    if model == "bad":
        got = row["reason"].split("got: ")[1][:32]
        assert got == digest(server["repo"] / "bad" / "1" / "model.onnx")


def test_a_python_model_that_fails_its_checksum_never_runs(server):
    """The check comes before anything of the model is read or run: a
    model.py that would write a file at import did not."""
    row = server["index"]["py_tampered"]
    assert row["state"] == "UNAVAILABLE" and "Mismatched MD5 hash for file 1/model.py" in row["reason"], row
    assert not server["marker"].exists(), "model.py ran though its checksum did not match"


def test_a_tampered_file_never_replaces_the_serving_model(server):
    """A reload after the file changed fails the checksum, and the version
    that served keeps serving (SERVING.md: a reload that fails leaves it)."""
    http, repo = server["http"], server["repo"]
    assert infer(http, "reloaded")[0] == 200
    add_model(repo / "reloaded" / "1" / "model.onnx", bias=100.0)
    r = requests.post(f"http://{http}/v2/repository/models/reloaded/load", timeout=60)
    assert r.status_code == 400 and "Mismatched MD5 hash for file 1/model.onnx" in r.json()["error"], r.text
    status, answer = infer(http, "reloaded")
    assert status == 200 and answer["outputs"][0]["data"] == [2.0 * v for v in range(8)], answer
