"""The official Triton clients against `anemone serve`: HTTP with JSON tensors,
HTTP with binary tensors, and gRPC, once per engine (the engine is in each
test's id). Outputs are compared with a reference from another engine: see
conftest.py."""
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import CASES, assert_close

PROTOCOLS = ["http-json", "http-binary", "grpc"]
# What the repository index says about a file that is not ONNX.
BROKEN_REASON = "broken/1/model.onnx: not an ONNX model: the file is not a valid ONNX protobuf"


def client_for(server, protocol):
    if protocol == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(server.grpc)
    return httpclient, httpclient.InferenceServerClient(server.http)


def infer(server, protocol, model, inputs, outputs=None, class_count=0, **kwargs):
    """One inference; `outputs` names the outputs asked for (all when None),
    each as its top `class_count` classes when that is not 0."""
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
            requested = [module.InferRequestedOutput(n, binary_data=binary, class_count=class_count)
                         for n in outputs]
        else:
            requested = [module.InferRequestedOutput(n, class_count=class_count) for n in outputs]
    return client.infer(model, tensors, outputs=requested, **kwargs)


def status_of(error, protocol):
    """The HTTP status ("400") or gRPC code ("StatusCode.INVALID_ARGUMENT") of an error."""
    return str(error.status())


def assert_refused(e, protocol, http_status, grpc_code, *words):
    """The error has exactly this status and says every one of `words`."""
    want = http_status if protocol != "grpc" else f"StatusCode.{grpc_code}"
    assert status_of(e.value, protocol) == want, f"status {e.value.status()} != {want}: {e.value}"
    for w in words:
        assert w in str(e.value), f"{w!r} not in {e.value}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case_name", CASES)
def test_outputs_match_another_engine(server, cases, references, case_name, protocol):
    case = cases[case_name]
    assert len(references[case_name]) == len(case.runs)
    for k, ((inputs, _), want_outputs) in enumerate(zip(case.runs, references[case_name])):
        result = infer(server, protocol, case_name, inputs)
        assert want_outputs, f"{case_name} run {k}: no reference outputs"
        for name, want in want_outputs:
            assert_close(result.as_numpy(name), want, case.rtol, case.atol,
                         f"{case_name} run {k} {name} on {server.engine} over {protocol}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_match_another_engine(server, cases, references, algorithm, protocol):
    """Requests compressed as tritonclient compresses them when asked (Triton
    accepts both algorithms on both protocols), with answers compressed where
    HTTP asks for it: the same outputs as uncompressed."""
    if protocol == "grpc":
        kwargs = {"compression_algorithm": algorithm}
    else:
        kwargs = {"request_compression_algorithm": algorithm, "response_compression_algorithm": algorithm}
    for case_name in ("ocr_cls", "all_dtypes"):
        case = cases[case_name]
        for k, ((inputs, _), want_outputs) in enumerate(zip(case.runs, references[case_name])):
            result = infer(server, protocol, case_name, inputs, **kwargs)
            assert want_outputs, f"{case_name} run {k}: no reference outputs"
            for name, want in want_outputs:
                assert_close(result.as_numpy(name), want, case.rtol, case.atol,
                             f"{case_name} run {k} {name}, {algorithm} over {protocol}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_reshaped_model_takes_and_answers_its_config_dims(server, cases, references, protocol):
    """Triton's quickstart `densenet_onnx` config on small_convnet: requests
    send one image as [3, 32, 32] and get [10] back, while the model takes
    [1, 3, 32, 32] and makes [1, 10]. Each row of the case's runs, sent
    alone, matches the reference's row; the metadata shows the config's dims;
    the model's own shape is refused as Triton refuses it."""
    case = cases["small_convnet"]
    module, client = client_for(server, protocol)
    meta = client.get_model_metadata("convnet_reshaped")
    if module is grpcclient:
        shapes = ([list(t.shape) for t in meta.inputs], [list(t.shape) for t in meta.outputs])
    else:
        shapes = ([t["shape"] for t in meta["inputs"]], [t["shape"] for t in meta["outputs"]])
    assert shapes == ([[3, 32, 32]], [[10]]), shapes
    for k, ((inputs, _), want_outputs) in enumerate(zip(case.runs, references["small_convnet"])):
        (_, images), (_, probs) = inputs[0], want_outputs[0]
        for row in range(images.shape[0]):
            got = infer(server, protocol, "convnet_reshaped", [("image", images[row])]).as_numpy("probs")
            assert_close(got, probs[row], case.rtol, case.atol, f"run {k} row {row} over {protocol}")
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "convnet_reshaped", [("image", case.runs[0][0][0][1][:1])])
    assert_refused(e, protocol, "400", "INVALID_ARGUMENT", "image", "[3, 32, 32]")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tritons_onnx_runtime_options_load_and_serve(server, cases, references, protocol):
    """small_convnet under a config with the options of Triton's ONNX
    Runtime backend (graph level, intra/inter-op threads, parallel
    execution, memory arena and pattern, a TensorRT GPU accelerator, which
    this machine's ONNX Runtime lacks, so the model runs on what it has):
    it loads, its config reads them back, and its outputs match the
    reference."""
    case = cases["small_convnet"]
    module, client = client_for(server, protocol)
    config = client.get_model_config("convnet_ort_options")
    if module is grpcclient:
        params = {k: v.string_value for k, v in config.config.parameters.items()}
        level = config.config.optimization.graph.level
    else:
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        level = config["optimization"]["graph"]["level"]
    assert params["execution_mode"] == "1" and level == 1, (params, level)
    if module is grpcclient:
        accelerator = config.config.optimization.execution_accelerators.gpu_execution_accelerator[0].name
    else:
        accelerator = config["optimization"]["execution_accelerators"]["gpu_execution_accelerator"][0]["name"]
    assert accelerator == "tensorrt", config
    for k, ((inputs, _), want_outputs) in enumerate(zip(case.runs, references["small_convnet"])):
        got = infer(server, protocol, "convnet_ort_options", inputs).as_numpy("probs")
        assert_close(got, want_outputs[0][1], case.rtol, case.atol, f"run {k} over {protocol}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classification_gives_the_top_classes(server, cases, references, protocol):
    """Triton's classification extension through tritonclient's `class_count`:
    magika's output (a real file-type classifier, 214 classes) and ocr_cls's
    (2 classes) as their top 3, checked against numpy's ranking of the
    reference (ONNX Runtime's Python API): each class's value within the
    case's tolerance of the reference's at that index, each class among the
    reference's top 3 (within the tolerance, for near ties), highest first."""
    for case_name in ("magika", "ocr_cls"):
        case = cases[case_name]
        for k, ((inputs, _), want_outputs) in enumerate(zip(case.runs, references[case_name])):
            output, want = want_outputs[0]
            got = infer(server, protocol, case_name, inputs, [output], class_count=3).as_numpy(output)
            # No batch dimension in these models' configs: the whole tensor is ranked.
            flat = want.reshape(-1).astype(np.float64)
            top = min(3, flat.size)
            assert got.shape == (top,), f"{case_name} run {k}: shape {got.shape}"
            third = np.sort(flat)[::-1][top - 1]
            values, indices = [], []
            for item in got:
                text = item.decode() if isinstance(item, bytes) else item
                value, index = text.split(":")
                value, index = float(value), int(index)
                tolerance = case.atol + case.rtol * abs(flat[index]) + 5e-7  # six decimals
                assert abs(value - flat[index]) <= tolerance, f"{case_name} run {k}: {text} vs {flat[index]}"
                assert flat[index] >= third - tolerance, f"{case_name} run {k}: {text} is not in the top {top}"
                values.append(value)
                indices.append(index)
            assert len(set(indices)) == top, f"{case_name} run {k}: {got}"
            assert values == sorted(values, reverse=True), f"{case_name} run {k}: {got}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_tensors_round_trip(server, protocol):
    # On ONNX Runtime (its config puts it first): any UTF-8 text without NUL bytes.
    _, client = client_for(server, "grpc" if protocol == "grpc" else "http")
    platform = client.get_model_metadata("bytes_identity")
    assert (platform.platform if protocol == "grpc" else platform["platform"]) == "onnxruntime"
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
        assert_refused(e, protocol, "400", "INVALID_ARGUMENT", says)


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
    reason = broken.reason if protocol == "grpc" else broken["reason"]
    assert reason.startswith("cannot load ") and BROKEN_REASON in reason, reason
    assert (by_name["add"].state if protocol == "grpc" else by_name["add"]["state"]) == "READY"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_load_and_unload(server, protocol):
    _, client = client_for(server, protocol)
    client.unload_model("four_inputs")
    assert not client.is_model_ready("four_inputs")
    client.load_model("four_inputs")
    assert client.is_model_ready("four_inputs")
    # As tritonserver: unloading what is not loaded, or not there, succeeds
    # (a client's clean-up code does not fail).
    client.unload_model("no_such_model")
    # ... and a model the server does not know is not ready (an answer over
    # gRPC, 404 over HTTP: tritonclient says False for both, as with Triton).
    assert not client.is_model_ready("no_such_model")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_are_clear_and_harmless(server, protocol):
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "no_such_model", [("x", np.ones((1, 4), np.float32))])
    assert_refused(e, protocol, "404", "NOT_FOUND", "'no_such_model'")
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "add", [("x", np.ones((1, 5), np.float32)), ("y", np.ones((1, 5), np.float32))])
    assert_refused(e, protocol, "400", "INVALID_ARGUMENT",
                   "input 'x' dimension 1 is 5, but the model fixes it at 4")
    with pytest.raises(InferenceServerException) as e:
        infer(server, protocol, "add", [("x", np.ones((1, 4), np.int32)), ("y", np.ones((1, 4), np.float32))])
    assert_refused(e, protocol, "400", "INVALID_ARGUMENT", "input 'x' has type INT32, but the model expects FP32")
    # The server still serves.
    result = infer(server, protocol, "add", [("x", np.ones((1, 4), np.float32)), ("y", np.ones((1, 4), np.float32))])
    np.testing.assert_array_equal(result.as_numpy("sum"), np.full((1, 4), 2, np.float32))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_shared_memory_inputs_and_outputs_match_another_engine(server, cases, references, protocol):
    """Triton's system shared memory extension as tritonclient uses it
    (tritonclient.utils.shared_memory): every input packed one after another
    in one region (at odd offsets: a bool tensor is 6 bytes), every output
    written into another, read back from there and compared with the
    reference; the answer carries no output data."""
    import os
    import tritonclient.utils.shared_memory as shm
    from tritonclient.utils import serialize_byte_tensor, triton_to_np_dtype

    module, client = client_for(server, protocol)
    client.unregister_system_shared_memory()
    text = np.array([b"hello", b"", b"anemone \xe2\x9c\x93"], dtype=np.object_)
    runs = [(name, inputs, want) for name in ("ocr_cls", "all_dtypes")
            for (inputs, _), want in zip(cases[name].runs, references[name])]
    runs.append(("bytes_identity", [("text", text)], [("text_out", text)]))
    pid = os.getpid()
    for case_name, inputs, want_outputs in runs:
        # BYTES go serialized, as the client's helpers expect them.
        packed = [serialize_byte_tensor(v) if v.dtype == np.object_ else v for _, v in inputs]
        nbytes = [len(p.item()) if p.dtype == np.object_ else p.nbytes for p in packed]
        handles = []
        try:
            h_in = shm.create_shared_memory_region("in", f"/anemone-pytest-in-{pid}", sum(nbytes))
            handles.append(h_in)
            shm.set_shared_memory_region(h_in, packed)
            out_sizes = [max(w.nbytes, 1) * 4 + 1024 for _, w in want_outputs]
            h_out = shm.create_shared_memory_region("out", f"/anemone-pytest-out-{pid}", sum(out_sizes))
            handles.append(h_out)
            client.register_system_shared_memory("in", f"/anemone-pytest-in-{pid}", sum(nbytes))
            client.register_system_shared_memory("out", f"/anemone-pytest-out-{pid}", sum(out_sizes))
            tensors, offset = [], 0
            for (name, value), size in zip(inputs, nbytes):
                t = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
                t.set_shared_memory("in", size, offset)
                tensors.append(t)
                offset += size
            requested, offsets, offset = [], [], 0
            for (name, _), size in zip(want_outputs, out_sizes):
                o = module.InferRequestedOutput(name)
                o.set_shared_memory("out", size, offset)
                requested.append(o)
                offsets.append(offset)
                offset += size
            result = client.infer(case_name, tensors, outputs=requested)
            for (name, want), at in zip(want_outputs, offsets):
                meta = result.get_output(name)
                if protocol == "grpc":
                    datatype, shape = meta.datatype, list(meta.shape)
                else:
                    datatype, shape = meta["datatype"], meta["shape"]
                    assert "data" not in meta, f"{case_name} {name}: data sent besides shared memory"
                got = shm.get_contents_as_numpy(h_out, triton_to_np_dtype(datatype), shape, offset=at)
                if want.dtype == np.object_:
                    assert [bytes(v) for v in got] == list(want), f"{case_name} {name}"
                    continue
                case = cases[case_name]
                assert_close(got, want, case.rtol, case.atol, f"{case_name} {name} from shared memory over {protocol}")
            status = client.get_system_shared_memory_status()
            names = sorted(r.name for r in status.regions.values()) if protocol == "grpc" else sorted(r["name"] for r in status)
            assert names == ["in", "out"]
        finally:
            client.unregister_system_shared_memory()
            for h in handles:
                shm.destroy_shared_memory_region(h)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_shared_memory_mistakes_are_refused_and_the_server_goes_on(server, protocol):
    """An output region too small, a region never registered, and a key
    that names no object: each is refused with what to fix, and the next
    request is answered."""
    import os
    import tritonclient.utils.shared_memory as shm

    module, client = client_for(server, protocol)
    key = f"/anemone-pytest-small-{os.getpid()}"
    h = shm.create_shared_memory_region("small", key, 32)
    try:
        x = np.array([[1, 2, 3, 4]], dtype=np.float32)
        shm.set_shared_memory_region(h, [x, x])
        client.register_system_shared_memory("small", key, 32)
        tx = module.InferInput("x", [1, 4], "FP32")
        tx.set_shared_memory("small", 16, 0)
        ty = module.InferInput("y", [1, 4], "FP32")
        ty.set_shared_memory("small", 16, 16)
        out = module.InferRequestedOutput("sum")
        out.set_shared_memory("small", 8, 0)
        with pytest.raises(InferenceServerException) as e:
            client.infer("add", [tx, ty], outputs=[out])
        assert_refused(e, protocol, "400", "INVALID_ARGUMENT", "output 'sum' is 16 bytes", "holds 8")
        tx.set_shared_memory("never", 16, 0)
        with pytest.raises(InferenceServerException) as e:
            client.infer("add", [tx, ty])
        assert_refused(e, protocol, "404", "NOT_FOUND", "'never', which is not registered")
        with pytest.raises(InferenceServerException) as e:
            client.register_system_shared_memory("ghost", f"/anemone-pytest-ghost-{os.getpid()}", 8)
        assert_refused(e, protocol, "400", "INVALID_ARGUMENT", "cannot open shared memory object")
        # The server goes on: the same region, with room for the output.
        tx.set_shared_memory("small", 16, 0)
        out.set_shared_memory("small", 16, 0)
        client.infer("add", [tx, ty], outputs=[out])
        np.testing.assert_array_equal(shm.get_contents_as_numpy(h, np.float32, [1, 4]), x + x)
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(h)


@pytest.mark.parametrize("level", ["low", "high"])
def test_compressed_grpc_answers_match_another_engine(cases, references, server, level):
    """`--grpc-infer-response-compression-level` (Triton's flag): a server
    that compresses its gRPC inference answers, which tritonclient's
    channel accepts (gzip and deflate) and decompresses, gives the same
    outputs as the reference, plain and compressed requests alike."""
    import signal
    import time
    from serve_support import start_serve
    proc, addresses = start_serve(server.repo, "--model-control-mode", "explicit", "--load-model", "ocr_cls",
                                  "--backends", server.engine, "--grpc-infer-response-compression-level", level)
    try:
        client = grpcclient.InferenceServerClient(addresses["gRPC"])
        deadline = time.time() + 60
        while not client.is_model_ready("ocr_cls"):
            assert time.time() < deadline, "ocr_cls did not become ready"
            time.sleep(0.1)
        case = cases["ocr_cls"]
        for k, ((inputs, _), want_outputs) in enumerate(zip(case.runs, references["ocr_cls"])):
            for algorithm in (None, "gzip"):
                tensors = []
                for name, value in inputs:
                    t = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
                    t.set_data_from_numpy(value)
                    tensors.append(t)
                result = client.infer("ocr_cls", tensors, compression_algorithm=algorithm)
                for name, want in want_outputs:
                    assert_close(result.as_numpy(name), want, case.rtol, case.atol,
                                 f"run {k} {name}, {level}, request {algorithm}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
