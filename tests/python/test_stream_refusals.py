"""Refusals on a gRPC stream (tritonclient's start_stream /
async_stream_infer) and of the generate extension, as docs/SERVING.md
("Queue, batching and instances", "Errors", "generate and
generate_stream") and docs/RELIABILITY.md ("Overload", "Request limits")
promise them:

- over `--max-concurrency` while a request holds the only permit: a stream
  request is refused at once with the overload message (the unary calls with
  429 / RESOURCE_EXHAUSTED), counted once each; the request holding the
  permit gets every response and the refused stream goes on;
- a full queue (`max_queue_size: 1`): the requests over it are refused
  ("queue for priority level 1 is full") and never run, the others answer;
- a queue timeout (the model's `default_timeout_microseconds`, or the
  request's `timeout` with `allow_timeout_override`): the request gets the
  timeout error and never runs;
- a `generate` / `generate_stream` body over `--max-request-bytes` (as sent,
  chunked, or once decompressed): 413 saying which limit, and the server
  answers on; a stream message over it ends that stream with
  RESOURCE_EXHAUSTED, and a new stream serves;
- an ensemble with a decoupled step: one answer refused on every protocol
  (501 / UNIMPLEMENTED, advising a stream), and on a stream it streams.

A stream carries a refusal as its `error_message` alone (as Triton's
ModelStreamInferResponse does): tritonclient hands it to the callback as an
InferenceServerException without a status, so the stream cases check the
words, and the unary calls check the status.

A decoupled request holds its --max-concurrency permit until its last
response (or its client goes): found by these tests, and fixed (as the
ensemble's refusal advising a stream that failed the same: such an
ensemble now streams).
"""
import gzip
import http.client
import json
import queue
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_support import start_serve, stop_serve, wait_ready
from stream_support import Stream, final, tensor
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples/python_models"

# A decoupled model that sends each value of IN from within execute(),
# delay_ms apart, then the final flag: its engine call (and so its
# --max-concurrency permit) lasts until its last response.
HOLD_CONFIG = """
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

HOLD = '''
import json, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            delay = json.loads(request.parameters()).get("delay_ms", 0) / 1000
            sender = request.get_response_sender()
            for index, value in enumerate(values):
                if index:
                    time.sleep(delay)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([value], np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''


def queued_config(decoupled, policy):
    """A model with a queue whose batches hold one request (so one runs
    while the next waits), with the queue policy `policy`."""
    return f"""
backend: "python"
max_batch_size: 1
dynamic_batching {{ default_queue_policy {{ {policy} }} }}
model_transaction_policy {{ decoupled: {str(decoupled).lower()} }}
input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
"""


# OUT = 2 * IN after sleeping the request's delay_ms, keeping each value it
# ran; IN = -1 answers instead how many values it has run (and is not kept).
# Decoupled or not as its config says (one response, flagged final).
QUEUED = '''
import json, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.decoupled = config.get("model_transaction_policy", {}).get("decoupled", False)
        self.ran = []

    def execute(self, requests):
        answers = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if x.item() == -1:
                y = np.array([[len(self.ran)]], np.int32)
            else:
                self.ran.append(int(x.item()))
                time.sleep(json.loads(request.parameters()).get("delay_ms", 0) / 1000)
                y = (2 * x).astype(np.int32)
            response = pb_utils.InferenceResponse([pb_utils.Tensor("OUT", y)])
            if self.decoupled:
                request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                answers.append(response)
        return None if self.decoupled else answers
'''

QUEUE_FULL = "max_queue_size: 1"
# Requests may wait 150 ms; a request's own `timeout` may shorten it.
QUEUE_TIMEOUT = "default_timeout_microseconds: 150000 allow_timeout_override: true timeout_action: REJECT"

# The decoupled example `repeat` as the one step of an ensemble.
THROUGH_REPEAT = """
name: "through_repeat"
platform: "ensemble"
max_batch_size: 0
input [ { name: "VALUES" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "EACH" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    { model_name: "repeat" model_version: -1
      input_map { key: "IN" value: "VALUES" } output_map { key: "OUT" value: "EACH" } }
  ]
}
"""


def write_model(repo, name, config, source=None):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    if source is not None:
        (repo / name / "1" / "model.py").write_text(source)


def repository(tmp_path_factory, name, examples, models):
    repo = tmp_path_factory.mktemp(name)
    for example in examples:
        shutil.copytree(EXAMPLES / example, repo / example)
    for model in models:
        write_model(repo, *model)
    return repo


def serving(repo, *flags):
    proc, addresses = start_serve(repo, *flags)
    try:
        wait_ready(addresses["HTTP"])
    except BaseException:
        stop_serve(proc)
        raise
    return proc, addresses


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Default flags: the queue models."""
    repo = repository(tmp_path_factory, "refusals", ("repeat", "add_sub"), [
        ("qfull", queued_config(True, QUEUE_FULL), QUEUED),
        ("qfull_plain", queued_config(False, QUEUE_FULL), QUEUED),
        ("qtime", queued_config(True, QUEUE_TIMEOUT), QUEUED),
        ("qtime_plain", queued_config(False, QUEUE_TIMEOUT), QUEUED),
    ])
    proc, addresses = serving(repo)
    yield addresses
    stop_serve(proc)


@pytest.fixture(scope="module")
def ensemble_server(tmp_path_factory):
    """An ensemble whose one step is decoupled."""
    repo = repository(tmp_path_factory, "decoupled_step", ("repeat", "add_sub"), [
        ("through_repeat", THROUGH_REPEAT),
    ])
    proc, addresses = serving(repo, "--strict-readiness", "false")
    yield addresses
    stop_serve(proc)


@pytest.fixture(scope="module")
def one_permit(tmp_path_factory):
    """--max-concurrency 1."""
    repo = repository(tmp_path_factory, "one_permit", ("repeat", "add_sub"), [("hold", HOLD_CONFIG, HOLD)])
    proc, addresses = serving(repo, "--max-concurrency", "1")
    yield addresses
    stop_serve(proc)


LIMIT = 4096


@pytest.fixture(scope="module")
def small_bodies(tmp_path_factory):
    """--max-request-bytes 4096."""
    repo = repository(tmp_path_factory, "small_bodies", ("repeat", "add_sub"), [])
    proc, addresses = serving(repo, "--max-request-bytes", str(LIMIT))
    yield addresses
    stop_serve(proc)


def refused(got, *words):
    """A refusal on a stream: an error with no result, its words as said."""
    result, error = got
    assert error is not None, f"expected a refusal, got outputs {result.get_response()}"
    assert result is None
    message = error.message()
    for word in words:
        assert word in message, f"{word!r} is not in {message!r}"
    return message


def add_sub_on(stream, rng, **kw):
    """Sends add_sub two random vectors on `stream`; checks its one answer
    against numpy."""
    x, y = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    stream.send("add_sub", [tensor("INPUT0", x, "FP32"), tensor("INPUT1", y, "FP32")], **kw)
    result, error = stream.one()
    assert error is None, error.message()
    assert final(result)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x + y)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), x - y)


def ran(stream, model):
    """How many requests `model` (QUEUED) has run, asked on `stream`."""
    stream.send(model, [tensor("IN", np.array([[-1]], np.int32))])
    result, error = stream.one()
    assert error is None, error.message()
    return result.as_numpy("OUT").item()


def get_json(addresses, path):
    with urllib.request.urlopen(f"http://{addresses['HTTP']}{path}", timeout=10) as r:
        return json.load(r)


def stats(addresses, model):
    s = get_json(addresses, f"/v2/models/{model}/stats")["model_stats"][0]
    counts = {k: v["count"] for k, v in s["inference_stats"].items()}
    counts["execution_count"] = s["execution_count"]
    return counts


def delta(after, before):
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def settled(addresses, model, before, **want):
    """The change in `model`'s statistics since `before`, once its counts
    named in `want` have reached those values (a request is counted when its
    execute() returns, which may be just after its last response)."""
    deadline = time.monotonic() + 5
    while True:
        changed = delta(stats(addresses, model), before)
        if all(changed.get(k, 0) >= v for k, v in want.items()) or time.monotonic() > deadline:
            return changed
        time.sleep(0.05)


def in_flight(addresses, model):
    with urllib.request.urlopen(f"http://{addresses['HTTP']}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.search(rf'^anemone_inference_requests_in_flight\{{model="{model}",version="1"\}} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


def overloaded_total(addresses):
    with urllib.request.urlopen(f"http://{addresses['HTTP']}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.search(r'^anemone_requests_rejected_total\{reason="overloaded"\} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


def post(addresses, path, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{addresses['HTTP']}{path}", data=data,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def events(text):
    """The `data:` events of a Server-Sent Events body, as JSON."""
    assert text.endswith("\n\n"), text
    return [json.loads(chunk.removeprefix("data: ")) for chunk in text.split("\n\n") if chunk]


# 1. --max-concurrency on a stream.

OVERLOAD_WORDS = ("overloaded", "global concurrency limit", "1 of 1 in use")


def test_a_stream_request_over_max_concurrency_is_refused_and_the_streams_go_on(one_permit):
    rng = np.random.default_rng(1)
    before = {m: stats(one_permit, m) for m in ("hold", "add_sub")}
    rejected = overloaded_total(one_permit)
    slow, other = Stream(one_permit), Stream(one_permit)
    try:
        values = np.array([11, -12, 13, 2**31 - 1], np.int32)
        slow.send("hold", [tensor("IN", values)], request_id="slow", parameters={"delay_ms": 300},
                  enable_empty_final_response=True)
        # Its first response is sent from execute(): it holds the only permit now.
        first, error = slow.next()
        assert error is None and first.as_numpy("OUT").tolist() == [values[0]]

        # Refused at once on the other stream: a model that is not decoupled
        # and a decoupled one (two paths to the permit).
        x = np.ones(4, np.float32)
        other.send("add_sub", [tensor("INPUT0", x, "FP32"), tensor("INPUT1", x, "FP32")], request_id="refused-1")
        refused(other.one(), *OVERLOAD_WORDS)
        other.send("hold", [tensor("IN", values[:1])], request_id="refused-2")
        refused(other.one(), *OVERLOAD_WORDS)
        # The unary calls say the same with the documented statuses.
        with pytest.raises(InferenceServerException) as e:
            grpcclient.InferenceServerClient(one_permit["gRPC"]).infer(
                "add_sub", [tensor("INPUT0", x, "FP32"), tensor("INPUT1", x, "FP32")])
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "overloaded" in e.value.message()
        status, _, body = post(one_permit, "/v2/models/add_sub/generate", {"INPUT0": x.tolist(), "INPUT1": x.tolist()})
        assert status == 429 and "overloaded" in json.loads(body)["error"], (status, body)

        # The request holding the permit gets every response, in order, then the final flag.
        rest = [slow.next() for _ in range(len(values))]
        assert all(error is None for _, error in rest), [e.message() for _, e in rest if e]
        assert [r.as_numpy("OUT").item() for r, _ in rest[:-1]] == values[1:].tolist()
        assert [final(r) for r, _ in rest] == [False] * (len(values) - 1) + [True]
        assert rest[-1][0].get_response().outputs == [] and rest[-1][0].get_response().id == "slow"
        # Its permit is back once its execute() has returned, just after the
        # final flag: then it is counted.
        assert settled(one_permit, "hold", before["hold"], success=1).get("success") == 1

        # The stream that was refused goes on, on both kinds of model.
        add_sub_on(other, rng, request_id="after")
        other.send("hold", [tensor("IN", np.array([5, 6], np.int32))], request_id="after-hold",
                   enable_empty_final_response=True)
        got = [other.next() for _ in range(3)]
        assert all(error is None for _, error in got), [e.message() for _, e in got if e]
        assert [(r.as_numpy("OUT").item(), final(r)) for r, _ in got[:2]] == [(5, False), (6, False)]
        assert final(got[2][0])
    finally:
        slow.close()
        other.close()
    # Each refusal counted once as overloaded, none as a failure of a model.
    assert overloaded_total(one_permit) - rejected == 4
    changed = settled(one_permit, "hold", before["hold"], success=2)
    assert (changed["success"], changed["execution_count"], changed.get("fail", 0)) == (2, 2, 0), changed
    changed = settled(one_permit, "add_sub", before["add_sub"], success=1)
    assert (changed["success"], changed.get("fail", 0)) == (1, 0), changed


def test_a_decoupled_request_still_streaming_holds_its_permit(one_permit):
    rng = np.random.default_rng(2)
    before = stats(one_permit, "repeat")
    slow, other = Stream(one_permit), Stream(one_permit)
    try:
        # `repeat` sends from a thread of its own: its execute() returns at
        # once (and the request is counted), its responses 200 ms apart.
        slow.send("repeat", [tensor("IN", np.arange(5, dtype=np.int32))], request_id="slow",
                  parameters={"delay_ms": 200})
        first, error = slow.next()
        assert error is None and not final(first)
        assert settled(one_permit, "repeat", before, success=1).get("success") == 1
        x = np.ones(4, np.float32)
        other.send("add_sub", [tensor("INPUT0", x, "FP32"), tensor("INPUT1", x, "FP32")])
        got = other.one()
        refused(got, *OVERLOAD_WORDS)
        assert in_flight(one_permit, "repeat") == 1, "a request still streaming is in flight"
    finally:
        slow.close(cancel=True)
        other.close()
    # Once its client has gone, the permit comes back (when the model's
    # process is next looked at: within 20 ms).
    deadline = time.monotonic() + 5
    while in_flight(one_permit, "repeat") != 0:
        assert time.monotonic() < deadline, "the cancelled stream's permit never came back"
        time.sleep(0.02)
    after = Stream(one_permit)
    try:
        add_sub_on(after, rng)
    finally:
        after.close()


# 2. A full queue.

FULL_WORDS = ("is unavailable", "queue for priority level 1 is full", "max_queue_size")


@pytest.mark.parametrize("model", ["qfull", "qfull_plain"])
def test_stream_requests_over_a_full_queue_are_refused_and_never_run(server, model):
    streams = [Stream(server) for _ in range(5)]
    try:
        ran_before, before = ran(streams[0], model), stats(server, model)
        # One runs (300 ms), the next waits in the queue (its one place),
        # the other three find it full.
        for i, stream in enumerate(streams):
            stream.send(model, [tensor("IN", np.array([[i + 1]], np.int32))], request_id=f"r{i}",
                        parameters={"delay_ms": 300})
            time.sleep(0.1 if i == 0 else 0.01)
        got = [stream.one() for stream in streams]
        ran_after = ran(streams[0], model)
    finally:
        for stream in streams:
            stream.close()
    answered = [(i, result) for i, (result, error) in enumerate(got) if error is None]
    refusals = [refused(g, *FULL_WORDS) for g in got if g[1] is not None]
    assert [i for i, _ in answered] == [0, 1], [e.message() if e else "ok" for _, e in got]
    for i, result in answered:
        assert result.as_numpy("OUT").tolist() == [[2 * (i + 1)]]
        assert result.get_response().id == f"r{i}" and final(result)
    assert len(refusals) == 3 and all(f"model '{model}'" in m for m in refusals), refusals
    # The model ran exactly the two it answered.
    assert ran_after - ran_before == 2
    # Refused before the scheduler: neither a success nor a failure (docs/RELIABILITY.md, Overload).
    changed = settled(server, model, before, success=3)
    assert changed["success"] == 3 and changed["execution_count"] == 3 and "fail" not in changed, changed


# 3. A queue timeout.

TIMEOUT_WORDS = ("timed out after", "the request's deadline passed first")


@pytest.mark.parametrize("model", ["qtime", "qtime_plain"])
@pytest.mark.parametrize("timeout_us", [None, 50_000], ids=["queue-policy", "request-timeout"])
def test_a_stream_request_that_times_out_in_the_queue_gets_the_timeout_and_never_runs(server, model, timeout_us):
    slow, late = Stream(server), Stream(server)
    try:
        ran_before, before = ran(late, model), stats(server, model)
        # The slow request runs for 600 ms; the late one waits in the queue
        # past its 150 ms (the model's) or 50 ms (its own `timeout`).
        slow.send(model, [tensor("IN", np.array([[7]], np.int32))], request_id="slow", parameters={"delay_ms": 600})
        time.sleep(0.1)
        sent = time.monotonic()
        late.send(model, [tensor("IN", np.array([[8]], np.int32))], request_id="late",
                  **({"timeout": timeout_us} if timeout_us else {}))
        got = late.next(timeout=5)
        waited = time.monotonic() - sent
        message = refused(got, *TIMEOUT_WORDS)
        with pytest.raises(queue.Empty):
            late.next(timeout=0.2)
        (result, error), = [slow.one()]
        assert error is None and result.as_numpy("OUT").tolist() == [[14]] and final(result)
        middle = stats(server, model)
        ran_after = ran(late, model)
    finally:
        slow.close()
        late.close()
    # It says how long it waited: the limit, give or take the queue's wake-up.
    limit_ms = (timeout_us or 150_000) / 1000
    found = re.search(r"timed out after (\d+(?:\.\d+)?)ms", message)
    assert found and limit_ms <= float(found.group(1)) < limit_ms + 100, message
    assert waited < 0.45, f"the timeout came after {waited:.3f} s, not when the queue's limit passed"
    # The model ran the slow request alone.
    assert ran_after - ran_before == 1
    changed = delta(middle, before)
    assert changed["execution_count"] == 1 and changed["success"] == 1, changed
    # A queue timeout is a failure of a request that was queued.
    assert changed["fail"] == 1, changed


# 4. Bodies over --max-request-bytes.

TOO_LARGE = f"request body exceeds the {LIMIT}-byte limit (--max-request-bytes)"


def raw_post(addresses, path, body, headers=None, chunked=False):
    host, port = addresses["HTTP"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        if chunked:
            whole = body
            body = (whole[i:i + 1000] for i in range(0, len(whole), 1000))
        try:
            connection.request("POST", path, body=body, encode_chunked=chunked,
                               headers={"Content-Type": "application/json", **(headers or {})})
        except (BrokenPipeError, ConnectionResetError):
            # The server answered before the body's end and closed the
            # connection (a chunked body over the limit): the answer is
            # there to read, as curl reads it.
            pass
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("endpoint", ["generate", "generate_stream"])
def test_a_generate_body_over_max_request_bytes_is_413_and_the_server_answers_on(small_bodies, endpoint):
    values = np.arange(2000, dtype=np.int32)
    big = json.dumps({"IN": values.tolist()}).encode()
    assert len(big) > LIMIT
    # As sent, with a length; chunked; and compressed (small) but over the limit once decompressed.
    repetitive = json.dumps({"IN": [1] * 3000}).encode()
    packed = gzip.compress(repetitive)
    assert len(packed) < LIMIT < len(repetitive)
    for body, headers, chunked, words in ((big, None, False, TOO_LARGE), (big, None, True, TOO_LARGE),
                                          (packed, {"Content-Encoding": "gzip"}, False, TOO_LARGE + " (once decompressed)")):
        status, kind, text = raw_post(small_bodies, f"/v2/models/repeat/{endpoint}", body, headers, chunked)
        assert (status, kind) == (413, "application/json"), (chunked, headers, status, text)
        assert json.loads(text)["error"] == words
    # The server answers on: both endpoints, values against numpy.
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    status, _, text = post(small_bodies, f"/v2/models/add_sub/{endpoint}", {"INPUT0": x.tolist(), "INPUT1": y.tolist()})
    assert status == 200, text
    answer = json.loads(text) if endpoint == "generate" else events(text)[0]
    np.testing.assert_array_equal(np.array(answer["OUTPUT0"], np.float32), x + y)
    np.testing.assert_array_equal(np.array(answer["OUTPUT1"], np.float32), x - y)
    status, _, text = post(small_bodies, "/v2/models/repeat/generate_stream", {"IN": [3, -4]})
    assert status == 200 and [(e["OUT"], e["IDX"]) for e in events(text)] == [(3, 0), (-4, 1)], text


def test_a_stream_message_over_max_request_bytes_ends_that_stream_and_a_new_one_serves(small_bodies):
    stream = Stream(small_bodies)
    try:
        stream.send("repeat", [tensor("IN", np.arange(3000, dtype=np.int32))], request_id="big")
        result, error = stream.next()
        assert result is None and error.status() == "StatusCode.RESOURCE_EXHAUSTED", error
        assert error.message().startswith(TOO_LARGE), error.message()
    finally:
        stream.close()
    fresh = Stream(small_bodies)
    try:
        add_sub_on(fresh, np.random.default_rng(5))
    finally:
        fresh.close()


# 5. A decoupled model as an ensemble step.

ONE_ANSWER_WORDS = ("ensemble 'through_repeat' has a decoupled step", "not one", "send its requests on a stream")


def test_an_ensemble_with_a_decoupled_step_refuses_one_answer_and_streams(ensemble_server):
    """It answers on a stream only, as Triton's decoupled ensembles do:
    one answer is refused on every protocol (501 / UNIMPLEMENTED), saying
    to use a stream, and on a stream its responses are the step's; the
    stream and the server go on."""
    values = np.array([1, 2, 3], np.int32)
    status, kind, text = post(ensemble_server, "/v2/models/through_repeat/infer",
                              {"inputs": [{"name": "VALUES", "shape": [3], "datatype": "INT32", "data": values.tolist()}]})
    assert (status, kind) == (501, "application/json"), text
    messages = {"http": json.loads(text)["error"]}
    status, kind, text = post(ensemble_server, "/v2/models/through_repeat/generate", {"VALUES": values.tolist()})
    assert (status, kind) == (501, "application/json"), text
    assert "use generate_stream" in json.loads(text)["error"], text
    with pytest.raises(InferenceServerException) as e:
        grpcclient.InferenceServerClient(ensemble_server["gRPC"]).infer("through_repeat", [tensor("VALUES", values)])
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    messages["grpc"] = e.value.message()
    for where, message in messages.items():
        for word in ONE_ANSWER_WORDS:
            assert word in message, (where, message)
    stream = Stream(ensemble_server)
    try:
        stream.send("through_repeat", [tensor("VALUES", values)], enable_empty_final_response=True)
        got = [stream.next() for _ in range(4)]
        assert all(error is None for _, error in got), [e.message() for _, e in got if e]
        assert [(r.as_numpy("EACH").item(), final(r)) for r, _ in got[:3]] == [(1, False), (2, False), (3, False)]
        assert final(got[3][0]) and len(got[3][0].get_response().outputs) == 0
        add_sub_on(stream, np.random.default_rng(6))
    finally:
        stream.close()
