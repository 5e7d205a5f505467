"""Starting `anemone serve` for a test: the binary (ANEMONE_BIN, else the
debug build), free ports, and the addresses it prints."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ort_reference_session(model):
    """An onnxruntime.InferenceSession (CPU) of `model` (a path or the bytes
    of one) whose answers are the same on every x86 CPU: exact 8-bit
    products (ONNX Runtime's `session.x64quantprecision`, as anemone sets by
    default; BACKENDS.md). Without it ONNX Runtime's kernels for uint8
    activations and int8 weights saturate on CPUs without VNNI (an AVX2 AMD
    EPYC): 41 to 75 quanta off in a QLinearConv, where the ONNX reference
    evaluator and tract-cpu agree. A model ONNX Runtime cannot load so (an
    S8S8 QGemm: the option turns its weights unsigned) gets the default
    session, as anemone does; its products do not saturate."""
    import onnxruntime as ort

    model = str(model) if isinstance(model, Path) else model
    options = ort.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 (onnxruntime's own exception types)
        return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def start_serve(repo, *flags, stderr=None, env=None, new_session=False):
    """`anemone serve` on `repo` with `flags`, on free ports; returns the
    process (its stdout still open after the address lines) and the
    addresses by protocol (`HTTP`, `gRPC`). `stderr` (the log) goes to the
    test's stderr unless given; `env` adds to the environment;
    `new_session` starts it in a process group of its own (as a shell's
    job), for signals sent to the whole group."""
    binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build --workspace --bin anemone` (scripts/test.sh does)")
    # Python models (backend: "python") run with this test's interpreter,
    # which has numpy, unless the caller chose another.
    env = dict(os.environ, **(env or {}))
    env.setdefault("ANEMONE_PYTHON", sys.executable)
    proc = subprocess.Popen(
        [str(binary), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
         "--exit-timeout-secs", "10", *flags],
        stdout=subprocess.PIPE, stderr=sys.stderr if stderr is None else stderr, text=True, env=env,
        start_new_session=new_session,
    )
    addresses = {}
    while len(addresses) < 2:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"anemone serve exited early with status {proc.wait()}")
        kind, _, rest = line.partition(" listening on ")
        if rest:
            addresses[kind] = rest.strip()
    return proc, addresses


def wait_ready(http, seconds=120):
    """Waits until the server at `http` says it is ready (every model it
    loads at start has loaded)."""
    import time

    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(http)
    deadline = time.time() + seconds
    while True:
        try:
            if client.is_server_ready():
                return
        except Exception:  # not answering yet
            pass
        if time.time() > deadline:
            pytest.fail(f"the server at {http} was not ready within {seconds} s")
        # Most servers here are ready a quarter of a second after start: a
        # fine poll saves about 0.1 s on each of the suite's 400-odd starts.
        time.sleep(0.02)


def stop_serve(proc):
    """Stops a server started by `start_serve`; it must exit 0 on SIGTERM."""
    import signal

    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=30)
    assert status == 0, "anemone serve must exit 0 on SIGTERM"


def python_repository(repo, examples=(), models=()):
    """Fills `repo` with Python models: copies of examples/python_models'
    `examples` (names), and `models`, each (name, config.pbtxt text,
    model.py text) in version 1."""
    import shutil

    for name in examples:
        shutil.copytree(ROOT / "examples/python_models" / name, repo / name)
    for name, config, source in models:
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(source)
    return repo


def until_gauges(http, what, holds, seconds=60):
    """Polls the server's /metrics every 20 ms until `holds(gauge)`, where
    gauge(name, model) is that per-model gauge's value; fails naming `what`
    after `seconds`. Returns False at once when the server has no anemone
    gauges (a peer such as tritonserver), True once `holds`."""
    import time

    import requests

    deadline = time.monotonic() + seconds
    while True:
        r = requests.get(f"http://{http}/metrics", timeout=10)
        if r.status_code != 200 or "anemone_inference_requests_in_flight" not in r.text:
            return False

        def gauge(name, model, text=r.text):
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(name + "{") and f'model="{model}"' in line)
        if holds(gauge):
            return True
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.02)
