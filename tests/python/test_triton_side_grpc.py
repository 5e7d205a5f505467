"""gRPC transport edges compared side by side with tritonserver 2.51 (the CPU
wheel, Python backend; each model.py starts with the TPEER_SP lines so the
same file ran on both): compression both ways, message size limits,
deadlines and cancellation, metadata, the health and reflection services,
unknown methods, raw and typed contents mixed, streams with interleaved
errors, keep-alive pings and many channels. What Triton answered is in each
test's docstring; the tests run against anemone only.

Models: `add` (FP32 OUT0 = IN0 + IN1, OUT1 = IN0 - IN1), `echo` (UINT8
identity), `big` (N: an UINT8 answer of N bytes, i % 251), `int` (INT32 S =
A + B), `slow` (OUT = 2 * IN after MS milliseconds, polling
`request.is_cancelled()` every 10 ms and logging what it saw to
events.log in its folder), `dec` (decoupled: N responses IDX = i, MS
milliseconds apart, from a thread; stops when `is_cancelled()`, logging it;
a request whose id starts with `err` gets an error response at i = 7).
"""
import shutil
import socket
import struct
import subprocess
import threading
import time
import zlib
import gzip
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from tritonclient.grpc import service_pb2, service_pb2_grpc

HEAD = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
import json, threading, time
'''
ADD_CFG = '''backend: "python"
max_batch_size: 0
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "IN1" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "OUT1" data_type: TYPE_FP32 dims: [ -1 ] } ]
'''
ADD = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        res = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "IN0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "IN1").as_numpy()
            res.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT0", (a + b).astype(np.float32)),
                                                   pb_utils.Tensor("OUT1", (a - b).astype(np.float32))]))
        return res
'''
ECHO_CFG = '''backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_UINT8 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_UINT8 dims: [ -1 ] } ]
'''
ECHO = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        res = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            res.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x.copy())]))
        return res
'''
BIG_CFG = '''backend: "python"
max_batch_size: 0
input [ { name: "N" data_type: TYPE_INT64 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_UINT8 dims: [ -1 ] } ]
'''
BIG = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        res = []
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "N").as_numpy()[0])
            res.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (np.arange(n) % 251).astype(np.uint8))]))
        return res
'''
INT_CFG = '''backend: "python"
max_batch_size: 0
input [ { name: "A" data_type: TYPE_INT32 dims: [ -1 ] }, { name: "B" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "S" data_type: TYPE_INT32 dims: [ -1 ] } ]
'''
INT = HEAD + '''
class TritonPythonModel:
    def execute(self, requests):
        res = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "A").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "B").as_numpy()
            res.append(pb_utils.InferenceResponse([pb_utils.Tensor("S", (a + b).astype(np.int32))]))
        return res
'''
SLOW_CFG = '''backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "MS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
'''
LOG = '''
def log(args_dir, line):
    with open(os.path.join(args_dir, "events.log"), "a") as f:
        f.write(line + "\\n")
'''
SLOW = HEAD + LOG + '''
class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
    def execute(self, requests):
        res = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            ms = int(pb_utils.get_input_tensor_by_name(r, "MS").as_numpy()[0])
            rid = r.request_id()
            log(self.dir, "start " + rid)
            t0 = time.time()
            seen = False
            while (time.time() - t0) * 1000 < ms:
                if r.is_cancelled():
                    seen = True
                    log(self.dir, "cancelled %s %d" % (rid, (time.time() - t0) * 1000))
                    break
                time.sleep(0.01)
            log(self.dir, "end " + rid)
            if seen:
                res.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)))
            else:
                res.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", (x * 2).astype(np.float32))]))
        return res
'''
DEC_CFG = '''backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "MS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "IDX" data_type: TYPE_INT32 dims: [ 1 ] } ]
'''
DEC = HEAD + LOG + '''
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
    def execute(self, requests):
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "N").as_numpy()[0])
            ms = int(pb_utils.get_input_tensor_by_name(r, "MS").as_numpy()[0])
            s = r.get_response_sender()
            rid = r.request_id()
            def run(s=s, n=n, ms=ms, rid=rid):
                log(self.dir, "start " + rid)
                for i in range(n):
                    if s.is_cancelled():
                        log(self.dir, "cancelled %s %d" % (rid, i))
                        s.send(flags=FINAL)
                        return
                    if n < 0 or i == 7 and rid.startswith("err"):
                        s.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("seven")))
                    else:
                        s.send(pb_utils.InferenceResponse([pb_utils.Tensor("IDX", np.array([i], np.int32))]))
                    time.sleep(ms / 1000.0)
                log(self.dir, "end " + rid)
                s.send(flags=FINAL)
            threading.Thread(target=run).start()
        return None
'''

MODELS = {"add": (ADD_CFG, ADD), "echo": (ECHO_CFG, ECHO), "big": (BIG_CFG, BIG), "int": (INT_CFG, INT),
          "slow": (SLOW_CFG, SLOW), "dec": (DEC_CFG, DEC)}

LIMIT = 100_000  # --max-request-bytes of the `small` server


def serve(tmp_path_factory, name, *flags):
    repo = python_repository(tmp_path_factory.mktemp(name),
                             models=[(m, cfg, src) for m, (cfg, src) in MODELS.items()])
    proc, addresses = start_serve(repo, *flags)
    wait_ready(addresses["HTTP"])
    addresses["repo"] = repo
    return proc, addresses


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, addresses = serve(tmp_path_factory, "grpc_side")
    try:
        yield addresses
    finally:
        stop_serve(proc)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A server with a 100,000-byte message limit, compressed inference
    answers (level high) and keep-alive pings every 200 ms."""
    proc, addresses = serve(tmp_path_factory, "grpc_side_small", "--max-request-bytes", str(LIMIT),
                            "--grpc-infer-response-compression-level", "high",
                            "--grpc-keepalive-time", "200", "--grpc-keepalive-timeout", "2000")
    try:
        yield addresses
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- helpers

def stub(server, **options):
    channel = grpc.insecure_channel(server["gRPC"], options=list(options.items()))
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def request(model, inputs, rid=""):
    """A ModelInferRequest with raw contents: inputs as (name, datatype, array)."""
    r = service_pb2.ModelInferRequest(model_name=model, id=rid)
    for name, datatype, a in inputs:
        t = r.inputs.add()
        t.name, t.datatype = name, datatype
        t.shape.extend(a.shape)
        r.raw_input_contents.append(a.tobytes())
    return r


def add_request(a, b, rid=""):
    return request("add", [("IN0", "FP32", a), ("IN1", "FP32", b)], rid)


def slow_request(ms, rid):
    return request("slow", [("IN", "FP32", np.arange(3, dtype=np.float32)), ("MS", "INT32", np.array([ms], np.int32))], rid)


def dec_request(n, ms, rid):
    return request("dec", [("N", "INT32", np.array([n], np.int32)), ("MS", "INT32", np.array([ms], np.int32))], rid)


def outputs(response, dtype):
    return [np.frombuffer(raw, dtype) for raw in response.raw_output_contents]


def status(call):
    """(code, details) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def events(server, model):
    path = server["repo"] / model / "events.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate, seconds=5.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def inference_counts(server, model):
    stats = grpcclient.InferenceServerClient(server["gRPC"]).get_inference_statistics(model, as_json=True)
    s = stats["model_stats"][0]["inference_stats"]
    return {k: int(s[k].get("count", 0)) for k in ("success", "fail")}


IDENTITY = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)


def pb_string(field, text):
    """A protobuf string field, by hand (the health and reflection messages
    are not among tritonclient's stubs)."""
    data = text.encode()
    return bytes([field << 3 | 2, len(data)]) + data


SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def frame(message, compressed=0):
    return bytes([compressed]) + struct.pack(">I", len(message)) + message


def raw_call(server, path, body, headers=()):
    """A gRPC call over HTTP/2 by curl: (response headers and trailers as
    lower-case (name, value) pairs, the body's bytes)."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is needed for raw HTTP/2 calls")
    cmd = [curl, "-s", "--http2-prior-knowledge", "-X", "POST", f"http://{server['gRPC']}{path}",
           "-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "@-", "-D", "-", "-o", "-"]
    for h in headers:
        cmd += ["-H", h]
    if "HTTP2" not in subprocess.run([curl, "-V"], capture_output=True, text=True).stdout:
        pytest.skip("this curl was built without HTTP/2 (curl -V lists no HTTP2)")
    for _ in range(5):
        done = subprocess.run(cmd + ["-S"], input=body, capture_output=True, timeout=30)
        # curl 7.88 drops a whole answer (exit 92, nothing written) when the
        # server resets the stream with NO_ERROR after answering, before curl
        # has sent all of the request: RFC 9113 section 8.1 allows the server
        # that (a server answering an error before reading the body does);
        # test_an_unknown_grpc_encoding_... checks the server's frames.
        if not (done.returncode == 92 and not done.stdout):
            break
    head, _, rest = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    # An HTTP/2 curl that got no HTTP/2 answer is the server's failure.
    assert lines[0].startswith("HTTP/2"), (done.returncode, lines[0], done.stderr.decode(errors="replace"))
    # curl writes the trailers after the body, as headers again.
    pairs = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
    if b"grpc-status" in rest:
        body_bytes, _, trailers = rest.rpartition(b"grpc-status")
        trailers = (b"grpc-status" + trailers).decode(errors="replace").split("\r\n")
        pairs += [tuple(x.strip() for x in l.split(":", 1)) for l in trailers if ":" in l]
        rest = body_bytes
    return [(k.lower(), v) for k, v in pairs], rest


def header(pairs, name):
    values = [v for k, v in pairs if k == name]
    return values[0] if values else None


def unframe(body, encoding):
    """The message of a one-message gRPC body, decompressed by `encoding`."""
    flag, length = body[0], struct.unpack(">I", body[1:5])[0]
    data = body[5:5 + length]
    assert len(data) == length
    if flag == 0:
        return data
    return {"gzip": gzip.decompress, "deflate": zlib.decompress}[encoding](data)


# ---------------------------------------------------------------- compression

@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_gzip_and_deflate_requests_are_answered_as_plain_ones(server, compression):
    """SERVING.md gRPC: "Requests may be compressed with gzip or deflate
    (`grpc-encoding`...), as Triton accepts them"; "Answers are not
    compressed, as Triton's are not by default". tritonserver 2.51 answers
    both encodings (grpcio's channel compression and tritonclient's
    `compression_algorithm`) with the sums, uncompressed."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    _, s = stub(server)
    response = s.ModelInfer(add_request(a, b), compression=compression, timeout=20)
    got = outputs(response, np.float32)
    np.testing.assert_array_equal(got[0], a + b)
    np.testing.assert_array_equal(got[1], a - b)
    algorithm = {grpc.Compression.Gzip: "gzip", grpc.Compression.Deflate: "deflate"}[compression]
    client = grpcclient.InferenceServerClient(server["gRPC"])
    inputs = [grpcclient.InferInput("IN0", [1000], "FP32"), grpcclient.InferInput("IN1", [1000], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add", inputs, compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("OUT0"), a + b)
    # Raw: a compressed request is answered uncompressed by default.
    for encoding, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        pairs, body = raw_call(server, "/inference.GRPCInferenceService/ModelInfer",
                               frame(pack(add_request(a, b).SerializeToString()), 1),
                               [f"grpc-encoding: {encoding}", "grpc-accept-encoding: identity, deflate, gzip"])
        assert header(pairs, "grpc-status") == "0", pairs
        assert header(pairs, "grpc-encoding") is None and body[0] == 0, pairs
        np.testing.assert_array_equal(outputs(service_pb2.ModelInferResponse.FromString(unframe(body, None)), np.float32)[0], a + b)


@pytest.mark.parametrize("accept,expected", [(None, None), ("identity", None), ("gzip", "gzip"), ("deflate", "deflate")])
def test_compressed_answers_use_the_one_encoding_the_client_accepts(small, accept, expected):
    """SERVING.md gRPC: with `--grpc-infer-response-compression-level` "an
    inference answer is compressed with gzip, or deflate ... and sent
    uncompressed to a client that lists neither". tritonserver 2.51 (levels
    low and high) answers `grpc-accept-encoding: gzip` with gzip, `deflate`
    with deflate, and `identity` or no header uncompressed."""
    x = (np.arange(5000) % 13).astype(np.uint8)
    headers = [f"grpc-accept-encoding: {accept}"] if accept else []
    pairs, body = raw_call(small, "/inference.GRPCInferenceService/ModelInfer",
                           frame(request("echo", [("IN", "UINT8", x)]).SerializeToString()), headers)
    assert header(pairs, "grpc-status") == "0", pairs
    assert header(pairs, "grpc-encoding") == expected, pairs
    assert body[0] == (expected is not None)
    response = service_pb2.ModelInferResponse.FromString(unframe(body, expected))
    np.testing.assert_array_equal(outputs(response, np.uint8)[0], x)


def test_the_high_level_picks_deflate_when_both_are_accepted_as_triton(small):
    """FROM_TRITON.md: `--grpc-infer-response-compression-level` "the same"
    and "Compressed ... answers ... are read and written as Triton does".
    tritonserver 2.51 started with level high answers a call that accepts
    `identity, deflate, gzip` (or `gzip, deflate`) with `grpc-encoding:
    deflate`; with level low, gzip. Its zlib level is the same at every
    level (a 78-byte answer is 77 bytes at low and high): grpc-core's
    level picks the algorithm only, not zlib's level 1, 6 or 9."""
    x = (np.arange(5000) % 13).astype(np.uint8)
    pairs, body = raw_call(small, "/inference.GRPCInferenceService/ModelInfer",
                           frame(request("echo", [("IN", "UINT8", x)]).SerializeToString()),
                           ["grpc-accept-encoding: identity, deflate, gzip"])
    assert header(pairs, "grpc-status") == "0", pairs
    encoding = header(pairs, "grpc-encoding")
    response = service_pb2.ModelInferResponse.FromString(unframe(body, encoding))
    np.testing.assert_array_equal(outputs(response, np.uint8)[0], x)
    assert encoding == "deflate", pairs


def test_tritonclient_reads_compressed_answers(small):
    """FROM_TRITON.md: compressed answers "read ... as Triton does"
    (tritonclient's channel lists both and decompresses). tritonserver 2.51
    at level high answers tritonclient with the same bytes."""
    client = grpcclient.InferenceServerClient(small["gRPC"])
    n = grpcclient.InferInput("N", [1], "INT64")
    n.set_data_from_numpy(np.array([60000], np.int64))
    got = client.infer("big", [n]).as_numpy("OUT")
    np.testing.assert_array_equal(got, (np.arange(60000) % 251).astype(np.uint8))


def test_an_unknown_grpc_encoding_is_unimplemented_listing_the_accepted_ones(server):
    """The gRPC spec: a message compressed with an encoding the server does
    not support is UNIMPLEMENTED, with `grpc-accept-encoding` listing those
    it does. tritonserver 2.51 resets the stream instead (HTTP/2
    RST_STREAM INTERNAL_ERROR: grpcio reports INTERNAL), and the server
    serves on; anemone answers the spec's status."""
    msg = add_request(np.ones(2, np.float32), np.ones(2, np.float32)).SerializeToString()
    pairs, body = raw_call(server, "/inference.GRPCInferenceService/ModelInfer", frame(msg, 1), ["grpc-encoding: snappy"])
    assert header(pairs, "grpc-status") == str(grpc.StatusCode.UNIMPLEMENTED.value[0]), pairs
    assert "snappy" in header(pairs, "grpc-message")
    assert {"gzip", "deflate"} <= {e.strip() for e in header(pairs, "grpc-accept-encoding").split(",")}, pairs
    # The answer comes before the request's body is read: the headers end
    # the stream, and a reset after them, if any, is NO_ERROR (RFC 9113
    # 8.1: the client must keep the answer), not an error that loses it.
    frames = h2_frames(server, "/inference.GRPCInferenceService/ModelInfer", [("grpc-encoding", "snappy")])
    assert frames[0][:2] == ("HEADERS", 1) and frames[0][2] & 1, frames  # END_STREAM
    assert all(f == ("RST_STREAM", 1, 0, 0) for f in frames[1:]), frames
    _, s = stub(server)
    assert s.ServerLive(service_pb2.ServerLiveRequest(), timeout=5).live


def h2_frames(server, path, headers):
    """The frames of stream 1 as (type, stream, flags, RST_STREAM's code or
    0) after a request's headers are sent by hand and its body never is
    (HPACK literals, no Huffman coding)."""
    def frame(kind, flags, stream, payload):
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def literal(name, value):
        return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()

    fields = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "anemone"),
              ("content-type", "application/grpc"), ("te", "trailers"), *headers]
    names = {1: "HEADERS", 3: "RST_STREAM"}

    def parse(data):
        frames, i = [], 0
        while i + 9 <= len(data):
            length, kind, flags = int.from_bytes(data[i:i + 3], "big"), data[i + 3], data[i + 4]
            stream = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
            payload = data[i + 9:i + 9 + length]
            if stream == 1:
                frames.append((names.get(kind, kind), stream, flags,
                               int.from_bytes(payload, "big") if kind == 3 else 0))
            i += 9 + length
        return frames

    host, port = server["gRPC"].rsplit(":", 1)
    data = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
                     + frame(1, 4, 1, b"".join(literal(k, v) for k, v in fields)))
        deadline = time.time() + 10
        sock.settimeout(0.5)
        while time.time() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                if parse(data):  # the answer is in; a reset would have followed at once
                    break
                continue
            if not chunk:
                break
            data += chunk
    return parse(data)


# ---------------------------------------------------------------- message sizes

def test_a_request_over_the_limit_is_resource_exhausted_naming_it(small):
    """RELIABILITY.md: a gRPC message over `--max-request-bytes` (64 MiB by
    default) is RESOURCE_EXHAUSTED `request body exceeds the N-byte limit
    (--max-request-bytes)`, as sent or once decompressed. tritonserver 2.51
    takes messages up to 2 GiB (it answered a 65 MiB `echo` whole) and has
    no such flag; past grpc-core's limit it answers RESOURCE_EXHAUSTED too."""
    _, s = stub(small)
    under = np.arange(LIMIT - 100, dtype=np.int64).astype(np.uint8)
    np.testing.assert_array_equal(outputs(s.ModelInfer(request("echo", [("IN", "UINT8", under)]), timeout=20), np.uint8)[0], under)
    over = np.zeros(LIMIT + 1, np.uint8)
    for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
        code, details = status(lambda: s.ModelInfer(request("echo", [("IN", "UINT8", over)]), compression=compression, timeout=20))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert details.startswith(f"request body exceeds the {LIMIT}-byte limit (--max-request-bytes)"), details


def test_an_answer_over_the_limit_is_resource_exhausted_and_a_stream_goes_on(small):
    """RELIABILITY.md: the limit holds "either direction": an answer over it
    is RESOURCE_EXHAUSTED saying so, and on a stream that request's error
    message, the next request answered. (tritonserver 2.51 sends answers
    up to 2 GiB; not comparable at this size.)"""
    _, s = stub(small, **{"grpc.max_receive_message_length": -1})
    code, details = status(lambda: s.ModelInfer(request("big", [("N", "INT64", np.array([2 * LIMIT]))]), timeout=20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"{LIMIT}-byte message limit" in details, details
    done = threading.Event()

    def gen():
        yield request("big", [("N", "INT64", np.array([2 * LIMIT]))], "over")
        yield request("big", [("N", "INT64", np.array([20]))], "small")
        done.wait(20)

    call = s.ModelStreamInfer(gen(), timeout=30)
    got = []
    for m in call:
        got.append(m)
        if len(got) == 2:
            break
    done.set()
    call.cancel()
    assert f"{LIMIT}-byte message limit" in got[0].error_message, got[0]
    assert got[1].error_message == "" and got[1].infer_response.id == "small"
    np.testing.assert_array_equal(outputs(got[1].infer_response, np.uint8)[0], (np.arange(20) % 251).astype(np.uint8))


def test_a_stream_message_over_the_limit_ends_the_stream_resource_exhausted(small):
    """SERVING.md gRPC: on ModelStreamInfer "a message the server cannot
    read, over `--max-request-bytes` say, ... ends the stream with
    RESOURCE_EXHAUSTED ..., as in gRPC and Triton"."""
    _, s = stub(small)
    done = threading.Event()

    def gen():
        yield request("echo", [("IN", "UINT8", np.arange(3, dtype=np.uint8))], "a")
        yield request("echo", [("IN", "UINT8", np.zeros(LIMIT + 1, np.uint8))], "big")
        yield request("echo", [("IN", "UINT8", np.arange(3, dtype=np.uint8))], "c")
        done.wait(10)

    got = []
    with pytest.raises(grpc.RpcError) as e:
        for m in s.ModelStreamInfer(gen(), timeout=20):
            got.append(m.infer_response.id)
    done.set()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert f"{LIMIT}-byte limit" in e.value.details()
    assert got in ([], ["a"]), got


def test_the_clients_own_limits_are_resource_exhausted_as_with_triton(server):
    """grpcio's `grpc.max_receive_message_length` (4 MiB by default) and
    `grpc.max_send_message_length` are the client's: tritonserver 2.51 and
    anemone both leave the client to answer RESOURCE_EXHAUSTED "Received
    message larger than max (2029 vs. 1000)" / "Sent message larger than
    max", with the same sizes (the answers are byte for byte the same)."""
    _, s = stub(server, **{"grpc.max_receive_message_length": 1000})
    code, details = status(lambda: s.ModelInfer(request("big", [("N", "INT64", np.array([2000]))]), timeout=20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Received message larger than max (2029 vs. 1000)" in details, details
    _, s = stub(server, **{"grpc.max_send_message_length": 1000})
    code, details = status(lambda: s.ModelInfer(request("echo", [("IN", "UINT8", np.zeros(2000, np.uint8))]), timeout=20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "Sent message larger than max (2026 vs. 1000)" in details, details
    _, s = stub(server)  # the default 4 MiB
    code, details = status(lambda: s.ModelInfer(request("big", [("N", "INT64", np.array([5 << 20]))]), timeout=20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "(5242913 vs. 4194304)" in details, details


# ---------------------------------------------------------------- deadlines and cancellation

def test_a_deadline_shorter_than_execute_is_deadline_exceeded_before_the_client_gives_up(server):
    """SERVING.md: the client's deadline bounds the request "less a tenth of
    it (at most 50 ms) kept to send the answer, so that the client receives
    anemone's DEADLINE_EXCEEDED ("timed out after …")", and "a timed-out
    request counts as a failure in the statistics". tritonserver 2.51: the
    client's own DEADLINE_EXCEEDED ("Deadline Exceeded") at 0.3 s; Triton
    counted the request a success."""
    before = inference_counts(server, "slow")
    _, s = stub(server)
    t0 = time.time()
    code, details = status(lambda: s.ModelInfer(slow_request(1200, "deadline"), timeout=0.3))
    took = time.time() - t0
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and details.startswith("Request timeout expired: timed out after"), details
    assert took < 0.3, took
    assert wait_for(lambda: "end deadline" in events(server, "slow"), 5)
    assert wait_for(lambda: inference_counts(server, "slow")["fail"] == before["fail"] + 1, 3), inference_counts(server, "slow")


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_a_model_sees_a_unary_call_that_its_client_gave_up(server, how):
    """tritonserver 2.51: `slow` polling `request.is_cancelled()` logs
    `cancelled` 290-320 ms into a 1.5 s execute when the ModelInfer call's
    0.3 s deadline passes, or when the client cancels it at 0.3 s (also
    with tritonclient's `client_timeout=0.3`). SERVING.md says a request
    whose client has gone is dropped from the queue, and that
    `is_cancelled()` is true "once the client has gone"; it says nothing
    that limits this to decoupled models."""
    rid = f"gone-{how}"
    _, s = stub(server)
    if how == "deadline":
        status(lambda: s.ModelInfer(slow_request(1500, rid), timeout=0.3))
    else:
        future = s.ModelInfer.future(slow_request(1500, rid), timeout=10)
        time.sleep(0.3)
        future.cancel()
    assert wait_for(lambda: f"end {rid}" in events(server, "slow"), 5), events(server, "slow")
    assert any(line.startswith(f"cancelled {rid} ") for line in events(server, "slow")), events(server, "slow")


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_a_decoupled_model_sees_a_stream_its_client_gave_up(server, how):
    """SERVING.md decoupled models: `sender.is_cancelled()` "is true once the
    client has gone (it closed or cancelled its stream)". tritonserver 2.51
    the same: cancelled after the 3 responses read, or after 13 of 100
    responses 30 ms apart with a 0.4 s deadline (DEADLINE_EXCEEDED)."""
    rid = f"stream-{how}"
    _, s = stub(server)
    hold = threading.Event()

    def gen():
        yield dec_request(100, 30, rid)
        hold.wait(10)

    got = []
    call = s.ModelStreamInfer(gen(), timeout=10 if how == "cancel" else 0.4)
    try:
        for m in call:
            assert m.error_message == "", m.error_message
            got.append(int(outputs(m.infer_response, np.int32)[0][0]))
            if how == "cancel" and len(got) == 3:
                call.cancel()
                break
    except grpc.RpcError as e:
        assert how == "deadline" and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    finally:
        hold.set()
    assert got == list(range(len(got))) and 3 <= len(got) < 40, got
    assert wait_for(lambda: any(l.startswith(f"cancelled {rid} ") for l in events(server, "dec")), 5), events(server, "dec")
    stopped_at = [int(l.split()[-1]) for l in events(server, "dec") if l.startswith(f"cancelled {rid} ")][0]
    assert len(got) <= stopped_at < 40


# ---------------------------------------------------------------- metadata

def test_custom_binary_and_repeated_metadata_are_accepted_and_not_echoed(server):
    """The gRPC protocol: any metadata may come with a call, `-bin` keys
    carrying bytes. tritonserver 2.51 answers all of these (8000-byte value
    included) with the sums and no metadata of its own (anemone adds
    `date`)."""
    a, b = np.arange(4, dtype=np.float32), np.full(4, 0.5, np.float32)
    _, s = stub(server)
    for metadata in ([("x-custom", "hello"), ("x-other", "a,b")], [("x-data-bin", b"\x00\xff\x01binary")],
                     [("x-dup", "1"), ("x-dup", "2")], [("x-big", "a" * 8000)]):
        response, call = s.ModelInfer.with_call(add_request(a, b), metadata=metadata, timeout=10)
        np.testing.assert_array_equal(outputs(response, np.float32)[0], a + b)
        assert not [m for m in call.initial_metadata() if m.key.startswith("x-")]
        assert not list(call.trailing_metadata())


def test_metadata_between_8_and_16_kib_is_served(server):
    """RELIABILITY.md: "the request headers may be 16 KiB". tritonserver
    2.51 refuses metadata over grpc-core's soft limit of 8 KiB "with some
    random probability" (RESOURCE_EXHAUSTED "received metadata size exceeds
    soft limit (15576 vs. 8192)" for a 15,000-byte value); anemone serves
    every such call."""
    a, b = np.arange(4, dtype=np.float32), np.ones(4, np.float32)
    _, s = stub(server)
    for _ in range(5):
        response = s.ModelInfer(add_request(a, b), metadata=[("x-big", "a" * 15000)], timeout=10)
        np.testing.assert_array_equal(outputs(response, np.float32)[0], a + b)


@pytest.mark.parametrize("metadata", [[("x-big", "a" * 17000)], [(f"x-h{i}", "v" * 40) for i in range(300)]],
                         ids=["one-17k-value", "300-headers"])
def test_metadata_over_16_kib_is_resource_exhausted_as_triton(server, metadata):
    """RELIABILITY.md: "the request headers may be 16 KiB
    (`SETTINGS_MAX_HEADER_LIST_SIZE`, as Triton)". tritonserver 2.51
    answers RESOURCE_EXHAUSTED "received metadata size exceeds hard limit
    (17573 vs. 16384); adding x-big ..." and serves on."""
    _, s = stub(server)
    code, details = status(lambda: s.ServerLive(service_pb2.ServerLiveRequest(), metadata=metadata, timeout=10))
    assert s.ServerLive(service_pb2.ServerLiveRequest(), timeout=5).live
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)


def test_huge_metadata_fails_only_its_own_call(server):
    """tritonserver 2.51: a ModelInfer call in flight (`slow`, 0.8 s) on a
    channel that then sends a call with 1 MiB of metadata finishes with its
    answer; the 1 MiB call alone is RESOURCE_EXHAUSTED."""
    _, s = stub(server)
    assert s.ServerLive(service_pb2.ServerLiveRequest(), timeout=5).live
    future = s.ModelInfer.future(slow_request(800, "bystander"), timeout=10)
    time.sleep(0.2)
    code, _ = status(lambda: s.ServerLive(service_pb2.ServerLiveRequest(), metadata=[("x-big", "a" * (1 << 20))], timeout=5))
    try:
        answer = future.result()
    except grpc.RpcError as e:
        pytest.fail(f"the call in flight failed: {e.code()} {e.details()}")
    np.testing.assert_array_equal(outputs(answer, np.float32)[0], np.arange(3, dtype=np.float32) * 2)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


# ---------------------------------------------------------------- health, reflection, unknown methods

@pytest.mark.parametrize("service", ["", "inference.GRPCInferenceService"])
def test_the_health_service_checks_and_watches_serving(server, service):
    """SERVING.md gRPC: "The standard `grpc.health.v1.Health` service reports
    SERVING once the server is ready." tritonserver 2.51: Check answers
    SERVING for both names; Watch is UNIMPLEMENTED there (anemone streams
    SERVING, then holds the call open until its deadline)."""
    channel = grpc.insecure_channel(server["gRPC"])
    check = channel.unary_unary("/grpc.health.v1.Health/Check", **IDENTITY)
    assert check(pb_string(1, service) if service else b"", timeout=5) == SERVING
    watch = channel.unary_stream("/grpc.health.v1.Health/Watch", **IDENTITY)
    call = watch(pb_string(1, service) if service else b"", timeout=5)
    assert next(call) == SERVING
    call.cancel()


def test_the_health_of_an_unknown_service_is_not_found(server):
    """The gRPC health protocol: Check of a service the server does not
    know is NOT_FOUND (Watch answers SERVICE_UNKNOWN or NOT_FOUND).
    tritonserver 2.51 answers SERVING for any name (`nope` too); anemone
    follows the protocol (a difference FROM_TRITON.md does not name)."""
    channel = grpc.insecure_channel(server["gRPC"])
    check = channel.unary_unary("/grpc.health.v1.Health/Check", **IDENTITY)
    code, _ = status(lambda: check(pb_string(1, "nope"), timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("path", ["/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"])
def test_server_reflection_is_not_served_as_in_triton(server, path):
    """tritonserver 2.51 has no server reflection: both versions'
    ServerReflectionInfo (a list_services request) are UNIMPLEMENTED, and
    so are anemone's."""
    channel = grpc.insecure_channel(server["gRPC"])
    info = channel.stream_stream(path, **IDENTITY)
    code, _ = status(lambda: list(info(iter([pb_string(7, "")]), timeout=5)))
    assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("path", ["/inference.GRPCInferenceService/Nope", "/nope.Service/Method",
                                  "/inference.GRPCInferenceService/", "/grpc.health.v1.Health/Nope",
                                  "/inference.GRPCInferenceService/ServerLive/x", "/x"])
def test_unknown_methods_and_services_are_unimplemented(server, path):
    """The gRPC protocol and tritonserver 2.51: an unknown method, service
    or path is UNIMPLEMENTED with an empty message, and the server serves
    on."""
    channel = grpc.insecure_channel(server["gRPC"])
    code, _ = status(lambda: channel.unary_unary(path, **IDENTITY)(b"", timeout=5))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(service_pb2.ServerLiveRequest(), timeout=5).live


# ---------------------------------------------------------------- raw and typed contents

A = np.array([1, -2, 2**31 - 10], np.int32)
B = np.array([10, 20, 9], np.int32)


def int_request():
    r = service_pb2.ModelInferRequest(model_name="int")
    for name in "AB":
        t = r.inputs.add()
        t.name, t.datatype = name, "INT32"
        t.shape.extend([3])
    return r


def test_typed_contents_alone_give_the_sum(server):
    """SERVING.md: ModelInfer takes "`raw_input_contents` or typed contents;
    outputs as `raw_output_contents`"; tritonserver 2.51 the same."""
    r = int_request()
    r.inputs[0].contents.int_contents.extend(A.tolist())
    r.inputs[1].contents.int_contents.extend(B.tolist())
    _, s = stub(server)
    response = s.ModelInfer(r, timeout=10)
    np.testing.assert_array_equal(outputs(response, np.int32)[0], A + B)
    assert not response.outputs[0].HasField("contents")


@pytest.mark.parametrize("case", ["raw-both-and-typed-A", "raw-empty-A-and-typed-A", "raw-A-and-typed-B"])
def test_raw_and_typed_contents_at_once_are_invalid_argument(server, case):
    """SERVING.md Errors: an input given twice is INVALID_ARGUMENT.
    tritonserver 2.51: INVALID_ARGUMENT "contents field must not be
    specified when using raw_input_contents for 'A'" (for 'B' in the last
    case); anemone names the input, or the count of raw entries."""
    r = int_request()
    if case == "raw-both-and-typed-A":
        r.raw_input_contents.extend([A.tobytes(), B.tobytes()])
        r.inputs[0].contents.int_contents.extend(A.tolist())
    elif case == "raw-empty-A-and-typed-A":
        r.raw_input_contents.extend([b"", B.tobytes()])
        r.inputs[0].contents.int_contents.extend(A.tolist())
    else:
        r.raw_input_contents.append(A.tobytes())
        r.inputs[1].contents.int_contents.extend(B.tolist())
    _, s = stub(server)
    code, details = status(lambda: s.ModelInfer(r, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "'A'" in details or "1 raw_input_contents entries" in details, details


@pytest.mark.parametrize("entries", [[b"", B.tobytes()], [b"", b""], [A.tobytes()[:4], B.tobytes()]])
def test_short_or_empty_raw_entries_are_invalid_argument_naming_the_sizes(server, entries):
    """SERVING.md Errors: "data length ≠ shape" is INVALID_ARGUMENT.
    tritonserver 2.51: INVALID_ARGUMENT "input byte size mismatch for input
    'A' ... Expected 12, got 0" (for two empty entries it names 'B')."""
    r = int_request()
    r.raw_input_contents.extend(entries)
    _, s = stub(server)
    code, details = status(lambda: s.ModelInfer(r, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'A'" in details and "12" in details, details
    assert f"has {len(entries[0])} bytes" in details, details


@pytest.mark.parametrize("field", ["fp32_contents", "int64_contents", "uint_contents", "bytes_contents", "int_and_fp32"])
def test_typed_contents_of_the_wrong_type_are_invalid_argument_naming_the_field(server, field):
    """SERVING.md Errors: a wrong dtype is INVALID_ARGUMENT. tritonserver
    2.51: INVALID_ARGUMENT "unexpected explicit tensor data for input
    tensor 'A' for model 'int' of type 'FP32', expected datatype 'INT32'"
    (and "binary data was already supplied" when int_contents is there too);
    anemone names the field given and the one INT32 takes."""
    r = int_request()
    c = r.inputs[0].contents
    if field == "int_and_fp32":
        c.int_contents.extend(A.tolist())
        c.fp32_contents.extend([1.0, 2.0, 3.0])
        named = "fp32_contents"
    elif field == "bytes_contents":
        c.bytes_contents.extend([b"1", b"2", b"3"])
        named = field
    else:
        getattr(c, field).extend([1, 2, 3])
        named = field
    r.inputs[1].contents.int_contents.extend(B.tolist())
    _, s = stub(server)
    code, details = status(lambda: s.ModelInfer(r, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "'A'" in details and "int_contents" in details and named in details, details


def test_more_raw_entries_than_inputs_are_refused(server):
    """tritonserver 2.51 answers a request with three raw_input_contents
    entries for two inputs with the sum, ignoring the third entry; anemone
    refuses it, INVALID_ARGUMENT "the request has 2 inputs outside shared
    memory but 3 raw_input_contents entries" (a difference FROM_TRITON.md's
    table of tensor-data edges does not list)."""
    r = int_request()
    r.raw_input_contents.extend([A.tobytes(), B.tobytes(), B.tobytes()])
    _, s = stub(server)
    code, details = status(lambda: s.ModelInfer(r, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "3 raw_input_contents entries" in details, details


# ---------------------------------------------------------------- streams

def test_a_stream_of_many_requests_with_interleaved_errors_answers_each_in_order(server):
    """SERVING.md gRPC: on ModelStreamInfer "an error answers that request
    with `error_message` and the stream goes on"; "a model that is not
    decoupled answers each request once, in request order". tritonserver
    2.51 with the same 200 requests: 200 answers in order, 56 of them
    errors (wrong datatype, unknown model, short data), each error with the
    request's id, every other answer A + B."""
    n = 200

    def make(i):
        r = request("int", [("A", "INT32", np.array([i, -i], np.int32)), ("B", "INT32", np.array([7, 7], np.int32))], f"r{i}")
        if i % 7 == 3:
            r.inputs[1].datatype = "FP32"
        if i % 11 == 5:
            r.model_name = "nope"
        if i % 13 == 6:
            r.raw_input_contents[0] = b"\x00"
        return r

    def bad(i):
        return i % 7 == 3 or i % 11 == 5 or i % 13 == 6

    done = threading.Event()

    def gen():
        for i in range(n):
            yield make(i)
        done.wait(30)

    _, s = stub(server)
    call = s.ModelStreamInfer(gen(), timeout=60)
    got = []
    for m in call:
        got.append(m)
        if len(got) == n:
            break
    done.set()
    call.cancel()
    assert sum(bad(i) for i in range(n)) == 56
    for i, m in enumerate(got):
        if bad(i):
            assert m.error_message, (i, m)
            assert m.infer_response.id == f"r{i}", (i, m.infer_response.id)
        else:
            assert m.error_message == "" and m.infer_response.id == f"r{i}", (i, m)
            np.testing.assert_array_equal(outputs(m.infer_response, np.int32)[0], np.array([i + 7, 7 - i], np.int32))


def test_decoupled_requests_on_one_stream_interleave_with_their_errors(server):
    """SERVING.md: a decoupled model's "error response ... reaches the client
    as that request's error" and the stream goes on. tritonserver 2.51 with
    5 requests of 10 responses each on one stream: 50 messages, the two
    `err` requests each with one error at i = 7 ("seven"; anemone: "backend
    python failed: seven") and 9 values, the others 10, each in order."""
    done = threading.Event()
    rids = [("err" if i % 2 else "ok") + str(i) for i in range(5)]

    def gen():
        for rid in rids:
            yield dec_request(10, 5, rid)
        done.wait(30)

    _, s = stub(server)
    call = s.ModelStreamInfer(gen(), timeout=60)
    got = []
    for m in call:
        got.append(m)
        if len(got) == 50:
            break
    done.set()
    call.cancel()
    values = {rid: [] for rid in rids}
    errors = {rid: [] for rid in rids}
    for m in got:
        rid = m.infer_response.id
        if m.error_message:
            errors[rid].append(m.error_message)
        else:
            values[rid].append(int(outputs(m.infer_response, np.int32)[0][0]))
    for rid in rids:
        expected = [i for i in range(10) if not (rid.startswith("err") and i == 7)]
        assert values[rid] == expected, (rid, values[rid])
        assert len(errors[rid]) == rid.startswith("err") and all(e.endswith("seven") for e in errors[rid]), errors


# ---------------------------------------------------------------- connections

def test_client_and_server_keepalive_pings_keep_calls_and_idle_channels_alive(small):
    """FROM_TRITON.md: `--grpc-keepalive-time`/`-timeout` "the same", and
    anemone "answers every client ping and never closes a connection for
    pinging too often, where Triton sends GOAWAY after its strikes".
    tritonserver 2.51 with a client pinging every 100 ms (no pings limit,
    also without calls): a 1.5 s call answered, an idle channel served
    after 1.5 s. Here the server pings every 200 ms too."""
    _, s = stub(small, **{"grpc.keepalive_time_ms": 100, "grpc.keepalive_timeout_ms": 2000,
                          "grpc.keepalive_permit_without_calls": 1, "grpc.http2.max_pings_without_data": 0})
    response = s.ModelInfer(slow_request(1000, "keepalive"), timeout=10)
    np.testing.assert_array_equal(outputs(response, np.float32)[0], np.arange(3, dtype=np.float32) * 2)
    time.sleep(1.0)
    response = s.ModelInfer(add_request(np.ones(2, np.float32), np.ones(2, np.float32)), timeout=10)
    np.testing.assert_array_equal(outputs(response, np.float32)[0], [2, 2])


def test_many_concurrent_channels_each_get_their_own_answers(server):
    """tritonserver 2.51: 100 channels, 50 threads, 3 calls each: all 300
    answered with their own sums (0.17 s; anemone 0.19 s)."""
    channels = [stub(server) for _ in range(100)]
    a = np.arange(4, dtype=np.float32)

    def work(i):
        _, s = channels[i]
        b = np.full(4, i, np.float32)
        return all(np.array_equal(outputs(s.ModelInfer(add_request(a, b, f"c{i}"), timeout=30), np.float32)[0], a + b)
                   for _ in range(3))

    try:
        with ThreadPoolExecutor(50) as pool:
            assert all(pool.map(work, range(100)))
    finally:
        for channel, _ in channels:
            channel.close()
