#!/usr/bin/env python3
"""Generate ONNX test fixtures for the anemone inference server.

Every case lives in fixtures/generated/<case>/ and holds:

    model.onnx             the model (built here, or copied from a pretrained wheel)
    case.json              description, tolerances and the list of runs
    run<k>_in_<i>.npy      input i of run k (C-order, exact dtype)
    run<k>_out_<j>.npy     reference output j of run k, computed by onnxruntime

Inputs/outputs in case.json follow the model's declared input/output order.
References come from onnxruntime with full graph optimisations; each case is then
re-checked by reloading everything from disk into a second session with
optimisations disabled, which must agree within the case's rtol/atol.

The script is idempotent: it does nothing when fixtures/generated/.stamp holds the
hash of this file and all outputs exist (use --force to regenerate, --check to only
test whether regeneration is needed: exit status 0 = up to date). `--only CASE[,CASE]`
writes just those cases and leaves the stamp and everything else alone.
"""

import hashlib
import importlib.util
import json
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "fixtures" / "generated"
STAMP = OUT / ".stamp"
SEED = 20240611
OPSET = 17
IR_VERSION = 8
F32, I32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL
BAD_FILES = ["not_onnx.onnx", "truncated.onnx", "unsupported_op.onnx",
             "missing_external.onnx", "empty.onnx"]

CASES = {}  # name -> generator function, in generation order


def case(fn):
    """Register a case generator under its function name."""
    CASES[fn.__name__] = fn
    return fn


# ----------------------------------------------------------------------------- helpers

def rng_for(name):
    """A per-case RNG, so that editing one case does not change the data of others."""
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def vi(name, elem_type, shape):
    """Tensor value info; string dims become dim_params."""
    return helper.make_tensor_value_info(name, elem_type, shape)


class Builder:
    """Tiny graph builder: nodes get fresh output names unless `out=` is given."""

    def __init__(self, rng):
        self.rng, self.nodes, self.inits, self.count = rng, [], [], 0

    def fresh(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint, array):
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def randn(self, hint, shape, std=1.0):
        return self.const(hint, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def add(self, op, *inputs, out=None, **attrs):
        out = out or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def model(self, name, inputs, outputs):
        return make_model(helper.make_graph(self.nodes, name, inputs, outputs, self.inits))


def make_model(graph, opsets=(("", OPSET),), check=True):
    model = helper.make_model(graph, producer_name="anemone-gen-fixtures",
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = IR_VERSION
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def session(path, optimize=True):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def write_case(name, description, model, runs, rtol=1e-4, atol=1e-5):
    """Write model + inputs, compute references with onnxruntime, write case.json.

    `model` is a ModelProto or a path to copy; `runs` is a list of {input name: array}.
    Returns the written runs (input and output arrays) for callers that chain runs.
    """
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    if isinstance(model, onnx.ModelProto):
        onnx.save(model, d / "model.onnx")
    else:
        shutil.copyfile(model, d / "model.onnx")
    sess = session(d / "model.onnx")
    in_names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    meta_runs, results = [], []
    for k, feeds in enumerate(runs):
        assert sorted(feeds) == sorted(in_names), (name, sorted(feeds), in_names)
        outs = sess.run(out_names, feeds)
        meta = {"inputs": [], "outputs": []}
        for i, n in enumerate(in_names):
            np.save(d / f"run{k}_in_{i}.npy", np.asarray(feeds[n], order="C"))
            meta["inputs"].append({"name": n, "file": f"run{k}_in_{i}.npy"})
        for j, (n, arr) in enumerate(zip(out_names, outs)):
            np.save(d / f"run{k}_out_{j}.npy", np.asarray(arr, order="C"))
            meta["outputs"].append({"name": n, "file": f"run{k}_out_{j}.npy"})
        meta_runs.append(meta)
        results.append(({n: feeds[n] for n in in_names}, dict(zip(out_names, outs))))
    doc = {"description": description, "model": "model.onnx", "rtol": rtol, "atol": atol,
           "runs": meta_runs}
    (d / "case.json").write_text(json.dumps(doc, indent=2) + "\n")
    verify_case(name)
    return results


def describe(named_arrays):
    return ", ".join(f"{n}{list(a.shape)}:{a.dtype}" for n, a in named_arrays)


def verify_case(name):
    """Reload a case from disk, rerun it unoptimised and compare with the references."""
    d = OUT / name
    doc = json.loads((d / "case.json").read_text())
    sess = session(d / doc["model"], optimize=False)
    ranks = {i.name: len(i.shape) for i in sess.get_inputs()}
    lines, worst = [], 0.0
    for run in doc["runs"]:
        feeds = {i["name"]: np.load(d / i["file"]) for i in run["inputs"]}
        # onnxruntime silently accepts shape [1] for a 0-d input, so check ranks explicitly.
        assert all(a.ndim == ranks[n] for n, a in feeds.items()), f"{name}: input rank mismatch"
        refs = [np.load(d / o["file"]) for o in run["outputs"]]
        got = sess.run([o["name"] for o in run["outputs"]], feeds)
        for o, ref, g in zip(run["outputs"], refs, got):
            assert ref.dtype == g.dtype and ref.shape == g.shape, (name, o["name"])
            if ref.dtype.kind == "f":
                assert np.isfinite(ref).all(), f"{name}: non-finite reference {o['name']}"
                np.testing.assert_allclose(g, ref, rtol=doc["rtol"], atol=doc["atol"],
                                           err_msg=f"{name}/{o['name']}")
                worst = max(worst, float(np.max(np.abs(g - ref), initial=0.0)))
            else:
                np.testing.assert_array_equal(g, ref, err_msg=f"{name}/{o['name']}")
        out_names = [o["name"] for o in run["outputs"]]
        lines.append(f"({describe(feeds.items())}) -> ({describe(zip(out_names, refs))})")
    size = (d / doc["model"]).stat().st_size
    print(f"{name:18s} {size / 1024:9.1f} KiB  max|opt-noopt|={worst:.1e}")
    for line in lines:
        print(f"    {line}")


def package_dir(pkg):
    """Directory of an installed package, located without importing it."""
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"gen_fixtures: package {pkg!r} is not installed (run scripts/setup.sh)")
    return Path(spec.submodule_search_locations[0])


# ----------------------------------------------------------------------------- small cases

@case
def dynamic_batch(name):
    """y = Relu(x @ W + b) with dynamic batch and seq dims."""
    b = Builder(rng_for(name))
    h = b.add("MatMul", "x", b.randn("W", (8, 4)))
    b.add("Relu", b.add("Add", h, b.randn("b", (4,))), out="y")
    model = b.model(name, [vi("x", F32, ["batch", "seq", 8])], [vi("y", F32, ["batch", "seq", 4])])
    runs = [{"x": b.rng.standard_normal(s).astype(np.float32)} for s in [(1, 3, 8), (4, 5, 8)]]
    write_case(name, "Relu(MatMul(x, W) + b) with dynamic batch/seq", model, runs)


@case
def same_symbol(name):
    """sum = a + b where both inputs share the symbolic dim n."""
    b = Builder(rng_for(name))
    b.add("Add", "a", "b", out="sum")
    model = b.model(name, [vi("a", F32, ["n", 3]), vi("b", F32, ["n", 3])], [vi("sum", F32, ["n", 3])])
    runs = [{k: b.rng.standard_normal((n, 3)).astype(np.float32) for k in "ab"} for n in (2, 5)]
    write_case(name, "a + b; both inputs use the same dim symbol 'n'", model, runs)


@case
def multi_io(name):
    """Three inputs, four outputs, one with an awkward name."""
    b = Builder(rng_for(name))
    b.add("Add", "x", "y", out="sum")
    b.add("Mul", "x", "y", out="prod")
    b.add("Mul", "x", "scale", out="scaled")
    b.add("Sub", "x", "y", out="out/with:odd*name")
    model = b.model(name, [vi("x", F32, [2, 3]), vi("y", F32, [2, 3]), vi("scale", F32, [1])],
                    [vi(n, F32, [2, 3]) for n in ["sum", "prod", "scaled", "out/with:odd*name"]])
    runs = [{"x": b.rng.standard_normal((2, 3)).astype(np.float32),
             "y": b.rng.standard_normal((2, 3)).astype(np.float32),
             "scale": np.array([2.5], np.float32)}]
    write_case(name, "3 inputs, 4 outputs incl. one named 'out/with:odd*name'", model, runs)


@case
def int_bool(name):
    """Integer, bool and 0-d scalar inputs and outputs."""
    b = Builder(rng_for(name))
    s = b.add("Add", b.add("Cast", "ids", to=I64), "offsets")
    b.add("Add", s, "k", out="sum_i64")
    b.add("Where", "mask", "sum_i64", b.const("zero", np.array(0, np.int64)), out="masked")
    b.add("Not", "mask", out="not_mask")
    b.add("Mul", "ids", b.const("two", np.array(2, np.int32)), out="ids_times2")
    model = b.model(
        name,
        [vi("ids", I32, ["n"]), vi("offsets", I64, ["n"]), vi("mask", BOOL, ["n"]), vi("k", I64, [])],
        [vi("sum_i64", I64, ["n"]), vi("masked", I64, ["n"]), vi("not_mask", BOOL, ["n"]),
         vi("ids_times2", I32, ["n"])])
    r = b.rng
    runs = [{"ids": r.integers(-1000, 1000, n, dtype=np.int32),
             "offsets": r.integers(-(2**40), 2**40, n, dtype=np.int64),
             "mask": r.random(n) < 0.5,
             "k": np.array(k, np.int64)} for n, k in [(4, 7), (7, -3)]]
    write_case(name, "int32/int64/bool inputs and a 0-d int64 scalar", model, runs,
               rtol=0.0, atol=0.0)


@case
def four_inputs(name):
    """y = a + b + c + d, a trivial 4-input model for benchmarks."""
    b = Builder(rng_for(name))
    b.add("Add", b.add("Add", b.add("Add", "a", "b"), "c"), "d", out="y")
    model = b.model(name, [vi(n, F32, [1, 4]) for n in "abcd"], [vi("y", F32, [1, 4])])
    runs = [{n: b.rng.standard_normal((1, 4)).astype(np.float32) for n in "abcd"}]
    write_case(name, "a + b + c + d (validation / overhead benchmark)", model, runs)


@case
def identity(name):
    """y = Identity(x), for per-request overhead measurements."""
    b = Builder(rng_for(name))
    b.add("Identity", "x", out="y")
    model = b.model(name, [vi("x", F32, [1, 16])], [vi("y", F32, [1, 16])])
    runs = [{"x": b.rng.standard_normal((1, 16)).astype(np.float32)}]
    write_case(name, "Identity (overhead benchmark)", model, runs)


@case
def batched_identity(name):
    """y = Identity(x), x FP32 [batch, 16]: the file under the server tests' batched test-double models."""
    b = Builder(rng_for(name))
    b.add("Identity", "x", out="y")
    model = b.model(name, [vi("x", F32, ["batch", 16])], [vi("y", F32, ["batch", 16])])
    runs = [{"x": b.rng.standard_normal((3, 16)).astype(np.float32)}]
    write_case(name, "Identity with a batch dimension", model, runs)


@case
def external_weights(name):
    """y = x + W, W FP32 [4] kept as ONNX external data in a subfolder (weights/w.bin)."""
    b = Builder(rng_for(name))
    w = b.rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], name,
                              [vi("x", F32, ["n", 4])], [vi("y", F32, ["n", 4])],
                              [numpy_helper.from_array(w, "W")])
    model = make_model(graph)
    runs = [{"x": b.rng.standard_normal((2, 4)).astype(np.float32)}]
    write_case(name, "Add of a weight kept in weights/w.bin (external data in a subfolder)", model, runs)
    d = OUT / name
    (d / "weights").mkdir()
    onnx.save_model(model, d / "model.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights/w.bin", size_threshold=0)
    assert (d / "weights" / "w.bin").stat().st_size == 16, "W was not written as external data"
    verify_case(name)


ALL_DTYPES = [  # (input name, ONNX type, numpy dtype) for every KServe v2 numeric datatype and BOOL
    ("b", TensorProto.BOOL, np.bool_), ("u8", TensorProto.UINT8, np.uint8), ("u16", TensorProto.UINT16, np.uint16),
    ("u32", TensorProto.UINT32, np.uint32), ("u64", TensorProto.UINT64, np.uint64), ("i8", TensorProto.INT8, np.int8),
    ("i16", TensorProto.INT16, np.int16), ("i32", TensorProto.INT32, np.int32), ("i64", TensorProto.INT64, np.int64),
    ("f16", TensorProto.FLOAT16, np.float16), ("f32", TensorProto.FLOAT, np.float32), ("f64", TensorProto.DOUBLE, np.float64),
]


@case
def all_dtypes(name):
    """One input per datatype, each returned through Identity as `<input>_out`, shape [2, n]."""
    b = Builder(rng_for(name))
    inputs, outputs, feeds = [], [], {}
    for n, t, dt in ALL_DTYPES:
        b.add("Identity", n, out=f"{n}_out")
        inputs.append(vi(n, t, [2, "n"]))
        outputs.append(vi(f"{n}_out", t, [2, "n"]))
        if dt is np.bool_:
            feeds[n] = b.rng.integers(0, 2, (2, 3)).astype(dt)
        elif np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            feeds[n] = np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dt)
        else:
            feeds[n] = (b.rng.standard_normal((2, 3)) * 100).astype(dt)
    write_case(name, "every numeric datatype and BOOL through Identity", b.model(name, inputs, outputs), [feeds], rtol=0.0, atol=0.0)


def bytes_identity():
    """A STRING (KServe BYTES) Identity model; its reference is its input, so no case.json."""
    b = Builder(rng_for("bytes_identity"))
    b.add("Identity", "text", out="text_out")
    model = b.model("bytes_identity", [vi("text", TensorProto.STRING, ["n"])], [vi("text_out", TensorProto.STRING, ["n"])])
    d = OUT / "bytes_identity"
    d.mkdir(parents=True, exist_ok=True)
    onnx.save(model, d / "model.onnx")


@case
def if_control(name):
    """y = If(cond, x * 2, x - 1)."""
    def branch(op, value, out):
        c = helper.make_node("Constant", [], [out + "_c"],
                             value=numpy_helper.from_array(np.array(value, np.float32)))
        n = helper.make_node(op, ["x", out + "_c"], [out])
        return helper.make_graph([c, n], out, [], [vi(out, F32, [3])])

    b = Builder(rng_for(name))
    b.add("If", "cond", out="y", then_branch=branch("Mul", 2.0, "then_y"),
          else_branch=branch("Sub", 1.0, "else_y"))
    model = b.model(name, [vi("cond", BOOL, []), vi("x", F32, [3])], [vi("y", F32, [3])])
    x = b.rng.standard_normal(3).astype(np.float32)
    runs = [{"cond": np.array(c), "x": x} for c in (True, False)]
    write_case(name, "If(cond): then x*2 else x-1", model, runs)


@case
def loop_control(name):
    """Loop `trip` times adding 1.5 to acc; scan output collects acc per iteration."""
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["step"],
                          value=numpy_helper.from_array(np.array(1.5, np.float32))),
         helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["acc_out"], ["scan_out"])],
        "body",
        [vi("i", I64, []), vi("cond_in", BOOL, []), vi("acc_in", F32, [2])],
        [vi("cond_out", BOOL, []), vi("acc_out", F32, [2]), vi("scan_out", F32, [2])])
    b = Builder(rng_for(name))
    b.nodes.append(helper.make_node("Loop", ["trip", "", "x"], ["final", "history"], body=body))
    model = b.model(name, [vi("trip", I64, []), vi("x", F32, [2])],
                    [vi("final", F32, [2]), vi("history", F32, ["iters", 2])])
    runs = [{"trip": np.array(t, np.int64), "x": b.rng.standard_normal(2).astype(np.float32)}
            for t in (3, 5)]
    write_case(name, "Loop with runtime trip count, carried acc += 1.5, scan output", model, runs)


def recurrent(name, op, hidden, gates, outputs, seqs, description):
    """Single-layer GRU/LSTM over x [seq, 1, 4] with random weights."""
    b = Builder(rng_for(name))
    w = b.randn("W", (1, gates * hidden, 4), 0.5)
    r = b.randn("R", (1, gates * hidden, hidden), 0.5)
    bias = b.randn("B", (1, 2 * gates * hidden), 0.1)
    b.nodes.append(helper.make_node(op, ["x", w, r, bias], outputs, hidden_size=hidden))
    shapes = {"Y": ["seq", 1, 1, hidden], "Y_h": [1, 1, hidden], "Y_c": [1, 1, hidden]}
    model = b.model(name, [vi("x", F32, ["seq", 1, 4])], [vi(o, F32, shapes[o]) for o in outputs])
    runs = [{"x": b.rng.standard_normal((s, 1, 4)).astype(np.float32)} for s in seqs]
    write_case(name, description, model, runs)


@case
def gru(name):
    """GRU, hidden 6, dynamic seq."""
    recurrent(name, "GRU", 6, 3, ["Y", "Y_h"], (3, 7), "GRU hidden 6, x [seq, 1, 4]")


@case
def lstm(name):
    """LSTM, hidden 5, dynamic seq."""
    recurrent(name, "LSTM", 5, 4, ["Y", "Y_h", "Y_c"], (2, 6), "LSTM hidden 5, x [seq, 1, 4]")


# ----------------------------------------------------------------------------- conv nets

def conv(b, x, cin, cout, k, stride=1, bias=True, std_scale=1.0):
    """Conv with He-normal weights (times std_scale), 'same'-style padding."""
    w = b.randn("conv_w", (cout, cin, k, k), std_scale * np.sqrt(2.0 / (cin * k * k)))
    ins = [x, w] + ([b.randn("conv_b", (cout,), 0.05)] if bias else [])
    return b.add("Conv", *ins, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)


def batchnorm(b, x, c, random_stats=False):
    """BatchNormalization; mean 0 / var 1 unless random_stats."""
    r = b.rng
    mean = r.standard_normal(c) * 0.1 if random_stats else np.zeros(c)
    var = r.uniform(0.5, 1.5, c) if random_stats else np.ones(c)
    params = [r.uniform(0.8, 1.2, c), r.standard_normal(c) * 0.05, mean, var]
    return b.add("BatchNormalization", x,
                 *[b.const(h, p.astype(np.float32)) for h, p in zip(["bn_s", "bn_b", "bn_m", "bn_v"], params)],
                 epsilon=1e-5)


@case
def small_convnet(name):
    """Conv-BN-Relu-MaxPool-Conv-Relu-GAP-Flatten-Gemm-Softmax on [batch, 3, 32, 32]."""
    b = Builder(rng_for(name))
    h = b.add("Relu", batchnorm(b, conv(b, "image", 3, 8, 3), 8, random_stats=True))
    h = b.add("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2])
    h = b.add("Relu", conv(b, h, 8, 16, 3))
    h = b.add("Flatten", b.add("GlobalAveragePool", h), axis=1)
    h = b.add("Gemm", h, b.randn("fc_w", (16, 10), 0.5), b.randn("fc_b", (10,), 0.1))
    b.add("Softmax", h, axis=-1, out="probs")
    model = b.model(name, [vi("image", F32, ["batch", 3, 32, 32])], [vi("probs", F32, ["batch", 10])])
    runs = [{"image": b.rng.standard_normal((n, 3, 32, 32)).astype(np.float32)} for n in (1, 3)]
    write_case(name, "small CNN classifier, dynamic batch", model, runs)


def resnet18_shaped(b, name, widths, size):
    """ResNet-18's graph (stem, max pool, 4 stages of 2 basic blocks, 1x1
    strided shortcuts, global pool, Gemm to 1000) with stage widths `widths`
    on [batch, 3, size, size]; returns the model."""
    h = b.add("Relu", batchnorm(b, conv(b, "input", 3, widths[0], 7, 2, False, 0.5), widths[0]))
    h = b.add("MaxPool", h, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = widths[0]
    for stage, cout in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = b.add("Relu", batchnorm(b, conv(b, h, cin, cout, 3, stride, False, 0.5), cout))
            y = batchnorm(b, conv(b, y, cout, cout, 3, 1, False, 0.5), cout)
            if stride != 1 or cin != cout:
                h = batchnorm(b, conv(b, h, cin, cout, 1, stride, False, 0.5), cout)
            h, cin = b.add("Relu", b.add("Add", y, h)), cout
    h = b.add("Flatten", b.add("GlobalAveragePool", h), axis=1)
    b.add("Gemm", h, b.randn("fc_w", (cin, 1000), np.sqrt(1 / cin)), b.randn("fc_b", (1000,), 0.01),
          out="logits")
    return b.model(name, [vi("input", F32, ["batch", 3, size, size])], [vi("logits", F32, ["batch", 1000])])


@case
def resnet18(name):
    """ResNet-18-shaped classifier with random weights (about 45 MB)."""
    b = Builder(rng_for(name))
    model = resnet18_shaped(b, name, [64, 128, 256, 512], 224)
    runs = [{"input": b.rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}]
    write_case(name, "ResNet-18-shaped model, random weights", model, runs, rtol=1e-3, atol=1e-4)
    np.save(OUT / name / "bench_b8.npy", b.rng.standard_normal((8, 3, 224, 224)).astype(np.float32))


@case
def resnet18_narrow(name):
    """ResNet-18's graph an eighth as wide on 64x64 (about 0.7 MB, 1/800 of
    the work): for the checks that want its graph's every kind of node, not
    its size (tract-cuda's fusion evaluated in fp16 on the CPU)."""
    b = Builder(rng_for(name))
    model = resnet18_shaped(b, name, [8, 16, 32, 64], 64)
    runs = [{"input": b.rng.standard_normal((1, 3, 64, 64)).astype(np.float32)}]
    write_case(name, "ResNet-18's graph, an eighth as wide, 64x64, random weights", model, runs,
               rtol=1e-3, atol=1e-4)


@case
def transformer_block(name):
    """Pre-LN transformer encoder block (d=32, 4 heads, MLP 64) with dynamic batch/seq."""
    b = Builder(rng_for(name))
    d, heads, dh, dff = 32, 4, 8, 64

    def layernorm(x):
        return b.add("LayerNormalization", x, b.const("ln_g", b.rng.uniform(0.8, 1.2, d).astype(np.float32)),
                     b.randn("ln_b", (d,), 0.05), axis=-1, epsilon=1e-5)

    def linear(x, cin, cout):
        return b.add("Add", b.add("MatMul", x, b.randn("w", (cin, cout), 1 / np.sqrt(cin))),
                     b.randn("b", (cout,), 0.05))

    split = b.const("split_shape", np.array([0, 0, heads, dh], np.int64))
    merge = b.const("merge_shape", np.array([0, 0, d], np.int64))
    ln1 = layernorm("x")
    q, k, v = (b.add("Reshape", linear(ln1, d, d), split) for _ in range(3))
    q = b.add("Transpose", q, perm=[0, 2, 1, 3])                        # [B, H, S, dh]
    k = b.add("Transpose", k, perm=[0, 2, 3, 1])                        # [B, H, dh, S]
    v = b.add("Transpose", v, perm=[0, 2, 1, 3])                        # [B, H, S, dh]
    scores = b.add("Div", b.add("MatMul", q, k), b.const("sqrt_dh", np.array(np.sqrt(dh), np.float32)))
    ctx = b.add("MatMul", b.add("Softmax", scores, axis=-1), v)          # [B, H, S, dh]
    ctx = b.add("Reshape", b.add("Transpose", ctx, perm=[0, 2, 1, 3]), merge)
    h = b.add("Add", "x", linear(ctx, d, d))
    mlp = linear(b.add("Relu", linear(layernorm(h), d, dff)), dff, d)
    b.add("Add", h, mlp, out="y")
    model = b.model(name, [vi("x", F32, ["batch", "seq", d])], [vi("y", F32, ["batch", "seq", d])])
    runs = [{"x": b.rng.standard_normal((n, s, d)).astype(np.float32)} for n, s in [(1, 5), (2, 9)]]
    write_case(name, "pre-LN transformer encoder block, d=32, 4 heads", model, runs,
               rtol=1e-4, atol=1e-4)


@case
def batching_mlp(name):
    """y = Relu(x @ W1 + b1) @ W2 + b2, 1024 -> 2048 -> 1024 fp32 (16 MiB of weights).

    Big enough that one engine call on a batch of 32 costs far less than 32
    calls on one row each: the model for the dynamic batching benchmark
    (scripts/bench_batching.sh) and the batched tritonclient tests.
    """
    b = Builder(rng_for(name))
    d_in, d_hidden, d_out = 1024, 2048, 1024
    h = b.add("MatMul", "x", b.randn("W1", (d_in, d_hidden), 1 / np.sqrt(d_in)))
    h = b.add("Relu", b.add("Add", h, b.randn("b1", (d_hidden,), 0.1)))
    h = b.add("MatMul", h, b.randn("W2", (d_hidden, d_out), 1 / np.sqrt(d_hidden)))
    b.add("Add", h, b.randn("b2", (d_out,), 0.1), out="y")
    model = b.model(name, [vi("x", F32, ["batch", d_in])], [vi("y", F32, ["batch", d_out])])
    # A single row, then a batch whose rows are run again alone by the tests.
    runs = [{"x": b.rng.standard_normal((n, d_in)).astype(np.float32)} for n in (1, 8)]
    write_case(name, "MLP 1024->2048->1024 with ReLU, dynamic batch, 16 MiB of weights", model,
               runs, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- pretrained

def uniform(rng, shape, lo, hi):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def single_input_runs(model_path, rng, shapes, make):
    """Runs feeding the model's only input with make(rng, shape) for each shape."""
    (inp,) = session(model_path).get_inputs()
    return [{inp.name: make(rng, s)} for s in shapes]


def ocr_model(name, file, shapes, description):
    """A RapidOCR (PaddleOCR) model with inputs uniform in [-1, 1]."""
    path = package_dir("rapidocr_onnxruntime") / "models" / file
    runs = single_input_runs(path, rng_for(name), shapes, lambda r, s: uniform(r, s, -1, 1))
    write_case(name, description, path, runs, rtol=1e-4, atol=1e-4)


@case
def ocr_det(name):
    """PP-OCRv4 text detector."""
    ocr_model(name, "ch_PP-OCRv4_det_infer.onnx", [(1, 3, 64, 96), (1, 3, 96, 160)],
              "pretrained PP-OCRv4 text detection (rapidocr-onnxruntime 1.4.4)")


@case
def ocr_rec(name):
    """PP-OCRv4 text recogniser."""
    ocr_model(name, "ch_PP-OCRv4_rec_infer.onnx", [(1, 3, 48, 160), (1, 3, 48, 320)],
              "pretrained PP-OCRv4 text recognition (rapidocr-onnxruntime 1.4.4)")


@case
def ocr_cls(name):
    """PP-OCR mobile v2 text-direction classifier."""
    ocr_model(name, "ch_ppocr_mobile_v2.0_cls_infer.onnx", [(1, 3, 48, 192), (2, 3, 48, 192)],
              "pretrained PP-OCR mobile v2.0 direction classifier (rapidocr-onnxruntime 1.4.4)")


@case
def magika(name):
    """Magika file-type classifier over int32 byte features 0..256."""
    path = package_dir("magika") / "models" / "standard_v3_3" / "model.onnx"
    runs = single_input_runs(path, rng_for(name), [(1, 2048), (3, 2048)],
                             lambda r, s: r.integers(0, 257, s, dtype=np.int32))
    write_case(name, "pretrained Magika standard_v3_3 (magika 1.0.3)", path, runs,
               rtol=1e-4, atol=1e-4)


@case
def silero_vad(name):
    """Silero VAD; run 1 feeds back the state produced by run 0."""
    path = package_dir("silero_vad") / "data" / "silero_vad.onnx"
    sess, rng = session(path), rng_for(name)
    audio, state, sr = (i.name for i in sess.get_inputs())    # declared order: input, state, sr
    state_out = next(o.name for o in sess.get_outputs() if len(o.shape) == 3)
    feeds = {audio: uniform(rng, (1, 512), -0.5, 0.5), state: np.zeros((2, 1, 128), np.float32),
             sr: np.array(16000, np.int64)}
    first = sess.run([state_out], feeds)[0]
    runs = [feeds, {**feeds, audio: uniform(rng, (1, 512), -0.5, 0.5), state: first}]
    results = write_case(name, "pretrained Silero VAD v6 (silero-vad 6.2.3), stateful over 2 runs",
                         path, runs, rtol=1e-4, atol=1e-4)
    assert np.array_equal(results[0][1][state_out], first), "silero_vad: state not reproducible"


@case
def ocr_ensemble(name):
    """The examples/ocr_ensemble pipeline's models, with references computed by
    onnxruntime running preprocess -> det -> binarize in turn (not by anemone)."""
    spec = importlib.util.spec_from_file_location(
        "ocr_ensemble", REPO / "examples" / "ocr_ensemble" / "make_repository.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    example.write(d / "repository")
    models = {m: session(d / "repository" / m / "1" / "model.onnx")
              for m in ("preprocess", "det", "binarize")}
    rng = rng_for(name)
    runs = []
    for k, (batch, h, w) in enumerate([(1, 64, 96), (2, 96, 160)]):
        image = example.text_like_image(rng, batch, h, w)
        (x,) = models["preprocess"].run(None, {"image": image})
        # The preprocessing model against numpy's own arithmetic.
        by_hand = ((image.astype(np.float32) / 255 - example.MEAN) / example.STD).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(x, by_hand, rtol=1e-5, atol=1e-5)
        (prob,) = models["det"].run(None, {"x": x})
        (mask,) = models["binarize"].run(None, {"prob": prob})
        assert mask.any() and not mask.all(), f"{name}: the detector found no text (or only text)"
        for tag, arr in [("image", image), ("prob", prob), ("mask", mask)]:
            np.save(d / f"run{k}_{tag}.npy", arr)
        runs.append({"image": f"run{k}_image.npy", "prob": f"run{k}_prob.npy",
                     "mask": f"run{k}_mask.npy"})
        print(f"{name:18s} run{k}: image{list(image.shape)} -> prob{list(prob.shape)} "
              f"max {prob.max():.3f}, mask {int(mask.sum())} px")
    doc = {"description": "examples/ocr_ensemble: preprocess -> PP-OCRv4 det -> binarize, "
                          "references by onnxruntime in turn",
           "threshold": example.THRESHOLD, "rtol": 1e-4, "atol": 1e-4, "runs": runs}
    (d / "case.json").write_text(json.dumps(doc, indent=2) + "\n")


# ----------------------------------------------------------------------------- bad models

def write_bad_models():
    """Models that must fail to load, each for a different reason."""
    d = OUT / "bad"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "not_onnx.onnx").write_text("hello, this is not a model")
    convnet = (OUT / "small_convnet" / "model.onnx").read_bytes()
    (d / "truncated.onnx").write_bytes(convnet[: int(len(convnet) * 0.6)])
    (d / "empty.onnx").write_bytes(b"")

    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "unsupported", [vi("x", F32, [2])], [vi("y", F32, [2])])
    onnx.save(make_model(graph, opsets=(("", OPSET), ("com.example", 1)), check=False),
              d / "unsupported_op.onnx")

    w = numpy_helper.from_array(np.ones(4, np.float32), "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in [("location", "weights.bin"), ("offset", "0"), ("length", "16")]:
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Add", ["x", "W"], ["y"])], "missing_external",
                              [vi("x", F32, [4])], [vi("y", F32, [4])], [w])
    onnx.save(make_model(graph, check=False), d / "missing_external.onnx")

    for f in BAD_FILES:
        try:
            session(d / f)
        except Exception as e:  # noqa: BLE001 - any load error is what we want
            reason = str(e).splitlines()[0].split(" : ")[-1].split("failed:")[-1]
            print(f"bad/{f:22s} rejected: {reason[:100]}")
        else:
            sys.exit(f"gen_fixtures: bad/{f} unexpectedly loaded in onnxruntime")


def link_onnx_node_tests():
    """Symlink fixtures/generated/onnx-node -> the onnx package's backend node tests."""
    target = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "node"
    assert target.is_dir(), target
    link = OUT / "onnx-node"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    print(f"onnx-node -> {target} ({len(list(target.iterdir()))} tests)")


# ----------------------------------------------------------------------------- main

def script_hash():
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def up_to_date():
    return (STAMP.is_file() and STAMP.read_text().strip() == script_hash()
            and all((OUT / c / "case.json").is_file() for c in CASES)
            and all((OUT / "bad" / f).is_file() for f in BAD_FILES)
            and (OUT / "bytes_identity" / "model.onnx").is_file()
            and (OUT / "onnx-node").is_dir())


def main():
    if "--check" in sys.argv:
        sys.exit(0 if up_to_date() else 1)
    if "--only" in sys.argv:
        names = sys.argv[sys.argv.index("--only") + 1].split(",")
        unknown = [n for n in names if n not in CASES]
        if unknown:
            sys.exit(f"gen_fixtures: unknown case(s) {unknown}; known: {', '.join(CASES)}")
        OUT.mkdir(parents=True, exist_ok=True)
        for name in names:
            CASES[name](name)
        return
    if "--force" not in sys.argv and up_to_date():
        print("gen_fixtures: up to date")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    print(f"gen_fixtures: onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    for name, fn in CASES.items():
        fn(name)
    bytes_identity()
    write_bad_models()
    link_onnx_node_tests()
    STAMP.write_text(script_hash() + "\n")
    print(f"gen_fixtures: wrote {len(CASES)} cases to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
