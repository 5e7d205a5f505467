"""Triton Python models (`backend: "python"`, examples/python_models) through
the Triton clients, over HTTP and gRPC: outputs against numpy computed here;
strings; a dynamic batch given to execute() as a list of requests, each
client getting its own rows; a model's INVALID_ARG refusal failing only its
own request; an ensemble of a Python step and an ONNX step; initialize()
failing, a Python process that dies (started again for the next request),
and finalize() at unload; a request's id and parameters in execute(), each
request of a batch answered on its own (none run twice); and
auto_complete_config filling in a config.pbtxt that names only the backend.
"""
import concurrent.futures as cf
import json
import os
import re
import shutil
import signal
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from python_backend_models import (
    CRASH,
    CALLS_NOBODY,
    DLPACK,
    WHICH_ENV,
    RUNNING_SUM,
    ECHO_PARAMS,
    ECHO_PARAMS_CONFIG,
    FORWARDS_PARAMS,
    AUTO_COMPLETE,
    INSTANCES,
    SEQUENCE_CONFIG,
    BAD_INIT,
    OPTIONAL,
    OPTIONAL_CONFIG,
)
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples/python_models"


def environment(folder, name):
    """A Python environment as a directory: bin/python3 runs this test's
    interpreter with WHICH_ENV set to `name`."""
    (folder / "bin").mkdir(parents=True)
    (folder / "lib").mkdir()
    python = folder / "bin" / "python3"
    python.write_text(f'#!/bin/sh\nWHICH_ENV={name} exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)


def python_model(repo, name, source, dims="[ 1 ]", inputs="X", in_type="TYPE_FP32", outputs=(("PID", "TYPE_INT64"),)):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(source)
    outs = ", ".join(f'{{ name: "{n}" data_type: {t} dims: {dims} }}' for n, t in outputs)
    (repo / name / "config.pbtxt").write_text(
        f'backend: "python"\ninput [ {{ name: "{inputs}" data_type: {in_type} dims: {dims} }} ]\noutput [ {outs} ]\n'
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("python_models")
    for model in EXAMPLES.iterdir():
        shutil.copytree(model, repo / model.name)
    python_model(repo, "crashes", CRASH)
    python_model(repo, "bad_init", BAD_INIT)
    python_model(repo, "calls_nobody", CALLS_NOBODY)
    python_model(repo, "dlpack", DLPACK, dims="[ 3 ]", outputs=(("Y", "TYPE_FP32"), ("Z", "TYPE_FP32")))
    (repo / "echo_params" / "1").mkdir(parents=True)
    (repo / "echo_params" / "1" / "model.py").write_text(ECHO_PARAMS)
    (repo / "echo_params" / "config.pbtxt").write_text(ECHO_PARAMS_CONFIG)
    python_model(repo, "forwards_params", FORWARDS_PARAMS, dims="[ -1, 1 ]", outputs=(("PARAMS", "TYPE_STRING"),))
    for name, config in [("auto_complete", 'backend: "python"\n'),
                         ("auto_complete_clash", 'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP32 dims: [ 5 ] } ]\n')]:
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text(AUTO_COMPLETE)
        (repo / name / "config.pbtxt").write_text(config)
    (repo / "instances" / "1").mkdir(parents=True)
    (repo / "instances" / "1" / "model.py").write_text(INSTANCES)
    (repo / "instances" / "config.pbtxt").write_text(
        'backend: "python"\ninstance_group [ { count: 2 kind: KIND_CPU }, { name: "named" count: -1 kind: KIND_AUTO },'
        ' { name: "own" kind: KIND_MODEL } ]\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\noutput [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    (repo / "gpu_kind" / "1").mkdir(parents=True)
    (repo / "gpu_kind" / "1" / "model.py").write_text(INSTANCES)
    (repo / "gpu_kind" / "config.pbtxt").write_text(
        'backend: "python"\ninstance_group [ { name: "on_gpu" count: 1 kind: KIND_GPU gpus: [ 0 ] } ]\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\noutput [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    (repo / "optional" / "1").mkdir(parents=True)
    (repo / "optional" / "1" / "model.py").write_text(OPTIONAL)
    (repo / "optional" / "config.pbtxt").write_text(OPTIONAL_CONFIG)
    (repo / "running_sum" / "1").mkdir(parents=True)
    (repo / "running_sum" / "1" / "model.py").write_text(RUNNING_SUM)
    (repo / "running_sum" / "config.pbtxt").write_text(SEQUENCE_CONFIG)
    # Triton's EXECUTION_ENV_PATH: a directory, and a conda-pack archive.
    for name, where in [("own_env", "env_dir"), ("packed_env", "$$TRITON_MODEL_DIRECTORY/env.tar.gz"),
                        ("outside_env", "/usr")]:
        python_model(repo, name, WHICH_ENV, outputs=(("ENV", "TYPE_STRING"),))
        with open(repo / name / "config.pbtxt", "a") as config:
            config.write(f'parameters {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{where}" }} }}\n')
    environment(repo / "own_env" / "env_dir", "own")
    environment(repo / "packed_env" / "packing", "packed")
    with tarfile.open(repo / "packed_env" / "env.tar.gz", "w:gz") as archive:
        archive.add(repo / "packed_env" / "packing", arcname=".")
    shutil.rmtree(repo / "packed_env" / "packing")
    # Every model runs with --python's interpreter (this test's, through a
    # wrapper that says so), but those with an EXECUTION_ENV_PATH.
    python_model(repo, "server_env", WHICH_ENV, outputs=(("ENV", "TYPE_STRING"),))
    flag_env = tmp_path_factory.mktemp("flag_env")
    environment(flag_env / "env", "flag")
    # The server's backend list orders the ONNX engines; Python models run
    # on `python` whatever it says.
    # A model.py that never finishes importing: its load gives up after 3 s.
    python_model(repo, "hangs", "import time\ntime.sleep(3600)\n")
    os.environ["ANEMONE_PYTHON_INIT_TIMEOUT_S"] = "3"
    try:
        proc, addresses = start_serve(
            repo, "--model-control-mode", "explicit", "--load-model", "*", "--strict-readiness", "false",
            "--backends", "onnxruntime,tract-cpu", "--python", str(flag_env / "env" / "bin" / "python3"),
        )
    finally:
        del os.environ["ANEMONE_PYTHON_INIT_TIMEOUT_S"]
    wait_ready(addresses["HTTP"])
    yield addresses, repo
    stop_serve(proc)


def clients(addresses):
    return [
        (httpclient, httpclient.InferenceServerClient(addresses["HTTP"])),
        (grpcclient, grpcclient.InferenceServerClient(addresses["gRPC"])),
    ]


def infer(module, client, model, inputs, outputs=None):
    tensors = []
    for name, array in inputs:
        datatype = "BYTES" if array.dtype == np.object_ else {np.float32: "FP32"}[array.dtype.type]
        t = module.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        tensors.append(t)
    return client.infer(model, tensors)


@pytest.mark.parametrize("protocol", [0, 1])
def test_add_sub_answers_numpys_sum_and_difference(server, protocol):
    module, client = clients(server[0])[protocol]
    rng = np.random.default_rng(protocol)
    a, b = rng.standard_normal(4, dtype=np.float32), rng.standard_normal(4, dtype=np.float32)
    result = infer(module, client, "add_sub", [("INPUT0", a), ("INPUT1", b)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0").dtype == np.float32


def test_metadata_and_config_are_tritons_for_a_python_model(server):
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    meta = client.get_model_metadata("text_stats")
    assert meta["platform"] == "python"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [("TEXT", "BYTES", [-1, 1])]
    config = client.get_model_config("add_sub")
    assert (config["platform"], config["backend"], config["default_model_filename"]) == ("", "python", "model.py")


@pytest.mark.parametrize("protocol", [0, 1])
def test_strings_in_and_out(server, protocol):
    module, client = clients(server[0])[protocol]
    texts = np.array([["grüße"], ["ab"]], dtype=np.object_)
    result = infer(module, client, "text_stats", [("TEXT", texts)])
    assert [u.decode() for u in result.as_numpy("UPPER").ravel()] == ["GRÜSSE", "AB"]
    np.testing.assert_array_equal(result.as_numpy("LENGTH"), [[5], [2]])


def test_a_dynamic_batch_is_one_execute_of_many_requests_each_client_getting_its_own_rows(server):
    address = server[0]["gRPC"]

    def one(i):
        client = grpcclient.InferenceServerClient(address)
        text = f"request {i} " + "x" * (i % 7)
        result = infer(grpcclient, client, "text_stats", [("TEXT", np.array([[text]], dtype=np.object_))])
        assert result.as_numpy("UPPER")[0, 0].decode() == text.upper()
        assert result.as_numpy("LENGTH")[0, 0] == len(text)
        return int(result.as_numpy("BATCH")[0, 0])

    with cf.ThreadPoolExecutor(16) as pool:
        batches = list(pool.map(one, range(96)))
    assert max(batches) > 1, f"execute() never got more than one request: {batches}"
    assert max(batches) <= 8, "max_batch_size is 8"


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_models_invalid_arg_fails_only_its_own_request(server, protocol):
    module, client = clients(server[0])[protocol]
    address = server[0]["HTTP"] if protocol == 0 else server[0]["gRPC"]

    def one(i):
        c = module.InferenceServerClient(address)
        text = "" if i % 4 == 0 else f"t{i}"
        try:
            result = infer(module, c, "text_stats", [("TEXT", np.array([[text]], dtype=np.object_))])
            return ("ok", result.as_numpy("UPPER")[0, 0].decode() == text.upper())
        except InferenceServerException as e:
            return ("refused", e.message(), e.status())

    with cf.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(32)))
    for i, outcome in enumerate(outcomes):
        if i % 4 == 0:
            assert outcome[0] == "refused", (i, outcome)
            assert "TEXT holds an empty string" in outcome[1]
            assert outcome[2] in ("400", "StatusCode.INVALID_ARGUMENT"), outcome
        else:
            assert outcome == ("ok", True), (i, outcome)


def echo(module, client, x, **kwargs):
    t = module.InferInput("X", [1, 1], "FP32")
    t.set_data_from_numpy(np.array([[x]], dtype=np.float32))
    return client.infer("echo_params", [t], **kwargs)


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_requests_id_and_parameters_reach_execute_as_in_triton(server, protocol):
    module, client = clients(server[0])[protocol]
    result = echo(module, client, 1.0, request_id="req-7",
                  parameters={"custom": 1, "flag": True, "s": "text", "d": 2.5}, priority=1, timeout=10_000_000)
    # priority and timeout are the server's: not among the parameters, as in Triton.
    assert json.loads(result.as_numpy("PARAMS")[0, 0]) == {"custom": 1, "flag": True, "s": "text", "d": 2.5}
    assert result.as_numpy("ID")[0, 0] == b"req-7"
    plain = echo(module, client, 1.0)
    assert plain.as_numpy("PARAMS")[0, 0] == b"{}"
    assert plain.as_numpy("ID")[0, 0] == b""


def post(url, body):
    """POSTs JSON; the status and the decoded answer, errors included."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_parameters_triton_reserves_or_cannot_type_are_refused_with_400(server):
    url = f"http://{server[0]['HTTP']}/v2/models/echo_params/infer"
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}
    for parameters, says in [({"triton_x": 1}, "reserved"), ({"lst": [1]}, "a parameter value")]:
        status, answer = post(url, {**body, "parameters": parameters})
        assert status == 400, answer
        assert says in answer["error"], answer
    # The server's own parameters pass, and are not the model's.
    status, answer = post(url, {**body, "parameters": {"sequence_id": 0, "binary_data_output": False, "k": "v"}})
    assert status == 200, answer
    params = next(o for o in answer["outputs"] if o["name"] == "PARAMS")["data"][0]
    assert json.loads(params) == {"k": "v"}


def test_each_request_of_a_batch_gets_its_own_answer_and_none_runs_twice(server):
    """A batch's refused request fails alone, and execute() sees every
    request once: the others are not run again (their side effects would
    happen twice)."""
    address = server[0]["gRPC"]
    first = int(echo(grpcclient, grpcclient.InferenceServerClient(address), 0.0).as_numpy("SEEN")[0, 0])

    def one(i):
        client = grpcclient.InferenceServerClient(address)
        x = -1.0 if i % 3 == 0 else float(i)
        try:
            result = echo(grpcclient, client, x, request_id=f"r{i}", parameters={"i": i})
        except InferenceServerException as e:
            return ("refused", e.status(), e.message())
        assert json.loads(result.as_numpy("PARAMS")[0, 0]) == {"i": i}
        assert result.as_numpy("ID")[0, 0].decode() == f"r{i}"
        return ("ok", int(result.as_numpy("BATCH")[0, 0]))

    def counts():
        s = grpcclient.InferenceServerClient(address).get_inference_statistics("echo_params", as_json=True)
        m = s["model_stats"][0]
        i = m["inference_stats"]
        return (int(m.get("inference_count", 0)), int(i["success"].get("count", 0)),
                int(i["fail"].get("count", 0)), int(m.get("execution_count", 0)))

    before = counts()
    with cf.ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(one, range(48)))
    for i, outcome in enumerate(outcomes):
        if i % 3 == 0:
            assert outcome[:2] == ("refused", "StatusCode.INVALID_ARGUMENT"), (i, outcome)
            assert "X is negative" in outcome[2]
        else:
            assert outcome[0] == "ok", (i, outcome)
    assert max(o[1] for o in outcomes if o[0] == "ok") > 1, f"no batch formed: {outcomes}"
    # inference_count counts the rows answered, not those refused in their
    # batch; every batch that answered one is an execution.
    after = counts()
    delta = [a - b for a, b in zip(after, before)]
    assert delta[:3] == [32, 32, 16], (before, after)
    assert 1 <= delta[3] < 32, (before, after)
    last = int(echo(grpcclient, grpcclient.InferenceServerClient(address), 0.0).as_numpy("SEEN")[0, 0])
    assert last - first == 48 + 1, "execute() saw some requests more than once"


@pytest.mark.parametrize("protocol", [0, 1])
def test_exec_carries_the_parameters_a_python_model_gives_its_request(server, protocol):
    module, client = clients(server[0])[protocol]
    t = module.InferInput("X", [1, 1], "FP32")
    t.set_data_from_numpy(np.array([[1.0]], dtype=np.float32))
    result = client.infer("forwards_params", [t], parameters={"outer": 1})
    assert json.loads(result.as_numpy("PARAMS")[0, 0]) == {"via": "exec", "n": 2}


@pytest.mark.parametrize("protocol", [0, 1])
def test_an_ensemble_of_a_python_step_and_an_onnx_step(server, protocol):
    module, client = clients(server[0])[protocol]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y = np.full((2, 4), 0.5, dtype=np.float32)
    result = infer(module, client, "scale_then_add", [("X", x), ("Y", y)])
    np.testing.assert_allclose(result.as_numpy("SUM"), x * 2 + y, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("DIFF"), x * 2 - y, rtol=1e-6)


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_sequence_model_keeps_each_sequences_sum_by_its_correlation_id(server, protocol):
    module, client = clients(server[0])[protocol]
    rng = np.random.default_rng(5 + protocol)
    values = {7 + protocol: rng.integers(-50, 50, 6), 1000 + protocol: rng.integers(-50, 50, 6)}
    for step in range(6):
        for sequence_id, xs in values.items():  # the two sequences interleave
            x = module.InferInput("X", [1, 1], "INT32")
            x.set_data_from_numpy(np.array([[xs[step]]], dtype=np.int32))
            result = client.infer("running_sum", [x], sequence_id=sequence_id,
                                  sequence_start=step == 0, sequence_end=step == 5)
            assert result.as_numpy("SUM")[0, 0] == xs[: step + 1].sum(), (sequence_id, step)


@pytest.mark.parametrize("protocol", [0, 1])
def test_a_python_model_calls_other_models_with_exec(server, protocol):
    module, client = clients(server[0])[protocol]
    rng = np.random.default_rng(20 + protocol)
    x, y = rng.standard_normal((3, 4), dtype=np.float32), rng.standard_normal((3, 4), dtype=np.float32)
    before = httpclient.InferenceServerClient(server[0]["HTTP"]).get_inference_statistics("add")
    result = infer(module, client, "add_twice", [("X", x), ("Y", y)])
    np.testing.assert_allclose(result.as_numpy("SUM"), (x + y) + y, rtol=1e-6)
    after = httpclient.InferenceServerClient(server[0]["HTTP"]).get_inference_statistics("add")
    count = lambda stats: int(stats["model_stats"][0]["inference_stats"]["success"]["count"])
    assert count(after) - count(before) == 2, "add counted the two requests of add_twice"


def test_exec_on_a_missing_model_gives_the_error_to_the_python_model(server):
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    with pytest.raises(InferenceServerException) as e:
        infer(httpclient, client, "calls_nobody", [("X", np.array([1.0], np.float32))])
    assert "exec said:" in e.value.message() and "nobody" in e.value.message(), e.value.message()


def test_dlpack_capsules_and_exporters_become_tensors(server):
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    x = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    result = infer(httpclient, client, "dlpack", [("X", x)])
    np.testing.assert_array_equal(result.as_numpy("Y"), x)
    np.testing.assert_array_equal(result.as_numpy("Z"), x * 2)


@pytest.mark.parametrize("protocol", [0, 1])
def test_auto_complete_config_declares_what_the_config_pbtxt_leaves_out(server, protocol):
    module, client = clients(server[0])[protocol]
    meta = client.get_model_metadata("auto_complete")
    if protocol == 1:
        meta = {"inputs": [{"name": i.name, "datatype": i.datatype, "shape": list(i.shape)} for i in meta.inputs],
                "outputs": [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in meta.outputs]}
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == [("IN", "FP32", [-1, 3])]
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]] == [("OUT", "FP32", [-1, 3])]
    config = httpclient.InferenceServerClient(server[0]["HTTP"]).get_model_config("auto_complete")
    assert config["max_batch_size"] == 4
    assert "dynamic_batching" in config
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = module.InferInput("IN", [2, 3], "FP32")
    t.set_data_from_numpy(x)
    np.testing.assert_array_equal(client.infer("auto_complete", [t]).as_numpy("OUT"), x * 3)


def test_auto_complete_config_contradicting_the_config_pbtxt_leaves_the_model_unavailable(server):
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    assert not client.is_model_ready("auto_complete_clash")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    reason = index["auto_complete_clash"]["reason"]
    assert "auto_complete_config" in reason and "dims [5]" in reason and "[3]" in reason, reason


def test_disable_auto_complete_config_leaves_the_config_as_written(tmp_path):
    (tmp_path / "auto_complete" / "1").mkdir(parents=True)
    (tmp_path / "auto_complete" / "1" / "model.py").write_text(AUTO_COMPLETE)
    (tmp_path / "auto_complete" / "config.pbtxt").write_text('backend: "python"\n')
    proc, addresses = start_serve(tmp_path, "--disable-auto-complete-config", "--strict-readiness", "false")
    try:
        wait_ready(addresses["HTTP"])
        client = httpclient.InferenceServerClient(addresses["HTTP"])
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert index["auto_complete"]["state"] == "UNAVAILABLE", index
        assert "lacks the 'input' list" in index["auto_complete"]["reason"], index
    finally:
        stop_serve(proc)


def test_each_instance_is_told_its_name_kind_and_device_as_triton_tells_it(server):
    lines = (server[1] / "instances" / "instances.txt").read_text().splitlines()
    # The CPU group's names are what tritonserver 2.51 tells the same
    # model's instances (checked side by side). A KIND_AUTO group of count
    # -1 is one CPU instance, as 2.51 tells it. A KIND_MODEL group (the
    # model places itself) loads, told "MODEL", as in Triton; it was refused.
    assert sorted(json.loads(line) for line in lines) == [
        ["instances_0_0", "CPU", "0"], ["instances_0_1", "CPU", "0"], ["named_0", "CPU", "0"], ["own_0", "MODEL", "0"]]
    groups = httpclient.InferenceServerClient(server[0]["HTTP"]).get_model_config("instances")["instance_group"]
    assert [(g["count"], g["kind"]) for g in groups] == [(2, "KIND_CPU"), (1, "KIND_CPU"), (1, "KIND_MODEL")], groups


def gpu_visible():
    """An NVIDIA GPU the driver lists, not hidden by CUDA_VISIBLE_DEVICES."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip()
    listed = os.path.isdir("/proc/driver/nvidia/gpus") and os.listdir("/proc/driver/nvidia/gpus")
    return bool(listed) and hidden != "" and not hidden.startswith("-1")


def test_a_kind_gpu_group_needs_a_gpu_as_in_triton(server):
    """tritonserver 2.51 refuses a Python model's KIND_GPU group on a
    machine without a GPU ("instance group ... has kind KIND_GPU but no
    GPUs are available"); with one, the instance is told "GPU" on the
    group's first device. anemone loaded it on a GPU-less machine, told GPU."""
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    row = {m["name"]: m for m in client.get_model_repository_index()}["gpu_kind"]
    if gpu_visible():
        assert row["state"] == "READY", row
        lines = (server[1] / "gpu_kind" / "instances.txt").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [["on_gpu_0", "GPU", "0"]]
    else:
        assert row["state"] == "UNAVAILABLE", row
        assert "instance group on_gpu of model gpu_kind has kind KIND_GPU but no GPUs are available" in row["reason"], row


def test_initialize_is_given_the_config_with_its_instance_groups_resolved(server):
    """tritonserver 2.51 gives `initialize` args["model_config"] with
    KIND_AUTO resolved to KIND_CPU and a count under 1 as 1, as GET /config
    shows them; anemone gave the groups as written."""
    lines = (server[1] / "instances" / "configs.txt").read_text().splitlines()
    assert lines, "initialize wrote no config"
    for line in lines:
        groups = json.loads(line)["instance_group"]
        assert [(g["count"], g["kind"]) for g in groups] == [(2, "KIND_CPU"), (1, "KIND_CPU"), (1, "KIND_MODEL")], groups


def test_initialize_failing_leaves_the_model_unavailable_with_its_reason(server):
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    assert not client.is_model_ready("bad_init")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert "RuntimeError: cannot find weights.bin" in index["bad_init"]["reason"], index["bad_init"]
    assert client.is_model_ready("add_sub"), "the other models keep serving"


def test_a_python_process_that_dies_fails_its_request_and_is_started_again(server):
    client = httpclient.InferenceServerClient(server[0]["HTTP"])
    ok = np.array([1.0], dtype=np.float32)
    first = infer(httpclient, client, "crashes", [("X", ok)]).as_numpy("PID")[0]
    with pytest.raises(InferenceServerException) as e:
        infer(httpclient, client, "crashes", [("X", np.array([-1.0], dtype=np.float32))])
    assert "ended (exit status: 7)" in e.value.message(), e.value.message()
    second = infer(httpclient, client, "crashes", [("X", ok)]).as_numpy("PID")[0]
    assert second != first, "a new process answers"
    result = infer(httpclient, client, "add_sub", [("INPUT0", np.ones(4, np.float32)), ("INPUT1", np.ones(4, np.float32))])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * np.ones(4))


def test_execution_env_path_runs_a_model_in_its_own_environment(server):
    addresses, repo = server
    client = httpclient.InferenceServerClient(addresses["HTTP"])
    x = np.array([1.0], dtype=np.float32)
    env = infer(httpclient, client, "server_env", [("X", x)]).as_numpy("ENV")[0].decode()
    assert env.startswith("flag:"), f"--python's interpreter runs the others: {env}"
    env, lib = infer(httpclient, client, "own_env", [("X", x)]).as_numpy("ENV")[0].decode().split(":")
    assert (env, lib) == ("own", str(repo / "own_env" / "env_dir" / "lib"))
    env, lib = infer(httpclient, client, "packed_env", [("X", x)]).as_numpy("ENV")[0].decode().split(":")
    assert env == "packed", "the archive was unpacked and its bin/python3 runs the model"
    assert lib.endswith("/lib") and "python-envs" in lib, lib
    # What a configuration names stays inside the repository.
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert "inside the model's directory" in index["outside_env"]["reason"], index["outside_env"]


def test_unloading_runs_finalize(server):
    addresses, repo = server
    client = httpclient.InferenceServerClient(addresses["HTTP"])
    marker = repo / "crashes" / "finalized"
    assert not marker.exists()
    client.unload_model("crashes")
    deadline = time.time() + 10
    while not marker.exists():
        assert time.time() < deadline, "finalize() did not run within 10 s of the unload"
        time.sleep(0.1)


FINAL_WORDS_CONFIG = """
name: "final_words"
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }]
instance_group [{ count: 2 kind: KIND_CPU }]
"""

FINAL_WORDS = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(1.0)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy())]) for r in requests]

    def finalize(self):
        for i in range(200):
            pb_utils.Logger.log_warn(f"final word {i}")
        pb_utils.Logger.log_warn("final words done")
"""


def test_stopping_the_server_lets_every_instance_finalize(tmp_path):
    """At SIGTERM with requests in flight, every instance of a Python model
    runs its finalize() to the end, and its log lines are written before
    the server exits (docs/SERVING.md, Shutdown: "the server waits for
    every Python model instance's `finalize()` to end"). Two instances,
    eight stops, three requests on connections of their own: before the
    fix, an instance whose last reference was dropped on another thread
    than the exiting one lost its finalize in about one stop of eight to
    ten (all 200 of its lines)."""
    import subprocess

    repo = tmp_path / "models"
    python_repository(repo, models=[("final_words", FINAL_WORDS_CONFIG, FINAL_WORDS)])
    binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
    env = dict(os.environ, ANEMONE_PYTHON=sys.executable)
    for attempt in range(8):
        log = tmp_path / f"serve{attempt}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([str(binary), "serve", "--model-repository", str(repo), "--http-port", "0",
                                     "--grpc-port", "0", "--metrics-port", "0"], stdout=out, stderr=out, env=env)
        try:
            deadline = time.time() + 60
            while "HTTP listening on " not in log.read_text():
                assert proc.poll() is None and time.time() < deadline, log.read_text()
                time.sleep(0.05)
            http = log.read_text().split("HTTP listening on ", 1)[1].split()[0]
            wait_ready(http)
            body = json.dumps({"inputs": [{"name": "IN", "datatype": "FP32", "shape": [1], "data": [1.5]}]})

            def infer():
                # One connection each, closed after its answer (as curl's).
                request = urllib.request.Request(f"http://{http}/v2/models/final_words/infer", body.encode())
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return json.load(answer)["outputs"][0]["data"]

            with cf.ThreadPoolExecutor(3) as pool:
                pending = [pool.submit(infer) for _ in range(3)]
                time.sleep(0.3)
                proc.send_signal(__import__("signal").SIGTERM)
                assert [p.result() for p in pending] == [[1.5]] * 3
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        words = re.findall(r"final word (\d+)", text)
        assert len(words) == 400 and text.count("final words done") == 2, \
            f"stop {attempt}: {len(words)} of 400 lines, {text.count('final words done')} of 2 instances done"
        assert text.rindex("final words done") < text.index("anemone stopped"), text[-2000:]


STUCK_FINALIZE = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy())]) for r in requests]

    def finalize(self):
        pb_utils.Logger.log_warn("finalize started")
        time.sleep(120)
        pb_utils.Logger.log_warn("finalize ended")
"""


def test_a_finalize_that_never_ends_does_not_hold_the_stop(tmp_path):
    """docs/SERVING.md, Shutdown: the server waits for the Python models'
    finalize(), "6 s at most in all; a process stuck in finalize is killed
    at 5 s". A finalize that sleeps 120 s: serve exits with status 0 well
    before it would end (under 30 s), its finalize had started, and its
    process is gone, not left behind."""
    import signal
    import subprocess

    repo = tmp_path / "models"
    python_repository(repo, models=[("stuck", FINAL_WORDS_CONFIG.replace("final_words", "stuck").replace(
        "count: 2", "count: 1"), STUCK_FINALIZE)])
    binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(binary), "serve", "--model-repository", str(repo), "--http-port", "0",
                                 "--grpc-port", "0", "--metrics-port", "0"], stdout=out, stderr=out,
                                env=dict(os.environ, ANEMONE_PYTHON=sys.executable))
    try:
        deadline = time.time() + 60
        while "HTTP listening on " not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.05)
        wait_ready(log.read_text().split("HTTP listening on ", 1)[1].split()[0])
        children = [int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        assert children, "the model's Python process was not found among serve's children"
        started = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
        took = time.time() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "finalize started" in text and "finalize ended" not in text, text[-2000:]
    assert took < 30, f"the stop took {took:.1f} s"
    alive = [c for c in children if Path(f"/proc/{c}").exists()
             and Path(f"/proc/{c}/stat").read_text().split(") ", 1)[1][0] != "Z"]
    assert not alive, f"the model's process outlived the server: {alive}"


PARAMS_CONFIG = """
name: "with_parameters"
backend: "python"
max_batch_size: 4
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 2 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] }]
dynamic_batching { max_queue_delay_microseconds: 1000 }
response_cache { enable: true }
"""

WITH_PARAMETERS = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = r.inputs()[0].as_numpy()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", x * 2)],
                parameters={"rows": int(x.shape[0]), "doubled": True, "note": "x2", "id": r.request_id()}))
        return out
"""


def test_a_python_models_response_parameters_reach_http_and_grpc_clients(tmp_path):
    """`InferenceResponse(parameters={...})` (bool, int and str values, as
    Triton's newer binding takes them) reaches the client: HTTP's JSON
    `parameters` object (with binary outputs too) and gRPC's
    `ModelInferResponse.parameters`, each request of a dynamic batch its own;
    and the response cache does not answer a second request without them
    (docs/SERVING.md, Python models)."""
    import tritonclient.grpc as grpcclient

    repo = tmp_path / "models"
    python_repository(repo, models=[("with_parameters", PARAMS_CONFIG, WITH_PARAMETERS)])
    proc, addresses = start_serve(repo, "--cache-config", "local,size=1048576")
    try:
        wait_ready(addresses["HTTP"])
        x = np.array([[1.5, -2.0]], np.float32)
        for attempt in range(2):
            body = {"id": f"r{attempt}", "inputs": [{"name": "IN", "datatype": "FP32", "shape": [1, 2],
                                                    "data": x.ravel().tolist()}]}
            request = urllib.request.Request(f"http://{addresses['HTTP']}/v2/models/with_parameters/infer",
                                             json.dumps(body).encode())
            answer = json.load(urllib.request.urlopen(request, timeout=30))
            assert answer["parameters"] == {"rows": 1, "doubled": True, "note": "x2", "id": f"r{attempt}"}, answer
            np.testing.assert_allclose(answer["outputs"][0]["data"], (x * 2).ravel())
        client = httpclient.InferenceServerClient(addresses["HTTP"])
        inputs = [httpclient.InferInput("IN", [1, 2], "FP32")]
        inputs[0].set_data_from_numpy(x, binary_data=True)
        result = client.infer("with_parameters", inputs, request_id="bin",
                              outputs=[httpclient.InferRequestedOutput("OUT", binary_data=True)])
        assert result.get_response()["parameters"]["id"] == "bin"
        np.testing.assert_allclose(result.as_numpy("OUT"), x * 2)
        g = grpcclient.InferenceServerClient(addresses["gRPC"])
        ginputs = [grpcclient.InferInput("IN", [1, 2], "FP32")]
        ginputs[0].set_data_from_numpy(x)
        with cf.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: g.infer("with_parameters", ginputs, request_id=f"g{i}"), range(8)))
        for i, r in enumerate(results):
            p = r.get_response().parameters
            assert (p["id"].string_param, p["rows"].int64_param, p["doubled"].bool_param,
                    p["note"].string_param) == (f"g{i}", 1, True, "x2")
    finally:
        stop_serve(proc)


ADDER_CONFIG = """
name: "adder"
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }]
"""

ADDER = """
import os
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy() + 1)],
                                           parameters={"pid": os.getpid()}) for r in requests]
"""

FORKS_CONFIG = """
name: "forks"
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "PIDS" data_type: TYPE_INT64 dims: [ -1 ] }]
"""

FORKS = """
import multiprocessing
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def plus_one(value):
    request = pb_utils.InferenceRequest(model_name="adder", requested_output_names=["OUT"],
                                        inputs=[pb_utils.Tensor("IN", np.array([value], np.float32))])
    response = request.exec()
    if response.has_error():
        raise RuntimeError(response.error().message())
    return float(response.output_tensors()[0].as_numpy()[0]), os.getpid()


def streamed(value):
    request = pb_utils.InferenceRequest(model_name="adder", requested_output_names=["OUT"],
                                        inputs=[pb_utils.Tensor("IN", np.array([value], np.float32))])
    try:
        list(request.exec(decoupled=True))
    except pb_utils.TritonModelException as e:
        return "refused: " + e.message()
    return "not refused"


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            values = r.inputs()[0].as_numpy().tolist()
            with multiprocessing.get_context("fork").Pool(4) as pool:
                if values[0] < 0:
                    # exec(decoupled=True) from a child: refused there, as in Triton.
                    raise pb_utils.TritonModelException(pool.apply(streamed, (values[0],)))
                got = pool.map(plus_one, values)
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([g[0] for g in got], np.float32)),
                pb_utils.Tensor("PIDS", np.array([g[1] for g in got], np.int64))]))
        return out
"""


def test_processes_a_model_forks_may_call_other_models(tmp_path, monkeypatch):
    """BLS from processes the model forks (`multiprocessing.Pool`, Triton's
    QA test_multiprocess): each forked process's request goes through the
    model's process, and its answer comes back to it (docs/SERVING.md,
    Business-logic scripting). 16 values through a pool of 4, checked
    against numpy; the answers came from processes other than the model's.
    Before session 41 the children wrote on the model's own channel: "the
    Python process sent a bad frame", or a hang. The model stays healthy
    for a second request.

    Then the model processes are killed (as the OOM killer would): they
    leave nothing in the temporary folder. Until session 44 each left an
    `anemone-bls-*` folder holding the socket its forked processes reach
    it through (48 on the test machine after a day of tests)."""
    import tritonclient.grpc as grpcclient

    repo = tmp_path / "models"
    python_repository(repo, models=[("adder", ADDER_CONFIG, ADDER), ("forks", FORKS_CONFIG, FORKS)])
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        g = grpcclient.InferenceServerClient(addresses["gRPC"])
        for _ in range(2):
            x = np.arange(16, dtype=np.float32) * 0.5
            inputs = [grpcclient.InferInput("IN", [16], "FP32")]
            inputs[0].set_data_from_numpy(x)
            result = g.infer("forks", inputs, client_timeout=60)
            np.testing.assert_allclose(result.as_numpy("OUT"), x + 1)
            assert len(set(result.as_numpy("PIDS").tolist())) > 1, result.as_numpy("PIDS")
        # A stream (exec(decoupled=True)) from a forked process is refused
        # with the reason, and the model serves on.
        inputs = [grpcclient.InferInput("IN", [1], "FP32")]
        inputs[0].set_data_from_numpy(np.array([-1], np.float32))
        with pytest.raises(Exception) as refused:
            g.infer("forks", inputs, client_timeout=60)
        assert "refused: exec(decoupled=True) is not supported from a process the model forked" in str(
            refused.value), refused.value
        x = np.arange(4, dtype=np.float32)
        inputs[0] = grpcclient.InferInput("IN", [4], "FP32")
        inputs[0].set_data_from_numpy(x)
        np.testing.assert_allclose(g.infer("forks", inputs, client_timeout=60).as_numpy("OUT"), x + 1)
        children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == proc.pid]
        assert children, "the Python models' processes were not found"
        for child in children:
            os.kill(int(child.name), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_running(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(p) for p in children), "a killed model process is still running"
        assert not list(temp.glob("anemone-bls-*")), list(temp.iterdir())
    finally:
        stop_serve(proc)


def _parent_of(proc_dir):
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _running(proc_dir):
    """Whether the process exists and is not a zombie (an idle model
    process that died is reaped at its model's next request or unload)."""
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("protocol", [0, 1])
def test_an_optional_input_may_be_left_out_and_the_model_sees_only_what_was_given(server, protocol):
    module, _ = clients(server[0])[protocol]
    address = server[0]["HTTP" if protocol == 0 else "gRPC"]
    rng = np.random.default_rng(11)
    asks = [(rng.standard_normal((1, 1), dtype=np.float32),
             rng.standard_normal((1, 1), dtype=np.float32) if i % 2 else None) for i in range(16)]

    def run(ask):
        x, scale = ask
        client = module.InferenceServerClient(address)
        inputs = [("X", x)] + ([("SCALE", scale)] if scale is not None else [])
        result = infer(module, client, "optional", inputs)
        return (result.as_numpy("Y"), result.as_numpy("GIVEN")[0, 0].decode(),
                int(result.as_numpy("BATCH")[0, 0]), int(result.as_numpy("MIXED")[0, 0]))

    batches = {"X": [], "X,SCALE": []}
    with cf.ThreadPoolExecutor(8) as pool:
        for (x, scale), (y, given, batch, mixed) in zip(asks, pool.map(run, asks)):
            np.testing.assert_allclose(y, x * scale if scale is not None else x, rtol=1e-6)
            assert given == ("X,SCALE" if scale is not None else "X")
            # Requests that give different inputs never share a batch, as
            # in Triton; those that give the same are batched, also those
            # that leave SCALE out (they ran alone, unbatched, before).
            assert mixed == 1, (given, batch, mixed)
            batches[given].append(batch)
    assert max(batches["X"]) >= 2 and max(batches["X,SCALE"]) >= 2, batches
    # A required input is still required.
    with pytest.raises(InferenceServerException) as e:
        infer(module, module.InferenceServerClient(address), "optional", [("SCALE", asks[1][1])])
    assert "missing input 'X'" in e.value.message()


def test_a_model_py_that_never_finishes_importing_fails_its_load_and_the_rest_serve(server):
    addresses, _ = server
    request = urllib.request.Request(f"http://{addresses['HTTP']}/v2/repository/index", data=b"{}")
    with urllib.request.urlopen(request) as r:
        index = {m["name"]: m for m in json.load(r)}
    hangs = index["hangs"]
    assert hangs["state"] == "UNAVAILABLE", hangs
    assert "did not finish importing and initialize() within 3 s" in hangs["reason"], hangs
    assert "ANEMONE_PYTHON_INIT_TIMEOUT_S" in hangs["reason"]
    assert index["add_sub"]["state"] == "READY"


LACKS_DATA_TYPE = '''import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    @staticmethod
    def auto_complete_config(c):
        c.add_input({"name": "X", "dims": [1]})
        return c

    def execute(self, requests):
        return []
'''


def test_a_traceback_through_pb_utils_names_its_file_and_line(tmp_path):
    """The load that fails in pb_utils' auto_complete_config helpers logs
    the traceback (the refusal says so), each frame naming the file and line
    of anemone's pb_utils that raised: the line shown holds the `raise`."""
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_text(LACKS_DATA_TYPE)
    (tmp_path / "m" / "config.pbtxt").write_text('backend: "python"\n')
    log = tmp_path / "log.txt"
    proc, addresses = start_serve(tmp_path, "--strict-readiness", "false", "--log-file", str(log))
    try:
        wait_ready(addresses["HTTP"])
    finally:
        stop_serve(proc)
    frames = re.findall(r'File "(triton_python_backend_\w+\.py)", line (\d+)', log.read_text())
    assert frames, log.read_text()[-2000:]
    stub = ROOT / "crates/anemone-backends/src/python/stub"
    name, line = frames[-1]
    source = (stub / name).read_text().splitlines()
    assert "raise ValueError" in source[int(line) - 1], (name, line, source[int(line) - 1])


def test_a_python_without_numpy_or_with_a_broken_one_is_named_and_the_rest_serves(tmp_path):
    """The Python backend's probe finds numpy without importing it (an import
    cost every server start about 0.3 s of CPU, Python model or not). A
    Python without numpy: the backend is unavailable, saying so, and a
    Python model fails to load naming numpy and what to install; a numpy that
    is there but does not import fails the load with its ImportError and the
    advice to reinstall it, not to fix model.py. The ONNX model beside them
    serves either way (`anemone models` exits 1, naming the failed one)."""
    import subprocess

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples/models/add", repo / "add")
    shutil.copytree(ROOT / "examples/python_models/add_sub", repo / "add_sub")
    fake = tmp_path / "fake" / "numpy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("numpy.core.multiarray failed to import (simulated)")\n')
    (fake / "version.py").write_text('version = "9.9.9"\n')
    pythons = {"none": f'exec {sys.executable} -S "$@"\n',
               "broken": f'PYTHONPATH={fake.parent} exec {sys.executable} "$@"\n'}
    binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
    for which, body in pythons.items():
        python = tmp_path / f"python-{which}"
        python.write_text("#!/bin/sh\n" + body)
        python.chmod(0o755)
        p = subprocess.run([str(binary), "models", "--model-repository", str(repo)], capture_output=True, text=True,
                           env=dict(os.environ, ANEMONE_PYTHON=str(python)), timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 1 and re.search(r"^add +1 +READY", p.stdout, re.M), out
        assert re.search(r"^add_sub +1 +UNAVAILABLE", p.stdout, re.M), out
        if which == "none":
            assert "cannot import numpy (ModuleNotFoundError: No module named 'numpy')" in out, out
            assert "install Python 3 with numpy" in out, out
        else:
            assert "numpy.core.multiarray failed to import (simulated)" in out, out
            assert f"{python} -m pip install --force-reinstall numpy" in out and "fix model.py" not in out, out
        doctor = subprocess.run([str(binary), "doctor"], capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, ANEMONE_PYTHON=str(python)))
        line = next(l for l in doctor.stdout.splitlines() if l.strip().startswith("python "))
        assert ("unavailable" in line) == (which == "none"), line
        if which == "broken":
            assert "numpy 9.9.9" in line, line
