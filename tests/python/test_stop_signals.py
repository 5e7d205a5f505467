"""What a stop does to work in progress: Python models' processes, and loads
(docs/SERVING.md, "Shutdown" and "A process that dies").

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, and
an init that forwards signals to the group (dumb-init's default) sends it
SIGTERM: the server and every Python model process get the signal at once.
As in Triton (whose stub's handler skips SIGINT and SIGTERM), the model
processes leave it to the server, which runs each instance's finalize() and
then ends them. Before session 50 the processes died of the signal, and no
finalize() ran.

A process that ends while no request runs (the OOM killer, a model's own
thread calling os._exit) is reaped at once and logged then; before session
50 it stayed a zombie until the model's next request or unload, and nothing
was logged until that request.

A stop while ONNX Runtime builds sessions (models loading) exits 0: before
session 50 the C library's exit ran ONNX Runtime's static destructors under
the loading threads, and about one such stop in six crashed (SIGSEGV, 139).

Each test starts its own server in a process group of its own, its log in a
file, and sends the signals as a terminal or an init would.
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
from serve_support import ROOT, python_repository, start_serve, wait_ready

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
"""

# initialize() starts a program (sleep) and notes its pid; finalize() ends
# it with SIGTERM and writes, in a file of its own process, how the program
# ended: minus the signal that ended it, or "ignored SIGTERM" had the
# model's process handed an ignored SIGTERM down through exec.
MODEL = """
import multiprocessing
import os
import subprocess
import time
import numpy as np
import triton_python_backend_utils as pb_utils

SIDE = {side!r}


class TritonPythonModel:
    def initialize(self, args):
        time.sleep({init_sleep})
        self.sleeper = subprocess.Popen(["sleep", "120"])
        with open(os.path.join(SIDE, "started.%d" % os.getpid()), "w") as f:
            f.write(str(self.sleeper.pid))

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if x[0] == -2:
                # A process the model forks is ended by SIGTERM, as
                # multiprocessing's Pool.terminate() expects of its workers.
                child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
                child.start()
                child.terminate()
                child.join(5)
                if child.exitcode is None:
                    child.kill()
                    child.join()
                    y = np.array([-999, 0])
                else:
                    y = np.array([child.exitcode, 0])
            elif x[0] == -3:
                open(os.path.join(SIDE, "executing.%d" % os.getpid()), "w").close()
                time.sleep(30)
                y = x
            elif x[0] < 0:
                y = np.array([os.getpid(), 0])
            else:
                y = x * 2 + 1
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y.astype(np.float32))]))
        return out

    def finalize(self):
        self.sleeper.terminate()
        try:
            code = self.sleeper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.sleeper.kill()
            code = "ignored SIGTERM"
        with open(os.path.join(SIDE, "finalized.%d" % os.getpid()), "w") as f:
            f.write(str(code))
"""


def boot(tmp_path, count=2, slow=False):
    """A server in a process group of its own (as a shell's job, or an
    init's child), serving `pm` with `count` instances; its log in a file.
    With `slow`, a model `slow` too, whose initialize() takes 120 s: the
    server is then not ready, and `pm` is waited for alone."""
    side = tmp_path / "side"
    side.mkdir()
    models = [("pm", CONFIG.format(name="pm", count=count), MODEL.format(side=str(side), init_sleep=0))]
    if slow:
        models.append(("slow", CONFIG.format(name="slow", count=1), MODEL.format(side=str(side), init_sleep=120)))
    repo = python_repository(tmp_path / "repo", models=models)
    with open(tmp_path / "serve.log", "w") as log:
        proc, addresses = start_serve(repo, stderr=log, new_session=True)
    http = addresses["HTTP"]
    if slow:
        wait_model_ready(http, "pm")
    else:
        wait_ready(http)
    return {"proc": proc, "http": http, "side": side, "log": tmp_path / "serve.log"}


def wait_model_ready(http, name, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{http}/v2/models/{name}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"model '{name}' was not ready within {seconds} s")


def model_processes(repo_marker):
    """Pids of processes whose command line names `repo_marker` (a model.py path), wherever their parent."""
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if repo_marker in cmd and alive(int(entry)):
            out.append(int(entry))
    return out


def infer(http, x):
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": list(map(float, x))}]}
    request = urllib.request.Request(
        f"http://{http}/v2/models/pm/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())["outputs"][0]["data"]


def notes(side, prefix):
    return {p.name.split(".", 1)[1]: p.read_text() for p in side.glob(prefix + ".*")}


def children(pid):
    """(pid, state) of `pid`'s child processes."""
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0]))
    return out


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "group-sigterm"])
def test_a_signal_to_the_whole_group_runs_every_finalize(tmp_path, signum):
    """The signal goes to the server and both model processes at once (os.killpg, as the terminal's Ctrl-C or
    dumb-init's forwarding does): the server exits 0 and each instance's finalize() ran, in a process that had
    been started for it; the program each one started, in the group too, was ended by the signal (its handler
    not inherited: a program ignoring SIGTERM would outlive finalize's terminate())."""
    s = boot(tmp_path, count=2)
    x = np.array([1.5, -0.0], dtype=np.float32)
    np.testing.assert_allclose(infer(s["http"], x), x * 2 + 1, rtol=1e-6)
    started = notes(s["side"], "started")
    assert len(started) == 2, started
    os.killpg(s["proc"].pid, signum)
    assert s["proc"].wait(timeout=30) == 0, s["log"].read_text()
    finalized = notes(s["side"], "finalized")
    assert finalized == {pid: str(-signum) for pid in started}, (
        f"finalize() must run in each model process ({sorted(started)}), its program ended by the signal; "
        f"got {finalized}; the log: {s['log'].read_text()}"
    )
    for sleeper in started.values():
        assert not alive(int(sleeper)), f"the program a model started ({sleeper}) outlived the server"


def test_a_process_that_dies_while_idle_is_reaped_and_logged_at_once(tmp_path):
    """SIGKILL to an idle model process (as the OOM killer sends): within 2.5 s it is no zombie of the server's
    and the log names the model and the signal, before any request; the next request is answered by a new
    process, and a stop still runs finalize() in the processes that are left."""
    s = boot(tmp_path, count=1)
    try:
        pid = int(infer(s["http"], [-1.0, 0.0])[0])
        assert any(p == pid for p, _ in children(s["proc"].pid)), "the model's process is the server's child"
        os.kill(pid, signal.SIGKILL)
        # Its program is orphaned by the kill, as it would be by the OOM killer.
        os.kill(int(notes(s["side"], "started")[str(pid)]), signal.SIGKILL)
        deadline = time.time() + 2.5
        while any(p == pid for p, _ in children(s["proc"].pid)) and time.time() < deadline:
            time.sleep(0.05)
        left = [c for c in children(s["proc"].pid) if c[0] == pid]
        assert not left, f"the killed model process is still a child of the server (state {left}): a zombie"
        log = s["log"].read_text()
        assert "model 'pm' ended (signal: 9 (SIGKILL))" in log, log
        x = np.array([3.0, 4.0], dtype=np.float32)
        np.testing.assert_allclose(infer(s["http"], x), x * 2 + 1, rtol=1e-6)
        again = int(infer(s["http"], [-1.0, 0.0])[0])
        assert again != pid
    finally:
        s["proc"].send_signal(signal.SIGTERM)
        assert s["proc"].wait(timeout=30) == 0
    assert set(notes(s["side"], "finalized")) == {str(again)}
    assert s["log"].read_text().count("ended (signal") == 1, "a stop is no end to log as news"


def test_ctrl_c_while_a_model_is_still_in_initialize_stops_at_once(tmp_path):
    """Ctrl-C while `slow` is still in its 120 s initialize(): the server exits 0 within 3 s (it waited its whole
    6 s finalize bound for that process before session 50), the loaded model's finalize() ran, and no process
    running either model.py is left (`slow` gets no finalize(): it never loaded, as in Triton)."""
    s = boot(tmp_path, count=1, slow=True)
    slow = str(tmp_path / "repo" / "slow" / "1" / "model.py")
    try:
        x = np.array([0.5, 2.0], dtype=np.float32)
        np.testing.assert_allclose(infer(s["http"], x), x * 2 + 1, rtol=1e-6)
        # Its load may start after `pm` is ready (a full run's loaded machine).
        deadline = time.time() + 15
        while not model_processes(slow) and time.time() < deadline:
            time.sleep(0.05)
        assert model_processes(slow), "the slow model's process should be in its initialize()"
    except BaseException:
        # Not left running (with its 120 s initialize) by a failure here.
        os.killpg(s["proc"].pid, signal.SIGKILL)
        s["proc"].wait(timeout=30)
        raise
    start = time.time()
    os.killpg(s["proc"].pid, signal.SIGINT)
    assert s["proc"].wait(timeout=30) == 0, s["log"].read_text()
    took = time.time() - start
    assert took < 3.0, f"the server took {took:.1f} s to stop; the log: {s['log'].read_text()}"
    assert len(notes(s["side"], "finalized")) == 1, notes(s["side"], "finalized")
    deadline = time.time() + 2.0
    while model_processes(slow) and time.time() < deadline:
        time.sleep(0.05)
    assert not model_processes(slow), "the slow model's process outlived the server"


def test_a_process_the_model_forks_is_still_ended_by_sigterm(tmp_path):
    """The model forks a process (multiprocessing, fork context) and terminates it: SIGTERM ends it (-15). The
    model process's own handler must not pass to it: multiprocessing's Pool.terminate(), which leaving
    `with Pool()` calls, waits for its workers after SIGTERM, and hung (a run of test_python_backend's fork
    test did, as this fix was first written)."""
    s = boot(tmp_path, count=1)
    try:
        assert infer(s["http"], [-2.0, 0.0])[0] == -15
    finally:
        s["proc"].send_signal(signal.SIGTERM)
        assert s["proc"].wait(timeout=30) == 0


def onnx_repository(tmp_path, n=40, model=ROOT / "examples/models/add/1/model.onnx"):
    """`n` copies of an ONNX model, with no config.pbtxt (completed from the model)."""
    repo = tmp_path / "repo"
    for i in range(n):
        (repo / f"m{i}" / "1").mkdir(parents=True)
        shutil.copy(model, repo / f"m{i}" / "1" / "model.onnx")
    return repo


def stop_during_loads(repo, ready, signum, group, *flags, log=subprocess.DEVNULL, watch=lambda: None):
    """Starts a server on `repo` in a session of its own, sends `signum` (to its whole group with `group`) once
    `ready` models are READY (calling `watch` meanwhile), and returns its exit status."""
    # Marks this server's processes (its comparison children inherit it), apart from other tests' servers.
    proc, addresses = start_serve(repo, *flags, stderr=log, env={"ANEMONE_TEST_MARK": str(repo)}, new_session=True)
    http = addresses["HTTP"]
    deadline = time.time() + 60
    while ready_models(http) < ready and time.time() < deadline:
        watch()
        time.sleep(0.01)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    status = proc.wait(timeout=60)
    proc.stdout.close()
    return status


def test_a_stop_while_onnx_runtime_builds_sessions_exits_0(tmp_path):
    """40 ONNX models loading on onnxruntime (--backends onnxruntime --strict: sessions built in the server's
    process), SIGTERM once the first few are READY: exit status 0, eight times, at different points of the
    loads. Before session 50 the exit's teardown ran under the loading threads and crashed the process with
    SIGSEGV (139) in about one stop in six."""
    repo = onnx_repository(tmp_path)
    statuses = [
        stop_during_loads(repo, 1 + attempt * 3, signal.SIGTERM, False, "--backends", "onnxruntime", "--strict")
        for attempt in range(8)
    ]
    assert statuses == [0] * 8, f"exit statuses of eight stops during loads: {statuses} (-11: SIGSEGV)"


def test_ctrl_c_while_the_engines_are_compared_exits_0_and_leaves_no_comparison(tmp_path):
    """Ctrl-C (SIGINT to the group) while 24 ONNX models load with both CPU engines, each load comparing them in
    a child process: the server exits 0, four times at different points of the loads, and no comparison process
    outlives it by more than a second and a half. The children run in process groups of their own (checked
    while they run), so the terminal's signal is the server's alone: before session 50 they died of it, and the
    server warned that the comparisons had failed and redid them in its own process as it stopped. (A child
    caught between its spawn and its own group can still get it: seen about once in thirty stops here.)"""
    repo = onnx_repository(tmp_path, 24, ROOT / "fixtures/generated/transformer_block/model.onnx")
    seen = []

    def own_groups():
        for pid in marked(repo):
            # The command line first: once it names compare-engines the
            # child has run exec, after taking its group. Read the other way
            # round, a child still between its spawn and exec was seen in
            # the server's group and then with its new command line (a
            # cold run's one False among 200).
            try:
                command = open(f"/proc/{pid}/cmdline", "rb").read()
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if b"compare-engines" in command:
                seen.append(int(fields[2]) == pid)

    for attempt in range(4):
        log_path = tmp_path / f"serve{attempt}.log"
        with open(log_path, "w") as log:
            status = stop_during_loads(repo, 1 + attempt * 3, signal.SIGINT, True, log=log, watch=own_groups)
        assert status == 0, log_path.read_text()
    assert seen and all(seen), f"comparison processes in a group of their own, as seen while loading: {seen}"
    deadline = time.time() + 1.5
    while marked(repo) and time.time() < deadline:
        time.sleep(0.05)
    assert not marked(repo), "a comparison process outlived its server"


def test_the_comparison_process_leaves_sigint_sigterm_and_sighup_to_the_server():
    """`anemone compare-engines` (the child each ONNX load runs) ignores SIGHUP, SIGINT and SIGTERM, sent by
    name (`pkill anemone`, `pkill -HUP anemone` after logrotate) as to the server: it lives on, waiting for its
    job, and ends once its standard input closes (it ends when its server does, too: it watches its parent)."""
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    child = subprocess.Popen([binary, "compare-engines"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        wanted = (1 << (signal.SIGHUP - 1)) | (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
        deadline, ignored = time.time() + 30, 0
        while ignored & wanted != wanted and time.time() < deadline:
            status = open(f"/proc/{child.pid}/status").read()
            ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
            time.sleep(0.02)
        assert ignored & wanted == wanted, f"SigIgn {ignored:#x}: SIGHUP, SIGINT and SIGTERM must be ignored"
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            child.send_signal(signum)
        time.sleep(0.3)
        assert child.poll() is None, f"the comparison process ended on a signal: {child.returncode}"
        child.stdin.close()
        assert child.wait(timeout=30) != 0
        assert b"not for use by hand" in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def marked(repo):
    """Live processes started with this test's ANEMONE_TEST_MARK."""
    mark, out = f"ANEMONE_TEST_MARK={repo}".encode(), []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if mark in environ and alive(int(entry)):
            out.append(int(entry))
    return out


def ready_models(http):
    request = urllib.request.Request(f"http://{http}/v2/repository/index", b"{}", {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return sum(1 for m in json.loads(r.read()) if m.get("state") == "READY")
    except OSError:
        return 0


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    """Ctrl-C while a request runs (a 30 s execute) starts the graceful stop, which waits for it (standard
    output says a second Ctrl-C exits at once); a second Ctrl-C then ends the server within 3 s, status 0,
    saying so, and the model's process ends with it (it watches its parent). Before session 50 the second
    Ctrl-C was ignored and the user waited for the request, up to --exit-timeout-secs, and for the models'
    finalize(). (A second SIGTERM still changes nothing, as in Triton: test_day_two_operations.py.)"""
    s = boot(tmp_path, count=1)
    done = []
    caller = threading.Thread(target=lambda: done.append(infer_or_error(s["http"], [-3.0, 0.0])), daemon=True)
    caller.start()
    deadline = time.time() + 30
    while not list(s["side"].glob("executing.*")) and time.time() < deadline:
        time.sleep(0.02)
    pid = int(next(s["side"].glob("executing.*")).name.split(".")[1])
    os.killpg(s["proc"].pid, signal.SIGINT)
    time.sleep(1.0)
    assert s["proc"].poll() is None, "the first Ctrl-C must wait for the request in flight"
    start = time.time()
    os.killpg(s["proc"].pid, signal.SIGINT)
    status = s["proc"].wait(timeout=60)
    took = time.time() - start
    assert status == 0, s["log"].read_text()
    assert took < 3.0, f"the second Ctrl-C took {took:.1f} s to end the server; the log: {s['log'].read_text()}"
    assert "a second SIGINT: exiting now" in s["log"].read_text()
    out = s["proc"].stdout.read()
    assert "stopping: requests in flight get up to 10 s; a second Ctrl-C (SIGINT) exits at once" in out, out
    assert out.rstrip().endswith("anemone stopped"), out
    deadline = time.time() + 3
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the model's process outlived the server"
    caller.join(timeout=10)
    assert done and done[0] != 200, done


def infer_or_error(http, x):
    """The request's HTTP status, or the error that ended it."""
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": list(map(float, x))}]}
    request = urllib.request.Request(
        f"http://{http}/v2/models/pm/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status
    except Exception as e:  # noqa: BLE001  (the connection ends with the server)
        return repr(e)
