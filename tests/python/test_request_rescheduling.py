"""Request rescheduling: a Python model with `sequence_batching { iterative_sequence: true }` calls
`request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)` and the request runs
again in a later `execute`, with the requests that came meanwhile (docs/SERVING.md, "Python models").

Triton's `qa/L0_backend_python/request_rescheduling` (its models
`request_rescheduling_addsub`, `iterative_sequence` and `wrong_return_type`
from `qa/python_models`, as test_triton_qa_python_more.py has them, whose
TestRequestRescheduling runs the QA's BLS model; and its
`grpc_endpoint_test.py`), then what a user meets: the flags and
correlation IDs the model sees, new requests joining running ones, a model that reschedules without
`iterative_sequence`, a client that goes while its request keeps being rescheduled, and configs that
cannot work. tritonserver 2.51 (CPU, Python backend) served the same repository on 2026-12-07; each
docstring says what it answered.
"""
import json
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

ITERATIVE_SEQUENCE = "sequence_batching { iterative_sequence: true }\n"

MODELS = {
    "trace": (
        'backend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "SEEN" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "trace"),
    "joins": (
        'backend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "SEEN" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "joins"),
    "joins_two_instances": (
        'backend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "SEEN" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU count: 2 }]\n', "joins"),
    "joins_decoupled": (
        'backend: "python"\nmax_batch_size: 4\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "joins_decoupled"),
    "trace_not_iterative": (
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "SEEN" data_type: TYPE_STRING dims: [ -1 ] } ]\n', "trace"),
    "forever": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "forever"),
    "final_then_reschedule": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "final_then_reschedule"),
    "dies": (
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "dies"),
    "dies_decoupled": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', "dies"),
    "forever_not_iterative": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n', "forever"),
}


# Triton's QA models as published (qa/python_models), shared with test_triton_qa_python_more.py.
QA_MODELS = Path(__file__).resolve().parent / "fixtures/triton_qa_python_more/python_models"


# qa/L0_iterative_sequence's model (its C++ test backend in Python) and a
# model that reschedules without iterative_sequence.
OWN_MODELS = Path(__file__).resolve().parent / "fixtures/request_rescheduling"
# The model.py of each of MODELS (its second field), each saying what it does.
SOURCES = OWN_MODELS / "sources"


def write_repository(repo):
    for name in ("request_rescheduling_addsub", "iterative_sequence", "wrong_return_type"):
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(QA_MODELS / name / "config.pbtxt", repo / name / "config.pbtxt")
        shutil.copy(QA_MODELS / name / "model.py", repo / name / "1" / "model.py")
    for model in OWN_MODELS.iterdir():
        if (model / "config.pbtxt").exists():
            shutil.copytree(model, repo / model.name)
    for name, (config, source) in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n' + config)
        shutil.copy(SOURCES / f"{source}.py", repo / name / "1" / "model.py")
    return repo


class Server:
    def __init__(self, http, grpc):
        self.http, self.grpc = http, grpc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """qa/L0_backend_python/request_rescheduling/test.sh's server:
    `--model-control-mode=explicit --load-model=*`."""
    repo = write_repository(tmp_path_factory.mktemp("request_rescheduling"))
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*")
    try:
        wait_ready(addresses["HTTP"])
        yield Server(addresses["HTTP"], addresses["gRPC"])
    finally:
        stop_serve(proc)


def _grpc(server):
    import tritonclient.grpc as grpcclient
    return grpcclient.InferenceServerClient(server.grpc)


def _tensor(module, name, array, dtype):
    t = module.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def test_grpc_non_decoupled(server):
    """grpc_endpoint_test.py test_grpc_non_decoupled: the model reschedules
    the first request it gets (returning None for it), and the request's
    answer comes from the next execute: INPUT0 + INPUT1 and INPUT0 -
    INPUT1, checked against numpy, over gRPC and then HTTP (after a reload,
    which resets the model's count). tritonserver 2.51: the same."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    a = np.random.randn(16).astype(np.float32)
    b = np.random.randn(16).astype(np.float32)
    with _grpc(server) as client:
        client.unload_model("request_rescheduling_addsub")
        client.load_model("request_rescheduling_addsub")
        result = client.infer("request_rescheduling_addsub",
                              [_tensor(grpcclient, "INPUT0", a, "FP32"), _tensor(grpcclient, "INPUT1", b, "FP32")])
        assert np.array_equal(result.as_numpy("OUTPUT0"), a + b)
        assert np.array_equal(result.as_numpy("OUTPUT1"), a - b)
        client.unload_model("request_rescheduling_addsub")
        client.load_model("request_rescheduling_addsub")
    http = httpclient.InferenceServerClient(server.http)
    try:
        result = http.infer("request_rescheduling_addsub",
                            [_tensor(httpclient, "INPUT0", a, "FP32"), _tensor(httpclient, "INPUT1", b, "FP32")])
        assert np.array_equal(result.as_numpy("OUTPUT0"), a + b)
        assert np.array_equal(result.as_numpy("OUTPUT1"), a - b)
    finally:
        http.close()


def _stream(server, model, value, **kwargs):
    """The responses of one request on a gRPC stream, until its final flag."""
    import tritonclient.grpc as grpcclient

    got = queue.Queue()
    with _grpc(server) as client:
        client.start_stream(callback=lambda result, error: got.put(error or result))
        client.async_stream_infer(model, [_tensor(grpcclient, "IN", np.array([value], np.int32), "INT32")],
                                  enable_empty_final_response=True, **kwargs)
        out = []
        while True:
            item = got.get(timeout=30)
            if isinstance(item, Exception):
                out.append(item)
                break
            if item.get_response().parameters["triton_final_response"].bool_param:
                if item.get_response().outputs:
                    out.append(int(item.as_numpy("OUT")[0]))
                break
            out.append(int(item.as_numpy("OUT")[0]))
        client.stop_stream()
    return out


def test_grpc_decoupled(server):
    """grpc_endpoint_test.py test_grpc_decoupled: a decoupled model sends a
    response and reschedules the request until its count is spent: IN=3
    streams 2, 1, 0 (the last with the final flag), the request given no
    sequence (`sequence_id=0`). tritonserver 2.51: the same three."""
    with _grpc(server) as client:
        client.unload_model("iterative_sequence")
        client.load_model("iterative_sequence")
    assert _stream(server, "iterative_sequence", 3, sequence_id=0, sequence_start=False) == [2, 1, 0]
    # Again, with a sequence of the client's own (the QA's model counts on
    # across requests until it is loaded again, as the QA does each time).
    with _grpc(server) as client:
        client.unload_model("iterative_sequence")
        client.load_model("iterative_sequence")
    assert _stream(server, "iterative_sequence", 4, sequence_id=77, sequence_start=True) == [3, 2, 1, 0]


def test_wrong_return_type(server):
    """bls_request_rescheduling's test_wrong_return_type, asked directly: a
    response returned for a rescheduled request fails the call with
    Triton's words ("Expected a None object in the execute function return
    list for reschduled request", its typo kept), and the server goes on.
    tritonserver 2.51: 500 with that message."""
    r = requests.post(f"http://{server.http}/v2/models/wrong_return_type/infer", json={
        "inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, timeout=60)
    assert r.status_code == 500, r.text
    assert "Expected a None object in the execute function return list for reschduled request" in r.json()["error"]
    r = requests.post(f"http://{server.http}/v2/models/wrong_return_type/infer", json={
        "inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, timeout=60)
    assert r.status_code == 500, r.text


def _trace(server, count, model="trace", parameters=None):
    body = {"inputs": [{"name": "COUNT", "shape": [1, 1], "datatype": "INT32", "data": [count]}]}
    if model == "trace_not_iterative":
        body["inputs"][0]["shape"] = [1]
    if parameters:
        body["parameters"] = parameters
    return requests.post(f"http://{server.http}/v2/models/{model}/infer", json=body, timeout=60)


def test_each_run_sees_its_sequence_start_once_then_flags_0(server):
    """As Triton's iterative sequencer: a request that names no sequence is
    given a correlation ID of its own and starts it (flags 1); each time it
    runs again its flags are 0 and its ID the same; two requests get two
    IDs; a request that names its sequence keeps its ID and flags. Each run
    is one execute (here alone: `len(requests)` 1). tritonserver 2.51: the
    same flags and counts (its IDs count from 1 as well)."""
    seen = [_trace(server, 3).json()["outputs"][0]["data"] for _ in range(2)]
    for runs in seen:
        flags, ids, sizes = zip(*(s.split(":") for s in runs))
        assert flags == ("1", "0", "0"), runs
        assert len(set(ids)) == 1 and int(ids[0]) > 0, runs
        assert set(sizes) == {"1"}, runs
    assert seen[0][0].split(":")[1] != seen[1][0].split(":")[1], seen
    runs = _trace(server, 2, parameters={"sequence_id": 4242, "sequence_start": True}).json()["outputs"][0]["data"]
    assert runs == ["1:4242:1", "0:4242:1"], runs


def test_rescheduled_requests_of_a_batch_run_again_together(server):
    """Four requests at once to a model with max_batch_size 4: those
    rescheduled run again in one execute, and each gets its own answer
    after its own number of runs."""
    counts = [1, 2, 3, 4]
    answers = [None] * 4

    def send(i):
        answers[i] = _trace(server, counts[i]).json()["outputs"][0]["data"]
    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for count, runs in zip(counts, answers):
        assert len(runs) == count, answers
        assert [r.split(":")[0] for r in runs] == ["1"] + ["0"] * (count - 1), answers


def _runs(response):
    assert response.status_code == 200, response.text
    return [run.split(":") for run in response.json()["outputs"][0]["data"]]


def test_a_new_request_joins_the_running_ones_at_the_next_execute(server):
    """Continuous batching, as Triton's iterative scheduling: a rescheduled
    request goes back to the model's queue, so a request that arrives while
    another keeps being rescheduled joins it in the next execute (max_batch_size
    4), and is answered after its own two runs while the first runs on. The
    first request (COUNT -1) runs until the model has answered a request that
    came after it. Before (an instance ran its rescheduled requests again at
    once, before new ones) the second waited for the first's 300 runs."""
    answers, order = {}, []

    def send(name, count):
        answers[name] = _trace(server, count, model="joins")
        order.append(name)
    first = threading.Thread(target=send, args=("first", -1))
    first.start()
    # The first runs alone (10 ms a run) before the second comes.
    time.sleep(0.5)
    send("second", 2)
    first.join(60)
    assert order == ["second", "first"], order
    first_runs, second_runs = _runs(answers["first"]), _runs(answers["second"])
    assert [r[2] for r in second_runs] == ["2", "2"], second_runs
    alone = [r[2] for r in first_runs].index("2")
    assert alone >= 2, first_runs
    # Together for the second's two runs, then the first's last run alone.
    assert [r[2] for r in first_runs[alone:]] == ["2", "2", "1"], first_runs
    assert len(first_runs) < 300, "the first ran its 300 runs: the second never joined it"


def test_a_new_stream_joins_a_running_decoupled_generation(server):
    """The same for a decoupled model over gRPC streams: a request of 60
    runs streams a response a run; a second stream's request of 3 runs,
    sent after the first's third response, shares each of its runs with
    the first (each of its responses says 2 requests ran) and ends while
    the first goes on. Before, it waited for the first's 60 runs."""
    import tritonclient.grpc as grpcclient

    events = queue.Queue()

    def run(name, n, started=None):
        with _grpc(server) as client:
            client.start_stream(callback=lambda result, error: events.put((name, error or result)))
            client.async_stream_infer("joins_decoupled",
                                      [_tensor(grpcclient, "IN", np.array([[n]], np.int32), "INT32")])
            if started:
                started.set()
            done.wait(60)
            client.stop_stream()
    done = threading.Event()
    first = threading.Thread(target=run, args=("first", 60))
    first.start()
    order = []
    sent_second = None
    try:
        while len([o for o in order if o[1] == "final"]) < 2:
            name, item = events.get(timeout=30)
            assert not isinstance(item, Exception), item
            final = item.get_response().parameters["triton_final_response"].bool_param
            order.append((name, "final" if final else int(item.as_numpy("OUT")[0][0])))
            if name == "first" and len(order) == 3 and sent_second is None:
                sent_second = threading.Thread(target=run, args=("second", 3))
                sent_second.start()
    finally:
        done.set()
        first.join(30)
        if sent_second:
            sent_second.join(30)
    second = [v for name, v in order if name == "second"]
    assert second[:2] == [2, 2], order
    finals = [name for name, v in order if v == "final"]
    assert finals == ["second", "first"], order
    assert len([1 for name, _ in order if name == "first"]) == 60, order


def _stats(server, model):
    s = requests.get(f"http://{server.http}/v2/models/{model}/stats", timeout=30).json()["model_stats"][0]
    i = s["inference_stats"]
    return [s["inference_count"], s["execution_count"], i["success"]["count"], i["queue"]["count"],
            i["compute_infer"]["count"], i["fail"]["count"]]


def test_each_run_counts_as_an_inference_as_in_triton(server):
    """Statistics count every run of a rescheduled request: a request run
    three times adds 3 to inference_count, execution_count and the success,
    queue and compute_infer counts, and no failure. tritonserver 2.51 (this
    test through it, and scripts/triton_peer/continuous_batching.py's model)
    counts the same runs, and also one failure per request: the cancelled
    request its iterative sequencer sends to end the sequence
    (`IterativeSequencer::RescheduleRequest`); docs/SERVING.md says so.
    Before this session the three runs counted as one (1 each)."""
    before = _stats(server, "trace")
    assert len(_trace(server, 3).json()["outputs"][0]["data"]) == 3
    after = _stats(server, "trace")
    assert [b - a for a, b in zip(before, after)] == [3, 3, 3, 3, 3, 0], (before, after)


def test_rescheduled_requests_stay_on_their_instance_with_ids_counted_per_model(server):
    """With two instances (two processes), each rescheduled request runs again
    on the instance that holds its state: one process id, flags 1 then 0, and
    all its runs there. Correlation IDs are counted per model, as Triton's,
    so no two requests share one across the instances."""
    runs = [None] * 8

    def send(i):
        runs[i] = _runs(_trace(server, 4, model="joins_two_instances"))
    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for request in runs:
        assert [r[0] for r in request] == ["1", "0", "0", "0"], runs
        assert len({r[1] for r in request}) == 1 and len({r[3] for r in request}) == 1, runs
    assert len({request[0][1] for request in runs}) == 8, runs
    assert len({request[0][3] for request in runs}) == 2, "not both instances ran requests"


def test_rescheduling_without_iterative_sequence_fails_the_request_saying_what_to_add(server):
    """A model without `iterative_sequence` that reschedules: its request
    fails with 500 naming `sequence_batching { iterative_sequence: true }`
    (a model that is not decoupled, and on a stream a decoupled one), and
    the server goes on serving. tritonserver 2.51 logs "Request is released
    with TRITONSERVER_REQUEST_RELEASE_RESCHEDULE, while the model is not
    configured to handle such a flag" and its clients wait: no answer
    within 10 s, the stream none after its first response within 15 s."""
    r = _trace(server, 2, model="trace_not_iterative")
    assert r.status_code == 500, r.text
    assert "iterative_sequence: true" in r.json()["error"]
    assert _trace(server, 1, model="trace_not_iterative").status_code == 200
    out = _stream(server, "forever_not_iterative", 5)
    assert len(out) == 2 and out[0] == 5 and "iterative_sequence: true" in str(out[1]), out
    assert _stream(server, "forever_not_iterative", 0) == [0]


def test_a_client_that_goes_stops_its_request_being_run_again(server):
    """A decoupled model that reschedules every request until told its
    client has gone: the stream is closed after a few responses, the
    request stops running, and the instance serves the next request."""
    import tritonclient.grpc as grpcclient

    got = queue.Queue()
    client = _grpc(server)
    client.start_stream(callback=lambda result, error: got.put(error or result))
    client.async_stream_infer("forever", [_tensor(grpcclient, "IN", np.array([7], np.int32), "INT32")])
    for _ in range(3):
        assert int(got.get(timeout=30).as_numpy("OUT")[0]) == 7
    client.stop_stream(cancel_requests=True)
    client.close()
    started = time.monotonic()
    assert _stream(server, "forever", 0) == [0]
    assert time.monotonic() - started < 20


def test_a_request_already_ended_is_not_run_again(server):
    """A decoupled model that sends a request's final response and then
    reschedules it: nobody would read another run, so it is not run again
    (else the instance would run it forever): each request gets its one
    response, each ran once, and the next is served."""
    assert _stream(server, "final_then_reschedule", 5) == [5]
    assert _stream(server, "final_then_reschedule", 6) == [6]
    assert _stream(server, "final_then_reschedule", -1) == [2], "the two requests before ran more than once each"


def test_a_process_that_ends_while_a_request_runs_again_fails_that_request_only(server):
    """The model's process ends (os._exit) in a request's second run: that
    request fails with 500 naming the process's end (a decoupled one after
    the response of its first run, through its stream), and the next request
    is served by a process started again."""
    body = lambda n: {"inputs": [{"name": "IN", "shape": [1], "datatype": "INT32", "data": [n]}]}
    r = requests.post(f"http://{server.http}/v2/models/dies/infer", json=body(1), timeout=60)
    assert r.status_code == 500 and "Python process" in r.json()["error"], r.text
    r = requests.post(f"http://{server.http}/v2/models/dies/infer", json=body(0), timeout=60)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0], r.text
    out = _stream(server, "dies_decoupled", 1)
    assert out[0] == 1 and len(out) == 2 and "Python process" in str(out[1]), out
    assert _stream(server, "dies_decoupled", 0) == [0]


def test_configs_that_cannot_reschedule_are_refused(tmp_path):
    """`iterative_sequence` on a model whose engine cannot reschedule (an
    ONNX model), or with implicit state, leaves the model UNAVAILABLE saying
    why; the other models load."""
    root = Path(__file__).resolve().parents[2]
    repo = tmp_path / "repo"
    for name, extra in [
        ("onnx_iterative", ITERATIVE_SEQUENCE),
        ("onnx_plain", ""),
    ]:
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(root / "examples/models/add/1/model.onnx", repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\nplatform: "onnxruntime_onnx"\n' + extra)
    config, source = MODELS["trace"]
    (repo / "controlled" / "1").mkdir(parents=True)
    shutil.copy(SOURCES / f"{source}.py", repo / "controlled" / "1" / "model.py")
    (repo / "controlled" / "config.pbtxt").write_text(
        'name: "controlled"\n' + config.replace(
            ITERATIVE_SEQUENCE,
            'sequence_batching { iterative_sequence: true state [ { input_name: "S_IN" output_name: "S_OUT" '
            'data_type: TYPE_FP32 dims: [ 1 ] } ] }\n'))
    proc, addresses = start_serve(repo, "--strict-readiness", "false")
    try:
        wait_ready(addresses["HTTP"])
        index = {m["name"]: m for m in requests.post(f"http://{addresses['HTTP']}/v2/repository/index",
                                                     timeout=30).json()}
        assert index["onnx_plain"]["state"] == "READY"
        assert index["onnx_iterative"]["state"] == "UNAVAILABLE"
        assert "iterative_sequence is for models that reschedule their requests" in index["onnx_iterative"]["reason"]
        assert index["controlled"]["state"] == "UNAVAILABLE"
        assert "iterative_sequence with state is not supported" in index["controlled"]["reason"]
    finally:
        stop_serve(proc)


# ================================================================== L0_iterative_sequence
# qa/L0_iterative_sequence/iterative_sequence_e2e.py, its model the C++ test backend's port
# (fixtures/request_rescheduling/iterative_sequence_e2e).
ITERATIVE_CONFIG = {
    "backend": "python", "max_batch_size": 1, "model_transaction_policy": {"decoupled": True},
    "input": [{"name": "INPUT", "data_type": "TYPE_INT32", "dims": [1]}],
    "output": [{"name": "OUTPUT", "data_type": "TYPE_INT32", "dims": [1]}],
    "instance_group": [{"kind": "KIND_CPU"}]}


def _load_iterative(server, **scheduling):
    """setUp (the repository's config) or a test's MODEL_CONFIG_BASE with `scheduling`."""
    body = {"parameters": {"config": json.dumps(dict(ITERATIVE_CONFIG, **scheduling))}} if scheduling else None
    r = requests.post(f"http://{server.http}/v2/repository/models/iterative_sequence_e2e/load", json=body, timeout=60)
    assert r.status_code == 200, r.text


def _iterative_stream(server, sequence_id=0, sequence_start=False, num_requests=1):
    """test_grpc_stream: `num_requests` requests of INPUT [[2]] on one stream; the OUTPUT values in
    arrival order, raising the first error."""
    import tritonclient.grpc as grpcclient

    got = queue.Queue()
    with _grpc(server) as client:
        client.start_stream(callback=lambda result, error: got.put(error or result))
        for _ in range(num_requests):
            client.async_stream_infer("iterative_sequence_e2e",
                                      [_tensor(grpcclient, "INPUT", np.array([[2]], np.int32), "INT32")],
                                      sequence_id=sequence_id, sequence_start=sequence_start)
        out, ended = [], 0
        while ended < num_requests:
            item = got.get(timeout=30)
            if isinstance(item, Exception):
                raise item
            out.append(int(item.as_numpy("OUTPUT")[0][0]))
            ended += item.get_response().parameters["triton_final_response"].bool_param
        client.stop_stream()
    return out


def test_iterative_generate_stream(server):
    """test_generate_stream: generate_stream with {"INPUT": 2} streams OUTPUT 1 then 0. Triton 2.51:
    the same two events."""
    _load_iterative(server)
    r = requests.post(f"http://{server.http}/v2/models/iterative_sequence_e2e/generate_stream",
                      data=json.dumps({"INPUT": 2}), headers={"Accept": "text/event-stream"}, timeout=60)
    r.raise_for_status()
    events = [json.loads(line[len("data: "):]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert [e["OUTPUT"] for e in events] == [1, 0], r.text


def test_iterative_grpc_stream(server):
    """test_grpc_stream: one request of INPUT 2 without a sequence (`sequence_id=0`) on a gRPC stream:
    the server gives it a sequence of its own; answers 1 then 0. Triton 2.51: the same."""
    _load_iterative(server)
    assert _iterative_stream(server) == [1, 0]


def test_iterative_backlog_fill(server):
    """test_backlog_fill: with the config of the test (iterative_sequence, max_sequence_idle 8 s, a
    direct strategy with a 10 s queue delay), four requests on one stream all finish: eight answers
    (not checked one by one, as in the QA), four of them 0, since each request got a sequence of its
    own. Triton 2.51: eight answers."""
    _load_iterative(server, sequence_batching={"iterative_sequence": True, "max_sequence_idle_microseconds": 8000000,
                                             "direct": {"max_queue_delay_microseconds": 10000000}})
    try:
        got = _iterative_stream(server, num_requests=4)
        assert len(got) == 8 and sorted(got) == [0] * 4 + [1] * 4, got
    finally:
        _load_iterative(server)


def test_iterative_reschedule_error_is_a_documented_difference(server):
    """test_reschedule_error: max_sequence_idle 0.2 s, below its C++ backend's 0.5 s between runs, so
    that Triton's scheduler ends the sequence and the next run fails ("must specify the START flag on
    the first request of the sequence"). anemone's queue runs a rescheduled request again ahead of
    new ones, on the same instance, and its sequence has no idle time, so none idles out: the request is answered 1 then 0 (docs/SERVING.md, "Request
    rescheduling"). Triton 2.51 with this port (no delay between runs): 1 then 0 as well."""
    _load_iterative(server, sequence_batching={"iterative_sequence": True, "max_sequence_idle_microseconds": 200000})
    try:
        assert _iterative_stream(server) == [1, 0]
    finally:
        _load_iterative(server)


@pytest.mark.parametrize("scheduling", [
    {"sequence_batching": {"direct": {}, "iterative_sequence": False}},
    {"sequence_batching": {"oldest": {}, "iterative_sequence": False}},
    {"dynamic_batching": {}},
], ids=["direct", "oldest", "dynamic"])
def test_iterative_unsupported_scheduler(server, scheduling):
    """test_unsupported_sequence_scheduler and test_unsupported_dynamic_scheduler: the model under a
    scheduler without iterative_sequence reschedules; the request fails with "Request is released with
    TRITONSERVER_REQUEST_RELEASE_RESCHEDULE" (a sequence's started by the client), and the stream ends
    the request with it. Triton's C++ test backend answers with those words; tritonserver 2.51 with this
    Python port logs them and its client waits (no answer within 30 s, each scheduler)."""
    _load_iterative(server, **scheduling)
    try:
        sequence = "sequence_batching" in scheduling
        with pytest.raises(InferenceServerException, match="Request is released with TRITONSERVER_REQUEST_RELEASE_RESCHEDULE"):
            _iterative_stream(server, sequence_id=1 if sequence else 0, sequence_start=sequence)
    finally:
        _load_iterative(server)


def test_request_reschedule_with_a_response_returned(server):
    """A model that is not decoupled (dynamic batching, no iterative_sequence) that reschedules its
    request and returns a response for it anyway: 500, 'Expected a None object in the execute function
    return list for reschduled request'. Triton 2.51: the same 500 and words."""
    r = requests.post(f"http://{server.http}/v2/models/reschedule_dynamic/infer", json={
        "inputs": [{"name": "INPUT", "shape": [1, 1], "datatype": "INT32", "data": [2]}]}, timeout=60)
    assert r.status_code == 500, r.text
    assert "Expected a None object in the execute function return list for reschduled request" in r.json()["error"]
