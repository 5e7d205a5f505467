"""The limits, timeouts, restrictions, TLS checks, layered configuration and
eviction promises of docs/RELIABILITY.md, docs/SECURITY.md,
docs/CONFIGURATION.md and docs/EVICTION.md, checked from a user's side:
at and just over each limit, with hostile or careless settings (pipes,
/dev/zero, directories, huge numbers, garbage in the environment), and with
models evicted while requests run. Each expectation comes from the docs; a
test marked xfail(strict=True) records a place where the server does not do
what they say."""
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
U64_MAX = str(2**64 - 1)


# ---------------------------------------------------------------- helpers

def save(model, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    model.ir_version = 8
    onnx.save(model, str(path))


def weighted_model(path, n=25600):
    """y = x + W, W an initializer of n FP32 values (W[i] = i): charged n*4 bytes."""
    w = numpy_helper.from_array(np.arange(n, dtype=np.float32), "W")
    g = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def slow_model(path, k=400, d=256):
    """y = x @ I @ I ... (k MatMuls with one 256x256 identity): slow for a large n, y == x."""
    w = numpy_helper.from_array(np.eye(d, dtype=np.float32), "W")
    nodes, prev = [], "x"
    for i in range(k):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", d])], [w])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def tile_model(path, times=100):
    """y = tile(x, times): the answer is `times` times the request."""
    reps = numpy_helper.from_array(np.array([times], np.int64), "reps")
    g = helper.make_graph([helper.make_node("Tile", ["x", "reps"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m"])], [reps])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def anemone(*args, env=None, timeout=20):
    """Runs the binary to completion; returns (status, stdout, stderr); status None on a timeout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""


def serve_args(*flags):
    return ["serve", "--model-repository", str(ROOT / "examples/models"), "--http-port", "0", "--grpc-port", "0",
            *flags]


def shown(*flags, env=None):
    """`anemone config show --json -- flags`: {key: (source, value)}."""
    status, out, err = anemone("config", "show", "--json", "--", *flags, env=env)
    assert status == 0, err
    return {s["key"]: (s["source"], s["value"]) for s in json.loads(out)["settings"]}


@contextlib.contextmanager
def environment(**env):
    """os.environ with `env` set, for a server started inside."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def metric(http, series):
    with urllib.request.urlopen(f"http://{http}/metrics") as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def add_body(rows=1, pad=0):
    x = [[1.0, 2.0, 3.0, 4.0]] * rows
    y = [[10.0, 20.0, 30.0, 40.0]] * rows
    return {"id": "p" * pad, "inputs": [
        {"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": x},
        {"name": "y", "shape": [rows, 4], "datatype": "FP32", "data": y}]}


def add_grpc_inputs(x, y):
    a = grpcclient.InferInput("x", list(x.shape), "FP32")
    a.set_data_from_numpy(x)
    b = grpcclient.InferInput("y", list(y.shape), "FP32")
    b.set_data_from_numpy(y)
    return [a, b]


def raw_socket(http):
    host, port = http.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.settimeout(15)
    return s


def read_until_closed(s):
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


# ---------------------------------------------------------------- a server with small limits

LIMIT = 1000


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """add (examples) and tile, --max-request-bytes 1000, 2 s header and body timeouts."""
    repo = tmp_path_factory.mktemp("limited")
    shutil.copytree(ROOT / "examples/models/add", repo / "add")
    tile_model(repo / "tile" / "1" / "model.onnx")
    proc, addresses = start_serve(repo, "--max-request-bytes", str(LIMIT), "--http-header-timeout-secs", "2",
                                  "--http-body-timeout-secs", "2", "--health-monitor", "false")
    wait_ready(addresses["HTTP"])
    yield addresses
    stop_serve(proc)


def test_a_body_at_the_limit_is_served_and_one_byte_over_is_413_chunked_or_compressed(limited):
    url = f"http://{limited['HTTP']}/v2/models/add/infer"
    base = len(json.dumps(add_body()))
    at = json.dumps(add_body(pad=LIMIT - base))
    over = json.dumps(add_body(pad=LIMIT - base + 1))
    assert (len(at), len(over)) == (LIMIT, LIMIT + 1)
    r = requests.post(url, data=at)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(r.json()["outputs"][0]["data"], [11, 22, 33, 44])
    said = f"request body exceeds the {LIMIT}-byte limit (--max-request-bytes)"
    r = requests.post(url, data=over)
    assert (r.status_code, r.json()["error"]) == (413, said)
    # Chunked (no Content-Length): the same answer.
    r = requests.post(url, data=(over[i:i + 100].encode() for i in range(0, len(over), 100)))
    assert (r.status_code, r.json()["error"]) == (413, said)
    # A 5 KB gzip body that would grow to 5 MB: refused, not inflated.
    import gzip
    bomb = json.dumps(add_body())[:-1] + ', "parameters": {"pad": "' + "a" * 5_000_000 + '"}}'
    packed = gzip.compress(bomb.encode())
    assert len(packed) < LIMIT * 10
    r = requests.post(url, data=packed, headers={"Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["error"]) == (413, said)
    # A small compressed body is served.
    r = requests.post(url, data=gzip.compress(json.dumps(add_body()).encode()), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text


def test_grpc_messages_over_the_limit_are_resource_exhausted_in_either_direction(limited):
    client = grpcclient.InferenceServerClient(limited["gRPC"])
    # A request of 2 x 40 rows x 16 bytes = 1280 bytes of raw contents.
    big = np.ones((40, 4), np.float32)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", add_grpc_inputs(big, big))
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED", e.value
    # A 40-byte request whose answer is 4000 bytes: over the limit going out.
    t = grpcclient.InferInput("x", [10], "FP32")
    t.set_data_from_numpy(np.arange(10, dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("tile", [t])
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED", e.value
    # The server goes on: a small one is served, with the right numbers.
    x, y = np.full((1, 4), 2.0, np.float32), np.arange(4, dtype=np.float32).reshape(1, 4)
    result = client.infer("add", add_grpc_inputs(x, y))
    np.testing.assert_array_equal(result.as_numpy("sum"), x + y)
    t = grpcclient.InferInput("x", [2], "FP32")
    t.set_data_from_numpy(np.array([1.5, -2.0], np.float32))
    np.testing.assert_array_equal(client.infer("tile", [t]).as_numpy("y"), np.tile([1.5, -2.0], 100))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The example repository with the default limits."""
    proc, addresses = start_serve(ROOT / "examples/models", "--health-monitor", "false")
    wait_ready(addresses["HTTP"])
    yield addresses
    stop_serve(proc)


@pytest.mark.parametrize("case", ["inputs", "outputs", "dims", "params", "name"])
def test_counts_over_their_limit_are_400_with_the_documented_words(plain, case):
    url = f"http://{plain['HTTP']}/v2/models/add/infer"
    b = add_body()
    if case == "inputs":
        b["inputs"] = [{"name": f"i{k}", "shape": [1], "datatype": "FP32", "data": [1]} for k in range(1025)]
        says = "more than 1024 inputs"
    elif case == "outputs":
        b["outputs"] = [{"name": f"o{k}"} for k in range(1025)]
        says = "more than 1024 outputs"
    elif case == "dims":
        b["inputs"][0] = {"name": "x", "shape": [1] * 65, "datatype": "FP32", "data": [1]}
        says = "more than 64 dimensions"
    elif case == "params":
        b["parameters"] = {f"p{k}": k for k in range(129)}
        says = "more than 128 parameters"
    else:
        b["inputs"][0]["name"] = "n" * 1025
        says = "is 1025 bytes long, over the limit of 1024"
    r = requests.post(url, json=b)
    assert r.status_code == 400 and says in r.json()["error"], r.text
    # At the limit the count is no reason to refuse.
    if case == "params":
        b["parameters"] = {f"p{k}": k for k in range(128)}
        r = requests.post(url, json=b)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(r.json()["outputs"][0]["data"], [11, 22, 33, 44])


def test_grpc_counts_over_their_limits_are_invalid_argument_naming_them(plain):
    client = grpcclient.InferenceServerClient(plain["gRPC"])
    inputs = []
    for k in range(1025):
        t = grpcclient.InferInput(f"i{k}", [1], "FP32")
        t.set_data_from_numpy(np.ones(1, np.float32))
        inputs.append(t)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", inputs)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "the request has 1025 inputs, over the limit of 1024" in e.value.message()
    t = grpcclient.InferInput("x", [1] * 65, "FP32")
    t._raw_content = np.ones(1, np.float32).tobytes()  # numpy has no 65-dimensional arrays
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", [t])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'x' has 65 dimensions, over the limit of 64" in e.value.message()


def test_stalled_heads_and_bodies_are_cut_off_while_others_are_served(limited):
    http = limited["HTTP"]
    # A head that never ends: closed after about 2 s, with no answer.
    s = raw_socket(http)
    t0 = time.time()
    s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
    # Meanwhile another client is served at once.
    t1 = time.time()
    assert requests.get(f"http://{http}/v2/health/live", timeout=5).status_code == 200
    assert time.time() - t1 < 1.0
    assert read_until_closed(s) == b""
    assert 1.5 <= time.time() - t0 <= 6, time.time() - t0
    # A body that stalls: 408 naming the flag, then the connection closes.
    s = raw_socket(http)
    t0 = time.time()
    s.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp")
    answer = read_until_closed(s).decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "no request body data arrived for 2 s (--http-body-timeout-secs)" in answer
    assert 1.5 <= time.time() - t0 <= 6


def test_shared_memory_keys_that_are_paths_are_refused(plain):
    url = f"http://{plain['HTTP']}/v2/systemsharedmemory/region/r/register"
    for key in ["/dev/zero", "../../dev/zero", "/../etc/passwd", "dev/zero", ""]:
        r = requests.post(url, json={"key": key, "offset": 0, "byte_size": 16})
        assert r.status_code == 400, (key, r.text)
        assert "is not a shared memory object's name" in r.json()["error"], r.text
    status = requests.get(f"http://{plain['HTTP']}/v2/systemsharedmemory/status").json()
    assert status == [], status


# ---------------------------------------------------------------- configuration layers

def test_a_config_file_that_is_a_directory_binary_or_over_1_mib_stops_serve_with_status_2(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "bin.toml").write_bytes(b"max-concurrency = 5\n\xff\xfe\n")
    (tmp_path / "big.toml").write_text("#" * (1 << 20) + "\nmax-concurrency = 3\n")
    (tmp_path / "table.toml").write_text("max-concurrency = 5\n[models.resnet]\nx = 1\n")
    (tmp_path / "list.toml").write_text("max-concurrency = 5\nhttp-port = [1, 2]\n")
    cases = {
        "dir": "Is a directory", "bin.toml": "not UTF-8", "big.toml": "larger than 1024 KiB",
        "table.toml": "line 2, key 'models': tables are not supported: per-model settings go in each model's config.pbtxt",
        "list.toml": "line 2, key 'http-port': takes one value, not a list",
    }
    for name, says in cases.items():
        status, _, err = anemone(*serve_args("--config", str(tmp_path / name)))
        assert status == 2, (name, status, err)
        assert says in err and name in err, (name, err)


def test_a_config_file_that_is_a_pipe_nobody_writes_to_is_refused(tmp_path):
    # It hung start-up for ever: `open` of a pipe waits for a writer.
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    status, _, err = anemone(*serve_args("--config", str(fifo)), timeout=20)
    assert status == 2, f"status {status} (None: still running after 20 s); {err}"
    assert str(fifo) in err and "a pipe that nothing writes to" in err, err


def test_a_zero_memory_budget_is_refused_by_serve_and_models_alike():
    for value in ["0", "0KiB", "0.0001KiB"]:
        status, _, err = anemone(*serve_args("--memory-budget", value))
        assert status == 2 and "give at least 1 byte" in err, (value, status, err)
    for value in ["0", "0KiB"]:
        status, out, err = anemone("models", "--model-repository", str(ROOT / "examples/models"),
                                   "--memory-budget", value, timeout=60)
        assert status == 2 and "give at least 1 byte" in err, (value, status, out[-300:], err[-300:])


def test_layers_file_then_env_then_flag_with_units_and_hidden_secrets(tmp_path):
    cfg = tmp_path / "anemone.toml"
    cfg.write_text('max-concurrency = 64\nmemory-budget = "1.5GiB"\nhttp-port = 8000\n'
                   'http-restricted-api = ["inference:k1=topsecret1"]\ngate-batching = false\n')
    got = shown("--config", str(cfg), "--http-port", "9000", env={
        "ANEMONE_MAX_CONCURRENCY": "32", "ANEMONE_GRPC_RESTRICTED_PROTOCOL": "statistics:k2=topsecret2"})
    assert got["max-concurrency"] == ("env", "32")
    assert got["http-port"] == ("flag", "9000")
    assert got["memory-budget"] == ("file", "1.5GiB")
    assert got["gate-batching"] == ("file", "false")
    assert got["http-restricted-api"] == ("file", "<hidden>")
    assert got["grpc-restricted-protocol"] == ("env", "<hidden>")
    status, out, err = anemone("config", "show", "--", "--config", str(cfg),
                               env={"ANEMONE_GRPC_RESTRICTED_PROTOCOL": "statistics:k2=topsecret2"})
    assert status == 0 and "topsecret" not in out + err


def test_garbage_in_the_environment_names_the_variable_and_stops_with_2():
    for var, value, flag in [("ANEMONE_MEMORY_BUDGET", "lots", "--memory-budget"),
                             ("ANEMONE_EVICTION", "sometimes", "--eviction"),
                             ("ANEMONE_MAX_REQUEST_BYTES", "-5", "--max-request-bytes"),
                             ("ANEMONE_HTTP_BODY_TIMEOUT_SECS", "1e9", "--http-body-timeout-secs")]:
        status, _, err = anemone(*serve_args(), env={var: value})
        assert status == 2, (var, status, err)
        assert f'environment variable {var}="{value}": invalid value' in err and flag in err, err
        assert "fix or unset it" in err


def test_a_budget_with_a_unit_is_what_the_server_counts_against():
    # 1.5GiB from the environment, in the 'any case' the docs allow.
    with environment(ANEMONE_MEMORY_BUDGET="1.5gib"):
        proc, addresses = start_serve(ROOT / "examples/models", "--health-monitor", "false")
    try:
        wait_ready(addresses["HTTP"])
        assert metric(addresses["HTTP"], "anemone_memory_budget_bytes") == 1.5 * 2**30
    finally:
        stop_serve(proc)


def test_boolean_words_in_the_environment_are_honoured_by_serve():
    with environment(ANEMONE_GATE_BATCHING="no", ANEMONE_ALLOW_METRICS="off"):
        proc, addresses = start_serve(ROOT / "examples/models", "--health-monitor", "false")
    try:
        wait_ready(addresses["HTTP"])
        assert "Metrics" not in addresses
        assert metric(addresses["HTTP"], 'anemone_feature_gate{gate="batching"}') == 0
        assert metric(addresses["HTTP"], 'anemone_feature_gate{gate="fallback"}') == 1
    finally:
        stop_serve(proc)


def test_a_run_time_change_is_applied_whole_or_not_at_all(plain):
    url = f"http://{plain['HTTP']}/v2/anemone/config"
    before = metric(plain["HTTP"], "anemone_concurrency_limit")
    for body, says in [({"max-concurrency": 3, "host": "0.0.0.0"}, "'host' cannot change while serving"),
                       ({"max-concurrency": 3, "gate-batching": "maybe"}, "'gate-batching' must be true or false"),
                       ({"max-concurrency": 0}, "at least 1"), ({"max-concurrency": -3}, "at least 1"),
                       ({"max-concurrency": 1e30}, "at least 1"), ({"max-concurrency": 2.5}, "whole number")]:
        r = requests.post(url, json=body)
        assert r.status_code == 400 and says in r.json()["error"], (body, r.text)
        assert metric(plain["HTTP"], "anemone_concurrency_limit") == before
    r = requests.post(url, json={"max-concurrency": 7, "gate-tracing": False})
    assert r.status_code == 200, r.text
    assert metric(plain["HTTP"], "anemone_concurrency_limit") == 7
    got = {s["key"]: (s["source"], s["value"]) for s in requests.get(url).json()["settings"]}
    assert got["max-concurrency"] == ("api", "7") and got["gate-tracing"] == ("api", "false")
    requests.post(url, json={"max-concurrency": int(before), "gate-tracing": True})


def test_run_time_gates_take_the_same_boolean_words(plain):
    url = f"http://{plain['HTTP']}/v2/anemone/config"
    try:
        for word, value in [("off", 0), ("on", 1), ("no", 0), ("yes", 1)]:
            r = requests.post(url, json={"gate-batching": word})
            assert r.status_code == 200, (word, r.text)
            assert metric(plain["HTTP"], 'anemone_feature_gate{gate="batching"}') == value
    finally:
        requests.post(url, json={"gate-batching": True})


def test_a_header_timeout_past_a_year_is_refused():
    # u64::MAX was taken, then every HTTP connection panicked adding it to
    # the clock ('overflow when adding duration to instant') and got no answer.
    for value in [U64_MAX, "31536001"]:
        status, _, err = anemone(*serve_args("--http-header-timeout-secs", value))
        assert status == 2 and "not in 1..=31536000" in err, (value, status, err)


# ---------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
    return d


def test_https_and_grpc_over_tls_serve_tritonclient_and_plain_http_is_told(certificates):
    t = certificates
    proc, addresses = start_serve(ROOT / "examples/models", "--health-monitor", "false",
                                  "--http-tls-cert", str(t / "server.pem"), "--http-tls-key", str(t / "server.key"),
                                  "--grpc-use-ssl", "true", "--grpc-server-cert", str(t / "server.pem"),
                                  "--grpc-server-key", str(t / "server.key"))
    try:
        port = addresses["HTTP"].rsplit(":", 1)[1]
        http = httpclient.InferenceServerClient(
            f"localhost:{port}", ssl=True, ssl_context_factory=lambda: ssl.create_default_context(cafile=str(t / "ca.pem")))
        deadline = time.time() + 60
        while True:
            try:
                if http.is_server_ready():
                    break
            except Exception:
                pass
            assert time.time() < deadline
            time.sleep(0.2)
        x = np.array([[1, 2, 3, 4]], np.float32)
        y = np.array([[10, 20, 30, 40]], np.float32)
        a = httpclient.InferInput("x", [1, 4], "FP32")
        a.set_data_from_numpy(x)
        b = httpclient.InferInput("y", [1, 4], "FP32")
        b.set_data_from_numpy(y)
        r = http.infer("add", [a, b])
        np.testing.assert_array_equal(r.as_numpy("sum"), x + y)
        np.testing.assert_array_equal(r.as_numpy("diff"), x - y)
        gport = addresses["gRPC"].rsplit(":", 1)[1]
        grpc = grpcclient.InferenceServerClient(f"localhost:{gport}", ssl=True,
                                                root_certificates=str(t / "ca.pem"))
        np.testing.assert_array_equal(grpc.infer("add", add_grpc_inputs(x, y)).as_numpy("sum"), x + y)
        r = requests.get(f"http://{addresses['HTTP']}/v2/health/ready", timeout=5)
        assert r.status_code == 400 and "this port serves HTTPS: use an https:// URL" in r.json()["error"]
    finally:
        stop_serve(proc)


def test_tls_files_that_are_devices_or_directories_stop_start_up_naming_file_and_flag(certificates, tmp_path):
    t = certificates
    cert, key = str(t / "server.pem"), str(t / "server.key")
    for flags, named in [
        (["--http-tls-cert", "/dev/zero", "--http-tls-key", key], "/dev/zero (--http-tls-cert) is larger than 1024 KiB"),
        (["--http-tls-cert", cert, "--http-tls-key", "/dev/urandom"], "/dev/urandom (--http-tls-key) is larger than 1024 KiB"),
        (["--http-tls-cert", str(tmp_path), "--http-tls-key", key], f"{tmp_path} (--http-tls-cert) cannot be read"),
        (["--grpc-use-ssl-mutual", "--grpc-server-cert", cert, "--grpc-server-key", key, "--grpc-root-cert",
          "/dev/zero"], "/dev/zero (--grpc-root-cert) is larger than 1024 KiB"),
    ]:
        status, out, err = anemone(*serve_args(*flags))
        assert status not in (0, None), (flags, status)
        assert named in err, err
        assert "MODEL" not in out, "no model may load before the TLS files are checked"


def test_a_tls_file_that_is_a_pipe_stops_start_up(certificates, tmp_path):
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    status, _, err = anemone(*serve_args("--http-tls-cert", str(fifo), "--http-tls-key",
                                         str(certificates / "server.key")), timeout=20)
    assert status not in (0, None), f"status {status} (None: still running after 20 s)"
    assert f"{fifo} (--http-tls-cert)" in err


# ---------------------------------------------------------------- restricted API

def test_a_restricted_api_refuses_before_the_body_is_read():
    # The group comes from the environment alone, as the docs suggest for secrets.
    with environment(ANEMONE_HTTP_RESTRICTED_API="inference:Infer-Key=S3cret"):
        proc, addresses = start_serve(ROOT / "examples/models", "--max-request-bytes", "1000",
                                      "--http-body-timeout-secs", "30", "--health-monitor", "false")
    try:
        wait_ready(addresses["HTTP"])
        url = f"http://{addresses['HTTP']}/v2/models/add/infer"
        said = ("the 'inference' API is restricted: send the header 'infer-key' with the value the server "
                "was given (--http-restricted-api)")
        # A body over the byte limit without the header: 403, not 413.
        r = requests.post(url, data=" " * 5000)
        assert (r.status_code, r.json()["error"]) == (403, said)
        assert "S3cret" not in r.text
        # A body that never comes: 403 at once, not after the body timeout.
        s = raw_socket(addresses["HTTP"])
        t0 = time.time()
        s.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
        s.settimeout(10)
        head = s.recv(4096).decode()
        assert head.startswith("HTTP/1.1 403"), head
        assert time.time() - t0 < 5
        s.close()
        # Another value, another case of the key: refused / served.
        assert requests.post(url, json=add_body(), headers={"infer-key": "s3cret"}).status_code == 403
        r = requests.post(url, json=add_body(), headers={"INFER-KEY": "S3cret"})
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(r.json()["outputs"][1]["data"], [-9, -18, -27, -36])
        # Only inference is restricted; /metrics never is.
        assert requests.post(f"http://{addresses['HTTP']}/v2/repository/index").status_code == 200
        assert requests.get(f"http://{addresses['HTTP']}/metrics").status_code == 200
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- memory budget and eviction

W = 25600  # values of each weighted model: 102400 bytes charged


def weighted_answer(x):
    return x + np.arange(W, dtype=np.float32)


def http_weighted(http, model, x):
    c = httpclient.InferenceServerClient(http, network_timeout=60)
    t = httpclient.InferInput("x", [W], "FP32")
    t.set_data_from_numpy(x, binary_data=True)
    return c.infer(model, [t]).as_numpy("y")


def test_a_busy_model_is_never_evicted_the_load_is_503_naming_it_and_its_request_is_answered(tmp_path):
    slow_model(tmp_path / "slow" / "1" / "model.onnx")  # 262144 bytes charged
    weighted_model(tmp_path / "wa" / "1" / "model.onnx")
    proc, addresses = start_serve(tmp_path, "--memory-budget", "300KiB", "--eviction", "lru",
                                  "--health-monitor", "false", "--backends", "tract-cpu", "--strict")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        x = np.random.default_rng(1).random((8192, 256), dtype=np.float32)
        res = {}

        def run():
            c = httpclient.InferenceServerClient(http, network_timeout=120)
            t = httpclient.InferInput("x", list(x.shape), "FP32")
            t.set_data_from_numpy(x, binary_data=True)
            t0 = time.time()
            res["y"] = c.infer("slow", [t]).as_numpy("y")
            res["t"] = time.time() - t0

        if requests.post(f"http://{http}/v2/repository/index").json()[0]["state"] != "READY":
            run()  # make `slow` the resident one
        th = threading.Thread(target=run)
        th.start()
        # Until the 8 MB request is in flight (a fixed 0.5 s can be short on a loaded machine).
        deadline = time.monotonic() + 60
        while not metric(http, 'anemone_inference_requests_in_flight{model="slow",version="1"}'):
            assert time.monotonic() < deadline and th.is_alive(), "the slow request never showed in flight"
            time.sleep(0.02)
        r = requests.post(f"http://{http}/v2/models/wa/infer",
                          json={"inputs": [{"name": "x", "shape": [W], "datatype": "FP32", "data": [0.0] * W}]})
        busy_running = th.is_alive()
        th.join()
        assert busy_running, f"the slow request took only {res['t']:.2f} s"
        assert r.status_code == 503, r.text
        assert "'slow' version 1 (262144 bytes, 1 requests in flight)" in r.json()["error"]
        np.testing.assert_allclose(res["y"], x, rtol=1e-6)
        # Once it is idle, wa is loaded on demand (evicting slow) and answered.
        xa = np.full(W, 0.5, np.float32)
        np.testing.assert_array_equal(http_weighted(http, "wa", xa), weighted_answer(xa))
        assert metric(http, "anemone_memory_used_bytes") <= 300 * 1024
    finally:
        stop_serve(proc)


@pytest.fixture
def pinned_repo(tmp_path):
    for name in ["pa", "pb", "wc"]:
        weighted_model(tmp_path / name / "1" / "model.onnx")
    for name in ["pa", "pb"]:
        (tmp_path / name / "config.pbtxt").write_text(
            'parameters { key: "eviction" value: { string_value: "never" } }\n')
    return tmp_path


def test_a_load_blocked_by_pinned_models_is_503_naming_them(pinned_repo):
    proc, addresses = start_serve(pinned_repo, "--memory-budget", "250KiB", "--eviction", "lru",
                                  "--health-monitor", "false", "--model-control-mode", "explicit",
                                  "--load-model", "pa", "--load-model", "pb")
    try:
        wait_ready(addresses["HTTP"])
        r = requests.post(f"http://{addresses['HTTP']}/v2/repository/models/wc/load")
        err = r.json()["error"]
        assert "'pa' version 1 (102400 bytes, pinned)" in err and "'pb' version 1 (102400 bytes, pinned)" in err
        grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
        with pytest.raises(InferenceServerException) as e:
            grpc.load_model("wc")
        assert (r.status_code, e.value.status()) == (503, "StatusCode.UNAVAILABLE"), \
            f"HTTP {r.status_code}, gRPC {e.value.status()}"
    finally:
        stop_serve(proc)


def test_an_evicted_model_answers_metadata_without_loading_stats_503_and_reloads_on_request(tmp_path):
    for name in ["wa", "wb", "wc"]:
        weighted_model(tmp_path / name / "1" / "model.onnx")
    proc, addresses = start_serve(tmp_path, "--memory-budget", "250KiB", "--eviction", "lru",
                                  "--health-monitor", "false")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        index = {m["name"]: m for m in requests.post(f"http://{http}/v2/repository/index").json()}
        evicted = [n for n, m in index.items() if m["state"] == "UNAVAILABLE"]
        assert len(evicted) == 1, index
        name = evicted[0]
        assert re.match(r"evicted \(LRU\) to make room for '\w+'; the next request for it loads it again",
                        index[name]["reason"])
        loads = metric(http, f'anemone_model_on_demand_loads_total{{model="{name}"}}') or 0
        assert requests.get(f"http://{http}/v2/health/ready").status_code == 200
        assert requests.get(f"http://{http}/v2/models/{name}/ready").status_code != 200
        meta = requests.get(f"http://{http}/v2/models/{name}")
        assert meta.status_code == 200 and meta.json()["inputs"][0]["shape"] == [W]
        grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
        assert grpc.get_model_metadata(name).inputs[0].name == "x"
        assert requests.get(f"http://{http}/v2/models/{name}/config").status_code == 200
        stats = requests.get(f"http://{http}/v2/models/{name}/stats")
        assert stats.status_code == 503 and "evicted" in stats.json()["error"], stats.text
        # Metadata, config and stats did not load it.
        assert (metric(http, f'anemone_model_on_demand_loads_total{{model="{name}"}}') or 0) == loads
        assert metric(http, f'anemone_model_evicted{{model="{name}",version="1"}}') == 1
        # Concurrent requests over both protocols: one load, every answer right.
        def one(k):
            x = np.full(W, float(k), np.float32)
            if k % 2:
                t = grpcclient.InferInput("x", [W], "FP32")
                t.set_data_from_numpy(x)
                return k, grpc.infer(name, [t]).as_numpy("y")
            return k, http_weighted(http, name, x)
        with ThreadPoolExecutor(6) as pool:
            for k, y in pool.map(one, range(6)):
                np.testing.assert_array_equal(y, weighted_answer(np.full(W, float(k), np.float32)))
        assert metric(http, f'anemone_model_on_demand_loads_total{{model="{name}"}}') == loads + 1
        assert metric(http, "anemone_memory_used_bytes") <= 250 * 1024
    finally:
        stop_serve(proc)


def test_a_model_that_can_never_fit_is_refused_with_both_sizes(tmp_path):
    weighted_model(tmp_path / "huge" / "1" / "model.onnx", n=51200)  # 204800 bytes of weights
    weighted_model(tmp_path / "small" / "1" / "model.onnx", n=256)
    proc, addresses = start_serve(tmp_path, "--memory-budget", "100KiB", "--eviction", "lru",
                                  "--health-monitor", "false", "--strict-readiness", "false")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        index = {m["name"]: m for m in requests.post(f"http://{http}/v2/repository/index").json()}
        assert index["small"]["state"] == "READY"
        assert index["huge"]["state"] == "UNAVAILABLE"
        reason = index["huge"]["reason"]
        size = (tmp_path / "huge" / "1" / "model.onnx").stat().st_size
        assert "102400" in reason.replace(",", "") and (str(size) in reason or "204800" in reason), reason
        # The small one is still served, with the right numbers.
        c = httpclient.InferenceServerClient(http)
        t = httpclient.InferInput("x", [256], "FP32")
        x = np.linspace(-1, 1, 256, dtype=np.float32)
        t.set_data_from_numpy(x)
        np.testing.assert_array_equal(c.infer("small", [t]).as_numpy("y"), x + np.arange(256, dtype=np.float32))
    finally:
        stop_serve(proc)


def test_concurrent_loads_unloads_and_requests_keep_the_budget_and_the_answers(tmp_path):
    names = ["m0", "m1", "m2", "m3"]
    for name in names:
        weighted_model(tmp_path / name / "1" / "model.onnx")
    proc, addresses = start_serve(tmp_path, "--memory-budget", "250KiB", "--eviction", "lru",
                                  "--health-monitor", "false", "--model-control-mode", "explicit",
                                  "--load-model", "*")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        rng = np.random.default_rng(7)
        plan = [(names[rng.integers(4)], ["load", "unload", "infer", "infer"][rng.integers(4)]) for _ in range(48)]
        statuses = []

        def act(step):
            name, what = step
            if what == "infer":
                x = np.full(W, 3.0, np.float32)
                r = requests.post(f"http://{http}/v2/models/{name}/infer", timeout=60,
                                  json={"inputs": [{"name": "x", "shape": [W], "datatype": "FP32",
                                                    "data": x.tolist()}]})
                if r.status_code == 200:
                    np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32),
                                                  weighted_answer(x))
            else:
                r = requests.post(f"http://{http}/v2/repository/models/{name}/{what}", timeout=60)
            return what, r.status_code, r.text[:200]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(act, plan))
        bad = [s for s in statuses if s[1] >= 500 and s[1] != 503 or s[1] in (400, 409) and s[0] != "infer"]
        assert not bad, bad
        assert metric(http, "anemone_memory_used_bytes") <= 250 * 1024
        # Afterwards every model can be loaded (evicting others) and served.
        for name in names:
            assert requests.post(f"http://{http}/v2/repository/models/{name}/load").status_code == 200
            x = np.full(W, -1.0, np.float32)
            np.testing.assert_array_equal(http_weighted(http, name, x), weighted_answer(x))
        assert metric(http, "anemone_memory_used_bytes") <= 250 * 1024
    finally:
        stop_serve(proc)
