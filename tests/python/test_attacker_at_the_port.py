"""An attacker at the port: what a client that should not be trusted can make
`anemone serve` do, read against docs/SECURITY.md (restricted API, load
requests, shared memory), docs/OBSERVABILITY.md (the logging and trace
APIs), docs/FROM_TRITON.md and docs/SERVING.md.

Earlier files cover the operator's hostile paths (test_hostile_paths.py),
the documented limits (test_limits_docs.py, test_extreme_values.py), honest
but odd clients (test_other_clients.py) and the documented security features
(test_deploy_security_docs.py: each route's group, a first set of path
tricks, `file:` parameters of four paths, names with `/`, `..`, NUL). This
file does not repeat them; it tries what they leave: header and metadata
spellings of the key, more request-target and framing tricks, keep-alive
reuse, gRPC method-path spellings and reflection, every path-bearing field of
a load request's `config`, `file:` parameters by size, count and spelling,
names with control bytes, JSON given twice or nested deep in every control
body, shared memory keys that are links or control bytes, log injection,
the log and trace files moved through the API, and what error answers tell
an unrestricted client.

Each docstring says what tritonserver 2.51 answered to the same request,
run side by side on 2026-12-06 (a Python stand-in `pyadd` with the same
inputs; CI has no Triton, so the tests run against anemone only). Answers
are checked against numpy. Found in session 43 (binary of 2026-12-06) and
fixed the same day, each test failing before its fix: model names and
config keys from requests forged log lines; a JSON key given twice was taken
silently (the last) in parameters and control bodies; SECURITY.md's group
table left out `config` (/v2/anemone/config); a model that failed to load
showed its load error, with absolute server paths, on unrestricted routes.
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from serve_support import ROOT, start_serve, stop_serve, wait_ready
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

BINARY = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
ADD = ROOT / "examples/models/add/1/model.onnx"  # x, y FP32 [-1, 4] -> sum = x + y, diff = x - y
ADMIN = "Adm1n=S3cret-h43c"  # the value holds '=': only the first '=' of a group splits key and value
HTTP_GROUPS = "model-repository,model-config,statistics,shared-memory,trace,logging,config"
GRPC_GROUPS = "model-repository,health,model-config,statistics,shared-memory,trace,logging"
KEY = {"admin-key": ADMIN}
GKEY = {"triton-grpc-protocol-admin-key": ADMIN}
X = np.array([[1.5, -2.0, 3.25, 4.0]], np.float32)
Y = np.array([[10.0, 20.5, -30.0, 40.0]], np.float32)
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")  # every log line starts with its timestamp

PY_CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] } ]
'''
PY_MODEL = '''import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            y = pb_utils.get_input_tensor_by_name(r, "y").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("sum", (x + y).astype(np.float32))]))
        return out
'''


# ---------------------------------------------------------------- helpers

def add_body(x=X, y=Y, **extra):
    body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()},
                       {"name": "y", "shape": list(y.shape), "datatype": "FP32", "data": y.ravel().tolist()}]}
    body.update(extra)
    return body


def check_add(answer, x=X, y=Y):
    out = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_allclose(out["sum"], x + y)


def exchange(address, data, timeout=5.0):
    """Sends `data` on a new connection; everything received until the server closes it (or `timeout`)."""
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    out = b""
    try:
        s.sendall(data)
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    return out


def statuses(data):
    """The status codes of the HTTP/1.x responses in `data`, in order (each body skipped by its
    Content-Length; one without runs to the end)."""
    out = []
    while data.startswith(b"HTTP/1."):
        head, _, data = data.partition(b"\r\n\r\n")
        out.append(int(head.split(b" ", 2)[1]))
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        data = data[int(length.group(1)):] if length else b""
    return out


def head_lines(data):
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def post_raw(target, headers=b"", body=b"", version=b"HTTP/1.1", close=True):
    return (b"POST " + target + b" " + version + b"\r\nHost: x\r\n" + headers
            + b"Content-Length: %d\r\n" % len(body) + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)


def grpc_raw(address, path, metadata=None, message=b""):
    """A unary call to `path` with raw bytes: ('OK', answer) or (status name, details)."""
    with grpc.insecure_channel(address) as ch:
        call = ch.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            return "OK", call(message, metadata=metadata, timeout=10)
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""


def shm_file(name, data):
    """A POSIX shared memory object `/name` holding `data` (a file in /dev/shm, what shm_open makes)."""
    path = Path("/dev/shm") / name
    path.write_bytes(data)
    return path


class Served:
    def __init__(self, proc, addresses, repo, log):
        self.proc, self.repo, self.log = proc, repo, log
        self.http, self.grpc = addresses["HTTP"], addresses["gRPC"]
        self.url = f"http://{self.http}"

    def grpc_client(self):
        return grpcclient.InferenceServerClient(self.grpc)

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def serve(repo, *flags):
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--health-monitor", "false", *flags)
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, addresses


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """add (loaded), add2 and py (for load requests), broken (garbage); the management groups behind one
    key over HTTP, and health too over gRPC; the log in a file at INFO, as the container runs it
    (Dockerfile: ANEMONE_LOG=info)."""
    d = tmp_path_factory.mktemp("attacker")
    repo = d / "repo"
    for name in ("add", "add2"):
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(ADD, repo / name / "1" / "model.onnx")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx model at all\n")
    (repo / "py" / "1").mkdir(parents=True)
    (repo / "py" / "config.pbtxt").write_text(PY_CONFIG)
    (repo / "py" / "1" / "model.py").write_text(PY_MODEL)
    log = d / "anemone.log"
    proc, addresses = serve(repo, "--model-control-mode", "explicit", "--load-model", "add",
                            "--http-restricted-api", f"{HTTP_GROUPS}:admin-key={ADMIN}",
                            "--grpc-restricted-protocol", f"{GRPC_GROUPS}:admin-key={ADMIN}",
                            "--log-file", str(log), "--log-info", "true")
    try:
        wait_ready(addresses["HTTP"], seconds=90)
        yield Served(proc, addresses, repo, log)
    finally:
        stop_serve(proc)


def tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


# ---------------------------------------------------------------- restricted API over HTTP

def test_a_key_header_given_twice_is_judged_by_its_first_value_and_wrong_guesses_are_not_echoed(srv):
    """SECURITY.md Restricted API: "the request must carry the header <key>: <value> ... values are compared
    exactly". Given twice, the first value decides (a wrong one first: 403; the right one first: served),
    and a 403 never repeats what the client sent. tritonserver 2.51: the same (403 / 200; its message
    names the header only)."""
    idx = b"/v2/repository/index"
    wrong_first = exchange(srv.http, post_raw(idx, b"admin-key: Guess-77\r\nadmin-key: %s\r\n" % ADMIN.encode()))
    assert statuses(wrong_first) == [403], wrong_first[:300]
    assert b"Guess-77" not in wrong_first and ADMIN.encode() not in wrong_first
    right_first = exchange(srv.http, post_raw(idx, b"admin-key: %s\r\nadmin-key: Guess-77\r\n" % ADMIN.encode()))
    assert statuses(right_first) == [200], right_first[:300]
    assert b'"add"' in right_first


@pytest.mark.parametrize("line,status", [
    (b"admin-key:\r\n", 403),                               # empty value
    (b"admin_key: %s\r\n", 403),                            # underscore, as CGI and some proxies fold it
    (b"admin-key : %s\r\n", 400),                           # space before the colon (RFC 9112 5.1: 400)
    (b"admin-key:\r\n %s\r\n", 400),                        # obs-fold continuation (RFC 9112 5.2)
    (b"admin-key: %s\x00\r\n", 400),                        # NUL in the value
    (b"admin-key: %s, %s\r\n", 403),                        # a list of the value (a proxy joining two)
    (b"admin-key: %s\rX-Evil: 1\r\n", 400),                 # a bare CR
    (b"ADMIN-KEY: %S\r\n", 403),                            # the value upper-cased (values are exact)
    (b"x-admin-key: %s\r\n", 403),
], ids=["empty", "underscore", "space-colon", "obs-fold", "nul", "list", "bare-cr", "value-case", "prefixed"])
def test_key_header_spellings_that_are_not_the_header(srv, line, status):
    """Header spellings that must not pass the `model-repository` guard: an empty value, an underscore
    for the dash, a name with a space before the colon, a folded line, NUL or a bare CR in the value, the
    value twice as a list, the value in upper case, another name. Keys are case-insensitive, values exact
    (SECURITY.md). tritonserver 2.51: 403 for the empty value, underscore, space before the colon, list,
    upper case and other name; the folded line and the bare CR close the connection unanswered; and the
    value followed by NUL is served (200: it compares up to the NUL), where anemone answers 400."""
    value = ADMIN.encode()
    line = line.replace(b"%S", value.upper()).replace(b"%s", value)
    data = exchange(srv.http, post_raw(b"/v2/repository/index", line))
    assert statuses(data) == [status], (line, data[:300])
    assert b'"add"' not in data


def test_whitespace_around_the_value_is_not_part_of_it(srv):
    """RFC 9110 5.5: leading and trailing whitespace is not part of a field value, so `admin-key:   V  `
    carries V and is served. tritonserver 2.51 (libevhtp) keeps the spaces and answers 403; anemone's
    reading is the RFC's, and no other value gets in (see the spellings above)."""
    data = exchange(srv.http, post_raw(b"/v2/repository/index", b"admin-key: \t %s \t\r\n" % ADMIN.encode()))
    assert statuses(data) == [200], data[:300]


TARGETS = [
    (b"/v2/repository/../repository/index", None), (b"/v2%2Frepository%2Findex", None),
    (b"/v2/repository%2Findex", None), (b"/v2/repository/%2e%2e/repository/index", None),
    (b"/v2/./repository/index", None), (b"/%76%32/repository/index", None), (b"/v2/repository/index/.", None),
    (b"/v2/repository/index%20", None), (b"http://localhost//v2/repository/index", None),
    (b"/v2/repository/index#frag", 403), (b"http://localhost/v2/repository/index", 403),
    (b"http://localhost:1/v2/repository/index?admin-key=x", 403),
]


@pytest.mark.parametrize("target,status", TARGETS, ids=[t.decode() for t, _ in TARGETS])
def test_request_target_tricks_never_reach_the_repository_index(srv, target, status):
    """Request targets an attacker tries on a restricted route, beyond test_deploy_security_docs.py's:
    dot segments and percent-encoded dots or slashes (never decoded into routing), `#frag`, the
    absolute form (RFC 9112 3.2.2: routed by its path, so guarded), a trailing `%20`. None is 2xx; those
    that name the route get the 403. tritonserver 2.51: 404 for each, but 403 for the absolute forms
    with one slash (its `#frag` is 404 where anemone drops the fragment and answers 403)."""
    data = exchange(srv.http, post_raw(target))
    got = statuses(data)
    assert len(got) == 1 and not 200 <= got[0] < 300, (target, data[:300])
    if status:
        assert got == [status], (target, data[:300])
    assert b'"add"' not in data and b"READY" not in data


def test_http_1_0_is_guarded_like_1_1(srv):
    """An HTTP/1.0 request (no Host header needed) to a restricted route gets the 403, and with the key
    is served. tritonserver 2.51: 403 / 200."""
    bare = b"POST /v2/repository/index HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    assert statuses(exchange(srv.http, bare)) == [403]
    keyed = b"POST /v2/repository/index HTTP/1.0\r\nadmin-key: %s\r\nContent-Length: 0\r\n\r\n" % ADMIN.encode()
    data = exchange(srv.http, keyed)
    assert statuses(data) == [200] and b'"add"' in data, data[:300]


def test_each_request_on_a_keep_alive_connection_is_judged_alone(srv):
    """The key is checked per request, never per connection: three requests pipelined on one keep-alive
    connection, with the key, without, without (and without, with, without), get 200, 403, 403 (403,
    200, 403). tritonserver 2.51: 200, 403, 200, 403 for requests sent one after another on one
    connection; pipelined, it answers the first only."""
    good = post_raw(b"/v2/repository/index", b"admin-key: %s\r\n" % ADMIN.encode(), close=False)
    bad = post_raw(b"/v2/repository/index", close=False)
    last = post_raw(b"/v2/repository/index")
    assert statuses(exchange(srv.http, good + bad + last)) == [200, 403, 403]
    assert statuses(exchange(srv.http, bad + good + last)) == [403, 200, 403]


SMUGGLE = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
FRAMINGS = {
    "two-lengths": b"Content-Length: 4\r\nContent-Length: 44\r\n\r\n{}\r\n",
    "negative": b"Content-Length: -1\r\n\r\n",
    "plus-sign": b"Content-Length: +2\r\n\r\n{}",
    "hex": b"Content-Length: 0x2\r\n\r\n{}",
    "trailing-garbage": b"Content-Length: 2x\r\n\r\n{}",
    "past-u64": b"Content-Length: 18446744073709551618\r\n\r\n{}",
    "space-before-colon": b"Content-Length : 5\r\n\r\n{}{}{",
    "te-twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "te-vertical-tab": b"Transfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "chunk-size-0x": b"Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n",
}


@pytest.mark.parametrize("framing", FRAMINGS.values(), ids=list(FRAMINGS))
def test_framing_tricks_never_smuggle_a_second_request(srv, framing):
    """Request smuggling: a body length a front proxy could read one way and the server another (two
    Content-Lengths, a negative, signed, hex, garbage-tailed or u64-overflowing one, a space before the
    colon, Transfer-Encoding twice or disguised, a chunk size `0x0`), followed by a second request. The
    server must answer one 400 and close, never run the second. tritonserver 2.51: answers nothing and
    closes for the bad lengths, and one answer (never a second) for the others."""
    data = exchange(srv.http, b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\n" + framing + SMUGGLE)
    assert statuses(data) == [400], data[:400]
    assert b'"live"' not in data


def test_crlf_in_names_and_ids_never_reaches_a_response_header_or_event(srv):
    """Response splitting: a model name with %0D%0A in the URL, an inference `id` with CR LF, and a
    generate_stream `id` with "\\n\\ndata: ..." come back JSON-escaped in bodies only: no header line
    is added and the event stream holds one `data:` event. tritonserver 2.51: no header added either
    (400 to the encoded name, which it does not decode; the `id` echoed in JSON; no generate for the
    Python stand-in)."""
    data = exchange(srv.http, b"GET /v2/models/x%0D%0ASet-Cookie:%20evil=1/ready HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
    assert statuses(data) == [404], data[:300]
    assert not [h for h in head_lines(data) if h.lower().startswith(b"set-cookie")]
    evil = "a\r\nSet-Cookie: evil=1\r\n\r\ndata: {\"forged\":1}\n\n"
    r = requests.post(f"{srv.url}/v2/models/add/infer", json=add_body(id=evil), timeout=30)
    assert r.status_code == 200 and r.json()["id"] == evil
    assert "set-cookie" not in {k.lower() for k in r.headers}
    check_add(r.json())
    r = requests.post(f"{srv.url}/v2/models/add/generate_stream", timeout=30,
                      json={"id": evil, "x": X.ravel().tolist(), "y": Y.ravel().tolist()})
    assert r.status_code == 200, r.text[:300]
    events = [line for line in r.text.split("\n") if line.startswith("data:")]
    assert len(events) == 1, r.text
    event = json.loads(events[0][5:])
    assert event["id"] == evil
    np.testing.assert_allclose(np.array(event["sum"], np.float32), (X + Y).ravel())


# ---------------------------------------------------------------- restricted API over gRPC

PATHS = ["/inference.GRPCInferenceService//RepositoryIndex", "//inference.GRPCInferenceService/RepositoryIndex",
         "/inference.GRPCInferenceService/RepositoryIndex/", "/inference.GRPCInferenceService/repositoryindex",
         "/inference.GRPCInferenceService/Repository%49ndex", "/inference.GRPCInferenceService/./RepositoryIndex",
         "/x/../inference.GRPCInferenceService/RepositoryIndex", "/inference.GRPCInferenceService/RepositoryIndex?a=1",
         "/grpc.health.v1.Health//Check", "/other.Service/RepositoryIndex"]


@pytest.mark.parametrize("path", PATHS)
def test_grpc_method_path_spellings_never_reach_a_restricted_method(srv, path):
    """gRPC routes by the exact `:path`: doubled or trailing slashes, case, percent-encoding, dot
    segments, a query, another service name, without the key: never OK (UNIMPLEMENTED where no method
    matches, PERMISSION_DENIED where the guard reads the method). tritonserver 2.51: UNIMPLEMENTED or
    UNAVAILABLE ("This protocol is restricted")."""
    code, answer = grpc_raw(srv.grpc, path)
    assert code in ("UNIMPLEMENTED", "PERMISSION_DENIED"), (path, code, answer)


def test_grpc_reflection_is_not_served(srv):
    """No reflection service (v1 or v1alpha) answers: it is no door around the restricted groups and does
    not list the API. tritonserver 2.51: UNIMPLEMENTED for both."""
    for path in ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                 "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"):
        assert grpc_raw(srv.grpc, path)[0] == "UNIMPLEMENTED", path


@pytest.mark.parametrize("metadata,ok", [
    ([("triton-grpc-protocol-admin-key", "guess"), ("triton-grpc-protocol-admin-key", ADMIN)], False),
    ([("triton-grpc-protocol-admin-key", ADMIN), ("triton-grpc-protocol-admin-key", "guess")], True),
    ([("triton-grpc-protocol-admin-key-bin", ADMIN.encode())], False),
    ([("triton_grpc_protocol_admin_key", ADMIN)], False),
    ([("triton-grpc-protocol-admin-key", f" {ADMIN} ")], False),
    ([("triton-grpc-protocol-admin-key", ADMIN.upper())], False),
    ([("grpc-protocol-admin-key", ADMIN)], False),
], ids=["wrong-first", "right-first", "bin-suffix", "underscores", "spaces", "value-case", "short-prefix"])
def test_grpc_key_metadata_spellings(srv, metadata, ok):
    """SECURITY.md: over gRPC the metadata `triton-grpc-protocol-<key>: <value>`. Given twice the first
    decides; a `-bin` key, underscores, spaces around the value, the value upper-cased or a shorter
    prefix are refused. tritonserver 2.51: the same outcomes (its refusal is UNAVAILABLE, anemone's
    PERMISSION_DENIED as SECURITY.md says)."""
    code, answer = grpc_raw(srv.grpc, "/inference.GRPCInferenceService/RepositoryIndex", metadata)
    if ok:
        assert code == "OK" and b"add" in answer, (code, answer)
    else:
        assert code == "PERMISSION_DENIED", (code, answer)
        assert ADMIN not in answer and "guess" not in answer


# ---------------------------------------------------------------- the groups SECURITY.md lists

def _security_md_groups():
    text = (ROOT / "docs/SECURITY.md").read_text()
    section = text.split("## Restricted API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\s*\| `([a-z-]+)` \|", section, re.M)


def _serve_help_groups():
    out = subprocess.run([str(BINARY), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    return [g.strip() for g in re.search(r"APIs: ([a-z, -]+)\.", out).group(1).split(",")]


def test_security_md_lists_every_api_group_serve_takes():
    """SECURITY.md's table of API groups is what an operator restricts to lock the server down; `serve
    --help` (and CONFIGURATION.md) list one more, `config` (GET and POST /v2/anemone/config: every
    setting, paths included, and run-time changes of max-concurrency, the log level and the feature
    gates). The table must name every group the flag takes. (tritonserver has no such route.)"""
    assert _security_md_groups(), "the table was not found"
    assert set(_serve_help_groups()) <= set(_security_md_groups())


def test_restricting_every_group_security_md_lists_closes_every_route_but_metrics(tmp_path):
    """An operator follows SECURITY.md to close the whole API: every group of its table behind a key.
    Then no route but `/metrics` ("never restricted") answers without the key; a POST to
    /v2/anemone/config that would set max-concurrency to 1 (every other request 429) must be 403."""
    groups = ",".join(_security_md_groups())
    assert groups, "SECURITY.md's table of API groups was not found"
    (tmp_path / "repo" / "add" / "1").mkdir(parents=True)
    shutil.copy(ADD, tmp_path / "repo" / "add" / "1" / "model.onnx")
    proc, addresses = serve(tmp_path / "repo", "--http-restricted-api", f"{groups}:k=v")
    try:
        url = f"http://{addresses['HTTP']}"
        deadline = time.time() + 60
        while requests.get(f"{url}/v2/health/ready", headers={"k": "v"}).status_code != 200:
            assert time.time() < deadline
            time.sleep(0.1)
        open_routes = []
        for method, path, body in [("GET", "/v2", None), ("GET", "/v2/health/ready", None),
                                   ("GET", "/v2/models/add", None), ("POST", "/v2/models/add/infer", add_body()),
                                   ("GET", "/v2/models/add/config", None), ("POST", "/v2/repository/index", {}),
                                   ("GET", "/v2/models/stats", None), ("GET", "/v2/trace/setting", None),
                                   ("GET", "/v2/systemsharedmemory/status", None), ("GET", "/v2/logging", None),
                                   ("GET", "/v2/anemone/config", None),
                                   ("POST", "/v2/anemone/config", {"gate-tracing": True})]:
            r = requests.request(method, url + path, json=body, timeout=30)
            if r.status_code != 403:
                open_routes.append((method, path, r.status_code))
        assert open_routes == []
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- load requests

LOAD_PATHS = {
    "default_model_filename-dotdot": ("add2", {"default_model_filename": "../../add/1/model.onnx"}),
    "default_model_filename-absolute": ("add2", {"default_model_filename": str(ADD)}),
    "label_filename-absolute": ("add2", {"output": [{"name": "sum", "data_type": "TYPE_FP32", "dims": [-1, 4],
                                                     "label_filename": "/etc/passwd"}]}),
    "label_filename-through-version": ("add2", {"output": [{"name": "sum", "data_type": "TYPE_FP32", "dims": [-1, 4],
                                                            "label_filename": "1/../../../../../etc/passwd"}]}),
    "warmup-input_data_file": ("add2", {"model_warmup": [{"name": "w", "batch_size": 1, "inputs": {
        "x": {"data_type": "TYPE_FP32", "dims": [1, 4], "input_data_file": "../../../../../../etc/passwd"},
        "y": {"data_type": "TYPE_FP32", "dims": [1, 4], "zero_data": True}}}]}),
    "initial_state-data_file": ("add2", {"sequence_batching": {"state": [{
        "input_name": "x", "output_name": "sum", "data_type": "TYPE_FP32", "dims": [1, 4],
        "initial_state": [{"name": "s", "data_type": "TYPE_FP32", "dims": [1, 4], "data_file": "/etc/passwd"}]}]}}),
    "trt_engine_cache_path": ("add2", {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [
        {"name": "tensorrt", "parameters": {"trt_engine_cache_enable": "1", "trt_engine_cache_path": "@OUT@"}}]}}}),
    "coreml.cache_dir": ("add2", {"parameters": {"coreml.cache_dir": {"string_value": "@OUT@"}}}),
    "onnxruntime.coreml.cache_dir": ("add2", {"parameters": {"onnxruntime.coreml.cache_dir":
                                                             {"string_value": "../../../../../../..@OUT@"}}}),
    "EXECUTION_ENV_PATH-absolute": ("py", {"parameters": {"EXECUTION_ENV_PATH": {"string_value": "/usr"}}}),
    "EXECUTION_ENV_PATH-model-dir-dotdot": ("py", {"parameters": {"EXECUTION_ENV_PATH": {
        "string_value": "$$TRITON_MODEL_DIRECTORY/../../../../usr"}}}),
    "EXECUTION_ENV_PATH-other-model": ("py", {"parameters": {"EXECUTION_ENV_PATH": {
        "string_value": "$$TRITON_MODEL_DIRECTORY/../add2"}}}),
}


@pytest.mark.parametrize("model,config", LOAD_PATHS.values(), ids=list(LOAD_PATHS))
def test_every_path_a_load_config_names_stays_in_the_repository(srv, tmp_path, model, config):
    """SECURITY.md: a load request may carry `config`, "checked like a config.pbtxt"; SERVING.md "Paths
    and file bounds": "Nothing a configuration or a request names may lead out of the repository" --
    default_model_filename, label_filename, a warm-up input_data_file, an initial_state data_file, the
    cache directories and a Python model's EXECUTION_ENV_PATH. Each pointed outside, through the load
    API: 400, the field named, nothing read (no line of /etc/passwd comes back) and nothing created
    where a cache directory pointed. tritonserver 2.51 checks none of these: `default_model_filename:
    "../../pyadd/1/model.py"` loads another model's file (200), `label_filename: "/etc/passwd"` is
    joined to the model's folder, `EXECUTION_ENV_PATH: "/usr"` is taken (and fails for want of
    `bin/activate`)."""
    out = tmp_path / "written-here"
    config = json.loads(json.dumps(config).replace("@OUT@", str(out)))
    if model == "py":
        config = dict(config, backend="python", max_batch_size=0,
                      input=[{"name": n, "data_type": "TYPE_FP32", "dims": [4]} for n in ("x", "y")],
                      output=[{"name": "sum", "data_type": "TYPE_FP32", "dims": [4]}])
    r = requests.post(f"{srv.url}/v2/repository/models/{model}/load", headers=KEY, timeout=60,
                      json={"parameters": {"config": json.dumps(config)}})
    assert r.status_code == 400, r.text[:400]
    error = r.json()["error"]
    assert error.startswith("failed to load"), error
    field = [k for k in ("default_model_filename", "label_filename", "input_data_file", "data_file",
                         "trt_engine_cache_path", "cache_dir", "EXECUTION_ENV_PATH") if k in json.dumps(config)][0]
    assert field in error, error
    assert "root:" not in error
    assert not out.exists()


def test_file_parameters_of_any_size_count_or_spelling_write_nothing(srv):
    """SECURITY.md Load requests: `file:<path>` parameters "are refused with 400 / INVALID_ARGUMENT
    whatever the path ... and nothing is written". Beyond test_deploy_security_docs.py's four paths: an
    8 MiB file, 2,000 files, `FILE:` in capitals, a `file:` key with a leading space, a traversal through
    the version folder, and 500 files over gRPC: each refused within seconds, the repository unchanged,
    and the refusal shows a long key shortened. tritonserver 2.51 writes such files (`file:1/model.py`
    with a config: 200, the model loaded from them) and refuses the traversal (500 "failed to poll")."""
    before = tree(srv.repo)
    content = base64.b64encode(b"\x08\x07" * (4 << 20)).decode()
    bodies = [{"file:1/model.onnx": content},
              {f"file:1/f{i}.bin": "AAAA" for i in range(2000)},
              {"FILE:1/model.onnx": "AAAA"}, {" file:1/model.onnx": "AAAA"},
              {"file:1/../../../../../../tmp/anemone-h43c-evil": "AAAA"},
              {"config": "{}", "file:" + "d/" * 3000 + "x": "AAAA"}]
    for params in bodies:
        t0 = time.time()
        r = requests.post(f"{srv.url}/v2/repository/models/add2/load", headers=KEY, timeout=60,
                          json={"parameters": params})
        assert r.status_code == 400, (list(params)[:2], r.text[:300])
        assert time.time() - t0 < 10
        assert len(r.text) < 2048, len(r.text)
    with pytest.raises(InferenceServerException) as e:
        srv.grpc_client().load_model("add2", files={f"1/f{i}.bin": b"x" * 1000 for i in range(500)}, headers=GKEY)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value
    assert tree(srv.repo) == before
    assert not Path("/tmp/anemone-h43c-evil").exists()


def test_model_names_with_control_bytes_or_10000_bytes(srv):
    """SECURITY.md: names with `/`, `\\`, NUL, `.` or `..` are 400 before any lookup. Beyond those: a
    name of 10,000 bytes is 400 / INVALID_ARGUMENT over both protocols with the name shortened in the
    answer; an overlong UTF-8 slash (`%c0%af`) is 400 (not UTF-8), never decoded to `/`; a fullwidth
    solidus, a tab, CR LF are names like any other (404 / NOT_FOUND). The index is unchanged.
    tritonserver 2.51: gRPC INTERNAL "failed to poll from model repository" for each, the 10,000 bytes
    echoed whole; over HTTP it closes the connection on the 10,000-byte name unanswered."""
    before = requests.post(f"{srv.url}/v2/repository/index", headers=KEY, timeout=30).json()
    def load(name):
        return requests.post(f"{srv.url}/v2/repository/models/{name}/load", headers=KEY, timeout=30)

    r = load("b" * 10000)
    assert r.status_code == 400 and len(r.text) < 1024, (r.status_code, len(r.text))
    for name in ("%c0%af..%c0%afadd", "..%c0%af", "add%ff"):
        assert load(name).status_code == 400, name
    for name in ("%ef%bc%8f..%ef%bc%8fadd", "add%09", "add%0D%0Ax"):
        assert load(name).status_code == 404, name
    c = srv.grpc_client()
    with pytest.raises(InferenceServerException) as e:
        c.load_model("a" * 10000, headers=GKEY)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and len(e.value.message()) < 4096
    for name in ("add\r\nx", "\uff0f..\uff0fadd"):
        with pytest.raises(InferenceServerException) as e:
            c.load_model(name, headers=GKEY)
        assert e.value.status() == "StatusCode.NOT_FOUND", (name, e.value)
    assert requests.post(f"{srv.url}/v2/repository/index", headers=KEY, timeout=30).json() == before


DEEP = "[" * 100_000 + "]" * 100_000
CONTROL_BODIES = {
    "logging-deep": ("/v2/logging", '{"log_info":%s}' % DEEP),
    "trace-deep": ("/v2/trace/setting", '{"trace_rate":%s}' % DEEP),
    "config-deep": ("/v2/anemone/config", '{"max-concurrency":%s}' % DEEP),
    "shm-deep": ("/v2/systemsharedmemory/region/r/register", '{"key":%s}' % DEEP),
    "load-deep": ("/v2/repository/models/add2/load", '{"parameters":{"config":%s}}' % DEEP),
    "load-config-deep": ("/v2/repository/models/add2/load",
                         json.dumps({"parameters": {"config": '{"input":[{"name":"x","dims":%s}]}' % DEEP}})),
    "unload-deep": ("/v2/repository/models/nothere/unload", '{"parameters":{"unload_dependents":%s}}' % DEEP),
    "logging-1e999": ("/v2/logging", '{"log_verbose_level":1e999}'),
    "config-1e999": ("/v2/anemone/config", '{"max-concurrency":1e999}'),
    "shm-1e999": ("/v2/systemsharedmemory/region/r/register", '{"key":"/x","offset":1e999,"byte_size":1}'),
    "load-config-1e999": ("/v2/repository/models/add2/load",
                          json.dumps({"parameters": {"config": '{"max_batch_size":-1e999}'}})),
    "trace-1e999-string": ("/v2/trace/setting", '{"trace_rate":"1e999"}'),
}


@pytest.mark.parametrize("path,body", CONTROL_BODIES.values(), ids=list(CONTROL_BODIES))
def test_deep_or_huge_json_in_control_bodies_is_400_at_once(srv, path, body):
    """JSON nested 100,000 deep, and numbers like 1e999, in the bodies of the control routes (logging,
    trace, settings, shared memory, load, a load's `config`, unload): 400 within a second, nothing
    changed, the server up (test_deploy_security_docs.py tries the infer body only). tritonserver 2.51:
    500 for each (it parses the deep arrays, then "attempt to access JSON non-boolean as boolean";
    "Number too big to be stored in double"), and trace_rate "1e999" is taken as 1 (200)."""
    t0 = time.time()
    r = requests.post(srv.url + path, data=body, headers=KEY, timeout=30)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert time.time() - t0 < 2
    assert requests.get(f"{srv.url}/v2/health/live", timeout=10).status_code == 200


TWICE = {
    "load-config": ("POST", "/v2/repository/models/add2/load",
                    '{"parameters":{"config":"{\\"max_batch_size\\":0}","config":"{\\"max_batch_size\\":0}"}}'),
    "unload-parameter": ("POST", "/v2/repository/models/nothere/unload",
                         '{"parameters":{"unload_dependents":false,"unload_dependents":false}}'),
    "infer-parameter": ("POST", "/v2/models/add/infer",
                        json.dumps(add_body())[:-1] + ',"parameters":{"timeout":60000000,"timeout":60000000}}'),
    "input-parameter": ("POST", "/v2/models/add/infer", json.dumps(add_body()).replace(
        '"datatype": "FP32",', '"datatype": "FP32", "parameters": {"a": 1, "a": 1},', 1)),
    "logging": ("POST", "/v2/logging", '{"log_info":true,"log_info":true}'),
    "trace-setting": ("POST", "/v2/trace/setting", '{"trace_rate":"1000","trace_rate":"1000"}'),
    "anemone-config": ("POST", "/v2/anemone/config", '{"gate-tracing":true,"gate-tracing":true}'),
}
ALREADY = {"shm-register": ("POST", "/v2/systemsharedmemory/region/r/register",
                            '{"key":"/nope-h43c","key":"/nope-h43c","offset":0,"byte_size":8}'),
           "index": ("POST", "/v2/repository/index", '{"ready":true,"ready":true}'),
           "input-name": ("POST", "/v2/models/add/infer",
                          json.dumps(add_body()).replace('"name": "x",', '"name": "x", "name": "x",', 1))}


@pytest.mark.parametrize("method,path,body", [pytest.param(*v, id=k) for k, v in TWICE.items()]
                         + [pytest.param(*v, id=k) for k, v in ALREADY.items()])
def test_a_key_given_twice_is_400(srv, method, path, body):
    """FROM_TRITON.md: "a JSON body with ... a key given twice | 400 | 200 (... the first key)". Where a
    body is read as a map (a load's parameters, with `config` twice; unload parameters; an inference
    request's or an input's `parameters`; the logging, trace and settings bodies), anemone keeps the last
    value silently: a parser differential, since Triton (and a proxy or WAF checking a request the way
    Triton reads it) keeps the first. tritonserver 2.51: `config` twice loads the first (checked with a
    `which` parameter), /v2/logging `{"log_info":false,"log_info":true}` sets false, trace_rate 5 then
    7 sets 5, `priority` "abc" then 5 fails on "abc". anemone until 2026-12-06: the last each time (a config
    override loads the second; a `timeout` of 1 µs then 60 s is served). Struct-read bodies (shared
    memory registration, the index, an input's fields) are 400 already. The values here are the same
    twice, so that nothing changes whichever is read."""
    r = requests.request(method, srv.url + path, data=body, headers=KEY, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "twice" in r.json()["error"] or "duplicate" in r.json()["error"], r.text


# ---------------------------------------------------------------- shared memory

def test_a_dev_shm_link_to_a_regular_file_is_refused(srv, tmp_path):
    """SECURITY.md: keys are "shm_open names only, never a path, so not /dev/zero nor a file". A symbolic
    link in /dev/shm (which any local user may create) to a regular file would let a registration read
    and write that file through the inputs and outputs of inferences: refused (shm_open does not follow
    it), the file's content never in the answer, the status without it. test_hostile_paths.py tries links
    to /dev/zero and loops only. tritonserver 2.51: 500 "Unable to open shared memory region"."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-0123456789abcdef\n")
    link = Path("/dev/shm") / f"anemone_h43c_{os.getpid()}_link"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(secret)
    try:
        r = requests.post(f"{srv.url}/v2/systemsharedmemory/region/lnk/register", headers=KEY, timeout=30,
                          json={"key": "/" + link.name, "offset": 0, "byte_size": 16})
        assert r.status_code == 400, r.text
        assert "TOPSECRET" not in r.text
        status = requests.get(f"{srv.url}/v2/systemsharedmemory/status", headers=KEY, timeout=30).json()
        assert "lnk" not in [s["name"] for s in status]
    finally:
        link.unlink()
    assert secret.read_text() == "TOPSECRET-0123456789abcdef\n"


def test_registering_a_taken_name_with_another_object_leaves_the_first(srv):
    """SERVING.md shared memory table: "a name already registered | 400". A second client registering the
    name with its own object must not take over the first client's region: 400, the status still shows
    the first key, and an inference through the name reads the first object's tensors (checked with
    numpy). tritonserver 2.51: 400 "already in manager"."""
    tag = f"anemone_h43c_{os.getpid()}"
    a = shm_file(f"{tag}_a", X.tobytes() + Y.tobytes())
    b = shm_file(f"{tag}_b", (X * 100).tobytes() + (Y * 100).tobytes())
    reg = lambda key: requests.post(f"{srv.url}/v2/systemsharedmemory/region/taken/register", headers=KEY,  # noqa: E731
                                    json={"key": key, "offset": 0, "byte_size": 32}, timeout=30)
    try:
        assert reg(f"/{a.name}").status_code == 200
        r = reg(f"/{b.name}")
        assert r.status_code == 400 and "already registered" in r.json()["error"], r.text
        status = requests.get(f"{srv.url}/v2/systemsharedmemory/region/taken/status", headers=KEY, timeout=30).json()
        assert [(s["name"], s["key"]) for s in status] == [("taken", f"/{a.name}")]
        body = {"inputs": [{"name": n, "shape": [1, 4], "datatype": "FP32", "parameters": {
            "shared_memory_region": "taken", "shared_memory_byte_size": 16, "shared_memory_offset": off}}
            for n, off in (("x", 0), ("y", 16))]}
        r = requests.post(f"{srv.url}/v2/models/add/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        check_add(r.json())
    finally:
        requests.post(f"{srv.url}/v2/systemsharedmemory/region/taken/unregister", headers=KEY, timeout=30)
        a.unlink()
        b.unlink()


@pytest.mark.parametrize("key", ["/a\nb", "/a\r\nSet-Cookie: x", "/" + "k" * 300, "/a\x00b", "/.", "//etc/passwd",
                                 "/anemone_h43c_missing/../../etc/passwd"])
def test_shared_memory_keys_with_control_bytes_or_past_255_bytes(srv, key):
    """Keys an attacker sends: control bytes, CR LF, 300 bytes (NAME_MAX is 255), NUL, `.`, a doubled
    slash, a traversal after a name: 400 over HTTP and INVALID_ARGUMENT over gRPC, nothing registered,
    no header line added. tritonserver 2.51: 500 "Unable to open shared memory region" for each (the
    key with NUL cut there: '/a')."""
    r = requests.post(f"{srv.url}/v2/systemsharedmemory/region/k/register", headers=KEY, timeout=30,
                      json={"key": key, "offset": 0, "byte_size": 8})
    assert r.status_code == 400, (key, r.text)
    assert "set-cookie" not in {k.lower() for k in r.headers}
    with pytest.raises(InferenceServerException) as e:
        srv.grpc_client().register_system_shared_memory("k", key, 8, headers=GKEY)
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value
    status = requests.get(f"{srv.url}/v2/systemsharedmemory/status", headers=KEY, timeout=30).json()
    assert "k" not in [s["name"] for s in status]


# ---------------------------------------------------------------- logs and traces

def _forged(srv, marker):
    """Lines of the log that start with `marker` (a forged line) rather than a timestamp."""
    time.sleep(0.3)
    return [line for line in srv.log_text().splitlines() if line.startswith(marker)]




@pytest.mark.parametrize("how", ["http-unload", "grpc-unload"])
def test_a_name_with_crlf_does_not_forge_a_log_line(srv, how):
    """Log injection (CWE-117): a model name with CR LF in an unload (or load) request, at the container's
    level (INFO): the log line that names it must stay one line. anemone wrote (until 2026-12-06) `unload: the
    model is not loaded; nothing to do model=evil` and then, on a line of its own, whatever followed the CR LF:
    a client can forge a line that starts like any other (timestamp, ERROR, a target). tritonserver
    2.51 logs the name quoted and escaped on one line: `"failed to poll model 'evil\\r\\nE1206 ...'"`."""
    marker = f"2026-12-06T00:00:00.000000Z ERROR anemone_server: FORGED-{how}"
    name = f"evil\r\n{marker} by a client"
    if how == "http-unload":
        r = requests.post(f"{srv.url}/v2/repository/models/{quote(name, safe='')}/unload", headers=KEY, timeout=30)
        assert r.status_code == 200, r.text
    else:
        srv.grpc_client().unload_model(name, headers=GKEY)
    assert _forged(srv, marker) == []


def test_a_config_parameter_key_with_a_newline_does_not_forge_a_log_line(srv):
    """The same at the default level (WARN): a load request's `config` with a `parameters` key that no
    part of anemone reads is "ignored with a warning in the log" (FROM_TRITON.md), and the key is
    written as sent. tritonserver 2.51: loads it and logs nothing about the key."""
    marker = "2026-12-06T00:00:00.000000Z ERROR anemone_server: FORGED-parameter"
    config = {"parameters": {f"k\n{marker}": {"string_value": "v"}}}
    r = requests.post(f"{srv.url}/v2/repository/models/add2/load", headers=KEY, timeout=60,
                      json={"parameters": {"config": json.dumps(config)}})
    assert r.status_code == 200, r.text
    assert _forged(srv, marker) == []


def test_a_trace_level_log_holds_no_key_no_header_and_no_data(srv):
    """A client allowed the `logging` group turns the log up to TRACE (log_verbose_level 2, everything
    hyper, h2 and tonic log). Requests carrying the restricted key, an Authorization header and marked
    tensor values must still leave none of them in the log (test_deploy_security_docs.py checks INFO).
    tritonserver 2.51 at log_verbose_level 2: none of them in its log either."""
    r = requests.post(f"{srv.url}/v2/logging", headers=KEY, json={"log_verbose_level": 2}, timeout=30)
    assert r.status_code == 200 and r.json()["log_verbose_level"] == 2, r.text
    try:
        x = np.array([[31337.125, 2, 3, 4]], np.float32)
        r = requests.post(f"{srv.url}/v2/models/add/infer", json=add_body(x, Y), timeout=30,
                          headers={"Authorization": "Bearer TOKEN-h43c", **KEY})
        check_add(r.json(), x, Y)
        requests.post(f"{srv.url}/v2/repository/index", headers=KEY, timeout=30)
        c = srv.grpc_client()
        c.get_model_repository_index(headers={**GKEY, "authorization": "Bearer TOKEN-h43c"})
        a = grpcclient.InferInput("x", [1, 4], "FP32")
        a.set_data_from_numpy(x)
        b = grpcclient.InferInput("y", [1, 4], "FP32")
        b.set_data_from_numpy(Y)
        np.testing.assert_allclose(c.infer("add", [a, b]).as_numpy("sum"), x + Y)
        time.sleep(0.3)
    finally:
        r = requests.post(f"{srv.url}/v2/logging", headers=KEY, json={"log_verbose_level": 0}, timeout=30)
        assert r.status_code == 200
    log = srv.log_text()
    # The tensor value as any text would show it: "31337" alone matched a
    # timestamp's microseconds (01:00:00.313378Z).
    for word in (ADMIN, "S3cret-h43c", "TOKEN-h43c", "31337.1"):
        assert word not in log, word


def test_the_log_and_trace_files_cannot_be_moved_through_the_api(srv, tmp_path):
    """OBSERVABILITY.md: `log_file` is "fixed at start-up: that file or "" is accepted, another is a 400";
    `trace_file` "cannot" change ("Triton's message, answered 400 where Triton answers 501"); the
    settings API refuses keys that "cannot change while serving" (CONFIGURATION.md). A client asking
    for a file anywhere (HTTP and gRPC, global and per model, and through /v2/anemone/config for
    log-file, trace-file, model-repository, model-cache-dir): refused, and no file is created.
    tritonserver 2.51: 501 "log file location can not be updated through network protocol" (and the
    same for traces; gRPC UNIMPLEMENTED)."""
    target = tmp_path / "attacker-owned.txt"
    cases = [("/v2/logging", {"log_file": str(target)}), ("/v2/trace/setting", {"trace_file": str(target)}),
             ("/v2/models/add/trace/setting", {"trace_file": str(target)}),
             ("/v2/anemone/config", {"log-file": str(target)}), ("/v2/anemone/config", {"trace-file": str(target)}),
             ("/v2/anemone/config", {"model-repository": [str(tmp_path)]}),
             ("/v2/anemone/config", {"model-cache-dir": str(tmp_path / "cache")})]
    for path, body in cases:
        r = requests.post(srv.url + path, json=body, headers=KEY, timeout=30)
        assert r.status_code == 400, (path, body, r.text)
    with grpc.insecure_channel(srv.grpc) as ch:
        log_settings = ch.unary_unary("/inference.GRPCInferenceService/LogSettings",
                                      request_serializer=pb.LogSettingsRequest.SerializeToString,
                                      response_deserializer=pb.LogSettingsResponse.FromString)
        req = pb.LogSettingsRequest()
        req.settings["log_file"].string_param = str(target)
        with pytest.raises(grpc.RpcError) as e:
            log_settings(req, metadata=list(GKEY.items()), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        trace = ch.unary_unary("/inference.GRPCInferenceService/TraceSetting",
                               request_serializer=pb.TraceSettingRequest.SerializeToString,
                               response_deserializer=pb.TraceSettingResponse.FromString)
        req = pb.TraceSettingRequest()
        req.settings["trace_file"].value.append(str(target))
        with pytest.raises(grpc.RpcError) as e:
            trace(req, metadata=list(GKEY.items()), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(tmp_path.iterdir()) == []
    assert requests.get(f"{srv.url}/v2/logging", headers=KEY, timeout=30).json()["log_file"] == str(srv.log)


# ---------------------------------------------------------------- what errors tell

def test_a_failed_models_answers_to_unrestricted_clients_hold_no_server_path(srv):
    """With the repository API restricted (SECURITY.md's example), a load failure's reason belongs to the
    index. anemone's metadata and inference routes (groups `metadata` and `inference`, open here)
    answer a model that failed to load with 503 and the whole load error: `model 'broken' is not
    ready: cannot load /abs/path/repo/broken/1/model.onnx: ...`, the server's filesystem layout for
    anyone. tritonserver 2.51: 404 `Request for unknown model: 'broken' has no available versions` on
    both routes (its reason only in the index). The 503 itself is documented (SERVING.md errors
    table); the path in it is not."""
    r = requests.post(f"{srv.url}/v2/repository/models/broken/load", headers=KEY, timeout=60)
    assert r.status_code == 400
    leaks = []
    for method, path, body in [("GET", "/v2/models/broken", None), ("GET", "/v2/models/broken/versions/1", None),
                               ("POST", "/v2/models/broken/infer", add_body())]:
        r = requests.request(method, srv.url + path, json=body, timeout=30)
        assert r.status_code in (400, 404, 503), (path, r.status_code)
        if str(srv.repo) in r.text:
            leaks.append(path)
    c = srv.grpc_client()
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("broken")
    if str(srv.repo) in e.value.message():
        leaks.append("gRPC ModelMetadata")
    assert leaks == []


def test_errors_of_concurrent_requests_carry_only_their_own_data(srv):
    """An error about one request never holds another request's data: 8 clients at once, each sending 10
    bad requests (an input named with its own marker, and a shape its marker-sized data does not fit) and
    10 good ones (values with its marker, checked with numpy). Every error names its own marker or none,
    never another's. tritonserver 2.51: the same (`unexpected inference input 'x_MARK'`)."""
    def client(i):
        mark = f"MARK{i:02d}Q"
        s = requests.Session()
        found = []
        for k in range(10):
            bad = add_body()
            bad["inputs"][0]["name"] = f"x_{mark}"
            r = s.post(f"{srv.url}/v2/models/add/infer", json=bad, timeout=30)
            assert r.status_code == 400
            found.append(r.text)
            wrong = add_body()
            wrong["inputs"][1]["data"] = [7000.25 + i] * 3
            r = s.post(f"{srv.url}/v2/models/add/infer", json=wrong, timeout=30)
            assert r.status_code == 400
            found.append(r.text)
            x = np.full((1, 4), 1000 * i + k, np.float32)
            r = s.post(f"{srv.url}/v2/models/add/infer", json=add_body(x, Y), timeout=30)
            check_add(r.json(), x, Y)
        return i, found

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    for i, texts in results:
        others = [f"MARK{j:02d}Q" for j in range(8) if j != i] + [str(7000.25 + j) for j in range(8) if j != i]
        for text in texts:
            assert not [o for o in others if o in text], (i, text)
