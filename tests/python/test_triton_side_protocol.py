"""The edges of the KServe v2 protocol, asked of anemone as they were asked of
tritonserver 2.51 side by side (the same repository of Python models on
both, the same requests over HTTP JSON, HTTP binary tensors and gRPC).

Each test's docstring says what tritonserver 2.51 answered to the same
request (read off a run of both servers on 2026-12-05; CI has no Triton, so
the tests run against anemone only). Where the two agree, the test checks
anemone gives that answer; where they differ and docs/FROM_TRITON.md or
docs/SERVING.md document anemone's answer (or anemone answers a client's
mistake with 400 where Triton answers 500 or corrupts the value), the test
checks anemone's; where they differ and the docs are silent, the test is
marked xfail(strict=True, reason="DEFECT: ...").

Outputs are compared with numpy arrays built here, never with what the
model computed.

The models' model.py start with Triton's peer boilerplate (TPEER_SP), so the
same repository serves on tritonserver: `build_repository(DIR)` writes it.
"""
import json
import os
import struct
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from google.protobuf import json_format
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

# ---------------------------------------------------------------- repository

HEADER = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
'''

# Gives each input back under the output of the same position.
IDENTITY = HEADER + '''

class TritonPythonModel:
    def initialize(self, args):
        import json
        cfg = json.loads(args["model_config"])
        self.names = [(i["name"], o["name"]) for i, o in zip(cfg["input"], cfg["output"])]

    def execute(self, requests):
        out = []
        for r in requests:
            ts = []
            for i, o in self.names:
                t = pb_utils.get_input_tensor_by_name(r, i)
                if t is not None:
                    ts.append(pb_utils.Tensor(o, t.as_numpy()))
            out.append(pb_utils.InferenceResponse(ts))
        return out
'''

PAIR = HEADER + '''

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "A").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "B").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SUM", (a + b.astype(np.float32)).astype(np.float32)),
                pb_utils.Tensor("DIFF", (a - b.astype(np.float32)).astype(np.float32))]))
        return out
'''

# Model name suffix -> (KServe datatype, config data_type, numpy dtype).
DTYPES = {
    "fp32": ("FP32", "FP32", np.float32),
    "fp16": ("FP16", "FP16", np.float16),
    "int8": ("INT8", "INT8", np.int8),
    "int64": ("INT64", "INT64", np.int64),
    "uint8": ("UINT8", "UINT8", np.uint8),
    "bool": ("BOOL", "BOOL", np.bool_),
    "bytes": ("BYTES", "STRING", np.object_),
}


def _config(name, dt, mbs, dims="[ -1 ]", extra=""):
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: {mbs}\n'
            f'input [ {{ name: "IN" data_type: TYPE_{dt} dims: {dims} {extra} }} ]\n'
            f'output [ {{ name: "OUT" data_type: TYPE_{dt} dims: {dims} {extra} }} ]\n')


def build_repository(repo: Path) -> Path:
    """Identity models per datatype without a batch dimension (`nb_<dtype>`,
    dims [-1]), two with `max_batch_size: 4` (`b_fp32`, `b_bytes`), fixed
    dims (`fixed_fp32`, [2, 3]), a reshape (`reshape_fp32`, [2, 2] on the wire,
    [4] in the model) and a two-input, two-output model (`pair`)."""
    models = [(f"nb_{k}", _config(f"nb_{k}", dt, 0), IDENTITY) for k, (_, dt, _) in DTYPES.items()]
    models += [
        ("b_fp32", _config("b_fp32", "FP32", 4), IDENTITY),
        ("b_bytes", _config("b_bytes", "STRING", 4), IDENTITY),
        ("fixed_fp32", _config("fixed_fp32", "FP32", 0, "[ 2, 3 ]"), IDENTITY),
        ("reshape_fp32", _config("reshape_fp32", "FP32", 0, "[ 2, 2 ]", "reshape { shape: [ 4 ] }"), IDENTITY),
        ("pair", 'name: "pair"\nbackend: "python"\nmax_batch_size: 0\n'
                 'input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 4 ] } ]\n'
                 'output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "DIFF" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
         PAIR),
    ]
    for name, config, source in models:
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(source)
    return repo


MODELS = [f"nb_{k}" for k in DTYPES] + ["b_fp32", "b_bytes", "fixed_fp32", "reshape_fp32", "pair"]


class Served:
    def __init__(self, addresses):
        self.http = addresses["HTTP"]
        self.grpc = addresses["gRPC"]
        self.url = f"http://{self.http}"
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.grpc))
        self.hc = httpclient.InferenceServerClient(self.http)
        self.gc = grpcclient.InferenceServerClient(self.grpc)

    def post(self, path, body, headers=None):
        h = {"Accept-Encoding": "identity", "Content-Type": "application/json"}
        h.update(headers or {})
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return requests.post(self.url + path, data=body, headers=h, timeout=30)

    def get(self, path):
        return requests.get(self.url + path, headers={"Accept-Encoding": "identity"}, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = build_repository(tmp_path_factory.mktemp("triton_side"))
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*",
                                  "--python", sys.executable)
    try:
        wait_ready(addresses["HTTP"])
        s = Served(addresses)
        deadline = time.time() + 120
        while not all(s.hc.is_model_ready(m) for m in MODELS):
            assert time.time() < deadline, "models not ready within 120 s"
            time.sleep(0.2)
        yield s
    finally:
        stop_serve(proc)


def I(name, shape, datatype, data=None, **kw):
    d = {"name": name, "shape": shape, "datatype": datatype}
    if data is not None:
        d["data"] = data
    d.update(kw)
    return d


def infer_body(inputs, **extra):
    body = {"inputs": inputs}
    body.update(extra)
    return body


def binary_body(inputs, blobs, outputs=None, **extra):
    head = {"inputs": inputs}
    if outputs is not None:
        head["outputs"] = outputs
    head.update(extra)
    js = json.dumps(head).encode()
    return js + b"".join(blobs), {"Inference-Header-Content-Length": str(len(js)),
                                  "Content-Type": "application/octet-stream"}


def split(r):
    """(JSON header, trailing binary bytes) of an inference answer."""
    n = r.headers.get("Inference-Header-Content-Length")
    if n is None:
        return r.json(), b""
    n = int(n)
    return json.loads(r.content[:n]), r.content[n:]


def error(r):
    return r.json()["error"]


def bstr(*items):
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def strict_json(text):
    """json.loads that refuses NaN/Infinity literals, as JSON parsers outside Python do."""
    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    return json.loads(text, parse_constant=refuse)


def assert_serves_on(s):
    r = s.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32", [1.5, -2])]))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [1.5, -2.0]


def grpc_request(model, inputs, raw=None, outputs=(), id=None):
    """A raw gRPC ModelInferRequest: inputs are (name, datatype, shape,
    (typed field, values) or None)."""
    r = service_pb2.ModelInferRequest(model_name=model)
    if id is not None:
        r.id = id
    for name, dt, shape, typed in inputs:
        t = r.inputs.add()
        t.name, t.datatype = name, dt
        t.shape.extend(shape)
        if typed:
            getattr(t.contents, typed[0]).extend(typed[1])
    if raw is not None:
        r.raw_input_contents.extend(raw)
    for o in outputs:
        r.outputs.add().name = o
    return r


def grpc_error(s, request):
    with pytest.raises(grpc.RpcError) as e:
        s.stub.ModelInfer(request, timeout=30)
    return e.value.code(), e.value.details()


# ---------------------------------------------------------------- datatypes

SAMPLES = {
    "fp32": np.array([1.5, -2.25, 0.0, 3.4e38], np.float32),
    "fp16": np.array([1.5, -2.0, 65504.0, 0.0999755859375], np.float16),
    "int8": np.array([-128, 0, 5, 127], np.int8),
    "int64": np.array([2**63 - 1, -2**63, 2**53 + 1, 0], np.int64),
    "uint8": np.array([0, 1, 200, 255], np.uint8),
    "bool": np.array([True, False, False, True]),
    "bytes": np.array([b"", b"a\x00b", "h\u00e9".encode(), b"x"], np.object_),
}


@pytest.mark.parametrize("protocol", ["http-json", "http-binary", "grpc"])
@pytest.mark.parametrize("kind", list(SAMPLES))
def test_each_datatype_round_trips_through_tritonclient(served, kind, protocol):
    """Every datatype through an identity model, with tritonclient, over HTTP
    JSON, HTTP binary and gRPC: the same values, dtype and shape come back
    (BYTES with an empty string, an embedded NUL and UTF-8 too).

    tritonserver 2.51 answers the same, except FP16 over HTTP JSON: it
    refuses FP16 in a JSON request with 400 "receiving FP16 data via JSON is
    not supported. Please use the binary data format for input IN" (and FP16
    JSON outputs with 400 "sending FP16 data via JSON is not supported");
    anemone takes and writes FP16 as JSON numbers (SERVING.md: "Inference
    supports every KServe v2 datatype")."""
    x = SAMPLES[kind]
    datatype = DTYPES[kind][0]
    model = f"nb_{kind}"
    if protocol == "grpc":
        i = grpcclient.InferInput("IN", list(x.shape), datatype)
        i.set_data_from_numpy(x)
        result = served.gc.infer(model, [i])
    else:
        binary = protocol == "http-binary"
        i = httpclient.InferInput("IN", list(x.shape), datatype)
        i.set_data_from_numpy(x, binary_data=binary)
        result = served.hc.infer(model, [i], outputs=[httpclient.InferRequestedOutput("OUT", binary_data=binary)])
    got = result.as_numpy("OUT")
    assert got.shape == x.shape
    if kind == "bytes":
        # tritonclient gives JSON strings as str, binary ones as bytes.
        assert [v.encode() if isinstance(v, str) else bytes(v) for v in got.ravel()] == list(x)
    else:
        assert got.dtype == x.dtype, (got.dtype, x.dtype)
        np.testing.assert_array_equal(got, x)


def test_grpc_typed_contents_give_the_same_tensors_as_raw_contents(served):
    """gRPC `contents.*` (typed) and `raw_input_contents` carry the same
    tensors; answers are always `raw_output_contents`. tritonserver 2.51:
    the same bytes for both, for every case here (INT8 through
    int_contents, UINT8 through uint_contents, INT64, BOOL, BYTES with
    b"", b"\\xff\\xfe" and b"a\\x00b")."""
    cases = [
        ("nb_fp32", "FP32", "fp32_contents", [1.5, -2.0, 3.0], np.float32),
        ("nb_int8", "INT8", "int_contents", [-128, 5, 127], np.int8),
        ("nb_uint8", "UINT8", "uint_contents", [0, 255, 7], np.uint8),
        ("nb_int64", "INT64", "int64_contents", [2**63 - 1, -2**63, 1], np.int64),
        ("nb_bool", "BOOL", "bool_contents", [True, False, True], np.bool_),
    ]
    for model, dt, field, values, npdt in cases:
        want = np.array(values, npdt)
        typed = served.stub.ModelInfer(grpc_request(model, [("IN", dt, [3], (field, values))]))
        raw = served.stub.ModelInfer(grpc_request(model, [("IN", dt, [3], None)], raw=[want.tobytes()]))
        for answer in (typed, raw):
            assert answer.outputs[0].datatype == dt and list(answer.outputs[0].shape) == [3]
            np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], npdt), want, err_msg=model)
    items = [b"", b"\xff\xfe", b"a\x00b", "\u00e9".encode()]
    typed = served.stub.ModelInfer(grpc_request("nb_bytes", [("IN", "BYTES", [4], ("bytes_contents", items))]))
    raw = served.stub.ModelInfer(grpc_request("nb_bytes", [("IN", "BYTES", [4], None)], raw=[bstr(*items)]))
    assert typed.raw_output_contents[0] == raw.raw_output_contents[0] == bstr(*items)


def test_fp16_has_no_typed_grpc_field_and_is_refused_saying_so(served):
    """FP16 has no typed `contents` field: sent as fp32_contents it is
    INVALID_ARGUMENT. tritonserver 2.51: INVALID_ARGUMENT "unexpected
    explicit tensor data for input tensor 'IN' for model 'nb_fp16' of type
    'FP32', expected datatype 'FP16'"."""
    code, details = grpc_error(served, grpc_request("nb_fp16", [("IN", "FP16", [2], ("fp32_contents", [1, 2]))]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "FP16" in details and "raw_input_contents" in details


def test_non_utf8_bytes_survive_binary_and_grpc_and_json_answers_replace_them(served):
    """BYTES that are not UTF-8 (b"\\xff\\xfe"), empty, or with a NUL go
    through binary tensors and gRPC unchanged; asked for as JSON output, the
    bytes that are not UTF-8 become U+FFFD, each. tritonserver 2.51 answers
    the same bytes, and the same JSON ("\\ufffd\\ufffd", "", "a\\u0000b")."""
    items = [b"\xff\xfe", b"", b"a\x00b"]
    blob = bstr(*items)
    for binary_out in (True, False):
        body, headers = binary_body([I("IN", [3], "BYTES", parameters={"binary_data_size": len(blob)})], [blob],
                                    outputs=[{"name": "OUT", "parameters": {"binary_data": binary_out}}])
        r = served.post("/v2/models/nb_bytes/infer", body, headers)
        assert r.status_code == 200, r.text
        head, tail = split(r)
        out = head["outputs"][0]
        assert (out["datatype"], out["shape"]) == ("BYTES", [3])
        if binary_out:
            assert out["parameters"]["binary_data_size"] == len(blob) and tail == blob
        else:
            assert out["data"] == ["\ufffd\ufffd", "", "a\x00b"]
    answer = served.stub.ModelInfer(grpc_request("nb_bytes", [("IN", "BYTES", [3], None)], raw=[blob]))
    assert answer.raw_output_contents[0] == blob


def test_bytes_shape_and_element_count_must_agree(served):
    """A BYTES tensor of shape [3] with 2 elements: 400 / INVALID_ARGUMENT
    over JSON, binary and gRPC (raw and typed); an element claiming more
    bytes than remain too. tritonserver 2.51: 400 "expected 3 string
    elements for inference input 'IN' for model 'nb_bytes', got 2" (gRPC
    INVALID_ARGUMENT, and "incomplete string data ... expecting string of
    length 9 but only 2 bytes available")."""
    r = served.post("/v2/models/nb_bytes/infer", infer_body([I("IN", [3], "BYTES", ["a", "b"])]))
    assert r.status_code == 400 and "3" in error(r) and "2" in error(r), r.text
    blob = bstr(b"a", b"b")
    body, headers = binary_body([I("IN", [3], "BYTES", parameters={"binary_data_size": len(blob)})], [blob])
    r = served.post("/v2/models/nb_bytes/infer", body, headers)
    assert r.status_code == 400 and "3" in error(r), r.text
    for req in (grpc_request("nb_bytes", [("IN", "BYTES", [3], None)], raw=[blob]),
                grpc_request("nb_bytes", [("IN", "BYTES", [3], ("bytes_contents", [b"a"]))]),
                grpc_request("nb_bytes", [("IN", "BYTES", [1], None)], raw=[struct.pack("<I", 9) + b"ab"])):
        code, details = grpc_error(served, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "'IN'" in details, details
    assert_serves_on(served)


# ---------------------------------------------------------------- JSON values


def test_bool_in_json_is_true_and_false_only(served):
    """BOOL in JSON: true/false come back as true/false; 1/0 or "true" are
    400 naming the input. tritonserver 2.51: the same answer to true/false;
    500 "Unable to parse 'data': attempt to access JSON non-boolean as
    boolean" to the others (FROM_TRITON.md: anemone answers a client's
    mistake with 400 where Triton often answers 500)."""
    r = served.post("/v2/models/nb_bool/infer", infer_body([I("IN", [3], "BOOL", [True, False, True])]))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0] == {"name": "OUT", "datatype": "BOOL", "shape": [3], "data": [True, False, True]}
    for bad in ([1, 0], ["true", "false"]):
        r = served.post("/v2/models/nb_bool/infer", infer_body([I("IN", [2], "BOOL", bad)]))
        assert r.status_code == 400 and "'IN'" in error(r) and "BOOL" in error(r), r.text


def test_binary_bool_bytes_other_than_0_and_1_come_back_as_true(served):
    """A binary BOOL byte 2 is true. tritonserver 2.51 passes the byte
    through (answers 0x02, over HTTP binary and gRPC raw), anemone answers
    0x01; both are true to numpy and tritonclient (np.bool_ of a non-zero
    byte), so this is no defect."""
    body, headers = binary_body([I("IN", [3], "BOOL", parameters={"binary_data_size": 3})], [bytes([1, 0, 2])],
                                outputs=[{"name": "OUT", "parameters": {"binary_data": False}}])
    r = served.post("/v2/models/nb_bool/infer", body, headers)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [True, False, True], r.text


def test_int64_extremes_in_json_are_exact_and_past_them_is_400(served):
    """INT64 2**63-1, -2**63 and 2**53+1 (not a double) come back exactly in
    JSON, as from tritonserver 2.51; 2**63 is 400 (Triton: 500 "attempt to
    access JSON non-signed-integer as signed-integer")."""
    values = [2**63 - 1, -2**63, 2**53 + 1]
    r = served.post("/v2/models/nb_int64/infer", infer_body([I("IN", [3], "INT64", values)]))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == values, r.text
    r = served.post("/v2/models/nb_int64/infer", infer_body([I("IN", [1], "INT64", [2**63])]))
    assert r.status_code == 400 and "INT64" in error(r), r.text


@pytest.mark.parametrize("model,datatype,values", [
    ("nb_int8", "INT8", [300, -1]), ("nb_int8", "INT8", [1.5, 2]), ("nb_uint8", "UINT8", [-1, 255]),
    ("nb_fp32", "FP32", ["1", "2"]), ("nb_fp32", "FP32", [True, False]), ("nb_bytes", "BYTES", [1, 2]),
])
def test_json_values_the_datatype_cannot_hold_are_400(served, model, datatype, values):
    """A JSON value the input's datatype cannot hold is 400 naming the input,
    value and datatype. tritonserver 2.51 answers 500 "Unable to parse
    'data': ..." to all of these but one: INT8 300 it takes and wraps
    silently to 44 (over gRPC int_contents too, and UINT8 256 to 0), where
    anemone refuses (400 / INVALID_ARGUMENT "out of range")."""
    r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", [2], datatype, values)]))
    assert r.status_code == 400, r.text
    assert "'IN'" in error(r) and datatype in error(r)


def test_typed_grpc_values_out_of_range_are_invalid_argument(served):
    """gRPC int_contents 300 for INT8, uint_contents 256 for UINT8:
    INVALID_ARGUMENT. tritonserver 2.51 answers OK with the values wrapped
    (44 and 0)."""
    for model, dt, field, values in (("nb_int8", "INT8", "int_contents", [300, -1]),
                                     ("nb_uint8", "UINT8", "uint_contents", [256, 1])):
        code, details = grpc_error(served, grpc_request(model, [("IN", dt, [2], (field, values))]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "out of range" in details, details


def test_a_float_for_an_integer_input_is_refused_quoting_the_float(served):
    """`data: [5.0]` for INT8 and `[1e3]` for INT64 are refused (400 here,
    tritonserver 2.51: 500 "attempt to access JSON non-signed-integer as
    signed-integer"), but anemone's message says "value 0 (5) is not a
    valid INT8" and "(1000) is not a valid INT64": values any INT8/INT64
    holds. The message should show the float as sent (Scalar's Display in
    crates/anemone-server/src/tensor_json.rs writes an f64 with `{}`)."""
    for model, datatype, text, shown in (("nb_int8", "INT8", "5.0", "5.0"), ("nb_int64", "INT64", "1e3", "1000.0")):
        r = served.post(f"/v2/models/{model}/infer",
                        '{"inputs":[{"name":"IN","shape":[1],"datatype":"%s","data":[%s]}]}' % (datatype, text))
        assert r.status_code == 400
        assert shown in error(r), error(r)


def test_json_data_may_be_nested_as_the_shape(served):
    """`data` nested as the shape ([[1, 2], [3, 4]]; BYTES too) is taken as
    its flat form, as tritonserver 2.51 takes it."""
    r = served.post("/v2/models/b_fp32/infer", infer_body([I("IN", [2, 2], "FP32", [[1, 2], [3, 4]])]))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0], r.text
    r = served.post("/v2/models/b_bytes/infer", infer_body([I("IN", [2, 2], "BYTES", [["a", ""], ["\u0000", "d"]])]))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["a", "", "\u0000", "d"], r.text


def test_non_finite_floats_in_json_answers_are_valid_json_that_tritonclient_reads(served):
    """An FP32 output holding inf, -inf and NaN, asked for as JSON:
    tritonserver 2.51 writes the bare tokens `inf`, `-inf`, `nan` (not JSON:
    only lenient parsers such as Python's read them); anemone writes the
    strings "inf", "-inf", "nan", which strict JSON parsers read and
    tritonclient's as_numpy turns back into floats. (Not in the docs: see
    the report.) FP32 1e40 in a JSON request is inf on both."""
    x = np.array([np.inf, -np.inf, np.nan, 1.0], np.float32)
    body, headers = binary_body([I("IN", [4], "FP32", parameters={"binary_data_size": 16})], [x.tobytes()],
                                outputs=[{"name": "OUT", "parameters": {"binary_data": False}}])
    r = served.post("/v2/models/nb_fp32/infer", body, headers)
    assert r.status_code == 200
    assert strict_json(r.text)["outputs"][0]["data"] == ["inf", "-inf", "nan", 1.0]
    i = httpclient.InferInput("IN", [4], "FP32")
    i.set_data_from_numpy(x, binary_data=True)
    got = served.hc.infer("nb_fp32", [i], outputs=[httpclient.InferRequestedOutput("OUT", binary_data=False)])
    np.testing.assert_array_equal(got.as_numpy("OUT").astype(np.float32), x)
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32", [1e40, -1e40])]))
    assert r.status_code == 200 and strict_json(r.text)["outputs"][0]["data"] == ["inf", "-inf"]


# ---------------------------------------------------------------- mismatches


def test_a_wrong_datatype_is_400_naming_both(served):
    """FP64 or INT32 sent to an FP32 input: 400 / INVALID_ARGUMENT naming
    the input, the type sent and the type expected, over HTTP and gRPC (raw
    and typed). tritonserver 2.51: the same codes, "inference input 'IN'
    data-type is 'FP64', but model 'nb_fp32' expects 'FP32'"."""
    for dt, data in (("FP64", [1, 2]), ("INT32", [1, 2])):
        r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], dt, data)]))
        assert r.status_code == 400 and dt in error(r) and "FP32" in error(r) and "'IN'" in error(r), r.text
    for req in (grpc_request("nb_fp32", [("IN", "FP64", [2], None)], raw=[np.zeros(2, np.float64).tobytes()]),
                grpc_request("nb_fp32", [("IN", "INT32", [2], ("int_contents", [1, 2]))])):
        code, details = grpc_error(served, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "FP32" in details, details


def test_an_unknown_or_lowercase_datatype_is_400(served):
    """"FP8" and "fp32" are no KServe datatypes: 400. tritonserver 2.51:
    400 "invalid datatype for input IN" (gRPC: INVALID_ARGUMENT)."""
    for dt in ("FP8", "fp32"):
        r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], dt, [1, 2])]))
        assert r.status_code == 400 and dt in error(r), r.text
    code, _ = grpc_error(served, grpc_request("nb_fp32", [("IN", "FP8", [2], None)], raw=[b"\0\0"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_data_that_does_not_fill_its_shape_is_400(served):
    """`data` shorter or longer than the shape, raw bytes short of it,
    typed contents short of it: 400 / INVALID_ARGUMENT. tritonserver 2.51:
    500 "Unable to parse 'data': Shape does not match true shape of 'data'
    field" over HTTP JSON (FROM_TRITON.md: 400 where Triton answers 500),
    INVALID_ARGUMENT "input byte size mismatch ... Expected 12, got 8" over
    gRPC."""
    for shape, data in (([3], [1, 2]), ([1], [1, 2])):
        r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", shape, "FP32", data)]))
        assert r.status_code == 400 and "'IN'" in error(r), r.text
    for req in (grpc_request("nb_fp32", [("IN", "FP32", [3], None)], raw=[np.zeros(2, np.float32).tobytes()]),
                grpc_request("nb_fp32", [("IN", "FP32", [3], ("fp32_contents", [1, 2]))])):
        code, details = grpc_error(served, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "'IN'" in details, details


def test_shapes_unlike_the_config_are_400(served):
    """Another rank, a fixed dim of another size, the model's own reshaped
    shape, a batched model's input without its batch dimension: 400.
    tritonserver 2.51: 400 "unexpected shape for input 'IN' for model ...
    Expected [2,3], got [3,2]" for each."""
    for model, shape in (("nb_fp32", [1, 2]), ("fixed_fp32", [3, 2]), ("reshape_fp32", [4]), ("b_fp32", [4])):
        n = int(np.prod(shape))
        r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", shape, "FP32", list(range(n)))]))
        assert r.status_code == 400 and "'IN'" in error(r), (model, r.text)


def test_a_reshaped_model_takes_and_answers_its_dims(served):
    """`dims: [2, 2] reshape { shape: [4] }`: a [2, 2] request is answered
    [2, 2] with the same values, over HTTP and gRPC, and the metadata shows
    [2, 2], as tritonserver 2.51 answers."""
    x = np.arange(4, dtype=np.float32).reshape(2, 2) + 0.5
    r = served.post("/v2/models/reshape_fp32/infer", infer_body([I("IN", [2, 2], "FP32", x.ravel().tolist())]))
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 2]
    np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), x.ravel())
    answer = served.stub.ModelInfer(grpc_request("reshape_fp32", [("IN", "FP32", [2, 2], None)], raw=[x.tobytes()]))
    assert list(answer.outputs[0].shape) == [2, 2]
    np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], np.float32), x.ravel())
    meta = served.get("/v2/models/reshape_fp32").json()
    assert meta["inputs"][0]["shape"] == [2, 2] and meta["outputs"][0]["shape"] == [2, 2]


def test_missing_extra_and_repeated_inputs_are_400_naming_them(served):
    """pair without B, with an unknown C, with A twice: 400 /
    INVALID_ARGUMENT naming the input. tritonserver 2.51: 400 "expected 2
    inputs but got 1 inputs ... missing required input(s) ['B']", "expected
    2 inputs but got 3 inputs ... Got input(s) ['B','C','A']", "input 'A'
    already exists in request" (gRPC the same, INVALID_ARGUMENT)."""
    a = I("A", [4], "FP32", [1, 2, 3, 4])
    b = I("B", [4], "INT32", [1, 1, 1, 1])
    for inputs, name in (([a], "'B'"), ([a, b, I("C", [1], "FP32", [0])], "'C'"), ([a, a, b], "'A'")):
        r = served.post("/v2/models/pair/infer", infer_body(inputs))
        assert r.status_code == 400 and name in error(r), r.text
    code, details = grpc_error(served, grpc_request("pair", [("A", "FP32", [4], ("fp32_contents", [1, 2, 3, 4]))]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'B'" in details
    code, details = grpc_error(served, grpc_request("pair", [
        ("A", "FP32", [4], ("fp32_contents", [1, 2, 3, 4])), ("B", "INT32", [4], ("int_contents", [1, 1, 1, 1])),
        ("C", "FP32", [1], ("fp32_contents", [0]))]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'C'" in details
    r = served.post("/v2/models/nb_fp32/infer", {"inputs": []})
    assert r.status_code == 400 and "'IN'" in error(r)


def test_an_input_without_data_or_with_two_sources_is_400(served):
    """No `data` and no binary/shared-memory parameter, or `data` and
    `binary_data_size` both: 400. tritonserver 2.51: 400 "Input must set
    only one of the following fields: 'data', 'binary_data_size' in
    'parameters', 'shared_memory_region' in 'parameters'"."""
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32")]))
    assert r.status_code == 400 and "'IN'" in error(r)
    r = served.post("/v2/models/nb_fp32/infer",
                    infer_body([I("IN", [2], "FP32", [1, 2], parameters={"binary_data_size": 8})]))
    assert r.status_code == 400 and "binary_data_size" in error(r)


def test_batch_dimension_limits(served):
    """max_batch_size 4: 4 rows are answered; 5 rows, and 0 rows, are 400
    naming the input (gRPC INVALID_ARGUMENT). tritonserver 2.51: 400
    "inference request batch-size must be <= 4 for 'b_fp32'" for 5, and
    400 "input byte size mismatch ... Expected 4, got 0" for shape [0, 1]
    (an empty batch)."""
    x = np.arange(4, dtype=np.float32).reshape(4, 1)
    r = served.post("/v2/models/b_fp32/infer", infer_body([I("IN", [4, 1], "FP32", x.ravel().tolist())]))
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [4, 1]
    r = served.post("/v2/models/b_fp32/infer", infer_body([I("IN", [5, 1], "FP32", [1, 2, 3, 4, 5])]))
    assert r.status_code == 400 and "'IN'" in error(r) and "4" in error(r), r.text
    r = served.post("/v2/models/b_fp32/infer", infer_body([I("IN", [0, 1], "FP32", [])]))
    assert r.status_code == 400 and "'IN'" in error(r), r.text
    code, details = grpc_error(served, grpc_request("b_fp32", [("IN", "FP32", [5, 1], None)],
                                                     raw=[np.zeros(5, np.float32).tobytes()]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "4" in details


# ---------------------------------------------------------------- zero size and huge shapes


@pytest.mark.parametrize("model,shape,datatype", [
    ("nb_fp32", [0], "FP32"), ("nb_bytes", [0], "BYTES"), ("b_fp32", [1, 0], "FP32"), ("b_bytes", [1, 0], "BYTES"),
])
def test_zero_size_tensors_are_answered_empty_over_every_encoding(served, model, shape, datatype):
    """Shape [0] (no batch dimension) and [1, 0] (one row of nothing) are
    answered with the same shape and no values, over HTTP JSON, HTTP binary
    and gRPC raw, as tritonserver 2.51 answers them (compared: JSON for all
    four, binary for [0] FP32, gRPC for [0] and [1, 0] FP32 and [0] BYTES;
    typed gRPC without contents for [0] Triton refuses, "unable to find
    data for input tensor", where anemone answers). (To a binary output of
    0 bytes Triton sends plain JSON without Inference-Header-Content-Length;
    anemone sends the header, counting the whole body: tritonclient reads
    both.)"""
    r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", shape, datatype, [])]))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert (out["datatype"], out["shape"], out["data"]) == (datatype, shape, [])
    body, headers = binary_body([I("IN", shape, datatype, parameters={"binary_data_size": 0})], [],
                                outputs=[{"name": "OUT", "parameters": {"binary_data": True}}])
    r = served.post(f"/v2/models/{model}/infer", body, headers)
    assert r.status_code == 200, r.text
    head, tail = split(r)
    assert head["outputs"][0]["shape"] == shape and head["outputs"][0]["parameters"]["binary_data_size"] == 0
    assert tail == b""
    answer = served.stub.ModelInfer(grpc_request(model, [("IN", datatype, shape, None)], raw=[b""]))
    assert list(answer.outputs[0].shape) == shape and answer.raw_output_contents[0] == b""
    i = grpcclient.InferInput("IN", shape, datatype)
    i.set_data_from_numpy(np.zeros(shape, np.object_ if datatype == "BYTES" else np.float32))
    assert served.gc.infer(model, [i]).as_numpy("OUT").shape == tuple(shape)


@pytest.mark.parametrize("shape,words", [
    ([-1], "negative"), ([2**40], "1099511627776"), ([2**62, 2**62], "more elements than can be addressed"),
    ([2**31], "2147483648"),
])
def test_negative_and_huge_shapes_are_400_and_the_server_serves_on(served, shape, words):
    """A negative dimension is 400 (tritonserver 2.51: 500 "Unable to parse
    'shape'" over HTTP, INVALID_ARGUMENT "All input dimensions should be
    specified" over gRPC). A shape of 2**40 FP32 elements with one value in
    `data` is 400 here; tritonserver 2.51 *crashed* on it (the process
    died, taking every model down), so anemone's answer is no difference to
    keep; the other two huge shapes were not sent to Triton."""
    datatype = "BYTES" if shape == [2**31] else "FP32"
    model = "nb_bytes" if datatype == "BYTES" else "nb_fp32"
    r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", shape, datatype, ["a"] if datatype == "BYTES" else [1])]))
    assert r.status_code == 400 and words in error(r), r.text
    code, _ = grpc_error(served, grpc_request("nb_fp32", [("IN", "FP32", [-1], None)], raw=[b"\0\0\0\0"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert_serves_on(served)


# ---------------------------------------------------------------- id and outputs


def test_a_request_id_is_echoed_over_http_and_grpc(served):
    """`id` comes back in the answer, over HTTP JSON, HTTP binary and gRPC;
    a NUL inside it too (tritonserver 2.51 cuts it at the NUL). A number as
    `id` is 400 (Triton: 500 "Unable to parse 'id'")."""
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [1], "FP32", [1])], id="req-7"))
    assert r.status_code == 200 and r.json()["id"] == "req-7"
    body, headers = binary_body([I("IN", [1], "FP32", parameters={"binary_data_size": 4})], [b"\0\0\x80?"],
                                outputs=[{"name": "OUT", "parameters": {"binary_data": True}}], id="bin-\u00e9")
    r = served.post("/v2/models/nb_fp32/infer", body, headers)
    assert r.status_code == 200 and split(r)[0]["id"] == "bin-\u00e9"
    answer = served.stub.ModelInfer(grpc_request("nb_fp32", [("IN", "FP32", [1], None)], raw=[b"\0\0\x80?"], id="g-1"))
    assert answer.id == "g-1"
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [1], "FP32", [1])], id=7))
    assert r.status_code == 400 and "string" in error(r)


def test_an_empty_request_id_is_left_out_of_the_answer(served):
    """`"id": ""` in the request: tritonserver 2.51 answers without an `id`
    key (as without one); anemone answers `"id": ""`. SERVING.md says only
    "`id` echoed back"."""
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [1], "FP32", [1])], id=""))
    assert r.status_code == 200
    assert "id" not in r.json(), r.json()


def test_requested_outputs_subset_and_unknown(served):
    """Naming DIFF alone answers DIFF alone; an empty `outputs` list answers
    every output; an unknown output is 400 / INVALID_ARGUMENT naming it.
    tritonserver 2.51: the same, with "unexpected inference output 'NOPE'
    for model 'pair'"."""
    a, b = np.array([1, 2, 3, 4], np.float32), np.array([1, 1, 1, 1], np.int32)
    inputs = [I("A", [4], "FP32", a.tolist()), I("B", [4], "INT32", b.tolist())]
    r = served.post("/v2/models/pair/infer", infer_body(inputs, outputs=[{"name": "DIFF"}]))
    assert r.status_code == 200
    assert [(o["name"], o["data"]) for o in r.json()["outputs"]] == [("DIFF", (a - b).tolist())]
    r = served.post("/v2/models/pair/infer", infer_body(inputs, outputs=[]))
    assert [(o["name"], o["data"]) for o in r.json()["outputs"]] == [("SUM", (a + b).tolist()), ("DIFF", (a - b).tolist())]
    r = served.post("/v2/models/pair/infer", infer_body(inputs, outputs=[{"name": "NOPE"}]))
    assert r.status_code == 400 and "NOPE" in error(r)
    code, details = grpc_error(served, grpc_request("pair", [("A", "FP32", [4], None), ("B", "INT32", [4], None)],
                                                     raw=[a.tobytes(), b.tobytes()], outputs=["NOPE"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "NOPE" in details


def test_an_output_requested_twice_is_answered_once(served):
    """`outputs: [SUM, SUM]`: tritonserver 2.51 answers 200 with SUM once,
    over HTTP and gRPC. anemone refuses with 400 / INVALID_ARGUMENT "output
    'SUM' is requested more than once" (crates/anemone-runtime/src/
    validation.rs: select_outputs), which no doc mentions."""
    a, b = np.array([1, 2, 3, 4], np.float32), np.array([1, 1, 1, 1], np.int32)
    inputs = [I("A", [4], "FP32", a.tolist()), I("B", [4], "INT32", b.tolist())]
    r = served.post("/v2/models/pair/infer", infer_body(inputs, outputs=[{"name": "SUM"}, {"name": "SUM"}]))
    assert r.status_code == 200, r.text
    assert [(o["name"], o["data"]) for o in r.json()["outputs"]] == [("SUM", (a + b).tolist())]


def test_a_grpc_stream_answers_data_mistakes_with_error_messages_and_goes_on(served):
    """ModelStreamInfer with a good request, a wrong datatype, a missing
    input, a BYTES tensor short of its shape, and a zero-size tensor: the
    three mistakes are answered with `error_message` (and the request's id)
    in their turn, the stream goes on, the good ones carry
    `triton_final_response: true`. tritonserver 2.51 answers the same
    sequence (its messages prefixed "[request id: b]")."""
    reqs = [grpc_request("nb_fp32", [("IN", "FP32", [2], None)], raw=[np.array([1, 2], np.float32).tobytes()], id="a"),
            grpc_request("nb_fp32", [("IN", "FP64", [2], None)], raw=[np.zeros(2).tobytes()], id="b"),
            grpc_request("pair", [("A", "FP32", [4], None)], raw=[np.zeros(4, np.float32).tobytes()], id="c"),
            grpc_request("nb_bytes", [("IN", "BYTES", [2], None)], raw=[bstr(b"a")], id="d"),
            grpc_request("nb_fp32", [("IN", "FP32", [0], None)], raw=[b""], id="e")]
    got = [(r.infer_response.id, r.error_message, [list(o.shape) for o in r.infer_response.outputs],
            r.infer_response.parameters["triton_final_response"].bool_param if not r.error_message else None)
           for r in served.stub.ModelStreamInfer(iter(reqs), timeout=30)]
    assert [g[0] for g in got] == ["a", "b", "c", "d", "e"]
    assert got[0][1:] == ("", [[2]], True) and got[4][1:] == ("", [[0]], True)
    assert "FP64" in got[1][1] and "'B'" in got[2][1] and "'IN'" in got[3][1]
    assert all(g[2] == [] for g in got[1:4])


# ---------------------------------------------------------------- bodies and headers


@pytest.mark.parametrize("body", ['{"inputs": [', "", "[1,2]", "{}", '{"inputs":[{"shape":[2],"datatype":"FP32","data":[1,2]}]}',
                                  '{"inputs":[{"name":"IN","shape":[2.0],"datatype":"FP32","data":[1,2]}]}',
                                  '{"inputs":[{"name":"IN","shape":[2],"datatype":"FP32","data":[1,2]}]}xx'])
def test_malformed_json_bodies_are_400(served, body):
    """Cut JSON, an empty body, an array, no `inputs`, an input without a
    name, a float dimension, trailing bytes: 400. tritonserver 2.51 answers
    500 ("failed to parse the request JSON buffer", "Unable to parse
    'inputs'") to each, and, oddly, 200 with an empty FP32 output to an
    empty body."""
    r = served.post("/v2/models/nb_fp32/infer", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert_serves_on(served)


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "image/png", None])
def test_the_content_type_of_an_inference_body_is_not_read(served, content_type):
    """A JSON body is read as JSON whatever its Content-Type says, and a
    binary body by its Inference-Header-Content-Length alone (lower-case
    header name, chunked upload too), as tritonserver 2.51 reads them."""
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(served.url + "/v2/models/nb_fp32/infer", data=json.dumps(infer_body([I("IN", [2], "FP32", [1, 2])])),
                      headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1.0, 2.0], r.text
    body, _ = binary_body([I("IN", [2], "FP32", parameters={"binary_data_size": 8})],
                          [np.array([3, 4], np.float32).tobytes()])
    hl = str(body.index(b"}]}") + 3)
    h = {"inference-header-content-length": hl}
    h.update(headers)
    r = requests.post(served.url + "/v2/models/nb_fp32/infer", data=iter([body[:7], body[7:]]), headers=h, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [3.0, 4.0], r.text


def test_binary_data_output_and_per_output_binary_data(served):
    """`binary_data_output: true` answers every output as binary after the
    JSON (Inference-Header-Content-Length, `binary_data_size`,
    application/octet-stream); an output's `binary_data: false` wins over
    it; values that are not booleans are 400. tritonserver 2.51: the same
    answers, and 500 "Unable to parse 'binary_data_output'" for "yes"."""
    x = np.array([1.5, -2], np.float32)
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32", x.tolist())],
                                                           parameters={"binary_data_output": True}))
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
    head, tail = split(r)
    assert head["outputs"][0] == {"name": "OUT", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    np.testing.assert_array_equal(np.frombuffer(tail, np.float32), x)
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32", x.tolist())],
                                                           parameters={"binary_data_output": True},
                                                           outputs=[{"name": "OUT", "parameters": {"binary_data": False}}]))
    assert "Inference-Header-Content-Length" not in r.headers and r.json()["outputs"][0]["data"] == x.tolist()
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32", x.tolist())],
                                                           parameters={"binary_data_output": "yes"}))
    assert r.status_code == 400 and "binary_data_output" in error(r)
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [2], "FP32", x.tolist())],
                                                           outputs=[{"name": "OUT", "parameters": {"binary_data": "yes"}}]))
    assert r.status_code == 400 and "binary_data" in error(r)
    # A binary request without outputs named is answered in JSON, as Triton does.
    body, headers = binary_body([I("IN", [2], "FP32", parameters={"binary_data_size": 8})], [x.tobytes()])
    r = served.post("/v2/models/nb_fp32/infer", body, headers)
    assert "Inference-Header-Content-Length" not in r.headers and r.json()["outputs"][0]["data"] == x.tolist()


def test_an_inference_header_length_that_is_not_a_byte_count_is_400(served):
    """Inference-Header-Content-Length -1: 400. tritonserver 2.51: 400
    "inference header size should be in range (0, 78), got: -1"."""
    body = json.dumps(infer_body([I("IN", [2], "FP32", [1, 2])]))
    r = served.post("/v2/models/nb_fp32/infer", body, {"Inference-Header-Content-Length": "-1"})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in error(r)


# ---------------------------------------------------------------- classification


def classes(x, k):
    """Triton's classification strings for a flat row: value (C++
    std::to_string: %f for floats, the integer for integers) ':' index, the
    largest first, ties in index order."""
    idx = np.argsort(-x.astype(np.float64), kind="stable")[:k]
    fmt = (lambda v: f"{float(v):f}") if np.issubdtype(x.dtype, np.floating) else (lambda v: str(int(v)))
    return [f"{fmt(x[i])}:{i}" for i in idx]


@pytest.mark.parametrize("model,datatype,x", [
    ("nb_fp32", "FP32", np.array([0.5, 3, -1, 2], np.float32)),
    ("nb_fp32", "FP32", np.array([1e-7, 1e20, -0.0], np.float32)),
    ("nb_int8", "INT8", np.array([5, -3, 9], np.int8)),
    ("nb_uint8", "UINT8", np.array([7, 9, 7, 9], np.uint8)),
    ("nb_int64", "INT64", np.array([2**62, -5], np.int64)),
])
def test_classification_strings_are_tritons(served, model, datatype, x):
    """`classification: k` answers the k largest as "value:index" BYTES,
    over HTTP JSON, HTTP binary and gRPC; a k past the elements gives all,
    k 0 the values. tritonserver 2.51 gives the same strings, string for
    string (ties in index order, 1e20 as "100000002004087734272.000000",
    -0.0 as "-0.000000")."""
    for k in (2, 10):
        want = classes(x, k)
        r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", [len(x)], datatype, x.tolist())],
                                                                outputs=[{"name": "OUT", "parameters": {"classification": k}}]))
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert (out["datatype"], out["shape"], out["data"]) == ("BYTES", [len(want)], want)
        i = httpclient.InferInput("IN", [len(x)], datatype)
        i.set_data_from_numpy(x, binary_data=True)
        got = served.hc.infer(model, [i], outputs=[httpclient.InferRequestedOutput("OUT", binary_data=True, class_count=k)])
        assert [v.decode() for v in got.as_numpy("OUT")] == want
        g = grpcclient.InferInput("IN", [len(x)], datatype)
        g.set_data_from_numpy(x)
        got = served.gc.infer(model, [g], outputs=[grpcclient.InferRequestedOutput("OUT", class_count=k)])
        assert [v.decode() for v in got.as_numpy("OUT")] == want
    r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", [len(x)], datatype, x.tolist())],
                                                            outputs=[{"name": "OUT", "parameters": {"classification": 0}}]))
    assert r.json()["outputs"][0]["datatype"] == datatype and r.json()["outputs"][0]["data"] == x.tolist()


def test_classification_of_a_batch_ranks_each_row(served):
    """max_batch_size 4, a [2, 3] request with classification 2: shape
    [2, 2], each row ranked on its own, as tritonserver 2.51 answers."""
    x = np.array([[0.5, 3, -1], [2, 7, 1]], np.float32)
    r = served.post("/v2/models/b_fp32/infer", infer_body([I("IN", [2, 3], "FP32", x.ravel().tolist())],
                                                          outputs=[{"name": "OUT", "parameters": {"classification": 2}}]))
    out = r.json()["outputs"][0]
    assert out["shape"] == [2, 2] and out["data"] == classes(x[0], 2) + classes(x[1], 2)


def test_classification_of_bool_bytes_and_empty_outputs(served):
    """BOOL and BYTES outputs have nothing to rank: 400 (tritonserver 2.51:
    400 "class result not available for output due to unsupported type
    'BOOL'", and for BYTES it *crashed*). An empty FP32 output ranks to an
    empty BYTES output (tritonserver 2.51 crashed on that too). FP16 is
    ranked here; tritonserver 2.51 answers 400 "unsupported type 'FP16'"."""
    for model, dt, data in (("nb_bool", "BOOL", [True, False]), ("nb_bytes", "BYTES", ["a", "b"])):
        r = served.post(f"/v2/models/{model}/infer", infer_body([I("IN", [2], dt, data)],
                                                                outputs=[{"name": "OUT", "parameters": {"classification": 1}}]))
        assert r.status_code == 400 and dt in error(r), r.text
    r = served.post("/v2/models/nb_fp32/infer", infer_body([I("IN", [0], "FP32", [])],
                                                           outputs=[{"name": "OUT", "parameters": {"classification": 2}}]))
    assert r.status_code == 200 and r.json()["outputs"][0] == {"name": "OUT", "datatype": "BYTES", "shape": [0], "data": []}
    x = np.array([1, 3, 2], np.float16)
    r = served.post("/v2/models/nb_fp16/infer", infer_body([I("IN", [3], "FP16", x.tolist())],
                                                           outputs=[{"name": "OUT", "parameters": {"classification": 2}}]))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == classes(x, 2)
    assert_serves_on(served)


# ---------------------------------------------------------------- metadata


def test_server_metadata_fields_and_types(served):
    """`GET /v2` and gRPC ServerMetadata: `name` and `version` strings and
    `extensions` a list of strings, over both protocols alike.
    tritonserver 2.51 answers {"name": "triton", "version": "2.51.0",
    "extensions": [...]}."""
    meta = served.get("/v2").json()
    assert isinstance(meta["name"], str) and isinstance(meta["version"], str)
    assert all(isinstance(e, str) for e in meta["extensions"])
    g = served.stub.ServerMetadata(service_pb2.ServerMetadataRequest())
    assert (g.name, g.version, list(g.extensions)) == (meta["name"], meta["version"], meta["extensions"])


def test_server_metadata_lists_the_extensions_triton_lists(served):
    """tritonserver 2.51's extensions: classification, sequence,
    model_repository, model_repository(unload_dependents), schedule_policy,
    model_configuration, system_shared_memory, cuda_shared_memory,
    binary_tensor_data, parameters, statistics, trace, logging. anemone
    serves sequences (sequence_id/start/end), `GET .../config` and request
    parameters, but does not list those three (state.rs: EXTENSIONS;
    FROM_TRITON.md lists anemone's ten without saying Triton lists more)."""
    meta = served.get("/v2").json()
    assert {"sequence", "model_configuration", "parameters"} <= set(meta["extensions"]), meta["extensions"]


@pytest.mark.parametrize("model,shape", [("nb_fp32", [-1]), ("b_bytes", [-1, -1]), ("fixed_fp32", [2, 3]),
                                         ("reshape_fp32", [2, 2])])
def test_model_metadata_fields_and_types(served, model, shape):
    """Model metadata: `name`, `versions` (strings), `platform` "python",
    `inputs`/`outputs` with `name`, `datatype` (KServe names: BYTES for
    TYPE_STRING) and `shape` (integers; -1 for the batch dimension of a
    batched model, the wire dims of a reshape); gRPC the same. tritonserver
    2.51 answers the same fields with the same values (anemone adds
    `backend_selection`, which Triton has not)."""
    meta = served.get(f"/v2/models/{model}").json()
    datatype = "BYTES" if "bytes" in model else "FP32"
    assert meta["name"] == model and meta["versions"] == ["1"] and meta["platform"] == "python"
    for side, name in (("inputs", "IN"), ("outputs", "OUT")):
        assert meta[side] == [{"name": name, "datatype": datatype, "shape": shape}]
    g = served.stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=model))
    assert json_format.MessageToDict(g, preserving_proto_field_name=True) == {
        "name": model, "versions": ["1"], "platform": "python",
        "inputs": [{"name": "IN", "datatype": datatype, "shape": [str(d) for d in shape]}],
        "outputs": [{"name": "OUT", "datatype": datatype, "shape": [str(d) for d in shape]}]}
    assert served.get(f"/v2/models/{model}/versions/1").json()["inputs"] == meta["inputs"]
    r = served.get(f"/v2/models/{model}/versions/2")
    assert r.status_code == 404 and f"Request for unknown model: '{model}' version 2 is not found" in error(r)


# ---------------------------------------------------------------- shared memory


@pytest.fixture
def region(served):
    key = f"/h38c_side_{os.getpid()}_{time.monotonic_ns()}"
    handle = shm.create_shared_memory_region("side", key, 128)
    try:
        yield key, handle
    finally:
        served.hc.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(handle)


def test_system_shared_memory_register_status_infer_unregister(served, region):
    """tritonclient's shared memory helpers over HTTP and gRPC: register,
    status (name, key, offset, byte_size), an FP32 and a BYTES inference
    through the region (outputs written there, checked with numpy),
    unregister one, unregister all. tritonserver 2.51 answers the same
    (statuses field for field; registering a name twice is 400 on both;
    status of an unknown name 404 on both; unregistering an unknown name
    succeeds on both), except that it refuses a second region at offset 64
    of the same object (500 "Invalid shared memory region": offsets must be
    page multiples there), which SERVING.md#shared-memory documents; the
    BYTES round trip was compared on a region of its own."""
    key, handle = region
    x = np.array([1.5, -2, 3, 4], np.float32)
    shm.set_shared_memory_region(handle, [x])
    served.hc.register_system_shared_memory("io", key, 64)
    with pytest.raises(InferenceServerException) as e:
        served.hc.register_system_shared_memory("io", key, 64)
    assert e.value.status() == "400"
    assert served.hc.get_system_shared_memory_status() == [{"name": "io", "key": key, "offset": 0, "byte_size": 64}]
    with pytest.raises(InferenceServerException) as e:
        served.hc.get_system_shared_memory_status("nope")
    assert e.value.status() == "404"
    g = json_format.MessageToDict(served.gc.get_system_shared_memory_status(), preserving_proto_field_name=True)
    assert g == {"regions": {"io": {"name": "io", "key": key, "byte_size": "64"}}}

    i = httpclient.InferInput("IN", [4], "FP32")
    i.set_shared_memory("io", 16, 0)
    o = httpclient.InferRequestedOutput("OUT")
    o.set_shared_memory("io", 16, 16)
    r = served.hc.infer("nb_fp32", [i], outputs=[o])
    assert r.get_response()["outputs"] == [{"name": "OUT", "datatype": "FP32", "shape": [4]}]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [4], offset=16), x)
    gi = grpcclient.InferInput("IN", [4], "FP32")
    gi.set_shared_memory("io", 16, 0)
    go = grpcclient.InferRequestedOutput("OUT")
    go.set_shared_memory("io", 16, 48)
    served.gc.infer("nb_fp32", [gi], outputs=[go])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [4], offset=48), x)

    words = np.array([b"", b"\xff\x00a", b"x"], np.object_)
    blob = serialize_byte_tensor(words)
    shm.set_shared_memory_region(handle, [blob], offset=64)
    served.gc.register_system_shared_memory("bio", key, 64, offset=64)
    bi = httpclient.InferInput("IN", [3], "BYTES")
    bi.set_shared_memory("bio", len(blob.item()), 0)
    bo = httpclient.InferRequestedOutput("OUT")
    bo.set_shared_memory("bio", 32, 32)
    served.hc.infer("nb_bytes", [bi], outputs=[bo])
    assert list(shm.get_contents_as_numpy(handle, np.object_, [3], offset=96)) == list(words)

    served.hc.unregister_system_shared_memory("bio")
    served.hc.unregister_system_shared_memory("nope")
    assert [s["name"] for s in served.hc.get_system_shared_memory_status()] == ["io"]
    served.gc.unregister_system_shared_memory()
    assert served.hc.get_system_shared_memory_status() == []
