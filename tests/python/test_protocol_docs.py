"""docs/SERVING.md's HTTP, gRPC, shared memory, classification, statistics,
errors, shutdown and model control sections, and docs/FROM_TRITON.md's
"Clients", read as a user moving over from Triton (and as a careless
client) would read them: each test sends what the docs describe, or a
mistake, and checks the documented answer, then that the server serves on.

Tests marked xfail(strict=True, reason="DEFECT: ...") are places where the
server does not do what the docs say.
"""
import gzip
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from serve_support import ROOT, start_serve, stop_serve, wait_ready
from tritonclient.grpc import service_pb2, service_pb2_grpc

EXAMPLES = ROOT / "examples"

SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

SLOW_MODEL = """
import json, time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            time.sleep(json.loads(request.parameters()).get("sleep_ms", 0) / 1000)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x * 2).astype(np.float32))]))
        return out
"""

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [
  { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "ID" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

ECHO_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([
            pb_utils.Tensor("PARAMS", np.array([r.parameters().encode()], dtype=np.object_)),
            pb_utils.Tensor("ID", np.array([r.request_id().encode()], dtype=np.object_)),
        ]) for r in requests]
"""

# The classification example of SERVING.md, with a label file that names
# only the first two classes.
CLS_CONFIG = """
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]
"""


def make_repo(repo: Path):
    shutil.copytree(EXAMPLES / "models/add", repo / "add")
    (repo / "cls/1").mkdir(parents=True)
    shutil.copy(EXAMPLES / "models/add/1/model.onnx", repo / "cls/1/model.onnx")
    (repo / "cls/config.pbtxt").write_text(CLS_CONFIG)
    (repo / "cls/labels.txt").write_text("zero\none\n")
    for name in ("text_stats", "repeat"):
        shutil.copytree(EXAMPLES / "python_models" / name, repo / name)
    for name, config, source in (("slow", SLOW_CONFIG, SLOW_MODEL), ("echo", ECHO_CONFIG, ECHO_MODEL)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1/model.py").write_text(source)
    return repo


class Served:
    def __init__(self, addresses):
        self.http = addresses["HTTP"]
        self.grpc = addresses["gRPC"]
        self.url = f"http://{self.http}"
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.grpc))

    def post(self, path, body=None, headers=None, **kw):
        h = {"Accept-Encoding": "identity"}
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return requests.post(self.url + path, data=body, headers=h, timeout=30, **kw)

    def get(self, path):
        return requests.get(self.url + path, headers={"Accept-Encoding": "identity"}, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("protocol_docs"))
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*",
                                  "--python", sys.executable, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        yield Served(addresses)
    finally:
        stop_serve(proc)


X = np.array([[1, 2, 3, 4]], np.float32)
Y = np.array([[10, 20, 30, 40]], np.float32)


def add_json(x=X, y=Y, **extra):
    body = {"inputs": [
        {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()},
        {"name": "y", "shape": list(y.shape), "datatype": "FP32", "data": y.ravel().tolist()}]}
    body.update(extra)
    return body


def binary_body(inputs, blobs, header_length=None, extra=b"", outputs=None):
    """A body of the binary tensor extension: the JSON, then the blobs."""
    head = {"inputs": inputs}
    if outputs is not None:
        head["outputs"] = outputs
    js = json.dumps(head).encode()
    length = len(js) if header_length is None else header_length
    return js + b"".join(blobs) + extra, {"Inference-Header-Content-Length": str(length),
                                          "Content-Type": "application/octet-stream"}


def binary_input(name, size, shape=(1, 4), datatype="FP32"):
    return {"name": name, "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": size}}


def assert_serves_on(s):
    r = s.post("/v2/models/add/infer", add_json())
    assert r.status_code == 200, r.text
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    np.testing.assert_array_equal(out["sum"], (X + Y).ravel())


def error(r):
    return r.json()["error"]


# ---------------------------------------------------------------- HTTP


def test_server_metadata_lists_the_extensions_from_triton_md(served):
    meta = served.get("/v2").json()
    assert meta["extensions"] == [
        "binary_tensor_data", "classification", "cuda_shared_memory", "logging", "model_configuration",
        "model_repository", "model_repository(unload_dependents)", "parameters", "schedule_policy", "sequence",
        "statistics", "system_shared_memory", "trace"]


@pytest.mark.parametrize("case", ["missing bytes", "extra bytes", "size unlike shape", "header past body",
                                  "header not a number", "negative size", "size past u64 range"])
def test_binary_tensor_mistakes_are_400_saying_what_and_the_server_serves_on(served, case):
    x, y = X.tobytes(), Y.tobytes()
    inputs = [binary_input("x", 16), binary_input("y", 16)]
    kw = {}
    blobs = [x, y]
    words = {
        "missing bytes": "binary_data_size 16, but only 8",
        "extra bytes": "add up to 32",
        "size unlike shape": "needs 16",
        "header past body": "Inference-Header-Content-Length is 100000",
        "header not a number": "must be a byte count",
        "negative size": "must be a byte count",
        "size past u64 range": "binary_data_size",
    }[case]
    if case == "missing bytes":
        blobs = [x, y[:8]]
    elif case == "extra bytes":
        kw["extra"] = b"\0\0\0\0"
    elif case == "size unlike shape":
        inputs = [binary_input("x", 12), binary_input("y", 20)]
    elif case == "header past body":
        kw["header_length"] = 100000
    elif case == "header not a number":
        kw["header_length"] = "12a"
    elif case == "negative size":
        inputs = [binary_input("x", -16), binary_input("y", 16)]
    elif case == "size past u64 range":
        inputs = [binary_input("x", 2**64 - 1), binary_input("y", 16)]
    body, headers = binary_body(inputs, blobs, **kw)
    r = served.post("/v2/models/add/infer", body, headers)
    assert r.status_code == 400, r.text
    assert words in error(r)
    assert_serves_on(served)


@pytest.mark.parametrize("blob,words", [
    (struct.pack("<I", 100) + b"hello", "claims 100 bytes but only 5 remain"),
    (b"\x05\x00\x00", "ends inside a 4-byte length prefix"),
    (struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b", "more than the 1 elements"),
    (struct.pack("<I", 0xFFFFFFFF) + b"x", "claims 4294967295 bytes"),
])
def test_binary_bytes_elements_with_odd_lengths_are_400(served, blob, words):
    body, headers = binary_body([binary_input("TEXT", len(blob), (1, 1), "BYTES")], [blob])
    r = served.post("/v2/models/text_stats/infer", body, headers)
    assert r.status_code == 400, r.text
    assert words in error(r)
    ok = struct.pack("<I", 5) + b"hello"
    body, headers = binary_body([binary_input("TEXT", len(ok), (1, 1), "BYTES")], [ok])
    r = served.post("/v2/models/text_stats/infer", body, headers)
    assert r.status_code == 200, r.text
    assert {o["name"]: o["data"] for o in r.json()["outputs"]}["UPPER"] == ["HELLO"]


def test_nan_and_infinity_come_back_to_tritonclient_as_floats(served):
    """JSON has no NaN literal, but tritonclient's JSON requests carry bare
    NaN and Infinity (json.dumps), which FROM_TRITON.md says are taken as
    Triton takes them; and an output that holds NaN or infinity must reach
    a JSON client. A word that only starts like one is still bad JSON."""
    r = served.post("/v2/models/add/infer", '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32",'
                    '"data":[NaN,Infinity,-Infinity,3]},{"name":"y","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]}]}')
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == ["nan", "inf", "-inf", 4.0], r.text
    r = served.post("/v2/models/add/infer", '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32",'
                    '"data":[NaNa,1,2,3]},{"name":"y","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]}]}')
    assert r.status_code == 400 and "malformed inference request JSON" in error(r)
    c = httpclient.InferenceServerClient(served.http)
    x = np.array([[np.nan, np.inf, -np.inf, 1]], np.float32)
    inputs = [httpclient.InferInput("x", [1, 4], "FP32"), httpclient.InferInput("y", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=True)
    inputs[1].set_data_from_numpy(np.ones((1, 4), np.float32), binary_data=True)
    result = c.infer("add", inputs, outputs=[httpclient.InferRequestedOutput("sum", binary_data=False)])
    np.testing.assert_array_equal(result.as_numpy("sum").astype(np.float32), x + 1)


def test_huge_dimensions_are_400_and_zero_size_tensors_answer_empty(served):
    r = served.post("/v2/models/add/infer", {"inputs": [
        {"name": "x", "shape": [2**31, 2**31, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    assert r.status_code == 400 and "more elements than can be addressed" in error(r)
    r = served.post("/v2/models/add/infer", add_json(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)))
    assert r.status_code == 200, r.text
    assert [(o["name"], o["shape"], o["data"]) for o in r.json()["outputs"]] == [
        ("sum", [0, 4], []), ("diff", [0, 4], [])]


@pytest.mark.parametrize("case", ["zlib marked gzip", "truncated gzip", "raw deflate", "brotli", "bomb"])
def test_compressed_bodies_that_lie_are_refused_and_the_server_serves_on(served, case):
    body = json.dumps(add_json()).encode()
    if case == "zlib marked gzip":
        data, enc, status, words = zlib.compress(body), "gzip", 400, "does not decompress"
    elif case == "truncated gzip":
        data, enc, status, words = gzip.compress(body)[:-12], "gzip", 400, "does not decompress"
    elif case == "raw deflate":
        co = zlib.compressobj(wbits=-15)
        data, enc, status, words = co.compress(body) + co.flush(), "deflate", 400, "does not decompress"
    elif case == "brotli":
        data, enc, status, words = body, "br", 400, "gzip or deflate"
    else:  # 65 MiB of spaces in about 300 KB: past the default 64 MiB once decompressed
        data, enc, status, words = gzip.compress(b" " * (65 << 20), 1), "gzip", 413, "once decompressed"
    r = served.post("/v2/models/add/infer", data, {"Content-Encoding": enc})
    assert r.status_code == status, r.text
    assert words in error(r)
    assert_serves_on(served)


def test_a_gzip_binary_request_and_gzip_answer_split_at_the_uncompressed_header_length(served):
    body, headers = binary_body([binary_input("x", 16), binary_input("y", 16)], [X.tobytes(), Y.tobytes()],
                                outputs=[{"name": "sum", "parameters": {"binary_data": True}}])
    headers.update({"Content-Encoding": "gzip", "Accept-Encoding": "deflate;q=0.2, gzip;q=0.9"})
    r = requests.post(served.url + "/v2/models/add/infer", data=gzip.compress(body), headers=headers, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "gzip"
    raw = gzip.decompress(r.raw.read())
    n = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(raw[:n])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    np.testing.assert_array_equal(np.frombuffer(raw[n:], np.float32), (X + Y).ravel())


def test_errors_are_never_compressed(served):
    r = requests.post(served.url + "/v2/models/add/infer", data=b"{oops",
                      headers={"Accept-Encoding": "gzip"}, stream=True)
    assert r.status_code == 400
    assert "Content-Encoding" not in r.headers
    assert "malformed inference request JSON" in json.loads(r.raw.read())["error"]


def test_a_timeout_of_zero_is_a_whole_number_and_is_taken(served):
    r = served.post("/v2/models/add/infer", add_json(parameters={"timeout": 0}))
    assert r.status_code == 200, r.text
    c = grpcclient.InferenceServerClient(served.grpc)
    inputs = [grpcclient.InferInput("x", [1, 4], "FP32"), grpcclient.InferInput("y", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(X)
    inputs[1].set_data_from_numpy(Y)
    np.testing.assert_array_equal(c.infer("add", inputs, timeout=0).as_numpy("sum"), X + Y)


# ---------------------------------------------------------------- generate


def test_generate_id_goes_to_the_answer_and_other_keys_to_the_model_as_parameters(served):
    r = served.post("/v2/models/echo/generate", {"TEXT": "a", "id": "r7", "k": 1,
                                                  "parameters": {"flag": True, "word": "w"}})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "r7" and answer["ID"] == "r7"
    assert json.loads(answer["PARAMS"]) == {"k": 1, "flag": True, "word": "w"}
    assert list(answer) == sorted(answer), "keys in name order"


@pytest.mark.parametrize("value", [5, True])
def test_a_generate_id_that_is_not_a_string_is_refused_or_echoed_never_a_parameter(served, value):
    r = served.post("/v2/models/echo/generate", {"TEXT": "a", "id": value})
    if r.status_code == 200:
        answer = r.json()
        assert "id" not in json.loads(answer["PARAMS"]), answer
        assert "id" in answer, answer
    else:
        assert r.status_code == 400 and "id" in error(r)


def test_generate_stream_gives_a_model_error_as_an_event_with_its_status(served):
    r = served.post("/v2/models/text_stats/generate_stream", {"TEXT": ""})
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.text == 'data: {"error":"TEXT holds an empty string; send some text"}\n\n'
    r = served.post("/v2/models/text_stats/generate_stream", {"TEXT": "hi", "id": "q"})
    assert r.status_code == 200
    assert json.loads(r.text.removeprefix("data: ")) == {
        "BATCH": 1, "LENGTH": 2, "UPPER": "HI", "id": "q", "model_name": "text_stats", "model_version": "1"}


# ---------------------------------------------------------------- gRPC


def grpc_add_request(**kw):
    r = service_pb2.ModelInferRequest(model_name="add", **kw)
    for name in "xy":
        t = r.inputs.add()
        t.name, t.datatype = name, "FP32"
        t.shape.extend([1, 4])
    return r


@pytest.mark.parametrize("case", ["one raw entry short", "one raw entry over", "raw and typed", "typed too long",
                                  "wrong typed field"])
def test_grpc_contents_that_do_not_match_the_inputs_are_invalid_argument(served, case):
    r = grpc_add_request()
    if case == "one raw entry short":
        r.raw_input_contents.extend([X.tobytes()])
        words = "2 inputs outside shared memory but 1 raw_input_contents"
    elif case == "one raw entry over":
        r.raw_input_contents.extend([X.tobytes()] * 3)
        words = "but 3 raw_input_contents"
    elif case == "raw and typed":
        r.raw_input_contents.extend([X.tobytes(), Y.tobytes()])
        r.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])
        words = "has typed contents"
    elif case == "typed too long":
        for t in r.inputs:
            t.contents.fp32_contents.extend([1, 2, 3, 4, 5])
        words = "5 values in contents.fp32_contents"
    else:
        for t in r.inputs:
            t.contents.int_contents.extend([1, 2, 3, 4])
        words = "contents.int_contents is given"
    with pytest.raises(grpc.RpcError) as e:
        served.stub.ModelInfer(r)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in e.value.details()
    good = grpc_add_request()
    good.raw_input_contents.extend([X.tobytes(), Y.tobytes()])
    answer = served.stub.ModelInfer(good)
    np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], np.float32), (X + Y).ravel())


def test_a_grpc_stream_answers_a_model_that_is_not_decoupled_in_request_order(served):
    """The first request sleeps 800 ms and the second none, on a model with
    two instances: the second finishes first, but its answer must come
    second; an unknown model's error is answered in its turn."""
    c = grpcclient.InferenceServerClient(served.grpc)
    answers = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        def x(v):
            i = grpcclient.InferInput("X", [4], "FP32")
            i.set_data_from_numpy(np.full(4, v, np.float32))
            return [i]

        c.async_stream_infer("slow", x(1), request_id="a", parameters={"sleep_ms": 800})
        c.async_stream_infer("slow", x(2), request_id="b")
        c.async_stream_infer("nope", x(3), request_id="c")
        c.async_stream_infer("slow", x(4), request_id="d")
        got = []
        for _ in range(4):
            result, err = answers.get(timeout=20)
            if err is not None:
                got.append(("error", str(err)))
            else:
                got.append((result.get_response().id, result.as_numpy("Y").tolist()))
    finally:
        c.stop_stream()
    assert got[0] == ("a", [2.0] * 4) and got[1] == ("b", [4.0] * 4) and got[3] == ("d", [8.0] * 4), got
    assert got[2][0] == "error" and "Request for unknown model: 'nope' is not found" in got[2][1]


# ---------------------------------------------------------------- shared memory


@pytest.fixture
def region(served):
    key = f"/anemone_pd_{os.getpid()}_{time.monotonic_ns()}"
    handle = shm.create_shared_memory_region("pd", key, 64)
    shm.set_shared_memory_region(handle, [X, Y])
    try:
        yield key, handle
    finally:
        served.post("/v2/systemsharedmemory/unregister")
        shm.destroy_shared_memory_region(handle)


def shm_param(region, size, offset=0):
    return {"shared_memory_region": region, "shared_memory_byte_size": size, "shared_memory_offset": offset}


def shm_input(name, region, size, offset=0):
    return {"name": name, "shape": [1, 4], "datatype": "FP32", "parameters": shm_param(region, size, offset)}


def test_shared_memory_registration_mistakes_are_400_and_the_status_lists_the_good_ones(served, region):
    key, _ = region
    reg = "/v2/systemsharedmemory/region/{}/register"
    assert served.post(reg.format("r"), {"key": key, "offset": 0, "byte_size": 64}).status_code == 200
    cases = [
        ("past", {"key": key, "offset": 60, "byte_size": 8}, "would end at byte 68"),
        ("zero", {"key": key, "offset": 0, "byte_size": 0}, "byte_size must be at least 1"),
        ("wrap", {"key": key, "offset": 2**63, "byte_size": 2**63}, "overflows"),
        ("nokey", {"key": "/anemone_pd_does_not_exist", "offset": 0, "byte_size": 8}, "cannot open"),
        ("r", {"key": key, "offset": 0, "byte_size": 64}, "already registered"),
    ]
    for name, body, words in cases:
        r = served.post(reg.format(name), body)
        assert r.status_code == 400, (name, r.text)
        assert words in error(r), name
    assert served.post(reg.format("tail"), {"key": key, "offset": 63, "byte_size": 1}).status_code == 200
    assert served.get("/v2/systemsharedmemory/status").json() == [
        {"name": "r", "key": key, "offset": 0, "byte_size": 64},
        {"name": "tail", "key": key, "offset": 63, "byte_size": 1}]
    r = served.get("/v2/systemsharedmemory/region/past/status")
    assert r.status_code == 404 and "past" in error(r)


def test_shared_memory_offsets_and_sizes_past_a_region_are_400_and_a_good_request_writes_its_output(served, region):
    key, handle = region
    assert served.post("/v2/systemsharedmemory/region/io/register",
                       {"key": key, "offset": 0, "byte_size": 64}).status_code == 200
    out = lambda size, offset: [{"name": "sum", "parameters": shm_param("io", size, offset)}]  # noqa: E731
    cases = [
        ([shm_input("x", "io", 16, 56), shm_input("y", "io", 16, 16)], None, 400, "beyond shared memory region 'io'"),
        ([shm_input("x", "io", 16, 2**64 - 8), shm_input("y", "io", 16, 16)], None, 400, "beyond"),
        ([shm_input("x", "io", 12), shm_input("y", "io", 16, 16)], None, 400, "needs 16"),
        ([shm_input("x", "nope", 16), shm_input("y", "io", 16, 16)], None, 404, "not registered"),
        ([shm_input("x", "io", 16), shm_input("y", "io", 16, 16)], out(8, 32), 400, "holds 8"),
        ([shm_input("x", "io", 16), shm_input("y", "io", 16, 16)], out(16, 56), 400, "beyond"),
    ]
    for inputs, outputs, status, words in cases:
        body = {"inputs": inputs}
        if outputs:
            body["outputs"] = outputs
        r = served.post("/v2/models/add/infer", body)
        assert r.status_code == status, (inputs, outputs, r.text)
        assert words in error(r)
    r = served.post("/v2/models/add/infer", {"inputs": [shm_input("x", "io", 16), shm_input("y", "io", 16, 16)],
                                             "outputs": out(16, 48)})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [1, 4]}]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=48), X + Y)


def test_a_region_truncated_after_registration_is_400_saying_so(served, region):
    key, _ = region
    assert served.post("/v2/systemsharedmemory/region/t/register",
                       {"key": key, "offset": 0, "byte_size": 64}).status_code == 200
    os.truncate("/dev/shm" + key, 16)
    r = served.post("/v2/models/add/infer", {"inputs": [shm_input("x", "t", 16), shm_input("y", "t", 16, 16)]})
    assert r.status_code == 400
    assert "truncated after registration" in error(r)
    assert_serves_on(served)


def test_unregistering_a_region_in_use_lets_the_request_finish_and_write_its_output(served, region):
    key, handle = region
    assert served.post("/v2/systemsharedmemory/region/u/register",
                       {"key": key, "offset": 0, "byte_size": 64}).status_code == 200
    shm.set_shared_memory_region(handle, [np.array([1, 2, 3, 4], np.float32)])
    answer = {}

    def call():
        answer["r"] = served.post("/v2/models/slow/infer", {
            "inputs": [{"name": "X", "shape": [4], "datatype": "FP32", "parameters": shm_param("u", 16)}],
            "outputs": [{"name": "Y", "parameters": shm_param("u", 16, 32)}],
            "parameters": {"sleep_ms": 700}})

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)
    assert served.post("/v2/systemsharedmemory/region/u/unregister").status_code == 200
    assert served.get("/v2/systemsharedmemory/status").json() == []
    t.join(20)
    assert answer["r"].status_code == 200, answer["r"].text
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [4], offset=32), [2, 4, 6, 8])


def test_at_most_4096_regions_are_registered_at_once_over_grpc(served, region):
    key, _ = region
    c = grpcclient.InferenceServerClient(served.grpc)
    for i in range(4096):
        c.register_system_shared_memory(f"lim{i}", key, 8)
    with pytest.raises(Exception) as e:
        c.register_system_shared_memory("lim4096", key, 8)
    assert "4096" in str(e.value) and "INVALID_ARGUMENT" in str(e.value)
    c.unregister_system_shared_memory()
    assert len(c.get_system_shared_memory_status().regions) == 0
    c.register_system_shared_memory("again", key, 8)
    c.unregister_system_shared_memory("again")


def test_grpc_shared_memory_round_trip_with_tritonclient(served, region):
    key, handle = region
    c = grpcclient.InferenceServerClient(served.grpc)
    c.register_system_shared_memory("g", key, 64)
    x, y = grpcclient.InferInput("x", [1, 4], "FP32"), grpcclient.InferInput("y", [1, 4], "FP32")
    x.set_shared_memory("g", 16, 0)
    y.set_shared_memory("g", 16, 16)
    out = grpcclient.InferRequestedOutput("diff")
    out.set_shared_memory("g", 16, 32)
    result = c.infer("add", [x, y], outputs=[out])
    response = result.get_response()
    assert [o.name for o in response.outputs] == ["diff"]
    assert list(response.raw_output_contents) in ([], [b""])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [1, 4], offset=32), X - Y)
    c.unregister_system_shared_memory("g")
    with pytest.raises(Exception) as e:
        c.infer("add", [x, y], outputs=[out])
    assert "NOT_FOUND" in str(e.value) or "not registered" in str(e.value)


def test_cuda_shared_memory_without_a_driver_is_refused_and_status_is_empty(served):
    good = {"raw_handle": {"b64": "A" * 86 + "=="}, "device_id": 0, "byte_size": 64}
    r = served.post("/v2/cudasharedmemory/region/c/register", good)
    assert r.status_code == 400 and "libcuda.so.1" in error(r)
    r = served.post("/v2/cudasharedmemory/region/c/register", dict(good, raw_handle={"b64": "AAAA"}))
    assert r.status_code == 400 and "3 bytes, but a CUDA IPC handle has 64" in error(r)
    r = served.post("/v2/cudasharedmemory/region/c/register", dict(good, raw_handle={"b64": "!!"}))
    assert r.status_code == 400 and "not base64" in error(r)
    assert served.get("/v2/cudasharedmemory/status").json() == []
    assert served.post("/v2/cudasharedmemory/unregister").status_code == 200
    assert served.post("/v2/cudasharedmemory/region/c/unregister").status_code == 200
    with pytest.raises(grpc.RpcError) as e:
        served.stub.CudaSharedMemoryRegister(service_pb2.CudaSharedMemoryRegisterRequest(
            name="c", raw_handle=b"\0" * 64, device_id=0, byte_size=64))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "libcuda.so.1" in e.value.details()
    assert list(served.stub.CudaSharedMemoryStatus(service_pb2.CudaSharedMemoryStatusRequest()).regions) == []


# ---------------------------------------------------------------- classification


def test_classification_ranks_nan_last_keeps_ties_in_index_order_and_labels_only_known_lines(served):
    c = httpclient.InferenceServerClient(served.http)
    x = np.array([[np.nan, 1, 5, 3], [2, 2, 2, 2], [1, 9, 3, 4]], np.float32)
    y = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [10, -20, 30, 40]], np.float32)
    inputs = [httpclient.InferInput("x", [3, 4], "FP32"), httpclient.InferInput("y", [3, 4], "FP32")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(y)
    result = c.infer("cls", inputs, outputs=[httpclient.InferRequestedOutput("sum", class_count=10)])
    got = result.as_numpy("sum")
    assert got.shape == (3, 4), "[batch, min(N, classes)]"
    assert got.tolist() == [
        [b"5.000000:2", b"3.000000:3", b"1.000000:1:one", b"nan:0:zero"],
        [b"2.000000:0:zero", b"2.000000:1:one", b"2.000000:2", b"2.000000:3"],
        [b"44.000000:3", b"33.000000:2", b"11.000000:0:zero", b"-11.000000:1:one"]]


@pytest.mark.parametrize("count,status,words", [
    (0, 200, None), (-1, 400, "1 or more"), ("2", 400, "number of classes"), (2.5, 400, "number of classes")])
def test_classification_counts_that_are_not_positive_integers(served, count, status, words):
    r = served.post("/v2/models/add/infer", add_json(
        outputs=[{"name": "sum", "parameters": {"classification": count}}]))
    assert r.status_code == status, r.text
    if words:
        assert words in error(r)
    else:
        assert r.json()["outputs"] == [{"name": "sum", "datatype": "FP32", "shape": [1, 4],
                                        "data": (X + Y).ravel().tolist()}]


def test_classification_over_grpc_integer_outputs_and_bytes_refusal(served):
    r = grpc_add_request()
    r.raw_input_contents.extend([X.tobytes(), Y.tobytes()])
    o = r.outputs.add()
    o.name = "sum"
    o.parameters["classification"].int64_param = 9
    answer = served.stub.ModelInfer(r)
    assert list(answer.outputs[0].shape) == [4] and answer.outputs[0].datatype == "BYTES"
    o.parameters["classification"].string_param = "2"
    with pytest.raises(grpc.RpcError) as e:
        served.stub.ModelInfer(r)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    text = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["hello"]}]}
    r = served.post("/v2/models/text_stats/infer",
                    dict(text, outputs=[{"name": "LENGTH", "parameters": {"classification": 3}}]))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["5:0"]
    r = served.post("/v2/models/text_stats/infer",
                    dict(text, outputs=[{"name": "UPPER", "parameters": {"classification": 1}}]))
    assert r.status_code == 400 and "BYTES" in error(r)


# ---------------------------------------------------------------- statistics


def test_statistics_versions_and_what_counts_as_a_failure(served):
    assert served.get("/v2/models/echo/versions/abc/stats").status_code == 400
    r = served.get("/v2/models/echo/versions/2/stats")
    assert r.status_code == 404 and "version 2" in error(r)
    with pytest.raises(grpc.RpcError) as e:
        served.stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name="echo", version="7"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    def stats():
        s = served.get("/v2/models/text_stats/versions/1/stats").json()["model_stats"][0]
        return s["inference_stats"]["success"]["count"], s["inference_stats"]["fail"]["count"], s["execution_count"]

    before = stats()
    bad_input = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "INT32", "data": [1]}]}
    assert served.post("/v2/models/text_stats/infer", bad_input).status_code == 400
    assert stats() == before, "a request refused before it is queued is not a failure"
    empty = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [""]}]}
    assert served.post("/v2/models/text_stats/infer", empty).status_code == 400
    ok = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["ok"]}]}
    assert served.post("/v2/models/text_stats/infer", ok).status_code == 200
    after = stats()
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1, (before, after)


# ---------------------------------------------------------------- model control


def test_loading_an_unchanged_model_keeps_its_statistics(served):
    for _ in range(2):
        assert served.post("/v2/models/add/infer", add_json()).status_code == 200
    before = served.get("/v2/models/add/stats").json()["model_stats"][0]
    r = served.post("/v2/repository/models/add/load")
    assert r.status_code == 200, r.text
    after = served.get("/v2/models/add/stats").json()["model_stats"][0]
    assert after["execution_count"] == before["execution_count"] >= 2
    assert after["inference_stats"]["success"] == before["inference_stats"]["success"]


def test_load_and_unload_of_names_the_repository_lacks(served):
    r = served.post("/v2/repository/models/nowhere/load")
    assert r.status_code == 404 and error(r).startswith("failed to load")
    assert served.post("/v2/repository/models/nowhere/unload").status_code == 200
    with pytest.raises(grpc.RpcError) as e:
        served.stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="nowhere"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and e.value.details().startswith("failed to load")


@pytest.mark.parametrize("body", [{"parameters": {"config": 5}}, {"parameters": {"bogus": 1}}, "{bad"])
def test_every_failed_load_request_says_failed_to_load(served, body):
    r = served.post("/v2/repository/models/add/load", body)
    assert r.status_code == 400
    assert error(r).startswith("failed to load"), error(r)


def test_readiness_of_an_unknown_version_is_404_like_the_other_routes(served):
    assert served.get("/v2/models/add/versions/3").status_code == 404
    r = served.get("/v2/models/add/versions/3/ready")
    assert r.status_code == 404, (r.status_code, r.text)


def test_grpc_model_ready_of_an_unknown_model_is_false_and_http_is_404_naming_loaded_models(served):
    assert served.stub.ModelReady(service_pb2.ModelReadyRequest(name="zzz")).ready is False
    r = served.get("/v2/models/zzz/ready")
    assert r.status_code == 404
    assert error(r).startswith("Request for unknown model: 'zzz' is not found") and "add" in error(r)


# ---------------------------------------------------------------- shutdown


def children_of(pid):
    kids = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids.update(int(k) for k in (task / "children").read_text().split())
        except OSError:
            pass
    return kids


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def test_shutdown_bounds_a_running_engine_call_and_leaves_no_model_process(tmp_path):
    repo = make_repo(tmp_path / "repo")
    # start_serve passes --exit-timeout-secs 10 itself; this test needs 1.
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    proc = subprocess.Popen([binary, "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
                             "--metrics-port", "0", "--model-control-mode", "explicit", "--load-model", "slow",
                             "--python", sys.executable, "--exit-timeout-secs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addresses = {}
    while "HTTP" not in addresses:
        line = proc.stdout.readline()
        assert line, f"anemone serve exited early with status {proc.wait()}"
        kind, _, rest = line.partition(" listening on ")
        if rest:
            addresses[kind] = rest.strip()
    url = f"http://{addresses['HTTP']}"
    kids = set()
    try:
        wait_ready(addresses["HTTP"])
        kids = children_of(proc.pid)
        assert kids, "the Python model runs in processes of its own"
        answers = {}

        def call(ms, key):
            try:
                answers[key] = requests.post(url + "/v2/models/slow/infer", json={
                    "inputs": [{"name": "X", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
                    "parameters": {"sleep_ms": ms}}, timeout=30).status_code
            except requests.RequestException as e:
                answers[key] = repr(e)

        threads = [threading.Thread(target=call, args=(300, "short")), threading.Thread(target=call, args=(20000, "long"))]
        for t in threads:
            t.start()
        time.sleep(0.15)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - start < 5, "the bound holds with an engine call still running"
        for t in threads:
            t.join(5)
        assert answers["short"] == 200, answers
        time.sleep(1.0)
        left = [k for k in kids if alive(k)]
        assert left == [], f"model processes {left} outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:  # the processes this test's server started
            if alive(k):
                os.kill(k, signal.SIGKILL)
