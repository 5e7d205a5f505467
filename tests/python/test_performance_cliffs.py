"""Performance cliffs: neighbouring paths that should cost about the same.

An inference server's worst performance defects are cliffs: one path 10x-100x
slower than its neighbour because of an accidental O(n^2), a copy per
element, a per-request scan, a lock held across a slow call, Nagle's delay or
a poll loop with a sleep (an earlier round found gRPC about 40x slower
than HTTP on small requests this way: Nagle's delay, docs/PERFORMANCE.md
"gRPC latency on small requests"). Each test here times two or more
neighbours with the SAME model and data, on one server, interleaved round by
round; each round keeps a call's fastest of a few repetitions and the test
compares the median over the rounds. Only ratios with wide margins are
asserted (the machine is a shared 2-core VM and the binary may be a debug
build): a cliff breaks them, noise does not. Figures are printed (`pytest
-s`), never asserted as absolute times.

What is compared (session 44, 2026-12-06): size (1 KB to 16 MB tensors over
HTTP JSON, HTTP binary, gRPC; BYTES of 10 to 100,000 strings; 1 to 512
inputs; ensembles of 1 and 8 steps; 1 to 128 parameters); counts (600
models loaded, 1,000 shared-memory regions, 100 open gRPC streams, 200 idle
keep-alive connections, 101 live sequences, 10,000 cached answers, 1,000
more repository folders); protocol neighbours (JSON and binary, unary and
stream, gzip both ways, a new connection per request, tritonclient's aio
clients); the Python backend (1 and 8 instances under 8 clients, BLS,
1 to 1,000 decoupled responses).

Triton 2.51 (the CPU peer, Python backend only) ran the Python-model
neighbours with the same model.py files on 2026-12-06; its figures are in
the docstrings. Its ratios and anemone's agree wherever both were measured.

The defects this file found, strict xfails until fixed in session 44:
per-request endpoints that walked every loaded model (`/v2/health/live` and
`/ready` built a health report of every model, `/v2/models/{m}/stats`
snapshotted every model's metrics, model metadata scanned the model list); a
readiness probe for an unknown model that listed the repository folder on
disk every time; and routes that never read a request body (the
shared-memory unregisters, a GET with a body) closing the keep-alive
connection under it. The tests' docstrings keep the figures measured before.
"""
import gzip
import json
import os
import queue
import shutil
import socket
import statistics
import struct
import threading
import time
import http.client
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serve_support import start_serve, stop_serve, wait_ready

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

import tritonclient.grpc as grpcclient  # noqa: E402

def record(name, figures):
    """Prints a test's figures (ms) so that a run with -s gives the table."""
    print(f"\n[cliffs] {name}: " + ", ".join(f"{k}={v * 1000:.3f} ms" for k, v in figures.items()))


# ---------------------------------------------------------------- models

HEADER = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
'''

PY_IDENT = HEADER + '''
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]) for r in requests]
'''

# 20 ms per execute: eight clients against one instance queue behind it.
PY_SLEEP = PY_IDENT.replace("    def execute(self, requests):\n",
                            "    def execute(self, requests):\n        __import__('time').sleep(0.02)\n")

PY_BLS = HEADER + '''
class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0")
            resp = pb_utils.InferenceRequest(model_name="py_ident", requested_output_names=["OUTPUT0"],
                                             inputs=[x]).exec()
            if resp.has_error():
                raise pb_utils.TritonModelException(resp.error().message())
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_output_tensor_by_name(resp, "OUTPUT0").as_numpy())]))
        return out
'''

# Decoupled: N responses (IDX = 0..N-1), then the final flag alone.
PY_REPEAT = HEADER + '''
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "N").as_numpy()[0])
            s = r.get_response_sender()
            for i in range(n):
                s.send(pb_utils.InferenceResponse([pb_utils.Tensor("IDX", np.array([i], np.int32))]))
            s.send(flags=FINAL)
        return None
'''

F32IO = ('max_batch_size: 0\ninput [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
         'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n')
BYTESIO = F32IO.replace("TYPE_FP32", "TYPE_STRING")
REPEATIO = ('max_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n'
            'input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
            'output [ { name: "IDX" data_type: TYPE_INT32 dims: [ 1 ] } ]\n')


def _save(graph, folder):
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)])
    model.ir_version = 8  # this ONNX Runtime refuses the package's newest IR
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))


def onnx_identity(repo, name, n=1, dtype=TensorProto.FLOAT, dt="TYPE_FP32", extra=""):
    """An ONNX model of `n` Identity nodes INPUTk -> OUTPUTk, rank 1, any length."""
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", [f"INPUT{k}"], [f"OUTPUT{k}"]) for k in range(n)], "g",
                              [vi(f"INPUT{k}", dtype, ["n"]) for k in range(n)],
                              [vi(f"OUTPUT{k}", dtype, ["n"]) for k in range(n)])
    _save(graph, repo / name / "1")
    config = f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
    for k in range(n):
        config += (f'input [ {{ name: "INPUT{k}" data_type: {dt} dims: [ -1 ] }} ]\n'
                   f'output [ {{ name: "OUTPUT{k}" data_type: {dt} dims: [ -1 ] }} ]\n')
    (repo / name / "config.pbtxt").write_text(config + extra)


def ensemble(repo, name, steps):
    """`steps` calls of `ident` in a chain."""
    text = (f'name: "{name}"\nplatform: "ensemble"\n' + F32IO + 'ensemble_scheduling { step [\n')
    for s in range(steps):
        src = "INPUT0" if s == 0 else f"t{s}"
        dst = "OUTPUT0" if s == steps - 1 else f"t{s + 1}"
        text += (f'  {{ model_name: "ident" model_version: -1 input_map {{ key: "INPUT0" value: "{src}" }}'
                 f' output_map {{ key: "OUTPUT0" value: "{dst}" }} }}' + (",\n" if s < steps - 1 else "\n"))
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(text + "] }\n")


def py_model(repo, name, source, io, extra=""):
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "1" / "model.py").write_text(source)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "python"\n' + io + extra)


def sequence_model(repo):
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "g",
                              [vi("INPUT0", TensorProto.FLOAT, ["b", "n"])], [vi("OUTPUT0", TensorProto.FLOAT, ["b", "n"])])
    _save(graph, repo / "seq" / "1")
    (repo / "seq" / "config.pbtxt").write_text(
        'name: "seq"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        'sequence_batching { max_sequence_idle_microseconds: 60000000 }\n')


# ---------------------------------------------------------------- clients and timing

class Http:
    """One keep-alive HTTP/1.1 connection; bodies are built before timing,
    so the client's Python JSON encoding is not what is measured."""

    def __init__(self, address):
        host, port = address.split(":")
        self.address = address
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def call(self, method, path, body=None, headers=None, expect=200):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        assert r.status == expect, (path, r.status, data[:300])
        return r, data

    def post(self, path, body=b"{}", headers=None, expect=200):
        return self.call("POST", path, body, headers, expect)

    def get(self, path, expect=200):
        return self.call("GET", path, expect=expect)[1]


def json_body(inputs, **extra):
    """inputs: (name, datatype, shape, list of values)."""
    return json.dumps(dict(inputs=[{"name": n, "datatype": d, "shape": s, "data": v} for n, d, s, v in inputs],
                           **extra)).encode()


def binary_body(inputs):
    """inputs: (name, datatype, shape, raw bytes); every output asked binary."""
    header = json.dumps({"inputs": [{"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}}
                                    for n, d, s, b in inputs],
                         "parameters": {"binary_data_output": True}}).encode()
    return b"".join([header] + [b for *_, b in inputs]), {"Inference-Header-Content-Length": str(len(header)),
                                                          "Content-Type": "application/octet-stream"}


def binary_output(response, data):
    """The binary outputs' bytes after the JSON header."""
    n = int(response.getheader("Inference-Header-Content-Length"))
    return json.loads(data[:n]), data[n:]


def bytes_raw(items):
    return b"".join(struct.pack("<I", len(s)) + s for s in items)


def grpc_input(name, array, datatype):
    i = grpcclient.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array)
    return i


def interleave(calls, rounds=5, reps=3, warm=1):
    """Seconds per call of each of `calls` (name -> callable): each round
    runs every callable `reps` times in turn and keeps the fastest (on a
    shared machine, other processes only ever add time), rounds interleaved,
    and the median of the rounds is returned."""
    for f in calls.values():
        for _ in range(warm):
            f()
    per = {k: [] for k in calls}
    for _ in range(rounds):
        for k, f in calls.items():
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            per[k].append(min(ts))
    return {k: statistics.median(v) for k, v in per.items()}


def settle(name, measure, bounds, attempts=3):
    """Runs `measure()` (-> figures) until every one of `bounds` (description,
    predicate on the figures) holds, at most `attempts` times, then records
    the last figures and asserts. A cliff fails every attempt; a moment
    when the shared machine stalls the server does not, three times over.
    A failed attempt waits 3 s, then 6 s, before the next: a stall can last
    seconds (a cold run's static checks compile beside the suite; one such
    stall inflated every figure of an attempt, 14 s of them, at once)."""
    for attempt in range(attempts):
        figures = measure()
        broken = [what for what, holds in bounds if not holds(figures)]
        if not broken:
            break
        if attempt + 1 < attempts:
            time.sleep(3 * (attempt + 1))
    record(name, figures)
    assert not broken, (broken, {k: f"{v * 1000:.3f} ms" for k, v in figures.items()})


# ---------------------------------------------------------------- servers

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Every model but the crowd: ONNX identities (FP32, BYTES, 64 and 512
    inputs), ensembles of 1 and 8 steps, a sequence model, a cached model,
    and the Python models."""
    repo = tmp_path_factory.mktemp("performance_cliffs")
    onnx_identity(repo, "ident")
    onnx_identity(repo, "ident_bytes", dtype=TensorProto.STRING, dt="TYPE_STRING")
    onnx_identity(repo, "many64", n=64)
    onnx_identity(repo, "many512", n=512)
    onnx_identity(repo, "cached", extra="response_cache { enable: true }\n")
    ensemble(repo, "ens1", 1)
    ensemble(repo, "ens8", 8)
    sequence_model(repo)
    py_model(repo, "py_ident", PY_IDENT, F32IO)
    py_model(repo, "py_bytes", PY_IDENT, BYTESIO)
    py_model(repo, "py_sleep1", PY_SLEEP, F32IO, 'instance_group [ { count: 1 kind: KIND_CPU } ]\n')
    py_model(repo, "py_sleep8", PY_SLEEP, F32IO, 'instance_group [ { count: 8 kind: KIND_CPU } ]\n')
    py_model(repo, "py_bls", PY_BLS, F32IO)
    py_model(repo, "py_repeat", PY_REPEAT, REPEATIO)
    proc, addresses = start_serve(repo, "--cache-config", "local,size=256MiB")
    try:
        wait_ready(addresses["HTTP"], 240)
        yield {"repo": repo, "http": addresses["HTTP"], "grpc": addresses["gRPC"]}
    finally:
        stop_serve(proc)


@pytest.fixture
def h(server):
    c = Http(server["http"])
    yield c
    c.conn.close()


@pytest.fixture
def g(server):
    c = grpcclient.InferenceServerClient(server["grpc"])
    yield c
    c.close()


def _f32_calls(h, g, model, x):
    """HTTP JSON, HTTP binary and gRPC calls of `model` with FP32 `x`, each
    checked once against `x` (an identity) before it is timed."""
    path = f"/v2/models/{model}/infer"
    jb = json_body([("INPUT0", "FP32", [x.size], x.tolist())])
    bb, bh = binary_body([("INPUT0", "FP32", [x.size], x.tobytes())])
    gi = grpc_input("INPUT0", x, "FP32")
    got = json.loads(h.post(path, jb, {"Content-Type": "application/json"})[1])["outputs"][0]["data"]
    np.testing.assert_array_equal(np.asarray(got, np.float32), x)
    np.testing.assert_array_equal(np.frombuffer(binary_output(*h.post(path, bb, bh))[1], np.float32), x)
    np.testing.assert_array_equal(g.infer(model, [gi]).as_numpy("OUTPUT0"), x)
    return {"json": lambda: h.post(path, jb, {"Content-Type": "application/json"}),
            "binary": lambda: h.post(path, bb, bh),
            "grpc": lambda: g.infer(model, [gi])}


# ---------------------------------------------------------------- size scaling

def test_tensor_size_scaling(h, g):
    """1 KB -> 64 KB -> 1 MB -> 16 MB FP32 tensors (the answer as large) over
    HTTP JSON (to 4 MB: JSON's cost is the text), HTTP binary and gRPC on an
    ONNX Identity: every 16x (or 64x, 4x) step in size must cost less than
    4x that step in time. Measured 2026-12-06 (debug build, busy 2-core VM),
    ms: JSON 1.45 / 5.9 / 81 / (16 MB: 1,306); binary 0.73 / 0.93 / 3.3 / 28;
    gRPC 1.35 / 1.13 / 5.5 / 98 — every step linear or better."""
    sizes = {"1KB": 256, "64KB": 16384, "1MB": 262144, "4MB": 1048576, "16MB": 4194304}
    calls = {}
    for label, n in sizes.items():
        x = (np.arange(n) % 7).astype(np.float32) * 0.5
        for proto, f in _f32_calls(h, g, "ident", x).items():
            if proto == "json" and label == "16MB":
                continue
            if proto != "json" and label == "4MB":
                continue
            calls[f"{proto}_{label}"] = f
    small = {k: f for k, f in calls.items() if not k.endswith(("4MB", "16MB"))}
    large = {k: f for k, f in calls.items() if k.endswith(("4MB", "16MB"))}

    def measure():
        return dict(interleave(small, rounds=3, reps=3), **interleave(large, rounds=3, reps=1, warm=0))
    steps = {"json": ["1KB", "64KB", "1MB", "4MB"], "binary": ["1KB", "64KB", "1MB", "16MB"],
             "grpc": ["1KB", "64KB", "1MB", "16MB"]}
    bounds = [(f"{proto} {a} -> {b}: < {4 * sizes[b] / sizes[a]:.0f}x the time",
               lambda f, proto=proto, a=a, b=b: f[f"{proto}_{b}"] < 4 * sizes[b] / sizes[a] * f[f"{proto}_{a}"])
              for proto, labels in steps.items() for a, b in zip(labels, labels[1:])]
    settle("tensor size", measure, bounds)


@pytest.mark.parametrize("model", ["ident_bytes", "py_bytes"])
def test_bytes_element_count_scaling(h, g, model):
    """BYTES tensors of 10, 1,000 and 100,000 short strings over HTTP JSON,
    HTTP binary and gRPC (ONNX Identity on strings; a Python identity): 100x
    the elements must cost < 400x the time (a copy or scan per element that
    grows with the tensor would break it). Measured 2026-12-06, 1,000 ->
    100,000: ONNX 1.2 -> 55 ms JSON, 0.93 -> 42 binary, 1.4 -> 36 gRPC;
    Python 2.0 -> 109, 1.8 -> 91, 2.1 -> 88. Triton 2.51, the Python model
    over HTTP binary: 1.9 -> 85 ms (45x); anemone 3.6 -> 97 ms (27x)."""
    calls = {}
    path = f"/v2/models/{model}/infer"
    for n in [10, 1000, 100000]:
        items = [b"s%d" % i for i in range(n)]
        jb = json_body([("INPUT0", "BYTES", [n], [s.decode() for s in items])])
        bb, bh = binary_body([("INPUT0", "BYTES", [n], bytes_raw(items))])
        gi = grpc_input("INPUT0", np.array(items, dtype=object), "BYTES")
        assert json.loads(h.post(path, jb)[1])["outputs"][0]["data"][-1] == items[-1].decode()
        assert list(g.infer(model, [gi]).as_numpy("OUTPUT0")[-3:]) == items[-3:]
        calls[f"json_{n}"] = lambda jb=jb: h.post(path, jb)
        calls[f"binary_{n}"] = lambda bb=bb, bh=bh: h.post(path, bb, bh)
        calls[f"grpc_{n}"] = lambda gi=gi: g.infer(model, [gi])
    settle(f"BYTES elements, {model}", lambda: interleave(calls, rounds=3, reps=1),
           [(f"{proto}: 100x the strings < 400x the time", lambda f, p=proto: f[f"{p}_100000"] < 400 * f[f"{p}_1000"])
            for proto in ["json", "binary", "grpc"]])


def test_many_inputs_and_outputs(h, g):
    """1, 64 and 512 FP32 [4] inputs per request (and as many outputs:
    INPUTk -> OUTPUTk), HTTP JSON and binary and gRPC: 8x the tensors (64 ->
    512) must cost < 32x the time (a lookup by name per tensor that scans the
    others is 64x). Measured 2026-12-06: 64 -> 512 inputs 0.96 -> 5.6 ms JSON,
    1.07 -> 5.6 binary, 1.22 -> 5.1 gRPC (about 5x); 512 inputs with one
    output asked for: 3.3 ms."""
    calls = {}
    for model, n in [("ident", 1), ("many64", 64), ("many512", 512)]:
        path = f"/v2/models/{model}/infer"
        values = [np.full(4, k, np.float32) for k in range(n)]
        jb = json_body([(f"INPUT{k}", "FP32", [4], v.tolist()) for k, v in enumerate(values)])
        bb, bh = binary_body([(f"INPUT{k}", "FP32", [4], v.tobytes()) for k, v in enumerate(values)])
        gis = [grpc_input(f"INPUT{k}", v, "FP32") for k, v in enumerate(values)]
        outs = {o["name"]: o["data"] for o in json.loads(h.post(path, jb)[1])["outputs"]}
        assert len(outs) == n and outs[f"OUTPUT{n - 1}"] == [float(n - 1)] * 4
        result = g.infer(model, gis)
        np.testing.assert_array_equal(result.as_numpy(f"OUTPUT{n - 1}"), values[-1])
        calls[f"json_{n}"] = lambda jb=jb, path=path: h.post(path, jb)
        calls[f"binary_{n}"] = lambda bb=bb, bh=bh, path=path: h.post(path, bb, bh)
        calls[f"grpc_{n}"] = lambda gis=gis, model=model: g.infer(model, gis)
    one = json.loads(json_body([(f"INPUT{k}", "FP32", [4], [k] * 4) for k in range(512)]))
    one["outputs"] = [{"name": "OUTPUT511"}]
    one = json.dumps(one).encode()
    assert [o["name"] for o in json.loads(h.post("/v2/models/many512/infer", one)[1])["outputs"]] == ["OUTPUT511"]
    calls["json_512_one_output"] = lambda: h.post("/v2/models/many512/infer", one)
    settle("inputs per request", lambda: interleave(calls, rounds=5, reps=2),
           [(f"{proto}: 8x the tensors < 32x the time", lambda f, p=proto: f[f"{p}_512"] < 32 * f[f"{p}_64"])
            for proto in ["json", "binary", "grpc"]])


def test_ensemble_depth_and_parameters(h, g):
    """An ensemble of 8 steps against 1 (the same ONNX Identity each step,
    256 floats): 8x the steps must cost < 8x the one-step ensemble (each
    step at most a whole request); requests with 128 parameters (the limit)
    against 1 must cost < 4x. Measured 2026-12-06: ens1 0.77, ens8 1.28 ms
    (the model alone 0.53); 1 / 8 / 128 parameters 0.51 / 0.61 / 0.75 ms
    HTTP, 0.91 / 0.71 / 1.13 ms gRPC."""
    x = np.arange(256, dtype=np.float32)
    bb, bh = binary_body([("INPUT0", "FP32", [256], x.tobytes())])
    for e in ["ens1", "ens8"]:
        np.testing.assert_array_equal(np.frombuffer(binary_output(*h.post(f"/v2/models/{e}/infer", bb, bh))[1],
                                                    np.float32), x)
    calls = {e: (lambda e=e: h.post(f"/v2/models/{e}/infer", bb, bh)) for e in ["ident", "ens1", "ens8"]}
    gi = grpc_input("INPUT0", np.ones(4, np.float32), "FP32")
    for n in [1, 8, 128]:
        body = json_body([("INPUT0", "FP32", [4], [1, 2, 3, 4])], parameters={f"p{i}": i for i in range(n)})
        h.post("/v2/models/ident/infer", body)
        calls[f"http_params_{n}"] = lambda b=body: h.post("/v2/models/ident/infer", b)
        calls[f"grpc_params_{n}"] = lambda n=n: g.infer("ident", [gi], parameters={f"p{i}": i for i in range(n)})
    settle("ensemble depth, parameters", lambda: interleave(calls, rounds=5, reps=5), [
        ("8 steps < 8x 1 step", lambda f: f["ens8"] < 8 * f["ens1"]),
        ("HTTP: 128 parameters < 4x 1", lambda f: f["http_params_128"] < 4 * f["http_params_1"]),
        ("gRPC: 128 parameters < 4x 1", lambda f: f["grpc_params_128"] < 4 * f["grpc_params_1"])])


# ---------------------------------------------------------------- count scaling (one server)

def _small_calls(h, g):
    x = np.arange(256, dtype=np.float32)
    bb, bh = binary_body([("INPUT0", "FP32", [256], x.tobytes())])
    gi = grpc_input("INPUT0", x, "FP32")
    return {"http": lambda: h.post("/v2/models/ident/infer", bb, bh), "grpc": lambda: g.infer("ident", [gi])}


def test_shared_memory_regions(server, h, g):
    """A request through system shared memory (input and output in a 4 KB
    region), with 1 and with 1,000 regions registered: < 3x. Requests with
    the bytes inline are timed beside it. Measured 2026-12-06: 0.53 ms with
    1 region, 0.45 with 1,000, 0.52 after unregistering; inline binary 0.39
    -0.48, gRPC 0.60-0.75; 999 registrations took 0.26 s, unregistering all
    5 ms."""
    shm = pytest.importorskip("tritonclient.utils.shared_memory")
    x = np.arange(256, dtype=np.float32)
    key = f"/perf_cliffs_{os.getpid()}"
    handle = shm.create_shared_memory_region("cliffs0", key, 4096)
    try:
        shm.set_shared_memory_region(handle, [x])
        reg = json.dumps({"key": key, "offset": 0, "byte_size": 4096}).encode()
        h.post("/v2/systemsharedmemory/region/r0/register", reg)
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [256], "datatype": "FP32", "parameters": {
            "shared_memory_region": "r0", "shared_memory_byte_size": 1024}}], "outputs": [{"name": "OUTPUT0", "parameters": {
                "shared_memory_region": "r0", "shared_memory_byte_size": 1024, "shared_memory_offset": 1024}}]}).encode()
        h.post("/v2/models/ident/infer", body)
        np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [256], offset=1024), x)
        calls = dict(_small_calls(h, g), shm=lambda: h.post("/v2/models/ident/infer", body))

        def measure():
            one = interleave(calls, rounds=5, reps=5)
            for i in range(1, 1000):
                h.post(f"/v2/systemsharedmemory/region/r{i}/register", reg)
            many = interleave(calls, rounds=5, reps=5)
            for i in range(1, 1000):
                h.post(f"/v2/systemsharedmemory/region/r{i}/unregister", None)
            return dict({f"1_region_{k}": v for k, v in one.items()}, **{f"1000_regions_{k}": v for k, v in many.items()})
        settle("shared memory regions", measure,
               [("1,000 regions < 3x 1", lambda f: f["1000_regions_shm"] < 3 * f["1_region_shm"])])
        h.post("/v2/systemsharedmemory/unregister", None)
    finally:
        shm.destroy_shared_memory_region(handle)


def test_idle_connections_and_open_streams(server, h, g):
    """The measured connection's requests (HTTP binary, gRPC unary) with 200
    idle HTTP keep-alive connections beside it, then with 100 open gRPC
    streams (each having answered one request), against none: < 3x.
    Measured 2026-12-06: HTTP 0.52 ms with 200 idle connections, 0.43
    without; gRPC 0.76 / 0.76; with 100 open streams HTTP 0.42, gRPC 0.75
    (0.52 / 0.81 after they closed)."""
    calls = _small_calls(h, g)
    settle("connections", lambda: _connections(server, calls), [
        (f"{what} {k} < 3x none", lambda f, what=what, k=k: f[f"{what}_{k}"] < 3 * f[f"none_{k}"])
        for what in ["idle_http", "open_streams"] for k in calls])


def _connections(server, calls):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    base = interleave(calls, rounds=5, reps=5)
    host, port = server["http"].split(":")
    socks = []
    try:
        for _ in range(200):
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1000).startswith(b"HTTP/1.1 200")
            socks.append(s)
        idle = interleave(calls, rounds=5, reps=5)
    finally:
        for s in socks:
            s.close()
    channel = grpc.insecure_channel(server["grpc"])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    x = np.arange(4, dtype=np.float32)
    req = service_pb2.ModelInferRequest(model_name="ident", inputs=[
        service_pb2.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[4])],
        raw_input_contents=[x.tobytes()])
    queues, streams = [], []
    try:
        for _ in range(100):
            q = queue.Queue()
            stream = stub.ModelStreamInfer(iter(q.get, None))
            q.put(req)
            answer = next(stream)
            assert not answer.error_message
            queues.append(q)
            streams.append(stream)
        open_streams = interleave(calls, rounds=5, reps=5)
    finally:
        for q in queues:
            q.put(None)
        for stream in streams:
            list(stream)
        channel.close()
    return dict({f"none_{k}": v for k, v in base.items()}, **{f"idle_http_{k}": v for k, v in idle.items()},
                **{f"open_streams_{k}": v for k, v in open_streams.items()})


def test_live_sequences(h):
    """A request of a sequence (ONNX identity under `sequence_batching`) with
    1 and with 101 sequences live: < 3x. Measured 2026-12-06: 0.60 ms with
    1, 0.48 with 101, 0.48 after the 100 ended."""
    def body(sid, start=False, end=False):
        return json_body([("INPUT0", "FP32", [1, 4], [1, 2, 3, 4])],
                         parameters={"sequence_id": sid, "sequence_start": start, "sequence_end": end})
    ids = iter(range(7_000_000 + int(time.time()) % 1000 * 1000, 10**9, 1000))

    def measure():
        base_id = next(ids)
        h.post("/v2/models/seq/infer", body(base_id, start=True))
        one_body = body(base_id)
        calls = {"sequence": lambda: h.post("/v2/models/seq/infer", one_body)}
        one = interleave(calls, rounds=5, reps=5)
        for s in range(1, 101):
            h.post("/v2/models/seq/infer", body(base_id + s, start=True))
        many = interleave(calls, rounds=5, reps=5)
        for s in range(0, 101):
            h.post("/v2/models/seq/infer", body(base_id + s, end=True))
        return {"1_live": one["sequence"], "101_live": many["sequence"]}
    settle("sequences", measure, [("101 live < 3x 1", lambda f: f["101_live"] < 3 * f["1_live"])])


def test_response_cache_entries(server, h):
    """A cache hit and a miss (ONNX identity with `response_cache`) with
    about 1 and with 10,000 entries cached, each against the model without
    a cache timed in the same rounds: < 3x. Measured 2026-12-06: hit
    0.24 / 0.25 ms, miss 0.36 / 0.46 ms (the uncached model 0.33 / 0.35);
    filling 10,000 entries one gRPC call at a time took 7.7 s, through one
    stream about 3 s."""
    def body(i):
        return json_body([("INPUT0", "FP32", [4], [float(i), 1.0, 2.0, 3.0])])

    def rel(f, when, kind):
        # Against the model without a cache, timed in the same rounds: the
        # first figures are taken once, before the 10,000 entries, and a
        # cold CI run loaded the machine between (uncached 0.52 -> 4.02 ms,
        # the hit 0.45 -> 2.24 ms, 2026-12-07).
        return f[f"{when}_{kind}"] / f[f"{when}_uncached_model"]
    hit = body(0.5)
    h.post("/v2/models/cached/infer", hit)
    miss_n = [int(time.time() * 1000) % 10_000_000 + 20_000_000]

    def miss():
        miss_n[0] += 1
        h.post("/v2/models/cached/infer", body(miss_n[0]))
    calls = {"hit": lambda: h.post("/v2/models/cached/infer", hit), "miss": miss,
             "uncached_model": lambda: h.post("/v2/models/ident/infer", hit)}
    few = interleave(calls, rounds=5, reps=5)
    done = threading.Semaphore(0)
    errors = []

    def callback(result, error):
        if error is not None:
            errors.append(error)
        done.release()
    client = grpcclient.InferenceServerClient(server["grpc"])
    client.start_stream(callback=callback)
    try:
        for i in range(1, 10_001):
            client.async_stream_infer("cached", [grpc_input("INPUT0", np.array([i, 1, 2, 3], np.float32), "FP32")])
        for _ in range(10_000):
            assert done.acquire(timeout=120)
    finally:
        client.stop_stream()
        client.close()
    assert not errors, errors[:3]
    entries = [line for line in h.get("/metrics").decode().splitlines() if line.startswith("anemone_cache_entries ")]
    assert entries and float(entries[0].split()[1]) >= 10_000, entries
    settle("response cache", lambda: dict({f"few_{k}": v for k, v in few.items()},
                                          **{f"10000_{k}": v for k, v in interleave(calls, rounds=5, reps=5).items()}),
           [("hit, 10,000 entries < 3x few", lambda f: rel(f, "10000", "hit") < 3 * rel(f, "few", "hit")),
            ("miss, 10,000 entries < 3x few", lambda f: rel(f, "10000", "miss") < 3 * rel(f, "few", "miss"))])


def test_unknown_model_probe_vs_repository_folders(server, h, g):
    """A readiness probe for a model the repository does not have (404), and
    its metadata (404), with the repository as served and with 1,000 more
    folders in it (`zzNNNN/1/`, not loaded: the server runs in the default
    model control mode, which never polls): < 2x. A probe must not cost a
    directory listing (Triton 2.51 answers from its model manager's state).
    Measured 2026-12-06 (debug build): ready 0.87 -> 2.37 ms with a 314-folder
    repository going to 1,314, 0.25 -> 1.9 ms with this file's 14 folders
    going to 1,014; metadata 0.31 -> 0.36 ms; gRPC ModelReady 1.18 -> 2.76 ms."""
    calls = {"ready_404": lambda: h.get("/v2/models/no_such_model/ready", expect=404),
             "metadata_404": lambda: h.get("/v2/models/no_such_model", expect=404)}
    extra = [server["repo"] / f"zz_cliffs_{i:04d}" for i in range(1000)]

    def measure():
        # Both sides in each attempt: a cold CI run once saw both calls
        # double together (0.22 -> 0.46 ms) while the other pytest worker
        # loaded the machine, where a listing grows the probe alone, 7x.
        base = interleave(calls, rounds=5, reps=5)
        try:
            for d in extra:
                (d / "1").mkdir(parents=True)
            many = interleave(calls, rounds=5, reps=5)
        finally:
            for d in extra:
                shutil.rmtree(d, ignore_errors=True)
        record("unknown model, repository as served", base)
        return {**base, **{f"{k}, 1,000 more folders": v for k, v in many.items()}}

    settle("unknown model, 1,000 more folders", measure, [
        (f"{k} < 2x", lambda f, k=k: f[f"{k}, 1,000 more folders"] < 2 * f[k]) for k in calls])


def _read_response(sock):
    """The status of one HTTP/1.1 response read off `sock` (its body read)."""
    r = http.client.HTTPResponse(sock)
    r.begin()
    r.read()
    return r.status


@pytest.mark.parametrize("method,path", [
    ("POST", "/v2/systemsharedmemory/region/never_registered/unregister"),
    ("POST", "/v2/systemsharedmemory/unregister"),
    ("POST", "/v2/cudasharedmemory/unregister"),
    ("GET", "/v2/health/live"),
    ("POST", "/v2/logging"),
])
def test_keep_alive_survives_a_body_the_route_ignores(server, method, path):
    """Found while timing 1,000 shared-memory unregisters on one keep-alive
    connection (the keep-alive against new-connection neighbour): the body
    `{}` (what `requests.post(url, json={})` sends; tritonclient sends none)
    sent 0.1 s after the headers, then a second request on the same
    connection: both must be answered 200. Until session 44 anemone answered
    a route that never reads its body before the body arrived and closed the
    connection (it reads and drops such a body now, http/unread_body.rs):
    the client's write of the body fails (EPIPE). Back to back, such requests
    fail now and then (after 1 to 539 requests in ten runs); behind a proxy
    keeping upstream connections (docs/DEPLOY.md's nginx `keepalive 64`)
    each drop is a 502 or a retry. POST /v2/logging, which reads its body,
    is the control. tritonserver 2.51 served 3,000 of each back to back on
    one connection and answered the late body."""
    host, port = server["http"].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 2\r\n\r\n".encode())
        time.sleep(0.1)
        try:
            sock.sendall(b"{}")
            first = _read_response(sock)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            second = _read_response(sock)
        except (OSError, http.client.HTTPException) as e:
            pytest.fail(f"{method} {path}: the connection was closed under the request's body ({e!r})")
    assert first == 200, first
    assert second == 200, f"the connection did not serve a second request: {second}"


# ---------------------------------------------------------------- protocol neighbours

def test_protocol_neighbours(server, h, g):
    """One 64 KB FP32 tensor (as much back) on the ONNX identity: a new HTTP
    connection per request, gzip request and answer, tritonclient's aio
    clients: < 4x their plain neighbour; gRPC unary and stream within 3x;
    JSON < 50x binary. Measured 2026-12-06 (ms): JSON 6.5, gzip request 6.3,
    gzip answer 6.1, binary 0.76, new connection 0.92, gRPC 1.0, stream 1.1,
    gRPC gzip 7.3, tritonclient HTTP 0.97, aio 1.65, gRPC aio 0.98, HTTP
    `async_infer().get_result()` 11.2. gRPC gzip and `async_infer` are the
    client's cost, recorded only: tritonserver 2.51 took 6.9 (0.94 plain)
    and 11.0 (0.67 sync) on a Python identity, anemone 7.1 and 10.6. gzip
    answers at 1 MB: anemone 9.0 ms against 3.0 plain, Triton 61.8 / 1.9."""
    import asyncio

    import tritonclient.grpc.aio as grpcaio
    import tritonclient.http as httpclient
    import tritonclient.http.aio as httpaio

    x = (np.arange(16384) % 11).astype(np.float32)
    path = "/v2/models/ident/infer"
    jb = json_body([("INPUT0", "FP32", [x.size], x.tolist())])
    bb, bh = binary_body([("INPUT0", "FP32", [x.size], x.tobytes())])
    gz_json = gzip.compress(jb, 1)
    gz_bin = gzip.compress(bb, 1)
    gi = grpc_input("INPUT0", x, "FP32")
    hi = httpclient.InferInput("INPUT0", [x.size], "FP32")
    hi.set_data_from_numpy(x)
    sync_http = httpclient.InferenceServerClient(server["http"])
    loop = asyncio.new_event_loop()

    async def make():
        return httpaio.InferenceServerClient(server["http"]), grpcaio.InferenceServerClient(server["grpc"])
    aio_http, aio_grpc = loop.run_until_complete(make())
    answers = queue.Queue()
    streamer = grpcclient.InferenceServerClient(server["grpc"])
    streamer.start_stream(callback=lambda result, error: answers.put((result, error)))

    def stream_call():
        streamer.async_stream_infer("ident", [gi])
        result, error = answers.get(timeout=60)
        assert error is None, error
        return result

    def new_connection():
        c = Http(server["http"])
        c.post(path, bb, bh)
        c.conn.close()

    try:
        # Every neighbour answers the same floats.
        r, data = h.post(path, gz_bin, dict(bh, **{"Content-Encoding": "gzip", "Accept-Encoding": "gzip"}))
        assert r.getheader("Content-Encoding") == "gzip"
        np.testing.assert_array_equal(np.frombuffer(binary_output(r, gzip.decompress(data))[1], np.float32), x)
        np.testing.assert_array_equal(stream_call().as_numpy("OUTPUT0"), x)
        np.testing.assert_array_equal(loop.run_until_complete(aio_http.infer("ident", [hi])).as_numpy("OUTPUT0"), x)
        np.testing.assert_array_equal(loop.run_until_complete(aio_grpc.infer("ident", [gi])).as_numpy("OUTPUT0"), x)
        calls = {
            "json": lambda: h.post(path, jb),
            "json_gzip_request": lambda: h.post(path, gz_json, {"Content-Encoding": "gzip"}),
            "binary": lambda: h.post(path, bb, bh),
            "binary_gzip_request": lambda: h.post(path, gz_bin, dict(bh, **{"Content-Encoding": "gzip"})),
            "binary_gzip_answer": lambda: h.post(path, bb, dict(bh, **{"Accept-Encoding": "gzip"})),
            "binary_new_connection": new_connection,
            "grpc": lambda: g.infer("ident", [gi]),
            "grpc_stream": stream_call,
            "grpc_gzip": lambda: g.infer("ident", [gi], compression_algorithm="gzip"),
            "tritonclient_http_sync": lambda: sync_http.infer("ident", [hi]),
            "tritonclient_http_aio": lambda: loop.run_until_complete(aio_http.infer("ident", [hi])),
            "tritonclient_grpc_aio": lambda: loop.run_until_complete(aio_grpc.infer("ident", [gi])),
            "tritonclient_http_async_infer": lambda: sync_http.async_infer("ident", [hi]).get_result(),
        }
        settle("protocol neighbours, 64 KB", lambda: interleave(calls, rounds=5, reps=3), [
            ("new connection < 4x keep-alive", lambda f: f["binary_new_connection"] < 4 * f["binary"]),
            ("gzip request < 4x plain (binary)", lambda f: f["binary_gzip_request"] < 4 * f["binary"]),
            ("gzip answer < 4x plain (binary)", lambda f: f["binary_gzip_answer"] < 4 * f["binary"]),
            ("gzip request < 4x plain (JSON)", lambda f: f["json_gzip_request"] < 4 * f["json"]),
            ("gRPC stream within 3x unary", lambda f: f["grpc_stream"] < 3 * f["grpc"] and f["grpc"] < 3 * f["grpc_stream"]),
            ("gRPC < 4x HTTP binary", lambda f: f["grpc"] < 4 * f["binary"]),
            ("tritonclient HTTP aio < 4x sync", lambda f: f["tritonclient_http_aio"] < 4 * f["tritonclient_http_sync"]),
            ("tritonclient gRPC aio < 4x sync", lambda f: f["tritonclient_grpc_aio"] < 4 * f["grpc"]),
            ("JSON < 50x binary", lambda f: f["json"] < 50 * f["binary"])])
    finally:
        streamer.stop_stream()
        streamer.close()
        loop.run_until_complete(aio_http.close())
        loop.run_until_complete(aio_grpc.close())
        loop.close()
        sync_http.close()


# ---------------------------------------------------------------- Python backend

def test_python_instances_bls_and_decoupled(server, h, g):
    """Python models (backend "python"):
    - a model sleeping 20 ms per execute, 8 clients at once: with 8
      instances the round must take < half the time it takes with 1;
    - a BLS model calling the Python identity against the identity called
      directly: < 4x;
    - a decoupled model sending N responses on a gRPC stream: 1,000
      responses must cost < 20x 100 (each response about the same).
    Measured 2026-12-06, anemone / tritonserver 2.51 (same model.py files,
    ms): 8 clients on 1 instance 168 / 165, on 8 instances 24.4 / 22.9;
    direct 1.01 / 0.44, BLS 1.71 / 1.05; 1, 100, 1,000 responses 2.0, 13.4,
    85.2 / 1.3, 14.7, 108.6 (80 / 104 us a response)."""
    x = np.arange(256, dtype=np.float32)
    bb, bh = binary_body([("INPUT0", "FP32", [256], x.tobytes())])
    for m in ["py_ident", "py_bls", "py_sleep8"]:
        np.testing.assert_array_equal(
            np.frombuffer(binary_output(*h.post(f"/v2/models/{m}/infer", bb, bh))[1], np.float32), x)
    pool = ThreadPoolExecutor(8)
    conns = [Http(server["http"]) for _ in range(8)]

    def eight(model):
        return lambda: list(pool.map(lambda c: c.post(f"/v2/models/{model}/infer", bb, bh), conns))
    answers = queue.Queue()
    streamer = grpcclient.InferenceServerClient(server["grpc"])
    streamer.start_stream(callback=lambda result, error: answers.put((result, error)))

    def repeat(n):
        i = grpc_input("N", np.array([n], np.int32), "INT32")

        def call():
            streamer.async_stream_infer("py_repeat", [i], enable_empty_final_response=True)
            seen = []
            while True:
                result, error = answers.get(timeout=60)
                assert error is None, error
                if result.get_response().parameters["triton_final_response"].bool_param:
                    break
                seen.append(int(result.as_numpy("IDX")[0]))
            assert seen == list(range(n))
        return call
    try:
        calls = {"eight_clients_1_instance": eight("py_sleep1"), "eight_clients_8_instances": eight("py_sleep8"),
                 "direct": lambda: h.post("/v2/models/py_ident/infer", bb, bh),
                 "bls": lambda: h.post("/v2/models/py_bls/infer", bb, bh),
                 "responses_1": repeat(1), "responses_100": repeat(100), "responses_1000": repeat(1000)}
        settle("Python backend", lambda: interleave(calls, rounds=5, reps=1), [
            ("8 instances < half 1 instance", lambda f: f["eight_clients_8_instances"] < 0.5 * f["eight_clients_1_instance"]),
            ("BLS < 4x direct", lambda f: f["bls"] < 4 * f["direct"]),
            ("1,000 responses < 20x 100", lambda f: f["responses_1000"] < 20 * f["responses_100"])])
    finally:
        streamer.stop_stream()
        streamer.close()
        pool.shutdown()


# ---------------------------------------------------------------- count scaling: 600 models

CROWD = 600


def crowd_repo(repo, extra):
    """`ident` and `extra` more ONNX identities (m0000...)."""
    onnx_identity(repo, "ident")
    for i in range(extra):
        shutil.copytree(repo / "ident" / "1", repo / f"m{i:04d}" / "1")
        (repo / f"m{i:04d}" / "config.pbtxt").write_text(
            (repo / "ident" / "config.pbtxt").read_text().replace('"ident"', f'"m{i:04d}"'))
    return repo


class Endpoints:
    """The calls measured against one server: `per_request` (naming
    `ident`, or no model) and `whole` (over every model)."""

    def __init__(self, addresses):
        self.h = h = Http(addresses["HTTP"])
        self.g = g = grpcclient.InferenceServerClient(addresses["gRPC"])
        x = np.arange(4, dtype=np.float32)
        bb, bh = binary_body([("INPUT0", "FP32", [4], x.tobytes())])
        gi = grpc_input("INPUT0", x, "FP32")
        self.per_request = {
            "http_infer": lambda: h.post("/v2/models/ident/infer", bb, bh),
            "grpc_infer": lambda: g.infer("ident", [gi]),
            "http_model_ready": lambda: h.get("/v2/models/ident/ready"),
            "http_model_config": lambda: h.get("/v2/models/ident/config"),
            "http_server_metadata": lambda: h.get("/v2"),
            "http_live": lambda: h.get("/v2/health/live"),
            "http_ready": lambda: h.get("/v2/health/ready"),
            "grpc_live": lambda: g.is_server_live(),
            "grpc_ready": lambda: g.is_server_ready(),
            "http_model_metadata": lambda: h.get("/v2/models/ident"),
            "grpc_model_metadata": lambda: g.get_model_metadata("ident"),
            "http_model_stats": lambda: h.get("/v2/models/ident/stats"),
            "grpc_model_stats": lambda: g.get_inference_statistics("ident"),
        }
        self.whole = {"metrics": lambda: h.get("/metrics"), "all_stats": lambda: h.get("/v2/models/stats"),
                      "grpc_all_stats": lambda: g.get_inference_statistics()}

    def model_count(self):
        return len(json.loads(self.h.get("/v2/models/stats"))["model_stats"])

    def close(self):
        self.g.close()
        self.h.conn.close()


def side_by_side(many, one, names, rounds, reps):
    """Seconds per call of each of `names` (calls of `many` and `one`, two
    `{name: callable}`), the two servers called in turn (`interleave`), so
    that whatever else loads the machine meanwhile loads both sides alike:
    {name: (many's, one's)}."""
    figures = interleave({(k, side): calls[k] for k in names for side, calls in (("many", many), ("one", one))},
                         rounds=rounds, reps=reps)
    return {k: (figures[(k, "many")], figures[(k, "one")]) for k in names}


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    """Two servers at once, so that every comparison is made call by call
    rather than in one state and then the other (a neighbouring test's
    burst during one state failed seven of these in a loaded cold run):
    `many`, with `ident` and CROWD more ONNX identities; `one`, started with
    `ident` and 100 more, which are unloaded once the whole-repository calls
    are measured on both (601 models against 101), leaving `ident` alone.
    Both load everything at start (`--model-control-mode explicit
    --load-model *`)."""
    base = tmp_path_factory.mktemp("performance_cliffs_crowd")
    procs = []
    try:
        for repo in (crowd_repo(base / "many", CROWD), crowd_repo(base / "one", 100)):
            procs.append(start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*"))
        for _, addresses in procs:
            wait_ready(addresses["HTTP"], 240)
        many, one = (Endpoints(addresses) for _, addresses in procs)
        x = np.arange(4, dtype=np.float32)
        last = many.g.infer(f"m{CROWD - 1:04d}", [grpc_input("INPUT0", x, "FP32")])
        np.testing.assert_array_equal(last.as_numpy("OUTPUT0"), x)
        assert many.model_count() == CROWD + 1
        assert one.model_count() == 101
        whole = side_by_side(many.whole, one.whole, list(many.whole), rounds=3, reps=1)
        record(f"crowd: every model, {CROWD + 1} models", {k: v[0] for k, v in whole.items()})
        record("crowd: every model, 101 models", {k: v[1] for k, v in whole.items()})
        for i in range(100):
            one.h.post(f"/v2/repository/models/m{i:04d}/unload")
        assert one.model_count() == 1
        time.sleep(0.5)
        yield {"many": many, "one": one, "whole": whole}
        many.close()
        one.close()
    finally:
        for proc, _ in procs:
            stop_serve(proc)


@pytest.mark.parametrize("endpoint", [
    "http_infer", "grpc_infer", "http_model_ready", "http_model_config", "http_server_metadata",
    "http_live",
    "http_ready",
    "http_model_metadata",
    "http_model_stats",
    "grpc_model_stats",
])
def test_per_request_cost_does_not_grow_with_loaded_models(crowd, endpoint):
    """Calls that name one model, or none, with 600 other models loaded
    against none: < 2.5x (the registry lookup is one hash probe,
    docs/PERFORMANCE.md "The borrowed registry lookup"); the two servers run
    side by side and are called in turn. Measured 2026-12-06
    (debug build), 600 others / none, ms: HTTP infer 0.59 / 0.60, gRPC infer
    0.76 / 0.80, model ready 0.14 / 0.10, config 0.27 / 0.23, server metadata
    0.13 / 0.09 (flat, within the ~1.4x seen everywhere); live 1.11 / 0.08,
    ready 1.12 / 0.10, model metadata 0.63 / 0.16, model stats 3.09 / 0.26,
    gRPC model stats 3.28 / 0.60 (the defects, fixed in session 44); gRPC ServerLive 1.52 / 0.45 and
    ServerReady 1.56 / 0.49 (the same health report behind gRPC's own cost,
    3.2-3.4x: recorded, too near the bound for a strict xfail), gRPC model
    metadata 1.03 / 0.50 (2.1x, recorded)."""
    many, one = crowd["many"], crowd["one"]

    def measure():
        (m, o), = side_by_side(many.per_request, one.per_request, [endpoint], rounds=7, reps=5).values()
        return {f"{CROWD} others": m, "none": o}
    settle(f"crowd: {endpoint}", measure,
           [(f"{CROWD} other models < 2.5x none", lambda f: f[f"{CROWD} others"] < 2.5 * f["none"])])


def test_metrics_and_statistics_grow_linearly_with_models(crowd):
    """GET /metrics, GET /v2/models/stats and gRPC ModelStatistics (every
    model) with 601 models against 101 (two servers, called in turn): 6x the
    models must cost < 15x the time (quadratic is 36x). Measured 2026-12-06: /metrics 58 / 13-15 ms,
    stats 26-27 / 4.3-4.5, gRPC 6.0-6.1 / 1.5-1.8 (4-6x); with 13 / 113 /
    313 models /metrics 3.3 / 14.5 / 34 ms (1.36 MB of text at 313), stats
    0.9 / 5.1 / 15.3, gRPC 0.78 / 1.6 / 4.0: linear."""
    for k, (all_models, hundred) in crowd["whole"].items():
        ratio = all_models / hundred
        assert ratio < 15, f"{k}: 6x the models took {ratio:.1f}x the time"
