"""Starts `anemone serve` on free ports over a repository of generated models,
once per engine, with that engine pinned (`--backends <engine> --strict`).

The binary comes from ANEMONE_BIN (scripts/test.sh builds it), by default
target/debug/anemone.

Every served output is compared with a reference from an engine other than
the one that served it:
- tract-cpu's outputs with ONNX Runtime's Python API (the files that
  scripts/gen_fixtures.py wrote);
- onnxruntime's outputs with tract's, from a second server pinned to
  tract-cpu, whose outputs are first checked against the ONNX Runtime Python
  files (so the chain ORT-served ≈ tract ≈ ORT-Python holds for every run, and
  neither engine is ever compared with itself).
"""
import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

# numpy's OpenBLAS starts a thread per core at import, and they spin: the
# suite's ~1,200 Python model processes (and the probes, workers, helpers)
# each spent about 0.09 s more CPU on it (0.35 s a stub start, 0.26 s with
# one thread), on two cores shared by four test workers. Set before numpy is
# imported here, and inherited by every server and stub the tests start; a
# value set outside is kept. (anemone itself leaves the variable alone: a
# Python model gets the BLAS threads it would get under Triton.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# What the servers, stubs and ONNX Runtime keep between runs (the stub's
# compiled code, unpacked Python environments, the model cache, ONNX
# Runtime's own store) goes under target/, not into the user's ~/.cache.
# Tests of those folders give their own.
os.environ["XDG_CACHE_HOME"] = str(Path(__file__).resolve().parents[2] / "target/test-cache")

import numpy as np
import pytest
from serve_support import start_serve

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures/generated"

# KServe's SDK registers its gRPC messages under the same protobuf names as
# tritonclient's (package `inference`), and one process cannot hold both:
# test_kserve_client.py runs in a pytest of its own (scripts/test.sh runs
# it so, with ANEMONE_KSERVE_SUITE=1), and is left out of the others.
if not os.environ.get("ANEMONE_KSERVE_SUITE"):
    collect_ignore = ["test_kserve_client.py"]

# The engines the suite runs on, one whole run each.
ENGINES = ["tract-cpu", "onnxruntime"]

# Models served, by fixture case. Both engines run every one.
CASES = [
    "dynamic_batch", "all_dtypes", "multi_io", "int_bool", "four_inputs", "if_control", "loop_control",
    "gru", "small_convnet", "transformer_block", "ocr_cls", "magika", "silero_vad",
]


class Case:
    """A fixture case: model, inputs and ONNX Runtime (Python) reference outputs per run."""

    def __init__(self, name: str):
        self.name = name
        self.dir = FIXTURES / name
        spec = json.loads((self.dir / "case.json").read_text())
        self.rtol, self.atol = spec["rtol"], spec["atol"]
        self.runs = [
            (
                [(i["name"], np.load(self.dir / i["file"])) for i in run["inputs"]],
                [(o["name"], np.load(self.dir / o["file"])) for o in run["outputs"]],
            )
            for run in spec["runs"]
        ]


class Server:
    def __init__(self, proc, http, grpc, repo, engine):
        self.proc, self.http, self.grpc, self.repo, self.engine = proc, http, grpc, repo, engine


@pytest.fixture(scope="session")
def cases():
    if not (FIXTURES / ".stamp").exists():
        pytest.fail("fixtures are missing: run scripts/setup.sh")
    return {name: Case(name) for name in CASES}


@pytest.fixture(scope="session")
def repository(tmp_path_factory, cases):
    repo = tmp_path_factory.mktemp("repository")
    for name in cases:
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / name / "model.onnx", repo / name / "1" / "model.onnx")
    shutil.copytree(ROOT / "examples/models/add", repo / "add")

    def model(name, fixture, config):
        """`name`, serving fixture `fixture`'s model.onnx with `config`."""
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / fixture / "model.onnx", repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(config)

    model("bytes_identity", "bytes_identity",
          'parameters { key: "backends" value: { string_value: "onnxruntime,tract-cpu" } }\n')
    # The same model pinned to tract, which carries any UTF-8 text, NUL bytes included.
    model("bytes_identity_tract", "bytes_identity",
          'parameters { key: "backends" value: { string_value: "tract-cpu" } }\n'
          'parameters { key: "strict" value: { string_value: "true" } }\n')
    # Triton's quickstart `densenet_onnx` config, written for small_convnet:
    # no batch dimension in dims, which the reshape gives the model back.
    model("convnet_reshaped", "small_convnet",
          'name: "convnet_reshaped"\nplatform: "onnxruntime_onnx"\nmax_batch_size : 0\n'
          'input [ { name: "image" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 32, 32 ]\n'
          '  reshape { shape: [ 1, 3, 32, 32 ] } } ]\n'
          'output [ { name: "probs" data_type: TYPE_FP32 dims: [ 10 ] reshape { shape: [ 1, 10 ] } } ]\n')
    # A Triton user's ONNX Runtime options (the backend's README): graph
    # level, threads, execution mode, memory arena and pattern, and a
    # TensorRT accelerator (this machine's ONNX Runtime has none).
    options = [("intra_op_thread_count", "1"), ("inter_op_thread_count", "2"), ("execution_mode", "1"),
               ("enable_mem_arena", "1"), ("enable_mem_pattern", "0")]
    model("convnet_ort_options", "small_convnet",
          'name: "convnet_ort_options"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
          'input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] } ]\n'
          'output [ { name: "probs" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
          'optimization { graph { level: 1 } execution_accelerators { gpu_execution_accelerator: [ {\n'
          '  name: "tensorrt" parameters { key: "precision_mode" value: "FP16" }\n'
          '  parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ] } }\n'
          + "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in options))
    # A broken model must be reported, not take the server down.
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx model")
    return repo


@contextlib.contextmanager
def serving(repo, engine, models):
    """`anemone serve` with `engine` pinned, once `models` are ready; stopped after."""
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*",
                                  "--backends", engine, "--strict")
    try:
        srv = Server(proc, addresses["HTTP"], addresses["gRPC"], repo, engine)
        import tritonclient.http as httpclient
        client = httpclient.InferenceServerClient(srv.http)
        deadline = time.time() + 120
        while not all(client.is_model_ready(n) for n in models):
            if time.time() > deadline:
                pytest.fail("models did not become ready within 120 s")
            time.sleep(0.2)
        # The engine is pinned: every case must be served by it, or the run
        # would test another engine than its name says.
        for name in CASES:
            platform = client.get_model_metadata(name)["platform"]
            assert platform == engine, f"{name} is served by {platform}, not {engine}"
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
    assert status == 0, "anemone serve must exit 0 on SIGTERM"


@pytest.fixture(scope="session", params=ENGINES)
def server(request, repository, cases):
    """The server under test, one per engine; the engine is in every test's id."""
    with serving(repository, request.param, list(cases) + ["add", "bytes_identity", "bytes_identity_tract", "convnet_reshaped",
                                                   "convnet_ort_options"]) as srv:
        yield srv


def assert_close(got, want, rtol, atol, what):
    assert got is not None, f"{what}: missing from the response"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.fixture(scope="session")
def tract_references(repository, cases):
    """Each case's outputs as tract-cpu serves them (binary HTTP), after
    checking them against the ONNX Runtime Python references: the reference
    for onnxruntime's run. {case: [[(name, array)] per run]}."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    out = {}
    with serving(repository, "tract-cpu", list(cases)) as srv:
        client = httpclient.InferenceServerClient(srv.http)
        for name, case in cases.items():
            runs = []
            for k, (inputs, outputs) in enumerate(case.runs):
                tensors = []
                for n, v in inputs:
                    t = httpclient.InferInput(n, list(v.shape), np_to_triton_dtype(v.dtype))
                    t.set_data_from_numpy(v, binary_data=True)
                    tensors.append(t)
                result = client.infer(name, tensors)
                got = [(n, result.as_numpy(n)) for n, _ in outputs]
                for (n, g), (_, want) in zip(got, outputs):
                    assert_close(g, want, case.rtol, case.atol, f"tract reference for {name} run {k} {n}")
                runs.append(got)
            out[name] = runs
    return out


@pytest.fixture
def references(server, cases, request):
    """The reference outputs for the engine under test, from a different engine:
    {case: [[(name, array)] per run]}."""
    if server.engine == "onnxruntime":
        return request.getfixturevalue("tract_references")
    return {name: [outputs for _, outputs in case.runs] for name, case in cases.items()}
