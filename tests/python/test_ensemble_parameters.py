"""An ensemble request's parameters and id reach every composing model, as
tritonserver 2.51 forwards them (checked side by side: a Python step that
answers `request.parameters()` and `request_id()` saw the ensemble
request's on Triton, and `{}` and "" on anemone before this was fixed):
over HTTP and gRPC, and through a streaming ensemble, whose decoupled step
and the step after it both see them.
"""
import json

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from stream_support import Stream, final, tensor

# Answers its request's parameters, as JSON in P, its id in ID, and its
# correlation ID and flags in SEQ.
ECHO = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([
            pb_utils.Tensor("P", np.array([r.parameters().encode()], np.object_)),
            pb_utils.Tensor("ID", np.array([r.request_id().encode()], np.object_)),
            pb_utils.Tensor("SEQ", np.array([f"{r.correlation_id()}|{r.flags()}".encode()], np.object_)),
        ]) for r in requests]
'''

ECHO_CONFIG = """
backend: "python"
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "P" data_type: TYPE_STRING dims: [ 1 ] }, { name: "ID" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "SEQ" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

# Decoupled: sends two responses, each its request's parameters in Q, then the final flag.
TWICE = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            sender = r.get_response_sender()
            for _ in range(2):
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("Q", np.array([r.parameters().encode()], np.object_)),
                    pb_utils.Tensor("X", np.array([1], np.int32)),
                ]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

TWICE_CONFIG = """
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "Q" data_type: TYPE_STRING dims: [ 1 ] }, { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

ENSEMBLE = """
platform: "ensemble"
response_cache { enable: true }
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "P" data_type: TYPE_STRING dims: [ 1 ] }, { name: "ID" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "SEQ" data_type: TYPE_STRING dims: [ 1 ] }
]
ensemble_scheduling { step [
  { model_name: "echo" model_version: -1 input_map { key: "X" value: "X" }
    output_map [ { key: "P" value: "P" }, { key: "ID" value: "ID" }, { key: "SEQ" value: "SEQ" } ] }
] }
"""

STREAMING = """
platform: "ensemble"
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "P" data_type: TYPE_STRING dims: [ 1 ] }, { name: "Q" data_type: TYPE_STRING dims: [ 1 ] } ]
ensemble_scheduling { step [
  { model_name: "twice" model_version: -1 input_map { key: "X" value: "X" }
    output_map [ { key: "Q" value: "Q" }, { key: "X" value: "X1" } ] },
  { model_name: "echo" model_version: -1 input_map { key: "X" value: "X1" } output_map { key: "P" value: "P" } }
] }
"""

PARAMETERS = {"temperature": 0.5, "mode": "fast", "n": 3, "flag": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(
        tmp_path_factory.mktemp("ensemble-parameters"),
        models=[("echo", ECHO_CONFIG, ECHO), ("twice", TWICE_CONFIG, TWICE)],
    )
    for name, config in [("echo_ensemble", ENSEMBLE), ("echo_stream", STREAMING)]:
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--cache-config", "local,size=1048576")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def test_an_ensembles_parameters_reach_its_steps_over_http_and_grpc(server):
    client = httpclient.InferenceServerClient(server["HTTP"])
    x = httpclient.InferInput("X", [1], "INT32")
    x.set_data_from_numpy(np.zeros(1, np.int32))
    for model in ["echo", "echo_ensemble"]:
        result = client.infer(model, [x], parameters=PARAMETERS, request_id="req-42")
        assert json.loads(result.as_numpy("P")[0]) == PARAMETERS, model
        assert result.as_numpy("ID")[0] == b"req-42", model
    assert json.loads(client.infer("echo_ensemble", [x]).as_numpy("P")[0]) == {}
    grpc = grpcclient.InferenceServerClient(server["gRPC"])
    x = grpcclient.InferInput("X", [1], "INT32")
    x.set_data_from_numpy(np.zeros(1, np.int32))
    got = grpc.infer("echo_ensemble", [x], parameters={"mode": "fast", "n": 3}).as_numpy("P")[0]
    assert json.loads(got) == {"mode": "fast", "n": 3}


def test_a_streaming_ensembles_parameters_reach_the_decoupled_step_and_the_steps_after(server):
    stream = Stream(server)
    try:
        stream.send("echo_stream", [tensor("X", np.zeros(1, np.int32))], parameters={"mode": "fast", "n": 3},
                    enable_empty_final_response=True)
        seen = []
        while True:
            result, error = stream.next()
            assert error is None, error
            if final(result) and result.as_numpy("P") is None:
                break
            seen.append((json.loads(result.as_numpy("Q")[0]), json.loads(result.as_numpy("P")[0])))
            if final(result):
                break
        want = {"mode": "fast", "n": 3}
        assert seen == [(want, want), (want, want)], seen
    finally:
        stream.close()


def test_a_models_request_carries_its_sequence_without_sequence_batching(server):
    """As in tritonserver 2.51 (read off it side by side): a Python model
    without sequence_batching reads a request's sequence_id and start/end
    flags through correlation_id() and flags(), directly and as an
    ensemble's step; a request without one reads 0 and 0."""
    client = httpclient.InferenceServerClient(server["HTTP"])
    x = httpclient.InferInput("X", [1], "INT32")
    x.set_data_from_numpy(np.zeros(1, np.int32))
    for model in ["echo", "echo_ensemble"]:
        for sequence, want in [(dict(sequence_id=5, sequence_start=True), b"5|1"),
                               (dict(sequence_id="abc", sequence_end=True), b"abc|2"),
                               (dict(sequence_id=9, sequence_start=True, sequence_end=True), b"9|3"),
                               ({}, b"0|0")]:
            got = client.infer(model, [x], **sequence).as_numpy("SEQ")[0]
            assert got == want, (model, sequence, got)
        # Flags without an ID reach the model too, as in Triton (tritonclient
        # sends them only with an ID; a raw request may).
        for parameters, want in [({"sequence_start": True}, "0|1"), ({"sequence_end": True}, "0|2"),
                                 ({"sequence_start": True, "sequence_end": True}, "0|3")]:
            body = {"inputs": [{"name": "X", "shape": [1], "datatype": "INT32", "data": [0]}],
                    "parameters": parameters}
            r = requests.post(f"http://{server['HTTP']}/v2/models/{model}/infer", json=body, timeout=10)
            assert r.status_code == 200, r.text
            got = next(o for o in r.json()["outputs"] if o["name"] == "SEQ")["data"][0]
            assert got == want, (model, parameters, got)
        # An ID of 2^63 or more comes over gRPC as a negative int64_param
        # (tritonclient's C++ client casts it); it is read back as uint64.
        g = grpcclient.InferenceServerClient(server["gRPC"])
        gx = grpcclient.InferInput("X", [1], "INT32")
        gx.set_data_from_numpy(np.zeros(1, np.int32))
        got = g.infer(model, [gx], sequence_id=-5, sequence_start=True).as_numpy("SEQ")[0]
        assert got == f"{2**64 - 5}|1".encode(), (model, got)


def test_a_cached_ensemble_answers_requests_with_parameters_by_running_its_steps(server):
    """The ensemble caches its answers; a request with parameters is never
    answered from the cache, since its steps read them."""
    client = httpclient.InferenceServerClient(server["HTTP"])
    x = httpclient.InferInput("X", [1], "INT32")
    x.set_data_from_numpy(np.array([7], np.int32))
    for mode in ["fast", "slow", "fast"]:
        got = client.infer("echo_ensemble", [x], parameters={"mode": mode}).as_numpy("P")[0]
        assert json.loads(got) == {"mode": mode}
    before = client.get_inference_statistics("echo_ensemble")["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
    for _ in range(2):
        assert json.loads(client.infer("echo_ensemble", [x]).as_numpy("P")[0]) == {}
    after = client.get_inference_statistics("echo_ensemble")["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
    assert after == before + 1, "the second request without parameters is a cache hit"
