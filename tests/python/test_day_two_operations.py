"""Day two: anemone as an operator runs it in production, on Kubernetes and on plain hosts.

- ConfigMap/Secret volumes (kubelet's AtomicWriter) as a model folder in `poll` and `explicit`
  mode: one reload per swap, nothing logged at WARN/ERROR, the removed `..<timestamp>` folder never
  read; the git-sync layout (`current` repointed, the old worktree removed at once).
- A locked-down pod (uid 65534, readOnlyRootFilesystem, no HOME, TMPDIR and the repository
  unwritable); a model cache in a folder another user controls.
- Signals during rollouts (SIGTERM with HTTP and gRPC requests in flight, a second SIGTERM, SIGINT,
  SIGPIPE, SIGHUP, an open gRPC stream) and a liveness probe storm during a long load.
- Configuration layers (flag > env > file) on a running server, a misspelt `ANEMONE_*` variable, a
  list in a variable, `serve --help`.
- `--log-format json` lines (server and Python model stderr), logrotate `copytruncate` and `create`.
- Listen addresses (0.0.0.0, ::, [::1], localhost) and ports taken by others or by the server itself.

Not repeated (see their docstrings): test_repository_updates.py (ConfigMap swaps without a failed
request, a repointed repository link), test_restarts_and_sharing.py (a port held by another
anemone, SO_REUSEPORT, log files across restarts), test_deploy_security_docs.py (user 10001,
SIGTERM with uploads, exit timeout), test_os_limits.py, test_hostile_paths.py.

Clock (read, not run; faketime not used): durations, queue times and latencies use `Instant`;
`SystemTime` is used for timestamps shown to people (`last_inference`, eviction `since_ms`,
`loaded_at`) and two orderings: the repository fingerprint's "modified in the last 2 s" (a clock
step makes it hash more, or skip the hash of a file rewritten within one tick) and
`forget_evicted_before` (an eviction stamped after a load began). No negative duration can come out.

Where a docstring names tritonserver 2.51, it ran the same steps (CPU build, Python backend, the
same model as a stand-in) on 2026-12-06. Answers are checked against numpy. The ten defects
this file found (session 44) were strict xfails until fixed; each test's docstring says what
anemone did before.
"""
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
X = np.array([1.5, -2.0, 3.25], np.float32)

PY_CONFIG = ('backend: "python"\nmax_batch_size: 0\n'
             'input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
             'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]\n')
ONNX_CONFIG = PY_CONFIG.replace('backend: "python"', 'platform: "onnxruntime_onnx"')

# Y = X * K + offset, the offset read from `offset.txt` in the model's folder at each request
# (as models read vocabularies and label files); initialize() appends K to the file MARKS.
READS_ITS_FILES = '''import os
import numpy as np
import triton_python_backend_utils as pb_utils
K = {k}

class TritonPythonModel:
    def initialize(self, args):
        self.folder = args["model_repository"]
        with open({marks!r}, "a") as f:
            f.write("%d\\n" % K)

    def execute(self, requests):
        with open(os.path.join(self.folder, "offset.txt")) as f:
            offset = np.float32(f.read())
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y",
            pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * np.float32(K) + offset)]) for r in requests]
'''

# Y = X * 3 after `delay` seconds in execute() (and `init` seconds in initialize()).
SLOW = '''import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        time.sleep({init})

    def execute(self, requests):
        time.sleep({delay})
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y",
            pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * np.float32(3))]) for r in requests]
'''


def onnx_bytes(k, c):
    """ONNX Y = X * k + c, FP32, one dynamic dimension."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "K"], ["t"]), helper.make_node("Add", ["t", "C"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n"])],
        [numpy_helper.from_array(np.array(k, np.float32), "K"), numpy_helper.from_array(np.array(c, np.float32), "C")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def model(repo, name, source=None, onnx=None, config=None):
    (Path(repo) / name / "1").mkdir(parents=True, exist_ok=True)
    (Path(repo) / name / "config.pbtxt").write_text(config or (ONNX_CONFIG if onnx else PY_CONFIG))
    if onnx:
        (Path(repo) / name / "1" / "model.onnx").write_bytes(onnx)
    else:
        (Path(repo) / name / "1" / "model.py").write_text(source)
    return repo


def atomic_write(target, payload):
    """kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) on volume `target` for `payload`
    ({relative path: bytes}): a new `..YYYY_MM_DD_HH_MM_SS.<random>` folder holding the payload, a
    `..data_tmp` link to it renamed over `..data`, a `<first component> -> ..data/<component>` link
    for each new entry, then the old timestamped folder removed."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    data = target / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    ts = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()), dir=target))
    os.chmod(ts, 0o755)
    for rel, content in payload.items():
        (ts / rel).parent.mkdir(parents=True, exist_ok=True)
        (ts / rel).write_bytes(content)
    os.symlink(ts.name, target / "..data_tmp")
    os.rename(target / "..data_tmp", data)
    for first in sorted({p.split("/")[0] for p in payload}):
        if not (target / first).is_symlink():
            os.symlink(f"..data/{first}", target / first)
    if old:
        shutil.rmtree(target / old)


class Served:
    def __init__(self, proc, addr, log):
        self.proc, self.addr, self.log = proc, addr, log
        self.url = f"http://{addr['HTTP']}"

    def infer(self, name, x=X, timeout=30):
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [len(x)], "data": x.tolist()}]}
        return requests.post(f"{self.url}/v2/models/{name}/infer", json=body, timeout=timeout)

    def answer(self, name, x=X):
        r = self.infer(name, x)
        assert r.status_code == 200, r.text
        return np.array(r.json()["outputs"][0]["data"], np.float32)

    def ready(self):
        try:
            return requests.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def text(self):
        return Path(self.log).read_text(errors="replace") if self.log and Path(self.log).exists() else ""


def launch(repo, *flags, env=None, cwd=None, as_nobody=False, log=None, wait=True, may_exit=False):
    """`anemone serve` on free ports with stderr in `log`; `env` replaces the environment when
    `as_nobody` (setpriv to 65534), else is added to it. None if it exits first and `may_exit`."""
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_nobody else []
    cmd += [str(BIN), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
            "--metrics-port", "0"]
    full = env if as_nobody else {**os.environ, "ANEMONE_PYTHON": sys.executable, **(env or {})}
    err = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd + [*flags], stdout=subprocess.PIPE, stderr=err, text=True, env=full, cwd=cwd)
    addr = {}
    while len(addr) < 2:
        line = proc.stdout.readline()
        if not line and may_exit:
            return None
        if not line:
            tail = Path(log).read_text()[-2000:] if log else ""
            pytest.fail(f"anemone serve exited early with status {proc.wait()}: {tail}")
        kind, _, rest = line.partition(" listening on ")
        if rest:
            addr[kind] = rest.strip()
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # the model table; never blocks serve
    served = Served(proc, addr, log)
    if wait:
        assert wait_for(served.ready, 60), f"not ready: {served.text()[-2000:]}"
    return served


def stop(served, sig=signal.SIGTERM):
    if served.proc.poll() is None:
        served.proc.send_signal(sig)
    try:
        return served.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        return served.proc.wait()


def wait_for(check, seconds=20, every=0.1):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if check():
                return True
        except Exception:  # not answering yet
            pass
        time.sleep(every)
    return False


def log_lines_at(text, *levels):
    return [line for line in text.splitlines() if any(f" {lvl} " in line for lvl in levels)]


# ---------------------------------------------------------------- ConfigMap and git-sync volumes

@pytest.mark.parametrize("mode", ["poll", "explicit"])
def test_a_configmap_model_folder_reloads_once_per_kubelet_swap_quietly(tmp_path, mode):
    """A model folder that is a ConfigMap volume (`config.pbtxt -> ..data/config.pbtxt`,
    `1 -> ..data/1`, `offset.txt -> ..data/offset.txt`), swapped three times as kubelet does, the
    old `..<timestamp>` folder removed each time. Poll mode (every second) and explicit mode (the
    load API called twice after each swap, as a deploy script retrying would): each swap loads
    the model exactly once (initialize() counts), the second load is "unchanged; nothing to do"
    (SERVING.md: "A load request for a model that is serving and unchanged on disk ... does
    nothing"), later polls load nothing, the model reads its own files through the stable path
    (args["model_repository"] is the volume's path, not the removed folder), and nothing is logged
    at WARN or ERROR. tritonserver 2.51 follows the same swaps (test_repository_updates.py)."""
    marks, repo, log = tmp_path / "inits.txt", tmp_path / "repo", tmp_path / "serve.log"

    def payload(k):
        return {"config.pbtxt": PY_CONFIG.encode(), "offset.txt": str(10 * k).encode(),
                "1/model.py": READS_ITS_FILES.format(k=k, marks=str(marks)).encode()}

    atomic_write(repo / "m", payload(1))
    flags = (["--model-control-mode", "poll", "--repository-poll-secs", "1"] if mode == "poll"
             else ["--model-control-mode", "explicit", "--load-model", "m"])
    served = launch(repo, *flags, "--log-level", "info", log=log)
    try:
        np.testing.assert_allclose(served.answer("m"), X * 1 + 10)
        for k in (2, 3, 4):
            atomic_write(repo / "m", payload(k))
            assert len([p for p in (repo / "m").iterdir() if p.name.startswith("..2")]) == 1
            if mode == "explicit":
                for _ in range(2):
                    r = requests.post(f"{served.url}/v2/repository/models/m/load", timeout=60)
                    assert r.status_code == 200, r.text
            assert wait_for(lambda: np.allclose(served.answer("m"), X * k + 10 * k), 20), served.text()[-2000:]
        time.sleep(2.5)  # two more polls: nothing changed, nothing loads
        np.testing.assert_allclose(served.answer("m"), X * 4 + 40)
    finally:
        assert stop(served) == 0
    assert marks.read_text().split() == ["1", "2", "3", "4"], "one load per swap"
    text = served.text()
    assert not log_lines_at(text, "WARN", "ERROR"), log_lines_at(text, "WARN", "ERROR")
    if mode == "explicit":
        assert text.count("unchanged on disk; nothing to do") == 3, text[-3000:]


def test_a_git_sync_swap_that_removes_the_old_worktree_fails_no_request(tmp_path):
    """git-sync: `root/current -> .worktrees/<sha>` replaced by a rename, the old worktree removed
    right after (git-sync's default). SERVING.md: a repository reached through a link "is followed
    when the link is repointed: each load and poll resolves it again". Until the next poll the
    loaded model must keep answering (old or new files), as tritonserver 2.51 does (its model gets
    `<root>/current/m`; every request 200). Until session 44 anemone gave `.worktrees/<old sha>/m`:
    500 FileNotFoundError until the poll (up to --repository-poll-secs, 15 s by default); it gives
    the repository's path as given now, as Triton does."""
    root, marks = tmp_path / "git", tmp_path / "inits.txt"

    def worktree(sha, k):
        w = root / ".worktrees" / sha
        model(w, "m", READS_ITS_FILES.format(k=1, marks=str(marks)))
        (w / "m" / "offset.txt").write_text(str(k))

    def swap(sha):
        os.symlink(f".worktrees/{sha}", root / "tmp-link")
        os.rename(root / "tmp-link", root / "current")

    worktree("aaa", 10)
    swap("aaa")
    served = launch(root / "current", "--model-control-mode", "poll", "--repository-poll-secs", "3",
                    log=tmp_path / "serve.log")
    try:
        np.testing.assert_allclose(served.answer("m"), X + 10)
        worktree("bbb", 20)
        swap("bbb")
        shutil.rmtree(root / ".worktrees" / "aaa")
        answers, end = [], time.time() + 4.5
        while time.time() < end:
            r = served.infer("m")
            answers.append((r.status_code, r.json()["outputs"][0]["data"] if r.status_code == 200 else r.text))
            time.sleep(0.1)
    finally:
        stop(served)
    bad = [a for a in answers if a[0] != 200]
    assert not bad, f"{len(bad)} of {len(answers)} failed, first: {bad[0]}"
    assert np.allclose(answers[-1][1], X + 20)


# ---------------------------------------------------------------- non-root, read-only

def _python_for_nobody(base):
    """An interpreter with numpy that uid 65534 can run: this one, or the system's python3 of the
    same version with this one's site-packages on PYTHONPATH (a wrapper in `base`); None if neither."""
    def works(python):
        # Through a shell: setpriv's own exec reached interpreters under /root (mode 700) here
        # that the server, once uid 65534, could not start.
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c",
                               'exec "$0" -c "import numpy"', python], cwd="/", capture_output=True,
                              env={"PATH": "/usr/bin:/bin"}, timeout=60).returncode == 0
    if works(sys.executable):
        return sys.executable
    system = Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")
    site = Path(np.__file__).resolve().parents[1]
    if system.exists():
        wrapper = base / "python3"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {system} "$@"\n')
        wrapper.chmod(0o755)
        if works(str(wrapper)):
            return str(wrapper)
    return None


def _tree(path):
    return sorted((str(p.relative_to(path)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in Path(path).rglob("*"))


@pytest.fixture(scope="module")
def locked_down():
    """A pod with `runAsUser: 65534` and `readOnlyRootFilesystem`: no HOME, XDG_CACHE_HOME or USER,
    the working directory, TMPDIR and the repository (`chmod -R a-w`) unwritable. Models: `ox`
    (ONNX, Y = 2X + 1), `py` (Python, Y = 3X), `envpy` (the same with EXECUTION_ENV_PATH, an
    archive whose bin/python3 runs the same interpreter)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the server as uid 65534")
    base = Path(tempfile.mkdtemp(prefix="anemone-day2-"))
    os.chmod(base, 0o755)
    python = _python_for_nobody(base)
    if python is None:
        shutil.rmtree(base)
        pytest.skip("no Python with numpy that uid 65534 can run")
    repo = base / "repo"
    model(repo, "ox", onnx=onnx_bytes(2.0, 1.0))
    model(repo, "py", SLOW.format(init=0, delay=0))
    model(repo, "envpy", SLOW.format(init=0, delay=0), config=PY_CONFIG + 'parameters: { key: "EXECUTION_ENV_PATH" '
          'value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }\n')
    env_dir = base / "envsrc" / "bin"
    env_dir.mkdir(parents=True)
    (env_dir / "python3").write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    (env_dir / "python3").chmod(0o755)
    subprocess.run(["tar", "-czf", str(repo / "envpy" / "env.tar.gz"), "-C", str(base / "envsrc"), "bin"], check=True)
    for d in ("cwd", "tmp"):
        (base / d).mkdir()
    subprocess.run(["chmod", "-R", "a-w", str(repo), str(base / "cwd"), str(base / "tmp")], check=True)
    before = _tree(repo)
    env = {"PATH": "/usr/bin:/bin", "ANEMONE_PYTHON": python, "TMPDIR": str(base / "tmp")}
    if os.environ.get("ORT_DYLIB_PATH"):
        env["ORT_DYLIB_PATH"] = os.environ["ORT_DYLIB_PATH"]
    log = base / "serve.log"
    log.touch()
    os.chmod(log, 0o666)
    served = launch(repo, "--log-level", "info", env=env, cwd=base / "cwd", as_nobody=True, log=log, wait=False)
    if not wait_for(lambda: all(requests.get(f"{served.url}/v2/models/{m}/ready").status_code == 200
                                for m in ("py", "ox")), 60):
        stop(served)
        pytest.fail(f"the models did not load as uid 65534: {served.text()[-2000:]}")
    yield served, base, before
    assert stop(served) == 0
    subprocess.run(["chmod", "-R", "u+w", str(base)])
    shutil.rmtree(base, ignore_errors=True)


def test_as_nobody_with_nothing_writable_onnx_and_python_models_serve(locked_down):
    """ONNX (tract or ONNX Runtime, compared in a child process) and Python models serve as uid
    65534 with nothing writable: the Python stub needs no file (PYTHONDONTWRITEBYTECODE, its BLS
    fork socket is an abstract one), nothing is written into the repository, the working
    directory or TMPDIR. The model needing an unpacked environment is UNAVAILABLE with a reason
    that names the folder it needs and the variable that moves it (XDG_CACHE_HOME), the others
    serve and the server stays up."""
    served, base, before = locked_down
    np.testing.assert_allclose(served.answer("ox"), X * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(served.answer("py"), X * 3, rtol=1e-6)
    status = int(open(f"/proc/{served.proc.pid}/status").read().split("Uid:")[1].split()[0])
    assert status == 65534
    index = {m["name"]: m for m in requests.post(f"{served.url}/v2/repository/index").json()}
    assert index["ox"]["state"] == index["py"]["state"] == "READY"
    if os.environ.get("ANEMONE_REQUIRE_ORT"):
        assert "onnxruntime" in index["ox"]["reason"], index["ox"]
    reason = index["envpy"]["reason"]
    assert index["envpy"]["state"] == "UNAVAILABLE"
    assert str(base / "tmp") in reason and "XDG_CACHE_HOME" in reason, reason
    assert served.infer("envpy").status_code == 503
    assert _tree(base / "repo") == before
    assert not list((base / "cwd").iterdir()) and not list((base / "tmp").iterdir())


def test_an_environment_folder_that_cannot_be_made_says_permission_denied(locked_down):
    """The same model as above: `cache_root` (crates/anemone-backends/src/python/env.rs) ignores
    the error of `create_dir_all` and reports the `symlink_metadata` after it: "cannot use
    <TMPDIR>/anemone-python-envs-anyone for Python environments: No such file or directory (os
    error 2); set XDG_CACHE_HOME ...". The operator is told the folder is missing, where the
    server could not create it: the reason must say so (Permission denied). Fixed in session 44
    (anemone_core::private_dir: "it cannot be created: Permission denied")."""
    served, _, _ = locked_down
    index = {m["name"]: m for m in requests.post(f"{served.url}/v2/repository/index").json()}
    assert "permission denied" in index["envpy"]["reason"].lower(), index["envpy"]["reason"]


def test_a_model_cache_in_a_folder_another_user_controls_is_never_served_from(tmp_path):
    """Two repositories are merged into `--model-cache-dir` (DEPLOY.md), documented as
    `$XDG_CACHE_HOME/anemone/models`, else `~/.cache/anemone/models`; with neither set (systemd's
    DynamicUser, a container with an arbitrary uid) the code uses `$TMPDIR/anemone-model-cache`.
    Another user (uid 4242) made that folder first, mode 0777; the server (uid 65534, poll mode)
    copies its models there; that user replaces the server's view folder (an entry of its own
    folder) with a copy whose `a/1/model.py` answers 666 and records who ran it: the next poll
    runs it. SERVING.md refuses this for Python environments ("one another user owns or can
    write is refused"). The server must refuse the folder (naming it and --model-cache-dir) or
    use one of its own, and never serve the other user's model. Fixed in session 44: the default is
    `$TMPDIR/anemone-model-cache-<uid>`, made private and refused (naming it and --model-cache-dir)
    when another user owns it or can write it; here the other user made both names first."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to act as two users")
    base = Path(tempfile.mkdtemp(prefix="anemone-day2-cache-"))
    os.chmod(base, 0o755)
    try:
        python = _python_for_nobody(base)
        if python is None:
            pytest.skip("no Python with numpy that uid 65534 can run")
        for repo, name in (("r1", "a"), ("r2", "c")):
            model(base / repo, name, SLOW.format(init=0, delay=0))
        tmp = base / "tmp"
        tmp.mkdir()
        os.chmod(tmp, 0o1777)
        # The name before session 44, and the server's own name since (by uid).
        for cache in (tmp / "anemone-model-cache", tmp / "anemone-model-cache-65534"):
            cache.mkdir()
            os.chown(cache, 4242, 4242)
            os.chmod(cache, 0o777)
        pwned = tmp / "pwned"
        log = base / "serve.log"
        log.touch()
        os.chmod(log, 0o666)
        served = launch(base / "r1", "--model-repository", str(base / "r2"), "--model-control-mode", "poll",
                        "--repository-poll-secs", "1", env={"PATH": "/usr/bin:/bin", "ANEMONE_PYTHON": python,
                        "TMPDIR": str(tmp)}, cwd="/", as_nobody=True, log=log, may_exit=True)
        if served is None:  # refused at start-up: it must say why
            assert str(cache) in log.read_text() and "--model-cache-dir" in log.read_text(), log.read_text()
            return
        try:
            np.testing.assert_allclose(served.answer("a"), X * 3)
            views = [d for d in os.listdir(cache) if d.startswith("_")]
            if views:
                pid = os.fork()
                if pid == 0:  # the other user
                    try:
                        os.setgid(4242)
                        os.setuid(4242)
                        view = cache / views[0]
                        mine = cache / (views[0] + ".mine")
                        shutil.copytree(view, mine, symlinks=True)
                        code = (mine / "repository/a/1/model.py").read_text()
                        (mine / "repository/a/1/model.py").unlink()
                        (mine / "repository/a/1/model.py").write_text(
                            code.replace("np.float32(3)", "np.float32(0) + np.float32(666)")
                            + f"\nopen({str(pwned)!r}, 'w').write(str(__import__('os').getuid()))\n")
                        os.rename(view, cache / (views[0] + ".old"))
                        os.rename(mine, view)
                    finally:
                        os._exit(0)
                os.waitpid(pid, 0)
                time.sleep(3)  # three polls
            answer = served.answer("a")
        finally:
            stop(served)
        assert not pwned.exists(), f"uid {pwned.read_text()} ran the other user's model.py"
        np.testing.assert_allclose(answer, X * 3)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)])
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- signals and probes

def test_sigterm_drains_http_and_grpc_requests_and_a_second_signal_changes_nothing(tmp_path):
    """DEPLOY.md "Shutdown timeline": readiness false, listeners closed at once, requests in
    flight finish, exit 0 within --exit-timeout-secs. A `slow` model (2.5 s per execute, two
    instances) has one HTTP and one gRPC request in flight at SIGTERM: a new connection is refused
    (or answered 503) within a second, before they end, both in-flight requests are answered right, a second
    SIGTERM and a SIGINT during the drain change nothing (as in Triton 2.51, whose handler ignores
    signals once exiting), and the server exits 0 once they are done, well before the 10 s bound.
    SIGPIPE before it (a proxy that closed its end) is ignored, as Triton 2.51 ignores it."""
    import tritonclient.grpc as grpcclient

    repo = model(tmp_path / "repo", "slow", SLOW.format(init=0, delay=2.5),
                 config=PY_CONFIG + "instance_group [ { count: 2 kind: KIND_CPU } ]\n")
    served = launch(repo, "--exit-timeout-secs", "10", log=tmp_path / "serve.log")
    served.proc.send_signal(signal.SIGPIPE)
    time.sleep(0.3)
    assert served.proc.poll() is None and served.ready()
    client = grpcclient.InferenceServerClient(served.addr["gRPC"])
    inp = grpcclient.InferInput("X", [len(X)], "FP32")
    inp.set_data_from_numpy(X)
    done, http_answer = queue.Queue(), []
    client.async_infer("slow", [inp], callback=lambda result, error: done.put((result, error)))
    t = threading.Thread(target=lambda: http_answer.append(served.infer("slow")))
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    served.proc.send_signal(signal.SIGTERM)

    def not_ready():
        try:
            return requests.get(f"{served.url}/v2/health/ready", timeout=2).status_code == 503
        except requests.ConnectionError:
            return True

    assert wait_for(not_ready, 1.0, every=0.02), "still ready 1 s after SIGTERM"
    assert not http_answer and done.empty(), "the probe came after the requests ended: it proved nothing"
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    served.proc.send_signal(signal.SIGINT)
    t.join(30)
    result, error = done.get(timeout=30)
    assert error is None, error
    np.testing.assert_allclose(result.as_numpy("Y"), X * 3)
    assert http_answer[0].status_code == 200, http_answer[0].text
    np.testing.assert_allclose(http_answer[0].json()["outputs"][0]["data"], X * 3)
    assert served.proc.wait(timeout=15) == 0
    assert time.time() - t0 < 8, "the server waited past the requests for no reason"
    client.close()


def test_an_idle_open_grpc_stream_does_not_hold_the_shutdown(tmp_path):
    """A client keeps a gRPC stream open (tritonclient's `start_stream`) with one request running
    at SIGTERM: it is answered (DEPLOY.md: "lets requests in flight finish"); then nothing is in
    flight and the server should end the stream and exit. anemone waits for the client until
    --exit-timeout-secs (6 s here), then warns "requests still in flight after 6s; exiting
    anyway". tritonserver 2.51 waited out its 30 s too ("Timeout N: Found 1 live models"), then
    failed to stop. Until session 44 a pod with a streaming client took the whole grace period at
    every rollout; now the stream reads no more requests at SIGTERM, answers those it took and
    ends (DEPLOY.md, "Shutdown timeline")."""
    import tritonclient.grpc as grpcclient

    repo = model(tmp_path / "repo", "slow", SLOW.format(init=0, delay=1.0))
    served = launch(repo, "--exit-timeout-secs", "6", log=tmp_path / "serve.log")
    client = grpcclient.InferenceServerClient(served.addr["gRPC"])
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        inp = grpcclient.InferInput("X", [len(X)], "FP32")
        inp.set_data_from_numpy(X)
        client.async_stream_infer("slow", [inp])
        time.sleep(0.3)
        t0 = time.time()
        served.proc.send_signal(signal.SIGTERM)
        result, error = got.get(timeout=10)
        assert error is None, error
        np.testing.assert_allclose(result.as_numpy("Y"), X * 3)
        code = served.proc.wait(timeout=20)
        took = time.time() - t0
    finally:
        client.stop_stream()
        stop(served)
    assert code == 0
    assert took < 4, f"exited {took:.1f} s after SIGTERM, with nothing in flight after 0.7 s"


def test_sighup_does_not_kill_the_server_silently(tmp_path):
    """SIGHUP reaches servers on plain hosts: a closed ssh session or terminal, `systemctl reload`
    (ExecReload=kill -HUP), a log rotation script; the docs name SIGTERM and SIGINT only. Whatever
    it means (ignored, reopening --log-file, a graceful stop), it must not cut the request in
    flight and kill the process without a word, as it does (connection error, exit -SIGHUP, no
    log line). tritonserver 2.51 dies the same. Since session 44 SIGHUP reopens --log-file
    (OBSERVABILITY.md) and the server goes on."""
    repo = model(tmp_path / "repo", "slow", SLOW.format(init=0, delay=1.0))
    served = launch(repo, log=tmp_path / "serve.log")
    answers = []

    def send():
        try:
            answers.append(served.infer("slow").status_code)
        except requests.RequestException as e:
            answers.append(repr(e))

    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.4)
    served.proc.send_signal(signal.SIGHUP)
    t.join(20)
    time.sleep(0.3)
    status = served.proc.poll()
    stop(served)
    assert answers == [200], answers
    assert status in (None, 0), f"the server ended with {status} on SIGHUP"


def test_sighup_by_name_spares_the_engine_comparison_child():
    """logrotate's `postrotate pkill -HUP anemone` signals every process of that name, and the
    child that `serve` runs to compare the CPU engines during a load (`anemone compare-engines`)
    is one: SIGHUP killed it (its default action), and the server then compared in its own
    process, loading both engines. Since session 45 the child ignores SIGHUP. Here the child waits
    for its job on stdin, is sent SIGHUP, lives, and ends (with an error) when stdin closes."""
    child = subprocess.Popen([str(BIN), "compare-engines"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:  # until it has set SIGHUP's disposition (or 10 s)
            status = Path(f"/proc/{child.pid}/status").read_text()
            ignored = int(next(l.split()[1] for l in status.splitlines() if l.startswith("SigIgn:")), 16)
            if ignored & (1 << (signal.SIGHUP - 1)):
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert child.poll() is None, f"compare-engines ended with {child.returncode} on SIGHUP"
        child.stdin.close()
        assert child.wait(timeout=20) != 0  # no job: an error, by its own hand
        assert b"not for use by hand" in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_liveness_probe_storm_during_a_long_load_is_answered_fast(tmp_path):
    """Kubernetes probes: `livenessProbe` on /v2/health/live (deploy/), each probe a new TCP
    connection. While a model's load takes 5 s (its initialize() sleeps; explicit mode, the load
    API), 1,000 probes from 8 threads are all 200, most of them (at least 500) before the load
    ends. Kubernetes restarts a container after 3 probes in a row fail (failureThreshold), each
    failing past 1 s (timeoutSeconds): no thread here sees even 2 in a row past 1 s, and none
    takes 2.5 s (a probe held behind the load would take about 5 s). 11 ms at most on an idle
    machine; a cold CI run with four test workers on two cores saw one probe take 1.23 s."""
    repo = model(tmp_path / "repo", "slowload", SLOW.format(init=5, delay=0))
    served = launch(repo, "--model-control-mode", "explicit", log=tmp_path / "serve.log")
    host, port = served.addr["HTTP"].rsplit(":", 1)
    load = {}

    def do_load():
        load["status"] = requests.post(f"{served.url}/v2/repository/models/slowload/load", timeout=60).status_code
        load["end"] = time.time()

    loader = threading.Thread(target=do_load)
    loader.start()
    time.sleep(0.3)
    latencies, lock = {}, threading.Lock()

    def probes(k, n):
        for _ in range(n):
            t = time.perf_counter()
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request("GET", "/v2/health/live")
            status = c.getresponse().status
            c.close()
            with lock:
                latencies.setdefault(k, []).append((time.perf_counter() - t, status, time.time()))

    threads = [threading.Thread(target=probes, args=(k, 125)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loader.join(60)
    try:
        assert load["status"] == 200
        every = [x for per_thread in latencies.values() for x in per_thread]
        assert len(every) == 1000 and {s for _, s, _ in every} == {200}
        assert max(d for d, _, _ in every) < 2.5, sorted(d for d, _, _ in every)[-5:]
        for k, seen in latencies.items():
            slow = [d > 1.0 for d, _, _ in seen]
            assert not any(a and b for a, b in zip(slow, slow[1:])), f"thread {k}: two probes in a row past 1 s"
        during = sum(1 for _, _, end in every if end < load["end"])
        assert during >= 500, f"only {during} probes ran during the load: it measured little"
    finally:
        assert stop(served) == 0


# ---------------------------------------------------------------- configuration layers

def test_flag_beats_env_beats_file_on_a_running_server_with_the_file_behind_a_configmap_link(tmp_path):
    """docs/CONFIGURATION.md: "A higher layer wins: default, file, env, flag", and `GET
    /v2/anemone/config` names each setting's source. The file is `/etc/anemone/anemone.toml`
    mounted from a ConfigMap (`anemone.toml -> ..data/anemone.toml`); `--config` reads it through
    the link. max-concurrency: file 64, env 32 -> 32 (env); http-header-timeout-secs: file 7,
    env 8, flag 5 -> 5 (flag); repository-poll-secs: file only -> 9 (file); max-request-bytes:
    env only -> 2MiB (env), and the server applies it: a 1.5 MB body is served, a 5.5 MB one is
    413 naming --max-request-bytes (its default is 64 MiB)."""
    etc = tmp_path / "etc"
    atomic_write(etc, {"anemone.toml": b'max-concurrency = 64\nhttp-header-timeout-secs = 7\n'
                                       b'repository-poll-secs = 9\nmodel-control-mode = "poll"\n'})
    assert (etc / "anemone.toml").is_symlink()
    repo = model(tmp_path / "repo", "ox", onnx=onnx_bytes(2.0, 1.0))
    served = launch(repo, "--config", str(etc / "anemone.toml"), "--http-header-timeout-secs", "5",
                    env={"ANEMONE_MAX_CONCURRENCY": "32", "ANEMONE_HTTP_HEADER_TIMEOUT_SECS": "8",
                         "ANEMONE_MAX_REQUEST_BYTES": "2MiB"}, log=tmp_path / "serve.log")
    try:
        settings = {s["key"]: s for s in requests.get(f"{served.url}/v2/anemone/config").json()["settings"]}
        got = {k: (settings[k]["value"], settings[k]["source"]) for k in
               ("max-concurrency", "http-header-timeout-secs", "repository-poll-secs", "max-request-bytes",
                "model-control-mode")}
        assert got["max-concurrency"] == ("32", "env"), got
        assert got["http-header-timeout-secs"] == ("5", "flag"), got
        assert got["repository-poll-secs"] == ("9", "file"), got
        assert got["max-request-bytes"][1] == "env", got
        assert got["model-control-mode"] == ("poll", "file"), got
        big = np.zeros(300_000, np.float32)  # 1.5 MB of JSON text: under 2 MiB
        assert served.infer("ox", big).status_code == 200
        huge = np.zeros(1_100_000, np.float32)  # 5.5 MB of JSON text
        r = served.infer("ox", huge)
        assert r.status_code == 413 and "max-request-bytes" in r.text, (r.status_code, r.text[:300])
    finally:
        assert stop(served) == 0


def test_a_misspelt_anemone_variable_is_named_in_the_log(tmp_path):
    """docs/CONFIGURATION.md: a misspelled key in the file stops start-up ("unknown key; did you
    mean 'max-concurrency'?"). The same typo in a Deployment's `env:` is the operator's more
    likely mistake (no file to lint): the server must at least warn naming the variable. anemone
    starts with the default (`GET /v2/anemone/config`: max-concurrency from `default`) and logs
    nothing; `config show` says nothing either. (A fix must let Kubernetes' service links pass:
    a Service named `anemone` puts ANEMONE_SERVICE_HOST, ANEMONE_PORT, ANEMONE_PORT_8000_TCP...
    in every pod of its namespace; one named `anemone-http` puts ANEMONE_HTTP_PORT=tcp://...,
    which stops start-up, naming the variable.) Since session 44 `serve` warns: "environment
    variable ANEMONE_MAX_CONCURENCY is not one anemone reads ...; did you mean ...?"."""
    (tmp_path / "repo").mkdir()
    served = launch(tmp_path / "repo", env={"ANEMONE_MAX_CONCURENCY": "3", "ANEMONE_HTTP_PROT": "9000"},
                    log=tmp_path / "serve.log")
    settings = {s["key"]: s for s in requests.get(f"{served.url}/v2/anemone/config").json()["settings"]}
    assert stop(served) == 0
    assert settings["max-concurrency"]["source"] == "default"
    text = served.text()
    assert "ANEMONE_MAX_CONCURENCY" in text and "ANEMONE_HTTP_PROT" in text, text[-2000:]


def test_several_models_to_load_can_be_given_through_the_environment(tmp_path):
    """An env-only Deployment (`env: [{name: ANEMONE_MODEL_CONTROL_MODE, value: explicit},
    {name: ANEMONE_LOAD_MODEL, value: "a,b"}]`): CONFIGURATION.md says every flag is a variable
    and a repeatable flag takes a list in the file (`load-model = ["add"]`), and
    `--rate-limit-resource` is "repeated or comma-separated", but says nothing of a list in a
    variable. anemone reads `a,b` as one name: "failed to load model 'a,b': it is not in the
    repository", a and b stay UNLOADED, the server is never ready. Both must load (no model
    folder is named `a,b` here), or the docs must say how to write the list. Since session 44
    ANEMONE_LOAD_MODEL takes comma-separated names (CONFIGURATION.md); the flag keeps one name, as Triton's."""
    repo = tmp_path / "repo"
    for name in ("a", "b"):
        model(repo, name, SLOW.format(init=0, delay=0))
    served = launch(repo, env={"ANEMONE_MODEL_CONTROL_MODE": "explicit", "ANEMONE_LOAD_MODEL": "a,b"},
                    log=tmp_path / "serve.log", wait=False)
    try:
        ready = wait_for(served.ready, 5)
        index = {m["name"]: m.get("state") for m in requests.post(f"{served.url}/v2/repository/index").json()}
    finally:
        stop(served)
    assert ready and index.get("a") == index.get("b") == "READY", index


def test_serve_help_names_the_environment_variable_of_every_flag():
    """SERVING.md: "Every flag has an ANEMONE_* environment variable (`anemone serve --help`)": each
    flag's block shows `[env: ANEMONE_<FLAG>]` (CONFIGURATION.md: --log-level is ANEMONE_LOG)."""
    import re

    text = subprocess.run([str(BIN), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    flags = re.findall(r"\n\s{2,6}(?:-\w, )?--([a-z0-9-]+)[^\n]*\n(?:(?!\n\s{2,6}-).)*?\[env: (\w+)", text, re.S)
    wrong = [(f, e) for f, e in flags if e != ("ANEMONE_LOG" if f == "log-level" else
                                               "ANEMONE_" + f.upper().replace("-", "_"))]
    named = {f for f, _ in flags}
    every = set(re.findall(r"\n\s{2,6}(?:-\w, )?--([a-z0-9-]+)", text)) - {"help", "version"}
    assert len(every) > 50 and not wrong and every == named, (wrong, every - named)


# ---------------------------------------------------------------- logs in production

TALKS = '''import sys
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if x[0] < 0:
                raise RuntimeError("boom %d\\nsecond line \\"quoted\\"" % -x[0])
            sys.stderr.write("mark %d line one\\nmark %d line two\\n" % (x[0], x[0]))
            sys.stderr.buffer.write(b"mark %d bytes \\xff\\xfe\\n" % x[0])
            sys.stderr.flush()
            print("mark %d stdout" % x[0], flush=True)
            pb_utils.Logger.log_warn("mark %d warned {x}" % x[0])
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * np.float32(3))]))
        return out
'''


@pytest.fixture(scope="module")
def json_logged(tmp_path_factory):
    """`--log-format json --log-file F --log-level info`, explicit mode with every model loaded:
    `talks` (a Python model that writes to stderr and stdout, logs a warning and raises on a
    negative input), `spare` (ONNX, to unload), `broken` (a model.py importing a missing module)."""
    base = tmp_path_factory.mktemp("logs")
    repo = base / "repo"
    model(repo, "talks", TALKS)
    model(repo, "spare", onnx=onnx_bytes(1.0, 0.0))
    model(repo, "broken", "import no_such_module_anywhere\n")
    logf = base / "anemone.log"
    served = launch(repo, "--log-format", "json", "--log-file", str(logf), "--log-level", "info",
                    "--model-control-mode", "explicit", "--load-model", "*", log=base / "stderr.log", wait=False)
    if not wait_for(lambda: requests.get(f"{served.url}/v2/models/talks/ready").status_code == 200, 60):
        stop(served)
        pytest.fail("the model 'talks' did not load")
    yield served, logf
    assert stop(served) == 0


def _marks(served, mark):
    """Requests to `talks` with input `mark` (logged) and `-mark` (raises)."""
    assert served.infer("talks", np.array([mark], np.float32)).status_code == 200
    assert served.infer("talks", np.array([-mark], np.float32)).status_code == 500


def _json_lines(path):
    lines = Path(path).read_bytes().decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def test_each_json_log_line_is_one_object_with_the_documented_fields(json_logged):
    """OBSERVABILITY.md "Logging": in `json` "every line is one object" with `timestamp`, `level`,
    `fields` (`message` and the event's fields) and `target`; SERVING.md: what model.py prints is
    logged at info under the model's name, `Logger.log_warn` at warn, bytes that are not UTF-8
    replaced (U+FFFD), the traceback of an exception in execute in the log. Each line of the file
    parses alone (multi-line tracebacks and messages with quotes and newlines are escaped), and
    each of those events is there with `model: talks`."""
    served, logf = json_logged
    _marks(served, 5)
    # `broken` loads beside `talks` and may still be failing when `talks` is ready (a loaded run).
    assert wait_for(lambda: all(w in logf.read_text() for w in ("mark 5 warned", "boom 5", "no_such_module_anywhere")),
                    30)
    events = _json_lines(logf)
    for e in events:
        assert {"timestamp", "level", "fields", "target"} <= set(e), e
        assert e["level"] in ("ERROR", "WARN", "INFO", "DEBUG", "TRACE")
        datetime.strptime(e["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
        assert isinstance(e["fields"]["message"], str)
    talks = [e for e in events if e["fields"].get("model") == "talks"]
    messages = {(e["level"], e["fields"]["message"]) for e in talks}
    for want in [("INFO", "model.py: mark 5 line one"), ("INFO", "model.py: mark 5 line two"),
                 ("INFO", "model.py: mark 5 bytes \ufffd\ufffd"), ("INFO", "model.py: mark 5 stdout"),
                 ("WARN", "model.py: mark 5 warned {x}")]:
        assert want in messages, (want, sorted(messages))
    assert any(e["level"] == "ERROR" and 'RuntimeError: boom 5\nsecond line "quoted"' in e["fields"]["message"]
               for e in talks), sorted(messages)
    assert any(e["level"] == "ERROR" and e["fields"].get("model") == "broken"
               and "No module named 'no_such_module_anywhere'" in e["fields"]["message"] for e in events)


def test_a_json_log_field_keeps_one_type(json_logged):
    """Log pipelines (Elasticsearch, Loki, BigQuery) type a field by its first value: `version`
    mapped as a number rejects the later `"version": "None"` lines (Elasticsearch:
    mapper_parsing_exception, the line dropped). Loading and unloading `spare` writes `"version":
    1` then `"version": "None"`: a field must keep one JSON type, and an unknown value be absent
    or null, not the text "None". Fixed in session 44: `version` is left out when every version
    went."""
    served, logf = json_logged
    assert requests.post(f"{served.url}/v2/repository/models/spare/unload", timeout=30).status_code == 200
    assert wait_for(lambda: any(e["fields"]["message"] == "model unloaded" and e["fields"].get("model") == "spare"
                                for e in _json_lines(logf)), 10)
    kinds = {}
    for e in _json_lines(logf):
        for key, value in e["fields"].items():
            if value is not None:
                kinds.setdefault(key, set()).add(type(value).__name__)
    assert kinds.get("version") == {"int"}, kinds.get("version")
    assert not any(e["fields"].get("version") == "None" for e in _json_lines(logf))


def test_a_start_up_failure_is_logged_as_json_too(tmp_path):
    """OBSERVABILITY.md: "In `json` every line is one object". An operator whose collector parses
    JSON (Cloud Logging, fluent-bit's json parser) alerts on `level: ERROR`; the line that says why
    the server will not start (`error: model repository /nonexistent is not a directory`, exit 1)
    is written as text. Since session 44 it is one JSON line (level ERROR) on stderr, or in the
    --log-file beside the plain line on stderr."""
    proc = subprocess.run([str(BIN), "serve", "--log-format", "json", "--model-repository", str(tmp_path / "none"),
                           "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "not a directory" in proc.stderr, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert any(e["level"] == "ERROR" and "not a directory" in e["fields"]["message"] for e in lines)


def test_logrotate_copytruncate_keeps_the_log_file_whole(json_logged):
    """logrotate's `copytruncate`: the file is copied away, then truncated in place while the
    server writes. The server appends (OBSERVABILITY.md: "appends it to a file"; O_APPEND), so
    its next lines land at the start of the emptied file: no hole of NUL bytes where the old end
    was, each line whole JSON, and the copy holds what came before."""
    served, logf = json_logged
    _marks(served, 11)
    assert wait_for(lambda: "mark 11 warned" in logf.read_text(), 10)
    rotated = Path(str(logf) + ".1")
    shutil.copy(logf, rotated)
    with open(logf, "r+b") as f:
        f.truncate(0)
    _marks(served, 12)
    assert wait_for(lambda: "mark 12 warned" in logf.read_text(), 10)
    data = logf.read_bytes()
    assert data and b"\0" not in data[:4096], data[:200]
    messages = [e["fields"]["message"] for e in _json_lines(logf)]
    assert "model.py: mark 12 line one" in messages
    assert "model.py: mark 11 line one" not in messages
    assert "mark 11 line one" in rotated.read_text()


def test_logrotate_create_rotation_sends_new_lines_to_the_new_file(json_logged):
    """logrotate's default `create` mode: `anemone.log` renamed to `anemone.log.1`, a new empty
    `anemone.log` made; `postrotate` would signal the daemon, but anemone has no signal for it
    (SIGHUP kills it, see above). Its descriptor still points at the renamed file: every later
    line goes there, the new file stays empty, and once logrotate deletes `anemone.log.N` the
    server writes into a deleted file (disk used, invisible to `du`). New lines must reach the
    file at the --log-file path (reopened on a signal or when the path changes), or OBSERVABILITY.md
    must name copytruncate as the way. Runs last: it leaves the fixture's file rotated.
    Since session 44 SIGHUP reopens --log-file by its name (logrotate's `postrotate kill -HUP`,
    OBSERVABILITY.md), and says so in the new file."""
    served, logf = json_logged
    os.rename(logf, str(logf) + ".2")
    logf.write_text("")
    served.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "SIGHUP: reopened the log file" not in logf.read_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "SIGHUP: reopened the log file" in logf.read_text()
    for mark in (21, 22, 23):
        _marks(served, mark)
        time.sleep(0.5)
    assert "model.py: mark 23 line one" in logf.read_text(), "nothing reached the new file"


# ---------------------------------------------------------------- listen addresses and ports

@pytest.mark.parametrize("which", ["HTTP", "gRPC", "metrics", "gRPC=HTTP", "metrics=HTTP"])
def test_a_taken_port_stops_start_up_naming_the_listener_and_the_port(tmp_path, which):
    """A port held by another process (a Python socket listening on it), or given to two of the
    server's own listeners (`--grpc-port` equal to `--http-port`): start-up stops at once with
    status 1 and `cannot listen for <listener> on 127.0.0.1:<port>: Address already in use`,
    printing no "listening on" line and loading nothing (the listeners come before the models).
    The message names the listener, not the flag; for the server's own two listeners on one port
    it reads as if another process held it (acceptable: the port and the listener are named)."""
    model(tmp_path / "repo", "py", SLOW.format(init=0, delay=0))
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        same = s.getsockname()[1]
    ports = {"HTTP": "0", "gRPC": "0", "metrics": "0"}
    if "=" in which:
        failing, other = which.split("=")
        ports[failing] = ports[other] = str(same)
        port = same
    else:
        failing, port = which, busy
        ports[which] = str(busy)
    try:
        t = time.time()
        run = subprocess.run([str(BIN), "serve", "--model-repository", str(tmp_path / "repo"), "--http-port",
                              ports["HTTP"], "--grpc-port", ports["gRPC"], "--metrics-port", ports["metrics"]],
                             capture_output=True, text=True, timeout=20,
                             env={**os.environ, "ANEMONE_PYTHON": sys.executable})
        code, out, err = run.returncode, run.stdout, run.stderr
    finally:
        holder.close()
    assert code == 1 and time.time() - t < 15, (code, err)
    assert f"cannot listen for {failing} on 127.0.0.1:{port}" in err and "in use" in err, err
    assert "listening on" not in out and "READY" not in out, out


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("flags,printed,reach", [
    (["--host", "0.0.0.0"], "0.0.0.0", ["127.0.0.1"]),
    (["--host", "::"], "[::]", ["[::1]", "127.0.0.1 if dual-stack"]),
    (["--http-address", "[::1]"], "[::1]", ["[::1]"]),
    (["--host", "localhost"], "127.0.0.1", ["127.0.0.1"]),
])
def test_listen_addresses_as_operators_write_them(tmp_path, flags, printed, reach):
    """CONFIGURATION.md: `host` (0.0.0.0 "listens on every interface"), `http-address`,
    `grpc-address`, `metrics-address` ("one listener's own address, as Triton's flags"). Each
    form an operator writes (IPv4 any, IPv6 any, the IPv6 loopback, a host name) binds where
    asked, prints the bound address, and serves an inference there; the other listeners keep
    --host's 127.0.0.1 when only --http-address is given."""
    if any("::" in f for f in flags) and not _ipv6_loopback():
        pytest.skip("no IPv6 loopback on this host")
    repo = model(tmp_path / "repo", "ox", onnx=onnx_bytes(2.0, 1.0))
    served = launch(repo, *flags, log=tmp_path / "serve.log", wait=False)
    try:
        assert served.addr["HTTP"].rsplit(":", 1)[0] == printed, served.addr
        if flags[0] == "--http-address":
            assert served.addr["gRPC"].startswith("127.0.0.1:"), served.addr
        port = served.addr["HTTP"].rsplit(":", 1)[1]
        for host in reach:
            if host.endswith(" if dual-stack"):  # net.ipv6.bindv6only=0, Linux's default: [::] takes IPv4 too
                if Path("/proc/sys/net/ipv6/bindv6only").read_text().strip() != "0":
                    continue
                host = host.split()[0]
            url = f"http://{host}:{port}"
            assert wait_for(lambda: requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200, 60)
            body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [len(X)], "data": X.tolist()}]}
            r = requests.post(f"{url}/v2/models/ox/infer", json=body, timeout=30)
            np.testing.assert_allclose(r.json()["outputs"][0]["data"], X * 2 + 1, rtol=1e-6)
    finally:
        assert stop(served) == 0
