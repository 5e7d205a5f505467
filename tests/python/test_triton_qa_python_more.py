"""The rest of Triton's Python-backend QA (`qa/L0_backend_python`) against
anemone: the subtests test_triton_qa_python_backend.py left out.

Each `qa/L0_backend_python/<subtest>/test.sh` builds a repository from
`qa/python_models/` and runs a unittest client against tritonserver; here
each subtest is a class whose fixture builds that repository (with the
test.sh `sed` edits, and the few of its own its docstring lists) and whose
tests are the client's. Models and helpers: fixtures/triton_qa_python_more/
(its README says where each file comes from; models needing torch are
CPU-only ports). Ported: `bls` (with bls_async, bls_parameters, BLS in
initialize and finalize, bls_model_loading), `decoupled`,
`response_sender`, `parameters`, `async_execute`, `custom_metrics`,
`request_rescheduling`, `io`, `restart`, `variants` (auto_complete_config),
`env` (EXECUTION_ENV_PATH) and dlpack_test's CPU cases. Left out: GPU and
torch cases, bls_memory (1 GiB tensors), conda packing, and what
test_triton_qa_python_backend.py has.

Each test ran against tritonserver 2.51 (CPU, Python backend) first, on
2026-12-05 (TRITON_QA_PEER=<its site-packages> runs the file against it;
tests of documented differences and QA tests newer than 2.51 are then
skipped); docstrings say what it did. CI runs anemone only. Where Triton
passes and anemone fails with no doc saying why: xfail(strict=True,
reason="DEFECT: ...").
"""
import contextlib
import io
import json
import os
import signal
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures/triton_qa_python_more"))
from qa_python_more_support import (PEER, PM, QA, by_final, free_port, ginputs, infer, model_processes,  # noqa: E402
                                    onnx_int32_int32_int32, onnx_nobatch_sequence_int32, put, qa_server, stream)

sys.path.pop(0)
DEC = QA / "L0_backend_python/decoupled/models"
# The python_backend examples, as tests/triton_examples keeps them.
EX = QA.parents[2] / "triton_examples" / "python_backend"
anemone_only = pytest.mark.skipif(bool(PEER), reason="checks anemone's documented difference from Triton")
newer_than_251 = pytest.mark.skipif(bool(PEER), reason="the QA test is newer than tritonserver 2.51")


NO_TORCH = ("from torch.utils.dlpack import from_dlpack, to_dlpack\n", "")


def defect(reason):
    return [] if PEER else [pytest.mark.xfail(strict=True, reason="DEFECT: " + reason)]


def defect_test(reason):
    return (lambda f: f) if PEER else pytest.mark.xfail(strict=True, reason="DEFECT: " + reason)


def square_int32(repo):
    put(repo, EX / "decoupled", "square_int32", model_py=EX / "decoupled/square_model.py",
        config=EX / "decoupled/square_config.pbtxt")


# --------------------------------------------------------------------- bls/


@pytest.fixture(scope="class")
def bls_server(tmp_path_factory):
    """bls/test.sh's CPU models (bls and bls_async as their CPU ports;
    identity_fp32_timeout sleeping 1 s, not 5; the ONNX sequence model),
    params_models' bls_parameters, and bls_parameters_0..3: copies that
    call the next one down instead of themselves (one instance each)."""
    repo = tmp_path_factory.mktemp("bls") / "models"
    for m in ("bls_cpu", "bls_async_cpu", "add_sub", "execute_error", "identity_fp32", "bls_parameters"):
        put(repo, PM / m)
    put(repo, PM / "identity_fp32_timeout", edits=[("time.sleep(5)", "time.sleep(1)")])
    square_int32(repo)
    for i in range(4):
        put(repo, PM / "bls_parameters", f"bls_parameters_{i}", config_edits=[("count: 4", "count: 1")],
            edits=[('model_name="bls_parameters",', 'model_name="bls_parameters_" + str(num_params - 1),')])
    onnx_nobatch_sequence_int32(repo)
    with qa_server(repo) as srv:
        yield srv


def _kinds(name, kinds=(False, True), reason=None):
    return [pytest.param(name, k, id=f"{name}-{'decoupled' if k else 'non_decoupled'}",
                         marks=defect(reason) if reason else []) for k in kinds]


BLS_CASES = [c for n in ("test_bls_wrong_inputs", "test_zero_length_io", "test_bls_sync", "test_bls_execute_error",
                         "test_multiple_bls", "test_timeout") for c in _kinds(n)] + \
    _kinds("test_bls_sequence") + _kinds("test_bls_incorrect_args", [False]) + \
    _kinds("test_response_iterator", [True]) + \
    [c for n in ("test_bls_wrong_inputs_message", "test_bls_execute_error_message", "test_timeout_message")
     for c in _kinds(n)] + \
    _kinds("test_multiprocess", [False])


class TestBls:
    def test_models_ready(self, bls_server):
        """bls/test.sh's run_server must succeed: all 13 models READY, as on
        tritonserver 2.51."""
        idx = bls_server.index()
        assert len(idx) == 13 and all(m["state"] == "READY" for m in idx.values()), idx

    @pytest.mark.parametrize("name,decoupled", BLS_CASES)
    def test_bls(self, bls_server, name, decoupled):
        """bls/test.sh (test_infer_shm_leak.py): the bls model runs PBBLSTest
        in `execute`, BLS_KIND non_decoupled (exec()) or decoupled
        (exec(decoupled=True)); here a method per request: BLS to add_sub,
        square_int32, identity_fp32, execute_error and an unknown model, a
        sequence (correlation ids, flags, set_flags), timeouts (5 us fails; 11 s
        is answered and logged "Request timeout: 11000000000"), InferenceRequest
        missing arguments (TypeError), the response iterator iterated again, BLS
        from 10 forked processes, and Triton's texts (*_message: "expected 2
        inputs but got 1 inputs for model 'add_sub'", "Request timeout
        expired", ...). tritonserver 2.51 passes all; anemone's messages carry
        Triton's sentences after its own."""
        r = infer(bls_server, "bls_cpu", timeout=30, TEST=np.array([name.encode()], dtype=object),
                  DECOUPLED=np.array([decoupled]))
        assert r.as_numpy("OUTPUT0")[0], r.as_numpy("DETAILS")[0].decode()
        if name == "test_timeout":
            assert bls_server.wait_log("Request timeout: 11000000000"), "the model's timeout() line is not logged"

    @pytest.mark.parametrize("decoupled", [False, True], ids=["non_decoupled", "decoupled"])
    def test_bls_async(self, bls_server, decoupled):
        """bls/test.sh's bls_async: an `async def execute` awaiting 10
        async_exec() calls at once, then one async_exec() and one exec() of
        a request, checked against numpy (decoupled: square_int32's n
        responses and final flag). tritonserver 2.51 answers True."""
        r = infer(bls_server, "bls_async_cpu", DECOUPLED=np.array([decoupled]))
        assert r.as_numpy("OUTPUT0").tolist() == [True], bls_server.log_text()[-2000:]

    def test_bls_parameters_chain(self, bls_server):
        """bls_parameters_test.py's check on bls_parameters_3 -> _2 -> _1 ->
        _0: each adds bool_i, int_i and str_i to the request's parameters
        and passes them on (`InferenceRequest(parameters=)`); the last
        answers `request.parameters()`, all nine. tritonserver 2.51 passes."""
        r = infer(bls_server, "bls_parameters_3", outputs=[grpcclient.InferRequestedOutput("PARAMETERS_AGGREGATED")],
                  NUMBER_PARAMETERS=np.array([3], dtype=np.uint8))
        expected = {f"{k}_{i}": f(i) for i in range(1, 4) for k, f in (("bool", bool), ("int", int), ("str", str))}
        assert json.loads(r.as_numpy("PARAMETERS_AGGREGATED")[0]) == expected

    def test_bls_parameters_self(self, bls_server):
        """bls_parameters_test.py as Triton has it: bls_parameters (4
        instances) calls itself. tritonserver 2.51 answers the nine
        parameters. anemone refuses a model calling itself (docs/SERVING.md,
        Business-logic scripting: "A model cannot call itself"): the BLS
        response is an error, so the answer has no output."""
        try:
            out = infer(bls_server, "bls_parameters", NUMBER_PARAMETERS=np.array([3], np.uint8))
        except InferenceServerException:
            out = None
        out = out and out.as_numpy("PARAMETERS_AGGREGATED")
        assert len(json.loads(out[0])) == 9 if PEER else out is None


class TestBlsLifecycle:
    def test_bls_init_error(self, tmp_path):
        """bls/test.sh's bls_init_error: `initialize` BLS-calls square_int32
        (absent). tritonserver 2.51 fails the load ("BLS is only supported
        during the 'execute' function."). anemone takes BLS in `initialize`,
        documented (docs/SERVING.md, model loading API: "`exec()` may come ...
        while `initialize` or `execute` runs"): an error response; it loads."""
        repo = tmp_path / "models"
        put(repo, PM / "bls_init_error")
        with qa_server(repo) as srv:
            state = srv.index()["bls_init_error"]["state"]
            assert state == ("UNAVAILABLE" if PEER else "READY")
            assert not PEER or "BLS is only supported during the 'execute' function." in srv.log_text()

    def test_bls_finalize_error(self, tmp_path):
        """bls/test.sh's bls_finalize_error: `finalize` makes a BLS call;
        the log then says why it failed. tritonserver 2.51: "BLS is only
        supported during the 'execute' function.". anemone logs finalize's
        exception (docs/SERVING.md: "An exception in `finalize` is logged
        as an error"). test.sh stops the server to run finalize; here the
        model is unloaded (explicit mode), since at shutdown anemone now
        and then loses the last lines finalize logs (about 1 stop in 10)."""
        repo = tmp_path / "models"
        put(repo, PM / "bls_finalize_error")
        with qa_server(repo, "--model-control-mode=explicit", "--load-model=bls_finalize_error") as srv:
            assert srv.index()["bls_finalize_error"]["state"] == "READY"
            requests.post(f"http://{srv.http}/v2/repository/models/bls_finalize_error/unload", timeout=60)
            expected = "BLS is only supported during the 'execute' function." if PEER else "finalize() raised"
            assert srv.wait_log(expected), srv.log_text()[-3000:]
            assert "Cleaning up..." in srv.log_text() and (PEER or "exec()" in srv.log_text())

    @pytest.mark.parametrize("warmup", [False, True], ids=["plain", "warmup"])
    def test_bls_model_loading(self, tmp_path, warmup):
        """bls/test.sh, explicit mode: loading bls_model_loading runs
        PBBLSModelLoadingTest in `initialize` (is_model_ready, load_model,
        unload_model of onnx_int32_int32_int32 v2 and v3, load_model with a
        malformed config override, raising, and a good one): 200, then the
        model answers 1. With `warmup`, test.sh's model_warmup sample names
        inputs the model lacks, and the load must not answer 400. Changes:
        tearDown sleeps 1 s (not 30); the file-override test is left out
        (`files=` is refused: docs/SERVING.md); the peer's ONNX model is Python.
        tritonserver 2.51: 200 and 1, twice (once in three runs its load hung
        after the malformed override). anemone refuses the warm-up load (400),
        as docs/SERVING.md's Warm-up section says of unknown inputs (though it
        opens "As in Triton")."""
        repo = tmp_path / "models"
        edits = [("time.sleep(30)", "time.sleep(1)"),
                 ("def test_load_with_file_override", "def _left_out_load_with_file_override")]
        if PEER:
            edits += [('{"backend":"onnxruntime", "version_policy"', '{"backend":"python", "version_policy"')]
        sample = '{{ key: "{}" value: {{ data_type: TYPE_FP32 dims: 4 zero_data: false }} }}'
        append = (f'model_warmup [{{ name : "regular sample" batch_size: 1 inputs {sample.format("INPUT0")} '
                  f'inputs {sample.format("INPUT1")} }}]') if warmup else ""
        put(repo, PM / "bls_model_loading", edits=edits, append=append)
        onnx_int32_int32_int32(repo)
        with qa_server(repo, "--model-control-mode=explicit") as srv:
            r = requests.post(f"http://{srv.http}/v2/repository/models/bls_model_loading/load", timeout=120)
            if warmup and not PEER:
                assert r.status_code == 400 and "warm-up sample 'regular sample' failed" in r.text, r.text
                return
            assert r.status_code == 200, r.text
            assert infer(srv, "bls_model_loading").as_numpy("OUTPUT0").tolist() == [1], srv.log_text()[-4000:]


# --------------------------------------------------------------- decoupled/


@pytest.fixture(scope="class")
def decoupled_server(tmp_path_factory):
    """decoupled/test.sh's repository (in explicit mode, all loaded: see
    test_log_counts). Edits: decoupled_execute_error's queue delay is 1 s
    (not 12; its two requests still make one batch); decoupled_bls runs its
    CPU path (no torch import, the GPU check skipped as on Windows) and
    sleeps 1 s, not 5."""
    repo = tmp_path_factory.mktemp("decoupled") / "models"
    put(repo, PM / "identity_fp32")
    put(repo, PM / "execute_cancel", append="model_transaction_policy { decoupled: True }")
    put(repo, PM / "response_sender_until_cancelled")
    square_int32(repo)
    for m in ("decoupled_bls_async_cancel", "decoupled_bls_cancel", "decoupled_bls_cancel_after_complete",
              "decoupled_bls_stream", "decoupled_raise_exception", "decoupled_return_response_error",
              "decoupled_send_after_close_error"):
        put(repo, DEC / m)
    put(repo, DEC / "decoupled_execute_error", config_edits=[("_microseconds: 12000000", "_microseconds: 1000000")])
    put(repo, DEC / "decoupled_bls", edits=[("import torch\n", ""), NO_TORCH, ("time.sleep(5)", "time.sleep(1)"),
                                            ('if sys.platform != "win32":', "if False:")])
    with qa_server(repo, "--model-control-mode=explicit", "--load-model=*") as srv:
        yield srv


def _cancel_inputs(max_sum, ignore_cancel):
    return ginputs(INPUT=np.array([1], np.int32), MAX_SUM=np.array([max_sum], np.int32),
                   IGNORE_CANCEL=np.array([ignore_cancel]))


class TestDecoupled:
    def test_models_ready(self, decoupled_server):
        """decoupled/test.sh's run_server: all 13 models load on tritonserver 2.51."""
        idx = decoupled_server.index()
        assert len(idx) == 13 and all(m["state"] == "READY" for m in idx.values()), idx

    def test_decoupled_execute_error(self, decoupled_server):
        """decoupled_test.py `test_decoupled_execute_error`: two requests in
        one execute; the first one's thread sends an error, the second's
        its input back. tritonserver 2.51 passes."""
        datas = [np.random.randn(2, 2).astype(np.float32) for _ in range(2)]
        got = stream(decoupled_server, "decoupled_execute_error", [ginputs(IN=d) for d in datas], count=2)
        assert len(got) == 2 and got[0][0] is None and got[0][1] is not None and got[1][1] is None, got
        np.testing.assert_array_equal(got[1][0].as_numpy("OUT"), datas[1])

    def test_decoupled_bls(self, decoupled_server):
        """decoupled_test.py `test_decoupled_bls`: BLS to identity_fp32 in
        `execute` and from the response thread after it returned; the input
        comes back. tritonserver 2.51 passes."""
        data = np.random.randn(1, 2).astype(np.float32)
        got = stream(decoupled_server, "decoupled_bls", [ginputs(IN=data)], count=1)
        assert len(got) == 1 and got[0][1] is None, got
        np.testing.assert_array_equal(got[0][0].as_numpy("OUT"), data)

    def test_decoupled_bls_stream(self, decoupled_server):
        """decoupled_test.py `test_decoupled_bls_stream`: 4, 2, 0 and 1 (ids
        "0".."3") to a model passing on square_int32's stream, read by BLS
        from a thread: n responses of n for each id, none for 0.
        tritonserver 2.51 passes."""
        values = [4, 2, 0, 1]
        got = stream(decoupled_server, "decoupled_bls_stream", [ginputs(IN=np.array([v], np.int32)) for v in values],
                     count=sum(values), ids=True)
        time.sleep(0.5)
        assert all(e is None for _, e in got), got
        per_id = {}
        for r, _ in got:
            per_id.setdefault(r.get_response().id, []).append(r.as_numpy("OUT").tolist())
        assert per_id == {str(i): [[v]] * v for i, v in enumerate(values) if v}

    def test_decoupled_return_response_error(self, decoupled_server):
        """decoupled_test.py `test_decoupled_return_response_error`: a
        decoupled execute returning responses gets "Python model
        'decoupled_return_response_error_0_0' is using the decoupled mode
        and the execute function must return None." (tritonserver 2.51;
        anemone goes on "; send responses through ...", hence no full stop)."""
        a, b = (np.random.random([16]).astype(np.float32) for _ in range(2))
        got = stream(decoupled_server, "decoupled_return_response_error", [ginputs(INPUT0=a, INPUT1=b)], count=1)
        assert len(got) == 1 and got[0][1] is not None, got
        assert ("Python model 'decoupled_return_response_error_0_0' is using the decoupled mode and the execute "
                "function must return None") in got[0][1].message(), got[0][1].message()

    def test_decoupled_send_after_close_error(self, decoupled_server):
        """decoupled_test.py `test_decoupled_send_after_close_error`: the
        final flag, then a response (which raises): nothing reaches the
        client in 2 s (Triton's test waits 4). tritonserver 2.51 passes."""
        a, b = (np.random.random([16]).astype(np.float32) for _ in range(2))
        assert stream(decoupled_server, "decoupled_send_after_close_error", [ginputs(INPUT0=a, INPUT1=b)], wait=2) == []

    def test_decoupled_execute_cancel(self, decoupled_server):
        """decoupled_test.py `test_decoupled_execute_cancel`: execute_cancel
        works 10 s from a thread, checking is_cancelled() each second; the
        client cancels its stream after 4 s: what it gets is CANCELLED, and
        the log has "[execute_cancel] Request not cancelled at 1.0 s" and
        "[execute_cancel] Request cancelled at ". tritonserver 2.51 passes."""
        got = stream(decoupled_server, "execute_cancel", [ginputs(EXECUTE_DELAY=np.array([[10.0]], np.float32))],
                     wait=4, cancel=True)
        assert got and all(r is None and e.status() == "StatusCode.CANCELLED" for r, e in got), got
        assert decoupled_server.wait_log("[execute_cancel] Request cancelled at ")
        assert "[execute_cancel] Request not cancelled at 1.0 s" in decoupled_server.log_text()

    @newer_than_251
    @pytest.mark.parametrize("model", ["decoupled_bls_cancel", "decoupled_bls_async_cancel"])
    @pytest.mark.parametrize("ignore_cancel", [False, True], ids=["cancel", "ignore_cancel"])
    def test_decoupled_bls_cancel(self, decoupled_server, model, ignore_cancel):
        """decoupled_test.py `test_decoupled_bls_cancel` and `_ignore_cancel`:
        the model sums response_sender_until_cancelled's 1s (exec or
        async_exec) and calls the iterator's cancel() at 10: SUM 10, cancelled;
        with IGNORE_CANCEL the QA test wants SUM past 10, not cancelled.
        tritonserver 2.51 has no ResponseIterator.cancel(). anemone's ends the
        stream at once, documented (docs/SERVING.md: "the iterator's next
        response is an error with `TritonError.CANCELLED`, its last"): SUM 10,
        cancelled, either way."""
        got = stream(decoupled_server, model, [_cancel_inputs(10, ignore_cancel)], count=1)
        assert len(got) == 1 and got[0][1] is None, str(got[0][1])
        assert (bool(got[0][0].as_numpy("IS_CANCELLED")[0]), int(got[0][0].as_numpy("SUM")[0])) == (True, 10)

    @newer_than_251
    @pytest.mark.parametrize("max_sum", [10, 25])
    def test_decoupled_bls_cancel_after_complete(self, decoupled_server, max_sum):
        """decoupled_test.py `test_decoupled_bls_cancel_after_cancellation`
        (MAX_SUM 10: SUM 10, cancelled) and `_after_completion` (MAX_SUM 25:
        the 20 responses end first, SUM under 25, not cancelled); then
        cancel() again, which must not raise. tritonserver 2.51 has no
        cancel()."""
        got = stream(decoupled_server, "decoupled_bls_cancel_after_complete", [_cancel_inputs(max_sum, False)], count=1)
        assert len(got) == 1 and got[0][1] is None, str(got[0][1])
        total, cancelled = int(got[0][0].as_numpy("SUM")[0]), bool(got[0][0].as_numpy("IS_CANCELLED")[0])
        assert (cancelled, total == 10 if max_sum == 10 else total < 25) == (max_sum == 10, True)

    def test_decoupled_raise_exception(self, decoupled_server):
        """decoupled_test.py `test_decoupled_raise_exception`: ten requests
        whose execute raises "Intentional Error": ten errors saying so, and
        the model still ready. tritonserver 2.51 passes."""
        got = stream(decoupled_server, "decoupled_raise_exception",
                     [ginputs(IN=np.random.randn(2, 2).astype(np.float32)) for _ in range(10)], count=10)
        assert len(got) == 10 and all(r is None and "Intentional Error" in e.message() for r, e in got), got
        with grpcclient.InferenceServerClient(decoupled_server.grpc) as client:
            assert client.is_model_ready("decoupled_raise_exception")

    def test_log_counts(self, decoupled_server):
        """decoupled/test.sh's verify_log_counts: decoupled_bls's Logger
        lines ("Specific Msg!", "Info Msg!", "Warning Msg!", "Error Msg!")
        at least once, and "Finalize invoked" and "Finalize complete..."
        three times (decoupled_bls, decoupled_execute_error, square_int32).
        test.sh counts after stopping the server; here after unloading the
        three (at shutdown anemone now and then loses finalize's last log
        lines). tritonserver 2.51 passes."""
        for m in ("decoupled_bls", "decoupled_execute_error", "square_int32"):
            requests.post(f"http://{decoupled_server.http}/v2/repository/models/{m}/unload", timeout=60)
        deadline = time.time() + 30
        while decoupled_server.log_text().count("Finalize complete...") < 3 and time.time() < deadline:
            time.sleep(0.2)
        log = decoupled_server.log_text()
        assert all(m in log for m in ("Specific Msg!", "Info Msg!", "Warning Msg!", "Error Msg!"))
        assert (log.count("Finalize invoked"), log.count("Finalize complete...")) == (3, 3)


# --------------------------------------------------------- response_sender/


@pytest.fixture(scope="class")
def sender_server(tmp_path_factory):
    """response_sender/test.sh's two repositories in one: response_sender
    (model.py or model_async.py) plain, _decoupled, _async and
    _decoupled_async, each also _batching; response_sender_complete_final."""
    repo = tmp_path_factory.mktemp("response_sender") / "models"
    for dec in (False, True):
        for asy in (False, True):
            for bat in (False, True):
                put(repo, PM / "response_sender", "response_sender" + "_decoupled" * dec + "_async" * asy +
                    "_batching" * bat, model_py=PM / f"response_sender/model{'_async' * asy}.py",
                    extra=["model_common.py"], append="model_transaction_policy { decoupled: True }\n" * dec +
                    "dynamic_batching { max_queue_delay_microseconds: 500000 }" * bat)
    put(repo, PM / "response_sender_complete_final")
    with qa_server(repo) as srv:
        yield srv


# (responses before return, final flag before, return a response, responses after return, final flag after)
RS = {"zero_pre": (0, True, False, 0, False), "zero_post": (0, False, False, 0, True),
      "one_pre": (1, True, False, 0, False), "one_post": (0, False, False, 1, True),
      "two_pre": (2, True, False, 0, False), "two_post": (0, False, False, 2, True),
      "pre_and_post": (1, False, False, 3, True), "one_on": (0, False, True, 0, False),
      "one_pre_and_on": (1, True, True, 0, False), "one_on_and_post": (0, False, True, 1, True)}
RS_NAMES = ("NUMBER_OF_RESPONSE_BEFORE_RETURN", "SEND_COMPLETE_FINAL_FLAG_BEFORE_RETURN", "RETURN_A_RESPONSE",
            "NUMBER_OF_RESPONSE_AFTER_RETURN", "SEND_COMPLETE_FINAL_FLAG_AFTER_RETURN")


def _rs_inputs(case):
    pre, pre_final, ret, post, post_final = RS[case]
    values = (np.uint8(pre), pre_final, ret, np.uint8(post), post_final)
    return ginputs(**{n: np.array([[v]]) for n, v in zip(RS_NAMES, values)})


def _rs_run(srv, model, cases, expected):
    """(responses sent before return, whether one was returned, sent after),
    read off INDEX (0, 1000+, 2000+) as response_sender_test.py's
    _assert_responses_valid does."""
    before = returned = after = 0
    for result, error in stream(srv, model, [_rs_inputs(c) for c in cases], count=sum(expected)):
        assert error is None, str(error)
        rid = result.as_numpy("INDEX").sum() / result.as_numpy("INDEX").shape[0]
        assert rid < 3000
        before, returned, after = before + (1000 <= rid < 2000), returned + (rid < 1000), after + (2000 <= rid)
    assert returned <= 1, "at most one response returned per request"
    return before, bool(returned), after


class TestResponseSender:
    @pytest.mark.parametrize("case", ["zero_pre", "zero_post", "one_pre", "one_post", "two_pre", "two_post",
                                      "pre_and_post"])
    @pytest.mark.parametrize("model", ["response_sender_decoupled", "response_sender_decoupled_async"])
    def test_decoupled(self, sender_server, model, case):
        """response_sender_test.py `test_decoupled_<case>`: 0, 1, 2 or 1 + 3
        responses sent before and/or after execute returns, then the final
        flag: exactly those arrive. tritonserver 2.51 passes."""
        pre, _, ret, post, _ = RS[case]
        assert _rs_run(sender_server, model, [case], (pre, ret, post)) == (pre, ret, post)

    @pytest.mark.parametrize("case", ["one_on", "one_pre", "one_post"])
    @pytest.mark.parametrize("model", ["response_sender", "response_sender_async"])
    def test_non_decoupled(self, sender_server, model, case):
        """response_sender_test.py `test_non_decoupled_one_response_<on, pre,
        post>_return`: one answer, returned or sent before or after execute
        returns. tritonserver 2.51 passes."""
        pre, _, ret, post, _ = RS[case]
        assert _rs_run(sender_server, model, [case], (pre, ret, post)) == (pre, ret, post)

    @pytest.mark.parametrize("model,cases,expected", [
        (m, ["zero_pre", "zero_post", "one_pre", "one_post", "two_pre", "two_post", "pre_and_post"], (4, False, 6))
        for m in ("response_sender_decoupled_batching", "response_sender_decoupled_async_batching")] + [
        (m, ["one_on", "one_pre", "one_post"], (1, True, 1))
        for m in ("response_sender_batching", "response_sender_async_batching")])
    def test_multiple_requests(self, sender_server, model, cases, expected):
        """response_sender_test.py `test_decoupled_multiple_requests` (the
        seven decoupled cases at once on a batching model: 4 sent before
        return, none returned, 6 after) and `test_non_decoupled_multiple_requests`
        (one_on, one_pre, one_post: a batch answered by a mix of returned
        and sent responses). tritonserver 2.51 passes."""
        assert _rs_run(sender_server, model, cases, expected) == expected

    @pytest.mark.parametrize("case,models,message", [
        ("one_on", ["response_sender_decoupled"], "using the decoupled mode and the execute function must return None"),
        ("one_on_and_post", ["response_sender_decoupled"],
         "using the decoupled mode and the execute function must return None"),
        ("zero_pre", ["response_sender", "response_sender_async"],
         "Non-decoupled model cannot send complete final before sending a response")])
    def test_error(self, sender_server, case, models, message):
        """response_sender_test.py `test_decoupled_one_response_on_return`,
        `_on_and_post_return` (a decoupled model returning a response) and
        `test_non_decoupled_zero_response_pre_return` (the final flag before
        any response): one error with Triton's text. tritonserver 2.51 passes."""
        for model in models:
            got = stream(sender_server, model, [_rs_inputs(case)], count=1)
            assert len(got) == 1 and got[0][0] is None and message in got[0][1].message(), [str(e) for _, e in got]

    @pytest.mark.parametrize("model,case,expected", [
        *[(m, c, e) for m in ("response_sender", "response_sender_async")
          for c, e in (("one_pre_and_on", (1, False, 0)), ("one_on_and_post", (0, True, 0)))],
        ("response_sender_decoupled", "one_pre_and_on", (1, False, 0))])
    def test_second_response(self, sender_server, model, case, expected):
        """response_sender_test.py `test_non_decoupled_two_response_pre_return`,
        `_one_response_pre_and_on_return`, `_on_and_post_return` and
        `test_decoupled_one_response_pre_and_on_return`: a second answer (which
        raises in the model, or is dropped): the stream carries the first only.
        tritonserver 2.51 passes (a unary two_pre gets INTERNAL "expected a
        single response, got 2"); anemone's answer to two_pre on a stream is
        the next test's."""
        assert _rs_run(sender_server, model, [case], expected) == expected

    @anemone_only
    @pytest.mark.parametrize("model", ["response_sender", "response_sender_async"])
    def test_second_response_raised_out_of_execute(self, sender_server, model):
        """response_sender_test.py `test_non_decoupled_two_response_pre_return`:
        the second send raises, and the model lets it out of execute.
        tritonserver 2.51's stream carries the first response, then the
        error; anemone's the error alone (docs/SERVING.md, "The response
        sender in a model that is not decoupled": "Two differences")."""
        got = stream(sender_server, model, [_rs_inputs("two_pre")], count=1)
        assert len(got) == 1 and got[0][0] is None, got
        assert "sends one response per request" in got[0][1].message(), got[0][1].message()
        doc = (QA.parents[3] / "docs/SERVING.md").read_text()
        assert "a gRPC stream gets the error alone (Triton sends the first response" in " ".join(doc.split())

    def test_respond_after_complete_final(self, sender_server):
        """response_sender_complete_final_test.py: a response with the final
        flag, then another, which must raise "Unable to send response.
        Response sender has been closed.": one response arrives, and the log
        says "Test Passed", not "Test FAILED". tritonserver 2.51 passes."""
        data = np.array([[123.45]], np.float32)
        got = stream(sender_server, "response_sender_complete_final", [ginputs(INPUT0=data)], count=1)
        assert len(got) == 1 and got[0][1] is None, got
        np.testing.assert_allclose(got[0][0].as_numpy("OUTPUT0"), data)
        assert sender_server.wait_log("Test Passed"), sender_server.log_text()[-2000:]
        assert not any(t in sender_server.log_text() for t in ("Unexpected request length", "Expected exception not "
                                                               "raised", "Test FAILED"))


# ------------------------------------------------- parameters/, async_execute/


@pytest.fixture(scope="class")
def params_server(tmp_path_factory):
    """parameters/test.sh's repository (response_parameters, _decoupled,
    _bls) and async_execute/test.sh's (async_execute_decouple, _bls)."""
    repo = tmp_path_factory.mktemp("parameters") / "models"
    for m in ("response_parameters", "response_parameters_decoupled", "response_parameters_bls",
              "async_execute_decouple", "async_execute_decouple_bls"):
        put(repo, PM / m)
    with qa_server(repo) as srv:
        yield srv


def _response_params(result):
    return {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in result.get_response().parameters.items()}


def _params(params, name="RESPONSE_PARAMETERS"):
    return {name: np.array([[json.dumps(params)]], dtype=object)}


@newer_than_251
class TestParameters:
    """parameters/test.sh (response parameters) is newer than tritonserver
    2.51, whose InferenceResponse takes no `parameters` (TypeError: these
    models answer INVALID_ARGUMENT). anemone checks them as Triton's newer
    binding does (wrong types raise its words) and sends them to the client
    (the response's bool, int64 and string parameters) and to a BLS caller
    (`parameters()`), as the newer Triton does."""

    @pytest.mark.parametrize("params", [pytest.param({}, id="empty")] + [
        pytest.param(p, id=i) for p, i in (
            ({"many_elements": False}, "one_element"), ({"bool": True, "str": "Hello World!", "int": 1024}, "three"),
            ({"a": "1", "b": "2", "c": 3, "d": False, "e": 5, "f": ""}, "multi_element"))])
    def test_setting_response_parameters(self, params_server, params):
        """response_parameters_test.py `test_setting_<...>_response_parameters`:
        the model's `InferenceResponse(..., parameters=dict)` reaches the
        client as the response's bool, int64 and string parameters."""
        result = infer(params_server, "response_parameters", **_params(params))
        assert _response_params(result) == params
        assert result.as_numpy("OUTPUT")[0][0].decode() == json.dumps(params)

    @pytest.mark.parametrize("params,message", [pytest.param(p, m, id=i) for p, m, i in [
        ([], ", got <class 'list'>", "wrong_type"),
        ({"1": "int key"}, "Expect parameters keys to have type str, found type <class 'int'>", "int_key"),
        *[(p, f"Expect parameters values to have type bool/int/str, found type <class '{t}'>", i) for p, t, i in (
            ({"int": 2, "float": 0.5}, "float", "float"), ({"bool": True, "null": None}, "NoneType", "null"),
            ({"str": "", "list": ["variable"]}, "list", "nested"))]]])
    def test_setting_wrong_response_parameters(self, params_server, params, message):
        """response_parameters_test.py `test_setting_<wrong_type, int_key_type,
        float, null, nested>_response_parameters`: parameters that are not
        a dict of str to bool/int/str raise; the model answers the text
        with INVALID_ARG: the client gets INVALID_ARGUMENT and Triton's text."""
        with pytest.raises(InferenceServerException) as e:
            infer(params_server, "response_parameters", **_params(params))
        assert "[StatusCode.INVALID_ARGUMENT] " in str(e.value) and message in str(e.value), str(e.value)

    @pytest.mark.parametrize("kind", ["decoupled", "bls"])
    def test_setting_response_parameters_streams(self, params_server, kind):
        """response_parameters_test.py `test_setting_response_parameters_decoupled`
        (two responses with parameters, then the final flag: each arrives
        with its own and `triton_final_response: false`) and `_bls` (a model
        reads BLS responses' `parameters()`, from response_parameters and
        from each of response_parameters_decoupled's, answering "True")."""
        params = [{"bool": False, "int": 2048}, {"str": "Hello World!"}]
        if kind == "bls":
            result = infer(params_server, "response_parameters_bls", **_params(params[0]),
                           **_params([{}, {"bool": True, "int": 10000}, {"str": "?"}], "RESPONSE_PARAMETERS_DECOUPLED"))
            assert result.as_numpy("OUTPUT")[0][0].decode() == "True"
            return
        got = stream(params_server, "response_parameters_decoupled", [ginputs(**_params(params))], count=2)
        assert len(got) == 2 and all(e is None for _, e in got), got
        for p, (result, _) in zip(params, got):
            assert _response_params(result) == dict(p, triton_final_response=False)
            assert result.as_numpy("OUTPUT")[0][0].decode() == json.dumps(p)


def _wait(batch, seconds):
    return ginputs(WAIT_SECONDS=np.full([batch, 1], seconds, dtype=np.float32))


class TestAsyncExecute:
    @pytest.mark.parametrize("model", ["async_execute_decouple", "async_execute_decouple_bls"])
    @pytest.mark.parametrize("batch,requests_", [(4, 1), (1, 4)], ids=["single_request", "multi_request"])
    def test_concurrent_execute(self, params_server, model, batch, requests_):
        """concurrency_test.py `test_concurrent_execute_single_request`,
        `_multi_request` and `_bls` forms: a decoupled `async def execute`
        awaits WAIT_SECONDS per item at once; 4 items in one request or 4
        requests are all answered (DUMMY_OUT of their batch size) within 2 +
        delay + 2 s (Triton: delay 4 s; here 2, sequential would take 8).
        tritonserver 2.51 passes."""
        start = time.time()
        got = stream(params_server, model, [_wait(batch, 2.0) for _ in range(requests_)], count=requests_)
        elapsed = time.time() - start
        assert len(got) == requests_ and all(e is None and r.as_numpy("DUMMY_OUT").shape[0] == batch for r, e in got)
        assert elapsed < 6.0, f"{requests_} requests of {batch} took {elapsed:.1f} s: not concurrent"

    def test_concurrent_execute_different_duration(self, params_server):
        """concurrency_test.py `test_concurrent_execute_different_duration`:
        a request waiting 10 s, then (2 s later) one waiting 2 s: the second
        is answered first. Here 4 s and 1 s, 1 s apart: the first answer has
        the second request's batch size (2). tritonserver 2.51 passes."""
        got = []
        client = grpcclient.InferenceServerClient(params_server.grpc)
        client.start_stream(callback=lambda result, error: got.append((result, error)))
        client.async_stream_infer("async_execute_decouple", _wait(1, 4.0))
        time.sleep(1)
        client.async_stream_infer("async_execute_decouple", _wait(2, 1.0))
        deadline = time.time() + 30
        while len(got) < 2 and time.time() < deadline:
            time.sleep(0.05)
        client.stop_stream()
        client.close()
        assert [e for _, e in got] == [None, None], got
        assert [r.as_numpy("DUMMY_OUT").shape[0] for r, _ in got] == [2, 1]

    def test_model_raise_exception(self, params_server):
        """concurrency_test.py `test_model_raise_exception`: an async execute
        raising (a negative wait) after the final flag: the log then holds
        "ValueError: wait_secs cannot be negative". tritonserver 2.51 passes."""
        assert "ValueError: wait_secs cannot be negative" not in params_server.log_text()
        stream(params_server, "async_execute_decouple", [_wait(1, -1.0)], wait=2)
        assert params_server.wait_log("ValueError: wait_secs cannot be negative")


# ------------------------------------------------- custom_metrics/, request_rescheduling/


class TestCustomMetrics:
    @newer_than_251
    def test_custom_metrics(self, tmp_path):
        """custom_metrics/test.sh: PBCustomMetricsTest in `execute` (3
        instances): counters, gauges and histograms read back from /metrics,
        bad buckets refused, a family declared twice (one family; another kind
        raises), series shared by labels; OUTPUT0 1 if all pass. The model reads
        localhost:8002: here the server's metrics port, right after its updates
        (see test_metric_visibility); test_metric_lifetime_error is
        test_metric_lifetime. tritonserver 2.51 aborts in it
        (boost::interprocess::lock_exception, Signal 6): the model is newer."""
        port = free_port()
        repo = tmp_path / "models"
        put(repo, PM / "custom_metrics", edits=[
            ("http://localhost:8002/metrics", f"http://localhost:{port}/metrics"),
            ("def test_metric_lifetime_error", "def _left_out_lifetime_error")])
        with qa_server(repo, metrics_port=port) as srv:
            assert infer(srv, "custom_metrics").as_numpy("OUTPUT0").tolist() == [1], srv.log_text()[-5000:]

    def test_metric_visibility(self, tmp_path):
        """What PBCustomMetricsTest relies on: a model reading /metrics right
        after increment() sees the new value. 2000 tries. tritonserver 2.51
        misses none; anemone missed 5 to 305 of 2000 while it sent updates
        without waiting for them to be made (session 40)."""
        port = free_port()
        repo = tmp_path / "models"
        put(repo, QA / "own_models/metric_visibility")
        with qa_server(repo, metrics_port=port) as srv:
            misses = infer(srv, "metric_visibility", PORT=np.array([port], np.int32), COUNT=np.array([2000], np.int32))
            assert misses.as_numpy("MISSES").tolist() == [0], "of 2000"

    def test_metric_lifetime(self, tmp_path):
        """PBCustomMetricsTest `test_metric_lifetime_error`: a Metric used after
        its MetricFamily was deleted. tritonserver 2.51 raises "Invalid metric
        operation as the corresponding 'MetricFamily' has been deleted.".
        anemone documents (docs/SERVING.md, Custom metrics) that "a `Metric`
        keeps its family alive": increment(10) works, value() is 10."""
        repo = tmp_path / "models"
        put(repo, QA / "own_models/lifetime")
        with qa_server(repo) as srv:
            if PEER:
                with pytest.raises(InferenceServerException, match="'MetricFamily' has been deleted"):
                    infer(srv, "lifetime")
            else:
                assert infer(srv, "lifetime").as_numpy("OUTPUT0").tolist() == [10.0]


class TestRequestRescheduling:
    def test_request_rescheduling(self, tmp_path):
        """request_rescheduling/test.sh's repository (explicit, `--load-model=*`):
        bls_request_rescheduling and three models with `iterative_sequence:
        true` that reschedule requests; the bls model runs Triton's unittest
        (test_wrong_return_type, test_non_decoupled_e2e, test_decoupled_e2e,
        each reloading its model through pb_utils; its 10 s waits for the
        unload made 0.5 s here) and answers 1 when all pass. tritonserver
        2.51: all READY, 1. grpc_endpoint_test.py is
        test_request_rescheduling.py's."""
        repo = tmp_path / "models"
        put(repo, PM / "bls_request_rescheduling", edits=[("time.sleep(10)", "time.sleep(0.5)")])
        for m in ("request_rescheduling_addsub", "iterative_sequence", "wrong_return_type"):
            put(repo, PM / m)
        with qa_server(repo, "--model-control-mode=explicit", "--load-model=*") as srv:
            idx = srv.index()
            assert all(m["state"] == "READY" for m in idx.values()), idx
            assert infer(srv, "bls_request_rescheduling").as_numpy("OUTPUT0").tolist() == [1], srv.log_text()[-5000:]

    @anemone_only
    def test_reschedule_flag_without_iterative_sequence(self, tmp_path):
        """request_rescheduling_addsub without `sequence_batching`: its first
        request calls set_release_flags(RESCHEDULE). tritonserver 2.51 logs
        "Failed to release request: ... not configured to handle such a flag."
        and never answers (the client gave up after 120 s). anemone fails that
        request saying what to add, documented (docs/SERVING.md); the model
        answers the next (its counter moved on), and the server serves on."""
        repo = tmp_path / "models"
        put(repo, PM / "identity_fp32")
        put(repo, PM / "request_rescheduling_addsub",
            config_edits=[("sequence_batching {\n  iterative_sequence : true\n}", "")])
        a, b = (np.random.randn(16).astype(np.float32) for _ in range(2))
        with qa_server(repo) as srv:
            with pytest.raises(InferenceServerException, match="needs `sequence_batching { iterative_sequence: true }`"):
                infer(srv, "request_rescheduling_addsub", INPUT0=a, INPUT1=b)
            np.testing.assert_array_equal(
                infer(srv, "request_rescheduling_addsub", INPUT0=a, INPUT1=b).as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(infer(srv, "identity_fp32", INPUT0=a[None]).as_numpy("OUTPUT0"), a[None])


# --------------------------------------------------------------- io/, dlpack

@pytest.fixture(scope="class")
def io_server(tmp_path_factory):
    """io/test.sh's repositories in one: the `default` trial's ensemble_io,
    the `decoupled` trial's as ensemble_io_decoupled (over
    dlpack_io_identity_d1..d3), add_sub, dlpack_io_identity_decoupled,
    `llm`; and dlpack_test's CPU port. The dlpack_io models lose their torch
    import (only GPU paths use it); the decoupled one sleeps 0.5 s, not 5."""
    repo = tmp_path_factory.mktemp("io") / "models"
    for i in (1, 2, 3):
        put(repo, PM / "dlpack_io_identity", f"dlpack_io_identity_{i}", edits=[NO_TORCH])
        put(repo, PM / "dlpack_io_identity_decoupled", f"dlpack_io_identity_d{i}",
            edits=[NO_TORCH, ("time.sleep(5)", "time.sleep(0.5)")])
    put(repo, PM / "ensemble_io")
    put(repo, PM / "ensemble_io", "ensemble_io_decoupled",
        config_edits=[(f'"dlpack_io_identity_{i}"', f'"dlpack_io_identity_d{i}"') for i in (1, 2, 3)])
    put(repo, PM / "dlpack_io_identity_decoupled", edits=[NO_TORCH, ("time.sleep(5)", "time.sleep(0.5)")])
    for m in ("add_sub", "dlpack_test_cpu"):
        put(repo, PM / m)
    put(repo, QA / "L0_backend_python/io/requested_output_model", "llm")
    with qa_server(repo) as srv:
        yield srv


class TestIO:
    @pytest.mark.parametrize("model,responses", [("ensemble_io", 1), ("ensemble_io_decoupled", 8)])
    def test_ensemble_io(self, io_server, model, responses):
        """io_test.py `test_ensemble_io`: an ensemble of three Python models
        (INPUT0 back, GPU_OUTPUT[1:]; two of them BLS-call the first) answers
        INPUT0 back on a stream; in the decoupled trial each step answers twice:
        2 x 2 x 2 responses (of the QA test's GPU_OUTPUT combinations, the CPU
        one). tritonserver 2.51 passes. anemone runs one decoupled step per
        ensemble, documented (docs/ENSEMBLES.md): that ensemble is UNAVAILABLE."""
        if responses > 1 and not PEER:
            row = io_server.index()[model]
            assert row["state"] == "UNAVAILABLE" and "decoupled" in row.get("reason", ""), row
            return
        data = np.random.random([1000]).astype(np.float32)
        got = by_final(stream(io_server, model, [ginputs(INPUT0=data, GPU_OUTPUT=np.array([False] * 3))],
                              count=responses))
        time.sleep(0.5)
        assert len(got) == responses and all(e is None for _, e in got), [str(e) for _, e in got]
        for result, _ in got:
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

    def test_requested_output_default(self, io_server):
        """io_test.py `test_requested_output_default`: add_sub asked for
        OUTPUT1 answers it alone; asked for none, both. tritonserver 2.51
        passes."""
        a, b = (np.random.rand(16).astype(np.float32) for _ in range(2))
        r = infer(io_server, "add_sub", outputs=[grpcclient.InferRequestedOutput("OUTPUT1")], INPUT0=a, INPUT1=b)
        assert [o.name for o in r.get_response().outputs] == ["OUTPUT1"]
        np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b)
        r = infer(io_server, "add_sub", INPUT0=a, INPUT1=b)
        assert sorted(o.name for o in r.get_response().outputs) == ["OUTPUT0", "OUTPUT1"]
        np.testing.assert_allclose(r.as_numpy("OUTPUT0"), a + b)

    def test_requested_output_decoupled(self, io_server):
        """io_test.py `test_requested_output_decoupled`: the decoupled
        identity sends its response twice; asked for OUTPUT0, both hold
        OUTPUT0 alone; asked for none, OUTPUT0 and NEXT_GPU_OUTPUT
        (GPU_OUTPUT[1:]). GPU_OUTPUT[0] is false here (true means torch on
        a GPU). tritonserver 2.51 passes."""
        data, flags = np.random.rand(4).astype(np.float32), np.array([False, True, False, True])
        inputs = ginputs(INPUT0=data, GPU_OUTPUT=flags)
        got = stream(io_server, "dlpack_io_identity_decoupled", [inputs], count=2,
                     outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
        assert len(got) == 2 and all([o.name for o in r.get_response().outputs] == ["OUTPUT0"] for r, _ in got), got
        got = stream(io_server, "dlpack_io_identity_decoupled", [inputs], count=2)
        assert len(got) == 2
        for r, _ in got:
            np.testing.assert_allclose(r.as_numpy("OUTPUT0"), data)
            np.testing.assert_array_equal(r.as_numpy("NEXT_GPU_OUTPUT"), flags[1:])

    def test_requested_output_decoupled_prior_crash(self, io_server):
        """io_test.py `test_requested_output_decoupled_prior_crash`: the
        decoupled `llm` asked for text_output (of two outputs) streams
        "bla0". tritonserver 2.51 passes."""
        got = stream(io_server, "llm", [ginputs(text_input=np.array([["test"]], dtype=object))], count=1,
                     outputs=[grpcclient.InferRequestedOutput("text_output")])
        assert got and all(e is None for _, e in got), got
        assert "".join(r.as_numpy("text_output")[0].decode() for r, _ in got) == "bla0"

    @pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.skipif(bool(PEER), reason="kills the "
                                      "2.51 stub")) for n in ("test_numpy_dlpack", "test_dlpack_cpu_numpy")] + [
        "test_non_contiguous_error", "test_bool_datatype", "test_dlpack_string_tensor"])
    def test_dlpack(self, io_server, name):
        """dlpack_test's CPU cases (numpy for torch): from_dlpack/to_dlpack
        round trips of 8 dtypes, np.from_dlpack of a Tensor, __dlpack_device__,
        BOOL, a non-contiguous array (refused with Triton's text, or taken with
        its values) and a string tensor ("DLPack does not have support for
        string tensors."). tritonserver 2.51 passes the last three; its stub
        dies on numpy's capsules in the first two, which anemone takes
        (docs/SERVING.md). anemone takes the non-contiguous array (strides
        honoured), and refuses the string tensor in Triton's words."""
        r = infer(io_server, "dlpack_test_cpu", TEST=np.array([name.encode()], dtype=object))
        assert r.as_numpy("OUTPUT0").tolist() == [True], r.as_numpy("DETAILS")[0].decode()


# ------------------------------------------------------------- restart/, variants


class TestRestartAndVariants:
    @anemone_only
    def test_restart(self, tmp_path):
        """restart/test.sh: the restart model answers; the server's model
        processes are SIGKILLed; the next request fails and the one after is
        answered (the model's check of Triton's shared memory is taken out).
        tritonserver 2.51 never restarts the stub ("Stub process 'restart_0_0'
        is not healthy.", 8 times in 16 s), as docs/SERVING.md says. anemone
        starts a new process at the next request (documented there): the
        second request must be answered, the first may be."""
        repo = tmp_path / "models"
        put(repo, QA / "L0_backend_python/restart/models/restart",
            edits=[("import c_python_backend_utils as c_utils\n", ""), ('file_name = "free_memory.txt"', f'file_name = '
                   f'{str(tmp_path / "free_memory.txt")!r}'), ("str(c_utils.shared_memory.free_memory())", '"0"')])
        data = np.random.randn(1, 16).astype(np.float32)
        with qa_server(repo) as srv:
            np.testing.assert_array_equal(infer(srv, "restart", INPUT0=data).as_numpy("OUTPUT0"), data)
            victims = model_processes(srv.proc.pid)
            assert victims, "no model process found"
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            time.sleep(1)
            with contextlib.suppress(InferenceServerException):
                np.testing.assert_array_equal(infer(srv, "restart", INPUT0=data).as_numpy("OUTPUT0"), data)
            np.testing.assert_array_equal(infer(srv, "restart", INPUT0=data).as_numpy("OUTPUT0"), data)

    def test_auto_complete_examples(self, tmp_path):
        """examples/test.sh's auto_complete part: python_backend's
        nobatch_auto_complete and batch_auto_complete without config.pbtxt,
        `--strict-model-config=false`: max_batch_size 0 and 4, INPUT0/INPUT1 and
        OUTPUT0/OUTPUT1 TYPE_FP32 [4], the batch one's dynamic_batching (and here
        their answers against numpy). tritonserver 2.51 passes."""
        repo = tmp_path / "models"
        for kind in ("nobatch", "batch"):
            put(repo, EX / "auto_complete", f"{kind}_auto_complete", model_py=EX / f"auto_complete/{kind}_model.py")
        want = [{"name": n, "data_type": "TYPE_FP32", "dims": ["4"]} for n in ("INPUT0", "INPUT1", "OUTPUT0",
                                                                                "OUTPUT1")]
        with qa_server(repo, "--strict-model-config=false") as srv:
            client = httpclient.InferenceServerClient(srv.http)
            for name, mbs in (("nobatch_auto_complete", 0), ("batch_auto_complete", 4)):
                config = client.get_model_config(name)
                got = [{"name": i["name"], "data_type": i["data_type"], "dims": [str(d) for d in i["dims"]]}
                       for i in config["input"] + config["output"]]
                assert (config["max_batch_size"], got, "dynamic_batching" in config) == (mbs, want, mbs > 0), config
                a, b = (np.random.rand(*([1] * (mbs > 0)), 4).astype(np.float32) for _ in range(2))
                r = infer(srv, name, INPUT0=a, INPUT1=b)
                np.testing.assert_allclose(r.as_numpy("OUTPUT0"), a + b)
                np.testing.assert_allclose(r.as_numpy("OUTPUT1"), a - b)
            client.close()


# ---------------------------------------------------------------------- env/

ENV_PATH = 'parameters: {{key: "EXECUTION_ENV_PATH", value: {{string_value: "$$TRITON_MODEL_DIRECTORY/{}"}}}}'


class TestEnv:
    @newer_than_251
    @pytest.mark.parametrize("mode", ["relative", "absolute"])
    def test_zipslip(self, tmp_path, mode):
        """env/test.sh's path traversal: EXECUTION_ENV_PATH an archive (its
        zipslip_test.py) holding `../../<marker>` or `/tmp/<marker>`: the
        model must not load, nothing written outside the extraction folder.
        Newer than tritonserver 2.51, which has the hole (READY,
        /tmp/<marker> written). anemone's cache is XDG_CACHE_HOME, in
        tmp_path."""
        sys.path.insert(0, str(QA / "L0_backend_python"))
        try:
            import zipslip_archive
        finally:
            sys.path.pop(0)
        repo, name = tmp_path / "models", f"zipslip_{mode}"
        marker = Path(f"/tmp/zipslip_{mode}_marker_{os.getpid()}_{tmp_path.name}")
        put(repo, PM / "identity_fp32", name, append=ENV_PATH.format("malicious_env.tar.gz"))
        with contextlib.redirect_stdout(io.StringIO()):
            zipslip_archive.build_archive(mode, str(repo / name / "malicious_env.tar.gz"), str(marker))
        try:
            with qa_server(repo, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}) as srv:
                assert srv.index()[name]["state"] == "UNAVAILABLE", srv.index()[name]
            assert not marker.exists()
            for p in tmp_path.rglob(marker.name):  # only inside an extraction folder, python-envs/<key>/...
                assert "python-envs" in p.parts and p.parts.index("python-envs") + 2 < len(p.parts), p
        finally:
            marker.unlink(missing_ok=True)

    @anemone_only
    def test_env_outside_model_directory(self, tmp_path):
        """env/test.sh's EXECUTION_ENV_PATH outside the model directory
        (there an s3:// archive beside the model folder), which tritonserver
        takes. anemone refuses a path outside the model's folder, documented
        (docs/SERVING.md: "A path outside the model's folder is refused"):
        the model is UNAVAILABLE saying so."""
        repo = tmp_path / "models"
        put(repo, PM / "identity_fp32", append=ENV_PATH.format("../python_3_12_environment.tar.gz"))
        with tarfile.open(repo / "python_3_12_environment.tar.gz", "w:gz"):
            pass
        with qa_server(repo, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}) as srv:
            row = srv.index()["identity_fp32"]
            assert row["state"] == "UNAVAILABLE" and "EXECUTION_ENV_PATH" in row.get("reason", ""), row
