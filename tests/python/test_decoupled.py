"""Decoupled Python models (`model_transaction_policy { decoupled: true }`)
through tritonclient's gRPC stream, as a Triton user runs them: every
response against numpy, in order, with `triton_final_response`; the final
flag alone as an empty response when asked; many clients each getting
exactly their own responses; responses of requests on one stream
interleaving; errors (an error response, an exception, a list from
execute(), a process that dies) failing only their request; a client that
cancels seen by `is_cancelled()`; requests to another model from a
response thread; dynamic batching; a warm-up (`model_warmup`, run at
load: `streams` has one); and the one-answer endpoints refusing
such a model with 501 / UNIMPLEMENTED, as Triton 2.51 does.
"""
import concurrent.futures as cf
import json
import queue
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from decoupled_models import BATCHED, BATCHED_CONFIG, FLOOD, FLOOD_CONFIG, STREAMS, STREAMS_CONFIG
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from stream_support import Stream, final, tensor
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("decoupled"), examples=("repeat", "add_sub"), models=(
        ("streams", STREAMS_CONFIG, STREAMS), ("batched", BATCHED_CONFIG, BATCHED), ("flood", FLOOD_CONFIG, FLOOD),
    ))
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def grpc(server):
    return grpcclient.InferenceServerClient(server["gRPC"])


def test_repeat_sends_each_value_then_the_final_flag_alone_when_asked(server):
    values = np.array([5, -6, 7, 2**31 - 1], np.int32)
    before = stats(server, "repeat")
    for empty in (True, False):
        stream = Stream(server)
        try:
            stream.send("repeat", [tensor("IN", values, "INT32")], request_id=f"r-{empty}",
                        enable_empty_final_response=empty)
            got = stream.until_final(count=len(values) + (1 if empty else 0))
            with pytest.raises(queue.Empty):
                stream.next(timeout=0.5)
        finally:
            stream.close()
        for index, (result, error) in enumerate(got[:len(values)]):
            assert error is None, error.message()
            assert result.as_numpy("OUT").tolist() == [values[index]]
            assert result.as_numpy("IDX").tolist() == [index]
            assert result.get_response().id == f"r-{empty}"
            assert not final(result)
        if empty:
            result, error = got[-1]
            response = result.get_response()
            assert error is None and final(result)
            assert (response.model_name, response.id, len(response.outputs)) == ("repeat", "r-True", 0)
    assert stats(server, "repeat") - before == 2, "each request counted once, not each response"


def stats(server, model):
    with urllib.request.urlopen(f"http://{server['HTTP']}/v2/models/{model}/stats") as r:
        return json.load(r)["model_stats"][0]["inference_stats"]["success"]["count"]


def test_many_clients_each_get_exactly_their_own_responses(server):
    rng = np.random.default_rng(7)
    asks = [rng.integers(-1000, 1000, size=rng.integers(1, 7)).astype(np.int32) for _ in range(24)]

    def run(values):
        stream = Stream(server)
        try:
            stream.send("repeat", [tensor("IN", values, "INT32")], enable_empty_final_response=True)
            got = stream.until_final()
        finally:
            stream.close()
        assert all(error is None for _, error in got), got
        return [r.as_numpy("OUT")[0] for r, _ in got[:-1]], [r.as_numpy("IDX")[0] for r, _ in got[:-1]]

    with cf.ThreadPoolExecutor(8) as pool:
        for values, (outs, idxs) in zip(asks, pool.map(run, asks)):
            np.testing.assert_array_equal(outs, values)
            assert idxs == list(range(len(values)))


def test_responses_of_requests_on_one_stream_interleave(server):
    stream = Stream(server)
    try:
        slow = [tensor("IN", np.array([1, 2, 3], np.int32), "INT32")]
        stream.send("repeat", slow, request_id="slow", parameters={"delay_ms": 400})
        stream.send("repeat", [tensor("IN", np.array([9], np.int32), "INT32")], request_id="quick")
        order = [(r.get_response().id, r.as_numpy("OUT")[0]) for r, _ in stream.until_final(count=4)]
    finally:
        stream.close()
    assert sorted(order) == [("quick", 9), ("slow", 1), ("slow", 2), ("slow", 3)]
    assert order.index(("quick", 9)) < order.index(("slow", 3)), f"the quick request waited for the slow one: {order}"


def test_the_one_answer_endpoints_refuse_a_decoupled_model(server):
    body = json.dumps({"inputs": [{"name": "IN", "shape": [1], "datatype": "INT32", "data": [1]}]}).encode()
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/models/repeat/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request)
    assert e.value.code == 501
    message = json.load(e.value)["error"]
    assert "decoupled" in message and "ModelStreamInfer" in message, message
    with pytest.raises(InferenceServerException) as e:
        grpc(server).infer("repeat", [tensor("IN", np.array([1], np.int32), "INT32")])
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "decoupled" in e.value.message()


def test_an_error_an_exception_or_a_returned_list_fails_only_its_request(server):
    stream = Stream(server)
    try:
        x = [tensor("IN", np.array([4], np.int32), "INT32")]
        for mode, words in (("error", "IN is not welcome"), ("raise", "ValueError: asked to raise"),
                            ("return", "must return None")):
            stream.send("streams", x, parameters={"mode": mode}, enable_empty_final_response=True)
            got = stream.until_final()
            assert len(got) == 1 and got[0][1] is not None, (mode, got)
            assert words in got[0][1].message(), (mode, got[0][1].message())
            # The stream goes on.
            stream.send("streams", x)
            (result, error), = stream.until_final()
            assert error is None and result.as_numpy("OUT").tolist() == [4] and final(result)
    finally:
        stream.close()


def test_a_process_that_dies_mid_stream_fails_its_request_and_the_next_runs(server):
    stream = Stream(server)
    try:
        x = [tensor("IN", np.array([8], np.int32), "INT32")]
        stream.send("streams", x, parameters={"mode": "die"})
        (first, error), (_, ended) = stream.until_final(count=2)
        assert error is None and first.as_numpy("OUT").tolist() == [8] and not final(first)
        assert ended is not None and "ended before it sent the request's final response" in ended.message()
        stream.send("streams", [tensor("IN", np.array([3, 4], np.int32), "INT32")])
        (result, error), = stream.until_final()
        assert error is None and result.as_numpy("OUT").tolist() == [3, 4]
    finally:
        stream.close()


def test_a_client_that_cancels_is_seen_by_is_cancelled(server):
    stream = Stream(server)
    stream.send("streams", [tensor("IN", np.array([0], np.int32), "INT32")], parameters={"mode": "until_cancelled"})
    got = stream.until_final(count=3)
    assert all(error is None and not final(result) for result, error in got)
    stream.close(cancel=True)
    deadline = time.time() + 10
    while True:
        report = Stream(server)
        try:
            report.send("streams", [tensor("IN", np.array([0], np.int32), "INT32")], parameters={"mode": "report"})
            (result, error), = report.until_final()
        finally:
            report.close()
        counts = result.as_numpy("OUT").tolist()
        if counts != [-1] or time.time() > deadline:
            break
        time.sleep(0.1)
    assert len(counts) == 1 and 3 <= counts[0] < 1000, f"responses sent before the cancel was seen: {counts}"


def test_a_response_thread_calls_another_model(server):
    stream = Stream(server)
    try:
        values = np.array([10, 20, 30], np.int32)
        stream.send("streams", [tensor("IN", values, "INT32")], parameters={"mode": "bls"},
                    enable_empty_final_response=True)
        got = stream.until_final()
    finally:
        stream.close()
    assert len(got) == 4 and final(got[-1][0]), got
    for index, (result, error) in enumerate(got[:3]):
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("OUT"), values[index] + np.arange(4))


def test_dynamic_batching_gives_execute_many_decoupled_requests(server):
    def run(value):
        stream = Stream(server)
        try:
            stream.send("batched", [tensor("IN", np.array([[value]], np.int32), "INT32")])
            got = stream.until_final()
        finally:
            stream.close()
        assert [error for _, error in got] == [None, None], got
        assert [final(r) for r, _ in got] == [False, True]
        return [r.as_numpy("OUT").item() for r, _ in got], max(r.as_numpy("BATCH").item() for r, _ in got)

    values = list(range(1, 17))
    with cf.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(run, values))
    for value, (outs, _) in zip(values, answers):
        assert outs == [value, 2 * value]
    assert max(batch for _, batch in answers) > 1, "no execute() was given more than one request"


def test_a_model_that_is_not_decoupled_answers_once_on_a_stream_flagged_final(server):
    stream = Stream(server)
    try:
        x = np.array([1, 2, 3, 4], np.float32)
        stream.send("add_sub", [tensor("INPUT0", x, "FP32"), tensor("INPUT1", x, "FP32")],
                    enable_empty_final_response=True)
        (result, error), = stream.until_final()
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.5)
    finally:
        stream.close()
    assert error is None and final(result)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * x)


def test_a_client_that_stops_reading_ends_its_request_at_the_buffer_limit(server):
    """A client that reads nothing of a fast model's stream for a while:
    its responses wait in the server up to --max-stream-buffer-bytes (16
    MiB), then the request ends with the overload error as its last event,
    the model sees is_cancelled(), and the server serves on."""
    import http.client

    host, port = server["HTTP"].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    # 4,000 responses of 64 KiB: 250 MiB if nothing stopped them.
    connection.request("POST", "/v2/models/flood/generate_stream", body=json.dumps({"N": 4000}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    time.sleep(3)  # not reading: the socket's buffers fill, then the server's
    events = [json.loads(line[len(b"data: "):]) for line in response.read().split(b"\n") if line.startswith(b"data: ")]
    connection.close()
    assert "error" in events[-1], events[-1].keys()
    assert "response buffer" in events[-1]["error"] and "--max-stream-buffer-bytes" in events[-1]["error"]
    sent = events[:-1]
    # Each event is its own response, in order; far fewer than 4,000 went.
    assert [e["OUT"][0] for e in sent] == list(range(len(sent)))
    assert 0 < len(sent) < 1000, len(sent)
    # The server goes on.
    stream = Stream(server)
    try:
        stream.send("repeat", [tensor("IN", np.array([7, 8], np.int32), "INT32")])
        got = stream.until_final(count=2)
        assert [r.as_numpy("OUT")[0] for r, e in got if e is None] == [7, 8]
    finally:
        stream.close()
