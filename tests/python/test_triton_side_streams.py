"""Decoupled Python models, gRPC streams, HTTP generate / generate_stream
and ensembles of Python models, compared side by side with tritonserver
2.51 (the CPU wheel, Python backend; each model.py here starts with the
TPEER_SP lines so the same file ran on both). What Triton answered is in
each test's docstring; the tests run against anemone only.

Models: `dec` (decoupled; its MODE input picks what it does: values then the
final flag alone, the final flag on the last value, no response, an error
response mid-stream, `execute` raising before or after a response, values
from a thread after `execute` returned, a final error response, a returned
list, a send after the final flag), `double` / `triple` (OUT = IN * 2 / 3;
-99 raises, -98 is an error response), `text` (upper-cases TEXT, echoes its
parameters as JSON), `spell` (decoupled: one letter per response, `!` is an
error response), and the ensembles `chain` (double -> triple), `fan`
(double and triple on the same input) and `decens` (dec -> double: a
decoupled first step, so it streams).
"""
import json
import queue
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from stream_support import Stream, final, tensor
from tritonclient.grpc import service_pb2, service_pb2_grpc

HEAD = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
import json, threading, time
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
'''

DEC_CONFIG = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }, { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] }, { name: "IDX" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

DEC = HEAD + '''
def out(v, i):
    return pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([v], np.int32)),
                                       pb_utils.Tensor("IDX", np.array([i], np.int32))])


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            mode = int(pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0])
            sender = request.get_response_sender()
            if mode == 0:  # each value, then the final flag alone
                for i, v in enumerate(values):
                    sender.send(out(v, i))
                sender.send(flags=FINAL)
            elif mode == 1:  # the final flag with the last value
                for i, v in enumerate(values):
                    sender.send(out(v, i), flags=FINAL if i == len(values) - 1 else 0)
            elif mode == 2:  # no response at all
                sender.send(flags=FINAL)
            elif mode == 3:  # an error response mid-stream, then more
                sender.send(out(values[0], 0))
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("mid-stream failure")))
                sender.send(out(values[-1], 1))
                sender.send(flags=FINAL)
            elif mode == 4:
                raise ValueError("raised before any response")
            elif mode == 5:
                sender.send(out(values[0], 0))
                raise ValueError("raised after one response")
            elif mode == 6:  # from a thread, after execute returned
                def later(s=sender, vals=values):
                    time.sleep(0.05)
                    for i, v in enumerate(vals):
                        s.send(out(v, i), flags=FINAL if i == len(vals) - 1 else 0)
                threading.Thread(target=later).start()
            elif mode == 7:  # an error response with the final flag
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("final error")), flags=FINAL)
            elif mode == 8:
                return [out(values[0], 0)]
            elif mode == 9:  # a response after the final flag
                sender.send(out(values[0], 0), flags=FINAL)
                try:
                    sender.send(out(values[-1], 1))
                    self.after_final = "no exception"
                except Exception as e:
                    self.after_final = type(e).__name__ + ": " + str(e)
            elif mode == 12:  # a response, then an INVALID_ARG error with the final flag
                sender.send(out(values[0], 0))
                sender.send(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("bad arg", pb_utils.TritonError.INVALID_ARG)), flags=FINAL)
            elif mode == 13:  # what mode 9's second send met, as code points
                text = getattr(self, "after_final", "none").encode()
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUT", np.frombuffer(text, np.uint8).astype(np.int32)),
                    pb_utils.Tensor("IDX", np.array([0], np.int32))]), flags=FINAL)
        return None
'''

PLAIN_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] } ]
parameters { key: "factor" value: { string_value: "%d" } }
"""

PLAIN = HEAD + '''
class TritonPythonModel:
    def initialize(self, args):
        self.factor = int(json.loads(args["model_config"])["parameters"]["factor"]["string_value"])

    def execute(self, requests):
        res = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            if (x == -99).any():
                raise ValueError("step refuses -99")
            if (x == -98).any():
                res.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("step dislikes -98")))
                continue
            res.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * self.factor).astype(np.int32))]))
        return res
'''

TEXT_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "UPPER" data_type: TYPE_STRING dims: [ 1 ] }, { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

TEXT = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        res = []
        for r in requests:
            t = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            up = np.array([t.reshape(-1)[0].decode().upper().encode()], dtype=np.object_)
            p = np.array([json.dumps(json.loads(r.parameters()), sort_keys=True).encode()], dtype=np.object_)
            res.append(pb_utils.InferenceResponse([pb_utils.Tensor("UPPER", up), pb_utils.Tensor("PARAMS", p)]))
        return res
'''

SPELL_CONFIG = """
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "LETTER" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

SPELL = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            s = r.get_response_sender()
            t = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy().reshape(-1)[0].decode()
            for ch in t:
                if ch == "!":
                    s.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("no bangs")))
                    continue
                s.send(pb_utils.InferenceResponse([pb_utils.Tensor("LETTER", np.array([ch.encode()], dtype=np.object_))]))
            s.send(flags=FINAL)
        return None
'''


def ensemble(steps, inputs, outputs):
    """An ensemble config: steps as (model, input_map, output_map); INT32 tensors."""
    io = lambda ts: ", ".join(f'{{ name: "{n}" data_type: TYPE_INT32 dims: [ {d} ] }}' for n, d in ts)
    st = []
    for model, ins, outs in steps:
        maps = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in ins.items())
        maps += " " + " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outs.items())
        st.append(f'{{ model_name: "{model}" model_version: -1 {maps} }}')
    return (f'platform: "ensemble"\nmax_batch_size: 0\ninput [ {io(inputs)} ]\noutput [ {io(outputs)} ]\n'
            f'ensemble_scheduling {{ step [ {", ".join(st)} ] }}\n')


ENSEMBLES = {
    "chain": ensemble([("double", {"IN": "X"}, {"OUT": "Y"}), ("triple", {"IN": "Y"}, {"OUT": "Z"})],
                      [("X", "-1")], [("Z", "-1")]),
    "fan": ensemble([("double", {"IN": "X"}, {"OUT": "A"}), ("triple", {"IN": "X"}, {"OUT": "B"})],
                    [("X", "-1")], [("A", "-1"), ("B", "-1")]),
    "decens": ensemble([("dec", {"IN": "X", "MODE": "M"}, {"OUT": "O"}), ("double", {"IN": "O"}, {"OUT": "Z"})],
                       [("X", "-1"), ("M", "1")], [("Z", "-1")]),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("side_streams"), models=(
        ("dec", DEC_CONFIG, DEC), ("double", PLAIN_CONFIG % 2, PLAIN), ("triple", PLAIN_CONFIG % 3, PLAIN),
        ("text", TEXT_CONFIG, TEXT), ("spell", SPELL_CONFIG, SPELL),
    ))
    for name, config in ENSEMBLES.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- helpers

def i32(values):
    return np.asarray(values, np.int32)


def dec_inputs(values, mode, names=("IN", "MODE")):
    return [tensor(names[0], i32(values)), tensor(names[1], i32([mode]))]


def raw_request(model, inputs, rid="", params=None):
    """A ModelInferRequest built by hand: inputs as (name, int32 values)."""
    r = service_pb2.ModelInferRequest(model_name=model, id=rid)
    for name, values in inputs:
        a = i32(values)
        t = r.inputs.add()
        t.name, t.datatype = name, "INT32"
        t.shape.extend(a.shape)
        r.raw_input_contents.append(a.tobytes())
    for k, v in (params or {}).items():
        r.parameters[k].bool_param = v
    return r


def raw_stream(server, requests_, expect, timeout=20):
    """The raw ModelStreamInferResponses of `requests_` sent on one stream,
    `expect` of them (the stream is closed after them)."""
    channel = grpc.insecure_channel(server["gRPC"])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    done = queue.Queue()

    def outgoing():
        yield from requests_
        done.get(timeout=timeout)  # keep the stream open until the answers came

    got = []
    call = stub.ModelStreamInfer(outgoing(), timeout=timeout)
    try:
        for response in call:
            got.append(response)
            if len(got) == expect:
                break
    finally:
        done.put(None)
        call.cancel()
        channel.close()
    return got


def final_param(infer_response):
    """`triton_final_response` of a raw response, None when absent."""
    p = infer_response.parameters.get("triton_final_response")
    return None if p is None else p.bool_param


def post(server, path, body):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    r = requests.post(f"http://{server['HTTP']}{path}", data=data, timeout=20)
    return r.status_code, r.headers.get("Content-Type"), r.text


def events(text):
    """A Server-Sent Events body's `data:` events, as JSON."""
    assert text == "" or text.endswith("\n\n"), text
    chunks = [c for c in text.split("\n\n") if c]
    assert all(c.startswith("data: ") and "\n" not in c for c in chunks), text
    return [json.loads(c.removeprefix("data: ")) for c in chunks]


def stats(server, model):
    s = requests.get(f"http://{server['HTTP']}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    ist = s["inference_stats"]
    return {"inference": s["inference_count"], "execution": s["execution_count"],
            **{k: ist[k]["count"] for k in ("success", "fail", "queue", "compute_infer")},
            "batches": sum(b["compute_infer"]["count"] for b in s.get("batch_stats", []))}


def stats_delta(server, models, action, settle=0.3):
    before = {m: stats(server, m) for m in models}
    action()
    time.sleep(settle)
    after = {m: stats(server, m) for m in models}
    return {m: {k: after[m][k] - before[m][k] for k in before[m]} for m in models}


def summary(result):
    response = result.get_response()
    return response.id, {o.name: result.as_numpy(o.name).tolist() for o in response.outputs}, final(result)


# ---------------------------------------------------------------- gRPC streams

@pytest.mark.parametrize("mode", [0, 1, 2, 6])
@pytest.mark.parametrize("empty", [False, True])
def test_zero_one_or_many_responses_with_the_final_flag_alone_or_on_the_last(server, mode, empty):
    """SERVING.md "Decoupled models": any number of responses, the final
    flag "with or without a last response", from any thread, before or
    after `execute` returns; the flag alone is an empty response only when
    the request set `triton_enable_empty_final_response`. tritonserver 2.51
    answers every case here identically: mode 0 (flag alone) gives the
    values flagged false and, only when asked, an empty response flagged
    true; mode 1 and 6 flag the last value true; mode 2 (no response) gives
    nothing, or one empty response when asked; the id on every response."""
    values = np.random.default_rng(mode).integers(-2**31, 2**31 - 1, size=3).astype(np.int32)
    stream = Stream(server)
    try:
        stream.send("dec", dec_inputs(values, mode), request_id=f"m{mode}", enable_empty_final_response=empty)
        expected = {0: 3 + empty, 1: 3, 2: int(empty), 6: 3}[mode]
        got = stream.until_final(count=expected) if expected else []
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.4)
    finally:
        stream.close()
    assert all(error is None for _, error in got), got
    answers = [summary(r) for r, _ in got]
    with_values = [a for a in answers if a[1]]
    sent = [] if mode == 2 else values
    assert [a[1]["OUT"] for a in with_values] == [[v] for v in sent]
    assert [a[1]["IDX"] for a in with_values] == [[i] for i in range(len(sent))]
    assert all(a[0] == f"m{mode}" for a in answers)
    flags = [a[2] for a in answers]
    if mode == 0 and not empty:  # the flag alone, not asked for: no response says final
        assert flags == [False] * 3
    elif flags:
        assert flags == [False] * (len(flags) - 1) + [True]
    if mode in (0, 2) and empty:
        assert answers[-1][1] == {} and answers[-1][2]
    else:
        assert all(a[1] for a in answers), "an empty final response nobody asked for"


def test_several_requests_in_flight_on_one_stream_are_told_apart_by_their_ids(server):
    """SERVING.md "gRPC": a decoupled model's responses go out as it sends
    them, between the other requests' answers; a failed request is answered
    with its error and the request's model and id, and the stream goes on.
    tritonserver 2.51, the same nine requests on one stream: every answer
    and every error carries its request's id (the refused ones too: unknown
    model, wrong data type), the thread's two responses are flagged false
    then true, the zero-response request gives one empty final response (it
    asked for it), and the stream goes on after each error."""
    reqs = [
        raw_request("dec", [("IN", [1, 2]), ("MODE", [6])], "a"),
        raw_request("double", [("IN", [3])], "b"),
        raw_request("dec", [("IN", [4]), ("MODE", [2])], "c", {"triton_enable_empty_final_response": True}),
        raw_request("dec", [("IN", [9]), ("MODE", [4])], "d"),
        raw_request("double", [("IN", [-99])], "e"),
        raw_request("double", [("IN", [-98])], "f"),
        raw_request("nope", [("IN", [1])], "g"),
        raw_request("triple", [("IN", [5, 6])], "h"),
    ]
    # A wrong data type: FP32 into the INT32 input.
    bad = service_pb2.ModelInferRequest(model_name="double", id="i")
    t = bad.inputs.add()
    t.name, t.datatype = "IN", "FP32"
    t.shape.append(1)
    bad.raw_input_contents.append(np.float32([1.5]).tobytes())
    reqs.append(bad)
    got = raw_stream(server, reqs, expect=10)
    by_id = {}
    for response in got:
        by_id.setdefault(response.infer_response.id, []).append(response)
    assert sorted(by_id) == list("abcdefghi"), [r.infer_response.id for r in got]
    assert [len(by_id[k]) for k in "abcdefghi"] == [2, 1, 1, 1, 1, 1, 1, 1, 1]
    a = [np.frombuffer(r.infer_response.raw_output_contents[0], np.int32).tolist() for r in by_id["a"]]
    assert a == [[1], [2]] and [final_param(r.infer_response) for r in by_id["a"]] == [False, True]
    assert np.frombuffer(by_id["b"][0].infer_response.raw_output_contents[0], np.int32).tolist() == [6]
    assert np.frombuffer(by_id["h"][0].infer_response.raw_output_contents[0], np.int32).tolist() == [15, 18]
    (c,) = by_id["c"]
    assert c.error_message == "" and len(c.infer_response.outputs) == 0 and final_param(c.infer_response)
    for rid, words in (("d", "raised before any response"), ("e", "step refuses -99"), ("f", "step dislikes -98"),
                       ("g", "unknown model"), ("i", "FP32")):
        (response,) = by_id[rid]
        assert words in response.error_message, (rid, response.error_message)


def test_an_error_on_the_stream_says_whether_its_request_has_ended(server):
    """SERVING.md "gRPC": "every response carries `triton_final_response`,
    true on a request's last". tritonserver 2.51 sets it on the error
    responses that come from running a model: false on a decoupled model's
    error response sent without the final flag (mode 3: the request goes
    on, and a response follows), true on one sent with it (mode 7), on an
    `execute` that raised (mode 4, also after a response: mode 5), on a
    model that is not decoupled failing, and on a failed ensemble. (It
    leaves it out only on requests refused before they run: an unknown
    model.) anemone sends every such error with no parameters at all, so a
    client multiplexing a stream cannot tell a mid-stream error from its
    request's end."""
    reqs = [raw_request("dec", [("IN", [1, 2]), ("MODE", [3])], "mid"),
            raw_request("dec", [("IN", [1]), ("MODE", [7])], "last"),
            raw_request("dec", [("IN", [1]), ("MODE", [4])], "raised"),
            raw_request("dec", [("IN", [1]), ("MODE", [5])], "raised_after"),
            raw_request("double", [("IN", [-99])], "plain"),
            raw_request("chain", [("X", [-99])], "ensemble")]
    got = raw_stream(server, reqs, expect=9)
    errors = {r.infer_response.id: final_param(r.infer_response) for r in got if r.error_message}
    assert errors == {"mid": False, "last": True, "raised": True, "raised_after": True, "plain": True,
                      "ensemble": True}


def test_an_error_response_mid_stream_and_then_more_responses(server):
    """SERVING.md "Decoupled models": an error response "reaches the client
    as that request's error"; a decoupled model may go on sending after it.
    tritonserver 2.51 gives, for mode 3: the first value, the error
    ("mid-stream failure"), the last value, and (asked for) the empty final
    response; with mode 12, the value then the INVALID_ARG error "bad arg"
    as the last. anemone gives the same sequence (its message adds
    `backend python failed: `)."""
    values = i32([11, 22, 33])
    stream = Stream(server)
    try:
        stream.send("dec", dec_inputs(values, 3), request_id="e3", enable_empty_final_response=True)
        got = [stream.next() for _ in range(4)]
        stream.send("dec", dec_inputs(values, 12), request_id="e12", enable_empty_final_response=True)
        got12 = [stream.next() for _ in range(2)]
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.4)
    finally:
        stream.close()
    (r0, e0), (r1, e1), (r2, e2), (r3, e3) = got
    assert e0 is None and summary(r0) == ("e3", {"OUT": [11], "IDX": [0]}, False)
    assert r1 is None and "mid-stream failure" in e1.message()
    assert e2 is None and summary(r2) == ("e3", {"OUT": [33], "IDX": [1]}, False)
    assert e3 is None and summary(r3) == ("e3", {}, True)
    (r0, e0), (r1, e1) = got12
    assert e0 is None and summary(r0) == ("e12", {"OUT": [11], "IDX": [0]}, False)
    assert r1 is None and e1.message().endswith("bad arg")


def test_execute_raising_or_returning_ends_the_request_with_one_error_after_what_was_sent(server):
    """SERVING.md "Decoupled models": "an `execute` that raises, or returns
    anything but `None`, fails its requests". tritonserver 2.51: mode 5
    (one response, then raise) gives the response and then one error
    naming the ValueError; mode 4 and mode 8 one error each (mode 8's
    saying the execute function must return None); nothing more, even when
    an empty final response was asked for, and the stream serves on."""
    stream = Stream(server)
    try:
        stream.send("dec", dec_inputs([7], 5), request_id="r5", enable_empty_final_response=True)
        (r, e), (_, error) = [stream.next() for _ in range(2)]
        assert e is None and summary(r) == ("r5", {"OUT": [7], "IDX": [0]}, False)
        assert "ValueError" in error.message() and "raised after one response" in error.message()
        for mode, words in ((4, "raised before any response"), (8, "must return None")):
            stream.send("dec", dec_inputs([7], mode), enable_empty_final_response=True)
            (_, error), = [stream.next()]
            assert error is not None and words in error.message(), (mode, error)
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.4)
        stream.send("double", [tensor("IN", i32([4]))])
        result, error = stream.next()
        assert error is None and result.as_numpy("OUT").tolist() == [8] and final(result)
    finally:
        stream.close()


def test_a_send_after_the_final_flag_raises_in_the_model_and_reaches_nobody(server):
    """SERVING.md "Decoupled models": "nothing can be sent after" the final
    flag. tritonserver 2.51: the client gets the one response flagged
    final, and the model's second send raises `TritonModelException:
    Unable to send response. Response sender has been closed.`; anemone's
    message is the same."""
    stream = Stream(server)
    try:
        stream.send("dec", dec_inputs([5, 6], 9))
        (r, e), = [stream.next()]
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.4)
        stream.send("dec", dec_inputs([0], 13))
        report, _ = stream.next()
    finally:
        stream.close()
    assert e is None and summary(r) == ("", {"OUT": [5], "IDX": [0]}, True)
    said = bytes(report.as_numpy("OUT").astype(np.uint8)).decode()
    assert said.startswith("TritonModelException") and "closed" in said, said


def test_requested_outputs_on_a_stream(server):
    """tritonclient's `outputs=` on `async_stream_infer`. tritonserver 2.51:
    a decoupled model's responses carry only the outputs asked for (IDX
    here), an ensemble's too (B of `fan`), and an unknown output is an
    error on the stream naming it; anemone answers the same."""
    stream = Stream(server)
    try:
        stream.send("dec", dec_inputs([5, 6], 1), request_id="a", outputs=[grpcclient.InferRequestedOutput("IDX")])
        got = stream.until_final()
        stream.send("fan", [tensor("X", i32([5, 6]))], request_id="c", outputs=[grpcclient.InferRequestedOutput("B")])
        (fan, _), = stream.until_final()
        stream.send("dec", dec_inputs([5], 1), outputs=[grpcclient.InferRequestedOutput("NOPE")])
        (_, error), = stream.until_final()
    finally:
        stream.close()
    assert [summary(r) for r, _ in got] == [("a", {"IDX": [0]}, False), ("a", {"IDX": [1]}, True)]
    assert summary(fan) == ("c", {"B": (i32([5, 6]) * 3).tolist()}, True)
    assert "NOPE" in error.message()


# ---------------------------------------------------------------- generate

def test_generate_stream_sends_each_response_and_each_error_as_an_event(server):
    """SERVING.md "generate and generate_stream": each response an SSE
    `data:` event as the model sends it, an error an event `{"error": ...}`,
    the status the first event's. tritonserver 2.51, the same requests:
    mode 0 and 1 one event per value (no event for the final flag alone),
    mode 2 an empty 200 body, mode 3 value / error / value with 200, mode 5
    value then the exception's error, mode 12 value then "bad arg", mode 7
    one error event (Triton's status 400; anemone's table gives 500, a
    documented difference), `id` echoed in every event, a scalar input
    taken as a list of one; `spell` with "a!b" letter / error / letter."""
    values = [5, -6, 7]
    for mode in (0, 1, 6):
        status, kind, body = post(server, "/v2/models/dec/generate_stream", {"IN": values, "MODE": [mode], "id": "g"})
        assert (status, kind) == (200, "text/event-stream; charset=utf-8"), body
        assert events(body) == [{"IDX": i, "OUT": v, "id": "g", "model_name": "dec", "model_version": "1"}
                                for i, v in enumerate(values)]
    status, _, body = post(server, "/v2/models/dec/generate_stream", {"IN": 5, "MODE": 2})
    assert (status, body) == (200, "")
    status, _, body = post(server, "/v2/models/dec/generate_stream", {"IN": values, "MODE": 3})
    got = events(body)
    assert status == 200 and [e.get("OUT") for e in got] == [5, None, 7], body
    assert "mid-stream failure" in got[1]["error"] and set(got[1]) == {"error"}
    status, _, body = post(server, "/v2/models/dec/generate_stream", {"IN": values, "MODE": 5})
    got = events(body)
    assert status == 200 and got[0]["OUT"] == 5 and "raised after one response" in got[1]["error"] and len(got) == 2
    status, _, body = post(server, "/v2/models/dec/generate_stream", {"IN": values, "MODE": 12})
    assert status == 200 and [e.get("OUT", e.get("error")) for e in events(body)] == [5, "bad arg"]
    status, kind, body = post(server, "/v2/models/dec/generate_stream", {"IN": values, "MODE": 7})
    assert (status, kind) == (500, "text/event-stream; charset=utf-8")
    (only,) = events(body)
    assert "final error" in only["error"]
    status, _, body = post(server, "/v2/models/spell/generate_stream", {"TEXT": "a!b"})
    got = events(body)
    assert status == 200 and [e.get("LETTER") for e in got] == ["a", None, "b"] and "no bangs" in got[1]["error"]


def test_generate_stream_on_models_that_answer_once_and_on_ensembles(server):
    """SERVING.md: generate_stream sends "one [event] for a model that is
    not decoupled"; ENSEMBLES.md: an ensemble with a decoupled step streams
    one response per response of it. tritonserver 2.51: `double`, `chain`,
    `fan` one event each, `decens` one event per value of its decoupled
    step (also when that step sends the final flag alone: no empty event),
    a failing step one error event (Triton 400; anemone 500 by its table),
    and a step failing mid-stream the rounds before and then the error.
    (Triton also adds `sequence_id`, `sequence_start`, `sequence_end` keys
    to every ensemble event; anemone does not.)"""
    x = np.random.default_rng(3).integers(-1000, 1000, size=4).astype(np.int32)
    for model, key, want in (("double", "IN", {"OUT": (x * 2).tolist()}), ("chain", "X", {"Z": (x * 6).tolist()}),
                             ("fan", "X", {"A": (x * 2).tolist(), "B": (x * 3).tolist()})):
        status, _, body = post(server, f"/v2/models/{model}/generate_stream", {key: x.tolist()})
        (event,) = events(body)
        assert status == 200 and event == {**want, "model_name": model, "model_version": "1"}, body
    for mode in (0, 1):
        status, _, body = post(server, "/v2/models/decens/generate_stream", {"X": x.tolist(), "M": mode})
        assert status == 200 and [e["Z"] for e in events(body)] == (x * 2).tolist(), body
    status, _, body = post(server, "/v2/models/decens/generate_stream", {"X": [4], "M": 2})
    assert (status, body) == (200, "")
    status, _, body = post(server, "/v2/models/chain/generate_stream", {"X": [-99]})
    (event,) = events(body)
    assert status == 500 and "step refuses -99" in event["error"] and "double" in event["error"]
    status, _, body = post(server, "/v2/models/decens/generate_stream", {"X": [1, -99, 3], "M": 1})
    got = events(body)
    assert status == 200 and len(got) == 2 and got[0]["Z"] == 2, body
    assert "step refuses -99" in got[1]["error"]


def test_generate_takes_exactly_one_response(server):
    """SERVING.md: `generate` answers with the model's one response; another
    number is a 501 naming generate_stream (tritonserver 2.51 answers 200
    with `{"error": "generate expects model to produce exactly 1 response,
    ..."}`, documented). Both take a decoupled model that sends one value
    and then the final flag alone (200), and a decoupled ensemble's one
    round. Where the model fails, anemone answers the model's error (mode
    3: 500 "mid-stream failure"; mode 12: 400 "bad arg"), where Triton
    answers its 200 "exactly 1 response" error."""
    status, _, body = post(server, "/v2/models/dec/generate", {"IN": 5, "MODE": 0, "id": "one"})
    assert status == 200 and json.loads(body) == {"IDX": 0, "OUT": 5, "id": "one", "model_name": "dec",
                                                  "model_version": "1"}
    status, _, body = post(server, "/v2/models/decens/generate", {"X": [21], "M": [1]})
    assert status == 200 and json.loads(body)["Z"] == 42
    for mode, gave in ((1, 3), (6, 3), (2, 0)):
        status, _, body = post(server, "/v2/models/dec/generate", {"IN": [1, 2, 3], "MODE": mode})
        assert status == 501 and f"gave {gave}" in body and "generate_stream" in body, (mode, body)
    status, _, body = post(server, "/v2/models/dec/generate", {"IN": [1, 2], "MODE": 3})
    assert status == 500 and "mid-stream failure" in json.loads(body)["error"]
    status, _, body = post(server, "/v2/models/dec/generate", {"IN": [1, 2], "MODE": 12})
    assert status == 400 and json.loads(body)["error"] == "bad arg"


def test_generate_parameters_and_input_shapes_reach_the_model(server):
    """SERVING.md "generate and generate_stream": every key that is not an
    input (and each key of `parameters`) is a request parameter, a boolean,
    a number or a string; an input is a value or a flat list. tritonserver
    2.51 passes the same parameters (`request.parameters()` reads
    {"flag": true, "n": 3, "s": "x", "temperature": 0.5}, 2**40 and 1e300
    as they are), takes "TEXT": "a" and "TEXT": ["a"] alike, and refuses a
    null, a list or an object as a parameter with 400 (anemone too, with
    its own words). A number for a BYTES input or a non-string `id`:
    Triton 500 "Unable to parse ...", anemone 400 (its documented
    client-mistake rule)."""
    for path in ("generate", "generate_stream"):
        status, _, body = post(server, f"/v2/models/text/{path}",
                               {"TEXT": "héllo", "temperature": 0.5, "flag": True, "n": 3, "s": "x",
                                "parameters": {"big": 2**40, "f": 1e300, "neg": -3}})
        answer = json.loads(body) if path == "generate" else events(body)[0]
        assert status == 200 and answer["UPPER"] == "HÉLLO", body
        assert json.loads(answer["PARAMS"]) == {"temperature": 0.5, "flag": True, "n": 3, "s": "x",
                                                "big": 2**40, "f": 1e300, "neg": -3}
        status, _, body = post(server, f"/v2/models/text/{path}", {"TEXT": ["a"]})
        assert status == 200 and "UPPER" in body and '"A"' in body
        for bad in ({"p": None}, {"p": [1, 2]}, {"parameters": {"x": {"y": 1}}}):
            status, kind, body = post(server, f"/v2/models/text/{path}", {"TEXT": "a", **bad})
            assert (status, kind) == (400, "application/json"), (bad, body)
        for bad in ({"TEXT": 5}, {"TEXT": "a", "id": 7}):
            status, kind, body = post(server, f"/v2/models/text/{path}", bad)
            assert (status, kind) == (400, "application/json"), (bad, body)
        status, _, body = post(server, f"/v2/models/dec/{path}", {"IN": [1], "MODE": [1, 1]})
        assert status == 400 and "MODE" in json.loads(body)["error"]


# ---------------------------------------------------------------- ensembles

def test_ensembles_of_python_steps_answer_as_numpy_and_a_failing_step_is_named(server):
    """ENSEMBLES.md: chain and fan-out of Python steps; a failed step fails
    the request with that step's error. tritonserver 2.51: chain and fan
    give Z = 6x, A = 2x, B = 3x; a step that raises is 500 / INTERNAL over
    HTTP and gRPC, `in ensemble 'chain', Failed to process ... ValueError:
    step refuses -99` (anemone: `ensemble 'chain' step 0 (model 'double')
    failed: ... ValueError: step refuses -99`), an error response likewise
    (`step dislikes -98`). On a stream, the decoupled ensemble gives one
    response per value, flagged final on the last (Triton 2.51 also flags
    the last one when the step sends the final flag alone; anemone then
    sends the flag alone, as an empty response when asked: documented in
    ENSEMBLES.md), and a step failing in a later round gives the rounds
    before it, then the error naming the step."""
    x = np.random.default_rng(5).integers(-1000, 1000, size=3).astype(np.int32)
    client = grpcclient.InferenceServerClient(server["gRPC"])
    r = client.infer("chain", [tensor("X", x)])
    np.testing.assert_array_equal(r.as_numpy("Z"), x * 6)
    r = client.infer("fan", [tensor("X", x)])
    np.testing.assert_array_equal(r.as_numpy("A"), x * 2)
    np.testing.assert_array_equal(r.as_numpy("B"), x * 3)
    for value, words in ((-99, "step refuses -99"), (-98, "step dislikes -98")):
        with pytest.raises(Exception) as e:
            client.infer("chain", [tensor("X", i32([value]))])
        assert e.value.status() == "StatusCode.INTERNAL" and words in e.value.message()
        assert "chain" in e.value.message() and "double" in e.value.message()
        status, _, body = post(server, "/v2/models/chain/infer",
                               {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1], "data": [value]}]})
        assert status == 500 and words in json.loads(body)["error"]
    stream = Stream(server)
    try:
        stream.send("decens", [tensor("X", x), tensor("M", i32([1]))], request_id="d")
        got = stream.until_final()
        stream.send("decens", [tensor("X", i32([1, -99, 3])), tensor("M", i32([1]))], request_id="f")
        (first, e0), (_, failed) = [stream.next() for _ in range(2)]
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.4)
    finally:
        stream.close()
    assert [summary(r) for r, _ in got] == [("d", {"Z": [v * 2]}, i == 2) for i, v in enumerate(x.tolist())]
    assert e0 is None and summary(first) == ("f", {"Z": [2]}, False)
    assert "step refuses -99" in failed.message() and "double" in failed.message()


def test_statistics_of_python_ensembles_and_their_steps(server):
    """ENSEMBLES.md "Statistics": each step's model counts the ensemble's
    calls; the ensemble counts success / fail once per request. tritonserver
    2.51, the same requests: chain success 1, inference 1, execution 1,
    double and triple 1 each; fan the same; a decoupled ensemble whose step
    sends 3 values: dec 1 request, double 3. A chain whose first step
    raises: ensemble fail (Triton 2, anemone 1: documented), double fail 1,
    triple nothing. A decoupled model's request counts once whatever it
    sends (3 values, none, an error response: success 1 each, on both)."""
    x = [tensor("X", i32([1, 2, 3]))]
    client = grpcclient.InferenceServerClient(server["gRPC"])
    models = ("chain", "fan", "decens", "dec", "double", "triple")
    d = stats_delta(server, models, lambda: client.infer("chain", x))
    assert {m: (d[m]["success"], d[m]["inference"], d[m]["execution"]) for m in ("chain", "double", "triple")} == \
        {m: (1, 1, 1) for m in ("chain", "double", "triple")}
    assert d["fan"]["success"] == 0 and d["dec"]["success"] == 0
    d = stats_delta(server, models, lambda: client.infer("fan", x))
    assert (d["fan"]["success"], d["double"]["success"], d["triple"]["success"], d["chain"]["success"]) == (1, 1, 1, 0)

    def failing():
        with pytest.raises(Exception):
            client.infer("chain", [tensor("X", i32([-99]))])
    d = stats_delta(server, models, failing)
    assert (d["chain"]["fail"], d["chain"]["success"], d["double"]["fail"], d["triple"]["success"],
            d["triple"]["fail"]) == (1, 0, 1, 0, 0)

    def decoupled():
        stream = Stream(server)
        try:
            stream.send("decens", [tensor("X", i32([1, 2, 3])), tensor("M", i32([0]))])
            stream.until_final(count=3)
            for mode in (0, 2, 3):
                stream.send("dec", dec_inputs([4, 5, 6], mode), enable_empty_final_response=True)
                got = [stream.next() for _ in range({0: 4, 2: 1, 3: 4}[mode])]
                assert final(got[-1][0])
        finally:
            stream.close()
    d = stats_delta(server, models, decoupled)
    assert (d["decens"]["success"], d["decens"]["fail"]) == (1, 0)
    assert (d["dec"]["success"], d["dec"]["fail"]) == (4, 0), d["dec"]
    assert (d["double"]["success"], d["double"]["inference"], d["double"]["execution"]) == (3, 3, 3)


def test_a_streaming_ensemble_counts_its_inferences_and_executions(server):
    """ENSEMBLES.md "Statistics": the ensemble has its own "`inference_count`/
    `execution_count` per request (by batch size)", and "A decoupled step"
    says the request "counts once in the ensemble's statistics, when it
    ends". tritonserver 2.51, one `decens` request (three rounds):
    success 1, inference_count 1, execution_count 1, batch_stats size 1
    count 1. anemone counts success 1, queue and compute 1, but leaves
    inference_count, execution_count and batch_stats at 0 (ensemble/stream.rs
    records success without the execution that ensemble/run.rs records)."""
    def one():
        stream = Stream(server)
        try:
            stream.send("decens", [tensor("X", i32([1, 2, 3])), tensor("M", i32([1]))])
            assert len(stream.until_final()) == 3
        finally:
            stream.close()
    d = stats_delta(server, ("decens",), one)["decens"]
    assert (d["success"], d["inference"], d["execution"], d["batches"]) == (1, 1, 1, 1), d


def test_a_failed_python_execute_counts_in_fail_and_not_as_an_execution(server):
    """SERVING.md "Statistics": `execution_count` is "successful engine
    calls", and a request answered with `InferenceResponse(error=...)` is
    counted in `fail` ("Different from Triton"). tritonserver 2.51 differs
    in both: an error response from `double` counts success 1, inference 1,
    execution 1; an `execute` that raises (double -99, or the decoupled
    `dec` mode 4) counts fail 1 but also execution 1 and one batch of size 1
    (inference 0), which SERVING.md does not list as a difference."""
    client = grpcclient.InferenceServerClient(server["gRPC"])

    def failing(values):
        def run():
            with pytest.raises(Exception):
                client.infer("double", [tensor("IN", i32(values))])
        return run
    for values in ([-98], [-99]):
        d = stats_delta(server, ("double",), failing(values))["double"]
        assert (d["fail"], d["success"], d["inference"], d["execution"], d["batches"]) == (1, 0, 0, 0, 0), (values, d)

    def raising():
        stream = Stream(server)
        try:
            stream.send("dec", dec_inputs([1], 4))
            (_, error), = stream.until_final()
            assert error is not None
        finally:
            stream.close()
    d = stats_delta(server, ("dec",), raising)["dec"]
    assert (d["fail"], d["success"], d["execution"]) == (1, 0, 0), d
