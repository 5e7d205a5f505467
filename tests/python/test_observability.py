"""A Triton user's observability, through tritonclient's own calls: Triton's
trace files (started as tritonserver is, read and changed with
`get_trace_settings` / `update_trace_settings`), and Triton's machine
metrics (`nv_cpu_*`) on the metrics port, checked against /proc read here."""
import json
import re
import sys
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from serve_support import ROOT, start_serve, stop_serve, wait_ready

REPO = ROOT / "examples/models"
TRITON_NAMES = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END",
                "COMPUTE_OUTPUT_START", "COMPUTE_END", "REQUEST_END"]


def add_inputs(module):
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    inputs = [module.InferInput("x", [1, 4], "FP32"), module.InferInput("y", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(x * 10)
    return inputs, x + x * 10


def written_traces(path, count, seconds=10):
    """`traces(path)` once the file holds `count` traces (a request's trace
    is written as its span ends, which may be just after its answer has
    reached the client), or as it is after `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            written = traces(path)
        except (FileNotFoundError, json.JSONDecodeError):
            written = {}
        if len(written) >= count or time.time() > deadline:
            return written
        time.sleep(0.05)


def traces(path):
    """{id: (model entry, [timestamp names in time order])} of a trace file."""
    out = {}
    for entry in json.loads(path.read_text()):
        head, names = out.setdefault(entry["id"], ({}, []))
        if "timestamps" in entry:
            names.extend((t["name"], t["ns"]) for t in entry["timestamps"])
        else:
            head.update(entry)
    return {k: (h, [n for n, _ in sorted(ts, key=lambda t: t[1])]) for k, (h, ts) in out.items()}


def test_tritons_trace_files_through_tritonclient(tmp_path):
    trace = tmp_path / "trace.json"
    proc, addr = start_serve(REPO, "--trace-config", f"triton,file={trace}",
                             "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1")
    try:
        wait_ready(addr["HTTP"])
        http = httpclient.InferenceServerClient(addr["HTTP"])
        grpc = grpcclient.InferenceServerClient(addr["gRPC"])
        settings = http.get_trace_settings()
        assert settings["trace_mode"] == "triton", settings
        assert settings["trace_file"] == str(trace), settings
        assert settings["log_frequency"] == "0", settings
        # Write every two traces from now on, as Triton's clients ask.
        answer = grpc.update_trace_settings(settings={"log_frequency": "2"}, as_json=True)
        assert answer["settings"]["log_frequency"]["value"] == ["2"], answer
        for client, module in [(http, httpclient), (grpc, grpcclient)] * 2:
            inputs, want = add_inputs(module)
            got = client.infer("add", inputs).as_numpy("sum")
            np.testing.assert_array_equal(got, want)
        for n in (0, 1):
            written = written_traces(tmp_path / f"trace.json.{n}", 2)
            assert len(written) == 2, written
            for head, names in written.values():
                assert head["model_name"] == "add" and head["model_version"] == 1, head
                assert names == TRITON_NAMES, names
        assert not trace.exists()
    finally:
        stop_serve(proc)


def meminfo(key):
    for line in open("/proc/meminfo"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.mark.skipif(sys.platform != "linux", reason="the CPU figures come from /proc (Linux)")
def test_tritons_machine_metrics_on_the_metrics_port():
    proc, addr = start_serve(REPO, "--triton-metrics", "true", "--metrics-interval-ms", "100",
                             "--metrics-port", "0")
    try:
        wait_ready(addr["HTTP"])
        # The metrics port is printed too; /metrics is also on the HTTP port.
        url = f"http://{addr['HTTP']}/metrics"
        deadline = time.time() + 10
        while True:
            text = urllib.request.urlopen(url).read().decode()
            if "\nnv_cpu_utilization " in text or time.time() > deadline:
                break
            time.sleep(0.1)
        values = dict(re.findall(r"^(nv_cpu_\w+) (\S+)$", text, re.M))
        assert set(values) == {"nv_cpu_utilization", "nv_cpu_memory_total_bytes",
                               "nv_cpu_memory_used_bytes"}, text
        assert float(values["nv_cpu_memory_total_bytes"]) == meminfo("MemTotal")
        used = float(values["nv_cpu_memory_used_bytes"])
        here = meminfo("MemTotal") - meminfo("MemAvailable")
        assert abs(used - here) < meminfo("MemTotal") / 10, (used, here)
        assert 0.0 <= float(values["nv_cpu_utilization"]) <= 1.0
    finally:
        stop_serve(proc)
