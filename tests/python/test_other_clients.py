"""anemone as the clients that are not tritonclient see it: curl, requests,
httpx, aiohttp, urllib, what Go/Java/JS HTTP stacks, nginx/Envoy and
Kubernetes probes put on the wire (replayed over raw sockets, where a library
would hide the detail), grpcio with stubs generated from the repository's own
`proto/` (grpc_tools, in a temporary folder), the standard gRPC health
service, and hand-framed HTTP/2.

The right answer comes from the RFCs (RFC 9110 HTTP semantics, RFC 9112
HTTP/1.1, RFC 9113 HTTP/2), the gRPC protocol, the KServe v2 / Open
Inference Protocol, and tritonserver 2.51: each docstring says what
tritonserver 2.51 answered to the same bytes, run side by side on
2026-12-06 (a Python stand-in model with the same names, datatypes and
dims; CI has no Triton, so the tests run against anemone only). Where
anemone differs from Triton and the docs (docs/FROM_TRITON.md,
docs/SERVING.md, docs/RELIABILITY.md) say so, the documented answer is
asserted, citing the line; an undocumented difference, or an answer against
the RFCs, is marked xfail(strict=True, reason="DEFECT: ...").

Found and fixed in session 42 (the docstrings tell what anemone answered
before): an empty version segment taken as no version, JSON `-0` refused
for an integer input, an `Accept-Encoding` weight written `Q=` ignored, and
HTTP/1.1 requests without a Host header, or with two, served.

Models: `add` and `i32` are ONNX `z = x + y` (FP32 and INT32, dims [-1])
built here with the `onnx` package; `slow` is a Python model that sleeps
0.5 s and adds. Every answer is checked against numpy.
"""
import asyncio
import gzip
import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import numpy as np
import pytest
import requests
from serve_support import start_serve, stop_serve, wait_ready

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

SLOW = '''import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.5)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            y = pb_utils.get_input_tensor_by_name(r, "y").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("z", (x + y).astype(np.float32))]))
        return out
'''


def _config(name, dt, backend):
    return (f'name: "{name}"\n{backend}\nmax_batch_size: 0\n'
            f'input [ {{ name: "x" data_type: {dt} dims: [ -1 ] }}, {{ name: "y" data_type: {dt} dims: [ -1 ] }} ]\n'
            f'output [ {{ name: "z" data_type: {dt} dims: [ -1 ] }} ]\n')


def _add_onnx(path, elem):
    io = [helper.make_tensor_value_info(n, elem, ["n"]) for n in ("x", "y", "z")]
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "add", io[:2], io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("other_clients")
    for name, dt, elem in (("add", "TYPE_FP32", TensorProto.FLOAT), ("i32", "TYPE_INT32", TensorProto.INT32)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(_config(name, dt, 'platform: "onnxruntime_onnx"'))
        _add_onnx(repo / name / "1" / "model.onnx", elem)
    (repo / "slow" / "1").mkdir(parents=True)
    (repo / "slow" / "config.pbtxt").write_text(_config("slow", "TYPE_FP32", 'backend: "python"'))
    (repo / "slow" / "1" / "model.py").write_text(SLOW)
    proc, addresses = start_serve(repo, "--python", sys.executable)
    try:
        wait_ready(addresses["HTTP"])
        host, port = addresses["HTTP"].rsplit(":", 1)
        ghost, gport = addresses["gRPC"].rsplit(":", 1)
        yield {"http": (host, int(port)), "grpc": f"{ghost}:{gport}", "url": f"http://{host}:{port}"}
    finally:
        stop_serve(proc)


@pytest.fixture
def http(server):
    return server["http"]


X = np.array([1.5, -2.25, 3.0], np.float32)
Y = np.array([10.0, 20.5, -7.0], np.float32)
SUM = X + Y


def infer_body(x=X, y=Y, dt="FP32"):
    return json.dumps({"inputs": [{"name": "x", "shape": [len(x)], "datatype": dt, "data": x.tolist()},
                                  {"name": "y", "shape": [len(y)], "datatype": dt, "data": y.tolist()}]}).encode()


BODY = infer_body()
INFER = "/v2/models/add/infer"


# ---------------------------------------------------------------- raw HTTP/1.x


def request(method, target, headers=(), body=b"", version="HTTP/1.1", host=True):
    head = f"{method} {target} {version}\r\n" + ("Host: localhost\r\n" if host else "")
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body


def post(target=INFER, headers=(), body=BODY, close=True, version="HTTP/1.1"):
    h = [("Content-Length", len(body))] + list(headers) + ([("Connection", "close")] if close else [])
    return request("POST", target, h, body, version)


def exchange(http, pieces, timeout=5.0, pause=0.0):
    """Sends `pieces` (bytes, or a list sent `pause` apart) on a new
    connection; returns (bytes received until the server closed or
    `timeout` passed, whether the server closed it)."""
    s = socket.create_connection(http, timeout=timeout)
    out, closed = b"", False
    try:
        for p in ([pieces] if isinstance(pieces, bytes) else pieces):
            s.sendall(p)
            time.sleep(pause)
        while True:
            b = s.recv(1 << 16)
            if not b:
                closed = True
                break
            out += b
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        s.close()
    return out, closed


class Response:
    def __init__(self, version, status, headers, body):
        self.version, self.status, self.headers, self.body = version, status, headers, body

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def parse(data, head=False):
    """The HTTP/1.x responses in `data`, 1xx included, each delimited by its
    Content-Length (or, without one, running to the end)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        data = data[end + 4:]
        r = Response(version, int(status), headers, b"")
        if not (r.status < 200 or head):
            cl = r.header("content-length")
            if cl is None:
                r.body, data = data, b""
            else:
                r.body, data = data[:int(cl)], data[int(cl):]
        out.append(r)
    return out


def one(http, pieces, **kw):
    got = [r for r in parse(exchange(http, pieces, **kw)[0]) if r.status >= 200]
    assert len(got) == 1, [(r.status, r.body[:200]) for r in got]
    return got[0]


def decoded(r):
    enc = (r.header("content-encoding") or "identity").lower()
    return {"gzip": gzip.decompress, "deflate": zlib.decompress, "identity": bytes}[enc](r.body)


def assert_sum(r, expected=SUM):
    assert r.status == 200, (r.status, r.body[:300])
    out = json.loads(decoded(r))["outputs"][0]
    np.testing.assert_array_equal(np.array(out["data"], expected.dtype), expected)


def chunked(body, n, last=b"0\r\n\r\n"):
    out = b""
    for i in range(0, len(body), n):
        c = body[i:i + n]
        out += f"{len(c):x}\r\n".encode() + c + b"\r\n"
    return out + last


def serves_on(http):
    assert_sum(one(http, post()))


# ---------------------------------------------------------------- request targets


@pytest.mark.parametrize("target", [
    "http://localhost/v2/models/add/infer", "http://other:1234/v2/models/add/infer",
    "https://localhost/v2/models/add/infer", "http://localhost/v2/models/add/infer?x=1",
])
def test_absolute_form_targets_are_served(http, target):
    """RFC 9112 3.2.2: a server MUST accept the absolute-form in requests
    (what a client configured with an HTTP proxy sends). tritonserver 2.51:
    200 with the sum for each."""
    assert_sum(one(http, post(target)))


def test_an_absolute_form_target_names_the_host_checked(http):
    """RFC 9112 3.2.2: the absolute-form's authority takes the place of
    Host, so it is what a server on 127.0.0.1 checks (docs/SECURITY.md,
    `--http-allow-host`): a dotted name it does not answer to gets 403
    naming the flag, whatever the Host header says. (tritonserver 2.51:
    200, as for any Host.)"""
    r = one(http, post("http://other.example:1234/v2/models/add/infer"))
    assert r.status == 403 and b"--http-allow-host other.example" in r.body, (r.status, r.body[:300])


@pytest.mark.parametrize("path", ["/v2/models/add/versions//ready", "/v2/models/add/versions//infer"])
def test_an_empty_version_segment_is_not_a_route(http, path):
    """KServe v2 routes are `v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]/...`:
    `/versions//ready` names no version, and anemone answers other doubled
    slashes (`/v2/models//add`) 404 (test_triton_side_http.py). tritonserver
    2.51: 404 `{"error":"Not Found"}` for both. anemone: 200, the model's
    readiness and an inference as if `/versions/` were not there."""
    r = one(http, post(path) if path.endswith("infer") else request("GET", path, [("Connection", "close")]))
    assert r.status == 404, (r.status, r.body)


ROUTES = [("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2/models/add"),
          ("GET", "/v2/models/add/versions/1"), ("GET", "/v2/models/add/ready"), ("GET", "/v2/models/add/config"),
          ("GET", "/v2/models/add/stats"), ("GET", "/v2/models/stats"), ("GET", "/v2/logging"),
          ("GET", "/v2/trace/setting"), ("GET", "/v2/systemsharedmemory/status"), ("POST", "/v2/repository/index"),
          ("POST", "/v2/models/add/versions/1/infer")]


@pytest.mark.parametrize("method,path", ROUTES)
def test_a_query_string_on_every_route_is_ignored(http, method, path):
    """Query strings (what a cache-buster, a proxy or a browser adds) change
    no answer on any route: the same status and JSON as without. tritonserver
    2.51: the same statuses (its health and readiness bodies are empty)."""
    def ask(p):
        return one(http, post(p) if method == "POST" and "infer" in p else
                   request(method, p, [("Connection", "close"), ("Content-Length", "0")]))
    plain, queried = ask(path), ask(path + "?cb=123&x=%20y&flag")
    assert plain.status == queried.status == 200, (plain.status, queried.status, queried.body[:200])
    if "stats" not in path:
        assert plain.json() == queried.json()


# ---------------------------------------------------------------- chunked bodies and framing


def test_one_byte_chunks_uppercase_hex_and_leading_zeros(http):
    """RFC 9112 7.1: chunk sizes are hex digits, any case, leading zeros
    allowed; a body in 1-byte chunks (what a streaming client flushing each
    write sends) is the same body. tritonserver 2.51: 200 for each."""
    te = [("Transfer-Encoding", "chunked"), ("Connection", "close")]
    assert_sum(one(http, request("POST", INFER, te, chunked(BODY, 1))))
    assert_sum(one(http, request("POST", INFER, [("Transfer-Encoding", "Chunked"), ("Connection", "close")],
                                 chunked(BODY, 64))))  # RFC 9112 7: coding names are case-insensitive
    big = infer_body(np.arange(200, dtype=np.float32), np.ones(200, np.float32))
    body = chunked(big, 0xAB).replace(b"ab\r\n", b"000AB\r\n")
    assert b"000AB\r\n" in body
    assert_sum(one(http, request("POST", INFER, te, body)), np.arange(200, dtype=np.float32) + 1)


def test_chunk_extensions_without_value_or_quoted_are_skipped(http):
    """RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ),
    a value a token or quoted string; a recipient ignores extensions it does
    not understand. tritonserver 2.51 closed the connection without an
    answer."""
    body = f"{len(BODY):x};foo;bar=\"q z\"\r\n".encode() + BODY + b"\r\n0;last\r\n\r\n"
    assert_sum(one(http, request("POST", INFER, [("Transfer-Encoding", "chunked"), ("Connection", "close")], body)))


@pytest.mark.parametrize("body", [
    b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    f"{len(BODY):x}\r\n".encode() + BODY + b"XX0\r\n\r\n",
    b"-5\r\nabcde\r\n0\r\n\r\n",
], ids=["size-overflow", "no-crlf-after-data", "negative-size"])
def test_malformed_chunked_framing_is_400_and_closes(http, body):
    """RFC 9112 7.1 / 11.2: a chunk size past 64 bits, data not followed by
    CRLF, or a sign is malformed framing: 400, connection closed, the
    server serving on. tritonserver 2.51: hung (no answer in 2.5 s) on the
    overflow, closed without an answer on the other two."""
    data, closed = exchange(http, request("POST", INFER, [("Transfer-Encoding", "chunked")], body))
    (r,) = parse(data)
    assert r.status == 400 and closed
    serves_on(http)


@pytest.mark.parametrize("te", ["identity", "chunked, gzip", "gzip"])
def test_a_transfer_encoding_not_ending_in_chunked_is_400_and_closes(http, te):
    """RFC 9112 6.3 (3): a request whose Transfer-Encoding does not end in
    chunked has no reliable length: the server MUST answer 400 and close
    (the request smuggling rule). tritonserver 2.51: 200 for each, reading
    the Content-Length."""
    data, closed = exchange(http, post(headers=[("Transfer-Encoding", te)], close=False))
    assert [r.status for r in parse(data)] == [400] and closed


def test_content_length_beside_chunked_is_read_as_chunked_then_the_connection_closes(http):
    """RFC 9112 6.3 (3): with both, Transfer-Encoding wins, and the server
    MUST close the connection after answering (the pipelined request after
    it is not read). tritonserver 2.51 answered both requests on a kept
    connection."""
    data, closed = exchange(http, request("POST", INFER, [("Content-Length", 5), ("Transfer-Encoding", "chunked")],
                                          chunked(BODY, 40)) + request("GET", "/v2/health/live"), timeout=3)
    got = parse(data)
    assert [r.status for r in got] == [200] and closed
    assert_sum(got[0])


# ---------------------------------------------------------------- Expect, versions, connections


def test_curl_with_a_large_body_is_not_held_a_second_by_expect(server, tmp_path):
    """curl sends `Expect: 100-continue` before a large body and waits 1 s
    for `100 Continue` before sending it anyway: the server must answer 100
    at once (RFC 9110 10.1.1). anemone answers 100 then 200 well inside the
    second. tritonserver 2.51: the same (0.03 s). What is timed is curl's
    own wait, from its request head to the `100 Continue` (`--trace-time`):
    the whole call, which also parses 2 MB of JSON in a debug build, took
    1.09 s once on a loaded machine with the 100 answered at once."""
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("no curl")
    n = 120_000
    x, y = np.arange(n, dtype=np.float32), np.full(n, 0.5, np.float32)
    (tmp_path / "body.json").write_bytes(infer_body(x, y))
    p = subprocess.run([curl, "-sS", "-v", "--trace-time", "-o", str(tmp_path / "out.json"),
                        "-H", "Expect: 100-continue", "-H", "Content-Type: application/json",
                        "--data-binary", f"@{tmp_path / 'body.json'}", server["url"] + INFER],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "< HTTP/1.1 100 Continue" in p.stderr and "< HTTP/1.1 200 OK" in p.stderr

    def at(marker):
        (line,) = [line for line in p.stderr.splitlines() if marker in line][:1]
        h, m, sec = line.split()[0].split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    waited = (at("< HTTP/1.1 100 Continue") - at("> Expect: 100-continue")) % 86400  # past midnight
    assert 0 <= waited < 0.5, f"curl waited {waited:.3f} s for 100 Continue (its own timeout is 1 s)"
    out = json.loads((tmp_path / "out.json").read_bytes())["outputs"][0]
    np.testing.assert_array_equal(np.array(out["data"], np.float32), x + y)


def test_expect_in_http_1_0_is_ignored(http):
    """RFC 9110 10.1.1: a server that receives 100-continue in an HTTP/1.0
    request MUST ignore it (no `100 Continue`, which an HTTP/1.0 client
    cannot read). tritonserver 2.51 sent `HTTP/1.0 100 Continue`."""
    head = request("POST", INFER, [("Content-Length", len(BODY)), ("Expect", "100-continue")], version="HTTP/1.0")
    data, _ = exchange(http, [head, BODY], pause=0.3)
    got = parse(data)
    assert [r.status for r in got] == [200]
    assert_sum(got[0])


def test_expect_is_case_insensitive_and_an_unknown_expectation_is_not_a_hang(http):
    """`100-Continue` is the same expectation (RFC 9110 10.1.1:
    case-insensitive), answered 100 then 200; an expectation the server
    does not know may get 417 (a MAY) but never a hang. tritonserver 2.51:
    100 then 200 for both."""
    head = request("POST", INFER, [("Content-Length", len(BODY)), ("Expect", "100-Continue"), ("Connection", "close")])
    got = parse(exchange(http, [head, BODY], pause=0.3)[0])
    assert [r.status for r in got] == [100, 200]
    head = request("POST", INFER, [("Content-Length", len(BODY)), ("Expect", "something-else"), ("Connection", "close")])
    got = [r for r in parse(exchange(http, [head, BODY], pause=0.3)[0]) if r.status >= 200]
    assert [r.status for r in got] in ([200], [417])


def test_http_1_0_without_keep_alive_closes_after_one_answer(http):
    """RFC 9112 9.3: an HTTP/1.0 connection without keep-alive is closed
    after the answer (a second pipelined request is not read), which carries
    its Content-Length (nginx's default `proxy_http_version 1.0` reads it).
    tritonserver 2.51 kept the connection and answered the second request
    too."""
    data, closed = exchange(http, post(close=False, version="HTTP/1.0") + request("GET", "/v2/health/live"))
    got = parse(data)
    assert [r.status for r in got] == [200] and closed
    assert got[0].version == "HTTP/1.0" and int(got[0].header("content-length")) == len(got[0].body)
    assert_sum(got[0])


def test_connection_close_in_a_pipeline_stops_it(http):
    """RFC 9112 9.6: after a request with `Connection: close` the server
    MUST NOT process further requests on the connection: one answer, then
    the close. tritonserver 2.51: the same."""
    data, closed = exchange(http, request("GET", "/v2/health/live", [("Connection", "close")])
                            + post(close=False) + post(close=False))
    assert [r.status for r in parse(data)] == [200] and closed


def test_http_1_1_without_host_or_with_two_is_400(http):
    """RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status
    code to any HTTP/1.1 request message that lacks a Host header field and
    to any request message that contains more than one Host header field
    line". tritonserver 2.51 answered 200 to both too; anemone: 200. (An
    HTTP/1.0 request without Host is fine; see the next test.)"""
    r = one(http, b"GET /v2/health/live HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert r.status == 400
    r = one(http, b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
    assert r.status == 400


def test_http_1_0_without_host_and_a_bare_lf_request_are_served(http):
    """An HTTP/1.0 request needs no Host; RFC 9112 2.2 lets a recipient
    read bare LF line ends (old scripts, `printf ... | nc`). tritonserver
    2.51: 200 without Host (no body); closed without an answer on bare LF."""
    r = one(http, b"GET /v2/health/live HTTP/1.0\r\n\r\n")
    assert r.status == 200 and r.json() == {"live": True}
    r = one(http, b"GET /v2/health/live HTTP/1.1\nHost: x\nConnection: close\n\n")
    assert r.status == 200 and r.json() == {"live": True}


@pytest.mark.parametrize("raw", [
    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n",
    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A : a\r\nConnection: close\r\n\r\n",
    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n",
], ids=["obs-fold", "space-before-colon", "nul-in-value"])
def test_malformed_header_lines_are_400(http, raw):
    """RFC 9112 5.1: whitespace between a field name and its colon MUST be
    answered 400; 5.2: obs-fold outside message/http is 400 or read as SP;
    RFC 9110 5.5: NUL in a field value MUST be refused or replaced.
    tritonserver 2.51: 200 for the space and the NUL, closed without an
    answer on the fold."""
    data, closed = exchange(http, raw)
    assert [r.status for r in parse(data)] == [400] and closed


@pytest.mark.parametrize("raw", [b"GET /v2/health/live\r\n", b"GET /v2/health/live HTTP/2.0\r\nHost: x\r\n\r\n",
                                 b"GET /v2/health/live HTTP/3.0\r\nHost: x\r\n\r\n"], ids=["http-0.9", "2.0", "3.0"])
def test_request_lines_of_other_http_versions_are_answered_not_hung(http, raw):
    """An HTTP/0.9 simple request or an HTTP/1 request line claiming 2.0 or
    3.0 is refused at once (RFC 9110 15.6.6 allows 505; 400 is a bad
    request), the connection closed, never a hang or a 200 labelled
    otherwise. tritonserver 2.51: no answer within 2 s to HTTP/0.9, and
    200 (`HTTP/2.0 200 OK` in HTTP/1 syntax) to the other two."""
    data, closed = exchange(http, raw, timeout=3)
    assert [r.status for r in parse(data)] in ([400], [505]) and closed


@pytest.mark.parametrize("size,status", [(20_000, 200), (200_000, 200), (1_000_000, 431)])
def test_long_header_lines(http, size, status):
    """A long cookie or token (20 KB, 200 KB) is read; a 1 MB header line is
    431 (RFC 6585), the server serving on. tritonserver 2.51 reset the
    connection without an answer for each of them."""
    r = one(http, request("GET", "/v2/health/live", [("Cookie", "a" * size), ("Connection", "close")]))
    assert r.status == status
    serves_on(http)


def test_upgrade_requests_are_answered_in_http_1_1(http):
    """`Upgrade: h2c` (RFC 7540 3.2, removed by RFC 9113) and
    `Upgrade: websocket`: a server may ignore Upgrade (RFC 9110 7.8) and
    answer in HTTP/1.1, as both do here; the POST's body is read first.
    tritonserver 2.51: the same (its health bodies empty)."""
    up = [("Connection", "Upgrade, HTTP2-Settings, close"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]
    r = one(http, request("GET", "/v2/health/ready", up))
    assert (r.version, r.status, r.json()) == ("HTTP/1.1", 200, {"ready": True})
    assert_sum(one(http, post(headers=up[1:] + [("Connection", "Upgrade, HTTP2-Settings, close")], close=False)))
    ws = [("Connection", "Upgrade, close"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
    assert one(http, request("GET", "/v2/health/live", ws)).status == 200


def test_h2c_with_prior_knowledge_on_the_http_port_fails_fast(server):
    """`curl --http2-prior-knowledge` (httpx `http2=True` against http://)
    on the HTTP port: the port speaks HTTP/1.1 only (docs/SECURITY.md
    "HTTPS is HTTP/1.1"), so the preface is refused by closing, at once
    and not after a timeout, and the server serves on. tritonserver 2.51:
    the same (closed, curl exit 18 or 7). `curl --http2` (the Upgrade) is
    answered in HTTP/1.1 on both."""
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("no curl")
    t = time.monotonic()
    p = subprocess.run([curl, "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge",
                        server["url"] + "/v2/health/live"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and p.stdout == "000" and time.monotonic() - t < 5
    p = subprocess.run([curl, "-s", "-m", "10", "-w", " %{http_code} %{http_version}", "--http2",
                        server["url"] + "/v2/health/ready"], capture_output=True, text=True, timeout=30)
    assert p.stdout == '{"ready":true} 200 1.1', p.stdout
    serves_on(server["http"])


def test_options_and_a_cors_preflight(http):
    """A browser's preflight (OPTIONS with Origin and
    Access-Control-Request-Method) from a page whose origin is not allowed
    (none is by default; docs/SECURITY.md, "Web pages and browsers") gets
    403 and no Access-Control-* header, and so does a POST carrying Origin;
    the same OPTIONS without Origin is a 405 with `Allow: POST` and no body
    (docs/SERVING.md "Errors"). `OPTIONS *` is answered, not dropped.
    tritonserver 2.51: 405 `{"error":"Method Not Allowed"}` to the
    preflight (no Allow header), the POST served (anemone too, before
    `--http-allow-origin`), and `OPTIONS *` closed without an answer."""
    pre = [("Origin", "http://app.example"), ("Access-Control-Request-Method", "POST"),
           ("Access-Control-Request-Headers", "content-type"), ("Connection", "close")]
    r = one(http, request("OPTIONS", INFER, pre))
    assert r.status == 403 and b"--http-allow-origin http://app.example" in r.body
    assert not [k for k, _ in r.headers if k.lower().startswith("access-control-")]
    r = one(http, request("OPTIONS", INFER, [("Connection", "close")]))
    assert r.status == 405 and r.header("allow") == "POST" and r.body == b""
    r = one(http, post(headers=[("Origin", "http://app.example")]))
    assert r.status == 403 and r.header("access-control-allow-origin") is None
    r = one(http, request("OPTIONS", "*", [("Connection", "close")]))
    assert r.status < 500


# ---------------------------------------------------------------- what each client stack sends


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "application/octet-stream", "application/json; charset=utf-8", "application/JSON", "foo",
], ids=["none", "text-plain", "fetch-default", "java-urlconnection", "octet", "charset", "upper", "bogus"])
def test_a_json_body_under_any_content_type_is_read_as_json(http, content_type):
    """The KServe v2 JSON body is read whatever the Content-Type: JS `fetch`
    with a string body labels it `text/plain;charset=UTF-8`, Java's
    HttpURLConnection `application/x-www-form-urlencoded`, curl -d the
    latter too; application/octet-stream without Inference-Header-Content-Length
    is still a JSON body (the binary extension keys on that header).
    tritonserver 2.51: 200 with the sum for each."""
    h = [("Content-Type", content_type)] if content_type else []
    assert_sum(one(http, post(headers=h)))


@pytest.mark.parametrize("headers", [
    [("User-Agent", "kube-probe/1.29"), ("Accept", "*/*"), ("Connection", "close")],
    [("User-Agent", "Go-http-client/1.1"), ("Accept-Encoding", "gzip"), ("Connection", "close")],
    [("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-Proto", "https"), ("X-Request-Id", "abc"),
     ("X-Envoy-Expected-Rq-Timeout-Ms", "15000"), ("Via", "1.1 envoy"), ("Connection", "close")],
], ids=["kube-probe", "go", "envoy"])
def test_probes_and_proxies_get_the_protocols_health_json(http, headers):
    """A Kubernetes httpGet probe, Go's net/http and an Envoy hop: readiness
    200 with `{"ready": true}` (SERVING.md HTTP table); Go's
    `Accept-Encoding: gzip` leaves the health answer uncompressed
    (SERVING.md: only inference answers are compressed). tritonserver 2.51:
    200 with an empty body (FROM_TRITON.md documents the JSON)."""
    r = one(http, request("GET", "/v2/health/ready", headers))
    assert r.status == 200 and r.json() == {"ready": True} and r.header("content-encoding") is None


def test_nginx_style_http_1_0_proxying_of_a_chunked_upload(http):
    """What nginx sends upstream by default: HTTP/1.0, `Connection: close`,
    the client's chunked upload buffered into a Content-Length body, and
    X-Real-IP; then Go's net/http with a body of unknown length (HTTP/1.1
    chunked, `Accept-Encoding: gzip`), whose gzip answer it decompresses.
    tritonserver 2.51: 200 for both (deflate/gzip as asked)."""
    r = one(http, post(headers=[("X-Real-IP", "10.1.2.3"), ("Connection", "close")], close=False, version="HTTP/1.0"))
    assert r.version == "HTTP/1.0"
    assert_sum(r)
    r = one(http, request("POST", INFER, [("User-Agent", "Go-http-client/1.1"), ("Transfer-Encoding", "chunked"),
                                         ("Accept-Encoding", "gzip"), ("Connection", "close")], chunked(BODY, 4096)))
    assert r.header("content-encoding") == "gzip"
    assert_sum(r)


def test_requests_session_and_urllib(server):
    """requests (a Session: keep-alive, `Accept-Encoding: gzip, deflate` by
    default, decompressing for the caller) and the standard library's
    urllib (no Accept-Encoding, `Connection: close`): the same sums.
    tritonserver 2.51: the same."""
    with requests.Session() as s:
        for i in range(5):
            r = s.post(server["url"] + INFER, data=infer_body(X * i, Y), timeout=30)
            assert r.status_code == 200 and r.headers["Content-Encoding"] in ("gzip", "deflate")
            np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), X * i + Y)
        r = s.post(server["url"] + INFER, json=json.loads(BODY), timeout=30)
        np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), SUM)
    with urllib.request.urlopen(urllib.request.Request(server["url"] + INFER, data=BODY), timeout=30) as r:
        assert r.headers.get("Content-Encoding") is None
        np.testing.assert_array_equal(np.array(json.loads(r.read())["outputs"][0]["data"], np.float32), SUM)


def test_httpx_streams_a_generator_body_chunked(server):
    """httpx sends a generator body chunked (no Content-Length) and keeps the
    connection; its default Accept-Encoding includes br and zstd, which the
    server does not choose. tritonserver 2.51: the same sums."""
    httpx = pytest.importorskip("httpx")

    def pieces():
        for i in range(0, len(BODY), 7):
            yield BODY[i:i + 7]

    with httpx.Client(timeout=30) as c:
        for _ in range(3):
            r = c.post(server["url"] + INFER, content=pieces())
            assert r.status_code == 200 and r.headers.get("content-encoding") in (None, "gzip", "deflate")
            np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), SUM)
        r = c.get(server["url"] + "/v2/models/add/ready")
        assert r.json() == {"name": "add", "ready": True}


def test_aiohttp_concurrent_requests_on_a_pool(server):
    """aiohttp: 40 concurrent inferences over its connection pool (limit 8),
    each its own answer; a chunked aiohttp upload too. tritonserver 2.51:
    the same sums."""
    aiohttp = pytest.importorskip("aiohttp")
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal(5).astype(np.float32) for _ in range(40)]

    async def main():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8),
                                         timeout=aiohttp.ClientTimeout(total=60)) as s:
            async def one_(x):
                async with s.post(server["url"] + INFER, data=infer_body(x, x)) as r:
                    assert r.status == 200
                    return np.array((await r.json())["outputs"][0]["data"], np.float32)
            outs = await asyncio.gather(*(one_(x) for x in xs))
            for x, out in zip(xs, outs):
                np.testing.assert_array_equal(out, x + x)

            async def gen():
                for i in range(0, len(BODY), 16):
                    yield BODY[i:i + 16]
            async with s.post(server["url"] + INFER, data=gen()) as r:
                np.testing.assert_array_equal(np.array((await r.json())["outputs"][0]["data"], np.float32), SUM)
    asyncio.run(main())


# ---------------------------------------------------------------- JSON numbers and nesting


def i32_body(raw):
    return ('{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":%s},'
            '{"name":"y","shape":[1],"datatype":"INT32","data":[7]}]}' % raw).encode()


def test_minus_zero_is_a_whole_number(http):
    """RFC 8259 6: `int = [ minus ] ( zero / ( digit1-9 *DIGIT ) )`, so `-0`
    is written without a decimal point or exponent, the words of anemone's
    own rule (FROM_TRITON.md: a float such as `5.0`, `1e3` is refused).
    tritonserver 2.51: 200, z = 7. anemone: 400 "value 0 (-0.0) is not a
    valid INT32 (an integer type takes whole numbers written without a
    decimal point or exponent)" (fixed in session 42). JSON parsers read
    `-0.0` as they read `-0`, so it is taken as 0 too (FROM_TRITON.md)."""
    for raw in ("[-0]", "[-0.0]"):
        r = one(http, post("/v2/models/i32/infer", body=i32_body(raw)))
        assert_sum(r, np.array([7], np.int32))


@pytest.mark.parametrize("raw", ["[1e2]", "[1.0]", "[0.0]", "[2147483648]", "[NaN]", "[true]", '["5"]'])
def test_integer_inputs_refuse_floats_out_of_range_and_other_types(http, raw):
    """FROM_TRITON.md's table: "a float (`5.0`, `1e3`) for an integer input:
    400, saying integers take whole numbers" (Triton 500); a value past
    INT32, NaN, a bool or a string is 400 naming the value. tritonserver
    2.51: 500 "attempt to access JSON non-signed-integer as signed-integer"
    for each, except 2147483648, which it wrapped to -2147483648 (200)."""
    r = one(http, post("/v2/models/i32/infer", body=i32_body(raw)))
    assert r.status == 400 and "INT32" in r.json()["error"], r.body
    assert_sum(one(http, post("/v2/models/i32/infer", body=i32_body("[100]"))), np.array([107], np.int32))


@pytest.mark.parametrize("depth,ok", [(64, True), (65, False), (100_000, False)])
def test_deeply_nested_data(http, depth, ok):
    """docs/RELIABILITY.md: "Nesting of a tensor's JSON `data` | 64 lists |
    `input 'x': 'data' is nested deeper than 64 lists`"; 100,000 levels are
    the same 400, the server serving on. tritonserver 2.51 answered 65
    levels 200, and crashed (SIGSEGV, every model down) on 100,000."""
    raw = "[" * depth + "1" + "]" * depth
    body = ('{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":%s},'
            '{"name":"y","shape":[1],"datatype":"FP32","data":[1]}]}' % raw).encode()
    r = one(http, post(body=body))
    if ok:
        assert_sum(r, np.array([2], np.float32))
    else:
        assert r.status == 400 and "nested deeper than 64 lists" in r.json()["error"]
    serves_on(http)


def test_deep_nesting_in_parameters_and_duplicate_keys(http):
    """A parameter nested 100,000 lists deep is 400 (RELIABILITY.md: deeper
    JSON where it does not belong is the wrong type); a key given twice is
    400 (FROM_TRITON.md: "a key given twice | 400 | 200 (the first key)").
    tritonserver 2.51: 400 "parameter 'a' has invalid type", and 200 for
    the duplicate."""
    deep = "[" * 100_000 + "1" + "]" * 100_000
    body = ('{"parameters":{"a":%s},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},'
            '{"name":"y","shape":[1],"datatype":"FP32","data":[1]}]}' % deep).encode()
    assert one(http, post(body=body)).status == 400
    dup = BODY.replace(b'"datatype": "FP32",', b'"datatype": "FP32", "datatype": "FP32",', 1)
    assert dup != BODY
    assert one(http, post(body=dup)).status == 400
    serves_on(http)


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize("encoding,status", [("br", 400), ("zstd", 400), ("gzip, identity", 400),
                                             ("identity", 200), ("", 200), ("Identity", 200)])
def test_request_content_encodings(http, encoding, status):
    """Content-Encoding on a request body: gzip and deflate are read
    (test_triton_side_http.py); identity (any case) or an empty value is
    the body as it is; br, zstd or a list are 400 naming it and the two it
    reads (FROM_TRITON.md: "an unknown `Content-Encoding` is 400 (Triton:
    501)"). tritonserver 2.51: 501 "Unsupported compression type" for br,
    zstd, the list, the empty value and `Identity`; 200 for `identity`."""
    body = BODY
    if encoding == "br":
        brotli = pytest.importorskip("brotli")
        body = brotli.compress(BODY)
    r = one(http, post(headers=[("Content-Encoding", encoding)], body=body))
    assert r.status == status, r.body
    if status == 400:
        assert "gzip" in r.json()["error"] and "deflate" in r.json()["error"]
    else:
        assert_sum(r)


@pytest.mark.parametrize("accept,encoding", [
    ("GZIP", "gzip"), ("x-gzip", "gzip"), ("deflate ; q=0.2 ,gzip ; q=0.8", "gzip"), ("br", None), ("*", None),
    ("identity;q=0, gzip;q=0.001", "gzip"), ("gzip;q=0, deflate;q=0, br", None),
    ("deflate, gzip, br, zstd", "deflate"),
], ids=["upper", "x-gzip", "spaces", "br-only", "star", "identity-refused", "all-refused", "curl-compressed"])
def test_accept_encoding_as_each_client_writes_it(http, accept, encoding):
    """RFC 9110 12.5.3 and SERVING.md ("the encoding with the highest q among
    gzip, deflate and identity wins (the first listed on a tie; q=0 refuses
    one)"): codings are case-insensitive and `x-gzip` is gzip (RFC 9110
    8.4.1.3), whitespace around `;` is allowed, an offer of codings the
    server lacks gets identity, `*` may be answered as it is. curl
    --compressed offers `deflate, gzip, br, zstd`. tritonserver 2.51: the
    same, except no compression for `GZIP`, `x-gzip` and the spaced list."""
    r = one(http, post(headers=[("Accept-Encoding", accept)]))
    assert r.header("content-encoding") == encoding
    assert_sum(r)


def test_the_q_parameter_name_is_case_insensitive(http):
    """RFC 9110 12.4.2: "The weight is normalized ... the "q" parameter name
    is case-insensitive". `gzip;Q=0.1, deflate;q=0.9` prefers deflate.
    tritonserver 2.51: deflate. anemone: gzip (it read gzip's weight as
    1)."""
    r = one(http, post(headers=[("Accept-Encoding", "gzip;Q=0.1, deflate;q=0.9")]))
    assert r.header("content-encoding") == "deflate"


# ---------------------------------------------------------------- gRPC with generated stubs

HEALTH_PROTO = '''syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
'''


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """Python modules generated from proto/grpc_service.proto and
    proto/model_config.proto (the repository's), and grpc.health.v1's
    health.proto, with grpc_tools."""
    grpc = pytest.importorskip("grpc")
    protoc = pytest.importorskip("grpc_tools.protoc")
    from serve_support import ROOT
    out = tmp_path_factory.mktemp("stubs")
    (out / "health.proto").write_text(HEALTH_PROTO)
    for files in (["grpc_service.proto", "model_config.proto"], ["health.proto"]):
        rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{out}", f"--python_out={out}",
                          f"--grpc_python_out={out}", *files])
        assert rc == 0
    sys.path.insert(0, str(out))
    try:
        import grpc_service_pb2 as pb
        import grpc_service_pb2_grpc as pbg
        import health_pb2 as hp
        import health_pb2_grpc as hpg
    finally:
        sys.path.remove(str(out))
    return grpc, pb, pbg, hp, hpg


@pytest.fixture(scope="module")
def channel(server, stubs):
    grpc = stubs[0]
    ch = grpc.insecure_channel(server["grpc"])
    yield ch
    ch.close()


def infer_request(pb, model="add", x=X, y=Y):
    return pb.ModelInferRequest(
        model_name=model, id="r1",
        inputs=[pb.ModelInferRequest.InferInputTensor(name=n, datatype="FP32", shape=[len(v)])
                for n, v in (("x", x), ("y", y))],
        raw_input_contents=[x.tobytes(), y.tobytes()])


def test_generated_stubs_infer_and_stream(stubs, channel):
    """grpcio with stubs generated from the repository's proto/: ModelInfer
    (raw contents), metadata and readiness, and ModelStreamInfer with gzip
    message compression on the call. tritonserver 2.51: the same sums."""
    grpc, pb, pbg = stubs[:3]
    s = pbg.GRPCInferenceServiceStub(channel)
    assert s.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert s.ModelReady(pb.ModelReadyRequest(name="add"), timeout=10).ready
    assert [i.name for i in s.ModelMetadata(pb.ModelMetadataRequest(name="add"), timeout=10).inputs] == ["x", "y"]
    r = s.ModelInfer(infer_request(pb), timeout=30)
    assert r.id == "r1" and list(r.outputs[0].shape) == [3]
    np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32), SUM)
    xs = [np.full(4, i, np.float32) for i in range(6)]
    answers = list(s.ModelStreamInfer(iter([infer_request(pb, x=x, y=x) for x in xs]), timeout=30,
                                      compression=grpc.Compression.Gzip))
    assert [a.error_message for a in answers] == [""] * 6
    for x, a in zip(xs, answers):
        np.testing.assert_array_equal(np.frombuffer(a.infer_response.raw_output_contents[0], np.float32), x + x)


@pytest.mark.parametrize("service,ok", [("", True), ("inference.GRPCInferenceService", True), ("add", False),
                                        ("nope", False)])
def test_the_grpc_health_service_as_a_kubernetes_grpc_probe_calls_it(stubs, channel, service, ok):
    """Kubernetes' gRPC probe calls grpc.health.v1.Health/Check with service
    "" (or the one it is given). SERVING for "" and the inference service;
    FROM_TRITON.md: "the health service answers NOT_FOUND for a service name
    it does not know ... (Triton: SERVING for any name)", a model name
    included. tritonserver 2.51: SERVING for all four, and `Watch`
    UNIMPLEMENTED (documented there too)."""
    grpc, hp, hpg = stubs[0], stubs[3], stubs[4]
    h = hpg.HealthStub(channel)
    if ok:
        assert h.Check(hp.HealthCheckRequest(service=service), timeout=10).status == hp.HealthCheckResponse.SERVING
        watch = h.Watch(hp.HealthCheckRequest(service=service), timeout=10)
        assert next(watch).status == hp.HealthCheckResponse.SERVING
        watch.cancel()
    else:
        with pytest.raises(grpc.RpcError) as e:
            h.Check(hp.HealthCheckRequest(service=service), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_1_ms_deadline(stubs, channel):
    """A 1 ms deadline on a model that takes 0.5 s ends the call at once;
    on a fast model each call is either the right answer or a deadline's
    end, never another status, and the channel serves on. tritonserver
    2.51: DEADLINE_EXCEEDED in 3 ms for the slow model. anemone answers
    DEADLINE_EXCEEDED also where the deadline ends before the call reaches
    its handler (a cold CI run on the loaded 2-core machine), which tonic
    answered CANCELLED "Timeout expired" until session 44 (docs/SERVING.md)."""
    grpc, pb, pbg = stubs[:3]

    def deadline_end(err):
        return err.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    s = pbg.GRPCInferenceServiceStub(channel)
    t = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        s.ModelInfer(infer_request(pb, "slow"), timeout=0.001)
    assert deadline_end(e.value) and time.monotonic() - t < 0.4, e.value
    for _ in range(30):
        try:
            r = s.ModelInfer(infer_request(pb), timeout=0.001)
            np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32), SUM)
        except grpc.RpcError as err:
            assert deadline_end(err), err
    r = s.ModelInfer(infer_request(pb, "slow"), timeout=30)
    np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32), SUM)


# ---------------------------------------------------------------- hand-framed HTTP/2


def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_headers(path):
    """An HPACK block of literal fields without indexing (no Huffman)."""
    out = b""
    for k, v in ((":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                 ("content-type", "application/grpc"), ("te", "trailers")):
        out += b"\x00" + bytes([len(k)]) + k.encode() + bytes([len(v)]) + v.encode()
    return out


def h2_frames(sock, seconds):
    sock.settimeout(0.2)
    buf, out, end = b"", [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            b = sock.recv(1 << 16)
            if not b:
                break
            buf += b
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]))
            buf = buf[9 + n:]
    return out


def _grpc_answer(pb, frames, sid):
    data = b"".join(p for k, _, i, p in frames if k == 0 and i == sid)
    assert len(data) > 5, frames
    r = pb.ModelInferResponse.FromString(data[5:5 + int.from_bytes(data[1:5], "big")])
    np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32), SUM)


def test_data_sent_after_half_closing_a_grpc_stream(stubs, server):
    """A client that sends DATA on a stream after its END_STREAM (RFC 9113
    5.1: a stream error STREAM_CLOSED, which an endpoint MAY treat as a
    connection error). Sent after the answer: the answer arrives, then
    RST_STREAM code 5 for that stream, and a new stream on the same
    connection is answered. Sent at once behind the first DATA: the answer,
    or a GOAWAY closing the connection (anemone: GOAWAY PROTOCOL_ERROR);
    either way the server then serves new connections. tritonserver 2.51:
    the answer, then nothing (no RST_STREAM) for the extra DATA."""
    pb, pbg = stubs[1], stubs[2]
    host, port = server["grpc"].rsplit(":", 1)
    msg = infer_request(pb).SerializeToString()
    grpc_msg = b"\x00" + struct.pack(">I", len(msg)) + msg
    path = "/inference.GRPCInferenceService/ModelInfer"
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0)
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(preface + h2_frame(1, 4, 1, h2_headers(path)) + h2_frame(0, 1, 1, grpc_msg))
        _grpc_answer(pb, h2_frames(s, 1.5), 1)
        s.sendall(h2_frame(0, 1, 1, grpc_msg))
        frames = h2_frames(s, 1.0)
        assert [int.from_bytes(p[:4], "big") for k, _, i, p in frames if k == 3 and i == 1] == [5], frames
        s.sendall(h2_frame(1, 4, 3, h2_headers(path)) + h2_frame(0, 1, 3, grpc_msg))
        _grpc_answer(pb, h2_frames(s, 1.5), 3)
    finally:
        s.close()
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(preface + h2_frame(1, 4, 1, h2_headers(path)) + h2_frame(0, 1, 1, grpc_msg)
                  + h2_frame(0, 1, 1, grpc_msg))
        frames = h2_frames(s, 2.0)
        if not [f for f in frames if f[0] == 7]:
            _grpc_answer(pb, frames, 1)
    finally:
        s.close()
    with stubs[0].insecure_channel(server["grpc"]) as ch:
        r = pbg.GRPCInferenceServiceStub(ch).ModelInfer(infer_request(pb), timeout=30)
    np.testing.assert_array_equal(np.frombuffer(r.raw_output_contents[0], np.float32), SUM)


def test_an_http_1_request_on_the_grpc_port_is_not_hung(server):
    """An HTTP/1.1 probe pointed at the gRPC port by mistake: the server
    answers with HTTP/2 SETTINGS and closes (RFC 9113 3.4: a connection
    error on a bad preface), within the timeout, and gRPC serves on.
    tritonserver 2.51: the same (SETTINGS, then the close)."""
    host, port = server["grpc"].rsplit(":", 1)
    data, closed = exchange((host, int(port)), request("GET", "/v2/health/live", [("Connection", "close")]), timeout=5)
    assert closed and not data.startswith(b"HTTP/1")
    assert data[3] == 4  # a SETTINGS frame first
