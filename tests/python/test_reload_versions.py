"""A reload loads again only the versions whose files changed, as Triton's
does (docs/SERVING.md, "Model control"): with the config and every file
outside the version folders unchanged, a version whose folder is untouched
keeps serving as it was (its engines, its statistics, its open sequences),
and only the changed version is built again. A config change loads every
version again. anemone built every version again on each reload before.

Which versions were built again is read from each version's statistics
(a version loaded again starts from zero, as in Triton) and from the log;
answers are checked against numpy.
"""
import os
import time

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto as T
from onnx import helper as h
from serve_support import start_serve, stop_serve, wait_ready

CONFIG = ('max_batch_size: 8\nversion_policy: { all { } }\n'
          'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
          'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')


def add_model(path, bias):
    """y = x + bias."""
    graph = h.make_graph([h.make_node("Add", ["x", "bias"], ["y"])], "add",
                         [h.make_tensor_value_info("x", T.FLOAT, ["b", 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["b", 4])],
                         initializer=[h.make_tensor("bias", T.FLOAT, [], [bias])])
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


@pytest.fixture
def server(tmp_path):
    repo = tmp_path / "repo"
    add_model(repo / "two" / "1" / "model.onnx", 1.0)
    add_model(repo / "two" / "2" / "model.onnx", 2.0)
    (repo / "two" / "config.pbtxt").write_text(CONFIG)
    log = open(tmp_path / "serve.log", "w")
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "two", "--log-level", "info",
                                  stderr=log)
    wait_ready(addresses["HTTP"])
    yield {"http": addresses["HTTP"], "repo": repo, "log": tmp_path / "serve.log"}
    stop_serve(proc)


def answer(http, version):
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.ravel().tolist()}]}
    r = requests.post(f"http://{http}/v2/models/two/versions/{version}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return np.array(r.json()["outputs"][0]["data"]) - x.ravel()


def count(http, version):
    r = requests.get(f"http://{http}/v2/models/two/versions/{version}/stats", timeout=10)
    return r.json()["model_stats"][0]["inference_count"]


def load(http):
    r = requests.post(f"http://{http}/v2/repository/models/two/load", timeout=60)
    assert r.status_code == 200, r.text


def rewrite(path, bias):
    """The version's file written again, its time moved on so that the
    change shows whatever the filesystem's clock."""
    add_model(path, bias)
    later = time.time() + 5
    os.utime(path, (later, later))


def test_a_reload_builds_only_the_version_whose_file_changed(server):
    http, repo = server["http"], server["repo"]
    assert answer(http, 1).tolist() == [1.0] * 4 and answer(http, 2).tolist() == [2.0] * 4
    assert (count(http, 1), count(http, 2)) == (1, 1)
    rewrite(repo / "two" / "2" / "model.onnx", 20.0)
    load(http)
    # Version 1 kept (its count goes on), version 2 built again (from zero).
    assert (count(http, 1), count(http, 2)) == (1, 0)
    assert answer(http, 2).tolist() == [20.0] * 4 and answer(http, 1).tolist() == [1.0] * 4
    assert "version unchanged on disk: it keeps serving" in server["log"].read_text()


def test_a_config_change_builds_every_version_again(server):
    http, repo = server["http"], server["repo"]
    answer(http, 1), answer(http, 2)
    (repo / "two" / "config.pbtxt").write_text(CONFIG + 'parameters { key: "threads" value: { string_value: "1" } }\n')
    load(http)
    assert (count(http, 1), count(http, 2)) == (0, 0)
    assert answer(http, 1).tolist() == [1.0] * 4


def test_a_new_version_folder_loads_it_and_keeps_the_others(server):
    http, repo = server["http"], server["repo"]
    answer(http, 1), answer(http, 2)
    add_model(repo / "two" / "3" / "model.onnx", 3.0)
    load(http)
    assert (count(http, 1), count(http, 2), count(http, 3)) == (1, 1, 0)
    assert answer(http, 3).tolist() == [3.0] * 4


def test_after_a_failed_reload_every_version_loads_again(server):
    """A reload that fails puts back the versions that served (SERVING.md),
    so the files the failed load saw are not those serving: the next load
    compares nothing and builds every version again, and each answers as
    its files now say."""
    http, repo = server["http"], server["repo"]
    answer(http, 1)
    rewrite(repo / "two" / "1" / "model.onnx", 10.0)
    (repo / "two" / "2" / "model.onnx").write_bytes(b"not an ONNX file")
    r = requests.post(f"http://{http}/v2/repository/models/two/load", timeout=60)
    assert r.status_code == 400, r.text
    assert answer(http, 1).tolist() == [1.0] * 4, "the failed reload put version 1 back"
    rewrite(repo / "two" / "2" / "model.onnx", 2.0)
    load(http)
    assert answer(http, 1).tolist() == [10.0] * 4 and answer(http, 2).tolist() == [2.0] * 4
