"""anemone as a container's first process (docs/DEPLOY.md, "PID 1").

A container started without an init (`docker run` without `--init`, a
Kubernetes pod) runs `anemone serve` as PID 1, which inherits every
orphaned process of the container. Here a PID namespace of its own
(`unshare --pid --fork --mount-proc`, with `--user --map-root-user` when not
root) makes `anemone serve` its PID 1, and a Python model leaves orphans
(processes whose parent ended first) that end 0.3 s later. Before the
change they stayed zombies of PID 1 for the server's whole life; now PID 1
is anemone's small init, which waits for them, passes signals on to the
server (a child of its own) and exits as the server did.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_support import ROOT

ORPHANS = 3
MODEL = f'''
import os, subprocess, sys
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        # Each `sh` starts a `sleep` in the background and ends at once: the
        # sleep is orphaned and handed to PID 1, and ends 0.3 s later.
        for _ in range({ORPHANS}):
            subprocess.run(["sh", "-c", "sleep 0.3 &"], check=True)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0",
                pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() * 2)]) for r in requests]
'''
SLOW = '''
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        time.sleep(1)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0",
                pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() * 2)]) for r in requests]
'''
CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
'''


def namespace_command():
    if not shutil.which("unshare"):
        pytest.skip("unshare is missing: no PID namespace of our own")
    base = ["unshare"] + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"])
    # --kill-child: should unshare end first, the namespace's PID 1 goes
    # with it (and with PID 1 every process of the namespace).
    base += ["--pid", "--fork", "--kill-child", "--mount-proc"]
    probe = subprocess.run(base + ["sh", "-c", "echo $$"], capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "1":
        pytest.skip(f"no PID namespace here ({probe.stderr.strip() or probe.stdout.strip()})")
    return base


def python_repo(tmp_path, name, source):
    """A repository with one Python model, `name`, whose model.py is `source`."""
    repo = tmp_path / "repo"
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1/model.py").write_text(source)
    (repo / name / "config.pbtxt").write_text(CONFIG)
    return repo


def stat(pid):
    """(state, parent pid) of `pid` as this namespace sees it."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = stat(entry.name)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if parent == pid:
                out.append((int(entry.name), state))
    return out


def end_namespace(proc, pid1):
    """Nothing of the namespace outlives the test: its PID 1 killed (the
    kernel then kills every process in it), and unshare waited for."""
    if proc.poll() is None:
        if pid1 is not None:
            try:
                os.kill(pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    proc.wait(timeout=30)


@pytest.fixture
def served(tmp_path):
    """`anemone serve` as PID 1 of a namespace; yields (the namespace's
    PID 1 as seen here, the HTTP URL, the process running unshare, and the
    log's path, the lines on stdout and their reader)."""
    command = namespace_command()
    repo = python_repo(tmp_path, "orphans", MODEL)
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    log = tmp_path / "serve.log"
    env = dict(os.environ, ANEMONE_PYTHON=sys.executable, ANEMONE_LOG="info")
    proc = subprocess.Popen(command + [binary, "serve", "--model-repository", str(repo), "--http-port", "0",
                                       "--grpc-port", "0", "--exit-timeout-secs", "10"],
                            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
    pid1 = None
    try:
        http = None
        while http is None:
            line = proc.stdout.readline()
            assert line, f"serve exited early: {proc.wait()} {log.read_text()[-2000:]}"
            if line.startswith("HTTP listening on "):
                http = "http://" + line.split(" listening on ", 1)[1].strip()
        said = []
        reader = threading.Thread(target=lambda: said.extend(proc.stdout), daemon=True)
        reader.start()
        found = [pid for pid, _ in children(proc.pid)]
        assert len(found) == 1, found
        pid1 = found[0]
        deadline = time.monotonic() + 90
        while requests.get(f"{http}/v2/models/orphans/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        yield pid1, http, proc, (log, said, reader)
    finally:
        end_namespace(proc, pid1)


def test_pid_1_waits_for_the_orphans_and_the_server_serves(served):
    pid1, http, _, _ = served
    time.sleep(1.0)  # the orphans' 0.3 s, with room
    below = children(pid1)
    zombies = [pid for pid, state in below if state == "Z"]
    assert not zombies, f"{len(zombies)} zombies of PID 1 (the binary before: {ORPHANS}): {below}"
    # PID 1 is the init; the server is its child, and answers.
    assert len(below) == 1, below
    server = below[0][0]
    assert Path(f"/proc/{server}/exe").resolve() == Path(f"/proc/{pid1}/exe").resolve()
    x = np.array([1.5, -2.0, 3.25], np.float32)
    r = requests.post(f"{http}/v2/models/orphans/infer", json={"inputs": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [3], "data": x.tolist()}]}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), x * 2)


def test_a_sigterm_to_pid_1_stops_the_server_as_it_documents(served):
    """`docker stop` sends SIGTERM to PID 1: the server gets it, stops as
    DEPLOY.md's timeline says (readiness off, then exit 0), and the init
    exits with its status."""
    pid1, http, proc, (log, said, reader) = served
    os.kill(pid1, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    reader.join(timeout=10)
    assert any("anemone stopped" in line for line in said), (said, log.read_text()[-2000:])
    assert "shutting down: finishing requests in flight" in log.read_text()


def test_the_init_exits_as_the_server_did(served):
    """A server killed by a signal: the init exits 128 + the signal, as a
    shell reports it (and as tini does)."""
    pid1, _, proc, _ = served
    server = children(pid1)[0][0]
    os.kill(server, signal.SIGKILL)
    assert proc.wait(timeout=30) == 128 + signal.SIGKILL


def test_ctrl_c_at_a_terminal_reaches_the_server_once(tmp_path):
    """`docker run -it`: Ctrl-C makes the terminal send SIGINT to its whole
    foreground group, the init and the server alike. The init does not pass
    that one on (the kernel sent it), so the server sees one SIGINT and
    lets the request in flight (1 s) finish, not as for a second Ctrl-C
    ("exits at once"). An init that passed it on as well failed here only
    once in three runs: the two SIGINTs mostly arrive together and merge
    into one pending signal."""
    import pty
    import select
    command = namespace_command()
    repo = python_repo(tmp_path, "slow", SLOW)
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    env = dict(os.environ, ANEMONE_PYTHON=sys.executable)
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(command[0], command + [binary, "serve", "--model-repository", str(repo), "--http-port", "0",
                                          "--grpc-port", "0", "--metrics-port", "0"], env)
    out = b""

    def read_until(text, seconds):
        nonlocal out
        deadline = time.monotonic() + seconds
        while text not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return
                if not chunk:
                    return
                out += chunk

    answers = []
    try:
        read_until(b"READY", 60)
        text = out.decode(errors="replace")
        assert "READY" in text, text
        http = text.split("HTTP listening on ", 1)[1].split()[0]
        x = [1.0, 2.0]
        asking = threading.Thread(target=lambda: answers.append(requests.post(
            f"http://{http}/v2/models/slow/infer", timeout=30,
            json={"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2], "data": x}]})))
        asking.start()
        time.sleep(0.3)
        os.write(fd, b"\x03")
        read_until(b"anemone stopped", 30)
        _, status = os.waitpid(pid, 0)
        pid = None
        asking.join(timeout=30)
    finally:
        if pid is not None:  # the test failed before unshare ended: end its namespace too
            for inside, _ in children(pid):
                os.kill(inside, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, text[-1500:])
    assert "anemone stopped" in text and "a second SIGINT" not in text, text[-1500:]
    assert answers and answers[0].status_code == 200, (answers, text[-1500:])
    assert answers[0].json()["outputs"][0]["data"] == [2.0, 4.0]
