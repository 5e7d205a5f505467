"""Triton's ensemble, decoupled and scheduling QA suites, ported to pytest and
run against anemone.

From triton-inference-server/server's `qa/` (commit e1db8a603, main as of
2026-08-19): L0_simple_ensemble (ensemble_test.py), L0_decoupled
(decoupled_test.py), L0_backend_bls (the BLS example backend's client),
L0_sequence_corrid_batcher, L0_sequence_stress (scaled
down), L0_rate_limiter, L0_passive_instance and L0_priority. Triton's QA models
come from its data server and custom C++ backends; here they keep the QA
model's name, datatypes, dims and batching, as ONNX models built with the
`onnx` package or Python models: fixtures/triton_qa_ensembles/ holds the three
repositories' configs (main/, limited/, plenty/), the model.py sources
(python/) and support.py (writes a repository; clients and a gRPC stream). Every expected value
is computed with numpy from the inputs sent.

Each model.py starts with the TPEER_SP header, so the same repositories (the
ONNX models served by python/add_sub.py: write_repository(repo, name,
peer=True)) serve on tritonserver 2.51 (CPU build, Python backend only):
TRITON_QA_ENSEMBLES_MAIN / _LIMITED / _PLENTY="HTTP,GRPC,REPO" point the
fixtures at such servers. The tests ran there on 2026-12-05 and the
docstrings say what it answered; the DEFECT tests pass there. CI has no
Triton: the tests run against anemone only. Differences documented in docs/
are asserted as documented (the doc is cited); undocumented ones are
xfail(strict=True, reason="DEFECT: ...").
"""
import importlib.util
import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_support import ROOT, start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "triton_qa_ensembles"
_spec = importlib.util.spec_from_file_location("triton_qa_ensembles_support", FIXTURES / "support.py")
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)
# fixtures/triton_qa_ensembles/support.py: the repositories, a server's clients, tensors, a gRPC stream
Target, Stream, write_repository, run_threads = support.Target, support.Stream, support.write_repository, support.run_threads
tensors, infer, repeat_inputs, is_final, check, data = (support.tensors, support.infer, support.repeat_inputs,
                                                        support.is_final, support.check, support.data)

CORRID_TYPES = ["TYPE_STRING", "TYPE_UINT32", "TYPE_INT32", "TYPE_UINT64", "TYPE_INT64"]


# ------------------------------------------------------------------ servers
def _serve(tmp_path_factory, name, *flags):
    """anemone on the `name` repository (or, with TRITON_QA_ENSEMBLES_<NAME>="HTTP,GRPC,REPO", a server
    already serving write_repository(REPO, name, peer=True), e.g. tritonserver 2.51)."""
    peer = os.environ.get(f"TRITON_QA_ENSEMBLES_{name.upper()}")
    if peer:
        yield Target(*peer.split(","))
        return
    repo = write_repository(tmp_path_factory.mktemp(name), name)
    proc, addresses = start_serve(repo, "--strict-readiness", "false", *flags)
    try:
        wait_ready(addresses["HTTP"])
        yield Target(addresses["HTTP"], addresses["gRPC"], repo)
    finally:
        stop_serve(proc)


@pytest.fixture(scope="module")
def main(tmp_path_factory):
    yield from _serve(tmp_path_factory, "main", "--model-control-mode", "explicit", "--load-model", "*")


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """qa/L0_rate_limiter/test.sh: --rate-limit=execution_count --rate-limit-resource=resource1:4
    --rate-limit-resource=resource2:2."""
    yield from _serve(tmp_path_factory, "limited", "--rate-limit", "execution_count",
                      "--rate-limit-resource", "resource1:4", "--rate-limit-resource", "resource2:2")


@pytest.fixture(scope="module")
def plenty(tmp_path_factory):
    """qa/L0_rate_limiter/test.sh's plenty-resource run (resource1:6, resource2:2), plus resource3:1."""
    yield from _serve(tmp_path_factory, "plenty", "--rate-limit", "execution_count",
                      "--rate-limit-resource", "resource1:6,resource2:2,resource3:1")


def rand_i32(bs, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 100, (bs, 16), dtype=np.int32), rng.integers(0, 100, (bs, 16), dtype=np.int32)


def version_counts(target, model):
    return {s["version"]: s["inference_stats"]["success"]["count"] for s in target.stats(model)}


# ================================================================== L0_simple_ensemble
@pytest.mark.parametrize("proto", ["http", "grpc"])
@pytest.mark.parametrize("bs", [1, 8])
def test_ensemble_add_sub(main, proto, bs):
    """ensemble_test.py test_ensemble_add_sub (iu.infer_exact, batch 1 and 8): six steps over
    `simple` versions 1 and 2 give OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
    a, b = rand_i32(bs, bs)
    r = infer(main, "ensemble_add_sub_int32_int32_int32", proto, INPUT0=a, INPUT1=b)
    check(r, OUTPUT0=a + b, OUTPUT1=a - b)


def test_ensemble_add_sub_versions_share_the_work(main):
    """test_ensemble_add_sub: 'The two simple versions should have the same infer count' (three
    steps each per request). Triton 2.51: 3 and 3 for one request."""
    before = version_counts(main, "simple")
    a, b = rand_i32(2, 3)
    infer(main, "ensemble_add_sub_int32_int32_int32", INPUT0=a, INPUT1=b)
    after = version_counts(main, "simple")
    assert set(after) == {"1", "2"}
    assert after["1"] - before["1"] == after["2"] - before["2"] == 3


def test_ensemble_add_sub_one_output(main):
    """test_ensemble_add_sub_one_output: asking for OUTPUT0 only answers OUTPUT0 alone, right."""
    a, b = rand_i32(8, 4)
    r = infer(main, "ensemble_add_sub_int32_int32_int32", outputs=["OUTPUT0"], INPUT0=a, INPUT1=b)
    assert [o["name"] for o in r.get_response()["outputs"]] == ["OUTPUT0"]
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)


def test_ensemble_one_output_runs_only_the_steps_it_needs(main):
    """test_ensemble_add_sub_one_output: 'Only simple version 2 should have non-zero infer count as
    it is in charge of producing OUTPUT0' (OUTPUT0 needs steps 0, 2 and 4, all on version -1).
    Triton 2.51: version 1 stayed at 3, version 2 went 3 -> 6. anemone: both went up by 3."""
    before = version_counts(main, "simple")
    a, b = rand_i32(1, 5)
    infer(main, "ensemble_add_sub_int32_int32_int32", outputs=["OUTPUT0"], INPUT0=a, INPUT1=b)
    after = version_counts(main, "simple")
    assert (after["1"] - before["1"], after["2"] - before["2"]) == (0, 3)


def _sequence_flags_stream(main):
    a, b = rand_i32(1, 6)
    with Stream(main) as s:
        for i, (start, end) in enumerate([(True, False), (False, False), (False, True)]):
            s.send("ensemble_add_sub_int32_int32_int32", tensors(grpcclient, INPUT0=a, INPUT1=b),
                   outputs=[grpcclient.InferRequestedOutput("OUTPUT0")], request_id=f"77_{i}",
                   sequence_id=77, sequence_start=start, sequence_end=end)
        got = s.collect(3)
    assert all(not isinstance(r, Exception) for _, _, r in got), got
    return a, b, [r for _, _, r in got]


def test_ensemble_sequence_requests(main):
    """test_ensemble_sequence_flags: three requests of one sequence on a stream to the ensemble are
    each answered once, in order, with the right values."""
    a, b, results = _sequence_flags_stream(main)
    assert [r.get_response().id for r in results] == ["77_0", "77_1", "77_2"]
    for r in results:
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)


def test_ensemble_sequence_flags(main):
    """test_ensemble_sequence_flags: Triton 2.51's responses carry the request's sequence_id,
    sequence_start and sequence_end as parameters ([[True, False], [False, False], [False, True]],
    and {"sequence_id": 0, ...} on every ensemble answer over HTTP). anemone's answers carry no
    sequence parameters (docs/FROM_TRITON.md, "an answer's parameters"): only
    triton_final_response on a stream; the answers themselves are right."""
    a, b, results = _sequence_flags_stream(main)
    for r in results:
        p = r.get_response().parameters
        assert "sequence_id" not in p and "sequence_start" not in p, p
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
    doc = (ROOT / "docs/FROM_TRITON.md").read_text()
    assert "sequence parameters" in doc


@pytest.mark.parametrize("outputs", [["OUTPUT0", "OUTPUT1"], None, ["OUTPUT0"]])
def test_ensemble_partial_add_sub(main, outputs):
    """test_ensemble_partial_add_sub: partial_add_sub leaves OUTPUT1 out; the ensemble answers
    OUTPUT0 = INPUT0 + (INPUT1 - INPUT1) and no OUTPUT1. Triton 2.51: 200 with OUTPUT0 only (asked
    for both, or for none, or for OUTPUT0)."""
    a, b = rand_i32(1, 7)
    r = infer(main, "ensemble_partial_add_sub", "grpc", outputs=outputs, INPUT0=a, INPUT1=b)
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a)
    assert r.as_numpy("OUTPUT1") is None


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_nested_ensemble(main, proto):
    """Nested ensembles (ENSEMBLES.md: 'A step's model may itself be an ensemble'): the add/sub
    ensemble then `simple` give 2 * INPUT0 and 2 * INPUT1. Triton 2.51: the same."""
    a, b = rand_i32(3, 9)
    r = infer(main, "ensemble_nested", proto, INPUT0=a, INPUT1=b)
    check(r, OUTPUT0=2 * a, OUTPUT1=2 * b)


@pytest.mark.parametrize("given", [False, True])
def test_ensemble_optional_input(main, given):
    """An optional ensemble input feeding an optional step input (Triton core's 'optional ensemble
    input'): left out, the step sees None. Triton 2.51: 200, OUTPUT0 = OUTPUT1 = INPUT0."""
    a, b = rand_i32(2, 10)
    r = infer(main, "ensemble_optional", INPUT0=a, **({"INPUT1": b} if given else {}))
    b = b if given else 0
    check(r, OUTPUT0=a + b, OUTPUT1=a - b)


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_ensemble_empty_tensor(main, proto):
    """A zero-size tensor through a two-step ensemble comes back zero-size (Triton 2.51: [0])."""
    r = infer(main, "ensemble_identity_chain", proto, IN=np.zeros([0], np.int32))
    assert r.as_numpy("OUT").shape == (0,)


def test_ensemble_step_that_fails(main):
    """An ensemble whose first step answers an error: the request fails with that step's error,
    named as ENSEMBLES.md says ('ensemble ... step 0 (model ...) failed: <the step's error>');
    counted once in the ensemble's `fail` (ENSEMBLES.md; Triton 2.51 counts it twice). Triton 2.51:
    500 "in ensemble 'ensemble_identity_chain', negative value -3"."""
    before = main.stats("ensemble_identity_chain")[0]["inference_stats"]
    r = main.post("/v2/models/ensemble_identity_chain/infer",
                  {"inputs": [{"name": "IN", "shape": [3], "datatype": "INT32", "data": [1, -3, 2]}]})
    assert r.status_code == 500
    assert "step 0 (model 'identity_int32') failed" in r.json()["error"]
    assert "negative value -3" in r.json()["error"]
    after = main.stats("ensemble_identity_chain")[0]["inference_stats"]
    assert after["fail"]["count"] - before["fail"]["count"] == 1
    assert after["success"]["count"] == before["success"]["count"]
    ok = infer(main, "ensemble_identity_chain", IN=np.array([4, 5], np.int32))  # the next one is served
    np.testing.assert_array_equal(ok.as_numpy("OUT"), [4, 5])


def test_ensemble_stats_per_composing_model(main):
    """Each composing model counts the ensemble's calls (ENSEMBLES.md 'Statistics'; Triton 2.51
    the same): 3 requests to a two-step ensemble over identity_int32 are 6 for the step's model
    and 3 for the ensemble."""
    ens0, step0 = (main.stats(m)[0] for m in ("ensemble_identity_chain", "identity_int32"))
    for i in range(3):
        infer(main, "ensemble_identity_chain", IN=np.arange(i + 1, dtype=np.int32))
    ens1, step1 = (main.stats(m)[0] for m in ("ensemble_identity_chain", "identity_int32"))
    count = lambda s: s["inference_stats"]["success"]["count"]  # noqa: E731
    assert count(step1) - count(step0) == 6
    assert count(ens1) - count(ens0) == 3


def test_ensemble_without_batching_over_a_batching_step(main):
    """ENSEMBLES.md: 'an ensemble that does not batch may use a model that does: as in Triton, that
    step is sent a batch of one'. (docs/FROM_TRITON.md says such an ensemble is refused, 'the ranks
    differ': the two pages disagree.) Triton 2.51: loads, [16] in and out."""
    a, b = rand_i32(1, 12)
    r = infer(main, "ensemble_nobatch_over_batching", INPUT0=a[0], INPUT1=b[0])
    check(r, OUTPUT0=a[0] + b[0], OUTPUT1=a[0] - b[0])


def test_ensemble_validates_its_inputs(main):
    """The ensemble's own inputs are checked first (ENSEMBLES.md): a wrong data type is 400."""
    a, b = rand_i32(1, 13)
    with pytest.raises(InferenceServerException) as e:
        infer(main, "ensemble_add_sub_int32_int32_int32", INPUT0=a.astype(np.float32), INPUT1=b)
    assert e.value.status() == "400"


def test_ensemble_max_inflight_requests(main):
    """qa/L0_simple_ensemble/test.sh (backpressure): an ensemble with max_inflight_requests: 1 loads
    and streams (ENSEMBLES.md: 'accepted and has nothing to limit here'); -5, a string and
    12345678901 are refused at load, as Triton's main refuses them. (Triton 2.51 predates the field.)"""
    index = main.index()
    assert index["ensemble_limit_1"]["state"] == "READY"
    for name in ("ensemble_invalid_negative_limit", "ensemble_invalid_string_limit",
                 "ensemble_invalid_large_value_limit"):
        assert index[name]["state"] == "UNAVAILABLE", index[name]
        assert "config.pbtxt line" in index[name]["reason"]  # the parser names the place
    with Stream(main) as s:
        s.send("ensemble_limit_1", repeat_inputs([5, 6], [10, 10]), request_id="x", enable_empty_final_response=True)
        got = s.collect(1)
    assert [int(r.as_numpy("OUT")[0]) for _, r in data(got, "x")] == [5, 6]


# ================================================================== L0_decoupled
DECOUPLED_TRIALS = ["repeat_int32", "simple_repeat", "sequence_repeat", "fan_repeat"]


def _check_repeat(model, results, values):
    """decoupled_test.py's checks: one response per IN value, OUT = IN (fan_repeat: 2 * IN, its
    _fan_validate), IDX = its position."""
    assert len(results) == len(values)
    for j, (_, r) in enumerate(results):
        want = 2 * values[j] if model == "fan_repeat" else values[j]
        assert r.as_numpy("OUT").tolist() == [want]
        if model != "fan_repeat":
            assert r.as_numpy("IDX").tolist() == [j]


def _decoupled_infer(main, model, request_count, values, delay=20, wait=0, empty_final=True):
    """decoupled_test.py _decoupled_infer: request_count requests on one stream (ids "0", "1", ...);
    without empty final responses, the count of responses ends the wait."""
    outputs = [grpcclient.InferRequestedOutput(o) for o in (["OUT"] if model == "fan_repeat" else ["OUT", "IDX"])]
    with Stream(main) as s:
        for i in range(request_count):
            s.send(model, repeat_inputs(values, [delay] * len(values), wait), request_id=str(i),
                   outputs=outputs, enable_empty_final_response=empty_final)
        got = s.collect(request_count, None if empty_final else request_count * len(values))
        if not empty_final:
            s.quiet()
    assert all(not isinstance(r, Exception) for _, _, r in got), got
    for i in range(request_count):
        _check_repeat(model, data(got, str(i)), values)
    return got


@pytest.mark.parametrize("model", DECOUPLED_TRIALS)
def test_one_to_none(main, model):
    """test_one_to_none: IN of shape [0] gets no response but the empty final one the client asked
    for (enable_empty_final_response); 1 request and 5. Triton 2.51: the same, every trial."""
    for count in (1, 5):
        got = _decoupled_infer(main, model, count, [])
        assert len(got) == count and all(not r.get_response().outputs and is_final(r) for _, _, r in got)


@pytest.mark.parametrize("model", DECOUPLED_TRIALS)
def test_one_to_one(main, model):
    """test_one_to_one: one response each, 1 request and 5, the request released (WAIT) before
    and after its response is sent."""
    for count, wait in ((1, 0), (1, 60), (5, 0)):
        _decoupled_infer(main, model, count, [100], wait=wait)


@pytest.mark.parametrize("model", DECOUPLED_TRIALS)
def test_one_to_many(main, model):
    """test_one_to_many: five responses each for 5 requests in flight on one stream, with empty
    final responses; then three for 1 request without them (the count of responses ends the wait)."""
    got = _decoupled_infer(main, model, 5, [100, 101, 102, 103, 104], delay=5)
    # final flags: each data response of repeat_int32 / simple_repeat is not final; the final flag
    # comes alone (for the two ensembles with later steps, Triton attaches it to the last response:
    # docs/FROM_TRITON.md documents anemone's empty final response).
    finals = [r for _, _, r in got if is_final(r)]
    assert len(finals) == 5 and all(not r.get_response().outputs for r in finals)
    _decoupled_infer(main, model, 1, [7, 8, 9], delay=5, empty_final=False)


def _order(main, first, second, gap):
    """Two requests to repeat_int32 on one stream, `gap` seconds apart: the arrival positions of
    each one's responses."""
    with Stream(main) as s:
        s.send("repeat_int32", repeat_inputs([1, 2, 3, 4], first), request_id="0", enable_empty_final_response=True)
        time.sleep(gap)
        s.send("repeat_int32", repeat_inputs([1, 2, 3, 4], second), request_id="1", enable_empty_final_response=True)
        got = [g for g in s.collect(2) if g[2].get_response().outputs]
    for rid in ("0", "1"):
        _check_repeat("repeat_int32", [(p, r) for p, i, r in got if i == rid], [1, 2, 3, 4])
    return [[k for k, (_, i, _) in enumerate(got) if i == rid] for rid in ("0", "1")]


def test_response_order_interleaved(main):
    """test_response_order case 1 (timings scaled down): two requests 200 ms apart whose responses
    come every 400 ms interleave: [[0, 2, 4, 6], [1, 3, 5, 7]]. Triton 2.51: the same."""
    assert _order(main, [400] * 4, [400] * 4, 0.2) == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_response_order_second_request_first(main):
    """test_response_order case 2: the second request's responses all come before the first's:
    [[4, 5, 6, 7], [0, 1, 2, 3]]."""
    assert _order(main, [900, 30, 30, 30], [60] * 4, 0.1) == [[4, 5, 6, 7], [0, 1, 2, 3]]


@pytest.mark.parametrize("proto", ["grpc", "http"])
@pytest.mark.parametrize("model", ["repeat_int32", "simple_repeat"])
def test_no_streaming(main, proto, model):
    """test_no_streaming: a decoupled model (or ensemble) refuses one-answer inference. Triton 2.51:
    gRPC UNIMPLEMENTED "ModelInfer RPC doesn't support models with decoupled transaction policy",
    HTTP 501 "HTTP end point doesn't support ...". anemone's statuses are Triton's; its message
    names the stream to use instead (SERVING.md 'Decoupled models', ENSEMBLES.md)."""
    mod = grpcclient if proto == "grpc" else httpclient
    client = main.gc() if proto == "grpc" else main.hc()
    ins = tensors(mod, IN=np.array([1], np.int32), DELAY=np.array([10], np.uint32), WAIT=np.array([0], np.uint32))
    with pytest.raises(InferenceServerException) as e:
        client.infer(model, ins)
    assert e.value.status() == ("StatusCode.UNIMPLEMENTED" if proto == "grpc" else "501")
    assert "decoupled" in str(e.value) and "stream" in str(e.value)


@pytest.mark.parametrize("model", ["repeat_int32", "simple_repeat"])
def test_wrong_shape(main, model):
    """test_wrong_shape: IN [1] and DELAY [2]: the model's exception reaches the stream, with its
    message "expected IN and DELAY shape to match, got [1] and [2]" (Triton 2.51: the same text)."""
    with Stream(main) as s:
        s.send(model, repeat_inputs([100], [10, 10]), request_id="0")
        (_, _, err), = s.collect(1)
        assert isinstance(err, InferenceServerException)
        assert "expected IN and DELAY shape to match, got [1] and [2]" in str(err)
        s.send(model, repeat_inputs([3], [1]), request_id="1", enable_empty_final_response=True)  # the stream goes on
        _check_repeat(model, data(s.collect(1), "1"), [3])


def test_error_mid_stream(main):
    """A decoupled model's error response after two responses ends that request with the error;
    the stream's next request is answered. Triton 2.51: 1, 2, the error 'bad value -5', then 7."""
    with Stream(main) as s:
        s.send("error_mid_stream", tensors(grpcclient, IN=np.array([1, 2, -5, 4], np.int32)), request_id="a",
               enable_empty_final_response=True)
        s.send("error_mid_stream", tensors(grpcclient, IN=np.array([7], np.int32)), request_id="b",
               enable_empty_final_response=True)
        got = s.collect(2)
    assert [int(r.as_numpy("OUT")[0]) for _, r in data(got, "a")] == [1, 2]
    assert [int(r.as_numpy("OUT")[0]) for _, r in data(got, "b")] == [7]
    errors = [r for _, rid, r in got if rid is None]
    assert len(errors) == 1 and "bad value -5" in str(errors[0])


@pytest.mark.parametrize("model", ["repeat_square", "nested_square"])
def test_two_decoupled_steps_refused(main, model):
    """L0_decoupled's repeat_square (two decoupled steps) and nested_square (a streaming ensemble as
    a step) do not load: ENSEMBLES.md 'anemone runs one decoupled step per ensemble (two are
    refused at load), and not a streaming ensemble as a step of another'. Triton 2.51 serves both."""
    entry = main.index()[model]
    assert entry["state"] == "UNAVAILABLE"
    assert "decoupled" in entry["reason"]


@pytest.mark.parametrize("proto", ["http", "grpc", "grpc_async"])
def test_non_decoupled_repeat(main, proto):
    """NonDecoupledTest test_http / test_grpc / test_grpc_async: repeat_int32 without the decoupled
    policy answers IN [1] once (OUT 1, IDX 0) from its thread, whether the response is sent before
    or after execute returns ((DELAY, WAIT) = (0, 0), (400, 200), (200, 400), scaled down)."""
    for delay, wait in ((0, 0), (400, 200), (200, 400)):
        if proto == "grpc_async":
            done = queue.Queue()
            main.gc().async_infer("repeat_int32_non_decoupled", repeat_inputs([1], [delay], wait),
                                  callback=lambda result, error: done.put((result, error)))
            result, error = done.get(timeout=10)
            assert error is None, error
        else:
            result = infer(main, "repeat_int32_non_decoupled", proto, IN=np.array([1], np.int32),
                           DELAY=np.array([delay], np.uint32), WAIT=np.array([wait], np.uint32))
        assert result.as_numpy("OUT").tolist() == [1] and result.as_numpy("IDX").tolist() == [0]


@pytest.mark.skipif(bool(os.environ.get("TRITON_QA_ENSEMBLES_MAIN")), reason="stops tritonserver 2.51")
def test_non_decoupled_grpc_async_cancel(main):
    """NonDecoupledTest test_grpc_async_cancel: a cancelled async_infer gets CANCELLED, and the
    model stays ready (and answers the next request). Triton 2.51 answered CANCELLED, then died
    (SIGSEGV in TRITONBACKEND_ResponseFactorySendFlags) when the model's thread sent its response;
    Triton's main fixed that with this test."""
    done = queue.Queue()
    client = main.gc()
    handle = client.async_infer("repeat_int32_non_decoupled", repeat_inputs([1], [1500], 800),
                                callback=lambda result, error: done.put((result, error)))
    time.sleep(0.3)
    handle.cancel()
    result, error = done.get(timeout=10)
    assert isinstance(error, InferenceServerException) and "StatusCode.CANCELLED" in error.status()
    assert client.is_model_ready("repeat_int32_non_decoupled")
    r = infer(main, "repeat_int32_non_decoupled", IN=np.array([1], np.int32), DELAY=np.array([0], np.uint32),
              WAIT=np.array([0], np.uint32))
    assert r.as_numpy("OUT").tolist() == [1]


# ================================================================== L0_backend_bls
def _f32(seed):
    rng = np.random.default_rng(seed)
    return rng.random(16, dtype=np.float32), rng.random(16, dtype=np.float32)


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_bls_fp32(main, proto):
    """L0_backend_bls (bls_client): bls_fp32 sends its inputs to addsub_python (a Python model) and
    addsub_onnx (ONNX) and answers OUTPUT0 = INPUT0 + INPUT1 from the first and OUTPUT1 =
    INPUT0 - INPUT1 from the second. Triton 2.51 (both Python there): the same."""
    a, b = _f32(1)
    r = infer(main, "bls_fp32", proto, INPUT0=a, INPUT1=b)
    check(r, OUTPUT0=a + b, OUTPUT1=a - b)


def test_bls_counts_in_the_called_models(main):
    """A BLS call goes through the called model's statistics as a client's does (SERVING.md)."""
    before = [main.stats(m)[0]["inference_stats"]["success"]["count"] for m in ("addsub_python", "addsub_onnx")]
    a, b = _f32(2)
    for _ in range(2):
        infer(main, "bls_fp32", INPUT0=a, INPUT1=b)
    after = [main.stats(m)[0]["inference_stats"]["success"]["count"] for m in ("addsub_python", "addsub_onnx")]
    assert [x - y for x, y in zip(after, before)] == [2, 2]


def _bls_call(main, model, a, b):
    return infer(main, "bls_call", MODEL=np.array([model.encode()], object), INPUT0=a, INPUT1=b)


@pytest.mark.parametrize("model", ["addsub_python", "addsub_onnx"])
def test_bls_call(main, model):
    a, b = _f32(3)
    np.testing.assert_allclose(_bls_call(main, model, a, b).as_numpy("OUTPUT0"), a + b, rtol=1e-6)


@pytest.mark.parametrize("model, words", [
    ("no_such_model", "no_such_model"),        # Triton 2.51: "Model 'no_such_model' is not ready."
    ("simple", "INT32"),                       # FP32 inputs to an INT32 model (Triton 2.51: refused too)
    ("square_int32", "decoupled=True"),        # a decoupled model through exec() (Triton 2.51: the same advice)
])
def test_bls_errors(main, model, words):
    """BLS errors: the callee's refusal is the BLS response's error(), which the model answers with
    (here as its own error); the message names the cause."""
    a, b = _f32(4)
    with pytest.raises(InferenceServerException) as e:
        _bls_call(main, model, a, b)
    assert e.value.status() == "500"
    assert "BLS: " in str(e.value) and words in str(e.value)


def test_bls_to_an_unloaded_model(main):
    """BLS to a model unloaded through the repository API fails naming it; loaded again, the call
    works (explicit model control)."""
    a, b = _f32(5)
    assert main.post("/v2/repository/models/addsub_spare/unload").status_code == 200
    try:
        with pytest.raises(InferenceServerException) as e:
            _bls_call(main, "addsub_spare", a, b)
        assert "addsub_spare" in str(e.value)
    finally:
        assert main.post("/v2/repository/models/addsub_spare/load").status_code == 200
    np.testing.assert_allclose(_bls_call(main, "addsub_spare", a, b).as_numpy("OUTPUT0"), a + b, rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1, 4])
def test_bls_decoupled(main, n):
    """BLS to the decoupled square_int32 with exec(decoupled=True): n responses of n (Triton 2.51:
    COUNT 4, SUM 16 for n = 4)."""
    r = infer(main, "bls_decoupled", IN=np.array([n], np.int32))
    assert (r.as_numpy("COUNT").tolist(), r.as_numpy("SUM").tolist()) == ([n], [n * n])


# ================================================================== L0_sequence_corrid_batcher
@pytest.mark.parametrize("corrid", ["corrid", 123])
@pytest.mark.parametrize("dtype", CORRID_TYPES)
def test_corrid_data_type(main, dtype, corrid):
    """test_corrid_data_type: qa/python_models/add_sub with a CORRID control of each data type; a
    string id works only with TYPE_STRING, a number only with the integer types; otherwise 400
    naming the types (Triton's main: "sequence batching control 'CORRID' data-type is 'BYTES', but
    model 'add_sub' expects 'UINT64'"; anemone says it in its words). Triton 2.51 (before that
    check): every numeric type took both ids, and TYPE_STRING refused both ('unexpected number of
    string elements 2')."""
    model = f"add_sub_{dtype[5:].lower()}"
    a, b = _f32(6)
    client = main.hc()
    kw = dict(sequence_id=corrid, sequence_start=True, sequence_end=False)
    if (dtype == "TYPE_STRING") == isinstance(corrid, str):
        r = client.infer(model, tensors(httpclient, INPUT0=a, INPUT1=b), **kw)
        check(r, OUTPUT0=a + b, OUTPUT1=a - b)
    else:
        with pytest.raises(InferenceServerException) as e:
            client.infer(model, tensors(httpclient, INPUT0=a, INPUT1=b), **kw)
        assert e.value.status() == "400"
        assert ("BYTES" if dtype == "TYPE_STRING" else dtype[5:]) in str(e.value)


def test_skip_batch(main):
    """test_skip_batch: four sequences of 2 and 4 requests at once on onnx_dyna_sequence_int32
    (max_batch_size 1, 4 instances): each answer is INPUT + START + END * CORRID (the QA's
    get_expected_result for ONNX), and the model ran 12 batches of 1 ({1: 12}, 12, 12)."""
    before = main.stats("onnx_dyna_sequence_int32")[0]
    seqs = {1001: (1, 3), 1002: (11, 12, 13, 14), 1003: (111, 113), 1004: (1111, 1112, 1113, 1114)}

    def run(cid, values):
        for k, v in enumerate(values):
            start, end = k == 0, k == len(values) - 1
            r = main.gc().infer("onnx_dyna_sequence_int32", tensors(grpcclient, INPUT=np.array([[v]], np.int32)),
                                sequence_id=cid, sequence_start=start, sequence_end=end)
            assert int(r.as_numpy("OUTPUT")[0][0]) == v + start + end * cid
    errors = run_threads(run, seqs.items())
    assert not errors, errors
    after = main.stats("onnx_dyna_sequence_int32")[0]
    assert after["execution_count"] - before["execution_count"] == 12
    assert after["inference_count"] - before["inference_count"] == 12
    assert {b["batch_size"] for b in after["batch_stats"]} == {1}


# ================================================================== L0_sequence_stress (scaled down)
START_FLAG = "must specify the START flag"


def _sequence_on_stream(target, cid, steps):
    """sequence_stress.py check_sequence_async: a sequence's (start, end, value, expected) steps sent
    on one stream, the answers checked in order; expected None is an answer not checked."""
    with Stream(target) as s:
        for start, end, v, _ in steps:
            s.send("custom_sequence_int32", tensors(grpcclient, INPUT=np.array([[v]], np.int32)),
                   sequence_id=cid, sequence_start=start, sequence_end=end)
        got = s.collect(len(steps))
    for (_, _, r), (_, _, v, want) in zip(got, steps):
        if isinstance(r, Exception):
            raise r
        assert want is None or int(r.as_numpy("OUTPUT")[0][0]) == want, (cid, steps)


def _sequence_parts(rng, ends):
    """One part per entry of `ends` (whether it ends), each starting afresh: sequence_valid (True,),
    valid-valid (True, True), valid-no-end (True, False), no-end (False,). Lengths ~ N(4, 2)."""
    parts = []
    for part_ends in ends:
        n, acc, steps = max(1, int(rng.normal(4, 2))), 0, []
        for k, v in enumerate(rng.randint(0, 1024 * 1024, size=n)):
            acc += int(v)
            steps.append((k == 0, part_ends and k == n - 1, int(v), acc))
        parts.append(steps)
    return parts


KINDS = {"valid": (True,), "valid-valid": (True, True), "valid-no-end": (True, False), "no-end": (False,)}


def test_sequence_stress(main):
    """sequence_stress.py, scaled down: 3 threads, each 10 passes over 2 common and 2 rare
    correlation IDs, sequences that end, are started again over an open one, or are abandoned, and
    one without START (refused, 'must specify the START flag'); the accumulator
    (custom_sequence_int32: a sum since START) must match numpy's sum for every answer. The QA sends
    valid-valid's two parts back to back on one stream; here the second part waits for the first's
    answers (back to back is test_sequence_restarted_right_after_its_end, a DEFECT)."""
    def worker(seed, base):
        rng, last = np.random.RandomState(seed), {}
        for p in range(10):
            if rng.rand() < 0.2:
                cid, kind = base + 2 + p % 2, ["no-end", "valid-no-end", "valid-valid"][rng.randint(3)]
            else:
                cid, c = base + rng.randint(2), rng.rand()
                kind = ("no-start" if c < 0.1 and last.get(cid) not in ("no-end", "valid-no-end") else
                        "no-end" if c < 0.2 else "valid-no-end" if c < 0.3 else "valid-valid" if c < 0.4 else "valid")
            last[cid] = kind
            if kind == "no-start":
                with pytest.raises(InferenceServerException, match=START_FLAG):
                    _sequence_on_stream(main, cid, [(False, False, 5, None)])
                continue
            for steps in _sequence_parts(rng, KINDS[kind]):
                _sequence_on_stream(main, cid, steps)
    errors = run_threads(worker, [(seed, 5000 + 100 * seed) for seed in range(3)])
    assert not errors, [str(e) for e in errors]


def test_sequence_restarted_right_after_its_end(main):
    """sequence_stress.py's sequence_valid_valid: two sequences on one correlation ID sent back to back
    on one stream ([start, ..., end], [start, mid, end]), 4 threads at once, 15 times each: no request
    may be refused. Triton 2.51: none refused. anemone: about 1 in 5 second parts lose their sequence
    after its START. (Values are not checked: Triton may batch the new START with the old END, which
    a stand-in keyed by correlation ID cannot tell apart.)"""
    def worker(cid):
        for trial in range(15):
            steps = [(k == 0, k == trial % 3, k + 1, None) for k in range(1 + trial % 3)]
            _sequence_on_stream(main, cid, steps + [(True, False, 10, None), (False, False, 20, None),
                                                    (False, True, 30, None)])
    errors = run_threads(worker, [(7000 + k,) for k in range(4)])
    assert not errors, [str(e)[:200] for e in errors[:3]]


def test_sequence_idle_timeout(main):
    """sequence_no_end's sequences are closed after max_sequence_idle_microseconds (1 s here): the
    next request without START is refused (Triton 2.51: 400 "inference request for sequence 6 to
    model 'custom_sequence_int32' must specify the START flag on the first request of the
    sequence"), and a new START accumulates from zero."""
    _sequence_on_stream(main, 6001, [(True, False, 3, 3), (False, False, 4, 7)])
    time.sleep(1.6)
    with pytest.raises(InferenceServerException, match=START_FLAG) as e:
        main.hc().infer("custom_sequence_int32", tensors(httpclient, INPUT=np.array([[1]], np.int32)),
                        sequence_id=6001)
    assert e.value.status() == "400"
    _sequence_on_stream(main, 6001, [(True, False, 2, 2), (False, True, 5, 7)])


def test_sequence_after_end_needs_start(main):
    """A sequence's request after its END is refused (Triton 2.51: the same 400)."""
    _sequence_on_stream(main, 6002, [(True, False, 3, 3), (False, True, 10, 13)])
    with pytest.raises(InferenceServerException, match=START_FLAG):
        _sequence_on_stream(main, 6002, [(False, False, 1, None)])


def test_sequence_without_id(main):
    """A sequence model's request without a correlation ID: 400 'must specify a non-zero or
    non-empty correlation ID' (Triton 2.51's words)."""
    with pytest.raises(InferenceServerException, match="must specify a non-zero or non-empty correlation ID"):
        main.hc().infer("custom_sequence_int32", tensors(httpclient, INPUT=np.array([[1]], np.int32)),
                        sequence_start=True)


# ================================================================== L0_rate_limiter
def _stress(target, models, count=40, inflight=8):
    """rate_limiter_test.py stress_models (80 requests, 8 in flight; 40 here): every model gets
    requests until one has `count` answers; returns the answers each got. Every answer must be its
    input (the models are identities)."""
    stop, done, errors, lock = threading.Event(), {m: 0 for m in models}, [], threading.Lock()

    def runner(model):
        client, slots = target.gc(), threading.Semaphore(inflight)

        def on_result(sent, result, error):
            with lock:
                if error is not None or not np.array_equal(result.as_numpy("OUTPUT0"), sent):
                    errors.append(error or "wrong output")
                else:
                    done[model] += 1
                    if done[model] >= count:
                        stop.set()
            slots.release()
        k = 0
        while not stop.is_set() and not errors:
            slots.acquire()
            x = np.random.random_sample([1, 1]).astype(np.float32)
            client.async_infer(model, tensors(grpcclient, INPUT0=x), request_id=str(k),
                               callback=lambda result, error, x=x: on_result(x, result, error))
            k += 1
        for _ in range(inflight):
            assert slots.acquire(timeout=30), "answers did not come"
    threads = [threading.Thread(target=runner, args=(m,)) for m in models]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[:3]
    return done


def _executions(target, model):
    path = target.repo / model / "executions.txt"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [(float(r[1]), float(r[2]), model, int(r[3])) for r in rows]


def test_rate_limiter_resource_count_too_small(limited):
    """test.sh: an instance needing more of a resource than --rate-limit-resource gives cannot load
    (Triton 2.51: 'Resource count for "resource1" is limited to 4 which will prevent scheduling of
    one or more model instances, the minimum required count is 5'); the other models serve."""
    index = limited.index()
    assert index["custom_zero_too_big"]["state"] == "UNAVAILABLE"
    reason = index["custom_zero_too_big"]["reason"]
    assert "resource1" in reason and "4" in reason and "5" in reason
    assert index["custom_zero_1_float32"]["state"] == "READY"


def test_rate_limiter_global_and_device_conflict(plenty):
    """test.sh: "Resource "resource2" is present as both global and device-specific resource": of two
    models that disagree, the second to load is refused, naming the resource and both models
    (SERVING.md); Triton 2.51 refused resource3_global here."""
    index = plenty.index()
    states = {m: index[m]["state"] for m in ("resource3_global", "resource3_device")}
    assert sorted(states.values()) == ["READY", "UNAVAILABLE"], states
    reason = next(index[m]["reason"] for m, s in states.items() if s == "UNAVAILABLE")
    assert "resource3" in reason and "resource3_global" in reason and "resource3_device" in reason


def test_rate_limiter_cross_model_prioritization_limited_resource(limited):
    """test_cross_model_prioritization_limited_resource: resource1 (4) lets only one of the two
    models run at a time, and priority 1 runs about twice as often as priority 2 (the QA wants a
    ratio above 1.8; a wide 1.5 here). Triton 2.51 (same models): 47 / 23; no two executions of the
    two models overlapped."""
    for m in ("custom_zero_1_float32", "custom_zero_1_float32_v2"):
        (limited.repo / m / "executions.txt").write_text("")
    done = _stress(limited, ["custom_zero_1_float32", "custom_zero_1_float32_v2"])
    assert done["custom_zero_1_float32"] / done["custom_zero_1_float32_v2"] > 1.5, done
    runs = sorted(_executions(limited, "custom_zero_1_float32") + _executions(limited, "custom_zero_1_float32_v2"))
    assert len(runs) >= sum(done.values())
    assert all(b[0] >= a[1] for a, b in zip(runs, runs[1:])), "two executions held resource1 at once"


def test_rate_limiter_single_model(limited):
    """test_single_model: every request to one rate-limited model is answered with its input."""
    assert _stress(limited, ["custom_zero_1_float32"])["custom_zero_1_float32"] >= 40


def test_rate_limiter_cross_model_prioritization_plenty_resource(plenty):
    """test_cross_model_prioritization_plenty_resource: with resource1: 6 both run at once, and
    get about the same share (the QA: a difference under 10 of 80; ratio within 0.6 to 1.6 here).
    Triton 2.51: 47 and 47."""
    done = _stress(plenty, ["custom_zero_1_float32", "custom_zero_1_float32_v2"])
    assert 0.6 < done["custom_zero_1_float32"] / done["custom_zero_1_float32_v2"] < 1.6, done


def test_rate_limiter_batch_grows_while_waiting(limited):
    """test_single_model_dynamic_batching ('all requests used batch size of 4'): requests that queue
    while the resource is held (here by custom_zero_blocker's 3 s execution) run as one batch of 4
    once it is free (SERVING.md: 'A batch that waits for resources keeps growing until its turn
    comes'). Triton 2.51: one execution, batch size 4. Each request is sent from its own thread
    with its own client, and the four are sent once the blocker executes (from /metrics): with
    tritonclient's async_infer (gevent) every request left at the first get_result(), the blocker
    just ahead of the others, so a fixed sleep ordered nothing and a loaded run saw two
    executions."""
    x = tensors(httpclient, INPUT0=np.ones([1, 1], np.float32))

    def call(model, request_id):
        return httpclient.InferenceServerClient(limited.http).infer(model, x, request_id=request_id)
    with ThreadPoolExecutor(5) as pool:
        blocker = pool.submit(call, "custom_zero_blocker", "blocker")
        limited.executing("custom_zero_blocker")
        handles = [pool.submit(call, "custom_zero_batched", str(i)) for i in range(4)]
        limited.admitted("custom_zero_batched", 4)
        assert not blocker.done(), "the blocker ended before the four were queued: the test proves nothing"
        blocker.result()
        assert all(h.result().as_numpy("OUTPUT0").tolist() == [[1.0]] for h in handles)
    stats = limited.stats("custom_zero_batched")[0]
    assert stats["execution_count"] == 1 and [b["batch_size"] for b in stats["batch_stats"]] == [4]


def test_rate_limiter_sequence_batching(plenty):
    """test_single_model_sequence_batching: custom_sequence_int32 with three rate-limited instance
    groups; one sequence of 9 requests accumulates 1..9 = 45 on one instance; stats ({1: 9}, 9, 9).
    Triton 2.51: [1, 3, 6, ..., 45] and the same stats."""
    client, acc = plenty.hc(), 0
    for k in range(1, 10):
        acc += k
        r = client.infer("custom_sequence_int32", tensors(httpclient, INPUT=np.array([[k]], np.int32)),
                         sequence_id=44, sequence_start=k == 1, sequence_end=k == 9)
        assert int(r.as_numpy("OUTPUT")[0][0]) == acc
    s = plenty.stats("custom_sequence_int32")[0]
    assert (s["inference_count"], s["execution_count"]) == (9, 9)
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in s["batch_stats"]] == [(1, 9)]


def test_rate_limiter_ignored_without_flag(main):
    """Without --rate-limit a rate_limiter is ignored (SERVING.md; Triton's default, off): a model
    whose instance lists resource1: 1000 loads and answers."""
    r = infer(main, "rate_limiter_ignored", INPUT0=np.arange(3, dtype=np.float32).reshape(3, 1))
    assert r.as_numpy("OUTPUT0").ravel().tolist() == [0.0, 1.0, 2.0]


# ================================================================== L0_passive_instance
def test_passive_instance(main):
    """passive_instance_test.py: Triton 2.51 loads distributed_int32_int32_int32 (a group with
    passive: true) and never schedules the passive instance. anemone refuses the field by its path,
    as docs/FROM_TRITON.md lists it ("instance_group's passive"), leaving the model UNAVAILABLE
    with the reason, and serves on."""
    index = {r["name"]: r for r in main.hc().get_model_repository_index()}
    row = index["distributed_int32_int32_int32"]
    assert row["state"] == "UNAVAILABLE" and "passive" in row["reason"], row
    doc = (ROOT / "docs/FROM_TRITON.md").read_text()
    assert "`instance_group`'s `passive`" in doc


# ================================================================== L0_priority
@pytest.mark.parametrize("level", ["def", "max", "min"])
def test_optimization_priority_loads(main, level):
    """L0_priority: plan models with optimization { priority: PRIORITY_MAX / MIN } (a TensorRT stream
    priority) load and answer as the default one (FROM_TRITON.md: 'Triton's hints that change no
    answer (optimization { priority, ...}) load, and the load logs a warning naming them'); the
    config keeps the priority."""
    a, b = _f32(7)
    r = infer(main, f"plan_float32_float32_float32_{level}", INPUT0=a[None], INPUT1=b[None])
    np.testing.assert_allclose(r.as_numpy("OUTPUT0"), (a + b)[None], rtol=1e-6)
    config = main.hc().get_model_config(f"plan_float32_float32_float32_{level}")
    assert config["optimization"]["priority"] == {"def": "PRIORITY_DEFAULT"}.get(level, f"PRIORITY_{level.upper()}")


def test_optimization_priority_config_filled_in(main):
    """SERVING.md: the config is filled in 'as Triton 2.51 fills it ... optimization with Triton's
    pinned-memory defaults'. Triton 2.51 for PRIORITY_MAX: {"priority": "PRIORITY_MAX",
    "input_pinned_memory": {"enable": true}, "output_pinned_memory": {"enable": true}, ...}; anemone
    leaves the two out (they are there for the model without a priority)."""
    optimization = main.hc().get_model_config("plan_float32_float32_float32_max")["optimization"]
    assert optimization.get("input_pinned_memory") == {"enable": True}
    assert optimization.get("output_pinned_memory") == {"enable": True}


def test_priority_queue_order(main):
    """Priority queues (dynamic_batching priority_levels 2): with one instance busy (800 ms per
    request), a priority-1 request sent after three priority-2 ones runs before them. Triton 2.51:
    r0, hi, r1, r2, r3. Each request has a thread and a client of its own, sent once the one before
    it executes or is admitted (tritonclient's async_infer sends nothing until a get_result(), so
    the sleeps this test had ordered nothing)."""
    log = main.repo / "priority_queue" / "executions.txt"
    log.write_text("")
    x = tensors(httpclient, INPUT0=np.ones([1, 1], np.float32))

    def call(request_id, priority):
        return httpclient.InferenceServerClient(main.http).infer("priority_queue", x, request_id=request_id,
                                                                 priority=priority)
    with ThreadPoolExecutor(5) as pool:
        handles = [pool.submit(call, "r0", 2)]
        main.executing("priority_queue")
        for k in (1, 2, 3):  # in this order: each admitted before the next is sent
            handles.append(pool.submit(call, f"r{k}", 2))
            main.admitted("priority_queue", 1 + k)
        handles.append(pool.submit(call, "hi", 1))
        [h.result() for h in handles]
    order = [line.split()[-1] for line in log.read_text().splitlines()]
    assert order == ["r0", "hi", "r1", "r2", "r3"]
