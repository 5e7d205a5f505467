"""Triton's observability and response-cache QA suites (triton-inference-server/
server qa/ at e1db8a603): L0_response_cache, L0_metrics, L0_response_statistics,
L0_logging, L0_trace, L0_cmdline_trace (test.sh and python tests of each).

The QA's models are ONNX models built here (checked against numpy) or Python
models, with the QA model's name, datatypes, dims and batching. The model.py
files start with the TPEER_SP lines, and `peer=True` swaps ONNX for Python
models, so the same repositories (and these test functions) ran on
tritonserver 2.51 (CPU wheel, 2026-12-05): docstrings say what it answered.
CI has no Triton. Differences docs/ state are asserted as documented; others
are asserted as Triton answers and xfail(strict=True, reason="DEFECT: ...").
"""
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serve_support import ROOT, start_serve, stop_serve, wait_ready

FIXTURES = ROOT / "tests/python/fixtures/triton_qa_observability"
# The Python models (each starts with the TPEER_SP lines the peer needs).
IDENTITY, ADDSUB, PARAMETER, SQUARE = ((FIXTURES / f"{n}.py").read_text()
                                       for n in ("identity", "addsub", "parameter", "square"))


def io(kind, name, dtype, dims):
    return f'{kind} [ {{ name: "{name}" data_type: {dtype} dims: {dims} }} ]\n'


def pair(dtype, dims):
    return "".join(io(k, n, dtype, dims) for k, n in (("input", "INPUT0"), ("input", "INPUT1"),
                                                      ("output", "OUTPUT0"), ("output", "OUTPUT1")))


IDENT = io("input", "INPUT0", "TYPE_FP32", "[ -1 ]") + io("output", "OUTPUT0", "TYPE_FP32", "[ -1 ]")
CACHE_ON = "response_cache { enable: true }\n"
DECOUPLED = "model_transaction_policy { decoupled: True }\n"


def python_model(repo, name, config, source, versions=(1,)):
    for v in versions:
        (repo / name / str(v)).mkdir(parents=True, exist_ok=True)
        (repo / name / str(v) / "model.py").write_text(source)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "python"\n' + config)


def onnx_model(repo, name, dtype, extra="", versions=(1,), peer=False, nop=False):
    """qa_model_repository's onnx_<t>_<t>_<t> (INPUT0, INPUT1 [16] -> sum,
    difference; max_batch_size 8), or with `nop` qa_ensemble_model_repository's
    nop_TYPE_<t>_-1 (both back as they came, dims [-1]); for the peer, a
    Python model of the same I/O (it has no ONNX Runtime backend)."""
    t = {"FP32": ("TYPE_FP32", onnx.TensorProto.FLOAT), "INT32": ("TYPE_INT32", onnx.TensorProto.INT32)}[dtype]
    config = "max_batch_size: 8\n" + pair(t[0], "[ -1 ]" if nop else "[ 16 ]") + extra
    if peer:
        return python_model(repo, name, config, IDENTITY if nop else ADDSUB, versions)
    shape = [None, None if nop else 16]
    ins = [onnx.helper.make_tensor_value_info(n, t[1], shape) for n in ("INPUT0", "INPUT1")]
    outs = [onnx.helper.make_tensor_value_info(n, t[1], shape) for n in ("OUTPUT0", "OUTPUT1")]
    nodes = ([onnx.helper.make_node("Identity", [f"INPUT{k}"], [f"OUTPUT{k}"]) for k in (0, 1)] if nop else
             [onnx.helper.make_node(op, ["INPUT0", "INPUT1"], [f"OUTPUT{k}"]) for k, op in enumerate(("Add", "Sub"))])
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, name, ins, outs),
                                   opset_imports=[onnx.helper.make_operatorsetid("", 13)])
    model.ir_version = 8
    for v in versions:
        (repo / name / str(v)).mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(repo / name / str(v) / "model.onnx"))
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "onnxruntime"\n' + config)


def ensemble(repo, name, models, extra="", dtype="TYPE_FP32"):
    """An ensemble (INPUT0, INPUT1 [16] -> OUTPUT0, OUTPUT1) running `models` one after another."""
    steps, prev = [], ("INPUT0", "INPUT1")
    for k, m in enumerate(models):
        nxt = ("OUTPUT0", "OUTPUT1") if k == len(models) - 1 else (f"t{k}_0", f"t{k}_1")
        steps.append(f'{{ model_name: "{m}" model_version: -1' + "".join(
            f' input_map {{ key: "INPUT{i}" value: "{v}" }}' for i, v in enumerate(prev)) + "".join(
            f' output_map {{ key: "OUTPUT{i}" value: "{v}" }}' for i, v in enumerate(nxt)) + " }")
        prev = nxt
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\n' + pair(dtype, "[ 16 ]")
        + "ensemble_scheduling { step [\n" + ",\n".join(steps) + "\n] }\n" + extra)


def cache_repository(repo, peer=False):
    """qa/L0_response_cache/models, ensemble_cache_test.py's three cases (each
    with its own composing model, so that the statistics stay apart), the
    models check_server_failure_decoupled_model expects refused, and models
    for L0_metrics' labels and L0_response_statistics."""
    python_model(repo, "identity_cache", "max_batch_size: 0\n" + IDENT + CACHE_ON, IDENTITY)
    python_model(repo, "failing", "max_batch_size: 0\n" + IDENT
                 + 'parameters { key: "refuse" value: { string_value: "" } }\n', IDENTITY)
    python_model(repo, "parameter_cache", "max_batch_size: 0\n" + io("input", "INPUT0", "TYPE_FP32", "[ 1 ]")
                 + io("output", "TAG", "TYPE_STRING", "[ 1 ]") + CACHE_ON, PARAMETER)
    python_model(repo, "square_int32", "max_batch_size: 0\n" + DECOUPLED + io("input", "IN", "TYPE_INT32", "[ 1 ]")
                 + io("output", "OUT", "TYPE_INT32", "[ 1 ]"), SQUARE)
    onnx_model(repo, "onnx_float32_float32_float32", "FP32", peer=peer)
    ensemble(repo, "simple_onnx_float32_float32_float32", ["onnx_float32_float32_float32"], CACHE_ON)
    onnx_model(repo, "onnx_all_cache", "FP32", CACHE_ON, peer=peer)
    ensemble(repo, "ensemble_all_cache", ["onnx_all_cache"], CACHE_ON)
    onnx_model(repo, "onnx_composing_cache", "FP32", CACHE_ON + "instance_group { kind: KIND_CPU }\n", peer=peer)
    ensemble(repo, "ensemble_composing_cache", ["onnx_composing_cache"])
    onnx_model(repo, "addsub_cache", "FP32", CACHE_ON, peer=peer)
    onnx_model(repo, "two_versions", "FP32", "version_policy { all { } }\n", versions=(1, 2), peer=peer)
    python_model(repo, "decoupled_cache", "max_batch_size: 0\n" + IDENT + DECOUPLED + CACHE_ON, IDENTITY)
    ensemble(repo, "ensemble_cache_decoupled", ["onnx_float32_float32_float32"], CACHE_ON + DECOUPLED)
    python_model(repo, "addsub_decoupled", "max_batch_size: 8\n" + DECOUPLED + pair("TYPE_FP32", "[ 16 ]"), ADDSUB)
    ensemble(repo, "ensemble_cache_composing_decoupled", ["addsub_decoupled"], CACHE_ON)
    return repo


def trace_repository(repo, peer=False):
    """L0_cmdline_trace's `simple` (onnx_int32_int32_int32 renamed)."""
    onnx_model(repo, "simple", "INT32", peer=peer)
    return repo


def nested_trace_repository(repo, peer=False):
    """L0_cmdline_trace's nested ensemble: `simple` = nop -> fan -> nop -> nop,
    fan_onnx_int32_int32_int32 = nop -> onnx_int32_int32_int32 -> nop -> nop."""
    nop = "nop_TYPE_INT32_-1"
    onnx_model(repo, nop, "INT32", peer=peer, nop=True)
    onnx_model(repo, "onnx_int32_int32_int32", "INT32", peer=peer)
    ensemble(repo, "fan_onnx_int32_int32_int32", [nop, "onnx_int32_int32_int32", nop, nop], dtype="TYPE_INT32")
    ensemble(repo, "simple", [nop, "fan_onnx_int32_int32_int32", nop, nop], dtype="TYPE_INT32")
    return repo


DELAY_MS, MAX_BATCH = 1000, 4  # identity_delay's execute_delay_ms (the QA's 2000) and max_batch_size


def queue_repository(repo):
    """L0_metrics' queue_size_models: identity_delay (FP32 [1], one instance)
    under each scheduler (max_queue_delay 300 ms), and `ensemble` over
    dynamic_composing and default_composing."""
    base = (f"max_batch_size: {MAX_BATCH}\n" + io("input", "INPUT0", "TYPE_FP32", "[ 1 ]")
            + io("output", "OUTPUT0", "TYPE_FP32", "[ 1 ]") + "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
            + f'parameters [ {{ key: "execute_delay_ms" value: {{ string_value: "{DELAY_MS}" }} }} ]\n')
    dynamic = "dynamic_batching { max_queue_delay_microseconds: 300000 }\n"
    for name, extra in {"default": "", "dynamic": dynamic, "default_composing": "", "dynamic_composing": dynamic,
                        "max_queue_size": dynamic.replace(" }", " default_queue_policy { max_queue_size: 4 } }"),
                        "sequence_direct": "sequence_batching { direct { max_queue_delay_microseconds: 300000, "
                                           "minimum_slot_utilization: 1.0 } }\n",
                        "sequence_oldest": "sequence_batching { oldest { max_queue_delay_microseconds: 300000, "
                                           f"max_candidate_sequences: {MAX_BATCH} }} }}\n"}.items():
        python_model(repo, name, base + extra, IDENTITY)
    (repo / "ensemble" / "1").mkdir(parents=True)
    (repo / "ensemble" / "config.pbtxt").write_text(
        f'name: "ensemble"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH}\n'
        + io("input", "ENSEMBLE_INPUT0", "TYPE_FP32", "[ 1 ]") + io("output", "ENSEMBLE_OUTPUT0", "TYPE_FP32", "[ 1 ]")
        + io("output", "ENSEMBLE_OUTPUT1", "TYPE_FP32", "[ 1 ]") + "ensemble_scheduling { step [\n" + ",\n".join(
            f'{{ model_name: "{m}" model_version: -1 input_map {{ key: "INPUT0", value: "ENSEMBLE_INPUT0" }} '
            f'output_map {{ key: "OUTPUT0", value: "ENSEMBLE_OUTPUT{k}" }} }}'
            for k, m in enumerate(("dynamic_composing", "default_composing"))) + "\n] }\n")
    return repo


# ============================================================ helpers

def metrics(addr):
    """({(name, frozenset(labels)): value}, {family: type}) of /metrics at `addr`."""
    samples, families = {}, {}
    for line in requests.get(f"http://{addr}/metrics", timeout=10).text.splitlines():
        if m := re.match(r"^# TYPE (\S+) (\S+)$", line):
            families[m.group(1)] = m.group(2)
        elif m := re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line):
            samples[(m.group(1), frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))] = float(m.group(3))
    return samples, families


def value(samples, name, model=None, version="1", **labels):
    if model is not None:
        labels.update(model=model, version=version)
    return samples.get((name, frozenset(labels.items())))


def stats(http, model):
    r = requests.get(f"http://{http}/v2/models/{model}/stats", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["model_stats"][0]


def counts(http, model):
    s = stats(http, model)
    return {"inference": s["inference_count"], "execution": s["execution_count"],
            **{k: v["count"] for k, v in s["inference_stats"].items()}}


def delta(before, after):
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


H, G = httpclient.InferenceServerClient, grpcclient.InferenceServerClient


def identity(client, model, x, binary=True):
    """OUTPUT0 for INPUT0 = x (tritonclient HTTP, JSON or binary, or gRPC)."""
    grpc = isinstance(client, grpcclient.InferenceServerClient)
    t = (grpcclient if grpc else httpclient).InferInput("INPUT0", list(x.shape), "FP32")
    t.set_data_from_numpy(x) if grpc else t.set_data_from_numpy(x, binary_data=binary)
    return client.infer(model, [t]).as_numpy("OUTPUT0")


def addsub(client, model, a, b, outputs=None, **kw):
    cl = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    ins = [cl.InferInput(n, list(a.shape), "INT32" if a.dtype == np.int32 else "FP32") for n in ("INPUT0", "INPUT1")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    r = client.infer(model, ins, outputs=[cl.InferRequestedOutput(n) for n in outputs] if outputs else None, **kw)
    return {n: r.as_numpy(n) for n in ("OUTPUT0", "OUTPUT1")}


def rows(seed, shape=(1, 16)):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def index(http):
    return {r["name"]: r for r in requests.post(f"http://{http}/v2/repository/index", timeout=10).json()}


@contextlib.contextmanager
def served(repo, *flags):
    """start_serve and wait_ready: (http, grpc, process), stopped afterwards."""
    proc, addr = start_serve(repo, *flags)
    try:
        wait_ready(addr["HTTP"])
        yield addr["HTTP"], addr["gRPC"], proc
    finally:
        stop_serve(proc)


def refused(*args):
    """(exit status, stderr) of `anemone serve` with `args` on an empty repository (a start that stops)."""
    empty = ROOT / "target" / "qa_observability_empty"
    empty.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone")), "serve",
                        "--model-repository", str(empty), "--http-port", "0", "--grpc-port", "0", *args],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


# ============================================================ the response cache (L0_response_cache)

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """`--cache-config local,size=65536`, summary latencies, Triton's metric
    names; not strictly ready (some models are refused)."""
    with served(cache_repository(tmp_path_factory.mktemp("qa_cache")), "--cache-config", "local,size=65536",
                "--triton-metrics", "true", "--metrics-config", "summary_latencies=true", "--strict-readiness",
                "false") as (http, grpc, _):
        yield http, grpc


def test_a_repeated_request_is_answered_from_the_cache_and_counted_as_tritons(cache):
    """identity_cache twice (docs/SERVING.md "Counting"). tritonserver 2.51: the
    same answer; success/queue 2, cache_miss/hit 1, compute_*/executions 1."""
    http, _ = cache
    x, before = rows(1, (8,)), counts(http, "identity_cache")
    first, second = identity(H(http), "identity_cache", x), identity(H(http), "identity_cache", x)
    np.testing.assert_array_equal(first, x)
    assert first.tobytes() == second.tobytes()
    assert delta(before, counts(http, "identity_cache")) == {
        "success": 2, "queue": 2, "cache_miss": 1, "cache_hit": 1, "compute_input": 1, "compute_infer": 1,
        "compute_output": 1, "execution": 1, "inference": 1}
    g = G(cache[1]).get_inference_statistics("identity_cache", as_json=True)["model_stats"][0]["inference_stats"]
    assert g["fail"] == {} and {k: int(v["count"]) for k, v in g.items() if v} == {  # zeros left out, as 2.51
        k: v for k, v in counts(http, "identity_cache").items() if v and k not in ("inference", "execution")}


def test_the_same_tensors_over_http_json_binary_and_grpc_share_one_answer(cache):
    """docs/SERVING.md "The key". tritonserver 2.51: 1 miss and 2 hits for
    JSON, binary and gRPC; another value another miss."""
    http, grpc = cache
    x, before = rows(2, (5,)), counts(http, "identity_cache")
    outs = [identity(H(http), "identity_cache", x, binary=False), identity(H(http), "identity_cache", x),
            identity(G(grpc), "identity_cache", x), identity(H(http), "identity_cache", x + 1)]
    assert [o.tobytes() for o in outs] == [x.tobytes()] * 3 + [(x + 1).tobytes()]
    d = delta(before, counts(http, "identity_cache"))
    assert (d["cache_miss"], d["cache_hit"], d["execution"]) == (2, 2, 2), d


def test_requests_asking_for_different_outputs_do_not_share_an_answer(cache):
    """docs/SERVING.md "The key" holds the outputs asked for. tritonserver
    2.51's does not: asked for OUTPUT1 after OUTPUT0, it answered OUTPUT0."""
    http, _ = cache
    a, b, before = rows(3), rows(4), counts(http, "addsub_cache")
    only0 = addsub(H(http), "addsub_cache", a, b, ["OUTPUT0"])
    only1 = addsub(H(http), "addsub_cache", a, b, ["OUTPUT1"])
    np.testing.assert_allclose(only0["OUTPUT0"], a + b, rtol=1e-6)
    np.testing.assert_allclose(only1["OUTPUT1"], a - b, rtol=1e-6)
    assert only0["OUTPUT1"] is None and only1["OUTPUT0"] is None
    d = delta(before, counts(http, "addsub_cache"))
    assert (d["cache_miss"], d.get("cache_hit", 0), d["execution"]) == (2, 0, 2), d


def test_requests_with_parameters_are_not_answered_from_the_cache(cache):
    """Requests differing by a parameter: tritonserver 2.51 answered tag "b"
    with the cached "a". anemone does not look them up (docs/ENSEMBLES.md "Nor
    is a request with parameters"; SERVING.md is silent): no hit, no miss."""
    http, _ = cache
    t = httpclient.InferInput("INPUT0", [1], "FP32")
    t.set_data_from_numpy(np.ones(1, np.float32))
    before = counts(http, "parameter_cache")
    tags = [H(http).infer("parameter_cache", [t], parameters={"tag": g}).as_numpy("TAG")[0] for g in "ab"]
    d = delta(before, counts(http, "parameter_cache"))
    assert tags == [b"a", b"b"] and d["execution"] == 2 and "cache_hit" not in d and "cache_miss" not in d, d


def test_an_answer_larger_than_the_cache_is_not_stored(cache):
    """test_ensemble_cache_insertion_failure (docs/SERVING.md "The bound"):
    tritonserver 2.51, a 131,072-byte answer twice: 2 misses, 2 executions."""
    http, _ = cache
    x, before = rows(5, (32768,)), counts(http, "identity_cache")
    for _ in range(2):
        np.testing.assert_array_equal(identity(H(http), "identity_cache", x), x)
    d = delta(before, counts(http, "identity_cache"))
    assert (d["cache_miss"], d.get("cache_hit", 0), d["execution"]) == (2, 0, 2), d


ENSEMBLE_CASES = [("simple_onnx_float32_float32_float32", "onnx_float32_float32_float32", "ensemble"),
                  ("ensemble_all_cache", "onnx_all_cache", "ensemble"),
                  ("ensemble_composing_cache", "onnx_composing_cache", "composing")]


@pytest.mark.parametrize("ens,comp,where", ENSEMBLE_CASES, ids=["top_level", "all_models", "composing_model"])
def test_ensemble_cache(cache, ens, comp, where):
    """ensemble_cache_test.py, ones (1, 16) twice. tritonserver 2.51: top
    level and all models: the ensemble 1 miss 1 hit, the composing model 1
    success (a miss if cached); composing only: it 1 miss 1 hit."""
    http, grpc = cache
    ones = np.ones((1, 16), np.float32)
    assert counts(http, ens)["success"] == counts(http, comp)["success"] == 0
    first, second = addsub(G(grpc), ens, ones, ones), addsub(G(grpc), ens, ones, ones)
    np.testing.assert_array_equal(first["OUTPUT0"], ones + ones)
    np.testing.assert_array_equal(first["OUTPUT1"], ones - ones)
    assert all(first[k].tobytes() == second[k].tobytes() for k in first)
    e, m = counts(http, ens), counts(http, comp)
    assert e["success"] == 2
    if where == "ensemble":
        assert (e["cache_miss"], e["cache_hit"]) == (1, 1), e
        assert (m["success"], m["cache_hit"], m["cache_miss"]) == (1, 0, 1 if "all" in ens else 0), m
    else:
        assert (e["cache_miss"], e["cache_hit"]) == (0, 0), e
        assert (m["success"], m["cache_miss"], m["cache_hit"], m["execution"]) == (2, 1, 1, 1), m


def test_cache_metrics_per_model_and_server_wide(cache):
    """test_cache_counters_exist, test_inf_counters_exist: tritonserver 2.51's
    names (its gauges sampled every few seconds; anemone's when scraped: docs)."""
    http, _ = cache
    identity(H(http), "identity_cache", rows(6, (3,)))
    s, families = metrics(http)
    for m in ("identity_cache", "simple_onnx_float32_float32_float32", "onnx_composing_cache"):
        c = counts(http, m)
        assert value(s, "nv_cache_num_hits_per_model", m) == c["cache_hit"] == value(s, "anemone_cache_hits_total", m)
        assert value(s, "nv_cache_num_misses_per_model", m) == c["cache_miss"] == value(
            s, "anemone_cache_misses_total", m)
    parts = ("request", "queue", "compute_input", "compute_infer", "compute_output")
    for fam in ["nv_cache_hit_duration_per_model", "nv_cache_miss_duration_per_model"] + [
            f"nv_inference_{p}_duration_us" for p in parts]:
        assert families.get(fam) == "counter", fam
    hits, misses = value(s, "nv_cache_num_hits"), value(s, "nv_cache_num_misses")
    assert value(s, "nv_cache_num_lookups") == hits + misses and hits >= 1 and misses >= 1
    assert value(s, "nv_cache_num_entries") >= 1 and 0 < value(s, "nv_cache_util") <= 1
    assert value(s, "anemone_cache_capacity_bytes") == 65536


def test_cache_summaries_exist(cache):
    """test_cache_summaries_exist: tritonserver 2.51 wrote both summaries per
    cache-enabled model; docs/OBSERVABILITY.md lists only nv_inference_*."""
    families = metrics(cache[0])[1]
    assert (families.get("nv_cache_hit_summary_per_model"), families.get("nv_cache_miss_summary_per_model")) == (
        "summary", "summary")


def test_inference_summaries_exist_with_the_cache(cache):
    """test_inf_summaries_exist_with_cache: tritonserver 2.51 leaves the request
    summary out for a cache-enabled model (DLIS-4762); anemone writes it,
    counting cache hits (docs/OBSERVABILITY.md "Metrics")."""
    http, _ = cache
    for _ in range(2):
        identity(H(http), "identity_cache", rows(7, (2,)))
    s, families = metrics(http)
    c = counts(http, "identity_cache")
    assert all(families.get(f"nv_inference_{p}_summary_us") == "summary"
               for p in ("request", "queue", "compute_input", "compute_infer", "compute_output"))
    assert value(s, "nv_inference_request_summary_us_count", "identity_cache") == c["success"]
    assert value(s, "nv_inference_compute_infer_summary_us_count", "identity_cache") == c["compute_infer"]
    assert value(s, "nv_inference_request_summary_us", "identity_cache", quantile="0.5") > 0


def test_metrics_per_model_version_and_failure_reasons(cache):
    """tritonserver 2.51: a series per version; a raising execute under
    reason BACKEND, the three other reasons 0."""
    http, _ = cache
    a = rows(8)
    for v, n in (("1", 1), ("2", 2)):
        for _ in range(n):
            np.testing.assert_allclose(addsub(H(http), "two_versions", a, a, model_version=v)["OUTPUT0"], a + a)
    with pytest.raises(InferenceServerException):
        identity(H(http), "failing", -np.ones(2, np.float32))
    s, _ = metrics(http)
    assert [value(s, f, "two_versions", v) for f in ("nv_inference_request_success", "nv_inference_count")
            for v in "12"] == [1, 2, 1, 2]
    assert [value(s, "nv_inference_request_failure", "failing", reason=r)
            for r in ("BACKEND", "REJECTED", "CANCELED", "OTHER")] == [1, 0, 0, 0]


def test_pinned_memory_metrics_are_documented_as_not_written(cache):
    """tritonserver 2.51 (CPU) wrote both gauges. docs/OBSERVABILITY.md says
    anemone writes neither (it has no pinned memory pool of Triton's kind),
    and the cache and inference families are there beside them."""
    families = metrics(cache[0])[1]
    assert "nv_pinned_memory_pool_total_bytes" not in families, families
    assert "nv_pinned_memory_pool_used_bytes" not in families, families
    assert families.get("nv_inference_count") == "counter", families
    doc = (ROOT / "docs/OBSERVABILITY.md").read_text()
    assert "`nv_pinned_memory_pool_total_bytes`" in doc and "are not written" in doc


def test_decoupled_response_statistics(cache):
    """L0_response_statistics, a Python `square`: tritonserver 2.51 reports no
    response_stats ({} over HTTP, none over gRPC), as docs/SERVING.md says."""
    http, grpc = cache
    c, before = G(grpc), counts(http, "square_int32")
    for n in (4, 6, 3):
        got = []
        c.start_stream(lambda result, error: got.append(error or result.as_numpy("OUT")))
        t = grpcclient.InferInput("IN", [1], "INT32")
        t.set_data_from_numpy(np.array([n], np.int32))
        c.async_stream_infer("square_int32", [t])
        c.stop_stream()
        assert [int(g[0]) for g in got] == [n] * n
    for _ in range(50):  # the stream may end before the request is counted
        if delta(before, counts(http, "square_int32")).get("success") == 3:
            break
        time.sleep(0.1)
    s = stats(http, "square_int32")
    assert s["response_stats"] == {} and delta(before, counts(http, "square_int32"))["success"] == 3
    g = c.get_inference_statistics("square_int32", as_json=True)["model_stats"][0]
    assert "response_stats" not in g and int(g["inference_stats"]["success"]["count"]) == before["success"] + 3


def test_decoupled_models_with_the_cache_are_refused(cache):
    """check_server_failure_decoupled_model: tritonserver 2.51 refused both
    ("Response Cache does not currently support ... 'decoupled' ...")."""
    for m in ("decoupled_cache", "ensemble_cache_decoupled"):
        row = index(cache[0])[m]
        assert row["state"] == "UNAVAILABLE" and "decoupled" in row["reason"] and "response_cache" in row["reason"]


def test_an_ensemble_with_the_cache_over_a_decoupled_model_streams_uncached(cache):
    """tritonserver 2.51 refused it. docs/ENSEMBLES.md: it streams and "The
    response cache is not used for such an ensemble"."""
    http, grpc = cache
    assert index(http)["ensemble_cache_composing_decoupled"]["state"] == "READY"
    c, a, b, got = G(grpc), rows(9), rows(10), []
    c.start_stream(lambda result, error: got.append(error or result))
    ins = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    for _ in range(2):
        c.async_stream_infer("ensemble_cache_composing_decoupled", ins)
    c.stop_stream()
    assert len(got) == 2 and all(np.allclose(r.as_numpy("OUTPUT0"), a + b) for r in got), got
    e = counts(http, "ensemble_cache_composing_decoupled")
    assert (e["success"], e["cache_hit"], e["cache_miss"]) == (2, 0, 0)
    assert counts(http, "addsub_decoupled")["execution"] == 2


@pytest.mark.parametrize("flags,words", [
    (["--response-cache-byte-size=12345", "--cache-config=local,size=67890"], ["--response-cache-byte-size", "one"]),
    (["--cache-config=local,size=8192", "--cache-config=redis,key=value"], ["redis", "local"]),
    (["--cache-config=redis,host=localhost", "--cache-config=redis,port=6379"], ["redis", "local"]),
    (["--metrics-config", "histogram_latencies=true"], ["histogram_latencies", "anemone_inference_request_duration"]),
    (["--metrics-config", "counter_latencies=false"], ["counter_latencies=false"]),
    (["--metrics-config", "summary_quantiles=0.1:0.0.1,0.7:0.01"], ["0.0.1"]),
    (["--model-namespacing", "true"], ["namespace"]),
] + [(["--trace-config", "mode=opentelemetry", "--trace-config", f"opentelemetry,{b}=x"], [b])
      for b in ("bsp_max_queue_size", "bsp_schedule_delay", "bsp_max_export_batch_size")],
    ids=["incompatible_cache_flags", "multiple_cache_configurations", "redis", "histograms", "counters_off",
         "malformed_quantile_error", "namespacing", "bsp_max_queue_size", "bsp_schedule_delay",
         "bsp_max_export_batch_size"])
def test_flags_that_stop_the_server(flags, words):
    """tritonserver 2.51 stopped for both cache flags, local with redis, and
    bad bsp_* values; it took L0_metrics' other three settings, which docs/
    FROM_TRITON.md and OBSERVABILITY.md say anemone refuses. Named each time."""
    rc, err = refused(*flags)
    assert rc != 0 and all(w in err for w in words), (rc, err)


@pytest.mark.parametrize("flag", ["--response-cache-byte-size=8192", "--cache-config=local,size=8192"])
def test_both_cache_flag_forms_give_a_cache(tmp_path, flag):
    """identity_cache loads with either flag (tritonserver 2.51 too); a hit."""
    python_model(tmp_path, "identity_cache", "max_batch_size: 0\n" + IDENT + CACHE_ON, IDENTITY)
    with served(tmp_path, flag) as (http, _, _):
        for _ in range(2):
            identity(H(http), "identity_cache", np.ones(4, np.float32))
        assert counts(http, "identity_cache")["cache_hit"] == 1


# ============================================================ metrics (L0_metrics)

@pytest.fixture(scope="module")
def queues(tmp_path_factory):
    """Triton's names, figures read every 100 ms; (HTTP, metrics port)."""
    with served(queue_repository(tmp_path_factory.mktemp("qa_queue")), "--triton-metrics", "true",
                "--metrics-interval-ms", "100", "--metrics-port", "0") as (http, _, proc):
        line = proc.stdout.readline()
        assert line.startswith("Metrics listening on "), line
        yield http, line.split()[-1]


def pending_while_running(http, mport, model, name="INPUT0", watch=()):
    """metrics_queue_size_test.py's 10 requests (sequences: 4, round-robin),
    sampling the pending count every 50 ms: (its distinct values from the
    highest on, the highest of each `watch` model, how many failed)."""
    def one(i):
        body = {"inputs": [{"name": name, "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
        if model.startswith("sequence"):
            body["parameters"] = {"sequence_id": i % 4 + 1, "sequence_start": i < 4}
        codes.append(requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=60).status_code)

    codes, threads = [], [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(0.15 if i == 3 else 0.01)
    seen, peaks, start = [], {w: 0 for w in watch}, time.time()
    while time.time() < start + 30:
        s, _ = metrics(mport)
        v = value(s, "nv_inference_pending_request_count", model)
        assert watch or v == value(s, "anemone_pending_requests", model), model
        if not seen or seen[-1] != v:
            seen.append(v)
        for w in watch:
            peaks[w] = max(peaks[w], value(s, "nv_inference_pending_request_count", w))
        if v == 0 and len(codes) == 10:
            break
        time.sleep(0.05)
    [t.join() for t in threads]
    return seen[seen.index(max(seen)):], peaks, 10 - codes.count(200)


@pytest.mark.parametrize("model,batch,limit", [
    ("default", 1, 0), ("dynamic", MAX_BATCH, 0), ("max_queue_size", MAX_BATCH, 4),
    pytest.param("sequence_direct", MAX_BATCH, 0),
    pytest.param("sequence_oldest", MAX_BATCH, 0)])
def test_pending_request_count(queues, model, batch, limit):
    """The count falls from 10 - batch (max_queue_size: 4, 2 refused) by batch
    per 1 s execution. tritonserver 2.51 (this test): default 9 .. 0, the
    others 6, 2, 0 (max_queue_size 4, 0). anemone's sequence models: 2, 0."""
    http, mport = queues
    top = limit or 10 - batch
    seen, _, failed = pending_while_running(http, mport, model)
    assert seen == list(range(top, -1, -batch)) + ([0] if top % batch else []), seen
    assert failed == 10 - batch - top
    s, _ = metrics(mport)
    assert (value(s, "nv_inference_count", model), value(s, "nv_inference_exec_count", model)) == (
        top + batch, -(-(top + batch) // batch))


def test_pending_request_count_of_an_ensemble_is_its_steps(queues):
    """test_ensemble_scheduler. tritonserver 2.51: the ensemble 0 throughout,
    its steps above 0, all 0 at the end, 10 inferences each."""
    http, mport = queues
    seen, peaks, failed = pending_while_running(http, mport, "ensemble", "ENSEMBLE_INPUT0",
                                                watch=("dynamic_composing", "default_composing"))
    assert seen == [0] and failed == 0 and min(peaks.values()) > 0, (seen, peaks)
    s, _ = metrics(mport)
    for m in ("ensemble", "dynamic_composing", "default_composing"):
        assert (value(s, "nv_inference_pending_request_count", m), value(s, "nv_inference_count", m)) == (0, 10), m


def test_metric_families_by_default(queues):
    """metrics_config_test.py, default server: counters, no histogram,
    summary, cache family or namespace (tritonserver 2.51 passes it)."""
    text = requests.get(f"http://{queues[1]}/metrics", timeout=10).text
    for p in ("request", "queue", "compute_input", "compute_infer", "compute_output"):
        assert f"nv_inference_{p}_duration" in text and f"nv_inference_{p}_summary" not in text
    for absent in ("nv_inference_first_response_histogram_ms", "nv_cache_num_hits_per_model", "nv_cache_num_misses",
                   "nv_cache_hit_duration", "nv_cache_miss_duration", "nv_cache_hit_summary", 'namespace="'):
        assert absent not in text, absent


def test_cpu_metrics_ranges_and_interval(queues):
    """cpu_metrics_test.py's expressions and ranges; used memory changes
    between readings (utilization may sit at 1.0 here). tritonserver 2.51 passes.
    The test holds 64 MiB more for half of the readings, so that the machine's
    used memory moves even when nothing else on it does (a cold CI run once
    read the same byte count twelve times)."""
    http, mport = queues
    client = httpclient.InferenceServerClient(http, concurrency=4)
    t = httpclient.InferInput("INPUT0", [1, 1], "FP32")
    t.set_data_from_numpy(np.ones((1, 1), np.float32))
    futures, used, held = [client.async_infer("dynamic", [t]) for _ in range(8)], [], None
    for i in range(12):
        if i == 6:
            held = np.ones(64 << 20, np.uint8)  # 64 MiB, every page touched
        text = requests.get(f"http://{mport}/metrics", timeout=10).text
        util = float(re.search(r"nv_cpu_utilization (\d+\.?\d*)", text).group(1))
        used.append(int(re.search(r"nv_cpu_memory_used_bytes (\d+)", text).group(1)))
        assert 0 <= util <= 1 and 0 <= used[-1] <= int(re.search(r"nv_cpu_memory_total_bytes (\d+)", text).group(1))
        time.sleep(0.15)
    [f.get_result() for f in futures]
    del held
    assert len(set(used)) > 1, used


@pytest.mark.parametrize("flag", ["--metrics-interval-ms=60000", "--allow-metrics=false"])
def test_metrics_interval_and_allow_metrics(tmp_path, flag):
    """A minute's interval: readings stay the same. --allow-metrics=false: no
    metrics port (as 2.51); /metrics stays on HTTP (docs/OBSERVABILITY.md)."""
    readings = []
    with served(tmp_path, "--triton-metrics", "true", "--metrics-port", "0", flag) as (http, _, proc):
        for _ in range(6):
            text = requests.get(f"http://{http}/metrics", timeout=10).text
            readings.append(re.search(r"nv_cpu_memory_used_bytes (\d+)", text).group(1))
            time.sleep(0.3)
    if "interval" in flag:
        assert len(set(readings)) == 1, readings
    else:
        assert "Metrics listening" not in proc.stdout.read()


# ============================================================ logging (L0_logging)

@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """logging_endpoint_test.py's server: default flags, over `simple`."""
    with served(trace_repository(tmp_path_factory.mktemp("qa_log"))) as (http, grpc, _):
        yield http, grpc


# docs/OBSERVABILITY.md "Logging": log_info is false at start (the level is
# warn; Triton: true), log_format reads "text" (Triton: "default").
START = {"log_file": "", "log_info": False, "log_warning": True, "log_error": True, "log_verbose_level": 0,
         "log_format": "text"}


def log_settings(reply):
    return reply if isinstance(reply, dict) else {
        k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in reply.settings.items()}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_log_settings_get_and_update(logged, protocol):
    """logging_endpoint_test.py's get and update tests: tritonserver 2.51 answered
    what was sent and log_file ""; anemone too, log_format "text" for Triton's
    names (docs/FROM_TRITON.md: both are anemone's text lines)."""
    c = H(logged[0]) if protocol == "http" else G(logged[1])
    try:
        assert log_settings(c.get_log_settings()) == START
        for k, update in enumerate(["log_info", "log_warning", "log_error", "log_verbose_level", "log_format"]):
            sent = {"log_info": False, "log_warning": k < 1, "log_error": k < 2, "log_verbose_level": int(k > 2),
                    "log_format": "ISO8601" if k > 3 else "default"}
            assert log_settings(c.update_log_settings(sent)) == dict(sent, log_file="", log_format="text"), update
    finally:
        c.update_log_settings({k: START[k] for k in ("log_info", "log_warning", "log_error", "log_verbose_level")})


def test_log_file_cannot_be_changed_over_the_network(logged):
    """tritonserver 2.51: 501 / UNIMPLEMENTED; docs/OBSERVABILITY.md: 400 /
    INVALID_ARGUMENT for another file than the one in force."""
    http, grpc = logged
    r = requests.post(f"http://{http}/v2/logging", json={"log_file": "log_file.log", "log_info": True})
    assert r.status_code == 400 and "log_file.log" in r.json()["error"], r.text
    with pytest.raises(InferenceServerException) as e:
        G(grpc).update_log_settings({"log_file": "log_file.log"})
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert requests.get(f"http://{http}/v2/logging").json() == START


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_log_file_refusal_has_tritons_message(logged, protocol):
    """The QA matches tritonserver 2.51's message (anemone uses Triton's words
    for trace_file, not for log_file)."""
    c = H(logged[0]) if protocol == "http" else G(logged[1])
    with pytest.raises(InferenceServerException, match="log file location can not be updated through network protocol"):
        c.update_log_settings({"log_file": "log_file.log"})


def test_bad_log_settings_are_refused(logged):
    """L0_logging "Negative Test Cases": tritonserver 2.51 answered 500 to each;
    anemone 400 (docs: "wrong types are a 400"), nothing changed."""
    url = f"http://{logged[0]}/v2/logging"
    for name in ("log_info", "log_warning", "log_error"):
        for bad in ("1", "False", '"false"'):
            assert requests.post(url, data='{"%s":%s}' % (name, bad)).status_code == 400, (name, bad)
        assert requests.post(url, data='{"%s":true}' % name).status_code == 200
    for bad in ("-1", '"1"'):
        r = requests.post(url, data='{"log_verbose_level":%s}' % bad)
        assert r.status_code == 400 and "log_verbose_level" in r.json()["error"], r.text
    assert requests.post(url, data='{"log_verbose_level":0}').status_code == 200
    assert requests.post(url, json={"log_info": False}).json() == START


def test_log_file_flags_and_switching_info_on_while_serving(tmp_path):
    """L0_logging: --log-file (nothing on the console), --log-verbose=1,
    --log-info=false, then log_info true: the shutdown's INFO line is in the
    file (2.51: "Waiting for in-flight requests to complete"). --log-format=
    ISO8601, then "default": 2.51 answered each; docs/FROM_TRITON.md: both
    are anemone's "text"; another format is a 400."""
    log, err = tmp_path / "log_file.log", tmp_path / "stderr"
    with open(err, "w") as sink:  # start_serve hands its sys.stderr to the server
        saved, sys.stderr = sys.stderr, sink
        try:
            proc, addr = start_serve(trace_repository(tmp_path / "repo"), "--log-file", str(log), "--log-info",
                                     "false", "--log-warning", "false", "--log-verbose", "1", "--log-format=ISO8601")
        finally:
            sys.stderr = saved
    try:
        wait_ready(addr["HTTP"])
        url = f"http://{addr['HTTP']}/v2/logging"
        assert requests.get(url).json() == dict(START, log_file=str(log), log_warning=False, log_verbose_level=1)
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        np.testing.assert_array_equal(addsub(H(addr["HTTP"]), "simple", a, a)["OUTPUT0"], a + a)
        before = log.read_text()
        assert " DEBUG " in before and " INFO " not in before, before[-2000:]
        assert requests.post(url, json={"log_info": True}).json()["log_info"] is True
        assert [requests.post(url, json={"log_format": f}).json()["log_format"] for f in ("default", "ISO8601")] == [
            "text", "text"]
        assert requests.post(url, json={"log_format": "json"}).status_code == 400
    finally:
        stop_serve(proc)
    assert re.search(r" INFO .*shutting down", log.read_text()[len(before):]), log.read_text()[-2000:]
    assert err.read_text() == ""


# ============================================================ trace (L0_cmdline_trace, L0_trace)

def send_simple(http, grpc, n):
    """trace_client.py n times over gRPC and HTTP (request_id "1")."""
    a, b = np.arange(16, dtype=np.int32).reshape(1, 16), np.ones((1, 16), np.int32)
    for _ in range(n):
        for c in (G(grpc), H(http)):
            out = addsub(c, "simple", a, b, ["OUTPUT0", "OUTPUT1"], request_id="1")
            np.testing.assert_array_equal(out["OUTPUT0"], a + b)
            np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def read_traces(path):
    """{id: (head object, [timestamp names])} of a trace file."""
    out = {}
    for o in json.loads(path.read_text()):
        head, names = out.setdefault(o["id"], ({}, []))
        names.extend(t["name"] for t in o["timestamps"]) if "timestamps" in o else head.update(o)
    return out


RUNS = {}


def traced(tmp_path_factory, key, flags, action=lambda h, g, f: send_simple(h, g, 10), repo=trace_repository):
    """Serves repo() with `flags` (FILE: the trace file), runs action, stops:
    ({suffix after FILE: read_traces}, the action's result); once per key."""
    if key not in RUNS:
        tmp = tmp_path_factory.mktemp("qa_trace")
        with served(repo(tmp / "repo"), *[f.replace("FILE", str(tmp / "trace.json")) for f in flags]) as (h, g, _):
            noted = action(h, g, tmp / "trace.json")
        RUNS[key] = ({p.name[len("trace.json"):]: read_traces(p) for p in tmp.glob("trace.json*")}, noted)
    return RUNS[key]


COMPUTE = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START",
           "COMPUTE_END", "REQUEST_END"]
RATE1 = ["--trace-file=FILE", "--trace-level=TIMESTAMPS", "--trace-rate=1"]
COUNT = ["--trace-config", "triton,file=FILE", "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1"]


@pytest.mark.parametrize("flags,expected", [
    (["--trace-rate=1"], {"": 20}), (["--trace-rate=6"], {"": 3}), (["--trace-rate=9"], {"": 2}),
    (["--trace-rate=6", "--trace-log-frequency=2"], {".0": 2, ".1": 1})], ids=["rate1", "rate6", "rate9", "frequency2"])
def test_cmdline_trace_rate_and_log_frequency(tmp_path_factory, flags, expected):
    """L0_cmdline_trace, 20 requests: tritonserver 2.51 traced these counts,
    each with COMPUTE's timestamps in order (among protocol ones anemone does
    not write: docs/OBSERVABILITY.md)."""
    files, _ = traced(tmp_path_factory, tuple(flags), ["--trace-file=FILE", "--trace-level=TIMESTAMPS", *flags])
    assert {k: len(v) for k, v in files.items()} == expected
    for head, names in (t for traces in files.values() for t in traces.values()):
        assert (head["model_name"], head["model_version"], [n for n in names if n in COMPUTE]) == ("simple", 1, COMPUTE)


def test_trace_records_carry_the_request_id(tmp_path_factory):
    """L0_cmdline_trace greps {..."model_version":1,"request_id":"1"}, as
    tritonserver 2.51 writes it; docs/OBSERVABILITY.md is silent."""
    files, _ = traced(tmp_path_factory, ("--trace-rate=1",), RATE1)
    assert {head.get("request_id") for head, _ in files[""].values()} == {"1"}


def test_trace_level_off_writes_no_file(tmp_path_factory):
    """tritonserver 2.51 wrote no file (the QA fails if there is one)."""
    assert traced(tmp_path_factory, "off", ["--trace-file=FILE", "--trace-level=OFF", "--trace-rate=1"])[0] == {}


def test_nested_ensemble_traces_have_tritons_ids_and_parents(tmp_path_factory):
    """Two requests: tritonserver 2.51 wrote ids 1-9, 10-18 with these names
    and parent ids, 7 compute traces each (request_id aside)."""
    files, _ = traced(tmp_path_factory, "nested", RATE1, lambda h, g, f: send_simple(h, g, 1), nested_trace_repository)
    heads = {(h["id"], h["model_name"], h.get("parent_id")) for h, _ in files[""].values()}
    nop, fan = "nop_TYPE_INT32_-1", "fan_onnx_int32_int32_int32"
    tree = [(1, "simple", None), (2, nop, 1), (3, fan, 1), (4, nop, 3), (5, "onnx_int32_int32_int32", 3), (6, nop, 3),
            (7, nop, 3), (8, nop, 1), (9, nop, 1)]
    assert heads == {(i + k, m, p and p + k) for k in (0, 9) for i, m, p in tree}, sorted(heads)
    assert sum("COMPUTE_INPUT_END" in n for _, n in files[""].values()) == 14


def test_trace_level_turned_on_through_the_api(tmp_path_factory):
    """level OFF, then TIMESTAMPS through the API: tritonserver 2.51 answered
    these settings and traced the 20 requests after."""
    def action(h, g, f):
        answer = requests.post(f"http://{h}/v2/trace/setting", json={"trace_level": ["TIMESTAMPS"]}).json()
        send_simple(h, g, 10)
        return answer
    files, answer = traced(tmp_path_factory, "off_to_min", [f.replace("=TIMESTAMPS", "=OFF") for f in COUNT], action)
    assert answer == {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1", "log_frequency": "0",
                      "trace_file": answer["trace_file"], "trace_mode": "triton"} and len(files[""]) == 20


def test_model_trace_settings_update_and_clear(tmp_path_factory):
    """Global rate 6; the model's rate 1 and level OFF, 20 requests; its level
    cleared, 10 more: tritonserver 2.51 traced 10 (trace_file: 501; 400: docs)."""
    def action(h, g, f):
        url = f"http://{h}/v2/models/simple/trace/setting"
        refusal = requests.post(url, json={"trace_file": "global_trace.log"})
        answers = [requests.post(url, json=s).json() for s in ({"trace_rate": "1"}, {"trace_level": ["OFF"]})]
        send_simple(h, g, 10)
        answers.append(requests.post(url, json={"trace_level": None}).json())
        send_simple(h, g, 5)
        return refusal.status_code, refusal.json(), [(a["trace_level"], a["trace_rate"]) for a in answers]
    files, (status, body, answers) = traced(tmp_path_factory, "update_clear",
                                            [f.replace("rate=1", "rate=6") for f in COUNT], action)
    assert (status, body) == (400, {"error": "trace file location can not be updated through network protocol"})
    assert answers == [(["TIMESTAMPS"], "1"), (["OFF"], "1"), (["TIMESTAMPS"], "1")] and len(files[""]) == 10


def count_action(h, g, f):
    send_simple(h, g, 10)
    url = f"http://{h}/v2/models/simple/trace/setting"
    assert requests.post(f"http://{h}/v2/trace/setting", json={"trace_count": "5"}).json()["trace_count"] == "5"
    send_simple(h, g, 10)
    return {"after": requests.get(url).json(), "files": sorted(p.name for p in f.parent.glob("trace.json*")),
            "out_of_range": [requests.post(url, json={s: "10000000000"}) for s in ("trace_count", "trace_rate")]}


def test_trace_count_runs_out(tmp_path_factory):
    """20 requests, trace_count 5, 20 more. tritonserver 2.51: count "0", 25
    traced, "10000000000" a 400 (a model's log_frequency is refused: docs)."""
    files, noted = traced(tmp_path_factory, "count", COUNT, count_action)
    assert noted["after"]["trace_count"] == "0" and sum(len(t) for t in files.values()) == 25
    for setting, r in zip(("trace_count", "trace_rate"), noted["out_of_range"]):
        assert r.status_code == 400 and setting in r.json()["error"] and "10000000000" in r.json()["error"], r.text


def test_trace_file_written_when_the_count_runs_out(tmp_path_factory):
    """L0_trace checks FILE.0 exists before the server stops: tritonserver
    2.51 wrote it as the count reached 0; anemone writes all at shutdown."""
    files, noted = traced(tmp_path_factory, "count", COUNT, count_action)
    assert "trace.json.0" in noted["files"] and len(files[".0"]) == 5


@pytest.fixture(scope="module")
def trace_api(tmp_path_factory):
    """trace_endpoint_test.py's server."""
    tmp = tmp_path_factory.mktemp("qa_trace_api")
    path = str(tmp / "global_unittest.log")
    with served(trace_repository(tmp / "repo"), *[f.replace("FILE", path) for f in COUNT]) as (http, grpc, _):
        yield http, grpc, path


@pytest.fixture(params=["http", "grpc"])
def api(trace_api, request):
    """(client, reader of its answers, start settings); then the QA's tearDown."""
    http, grpc, path = trace_api
    read = dict if request.param == "http" else (
        lambda r: {k: list(v.value) if k == "trace_level" else v.value[0] for k, v in r.settings.items()})
    yield (H(http) if request.param == "http" else G(grpc)), read, dict(
        trace_file=path, trace_level=["TIMESTAMPS"], trace_rate="1", trace_count="-1", log_frequency="0",
        trace_mode="triton")
    clear = {"trace_level": None, "trace_rate": None, "trace_count": None}
    H(http).update_trace_settings(model_name="simple", settings=clear)
    H(http).update_trace_settings(settings=dict(clear, log_frequency=None))


def test_trace_api_get_settings(api):
    """tritonserver 2.51 passes it (anemone adds a reason to the message)."""
    c, read, initial = api
    assert read(c.get_trace_settings(model_name="simple")) == initial == read(c.get_trace_settings())
    with pytest.raises(InferenceServerException, match="Request for unknown model : does-not-exist"):
        c.get_trace_settings(model_name="does-not-exist")


def test_trace_api_update_settings(api):
    """tritonserver 2.51 passes it (TENSORS: documented as taken)."""
    c, read, initial = api
    with pytest.raises(InferenceServerException, match="trace file location can not be updated"):
        c.update_trace_settings(model_name="simple", settings={"trace_file": "model.log"})
    both = dict(initial, trace_level=["TIMESTAMPS", "TENSORS"])
    assert read(c.get_trace_settings(model_name="simple")) == initial
    assert read(c.update_trace_settings(settings={"trace_level": ["TIMESTAMPS", "TENSORS"]})) == both
    assert read(c.get_trace_settings(model_name="simple")) == both
    with pytest.raises(InferenceServerException, match="Request for unknown model : does-not-exist"):
        c.update_trace_settings(model_name="does-not-exist", settings={"trace_rate": "2"})


def test_trace_api_clear_settings(api):
    """With the model's trace_count for the QA's log_frequency (refused on a
    model: docs/OBSERVABILITY.md). tritonserver 2.51 passes it."""
    c, read, initial = api
    c.update_trace_settings(model_name="simple", settings={"trace_rate": "12", "trace_count": "34"})
    c.update_trace_settings(settings={"trace_rate": "56", "trace_count": "78", "trace_level": ["OFF"]})
    off = dict(initial, trace_level=["OFF"])
    assert read(c.update_trace_settings(settings={"trace_rate": None, "trace_count": None})) == off
    assert read(c.get_trace_settings(model_name="simple")) == dict(off, trace_rate="12", trace_count="34")
    assert read(c.update_trace_settings(model_name="simple", settings={"trace_rate": None, "trace_level": None})) == \
        dict(off, trace_count="34")
    assert read(c.get_trace_settings()) == off


def test_trace_settings_of_models_loaded_unloaded_and_reloaded(tmp_path):
    """L0_trace, explicit model control, and its `--trace-config=triton,file=
    bls_trace.log level=TIMESTAMPS rate=4 count=6 mode=triton`: tritonserver
    2.51 answered those settings for the model, and the same codes."""
    f = tmp_path / "bls_trace.log"
    with served(trace_repository(tmp_path / "repo"), "--model-control-mode", "explicit",
                f"--trace-config=triton,file={f}", "--trace-config=level=TIMESTAMPS", "--trace-config=rate=4",
                "--trace-config=count=6", "--trace-config=mode=triton") as (http, _, _):
        base = f"http://{http}/v2"
        codes = lambda m: (requests.get(f"{base}/models/{m}/trace/setting").status_code,
                           requests.post(f"{base}/models/{m}/trace/setting", json={"trace_rate": "2"}).status_code)
        seen = [codes("does-not-exist")]
        for action in ("load", "unload", "load"):
            assert requests.post(f"{base}/repository/models/simple/{action}").status_code == 200
            seen.append(codes("simple"))
        assert seen == [(400, 400), (200, 200), (400, 400), (200, 200)]
        assert requests.get(f"{base}/trace/setting").json() == {
            "trace_level": ["TIMESTAMPS"], "trace_rate": "4", "trace_count": "6", "log_frequency": "0",
            "trace_file": str(f), "trace_mode": "triton"}


@pytest.fixture(scope="module")
def otel(tmp_path_factory):
    """L0_trace's OpenTelemetry settings for `simple` (no collector needed)."""
    with served(trace_repository(tmp_path_factory.mktemp("qa_otel")), "--trace-config", "mode=opentelemetry",
                "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
                "--trace-config", "opentelemetry,url=localhost:10000/v1/traces") as (http, _, _):
        yield requests.get(f"http://{http}/v2/models/simple/trace/setting").json()


def test_opentelemetry_mode_settings(otel):
    """tritonserver 2.51 answered these, no trace_file or log_frequency."""
    assert [otel[k] for k in ("trace_level", "trace_rate", "trace_count", "trace_mode")] == [
        ["TIMESTAMPS"], "1", "-1", "opentelemetry"] and "trace_file" not in otel and "log_frequency" not in otel


def test_opentelemetry_mode_settings_show_the_batch_processor(otel):
    """L0_trace greps them: tritonserver 2.51 answered "512", "5000", "2048"."""
    assert [otel.get(f"bsp_{k}") for k in ("max_export_batch_size", "schedule_delay", "max_queue_size")] == [
        "512", "5000", "2048"]


def test_opentelemetry_mode_settings_show_the_url_as_given(otel):
    """tritonserver 2.51 answered the url as given (none when none given)."""
    assert otel["url"] == "localhost:10000/v1/traces"


@pytest.mark.parametrize("level", ["MIN", "MAX"])
def test_tritons_older_trace_level_names(tmp_path, level):
    """L0_cmdline_trace: tritonserver 2.51 took both as TIMESTAMPS."""
    with served(tmp_path, "--trace-file", str(tmp_path / "t.json"), f"--trace-level={level}") as (http, _, _):
        assert requests.get(f"http://{http}/v2/trace/setting").json()["trace_level"] == ["TIMESTAMPS"]
