"""Statistics, Triton's metrics, the logging API and the trace API (settings
and Triton's trace files) under real load, compared side by side with
tritonserver 2.51 (the CPU wheel, Python backend; each model.py here starts
with the TPEER_SP lines so the same file ran on both). What Triton answered
is in each test's docstring; the tests run against anemone only.

Models, all Python, FP32 IN [4] -> OUT = IN * 2 with `max_batch_size: 8`;
`execute` raises when an input holds -99, and sleeps 0.3 s when one holds a
value >= 1000 (else 10 ms):
- `plain`: no dynamic batching, 2 instances;
- `dyn`: `dynamic_batching { preferred_batch_size: [4]
  max_queue_delay_microseconds: 30000 }`, 2 instances;
- `q`: one instance, a queue of 1 with a 100 ms queue timeout (REJECT);
- `qf`: one instance, a queue of 1, no timeout.

Tests marked xfail(strict=True, reason="DEFECT: ...") show where anemone
differs from tritonserver 2.51 although its docs claim Triton's behaviour or
say nothing.
"""
import json
import re
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from serve_support import python_repository, start_serve, stop_serve, wait_ready

HEAD = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
import time
'''

MODEL = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        xs = [pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() for r in requests]
        if any((x == -99).any() for x in xs):
            raise ValueError("model refuses -99")
        slow = max(float(x.max()) for x in xs)
        time.sleep(0.3 if slow >= 1000 else 0.01)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * 2).astype(np.float32))]) for x in xs]
'''

IO = ('backend: "python"\nmax_batch_size: 8\n'
      'input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
      'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')
CONFIGS = {
    "plain": IO + 'instance_group [ { count: 2 kind: KIND_CPU } ]\n',
    "dyn": IO + 'instance_group [ { count: 2 kind: KIND_CPU } ]\n'
                'dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000 }\n',
    "q": IO + 'instance_group [ { count: 1 kind: KIND_CPU } ]\n'
              'dynamic_batching { default_queue_policy { max_queue_size: 1 timeout_action: REJECT '
              'default_timeout_microseconds: 100000 } }\n',
    "qf": IO + 'instance_group [ { count: 1 kind: KIND_CPU } ]\n'
               'dynamic_batching { default_queue_policy { max_queue_size: 1 } }\n',
}

# Triton's trace file timestamps anemone writes, in Triton's order.
TRITON_NAMES = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
                "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]

# HELP and TYPE of Triton's per-model families, as tritonserver 2.51 wrote them here.
TRITON_HELP = {
    "nv_inference_request_success": ("counter", "Number of successful inference requests, all batch sizes"),
    "nv_inference_request_failure": ("counter", "Number of failed inference requests, all batch sizes"),
    "nv_inference_count": ("counter", "Number of inferences performed (does not include cached requests)"),
    "nv_inference_exec_count": ("counter", "Number of model executions performed (does not include cached requests)"),
    "nv_inference_request_duration_us": (
        "counter", "Cumulative inference request duration in microseconds (includes cached requests)"),
    "nv_inference_queue_duration_us": (
        "counter", "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    "nv_inference_compute_input_duration_us": (
        "counter", "Cumulative compute input duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_infer_duration_us": (
        "counter", "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    "nv_inference_compute_output_duration_us": (
        "counter", "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
    "nv_inference_pending_request_count": (
        "gauge", "Instantaneous number of pending requests awaiting execution per-model."),
}


def repository(path):
    return python_repository(path, models=[(n, c, MODEL) for n, c in CONFIGS.items()])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """anemone with Triton's metrics, over the four models."""
    proc, addr = start_serve(repository(tmp_path_factory.mktemp("side_obs")), "--triton-metrics", "true")
    try:
        wait_ready(addr["HTTP"])
        yield addr
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- helpers

def rows(n, value=1.0):
    return np.full((n, 4), value, np.float32) + np.arange(4, dtype=np.float32)


def body(x, name="IN", datatype="FP32"):
    x = np.asarray(x, np.float32)
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}]}


def http_infer(http, model, x, **kw):
    """(status, OUT or the error)."""
    r = requests.post(f"http://{http}/v2/models/{model}/infer", json=body(x, **kw), timeout=30)
    if r.status_code != 200:
        return r.status_code, r.json()["error"]
    out = r.json()["outputs"][0]
    got = np.array(out["data"], np.float32).reshape(out["shape"])
    np.testing.assert_allclose(got, np.asarray(x, np.float32) * 2)
    return 200, got


def grpc_infer(addr, model, x):
    """(status, OUT or the error); status 200 for OK, else the gRPC code's name."""
    client = grpcclient.InferenceServerClient(addr)
    x = np.asarray(x, np.float32)
    t = grpcclient.InferInput("IN", list(x.shape), "FP32")
    t.set_data_from_numpy(x)
    try:
        got = client.infer(model, [t]).as_numpy("OUT")
    except InferenceServerException as e:
        return e.status(), e.message()
    finally:
        client.close()
    np.testing.assert_allclose(got, x * 2)
    return 200, got


def stats(http, model):
    r = requests.get(f"http://{http}/v2/models/{model}/stats", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_stats"][0]


def counts(s):
    return {"inference": s["inference_count"], "execution": s["execution_count"],
            **{k: v["count"] for k, v in s["inference_stats"].items()}}


def metrics(http):
    """{(name, frozenset(labels)): value}, and {name: (type, help)}."""
    text = requests.get(f"http://{http}/metrics", timeout=10).text
    samples, meta = {}, {}
    for line in text.splitlines():
        m = re.match(r"^# (HELP|TYPE) (\S+) (.*)$", line)
        if m:
            kind, name, rest = m.groups()
            t, h = meta.get(name, (None, None))
            meta[name] = (rest, h) if kind == "TYPE" else (t, rest)
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            samples[(m.group(1), labels)] = float(m.group(4))
    return samples, meta


def nv(samples, name, model, **labels):
    return samples.get((name, frozenset({"model": model, "version": "1", **labels}.items())))


def concurrently(calls):
    """Runs `calls` (functions of no argument) on threads at once; their results in order."""
    out = [None] * len(calls)

    def one(i):
        out[i] = calls[i]()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def trace_file(path):
    """[(head, [(name, ns)], raw objects)] per id, in order of first appearance."""
    out = {}
    for entry in json.loads(path.read_text()):
        head, stamps, raw = out.setdefault(entry["id"], ({}, [], []))
        raw.append(entry)
        if "timestamps" in entry:
            stamps.extend((t["name"], t["ns"]) for t in entry["timestamps"])
        else:
            head.update(entry)
    return out


# ---------------------------------------------------------------- statistics

def test_sequential_and_concurrent_statistics_count_as_tritons(served):
    """docs/SERVING.md "Statistics": success/fail/queue/compute_* counts,
    inference_count (rows) against execution_count, batch_stats per size,
    last_inference in ms since the epoch.

    tritonserver 2.51, same traffic on `plain` (no dynamic batching, 2
    instances; sequential then 8 threads over HTTP and gRPC, 4 requests
    raising in execute, 4 refused as invalid): success 20, fail 4, queue and
    compute_* counts 20, inference_count 39 (the successes' rows), invalid
    requests counted nowhere, `cache_hit`/`cache_miss` zero. Its
    execution_count was 24 and its batch_stats held the 4 raising executions
    at their batch sizes (1, 2, 3, 1): documented as different (anemone
    counts no execution for an execute that raised)."""
    http, g = served["HTTP"], served["gRPC"]
    t0 = time.time() * 1000
    codes = []
    for n in (1, 2, 3):
        codes += [http_infer(http, "plain", rows(n))[0], grpc_infer(g, "plain", rows(n))[0]]
    codes += [http_infer(http, "plain", rows(1, -99))[0], grpc_infer(g, "plain", rows(2, -99))[0]]
    refused = [http_infer(http, "plain", np.ones((1, 5)))[0],           # wrong shape
               http_infer(http, "plain", rows(1), name="NOPE")[0],      # unknown input
               http_infer(http, "plain", np.ones((9, 4)))[0],           # over max_batch_size
               requests.post(f"http://{http}/v2/models/plain/infer",
                             json=body(rows(1), datatype="INT32")).status_code]
    assert refused == [400] * 4
    calls = []
    for i in range(16):
        x = rows(1 + i % 3, -99 if i in (5, 6) else 1)
        calls.append((lambda x=x: grpc_infer(g, "plain", x)) if i % 2 else (lambda x=x: http_infer(http, "plain", x)))
    codes += [c for c, _ in concurrently(calls[:8]) + concurrently(calls[8:])]
    t1 = time.time() * 1000
    assert codes.count(200) == 20 and len(codes) == 24, codes

    s = stats(http, "plain")
    ok_rows = [1, 1, 2, 2, 3, 3] + [1 + i % 3 for i in range(16) if i not in (5, 6)]
    c = counts(s)
    assert c == {"inference": sum(ok_rows), "execution": 20, "success": 20, "fail": 4, "queue": 20,
                 "compute_input": 20, "compute_infer": 20, "compute_output": 20,
                 "cache_hit": 0, "cache_miss": 0}, c
    per_size = {b["batch_size"]: b for b in s["batch_stats"]}
    assert sorted(per_size) == [1, 2, 3]
    for size, b in per_size.items():
        assert {b[k]["count"] for k in ("compute_input", "compute_infer", "compute_output")} == {ok_rows.count(size)}, b
    assert sum(b["compute_infer"]["ns"] for b in s["batch_stats"]) == s["inference_stats"]["compute_infer"]["ns"]
    ist = s["inference_stats"]
    # Every execution slept 10 ms; a request's time holds its queue and compute times.
    assert ist["compute_infer"]["ns"] >= 20 * 10_000_000, ist
    parts = sum(ist[k]["ns"] for k in ("queue", "compute_input", "compute_infer", "compute_output"))
    assert parts <= ist["success"]["ns"] * 1.01, ist
    assert ist["fail"]["ns"] > 0
    assert t0 - 5 <= s["last_inference"] <= t1 + 5, (t0, s["last_inference"], t1)

    # gRPC ModelStatistics: the same numbers (int64 fields as JSON strings).
    client = grpcclient.InferenceServerClient(g)
    grpc_stats = client.get_inference_statistics("plain", as_json=True)
    gs = grpc_stats["model_stats"][0]
    assert (gs["name"], gs["version"]) == ("plain", "1")
    assert int(gs["inference_count"]) == s["inference_count"] and int(gs["execution_count"]) == s["execution_count"]
    assert int(gs["last_inference"]) == s["last_inference"]
    for k, v in s["inference_stats"].items():
        got = gs["inference_stats"][k]
        assert (int(got.get("count", 0)), int(got.get("ns", 0))) == (v["count"], v["ns"]), k
    assert sorted((int(b["batch_size"]), int(b["compute_infer"]["count"])) for b in gs["batch_stats"]) == \
        sorted((b["batch_size"], b["compute_infer"]["count"]) for b in s["batch_stats"])


def test_dynamic_batching_counts_requests_in_inference_stats_and_executions_in_batch_stats(served):
    """docs/SERVING.md "Statistics": with dynamic batching a request's
    compute durations are those of its batch; batch_stats counts executions.

    tritonserver 2.51 on `dyn` (preferred_batch_size 4, 30 ms delay, 2
    instances), after the same mixed traffic: inference_stats.compute_infer
    counted 19 requests, batch_stats counted 18 executions of sizes 1 to 4
    (including its raising ones), and sum(batch_size x count) over the
    successful executions was inference_count (37)."""
    http, g = served["HTTP"], served["gRPC"]
    before = counts(stats(http, "dyn"))
    calls = [(lambda: grpc_infer(g, "dyn", rows(1))) if i % 2 else (lambda: http_infer(http, "dyn", rows(1)))
             for i in range(8)]
    assert [c for c, _ in concurrently(calls)] == [200] * 8
    s = stats(http, "dyn")
    c = counts(s)
    assert c["success"] - before["success"] == 8 and c["inference"] - before["inference"] == 8
    for k in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert c[k] - before[k] == 8, (k, c, before)
    executions = c["execution"] - before["execution"]
    assert 2 <= executions < 8, f"8 concurrent requests were not batched: {executions} executions"
    batches = s["batch_stats"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == s["inference_count"]
    assert sum(b["compute_infer"]["count"] for b in batches) == s["execution_count"]
    assert max(b["batch_size"] for b in batches) >= 2
    assert all(b["batch_size"] <= 8 for b in batches)


def test_triton_metric_families_carry_the_statistics(served):
    """docs/OBSERVABILITY.md "Metrics": `--triton-metrics true` writes
    Triton's families with its names, labels, types, help and units (µs),
    the values of the statistics.

    tritonserver 2.51: the HELP/TYPE lines of TRITON_HELP; labels `model`
    and `version`; `nv_inference_request_failure` with the 4 reasons
    REJECTED, CANCELED, BACKEND, OTHER on every model (model errors under
    BACKEND, invalid requests nowhere); nv_inference_request_duration_us the
    successes' ns / 1000; the other durations their ns / 1000; exec_count
    the execution_count."""
    http = served["HTTP"]
    http_infer(http, "plain", rows(2))
    http_infer(http, "plain", rows(1, -99))
    http_infer(http, "plain", np.ones((1, 5)))
    all_stats = {m: stats(http, m) for m in CONFIGS}
    samples, meta = metrics(http)
    for name, (kind, help_) in TRITON_HELP.items():
        assert meta.get(name) == (kind, help_), (name, meta.get(name))
    for m, s in all_stats.items():
        ist = s["inference_stats"]
        assert nv(samples, "nv_inference_request_success", m) == ist["success"]["count"], m
        assert nv(samples, "nv_inference_count", m) == s["inference_count"], m
        assert nv(samples, "nv_inference_exec_count", m) == s["execution_count"], m
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
            assert nv(samples, "nv_inference_request_failure", m, reason=reason) is not None, (m, reason)
        assert nv(samples, "nv_inference_pending_request_count", m) == 0, m
        for stat, fam in (("success", "request"), ("queue", "queue"), ("compute_input", "compute_input"),
                          ("compute_infer", "compute_infer"), ("compute_output", "compute_output")):
            assert nv(samples, f"nv_inference_{fam}_duration_us", m) == ist[stat]["ns"] // 1000, (m, stat)
    plain = all_stats["plain"]["inference_stats"]
    assert nv(samples, "nv_inference_request_failure", "plain", reason="BACKEND") == plain["fail"]["count"] >= 1
    assert nv(samples, "nv_inference_request_failure", "plain", reason="OTHER") == 0


def test_pending_request_count_is_the_request_waiting_in_the_queue(served):
    """Triton's nv_inference_pending_request_count: "requests awaiting
    execution". tritonserver 2.51 on `qf` (one instance): 1 while one slow
    request ran and one waited, 0 afterwards, as anemone."""
    http = served["HTTP"]
    seen = {}

    def watch():
        time.sleep(0.15)
        seen["mid"] = nv(metrics(http)[0], "nv_inference_pending_request_count", "qf")

    def second():
        time.sleep(0.05)
        return http_infer(http, "qf", rows(1))[0]

    codes = concurrently([lambda: http_infer(http, "qf", rows(1, 1000))[0], second, watch])
    assert codes[:2] == [200, 200]
    assert seen["mid"] == 1
    assert nv(metrics(http)[0], "nv_inference_pending_request_count", "qf") == 0


def test_a_queue_timeout_is_a_rejected_failure_counted_in_fail(served):
    """docs/SERVING.md "Statistics" (`fail` counts a queue timeout) and
    docs/OBSERVABILITY.md (REJECTED for a queue timeout).

    tritonserver 2.51 on `q`: the request that waited past 100 ms behind a
    0.3 s one was answered 503 "Request timeout expired" (anemone 504:
    documented), nv_inference_request_failure{reason="REJECTED"} 1,
    inference_stats.fail 1, success/queue 1 each for the slow request only."""
    http = served["HTTP"]
    before = counts(stats(http, "q"))
    rejected = nv(metrics(http)[0], "nv_inference_request_failure", "q", reason="REJECTED")

    def late():
        time.sleep(0.08)
        return http_infer(http, "q", rows(1))

    (slow, _), (code, message) = concurrently([lambda: http_infer(http, "q", rows(1, 1000)), late])
    assert slow == 200
    assert code == 504 and "timed out" in message, (code, message)
    after = counts(stats(http, "q"))
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {"inference": 1, "execution": 1, "success": 1, "fail": 1, "queue": 1, "compute_input": 1,
                     "compute_infer": 1, "compute_output": 1, "cache_hit": 0, "cache_miss": 0}, delta
    assert nv(metrics(http)[0], "nv_inference_request_failure", "q", reason="REJECTED") == rejected + 1


def test_a_full_queue_is_not_a_counted_triton_failure(served):
    """docs/OBSERVABILITY.md "Metrics" says Triton's families read as
    tritonserver's, and that anemone counts a full queue as REJECTED.

    tritonserver 2.51 on `qf` (one instance, max_queue_size 1): a slow
    request running, one waiting, a third answered 503 "Exceeds maximum
    queue size"; nv_inference_request_failure{reason="REJECTED"} stayed 0,
    and inference_stats.fail 0 (as anemone's)."""
    http = served["HTTP"]
    before = counts(stats(http, "qf"))
    rejected = nv(metrics(http)[0], "nv_inference_request_failure", "qf", reason="REJECTED")

    def later(delay):
        time.sleep(delay)
        return http_infer(http, "qf", rows(1))[0]

    codes = concurrently([lambda: http_infer(http, "qf", rows(1, 1000))[0], lambda: later(0.06), lambda: later(0.15)])
    assert codes == [200, 200, 503], codes
    assert counts(stats(http, "qf"))["fail"] == before["fail"]
    assert nv(metrics(http)[0], "nv_inference_request_failure", "qf", reason="REJECTED") == rejected


def test_statistics_of_an_unused_model_are_tritons_zeros(tmp_path):
    """tritonserver 2.51 answered a model with no request yet, over HTTP,
    with every inference_stats duration {count 0, ns 0}, batch_stats [],
    last_inference 0, memory_usage [] and response_stats {}; over gRPC
    (as JSON) with empty durations and no batch_stats. anemone answers the
    same."""
    fresh = {"batch_stats": [], "execution_count": 0, "inference_count": 0,
             "inference_stats": {k: {"count": 0, "ns": 0} for k in (
                 "cache_hit", "cache_miss", "compute_infer", "compute_input", "compute_output", "fail", "queue",
                 "success")},
             "last_inference": 0, "memory_usage": [], "name": "unused", "response_stats": {}, "version": "1"}
    gfresh = {"model_stats": [{"inference_stats": {k: {} for k in fresh["inference_stats"]},
                               "name": "unused", "version": "1"}]}
    repo = python_repository(tmp_path, models=[("unused", CONFIGS["qf"], MODEL)])
    proc, addr = start_serve(repo)
    try:
        wait_ready(addr["HTTP"])
        assert stats(addr["HTTP"], "unused") == fresh
        client = grpcclient.InferenceServerClient(addr["gRPC"])
        got = client.get_inference_statistics("unused", as_json=True)
        assert got == gfresh, got
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- logging

def test_logging_api_has_tritons_fields_and_takes_tritons_format_names(served):
    """docs/OBSERVABILITY.md "Logging": Triton's logging extension.

    tritonserver 2.51 answered GET /v2/logging with exactly the keys
    log_file (string), log_info, log_warning, log_error (bools),
    log_verbose_level (number), log_format (string, "default"); POST {}
    answered the settings; POST {"log_verbose_level": 1} took effect and
    answered it; log_format "ISO8601" and "default" were taken (200).
    Documented differences: log_info is false by default here (Triton:
    true), log_format reads "text" (Triton: "default"), an unknown field or
    a wrong type is 400 (Triton: ignored with 200, or 500), and log_file may
    be given as the one in force (Triton: 501 for any)."""
    http, g = served["HTTP"], served["gRPC"]
    start = requests.get(f"http://{http}/v2/logging").json()
    assert set(start) == {"log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format"}
    assert all(isinstance(start[k], bool) for k in ("log_info", "log_warning", "log_error"))
    assert isinstance(start["log_verbose_level"], int) and not isinstance(start["log_verbose_level"], bool)
    assert isinstance(start["log_file"], str) and isinstance(start["log_format"], str)
    try:
        assert requests.post(f"http://{http}/v2/logging", json={}).json() == start
        r = requests.post(f"http://{http}/v2/logging", json={"log_verbose_level": 1})
        assert r.status_code == 200 and r.json() == dict(start, log_verbose_level=1), r.text
        for name in ("ISO8601", "default"):
            r = requests.post(f"http://{http}/v2/logging", json={"log_format": name})
            assert r.status_code == 200, (name, r.text)
        # gRPC LogSettings answers the same settings, typed.
        client = grpcclient.InferenceServerClient(g)
        reply = client._client_stub.LogSettings(pb.LogSettingsRequest())
        assert set(reply.settings) == set(start)
        assert reply.settings["log_verbose_level"].uint32_param == 1
        assert reply.settings["log_warning"].bool_param == start["log_warning"]
        assert reply.settings["log_format"].string_param == start["log_format"]
        r = requests.post(f"http://{http}/v2/logging", json={"log_file": "/elsewhere.log"})
        assert r.status_code == 400 and "/elsewhere.log" in r.json()["error"], r.text
    finally:
        requests.post(f"http://{http}/v2/logging", json={"log_verbose_level": start["log_verbose_level"]})


# ---------------------------------------------------------------- trace API and trace files

@pytest.fixture
def traced(tmp_path):
    """anemone in Triton's trace-file mode (level TIMESTAMPS, rate 1); yields
    (addresses, trace file path, stop) where stop() writes the file."""
    path = tmp_path / "trace.json"
    proc, addr = start_serve(repository(tmp_path / "repo"), "--trace-config", f"triton,file={path}",
                             "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1")
    stopped = []

    def stop():
        if not stopped:
            stopped.append(1)
            stop_serve(proc)

    try:
        wait_ready(addr["HTTP"])
        yield addr, path, stop
    finally:
        stop()


def test_trace_settings_in_tritons_file_mode(traced):
    """docs/OBSERVABILITY.md "Triton's trace files", "Settings".

    tritonserver 2.51 with `--trace-config triton,file=F --trace-config
    level=TIMESTAMPS --trace-config rate=1` answered GET /v2/trace/setting
    {"trace_level":["TIMESTAMPS"],"trace_rate":"1","trace_count":"-1",
    "log_frequency":"0","trace_file":F,"trace_mode":"triton"}, the same for
    a model; trace_rate "0" -> 400 "sample rate must be non-zero", "abc" ->
    400, trace_count "-5" -> 400 "Expecting value >= -1"; log_frequency "3"
    taken and null returned it to "0"; trace_file -> "trace file location
    can not be updated through network protocol" (status 501; anemone 400);
    a model's trace_rate "7" overrode the global one and null cleared it;
    an unknown model -> 400 "Request for unknown model : nope".
    Differences anemone documents: a model's log_frequency is refused
    (Triton takes it), an unknown setting or trace level is 400 (Triton
    ignores both with 200), numbers are taken for strings (Triton: 500)."""
    (addr, path, _) = traced
    http = addr["HTTP"]
    url = f"http://{http}/v2/trace/setting"
    want = {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1", "log_frequency": "0",
            "trace_file": str(path), "trace_mode": "triton"}
    assert requests.get(url).json() == want
    assert requests.get(f"http://{http}/v2/models/plain/trace/setting").json() == want
    for setting, value, words in [("trace_rate", "0", ["trace_rate"]), ("trace_rate", "abc", ["trace_rate", "abc"]),
                                  ("trace_count", "-5", ["trace_count", "-1"])]:
        r = requests.post(url, json={setting: value})
        assert r.status_code == 400 and all(w in r.json()["error"] for w in words), (setting, value, r.text)
    r = requests.post(url, json={"trace_file": str(path) + ".other"})
    assert r.status_code in (400, 501), r.text
    assert r.json()["error"] == "trace file location can not be updated through network protocol"
    assert requests.post(url, json={"log_frequency": "3"}).json()["log_frequency"] == "3"
    assert requests.post(url, json={"log_frequency": None}).json() == want
    m = requests.post(f"http://{http}/v2/models/plain/trace/setting", json={"trace_rate": "7"}).json()
    assert m == dict(want, trace_rate="7")
    assert requests.get(url).json()["trace_rate"] == "1"
    assert requests.post(f"http://{http}/v2/models/plain/trace/setting", json={"trace_rate": None}).json() == want
    r = requests.get(f"http://{http}/v2/models/nope/trace/setting")
    assert r.status_code == 400 and "Request for unknown model : nope" in r.json()["error"], r.text


def test_trace_file_holds_tritons_objects_per_request(traced):
    """docs/OBSERVABILITY.md "Triton's trace files": per request an
    {"id","model_name","model_version"} object and one {"id","timestamps":
    [{"name","ns"}]} object per timestamp, Triton's names in Triton's order.

    tritonserver 2.51 (same flags, `triton,log-frequency=2` so that it wrote
    its files), after an HTTP request, a gRPC one, one whose execute raised
    and 4 concurrent on `dyn`: each traced request had the head object
    (model_version the number 1) and REQUEST_START, QUEUE_START,
    COMPUTE_START, COMPUTE_INPUT_END, COMPUTE_OUTPUT_START, COMPUTE_END,
    REQUEST_END in that order among its protocol timestamps (HTTP_RECV_*,
    GRPC_*, INFER_RESPONSE_COMPLETE: documented as not written) — the
    request that failed in execute included."""
    addr, path, stop = traced
    http, g = addr["HTTP"], addr["gRPC"]
    t0 = time.monotonic_ns()
    assert http_infer(http, "plain", rows(1))[0] == 200
    assert grpc_infer(g, "plain", rows(2))[0] == 200
    assert http_infer(http, "plain", rows(1, -99))[0] == 500
    assert [c for c, _ in concurrently([lambda: http_infer(http, "dyn", rows(1))] * 4)] == [200] * 4
    t1 = time.monotonic_ns()
    stop()
    raw = json.loads(path.read_text())
    for entry in raw:
        assert set(entry) in ({"id", "model_name", "model_version"}, {"id", "timestamps"}), entry
        if "timestamps" in entry:
            assert len(entry["timestamps"]) == 1 and set(entry["timestamps"][0]) == {"name", "ns"}, entry
    traces = trace_file(path)
    assert len(traces) == 7, list(traces)
    assert all(isinstance(i, int) for i in traces)
    models = sorted(head["model_name"] for head, _, _ in traces.values())
    assert models == ["dyn"] * 4 + ["plain"] * 3
    for i, (head, stamps, _) in traces.items():
        assert head["model_version"] == 1 and isinstance(head["model_version"], int), head
        assert [n for n, _ in stamps] == TRITON_NAMES, (i, stamps)
        ns = [v for _, v in stamps]
        assert ns == sorted(ns) and t0 <= ns[0] and ns[-1] <= t1 + 50_000_000, (i, stamps)


def test_requests_refused_before_the_model_leave_no_trace_record(traced):
    """docs/OBSERVABILITY.md: "Each traced inference request" is written;
    silent on refused requests.

    tritonserver 2.51 (`log-frequency=1`), HTTP requests: ok, wrong shape
    (400), ok, malformed JSON (400), ok, unknown model (404), ok: the file
    held the four ok requests with their model records, nothing for the wrong
    shape or the unknown model, and only HTTP_RECV_START/END (no model, no
    REQUEST_START) for the malformed body."""
    addr, path, stop = traced
    http = addr["HTTP"]
    assert http_infer(http, "plain", rows(1))[0] == 200
    assert http_infer(http, "plain", np.ones((1, 5)))[0] == 400
    assert http_infer(http, "plain", rows(1), name="NOPE")[0] == 400
    assert requests.post(f"http://{http}/v2/models/plain/infer", data="{bad").status_code == 400
    assert http_infer(http, "nope", rows(1))[0] == 404
    assert http_infer(http, "plain", rows(1))[0] == 200
    stop()
    traces = trace_file(path)
    heads = [head.get("model_name") for head, _, _ in traces.values() if head]
    assert heads == ["plain", "plain"], [(h, [n for n, _ in s]) for h, s, _ in traces.values()]
