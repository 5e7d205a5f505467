"""Request headers forwarded to the model as request parameters
(`--http-header-forward-pattern`, `--grpc-header-forward-pattern`), as
Triton's `qa/L0_parameters/parameters_test.py` (test_headers,
test_grpc_header_forward_pattern_case_sensitive,
test_headers_reserved_rejected) sends them, and as a user meets them: the
header beside a parameter of its name, a value that is not text, a pattern
that is not a regular expression.

The model is the QA's `parameter` (a Python model answering its request's
parameters as `key` and `value` strings) and its ensemble, from
test_triton_qa_protocol.py. tritonserver 2.51 (CPU, Python backend) ran the
same requests on 2026-12-07; each docstring says what it answered. Where
anemone differs, docs/FROM_TRITON.md says so: names reach the model in
lowercase, a header named as a reserved parameter is refused (as Triton
since 2.69; 2.51 forwarded it), and a value that is not UTF-8 is refused
with 400 (2.51 passed it on and the model failed with 500).
"""
import asyncio
import http.client
import json
import queue
import subprocess

import numpy as np
import pytest
import requests
from serve_support import start_serve, stop_serve, wait_ready
from test_triton_qa_protocol import RESERVED, write_repository

# qa/L0_parameters/parameters_test.py's _FORWARD_HEADERS
FORWARD_HEADERS = {
    "header_1": "value_1",
    "header_2": "value_2",
    "my_header_1": "my_value_1",
    "my_header_2": "my_value_2",
    "my_header_3": 'This is a "quoted" string with a backslash\\ ',
}
MY_HEADERS = {k: v for k, v in FORWARD_HEADERS.items() if k.startswith("my_")}
BODY = {"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1.0]}]}


class Server:
    def __init__(self, http, grpc):
        self.http, self.grpc = http, grpc

    def infer_url(self, model="parameter"):
        return f"http://{self.http}/v2/models/{model}/infer"


def _served_with(*flags, doc):
    """A module-scoped fixture: a server of the QA models started with `flags`."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        repo = write_repository(tmp_path_factory.mktemp("header_forwarding"), {"parameter", "identity", "ensemble"})
        proc, addresses = start_serve(repo, *flags)
        wait_ready(addresses["HTTP"])
        yield Server(addresses["HTTP"], addresses["gRPC"])
        stop_serve(proc)
    fixture.__doc__ = doc
    return fixture


# qa/L0_parameters/test.sh's servers, and one without a pattern.
my_headers = _served_with("--grpc-header-forward-pattern", "MY_HEADER.*", "--http-header-forward-pattern", "MY_HEADER.*",
                          doc="qa/L0_parameters/test.sh for test_headers.")
case_sensitive = _served_with("--grpc-header-forward-pattern", "(?-i)MY_HEADER.*",
                              doc="qa/L0_parameters/test.sh for test_grpc_header_forward_pattern_case_sensitive.")
every_header = _served_with("--grpc-header-forward-pattern", ".*", "--http-header-forward-pattern", ".*",
                            doc="qa/L0_parameters/test.sh for test_headers_reserved_rejected (`.*` on both).")
no_pattern = _served_with(doc="No pattern: anemone's default, and Triton's.")


def _pairs(result):
    keys = result.as_numpy("key").astype(str).tolist()
    values = result.as_numpy("value").astype(str).tolist()
    return dict(zip(keys, values))


def _inputs(client_module):
    inputs = [client_module.InferInput("INPUT0", [1], "FP32")]
    inputs[0].set_data_from_numpy(np.asarray([1], dtype=np.float32))
    return inputs


def _raw(server, headers, parameters=None, model="parameter"):
    body = dict(BODY, **({"parameters": parameters} if parameters else {}))
    return requests.post(server.infer_url(model), json=body, headers=headers, timeout=60)


def _raw_pairs(response):
    assert response.status_code == 200, response.text
    out = {o["name"]: o["data"] for o in response.json()["outputs"]}
    return dict(zip(out["key"], out["value"]))


def _every_client(server, headers, parameters=None):
    """What the model saw through each of Triton's clients: HTTP and gRPC,
    sync, async_infer, asyncio, a gRPC stream (the headers at its start),
    and the ensemble over HTTP; one dict per way, by name."""
    import tritonclient.grpc as grpcclient
    import tritonclient.grpc.aio as agrpcclient
    import tritonclient.http as httpclient
    import tritonclient.http.aio as ahttpclient

    parameters = parameters or {}
    seen = {}
    http = httpclient.InferenceServerClient(server.http)
    grpc = grpcclient.InferenceServerClient(server.grpc)
    try:
        seen["http"] = _pairs(http.infer("parameter", _inputs(httpclient), parameters=parameters,
                                         headers=dict(headers)))
        seen["grpc"] = _pairs(grpc.infer("parameter", _inputs(grpcclient), parameters=parameters,
                                         headers=dict(headers)))
        seen["http async_infer"] = _pairs(http.async_infer(
            "parameter", _inputs(httpclient), parameters=parameters, headers=dict(headers)).get_result())
        done = queue.Queue()
        grpc.async_infer("parameter", _inputs(grpcclient), parameters=parameters, headers=dict(headers),
                         callback=lambda result, error: done.put(error or result))
        seen["grpc async_infer"] = _pairs(done.get(timeout=30))

        async def aio():
            async with ahttpclient.InferenceServerClient(server.http) as ah:
                seen["http asyncio"] = _pairs(await ah.infer(
                    "parameter", _inputs(httpclient), parameters=parameters, headers=dict(headers)))
            async with agrpcclient.InferenceServerClient(server.grpc) as ag:
                seen["grpc asyncio"] = _pairs(await ag.infer(
                    "parameter", _inputs(grpcclient), parameters=parameters, headers=dict(headers)))
        asyncio.run(aio())

        grpc.start_stream(callback=lambda result, error: done.put(error or result), headers=dict(headers))
        grpc.async_stream_infer("parameter", _inputs(grpcclient), parameters=parameters)
        seen["grpc stream"] = _pairs(done.get(timeout=30))
        grpc.stop_stream()
        seen["ensemble"] = _pairs(http.infer("ensemble", _inputs(httpclient), parameters=parameters,
                                             headers=dict(headers)))
    finally:
        http.close()
        grpc.close()
    return seen


def _without_clients_own(seen):
    """`seen` less the headers the clients add themselves (user-agent and
    the like), which `.*` forwards too."""
    return {way: {k: v for k, v in pairs.items() if k.startswith(("my_", "header_", "key"))}
            for way, pairs in seen.items()}


def test_headers(my_headers):
    """parameters_test.py test_headers: with `MY_HEADER.*` on both
    protocols, the three `my_header_*` headers (one with quotes and a
    backslash) reach the model through every client and the ensemble, and
    `header_1`, `header_2` do not. tritonserver 2.51: the same three, with
    the parameters the request gave."""
    seen = _every_client(my_headers, FORWARD_HEADERS)
    assert seen == {way: _as_sent(way, MY_HEADERS) for way in seen}, seen
    assert len(seen) == 8
    parameters = {"key1": "value1", "key2": 2}
    with_parameters = _every_client(my_headers, FORWARD_HEADERS, parameters)
    expected = dict(MY_HEADERS, key1="value1", key2="2")
    assert with_parameters == {way: _as_sent(way, expected) for way in with_parameters}, with_parameters


def _as_sent(way, headers):
    """`headers` as the model sees them through `way`: over HTTP a value
    without its trailing whitespace (`my_header_3` ends with a space), which
    HTTP/1.1 says is not part of a field's value (RFC 9110 5.5) and which
    anemone's parser drops; tritonserver 2.51 keeps it. gRPC keeps it."""
    if way.startswith("grpc"):
        return headers
    return {k: v.rstrip(" \t") for k, v in headers.items()}


def test_grpc_header_forward_pattern_case_sensitive(case_sensitive):
    """parameters_test.py test_grpc_header_forward_pattern_case_sensitive:
    `(?-i)MY_HEADER.*` heeds case, and gRPC metadata names are lowercase,
    so nothing is forwarded (and HTTP, with no pattern, forwards nothing).
    tritonserver 2.51: no parameter at all, by every client."""
    seen = _every_client(case_sensitive, FORWARD_HEADERS)
    assert seen == {way: {} for way in seen}, seen
    assert len(seen) == 8


def test_headers_reserved_rejected(every_header):
    """parameters_test.py test_headers_reserved_rejected: with `.*`, a
    header named as a reserved parameter (`priority`, `timeout`,
    `sequence_id`, ..., `triton_*`) fails its request with 400 /
    INVALID_ARGUMENT "reserved for Triton usage", raw and through every
    client, and the server goes on serving. tritonserver 2.51 forwarded
    them to the model (the check is Triton's since 2.69, whose QA this
    is)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    http = httpclient.InferenceServerClient(every_header.http)
    grpc = grpcclient.InferenceServerClient(every_header.grpc)
    try:
        for key in RESERVED:
            r = _raw(every_header, {key: "dummy-value"})
            assert r.status_code == 400, (key, r.text)
            assert f"Header '{key}' is reserved for Triton usage" in r.json()["error"]
            for module, client in ((httpclient, http), (grpcclient, grpc)):
                with pytest.raises(InferenceServerException, match="reserved for Triton usage") as e:
                    client.infer("parameter", _inputs(module), headers={key: "dummy-value"})
                if module is grpcclient:
                    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
                else:
                    assert e.value.status() == "400"
        # Nothing else is lost.
        assert _pairs(grpc.infer("parameter", _inputs(grpcclient), headers={"my_header_1": "v"}))["my_header_1"] == "v"
    finally:
        http.close()
        grpc.close()


def test_every_header_reaches_the_model_as_triton_forwards_them(every_header):
    """`.*` forwards every header of the request, in lowercase: over HTTP
    host, content-type, content-length and the client's own; over gRPC the
    caller's metadata and user-agent but not the transport's (te,
    content-type, grpc-*). tritonserver 2.51: the same names over gRPC
    (`user-agent` and the caller's), and over HTTP the same headers with
    the case the client wrote (`Host`, `Content-Type`, `X-Custom`)."""
    got = _raw_pairs(_raw(every_header, {"X-Custom": "abc", "User-Agent": "probe/1"}))
    assert got["x-custom"] == "abc" and got["user-agent"] == "probe/1"
    assert got["host"] == every_header.http
    assert got["content-type"] == "application/json"
    assert int(got["content-length"]) > 0
    assert all(k == k.lower() for k in got), got

    import tritonclient.grpc as grpcclient
    grpc = grpcclient.InferenceServerClient(every_header.grpc)
    try:
        got = _pairs(grpc.infer("parameter", _inputs(grpcclient), headers={"x-custom": "abc"}))
    finally:
        grpc.close()
    assert set(got) == {"x-custom", "user-agent"}, got
    assert got["user-agent"].startswith("grpc-python")


def test_a_header_wins_over_a_parameter_of_its_name(every_header):
    """A header and a body parameter of one name: the model sees the
    header's value (it is added after the request's own parameters), over
    HTTP and gRPC. tritonserver 2.51: the same ('fromheader' both ways)."""
    got = _raw_pairs(_raw(every_header, {"my_header_1": "fromheader"}, {"my_header_1": "frombody"}))
    assert got["my_header_1"] == "fromheader"
    import tritonclient.grpc as grpcclient
    grpc = grpcclient.InferenceServerClient(every_header.grpc)
    try:
        got = _pairs(grpc.infer("parameter", _inputs(grpcclient), headers={"my_header_1": "fromheader"},
                                parameters={"my_header_1": "frombody"}))
    finally:
        grpc.close()
    assert got["my_header_1"] == "fromheader"


def _post_with_raw_header(server, name, value: bytes, repeat=None):
    data = json.dumps(BODY).encode()
    c = http.client.HTTPConnection(*server.http.rsplit(":", 1), timeout=30)
    c.putrequest("POST", "/v2/models/parameter/infer")
    c.putheader("Content-Type", "application/json")
    c.putheader("Content-Length", str(len(data)))
    c.putheader(name, value)
    if repeat is not None:
        c.putheader(name, repeat)
    c.endheaders()
    c.send(data)
    r = c.getresponse()
    try:
        return r.status, json.loads(r.read())
    finally:
        c.close()


def test_a_value_that_is_not_text_is_refused_naming_the_header(my_headers):
    """A matched header whose value is not UTF-8 (HTTP's obs-text, a gRPC
    `-bin` entry's bytes) gets 400 / INVALID_ARGUMENT naming it, and the
    next request is served. tritonserver 2.51 passed the bytes on and the
    model's `json.loads(request.parameters())` failed: 500 with a
    UnicodeDecodeError."""
    status, body = _post_with_raw_header(my_headers, "my_header_9", b"\xff\xfe")
    assert status == 400, body
    assert "header 'my_header_9' is not UTF-8 text" in body["error"]
    # A header the pattern does not match is never looked at.
    status, body = _post_with_raw_header(my_headers, "other", b"\xff\xfe")
    assert status == 200, body
    # A repeated header: each value is forwarded, the last one winning, as in Triton.
    status, body = _post_with_raw_header(my_headers, "my_header_d", b"one", repeat=b"two")
    assert status == 200, body
    out = {o["name"]: o["data"] for o in body["outputs"]}
    assert dict(zip(out["key"], out["value"])) == {"my_header_d": "two"}

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    grpc = grpcclient.InferenceServerClient(my_headers.grpc)
    try:
        # A binary entry: forwarded as its decoded bytes when they are text.
        got = _pairs(grpc.infer("parameter", _inputs(grpcclient), headers={"my_header_b-bin": b"decoded"}))
        assert got == {"my_header_b-bin": "decoded"}
        with pytest.raises(InferenceServerException, match="header 'my_header_b-bin' is not UTF-8 text") as e:
            grpc.infer("parameter", _inputs(grpcclient), headers={"my_header_b-bin": b"\xff"})
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert _pairs(grpc.infer("parameter", _inputs(grpcclient), headers={"my_header_1": "ok"})) == \
            {"my_header_1": "ok"}
    finally:
        grpc.close()


def test_without_a_pattern_no_header_reaches_the_model(no_pattern):
    """By default (Triton's too) no header is forwarded, and a header named
    as a reserved parameter is just a header."""
    seen = _every_client(no_pattern, dict(FORWARD_HEADERS, priority="u=1"))
    assert seen == {way: {} for way in seen}, seen
    got = _raw_pairs(_raw(no_pattern, {"my_header_1": "x", "timeout": "1"}, {"key1": "v"}))
    assert got == {"key1": "v"}


def test_patterns_from_the_environment_and_bad_ones(tmp_path):
    """The flags' environment variables work as the flags; a pattern that
    is not a regular expression stops the start with status 2, naming the
    flag and the pattern; an empty one forwards nothing (Triton's
    default)."""
    import os
    from pathlib import Path

    binary = Path(os.environ.get("ANEMONE_BIN", Path(__file__).resolve().parents[2] / "target/debug/anemone"))
    repo = tmp_path / "repo"
    repo.mkdir()
    for flag in ("--http-header-forward-pattern", "--grpc-header-forward-pattern"):
        p = subprocess.run([str(binary), "serve", "--model-repository", str(repo), "--http-port", "0",
                            "--grpc-port", "0", flag, "x-(unclosed"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert f'{flag} "x-(unclosed" is not a regular expression' in p.stderr, p.stderr

    proc, addresses = start_serve(write_repository(tmp_path / "models", {"parameter"}),
                                  env={"ANEMONE_HTTP_HEADER_FORWARD_PATTERN": "^x-tenant$",
                                       "ANEMONE_GRPC_HEADER_FORWARD_PATTERN": ""})
    try:
        wait_ready(addresses["HTTP"])
        server = Server(addresses["HTTP"], addresses["gRPC"])
        assert _raw_pairs(_raw(server, {"X-Tenant": "acme", "X-Tenant-Id": "7"})) == {"x-tenant": "acme"}
        import tritonclient.grpc as grpcclient
        grpc = grpcclient.InferenceServerClient(server.grpc)
        try:
            assert _pairs(grpc.infer("parameter", _inputs(grpcclient), headers={"x-tenant": "acme"})) == {}
        finally:
            grpc.close()
        settings = requests.get(f"http://{server.http}/v2/anemone/config", timeout=30).json()["settings"]
        shown = {s["key"]: (s["value"], s["source"]) for s in settings if "forward" in s["key"]}
        assert shown == {"http-header-forward-pattern": ("^x-tenant$", "env"),
                         "grpc-header-forward-pattern": ("", "env")}, shown
    finally:
        stop_serve(proc)
