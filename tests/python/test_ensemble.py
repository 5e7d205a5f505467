"""The OCR ensemble (examples/ocr_ensemble: preprocess -> PP-OCRv4 det ->
binarize) through the Triton clients, over HTTP and gRPC: outputs against ONNX
Runtime's Python API running the three models in turn (the `ocr_ensemble`
fixture); `--load-model ocr` alone loads the composing models; statistics of
the composing models count the ensemble's calls; `unload_dependents` unloads
them with the ensemble.
"""
import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from serve_support import start_serve
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures/generated/ocr_ensemble"
CONFIGS = ROOT / "examples/ocr_ensemble/model_repository"
COMPOSING = ["preprocess", "det", "binarize"]


@pytest.fixture(scope="module")
def ocr_server(tmp_path_factory):
    if not (FIXTURE / "case.json").exists():
        pytest.fail("fixture ocr_ensemble is missing: run scripts/setup.sh")
    repo = tmp_path_factory.mktemp("ocr")
    for model in COMPOSING + ["ocr"]:
        (repo / model / "1").mkdir(parents=True)
        shutil.copyfile(CONFIGS / model / "config.pbtxt", repo / model / "config.pbtxt")
    for model in COMPOSING:
        shutil.copyfile(FIXTURE / "repository" / model / "1" / "model.onnx", repo / model / "1" / "model.onnx")
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "ocr")
    http = httpclient.InferenceServerClient(addresses["HTTP"])
    deadline = time.time() + 120
    while not http.is_model_ready("ocr"):
        assert time.time() < deadline, "the ensemble was not ready after 120 s"
        time.sleep(0.2)
    # The start-up table follows the address lines once the loads are done.
    for _ in range(20):
        line = proc.stdout.readline()
        if not line or line.startswith("ocr "):
            addresses["table row"] = line
            break
    yield addresses
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_the_start_up_table_shows_the_ensemble_ready_as_an_ensemble(ocr_server):
    row = ocr_server.get("table row", "").split()
    assert row[:4] == ["ocr", "1", "READY", "ensemble"], row


def client(addresses, protocol):
    if protocol == "http":
        return httpclient, httpclient.InferenceServerClient(addresses["HTTP"])
    return grpcclient, grpcclient.InferenceServerClient(addresses["gRPC"])


def runs():
    doc = json.loads((FIXTURE / "case.json").read_text())
    return doc, [{k: np.load(FIXTURE / f) for k, f in run.items()} for run in doc["runs"]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ocr_ensemble_matches_onnx_runtime_in_turn(ocr_server, protocol):
    module, c = client(ocr_server, protocol)
    doc, cases = runs()
    before = c.get_inference_statistics("det")
    before = before["model_stats"][0] if protocol == "http" else before.model_stats[0]
    for run in cases:
        image = module.InferInput("image", list(run["image"].shape), "UINT8")
        image.set_data_from_numpy(run["image"])
        result = c.infer("ocr", [image])
        prob, mask = result.as_numpy("prob"), result.as_numpy("mask")
        np.testing.assert_allclose(prob, run["prob"], rtol=doc["rtol"], atol=doc["atol"])
        near = np.abs(run["prob"] - doc["threshold"]) < 1e-3
        assert mask.dtype == np.uint8 and mask.shape == run["mask"].shape
        assert np.array_equal(mask[~near], run["mask"][~near])
    after = c.get_inference_statistics("det")
    after = after["model_stats"][0] if protocol == "http" else after.model_stats[0]
    count = (lambda s: s["inference_stats"]["success"]["count"]) if protocol == "http" else (
        lambda s: s.inference_stats.success.count)
    assert count(after) - count(before) == len(cases), "det counts every ensemble call"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unload_dependents_unloads_the_composing_models(ocr_server, protocol):
    _, c = client(ocr_server, protocol)
    index = lambda: {  # noqa: E731
        (m["name"] if protocol == "http" else m.name): (m["state"] if protocol == "http" else m.state)
        for m in (c.get_model_repository_index() if protocol == "http" else c.get_model_repository_index().models)
    }
    assert all(index()[m] == "READY" for m in COMPOSING + ["ocr"]), index()
    c.unload_model("ocr")
    assert index()["ocr"] == "UNAVAILABLE" and index()["det"] == "READY", index()
    c.load_model("ocr")
    c.unload_model("ocr", unload_dependents=True)
    states = index()
    assert all(states[m] == "UNAVAILABLE" for m in COMPOSING + ["ocr"]), states
    c.load_model("ocr")  # and its composing models with it
    assert all(index()[m] == "READY" for m in COMPOSING + ["ocr"]), index()


# ---------------------------------------------------------------- batching and not, mixed

MIXED = {
    # name: (max_batch_size, op, constant)
    "double": (4, "Mul", 2.0),
    "plus_one": (0, "Add", 1.0),
}
MIXED_ENSEMBLE = """name: "mixed"
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "DOUBLED" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }
]
ensemble_scheduling { step [
  { model_name: "double" model_version: -1
    input_map { key: "x" value: "IN" } output_map { key: "y" value: "DOUBLED" } },
  { model_name: "plus_one" model_version: -1
    input_map { key: "x" value: "DOUBLED" } output_map { key: "y" value: "OUT" } }
] }
"""


def _mixed_repository(repo):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    for name, (batch, op, constant) in MIXED.items():
        shape = ["batch", 4] if batch else [4]
        graph = helper.make_graph(
            [helper.make_node(op, ["x", "c"], ["y"])], name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
            [numpy_helper.from_array(np.array(constant, dtype=np.float32), "c")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        (repo / name / "1").mkdir(parents=True)
        onnx.save(model, str(repo / name / "1" / "model.onnx"))
        dynamic = "dynamic_batching { }" if batch else ""
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {batch}\n{dynamic}\n'
            'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
            'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')
    (repo / "mixed" / "1").mkdir(parents=True)
    (repo / "mixed" / "config.pbtxt").write_text(MIXED_ENSEMBLE)


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("mixed")
    _mixed_repository(repo)
    proc, addresses = start_serve(repo)
    http = httpclient.InferenceServerClient(addresses["HTTP"])
    deadline = time.time() + 120
    while not http.is_model_ready("mixed"):
        assert proc.poll() is None, "anemone exited"
        assert time.time() < deadline, "the ensemble was not ready after 120 s"
        time.sleep(0.2)
    yield addresses
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_ensemble_without_batching_sends_a_batching_step_a_batch_of_one(mixed_server, protocol):
    """As Triton's (qa/L0_model_config conflicting_scheduler_ensemble; tried
    on tritonserver 2.51, whose step received shape [1, 4]): an ensemble
    with `max_batch_size: 0` and dims [4] over a model that batches (dims
    [4], max_batch_size 4) sends it [1, 4], and a model that does not batch
    after it gets [4] again; both outputs come back as [4]."""
    module, c = client(mixed_server, protocol)
    x = np.array([1.5, -2.0, 3.25, 0.0], dtype=np.float32)
    given = module.InferInput("IN", [4], "FP32")
    given.set_data_from_numpy(x)
    result = c.infer("mixed", [given])
    doubled, out = result.as_numpy("DOUBLED"), result.as_numpy("OUT")
    assert doubled.shape == (4,) and out.shape == (4,), (doubled.shape, out.shape)
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(out, x * 2 + 1)
    # The batching step ran a batch of one row.
    stats = c.get_inference_statistics("double", as_json=True) if protocol == "grpc" \
        else c.get_inference_statistics("double")
    batch_stats = stats["model_stats"][0]["batch_stats"]
    assert {int(b["batch_size"]) for b in batch_stats} == {1}, batch_stats


def test_an_ensemble_without_batching_refuses_a_batched_request(mixed_server):
    """Its input is [4]: a request of [1, 4] is refused (as tritonserver
    2.51 refuses it: 'unexpected shape for input 'IN'')."""
    _, c = client(mixed_server, "http")
    given = httpclient.InferInput("IN", [1, 4], "FP32")
    given.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(Exception) as e:
        c.infer("mixed", [given])
    assert "IN" in str(e.value), e.value
