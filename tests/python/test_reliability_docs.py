"""What docs/EVICTION.md and docs/RELIABILITY.md (with the parts of
docs/SERVING.md, docs/BACKENDS.md and docs/CONFIGURATION.md they point to)
promise an operator, checked from outside the way an operator meets it:

- LRU eviction under `--memory-budget`: the budget's units decide what is
  resident, the metrics and statistics of evictions, pinned and `lru`
  models, open sequences that keep a model resident, explicit mode (a model
  never loaded is not loaded by a request; unloading an evicted model
  forgets it), `none` refusing unload, poll mode, gRPC's view of an evicted
  model, the hot standby charged to the budget;
- faults in Python models: a process killed with SIGKILL mid-request (alone
  and in a dynamic batch) or while idle, an execute that hangs past the
  request's timeout, that raises, or that returns garbage, an initialize
  that exits or hangs: the client gets the documented status and words, the
  other models and requests go on, health stays up, the model recovers;
- graceful shutdown with requests running and queued;
- request limits the other suites leave out; odd files where a model or a
  repository should be.

Numbers are compared with numpy (the models' arithmetic is done by the test
again). A test marked xfail(strict=True) records a place where the server
does not do what the docs say.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
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
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))

W = 25600  # values of each weighted model: 102400 bytes charged
# Start-up loads one at a time: concurrent ones race under eviction and may
# lose a model (test_every_model_is_resident_or_evicted_after_concurrent_start_up_loads).
ONE_LOAD_AT_A_TIME = ("--model-load-thread-count", "1")


# ---------------------------------------------------------------- helpers

def weighted_model(path, n=W, scale=1.0):
    """y = x + W, W = scale * arange(n) an FP32 initializer: charged n*4 bytes."""
    w = numpy_helper.from_array((np.arange(n, dtype=np.float32) * np.float32(scale)), "W")
    g = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def weighted_repo(root, *names):
    for name in names:
        weighted_model(root / name / "1" / "model.onnx")
    return root


def anemone(*args, env=None, timeout=60):
    """Runs the binary to completion: (status, stdout, stderr); status None on a timeout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return None, e.stdout or "", e.stderr or ""


def metrics_text(http):
    with urllib.request.urlopen(f"http://{http}/metrics") as r:
        return r.read().decode()


def metric(http, series, text=None):
    text = text if text is not None else metrics_text(http)
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def index(http):
    return {m["name"]: m for m in requests.post(f"http://{http}/v2/repository/index", timeout=30).json()}


def weighted_infer(http, model, x, **params):
    body = {"inputs": [{"name": "x", "shape": [W], "datatype": "FP32", "data": x.tolist()}]}
    if params:
        body["parameters"] = params
    return requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=60)


def weighted_ok(http, model, value=1.0, scale=1.0, **params):
    x = np.full(W, value, np.float32)
    r = weighted_infer(http, model, x, **params)
    assert r.status_code == 200, (model, r.status_code, r.text[:300])
    got = np.array(r.json()["outputs"][0]["data"], np.float32)
    np.testing.assert_array_equal(got, x + np.arange(W, dtype=np.float32) * np.float32(scale))


def states(http):
    return {n: m.get("state") for n, m in index(http).items()}


def children(pid):
    """{child pid: its command line} of process `pid`."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            pass
    return out


def model_process(server_pid, model):
    """The pid of the Python process serving `model` (one instance)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        kids = [p for p, cmd in children(server_pid).items() if f"/{model}/1/model.py" in cmd]
        if kids:
            return kids[0]
        time.sleep(0.05)
    pytest.fail(f"no Python process for {model} among {children(server_pid)}")


def alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- eviction: flags and units

def test_eviction_lru_without_a_budget_stops_serve():
    """EVICTION.md flags: `--eviction lru` "Needs `--memory-budget`": the server
    does not start, whether the flag or the environment asks for it."""
    repo = str(ROOT / "examples/models")
    for args, env in [(["--eviction", "lru"], None), ([], {"ANEMONE_EVICTION": "lru"})]:
        status, out, err = anemone("serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
                                   *args, env=env, timeout=30)
        assert status not in (0, None), (args, env, status, err[-300:])
        assert "--eviction lru needs a budget" in err and "--memory-budget" in err, err[-300:]


def test_models_refuses_eviction_without_a_budget_as_serve_does():
    """EVICTION.md: "`anemone models` takes the same two flags and shows what
    would be resident"; with `--eviction lru` alone nothing would be: serve
    refuses it."""
    status, out, err = anemone("models", "--model-repository", str(ROOT / "examples/models"), "--eviction", "lru")
    assert status == 2, (status, out[-300:])
    assert "--eviction lru needs a budget" in err, err[-300:]


@pytest.mark.parametrize("budget,resident", [
    ("204800", 2), ("204799", 1), ("200KiB", 2), ("200kB", 1), ("200Ki", 2), ("200K", 1),
    ("0.2MiB", 2), ("0.2MB", 1), ("200kib", 2), ("0.1953125mib", 2), ("250KB", 2), ("1.5GiB", 3),
])
def test_the_budgets_unit_decides_how_many_models_are_resident(tmp_path, budget, resident):
    """EVICTION.md flags: KiB/Ki are powers of 1024, kB/K powers of 1000, any
    case, decimals work; `anemone models` takes both flags and "shows what
    would be resident". Three models of 102400 bytes: 200KiB holds two, 200kB one."""
    repo = weighted_repo(tmp_path, "wa", "wb", "wc")
    for _ in range(5):  # a run that lost a model to the start-up race (tested below) is run again
        status, out, err = anemone("models", "--model-repository", str(repo), "--memory-budget", budget,
                                   "--eviction", "lru")
        if "not resident" not in out:
            break
    assert status == 0, err[-500:]
    line = [ln for ln in out.splitlines() if ln.startswith("memory:")]
    assert line, out
    m = re.search(r"resident: ([\w, ]+?)(;|$)", line[0])
    names = [n.strip() for n in m.group(1).split(",")]
    assert len(names) == resident, (budget, line[0])
    evicted = 3 - resident
    if evicted:
        assert "evicted (loaded again on request): " in line[0], line[0]
        assert len(re.findall(r"evicted \(LRU\) to make room for '\w+'", out)) == evicted, out


def test_every_model_is_resident_or_evicted_after_concurrent_start_up_loads(tmp_path):
    """EVICTION.md: "every model of the repository is loaded at start-up (as the
    budget allows, evicting the least recently used); an evicted one loads
    again on request": after start-up each model is resident or evicted,
    never lost. Eight models, room for one; `anemone models` loads them as
    serve does, concurrently. Run up to 20 times (the race hits about half)."""
    repo = weighted_repo(tmp_path, *[f"m{k}" for k in range(8)])
    for run in range(20):
        status, out, err = anemone("models", "--model-repository", str(repo), "--memory-budget", "100KiB",
                                   "--eviction", "lru")
        line = [ln for ln in out.splitlines() if ln.startswith("memory:")][0]
        resident = re.search(r"resident: ([\w, ]+?)(;|$)", line).group(1).split(", ")
        evicted = re.search(r"evicted \(loaded again on request\): ([\w, ]+)$", line).group(1).split(", ")
        assert sorted(resident + evicted) == [f"m{k}" for k in range(8)], (run, line, err[-300:])
        assert status == 0 and "not resident" not in out, (run, err[-300:])


def test_bad_budgets_are_refused_naming_the_flag():
    """EVICTION.md: a byte count or a number with a known unit; anything
    else is a flag mistake (status 2), not a silently huge or zero budget."""
    for value in ["1e3KiB", "NaN", "inf", "18446744073709551616", "99999999TiB", "", "12 parsecs", "-5MiB"]:
        status, _, err = anemone("serve", "--model-repository", str(ROOT / "examples/models"), "--http-port", "0",
                                 "--grpc-port", "0", f"--memory-budget={value}", timeout=30)
        assert status == 2, (value, status, err[-300:])
        assert "--memory-budget" in err, (value, err[-300:])


def test_a_hot_standby_is_charged_to_the_budget_with_its_serving_engine(tmp_path):
    """BACKENDS.md: `standby` = `hot` keeps the first standby backend loaded,
    "charged to the memory budget with the serving engine": 2 x 102400 bytes,
    so with one more model it no longer fits 250KiB and one is evicted."""
    repo = weighted_repo(tmp_path, "hot", "plain")
    (repo / "hot" / "config.pbtxt").write_text(
        'parameters { key: "standby" value: { string_value: "hot" } }\n'
        'parameters { key: "backends" value: { string_value: "tract-cpu,onnxruntime" } }\n')
    line = memory_line(repo, "250KiB")
    assert "evicted (loaded again on request)" in line, line
    line = memory_line(repo, "300KiB")
    assert line.startswith("memory: 300.0 KiB of the 300.0 KiB budget") and "evicted" not in line, line


def memory_line(repo, budget):
    """The memory line of `anemone models` (run again when the start-up race lost a model)."""
    for _ in range(5):
        status, out, err = anemone("models", "--model-repository", str(repo), "--memory-budget", budget,
                                   "--eviction", "lru")
        if "not resident" not in out:
            break
    assert status == 0, err[-300:]
    return [ln for ln in out.splitlines() if ln.startswith("memory:")][0]


# ---------------------------------------------------------------- eviction: a serving server (mode none)

@pytest.fixture(scope="module")
def evicting(tmp_path_factory):
    """wa, wb, wc (102400 bytes each) and sq, a sequence model idle-closed
    after 1.5 s, in 250KiB: two resident at a time."""
    repo = weighted_repo(tmp_path_factory.mktemp("evicting"), "wa", "wb", "wc", "sq")
    (repo / "sq" / "config.pbtxt").write_text("sequence_batching { max_sequence_idle_microseconds: 1500000 }\n")
    proc, addresses = start_serve(repo, "--memory-budget", "250KiB", "--eviction", "lru", "--health-monitor", "false",
                                  *ONE_LOAD_AT_A_TIME)
    table = []
    wait_ready(addresses["HTTP"])
    # The start-up table `serve` prints, up to the memory line.
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stdout.readline()
        table.append(line)
        if line.startswith("memory:") or not line:
            break
    yield addresses, table
    stop_serve(proc)


def test_the_start_up_table_ends_with_budget_charged_resident_and_evicted(evicting):
    """EVICTION.md "Seeing what happened": the table `serve` prints at start-up
    ends with the budget, what is charged, what is resident and what is evicted."""
    _, table = evicting
    last = table[-1]
    m = re.match(r"memory: 200\.0 KiB of the 250\.0 KiB budget charged \(eviction lru\); resident: (\w+), (\w+); "
                 r"evicted \(loaded again on request\): (\w+), (\w+)$", last.strip())
    assert m, table
    assert sorted(m.groups()) == ["sq", "wa", "wb", "wc"], last


def test_every_eviction_metric_agrees_with_the_index_and_with_the_requests(evicting):
    """EVICTION.md /metrics: evictions_total and on_demand_loads_total per model,
    evicted{model,version} 1 while evicted, memory_used_bytes = what the
    resident models are charged, memory_budget_bytes, model_memory_bytes per
    resident model, load_duration_seconds counting every successful load."""
    (addresses, _) = evicting
    http = addresses["HTTP"]
    before = metrics_text(http)
    st = states(http)
    evicted = sorted(n for n, s in st.items() if s == "UNAVAILABLE")
    resident = sorted(n for n, s in st.items() if s == "READY")
    assert len(resident) == 2 and len(evicted) == 2, st
    assert metric(http, "anemone_memory_budget_bytes", before) == 250 * 1024
    assert metric(http, "anemone_memory_used_bytes", before) == 2 * 102400
    for n in resident:
        charged = re.findall(rf'^anemone_model_memory_bytes\{{model="{n}",version="1",backend="[\w-]+"\}} (\S+)$',
                             before, re.M)
        assert [float(c) for c in charged] == [102400], (n, charged)
        assert not metric(http, f'anemone_model_evicted{{model="{n}",version="1"}}', before)
    for n in evicted:
        assert metric(http, f'anemone_model_evicted{{model="{n}",version="1"}}', before) == 1
        assert f'anemone_model_memory_bytes{{model="{n}"' not in before
    target = [n for n in evicted if n != "sq"][0] if any(n != "sq" for n in evicted) else evicted[0]
    loads = metric(http, f'anemone_model_on_demand_loads_total{{model="{target}"}}', before) or 0
    durations = metric(http, "anemone_model_load_duration_seconds_count", before)
    evictions = sum(float(v) for v in re.findall(r"^anemone_model_evictions_total\{[^}]*\} (\S+)$", before, re.M))
    weighted_ok(http, target, 2.0)
    after = metrics_text(http)
    assert metric(http, f'anemone_model_on_demand_loads_total{{model="{target}"}}', after) == loads + 1
    assert metric(http, "anemone_model_load_duration_seconds_count", after) == durations + 1
    assert sum(float(v) for v in re.findall(r"^anemone_model_evictions_total\{[^}]*\} (\S+)$", after, re.M)) \
        == evictions + 1
    assert not metric(http, f'anemone_model_evicted{{model="{target}",version="1"}}', after)
    assert metric(http, "anemone_memory_used_bytes", after) == 2 * 102400
    st = states(http)
    assert st[target] == "READY" and sum(s == "READY" for s in st.values()) == 2, st


def test_an_evicted_model_keeps_its_statistics_and_counters(evicting):
    """EVICTION.md: "An evicted model keeps its statistics: its counters carry
    over to the load that brings it back" (Triton's statistics and Prometheus)."""
    (addresses, _) = evicting
    http = addresses["HTTP"]
    weighted_ok(http, "wa")

    def success():
        s = requests.get(f"http://{http}/v2/models/wa/stats").json()["model_stats"][0]
        return s["inference_stats"]["success"]["count"], s["execution_count"], s["last_inference"]

    for _ in range(3):
        weighted_ok(http, "wa")
    count, executions, last = success()
    prom = metric(http, 'anemone_inference_request_success_total{model="wa",version="1"}')
    assert prom == count
    weighted_ok(http, "wb")
    weighted_ok(http, "wc")
    assert states(http)["wa"] == "UNAVAILABLE"
    weighted_ok(http, "wa", 5.0)
    count2, executions2, last2 = success()
    assert (count2, executions2) == (count + 1, executions + 1), (count, count2)
    assert last2 >= last
    assert metric(http, 'anemone_inference_request_success_total{model="wa",version="1"}') == count + 1


def test_grpc_sees_an_evicted_model_as_the_docs_say(evicting):
    """EVICTION.md: gRPC RepositoryIndex lists an evicted model UNAVAILABLE with
    the reason; server readiness stays true; model readiness false; metadata
    and config answered without loading it; a gRPC request loads it again."""
    (addresses, _) = evicting
    http = addresses["HTTP"]
    weighted_ok(http, "wb")
    weighted_ok(http, "wc")
    c = grpcclient.InferenceServerClient(addresses["gRPC"])
    rows = {m.name: m for m in c.get_model_repository_index().models}
    assert rows["wa"].state == "UNAVAILABLE", rows["wa"]
    assert re.fullmatch(r"evicted \(LRU\) to make room for '\w+'; the next request for it loads it again",
                        rows["wa"].reason), rows["wa"].reason
    assert c.is_server_ready() and c.is_server_live()
    assert not c.is_model_ready("wa")
    loads = metric(http, 'anemone_model_on_demand_loads_total{model="wa"}') or 0
    assert c.get_model_metadata("wa").inputs[0].shape == [W]
    assert c.get_model_config("wa").config.input[0].name == "x"
    assert (metric(http, 'anemone_model_on_demand_loads_total{model="wa"}') or 0) == loads
    x = np.linspace(-3, 3, W, dtype=np.float32)
    t = grpcclient.InferInput("x", [W], "FP32")
    t.set_data_from_numpy(x)
    np.testing.assert_array_equal(c.infer("wa", [t]).as_numpy("y"), x + np.arange(W, dtype=np.float32))
    assert c.is_model_ready("wa")
    assert metric(http, 'anemone_model_on_demand_loads_total{model="wa"}') == loads + 1


def test_a_sequence_model_with_a_sequence_open_is_not_evicted_until_the_sequence_idles_out(evicting):
    """EVICTION.md: never evicted: "a sequence model (sequence_batching) with a
    sequence open"; "a sequence idle for longer than its
    max_sequence_idle_microseconds is closed, and the model may then go"."""
    (addresses, _) = evicting
    http = addresses["HTTP"]
    weighted_ok(http, "sq", 1.0, sequence_id=4242, sequence_start=True)
    # Four loads of the others, each evicting the least recently used idle one:
    # sq is the least recently used, but its sequence is open.
    for name in ["wa", "wb", "wc", "wa"]:
        weighted_ok(http, name, 0.5)
        assert states(http)["sq"] == "READY", (name, states(http))
    weighted_ok(http, "sq", 2.0, sequence_id=4242)
    time.sleep(2.0)  # past the 1.5 s idle limit: the sequence is closed
    for name in ["wb", "wc"]:
        weighted_ok(http, name)
    assert states(http)["sq"] == "UNAVAILABLE", states(http)
    r = weighted_infer(http, "sq", np.zeros(W, np.float32), sequence_id=4242)
    assert r.status_code == 400 and "must specify the START flag" in r.json()["error"], r.text


def test_unload_is_refused_in_mode_none_for_an_evicted_model_too(evicting):
    """EVICTION.md model control table: mode `none`, what `unload` does:
    "refused, as without eviction" (SERVING.md: 503)."""
    (addresses, _) = evicting
    http = addresses["HTTP"]
    evicted = [n for n, s in states(http).items() if s == "UNAVAILABLE"]
    for name in evicted + ["nope"]:
        r = requests.post(f"http://{http}/v2/repository/models/{name}/unload")
        assert r.status_code == 503 and "model control mode 'none'" in r.json()["error"], r.text
    assert [n for n, s in states(http).items() if s == "UNAVAILABLE"] == evicted


# ---------------------------------------------------------------- eviction: explicit and poll modes

def test_explicit_mode_on_demand_loading_and_forgetting_an_evicted_model(tmp_path):
    """EVICTION.md, mode `explicit`: loaded models later evicted load again on
    request; "a model never loaded is not loaded by a request"; unload of an
    evicted model "forgets it: requests for it get 404 until it is loaded
    again". Pinning: `lru` (the default) lets it be evicted; a value other
    than `never`/`lru` leaves the model unavailable naming both values."""
    repo = weighted_repo(tmp_path, "wa", "wb", "wc", "never_loaded", "pl", "pbad")
    (repo / "pl" / "config.pbtxt").write_text('parameters { key: "eviction" value: { string_value: "lru" } }\n')
    (repo / "pbad" / "config.pbtxt").write_text('parameters { key: "eviction" value: { string_value: "sometimes" } }\n')
    proc, addresses = start_serve(repo, "--memory-budget", "250KiB", "--eviction", "lru", "--health-monitor", "false",
                                  "--model-control-mode", "explicit", "--strict-readiness", "false", *ONE_LOAD_AT_A_TIME,
                                  *[a for n in ["pl", "wa", "wb", "wc", "pbad"] for a in ("--load-model", n)])
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        ix = index(http)
        assert ix["pbad"]["state"] == "UNAVAILABLE"
        assert '"sometimes"' in ix["pbad"]["reason"] and '"never"' in ix["pbad"]["reason"] \
            and '"lru"' in ix["pbad"]["reason"], ix["pbad"]
        for name in ["pl", "wa", "wb", "wc"]:  # every loaded one serves, pl evicted in turn
            weighted_ok(http, name)
        assert states(http)["pl"] == "UNAVAILABLE", states(http)
        # Never loaded: a request does not load it.
        r = weighted_infer(http, "never_loaded", np.zeros(W, np.float32))
        assert r.status_code == 404, r.text
        assert "never_loaded" not in [n for n, s in states(http).items() if s in ("READY", "LOADING")]
        assert metric(http, 'anemone_model_on_demand_loads_total{model="never_loaded"}') in (None, 0)
        # An evicted model unloaded is forgotten: 404 until loaded again.
        evicted = [n for n, s in states(http).items() if s == "UNAVAILABLE" and n in ("wa", "wb", "wc", "pl")][0]
        r = requests.post(f"http://{http}/v2/repository/models/{evicted}/unload")
        assert r.status_code == 200, r.text
        r = weighted_infer(http, evicted, np.zeros(W, np.float32))
        assert r.status_code == 404, r.text
        assert index(http)[evicted]["reason"] == "unloaded"
        assert requests.post(f"http://{http}/v2/repository/models/{evicted}/load").status_code == 200
        weighted_ok(http, evicted, 7.0)
        assert metric(http, "anemone_memory_used_bytes") <= 250 * 1024
    finally:
        stop_serve(proc)


def test_poll_mode_leaves_unchanged_evicted_models_evicted(tmp_path):
    """EVICTION.md, mode `poll`: "as `none`; a model changed on disk is
    reloaded (it may evict others)": an unchanged one is not, so with no
    request and no change nothing is loaded or evicted between scans. The
    repository is reached through a symbolic link, as a mounted volume often is."""
    repo = weighted_repo(tmp_path / "real", "wa", "wb", "wc")
    link = tmp_path / "models"
    link.symlink_to(repo)
    proc, addresses = start_serve(link, "--memory-budget", "250KiB", "--eviction", "lru", "--health-monitor", "false",
                                  "--model-control-mode", "poll", "--repository-poll-secs", "1", *ONE_LOAD_AT_A_TIME)
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        time.sleep(1.2)
        loads = metric(http, "anemone_model_load_duration_seconds_count")
        evictions = metrics_text(http).count("anemone_model_evictions_total{")
        time.sleep(3.2)
        after = metric(http, "anemone_model_load_duration_seconds_count")
        assert after == loads, f"{after - loads} loads in 3 scans without a change or a request"
        assert states(http) and evictions >= 1
    finally:
        stop_serve(proc)


def test_poll_mode_with_a_canonical_path_leaves_unchanged_evicted_models_evicted(tmp_path):
    """As above, with the repository named by its real path: no load between scans."""
    repo = weighted_repo(tmp_path, "wa", "wb", "wc")
    proc, addresses = start_serve(repo.resolve(), "--memory-budget", "250KiB", "--eviction", "lru",
                                  "--health-monitor", "false", "--model-control-mode", "poll",
                                  "--repository-poll-secs", "1", *ONE_LOAD_AT_A_TIME)
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        time.sleep(1.2)
        loads = metric(http, "anemone_model_load_duration_seconds_count")
        time.sleep(2.2)
        assert metric(http, "anemone_model_load_duration_seconds_count") == loads
        assert sum(s == "UNAVAILABLE" for s in states(http).values()) == 1
    finally:
        stop_serve(proc)


def test_poll_mode_serves_a_changed_evicted_model_new_and_forgets_a_removed_one(tmp_path):
    """EVICTION.md, mode `poll`: a model changed on disk is reloaded (its new
    weights answer), one removed from disk is forgotten (404); `unload` is
    refused as without eviction."""
    repo = weighted_repo(tmp_path, "wa", "wb", "wc")
    proc, addresses = start_serve(repo, "--memory-budget", "250KiB", "--eviction", "lru", "--health-monitor", "false",
                                  "--model-control-mode", "poll", "--repository-poll-secs", "1", *ONE_LOAD_AT_A_TIME)
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        weighted_model(repo / "wa" / "1" / "model.onnx", scale=-2.0)
        shutil.rmtree(repo / "wb")
        deadline = time.time() + 15
        while "wb" in index(http) and time.time() < deadline:
            time.sleep(0.3)
        time.sleep(1.5)
        r = weighted_infer(http, "wb", np.zeros(W, np.float32))
        assert r.status_code == 404, r.text
        weighted_ok(http, "wa", 1.0, scale=-2.0)
        weighted_ok(http, "wc", 1.0)
        r = requests.post(f"http://{http}/v2/repository/models/wa/unload")
        assert r.status_code == 503, r.text
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- faults in Python models

VECTOR = '''
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
'''

BATCHED = '''
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 300000 preferred_batch_size: [ 3 ] }
'''

# X[0] picks what execute does with the request; X[1] is its argument.
# 0: Y = X + 1; 1: raise; 2: os._exit(7) after a line on stderr; 3: sleep X[1]
# s, then Y = X + 1; 4: an output the config does not list; 5: Y as INT64;
# 6: return a string; 7: return []; 9: an error response; 11: Y = [pid, pid].
FAULTY = '''
import os, sys, time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            mode = int(x.reshape(-1)[0])
            if mode == 1:
                raise ValueError("mode one is not allowed")
            if mode == 2:
                sys.stderr.write("about to die on purpose\\n")
                sys.stderr.flush()
                os._exit(7)
            if mode == 3:
                time.sleep(float(x.reshape(-1)[1]))
            if mode == 4:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Z", x)]))
                continue
            if mode == 5:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x.astype(np.int64))]))
                continue
            if mode == 6:
                return "garbage"
            if mode == 7:
                return []
            if mode == 9:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("told to fail")))
                continue
            if mode == 11:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.full(x.shape, os.getpid(), np.float32))]))
                continue
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 1)]))
        return out
'''

DOUBLE = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)])
                for r in requests]
'''


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """faulty (one instance), faulty_batch (dynamic batching: batches of 3),
    double (Python) and add (ONNX); returns (addresses, server pid)."""
    repo = python_repository(tmp_path_factory.mktemp("faults"), models=[
        ("faulty", VECTOR, FAULTY), ("faulty_batch", BATCHED, FAULTY), ("double", VECTOR, DOUBLE)])
    shutil.copytree(ROOT / "examples/models/add", repo / "add")
    proc, addresses = start_serve(repo, "--health-monitor", "false")
    wait_ready(addresses["HTTP"])
    yield addresses, proc.pid
    stop_serve(proc)


def py_infer(http, model, x, **params):
    body = {"inputs": [{"name": "X", "shape": list(np.shape(x)), "datatype": "FP32",
                        "data": np.asarray(x, np.float32).reshape(-1).tolist()}]}
    if params:
        body["parameters"] = params
    return requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=60)


def assert_others_serve(addresses):
    """double, add and the health routes answer at once, with numpy's numbers."""
    http = addresses["HTTP"]
    t0 = time.time()
    x = np.array([1.5, -2.0, 3.25], np.float32)
    r = py_infer(http, "double", x)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(r.json()["outputs"][0]["data"], x * 2)
    a = np.array([[1, 2, 3, 4]], np.float32)
    b = np.array([[0.5, -1, 8, 2]], np.float32)
    c = grpcclient.InferenceServerClient(addresses["gRPC"])
    ia, ib = grpcclient.InferInput("x", [1, 4], "FP32"), grpcclient.InferInput("y", [1, 4], "FP32")
    ia.set_data_from_numpy(a)
    ib.set_data_from_numpy(b)
    res = c.infer("add", [ia, ib])
    np.testing.assert_array_equal(res.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(res.as_numpy("diff"), a - b)
    for route in ["/v2/health/live", "/v2/health/ready"]:
        assert requests.get(f"http://{http}{route}", timeout=5).status_code == 200, route
    assert time.time() - t0 < 2.0, "the others were kept waiting"


def pid_of_answer(http, model, shape=(2,)):
    x = np.zeros(shape, np.float32)
    x.reshape(-1)[0] = 11
    r = py_infer(http, model, x)
    assert r.status_code == 200, r.text
    return int(r.json()["outputs"][0]["data"][0])


def test_a_python_process_killed_mid_request_fails_that_request_and_the_next_is_served(faults):
    """SERVING.md "A process that dies (a crash, os._exit, the kernel's OOM
    killer) fails the request in flight with its exit status ...; the next
    request starts a new process"; RELIABILITY.md Faults: the fault stays
    there, other models and requests go on, health stays up."""
    addresses, server = faults
    http = addresses["HTTP"]
    first = pid_of_answer(http, "faulty")
    assert model_process(server, "faulty") == first
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", py_infer(http, "faulty", [3, 5])))
    th.start()
    time.sleep(0.5)
    assert th.is_alive()
    assert_others_serve(addresses)  # while faulty's request runs
    os.kill(first, signal.SIGKILL)
    th.join(10)
    assert not th.is_alive(), "the request in flight was left hanging"
    r = box["r"]
    assert r.status_code == 500, r.text
    assert "signal: 9 (SIGKILL)" in r.json()["error"] and "faulty" in r.json()["error"], r.text
    assert requests.get(f"http://{http}/v2/models/faulty/ready").status_code == 200
    assert_others_serve(addresses)
    second = pid_of_answer(http, "faulty")
    assert second != first
    r = py_infer(http, "faulty", [0, 2.5])
    np.testing.assert_array_equal(r.json()["outputs"][0]["data"], [1, 3.5])
    assert metric(http, 'anemone_inference_requests_in_flight{model="faulty",version="1"}') == 0


def test_a_python_process_killed_while_idle_is_started_again_for_the_next_request(faults):
    """SERVING.md: "the next request starts a new process"; nothing was in
    flight, so no client should see the death at all."""
    addresses, server = faults
    http = addresses["HTTP"]
    first = pid_of_answer(http, "faulty")
    os.kill(first, signal.SIGKILL)
    deadline = time.time() + 5
    while alive(first) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    x = np.array([0, 41.0], np.float32)
    r = py_infer(http, "faulty", x)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(r.json()["outputs"][0]["data"], x + 1)
    assert pid_of_answer(http, "faulty") != first


def test_a_python_process_killed_mid_batch_fails_every_request_of_the_batch_over_both_protocols(faults):
    """SERVING.md: a process that dies fails the requests in flight (here a
    dynamic batch of three, one of them over gRPC: INTERNAL); none hangs,
    and the next batch is served by a new process."""
    addresses, server = faults
    http = addresses["HTTP"]
    first = pid_of_answer(http, "faulty_batch", (1, 2))
    results = {}

    def over_http(k):
        results[k] = py_infer(http, "faulty_batch", [[3, 4]])

    def over_grpc(k):
        c = grpcclient.InferenceServerClient(addresses["gRPC"])
        t = grpcclient.InferInput("X", [1, 2], "FP32")
        t.set_data_from_numpy(np.array([[3, 4]], np.float32))
        try:
            c.infer("faulty_batch", [t])
            results[k] = "answered"
        except InferenceServerException as e:
            results[k] = e

    threads = [threading.Thread(target=f, args=(k,)) for k, f in enumerate([over_http, over_http, over_grpc])]
    for t in threads:
        t.start()
    time.sleep(0.8)  # the 300 ms batching window has passed: the batch runs
    os.kill(first, signal.SIGKILL)
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a request of the batch was left hanging"
    for k in (0, 1):
        assert results[k].status_code == 500 and "SIGKILL" in results[k].json()["error"], results[k].text
    assert isinstance(results[2], InferenceServerException), results[2]
    assert results[2].status() == "StatusCode.INTERNAL" and "SIGKILL" in results[2].message(), results[2]
    x = np.array([[0, 1], [0, 2]], np.float32)
    r = py_infer(http, "faulty_batch", x)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"]).reshape(2, 2), x + 1)


def test_a_process_that_exits_names_its_status_and_last_stderr_lines(faults):
    """SERVING.md: the request in flight fails "with its exit status and its
    last lines of standard error"; the next request starts a new process."""
    addresses, _ = faults
    http = addresses["HTTP"]
    r = py_infer(http, "faulty", [2, 0])
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert "exit status: 7" in err and "about to die on purpose" in err, err
    r = py_infer(http, "faulty", [0, 1])
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1, 2], r.text


def test_a_hung_execute_times_out_at_the_requests_timeout_and_leaves_the_others_alone(faults):
    """RELIABILITY.md Faults: "the backend hangs past the request's timeout:
    504 / DEADLINE_EXCEEDED at the timeout; another model answers at once
    meanwhile; gauges return to 0 when the call ends" (HTTP `timeout`
    parameter in microseconds; gRPC the client's deadline)."""
    addresses, _ = faults
    http = addresses["HTTP"]
    t0 = time.time()
    r = py_infer(http, "faulty", [3, 1.5], timeout=300000)
    took = time.time() - t0
    assert r.status_code == 504, r.text
    assert 0.25 <= took < 1.2, took
    assert "timed out" in r.json()["error"], r.text
    assert_others_serve(addresses)
    assert metric(http, 'anemone_inference_requests_in_flight{model="faulty",version="1"}') == 1
    deadline = time.time() + 5
    while metric(http, 'anemone_inference_requests_in_flight{model="faulty",version="1"}') != 0:
        assert time.time() < deadline, "the in-flight gauge did not return to 0 when the call ended"
        time.sleep(0.1)
    c = grpcclient.InferenceServerClient(addresses["gRPC"])
    t = grpcclient.InferInput("X", [2], "FP32")
    t.set_data_from_numpy(np.array([3, 1.5], np.float32))
    t0 = time.time()
    with pytest.raises(InferenceServerException) as e:
        c.infer("faulty", [t], client_timeout=0.4)
    assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED", e.value
    assert time.time() - t0 < 1.2
    assert_others_serve(addresses)
    time.sleep(1.3)
    r = py_infer(http, "faulty", [0, 9])
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1, 10], r.text


@pytest.mark.parametrize("mode,status,words", [
    (1, 500, "Failed to process the request(s) for model 'faulty', message: ValueError: mode one is not allowed"),
    # The type named, not "7 responses" (the string's length).
    (6, 500, "execute() returned a str, not a list, for 1 requests"),
    (7, 500, "returned 0 responses for 1 requests"),
    (9, 500, "told to fail"),
])
def test_an_execute_that_raises_or_answers_garbage_fails_only_its_request(faults, mode, status, words):
    """SERVING.md Errors: an exception in execute fails its requests with 500
    naming it; an error response is 500 with its message; a wrong number of
    responses is an error. The model serves the next request, and the failure
    counts in the statistics' `fail` (the request ran). (A missing output is
    left out of the answer, as in Triton: test_requested_outputs.py.)"""
    addresses, _ = faults
    http = addresses["HTTP"]

    def fails():
        s = requests.get(f"http://{http}/v2/models/faulty/stats").json()["model_stats"][0]
        return s["inference_stats"]["fail"]["count"]

    before = fails()
    r = py_infer(http, "faulty", [mode, 0])
    assert r.status_code == status and words in r.json()["error"], r.text
    assert fails() == before + 1
    x = np.array([0, -7.5], np.float32)
    r = py_infer(http, "faulty", x)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(r.json()["outputs"][0]["data"], x + 1)


def test_an_output_of_another_type_is_answered_as_given(faults):
    """SERVING.md: "An output of another data type than the config says is
    answered as given (as Triton does), with one warning in the log"."""
    addresses, _ = faults
    x = np.array([5, 3.75], np.float32)
    r = py_infer(addresses["HTTP"], "faulty", x)
    out = r.json()["outputs"][0]
    assert (r.status_code, out["datatype"]) == (200, "INT64"), r.text
    assert out["data"] == x.astype(np.int64).tolist()


# ---------------------------------------------------------------- faults at load

INIT_EXITS = '''
import os, sys
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        sys.stderr.write("cannot find the weights\\n")
        sys.stderr.flush()
        os._exit(5)

    def execute(self, requests):
        return []
'''

INIT_HANGS = '''
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(120)

    def execute(self, requests):
        return []
'''


def test_an_initialize_that_exits_or_hangs_leaves_that_model_unavailable_and_the_rest_serving(tmp_path):
    """SERVING.md: `initialize` failing leaves the model UNAVAILABLE with the
    reason; a model.py that has not finished `initialize` within
    ANEMONE_PYTHON_INIT_TIMEOUT_S "has its process killed and is UNAVAILABLE
    saying so, the other models loading and serving meanwhile"; readiness
    waits for every model (so it is 503), liveness does not; the hung
    process does not outlive its timeout."""
    repo = python_repository(tmp_path, models=[("init_exits", VECTOR, INIT_EXITS), ("init_hangs", VECTOR, INIT_HANGS),
                                               ("double", VECTOR, DOUBLE)])
    old = os.environ.get("ANEMONE_PYTHON_INIT_TIMEOUT_S")
    os.environ["ANEMONE_PYTHON_INIT_TIMEOUT_S"] = "2"
    try:
        proc, addresses = start_serve(repo, "--health-monitor", "false")
    finally:
        if old is None:
            os.environ.pop("ANEMONE_PYTHON_INIT_TIMEOUT_S")
        else:
            os.environ["ANEMONE_PYTHON_INIT_TIMEOUT_S"] = old
    http = addresses["HTTP"]
    started = time.time()
    try:
        c = httpclient.InferenceServerClient(http)
        deadline = time.time() + 30
        while not c.is_model_ready("double"):
            assert time.time() < deadline
            time.sleep(0.05)
        # double serves while init_hangs is still in its initialize.
        ix = index(http)
        assert ix["init_hangs"]["state"] == "LOADING" or time.time() - started > 1.5, ix
        r = py_infer(http, "double", [4, 5])
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [8, 10], r.text
        hung = model_process(proc.pid, "init_hangs")
        while index(http)["init_hangs"]["state"] == "LOADING":
            assert time.time() - started < 15, "the init timeout of 2 s was not applied"
            time.sleep(0.1)
        ix = index(http)
        assert ix["init_hangs"]["state"] == "UNAVAILABLE", ix["init_hangs"]
        assert "2" in ix["init_hangs"]["reason"] and "initialize" in ix["init_hangs"]["reason"], ix["init_hangs"]
        time.sleep(0.5)
        assert not alive(hung), "the hung initialize's process still runs"
        assert ix["init_exits"]["state"] == "UNAVAILABLE", ix["init_exits"]
        reason = ix["init_exits"]["reason"]
        assert "exit status: 5" in reason and "cannot find the weights" in reason, reason
        assert requests.get(f"http://{http}/v2/health/live").status_code == 200
        assert requests.get(f"http://{http}/v2/health/ready").status_code == 503
        assert requests.get(f"http://{http}/v2/models/init_exits/ready").status_code == 503
        r = py_infer(http, "init_exits", [1])
        assert r.status_code == 503, r.text
        r = py_infer(http, "double", [-1.5])
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [-3], r.text
    finally:
        stop_serve(proc)


def test_a_bad_init_timeout_value_is_named_in_a_warning_and_600_is_used(tmp_path):
    """SERVING.md: ANEMONE_PYTHON_INIT_TIMEOUT_S is "a positive number of
    seconds; another value is named in a warning and 600 is used"."""
    repo = python_repository(tmp_path, models=[("double", VECTOR, DOUBLE)])
    env = dict(os.environ, ANEMONE_PYTHON_INIT_TIMEOUT_S="-3", ANEMONE_PYTHON=sys.executable)
    proc = subprocess.Popen([str(BINARY), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port",
                             "0", "--metrics-port", "0", "--health-monitor", "false"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        http = None
        while http is None:
            line = proc.stdout.readline()
            assert line, "serve exited early"
            if line.startswith("HTTP listening on "):
                http = line.split(" on ")[1].strip()
        wait_ready(http)
        r = py_infer(http, "double", [2])
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [4]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "ANEMONE_PYTHON_INIT_TIMEOUT_S" in err and "-3" in err and "600" in err, err[-1000:]


# ---------------------------------------------------------------- shutdown

SERIAL = '''
backend: "python"
max_batch_size: 1
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { }
'''


def test_sigterm_answers_running_and_queued_requests_and_readiness_turns_false_first(tmp_path):
    """RELIABILITY.md Faults: "shutdown (SIGTERM) with requests running and
    queued: every one answered 200"; readiness turns false, then the listener
    closes and idle connections close (DEPLOY.md: the two steps follow each
    other at once, so an outside probe sees a 503 or a closed connection,
    never a 200), while the queued requests still run; the server stops
    within --exit-timeout-secs and exits 0 (SERVING.md Shutdown)."""
    repo = python_repository(tmp_path, models=[("serial", SERIAL, FAULTY)])
    proc, addresses = start_serve(repo, "--health-monitor", "false")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        probe = requests.Session()
        assert probe.get(f"http://{http}/v2/health/ready", timeout=5).status_code == 200
        answers = {}

        def send(k):
            x = np.array([[3, 0.4]], np.float32)
            x[0, 1] += k / 1000  # each request its own numbers
            try:
                answers[k] = (x, requests.post(f"http://{http}/v2/models/serial/infer", timeout=30, json={
                    "inputs": [{"name": "X", "shape": [1, 2], "datatype": "FP32", "data": x.tolist()}]}))
            except requests.RequestException as e:
                answers[k] = (x, e)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.time() + 5
        while metric(http, 'anemone_pending_requests{model="serial",version="1"}') != 3:
            assert time.time() < deadline, "three requests never queued behind the first"
            time.sleep(0.02)
        signalled = time.time()
        proc.send_signal(signal.SIGTERM)
        seen = []
        while any(t.is_alive() for t in threads) and time.time() - signalled < 10:
            try:
                seen.append(probe.get(f"http://{http}/v2/health/ready", timeout=2).status_code)
            except requests.RequestException:
                seen.append("closed")
            if seen[-1] != 200:
                break
            time.sleep(0.01)
        stopped = time.time() - signalled
        unfinished = sum(t.is_alive() for t in threads)
        for t in threads:
            t.join(15)
        status = proc.wait(timeout=15)
        exited = time.time() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen and seen[-1] in (503, "closed") and stopped < 1.0, (seen, stopped)
    assert unfinished > 0, "readiness was seen false only after the requests had ended"
    for k, (x, r) in sorted(answers.items()):
        assert not isinstance(r, Exception) and r.status_code == 200, (k, r)
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"]).reshape(1, 2), x + 1, rtol=1e-6)
    assert len(answers) == 4
    assert status == 0
    assert exited < 10, exited


# ---------------------------------------------------------------- request limits

LIMIT = 4000


@pytest.fixture(scope="module")
def limited():
    """examples/models (add: x, y FP32 [1, 4] -> sum, diff) with --max-request-bytes 4000."""
    proc, addresses = start_serve(ROOT / "examples/models", "--health-monitor", "false",
                                  "--max-request-bytes", str(LIMIT))
    wait_ready(addresses["HTTP"])
    yield addresses
    stop_serve(proc)


Y = {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


def x_input(**over):
    x = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    x.update(over)
    return x


@pytest.mark.parametrize("case,body,words", [
    ("elements", {"inputs": [x_input(shape=[1099511627776], data=[1, 2]), Y]},
     "input 'x' has 2 values in 'data', but shape [1099511627776] needs 1099511627776"),
    ("negative", {"inputs": [x_input(shape=[1, -1]), Y]}, "has a negative dimension -1"),
    ("longer", {"inputs": [x_input(data=[1, 2, 3, 4, 5]), Y]},
     "input 'x' has more values in 'data' than shape [1, 4] needs (4)"),
    ("nesting", {"inputs": [x_input(data=json.loads("[" * 65 + "1" + "]" * 65)), Y]},
     "input 'x': 'data' is nested deeper than 64 lists"),
    ("overflow", {"inputs": [x_input(shape=[2**32, 2**32, 2**32], data=[1]), Y]},
     "has more elements than can be addressed"),
    ("parameter object", {"inputs": [x_input(), Y], "parameters": {"a": {"b": 1}}},
     "expected a parameter value (a string, number or boolean)"),
    ("input parameter list", {"inputs": [x_input(parameters={"a": [1]}), Y]},
     "expected a parameter value (a string, number or boolean)"),
    ("header nesting", {"inputs": [[[{"name": "x"}]]]}, "malformed inference request JSON: invalid type: sequence"),
    ("output name", {"inputs": [x_input(), Y], "outputs": [{"name": "o" * 2000}]},
     "is 2000 bytes long, over the limit of 1024"),
])
def test_each_request_limit_is_400_naming_it_and_the_server_serves_on(limited, case, body, words):
    """RELIABILITY.md "Request limits": going over answers 400 with a message
    that names the limit (the words of the table), and nothing else is affected."""
    http = limited["HTTP"]
    r = requests.post(f"http://{http}/v2/models/add/infer", data=json.dumps(body), timeout=30)
    assert r.status_code == 400 and words in r.json()["error"], r.text[:500]
    r = requests.post(f"http://{http}/v2/models/add/infer", json={"inputs": [x_input(), Y]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2, 4, 6, 8]


def test_model_names_that_are_not_folder_names_are_400_before_any_lookup(limited):
    """RELIABILITY.md: model names: "model name '../x' is not a folder name of
    the repository: ..." (400, before any lookup); model names over 1024 bytes
    are refused naming the limit."""
    http = limited["HTTP"]
    body = {"inputs": [x_input(), Y]}
    r = requests.post(f"http://{http}/v2/models/..%2Fx/infer", json=body)
    assert r.status_code == 400 and "model name '../x' is not a folder name of the repository" in r.json()["error"], \
        r.text
    r = requests.post(f"http://{http}/v2/models/{'m' * 2000}/infer", json=body)
    assert r.status_code == 400 and "is 2000 bytes long, over the limit of 1024" in r.json()["error"], r.text[:300]
    c = grpcclient.InferenceServerClient(limited["gRPC"])
    a = grpcclient.InferInput("x", [1, 4], "FP32")
    a.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException) as e:
        c.infer("../x", [a])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value
    assert "is not a folder name of the repository" in e.value.message()


def test_grpc_typed_contents_that_do_not_match_the_shape_are_invalid_argument(limited):
    """RELIABILITY.md: the element count is checked against the data before
    the tensor is allocated: "has 2 values in contents.fp32_contents"; a
    negative dimension is refused too (INVALID_ARGUMENT over gRPC)."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(limited["gRPC"]))

    def request(shape, values):
        req = service_pb2.ModelInferRequest(model_name="add")
        for name in ("x", "y"):
            t = req.inputs.add(name=name, datatype="FP32", shape=shape if name == "x" else [1, 4])
            t.contents.fp32_contents.extend(values if name == "x" else [1, 2, 3, 4])
        return req

    for shape, values, words in [([1099511627776], [1, 2], "has 2 values in contents.fp32_contents"),
                                 ([1, -4], [1, 2, 3, 4], "negative dimension -4")]:
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(request(shape, values), timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert words in e.value.details(), e.value.details()
    answer = stub.ModelInfer(request([1, 4], [0.5, 1, 1.5, 2]), timeout=10)
    sums = np.frombuffer(answer.raw_output_contents[[o.name for o in answer.outputs].index("sum")], np.float32)
    np.testing.assert_array_equal(sums, np.array([0.5, 1, 1.5, 2], np.float32) + [1, 2, 3, 4])


def test_inputs_in_shared_memory_over_the_request_limit_are_413_before_anything_is_copied(limited):
    """RELIABILITY.md: inputs read from system shared memory, together, are
    bounded by --max-request-bytes: 413 "the inputs in shared memory add up to
    N bytes (input 'y' reaches it), over the M-byte request limit
    (--max-request-bytes)"; within it they are served."""
    from multiprocessing import shared_memory
    http = limited["HTTP"]
    name = f"anemone_rel_{os.getpid()}"
    shm = shared_memory.SharedMemory(name=name, create=True, size=8192)
    try:
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        y = np.full((1, 4), 0.25, np.float32)
        shm.buf[:16] = x.tobytes()
        shm.buf[16:32] = y.tobytes()
        r = requests.post(f"http://{http}/v2/systemsharedmemory/region/rel/register",
                          json={"key": f"/{name}", "offset": 0, "byte_size": 8192})
        assert r.status_code == 200, r.text

        def shm_input(n, shape, offset, size):
            return {"name": n, "shape": shape, "datatype": "FP32", "parameters": {
                "shared_memory_region": "rel", "shared_memory_byte_size": size, "shared_memory_offset": offset}}

        r = requests.post(f"http://{http}/v2/models/add/infer", json={"inputs": [
            shm_input("x", [1, 4], 0, 16), shm_input("y", [300, 4], 16, 4800)]})
        assert r.status_code == 413, r.text
        assert ("the inputs in shared memory add up to 4816 bytes (input 'y' reaches it), over the 4000-byte "
                "request limit (--max-request-bytes)") in r.json()["error"], r.text
        r = requests.post(f"http://{http}/v2/models/add/infer", json={"inputs": [
            shm_input("x", [1, 4], 0, 16), shm_input("y", [1, 4], 16, 16)]})
        assert r.status_code == 200, r.text
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        np.testing.assert_array_equal(out["sum"], (x + y).reshape(-1))
    finally:
        requests.post(f"http://{http}/v2/systemsharedmemory/region/rel/unregister")
        shm.close()
        shm.unlink()


# ---------------------------------------------------------------- warm-up again on an on-demand load

def slow_model(path, k=60, d=256):
    """y = x @ I @ I ... (k MatMuls with one d x d identity, charged d*d*4 bytes): y == x, slow for many rows."""
    w = numpy_helper.from_array(np.eye(d, dtype=np.float32), "W")
    nodes, prev = [], "x"
    for i in range(k):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", d])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def test_an_on_demand_load_runs_the_warm_up_again_and_shows_loading_meanwhile(tmp_path):
    """EVICTION.md: a model with model_warmup samples "runs them again each
    time it is loaded on demand, before the waiting requests are answered";
    the index lists it "as LOADING while a request loads it"; the request is
    answered (it does not fail)."""
    slow_model(tmp_path / "warm" / "1" / "model.onnx")
    (tmp_path / "warm" / "config.pbtxt").write_text(
        'parameters { key: "backends" value: { string_value: "tract-cpu" } }\n'
        'model_warmup [ { name: "big" batch_size: 1 count: 3 inputs { key: "x" value: '
        '{ data_type: TYPE_FP32 dims: [ 4096, 256 ] random_data: true } } } ]\n')
    weighted_model(tmp_path / "wa" / "1" / "model.onnx", n=51200)  # 204800 bytes
    proc, addresses = start_serve(tmp_path, "--memory-budget", "400KiB", "--eviction", "lru",
                                  "--health-monitor", "false", *ONE_LOAD_AT_A_TIME)
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        x = np.random.default_rng(3).random((2, 256), dtype=np.float32)
        body = {"inputs": [{"name": "x", "shape": [2, 256], "datatype": "FP32", "data": x.tolist()}]}
        t0 = time.time()
        assert requests.post(f"http://{http}/v2/models/warm/infer", json=body).status_code == 200
        warm_request = time.time() - t0
        body_a = {"inputs": [{"name": "x", "shape": [51200], "datatype": "FP32", "data": [0.0] * 51200}]}
        assert requests.post(f"http://{http}/v2/models/wa/infer", json=body_a).status_code == 200
        assert states(http)["warm"] == "UNAVAILABLE", states(http)
        seen = set()
        box = {}

        def ask():
            t = time.time()
            box["r"] = requests.post(f"http://{http}/v2/models/warm/infer", json=body, timeout=60)
            box["t"] = time.time() - t

        th = threading.Thread(target=ask)
        th.start()
        while th.is_alive():
            seen.add(states(http)["warm"])
            time.sleep(0.01)
        r = box["r"]
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 256), x,
                                   rtol=1e-5)
        assert "LOADING" in seen, seen
        # Three runs of 4096 rows before the answer: far longer than a warm request of 2 rows.
        assert box["t"] > 5 * warm_request and box["t"] > 0.2, (box["t"], warm_request)
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- overload

def test_over_the_global_limit_is_429_and_resource_exhausted_counted_as_overloaded_not_a_failure(faults):
    """RELIABILITY.md Overload: past --max-concurrency a request is refused at
    once, 429 / RESOURCE_EXHAUSTED, counted in
    anemone_requests_rejected_total{reason="overloaded"}, "not a failure of
    the model" (its `fail` stays); the request holding the permit is answered.
    The limit is set at run time (CONFIGURATION.md run-time changes)."""
    addresses, _ = faults
    http = addresses["HTTP"]
    url = f"http://{http}/v2/anemone/config"
    before = int(metric(http, "anemone_concurrency_limit"))
    assert requests.post(url, json={"max-concurrency": 1}).status_code == 200
    try:
        rejected = metric(http, 'anemone_requests_rejected_total{reason="overloaded"}') or 0
        fail = requests.get(f"http://{http}/v2/models/double/stats").json()["model_stats"][0][
            "inference_stats"]["fail"]["count"]
        box = {}
        th = threading.Thread(target=lambda: box.setdefault("r", py_infer(http, "faulty", [3, 1.0])))
        th.start()
        time.sleep(0.3)
        t0 = time.time()
        r = py_infer(http, "double", [1, 2])
        assert r.status_code == 429, r.text
        c = grpcclient.InferenceServerClient(addresses["gRPC"])
        t = grpcclient.InferInput("X", [2], "FP32")
        t.set_data_from_numpy(np.array([1, 2], np.float32))
        with pytest.raises(InferenceServerException) as e:
            c.infer("double", [t])
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED", e.value
        assert time.time() - t0 < 0.5, "refused at once"
        th.join(10)
        assert box["r"].status_code == 200 and box["r"].json()["outputs"][0]["data"] == [4, 2], box["r"].text
        assert metric(http, 'anemone_requests_rejected_total{reason="overloaded"}') == rejected + 2
        assert requests.get(f"http://{http}/v2/models/double/stats").json()["model_stats"][0][
            "inference_stats"]["fail"]["count"] == fail
        r = py_infer(http, "double", [1, 2])
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2, 4], r.text
    finally:
        requests.post(url, json={"max-concurrency": before})


# ---------------------------------------------------------------- odd files

def test_odd_files_where_a_model_or_its_config_should_be_leave_that_model_unavailable(tmp_path):
    """SERVING.md "Paths and file bounds": model files and config.pbtxt must be
    regular files inside the repository: a device such as /dev/zero, a FIFO
    (which would block a reader for ever) or a directory is refused before
    anything is read; the model is UNAVAILABLE with the reason, the others
    serve, and start-up does not hang."""
    repo = weighted_repo(tmp_path, "good", "cfgdir", "cfgzero", "onnxzero", "onnxdir", "fifo")
    (repo / "cfgdir" / "config.pbtxt").mkdir()
    (repo / "cfgzero" / "config.pbtxt").symlink_to("/dev/zero")
    for name in ["onnxzero", "onnxdir", "fifo"]:
        (repo / name / "1" / "model.onnx").unlink()
    (repo / "onnxzero" / "1" / "model.onnx").symlink_to("/dev/zero")
    (repo / "onnxdir" / "1" / "model.onnx").mkdir()
    os.mkfifo(repo / "fifo" / "1" / "model.onnx")
    proc, addresses = start_serve(repo, "--health-monitor", "false", "--strict-readiness", "false")
    http = addresses["HTTP"]
    try:
        wait_ready(http, seconds=30)
        ix = index(http)
        for name in ["cfgdir", "cfgzero"]:
            assert ix[name]["state"] == "UNAVAILABLE", ix[name]
            assert "config.pbtxt is not a regular file" in ix[name]["reason"], ix[name]
        for name in ["onnxzero", "onnxdir", "fifo"]:
            assert ix[name]["state"] == "UNAVAILABLE", ix[name]
            assert "model.onnx is not a usable model file" in ix[name]["reason"], ix[name]
        weighted_ok(http, "good", 3.0)
    finally:
        stop_serve(proc)


@pytest.mark.parametrize("where", ["/dev/zero", "/nonexistent/models", "FILE"])
def test_a_repository_that_is_not_a_directory_stops_serve_naming_it(tmp_path, where):
    """README: "Errors say what is wrong": a --model-repository that is a
    device, missing or a file is refused at once, naming it."""
    if where == "FILE":
        where = str(tmp_path / "model.onnx")
        weighted_model(Path(where))
    status, _, err = anemone("serve", "--model-repository", where, "--http-port", "0", "--grpc-port", "0", timeout=20)
    assert status not in (0, None), (where, status)
    assert f"model repository {where} is not a directory" in err, err[-300:]


def test_a_model_file_larger_than_the_free_budget_is_refused_before_it_is_read(tmp_path):
    """SERVING.md: "A file larger than the free part of --memory-budget is
    refused before it is read" (without eviction: EVICTION.md "With
    --memory-budget alone, anemone refuses a load that would exceed the
    budget"); the model already loaded serves on."""
    repo = weighted_repo(tmp_path, "wa", "wb")
    proc, addresses = start_serve(repo, "--memory-budget", "150KiB", "--health-monitor", "false",
                                  "--model-control-mode", "explicit", "--load-model", "wa")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        r = requests.post(f"http://{http}/v2/repository/models/wb/load")
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err.startswith("failed to load model 'wb'") and "the model file is" in err \
            and "more than the memory budget has free (51200 bytes)" in err, err
        assert index(http)["wb"]["state"] == "UNAVAILABLE"
        weighted_ok(http, "wa", -1.0)
        assert metric(http, "anemone_memory_used_bytes") == 102400
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- eviction: nothing can be evicted

def test_a_request_for_an_evicted_model_when_the_rest_is_pinned_or_in_a_sequence_is_503_naming_each(tmp_path):
    """EVICTION.md: "a load that finds the rest of the budget held by busy or
    pinned models is refused (503 / UNAVAILABLE, worth retrying) naming each
    of them and why" - an on-demand load too; a sequence model with a
    sequence open is never evicted, and may go once its sequence ENDs."""
    repo = weighted_repo(tmp_path, "wc", "pa", "pb", "sq")
    for name in ["pa", "pb"]:
        (repo / name / "config.pbtxt").write_text('parameters { key: "eviction" value: { string_value: "never" } }\n')
    (repo / "sq" / "config.pbtxt").write_text("sequence_batching { max_sequence_idle_microseconds: 30000000 }\n")
    proc, addresses = start_serve(repo, "--memory-budget", "250KiB", "--eviction", "lru", "--health-monitor", "false",
                                  "--model-control-mode", "explicit", "--load-model", "wc", *ONE_LOAD_AT_A_TIME)
    http = addresses["HTTP"]
    load = lambda m: requests.post(f"http://{http}/v2/repository/models/{m}/load", timeout=60)  # noqa: E731
    try:
        wait_ready(http)
        assert load("sq").status_code == 200
        weighted_ok(http, "sq", 1.0, sequence_id=9, sequence_start=True)
        assert load("pa").status_code == 200  # evicts wc, the only idle one
        assert states(http)["wc"] == "UNAVAILABLE"
        held = ["'pa' version 1 (102400 bytes, pinned)", "'sq' version 1 (102400 bytes, 1 sequences open)"]
        r = weighted_infer(http, "wc", np.zeros(W, np.float32))
        assert r.status_code == 503, r.text
        assert all(h in r.json()["error"] for h in held), r.text
        c = grpcclient.InferenceServerClient(addresses["gRPC"])
        t = grpcclient.InferInput("x", [W], "FP32")
        t.set_data_from_numpy(np.zeros(W, np.float32))
        with pytest.raises(InferenceServerException) as e:
            c.infer("wc", [t])
        assert e.value.status() == "StatusCode.UNAVAILABLE" and all(h in e.value.message() for h in held), e.value
        # The sequence ends: sq may go, and wc is loaded on demand in its place.
        weighted_ok(http, "sq", 2.0, sequence_id=9, sequence_end=True)
        weighted_ok(http, "wc", 4.0)
        st = states(http)
        assert (st["wc"], st["pa"], st["sq"]) == ("READY", "READY", "UNAVAILABLE"), st
        assert metric(http, "anemone_memory_used_bytes") == 2 * 102400
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- a corrupted file in poll mode; the decode budget

def test_a_file_corrupted_in_poll_mode_leaves_the_old_version_serving_and_big_bodies_decode_alone(tmp_path):
    """RELIABILITY.md Faults: "a model file corrupted on disk (poll mode): the
    old version keeps serving, with the right outputs over both protocols; the
    index row stays READY and its reason says the reload failed and why".
    RELIABILITY.md Request memory: with --max-decoding-bytes smaller than a
    body, "a body larger than the budget is decoded alone": served, several at
    once too."""
    repo = weighted_repo(tmp_path, "wa", "wb")
    proc, addresses = start_serve(repo, "--health-monitor", "false", "--model-control-mode", "poll",
                                  "--repository-poll-secs", "1", "--max-decoding-bytes", "100")
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: weighted_ok(http, "wa" if k % 2 else "wb", float(k)), range(8)))
        (repo / "wa" / "1" / "model.onnx").write_bytes(b"this is not an onnx model any more")
        deadline = time.time() + 15
        while "reload failed" not in index(http)["wa"].get("reason", ""):
            assert time.time() < deadline, index(http)["wa"]
            time.sleep(0.2)
        row = index(http)["wa"]
        assert row["state"] == "READY", row
        assert row["reason"].startswith("reload failed, still serving the previous load: ") and "ONNX" in row["reason"], row
        weighted_ok(http, "wa", -2.0)
        c = grpcclient.InferenceServerClient(addresses["gRPC"])
        x = np.linspace(0, 1, W, dtype=np.float32)
        t = grpcclient.InferInput("x", [W], "FP32")
        t.set_data_from_numpy(x)
        np.testing.assert_array_equal(c.infer("wa", [t]).as_numpy("y"), x + np.arange(W, dtype=np.float32))
        assert c.is_model_ready("wa") and c.is_server_ready()
    finally:
        stop_serve(proc)


def test_a_zero_decode_budget_is_refused():
    """RELIABILITY.md: --max-decoding-bytes is a budget bodies reserve from; 0
    would let no body decode: the server does not start (status 2, a flag mistake)."""
    status, _, err = anemone("serve", "--model-repository", str(ROOT / "examples/models"), "--http-port", "0",
                             "--grpc-port", "0", "--max-decoding-bytes", "0", timeout=20)
    assert status == 2 and "--max-decoding-bytes" in err, (status, err[-300:])


# ---------------------------------------------------------------- Python models under a budget

def test_python_models_are_evicted_by_their_process_memory_and_their_process_ends(tmp_path):
    """SERVING.md: a Python model's process's resident memory after initialize
    is its footprint for --memory-budget (tens of MiB with numpy); EVICTION.md:
    the least recently used idle model is unloaded to make room and loaded
    again on request (answered, not failed). An evicted Python model's
    process ends (its memory is given back); the one loaded again runs in a
    new process and answers numpy's numbers."""
    repo = python_repository(tmp_path, models=[("double", VECTOR, DOUBLE), ("twice", VECTOR, DOUBLE)])
    status, out, err = anemone("models", "--model-repository", str(repo), "--memory-budget", "1GiB",
                               "--eviction", "lru", env={"ANEMONE_PYTHON": sys.executable})
    assert status == 0, err[-300:]
    charged = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(double|twice)\s+1\s+READY\s+python\s+\S+ ms\s+"
                                                                  r"([\d.]+) MiB$", out, re.M)}
    assert len(charged) == 2 and all(5 < c < 500 for c in charged.values()), out
    budget = int(max(charged.values()) * 1.5 * 2**20)
    proc, addresses = start_serve(repo, "--memory-budget", str(budget), "--eviction", "lru",
                                  "--health-monitor", "false", *ONE_LOAD_AT_A_TIME)
    http = addresses["HTTP"]
    try:
        wait_ready(http)
        st = states(http)
        assert sorted(st.values()) == ["READY", "UNAVAILABLE"], st
        evicted = [n for n, s in st.items() if s == "UNAVAILABLE"][0]
        resident = [n for n, s in st.items() if s == "READY"][0]
        pid = model_process(proc.pid, resident)
        x = np.array([1.25, -4.0, 1e6], np.float32)
        r = py_infer(http, evicted, x)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(r.json()["outputs"][0]["data"], x * 2)
        st = states(http)
        assert (st[evicted], st[resident]) == ("READY", "UNAVAILABLE"), st
        deadline = time.time() + 10
        while alive(pid):
            assert time.time() < deadline, f"the evicted model's process {pid} still runs"
            time.sleep(0.1)
        assert model_process(proc.pid, evicted) != pid
        assert [p for p, cmd in children(proc.pid).items() if f"/{resident}/1/model.py" in cmd] == []
        assert metric(http, "anemone_memory_used_bytes") <= budget
        r = py_infer(http, resident, x)
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == (x * 2).tolist(), r.text
    finally:
        stop_serve(proc)


def test_python_processes_end_when_the_server_is_killed_with_sigkill(tmp_path):
    """SERVING.md Shutdown: a Python model's process "watches its parent" and
    ends within a second of anemone, even in its execute; so a server killed
    with SIGKILL (the OOM killer, `kill -9`) leaves no orphaned model
    processes behind, idle or busy."""
    repo = python_repository(tmp_path, models=[("faulty", VECTOR, FAULTY), ("double", VECTOR, DOUBLE)])
    proc, addresses = start_serve(repo, "--health-monitor", "false")
    http = addresses["HTTP"]
    kids = []
    try:
        wait_ready(http)
        kids = [model_process(proc.pid, "faulty"), model_process(proc.pid, "double")]
        def busy():
            try:
                requests.post(f"http://{http}/v2/models/faulty/infer", timeout=60,
                              json={"inputs": [{"name": "X", "shape": [2], "datatype": "FP32", "data": [3, 30]}]})
            except requests.RequestException:
                pass  # the server is gone

        th = threading.Thread(target=busy, daemon=True)
        th.start()
        time.sleep(0.4)
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.time() + 3
        while any(alive(k) for k in kids) and time.time() < deadline:
            time.sleep(0.05)
        left = [k for k in kids if alive(k)]
        assert left == [], f"model processes {left} outlived the server by 3 s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:  # this test's own model processes
            if alive(k):
                os.kill(k, signal.SIGKILL)
