"""The official Triton clients against `anemone serve`: HTTP with JSON tensors,
HTTP with binary tensors, and gRPC. Outputs are compared with ONNX Runtime's
Python API on the same inputs."""
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import CASES

PROTOCOLS = ["http-json", "http-binary", "grpc"]


def client_for(server, protocol):
    if protocol == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(server.grpc)
    return httpclient, httpclient.InferenceServerClient(server.http)


def infer(server, protocol, model, inputs, outputs=None, **kwargs):
    module, client = client_for(server, protocol)
    binary = protocol != "http-json"
    tensors = []
    for name, value in inputs:
        t = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        if module is httpclient:
            t.set_data_from_numpy(value, binary_data=binary)
        else:
            t.set_data_from_numpy(value)
        tensors.append(t)
    requested = None
    if outputs is not None:
        if module is httpclient:
            requested = [module.InferRequestedOutput(n, binary_data=binary) for n in outputs]
        else:
            requested = [module.InferRequestedOutput(n) for n in outputs]
    return client.infer(model, tensors, outputs=requested, **kwargs)


def assert_close(got, want, rtol, atol, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case_name", CASES)
def test_outputs_match_onnxruntime(server, cases, case_name, protocol):
    case = cases[case_name]
    for k, (inputs, outputs) in enumerate(case.runs):
        result = infer(server, protocol, case_name, inputs)
        for name, want in outputs:
            assert_close(result.as_numpy(name), want, case.rtol, case.atol, f"{case_name} run {k} {name} over {protocol}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_tensors_round_trip(server, protocol):
    # On ONNX Runtime (its config puts it first): any UTF-8 text without NUL bytes.
    text = np.array([b"hello", b"", b"anemone \xe2\x9c\x93", b"tab\there"], dtype=np.object_)
    result = infer(server, protocol, "bytes_identity", [("text", text)])
    got = result.as_numpy("text_out")
    assert got.shape == text.shape
    assert [bytes(v) for v in got] == list(text)
    # tract carries NUL bytes too.
    binary = np.array([b"\x00\x01binary", b"x"], dtype=np.object_)
    got = infer(server, protocol, "bytes_identity_tract", [("text", binary)]).as_numpy("text_out")
    assert [bytes(v) for v in got] == list(binary)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_an_engine_cannot_carry_are_refused_not_changed(server, protocol):
    for model, text, says in [
        ("bytes_identity", [b"ok", b"\x00\x01binary"], "element 1 contains a NUL byte"),
        ("bytes_identity_tract", [b"\xff\xfe"], "element 0 is not UTF-8 text"),
    ]:
        if protocol == "http-json" and b"\xff" in text[0]:
            continue  # JSON carries only UTF-8 text; the client refuses to send these bytes
        with pytest.raises(InferenceServerException) as e:
            infer(server, protocol, model, [("text", np.array(text, dtype=np.object_))])
        assert says in str(e.value)
        assert "400" in str(e.value) or "INVALID_ARGUMENT" in str(e.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_requested_outputs_id_and_parameters(server, protocol):
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    y = np.array([[10, 20, 30, 40]], dtype=np.float32)
    result = infer(server, protocol, "add", [("x", x), ("y", y)], outputs=["diff"], request_id="req-42")
    np.testing.assert_array_equal(result.as_numpy("diff"), x - y)
    assert result.as_numpy("sum") is None
    response = result.get_response()
    rid = response.id if protocol == "grpc" else response["id"]
    assert rid == "req-42"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_health_metadata_config_stats_index(server, protocol):
    module, client = client_for(server, protocol)
    assert client.is_server_live()
    assert client.is_model_ready("add")
    assert not client.is_model_ready("broken")
    meta = client.get_server_metadata()
    name = meta.name if protocol == "grpc" else meta["name"]
    assert name == "anemone"
    mm = client.get_model_metadata("add")
    inputs = mm.inputs if protocol == "grpc" else mm["inputs"]
    first = inputs[0]
    assert (first.name if protocol == "grpc" else first["name"]) == "x"
    assert list(first.shape if protocol == "grpc" else first["shape"]) == [-1, 4]
    config = client.get_model_config("add")
    cfg = config.config if protocol == "grpc" else config
    assert (cfg.name if protocol == "grpc" else cfg["name"]) == "add"
    infer(server, "grpc" if protocol == "grpc" else "http-json", "add",
          [("x", np.ones((2, 4), np.float32)), ("y", np.ones((2, 4), np.float32))])
    stats = client.get_inference_statistics("add")
    entry = stats.model_stats[0] if protocol == "grpc" else stats["model_stats"][0]
    success = entry.inference_stats.success.count if protocol == "grpc" else entry["inference_stats"]["success"]["count"]
    assert success >= 1
    index = client.get_model_repository_index()
    rows = index.models if protocol == "grpc" else index
    by_name = {(r.name if protocol == "grpc" else r["name"]): r for r in rows}
    broken = by_name["broken"]
    assert (broken.state if protocol == "grpc" else broken["state"]) == "UNAVAILABLE"
    assert "broken" in (broken.reason if protocol == "grpc" else broken["reason"]) or (broken.reason if protocol == "grpc" else broken["reason"])
    assert (by_name["add"].state if protocol == "grpc" else by_name["add"]["state"]) == "READY"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_and_unload(server, protocol):
    _, client = client_for(server, protocol)
    client.unload_model("four_inputs")
    assert not client.is_model_ready("four_inputs")
    client.load_model("four_inputs")
    assert client.is_model_ready("four_inputs")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_are_clear_and_harmless(server, protocol):
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "no_such_model", [("x", np.ones((1, 4), np.float32))])
    assert "no_such_model" in str(e.value)
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "add", [("x", np.ones((1, 5), np.float32)), ("y", np.ones((1, 5), np.float32))])
    assert "dimension 1" in str(e.value)
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "add", [("x", np.ones((1, 4), np.int32)), ("y", np.ones((1, 4), np.float32))])
    assert "expects f32" in str(e.value) or "FP32" in str(e.value)
    # The server still serves.
    result = infer(server, protocol, "add", [("x", np.ones((1, 4), np.float32)), ("y", np.ones((1, 4), np.float32))])
    np.testing.assert_array_equal(result.as_numpy("sum"), np.full((1, 4), 2, np.float32))
