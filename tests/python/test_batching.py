"""A model with a batch dimension (`max_batch_size` > 0) through the Triton
clients, over HTTP and gRPC, under real concurrency: every client must get
exactly its own rows, equal to ONNX Runtime's Python API on the same rows.

The model is the `batching_mlp` fixture (1024 -> 2048 -> 1024, fp32),
served as two models: `mlp` (no `dynamic_batching`: each request is one
engine call) and `mlp_dynamic` (with `dynamic_batching`: requests share
engine calls). The outputs must be right either way; the statistics must add
up either way (inference_count counts rows, as Triton's does).

`mlp_dynamic` must also really batch: 64 concurrent single-row requests
take fewer engine calls than requests.

`mlp_triton` is the same model with the config a Triton user writes for
dynamic batching (priority levels, a queue policy, two CPU instances, a
warm-up sample, a version policy, parameters, response_cache): it must load
as it is, batch, and answer requests that send a priority and a timeout.
"""
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from serve_support import start_serve
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures/generated/batching_mlp"
CONFIG = """
name: "{name}"
max_batch_size: 32
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 1024 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 1024 ] }} ]
"""
DYNAMIC = "dynamic_batching { preferred_batch_size: [ 8, 32 ] max_queue_delay_microseconds: 5000 }\n"
TRITON = """
version_policy: { latest: { num_versions: 1 } }
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 8, 16 ]
  max_queue_delay_microseconds: 2000
  preserve_ordering: false
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy {
    timeout_action: REJECT
    default_timeout_microseconds: 0
    allow_timeout_override: true
    max_queue_size: 256
  }
}
model_warmup [ {
  name: "zeros"
  batch_size: 1
  inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 1024 ] zero_data: true } }
} ]
parameters: { key: "threads" value: { string_value: "1" } }
response_cache { enable: false }
"""
MODELS = ["mlp", "mlp_dynamic", "mlp_triton"]
PROTOCOLS = ["http", "grpc"]
RTOL = ATOL = 1e-4
ROWS = 32


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory):
    if not (FIXTURE / "model.onnx").exists():
        pytest.fail("the batching_mlp fixture is missing: run scripts/setup.sh "
                    "(or .venv/bin/python scripts/gen_fixtures.py --only batching_mlp)")
    repo = tmp_path_factory.mktemp("batching")
    for name, extra in [("mlp", ""), ("mlp_dynamic", DYNAMIC), ("mlp_triton", TRITON)]:
        (repo / name / "1").mkdir(parents=True)
        # A copy, not a link: the server refuses links that lead out of its repository.
        shutil.copyfile(FIXTURE / "model.onnx", repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name) + extra)
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*")
    http = httpclient.InferenceServerClient(addresses["HTTP"])
    deadline = time.time() + 120
    # A model whose config is refused never becomes ready: wait for the
    # repository to settle, then let each test see the state it needs.
    while time.time() < deadline:
        states = {m["name"]: m.get("state") for m in http.get_model_repository_index()}
        if all(s in ("READY", "UNAVAILABLE") for s in states.values()) and len(states) == len(MODELS):
            break
        time.sleep(0.2)
    yield addresses
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "anemone serve must exit 0 on SIGTERM"


@pytest.fixture(scope="module")
def reference():
    """ONNX Runtime's outputs for ROWS random rows, computed as one batch."""
    x = np.random.default_rng(20261130).standard_normal((ROWS, 1024)).astype(np.float32)
    sess = ort.InferenceSession(str(FIXTURE / "model.onnx"), providers=["CPUExecutionProvider"])
    (y,) = sess.run(["y"], {"x": x})
    return x, y


def client(addresses, protocol):
    if protocol == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(addresses["gRPC"])
    return httpclient, httpclient.InferenceServerClient(addresses["HTTP"])


def concurrently(addresses, protocol, model, pieces):
    """Sends each piece as its own request, all at once, each thread with its
    own client (the Triton clients are not meant to be shared by threads)."""
    local = threading.local()

    def send(piece):
        if not hasattr(local, "client"):
            local.client = client(addresses, protocol)
        return infer(*local.client, model, piece)

    with ThreadPoolExecutor(len(pieces)) as pool:
        return list(pool.map(send, pieces))


def infer(module, c, model, x):
    t = module.InferInput("x", list(x.shape), "FP32")
    if module is httpclient:
        t.set_data_from_numpy(x, binary_data=True)
    else:
        t.set_data_from_numpy(x)
    if model == "mlp_triton":
        # The higher of its two levels, and a queue timeout of 60 s (µs).
        return c.infer(model, [t], priority=1, timeout=60_000_000).as_numpy("y")
    return c.infer(model, [t]).as_numpy("y")


def statistics(module, c, model):
    """(inference_count, execution_count, [(batch_size, executions)]) as the client reads them."""
    s = c.get_inference_statistics(model)
    if module is grpcclient:
        m = s.model_stats[0]
        return m.inference_count, m.execution_count, [
            (b.batch_size, b.compute_infer.count) for b in m.batch_stats]
    m = s["model_stats"][0]
    # Triton 2.51's keys, all of them, also those empty on CPU.
    assert (m["memory_usage"], m["response_stats"]) == ([], {}), m
    return m["inference_count"], m["execution_count"], [
        (b["batch_size"], b["compute_infer"]["count"]) for b in m["batch_stats"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", MODELS)
def test_concurrent_single_rows_get_their_own_outputs(batching_server, reference, model, protocol):
    x, want = reference
    module, c = client(batching_server, protocol)
    assert c.is_model_ready(model), f"{model} is not ready"
    before = statistics(module, c, model)
    # One client thread per row, all at once, twice over: a scheduler that
    # batches them must hand each its own row back.
    rows = list(range(ROWS)) * 2
    results = zip(rows, concurrently(batching_server, protocol, model, [x[i:i + 1] for i in rows]))
    for i, got in results:
        assert got.shape == (1, 1024), f"row {i}: shape {got.shape}"
        np.testing.assert_allclose(got[0], want[i], rtol=RTOL, atol=ATOL, err_msg=f"{model} row {i} over {protocol}")
    inferences, executions, batches = statistics(module, c, model)
    sent = len(rows)
    assert inferences - before[0] == sent, "inference_count counts the rows run"
    assert 1 <= executions - before[1] <= sent, "an execution serves one request or more"
    # Per batch size: the rows of all executions add up to inference_count,
    # and the executions to execution_count.
    assert sum(size * n for size, n in batches) == inferences, batches
    assert sum(n for _, n in batches) == executions, batches
    if model == "mlp":
        assert executions - before[1] == sent, "no batching: one execution per request"
        singles = dict(batches).get(1, 0) - dict(before[2]).get(1, 0)
        assert singles == sent, f"every execution had batch size 1: {batches}"
    else:
        assert executions - before[1] < sent, f"dynamic batching joined no requests: {batches}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", MODELS)
def test_batched_requests_match_onnxruntime(batching_server, reference, model, protocol):
    x, want = reference
    module, c = client(batching_server, protocol)
    assert c.is_model_ready(model), f"{model} is not ready"
    # Requests of several rows, sent together, cut from the reference batch.
    cuts = [(0, 8), (8, 11), (11, 12), (12, 32)]
    results = zip(cuts, concurrently(batching_server, protocol, model, [x[lo:hi] for lo, hi in cuts]))
    for (lo, hi), got in results:
        np.testing.assert_allclose(got, want[lo:hi], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{model} rows {lo}..{hi} over {protocol}")
    # The fixture's own reference (ONNX Runtime at generation time) agrees too.
    x8, y8 = np.load(FIXTURE / "run1_in_0.npy"), np.load(FIXTURE / "run1_out_0.npy")
    np.testing.assert_allclose(infer(module, c, model, x8), y8, rtol=RTOL, atol=ATOL)

