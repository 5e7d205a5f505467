"""Every path anemone reads (or writes), pointed at what breaks naive code.

The project's rule: "point a setting at /dev/zero". Each file a flag, a
config file, a model repository or a request names is tried with
`/dev/zero`, `/dev/urandom`, a FIFO nothing writes to, a directory, a symbolic
link loop, a dangling link, an empty file, a 50 GB sparse file (no disk),
bytes that are not UTF-8, and a Unix socket. What must hold: a clear error
that names the file, within a few seconds (every command runs under a
timeout, so a hang fails the test and never hangs pytest), no unbounded
memory (the process's RSS is watched and it is killed above a cap), and for
a model's own files: the other models keep serving and the server stays up.

Runs as root cannot test unreadable files (root reads them): that case is
skipped with a reason.
"""
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serve_support import ROOT, start_serve, stop_serve, wait_ready

BINARY = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
ADD = ROOT / "examples/models/add/1/model.onnx"  # x, y [batch, 4] -> sum, diff

# Every kind of hostile path; `hostile` makes one.
KINDS = ["zero", "urandom", "fifo", "dir", "loop", "dangling", "empty", "sparse", "badutf", "sock"]
# The kinds that are no file a reader could use: each must be refused.
UNUSABLE = ["zero", "urandom", "fifo", "dir", "loop", "dangling", "sparse", "sock"]
RSS_CAP_KB = 1_000_000  # 1 GB: far above what any of these commands needs
SECONDS = 8  # a refusal must come within this (a FIFO read may wait 5 s by design)
HANG = 5  # where no 5 s wait is designed in: a command still running after this hangs


def hostile(path, kind, old=True):
    """Makes `path` a hostile path of `kind`. A made file gets an old
    modification time unless `old` is false (see
    test_a_freshly_written_huge_file_is_refused_without_reading_it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "urandom":
        path.symlink_to("/dev/urandom")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name + ".other")
        (path.parent / (path.name + ".other")).symlink_to(path.name)
    elif kind == "dangling":
        path.symlink_to(path.name + ".nowhere")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(50 << 30)  # 50 GB of holes: no disk
    elif kind == "badutf":
        path.write_bytes(b"\xff\xfe\x80 not utf-8 \xc3\x28")
    elif kind == "sock":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    else:
        raise ValueError(kind)
    if old and kind in ("empty", "sparse", "badutf"):
        past = time.time() - 3600
        os.utime(path, (past, past))
    return path


def env():
    e = dict(os.environ)
    e.setdefault("ANEMONE_PYTHON", sys.executable)
    return e


def run(args, timeout=SECONDS, rss_cap_kb=RSS_CAP_KB, cwd=None, extra_env=None):
    """Runs anemone with `args`, watching its RSS. Returns (status, seconds,
    peak RSS in KB, why it was killed or "", stdout, stderr)."""
    e = env()
    e.update(extra_env or {})
    start = time.time()
    proc = subprocess.Popen([str(BINARY), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, env=e, stdin=subprocess.DEVNULL)
    peak, why = 0, ""
    try:
        while proc.poll() is None:
            peak = max(peak, rss_kb(proc.pid))
            if peak > rss_cap_kb:
                why = f"RSS above {rss_cap_kb} KB"
                break
            if time.time() - start > timeout:
                why = f"still running after {timeout} s"
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=30)
    return proc.returncode, time.time() - start, peak, why, out.decode(errors="replace"), err.decode(errors="replace")


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def refused(result, path):
    """Asserts a command refused `path` at once with a message naming it."""
    status, seconds, peak, why, out, err = result
    assert not why, f"{path}: {why} (peak RSS {peak} KB); stderr: {err[-300:]}"
    assert status not in (0, None) and status > 0, f"{path}: status {status}, stderr: {err[-300:]}"
    assert str(path) in err, f"the error does not name {path}: {err[-400:]}"
    assert "panicked" not in err, err[-600:]


@pytest.fixture
def hostile_dir(tmp_path):
    """A folder holding one path of each kind, named after it."""
    d = tmp_path / "h"
    d.mkdir()
    for kind in KINDS:
        hostile(d / kind, kind)
    return d


CFG = 'platform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)]) for r in requests]
'''
PYCFG = ('backend: "python"\nmax_batch_size: 0\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
         'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 3 ] } ]\n')


def onnx_model(repo, name, config=CFG):
    (repo / name / "1").mkdir(parents=True)
    shutil.copy(ADD, repo / name / "1" / "model.onnx")
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)


def py_model(repo, name, config=PYCFG, source=PY):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    if source is not None:
        (repo / name / "1" / "model.py").write_text(source)


def external_data_model(path, length=True, n=4):
    """An ONNX model y = x + w whose initializer w [n] lives in external data
    file w.bin (with or without the optional `length` key)."""
    from onnx import TensorProto, helper
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([n])
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", "w.bin"), ("offset", "0")] + ([("length", str(4 * n))] if length else []):
        e = w.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def check_add(http, name="good"):
    """`name` (the add model) answers x + y and x - y, as numpy computes them."""
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(http)
    x = np.random.default_rng(1).random((2, 4), dtype=np.float32)
    y = np.random.default_rng(2).random((2, 4), dtype=np.float32)
    tensors = []
    for n, v in (("x", x), ("y", y)):
        t = httpclient.InferInput(n, list(v.shape), "FP32")
        t.set_data_from_numpy(v)
        tensors.append(t)
    result = client.infer(name, tensors)
    np.testing.assert_allclose(result.as_numpy("sum"), x + y, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("diff"), x - y, rtol=1e-6)


def index(http):
    request = urllib.request.Request(f"http://{http}/v2/repository/index", b"{}")
    return {r["name"]: r for r in json.loads(urllib.request.urlopen(request, timeout=10).read())}


def post(http, path, body):
    request = urllib.request.Request(f"http://{http}{path}", json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=SECONDS) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# --- settings: files named on the command line ---------------------------


def test_config_file_of_every_hostile_kind_is_refused_quickly(hostile_dir):
    """--config FILE (docs/CONFIGURATION.md, `anemone serve --help`: "A TOML
    file of settings"): /dev/zero, /dev/urandom, a 50 GB sparse file are
    refused by size, a FIFO after its 5 s wait, a directory, a link loop,
    a dangling link, a socket and non-UTF-8 bytes by name; an empty file
    is an empty config."""
    for kind in KINDS:
        path = hostile_dir / kind
        result = run(["config", "show", "--", "--config", path], timeout=SECONDS, cwd=hostile_dir)
        if kind == "empty":
            assert result[0] == 0 and not result[3], result
            assert "empty" in result[4]
        else:
            refused(result, path)


def test_unreadable_config_file(tmp_path):
    """An unreadable --config file is refused naming it (skipped as root,
    who reads any file)."""
    if os.geteuid() == 0:
        pytest.skip("running as root: root reads a mode-000 file, so this cannot be tested here")
    path = tmp_path / "c.toml"
    path.write_text("max-concurrency = 4\n")
    path.chmod(0)
    refused(run(["config", "show", "--", "--config", path]), path)


def certificate(folder):
    """A self-signed certificate and its key (PEM files) for localhost."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                          capture_output=True, timeout=30)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a certificate here")
    return cert, key


def test_tls_and_otlp_certificate_files_are_refused_quickly(hostile_dir, tmp_path):
    """--http-tls-cert/-key/-client-ca, --grpc-server-cert/-key/-root-cert
    and --otlp-ca-cert (docs/SECURITY.md, --help: "PEM file"): a device or a
    50 GB sparse file is refused by its size, the others by name, before
    anything listens."""
    repo = tmp_path / "repo"
    repo.mkdir()
    good_cert, good_key = certificate(tmp_path)
    serve = ["serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0"]
    for kind in ["zero", "urandom", "dir", "loop", "dangling", "empty", "sparse", "badutf", "sock"]:
        p = hostile_dir / kind
        refused(run(serve + ["--http-tls-cert", p, "--http-tls-key", good_key]), p)
    for kind in ["zero", "dangling", "sparse"]:
        p = hostile_dir / kind
        refused(run(serve + ["--http-tls-cert", good_cert, "--http-tls-key", p]), p)
        refused(run(serve + ["--http-tls-cert", good_cert, "--http-tls-key", good_key, "--http-tls-client-ca", p]), p)
        refused(run(serve + ["--grpc-use-ssl", "--grpc-server-cert", p, "--grpc-server-key", good_key]), p)
        refused(run(serve + ["--grpc-use-ssl", "--grpc-server-cert", good_cert, "--grpc-server-key", p]), p)
        refused(run(serve + ["--grpc-use-ssl-mutual", "--grpc-server-cert", good_cert, "--grpc-server-key", good_key,
                             "--grpc-root-cert", p]), p)
        refused(run(serve + ["--otlp-endpoint", "https://127.0.0.1:9", "--otlp-ca-cert", p]), p)
    # A FIFO is waited for 5 s (bounded_read::NOT_A_FILE_WAIT), then refused.
    refused(run(serve + ["--http-tls-cert", hostile_dir / "fifo", "--http-tls-key", good_key]), hostile_dir / "fifo")


def test_log_file_that_cannot_be_a_log_is_refused(hostile_dir):
    """--log-file FILE (--help: "the file is created if missing; a file that
    cannot be opened stops the command"): a directory, a link loop and a
    socket stop the command with a message naming the file."""
    for kind in ["dir", "loop", "sock"]:
        refused(run(["--log-file", hostile_dir / kind, "doctor"]), hostile_dir / kind)


def test_log_file_fifo_without_reader_does_not_hang(hostile_dir):
    """--log-file naming a FIFO nobody reads: the help says a file that
    cannot be opened stops the command; `anemone doctor` must end (either
    way) within a few seconds, not block in open(2) for ever."""
    status, seconds, peak, why, out, err = run(["--log-file", hostile_dir / "fifo", "doctor"], timeout=HANG)
    assert not why, f"--log-file fifo: {why}"


def test_trace_file_that_is_not_a_file_is_refused(hostile_dir, tmp_path):
    """--trace-file FILE (docs/OBSERVABILITY.md): a device, a FIFO, a
    socket or a directory is refused at start-up, naming it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for kind in ["zero", "fifo", "dir", "sock"]:
        p = hostile_dir / kind
        refused(run(["serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
                     "--trace-file", p, "--trace-level", "TIMESTAMPS"]), p)


def test_trace_file_symlink_loop_is_refused_at_start(hostile_dir, tmp_path):
    """A --trace-file that can never be written must be refused at start-up,
    as a missing folder or a FIFO is (TraceFile::new), not accepted."""
    repo = tmp_path / "repo"
    repo.mkdir()
    p = hostile_dir / "loop"
    proc = subprocess.Popen([str(BINARY), "serve", "--model-repository", str(repo), "--http-port", "0",
                             "--grpc-port", "0", "--trace-file", str(p), "--trace-level", "TIMESTAMPS"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        status = proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        status = None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        err = proc.stderr.read().decode(errors="replace")
        proc.stdout.close()
        proc.stderr.close()
    assert status is not None and status != 0, f"the server started with --trace-file {p} (a link loop): {err[-300:]}"
    assert str(p) in err


# --- model files named on the command line --------------------------------


def test_inspect_and_infer_refuse_hostile_model_files(hostile_dir):
    """`anemone inspect MODEL` and `anemone infer MODEL` read one model file
    (bounded by ANEMONE_MAX_MODEL_FILE_BYTES, docs/SERVING.md): every
    hostile kind is refused at once, naming the file."""
    x = hostile_dir.parent / "x.npy"
    np.save(x, np.ones((1, 4), np.float32))
    for kind in KINDS:
        p = hostile_dir / kind
        refused(run(["inspect", "--no-select", p]), p)
        refused(run(["infer", p, "-i", f"x={x}", "-i", f"y={x}", "-d", hostile_dir.parent / "out"]), p)


def test_infer_names_a_symlink_loop_as_such(hostile_dir, tmp_path):
    """The error says what is wrong: a link loop is not a missing file."""
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 4), np.float32))
    result = run(["infer", hostile_dir / "loop", "-i", f"x={x}", "-i", f"y={x}"])
    refused(result, hostile_dir / "loop")
    assert "does not exist" not in result[5], result[5]


def test_infer_input_files_that_are_refused(hostile_dir, tmp_path):
    """`anemone infer -i NAME=FILE.npy`: a directory, a link loop, a socket,
    an empty file or non-.npy bytes are refused at once, naming the file."""
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 4), np.float32))
    for kind in ["dir", "loop", "dangling", "empty", "badutf", "sock"]:
        p = hostile_dir / kind
        refused(run(["infer", ADD, "-i", f"x={p}", "-i", f"y={x}", "-d", tmp_path / "out"]), p)


@pytest.mark.parametrize("kind", ["zero", "fifo", "sparse"])
def test_infer_input_devices_fifos_and_huge_files_are_refused(hostile_dir, tmp_path, kind):
    """`anemone infer -i x=PATH`: PATH is refused within a few seconds,
    naming it, with bounded memory (as the model file itself is)."""
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 4), np.float32))
    p = hostile_dir / kind
    result = run(["infer", ADD, "-i", f"x={p}", "-i", f"y={x}", "-d", tmp_path / "out"], timeout=HANG)
    refused(result, p)
    assert "out of memory" not in result[5], result[5]


@pytest.mark.parametrize("flag, kind", [("--ca-cert", "zero"), ("--ca-cert", "fifo"), ("--client-key", "zero")])
def test_bench_tls_files_are_bounded(hostile_dir, tmp_path, flag, kind):
    """`anemone bench` (an https:// URL) with a PEM file that is a device or
    a FIFO: refused naming the file, in bounded time and memory."""
    cert, key = certificate(tmp_path)
    args = {"--ca-cert": cert, "--client-cert": cert, "--client-key": key}
    args[flag] = hostile_dir / kind
    result = run(["bench", "-m", "add", "--url", "https://127.0.0.1:9", "-n", "1",
                  *[a for kv in args.items() for a in kv]],
                 # A FIFO is waited for 5 s by design (bounded_read::NOT_A_FILE_WAIT).
                 timeout=HANG + 5 if kind == "fifo" else HANG)
    refused(result, hostile_dir / kind)


def test_model_repository_that_is_not_a_directory(hostile_dir):
    """--model-repository DIR of serve, models and doctor: every kind that is
    not a directory is refused at once, naming it."""
    for kind in ["zero", "fifo", "loop", "dangling", "empty", "sparse", "sock"]:
        p = hostile_dir / kind
        for command in (["serve", "--http-port", "0", "--grpc-port", "0"], ["models"], ["doctor"]):
            refused(run([*command, "--model-repository", p]), p)


def test_python_interpreter_setting_that_is_not_one(hostile_dir, tmp_path):
    """--python PATH (ANEMONE_PYTHON) pointing at a device, a FIFO, a
    directory or a sparse file: the Python model is refused, naming the
    interpreter, and the command ends at once."""
    repo = tmp_path / "repo"
    py_model(repo, "py")
    for kind in ["zero", "fifo", "dir", "sparse", "loop", "sock"]:
        p = hostile_dir / kind
        status, seconds, peak, why, out, err = run(["models", "--model-repository", repo, "--python", p],
                                                   extra_env={"ANEMONE_PYTHON": str(p)})
        assert not why and status == 1, (kind, why, status, err[-300:])
        assert f"cannot run {p}" in err or str(p) in err, err[-300:]


# --- a repository's own files --------------------------------------------


def hostile_repository(repo):
    """Two good models (ONNX `good`, Python `goodpy`) and, for each kind, a
    model whose config.pbtxt, model file, label file, warm-up input file,
    model.py, EXECUTION_ENV_PATH archive or ONNX external data file is of
    that kind. Returns {model: the file's name, as a message names it}."""
    onnx_model(repo, "good")
    py_model(repo, "goodpy")
    named = {}
    for k in KINDS:
        if k == "urandom":
            continue  # a link leading out of the repository, refused as "zero" is
        onnx_model(repo, f"cfg_{k}", None)
        hostile(repo / f"cfg_{k}" / "config.pbtxt", k)
        named[f"cfg_{k}"] = "config.pbtxt"
        (repo / f"mdl_{k}" / "1").mkdir(parents=True)
        (repo / f"mdl_{k}" / "config.pbtxt").write_text(CFG)
        hostile(repo / f"mdl_{k}" / "1" / "model.onnx", k)
        named[f"mdl_{k}"] = "model.onnx"
        onnx_model(repo, f"lbl_{k}", CFG + 'output [ { name: "sum" data_type: TYPE_FP32 dims: [ -1, 4 ] '
                                           'label_filename: "labels.txt" } ]\n')
        hostile(repo / f"lbl_{k}" / "labels.txt", k)
        named[f"lbl_{k}"] = "labels.txt"
        onnx_model(repo, f"wu_{k}", CFG + 'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { '
                                          'data_type: TYPE_FP32 dims: [ 1, 4 ] input_data_file: "xin" } } inputs { '
                                          'key: "y" value: { data_type: TYPE_FP32 dims: [ 1, 4 ] zero_data: true } } } ]\n')
        hostile(repo / f"wu_{k}" / "warmup" / "xin", k)
        named[f"wu_{k}"] = "xin"
        py_model(repo, f"py_{k}", source=None)
        hostile(repo / f"py_{k}" / "1" / "model.py", k)
        named[f"py_{k}"] = "model.py"
        py_model(repo, f"env_{k}", config=PYCFG + 'parameters { key: "EXECUTION_ENV_PATH" value: { string_value: '
                                                  '"$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }\n')
        hostile(repo / f"env_{k}" / "env.tar.gz", k)
        named[f"env_{k}"] = "EXECUTION_ENV_PATH"
        external_data_model(repo / f"ext_{k}" / "1" / "model.onnx")
        hostile(repo / f"ext_{k}" / "1" / "w.bin", k)
        named[f"ext_{k}"] = "w.bin"
    return named


def test_a_models_hostile_files_fail_that_model_alone(tmp_path):
    """Every file a model's directory holds (config.pbtxt, the model file,
    label_filename, a warm-up input_data_file, model.py, the
    EXECUTION_ENV_PATH archive, ONNX external data), pointed at a device, a
    FIFO, a directory, a link loop, a dangling link, a socket, a 50 GB
    sparse file, an empty file or non-UTF-8 bytes: start-up ends within
    seconds with bounded memory, each model that cannot use its file is
    UNAVAILABLE with a reason naming the file, and the good ONNX and Python
    models serve correct answers (numpy's). Triton 2.51 likewise keeps
    serving the models that loaded (--exit-on-error false)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    named = hostile_repository(repo)
    e = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    # start_serve copies os.environ: XDG_CACHE_HOME keeps unpacked environments in tmp_path.
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ.update(e)
    try:
        start = time.time()
        proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*",
                                      "--strict-readiness", "false")
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old
    try:
        http = addresses["HTTP"]
        wait_ready(http, seconds=60)
        elapsed = time.time() - start
        assert elapsed < 45, f"loading {len(named) + 2} models took {elapsed:.0f} s"
        assert rss_kb(proc.pid) < RSS_CAP_KB, f"server RSS {rss_kb(proc.pid)} KB"
        rows = index(http)
        assert rows["good"]["state"] == "READY" and rows["goodpy"]["state"] == "READY", (rows["good"], rows["goodpy"])
        # Usable as they are: an empty config (auto-complete), an empty label
        # file, a warm-up file with at least one item's bytes (a sparse one
        # is read only as far as the 64 MiB bound), external data longer than
        # the tensor needs.
        usable = {"cfg_empty", "lbl_empty", "wu_sparse", "wu_badutf", "ext_sparse", "ext_badutf"}
        for model, file in named.items():
            row = rows[model]
            if model in usable:
                assert row["state"] == "READY", row
                continue
            assert row["state"] == "UNAVAILABLE", row
            reason = row.get("reason", "")
            # An external data file too short for its tensor is named by
            # the initializer only ("external data range 0..16 is out of
            # bounds"), not by its file name (see the report).
            ok = file in reason or "model file" in reason or (model == "ext_empty" and "external data" in reason)
            assert reason and ok, f"{model}: {reason!r}"
            assert "panicked" not in reason, reason
        check_add(http, "good")
        import tritonclient.http as httpclient
        client = httpclient.InferenceServerClient(http)
        x = np.array([1.5, -2.0, 3.25], np.float32)
        t = httpclient.InferInput("X", [3], "FP32")
        t.set_data_from_numpy(x)
        np.testing.assert_allclose(client.infer("goodpy", [t]).as_numpy("Y"), x * 2)
        # A model whose external data file is longer than its tensor serves
        # the tensor's bytes (the file is all zeros: y == x).
        xe = np.array([1, 2, 3, 4], np.float32)
        t = httpclient.InferInput("x", [4], "FP32")
        t.set_data_from_numpy(xe)
        np.testing.assert_allclose(client.infer("ext_sparse", [t]).as_numpy("y"), xe)
        # Loading one again through the API answers at once, naming the file.
        status, body = post(http, "/v2/repository/models/cfg_fifo/load", {})
        assert status == 400 and "config.pbtxt" in body, (status, body)
        assert proc.poll() is None
    finally:
        stop_serve(proc)


def test_a_freshly_written_huge_file_is_refused_without_reading_it(tmp_path):
    """A model file over the 2 GiB bound (docs/SERVING.md: "A file larger
    than the limit is refused") is refused within seconds whatever its
    modification time; with an old time it already is (control)."""
    for fresh in (False, True):
        repo = tmp_path / f"repo{int(fresh)}"
        repo.mkdir()
        onnx_model(repo, "good")
        (repo / "huge" / "1").mkdir(parents=True)
        (repo / "huge" / "config.pbtxt").write_text(CFG)
        hostile(repo / "huge" / "1" / "model.onnx", "sparse", old=not fresh)
        status, seconds, peak, why, out, err = run(["models", "--model-repository", repo], timeout=HANG)
        assert not why, f"fresh={fresh}: {why}"
        assert status == 1 and "limit on a model file" in err, err[-300:]


def test_links_looping_inside_a_model_directory_do_not_hang_its_load(tmp_path):
    """A model directory with symbolic links back to itself (as a careless
    `ln -s . current` leaves): the model loads (nothing in it is missing)
    or is refused, within seconds and bounded memory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    onnx_model(repo, "good")
    onnx_model(repo, "loops")
    for n in "abc":
        (repo / "loops" / n).symlink_to(".")
    status, seconds, peak, why, out, err = run(["models", "--model-repository", repo], timeout=HANG)
    assert not why, f"{why}; peak RSS {peak} KB"


def test_merging_repositories_with_looping_links_does_not_hang(tmp_path):
    """Two local repositories (docs/DEPLOY.md: "Repeat for several
    repositories"): a folder of links back to itself in one of them must not
    stop start-up. A control run without the links ends in well under a
    second."""
    a, b = tmp_path / "a", tmp_path / "b"
    onnx_model(a, "good")
    onnx_model(b, "other")
    args = ["models", "--model-repository", a, "--model-repository", b, "--model-cache-dir", tmp_path / "cache"]
    status, seconds, peak, why, out, err = run(args)
    assert status == 0 and not why, (why, err[-300:])  # control
    (b / "junk").mkdir()
    for n in "xy":
        (b / "junk" / n).symlink_to(".")
    status, seconds, peak, why, out, err = run(args, timeout=HANG)
    assert not why, f"{why}; peak RSS {peak} KB"


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_merged_repository_manifest_read_is_bounded(tmp_path, kind):
    """--model-cache-dir's manifest (kept across restarts, docs/DEPLOY.md)
    replaced by a FIFO or a link to /dev/zero: start-up goes on (the
    manifest is a cache: unreadable, it is rebuilt) or stops naming it,
    within seconds and bounded memory."""
    a, b = tmp_path / "a", tmp_path / "b"
    onnx_model(a, "good")
    onnx_model(b, "other")
    cache = tmp_path / "cache"
    args = ["models", "--model-repository", a, "--model-repository", b, "--model-cache-dir", cache]
    assert run(args)[0] == 0
    [manifest] = list(cache.glob("*/.anemone-manifest.json"))
    manifest.unlink()
    hostile(manifest, kind)
    status, seconds, peak, why, out, err = run(args, timeout=HANG)
    assert not why, f"{why}; peak RSS {peak} KB"


def test_model_cache_dir_that_is_not_a_directory(hostile_dir, tmp_path):
    """--model-cache-dir naming a device, a FIFO, a file or a link loop:
    refused at once, naming it."""
    a, b = tmp_path / "a", tmp_path / "b"
    onnx_model(a, "good")
    onnx_model(b, "other")
    for kind in ["zero", "fifo", "empty", "loop", "sock"]:
        p = hostile_dir / kind
        refused(run(["models", "--model-repository", a, "--model-repository", b, "--model-cache-dir", p]), p)


def test_custom_config_name_fifo(tmp_path):
    """--model-config-name NAME (Triton's flag) reads <model>/configs/NAME.pbtxt:
    a FIFO there is refused at once, naming it."""
    repo = tmp_path / "repo"
    onnx_model(repo, "good")
    onnx_model(repo, "m")
    hostile(repo / "m" / "configs" / "h100.pbtxt", "fifo")
    status, seconds, peak, why, out, err = run(["doctor", "--model-repository", repo, "--model-config-name", "h100"])
    assert not why, why
    assert "configs/h100.pbtxt is not a regular file" in out + err, (out + err)[-400:]


def test_external_data_without_length_cannot_take_the_server_down(tmp_path):
    """A model's external data file larger than its tensor, with no
    `length` (optional in ONNX): served by tract-cpu, the load must end
    (loaded with the tensor's bytes, or refused) within seconds and bounded
    memory, and the server must keep serving the other models."""
    repo = tmp_path / "repo"
    onnx_model(repo, "good")
    external_data_model(repo / "nolen" / "1" / "model.onnx", length=False)
    hostile(repo / "nolen" / "1" / "w.bin", "sparse")
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "good",
                                  "--backends", "tract-cpu", "--strict")
    try:
        http = addresses["HTTP"]
        wait_ready(http, seconds=60)
        check_add(http)
        request = urllib.request.Request(f"http://{http}/v2/repository/models/nolen/load", b"{}")
        done, peak = [], 0
        import threading

        def load():
            try:
                urllib.request.urlopen(request, timeout=SECONDS)
            except Exception as e:  # refused or cut off: checked below
                done.append(e)
            else:
                done.append(None)
        threading.Thread(target=load, daemon=True).start()
        deadline = time.time() + SECONDS
        while not done and time.time() < deadline and proc.poll() is None:
            peak = max(peak, rss_kb(proc.pid))
            if peak > RSS_CAP_KB:
                break
            time.sleep(0.02)
        if peak > RSS_CAP_KB:
            proc.kill()
        assert peak <= RSS_CAP_KB, f"server RSS {peak} KB while loading"
        assert proc.poll() is None, f"the server died (status {proc.poll()}) loading a model"
        check_add(http)
    finally:
        if proc.poll() is None:
            stop_serve(proc)
        else:
            proc.wait()


def test_system_shared_memory_keys_that_are_no_object(tmp_path):
    """POST /v2/systemsharedmemory/region/NAME/register (Triton's extension):
    a key with '/..' (`/../../dev/zero`), a FIFO, a directory, a link to
    /dev/zero or a link loop in /dev/shm, a byte_size or offset past the
    object's end, or one that overflows: each is refused at once with a
    message (Triton 2.51 refuses them with 400 too); a valid region still
    registers and the server keeps serving."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm")
    tag = f"anemone_h39e_{os.getpid()}"
    made = {
        "fifo": hostile(shm / f"{tag}_fifo", "fifo"),
        "zero": hostile(shm / f"{tag}_zero", "zero"),
        "dir": hostile(shm / f"{tag}_dir", "dir"),
        "loop": hostile(shm / f"{tag}_loop", "loop"),
    }
    small = shm / f"{tag}_small"
    small.write_bytes(b"\0" * 64)
    repo = tmp_path / "repo"
    onnx_model(repo, "good")
    proc, addresses = start_serve(repo)
    try:
        http = addresses["HTTP"]
        wait_ready(http, seconds=60)
        cases = [
            ("dotdot", {"key": "/../../dev/zero", "offset": 0, "byte_size": 16}),
            ("fifo", {"key": f"/{tag}_fifo", "offset": 0, "byte_size": 16}),
            ("zero", {"key": f"/{tag}_zero", "offset": 0, "byte_size": 16}),
            ("dir", {"key": f"/{tag}_dir", "offset": 0, "byte_size": 16}),
            ("loop", {"key": f"/{tag}_loop", "offset": 0, "byte_size": 16}),
            ("huge", {"key": f"/{tag}_small", "offset": 0, "byte_size": 2**64 - 1}),
            ("past", {"key": f"/{tag}_small", "offset": 100, "byte_size": 1}),
            ("overflow", {"key": f"/{tag}_small", "offset": 2**64 - 1, "byte_size": 1}),
            ("missing", {"key": f"/{tag}_nope", "offset": 0, "byte_size": 16}),
        ]
        for name, body in cases:
            start = time.time()
            status, text = post(http, f"/v2/systemsharedmemory/region/r_{name}/register", body)
            assert status == 400, (name, status, text)
            assert time.time() - start < 2, name
            assert "error" in json.loads(text), text
        status, text = post(http, "/v2/systemsharedmemory/region/ok/register",
                            {"key": f"/{tag}_small", "offset": 0, "byte_size": 64})
        assert status == 200, text
        with urllib.request.urlopen(f"http://{http}/v2/systemsharedmemory/status", timeout=10) as r:
            regions = json.loads(r.read())
        assert [r["name"] for r in regions] == ["ok"], regions
        assert rss_kb(proc.pid) < RSS_CAP_KB
        check_add(http)
    finally:
        stop_serve(proc)
        for p in list(made.values()) + [small, shm / f"{tag}_loop.other"]:
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            elif p.is_symlink() or p.exists():
                p.unlink()


def test_bench_input_file_is_bounded(tmp_path):
    """`anemone bench -i NAME=FILE` against a running server, FILE a link
    to /dev/zero: refused naming the file, in bounded time and memory."""
    repo = tmp_path / "repo"
    onnx_model(repo, "good")
    dev = hostile(tmp_path / "zero.npy", "zero")
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"], seconds=60)
        result = run(["bench", "-m", "good", "--protocol", "http", "--url", f"http://{addresses['HTTP']}",
                      "-n", "1", "--warmup", "0", "-i", f"x={dev}"])
        refused(result, dev)
    finally:
        stop_serve(proc)


def test_infer_output_file_that_is_a_pipe_nothing_reads_does_not_hang(tmp_path):
    """`anemone infer -d DIR` where DIR/sum.npy is a FIFO nobody reads: the
    command ends within a few seconds, refusing that output by its path
    ("it is a pipe that nothing reads"), instead of blocking in open(2)
    for ever."""
    x = tmp_path / "x.npy"
    np.save(x, np.ones((1, 4), np.float32))
    out = tmp_path / "out"
    fifo = hostile(out / "sum.npy", "fifo")
    result = run(["infer", ADD, "-i", f"x={x}", "-i", f"y={x}", "-d", out], timeout=HANG)
    refused(result, fifo)
    assert "a pipe that nothing reads" in result[5], result[5]


def test_infer_output_file_that_is_a_pipe_someone_reads_gets_the_npy(tmp_path):
    """The same FIFO with a reader: the output is written to it, an .npy
    numpy reads back (x + y)."""
    x = tmp_path / "x.npy"
    np.save(x, np.arange(4, dtype=np.float32).reshape(1, 4))
    out = tmp_path / "out"
    fifo = hostile(out / "sum.npy", "fifo")
    got = {}

    def read():
        with open(fifo, "rb") as f:
            got["bytes"] = f.read()

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    status, *_, err = run(["infer", ADD, "-i", f"x={x}", "-i", f"y={x}", "-d", out], timeout=30)
    reader.join(timeout=10)
    assert status == 0, err[-400:]
    np.testing.assert_array_equal(np.load(io.BytesIO(got["bytes"])), np.arange(4, dtype=np.float32).reshape(1, 4) * 2)


def test_bench_json_report_to_a_pipe_nothing_reads_does_not_hang(tmp_path):
    """`anemone bench --json-report FILE` where FILE is a FIFO nobody reads: the
    run ends, naming the file, instead of blocking at its end for ever."""
    repo = tmp_path / "repo"
    onnx_model(repo, "good")
    fifo = hostile(tmp_path / "report.json", "fifo")
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"], seconds=60)
        result = run(["bench", "-m", "good", "--protocol", "http", "--url", f"http://{addresses['HTTP']}",
                      "-n", "2", "--warmup", "0", "--json-report", fifo], timeout=30)
        refused(result, fifo)
        assert "a pipe that nothing reads" in result[5], result[5]
    finally:
        stop_serve(proc)


def test_a_model_folder_whose_name_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    """A model folder named with bytes that are not UTF-8 cannot be a model
    (a model's name is a string on both protocols): the server serves the
    others and says once, in its log, which folder it skipped and why."""
    repo = tmp_path / "repo"
    onnx_model(repo, "good")
    bad = os.path.join(os.fsencode(repo), b"bad\xff\xfe")
    os.makedirs(os.path.join(bad, b"1"))
    shutil.copy(ADD, os.path.join(bad, b"1", b"model.onnx"))
    (repo / "good" / "config.pbtxt").write_text(CFG)
    log = tmp_path / "serve.log"
    proc, addresses = start_serve(repo, "--log-file", log, "--model-control-mode", "poll",
                                  "--repository-poll-secs", "1")
    try:
        wait_ready(addresses["HTTP"], seconds=60)
        time.sleep(2.5)  # two polls more: still warned once
        index = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://{addresses['HTTP']}/v2/repository/index", data=b"{}", method="POST"), timeout=10).read())
        assert [row["name"] for row in index] == ["good"], index
    finally:
        stop_serve(proc)
    text = log.read_text(errors="replace")
    warned = [line for line in text.splitlines() if "is not UTF-8" in line]
    assert len(warned) == 1, text[-2000:]
    assert "bad" in warned[0] and "rename it" in warned[0], warned
