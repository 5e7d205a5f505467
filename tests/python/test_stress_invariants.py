"""Invariants under a storm of concurrent inference, cancellation, unloads and
loads, over HTTP and gRPC (docs/SERVING.md "Model control", "Errors",
"Statistics", "Python models", "Sequence models"; docs/ENSEMBLES.md
"Loading, unloading, readiness"; docs/RELIABILITY.md "Overload" and "Faults").

One repository holds a mix, built here: two ONNX models made with the onnx
package (`add`: A + B with dynamic batching and 2 instances; `matmul`:
X @ W, no queue), two Python models (`pyb`: X * 3 - 1 in dynamic batches, 2
instances, sleeping when a request's `sleep_ms` parameter asks; `pystream`:
decoupled, N responses OUT = V * (i + 1), IDX = i), an ensemble `ens` (add,
then pyb) and a Python sequence model `pyseq` (a running sum per sequence
kept in the instance, 2 instances). It is served with `--model-control-mode
explicit --load-model '*'`.

The storm (about 12 s, as CI has 2 cores) runs at once: client threads over
HTTP and gRPC on every model, gRPC streams to the decoupled model (some
cancelled mid-stream), sequences over HTTP, gRPC and gRPC streams, clients
that give up (HTTP read timeouts that close the connection, tritonclient's
`client_timeout`, the request `timeout` parameter), and a thread that
unloads and loads `add`, `matmul`, `pyb` and `pystream` through the
repository API, and loads the unchanged `pyseq` (which SERVING.md says does
nothing: its open sequences and statistics stay).

The storm runs once (a module fixture); each invariant is its own test, so
that one broken invariant names itself. Nothing asserted depends on timing:
every wait is bounded only to turn a hang into a failure.

The statuses the docs allow, per situation:
- a model unloaded (or never loaded): 404 / NOT_FOUND "Request for unknown
  model" (docs/FROM_TRITON.md "Clients"; SERVING.md "Errors": unknown model);
- a model loading: 503 / UNAVAILABLE (SERVING.md "Errors": not ready);
- an ensemble whose composing model is unloaded: 503 (ENSEMBLES.md);
- a request `timeout` passed: 504 / DEADLINE_EXCEEDED (SERVING.md "Errors");
- a gRPC `client_timeout` passed: DEADLINE_EXCEEDED (SERVING.md "HTTP": the
  server's, or the client's own);
- nothing else: no 500, no 429 (the clients stay far below
  `--max-concurrency`'s 256), no dropped connection.
Requests in flight when their model is unloaded finish (the unload code:
"Requests in flight finish first"), so they answer 200 or one of the above.
"""
import concurrent.futures as cf
import os
import queue
import random
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

STORM_SECONDS = float(os.environ.get("ANEMONE_STRESS_SECONDS", "12"))  # longer by hand, for a soak
BOUND = 20  # seconds any single request may take before it counts as a hang
W = ((np.arange(12, dtype=np.float32).reshape(4, 3) - 5.5) / 4).astype(np.float32)

# ---------------------------------------------------------------- models


def _save(graph, path):
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def onnx_add(path):
    ins = [h.make_tensor_value_info(n, T.FLOAT, ["n", 4]) for n in ("A", "B")]
    _save(h.make_graph([h.make_node("Add", ["A", "B"], ["S"])], "add", ins,
                       [h.make_tensor_value_info("S", T.FLOAT, ["n", 4])]), path)


def onnx_matmul(path):
    _save(h.make_graph([h.make_node("MatMul", ["X", "W"], ["Y"])], "matmul",
                       [h.make_tensor_value_info("X", T.FLOAT, ["n", 4])],
                       [h.make_tensor_value_info("Y", T.FLOAT, ["n", 3])], [nh.from_array(W, "W")]), path)


ADD_CONFIG = """
name: "add"
platform: "onnxruntime_onnx"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 500 }
input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "S" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

MATMUL_CONFIG = """
name: "matmul"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""

PYB_CONFIG = """
name: "pyb"
backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 1000 }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

# Y = X * 3 - 1; a request's `sleep_ms` parameter makes its batch sleep first
# (the clients that give up ask for it).
PYB = """
import json, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        sleep = max(json.loads(r.parameters()).get("sleep_ms", 0) for r in requests)
        time.sleep(sleep / 1000)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", (pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 3 - 1).astype(np.float32))])
            for r in requests]
"""

STREAM_CONFIG = """
name: "pystream"
backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "V" data_type: TYPE_FP32 dims: [ 1 ] },
        { name: "DELAY_MS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "IDX" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

# N responses OUT = V * (i + 1), IDX = i, DELAY_MS apart, from a thread; stops
# early once the client has gone (is_cancelled()), then the final flag.
STREAM = """
import threading, time
import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "N").as_numpy()[0])
            v = float(pb_utils.get_input_tensor_by_name(r, "V").as_numpy()[0])
            d = int(pb_utils.get_input_tensor_by_name(r, "DELAY_MS").as_numpy()[0])
            threading.Thread(target=self.send, args=(r.get_response_sender(), n, v, d), daemon=True).start()
        return None

    def send(self, sender, n, v, d):
        for i in range(n):
            if sender.is_cancelled():
                break
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([v * (i + 1)], np.float32)),
                pb_utils.Tensor("IDX", np.array([i], np.int32))]))
            time.sleep(d / 1000)
        sender.send(flags=FINAL)
"""

ENS_CONFIG = """
name: "ens"
platform: "ensemble"
max_batch_size: 8
input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "add" model_version: -1
    input_map { key: "A" value: "A" } input_map { key: "B" value: "B" } output_map { key: "S" value: "sum" } },
  { model_name: "pyb" model_version: -1
    input_map { key: "X" value: "sum" } output_map { key: "Y" value: "OUT" } }
] }
"""

SEQ_CONFIG = """
name: "pyseq"
backend: "python"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "SUM" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

# The running sum of each sequence, kept in the instance (SERVING.md: each
# sequence stays on one instance); a sequence this instance never saw start
# is an INVALID_ARG error, so a sequence moved to another instance shows.
SEQ = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        out = []
        for r in requests:
            v = int(pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0][0])
            start = int(pb_utils.get_input_tensor_by_name(r, "START").as_numpy()[0][0])
            corrid = int(pb_utils.get_input_tensor_by_name(r, "CORRID").as_numpy()[0][0])
            if start:
                self.sums[corrid] = 0
            elif corrid not in self.sums:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"sequence {corrid} has no state in this instance", pb_utils.TritonError.INVALID_ARG)))
                continue
            self.sums[corrid] += v
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", np.array([[self.sums[corrid]]], np.int32))]))
        return out
"""

PYTHON_INSTANCES = {"pyb": 2, "pystream": 1, "pyseq": 2}
CHURNED = ["add", "matmul", "pyb", "pystream"]
ALL_MODELS = ["add", "matmul", "pyb", "pystream", "ens", "pyseq"]


def build_repository(repo):
    def put(name, config, files):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        for fname, content in files.items():
            if callable(content):
                content(repo / name / "1" / fname)
            else:
                (repo / name / "1" / fname).write_text(content)

    put("add", ADD_CONFIG, {"model.onnx": onnx_add})
    put("matmul", MATMUL_CONFIG, {"model.onnx": onnx_matmul})
    put("pyb", PYB_CONFIG, {"model.py": PYB})
    put("pystream", STREAM_CONFIG, {"model.py": STREAM})
    put("pyseq", SEQ_CONFIG, {"model.py": SEQ})
    put("ens", ENS_CONFIG, {})
    return repo


# ---------------------------------------------------------------- /proc


def proc_threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def children(pid):
    """[(child pid, state, model name or the command line)] of `pid`'s children."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != pid:
            continue
        args = [a.decode(errors="replace") for a in cmdline if a]
        model = next((Path(a).parts[-3] for a in args if a.endswith("/model.py")), " ".join(args) or f"({comm})")
        out.append((int(entry), fields[0], model))
    return out


def python_processes(pid):
    """{model: live processes} of the server's Python model processes, and
    the other children (zombies included)."""
    counts, others = {}, []
    for child, state, model in children(pid):
        if state != "Z" and model in PYTHON_INSTANCES:
            counts[model] = counts.get(model, 0) + 1
        else:
            others.append((child, state, model))
    return counts, others


# ---------------------------------------------------------------- requests

HTTP_OK = "200"
ERROR_STATUS = {  # tritonclient's status strings, per protocol
    "http": {"not found": "404", "unavailable": "503", "deadline": "504"},
    "grpc": {"not found": "StatusCode.NOT_FOUND", "unavailable": "StatusCode.UNAVAILABLE",
             "deadline": "StatusCode.DEADLINE_EXCEEDED"},
}


def allowed(proto, model, situation="plain"):
    """The statuses the docs allow for a request to `model` in the storm."""
    s = ERROR_STATUS[proto]
    if model == "pyseq":  # never unloaded; a no-op load keeps its sequences
        return {HTTP_OK}
    if model == "ens":  # a composing model unloaded or loading: 503 (ENSEMBLES.md)
        ok = {HTTP_OK, s["unavailable"]}
    else:  # unloaded: unknown model (404); loading: not ready (503)
        ok = {HTTP_OK, s["not found"], s["unavailable"]}
    if situation in ("timeout", "client_timeout"):
        ok.add(s["deadline"])
    return ok


def inputs_for(model, rng):
    rows = int(rng.integers(1, 4))
    if model in ("add", "ens"):
        a = rng.standard_normal((rows, 4)).astype(np.float32)
        b = rng.standard_normal((rows, 4)).astype(np.float32)
        return {"A": a, "B": b}
    return {"X": rng.standard_normal((rows, 4)).astype(np.float32)}


def expected(model, x):
    if model == "add":
        return "S", x["A"] + x["B"]
    if model == "matmul":
        return "Y", x["X"] @ W
    if model == "pyb":
        return "Y", x["X"] * 3 - 1
    if model == "ens":
        return "OUT", (x["A"] + x["B"]) * 3 - 1
    raise KeyError(model)


def infer(proto, client, model, x, **kw):
    """One request; the output named by `expected`, or raises."""
    mod = httpclient if proto == "http" else grpcclient
    tensors = []
    for name, value in x.items():
        t = mod.InferInput(name, list(value.shape), "FP32")
        if proto == "http":
            t.set_data_from_numpy(value, binary_data=bool(value.shape[0] % 2))
        else:
            t.set_data_from_numpy(value)
        tensors.append(t)
    out, _ = expected(model, x)
    return client.infer(model, tensors, **kw).as_numpy(out)


def http_client(server):
    return httpclient.InferenceServerClient(server["HTTP"], connection_timeout=BOUND, network_timeout=BOUND)


def grpc_client(server):
    return grpcclient.InferenceServerClient(server["gRPC"])


class Log:
    """What the clients saw, one record a request (or a stream, or a
    sequence step), thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []

    def add(self, **record):
        with self.lock:
            self.records.append(record)

    def where(self, **match):
        with self.lock:
            return [r for r in self.records if all(r.get(k) == v for k, v in match.items())]


def status_of(error):
    return str(error.status()) if isinstance(error, InferenceServerException) else type(error).__name__


def check_answer(model, x, got):
    """None when `got` is the right answer to `x`, else why not."""
    name, want = expected(model, x)
    if got is None or got.shape != want.shape or got.dtype != np.float32:
        return f"{name}: {None if got is None else (got.shape, got.dtype)} where {want.shape} float32 was due"
    if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        return f"{name}: {got.tolist()} != {want.tolist()}"
    return None


# ---------------------------------------------------------------- the storm's workers


def plain_worker(server, proto, seed, stop, log):
    """Requests to every stateless model, answers checked against numpy."""
    rng = np.random.default_rng(seed)
    client = http_client(server) if proto == "http" else grpc_client(server)
    try:
        while not stop.is_set():
            model = ["add", "matmul", "pyb", "ens"][int(rng.integers(4))]
            x = inputs_for(model, rng)
            kw = {} if proto == "http" else {"client_timeout": BOUND}
            try:
                got = infer(proto, client, model, x, **kw)
            except InferenceServerException as e:
                log.add(kind="plain", proto=proto, model=model, status=status_of(e), detail=str(e))
                continue
            except Exception as e:  # a dropped connection, a socket timeout: never allowed
                log.add(kind="plain", proto=proto, model=model, status=type(e).__name__, detail=repr(e))
                client.close()
                client = http_client(server) if proto == "http" else grpc_client(server)
                continue
            log.add(kind="plain", proto=proto, model=model, status=HTTP_OK, wrong=check_answer(model, x, got))
    finally:
        client.close()


def giving_up_worker(server, seed, stop, log):
    """Clients that give up on slow `pyb` requests (sleep_ms 300), in turn:
    an HTTP read timeout that closes the connection (requests), a tritonclient
    HTTP `network_timeout`, gRPC's `client_timeout`, and the request
    `timeout` parameter over both protocols (504 / DEADLINE_EXCEEDED)."""
    rng = np.random.default_rng(seed)
    way = 0
    while not stop.is_set():
        x = {"X": rng.standard_normal((1, 4)).astype(np.float32)}
        way = (way + 1) % 5
        if way == 0:
            session = requests.Session()
            body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": x["X"].ravel().tolist()}],
                    "parameters": {"sleep_ms": 300}}
            try:
                r = session.post(f"http://{server['HTTP']}/v2/models/pyb/infer", json=body, timeout=(BOUND, 0.05))
                status, answer = str(r.status_code), r.json()
                got = (np.array(answer["outputs"][0]["data"], np.float32).reshape(1, 4)
                       if r.status_code == 200 else None)
                log.add(kind="gave_up", way="http-read-timeout", proto="http", model="pyb", status=status,
                        wrong=check_answer("pyb", x, got) if status == HTTP_OK else None, detail=r.text[:200])
            except requests.exceptions.ReadTimeout:
                log.add(kind="gave_up", way="http-read-timeout", proto="http", model="pyb", status="abandoned")
            except Exception as e:
                log.add(kind="gave_up", way="http-read-timeout", proto="http", model="pyb",
                        status=type(e).__name__, detail=repr(e))
            finally:
                session.close()
            continue
        proto = "http" if way in (1, 3) else "grpc"
        if way == 1:
            client, kw, situation = httpclient.InferenceServerClient(
                server["HTTP"], connection_timeout=BOUND, network_timeout=0.1), {}, "network_timeout"
        elif way == 2:
            client, kw, situation = grpc_client(server), {"client_timeout": 0.1}, "client_timeout"
        else:
            client = http_client(server) if proto == "http" else grpc_client(server)
            kw, situation = {"timeout": 100_000}, "timeout"  # microseconds
            if proto == "grpc":
                kw["client_timeout"] = BOUND
        try:
            got = infer(proto, client, "pyb", x, parameters={"sleep_ms": 300}, **kw)
            log.add(kind="gave_up", way=situation, proto=proto, model="pyb", status=HTTP_OK,
                    wrong=check_answer("pyb", x, got))
        except InferenceServerException as e:
            log.add(kind="gave_up", way=situation, proto=proto, model="pyb", status=status_of(e), detail=str(e))
        except Exception as e:
            status = "abandoned" if situation == "network_timeout" else type(e).__name__
            log.add(kind="gave_up", way=situation, proto=proto, model="pyb", status=status, detail=repr(e))
        finally:
            client.close()


def stream_tensor(name, value, datatype):
    t = grpcclient.InferInput(name, [1], datatype)
    t.set_data_from_numpy(np.array([value], dtype=np.int32 if datatype == "INT32" else np.float32))
    return t


def stream_worker(server, seed, stop, log):
    """gRPC streams to the decoupled `pystream`: each request's responses
    checked (OUT = V * (i + 1), IDX = i, in order, then a final response);
    every third stream is cancelled after its first response."""
    rng = random.Random(seed)
    k = 0
    while not stop.is_set():
        k += 1
        got = queue.Queue()
        client = grpc_client(server)
        client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), got))
        n, v, cancel = rng.randint(1, 8), round(rng.uniform(-4, 4), 3), k % 3 == 0
        try:
            client.async_stream_infer("pystream", [stream_tensor("N", n, "INT32"), stream_tensor("V", v, "FP32"),
                                                   stream_tensor("DELAY_MS", 10 if cancel else 2, "INT32")],
                                      enable_empty_final_response=True)
            outs, status, detail = [], None, None
            while True:
                try:
                    result, error = got.get(timeout=BOUND)
                except queue.Empty:
                    status = "hang"
                    break
                if error is not None:
                    status, detail = "error", str(error)
                    break
                response = result.get_response()
                if response.outputs:
                    outs.append((int(result.as_numpy("IDX")[0]), float(result.as_numpy("OUT")[0])))
                p = response.parameters.get("triton_final_response")
                if p is not None and p.bool_param:
                    status = "complete"
                    break
                if cancel and len(outs) == 1:
                    status = "cancelled"
                    break
            want = [(i, np.float32(v) * np.float32(i + 1)) for i in range(n)]
            wrong = None
            if status == "complete" and [(i, np.float32(o)) for i, o in outs] != want:
                wrong = f"responses {outs} where {want} were due"
            if status in ("cancelled", "error") and [(i, np.float32(o)) for i, o in outs] != want[:len(outs)]:
                wrong = f"responses before the end {outs} are not the first of {want}"
            log.add(kind="stream", proto="grpc-stream", model="pystream", status=status, wrong=wrong,
                    detail=detail, cancelled=cancel)
        finally:
            client.stop_stream(cancel_requests=cancel)
            client.close()


def sequence_worker(server, proto, seed, stop, log):
    """Sequences of 3 to 8 steps to `pyseq` (never unloaded), two at a time
    interleaved, over `proto` (http, grpc or grpc-stream); each step's SUM
    must be the running sum of the values sent so far."""
    rng = random.Random(seed)
    base = seed * 1_000_000
    k = 0
    if proto == "http":
        client = http_client(server)
    else:
        client = grpc_client(server)
    got = queue.Queue()
    if proto == "grpc-stream":
        client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), got))
    try:
        while not stop.is_set():
            seqs = []
            for _ in range(2):
                k += 1
                seqs.append([base + k, [rng.randint(-50, 50) for _ in range(rng.randint(3, 8))], 0])
            while any(pos < len(values) for _, values, pos in seqs):
                for seq in seqs:
                    sid, values, pos = seq
                    if pos >= len(values):
                        continue
                    seq[2] += 1
                    mod = httpclient if proto == "http" else grpcclient
                    t = mod.InferInput("IN", [1, 1], "INT32")
                    t.set_data_from_numpy(np.array([[values[pos]]], np.int32))
                    kw = dict(sequence_id=sid, sequence_start=pos == 0, sequence_end=pos == len(values) - 1)
                    want = sum(values[:pos + 1])
                    try:
                        if proto == "grpc-stream":
                            client.async_stream_infer("pyseq", [t], **kw)
                            try:
                                result, error = got.get(timeout=BOUND)
                            except queue.Empty:
                                log.add(kind="seq", proto=proto, model="pyseq", status="hang", sequence=sid, step=pos)
                                return
                            if error is not None:
                                raise error
                        elif proto == "grpc":
                            result = client.infer("pyseq", [t], client_timeout=BOUND, **kw)
                        else:
                            result = client.infer("pyseq", [t], **kw)
                        out = result.as_numpy("SUM")
                        wrong = None if out is not None and out.tolist() == [[want]] else \
                            f"sequence {sid} step {pos}: SUM {None if out is None else out.tolist()} where [[{want}]] was due"
                        log.add(kind="seq", proto=proto, model="pyseq", status=HTTP_OK, wrong=wrong,
                                sequence=sid, step=pos)
                    except InferenceServerException as e:
                        log.add(kind="seq", proto=proto, model="pyseq", status=status_of(e), detail=str(e),
                                sequence=sid, step=pos)
                    except Exception as e:
                        log.add(kind="seq", proto=proto, model="pyseq", status=type(e).__name__, detail=repr(e),
                                sequence=sid, step=pos)
    finally:
        if proto == "grpc-stream":
            client.stop_stream()
        client.close()


def reader_worker(server, seed, stop, log):
    """Reads what the churn changes, over HTTP: the repository index, and each
    model's readiness, metadata, config and statistics. A model unloaded is
    404 (FROM_TRITON.md "Clients": statistics of a model not loaded), one
    loading or not ready 503 (SERVING.md "HTTP": ready is 200, 503 or 404)."""
    rng = random.Random(seed)
    http = requests.Session()
    try:
        while not stop.is_set():
            model = rng.choice(ALL_MODELS)
            what = rng.choice(["", "/ready", "/config", "/stats", "index"])
            try:
                if what == "index":
                    r = http.post(f"http://{server['HTTP']}/v2/repository/index", timeout=BOUND)
                else:
                    r = http.get(f"http://{server['HTTP']}/v2/models/{model}{what}", timeout=BOUND)
                status, detail = str(r.status_code), r.text[:300]
            except Exception as e:
                status, detail = type(e).__name__, repr(e)
            log.add(kind="read", proto="http", model=model, what=what, status=status, detail=detail)
            time.sleep(0.01)
    finally:
        http.close()


def churn_worker(server, seed, stop, log):
    """Unloads and loads the churned models in turn (HTTP and gRPC repository
    API), and loads the unchanged `pyseq`, which must do nothing."""
    rng = random.Random(seed)
    http = requests.Session()
    grpc = grpc_client(server)
    k = 0
    try:
        while not stop.is_set():
            k += 1
            model = CHURNED[k % len(CHURNED)]
            use_http = (k // len(CHURNED)) % 2 == 0
            for action in ("unload", "load"):
                try:
                    if use_http:
                        r = http.post(f"http://{server['HTTP']}/v2/repository/models/{model}/{action}", timeout=BOUND)
                        status, detail = str(r.status_code), r.text[:300]
                    else:
                        getattr(grpc, f"{action}_model")(model, client_timeout=BOUND)
                        status, detail = HTTP_OK, ""
                except InferenceServerException as e:
                    status, detail = status_of(e), str(e)
                except Exception as e:
                    status, detail = type(e).__name__, repr(e)
                log.add(kind="control", proto="http" if use_http else "grpc", model=model, action=action,
                        status=status, detail=detail)
                time.sleep(rng.uniform(0.05, 0.4))
            if k % 3 == 0:
                r = http.post(f"http://{server['HTTP']}/v2/repository/models/pyseq/load", timeout=BOUND)
                log.add(kind="control", proto="http", model="pyseq", action="load", status=str(r.status_code),
                        detail=r.text[:300])
    finally:
        http.close()
        grpc.close()


# ---------------------------------------------------------------- fixtures


def stats(server, model):
    r = requests.get(f"http://{server['HTTP']}/v2/models/{model}/stats", timeout=BOUND)
    assert r.status_code == 200, f"stats of {model}: {r.status_code} {r.text}"
    [s] = r.json()["model_stats"]
    return s


def counts(server, model):
    s = stats(server, model)["inference_stats"]
    return s["success"]["count"], s["fail"]["count"]


def wait_models_ready(server, models):
    client = http_client(server)
    deadline = time.time() + 60
    try:
        while not all(client.is_model_ready(m) for m in models):
            assert time.time() < deadline, f"models not ready within 60 s: {models}"
            time.sleep(0.1)
    finally:
        client.close()


def load_all(server):
    for m in CHURNED + ["pyseq", "ens"]:
        r = requests.post(f"http://{server['HTTP']}/v2/repository/models/{m}/load", timeout=60)
        assert r.status_code == 200, f"load {m}: {r.status_code} {r.text}"
    wait_models_ready(server, ALL_MODELS)


def one_of_each(server):
    """A right answer from every model over HTTP and gRPC (and a stream),
    or the reason why not."""
    rng = np.random.default_rng(7)
    problems = []
    for proto in ("http", "grpc"):
        client = http_client(server) if proto == "http" else grpc_client(server)
        try:
            for model in ["add", "matmul", "pyb", "ens"]:
                x = inputs_for(model, rng)
                try:
                    wrong = check_answer(model, x, infer(proto, client, model, x))
                except Exception as e:
                    wrong = f"{status_of(e)} {e}"
                if wrong:
                    problems.append(f"{proto} {model}: {wrong}")
            mod = httpclient if proto == "http" else grpcclient
            sid = int(rng.integers(1 << 40, 1 << 41))
            for step, v in enumerate([3, 4, 5]):
                t = mod.InferInput("IN", [1, 1], "INT32")
                t.set_data_from_numpy(np.array([[v]], np.int32))
                try:
                    out = client.infer("pyseq", [t], sequence_id=sid, sequence_start=step == 0,
                                       sequence_end=step == 2).as_numpy("SUM").tolist()
                    if out != [[[3, 7, 12][step]]]:
                        problems.append(f"{proto} pyseq step {step}: {out}")
                except Exception as e:
                    problems.append(f"{proto} pyseq step {step}: {status_of(e)} {e}")
        finally:
            client.close()
    got = queue.Queue()
    client = grpc_client(server)
    client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), got))
    try:
        client.async_stream_infer("pystream", [stream_tensor("N", 3, "INT32"), stream_tensor("V", 2.0, "FP32"),
                                               stream_tensor("DELAY_MS", 0, "INT32")])
        outs = []
        for _ in range(3):
            result, error = got.get(timeout=BOUND)
            if error is not None:
                problems.append(f"stream pystream: {error}")
                break
            outs.append(float(result.as_numpy("OUT")[0]))
        if outs and outs != [2.0, 4.0, 6.0]:
            problems.append(f"stream pystream: {outs}")
    except queue.Empty:
        problems.append("stream pystream: no answer")
    finally:
        client.stop_stream()
        client.close()
    return problems


def settle(pid, baseline, seconds=15):
    """Waits (bounded) until the server's threads and fds are back near
    `baseline` and it has no child but its Python model processes (a
    comparison child of a re-timing, `--compare-in-child`, ends and is
    reaped); returns the last reading. Not a timing assert: the reading is
    asserted after, whatever the wait."""
    deadline = time.time() + seconds
    while True:
        now = {"threads": proc_threads(pid), "fds": proc_fds(pid), "python": python_processes(pid)}
        if (now["threads"] <= baseline["threads"] + THREAD_MARGIN and now["fds"] <= baseline["fds"] + FD_MARGIN
                and not now["python"][1]) or time.time() > deadline:
            return now
        time.sleep(0.25)


THREAD_MARGIN = 8  # tokio's blocking pool keeps idle threads a while
FD_MARGIN = 8
RSS_MARGIN_KIB = 64 * 1024  # docs/RELIABILITY.md "Soak": --max-growth-mib 64 by default


@pytest.fixture(scope="module")
def storm(tmp_path_factory):
    repo = build_repository(tmp_path_factory.mktemp("stress"))
    proc, server = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*")
    try:
        wait_ready(server["HTTP"])
        wait_models_ready(server, ALL_MODELS)
        pid = proc.pid
        # Warm up: every model over both protocols, one churn cycle, so that
        # what is created once (pools, connections, engines) is in the baseline.
        warm_problems = one_of_each(server)
        assert not warm_problems, f"before the storm: {warm_problems}"
        for m in CHURNED:
            for action in ("unload", "load"):
                r = requests.post(f"http://{server['HTTP']}/v2/repository/models/{m}/{action}", timeout=60)
                assert r.status_code == 200, f"{action} {m} before the storm: {r.status_code} {r.text}"
        load_all(server)
        warm_problems = one_of_each(server)
        assert not warm_problems, f"before the storm, after a reload: {warm_problems}"
        time.sleep(0.5)
        before = {"threads": proc_threads(pid), "fds": proc_fds(pid), "rss": proc_rss_kib(pid),
                  "python": python_processes(pid)}
        seq_stats_before = counts(server, "pyseq")

        log, stop = Log(), threading.Event()
        jobs = []
        pool = cf.ThreadPoolExecutor(16)
        for i in range(3):
            jobs.append(pool.submit(plain_worker, server, "http", 10 + i, stop, log))
            jobs.append(pool.submit(plain_worker, server, "grpc", 20 + i, stop, log))
        jobs.append(pool.submit(giving_up_worker, server, 30, stop, log))
        jobs.append(pool.submit(giving_up_worker, server, 31, stop, log))
        jobs.append(pool.submit(stream_worker, server, 40, stop, log))
        jobs.append(pool.submit(stream_worker, server, 41, stop, log))
        jobs.append(pool.submit(sequence_worker, server, "http", 50, stop, log))
        jobs.append(pool.submit(sequence_worker, server, "grpc", 51, stop, log))
        jobs.append(pool.submit(sequence_worker, server, "grpc-stream", 52, stop, log))
        jobs.append(pool.submit(churn_worker, server, 60, stop, log))
        jobs.append(pool.submit(reader_worker, server, 70, stop, log))
        time.sleep(STORM_SECONDS)
        stop.set()
        done, pending = cf.wait(jobs, timeout=4 * BOUND)
        pool.shutdown(wait=False)  # a hung client thread must not hang the test too
        assert not pending, f"{len(pending)} client threads did not end: a request hung past every bound"
        for j in jobs:
            j.result()  # a worker's own bug shows here
        alive = proc.poll() is None
        yield {"proc": proc, "pid": pid, "server": server, "log": log, "before": before, "alive": alive,
               "seq_stats_before": seq_stats_before}
    finally:
        if proc.poll() is None:
            stop_serve(proc)


@pytest.fixture(scope="module")
def after(storm):
    """The server after the storm: every model loaded again and answering;
    then threads and fds given time to settle."""
    assert storm["alive"], f"the server died in the storm (exit status {storm['proc'].poll()})"
    server = storm["server"]
    # The churn ends each round with a load: every model should be READY
    # as it is, the ensemble too (ENSEMBLES.md: loading its composing model
    # again makes it ready, with no reload of the ensemble).
    index = requests.post(f"http://{server['HTTP']}/v2/repository/index", timeout=BOUND).json()
    states = {row["name"]: (row.get("state"), row.get("reason")) for row in index}
    load_all(server)
    problems = one_of_each(server)
    now = settle(storm["pid"], storm["before"])
    now["rss"] = proc_rss_kib(storm["pid"])
    return {"problems": problems, "now": now, "states": states}


# ---------------------------------------------------------------- invariants


def test_the_storm_sent_every_kind_of_request(storm):
    """Guards the test itself: each kind of traffic ran and met the churn
    (some 404s or 503s), so the invariants below are about something."""
    log = storm["log"]
    if os.environ.get("STRESS_SUMMARY"):
        from collections import Counter
        print(Counter((r["kind"], r["model"], r["proto"], r.get("way", ""), r["status"]) for r in log.records))
        print(storm["before"])
        seen = {}
        for r in log.records:
            seen.setdefault((r["kind"], r["model"], r["status"]), r.get("detail"))
        for k, v in seen.items():
            print(k, str(v)[:300])
    for kind in ("plain", "gave_up", "stream", "seq", "control", "read"):
        assert log.where(kind=kind), f"no {kind} requests were sent"
    assert len(log.where(kind="control", action="unload")) >= 4, "the churn thread unloaded fewer than 4 times"
    refused = [r for r in log.where(kind="plain") if r["status"] != HTTP_OK]
    ok = log.where(kind="plain", status=HTTP_OK)
    assert ok and refused, f"{len(ok)} answers and {len(refused)} refusals: the churn never met a request"


def test_every_request_ends_with_a_documented_status(storm):
    """SERVING.md "Errors" and "Model control", ENSEMBLES.md "Loading,
    unloading, readiness": every request of the storm ended (none hung past
    its bound) with 200 or the status documented for its situation."""
    bad = []
    for r in storm["log"].records:
        if r["kind"] == "plain":
            ok = allowed(r["proto"], r["model"])
        elif r["kind"] == "gave_up":
            ok = allowed(r["proto"], "pyb", r["way"])
            if r["way"] in ("http-read-timeout", "network_timeout"):
                ok = ok | {"abandoned"}  # the client's own choice
        elif r["kind"] == "seq":
            ok = allowed("http", "pyseq")
        elif r["kind"] == "stream":
            # complete, or cancelled by the client, or an error (the model unloaded)
            ok = {"complete", "cancelled", "error"}
        elif r["kind"] == "read":
            ok = {HTTP_OK} if r["what"] == "index" else {HTTP_OK, "404", "503"}
        else:
            continue
        if r["status"] not in ok:
            bad.append(r)
    assert not bad, f"{len(bad)} requests ended outside the documented statuses, e.g. {bad[:5]}"


def test_stream_errors_are_only_for_an_unloaded_model(storm):
    """A decoupled model's stream ends with its final response; while the
    model is unloaded a request is answered on the stream with the unknown
    model error (SERVING.md "gRPC": an error answers that request, the stream
    goes on)."""
    errors = [r for r in storm["log"].where(kind="stream", status="error")
              if "unknown model" not in r["detail"] and "not ready" not in r["detail"]
              and "loading" not in r["detail"]]
    assert not errors, f"streams ended with other errors: {errors[:5]}"


def test_every_answer_is_numerically_right(storm):
    """Every 200 answer equals numpy's result for its own inputs (each
    client gets exactly its own rows of a dynamic batch: SERVING.md
    "Queue, batching and instances"), on every model and protocol, streams
    included."""
    wrong = [r for r in storm["log"].records if r.get("wrong")]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:5]}"


def test_sequences_keep_their_running_sums(storm):
    """SERVING.md "Sequence models": a sequence's requests run in order on
    one instance, and a load of the unchanged model does nothing ("keeps
    its open sequences"): every step of every sequence answered 200 with
    the running sum (checked in `test_every_answer_is_numerically_right`
    too), and every sequence ran to its end."""
    seq = storm["log"].where(kind="seq")
    assert seq, "no sequence ran"
    failed = [r for r in seq if r["status"] != HTTP_OK]
    assert not failed, f"{len(failed)} sequence steps failed, e.g. {failed[:5]}"
    noop_loads = storm["log"].where(kind="control", model="pyseq")
    assert noop_loads and all(r["status"] == HTTP_OK for r in noop_loads), noop_loads


def test_repository_api_calls_succeed(storm):
    """SERVING.md "Model control": load and unload answer 200 in explicit
    mode, an unload of a model with requests in flight included."""
    bad = [r for r in storm["log"].where(kind="control") if r["status"] != HTTP_OK]
    assert not bad, f"repository calls failed: {bad[:5]}"


def test_every_model_is_ready_once_the_churn_ends(storm, after):
    """SERVING.md "Model control" and ENSEMBLES.md "Loading, unloading,
    readiness": the churn ended each round by loading the model it unloaded,
    so once it stops every model is READY, with no further call; the
    ensemble too (loading its composing model again makes it ready)."""
    not_ready = {m: s for m, s in after["states"].items() if s[0] != "READY"}
    assert set(after["states"]) == set(ALL_MODELS), after["states"]
    assert not not_ready, f"not READY after the churn: {not_ready}"


def test_the_server_is_healthy_and_every_model_answers_after(storm, after):
    """After the storm the server is live and ready, every model loads (200)
    and answers right over HTTP and gRPC, and the index shows them READY."""
    server = storm["server"]
    assert requests.get(f"http://{server['HTTP']}/v2/health/live", timeout=BOUND).status_code == 200
    assert requests.get(f"http://{server['HTTP']}/v2/health/ready", timeout=BOUND).status_code == 200
    assert not after["problems"], f"after the storm: {after['problems']}"
    index = requests.post(f"http://{server['HTTP']}/v2/repository/index", timeout=BOUND).json()
    states = {row["name"]: row.get("state") for row in index}
    assert states == {m: "READY" for m in ALL_MODELS}, states


def test_sequence_statistics_match_what_the_clients_saw(storm, after):
    """SERVING.md "Statistics": `success` counts the requests answered and
    `fail` those that failed after being queued or run; `pyseq` was never
    unloaded (only loaded unchanged, which keeps its statistics), so its
    counters grew by exactly the clients' 200s (plus the 6 steps of the
    after-storm check) and their failures."""
    success0, fail0 = storm["seq_stats_before"]
    success, fail = counts(storm["server"], "pyseq")
    seq = storm["log"].where(kind="seq")
    ok = sum(r["status"] == HTTP_OK for r in seq)
    assert success - success0 == ok + 6, f"pyseq success grew by {success - success0}; clients saw {ok} + 6 answers"
    assert fail - fail0 == len(seq) - ok, f"pyseq fail grew by {fail - fail0}; clients saw {len(seq) - ok} failures"


def test_statistics_count_each_request_once_after_the_storm(storm, after):
    """SERVING.md "Statistics" and ENSEMBLES.md "Statistics": on every model
    as loaded after the storm, 4 requests over each protocol add 8 to
    `success` and none to `fail`; an ensemble request counts once in the
    ensemble and once in each step's model; a decoupled request counts once
    however many responses it sends; a request past its `timeout` (504)
    counts once, in `fail` (SERVING.md "HTTP": "a timed-out request counts
    as a failure in the statistics"), not also as a success."""
    server = storm["server"]
    models = ["add", "matmul", "pyb", "ens", "pystream"]
    before = {m: counts(server, m) for m in models}
    rng = np.random.default_rng(3)
    for proto in ("http", "grpc"):
        client = http_client(server) if proto == "http" else grpc_client(server)
        try:
            for model in ["add", "matmul", "pyb", "ens"]:
                for _ in range(4):
                    x = inputs_for(model, rng)
                    assert check_answer(model, x, infer(proto, client, model, x)) is None
            x = inputs_for("pyb", rng)
            with pytest.raises(InferenceServerException) as e:
                infer(proto, client, "pyb", x, parameters={"sleep_ms": 300}, timeout=50_000)
            assert status_of(e.value) == ERROR_STATUS[proto]["deadline"], e.value
            if proto == "grpc":  # the client's own deadline (grpc-timeout)
                with pytest.raises(InferenceServerException) as e:
                    infer(proto, client, "pyb", x, parameters={"sleep_ms": 300}, client_timeout=0.2)
                assert status_of(e.value) == ERROR_STATUS[proto]["deadline"], e.value
        finally:
            client.close()
    got = queue.Queue()
    client = grpc_client(server)
    client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), got))
    try:
        for _ in range(3):
            client.async_stream_infer("pystream", [stream_tensor("N", 4, "INT32"), stream_tensor("V", 1.0, "FP32"),
                                                   stream_tensor("DELAY_MS", 0, "INT32")])
        for _ in range(12):
            result, error = got.get(timeout=BOUND)
            assert error is None, error
    finally:
        client.stop_stream()
        client.close()
    time.sleep(0.8)  # the timed-out pyb calls (300 ms) end and are counted
    deltas = {m: tuple(a - b for a, b in zip(counts(server, m), before[m])) for m in models}
    want = {"add": (16, 0), "matmul": (8, 0), "pyb": (16, 3), "ens": (8, 0), "pystream": (3, 0)}
    assert deltas == want, f"(success, fail) deltas {deltas}, documented {want}"


def test_python_processes_are_as_many_as_instances(storm, after):
    """SERVING.md "Python models": one Python process per instance; after
    many unloads and loads, each model has exactly its instances' processes
    (none leaked from an earlier load) and the server has no other child
    left (no zombie, no comparison child still running)."""
    counts_now, others = after["now"]["python"]
    assert counts_now == PYTHON_INSTANCES, f"Python processes per model {counts_now}, instances {PYTHON_INSTANCES}"
    assert not others, f"other children of the server: {others}"


def test_threads_and_fds_return_to_their_level(storm, after):
    """No thread or file descriptor leaked by the storm: /proc/PID/task and
    /proc/PID/fd of the server are back within a small margin of their
    count before it (after a warm-up that loaded every model twice)."""
    before, now = storm["before"], after["now"]
    assert now["threads"] <= before["threads"] + THREAD_MARGIN, \
        f"threads {before['threads']} before the storm, {now['threads']} after"
    assert now["fds"] <= before["fds"] + FD_MARGIN, f"open fds {before['fds']} before the storm, {now['fds']} after"


def test_resident_memory_stays_bounded(storm, after):
    """The server's VmRSS after the storm is within a bound of its level
    before (docs/RELIABILITY.md "Soak": flat after warm-up); a leak per
    request or per reload would pass it."""
    before, now = storm["before"]["rss"], after["now"]["rss"]
    if os.environ.get("STRESS_SUMMARY"):
        print("before", storm["before"], "after", after["now"])
    assert now <= before + RSS_MARGIN_KIB, f"VmRSS {before} KiB before the storm, {now} KiB after"


def test_concurrent_loads_of_one_model_leave_one_set_of_processes(storm, after):
    """SERVING.md "Model control": "two clients (or two models' code)
    loading one model at once both succeed"; after 4 loads at once of an
    unloaded Python model, over both protocols, it serves with exactly its
    instances' processes (SERVING.md "Python models": one per instance)."""
    server = storm["server"]
    r = requests.post(f"http://{server['HTTP']}/v2/repository/models/pyb/unload", timeout=BOUND)
    assert r.status_code == 200, r.text

    def load(k):
        if k % 2:
            return requests.post(f"http://{server['HTTP']}/v2/repository/models/pyb/load", timeout=60).status_code
        client = grpc_client(server)
        try:
            client.load_model("pyb", client_timeout=60)
            return 200
        except InferenceServerException as e:
            return status_of(e)
        finally:
            client.close()

    with cf.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(load, range(4)))
    assert statuses == [200] * 4, statuses
    deadline = time.time() + 10
    while python_processes(storm["pid"])[0].get("pyb") != 2 and time.time() < deadline:
        time.sleep(0.1)
    assert python_processes(storm["pid"])[0] == PYTHON_INSTANCES, python_processes(storm["pid"])
    problems = one_of_each(server)
    assert not problems, problems


def test_an_ensemble_is_ready_once_both_its_unloaded_composing_models_are_loaded_again(tmp_path):
    """ENSEMBLES.md "Loading, unloading, readiness": when a composing model
    is unloaded the ensemble stays known, UNAVAILABLE; "Loading the model
    again makes the ensemble ready again, with no reload of the ensemble".
    With both of `ens`'s models unloaded and loaded again (add, then pyb),
    the ensemble must serve again."""
    repo = tmp_path / "repo"
    repo.mkdir()
    build_repository(repo)
    proc, server = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "ens")
    try:
        wait_ready(server["HTTP"])
        for call in ("pyb/unload", "add/unload", "add/load", "pyb/load"):
            r = requests.post(f"http://{server['HTTP']}/v2/repository/models/{call}", timeout=60)
            assert r.status_code == 200, f"{call}: {r.status_code} {r.text}"
        client = http_client(server)
        try:
            x = inputs_for("ens", np.random.default_rng(5))
            try:
                got = infer("http", client, "ens", x)
            except InferenceServerException as e:
                pytest.fail(f"ens after both composing models were loaded again: {e.status()} {e}")
            assert check_answer("ens", x, got) is None
        finally:
            client.close()
    finally:
        stop_serve(proc)
