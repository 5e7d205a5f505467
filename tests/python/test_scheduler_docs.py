"""The request scheduler as docs/SERVING.md describes it, tested as a user
moving a Triton config over would meet it: "What config.pbtxt may say",
"Reshape", "Paths and file bounds", "Queue, batching and instances",
"Response cache", "Warm-up (model_warmup)" and "Statistics" as far as
batching and the cache show in it.

Models are built here with the onnx package: `add` (x, y [b, 4] -> sum,
diff), `var` (the same with a variable second dimension), `gather` (rows of
a fixed table; an index out of range is an engine error) and `slow` (a Loop
of max(n) steps of v = tanh(v @ W) from a fixed v0, y = x + v: the request's
`n` picks how long the engine runs, whatever the batch). Every served number
is compared with numpy or ONNX Runtime's Python API. Timings are only used
with wide margins (a blocker runs for about a second; the machine is shared).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from serve_support import start_serve, stop_serve, until_gauges
from tritonclient.utils import InferenceServerException

# ---------------------------------------------------------------- models

WIDTH = 256
W_SLOW = (np.random.default_rng(1).standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
TABLE = np.arange(40, dtype=np.float32).reshape(10, 4) * 1.5
BLOCK = 160000  # Loop steps of a blocker: a second or two of engine time (one of half a second left tests racing an idle machine)


def _save(graph, path):
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def add_model(path, width=4, dims=None):
    dims = dims or ["b", width]
    ins = [h.make_tensor_value_info(n, T.FLOAT, dims) for n in ("x", "y")]
    outs = [h.make_tensor_value_info(n, T.FLOAT, dims) for n in ("sum", "diff")]
    _save(h.make_graph([h.make_node("Add", ["x", "y"], ["sum"]), h.make_node("Sub", ["x", "y"], ["diff"])],
                       "add", ins, outs), path)


def var_model(path):
    add_model(path, "L")


def var3_model(path):
    add_model(path, dims=["b", "L", 4])


def wide_model(path):
    add_model(path, 1024)


def gather_model(path):
    i = h.make_tensor_value_info("idx", T.INT64, ["b", 1])
    o = h.make_tensor_value_info("row", T.FLOAT, ["b", 1, 4])
    _save(h.make_graph([h.make_node("Gather", ["table", "idx"], ["row"], axis=0)], "gather", [i], [o],
                       initializer=[nh.from_array(TABLE, "table")]), path)


def slow_model(path):
    body = h.make_graph(
        [h.make_node("MatMul", ["v_in", "W"], ["mm"]), h.make_node("Tanh", ["mm"], ["v_out"]),
         h.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("v_in", T.FLOAT, None)],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, None)])
    nodes = [
        h.make_node("ReduceMax", ["n"], ["nmax"], keepdims=0),
        h.make_node("Constant", [], ["t"], value=nh.from_array(np.array(True))),
        h.make_node("Loop", ["nmax", "t", "v0"], ["vf"], body=body),
        h.make_node("Add", ["x", "vf"], ["y"]),
    ]
    _save(h.make_graph(nodes, "slow",
                       [h.make_tensor_value_info("x", T.FLOAT, ["b", WIDTH]),
                        h.make_tensor_value_info("n", T.INT64, ["b", 1])],
                       [h.make_tensor_value_info("y", T.FLOAT, ["b", WIDTH])],
                       initializer=[nh.from_array(W_SLOW, "W"),
                                    nh.from_array(np.full((1, WIDTH), 0.5, np.float32), "v0")]), path)


BUILD = {"add": add_model, "var": var_model, "var3": var3_model, "wide": wide_model, "gather": gather_model, "slow": slow_model}

IO_ADD = """input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
IO_VAR = IO_ADD.replace("[ 4 ]", "[ -1 ]")
IO_WIDE = IO_ADD.replace("[ 4 ]", "[ 1024 ]")
IO_SLOW = f"""input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {WIDTH} ] }}, {{ name: "n" data_type: TYPE_INT64 dims: [ 1 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {WIDTH} ] }} ]
"""
IO_GATHER = """input [ { name: "idx" data_type: TYPE_INT64 dims: [ 1 ] } ]
output [ { name: "row" data_type: TYPE_FP32 dims: [ 1, 4 ] } ]
"""
ORT = 'parameters { key: "backends" value: { string_value: "onnxruntime" } }\n'
CACHE = "response_cache { enable: true }\n"


def warmup(name="s", bs=1, count=None, xd="dims: [ 4 ] random_data: true", yd="dims: [ 4 ] zero_data: true",
           ytype="TYPE_FP32"):
    c = f"count: {count} " if count is not None else ""
    return (f'model_warmup [ {{ name: "{name}" batch_size: {bs} {c}\n'
            f'  inputs {{ key: "x" value: {{ data_type: TYPE_FP32 {xd} }} }}\n'
            f'  inputs {{ key: "y" value: {{ data_type: {ytype} {yd} }} }} }} ]\n')


def build(root, specs):
    for name, (kind, config) in specs.items():
        (root / name / "1").mkdir(parents=True)
        BUILD[kind](root / name / "1" / "model.onnx")
        if config is not None:
            (root / name / "config.pbtxt").write_text(f'name: "{name}"\n' + config)
    return root


_SESSIONS = {}


def slow_expected(x, n):
    key = "slow"
    if key not in _SESSIONS:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"anemone-sched-slow-{os.getpid()}.onnx"
        slow_model(path)
        _SESSIONS[key] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        path.unlink()
    (y,) = _SESSIONS[key].run(["y"], {"x": x, "n": np.full((x.shape[0], 1), n, np.int64)})
    return y


# ---------------------------------------------------------------- server helpers

def index(http):
    r = requests.post(f"http://{http}/v2/repository/index", json={}, timeout=10)
    return {m["name"]: m for m in r.json()}


def settle(http, names, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        i = index(http)
        if all(i.get(n, {}).get("state") in ("READY", "UNAVAILABLE") for n in names):
            return i
        time.sleep(0.1)
    pytest.fail(f"models did not settle: {index(http)}")


@contextmanager
def serving(repo, *flags, env=None):
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*", *flags)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        yield proc, addresses
    finally:
        if proc.poll() is None:
            stop_serve(proc)


def post(http, model, body, timeout=60):
    r = requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=timeout)
    return r.status_code, r.json()


def slow_body(n, rows=1, x=None, priority=None, timeout=None):
    x = np.ones((rows, WIDTH), np.float32) if x is None else x
    body = {"inputs": [
        {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()},
        {"name": "n", "datatype": "INT64", "shape": [x.shape[0], 1], "data": [n] * x.shape[0]}]}
    params = {k: v for k, v in (("priority", priority), ("timeout", timeout)) if v is not None}
    if params:
        body["parameters"] = params
    return body


def add_body(x, y, order=("x", "y"), outputs=None):
    d = {"x": x, "y": y}
    body = {"inputs": [{"name": k, "datatype": "FP32", "shape": list(d[k].shape), "data": d[k].ravel().tolist()}
                       for k in order]}
    if outputs is not None:
        body["outputs"] = outputs
    return body


def out(answer, name):
    (o,) = [o for o in answer["outputs"] if o["name"] == name]
    return np.array(o["data"], np.float32).reshape(o["shape"])


def stats(http, model):
    s = requests.get(f"http://{http}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    i = s["inference_stats"]
    return {"success": i["success"]["count"], "fail": i["fail"]["count"], "hit": i["cache_hit"]["count"],
            "miss": i["cache_miss"]["count"], "queue": i["queue"]["count"], "exec": s["execution_count"],
            "rows": s["inference_count"],
            "batches": {b["batch_size"]: b["compute_infer"]["count"] for b in s["batch_stats"]}}


def _until(http, what, holds):
    assert until_gauges(http, what, holds), "the server has no anemone gauges in /metrics"


def running(http, *models):
    """Waits until each of `models` has a request executing (in flight and
    not queued), so that what a test sends next queues behind it. A fixed
    sleep was too short on a loaded machine: a blocker not yet arrived was
    batched with the requests meant to queue behind it."""
    _until(http, f"a request of each of {models} executing", lambda gauge: all(
        gauge("anemone_inference_requests_in_flight", m) - gauge("anemone_pending_requests", m) >= 1
        for m in models))


def queued(http, model, n):
    """Waits until `n` requests of `model` are queued."""
    _until(http, f"{n} requests of {model} queued", lambda gauge: gauge("anemone_pending_requests", model) >= n)


def timed(fn, *args):
    """fn(*args) and the time its answer came back."""
    r = fn(*args)
    return r, time.monotonic()


def check_slow(answer, x, n):
    np.testing.assert_allclose(out(answer, "y"), slow_expected(x, n), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the shared server

Q = "max_batch_size: 1\n" + IO_SLOW
SPECS = {
    # queue settings a Triton user may get wrong
    "bad_pref_gt_max": ("add", "max_batch_size: 4\n" + IO_ADD + "dynamic_batching { preferred_batch_size: [ 8 ] }\n"),
    "bad_pref_zero": ("add", "max_batch_size: 4\n" + IO_ADD + "dynamic_batching { preferred_batch_size: [ 0 ] }\n"),
    "bad_default_level": ("add", "max_batch_size: 4\n" + IO_ADD
                          + "dynamic_batching { priority_levels: 2 default_priority_level: 3 }\n"),
    "bad_no_default_level": ("add", "max_batch_size: 4\n" + IO_ADD + "dynamic_batching { priority_levels: 3 }\n"),
    "bad_policy_level": ("add", "max_batch_size: 4\n" + IO_ADD + "dynamic_batching { priority_levels: 2 "
                         "priority_queue_policy { key: 5 value: { max_queue_size: 1 } } }\n"),
    "bad_no_batch_pref": ("add", "max_batch_size: 0\n" + IO_ADD.replace("[ 4 ]", "[ -1, 4 ]")
                          + "dynamic_batching { preferred_batch_size: [ 2 ] }\n"),
    "neg_count": ("add", "max_batch_size: 4\n" + IO_ADD + "instance_group [ { count: -1 kind: KIND_CPU } ]\n"),
    "bad_queue_size": ("add", "max_batch_size: 4\n" + IO_ADD
                       + "dynamic_batching { default_queue_policy { max_queue_size: 18446744073709551615 } }\n"),
    "bad_gpu_kind": ("add", "max_batch_size: 4\n" + IO_ADD + ORT + "instance_group [ { count: 1 kind: KIND_GPU } ]\n"),
    "bad_cpu_gpus": ("add", "max_batch_size: 4\n" + IO_ADD + "instance_group [ { count: 1 kind: KIND_CPU gpus: [ 0 ] } ]\n"),
    # scheduling
    "zinst": ("slow", Q + "dynamic_batching { }\ninstance_group [ { count: 3 kind: KIND_CPU } ]\n"),
    "rows": ("add", "max_batch_size: 4\n" + IO_ADD + "dynamic_batching { max_queue_delay_microseconds: 1000 }\n"),
    # A delay well past the blocker's run (1.6 s idle, up to about six on a
    # machine loaded four times over), so that the rows queued behind it
    # are still within their delay when it ends.
    "pref": ("slow", "max_batch_size: 32\n" + IO_SLOW
             + "dynamic_batching { preferred_batch_size: [ 16, 32 ] max_queue_delay_microseconds: 10000000 }\n"),
    "pref2": ("slow", "max_batch_size: 32\n" + IO_SLOW
              + "dynamic_batching { preferred_batch_size: [ 2 ] max_queue_delay_microseconds: 10000000 }\n"),
    "var": ("var", "max_batch_size: 8\n" + IO_VAR + ORT + "dynamic_batching { max_queue_delay_microseconds: 1500000 }\n"),
    "gather": ("gather", "max_batch_size: 8\n" + IO_GATHER + ORT
               + "dynamic_batching { max_queue_delay_microseconds: 1500000 }\n"),
    "po": ("slow", Q + "dynamic_batching { preserve_ordering: true }\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n"),
    "npo": ("slow", Q + "dynamic_batching { }\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n"),
    "order": ("slow", Q + "dynamic_batching { priority_levels: 2 default_priority_level: 2 }\n"),
    "prio": ("slow", Q + "dynamic_batching { priority_levels: 2 default_priority_level: 2 "
             "priority_queue_policy { key: 2 value: { max_queue_size: 1 } } }\n"),
    "rej": ("slow", Q + "dynamic_batching { default_queue_policy { default_timeout_microseconds: 300000 "
            "timeout_action: REJECT } }\n"),
    "delay": ("slow", Q + "dynamic_batching { default_queue_policy { default_timeout_microseconds: 200000 "
              "timeout_action: DELAY max_queue_size: 2 } }\n"),
    "ovr_delay": ("slow", Q + "dynamic_batching { default_queue_policy { default_timeout_microseconds: 100000000 "
                  "allow_timeout_override: true timeout_action: DELAY } }\n"),
    "ovr_reject": ("slow", Q + "dynamic_batching { default_queue_policy { allow_timeout_override: true "
                   "timeout_action: REJECT } }\n"),
    "unbounded": ("slow", Q + "dynamic_batching { default_queue_policy { max_queue_size: 0 } }\n"),
    "gone": ("slow", Q + "dynamic_batching { }\n"),
    # Triton loads these (tritonserver 2.51, measured): a dynamic batcher
    # without a batch dimension queues, one request an engine call; DELAY
    # without a timeout delays nothing, so preserve_ordering allows it.
    "nb_queue": ("slow", "max_batch_size: 0\n" + IO_SLOW.replace("dims: [ ", "dims: [ -1, ")
                 + "dynamic_batching { max_queue_delay_microseconds: 10000000 priority_levels: 2 "
                 "default_priority_level: 2 default_queue_policy { max_queue_size: 2 } }\n"),
    "po_delay": ("slow", Q + "dynamic_batching { preserve_ordering: true default_queue_policy { timeout_action: DELAY } }\n"),
    # reshape
    "rsvar": ("var3", "max_batch_size: 8\n" + IO_ADD.replace("dims: [ 4 ]", "dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] }")
              + ORT + "dynamic_batching { max_queue_delay_microseconds: 1500000 }\n"),
    # response cache
    "cadd": ("add", "max_batch_size: 4\n" + IO_ADD + CACHE),
    "cbatch": ("add", "max_batch_size: 4\n" + IO_ADD + CACHE + "dynamic_batching { }\n"),
    "creshape": ("add", "max_batch_size: 4\n" + IO_ADD.replace("dims: [ 4 ]", "dims: [ 2, 2 ] reshape { shape: [ 4 ] }")
                 + CACHE + "dynamic_batching { }\n"),
    "cwide": ("wide", "max_batch_size: 4\n" + IO_WIDE + CACHE),
    # warm-up
    "w_ok": ("add", "max_batch_size: 4\n" + IO_ADD + "dynamic_batching { }\n"
             "instance_group [ { count: 2 kind: KIND_CPU } ]\n" + warmup(bs=4, count=5)),
    "w_reshape": ("add", "max_batch_size: 4\n" + IO_ADD.replace("dims: [ 4 ]", "dims: [ 2, 2 ] reshape { shape: [ 4 ] }")
                  + warmup(bs=2, xd="dims: [ 2, 2 ] random_data: true", yd="dims: [ 2, 2 ] zero_data: true")),
    "w_bs_big": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(bs=5)),
    "w_nobatch_bs2": ("add", "max_batch_size: 0\n" + IO_ADD.replace("[ 4 ]", "[ 1, 4 ]")
                      + warmup(bs=2, xd="dims: [ 1, 4 ] zero_data: true", yd="dims: [ 1, 4 ] zero_data: true")),
    "w_dynamic_dim": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(xd="dims: [ -1 ] zero_data: true")),
    "w_count": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(count=1001)),
    "w_type": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(ytype="TYPE_INT32")),
    "w_dims": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(xd="dims: [ 5 ] zero_data: true")),
    "w_model_shape": ("add", "max_batch_size: 4\n"
                      + IO_ADD.replace("dims: [ 4 ]", "dims: [ 2, 2 ] reshape { shape: [ 4 ] }") + warmup()),
    "w_file_short": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(xd='dims: [ 4 ] input_data_file: "short.bin"')),
    "w_file_long": ("add", "max_batch_size: 4\n" + IO_ADD + CACHE
                    + warmup(bs=3, xd='dims: [ 4 ] input_data_file: "long.bin"')),
    "w_file_fifo": ("add", "max_batch_size: 4\n" + IO_ADD + warmup(xd='dims: [ 4 ] input_data_file: "pipe.bin"')),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = build(tmp_path_factory.mktemp("sched"), SPECS)
    for m in ("w_file_short", "w_file_long", "w_file_fifo"):
        (repo / m / "warmup").mkdir()
    (repo / "w_file_short/warmup/short.bin").write_bytes(np.zeros(3, np.float32).tobytes())
    (repo / "w_file_long/warmup/long.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    os.mkfifo(repo / "w_file_fifo/warmup/pipe.bin")
    with serving(repo, "--cache-config", "local,size=4KiB") as (proc, addresses):
        http = addresses["HTTP"]
        yield {"proc": proc, "http": http, "grpc": addresses["gRPC"], "index": settle(http, SPECS)}
        assert proc.poll() is None, "the server died during the tests"


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(40) as p:
        yield p


def ready(server, *models):
    for m in models:
        state = server["index"][m]
        assert state["state"] == "READY", f"{m}: {state}"


# ================================================================ config.pbtxt: queue settings

@pytest.mark.parametrize("model, words", [
    ("bad_pref_gt_max", ["preferred_batch_size", "8", "max_batch_size"]),
    ("bad_pref_zero", ["preferred_batch_size", "0"]),
    ("bad_default_level", ["default_priority_level", "3", "priority_levels"]),
    # tritonserver 2.51: "default priority level must be in range [1, 3]".
    ("bad_no_default_level", ["default_priority_level", "priority_levels is 3", "[1, 3]"]),
    ("bad_policy_level", ["priority_queue_policy", "5", "priority_levels"]),
    ("bad_no_batch_pref", ["preferred_batch_size 2", "needs a batch dimension", "max_batch_size is 0"]),
    ("bad_queue_size", ["line 5", "out of range"]),
    ("bad_gpu_kind", ["KIND_GPU"]),
    ("bad_cpu_gpus", ["KIND_CPU", "gpus"]),
])
def test_queue_settings_a_triton_user_may_get_wrong_fail_the_load_naming_them(server, model, words):
    row = server["index"][model]
    assert row["state"] == "UNAVAILABLE", row
    for w in words:
        assert w in row["reason"], f"{model}: {w!r} missing from {row['reason']!r}"


def test_a_huge_priority_levels_value_leaves_the_server_serving(tmp_path):
    """priority_levels is a uint64 in Triton's proto; a careless 4000000000
    must fail that model's load (or load it), not take every model down."""
    repo = build(tmp_path, {
        "ok": ("add", "max_batch_size: 4\n" + IO_ADD),
        "many_levels": ("add", "max_batch_size: 4\n" + IO_ADD
                        + "dynamic_batching { priority_levels: 4000000000 default_priority_level: 4000000000 }\n"),
    })
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "ok")
    try:
        http = addresses["HTTP"]
        x = np.arange(4, dtype=np.float32)[None]
        r = requests.post(f"http://{http}/v2/repository/models/many_levels/load", timeout=60)
        assert r.status_code in (200, 400), r.text
        time.sleep(0.5)
        assert proc.poll() is None, f"the server exited with status {proc.returncode} loading many_levels"
        status, answer = post(http, "ok", add_body(x, x))
        assert status == 200 and out(answer, "sum").tolist() == (2 * x).tolist()
    except requests.ConnectionError:
        pytest.fail(f"the server died loading a model with priority_levels 4000000000 (status {proc.wait(10)})")
    finally:
        if proc.poll() is None:
            stop_serve(proc)


# ================================================================ instances

def test_a_queue_with_three_instances_holds_four_named_threads_and_shows_the_group(server):
    ready(server, "zinst")
    pid = server["proc"].pid
    names = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            names.append(Path(f"/proc/{pid}/task/{t}/comm").read_text().strip())
        except FileNotFoundError:
            pass
    # Linux keeps 15 characters of a thread's name: anemone-zinst-instance-N -> anemone-zinst-i
    assert names.count("anemone-zinst-i") == 3, sorted(n for n in names if n.startswith("anemone"))
    assert sum(1 for n in names if n.startswith("anemone-queue-z")) == 1, names
    config = requests.get(f"http://{server['http']}/v2/models/zinst/config", timeout=10).json()
    groups = config["instance_group"]
    assert sum(g["count"] for g in groups) == 3 and all(g["kind"] == "KIND_CPU" for g in groups), groups


def test_a_negative_instance_count_loads_one_instance_as_triton_does(server):
    """tritonserver 2.51 loads `count: -1` as one instance (its /config
    shows count 1); anemone refused the model before."""
    ready(server, "neg_count")
    config = requests.get(f"http://{server['http']}/v2/models/neg_count/config", timeout=10).json()
    assert [(g["count"], g["kind"]) for g in config["instance_group"]] == [(1, "KIND_CPU")], config
    x = np.arange(4, dtype=np.float32)[None]
    status, answer = post(server["http"], "neg_count", add_body(x, x))
    assert status == 200 and out(answer, "sum").tolist() == (2 * x).tolist(), answer


# ================================================================ batching

def test_a_batched_request_over_max_batch_size_or_empty_is_refused_naming_the_input(server):
    ready(server, "rows")
    http = server["http"]
    before = stats(http, "rows")
    for rows in (5, 0):
        x = np.ones((rows, 4), np.float32)
        status, answer = post(http, "rows", add_body(x, x))
        assert status == 400, (rows, answer)
        assert "'x'" in answer["error"] or "x" in answer["error"].split(), answer
    g = grpcclient.InferenceServerClient(server["grpc"])
    inputs = [grpcclient.InferInput(n, [5, 4], "FP32") for n in ("x", "y")]
    for i in inputs:
        i.set_data_from_numpy(np.ones((5, 4), np.float32))
    with pytest.raises(InferenceServerException) as e:
        g.infer("rows", inputs)
    assert "INVALID_ARGUMENT" in str(e.value.status()), e.value
    after = stats(http, "rows")
    assert (after["exec"], after["fail"]) == (before["exec"], before["fail"]), "refused before the queue: not a fail"
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    status, answer = post(http, "rows", add_body(x, -x))
    assert status == 200 and (out(answer, "diff") == 2 * x).all()


def test_preferred_sizes_cut_23_queued_rows_into_16_then_7_and_2_plus_1(server, pool):
    """The docs' own examples: 23 rows with preferred [16, 32] run as 16 at
    once, the other 7 after the delay; with preferred [2], three requests
    behind a running batch run as two at once and the third alone. The
    blockers run BLOCK / 2 steps (about 1.6 s idle; a full BLOCK of 32 rows
    took over the models' 10 s delay under four test workers, and then, as
    in Triton, everything queued runs at once: 23), and every row is queued
    before they end."""
    ready(server, "pref", "pref2")
    http = server["http"]
    blockers = [pool.submit(post, http, "pref", slow_body(BLOCK // 2, rows=32)),   # full: runs at once
                pool.submit(post, http, "pref2", slow_body(BLOCK // 2, rows=2))]    # preferred: runs at once
    running(http, "pref", "pref2")
    xs = np.random.default_rng(7).standard_normal((23, WIDTH)).astype(np.float32)
    rows = [pool.submit(post, http, "pref", slow_body(3, x=xs[i:i + 1])) for i in range(23)]
    threes = [pool.submit(post, http, "pref2", slow_body(3, x=xs[i:i + 1])) for i in range(3)]
    queued(http, "pref", 23)
    queued(http, "pref2", 3)
    assert not any(f.done() for f in blockers), "a blocker ended before every row was queued: the test proves nothing"
    for f in blockers:
        assert f.result()[0] == 200
    want = slow_expected(xs, 3)
    for i, f in enumerate(rows + threes):
        status, answer = f.result()
        assert status == 200, answer
        np.testing.assert_allclose(out(answer, "y")[0], want[i % 23 if i < 23 else i - 23], rtol=1e-4, atol=1e-4)
    assert stats(http, "pref")["batches"] == {32: 1, 16: 1, 7: 1}
    assert stats(http, "pref2")["batches"] == {2: 2, 1: 1}


def test_requests_of_different_shapes_are_never_mixed_and_the_batcher_looks_past_them(server, pool):
    ready(server, "var")
    http = server["http"]
    futures = []
    for k, width in enumerate([3, 5, 3, 5, 2]):
        x = np.full((1, width), k + 1, np.float32)
        futures.append((x, pool.submit(post, http, "var", add_body(x, 10 * x))))
        time.sleep(0.03)
    for x, f in futures:
        status, answer = f.result()
        assert status == 200, answer
        assert out(answer, "sum").tolist() == (11 * x).tolist() and out(answer, "diff").tolist() == (-9 * x).tolist()
    s = stats(http, "var")
    # widths 3+3, 5+5 and 2 alone: three calls, sizes 2, 2 and 1
    assert s["batches"] == {2: 2, 1: 1} and s["rows"] == 5 and s["exec"] == 3, s


def test_a_request_that_fails_its_batch_fails_alone_and_the_others_get_their_rows(server, pool):
    ready(server, "gather")
    http = server["http"]
    idx = [1, 2, 100, 3, 4]
    futures = [pool.submit(post, http, "gather", {"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1, 1],
                                                              "data": [i]}]}) for i in idx]
    for i, f in zip(idx, futures):
        status, answer = f.result()
        if i == 100:
            assert status == 400 and "idx" in answer["error"], answer
        else:
            assert status == 200, answer
            assert out(answer, "row").ravel().tolist() == TABLE[i].tolist()
    s = stats(http, "gather")
    assert (s["success"], s["fail"], s["rows"]) == (4, 1, 4), s


def test_preserve_ordering_holds_a_fast_answer_behind_a_slow_one(server, pool):
    ready(server, "po", "npo")
    http = server["http"]
    x = np.full((1, WIDTH), 0.25, np.float32)
    gaps = {}
    for model in ("po", "npo"):
        slow = pool.submit(timed, post, http, model, slow_body(BLOCK))
        running(http, model)
        fast = pool.submit(timed, post, http, model, slow_body(2, x=x))
        (s_status, _), s_done = slow.result()
        (f_status, f_answer), f_done = fast.result()
        assert s_status == 200 and f_status == 200
        check_slow(f_answer, x, 2)
        gaps[model] = s_done - f_done  # > 0: the fast answer left first
    assert gaps["npo"] > 0.3, f"two instances: the fast request ran beside the slow one ({gaps})"
    assert gaps["po"] < 0.1, f"preserve_ordering: the fast answer left {gaps['po']:.2f} s before the slow one"


def test_a_higher_priority_request_overtakes_every_queued_lower_one(server, pool):
    ready(server, "order")
    http = server["http"]
    # A blocker long enough to still run when the high request comes (one
    # of about a second was sometimes done by then on an idle machine, and
    # a low request then ran first, rightly).
    blocker = pool.submit(post, http, "order", slow_body(2 * BLOCK, priority=1))
    running(http, "order")
    lows = [pool.submit(timed, post, http, "order", slow_body(15000)) for _ in range(3)]
    queued(http, "order", 3)
    high = pool.submit(timed, post, http, "order", slow_body(15000, priority=1))
    assert not blocker.done(), "the blocker ended before the high request came: the test proves nothing"
    assert blocker.result()[0] == 200
    (h_status, _), h_done = high.result()
    assert h_status == 200
    for f in lows:
        (status, _), done = f.result()
        assert status == 200
        assert done > h_done, "a queued lower-priority request ran before the higher-priority one"


def test_priority_0_and_levels_the_model_lacks_use_the_default_level_and_its_queue_bound(server, pool):
    ready(server, "prio")
    http = server["http"]
    before = stats(http, "prio")
    blocker = pool.submit(post, http, "prio", slow_body(BLOCK, priority=1))
    running(http, "prio")
    waiting = pool.submit(post, http, "prio", slow_body(1, priority=7))   # level 7 -> default level 2
    queued(http, "prio", 1)
    for p in (0, 3, None):
        status, answer = post(http, "prio", slow_body(1, priority=p))
        assert status == 503, (p, answer)
        assert "queue for priority level 2 is full" in answer["error"], answer
    g = grpcclient.InferenceServerClient(server["grpc"])
    inputs = [grpcclient.InferInput("x", [1, WIDTH], "FP32"), grpcclient.InferInput("n", [1, 1], "INT64")]
    inputs[0].set_data_from_numpy(np.ones((1, WIDTH), np.float32))
    inputs[1].set_data_from_numpy(np.array([[1]], np.int64))
    with pytest.raises(InferenceServerException) as e:
        g.infer("prio", inputs, priority=9)
    assert "UNAVAILABLE" in str(e.value.status()) and "level 2 is full" in e.value.message()
    # level 1 still has room
    status, _ = post(http, "prio", slow_body(1, priority=1))
    assert status == 200
    assert blocker.result()[0] == 200 and waiting.result()[0] == 200
    after = stats(http, "prio")
    assert after["success"] - before["success"] == 3 and after["fail"] == before["fail"], after
    metrics = requests.get(f"http://{http}/metrics", timeout=10).text
    refused = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("anemone_inference_request_failure_total") and 'model="prio"' in line
               and 'reason="unavailable"' in line]
    assert refused and sum(refused) == 4, "the Prometheus failure counter counts the full-queue refusals"


def test_a_whole_number_priority_the_model_lacks_means_the_default_level_even_past_u32(server):
    ready(server, "prio")
    http = server["http"]
    x = np.full((1, WIDTH), 0.125, np.float32)
    for p in (3, 2**32, 2**63, 2**64 - 1):
        status, answer = post(http, "prio", slow_body(1, x=x, priority=p))
        assert status == 200, (p, answer)
        check_slow(answer, x, 1)
    g = grpcclient.InferenceServerClient(server["grpc"])
    inputs = [grpcclient.InferInput("x", [1, WIDTH], "FP32"), grpcclient.InferInput("n", [1, 1], "INT64")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.array([[1]], np.int64))
    got = g.infer("prio", inputs, priority=2**64 - 1).as_numpy("y")
    np.testing.assert_allclose(got, slow_expected(x, 1), rtol=1e-4, atol=1e-4)


def test_a_queue_timeout_with_reject_is_504_over_http_deadline_exceeded_over_grpc_and_never_runs(server, pool):
    ready(server, "rej")
    http = server["http"]
    blocker = pool.submit(post, http, "rej", slow_body(BLOCK))
    running(http, "rej")

    def grpc_waiter():
        g = grpcclient.InferenceServerClient(server["grpc"])
        inputs = [grpcclient.InferInput("x", [1, WIDTH], "FP32"), grpcclient.InferInput("n", [1, 1], "INT64")]
        inputs[0].set_data_from_numpy(np.ones((1, WIDTH), np.float32))
        inputs[1].set_data_from_numpy(np.array([[1]], np.int64))
        try:
            g.infer("rej", inputs)
            return "answered"
        except InferenceServerException as e:
            return str(e.status())

    gw = pool.submit(grpc_waiter)
    t0 = time.monotonic()
    status, answer = post(http, "rej", slow_body(1))
    waited = time.monotonic() - t0
    assert status == 504 and "timed out" in answer["error"], answer
    assert waited < 0.9 * 3, f"the 300 ms queue timeout answered after {waited:.2f} s"
    assert "DEADLINE_EXCEEDED" in gw.result()
    assert blocker.result()[0] == 200
    time.sleep(0.3)
    s = stats(http, "rej")
    assert (s["exec"], s["rows"], s["success"], s["fail"]) == (1, 1, 1, 2), s


def test_delay_runs_timed_out_requests_later_and_a_full_queue_still_refuses(server, pool):
    ready(server, "delay")
    http = server["http"]
    blocker = pool.submit(post, http, "delay", slow_body(BLOCK))
    running(http, "delay")
    x = np.full((1, WIDTH), -0.5, np.float32)
    waiters = [pool.submit(post, http, "delay", slow_body(2, x=x)) for _ in range(4)]
    assert blocker.result()[0] == 200
    answers = [f.result() for f in waiters]
    codes = sorted(s for s, _ in answers)
    assert codes == [200, 200, 503, 503], answers
    for status, answer in answers:
        if status == 200:
            check_slow(answer, x, 2)
        else:
            assert "queue for priority level 1 is full" in answer["error"]
    s = stats(http, "delay")
    assert (s["success"], s["fail"], s["exec"]) == (3, 0, 3), s


def test_a_request_timeout_under_delay_and_override_delays_the_request(server, pool):
    """SERVING.md: a request's `timeout` replaces the queue timeout where
    allow_timeout_override is set, and DELAY puts a timed-out request behind
    the rest (Triton's semantics); it is not refused."""
    ready(server, "ovr_delay")
    http = server["http"]
    blocker = pool.submit(post, http, "ovr_delay", slow_body(BLOCK))
    running(http, "ovr_delay")
    status, answer = post(http, "ovr_delay", slow_body(1, timeout=100000))
    assert blocker.result()[0] == 200
    assert status == 200, answer


def test_a_request_timeout_shortens_a_queue_without_timeout_where_override_is_allowed(server, pool):
    ready(server, "ovr_reject")
    http = server["http"]
    blocker = pool.submit(post, http, "ovr_reject", slow_body(BLOCK))
    running(http, "ovr_reject")
    t0 = time.monotonic()
    status, answer = post(http, "ovr_reject", slow_body(1, timeout=150000))
    waited = time.monotonic() - t0
    assert status == 504 and "timed out" in answer["error"], answer
    assert waited < 0.8, waited
    assert blocker.result()[0] == 200
    time.sleep(0.2)
    s = stats(http, "ovr_reject")
    assert (s["exec"], s["fail"]) == (1, 1), s


def test_a_dynamic_batcher_without_a_batch_dimension_queues_one_request_a_call_as_tritons(server, pool):
    """SERVING.md: `dynamic_batching` on a model with `max_batch_size: 0`
    loads, as in Triton: its queue's size and priorities apply, each
    request runs alone (its first dimension is not rows to batch), and the
    delay holds nothing. anemone refused the config before."""
    ready(server, "nb_queue", "po_delay")
    http = server["http"]
    before = stats(http, "nb_queue")
    blocker = pool.submit(post, http, "nb_queue", slow_body(BLOCK, priority=1))
    running(http, "nb_queue")
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal((rows, WIDTH)).astype(np.float32) for rows in (2, 3)]
    lows = [pool.submit(timed, post, http, "nb_queue", slow_body(15000, x=x)) for x in xs]
    queued(http, "nb_queue", 2)
    status, answer = post(http, "nb_queue", slow_body(3, x=xs[0]))
    assert status == 503 and "full" in answer["error"], (status, answer)
    xh = rng.standard_normal((1, WIDTH)).astype(np.float32)
    high = pool.submit(timed, post, http, "nb_queue", slow_body(15000, x=xh, priority=1))
    queued(http, "nb_queue", 3)
    assert not blocker.done(), "the blocker ended before the others queued: the test proves nothing"
    assert blocker.result()[0] == 200
    (status, answer), high_done = high.result()
    assert status == 200, answer
    check_slow(answer, xh, 15000)
    for x, f in zip(xs, lows):
        (status, answer), done = f.result()
        assert status == 200, answer
        check_slow(answer, x, 15000)
        assert done > high_done, "a queued lower-priority request ran before the higher-priority one"
    after = stats(http, "nb_queue")
    assert after["exec"] - before["exec"] == 4, after
    assert after["rows"] - before["rows"] == 4, after
    assert set(after["batches"]) == {1}, after["batches"]
    status, answer = post(http, "po_delay", slow_body(2, x=xs[1][:1]))
    assert status == 200, answer
    check_slow(answer, xs[1][:1], 2)


def test_max_queue_size_0_is_unbounded(server, pool):
    ready(server, "unbounded")
    http = server["http"]
    blocker = pool.submit(post, http, "unbounded", slow_body(BLOCK))
    running(http, "unbounded")
    xs = np.random.default_rng(3).standard_normal((30, WIDTH)).astype(np.float32)
    waiters = [pool.submit(post, http, "unbounded", slow_body(1, x=xs[i:i + 1])) for i in range(30)]
    assert blocker.result()[0] == 200
    want = slow_expected(xs, 1)
    for i, f in enumerate(waiters):
        status, answer = f.result()
        assert status == 200, answer
        np.testing.assert_allclose(out(answer, "y")[0], want[i], rtol=1e-4, atol=1e-4)


def test_a_queued_request_whose_client_left_never_runs(server, pool):
    ready(server, "gone")
    http = server["http"]
    blocker = pool.submit(post, http, "gone", slow_body(BLOCK))
    running(http, "gone")
    host, port = http.rsplit(":", 1)
    body = json.dumps(slow_body(1)).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v2/models/gone/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        queued(http, "gone", 1)
    assert blocker.result()[0] == 200
    time.sleep(0.5)
    s = stats(http, "gone")
    assert (s["exec"], s["rows"], s["success"]) == (1, 1, 1), s


# ================================================================ reshape with batching

def test_a_reshape_with_variable_sizes_batches_only_like_shapes_and_answers_in_dims(server, pool):
    ready(server, "rsvar")
    http = server["http"]
    futures = []
    for k, length in enumerate([3, 1, 3, 1]):
        x = (np.arange(4 * length, dtype=np.float32).reshape(1, length, 2, 2) + 10 * k)
        futures.append((x, pool.submit(post, http, "rsvar", add_body(x, x * 3))))
        time.sleep(0.03)
    for x, f in futures:
        status, answer = f.result()
        assert status == 200, answer
        assert out(answer, "sum").shape == x.shape and (out(answer, "sum") == 4 * x).all()
        assert (out(answer, "diff") == -2 * x).all()
    assert stats(http, "rsvar")["batches"] == {2: 2}
    # the model's own shape ([batch, L, 4]) is not what dims say
    x = np.ones((1, 3, 4), np.float32)
    status, answer = post(http, "rsvar", add_body(x, x))
    assert status == 400 and "'x'" in answer["error"], answer


# ================================================================ response cache

def test_the_same_tensors_over_json_binary_and_grpc_in_any_input_order_share_one_answer(server):
    ready(server, "cadd")
    http = server["http"]
    # Tensors no other test sends, and the statistics as a difference: the
    # model is shared, and pytest-xdist may run its tests in any order.
    x = np.array([[1, 2, 3, 4]], np.float32)
    y = np.array([[10, 20, 30, 40.25]], np.float32)
    before = stats(http, "cadd")
    status, a = post(http, "cadd", add_body(x, y))
    assert status == 200 and (out(a, "diff") == x - y).all()
    status, a = post(http, "cadd", add_body(x, y, order=("y", "x")))
    assert status == 200 and (out(a, "diff") == x - y).all() and (out(a, "sum") == x + y).all()
    c = httpclient.InferenceServerClient(http)
    ins = [httpclient.InferInput(n, [1, 4], "FP32") for n in ("y", "x")]
    ins[0].set_data_from_numpy(y, binary_data=True)
    ins[1].set_data_from_numpy(x, binary_data=True)
    assert (c.infer("cadd", ins).as_numpy("diff") == x - y).all()
    g = grpcclient.InferenceServerClient(server["grpc"])
    gins = [grpcclient.InferInput(n, [1, 4], "FP32") for n in ("x", "y")]
    gins[0].set_data_from_numpy(x)
    gins[1].set_data_from_numpy(y)
    assert (g.infer("cadd", gins).as_numpy("sum") == x + y).all()
    after = stats(http, "cadd")
    s = {k: after[k] - before[k] for k in ("success", "miss", "hit", "exec", "queue")}
    assert (s["success"], s["miss"], s["hit"], s["exec"]) == (4, 1, 3, 1), (before, after)
    assert s["queue"] == 4, f"Triton's queue duration counts cache hits too: {(before, after)}"


def test_outputs_asked_and_classification_are_never_answered_from_another_requests_entry(server):
    ready(server, "cadd")
    http = server["http"]
    x = np.array([[1, 5, 3, 4]], np.float32)
    y = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
    before = stats(http, "cadd")
    status, a = post(http, "cadd", add_body(x, y, outputs=[{"name": "sum"}]))
    assert status == 200 and [o["name"] for o in a["outputs"]] == ["sum"] and (out(a, "sum") == x + y).all()
    status, a = post(http, "cadd", add_body(x, y, outputs=[{"name": "diff"}]))
    assert status == 200 and [o["name"] for o in a["outputs"]] == ["diff"] and (out(a, "diff") == x - y).all()
    status, a = post(http, "cadd", add_body(x, y, outputs=[{"name": "sum", "parameters": {"classification": 2}}]))
    assert status == 200, a
    (o,) = a["outputs"]
    assert o["datatype"] == "BYTES" and o["data"] == ["5.500000:1", "4.500000:3"], o
    status, a = post(http, "cadd", add_body(x, y, outputs=[{"name": "sum"}]))
    assert status == 200 and a["outputs"][0]["datatype"] == "FP32" and (out(a, "sum") == x + y).all()
    after = stats(http, "cadd")
    assert after["hit"] - before["hit"] >= 1 and after["exec"] - before["exec"] >= 2, (before, after)


def test_an_answer_larger_than_the_whole_cache_is_never_stored(server):
    ready(server, "cwide")
    http = server["http"]
    x = np.arange(1024, dtype=np.float32)[None]
    for _ in range(3):
        status, a = post(http, "cwide", add_body(x, x))
        assert status == 200 and (out(a, "sum") == 2 * x).all()
    s = stats(http, "cwide")
    assert (s["hit"], s["miss"], s["exec"]) == (0, 3, 3), s


def test_cache_hits_on_batched_and_reshaped_models_run_no_engine_and_keep_served_shapes(server, pool):
    ready(server, "cbatch", "creshape")
    http = server["http"]
    x = np.array([[[1, 2], [3, 4]]], np.float32)
    for model, shape in (("cbatch", (1, 4)), ("creshape", (1, 2, 2))):
        xx = x.reshape(shape)
        answers = [post(http, model, add_body(xx, xx * 2)) for _ in range(3)]
        for status, a in answers:
            assert status == 200 and out(a, "sum").shape == shape and (out(a, "sum") == 3 * xx).all(), a
        s = stats(http, model)
        assert (s["success"], s["hit"], s["miss"], s["exec"], s["rows"]) == (3, 2, 1, 1, 1), (model, s)


def test_a_cached_model_on_a_server_without_a_cache_runs_every_request(tmp_path):
    repo = build(tmp_path, {"cadd": ("add", "max_batch_size: 4\n" + IO_ADD + CACHE)})
    with serving(repo) as (_, addresses):
        http = addresses["HTTP"]
        settle(http, ["cadd"])
        x = np.array([[1, 2, 3, 4]], np.float32)
        for _ in range(3):
            status, a = post(http, "cadd", add_body(x, x))
            assert status == 200 and (out(a, "sum") == 2 * x).all()
        s = stats(http, "cadd")
        assert (s["success"], s["hit"], s["exec"]) == (3, 0, 3), s


# ================================================================ warm-up

@pytest.mark.parametrize("model, words", [
    ("w_bs_big", ["'s'", "batch_size is 5", "max_batch_size"]),
    ("w_nobatch_bs2", ["'s'", "batch_size is 2"]),
    ("w_dynamic_dim", ["'s'", "-1"]),
    ("w_count", ["'s'", "1001"]),
    ("w_type", ["warm-up sample 's' failed on", "INT32"]),
    ("w_dims", ["warm-up sample 's' failed on", "'x'"]),
    ("w_model_shape", ["warm-up sample 's' failed on", "'x'"]),
    ("w_file_short", ["'s'", "short.bin"]),
    ("w_file_fifo", ["'s'", "pipe.bin"]),
])
def test_warmup_samples_that_do_not_fit_the_inputs_fail_the_load_naming_the_sample(server, model, words):
    row = server["index"][model]
    assert row["state"] == "UNAVAILABLE", row
    for w in words:
        assert w in row["reason"], f"{model}: {w!r} not in {row['reason']!r}"


def test_warmup_runs_are_not_counted_and_samples_in_dims_or_with_extra_file_bytes_load(server):
    ready(server, "w_ok", "w_reshape", "w_file_long")
    http = server["http"]
    for model in ("w_ok", "w_reshape", "w_file_long"):
        s = stats(http, model)
        assert (s["success"], s["exec"], s["rows"], s["queue"], s["miss"], s["batches"]) == (0, 0, 0, 0, 0, {}), (model, s)
    # the warm-up of w_file_long (zeros for y, file rows for x) put nothing into the cache
    x = np.arange(4, dtype=np.float32)[None]
    status, a = post(http, "w_file_long", add_body(x, np.zeros_like(x)))
    assert status == 200 and (out(a, "sum") == x).all()
    s = stats(http, "w_file_long")
    assert (s["hit"], s["miss"]) == (0, 1), s


def test_a_model_is_loading_and_not_ready_while_its_warmup_runs(tmp_path):
    repo = build(tmp_path, {"wslow": ("slow", "max_batch_size: 4\n" + IO_SLOW + ORT
                                      + f'model_warmup [ {{ name: "long" batch_size: 1 count: 3\n'
                                      f'  inputs {{ key: "x" value: {{ data_type: TYPE_FP32 dims: [ {WIDTH} ] zero_data: true }} }}\n'
                                      '  inputs { key: "n" value: { data_type: TYPE_INT64 dims: [ 1 ] input_data_file: "n.bin" } } } ]\n')})
    (repo / "wslow/warmup").mkdir()
    (repo / "wslow/warmup/n.bin").write_bytes(np.array([30000], np.int64).tobytes())
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit")
    try:
        http = addresses["HTTP"]
        seen = set()
        loader = threading.Thread(target=lambda: requests.post(f"http://{http}/v2/repository/models/wslow/load",
                                                               timeout=120))
        loader.start()
        while loader.is_alive():
            state = index(http).get("wslow", {}).get("state")
            r = requests.get(f"http://{http}/v2/models/wslow/ready", timeout=10)
            seen.add((state, r.status_code == 200))
            time.sleep(0.05)
        loader.join()
        assert ("LOADING", False) in seen, seen
        assert ("READY", True) not in seen or index(http)["wslow"]["state"] == "READY"
        assert index(http)["wslow"]["state"] == "READY"
        s = stats(http, "wslow")
        assert (s["exec"], s["success"]) == (0, 0), s
    finally:
        stop_serve(proc)


# ================================================================ paths and file bounds

def test_a_config_over_4_mib_is_refused_with_advice_that_works(tmp_path):
    repo = build(tmp_path, {"big": ("add", None), "ok": ("add", None)})
    (repo / "big/config.pbtxt").write_text(
        'name: "big"\n' + 'parameters { key: "k" value: { string_value: "v" } }\n' * 80000)
    assert (repo / "big/config.pbtxt").stat().st_size > 4 * 1024 * 1024
    with serving(repo, env={"ANEMONE_MAX_MODEL_FILE_BYTES": str(64 * 1024 * 1024)}) as (_, addresses):
        i = settle(addresses["HTTP"], ["big", "ok"])
        assert i["ok"]["state"] == "READY"
        reason = i["big"].get("reason", "")
        assert i["big"]["state"] == "UNAVAILABLE" and "config.pbtxt" in reason, i["big"]
        # the variable it names is already above the file's size here: the advice cannot be what limits it
        assert "ANEMONE_MAX_MODEL_FILE_BYTES" not in reason, reason
