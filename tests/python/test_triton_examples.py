"""Triton's own example clients against anemone serving Triton's own example
model repository (tests/triton_examples/: both copied unchanged from
triton-inference-server/client and /server; see its README.md).

This is a Triton user's first hour: `tritonserver --model-repository
docs/examples/model_repository`, then the `simple_*` clients. Each client
checks its own answers against numpy arithmetic (sums, differences, the
sequence models' control values) and exits non-zero on any difference; the
test runs each one and asserts that it exits 0 (and prints its PASS line
where it has one).

Three small patches are applied to copies (listed in PATCHES): the server's
name, a missing import in an upstream error path, and a status the upstream
client itself marks as Triton's bug.
"""
import re
import shutil
import subprocess
import sys

import pytest

from serve_support import ROOT, start_serve, stop_serve, wait_ready

EXAMPLES = ROOT / "tests/triton_examples"
CLIENTS = EXAMPLES / "clients"
# The models with a model file (densenet_onnx and inception_onnx are
# downloaded by Triton's fetch_models.sh; simple_identity is a Python model).
SERVED = ["simple", "simple_int8", "simple_string", "simple_sequence", "simple_dyna_sequence"]

# Clients run against a server that loaded the served models at start, and
# the line each prints on success (None: it prints none, its exit status says).
SERVING = {
    "simple_http_infer_client.py": None,
    "simple_grpc_infer_client.py": "PASS: infer",
    "simple_http_async_infer_client.py": None,
    "simple_grpc_async_infer_client.py": "PASS: Async infer",
    "simple_http_aio_infer_client.py": "PASS: infer",
    "simple_grpc_aio_infer_client.py": "PASS: grpc aio infer",
    "simple_http_health_metadata.py": None,
    "simple_grpc_health_metadata.py": None,
    "simple_http_shm_client.py": "PASS: system shared memory",
    "simple_grpc_shm_client.py": "PASS: system shared memory",
    "simple_http_shm_string_client.py": "PASS: system shared memory",
    "simple_grpc_shm_string_client.py": "PASS: system shared memory",
    "simple_grpc_keepalive_client.py": "PASS: KeepAlive",
    "simple_grpc_custom_args_client.py": "PASS: CustomArgs",
    "reuse_infer_objects_client.py": None,
    "reuse_infer_objects_client.py -i grpc": None,
    "grpc_explicit_int_content_client.py": None,
    "grpc_explicit_int8_content_client.py": None,
    "grpc_explicit_byte_content_client.py": "PASS: explicit string",
    "simple_http_sequence_sync_infer_client.py": "PASS: Sequence",
    "simple_grpc_sequence_sync_infer_client.py": "PASS: Sequence",
    "simple_grpc_sequence_stream_infer_client.py": "PASS: Sequence",
    "simple_grpc_aio_sequence_stream_infer_client.py": "PASS: grpc aio sequence stream",
}

# Edits to the copies, by client: (pattern, replacement, why).
PATCHES = {
    "simple_http_health_metadata.py": [
        (r'== "triton"', '== "anemone"', "the server's name"),
    ],
    "simple_grpc_health_metadata.py": [
        (r'== "triton"', '== "anemone"', "the server's name"),
        (r"^import tritonclient", "import sys\nimport tritonclient", "upstream uses sys.exit without importing sys"),
    ],
    "simple_grpc_model_control.py": [
        # Upstream: "TODO: [TRI-958] StatusCode.INVALID_ARGUMENT is more
        # appropriate here". anemone answers that, and refuses load files.
        (r'"StatusCode\.INTERNAL"', '"StatusCode.INVALID_ARGUMENT"', "Triton's own TODO"),
        (r'"failed to poll from model repository" not in', '"is refused" not in', "anemone's refusal"),
    ],
}


def patched(name, into):
    """The client `name` copied into `into`, with its PATCHES applied (each
    must match, so a changed upstream file fails here, not silently)."""
    text = (CLIENTS / name).read_text()
    for pattern, replacement, why in PATCHES.get(name, []):
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"{name}: patch for {why!r} no longer applies"
    path = into / name
    path.write_text(text)
    return path


def run_client(path, url, passed, *args):
    out = subprocess.run(
        [sys.executable, str(path), "-u", url, *args], capture_output=True, text=True, timeout=120
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"{path.name} exited {out.returncode}:\n{text[-3000:]}"
    if passed is not None:
        assert passed in text, f"{path.name} did not print {passed!r}:\n{text[-3000:]}"
    # A failed check prints one of these and exits; make sure none slipped by.
    assert "error: incorrect" not in text and "FAILED" not in text, text[-3000:]


def repository(into, names):
    repo = into / "model_repository"
    for name in names:
        shutil.copytree(EXAMPLES / "model_repository" / name, repo / name)
    return repo


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton-examples")
    proc, addresses = start_serve(repository(tmp, SERVED))
    wait_ready(addresses["HTTP"])
    yield tmp, addresses
    stop_serve(proc)


def url_for(addresses, client, args):
    """The address a client talks to: HTTP unless it is a gRPC client (by
    its name, or `-i grpc`)."""
    grpc = "grpc" in args or ("_http_" not in client and "grpc" in client)
    return addresses["gRPC"] if grpc else addresses["HTTP"]


@pytest.mark.parametrize("client", sorted(SERVING))
def test_tritons_example_client_passes(serving, client):
    tmp, addresses = serving
    name, *args = client.split()
    run_client(patched(name, tmp), url_for(addresses, name, args), SERVING[client], *args)


@pytest.mark.parametrize(
    "client,models",
    [
        # The HTTP client counts seven models in the repository, the gRPC one
        # eight (Triton's repository, once with and once without simple_identity).
        ("simple_http_model_control.py", 7),
        ("simple_grpc_model_control.py", 8),
    ],
)
def test_tritons_model_control_client_passes(tmp_path, client, models):
    names = sorted(p.name for p in (EXAMPLES / "model_repository").iterdir() if p.is_dir())
    if models == 7:
        names.remove("simple_identity")
    assert len(names) == models
    proc, addresses = start_serve(repository(tmp_path, names), "--model-control-mode", "explicit")
    try:
        url = url_for(addresses, client, [])
        run_client(patched(client, tmp_path), url, "PASS: model control" if "_http_" in client else None)
    finally:
        stop_serve(proc)


# --- the sequence batcher's rules, beyond what the example clients check ---

IDLE_MS = 300


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    """The two sequence models, and simple_sequence again with a short idle
    time (`simple_sequence_idle`)."""
    tmp = tmp_path_factory.mktemp("sequences")
    repo = repository(tmp, ["simple_sequence", "simple_dyna_sequence"])
    idle = repo / "simple_sequence_idle"
    shutil.copytree(repo / "simple_sequence", idle)
    config = (idle / "config.pbtxt").read_text().replace('name: "simple_sequence"', 'name: "simple_sequence_idle"')
    config = config.replace("sequence_batching {", f"sequence_batching {{\n  max_sequence_idle_microseconds: {IDLE_MS * 1000}")
    (idle / "config.pbtxt").write_text(config)
    proc, addresses = start_serve(repo)
    wait_ready(addresses["HTTP"])
    yield repo, addresses
    stop_serve(proc)


def clients(addresses):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return [
        (httpclient, httpclient.InferenceServerClient(addresses["HTTP"])),
        (grpcclient, grpcclient.InferenceServerClient(addresses["gRPC"])),
    ]


def send(module, client, model, value, **sequence):
    data = __import__("numpy").full((1, 1), value, dtype="int32")
    inp = module.InferInput("INPUT", [1, 1], "INT32")
    inp.set_data_from_numpy(data)
    return client.infer(model, [inp], **sequence).as_numpy("OUTPUT")


def test_dyna_sequence_gets_start_end_ready_and_its_id(sequences):
    """simple_dyna_sequence reads START, END, READY and CORRID: each answer is
    checked against ONNX Runtime's Python API running the same file with the
    control values Triton's sequence batcher gives (START on the first
    request, END on the last, READY always, CORRID the sequence's id)."""
    import numpy as np
    import onnxruntime as ort

    repo, addresses = sequences
    session = ort.InferenceSession(str(repo / "simple_dyna_sequence/1/model.onnx"))
    values = [0, 11, 7, 5, 3]
    for k, (module, client) in enumerate(clients(addresses)):
        seq = 4_000_000_000 + k  # beyond 32 bits: the UINT64 control keeps it
        for i, value in enumerate(values):
            start, end = i == 0, i == len(values) - 1
            got = send(module, client, "simple_dyna_sequence", value,
                       sequence_id=seq, sequence_start=start, sequence_end=end)
            one = lambda v, dt="int32": np.full((1, 1), v, dtype=dt)  # noqa: E731
            (want,) = session.run(None, {
                "INPUT": one(value), "START": one(int(start)), "END": one(int(end)),
                "READY": one(1), "CORRID": one(seq, "uint64"),
            })
            np.testing.assert_array_equal(got, want, err_msg=f"request {i} of sequence {seq}")


def test_sequence_rules_are_triton_s(sequences):
    from tritonclient.utils import InferenceServerException

    _, addresses = sequences
    for module, client in clients(addresses):
        grpc = module.__name__.endswith("grpc")

        def refused(needle, call):
            with pytest.raises(InferenceServerException) as e:
                call()
            assert needle in e.value.message(), e.value.message()
            assert e.value.status() == ("StatusCode.INVALID_ARGUMENT" if grpc else "400"), e.value.status()

        # The control inputs are the server's: not in the metadata, refused in a request.
        meta = client.get_model_metadata("simple_dyna_sequence")
        names = [i.name for i in meta.inputs] if grpc else [i["name"] for i in meta["inputs"]]
        assert names == ["INPUT"], names
        # A control input sent by the client is refused.
        import numpy as np
        start = module.InferInput("START", [1, 1], "INT32")
        start.set_data_from_numpy(np.ones((1, 1), dtype=np.int32))
        value = module.InferInput("INPUT", [1, 1], "INT32")
        value.set_data_from_numpy(np.ones((1, 1), dtype=np.int32))
        refused("unknown input 'START': the model's inputs are INPUT",
                lambda: client.infer("simple_sequence", [value, start], sequence_id=80, sequence_start=True))
        refused("must specify a non-zero or non-empty correlation ID",
                lambda: send(module, client, "simple_sequence", 1))
        refused("must specify the START flag on the first request",
                lambda: send(module, client, "simple_sequence", 1, sequence_id=77))
        # A string id is a sequence too (simple_sequence has no CORRID control) ...
        assert send(module, client, "simple_sequence", 5, sequence_id="s-1", sequence_start=True)[0][0] == 6
        assert send(module, client, "simple_sequence", 5, sequence_id="s-1", sequence_end=True)[0][0] == 5
        # ... which is closed after its END.
        refused("must specify the START flag",
                lambda: send(module, client, "simple_sequence", 5, sequence_id="s-1"))
        # A CORRID control of UINT64 cannot take a string id.
        refused("is a string, but the model's correlation ID control input is UINT64",
                lambda: send(module, client, "simple_dyna_sequence", 1, sequence_id="s-2", sequence_start=True))
        # One row a request.
        inp = module.InferInput("INPUT", [2, 1], "INT32")
        inp.set_data_from_numpy(np.ones((2, 1), dtype=np.int32))
        refused("must specify batch-size 1 due to requirements of sequence batcher",
                lambda: client.infer("simple_sequence", [inp], sequence_id=78, sequence_start=True))
        # A sequence idle for longer than max_sequence_idle_microseconds is closed.
        import time
        assert send(module, client, "simple_sequence_idle", 2, sequence_id=79, sequence_start=True)[0][0] == 3
        assert send(module, client, "simple_sequence_idle", 2, sequence_id=79)[0][0] == 2
        time.sleep(IDLE_MS / 1000 * 2)
        refused("must specify the START flag",
                lambda: send(module, client, "simple_sequence_idle", 2, sequence_id=79))
        # Other models ignore the sequence parameters, as Triton's do.
        client.get_model_metadata("simple_sequence")


def test_interleaved_sequences_from_many_threads(sequences):
    """Sequences sent at once from many threads, their requests interleaved
    in the server's batches: each answer is its own request's."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    _, addresses = sequences

    def one_sequence(seq):
        client = grpcclient.InferenceServerClient(addresses["gRPC"])
        got = []
        for i in range(6):
            value = seq * 10 + i
            got.append(int(send(grpcclient, client, "simple_dyna_sequence", value, sequence_id=seq,
                                sequence_start=i == 0, sequence_end=i == 5)[0][0]))
        # INPUT + START on the first; INPUT + END * CORRID on the last.
        want = [seq * 10 + i + (i == 0) + (seq if i == 5 else 0) for i in range(6)]
        assert got == want, (seq, got, want)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one_sequence, range(1, 33)))
