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

import numpy as np
import pytest

from serve_support import ROOT, start_serve, stop_serve, wait_ready

EXAMPLES = ROOT / "tests/triton_examples"
CLIENTS = EXAMPLES / "clients"
# The models with a model file (densenet_onnx and inception_onnx are
# downloaded by Triton's fetch_models.sh); simple_identity is a Python model
# (model.py), run by anemone's python backend.
SERVED = ["simple", "simple_int8", "simple_string", "simple_identity", "simple_sequence", "simple_dyna_sequence"]

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
    # simple_string (ONNX), then simple_identity (Python) with strings
    # holding a NUL byte and raw 4-byte blobs, as binary data and as JSON.
    "simple_http_string_infer_client.py": "PASS: string",
    "simple_grpc_string_infer_client.py": "PASS: string",
    "simple_http_sequence_sync_infer_client.py": "PASS: Sequence",
    "simple_grpc_sequence_sync_infer_client.py": "PASS: Sequence",
    "simple_grpc_sequence_stream_infer_client.py": "PASS: Sequence",
    "simple_grpc_aio_sequence_stream_infer_client.py": "PASS: grpc aio sequence stream",
    # `-d`: the "dyna" sequence models, `simple_dyna_sequence` for integer
    # ids and `simple_string_dyna_sequence` for string ids (see
    # STRING_DYNA_CONFIG).
    "simple_http_sequence_sync_infer_client.py -d": "PASS: Sequence",
    "simple_grpc_sequence_sync_infer_client.py -d": "PASS: Sequence",
    "simple_grpc_sequence_stream_infer_client.py -d": "PASS: Sequence",
    "simple_grpc_aio_sequence_stream_infer_client.py -d": "PASS: grpc aio sequence stream",
}

# Triton's `-d` clients also use `simple_string_dyna_sequence`, which
# Triton's repository does not have: in Triton's own tests it is a custom C++
# backend ("dyna_sequence") that keeps each sequence's running sum, takes a
# string correlation id, and adds the id (read as a number) to the answer of
# the sequence's last request. This is the same model in ONNX, with the sum
# as implicit state: OUTPUT = INPUT + STATE_IN + END * int(CORRID), and the
# next STATE_IN is OUTPUT (zeros at a start). The clients check every answer
# against their own arithmetic.
STRING_DYNA_CONFIG = """
name: "simple_string_dyna_sequence"
platform: "onnxruntime_onnx"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 10000000
  oldest { max_candidate_sequences: 1024 max_queue_delay_microseconds: 10000 }
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }
  ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
}
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""


def string_dyna_sequence(repo):
    """Writes `simple_string_dyna_sequence` (see STRING_DYNA_CONFIG) into `repo`."""
    import onnx
    from onnx import TensorProto, helper

    def int32(name):
        return helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 1])

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT", "STATE_IN"], ["sum"]),
            helper.make_node("Cast", ["CORRID"], ["id"], to=TensorProto.INT32),
            helper.make_node("Mul", ["END", "id"], ["at_end"]),
            helper.make_node("Add", ["sum", "at_end"], ["OUTPUT"]),
            helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"]),
        ],
        "simple_string_dyna_sequence",
        [int32("INPUT"), int32("START"), int32("END"), int32("READY"),
         helper.make_tensor_value_info("CORRID", TensorProto.STRING, ["batch", 1]), int32("STATE_IN")],
        [int32("OUTPUT"), int32("STATE_OUT")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = repo / "simple_string_dyna_sequence"
    (folder / "1").mkdir(parents=True)
    onnx.save(model, folder / "1/model.onnx")
    (folder / "config.pbtxt").write_text(STRING_DYNA_CONFIG)

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


def warm_dyna_sequence(repo):
    """`simple_dyna_sequence` again as `dyna_warm`, with a warm-up sample
    that names only the input a request sends (the server gives the
    sequence's controls, as to a one-request sequence)."""
    folder = repo / "dyna_warm"
    shutil.copytree(repo / "simple_dyna_sequence", folder)
    config = (folder / "config.pbtxt").read_text()
    config = config.replace('name: "simple_dyna_sequence"', 'name: "dyna_warm"')
    assert 'name: "dyna_warm"' in config
    config += ('model_warmup [ { name: "w" batch_size: 1 inputs { key: "INPUT" '
               'value: { data_type: TYPE_INT32 dims: [ 1 ] random_data: true } } } ]\n')
    (folder / "config.pbtxt").write_text(config)


RESHAPED_CONFIG = """
name: "simple_reshaped"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape { shape: [ 16 ] } },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape { shape: [ 16 ] } }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape { shape: [ 16 ] } },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 4, 4 ] reshape { shape: [ 16 ] } }
]
model_warmup [ { name: "w" batch_size: 2
  inputs { key: "INPUT0" value: { data_type: TYPE_INT32 dims: [ 4, 4 ] random_data: true } }
  inputs { key: "INPUT1" value: { data_type: TYPE_INT32 dims: [ 4, 4 ] zero_data: true } } } ]
"""


DYNA_ENSEMBLE_CONFIG = """
name: "dyna_ensemble"
platform: "ensemble"
max_batch_size: 8
response_cache { enable: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "simple_string_dyna_sequence" model_version: -1
  input_map { key: "INPUT" value: "IN" } output_map { key: "OUTPUT" value: "OUT" } } ] }
"""


def reshaped_simple(repo):
    """Triton's `simple` as `simple_reshaped`: requests and its warm-up
    sample in [4, 4], the model's [16] given by `reshape`."""
    folder = repo / "simple_reshaped"
    (folder / "1").mkdir(parents=True)
    shutil.copy(repo / "simple/1/model.onnx", folder / "1/model.onnx")
    (folder / "config.pbtxt").write_text(RESHAPED_CONFIG)


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton-examples")
    repo = repository(tmp, SERVED)
    string_dyna_sequence(repo)
    warm_dyna_sequence(repo)
    reshaped_simple(repo)
    (repo / "dyna_ensemble/1").mkdir(parents=True)
    (repo / "dyna_ensemble/config.pbtxt").write_text(DYNA_ENSEMBLE_CONFIG)
    # No re-timing on real requests: the other tests' traffic would move a
    # model and replace the load's timing in the index, which
    # test_models_are_timed_on_every_cpu_engine_as_requests_would_run reads.
    proc, addresses = start_serve(repo, "--cache-config", "local,size=1MiB", "--retime", "false")
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


def test_simple_wraps_int32_overflow_as_numpy_does(serving):
    """perf_analyzer's random INT32 data for `simple`: sums and differences
    past INT32's range wrap, as in numpy and ONNX Runtime, on the backend
    the model was loaded on (a debug build's overflow checks inside tract
    used to panic here, fail the request and move the model to another
    backend)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    _, addresses = serving
    rng = np.random.default_rng(11)
    a = rng.integers(-2**31, 2**31, size=(1, 16), dtype=np.int32)
    b = rng.integers(-2**31, 2**31, size=(1, 16), dtype=np.int32)
    a[0, :2], b[0, :2] = 2**31 - 1, [1, -1]
    with np.errstate(over="ignore"):
        want_sum, want_diff = a + b, a - b
    assert (want_sum[0, 0] == -2**31) and (want_diff[0, 1] == -2**31), "the data must overflow"
    for module, url in [(httpclient, addresses["HTTP"]), (grpcclient, addresses["gRPC"])]:
        client = module.InferenceServerClient(url)
        inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = client.infer("simple", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), want_sum)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), want_diff)
    selection = httpclient.InferenceServerClient(addresses["HTTP"]).get_model_metadata("simple")
    assert "fallback_from" not in selection.get("backend_selection", {}), selection


def test_simple_string_refuses_strings_that_are_not_numbers(serving):
    """perf_analyzer's random strings for `simple_string` (which casts its
    BYTES inputs to INT32): the client's data is at fault, so 400 /
    INVALID_ARGUMENT, not a backend failure; numbers as strings still add
    up as numpy says."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    _, addresses = serving

    def send(module, client, a, b):
        inputs = [module.InferInput(n, [1, 16], "BYTES") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(np.array([a], dtype=object))
        inputs[1].set_data_from_numpy(np.array([b], dtype=object))
        return client.infer("simple_string", inputs)

    a, b = np.arange(16, dtype=np.int32), np.full(16, 7, dtype=np.int32)
    words = [f"w{i}x".encode() for i in range(16)]
    for module, url, refused in [(httpclient, addresses["HTTP"], "400"),
                                 (grpcclient, addresses["gRPC"], "StatusCode.INVALID_ARGUMENT")]:
        client = module.InferenceServerClient(url)
        with pytest.raises(InferenceServerException) as e:
            send(module, client, words, [str(v).encode() for v in b])
        assert e.value.status() == refused, e.value
        result = send(module, client, [str(v).encode() for v in a], [str(v).encode() for v in b])
        got = [int(v) for v in result.as_numpy("OUTPUT0").reshape(-1)]
        assert got == list(a + b), got


def test_a_sequence_id_the_model_cannot_read_is_named_as_the_clients(serving):
    """`simple_string_dyna_sequence` reads its string correlation id as a
    number: an id that is not one is the client's fault (400 /
    INVALID_ARGUMENT), and the error names what the client sent (INPUT and
    sequence_id), not the control and state inputs the server gives the
    model (START, END, READY, STATE_IN), which the client never sent. The
    model goes on serving: a numeric id then runs a whole sequence."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    _, addresses = serving
    for k, (module, url, refused) in enumerate([
            (httpclient, addresses["HTTP"], "400"),
            (grpcclient, addresses["gRPC"], "StatusCode.INVALID_ARGUMENT")]):
        client = module.InferenceServerClient(url)
        x = module.InferInput("INPUT", [1, 1], "INT32")
        x.set_data_from_numpy(np.array([[5]], dtype=np.int32))
        with pytest.raises(InferenceServerException) as e:
            client.infer("simple_string_dyna_sequence", [x], sequence_id=f"id{k}",
                         sequence_start=True)
        assert e.value.status() == refused, e.value
        text = e.value.message()
        assert "'INPUT, sequence_id (given to the model as CORRID)'" in text, text
        for supplied in ["START", "END", "READY", "STATE_IN"]:
            assert supplied not in text, text
        r = client.infer("simple_string_dyna_sequence", [x], sequence_id=str(300 + k),
                         sequence_start=True, sequence_end=True)
        assert int(r.as_numpy("OUTPUT")[0][0]) == 5 + 300 + k


def test_models_are_timed_on_every_cpu_engine_as_requests_would_run(serving):
    """Choosing the CPU engine (in a comparison process, by default) times
    each engine on what a request would run: a sequence model as a
    one-request sequence, with its controls, both with the model's own
    warm-up sample (which names only INPUT) and with the synthetic warm-up
    (a string correlation id that the model reads as a number); a reshaped
    model's warm-up sample (written in its config dims) in the model's
    shapes. Before, random text failed the engine, and the samples failed
    every engine, so the engine was picked untimed and the index said the
    warm-up failed."""
    import json
    import urllib.request

    _, addresses = serving
    req = urllib.request.Request(f"http://{addresses['HTTP']}/v2/repository/index", data=b"{}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        index = {m["name"]: m for m in json.load(r)}
    for name in ["dyna_warm", "simple_dyna_sequence", "simple_string_dyna_sequence", "simple_reshaped"]:
        reason = index[name]["reason"]
        assert index[name]["state"] == "READY", index[name]
        assert "warm-up failed" not in reason, reason
        assert re.search(r"warm-up median: \S+ \d+ µs, \S+ \d+ µs", reason), reason


def test_a_reshaped_warm_model_answers_in_its_config_dims(serving):
    """`simple_reshaped` serves [4, 4] as numpy adds and subtracts."""
    import tritonclient.http as httpclient

    _, addresses = serving
    client = httpclient.InferenceServerClient(addresses["HTTP"])
    rng = np.random.default_rng(3)
    a, b = (rng.integers(-1000, 1000, (2, 4, 4), dtype=np.int32) for _ in range(2))
    inputs = [httpclient.InferInput(n, [2, 4, 4], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple_reshaped", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_a_cached_ensemble_runs_every_request_of_a_sequence(serving):
    """An ensemble with `response_cache` over a sequence model: the same
    input sent again in a sequence is answered by the sequence (a running
    sum kept as the step's state), not by the cache, over both protocols.
    Every request of the sequence was answered from the cache (5, 5, 5, 5),
    and the step's sequence never moved on or ended."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    _, addresses = serving
    for k, (module, url) in enumerate([(httpclient, addresses["HTTP"]), (grpcclient, addresses["gRPC"])]):
        client = module.InferenceServerClient(url)
        sid = str(2000 + k)
        got = []
        for i in range(4):
            x = module.InferInput("IN", [1, 1], "INT32")
            x.set_data_from_numpy(np.array([[5]], dtype=np.int32))
            r = client.infer("dyna_ensemble", [x], sequence_id=sid, sequence_start=i == 0, sequence_end=i == 3)
            got.append(int(r.as_numpy("OUT")[0][0]))
        # The running sum, and the correlation id added to the last answer.
        assert got == [5, 10, 15, 20 + int(sid)], got


def test_anemone_bench_sends_sequences_to_a_sequence_model(serving, tmp_path):
    """`anemone bench` on a sequence model (which refuses a request without a
    correlation ID): each worker sends sequences of --sequence-length under
    an ID of its own, a number for `simple_sequence`, a string for
    `simple_string_dyna_sequence` and for the ensemble over it, over gRPC
    and HTTP, and none fails. With
    one worker and no warm-up the sequence's end lands exactly: after 2
    whole sequences ID 1 is closed (a request without sequence_start is
    refused), after 1.5 it is open (the same request is taken). A model
    without sequence batching gets no sequence parameters."""
    import json
    import os
    from serve_support import ROOT
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    _, addresses = serving
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))

    def bench(model, protocol, *args):
        report = tmp_path / f"{model}-{protocol}.json"
        url = addresses["gRPC"] if protocol == "grpc" else addresses["HTTP"]
        run = subprocess.run([binary, "bench", "--model", model, "--protocol", protocol,
                              "--url", f"http://{url}", "--json-report", str(report), *args],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        return json.loads(report.read_text()), run.stdout

    for model, ids in [("simple_sequence", "numbers"), ("simple_string_dyna_sequence", "strings"),
                       ("dyna_ensemble", "strings")]:
        for protocol in ["grpc", "http", "http-binary"]:
            report, text = bench(model, protocol, "-c", "3", "-n", "60", "--sequence-length", "4")
            assert (report["requests"], report["errors"]) == (60, 0), report
            assert report["sequence_length"] == 4, report
            assert f"IDs 1 to 3 ({ids})" in text, text

    client = httpclient.InferenceServerClient(addresses["HTTP"])

    def without_start():
        x = httpclient.InferInput("INPUT", [1, 1], "INT32")
        x.set_data_from_numpy(np.array([[1]], dtype=np.int32))
        return client.infer("simple_string_dyna_sequence", [x], sequence_id="1")

    bench("simple_string_dyna_sequence", "grpc", "-c", "1", "-n", "8", "--warmup", "0",
          "--sequence-length", "4")
    with pytest.raises(InferenceServerException) as e:
        without_start()
    assert e.value.status() == "400", e.value
    bench("simple_string_dyna_sequence", "grpc", "-c", "1", "-n", "6", "--warmup", "0",
          "--sequence-length", "4")
    without_start()  # the third request of an open sequence

    # perf_analyzer's --sequence-id-range: the one worker sends under 500,
    # leaving that sequence open; a range narrower than --concurrency is refused.
    report, text = bench("simple_string_dyna_sequence", "grpc", "-c", "1", "-n", "6",
                         "--warmup", "0", "--sequence-length", "4", "--sequence-id-range", "500:501")
    assert "IDs 500 to 500 (strings)" in text and report["first_sequence_id"] == 500, text
    x = httpclient.InferInput("INPUT", [1, 1], "INT32")
    x.set_data_from_numpy(np.array([[1]], dtype=np.int32))
    client.infer("simple_string_dyna_sequence", [x], sequence_id="500")
    narrow = subprocess.run([binary, "bench", "--model", "simple_sequence", "-c", "3",
                             "--url", f"http://{addresses['gRPC']}", "--sequence-id-range", "1:3"],
                            capture_output=True, text=True, timeout=60)
    assert narrow.returncode == 1, narrow.stdout + narrow.stderr
    assert "holds 2 IDs, fewer than --concurrency 3" in narrow.stderr, narrow.stderr

    report, text = bench("simple", "grpc", "-n", "5")
    assert report["sequence_length"] is None and report["errors"] == 0, report
    assert "sequences" not in text, text
