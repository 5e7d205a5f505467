"""docs/OBSERVABILITY.md read as a new user reads it, checked against
`anemone serve`: the trace extension's rules (field by field overrides,
clearing, refusals), Triton's trace files (sampling, count, cache hits,
ensembles, monotonic clock, a file that cannot be written), OTLP spans as an
OTLP/HTTP collector receives them (decoded here from the protobuf wire
format, no opentelemetry package needed), a collector that is down, the
logging extension and JSON lines, and the metrics (ports, failure reasons
against the statistics, Triton's names and summaries, naming rules)."""
import contextlib
import gzip
import json
import os
import re
import shutil
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc as grpclib
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from serve_support import ROOT, start_serve, stop_serve, wait_ready

ADD_ONNX = ROOT / "examples/models/add/1/model.onnx"
TRITON_NAMES = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
                "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]
TRACEPARENT = "00-{}-00f067aa0ba902b7-{}"
BATCHED = ('max_batch_size: 8\n'
           'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
           'output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')


# ---------------------------------------------------------------- helpers

def model(repo, name, config=None):
    (repo / name / "1").mkdir(parents=True)
    shutil.copy(ADD_ONNX, repo / name / "1" / "model.onnx")
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)
    return repo


def add_body(x, y):
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()},
                       {"name": "y", "shape": list(y.shape), "datatype": "FP32", "data": y.ravel().tolist()}]}


def infer_ok(http, name, x, y, headers=None):
    r = requests.post(f"http://{http}/v2/models/{name}/infer", json=add_body(x, y), headers=headers or {})
    assert r.status_code == 200, r.text
    out = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in r.json()["outputs"]}
    np.testing.assert_allclose(out["sum"], np.float32(x) + np.float32(y))
    return out


BAD_SHAPE = add_body([[1, 2, 3, 4]], [[1, 2, 3, 4]])
BAD_SHAPE["inputs"][1].update(shape=[1, 3], data=[1, 2, 3])


@contextlib.contextmanager
def serving(repo, *flags, env=None):
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc, addr = start_serve(repo, *flags)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        wait_ready(addr["HTTP"])
        yield proc, addr
    finally:
        if proc.poll() is None:
            stop_serve(proc)


def get(http, path):
    return requests.get(f"http://{http}{path}")


def post(http, path, body=None, data=None, **kw):
    return requests.post(f"http://{http}{path}", json=body, data=data, **kw)


def metrics(http):
    """{(name, frozenset(labels)): value} of /metrics at `http`."""
    out = {}
    for line in requests.get(f"http://{http}/metrics").text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def sample(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, seconds=10):
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def trace_file(path):
    """{id: (head, [(name, ns)] in file order)} of a Triton trace file."""
    out = {}
    for entry in json.loads(path.read_text()):
        head, stamps = out.setdefault(entry["id"], ({}, []))
        if "timestamps" in entry:
            stamps.extend((t["name"], t["ns"]) for t in entry["timestamps"])
        else:
            head.update(entry)
    return out


# ------------------------------------------- a minimal OTLP/HTTP collector

def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return r, i


def _fields(b):
    out, i = [], 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, v))
    return out


def _any(b):
    for num, v in _fields(b):
        if num == 1:
            return v.decode()
        if num == 2:
            return bool(v)
        if num == 3:
            return v - 2 ** 64 if v >= 2 ** 63 else v
        if num == 4:
            return struct.unpack("<d", v)[0]
    return None


def _attrs(kvs):
    out = {}
    for kv in kvs:
        f = dict(_fields(kv))
        out[f[1].decode()] = _any(f.get(2, b""))
    return out


def decode_export(body):
    """The spans of an ExportTraceServiceRequest, as dicts."""
    spans = []
    for n, rs in _fields(body):
        if n != 1:
            continue
        resource = {}
        for m, v in _fields(rs):
            if m == 1:
                resource = _attrs([x for k, x in _fields(v) if k == 1])
            elif m == 2:
                for k, sp in _fields(v):
                    if k != 2:
                        continue
                    s = {"parent": "", "resource": resource, "status_code": 0, "status_message": ""}
                    kvs = []
                    for q, x in _fields(sp):
                        if q == 1:
                            s["trace_id"] = x.hex()
                        elif q == 2:
                            s["span_id"] = x.hex()
                        elif q == 4:
                            s["parent"] = x.hex()
                        elif q == 5:
                            s["name"] = x.decode()
                        elif q == 6:
                            s["kind"] = x
                        elif q == 9:
                            kvs.append(x)
                        elif q == 15:
                            st = dict(_fields(x))
                            s["status_code"] = st.get(3, 0)
                            s["status_message"] = st.get(2, b"").decode()
                    s["attributes"] = _attrs(kvs)
                    spans.append(s)
    return spans


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1: keeps every span and the path and
    headers of every export."""

    def __init__(self, port=0):
        me = self
        self.spans, self.posts, self.lock = [], [], threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with me.lock:
                    me.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                    me.spans.extend(decode_export(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def infer_spans(self):
        with self.lock:
            return [s for s in self.spans if s["name"] == "infer"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A server without any trace destination, `add` loaded."""
    with serving(ROOT / "examples/models") as (_, addr):
        yield addr


# ----------------------------------------------------- the trace extension

def test_refused_trace_change_changes_nothing_and_errors_name_the_range(plain):
    http = plain["HTTP"]
    before = get(http, "/v2/trace/setting").json()
    r = post(http, "/v2/trace/setting", {"trace_rate": "5", "trace_count": "-5"})
    assert r.status_code == 400
    assert "trace_count" in r.json()["error"] and "-1 to 2147483647" in r.json()["error"], r.text
    assert get(http, "/v2/trace/setting").json() == before
    for body, words in [({"trace_rate": "0"}, ["trace_rate", "1 to 4294967295"]),
                        ({"trace_rate": "1.5"}, ["trace_rate"]),
                        ({"trace_rate": "4294967296"}, ["trace_rate", "1 to 4294967295"]),
                        ({"trace_count": "2147483648"}, ["trace_count"]),
                        ({"trace_level": ["LOUD"]}, ["LOUD", "OFF", "TIMESTAMPS", "TENSORS"]),
                        ({"trace_rate": True}, ["trace_rate"]),
                        ({"no_such": "1"}, ["no_such"])]:
        r = post(http, "/v2/trace/setting", body)
        assert r.status_code == 400, (body, r.text)
        for w in words:
            assert w in r.json()["error"], (body, r.text)
    assert get(http, "/v2/trace/setting").json() == before
    # Numbers are accepted as well as strings, and the limit itself is legal.
    r = post(http, "/v2/trace/setting", {"trace_rate": 4294967295})
    assert r.status_code == 200 and r.json()["trace_rate"] == "4294967295", r.text
    assert post(http, "/v2/trace/setting", {"trace_rate": None}).json()["trace_rate"] == "1"


def test_model_trace_setting_overrides_field_by_field_and_follows_global(plain):
    http = plain["HTTP"]
    r = post(http, "/v2/models/add/trace/setting", {"trace_rate": "7"})
    assert r.status_code == 200 and r.json()["trace_rate"] == "7", r.text
    try:
        # A field the model does not set follows later global changes...
        post(http, "/v2/trace/setting", {"trace_count": "8", "trace_rate": "9"})
        model = get(http, "/v2/models/add/trace/setting").json()
        assert (model["trace_rate"], model["trace_count"]) == ("7", "8"), model
        assert get(http, "/v2/trace/setting").json()["trace_rate"] == "9"
        # ...and clearing the model's field makes it follow the global one again.
        model = post(http, "/v2/models/add/trace/setting", {"trace_rate": None}).json()
        assert (model["trace_rate"], model["trace_count"]) == ("9", "8"), model
        # Clearing a global setting returns it to its start-up value.
        glob = post(http, "/v2/trace/setting", {"trace_rate": None, "trace_count": None}).json()
        assert (glob["trace_rate"], glob["trace_count"]) == ("1", "-1"), glob
        model = get(http, "/v2/models/add/trace/setting").json()
        assert (model["trace_rate"], model["trace_count"]) == ("1", "-1"), model
    finally:
        post(http, "/v2/models/add/trace/setting", {"trace_rate": None, "trace_count": None})
        post(http, "/v2/trace/setting", {"trace_rate": None, "trace_count": None})


def test_trace_settings_refused_without_a_destination(plain):
    http = plain["HTTP"]
    r = post(http, "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"]})
    assert r.status_code == 400 and "--otlp-endpoint" in r.json()["error"], r.text
    r = post(http, "/v2/models/add/trace/setting", {"trace_level": ["TENSORS"]})
    assert r.status_code == 400 and "--otlp-endpoint" in r.json()["error"], r.text
    for field in ("trace_file", "log_frequency"):
        r = post(http, "/v2/trace/setting", {field: "3"})
        assert r.status_code == 400, (field, r.text)
    r = post(http, "/v2/models/nope/trace/setting", {"trace_rate": "3"})
    assert r.status_code == 400 and "Request for unknown model" in r.json()["error"], r.text
    r = get(http, "/v2/models/nope/trace/setting")
    assert r.status_code == 400 and "Request for unknown model" in r.json()["error"], r.text
    assert get(http, "/v2/trace/setting").json()["trace_level"] == ["OFF"]
    assert "trace" in get(http, "/v2").json()["extensions"]


def test_grpc_trace_setting_is_the_http_one(plain):
    http, g = plain["HTTP"], grpcclient.InferenceServerClient(plain["gRPC"])
    try:
        answer = g.update_trace_settings(model_name="add", settings={"trace_count": "4"}, as_json=True)
        assert answer["settings"]["trace_count"]["value"] == ["4"], answer
        assert get(http, "/v2/models/add/trace/setting").json()["trace_count"] == "4"
        with pytest.raises(InferenceServerException) as e:
            g.update_trace_settings(settings={"trace_rate": "0"})
        assert "INVALID_ARGUMENT" in str(e.value.status()) and "trace_rate" in e.value.message()
        with pytest.raises(InferenceServerException) as e:
            g.update_trace_settings(model_name="nope", settings={"trace_rate": "2"})
        assert "Request for unknown model" in e.value.message()
        # A setting given with no value is cleared.
        stub = g._client_stub
        req = pb.TraceSettingRequest(model_name="add")
        req.settings["trace_count"]  # no value
        reply = stub.TraceSetting(req)
        assert list(reply.settings["trace_count"].value) == ["-1"], reply
        assert get(http, "/v2/models/add/trace/setting").json()["trace_count"] == "-1"
    finally:
        post(http, "/v2/models/add/trace/setting", {"trace_count": None})


# ------------------------------------------------------ the logging extension

def test_logging_api_round_trip_and_refusals(plain):
    http = plain["HTTP"]
    start = get(http, "/v2/logging").json()
    assert start == {"log_error": True, "log_file": "", "log_format": "text", "log_info": False,
                     "log_verbose_level": 0, "log_warning": True}, start
    try:
        r = post(http, "/v2/logging", {"log_warning": False, "log_info": True, "log_verbose_level": 1})
        assert r.status_code == 200, r.text
        want = dict(start, log_warning=False, log_info=True, log_verbose_level=1)
        assert r.json() == want and get(http, "/v2/logging").json() == want
        for body, word in [({"bogus": 1}, "bogus"), ({"log_info": "true"}, "boolean"),
                           ({"log_verbose_level": -1}, "-1"), ({"log_format": "json"}, "json"),
                           ({"log_file": "/tmp/elsewhere.log"}, "/tmp/elsewhere.log"),
                           ({"log_info": False, "bogus": 1}, "bogus")]:
            r = post(http, "/v2/logging", body)
            assert r.status_code == 400 and word in r.json()["error"], (body, r.text)
        assert get(http, "/v2/logging").json() == want  # refused changes changed nothing
        # The fixed fields accept the value in force.
        assert post(http, "/v2/logging", {"log_format": "text", "log_file": ""}).json() == want
        # gRPC: typed values, an empty request only reads.
        client = grpcclient.InferenceServerClient(plain["gRPC"])
        stub = client._client_stub
        reply = stub.LogSettings(pb.LogSettingsRequest())
        assert reply.settings["log_info"].bool_param is True
        assert reply.settings["log_verbose_level"].uint32_param == 1
        bad = pb.LogSettingsRequest()
        bad.settings["log_info"].uint32_param = 1
        with pytest.raises(grpclib.RpcError) as e:
            stub.LogSettings(bad)
        assert e.value.code() == grpclib.StatusCode.INVALID_ARGUMENT and "log_info" in e.value.details()
        # A verbose level from 2 is TRACE, answered as given (Triton echoes it).
        assert post(http, "/v2/logging", {"log_verbose_level": 7}).json()["log_verbose_level"] == 7
        assert get(http, "/v2/logging").json()["log_verbose_level"] == 7
        assert post(http, "/v2/logging", {"log_verbose_level": 1}).json()["log_verbose_level"] == 1
    finally:
        post(http, "/v2/logging", {k: v for k, v in start.items() if k not in ("log_file", "log_format")})


def test_logging_wrong_types_name_the_field(plain):
    http = plain["HTTP"]
    for body, field in [({"log_info": "true"}, "log_info"), ({"log_verbose_level": -1}, "log_verbose_level"),
                        ({"log_warning": 1}, "log_warning")]:
        r = post(http, "/v2/logging", body)
        assert r.status_code == 400, r.text
        assert field in r.json()["error"], (body, r.text)


def test_log_switches_take_effect_while_serving(tmp_path):
    repo = model(model(tmp_path / "repo", "add"), "addw",
                 'parameters { key: "not_a_key_anyone_reads" value: { string_value: "1" } }\n')
    log = tmp_path / "serve.log"
    log.write_text("kept line\n")
    with serving(repo, "--model-control-mode", "explicit", "--log-file", str(log)) as (_, addr):
        http = addr["HTTP"]
        assert get(http, "/v2/logging").json()["log_file"] == str(log)
        # INFO on, WARN off: the load's INFO line, not its warning.
        post(http, "/v2/logging", {"log_info": True, "log_warning": False})
        assert post(http, "/v2/repository/models/addw/load").status_code == 200
        assert wait_for(lambda: "model loaded" in log.read_text(), 5), log.read_text()
        text = log.read_text()
        assert text.startswith("kept line\n"), "--log-file appends"
        assert re.search(r" INFO .*model loaded.*model=addw", text), text
        assert " WARN " not in text, text
        # INFO off, WARN on: the warning naming the unread key, no INFO.
        post(http, "/v2/logging", {"log_info": False, "log_warning": True})
        n_info = text.count(" INFO ")
        assert post(http, "/v2/repository/models/addw/unload").status_code == 200
        assert post(http, "/v2/repository/models/addw/load").status_code == 200
        assert wait_for(lambda: "not_a_key_anyone_reads" in log.read_text(), 5), log.read_text()
        text = log.read_text()
        assert re.search(r" WARN .*not_a_key_anyone_reads", text), text
        assert text.count(" INFO ") == n_info, text


def test_json_lines_carry_the_trace_id_under_a_directive_filter(tmp_path, collector):
    log = tmp_path / "serve.log"
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with serving(ROOT / "examples/models", "--log-format", "json", "--log-level", "warn,tract_core=trace",
                 "--log-file", str(log), "--backends", "tract-cpu",
                 "--otlp-endpoint", f"http://127.0.0.1:{collector.port}", "--otlp-protocol", "http/protobuf"
                 ) as (_, addr):
        assert get(addr["HTTP"], "/v2/logging").json()["log_format"] == "json"
        n = len(log.read_text().splitlines())
        infer_ok(addr["HTTP"], "add", [[1, 2, 3, 4]], [[4, 3, 2, 1]],
                 headers={"traceparent": TRACEPARENT.format(trace_id, "01")})
        time.sleep(0.2)
        lines = [json.loads(l) for l in log.read_text().splitlines()[n:]]
    engine = [l for l in lines if l["target"].startswith("tract_core")]
    assert engine, lines[:5]
    for line in engine:
        assert {"timestamp", "level", "fields", "target"} <= set(line), line
        assert line["span"]["trace_id"] == trace_id, line
        assert line["spans"][0]["trace_id"] == trace_id, line


# ----------------------------------------------------------- trace files

def test_trace_file_clock_cache_hits_and_count(tmp_path):
    repo = model(model(tmp_path / "repo", "add"), "addc", 'response_cache { enable: true }\n')
    path = tmp_path / "trace.json"
    with serving(repo, "--trace-file", str(path), "--trace-level", "TIMESTAMPS", "--trace-rate", "1",
                 "--trace-count", "3", "--cache-config", "local,size=1MiB") as (proc, addr):
        http = addr["HTTP"]
        s = get(http, "/v2/trace/setting").json()
        assert (s["trace_mode"], s["trace_file"], s["log_frequency"], s["trace_count"]) == (
            "triton", str(path), "0", "3"), s
        windows = []
        for name in ["addc", "addc", "add", "add"]:
            t0 = time.monotonic_ns()
            infer_ok(http, name, [[1, 2, 3, 4]], [[5, 5, 5, 5]])
            windows.append((t0, time.monotonic_ns()))
        # The count ran out after three traces: the settings say so.
        assert get(http, "/v2/trace/setting").json()["trace_count"] == "0"
        # Giving a count again traces again.
        assert post(http, "/v2/trace/setting", {"trace_count": "1"}).json()["trace_count"] == "1"
        t0 = time.monotonic_ns()
        infer_ok(http, "add", [[1, 1, 1, 1]], [[2, 2, 2, 2]])
        windows.append((t0, time.monotonic_ns()))
        assert get(http, "/v2/trace/setting").json()["trace_count"] == "0"
        # OBSERVABILITY.md: the traces are written when the count runs out
        # (once its requests end), the later ones to FILE.0, as Triton's.
        deadline = time.time() + 10
        while not path.with_name(path.name + ".0").exists() and time.time() < deadline:
            time.sleep(0.05)
        first, then = trace_file(path), trace_file(path.with_name(path.name + ".0"))
        assert (len(first), len(then)) == (3, 1), (first, then)
        stop_serve(proc)
    traces = {**first, **then}
    assert len(traces) == 4, traces
    by_start = sorted(traces.values(), key=lambda t: dict(t[1])["REQUEST_START"])
    traced_requests = [0, 1, 2, 4]
    for (head, stamps), k in zip(by_start, traced_requests):
        lo, hi = windows[k]
        ns = dict(stamps)
        # REQUEST_END may come just after the answer reached the client.
        assert lo <= ns["REQUEST_START"] <= hi and ns["REQUEST_START"] <= ns["REQUEST_END"], (k, stamps, windows[k])
        assert head["model_name"] == ("addc" if k < 2 else "add") and head["model_version"] == 1, head
        if k == 1:  # the cache's answer: only the request's two
            assert [n for n, _ in stamps] == ["REQUEST_START", "REQUEST_END"], stamps
        else:
            assert [n for n, _ in stamps] == TRITON_NAMES, stamps
            values = [v for _, v in stamps]
            assert values == sorted(values), stamps
            assert ns["COMPUTE_INPUT_END"] == ns["COMPUTE_START"]


def test_trace_file_rate_set_while_serving_and_model_level_off(tmp_path):
    repo = model(model(tmp_path / "repo", "add"), "add2")
    path = tmp_path / "trace.json"
    with serving(repo, "--trace-config", f"triton,file={path}", "--trace-config", "level=TIMESTAMPS",
                 "--trace-rate", "5", "--trace-count", "4") as (proc, addr):
        http = addr["HTTP"]
        s = get(http, "/v2/trace/setting").json()
        assert (s["trace_rate"], s["trace_count"]) == ("5", "4"), s
        # log_frequency is the server's, not a model's; trace_file cannot change.
        r = post(http, "/v2/models/add/trace/setting", {"log_frequency": "2"})
        assert r.status_code == 400, r.text
        r = post(http, "/v2/trace/setting", {"trace_file": str(tmp_path / "other.json")})
        assert r.status_code == 400, r.text
        # Clearing returns to the start-up values, not Triton's defaults.
        post(http, "/v2/trace/setting", {"trace_rate": "100", "trace_count": "9"})
        s = post(http, "/v2/trace/setting", {"trace_rate": None, "trace_count": None}).json()
        assert (s["trace_rate"], s["trace_count"]) == ("5", "4"), s
        post(http, "/v2/trace/setting", {"trace_rate": "3", "trace_count": "-1"})
        r = post(http, "/v2/models/add2/trace/setting", {"trace_level": ["OFF"]})
        assert r.status_code == 200 and r.json()["trace_level"] == ["OFF"], r.text
        windows = []
        for k in range(6):
            t0 = time.monotonic_ns()
            infer_ok(http, "add", [[k, k, k, k]], [[1, 1, 1, 1]])
            windows.append((t0, time.monotonic_ns()))
        for k in range(6):
            infer_ok(http, "add2", [[k, k, k, k]], [[1, 1, 1, 1]])
        stop_serve(proc)
    traces = trace_file(path)
    assert [h["model_name"] for h, _ in traces.values()] == ["add", "add"], traces
    starts = sorted(dict(st)["REQUEST_START"] for _, st in traces.values())
    # Triton's rate: the 3rd and the 6th request.
    for ns, k in zip(starts, (2, 5)):
        assert windows[k][0] <= ns <= windows[k][1], (k, ns, windows)


def test_trace_file_that_cannot_be_written_is_a_warning(tmp_path):
    path = tmp_path / "trace.json"
    (tmp_path / "trace.json.0").mkdir()  # the first file cannot be written
    log = tmp_path / "serve.log"
    with serving(ROOT / "examples/models", "--trace-file", str(path), "--trace-log-frequency", "1",
                 "--trace-level", "TIMESTAMPS", "--trace-rate", "1", "--log-file", str(log)) as (proc, addr):
        infer_ok(addr["HTTP"], "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
        assert wait_for(lambda: " WARN " in log.read_text(), 5), log.read_text()
        assert re.search(r" WARN .*cannot write 1 trace\(s\) to .*trace\.json\.0", log.read_text()), log.read_text()
        infer_ok(addr["HTTP"], "add", [[1, 2, 3, 4]], [[2, 2, 2, 2]])
        second = tmp_path / "trace.json.1"
        assert wait_for(lambda: second.exists() and second.read_text().strip().endswith("]"), 5)
        assert proc.poll() is None
    (head, stamps), = trace_file(second).values()
    assert head["model_name"] == "add" and [n for n, _ in stamps] == TRITON_NAMES


def test_ensemble_steps_are_traces_with_the_ensembles_parent_id(tmp_path):
    repo = model(tmp_path / "repo", "add")
    (repo / "ens" / "1").mkdir(parents=True)
    (repo / "ens" / "config.pbtxt").write_text(
        'name: "ens"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]\n'
        'output [ { name: "out" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]\n'
        'ensemble_scheduling { step [\n'
        ' { model_name: "add" model_version: -1 input_map { key: "x" value: "x" } input_map { key: "y" value: "y" }'
        ' output_map { key: "sum" value: "s" } },\n'
        ' { model_name: "add" model_version: -1 input_map { key: "x" value: "s" } input_map { key: "y" value: "y" }'
        ' output_map { key: "sum" value: "out" } } ] }\n')
    path = tmp_path / "trace.json"
    with serving(repo, "--trace-file", str(path), "--trace-level", "TIMESTAMPS", "--trace-rate", "1") as (proc, addr):
        r = post(addr["HTTP"], "/v2/models/ens/infer", add_body([[1, 2, 3, 4]], [[4, 3, 2, 1]]))
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], [9, 8, 7, 6])
        stop_serve(proc)
    traces = trace_file(path)
    top = [k for k, (h, _) in traces.items() if h["model_name"] == "ens"]
    assert len(top) == 1 and "parent_id" not in traces[top[0]][0], traces
    assert [n for n, _ in traces[top[0]][1]] == ["REQUEST_START", "REQUEST_END"]
    steps = [(h, st) for k, (h, st) in traces.items() if k != top[0]]
    assert len(steps) == 2, traces
    for head, stamps in steps:
        assert head == {"id": head["id"], "model_name": "add", "model_version": 1, "parent_id": top[0]}, head
        assert [n for n, _ in stamps] == TRITON_NAMES


# ------------------------------------------------------------- OTLP spans

def test_otlp_spans_tree_status_resource_and_headers(collector):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    env = {"OTEL_BSP_SCHEDULE_DELAY": "60000",  # only the flush at shutdown sends them
           "OTEL_SERVICE_NAME": "from-env", "OTEL_RESOURCE_ATTRIBUTES": "team=env,region=eu",
           "OTEL_EXPORTER_OTLP_HEADERS": "x-env=1"}
    with serving(ROOT / "examples/models", "--otlp-endpoint", f"http://127.0.0.1:{collector.port}/custom/traces",
                 "--otlp-protocol", "http/protobuf", "--otlp-header", "x-key=flag",
                 "--otlp-service-name", "svc", "--otlp-resource-attribute", "team=flag",
                 env=env) as (proc, addr):
        http = addr["HTTP"]
        s = get(http, "/v2/trace/setting").json()
        assert (s["trace_level"], s["trace_rate"], s["trace_count"]) == (["TIMESTAMPS"], "1", "-1"), s
        infer_ok(http, "add", [[1, 2, 3, 4]], [[4, 3, 2, 1]],
                 headers={"traceparent": TRACEPARENT.format(trace_id, "01")})
        infer_ok(http, "add", [[1, 2, 3, 4]], [[4, 3, 2, 1]],
                 headers={"traceparent": TRACEPARENT.format("5" * 32, "00")})  # not sampled
        r = post(http, "/v2/models/add/infer", BAD_SHAPE)
        assert r.status_code == 400
        g = grpcclient.InferenceServerClient(addr["gRPC"])
        inp = grpcclient.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
        with pytest.raises(InferenceServerException):
            g.infer("add", [inp])  # y missing
        assert collector.spans == []
        stop_serve(proc)
    assert {p for p, _ in collector.posts} == {"/custom/traces"}, collector.posts
    headers = collector.posts[0][1]
    assert (headers.get("x-key"), headers.get("x-env")) == ("flag", "1"), headers
    infer = collector.infer_spans()
    assert len(infer) == 3, [(s["trace_id"], s["attributes"]) for s in infer]
    ok, bad_http, bad_grpc = sorted(infer, key=lambda s: s["attributes"].get("status") != "200")[0], None, None
    for s in infer:
        if s["attributes"]["protocol"] == "grpc":
            bad_grpc = s
        elif s is not ok:
            bad_http = s
    for s in infer:
        assert s["resource"]["service.name"] == "svc", s["resource"]
        assert (s["resource"]["team"], s["resource"]["region"]) == ("flag", "eu"), s["resource"]
        assert s["kind"] == 2  # SERVER
    assert (ok["trace_id"], ok["parent"]) == (trace_id, "00f067aa0ba902b7")
    a = ok["attributes"]
    assert (a["model"], str(a["version"]), a["protocol"], str(a["batch_size"]), str(a["status"]),
            a["trace_id"]) == ("add", "1", "http", "1", "200", trace_id), a
    children = [c for c in collector.spans if c["parent"] == ok["span_id"]]
    assert sorted(c["name"] for c in children) == ["compute_infer", "compute_input", "compute_output", "queue"]
    assert all(c["trace_id"] == trace_id for c in children)
    assert bad_http["parent"] == "" and bad_http["trace_id"] != "5" * 32
    assert (str(bad_http["attributes"]["status"]), bad_http["status_code"], bad_http["status_message"]) == (
        "400", 2, "Bad Request"), bad_http
    assert str(bad_grpc["attributes"]["status"]) == "InvalidArgument" and bad_grpc["status_code"] == 2
    assert "y" in bad_grpc["status_message"], bad_grpc


class GrpcCollector:
    """An OTLP/gRPC receiver: keeps each Export's metadata and spans."""

    def __init__(self):
        from concurrent import futures
        self.exports = []

        def export(body, context):
            self.exports.append((dict(context.invocation_metadata()), decode_export(body)))
            return b""

        handler = grpclib.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpclib.unary_unary_rpc_method_handler(
                export, request_deserializer=lambda b: b, response_serializer=lambda b: b)})
        self.server = grpclib.server(futures.ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_otlp_header_flag_overrides_the_environment():
    rx = GrpcCollector()
    try:
        with serving(ROOT / "examples/models", "--otlp-endpoint", f"http://127.0.0.1:{rx.port}",
                     "--otlp-header", "x-key=flag", "--otlp-service-name", "svc",
                     env={"OTEL_EXPORTER_OTLP_HEADERS": "x-key=env,x-env=1", "OTEL_SERVICE_NAME": "envsvc",
                          "OTEL_BSP_SCHEDULE_DELAY": "60000"}) as (proc, addr):
            infer_ok(addr["HTTP"], "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
            stop_serve(proc)
    finally:
        rx.server.stop(None)
    assert len(rx.exports) >= 1
    metadata, spans = rx.exports[0]
    assert [s["resource"]["service.name"] for s in spans if s["name"] == "infer"] == ["svc"]
    assert metadata.get("x-env") == "1", metadata
    assert metadata.get("x-key") == "flag", metadata


def test_collector_down_warns_once_then_works_again_and_counts_dropped_spans(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with serving(ROOT / "examples/models", "--otlp-endpoint", f"http://127.0.0.1:{port}",
                 "--otlp-protocol", "http/protobuf", "--log-file", str(log),
                 env={"OTEL_BSP_SCHEDULE_DELAY": "50"}) as (proc, addr):
        http = addr["HTTP"]
        for k in range(3):
            t = time.time()
            infer_ok(http, "add", [[k, 1, 2, 3]], [[1, 1, 1, 1]])
            assert time.time() - t < 1.0, "a collector that is down never slows a request"
        assert wait_for(lambda: "failed" in log.read_text(), 10), log.read_text()
        rx = Collector(port)
        try:
            infer_ok(http, "add", [[9, 9, 9, 9]], [[1, 1, 1, 1]])
            assert wait_for(lambda: "works again" in log.read_text(), 15), log.read_text()
            stop_serve(proc)
            text = log.read_text()
            spans = len(rx.spans)
            paths = {p for p, _ in rx.posts}
        finally:
            rx.close()
    warns = [l for l in text.splitlines() if " WARN " in l]
    assert len(warns) == 2, warns
    assert f"OTLP export to http://127.0.0.1:{port}/v1/traces failed" in warns[0], warns
    assert "requests are served as usual" in warns[0]
    dropped = int(re.search(r"works again; (\d+) span\(s\) were dropped meanwhile", warns[1]).group(1))
    assert paths == {"/v1/traces"}
    # Five spans per request (infer and its four stages): every one either
    # arrived or was counted as dropped.
    assert spans + dropped == 4 * 5, (spans, dropped)


def test_triton_opentelemetry_mode_rate_zero_traces_only_sampled_contexts(collector):
    with serving(ROOT / "examples/models", "--trace-config", "mode=opentelemetry",
                 "--trace-config", f"opentelemetry,url=127.0.0.1:{collector.port}/v1/traces",
                 "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=0",
                 "--trace-config", "opentelemetry,resource=service.name=vision",
                 "--trace-config", "opentelemetry,bsp_schedule_delay=60000") as (proc, addr):
        http = addr["HTTP"]
        s = get(http, "/v2/trace/setting").json()
        assert s["trace_rate"] == "0" and s["trace_mode"] == "opentelemetry", s
        for k in range(3):
            infer_ok(http, "add", [[k, 0, 0, 0]], [[1, 1, 1, 1]])
        infer_ok(http, "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]],
                 headers={"traceparent": TRACEPARENT.format("a" * 32, "01")})
        infer_ok(http, "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]],
                 headers={"traceparent": TRACEPARENT.format("b" * 32, "00")})
        # gRPC metadata and the stream carry the context too.
        g = grpcclient.InferenceServerClient(addr["gRPC"])
        inputs = []
        for n in ("x", "y"):
            i = grpcclient.InferInput(n, [1, 4], "FP32")
            i.set_data_from_numpy(np.ones((1, 4), np.float32))
            inputs.append(i)
        g.infer("add", inputs, headers={"traceparent": TRACEPARENT.format("c" * 32, "01")})
        got = []
        g.start_stream(callback=lambda result, error: got.append(error),
                       headers={"traceparent": TRACEPARENT.format("d" * 32, "01")})
        g.async_stream_infer("add", inputs)
        g.async_stream_infer("add", inputs)
        assert wait_for(lambda: len(got) == 2, 5) and got == [None, None]
        g.stop_stream()
        stop_serve(proc)
    infer = collector.infer_spans()
    assert sorted(s["trace_id"][0] for s in infer) == ["a", "c", "d", "d"], [s["trace_id"] for s in infer]
    assert all(s["resource"]["service.name"] == "vision" for s in infer)
    assert sorted(s["attributes"]["protocol"] for s in infer) == ["grpc", "grpc", "grpc", "http"]


def test_anemone_rate_chooses_requests_even_with_a_client_context(collector):
    with serving(ROOT / "examples/models", "--otlp-endpoint", f"http://127.0.0.1:{collector.port}",
                 "--otlp-protocol", "http/protobuf", "--trace-rate", "2",
                 env={"OTEL_BSP_SCHEDULE_DELAY": "60000"}) as (proc, addr):
        for k in range(4):
            infer_ok(addr["HTTP"], "add", [[k, 0, 0, 0]], [[1, 1, 1, 1]],
                     headers={"traceparent": TRACEPARENT.format(f"{k + 1}" * 32, "01")})
        # A model turned OFF is not traced whatever the rate.
        r = post(addr["HTTP"], "/v2/models/add/trace/setting", {"trace_level": ["OFF"], "trace_rate": "1"})
        assert r.status_code == 200 and r.json()["trace_level"] == ["OFF"], r.text
        infer_ok(addr["HTTP"], "add", [[1, 1, 1, 1]], [[1, 1, 1, 1]],
                 headers={"traceparent": TRACEPARENT.format("9" * 32, "01")})
        stop_serve(proc)
    assert sorted(s["trace_id"] for s in collector.infer_spans()) == ["2" * 32, "4" * 32]


def test_dynamic_batch_spans(tmp_path, collector):
    repo = model(tmp_path / "repo", "addb", BATCHED +
                 'dynamic_batching { max_queue_delay_microseconds: 300000 preferred_batch_size: [ 3 ] }\n')
    with serving(repo, "--otlp-endpoint", f"http://127.0.0.1:{collector.port}", "--otlp-protocol",
                 "http/protobuf", env={"OTEL_BSP_SCHEDULE_DELAY": "60000"}) as (proc, addr):
        outs = {}

        def send(rows, k):
            outs[k] = infer_ok(addr["HTTP"], "addb", np.full((rows, 4), k), np.ones((rows, 4)))

        threads = [threading.Thread(target=send, args=(rows, k)) for k, rows in enumerate([2, 1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = get(addr["HTTP"], "/v2/models/addb/stats").json()["model_stats"][0]
        stop_serve(proc)
    assert len(outs) == 2
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [(3, 1)], stats
    assert (stats["execution_count"], stats["inference_count"]) == (1, 3), stats
    infer = collector.infer_spans()
    assert sorted(str(s["attributes"]["batch_size"]) for s in infer) == ["1", "2"]
    for s in infer:
        kids = {c["name"]: c for c in collector.spans if c["parent"] == s["span_id"]}
        assert set(kids) == {"compute_input", "queue", "batch_assembly", "compute_infer", "compute_output"}, kids
        for name in ("batch_assembly", "compute_infer", "compute_output"):
            a = kids[name]["attributes"]
            assert (str(a["batch_size"]), str(a["batch_requests"])) == ("3", "2"), (name, a)


def test_engine_spans_name_the_worker_thread(tmp_path, collector):
    repo = model(model(tmp_path / "repo", "add"), "addb", BATCHED + 'dynamic_batching { }\n')
    with serving(repo, "--otlp-endpoint", f"http://127.0.0.1:{collector.port}", "--otlp-protocol",
                 "http/protobuf", env={"OTEL_BSP_SCHEDULE_DELAY": "60000"}) as (proc, addr):
        infer_ok(addr["HTTP"], "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
        infer_ok(addr["HTTP"], "addb", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
        stop_serve(proc)
    threads = {s["attributes"]["thread.name"] for s in collector.spans if s["name"] == "compute_infer"}
    # A model without a queue runs on the shared workers; one with a queue
    # on its instance's own thread (OBSERVABILITY.md).
    assert len(threads) == 2, threads
    assert any(re.fullmatch(r"anemone-worker-\d+", t) for t in threads), threads
    assert "anemone-addb-instance-0" in threads, threads


# ------------------------------------------------------------------ metrics

def test_metrics_port_serves_only_metrics_with_the_http_ports_values(tmp_path):
    with serving(ROOT / "examples/models", "--triton-metrics", "true") as (proc, addr):
        http = addr["HTTP"]
        line = proc.stdout.readline()
        m = re.match(r"Metrics listening on (\S+)", line)
        assert m and not m.group(1).endswith(":8002"), line
        mport = m.group(1)
        infer_ok(http, "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
        assert post(http, "/v2/models/add/infer", BAD_SHAPE).status_code == 400
        assert post(http, "/v2/models/add/infer", data=b"not json").status_code == 400
        assert post(http, "/v2/models/nope/infer", add_body([[1, 2, 3, 4]], [[1, 1, 1, 1]])).status_code == 404
        assert get(mport, "/v2").status_code == 404
        assert get(mport, "/v2/models/add/stats").status_code == 404
        both = [metrics(http), metrics(mport)]
        stats = get(http, "/v2/models/add/stats").json()["model_stats"][0]["inference_stats"]
    for ms in both:
        assert sample(ms, "anemone_inference_request_success_total", model="add", version="1") == 1
        assert sample(ms, "anemone_inference_request_failure_total", model="add", version="1",
                      reason="invalid_input") >= 1
        # A malformed request or an unknown model is not Triton's failure.
        assert sum(v for (n, l), v in ms.items() if n == "nv_inference_request_failure") == 0
        assert not any(dict(l).get("model") == "nope" for (n, l) in ms)
    assert stats["fail"]["count"] == 0 and stats["success"]["count"] == 1, stats


def test_allow_metrics_false_opens_no_port_but_keeps_http_metrics():
    with serving(ROOT / "examples/models", "--allow-metrics", "false") as (proc, addr):
        line = proc.stdout.readline()
        assert line.startswith("MODEL"), f"no metrics address should be printed, got {line!r}"
        infer_ok(addr["HTTP"], "add", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
        ms = metrics(addr["HTTP"])
        assert sample(ms, "anemone_inference_request_success_total", model="add", version="1") == 1


@pytest.fixture(scope="module")
def queued(tmp_path_factory):
    """Models whose requests wait 300 ms for a batch: a queue of one, a queue
    timeout of 50 ms, a concurrency limit of one; and a cached model."""
    repo = tmp_path_factory.mktemp("queued")
    delay = 'dynamic_batching { max_queue_delay_microseconds: 300000 preferred_batch_size: [ 8 ] %s }\n'
    model(repo, "addq", BATCHED + delay % "default_queue_policy { max_queue_size: 1 }")
    model(repo, "addt", BATCHED + delay % "default_queue_policy { default_timeout_microseconds: 50000 }")
    model(repo, "addm", BATCHED + delay % "" + 'parameters { key: "max_concurrency" value: { string_value: "1" } }\n')
    model(repo, "addc", 'response_cache { enable: true }\n')
    with serving(repo, "--triton-metrics", "true", "--cache-config", "local,size=1MiB",
                 "--metrics-config", "summary_latencies=true",
                 "--metrics-config", "summary_quantiles=0.5:0.05,0.99:0.001") as (_, addr):
        http = addr["HTTP"]
        codes = {}
        for name in ("addq", "addt", "addm"):
            def send(k, name=name):
                r = post(http, f"/v2/models/{name}/infer", add_body([[k, 1, 1, 1]], [[1, 1, 1, 1]]))
                codes.setdefault(name, []).append(r.status_code)
            threads = [threading.Thread(target=send, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
                time.sleep(0.05)
            for t in threads:
                t.join()
        for _ in range(3):
            infer_ok(http, "addc", [[1, 2, 3, 4]], [[1, 1, 1, 1]])
        yield http, codes


def test_refusals_and_timeouts_by_reason_and_in_statistics(queued):
    http, codes = queued
    assert sorted(codes["addq"]) == [200, 503] and sorted(codes["addm"]) == [200, 429], codes
    assert codes["addt"] == [504, 504], codes
    ms = metrics(http)
    fail = lambda m, reason: sample(ms, "anemone_inference_request_failure_total", model=m, version="1",
                                    reason=reason)
    assert (fail("addq", "unavailable"), fail("addm", "overloaded"), fail("addt", "timeout")) == (1, 1, 2)
    stats = {m: get(http, f"/v2/models/{m}/stats").json()["model_stats"][0]["inference_stats"]
             for m in ("addq", "addt", "addm")}
    # Only requests that were queued and then failed are Triton's `fail`.
    assert [stats[m]["fail"]["count"] for m in ("addq", "addt", "addm")] == [0, 2, 0], stats
    assert stats["addt"]["fail"]["ns"] >= 2 * 50_000_000, stats["addt"]
    nv = lambda m: sample(ms, "nv_inference_request_failure", model=m, version="1", reason="REJECTED")
    assert (nv("addt"), nv("addm")) == (2, 1)


def test_full_queue_is_no_triton_failure(queued):
    """A full queue counts in anemone's family (`unavailable`), and in none
    of Triton's: tritonserver 2.51 refuses it before the model and counts it
    nowhere (read side by side, test_triton_side_observability.py)."""
    http, codes = queued
    assert sorted(codes["addq"]) == [200, 503], codes
    ms = metrics(http)
    assert sample(ms, "anemone_inference_request_failure_total", model="addq", version="1",
                  reason="unavailable") == 1
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert sample(ms, "nv_inference_request_failure", model="addq", version="1", reason=reason) == 0


def test_summaries_quantiles_and_counts(queued):
    http, _ = queued
    ms = metrics(http)
    quantiles = {dict(l)["quantile"] for (n, l) in ms if n == "nv_inference_request_summary_us"}
    assert quantiles == {"0.5", "0.99"}, quantiles
    count = sample(ms, "nv_inference_request_summary_us_count", model="addc", version="1")
    total = sample(ms, "nv_inference_request_summary_us_sum", model="addc", version="1")
    assert count == 3  # the two cache hits included
    assert abs(total - sample(ms, "nv_inference_request_duration_us", model="addc", version="1")) <= 1
    assert sample(ms, "nv_cache_num_hits_per_model", model="addc", version="1") == 2
    assert sample(ms, "anemone_cache_hits_total", model="addc", version="1") == 2
    # Compute summaries leave the cache's answers out: one engine call.
    assert sample(ms, "nv_inference_compute_infer_summary_us_count", model="addc", version="1") == 1
    q = [sample(ms, "nv_inference_request_summary_us", model="addc", version="1", quantile=k) for k in ("0.5", "0.99")]
    assert 0 < q[0] <= q[1] <= total, q


def test_queue_summary_includes_cache_hits(queued):
    http, _ = queued
    ms = metrics(http)
    assert sample(ms, "nv_inference_request_summary_us_count", model="addc", version="1") == 3
    assert sample(ms, "nv_inference_queue_summary_us_count", model="addc", version="1") == 3


def test_metric_names_follow_the_conventions(queued):
    http, _ = queued
    text = requests.get(f"http://{http}/metrics").text
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert types, text[:200]
    for name, kind in types.items():
        if not name.startswith("anemone_"):
            continue
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), (name, kind)
        assert not re.search(r"_(us|ms|micros|bytes_total_bytes)$", name), name
    for sample_name in set(re.findall(r"^(anemone_\w+?)(?:\{| )", text, re.M)):
        m = re.match(r"(.*)_(bucket|sum|count)$", sample_name)
        if m and sample_name not in types:
            assert types.get(m.group(1)) == "histogram", sample_name
    for renamed in ("anemone_inference_request_success", "anemone_inference_count",
                    "anemone_inference_request_duration_us", "anemone_cache_num_hits_per_model"):
        assert renamed not in types, renamed


def test_concurrency_limit_and_feature_gates_follow_run_time_changes(plain):
    http = plain["HTTP"]
    ms = metrics(http)
    gates = {dict(l)["gate"]: v for (n, l), v in ms.items() if n == "anemone_feature_gate"}
    assert gates and all(v == 1 for v in gates.values()) and "batching" in gates, gates
    before = sample(ms, "anemone_concurrency_limit")
    try:
        r = post(http, "/v2/anemone/config", {"max-concurrency": 7, "gate-batching": False})
        assert r.status_code == 200, r.text
        ms = metrics(http)
        assert sample(ms, "anemone_concurrency_limit") == 7
        assert sample(ms, "anemone_feature_gate", gate="batching") == 0
    finally:
        post(http, "/v2/anemone/config", {"max-concurrency": int(before), "gate-batching": True})
    assert sample(metrics(http), "anemone_concurrency_limit") == before


def test_trace_and_logging_are_restricted_groups_but_metrics_never():
    with serving(ROOT / "examples/models", "--http-restricted-api", "trace,logging:obs-key=s3cret",
                 "--grpc-restricted-protocol", "trace,logging:obs-key=s3cret") as (_, addr):
        http = addr["HTTP"]
        for path in ("/v2/trace/setting", "/v2/models/add/trace/setting", "/v2/logging"):
            r = get(http, path)
            assert r.status_code == 403 and "obs-key" in r.json()["error"] and "s3cret" not in r.text, (path, r.text)
            assert requests.get(f"http://{http}{path}", headers={"obs-key": "s3cret"}).status_code == 200, path
        assert get(http, "/metrics").status_code == 200
        assert get(http, "/v2/models/add/stats").status_code == 200
        g = grpcclient.InferenceServerClient(addr["gRPC"])
        for call in (g.get_trace_settings, g.get_log_settings):
            with pytest.raises(InferenceServerException) as e:
                call()
            assert "PERMISSION_DENIED" in str(e.value.status()), e.value
            assert call(headers={"triton-grpc-protocol-obs-key": "s3cret"}) is not None
