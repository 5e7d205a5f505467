"""Triton's generate extension (`POST .../generate`, `.../generate_stream`)
over plain HTTP, as an LLM client sends it: inputs by name as values or
flat lists, shaped by the config (a batched model's batch of one first),
every other key a parameter; one JSON object back, an output with one
element as a value; a decoupled model's responses as Server-Sent Events;
and the refusals (a nested list, a value that is neither input nor
parameter, generate on a model that answers more than once), checked
against numpy and the behaviour of tritonserver 2.51.
"""
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serve_support import start_serve, stop_serve, wait_ready

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples/python_models"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    repo = tmp_path_factory.mktemp("generate")
    for name in ("repeat", "add_sub", "text_stats", "add"):
        shutil.copytree(EXAMPLES / name, repo / name)
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        yield addresses["HTTP"]
    finally:
        stop_serve(proc)


def post(http, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{http}{path}", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def events(text):
    """The `data:` events of a Server-Sent Events body, as JSON."""
    assert text == "" or text.endswith("\n\n"), text
    return [json.loads(chunk.removeprefix("data: ")) for chunk in text.split("\n\n") if chunk]


def test_generate_answers_one_object_with_each_output(http):
    x, y = np.array([1, 2, 3, 4], np.float32), np.array([10, 20, 30, 40], np.float32)
    status, kind, body = post(http, "/v2/models/add_sub/generate",
                              {"INPUT0": x.tolist(), "INPUT1": y.tolist(), "id": "g1", "note": "kept"})
    assert (status, kind) == (200, "application/json"), body
    answer = json.loads(body)
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("add_sub", "1", "g1")
    np.testing.assert_array_equal(answer["OUTPUT0"], x + y)
    np.testing.assert_array_equal(answer["OUTPUT1"], x - y)
    # The same through the versioned path.
    status, _, body = post(http, "/v2/models/add_sub/versions/1/generate", {"INPUT0": x.tolist(), "INPUT1": x.tolist()})
    assert status == 200 and json.loads(body)["OUTPUT0"] == (2 * x).tolist()


def test_a_text_input_of_a_batched_model_gets_its_batch_of_one_and_one_value_comes_back_alone(http):
    status, _, body = post(http, "/v2/models/text_stats/generate", {"TEXT": "héllo wörld", "parameters": {"temperature": 0.5}})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["UPPER"] == "HÉLLO WÖRLD"
    assert answer["LENGTH"] == len("héllo wörld")
    assert answer["BATCH"] == 1


def test_generate_stream_sends_each_response_of_a_decoupled_model_as_an_event(http):
    status, kind, body = post(http, "/v2/models/repeat/generate_stream", {"IN": [5, -6, 7], "delay_ms": 10})
    assert (status, kind) == (200, "text/event-stream; charset=utf-8"), body
    got = events(body)
    assert [(e["OUT"], e["IDX"]) for e in got] == [(5, 0), (-6, 1), (7, 2)]
    assert all(e["model_name"] == "repeat" and e["model_version"] == "1" for e in got)
    # A model that is not decoupled (ONNX, dims [-1, 4]: two rows): one event.
    status, _, body = post(http, "/v2/models/add/generate_stream", {"x": [[1, 2, 3, 4]]})
    assert status == 400 and "nested list" in json.loads(body)["error"], body
    x, y = np.arange(8, dtype=np.float32), np.arange(8, dtype=np.float32) * 10
    status, _, body = post(http, "/v2/models/add/generate_stream", {"x": x.tolist(), "y": y.tolist()})
    assert status == 200, body
    (only,) = events(body)
    np.testing.assert_array_equal(only["sum"], x + y)
    np.testing.assert_array_equal(only["diff"], x - y)


def test_generate_refuses_a_model_that_answers_more_than_once_and_takes_one_that_answers_once(http):
    status, _, body = post(http, "/v2/models/repeat/generate", {"IN": [1, 2]})
    assert status == 501, body
    assert "generate_stream" in json.loads(body)["error"]
    status, _, body = post(http, "/v2/models/repeat/generate", {"IN": 9})
    assert status == 200, body
    assert (json.loads(body)["OUT"], json.loads(body)["IDX"]) == (9, 0)


def test_bad_generate_requests_are_refused_with_what_to_send(http):
    cases = [
        ("add_sub", b"not json", 400, "malformed generate request JSON"),
        ("add_sub", ["x"], 400, "a generate request is a JSON object"),
        ("add_sub", {"INPUT0": [1, 2], "INPUT1": [1, 2, 3, 4]}, 400, "dims [4] cannot hold"),
        ("add_sub", {"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 2, 3, 4], "extra": [1]}, 400, "a parameter is a boolean"),
        ("add_sub", {"INPUT0": [1, 2, 3, 4], "INPUT1": ["a", 2, 3, 4]}, 400, "not a valid FP32"),
        ("add_sub", {"INPUT0": [1, 2, 3, 4]}, 400, "missing input 'INPUT1'"),
        ("nope", {"x": 1}, 404, "unknown model"),
    ]
    for model, body, code, words in cases:
        status, kind, text = post(http, f"/v2/models/{model}/generate", body)
        assert (status, kind) == (code, "application/json"), (body, status, text)
        assert words in json.loads(text)["error"], (body, text)
    # A refusal by the model is the stream's first event, with its status.
    status, kind, text = post(http, "/v2/models/repeat/generate_stream", {"IN": [1], "delay_ms": -1})
    assert (status, kind) == (400, "text/event-stream; charset=utf-8"), text
    (event,) = events(text)
    assert "delay_ms" in event["error"]
