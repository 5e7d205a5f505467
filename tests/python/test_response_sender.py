"""The response sender of a Python model that is not decoupled
(`request.get_response_sender()` in Triton's default mode), as
tritonserver 2.51 answers it (compared side by side): one response with
the final flag, from execute or from a thread after execute returned,
answers the request; a second response, or the final flag before any
response, raises in the model; a request neither answered nor returned
fails after the instance's wait (ANEMONE_PYTHON_SENDER_WAIT_S, 1 s here)
and the instance goes on; requests of a dynamic batch may mix returned
and sent responses.
"""
import concurrent.futures as cf
import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

SOURCE = '''
import json
import threading
import time

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        returned = []
        for r in requests:
            mode = json.loads(r.parameters()).get("mode", "final")
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            answer = pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)])
            returned.append(answer)
            if mode == "returned":
                continue
            sender = r.get_response_sender()
            if mode == "final":
                sender.send(answer, flags=FINAL)
            elif mode == "then_flag":
                sender.send(answer)
                sender.send(flags=FINAL)
            elif mode == "thread":
                threading.Thread(target=lambda s=sender, a=answer: (time.sleep(0.2), s.send(a, flags=FINAL))).start()
            elif mode == "two":
                sender.send(answer)
                sender.send(answer, flags=FINAL)
            elif mode == "flag_only":
                sender.send(flags=FINAL)
            elif mode == "never":
                pass
        # With senders, execute returns None; a batch may mix both ways.
        if all(json.loads(r.parameters()).get("mode") == "returned" for r in requests):
            return returned
        return None if all(json.loads(r.parameters()).get("mode") != "returned" for r in requests) else returned
'''

CONFIG = """
name: "sender"
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("sender"), models=(("sender", CONFIG, SOURCE),))
    os.environ["ANEMONE_PYTHON_SENDER_WAIT_S"] = "1"
    try:
        proc, addresses = start_serve(repo)
    finally:
        del os.environ["ANEMONE_PYTHON_SENDER_WAIT_S"]
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def infer(server, mode, x, protocol=httpclient):
    address = server["HTTP"] if protocol is httpclient else server["gRPC"]
    client = protocol.InferenceServerClient(address)
    t = protocol.InferInput("X", [1, 2], "FP32")
    t.set_data_from_numpy(x)
    return client.infer("sender", [t], parameters={"mode": mode}).as_numpy("Y")


@pytest.mark.parametrize("mode", ["final", "then_flag", "thread"])
@pytest.mark.parametrize("protocol", [httpclient, grpcclient], ids=["http", "grpc"])
def test_one_sent_response_answers_the_request(server, mode, protocol):
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    np.testing.assert_array_equal(infer(server, mode, x, protocol), x * 2)


@pytest.mark.parametrize("mode, words", [
    ("two", "sends one response per request"),
    ("flag_only", "cannot send complete final before sending a response"),
    ("never", "sent no final response within 1 s"),
])
def test_a_wrong_use_fails_its_request_and_the_instance_goes_on(server, mode, words):
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    with pytest.raises(InferenceServerException) as e:
        infer(server, mode, x)
    assert words in str(e.value)
    np.testing.assert_array_equal(infer(server, "final", x), x * 2)


def test_a_batch_mixes_returned_and_sent_responses(server):
    modes = ["returned", "final", "thread", "returned", "then_flag", "final", "returned", "thread"] * 2
    xs = [np.array([[i, -i]], dtype=np.float32) for i in range(len(modes))]
    with cf.ThreadPoolExecutor(len(modes)) as pool:
        ys = list(pool.map(lambda args: infer(server, *args), zip(modes, xs)))
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(y, x * 2)
