"""The `anemone` command line as README.md, docs/BACKENDS.md and docs/DEPLOY.md
describe it, tried as a new user (and a careless operator) would: every
subcommand, backend lists and strict mode, malformed input files, silly
bench parameters, several repositories, the shutdown timeline and the
container's settings given as environment variables.

Each expectation comes from the documents; a test marked xfail(strict) is a
place where the program does not do what they say."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
from onnx import TensorProto, helper

from serve_support import ROOT

BIN = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
ADD = ROOT / "examples/models/add/1/model.onnx"
LOOP = ROOT / "fixtures/generated/loop_control/model.onnx"
UNSUPPORTED = ROOT / "fixtures/generated/bad/unsupported_op.onnx"


# ---------------------------------------------------------------- helpers


def anemone(*args, env=None, timeout=60):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=full_env)


def save_model(path, nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(
        nodes, "m",
        [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
        initializer=list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def det_model(path):
    """`Det`: ONNX Runtime runs it, tract 0.23.9 has no such operator."""
    return save_model(path, [helper.make_node("Det", ["x"], ["y"])],
                      [("x", TensorProto.FLOAT, [2, 2])], [("y", TensorProto.FLOAT, [])])


TABLE = np.arange(8, dtype=np.float32).reshape(4, 2)


def gather_model(path):
    """Rows of a constant 4x2 table picked by the int64 input `idx`."""
    table = helper.make_tensor("tbl", TensorProto.FLOAT, [4, 2], TABLE.flatten().tolist())
    return save_model(path, [helper.make_node("Gather", ["tbl", "idx"], ["y"], axis=0)],
                      [("idx", TensorProto.INT64, [3])], [("y", TensorProto.FLOAT, [3, 2])], [table])


def add_model(repo, name, version=1, config=None):
    (repo / name / str(version)).mkdir(parents=True, exist_ok=True)
    shutil.copy(ADD, repo / name / str(version) / "model.onnx")
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)


def params(**kv):
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in kv.items())


class Server:
    """`anemone serve` on free ports; stderr goes to a file the test can read."""

    def __init__(self, tmp, repos, *flags, env=None, ports=True):
        self.err_path = Path(tmp) / f"serve-{time.monotonic_ns()}.err"
        full_env = dict(os.environ)
        full_env.update(env or {})
        args = [str(BIN), "serve"]
        for repo in repos:
            args += ["--model-repository", str(repo)]
        if ports:
            args += ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
        args += [str(f) for f in flags]
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, text=True, env=full_env)
        self.addr = {}
        self.table = []
        deadline = time.time() + 60
        while len(self.addr) < 2:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                self.err.close()
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.stderr()}")
            kind, _, rest = line.partition(" listening on ")
            if rest:
                self.addr[kind] = rest.strip()
            assert time.time() < deadline
        self.http = "http://" + self.addr["HTTP"]
        # the table of models follows once they have loaded; readiness may
        # stay false (strict readiness) when one is UNAVAILABLE, so wait on
        # the repository index instead.
        while time.time() < deadline:
            try:
                index = requests.post(self.http + "/v2/repository/index", timeout=5).json()
                if index and all(m.get("state") in ("READY", "UNAVAILABLE") for m in index):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def index(self):
        return {m["name"]: m for m in requests.post(self.http + "/v2/repository/index", timeout=10).json()}

    def metadata(self, model):
        return requests.get(f"{self.http}/v2/models/{model}", timeout=10).json()

    def metrics(self):
        return requests.get(self.http + "/metrics", timeout=10).text

    def infer(self, model, inputs, outputs=None):
        body = {"inputs": inputs}
        if outputs:
            body["outputs"] = [{"name": o} for o in outputs]
        return requests.post(f"{self.http}/v2/models/{model}/infer", json=body, timeout=60)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode


def fp32(name, array):
    array = np.asarray(array, np.float32)
    return {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.flatten().tolist()}


# ------------------------------------------------------- shared server


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One server over a repository that exercises the selection rules: the
    README's `add`; `det`, which only ONNX Runtime can run; a config that
    misspells a backend; a strict config whose first backend cannot load
    its model; a list naming a backend this binary lacks; and two Gather
    models pinned to tract-cpu first (one strict)."""
    tmp = tmp_path_factory.mktemp("mixed")
    repo = tmp / "repo"
    add_model(repo, "add")
    det_model(repo / "det/1/model.onnx")
    add_model(repo, "typo", config=params(backends="onnxruntim,tract-cpu"))
    det_model(repo / "strictdet/1/model.onnx")
    (repo / "strictdet/config.pbtxt").write_text(params(backends="tract-cpu,onnxruntime", strict="true"))
    add_model(repo, "cudafirst", config=params(backends="tract-cuda,onnxruntime,tract-cpu"))
    gather_model(repo / "gather/1/model.onnx")
    (repo / "gather/config.pbtxt").write_text(params(backends="tract-cpu,onnxruntime"))
    gather_model(repo / "gather_strict/1/model.onnx")
    (repo / "gather_strict/config.pbtxt").write_text(params(backends="tract-cpu,onnxruntime", strict="true"))
    server = Server(tmp, [repo], "--retime-after-requests", "3", "--exit-timeout-secs", "5")
    yield server
    assert server.stop() == 0, "anemone serve must exit 0 on SIGTERM"


# ------------------------------------------------------- backends: CLI


def test_models_json_auto_mode_times_every_cpu_engine_and_exits_0():
    """README: `models ... --backends auto` prints each model's backend and, in
    auto mode, the warm-up timings; BACKENDS.md: the fastest serves."""
    out = anemone("models", "--model-repository", ROOT / "examples/models", "--backends", "auto", "--json")
    assert out.returncode == 0, out.stderr
    (add,) = json.loads(out.stdout)
    assert add["name"] == "add" and add["state"] == "READY"
    assert add["selection"]["mode"] == "auto"
    attempts = {a["backend"]: a for a in add["selection"]["attempts"]}
    assert set(attempts) == {"onnxruntime", "tract-cpu"}, attempts
    assert all(a["warmup_us"] > 0 for a in attempts.values()), attempts
    chosen = [b for b, a in attempts.items() if a["outcome"] == "chosen"]
    assert chosen == [add["backend"]]
    fastest = min(attempts, key=lambda b: attempts[b]["warmup_us"])
    assert add["backend"] == fastest, attempts


def test_a_backend_not_built_is_skipped_with_its_reason_and_the_next_serves(tmp_path):
    """BACKENDS.md: a candidate anemone knows but this binary lacks is skipped,
    the reason recorded; the first candidate that loads serves."""
    out = anemone("models", "--model-repository", ROOT / "examples/models", "--backends", "tract-cuda,tract-cpu", "--json")
    assert out.returncode == 0, out.stderr
    (add,) = json.loads(out.stdout)
    assert add["backend"] == "tract-cpu"
    cuda, tract = add["selection"]["attempts"]
    assert cuda["backend"] == "tract-cuda" and cuda["outcome"] == "skipped"
    assert "not built into this binary" in cuda["reason"] and "cuda" in cuda["reason"]
    assert tract == {**tract, "backend": "tract-cpu", "outcome": "chosen"}


def test_strict_mode_fails_with_the_first_candidates_error_and_ordered_falls_through(tmp_path):
    """BACKENDS.md: ordered: the first candidate that loads serves; strict: the
    first serves or the model fails to load with that candidate's error.
    README: `models` exits 1 if any model failed to load."""
    repo = tmp_path / "repo"
    add_model(repo, "add")
    det_model(repo / "det/1/model.onnx")
    ordered = anemone("models", "--model-repository", repo, "--backends", "tract-cpu,onnxruntime", "--json")
    assert ordered.returncode == 0, ordered.stderr
    by_name = {m["name"]: m for m in json.loads(ordered.stdout)}
    assert by_name["det"]["backend"] == "onnxruntime"
    skipped = by_name["det"]["selection"]["attempts"][0]
    assert skipped["backend"] == "tract-cpu" and skipped["outcome"] == "skipped"
    assert "Det" in skipped["reason"]

    strict = anemone("models", "--model-repository", repo, "--backends", "tract-cpu,onnxruntime", "--strict", "--json")
    assert strict.returncode == 1
    by_name = {m["name"]: m for m in json.loads(strict.stdout)}
    assert by_name["add"]["state"] == "READY" and by_name["add"]["backend"] == "tract-cpu"
    assert by_name["add"]["selection"]["mode"] == "strict"
    assert [a["backend"] for a in by_name["add"]["selection"]["attempts"]] == ["tract-cpu"], "no standby in strict mode"
    assert by_name["det"]["state"] == "UNAVAILABLE"
    assert "tract-cpu does not support the operator(s) Det" in by_name["det"]["reason"]


def test_infer_takes_backends_and_strict_and_answers_with_onnxruntime(tmp_path):
    """README: `inspect`, `infer` and `models` take the same flags."""
    model = det_model(tmp_path / "det.onnx")
    m = np.array([[1.5, 2.0], [3.0, 4.25]], np.float32)
    np.save(tmp_path / "m.npy", m)
    strict = anemone("infer", model, "-i", tmp_path / "m.npy", "--backends", "tract-cpu,onnxruntime", "--strict",
                     "-d", tmp_path / "out")
    assert strict.returncode == 1
    assert "tract-cpu does not support the operator(s) Det" in strict.stderr
    ok = anemone("infer", model, "-i", tmp_path / "m.npy", "--backends", "tract-cpu,onnxruntime",
                 "-d", tmp_path / "out", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["backend"] == "onnxruntime"
    got = np.load(tmp_path / "out/y.npy")
    want = ort.InferenceSession(str(model)).run(None, {"x": m})[0]
    assert got.shape == () and np.allclose(got, want, rtol=1e-5)
    assert np.isclose(got, np.linalg.det(m), rtol=1e-5)


def test_strict_and_auto_together_are_refused_with_the_reason():
    out = anemone("infer", ADD, "--backends", "auto", "--strict", "-i", f"x={ROOT / 'examples/x.npy'}",
                  "-i", f"y={ROOT / 'examples/y.npy'}")
    assert out.returncode == 2, "a flag mistake, as CONFIGURATION.md says"
    assert "--backends auto and --strict together" in out.stderr and "choose one" in out.stderr


@pytest.mark.parametrize("flags, words", [
    (["--backend-config", "onnxruntime,nosuch=1"], "not a setting anemone takes"),
    (["--trace-config", "nosuch=1"], "not a setting anemone takes"),
    (["--trace-rate", "5", "--trace-config", "rate=6"], "given twice"),
    (["--http-restricted-api", "bogus"], "the form is"),
    (["--grpc-restricted-protocol", "bogus"], "the form is"),
])
def test_a_value_anemones_own_parser_refuses_is_a_flag_mistake(tmp_path, flags, words):
    """CONFIGURATION.md: "The exit status is 2, as for any flag mistake":
    also for values clap passes and anemone's parser refuses (Triton's
    setting strings, restricted-API groups), before anything starts."""
    out = anemone("serve", "--model-repository", ROOT / "examples/models", "--http-port", "0",
                  "--grpc-port", "0", "--metrics-port", "0", *flags)
    assert out.returncode == 2, out.stderr
    assert words in out.stderr and flags[0] in out.stderr, out.stderr


def test_inspect_json_selection_follows_backends_and_strict(tmp_path):
    """README: inspect shows which backend the selection picks, with the
    reasons for the others; it takes --backends and --strict."""
    model = det_model(tmp_path / "det.onnx")
    sel = json.loads(anemone("inspect", model, "--json", "--backends", "tract-cpu,onnxruntime").stdout)["selection"]
    assert sel["backend"] == "onnxruntime" and sel["mode"] == "ordered"
    assert [(a["backend"], a["outcome"]) for a in sel["attempts"]] == [("tract-cpu", "skipped"), ("onnxruntime", "chosen")]
    out = anemone("inspect", model, "--json", "--backends", "tract-cpu,onnxruntime", "--strict")
    assert "Det" in json.loads(out.stdout)["selection"]["error"]


def test_an_unknown_backend_stops_serve_with_a_suggestion(tmp_path):
    """BACKENDS.md: a name nobody knows in the server-wide --backends: the
    server does not start, and the message suggests the closest name."""
    repo = tmp_path / "repo"
    add_model(repo, "add")
    out = anemone("serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                  "--backends", "onnxruntim,tract-cpu", timeout=30)
    assert out.returncode != 0
    assert "unknown backend 'onnxruntim'; did you mean 'onnxruntime'?" in out.stderr
    assert "listening" not in out.stdout


# ------------------------------------------------------- backends: serve


def test_index_metadata_and_metrics_tell_the_selection(mixed):
    """BACKENDS.md "What was decided is visible everywhere": platform is the
    serving backend, backend_selection lists every candidate, the index's
    reason is a one-line summary, and the three metrics carry it."""
    index = mixed.index()
    assert index["add"]["state"] == "READY" and index["det"]["state"] == "READY"
    assert index["det"]["reason"].startswith("on onnxruntime")
    assert "skipped tract-cpu:" in index["det"]["reason"] and "Det" in index["det"]["reason"]
    cuda = index["cudafirst"]["reason"]
    assert cuda.startswith("on onnxruntime; skipped tract-cuda: not built into this binary"), cuda
    assert "standing by: tract-cpu" in cuda

    meta = mixed.metadata("det")
    assert meta["platform"] == "onnxruntime"
    outcomes = {a["backend"]: a["outcome"] for a in meta["backend_selection"]["attempts"]}
    assert outcomes == {"onnxruntime": "chosen", "tract-cpu": "skipped"}
    meta = mixed.metadata("cudafirst")
    assert meta["platform"] == "onnxruntime"
    assert [(a["backend"], a["outcome"]) for a in meta["backend_selection"]["attempts"]] == [
        ("tract-cuda", "skipped"), ("onnxruntime", "chosen"), ("tract-cpu", "standby")]

    text = mixed.metrics()
    assert 'anemone_model_backend{model="det",version="1",backend="onnxruntime",mode="ordered"} 1' in text
    assert 'anemone_model_backend_skipped{model="cudafirst",version="1",backend="tract-cuda"' in text
    assert 'anemone_backend_available{backend="onnxruntime",tier="optimised-cpu"} 1' in text
    assert 'anemone_backend_available{backend="tract-cpu",tier="portable-cpu"} 1' in text
    # `anemone serve` compares the CPU engines in a child process
    child = [l for l in text.splitlines() if l.startswith('anemone_engine_comparisons_total{where="child"}')]
    assert child and float(child[0].split()[-1]) >= 1


def test_a_misspelt_backend_in_a_config_makes_that_model_unavailable_only(mixed):
    """BACKENDS.md: for one model's config, that model is UNAVAILABLE with the
    message; the others serve."""
    index = mixed.index()
    assert index["typo"]["state"] == "UNAVAILABLE"
    assert "unknown backend 'onnxruntim'; did you mean 'onnxruntime'?" in index["typo"]["reason"]
    answer = mixed.infer("add", [fp32("x", [[1, 2, 3, 4]]), fp32("y", [[10, 20, 30, 40]])])
    assert answer.status_code == 200
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs == {"sum": [11.0, 22.0, 33.0, 44.0], "diff": [-9.0, -18.0, -27.0, -36.0]}


def test_strict_in_a_config_fails_with_the_first_candidates_error(mixed):
    index = mixed.index()
    assert index["strictdet"]["state"] == "UNAVAILABLE"
    assert "tract-cpu does not support the operator(s) Det" in index["strictdet"]["reason"]
    assert "onnxruntime" not in index["strictdet"]["reason"]


def _bad_gather(server, model, n):
    answers = [server.infer(model, [{"name": "idx", "shape": [3], "datatype": "INT64", "data": [0, 1, 9]}])
               for _ in range(n)]
    return [a.status_code for a in answers], answers[-1].text


def test_strict_mode_never_leaves_its_backend_at_run_time(mixed):
    """BACKENDS.md: strict mode turns fallback at run time off; the model still
    answers good requests correctly on the same engine afterwards."""
    statuses, _ = _bad_gather(mixed, "gather_strict", 7)
    assert all(s >= 400 for s in statuses), statuses
    time.sleep(0.5)
    assert mixed.metadata("gather_strict")["platform"] == "tract-cpu"
    assert 'model="gather_strict"' not in "\n".join(
        l for l in mixed.metrics().splitlines() if l.startswith("anemone_backend_fallbacks_total"))
    good = mixed.infer("gather_strict", [{"name": "idx", "shape": [3], "datatype": "INT64", "data": [3, 0, 2]}])
    assert good.status_code == 200, good.text
    assert np.array_equal(np.array(good.json()["outputs"][0]["data"]).reshape(3, 2), TABLE[[3, 0, 2]])


def test_bad_input_that_the_engine_rejects_is_400_and_never_moves_the_model(mixed):
    statuses, last = _bad_gather(mixed, "gather", 7)
    time.sleep(0.5)
    platform = mixed.metadata("gather")["platform"]
    fallbacks = [l for l in mixed.metrics().splitlines()
                 if l.startswith("anemone_backend_fallbacks_total") and 'model="gather"' in l]
    assert platform == "tract-cpu" and not fallbacks, (platform, fallbacks, last)
    assert statuses == [400] * 7, (statuses, last)


def test_re_timing_on_real_requests_times_both_cpu_engines(mixed):
    """BACKENDS.md "Re-timing on real traffic": after the first
    --retime-after-requests requests the CPU engines are timed again; the
    times are in anemone_model_retime_seconds{model,backend}."""
    x = np.arange(32, dtype=np.float32).reshape(8, 4)
    for _ in range(4):
        answer = mixed.infer("add", [fp32("x", x), fp32("y", -x)])
        assert answer.status_code == 200
    deadline = time.time() + 15
    lines = []
    while time.time() < deadline:
        lines = [l for l in mixed.metrics().splitlines()
                 if l.startswith('anemone_model_retime_seconds{model="add"')]
        if len(lines) == 2:
            break
        time.sleep(0.3)
    backends = sorted(l.split('backend="')[1].split('"')[0] for l in lines)
    assert backends == ["onnxruntime", "tract-cpu"], lines
    assert all(0 < float(l.split()[-1]) < 1 for l in lines), lines
    # no re-timing for a model whose config names its own list (det's is default)
    assert not any('model="gather' in l for l in mixed.metrics().splitlines()
                   if l.startswith("anemone_model_retime_seconds{"))


# ------------------------------------------------------- infer


@pytest.fixture(scope="module")
def npys(tmp_path_factory):
    d = tmp_path_factory.mktemp("npy")
    x = np.array([[1, 2, 3, 4]], np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", x * 10)
    np.save(d / "obj.npy", np.array([[1, 2, 3, 4]], dtype=object), allow_pickle=True)
    (d / "trunc.npy").write_bytes((d / "x.npy").read_bytes()[:-5])
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 4), }"
    header = header + b" " * (118 - len(header)) + b"\n"
    (d / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 16)
    (d / "empty.npy").write_bytes(b"")
    (d / "adir.npy").mkdir()
    return d


@pytest.mark.parametrize("bad, words", [
    ("obj.npy", ["'x'", "obj.npy", "dtype"]),
    ("trunc.npy", ["'x'", "trunc.npy", "truncated"]),
    ("huge.npy", ["'x'", "huge.npy", "truncated"]),
    ("empty.npy", ["'x'", "empty.npy", "not a .npy file"]),
    ("adir.npy", ["'x'", "adir.npy", "directory"]),
])
def test_infer_refuses_malformed_npy_files_naming_input_and_file(npys, tmp_path, bad, words):
    """README: errors say what is wrong and exit with status 1 (a header that
    claims 400 billion floats must not be allocated)."""
    out = anemone("infer", ADD, "-i", f"x={npys / bad}", "-i", f"y={npys / 'y.npy'}", "-d", tmp_path, timeout=30)
    assert out.returncode == 1, out
    assert out.stderr.startswith("error: ") and "panicked" not in out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)
    assert not list(tmp_path.glob("*.npy"))


def test_infer_reads_fortran_order_and_big_endian_npy_as_numpy_does(tmp_path):
    """README: inputs are NumPy .npy files of any dtype, any rank."""
    x = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    y = (np.arange(12, dtype=np.float32).reshape(3, 4) * -0.5).astype(">f4")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = anemone("infer", ADD, "-i", f"x={tmp_path / 'x.npy'}", "-i", f"y={tmp_path / 'y.npy'}", "-d", tmp_path / "o")
    assert out.returncode == 0, out.stderr
    want_sum, want_diff = ort.InferenceSession(str(ADD)).run(None, {"x": np.ascontiguousarray(x), "y": y.astype("<f4")})
    assert np.array_equal(np.load(tmp_path / "o/sum.npy"), want_sum)
    assert np.array_equal(np.load(tmp_path / "o/diff.npy"), want_diff)


def test_infer_careless_flags_fail_with_status_1_and_say_why(npys, tmp_path):
    x, y = f"x={npys / 'x.npy'}", f"y={npys / 'y.npy'}"
    (tmp_path / "afile").write_text("")
    cases = [
        (["-i", x, "-i", y, "-d", tmp_path / "afile"], ["output directory", "afile"]),
        (["-i", x, "-i", y, "-o", "nosuch", "-d", tmp_path], ["unknown output 'nosuch'", "sum, diff"]),
        (["-i", x, "-i", f"x={npys / 'y.npy'}", "-d", tmp_path], ["'x' is given more than once"]),
        (["-i", x, "-i", y, "-i", f"z={npys / 'y.npy'}", "-d", tmp_path], ["unknown input 'z'", "x, y"]),
    ]
    for args, words in cases:
        out = anemone("infer", ADD, *args)
        assert out.returncode == 1, (args, out)
        for word in words:
            assert word in out.stderr, (args, word, out.stderr)
    zero = anemone("infer", ADD, "-i", x, "-i", y, "--threads", "0")
    assert zero.returncode == 2 and "--threads" in zero.stderr


# ------------------------------------------------------- inspect, doctor, models


def test_inspect_refuses_directories_devices_and_non_onnx_files(npys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    for path, words in [
        (ROOT / "examples/models/add", ["not a regular file"]),
        (ROOT / "examples/models/add/1", ["not a regular file"]),
        ("/dev/null", ["not a regular file"]),
        (npys / "x.npy", ["not an ONNX model"]),
        (tmp_path / "notes.txt", ["not an ONNX model"]),
    ]:
        out = anemone("inspect", path, timeout=30)
        assert out.returncode == 1, (path, out)
        assert str(path) in out.stderr, out.stderr
        for word in words:
            assert word in out.stderr, (path, out.stderr)


def test_doctor_does_not_promise_backends_that_cannot_run_a_model(tmp_path):
    """doctor --help: 'Also check each model of this repository: which backends
    here could run it, or why none can'."""
    repo = tmp_path / "repo"
    (repo / "fancy/1").mkdir(parents=True)
    shutil.copy(UNSUPPORTED, repo / "fancy/1/model.onnx")
    det_model(repo / "det/1/model.onnx")
    models = json.loads(anemone("models", "--model-repository", repo, "--json").stdout)
    assert {m["name"]: m["state"] for m in models} == {"det": "READY", "fancy": "UNAVAILABLE"}
    out = anemone("doctor", "--model-repository", repo, "--json")
    assert out.returncode == 0, out.stderr
    report = {m["name"]: m for m in json.loads(out.stdout)["models"]}
    assert "tract-cpu" not in report["det"]["runnable_on"], report["det"]
    assert report["fancy"]["runnable_on"] == [], report["fancy"]


def test_models_takes_several_repositories_as_serve_does(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    add_model(a, "add")
    det_model(b / "det/1/model.onnx")
    out = anemone("models", "--model-repository", a, "--model-repository", b, "--json",
                  env={"ANEMONE_MODEL_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert sorted(m["name"] for m in json.loads(out.stdout)) == ["add", "det"]


def test_doctor_lists_every_backend_available_or_why_not():
    """README/BACKENDS.md: doctor lists every backend on this machine, each
    available or not with the reason, and the libraries found."""
    out = anemone("doctor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["onnxruntime"]["status"] == "available" and backends["tract-cpu"]["status"] == "available"
    assert ORT_LIB_NAME in backends["onnxruntime"]["detail"]
    assert backends["coreml"]["status"] == "unavailable" and "needs macOS" in backends["coreml"]["reason"]
    text = anemone("doctor").stdout
    assert "tract-cuda: not built into this binary: it needs Linux and the cargo feature `cuda`" in text
    assert "tract-metal: not built into this binary" in text


def test_doctor_json_names_the_backends_this_build_lacks():
    report = json.loads(anemone("doctor", "--json").stdout)
    assert "not built into this binary" in json.dumps(report["backends"]), report["backends"]


def test_doctor_lists_the_folders_anemone_keeps(tmp_path):
    """README: doctor lists the cache directories, anemone's own among them
    (the model cache, unpacked Python environments, the Python stub's
    compiled code), each where XDG_CACHE_HOME puts it, with its size once
    it exists."""
    cache = tmp_path / "cache"
    (cache / "anemone/python-stub").mkdir(parents=True)
    (cache / "anemone/python-stub/code").write_bytes(b"x" * 3000)
    out = anemone("doctor", "--json", env={"XDG_CACHE_HOME": str(cache)})
    assert out.returncode == 0, out.stderr
    caches = {c["path"]: c for c in json.loads(out.stdout)["caches"]}
    stub, envs, models = (str(cache / "anemone" / d) for d in ("python-stub", "python-envs", "models"))
    assert caches[stub]["exists"] and caches[stub]["bytes"] == 3000, caches[stub]
    assert "stub" in caches[stub]["name"], caches[stub]
    assert not caches[envs]["exists"] and "EXECUTION_ENV_PATH" in caches[envs]["name"], caches[envs]
    assert not caches[models]["exists"] and "--model-cache-dir" in caches[models]["name"], caches[models]
    text = anemone("doctor", env={"XDG_CACHE_HOME": str(cache)}).stdout
    assert stub in text and "not created yet" in text, text


ORT_LIB_NAME = "libonnxruntime.so.1.31.1"


@pytest.mark.parametrize("args", [["doctor"], ["models", "--model-repository", str(ROOT / "examples/models")]])
def test_a_reader_that_stops_early_is_not_an_internal_error(args):
    proc = subprocess.Popen([str(BIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()           # as `| head -1` does once it has its line
    err = proc.stderr.read()
    proc.wait(timeout=60)
    proc.stderr.close()
    assert "panicked" not in err and "internal error" not in err, err[:400]


# ------------------------------------------------------- bench


@pytest.mark.parametrize("flags, words", [
    (["--concurrency", "0"], ["--concurrency"]),
    (["--requests", "0"], ["--requests"]),
    (["--duration", "0"], ["--duration", "positive"]),
    (["--duration", "nan"], ["--duration", "positive"]),
    (["--sequence-id-range", "5:3"], ["END 3 is not above START 5"]),
])
def test_bench_refuses_silly_parameters_before_sending_anything(flags, words):
    out = anemone("bench", "--model", "add", "--url", "http://127.0.0.1:1", *flags, timeout=20)
    assert out.returncode == 2, out
    for word in words:
        assert word in out.stderr, out.stderr


def test_bench_json_report_counts_what_it_sent(mixed, tmp_path):
    """README: bench prints throughput and p50/p90/p99/max latency and writes a
    JSON report with --json-report."""
    grpc = "http://" + mixed.addr["gRPC"]
    report = tmp_path / "r.json"
    out = anemone("bench", "--model", "add", "--url", grpc, "--requests", "30", "--concurrency", "3",
                  "--warmup", "2", "--json-report", report, timeout=60)
    assert out.returncode == 0, out.stderr
    for word in ("throughput", "p50", "p90", "p99", "max"):
        assert word in out.stdout
    data = json.loads(report.read_text())
    assert data["requests"] == 30 and data["errors"] == 0 and data["concurrency"] == 3
    lat = data["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in data["inputs"]] == [("x", "FP32", [1, 4]), ("y", "FP32", [1, 4])]


def test_bench_names_the_loaded_models_for_an_unknown_one_and_a_missing_server(mixed):
    out = anemone("bench", "--model", "nosuch", "--url", "http://" + mixed.addr["gRPC"], "--requests", "3")
    assert out.returncode == 1
    assert "'nosuch'" in out.stderr and "add" in out.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = anemone("bench", "--model", "add", "--url", f"http://127.0.0.1:{port}", "--protocol", "http", "--requests", "3")
    assert out.returncode == 1
    assert "is the server running?" in out.stderr


def test_bench_at_the_other_protocols_port_says_so(mixed):
    grpc_at_http = anemone("bench", "--model", "add", "--url", mixed.http, "--requests", "3")
    http_at_grpc = anemone("bench", "--model", "add", "--url", "http://" + mixed.addr["gRPC"], "--protocol", "http",
                           "--requests", "3")
    assert grpc_at_http.returncode == 1 and http_at_grpc.returncode == 1
    for out in (grpc_at_http, http_at_grpc):
        assert "--protocol" in out.stderr, out.stderr
    assert "is the server running?" not in http_at_grpc.stderr, http_at_grpc.stderr


# ------------------------------------------------------- DEPLOY.md: repositories


def test_a_model_name_in_two_repositories_stops_start_up_naming_both(tmp_path):
    a, b = tmp_path / "team-a", tmp_path / "team-b"
    add_model(a, "add")
    add_model(b, "add")
    det_model(b / "det/1/model.onnx")
    out = anemone("serve", "--model-repository", a, "--model-repository", b, "--http-port", "0", "--grpc-port", "0",
                  "--metrics-port", "0", "--model-cache-dir", tmp_path / "cache", timeout=30)
    assert out.returncode != 0
    assert f"model 'add' is in two repositories, {a} and {b}; rename or remove one" in out.stderr
    assert "listening" not in out.stdout


def test_several_local_repositories_are_served_and_a_new_duplicate_in_poll_mode_is_left_as_it_was(tmp_path):
    """DEPLOY.md "Several repositories": each --model-repository adds its
    models; with several, they are copied into the cache view and kept in
    step at each sync; in poll mode a newly duplicated name is logged and
    left as it was."""
    a, b, cache = tmp_path / "a", tmp_path / "b", tmp_path / "cache"
    add_model(a, "add")
    det_model(b / "det/1/model.onnx")
    server = Server(tmp_path, [a, b], "--model-control-mode", "poll", "--repository-poll-secs", "1",
                    "--model-cache-dir", cache)
    try:
        index = server.index()
        assert {n: m["state"] for n, m in index.items()} == {"add": "READY", "det": "READY"}
        m = np.array([[2, 1], [7, 4]], np.float32)
        det = server.infer("det", [fp32("x", m)])
        assert det.status_code == 200 and np.isclose(det.json()["outputs"][0]["data"][0], np.linalg.det(m), rtol=1e-5)
        assert len(list(cache.rglob("model.onnx"))) == 2, "several repositories are copied into the cache view"

        add_model(b, "add")          # now a duplicate
        add_model(a, "add", version=2)
        time.sleep(3.5)
        assert "model 'add' is in two repositories" in server.stderr()
        index = server.index()
        assert index["add"]["state"] == "READY" and index["add"]["version"] == "1", index["add"]
        sum_ = server.infer("add", [fp32("x", [[1, 2, 3, 4]]), fp32("y", [[1, 1, 1, 1]])])
        assert sum_.status_code == 200

        shutil.rmtree(b / "add")     # resolved: version 2 of a's add follows
        deadline = time.time() + 10
        while time.time() < deadline and server.index()["add"].get("version") != "2":
            time.sleep(0.3)
        assert server.index()["add"]["version"] == "2"
    finally:
        assert server.stop() == 0


# ------------------------------------------------------- DEPLOY.md: container settings, shutdown


def test_the_containers_entry_settings_work_as_environment_variables(tmp_path):
    """Dockerfile/DEPLOY.md: the image sets ORT_DYLIB_PATH, ANEMONE_HOST,
    ANEMONE_HTTP_PORT, ANEMONE_GRPC_PORT, ANEMONE_MODEL_CACHE_DIR and
    ANEMONE_LOG=info, and passes only `--model-repository /models`."""
    env = {"ANEMONE_HOST": "127.0.0.1", "ANEMONE_HTTP_PORT": "0", "ANEMONE_GRPC_PORT": "0",
           "ANEMONE_MODEL_CACHE_DIR": str(tmp_path / "cache"), "ANEMONE_LOG": "info"}
    shown = anemone("config", "show", "--json", "--", "--model-repository", ROOT / "examples/models", env=env)
    assert shown.returncode == 0, shown.stderr
    by_name = {row["key"]: row for row in json.loads(shown.stdout)["settings"]}
    for key, value in [("host", "127.0.0.1"), ("http-port", "0"), ("grpc-port", "0"),
                       ("model-cache-dir", str(tmp_path / "cache")), ("log-level", "info")]:
        assert by_name[key]["source"] == "env", by_name[key]
        assert str(by_name[key]["value"]) == value, by_name[key]
    assert by_name["model-repository"]["source"] == "flag"

    server = Server(tmp_path, [ROOT / "examples/models"], env=env, ports=False)
    try:
        assert server.addr["HTTP"].startswith("127.0.0.1:") and not server.addr["HTTP"].endswith(":8000")
        answer = server.infer("add", [fp32("x", [[1, 2, 3, 4]]), fp32("y", [[10, 20, 30, 40]])])
        assert answer.json()["outputs"][0]["data"] == [11.0, 22.0, 33.0, 44.0]
        assert requests.get(server.http + "/v2/health/ready", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0
    assert " INFO " in server.stderr(), "ANEMONE_LOG=info logs INFO lines"


def test_shutdown_lets_the_request_in_flight_finish_closes_the_listener_and_exits_0(tmp_path):
    """DEPLOY.md "Shutdown timeline": on SIGTERM readiness turns false, the
    listeners close, requests in flight finish (within --exit-timeout-secs),
    then the process exits 0."""
    repo = tmp_path / "repo"
    (repo / "loop/1").mkdir(parents=True)
    shutil.copy(LOOP, repo / "loop/1/model.onnx")
    (repo / "loop/config.pbtxt").write_text(params(backends="tract-cpu"))
    server = Server(tmp_path, [repo], "--exit-timeout-secs", "20")
    trip = 150_000
    result = {}

    def slow():
        start = time.time()
        result["answer"] = server.infer("loop", [
            {"name": "trip", "shape": [], "datatype": "INT64", "data": [trip]},
            fp32("x", [0.5, -1.0])], outputs=["final"])
        result["took"] = time.time() - start

    try:
        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.4)
        signalled = time.time()
        server.proc.send_signal(signal.SIGTERM)
        host, port = server.addr["HTTP"].rsplit(":", 1)
        refused = None
        while time.time() - signalled < 2:
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
            except OSError:
                refused = time.time() - signalled
                break
            time.sleep(0.02)
        thread.join(60)
        status = server.proc.wait(timeout=30)
        exited = time.time() - signalled
    finally:
        server.stop()
    assert refused is not None, "the listener stayed open after SIGTERM"
    answer = result["answer"]
    assert answer.status_code == 200, answer.text
    final = answer.json()["outputs"][0]
    assert final["name"] == "final"
    want = ort.InferenceSession(str(LOOP)).run(["final"], {"trip": np.array(trip, np.int64),
                                                           "x": np.array([0.5, -1.0], np.float32)})[0]
    assert np.allclose(final["data"], want, rtol=1e-4), (final["data"], want)
    assert result["took"] > 0.6, "the request was still running when SIGTERM came"
    assert status == 0
    assert exited < result["took"] + 3, (exited, result["took"])
