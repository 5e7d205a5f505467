"""The KServe Python SDK's own v2 clients against anemone, as a KServe user
would use them: README ("the clients people already use (tritonclient,
KServe) work unchanged"), docs/FROM_TRITON.md "Clients" ("tritonclient
(HTTP and gRPC), perf_analyzer and KServe's clients work unchanged") and
docs/SERVING.md "HTTP" / "gRPC".

The clients are kserve 0.21.0's `InferenceRESTClient` (with
`RESTConfig(protocol="v2")`) and `InferenceGRPCClient`, both asyncio, with
`InferRequest` / `InferInput` / `RequestedOutput` / `InferResponse`; the
metadata calls, which neither client has, go through what a KServe user has
for them: the SDK's generated gRPC stub (`GRPCInferenceServiceStub`) and
plain GETs read with the SDK's own v2 pydantic models
(`kserve.protocol.rest.v2_datamodels`), which KServe's server answers with.

Models are built here: `addsub` (ONNX, x, y [b, 4] -> sum, diff; version 1
diff = x - y, version 2 diff = y - x), `dtypes` (ONNX, one input and output
per datatype: Not, Neg or Identity), `half` (ONNX, FP16 h -> h + h), `text`
(a Python model: BYTES -> upper case, byte lengths, and the request's
parameters as JSON) and `slow` (a Python model that sleeps for its
`delay_ms` parameter). Every number is checked against numpy.

kserve is in scripts/requirements.txt (scripts/setup.sh installs it); a
venv without it skips this file, saying so, except in CI
(ANEMONE_REQUIRE_ORT set), where a missing kserve fails. It runs in a
pytest of its own (KServe's gRPC messages share protobuf names with
tritonclient's; conftest.py leaves it out of the others):
`ANEMONE_KSERVE_SUITE=1 .venv/bin/python -m pytest tests/python/test_kserve_client.py`,
as scripts/test.sh runs it."""
import asyncio
import json
import os
import time

import numpy as np
import pytest

try:
    import kserve  # noqa: F401
except ImportError:
    if os.environ.get("ANEMONE_REQUIRE_ORT"):
        raise
    pytest.skip("the KServe SDK is not installed: run scripts/setup.sh (it installs kserve==0.21.0 from "
                "scripts/requirements.txt)", allow_module_level=True)

import grpc  # noqa: E402  (kserve depends on grpcio and httpx)
import httpx  # noqa: E402
import onnx  # noqa: E402
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from kserve.protocol.infer_type import RequestedOutput  # noqa: E402
from kserve.protocol.rest import v2_datamodels as dm  # noqa: E402
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from serve_support import start_serve, stop_serve  # noqa: E402

# ---------------------------------------------------------------- models

# datatype, ONNX type, numpy type, op (numpy reference below)
DTYPES = [("BOOL", T.BOOL, np.bool_, "Not"), ("UINT8", T.UINT8, np.uint8, "Identity"),
          ("UINT16", T.UINT16, np.uint16, "Identity"), ("UINT32", T.UINT32, np.uint32, "Identity"),
          ("UINT64", T.UINT64, np.uint64, "Identity"), ("INT8", T.INT8, np.int8, "Neg"),
          ("INT16", T.INT16, np.int16, "Neg"), ("INT32", T.INT32, np.int32, "Neg"),
          ("INT64", T.INT64, np.int64, "Neg"), ("FP32", T.FLOAT, np.float32, "Neg"),
          ("FP64", T.DOUBLE, np.float64, "Neg")]


def _save(graph, path):
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def addsub_model(path, swap):
    ins = [h.make_tensor_value_info(n, T.FLOAT, ["b", 4]) for n in ("x", "y")]
    outs = [h.make_tensor_value_info(n, T.FLOAT, ["b", 4]) for n in ("sum", "diff")]
    sub = ["y", "x"] if swap else ["x", "y"]
    _save(h.make_graph([h.make_node("Add", ["x", "y"], ["sum"]), h.make_node("Sub", sub, ["diff"])],
                       "addsub", ins, outs), path)


def dtypes_model(path):
    nodes, ins, outs = [], [], []
    for name, t, _, op in DTYPES:
        ins.append(h.make_tensor_value_info("in_" + name, t, ["n"]))
        outs.append(h.make_tensor_value_info("out_" + name, t, ["n"]))
        nodes.append(h.make_node(op, ["in_" + name], ["out_" + name]))
    _save(h.make_graph(nodes, "dtypes", ins, outs), path)


def half_model(path):
    _save(h.make_graph([h.make_node("Add", ["h", "h"], ["h2"])], "half",
                       [h.make_tensor_value_info("h", T.FLOAT16, ["n"])],
                       [h.make_tensor_value_info("h2", T.FLOAT16, ["n"])]), path)


TEXT_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "UPPER" data_type: TYPE_STRING dims: [ -1 ] },
         { name: "LENGTH" data_type: TYPE_INT32 dims: [ -1 ] },
         { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

TEXT_SOURCE = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            params = json.loads(r.parameters() or "{}")
            t = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            flat = [s if isinstance(s, bytes) else str(s).encode() for s in t.reshape(-1)]
            up = np.array([s.upper() for s in flat], dtype=object).reshape(t.shape)
            ln = np.array([len(s) for s in flat], dtype=np.int32).reshape(t.shape)
            p = np.array([json.dumps(params, sort_keys=True).encode()], dtype=object)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("UPPER", up), pb_utils.Tensor("LENGTH", ln),
                                                   pb_utils.Tensor("PARAMS", p)]))
        return out
"""

SLOW_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

SLOW_SOURCE = """
import json
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            time.sleep(json.loads(r.parameters() or "{}").get("delay_ms", 0) / 1000)
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return out
"""

MAX_REQUEST_BYTES = 12_000_000
# Model names that KServe's REST client puts into the URL path as they are
# (httpx percent-encodes the space and the non-ASCII letters, not the '+').
ODD_NAMES = ["add sub", "a+b", "ünï"]


class Served:
    def __init__(self, proc, addresses):
        self.proc = proc
        self.http = "http://" + addresses["HTTP"]
        self.grpc = addresses["gRPC"]


def _wait_ready(http, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(http + "/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{http} was not ready within {seconds} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = tmp_path_factory.mktemp("kserve_repo")
    addsub_model(repo / "addsub/1/model.onnx", swap=False)
    addsub_model(repo / "addsub/2/model.onnx", swap=True)
    (repo / "addsub/config.pbtxt").write_text("version_policy: { all { } }\n")
    for name in ODD_NAMES:
        addsub_model(repo / name / "1/model.onnx", swap=False)
    dtypes_model(repo / "dtypes/1/model.onnx")
    half_model(repo / "half/1/model.onnx")
    for name, config, source in (("text", TEXT_CONFIG, TEXT_SOURCE), ("slow", SLOW_CONFIG, SLOW_SOURCE)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(source)
    proc, addresses = start_serve(repo, "--max-request-bytes", str(MAX_REQUEST_BYTES))
    try:
        srv = Served(proc, addresses)
        _wait_ready(srv.http)
        yield srv
    finally:
        stop_serve(proc)


def run(coro):
    return asyncio.run(coro)


def rest_client(timeout=30):
    return InferenceRESTClient(RESTConfig(protocol="v2", timeout=timeout))


def grpc_client(srv, timeout=30):
    return InferenceGRPCClient(srv.grpc, timeout=timeout)


def tensor(name, array, datatype, binary):
    """An InferInput holding `array`: binary (REST's binary extension, gRPC's
    raw_input_contents) or as a list (REST JSON `data`, gRPC typed contents)."""
    t = InferInput(name, list(array.shape), datatype)
    if binary:
        t.set_data_from_numpy(array, binary_data=True)
    else:
        t.data = array.flatten().tolist() if datatype != "BYTES" else [
            s.decode() if isinstance(s, bytes) else s for s in array.flatten()]
    return t


def addsub_inputs(x, y, binary=True):
    return [tensor("x", x, "FP32", binary), tensor("y", y, "FP32", binary)]


def outputs(response):
    return {o.name: o.as_numpy() for o in response.outputs}


RNG = np.random.default_rng(39)
X = RNG.standard_normal((3, 4)).astype(np.float32)
Y = RNG.standard_normal((3, 4)).astype(np.float32)


# ---------------------------------------------------------------- health and metadata


def test_rest_server_live_and_ready(served):
    """README / FROM_TRITON.md "Clients": KServe's clients work unchanged. KServe's
    REST `is_server_live` and `is_server_ready` read the JSON body that KServe's
    server and the Open Inference Protocol's REST spec give (`{"live": true}`,
    `{"ready": true}`)."""
    async def main():
        async with rest_client() as rc:
            return await rc.is_server_live(served.http), await rc.is_server_ready(served.http)

    assert run(main()) == (True, True)


def test_rest_model_ready(served):
    """SERVING.md "HTTP": `GET /v2/models/{m}[/versions/{v}]/ready` is 200, or 404
    for an unknown model; KServe's REST `is_model_ready` reads the status
    (FROM_TRITON.md: "KServe's clients test for 200"). A version goes in the
    model name, the only path part the client lets a user set."""
    async def main():
        async with rest_client() as rc:
            return [await rc.is_model_ready(served.http, m)
                    for m in ("addsub", "text", "addsub/versions/1", "addsub/versions/2", "addsub/versions/9", "nope")]

    assert run(main()) == [True, True, True, True, False, False]


def test_grpc_health(served):
    """SERVING.md "gRPC" / FROM_TRITON.md "Clients": KServe's gRPC client's
    `is_server_live`, `is_server_ready` and `is_model_ready`; a model the
    server does not know is `ready: false`, as Triton's."""
    async def main():
        async with grpc_client(served) as gc:
            return (await gc.is_server_live(), await gc.is_server_ready(),
                    await gc.is_model_ready("addsub"), await gc.is_model_ready("text"), await gc.is_model_ready("nope"))

    assert run(main()) == (True, True, True, True, False)


def test_rest_metadata_reads_as_kserve_models(served):
    """SERVING.md "HTTP": `GET /v2` (name, version, extensions) and
    `GET /v2/models/{m}[/versions/{v}]`, read with the KServe SDK's own v2
    pydantic models (what KServe's server answers with); the tensors are the
    ONNX model's, variable dimensions -1; a version's metadata lists that
    version (tritonserver 2.51)."""
    server = dm.ServerMetadataResponse.model_validate_json(httpx.get(served.http + "/v2").content)
    assert server.name == "anemone" and "binary_tensor_data" in server.extensions, server
    model = dm.ModelMetadataResponse.model_validate_json(httpx.get(served.http + "/v2/models/addsub").content)
    assert (model.name, sorted(model.versions)) == ("addsub", ["1", "2"]), model
    assert model.platform in ("tract-cpu", "onnxruntime"), model
    assert [(t.name, t.datatype, t.shape) for t in model.inputs] == [("x", "FP32", [-1, 4]), ("y", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, t.shape) for t in model.outputs] == [("sum", "FP32", [-1, 4]),
                                                                      ("diff", "FP32", [-1, 4])]
    v1 = dm.ModelMetadataResponse.model_validate_json(httpx.get(served.http + "/v2/models/addsub/versions/1").content)
    assert v1.versions == ["1"], v1
    text = dm.ModelMetadataResponse.model_validate_json(httpx.get(served.http + "/v2/models/text").content)
    assert (text.platform, [(t.name, t.datatype, t.shape) for t in text.outputs]) == (
        "python", [("UPPER", "BYTES", [-1]), ("LENGTH", "INT32", [-1]), ("PARAMS", "BYTES", [1])])
    dt = dm.ModelMetadataResponse.model_validate_json(httpx.get(served.http + "/v2/models/dtypes").content)
    assert [t.datatype for t in dt.inputs] == [d for d, *_ in DTYPES]


def test_grpc_metadata_through_the_kserve_stub(served):
    """SERVING.md "gRPC": ServerMetadata and ModelMetadata, called with the
    KServe SDK's generated stub and messages (its proto is the Open Inference
    Protocol's, the same field numbers as Triton's for these calls); a
    requested version's metadata lists that version."""
    async def main():
        async with grpc.aio.insecure_channel(served.grpc) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return (await stub.ServerMetadata(pb.ServerMetadataRequest()),
                    await stub.ModelMetadata(pb.ModelMetadataRequest(name="addsub")),
                    await stub.ModelMetadata(pb.ModelMetadataRequest(name="addsub", version="1")),
                    await stub.ModelMetadata(pb.ModelMetadataRequest(name="half")))

    server, model, v1, half = run(main())
    assert server.name == "anemone" and "binary_tensor_data" in server.extensions
    assert (model.name, sorted(model.versions)) == ("addsub", ["1", "2"])
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("x", "FP32", [-1, 4]),
                                                                           ("y", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [("sum", "FP32", [-1, 4]),
                                                                            ("diff", "FP32", [-1, 4])]
    assert list(v1.versions) == ["1"]
    assert [(t.name, t.datatype) for t in half.inputs] == [("h", "FP16")]


def test_kserve_repository_stub_is_refused_readably(served):
    """KServe's proto has its own RepositoryModelLoad/Unload messages
    (`model_name` is field 1), where Triton's (and anemone's) field 1 is
    `repository_name`; neither KServe client calls them. Sent through KServe's
    stub, anemone refuses with INVALID_ARGUMENT and a message that says what
    it read, rather than acting on the wrong model (tritonserver 2.51 also
    reads field 1 as the repository name)."""
    async def main():
        async with grpc.aio.insecure_channel(served.grpc) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as e:
                await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="addsub"))
            return e.value

    e = run(main())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "repository_name" in e.details(), e.details()
    assert httpx.get(served.http + "/v2/models/addsub/ready").status_code == 200


# ---------------------------------------------------------------- inference


def test_rest_json_infer(served):
    """SERVING.md "HTTP": inference in JSON with `id` echoed and a requested
    outputs subset; the answer reads with KServe's `InferResponse` and
    validates as KServe's v2 `InferenceResponse` model (model_name,
    model_version, id, outputs). No version: the latest (2: diff = y - x)."""
    async def main():
        async with rest_client() as rc:
            full = await rc.infer(served.http, InferRequest("addsub", addsub_inputs(X, Y, binary=False),
                                                            request_id="kserve-1"), model_name="addsub")
            subset = await rc.infer(served.http, InferRequest("addsub", addsub_inputs(X, Y, binary=False),
                                                              request_outputs=[RequestedOutput("diff")]),
                                    model_name="addsub")
            return full, subset

    full, subset = run(main())
    assert (full.id, full.model_name) == ("kserve-1", "addsub")
    got = outputs(full)
    np.testing.assert_allclose(got["sum"], X + Y, rtol=1e-6)
    np.testing.assert_allclose(got["diff"], Y - X, rtol=1e-6)
    assert got["sum"].dtype == np.float32 and got["sum"].shape == (3, 4)
    assert list(outputs(subset)) == ["diff"]
    body, _ = InferRequest("addsub", addsub_inputs(X, Y, binary=False), request_id="raw").to_rest()
    answer = dm.InferenceResponse.model_validate_json(httpx.post(served.http + "/v2/models/addsub/infer",
                                                                 json=body).content)
    assert (answer.model_name, answer.model_version, answer.id) == ("addsub", "2", "raw")
    np.testing.assert_allclose(np.array(answer.outputs[0].data, np.float32).reshape(3, 4), X + Y, rtol=1e-6)


def test_rest_binary_infer(served):
    """SERVING.md "HTTP": the binary tensor data extension in both directions
    as KServe's client writes and reads it (`Inference-Header-Content-Length`,
    `binary_data_size`, `binary_data_output`, per-output `binary_data`), with
    one input binary and the other JSON in the same request."""
    async def main():
        async with rest_client() as rc:
            headers = {}
            binary = await rc.infer(served.http, InferRequest("addsub", addsub_inputs(X, Y),
                                                              parameters={"binary_data_output": True}),
                                    model_name="addsub", response_headers=headers)
            mixed = await rc.infer(served.http, InferRequest(
                "addsub", [tensor("x", X, "FP32", True), tensor("y", Y, "FP32", False)],
                request_outputs=[RequestedOutput("sum", {"binary_data": True}),
                                 RequestedOutput("diff", {"binary_data": False})]), model_name="addsub")
            return binary, headers, mixed

    binary, headers, mixed = run(main())
    assert int(headers["inference-header-content-length"]) > 0, headers
    # httpx asks for gzip: the compressed answer is split after decompression (SERVING.md "HTTP").
    assert headers.get("content-encoding") in ("gzip", "deflate"), headers
    for response in (binary, mixed):
        got = outputs(response)
        np.testing.assert_array_equal(got["sum"], X + Y)
        np.testing.assert_array_equal(got["diff"], Y - X)


def test_model_version(served):
    """The Open Inference Protocol's `v2/models/<m>/versions/<v>/infer` and
    gRPC `model_version`: version 1 answers diff = x - y, version 2 y - x, no
    version the latest (Triton's default policy); gRPC answers the version
    that ran. KServe's REST client has no version argument, so the version
    rides in `model_name`."""
    async def main():
        async with rest_client() as rc, grpc_client(served) as gc:
            rest = {v: await rc.infer(served.http, InferRequest("addsub", addsub_inputs(X, Y)),
                                      model_name="addsub" + (f"/versions/{v}" if v else ""))
                    for v in ("1", "2", None)}
            grpc_ = {v: await gc.infer(InferRequest("addsub", addsub_inputs(X, Y), model_version=v))
                     for v in ("1", "2", None)}
            return rest, grpc_

    rest, grpc_ = run(main())
    want = {"1": X - Y, "2": Y - X, None: Y - X}
    for v, d in want.items():
        np.testing.assert_allclose(outputs(rest[v])["diff"], d, rtol=1e-6, err_msg=f"REST version {v}")
        np.testing.assert_allclose(outputs(grpc_[v])["diff"], d, rtol=1e-6, err_msg=f"gRPC version {v}")
    assert [grpc_[v].model_version for v in ("1", "2", None)] == ["1", "2", "2"]


def test_model_names_in_the_url_path(served):
    """KServe's REST client writes `model_name` into `/v2/models/{model_name}/infer`
    and `/ready` unescaped (httpx percent-encodes a space and non-ASCII
    letters); FROM_TRITON.md: "model names in URLs are percent-decoded". The
    same names over gRPC."""
    async def main():
        out = []
        async with rest_client() as rc, grpc_client(served) as gc:
            for name in ODD_NAMES:
                out.append((name, await rc.is_model_ready(served.http, name), await gc.is_model_ready(name),
                            await rc.infer(served.http, InferRequest(name, addsub_inputs(X, Y)), model_name=name),
                            await gc.infer(InferRequest(name, addsub_inputs(X, Y)))))
        return out

    for name, rest_ready, grpc_ready, rest, grpc_ in run(main()):
        assert (rest_ready, grpc_ready) == (True, True), name
        for response in (rest, grpc_):
            assert response.model_name == name
            np.testing.assert_array_equal(outputs(response)["diff"], X - Y, err_msg=name)


def test_grpc_infer_raw_and_contents(served):
    """SERVING.md "gRPC": ModelInfer with `raw_input_contents` (KServe's
    `set_data_from_numpy`) and with typed contents (a list as `data`), `id`
    echoed, a requested outputs subset; both read the same."""
    async def main():
        async with grpc_client(served) as gc:
            raw = await gc.infer(InferRequest("addsub", addsub_inputs(X, Y), request_id="g-raw"))
            typed = await gc.infer(InferRequest("addsub", addsub_inputs(X, Y, binary=False), request_id="g-typed"))
            subset = await gc.infer(InferRequest("addsub", addsub_inputs(X, Y), request_outputs=[RequestedOutput("sum")]))
            return raw, typed, subset

    raw, typed, subset = run(main())
    assert (raw.id, typed.id, raw.model_name) == ("g-raw", "g-typed", "addsub")
    for response in (raw, typed):
        got = outputs(response)
        np.testing.assert_array_equal(got["sum"], X + Y)
        np.testing.assert_array_equal(got["diff"], Y - X)
        assert got["sum"].shape == (3, 4)
    assert list(outputs(subset)) == ["sum"]


def dtype_arrays():
    arrays = {}
    for name, _, np_type, _ in DTYPES:
        if np_type is np.bool_:
            arrays[name] = np.array([True, False, False, True, True])
        elif np.issubdtype(np_type, np.integer):
            i = np.iinfo(np_type)
            arrays[name] = np.array([i.min, i.max, 0, 1 if i.min == 0 else -1, 7], np_type)
        else:
            arrays[name] = np.array([1.5, -2.25, 0.0, 1e-3, 12345.678], np_type)
    return arrays


def dtype_reference(name, a):
    op = {d: op for d, _, _, op in DTYPES}[name]
    return {"Not": np.logical_not, "Neg": np.negative, "Identity": lambda v: v}[op](a)


@pytest.mark.parametrize("transport", ["rest-json", "rest-binary", "grpc-raw", "grpc-contents"])
def test_every_datatype(served, transport):
    """SERVING.md "HTTP": "every KServe v2 datatype (BOOL, UINT8–64, INT8–64,
    FP32, FP64 ...)", at their extremes (UINT64 max, INT64 min), sent and read
    by KServe's client in JSON, REST binary, gRPC raw and gRPC typed contents;
    values, datatypes and shapes as numpy computes them."""
    arrays = dtype_arrays()
    binary = transport in ("rest-binary", "grpc-raw")
    request = InferRequest("dtypes", [tensor("in_" + n, arrays[n], n, binary) for n, *_ in DTYPES],
                           parameters={"binary_data_output": True} if transport == "rest-binary" else None)

    async def main():
        if transport.startswith("rest"):
            async with rest_client() as rc:
                return await rc.infer(served.http, request, model_name="dtypes")
        async with grpc_client(served) as gc:
            return await gc.infer(request)

    response = run(main())
    got = outputs(response)
    for name, _, np_type, _ in DTYPES:
        out = response.get_output_by_name("out_" + name)
        assert (out.datatype, list(out.shape)) == (name, [5]), (name, out.datatype, out.shape)
        want = dtype_reference(name, arrays[name])
        assert got["out_" + name].dtype == np.dtype(np_type), name
        np.testing.assert_array_equal(got["out_" + name], want, err_msg=name)


def test_fp16(served):
    """SERVING.md "HTTP": FP16 in binary (the KServe client refuses FP16 in
    JSON input itself); FROM_TRITON.md's table: FP16 in a JSON answer is
    taken and answered, which the KServe client reads; gRPC raw both ways."""
    h16 = np.array([0.5, -1.25, 3.0, 65504 / 2, 1e-3], np.float16)

    async def main():
        async with rest_client() as rc, grpc_client(served) as gc:
            rest_bin = await rc.infer(served.http, InferRequest("half", [tensor("h", h16, "FP16", True)],
                                                                parameters={"binary_data_output": True}),
                                      model_name="half")
            rest_json = await rc.infer(served.http, InferRequest("half", [tensor("h", h16, "FP16", True)]),
                                       model_name="half")
            grpc_raw = await gc.infer(InferRequest("half", [tensor("h", h16, "FP16", True)]))
            return rest_bin, rest_json, grpc_raw

    for response in run(main()):
        got = outputs(response)["h2"]
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, h16 + h16)


WORDS = np.array(["hello", "Wörld", "", "a b c", "ünïcödé"], dtype=object)


@pytest.mark.parametrize("transport", ["rest-json", "rest-binary", "grpc-raw", "grpc-contents"])
def test_strings_and_parameters_on_a_python_model(served, transport):
    """SERVING.md "Python models": BYTES tensors (empty and non-ASCII strings)
    to a `model.py` and back, and the request's `parameters` (int, bool and
    string, as KServe's client sends them) reaching the model through
    `request.parameters()`."""
    binary = transport in ("rest-binary", "grpc-raw")
    params = {"count": 3, "flag": True, "tag": "kserve"}
    request = InferRequest("text", [tensor("TEXT", WORDS, "BYTES", binary)], parameters=dict(params))

    async def main():
        if transport.startswith("rest"):
            async with rest_client() as rc:
                return await rc.infer(served.http, request, model_name="text")
        async with grpc_client(served) as gc:
            return await gc.infer(request)

    got = outputs(run(main()))
    as_bytes = [s if isinstance(s, bytes) else s.encode() for s in got["UPPER"].tolist()]
    assert as_bytes == [w.encode().upper() for w in WORDS]
    np.testing.assert_array_equal(got["LENGTH"], np.array([len(w.encode()) for w in WORDS], np.int32))
    [p] = got["PARAMS"].tolist()
    assert json.loads(p) == params


def test_inf_and_nan_in_a_json_answer(served):
    """FROM_TRITON.md's table: an infinite or NaN float in a JSON answer is
    the string "inf", "-inf" or "nan", which KServe's client (orjson, then
    numpy) reads back as the float; tritonserver's bare `inf` is not JSON."""
    x = np.array([[np.inf, -np.inf, np.nan, 1.5]], np.float32)
    y = np.zeros((1, 4), np.float32)

    async def main():
        async with rest_client() as rc:
            return await rc.infer(served.http, InferRequest("addsub", addsub_inputs(x, y)), model_name="addsub/versions/1")

    got = outputs(run(main()))
    np.testing.assert_array_equal(got["sum"], x + y)
    np.testing.assert_array_equal(got["diff"], x - y)


def test_large_tensors(served):
    """Tensors of 4 MB each way (SERVING.md: the largest request is
    `--max-request-bytes`, 64 MiB by default; here 12 MB), over REST binary
    and gRPC raw, against numpy."""
    n = 250_000
    x = RNG.standard_normal((n, 4)).astype(np.float32)
    y = RNG.standard_normal((n, 4)).astype(np.float32)

    async def main():
        async with rest_client() as rc, grpc_client(served) as gc:
            rest = await rc.infer(served.http, InferRequest("addsub", addsub_inputs(x, y),
                                                            parameters={"binary_data_output": True}),
                                  model_name="addsub/versions/1")
            grpc_ = await gc.infer(InferRequest("addsub", addsub_inputs(x, y), model_version="1"))
            return rest, grpc_

    for response in run(main()):
        got = outputs(response)
        np.testing.assert_array_equal(got["sum"], x + y)
        np.testing.assert_array_equal(got["diff"], x - y)


def test_concurrent_async_requests(served):
    """Both KServe clients are asyncio: 48 requests in flight at once over
    REST and gRPC from one event loop, each answered with its own id and
    numbers."""
    async def one(k, rc, gc):
        a = np.full((2, 4), k, np.float32)
        b = np.arange(8, dtype=np.float32).reshape(2, 4)
        request = InferRequest("addsub", addsub_inputs(a, b, binary=bool(k % 3)), request_id=f"req-{k}")
        response = await (rc.infer(served.http, request, model_name="addsub") if k % 2 else gc.infer(request))
        return response.id, outputs(response)["sum"], a + b

    async def main():
        async with rest_client() as rc, grpc_client(served) as gc:
            return await asyncio.gather(*(one(k, rc, gc) for k in range(48)))

    for k, (rid, got, want) in enumerate(run(main())):
        assert rid == f"req-{k}"
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- errors and timeouts


def rest_error(served, request, model_name):
    async def main():
        async with rest_client() as rc:
            with pytest.raises(httpx.HTTPStatusError) as e:
                await rc.infer(served.http, request, model_name=model_name)
            return e.value

    return run(main())


def grpc_error(served, request):
    async def main():
        async with grpc_client(served) as gc:
            with pytest.raises(grpc.RpcError) as e:
                await gc.infer(request)
            return e.value

    return run(main())


BAD = [
    # (what, model, inputs, outputs, version, HTTP status, gRPC code, words in the message)
    ("unknown model", "nope", lambda: addsub_inputs(X, Y), None, None, 404, "NOT_FOUND",
     ["unknown model", "'nope'"]),
    ("unknown version", "addsub", lambda: addsub_inputs(X, Y), None, "9", 404, "NOT_FOUND", ["version 9"]),
    ("bad shape", "addsub", lambda: addsub_inputs(np.zeros((2, 5), np.float32), np.zeros((2, 5), np.float32)),
     None, None, 400, "INVALID_ARGUMENT", ["'x'", "dimension 1"]),
    ("wrong datatype", "addsub", lambda: [tensor("x", np.zeros((1, 4), np.int32), "INT32", True),
                                          tensor("y", np.zeros((1, 4), np.float32), "FP32", True)],
     None, None, 400, "INVALID_ARGUMENT", ["'x'", "INT32", "FP32"]),
    ("missing input", "addsub", lambda: addsub_inputs(X, Y)[:1], None, None, 400, "INVALID_ARGUMENT", ["'y'"]),
    ("unknown output", "addsub", lambda: addsub_inputs(X, Y), [RequestedOutput("nope")], None, 400,
     "INVALID_ARGUMENT", ["'nope'"]),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_errors_are_readable(served, case):
    """FROM_TRITON.md "Clients": an unknown model is 404 / NOT_FOUND "Request for
    unknown model: 'm' is not found"; a client's mistake is 400 /
    INVALID_ARGUMENT. KServe's REST client puts the body's `error` into its
    HTTPStatusError only when the answer is `application/json`; its gRPC
    client raises the RpcError with the server's details. Both must say what
    was wrong."""
    _, model, inputs, outs, version, status, code, words = case
    e = rest_error(served, InferRequest(model, inputs(), request_outputs=outs),
                   model + (f"/versions/{version}" if version else ""))
    assert e.response.status_code == status and e.response.headers["content-type"] == "application/json"
    assert all(w in str(e) for w in words), str(e)
    g = grpc_error(served, InferRequest(model, inputs(), request_outputs=outs, model_version=version))
    assert g.code() == getattr(grpc.StatusCode, code)
    assert all(w in g.details() for w in words), g.details()


def test_grpc_raw_and_typed_contents_mixed_is_refused_readably(served):
    """KServe's `to_grpc` sends an input set with `set_data_from_numpy` as
    raw_input_contents and one given a list as typed contents; a request with
    both is refused by KServe's own servicer (validate_grpc_request) and by
    Triton. anemone refuses it too, INVALID_ARGUMENT, saying why."""
    g = grpc_error(served, InferRequest("addsub", [tensor("x", X, "FP32", True), tensor("y", Y, "FP32", False)]))
    assert g.code() == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents" in g.details(), g.details()


def test_too_large_a_grpc_request(served):
    """anemone serve --help: a message over `--max-request-bytes` is refused
    with gRPC RESOURCE_EXHAUSTED, naming the limit; the KServe gRPC client
    (which lifts grpcio's own send limit) gets the server's answer."""
    n = MAX_REQUEST_BYTES // 16 + 1000
    big = np.ones((n, 4), np.float32)
    g = grpc_error(served, InferRequest("addsub", addsub_inputs(big, big)))
    assert g.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-request-bytes" in g.details(), g.details()


def test_too_large_a_rest_request(served):
    """anemone serve --help / SERVING.md: a body over `--max-request-bytes` is
    refused with HTTP 413 naming the limit; KServe's REST client (httpx,
    asyncio), sending the whole body before it reads, must get that answer.
    Three tries, each on a new connection."""
    n = MAX_REQUEST_BYTES // 16 + 1000  # two inputs of 12 MB
    big = np.ones((n, 4), np.float32)
    for _ in range(3):
        e = rest_error(served, InferRequest("addsub", addsub_inputs(big, big)), "addsub")
        assert e.response.status_code == 413 and "--max-request-bytes" in str(e), str(e)


def slow_request(delay_ms, **params):
    return InferRequest("slow", [tensor("X", np.array([1.0, 2.0], np.float32), "FP32", True)],
                        parameters={"delay_ms": delay_ms, **params})


def test_grpc_client_timeout(served):
    """SERVING.md "HTTP" (the gRPC deadline): the client's deadline (KServe's
    `timeout=`, sent as `grpc-timeout`) bounds the request, and anemone answers
    DEADLINE_EXCEEDED "timed out after ..." itself before the client's own
    deadline ends the call; the server goes on answering."""
    async def main():
        async with grpc_client(served) as gc:
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                await gc.infer(slow_request(1500), timeout=0.8)
            took = time.monotonic() - start
            after = await gc.infer(InferRequest("addsub", addsub_inputs(X, Y)))
            return e.value, took, after

    e, took, after = run(main())
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert e.details().startswith("Request timeout expired: timed out after"), e.details()
    assert took < 1.4, took
    np.testing.assert_array_equal(outputs(after)["sum"], X + Y)


def test_rest_timeouts(served):
    """KServe's REST `timeout=` is the client's own (httpx ReadTimeout), after
    which the server answers others; SERVING.md "HTTP": the request parameter
    `timeout` (microseconds) bounds it on the server, 504 with a message."""
    async def main():
        async with rest_client() as rc:
            with pytest.raises(httpx.ReadTimeout):
                await rc.infer(served.http, slow_request(800), model_name="slow", timeout=0.3)
            after = await rc.infer(served.http, InferRequest("addsub", addsub_inputs(X, Y)), model_name="addsub")
            start = time.monotonic()
            with pytest.raises(httpx.HTTPStatusError) as e:
                await rc.infer(served.http, slow_request(800, timeout=300_000), model_name="slow")
            return after, e.value, time.monotonic() - start

    after, e, took = run(main())
    np.testing.assert_array_equal(outputs(after)["sum"], X + Y)
    assert e.response.status_code == 504 and "timed out after" in str(e), str(e)
    assert took < 0.8, took


def test_slow_model_answers_within_the_timeouts(served):
    """The `slow` model's numbers (Y = 2X) when given time, over both clients."""
    async def main():
        async with rest_client() as rc, grpc_client(served) as gc:
            return (await rc.infer(served.http, slow_request(10), model_name="slow"),
                    await gc.infer(slow_request(10), timeout=10))

    for response in run(main()):
        np.testing.assert_array_equal(outputs(response)["Y"], np.array([2.0, 4.0], np.float32))


def test_a_server_that_is_not_ready(tmp_path):
    """SERVING.md: a model that fails to load leaves the server up and not
    ready (503), the model UNAVAILABLE with its reason. KServe's clients: REST
    `is_server_ready` raises HTTPStatusError on the 503 (as against KServe's
    own server, whose not-ready answer is 503 too), gRPC `is_server_ready` is
    False, `is_model_ready` False on both, and inference gets 503 /
    UNAVAILABLE naming the reason, while the good model serves."""
    addsub_model(tmp_path / "addsub/1/model.onnx", swap=False)
    (tmp_path / "broken/1").mkdir(parents=True)
    (tmp_path / "broken/1/model.onnx").write_bytes(b"this is not an onnx model")
    proc, addresses = start_serve(tmp_path)
    srv = Served(proc, addresses)
    try:
        deadline = time.time() + 60
        while "UNAVAILABLE" not in {m.get("state") for m in
                                    httpx.post(srv.http + "/v2/repository/index", json={}).json()}:
            assert time.time() < deadline, "broken never became UNAVAILABLE"
            time.sleep(0.1)

        async def main():
            async with rest_client() as rc, grpc_client(srv) as gc:
                with pytest.raises(httpx.HTTPStatusError) as ready:
                    await rc.is_server_ready(srv.http)
                flags = (await gc.is_server_ready(), await rc.is_model_ready(srv.http, "broken"),
                         await gc.is_model_ready("broken"), await rc.is_model_ready(srv.http, "addsub"),
                         await gc.is_model_ready("addsub"))
                x = np.zeros((1, 4), np.float32)
                with pytest.raises(httpx.HTTPStatusError) as rest:
                    await rc.infer(srv.http, InferRequest("broken", addsub_inputs(x, x)), model_name="broken")
                with pytest.raises(grpc.RpcError) as grpc_:
                    await gc.infer(InferRequest("broken", addsub_inputs(x, x)))
                good = await gc.infer(InferRequest("addsub", addsub_inputs(X, Y)))
                return ready.value, flags, rest.value, grpc_.value, good

        ready, flags, rest, grpc_e, good = run(main())
        assert ready.response.status_code == 503
        assert flags == (False, False, False, True, True)
        assert rest.response.status_code == 503 and "not an ONNX model" in str(rest), str(rest)
        assert grpc_e.code() == grpc.StatusCode.UNAVAILABLE and "not an ONNX model" in grpc_e.details()
        np.testing.assert_array_equal(outputs(good)["diff"], X - Y)
    finally:
        stop_serve(proc)
