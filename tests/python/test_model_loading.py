"""Triton's model loading API from a Python model (`pb_utils.load_model`,
`unload_model`, `is_model_ready`), as a Triton user's BLS model calls it:
load a model from the repository (or with a configuration override),
check it is ready, call it, unload it; a model whose initialize() loads
the model it needs; and every refusal with its reason (not explicit
mode, an unknown model, a bad override, files, itself). The answers of
the loaded model are checked against numpy (docs/SERVING.md, "Python
models").
"""
import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready

# Runs the command in CMD (JSON) and answers what came of it in OUT (JSON).
MANAGER = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def run(self, cmd):
        if "ready" in cmd:
            return {"ready": pb_utils.is_model_ready(cmd["ready"], cmd.get("version", ""))}
        if "load" in cmd:
            pb_utils.load_model(cmd["load"], config=cmd.get("config", ""), files=cmd.get("files"))
            return {"ok": True}
        if "unload" in cmd:
            pb_utils.unload_model(cmd["unload"], unload_dependents=cmd.get("deps", False))
            return {"ok": True}
        if "exec" in cmd:
            a = np.array([1, 2, 3, 4], np.float32)
            b = np.array([10, 20, 30, 40], np.float32)
            response = pb_utils.InferenceRequest(
                model_name=cmd["exec"], inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)],
                requested_output_names=["OUTPUT0"],
            ).exec()
            if response.has_error():
                return {"error": response.error().message()}
            return {"out": pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy().tolist()}
        raise ValueError(f"unknown command {cmd}")

    def execute(self, requests):
        out = []
        for r in requests:
            cmd = json.loads(pb_utils.get_input_tensor_by_name(r, "CMD").as_numpy()[0])
            try:
                answer = self.run(cmd)
            except pb_utils.TritonModelException as e:
                answer = {"error": str(e)}
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([json.dumps(answer).encode()], np.object_)),
            ]))
        return out
'''

MANAGER_CONFIG = """
backend: "python"
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

# Loads add_sub in initialize() when it is not ready, as Triton's README shows.
BOOT = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        if not pb_utils.is_model_ready(model_name="add_sub"):
            pb_utils.load_model(model_name="add_sub")

    def execute(self, requests):
        ready = pb_utils.is_model_ready("add_sub")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("READY", np.array([ready]))]) for _ in requests]
'''

BOOT_CONFIG = """
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "READY" data_type: TYPE_BOOL dims: [ 1 ] } ]
"""

ADD_SUB_OVERRIDE = {
    "backend": "python",
    "input": [{"name": n, "data_type": "TYPE_FP32", "dims": [4]} for n in ("INPUT0", "INPUT1")],
    "output": [{"name": n, "data_type": "TYPE_FP32", "dims": [4]} for n in ("OUTPUT0", "OUTPUT1")],
    "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return python_repository(
        tmp_path_factory.mktemp("model-loading"),
        examples=["add_sub"],
        models=[("manager", MANAGER_CONFIG, MANAGER), ("boot", BOOT_CONFIG, BOOT)],
    )


def ask(http, cmd):
    client = httpclient.InferenceServerClient(http, network_timeout=120)
    t = httpclient.InferInput("CMD", [1], "BYTES")
    t.set_data_from_numpy(np.array([json.dumps(cmd).encode()], np.object_))
    return json.loads(client.infer("manager", [t]).as_numpy("OUT")[0])


@pytest.fixture(scope="module")
def explicit(repo):
    proc, addresses = start_serve(
        repo, "--metrics-port", "0", "--model-control-mode", "explicit", "--load-model", "manager"
    )
    try:
        wait_ready(addresses["HTTP"])
        yield addresses["HTTP"]
    finally:
        stop_serve(proc)


def test_a_model_loads_checks_calls_and_unloads_another(explicit):
    assert ask(explicit, {"ready": "add_sub"}) == {"ready": False}
    assert ask(explicit, {"load": "add_sub"}) == {"ok": True}
    assert ask(explicit, {"ready": "add_sub"}) == {"ready": True}
    assert ask(explicit, {"ready": "add_sub", "version": "1"}) == {"ready": True}
    assert ask(explicit, {"ready": "add_sub", "version": "7"}) == {"ready": False}
    want = (np.array([1, 2, 3, 4], np.float32) + np.array([10, 20, 30, 40], np.float32)).tolist()
    assert ask(explicit, {"exec": "add_sub"}) == {"out": want}
    # The repository API sees what the model did.
    client = httpclient.InferenceServerClient(explicit)
    assert client.is_model_ready("add_sub")
    assert ask(explicit, {"unload": "add_sub"}) == {"ok": True}
    assert ask(explicit, {"ready": "add_sub"}) == {"ready": False}
    assert not client.is_model_ready("add_sub")
    gone = ask(explicit, {"exec": "add_sub"})
    assert "add_sub" in gone["error"], gone


def test_a_configuration_override_is_the_loaded_models_configuration(explicit):
    assert ask(explicit, {"load": "add_sub", "config": json.dumps(ADD_SUB_OVERRIDE)}) == {"ok": True}
    client = httpclient.InferenceServerClient(explicit)
    groups = client.get_model_config("add_sub")["instance_group"]
    assert [g["count"] for g in groups] == [2], groups
    want = (np.array([1, 2, 3, 4], np.float32) + np.array([10, 20, 30, 40], np.float32)).tolist()
    assert ask(explicit, {"exec": "add_sub"}) == {"out": want}
    assert ask(explicit, {"unload": "add_sub"}) == {"ok": True}


@pytest.mark.parametrize("cmd, words", [
    ({"load": "nowhere"}, ["failed to load model 'nowhere'", "not in the repository"]),
    ({"load": "add_sub", "config": "{not json"}, ["config override"]),
    ({"load": "add_sub", "files": {"file:1/model.py": "x"}}, ["files=", "put the files in the model repository"]),
    ({"load": "manager"}, ["cannot load itself"]),
    ({"unload": "manager"}, ["cannot unload itself"]),
    ({"ready": "add_sub", "version": "one"}, ["model_version"]),
])
def test_refusals_name_their_reason_and_the_server_serves_on(explicit, cmd, words):
    answer = ask(explicit, cmd)
    for word in words:
        assert word in answer.get("error", ""), answer
    assert ask(explicit, {"ready": "manager"}) == {"ready": True}


def test_a_model_that_loads_what_it_needs_in_initialize_loads_through_the_api(explicit):
    client = httpclient.InferenceServerClient(explicit, network_timeout=120)
    assert not client.is_model_ready("add_sub")
    client.load_model("boot")
    assert client.is_model_ready("add_sub"), "boot's initialize() loaded add_sub"
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.zeros(1, np.float32))
    assert client.infer("boot", [x]).as_numpy("READY").tolist() == [True]
    client.unload_model("boot")
    client.unload_model("add_sub")


def test_without_explicit_model_control_loading_is_refused_and_readiness_answers(tmp_path):
    repo = python_repository(tmp_path, examples=["add_sub"], models=[("manager", MANAGER_CONFIG, MANAGER)])
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        answer = ask(addresses["HTTP"], {"unload": "add_sub"})
        assert "--model-control-mode explicit" in answer["error"], answer
        answer = ask(addresses["HTTP"], {"load": "add_sub"})
        assert "--model-control-mode explicit" in answer["error"], answer
        assert ask(addresses["HTTP"], {"ready": "add_sub"}) == {"ready": True}
        assert ask(addresses["HTTP"], {"ready": "nowhere"}) == {"ready": False}
    finally:
        stop_serve(proc)


def test_loads_from_initialize_do_not_wait_for_a_turn_their_caller_holds(repo):
    """With one load at a time (`--model-load-thread-count 1`), boot's
    initialize() loading add_sub waited for the turn boot itself held, until
    the Python init timeout ended boot's load (600 s by default, 20 s
    here). A model's own load takes no turn."""
    import os
    os.environ["ANEMONE_PYTHON_INIT_TIMEOUT_S"] = "20"
    try:
        proc, addresses = start_serve(
            repo, "--metrics-port", "0", "--model-control-mode", "explicit", "--model-load-thread-count", "1")
    finally:
        del os.environ["ANEMONE_PYTHON_INIT_TIMEOUT_S"]
    try:
        wait_ready(addresses["HTTP"])
        client = httpclient.InferenceServerClient(addresses["HTTP"], network_timeout=120)
        client.load_model("boot")
        assert client.is_model_ready("boot") and client.is_model_ready("add_sub")
        x = httpclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.zeros(1, np.float32))
        assert client.infer("boot", [x]).as_numpy("READY").tolist() == [True]
    finally:
        stop_serve(proc)


def test_load_warnings_name_where_the_config_came_from(tmp_path):
    """A config's Triton hints that anemone does not use are logged as a
    warning naming where the config came from: `config.pbtxt` when read
    from the repository, "the load request's config" for a load's
    override. Until session 44 both said config.pbtxt, sending the operator
    to a file the load request never touched."""
    import requests

    repo = python_repository(tmp_path / "models", examples=["add_sub"])
    config = repo / "add_sub" / "config.pbtxt"
    config.write_text(config.read_text() + '\nmetric_tags { key: "team" value: "a" }\n')
    log = tmp_path / "server.log"
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--log-file", str(log))
    try:
        wait_ready(addresses["HTTP"])
        base = f"http://{addresses['HTTP']}/v2/repository/models/add_sub/load"
        assert requests.post(base, timeout=120).status_code == 200
        override = dict(ADD_SUB_OVERRIDE, metric_tags={"team": "b"})
        answer = requests.post(base, json={"parameters": {"config": json.dumps(override)}}, timeout=120)
        assert answer.status_code == 200, answer.text
    finally:
        stop_serve(proc)
    hints = [line for line in log.read_text().splitlines() if "Triton hints" in line]
    assert len(hints) == 2, hints
    assert "config.pbtxt fields 'metric_tags'" in hints[0], hints
    assert "the load request's config fields 'metric_tags'" in hints[1], hints
