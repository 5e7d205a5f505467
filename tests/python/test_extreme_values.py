"""Extreme and malformed values at every input anemone takes (paths are
test_hostile_paths.py's, the documented limits test_limits_docs.py's).

Every bad value must get a clear error (HTTP 4xx / gRPC INVALID_ARGUMENT, or
a load failure naming the field) while the server keeps serving: never a
500, a panic ("panicked at" in its log), a crash, a hang or a huge
allocation. After its values each test calls `Served.check`: a good
inference answered with numpy's numbers, the server alive, no panic logged.
Covered: request shapes and sizes (JSON, binary extension, BYTES prefixes),
datatypes, FP16 and integer edges; priority, timeout, sequence and
classification parameters; shared memory offsets and region names;
config.pbtxt numbers from the repository and a load's JSON config; the
trace, logging, repository and version APIs; gRPC's typed parameters;
`anemone serve`'s numeric flags, ANEMONE_* variables and config-file keys.

Models are generated with `onnx` (Add/Sub, Identity) or written as Python
models. tritonserver 2.51 (scripts/triton_peer's CPU peer, Python stand-ins,
2026-12-05) answered what a Python model could ask; the docstrings say what.
CI has no Triton. Crashes and undocumented differences are
xfail(strict=True, reason="DEFECT: ...").

Found in session 41 and fixed there (their docstrings tell what anemone did
before): the start-up bounds on --workers, --model-load-thread-count and
--threads, exit status 2 for range checks after parsing, --repository-poll-secs
0, the comparison child that outlived the server, the direct sequence
batcher's delay, version folders with leading zeros, trace_mode sent back,
classification 2**64-1, and the documented instance bound. Found then, fixed
in session 42: a load's JSON config errors that named neither field nor value.
"""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
import requests
import tritonclient.utils.shared_memory as shm
from onnx import TensorProto, helper, numpy_helper
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
U64 = 2**64 - 1
X4 = np.array([1.5, -2.0, 3.25, 8.0], np.float32)


# ---------------------------------------------------------------- models

def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def vi(name, elem, dims):
    return helper.make_tensor_value_info(name, elem, dims)


def add_model(path, batch, op="Add"):
    """sum = x + y (x * y with op "Mul"), diff = x - y; FP32 [4] or [b, 4]."""
    d, f = (["b", 4] if batch else [4]), TensorProto.FLOAT
    save(helper.make_graph([helper.make_node(op, ["x", "y"], ["sum"]), helper.make_node("Sub", ["x", "y"], ["diff"])],
                           "g", [vi("x", f, d), vi("y", f, d)], [vi("sum", f, d), vi("diff", f, d)]), path)


def identity_model(path, elem, dims):
    save(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [vi("x", elem, dims)],
                           [vi("y", elem, dims)]), path)


def slow_model(path, k=800, d=256):
    """y = x @ I @ I ... (k MatMuls): timing a warm-up of [16384, 256] takes a minute."""
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i - 1}", "W"], [f"h{i}"]) for i in range(k)]
    nodes.append(helper.make_node("Identity", [f"h{k - 1}"], ["y"]))
    f = TensorProto.FLOAT
    save(helper.make_graph(nodes, "g", [vi("x", f, ["n", d])], [vi("y", f, ["n", d])],
                           [numpy_helper.from_array(np.eye(d, dtype=np.float32), "W")]), path)


FIXTURES = Path(__file__).resolve().parent / "fixtures/extreme_values"
ONNX = 'platform: "onnxruntime_onnx"\n'
B8 = ONNX + "max_batch_size: 8\n"
NB = ONNX + "max_batch_size: 0\n"


def io4(d="4"):
    return ('input [ { name: "x" data_type: TYPE_FP32 dims: [ D ] }, { name: "y" data_type: TYPE_FP32 dims: [ D ] } ]\n'
            'output [ { name: "sum" data_type: TYPE_FP32 dims: [ D ] }, { name: "diff" data_type: TYPE_FP32 dims: '
            '[ D ] } ]\n').replace("D", d)


def warm(b="1", c="0", d="4"):
    return ('model_warmup [ { name: "w" batch_size: B count: C inputs { key: "x" value: { data_type: TYPE_FP32 dims: '
            '[ D ] zero_data: true } } inputs { key: "y" value: { data_type: TYPE_FP32 dims: [ D ] zero_data: true } } '
            '} ]\n').replace("B", b).replace("C", c).replace("D", d)


DB, IG, VP = "dynamic_batching { %s }\n", "instance_group [ %s ]\n", "version_policy { %s }\n"
# config.pbtxt cases, loaded through the load API: (config, words the refusal
# names) or (config, rows a request that must be served has).
CONFIGS = {
    "mbs_neg": (ONNX + "max_batch_size: -1\n" + io4(), ["max_batch_size", "-1"]),
    "mbs_over_i32": (ONNX + "max_batch_size: 2147483648\n" + io4(), ["line 2", "2147483648"]),
    "mbs_i32max": (ONNX + "max_batch_size: 2147483647\n" + io4(), 3),
    "dims_zero": (B8 + io4("0"), ["input[0].dims", "0"]),
    "dims_over_i64": (B8 + io4("9223372036854775808"), ["9223372036854775808"]),
    "dims_product_past_u64": (NB + io4("4294967296, 4294967296"), ["input 'x'"]),
    "preferred_zero": (B8 + io4() + DB % "preferred_batch_size: [ 0 ]", ["preferred_batch_size", "0"]),
    "preferred_i32max": (B8 + io4() + DB % "preferred_batch_size: [ 2147483647 ]", ["preferred_batch_size"]),
    "delay_neg": (B8 + io4() + DB % "max_queue_delay_microseconds: -1", ["line", "-1"]),
    "default_priority_past_levels": (B8 + io4() + DB % "priority_levels: 2 default_priority_level: 3",
                                     ["default_priority_level", "3"]),
    "priority_levels_u64": (B8 + io4() + DB % f"priority_levels: {U64} default_priority_level: {U64}", 2),
    "queue_timeout_u64": (B8 + io4() + DB % f"default_queue_policy {{ default_timeout_microseconds: {U64} }}", 2),
    "instances_100000": (B8 + io4() + IG % "{ count: 100000 kind: KIND_CPU }", ["instance_group", "100000"]),
    "instances_wrapping_i32": (B8 + io4() + IG % "{ count: 2147483647 kind: KIND_CPU }, { count: 2 kind: KIND_CPU }",
                               ["instance_group", "2147483649"]),
    "instances_negative": (B8 + io4() + IG % "{ count: -5 kind: KIND_CPU }", 2),
    "warmup_batch_u32max": (B8 + io4() + warm(b="4294967295"), ["batch_size", "4294967295"]),
    "warmup_count_u32max": (B8 + io4() + warm(c="4294967295"), ["count", "4294967295"]),
    "warmup_dims_product": (NB + io4("-1, -1") + warm(d="4294967296, 4294967296"), ["model_warmup", "larger than"]),
    "latest_zero_versions": (B8 + io4() + VP % "latest { num_versions: 0 }", ["num_versions"]),
    "latest_u32max_versions": (B8 + io4() + VP % "latest { num_versions: 4294967295 }", 2),
    "specific_versions_neg": (B8 + io4() + VP % f"specific {{ versions: [ -1, {2**63 - 1} ] }}", ["version -1"]),
    "param_threads_100000": (B8 + io4() + 'parameters { key: "threads" value: { string_value: "100000" } }\n',
                             ["threads", "100000"]),
    "param_max_concurrency_2e64": (B8 + io4() + 'parameters { key: "max_concurrency" value: { string_value: '
                                   '"18446744073709551616" } }\n', ["max_concurrency"]),
    "graph_level_i32max": (B8 + io4() + "optimization { graph { level: 2147483647 } }\n",
                           ["optimization.graph.level", "2147483647"]),
    "reshape_product": (NB + 'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 4294967296, '
                        '4294967296 ] } }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n', ["reshape"]),
}


class Served:
    """The module's server: its addresses, log and helpers."""

    def __init__(self, proc, addresses, log):
        self.proc, self.http, self.log = proc, addresses["HTTP"], log
        self.stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel(addresses["gRPC"]))

    def post(self, path, body=None, data=None, headers=None):
        r = requests.post(f"http://{self.http}{path}", json=body if data is None else None, data=data,
                          headers=headers, timeout=30)
        return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)

    def get(self, path):
        r = requests.get(f"http://{self.http}{path}", timeout=30)
        return r.status_code, r.json() if r.text else None

    def error(self, status, body, want=400):
        """Asserts a clear refusal: status `want` (or one of a tuple) and a JSON error; returns its text."""
        assert status in (want if isinstance(want, tuple) else (want,)), (status, body)
        assert isinstance(body, dict) and body.get("error"), body
        return body["error"]

    def check(self):
        """The server lives, answers a good request with numpy's numbers, and logged no panic."""
        assert self.proc.poll() is None, f"the server exited with status {self.proc.poll()}"
        x, y = np.random.default_rng().standard_normal((2, 4)).astype(np.float32)
        status, body = self.post("/v2/models/add_nb/infer", add_body(x, y))
        assert status == 200, body
        out = {o["name"]: np.array(o["data"], np.float32) for o in body["outputs"]}
        np.testing.assert_array_equal(out["sum"], x + y)
        np.testing.assert_array_equal(out["diff"], x - y)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        assert "panicked at" not in text, text[text.find("panicked at") - 300:][:1500]

    def index(self, name):
        return [r for r in self.post("/v2/repository/index", {})[1] if r["name"] == name]


def add_body(x, y, shape=None, params=None):
    shape = list(np.shape(x)) if shape is None else shape
    b = {"inputs": [{"name": n, "shape": shape, "datatype": "FP32", "data": np.asarray(v).ravel().tolist()}
                    for n, v in (("x", x), ("y", y))]}
    if params is not None:
        b["parameters"] = params
    return b


def rows(n):
    return np.arange(4 * n, dtype=np.float32).reshape(n, 4), np.full((n, 4), 0.5, np.float32)


def check_add(srv, model, params=None, n=1, version=None, batch=True):
    """`model` answers sum = x + y (numpy) for n rows (or one [4] row without a batch)."""
    x, y = rows(n) if batch else (X4, X4 * 2)
    route = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    status, body = srv.post(route, add_body(x, y, params=params))
    assert status == 200, body
    np.testing.assert_array_equal(np.array(body["outputs"][0]["data"], np.float32).reshape(np.shape(x)), x + y)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("extreme")
    models = {"add_nb": NB, "add_b": B8 + io4() + DB % ("max_queue_delay_microseconds: 100 priority_levels: 3 "
              "default_priority_level: 2 default_queue_policy { allow_timeout_override: true }")
              + "response_cache { enable: true }\n", "ovr": B8 + io4(),
              "c_delay_u64max": B8 + io4() + DB % f"max_queue_delay_microseconds: {U64}",
              "c_seq_idle_u64max": B8 + io4() + f"sequence_batching {{ max_sequence_idle_microseconds: {U64} }}\n",
              "c_seq_direct_delay": B8 + io4() + "sequence_batching { direct { max_queue_delay_microseconds: 1500000 } }\n",
              "c_instances_65": B8 + io4() + IG % "{ count: 65 kind: KIND_CPU }",
              **{f"c_{name}": cfg for name, (cfg, _) in CONFIGS.items()}}
    for name, cfg in models.items():
        add_model(repo / name / "1/model.onnx", name != "add_nb")
        (repo / name / "config.pbtxt").write_text(cfg)
    for name, elem, dims in [("id_str", TensorProto.STRING, [-1]), ("id_f16", TensorProto.FLOAT16, [-1]),
                             ("id_bf16", TensorProto.BFLOAT16, [-1])]:
        identity_model(repo / name / "1/model.onnx", elem, dims)
    for name in ("pyseq", "pyid"):  # Python models: a sequence accumulator (UINT64 CORRID), a doubler
        shutil.copytree(FIXTURES / name, repo / name)
    # Version folders "1" (x + y), "01" and "001" (x * y).
    add_model(repo / "vzeros/1/model.onnx", False)
    for v in ("01", "001"):
        add_model(repo / "vzeros" / v / "model.onnx", False, op="Mul")
    (repo / "vzeros/config.pbtxt").write_text(NB + VP % "all { }")
    log = repo.parent / (repo.name + ".log")
    base = ["add_nb", "add_b", "ovr", "id_str", "id_f16", "pyseq", "pyid"]
    # Numbers at their largest that must simply work: a 2**64-1 byte cache and memory budget.
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", *[a for m in base for a in ("--load-model", m)],
                                  "--log-file", str(log), "--trace-file", str(repo.parent / "trace.json"),
                                  "--cache-config", f"local,size={U64}", "--memory-budget", str(U64),
                                  "--backends", "tract-cpu,onnxruntime", "--health-monitor", "false")
    try:
        wait_ready(addresses["HTTP"], seconds=120)
        yield Served(proc, addresses, log)
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- request shapes and sizes

def binary(srv, model, inputs, payload, hlen=None, outputs=None):
    header = json.dumps({"inputs": inputs, **({"outputs": outputs} if outputs else {})}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)) if hlen is None else hlen}
    return srv.post(f"/v2/models/{model}/infer", data=header + payload, headers=headers)


def bin_input(name, shape, size, dt="BYTES"):
    return {"name": name, "shape": shape, "datatype": dt, "parameters": {"binary_data_size": size}}


def test_json_shapes_that_cannot_be_are_400(srv):
    """JSON `shape`s with a negative, huge or overflowing dimension (2**63-1,
    2**64-1, 2**64, 2**32 x 2**32, 2**62 x 4 FP32) or a non-integer one are
    400 before anything is allocated (RELIABILITY.md "Shape arithmetic: no
    overflow, no negative dimension"); 2**31 elements from 4 values is the
    data count's 400."""
    for shape in ([-1], [2**31], [2**63 - 1], [U64], [2**64], [2**32, 2**32], [2**62, 4], [4.0], ["4"], [True], -1):
        srv.error(*srv.post("/v2/models/add_nb/infer", add_body([1, 2, 3, 4], [1, 2, 3, 4], shape=shape)))
    srv.check()


def test_binary_header_lengths_sizes_and_shapes_that_disagree_are_400(srv):
    """The binary extension: `Inference-Header-Content-Length` negative,
    not a number, hex, past the body or past u64 is 400 naming the header
    (tritonserver 2.51: 400 "Unable to parse inference request header
    size"); `binary_data_size` negative, 2**63, 2**64-1, past u64, a string,
    a bool, a byte short, or a shape whose bytes are not those sent (2**62
    FP32 elements overflow u64 bytes) is 400 naming input 'x'
    (RELIABILITY.md "at most the bytes that remain")."""
    ins = [bin_input("x", [4], 16, "FP32"), bin_input("y", [4], 16, "FP32")]
    for hlen in ["-1", "abc", "1e3", "", "0x10", "-0", str(2**63), str(2**64), "9" * 23]:
        status, body = binary(srv, "add_nb", ins, X4.tobytes() * 2, hlen=hlen)
        assert "Inference-Header-Content-Length" in srv.error(status, body), hlen
    for size, shape in [(-1, [4]), (2**63, [4]), (U64, [4]), (2**64, [4]), ("16", [4]), (True, [4]), (15, [4]),
                        (16, [2**62]), (16, [0]), (16, [5])]:
        status, body = binary(srv, "add_nb", [bin_input("x", shape, size, "FP32"), ins[1]], X4.tobytes() * 2)
        assert "'x'" in srv.error(status, body), (size, shape)
    srv.check()


def test_bytes_length_prefixes_past_the_end_are_400(srv):
    """BYTES in the binary extension: a length prefix claiming more than
    remains (100, 2**32-1), data ending inside a prefix, fewer or more
    elements than the shape, [2**40] elements from 4 bytes: 400 naming
    input 'x' (RELIABILITY.md "BYTES elements"); a well-formed pair ("",
    "a\\0c") then comes back as sent."""
    for payload, shape in [(struct.pack("<I", 100) + b"abc", [1]), (struct.pack("<I", 2**32 - 1) + b"abc", [1]),
                           (b"\x01\x00", [1]), (struct.pack("<I", 3) + b"abc", [2]),
                           ((struct.pack("<I", 1) + b"a") * 3, [2]), (struct.pack("<I", 0), [2**40])]:
        assert "'x'" in srv.error(*binary(srv, "id_str", [bin_input("x", shape, len(payload))], payload)), payload
    ok = struct.pack("<I", 0) + struct.pack("<I", 3) + b"a\0c"
    status, body = binary(srv, "id_str", [bin_input("x", [2], len(ok))], ok,
                          outputs=[{"name": "y", "parameters": {"binary_data": False}}])
    assert status == 200 and body["outputs"][0]["data"] == ["", "a\0c"], body
    srv.check()


def test_datatype_spellings_are_400_and_a_bfloat16_model_names_its_type(srv):
    """Datatypes are case- and byte-exact (KServe v2): odd case, a trailing
    space, Triton's config names, BF16, "", a NUL or full-width letters are
    400 / INVALID_ARGUMENT "unknown datatype" over HTTP and gRPC. An ONNX
    model with a BFLOAT16 input fails to load naming the input and the type
    (docs/CONFORMANCE.md: bfloat16 is not carried)."""
    for dt in ["fp32", "Fp32", "FP32 ", "FLOAT", "TYPE_FP32", "BF16", "", "FP32\0", "ＦＰ32"]:
        body = add_body(X4, X4)
        body["inputs"][0]["datatype"] = dt
        assert "unknown datatype" in srv.error(*srv.post("/v2/models/add_nb/infer", body)), dt
        with pytest.raises(grpc.RpcError) as e:
            srv.stub.ModelInfer(grpc_add("add_nb", [4], dt=dt), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown datatype" in e.value.details()
    error = srv.error(*srv.post("/v2/repository/models/id_bf16/load", {}))
    assert "BFLOAT16" in error and "'x'" in error, error
    srv.check()


def test_fp16_edge_values_round_as_numpy_does(srv):
    """FP16 in JSON (FROM_TRITON.md: anemone takes it, Triton 2.51 refuses
    it): the largest finite half, values rounding to infinity (65520,
    1e39), subnormals, half the smallest subnormal (rounds to 0), -0.0,
    "inf" and "-inf" come back as numpy's float16, bit for bit; "nan" as a
    NaN."""
    values = [65504.0, -65504.0, 65519.0, 65520.0, 1e39, 2.0**-24, 2.0**-25, 6e-8, 1e-8, -0.0, 6.103515625e-05,
              "inf", "-inf", "nan"]
    status, body = srv.post("/v2/models/id_f16/infer",
                            {"inputs": [{"name": "x", "shape": [len(values)], "datatype": "FP16", "data": values}]})
    assert status == 200, body
    got = np.array([float(v) for v in body["outputs"][0]["data"]], np.float16)
    with np.errstate(over="ignore"):
        want = np.array([float(v) for v in values], np.float64).astype(np.float16)
    np.testing.assert_array_equal(got.view(np.uint16)[:-1], want.view(np.uint16)[:-1])
    assert np.isnan(got[-1])
    srv.check()


# ---------------------------------------------------------------- parameters

PRIORITY_TIMEOUT_OK = [("priority", 0), ("priority", 2**31), ("priority", U64), ("timeout", U64), ("timeout", 2**63)]
PRIORITY_TIMEOUT_BAD = [("priority", -1), ("priority", 2**64), ("priority", 1.5), ("priority", "1"), ("priority", True),
                        ("timeout", -1), ("timeout", -2**63), ("timeout", 1e30), ("timeout", "5"), ("timeout", False)]


@pytest.mark.parametrize("ok", [True, False], ids=["in_range", "refused"])
def test_priority_and_timeout_values(srv, ok):
    """`priority` and `timeout` (SERVING.md: "anything but a whole number is
    a 400"; "a priority past the model's levels, however large, is the
    default level"): up to 2**64-1 they are served with numpy's numbers on a
    batching model (allow_timeout_override), a plain ONNX and a Python
    model, a 2**64-1 µs timeout not overflowing the clock; negative, past
    u64, fractional, string and boolean values are 400 naming them."""
    x, y = rows(2)
    wants = {"add_b": x + y, "add_nb": x[0] + y[0], "pyid": 2 * x[0]}
    for name, value in PRIORITY_TIMEOUT_OK if ok else PRIORITY_TIMEOUT_BAD:
        sent = {"add_b": add_body(x, y), "add_nb": add_body(x[0], y[0]),
                "pyid": {"inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32", "data": x[0].tolist()}]}}
        for model, body in sent.items():
            body["parameters"] = {name: value}
            status, answer = srv.post(f"/v2/models/{model}/infer", body)
            if ok:
                assert status == 200, (model, name, value, answer)
                got = np.array(answer["outputs"][0]["data"], np.float32).reshape(answer["outputs"][0]["shape"])
                np.testing.assert_array_equal(got, wants[model])
            else:
                assert name in srv.error(status, answer), (model, value)
    srv.check()


def seq_body(value, params):
    return {"inputs": [{"name": "IN", "shape": [1, 1], "datatype": "INT32", "data": [value]}], "parameters": params}


@pytest.mark.parametrize("ok", [True, False], ids=["in_range", "refused"])
def test_sequence_id_values(srv, ok):
    """`sequence_id` (SERVING.md "Sequence models"): a whole number up to
    2**64-1 reaches the UINT64 CORRID exactly; 0 and "" are Triton's "must
    specify a non-zero or non-empty correlation ID"; negative, past u64,
    fractional and boolean ids are 400 naming it; a string (10 KB too) for
    a UINT64 CORRID is 400 saying to send a number."""
    for sid in [1, 2**63, U64] if ok else [0, "", -1, 2**64, 1.5, True, "abc", "x" * 10000]:
        status, body = srv.post("/v2/models/pyseq/infer", seq_body(7, {"sequence_id": sid, "sequence_start": True,
                                                                       "sequence_end": True}))
        if ok:
            assert status == 200, body
            assert {o["name"]: o["data"] for o in body["outputs"]} == {"OUT": [7], "CORR": [sid]}
        else:
            assert re.search("sequence_id|correlation ID", srv.error(status, body)), sid
    srv.check()


def test_sequence_flags_that_are_not_booleans_are_400(srv):
    """`sequence_start` / `sequence_end` as "true"/"false" or 1/2: 400
    naming the flag, and a refused START opens nothing (SERVING.md)."""
    for flag, value in [("sequence_start", "true"), ("sequence_start", 1), ("sequence_end", "false"),
                        ("sequence_end", 2)]:
        params = {"sequence_id": 4242, "sequence_start": True, flag: value}
        assert flag in srv.error(*srv.post("/v2/models/pyseq/infer", seq_body(1, params)))
        if flag == "sequence_start":
            assert "START" in srv.error(*srv.post("/v2/models/pyseq/infer", seq_body(1, {"sequence_id": 4242})))
    srv.check()


def grpc_seq(srv, value, sid, start=False, end=False):
    r = pb.ModelInferRequest(model_name="pyseq")
    t = r.inputs.add()
    t.name, t.datatype = "IN", "INT32"
    t.shape.extend([1, 1])
    r.raw_input_contents.append(np.array([[value]], np.int32).tobytes())
    setattr(r.parameters["sequence_id"], *sid)
    r.parameters["sequence_start"].bool_param, r.parameters["sequence_end"].bool_param = start, end
    out = srv.stub.ModelInfer(r, timeout=30)
    res = {o.name: raw for o, raw in zip(out.outputs, out.raw_output_contents)}
    return int(np.frombuffer(res["OUT"], np.int32)[0]), int(np.frombuffer(res["CORR"], np.uint64)[0])


def test_a_sequence_under_the_largest_id_accumulates_across_protocols(srv):
    """Id 2**64-1: started over gRPC as int64_param -1 (SERVING.md: "an
    int64_param ID below 0 is read as the uint64 it was cast from"),
    continued over HTTP as 2**64-1, ended over gRPC as uint64_param: one
    running sum (numpy's cumsum), the id echoed."""
    got = [grpc_seq(srv, 5, ("int64_param", -1), start=True)]
    status, body = srv.post("/v2/models/pyseq/infer", seq_body(6, {"sequence_id": U64}))
    assert status == 200, body
    got.append(({o["name"]: o["data"] for o in body["outputs"]}["OUT"][0], U64))
    got.append(grpc_seq(srv, 7, ("uint64_param", U64), end=True))
    assert got == [(int(v), U64) for v in np.cumsum([5, 6, 7])]
    srv.check()


@pytest.mark.parametrize("count", [0, 1, 5, 2**31, 2**63 - 1, -1, 1.5, "2", True, U64], ids=str)
def test_classification_counts(srv, count):
    """`classification: N` (SERVING.md "Classification"): 0 asks for the
    values; any N >= 1 gives min(N, classes) classes in numpy's order; "a
    negative count, or one that is not a number, is 400". tritonserver 2.51
    (pyvec stand-in) answered 2**64-1 and 2**63-1 with all 4 classes, -1
    and 2**64 with 500."""
    x = np.array([[1, 9, 3, 4]], np.float32)
    body = add_body(x, np.zeros_like(x))
    body["outputs"] = [{"name": "sum", "parameters": {"classification": count}}]
    status, answer = srv.post("/v2/models/add_b/infer", body)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        assert status == 200, answer
        order = np.argsort(-x[0], kind="stable")[:min(count, 4)]
        want = x.ravel().tolist() if count == 0 else [f"{x[0][i]:.6f}:{i}" for i in order]
        assert answer["outputs"][0]["data"] == want, answer
    else:
        assert "classification" in srv.error(status, answer)
    srv.check()


# ---------------------------------------------------------------- shared memory

@pytest.fixture
def region(srv):
    key = f"/anemone_h41c_{os.getpid()}"
    handle = shm.create_shared_memory_region("h41c", key, 64)
    shm.set_shared_memory_region(handle, [np.array([1, 2, 3, 4], np.float32), np.array([10, 20, 30, 40], np.float32)])
    try:
        yield key
    finally:
        srv.post("/v2/systemsharedmemory/unregister", {})
        shm.destroy_shared_memory_region(handle)


def test_region_names_and_registration_numbers(srv, region):
    """Region names with a NUL, a newline, unicode and a space register and
    are listed exactly; names past 1024 bytes are 400 naming the limit
    (RELIABILITY.md). Registration `offset`/`byte_size` negative,
    fractional, strings, 0 bytes or past u64 are 400 and register nothing
    (2**64-1 + 2**64-1 and offsets past the object are
    test_hostile_paths.py's)."""
    for name in ["%00", "a%0Ab", "%E2%98%83%20x", "-"]:
        status, body = srv.post(f"/v2/systemsharedmemory/region/{name}/register",
                                {"key": region, "offset": 0, "byte_size": 64})
        assert status == 200, body
        assert requests.utils.unquote(name) in [r["name"] for r in srv.get("/v2/systemsharedmemory/status")[1]]
    for name in ["x" * 1025, "x" * 10000]:
        status, body = srv.post(f"/v2/systemsharedmemory/region/{name}/register",
                                {"key": region, "offset": 0, "byte_size": 64})
        assert "over the limit of 1024" in srv.error(status, body)
    srv.post("/v2/systemsharedmemory/unregister", {})
    for field, value in [("offset", -1), ("offset", 1.5), ("offset", "0"), ("byte_size", -64), ("byte_size", 0),
                         ("offset", 2**64), ("byte_size", 2**64 + 64)]:
        srv.error(*srv.post("/v2/systemsharedmemory/region/bad/register",
                            {"key": region, "offset": 0, "byte_size": 64, field: value}))
    assert srv.get("/v2/systemsharedmemory/status")[1] == []
    srv.check()


def shm_tensor(name, size, offset, region="r"):
    p = {"shared_memory_region": region, "shared_memory_byte_size": size, "shared_memory_offset": offset}
    return {"name": name, "shape": [4], "datatype": "FP32", "parameters": p}


def test_input_and_output_offsets_that_overflow_are_400(srv, region):
    """An input's or output's `shared_memory_offset` + `_byte_size` that
    overflows u64 (2**64-16 + 16, 2**63 + 2**63), ends one byte past the
    64-byte region, or is negative / a string: 400 naming the tensor
    (SERVING.md's table; Triton 2.51 answers 400 too). The region then
    serves a good request, its output written where asked (numpy)."""
    assert srv.post("/v2/systemsharedmemory/region/r/register", {"key": region, "offset": 0, "byte_size": 64})[0] == 200
    good_x, good_y = shm_tensor("x", 16, 0), shm_tensor("y", 16, 16)
    for size, offset in [(16, 2**64 - 16), (U64, 16), (2**63, 2**63), (16, 49), (16, -16), (-16, 0), (16, "16"),
                         (16, 2**64)]:
        status, body = srv.post("/v2/models/add_nb/infer", {"inputs": [shm_tensor("x", size, offset), good_y]})
        assert "'x'" in srv.error(status, body), (size, offset)
        outputs = [shm_tensor("sum", size, offset)]
        assert "'sum'" in srv.error(*srv.post("/v2/models/add_nb/infer", {"inputs": [good_x, good_y], "outputs": outputs}))
    status, body = srv.post("/v2/models/add_nb/infer", {"inputs": [good_x, good_y], "outputs": [shm_tensor("sum", 16, 48)]})
    assert status == 200, body
    np.testing.assert_array_equal(np.frombuffer(Path(f"/dev/shm{region}").read_bytes()[48:64], np.float32),
                                  np.float32([1, 2, 3, 4]) + np.float32([10, 20, 30, 40]))
    srv.check()


# ---------------------------------------------------------------- config.pbtxt numbers

@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_pbtxt_numbers(srv, name):
    """config.pbtxt numbers at and past their ends, loaded through the load
    API: out-of-range values are refused at once with the field (and, from
    the protobuf parser, the line) in the reason; in-range values however
    large (max_batch_size 2**31-1, priority_levels and queue timeouts of
    2**64-1 (FROM_TRITON.md: "priority_levels past 4,294,967,295 load"),
    num_versions 2**32-1, a negative instance count (SERVING.md: "under 1
    ... one, as in Triton")) load and answer numpy's numbers. Two counts
    adding up past i32 are not wrapped into a small one."""
    cfg, what = CONFIGS[name]
    t0 = time.time()
    status, body = srv.post(f"/v2/repository/models/c_{name}/load", {})
    assert time.time() - t0 < 20
    if isinstance(what, list):
        error = srv.error(status, body)
        assert all(word in error for word in what), error
        assert srv.index(f"c_{name}")[0]["state"] == "UNAVAILABLE"
    else:
        assert status == 200, body
        check_add(srv, f"c_{name}", n=what, params={"priority": U64} if "priority" in name else None)
    srv.check()


def test_largest_queue_delay_and_sequence_idle_time(srv):
    """`max_queue_delay_microseconds: 2**64-1`: a full batch (8 rows) runs at
    once; a lone row waits for others until its 1 s `timeout` ends it with
    504 (no clock overflow, no hang). `max_sequence_idle_microseconds:
    2**64-1`: a START / middle / END sequence is served, then a new one."""
    for model in ("c_delay_u64max", "c_seq_idle_u64max"):
        assert srv.post(f"/v2/repository/models/{model}/load", {})[0] == 200
    check_add(srv, "c_delay_u64max", n=8)
    t0 = time.time()
    x, y = rows(1)
    srv.error(*srv.post("/v2/models/c_delay_u64max/infer", add_body(x, y, params={"timeout": 1_000_000})), want=504)
    assert time.time() - t0 < 10
    for params in ({"sequence_id": U64, "sequence_start": True}, {"sequence_id": U64},
                   {"sequence_id": U64, "sequence_end": True}, {"sequence_id": 3, "sequence_start": True}):
        check_add(srv, "c_seq_idle_u64max", params)
    srv.check()


def test_direct_strategy_delay_does_not_hold_a_lone_sequence(srv):
    """`sequence_batching { direct { max_queue_delay_microseconds: 1500000 } }`:
    Triton's direct batcher waits only while minimum_slot_utilization (0 by
    default) is unmet (sequence_batch_scheduler.cc); tritonserver 2.51
    answered a lone sequence request in 0.06 s and 0.001 s (pyseqd
    stand-in). anemone holds it 1.5 s (with 2**64-1, for ever), which
    SERVING.md does not say."""
    assert srv.post("/v2/repository/models/c_seq_direct_delay/load", {})[0] == 200
    t0 = time.time()
    check_add(srv, "c_seq_direct_delay", {"sequence_id": 11, "sequence_start": True, "sequence_end": True})
    assert time.time() - t0 < 1.0, f"a lone sequence request took {time.time() - t0:.2f} s"


def test_instance_count_bound_is_triton_s_or_documented(srv):
    """`instance_group [ { count: 65 } ]` is refused ("set counts that add up
    to 1..64"); Triton has no bound (model_config_utils.cc checks count >= 1
    only). Refusing 100000 (test_config_pbtxt_numbers) is right: the bound
    must be in SERVING.md's `instance_group` row, or 65 must load."""
    status, body = srv.post("/v2/repository/models/c_instances_65/load", {})
    row = next(line for line in (ROOT / "docs/SERVING.md").read_text().splitlines() if line.startswith("| `instance_group`"))
    assert status == 200 or re.search(r"\b64\b", row), (status, body)


def test_version_folders_with_leading_zeros(srv):
    """Version folders "1" (x + y), "01" and "001" (x * y): Triton's
    model_lifecycle.cc ignores "01" and "001" with a warning ("contains
    leading zeros"), serving version 1 from "1". anemone loads all three as
    version 1: the index lists version 1 three times."""
    assert srv.post("/v2/repository/models/vzeros/load", {})[0] == 200
    check_add(srv, "vzeros", version=1, batch=False)
    assert [r["version"] for r in srv.index("vzeros")] == ["1"], srv.index("vzeros")


# ---------------------------------------------------------------- a load request's JSON config

OVR = {"platform": "onnxruntime_onnx", "max_batch_size": 8,
       "input": [{"name": n, "data_type": "TYPE_FP32", "dims": [4]} for n in ("x", "y")],
       "output": [{"name": n, "data_type": "TYPE_FP32", "dims": [4]} for n in ("sum", "diff")]}


@pytest.mark.parametrize("field,value,words", [
    ("max_batch_size", "8", None), ("max_batch_size", 8.0, None), ("data_type", "type_fp32", None),
    ("dynamic_batching", {"max_queue_delay_microseconds": str(U64)}, None),
    ("max_batch_size", -1, ["max_batch_size", "-1"]), ("dims", [-5], ["dims", "-5"]),
    ("data_type", "TYPE_BF16", ["data_type", "TYPE_BF16"]), ("instance_group", [{"count": 100000}], ["100000"]),
    ("max_batch_size", 8.5, ["max_batch_size", "8.5"]),
    ("max_batch_size", 2**31, ["max_batch_size", "2147483648"]),
    ("dims", [2**63], ["dims", "9223372036854775808"]),
    ("instance_group", [{"count": "2147483648"}], ["count", "2147483648"]),
    ("dynamic_batching", {"priority_levels": str(2**64)}, ["priority_levels", str(2**64)]),
], ids=lambda v: str(v)[:20])
def test_json_config_override_numbers(srv, field, value, words):
    """A load request's `config` (protobuf's JSON mapping: integers as
    numbers or strings; enum names in any case, as Triton's parser with
    case_insensitive_enum_parsing): in-range values load and serve numpy's
    numbers; others are refused with a reason naming the field and the
    value, the model loaded before serving on. tritonserver 2.51 (pyvec
    stand-in) answered each out-of-range integer with 500 "failed to load
    'pyvec', failed to poll from model repository", naming nothing."""
    cfg = json.loads(json.dumps(OVR))
    (cfg["input"][0] if field in ("dims", "data_type") else cfg)[field] = value
    status, body = srv.post("/v2/repository/models/ovr/load", {"parameters": {"config": json.dumps(cfg)}})
    if words is None:
        assert status == 200, body
    else:
        error = srv.error(status, body)
        assert all(w in error.split("; fix it to follow")[0] for w in words), error
    check_add(srv, "ovr", n=8)  # a full batch: it runs at once whatever the queue delay
    srv.check()


# ---------------------------------------------------------------- trace, logging, repository, versions

def test_trace_setting_values_out_of_range_change_nothing(srv):
    """POST /v2/trace/setting (global and a model's) with a rate, count or
    log frequency negative, past its type (u32, i32) or not a whole number,
    or an empty level: 400 naming the setting, and the settings stay as
    they were (OBSERVABILITY.md: "a refused change changes nothing").
    Triton 2.51 parses them with std::stoi: "1e99" became rate 1 and
    log_frequency "-1" became 4294967295, both 200."""
    before = srv.get("/v2/trace/setting")[1]
    for key, value in [("trace_rate", "-1"), ("trace_rate", "1e99"), ("trace_rate", str(2**32)),
                       ("trace_rate", str(2**64)), ("trace_rate", True), ("trace_count", "-2"),
                       ("trace_count", str(2**63)), ("log_frequency", "-1"), ("log_frequency", str(2**32)),
                       ("trace_level", [""])]:
        error = srv.error(*srv.post("/v2/trace/setting", {key: value}))
        assert key.rsplit("_", 1)[-1] in error, (key, error)
        assert srv.get("/v2/trace/setting")[1] == before
        srv.error(*srv.post("/v2/models/add_nb/trace/setting", {key: value}))
    srv.check()


def test_trace_mode_sent_back_as_read(srv):
    """GET /v2/trace/setting on a `--trace-file` server answers
    "trace_mode": "triton"; POSTing it back is refused in words about OTLP,
    which this server does not use. Triton 2.51 answers 200."""
    status, body = srv.post("/v2/trace/setting", {"trace_mode": srv.get("/v2/trace/setting")[1]["trace_mode"]})
    assert status == 200 or "OTLP" not in body.get("error", ""), body


def test_log_verbose_level_values(srv):
    """POST /v2/logging `log_verbose_level` (OBSERVABILITY.md: a uint): the
    u32 maximum is taken (TRACE), then 0 again; past u32, negative,
    fractional, a string or a bool are 400 naming it. (Triton 2.51
    answered 2**32 with 200, leaving the level at 0.)"""
    for value in (2**32, -1, 1.5, "1", True, 10**30):
        assert "log_verbose_level" in srv.error(*srv.post("/v2/logging", {"log_verbose_level": value}))
    for value in (2**32 - 1, 0):
        status, body = srv.post("/v2/logging", {"log_verbose_level": value})
        assert status == 200 and body["log_verbose_level"] == value, body
    srv.check()


def test_load_and_unload_of_odd_model_names(srv):
    """Load and unload with an empty name, "..", 10 KB, a NUL (alone or
    after a real model's name), unicode, an encoded "/" or a byte that is
    not UTF-8: 400 or 404 with a message, never the model beside it; an
    unload of them is 200 or 400 (FROM_TRITON.md: "over HTTP such a name is
    not a route's and gets 400")."""
    for name in ["", "%2e%2e", "x" * 10000, "a%00b", "%00", "%E2%98%83", "a%2Fb", "%ff", "add_nb%00", "add_nb%2F.."]:
        srv.error(*srv.post(f"/v2/repository/models/{name}/load", {}), want=(400, 404))
        assert srv.post(f"/v2/repository/models/{name}/unload", {})[0] in (200, 400), name
    srv.check()


def test_model_version_strings(srv):
    """/v2/models/add_nb/versions/V (metadata, ready, stats, infer) and gRPC
    ModelStatistics: a version past u64, negative, fractional or with a NUL
    is 400 "not a non-negative integer" (FROM_TRITON.md: "not a number:
    400", Triton 404); one in range that is not loaded is 404. tritonserver
    2.51 answered "18446744073709551616" with 400 "failed to get model
    version ... (details: stol)"."""
    for version, want in [("18446744073709551616", 400), (str(U64), 404), ("-1", 400), ("1.0", 400), ("%00", 400),
                          ("x" * 5000, 400), (str(2**63), 404)]:
        for suffix in ("/stats", "/ready", ""):
            r = requests.get(f"http://{srv.http}/v2/models/add_nb/versions/{version}{suffix}", timeout=30)
            assert r.status_code == want and r.json()["error"], (version[:30], suffix, r.status_code)
        srv.error(*srv.post(f"/v2/models/add_nb/versions/{version}/infer", add_body(X4, X4)), want=want)
        with pytest.raises(grpc.RpcError) as e:
            srv.stub.ModelStatistics(pb.ModelStatisticsRequest(name="add_nb", version=requests.utils.unquote(version)),
                                     timeout=30)
        assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    srv.check()


def test_the_largest_cache_and_budget_work(srv):
    """The server runs with `--cache-config local,size=2**64-1` and
    `--memory-budget 2**64-1`: a repeated request to a cached model is a
    cache hit with the same numbers, and models load under the budget."""
    def hits():
        return srv.get("/v2/models/add_b/stats")[1]["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
    x = np.array([[7.0, 8.0, 9.0, 10.0]], np.float32)
    before = hits()
    answers = [srv.post("/v2/models/add_b/infer", add_body(x, x))[1]["outputs"] for _ in range(2)]
    assert answers[0] == answers[1] and answers[0][0]["data"] == (2 * x).ravel().tolist()
    assert hits() == before + 1
    assert srv.post("/v2/repository/models/c_mbs_i32max/load", {})[0] == 200
    srv.check()


# ---------------------------------------------------------------- gRPC

def grpc_add(model, shape, dt="FP32", params=None, raw=None):
    r = pb.ModelInferRequest(model_name=model)
    for n in "xy":
        t = r.inputs.add()
        t.name, t.datatype = n, dt
        t.shape.extend(shape)
    r.raw_input_contents.extend([X4.tobytes() if raw is None else raw, X4.tobytes()])
    for k, (kind, v) in (params or {}).items():
        setattr(r.parameters[k], kind, v)
    return r


def test_grpc_shapes_and_typed_parameters(srv):
    """gRPC ModelInfer with int64 dims 0, -1, i64 max and min, a product past
    u64, or raw contents a byte short or long: INVALID_ARGUMENT naming input
    'x'. `parameters` of every type: uint64 2**64-1 and int64 max for
    priority/timeout are served with numpy's numbers; a negative int64, a
    double, or a string where a bool belongs is INVALID_ARGUMENT naming the
    parameter."""
    for shape, raw in [([0], None), ([-1], None), ([2**63 - 1], None), ([-2**63], None), ([2**32, 2**32], None),
                       ([4], b"\0" * 15), ([4], b"\0" * 17)]:
        with pytest.raises(grpc.RpcError) as e:
            srv.stub.ModelInfer(grpc_add("add_nb", shape, raw=raw), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'x'" in e.value.details(), e.value.details()
    for name, param in [("priority", ("uint64_param", U64)), ("timeout", ("uint64_param", U64)),
                        ("timeout", ("int64_param", 2**63 - 1))]:
        out = srv.stub.ModelInfer(grpc_add("add_nb", [4], params={name: param}), timeout=30)
        np.testing.assert_array_equal(np.frombuffer(out.raw_output_contents[0], np.float32), X4 + X4)
    for name, param in [("priority", ("int64_param", -1)), ("priority", ("double_param", 1.0)),
                        ("timeout", ("int64_param", -1)), ("timeout", ("double_param", 1e300)),
                        ("sequence_id", ("double_param", 1.5)), ("sequence_start", ("string_param", "true"))]:
        with pytest.raises(grpc.RpcError) as e:
            srv.stub.ModelInfer(grpc_add("add_nb", [4], params={name: param}), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and name in e.value.details()
    srv.check()


def test_grpc_control_calls_with_extreme_values(srv):
    """gRPC: shared memory registration whose offset + byte_size overflows
    u64, a CUDA registration with device -1, a load of a name with a NUL,
    LogSettings with a string level, TraceSetting with two rates or 1e99:
    INVALID_ARGUMENT each; an unload of that name is OK (FROM_TRITON.md:
    "over gRPC also for a name no model can have")."""
    log, two, big = pb.LogSettingsRequest(), pb.TraceSettingRequest(), pb.TraceSettingRequest()
    log.settings["log_verbose_level"].string_param = "1"
    two.settings["trace_rate"].value.extend(["1", "2"])
    big.settings["trace_rate"].value.extend(["1e99"])
    for call, request in [
            (srv.stub.SystemSharedMemoryRegister, pb.SystemSharedMemoryRegisterRequest(name="g", key="/h41c_none",
                                                                                       offset=U64, byte_size=U64)),
            (srv.stub.CudaSharedMemoryRegister, pb.CudaSharedMemoryRegisterRequest(name="c", raw_handle=b"\0" * 64,
                                                                                   device_id=-1, byte_size=U64)),
            (srv.stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="add_nb\0")),
            (srv.stub.LogSettings, log), (srv.stub.TraceSetting, two), (srv.stub.TraceSetting, big)]:
        with pytest.raises(grpc.RpcError) as e:
            call(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, e.value.details())
    srv.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="add_nb\0"), timeout=30)
    assert srv.stub.ModelReady(pb.ModelReadyRequest(name="add_nb"), timeout=30).ready
    srv.check()


# ---------------------------------------------------------------- the command line

def rss_kb(pid):
    try:
        return int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")).split()[1])
    except (OSError, StopIteration):
        return 0


def children(pid):
    """The processes whose parent is `pid` (from /proc/*/stat, without ps)."""
    kids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                kids.append(int(entry))
        except (OSError, IndexError):
            pass
    return kids


def running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def serve_trial(flags, env=None, repo=None, ready_within=8, rss_cap_kb=1_500_000, sigterm_after=None):
    """Runs `anemone serve` with `flags` on free ports. Returns (result,
    stderr, children alive 2 s after a SIGTERM at `sigterm_after` s):
    result is the exit status of a refused start, "served" after a correct
    inference (numpy) and a clean exit on SIGTERM, or why not ("not ready",
    "rss", "wrong", "hung", "exit N"). Every child it started is killed."""
    args = [str(BINARY), "serve", "--model-repository", str(repo or ROOT / "examples/models")]
    joined = " ".join(flags)
    args += [a for f in ("--http-port", "--grpc-port", "--metrics-port") if f not in joined for a in (f, "0")]
    args += [] if "--exit-timeout-secs" in joined else ["--exit-timeout-secs", "5"]
    args += [] if "--backends" in joined or repo else ["--backends", "tract-cpu"]
    proc = subprocess.Popen(args + list(flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, ANEMONE_PYTHON=sys.executable, **(env or {})))
    out, err, result, t0, kids, survivors = [], [], None, time.time(), [], []
    readers = [threading.Thread(target=lambda f=f, to=to: to.extend(iter(f.readline, "")), daemon=True)
               for f, to in ((proc.stdout, out), (proc.stderr, err))]
    for t in readers:
        t.start()
    try:
        while proc.poll() is None and result is None:
            if re.search(r"^\S+\s+\d+\s+(READY|UNAVAILABLE)", "".join(out), re.M) or \
                    (sigterm_after and time.time() - t0 > sigterm_after):
                break
            kids = children(proc.pid)
            if rss_kb(proc.pid) + sum(map(rss_kb, kids)) > rss_cap_kb:
                result = "rss"
            elif time.time() - t0 > ready_within:
                result = "not ready"
            time.sleep(0.05)
        kids = children(proc.pid) if proc.poll() is None else kids
        if result or proc.poll() is not None:
            result = result or proc.returncode
        else:
            if not sigterm_after:
                http = re.search(r"HTTP listening on (\S+)", "".join(out)).group(1)
                x, y = rows(2)
                r = requests.post(f"http://{http}/v2/models/add/infer", json=add_body(x, y), timeout=30)
                good = r.status_code == 200 and r.json()["outputs"][0]["data"] == (x + y).ravel().tolist()
                result = "served" if good else "wrong"
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=30)
                result = (result or "stopped") if status == 0 else f"exit {status}"
            except subprocess.TimeoutExpired:
                result = "hung"
            if sigterm_after:  # which children outlive the server
                time.sleep(2)
                survivors = [k for k in kids if running(k)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:  # the children this server started, by pid
            if running(k):
                os.kill(k, signal.SIGKILL)
        for t in readers:
            t.join(timeout=10)
    return result, "".join(err), survivors


REFUSED_FLAGS = [
    (["--http-port", "65536"], "--http-port"), (["--http-port=-1"], "--http-port"), (["--http-port", "-1"], "'-1'"),
    (["--grpc-port", str(2**32)], "--grpc-port"), (["--exit-timeout-secs=-1"], "--exit-timeout-secs"),
    (["--max-request-bytes", "0"], "--max-request-bytes"), (["--max-request-bytes", "16EiB"], "--max-request-bytes"),
    (["--max-concurrency", "0"], "--max-concurrency"), (["--threads", "0"], "--threads"), (["--workers", "0"], "--workers"),
    (["--malloc-load-mmap-threshold", str(U64)], "--malloc-load-mmap-threshold"),
    (["--model-load-retry-count", str(U64)], "--model-load-retry-count"),
    (["--grpc-max-concurrent-streams", "0"], "--grpc-max-concurrent-streams"),
    (["--grpc-keepalive-time", "0"], "--grpc-keepalive-time"), (["--http-body-timeout-secs", "0"], "--http-body-timeout-secs"),
    (["--trace-rate", str(U64)], "--trace-rate"), (["--trace-count=-5"], "--trace-count"),
    (["--log-verbose", str(U64)], "--log-verbose"), (["--health-interval-ms", str(U64)], "--health-interval-ms")]


def test_serve_flag_values_out_of_range_are_refused():
    """Numeric flags of `anemone serve` at 0, -1 or past their type are
    refused at start-up: exit status 2 naming the flag, no panic
    (CONFIGURATION.md: "a flag with clap's usual message"). `--http-port
    -1` as two words is clap's "unexpected argument '-1'" (FROM_TRITON.md:
    "a port is 0 to 65535")."""
    for flags, named in REFUSED_FLAGS:
        result, err, _ = serve_trial(flags)
        assert result == 2 and named in err and "panicked at" not in err, (flags, result, err[-600:])


@pytest.mark.parametrize("flags", [
    ["--exit-timeout-secs", str(U64)], ["--max-request-bytes", str(U64)], ["--max-decoding-bytes", str(U64)],
    ["--max-stream-buffer-bytes", str(U64)], ["--max-concurrency", str(U64)], ["--http-body-timeout-secs", str(U64)],
    ["--grpc-keepalive-time", str(U64), "--grpc-keepalive-timeout", str(U64)],
    ["--grpc-max-connection-age", str(U64), "--grpc-max-connection-age-grace", str(U64)],
    ["--metrics-interval-ms", str(U64)], ["--malloc-arenas", str(U64)],
    ["--rate-limit", "execution_count", "--rate-limit-resource", f"R:{U64}"], ["--recovery-backoff-secs", str(U64)],
    ["--log-verbose", "4294967295"], ["--cache-config", "local,size=0"], ["--workers", "1000"],
    ["--workers", "100000"], ["--model-load-thread-count", str(U64)], ["--threads", "100000"],
    ["--backend-config", "onnxruntime,intra_op_thread_count=100000", "--backends", "onnxruntime"],
], ids=lambda v: " ".join(v)[:48])
def test_serve_flag_values_that_must_work_or_be_refused(flags):
    """Numeric flags at 2**64-1 (or huge counts) are taken and work: the
    server answers a correct inference (numpy) and exits 0 on SIGTERM,
    within 8 s and 1.5 GB, no panic; or they are refused at start-up with
    exit status 2 naming the flag. Nothing else: a crash, a panic or a
    model that never loads is a defect."""
    result, err, _ = serve_trial(flags)
    assert "panicked at" not in err, err[-1500:]
    assert result == "served" or (result == 2 and flags[0] in err), (result, err[-600:])


@pytest.mark.parametrize("env,toml,expect", [
    ({"ANEMONE_REPOSITORY_POLL_SECS": "-1"}, None, "ANEMONE_REPOSITORY_POLL_SECS"),
    ({"ANEMONE_THREADS": "0"}, None, "ANEMONE_THREADS"),
    (None, "max-concurrency = 18446744073709551616\n", "line 1"), (None, "workers = 0\n", "'workers'"),
    ({"ANEMONE_MODEL_LOAD_THREAD_COUNT": str(U64)}, None, "ANEMONE_MODEL_LOAD_THREAD_COUNT"),
    (None, f"model-load-thread-count = {2**63 - 1}\n", "'model-load-thread-count'"),
], ids=["poll_secs_env", "threads_env", "toml_past_i64", "toml_workers_0", "load_threads_env", "load_threads_toml"])
def test_environment_and_config_file_values(tmp_path, env, toml, expect):
    """The same values from ANEMONE_* variables and a --config TOML file
    (CONFIGURATION.md: "reported where it came from, and the server does
    not start (exit status 2)"): refused naming the variable or the key;
    a huge load-thread count may instead work (expect None)."""
    flags = []
    if toml:
        (tmp_path / "a.toml").write_text(toml)
        flags = ["--config", str(tmp_path / "a.toml")]
    result, err, _ = serve_trial(flags, env=env)
    assert "panicked at" not in err, err[-1500:]
    if expect is None:  # refused naming the setting, or working
        assert result == "served" or (result == 2 and "thread-count" in err.replace("_", "-").lower()), (result, err[-600:])
    else:
        assert result == 2 and expect in err, (result, err[-600:])


def test_range_checks_after_parsing_exit_2_like_the_others():
    """--health-latency-ratio nan, --health-error-rate 2 and --cache-config
    local,size=-1 are refused naming the flag, but with status 1, where
    --health-interval-ms 0 or --max-request-bytes 0 exit 2
    (CONFIGURATION.md: "the server does not start (exit status 2)")."""
    for flags in (["--health-latency-ratio", "nan"], ["--health-error-rate", "2"], ["--cache-config", "local,size=-1"]):
        result, err, _ = serve_trial(flags)
        assert result == 2 and flags[0] in err, (flags, result, err[-300:])


def test_repository_poll_secs_zero_does_not_poll(tmp_path):
    """`--model-control-mode poll --repository-poll-secs 0`: tritonserver
    2.51 never polls (main.cc polls only when the value is > 0): a model
    added after start-up stayed unloaded after 4 s (pyvec stand-in).
    anemone takes 0 as 1 s (serve.rs: `.max(1)`) and loads it. Refusing
    0 at start-up would do too."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples/models", repo)
    flags = ["--model-control-mode", "poll", "--repository-poll-secs", "0", "--backends", "tract-cpu"]
    result, err, _ = serve_trial(flags, repo=repo)
    if result == 2 and "--repository-poll-secs" in err:
        return  # refusing 0 at start-up, naming the flag, is as clear
    proc, addresses = start_serve(repo, *flags)
    try:
        wait_ready(addresses["HTTP"], seconds=60)
        shutil.copytree(repo / "add", repo / "late")
        time.sleep(4)
        index = requests.post(f"http://{addresses['HTTP']}/v2/repository/index", timeout=30).json()
        assert [r["name"] for r in index if r.get("state") == "READY"] == ["add"], index
    finally:
        stop_serve(proc)


def test_stopping_during_a_load_leaves_no_comparison_child(tmp_path):
    """A model whose engine comparison takes about a minute here (800
    MatMuls timed on a [16384, 256] warm-up): SIGTERM 1.5 s into its load.
    The server stops (status 0); its `compare-engines` child must go with
    it, but runs on as an orphan (PPID 1) until its job is done (the
    test kills it). With --threads 100000 the job never ends: an orphan
    grew to 2.8 GB."""
    slow_model(tmp_path / "repo/slow/1/model.onnx")
    (tmp_path / "repo/slow/config.pbtxt").write_text(
        'max_batch_size: 0\nmodel_warmup [ { name: "big" batch_size: 1 inputs { key: "x" value: { '
        'data_type: TYPE_FP32 dims: [ 16384, 256 ] zero_data: true } } } ]\n')
    result, err, survivors = serve_trial([], repo=tmp_path / "repo", sigterm_after=1.5)
    assert result == "stopped", (result, err[-500:])
    assert not survivors, f"comparison children still running 2 s after the server stopped: {survivors}"
