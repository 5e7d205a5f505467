"""Triton's wire-data QA suites, ported to pytest and run against anemone.

From triton-inference-server/server's `qa/` (commit e1db8a603, main as of
2026-08-19; v2.51.0 is e0f0734d6) and triton-inference-server/common:

- `qa/L0_nan_inf` (NaN and infinities through HTTP JSON, HTTP binary, gRPC),
- `qa/L0_nullchar_string` (a BYTES element with an embedded NUL),
- `qa/L0_output_name`, `qa/L0_output_validation` (outputs that do not exist,
  configs whose outputs the model does not give, output parameters),
- `qa/L0_large_payload` (large tensors, near and past the request limit),
- `qa/L0_json` (common's `triton_json_test.cc`: which JSON values are bools,
  objects, strings, arrays, numbers, integers; here as request bodies),
- `qa/L0_data_compression` (gzip/deflate bodies both ways; tritonclient's
  `request_compression_algorithm`, `response_compression_algorithm`, gRPC's
  `compression_algorithm`; bad encodings and Accept-Encoding weights are
  test_triton_side_http.py's),
- `qa/L0_shared_memory` (system shared memory over HTTP and gRPC),
- `qa/L0_string_io` (the parts test_triton_qa_protocol.py leaves out: the
  QA's `string_identity` with dims [8], every one of its rows; an ONNX
  string identity).

Triton's QA runs ONNX/libtorch/TensorRT models from its data server; here
the ONNX ones are generated with the `onnx` package (same names, datatypes,
dims and batching; answers checked against numpy) and the Python ones are
the QA's model.py files with the peer boilerplate (TPEER_SP), so the Python
part of the repository also serves on tritonserver 2.51. Every test ran
against tritonserver 2.51 (CPU build, Python backend, no ONNX Runtime
backend) on 2026-12-05 where a Python stand-in could ask the same question;
each docstring says what it answered. CI has no Triton: the tests run
against anemone only. Where the two differ and docs/FROM_TRITON.md,
docs/SERVING.md or docs/RELIABILITY.md document anemone's answer, the test
checks anemone's and cites the doc; an undocumented difference is
xfail(strict=True, reason="DEFECT: ...").

Not ported: L0_shared_memory's test_invalid_create_shm and
test_python_client_leak (they test tritonclient alone), and main's
test_client_shm_disabled_by_default and test_register_reserved_names
(`--allow-client-shm` and the Python backend's reserved shm keys came after
2.51; anemone's Python backend uses no shared memory objects);
L0_data_compression's C++ data_compressor_test (the same cases over the wire
here: test_compression_*).
"""
import gzip
import json
import os
import queue
import threading
import time
import zlib

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from onnx import TensorProto, helper
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

# ---------------------------------------------------------------- repository

HEADER = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import json, time
import numpy as np
import triton_python_backend_utils as pb_utils
'''

# qa/L0_nan_inf/models/nan_inf_output/1/model.py (np.NINF is -np.inf).
NAN_INF_MODEL = HEADER + '''

class TritonPythonModel:
    def execute(self, requests):
        out = np.array([np.nan, np.inf, -np.inf, 1, 2, 3], dtype=np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", out)]) for _ in requests]
'''

# qa/python_models/string/model.py: answers its input as np.bytes_, then
# np.object_, in turns.
STRING = HEADER + '''

class TritonPythonModel:
    def initialize(self, args):
        self._index = 0
        self._dtypes = [np.bytes_, np.object_]

    def execute(self, requests):
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            out = pb_utils.Tensor("OUTPUT0", in_0.as_numpy().astype(self._dtypes[self._index % 2]))
            self._index += 1
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
'''

# qa/python_models/identity_fp32 and string_identity: each INPUTk as OUTPUTk.
IDENTITY = HEADER + '''

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]) for r in requests]
'''

# qa/python_models/add_sub (TYPE_INT32 by the test.sh's sed), and, with
# DELAY, qa/python_models/execute_delayed_model (15 s there, 3 s here).
ADD_SUB = HEADER + '''
DELAY = 0


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(DELAY)
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (a + b).astype(np.int32)),
                                                   pb_utils.Tensor("OUTPUT1", (a - b).astype(np.int32))]))
        return out
'''

def _io(kind, name, dtype, dims):
    return f'{kind} [ {{ name: "{name}" data_type: {dtype} dims: {dims} }} ]\n'


def _config(name, ins, outs, max_batch=0, backend="python"):
    text = f'name: "{name}"\nmax_batch_size: {max_batch}\n'
    if backend == "python":
        text += 'backend: "python"\n'
    else:  # an ONNX model pinned to one engine
        text += f'parameters {{ key: "backends" value: {{ string_value: "{backend}" }} }}\n'
    return text + "".join(_io("input", *i) for i in ins) + "".join(_io("output", *o) for o in outs)


def _onnx(path, nodes, ins, outs):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in ins],
                              [helper.make_tensor_value_info(*o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def _unary_onnx(op, dtype, batch=False):
    dims = ["B", "N"] if batch else ["N"]
    return [helper.make_node(op, ["INPUT0"], ["OUTPUT0"])], [("INPUT0", dtype, dims)], [("OUTPUT0", dtype, dims)]


def _add_sub_onnx():
    dims, i32 = ["B", 16], TensorProto.INT32
    return ([helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
             helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
            [("INPUT0", i32, dims), ("INPUT1", i32, dims)], [("OUTPUT0", i32, dims), ("OUTPUT1", i32, dims)])


def _one_io(dtype, dims, out_dtype=None, out_dims=None, outputs=1):
    return ([("INPUT0", dtype, dims)],
            [(f"OUTPUT{k}", out_dtype or dtype, out_dims or dims) for k in range(outputs)])


F32, I32, STR = "TYPE_FP32", "TYPE_INT32", "TYPE_STRING"
FLOAT, STRING_T = TensorProto.FLOAT, TensorProto.STRING
ADD_SUB_IO = ([("INPUT0", I32, "[ 16 ]"), ("INPUT1", I32, "[ 16 ]")],
              [("OUTPUT0", I32, "[ 16 ]"), ("OUTPUT1", I32, "[ 16 ]")])

# (name, (inputs, outputs), model.py text or an ONNX graph, max_batch_size, engine)
SPECS = [
    # qa/L0_nan_inf; and an engine's own infinities and NaN: OUTPUT0 = log(INPUT0)
    ("nan_inf_output", _one_io(F32, "[ -1 ]", out_dims="[ 6 ]"), NAN_INF_MODEL, 0, "python"),
    ("onnx_log", _one_io(F32, "[ -1 ]"), _unary_onnx("Log", FLOAT), 0, "onnxruntime"),
    # qa/L0_nullchar_string: python_string; libtorch_nobatch_zero_1_object (an ONNX string identity on tract)
    ("python_string", _one_io(STR, "[ 1 ]"), STRING, 0, "python"),
    ("onnx_nobatch_zero_1_object", _one_io(STR, "[ -1 ]"), _unary_onnx("Identity", STRING_T), 0, "tract-cpu"),
    # qa/L0_string_io: onnx_zero_1_object (on ONNX Runtime) and string_identity, dims [8]
    ("onnx_zero_1_object", _one_io(STR, "[ -1 ]"), _unary_onnx("Identity", STRING_T, True), 8, "onnxruntime"),
    ("string_identity", _one_io(STR, "[ 8 ]"), IDENTITY, 0, "python"),
    # qa/L0_output_name, qa/L0_large_payload: *_nobatch_zero_1_float32
    ("onnx_nobatch_zero_1_float32", _one_io(F32, "[ -1 ]"), _unary_onnx("Identity", FLOAT), 0, "onnxruntime"),
    ("tract_nobatch_zero_1_float32", _one_io(F32, "[ -1 ]"), _unary_onnx("Identity", FLOAT), 0, "tract-cpu"),
    ("python_nobatch_zero_1_float32", _one_io(F32, "[ -1 ]"), IDENTITY, 0, "python"),
    # qa/L0_output_validation (libtorch_model_store2's *_zero_, *_datatype_ and
    # *_index_1_float32): the config says OUTPUT0 is INT32 where the model gives
    # FP32, or lists an OUTPUT1 the model does not give
    ("onnx_zero_1_float32", _one_io(F32, "[ -1 ]"), _unary_onnx("Identity", FLOAT), 0, "onnxruntime"),
    ("onnx_datatype_1_float32", _one_io(F32, "[ -1 ]", I32), _unary_onnx("Identity", FLOAT), 0, "onnxruntime"),
    ("onnx_index_1_float32", _one_io(F32, "[ -1 ]", outputs=2), _unary_onnx("Identity", FLOAT), 0, "onnxruntime"),
    ("python_datatype_1_float32", _one_io(F32, "[ -1 ]", I32), IDENTITY, 0, "python"),
    ("python_index_1_float32", _one_io(F32, "[ -1 ]", outputs=2), IDENTITY, 0, "python"),
    # qa/L0_data_compression and qa/L0_shared_memory: `simple` (Triton's example:
    # INT32 [16], OUTPUT0 = sum, OUTPUT1 = difference); test_large_shm_register_offset's
    # *_int32_int32_int32; TestSharedMemoryUnregister's execute_delayed_model
    ("simple", ADD_SUB_IO, _add_sub_onnx(), 8, "onnxruntime"),
    ("onnx_int32_int32_int32", ADD_SUB_IO, _add_sub_onnx(), 8, "onnxruntime"),
    ("python_int32_int32_int32", ADD_SUB_IO, ADD_SUB, 8, "python"),
    ("simple_delayed", ADD_SUB_IO, ADD_SUB.replace("DELAY = 0", "DELAY = 3"), 8, "python"),
    # L0_json's bools (TritonJson IsBool)
    ("python_bool", _one_io("TYPE_BOOL", "[ -1 ]"), IDENTITY, 0, "python"),
]
MODELS = {name: (_config(name, *io, max_batch, engine), model) for name, io, model, max_batch, engine in SPECS}

# Models that load: the server starts with these (explicit mode); the
# misconfigured ONNX ones are loaded by their tests.
LOADED = [n for n in MODELS if n not in ("onnx_datatype_1_float32", "onnx_index_1_float32")]


def write_repository(repo, python_only=False):
    """Writes MODELS into `repo` (the Python ones alone for tritonserver,
    which has no ONNX Runtime backend here)."""
    for name, (config, model) in MODELS.items():
        if python_only and isinstance(model, tuple):
            continue
        (repo / name / "1").mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(config)
        if isinstance(model, tuple):
            _onnx(repo / name / "1" / "model.onnx", *model)
        else:
            (repo / name / "1" / "model.py").write_text(model)
    return repo


# ---------------------------------------------------------------- servers and helpers

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


class Target:
    def __init__(self, http, grpc_address):
        self.http, self.grpc = http, grpc_address

    def url(self, path):
        return f"http://{self.http}{path}"

    def post(self, model, body, headers=None, **kw):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return requests.post(self.url(f"/v2/models/{model}/infer"), data=body, headers=headers or {}, timeout=120, **kw)

    def client(self, protocol):
        """(tritonclient module, client) for "http" or "grpc"."""
        if protocol == "http":
            return httpclient, httpclient.InferenceServerClient(self.http, network_timeout=300, connection_timeout=300)
        return grpcclient, grpcclient.InferenceServerClient(self.grpc)

    def stub(self):
        return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.grpc))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return write_repository(tmp_path_factory.mktemp("triton_qa_wire"))


def _serve(repo, *flags):
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", *flags)
    try:
        wait_ready(addresses["HTTP"])
        yield Target(addresses["HTTP"], addresses["gRPC"])
    finally:
        stop_serve(proc)


@pytest.fixture(scope="module")
def server(repo):
    """The QA suites' server: every model that loads, explicit model control
    (the misconfigured ones are loaded by their tests), default limits
    (`--max-request-bytes` 64 MiB). QA_PEER_HTTP and QA_PEER_GRPC point it
    at a server already serving `write_repository(DIR, python_only=True)`
    (tritonserver, for a side-by-side run: the ONNX models' tests fail there)."""
    if os.environ.get("QA_PEER_HTTP"):
        yield Target(os.environ["QA_PEER_HTTP"], os.environ["QA_PEER_GRPC"])
    else:
        yield from _serve(repo, *[f for name in LOADED for f in ("--load-model", name)])


@pytest.fixture(scope="module")
def big(repo):
    """qa/L0_large_payload's server: the two *_nobatch_zero_1_float32
    identities, with `--max-request-bytes` 1 GiB (docs/RELIABILITY.md,
    "Request limits": the largest request or gRPC message)."""
    yield from _serve(repo, "--load-model", "onnx_nobatch_zero_1_float32", "--load-model",
                      "python_nobatch_zero_1_float32", "--max-request-bytes", str(1 << 30))


def _error(r):
    return r.json()["error"]


def _outputs(r):
    """The outputs of an HTTP answer, JSON or binary, as numpy arrays by name."""
    assert r.status_code == 200, r.text
    length = r.headers.get("Inference-Header-Content-Length")
    result = httpclient.InferenceServerClient.parse_response_body(
        r.content, header_length=int(length) if length else None)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def _one(name, datatype, shape, data, **kw):
    return dict(name=name, datatype=datatype, shape=shape, data=data, **kw)


def _refused(call, status, *words):
    with pytest.raises(InferenceServerException) as e:
        call()
    assert e.value.status() in status, e.value
    for w in words:
        assert w in e.value.message(), e.value.message()
    return e.value.message()


BAD = ("400", "StatusCode.INVALID_ARGUMENT")
NOT_FOUND = ("404", "StatusCode.NOT_FOUND")


def _infer(mod, client, model, arrays, datatype=None, binary=True, outputs=None, **kw):
    """tritonclient infer of INPUT0.. = arrays; the result."""
    inputs = []
    for k, a in enumerate(arrays):
        t = mod.InferInput(f"INPUT{k}", list(a.shape), datatype or ("BYTES" if a.dtype == object else
                                                                   {np.float32: "FP32", np.int32: "INT32",
                                                                    np.bool_: "BOOL"}[a.dtype.type]))
        if mod is httpclient:
            t.set_data_from_numpy(a, binary_data=binary)
        else:
            t.set_data_from_numpy(a)
        inputs.append(t)
    return client.infer(model, inputs, outputs=outputs, **kw)


# ---------------------------------------------------------------- qa/L0_nan_inf

NAN_INF = np.array([np.nan, np.inf, -np.inf, 1, 2, 3], dtype=np.float32)


def _reject_constant(name):
    raise ValueError(f"not JSON: {name}")


def test_nan_inf_http_raw(server):
    """nan_inf_test.py test_http_raw: a plain JSON request to nan_inf_output
    is answered with a body that is valid JSON. tritonserver 2.51: 200, data
    [NaN,Infinity,-Infinity,1.0,2.0,3.0] (rapidjson's NaN/Infinity, which
    Python's json reads but RFC 8259 JSON is not); anemone: the strings
    "nan", "inf", "-inf" (docs/FROM_TRITON.md, "an infinite or NaN float in a
    JSON answer"), strict JSON."""
    r = server.post("nan_inf_output", {"inputs": [_one("INPUT0", "FP32", [1], [1])]})
    assert r.status_code == 200, r.text
    body = json.loads(r.text, parse_constant=_reject_constant)
    assert body["outputs"][0]["data"] == ["nan", "inf", "-inf", 1.0, 2.0, 3.0]


@pytest.mark.parametrize("protocol,binary", [("http", True), ("http", False), ("grpc", True)])
def test_nan_inf_tritonclient(server, protocol, binary):
    """nan_inf_test.py test_http / test_grpc (and the HTTP client with JSON
    output): tritonclient reads [nan, inf, -inf, 1, 2, 3]. tritonserver
    2.51: the same arrays."""
    mod, client = server.client(protocol)
    outputs = [mod.InferRequestedOutput("OUTPUT0", binary_data=binary)] if mod is httpclient else None
    result = _infer(mod, client, "nan_inf_output", [np.arange(1, dtype=np.float32)], binary=binary,
                    outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), NAN_INF)


def test_nan_inf_json_strings_are_taken_as_input(server):
    """The JSON answer's strings sent back as input give the values again
    (docs/FROM_TRITON.md: "taken back as input too"). tritonserver 2.51
    refuses them: 500 "attempt to access JSON non-number as double"."""
    for model in ("onnx_nobatch_zero_1_float32", "python_nobatch_zero_1_float32"):
        r = server.post(model, {"inputs": [_one("INPUT0", "FP32", [6], ["nan", "inf", "-inf", 1, 2, 3])],
                                "parameters": {"binary_data_output": True}})
        np.testing.assert_array_equal(_outputs(r)["OUTPUT0"], NAN_INF)


@pytest.mark.parametrize("body", ["json.dumps", "tritonclient"])
def test_nan_inf_bare_json_input(server, body):
    """tritonclient's `set_data_from_numpy(x, binary_data=False)` writes the
    values with json.dumps: NaN, Infinity, -Infinity, as Triton's own JSON
    answers spell them. tritonserver 2.51: 200, [nan, inf, -inf] back.
    anemone: 400 "malformed inference request JSON: expected value" (the
    answer side is documented; this input side is not)."""
    x = NAN_INF[:3]
    if body == "json.dumps":
        r = server.post("onnx_nobatch_zero_1_float32", json.dumps(
            {"inputs": [_one("INPUT0", "FP32", [3], x.tolist())], "parameters": {"binary_data_output": True}}))
        got = _outputs(r)["OUTPUT0"]
    else:
        mod, client = server.client("http")
        got = _infer(mod, client, "python_nobatch_zero_1_float32", [x], binary=False).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(got, x)


def _typed_fp32_request(model, values):
    req = service_pb2.ModelInferRequest(model_name=model)
    t = req.inputs.add(name="INPUT0", datatype="FP32", shape=[len(values)])
    t.contents.fp32_contents.extend(values)
    return req


@pytest.mark.parametrize("model", ["onnx_nobatch_zero_1_float32", "tract_nobatch_zero_1_float32"])
def test_nan_inf_through_each_engine(server, model):
    """NaN and infinities (and -0.0, the smallest subnormal) pass unchanged
    through an ONNX identity on ONNX Runtime and on tract, over binary HTTP,
    gRPC raw contents and gRPC typed `fp32_contents` (the QA's ONNX
    counterparts of nan_inf_output; its model is Python-only)."""
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.5], dtype=np.float32)
    response = server.stub().ModelInfer(_typed_fp32_request(model, x.tolist()))
    assert response.raw_output_contents[0] == x.tobytes(), "grpc typed"
    for protocol in ("http", "grpc"):
        mod, client = server.client(protocol)
        assert _infer(mod, client, model, [x]).as_numpy("OUTPUT0").tobytes() == x.tobytes(), protocol


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nan_inf_made_by_the_engine(server, protocol):
    """Infinities and NaN an engine computes (ONNX Log of 0, -1, inf on ONNX
    Runtime) reach the client as numpy computes them; over HTTP in a JSON
    answer (strings, docs/FROM_TRITON.md) read back by tritonclient."""
    x = np.array([1.0, 0.0, -1.0, np.inf, 1e-45], np.float32)
    mod, client = server.client(protocol)
    outputs = [mod.InferRequestedOutput("OUTPUT0", binary_data=False)] if mod is httpclient else None
    got = _infer(mod, client, "onnx_log", [x], outputs=outputs).as_numpy("OUTPUT0")
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(got, np.log(x), rtol=1e-6)


# ---------------------------------------------------------------- qa/L0_nullchar_string

NUL_STRING = np.array(["abc\0def"], dtype=object)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nullchar_python_string(server, protocol):
    """nullchar_string_client.py -m python_string (-i grpc): "abc\\0def"
    comes back whole, twice (the model answers np.bytes_, then np.object_).
    tritonserver 2.51: b'abc\\x00def' both times."""
    mod, client = server.client(protocol)
    for _ in range(2):
        out = _infer(mod, client, "python_string", [NUL_STRING]).as_numpy("OUTPUT0")
        assert np.equal(NUL_STRING.astype(np.bytes_), out).all(), out


def test_nullchar_in_json_both_ways(server):
    """The same string as JSON ("abc\\u0000def") in and out. tritonserver
    2.51: 200, "abc\\u0000def"."""
    r = server.post("python_string", '{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1],'
                    '"data":["abc\\u0000def"]}]}')
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == ["abc\0def"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nullchar_onnx_strings(server, protocol):
    """nullchar_string_client.py -m libtorch_nobatch_zero_1_object, as ONNX
    string identities: on tract the NUL passes (docs/BACKENDS.md: "tract
    takes NUL bytes"); on ONNX Runtime it is 400 / INVALID_ARGUMENT naming
    the NUL (BACKENDS.md: "a BYTES element with a NUL byte or invalid UTF-8
    is refused as bad input (400), never altered")."""
    mod, client = server.client(protocol)
    x = np.array(["abc\0def", "", "\u00e9"], dtype=object)
    out = _infer(mod, client, "onnx_nobatch_zero_1_object", [x]).as_numpy("OUTPUT0")
    assert out.tolist() == [s.encode() for s in x]
    _refused(lambda: _infer(mod, client, "onnx_zero_1_object", [NUL_STRING.reshape(1, 1)]), BAD, "NUL")


# ---------------------------------------------------------------- qa/L0_output_name, qa/L0_output_validation

def _dummy_output_request(model, output):
    """output_name_test.py requestGenerator: INPUT0 FP32 [1] of b"aaaa", one output asked for."""
    req = service_pb2.ModelInferRequest(model_name=model, id="output name validation")
    req.inputs.add(name="INPUT0", datatype="FP32", shape=[1])
    req.outputs.add(name=output)
    req.raw_input_contents.append(b"aaaa")
    return req


@pytest.mark.parametrize("model", ["onnx_nobatch_zero_1_float32", "tract_nobatch_zero_1_float32",
                                   "python_nobatch_zero_1_float32"])
def test_output_name_unknown(server, model):
    """output_name_test.py test_grpc (and the same over HTTP): an output the
    model does not have (names are exact: case and spaces count) is
    INVALID_ARGUMENT / 400 naming it. tritonserver 2.51: INVALID_ARGUMENT /
    400 "unexpected inference output 'DUMMY' for model '<model>'", which the
    QA checks with startswith; anemone: "unknown output 'DUMMY': the
    model's outputs are OUTPUT0" (the same refusal in other words, as
    test_triton_qa_batching.py's test_request_output_not_allowed; checked
    here: the status and the name)."""
    for output in ("DUMMY", "output0", "OUTPUT0 ", ""):
        with pytest.raises(grpc.RpcError) as e:
            server.stub().ModelInfer(_dummy_output_request(model, output))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"'{output}'" in e.value.details()
        r = server.post(model, {"inputs": [_one("INPUT0", "FP32", [1], [1])], "outputs": [{"name": output}]})
        assert r.status_code == 400 and f"'{output}'" in _error(r), r.text


@pytest.mark.parametrize("model,words", [
    ("onnx_datatype_1_float32", ["OUTPUT0", "INT32", "FP32"]),
    ("onnx_index_1_float32", ["OUTPUT1"]),
])
def test_output_validation_onnx_config_refused_at_load(server, model, words):
    """lt_op_val_client.py test_datatype / test_index, for ONNX: a config whose
    output has another datatype than the model's (TYPE_INT32 for an FP32
    output), or an output the model does not have, does not load; the load's
    error names the output (and both datatypes). Triton's QA (libtorch):
    "configuration expects datatype TYPE_INT32 for output 'OUTPUT__0', model
    provides TYPE_FP32" and "The output OUTPUT__1 ... refers to an output
    index which doesn't exist" (tritonserver 2.51 here has no ONNX Runtime
    backend to ask); test_success, 200 (its Python stand-in)."""
    r = requests.post(server.url(f"/v2/repository/models/{model}/load"), timeout=60)
    assert r.status_code >= 400 and _error(r).startswith("failed to load"), r.text
    for word in words:
        assert word in _error(r), r.text
    r = server.post(model, {"inputs": [_one("INPUT0", "FP32", [1], [1])]})
    assert r.status_code in (404, 503), r.text
    # test_success: onnx_zero_1_float32, the same model with a right config
    r = server.post("onnx_zero_1_float32", '{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP32",'
                    '"data":[1.0]}],"outputs":[{"name":"OUTPUT0"}]}')
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1.0], r.text


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_output_validation_python_answers_as_given(server, protocol):
    """lt_op_val_client.py test_datatype / test_index, for Python models: a
    model that answers FP32 for a TYPE_INT32 output is answered as given; one
    that leaves out OUTPUT1 has it left out, asked for or not (SERVING.md,
    Python models, "Answers"). tritonserver 2.51: the same (FP32 [1.0];
    `outputs: []` when OUTPUT1 alone is asked for)."""
    mod, client = server.client(protocol)
    x = np.array([1.0], np.float32)
    result = _infer(mod, client, "python_datatype_1_float32", [x])
    out = result.get_output("OUTPUT0")
    assert (out["datatype"] if mod is httpclient else out.datatype) == "FP32"
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)
    result = _infer(mod, client, "python_index_1_float32", [x], outputs=[mod.InferRequestedOutput("OUTPUT1")])
    assert result.get_output("OUTPUT1") is None and result.get_output("OUTPUT0") is None
    result = _infer(mod, client, "python_index_1_float32", [x])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)
    assert result.get_output("OUTPUT1") is None


OUT_BODY = {"inputs": [_one("INPUT0", "FP32", [3], [1, 3, 2])]}


OUTPUT_CASES = [
    # [] answers every output; an unknown output parameter is ignored (2.51: 200 both)
    ([], 200, [1.0, 3.0, 2.0]),
    ([{"name": "OUTPUT0", "parameters": {"foo": 1}}], 200, [1.0, 3.0, 2.0]),
    # classification: 2 classes; 0 is none; past the count, all (2.51: the same)
    ([{"name": "OUTPUT0", "parameters": {"classification": 2}}], 200, ["3.000000:1", "2.000000:2"]),
    ([{"name": "OUTPUT0", "parameters": {"classification": 0}}], 200, [1.0, 3.0, 2.0]),
    ([{"name": "OUTPUT0", "parameters": {"classification": 5}}], 200, ["3.000000:1", "2.000000:2", "1.000000:0"]),
    # client mistakes: 400 here, 500 in 2.51 ("Unable to set 'classification'",
    # "Unable to parse 'binary_data'", "Unable to parse 'name'") (FROM_TRITON.md:
    # "anemone answers a client's mistake with 400 ... where Triton often answers 500")
    ([{"name": "OUTPUT0", "parameters": {"classification": "2"}}], 400, "classification"),
    ([{"name": "OUTPUT0", "parameters": {"classification": -1}}], 400, "classification"),
    ([{"name": "OUTPUT0", "parameters": {"binary_data": "true"}}], 400, "binary_data"),
    ([{"name": "OUTPUT0", "parameters": {"binary_data": 1}}], 400, "binary_data"),
    ([{}], 400, "name"),
]


def test_output_parameters(server):
    """Output parameters (L0_output_validation's `outputs` lists, with the
    parameters Triton's HTTP frontend reads), on a Python identity.
    tritonserver 2.51: as each case's comment in OUTPUT_CASES says."""
    for outputs, status, answer in OUTPUT_CASES:
        r = server.post("python_nobatch_zero_1_float32", dict(OUT_BODY, outputs=outputs))
        assert r.status_code == status, (outputs, r.text)
        if status == 200:
            assert r.json()["outputs"][0]["data"] == answer, outputs
        else:
            assert answer in _error(r), (outputs, r.text)


def test_output_named_without_binary_data_is_json_under_binary_data_output(server):
    """Triton's HTTP frontend applies `binary_data_output` only to the outputs
    a request does not name (src/http_server.cc: a named output's kind is its
    own `binary_data`, false by default). tritonserver 2.51: 200,
    application/json, data [1.0, 2.0]. anemone: application/octet-stream with
    the data after the header."""
    r = server.post("python_nobatch_zero_1_float32", {"inputs": [_one("INPUT0", "FP32", [2], [1, 2])],
                                                      "outputs": [{"name": "OUTPUT0"}],
                                                      "parameters": {"binary_data_output": True}})
    assert "Inference-Header-Content-Length" not in r.headers
    assert r.json()["outputs"][0]["data"] == [1.0, 2.0]


def test_shm_size_or_offset_without_region(server):
    """An input with `data` and an output, each also carrying
    `shared_memory_byte_size` (or `shared_memory_offset`) but no region.
    tritonserver 2.51: 200, the data in the answer (those parameters are read
    only with a region). anemone refuses the request, naming the region to
    add, as SERVING.md's shared memory table says ("400 (naming the region
    to add)"), and serves on."""
    for key in ("shared_memory_byte_size", "shared_memory_offset"):
        inp = _one("INPUT0", "FP32", [3], [1, 3, 2], parameters={key: 8})
        r = server.post("python_nobatch_zero_1_float32", {"inputs": [inp]})
        assert r.status_code == 400 and key in r.text and "shared_memory_region" in r.text, r.text
        r = server.post("python_nobatch_zero_1_float32",
                        dict(OUT_BODY, outputs=[{"name": "OUTPUT0", "parameters": {key: 12}}]))
        assert r.status_code == 400 and key in r.text and "shared_memory_region" in r.text, r.text
    r = server.post("python_nobatch_zero_1_float32", {"inputs": [_one("INPUT0", "FP32", [3], [1, 3, 2])]})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1.0, 3.0, 2.0], r.text


# ---------------------------------------------------------------- qa/L0_large_payload

def _small_still_served(mod, client, model):
    small = np.random.random(1).astype(np.float32)
    np.testing.assert_array_equal(_infer(mod, client, model, [small]).as_numpy("OUTPUT0"), small)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model,mib", [("onnx_nobatch_zero_1_float32", 256), ("python_nobatch_zero_1_float32", 128)])
def test_large_payload(big, protocol, model, mib):
    """large_payload_test.py test_onnx / test_python: a large FP32 tensor
    comes back equal through the identity, then a small one still does. The
    QA sends 1.9 GiB (and 3 GiB over HTTP, which Triton refuses); here 256
    MiB (ONNX Runtime) and 128 MiB (Python) under a 1 GiB
    `--max-request-bytes`, sizes this 2-core machine shares."""
    mod, client = big.client(protocol)
    x = np.random.random(mib * MiB // 4).astype(np.float32)
    assert np.array_equal(_infer(mod, client, model, [x]).as_numpy("OUTPUT0"), x)
    del x
    _small_still_served(mod, client, model)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_large_payload_past_the_limit(server, protocol):
    """large_payload_test.py's very large tensor, which must fail: past the
    64 MiB `--max-request-bytes`, 413 / RESOURCE_EXHAUSTED naming the flag
    (docs/RELIABILITY.md, "Request limits"); the next request is served.
    tritonserver 2.51 has no such limit below 2 GiB (FROM_TRITON.md)."""
    mod, client = server.client(protocol)
    x = np.zeros(70 * MiB // 4, np.float32)
    with pytest.raises(InferenceServerException) as e:
        _infer(mod, client, "onnx_nobatch_zero_1_float32", [x])
    assert e.value.status() in ("413", "StatusCode.RESOURCE_EXHAUSTED"), e.value
    assert "--max-request-bytes" in e.value.message()
    _small_still_served(mod, client, "onnx_nobatch_zero_1_float32")


def test_large_payload_raw_body_at_the_limit(server):
    """A raw binary body (Inference-Header-Content-Length: 0, the body the
    input's bytes) of exactly 64 MiB is served; 4 bytes more is 413 "request
    body exceeds the 67108864-byte limit (--max-request-bytes)"."""
    x = np.random.random(64 * MiB // 4).astype(np.float32)
    headers = {"Inference-Header-Content-Length": "0"}
    r = server.post("onnx_nobatch_zero_1_float32", x.tobytes(), headers)
    assert np.array_equal(_outputs(r)["OUTPUT0"], x)
    r = server.post("onnx_nobatch_zero_1_float32", x.tobytes() + b"\0\0\0\0", headers)
    assert r.status_code == 413 and "67108864" in _error(r), r.text


def test_large_payload_bodies_at_once(server):
    """Three 48 MiB raw bodies at once (more than the 128 MiB
    `--max-decoding-bytes` budget together) are each served, equal: a body
    waits for its share of the budget, it is not refused
    (docs/RELIABILITY.md, "Request limits")."""
    arrays = [np.full(48 * MiB // 4, k, np.float32) for k in range(3)]
    answers = {}

    def send(k):
        r = server.post("onnx_nobatch_zero_1_float32", arrays[k].tobytes(), {"Inference-Header-Content-Length": "0"})
        answers[k] = (r.status_code, np.array_equal(_outputs(r)["OUTPUT0"], arrays[k]) if r.status_code == 200 else r.text)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == {k: (200, True) for k in range(3)}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_large_payload_compressed_past_the_limit(server, protocol):
    """A small compressed request that decompresses past the limit (70 MiB of
    zeros, about 70 KiB of gzip) is 413 / RESOURCE_EXHAUSTED, not
    decompressed further (SERVING.md: "a body that would decompress past it
    is 413"; gRPC: "the message's size limit holds once decompressed")."""
    mod, client = server.client(protocol)
    x = np.zeros(70 * MiB // 4, np.float32)
    kw = {"request_compression_algorithm": "gzip"} if mod is httpclient else {"compression_algorithm": "gzip"}
    with pytest.raises(InferenceServerException) as e:
        _infer(mod, client, "onnx_nobatch_zero_1_float32", [x], **kw)
    assert e.value.status() in ("413", "StatusCode.RESOURCE_EXHAUSTED"), e.value
    _small_still_served(mod, client, "onnx_nobatch_zero_1_float32")


def test_large_payload_json_body(server):
    """A 2**20-element FP32 input written as JSON numbers (about 20 MiB of
    text) is decoded value by value, equal to numpy's parse of the same
    text."""
    x = np.random.random(1 << 20).astype(np.float32)
    text = json.dumps({"inputs": [_one("INPUT0", "FP32", [x.size], x.tolist())],
                       "parameters": {"binary_data_output": True}})
    np.testing.assert_array_equal(_outputs(server.post("onnx_nobatch_zero_1_float32", text))["OUTPUT0"], x)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_large_payload_bytes_elements(server, protocol):
    """Large BYTES elements (8 of 4 MiB, one with NULs and bytes that are not
    UTF-8) through string_identity (dims [8]) over binary HTTP and gRPC."""
    rng = np.random.default_rng(0)
    x = np.array([rng.integers(0, 256, 4 * MiB, dtype=np.uint8).tobytes() for _ in range(8)], dtype=object)
    mod, client = server.client(protocol)
    out = _infer(mod, client, "string_identity", [x]).as_numpy("OUTPUT0")
    assert out.tolist() == x.tolist()


# ---------------------------------------------------------------- qa/L0_json (common's triton_json_test.cc)

def _int_body(values):
    return {"inputs": [_one("INPUT0", "INT32", [1, 16], values), _one("INPUT1", "INT32", [1, 16], [0] * 16)],
            "parameters": {"binary_data_output": True}}


def test_json_integers(server):
    """TestIsInt / TestIsNumber for the INT32 inputs of the ONNX `simple`
    (OUTPUT0 = INPUT0 + INPUT1): whole numbers, flat or in any nesting that
    gives 16 values (a ragged one read in order), are taken; 2.0 (a number,
    not an integer), "2", true, {} and null are 400 naming the value
    (FROM_TRITON.md: "a float (5.0, 1e3) for an integer input | 400").
    tritonserver 2.51 (Python `simple`): 200 with the same values; 500
    "attempt to access JSON non-signed-integer as signed-integer"."""
    for values, expected in (([2] * 16, [2] * 16), ([-2] * 16, [-2] * 16),
                             ([[2] * 8, [3] * 8], [2] * 8 + [3] * 8), ([[[2] * 16]], [2] * 16),
                             ([[2] * 8, [3] * 7, 4], [2] * 8 + [3] * 7 + [4])):
        out = _outputs(server.post("simple", _int_body(values)))["OUTPUT0"]
        np.testing.assert_array_equal(out, np.array(expected, np.int32).reshape(1, 16), str(values))
    for value, words in ((2.0, "whole numbers"), ("2", '"2"'), (True, "true"), ({}, "map"), (None, "null")):
        r = server.post("simple", _int_body([value] * 16))
        assert r.status_code == 400 and words in _error(r), r.text


def _fp32_body(value):
    return ('{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"data":[%s]}],'
            '"parameters":{"binary_data_output":true}}' % value)


def test_json_floats(server):
    """TestIsNumber for FP32: integers, decimals, exponents, -0.0, a
    subnormal, FP32's largest, a 30-digit integer, numbers past FP32 (the
    infinities) each give the float32 numpy makes of the same text, bit for
    bit; a string, a bool, an object, an empty list, null are 400 naming the
    input. tritonserver 2.51: 200, the same values (Infinity for 1e39); 500
    "attempt to access JSON non-number as double"."""
    for text in ("2", "2.0", "2.001", "-0.0", "1e-3", "1E+2", "1.5e-45", "3.4028235e38",
                 "123456789012345678901234567890", "1e39", "-1e39"):
        got = _outputs(server.post("onnx_nobatch_zero_1_float32", _fp32_body(text)))["OUTPUT0"]
        with np.errstate(over="ignore"):
            assert got.tobytes() == np.array([float(text)], np.float32).tobytes(), text
    for value in ('"2.5"', "true", "{}", "[]", "null"):
        r = server.post("onnx_nobatch_zero_1_float32", _fp32_body(value))
        assert r.status_code == 400 and "INPUT0" in _error(r), r.text


def test_json_bools(server):
    """TestIsBool for a BOOL input: true and false only; "x", 1 and null are
    400. tritonserver 2.51: 200; 500 "attempt to access JSON non-boolean as
    boolean" (FROM_TRITON.md: 400 here)."""
    body = '{"inputs":[{"name":"INPUT0","datatype":"BOOL","shape":[2],"data":[%s, %s]}]}'
    r = server.post("python_bool", body % ("true", "false"))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [True, False], r.text
    for value in ('"x"', "1", "null"):
        r = server.post("python_bool", body % ("true", value))
        assert r.status_code == 400 and "INPUT0" in _error(r), r.text


def test_json_strings(server):
    """TestIsString for a BYTES input: a BMP escape and a surrogate pair,
    every short escape, control characters, unescaped UTF-8 each decode to
    the string's UTF-8 bytes, which come back (binary) unchanged; a lone
    surrogate is 400. tritonserver 2.51: 200, the same strings; 500 "The
    surrogate pair in string is invalid"."""
    body = ('{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1],"data":["%s"]}],'
            '"parameters":{"binary_data_output":true}}')
    for escaped, text in ((r"\u00e9\ud83d\ude00", "\u00e9\U0001F600"), (r"\n\t\"\\\/\b\f\r", "\n\t\"\\/\b\f\r"),
                          (r"\u0041\u0000\u001f", "A\0\x1f"), ("\u6f22\u5b57", "\u6f22\u5b57")):
        out = _outputs(server.post("python_string", (body % escaped).encode()))["OUTPUT0"]
        assert out.tolist() == [text.encode()], escaped
    r = server.post("python_string", body % r"\ud800")
    assert r.status_code == 400, r.text


def test_json_escaped_keys_names_and_datatypes(server):
    """Escapes in keys and names are the same strings (`"\\u0069nputs"` is
    `inputs`, `"INPUT\\u0030"` is INPUT0, `"BYTE\\u0053"` BYTES); an `id` with
    escapes is echoed decoded. tritonserver 2.51: 200, the same."""
    r = server.post("python_string", r'{"\u0069nputs":[{"name":"INPUT\u0030","datatype":"BYTE\u0053","shape":[1],'
                                     r'"data":["x"]}],"id":"\u00e9\u0041"}')
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "\u00e9A" and r.json()["outputs"][0]["data"] == ["x"]


def test_json_byte_order_mark(server):
    """A body starting with EF BB BF (what .NET's and PowerShell's UTF-8
    writers put first). tritonserver 2.51: 200, ["x"]. anemone: 400
    "malformed inference request JSON: expected value at line 1 column 1"."""
    r = server.post("python_string", "\ufeff" + GOOD)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["x"], r.text


GOOD = '{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1],"data":["x"]}]}'
DOCUMENTS = [
    (" \n\t" + GOOD + " \r\n", 200),                                   # 2.51: 200
    (GOOD + "x", 400), (GOOD + GOOD, 400),                             # 2.51: 500 "must not be followed"
    ("null", 400), ("[]", 400), ("{}", 400),                           # 2.51: 500 "non-existing ... 'inputs'"
    (GOOD.encode("utf-16"), 400),                                      # 2.51: 500 "Invalid value"
    (GOOD.replace('"x"]', '"x"],"name":"INPUT0"'), 400),               # a key twice (FROM_TRITON.md); 2.51: 200
    (GOOD.replace("}]}", '}],"inputs":[]}'), 400),                     # 2.51: 200 (the first key)
    (GOOD.replace("}]}", '}],"id":5}'), 400),                          # 2.51: 500 "Unable to parse 'id'"
    (GOOD.replace("[1]", "[1.0]"), 400), (GOOD.replace("[1]", '["1"]'), 400),
    (GOOD.replace("[1]", "1"), 400),                                   # 2.51: 500 "Unable to parse 'shape'"
    (GOOD.replace('"INPUT0"', "5"), 400),                              # 2.51: 500 "Unable to parse 'name'"
    (GOOD.replace('[{"name', '{"name').replace("}]}", "}}"), 400),    # 2.51: 500 "non-array as array"
    # request parameters: a string, number or boolean (2.51: 200); null, a list,
    # an object (2.51: 400 "parameter 'a' has invalid type")
] + [(GOOD.replace("}]}", '}],"parameters":{"a":%s}}' % v), 200)
     for v in ("1.5", "-3", "18446744073709551615", '"\\u00e9"', "true")] + [
    (GOOD.replace("}]}", '}],"parameters":{"a":%s}}' % v), 400) for v in ("null", "[1]", '{"b":1}')]


def test_json_documents(server):
    """Whole bodies: whitespace around the document is fine; anything after
    it, a document that is not the request object, UTF-16, a repeated key,
    values of the wrong JSON type are 400 (Triton answers most with 500:
    FROM_TRITON.md; repeated keys: its table); parameters as TestIs*
    sorts them. tritonserver 2.51: each case's comment in DOCUMENTS."""
    for body, status in DOCUMENTS:
        r = server.post("python_string", body)
        assert r.status_code == status, (body, r.text)


# ---------------------------------------------------------------- qa/L0_data_compression

SIMPLE_IN = [np.arange(16, dtype=np.int32).reshape(1, 16), np.ones((1, 16), np.int32)]
COMPRESSION = [(a, b) for a in ("deflate", "gzip", None) for b in ("deflate", "gzip", None) if a != b]


def _check_simple(result):
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), SIMPLE_IN[0] + SIMPLE_IN[1])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), SIMPLE_IN[0] - SIMPLE_IN[1])


@pytest.mark.parametrize("client", ["sync", "aio"])
def test_compression_http_clients(server, client):
    """test.sh's loop: simple_http_infer_client.py and
    simple_http_aio_infer_client.py with each (request, response) pair of
    deflate, gzip and none that differ, against `simple`. tritonserver 2.51
    (Python `simple`): every pair answers the sum and difference."""
    import asyncio

    import tritonclient.http.aio as aioclient
    inputs = []
    for k, a in enumerate(SIMPLE_IN):
        inputs.append(httpclient.InferInput(f"INPUT{k}", [1, 16], "INT32"))
        inputs[-1].set_data_from_numpy(a, binary_data=k == 0)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=False)]

    async def run(kw):
        async with aioclient.InferenceServerClient(server.http) as c:
            return await c.infer("simple", inputs, outputs=outputs, **kw)
    for request_algorithm, response_algorithm in COMPRESSION:
        kw = dict(request_compression_algorithm=request_algorithm, response_compression_algorithm=response_algorithm)
        if client == "sync":
            _check_simple(httpclient.InferenceServerClient(server.http).infer("simple", inputs, outputs=outputs, **kw))
        else:
            _check_simple(asyncio.run(run(kw)))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression_grpc_client(server, algorithm):
    """The gRPC client's `compression_algorithm` (the QA's C++ and Python
    gRPC clients' -i option) on `simple`, unary and streamed. tritonserver
    2.51: the sum and difference."""
    mod, client = server.client("grpc")
    _check_simple(_infer(mod, client, "simple", SIMPLE_IN, compression_algorithm=algorithm))
    done = queue.Queue()
    client.start_stream(callback=lambda result, error: done.put(error or result))
    inputs = [mod.InferInput(f"INPUT{k}", [1, 16], "INT32") for k in range(2)]
    for t, a in zip(inputs, SIMPLE_IN):
        t.set_data_from_numpy(a)
    client.async_stream_infer("simple", inputs)
    _check_simple(done.get(timeout=30))
    client.stop_stream()


JACK = b"All work and no play makes Jack a dull boy\n"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression_raw_data(server, algorithm):
    """data_compressor_test.cc / validation.py's raw_data ("All work and no
    play makes Jack a dull boy"), compressed with Python's gzip or zlib as
    validation.py does, sent as a BYTES input body, answered compressed the
    same way: decompressed by Python it is the same text (a binary answer:
    Inference-Header-Content-Length counts the JSON before compression,
    SERVING.md). tritonserver 2.51: the same."""
    body, length = httpclient.InferenceServerClient.generate_request_body(
        [httpclient.InferInput("INPUT0", [1], "BYTES").set_data_from_numpy(np.array([JACK], dtype=object))],
        outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)])
    packed = gzip.compress(body) if algorithm == "gzip" else zlib.compress(body)
    r = requests.post(server.url("/v2/models/python_string/infer"), data=packed, stream=True, timeout=30,
                      headers={"Content-Encoding": algorithm, "Accept-Encoding": algorithm,
                               "Inference-Header-Content-Length": str(length)})
    assert r.status_code == 200 and r.headers["Content-Encoding"] == algorithm
    raw = r.raw.read()
    plain = gzip.decompress(raw) if algorithm == "gzip" else zlib.decompress(raw)
    header = int(r.headers["Inference-Header-Content-Length"])
    assert plain[header:] == len(JACK).to_bytes(4, "little") + JACK


def test_compression_large_body(server):
    """A compressed body of many buffers (data_compressor_test.cc's
    multi-block cases): 16 MiB of random FP32 in a gzip request, answered
    deflate, equal."""
    mod, client = server.client("http")
    x = np.random.random(4 * MiB).astype(np.float32)
    got = _infer(mod, client, "onnx_nobatch_zero_1_float32", [x], request_compression_algorithm="gzip",
                 response_compression_algorithm="deflate").as_numpy("OUTPUT0")
    assert np.array_equal(got, x)


# ---------------------------------------------------------------- qa/L0_shared_memory

SHM_NAMES = ["input0_data", "input1_data", "output0_data", "output1_data"]


class Shm:
    """SystemSharedMemoryTestBase: regions of this process (keys made unique
    per process: /dev/shm is the machine's) and one client of `protocol`."""

    def __init__(self, target, protocol):
        self.target, self.protocol = target, protocol
        self.mod, self.client = target.client(protocol)
        self.handles = {}
        self.client.unregister_system_shared_memory()

    def key(self, name):
        return f"/qa_wire_{os.getpid()}_{name}"

    def create(self, name, size):
        self.handles[name] = shm.create_shared_memory_region(name, self.key(name), size)
        return self.handles[name]

    def register(self, name, size, offset=0, key=None):
        self.client.register_system_shared_memory(name, key or self.key(name), size, offset=offset)

    def configure(self, create=64, register=64, offset=0):
        """_configure_server: the four regions, INPUT0 = 0..15, INPUT1 = 1s."""
        for n in SHM_NAMES:
            self.create(n, create)
            self.register(n, register, offset)
        shm.set_shared_memory_region(self.handles["input0_data"], [SIMPLE_IN[0].ravel()], offset=offset)
        shm.set_shared_memory_region(self.handles["input1_data"], [SIMPLE_IN[1].ravel()], offset=offset)

    def count(self):
        status = self.client.get_system_shared_memory_status()
        return len(status) if self.protocol == "http" else len(status.regions)

    def infer(self, model="simple", input1=("input1_data", 64), out_offset=0, out_size=64, register_offset=0,
              client=None):
        """infer_util.shm_basic_infer: OUTPUT0 read back from its region."""
        mod = self.mod
        inputs = [mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory("input0_data", 64)
        if input1 is None:
            inputs[1].set_data_from_numpy(SIMPLE_IN[1])
        else:
            inputs[1].set_shared_memory(*input1)
        outputs = [mod.InferRequestedOutput("OUTPUT0"), mod.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory("output0_data", out_size, offset=out_offset)
        outputs[1].set_shared_memory("output1_data", out_size, offset=out_offset)
        (client or self.client).infer(model, inputs, outputs=outputs)
        got = shm.get_contents_as_numpy(self.handles["output0_data"], np.int32, [1, 16],
                                        offset=register_offset + out_offset)
        np.testing.assert_array_equal(got, SIMPLE_IN[0] + SIMPLE_IN[1])
        return got

    def close(self):
        self.client.unregister_system_shared_memory()
        for h in self.handles.values():
            shm.destroy_shared_memory_region(h)
        self.handles = {}


@pytest.fixture(params=["http", "grpc"])
def env(server, request):
    e = Shm(server, request.param)
    yield e
    e.close()


def test_shm_register_unregister_status(env):
    """test_valid_create_set_register, test_unregister_before_register,
    test_unregister_after_register, test_reregister_after_register: one
    region registered is one in the status (with its key, offset and size);
    unregistering a name never registered is no error; registering a name
    twice is refused and leaves one; a region's status after unregister is
    NOT_FOUND. tritonserver 2.51: the same counts; 400 "shared memory region
    'dummy_data' already in manager" (anemone: "... is already registered",
    the QA's text aside, SERVING.md's table); 404 "Unable to find system
    shared memory region: 'dummy_data'"."""
    h = env.create("dummy_data", 8)
    shm.set_shared_memory_region(h, [np.array([1, 2], dtype=np.float32)])
    env.client.unregister_system_shared_memory("dummy_data")
    assert env.count() == 0
    env.register("dummy_data", 8)
    assert env.count() == 1
    _refused(lambda: env.register("dummy_data", 8), BAD, "dummy_data")
    assert env.count() == 1
    status = env.client.get_system_shared_memory_status("dummy_data")
    region = status[0] if env.protocol == "http" else status.regions["dummy_data"]
    get = (lambda k: region[k]) if env.protocol == "http" else (lambda k: getattr(region, k))
    assert (get("name"), get("key"), get("offset"), get("byte_size")) == ("dummy_data", env.key("dummy_data"), 0, 8)
    env.client.unregister_system_shared_memory("dummy_data")
    assert env.count() == 0
    _refused(lambda: env.client.get_system_shared_memory_status("dummy_data"), NOT_FOUND, "dummy_data")


def test_shm_register_and_unregister_around_inference(env):
    """test_unregister_after_inference, test_register_after_inference,
    test_unregisterall: after an inference through the four regions,
    unregistering one leaves 3; registering it again and a fifth makes 5;
    unregistering all leaves 0; an inference naming an unregistered
    region is NOT_FOUND. tritonserver 2.51: the same; 404 "Unable to find
    shared memory region: 'output0_data'"."""
    env.configure()
    env.infer()
    env.client.unregister_system_shared_memory("output0_data")
    assert env.count() == 3
    _refused(env.infer, NOT_FOUND, "output0_data")
    env.register("output0_data", 64)
    env.create("input2_data", 64)
    env.register("input2_data", 64)
    assert env.count() == 5
    env.client.unregister_system_shared_memory()
    assert env.count() == 0


def test_shm_too_big_and_mixed(env):
    """test_too_big_shm: INPUT1 from a 128-byte region where [1, 16] INT32 is
    64 bytes is refused naming both sizes; test_mixed_raw_shm: INPUT0 from
    shared memory, INPUT1 in the request. tritonserver 2.51: 400 "input byte
    size mismatch for input 'INPUT1' for model 'simple'. Expected 64, got
    128"; the mix answers the sum."""
    env.configure()
    env.create("input2_data", 128)
    env.register("input2_data", 128)
    _refused(lambda: env.infer(input1=("input2_data", 128)), BAD, "INPUT1", "64", "128")
    env.infer(input1=None)


def test_shm_output_out_of_bounds(env):
    """test_infer_offset_out_of_bound (2**64 - 32 over HTTP, 64 over gRPC),
    test_infer_byte_size_out_of_bound (offset 1, 64 bytes),
    test_infer_integer_overflow (offset 32 + 2**64 - 32), with the regions
    registered at offset PAGE as main's QA does: past the output region's
    end is refused naming the region. tritonserver 2.51: 400 "Invalid offset
    (+ byte size) for shared memory region" for the two past 2**63, but
    offsets 64 and 1 are taken, 200, and the output written past the
    registered range (main's fix #8335); gRPC's client itself refuses values
    past int64 (ValueError "Value out of range")."""
    env.configure(create=PAGE + 64, offset=PAGE)
    for offset, size in ((64, 64), (2**64 - 32, 64), (1, 64), (32, 2**64 - 32), (32, 2**63 - 1)):
        call = lambda: env.infer(out_offset=offset, out_size=size, register_offset=PAGE)  # noqa: E731
        if env.protocol == "grpc" and max(offset, size) >= 2**63:
            with pytest.raises(ValueError, match="Value out of range"):
                call()
        else:
            _refused(call, BAD, "output0_data")


def test_shm_output_region_too_small(env):
    """An output region smaller than the output: 400 / INVALID_ARGUMENT
    naming both sizes (SERVING.md's table; tritonserver 2.51: 500 "shared
    memory size specified with the request for output 'OUTPUT0' (32 bytes)
    should be at least 64 bytes")."""
    env.configure()
    _refused(lambda: env.infer(out_size=32), BAD, "OUTPUT0", "32", "64")


def test_shm_register_out_of_bound(env):
    """test_register_out_of_bound: a registration whose offset + byte_size
    passes the object's 64 bytes (or of size 0) is refused, and nothing is
    registered. tritonserver 2.51: 400 "failed to register shared memory
    region 'input0_data': invalid args" (size 0: 400 "unable to process
    address space")."""
    env.create("input0_data", 64)
    for size, offset in ((65, 0), (64, 1), (1, 64), (0, 65), (0, 0)):
        _refused(lambda: env.register("input0_data", size, offset), BAD, "input0_data")
        assert env.count() == 0


def test_shm_register_invalid_key(env):
    """test_register_invalid_shm_key ("/", "///"), and keys that are not one
    shm_open name or open no object: 400 / INVALID_ARGUMENT naming the key
    (SERVING.md: "Keys are shm_open names (one name, an optional leading
    /)"; tritonserver 2.51: 500 "Unable to open shared memory region: '/'",
    and it registers "//x" when /x exists)."""
    for key in ("/", "///", "//x", "/dev/zero", "no_such_object"):
        _refused(lambda: env.register("my_test_shm_name", 10000, key=key), BAD, key)
        assert env.count() == 0


def test_shm_large_register_offset(env):
    """test_large_shm_register_offset: regions of PAGE * 1024 bytes
    registered at PAGE * 1023 give the right sums on ONNX and Python models;
    an offset that is not a page multiple (100) too (SERVING.md: "anemone
    takes any offset"; tritonserver 2.51 refuses it: 400 "unable to process
    address space")."""
    for offset in (PAGE * 1023, 100):
        env.configure(create=PAGE * 1024, offset=offset)
        for model in ("onnx_int32_int32_int32", "python_int32_int32_int32"):
            env.infer(model=model, register_offset=offset)
        env.close()


def test_shm_unregister_during_inference(env):
    """TestSharedMemoryUnregister (main's deferred unregister): with
    `simple_delayed` (3 s) running on the four regions, unregister-all and
    unregister-one from a second client succeed, the inference still writes
    its outputs, and the regions are then gone (SERVING.md: "A request
    already using a region keeps it mapped until it finishes"). tritonserver
    2.51 refused the unregister while in use ("Cannot unregister shared
    memory region 'input0_data', it is currently in use"); main accepts."""
    env.configure()
    done = {}
    client = env.target.client(env.protocol)[1]  # (tritonclient's HTTP client stays on its thread)
    thread = threading.Thread(target=lambda: done.setdefault("r", env.infer(model="simple_delayed", client=client)))
    thread.start()
    time.sleep(1.5)  # the request has entered (and copied its inputs) by then
    second = httpclient.InferenceServerClient(env.target.http)
    second.unregister_system_shared_memory()
    second.unregister_system_shared_memory("input0_data")
    thread.join(30)
    assert "r" in done
    assert env.count() == 0
    _refused(env.infer, NOT_FOUND, "input0_data")


def test_shm_truncated_after_registration(env):
    """A region whose object is truncated after registration is refused, not
    read (SERVING.md: "a truncated object gets a 400"); tritonserver 2.51
    died on it (SIGBUS: every model gone)."""
    env.configure()
    os.truncate("/dev/shm" + env.key("input0_data"), 0)
    _refused(env.infer, BAD, "truncated")
    assert requests.get(env.target.url("/v2/health/live"), timeout=10).status_code == 200


def test_shm_inputs_past_the_request_limit(env):
    """Inputs read from shared memory add up to at most `--max-request-bytes`
    (docs/RELIABILITY.md): a 64 MiB + 4 byte FP32 input is 413 /
    RESOURCE_EXHAUSTED before anything is copied (Triton has no such limit)."""
    n = 64 * MiB + 4
    env.create("big", n)
    env.register("big", n)
    t = env.mod.InferInput("INPUT0", [n // 4], "FP32")
    t.set_shared_memory("big", n)
    _refused(lambda: env.client.infer("onnx_nobatch_zero_1_float32", [t]), ("413", "StatusCode.RESOURCE_EXHAUSTED"),
             "--max-request-bytes")


def test_shm_output_region_with_binary_data_or_classification(server):
    """Triton's HTTP frontend refuses an output that asks for both a region
    and `binary_data: true`, or a region and `classification` (tritonclient
    refuses the second itself, and clears binary_data for a region).
    tritonserver 2.51: 400 "Output can't set both 'shared_memory_region' and
    'binary_data'" (and 'classification'). anemone: 200, the FP32 data (or
    the classification strings as BYTES) written to the region."""
    env = Shm(server, "http")
    try:
        env.create("out", 4096)
        env.register("out", 4096)
        for extra in ({"binary_data": True}, {"classification": 1}):
            params = dict(shared_memory_region="out", shared_memory_byte_size=4096, **extra)
            r = server.post("python_nobatch_zero_1_float32", dict(OUT_BODY, outputs=[{"name": "OUTPUT0",
                                                                                     "parameters": params}]))
            assert r.status_code == 400 and "shared_memory_region" in _error(r), (extra, r.text)
    finally:
        env.close()


def test_shm_bytes_with_nul(env):
    """BYTES in shared memory are in the binary form (SERVING.md): the QA's
    nullchar string through python_string from and to regions."""
    from tritonclient.utils import serialize_byte_tensor
    value = np.array([b"abc\0def"], dtype=object)
    data = serialize_byte_tensor(value).item()
    for name in ("s_in", "s_out"):
        env.create(name, 64)
        env.register(name, 64)
    shm.set_shared_memory_region(env.handles["s_in"], [serialize_byte_tensor(value)])
    t = env.mod.InferInput("INPUT0", [1], "BYTES")
    t.set_shared_memory("s_in", len(data))
    out = env.mod.InferRequestedOutput("OUTPUT0")
    out.set_shared_memory("s_out", 64)
    env.client.infer("python_string", [t], outputs=[out])
    got = shm.get_contents_as_numpy(env.handles["s_out"], np.object_, [1])
    assert got.tolist() == [b"abc\0def"]


# ---------------------------------------------------------------- qa/L0_string_io (what test_triton_qa_protocol.py leaves out)

# string_client_test.py _test_unicode_bytes_dtype's in0: 8 serialized protobufs, not UTF-8.
QA_ROWS = [
    b"\nF\n'\n\x01a\x12\"\x1a \n\x1e\xfa\x03\x94\x01\x0f\xd7\x02\xf1\x05\xdf\x01\x82\x03\xb5\x05\xc1\x07\xba\x06\xff\x06"
    b"\xc7\x07L\xf5\x03\xe2\x07\xa9\x03\n\x0c\n\x01b\x12\x07\x1a\x05\n\x03\x89\xcc=\n\r\n\x01c\x12\x08\x12\x06\n\x04\xdf\\\xcb\xbf",
    b"\n:\n\x1a\n\x01a\x12\x15\x1a\x13\n\x11*\xe3\x05\xc5\x06\xda\x07\xcb\x06~\xb1\x05\xb3\x01\xa9\x02\x15\n\r\n\x01b\x12"
    b"\x08\x1a\x06\n\x04\xf6\xa2\xc5\x01\n\r\n\x01c\x12\x08\x12\x06\n\x04\xbb[\n\xbf",
    b"\nL\n-\n\x01a\x12(\x1a&\n$\x87\x07\xce\x01\xe7\x06\xee\x04\xe1\x03\xf1\x03\xd7\x07\xbe\x02\xb8\x05\xe0\x05\xe4\x01"
    b"\x88\x06\xb6\x03\xb9\x05\x83\x06\xf8\x04\xe2\x04\xf4\x06\n\x0c\n\x01b\x12\x07\x1a\x05\n\x03\x89\xcc=\n\r\n\x01c\x12"
    b"\x08\x12\x06\n\x04\xbc\x99+@",
    b"\n2\n\x12\n\x01a\x12\r\x1a\x0b\n\t\x99\x02\xde\x04\x9f\x04\xc5\x053\n\r\n\x01b\x12\x08\x1a\x06\n\x04\xf6\xa2\xc5"
    b"\x01\n\r\n\x01c\x12\x08\x12\x06\n\x04\x12\x07\x83\xbe",
    b"\nJ\n\r\n\x01b\x12\x08\x1a\x06\n\x04\x9b\x94\xad\x04\n\r\n\x01c\x12\x08\x12\x06\n\x04\xc3\x8a\x08\xbf\n*\n\x01a"
    b"\x12%\x1a#\n!\x9c\x02\xb2\x02\xcd\x02\x9d\x07\x8d\x01\xb6\x05a\xf1\x01\xf0\x05\xdb\x02\xac\x04\xbd\x05\xe0\x04\xd2"
    b"\x06\xaf\x02\xa8\x01\x8b\x04",
    b"\n3\n\x13\n\x01a\x12\x0e\x1a\x0c\n\n<\xe2\x05\x8a\x01\xb3\x07?\xfd\x01\n\r\n\x01b\x12\x08\x1a\x06\n\x04\xf6\xa2"
    b"\xc5\x01\n\r\n\x01c\x12\x08\x12\x06\n\x04\x1b\x931\xbf\x00\x00",
    b"\n&\n\x07\n\x01a\x12\x02\x1a\x00\n\x0c\n\x01b\x12\x07\x1a\x05\n\x03\x89\xcc=\n\r\n\x01c\x12\x08\x12\x06\n\x04"
    b"{\xbc\x0e>\x00\x00\x00",
    b"\nF\n'\n\x01a\x12\"\x1a \n\x1e\x97\x01\x93\x02\x9e\x01\xac\x06\xff\x01\xd8\x05\xe1\x07\xd8\x04g]\x9a\x05\xff\x06"
    b"\xde\x07\x8f\x04\x97\x04\xda\x03\n\x0c\n\x01b\x12\x07\x1a\x05\n\x03\x9a\xb7I\n\r\n\x01c\x12\x08\x12\x06\n\x04\xfb"
    b"\x87\x83\xbf",
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_string_io_all_eight_rows(server, protocol):
    """string_client_test.py _test_unicode_bytes_dtype with the QA's own
    string_identity (dims [8], test.sh's sed): all 8 rows of bytes that are
    not UTF-8 round-trip over gRPC and binary HTTP, as np.array_equal sees
    them (|S78 drops the rows' trailing NULs, as numpy does). tritonserver
    2.51: equal."""
    mod, client = server.client(protocol)
    for dtype in ("|S78", np.object_, np.bytes_):
        data = np.array(QA_ROWS, dtype=dtype)
        out = _infer(mod, client, "string_identity", [data], datatype="BYTES")
        assert np.array_equal(data.astype(np.bytes_), out.as_numpy("OUTPUT0").astype(np.bytes_)), dtype


def test_string_io_shape_must_be_eight(server):
    """string_identity's dims [8]: 7 or 9 strings are refused naming INPUT0
    (400 / INVALID_ARGUMENT). tritonserver 2.51: 400 "unexpected shape for
    input 'INPUT0' for model 'string_identity'. Expected [8], got [7]"."""
    for n in (7, 9):
        for protocol in ("http", "grpc"):
            mod, client = server.client(protocol)
            _refused(lambda: _infer(mod, client, "string_identity", [np.array([b"x"] * n, dtype=object)]),
                     BAD, "INPUT0")


def test_string_io_onnx_zero_1_object(server):
    """test.sh copies onnx_zero_1_object (an ONNX string identity, on ONNX
    Runtime here) beside string_identity: _test_str_dtype's strings of digits
    and UTF-8 text round-trip through every client and binary/JSON mix."""
    data = np.array([[str(i) for i in range(10000, 10006)] + ["\u00e9\u6f22", ""]], dtype=object)
    expected = [[v.encode() for v in data[0]]]
    for protocol, binary_in, binary_out in (("grpc", True, True), ("http", True, True), ("http", False, True),
                                            ("http", True, False), ("http", False, False)):
        mod, client = server.client(protocol)
        outputs = [mod.InferRequestedOutput("OUTPUT0", binary_data=binary_out)] if mod is httpclient else None
        out = _infer(mod, client, "onnx_zero_1_object", [data], binary=binary_in, outputs=outputs).as_numpy("OUTPUT0")
        got = [[v.encode() if isinstance(v, str) else v for v in row] for row in out.tolist()]
        assert got == expected, (protocol, binary_in, binary_out)


@pytest.mark.parametrize("model", ["onnx_zero_1_object", "onnx_nobatch_zero_1_object"])
def test_string_io_not_utf8_on_onnx_engines(server, model):
    """The QA's rows on ONNX string identities are refused, 400 saying UTF-8:
    ONNX Runtime strings must be UTF-8 (docs/BACKENDS.md); tract's too (its
    strings are Rust Strings; BACKENDS.md says only that tract "takes NUL
    bytes")."""
    data = np.array(QA_ROWS[:2], dtype=object)
    mod, client = server.client("grpc")
    data = data.reshape(1, 2) if model == "onnx_zero_1_object" else data
    _refused(lambda: _infer(mod, client, model, [data]), BAD, "UTF-8")
