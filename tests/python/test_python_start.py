"""What starting Python costs a server, and when it is paid.

- A repository without a Python model starts no interpreter: the Python
  backend's probe runs when a Python model loads or when the backends are
  reported (`/metrics`), not at each start or load.
- Each model process reads the stub's compiled code from the user's cache
  folder (`$XDG_CACHE_HOME/anemone/python-stub`) instead of compiling its
  91 KB of source: written by the first process, read by the next, and
  never read when it is not this user's or not valid code, in which case
  the process compiles, as it does where the folder cannot be used.
"""
import importlib.util
import json
import marshal
import os
import shutil
import stat
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from serve_support import start_serve, stop_serve, wait_ready

ROOT = Path(__file__).resolve().parents[2]
STUB_SOURCES = ROOT / "crates/anemone-backends/src/python/stub"
STUB_FILES = sorted(p.name for p in STUB_SOURCES.glob("*.py"))

# A model that says whether the utilities it runs with carry a marker that
# only a planted cache file puts there.
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        marked = float(getattr(pb_utils, "ANEMONE_TEST_MARKER", 0))
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + marked)]) for r in requests]
"""

CONFIG = """
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""


def python_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "marked" / "1").mkdir(parents=True)
    (repo / "marked" / "1" / "model.py").write_text(MODEL)
    (repo / "marked" / "config.pbtxt").write_text(CONFIG)
    return repo


def infer_marked(repo, env):
    """Starts a server on `repo` with `env`, asks the model once, stops it;
    returns what it added to X (1.0 if the planted code ran, else 0.0)."""
    proc, addresses = start_serve(repo, env=env)
    try:
        http = addresses["HTTP"]
        wait_ready(http)
        x = np.array([1.5, -2.0], np.float32)
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": x.tolist()}]}
        request = urllib.request.Request(f"http://{http}/v2/models/marked/infer", json.dumps(body).encode())
        y = np.array(json.loads(urllib.request.urlopen(request, timeout=60).read())["outputs"][0]["data"], np.float32)
        added = y - x
        assert added[0] == added[1], y
        return float(added[0])
    finally:
        stop_serve(proc)


def cached(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def first_start(tmp_path):
    """A Python model served once with its own cache folder: the
    repository, the environment, and the stub's folder the start filled."""
    cache = tmp_path / "cache"
    repo, env = python_repo(tmp_path), {"XDG_CACHE_HOME": str(cache)}
    assert infer_marked(repo, env) == 0.0
    return repo, env, cache / "anemone" / "python-stub"


def plant_marker(folder):
    """Replaces the cached code of pb_utils' model loading with code that
    also sets the marker; returns that file."""
    models = folder / next(f for f in cached(folder) if f.startswith("triton_python_backend_models.py."))
    source = (STUB_SOURCES / "triton_python_backend_models.py").read_text()
    models.write_bytes(marshal.dumps(
        compile(source + "\nANEMONE_TEST_MARKER = 1\n", "triton_python_backend_models.py", "exec")))
    return models


def test_the_stub_is_compiled_once_and_read_by_the_next_process(tmp_path):
    repo, env, folder = first_start(tmp_path)
    # One file per source, named by the sources' digest and this Python's
    # bytecode tag, in a folder only this user can enter.
    files = cached(folder)
    assert sorted(f.split(".py.")[0] + ".py" for f in files) == STUB_FILES, files
    tag = f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}-O0"
    assert all(f.split(".py.")[1].count(".") == 1 and f.endswith(tag) for f in files), files
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # Each holds the code of its source.
    for f in files:
        source = (STUB_SOURCES / (f.split(".py.")[0] + ".py")).read_text()
        code = marshal.loads((folder / f).read_bytes())
        assert code.co_filename == f.split(".py.")[0] + ".py"
        assert code.co_code == compile(source, code.co_filename, "exec").co_code, f

    # The next process reads them: plant a marker in one and see it run.
    models = plant_marker(folder)
    assert infer_marked(repo, env) == 1.0

    # Garbage there is compiled over, and the model serves.
    models.write_bytes(b"\x00not marshal data")
    assert infer_marked(repo, env) == 0.0
    assert marshal.loads(models.read_bytes()).co_filename == "triton_python_backend_models.py"

    # A stub of another anemone (another digest) is removed when this one
    # writes its own.
    stale = folder / ("anemone_python_stub.py." + "0" * 32 + "." + files[0].rsplit(".", 1)[1])
    stale.write_bytes(b"")
    (folder / next(f for f in files if f.startswith("anemone_python_stub.py."))).unlink()
    assert infer_marked(repo, env) == 0.0
    assert not stale.exists()
    assert cached(folder) == files


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_code_another_user_owns_is_not_run(tmp_path):
    repo, env, folder = first_start(tmp_path)
    models = plant_marker(folder)
    os.chown(models, 12345, 12345)
    assert infer_marked(repo, env) == 0.0
    # A folder others can write is not used at all.
    plant_marker(folder)
    folder.chmod(0o777)
    assert infer_marked(repo, env) == 0.0


@pytest.mark.parametrize("where", ["a file", "/dev/null"])
def test_without_a_usable_folder_each_process_compiles(tmp_path, where):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    cache = blocked if where == "a file" else Path("/dev/null")
    repo = python_repo(tmp_path)
    assert infer_marked(repo, {"XDG_CACHE_HOME": str(cache)}) == 0.0
    assert blocked.read_text() == ""


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


def test_a_folder_named_in_the_servers_environment_is_not_used(tmp_path):
    """The process reads only the folder the server checked: a variable of
    the same name in the server's own environment is not passed on."""
    repo, _, folder = first_start(tmp_path)
    plant_marker(folder)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    env = {"XDG_CACHE_HOME": str(blocked), "ANEMONE_PYTHON_CODE_CACHE": str(folder)}
    assert infer_marked(repo, env) == 0.0
