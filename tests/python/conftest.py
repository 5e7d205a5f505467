"""Starts `anemone serve` on free ports over a repository of generated models.

The binary comes from ANEMONE_BIN (scripts/test.sh builds it), by default
target/debug/anemone. Every model's reference outputs were computed with
ONNX Runtime's Python API by scripts/gen_fixtures.py.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures/generated"

# Models served, by fixture case.
CASES = [
    "dynamic_batch", "all_dtypes", "multi_io", "int_bool", "four_inputs", "if_control", "loop_control",
    "gru", "small_convnet", "transformer_block", "ocr_cls", "magika", "silero_vad",
]


class Case:
    """A fixture case: model, inputs and ONNX Runtime reference outputs per run."""

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
    def __init__(self, proc, http, grpc, repo):
        self.proc, self.http, self.grpc, self.repo = proc, http, grpc, repo


@pytest.fixture(scope="session")
def cases():
    if not (FIXTURES / ".stamp").exists():
        pytest.fail("fixtures are missing: run scripts/setup.sh")
    return {name: Case(name) for name in CASES}


@pytest.fixture(scope="session")
def server(tmp_path_factory, cases):
    binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build -p anemone-cli` (scripts/test.sh does)")
    repo = tmp_path_factory.mktemp("repository")
    for name in cases:
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURES / name / "model.onnx", repo / name / "1" / "model.onnx")
    shutil.copytree(ROOT / "examples/models/add", repo / "add")
    (repo / "bytes_identity" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "bytes_identity" / "model.onnx", repo / "bytes_identity" / "1" / "model.onnx")
    (repo / "bytes_identity" / "config.pbtxt").write_text(
        'parameters { key: "backends" value: { string_value: "onnxruntime,tract-cpu" } }\n')
    # The same model pinned to tract, which carries any UTF-8 text, NUL bytes included.
    (repo / "bytes_identity_tract" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "bytes_identity" / "model.onnx", repo / "bytes_identity_tract" / "1" / "model.onnx")
    (repo / "bytes_identity_tract" / "config.pbtxt").write_text(
        'parameters { key: "backends" value: { string_value: "tract-cpu" } }\n'
        'parameters { key: "strict" value: { string_value: "true" } }\n')
    # A broken model must be reported, not take the server down.
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx model")
    proc = subprocess.Popen(
        [str(binary), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
         "--model-control-mode", "explicit", "--load-model", "*", "--exit-timeout-secs", "10"],
        stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
    )
    addresses = {}
    while len(addresses) < 2:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"anemone serve exited early with status {proc.wait()}")
        kind, _, rest = line.partition(" listening on ")
        if rest:
            addresses[kind] = rest.strip()
    srv = Server(proc, addresses["HTTP"], addresses["gRPC"], repo)
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(srv.http)
    deadline = time.time() + 120
    while not all(client.is_model_ready(n) for n in list(cases) + ["add", "bytes_identity", "bytes_identity_tract"]):
        if time.time() > deadline:
            pytest.fail("models did not become ready within 120 s")
        time.sleep(0.2)
    yield srv
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "anemone serve must exit 0 on SIGTERM"
