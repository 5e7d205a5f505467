"""ONNX models as users' exporters write them, served by anemone on both of
its ONNX engines (tract-cpu and onnxruntime), with and without config.pbtxt.

Users do not write ONNX graphs by hand: they export them from scikit-learn
(skl2onnx), LightGBM and XGBoost (onnxmltools), PyTorch (torch.onnx.export)
or TensorFlow/Keras (tf2onnx) and drop the file into a Triton-style
repository, often with no config.pbtxt (auto-complete) or with the config
Triton's docs show. The files are in fixtures/exported_models/ (a few KB
each; make_fixtures.py there rebuilds them and says which package versions
made them). torch and tf2onnx are too large to install here, so their graphs
are written with onnx.helper the way those exporters write them (names such
as `input.1`, `/layer1/relu/Relu_output_0`, `onnx::Gemm_0`, `input_1:0`,
`StatefulPartitionedCall/...:0`; dynamic axes `batch_size` and `unk__21`).
The opset sweep (opsets 7 to 21, IR versions 3 to 10) is built here with
the onnx package.

Every reference comes from onnxruntime's Python API (in .venv), run at test
time on the same file. What must hold for each model: correct outputs over
tritonclient HTTP (JSON and binary) and gRPC, a config from auto-complete
that describes the model as onnxruntime does, or a clear load error naming
what is unsupported, with the server serving the other models.

Two servers run, one per engine, started as `--backends <engine>` (no
--strict, so that a model whose own config lists more backends can move to
its next one) with `--strict-readiness false` (the repository holds models
that must be refused). Where anemone differs from Triton and the docs say
so, the test asserts the documented behaviour and cites the doc; where it
differs undocumented, the test asserts the right behaviour and is
xfail(strict=True, reason="DEFECT: ...").

tritonserver 2.51 (the CPU peer, Python backend only, no onnxruntime
backend) was asked on 2026-12-06 where a Python stand-in could answer the
same question; its answers are in the docstrings.
"""
import concurrent.futures
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from serve_support import ROOT, start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

FIX = Path(__file__).resolve().parent / "fixtures" / "exported_models"
ENGINES = ["tract-cpu", "onnxruntime"]

# Models every engine must either serve correctly or refuse at load naming
# the operator it lacks (tract-cpu has few ai.onnx.ml operators).
SERVABLE = [
    "skl_logreg", "skl_gb_clf", "skl_svc", "skl_rf_strlabels", "skl_onehot_logreg", "skl_ridge", "skl_gbr",
    "skl_normalizer", "skl_int64_logreg", "skl_rf_binary", "skl_gb_binary", "skl_kbins", "lgbm_clf",
    "lgbm_binary", "xgb_binary", "xgb_reg", "torch_cnn", "torch_mlp_names",
    "torch_embedding", "fp16_io", "fp16_keep_io", "tf_keras", "legacy_initializer_inputs",
    "unknown_output_shape", "external_data", "metadata_two_outputs",
]
# Models whose signature holds values anemone does not carry.
REFUSED = ["skl_logreg_zipmap", "skl_rf_strlabels_zipmap", "skl_dictvec", "bf16_io"]
OPSETS = list(range(7, 22))
IR_OF_OPSET = {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}

# Defects found here on 2026-12-06 and fixed the same day (each test below
# failed before its fix):
# - tract-cpu loaded skl_kbins (Concat: "Illegal combination of values for
#   rank and axis"), fp16_io and fp16_keep_io (a float16 Gemm: "Output
#   mismatch after rewiring expansion") READY, planning per input shape, and
#   then every request failed with 400 "the model cannot run on input 'x' as
#   sent", so with `backends: "tract-cpu,onnxruntime"` onnxruntime never took
#   over. tract-cpu now checks at load that it can plan the model at a sample
#   shape, and refuses it naming both failures (BACKENDS.md, "How a model is
#   prepared").
# - skl_rf_strlabels answered 500 "String doesn't implement
#   num_traits::Zero" on tract-cpu, and the binary forests' `label` differed
#   from onnxruntime's (RandomForest: 0 for every row; LightGBM: 0 and 1
#   swapped) with the right probabilities. anemone now computes a
#   TreeEnsembleClassifier's label from its scores (tract/ops/tree_labels.rs).
TRACT_CANNOT_PLAN = {"skl_kbins", "fp16_io", "fp16_keep_io"}


def cfg(name, body, backends=None):
    text = f'name: "{name}"\nplatform: "onnxruntime_onnx"\n{body}'
    if backends:
        text += f'parameters {{ key: "backends" value: {{ string_value: "{backends}" }} }}\n'
    return text


# Configs as Triton's docs write them for these models (name -> (fixture, config)).
CONFIGS = {
    # skl2onnx classifier, batched: label is [batch] in the model, [batch, 1] on the wire.
    "skl_logreg_cfg": ("skl_logreg", cfg("skl_logreg_cfg", """max_batch_size: 8
input [ { name: "float_input" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
""")),
    "skl_int64_logreg_cfg": ("skl_int64_logreg", cfg("skl_int64_logreg_cfg", """max_batch_size: 8
input [ { name: "int_input" data_type: TYPE_INT64 dims: [ 4 ] } ]
output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] } ]
dynamic_batching { max_queue_delay_microseconds: 20000 }
""")),
    "skl_rf_strlabels_cfg": ("skl_rf_strlabels", cfg("skl_rf_strlabels_cfg", """max_batch_size: 0
input [ { name: "float_input" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "label" data_type: TYPE_STRING dims: [ -1 ] },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]
""", backends="onnxruntime")),
    "skl_onehot_cfg": ("skl_onehot_logreg", cfg("skl_onehot_cfg", """max_batch_size: 0
input [ { name: "cat" data_type: TYPE_STRING dims: [ -1, 2 ] } ]
output [ { name: "label" data_type: TYPE_INT64 dims: [ -1 ] },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
""", backends="onnxruntime")),
    # String tensors in dynamic batches (both pinned to onnxruntime, which has the operators).
    "skl_onehot_batched": ("skl_onehot_logreg", cfg("skl_onehot_batched", """max_batch_size: 8
input [ { name: "cat" data_type: TYPE_STRING dims: [ 2 ] } ]
output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 50000 }
""", backends="onnxruntime")),
    "skl_rf_strlabels_batched": ("skl_rf_strlabels", cfg("skl_rf_strlabels_batched", """max_batch_size: 8
input [ { name: "float_input" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "label" data_type: TYPE_STRING dims: [ 1 ] reshape { shape: [ ] } },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] } ]
dynamic_batching { max_queue_delay_microseconds: 50000 }
""", backends="onnxruntime")),
    "torch_cnn_cfg": ("torch_cnn", cfg("torch_cnn_cfg", """max_batch_size: 4
input [ { name: "input.1" data_type: TYPE_FP32 dims: [ 1, 4, 4 ] } ]
output [ { name: "17" data_type: TYPE_FP32 dims: [ 3 ] },
         { name: "/layer1/relu/Relu_output_0" data_type: TYPE_FP32 dims: [ 2, 4, 4 ] } ]
dynamic_batching { }
""")),
    # Class labels for the probabilities (Triton's classification extension).
    "skl_int64_labels_cfg": ("skl_int64_logreg", cfg("skl_int64_labels_cfg", """max_batch_size: 8
input [ { name: "int_input" data_type: TYPE_INT64 dims: [ 4 ] } ]
output [ { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape { shape: [ ] } },
         { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "iris_labels.txt" } ]
""")),
    # Two outputs in the model, one in the config.
    "two_outputs_one_cfg": ("metadata_two_outputs", cfg("two_outputs_one_cfg", """max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]
""")),
    "unknown_output_shape_cfg": ("unknown_output_shape", cfg("unknown_output_shape_cfg", """max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]
output [ { name: "out" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]
""")),
    # An old exporter's initializer listed as an input, named in the config.
    "legacy_w_cfg": ("legacy_initializer_inputs", cfg("legacy_w_cfg", """max_batch_size: 0
input [ { name: "data" data_type: TYPE_FP32 dims: [ -1, 4 ] },
        { name: "W" data_type: TYPE_FP32 dims: [ 4, 2 ] } ]
output [ { name: "prob" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
""")),
    "bf16_cfg": ("bf16_io", cfg("bf16_cfg", """max_batch_size: 0
input [ { name: "x" data_type: TYPE_BF16 dims: [ -1, 4 ] } ]
output [ { name: "y" data_type: TYPE_BF16 dims: [ -1, 4 ] } ]
""")),
    # A ZipMap model whose config lists only the tensor output.
    "zipmap_label_only_cfg": ("skl_logreg_zipmap", cfg("zipmap_label_only_cfg", """max_batch_size: 0
input [ { name: "float_input" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]
output [ { name: "output_label" data_type: TYPE_INT64 dims: [ -1 ] } ]
""")),
    # A user's own order: tract first, onnxruntime standing by.
    "fp16_keep_io_ordered": ("fp16_keep_io", cfg("fp16_keep_io_ordered", "", backends="tract-cpu,onnxruntime")),
    "skl_rf_strlabels_ordered": ("skl_rf_strlabels",
                                 cfg("skl_rf_strlabels_ordered", "", backends="tract-cpu,onnxruntime")),
}
ODD_NAME = "tf.keras:v1"  # a model folder with '.' and ':' in its name (serving tf_keras.onnx)

IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.9, 3.0, 5.1, 1.8],
                 [4.8, 3.4, 1.6, 0.2]], np.float32)
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
CATS = np.array([["red", "S"], ["green", "XL"], ["blue", "M"], ["purple", "L"], ["red", "XL"]], dtype=object)


def opset_model(opset):
    """Softmax(axis=1), Clip and ReduceSum (whose signatures changed at
    opsets 11 and 13) on x [N, 3, 2], written for `opset` with its IR version."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2])
    nodes, inits = [helper.make_node("Softmax", ["x"], ["sm"], axis=1)], []
    if opset < 11:
        nodes.append(helper.make_node("Clip", ["x"], ["cl"], min=-0.5, max=0.5))
    else:
        inits += [helper.make_tensor("lo", TensorProto.FLOAT, [], [-0.5]),
                  helper.make_tensor("hi", TensorProto.FLOAT, [], [0.5])]
        nodes.append(helper.make_node("Clip", ["x", "lo", "hi"], ["cl"]))
    if opset < 13:
        nodes.append(helper.make_node("ReduceSum", ["x"], ["rs"], axes=[2], keepdims=1))
    else:
        inits.append(helper.make_tensor("axes", TensorProto.INT64, [1], [2]))
        nodes.append(helper.make_node("ReduceSum", ["x", "axes"], ["rs"], keepdims=1))
    nodes += [helper.make_node("Mul", ["sm", "cl"], ["m"]), helper.make_node("Add", ["m", "rs"], ["y"])]
    g = helper.make_graph(nodes, f"opset{opset}", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 2])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_OF_OPSET[opset],
                          producer_name="opset-sweep")
    onnx.checker.check_model(m)
    return m


def dim_name_models():
    """Dynamic dims as torch exporters name them: an output dim named apart
    from the input's (`MatMul_output_dim_0` for `batch_size`), and
    torch.export's `s0`/`s1`/`s2` with an expression (`s1 + s2`) on a
    Concat along a dynamic axis."""
    w = helper.make_tensor("fc.weight", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).tolist())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")], "main_graph",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch_size", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["MatMul_output_dim_0", 3])], [w])
    renamed = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="pytorch")
    g = helper.make_graph([helper.make_node("Concat", ["a", "b"], ["c"], axis=1), helper.make_node("Relu", ["c"], ["y"])],
                          "main_graph",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["s0", "s1"]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, ["s0", "s2"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["s0", "s1 + s2"])])
    dynamo = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8, producer_name="pytorch")
    return {"torch_output_dim_renamed": renamed, "torch_dynamo_dims": dynamo}


def write_repository(repo):
    for name in SERVABLE + REFUSED:
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(FIX / f"{name}.onnx", repo / name / "1" / "model.onnx")
    shutil.copy(FIX / "external_data.weights", repo / "external_data" / "1")
    # The same model without its weights file next to it.
    (repo / "external_data_missing" / "1").mkdir(parents=True)
    shutil.copy(FIX / "external_data.onnx", repo / "external_data_missing" / "1" / "model.onnx")
    for name, (fixture, config) in CONFIGS.items():
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(FIX / f"{fixture}.onnx", repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(config)
    (repo / "skl_int64_labels_cfg" / "iris_labels.txt").write_text("\n".join(IRIS_LABELS) + "\n")
    (repo / ODD_NAME / "1").mkdir(parents=True)
    shutil.copy(FIX / "tf_keras.onnx", repo / ODD_NAME / "1" / "model.onnx")
    for name, model in dim_name_models().items():
        (repo / name / "1").mkdir(parents=True)
        onnx.save(model, repo / name / "1" / "model.onnx")
    for opset in OPSETS:
        (repo / f"opset_{opset}" / "1").mkdir(parents=True)
        onnx.save(opset_model(opset), repo / f"opset_{opset}" / "1" / "model.onnx")
    return repo


class Server:
    def __init__(self, engine, proc, http, grpc):
        self.engine, self.proc, self.http, self.grpc = engine, proc, http, grpc
        self.base = f"http://{http}"

    def index(self):
        return {m["name"]: m for m in requests.post(self.base + "/v2/repository/index", timeout=30).json()}

    def state(self, name):
        m = self.index()[name]
        return m["state"], m.get("reason", "")

    def infer_json(self, name, body):
        r = requests.post(f"{self.base}/v2/models/{name}/infer", json=body, timeout=60)
        return r.status_code, r.json()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return write_repository(tmp_path_factory.mktemp("exported"))


@pytest.fixture(scope="module")
def servers(repo):
    started = {}
    try:
        for engine in ENGINES:
            proc, addr = start_serve(repo, "--backends", engine, "--strict-readiness", "false")
            started[engine] = Server(engine, proc, addr["HTTP"], addr["gRPC"])
        for s in started.values():
            wait_ready(s.http)
        yield started
    finally:
        for s in started.values():
            stop_serve(s.proc)


@pytest.fixture(scope="module", params=ENGINES)
def server(request, servers):
    return servers[request.param]


_SESSIONS = {}


def session(path):
    path = str(path)
    if path not in _SESSIONS:
        _SESSIONS[path] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return _SESSIONS[path]


def model_path(repo, name):
    return repo / name / "1" / "model.onnx"


def feeds_for(sess, rows=5):
    """Inputs for a model from its onnxruntime signature: iris rows for
    4- and 3-feature floats, categories (one never seen in training) for
    strings, token ids for `input_ids`, seeded normals otherwise."""
    rng = np.random.default_rng(7)
    feeds = {}
    for i in sess.get_inputs():
        shape = [rows if not isinstance(d, int) else d for d in i.shape]
        if i.type == "tensor(string)":
            feeds[i.name] = CATS[:rows].copy()
        elif i.type == "tensor(int64)" and i.name == "input_ids":
            feeds[i.name] = rng.integers(0, 10, (rows, 6)).astype(np.int64)
        elif i.type == "tensor(int64)":
            feeds[i.name] = (IRIS[:rows] * 10).astype(np.int64)
        elif i.type == "tensor(float16)":
            feeds[i.name] = rng.standard_normal(shape).astype(np.float16)
        elif i.type == "tensor(float)" and len(shape) == 2 and shape[1] in (3, 4):
            feeds[i.name] = IRIS[:rows, :shape[1]].copy()
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def reference(path, feeds):
    sess = session(path)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def assert_same(got, want, what, rtol=1e-4, atol=1e-5):
    assert got is not None, f"{what}: missing"
    if want.dtype == object:
        got = np.array([g.decode() if isinstance(g, bytes) else g for g in got.ravel()], dtype=object).reshape(got.shape)
        assert got.shape == want.shape and got.tolist() == want.tolist(), f"{what}: {got} != {want}"
        return
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if want.dtype == np.float16:
        rtol, atol = 1e-2, 1e-3
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol, err_msg=what)


def http_infer(srv, name, feeds, outputs, binary):
    client = httpclient.InferenceServerClient(srv.http)
    ins = []
    for k, v in feeds.items():
        t = httpclient.InferInput(k, list(v.shape), np_to_triton_dtype(v.dtype))
        t.set_data_from_numpy(v, binary_data=binary)
        ins.append(t)
    outs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    return client.infer(name, ins, outputs=outs)


def grpc_infer(srv, name, feeds, outputs=None):
    client = grpcclient.InferenceServerClient(srv.grpc)
    ins = []
    for k, v in feeds.items():
        t = grpcclient.InferInput(k, list(v.shape), np_to_triton_dtype(v.dtype))
        t.set_data_from_numpy(v)
        ins.append(t)
    outs = None if outputs is None else [grpcclient.InferRequestedOutput(o) for o in outputs]
    return client.infer(name, ins, outputs=outs)


def ml_operators(path):
    m = onnx.load(str(path), load_external_data=False)
    return {f"{n.domain}:{n.op_type}" for n in m.graph.node if n.domain not in ("", "ai.onnx")}


def check_all_clients(srv, repo, name, fixture=None, rows=5):
    """HTTP binary, HTTP JSON and gRPC answers of `name` against onnxruntime's."""
    path = model_path(repo, fixture or name)
    feeds = feeds_for(session(path), rows)
    want = reference(path, feeds)
    for how in ("http-binary", "http-json", "grpc"):
        if how == "grpc":
            result = grpc_infer(srv, name, feeds, list(want))
        else:
            result = http_infer(srv, name, feeds, list(want), binary=how == "http-binary")
        for o, w in want.items():
            assert_same(result.as_numpy(o), w, f"{srv.engine} {name} {how} output {o!r}")


def engine_param(engine, name):
    return pytest.param(engine, name, id=f"{engine}-{name}")


# --------------------------------------------------------------------------
# Served correctly, or refused at load naming the operator.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("engine,name", [engine_param(e, n) for e in ENGINES for n in SERVABLE])
def test_exported_model_is_served_correctly_or_refused_by_operator(servers, repo, engine, name):
    """Each exported model, without config.pbtxt, on each engine: either its
    outputs equal onnxruntime's (Python) for a batch of 5 rows over HTTP
    binary, HTTP JSON and gRPC, or it is UNAVAILABLE with a reason that
    names the engine and an ai.onnx.ml operator the model uses (BACKENDS.md:
    a candidate whose load fails on "an unsupported operator" is skipped
    with the engine's error). onnxruntime must serve every one of them."""
    srv = servers[engine]
    state, reason = srv.state(name)
    if engine == "tract-cpu" and name in TRACT_CANNOT_PLAN:
        assert state != "READY" and "tract-cpu cannot plan it over symbolic shapes" in reason \
            and "nor at the input shape(s) [1, " in reason, (state, reason)
        return
    if state != "READY":
        assert engine == "tract-cpu", f"onnxruntime must serve {name}: {reason}"
        ops = ml_operators(model_path(repo, name))
        assert "tract-cpu" in reason and any(o.split(":")[1] in reason for o in ops), (
            f"{name} refused without naming one of its operators {sorted(ops)}: {reason}")
        return
    check_all_clients(srv, repo, name)


def test_fp16_model_with_onnxruntime_standing_by_answers_from_the_first_request(servers, repo):
    """fp16_keep_io.onnx (onnxconverter-common keep_io_types=True) with the
    model's own order `backends: "tract-cpu,onnxruntime"`: the first request
    must be answered correctly (BACKENDS.md: ordered mode, "the first
    candidate that loads serves; the later ones stand by for a run-time
    fallback"). Until 2026-12-06 anemone kept it on tract-cpu, whose every answer was 400
    "the model cannot run on input 'x' as sent", and a 400 never counts
    toward the fallback; 12 requests in a row all got 400."""
    srv = servers["tract-cpu"]
    check_all_clients(srv, repo, "fp16_keep_io_ordered", fixture="fp16_keep_io", rows=1)


def test_string_label_forest_with_onnxruntime_standing_by_answers_from_the_first_request(servers, repo):
    """skl_rf_strlabels.onnx with `backends: "tract-cpu,onnxruntime"`: the
    first request must be answered (tract-cpu cannot run the model at any
    shape, so it should be skipped at load as an unsupported operator is).
    Until 2026-12-06 anemone answered 500 x5, then fell back (error_rate)."""
    srv = servers["onnxruntime"]  # the model's own list decides, whatever the server's
    check_all_clients(srv, repo, "skl_rf_strlabels_ordered", fixture="skl_rf_strlabels", rows=1)


# --------------------------------------------------------------------------
# Auto-complete: the config and metadata describe the model truthfully.
# --------------------------------------------------------------------------

ORT_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(int64)": "TYPE_INT64",
                 "tensor(string)": "TYPE_STRING", "tensor(double)": "TYPE_FP64", "tensor(int32)": "TYPE_INT32"}


def expected_io(args):
    return [(a.name, ORT_TO_TRITON[a.type], [d if isinstance(d, int) else -1 for d in a.shape]) for a in args]


def autocomplete_param(engine, name):
    # unknown_output_shape: an output whose shape the file leaves out was
    # auto-completed as dims [-1] (rank 1), while onnxruntime infers
    # ['batch', 3] and the answers are [N, 3] (fixed 2026-12-06: anemone
    # fills it from tract's analysis of the graph).
    return pytest.param(engine, name, id=f"{engine}-{name}")


@pytest.mark.parametrize("engine,name", [autocomplete_param(e, n) for e in ENGINES for n in SERVABLE])
def test_autocompleted_config_matches_onnxruntime_signature(servers, repo, engine, name):
    """GET /v2/models/<m>/config of a model without config.pbtxt: inputs and
    outputs with onnxruntime's names, order, types and dims (a named or
    unknown dim is -1), `platform: "onnxruntime_onnx"`, `max_batch_size: 0`
    (SERVING.md, The repository: "its inputs and outputs (dynamic dimensions
    as -1), platform: "onnxruntime_onnx", no batching dimension"; FROM_TRITON.md:
    Triton would set max_batch_size 4 here). gRPC ModelConfig says the same.
    An initializer that old exporters also list as an input is not an input
    (FROM_TRITON.md, "overridable initializer")."""
    srv = servers[engine]
    if srv.state(name)[0] != "READY":
        assert engine == "tract-cpu"  # refused by operator: the serving test checks the reason
        return
    sess = session(model_path(repo, name))
    config = requests.get(f"{srv.base}/v2/models/{name}/config", timeout=30).json()
    assert config["platform"] == "onnxruntime_onnx" and config["max_batch_size"] == 0
    got_in = [(i["name"], i["data_type"], i["dims"]) for i in config["input"]]
    got_out = [(o["name"], o["data_type"], o["dims"]) for o in config["output"]]
    assert got_in == expected_io(sess.get_inputs())
    assert got_out == expected_io(sess.get_outputs())
    g = grpcclient.InferenceServerClient(srv.grpc).get_model_config(name, as_json=True)["config"]
    assert [i["name"] for i in g["input"]] == [i[0] for i in got_in]
    assert [o["name"] for o in g["output"]] == [o[0] for o in got_out]


def test_metadata_names_the_serving_engine_and_io(server, repo):
    """Model metadata of torch_cnn: `platform` is the engine that serves it
    (BACKENDS.md, "model metadata: platform is the serving backend"), the
    torch names are kept as they are, dims by name become -1."""
    meta = requests.get(f"{server.base}/v2/models/torch_cnn", timeout=30).json()
    assert meta["platform"] == server.engine
    assert meta["inputs"] == [{"name": "input.1", "datatype": "FP32", "shape": [-1, 1, 4, 4]}]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [("17", [-1, 3]),
                                                                  ("/layer1/relu/Relu_output_0", [-1, 2, 4, 4])]


# --------------------------------------------------------------------------
# Values anemone does not carry: ZipMap, map inputs, bfloat16.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name,what", [("skl_logreg_zipmap", "output 'output_probability'"),
                                       ("skl_rf_strlabels_zipmap", "output 'output_probability'"),
                                       ("skl_dictvec", "input 'features'")])
def test_sequence_and_map_values_are_refused_at_load(server, name, what):
    """skl2onnx's default ZipMap output (seq(map(int64|string, float))) and
    DictVectorizer's map(string, float) input are refused at load, naming
    the tensor (CONFORMANCE.md: "sequence or optional values in a model's
    signature are refused at load with a clear message"), on both engines;
    the other models keep serving. Triton's ONNX Runtime backend refuses
    them too: "Unsupported ONNX Type 'ONNX_TYPE_SEQUENCE' for I/O
    'output_probability', expected 'ONNX_TYPE_TENSOR'"
    (triton-inference-server/onnxruntime_backend issue #94)."""
    state, reason = server.state(name)
    assert state == "UNAVAILABLE"
    assert what in reason and "is not a tensor" in reason, reason
    status, body = server.infer_json(name, {"inputs": [
        {"name": "float_input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    assert status == 503 and "not ready" in body["error"]
    assert server.state("skl_int64_logreg")[0] == "READY"


def test_zipmap_refusal_says_how_to_export_instead(servers, repo):
    """A model anemone cannot serve should get a load error that says what
    is unsupported and what to do. For skl2onnx's ZipMap output the fix is
    well known: convert with options={'zipmap': False} (outputs then are a
    label tensor and a probabilities tensor, which anemone serves: see
    skl_logreg). anemone said only "output 'output_probability' is not a
    tensor (sequence, map and optional values are not supported)" until
    2026-12-06."""
    _, reason = servers["onnxruntime"].state("skl_logreg_zipmap")
    reason = reason.replace(str(model_path(repo, "skl_logreg_zipmap")), "<file>")  # the path holds "zipmap"
    assert "zipmap" in reason.lower(), reason


def test_zipmap_model_with_only_its_label_in_the_config_is_refused(server):
    """A config that lists only `output_label` of a ZipMap model: still
    refused, naming the sequence output (CONFORMANCE.md: sequence values
    "in a model's signature" are refused; the file's signature is read
    whole). Not run on Triton: the peer has no ONNX Runtime backend."""
    state, reason = server.state("zipmap_label_only_cfg")
    assert state == "UNAVAILABLE" and "output_probability" in reason, reason


def test_bf16_model_and_bf16_config_are_refused(server):
    """BFLOAT16 inputs and outputs: the file is refused naming the input and
    its type, and a config with TYPE_BF16 is refused naming the field
    (CONFORMANCE.md: "element types anemone does not carry (bfloat16, ...)
    ... are refused at load with a clear message")."""
    state, reason = server.state("bf16_io")
    assert state == "UNAVAILABLE" and "'x'" in reason and "BFLOAT16" in reason, reason
    state, reason = server.state("bf16_cfg")
    assert state == "UNAVAILABLE" and "TYPE_BF16" in reason, reason


# --------------------------------------------------------------------------
# Configs as Triton's docs write them.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name,fixture,input_name", [("skl_logreg_cfg", "skl_logreg", "float_input"),
                                                     ("skl_int64_logreg_cfg", "skl_int64_logreg", "int_input")])
def test_batched_classifier_config_with_label_reshape(server, repo, name, fixture, input_name):
    """A classifier exported by skl2onnx served with max_batch_size 8,
    `dims: [ 1 ] reshape { shape: [ ] }` for its [batch] label (SERVING.md,
    Reshape: "dims: [ 1 ] reshape { shape: [ ] } serves a model that takes
    [batch] to clients that send [batch, 1]") and dynamic_batching: five
    one-row requests sent at once each get their own row, and one request
    of three rows gets three; labels come back [rows, 1]."""
    state, reason = server.state(name)
    if state != "READY":
        assert server.engine == "tract-cpu" and "does not support the operator" in reason, reason
        return
    path = model_path(repo, fixture)
    feeds = feeds_for(session(path), 5)
    want = reference(path, feeds)
    x = feeds[input_name]

    def one(i):
        r = grpc_infer(server, name, {input_name: x[i:i + 1]})
        return r.as_numpy("label"), r.as_numpy("probabilities")

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(one, range(5)))
    for i, (label, probs) in enumerate(answers):
        assert_same(label, want["label"][i:i + 1].reshape(1, 1), f"row {i} label")
        assert_same(probs, want["probabilities"][i:i + 1], f"row {i} probabilities")
    r = http_infer(server, name, {input_name: x[:3]}, ["label", "probabilities"], binary=False)
    assert_same(r.as_numpy("label"), want["label"][:3].reshape(3, 1), "3 rows label")
    assert_same(r.as_numpy("probabilities"), want["probabilities"][:3], "3 rows probabilities")


@pytest.mark.parametrize("name,fixture,input_name", [("skl_onehot_batched", "skl_onehot_logreg", "cat"),
                                                     ("skl_rf_strlabels_batched", "skl_rf_strlabels", "float_input")])
def test_string_tensors_in_dynamic_batches(servers, repo, name, fixture, input_name):
    """BYTES tensors through the dynamic batcher: one-hot categories as a
    STRING input and a forest's string class labels as a STRING output
    (`dims: [ 1 ] reshape { shape: [ ] }`), five one-row requests at once
    over gRPC and HTTP binary; each gets its own row back."""
    srv = servers["onnxruntime"]
    path = model_path(repo, fixture)
    feeds = feeds_for(session(path), 5)
    want = reference(path, feeds)
    x = feeds[input_name]

    def one(i):
        if i % 2:
            r = grpc_infer(srv, name, {input_name: x[i:i + 1]})
        else:
            r = http_infer(srv, name, {input_name: x[i:i + 1]}, ["label", "probabilities"], binary=True)
        return r.as_numpy("label"), r.as_numpy("probabilities")

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(one, range(5)))
    for i, (label, probs) in enumerate(answers):
        assert_same(label, want["label"][i:i + 1].reshape(1, 1), f"row {i} label")
        assert_same(probs, want["probabilities"][i:i + 1], f"row {i} probabilities")


def test_batched_classifier_refuses_more_rows_than_max_batch_size(servers):
    """max_batch_size 8 and 9 rows: 400 naming the input (SERVING.md:
    "a request whose batch is larger ... gets 400 / INVALID_ARGUMENT naming
    the input")."""
    x = np.tile(IRIS, (2, 1))[:9]
    status, body = servers["onnxruntime"].infer_json("skl_logreg_cfg", {"inputs": [
        {"name": "float_input", "datatype": "FP32", "shape": [9, 4], "data": x.ravel().tolist()}]})
    assert status == 400 and "float_input" in body["error"], body


@pytest.mark.parametrize("name,fixture", [("skl_rf_strlabels_cfg", "skl_rf_strlabels"),
                                          ("skl_onehot_cfg", "skl_onehot_logreg")])
def test_string_tensors_with_type_string_config(servers, repo, name, fixture):
    """TYPE_STRING in config.pbtxt for skl2onnx's string tensors: the class
    labels of a forest trained on string targets (a BYTES output) and the
    categories a OneHotEncoder reads (a BYTES input, with a category never
    seen in training, `purple`, which handle_unknown='ignore' encodes as
    zeros). The config pins `backends: onnxruntime`, so both servers serve
    them there."""
    for srv in servers.values():
        check_all_clients(srv, repo, name, fixture=fixture)


def test_torch_cnn_config_with_batching_and_odd_output_names(server, repo):
    """torch_cnn with max_batch_size 4 and dynamic_batching: outputs named
    `17` and `/layer1/relu/Relu_output_0` requested one at a time, over
    gRPC and HTTP JSON."""
    path = model_path(repo, "torch_cnn")
    feeds = feeds_for(session(path), 3)
    want = reference(path, feeds)
    for out in want:
        r = grpc_infer(server, "torch_cnn_cfg", feeds, [out])
        assert_same(r.as_numpy(out), want[out], f"grpc {out}")
        assert [o.name for o in r.get_response().outputs] == [out]
        r = http_infer(server, "torch_cnn_cfg", feeds, [out], binary=False)
        assert_same(r.as_numpy(out), want[out], f"json {out}")
        assert [o["name"] for o in r.get_response()["outputs"]] == [out]


def test_config_with_one_of_two_outputs_serves_only_that_one(server, repo):
    """metadata_two_outputs.onnx has `logits` and `embedding`; its config
    lists only `logits`. SERVING.md ("Outputs may be a subset: then only
    those are served ... one that asks for another output of the model gets
    400 naming the served ones")."""
    meta = requests.get(f"{server.base}/v2/models/two_outputs_one_cfg", timeout=30).json()
    assert [o["name"] for o in meta["outputs"]] == ["logits"]
    path = model_path(repo, "metadata_two_outputs")
    feeds = feeds_for(session(path), 2)
    want = reference(path, feeds)
    r = grpc_infer(server, "two_outputs_one_cfg", feeds)
    assert [o.name for o in r.get_response().outputs] == ["logits"]
    assert_same(r.as_numpy("logits"), want["logits"], "logits")
    status, body = server.infer_json("two_outputs_one_cfg", {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": feeds["x"].ravel().tolist()}],
        "outputs": [{"name": "embedding"}]})
    assert status == 400 and "logits" in body["error"], body


def test_legacy_initializer_input_is_not_an_input(server, repo):
    """An IR 3 / opset 7 export that lists its initializers W and B as graph
    inputs: anemone serves `data` alone (FROM_TRITON.md: "an ONNX graph
    input that also has an initializer ... is not one of the model's inputs
    in anemone: the initializer's value is always used, and a config that
    lists the input is refused ("is not an input of the model"). Triton
    serves it as an optional input")."""
    meta = requests.get(f"{server.base}/v2/models/legacy_initializer_inputs", timeout=30).json()
    assert [i["name"] for i in meta["inputs"]] == ["data"]
    state, reason = server.state("legacy_w_cfg")
    assert state == "UNAVAILABLE" and "'W'" in reason and "is not an input of the model" in reason, reason
    status, body = server.infer_json("legacy_initializer_inputs", {"inputs": [
        {"name": "data", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
        {"name": "W", "datatype": "FP32", "shape": [4, 2], "data": [0] * 8}]})
    assert status == 400 and "W" in body["error"], body


def test_unknown_output_shape_takes_the_config_dims(server, repo):
    """An output declared without a shape, with a config that gives it
    dims [ -1, 3 ]: served with the config's dims (FROM_TRITON.md: "an ONNX
    tensor with no shape ... takes the config's dims as they are")."""
    meta = requests.get(f"{server.base}/v2/models/unknown_output_shape_cfg", timeout=30).json()
    assert meta["outputs"][0]["shape"] == [-1, 3]
    check_all_clients(server, repo, "unknown_output_shape_cfg", fixture="unknown_output_shape")


# --------------------------------------------------------------------------
# Names, types and files as exporters leave them.
# --------------------------------------------------------------------------

def test_model_folder_with_dot_and_colon_in_its_name(server, repo):
    """A model folder named `tf.keras:v1` (tf2onnx's model): served at
    /v2/models/tf.keras:v1 over HTTP and gRPC. Triton 2.51 served the same
    name (a Python stand-in, 2026-12-06: 200); the percent-encoded
    `tf.keras%3Av1` is decoded by anemone (FROM_TRITON.md: "model names in
    URLs are percent-decoded (Triton does not)"; Triton answered 404)."""
    path = model_path(repo, "tf_keras")
    feeds = feeds_for(session(path), 2)
    want = reference(path, feeds)
    out = "StatefulPartitionedCall/sequential/dense/Softmax:0"
    assert_same(grpc_infer(server, ODD_NAME, feeds).as_numpy(out), want[out], "grpc")
    body = {"inputs": [{"name": "input_1:0", "datatype": "FP32", "shape": list(feeds["input_1:0"].shape),
                        "data": feeds["input_1:0"].ravel().tolist()}]}
    for url_name in (ODD_NAME, "tf.keras%3Av1"):
        r = requests.post(f"{server.base}/v2/models/{url_name}/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["outputs"][0]
        assert got["name"] == out
        assert_same(np.array(got["data"], np.float32).reshape(got["shape"]), want[out], url_name)


def test_int64_input_sent_as_int32_is_refused_with_both_types(server):
    """torch's `input_ids` is INT64; a client sending INT32 (np.int32 ids)
    gets 400 / INVALID_ARGUMENT naming the input and both types. Triton 2.51
    (Python stand-in with a TYPE_INT64 input, 2026-12-06): 400 "inference
    input 'input_ids' data-type is 'INT32', but model 'embed_py' expects
    'INT64'"."""
    ids = np.array([[1, 2, 3]], np.int32)
    status, body = server.infer_json("torch_embedding", {"inputs": [
        {"name": "input_ids", "datatype": "INT32", "shape": [1, 3], "data": [1, 2, 3]}]})
    assert status == 400 and "input_ids" in body["error"] and "INT32" in body["error"] and "INT64" in body["error"]
    with pytest.raises(InferenceServerException) as e:
        grpc_infer(server, "torch_embedding", {"input_ids": ids})
    assert "INVALID_ARGUMENT" in str(e.value.status()) and "INT64" in e.value.message()


def test_token_id_past_the_embedding_table_is_a_client_error(server, repo):
    """A token id past the embedding table (10 rows) makes Gather fail: the
    answer is 400 naming the input (BACKENDS.md: "an engine that panics
    indexing past the end of a slice on a request with integer inputs ...
    a 400 too, and it never counts"), and the next good request is served."""
    status, body = server.infer_json("torch_embedding", {"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 30]}]})
    assert status == 400 and "input_ids" in body["error"], body
    check_all_clients(server, repo, "torch_embedding", rows=2)


def test_names_with_double_colon_and_slash_in_json_and_binary(server, repo):
    """torch names `onnx::Gemm_0` (input) and `output::probs` (output),
    written in a raw JSON request and read back, and the same through
    tritonclient's binary tensors."""
    path = model_path(repo, "torch_mlp_names")
    x = IRIS[:2]
    want = reference(path, {"onnx::Gemm_0": x})["output::probs"]
    status, body = server.infer_json("torch_mlp_names", {
        "inputs": [{"name": "onnx::Gemm_0", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}],
        "outputs": [{"name": "output::probs"}]})
    assert status == 200, body
    (out,) = body["outputs"]
    assert out["name"] == "output::probs" and out["shape"] == [2, 3]
    assert_same(np.array(out["data"], np.float32).reshape(2, 3), want, "json")
    r = http_infer(server, "torch_mlp_names", {"onnx::Gemm_0": x}, ["output::probs"], binary=True)
    assert_same(r.as_numpy("output::probs"), want, "binary")


def test_missing_external_data_file_is_named(server):
    """A model saved with save_as_external_data=True whose weights file
    (`external_data.weights`) was not copied next to it: UNAVAILABLE, the
    reason naming the file (BACKENDS.md: "missing external data ... refused
    with a message naming the file and the cause"); the copy with its
    weights (`external_data`) is served (checked above)."""
    state, reason = server.state("external_data_missing")
    assert state == "UNAVAILABLE" and "external_data.weights" in reason, reason
    assert server.state("external_data")[0] == "READY"


def test_fp16_tensors_in_json_and_binary(servers, repo):
    """FP16 inputs and outputs (keep_io_types=False) on onnxruntime: binary
    tensors, and FP16 in JSON, which anemone takes (FROM_TRITON.md: "FP16 in
    JSON ... taken and answered"; Triton: 400 "FP16 via JSON is not
    supported")."""
    srv = servers["onnxruntime"]
    path = model_path(repo, "fp16_io")
    x = np.array([[0.5, -1.25, 2.0, 0.75]], np.float16)
    want = reference(path, {"x": x})["y"]
    status, body = srv.infer_json("fp16_io", {"inputs": [
        {"name": "x", "datatype": "FP16", "shape": [1, 4], "data": x.astype(float).ravel().tolist()}]})
    assert status == 200 and body["outputs"][0]["datatype"] == "FP16", body
    assert_same(np.array(body["outputs"][0]["data"], np.float16).reshape(1, 5), want, "json")
    assert_same(http_infer(srv, "fp16_io", {"x": x}, ["y"], binary=True).as_numpy("y"), want, "binary")


# --------------------------------------------------------------------------
# Opsets 7 to 21, IR versions 3 to 10.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("opset", OPSETS)
def test_opset_sweep(servers, repo, opset):
    """Softmax(axis=1) (whose meaning changed at opset 13: before, over the
    flattened trailing axes), Clip (attributes before 11, inputs after) and
    ReduceSum (axes an input from 13) at opset `opset` with its IR version
    (3 for opset 7 up to 10 for opset 21), on both engines, against
    onnxruntime's answers."""
    path = model_path(repo, f"opset_{opset}")
    x = np.random.default_rng(opset).standard_normal((2, 3, 2)).astype(np.float32)
    want = reference(path, {"x": x})["y"]
    for srv in servers.values():
        state, reason = srv.state(f"opset_{opset}")
        assert state == "READY", f"{srv.engine}: {reason}"
        assert_same(grpc_infer(srv, f"opset_{opset}", {"x": x}).as_numpy("y"), want, f"{srv.engine} opset {opset}")


@pytest.mark.parametrize("name,shapes", [("torch_output_dim_renamed", {"x": (3, 4)}),
                                         ("torch_dynamo_dims", {"a": (2, 1), "b": (2, 3)})])
def test_dynamic_dims_named_as_torch_exports_them(server, repo, name, shapes):
    """Dims named differently in input and output, and torch.export's
    s0/s1/s2 with `s1 + s2` on the output: served at the request's sizes,
    equal to onnxruntime's answer; the config shows each named dim as -1."""
    rng = np.random.default_rng(5)
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    want = reference(model_path(repo, name), feeds)
    r = grpc_infer(server, name, feeds)
    assert_same(r.as_numpy("y"), want["y"], name)
    config = requests.get(f"{server.base}/v2/models/{name}/config", timeout=30).json()
    assert all(-1 in i["dims"] for i in config["input"]) and config["output"][0]["dims"][0] == -1


def test_classification_of_a_classifier_probabilities_with_labels(server, repo):
    """An skl2onnx classifier's `probabilities` with `label_filename` and
    Triton's classification extension (tritonclient's class_count=2):
    each row's top 2 as "<value>:<index>:<label>", highest first, six
    decimals (SERVING.md, Classification), over HTTP binary and gRPC;
    the reference is onnxruntime's probabilities, ranked with numpy."""
    path = model_path(repo, "skl_int64_logreg")
    x = (IRIS * 10).astype(np.int64)
    probs = reference(path, {"int_input": x})["probabilities"]
    want = [[f"{p[k]:.6f}:{k}:{IRIS_LABELS[k]}" for k in np.argsort(-p, kind="stable")[:2]] for p in probs]
    hc = httpclient.InferenceServerClient(server.http)
    t = httpclient.InferInput("int_input", list(x.shape), "INT64")
    t.set_data_from_numpy(x, binary_data=True)
    r = hc.infer("skl_int64_labels_cfg", [t], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=2)])
    got = r.as_numpy("probabilities")
    assert got.shape == (5, 2)
    assert [[v.decode() for v in row] for row in got] == want
    gc = grpcclient.InferenceServerClient(server.grpc)
    t = grpcclient.InferInput("int_input", list(x.shape), "INT64")
    t.set_data_from_numpy(x)
    r = gc.infer("skl_int64_labels_cfg", [t], outputs=[grpcclient.InferRequestedOutput("probabilities", class_count=2)])
    assert [[v.decode() for v in row] for row in r.as_numpy("probabilities")] == want


@pytest.mark.parametrize("engine,name", [engine_param(e, n) for e in ENGINES for n in
                                         ("lgbm_clf", "lgbm_binary", "skl_rf_binary", "skl_int64_logreg",
                                          "torch_embedding")])
def test_many_rows_in_one_request(servers, repo, engine, name):
    """2,000 rows in one binary request (a batch scoring job, the common
    use of an exported tabular model; 6 token ids a row for torch_embedding),
    every row equal to onnxruntime's, and each label the argmax of its
    row's probabilities."""
    server = servers[engine]
    path = model_path(repo, name)
    rng = np.random.default_rng(3)
    (inp,) = session(path).get_inputs()
    if inp.name == "input_ids":
        x = rng.integers(0, 10, (2000, 6)).astype(np.int64)
    else:
        x = IRIS[rng.integers(0, 5, 2000)] + rng.normal(0, 0.3, (2000, 4)).astype(np.float32)
        if inp.type == "tensor(int64)":
            x = (x * 10).astype(np.int64)
    want = reference(path, {inp.name: x})
    r = http_infer(server, name, {inp.name: x}, list(want), binary=True)
    for o, w in want.items():
        assert_same(r.as_numpy(o), w, f"{server.engine} {name} {o}")
    if "label" in want:
        assert (r.as_numpy("label") == r.as_numpy("probabilities").argmax(axis=1)).all()


def test_inspect_lists_metadata_props(repo):
    """`anemone inspect --json` on an exported file with metadata_props and
    a doc_string lists them among its properties (BACKENDS.md: metadata
    properties are what `anemone inspect` prints)."""
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    out = subprocess.run([binary, "inspect", "--json", str(model_path(repo, "metadata_two_outputs"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    props = json.loads(out.stdout)["properties"]
    assert props["author"] == "someone" and props["labels"] == "cat,dog,bird", props
    assert props["doc_string"] == "A model with metadata."
    assert json.loads(props["preprocessing"]) == {"mean": [0.5], "std": [0.25]}


def test_server_keeps_serving_after_the_refusals(server):
    """After every refusal above the server is live, ready (with
    --strict-readiness false: SERVING.md, Model control) and its index
    lists each refused model UNAVAILABLE with a reason."""
    assert requests.get(f"{server.base}/v2/health/live", timeout=10).status_code == 200
    assert requests.get(f"{server.base}/v2/health/ready", timeout=10).status_code == 200
    index = server.index()
    for name in REFUSED + ["bf16_cfg", "legacy_w_cfg", "zipmap_label_only_cfg", "external_data_missing"]:
        assert index[name]["state"] == "UNAVAILABLE" and index[name].get("reason"), index[name]
    ready = [n for n, m in index.items() if m["state"] == "READY"]
    assert len(ready) >= 25, ready
