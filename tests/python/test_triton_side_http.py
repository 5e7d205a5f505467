"""HTTP transport edges, asked of anemone as they were asked of tritonserver
2.51 side by side (the same repository of small Python models on both, the
same bytes sent over raw sockets, `http.client` and `requests`): request
and response compression, chunked bodies, `Expect: 100-continue`, HTTP/1.0
and keep-alive, pipelining, duplicated and odd headers,
`Inference-Header-Content-Length` edge values, long and percent-encoded
URLs, methods per route, and the `Content-Type` / `Content-Length` of the
answers.

Each test's docstring says what tritonserver 2.51 answered to the same
bytes (read off a run of both servers on 2026-12-05; CI has no Triton, so
the tests run against anemone only). Where the two agree, the test checks
anemone gives that answer; where they differ and docs/SERVING.md or
docs/FROM_TRITON.md document anemone's answer (or HTTP's RFCs require it
and Triton breaks the framing), the test checks anemone's; where they
differ and the docs are silent, the test is marked
xfail(strict=True, reason="DEFECT: ...").

The models compute OUT = 2 * IN + 1, so every answer is checked against
numpy. Their model.py start with Triton's peer boilerplate (TPEER_SP), so
the same repository serves on tritonserver.
"""
import gzip
import http.client
import json
import socket
import sys
import time
import zlib

import numpy as np
import pytest
import requests
from serve_support import start_serve, stop_serve, wait_ready

HEADER = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
'''

AFFINE = HEADER + '''
import time
DELAY = 0.0


class TritonPythonModel:
    def execute(self, requests):
        if DELAY:
            time.sleep(DELAY)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * 2 + 1).astype(np.float32))]))
        return out
'''


def _config(name, dims="[ -1 ]"):
    return (f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
            f'input [ {{ name: "IN" data_type: TYPE_FP32 dims: {dims} }} ]\n'
            f'output [ {{ name: "OUT" data_type: TYPE_FP32 dims: {dims} }} ]\n')


# Folder name -> (config, model.py). "a b" is anemone's only: tritonserver
# 2.51's Python stub aborts the whole server loading a name with a space.
MODELS = {
    "affine": (_config("affine"), AFFINE),
    "fixed": (_config("fixed", "[ 2 ]"), AFFINE),
    "slow": (_config("slow"), AFFINE.replace("DELAY = 0.0", "DELAY = 0.6")),
    "a+b": (_config("a+b"), AFFINE),
    "a b": (_config("a b"), AFFINE),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton_side_http")
    for name, (config, source) in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(source)
    proc, addresses = start_serve(repo, "--python", sys.executable)
    try:
        wait_ready(addresses["HTTP"])
        host, port = addresses["HTTP"].rsplit(":", 1)
        yield (host, int(port))
    finally:
        stop_serve(proc)


X = np.array([1.5, -2.25], np.float32)
BODY = json.dumps({"inputs": [{"name": "IN", "shape": [2], "datatype": "FP32", "data": X.tolist()}]}).encode()


def expected(x=X):
    return (x.astype(np.float32) * 2 + 1).astype(np.float32)


# ---------------------------------------------------------------- raw HTTP


def request(method, path, headers=(), body=b"", version="HTTP/1.1"):
    head = f"{method} {path} {version}\r\nHost: x\r\n"
    for k, v in headers:
        head += f"{k}: {v}\r\n"
    return head.encode() + b"\r\n" + body


def infer_request(path="/v2/models/affine/infer", headers=(), body=BODY, close=True):
    h = [("Content-Length", len(body))] + list(headers)
    if close:
        h.append(("Connection", "close"))
    return request("POST", path, h, body)


def exchange(server, pieces, timeout=5.0, pause=0.0, until_close=True):
    """Sends `pieces` (bytes, or a list sent one by one `pause` apart) on a
    new connection and returns what came back until the server closed it
    (or `timeout` passed)."""
    s = socket.create_connection(server, timeout=timeout)
    try:
        for p in ([pieces] if isinstance(pieces, bytes) else pieces):
            s.sendall(p)
            if pause:
                time.sleep(pause)
        out = b""
        try:
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                out += b
                if not until_close and parse(out, complete_only=True):
                    break
        except socket.timeout:
            pass
        except ConnectionResetError:
            pass
        return out
    finally:
        s.close()


class Response:
    def __init__(self, version, status, headers, body):
        self.version, self.status, self.headers, self.body = version, status, headers, body

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def parse(data, head_request=False, complete_only=False):
    """The HTTP/1.x responses in `data`, in order (1xx included), each
    delimited by its Content-Length or chunked framing; a last one without
    either runs to the end."""
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
        if r.status < 200 or r.status in (204, 304) or head_request:
            out.append(r)
            continue
        te, cl = r.header("transfer-encoding"), r.header("content-length")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                nl = data.find(b"\r\n")
                if nl < 0:
                    return out if complete_only else out + [r]
                size = int(data[:nl].split(b";")[0], 16)
                body += data[nl + 2:nl + 2 + size]
                data = data[nl + 2 + size + 2:]
                if size == 0:
                    break
            r.body = body
        elif cl is not None:
            if len(data) < int(cl) and complete_only:
                break
            r.body, data = data[:int(cl)], data[int(cl):]
        else:
            r.body, data = data, b""
        out.append(r)
    return out


def one(server, pieces, **kw):
    responses = [r for r in parse(exchange(server, pieces, **kw)) if r.status >= 200]
    assert len(responses) == 1, [(r.status, r.body[:100]) for r in responses]
    return responses[0]


def outputs(r):
    """OUT of an inference answer (JSON or binary), decompressed first."""
    body = r.body
    enc = (r.header("content-encoding") or "identity").lower()
    if enc == "gzip":
        body = gzip.decompress(body)
    elif enc == "deflate":
        body = zlib.decompress(body)
    n = r.header("inference-header-content-length")
    head = json.loads(body[:int(n)] if n is not None else body)
    out = head["outputs"][0]
    if "data" in out:
        return np.array(out["data"], np.float32)
    return np.frombuffer(body[int(n):int(n) + out["parameters"]["binary_data_size"]], np.float32)


def assert_answer(r, x=X):
    assert r.status == 200, (r.status, r.body[:300])
    np.testing.assert_array_equal(outputs(r), expected(x))


def error(r):
    assert r.header("content-type") == "application/json", r.headers
    return r.json()["error"]


def stats(server, model):
    j = requests.get(f"http://{server[0]}:{server[1]}/v2/models/{model}/stats", timeout=30).json()["model_stats"][0]
    return j


# ---------------------------------------------------------------- request compression


def _raw_deflate(b):
    c = zlib.compressobj(wbits=-15)
    return c.compress(b) + c.flush()


@pytest.mark.parametrize("encoding,packed", [
    ("gzip", gzip.compress(BODY, mtime=0)),
    ("deflate", zlib.compress(BODY)),
    ("identity", BODY),
    ("x-gzip", gzip.compress(BODY, mtime=0)),
    ("GZIP", gzip.compress(BODY, mtime=0)),
])
def test_a_compressed_request_body_is_read(server, encoding, packed):
    """SERVING.md: "An inference body may be compressed, as Triton accepts
    it: Content-Encoding: gzip or deflate (zlib)". tritonserver 2.51 reads
    gzip, deflate (zlib) and identity alike; it answers `GZIP` and `x-gzip`
    501 "Unsupported compression type" where anemone reads them as gzip
    (content codings are case-insensitive, and x-gzip is gzip, RFC 9110
    8.4.1)."""
    r = one(server, infer_request(headers=[("Content-Encoding", encoding)], body=packed))
    assert_answer(r)


@pytest.mark.parametrize("encoding", ["br", "compress", "gzip, identity", "gzip;q=1", "zstd"])
def test_an_unknown_request_encoding_is_400_naming_it(server, encoding):
    """SERVING.md: "Another encoding is a 400 that names the two" (gzip and
    deflate). tritonserver 2.51 answers 501 "Unsupported compression type"
    (Content-Type text/plain, with an `Accept-Encoding: gzip, deflate`
    header); a difference SERVING.md documents."""
    r = one(server, infer_request(headers=[("Content-Encoding", encoding)]))
    assert r.status == 400
    e = error(r)
    assert encoding in e and "gzip" in e and "deflate" in e, e


@pytest.mark.parametrize("encoding,packed,words", [
    ("gzip", bytes(b ^ 0xFF if i == 15 else b for i, b in enumerate(gzip.compress(BODY, mtime=0))), "gzip"),
    ("gzip", gzip.compress(BODY, mtime=0)[:-10], "gzip"),
    ("gzip", BODY, "gzip"),
    ("deflate", _raw_deflate(BODY), "deflate"),
    ("deflate", b"\x78\x9c" + b"\x00" * 10, "deflate"),
])
def test_a_body_that_does_not_decompress_is_400(server, encoding, packed, words):
    """SERVING.md errors: "a compressed request that does not decompress
    (HTTP Content-Encoding ...)" is 400. tritonserver 2.51 decompresses what
    it can and parses the rest: a flipped byte is 500 "Unable to parse
    'inputs'", a cut stream 500 "failed to parse the request JSON buffer",
    and a plain JSON body marked gzip, or a raw (RFC 1951) deflate stream,
    is 200 with an empty FP32 output of shape [0]."""
    r = one(server, infer_request(headers=[("Content-Encoding", encoding)], body=packed))
    assert r.status == 400, (r.status, r.body)
    assert "does not decompress" in error(r) and words in error(r)


def test_a_chunked_gzip_body_is_read(server):
    """A gzip body sent chunked (no Content-Length) is read. tritonserver
    2.51: the same answer."""
    packed = gzip.compress(BODY, mtime=0)
    r = one(server, request("POST", "/v2/models/affine/infer",
                            [("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip"), ("Connection", "close")],
                            chunked(packed, 7)))
    assert_answer(r)


# ---------------------------------------------------------------- response compression


@pytest.mark.parametrize("accept,encoding", [
    ("gzip, deflate, br, identity;q=0", "gzip"),
    ("deflate", "deflate"),
    ("gzip;q=0.5, deflate;q=0.9", "deflate"),
    ("deflate, gzip", "deflate"),
    ("*", None),
    ("*;q=0", None),
    ("br", None),
    ("br, *;q=0.1", None),
    ("identity;q=0", None),
    ("gzip;q=0", None),
])
def test_the_answer_is_compressed_as_accept_encoding_weighs(server, accept, encoding):
    """SERVING.md: "the encoding with the highest q among gzip, deflate and
    identity wins (the first listed on a tie; q=0 refuses one)". The same
    choices as tritonserver 2.51 for each header here: `*` and `br` are
    answered uncompressed, and so is `identity;q=0` alone (neither server
    answers 406). Content-Length is the compressed body's length; the body
    decompresses to the model's answer."""
    r = one(server, infer_request(headers=[("Accept-Encoding", accept)]))
    assert r.header("content-encoding") == encoding
    assert int(r.header("content-length")) == len(r.body)
    assert r.header("content-type") == "application/json"
    assert_answer(r)


def test_a_binary_answer_is_one_compressed_body_with_the_json_length_before_compression(server):
    """SERVING.md: "The JSON and any binary outputs are one compressed body;
    Inference-Header-Content-Length counts the JSON before compression".
    tritonserver 2.51 answers the same headers (application/octet-stream,
    Content-Encoding gzip, Inference-Header-Content-Length of the plain
    JSON), also for an 800 KB output."""
    x = np.arange(200_000, dtype=np.float32) / 7
    head = json.dumps({"inputs": [{"name": "IN", "shape": [x.size], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "OUT", "parameters": {"binary_data": True}}]}).encode()
    for enc in ("gzip", "deflate"):
        r = one(server, infer_request(headers=[("Inference-Header-Content-Length", len(head)),
                                               ("Accept-Encoding", enc)], body=head + x.tobytes()))
        assert r.status == 200 and r.header("content-encoding") == enc
        assert r.header("content-type") == "application/octet-stream"
        assert int(r.header("content-length")) == len(r.body) < x.nbytes
        np.testing.assert_array_equal(outputs(r), expected(x))


def test_errors_and_other_routes_are_not_compressed(server):
    """SERVING.md: "Errors are never compressed"; only inference answers
    are. tritonserver 2.51: the same (a 404, a 400 (its 500) and model
    metadata with `Accept-Encoding: gzip` come back plain; its 404 is
    labelled text/plain)."""
    gz = [("Accept-Encoding", "gzip")]
    r = one(server, infer_request("/v2/models/nope/infer", headers=gz))
    assert r.status == 404 and r.header("content-encoding") is None and "nope" in error(r)
    r = one(server, infer_request(headers=gz, body=b"{x}"))
    assert r.status == 400 and r.header("content-encoding") is None and error(r)
    r = one(server, request("GET", "/v2/models/affine", gz + [("Connection", "close")]))
    assert r.status == 200 and r.header("content-encoding") is None and r.json()["name"] == "affine"


# ---------------------------------------------------------------- framing


def chunked(body, n=10, last=b"0\r\n\r\n"):
    out = b""
    for i in range(0, len(body), n):
        c = body[i:i + n]
        out += f"{len(c):x}\r\n".encode() + c + b"\r\n"
    return out + last


def test_chunked_request_bodies(server):
    """A chunked body is read, with chunk extensions and trailer fields
    (RFC 9112 7.1), and wins over a Content-Length beside it (RFC 9112
    6.3); a malformed chunk size is 400. tritonserver 2.51 reads a plain
    chunked body, but closes the connection without an answer for a chunk
    extension or trailer, reads only Content-Length's 5 bytes when both are
    sent (500 "failed to parse the request JSON buffer") and closes without
    an answer on a bad chunk size."""
    path = "/v2/models/affine/infer"
    te = [("Transfer-Encoding", "chunked"), ("Connection", "close")]
    assert_answer(one(server, request("POST", path, te, chunked(BODY))))
    assert_answer(one(server, request("POST", path, te, chunked(BODY, last=b"0;ext=1\r\nX-Trailer: 1\r\n\r\n"))))
    assert_answer(one(server, request("POST", path, te + [("Content-Length", "5")], chunked(BODY))))
    # Sent in pieces, a pause between them.
    pieces = [request("POST", path, te)] + [chunked(BODY[i:i + 30], last=b"") for i in range(0, len(BODY), 30)] + [b"0\r\n\r\n"]
    assert_answer(one(server, pieces, pause=0.05))
    r = one(server, request("POST", path, te, b"zz\r\nabc\r\n0\r\n\r\n"))
    assert r.status == 400


def test_chunked_in_http_1_0_is_refused(server):
    """RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
    framing; anemone answers 400 and closes. tritonserver 2.51 reads it as
    chunked and answers 200."""
    data = exchange(server, request("POST", "/v2/models/affine/infer", [("Transfer-Encoding", "chunked")],
                                    chunked(BODY), version="HTTP/1.0"))
    assert parse(data)[0].status == 400


def test_expect_100_continue(server):
    """`Expect: 100-continue` gets `100 Continue` before the body is sent,
    then the answer; without the body nothing more comes. tritonserver
    2.51: the same bytes (it also sends 100 for any other Expect value and
    on a GET; anemone answers those directly). Neither refuses early a
    body whose Content-Length is over the limit: both say 100 Continue."""
    head = request("POST", "/v2/models/affine/infer", [("Expect", "100-continue"), ("Content-Length", len(BODY)),
                                                       ("Connection", "close")])
    got = parse(exchange(server, head, timeout=0.8))
    assert [r.status for r in got] == [100]
    got = parse(exchange(server, [head, BODY], pause=0.3))
    assert [r.status for r in got] == [100, 200]
    assert_answer(got[1])
    r = one(server, request("GET", "/v2/health/ready", [("Expect", "100-continue"), ("Connection", "close")]))
    assert r.status == 200


def test_http_1_0_and_keep_alive(server):
    """HTTP/1.0 is answered in HTTP/1.0 with a Content-Length, and the
    connection closed unless it asks `Connection: keep-alive`, then kept.
    tritonserver 2.51: the same for inference; its health answers to an
    HTTP/1.0 keep-alive request carry no Content-Length (text/plain) on a
    connection it keeps open, so a client cannot tell where they end."""
    data = exchange(server, infer_request(body=BODY).replace(b"HTTP/1.1", b"HTTP/1.0").replace(b"Connection: close\r\n", b""))
    (r,) = parse(data)
    assert r.version == "HTTP/1.0" and int(r.header("content-length")) == len(r.body)
    assert_answer(r)
    ka = request("GET", "/v2/health/live", [("Connection", "keep-alive")], version="HTTP/1.0")
    got = parse(exchange(server, ka + ka, timeout=1.0))
    assert [(r.version, r.status, r.header("content-length"), r.body) for r in got] == [
        ("HTTP/1.0", 200, "13", b'{"live":true}')] * 2
    # http.client speaking HTTP/1.0 keeps its connection for a second request.
    c = http.client.HTTPConnection(*server, timeout=30)
    c._http_vsn, c._http_vsn_str = 10, "HTTP/1.0"
    for _ in range(2):
        c.request("POST", "/v2/models/affine/infer", BODY, {"Connection": "keep-alive"})
        r = c.getresponse()
        assert r.version == 10 and not r.will_close
        np.testing.assert_array_equal(np.array(json.loads(r.read())["outputs"][0]["data"], np.float32), expected())
    c.close()


def test_many_requests_on_one_keep_alive_connection(server):
    """300 inference requests and 300 readiness probes alternate on one
    HTTP/1.1 connection (http.client), every answer right and the socket
    never replaced. tritonserver 2.51: the same."""
    c = http.client.HTTPConnection(*server, timeout=30)
    c.connect()
    sock = c.sock
    rng = np.random.default_rng(5)
    for i in range(300):
        x = rng.standard_normal(3).astype(np.float32)
        c.request("POST", "/v2/models/affine/infer",
                  json.dumps({"inputs": [{"name": "IN", "shape": [3], "datatype": "FP32", "data": x.tolist()}]}))
        r = c.getresponse()
        assert r.status == 200
        np.testing.assert_array_equal(np.array(json.loads(r.read())["outputs"][0]["data"], np.float32), expected(x))
        c.request("GET", "/v2/health/ready")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"ready": True}
        assert c.sock is sock, f"the connection was replaced at request {i}"
    c.close()


def test_pipelined_requests_are_answered_in_order(server):
    """Requests written back to back on one connection before any answer
    (HTTP/1.1 pipelining) are answered in order: a readiness probe, two
    inferences, an unknown route, malformed JSON, an unknown model, a last
    one closing; a refused request leaves the connection usable.
    tritonserver 2.51 answers a pipeline of inferences (and goes on after a
    malformed one), but stalled after the first answer of this mixed one
    (no more bytes for 2 s), and after an unknown model's 404."""
    xs = [np.array([i, -i / 3], np.float32) for i in (1, 2)]
    bodies = [json.dumps({"inputs": [{"name": "IN", "shape": [2], "datatype": "FP32", "data": x.tolist()}]}).encode()
              for x in xs]
    data = (request("GET", "/v2/models/affine/ready")
            + b"".join(infer_request(body=b, close=False) for b in bodies)
            + request("GET", "/v2/nope")
            + infer_request(body=b"{x}", close=False)
            + infer_request("/v2/models/nope/infer", close=False)
            + infer_request(body=bodies[1], close=False)
            + request("GET", "/v2/health/ready", [("Connection", "close")]))
    got = parse(exchange(server, data))
    assert [r.status for r in got] == [200, 200, 200, 404, 400, 404, 200, 200]
    assert_answer(got[1], xs[0])
    assert_answer(got[2], xs[1])
    assert "/v2/nope" in error(got[3])
    assert "malformed" in error(got[4]) and "nope" in error(got[5])
    assert_answer(got[6], xs[1])


# ---------------------------------------------------------------- headers


def test_duplicated_and_odd_headers(server):
    """Content-Length twice with one value is read; twice with two values,
    as a list, or with a sign is 400 (RFC 9112 6.3); header names in any
    case; Content-Type with a charset; a body shorter than its
    Content-Length is 400 once the client ends it; two
    Inference-Header-Content-Length lines: the first is read. tritonserver
    2.51: the same answers, except that it closes without an answer for a
    list or a sign, answers two differing lengths 400 "unexpected size for
    request JSON", and a body cut short 500 once the client ends it."""
    path = "/v2/models/affine/infer"
    n = len(BODY)
    assert_answer(one(server, request("POST", path, [("Content-Length", n), ("Content-Length", n), ("Connection", "close")], BODY)))
    for bad in ([("Content-Length", n), ("Content-Length", n - 3)], [("Content-Length", f"{n}, {n}")],
                [("Content-Length", f"+{n}")]):
        r = one(server, request("POST", path, bad + [("Connection", "close")], BODY))
        assert r.status == 400, bad
    assert_answer(one(server, request("POST", path, [("cOnTeNt-LeNgTh", n), ("CONNECTION", "close")], BODY)))
    assert_answer(one(server, infer_request(headers=[("Content-Type", "application/json; charset=utf-8")])))
    assert_answer(one(server, infer_request(headers=[("Content-Type", "application/json"), ("Content-Type", "text/plain")])))
    assert_answer(one(server, infer_request(headers=[("Inference-Header-Content-Length", n),
                                                     ("inference-header-content-length", 5)])))
    s = socket.create_connection(server, timeout=5)
    s.sendall(request("POST", path, [("Content-Length", n + 10), ("Connection", "close")], BODY))
    s.shutdown(socket.SHUT_WR)
    data = s.recv(1 << 16)
    s.close()
    assert parse(data)[0].status == 400


def test_only_the_first_accept_and_content_encoding_lines_are_read(server):
    """A second `Accept-Encoding` or `Content-Encoding` line is not read
    (the first decides), as tritonserver 2.51 reads them."""
    r = one(server, infer_request(headers=[("Accept-Encoding", "identity;q=0.5"), ("Accept-Encoding", "gzip")]))
    assert r.header("content-encoding") is None
    assert_answer(r)
    r = one(server, infer_request(headers=[("Accept-Encoding", "gzip;q=0.5"), ("Accept-Encoding", "identity")]))
    assert r.header("content-encoding") == "gzip"
    assert_answer(r)
    packed = gzip.compress(BODY, mtime=0)
    r = one(server, infer_request(headers=[("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")], body=packed))
    assert_answer(r)


def test_a_request_with_many_header_lines_gets_431_as_documented(server):
    """RELIABILITY.md's limits: at most 100 header lines (Host and the
    others together), 431 past them, and the server serves on.
    tritonserver 2.51 answers a request with 200 extra lines 200 (a
    documented difference). 90 lines are served."""
    r = one(server, infer_request(headers=[(f"X-Forwarded-{i}", "v") for i in range(120)]))
    assert r.status == 431, r.status
    assert_answer(one(server, infer_request(headers=[(f"X-Forwarded-{i}", "v") for i in range(90)])))


# ---------------------------------------------------------------- Inference-Header-Content-Length


def test_inference_header_content_length_edges(server):
    """The whole body's length: the body is JSON alone; one byte past it,
    or a 20-digit value, 400 "... is N, but the body has only M bytes";
    not a decimal byte count (`abc`, ``, `1e2`, `0x74`, `-0`, `116.0`) 400
    "must be a byte count"; a header length that cuts the JSON is 400.
    tritonserver 2.51: 400 "inference header size should be in range (0,
    78), got: 79" past the body, but `abc`, ``, `0x74` and `-0` read as 0
    (a raw binary request, below), and a cut JSON 500."""
    n = len(BODY)
    r = one(server, infer_request(headers=[("Inference-Header-Content-Length", n)]))
    assert_answer(r)
    for v in (n + 1, "18446744073709551615", "+116", "00116"):
        r = one(server, infer_request(headers=[("Inference-Header-Content-Length", v)]))
        assert r.status == 400 and f"but the body has only {n} bytes" in error(r), (v, r.body)
    for v in ("abc", "", "1e2", "0x74", "-0", "116.0", "99999999999999999999"):
        r = one(server, infer_request(headers=[("Inference-Header-Content-Length", v)]))
        assert r.status == 400 and "must be a byte count" in error(r), (v, r.body)
    r = one(server, infer_request(headers=[("Inference-Header-Content-Length", n - 1)]))
    assert r.status == 400 and "malformed inference request JSON" in error(r)


def test_a_raw_binary_request_is_the_single_inputs_tensor(server):
    """Triton's binary tensor extension, "Raw Binary Request": with
    `Inference-Header-Content-Length: 0` the whole body is the data of the
    model's only input (datatype from the config, shape from its dims, or
    the byte count for a [-1] dimension), and the answer is binary.
    tritonserver 2.51 answers 8 raw FP32 bytes to `fixed` (dims [2]) and
    `affine` (dims [-1]) 200, application/octet-stream, every output
    binary; 12 bytes to `fixed` 400 "input byte size mismatch for input
    'raw_input' ... Expected 8, got 12"."""
    x = np.array([3.5, -4], np.float32)
    for model in ("fixed", "affine"):
        r = one(server, infer_request(f"/v2/models/{model}/infer", body=x.tobytes(),
                                      headers=[("Inference-Header-Content-Length", "0"),
                                               ("Content-Type", "application/octet-stream")]))
        assert r.status == 200, r.body
        assert r.header("content-type") == "application/octet-stream"
        np.testing.assert_array_equal(outputs(r), expected(x))
    r = one(server, infer_request("/v2/models/fixed/infer", body=x.tobytes() + b"abcd",
                                  headers=[("Inference-Header-Content-Length", "0")]))
    assert r.status == 400 and "expected 8, got 12" in error(r).lower(), error(r)


# ---------------------------------------------------------------- URLs


def test_long_urls(server):
    """A model name over 1024 bytes is 400 naming the limit (RELIABILITY.md:
    "Model, input and output names 1024 bytes"); a URL over 64 KiB is 414;
    an 8 KB query string is ignored. tritonserver 2.51 answers a 1025-byte
    name 404 (its message cut at 4 KB), and resets the connection for any
    URL from 16 KB on."""
    r = one(server, request("GET", "/v2/models/" + "m" * 1025, [("Connection", "close")]))
    assert r.status == 400 and "over the limit of 1024" in error(r)
    r = one(server, request("GET", "/v2/models/" + "m" * 70_000, [("Connection", "close")]))
    assert r.status == 414
    assert_answer(one(server, infer_request("/v2/models/affine/infer?q=" + "m" * 8000)))
    # And the server serves on.
    assert_answer(one(server, infer_request()))


def test_percent_encoded_model_names(server):
    """The path is percent-decoded once (`%2B` is `+`, `%20` a space,
    `%69dent` `ident`), a `+` stays a plus (not form encoding), and a
    decoded `/` is refused 400 (SERVING.md "Paths and file bounds").
    tritonserver 2.51 does not decode the path: `a%2Bb` (as tritonclient
    quotes `a+b`), `a%20b` and `%61ffine` are 404 "Request for unknown
    model: 'a%2Bb'", `affine%2F1` 404; `a+b` is found; and a model folder
    named `a b` aborted its start."""
    for path, name in (("a%2Bb", "a+b"), ("a+b", "a+b"), ("a%20b", "a b"), ("%61ffine", "affine")):
        r = one(server, infer_request(f"/v2/models/{path}/infer"))
        assert_answer(r)
        assert r.json()["model_name"] == name
        r = one(server, request("GET", f"/v2/models/{path}", [("Connection", "close")]))
        assert r.status == 200 and r.json()["name"] == name
    r = one(server, request("GET", "/v2/models/affine%2F1", [("Connection", "close")]))
    assert r.status == 400 and "not a folder name" in error(r)
    r = one(server, request("GET", "/v2/models/a b", [("Connection", "close")]))
    assert r.status == 400


@pytest.mark.parametrize("method,path", [
    ("GET", "/v2/models/affine/"), ("GET", "/v2/health/ready/"), ("GET", "/v2/"), ("GET", "/v2/models//affine"),
    ("GET", "//v2/models/affine"), ("GET", "/v2/models/affine/versions/1/"), ("GET", "/V2/models/affine"),
    ("POST", "/v2/models/affine/infer/"), ("GET", "/nope"), ("POST", "/v2/models/affine/nope"),
])
def test_trailing_slashes_and_unknown_routes_are_404_in_json(server, method, path):
    """A trailing slash, a doubled slash, `/V2` and unknown routes are 404
    with an `{"error": ...}` JSON body naming the path. tritonserver 2.51:
    404 for each, its body `{"error":"Not Found"}` labelled text/plain."""
    r = one(server, request(method, path, [("Connection", "close"), ("Content-Length", "0")]))
    assert r.status == 404
    assert path in error(r)
    assert int(r.header("content-length")) == len(r.body)


def test_query_strings_are_ignored(server):
    """`?x=1&y` on metadata, readiness, inference and server metadata is
    ignored. tritonserver 2.51: the same."""
    assert one(server, request("GET", "/v2/models/affine?x=1", [("Connection", "close")])).json()["name"] == "affine"
    assert one(server, request("GET", "/v2/models/affine/ready?x=1&y", [("Connection", "close")])).status == 200
    assert one(server, request("GET", "/v2?", [("Connection", "close")])).json()["name"]
    assert_answer(one(server, infer_request("/v2/models/affine/infer?a=b")))


# ---------------------------------------------------------------- methods, Content-Type, Content-Length

GET_ROUTES = ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/affine", "/v2/models/affine/ready",
              "/v2/models/affine/config", "/v2/models/affine/stats", "/v2/models/stats", "/v2/logging",
              "/v2/trace/setting", "/v2/systemsharedmemory/status"]
POST_ROUTES = ["/v2/models/affine/infer", "/v2/models/affine/generate", "/v2/repository/index",
               "/v2/repository/models/affine/load"]


def test_head_answers_a_get_routes_headers_without_a_body(server):
    """HEAD on a GET route answers GET's status and headers, Content-Length
    included, and no body (RFC 9110 9.3.2); HEAD on a POST-only route is
    405. tritonserver 2.51 answers every HEAD 405 `{"error":"Method Not
    Allowed"}`."""
    for path in GET_ROUTES:
        if path.endswith("stats"):
            continue  # the statistics change as other tests run
        got = parse(exchange(server, request("HEAD", path, [("Connection", "close")])), head_request=True)
        assert len(got) == 1 and got[0].status == 200, path
        g = one(server, request("GET", path, [("Connection", "close")]))
        assert got[0].header("content-length") == g.header("content-length") == str(len(g.body)), path
        assert got[0].header("content-type") == g.header("content-type"), path
    for path in POST_ROUTES:
        got = parse(exchange(server, request("HEAD", path, [("Connection", "close")])), head_request=True)
        assert got[0].status == 405 and got[0].header("allow") == "POST", path


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE", "PATCH", "FOO"])
def test_other_methods_are_405_with_allow(server, method):
    """OPTIONS, PUT, DELETE, PATCH and an unknown method on a known route
    are 405 with an `Allow` header listing its methods (RFC 9110 15.5.6),
    and 404 on an unknown route. tritonserver 2.51: 405 for each known
    route (no Allow header; its body `{"error":"Method Not Allowed"}`,
    text/plain on some routes), 404 on an unknown one. FROM_TRITON.md lists
    anemone's 405 without a body for `GET .../infer`; it is the same on
    every route."""
    h = [("Connection", "close"), ("Content-Length", "0")]
    for path in GET_ROUTES + POST_ROUTES:
        r = one(server, request(method, path, h))
        assert r.status == 405, path
        allow = set(r.header("allow").split(","))
        assert allow == ({"POST"} if path in POST_ROUTES else
                         {"GET", "HEAD", "POST"} if path in ("/v2/logging", "/v2/trace/setting") else {"GET", "HEAD"}), path
    r = one(server, request(method, "/nope", h))
    assert r.status == 404 and "/nope" in error(r)


def test_content_type_and_length_of_every_answer(server):
    """Every answer has a Content-Length equal to its body (except the
    event stream, chunked); JSON answers (metadata, config, statistics,
    index, errors of every route) are application/json, a binary inference
    answer application/octet-stream, the health and readiness answers the
    Open Inference Protocol's JSON (`{"live": true}`, `{"ready": true}`,
    `{"name": m, "ready": true}`, which KServe's clients read), /metrics (on the HTTP port too, SERVING.md) is Prometheus
    text, generate_stream text/event-stream. tritonserver 2.51: the same
    types, except that its errors on inference and readiness (a 404, a
    400) are labelled text/plain though their body is the same JSON, its
    health answers are an empty text/plain, `generate` is sent chunked,
    and /metrics is 404 on its HTTP port."""
    def check(r, ctype):
        assert r.header("content-type") == ctype, (r.status, r.headers)
        assert int(r.header("content-length")) == len(r.body)

    for path in ["/v2", "/v2/models/affine", "/v2/models/affine/config", "/v2/models/stats", "/v2/logging",
                 "/v2/trace/setting", "/v2/systemsharedmemory/status"]:
        r = one(server, request("GET", path, [("Connection", "close")]))
        assert r.status == 200
        check(r, "application/json")
        r.json()
    for path, body in [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True}),
                       ("/v2/models/affine/ready", {"name": "affine", "ready": True})]:
        r = one(server, request("GET", path, [("Connection", "close")]))
        assert r.status == 200
        check(r, "application/json")
        assert r.json() == body
    r = one(server, request("POST", "/v2/repository/index", [("Connection", "close"), ("Content-Length", "0")]))
    check(r, "application/json")
    assert {m["name"] for m in r.json()} == set(MODELS)
    r = one(server, request("GET", "/metrics", [("Connection", "close")]))
    assert r.status == 200 and r.header("content-type").startswith("text/plain")
    assert int(r.header("content-length")) == len(r.body)
    r = one(server, infer_request())
    check(r, "application/json")
    head = json.dumps({"inputs": [{"name": "IN", "shape": [2], "datatype": "FP32", "data": X.tolist()}],
                       "parameters": {"binary_data_output": True}}).encode()
    r = one(server, infer_request(body=head))
    check(r, "application/octet-stream")
    np.testing.assert_array_equal(outputs(r), expected())
    # Errors: 400, 404 (model and route), 503 (load in mode none), generate's 400.
    for req in (infer_request(body=b"{x}"), infer_request("/v2/models/nope/infer"),
                request("GET", "/v2/models/nope/ready", [("Connection", "close")]),
                request("POST", "/v2/repository/models/affine/load", [("Connection", "close"), ("Content-Length", "0")]),
                infer_request("/v2/models/affine/generate", body=b"")):
        r = one(server, req)
        assert r.status in (400, 404, 503), r.status
        check(r, "application/json")
        assert error(r)
    body = json.dumps({"IN": X.tolist()}).encode()
    r = one(server, infer_request("/v2/models/affine/generate", body=body))
    check(r, "application/json")
    np.testing.assert_array_equal(np.array(r.json()["OUT"], np.float32), expected())
    r = one(server, infer_request("/v2/models/affine/generate_stream", body=body))
    assert r.status == 200 and r.header("content-type") == "text/event-stream; charset=utf-8"
    event = json.loads(r.body.decode().strip().removeprefix("data: "))
    np.testing.assert_array_equal(np.array(event["OUT"], np.float32), expected())


# ---------------------------------------------------------------- clients that go away


def test_a_client_that_closes_mid_body_leaves_no_trace(server):
    """A client that sends half its body and closes: nothing is run or
    counted, and the server serves on. tritonserver 2.51: the same (its
    statistics unchanged)."""
    before = stats(server, "affine")
    for _ in range(5):
        s = socket.create_connection(server, timeout=5)
        s.sendall(infer_request(body=BODY)[:-30])
        s.close()
    s = socket.create_connection(server, timeout=5)
    s.sendall(request("POST", "/v2/models/affine/infer", [("Transfer-Encoding", "chunked")], chunked(BODY)[:40]))
    s.close()
    time.sleep(0.3)
    after = stats(server, "affine")
    for key in ("inference_count", "execution_count"):
        assert after[key] == before[key], key
    for key in ("success", "fail"):
        assert after["inference_stats"][key]["count"] == before["inference_stats"][key]["count"], key
    assert_answer(one(server, infer_request()))


def test_a_request_whose_client_left_during_execution_is_counted(server):
    """A client that sends a whole request to `slow` (0.6 s) and closes
    after 0.2 s, while the model runs: the engine call runs to its end (both
    servers). tritonserver 2.51 then counts it as any other request:
    success +1, inference_count +1, execution_count +1. SERVING.md: each
    `inference_stats` entry is "over requests", and `inference_count` the
    rows the engine calls answered; a request counted there must be a
    success or a failure."""
    before = stats(server, "slow")
    s = socket.create_connection(server, timeout=5)
    s.sendall(infer_request("/v2/models/slow/infer", close=False))
    time.sleep(0.2)
    s.close()
    deadline = time.time() + 10
    while stats(server, "slow")["execution_count"] == before["execution_count"]:
        assert time.time() < deadline, "the engine call never ended"
        time.sleep(0.1)
    time.sleep(0.2)
    after = stats(server, "slow")
    assert after["inference_count"] == before["inference_count"] + 1
    counted = sum(after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"] for k in ("success", "fail"))
    assert counted == 1, after["inference_stats"]
