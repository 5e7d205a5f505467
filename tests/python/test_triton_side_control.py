"""Model control, read side by side with tritonserver 2.51 (CPU build, Python
backend) on the same repositories of small Python models.

Each test runs anemone only (CI has no Triton); its docstring says what
tritonserver 2.51 answered to the same requests on the same repository.
The models compute Y = X + version (or X * k), so every answer is checked
against numpy and tells which version served it.

The `model.py` files begin with the lines Triton's Python-backend stub needs
to find numpy (TPEER_SP); anemone ignores them, so the same repositories can
be served by both (see scripts/triton_peer).

Tests marked xfail(strict=True, reason="DEFECT: ...") are places where
anemone differs from tritonserver 2.51 where its docs claim Triton's
behaviour or say nothing; they fail loudly once fixed.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from serve_support import ROOT, start_serve, stop_serve, wait_ready

PRELUDE = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
'''

# Y = X + its version number (+ OFFSET): which version answered is in the answer.
PLUS_VERSION = PRELUDE + '''
OFFSET = 0.0


class TritonPythonModel:
    def initialize(self, args):
        self.v = OFFSET + float(args["model_version"])

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + np.float32(self.v))]) for r in requests]
'''

CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
'''

RAISES = PRELUDE + '''

class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("kaboom in init")

    def execute(self, requests):
        return []
'''

SYNTAX_ERROR = PRELUDE + '''

class TritonPythonModel:
    def execute(self, requests)
        return []
'''

# Y = 2 X after 1.5 s; notes when each call began and ended, and finalize.
SLOW = PRELUDE + '''
import time


class TritonPythonModel:
    def initialize(self, args):
        self.log = os.path.join(args["model_repository"], "log.txt")

    def note(self, what):
        with open(self.log, "a") as f:
            f.write(f"{what} {time.time()}\\n")

    def execute(self, requests):
        self.note("begin")
        time.sleep(1.5)
        self.note("end")
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)]) for r in requests]

    def finalize(self):
        self.note("finalize")
'''

# Y = 3 X, after an initialize of 1.5 s.
SLOW_INIT = PRELUDE + '''
import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(1.5)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 3)]) for r in requests]
'''

ENSEMBLE = '''platform: "ensemble"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "a" model_version: -1 input_map { key: "X" value: "X" } output_map { key: "Y" value: "t" } },
  { model_name: "b" model_version: -1 input_map { key: "X" value: "t" } output_map { key: "Y" value: "Y" } } ] }
'''

X = np.array([1.5, -2.0, 3.25], np.float32)


def model(repo, name, versions=(1,), config=CONFIG, source=PLUS_VERSION, extra=""):
    """`repo/name` with `config` (+ `extra`) and `source` in each version."""
    d = Path(repo) / name
    d.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (d / "config.pbtxt").write_text(config + extra)
    for v in versions:
        (d / str(v)).mkdir(exist_ok=True)
        if source is not None:
            (d / str(v) / "model.py").write_text(source)


def ensemble(repo, name="ens"):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(ENSEMBLE)


class Http:
    def __init__(self, address):
        self.base = f"http://{address}"

    def post(self, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body)
        return requests.post(self.base + path, data=data, timeout=timeout)

    def get(self, path):
        return requests.get(self.base + path, timeout=30)

    def load(self, name, **parameters):
        body = {"parameters": parameters} if parameters else None
        return self.post(f"/v2/repository/models/{quote(name, safe='')}/load", body)

    def unload(self, name, **parameters):
        body = {"parameters": parameters} if parameters else None
        return self.post(f"/v2/repository/models/{quote(name, safe='')}/unload", body)

    def index(self, **body):
        r = self.post("/v2/repository/index", body)
        assert r.status_code == 200, r.text
        return r.json()

    def rows(self, name=None, **body):
        """(name, version, state) of the index's rows (of `name`)."""
        return sorted((r["name"], r.get("version", ""), r.get("state", ""))
                      for r in self.index(**body) if name is None or r["name"] == name)

    def row(self, name):
        [row] = [r for r in self.index() if r["name"] == name]
        return row

    def infer(self, name, version=None, x=X, timeout=30):
        path = f"/v2/models/{quote(name, safe='')}" + (f"/versions/{version}" if version else "") + "/infer"
        return self.post(path, {"inputs": [{"name": "X", "datatype": "FP32", "shape": list(x.shape),
                                            "data": x.tolist()}]}, timeout=timeout)

    def output(self, name, version=None, x=X):
        r = self.infer(name, version, x)
        assert r.status_code == 200, r.text
        body = r.json()
        [out] = body["outputs"]
        return body["model_version"], np.array(out["data"], np.float32).reshape(out["shape"])


@pytest.fixture
def serve():
    """Starts `anemone serve` on a repository with flags; stops them all after."""
    procs = []

    def start(repo, *flags, ready=True):
        proc, addresses = start_serve(repo, *flags)
        procs.append(proc)
        if ready:
            wait_ready(addresses["HTTP"], seconds=60)
        return Http(addresses["HTTP"]), addresses

    yield start
    for proc in procs:
        stop_serve(proc)


def wait_for(what, seconds=10):
    deadline = time.time() + seconds
    while True:
        got = what()
        if got:
            return got
        assert time.time() < deadline, f"not within {seconds} s"
        time.sleep(0.1)


# --- explicit mode: the index, version policies, readiness ------------------

def test_index_before_and_after_loads_with_the_ready_filter_and_version_policies(tmp_path, serve):
    """tritonserver 2.51, `--model-control-mode explicit` with no
    --load-model: `POST /v2/repository/index` lists every model folder by
    name alone (no version, no state); `{"ready": true}` lists none,
    `{"ready": false}` all. After loading, a model has a READY row per version
    its `version_policy` serves: latest (default 1) the highest of 1,2,3;
    `latest { num_versions: 2 }` 2 and 3; `specific { versions: [1, 3] }` 1 and
    3; `all { }` every one. The model metadata lists the served versions, a
    request without a version goes to the highest served, and
    `/versions/V/ready` is 200 for served versions only. anemone answers the
    same (docs/SERVING.md: version_policy; the index "as Triton's")."""
    model(tmp_path, "m", versions=(1, 2, 3))
    model(tmp_path, "lat2", versions=(1, 2, 3), extra="version_policy: { latest { num_versions: 2 } }\n")
    model(tmp_path, "spec", versions=(1, 2, 3), extra="version_policy: { specific { versions: [1, 3] } }\n")
    model(tmp_path, "allv", versions=(1, 2, 3), extra="version_policy: { all { } }\n")
    http, _ = serve(tmp_path, "--model-control-mode", "explicit")
    names = ["allv", "lat2", "m", "spec"]
    assert [(r["name"], r.get("version", ""), r.get("state", "")) for r in http.index()] == [(n, "", "") for n in names]
    assert http.index(ready=True) == []
    assert [r["name"] for r in http.index(ready=False)] == names
    for name in names:
        r = http.load(name)
        assert r.status_code == 200, r.text
    served = {"m": ["3"], "lat2": ["2", "3"], "spec": ["1", "3"], "allv": ["1", "2", "3"]}
    want = sorted((n, v, "READY") for n, vs in served.items() for v in vs)
    assert http.rows() == want
    assert http.rows(ready=True) == want
    for name, versions in served.items():
        assert http.get(f"/v2/models/{name}").json()["versions"] == versions
        version, y = http.output(name)
        assert version == versions[-1]
        np.testing.assert_allclose(y, X + np.float32(versions[-1]))
        for v in ("1", "2", "3"):
            status = http.get(f"/v2/models/{name}/versions/{v}/ready").status_code
            assert (status == 200) == (v in versions), (name, v, status)
            if v in versions:
                got_version, y = http.output(name, v)
                assert got_version == v
                np.testing.assert_allclose(y, X + np.float32(v))
            else:
                # Triton: 400 "Model version not ready" / a 404 for the
                # request; anemone 404 for both (a version it does not serve).
                assert status in (400, 404), (name, v, status)
                assert http.infer(name, v).status_code in (400, 404)


def test_version_folders_that_are_not_numbers_are_ignored_and_default_model_filename_is_read(tmp_path, serve):
    """tritonserver 2.51 skips version folders that are not numbers (`abc`,
    and `007`, which is not read as 7: the default policy still serves 1),
    serves version 0, and a Python model's `default_model_filename: "other.py"`
    is the file it runs. anemone the same (docs/SERVING.md's
    default_model_filename row)."""
    model(tmp_path, "odd", versions=(1,))
    for folder in ("abc", "007", "-3"):
        (tmp_path / "odd" / folder).mkdir()
        (tmp_path / "odd" / folder / "model.py").write_text(PLUS_VERSION)
    model(tmp_path, "zero", versions=(0,))
    model(tmp_path, "dfn", source=None, extra='default_model_filename: "other.py"\n')
    (tmp_path / "dfn" / "1" / "other.py").write_text(PLUS_VERSION.replace("OFFSET = 0.0", "OFFSET = 10.0"))
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "*")
    assert http.rows() == [("dfn", "1", "READY"), ("odd", "1", "READY"), ("zero", "0", "READY")]
    assert http.get("/v2/models/odd/versions/7/ready").status_code != 200
    version, y = http.output("dfn")
    np.testing.assert_allclose(y, X + 11)
    version, y = http.output("zero")
    assert version == "0"
    np.testing.assert_allclose(y, X)


def test_version_metadata_lists_only_that_version(tmp_path, serve):
    """tritonserver 2.51, `version_policy { all { } }` over versions 1 and
    2: `GET /v2/models/allv/versions/1` answers `"versions": ["1"]` (HTTP and
    gRPC ModelMetadata with version "1"); without a version, ["1", "2"].
    anemone answers ["1", "2"] for both."""
    model(tmp_path, "allv", versions=(1, 2), extra="version_policy: { all { } }\n")
    http, addresses = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "allv")
    assert http.get("/v2/models/allv").json()["versions"] == ["1", "2"]
    grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
    assert list(grpc.get_model_metadata("allv", "1").versions) == ["1"]
    assert http.get("/v2/models/allv/versions/1").json()["versions"] == ["1"]


def test_a_specific_policy_naming_a_missing_version_serves_the_others(tmp_path, serve):
    """tritonserver 2.51, versions 1 and 2 on disk and `specific { versions:
    [1, 5] }`: the load answers 200 and version 1 is READY (5 is skipped).
    anemone refuses the model (400, "lists version 5, but there is no
    version directory 5/"); docs/SERVING.md's version_policy row says nothing
    of it."""
    model(tmp_path, "spec", versions=(1, 2), extra="version_policy: { specific { versions: [1, 5] } }\n")
    http, _ = serve(tmp_path, "--model-control-mode", "explicit")
    r = http.load("spec")
    assert r.status_code == 200, r.text
    assert http.rows() == [("spec", "1", "READY")]


# --- failed loads -----------------------------------------------------------

def test_failed_loads_answer_and_the_index_says_why(tmp_path, serve):
    """tritonserver 2.51 (HTTP): `initialize` raising -> 400 "load failed for
    model 'boom': version 1 is at UNAVAILABLE state: Internal: RuntimeError:
    kaboom in init ..." (gRPC INVALID_ARGUMENT), the index row UNAVAILABLE
    with the exception as reason, /ready 400, metadata 404 "has no available
    versions"; a model.py with a syntax error -> 400 with "SyntaxError:
    expected ':'"; no version folder -> 400 "at least one version must be
    available"; a config that does not parse, or a model not in the
    repository -> 500 "failed to poll from model repository". anemone: the
    same 400s and reasons, and the documented differences: a config that does
    not parse is a 400 naming the line (docs/FROM_TRITON.md: a client's
    mistake is 400 where Triton says 500), a model not in the repository 404,
    a failed model's /ready 503 and metadata 503 with the reason. The server
    keeps serving the others."""
    model(tmp_path, "ok")
    model(tmp_path, "boom", source=RAISES)
    model(tmp_path, "syntax", source=SYNTAX_ERROR)
    model(tmp_path, "nover", versions=())
    model(tmp_path, "badcfg", config='backend: "python"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] }\n')
    http, addresses = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "ok")
    grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
    cases = {
        "boom": (400, "kaboom in init"),
        "syntax": (400, "SyntaxError"),
        "nover": (400, "version"),
        "badcfg": (400, "line 3"),
        "nosuch": (404, "not in the repository"),
    }
    for name, (status, words) in cases.items():
        r = http.load(name)
        assert r.status_code == status, (name, r.text)
        message = r.json()["error"]
        assert message.startswith("failed to load"), message
        assert words in message, (name, message)
        if name != "nosuch":
            row = http.row(name)
            assert row["state"] == "UNAVAILABLE" and words in row["reason"], row
    try:
        grpc.load_model("boom")
        raise AssertionError("the gRPC load of boom succeeded")
    except grpcclient.InferenceServerException as e:
        assert e.status() == "StatusCode.INVALID_ARGUMENT" and "kaboom in init" in e.message(), e
    assert http.get("/v2/models/boom/ready").status_code == 503
    r = http.get("/v2/models/boom")
    assert r.status_code == 503 and "kaboom in init" in r.json()["error"], r.text
    assert grpc.is_model_ready("boom") is False
    assert http.rows(ready=True) == [("ok", "1", "READY")]
    np.testing.assert_allclose(http.output("ok")[1], X + 1)


def test_the_index_row_of_a_failed_load_names_its_version(tmp_path, serve):
    """tritonserver 2.51: after `initialize` raised in version 1, the index
    row is {"name": "boom", "version": "1", "state": "UNAVAILABLE", "reason":
    "Internal: RuntimeError: kaboom in init ..."} (gRPC the same), and the
    same for a model.py that does not import. anemone's row has no
    version."""
    model(tmp_path, "boom", source=RAISES)
    http, _ = serve(tmp_path, "--model-control-mode", "explicit")
    assert http.load("boom").status_code == 400
    row = http.row("boom")
    assert row["state"] == "UNAVAILABLE"
    assert row.get("version") == "1", row


# --- load requests: config override, files, twice, concurrent ------------------

def test_config_override_replaces_the_config_and_file_overrides_are_refused(tmp_path, serve):
    """tritonserver 2.51: a load with `parameters.config` (JSON) loads with
    that config in place of config.pbtxt (here `version_policy { all { } }`:
    rows for 1, 2 and 3); a plain load afterwards reloads from config.pbtxt
    (1.4 s; version 3 only, 1 and 2 UNAVAILABLE); a config that is not JSON, or that names a field
    ModelConfig lacks -> 500 "failed to poll from model repository";
    `file:1/model.py` parameters (base64) write that file into a temporary
    copy and load it (here: a model.py adding 100). anemone: the override
    the same; refusals 400 naming the problem; `file:` parameters refused
    with 400 and nothing written, as docs/SECURITY.md ("Load requests") and
    SERVING.md's model loading API say (docs/FROM_TRITON.md does not list
    this difference)."""
    model(tmp_path, "m", versions=(1, 2, 3))
    http, _ = serve(tmp_path, "--model-control-mode", "explicit")
    override = json.dumps({"backend": "python", "version_policy": {"all": {}},
                           "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [-1]}],
                           "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]}]})
    r = http.load("m", config=override)
    assert r.status_code == 200, r.text
    assert http.rows() == [("m", "1", "READY"), ("m", "2", "READY"), ("m", "3", "READY")]
    assert http.get("/v2/models/m/config").json()["version_policy"] == {"all": {}}
    np.testing.assert_allclose(http.output("m", "1")[1], X + 1)
    # The first plain load after an override reloads from config.pbtxt.
    assert http.load("m").status_code == 200
    assert http.rows() == [("m", "3", "READY")]
    for bad, words in (("{not json", "JSON"), (json.dumps({"bogus_field": 1}), "bogus_field")):
        r = http.load("m", config=bad)
        assert r.status_code == 400 and words in r.json()["error"], r.text
    assert http.rows() == [("m", "3", "READY")]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    b64 = base64.b64encode(PLUS_VERSION.replace("OFFSET = 0.0", "OFFSET = 100.0").encode()).decode()
    for name, key in (("m", "file:1/model.py"), ("brandnew", "file:5/model.py"), ("m", "file:../evil.py")):
        r = http.load(name, **{"config": override, key: b64})
        assert r.status_code == 400 and key in r.json()["error"], r.text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    np.testing.assert_allclose(http.output("m")[1], X + 3)
    assert http.infer("brandnew").status_code == 404


def test_loading_a_loaded_unchanged_model_again_does_nothing(tmp_path, serve):
    """tritonserver 2.51: a load of a model that serves, unchanged on disk,
    answers 200 at once and keeps its instance. (Its first repeat after the
    initial load did reload, 1.4 s, resetting the statistics to 0: its stub
    writes __pycache__ into the version folder, which then counts as
    changed; the later repeats took 0.0 s.) anemone: 200, nothing reloaded,
    the statistics kept (docs/SERVING.md, "Model control"); a changed
    model.py is reloaded by the next load."""
    model(tmp_path, "m")
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "m")
    for _ in range(3):
        http.output("m")
    for _ in range(2):
        r = http.load("m")
        assert r.status_code == 200, r.text
    [stats] = http.get("/v2/models/m/stats").json()["model_stats"]
    assert stats["inference_count"] == 3, stats
    (tmp_path / "m" / "1" / "model.py").write_text(PLUS_VERSION.replace("OFFSET = 0.0", "OFFSET = 20.0"))
    assert http.load("m").status_code == 200
    np.testing.assert_allclose(http.output("m")[1], X + 21)


def test_two_loads_of_one_model_at_once_both_succeed(tmp_path, serve):
    """tritonserver 2.51: two clients loading a model whose initialize takes
    1.5 s at once both get 200 (the second waits for the first); meanwhile
    the index says LOADING, /ready is not 200 (400) and a request is refused
    (404 "has no available versions"). anemone: both 200, LOADING, /ready
    503, a request 503 "is loading" (docs/SERVING.md: "two clients ...
    loading one model at once both succeed")."""
    model(tmp_path, "slowinit", source=SLOW_INIT)
    http, _ = serve(tmp_path, "--model-control-mode", "explicit")
    answers = {}

    def load(i):
        answers[i] = http.load("slowinit")

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: [r.get("state") for r in http.index()] == ["LOADING"])
    assert http.get("/v2/models/slowinit/ready").status_code != 200
    assert http.infer("slowinit").status_code in (404, 503)
    for t in threads:
        t.join(30)
    assert [answers[i].status_code for i in range(2)] == [200, 200], [answers[i].text for i in range(2)]
    np.testing.assert_allclose(http.output("slowinit")[1], X * 3)


def test_an_unload_during_a_load_waits_for_it_then_unloads(tmp_path, serve):
    """tritonserver 2.51: an unload sent while the model's initialize runs
    (1.5 s) answers 200 once the load has ended, and the model ends
    unloaded (the load itself answers 200). anemone answers the unload 503
    at once and the model stays READY. docs/SERVING.md says a load of a
    loading model waits for it; it says nothing of an unload."""
    model(tmp_path, "slowinit", source=SLOW_INIT)
    http, _ = serve(tmp_path, "--model-control-mode", "explicit")
    loaded = {}
    t = threading.Thread(target=lambda: loaded.setdefault("r", http.load("slowinit")))
    t.start()
    wait_for(lambda: [r.get("state") for r in http.index()] == ["LOADING"])
    r = http.unload("slowinit")
    t.join(30)
    assert loaded["r"].status_code == 200, loaded["r"].text
    assert r.status_code == 200, r.text
    assert http.row("slowinit")["state"] != "READY"


# --- unload -------------------------------------------------------------------

def test_a_request_in_flight_finishes_when_its_model_is_unloaded(tmp_path, serve):
    """tritonserver 2.51: an unload sent while a 1.5 s request runs answers
    200 at once; the request in flight is answered (200, Y = 2X); a new
    request gets 404; finalize runs after the request ended. anemone the
    same; a load right after the unload succeeds and serves (Triton's
    reload waits for the request in flight first, anemone's does not)."""
    model(tmp_path, "slow", source=SLOW)
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "slow")
    log = tmp_path / "slow" / "log.txt"
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("r", http.infer("slow")))
    t.start()
    wait_for(lambda: log.exists() and "begin" in log.read_text())
    r = http.unload("slow")
    assert r.status_code == 200, r.text
    assert not answer, "the unload waited for the request in flight"
    assert http.infer("slow").status_code == 404
    assert http.row("slow")["state"] == "UNAVAILABLE"
    t.join(30)
    assert answer["r"].status_code == 200, answer["r"].text
    np.testing.assert_allclose(np.array(answer["r"].json()["outputs"][0]["data"], np.float32), X * 2)
    wait_for(lambda: "finalize" in log.read_text())
    notes = [line.split() for line in log.read_text().splitlines()]
    when = {what: float(t) for what, t in notes}
    assert when["end"] <= when["finalize"], notes
    assert http.load("slow").status_code == 200
    np.testing.assert_allclose(http.output("slow")[1], X * 2)


def test_unload_dependents_unloads_an_ensembles_composing_models(tmp_path, serve):
    """tritonserver 2.51, an ensemble `ens` of Python models a then b (each
    Y = X + 1): loading ens loads a and b; unloading ens leaves a and b
    READY; unloading it with `{"parameters": {"unload_dependents": true}}`
    unloads a and b too (gRPC `unload_model(..., unload_dependents=True)`
    the same). anemone the same (docs/ENSEMBLES.md)."""
    model(tmp_path, "a")
    model(tmp_path, "b")
    ensemble(tmp_path)
    http, addresses = serve(tmp_path, "--model-control-mode", "explicit")
    assert http.load("ens").status_code == 200
    assert http.rows(ready=True) == [("a", "1", "READY"), ("b", "1", "READY"), ("ens", "1", "READY")]
    np.testing.assert_allclose(http.output("ens")[1], X + 2)
    assert http.unload("ens").status_code == 200
    assert http.rows(ready=True) == [("a", "1", "READY"), ("b", "1", "READY")]
    assert http.load("ens").status_code == 200
    r = http.unload("ens", unload_dependents=True)
    assert r.status_code == 200, r.text
    assert http.rows(ready=True) == []
    assert {r["name"]: (r["state"], r["reason"]) for r in http.index()} == {
        n: ("UNAVAILABLE", "unloaded") for n in ("a", "b", "ens")}
    grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
    grpc.load_model("ens")
    assert http.rows(ready=True) == [("a", "1", "READY"), ("b", "1", "READY"), ("ens", "1", "READY")]
    grpc.unload_model("ens", unload_dependents=True)
    assert http.rows(ready=True) == []
    # Unloading what is not loaded, or not there: 200, as Triton.
    assert http.unload("ens").status_code == 200
    assert http.unload("nosuch").status_code == 200


def test_loading_an_ensemble_again_loads_its_unloaded_composing_model(tmp_path, serve):
    """tritonserver 2.51: ens (a then b) loaded, then `a` unloaded: ens is
    UNAVAILABLE and requests fail; loading ens again answers 200, loads a,
    and ens serves (Y = X + 2). docs/ENSEMBLES.md: "Loading an ensemble ...
    first loads each composing model that is not loaded, as Triton does".
    anemone answers 200 but loads nothing: ens stays UNAVAILABLE ("composing
    model 'a' ... is not loaded") and requests get 503."""
    model(tmp_path, "a")
    model(tmp_path, "b")
    ensemble(tmp_path)
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "ens")
    assert http.rows(ready=True) == [("a", "1", "READY"), ("b", "1", "READY"), ("ens", "1", "READY")]
    assert http.unload("a").status_code == 200
    assert http.infer("ens").status_code != 200
    r = http.load("ens")
    assert r.status_code == 200, r.text
    assert http.rows(ready=True) == [("a", "1", "READY"), ("b", "1", "READY"), ("ens", "1", "READY")]
    np.testing.assert_allclose(http.output("ens")[1], X + 2)


def test_model_names_with_odd_characters(tmp_path, serve):
    """Folders named `with space`, `dot.name`, `dash-name`, `ünï`,
    `plus+sign`, `pct%41`, loaded and called with their names
    percent-encoded in the URL. tritonserver 2.51 serves `dot.name` and
    `dash-name` only: its HTTP server does not decode the path, so the
    others answer 500 "failed to load 'with%20space', failed to poll" (and
    404 for requests). Over gRPC, its Python backend fails `ünï` (400,
    UnicodeEncodeError in the stub) and loading `with space` aborted the
    whole server ("terminate called ... std::invalid_argument: stol").
    anemone decodes the path and serves them all over HTTP and gRPC, the
    index listing the folder names."""
    names = ["with space", "dot.name", "dash-name", "ünï", "plus+sign", "pct%41"]
    for name in names:
        model(tmp_path, name)
    http, addresses = serve(tmp_path, "--model-control-mode", "explicit")
    for name in names:
        r = http.load(name)
        assert r.status_code == 200, (name, r.text)
        version, y = http.output(name)
        np.testing.assert_allclose(y, X + 1)
    assert sorted(r["name"] for r in http.index(ready=True)) == sorted(names)
    grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
    for name in names:
        grpc.unload_model(name)
        assert not grpc.is_model_ready(name)
        grpc.load_model(name)
        assert grpc.is_model_ready(name)
        x = grpcclient.InferInput("X", list(X.shape), "FP32")
        x.set_data_from_numpy(X)
        np.testing.assert_allclose(grpc.infer(name, [x]).as_numpy("Y"), X + 1)


# --- control modes and --load-model ---------------------------------------------

def test_none_mode_loads_everything_and_refuses_the_api(tmp_path, serve):
    """tritonserver 2.51, `--model-control-mode none`: every model loads at
    start (a failing one UNAVAILABLE with its reason, the server not ready:
    400); load and unload answer 503 "explicit model load / unload is not
    allowed if polling is enabled". anemone: the same, 503 saying to start
    with --model-control-mode explicit (docs/SERVING.md's table)."""
    model(tmp_path, "a")
    model(tmp_path, "boom", source=RAISES)
    http, _ = serve(tmp_path, "--model-control-mode", "none", ready=False)
    wait_for(lambda: all(r.get("state") in ("READY", "UNAVAILABLE") for r in http.index()))
    assert http.rows() == [("a", "1", "READY"), ("boom", "1", "UNAVAILABLE")]
    assert "kaboom in init" in http.row("boom")["reason"]
    assert http.get("/v2/health/ready").status_code != 200
    for r in (http.load("a"), http.unload("a")):
        assert r.status_code == 503 and "explicit" in r.json()["error"], r.text
    np.testing.assert_allclose(http.output("a")[1], X + 1)


def test_load_model_star_and_names(tmp_path, serve):
    """tritonserver 2.51, explicit mode: `--load-model '*'` loads every model
    (listening only once they have loaded); `--load-model a` loads a alone.
    anemone: the same, listening first while they load (docs/SERVING.md).
    `--load-model a,b` is one name in both: Triton loads nothing for it (and
    is ready); anemone lists it UNAVAILABLE, not in the repository, and is
    not ready (documented: a --load-model typo)."""
    for name in ("a", "b"):
        model(tmp_path, name)
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "*")
    assert http.rows() == [("a", "1", "READY"), ("b", "1", "READY")]
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "a")
    assert http.rows() == [("a", "1", "READY"), ("b", "", "")]
    http, _ = serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "a,b", ready=False)
    wait_for(lambda: http.rows("a,b") == [("a,b", "", "UNAVAILABLE")])
    assert http.get("/v2/health/ready").status_code != 200
    assert http.rows("a") == [("a", "", "")]


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_load_model_needs_explicit_mode(tmp_path, mode):
    """tritonserver 2.51 with `--model-control-mode none` (or poll) and
    `--load-model a` exits at once with status 1: "Error: Use of
    '--load-model' requires setting '--model-control-mode=explicit' as
    well." docs/FROM_TRITON.md lists --load-model as "the same". anemone
    starts and loads every model, so an operator who forgot the mode serves
    the whole repository."""
    model(tmp_path, "a")
    binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
    proc = subprocess.Popen(
        [str(binary), "serve", "--model-repository", str(tmp_path), "--http-port", "0", "--grpc-port", "0",
         "--model-control-mode", mode, "--load-model", "a", "--exit-timeout-secs", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, ANEMONE_PYTHON=sys.executable))
    try:
        status = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=30)
        raise AssertionError(f"anemone serve --model-control-mode {mode} --load-model a started")
    assert status != 0
    assert "explicit" in proc.stderr.read()


def test_poll_mode_follows_the_repository(tmp_path, serve):
    """tritonserver 2.51, `--model-control-mode poll --repository-poll-secs
    1`, load/unload answered 503. While serving: a new version folder 2 of m
    (latest 1) is served within a few polls and version 1 goes; a config
    changed to `version_policy { all { } }` serves both versions; a deleted
    model is unloaded (requests 404); a new model whose model.py has a
    syntax error is UNAVAILABLE with the SyntaxError (the server not ready);
    a new version 3 that does not import leaves version 2 serving. anemone
    the same (docs/SERVING.md: poll "new or changed models are (re)loaded,
    removed ones unloaded"), within a poll or two; its index shows the
    failed version 3 as the reason on version 2's READY row, where Triton
    adds a row (3, UNAVAILABLE)."""
    model(tmp_path, "m")
    model(tmp_path, "cfg", versions=(1, 2))
    model(tmp_path, "gone")
    http, _ = serve(tmp_path, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    assert http.rows() == [("cfg", "2", "READY"), ("gone", "1", "READY"), ("m", "1", "READY")]
    for r in (http.load("m"), http.unload("m")):
        assert r.status_code == 503 and "poll" in r.json()["error"], r.text
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "model.py").write_text(PLUS_VERSION)
    (tmp_path / "cfg" / "config.pbtxt").write_text(CONFIG + "version_policy: { all { } }\n")
    shutil.rmtree(tmp_path / "gone")
    model(tmp_path, "newbad", source=SYNTAX_ERROR)
    wait_for(lambda: http.rows("m") == [("m", "2", "READY")]
             and http.rows("cfg") == [("cfg", "1", "READY"), ("cfg", "2", "READY")]
             and http.rows("gone") == []
             and http.rows("newbad") == [("newbad", "1", "UNAVAILABLE")])
    assert http.output("m")[0] == "2"
    np.testing.assert_allclose(http.output("m")[1], X + 2)
    np.testing.assert_allclose(http.output("cfg", "1")[1], X + 1)
    assert http.infer("gone").status_code == 404
    assert "SyntaxError" in http.row("newbad")["reason"]
    assert http.get("/v2/health/ready").status_code != 200
    (tmp_path / "m" / "3").mkdir()
    (tmp_path / "m" / "3" / "model.py").write_text(SYNTAX_ERROR)
    wait_for(lambda: "SyntaxError" in http.row("m").get("reason", ""))
    assert http.rows("m") == [("m", "2", "READY")]
    np.testing.assert_allclose(http.output("m")[1], X + 2)
