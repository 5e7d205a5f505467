"""Triton's tutorials (triton-inference-server/tutorials), followed as a user
moving from tritonserver would follow them, against anemone.

`fixtures/triton_tutorials/` (commit e84895253165a887db5e25cd69d24def7a90b1ee,
BSD-3; its README lists the files) holds the 36 `config.pbtxt`, Part 4's 3
sample configs, the `model.py` of every Python model and the five clients
run here. For each config the test asserts what the user should see: it
loads and serves, end to end with the tutorial's own client code where that
runs without downloads, or it is refused with a message saying what to
change (a backend anemone lacks, `KIND_GPU` on this CPU machine, a field
anemone does not take).

Stand-ins (nothing is downloaded), in `fixtures/triton_tutorials/`:
- `tutorial_standins.py` writes ONNX models with the configs' names, types
  and dims: EAST (`input_images:0` NHWC -> a sigmoid "text score" at 1/4
  resolution, 5-channel geometry), the ResNet recogniser (`input.1`
  [N,1,32,100] -> `308` [N,26,37]), ViT, Part 6's CLIP text encoder and
  Quick_Deploy's densenet. Answers are checked against onnxruntime's Python
  API on the same files;
- `shims/` (numpy stand-ins for the calls the tutorials make into `cv2`,
  `torch`, `torchvision.transforms`) and `shims_hf/` (transformers'
  `ViTFeatureExtractor`): copied beside a `model.py` (its folder is on the
  model's `sys.path`, as in Triton), so the `model.py` runs unchanged; the
  clients import them in this process during a test only.

Patches, applied in the test (the fixture files stay as published):
- `KIND_GPU` -> `KIND_CPU` (and `gpus: [0]` removed) to serve a GPU config
  here, after checking the config as published is refused saying so;
- Data_Pipelines' ensemble config is committed as `ensemble_model/1/config.pbtxt`
  with only `ensemble_scheduling`: the test moves it up and adds the header
  the README shows (`name`, `platform`, `max_batch_size: 8`, the inputs and
  outputs it elides as "...", filled in from model1's config);
- clients: `localhost:800x` -> the server's address, downloaded images ->
  generated ones, `print` -> a collector the test reads.

tritonserver 2.51 (CPU, Python backend only, no ONNX Runtime) was run on the
Python-only repositories and on the refusals (2026-12-05); the docstrings say
what it answered. CI has no Triton: the tests run against anemone only.
"""
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from serve_support import ROOT, start_serve, stop_serve

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures/triton_tutorials"))
from tutorial_standins import (FIX, clip_text, densenet, east, fake_pb_utils, ocr, onnx_run, python_step,  # noqa: E402
                               run_client, shimmed, vit)

CG = FIX / "Conceptual_Guide"
P1 = CG / "Part_1-model_deployment/model_repository"
P5 = CG / "Part_5-Model_Ensembles/model_repository"
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


# ------------------------------------------------------------ helpers
def until(fn, seconds=60, what="condition"):
    deadline = time.time() + seconds
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


class Server:
    """`anemone serve` on `repo` (working directory `cwd`: the tutorials' Python
    code writes files such as tensor.pkl.npy there)."""

    def __init__(self, repo, cwd, *flags, settle=()):
        old = os.getcwd()
        os.chdir(cwd)
        try:
            self.proc, a = start_serve(repo, "--metrics-port", "0", *flags)
        finally:
            os.chdir(old)
        self.repo, self.http, self.grpc = repo, a["HTTP"], a["gRPC"]
        self.url = f"http://{self.http}"
        until(lambda: requests.get(f"{self.url}/v2/health/live").status_code == 200, 60, "live")
        until(lambda: all(self.row(m).get("state") in ("READY", "UNAVAILABLE") for m in settle), 120, "start-up loads")

    def index(self):
        return requests.post(f"{self.url}/v2/repository/index", json={}).json()

    def row(self, model):
        return next((r for r in self.index() if r["name"] == model), {})

    def get(self, path):
        return requests.get(f"{self.url}{path}").json()

    def deploy(self, name, config, files=(), sub=()):
        """Writes model `name` (its config from the fixture `config`, with the
        text substitutions `sub`; `files`: {relative path: source Path, or
        a function writing it}) and loads it; returns (status, error message)."""
        d = self.repo / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "1").mkdir(parents=True)
        text = config.read_text() if isinstance(config, Path) else config
        for a, b in sub:
            assert a in text, f"{config} has no {a!r}"
            text = text.replace(a, b)
        (d / "config.pbtxt").write_text(text)
        for rel, src in dict(files).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            if callable(src):
                src(d / rel)
            else:
                shutil.copy(src, d / rel)
        r = requests.post(f"{self.url}/v2/repository/models/{name}/load", json={}, timeout=120)
        return r.status_code, (r.json().get("error", "") if r.content else "")

    def stop(self):
        stop_serve(self.proc)


def refused(s, name, *args, **kw):
    status, msg = s.deploy(name, *args, **kw)
    assert status == 400, f"{name} loaded, but it should be refused"
    assert msg.startswith(f"failed to load model '{name}'"), msg
    assert requests.get(f"{s.url}/v2/health/live").status_code == 200
    return msg


def loaded(s, name, *args, **kw):
    status, msg = s.deploy(name, *args, **kw)
    assert status == 200, msg
    return s.get(f"/v2/models/{name}/config")


@pytest.fixture(scope="module")
def explicit(tmp_path_factory):
    """One server in explicit mode: each test writes the tutorial model it
    needs and loads it, as a user would try one config after another."""
    base = tmp_path_factory.mktemp("explicit")
    (base / "repo").mkdir()
    s = Server(base / "repo", base, "--model-control-mode", "explicit")
    yield s
    s.stop()


def bench(s, shape, c, n, report):
    """`anemone bench` (the perf_analyzer of the READMEs) on text_recognition; its JSON report."""
    p = subprocess.run([os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone")), "bench", "-m", "text_recognition", "--url", f"http://{s.grpc}",
                        "--shape", f"input.1={shape}", "-c", str(c), "-n", str(n), "--json-report", str(report)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(report.read_text())


def infer(s, model, feeds, outputs=None, grpc=False):
    mod = grpcclient if grpc else httpclient
    c = mod.InferenceServerClient(s.grpc if grpc else s.http)
    ins = []
    for name, a in feeds.items():
        i = mod.InferInput(name, list(a.shape), {np.dtype(object): "BYTES", np.dtype(bool): "BOOL"}.get(a.dtype, None) or
                           a.dtype.name.upper().replace("FLOAT", "FP"))
        i.set_data_from_numpy(a)
        ins.append(i)
    outs = [mod.InferRequestedOutput(o) for o in outputs] if outputs else None
    return c.infer(model, ins, outputs=outs)


# ======================================================= Part 1: model deployment
def text_image(h=480, w=640):
    """A dark BGR page with two bright lines of "text"."""
    img = np.full((h, w, 3), 20, np.uint8)
    img[h // 4:h // 4 + h // 12, w // 6:w // 2] = 255
    img[h // 2:h // 2 + h // 12, w // 3:3 * w // 4] = 255
    return img


@pytest.fixture(scope="module")
def part1(tmp_path_factory):
    """Part 1's repository (EAST and ResNet stand-ins) served as the README
    starts it, in poll mode (its "Loading & Unloading Models" section)."""
    base = tmp_path_factory.mktemp("part1")
    repo = base / "model_repository"
    shutil.copytree(P1, repo)
    east(repo / "text_detection/1/model.onnx")
    ocr(repo / "text_recognition/1/model.onnx")
    s = Server(repo, base, "--model-control-mode", "poll", "--repository-poll-secs", "1",
               settle=("text_detection", "text_recognition"))
    yield s
    s.stop()


def test_part1_repository_serves_both_models_ready(part1):
    """README: `tritonserver --model-repository=/models` shows text_detection
    and text_recognition READY (version 1); the server is ready."""
    rows = {r["name"]: r for r in part1.index()}
    assert {n: (rows[n]["state"], rows[n]["version"]) for n in rows} == {
        "text_detection": ("READY", "1"), "text_recognition": ("READY", "1")}
    assert requests.get(f"{part1.url}/v2/health/ready").status_code == 200


def test_part1_metadata_has_the_configs_tensors(part1):
    """The names the client uses (with `:` and `/` in them) and the configs'
    dims, -1 where dynamic (max_batch_size 0: no batch dimension added)."""
    det = part1.get("/v2/models/text_detection")
    assert det["inputs"] == [{"name": "input_images:0", "datatype": "FP32", "shape": [-1, -1, -1, 3]}]
    assert [(o["name"], o["shape"]) for o in det["outputs"]] == [
        ("feature_fusion/Conv_7/Sigmoid:0", [-1, -1, -1, 1]), ("feature_fusion/concat_3:0", [-1, -1, -1, 5])]
    rec = part1.get("/v2/models/text_recognition")
    assert (rec["inputs"][0]["shape"], rec["outputs"][0]["shape"]) == ([1, 1, 32, 100], [1, 26, 37])


def test_part1_client_detects_and_reads_text(part1, tmp_path):
    """Part 1's client.py (its pre/post-processing functions as published,
    cv2 stood in): text_detection over binary HTTP, crop, text_recognition,
    decode. Each answer equals onnxruntime's on the same input, and the text
    printed equals the same pipeline run locally."""
    raw = text_image()
    with shimmed(FIX / "shims"):
        printed, ns = run_client("Conceptual_Guide/Part_1-model_deployment/client.py", [
            ('url="localhost:8000"', f'url="{part1.http}"'), ('cv2.imread("./img1.jpg")', "RAW_IMAGE")], RAW_IMAGE=raw)
        pre = ns["detection_preprocessing"](raw)
        scores, geometry = onnx_run(part1.repo / "text_detection/1/model.onnx", {"input_images:0": pre})
        crops = ns["detection_postprocessing"](scores, geometry, pre)
        (rec,) = onnx_run(part1.repo / "text_recognition/1/model.onnx", {"input.1": crops})
        expected = ns["recognition_postprocessing"](rec)
    np.testing.assert_allclose(ns["scores"], scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ns["geometry"], geometry, rtol=1e-5, atol=1e-4)
    assert ns["cropped_images"].shape == (1, 1, 32, 100)
    np.testing.assert_allclose(ns["recognition_response"].as_numpy("308"), rec, rtol=1e-4, atol=1e-4)
    assert printed == [expected] and len(expected) > 3


def test_part1_a_second_version_is_served_after_the_poll(part1):
    """README "Model Versioning": adding `text_detection/2/model.onnx` makes
    version 2 the one served (the default policy serves the latest), under
    `--model-control-mode=poll`."""
    staged = east(part1.repo.parent / "staging/2/model.onnx", box=(4, 20, 4, 20))
    staged.parent.rename(part1.repo / "text_detection/2")
    until(lambda: part1.get("/v2/models/text_detection").get("versions") == ["2"], 60, "version 2")
    x = np.random.default_rng(7).uniform(-120, 140, (1, 64, 96, 3)).astype(np.float32)
    r = infer(part1, "text_detection", {"input_images:0": x})
    geometry = onnx_run(part1.repo / "text_detection/2/model.onnx", {"input_images:0": x})[1]
    np.testing.assert_allclose(r.as_numpy("feature_fusion/concat_3:0"), geometry, rtol=1e-5, atol=1e-4)
    assert r.get_response()["model_version"] == "2"


# ======================================================= Part 2: resource utilization
PART2 = CG / "Part_2-improving_resource_utilization/model_repository/text_recognition/config.pbtxt"


def test_part2_config_as_published_is_refused_on_a_cpu_machine(explicit):
    """`instance_group [{count: 2, kind: KIND_GPU}]` on a machine with no GPU:
    refused, naming KIND_GPU and the kind to use (SERVING.md: KIND_GPU "fails
    to load, saying so, where none is"; Triton 2.51 refuses it too: "has kind
    KIND_GPU but no GPUs are available")."""
    msg = refused(explicit, "text_recognition", PART2, {"1/model.onnx": ocr})
    assert "KIND_GPU" in msg and ("KIND_AUTO" in msg or "KIND_CPU" in msg), msg


def test_part2_on_cpu_two_instances_batch_dynamically(explicit):
    """With KIND_CPU the config loads as written: 2 instances, a dynamic
    batcher, max_batch_size 8; a batch of 2 [1,32,100] crops answers as
    onnxruntime does, and a batch of 9 is refused naming the input."""
    cfg = loaded(explicit, "text_recognition", PART2, {"1/model.onnx": ocr}, sub=[("KIND_GPU", "KIND_CPU")])
    assert [(g["count"], g["kind"]) for g in cfg["instance_group"]] == [(2, "KIND_CPU")]
    assert cfg["max_batch_size"] == 8 and "dynamic_batching" in cfg
    x = np.random.default_rng(1).uniform(-1, 1, (2, 1, 32, 100)).astype(np.float32)
    np.testing.assert_allclose(infer(explicit, "text_recognition", {"input.1": x}).as_numpy("308"),
                               onnx_run(explicit.repo / "text_recognition/1/model.onnx", {"input.1": x})[0], rtol=1e-4, atol=1e-4)
    r = requests.post(f"{explicit.url}/v2/models/text_recognition/infer", json={"inputs": [
        {"name": "input.1", "shape": [9, 1, 32, 100], "datatype": "FP32", "data": [0.0] * 9 * 3200}]})
    assert r.status_code == 400 and "input.1" in r.json()["error"]


def test_part2_perf_analyzer_run_batches_whole_requests(explicit, tmp_path):
    """README: `perf_analyzer -m text_recognition -b 2 --shape input.1:1,32,100
    --concurrency-range 2:16:2`. Its anemone equivalent (`anemone bench
    --shape input.1=2,1,32,100 -c N`, at 2 and 16) has no failed request, and
    the batches the model ran (statistics) are whole requests of 2 rows, at
    most max_batch_size 8."""
    loaded(explicit, "text_recognition", PART2, {"1/model.onnx": ocr}, sub=[("KIND_GPU", "KIND_CPU")])
    for c in (2, 16):
        assert bench(explicit, "2,1,32,100", c, 160, tmp_path / f"c{c}.json")["errors"] == 0
    stats = explicit.get("/v2/models/text_recognition/stats")["model_stats"][0]
    sizes = {b["batch_size"] for b in stats["batch_stats"]}
    assert sizes and all(n % 2 == 0 and n <= 8 for n in sizes), sizes
    assert stats["inference_count"] >= 2 * 320


# ======================================================= Part 4: inference acceleration
P4 = CG / "Part_4-inference_acceleration/sample_configs"


def test_part4_tensorrt_sample_config_serves_on_the_cpu_provider(explicit, tmp_path):
    """ORT_TRT_config.pbtxt (gpu_execution_accelerator tensorrt, FP16,
    graph level 1, a batch-16 zero warm-up): SERVING.md says a library without
    TensorRT runs the model "on the providers it has, as a Triton CPU instance
    ignores GPU accelerators", with a warning. It loads, and README's
    `perf_analyzer -m text_recognition -b 16 --shape input.1:1,32,100
    --concurrency-range 2` (anemone bench) fails no request; a batch of 16
    answers as onnxruntime does."""
    loaded(explicit, "text_recognition", P4 / "ORT_TRT_config.pbtxt", {"1/model.onnx": ocr})
    x = np.random.default_rng(2).uniform(-1, 1, (16, 1, 32, 100)).astype(np.float32)
    np.testing.assert_allclose(infer(explicit, "text_recognition", {"input.1": x}, grpc=True).as_numpy("308"),
                               onnx_run(explicit.repo / "text_recognition/1/model.onnx", {"input.1": x})[0], rtol=1e-4, atol=1e-4)
    assert bench(explicit, "16,1,32,100", 2, 40, tmp_path / "r.json")["errors"] == 0


def test_part4_cuda_ep_sample_config_loads_its_gpu_parameters_ignored(explicit):
    """ORT_cuda_ep_config.pbtxt: `cudnn_conv_algo_search` and `gpu_mem_limit`
    are keys no part of anemone reads: ignored with a warning (SERVING.md, as
    Triton's backends ignore keys they do not read); the model serves."""
    loaded(explicit, "text_recognition", P4 / "ORT_cuda_ep_config.pbtxt", {"1/model.onnx": ocr})
    x = np.zeros((3, 1, 32, 100), np.float32)
    assert infer(explicit, "text_recognition", {"input.1": x}).as_numpy("308").shape == (3, 26, 37)


def test_part4_openvino_sample_config_is_refused_by_its_path(explicit):
    """ORT_openvino_config.pbtxt: SERVING.md says every
    `cpu_execution_accelerator` (OpenVINO) is refused by path; the message
    names the path and says to remove it."""
    msg = refused(explicit, "text_recognition", P4 / "ORT_openvino_config.pbtxt", {"1/model.onnx": ocr})
    assert "optimization.execution_accelerators.cpu_execution_accelerator[0]" in msg and "openvino" in msg
    assert "remove it" in msg


# ======================================================= Part 5: ensembles
def page_jpeg(path):
    img = np.full((256, 320, 3), 20, np.uint8)
    img[110:150, 100:230] = 240
    img[190:220, 60:200] = 250
    Image.fromarray(img).save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def part5(tmp_path_factory):
    """Part 5's repository: its three model.py files unchanged, with the
    cv2/torch/torchvision stand-ins beside the two that import them; EAST and
    ResNet stand-ins; `ensemble_model/1/` as the README's `mkdir` makes it."""
    base = tmp_path_factory.mktemp("part5")
    repo = base / "model_repository"
    shutil.copytree(P5, repo)
    (repo / "ensemble_model/1").mkdir()
    for m in ("detection_preprocessing", "detection_postprocessing"):
        shutil.copytree(FIX / "shims", repo / m / "1", dirs_exist_ok=True)
    east(repo / "text_detection/1/model.onnx")
    ocr(repo / "text_recognition/1/model.onnx")
    s = Server(repo, base, settle=("ensemble_model",))
    s.image = page_jpeg(base / "img1.jpg")
    yield s
    s.stop()


def part5_reference(s):
    """The pipeline run in this process: the same model.py files, onnxruntime
    (in the server's folder: detection_postprocessing saves tensor.pkl.npy)."""
    r = s.repo
    with shimmed(FIX / "shims", extra={"triton_python_backend_utils": fake_pb_utils()}), contextlib.chdir(r.parent):
        img = np.expand_dims(np.fromfile(s.image, dtype="uint8"), 0)
        pre = python_step(r / "detection_preprocessing/1/model.py", "detection_preprocessing_output", "TYPE_FP32",
                          {"detection_preprocessing_input": img})
        sc, geo = onnx_run(r / "text_detection/1/model.onnx", {"input_images:0": pre})
        crops = python_step(r / "detection_postprocessing/1/model.py", "detection_postprocessing_output", "TYPE_FP32",
                            {"detection_postprocessing_input_1": sc, "detection_postprocessing_input_2": geo,
                             "detection_postprocessing_input_3": pre})
        (rec,) = onnx_run(r / "text_recognition/1/model.onnx", {"input.1": crops})
        return python_step(r / "recognition_postprocessing/1/model.py", "recognition_postprocessing_output", "TYPE_STRING",
                           {"recognition_postprocessing_input": rec}).astype(str), crops


def test_part5_all_six_models_ready(part5):
    """`tritonserver --model-repository=/models` with the README's
    dependencies installed: the five steps and the ensemble READY."""
    assert {r["name"]: r["state"] for r in part5.index()} == {m: "READY" for m in (
        "detection_preprocessing", "text_detection", "detection_postprocessing", "text_recognition",
        "recognition_postprocessing", "ensemble_model")}


def test_part5_client_prints_the_recognised_text(part5):
    """Part 5's client.py (gRPC, the JPEG's bytes as UINT8 [1, n]) prints the
    texts the same pipeline gives in this process; so does HTTP. The
    detection step makes one crop per box found, so one request of batch 1
    becomes a batch of several crops for text_recognition (as in Triton)."""
    printed, _ = run_client("Conceptual_Guide/Part_5-Model_Ensembles/client.py", [
        ('url="localhost:8001"', f'url="{part5.grpc}"'), ('"img1.jpg"', repr(str(part5.image)))])
    expected, crops = part5_reference(part5)
    assert crops.shape[0] > 1 and crops.shape[1:] == (1, 32, 100)
    assert len(printed) == 1 and printed[0].tolist() == expected.tolist()
    r = infer(part5, "ensemble_model", {"input_image": np.expand_dims(np.fromfile(part5.image, dtype="uint8"), 0)})
    assert r.as_numpy("recognized_text").astype(str).tolist() == expected.tolist()  # and over HTTP
    assert r.get_response()["outputs"][0]["shape"] == [crops.shape[0]]


def test_part5_recognition_postprocessing_decodes_ctc(part5):
    """recognition_postprocessing's model.py needs only numpy: greedy CTC
    decoding of [N,26,37] scores (blank 0, repeats merged). One-hot scores
    spelling "hheel-lo" decode to "hello", all-blank to "". tritonserver 2.51
    answered the same (shape [2], a 1-D BYTES tensor, on dims [-1] with
    max_batch_size 256)."""
    sc = np.zeros((2, 26, 37), np.float32)
    sc[:, :, 0] = 0.5
    for i, ch in enumerate("hheel-lo"):
        if ch != "-":
            sc[0, i, ALPHABET.index(ch) + 1] = 1.0
    r = infer(part5, "recognition_postprocessing", {"recognition_postprocessing_input": sc})
    assert r.as_numpy("recognition_postprocessing_output").astype(str).tolist() == ["hello", ""]
    assert r.get_response()["outputs"][0]["shape"] == [2]


def test_part5_without_torch_and_cv2_the_steps_and_ensemble_say_why(explicit):
    """The repository as published, on an interpreter without the README's
    `pip install torchvision opencv-python-headless`: each of the two steps
    fails naming its missing module, and the ensemble names the step that
    failed. tritonserver 2.51: "ModuleNotFoundError: No module named 'torch'"
    with the traceback."""
    for m, module in (("detection_postprocessing", "cv2"), ("detection_preprocessing", "torch")):
        msg = refused(explicit, m, P5 / m / "config.pbtxt", {"1/model.py": P5 / m / "1/model.py"})
        assert f"No module named '{module}'" in msg
    for m in ("text_detection", "text_recognition"):
        assert explicit.deploy(m, P5 / m / "config.pbtxt", {"1/model.onnx": east if m == "text_detection" else ocr})[0] == 200
    assert explicit.deploy("recognition_postprocessing", P5 / "recognition_postprocessing/config.pbtxt",
                           {"1/model.py": P5 / "recognition_postprocessing/1/model.py"})[0] == 200
    msg = refused(explicit, "ensemble_model", P5 / "ensemble_model/config.pbtxt")
    assert "detection_preprocessing" in msg and "torch" in msg
    for m in ("text_detection", "text_recognition", "recognition_postprocessing"):
        requests.post(f"{explicit.url}/v2/repository/models/{m}/unload", json={})


def test_a_missing_package_says_to_install_it_for_the_models_interpreter(explicit):
    """Every Python model of the tutorials imports a package the README has
    the user `pip install` in Triton's container (torch, cv2, transformers).
    The model.py is fine: what to change is the interpreter's packages
    (SERVING.md: `--python`/ANEMONE_PYTHON "needs numpy, and whatever model.py
    imports"). anemone answered "...No module named 'cv2'; fix model.py"
    before session 41."""
    m = "detection_postprocessing"
    msg = refused(explicit, m, P5 / m / "config.pbtxt", {"1/model.py": P5 / m / "1/model.py"})
    interpreter = os.environ.get("ANEMONE_PYTHON", sys.executable)
    assert "fix model.py" not in msg and ("install" in msg.lower() or interpreter in msg), msg


def cli(*args, timeout=120):
    """An `anemone` subcommand's (exit status, stdout + stderr)."""
    env = dict(os.environ)
    env.setdefault("ANEMONE_PYTHON", sys.executable)
    p = subprocess.run([os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone")), *args], capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def part5_as_published(tmp_path_factory):
    repo = tmp_path_factory.mktemp("part5_published") / "model_repository"
    shutil.copytree(P5, repo)
    (repo / "ensemble_model/1").mkdir()
    east(repo / "text_detection/1/model.onnx")
    ocr(repo / "text_recognition/1/model.onnx")
    return repo


def test_doctor_on_part5_as_published_names_the_missing_modules(part5_as_published):
    """`anemone doctor --model-repository` (SERVING.md: "runs the same checks
    as serve and reports the same refusals") on Part 5 without torch and cv2:
    the two steps NOT LOADABLE, each naming its module; the ONNX models and
    recognition_postprocessing loadable."""
    status, out = cli("doctor", "--model-repository", str(part5_as_published))
    models = out[out.index("\nmodels"):]
    line = {l.split()[0]: l for l in models.splitlines()[1:] if l.startswith("  ") and not l.startswith("    ")}
    assert "NOT LOADABLE" in line["detection_preprocessing"] and "NOT LOADABLE" in line["detection_postprocessing"]
    assert "No module named 'torch'" in models and "No module named 'cv2'" in models
    assert all("can run" in line[m] for m in ("text_detection", "text_recognition", "recognition_postprocessing"))


def test_doctor_does_not_call_an_ensemble_of_unloadable_steps_runnable(part5_as_published):
    """serve leaves ensemble_model UNAVAILABLE ("composing model
    'detection_preprocessing' could not be loaded"); doctor answered
    "ensemble_model (ensemble): can run on ensemble" before session 41. Now
    NOT LOADABLE, naming the composing model."""
    status, out = cli("doctor", "--model-repository", str(part5_as_published))
    models = out[out.index("\nmodels"):].splitlines()
    at = next(i for i, l in enumerate(models) if l.startswith("  ensemble_model"))
    assert "NOT LOADABLE" in models[at], models[at]
    assert "composing model 'detection_preprocessing' could not be loaded" in models[at + 1], models[at:at + 3]


def test_models_command_warns_that_the_tensorrt_accelerator_is_missing(tmp_path):
    """`anemone models` (loads a repository as serve would) on Part 4's
    TensorRT sample: READY on onnxruntime, with the warning SERVING.md
    promises naming the missing TensorRT provider."""
    (tmp_path / "text_recognition/1").mkdir(parents=True)
    shutil.copy(P4 / "ORT_TRT_config.pbtxt", tmp_path / "text_recognition/config.pbtxt")
    ocr(tmp_path / "text_recognition/1/model.onnx")
    status, out = cli("models", "--model-repository", str(tmp_path))
    assert status == 0, out
    assert "READY" in out and "onnxruntime" in out
    assert "tensorrt" in out.lower() and "no such provider" in out, out


# ======================================================= Part 6: complex pipelines
P6 = CG / "Part_6-building_complex_pipelines/model_repository"


def test_part6_vae_tensorrt_plan_is_refused_saying_what_to_set(explicit):
    """vae is `platform: "tensorrt_plan"`: anemone has no TensorRT backend
    (FROM_TRITON.md "Not there"); the message names the platform and what to
    set. tritonserver 2.51 without it: "unable to find backend library for
    backend 'tensorrt'"."""
    msg = refused(explicit, "vae", P6 / "vae/config.pbtxt")
    assert "tensorrt_plan" in msg and "onnxruntime_onnx" in msg


def test_part6_text_encoder_on_cpu_serves_as_onnxruntime(explicit):
    """text_encoder (ONNX, KIND_GPU, graph level 1, execution_mode 1): on
    this machine refused for KIND_GPU; with KIND_CPU it loads and a batch of
    2 token sequences gives onnxruntime's pooler_output and last_hidden_state."""
    msg = refused(explicit, "text_encoder", P6 / "text_encoder/config.pbtxt", {"1/model.onnx": clip_text})
    assert "KIND_GPU" in msg
    loaded(explicit, "text_encoder", P6 / "text_encoder/config.pbtxt", {"1/model.onnx": clip_text}, sub=[("KIND_GPU", "KIND_CPU")])
    ids = np.random.default_rng(3).integers(0, 64, (2, 7)).astype(np.int32)
    r = infer(explicit, "text_encoder", {"input_ids": ids})
    pooled, hidden = onnx_run(explicit.repo / "text_encoder/1/model.onnx", {"input_ids": ids})
    np.testing.assert_allclose(r.as_numpy("pooler_output"), pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.as_numpy("last_hidden_state"), hidden, rtol=1e-5, atol=1e-5)


GPU_PYTHON = {  # Python models whose config asks for KIND_GPU
    "pipeline": P6 / "pipeline",
    "python_vit": FIX / "HuggingFace/python_model_repository/python_vit",
    "preprocessing": FIX / "HuggingFace/ensemble_model_repository/preprocessing",
    "llava-1.5": FIX / "Popular_Models_Guide/Llava1.5/model_repository/llava-1.5",
    "vision_encoder": FIX / "Popular_Models_Guide/Llava1.5/model_repository/vision_encoder",
}


@pytest.mark.parametrize("name", sorted(GPU_PYTHON))
def test_python_models_with_kind_gpu_are_refused_naming_the_kind_to_use(explicit, name):
    """Part 6's pipeline, HuggingFace's python_vit and preprocessing,
    Llava's llava-1.5 and vision_encoder: `KIND_GPU` (some with `gpus: [0]`)
    on a machine without a GPU is refused before model.py is imported
    (SERVING.md, "as Triton refuses it"); the message says to use KIND_CPU.
    tritonserver 2.51: "instance group <m>_0 of model <m> has kind KIND_GPU
    but no GPUs are available" (vision_encoder: "invalid or unsupported gpu id 0")."""
    d = GPU_PYTHON[name]
    msg = refused(explicit, name, d / "config.pbtxt", {"1/model.py": d / "1/model.py"})
    assert "KIND_GPU" in msg and "KIND_CPU" in msg and "No module" not in msg, msg


@pytest.mark.parametrize("name,module", [("pipeline", "torch"), ("llava-1.5", "torch"), ("vision_encoder", "tensorrt")])
def test_python_models_moved_to_cpu_then_name_their_missing_package(explicit, name, module):
    """The user's next step: KIND_CPU (and `gpus` removed, which KIND_CPU may
    not have, as in Triton): the load now imports model.py and names the
    package missing. vision_encoder's config names no backend: its model.py
    makes it a Python model, as in tritonserver 2.51 (which answered "No
    module named 'tensorrt'")."""
    d = GPU_PYTHON[name]
    msg = refused(explicit, name, d / "config.pbtxt", {"1/model.py": d / "1/model.py"},
                  sub=[("KIND_GPU", "KIND_CPU")] + ([("gpus: [ 0 ]", "")] if "gpus: [ 0 ]" in (d / "config.pbtxt").read_text() else []))
    assert f"No module named '{module}'" in msg


# ======================================================= Part 7: iterative scheduling
P7 = CG / "Part_7-iterative_scheduling/model_repository"


def test_part7_iterative_scheduling_generates_a_token_a_run(explicit):
    """iterative-gpt2's config as published (`sequence_batching {
    iterative_sequence: true, control_input [correlation_id, start, end],
    oldest {} }`), KIND_CPU, with a model.py that follows the tutorial's
    protocol without torch (one "token" a run, the next letter; the request
    rescheduled until max_tokens): a request of "abc" with max_tokens 4
    streams d, e, f, g, the last with the final flag, each run given the
    correlation_id and start controls; two requests at once get their own
    sequences. tritonserver 2.51 loads the tutorial's config too (its model
    needs a GPU there)."""
    loaded(explicit, "iterative-gpt2", P7 / "iterative-gpt2/config.pbtxt",
           {"1/model.py": FIX / "part7_gpt2_standin.py"}, sub=[("KIND_GPU", "KIND_CPU")])
    got = queue.Queue()
    client = grpcclient.InferenceServerClient(explicit.grpc)
    client.start_stream(callback=lambda result, error: got.put(error or result))
    for i, prompt in enumerate(["abc", "xy"]):
        text = grpcclient.InferInput("text_input", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[prompt.encode()]], dtype=object))
        client.async_stream_infer("iterative-gpt2", [text], request_id=str(i),
                                  parameters={"max_tokens": 4, "ignore_eos": True})
    tokens = {"0": [], "1": []}
    finals = 0
    while finals < 2:
        r = got.get(timeout=60)
        assert not isinstance(r, Exception), str(r)
        response = r.get_response()
        tokens[response.id].append(r.as_numpy("text_output").ravel()[0].decode())
        finals += response.parameters["triton_final_response"].bool_param
    client.stop_stream()
    client.close()
    assert tokens == {"0": ["d", "e", "f", "g"], "1": ["z", "a", "b", "c"]}, tokens


@pytest.mark.parametrize("name", ["iterative-gpt2", "simple-gpt2"])
def test_part7_config_refusals_are_not_hidden_behind_model_py_imports(explicit, name):
    """Part 7's configs as published (KIND_GPU) with their model.py (torch, transformers). tritonserver
    2.51 answers "instance group <m>_0 of model <m> has kind KIND_GPU but no
    GPUs are available" for both, before it imports model.py. anemone runs
    auto_complete_config first and answered only "No module named 'torch'"
    before session 41: a user installed torch and transformers to learn that
    the config cannot load here (SERVING.md: all refused fields are reported
    together)."""
    msg = refused(explicit, name, P7 / name / "config.pbtxt", {"1/model.py": P7 / name / "1/model.py"})
    assert "KIND_GPU" in msg, msg


# ======================================================= Feature_Guide/Data_Pipelines
DP = FIX / "Feature_Guide/Data_Pipelines/model_repository"


def readme_ensemble_config(scheduling):
    """The ensemble config Data_Pipelines' README shows, its "..." filled in from model1's config."""
    kinds = [("string", "TYPE_STRING", "[-1]"), ("UINT8_array", "TYPE_UINT8", "[-1]"), ("INT8_array", "TYPE_INT8", "[-1]"),
             ("FP32_image", "TYPE_FP32", "[-1, -1, -1]"), ("bool", "TYPE_BOOL", "[-1]")]
    io = lambda d: ",\n".join(f'  {{ name: "ensemble_{d}_{k}" data_type: {t} dims: {dims} }}' for k, t, dims in kinds)
    return f'name: "ensemble_model"\nplatform: "ensemble"\nmax_batch_size: 8\ninput [\n{io("input")}\n]\noutput [\n{io("output")}\n]\n{scheduling}'


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Data_Pipelines' repository as committed, in poll mode: the index is
    read as the user first sees it, then the ensemble's config is put where
    (and as) the README shows it, and the poll loads it."""
    base = tmp_path_factory.mktemp("pipelines")
    repo = base / "model_repository"
    shutil.copytree(DP, repo)
    s = Server(repo, base, "--model-control-mode", "poll", "--repository-poll-secs", "1",
               settle=("model1", "model2", "ensemble_model"))
    s.first_index = {r["name"]: r for r in s.index()}
    s.first_ready = requests.get(f"{s.url}/v2/health/ready").status_code
    committed = repo / "ensemble_model/1/config.pbtxt"
    (repo / "ensemble_model/config.pbtxt").write_text(readme_ensemble_config(committed.read_text()))
    committed.unlink()
    until(lambda: s.row("ensemble_model").get("state") == "READY", 60, "the fixed ensemble")
    yield s
    s.stop()


def test_data_pipelines_as_committed_serves_the_python_models_only(pipelines):
    """The committed repository has no `ensemble_model/config.pbtxt` (it is in
    `1/`): model1 and model2 load, the ensemble does not, and the server stays
    up but not ready (FROM_TRITON.md: `--exit-on-error` is false by default;
    tritonserver 2.51 exits "failed to load all models", its log saying
    "Could not determine backend for model 'ensemble_model' with no backend
    in model configuration")."""
    rows = pipelines.first_index
    assert (rows["model1"]["state"], rows["model2"]["state"], rows["ensemble_model"]["state"]) == ("READY", "READY", "UNAVAILABLE")
    assert pipelines.first_ready == 503


def test_data_pipelines_reason_points_at_the_misplaced_config(pipelines):
    """Before session 41 anemone's reason was "no version directories (e.g.
    1/) with a model file; put the model in <model>/1/", though `1/` exists
    and an ensemble has no model file: what to change is where config.pbtxt
    is."""
    reason = pipelines.first_index["ensemble_model"]["reason"]
    assert "config.pbtxt" in reason, reason


def test_data_pipelines_client_round_trips_all_five_tensors(pipelines):
    """After the fix, the README's client.py (HTTP, binary data) sends a
    string, UINT8 and INT8 arrays, an FP32 image and a BOOL through
    model1 -> model2 and prints each back unchanged (tritonserver 2.51: the
    same five arrays)."""
    image = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    printed, _ = run_client("Feature_Guide/Data_Pipelines/client.py", [
        ('url="localhost:8000"', f'url="{pipelines.http}"'),
        ("Image.open(requests.get(url, stream=True).raw)", "Image.fromarray(IMAGE)")], IMAGE=image)
    assert len(printed) == 5
    assert printed[0].tolist() == [[b"This is a string"]]
    assert printed[1].dtype == np.uint8 and printed[1].tolist() == [[1, 2, 3]]
    assert printed[2].dtype == np.int8 and printed[2].tolist() == [[-1, 2, -3]]
    np.testing.assert_array_equal(printed[3], image[None].astype(np.float32))
    assert printed[4].dtype == np.bool_ and printed[4].tolist() == [[True]]


def test_data_pipelines_a_composing_model_answers_directly(pipelines):
    """README: "If you want to query one of the composing models
    individually, you can change the input names, output names, and model
    name": model2 over gRPC with a batch of 2."""
    feeds = {"model_2_input_string": np.array([[b"a", b"bc"], [b"", b"\x00z"]], dtype=object),
             "model_2_input_UINT8_array": np.array([[0, 255], [7, 8]], np.uint8),
             "model_2_input_INT8_array": np.array([[-128, 127], [0, 1]], np.int8),
             "model_2_input_FP32_image": np.random.default_rng(1).normal(size=(2, 2, 3, 3)).astype(np.float32),
             "model_2_input_bool": np.array([[True, False], [False, True]])}
    r = infer(pipelines, "model2", feeds, grpc=True)
    for name, a in feeds.items():
        np.testing.assert_array_equal(r.as_numpy(name.replace("input", "output")), a)


def test_an_ensemble_without_its_empty_version_folder_is_served_as_version_1(explicit):
    """The READMEs have the user `mkdir ensemble_model/1` ("Empty version
    folder required for ensemble models"). Without it tritonserver 2.51
    answers "Not loaded: No model version was found"; anemone serves the
    ensemble as version 1 (documented: ENSEMBLES.md "or 1 without one")."""
    for m in ("model1", "model2"):
        loaded(explicit, m, DP / m / "config.pbtxt", {"1/model.py": DP / m / "1/model.py"})
    d = explicit.repo / "ensemble_model"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / "config.pbtxt").write_text(readme_ensemble_config((DP / "ensemble_model/1/config.pbtxt").read_text()))
    r = requests.post(f"{explicit.url}/v2/repository/models/ensemble_model/load", json={})
    assert r.status_code == 200, r.text
    assert explicit.get("/v2/models/ensemble_model")["versions"] == ["1"]
    feeds = {"ensemble_input_string": np.array([[b"x"]], dtype=object), "ensemble_input_UINT8_array": np.array([[9]], np.uint8),
             "ensemble_input_INT8_array": np.array([[-9]], np.int8), "ensemble_input_FP32_image": np.ones((1, 1, 2, 3), np.float32),
             "ensemble_input_bool": np.array([[False]])}
    r = infer(explicit, "ensemble_model", feeds)
    assert r.get_response()["model_version"] == "1" and r.as_numpy("ensemble_output_INT8_array").tolist() == [[-9]]


# ======================================================= HuggingFace
HF = FIX / "HuggingFace/ensemble_model_repository"


def test_huggingface_ensemble_with_an_autocompleted_vit_runs_the_client(explicit):
    """Approach 2: preprocessing (KIND_CPU; ViTFeatureExtractor stood in),
    vit as the README puts it (`vit/1/model.onnx`, no config: filled in from
    the file) and the ensemble (max_batch_size 4, model_version 1). The
    client prints last_hidden_state's shape; the values equal onnxruntime's
    on the same preprocessing."""
    assert loaded(explicit, "preprocessing", HF / "preprocessing/config.pbtxt",
                  {"1/model.py": HF / "preprocessing/1/model.py", "1/transformers.py": FIX / "shims_hf/transformers.py"},
                  sub=[("KIND_GPU", "KIND_CPU")])
    shutil.rmtree(explicit.repo / "vit", ignore_errors=True)
    vit(explicit.repo / "vit/1/model.onnx")
    loaded(explicit, "ensemble_model", HF / "ensemble_model/config.pbtxt")
    image = np.random.default_rng(2).uniform(0, 255, (240, 320, 3)).astype(np.float32)
    printed, ns = run_client("HuggingFace/client.py", [
        ('url="localhost:8000"', f'url="{explicit.http}"'), ("Image.open(requests.get(url, stream=True).raw)", "IMAGE"),
        ("    main(args.model_name)", '    main("ensemble_model")'), ("args = parser.parse_args()", "")], IMAGE=image)
    assert printed == [(1, 196, 768)]
    with shimmed(FIX / "shims_hf"):
        import transformers
        pixels = transformers.ViTFeatureExtractor()(images=image.transpose(2, 0, 1))["pixel_values"].numpy()
    hidden = onnx_run(explicit.repo / "vit/1/model.onnx", {"pixel_values": pixels})[0]
    r = infer(explicit, "ensemble_model", {"image": image[None]}, outputs=["last_hidden_state", "1519"])
    np.testing.assert_allclose(r.as_numpy("last_hidden_state"), hidden, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.as_numpy("1519"), hidden.mean(axis=1), rtol=1e-4, atol=1e-4)


def test_huggingface_autocompleted_vit_has_no_batch_dimension(explicit):
    """The config filled in for vit: anemone leaves `max_batch_size: 0` and
    no dynamic batcher, where Triton's ONNX Runtime backend sets 4 and adds
    `dynamic_batching` (documented: FROM_TRITON.md "One difference when a
    config leaves the inputs or outputs out"); the ensemble (max_batch_size 4)
    still loads, as Triton lets a batching ensemble hold non-batching models."""
    if not (explicit.repo / "vit/1/model.onnx").exists():
        vit(explicit.repo / "vit/1/model.onnx")
    requests.post(f"{explicit.url}/v2/repository/models/vit/load", json={}).raise_for_status()
    cfg = explicit.get("/v2/models/vit/config")
    assert cfg.get("max_batch_size", 0) == 0 and "dynamic_batching" not in cfg
    assert [(i["name"], i["dims"]) for i in cfg["input"]] == [("pixel_values", [-1, -1, -1, -1])]


# ======================================================= Quick_Deploy
def test_quick_deploy_onnx_densenet_without_config_classifies(explicit, tmp_path):
    """Quick_Deploy/ONNX: `densenet_onnx/1/model.onnx` and no config; its
    client asks `fc6_1` with `class_count=1000` and prints the first 5 of
    `"<score>:<index>"`, highest first, as the README shows. The scores and
    indices are the numpy top 5 of onnxruntime's output."""
    shutil.rmtree(explicit.repo / "densenet_onnx", ignore_errors=True)
    model = densenet(explicit.repo / "densenet_onnx/1/model.onnx")
    requests.post(f"{explicit.url}/v2/repository/models/densenet_onnx/load", json={}).raise_for_status()
    img = Image.fromarray(np.random.default_rng(4).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    img.save(tmp_path / "img1.jpg")
    with shimmed(FIX / "shims"):
        printed, ns = run_client("Quick_Deploy/ONNX/client.py", [
            ('url="localhost:8000"', f'url="{explicit.http}"'), ('img_path="img1.jpg"', f'img_path={str(tmp_path / "img1.jpg")!r}')])
    (out,) = onnx_run(model, {"data_0": ns["transformed_img"]})
    top = np.argsort(-out.ravel(), kind="stable")[:5]
    got = [s.split(":") for s in printed[0]]
    assert [int(i) for _, i in got] == top.tolist()
    np.testing.assert_allclose([float(v) for v, _ in got], out.ravel()[top], rtol=1e-4)
    assert np.squeeze(ns["inference_output"]).shape == (1000,)


@pytest.mark.parametrize("framework,platform", [("PyTorch", "pytorch_libtorch"), ("TensorFlow", "tensorflow_savedmodel")])
def test_quick_deploy_pytorch_and_tensorflow_are_refused_naming_the_platform(explicit, framework, platform):
    """Quick_Deploy's resnet50 configs: no PyTorch or TensorFlow backend in
    anemone (FROM_TRITON.md "Not there"); the message names the platform and
    that anemone runs ONNX (`onnxruntime_onnx`). tritonserver 2.51 without
    them: "unable to find backend library for backend 'pytorch'"."""
    msg = refused(explicit, "resnet50", FIX / "Quick_Deploy" / framework / "config.pbtxt")
    assert platform in msg and "onnxruntime_onnx" in msg and "ONNX" in msg


def test_quick_deploy_openvino_readme_config_is_refused_naming_the_backend(explicit):
    """Quick_Deploy/OpenVINO's README config (`backend: "openvino"`,
    `default_model_filename: "model.onnx"`) for the same densenet: refused,
    saying to set `backend: "onnxruntime"`, which serves the file."""
    cfg = 'name: "densenet_onnx"\nbackend: "openvino"\ndefault_model_filename: "model.onnx"\n'
    msg = refused(explicit, "densenet_onnx", cfg, {"1/model.onnx": densenet})
    assert '"openvino"' in msg and 'backend: "onnxruntime"' in msg
    assert loaded(explicit, "densenet_onnx", cfg.replace("openvino", "onnxruntime"), {"1/model.onnx": densenet})


@pytest.mark.parametrize("name", ["falcon7b", "llama7b", "persimmon8b"])
def test_quick_deploy_huggingface_transformers_name_the_missing_torch(explicit, name):
    """Quick_Deploy/HuggingFaceTransformers: each model.py imports torch and
    transformers (the README's Dockerfile installs them): the load names
    torch. tritonserver 2.51: "ModuleNotFoundError: No module named 'torch'"."""
    d = FIX / "Quick_Deploy/HuggingFaceTransformers" / name
    msg = refused(explicit, name, d / "config.pbtxt", {"1/model.py": d / "1/model.py"})
    assert "No module named 'torch'" in msg


# ======================================================= LLM and diffusion guides
VLLM = {"base_model": FIX / "Feature_Guide/Speculative_Decoding/vLLM/model_repository/base_model",
        "eagle_model": FIX / "Feature_Guide/Speculative_Decoding/vLLM/model_repository/eagle_model",
        "opt_model": FIX / "Feature_Guide/Speculative_Decoding/vLLM/model_repository/opt_model",
        "llama2vllm": FIX / "Popular_Models_Guide/Llama2/llama2vllm"}


@pytest.mark.parametrize("name", sorted(VLLM))
def test_vllm_models_are_refused_naming_the_backend(explicit, name):
    """`backend: "vllm"` with `model.json` (Speculative_Decoding, Llama2):
    refused naming the backend and the ones anemone runs, and nothing else:
    Llama2's `kind: KIND_MODEL` is what a Python model (which the message
    advises) takes, so it is not refused beside it. tritonserver 2.51
    without vLLM: "unable to find backend library for backend 'vllm'"."""
    msg = refused(explicit, name, VLLM[name] / "config.pbtxt", {"1/model.json": VLLM[name] / "1/model.json"})
    assert '"vllm"' in msg and "onnxruntime" in msg and "python" in msg
    assert "KIND_MODEL" not in msg, msg


def test_tensorrt_llm_is_refused_for_its_backend_alone(explicit):
    """Llava's tensorrt_llm config: refused for its backend `tensorrtllm`
    alone. Its ragged batching (`allow_ragged_batch`) loads since session 57
    (SERVING.md, "Ragged batching"), and `decoupled`, which the Python model
    the backend's refusal advises takes, is not refused beside it (it was
    until session 42)."""
    msg = refused(explicit, "tensorrt_llm", FIX / "Popular_Models_Guide/Llava1.5/model_repository/tensorrt_llm/config.pbtxt")
    assert '"tensorrtllm"' in msg and "python" in msg
    assert "allow_ragged_batch" not in msg and "model_transaction_policy.decoupled" not in msg, msg


@pytest.mark.parametrize("name", ["stable_diffusion_1_5", "stable_diffusion_xl"])
def test_stable_diffusion_is_refused_naming_its_python_based_backend(explicit, name):
    """`backend: "diffusion"` (a Python-based backend the guide builds into
    its own image): refused naming it. tritonserver 2.51 without it:
    "unable to find backend library for backend 'diffusion'"."""
    msg = refused(explicit, name, FIX / "Popular_Models_Guide/StableDiffusion/diffusion-models" / name / "config.pbtxt")
    assert '"diffusion"' in msg and "python" in msg


# ======================================================= Triton_Inference_Server_Python_API
ID = FIX / "Triton_Inference_Server_Python_API/identity-models/identity"
ID_TYPES = {"bool": np.bool_, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
            "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "fp16": np.float16,
            "fp32": np.float32, "fp64": np.float64, "string": np.object_}


@pytest.fixture(scope="module")
def identity(explicit):
    loaded(explicit, "identity", ID / "config.pbtxt", {"1/model.py": ID / "1/model.py"})
    return explicit


def test_identity_auto_complete_adds_an_optional_input_per_type(identity):
    """The identity model's `auto_complete_config` adds `<type>_input` /
    `<type>_output` ([-1, -1], optional) for every type of
    `pb_utils.TRITON_STRING_TO_NUMPY`, keeping the two the config lists first,
    with max_batch_size 0 and decoupled false; tritonserver 2.51's config had
    the same 13 inputs in the same order."""
    cfg = identity.get("/v2/models/identity/config")
    names = ["string", "fp16", "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "fp32", "fp64"]
    assert [i["name"] for i in cfg["input"]] == [f"{n}_input" for n in names]
    assert all(i["dims"] == [-1, -1] and i["optional"] for i in cfg["input"])
    assert [o["name"] for o in cfg["output"]] == [f"{n}_output" for n in names]
    assert cfg.get("max_batch_size", 0) == 0 and not cfg["model_transaction_policy"].get("decoupled", False)


@pytest.mark.parametrize("grpc", [False, True], ids=["http", "grpc"])
def test_identity_hello_world(identity, grpc):
    """README: `model.infer(inputs={"string_input": [["hello world!"]]})` prints
    `[['hello world!']]`: only string_output comes back (the model answers
    only the inputs it was given; tritonserver 2.51 the same)."""
    r = infer(identity, "identity", {"string_input": np.array([["hello world!"]], dtype=object)}, grpc=grpc)
    assert r.as_numpy("string_output").tolist() == [[b"hello world!"]]
    outs = r.get_response(as_json=True)["outputs"] if grpc else r.get_response()["outputs"]
    assert [o["name"] for o in outs] == ["string_output"]


def test_identity_every_datatype_round_trips(identity):
    """"sending input tensors of different data types": each of the 13 types
    as a [2, 3] tensor, all in one request, comes back unchanged."""
    rng = np.random.default_rng(5)
    feeds = {}
    for n, t in ID_TYPES.items():
        if t is np.object_:
            a = np.array([[b"a", b"", b"\xff\x00"], [b"xyz", b"1", b"2"]], dtype=object)
        elif t is np.bool_:
            a = rng.integers(0, 2, (2, 3)).astype(bool)
        elif np.issubdtype(t, np.integer):
            a = rng.integers(np.iinfo(t).min, np.iinfo(t).max, (2, 3), dtype=t, endpoint=True)
        else:
            a = rng.normal(0, 100, (2, 3)).astype(t)
        feeds[f"{n}_input"] = a
    r = infer(identity, "identity", feeds)
    for name, a in feeds.items():
        got = r.as_numpy(name.replace("_input", "_output"))
        assert got.dtype == a.dtype, name
        np.testing.assert_array_equal(got, a)


def test_kafka_tokenizer_names_the_missing_transformers(explicit):
    """The kafka-io example's tokenizer imports transformers' BertTokenizerFast:
    the load names the module (tritonserver 2.51: "No module named 'transformers'")."""
    d = FIX / "Triton_Inference_Server_Python_API/examples/kafka-io/models/tokenizer"
    msg = refused(explicit, "tokenizer", d / "config.pbtxt", {"1/model.py": d / "1/model.py"})
    assert "No module named 'transformers'" in msg


# ======================================================= every config
def test_every_tutorial_config_loads_or_is_refused_promptly(explicit):
    """Each of the 39 configs (36 config.pbtxt, Part 4's 3 samples), with the model file it names where one can be
    generated (and its model.py), is answered within a minute: loaded (200),
    or refused with "failed to load" and a reason; the server stays live and
    keeps serving what it had loaded (identity) throughout."""
    writers = {"text_detection": east, "text_recognition": ocr, "text_encoder": clip_text}
    configs = sorted(FIX.rglob("*.pbtxt"))
    assert len(configs) == 39
    for cfg in configs:
        name = cfg.parent.parent.name if cfg.parent.name == "1" else cfg.parent.name
        if cfg.parent.name == "sample_configs":
            name = "text_recognition"
        files = {f"1/{p.name}": p for p in (cfg.parent / "1").glob("model.*")} if (cfg.parent / "1").is_dir() else {}
        if name in writers:
            files["1/model.onnx"] = writers[name]
        t = time.time()
        status, msg = explicit.deploy(name, cfg, files)
        assert time.time() - t < 60, f"{cfg} took {time.time() - t:.0f} s"
        assert status == 200 or (status in (400, 404) and msg.startswith("failed to load") and len(msg) > 40), (cfg, status, msg)
        assert requests.get(f"{explicit.url}/v2/health/live").status_code == 200
    loaded(explicit, "identity", ID / "config.pbtxt", {"1/model.py": ID / "1/model.py"})
    r = infer(explicit, "identity", {"int32_input": np.arange(4, dtype=np.int32).reshape(2, 2)})
    assert r.as_numpy("int32_output").tolist() == [[0, 1], [2, 3]]
