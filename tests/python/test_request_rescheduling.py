"""Request rescheduling: a Python model with `sequence_batching {
iterative_sequence: true }` calls
`request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)`
and the request runs again in a later `execute`
(docs/SERVING.md, "Python models").

Triton's `qa/L0_backend_python/request_rescheduling` (its models
`request_rescheduling_addsub`, `iterative_sequence` and `wrong_return_type`
from `qa/python_models`, as test_triton_qa_python_more.py has them, whose
TestRequestRescheduling runs the QA's BLS model; and its
`grpc_endpoint_test.py`), then what a user meets: the flags and
correlation IDs the model sees, a model that reschedules without
`iterative_sequence`, a client that goes while its request keeps being
rescheduled, and configs that cannot work. tritonserver 2.51 (CPU, Python backend) served the same repository on
2026-12-07; each docstring says what it answered.
"""
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_support import start_serve, stop_serve, wait_ready
from test_triton_qa_protocol import HEADER

# Each request runs COUNT times (its input), its state kept by correlation
# ID; answers what it saw each time: flags and correlation IDs, as strings.
TRACE = HEADER + '''
class TritonPythonModel:
    def initialize(self, args):
        self.seen = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            given = pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()
            count = int(given.ravel()[0])
            key = request.correlation_id()
            seen = self.seen.setdefault(key, [])
            seen.append(f"{request.flags()}:{key}:{len(requests)}")
            if len(seen) < count:
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                responses.append(None)
            else:
                del self.seen[key]
                out = np.array(seen, dtype=object).reshape(given.shape[:-1] + (-1,))
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", out)]))
        return responses
'''

# Reschedules every request until its client goes, sending a response each time.
FOREVER = HEADER + '''
import time


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            if n == 0:
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([0], np.int32))]),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            time.sleep(0.01)
            if not request.is_cancelled():
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([n], np.int32))]))
            request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
        return None
'''

# Sends its one response with the final flag, then reschedules the request
# anyway; IN -1 answers how many runs the requests before it had.
FINAL_THEN_RESCHEDULE = HEADER + '''
class TritonPythonModel:
    def initialize(self, args):
        self.runs = 0

    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            out = self.runs if n == -1 else n
            self.runs += 1
            request.get_response_sender().send(
                pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([out], np.int32))]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            if n != -1:
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
        return None
'''

ITERATIVE_SEQUENCE = "sequence_batching { iterative_sequence: true }\n"

MODELS = {
    "trace": (
        'backend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "SEEN" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', TRACE),
    "trace_not_iterative": (
        'backend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "SEEN" data_type: TYPE_STRING dims: [ -1 ] } ]\n', TRACE),
    "forever": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', FOREVER),
    "final_then_reschedule": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        + ITERATIVE_SEQUENCE + 'instance_group [{ kind: KIND_CPU }]\n', FINAL_THEN_RESCHEDULE),
    "forever_not_iterative": (
        'backend: "python"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n', FOREVER),
}


# Triton's QA models as published (qa/python_models), shared with test_triton_qa_python_more.py.
QA_MODELS = Path(__file__).resolve().parent / "fixtures/triton_qa_python_more/python_models"


def write_repository(repo):
    for name in ("request_rescheduling_addsub", "iterative_sequence", "wrong_return_type"):
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(QA_MODELS / name / "config.pbtxt", repo / name / "config.pbtxt")
        shutil.copy(QA_MODELS / name / "model.py", repo / name / "1" / "model.py")
    for name, (config, source) in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n' + config)
        (repo / name / "1" / "model.py").write_text(source)
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
    (repo / "controlled" / "1" / "model.py").write_text(source)
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
