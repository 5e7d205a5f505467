"""Updating a model repository under a running server, the ways users and
their tools do it: Kubernetes ConfigMap volumes (kubelet's AtomicWriter),
copies that change one file at a time (`git checkout`, `rsync -a --delete`,
`cp -r`), version folders coming and going, `version_policy` edits, model
folders renamed, deleted and re-created, a config edited to a syntax error,
a repository path that is a link repointed, and the same edits followed by
an explicit `load` while clients send requests.

docs/SERVING.md ("Model control"): poll "loads every model, then rescans
every `--repository-poll-secs`: new or changed models are (re)loaded,
removed ones unloaded"; "A failed reload leaves the previous load serving"
(docs/RELIABILITY.md Faults: "a model file corrupted on disk (poll mode):
the old version keeps serving"); "Requests in flight when their model is
unloaded finish ... After that a request is 404 until the model is loaded
again, and 503 while it loads".

Each test runs anemone only (CI has no Triton); its docstring says what
tritonserver 2.51 (CPU build, Python backend) did on the same steps with the
same Python models. ONNX models are served by anemone only. Every answer is
checked against numpy: the models compute Y = X * K + version (Python) or
Y = X * K + C (ONNX), so an answer tells which files served it.

Tests marked xfail(strict=True, reason="DEFECT: ...") show where anemone
differs from its docs or from tritonserver 2.51; they fail loudly once fixed.
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from serve_support import start_serve, stop_serve, wait_ready

POLL = ("--model-control-mode", "poll", "--repository-poll-secs", "1")
EXPLICIT = ("--model-control-mode", "explicit", "--load-model", "*")

# Triton's Python-backend stub needs numpy from TPEER_SP; anemone ignores it.
PRELUDE = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
'''


def source(k, name="X"):
    """A model.py computing Y = X * k + its version number."""
    return PRELUDE + f'''
K = {k!r}


class TritonPythonModel:
    def initialize(self, args):
        self.v = float(args["model_version"])

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y",
            pb_utils.get_input_tensor_by_name(r, "{name}").as_numpy() * np.float32(K) + np.float32(self.v))])
            for r in requests]
'''


def config(name="X", extra=""):
    return ('backend: "python"\nmax_batch_size: 0\n'
            f'input [ {{ name: "{name}" data_type: TYPE_FP32 dims: [ -1 ] }} ]\n'
            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]\n' + extra)


ALL = "version_policy: { all { } }\n"
SYNTAX_ERROR_PY = PRELUDE + "\nclass TritonPythonModel:\n    def execute(self, requests)\n        return []\n"

X = np.array([1.5, -2.0, 3.25, 0.5], np.float32)


def py_answer(k, version, x=X):
    return x * np.float32(k) + np.float32(version)


def onnx_bytes(k, c, name="X"):
    """An ONNX model Y = X * k + c (FP32, one dynamic dimension), with 32 KiB
    of unused weights so that a copy cut in the middle is not a model."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n"])
    weights = [numpy_helper.from_array(np.array(k, np.float32), "K"),
               numpy_helper.from_array(np.array(c, np.float32), "C"),
               numpy_helper.from_array(np.arange(8192, dtype=np.float32), "PAD")]
    graph = helper.make_graph([helper.make_node("Mul", [name, "K"], ["t"]),
                               helper.make_node("Add", ["t", "C"], ["Y"])], "g", [x], [y], weights)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def onnx_answer(k, c, x=X):
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes(k, c), providers=["CPUExecutionProvider"])
    [y] = session.run(None, {"X": x})
    return y


ONNX_CONFIG = ('platform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
               'input [ { name: "%s" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
               'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]\n')


def py_model(repo, name, versions=(1,), k=1, cfg=None):
    d = Path(repo) / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(config() if cfg is None else cfg)
    for v in versions:
        (d / str(v)).mkdir(exist_ok=True)
        (d / str(v) / "model.py").write_text(source(k))


def onnx_model(repo, name, k, c, versions=(1,)):
    d = Path(repo) / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(ONNX_CONFIG % "X")
    for v in versions:
        (d / str(v)).mkdir(exist_ok=True)
        (d / str(v) / "model.onnx").write_bytes(onnx_bytes(k, c))


# ---------------------------------------------------------------- kubelet's AtomicWriter

def atomic_write(target, payload, mode=0o644):
    """What kubelet's AtomicWriter.Write (pkg/volume/util/atomic_writer.go)
    does to a ConfigMap/Secret volume at `target` for `payload` ({relative
    path: bytes}): an unchanged payload writes nothing; otherwise (5) a new
    `..YYYY_MM_DD_HH_MM_SS.<random>` directory, (6) the payload written into
    it, (8) a `..data_tmp` link to it, (9) renamed over `..data` (the one
    atomic step), (10) user-visible links of paths no longer in the payload
    removed, (11) a `<first path component> -> ..data/<component>` link for
    each new one, (12) the old timestamped directory removed."""
    target = str(target)
    os.makedirs(target, exist_ok=True)
    data = os.path.join(target, "..data")
    try:
        old_ts = os.readlink(data)
    except OSError:
        old_ts = None
    old_paths = {}
    if old_ts:
        old_dir = os.path.join(target, old_ts)
        for root, _, files in os.walk(old_dir):
            for f in files:
                full = os.path.join(root, f)
                old_paths[os.path.relpath(full, old_dir)] = Path(full).read_bytes()
        if old_paths == payload:
            return False
    firsts = {p.split("/")[0] for p in payload}
    gone = {p.split("/")[0] for p in old_paths} - firsts
    ts_dir = tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()), dir=target)
    os.chmod(ts_dir, 0o755)
    for rel, content in payload.items():
        full = os.path.join(ts_dir, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)
        os.chmod(full, mode)
    os.symlink(os.path.basename(ts_dir), os.path.join(target, "..data_tmp"))
    os.rename(os.path.join(target, "..data_tmp"), data)
    for first in gone:
        os.remove(os.path.join(target, first))
    for first in sorted(firsts):
        visible = os.path.join(target, first)
        if not os.path.islink(visible):
            os.symlink(os.path.join("..data", first), visible)
    if old_ts:
        shutil.rmtree(os.path.join(target, old_ts))
    return True


def rsync_like(src, dst, between=None):
    """`rsync -a --delete src/ dst/`, one file at a time as rsync does it:
    files not in `src` deleted, then each file written to a hidden temporary
    `.<name>.XXXXXX` beside it, its time set to the source's, and renamed
    over the old one. `between(path)` runs after each file."""
    src, dst = Path(src), Path(dst)
    for path in sorted(dst.rglob("*"), reverse=True):
        if not (src / path.relative_to(dst)).exists():
            path.unlink() if path.is_file() else shutil.rmtree(path)
    for path in sorted(src.rglob("*")):
        out = dst / path.relative_to(src)
        if path.is_dir():
            out.mkdir(exist_ok=True)
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(path.read_bytes())
        st = path.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, out)
        if between:
            between(out)


# ---------------------------------------------------------------- clients

class Http:
    def __init__(self, address):
        self.base = f"http://{address}"
        self.session = requests.Session()

    def post(self, path, body=None, timeout=30):
        return self.session.post(self.base + path, json=body, timeout=timeout)

    def get(self, path):
        return self.session.get(self.base + path, timeout=30)

    def index(self):
        r = self.post("/v2/repository/index")
        assert r.status_code == 200, r.text
        return r.json()

    def rows(self, name):
        """(version, state) of `name`'s index rows."""
        return sorted((r.get("version", ""), r.get("state", "")) for r in self.index() if r["name"] == name)

    def reason(self, name):
        return " ".join(r.get("reason", "") for r in self.index() if r["name"] == name)

    def infer(self, name, version=None, x=X, input_name="X"):
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        return self.post(path, {"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(x.shape),
                                            "data": x.tolist()}]})

    def answer(self, name, version=None, input_name="X"):
        """(model_version, Y) of a request that must succeed."""
        r = self.infer(name, version, input_name=input_name)
        assert r.status_code == 200, f"{name} v{version}: {r.status_code} {r.text}"
        [out] = r.json()["outputs"]
        return r.json()["model_version"], np.array(out["data"], np.float32)

    def ready(self, name, version=None):
        return self.get(f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready").status_code

    def load(self, name):
        return self.post(f"/v2/repository/models/{name}/load")

    def success_count(self, name, version):
        r = self.get(f"/v2/models/{name}/versions/{version}/stats")
        assert r.status_code == 200, r.text
        [stats] = r.json()["model_stats"]
        return stats["inference_stats"]["success"]["count"]


class Clients:
    """Clients sending requests to `name` (and `version`) in a loop while the
    repository changes; each answer is kept as (status, model_version, Y)."""

    def __init__(self, address, name, version=None, input_name="X", count=1):
        self.name, self.version, self.input_name = name, version, input_name
        self.answers, self.stop = [], threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(Http(address),)) for _ in range(count)]
        for t in self.threads:
            t.start()

    def run(self, http):
        while not self.stop.is_set():
            try:
                r = http.infer(self.name, self.version, input_name=self.input_name)
            except requests.RequestException as e:
                self.answers.append(("exception", str(e), None))
                continue
            if r.status_code == 200:
                [out] = r.json()["outputs"]
                self.answers.append((200, r.json()["model_version"], np.array(out["data"], np.float32)))
            else:
                self.answers.append((r.status_code, r.text, None))
            time.sleep(0.005)

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert self.answers, f"no request to {self.name} was answered"
        return self.answers

    def check(self, allowed, statuses=()):
        """Every answer is 200 with one of `allowed` ({model_version: Y}),
        or has a status in `statuses`. Returns the versions answered."""
        seen = []
        for status, version, y in self.end():
            if status in statuses:
                continue
            assert status == 200, f"a request to {self.name} got {status}: {version}"
            assert version in allowed, f"{self.name}: version {version} answered, not one of {list(allowed)}"
            np.testing.assert_allclose(y, allowed[version], rtol=1e-6,
                                       err_msg=f"{self.name} v{version} answered a mix")
            seen.append(version)
        return seen


class GrpcClients(Clients):
    """`Clients` over gRPC (tritonclient): the same answers, kept the same way."""

    def __init__(self, address, name, count=1):
        self.name, self.version, self.input_name = name, None, "X"
        self.answers, self.stop = [], threading.Event()
        self.threads = [threading.Thread(target=self.run_grpc, args=(address,)) for _ in range(count)]
        for t in self.threads:
            t.start()

    def run_grpc(self, address):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(address)
        while not self.stop.is_set():
            t = grpcclient.InferInput("X", list(X.shape), "FP32")
            t.set_data_from_numpy(X)
            try:
                r = client.infer(self.name, [t])
                self.answers.append((200, r.get_response().model_version, r.as_numpy("Y")))
            except InferenceServerException as e:
                self.answers.append((e.status(), e.message(), None))
            time.sleep(0.005)
        client.close()


def wait_for(what, seconds=15, step=0.1):
    deadline = time.time() + seconds
    while True:
        try:
            if what():
                return
        except (AssertionError, requests.RequestException, KeyError, ValueError):
            pass
        if time.time() > deadline:
            assert what(), f"not within {seconds} s"
            return
        time.sleep(step)


@pytest.fixture
def serve():
    """Starts `anemone serve` on a repository with flags (free ports); stops
    it after, checking it exits 0 (it did not crash meanwhile)."""
    procs = []

    def start(repo, *flags, ready=True):
        proc, addresses = start_serve(repo, "--health-monitor", "false", *flags)
        procs.append(proc)
        if ready:
            wait_ready(addresses["HTTP"], seconds=60)
        return Http(addresses["HTTP"]), addresses

    yield start
    for proc in procs:
        assert proc.poll() is None, f"anemone serve died during the test (status {proc.poll()})"
        stop_serve(proc)


# ---------------------------------------------------------------- Kubernetes ConfigMap volumes

def test_configmap_volumes_swapped_by_kubelet_are_followed_without_a_failed_request(tmp_path, serve):
    """A repository that is a ConfigMap volume (models `m -> ..data/m`, the
    hidden `..data` and `..2026_...` entries beside them), and a model folder
    that is one (`n/config.pbtxt -> ..data/config.pbtxt`, `n/1 -> ..data/1`),
    each updated as kubelet's AtomicWriter does while clients send requests:
    every request is answered 200 by the old or the new files (never a mix),
    the new ones within a few polls; a new version 2 with `version_policy
    all` in the next payload serves both; a payload without `m` unloads it.
    The hidden entries are not models (SERVING.md: "directories ... whose
    names are ... not hidden"), so the server stays ready.

    tritonserver 2.51 on the same repository-level volume tries to load
    `..data` and `..2026_..._xxx` as models ("failed to load '..data': at
    least one version must be available under the version policy"), so it is
    never ready (400), but serves `m` and follows its swaps with no failed
    request; the model-folder volume it follows as anemone does."""
    repo = tmp_path / "cm"

    def payload(k, versions=(1,), extra=""):
        p = {"m/config.pbtxt": config(extra=extra).encode()}
        p.update({f"m/{v}/model.py": source(k).encode() for v in versions})
        return p

    atomic_write(repo, payload(1))
    atomic_write(repo / "n", {"config.pbtxt": (ONNX_CONFIG % "X").encode(),
                              "1/model.onnx": onnx_bytes(2.0, 0.5)})
    http, addresses = serve(repo, *POLL)
    names = sorted(r["name"] for r in http.index())
    assert names == ["m", "n"], f"hidden kubelet entries listed as models: {names}"
    old_m, old_n = py_answer(1, 1), onnx_answer(2.0, 0.5)
    new_m, new_n = py_answer(2, 1), onnx_answer(3.0, -1.0)
    cm, cn = Clients(addresses["HTTP"], "m"), Clients(addresses["HTTP"], "n")
    try:
        time.sleep(0.3)
        assert atomic_write(repo, payload(2))
        assert atomic_write(repo / "n", {"config.pbtxt": (ONNX_CONFIG % "X").encode(),
                                         "1/model.onnx": onnx_bytes(3.0, -1.0)})
        wait_for(lambda: np.allclose(http.answer("m")[1], new_m) and np.allclose(http.answer("n")[1], new_n))
        time.sleep(0.3)
    finally:
        answers_m, answers_n = cm.end(), cn.end()
    for answers, old, new, what in ((answers_m, old_m, new_m, "m"), (answers_n, old_n, new_n, "n")):
        for status, version, y in answers:
            assert status == 200 and version == "1", f"{what}: {status} {version}"
            assert np.allclose(y, old) or np.allclose(y, new), f"{what} answered {y}, neither {old} nor {new}"
        assert np.allclose(answers[-1][2], new), f"{what}'s last answer is not the new files'"
    assert http.get("/v2/health/ready").status_code == 200

    assert atomic_write(repo, payload(3, (1, 2), ALL))
    wait_for(lambda: http.rows("m") == [("1", "READY"), ("2", "READY")])
    for v in (1, 2):
        assert http.answer("m", v)[0] == str(v)
        np.testing.assert_allclose(http.answer("m", v)[1], py_answer(3, v))
    assert len([p for p in repo.iterdir() if p.name.startswith("..2")]) == 1, "the old timestamped dir is gone"

    # A payload that no longer has m: kubelet removes the m link; m unloads.
    atomic_write(repo, {"other.txt": b"not a model\n"})
    # Its readiness answers 503 while the unload finishes, then 404 (a cold
    # CI run once read the 503 just after the inference's 404).
    wait_for(lambda: http.infer("m").status_code == 404 and http.ready("m") == 404)
    np.testing.assert_allclose(http.answer("n")[1], new_n)


# ---------------------------------------------------------------- copies that change one file at a time

def test_copies_seen_half_done_by_a_poll_settle_on_the_final_files(tmp_path, serve):
    """A `git checkout`/`cp -r` over model folders, seen by polls half done:
    - Python `py`: the new config (input renamed X -> X2) lands first, its
      model.py a poll later. The half state loads (the config and the old
      model.py agree enough to load): a request with X is 400, one with X2
      is 500 (the old model.py reads X) until model.py lands; then X2 is
      served by the new code. tritonserver 2.51 does exactly the same (400
      "unexpected inference input 'X'", then 500 AttributeError), so this
      mix is not a defect; the final state is what is checked.
    - ONNX `ox`: the same rename: the new config with the old model.onnx
      fails to load (checked against the file), so the old one keeps serving
      every request (X) until model.onnx lands.
    - ONNX `tr`: model.onnx cut in the middle of the copy, seen by a poll:
      the reload fails and the old model keeps serving (RELIABILITY.md
      Faults), every request 200 with the old or the new answer; once the
      copy completes the new model serves.
    - ONNX `fresh`: a new model whose model.onnx is half there at its first
      poll: UNAVAILABLE with the reason, then READY once complete.
    - Python `cp`: `cp -r` of a whole new folder over it (real cp).
    tritonserver 2.51 (Python models): the truncated model.py fails its
    reload ("failed to load 'trunc'") and the old one keeps serving, then the
    completed file is served."""
    for name in ("py", "cp"):
        py_model(tmp_path, name, k=1)
    onnx_model(tmp_path, "ox", 2.0, 1.0)
    onnx_model(tmp_path, "tr", 2.0, 1.0)
    http, addresses = serve(tmp_path, *POLL)
    old_tr, new_tr = onnx_answer(2.0, 1.0), onnx_answer(-1.0, 4.0)
    ctr = Clients(addresses["HTTP"], "tr")
    cox = Clients(addresses["HTTP"], "ox")
    try:
        # Half done: ox's new config, tr's model.onnx cut, fresh's too, py's new config.
        (tmp_path / "py" / "config.pbtxt").write_text(config("X2"))
        (tmp_path / "ox" / "config.pbtxt").write_text(ONNX_CONFIG % "X2")
        whole = onnx_bytes(-1.0, 4.0)
        (tmp_path / "tr" / "1" / "model.onnx").write_bytes(whole[: len(whole) // 2])
        (tmp_path / "fresh" / "1").mkdir(parents=True)
        (tmp_path / "fresh" / "config.pbtxt").write_text(ONNX_CONFIG % "X")
        (tmp_path / "fresh" / "1" / "model.onnx").write_bytes(whole[: len(whole) // 3])
        wait_for(lambda: "reload failed" in http.reason("tr") and "reload failed" in http.reason("ox")
                 and [s for _, s in http.rows("fresh")] == ["UNAVAILABLE"]
                 and http.get("/v2/models/py").json()["inputs"][0]["name"] == "X2")
        # What the half state serves.
        assert http.infer("py").status_code == 400
        assert http.infer("py", input_name="X2").status_code == 500
        np.testing.assert_allclose(http.answer("ox")[1], onnx_answer(2.0, 1.0))
        np.testing.assert_allclose(http.answer("tr")[1], old_tr)
        assert http.ready("tr") == 200 and http.ready("fresh") != 200
        # The copies complete.
        (tmp_path / "py" / "1" / "model.py").write_text(source(5, "X2"))
        (tmp_path / "ox" / "1" / "model.onnx").write_bytes(onnx_bytes(4.0, 0.0, "X2"))
        (tmp_path / "tr" / "1" / "model.onnx").write_bytes(whole)
        (tmp_path / "fresh" / "1" / "model.onnx").write_bytes(whole)
        staged = tmp_path.parent / (tmp_path.name + "_staged")
        py_model(staged, "cp", k=9)
        subprocess.run(["cp", "-r", str(staged / "cp"), str(tmp_path)], check=True)
        wait_for(lambda: "failed" not in http.reason("tr") and np.allclose(http.answer("tr")[1], new_tr))
        time.sleep(0.2)
    finally:
        answers_tr, answers_ox = ctr.end(), cox.end()
    for status, version, y in answers_tr:
        assert status == 200, f"tr: a request got {status} {version}"
        assert np.allclose(y, old_tr) or np.allclose(y, new_tr), f"tr answered {y}"
    for status, version, y in answers_ox:
        # The config renames the input; once the new files serve, X is refused.
        if status == 400:
            continue
        assert status == 200, f"ox: a request got {status} {version}"
        np.testing.assert_allclose(y, onnx_answer(2.0, 1.0))
    wait_for(lambda: http.rows("fresh") == [("1", "READY")] and np.allclose(http.answer("cp")[1], py_answer(9, 1))
             and http.infer("py", input_name="X2").status_code == 200)
    np.testing.assert_allclose(http.answer("py", input_name="X2")[1], py_answer(5, 1))
    np.testing.assert_allclose(http.answer("ox", input_name="X2")[1], X * 4.0)
    np.testing.assert_allclose(http.answer("fresh")[1], new_tr)
    np.testing.assert_allclose(http.answer("tr")[1], new_tr)
    for name in ("py", "ox", "tr", "fresh", "cp"):
        assert http.rows(name) == [("1", "READY")], (name, http.rows(name))
        assert "failed" not in http.reason(name), (name, http.reason(name))
    assert http.get("/v2/health/ready").status_code == 200


def test_rsync_of_another_commit_one_file_at_a_time_settles_on_it(tmp_path, serve):
    """`rsync -a --delete` of another commit over a model folder: each file
    goes to a hidden temporary beside it, gets the source's time (older than
    the files it replaces) and is renamed over; a file the commit does not
    have is deleted. A poll after each file sees the half-updated folder.
    The model must never fail a request it answered before (the intermediate
    states here load or are refused as a whole), and ends serving the
    commit's files: version 2 (k=7) in place of version 1 with the config's
    `version_policy` left at latest, `notes.txt` gone.

    tritonserver 2.51 (Python models) follows the same copy to the same end."""
    py_model(tmp_path, "m", versions=(1,), k=1)
    (tmp_path / "m" / "notes.txt").write_text("old\n")
    commit = tmp_path.parent / (tmp_path.name + "_commit")
    py_model(commit, "m", versions=(1, 2), k=7)
    for f in (commit / "m").rglob("*"):
        os.utime(f, (time.time() - 3600, time.time() - 3600))  # the commit's files are an hour old
    http, addresses = serve(tmp_path, *POLL)
    clients = Clients(addresses["HTTP"], "m")
    try:
        time.sleep(0.3)
        rsync_like(commit / "m", tmp_path / "m", between=lambda _: time.sleep(1.2))
        wait_for(lambda: http.answer("m")[0] == "2" and np.allclose(http.answer("m")[1], py_answer(7, 2)))
        time.sleep(0.3)
    finally:
        answers = clients.end()
    allowed = {"1": [py_answer(1, 1), py_answer(7, 1)], "2": [py_answer(7, 2)]}
    for status, version, y in answers:
        assert status == 200, f"a request got {status}: {version}"
        assert any(np.allclose(y, a) for a in allowed[version]), f"v{version} answered {y}"
    assert not (tmp_path / "m" / "notes.txt").exists()
    # The last file's poll may still be reloading the model (a Python stub's
    # start took seconds beside three other test workers): meanwhile a
    # request for version 1 is 503 "is loading"; once it ends, 404.
    wait_for(lambda: http.infer("m", 1).status_code == 404)
    assert http.rows("m") == [("2", "READY")]


# ---------------------------------------------------------------- versions and version policies

def test_version_folders_come_and_go_and_the_policy_changes_under_load(tmp_path, serve):
    """Poll mode, Python model `m` (latest 1) and ONNX model `o` (versions 1
    and 2):
    - an empty folder `m/2` appears: nothing changes (version 1 serves; an
      empty version folder is left out); filled, version 2 serves and version
      1 goes (SERVING.md: latest 1);
    - `m/2` removed while clients send requests: unversioned requests are all
      200 (from version 2, then 1); requests for version 2 are 200 until it
      goes, then 404 (SERVING.md: "After that a request is 404");
    - `o`'s `version_policy` latest -> all serves both, and back -> only 2.
    tritonserver 2.51: the empty folder `m/2` makes its Python stub fail
    ("Python model file not found") and the version hangs in LOADING for
    good, with every later poll of the server held behind it (nothing else
    reloads); filled at once instead, it serves version 2 and unloads 1. The
    removed version 2 goes and version 1 serves, its requests for version 2
    answered 503 "not at ready state" (anemone: 404, as documented). The
    policy change serves both versions, and back only version 2."""
    py_model(tmp_path, "m", k=1)
    onnx_model(tmp_path, "o", 2.0, 0.0, versions=(1,))
    onnx_model(tmp_path, "o", 3.0, 0.0, versions=(2,))
    http, addresses = serve(tmp_path, *POLL)
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "o" / "config.pbtxt").write_text(ONNX_CONFIG % "X" + ALL)
    wait_for(lambda: http.rows("o") == [("1", "READY"), ("2", "READY")])
    assert http.rows("m") == [("1", "READY")]
    np.testing.assert_allclose(http.answer("m")[1], py_answer(1, 1))
    np.testing.assert_allclose(http.answer("o", 1)[1], onnx_answer(2.0, 0.0))
    np.testing.assert_allclose(http.answer("o", 2)[1], onnx_answer(3.0, 0.0))

    (tmp_path / "m" / "2" / "model.py").write_text(source(1))
    (tmp_path / "o" / "config.pbtxt").write_text(ONNX_CONFIG % "X")
    wait_for(lambda: http.rows("m") == [("2", "READY")] and http.rows("o") == [("2", "READY")])
    np.testing.assert_allclose(http.answer("m")[1], py_answer(1, 2))
    assert http.infer("m", 1).status_code == 404 and http.infer("o", 1).status_code == 404

    unversioned, second = Clients(addresses["HTTP"], "m"), Clients(addresses["HTTP"], "m", version="2")
    try:
        # Each client's thread is waited for (not a fixed pause: on a loaded
        # machine a thread may send nothing in it): answered by version 2
        # before it goes, then by version 1 and refused after.
        wait_for(lambda: unversioned.answers and second.answers)
        shutil.rmtree(tmp_path / "m" / "2")
        wait_for(lambda: http.rows("m") == [("1", "READY")] and http.answer("m")[0] == "1")
        seen = len(unversioned.answers), len(second.answers)
        wait_for(lambda: len(unversioned.answers) > seen[0] and len(second.answers) > seen[1])
    finally:
        versions = unversioned.check({"1": py_answer(1, 1), "2": py_answer(1, 2)})
        answered = second.end()
    assert versions[0] == "2" and versions[-1] == "1", versions[:3] + versions[-3:]
    statuses = [a[0] for a in answered]
    first_refused = next(i for i, s in enumerate(statuses) if s != 200)
    assert set(statuses[first_refused:]) <= {404, 503}, set(statuses)
    assert statuses[-1] == 404
    for status, version, y in answered:
        if status == 200:
            assert version == "2"
            np.testing.assert_allclose(y, py_answer(1, 2))
    assert http.ready("m", 2) != 200 and http.ready("m") == 200


# ---------------------------------------------------------------- folders renamed, deleted, broken configs

def test_folders_renamed_deleted_recreated_and_a_config_broken_then_fixed(tmp_path, serve):
    """Poll mode:
    - `ren` renamed to `ren2`: `ren` unloads (404), `ren2` loads;
    - `dl` deleted: it unloads (404, its index row gone); re-created with the
      same name and other code: loaded again, serving the new code;
    - `cfg`'s config.pbtxt edited to a syntax error: the old load keeps
      serving (the index row READY, its reason naming the line), then fixed
      (with new code): the new code serves, no reason left.
    tritonserver 2.51 the same: `ren2` served and `ren` 404; `dl` 404, then
    re-created it serves the new code; the broken config is logged ("Poll
    failed for model directory 'cfg': failed to read text proto") and the
    old model keeps serving (its row READY with no reason), the fix is
    served."""
    for name in ("ren", "dl", "cfg"):
        py_model(tmp_path, name, k=1)
    http, _ = serve(tmp_path, *POLL)
    (tmp_path / "ren").rename(tmp_path / "ren2")
    shutil.rmtree(tmp_path / "dl")
    (tmp_path / "cfg" / "config.pbtxt").write_text(config() + "max_batch_size: [ oops\n")
    wait_for(lambda: http.rows("ren2") == [("1", "READY")] and http.rows("dl") == []
             and "config.pbtxt line" in http.reason("cfg"))
    assert http.infer("ren").status_code == 404 and http.infer("dl").status_code == 404
    assert http.rows("cfg") == [("1", "READY")] and http.ready("cfg") == 200
    np.testing.assert_allclose(http.answer("cfg")[1], py_answer(1, 1))
    np.testing.assert_allclose(http.answer("ren2")[1], py_answer(1, 1))

    py_model(tmp_path, "dl", k=4)
    (tmp_path / "cfg" / "config.pbtxt").write_text(config())
    (tmp_path / "cfg" / "1" / "model.py").write_text(source(3))
    wait_for(lambda: http.rows("dl") == [("1", "READY")] and np.allclose(http.answer("cfg")[1], py_answer(3, 1)))
    np.testing.assert_allclose(http.answer("dl")[1], py_answer(4, 1))
    assert "failed" not in http.reason("cfg")
    assert http.get("/v2/health/ready").status_code == 200


# ---------------------------------------------------------------- the repository path is a link

def test_a_repository_path_that_is_a_repointed_link_serves_the_new_target(tmp_path, serve):
    """`--model-repository .../current` where `current -> A` is repointed
    atomically to `B` (a new link renamed over it, as `ln -sfn` or a deploy
    tool does). SERVING.md, poll: "new or changed models are (re)loaded,
    removed ones unloaded". Expected: B's new model `n` loads, `m` serves B's
    code, A's `gone` unloads.

    anemone before the fix (the resolved path kept from start-up): `gone`
    unloaded (the scan follows the link) but `n` stayed with no state and 404, `m` keeps A's code, and the log says each poll "reload
    after a change on disk failed: failed to load model 'n': it is not in the
    repository .../current"; after A is deleted `m` still serves A's code.
    tritonserver 2.51 follows the link: `n` loads and serves, `gone` unloads
    (its `m`, whose B files were written within the same second as A's, kept
    A's code: Triton compares times only)."""
    a, b = tmp_path / "A", tmp_path / "B"
    py_model(a, "m", k=1)
    py_model(a, "gone", k=1)
    py_model(b, "m", k=2)
    py_model(b, "n", k=3)
    os.symlink("A", tmp_path / "current")
    http, _ = serve(tmp_path / "current", *POLL)
    np.testing.assert_allclose(http.answer("m")[1], py_answer(1, 1))
    os.symlink("B", tmp_path / "next")
    os.rename(tmp_path / "next", tmp_path / "current")
    wait_for(lambda: http.infer("gone").status_code == 404)
    wait_for(lambda: http.rows("n") == [("1", "READY")], seconds=6)
    np.testing.assert_allclose(http.answer("n")[1], py_answer(3, 1))
    wait_for(lambda: np.allclose(http.answer("m")[1], py_answer(2, 1)), seconds=4)


# ---------------------------------------------------------------- explicit mode: edits, then load, under load

def test_explicit_reloads_under_load_fail_no_request(tmp_path, serve):
    """Explicit mode (`--load-model *`), clients sending requests over HTTP
    to each model while its files change and `POST .../load` follows:
    - `py` (Python) and `ox` (ONNX) with new code (their clients over HTTP
      and gRPC): the load answers 200, no
      request fails, each answer is the old or the new code's, the new code
      serves after the load; the reload starts the statistics over (a new
      model), while an unchanged model's load does nothing and keeps them
      (SERVING.md: "does nothing and answers 200, as in Triton ... keeps
      ... statistics");
    - `cfg` with a config syntax error and `tr` with model.onnx cut: the load
      is 400 "failed to reload ... (the previous load keeps serving)", no
      request fails, the old code serves and the index row stays READY with
      the reason; fixed, the load serves the fix;
    - `dl` deleted: its load is 404 (FROM_TRITON.md: Triton 500 "failed to
      poll from model repository"), and it keeps serving until unloaded.
    tritonserver 2.51: the same loads answer 200, 500 "failed to poll from
    model repository" (syntax error and deleted folder), 400 "load failed
    ... version 1 is at UNAVAILABLE state: SyntaxError" (cut model.py); no
    request fails, the old code keeps serving; a reload starts the
    statistics over."""
    for name in ("py", "cfg", "dl", "same"):
        py_model(tmp_path, name, k=1)
    onnx_model(tmp_path, "ox", 2.0, 1.0)
    onnx_model(tmp_path, "tr", 2.0, 1.0)
    http, addresses = serve(tmp_path, *EXPLICIT)
    for name in ("same", "py"):
        for _ in range(3):
            http.answer(name)
    assert http.success_count("same", 1) == 3
    clients = {n: Clients(addresses["HTTP"], n) for n in ("py", "ox", "cfg", "tr", "dl")}
    clients["grpc py"] = GrpcClients(addresses["gRPC"], "py")
    clients["grpc ox"] = GrpcClients(addresses["gRPC"], "ox")
    try:
        time.sleep(0.3)
        (tmp_path / "py" / "1" / "model.py").write_text(source(2))
        (tmp_path / "ox" / "1" / "model.onnx").write_bytes(onnx_bytes(5.0, -2.0))
        (tmp_path / "cfg" / "config.pbtxt").write_text(config() + "max_batch_size: [ oops\n")
        whole = onnx_bytes(-3.0, 0.0)
        (tmp_path / "tr" / "1" / "model.onnx").write_bytes(whole[: len(whole) // 2])
        shutil.rmtree(tmp_path / "dl")
        answers = {n: http.load(n) for n in ("py", "ox", "cfg", "tr", "dl", "same")}
        time.sleep(0.3)
    finally:
        ended = {n: c.end() for n, c in clients.items()}
    assert answers["py"].status_code == 200 and answers["ox"].status_code == 200, answers
    assert answers["same"].status_code == 200
    for n in ("cfg", "tr"):
        assert answers[n].status_code == 400, answers[n].text
        assert "the previous load keeps serving" in answers[n].json()["error"]
    assert answers["dl"].status_code == 404, answers["dl"].text
    allowed = {"py": [py_answer(1, 1), py_answer(2, 1)], "ox": [onnx_answer(2.0, 1.0), onnx_answer(5.0, -2.0)],
               "cfg": [py_answer(1, 1)], "tr": [onnx_answer(2.0, 1.0)], "dl": [py_answer(1, 1)]}
    allowed["grpc py"], allowed["grpc ox"] = allowed["py"], allowed["ox"]
    for name, got in ended.items():
        for status, version, y in got:
            assert status == 200, f"{name}: a request got {status}: {version}"
            assert any(np.allclose(y, a) for a in allowed[name]), f"{name} answered {y}"
    np.testing.assert_allclose(http.answer("py")[1], py_answer(2, 1))
    np.testing.assert_allclose(http.answer("ox")[1], onnx_answer(5.0, -2.0))
    np.testing.assert_allclose(http.answer("cfg")[1], py_answer(1, 1))
    np.testing.assert_allclose(http.answer("tr")[1], onnx_answer(2.0, 1.0))
    np.testing.assert_allclose(http.answer("dl")[1], py_answer(1, 1))
    # Statistics: a reloaded model starts over, an unchanged one keeps its count.
    new_code = sum(1 for n in ("py", "grpc py") for s, _, y in ended[n] if s == 200 and np.allclose(y, py_answer(2, 1)))
    assert http.success_count("py", 1) == new_code + 1, "the reloaded model counts its own requests only"
    assert http.success_count("same", 1) == 3
    rows = {r["name"]: r for r in http.index()}
    for name in ("py", "ox", "cfg", "tr", "dl", "same"):
        assert rows[name]["state"] == "READY" and rows[name]["version"] == "1", rows[name]
    assert "reload failed" in rows["cfg"]["reason"] and "reload failed" in rows["tr"]["reason"]

    (tmp_path / "cfg" / "config.pbtxt").write_text(config())
    (tmp_path / "cfg" / "1" / "model.py").write_text(source(3))
    (tmp_path / "tr" / "1" / "model.onnx").write_bytes(whole)
    assert http.load("cfg").status_code == 200 and http.load("tr").status_code == 200
    np.testing.assert_allclose(http.answer("cfg")[1], py_answer(3, 1))
    np.testing.assert_allclose(http.answer("tr")[1], onnx_answer(-3.0, 0.0))
    assert http.post("/v2/repository/models/dl/unload").status_code == 200
    assert http.infer("dl").status_code == 404
    rows = {r["name"]: r for r in http.index()}
    assert "failed" not in rows["cfg"]["reason"] and "failed" not in rows["tr"]["reason"]
    assert "dl" not in rows or rows["dl"]["state"] != "READY"


# ---------------------------------------------------------------- a failed reload of a model with several versions

@pytest.mark.parametrize("mode", ["explicit", "poll"])
def test_a_failed_reload_of_several_versions_keeps_every_version_serving(tmp_path, serve, mode):
    """`pa` (`version_policy all`, versions 1 and 2) gets a version 2 whose
    model.py does not import (a copy cut short); `l2` (`latest {
    num_versions: 2 }`, versions 1 and 2) gets a new version 3 that does not
    import. Then a load (explicit) or the next poll. SERVING.md: "A failed
    reload leaves the previous load serving"; the load's answer says "(the
    previous load keeps serving)".

    anemone before the fix (the versions the reload had replaced were
    unloaded): `pa` version 1 was gone (404, not ready) and `l2` version 2, so `l2`'s unversioned requests are served by version 1, the older
    code, while both index rows stay READY "still serving the previous
    load". tritonserver 2.51 (both modes): every version keeps serving
    (`pa` 1 and 2, `l2` 1 and 2, unversioned `l2` by 2), version 3 listed
    UNAVAILABLE with the SyntaxError."""
    py_model(tmp_path, "pa", versions=(1, 2), cfg=config(extra=ALL))
    py_model(tmp_path, "l2", versions=(1, 2), cfg=config(extra="version_policy: { latest { num_versions: 2 } }\n"))
    http, _ = serve(tmp_path, *(EXPLICIT if mode == "explicit" else POLL))
    (tmp_path / "pa" / "2" / "model.py").write_text(SYNTAX_ERROR_PY)
    (tmp_path / "l2" / "3").mkdir()
    (tmp_path / "l2" / "3" / "model.py").write_text(SYNTAX_ERROR_PY)
    if mode == "explicit":
        for name in ("pa", "l2"):
            r = http.load(name)
            assert r.status_code == 400 and "the previous load keeps serving" in r.text, r.text
    else:
        wait_for(lambda: "reload failed" in http.reason("pa") and "reload failed" in http.reason("l2"))
    for name in ("pa", "l2"):
        for v in (1, 2):
            assert http.ready(name, v) == 200, f"{name} version {v} is not ready"
            np.testing.assert_allclose(http.answer(name, v)[1], py_answer(1, v))
    assert http.answer("l2")[0] == "2"


# ---------------------------------------------------------------- readiness while a serving model reloads

@pytest.mark.parametrize("mode", ["poll", "explicit"])
def test_the_server_stays_ready_while_a_serving_model_reloads(tmp_path, serve, mode):
    """A Python model whose initialize takes 1.5 s is changed on disk (and,
    in explicit mode, loaded again). SERVING.md: "A failed reload leaves the
    previous load serving" and "/v2/health/ready turns 200 once every model
    that should load is READY"; the model serves throughout, so readiness
    should stay 200 (deploy/k8s/deployment.yaml probes it every 2 s with
    failureThreshold 1).

    anemone before the fix: `/v2/health/ready` was 503 and the index row
    (version 1) LOADING for the whole reload, while requests to the model are answered
    200 by the old code. tritonserver 2.51 (poll and explicit): `/v2/health
    /ready` stays 200 and the index row READY throughout; requests are
    answered by the old code, then the new."""
    slow = source(1).replace("    def initialize(self, args):\n",
                             "    def initialize(self, args):\n        import time; time.sleep(1.5)\n")
    py_model(tmp_path, "m")
    (tmp_path / "m" / "1" / "model.py").write_text(slow)
    http, _ = serve(tmp_path, *(EXPLICIT if mode == "explicit" else POLL))
    (tmp_path / "m" / "1" / "model.py").write_text(slow.replace("K = 1", "K = 2"))
    loader = None
    if mode == "explicit":
        loader = threading.Thread(target=lambda: Http(http.base[len("http://"):]).load("m"))
        loader.start()
    seen, deadline = [], time.time() + 15
    while time.time() < deadline:
        ready, rows = http.get("/v2/health/ready").status_code, http.rows("m")
        y = http.answer("m")[1]
        seen.append((ready, tuple(rows)))
        if np.allclose(y, py_answer(2, 1)):
            break
        assert np.allclose(y, py_answer(1, 1)), y
        time.sleep(0.05)
    if loader:
        loader.join()
    np.testing.assert_allclose(http.answer("m")[1], py_answer(2, 1))
    assert all(s == (200, (("1", "READY"),)) for s in seen), sorted(set(seen))


# ---------------------------------------------------------------- loads a poll finds, at once

SLOW_INIT = '''import json, os, time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        start = time.time()
        time.sleep(1.0)
        with open(os.environ["SPANS"], "a") as f:
            f.write(json.dumps([args["model_name"], start, time.time()]) + "\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
'''


def test_models_a_poll_finds_load_at_once_as_at_start_up(tmp_path, serve, monkeypatch):
    """SERVING.md: "the bound holds for every load, at start-up, through the
    load API and by polling": three models added between two polls, each
    taking 1 s in initialize(), load side by side (their initialize() times
    overlap), not one after another as before."""
    repo = tmp_path / "repo"
    repo.mkdir()
    spans = tmp_path / "spans.jsonl"
    monkeypatch.setenv("SPANS", str(spans))
    http, _ = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    staging = tmp_path / "staging"
    for name in ["slow_a", "slow_b", "slow_c"]:
        (staging / name / "1").mkdir(parents=True)
        (staging / name / "1" / "model.py").write_text(SLOW_INIT)
        (staging / name / "config.pbtxt").write_text(config())
    for name in ["slow_a", "slow_b", "slow_c"]:
        os.rename(staging / name, repo / name)
    wait_for(lambda: all(http.rows(n) == [("1", "READY")] for n in ["slow_a", "slow_b", "slow_c"]), seconds=60)
    runs = [json.loads(line) for line in spans.read_text().splitlines()]
    assert sorted(r[0] for r in runs) == ["slow_a", "slow_b", "slow_c"], runs
    # Each initialize() overlaps another's: they ran side by side.
    for name, start, end in runs:
        others = [(s, e) for n, s, e in runs if n != name]
        assert any(s < end and start < e for s, e in others), runs


def test_a_repository_that_cannot_be_listed_for_a_while_keeps_its_models(tmp_path, serve):
    """RELIABILITY.md, "The host's limits": in poll mode, a repository that
    cannot be listed (its folder moved away, a network file system gone, no
    file descriptor left) is not an empty one: its models stay loaded and
    answer until it can be listed again. Before session 42 the next poll
    read it as empty and unloaded every model."""
    repo = tmp_path / "repo"
    py_model(repo, "kept", k=3)
    http, _ = serve(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    assert http.answer("kept") == ("1", pytest.approx(py_answer(3, 1)))
    away = tmp_path / "away"
    os.rename(repo, away)
    try:
        time.sleep(3.5)  # three polls
        assert http.rows("kept") == [("1", "READY")]
        version, y = http.answer("kept")
        np.testing.assert_allclose(y, py_answer(3, 1))
    finally:
        os.rename(away, repo)
    time.sleep(1.5)
    assert http.rows("kept") == [("1", "READY")]
    np.testing.assert_allclose(http.answer("kept")[1], py_answer(3, 1))
