"""Error paths of streams, as a Triton user meets them (docs/ENSEMBLES.md "A
decoupled step: the ensemble streams", docs/SERVING.md "Python models",
docs/RELIABILITY.md "Request limits"): a streaming ensemble (pre -> gen,
decoupled -> post) whose steps fail before, inside and after the decoupled
step; a client that cancels, or stops reading past
--max-stream-buffer-bytes, stopping the decoupled step (counted through a
side file the step writes); exec(decoupled=True) to a model that does not
exist, is not loaded, or is not decoupled; custom metrics with 2 MB texts;
and garbage in the Python backend's environment settings. Each checks that
the failing request ends with an error naming its cause, nothing hangs, and
the server serves the next request.
"""
import http.client
import json
import os
import queue
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from stream_failure_models import (BIG_METRICS, BIG_METRICS_CONFIG, CALLER, CALLER_CONFIG, GEN, GEN_CONFIG, PIPE_CONFIG,
                                   POST, POST_CONFIG, PRE, PRE_CONFIG, WAITER, WAITER_CONFIG)
from stream_support import Stream, final, tensor
from tritonclient.utils import InferenceServerException

NORMAL, ERROR, RAISE, SLOW, FLOOD = 0, 1, 2, 3, 4
BUFFER = 1024 * 1024  # --max-stream-buffer-bytes: 16 of gen's 64 KiB flood responses
BIG_TEXTS = ("desc", "label", "label_name")
METRIC_MODELS = ("big_metrics",) + tuple(f"big_{kind}" for kind in BIG_TEXTS)
LOADED = ("pre", "gen", "post", "pipe", "caller", "spare") + METRIC_MODELS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    side = tmp_path_factory.mktemp("side")
    gen = GEN.replace("@SIDE@", repr(str(side)))
    repo = python_repository(tmp_path_factory.mktemp("stream_failures"), models=(
        ("pre", PRE_CONFIG, PRE), ("gen", GEN_CONFIG.replace("@NAME@", "gen"), gen), ("post", POST_CONFIG, POST),
        ("caller", CALLER_CONFIG, CALLER),
        *((name, BIG_METRICS_CONFIG.replace("@NAME@", name), BIG_METRICS) for name in METRIC_MODELS),
        # Decoupled copies of gen: `spare` loaded (the test unloads it), `parked` never loaded.
        ("spare", GEN_CONFIG.replace("@NAME@", "spare"), gen), ("parked", GEN_CONFIG.replace("@NAME@", "parked"), gen),
    ))
    (repo / "pipe" / "1").mkdir(parents=True)
    (repo / "pipe" / "config.pbtxt").write_text(PIPE_CONFIG)
    flags = ["--model-control-mode", "explicit", "--max-stream-buffer-bytes", str(BUFFER), "--metrics-port", "0"]
    for name in LOADED:
        flags += ["--load-model", name]
    proc, addresses = start_serve(repo, *flags)
    try:
        wait_ready(addresses["HTTP"])
        addresses["side"] = side
        yield addresses
        assert proc.poll() is None, "the server died during the tests"
    finally:
        stop_serve(proc)


_tags = iter(range(1, 10**6))


def text(mode, tokens, tag=0):
    return np.asarray([mode, tag, *tokens], np.int32)


def sent_by_gen(server, tag):
    """gen's side file for `tag`: (responses sent, whether it saw its client gone, whether it ended)."""
    path = server["side"] / f"gen-{tag}.log"
    lines = path.read_text().split() if path.exists() else []
    return lines.count("sent"), "cancelled" in lines, "final" in lines


def wait_gen_ended(server, tag, seconds=10):
    """Waits (bounded) until gen ended the request `tag`, and returns what it sent then."""
    deadline = time.time() + seconds
    while True:
        sent, cancelled, ended = sent_by_gen(server, tag)
        if ended:
            return sent, cancelled
        assert time.time() < deadline, f"gen went on for {seconds} s: {sent} responses sent, cancelled={cancelled}"
        time.sleep(0.05)


def collect(stream, timeout=15):
    """One request's responses on `stream`: (OUT of each, the error or None).
    Every request is sent with an empty final response, so its end is always seen."""
    outs = []
    while True:
        result, error = stream.next(timeout)
        if error is not None:
            return outs, error
        if result.get_response().outputs:
            outs.append(result.as_numpy("OUT").tolist())
        if final(result):
            return outs, None


def send_pipe(stream, values, request_id="", **kw):
    stream.send("pipe", [tensor("TEXT", np.asarray(values, np.int32))], request_id=request_id,
                enable_empty_final_response=True, **kw)


def nothing_more(stream, seconds=0.3):
    try:
        result, error = stream.next(timeout=seconds)
    except queue.Empty:
        return
    pytest.fail(f"a response after the request ended: {error or result.get_response()}")


def good_request_works(stream):
    send_pipe(stream, text(NORMAL, [7, 8, 9]))
    assert collect(stream) == ([[14], [16], [18]], None)


def generate_stream(server, body, timeout=20):
    """POST generate_stream on pipe: (status, [event objects]); a plain JSON error is one event."""
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/models/pipe/generate_stream",
                                     data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            status, raw = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read().decode()
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    return status, events or [json.loads(raw)]


# 1. A step before the decoupled step fails.

def test_a_step_before_the_decoupled_step_failing_fails_its_request_only_on_a_grpc_stream(server):
    stream = Stream(server)
    try:
        for bad, words in ((666, "ValueError: pre cannot read 666"), (667, "pre refuses 667")):
            send_pipe(stream, text(NORMAL, [1, bad, 3]), request_id=f"bad-{bad}")
            outs, error = collect(stream)
            assert outs == [] and error is not None, (bad, outs)
            assert "step 0 (model 'pre')" in error.message() and words in error.message(), error.message()
            nothing_more(stream)
            good_request_works(stream)  # the same stream goes on
    finally:
        stream.close()


@pytest.mark.parametrize("bad, status, words", [(666, 500, "ValueError: pre cannot read 666"),
                                                 (667, 400, "pre refuses 667")], ids=["raise-500", "invalid-arg-400"])
def test_a_step_before_the_decoupled_step_fails_generate_stream_with_its_status(server, bad, status, words):
    """Its inputs all came from the request: an INVALID_ARG is the client's
    fault (400); an exception is the server's (500)."""
    got, events = generate_stream(server, {"TEXT": [0, 0, bad]})
    assert got == status and len(events) == 1, (got, events)
    assert "step 0 (model 'pre')" in events[0]["error"] and words in events[0]["error"], events
    assert generate_stream(server, {"TEXT": [0, 0, 5, 6]}) == (200, [
        {"OUT": 10, "model_name": "pipe", "model_version": "1"}, {"OUT": 12, "model_name": "pipe", "model_version": "1"}])


# 2. The decoupled step fails mid-stream.

@pytest.mark.parametrize("mode, words", [(ERROR, "gen failed after 3 tokens"),
                                         (RAISE, "RuntimeError: gen raised after 3 tokens")], ids=["error", "raise"])
def test_the_decoupled_step_failing_mid_stream_ends_its_request_after_the_good_responses(server, mode, words):
    stream = Stream(server)
    try:
        send_pipe(stream, text(mode, [21, 22, 23, 24, 25]))
        outs, error = collect(stream)
        assert outs == [[42], [44], [46]], outs
        assert error is not None, "the request ended without the step's error"
        assert "step 1 (model 'gen')" in error.message() and words in error.message(), error.message()
        nothing_more(stream)
        good_request_works(stream)
    finally:
        stream.close()
    status, events = generate_stream(server, {"TEXT": text(mode, [31, 32, 33, 34]).tolist()})
    assert status == 200 and [e.get("OUT") for e in events[:3]] == [62, 64, 66] and len(events) == 4, events
    assert words in events[3]["error"], events


# 3. A step after the decoupled step fails on one round.

def test_a_step_after_the_decoupled_step_failing_on_one_round_ends_the_request_and_stops_gen(server):
    """Observed: the client gets the two rounds before it, then the step's
    error (`ensemble 'pipe' step 2 (model 'post') failed: ... ValueError:
    post cannot take 13`) as the request's last response; gen, which would
    send 100 tokens 20 ms apart, sees its request cancelled
    (request.is_cancelled()) and stops; the stream goes on."""
    tag = next(_tags)
    stream = Stream(server)
    try:
        send_pipe(stream, text(SLOW, [201, 202, 13] + list(range(300, 397)), tag))
        outs, error = collect(stream)
        assert outs == [[402], [404]], outs
        assert error is not None and "step 2 (model 'post')" in error.message(), error
        assert "ValueError: post cannot take 13" in error.message(), error.message()
        nothing_more(stream)
        good_request_works(stream)
    finally:
        stream.close()
    sent, cancelled = wait_gen_ended(server, tag, seconds=5)
    assert cancelled and sent < 50, (sent, cancelled)


# 4. A client that cancels mid-stream.

def test_a_grpc_client_that_cancels_stops_the_decoupled_step(server):
    tag = next(_tags)
    stream = Stream(server)
    send_pipe(stream, text(SLOW, range(1000, 1500), tag))  # 500 tokens, 20 ms apart: 10 s
    for _ in range(3):
        result, error = stream.next(timeout=15)
        assert error is None, error
    stream.close(cancel=True)
    sent, cancelled = wait_gen_ended(server, tag, seconds=5)
    assert cancelled and 3 <= sent < 100, (sent, cancelled)
    stream = Stream(server)
    try:
        good_request_works(stream)
    finally:
        stream.close()


def test_an_http_client_that_drops_generate_stream_stops_the_decoupled_step(server):
    tag = next(_tags)
    host, port = server["HTTP"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=15)
    connection.request("POST", "/v2/models/pipe/generate_stream",
                       body=json.dumps({"TEXT": text(SLOW, range(1000, 1500), tag).tolist()}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    events = 0
    while events < 3:
        line = response.readline()
        assert line, "the stream ended early"
        events += line.startswith(b"data: ")
    response.close()
    connection.close()
    sent, cancelled = wait_gen_ended(server, tag, seconds=5)
    assert cancelled and 3 <= sent < 100, (sent, cancelled)
    assert generate_stream(server, {"TEXT": [0, 0, 4]})[1] == [{"OUT": 8, "model_name": "pipe", "model_version": "1"}]


# 5. A client that stops reading, past --max-stream-buffer-bytes.

def test_a_client_that_stops_reading_ends_its_request_at_the_buffer_limit_and_stops_gen(server):
    """gen sends 64 KiB responses 20 ms apart, so that post keeps up even on a
    machine loaded by other test workers: at 2 ms apart it fell behind in a
    cold CI run with two workers, at 5 ms in a run with three, and the
    ensemble's own step buffer filled first (a right answer to a slow step,
    but not this test's); the client reads nothing until gen has ended."""
    tag = next(_tags)
    host, port = server["HTTP"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    # 4,000 responses of 64 KiB (250 MiB, 80 s) if nothing stopped them.
    connection.request("POST", "/v2/models/pipe/generate_stream",
                       body=json.dumps({"TEXT": text(FLOOD, [4000, 20], tag).tolist()}),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    # Not reading: the socket's buffers fill, then the server's; gen must be told.
    sent, cancelled = wait_gen_ended(server, tag, seconds=20)
    events = [json.loads(line[6:]) for line in response.read().split(b"\n") if line.startswith(b"data: ")]
    connection.close()
    assert cancelled and sent < 1000, (sent, cancelled)
    assert "error" in events[-1], list(events[-1])
    # The client's own buffer (the ensemble's), not one inside the pipeline.
    assert events[-1]["error"].startswith("overloaded: response buffer of a request to model 'pipe'"), events[-1]
    assert "--max-stream-buffer-bytes" in events[-1]["error"], events[-1]
    delivered = events[:-1]
    assert [e["OUT"][0] for e in delivered] == [2 * i for i in range(len(delivered))]
    # More went out than the server may hold: the socket's buffers took some first.
    assert BUFFER // 65536 < len(delivered) <= sent, (len(delivered), sent)
    # The server goes on, on both protocols.
    assert generate_stream(server, {"TEXT": [0, 0, 4]})[1] == [{"OUT": 8, "model_name": "pipe", "model_version": "1"}]
    stream = Stream(server)
    try:
        good_request_works(stream)
    finally:
        stream.close()


def read_all(server, model, ids, count, timeout=20):
    """Streams one request to `model` on a fresh gRPC stream, reading as fast
    as the client can: (responses before the end, the error or None)."""
    stream = Stream(server)
    try:
        stream.send(model, [tensor("TEXT" if model == "pipe" else "IDS", ids)], enable_empty_final_response=True)
        got = 0
        while True:
            result, error = stream.next(timeout)
            if error is not None or final(result):
                return got, error
            got += 1
    finally:
        stream.close()


def test_a_client_that_reads_at_once_gets_every_response_through_the_buffer(server):
    """160 responses of 64 KiB (10 MiB, ten times --max-stream-buffer-bytes),
    20 ms apart, through the ensemble: a client that reads gets them all.
    (At 2 ms, a cold CI run at load 8 read 38 before the 1 MiB buffer
    refused; at 5 ms, four test workers on two cores read 42: the Python
    client and the ensemble's next step, a Python model called once per
    response, must each keep up with 32 and 13 MB/s there, 3.2 MB/s here.)"""
    assert read_all(server, "pipe", text(FLOOD, [160, 20]), 160) == (160, None)


def test_a_decoupled_step_that_outpaces_the_next_step_ends_the_request_saying_so(server):
    """The same, with gen sending as fast as it can, faster than post (run
    once per response) takes them. Its responses wait for post in a buffer
    bounded like the client's (--max-stream-buffer-bytes; Triton's grows
    without bound): once full, the request ends with an overload error that
    names the ensemble's step and the fix, not the client-buffer advice
    (read faster) that the client reading at once cannot act on. The
    answers before it arrive in order, and the stream serves on."""
    got, error = read_all(server, "pipe", text(FLOOD, [160, 0]), 160)
    assert error is not None and 0 < got < 160, (got, error)
    message = error.message()
    for part in ["ensemble 'pipe'", "step 1 (model 'gen')", "slower than it sends",
                 "--max-stream-buffer-bytes"]:
        assert part in message, message
    assert "read faster" not in message, message
    assert read_all(server, "pipe", text(FLOOD, [3, 2]), 3) == (3, None)


# 6. exec(decoupled=True) to models that cannot stream.

def call(server, timeout=20, **cmd):
    client = grpcclient.InferenceServerClient(server["gRPC"])
    t = grpcclient.InferInput("CMD", [1], "BYTES")
    t.set_data_from_numpy(np.array([json.dumps(cmd).encode()], np.object_))
    return json.loads(client.infer("caller", [t], client_timeout=timeout).as_numpy("REPORT")[0])


def one_error(report, name):
    """The one error a failed stream call gave (a response with error(), or
    an exception), naming the model called: (its code or None, its message)."""
    errors = [tuple(x["error"]) for x in report["responses"] if "error" in x]
    if "exception" in report:
        errors.append((None, report["exception"]))
    assert len(errors) == 1 and not [x for x in report["responses"] if "error" not in x], report
    assert f"'{name}'" in errors[0][1], report
    return errors[0]


GEN_CALL = {"input": "IDS", "output": "TOK", "values": [NORMAL, 0, 5, 6]}
GEN_STREAM = {"responses": [{"out": [5]}, {"out": [6]}, {"empty": True}]}
NOT_FOUND, UNAVAILABLE, UNSUPPORTED = 2, 4, 5  # pb_utils.TritonError's codes


def test_exec_decoupled_to_a_model_that_does_not_exist(server):
    code, message = one_error(call(server, target="no_such_model", **GEN_CALL), "no_such_model")
    assert code == NOT_FOUND and "not found" in message, message
    # A caller that answers the error as its own: its client gets it.
    with pytest.raises(InferenceServerException) as e:
        call(server, target="no_such_model", fail=True, **GEN_CALL)
    assert "'no_such_model' is not found" in e.value.message(), e.value
    assert call(server, target="gen", **GEN_CALL) == GEN_STREAM


def test_the_unknown_model_error_lists_every_loaded_model(server):
    _, message = one_error(call(server, target="no_such_model", **GEN_CALL), "no_such_model")
    listed = message.split("loaded: ", 1)[1].split(", ")
    assert call(server, target="pipe", input="TEXT", output="OUT", values=[0, 0, 3]) == {
        "responses": [{"out": [6]}, {"empty": True}]}  # pipe is loaded and streams
    assert set(LOADED) - {"spare"} <= set(listed), listed


def test_exec_decoupled_to_a_model_that_is_not_loaded(server):
    """As Triton: a model of the repository that is not loaded is not found."""
    code, message = one_error(call(server, target="parked", **GEN_CALL), "parked")
    assert code in (NOT_FOUND, UNAVAILABLE) and ("not found" in message or "not loaded" in message), message
    # One loaded, then unloaded through the repository API.
    assert call(server, target="spare", **GEN_CALL) == GEN_STREAM
    client = httpclient.InferenceServerClient(server["HTTP"])
    client.unload_model("spare")
    deadline = time.time() + 10
    while client.is_model_ready("spare"):
        assert time.time() < deadline, "spare did not unload"
        time.sleep(0.05)
    code, message = one_error(call(server, target="spare", **GEN_CALL), "spare")
    assert code in (NOT_FOUND, UNAVAILABLE) and ("not found" in message or "not loaded" in message), message
    assert call(server, target="gen", **GEN_CALL) == GEN_STREAM


def test_exec_decoupled_to_a_model_that_is_not_decoupled_is_a_stream_of_one(server):
    """docs/SERVING.md: "A model that answers once is a stream of one"; its
    failure is that one response's error(); and exec() (one answer) of a
    decoupled model is an UNSUPPORTED error naming it."""
    assert call(server, target="post", input="TOK", output="OUT", values=[21]) == {"responses": [{"out": [42]}]}
    _, message = one_error(call(server, target="post", input="TOK", output="OUT", values=[13]), "post")
    assert "ValueError: post cannot take 13" in message
    code, message = one_error(call(server, target="gen", decoupled=False, **GEN_CALL), "gen")
    assert code == UNSUPPORTED and "is decoupled" in message, message


def test_exec_of_a_decoupled_model_advises_exec_decoupled(server):
    _, message = one_error(call(server, target="gen", decoupled=False, **GEN_CALL), "gen")
    assert "exec(decoupled=True)" in message, message


# 7. Custom metrics with huge texts.

def scrape(server):
    with urllib.request.urlopen(f"http://{server['HTTP']}/metrics", timeout=20) as r:
        assert r.status == 200
        text_ = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text_)}


def declare(server, model, cmd):
    client = httpclient.InferenceServerClient(server["HTTP"], network_timeout=30)
    t = httpclient.InferInput("CMD", [1], "BYTES")
    t.set_data_from_numpy(np.array([cmd.encode()], np.object_))
    return json.loads(client.infer(model, [t]).as_numpy("OUT")[0])


def escaped_family_counts(families, model, value):
    family = families[f"{model}_escape"]
    assert family.documentation == 'line one\nline a"b\\c\nd'
    assert [(s.labels, s.value) for s in family.samples if s.name == f"{model}_escape_total"] == [
        ({"k": 'a"b\\c\nd'}, value)]


def test_custom_metrics_with_2_mb_texts_leave_the_server_serving_and_metrics_readable(server):
    # A description and a label value with a newline, a quote and a backslash,
    # escaped as Prometheus' format says.
    assert declare(server, "big_metrics", "escape") == {"ok": 3.0}
    escaped_family_counts(scrape(server), "big_metrics", 3.0)
    answers = {cmd: declare(server, "big_metrics", cmd) for cmd in BIG_TEXTS}
    assert all(set(a) in ({"ok"}, {"error"}) for a in answers.values()), answers
    families = scrape(server)  # Prometheus' parser reads all of it
    assert "anemone_inference_request_success" in families  # the parser drops counters' _total
    big = 2 * 1024 * 1024
    if "ok" in answers["desc"]:
        assert families["big_metrics_desc"].documentation == "d" * big
    if "ok" in answers["label"]:
        assert [s.labels for s in families["big_metrics_label"].samples] == [{"k": "v" * big}]
    if "ok" in answers["label_name"]:
        assert [s.labels for s in families["big_metrics_label_name"].samples] == [{"k" * big: "v"}]
    # The model, the other models and the server serve on.
    assert set(declare(server, "big_metrics", "escape")) in ({"ok"}, {"error"})
    stream = Stream(server)
    try:
        good_request_works(stream)
    finally:
        stream.close()
    assert call(server, target="gen", **GEN_CALL)["responses"][0] == {"out": [5]}


@pytest.mark.parametrize("kind", BIG_TEXTS)
def test_a_2_mb_metric_text_is_refused_clearly_and_the_models_other_metrics_go_on(server, kind):
    """A family with a 2 MB description, a series with a 2 MB label value or
    label name: it works, or the model gets a TritonModelException (as for
    the other refusals); either way its metrics declared before and after
    keep counting on /metrics."""
    model = f"big_{kind}"
    assert declare(server, model, "escape") == {"ok": 3.0}
    answer = declare(server, model, kind)
    assert answer == {"ok": 3.0} or answer["error"].startswith("TritonModelException:"), answer
    assert declare(server, model, "escape") == {"ok": 6.0}
    escaped_family_counts(scrape(server), model, 6.0)


# 8. Garbage in the Python backend's environment settings.

def start_capturing(repo, env, log):
    """`anemone serve` on free ports with `env` added, stderr to `log`; returns (process, HTTP address)."""
    binary = Path(os.environ.get("ANEMONE_BIN", Path(__file__).resolve().parents[2] / "target/debug/anemone"))
    full = dict(os.environ, **env)
    full.setdefault("ANEMONE_PYTHON", sys.executable)
    proc = subprocess.Popen([str(binary), "serve", "--model-repository", str(repo), "--http-port", "0",
                             "--grpc-port", "0", "--metrics-port", "0", "--exit-timeout-secs", "10"],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=full)
    while True:
        line = proc.stdout.readline()
        if not line:
            return proc, None
        if line.startswith("HTTP listening on "):
            return proc, line.split(" listening on ", 1)[1].strip()


DEFAULTS = {"ANEMONE_PYTHON_SENDER_WAIT_S": "60", "ANEMONE_PYTHON_INIT_TIMEOUT_S": "600"}


@pytest.mark.parametrize("env", [
    pytest.param({"ANEMONE_PYTHON_SENDER_WAIT_S": "abc"}, id="sender-wait-abc"),
    pytest.param({"ANEMONE_PYTHON_SENDER_WAIT_S": "-5"}, id="sender-wait-negative"),
    pytest.param({"ANEMONE_PYTHON_INIT_TIMEOUT_S": "-5"}, id="init-timeout-negative"),
    pytest.param({"ANEMONE_PYTHON_INIT_TIMEOUT_S": "abc"}, id="init-timeout-abc"),
    pytest.param({"ANEMONE_PYTHON_SENDER_WAIT_S": "abc", "ANEMONE_PYTHON_INIT_TIMEOUT_S": "-5"},
                 id="both"),
])
def test_a_garbage_python_setting_is_named_and_its_default_used(tmp_path, env):
    """Undocumented; the sane behaviour: the server starts, the model loads
    and answers as with the defaults (a 0.5 s initialize, a response sent
    0.5 s after execute returned), and the log (at its default level) names
    each variable and the default used instead."""
    repo = python_repository(tmp_path / "repo", models=(("waiter", WAITER_CONFIG, WAITER),))
    log_path = tmp_path / "stderr.log"
    with open(log_path, "w") as log:
        proc, http_address = start_capturing(repo, env, log)
    try:
        assert http_address is not None, f"the server did not start: {log_path.read_text()[-2000:]}"
        wait_ready(http_address, seconds=30)
        client = httpclient.InferenceServerClient(http_address, network_timeout=30)
        t = httpclient.InferInput("X", [1], "INT32")
        t.set_data_from_numpy(np.array([41], np.int32))
        assert client.infer("waiter", [t]).as_numpy("Y").tolist() == [42]
    finally:
        if proc.poll() is None:
            stop_serve(proc)
    stderr = log_path.read_text()
    for name, value in env.items():
        lines = [line for line in stderr.splitlines() if name in line]
        assert lines, f"nothing in the log names {name}={value!r}:\n{stderr[-2000:]}"
        assert any(DEFAULTS[name] in line for line in lines), lines
