"""Error paths and edge cases, as a production user of Triton meets them, of
the rate limiter (bad --rate-limit-resource values, the env form, per-device
and global resources, count 0, priority 0, requests that wait for resources
and time out, lose their client, batch, stream, or see their model unloaded),
the model loading API of Python models (ensembles, failed loads and reloads,
concurrent loads, a model in use, calls from a thread, finalize() and a
decoupled model) and BLS calls into sequence models (string and odd
correlation IDs, END without START, idle sequences, interleaving).
docs/SERVING.md "Rate limiter", "Python models", "Sequence models", "Model
control"; docs/CONFIGURATION.md. Every wait is bounded.
"""
import http.client
import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from scheduling_failure_models import (close_clients, ADD_IO, BROKEN, DLOADER, DLOADER_CONFIG, ENSEMBLE_CONFIG, FINALIZER,
                                       FINALIZER_CONFIG, MANAGER, MANAGER_CONFIG, SEQCALLER, SEQCALLER_CONFIG,
                                       SLOWADD, STREAM, STRSEQ, STRSEQ_CONFIG, WORK, in_thread, joined, limiter,
                                       serve_briefly, work_config, http_client, work)
from serve_support import ROOT, python_repository, start_serve, stop_serve, wait_ready
from stream_support import Stream, final, tensor
from tritonclient.utils import InferenceServerException


@pytest.fixture(autouse=True)
def _closed_clients():
    """The clients a test made on its own thread are closed as it ends."""
    yield
    close_clients()


BIN = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))


def wait_settled(addresses, names, seconds=60):
    """The repository index once every model of `names` is READY or UNAVAILABLE
    (a server with a failed model is not ready as a whole)."""
    client = http_client(addresses)
    deadline = time.time() + seconds
    while True:
        try:
            index = {m["name"]: m for m in client.get_model_repository_index()}
            if all(index.get(n, {}).get("state") in ("READY", "UNAVAILABLE") for n in names):
                return index
        except Exception:  # noqa: BLE001 - not answering yet
            pass
        assert time.time() < deadline, f"models did not settle within {seconds} s"
        time.sleep(0.2)


# ---------------------------------------------------------------- rate limiter: start-up and configuration

@pytest.mark.parametrize("value", ["R", "R:", ":4", "R:x", "R:-1", "R:1:gpu", "R:1:0:7", "R:1.5"])
def test_a_bad_rate_limit_resource_stops_start_up_naming_it(tmp_path, value):
    got = serve_briefly(BIN, tmp_path, "--rate-limit", "execution_count", "--rate-limit-resource", value)
    assert got is not None, f"--rate-limit-resource {value!r} was taken: the server started"
    assert got[0] == 2 and value in got[1] and "rate-limit-resource" in got[1], got


def test_a_bad_value_in_the_environment_is_named_and_other_bad_settings_too(tmp_path):
    status, err = serve_briefly(BIN, tmp_path, "--rate-limit", "execution_count",
                                env={"ANEMONE_RATE_LIMIT_RESOURCE": "R:1,S:many"})
    assert status == 2 and "ANEMONE_RATE_LIMIT_RESOURCE" in err and "many" in err, (status, err)
    status, err = serve_briefly(BIN, tmp_path, "--rate-limit", "round_robin")
    assert status == 2 and "round_robin" in err, (status, err)


CONFIG_MODELS = {
    "glob": limiter(("G", 1, True)),
    "perdev": limiter(("G", 1)),  # loaded later: G is global in glob
    "needs_s2": limiter(("S", 2)),
    "needs_r2": limiter(("R", 2)),
    "dev1": limiter(("D", 1)),  # D is given on device 1 only; instances are on device 0
    "zero": limiter(("Z", 0)),  # not given, needs none
    "dup": limiter(("S", 2), ("S", 2)),
    "prio0": limiter(("S", 1), priority=0),
}


@pytest.fixture(scope="module")
def configured(tmp_path_factory):
    """--rate-limit and its resources from the environment (commas); explicit
    model control so that `perdev` loads after `glob`."""
    side = tmp_path_factory.mktemp("config-side")
    work = WORK.replace("@SIDE@", repr(str(side)))
    repo = python_repository(tmp_path_factory.mktemp("config"),
                             models=[(n, work_config(rl), work) for n, rl in CONFIG_MODELS.items()])
    os.environ["ANEMONE_RATE_LIMIT"] = "execution_count"
    os.environ["ANEMONE_RATE_LIMIT_RESOURCE"] = "R:1,S:2,G:1,D:4:1"
    try:
        loads = [f for n in CONFIG_MODELS if n != "perdev" for f in ("--load-model", n)]
        proc, addresses = start_serve(repo, "--metrics-port", "0", "--model-control-mode", "explicit", *loads)
    finally:
        del os.environ["ANEMONE_RATE_LIMIT"], os.environ["ANEMONE_RATE_LIMIT_RESOURCE"]
    try:
        wait_settled(addresses, [n for n in CONFIG_MODELS if n != "perdev"])
        yield addresses
        assert proc.poll() is None, "the server died"
    finally:
        stop_serve(proc)


def test_resources_from_the_environment_per_device_zero_twice_and_priority_zero(configured):
    index = wait_settled(configured, [n for n in CONFIG_MODELS if n != "perdev"])
    for name in ("glob", "needs_s2", "zero", "prio0"):
        assert index[name]["state"] == "READY", index[name]
        assert work(configured, name)[2] == 1
    reason = index["needs_r2"].get("reason", "")
    assert index["needs_r2"]["state"] == "UNAVAILABLE", index["needs_r2"]
    for part in ['"R" is limited to 1', "needs 2", "--rate-limit-resource R:2"]:
        assert part in reason, reason
    # D:4:1 is on device 1; every instance counts as device 0, which has none.
    assert index["dev1"]["state"] == "UNAVAILABLE", index["dev1"]
    assert '"D" is limited to 0' in index["dev1"].get("reason", ""), index["dev1"]
    # S listed twice with count 2: Triton keeps the last count (a map per
    # instance), so it needs 2, which there is; a refusal must say why.
    dup = index["dup"]
    if dup["state"] == "READY":
        assert work(configured, "dup")[2] == 1
    else:
        assert any(w in dup.get("reason", "") for w in ("twice", "more than once", "duplicate")), dup


def test_a_name_both_global_and_per_device_leaves_the_second_model_unavailable(configured):
    client = http_client(configured)
    with pytest.raises(InferenceServerException) as e:
        client.load_model("perdev")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["perdev"]["state"] == "UNAVAILABLE", index["perdev"]
    reason = index["perdev"].get("reason", "")
    assert '"G"' in reason and "global" in reason, reason
    assert "global" in e.value.message(), e.value.message()
    assert index["glob"]["state"] == "READY"
    assert work(configured, "glob")[2] == 1


# ---------------------------------------------------------------- rate limiter: requests waiting for resources

RL_MODELS = {
    "holder": (limiter(("R", 1)), ""),
    "batcher": (limiter(("R", 1)), "dynamic_batching { }"),
    "timed": (limiter(("R", 1)), "dynamic_batching { default_queue_policy { default_timeout_microseconds: 300000 } }"),
    "marker": (limiter(("R", 1)), ""),
    "victim": (limiter(("R", 1)), ""),
    "pa": (limiter(("R", 1), priority=0), ""),
    "pb": (limiter(("R", 1), priority=1), ""),
    "free": ("", ""),
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """R: 1 on device 0 (`NAME:COUNT:DEVICE`, comma-separated in the flag), per device; every model but
    `free` needs it."""
    side = tmp_path_factory.mktemp("rl-side")
    work_src = WORK.replace("@SIDE@", repr(str(side)))
    models = [(n, work_config(rl, extra), work_src) for n, (rl, extra) in RL_MODELS.items()]
    models.append(("stream", work_config(limiter(("R", 1)), decoupled=True), STREAM))
    repo = python_repository(tmp_path_factory.mktemp("rl"), models=models)
    loads = [f for n, *_ in models for f in ("--load-model", n)]
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--rate-limit", "execution_count",
                                  "--rate-limit-resource", "R:1:0,SPARE:3", "--model-control-mode", "explicit", *loads)
    try:
        wait_ready(addresses["HTTP"])
        addresses["side"] = side
        yield addresses
        assert proc.poll() is None, "the server died"
    finally:
        stop_serve(proc)


def ran(addresses, model):
    """{tag: start time} of the requests `model` ran."""
    path = addresses["side"] / f"{model}.log"
    lines = path.read_text().split("\n") if path.exists() else []
    return {int(t): float(s) for t, s in (line.split() for line in lines if line)}


_tags = iter(range(1000, 10**6))


def hold(addresses, seconds):
    """`holder` holds R for `seconds`: returns its thread and box once it runs."""
    tag = next(_tags)
    t, box = in_thread(work, addresses, "holder", seconds, tag)
    deadline = time.time() + 10
    while tag not in ran(addresses, "holder"):
        assert time.time() < deadline, "holder did not start"
        time.sleep(0.01)
    return t, box


def test_a_batch_grows_while_it_waits_and_the_wait_is_queue_time(limited):
    holder, held = hold(limited, 1.2)
    calls = [in_thread(work, limited, "batcher", 0.0, next(_tags)) for _ in range(5)]
    joined(holder, *(t for t, _ in calls))
    assert "ok" in held, held
    assert all("ok" in box for _, box in calls), [box for _, box in calls]
    answers = [box["ok"] for _, box in calls]
    assert all(a[0] >= held["ok"][1] - 0.01 for a in answers), "batcher ran while holder held R"
    assert all(a[2] == 5 for a in answers), f"one batch of 5 expected, got sizes {[a[2] for a in answers]}"
    stats = http_client(limited).get_inference_statistics("batcher")["model_stats"][0]
    queue = stats["inference_stats"]["queue"]
    assert queue["count"] == 5 and queue["ns"] / 5 >= 0.8e9, f"waiting ~1.2 s for R is queue time: {queue}"
    assert [b["batch_size"] for b in stats["batch_stats"]] == [5], stats["batch_stats"]


def test_a_queue_timeout_while_waiting_for_resources_fails_in_time_and_never_runs(limited):
    holder, held = hold(limited, 2.0)
    tag, begun = next(_tags), time.time()
    with pytest.raises(InferenceServerException) as e:
        work(limited, "timed", 0.0, tag)
    elapsed = time.time() - begun
    assert e.value.status() == "504" and "timed out" in e.value.message().lower(), (e.value.status(), e.value.message())
    joined(holder)
    assert "ok" in held, held
    time.sleep(0.3)
    assert tag not in ran(limited, "timed"), "the timed-out request ran"
    assert work(limited, "timed")[2] == 1, "timed serves on"
    assert elapsed < 1.2, f"the 0.3 s queue timeout was answered after {elapsed:.2f} s (holder held R 2 s)"


def test_a_client_that_goes_while_waiting_is_dropped_and_never_runs(limited):
    holder, held = hold(limited, 1.5)
    gone_http, gone_grpc, kept = next(_tags), next(_tags), next(_tags)
    body = json.dumps({"inputs": [{"name": "X", "datatype": "FP64", "shape": [1, 2], "data": [0, gone_http]}]})
    conn = http.client.HTTPConnection(limited["HTTP"], timeout=0.3)
    conn.request("POST", "/v2/models/marker/infer", body, {"Content-Type": "application/json"})
    with pytest.raises(OSError):
        conn.getresponse()
    conn.close()
    g = grpcclient.InferenceServerClient(limited["gRPC"])
    x = grpcclient.InferInput("X", [1, 2], "FP64")
    x.set_data_from_numpy(np.array([[0, gone_grpc]], np.float64))
    with pytest.raises(InferenceServerException) as e:
        g.infer("marker", [x], client_timeout=0.3)
    assert "DEADLINE_EXCEEDED" in e.value.status(), e.value.status()
    joined(holder)
    assert work(limited, "marker", 0.0, kept)[2] == 1
    time.sleep(0.3)
    assert set(ran(limited, "marker")) == {kept}, "a request whose client had gone ran"


def test_priority_zero_counts_as_one_so_two_models_take_turns(limited):
    holder, held = hold(limited, 0.8)
    calls = [in_thread(work, limited, m, 0.05, next(_tags)) for _ in range(4) for m in ("pa", "pb")]
    joined(holder, *(t for t, _ in calls))
    assert all("ok" in box for _, box in calls), [box for _, box in calls]
    order = [m for _, m in sorted((s, m) for m in ("pa", "pb") for s in ran(limited, m).values())]
    longest = max(len(list(run)) for _, run in itertools.groupby(order))
    assert longest <= 2, f"priority 0 (= 1) and 1 should alternate, ran {order}"


def test_a_decoupled_model_waits_for_its_resources_then_streams(limited):
    holder, held = hold(limited, 1.0)
    stream = Stream(limited)
    try:
        stream.send("stream", [tensor("X", np.array([[0, 0]], np.float64), "FP64")], enable_empty_final_response=True)
        got = stream.until_final(timeout=20)
    finally:
        stream.close()
    joined(holder)
    assert all(err is None for _, err in got), got
    ys = [r.as_numpy("Y") for r, _ in got if r.as_numpy("Y") is not None]
    assert [int(y[0][2]) for y in ys] == [0, 1, 2], ys
    assert final(got[-1][0])
    assert ys[0][0][0] >= held["ok"][1] - 0.01, "the decoupled model ran while holder held R"
    begun = time.time()
    assert work(limited, "holder")[2] == 1 and time.time() - begun < 5, "R was not given back"


@pytest.mark.parametrize("action", ["unload", "reload"])
def test_a_model_unloaded_or_reloaded_while_its_requests_wait_hangs_nothing(limited, action):
    client = http_client(limited)
    holder, held = hold(limited, 1.5)
    waiting = [in_thread(work, limited, "victim", 0.0, next(_tags)) for _ in range(2)]
    time.sleep(0.3)
    if action == "unload":
        change = in_thread(lambda: http_client(limited).unload_model("victim"))
    else:
        config = client.get_model_config("victim")
        config["instance_group"][0]["count"] = 2
        change = in_thread(lambda: http_client(limited).load_model("victim", config=json.dumps(config)))
    time.sleep(0.1)
    begun = time.time()
    assert work(limited, "free")[2] == 1 and time.time() - begun < 1.0, "other models must keep running"
    joined(holder, change[0], *(t for t, _ in waiting))
    assert "ok" in held, held
    assert "error" not in change[1], change[1]
    for _, box in waiting:  # accepted before the change: served, as Triton does
        assert "ok" in box, box
    if action == "unload":
        assert not client.is_model_ready("victim")
        client.load_model("victim")
    else:
        assert client.get_model_config("victim")["instance_group"][0]["count"] == 2
    assert work(limited, "victim")[2] == 1
    assert work(limited, "holder")[2] == 1


# ---------------------------------------------------------------- the model loading API

@pytest.fixture(scope="module")
def loader(tmp_path_factory):
    side = tmp_path_factory.mktemp("load-side")
    sub = repr(str(side))
    repo = python_repository(tmp_path_factory.mktemp("load"), examples=["add_sub"], models=[
        ("manager", MANAGER_CONFIG, MANAGER.replace("@SIDE@", sub)),
        ("manager2", MANAGER_CONFIG, MANAGER.replace("@SIDE@", sub)),
        ("broken", 'backend: "python"\n' + ADD_IO, BROKEN),
        ("slowadd", 'backend: "python"\n' + ADD_IO, SLOWADD.replace("@SIDE@", sub)),
        ("finalizer", FINALIZER_CONFIG, FINALIZER.replace("@SIDE@", sub)),
        ("dloader", DLOADER_CONFIG, DLOADER),
    ])
    (repo / "ens" / "1").mkdir(parents=True)
    (repo / "ens" / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    (repo / "badcfg" / "1").mkdir(parents=True)
    (repo / "badcfg" / "config.pbtxt").write_text('backend: "python"\ninput [ { name: "X" data_type: ')
    shutil.copy(repo / "add_sub" / "1" / "model.py", repo / "badcfg" / "1" / "model.py")
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--model-control-mode", "explicit",
                                  "--load-model", "manager", "--load-model", "manager2")
    try:
        wait_ready(addresses["HTTP"])
        addresses["side"] = side
        yield addresses
        assert proc.poll() is None, "the server died"
    finally:
        stop_serve(proc)


def ask(addresses, cmd, model="manager"):
    t = httpclient.InferInput("CMD", [1], "BYTES")
    t.set_data_from_numpy(np.array([json.dumps(cmd).encode()], np.object_))
    return json.loads(http_client(addresses, 60).infer(model, [t]).as_numpy("OUT")[0])


SUM = [11.0, 22.0, 33.0, 44.0]


def test_an_ensemble_loads_with_its_steps_is_ready_by_version_and_unloads_with_dependents(loader):
    assert ask(loader, {"ready": "ens"}) == {"ready": False}
    assert ask(loader, {"load": "ens"}) == {"ok": True}
    assert ask(loader, {"ready": "add_sub"}) == {"ready": True}, "loading an ensemble loads its steps"
    assert ask(loader, {"ready": "ens", "version": "1"}) == {"ready": True}
    assert ask(loader, {"ready": "ens", "version": "2"}) == {"ready": False}
    assert ask(loader, {"exec": "ens"}) == {"out": SUM}
    # Its step unloaded, the ensemble is not ready (ENSEMBLES.md "Readiness").
    assert ask(loader, {"unload": "add_sub"}) == {"ok": True}
    assert ask(loader, {"ready": "ens"}) == {"ready": False}
    assert ask(loader, {"load": "add_sub"}) == {"ok": True}
    assert ask(loader, {"ready": "ens"}) == {"ready": True}
    assert ask(loader, {"unload": "ens"}) == {"ok": True}
    assert ask(loader, {"ready": "ens"}) == {"ready": False}
    assert ask(loader, {"ready": "add_sub"}) == {"ready": True}, "without unload_dependents the step stays"
    assert ask(loader, {"load": "ens"}) == {"ok": True}
    assert ask(loader, {"unload": "ens", "deps": True}) == {"ok": True}
    assert ask(loader, {"ready": "ens"}) == {"ready": False}
    assert ask(loader, {"ready": "add_sub"}) == {"ready": False}, "unload_dependents takes the step"


@pytest.mark.parametrize("name, words", [("broken", ["broken on purpose 7731"]), ("badcfg", ["badcfg", "config"])])
def test_a_model_that_fails_to_load_raises_its_reason_and_the_caller_serves_on(loader, name, words):
    answer = ask(loader, {"load": name})
    assert "TritonModelException" in answer.get("error", ""), answer
    for word in words:
        assert word in answer["error"], answer
    assert ask(loader, {"ready": name}) == {"ready": False}
    index = {m["name"]: m for m in http_client(loader).get_model_repository_index()}
    assert index[name]["state"] == "UNAVAILABLE" and words[-1] in index[name].get("reason", ""), index[name]
    assert ask(loader, {"ready": "manager"}) == {"ready": True}


def test_reloading_with_a_changed_override_and_then_without_one(loader):
    client = http_client(loader)
    io = {k: [{"name": n, "data_type": "TYPE_FP32", "dims": [4]} for n in (k.upper() + "0", k.upper() + "1")]
          for k in ("input", "output")}
    for count in (2, 3):
        override = {"backend": "python", **io, "instance_group": [{"count": count, "kind": "KIND_CPU"}]}
        assert ask(loader, {"load": "add_sub", "config": json.dumps(override)}) == {"ok": True}
        assert [g["count"] for g in client.get_model_config("add_sub")["instance_group"]] == [count]
        assert ask(loader, {"exec": "add_sub"}) == {"out": SUM}
    assert ask(loader, {"load": "add_sub"}) == {"ok": True}
    assert [g["count"] for g in client.get_model_config("add_sub")["instance_group"]] == [1], \
        "a load without an override after one loads config.pbtxt again"
    assert ask(loader, {"unload": "add_sub"}) == {"ok": True}


def test_a_failed_reload_keeps_the_loaded_model_serving(loader):
    assert ask(loader, {"load": "add_sub"}) == {"ok": True}
    for bad in ({"backend": "python", "max_batch_size": -3}, {"backend": "onnxruntime"}):
        answer = ask(loader, {"load": "add_sub", "config": json.dumps(bad)})
        assert "TritonModelException" in answer.get("error", "") and "add_sub" in answer["error"], answer
        assert ask(loader, {"ready": "add_sub"}) == {"ready": True}
        assert ask(loader, {"exec": "add_sub"}) == {"out": SUM}
    assert ask(loader, {"unload": "add_sub"}) == {"ok": True}


def test_two_requests_loading_one_model_at_once_both_succeed(loader):
    # Two models, so that the loads surely overlap (slowadd takes 1 s to initialize).
    calls = [in_thread(ask, loader, {"load": "slowadd"}, m) for m in ("manager", "manager2")]
    joined(*(t for t, _ in calls), seconds=60)
    assert [box.get("ok") for _, box in calls] == [{"ok": True}] * 2, [box for _, box in calls]
    assert ask(loader, {"ready": "slowadd"}) == {"ready": True}
    assert ask(loader, {"exec": "slowadd"}) == {"out": SUM}


def test_unloading_a_model_in_use_lets_its_request_finish(loader):
    if ask(loader, {"ready": "slowadd"}) != {"ready": True}:
        assert ask(loader, {"load": "slowadd"}) == {"ok": True}
    a, b = httpclient.InferInput("INPUT0", [4], "FP32"), httpclient.InferInput("INPUT1", [4], "FP32")
    a.set_data_from_numpy(np.array([1, 2, 3, 4], np.float32))
    b.set_data_from_numpy(np.array([10, 20, 30, 40], np.float32))
    use = in_thread(lambda: http_client(loader).infer("slowadd", [a, b]).as_numpy("OUTPUT0").tolist())
    time.sleep(0.4)
    assert ask(loader, {"unload": "slowadd"}) == {"ok": True}
    joined(use[0])
    assert use[1].get("ok") == SUM, use[1]
    assert ask(loader, {"ready": "slowadd"}) == {"ready": False}
    gone = ask(loader, {"exec": "slowadd"})
    assert "slowadd" in gone.get("error", ""), gone


def side_line(addresses, name, seconds=15):
    path = addresses["side"] / name
    deadline = time.time() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.time() < deadline, f"nothing in {name} after {seconds} s"
        time.sleep(0.05)
    return path.read_text().strip().splitlines()[-1]


def test_the_api_from_a_thread_after_execute_returned(tmp_path):
    """A model that is not decoupled calls the API from its own thread once
    execute() has returned: refused with TritonModelException saying so
    (before, the call hung, the model's next execute() read a garbled
    answer, later requests hung and SIGTERM no longer stopped the server);
    the model and the server go on, and the server stops on SIGTERM."""
    # Its own server: before the fix, such a call wedged the model and the server's shutdown.
    side = tmp_path / "side"
    side.mkdir()
    repo = python_repository(tmp_path / "repo", examples=["add_sub"], models=[
        ("manager", MANAGER_CONFIG, MANAGER.replace("@SIDE@", repr(str(side))))])
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--model-control-mode", "explicit",
                                  "--load-model", "manager")
    addresses["side"] = side
    try:
        wait_ready(addresses["HTTP"])
        assert ask(addresses, {"thread": "add_sub"}) == {"ok": True}
        line = side_line(addresses, "thread.log", seconds=5)
        assert line.startswith("error TritonModelException") and "after initialize() or execute() returned" in line, line
        assert ask(addresses, {"ready": "add_sub"}) == {"ready": False}
        assert ask(addresses, {"load": "add_sub"}) == {"ok": True}
        assert ask(addresses, {"ready": "add_sub"}) == {"ready": True}
        assert http_client(addresses).is_model_ready("add_sub")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            time.sleep(8)
            proc.kill()
            proc.wait()


def test_the_api_from_finalize_does_not_hang_the_unload(loader):
    """As in Triton, the API is not available in finalize(): the call raises
    at once (before, it never returned and the process was killed 5 s
    later), and the unload ends promptly."""
    client = http_client(loader, 60)
    client.load_model("add_sub")
    client.load_model("finalizer")
    started = time.time()
    done = in_thread(lambda: http_client(loader, 60).unload_model("finalizer"))
    joined(done[0])
    assert "error" not in done[1], done[1]
    assert time.time() - started < 4, "the unload waited for a finalize() that hung"
    line = side_line(loader, "finalize.log", seconds=3)
    assert line.startswith("error TritonModelException") and "finalize()" in line, line
    assert ask(loader, {"ready": "manager"}) == {"ready": True}


def test_a_decoupled_model_loads_a_model(loader):
    http_client(loader, 60).load_model("dloader")
    assert ask(loader, {"unload": "add_sub"}) == {"ok": True}
    stream = Stream(loader)
    try:
        stream.send("dloader", [tensor("NAME", np.array([b"add_sub"], np.object_), "BYTES")],
                    enable_empty_final_response=True)
        got = stream.until_final(timeout=60)
    finally:
        stream.close()
    assert got[0][1] is None, got
    assert json.loads(got[0][0].as_numpy("OUT")[0]) == {"ok": True, "ready": True}
    assert ask(loader, {"exec": "add_sub"}) == {"out": SUM}


# ---------------------------------------------------------------- BLS with stateful models

@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("bls-seq"), models=[
        ("seqcaller", SEQCALLER_CONFIG, SEQCALLER), ("strseq", STRSEQ_CONFIG, STRSEQ)])
    examples = ROOT / "tests/triton_examples/model_repository"
    for name in ("simple_sequence", "simple_dyna_sequence"):
        shutil.copytree(examples / name, repo / name)
    idle = repo / "simple_sequence_idle"
    shutil.copytree(examples / "simple_sequence", idle)
    (idle / "config.pbtxt").write_text((idle / "config.pbtxt").read_text()
                                       .replace('name: "simple_sequence"', 'name: "simple_sequence_idle"')
                                       .replace("sequence_batching {", "sequence_batching {\n"
                                                "  max_sequence_idle_microseconds: 300000"))
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
        assert proc.poll() is None, "the server died"
    finally:
        stop_serve(proc)


def calls(addresses, *steps):
    return ask(addresses, list(steps), model="seqcaller")


def test_a_string_correlation_id_reaches_a_string_corrid_control(sequences):
    got = calls(sequences,
                {"model": "strseq", "value": 1, "corr": "user-7", "flags": ["START"], "output": "OUT"},
                {"model": "strseq", "value": 2, "corr": "user-7", "output": "OUT"},
                {"model": "strseq", "value": 3, "corr": "user-7", "flags": ["END"], "output": "OUT"})
    seen = [json.loads(g["out"]) if "out" in g else g for g in got]
    assert [(s.get("cid"), s.get("CORRID"), s.get("START"), s.get("END"), s.get("flags"), s.get("INPUT"))
            for s in seen] == [("user-7", "user-7", 1, 0, 1, 1), ("user-7", "user-7", 0, 0, 0, 2),
                               ("user-7", "user-7", 0, 1, 2, 3)], seen


def test_string_ids_to_models_without_a_string_corrid(sequences):
    got = calls(sequences,
                {"model": "simple_sequence", "value": 5, "corr": "s-9", "flags": ["START"]},
                {"model": "simple_sequence", "value": 5, "corr": "s-9", "flags": ["END"]},
                {"model": "simple_dyna_sequence", "value": 1, "corr": "abc", "flags": ["START"]})
    assert got[:2] == [{"out": 6}, {"out": 5}], got
    assert "UINT64" in got[2].get("error", ""), got[2]


def test_end_without_start_an_idle_sequence_and_a_negative_id_are_refused(sequences):
    got = calls(sequences,
                {"model": "simple_dyna_sequence", "value": 1, "corr": 9001, "flags": ["END"]},
                {"model": "simple_sequence_idle", "value": 2, "corr": 9002, "flags": ["START"]},
                {"sleep": 0.8},
                {"model": "simple_sequence_idle", "value": 2, "corr": 9002},
                {"model": "simple_sequence_idle", "value": 2, "corr": 9002, "flags": ["START", "END"]},
                {"model": "simple_dyna_sequence", "value": 1, "corr": -5, "flags": ["START"]})
    assert "START flag" in got[0].get("error", ""), got[0]
    assert got[1] == {"out": 3}, got[1]
    assert "START flag" in got[2].get("error", ""), f"an idle sequence must be closed: {got[2]}"
    assert got[3] == {"out": 3}, got[3]
    assert "out" not in got[4] and (got[4].get("error") or got[4].get("raised")), got[4]
    assert calls(sequences, {"model": "simple_dyna_sequence", "value": 4, "corr": 9003,
                             "flags": ["START", "END"]}) == [{"out": 4 + 1 + 9003}]


def test_a_correlation_id_that_is_not_a_whole_number_is_refused(sequences):
    got = calls(sequences, {"model": "simple_dyna_sequence", "value": 1, "corr": 3.99, "flags": ["START", "END"]})
    assert "out" not in got[0] and (got[0].get("error") or got[0].get("raised")), got


def test_a_bad_correlation_id_is_not_called_a_configuration_error(sequences):
    for step in ({"corr": -5, "flags": ["START"]}, {"flags": ["START"]}):
        (got,) = calls(sequences, {"model": "simple_dyna_sequence", "value": 1, **step})
        message = got.get("error") or got.get("raised") or ""
        assert "correlation_id" in message and "configuration" not in message, got


def test_a_sequence_started_by_a_client_goes_on_through_bls(sequences):
    client = http_client(sequences)
    x = httpclient.InferInput("INPUT", [1, 1], "INT32")
    x.set_data_from_numpy(np.array([[3]], np.int32))
    out = client.infer("simple_dyna_sequence", [x], sequence_id=9100, sequence_start=True).as_numpy("OUTPUT")
    assert int(out[0][0]) == 4
    assert calls(sequences, {"model": "simple_dyna_sequence", "value": 7, "corr": 9100}) == [{"out": 7}]
    out = client.infer("simple_dyna_sequence", [x], sequence_id=9100, sequence_end=True).as_numpy("OUTPUT")
    assert int(out[0][0]) == 3 + 9100


def test_sequences_interleaved_from_concurrent_bls_requests(sequences):
    def one(seq):
        got = []
        for i in range(4):
            flags = (["START"] if i == 0 else []) + (["END"] if i == 3 else [])
            got += calls(sequences, {"model": "simple_dyna_sequence", "value": seq + i, "corr": seq, "flags": flags})
        return got

    threads = [(seq, in_thread(one, seq)) for seq in range(9200, 9208)]
    joined(*(t for _, (t, _) in threads), seconds=60)
    for seq, (_, box) in threads:
        want = [{"out": seq + 1}, {"out": seq + 1}, {"out": seq + 2}, {"out": seq + 3 + seq}]
        assert box.get("ok") == want, (seq, box)
