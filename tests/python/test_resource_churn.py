"""Nothing leaks over a long life: every cycle a user can repeat leaves `anemone serve` where it was.

A production server runs for months. Each test reads the server's process after a warm-up cycle
(VmRSS, Threads and the descriptors of /proc/<pid>/status and /proc/<pid>/fd, the line count of
/proc/<pid>/maps, its children and their states, the files under its own TMPDIR, /metrics), repeats
one cycle N times, waits for the level to settle (the idle trim, a Python process's pipe threads)
and asserts it came back near that baseline. The margins are wide, and N passes each at one unit
leaked per cycle (the constants below say N x the smallest leak caught). Not repeated here:
test_stress_invariants.py (threads/fds/RSS after a 12 s storm of traffic and unloads),
test_os_limits.py (150 tiny models loaded and unloaded twice, Python instances 3 times, a killed
stub).

Models (fixtures/resource_churn/churn_models.py: generated with the onnx package, or Triton's Python
models written as text):
- `mm_*`: Y = sum(X @ W, axis 1), W a 256 x 2048 float constant (2 MiB, so that a model leaked per
  load is 2 MiB or more): `mm_tract`, `mm_ort` pinned to one engine (`backends` + `strict`,
  docs/BACKENDS.md "Selection"), `mm_dyn` with dynamic_batching on the default order (the CPU
  engines compared in a child process at each load), `mm_cached` with the response cache,
  `mm_cfg` loaded with a new JSON config each time, `ver_mm` deployed as a new version each time;
- `py_pair` (Python, S = A + B, 2 instances), `py_stream` (decoupled: N responses OUT = V * (i + 1),
  DELAY_MS apart, stopping once cancelled), `py_slow` (S = 2 A after 1 s), `py_fail` (initialize
  raises), `bad_onnx` (not an ONNX file);
- `ens_pair`: an ensemble of `ens_first` (mm on tract) and `ens_second` (x 2 on ONNX Runtime);
- `seq_state`, `seq_idle`: sequence models whose implicit state is 256 KiB / 128 KiB per sequence;
- `per_shape`: X [a, b, 256] -> MatMul (a 1 MiB W) -> Reshape to Shape's product -> ReduceSum,
  which tract cannot plan over symbols (`anemone inspect --backends tract-cpu` says
  `anemone.tract.plan: per-shape`): one plan per input shape, each with its own packed W;
- `cache_add`, `add`, `add_any`: A + B; `t00`..`t39`: tiny tract-cpu models.

Every answer is checked against numpy. Where a docstring says Triton 2.51, tritonserver 2.51 (CPU,
Python backend) was run on 2026-12-06 with a Python stand-in of the model.
"""
import base64
import http.client
import importlib.util
import json
import os
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from serve_support import stop_serve

# The models, the repositories, the server and the readings of its process (Snap):
# fixtures/resource_churn/churn_models.py (and the model.py files there).
_spec = importlib.util.spec_from_file_location(
    "churn_models", Path(__file__).resolve().parent / "fixtures" / "resource_churn" / "churn_models.py")
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)
W, W_SHAPE, SEQ_IDLE_US, TRACT_MANY = models.W, models.W_SHAPE, models.SEQ_IDLE_US, models.TRACT_MANY
Served, children = models.Served, models.children  # a server with a TMPDIR of its own; {child pid: state}

MIB = 1024 * 1024

# Margins, each passed by N x the smallest per-cycle leak it is meant to catch.
THREADS_MARGIN = 10    # 1 thread a cycle over 11 cycles or more
FDS_MARGIN = 16        # 1 descriptor a cycle over 17 or more
MAPS_MARGIN = 40       # 1 mapping a cycle over 41 or more (a thread's stack is 2)
RSS_MARGIN = 40 * MIB  # a 2 MiB model a cycle over 21 or more
ONNX_CYCLES = 40       # x 2 MiB = 80 MiB for a model leaked per load
SEQ_CYCLES = 60        # x 4 sequences x 256 KiB = 60 MiB if states outlived their model
CHILD_CYCLES = 24      # loads comparing the engines in a child (~0.15 s each): 48 MiB, 24 processes
PY_CYCLES = 18         # loads of 2 Python processes (~0.45 s each on 2 cores): 18 > FDS_MARGIN

# ---------------------------------------------------------------- the server and /proc


def past_margins(base, now, rss_margin=RSS_MARGIN):
    """What passed the margins from `base` to `now` (two readings of the process)."""
    out = [f"{what} {a} -> {b}" for what, a, b, margin in (
        ("threads", base.threads, now.threads, THREADS_MARGIN), ("fds", base.fds, now.fds, FDS_MARGIN),
        ("maps", base.maps, now.maps, MAPS_MARGIN)) if b > a + margin]
    if now.rss > base.rss + rss_margin:
        out.append(f"rss {base.rss / MIB:.1f} -> {now.rss / MIB:.1f} MiB")
    if "Z" in now.kids.values() or set(now.kids) - set(base.kids):
        out.append(f"children {base.kids} -> {now.kids}")
    if set(now.tmpfiles) - set(base.tmpfiles):
        out.append(f"files left under TMPDIR: {sorted(set(now.tmpfiles) - set(base.tmpfiles))[:10]}")
    return out


def baseline(srv):
    """A reading once the server has gone quiet after the warm-up cycle."""
    time.sleep(0.5)
    return srv.snap()


def settled(srv, base, rss_margin=RSS_MARGIN, seconds=12):
    """Waits until the server is back within the margins of `base` (the idle trim gives pages back
    after a whole idle second: docs/PERFORMANCE.md "After real requests"; a Python process's pipe
    threads end a moment after it); returns what is still past them at the deadline, and the
    last reading."""
    deadline = time.time() + seconds
    while True:
        now = srv.snap()
        problems = past_margins(base, now, rss_margin)
        if not problems or time.time() > deadline:
            return problems, now
        time.sleep(0.3)


def assert_back(srv, base, what, rss_margin=RSS_MARGIN, seconds=12):
    problems, now = settled(srv, base, rss_margin, seconds)
    assert not problems, f"after {what}: {problems}\nbase {base}\nnow  {now}"


def series_of(metrics, model):
    """The model's series, but `anemone_model_state`, which follows the repository index (an
    unloaded model of the repository is listed there, UNAVAILABLE, as in Triton)."""
    return [line for line in metrics.splitlines()
            if not line.startswith(("#", "anemone_model_state{")) and f'model="{model}"' in line]


def without_series(srv, *names, seconds=5, keep=lambda line: False):
    """/metrics once it has no series of the models `names` but those `keep` keeps (the health
    monitor forgets an unloaded model at its next look, every second); fails naming what stayed."""
    deadline = time.time() + seconds
    while True:
        metrics = srv.metrics()
        left = [line for name in names for line in series_of(metrics, name) if not keep(line)]
        if not left:
            return metrics
        assert time.time() < deadline, f"{names}: /metrics still has {left[:6]}"
        time.sleep(0.3)


# ---------------------------------------------------------------- requests


def mm_reference(x):
    return (x.astype(np.float64) @ W.astype(np.float64)).sum(axis=1, keepdims=True)


def infer_json(srv, model, inputs, parameters=None):
    body = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": dt, "data": a.ravel().tolist()}
                       for n, a, dt in inputs]}
    if parameters:
        body["parameters"] = parameters
    return srv.post(f"/v2/models/{model}/infer", body)


def check_mm(srv, model, seed=0, output="Y", factor=1.0, rows=2):
    x = np.random.default_rng(seed).standard_normal((rows, 256)).astype(np.float32)
    r = infer_json(srv, model, [("X", x, "FP32")])
    assert r.status_code == 200, (model, r.status_code, r.text)
    out = {o["name"]: o for o in r.json()["outputs"]}[output]
    np.testing.assert_allclose(np.array(out["data"]).reshape(rows, 1), factor * mm_reference(x), rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------- explicit-mode churn


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """Explicit model control, nothing loaded at start, a 256 KiB response cache."""
    tmp = tmp_path_factory.mktemp("churn")
    served = Served(models.churn_repository(tmp / "repo"), tmp, "--model-control-mode", "explicit",
                    "--cache-config", "local,size=256KiB")
    yield served
    stop_serve(served.proc)


def churn(srv, name, one_cycle, cycles):
    """A warm-up cycle, the baseline, `cycles` cycles, then: back within the margins; /metrics with
    no series of the unloaded model and no larger than at the baseline (+2 KB); the model's
    statistics gone from GET /v2/models/stats; the server live."""
    one_cycle(0)
    base, base_metrics = baseline(srv), srv.metrics()
    for i in range(1, cycles + 1):
        one_cycle(i)
    assert_back(srv, base, f"{cycles} cycles of {name}")
    metrics = without_series(srv, name)
    assert len(metrics) <= len(base_metrics) + 2048, (len(base_metrics), len(metrics))
    assert name not in [s["name"] for s in srv.get("/v2/models/stats").json()["model_stats"]]
    assert srv.proc.poll() is None and srv.get("/v2/health/live").status_code == 200


def load_infer_unload(srv, name, check, config=None):
    def one(i):
        srv.load(name, config(i) if config else None)
        check(i)
        stats = srv.stats(name)
        assert [s["inference_stats"]["success"]["count"] for s in stats] == [1], \
            f"cycle {i}: a fresh load of {name} answered one request; its statistics say {stats}"
        srv.unload(name)
    return one


@pytest.mark.parametrize("name", ["mm_tract", "mm_ort"])
def test_onnx_model_load_infer_unload_cycles_give_everything_back(srv, name):
    """docs/BACKENDS.md "Selection" (`backends` + `strict` pin a model's engine): 40 x (load, one
    request checked, statistics of the fresh load = 1 success, unload) on each CPU engine; then the
    levels, /metrics and the statistics list as at the baseline. Triton 2.51 (py_pair stand-in, 3
    cycles): the statistics start afresh at each load (success 1 each time), GET stats of the
    unloaded model is 400 and the list is empty; its nv_inference_* series stay on /metrics after
    the unload (anemone drops its own; test_os_limits.py checks it for 150 models)."""
    churn(srv, name, load_infer_unload(srv, name, lambda i: check_mm(srv, name, i)), ONNX_CYCLES)


def comparisons(metrics):
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^anemone_engine_comparisons_total\{where="(\w+)"\} (\S+)$', metrics, re.M)}


def test_model_compared_in_a_child_at_each_load_leaves_no_child_or_file(srv):
    """docs/BACKENDS.md "Where the CPU engines are compared": `mm_dyn` (dynamic_batching, default
    engine order) is timed on both CPU engines in a child process at each load. 30 loads: each
    comparison ran in a child (anemone_engine_comparisons_total{where="child"} +31, none fell
    back), no child or zombie and no file under TMPDIR is left, and the levels come back."""
    before = comparisons(srv.metrics())
    churn(srv, "mm_dyn", load_infer_unload(srv, "mm_dyn", lambda i: check_mm(srv, "mm_dyn", i)), CHILD_CYCLES)
    after = comparisons(srv.metrics())
    assert after.get("child", 0) - before.get("child", 0) == CHILD_CYCLES + 1, (before, after)
    assert after.get("fell_back", 0) == before.get("fell_back", 0), (before, after)


def test_response_cache_model_cycles_start_each_load_with_no_answer_cached(srv):
    """SERVING.md "Response cache" (a model loaded again never answers from what the model it
    replaced cached): 40 x (load `mm_cached`, the same request twice, unload): on each fresh load
    the first is a miss and the second a hit (statistics 1 miss, 1 hit, 2 successes), the cache
    stays within its 256 KiB (anemone_cache_bytes), and the levels come back."""
    def one(i):
        srv.load("mm_cached")
        for _ in range(2):
            check_mm(srv, "mm_cached", 7, rows=1)
        s = srv.stats("mm_cached")[0]["inference_stats"]
        assert (s["cache_miss"]["count"], s["cache_hit"]["count"], s["success"]["count"]) == (1, 1, 2), (i, s)
        srv.unload("mm_cached")
    churn(srv, "mm_cached", one, ONNX_CYCLES)
    assert cache_figures(srv.metrics())["bytes"] <= 256 * 1024


def test_loads_with_a_changed_config_each_time_give_everything_back(srv):
    """SERVING.md "Model control" (a load with a config override loads the model again): 40 x
    (load `mm_cfg` with a JSON `config` whose max_batch_size (1..8), instance count (1..3) and
    dynamic_batching change each time, GET config saying so, one request checked, unload)."""
    def config(i):
        cfg = {"name": "mm_cfg", "platform": "onnxruntime_onnx", "max_batch_size": 1 + i % 8,
               "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [256]}],
               "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}],
               "instance_group": [{"count": 1 + i % 3, "kind": "KIND_CPU"}],
               "parameters": {"backends": {"string_value": "tract-cpu"}, "strict": {"string_value": "true"}}}
        if i % 2:
            cfg["dynamic_batching"] = {"max_queue_delay_microseconds": 100 * i}
        return cfg

    def check(i):
        got = srv.get("/v2/models/mm_cfg/config").json()
        assert got["max_batch_size"] == 1 + i % 8, got
        assert sum(g["count"] for g in got["instance_group"]) == 1 + i % 3, got
        assert ("dynamic_batching" in got) == bool(i % 2), got
        check_mm(srv, "mm_cfg", i, rows=1)
    churn(srv, "mm_cfg", load_infer_unload(srv, "mm_cfg", check, config), ONNX_CYCLES)


def test_python_model_with_two_instances_cycles_leave_no_process_pipe_or_thread(srv):
    """SERVING.md "Python models" (a process per instance; "a model that unloads ... takes its
    metrics with it"): 18 x (load `py_pair`, its 2 processes there, one request checked and counted
    in its custom metric churn_pair_requests_total, a series per process, unload; 60 cycles would
    take 25 s of CI's 2 cores). Each cycle's processes are gone after it (no zombie), no series
    of the custom family stays, and fds/threads/maps come back. Triton 2.51 (the same model.py, 3
    cycles) keeps the custom series of every unloaded process: 2 more on /metrics at each load."""
    a, b = np.arange(4, dtype=np.float32).reshape(1, 4), np.full((1, 4), 0.5, np.float32)

    def check(i):
        assert len(children(srv.pid)) >= 2
        r = infer_json(srv, "py_pair", [("A", a + i, "FP32"), ("B", b, "FP32")])
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"]).reshape(1, 4), a + i + b)
        counts = re.findall(r"^churn_pair_requests_total\{.*\} (\S+)$", srv.metrics(), re.M)
        assert len(counts) == 2 and sum(map(float, counts)) == 1, (i, counts)
    churn(srv, "py_pair", load_infer_unload(srv, "py_pair", check), PY_CYCLES)
    assert "churn_pair_requests_total{" not in srv.metrics()


def test_ensemble_of_two_cycles_with_unload_dependents_give_everything_back(srv):
    """docs/ENSEMBLES.md "Loading, unloading, readiness": loading `ens_pair` loads `ens_first` and
    `ens_second`; unloading it with `unload_dependents` unloads all three. 40 cycles, each answer
    checked (Z = 2 sum(X @ W)); none of the three is READY after, or keeps a /metrics series."""
    def one(i):
        srv.load("ens_pair")
        check_mm(srv, "ens_pair", i, output="Z", factor=2.0)
        srv.unload("ens_pair", dependents=True)
        index = {m["name"]: m.get("state") for m in srv.post("/v2/repository/index").json()}
        assert [index.get(n) for n in ("ens_pair", "ens_first", "ens_second")].count("READY") == 0, index
    churn(srv, "ens_pair", one, ONNX_CYCLES)
    without_series(srv, "ens_first", "ens_second")


def test_a_new_version_deployed_at_each_load_leaves_no_old_version_behind(srv):
    """SERVING.md "Model control" (a changed model loads again) and `version_policy` (latest 1):
    30 x (rename `ver_mm`'s version folder to the next number, load): the metadata and statistics
    name the new version alone and its answer is checked. Then /metrics names no old version (the
    health monitor's series included) and the levels come back: a deploy a day for a month."""
    folder = srv.repo / "ver_mm"

    def one(v):
        if v > 1:
            (folder / str(v - 1)).rename(folder / str(v))
        srv.load("ver_mm")
        assert srv.get("/v2/models/ver_mm").json()["versions"] == [str(v)]
        check_mm(srv, "ver_mm", v)
        assert [s["version"] for s in srv.stats("ver_mm")] == [str(v)]
    one(1)
    base, base_metrics = baseline(srv), srv.metrics()
    for v in range(2, 32):
        one(v)
    without_series(srv, "ver_mm", keep=lambda line: 'version="' not in line or 'version="31"' in line)
    assert_back(srv, base, "30 versions")
    assert len(srv.metrics()) <= len(base_metrics) + 2048
    srv.unload("ver_mm")


def test_failing_loads_repeated_leave_no_process_or_descriptor(srv):
    """SERVING.md "Model control" (a model that fails to load is UNAVAILABLE with its reason): 18 x
    (3 loads of `bad_onnx`, not an ONNX file, and 1 of `py_fail`, whose initialize raises), each
    answered 400 with the reason, the index saying UNAVAILABLE with it. Each failed Python process
    is reaped (no child, no zombie), and descriptors/threads/maps/RSS come back."""
    def one(i):
        for name, times, words in (("bad_onnx", 3, "ONNX"), ("py_fail", 1, "initialize fails on purpose")):
            for _ in range(times):
                r = srv.post(f"/v2/repository/models/{name}/load", timeout=120)
                assert r.status_code == 400 and words in r.json()["error"], (name, r.status_code, r.text)
        row = {m["name"]: m for m in srv.post("/v2/repository/index").json()}["py_fail"]
        assert row["state"] == "UNAVAILABLE" and "initialize" in row["reason"], row
    one(0)
    base = baseline(srv)
    for i in range(1, PY_CYCLES + 1):
        one(i)
    assert_back(srv, base, f"{4 * PY_CYCLES} failed loads")


def stream_once(srv, n=3, value=1.5, delay_ms=0, cancel_after=None):
    """One request on a fresh gRPC stream to `py_stream`: the (IDX, OUT) pairs received. With
    `cancel_after`, the stream is dropped (stop_stream cancelling it) once that many came."""
    got, done = [], threading.Event()

    def callback(result, error):
        if error is not None:
            got.append(("error", str(error)))
        elif not result.get_response().outputs:  # the empty final response
            done.set()
        else:
            got.append((int(result.as_numpy("IDX")[0]), float(result.as_numpy("OUT")[0])))
        if error is not None or len(got) >= (cancel_after or n):
            done.set()

    client = grpcclient.InferenceServerClient(srv.grpc)
    try:
        client.start_stream(callback)
        inputs = [grpcclient.InferInput(name, [1], dt) for name, dt in (("N", "INT32"), ("V", "FP32"), ("DELAY_MS", "INT32"))]
        for i, v in zip(inputs, (np.array([n], np.int32), np.array([value], np.float32), np.array([delay_ms], np.int32))):
            i.set_data_from_numpy(v)
        client.async_stream_infer("py_stream", inputs, enable_empty_final_response=True)
        assert done.wait(30), f"no end of stream: {got}"
        client.stop_stream(cancel_requests=cancel_after is not None)
    finally:
        client.close()
    return got


def test_decoupled_python_model_cycles_leave_no_process_stream_or_thread(srv):
    """SERVING.md "Python models" (decoupled, streamed over gRPC ModelStreamInfer): 18 x (load
    `py_stream`, one stream of 3 responses OUT = V (i + 1) checked, unload)."""
    def one(i):
        srv.load("py_stream")
        got = stream_once(srv, 3, value=i + 0.5)
        assert got == [(k, (i + 0.5) * (k + 1)) for k in range(3)], got
        srv.unload("py_stream")
    churn(srv, "py_stream", one, PY_CYCLES)


def seq_infer(srv, model, sid, value, start=False, end=False):
    params = {"sequence_id": sid, "sequence_start": start}
    if end:
        params["sequence_end"] = True
    return infer_json(srv, model, [("INPUT", np.array([[value]], np.int32), "INT32")], parameters=params)


def test_sequence_model_unloaded_with_open_sequences_gives_their_state_back(srv):
    """SERVING.md "Sequence models" (implicit state kept by the server per sequence; 256 KiB here):
    60 x (load `seq_state`, open 4 sequences of 2 requests each and never END them, unload): the
    running sums are right (the state starts at zeros on each fresh load), and the states go with
    the model (60 x 4 x 256 KiB = 60 MiB if they outlived it)."""
    def one(i):
        srv.load("seq_state")
        for sid in range(1, 5):
            for k, v in enumerate((sid, i)):
                r = seq_infer(srv, "seq_state", sid, v, start=k == 0)
                assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == [float(sid + i)], (i, sid, r.json())
        srv.unload("seq_state")
    churn(srv, "seq_state", one, SEQ_CYCLES)


@pytest.fixture(scope="module")
def abandoned(srv):
    """500 sequences of `seq_idle` (128 KiB of state each: 62.5 MiB) started and never ended; its
    idle time (6 s) waited; 500 more started and abandoned the same way."""
    srv.load("seq_idle")
    idle = SEQ_IDLE_US["seq_idle"] / 1e6
    try:
        assert seq_infer(srv, "seq_idle", 9999, 1, start=True, end=True).status_code == 200
        out = {"base": baseline(srv)}

        def start_500(offset):
            with ThreadPoolExecutor(4) as ex:
                return list(ex.map(lambda sid: seq_infer(srv, "seq_idle", sid, 1, start=True).status_code,
                                   range(offset + 1, offset + 501)))
        t = time.time()
        out["codes1"] = start_500(0)
        out["held1"] = srv.snap()
        # Started within the idle time, none of them idles out before the last has started.
        assert time.time() - t < idle, f"500 starts took {time.time() - t:.1f} s, more than the idle time"
        time.sleep(idle + 0.5)
        out["closed"] = [(r.status_code, r.text) for r in (seq_infer(srv, "seq_idle", sid, 1) for sid in (1, 250, 500))]
        out["idle_problems"], out["idle1"] = settled(srv, out["base"], rss_margin=24 * MIB, seconds=3)
        out["codes2"] = start_500(1000)
        out["held2"] = srv.snap()
        yield out
    finally:
        srv.unload("seq_idle")


def test_abandoned_sequences_are_closed_after_the_idle_time_and_new_ones_start(abandoned):
    """SERVING.md "Sequence models": a sequence is closed after max_sequence_idle_microseconds (6 s
    here) without a request, and its next request must START it again (400 naming START, Triton's
    rule). 500 sequences started and abandoned: once idle each is closed, and 500 new ones start
    (200 each, no 503)."""
    for key in ("codes1", "codes2"):
        assert abandoned[key] == [200] * 500, {c: abandoned[key].count(c) for c in set(abandoned[key])}
    for status, text in abandoned["closed"]:
        assert status == 400 and "START" in json.loads(text)["error"], (status, text)


def test_abandoned_sequences_memory_stays_bounded_over_rounds(abandoned):
    """Two rounds of 500 abandoned sequences (62.5 MiB of state a round): the states are held while
    the sequences are open (RSS up by 32 MiB or more), and the second round's replace the first's
    rather than add to them (RSS within 24 MiB of the first round's)."""
    base, held1, held2 = abandoned["base"], abandoned["held1"], abandoned["held2"]
    assert held1.rss >= base.rss + 32 * MIB, (base, held1)
    assert held2.rss <= held1.rss + 24 * MIB, (held1, held2)


def test_abandoned_sequences_give_their_state_back_once_idle(abandoned):
    """A sequence closed by the idle time is closed (above), so its implicit state should go: 500
    abandoned sequences, the idle time waited, no sequence started since: RSS should come back
    within 24 MiB of the level before them. Until 2026-12-06 it stayed 60 MiB up: anemone-runtime's
    sequence table swept idle sequences only at a START once it held twice its size at the last
    sweep, so a burst of N abandoned sequences kept N states until about N more started (ended
    sequences give theirs back at once: +4 MiB for 500 with END); a sweeper now runs every second. Triton 2.51 keeps implicit state per batch
    slot of an instance (its docs/user_guide/implicit_state_management.md), so abandoned sequences
    hold no more than its slots (not run: the peer has no ONNX Runtime backend)."""
    assert not abandoned["idle_problems"], \
        f"{abandoned['idle_problems']}\nbase {abandoned['base']}\nheld {abandoned['held1']}\nidle {abandoned['idle1']}"


def test_tract_models_share_their_engine_threads(srv):
    """Until 2026-12-06 each loaded tract-cpu model got a pool of `threads` threads (one per core):
    40 tract-cpu models added 80 threads on 2 cores (300 added 600), so a server of many small
    models ran out of threads long before memory. docs/BACKENDS.md "tract-cpu": models asking for
    the same thread count share one pool. N models must add far fewer than N threads (at most N / 4
    here). Unloaded, the threads go (test_os_limits.py)."""
    base = srv.snap()
    names = [f"t{i:02d}" for i in range(TRACT_MANY)]
    try:
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(srv.load, names))
        loaded = srv.snap()
    finally:
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(srv.unload, names))
    assert loaded.threads - base.threads <= TRACT_MANY // 4, \
        f"{TRACT_MANY} tract-cpu models added {loaded.threads - base.threads} threads"


def test_forty_models_loaded_and_unloaded_8_times_come_back(srv):
    """test_os_limits.py loads and unloads 150 tiny models twice and reads threads and descriptors;
    this does it 8 times with 40 (`t00`..`t39`, tract-cpu, 4 loads at a time, one answer checked
    each time) and reads maps and RSS too: 320 loads, so one mapping, thread or descriptor kept
    per load passes its margin many times over, and the 8th cycle ends where the 1st did."""
    names = [f"t{i:02d}" for i in range(TRACT_MANY)]

    def one(i):
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(srv.load, names))
        a = np.full((1, 4), i, np.float32)
        r = srv.post(f"/v2/models/{names[i % TRACT_MANY]}/infer", add_body(a, a))
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == (a + a).ravel().tolist(), r.text
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(srv.unload, names))
    one(0)
    base = baseline(srv)
    for i in range(1, 9):
        one(i)
    assert_back(srv, base, "8 cycles of 40 models")
    without_series(srv, *names)


def test_per_shape_plans_stay_within_the_plan_cache(srv):
    """docs/BACKENDS.md "How a model is prepared": a model tract cannot plan over symbols is planned
    per input shape, and the 8 most recently used plans are kept (`tract-cpu.plan_cache`), each
    with its own packed weights (1 MiB here). 300 distinct shapes [a, b, 256] (a 1..20, b 1..15),
    each answer checked: unbounded plans would hold 300 MiB; RSS stays within 40 MiB of the level
    after the first 20 shapes."""
    srv.load("per_shape")
    client = httpclient.InferenceServerClient(srv.http)
    w_sum = W_SHAPE.astype(np.float64).sum(axis=1)

    def ask(shape, seed):
        x = np.random.default_rng(seed).standard_normal((*shape, 256)).astype(np.float32)
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        z = client.infer("per_shape", [inp]).as_numpy("Z")
        np.testing.assert_allclose(float(z), float((x.astype(np.float64) @ w_sum).sum()), rtol=1e-3, atol=1e-2)
    try:
        shapes = [(a, b) for a in range(1, 21) for b in range(1, 16)]
        for i, shape in enumerate(shapes[:20]):
            ask(shape, i)
        base = baseline(srv)
        for i, shape in enumerate(shapes):
            ask(shape, i)
        assert_back(srv, base, "300 shapes")
    finally:
        client.close()
        srv.unload("per_shape")


def cache_figures(metrics):
    return {name: float(re.search(rf"^anemone_cache_{name} (\S+)", metrics, re.M).group(1))
            for name in ("capacity_bytes", "bytes", "entries", "evictions_total")}


def test_response_cache_of_3000_distinct_answers_stays_within_its_size(srv):
    """SERVING.md "Response cache": the bound is the `size` (256 KiB here), an answer counting its
    output bytes (16) plus 128, the least recently used evicted. 3,000 distinct requests to
    `cache_add` (432 KB of answers, over 1,800 entries' worth; each checked): anemone_cache_bytes within the capacity,
    entries within capacity / 144, entries + evictions up by 3,000, the statistics 3,000 misses,
    and the levels back."""
    srv.load("cache_add")
    try:
        base, before = baseline(srv), cache_figures(srv.metrics())
        local = threading.local()

        def ask(i):
            local.s = getattr(local, "s", None) or requests.Session()
            a, b = np.full((1, 4), i, np.float32), np.arange(4, dtype=np.float32).reshape(1, 4)
            r = local.s.post(srv.url("/v2/models/cache_add/infer"), json=add_body(a, b), timeout=60)
            assert r.status_code == 200 and r.json()["outputs"][0]["data"] == (a + b).ravel().tolist(), r.text
        with ThreadPoolExecutor(4) as ex:
            list(ex.map(ask, range(3000)))
        after = cache_figures(srv.metrics())
        assert after["capacity_bytes"] == 256 * 1024 and after["bytes"] <= after["capacity_bytes"], after
        assert after["entries"] <= after["capacity_bytes"] // 144, after
        added = after["entries"] - before["entries"] + after["evictions_total"] - before["evictions_total"]
        assert added == 3000, (before, after)
        s = srv.stats("cache_add")[0]["inference_stats"]
        assert (s["cache_miss"]["count"], s["cache_hit"]["count"], s["success"]["count"]) == (3000, 0, 3000), s
        assert_back(srv, base, "3,000 cached answers")
    finally:
        srv.unload("cache_add")


# ---------------------------------------------------------------- connections, shm, settings


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    """Model control none: `add` (batch 8), `add_any` ([-1, 4], no batching), both on tract-cpu,
    `py_stream`, `py_slow`; Triton's trace files (--trace-file) and --log-file."""
    tmp = tmp_path_factory.mktemp("conn")
    repo = models.conn_repository(tmp / "repo")
    (tmp / "trace").mkdir()
    served = Served(repo, tmp, "--trace-file", str(tmp / "trace" / "trace.json"), "--log-file", str(tmp / "log.txt"))
    served.trace_dir, served.log_file = tmp / "trace", tmp / "log.txt"
    yield served
    stop_serve(served.proc)


def add_body(a, b):
    return {"inputs": [{"name": n, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
                       for n, x in (("A", a), ("B", b))]}


def check_add(srv, seed=0):
    a = np.random.default_rng(seed).standard_normal((1, 4)).astype(np.float32)
    r = srv.post("/v2/models/add/infer", add_body(a, a))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"]).reshape(1, 4), a + a, rtol=1e-6)


def in_flight(srv, model):
    m = re.search(rf'^anemone_inference_requests_in_flight{{[^}}]*model="{model}"[^}}]*}} (\S+)$', srv.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


def open_files(srv):
    return [os.readlink(f"/proc/{srv.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{srv.pid}/fd")]


def reset_on_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_500_http_connections_closed_or_reset_give_back_their_descriptors(conn):
    """500 HTTP/1.1 connections, one inference each (checked): 250 closed after the answer, 150
    reset after it (SO_LINGER 0: an RST), 100 reset as soon as the request is sent. Descriptors,
    threads and RSS come back (a descriptor per connection would be +500), nothing stays in
    flight, and the server answers after."""
    check_add(conn)
    base = baseline(conn)
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    host, port = conn.http.rsplit(":", 1)
    for i in range(500):
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("POST", "/v2/models/add/infer", json.dumps(add_body(a, a)), {"Content-Type": "application/json"})
        if i < 400:
            r = c.getresponse()
            assert r.status == 200 and json.loads(r.read())["outputs"][0]["data"] == (a + a).ravel().tolist()
        if i >= 250:
            reset_on_close(c.sock)
        c.close()
    assert_back(conn, base, "500 connections")
    assert in_flight(conn, "add") == 0
    check_add(conn, 1)


def test_clients_hanging_up_mid_body_leave_nothing_behind(conn):
    """60 clients announce an 8 MiB JSON inference body (Content-Length) and hang up after 1 MiB
    (half with an RST). Nothing is admitted (in flight 0), the levels come back (8 MiB kept per
    client would be 480 MiB), and then 4 whole 8 MiB bodies at once are answered and checked: the
    decoding budget (RELIABILITY.md "Request memory") was not kept by the hang-ups."""
    check_add(conn)
    base = baseline(conn)
    host, port = conn.http.rsplit(":", 1)
    partial_body = b'{"inputs": [{"name": "A", "data": [' + b"0.25, " * (MIB // 6)
    for i in range(60):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(f"POST /v2/models/add_any/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {8 * MIB}\r\n\r\n".encode() + partial_body)
        if i % 2:
            reset_on_close(s)
        s.close()
    assert_back(conn, base, "60 hang-ups")
    assert in_flight(conn, "add_any") == 0
    rows = 8 * MIB // 2 // 4 // 20  # about 20 bytes of JSON a value
    big = np.random.default_rng(5).standard_normal((rows, 4)).astype(np.float32)

    def ask(_):
        r = requests.post(conn.url("/v2/models/add_any/infer"), json=add_body(big, big), timeout=120)
        assert r.status_code == 200, r.text[:300]
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(rows, 4), big + big, rtol=1e-6)
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(ask, range(4)))


def test_300_grpc_channels_opened_and_closed_give_back_their_descriptors(conn):
    """300 gRPC clients (a channel each: an HTTP/2 connection), one inference each checked, then
    closed. Descriptors, threads and RSS come back."""
    a = np.arange(4, dtype=np.float32).reshape(1, 4)

    def one(i):
        client = grpcclient.InferenceServerClient(conn.grpc)
        try:
            inputs = [grpcclient.InferInput(n, [1, 4], "FP32") for n in "AB"]
            inputs[0].set_data_from_numpy(a + i)
            inputs[1].set_data_from_numpy(a)
            np.testing.assert_array_equal(client.infer("add", inputs).as_numpy("S"), a + i + a)
        finally:
            client.close()
    one(0)
    base = baseline(conn)
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(one, range(300)))
    assert_back(conn, base, "300 gRPC channels")


def python_threads(srv, model):
    """Threads of the server's Python process serving `model` (the senders' threads are there)."""
    for pid in children(srv.pid):
        try:
            if f"/{model}/1/model.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
        except OSError:
            continue
    raise AssertionError(f"no process of {model}")


def dropped_streams(conn, drop, count):
    """`count` calls of `drop(i)` (each a stream of `py_stream` dropped early), 4 at a time; then
    nothing is in flight, the senders' threads stop (is_cancelled()), the statistics count each
    request once (success + fail up by `count`), and the server's levels come back."""
    assert stream_once(conn, 3, 2.0) == [(0, 2.0), (1, 4.0), (2, 6.0)]
    base, py_base = baseline(conn), python_threads(conn, "py_stream")
    counted = lambda: sum(srv_stat["inference_stats"][k]["count"]  # noqa: E731
                          for srv_stat in conn.stats("py_stream") for k in ("success", "fail"))
    before = counted()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(drop, range(count)))
    deadline = time.time() + 15
    while (in_flight(conn, "py_stream") or python_threads(conn, "py_stream") > py_base + 2) and time.time() < deadline:
        time.sleep(0.3)
    assert in_flight(conn, "py_stream") == 0
    assert python_threads(conn, "py_stream") <= py_base + 2, (py_base, python_threads(conn, "py_stream"))
    assert counted() - before == count, (before, counted())
    assert_back(conn, base, f"{count} dropped streams")
    assert stream_once(conn, 4, 0.5) == [(k, 0.5 * (k + 1)) for k in range(4)]


def test_200_grpc_streams_dropped_mid_stream_leave_nothing_behind(conn):
    """200 gRPC streams to `py_stream` (50 responses 20 ms apart asked), each dropped after its
    first response (checked: OUT = V) by stop_stream(cancel_requests=True): see dropped_streams."""
    def drop(i):
        got = stream_once(conn, 50, value=float(i), delay_ms=20, cancel_after=1)
        assert got[:1] == [(0, float(i))], got
    dropped_streams(conn, drop, 200)


def test_generate_streams_dropped_after_their_first_event_leave_nothing_behind(conn):
    """SERVING.md "generate and generate_stream" (Server-Sent Events over HTTP): 100 streams of
    `py_stream` (50 events 20 ms apart asked), each connection closed after its first event
    (checked: OUT = V): see dropped_streams."""
    def drop(i):
        with requests.post(conn.url("/v2/models/py_stream/generate_stream"), stream=True, timeout=30,
                           json={"N": 50, "V": float(i), "DELAY_MS": 20}) as r:
            assert r.status_code == 200, r.text
            line = next(line for line in r.iter_lines() if line.startswith(b"data:"))
            event = json.loads(line[5:])
            assert (event["IDX"], event["OUT"]) == (0, float(i)), event
    dropped_streams(conn, drop, 100)


def test_grpc_calls_cancelled_while_uploading_a_large_body_leave_nothing_behind(conn):
    """gRPC clients that give up on an 8 MiB ModelInfer call: 40 calls to `add_any`, 20 cancelled by
    the client 5 ms after it began, 20 with a 5 ms deadline. Each ends (CANCELLED or
    DEADLINE_EXCEEDED; or answered and checked, if it won the race), nothing stays in flight, the
    levels come back, and whole 8 MiB calls are answered after."""
    rows = MIB // 4  # A and B: 4 MiB each
    big = np.random.default_rng(9).standard_normal((rows, 4)).astype(np.float32)
    client = grpcclient.InferenceServerClient(conn.grpc)

    def inputs():
        ins = [grpcclient.InferInput(n, [rows, 4], "FP32") for n in "AB"]
        for i in ins:
            i.set_data_from_numpy(big)
        return ins
    try:
        np.testing.assert_array_equal(client.infer("add_any", inputs()).as_numpy("S"), big + big)
        base = baseline(conn)
        for i in range(40):
            done, outcome = threading.Event(), []
            if i % 2:
                try:
                    outcome.append(client.infer("add_any", inputs(), client_timeout=0.005))
                except Exception as e:  # noqa: BLE001 -- the deadline's error, checked below
                    outcome.append(e)
                done.set()
            else:
                ctx = client.async_infer("add_any", inputs(), lambda result, error: (outcome.append(error or result), done.set()))
                time.sleep(0.005)
                ctx.cancel()
            assert done.wait(30), f"call {i} never ended"
            if isinstance(outcome[0], Exception):
                assert re.search("CANCELLED|DEADLINE_EXCEEDED", str(outcome[0])), str(outcome[0])[:300]
            else:
                np.testing.assert_array_equal(outcome[0].as_numpy("S"), big + big)
        deadline = time.time() + 10
        while in_flight(conn, "add_any") and time.time() < deadline:
            time.sleep(0.3)
        assert in_flight(conn, "add_any") == 0
        assert_back(conn, base, "40 abandoned 8 MiB calls")
        for _ in range(3):
            np.testing.assert_array_equal(client.infer("add_any", inputs()).as_numpy("S"), big + big)
    finally:
        client.close()


def shm_lines(snap, key):
    return [line for line in snap.maps_text.splitlines() if f"/dev/shm/{key.lstrip('/')}" in line]


def test_system_shared_memory_register_unregister_200_times_unmaps_each_region(conn):
    """SERVING.md "Shared memory" (a region is mapped once at registration): 200 x (create an
    object, register it (HTTP and gRPC in turn), one inference with its inputs and output in the
    region, checked, unregister, destroy). Then no mapping of the 200 keys is left in
    /proc/<pid>/maps, the status lists none, and descriptors/maps/RSS come back."""
    hc, gc = httpclient.InferenceServerClient(conn.http), grpcclient.InferenceServerClient(conn.grpc)
    tag = f"churn_{os.getpid()}_"

    def one(i):
        key, name = f"/{tag}{i}", f"r{i}"
        handle = shm.create_shared_memory_region(name, key, 48)
        try:
            a, b = np.full((1, 4), i, np.float32), np.arange(4, dtype=np.float32).reshape(1, 4)
            shm.set_shared_memory_region(handle, [a, b])
            client, mod = (hc, httpclient) if i % 2 else (gc, grpcclient)
            client.register_system_shared_memory(name, key, 48)
            x, y, out = mod.InferInput("A", [1, 4], "FP32"), mod.InferInput("B", [1, 4], "FP32"), mod.InferRequestedOutput("S")
            for t, offset in ((x, 0), (y, 16), (out, 32)):
                t.set_shared_memory(name, 16, offset)
            client.infer("add", [x, y], outputs=[out])
            np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=32), a + b)
            client.unregister_system_shared_memory(name)
        finally:
            shm.destroy_shared_memory_region(handle)
    try:
        one(10_000)
        base = baseline(conn)
        for i in range(200):
            one(i)
        problems, now = settled(conn, base)
        assert not problems, f"200 regions: {problems}\nbase {base}\nnow  {now}"
        assert [line for line in now.maps_text.splitlines() if tag in line] == []
        assert conn.get("/v2/systemsharedmemory/status").json() == []
    finally:
        gc.close()
        hc.close()


def test_a_region_unregistered_while_its_request_runs_stays_mapped_until_it_ends(conn):
    """SERVING.md "Shared memory" ("A request already using a region keeps it mapped until it
    finishes"): `py_slow` (1 s) reads A from a region and writes S = 2 A into it; the region is
    unregistered 0.3 s into the request. The status lists it no more at once, the request answers
    with S written into the region, and then the server's mapping of it is gone."""
    key, name = f"/churn_{os.getpid()}_slow", "slow_region"
    handle = shm.create_shared_memory_region(name, key, 32)
    client = httpclient.InferenceServerClient(conn.http)
    try:
        a = np.array([[1, -2, 3.5, 4]], np.float32)
        shm.set_shared_memory_region(handle, [a, np.zeros((1, 4), np.float32)])
        client.register_system_shared_memory(name, key, 32)
        assert len(shm_lines(conn.snap(), key)) == 1
        x, out = httpclient.InferInput("A", [1, 4], "FP32"), httpclient.InferRequestedOutput("S")
        x.set_shared_memory(name, 16, 0)
        out.set_shared_memory(name, 16, 16)
        result = {}

        def ask():  # tritonclient's HTTP client (gevent) stays on the thread that made it
            c = httpclient.InferenceServerClient(conn.http, network_timeout=60)
            try:
                result["r"] = c.infer("py_slow", [x], outputs=[out])
            finally:
                c.close()
        t = threading.Thread(target=ask)
        t.start()
        time.sleep(0.3)
        assert conn.post(f"/v2/systemsharedmemory/region/{name}/unregister").status_code == 200
        assert conn.get("/v2/systemsharedmemory/status").json() == []
        t.join(30)
        assert "r" in result, "the request using the unregistered region did not answer"
        np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=16), 2 * a)
        deadline = time.time() + 5
        while shm_lines(conn.snap(), key) and time.time() < deadline:
            time.sleep(0.2)
        assert shm_lines(conn.snap(), key) == [], "the region is still mapped after its request ended"
    finally:
        shm.destroy_shared_memory_region(handle)
        client.close()


def test_cuda_shared_memory_registrations_refused_200_times_leave_nothing(conn):
    """SERVING.md "CUDA shared memory" (the driver is loaded at the first registration; without it,
    registering answers 400 saying so): 200 registrations on this machine without a GPU, each a
    400 naming libcuda; the status lists none, and descriptors/maps/threads/RSS come back (a
    library handle or mapping kept per failed load of the driver would pass them)."""
    body = {"raw_handle": {"b64": base64.b64encode(bytes(64)).decode()}, "device_id": 0, "byte_size": 64}
    r = conn.post("/v2/cudasharedmemory/region/c/register", body)
    assert r.status_code == 400 and "libcuda" in r.json()["error"], r.text
    base = baseline(conn)
    for i in range(200):
        r = conn.post(f"/v2/cudasharedmemory/region/c{i}/register", body)
        assert r.status_code == 400 and "libcuda" in r.json()["error"], r.text
    assert conn.get("/v2/cudasharedmemory/status").json() == []
    assert_back(conn, base, "200 refused CUDA registrations")


def test_trace_settings_toggled_200_times_keep_no_file_open(conn):
    """OBSERVABILITY.md "Triton's trace files" and "Sampling and the trace extension": 100 x (global
    trace_level TIMESTAMPS at rate 1, one request, OFF) and 50 x a model's own level set and
    cleared. A change that ends traces writes them to the next numbered file, so the 100 traced
    requests are in 1 to 100 new files (JSON arrays naming `add` 100 times in all); no trace file
    stays open in the server, and descriptors/threads/RSS come back."""
    check_add(conn)
    base, before = baseline(conn), set(os.listdir(conn.trace_dir))
    for i in range(100):
        assert conn.post("/v2/trace/setting", {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"}).status_code == 200
        check_add(conn, i)
        assert conn.post("/v2/trace/setting", {"trace_level": ["OFF"]}).status_code == 200
    for level, expected in [(["TIMESTAMPS"], ["TIMESTAMPS"]), (None, ["OFF"])] * 50:
        r = conn.post("/v2/models/add/trace/setting", {"trace_level": level})
        assert r.status_code == 200 and r.json()["trace_level"] == expected, r.text
    files = sorted(set(os.listdir(conn.trace_dir)) - before)
    assert 1 <= len(files) <= 100, files
    traced = sum(1 for f in files for r in json.loads((conn.trace_dir / f).read_text()) if r.get("model_name") == "add")
    assert traced == 100, traced
    assert not [f for f in open_files(conn) if str(conn.trace_dir) in f], open_files(conn)
    assert_back(conn, base, "200 trace toggles")


def test_logging_settings_toggled_200_times_keep_one_log_file_open(conn):
    """OBSERVABILITY.md "Changing it while serving": 100 x POST /v2/logging (log_info and
    log_verbose_level on, then off) and 100 x gRPC LogSettings the same, each answer saying the
    new settings, requests in between; then 50 x POST /v2/anemone/config changing log-level,
    max-concurrency and the gates (CONFIGURATION.md "Run-time changes") and 50 x POST
    /v2/logging naming the log file in force. The log file is open once, and
    descriptors/threads/RSS come back."""
    check_add(conn)
    base = baseline(conn)
    gc = grpcclient.InferenceServerClient(conn.grpc)
    try:
        for i in range(50):
            for on in (True, False):
                r = conn.post("/v2/logging", {"log_info": on, "log_verbose_level": int(on)})
                assert r.status_code == 200 and r.json()["log_info"] is on, r.text
                check_add(conn, i)
                got = gc.update_log_settings({"log_info": on, "log_verbose_level": int(on)}, as_json=True)
                assert got["settings"]["log_info"]["bool_param"] is on, got
    finally:
        gc.close()
    for i in range(50):
        on = bool(i % 2)
        r = conn.post("/v2/anemone/config", {"log-level": "debug" if on else "warn", "max-concurrency": 64 + i,
                                             "gate-batching": on, "gate-monitoring": on, "gate-tracing": on})
        assert r.status_code == 200, r.text
        r = conn.post("/v2/logging", {"log_file": str(conn.log_file)})
        assert r.status_code == 200 and r.json()["log_file"] == str(conn.log_file), r.text
    conn.post("/v2/anemone/config", {"log-level": "warn", "max-concurrency": 256, "gate-batching": True,
                                     "gate-monitoring": True, "gate-tracing": True})
    assert open_files(conn).count(str(conn.log_file)) == 1, open_files(conn)
    assert_back(conn, base, "200 logging toggles")
