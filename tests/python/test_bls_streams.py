"""Streams from other models inside a Python model
(`InferenceRequest.exec(decoupled=True)`, Triton's business-logic scripting
on decoupled models): a model that is not decoupled reading a decoupled
model's responses as they come, summing them against numpy; the final
flag alone as an empty last response; cancel() stopping the request with
a CANCELLED error; a request to another model (exec()) while a stream is
open; a stream left unread when execute() returns; a model that answers
once as a stream of one; an unknown model's error; and a decoupled model
passing each response on to its client as it arrives.
"""
import queue
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from bls_stream_models import RELAY, RELAY_CONFIG, SUM_STREAM, SUM_STREAM_CONFIG, TICKER, TICKER_CONFIG
from serve_support import python_repository, start_serve, stop_serve, wait_ready

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("bls_streams"), examples=("repeat", "add_sub"), models=(
        ("sum_stream", SUM_STREAM_CONFIG, SUM_STREAM), ("relay", RELAY_CONFIG, RELAY), ("ticker", TICKER_CONFIG, TICKER),
    ))
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def sum_stream(server, values, **params):
    client = httpclient.InferenceServerClient(server["HTTP"])
    t = httpclient.InferInput("IN", [len(values)], "INT32")
    t.set_data_from_numpy(np.asarray(values, dtype=np.int32))
    result = client.infer("sum_stream", [t], parameters=params)
    errors = result.as_numpy("ERRORS")[0]
    errors = errors.decode() if isinstance(errors, bytes) else str(errors)
    return {
        "sum": int(result.as_numpy("SUM")[0]), "count": int(result.as_numpy("COUNT")[0]),
        "empty": int(result.as_numpy("EMPTY")[0]), "added": int(result.as_numpy("ADDED")[0]),
        "errors": [e for e in errors.split("\n") if e],
    }


def test_a_model_reads_a_decoupled_models_responses_as_a_stream(server):
    values = np.random.default_rng(3).integers(-50, 50, size=40)
    got = sum_stream(server, values)
    # repeat sends one response per value, then the final flag alone: an
    # empty last response, as Triton's iterator gives it.
    assert got == {"sum": int(values.sum()), "count": len(values) + 1, "empty": 1, "added": 0, "errors": []}


def test_cancel_stops_the_stream_with_a_cancelled_error(server):
    values = np.arange(1, 201)  # sums 1, 3, 6, 10, ...: 55 after ten responses
    got = sum_stream(server, values, cancel_at=55, delay_ms=2)
    assert got["sum"] == 55 and got["count"] == 11, got
    assert got["errors"] == ["7 the request was cancelled"], got
    # repeat saw is_cancelled() and stopped: the next stream is whole and in order.
    assert sum_stream(server, [5, 6, 7])["sum"] == 18


def test_another_call_while_a_stream_is_open(server):
    values = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    got = sum_stream(server, values, add=True)
    assert got["sum"] == int(values.sum())
    assert got["added"] == int((values + 1).sum())


def sent_by_ticker(server):
    with urllib.request.urlopen(f"http://{server['HTTP']}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith("ticker_sent_total "):
                return float(line.split()[1])
    return 0.0


def test_a_stream_left_unread_ends_with_execute(server):
    got = sum_stream(server, np.arange(1000), read=2, delay_ms=2, target="ticker")
    assert (got["sum"], got["count"]) == (1, 2)
    # The called model is told (is_cancelled()) and stops: it does not send
    # its 1,000 responses, 2 ms apart, to nobody.
    time.sleep(0.5)
    sent = sent_by_ticker(server)
    time.sleep(0.5)
    assert sent == sent_by_ticker(server) and sent < 50, sent
    # Its later responses are dropped, never read as another call's answer.
    for _ in range(3):
        values = np.arange(10)
        assert sum_stream(server, values, add=True) == {
            "sum": 45, "count": 11, "empty": 1, "added": 55, "errors": []}


def test_a_model_that_answers_once_is_a_stream_of_one_and_errors_are_responses(server):
    got = sum_stream(server, [1, 2, 3, 4], target="add_sub", outputs="OUTPUT0")
    # add_sub lacks INPUT1 here: its refusal comes as the one response.
    assert got["count"] == 1 and len(got["errors"]) == 1 and "INPUT1" in got["errors"][0], got
    got = sum_stream(server, [1], target="no_such_model")
    assert got["count"] == 1 and got["errors"][0].startswith("2 "), got
    assert "no_such_model" in got["errors"][0]


def test_a_decoupled_model_passes_each_response_on_as_it_comes(server):
    client = grpcclient.InferenceServerClient(server["gRPC"])
    arrivals = queue.Queue()
    client.start_stream(callback=lambda result, error: arrivals.put((time.monotonic(), result, error)))
    values = np.array([4, 8, 15, 16, 23], dtype=np.int32)
    t = grpcclient.InferInput("IN", [len(values)], "INT32")
    t.set_data_from_numpy(values)
    client.async_stream_infer("relay", [t], parameters={"delay_ms": 150}, enable_empty_final_response=True)
    got = []
    while True:
        at, result, error = arrivals.get(timeout=30)
        assert error is None, error
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
        got.append((at, int(result.as_numpy("OUT")[0]), int(result.as_numpy("IDX")[0])))
    client.stop_stream()
    assert [(o, i) for _, o, i in got] == [(2 * v, i) for i, v in enumerate(values)]
    # Streamed, not gathered: 150 ms apart at the source, the first arrives
    # long before the last (all at once would be 0 ms apart).
    assert got[-1][0] - got[0][0] > 0.3, [round(a - got[0][0], 3) for a, _, _ in got]


def test_a_decoupled_model_cancels_a_stream_it_reads(server):
    client = grpcclient.InferenceServerClient(server["gRPC"])
    arrivals = queue.Queue()
    client.start_stream(callback=lambda result, error: arrivals.put((result, error)))
    before = sent_by_ticker(server)
    t = grpcclient.InferInput("IN", [1000], "INT32")
    t.set_data_from_numpy(np.arange(1000, dtype=np.int32))
    client.async_stream_infer("relay", [t], parameters={"target": "ticker", "delay_ms": 2, "stop_after": 3})
    outs = []
    while True:
        result, error = arrivals.get(timeout=30)
        if error is not None:
            break
        outs.append(int(result.as_numpy("OUT")[0]))
    client.stop_stream()
    assert outs == [0, 2, 4] and "the request was cancelled" in str(error), (outs, error)
    time.sleep(0.5)
    sent = sent_by_ticker(server) - before
    assert sent < 50, sent
