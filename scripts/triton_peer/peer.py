"""Starting the two servers side by side, for the scripts that compare them
(batch_stats.py, shared_memory.py): tritonserver 2.51 from the peer's
site-packages (scripts/triton_peer/setup.sh) and an `anemone` binary, each on
ports of its own, in a process group of its own."""
import json
import os
import signal
import sys
import time
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_triton(peer: Path, repo: Path, http: int, grpc: int, log: Path, extra=()) -> subprocess.Popen:
    """tritonserver on `repo`, with `extra` flags; `peer` is setup.sh's output folder."""
    site = Path((peer / "site-packages").read_text().split()[0])
    ts = site / "pytriton/tritonserver"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(site / "nvidia_pytriton.libs")
    cmd = [str(ts / "bin/tritonserver"), f"--model-repository={repo}", f"--http-port={http}",
           f"--grpc-port={grpc}", "--allow-metrics=false", f"--backend-directory={ts / 'backends'}",
           "--log-verbose=0", *extra]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def start_anemone(binary: Path, repo: Path, http: int, grpc: int, log: Path) -> subprocess.Popen:
    cmd = [str(binary), "serve", "--model-repository", str(repo), "--http-port", str(http),
           "--grpc-port", str(grpc), "--metrics-port", "0"]
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def request(url: str, body=None, method=None):
    """(status, parsed JSON body or {}) of one HTTP call; a non-JSON body
    comes back as {"text": ...}."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"text": raw.decode(errors="replace")}


def wait_ready(base: str, proc: subprocess.Popen, name: str, log: Path, models) -> None:
    """Waits (60 s at most) until every one of `models` is ready at `base`;
    exits with a message pointing to `log` when the server dies or never is."""
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{name} exited before it was ready; see {log}")
        try:
            if all(request(f"{base}/v2/models/{m}/ready")[0] == 200 for m in models):
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    sys.exit(f"{name} was not ready after 60 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, and wait for it (SIGKILL
    after 30 s: tritonserver can wait long for its Python stubs)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def ask(name: str, start, repo: Path, out: Path, models, questions) -> list:
    """Starts one server (`start(repo, http, grpc, log)`), waits for
    `models`, and returns `questions("host:http", "host:grpc")`: a list of
    (label, answer) pairs. The log is `out/<name>.log`."""
    http, grpc = free_port(), free_port()
    log = out / f"{name}.log"
    proc = start(repo, http, grpc, log)
    try:
        wait_ready(f"http://127.0.0.1:{http}", proc, name, log, models)
        return questions(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}")
    finally:
        stop(proc)


def report(triton: list, anemone: list) -> None:
    """Prints each question with Triton's answer (and anemone's where it
    differs), then exits 1 when any differ, 0 otherwise."""
    differ = len(triton) != len(anemone)
    for (label, ta), (_, aa) in zip(triton, anemone):
        same = ta == aa
        differ |= not same
        print(f"{label:40} {'same' if same else 'DIFFERS'}: {ta}")
        if not same:
            print(f"{'':40} anemone: {aa}")
    sys.exit(1 if differ else 0)
