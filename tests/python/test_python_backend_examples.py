"""Triton's own Python-backend examples (`examples/` of
triton-inference-server/python_backend at r24.10, the branch of tritonserver
2.51), unchanged, against `anemone serve`: tests/triton_examples/python_backend/
(see tests/triton_examples/README.md).

This is a Triton user's first hour with Python models: build the model
repository as the example's README says (`cp examples/<x>/model.py
models/<m>/1/model.py`, ...), `tritonserver --model-repository models`, then
`python3 examples/<x>/client.py`. Each test builds that repository in
tmp_path from the unchanged copies, serves it with anemone, and runs the
unchanged client with this interpreter. The clients talk to Triton's default
ports (localhost:8000, 8001, 8002) written into their code; RUNNER runs a
client with those three addresses mapped to the server's free ports in
tritonclient's constructors and `requests.get`, without touching the file.
Every client checks its answers against numpy itself and exits 1 on a
difference; the test asserts exit 0 and the client's own PASS line.

tritonserver 2.51 (CPU build, Python backend only) ran every example below
with the same files (its model.py copies given only the three lines that
put its own numpy first on sys.path) and every client exited 0 with its
PASS line.

Not run: `pytorch`, `jax`, `instance_kind` (torch, a ResNet50 from
torch.hub and an image from the internet) and `preprocessing` (TensorRT,
torchvision, a GPU). `bls` needs a model named `pytorch` beside `add_sub`;
its config.pbtxt is copied, and its model.py (a torch `nn.Module` computing
the same sum and difference) is replaced by add_sub's model.py.
"""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from serve_support import ROOT, start_serve, stop_serve, wait_ready

EXAMPLES = ROOT / "tests/triton_examples/python_backend"

# Runs an unchanged client (argv[4]) with Triton's default addresses mapped
# to the server's: argv[1] HTTP (8000), argv[2] gRPC (8001), argv[3]
# metrics (8002).
RUNNER = '''
import atexit, runpy, sys
http, grpc, metrics, path = sys.argv[1:5]
sys.argv = [path] + sys.argv[5:]
MAP = {"localhost:8000": http, "localhost:8001": grpc, "localhost:8002": metrics}
USED = []
atexit.register(lambda: print("runner mapped:", *USED, file=sys.stderr))
def fix(s):
    for k, v in MAP.items():
        if isinstance(s, str) and k in s:
            USED.append(v)
            return s.replace(k, v)
    return s
import requests, tritonclient.grpc, tritonclient.http
for module in (tritonclient.http, tritonclient.grpc):
    def init(self, *a, _orig=module.InferenceServerClient.__init__, **kw):
        if "url" in kw:
            kw["url"] = fix(kw["url"])
        return _orig(self, *(fix(x) for x in a), **kw)
    module.InferenceServerClient.__init__ = init
get = requests.get
requests.get = lambda url, *a, **kw: get(fix(url), *a, **kw)
runpy.run_path(path, run_name="__main__")
'''

# Each example's repository, as its README's "Create the model repository"
# writes it: model name -> (model.py, config.pbtxt or None), paths under
# EXAMPLES.
REPOSITORIES = {
    "add_sub": {"add_sub": ("add_sub/model.py", "add_sub/config.pbtxt")},
    "auto_complete": {
        "nobatch_auto_complete": ("auto_complete/nobatch_model.py", None),
        "batch_auto_complete": ("auto_complete/batch_model.py", None),
    },
    # The `pytorch` model: pytorch/config.pbtxt, with add_sub's model.py
    # (this machine has no torch; the torch model computes the same).
    "bls_sync": {
        "add_sub": ("add_sub/model.py", "add_sub/config.pbtxt"),
        "bls_sync": ("bls/sync_model.py", "bls/sync_config.pbtxt"),
        "pytorch": ("add_sub/model.py", "pytorch/config.pbtxt"),
    },
    "bls_async": {
        "add_sub": ("add_sub/model.py", "add_sub/config.pbtxt"),
        "bls_async": ("bls/async_model.py", "bls/async_config.pbtxt"),
        "pytorch": ("add_sub/model.py", "pytorch/config.pbtxt"),
    },
    "bls_decoupled_sync": {
        "bls_decoupled_sync": ("bls_decoupled/sync_model.py", "bls_decoupled/sync_config.pbtxt"),
        "square_int32": ("decoupled/square_model.py", "decoupled/square_config.pbtxt"),
    },
    "bls_decoupled_async": {
        "bls_decoupled_async": ("bls_decoupled/async_model.py", "bls_decoupled/async_config.pbtxt"),
        "square_int32": ("decoupled/square_model.py", "decoupled/square_config.pbtxt"),
    },
    "custom_metrics": {"custom_metrics": ("custom_metrics/model.py", "custom_metrics/config.pbtxt")},
    "decoupled": {
        "repeat_int32": ("decoupled/repeat_model.py", "decoupled/repeat_config.pbtxt"),
        "square_int32": ("decoupled/square_model.py", "decoupled/square_config.pbtxt"),
    },
}


def build(tmp_path, example):
    repo = tmp_path / "models"
    for name, (model, config) in REPOSITORIES[example].items():
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(EXAMPLES / model, repo / name / "1/model.py")
        if config is not None:
            shutil.copy(EXAMPLES / config, repo / name / "config.pbtxt")
    return repo


@pytest.fixture
def serve(tmp_path):
    """serve(example) -> {"HTTP", "gRPC", "Metrics"}: anemone serving the
    example's repository, ready; stopped (exit 0) after the test."""
    procs = []

    def start(example):
        proc, addresses = start_serve(build(tmp_path, example))
        procs.append(proc)
        # The metrics listener's line follows (its port is 0 with --http-port 0).
        kind, _, rest = proc.stdout.readline().partition(" listening on ")
        assert kind == "Metrics" and rest, (kind, rest)
        addresses["Metrics"] = rest.strip()
        wait_ready(addresses["HTTP"])
        return addresses

    yield start
    for proc in procs:
        stop_serve(proc)


def run_client(tmp_path, addresses, client, passed):
    """Runs EXAMPLES/`client` unchanged; asserts exit 0 and its `passed` line."""
    runner = tmp_path / "run_client.py"
    runner.write_text(RUNNER)
    out = subprocess.run(
        [sys.executable, str(runner), addresses["HTTP"], addresses["gRPC"], addresses["Metrics"],
         str(EXAMPLES / client)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"{client} exited {out.returncode}:\n{text[-3000:]}"
    assert passed in text, f"{client} did not print {passed!r}:\n{text[-3000:]}"
    assert "example error" not in text, text[-3000:]
    # The client talked to this server (not to something on Triton's ports).
    mapped = text.rsplit("runner mapped:", 1)[1].split() if "runner mapped:" in text else []
    assert mapped and set(mapped) <= {addresses["HTTP"], addresses["gRPC"], addresses["Metrics"]}, text[-3000:]
    return text


def test_add_sub(serve, tmp_path):
    """examples/add_sub: client.py sends random FP32 [4] pairs over HTTP and
    checks OUTPUT0/OUTPUT1 against numpy's sum and difference. tritonserver
    2.51: exit 0, `PASS: add_sub`."""
    run_client(tmp_path, serve("add_sub"), "add_sub/client.py", "PASS: add_sub")


def test_auto_complete(serve, tmp_path):
    """examples/auto_complete: no config.pbtxt; each model.py's
    `auto_complete_config` adds the inputs and outputs and sets
    max_batch_size (4 with `set_dynamic_batching()`, or 0). client.py checks
    the configs the server reports. tritonserver 2.51: exit 0, `PASS:
    auto_complete`, and batch_auto_complete's config has `dynamic_batching`.
    The client runs no inference, so this test also sends one to each model
    (a batch of 3 to the batching one) and compares with numpy."""
    import tritonclient.http as httpclient

    addresses = serve("auto_complete")
    run_client(tmp_path, addresses, "auto_complete/client.py", "PASS: auto_complete")
    client = httpclient.InferenceServerClient(addresses["HTTP"])
    assert "dynamic_batching" in client.get_model_config("batch_auto_complete")
    assert "dynamic_batching" not in client.get_model_config("nobatch_auto_complete")
    rng = np.random.default_rng(5)
    for model, shape in [("nobatch_auto_complete", [4]), ("batch_auto_complete", [3, 4])]:
        a, b = (rng.random(shape, dtype=np.float32) for _ in range(2))
        inputs = [httpclient.InferInput(n, shape, "FP32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = client.infer(model, inputs)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)


def test_auto_completed_dynamic_batching_is_reported_as_triton_fills_it(serve):
    """batch_auto_complete's `set_max_batch_size(4)` and
    `set_dynamic_batching()`: tritonserver 2.51's GET
    /v2/models/batch_auto_complete/config shows `dynamic_batching {
    preferred_batch_size: [4], max_queue_delay_microseconds: 0, ... }` (its
    normalization adds max_batch_size as the preferred size when none is
    given; a config.pbtxt with `max_batch_size: 8 dynamic_batching { }` shows
    [8] too). docs/FROM_TRITON.md: "A loaded model's config is filled in as
    Triton fills it" (anemone showed `preferred_batch_size: []`)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(serve("auto_complete")["HTTP"])
    config = client.get_model_config("batch_auto_complete")
    assert config["max_batch_size"] == 4, config
    assert config["dynamic_batching"]["preferred_batch_size"] == [4], config["dynamic_batching"]


def test_bls_sync(serve, tmp_path):
    """examples/bls, sync: bls_sync runs `InferenceRequest(model_name=...)
    .exec()` on the model named by its MODEL_NAME input (a TYPE_STRING
    tensor, so the name reaches the model as bytes): add_sub, then pytorch
    (each checked against numpy), then `undefined_model`, whose failure the
    client prints. tritonserver 2.51: exit 0, `PASS: BLS Sync`, the third
    request answered 500 "Failed to process the request(s) for model
    'bls_sync_0_0', message: TritonModelException: Model undefined_model -
    Error when running inference: Failed for execute the inference request.
    Model 'undefined_model' is not ready." anemone failed the first request
    (500 "model.py of model 'bls_sync' raised in execute: TypeError: Object
    of type bytes is not JSON serializable") until names given as bytes
    were taken as Triton takes them."""
    text = run_client(tmp_path, serve("bls_sync"), "bls/sync_client.py", "PASS: BLS Sync")
    after = text.split("=========='undefined' model result==========", 1)[1]
    assert "undefined_model" in after, text[-3000:]


def test_bls_async(serve, tmp_path):
    """examples/bls, async: `async def execute` awaits two `async_exec()`
    (pytorch and add_sub, names given as str) with asyncio.gather and answers
    pytorch's OUTPUT0 and add_sub's OUTPUT1; the client checks both against
    numpy. tritonserver 2.51: exit 0, `PASS: BLS Async`."""
    run_client(tmp_path, serve("bls_async"), "bls/async_client.py", "PASS: BLS Async")


BYTES_NAMES_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.get_input_tensor_by_name(request, n) for n in ("INPUT0", "INPUT1")]
            # bytes where str is expected, as a TYPE_STRING input's as_numpy() gives them
            bls = pb_utils.InferenceRequest(model_name=b"add_sub", inputs=inputs,
                                            requested_output_names=[b"OUTPUT0", "OUTPUT1"])
            answer = bls.exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            responses.append(pb_utils.InferenceResponse(answer.output_tensors()))
        return responses
"""


def test_bls_takes_model_and_output_names_as_bytes(tmp_path):
    """The smallest form of test_bls_sync's failure: a BLS request whose
    model name and one requested output name are bytes. tritonserver 2.51
    (pybind11 converts bytes to std::string) runs it: add_sub's sum and
    difference, and `requested_output_names()` gives back
    {'OUTPUT0', 'OUTPUT1'} as str."""
    import tritonclient.http as httpclient

    repo = build(tmp_path, "add_sub")
    (repo / "bytes_names/1").mkdir(parents=True)
    (repo / "bytes_names/1/model.py").write_text(BYTES_NAMES_MODEL)
    (repo / "bytes_names/config.pbtxt").write_text(
        (EXAMPLES / "add_sub/config.pbtxt").read_text().replace('name: "add_sub"', 'name: "bytes_names"'))
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        client = httpclient.InferenceServerClient(addresses["HTTP"])
        rng = np.random.default_rng(7)
        a, b = (rng.random(4, dtype=np.float32) for _ in range(2))
        inputs = [httpclient.InferInput(n, [4], "FP32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = client.infer("bytes_names", inputs)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
    finally:
        stop_serve(proc)


def test_bls_decoupled_sync(serve, tmp_path):
    """examples/bls_decoupled, sync: bls_decoupled_sync sums the responses of
    `exec(decoupled=True)` on the decoupled square_int32 (n responses of n
    for n = 4, 2, 0, 1); the client checks SUM = n*n. tritonserver 2.51:
    exit 0, `PASS: BLS Decoupled Sync` (SUM is answered as INT64, the
    model's numpy dtype, though the config says INT32; anemone answers INT64
    too, and warns)."""
    run_client(tmp_path, serve("bls_decoupled_sync"), "bls_decoupled/sync_client.py",
               "PASS: BLS Decoupled Sync")


def test_bls_decoupled_async(serve, tmp_path):
    """examples/bls_decoupled, async: `async def execute` awaiting two
    `async_exec(decoupled=True)` on square_int32 with asyncio.gather; the
    client checks SUM = 2*n*n. tritonserver 2.51: exit 0, `PASS: BLS
    Decoupled Async`."""
    run_client(tmp_path, serve("bls_decoupled_async"), "bls_decoupled/async_client.py",
               "PASS: BLS Decoupled Async")


def test_custom_metrics(serve, tmp_path):
    """examples/custom_metrics: model.py increments a
    `pb_utils.MetricFamily` COUNTER `requests_process_latency_ns` labelled
    model/version (3 CPU instances); the client checks the sum and
    difference against numpy, then finds the family's HELP and TYPE lines
    and the labelled sample on the metrics port (Triton's 8002). tritonserver
    2.51: exit 0, `PASS: custom_metrics`."""
    run_client(tmp_path, serve("custom_metrics"), "custom_metrics/client.py", "PASS: custom_metrics")


@pytest.mark.parametrize("client,passed", [
    ("decoupled/repeat_client.py", "PASS: repeat_int32"),
    ("decoupled/square_client.py", "PASS: square_int32"),
])
def test_decoupled(serve, tmp_path, client, passed):
    """examples/decoupled: repeat_int32 (one response per element of IN,
    after DELAY ms each, from a thread that outlives execute) and
    square_int32 (n responses of n, four requests on one stream), over gRPC
    streaming; the clients check each response's OUT and the count per
    request id. tritonserver 2.51: exit 0, `PASS: repeat_int32` / `PASS:
    square_int32`."""
    run_client(tmp_path, serve("decoupled"), client, passed)
