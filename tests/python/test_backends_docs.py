"""Backends as docs/BACKENDS.md and docs/CONFORMANCE.md describe them (with
what they point to in README.md and docs/SERVING.md), tested as a user
choosing how models run on this Linux machine without a GPU: which backends
exist and what `anemone doctor` says of them, the default preference order,
per-model `backends`/`strict`, `auto` timing, fallback at load and at run
time, ONNX Runtime's session options and their effect (threads, graph
optimization, arena), tract against ONNX Runtime's Python API within the
documented tolerances, the conformance claims (the ONNX node-test cases run
through `anemone infer`), `inspect`/`infer` on the models the docs show,
Core ML / Metal / CUDA refusing cleanly here, and external data files.

test_cli_docs.py (session 37) already covers: `models --backends auto`,
a backend not built skipped, strict vs ordered on `Det`, `infer`/`inspect`
taking the flags, `--backends auto --strict` refused for infer, unknown
backend names, index/metadata/metrics of a selection, strict at run time
on a Gather model, bad input never moving a model, re-timing. This file
aims at the rest.

Models are built here with the `onnx` package; numbers are compared with
ONNX Runtime's Python API or the node-test suite's stored references. A
test marked xfail(strict) is a place where the program does not do what
the documents say."""
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
from onnx import TensorProto as T
from onnx import helper
from onnx import numpy_helper as nh

from serve_support import ROOT

BIN = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
ADD = ROOT / "examples/models/add/1/model.onnx"
FIXTURES = ROOT / "fixtures/generated"
NODE = Path(onnx.__file__).parent / "backend/test/data/node"
CONFORMANCE = ROOT / "crates/anemone-runtime/tests/conformance"
DOCS = ROOT / "docs"
TIERS = ["neural-engine", "gpu", "optimised-cpu", "portable-cpu"]
ORT_LIB = os.environ.get("ORT_DYLIB_PATH", str(ROOT / "third_party/onnxruntime/lib/libonnxruntime.so.1.31.1"))
MACOS = "Core ML needs macOS"


# ---------------------------------------------------------------- helpers


def anemone(*args, env=None, timeout=60):
    full = dict(os.environ)
    full.setdefault("ORT_DYLIB_PATH", ORT_LIB)
    full.update(env or {})
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=full)


def save(path, nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def params(**kv):
    return "".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in kv.items())


def pinned(backend, **kv):
    return params(backends=backend, strict="true", **kv)


def add_model(repo, name, config=None):
    path = save(repo / name / "1/model.onnx", [helper.make_node("Add", ["x", "y"], ["z"])],
                [("x", T.FLOAT, ["b", 4]), ("y", T.FLOAT, ["b", 4])], [("z", T.FLOAT, ["b", 4])])
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)
    return path


def fold_model(path):
    """y = x + sum((C @ C) @ C), C a constant 1024x1024 from ConstantOfShape:
    with graph optimizations on, ONNX Runtime folds the 2 GFLOP of constant
    products at load; with them off, every call computes them."""
    shape = helper.make_tensor("shp", T.INT64, [2], [1024, 1024])
    fill = helper.make_tensor("v", T.FLOAT, [1], [0.001])
    return save(path, [helper.make_node("ConstantOfShape", ["shp"], ["c"], value=fill),
                       helper.make_node("MatMul", ["c", "c"], ["p"]), helper.make_node("MatMul", ["p", "c"], ["p2"]),
                       helper.make_node("ReduceSum", ["p2"], ["r"], keepdims=0), helper.make_node("Add", ["x", "r"], ["y"])],
                [("x", T.FLOAT, [1])], [("y", T.FLOAT, [1])], [shape])


BIG = 64 * 1024 * 1024


def big_model(path):
    """sum(expand(x)^2) over 64 Mi floats: 256 MiB temporaries per call."""
    return save(path, [helper.make_node("Expand", ["x", "shp"], ["e"]), helper.make_node("Mul", ["e", "e"], ["m"]),
                       helper.make_node("ReduceSum", ["m"], ["y"], keepdims=0)],
                [("x", T.FLOAT, [1])], [("y", T.FLOAT, [])], [helper.make_tensor("shp", T.INT64, [1], [BIG])])


def alloc_model(path):
    """y = x * sum(ones(n)): `n` (a scalar) sets how much the engine
    allocates. tract plans it per input shape (x's dimension is dynamic,
    and the scalar n is part of the plan key); n = 10**12 makes ONNX
    Runtime fail with std::bad_alloc, an engine fault, not bad input."""
    fill = helper.make_tensor("v", T.FLOAT, [1], [1.0])
    return save(path, [helper.make_node("Unsqueeze", ["n", "ax"], ["s"]),
                       helper.make_node("ConstantOfShape", ["s"], ["c"], value=fill),
                       helper.make_node("ReduceSum", ["c"], ["r"], keepdims=0), helper.make_node("Mul", ["x", "r"], ["y"])],
                [("n", T.INT64, []), ("x", T.FLOAT, ["N"])], [("y", T.FLOAT, ["N"])],
                [helper.make_tensor("ax", T.INT64, [1], [0])])


def variable_alloc_model(path):
    """The same with `n` a 1-D tensor: tract cannot prepare it at all
    ("shape input is variable"), only ONNX Runtime loads it."""
    fill = helper.make_tensor("v", T.FLOAT, [1], [1.0])
    return save(path, [helper.make_node("ConstantOfShape", ["s"], ["c"], value=fill),
                       helper.make_node("ReduceSum", ["c"], ["y"], keepdims=0)], [("s", T.INT64, [1])], [("y", T.FLOAT, [])])


def pow_uint32_model(path):
    """Pow with a uint32 exponent: ONNX Runtime's CPU kernels lack it
    (CONFORMANCE.md: "type combinations its CPU kernels lack (e.g. `Pow`"),
    tract runs it."""
    return save(path, [helper.make_node("Pow", ["x", "e"], ["y"])], [("x", T.FLOAT, [3]), ("e", T.UINT32, [3])],
                [("y", T.FLOAT, [3])], opset=15)


def reshape_by_input_model(path):
    """Reshape of x [n] by the input `s`: the synthetic warm-up (dynamic
    dimensions 1, integers 0) fails on every engine."""
    return save(path, [helper.make_node("Reshape", ["x", "s"], ["y"])], [("x", T.FLOAT, ["n"]), ("s", T.INT64, [2])],
                [("y", T.FLOAT, ["a", "b"])])


W_EXT = (np.arange(64 * 64, dtype=np.float32).reshape(64, 64) - 2000) / 1000


def external_model(path, location, data_at=None):
    """y = x @ W with W kept in an external data file at `location`
    (relative to the model), written to `data_at` (relative) if given."""
    w = onnx.TensorProto(name="w", data_type=T.FLOAT, dims=[64, 64])
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in [("location", location), ("offset", "0"), ("length", str(W_EXT.nbytes))]:
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "m",
                              [helper.make_tensor_value_info("x", T.FLOAT, ["b", 64])],
                              [helper.make_tensor_value_info("y", T.FLOAT, ["b", 64])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    if data_at is not None:
        target = path.parent / data_at
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(W_EXT.tobytes())
    return path


class Server:
    """`anemone serve` on free ports; stderr kept in a file."""

    def __init__(self, tmp, repo, *flags):
        self.err_path = Path(tmp) / f"serve-{time.monotonic_ns()}.err"
        env = dict(os.environ)
        env.setdefault("ORT_DYLIB_PATH", ORT_LIB)
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
             "--metrics-port", "0", "--exit-timeout-secs", "5", *map(str, flags)],
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        addr = {}
        while len(addr) < 2:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                self.err.close()
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.err_path.read_text()}")
            kind, _, rest = line.partition(" listening on ")
            if rest:
                addr[kind] = rest.strip()
        self.http = "http://" + addr["HTTP"]
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                index = requests.post(self.http + "/v2/repository/index", timeout=5).json()
                if "--model-control-mode" in flags or (
                        index and all(m.get("state") in ("READY", "UNAVAILABLE") for m in index)):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)

    def index(self):
        return {m["name"]: m for m in requests.post(self.http + "/v2/repository/index", timeout=10).json()}

    def metadata(self, model):
        return requests.get(f"{self.http}/v2/models/{model}", timeout=10).json()

    def metrics(self):
        return [l for l in requests.get(self.http + "/metrics", timeout=10).text.splitlines() if not l.startswith("#")]

    def infer(self, model, inputs):
        return requests.post(f"{self.http}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=60)

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode


def fp32(name, array):
    array = np.asarray(array, np.float32)
    return {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.flatten().tolist()}


def models_json(repo, *flags):
    out = anemone("models", "--model-repository", repo, "--json", *flags)
    return out, {m["name"]: m for m in json.loads(out.stdout)}


def inspect_json(model, *flags):
    out = anemone("inspect", model, "--json", *flags)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def infer_npy(tmp, model, inputs, *flags):
    """`anemone infer MODEL -i name=file ...`: (process, {output: array})."""
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    args = []
    for name, value in inputs.items():
        f = tmp / f"in_{len(args)}.npy"
        np.save(f, value)
        args += ["-i", f"{name}={f}"]
    out_dir = tmp / "out"
    proc = anemone("infer", model, *args, "-d", out_dir, "--json", *flags)
    outputs = {}
    if proc.returncode == 0:
        for o in json.loads(proc.stdout)["outputs"]:
            outputs[o["name"]] = np.load(o["file"])
    return proc, outputs


# ------------------------------------------------------- doctor and the default order


def test_doctor_lists_every_documented_backend_in_tier_order():
    """BACKENDS.md: each backend declares a tier; default_backends() orders the
    built-in ones by tier (Neural Engine, GPU, ONNX Runtime CPU, tract CPU);
    the table's tiers: coreml neural-engine, onnxruntime optimised-cpu,
    tract-cpu and python portable-cpu; `doctor` lists them, each available
    or not with the reason; the PyPI wheel's probe names its providers."""
    out = anemone("doctor", "--json")
    assert out.returncode == 0, out.stderr
    backends = json.loads(out.stdout)["backends"]
    names = [b["name"] for b in backends]
    assert set(names) == {"coreml", "tract-cuda", "tract-metal", "onnxruntime", "tract-cpu", "python"}, names
    built = [b for b in backends if b["tier"] in TIERS]
    assert [b["name"] for b in built][:3] == ["coreml", "onnxruntime", "tract-cpu"], built
    ranks = [TIERS.index(b["tier"]) for b in built]
    assert ranks == sorted(ranks), f"not in tier order: {[(b['name'], b['tier']) for b in built]}"
    tiers = {b["name"]: b["tier"] for b in built}
    assert tiers == {"coreml": "neural-engine", "onnxruntime": "optimised-cpu", "tract-cpu": "portable-cpu",
                     "python": "portable-cpu"}, tiers
    ort_entry = next(b for b in backends if b["name"] == "onnxruntime")
    assert ort_entry["status"] == "available"
    assert ("execution providers in this library: CPU (not CUDA or TensorRT: install an onnxruntime-gpu "
            "build for them)") in ort_entry["detail"], ort_entry
    for b in backends:
        assert b["status"] in ("available", "unavailable"), b
        assert b.get("reason") if b["status"] == "unavailable" else b.get("detail"), b
    text = anemone("doctor").stdout
    assert "backends (in default order of preference)" in text
    assert text.index("coreml") < text.index("onnxruntime  ") < text.index("tract-cpu  ")


@pytest.mark.parametrize("lib, words", [
    ("/nonexistent/libonnxruntime.so.1.31.1", ["not found", "/nonexistent/libonnxruntime.so.1.31.1",
                                               "scripts/install-onnxruntime.sh", "ORT_DYLIB_PATH"]),
    ("/lib/x86_64-linux-gnu/libz.so.1", ["cannot load ONNX Runtime", "OrtGetApiBase", "1.31"]),
])
def test_a_missing_or_wrong_onnxruntime_library_is_reported_and_tract_serves(tmp_path, lib, words):
    """BACKENDS.md: the library is ORT_DYLIB_PATH if set; when it is missing or
    cannot be loaded, probe() says so and how to fix it; nothing panics; the
    backend is skipped and the others serve."""
    if not Path(lib).exists() and "nonexistent" not in lib:
        pytest.skip(f"{lib} is not on this machine")
    env = {"ORT_DYLIB_PATH": lib}
    doctor = anemone("doctor", "--json", env=env)
    assert doctor.returncode == 0, doctor.stderr
    entry = next(b for b in json.loads(doctor.stdout)["backends"] if b["name"] == "onnxruntime")
    assert entry["status"] == "unavailable"
    for word in words:
        assert word in entry["reason"], (word, entry)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x * 3)
    proc = anemone("infer", ADD, "-i", f"x={tmp_path / 'x.npy'}", "-i", f"y={tmp_path / 'y.npy'}",
                   "-d", tmp_path / "o", "--json", env=env)
    assert proc.returncode == 0 and "panicked" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "tract-cpu"
    assert np.array_equal(np.load(tmp_path / "o/sum.npy"), x * 4)


def test_default_order_times_both_cpu_engines_and_the_faster_serves():
    """BACKENDS.md, ordered mode: with the default order, when the selection
    reaches the CPU engines and more than one can load the model, each gets
    the auto-mode warm-up and the faster serves; README: `inspect` prints the
    selection the default order would make."""
    sel = inspect_json(ADD)["selection"]
    assert sel["mode"] == "ordered"
    attempts = {a["backend"]: a for a in sel["attempts"]}
    assert set(attempts) == {"onnxruntime", "tract-cpu"}, sel
    assert all(a["warmup_us"] > 0 for a in attempts.values()), sel
    fastest = min(attempts, key=lambda b: attempts[b]["warmup_us"])
    assert sel["backend"] == fastest and attempts[fastest]["outcome"] == "chosen", sel
    (slower,) = set(attempts) - {fastest}
    assert attempts[slower]["outcome"] == "slower", sel
    text = anemone("inspect", ADD).stdout
    assert re.search(rf"on {fastest} \(fastest CPU engine, warm-up median: .*; standing by: {slower}", text), text


# ------------------------------------------------------- Core ML, Metal, CUDA here


@pytest.mark.parametrize("alias", ["coreml", "coreml-ane", "coreml-gpu", "coreml-cpu", "coreml-all"])
def test_coreml_and_its_aliases_are_skipped_here_with_the_macos_reason(tmp_path, alias):
    """BACKENDS.md: `coreml-ane`, `coreml-gpu`, `coreml-cpu`, `coreml-all` are
    `coreml` with that compute-units setting; coreml is built everywhere and
    on Linux its probe says "Core ML needs macOS": skipped with the reason
    in ordered mode, the model UNAVAILABLE with it in strict mode."""
    repo = tmp_path / "repo"
    add_model(repo, "ordered", params(backends=f"{alias},tract-cpu"))
    add_model(repo, "strict", pinned(alias))
    out, by_name = models_json(repo)
    assert out.returncode == 1, out.stderr
    ordered = by_name["ordered"]
    assert ordered["state"] == "READY" and ordered["backend"] == "tract-cpu"
    first = ordered["selection"]["attempts"][0]
    assert first["backend"] == alias and first["outcome"] == "skipped" and MACOS in first["reason"], first
    strict = by_name["strict"]
    assert strict["state"] == "UNAVAILABLE" and MACOS in strict["reason"] and alias in strict["reason"], strict


@pytest.mark.parametrize("backend, words", [
    ("tract-cuda", ["not built into this binary: it needs Linux and the cargo feature `cuda`"]),
    ("tract-metal", ["not built into this binary", "`metal`"]),
])
def test_gpu_backends_not_built_make_a_strict_model_unavailable_with_the_reason(tmp_path, backend, words):
    """BACKENDS.md: a backend anemone knows but this binary lacks is skipped
    with "not built into this binary: it needs Linux and the cargo feature
    `cuda`"; strict: the model fails to load with that candidate's error."""
    repo = tmp_path / "repo"
    add_model(repo, "m", pinned(backend))
    out, by_name = models_json(repo)
    assert out.returncode == 1
    assert by_name["m"]["state"] == "UNAVAILABLE"
    for word in words:
        assert word in by_name["m"]["reason"], by_name["m"]


def test_a_core_ml_file_is_described_here_but_no_backend_runs_it():
    """BACKENDS.md/README: Core ML files are described on every system; off
    macOS the coreml probe says Core ML needs macOS; the ONNX engines do not
    take the format; inspect's selection says no backend can run it."""
    package = FIXTURES / "coreml/program_ranges.mlpackage"
    report = inspect_json(package)
    assert report["format"] == "coreml"
    backends = {b["name"]: b for b in report["backends"]}
    assert backends["coreml"]["supports"] is True and MACOS in backends["coreml"]["probe"]["reason"]
    for engine in ("onnxruntime", "tract-cpu"):
        assert backends[engine]["supports"] is False and "not coreml models" in backends[engine]["reason"]
    assert "no backend can run" in report["selection"]["error"] and MACOS in report["selection"]["error"]
    assert [i["name"] for i in report["inputs"]] == ["x"] and report["inputs"][0]["shape"] == [-1, 4]


# ------------------------------------------------------- the server-wide list


@pytest.mark.parametrize("flags, words", [
    (["--backends", "tract-cpu,onnxruntime,tract-cpu"], ["tract-cpu", "twice"]),
    (["--backends", "auto", "--strict"], ["--backends auto and --strict together"]),
])
def test_serve_does_not_start_with_a_bad_server_wide_list(tmp_path, flags, words):
    """BACKENDS.md: the server does not start for a server-wide list that names
    a backend twice, or `--backends auto` with `--strict`."""
    repo = tmp_path / "repo"
    add_model(repo, "add")
    out = anemone("serve", "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
                  "--metrics-port", "0", *flags, timeout=30)
    assert out.returncode != 0
    assert "listening" not in out.stdout
    for word in words:
        assert word in out.stderr, (word, out.stderr)


# ------------------------------------------------------- per-model settings at load


def test_settings_are_checked_by_key_and_value_whatever_backend_serves(tmp_path):
    """SERVING.md `<backend>.<key>`: a key that backend does not read is
    refused with the list; a value that backend would refuse fails the load
    with what it accepts (not only that backend's candidate: here tract-cpu,
    first in the list, could have served); `onnxruntime.inter_threads` 1 to
    4 x the logical cores; `intra_op_thread_count` beside a different
    `threads` is refused."""
    cores = os.cpu_count()
    repo = tmp_path / "repo"
    add_model(repo, "badkey", params(**{"onnxruntime.fancy": "on"}))
    add_model(repo, "badopt", params(backends="tract-cpu,onnxruntime", **{"onnxruntime.optimization": "max"}))
    add_model(repo, "inter", params(**{"onnxruntime.inter_threads": str(4 * cores + 1)}))
    add_model(repo, "arena", params(**{"onnxruntime.mem_arena": "maybe"}))
    add_model(repo, "clash", params(threads="2", intra_op_thread_count="1"))
    add_model(repo, "good", params(**{"onnxruntime.inter_threads": str(4 * cores), "onnxruntime.optimization": "basic"}))
    out, by_name = models_json(repo)
    assert out.returncode == 1
    reason = {n: m["reason"] or "" for n, m in by_name.items()}
    assert by_name["good"]["state"] == "READY", by_name["good"]
    assert "unknown parameter 'onnxruntime.fancy'" in reason["badkey"]
    assert "onnxruntime.mem_arena" in reason["badkey"] and "onnxruntime.optimization" in reason["badkey"]
    assert 'onnxruntime.optimization is "max"; set off, basic, extended or all' in reason["badopt"]
    assert f"from 1 to {4 * cores}" in reason["inter"]
    assert "onnxruntime.mem_arena" in reason["arena"] and "maybe" in reason["arena"]
    assert "intra_op_thread_count" in reason["clash"] and "threads" in reason["clash"]
    for name in ("badkey", "badopt", "inter", "arena", "clash"):
        assert by_name[name]["state"] == "UNAVAILABLE", by_name[name]


def test_settings_of_an_engine_that_does_not_serve_are_named_in_a_warning(tmp_path):
    """SERVING.md: a model that ends up on another backend logs a warning at
    load naming its settings that do not apply there."""
    repo = tmp_path / "repo"
    add_model(repo, "m", params(backends="tract-cpu", **{"onnxruntime.mem_arena": "on"}))
    out, by_name = models_json(repo)
    assert out.returncode == 0 and by_name["m"]["backend"] == "tract-cpu"
    assert "onnxruntime.mem_arena do not apply" in out.stderr and "tract-cpu" in out.stderr, out.stderr


def test_gpu_providers_asked_of_a_cpu_only_onnxruntime_run_on_cpu_with_a_warning(tmp_path):
    """SERVING.md: a `gpu_execution_accelerator` `cuda` where the ONNX Runtime
    library has no such provider: the model runs on the providers it has
    and the load logs a warning naming the missing provider; BACKENDS.md:
    `onnxruntime.cuda` on/off; `INT8` TensorRT precision is refused."""
    repo = tmp_path / "repo"
    add_model(repo, "acc", pinned("onnxruntime") +
              'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "cuda" } ] } }\n')
    add_model(repo, "cudaon", pinned("onnxruntime", **{"onnxruntime.cuda": "on"}))
    add_model(repo, "int8", pinned("onnxruntime") +
              'optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt"\n'
              '  parameters { key: "precision_mode" value: "INT8" } } ] } }\n')
    out, by_name = models_json(repo)
    for name in ("acc", "cudaon"):
        assert by_name[name]["state"] == "READY" and by_name[name]["backend"] == "onnxruntime", by_name[name]
    warnings = [l for l in out.stderr.splitlines() if "WARN" in l and "no such provider" in l]
    assert len(warnings) >= 2 and all("cuda" in l.lower() for l in warnings), out.stderr
    assert by_name["int8"]["state"] == "UNAVAILABLE" and "INT8" in by_name["int8"]["reason"], by_name["int8"]


# ------------------------------------------------------- fallback at load


def test_an_operator_onnxruntime_lacks_falls_through_to_tract(tmp_path):
    """BACKENDS.md: a candidate whose load fails (an unsupported operator,
    dtype or shape: the engine's error) is skipped with the reason and the
    next serves; CONFORMANCE.md: ONNX Runtime lacks e.g. Pow on some type
    combinations. The answer is checked against numpy."""
    model = pow_uint32_model(tmp_path / "pow.onnx")
    sel = inspect_json(model, "--backends", "onnxruntime,tract-cpu")["selection"]
    assert sel["backend"] == "tract-cpu", sel
    skipped = sel["attempts"][0]
    assert skipped["backend"] == "onnxruntime" and skipped["outcome"] == "skipped"
    assert "Could not find an implementation for Pow" in skipped["reason"], skipped
    x = np.array([1.5, -2.0, 3.25], np.float32)
    e = np.array([2, 3, 0], np.uint32)
    proc, outs = infer_npy(tmp_path / "run", model, {"x": x, "e": e}, "--backends", "onnxruntime,tract-cpu")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == "tract-cpu"
    np.testing.assert_allclose(outs["y"], x ** e.astype(np.float32), rtol=1e-6)
    strict = anemone("infer", model, "-i", f"x={tmp_path / 'run/in_0.npy'}", "-i", f"e={tmp_path / 'run/in_2.npy'}",
                     "--backends", "onnxruntime,tract-cpu", "--strict", "-d", tmp_path / "o")
    assert strict.returncode == 1 and "Pow" in strict.stderr, strict.stderr


# ------------------------------------------------------- auto mode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server over models for auto mode, run-time fallback and ONNX
    Runtime's graph optimization levels."""
    tmp = tmp_path_factory.mktemp("served")
    repo = tmp / "repo"
    add_model(repo, "auto", params(backends="auto"))
    reshape_by_input_model(repo / "reshape/1/model.onnx")
    (repo / "reshape/config.pbtxt").write_text(params(backends="auto"))
    alloc_model(repo / "alloc/1/model.onnx")
    (repo / "alloc/config.pbtxt").write_text(params(backends="onnxruntime,tract-cpu"))
    alloc_model(repo / "alloc_strict/1/model.onnx")
    (repo / "alloc_strict/config.pbtxt").write_text(params(backends="onnxruntime,tract-cpu", strict="true"))
    variable_alloc_model(repo / "alloc_nowhere/1/model.onnx")
    (repo / "alloc_nowhere/config.pbtxt").write_text(params(backends="onnxruntime,tract-cpu"))
    for name, extra in [("fold_all", params()), ("fold_off", params(**{"onnxruntime.optimization": "off"})),
                        ("fold_basic", params(**{"onnxruntime.optimization": "basic"})),
                        ("fold_triton_off", "optimization { graph { level: 2 } }\n"),
                        ("fold_triton_basic", "optimization { graph { level: -1 } }\n")]:
        fold_model(repo / name / "1/model.onnx")
        (repo / name / "config.pbtxt").write_text(pinned("onnxruntime") + extra)
    server = Server(tmp, repo)
    yield server
    assert server.stop() == 0, "anemone serve must exit 0 on SIGTERM"


def test_auto_in_a_config_times_every_candidate_and_the_fastest_serves(served):
    """BACKENDS.md auto mode (`backends` = `auto`): every candidate that loads
    is timed on a warm-up, the fastest serves; over HTTP `backend_selection`
    lists every candidate with its outcome and `warmup_us`; `platform` is
    the serving backend; metrics carry mode="auto"."""
    meta = served.metadata("auto")
    sel = meta["backend_selection"]
    assert sel["mode"] == "auto"
    attempts = {a["backend"]: a for a in sel["attempts"]}
    assert set(attempts) == {"onnxruntime", "tract-cpu"}, sel
    assert all(a["warmup_us"] > 0 for a in attempts.values()), sel
    fastest = min(attempts, key=lambda b: attempts[b]["warmup_us"])
    assert meta["platform"] == fastest and attempts[fastest]["outcome"] == "chosen", sel
    assert {a["outcome"] for b, a in attempts.items() if b != fastest} <= {"standby", "slower"}, sel
    assert f'anemone_model_backend{{model="auto",version="1",backend="{fastest}",mode="auto"}} 1' in served.metrics()
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 3
    answer = served.infer("auto", [fp32("x", x), fp32("y", x * 2)])
    assert answer.status_code == 200
    np.testing.assert_allclose(np.array(answer.json()["outputs"][0]["data"]).reshape(2, 4), x * 3, rtol=1e-6)


def test_auto_whose_synthetic_warm_up_fails_everywhere_still_serves_on_the_first_that_loaded(served):
    """BACKENDS.md auto mode: "A model whose synthetic warm-up fails everywhere
    (inputs that must hold real values) still serves on the first candidate
    that loaded". Real requests are answered as ONNX Runtime's Python API
    answers them."""
    index = served.index()["reshape"]
    assert index["state"] == "READY", index
    meta = served.metadata("reshape")
    assert meta["platform"] == "onnxruntime", meta
    chosen = [a for a in meta["backend_selection"]["attempts"] if a["outcome"] == "chosen"]
    assert [a["backend"] for a in chosen] == ["onnxruntime"] and "warmup_us" not in chosen[0], meta
    x = np.arange(6, dtype=np.float32)
    answer = served.infer("reshape", [fp32("x", x), {"name": "s", "shape": [2], "datatype": "INT64", "data": [3, 2]}])
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    want = ort.InferenceSession(str(served_repo(served) / "reshape/1/model.onnx")).run(
        None, {"x": x, "s": np.array([3, 2], np.int64)})[0]
    assert out["shape"] == list(want.shape) and np.array_equal(np.array(out["data"], np.float32).reshape(want.shape), want)


def served_repo(server):
    return Path(server.proc.args[3])


def test_auto_says_when_the_engine_serving_was_never_timed(served):
    """BACKENDS.md auto mode: such a model "still serves on the first candidate
    that loaded, and says so": the selection (metadata or index summary)
    must tell that the serving engine's warm-up failed too."""
    meta = served.metadata("reshape")
    chosen = next(a for a in meta["backend_selection"]["attempts"] if a["outcome"] == "chosen")
    # the index summary's part about the serving engine, before "; skipped ..."
    serving = (served.index()["reshape"]["reason"] or "").split(";")[0]
    assert "warm-up median: )" not in serving, f"an empty list of medians instead of saying so: {serving!r}"
    assert "fail" in serving or "fail" in chosen.get("reason", ""), (serving, chosen)


# ------------------------------------------------------- fallback at run time


def _alloc(n, x=(1.0, 2.0)):
    return [{"name": "n", "shape": [], "datatype": "INT64", "data": [n]}, fp32("x", x)]


def _fallbacks(server, model):
    return [l for l in server.metrics() if l.startswith("anemone_backend_fallbacks_total") and f'model="{model}"' in l]


def test_engine_faults_move_a_model_to_the_next_candidate_after_five_not_four(served):
    """BACKENDS.md "Moving on": a model leaves its backend for the next standby
    candidate when backend errors reach half of the recent requests with at
    least 5 errors; errors about memory stay backend faults. Each move is
    counted in anemone_backend_fallbacks_total{model,from,to,reason} with
    reason error_rate; the selection says where it came from. The model
    then answers correctly on the new engine."""
    assert served.infer("alloc", _alloc(3)).status_code == 200
    assert served.metadata("alloc")["platform"] == "onnxruntime"
    for _ in range(4):
        answer = served.infer("alloc", _alloc(10 ** 12))
        assert answer.status_code >= 500 and "bad_alloc" in answer.text, answer.text
    time.sleep(0.5)
    assert served.metadata("alloc")["platform"] == "onnxruntime", "moved after 4 errors, the policy says 5"
    assert not _fallbacks(served, "alloc")
    assert served.infer("alloc", _alloc(10 ** 12)).status_code >= 500
    deadline = time.time() + 20
    while served.metadata("alloc")["platform"] != "tract-cpu" and time.time() < deadline:
        time.sleep(0.1)
    meta = served.metadata("alloc")
    assert meta["platform"] == "tract-cpu", meta
    assert meta["backend_selection"]["fallback_from"]["from"] == "onnxruntime"
    assert meta["backend_selection"]["fallback_from"]["reason"] == "error_rate"
    assert _fallbacks(served, "alloc") == [
        'anemone_backend_fallbacks_total{model="alloc",from="onnxruntime",to="tract-cpu",reason="error_rate"} 1']
    assert "fell back from onnxruntime" in served.index()["alloc"]["reason"]
    answer = served.infer("alloc", _alloc(7, (0.5, -2.0, 4.0)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [3.5, -14.0, 28.0]


def test_strict_mode_keeps_its_engine_through_engine_faults(served):
    """BACKENDS.md: strict mode turns all of run-time fallback off."""
    for _ in range(7):
        assert served.infer("alloc_strict", _alloc(10 ** 12)).status_code >= 500
    time.sleep(0.5)
    assert served.metadata("alloc_strict")["platform"] == "onnxruntime"
    assert not _fallbacks(served, "alloc_strict")
    answer = served.infer("alloc_strict", _alloc(2))
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [2.0, 4.0]


def test_when_no_candidate_can_take_it_the_model_stays_and_to_is_none(served):
    """BACKENDS.md: "If no candidate can take it, the model stays where it
    is"; accounting: `to="none"` when nothing could take it."""
    for _ in range(7):
        answer = served.infer("alloc_nowhere", [{"name": "s", "shape": [1], "datatype": "INT64", "data": [10 ** 12]}])
        assert answer.status_code >= 500
    deadline = time.time() + 20
    while not _fallbacks(served, "alloc_nowhere") and time.time() < deadline:
        time.sleep(0.1)
    assert _fallbacks(served, "alloc_nowhere") == [
        'anemone_backend_fallbacks_total{model="alloc_nowhere",from="onnxruntime",to="none",reason="error_rate"} 1']
    assert served.metadata("alloc_nowhere")["platform"] == "onnxruntime"
    answer = served.infer("alloc_nowhere", [{"name": "s", "shape": [1], "datatype": "INT64", "data": [10]}])
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [10.0]


# ------------------------------------------------------- ONNX Runtime's options


def _cpu_per_call(server, model, n=4):
    """The server's CPU time per call over `n` calls (after a first), and
    the first's answer. CPU time, not wall time: beside three other test
    workers on two cores a folded model's call took 76 ms of wall time and
    an unfolded one's 80 ms, while each call's own work does not change."""
    x = [fp32("x", [1.0])]
    first = server.infer(model, x)
    assert first.status_code == 200, first.text
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu():
        fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    before = cpu()
    for _ in range(n):
        assert server.infer(model, x).status_code == 200
    return (cpu() - before) / n, first.json()["outputs"][0]["data"]


def test_graph_optimization_levels_take_effect_and_triton_numbers_map_to_them(served):
    """BACKENDS.md: `onnxruntime.optimization` is the graph optimization level
    (off, basic, extended, all: the default); SERVING.md: Triton's
    `optimization { graph { level } }` with Triton's numbers (2 off, -1
    basic). A constant subgraph of 2 GFLOP is folded at load unless
    optimizations are off, so 'off' spends far more CPU on every call. Every
    level answers as ONNX Runtime's Python API does."""
    model = served_repo(served) / "fold_all/1/model.onnx"
    want = ort.InferenceSession(str(model)).run(None, {"x": np.ones(1, np.float32)})[0]
    cpu = {}
    for name in ("fold_all", "fold_basic", "fold_triton_basic", "fold_off", "fold_triton_off"):
        cpu[name], got = _cpu_per_call(served, name)
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=name)
    folded = max(cpu["fold_all"], cpu["fold_basic"], cpu["fold_triton_basic"])
    unfolded = min(cpu["fold_off"], cpu["fold_triton_off"])
    # A clock tick (10 ms over 4 calls, 2.5 ms a call) is the resolution: a
    # folded call measured 0 or 2.5 ms here, an unfolded one 77 ms.
    assert unfolded > 4 * max(folded, 0.005), cpu


def _thread_names(pid):
    """How many of the process's threads bear each name (/proc's comm)."""
    names = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            names[Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()] += 1
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended while listed
    return names


def _pool_threads(pid, model, want):
    """The ONNX Runtime pool threads a model's session started, waited for
    until there are `want` (or 10 s have passed). A session's pool threads
    are named after the thread that built them, the model's load thread
    (`anemone-load-<model>`), which has ended by then; counting them by
    name leaves out the server's own threads, which come and go (tokio's
    blocking threads, another model's load)."""
    name = f"anemone-load-{model}"[:15]
    deadline = time.time() + 10
    while (count := _thread_names(pid)[name]) != want and time.time() < deadline:
        time.sleep(0.05)
    return count


def test_threads_set_onnxruntime_intra_op_threads(tmp_path):
    """BACKENDS.md: a session's intra-op threads = `threads`; SERVING.md:
    Triton's `intra_op_thread_count` is `threads` (1 to 4 x the cores). A
    model loaded with 8 threads adds 7 pool threads to the process (the
    caller is the 8th), one with 1 thread none; unloading gives them back."""
    repo = tmp_path / "repo"
    for n in (1, 8):
        external_model(repo / f"t{n}/1/model.onnx", "w.bin", "w.bin")
        (repo / f"t{n}/config.pbtxt").write_text(pinned("onnxruntime", intra_op_thread_count=str(n)))
    if 8 > 4 * os.cpu_count():
        pytest.skip("8 threads is more than 4 per core here")
    server = Server(tmp_path, repo, "--model-control-mode", "explicit")
    try:
        pid = server.proc.pid
        for name in ("t1", "t8"):
            assert requests.post(f"{server.http}/v2/repository/models/{name}/load", timeout=60).status_code == 200
        counts = [_pool_threads(pid, "t1", 0), _pool_threads(pid, "t8", 7)]
        assert requests.post(f"{server.http}/v2/repository/models/t8/unload", timeout=60).status_code == 200
        counts.append(_pool_threads(pid, "t8", 0))
        assert counts == [0, 7, 0], counts
        x = np.ones((1, 64), np.float32)
        answer = server.infer("t1", [fp32("x", x)])
        np.testing.assert_allclose(np.array(answer.json()["outputs"][0]["data"]), (x @ W_EXT).ravel(), rtol=1e-5)
    finally:
        assert server.stop() == 0


def test_onnxruntime_sessions_share_one_pool_with_the_global_threadpool_setting(tmp_path):
    """BACKENDS.md: with Triton's `--backend-config
    onnxruntime,enable-global-threadpool=1`, every ONNX Runtime session
    runs on one pool of `--threads` threads instead of a pool each. Six
    models with `--threads 3`: a pool each adds 2 threads per model (12);
    shared, the six add none, and one pool of 2 serves them all. Answers equal
    numpy's either way, and a model whose engines are compared (no
    `backends`) is compared in the child as usual (none fell back)."""
    repo = tmp_path / "repo"
    for i in range(6):
        external_model(repo / f"m{i}/1/model.onnx", "w.bin", "w.bin")
        (repo / f"m{i}/config.pbtxt").write_text(pinned("onnxruntime"))
    add_model(repo, "compared")
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
    added = {}
    for shared in (False, True):
        flags = ["--threads", "3", "--model-control-mode", "explicit", "--load-model", "compared"]
        if shared:
            flags += ["--backend-config", "onnxruntime,enable-global-threadpool=1"]
        server = Server(tmp_path, repo, *flags)
        try:
            pid = server.proc.pid
            for i in range(6):
                assert requests.post(f"{server.http}/v2/repository/models/m{i}/load", timeout=60).status_code == 200
            want = 0 if shared else 2
            added[shared] = [_pool_threads(pid, f"m{i}", want) for i in range(6)]
            # The shared pool is built at start-up, by the main thread: two
            # threads named as it is, beside it.
            added[shared].append(_thread_names(pid)["anemone"] - 1)
            for i in range(6):
                answer = server.infer(f"m{i}", [fp32("x", x)])
                np.testing.assert_allclose(np.array(answer.json()["outputs"][0]["data"]), (x @ W_EXT).ravel(),
                                           rtol=1e-5)
            counted = {l.split()[0]: float(l.split()[1]) for l in server.metrics()
                       if l.startswith("anemone_engine_comparisons_total")}
            # A comparison that failed in the child is counted as fell_back, and the log says why.
            said = [line for line in server.err_path.read_text(errors="replace").splitlines() if "compar" in line]
            assert counted.get('anemone_engine_comparisons_total{where="child"}', 0) >= 1, (counted, said[-3:])
            assert counted.get('anemone_engine_comparisons_total{where="fell_back"}', 0) == 0, (counted, said[-3:])
            np.testing.assert_allclose(
                np.array(server.infer("compared", [fp32("x", x[:, :4]), fp32("y", x[:, 4:8])]).json()
                         ["outputs"][0]["data"]), (x[:, :4] + x[:, 4:8]).ravel(), rtol=1e-6)
        finally:
            assert server.stop() == 0
    assert added == {False: [2] * 6 + [0], True: [0] * 6 + [2]}, added


@pytest.mark.parametrize("in_child", ["true", "false"])
def test_an_engine_that_answers_the_warm_up_unlike_onnxruntime_does_not_serve(tmp_path, in_child):
    """BACKENDS.md, "Selection": the default order's comparison runs both CPU
    engines on the same warm-up; when tract-cpu's answer differs from ONNX
    Runtime's, ONNX Runtime serves whatever the timings say, and the index says
    why. A cubic Resize with `pytorch_half_pixel` down to a length of 1, which
    tract 0.23.9 computes wrongly (tests/python/test_operator_sweep.py): until
    session 44 the faster engine, tract, served it with wrong numbers. In the
    comparison child and in the server process alike. Answers checked against
    ONNX Runtime's Python API."""
    x = helper.make_tensor_value_info("x", T.FLOAT, [1, 1, 3, 4])
    y = helper.make_tensor_value_info("y", T.FLOAT, None)
    scales = nh.from_array(np.array([1, 1, 0.6, 0.5], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic",
                            coordinate_transformation_mode="pytorch_half_pixel")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [scales]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    repo = tmp_path / "repo"
    (repo / "rz" / "1").mkdir(parents=True)
    onnx.save(model, repo / "rz" / "1" / "model.onnx")
    server = Server(tmp_path, repo, "--compare-in-child", in_child)
    try:
        reason = server.index()["rz"]["reason"]
        assert reason.startswith("on onnxruntime") and "differs from onnxruntime's" in reason, reason
        data = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 1, 3, 4)
        want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0]
        got = server.infer("rz", [fp32("x", data)]).json()["outputs"][0]
        np.testing.assert_allclose(np.array(got["data"], np.float32).reshape(got["shape"]), want, rtol=1e-5)
    finally:
        assert server.stop() == 0


def _rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def test_the_memory_arena_is_off_by_default_and_on_keeps_freed_buffers(tmp_path):
    """BACKENDS.md: `onnxruntime.mem_arena` (keep freed CPU buffers for reuse;
    default off, so a model's peak memory is given back); SERVING.md:
    Triton's `enable_mem_arena` 1 sets it. A call with 512 MiB of
    temporaries leaves the resident size where it was with the default,
    and about that much higher with the arena on."""
    repo = tmp_path / "repo"
    for name, extra in [("off", params()), ("on", params(**{"onnxruntime.mem_arena": "on"})),
                        ("triton_on", params(enable_mem_arena="1"))]:
        big_model(repo / name / "1/model.onnx")
        (repo / name / "config.pbtxt").write_text(pinned("onnxruntime") + extra)
    server = Server(tmp_path, repo)
    try:
        pid = server.proc.pid
        grown = {}
        for name in ("off", "triton_on", "on"):  # each session has its own arena
            before = _rss_mib(pid)
            answer = server.infer(name, [fp32("x", [0.5])])
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [BIG * 0.25]
            time.sleep(0.3)
            grown[name] = _rss_mib(pid) - before
        assert grown["off"] < 64, grown
        assert grown["on"] > 200, grown
        assert grown["triton_on"] > 200, grown
    finally:
        assert server.stop() == 0


def quantized_conv(path):
    """A QLinearConv as onnxruntime.quantization writes one: uint8
    activations (fed), int8 weights per output channel; its input and the
    answer of the ONNX reference evaluator (exact integer arithmetic)."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8)
    consts = [nh.from_array(np.array(0.02, np.float32), "xs"), nh.from_array(np.array(128, np.uint8), "xz"),
              nh.from_array(rng.integers(-128, 128, (6, 4, 3, 3)).astype(np.int8), "w"),
              nh.from_array((np.arange(6, dtype=np.float32) + 1) * 0.004, "ws"), nh.from_array(np.zeros(6, np.int8), "wz"),
              nh.from_array(np.array(0.2, np.float32), "ys"), nh.from_array(np.array(120, np.uint8), "yz")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], strides=[2, 2])
    graph = helper.make_graph([node], "qconv", [helper.make_tensor_value_info("x", T.UINT8, [1, 4, 5, 5])],
                              [helper.make_tensor_value_info("y", T.UINT8, None)], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return x, ReferenceEvaluator(model).run(None, {"x": x})[0]


def test_quantized_products_on_onnxruntime_are_exact_on_every_x86_cpu(tmp_path):
    """BACKENDS.md: `onnxruntime.x64_quant_precision` (default on) makes
    ONNX Runtime's products of uint8 activations and int8 weights exact on
    x86 CPUs without VNNI, where its kernels add pairs of products in 16
    bits and saturate. A QLinearConv served by onnxruntime answers as the
    ONNX reference evaluator does (within one quantum); with the setting
    off, as onnxruntime's Python API with its default options. Anemone
    before session 46 on an AVX2 AMD EPYC: 75 quanta off (the Python API's
    own answer); on a CPU with VNNI the two settings agree, and the first
    assertion holds either way."""
    repo = tmp_path / "repo"
    x, exact = quantized_conv(repo / "exact/1/model.onnx")
    quantized_conv(repo / "fast/1/model.onnx")
    (repo / "exact/config.pbtxt").write_text(pinned("onnxruntime"))
    (repo / "fast/config.pbtxt").write_text(pinned("onnxruntime", **{"onnxruntime.x64_quant_precision": "off"}))
    fast = ort.InferenceSession(str(repo / "fast/1/model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    server = Server(tmp_path, repo)
    try:
        answers = {}
        for name in ("exact", "fast"):
            r = server.infer(name, [{"name": "x", "shape": list(x.shape), "datatype": "UINT8",
                                     "data": x.flatten().tolist()}])
            assert r.status_code == 200, r.text
            out = r.json()["outputs"][0]
            answers[name] = np.array(out["data"], np.int64).reshape(out["shape"])
            if name == "exact":
                off_by = np.abs(answers["exact"] - exact.astype(np.int64)).max()
                assert off_by <= 1, f"{off_by} quanta from the ONNX reference (the Python API's default: " \
                                    f"{np.abs(fast.astype(np.int64) - exact).max()})"
        assert np.array_equal(answers["fast"], fast), "off is ONNX Runtime's own default"
        meta = requests.get(f"{server.http}/v2/models/fast", timeout=30).json()
        assert meta["platform"] == "onnxruntime", meta
    finally:
        assert server.stop() == 0


def test_an_s8s8_model_onnxruntime_cannot_load_with_exact_products_loads_with_its_default(tmp_path):
    """BACKENDS.md, "Quantized models on x86 CPUs without VNNI": a model
    ONNX Runtime cannot load with exact 8-bit products (a QOperator model of
    int8 activations: its QGemm takes no uint8 weights, which the option
    makes of int8 ones on those CPUs) loads with ONNX Runtime's default, its
    property saying so, and answers as onnxruntime's Python API does. On a
    CPU with VNNI it loads with the option on. Before the fallback, on an
    AVX2 AMD EPYC: UNAVAILABLE ("Failed to find kernel for
    com.microsoft.QGemm")."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(5)
    src = tmp_path / "mlp.onnx"
    save(src, [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])],
         [("x", T.FLOAT, ["b", 16])], [("y", T.FLOAT, ["b", 8])],
         [nh.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w")])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    repo = tmp_path / "repo"
    (repo / "s8s8/1").mkdir(parents=True)
    quantize_static(src, repo / "s8s8/1/model.onnx", Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    (repo / "s8s8/config.pbtxt").write_text(pinned("onnxruntime"))
    x = rng.standard_normal((2, 16)).astype(np.float32)
    want = ort.InferenceSession(str(repo / "s8s8/1/model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    server = Server(tmp_path, repo)
    try:
        r = server.infer("s8s8", [fp32("x", x)])
        assert r.status_code == 200, r.text
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    finally:
        assert server.stop() == 0
    props = inspect_json(repo / "s8s8/1/model.onnx", "--backends", "onnxruntime", "--strict")["properties"]
    assert props.get("anemone.onnxruntime.x64_quant_precision") in (
        "on", "off (ONNX Runtime cannot load the model with it on)"), props


def test_inspect_prints_the_onnxruntime_session_options_as_properties():
    """BACKENDS.md: session options are each shown as a metadata property
    `anemone.onnxruntime.<name>`, which `anemone inspect` prints; the
    spinning setting is in `anemone.onnxruntime.spinning`; SERVING.md: the
    providers are in `anemone.onnxruntime.providers` (`anemone inspect`)."""
    report = inspect_json(ADD, "--backends", "onnxruntime", "--strict")
    assert report["selection"]["backend"] == "onnxruntime"
    props = report["properties"]
    assert props.get("anemone.onnxruntime.optimization") == "all", props
    assert props.get("anemone.onnxruntime.mem_arena") == "off", props
    assert props.get("anemone.onnxruntime.x64_quant_precision") == "on", props
    assert "anemone.onnxruntime.spinning" in props and "CPU" in props.get("anemone.onnxruntime.providers", ""), props


# ------------------------------------------------------- tract vs ONNX Runtime


def _rng_init(rng, name, shape, scale=0.3):
    return nh.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def convnet(path):
    rng = np.random.default_rng(7)
    inits = [_rng_init(rng, "w1", [8, 3, 3, 3]), _rng_init(rng, "b1", [8]), _rng_init(rng, "w2", [16, 8, 3, 3]),
             _rng_init(rng, "b2", [16]), _rng_init(rng, "fc", [10, 16]), _rng_init(rng, "fcb", [10])]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "fc", "fcb"], ["l"], transB=1),
             helper.make_node("Softmax", ["l"], ["y"], axis=1)]
    save(path, nodes, [("x", T.FLOAT, ["n", 3, 16, 16])], [("y", T.FLOAT, ["n", 10])], inits)
    return {"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}


def gru(path, batch=2):
    """A GRU over a dynamic number of steps (and, with batch="b", a dynamic batch)."""
    rng = np.random.default_rng(8)
    inits = [_rng_init(rng, "W", [1, 48, 8]), _rng_init(rng, "R", [1, 48, 16]), _rng_init(rng, "B", [1, 96])]
    save(path, [helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "h"], hidden_size=16, linear_before_reset=1)],
         [("x", T.FLOAT, ["t", batch, 8])], [("Y", T.FLOAT, ["t", 1, batch, 16]), ("h", T.FLOAT, [1, batch, 16])], inits)
    return {"x": rng.standard_normal((6, 2, 8)).astype(np.float32)}


def attention_block(path):
    rng = np.random.default_rng(9)
    d = 32
    inits = [_rng_init(rng, "wq", [d, d], 0.2), _rng_init(rng, "wk", [d, d], 0.2), _rng_init(rng, "wv", [d, d], 0.2),
             nh.from_array(np.ones(d, np.float32), "g"), nh.from_array(np.zeros(d, np.float32), "bt"),
             nh.from_array(np.array(1 / np.sqrt(d), np.float32), "sc"), nh.from_array(np.array(2 ** -0.5, np.float32), "r2"),
             nh.from_array(np.array(1.0, np.float32), "one"), nh.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "bt"], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "wq"], ["q"]), helper.make_node("MatMul", ["n", "wk"], ["k"]),
             helper.make_node("MatMul", ["n", "wv"], ["v"]), helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s0"]), helper.make_node("Mul", ["s0", "sc"], ["s"]),
             helper.make_node("Softmax", ["s"], ["a"], axis=-1), helper.make_node("MatMul", ["a", "v"], ["o"]),
             helper.make_node("Mul", ["o", "r2"], ["o2"]), helper.make_node("Erf", ["o2"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["o", "e1"], ["oe"]),
             helper.make_node("Mul", ["oe", "half"], ["gelu"]), helper.make_node("Add", ["x", "gelu"], ["y"])]
    save(path, nodes, [("x", T.FLOAT, ["b", "s", d])], [("y", T.FLOAT, ["b", "s", d])], inits)
    return {"x": rng.standard_normal((2, 7, d)).astype(np.float32)}


@pytest.mark.parametrize("build", [convnet, gru, attention_block], ids=lambda f: f.__name__)
def test_tract_and_onnxruntime_agree_with_onnxruntime_python(tmp_path, build):
    """CONFORMANCE.md: outputs agree within rtol 1e-3 + atol 1e-5, dtype and
    shape included. tract-cpu is compared with ONNX Runtime's Python API;
    anemone's onnxruntime backend (the same library) too, more tightly."""
    model = tmp_path / "model.onnx"
    inputs = build(model)
    session = ort.InferenceSession(str(model))
    names = [o.name for o in session.get_outputs()]
    want = dict(zip(names, session.run(None, inputs)))
    for backend, rtol, atol in [("tract-cpu", 1e-3, 1e-5), ("onnxruntime", 1e-5, 1e-6)]:
        proc, got = infer_npy(tmp_path / backend, model, inputs, "--backends", backend, "--strict")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["backend"] == backend
        assert set(got) == set(names)
        for name in names:
            assert got[name].shape == want[name].shape and got[name].dtype == want[name].dtype, (backend, name)
            np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=f"{backend} {name}")


def test_tract_prepares_per_shape_a_recurrent_net_it_cannot_plan_over_symbols(tmp_path):
    """BACKENDS.md "How a model is prepared", step 4: when tract cannot reason
    over the symbols (common for exported nets), the model is prepared per
    input shape instead; its answers agree with ONNX Runtime's Python API
    within CONFORMANCE.md's rtol 1e-3 + atol 1e-5."""
    model = tmp_path / "gru.onnx"
    inputs = gru(model, batch="b")
    want = ort.InferenceSession(str(model)).run(None, inputs)
    proc, got = infer_npy(tmp_path / "run", model, inputs, "--backends", "tract-cpu", "--strict")
    assert proc.returncode == 0, proc.stderr.splitlines()[-1:]
    np.testing.assert_allclose(got["Y"], want[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got["h"], want[1], rtol=1e-3, atol=1e-5)


# ------------------------------------------------------- external data


def test_external_data_in_a_subfolder_serves_on_both_engines(tmp_path):
    """SERVING.md: larger ONNX models keep their weights in external data
    files, which must sit inside the model's directory (a subfolder counts);
    inspect's file_size counts external data. Both engines answer as ONNX
    Runtime's Python API does."""
    model = external_model(tmp_path / "m/1/model.onnx", "weights/w.bin", "weights/w.bin")
    report = inspect_json(model, "--no-select")
    assert report["file_size"] == model.stat().st_size + W_EXT.nbytes
    assert report["weight_bytes"] == W_EXT.nbytes and report["parameter_count"] == W_EXT.size
    x = np.random.default_rng(3).standard_normal((3, 64)).astype(np.float32)
    want = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    for backend in ("tract-cpu", "onnxruntime"):
        proc, got = infer_npy(tmp_path / backend, model, {"x": x}, "--backends", backend, "--strict")
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(got["y"], want, rtol=1e-4, atol=1e-5, err_msg=backend)
    fixture = FIXTURES / "external_weights"
    case = json.loads((fixture / "case.json").read_text())
    run = case["runs"][0]
    x = np.load(fixture / run["inputs"][0]["file"])
    for backend in ("tract-cpu", "onnxruntime"):
        proc, got = infer_npy(tmp_path / f"fx-{backend}", fixture / "model.onnx", {"x": x}, "--backends", backend, "--strict")
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(got["y"], np.load(fixture / run["outputs"][0]["file"]),
                                   rtol=case["rtol"], atol=case["atol"])


@pytest.mark.parametrize("location, data_at", [("gone.bin", None), ("../w.bin", "../w.bin")])
def test_missing_or_escaping_external_data_is_refused_naming_the_file(tmp_path, location, data_at):
    """BACKENDS.md: missing external data is refused with a message naming the
    file and the cause; SERVING.md: external data must sit inside the
    model's directory. The same for a repository (UNAVAILABLE) and infer
    (status 1), whatever engine is asked."""
    repo = tmp_path / "repo"
    model = external_model(repo / "m/1/model.onnx", location, data_at)
    out, by_name = models_json(repo)
    assert out.returncode == 1
    assert by_name["m"]["state"] == "UNAVAILABLE"
    assert f"external data file '{location}'" in by_name["m"]["reason"] and "inside the model's directory" in by_name["m"]["reason"]
    np.save(tmp_path / "x.npy", np.ones((1, 64), np.float32))
    for backend in ("tract-cpu", "onnxruntime"):
        proc = anemone("infer", model, "-i", tmp_path / "x.npy", "--backends", backend, "-d", tmp_path / "o")
        assert proc.returncode == 1 and f"'{location}'" in proc.stderr and "panicked" not in proc.stderr, proc.stderr


# ------------------------------------------------------- element types anemone does not carry


def test_types_and_values_anemone_does_not_carry_are_refused_at_load(tmp_path):
    """CONFORMANCE.md: element types anemone does not carry (bfloat16, float8,
    int4, complex) and sequence or optional values in a model's signature
    are refused at load with a clear message."""
    bf16 = save(tmp_path / "bf16.onnx", [helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT)],
                [("x", T.BFLOAT16, [2])], [("y", T.FLOAT, [2])])
    f8 = save(tmp_path / "f8.onnx", [helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E4M3FN)],
              [("x", T.FLOAT, [2])], [("y", T.FLOAT8E4M3FN, [2])], opset=19)
    graph = helper.make_graph([helper.make_node("SequenceLength", ["s"], ["n"])], "m",
                              [helper.make_tensor_sequence_value_info("s", T.FLOAT, None)],
                              [helper.make_tensor_value_info("n", T.INT64, [])])
    seq_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    seq_model.ir_version = 8
    seq = tmp_path / "seq.onnx"
    onnx.save(seq_model, str(seq))
    for model, words in [(bf16, "input 'x' has element type BFLOAT16, which anemone cannot carry"),
                         (f8, "output 'y' has element type FLOAT8E4M3FN, which anemone cannot carry"),
                         (seq, "input 's' is not a tensor (sequence, map and optional values are not supported)")]:
        described = anemone("inspect", model, "--no-select")
        assert described.returncode == 1 and words in described.stderr, (model.name, described.stderr)
        for backend in ("tract-cpu", "onnxruntime"):
            proc, _ = infer_npy(tmp_path / f"{model.stem}-{backend}", model, {}, "--backends", backend)
            assert proc.returncode == 1 and words in proc.stderr and "panicked" not in proc.stderr, (model.name, proc.stderr)


# ------------------------------------------------------- conformance


def _doc_number(text, pattern):
    match = re.search(pattern, text)
    assert match, pattern
    return int(match.group(1).replace(",", ""))


def _expected(backend):
    rows = {}
    for line in (CONFORMANCE / f"{backend}.expected-failures").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, _, reason = line.partition("  # ")
        case, kind = head.split()
        rows[case] = (kind, reason)
    return rows


def test_conformance_figures_match_the_expected_failure_lists():
    """CONFORMANCE.md: 1,765 cases in onnx 1.22.0; tract-cpu passes 1,016,
    onnxruntime 1,430, either 1,466; ONNX Runtime: 19 numeric mismatches
    and 2 run-time errors; tract: 4 Dropout run-time errors and one
    mismatch. A case not on a backend's list must pass, so the lists give
    the figures."""
    text = (DOCS / "CONFORMANCE.md").read_text()
    cases = sorted(p.name for p in NODE.iterdir() if (p / "model.onnx").exists())
    assert onnx.__version__ == "1.22.0"
    assert len(cases) == _doc_number(text, r"\((\d[\d,]*) cases shipped")
    tract, ortf = _expected("tract-cpu"), _expected("onnxruntime")
    assert set(tract) <= set(cases) and set(ortf) <= set(cases)
    assert len(cases) - len(tract) == _doc_number(text, r"tract-cpu \(tract 0\.23\.9\) \| \*\*([\d,]+) of")
    assert len(cases) - len(ortf) == _doc_number(text, r"onnxruntime \(ONNX Runtime 1\.31\.1, CPU\) \| \*\*([\d,]+) of")
    assert len(cases) - len(set(tract) & set(ortf)) == _doc_number(text, r"either .*?\| \*\*([\d,]+) of")
    kinds = lambda rows, k: sorted(c for c, (kind, _) in rows.items() if kind == k)
    assert len(kinds(ortf, "mismatch")) == 19 and len(kinds(ortf, "run")) == 2
    assert [c for c in kinds(ortf, "mismatch") if c.startswith("test_dft")] and \
        len([c for c in kinds(ortf, "mismatch") if c.startswith("test_dft")]) == 10
    assert kinds(tract, "run") == ["test_training_dropout", "test_training_dropout_default",
                                   "test_training_dropout_default_mask", "test_training_dropout_mask"]
    assert kinds(tract, "mismatch") == ["test_causal_conv_with_state_silu_fp16_expanded"]
    assert set(kinds(tract, "load")) >= {"test_det_2d", "test_adam"}
    # "Part of the failures are not the engine's: element types anemone does not carry ... and sequence or
    # optional values ... ONNX Runtime's failures are mostly of that kind too (201 cases)"
    carried = [c for c, (_, r) in ortf.items() if "which anemone cannot carry" in r or "is not a tensor (sequence" in r]
    assert len(carried) == _doc_number(text, r"mostly of that kind too \((\d+) cases\)")


def _node_case(case):
    """(model path, {input name: array}, [(output name, reference)])."""
    d = NODE / case
    model = onnx.load(str(d / "model.onnx"), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in init]
    out_names = [o.name for o in model.graph.output]

    def read(kind, count):
        arrays = []
        for k in range(count):
            t = onnx.TensorProto()
            t.ParseFromString((d / "test_data_set_0" / f"{kind}_{k}.pb").read_bytes())
            arrays.append(nh.to_array(t))
        return arrays

    return d / "model.onnx", dict(zip(in_names, read("input", len(in_names)))), list(zip(out_names, read("output", len(out_names))))


def _outside(got, want, rtol=1e-3, atol=1e-5):
    """Values outside CONFORMANCE.md's tolerance (NaN equals NaN)."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    close = np.isclose(g, w, rtol=rtol, atol=atol) | (np.isnan(g) & np.isnan(w))
    return int((~close).sum())


PASSING = ["test_abs", "test_conv_with_strides_padding", "test_gru_defaults", "test_lstm_defaults", "test_softmax_axis_0",
           "test_layer_normalization_2d_axis0", "test_einsum_batch_matmul", "test_gemm_all_attributes",
           "test_maxpool_2d_pads", "test_instancenorm_example", "test_nonzero_example",
           "test_where_example", "test_gathernd_example_int32", "test_argmax_default_axis_example", "test_if",
           "test_loop11", "test_pow_types_int32_int32", "test_top_k"]
ORT_ONLY = ["test_det_2d", "test_cumsum_1d", "test_resize_upsample_scales_linear", "test_slice_neg_steps"]


@pytest.mark.parametrize("backend, case", [(b, c) for c in PASSING for b in ("tract-cpu", "onnxruntime")]
                         + [("onnxruntime", c) for c in ORT_ONLY])
def test_node_cases_off_the_lists_pass_through_anemone_infer(tmp_path, backend, case):
    """CONFORMANCE.md: a case not on a backend's expected-failure list must
    pass: outputs within rtol 1e-3 + atol 1e-5, everything else exactly,
    dtype and shape included. BACKENDS.md: `Loop` (test_loop11) and `If`
    run on tract through anemone's additions."""
    assert case not in _expected(backend), f"{case} is on {backend}'s list"
    model, inputs, outputs = _node_case(case)
    proc, got = infer_npy(tmp_path, model, inputs, "--backends", backend, "--strict")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["backend"] == backend
    assert len(got) == len(outputs)
    for name, want in outputs:
        assert got[name].shape == want.shape and got[name].dtype == want.dtype, (name, got[name].dtype, want.dtype)
        if np.issubdtype(want.dtype, np.floating):
            assert _outside(got[name], want) == 0, (name, got[name], want)
        else:
            assert np.array_equal(got[name], want), name


LISTED = [("tract-cpu", "test_det_2d"), ("tract-cpu", "test_cumsum_1d"), ("tract-cpu", "test_slice_neg_steps"),
          ("tract-cpu", "test_adam"), ("onnxruntime", "test_adam"), ("tract-cpu", "test_cast_FLOAT_to_BFLOAT16"),
          ("onnxruntime", "test_cast_FLOAT_to_BFLOAT16"), ("tract-cpu", "test_training_dropout"),
          ("onnxruntime", "test_dft"), ("onnxruntime", "test_dft_inverse"),
          ("onnxruntime", "test_maxunpool_export_with_output_shape"),
          ("onnxruntime", "test_resize_downsample_scales_linear_align_corners"),
          ("onnxruntime", "test_convinteger_with_padding")]


@pytest.mark.parametrize("backend, case", LISTED)
def test_listed_node_cases_fail_the_way_the_list_says(tmp_path, backend, case):
    """CONFORMANCE.md: a case on the list still fails the same way: `load`
    (the backend refuses the model, with the listed error), `run` (the
    engine fails at run time), `mismatch` ("N of M values outside rtol
    0.001 atol 0.00001", which this checks against the stored reference)."""
    kind, reason = _expected(backend)[case]
    model, inputs, outputs = _node_case(case)
    proc, got = infer_npy(tmp_path, model, inputs, "--backends", backend, "--strict")
    if kind in ("load", "run"):
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert "panicked" not in proc.stderr
        message = " ".join(proc.stderr.split())
        fragment = reason.split(": ", 1)[-1] if kind == "run" else reason
        fragment = fragment.split("Load model from model.onnx failed:")[-1][:90]
        assert fragment in message, (fragment, message)
    else:
        assert kind == "mismatch" and proc.returncode == 0, proc.stderr
        m = re.match(r"output '([^']+)': (\d+) of (\d+) values outside rtol 0.001 atol 0.00001", reason)
        name, bad, total = m.group(1), int(m.group(2)), int(m.group(3))
        want = dict(outputs)[name]
        assert got[name].size == total and _outside(got[name], want) == bad, (_outside(got[name], want), reason)
        # ONNX Runtime's own Python API gives the same numbers: the engine's, not anemone's
        ref = ort.InferenceSession(str(model)).run([name], inputs)[0]
        np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------- inspect and infer on the README's models


def test_inspect_describes_the_readme_add_model_as_onnx_reads_it():
    """README `anemone inspect MODEL`: inputs and outputs (name, dtype, shape
    with dynamic dimensions by name), opsets, producer, size on disk, and
    which backends here can run it; the text form lists the same."""
    report = inspect_json(ADD, "--no-select")
    model = onnx.load(str(ADD))
    assert report["format"] == "onnx" and report["file_size"] == ADD.stat().st_size
    assert report["producer"] == (model.producer_name + (" " + model.producer_version if model.producer_version else ""))
    assert report["opsets"] == [{"domain": "ai.onnx", "version": o.version} for o in model.opset_import]
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    assert [(i["name"], i["dtype"], i["shape"]) for i in report["inputs"]] == [(i.name, "f32", dims(i)) for i in model.graph.input]
    assert [(o["name"], o["shape"]) for o in report["outputs"]] == [(o.name, dims(o)) for o in model.graph.output]
    assert report["selection"] is None
    runnable = {b["name"] for b in report["backends"] if b["supports"] and b["probe"]["status"] == "available"}
    assert runnable == {"onnxruntime", "tract-cpu"}
    text = anemone("inspect", ADD, "--no-select").stdout
    assert re.search(r"^  x\s+f32\s+\[batch, 4\]$", text, re.M) and re.search(r"^  diff\s+f32\s+\[batch, 4\]$", text, re.M)
    assert "opsets      ai.onnx:17" in text and "selection" not in text


def test_inspect_clips_long_values_in_text_and_json_prints_them_all():
    """README: in the text form a value longer than 160 characters (PP-OCR
    rec's alphabet) is cut, saying how many characters were left out;
    `--json` prints everything."""
    model = FIXTURES / "ocr_rec/model.onnx"
    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    report = inspect_json(model, "--no-select")
    assert report["properties"]["character"] == props["character"]
    text = anemone("inspect", model, "--no-select").stdout
    total = len(props["character"]) + props["character"].count("\n")  # shown escaped, "\\n"
    assert f"({total - 160} more characters of {total}; --json prints all)" in text
    assert report["inputs"][0]["shape"][1] == 3 and report["inputs"][0]["shape"][2] == -1


def test_infer_writes_the_readme_example_on_each_engine(tmp_path):
    """README `anemone infer`: each output goes to DIR/<output name>.npy; the
    README's add model on examples/x.npy and y.npy, on each engine, as
    ONNX Runtime's Python API computes it."""
    x, y = np.load(ROOT / "examples/x.npy"), np.load(ROOT / "examples/y.npy")
    want = ort.InferenceSession(str(ADD)).run(None, {"x": x, "y": y})
    for backend in ("tract-cpu", "onnxruntime"):
        out = anemone("infer", ADD, "-i", f"x={ROOT / 'examples/x.npy'}", "-i", f"y={ROOT / 'examples/y.npy'}",
                      "--backends", backend, "--strict", "-d", tmp_path / backend)
        assert out.returncode == 0, out.stderr
        assert np.array_equal(np.load(tmp_path / backend / "sum.npy"), want[0])
        assert np.array_equal(np.load(tmp_path / backend / "diff.npy"), want[1])
