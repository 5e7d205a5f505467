"""`anemone bench` as README.md ("`anemone bench --model NAME ...`"),
docs/PERFORMANCE.md (the commands it shows) and `anemone bench --help`
describe it, tried against a running `anemone serve` over gRPC, HTTP with
JSON tensors and HTTP with binary tensors.

What is checked: the flags and defaults `--help` shows and what they do
(--requests across workers and over --duration, --warmup not counted,
--concurrency as workers on connections of their own with one request each
in flight, --input files, generated inputs and --shape/--dim-default,
--output, --model-version, sequences for a sequence model as perf_analyzer
sends them, the ANEMONE_BENCH_* environment variables); the report, as text
and as --json-report, and its consistency (p50 <= p90 <= p99 <= max, counts
that add up, the text and the JSON saying the same, the server's own
statistics counting what the report says was sent); failures (a server that
refuses every request or some, an unknown model, a server that goes away
mid-run, a bad URL, port or protocol) and exit statuses.

The server side is checked with the server's statistics and with Python
models that write down what they receive. No absolute timing is asserted:
durations only with wide margins.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_support import ROOT, start_serve, stop_serve, wait_ready

BIN = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
ADD = ROOT / "examples/models/add/1/model.onnx"
PROTOCOLS = ["grpc", "http", "http-binary"]

# ---------------------------------------------------------------- models

# `rec`: writes down, for every request, each input as it arrived (dtype,
# shape, values), the outputs asked for and the model's version.
REC_CONFIG = """
backend: "python"
version_policy: { all { } }
input [ { name: "f" data_type: TYPE_FP32 dims: [ -1, 3 ] },
        { name: "i" data_type: TYPE_INT64 dims: [ 2 ] },
        { name: "b" data_type: TYPE_BOOL dims: [ 4 ] },
        { name: "s" data_type: TYPE_STRING dims: [ 2 ] } ]
output [ { name: "o1" data_type: TYPE_FP32 dims: [ -1, 3 ] },
         { name: "o2" data_type: TYPE_INT64 dims: [ 2 ] } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""

REC_SOURCE = """
import json
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.log = json.loads(args["model_config"])["parameters"]["log"]["string_value"]
        self.version = args["model_version"]

    def execute(self, requests):
        out = []
        with open(self.log, "a") as f:
            for r in requests:
                rec = {"version": self.version, "outputs": sorted(r.requested_output_names())}
                for n in ("f", "i", "b", "s"):
                    a = pb_utils.get_input_tensor_by_name(r, n).as_numpy()
                    rec[n] = {"dtype": str(a.dtype), "shape": list(a.shape),
                              "values": [v.decode() if isinstance(v, bytes) else v for v in a.ravel().tolist()]}
                f.write(json.dumps(rec) + "\\n")
                x = pb_utils.get_input_tensor_by_name(r, "f").as_numpy()
                i = pb_utils.get_input_tensor_by_name(r, "i").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("o1", x * 2), pb_utils.Tensor("o2", i + 1)]))
        return out
"""

# `flaky`: every third request it executes fails (one instance, so any run
# of 3k consecutive requests has exactly k failures).
FLAKY_CONFIG = """
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""

FLAKY_SOURCE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.seen = 0

    def execute(self, requests):
        out = []
        for r in requests:
            self.seen += 1
            if self.seen % 3 == 0:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("every third request fails")))
            else:
                out.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]))
        return out
"""

# `slow10`: every tenth request it executes sleeps 0.15 s (one instance, so
# any 10 consecutive requests hold exactly one slow one).
SLOW10_SOURCE = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.seen = 0

    def execute(self, requests):
        out = []
        for r in requests:
            self.seen += 1
            if self.seen % 10 == 0:
                time.sleep(0.15)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]))
        return out
"""

# `seq`: a sequence model that writes down each request's correlation ID and
# its START/END controls.
SEQ_CONFIG = """
backend: "python"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""

SEQ_SOURCE = """
import json
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.log = json.loads(args["model_config"])["parameters"]["log"]["string_value"]

    def execute(self, requests):
        out = []
        with open(self.log, "a") as f:
            for r in requests:
                get = lambda n: int(pb_utils.get_input_tensor_by_name(r, n).as_numpy().ravel()[0])
                f.write(json.dumps([get("CORRID"), get("START"), get("END")]) + "\\n")
                out.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]))
        return out
"""

# `addb`: the add example behind a dynamic batcher that waits 50 ms for a
# batch to fill: with C workers each keeping one request in flight, the
# batches it forms are at most C requests, and usually exactly C.
ADDB_CONFIG = """
max_batch_size: 16
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { max_queue_delay_microseconds: 50000 }
"""


def add_repo(repo):
    (repo / "add" / "1").mkdir(parents=True)
    (repo / "add" / "1" / "model.onnx").write_bytes(ADD.read_bytes())
    return repo


class Srv:
    def __init__(self, proc, addresses, logs):
        self.proc = proc
        self.http = addresses["HTTP"]
        self.grpc = addresses["gRPC"]
        self.logs = logs

    def url(self, protocol):
        return "http://" + (self.grpc if protocol == "grpc" else self.http)

    def port(self, protocol):
        return int(self.url(protocol).rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = add_repo(tmp_path_factory.mktemp("bench_repo"))
    logs = tmp_path_factory.mktemp("bench_logs")
    for version in (1, 2):
        (repo / "rec" / str(version)).mkdir(parents=True)
        (repo / "rec" / str(version) / "model.py").write_text(REC_SOURCE)
    (repo / "rec" / "config.pbtxt").write_text(REC_CONFIG.replace("LOG", str(logs / "rec.log")))
    (repo / "flaky" / "1").mkdir(parents=True)
    (repo / "flaky" / "config.pbtxt").write_text(FLAKY_CONFIG)
    (repo / "flaky" / "1" / "model.py").write_text(FLAKY_SOURCE)
    (repo / "slow10" / "1").mkdir(parents=True)
    (repo / "slow10" / "config.pbtxt").write_text(FLAKY_CONFIG)
    (repo / "slow10" / "1" / "model.py").write_text(SLOW10_SOURCE)
    (repo / "seq" / "1").mkdir(parents=True)
    (repo / "seq" / "config.pbtxt").write_text(SEQ_CONFIG.replace("LOG", str(logs / "seq.log")))
    (repo / "seq" / "1" / "model.py").write_text(SEQ_SOURCE)
    (repo / "addb" / "1").mkdir(parents=True)
    (repo / "addb" / "1" / "model.onnx").write_bytes(ADD.read_bytes())
    (repo / "addb" / "config.pbtxt").write_text(ADDB_CONFIG)
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        yield Srv(proc, addresses, logs)
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- helpers


def bench(*args, env=None, timeout=60):
    """Runs `anemone bench ARGS`; the environment has no ANEMONE_BENCH_* of the caller's."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANEMONE_BENCH_")}
    full_env.update(env or {})
    return subprocess.run([str(BIN), "bench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def run_json(tmp_path, *args, expect=0, **kw):
    """Runs bench with --json-report; returns (process, report)."""
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    out = bench(*args, "--json-report", report, **kw)
    assert out.returncode == expect, out.stdout + out.stderr
    return out, json.loads(report.read_text())


def stats(srv, model, version=None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/stats"
    [s] = requests.get(f"http://{srv.http}{path}", timeout=10).json()["model_stats"]
    return s


def counts(srv, model, version=None):
    """(successes, failures) in the server's statistics."""
    s = stats(srv, model, version)["inference_stats"]
    return s["success"]["count"], s["fail"]["count"]


def batches(srv, model):
    return {b["batch_size"]: b["compute_infer"]["count"] for b in stats(srv, model).get("batch_stats", [])}


def rows(text):
    """The text report as {label: value}; the unlabelled rows under
    `requests` (failures by kind) as a list under `requests+`."""
    out, extra = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):
            extra.append(line.strip())
            continue
        label, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        out[label] = value
    out["requests+"] = extra
    return out


def micros(text):
    """`87.3 µs`, `1.25 ms`, `2.04 s` in microseconds, with the precision shown."""
    number, unit = text.split()
    scale = {"µs": 1, "ms": 1e3, "s": 1e6}[unit]
    decimals = len(number.split(".")[1]) if "." in number else 0
    return float(number) * scale, 0.5 * 10 ** -decimals * scale


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def established(port, pid=None):
    """TCP connections established to local port `port` (server side), from
    /proc/net/tcp; with `pid`, those of process `pid` to port `port` (its
    client sockets, by their inodes), which no other client's can be."""
    inodes = None
    if pid is not None:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            side = fields[1] if inodes is None else fields[2]
            if fields[3] == "01" and int(side.rsplit(":", 1)[1], 16) == port \
                    and (inodes is None or fields[9] in inodes):
                n += 1
    return n


def check_consistent(report):
    """What every report must satisfy: counts that add up and ordered percentiles."""
    assert report["errors"] == sum(report["errors_by_status"].values()), report
    if report["args"]["requests"] is not None and not report["interrupted"]:
        assert report["requests"] + report["errors"] == report["args"]["requests"], report
    lat = report["latency_us"]
    if report["requests"] == 0:
        assert lat is None, report
        assert report["throughput_rps"] == 0, report
    else:
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat
        assert 0 < lat["mean"] <= lat["max"], lat
        if report["duration_s"] > 0.01:
            want = report["requests"] / report["duration_s"]
            assert abs(report["throughput_rps"] - want) <= 0.01 * want + 0.1, report
    assert (report["first_error"] is None) == (report["errors"] == 0 and report["warmup_errors"] == 0), report


# ---------------------------------------------------------------- --help


def test_help_shows_the_documented_flags_and_their_defaults():
    """README's synopsis (`--model NAME [--protocol grpc|http|http-binary]
    [--concurrency N] [--duration S | --requests N]`, `--json-report`,
    `--input NAME=FILE.npy`, `--sequence-length` 20 by default as
    perf_analyzer, `--sequence-id-range START[:END]` 1 by default) is what
    `anemone bench --help` offers, with the defaults it states."""
    out = bench("--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for flag in ("--model <NAME>", "--protocol <PROTOCOL>", "--concurrency <N>", "--duration <SECS>",
                 "--requests <N>", "--json-report <FILE>", "--input <NAME=FILE>", "--shape <NAME=DIMS>",
                 "--warmup <N>", "--dim-default <N>", "--output <NAME>", "--model-version <V>",
                 "--sequence-length <N>", "--sequence-id-range <START[:END]>", "--url <URL>"):
        assert flag in text, flag
    for value in ("http:", "http-binary:", "grpc:"):
        assert value in text, value

    def block(flag):
        start = text.index(flag)
        nxt = re.search(r"\n\s+(-\w, )?--[a-z]", text[start + len(flag):])
        return text[start:start + len(flag) + (nxt.start() if nxt else len(text))]

    assert "[default: grpc]" in block("--protocol <PROTOCOL>")
    assert "[default: 1]" in block("--concurrency <N>")
    assert "[default: 10]" in block("--duration <SECS>")
    assert "[default: 10]" in block("--warmup <N>")
    assert "[default: 20]" in block("--sequence-length <N>")
    assert "[default: 1]" in block("--sequence-id-range <START[:END]>")
    assert "[default: 1]" in block("--dim-default <N>")
    assert "8000" in block("--url <URL>") and "8001" in block("--url <URL>")
    short = bench("-h")
    assert short.returncode == 0 and "--model" in short.stdout


def test_model_is_required_and_a_bad_protocol_is_refused_with_the_choices():
    """--help: `--model` is required (no default); `--protocol` takes grpc,
    http or http-binary. Usage errors exit 2 and send nothing."""
    out = bench("--requests", "1")
    assert out.returncode == 2 and "--model" in out.stderr, out.stderr
    out = bench("--model", "add", "--protocol", "rest", "--requests", "1")
    assert out.returncode == 2, out.stderr
    for value in ("grpc", "http", "http-binary"):
        assert value in out.stderr
    out = bench("--model", "", "--requests", "1", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode != 0 and "--model" in out.stderr, out.stderr


# ---------------------------------------------------------------- the report


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_report_over_each_protocol_counts_what_the_server_counted(srv, tmp_path, protocol):
    """README: bench prints throughput and p50/p90/p99/max latency and writes
    a JSON report with --json-report; --requests N measured requests after
    --warmup requests that are not counted. The server's statistics count
    N + warm-up successes, and the report's fields say what was run."""
    before = counts(srv, "add")
    out, report = run_json(tmp_path, "--model", "add", "--url", srv.url(protocol), "--protocol", protocol,
                           "--requests", 25, "--warmup", 3)
    after = counts(srv, "add")
    assert (after[0] - before[0], after[1] - before[1]) == (28, 0)
    check_consistent(report)
    assert report["protocol"] == protocol and report["url"] == srv.url(protocol)
    assert report["model"] == "add" and report["model_version"] is None
    assert (report["concurrency"], report["requests"], report["errors"]) == (1, 25, 0)
    assert (report["warmup"], report["warmup_errors"], report["interrupted"]) == (3, 0, False)
    assert report["errors_by_status"] == {} and report["first_error"] is None
    assert report["args"] == {"requests": 25, "duration_s": None, "dim_default": 1, "outputs": [],
                              "request_timeout_s": 60.0}
    assert report["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [1, 4]},
                                {"name": "y", "datatype": "FP32", "shape": [1, 4]}]
    assert report["sequence_length"] is None and report["first_sequence_id"] is None
    r = rows(out.stdout)
    assert r["protocol"] == protocol and r["url"] == srv.url(protocol) and r["model"] == "add"
    assert r["inputs"] == "x FP32 [1, 4], y FP32 [1, 4]"
    assert r["concurrency"] == "1" and r["requests"] == "25 ok, 0 failed"
    for name in ("throughput", "latency p50", "latency p90", "latency p99", "latency max", "latency mean"):
        assert name in r, r


def test_text_and_json_reports_say_the_same(srv, tmp_path):
    """The report for people and the one --json-report writes are the same
    figures: requests, wall time, throughput and each latency (within the
    rounding each shows)."""
    out, report = run_json(tmp_path, "--model", "add", "--url", srv.url("http-binary"), "--protocol",
                           "http-binary", "--requests", 60, "--concurrency", 2, "--warmup", 2)
    check_consistent(report)
    r = rows(out.stdout)
    assert r["requests"] == f"{report['requests']} ok, {report['errors']} failed"
    wall = float(r["wall time"].split()[0])
    assert abs(wall - report["duration_s"]) <= 0.0006, (r, report)
    assert abs(float(r["throughput"].split()[0]) - report["throughput_rps"]) <= 0.11, (r, report)
    for name in ("p50", "p90", "p99", "max", "mean"):
        value, precision = micros(r[f"latency {name}"])
        assert abs(value - report["latency_us"][name]) <= precision + 0.06, (name, r, report)


def test_percentiles_of_one_and_of_two_requests(srv, tmp_path):
    """p50/p90/p99/max come from the measured latencies: of one request they
    are all that request's latency (and so is the mean); of two, p50 is a
    median of the two, the mean lies between it and the max, and the
    percentiles are ordered."""
    _, one = run_json(tmp_path, "--model", "add", "--url", srv.url("grpc"), "--requests", 1, "--warmup", 1)
    lat = one["latency_us"]
    assert lat["p50"] == lat["p90"] == lat["p99"] == lat["max"] == lat["mean"], lat
    _, two = run_json(tmp_path, "--model", "add", "--url", srv.url("grpc"), "--requests", 2, "--warmup", 1)
    check_consistent(two)
    lat = two["latency_us"]
    assert lat["p50"] <= lat["mean"] <= lat["max"], lat
    # The smaller of the two (nearest rank) or their mean (interpolated).
    assert abs(lat["p50"] + lat["max"] - 2 * lat["mean"]) <= 0.25 or abs(lat["p50"] - lat["mean"]) <= 0.1, lat


@pytest.mark.parametrize("line", [
    # `anemone serve`: what the server adds (20000 requests, 500 warm-ups there).
    "--model add --protocol grpc --url GRPC --requests 20 --concurrency 1 --warmup 5",
    "--model add --protocol http-binary --url HTTP --requests 20 --concurrency 1 --warmup 5",
    # gRPC latency on small requests (N = 128 there; 1000 requests, 50 warm-ups).
    "-n 20 --warmup 5 -c 1 --shape x=128,4 --shape y=128,4 --url GRPC",
    "-c 2 -d 0.3 --warmup 5 --url GRPC",
    "--protocol http-binary -c 1 -d 0.3 --url HTTP",
    "-c 2 -d 0.3 --protocol grpc --url GRPC",
])
def test_the_command_lines_in_performance_md_run(srv, tmp_path, line):
    """docs/PERFORMANCE.md's `anemone bench` command lines (with smaller
    counts and durations) run against `anemone serve` and report no failure;
    a --shape reaches the request."""
    args = line.replace("GRPC", srv.url("grpc")).replace("HTTP", srv.url("http")).split()
    if "--model" not in args:
        args = ["--model", "add", *args]
    _, report = run_json(tmp_path, *args)
    check_consistent(report)
    assert report["requests"] > 0 and report["errors"] == 0 and report["warmup_errors"] == 0, report
    if "--shape" in args:
        assert [i["shape"] for i in report["inputs"]] == [[128, 4], [128, 4]]


def test_a_json_report_that_cannot_be_written_fails_the_command(srv, tmp_path):
    """--json-report FILE "also" writes the report: the text report is still
    printed, and a file that cannot be written is an error (exit 1)."""
    out = bench("--model", "add", "--url", srv.url("grpc"), "-n", 2, "--json-report", tmp_path / "no/such/dir/r.json")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "2 ok, 0 failed" in out.stdout and "no/such/dir/r.json" in out.stderr, out.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_percentiles_are_of_the_measured_latencies(srv, tmp_path, protocol):
    """p50/p90/p99/max are percentiles of the requests' own latencies, each
    one a latency that was measured, as perf_analyzer reports them: of 10
    requests with one slow (0.15 s of sleep in the model), p99 and max are
    the slow one and p50 and p90 fast ones; the mean carries a tenth of the
    sleep. Only lower bounds of the sleep and a wide margin are used."""
    _, report = run_json(tmp_path, "--model", "slow10", "--url", srv.url(protocol), "--protocol", protocol,
                         "-n", 10, "--warmup", 0)
    check_consistent(report)
    lat = report["latency_us"]
    assert lat["max"] >= 150_000 and lat["p99"] == lat["max"], lat
    assert lat["p90"] < 150_000 and lat["p50"] < 150_000, lat
    assert lat["mean"] >= 15_000, lat


# ---------------------------------------------------------------- requests, duration, warm-up, workers


def test_requests_are_counted_across_workers_and_warm_up_is_not(srv, tmp_path):
    """--help: --requests N is the measured requests "in all, across workers";
    --warmup requests are "not counted". 3 workers, 10 requests (not a
    multiple of 3), 5 warm-ups: the server sees 15, the report 10."""
    before = counts(srv, "add")
    _, report = run_json(tmp_path, "--model", "add", "--url", srv.url("http"), "--protocol", "http",
                         "-c", 3, "-n", 10, "--warmup", 5)
    assert counts(srv, "add")[0] - before[0] == 15
    assert (report["requests"], report["warmup"], report["concurrency"]) == (10, 5, 3)
    before = counts(srv, "add")
    _, report = run_json(tmp_path, "--model", "add", "--url", srv.url("grpc"), "-c", 4, "-n", 7, "--warmup", 0)
    assert counts(srv, "add")[0] - before[0] == 7 and report["requests"] == 7


def test_warm_up_is_10_requests_by_default(srv, tmp_path):
    """--help: --warmup [default: 10]."""
    before = counts(srv, "add")
    _, report = run_json(tmp_path, "--model", "add", "--url", srv.url("grpc"), "-n", 4)
    assert counts(srv, "add")[0] - before[0] == 14
    assert report["warmup"] == 10 and report["requests"] == 4


def test_requests_take_precedence_over_duration(srv, tmp_path):
    """--help: --duration is "ignored when --requests is given"; --requests
    "takes precedence over --duration". A 60 s duration with 5 requests
    ends after the 5."""
    start = time.monotonic()
    _, report = run_json(tmp_path, "--model", "add", "--url", srv.url("grpc"), "--duration", 60,
                         "--requests", 5, "--warmup", 0, timeout=50)
    assert time.monotonic() - start < 30
    assert report["requests"] == 5 and report["args"]["requests"] == 5 and report["args"]["duration_s"] is None
    assert report["duration_s"] < 30


def test_duration_decides_without_requests(srv, tmp_path):
    """--help: --duration SECS: "Seconds to send measured requests for"
    (PERFORMANCE.md runs `anemone bench -c C -d 10`). A 0.6 s run measures
    for about 0.6 s, and the server counts what the report says was sent
    plus the warm-up."""
    before = counts(srv, "add")
    start = time.monotonic()
    _, report = run_json(tmp_path, "--model", "add", "--url", srv.url("http"), "--protocol", "http",
                         "-c", 2, "-d", 0.6, "--warmup", 4)
    took = time.monotonic() - start
    check_consistent(report)
    assert counts(srv, "add")[0] - before[0] == report["requests"] + 4
    assert report["args"] == {"requests": None, "duration_s": 0.6, "dim_default": 1, "outputs": [],
                              "request_timeout_s": 60.0}
    # (At least 0.6 s but for the wall-time defect below, which can take a few ms off.)
    assert 0.55 <= report["duration_s"] < 10, report
    assert report["duration_s"] <= took
    assert report["requests"] > 0 and report["errors"] == 0


def test_wall_time_covers_every_measured_request(srv, tmp_path):
    """The report's wall time is "from the start of the measured phase until
    its last answer" and throughput is requests per wall second: with one
    worker, whose requests follow one another, the wall time is at least
    the sum of the measured latencies (mean x requests). Checked over 30
    short runs with the bench on one CPU (where the main task is scheduled
    after the worker), allowing for the report's rounding."""
    cpu = min(os.sched_getaffinity(0))
    short = []
    for k in range(30):
        report = tmp_path / f"w{k}.json"
        out = subprocess.run([str(BIN), "bench", "--model", "add", "--url", srv.url("grpc"), "-n", "3", "-c", "1",
                              "--warmup", "2", "--json-report", str(report)], capture_output=True, text=True,
                             timeout=60, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        assert out.returncode == 0, out.stderr
        data = json.loads(report.read_text())
        busy = data["latency_us"]["mean"] * data["requests"]
        if data["duration_s"] * 1e6 + 1.0 < busy:
            short.append((data["duration_s"] * 1e6, busy))
    assert not short, f"wall time (µs) shorter than the latencies it holds: {short}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_worker_has_a_connection_of_its_own(srv, protocol):
    """--help: --concurrency N: "Workers, each sending one request at a time
    on a connection of its own". During a run with 3 workers the bench holds
    3 connections to the server. (Counted among the bench's own sockets: the
    server's side also counts other clients of this test file's shared
    server, which a loaded run once showed as 8.)"""
    port = srv.port(protocol)
    proc = subprocess.Popen([str(BIN), "bench", "--model", "add", "--url", srv.url(protocol), "--protocol",
                             protocol, "-c", "3", "-d", "1.5", "--warmup", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen, server_side = [], []
        deadline = time.monotonic() + 1.2
        time.sleep(0.4)
        while time.monotonic() < deadline:
            seen.append(established(port, proc.pid))
            server_side.append(established(port))
            time.sleep(0.1)
    finally:
        err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0, err
    assert max(seen) == 3 and seen.count(3) >= len(seen) // 2, (seen, server_side)


@pytest.mark.parametrize("workers", [1, 4])
def test_workers_keep_one_request_each_in_flight(srv, tmp_path, workers):
    """--help: each worker sends "one request at a time". Behind a dynamic
    batcher that waits 50 ms for a batch (max_batch_size 16), the batches
    the server forms hold at most --concurrency requests, and with every
    worker waiting, exactly that many."""
    before = batches(srv, "addb")
    _, report = run_json(tmp_path, "--model", "addb", "--url", srv.url("grpc"), "-c", workers, "-n", 4 * workers,
                         "--warmup", workers)
    after = batches(srv, "addb")
    formed = {size: n - before.get(size, 0) for size, n in after.items() if n - before.get(size, 0)}
    assert report["requests"] == 4 * workers and report["errors"] == 0
    assert sum(size * n for size, n in formed.items()) == 5 * workers, formed
    assert max(formed) == workers, formed
    assert report["inputs"][0]["shape"] == [1, 4]


# ---------------------------------------------------------------- inputs, shapes, outputs, versions


def test_generated_inputs_follow_the_metadata_and_dim_default(srv, tmp_path):
    """README: inputs not given "are generated from the model's metadata";
    --help: "the declared shape with dynamic dimensions set to --dim-default"
    (1 by default), of the declared datatype, strings included; the same
    request every time. The report's inputs row and JSON say so."""
    log = srv.logs / "rec.log"
    log.unlink(missing_ok=True)
    out, report = run_json(tmp_path, "--model", "rec", "--url", srv.url("grpc"), "-n", 3, "--warmup", 0)
    seen = read_log(log)
    assert len(seen) == 3 and all(s == seen[0] for s in seen), seen
    s = seen[0]
    assert (s["f"]["dtype"], s["f"]["shape"]) == ("float32", [1, 3])
    assert (s["i"]["dtype"], s["i"]["shape"]) == ("int64", [2])
    assert (s["b"]["dtype"], s["b"]["shape"]) == ("bool", [4])
    assert (s["s"]["dtype"], s["s"]["shape"]) == ("object", [2])
    assert all(isinstance(v, str) for v in s["s"]["values"])
    assert s["outputs"] == ["o1", "o2"], "by default every output"
    assert rows(out.stdout)["inputs"] == "f FP32 [1, 3], i INT64 [2], b BOOL [4], s BYTES [2]"
    assert [(i["name"], i["datatype"], i["shape"]) for i in report["inputs"]] == [
        ("f", "FP32", [1, 3]), ("i", "INT64", [2]), ("b", "BOOL", [4]), ("s", "BYTES", [2])]

    log.unlink()
    _, report = run_json(tmp_path, "--model", "rec", "--url", srv.url("http"), "--protocol", "http", "-n", 1,
                         "--warmup", 0, "--dim-default", 3)
    [s] = read_log(log)
    assert s["f"]["shape"] == [3, 3] and report["args"]["dim_default"] == 3
    assert report["inputs"][0]["shape"] == [3, 3]

    log.unlink()
    _, report = run_json(tmp_path, "--model", "rec", "--url", srv.url("http-binary"), "--protocol", "http-binary",
                         "-n", 1, "--warmup", 0, "--dim-default", 3, "--shape", "f=5,3")
    [s] = read_log(log)
    assert s["f"]["shape"] == [5, 3] and report["inputs"][0]["shape"] == [5, 3], "--shape wins over --dim-default"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_input_files_are_sent_as_they_are_and_output_asks_for_one(srv, tmp_path, protocol):
    """README: "Inputs come from `--input NAME=FILE.npy`"; --help: inputs
    not given are generated; --output NAME asks for only that output. The
    model receives the files' arrays exactly (numpy's), over each protocol."""
    f = (np.arange(6, dtype=np.float32) / 7 - 0.25).reshape(2, 3)
    i = np.array([5, -3], dtype=np.int64)
    s = np.array([b"hello", b"w"], dtype="S5")
    np.save(tmp_path / "f.npy", f)
    np.save(tmp_path / "i.npy", i)
    np.save(tmp_path / "s.npy", s)
    log = srv.logs / "rec.log"
    log.unlink(missing_ok=True)
    out, report = run_json(tmp_path, "--model", "rec", "--url", srv.url(protocol), "--protocol", protocol,
                           "-n", 2, "--warmup", 0, "-i", f"f={tmp_path / 'f.npy'}", "--input",
                           f"i={tmp_path / 'i.npy'}", "-i", f"s={tmp_path / 's.npy'}", "-o", "o2")
    seen = read_log(log)
    assert len(seen) == 2, seen
    for got in seen:
        np.testing.assert_array_equal(np.array(got["f"]["values"], np.float32).reshape(got["f"]["shape"]), f)
        assert got["f"]["dtype"] == "float32"
        np.testing.assert_array_equal(np.array(got["i"]["values"]).reshape(got["i"]["shape"]), i)
        assert got["s"]["values"] == ["hello", "w"]
        assert got["b"]["shape"] == [4] and got["b"]["dtype"] == "bool"
        assert got["outputs"] == ["o2"]
    assert report["args"]["outputs"] == ["o2"]
    assert [(x["name"], x["shape"]) for x in report["inputs"]] == [("f", [2, 3]), ("i", [2]), ("b", [4]), ("s", [2])]


def test_model_version_picks_the_version(srv, tmp_path):
    """--help: --model-version V: "By default, the server's choice". With
    versions 1 and 2 served, --model-version 1 reaches version 1, and the
    report names it; without it, the server's choice (Triton's: the
    highest)."""
    log = srv.logs / "rec.log"
    log.unlink(missing_ok=True)
    out, report = run_json(tmp_path, "--model", "rec", "--model-version", 1, "--url", srv.url("grpc"), "-n", 2,
                           "--warmup", 0)
    assert [s["version"] for s in read_log(log)] == ["1", "1"]
    assert report["model_version"] == "1"
    assert rows(out.stdout)["model"] == "rec (version 1)"
    log.unlink()
    _, report = run_json(tmp_path, "--model", "rec", "--url", srv.url("http"), "--protocol", "http", "-n", 2,
                         "--warmup", 0)
    assert [s["version"] for s in read_log(log)] == ["2", "2"]
    assert report["model_version"] is None
    log.unlink()
    out = bench("--model", "rec", "--model-version", 7, "--url", srv.url("http"), "--protocol", "http", "-n", 1)
    assert out.returncode == 1 and "version 7" in out.stderr, out.stderr


@pytest.mark.parametrize("flags, words", [
    (["--shape", "x=2,5"], ["does not fit", "x"]),
    (["--shape", "w=1,4"], ["no input 'w'", "'x', 'y'"]),
    (["--output", "nosuch"], ["no output 'nosuch'", "sum"]),
    (["--shape", "x=1,4", "--shape", "x=2,4"], ["--shape", "more than once"]),
    (["--shape", "x=1,four"], ["--shape", "x=1,four"]),
    (["--input", "x.npy"], ["NAME=FILE"]),
    (["--input", "x=/nonexistent/x.npy"], ["/nonexistent/x.npy"]),
    (["--input", "x=INTS", ], ["INT64", "FP32"]),
    (["--input", "x=XS", "--shape", "x=1,4"], ["both"]),
])
def test_inputs_that_cannot_work_are_refused_before_any_request(srv, tmp_path, flags, words):
    """Bad --shape/--input/--output (a shape that does not fit the declared
    one, a name the model does not have, a file of the wrong datatype, a
    malformed argument) stop the run with a message saying what is wrong,
    exit status 1, and no inference request reaches the server."""
    np.save(tmp_path / "ints.npy", np.ones((1, 4), np.int64))
    np.save(tmp_path / "xs.npy", np.ones((1, 4), np.float32))
    flags = [f.replace("INTS", str(tmp_path / "ints.npy")).replace("XS", str(tmp_path / "xs.npy")) for f in flags]
    before = counts(srv, "add")
    report = tmp_path / "r.json"
    out = bench("--model", "add", "--url", srv.url("grpc"), "-n", 3, "--json-report", report, *flags)
    assert out.returncode == 1, out.stdout + out.stderr
    for word in words:
        assert word in out.stderr, out.stderr
    assert "panicked" not in out.stderr
    assert counts(srv, "add") == before
    assert not report.exists()


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("protocol, status", [("grpc", "gRPC InvalidArgument"), ("http", "HTTP 400"),
                                              ("http-binary", "HTTP 400")])
def test_a_server_that_refuses_every_request(srv, tmp_path, protocol, status):
    """A request the server refuses (here an input file of the wrong shape:
    [1, 5] where the model takes [batch, 4]) is counted as failed, by its
    status, with the server's message as the first error; the warm-up's
    failures are reported apart. No request succeeded: no latency, and the
    command fails (exit 1) after writing both reports."""
    np.save(tmp_path / "x15.npy", np.ones((1, 5), np.float32))
    before = counts(srv, "add")
    out, report = run_json(tmp_path, "--model", "add", "--url", srv.url(protocol), "--protocol", protocol,
                           "-n", 6, "-c", 2, "--warmup", 2, "-i", f"x={tmp_path / 'x15.npy'}", expect=1)
    assert counts(srv, "add")[0] == before[0], "nothing succeeded"
    check_consistent(report)
    assert (report["requests"], report["errors"], report["warmup_errors"]) == (0, 6, 2)
    assert report["errors_by_status"] == {status: 6}
    assert report["first_error"].startswith(status) and "'x'" in report["first_error"], report
    assert report["latency_us"] is None and report["throughput_rps"] == 0
    r = rows(out.stdout)
    assert r["requests"] == "0 ok, 6 failed" and r["requests+"] == [f"6 × {status}"], r
    assert r["warm-up"] == "2 of 2 failed"
    assert "'x'" in r["first error"]
    assert "every request failed" in out.stderr


@pytest.mark.parametrize("protocol, status", [("grpc", "gRPC Internal"), ("http-binary", "HTTP 500")])
def test_some_failures_are_counted_and_the_run_goes_on(srv, tmp_path, protocol, status):
    """A model that fails every third request: the report counts the
    failures by status and the successes apart, the latencies are of the
    successes, the counts add up to --requests and agree with the server's
    statistics; the run goes on and exits 0."""
    before = counts(srv, "flaky")
    out, report = run_json(tmp_path, "--model", "flaky", "--url", srv.url(protocol), "--protocol", protocol,
                           "-n", 30, "--warmup", 3)
    after = counts(srv, "flaky")
    assert (after[0] - before[0], after[1] - before[1]) == (22, 11)
    check_consistent(report)
    assert (report["requests"], report["errors"], report["warmup_errors"]) == (20, 10, 1), report
    assert report["errors_by_status"] == {status: 10}
    assert "every third request fails" in report["first_error"]
    r = rows(out.stdout)
    assert r["requests"] == "20 ok, 10 failed" and r["requests+"] == [f"10 × {status}"], r
    assert r["warm-up"] == "1 of 3 failed"
    assert "latency p50" in r


@pytest.mark.parametrize("protocol, status", [("grpc", "timeout"), ("http-binary", "timeout")])
def test_an_answer_later_than_the_request_timeout_counts_as_failed(srv, tmp_path, protocol, status):
    """`--request-timeout SECS` (`anemone bench --help`): a request not
    answered by then counts as failed ("timeout") and the run goes on.
    `slow10` sleeps 0.15 s on every tenth request, so 20 requests hold two
    that a 0.1 s limit cuts off (a request queued behind one may be cut off
    too on a slow machine: at least two, all of them "timeout")."""
    out, report = run_json(tmp_path, "--model", "slow10", "--url", srv.url(protocol), "--protocol", protocol,
                           "-n", 20, "--warmup", 0, "--request-timeout", "0.1")
    check_consistent(report)
    assert report["requests"] + report["errors"] == 20, report
    assert report["errors"] >= 2 and report["requests"] >= 14, report
    assert set(report["errors_by_status"]) == {status}, report
    assert "--request-timeout" in report["first_error"], report
    assert report["latency_us"]["max"] < 100_000, report


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_never_answers_ends_the_run_at_the_request_timeout(tmp_path, protocol):
    """A server that takes connections and never answers (a wrong port, a
    hung process) does not hang `anemone bench`: the metadata request at the
    start is bounded by --request-timeout, and the command exits 1 saying so."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        t0 = time.monotonic()
        out = bench("--model", "add", "--url", f"http://127.0.0.1:{port}", "--protocol", protocol,
                    "-n", 3, "--request-timeout", "1", timeout=30)
        took = time.monotonic() - t0
    finally:
        listener.close()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "did not answer" in out.stderr and "within 1 s (--request-timeout)" in out.stderr, out.stderr
    assert took < 15, took


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_model_stops_the_run_before_it_starts(srv, tmp_path, protocol):
    """The run starts by reading the model's metadata: an unknown model is
    named in the error, the command exits 1 and writes no report."""
    report = tmp_path / "r.json"
    out = bench("--model", "nosuch", "--url", srv.url(protocol), "--protocol", protocol, "-n", 3,
                "--json-report", report)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "'nosuch'" in out.stderr and srv.url(protocol) in out.stderr, out.stderr
    assert not report.exists() and out.stdout == ""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_goes_away_mid_run(tmp_path, protocol):
    """A server killed mid-run: the requests after it are counted as
    connection failures, the run still ends at --duration (it does not hang
    or crash), the report keeps the successes from before, and the counts
    add up."""
    proc, addresses = start_serve(add_repo(tmp_path / "repo"), "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        url = "http://" + (addresses["gRPC"] if protocol == "grpc" else addresses["HTTP"])
        report = tmp_path / "r.json"
        start = time.monotonic()
        run = subprocess.Popen([str(BIN), "bench", "--model", "add", "--url", url, "--protocol", protocol,
                                "-c", "2", "-d", "1.5", "--warmup", "2", "--json-report", str(report)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.6)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    stdout, stderr = run.communicate(timeout=60)
    took = time.monotonic() - start
    assert run.returncode == 0, stdout + stderr
    assert took < 20
    data = json.loads(report.read_text())
    check_consistent(data)
    assert data["requests"] > 0 and data["errors"] > 0, data
    assert set(data["errors_by_status"]) == {"connection"}, data
    assert data["first_error"].startswith("connection"), data
    assert 1.45 <= data["duration_s"] < 10
    r = rows(stdout)
    assert r["requests"] == f"{data['requests']} ok, {data['errors']} failed"
    assert r["requests+"] == [f"{data['errors']} × connection"]


def test_a_server_that_goes_away_during_a_counted_run_still_ends_at_the_count(tmp_path):
    """With --requests N and the server killed mid-run, the run still ends
    once N requests were tried: successes and failures add up to N."""
    proc, addresses = start_serve(add_repo(tmp_path / "repo"), "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        report = tmp_path / "r.json"
        run = subprocess.Popen([str(BIN), "bench", "--model", "add", "--url", "http://" + addresses["HTTP"],
                                "--protocol", "http", "-c", "2", "-n", "40", "--warmup", "2",
                                "--shape", "x=50000,4", "--shape", "y=50000,4", "--json-report", str(report)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # 800 KB per input as JSON: tens of ms a request, so 40 take a while.
        # The server goes once the run is under way (its warm-up and a
        # request answered): a fixed wait let a loaded machine kill it while
        # bench was still asking for the metadata, so no run ever started.
        deadline = time.monotonic() + 60
        url = f"http://{addresses['HTTP']}/v2/models/add/stats"
        while requests.get(url, timeout=10).json()["model_stats"][0]["inference_stats"]["success"]["count"] < 3:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate(timeout=10)
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    stdout, stderr = run.communicate(timeout=60)
    data = json.loads(report.read_text())
    check_consistent(data)
    assert data["requests"] + data["errors"] == 40
    assert run.returncode == (0 if data["requests"] else 1), stdout + stderr
    assert data["errors"] > 0 and set(data["errors_by_status"]) == {"connection"}, data


def test_connections_aged_by_the_server_lose_no_call(tmp_path):
    """docs/SERVING.md: with --grpc-max-connection-age, `anemone bench`
    sends again a call queued on a connection that closed before sending
    it, as grpc-core does ("with connections aged every 100 ms, 4 clients
    for 3 s: no call failed")."""
    proc, addresses = start_serve(add_repo(tmp_path / "repo"), "--metrics-port", "0",
                                  "--grpc-max-connection-age", "100", "--grpc-max-connection-age-grace", "1000")
    try:
        wait_ready(addresses["HTTP"])
        _, report = run_json(tmp_path, "--model", "add", "--url", "http://" + addresses["gRPC"], "-c", 4, "-d", 1.5)
    finally:
        stop_serve(proc)
    check_consistent(report)
    assert report["requests"] > 0 and report["errors"] == 0 and report["warmup_errors"] == 0, report


# ---------------------------------------------------------------- URL, port, protocol


@pytest.mark.parametrize("url, words", [
    ("not a url", ["--url", "not a URL"]),
    ("ftp://127.0.0.1:8001", ["--url", "http://", "https://"]),
    ("http://", ["--url"]),
    ("https://127.0.0.1:8001", ["--ca-cert"]),
])
def test_a_bad_url_is_refused_saying_why(url, words):
    """--url: the server's base URL; --ca-cert is "Required with https". A
    URL that is not one, another scheme, or https without a CA stops the
    command (exit 1) before connecting."""
    out = bench("--model", "add", "--url", url, "-n", 1, timeout=30)
    assert out.returncode == 1, out.stdout + out.stderr
    for word in words:
        assert word in out.stderr, out.stderr
    assert "panicked" not in out.stderr


def test_tls_files_need_an_https_url(tmp_path):
    """--ca-cert: "For an https:// URL"."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not used")
    out = bench("--model", "add", "--url", f"http://127.0.0.1:{free_port()}", "--ca-cert", ca, "-n", 1)
    assert out.returncode == 1 and "https://" in out.stderr, out.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nothing_listening_says_so(protocol):
    """A port nothing listens on: the command exits 1 asking whether the
    server is running, naming the URL and the protocol."""
    url = f"http://127.0.0.1:{free_port()}"
    out = bench("--model", "add", "--url", url, "--protocol", protocol, "-n", 1, timeout=30)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "is the server running?" in out.stderr and url in out.stderr and protocol in out.stderr, out.stderr


@pytest.mark.parametrize("protocol, port", [("grpc", "8001"), ("http", "8000"), ("http-binary", "8000")])
def test_the_default_url_follows_the_protocol(protocol, port):
    """--help: --url [default: http://127.0.0.1:8000 for http and
    http-binary, http://127.0.0.1:8001 for grpc] (Triton's ports). Whatever
    listens there, a model of this name is not served: the error names the
    default URL."""
    out = bench("--model", "anemone-bench-docs-no-such-model", "--protocol", protocol, "-n", 1, timeout=30)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"http://127.0.0.1:{port}" in out.stderr, out.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_port_out_of_range_is_refused_not_replaced_by_80(protocol):
    """--url must be a URL: a port of 99999 is not one. bench must refuse it,
    not connect to another port (here 80) and report that nothing listens
    there."""
    out = bench("--model", "add", "--url", "http://127.0.0.1:99999", "--protocol", protocol, "-n", 1, timeout=30)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "127.0.0.1:80:" not in out.stderr and "port 80" not in out.stderr, out.stderr
    assert "is the server running?" not in out.stderr, out.stderr
    assert "--url" in out.stderr, out.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_url_without_a_scheme_works_as_perf_analyzers_u(srv, tmp_path, protocol):
    """perf_analyzer users write `-u localhost:8001`, without a scheme; bench's
    --url takes that too (http:// assumed), as the address `anemone serve`
    prints."""
    address = srv.grpc if protocol == "grpc" else srv.http
    _, report = run_json(tmp_path, "--model", "add", "--url", address, "--protocol", protocol, "-n", 3,
                         "--warmup", 0)
    assert report["requests"] == 3 and report["errors"] == 0


def test_the_other_protocols_port_is_named(srv):
    """gRPC sent to the HTTP port, or HTTP to the gRPC port: the error says
    to check --protocol, and exits 1."""
    for protocol, url in (("grpc", srv.url("http")), ("http", srv.url("grpc")), ("http-binary", srv.url("grpc"))):
        out = bench("--model", "add", "--url", url, "--protocol", protocol, "-n", 1, timeout=30)
        assert out.returncode == 1 and "--protocol" in out.stderr, (protocol, out.stderr)


# ---------------------------------------------------------------- TLS


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    """`anemone serve` with TLS on both listeners, client certificates
    signed by a test CA required; the CA, a server and a client certificate
    made with the openssl command."""
    import shutil
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make certificates")
    d = tmp_path_factory.mktemp("bench_tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "basicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    proc, addresses = start_serve(add_repo(d / "repo"), "--metrics-port", "0",
                                  "--http-tls-cert", d / "server.pem", "--http-tls-key", d / "server.key",
                                  "--http-tls-client-ca", d / "ca.pem", "--grpc-use-ssl-mutual",
                                  "--grpc-server-cert", d / "server.pem", "--grpc-server-key", d / "server.key",
                                  "--grpc-root-cert", d / "ca.pem")
    try:
        ca = str(d / "ca.pem")
        cert = (str(d / "client.pem"), str(d / "client.key"))
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"https://{addresses['HTTP']}/v2/health/ready", verify=ca, cert=cert,
                                timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline, "the TLS server was not ready"
            time.sleep(0.2)
        yield d, addresses
    finally:
        stop_serve(proc)


@pytest.mark.parametrize("protocol", ["grpc", "http-binary", "http"])
def test_bench_over_mutual_tls(mtls, tmp_path, protocol):
    """--help: --ca-cert for an https:// URL, --client-cert with --client-key
    "for a server that requires client certificates (mutual TLS)": the run
    succeeds over each protocol and the server counts it."""
    d, addresses = mtls
    url = "https://" + (addresses["gRPC"] if protocol == "grpc" else addresses["HTTP"])
    _, report = run_json(tmp_path, "--model", "add", "--url", url, "--protocol", protocol, "-n", 5, "--warmup", 1,
                         "-c", 2, "--ca-cert", d / "ca.pem", "--client-cert", d / "client.pem",
                         "--client-key", d / "client.key")
    assert (report["requests"], report["errors"], report["url"]) == (5, 0, url)
    out = bench("--model", "add", "--url", url, "--protocol", protocol, "-n", 1, "--ca-cert", d / "ca.pem",
                "--client-cert", d / "client.pem")
    assert out.returncode == 1 and "--client-key" in out.stderr, out.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http-binary"])
def test_a_missing_client_certificate_is_named_not_blamed_on_the_port(mtls, protocol):
    """--client-cert is for "a server that requires client certificates":
    without one, the right port and protocol are refused in the TLS
    handshake; the error should say so (a certificate), not send the user
    to another port or --protocol."""
    d, addresses = mtls
    url = "https://" + (addresses["gRPC"] if protocol == "grpc" else addresses["HTTP"])
    out = bench("--model", "add", "--url", url, "--protocol", protocol, "-n", 1, "--ca-cert", d / "ca.pem")
    assert out.returncode == 1, out.stderr
    assert "port?" not in out.stderr and "--protocol" not in out.stderr, out.stderr
    assert "certificate" in out.stderr.lower(), out.stderr


def test_plain_grpc_at_a_tls_port_points_to_https(mtls):
    """A gRPC port with TLS given as http://: the error points to https://
    (as the HTTP port's answer does), beside the port and --protocol."""
    d, addresses = mtls
    out = bench("--model", "add", "--url", "http://" + addresses["gRPC"], "-n", 1)
    assert out.returncode == 1, out.stderr
    # The port question stays (a plain gRPC client cannot tell a TLS port
    # from an HTTP/1 one), and https:// is named beside it.
    assert "https:// URL with --ca-cert" in out.stderr, out.stderr


def test_plain_http_at_a_tls_port_points_to_https(mtls):
    """An HTTP port with TLS given as http://: the error says to use an
    https:// URL."""
    d, addresses = mtls
    out = bench("--model", "add", "--url", "http://" + addresses["HTTP"], "--protocol", "http", "-n", 1)
    assert out.returncode == 1 and "https://" in out.stderr, out.stderr


# ---------------------------------------------------------------- environment, Ctrl-C


def test_every_setting_can_come_from_the_environment(srv, tmp_path):
    """--help: each flag has an [env: ANEMONE_BENCH_...] variable; "From the
    environment, one input" (and one shape, one output). A run set up only
    by the environment does what the flags would."""
    np.save(tmp_path / "f.npy", np.full((2, 3), 0.5, np.float32))
    report = tmp_path / "env.json"
    log = srv.logs / "rec.log"
    log.unlink(missing_ok=True)
    before = counts(srv, "rec", 1)
    out = bench(env={
        "ANEMONE_BENCH_MODEL": "rec", "ANEMONE_BENCH_URL": srv.url("http"), "ANEMONE_BENCH_PROTOCOL": "http-binary",
        "ANEMONE_BENCH_REQUESTS": "5", "ANEMONE_BENCH_CONCURRENCY": "2", "ANEMONE_BENCH_WARMUP": "1",
        "ANEMONE_BENCH_MODEL_VERSION": "1", "ANEMONE_BENCH_INPUT": f"f={tmp_path / 'f.npy'}",
        "ANEMONE_BENCH_OUTPUT": "o1", "ANEMONE_BENCH_DIM_DEFAULT": "4", "ANEMONE_BENCH_JSON_REPORT": str(report),
    })
    assert out.returncode == 0, out.stderr
    data = json.loads(report.read_text())
    assert (data["protocol"], data["model"], data["model_version"], data["concurrency"]) == ("http-binary", "rec",
                                                                                              "1", 2)
    assert (data["requests"], data["warmup"], data["args"]["outputs"]) == (5, 1, ["o1"])
    assert counts(srv, "rec", 1)[0] - before[0] == 6
    seen = read_log(log)
    assert len(seen) == 6 and all(s["f"]["values"] == [0.5] * 6 and s["outputs"] == ["o1"] for s in seen)
    log.unlink()
    # The shape from the environment, and a flag over its variable.
    _, data = run_json(tmp_path, "--model", "rec", "--url", srv.url("grpc"), "-n", 1, "--warmup", 0,
                       env={"ANEMONE_BENCH_SHAPE": "f=7,3", "ANEMONE_BENCH_REQUESTS": "50"})
    assert data["requests"] == 1 and data["inputs"][0]["shape"] == [7, 3]
    log.unlink()


def test_ctrl_c_ends_the_run_with_its_report(srv, tmp_path):
    """The report's `interrupted` field: Ctrl-C (SIGINT) ends a run after the
    requests in flight and still prints and writes the report, marked
    interrupted. Without --requests and --duration, the run was for the
    default 10 s (--help: --duration [default: 10])."""
    report = tmp_path / "int.json"
    proc = subprocess.Popen([str(BIN), "bench", "--model", "add", "--url", srv.url("grpc"), "-c", "2",
                             "--json-report", str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["args"]["duration_s"] == 10
    assert data["duration_s"] < 9
    check_consistent(data)
    assert rows(stdout)["wall time"].endswith("(interrupted)")


# ---------------------------------------------------------------- sequences


def test_sequences_of_20_by_default_as_perf_analyzer(srv, tmp_path):
    """README: a sequence model gets sequences: each worker sends
    --sequence-length requests (20 by default, as perf_analyzer) under a
    correlation ID of its own (worker k uses START + k, 1 by default), the
    first with sequence_start and the last with sequence_end."""
    log = srv.logs / "seq.log"
    log.unlink(missing_ok=True)
    out, report = run_json(tmp_path, "--model", "seq", "--url", srv.url("grpc"), "-n", 40, "--warmup", 0)
    seen = read_log(log)
    assert len(seen) == 40
    assert [c for c, _, _ in seen] == [1] * 40
    flags = [(s, e) for _, s, e in seen]
    want = [(1, 0)] + [(0, 0)] * 18 + [(0, 1)]
    assert flags == want * 2, flags
    assert report["sequence_length"] == 20 and report["first_sequence_id"] == 1
    assert "20 requests each" in rows(out.stdout)["sequences"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sequence_id_range_gives_each_worker_its_id(srv, tmp_path, protocol):
    """README/--help: worker k sends all its sequences under START + k from
    --sequence-id-range START[:END] (END excluded, as perf_analyzer's flag);
    a range with fewer IDs than --concurrency is refused."""
    log = srv.logs / "seq.log"
    log.unlink(missing_ok=True)
    out, report = run_json(tmp_path, "--model", "seq", "--url", srv.url(protocol), "--protocol", protocol,
                           "-c", 2, "-n", 12, "--warmup", 0, "--sequence-length", 3, "--sequence-id-range", "40:42")
    seen = read_log(log)
    assert len(seen) == 12 and {c for c, _, _ in seen} == {40, 41}, seen
    for corrid in (40, 41):
        flags = [(s, e) for c, s, e in seen if c == corrid]
        pattern = [(1, 0), (0, 0), (0, 1)]
        assert flags == (pattern * 4)[:len(flags)], (corrid, flags)
    assert report["first_sequence_id"] == 40 and report["errors"] == 0
    assert "IDs 40 to 41 (numbers)" in rows(out.stdout)["sequences"]
    out = bench("--model", "seq", "--url", srv.url(protocol), "--protocol", protocol, "-c", 2, "-n", 2,
                "--sequence-id-range", "40:41")
    assert out.returncode == 1 and "fewer than --concurrency 2" in out.stderr, out.stderr
