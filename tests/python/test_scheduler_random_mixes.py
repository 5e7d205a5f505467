"""The scheduler, tested by seeded random mixes against numpy.

Where this comes from: docs/SERVING.md "Queue, batching and instances",
"Rate limiter", "Sequence models", "Response cache", "Statistics" and
"Errors", and docs/FROM_TRITON.md (the request `timeout`). The other suites
check each scheduler feature on its own with hand-picked cases
(test_triton_qa_batching.py, test_scheduling_failures.py,
test_stress_invariants.py, ...); this one is a randomized differential test:

- per seed, a few small ONNX models made here with the `onnx` package, each
  with a random but valid config (`max_batch_size`, `dynamic_batching` with
  random preferred sizes, delays, priority levels, default and per-level
  queue policies with REJECT or DELAY, `max_queue_size`, timeouts and
  overrides, `preserve_ordering`, `instance_group` counts, `rate_limiter`
  resources, `response_cache`): `affine` (Y = X * k + c, FP32),
  `pair` (SUM = A + B, DIFF = A - B, INT32) and `seq` (a sequence model with
  the `direct` or `oldest` strategy, implicit state keeping a running sum,
  a START control and a CORRID control echoed back); and, for some seeds,
  a model asking for `allow_ragged_batch`, which anemone refuses at load by
  design (SERVING.md "What config.pbtxt may say": every other field that is
  set is refused, naming it; the hint says anemone does not do ragged
  batching), so the check there is that it is UNAVAILABLE naming the field;
- one server serves every seed's models (names `s<seed>_...`, so each seed
  reads its own statistics); per seed, threads send a random mix over HTTP
  (tritonclient, JSON and binary) and gRPC: random batch sizes up to
  `max_batch_size`, random sizes where dims are -1, random priorities
  (also past the model's levels) and request timeouts, gRPC calls cancelled
  at random, HTTP clients that hang up, gRPC streams, and whole sequences;
- invariants: every answered request got exactly its own rows (numpy);
  every call answered exactly once (a stream's ids once each, a cancelled
  call's callback once), nothing hangs (client timeouts of 60 s); refusals
  only where documented: 503 / UNAVAILABLE "queue ... full" only where the
  request's level has a `max_queue_size`, 504 / DEADLINE_EXCEEDED only where a
  queue timeout (REJECT) or a request `timeout` (FROM_TRITON.md: also a
  deadline, except under DELAY with `allow_timeout_override`) applies;
  with `preserve_ordering` a stream's answers come in the order sent; the
  statistics add up (success and fail against what the clients saw, give or
  take the cancelled / hung-up calls, `inference_count >= execution_count`,
  `batch_stats` summing to both, no batch above `max_batch_size`, and
  `inference_count` equal to the rows answered, less cache hits);
- priorities, in their own test: a high-priority request sent behind a
  low-priority backlog on a slow (Python, 100 ms a call) one-row model
  finishes with at least a third of the backlog still behind it.

Seeds: `SEEDS` below (16); `ANEMONE_MIX_SEED=N` runs seed N alone (a failure
message starts with its seed, so it can be replayed that way; the config of
every model is in the message too).

Excluded combinations: only configs anemone refuses at load as Triton does
(`preserve_ordering` with more than one priority level, or with a DELAY
queue policy). No defect was found in the mixes run on 2026-12-06 (seeds
1-110, `ANEMONE_MIX_SEEDS=25-110` for the extra ones), so no mix is excluded.
Triton 2.51 was not run against these mixes (it has no ONNX Runtime backend
here); the documented differences the checks take into account are the
504 for a queue timeout (Triton: 503) and the request `timeout` as a
deadline on every model (Triton: a queue timeout only).
"""
import collections
import concurrent.futures
import json
import os
import queue
import random
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_support import start_serve, stop_serve, wait_ready  # noqa: E402

# ANEMONE_MIX_SEED=N replays seed N alone; ANEMONE_MIX_SEEDS=A-B runs seeds A to B (to explore more).
if os.environ.get("ANEMONE_MIX_SEED"):
    SEEDS = [int(os.environ["ANEMONE_MIX_SEED"])]
elif os.environ.get("ANEMONE_MIX_SEEDS"):
    _a, _b = os.environ["ANEMONE_MIX_SEEDS"].split("-")
    SEEDS = list(range(int(_a), int(_b) + 1))
else:
    SEEDS = list(range(1, 13))  # 12 in CI's time; ANEMONE_MIX_SEEDS for more
THREADS = 8
OPS_PER_THREAD = 12
CLIENT_TIMEOUT = 60


# ------------------------------------------------------------------ models
def _save(graph, path):
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_operatorsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _vi(name, dtype, shape):
    return onnx.helper.make_tensor_value_info(name, dtype, shape)


def affine_onnx(path, mb, dims, k, c):
    f32 = onnx.TensorProto.FLOAT
    shape = ([None] if mb else []) + [d if d != -1 else f"d{i}" for i, d in enumerate(dims)]
    inits = [onnx.helper.make_tensor("k", f32, [], [k]), onnx.helper.make_tensor("c", f32, [], [c])]
    nodes = [onnx.helper.make_node("Mul", ["X", "k"], ["xk"]), onnx.helper.make_node("Add", ["xk", "c"], ["Y"])]
    _save(onnx.helper.make_graph(nodes, "affine", [_vi("X", f32, shape)], [_vi("Y", f32, shape)], inits), path)


def pair_onnx(path, mb, dims):
    i32 = onnx.TensorProto.INT32
    shape = ([None] if mb else []) + [d if d != -1 else f"d{i}" for i, d in enumerate(dims)]
    nodes = [onnx.helper.make_node("Add", ["A", "B"], ["SUM"]), onnx.helper.make_node("Sub", ["A", "B"], ["DIFF"])]
    graph = onnx.helper.make_graph(nodes, "pair", [_vi("A", i32, shape), _vi("B", i32, shape)],
                                   [_vi("SUM", i32, shape), _vi("DIFF", i32, shape)])
    _save(graph, path)


def seq_onnx(path):
    """OUTPUT = STATE_IN + INPUT + 1000 * START, STATE_OUT = STATE_IN + INPUT,
    CID = CORRID: a running sum per sequence, its start marked, its id echoed."""
    f32, i32, u64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32, onnx.TensorProto.UINT64
    b = [None, 1]
    ins = [_vi("INPUT", f32, b), _vi("STATE_IN", f32, b), _vi("START", i32, b), _vi("CORRID", u64, b)]
    outs = [_vi("OUTPUT", f32, b), _vi("STATE_OUT", f32, b), _vi("CID", u64, b)]
    inits = [onnx.helper.make_tensor("thousand", f32, [], [1000.0])]
    nodes = [
        onnx.helper.make_node("Add", ["STATE_IN", "INPUT"], ["STATE_OUT"]),
        onnx.helper.make_node("Cast", ["START"], ["startf"], to=f32),
        onnx.helper.make_node("Mul", ["startf", "thousand"], ["bonus"]),
        onnx.helper.make_node("Add", ["STATE_OUT", "bonus"], ["OUTPUT"]),
        onnx.helper.make_node("Identity", ["CORRID"], ["CID"]),
    ]
    _save(onnx.helper.make_graph(nodes, "seq", ins, outs, inits), path)


PRIO_MODEL = '''import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.1)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * 2).astype(np.float32))]))
        return out
'''
PRIO_CONFIG = '''name: "prio"
backend: "python"
max_batch_size: 1
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { priority_levels: 2 default_priority_level: 2 }
instance_group [ { count: 1 kind: KIND_CPU } ]
'''


# ------------------------------------------------------------------ random configs
class Policy:
    def __init__(self, max_queue_size=0, timeout_us=0, override=False, action="REJECT"):
        self.max_queue_size, self.timeout_us, self.override, self.action = max_queue_size, timeout_us, override, action

    def text(self):
        return (f"max_queue_size: {self.max_queue_size} default_timeout_microseconds: {self.timeout_us} "
                f"allow_timeout_override: {str(self.override).lower()} timeout_action: {self.action}")


class Spec:
    """One generated model: its kind, its config's scheduling choices, and the
    rules that say which refusals it may give."""

    def __init__(self, name, kind, mb, dims):
        self.name, self.kind, self.mb, self.dims = name, kind, mb, dims
        self.queue = False            # has dynamic_batching
        self.levels = 0
        self.default_level = 1
        self.policies = {}            # level -> Policy (levels without an entry: the default policy)
        self.default_policy = Policy()
        self.preferred, self.delay_us, self.preserve = [], 0, False
        self.count, self.rate_limited, self.cache = 1, False, False
        self.k = self.c = 0.0
        self.strategy = None
        self.config = ""

    def level_of(self, priority):
        if self.levels and 1 <= priority <= self.levels:
            return priority
        return self.default_level if self.levels else 1

    def policy(self, priority):
        return self.policies.get(self.level_of(priority), self.default_policy)

    def may_refuse_full(self, priority):
        return self.queue and self.policy(priority).max_queue_size > 0

    def may_time_out(self, priority, timeout_us):
        """SERVING.md "Refusals and timeouts" and FROM_TRITON.md (the request
        `timeout` is also a deadline on every model, except that under DELAY a
        policy that takes it only delays the request)."""
        if not self.queue:
            return bool(timeout_us)
        pol = self.policy(priority)
        if timeout_us and not (pol.override and pol.action == "DELAY"):
            return True
        return pol.timeout_us > 0 and pol.action == "REJECT"


def random_policy(rng):
    return Policy(max_queue_size=rng.choice([0, 0, 2, 4, 8]), timeout_us=rng.choice([0, 0, 3000, 50000, 2000000]),
                  override=rng.random() < 0.5, action=rng.choice(["REJECT", "DELAY"]))


def gen_dynamic_batching(rng, spec):
    spec.queue = True
    parts = []
    if spec.mb > 1 and rng.random() < 0.6:
        spec.preferred = sorted(set(rng.randint(1, spec.mb) for _ in range(rng.randint(1, 3))))
        parts.append(f"preferred_batch_size: [ {', '.join(map(str, spec.preferred))} ]")
    spec.delay_us = rng.choice([0, 200, 2000, 20000])
    parts.append(f"max_queue_delay_microseconds: {spec.delay_us}")
    if rng.random() < 0.45:
        spec.levels = rng.choice([2, 3])
        spec.default_level = rng.randint(1, spec.levels)
        parts.append(f"priority_levels: {spec.levels} default_priority_level: {spec.default_level}")
        for level in range(1, spec.levels + 1):
            if rng.random() < 0.3:
                spec.policies[level] = random_policy(rng)
                parts.append(f"priority_queue_policy {{ key: {level} value: {{ {spec.policies[level].text()} }} }}")
    elif rng.random() < 0.4:
        spec.preserve = True
        parts.append("preserve_ordering: true")
    if rng.random() < 0.6:
        spec.default_policy = random_policy(rng)
        if spec.preserve:   # refused at load with DELAY, as in Triton ("a delayed request would be answered out of order")
            spec.default_policy.action = "REJECT"
        parts.append(f"default_queue_policy {{ {spec.default_policy.text()} }}")
    return "dynamic_batching {\n  " + "\n  ".join(parts) + "\n}\n"


def gen_common(rng, spec):
    spec.count = rng.randint(1, 3)
    group = f"count: {spec.count} kind: KIND_CPU"
    if spec.queue and rng.random() < 0.25:
        spec.rate_limited = True
        group += (f" rate_limiter {{ resources [ {{ name: \"R{rng.randint(1, 2)}\" count: {rng.randint(1, 2)} }} ]"
                  f" priority: {rng.randint(0, 2)} }}")
    text = f"instance_group [ {{ {group} }} ]\n"
    if spec.kind != "seq" and rng.random() < 0.3:
        spec.cache = True
        text += "response_cache { enable: true }\n"
    return text


def gen_models(seed, repo):
    """Writes seed `seed`'s models into `repo`; returns their Specs."""
    rng = random.Random(seed * 7919)
    specs = []
    for kind in ("affine", "pair"):
        mb = rng.choice([0, 1, 2, 4, 8, 16]) if kind == "affine" else rng.choice([1, 3, 8])
        dims = rng.choice([[-1], [4], [-1, 3]]) if kind == "affine" else rng.choice([[-1], [3]])
        spec = Spec(f"s{seed}_{kind}", kind, mb, dims)
        dtype = "TYPE_FP32" if kind == "affine" else "TYPE_INT32"
        d = ", ".join(map(str, dims))
        ins, outs = (["X"], ["Y"]) if kind == "affine" else (["A", "B"], ["SUM", "DIFF"])
        text = f'name: "{spec.name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {mb}\n'
        text += "input [ " + ", ".join(f'{{ name: "{n}" data_type: {dtype} dims: [ {d} ] }}' for n in ins) + " ]\n"
        text += "output [ " + ", ".join(f'{{ name: "{n}" data_type: {dtype} dims: [ {d} ] }}' for n in outs) + " ]\n"
        if mb > 0 and rng.random() < 0.85:
            text += gen_dynamic_batching(rng, spec)
        text += gen_common(rng, spec)
        spec.config = text
        path = repo / spec.name / "1" / "model.onnx"
        if kind == "affine":
            spec.k, spec.c = rng.choice([0.5, 1.5, 2.0, 3.0]), rng.choice([-1.25, 0.5, 3.0])
            affine_onnx(path, mb, dims, spec.k, spec.c)
        else:
            pair_onnx(path, mb, dims)
        (repo / spec.name / "config.pbtxt").write_text(text)
        specs.append(spec)

    seq = Spec(f"s{seed}_seq", "seq", rng.choice([1, 2, 4, 8]), [1])
    seq.strategy = rng.choice(["direct", "oldest"])
    delay = rng.choice([0, 500, 5000])
    if seq.strategy == "direct":
        strat = f"direct {{ max_queue_delay_microseconds: {delay} }}"
    else:
        pref = f" preferred_batch_size: [ {rng.randint(1, seq.mb)} ]" if rng.random() < 0.5 else ""
        strat = f"oldest {{ max_candidate_sequences: 8 max_queue_delay_microseconds: {delay}{pref} }}"
    seq.config = (
        f'name: "{seq.name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {seq.mb}\n'
        'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "CID" data_type: TYPE_UINT64 dims: [ 1 ] } ]\n'
        "sequence_batching {\n  max_sequence_idle_microseconds: 10000000\n  " + strat + "\n"
        '  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },\n'
        '                  { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] } ]\n'
        '  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]\n}\n'
        + gen_common(rng, seq))
    seq_onnx(repo / seq.name / "1" / "model.onnx")
    (repo / seq.name / "config.pbtxt").write_text(seq.config)
    specs.append(seq)

    if rng.random() < 0.4:
        name = f"s{seed}_ragged"
        (repo / name).mkdir()
        affine_onnx(repo / name / "1" / "model.onnx", 4, [-1], 1.0, 0.0)
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
            'input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]\ndynamic_batching { }\n')
        specs.append(Spec(name, "ragged", 4, [-1]))
    return specs


# ------------------------------------------------------------------ server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("mixes")
    specs = {seed: gen_models(seed, repo) for seed in SEEDS}
    (repo / "prio" / "1").mkdir(parents=True)
    (repo / "prio" / "config.pbtxt").write_text(PRIO_CONFIG)
    (repo / "prio" / "1" / "model.py").write_text(PRIO_MODEL)
    # The ragged models never load: readiness without them (Triton's flag).
    proc, addresses = start_serve(repo, "--cache-config", "local,size=1MiB", "--rate-limit", "execution_count",
                                  "--strict-readiness", "false")
    # The server prints a table of every model on stdout: read it away, so that
    # a large repository cannot fill the pipe (the server would block writing).
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    http = addresses["HTTP"].replace("http://", "")
    grpc = addresses["gRPC"].replace("http://", "")
    try:
        wait_ready(http, 180)
        yield {"http": http, "grpc": grpc, "specs": specs, "proc": proc}
    finally:
        stop_serve(proc)


# ------------------------------------------------------------------ requests
class Outcome:
    def __init__(self, spec, proto, rows, priority, timeout_us, how):
        self.spec, self.proto, self.rows, self.priority, self.timeout_us, self.how = (
            spec, proto, rows, priority, timeout_us, how)
        self.status = None            # "ok", "full", "timeout", "cancelled", "unknown"
        self.note = ""


def make_inputs(spec, rng, pools):
    """Random rows for `spec` (from a small pool for a cached model, so that hits happen)."""
    rows = rng.randint(1, spec.mb) if spec.mb else 0
    shape = ([rows] if spec.mb else []) + [rng.choice([2, 3, 5]) if d == -1 else d for d in spec.dims]
    nrng = np.random.default_rng(rng.randrange(2 ** 31))
    if spec.cache:
        key = (spec.name, tuple(shape))
        pools.setdefault(key, [nrng.integers(-50, 50, size=(2, *shape)) for _ in range(2)])
        base = pools[key][rng.randrange(2)]
    else:
        base = nrng.integers(-1000, 1000, size=(2, *shape))
    if spec.kind == "affine":
        x = base[0].astype(np.float32)
        return max(rows, 1), {"X": x}, {"Y": (x * np.float32(spec.k) + np.float32(spec.c)).astype(np.float32)}
    a, b = base[0].astype(np.int32), base[1].astype(np.int32)
    return max(rows, 1), {"A": a, "B": b}, {"SUM": a + b, "DIFF": a - b}


def tensors(module, inputs, binary=True):
    out = []
    for name, arr in inputs.items():
        t = module.InferInput(name, list(arr.shape), "FP32" if arr.dtype == np.float32 else "INT32")
        if module is httpclient:
            t.set_data_from_numpy(arr, binary_data=binary)
        else:
            t.set_data_from_numpy(arr)
        out.append(t)
    return out


def classify(out, exc, ctx):
    """Sets out.status from an exception; a refusal not documented for this
    request is recorded as a problem."""
    status, msg = str(exc.status()), str(exc.message())
    spec = out.spec
    if status in ("503", "StatusCode.UNAVAILABLE") and "queue" in msg and "full" in msg \
            and spec.may_refuse_full(out.priority):
        out.status = "full"
    elif status in ("504", "StatusCode.DEADLINE_EXCEEDED") and spec.may_time_out(out.priority, out.timeout_us):
        out.status = "timeout"
    elif out.how == "cancel" and status == "StatusCode.CANCELLED":
        out.status = "cancelled"
    else:
        out.status = "bad"
        ctx["problems"].append(f"{spec.name} ({out.how} over {out.proto}, priority {out.priority}, "
                               f"timeout {out.timeout_us}): undocumented refusal {status}: {msg[:300]}")


def check_values(out, got, expected, ctx):
    for name, want in expected.items():
        arr = got(name)
        if arr is None or arr.shape != want.shape or not np.array_equal(arr, want):
            out.status = "bad"
            ctx["problems"].append(f"{out.spec.name} ({out.how} over {out.proto}): output {name} is not this "
                                   f"request's rows: got {None if arr is None else arr.tolist()}, want {want.tolist()}")
            return
    out.status = "ok"


def pick_params(spec, rng):
    priority, timeout_us = 0, None
    if spec.cache and rng.random() < 0.6:
        return priority, timeout_us           # no parameters: may come from the cache
    if rng.random() < 0.5:
        priority = rng.randint(0, spec.levels + 2)
    if rng.random() < 0.3:
        timeout_us = rng.choice([1000, 20000, 3000000])
    return priority, timeout_us


def op_infer(ctx, rng, spec, clients):
    proto = rng.choice(["http", "grpc"])
    priority, timeout_us = pick_params(spec, rng)
    rows, inputs, expected = make_inputs(spec, rng, ctx["pools"])
    out = Outcome(spec, proto, rows, priority, timeout_us or 0, "infer")
    try:
        if proto == "http":
            res = clients["http"].infer(spec.name, tensors(httpclient, inputs, rng.random() < 0.7),
                                        priority=priority, timeout=timeout_us)
        else:
            res = clients["grpc"].infer(spec.name, tensors(grpcclient, inputs), priority=priority,
                                        timeout=timeout_us, client_timeout=CLIENT_TIMEOUT)
        check_values(out, res.as_numpy, expected, ctx)
    except InferenceServerException as e:
        classify(out, e, ctx)
    return [out]


def op_cancel(ctx, rng, spec, clients):
    """A gRPC call cancelled after 0-10 ms: its callback comes exactly once."""
    rows, inputs, expected = make_inputs(spec, rng, ctx["pools"])
    out = Outcome(spec, "grpc", rows, 0, 0, "cancel")
    calls = queue.Queue()
    handle = clients["grpc"].async_infer(spec.name, tensors(grpcclient, inputs),
                                         callback=lambda result, error: calls.put((result, error)), client_timeout=CLIENT_TIMEOUT)
    time.sleep(rng.random() * 0.01)
    handle.cancel()
    try:
        res, err = calls.get(timeout=CLIENT_TIMEOUT)
    except queue.Empty:
        ctx["problems"].append(f"{spec.name}: a cancelled gRPC call's callback never came")
        out.status = "bad"
        return [out]
    if err is not None:
        classify(out, err, ctx)
    else:
        check_values(out, res.as_numpy, expected, ctx)
    time.sleep(0.05)
    if not calls.empty():
        ctx["problems"].append(f"{spec.name}: a cancelled gRPC call's callback came twice")
    if out.status != "bad":
        out.status = "cancelled"          # whether it ran is the server's choice: counted loosely
    return [out]


def op_disconnect(ctx, rng, spec, clients):
    """An HTTP client that sends its request and hangs up after 0-5 ms."""
    rows, inputs, _ = make_inputs(spec, rng, ctx["pools"])
    body = json.dumps({"inputs": [{"name": n, "shape": list(a.shape), "datatype": "FP32" if a.dtype == np.float32
                                   else "INT32", "data": a.flatten().tolist()} for n, a in inputs.items()]}).encode()
    host, port = ctx["http"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /v2/models/{spec.name}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(rng.random() * 0.005)
    out = Outcome(spec, "http", rows, 0, 0, "disconnect")
    out.status = "cancelled"
    return [out]


def op_stream(ctx, rng, spec, clients):
    """3-6 requests on one gRPC stream: each id answered once; with
    `preserve_ordering`, in the order sent (SERVING.md: "answers leave in
    arrival order")."""
    client = grpcclient.InferenceServerClient(ctx["grpc"])
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    sent = {}
    try:
        for i in range(rng.randint(3, 6)):
            rows, inputs, expected = make_inputs(spec, rng, ctx["pools"])
            sent[str(i)] = (Outcome(spec, "grpc-stream", rows, 0, 0, "stream"), expected)
            client.async_stream_infer(spec.name, tensors(grpcclient, inputs), request_id=str(i))
        order, errors = [], []
        for _ in sent:
            try:
                res, err = got.get(timeout=CLIENT_TIMEOUT)
            except queue.Empty:
                ctx["problems"].append(f"{spec.name}: a stream answered {len(order) + len(errors)} of {len(sent)}")
                break
            if err is not None:
                errors.append(err)
                continue
            rid = res.get_response().id
            if rid not in sent or rid in order:
                ctx["problems"].append(f"{spec.name}: stream answer for id {rid!r} unexpected or twice")
                continue
            order.append(rid)
            out, expected = sent[rid]
            check_values(out, res.as_numpy, expected, ctx)
    finally:
        client.stop_stream()
        client.close()
    if spec.preserve and order != sorted(order, key=int):
        ctx["problems"].append(f"{spec.name} (preserve_ordering): stream answers came in order {order}")
    # An error on a stream names no id: the ids not answered are the refused ones, each allowed or not.
    rest = [sent[i][0] for i in sent if i not in order]
    if len(rest) != len(errors):
        ctx["problems"].append(f"{spec.name}: stream of {len(sent)}: {len(order)} answers + {len(errors)} errors")
    for out, err in zip(rest, errors):
        classify(out, InferenceServerException(str(err.message()), status=_stream_status(err)), ctx)
    return [o for o, _ in sent.values()]


def _stream_status(err):
    """A stream error carries its message only: map the documented messages to statuses."""
    msg = str(err.message())
    if "full" in msg:
        return "StatusCode.UNAVAILABLE"
    if "timeout" in msg.lower() or "deadline" in msg.lower():
        return "StatusCode.DEADLINE_EXCEEDED"
    return str(err.status())


def op_sequence(ctx, rng, spec, clients, seq_id):
    """A whole sequence of 2-5 requests, each over HTTP or gRPC at random."""
    total, outs = 0.0, []
    n = rng.randint(2, 5)
    for step in range(n):
        value = float(rng.randint(-100, 100))
        start, end = step == 0, step == n - 1
        total += value
        x = np.array([[value]], dtype=np.float32)
        proto = rng.choice(["http", "grpc"])
        out = Outcome(spec, proto, 1, 0, 0, "seq")
        expected = {"OUTPUT": np.array([[total + (1000.0 if start else 0.0)]], dtype=np.float32),
                    "CID": np.array([[seq_id]], dtype=np.uint64)}
        try:
            if proto == "http":
                res = clients["http"].infer(spec.name, tensors(httpclient, {"INPUT": x}, rng.random() < 0.5),
                                            sequence_id=seq_id, sequence_start=start, sequence_end=end)
            else:
                res = clients["grpc"].infer(spec.name, tensors(grpcclient, {"INPUT": x}), sequence_id=seq_id,
                                            sequence_start=start, sequence_end=end, client_timeout=CLIENT_TIMEOUT)
            check_values(out, res.as_numpy, expected, ctx)
        except InferenceServerException as e:
            out.status = "bad"
            ctx["problems"].append(f"{spec.name} sequence {seq_id} step {step}: {e.status()} {e.message()}")
        outs.append(out)
        if out.status != "ok":
            break
    return outs


def run_mix(server, seed):
    rng = random.Random(seed)
    specs = [s for s in server["specs"][seed] if s.kind in ("affine", "pair")]
    seq = next(s for s in server["specs"][seed] if s.kind == "seq")
    ctx = {"problems": [], "pools": {}, "http": server["http"], "grpc": server["grpc"]}
    plans = [random.Random(rng.randrange(2 ** 31)) for _ in range(THREADS)]

    def worker(t):
        trng = plans[t]
        clients = {"http": httpclient.InferenceServerClient(server["http"], network_timeout=CLIENT_TIMEOUT),
                   "grpc": grpcclient.InferenceServerClient(server["grpc"])}
        outs = []
        try:
            for i in range(OPS_PER_THREAD):
                r, spec = trng.random(), trng.choice(specs)
                if r < 0.18:
                    outs += op_sequence(ctx, trng, seq, clients, seed * 1_000_000 + t * 1000 + i + 1)
                elif r < 0.20:
                    outs += op_stream(ctx, trng, spec, clients)
                elif r < 0.25:
                    outs += op_cancel(ctx, trng, spec, clients)
                elif r < 0.30:
                    outs += op_disconnect(ctx, trng, spec, clients)
                else:
                    outs += op_infer(ctx, trng, spec, clients)
        finally:
            clients["http"].close()
            clients["grpc"].close()
        return outs

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, t) for t in range(THREADS)]
        outcomes = []
        for f in futures:
            outcomes += f.result(timeout=300)
    return ctx["problems"], outcomes


# ------------------------------------------------------------------ statistics
def model_stats(http, name):
    r = requests.get(f"http://{http}/v2/models/{name}/stats", timeout=10)
    r.raise_for_status()
    return r.json()["model_stats"][0]


def settled_stats(http, name, at_least):
    """The model's statistics once they stop changing (a hung-up client's
    request may still be queued or running for a moment)."""
    deadline, last = time.time() + 15, None
    while True:
        s = model_stats(http, name)
        done = s["inference_stats"]["success"]["count"] + s["inference_stats"]["fail"]["count"]
        key = (done, s["execution_count"], s["inference_count"])
        if key == last and done >= at_least or time.time() > deadline:
            return s
        last = key
        time.sleep(0.3)


def check_stats(http, spec, outs):
    """SERVING.md "Statistics": success and fail count requests that were
    queued or run (not those refused at once: a full queue); a cache hit is a
    success that runs nothing; `inference_count` counts the rows of
    successful engine calls; `batch_stats` has one entry per size."""
    problems = []
    ok = [o for o in outs if o.status == "ok"]
    timed_out = [o for o in outs if o.status == "timeout"]
    loose = [o for o in outs if o.status == "cancelled"]
    s = settled_stats(http, spec.name, len(ok) + len(timed_out))
    inf = s["inference_stats"]
    success, fail = inf["success"]["count"], inf["fail"]["count"]
    hits = inf["cache_hit"]["count"]
    where = f"{spec.name}: stats {json.dumps({k: s[k] for k in ('inference_count', 'execution_count')})} " \
            f"success {success} fail {fail} hits {hits}; clients saw {len(ok)} ok, {len(timed_out)} timeouts, " \
            f"{len(loose)} cancelled or hung up:"
    if not len(ok) <= success <= len(ok) + len(loose):
        problems.append(f"{where} success count")
    if not len(timed_out) <= fail <= len(timed_out) + len(loose):
        problems.append(f"{where} fail count")
    if not spec.cache and hits:
        problems.append(f"{where} cache hits on a model without the cache")
    if s["inference_count"] < s["execution_count"]:
        problems.append(f"{where} inference_count < execution_count")
    batches = s["batch_stats"]
    rows_in_batches = sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches)
    calls_in_batches = sum(b["compute_infer"]["count"] for b in batches)
    if spec.mb and rows_in_batches != s["inference_count"]:
        problems.append(f"{where} batch_stats rows {rows_in_batches} != inference_count")
    if calls_in_batches != s["execution_count"]:
        problems.append(f"{where} batch_stats calls {calls_in_batches} != execution_count")
    if spec.mb and any(b["batch_size"] > spec.mb for b in batches):
        problems.append(f"{where} a batch above max_batch_size {spec.mb}: {batches}")
    ok_rows = sum(o.rows for o in ok)
    upper = ok_rows + sum(o.rows for o in timed_out + loose)
    lower = ok_rows - hits * max(spec.mb, 1)
    if not lower <= s["inference_count"] <= upper:
        problems.append(f"{where} inference_count outside [{lower}, {upper}] (rows answered {ok_rows})")
    return problems


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("seed", SEEDS)
def test_a_random_mix_gets_its_own_rows_documented_refusals_and_statistics_that_add_up(server, seed):
    """Per seed: the random mix (module docstring), then each model's
    statistics against what its clients saw. A failure names the seed
    (replay with ANEMONE_MIX_SEED=<seed>) and prints every model's config."""
    specs = server["specs"][seed]
    problems, outcomes = run_mix(server, seed)
    for spec in specs:
        if spec.kind == "ragged":
            continue
        problems += check_stats(server["http"], spec, [o for o in outcomes if o.spec is spec])
    seen = collections.Counter(f"{o.how}:{o.status}" for o in outcomes)
    stats = {s.name: model_stats(server["http"], s.name) for s in specs if s.kind != "ragged"}
    print(f"seed {seed}: {dict(seen)}; batches " + "; ".join(
        f"{n} {[(b['batch_size'], b['compute_infer']['count']) for b in st['batch_stats']]} "
        f"hits {st['inference_stats']['cache_hit']['count']}" for n, st in stats.items()))
    configs = "\n".join(f"--- {s.name}\n{s.config}" for s in specs)
    assert not problems, f"seed {seed} (ANEMONE_MIX_SEED={seed}):\n" + "\n".join(problems[:20]) + "\n" + configs
    # The mix did reach the models (a test that could pass by sending nothing would prove nothing).
    assert sum(o.status == "ok" for o in outcomes) >= THREADS, f"seed {seed}: too few answers"


def test_the_ragged_models_are_refused_naming_the_field_and_the_others_serve(server):
    """`allow_ragged_batch` is not read by anemone: SERVING.md "What
    config.pbtxt may say" says every other field that is set is refused with
    a message naming it, the model UNAVAILABLE with that reason in the
    repository index (Triton does ragged batching; anemone says so in the
    refusal's hint: "anemone does not do ragged batching")."""
    index = requests.post(f"http://{server['http']}/v2/repository/index", json={}, timeout=10).json()
    by_name = {m["name"]: m for m in index}
    ragged = [s.name for specs in server["specs"].values() for s in specs if s.kind == "ragged"]
    others = [s.name for specs in server["specs"].values() for s in specs if s.kind != "ragged"]
    for name in ragged:
        assert by_name[name]["state"] == "UNAVAILABLE", by_name[name]
        assert "allow_ragged_batch" in by_name[name].get("reason", ""), by_name[name]
    for name in others:
        assert by_name[name]["state"] == "READY", by_name[name]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_high_priority_request_overtakes_a_low_priority_backlog(server, seed):
    """SERVING.md "Priorities": "A waiting higher-priority request overtakes
    every lower-priority one." The `prio` model (Python, 100 ms a call, one
    row a batch, one instance, levels 1 and 2, default 2) gets a backlog of
    12 default-level requests from 12 threads; 250 ms later a priority-1
    request (over HTTP or gRPC, by seed). Wide margin: at least 4 of the
    backlog (of about 9 still queued then) must finish after it."""
    rng = random.Random(seed)
    http, grpc = server["http"], server["grpc"]
    done = {}

    def send(i, priority, proto):
        x = np.array([[float(i)]], dtype=np.float32)
        if proto == "http":
            c = httpclient.InferenceServerClient(http, network_timeout=CLIENT_TIMEOUT)
            res = c.infer("prio", tensors(httpclient, {"IN": x}), priority=priority)
        else:
            c = grpcclient.InferenceServerClient(grpc)
            res = c.infer("prio", tensors(grpcclient, {"IN": x}), priority=priority, client_timeout=CLIENT_TIMEOUT)
        c.close()
        assert res.as_numpy("OUT").tolist() == [[2.0 * i]]
        done[i] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(13) as pool:
        backlog = []
        for i in range(12):
            backlog.append(pool.submit(send, i, rng.choice([0, 2, 7]), rng.choice(["http", "grpc"])))
            time.sleep(0.005)
        time.sleep(0.25)
        high = pool.submit(send, 100, 1, rng.choice(["http", "grpc"]))
        for f in backlog + [high]:
            f.result(timeout=CLIENT_TIMEOUT)
    after = sum(done[i] > done[100] for i in range(12))
    assert after >= 4, f"seed {seed}: only {after} of the 12 low-priority requests finished after the high one"
