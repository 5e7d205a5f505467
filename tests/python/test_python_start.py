"""What starting Python costs a server, and when it is paid.

- A repository without a Python model starts no interpreter: the Python
  backend's probe runs when a Python model loads or when the backends are
  reported (`/metrics`), not at each start or load.
"""
import json
import shutil
import stat
import sys
import urllib.request
from pathlib import Path

import numpy as np

from serve_support import start_serve, stop_serve, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_a_repository_without_a_python_model_starts_no_python(tmp_path):
    """Each model load took a snapshot of every metric, which ran every
    backend's probe: a Python interpreter started (through a pyenv shim
    here, 40 processes and 0.13 s before the server was ready) for a
    repository of ONNX models."""
    shutil.copytree(ROOT / "examples/models/add", tmp_path / "repo" / "add")
    started = tmp_path / "python-started"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho started >> {started}\nexec {sys.executable} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    proc, addresses = start_serve(tmp_path / "repo", "--model-control-mode", "explicit", "--load-model", "add",
                                  env={"ANEMONE_PYTHON": str(python)})
    try:
        http = addresses["HTTP"]
        wait_ready(http)
        assert not started.exists(), "at start-up"
        post = lambda path, body: urllib.request.urlopen(  # noqa: E731
            urllib.request.Request(f"http://{http}{path}", json.dumps(body).encode()), timeout=30).read()
        # A load after start-up, an inference, every model's statistics and
        # the settings: none of them needs the Python backend.
        post("/v2/repository/models/add/load", {})
        x, y = np.array([[1, 2, 3, 4]], np.float32), np.array([[10, 20, 30, 40]], np.float32)
        body = {"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 4], "data": v.ravel().tolist()}
                           for n, v in (("x", x), ("y", y))]}
        out = {o["name"]: o["data"] for o in json.loads(post("/v2/models/add/infer", body))["outputs"]}
        assert out == {"sum": (x + y).ravel().tolist(), "diff": (x - y).ravel().tolist()}
        for path in ("/v2/models/stats", "/v2/anemone/config"):
            urllib.request.urlopen(f"http://{http}{path}", timeout=30).read()
        assert not started.exists(), "by a load, an inference, the statistics or the settings"
        # Reporting the backends runs its probe, once, with the wrapper
        # (so the check above could see one).
        metrics = urllib.request.urlopen(f"http://{http}/metrics", timeout=30).read().decode()
        assert 'backend="python"' in metrics
        urllib.request.urlopen(f"http://{http}/metrics", timeout=30).read()
        assert started.read_text().splitlines() == ["started"]
    finally:
        stop_serve(proc)
