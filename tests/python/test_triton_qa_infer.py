"""Triton's inference QA suites, ported to pytest and run against anemone on
both CPU engines (`--backends tract-cpu --strict` and `--backends onnxruntime
--strict`), with tritonclient over HTTP (binary and JSON tensors), gRPC and
gRPC streaming, as `qa/common/infer_util.py` sends them.

From triton-inference-server/server, commit e1db8a603d863b1317ee859bdeea2be19959462e:
- `qa/L0_infer/infer_test.py`: every datatype combination of the ONNX
  add/sub models that `test_util.validate_for_onnx_model` admits (UINT8 is
  not), batching (`onnx_*`, max_batch_size 8, batch 1 and 8) and not
  (`onnx_nobatch_*`), the string models, `test_class_*` / `test_mix_*`
  (classification, class_count 3, OUTPUT0 labelled from
  `output0_labels.txt`) and `test_raw_version_*` (version policies);
- `qa/L0_infer_variable` (dims with -1), `qa/L0_infer_zero` (the identity
  models, zero-sized dimensions), `qa/L0_infer_reshape` (config `reshape`);
- `qa/L0_io` (CPU instances, the `fan_` ensemble), `qa/L0_scalar_io`,
  `qa/L0_optional_input`, `qa/L0_initializer_as_input`,
  `qa/L0_backend_onnxruntime` (BF16), `qa/L0_onnx_optimization` (ONNX Runtime
  options and accelerators); `qa/L0_batch_input` (ragged batching) is
  test_triton_qa_batch_input.py.

The ONNX models are written here with the `onnx` package by ports of
`qa/common/gen_qa_models.py`, `gen_qa_identity_models.py`,
`gen_qa_reshape_models.py` and `gen_qa_ort_scalar_models.py` (opset 13,
IR 8: this ONNX Runtime refuses the
package's newest opset), with Triton's names, dims and configs. Expected
values are numpy's, computed as `infer_util` does (inputs in half the range
of the narrowest type, so that sums are exact);
`test_models_agree_with_onnxruntime_python` runs every generated model in
ONNX Runtime's Python API against the same numpy values, so no engine is
checked against itself. Triton's repositories reuse names
(`onnx_zero_1_float32` is an identity in qa_identity_model_repository and a
reshape in qa_reshape_model_repository), so three repositories are served;
the other suites' configs are files in fixtures/triton_qa_infer/misc.

Not ported: the TensorRT, libtorch, OpenVINO and Python (`python_*`) rows,
the `simple_`/`sequence_`/`fan_` ensembles of L0_infer, L0_infer_zero and
L0_infer_reshape (L0_io's `fan_` is), shared memory variants, GPU devices.

tritonserver 2.51 (the PyPI wheel, CPU, Python backend only: no ONNX
Runtime backend) ran the Python stand-ins of the optional-input and
output-order checks on 2026-12-05; what it answered is in their docstrings.
The ONNX checks assert what Triton's QA asserts.
"""
import json
import queue
import threading
import time
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto as T
from onnx import helper
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

OBJ = np.dtype(object)
ENGINES = ["tract-cpu", "onnxruntime"]
_TYPES = [(np.bool_, T.BOOL, "TYPE_BOOL"), (np.int8, T.INT8, "TYPE_INT8"), (np.int16, T.INT16, "TYPE_INT16"),
          (np.int32, T.INT32, "TYPE_INT32"), (np.int64, T.INT64, "TYPE_INT64"),
          (np.float16, T.FLOAT16, "TYPE_FP16"), (np.float32, T.FLOAT, "TYPE_FP32"), (OBJ, T.STRING, "TYPE_STRING")]
ONNX_TYPE = {np.dtype(n): o for n, o, _ in _TYPES}
MODEL_TYPE = {np.dtype(n): m for n, _, m in _TYPES}
# infer_test.py's letters: b int8, s int16, i int32, l int64, h fp16, f fp32, o string.
LETTER = {"b": np.int8, "s": np.int16, "i": np.int32, "l": np.int64, "h": np.float16, "f": np.float32, "o": OBJ}


def dt(x):
    return np.dtype(x)


def letters(c):
    return tuple(LETTER[x] for x in c)


# ------------------------------------------------------------------ model generators
def _save(graph, path):
    model = helper.make_model(graph, producer_name="triton", opset_imports=[helper.make_operatorsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _graph(name, nodes, ins, outs, inits=()):
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(*i) for i in ins],
                             [helper.make_tensor_value_info(*o) for o in outs], initializer=list(inits))


def onnx_shape(shape, idx=0):
    """test_util.shape_to_onnx_shape: each -1 becomes a fresh `var_N`."""
    out = []
    for d in shape:
        out.append(f"var_{idx}" if d == -1 else d)
        idx += d == -1
    return out, idx


def _dims(shape):
    return ",".join(str(d) for d in shape)


def general_config(name, max_batch, inputs, outputs, version_policy=None, platform="onnxruntime_onnx"):
    """gen_ensemble_model_utils.create_general_modelconfig: tensors are
    (name, dtype, dims, model dims or None[, label file])."""
    vp = "{ latest { num_versions: 1 }}"
    if version_policy is not None:
        kind, val = version_policy
        vp = {"latest": f"{{ latest {{ num_versions: {val} }}}}", "specific": f"{{ specific {{ versions: {val} }}}}",
              "all": "{ all { }}"}[kind]
    text = f'\nname: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch}\nversion_policy: {vp}\n'
    for kind, tensors in (("input", inputs), ("output", outputs)):
        for t in tensors:
            n, typ, shape, model_shape = t[:4]
            reshape = "" if model_shape is None or list(shape) == list(model_shape) else \
                f"reshape: {{ shape: [ {_dims(model_shape)} ] }}"
            label = f'label_filename: "{t[4]}"' if len(t) > 4 and t[4] else ""
            typ = typ if isinstance(typ, str) else MODEL_TYPE[dt(typ)]
            text += f'\n{kind} [\n  {{\n    name: "{n}"\n    data_type: {typ}\n    dims: [ {_dims(shape)} ]\n' \
                    f"    {reshape}\n    {label}\n  }}\n]"
    return text + "\n"


def addsub_name(max_batch, in_dt, o0_dt, o1_dt):
    """test_util.get_model_name (np.dtype names: `object` for strings)."""
    return f"onnx{'_nobatch' if max_batch == 0 else ''}_{dt(in_dt).name}_{dt(o0_dt).name}_{dt(o1_dt).name}"


def zero_name(prefix, io_cnt, dtype):
    return f"{prefix}_zero_{io_cnt}_{dt(dtype).name}"


def create_addsub_model(repo, max_batch, version, shape, in_dt, o0_dt, o1_dt, swap=False, name=None):
    """gen_qa_models.create_onnx_modelfile: OUTPUT0 = INPUT0 + INPUT1 and
    OUTPUT1 = INPUT0 - INPUT1 (the other way round with `swap`), INT8, INT16
    and STRING inputs cast to INT32 first, each output cast to its type."""
    ti, t0, t1 = ONNX_TYPE[dt(in_dt)], ONNX_TYPE[dt(o0_dt)], ONNX_TYPE[dt(o1_dt)]
    in_shape, idx = onnx_shape(shape, 0)
    out0_shape, idx = onnx_shape(shape, idx)
    out1_shape, idx = onnx_shape(shape, idx)
    b = [] if max_batch == 0 else [None]
    if ti in (T.INT8, T.INT16, T.STRING):
        nodes = [helper.make_node("Cast", [n], ["_" + n], to=T.INT32) for n in ("INPUT0", "INPUT1")]
    else:
        nodes = [helper.make_node("Identity", [n], ["_" + n]) for n in ("INPUT0", "INPUT1")]
    nodes += [helper.make_node("Add", ["_INPUT0", "_INPUT1"], ["CAST1" if swap else "CAST0"]),
              helper.make_node("Sub", ["_INPUT0", "_INPUT1"], ["CAST0" if swap else "CAST1"])]
    for k, t in (("0", t0), ("1", t1)):
        if ti == T.FLOAT16 and t == ti:      # Triton avoids a float16 -> float16 Cast
            nodes.append(helper.make_node("Identity", ["CAST" + k], ["OUTPUT" + k]))
        else:
            nodes.append(helper.make_node("Cast", ["CAST" + k], ["OUTPUT" + k], to=t))
    name = name or addsub_name(max_batch, in_dt, o0_dt, o1_dt)
    _save(_graph(name, nodes, [(n, ti, b + in_shape) for n in ("INPUT0", "INPUT1")],
                 [("OUTPUT0", t0, b + out0_shape), ("OUTPUT1", t1, b + out1_shape)]),
          repo / name / str(version) / "model.onnx")


def create_addsub_models(repo, in_dt, o0_dt, o1_dt, shape, label_cnt, version_policy=None, versions=(1,)):
    """gen_qa_models.create_models (ONNX), max_batch 8 and 0; version 1
    adds, later versions swap (as gen_qa_models writes versions 2 and 3)."""
    for mb in (8, 0):
        name = addsub_name(mb, in_dt, o0_dt, o1_dt)
        (repo / name).mkdir(parents=True, exist_ok=True)
        (repo / name / "config.pbtxt").write_text(general_config(
            name, mb, [("INPUT0", in_dt, shape, None), ("INPUT1", in_dt, shape, None)],
            [("OUTPUT0", o0_dt, shape, None, "output0_labels.txt"), ("OUTPUT1", o1_dt, shape, None)],
            version_policy))
        (repo / name / "output0_labels.txt").write_text("".join(f"label{k}\n" for k in range(label_cnt)))
        for v in versions:
            create_addsub_model(repo, mb, v, shape, in_dt, o0_dt, o1_dt, swap=v > 1)


def create_identity_models(repo, name, max_batch, dtype, input_shapes, model_shapes, output_shapes=None,
                           output_model_shapes=None):
    """gen_qa_identity_models / gen_qa_reshape_models create_onnx_model{file,config}:
    INPUTk -> OUTPUTk (an Identity: the model shapes agree in every model
    Triton's QA makes), a config `reshape` where dims and model shapes differ."""
    output_shapes, output_model_shapes = output_shapes or input_shapes, output_model_shapes or model_shapes
    ty, b = ONNX_TYPE[dt(dtype)], [] if max_batch == 0 else [None]
    nodes, ins, outs, idx = [], [], [], 0
    for k, (ms, oms) in enumerate(zip(model_shapes, output_model_shapes)):
        in_shape, idx = onnx_shape(ms, idx)
        out_shape, idx = onnx_shape(oms, idx)
        ins.append((f"INPUT{k}", ty, b + in_shape))
        outs.append((f"OUTPUT{k}", ty, b + out_shape))
        nodes.append(helper.make_node("Identity", [f"INPUT{k}"], [f"OUTPUT{k}"]))
    _save(_graph(name, nodes, ins, outs), repo / name / "1" / "model.onnx")
    (repo / name / "config.pbtxt").write_text(general_config(
        name, max_batch, [(f"INPUT{k}", dtype, s, m) for k, (s, m) in enumerate(zip(input_shapes, model_shapes))],
        [(f"OUTPUT{k}", dtype, s, m) for k, (s, m) in enumerate(zip(output_shapes, output_model_shapes))]))


# ------------------------------------------------------------------ repositories
# gen_qa_models.py's fixed models (size 16, 16 labels): letters, version policy, versions.
FIXED = [("bbb", ("latest", 1), (1, 2, 3)), ("sss", ("latest", 2), (1, 2, 3)), ("iii", ("all", None), (1, 2, 3)),
         ("lll", None, (1,)), ("hhh", ("specific", [1]), (1, 2, 3)), ("fff", ("specific", [1, 3]), (1, 2, 3)),
         *[(c, None, (1,)) for c in ("hff", "ibb", "bii", "ibs", "iff", "fii", "ihs",
                                     "oii", "ooo", "oio", "ooi", "ioo", "iio", "ioi")]]
# gen_qa_models.py --variable: letters, dims, label count.
VARIABLE = [("fff", [-1], 16), ("fii", [-1, -1], 16), ("fll", [8, -1], 32), ("fil", [-1, 8, -1], 32),
            ("ffi", [-1], 16), ("iii", [-1, -1], 16), ("iif", [-1, 8, -1], 32), ("ooo", [-1], 16),
            ("oii", [-1, -1], 16), ("ooi", [8, -1], 32), ("oio", [-1, 8, -1], 32)]
# gen_qa_identity_models.py: dtype, dims, io count.
IDENTITY = [(np.bool_, [-1], 1), (np.float32, [-1], 1), (np.float32, [-1], 3), (np.float16, [-1, -1], 1),
            (np.float16, [-1, -1], 3), (OBJ, [-1], 1), (OBJ, [-1, -1], 3)]
# gen_qa_reshape_models.py: dtype, dims, model dims, nobatch too, output dims (= model dims) if other.
RESHAPE = [(OBJ, [[1]], [[]], False, None), (np.float32, [[1]], [[]], False, None),
           (np.float32, [[1], [8]], [[], [4, 1, 2]], False, None),
           (np.float32, [[4, 4], [2], [2, 2, 3]], [[16], [1, 2], [3, 2, 2]], True, None),
           (np.float32, [[4, 4], [2], [2, 2, 3], [1]], [[16], [1, 2], [3, 2, 2], [1]], True,
            [[16], [1, 2], [3, 2, 2], [1]]),
           (np.int32, [[2, 4, -1, 6]], [[8, -1, 1, 6]], True, None),
           (np.int32, [[1, -1, 1], [-1], [2, 2, 3]], [[-1], [1, -1, 1], [3, 2, 2]], True, None),
           (np.int32, [[-1, 1], [2]], [[1, -1], [1, 2]], True, [[1, -1], [1, 2]])]


def write_qa_repository(repo):
    """qa_model_repository (the add/sub models) and qa_identity_model_repository."""
    for c, policy, versions in FIXED:
        create_addsub_models(repo, *letters(c), [16], 16, policy, versions)
    for dtype, shape, n in IDENTITY:
        for mb, prefix in ((8, "onnx"), (0, "onnx_nobatch")):
            create_identity_models(repo, zero_name(prefix, n, dtype), mb, dtype, [shape] * n, [shape] * n)
    return repo


def write_variable_repository(repo):
    """qa_variable_model_repository and qa_reshape_model_repository."""
    for c, shape, labels in VARIABLE:
        create_addsub_models(repo, *letters(c), shape, labels)
    for dtype, shapes, model_shapes, nobatch, out in RESHAPE:
        for mb, prefix in ((8, "onnx"), (0, "onnx_nobatch"))[:1 + nobatch]:
            create_identity_models(repo, zero_name(prefix, len(shapes), dtype), mb, dtype, shapes, model_shapes,
                                   out, out)
    return repo


# ------------------------------------------------------------------ servers
@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    base = tmp_path_factory.mktemp("qa_infer")
    return {"qa": write_qa_repository(base / "qa"), "variable": write_variable_repository(base / "variable"),
            "misc": write_misc_repository(base / "misc")}


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    return request.param


def _serving(repo, engine, *flags):
    proc, addresses = start_serve(repo, "--backends", engine, "--strict", *flags)
    try:
        wait_ready(addresses["HTTP"])
        yield SimpleNamespace(http=addresses["HTTP"], grpc=addresses["gRPC"], engine=engine)
    finally:
        stop_serve(proc)


@pytest.fixture(scope="module")
def qa(repos, engine):
    yield from _serving(repos["qa"], engine)


@pytest.fixture(scope="module")
def variable(repos, engine):
    yield from _serving(repos["variable"], engine)


@pytest.fixture(scope="module")
def misc(repos, engine):
    # Some of its models must fail to load: ready once loading is over.
    yield from _serving(repos["misc"], engine, "--strict-readiness", "false")


# ------------------------------------------------------------------ clients (infer_util's configs)
def protocols(json_ok=True):
    """infer_util's configs: HTTP binary, HTTP JSON (not for FP16, nor when
    one output is classified and the other not), gRPC, gRPC streaming."""
    return ["http-binary"] + (["http-json"] if json_ok else []) + ["grpc", "grpc-stream"]


def infer(srv, proto, model, inputs, outputs=None, version="", request_id="1"):
    """One request over `proto`; `inputs` are (name, array), `outputs` None
    (ask for none) or (name, class_count). Returns (model_name,
    model_version, id, [(output name, array)] in the answer's order)."""
    http, binary = proto.startswith("http"), proto != "http-json"
    mod = httpclient if http else grpcclient
    tensors = []
    for n, a in inputs:
        tensors.append(mod.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype)))
        tensors[-1].set_data_from_numpy(a, **({"binary_data": binary} if http else {}))
    req_outs = None if outputs is None else [
        httpclient.InferRequestedOutput(n, binary_data=binary, class_count=c) if http
        else grpcclient.InferRequestedOutput(n, class_count=c) for n, c in outputs]
    kwargs = {"model_version": version, "outputs": req_outs, "request_id": request_id}
    if http:
        result = httpclient.InferenceServerClient(srv.http, network_timeout=60).infer(model, tensors, **kwargs)
        r = result.get_response()
        return r["model_name"], r["model_version"], r.get("id"), \
            [(o["name"], _bytes(result.as_numpy(o["name"]))) for o in r["outputs"]]
    client = grpcclient.InferenceServerClient(srv.grpc)
    if proto == "grpc":
        result = client.infer(model, tensors, **kwargs)
    else:
        answers = queue.Queue()
        client.start_stream(lambda result, error: answers.put((result, error)))
        try:
            client.async_stream_infer(model, tensors, **kwargs)
            result, error = answers.get(timeout=60)
        finally:
            client.stop_stream()
        if error is not None:
            raise error
    r = result.get_response()
    return r.model_name, r.model_version, r.id, [(o.name, _bytes(result.as_numpy(o.name))) for o in r.outputs]


def _bytes(a):
    """BYTES answers as bytes (HTTP JSON gives str), as infer_util compares them."""
    if a is not None and a.dtype == OBJ:
        return np.array([x.encode() if isinstance(x, str) else bytes(x) for x in a.flatten()],
                        dtype=object).reshape(a.shape)
    return a


def _range_repr(d):
    """infer_util._range_repr_dtype."""
    return {dt(np.float32): np.int16, dt(np.float16): np.int8, OBJ: np.int32}.get(dt(d), d)


def _strings(a):
    return np.array([str(x) for x in a.flatten()], dtype=object).reshape(a.shape)


def _as_out(a, d):
    return np.array([str(x).encode() for x in a.flatten()], dtype=object).reshape(a.shape) if dt(d) == OBJ \
        else a.astype(d)


def addsub_case(rng, shape, in_dt, o0_dt, o1_dt, raw0=True, raw1=True, swap=False):
    """infer_util.infer_exact's data: two inputs in half the range of the
    narrowest type (a classified output counts as FP32) and the outputs."""
    ranges = [_range_repr(d) for d in (in_dt, o0_dt if raw0 else np.float32, o1_dt if raw1 else np.float32)]
    lo, hi = int(max(np.iinfo(r).min for r in ranges) / 2), int(min(np.iinfo(r).max for r in ranges) / 2)
    a, b = (rng.integers(lo, hi, size=shape).astype(_range_repr(in_dt)) for _ in range(2))
    if dt(in_dt) != OBJ:
        a, b = a.astype(in_dt), b.astype(in_dt)
    s, d = (a - b, a + b) if swap else (a + b, a - b)
    out0, out1 = _as_out(s, o0_dt), _as_out(d, o1_dt)
    return (_strings(a), _strings(b), out0, out1) if dt(in_dt) == OBJ else (a, b, out0, out1)


def check_classes(got, expected, batched, batch_size, labels, what):
    """infer_util's class check: 3 `value:index[:label]` strings per row, each
    value the expected one at its index and at its rank's index, the label
    `label<index>` from output0_labels.txt (OUTPUT1 has none)."""
    rows = got if batched else got[None]
    assert rows.shape == (batch_size, 3), f"{what}: shape {got.shape}"
    for b, flat in enumerate(expected.reshape(batch_size, -1)):
        order = np.flip(np.argsort(flat, kind="stable"), 0)
        for k, entry in enumerate(rows[b]):
            parts = entry.decode().split(":")
            val, idx = float(parts[0]), int(parts[1])
            assert val == flat[idx] and val == flat[order[k]], f"{what}: row {b} entry {k} {entry!r}"
            if labels and idx == order[k]:
                assert parts[2] == f"label{idx}", f"{what}: {entry!r}"
            assert labels or len(parts) == 2, f"{what}: {entry!r} has a label"


def infer_exact(srv, pf, shape, batch_size, in_dt, o0_dt, o1_dt, raw0=True, raw1=True, swap=False,
                version="", seed=0):
    """infer_util.infer_exact over every protocol; `shape` includes the batch
    dimension of batching models."""
    a, b, out0, out1 = addsub_case(np.random.default_rng(seed), shape, in_dt, o0_dt, o1_dt, raw0, raw1, swap)
    model = f"{pf}_{dt(in_dt).name}_{dt(o0_dt).name}_{dt(o1_dt).name}"
    fp16 = dt(np.float16) in (dt(in_dt), dt(o0_dt), dt(o1_dt))
    for proto in protocols(json_ok=raw0 == raw1 and not fp16):
        rid = f"{model}-{proto}"
        name, ver, got_id, outs = infer(srv, proto, model, [("INPUT0", a), ("INPUT1", b)],
                                        [("OUTPUT0", 0 if raw0 else 3), ("OUTPUT1", 0 if raw1 else 3)],
                                        version=version, request_id=rid)
        what = f"{model} v{version or '-'} over {proto} on {srv.engine}"
        assert name == model and got_id == rid and (not version or str(ver) == version), what
        assert [n for n, _ in outs] == ["OUTPUT0", "OUTPUT1"], what
        for (n, got), want, raw in zip(outs, (out0, out1), (raw0, raw1)):
            if raw:
                assert got.dtype == want.dtype and got.shape == want.shape, f"{what} {n}: {got.dtype} {got.shape}"
                np.testing.assert_array_equal(got, want, err_msg=f"{what} {n}")
            else:
                check_classes(got, want.astype(np.float64), "nobatch" not in pf, batch_size, n == "OUTPUT0",
                              f"{what} {n}")


def full_exact(srv, c, raw0=True, raw1=True, swap=False, shape=(16,), batch=True):
    """infer_test.py _full_exact for the ONNX models: the nobatch model at
    batch 1, the batching model at batch 1 and 8."""
    infer_exact(srv, "onnx_nobatch", tuple(shape), 1, *letters(c), raw0, raw1, swap)
    for bs in (1, 8) if batch else ():
        infer_exact(srv, "onnx", (bs, *shape), bs, *letters(c), raw0, raw1, swap, seed=bs)


# ------------------------------------------------------------------ L0_infer
SWAP = {"bbb", "sss", "iii", "fff"}      # the version served by default swaps its outputs


@pytest.mark.parametrize("c", [c for c, _, _ in FIXED])
def test_infer_raw(qa, c):
    """infer_test.py test_raw_<c>: the add/sub model of each datatype
    combination, nobatch and batching (1 and 8), over HTTP binary and JSON,
    gRPC and gRPC streaming, each output exact against numpy."""
    full_exact(qa, c, swap=c in SWAP)


@pytest.mark.parametrize("c", ["bbb", "sss", "iii", "lll", "fff", "iff"])
def test_infer_class_and_mix(qa, c):
    """infer_test.py test_class_<c> (both outputs classified, class_count 3)
    and test_mix_<c> (one classified, the other raw, as it pairs them)."""
    full_exact(qa, c, False, False, swap=c in SWAP)
    full_exact(qa, c, *((True, False) if c in ("bbb", "iii", "fff") else (False, True)), swap=c in SWAP)


def test_infer_version_policies(qa):
    """infer_test.py test_raw_version_{latest_1, latest_2, all, specific_1,
    specific_1_3}: each version a policy serves answers (version 1 adds, 2
    and 3 swap), the others are 'Request for unknown model' (Triton's test
    also passes when they answer; here they must not)."""
    for letter, versions in (("b", {1: None, 2: None, 3: True}), ("s", {1: None, 2: True, 3: True}),
                             ("i", {1: False, 2: True, 3: True}), ("h", {1: False, 2: None, 3: None}),
                             ("f", {1: False, 2: None, 3: True})):
        d = LETTER[letter]
        for v, swap in versions.items():
            if swap is None:
                with pytest.raises(InferenceServerException) as e:
                    infer_exact(qa, "onnx", (1, 16), 1, d, d, d, version=str(v))
                assert e.value.message().startswith("Request for unknown model"), e.value.message()
            else:
                infer_exact(qa, "onnx", (1, 16), 1, d, d, d, swap=swap, version=str(v))


def test_outputs_requested_or_not(qa):
    """infer_util's `outputs`: a request naming no output gets both, in the
    config's order (docs/SERVING.md); one naming OUTPUT1 gets it alone."""
    a, b, out0, out1 = addsub_case(np.random.default_rng(3), (2, 16), np.int32, np.int32, np.int32, swap=True)
    for proto in protocols():
        outs = infer(qa, proto, "onnx_int32_int32_int32", [("INPUT0", a), ("INPUT1", b)], None)[3]
        assert [n for n, _ in outs] == ["OUTPUT0", "OUTPUT1"], proto
        np.testing.assert_array_equal(outs[0][1], out0)
        np.testing.assert_array_equal(outs[1][1], out1)
        outs = infer(qa, proto, "onnx_int32_int32_int32", [("INPUT0", a), ("INPUT1", b)], [("OUTPUT1", 0)])[3]
        assert [n for n, _ in outs] == ["OUTPUT1"], proto
        np.testing.assert_array_equal(outs[0][1], out1)


def test_outputs_answered_in_model_order(qa):
    """Outputs asked for as [OUTPUT1, OUTPUT0] come back as [OUTPUT0,
    OUTPUT1]: Triton's backends produce the config's outputs in its order
    (the ONNX Runtime backend's "retrieve all model outputs" loop) and the
    responder keeps it. tritonserver 2.51 (2026-12-05, a Python add/sub,
    HTTP JSON and gRPC): [OUTPUT0, OUTPUT1]. anemone: [OUTPUT1, OUTPUT0]."""
    a, b, out0, out1 = addsub_case(np.random.default_rng(4), (1, 16), np.int32, np.int32, np.int32, swap=True)
    for proto in protocols():
        outs = infer(qa, proto, "onnx_int32_int32_int32", [("INPUT0", a), ("INPUT1", b)],
                     [("OUTPUT1", 0), ("OUTPUT0", 0)])[3]
        np.testing.assert_array_equal(dict(outs)["OUTPUT0"], out0)
        np.testing.assert_array_equal(dict(outs)["OUTPUT1"], out1)
        assert [n for n, _ in outs] == ["OUTPUT0", "OUTPUT1"], proto


def test_outputs_binary_or_json(qa):
    """HTTP: each output binary or JSON as its `binary_data` says (infer_util
    sets it per output), `binary_data_output` for outputs not named, JSON by
    default; `binary_data_size` counts the bytes appended, in order."""
    a, b, out0, out1 = addsub_case(np.random.default_rng(5), (1, 16), np.int32, np.int32, np.int32, swap=True)
    want = {"OUTPUT0": out0, "OUTPUT1": out1}
    for outputs, params, binary in (
            (None, None, set()),
            ([{"name": "OUTPUT0", "parameters": {"binary_data": True}}, {"name": "OUTPUT1"}], None, {"OUTPUT0"}),
            ([{"name": "OUTPUT0"}, {"name": "OUTPUT1", "parameters": {"binary_data": True}}], None, {"OUTPUT1"}),
            (None, {"binary_data_output": True}, {"OUTPUT0", "OUTPUT1"})):
        body = {"inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "data": x.flatten().tolist()}
                           for n, x in (("INPUT0", a), ("INPUT1", b))]}
        body.update({k: v for k, v in (("outputs", outputs), ("parameters", params)) if v is not None})
        r = requests.post(f"http://{qa.http}/v2/models/onnx_int32_int32_int32/infer", data=json.dumps(body), timeout=60)
        assert r.status_code == 200, r.text
        n = int(r.headers.get("Inference-Header-Content-Length", len(r.content)))
        header, rest = json.loads(r.content[:n]), r.content[n:]
        assert [o["name"] for o in header["outputs"]] == ["OUTPUT0", "OUTPUT1"]
        for o in header["outputs"]:
            assert o["shape"] == [1, 16] and o["datatype"] == "INT32", o
            if o["name"] in binary:
                size = o["parameters"]["binary_data_size"]
                assert "data" not in o and size == 64, o
                np.testing.assert_array_equal(np.frombuffer(rest[:size], np.int32).reshape(1, 16), want[o["name"]])
                rest = rest[size:]
            else:
                assert o["data"] == want[o["name"]].flatten().tolist(), o
        assert rest == b""


# ------------------------------------------------------------------ L0_infer_variable
# infer_variable_test.py: letters -> request shape; its mix tests.
VARIABLE_SHAPES = {"fff": (16,), "fii": (2, 8), "fll": (8, 4), "fil": (2, 8, 2), "ffi": (16,), "iii": (2, 8),
                   "iif": (2, 8, 2), "ooo": (16,), "oii": (2, 8), "ooi": (8, 4), "oio": (2, 8, 2)}
VARIABLE_MIX = {"ffi": (True, False), "iii": (False, True), "iif": (True, False)}


@pytest.mark.parametrize("c", list(VARIABLE_SHAPES))
def test_infer_variable(variable, c):
    """infer_variable_test.py test_raw_<c>, test_class_<c> and test_mix_<c>:
    the models with -1 dims at a fixed request shape. Triton's test runs
    the nobatch models; the batching ones get batches of 1 and 8 here too."""
    shape = VARIABLE_SHAPES[c]
    full_exact(variable, c, shape=shape)
    if "o" not in c:
        full_exact(variable, c, False, False, shape=shape, batch=False)
    if c in VARIABLE_MIX:
        full_exact(variable, c, *VARIABLE_MIX[c], shape=shape, batch=False)


# ------------------------------------------------------------------ L0_infer_zero / L0_infer_reshape
def infer_zero(srv, pf, dtype, input_shapes, output_shapes, seed=0):
    """infer_util.infer_zero: INPUTk (random over the type's range) comes
    back as OUTPUTk in `output_shapes`, over every protocol."""
    rng, model = np.random.default_rng(seed), zero_name(pf, len(input_shapes), dtype)
    inputs, expected = [], {}
    for k, (ishape, oshape) in enumerate(zip(input_shapes, output_shapes)):
        if dt(dtype) == dt(np.bool_):
            a = rng.choice([False, True], size=ishape)
        else:
            r = np.iinfo(_range_repr(dtype))
            a = rng.integers(r.min, r.max, size=ishape).astype(_range_repr(dtype))
        inputs.append((f"INPUT{k}", _strings(a) if dt(dtype) == OBJ else a.astype(dtype)))
        expected[f"OUTPUT{k}"] = _as_out(a, dtype).reshape(oshape)
    for proto in protocols(json_ok=dt(dtype) != dt(np.float16)):
        what = f"{model} {list(map(list, input_shapes))} over {proto} on {srv.engine}"
        name, _, _, outs = infer(srv, proto, model, inputs, [(n, 0) for n in expected])
        assert name == model and sorted(n for n, _ in outs) == sorted(expected), what
        for n, got in outs:
            assert got.shape == expected[n].shape and got.dtype == expected[n].dtype, \
                f"{what} {n}: {got.dtype} {got.shape} != {expected[n].shape}"
            np.testing.assert_array_equal(got, expected[n], err_msg=f"{what} {n}")


HH3 = [([2, 2], [2, 2], [1, 1]), ([0, 0], [0, 0], [0, 0]), ([0, 1], [0, 1], [2, 3]), ([1, 0], [1, 3], [0, 1]),
       ([1, 1], [3, 0], [0, 0]), ([1, 1], [0, 6], [2, 2])]
ZERO = {  # infer_zero_test.py, per dtype: (model io count, shapes per input) of its tests
    "ff": (np.float32, [([1],), ([0],), ([1], [2], [1]), ([0], [0], [0]), ([0], [0], [1]), ([0], [1], [0]),
                        ([1], [0], [0]), ([1], [0], [1])]),
    "hh": (np.float16, [([2, 2],), ([1, 0],), ([0, 1],), ([0, 0],)] + HH3),
    "oo": (OBJ, [([2],), ([0],)] + HH3),
    "bb": (np.bool_, [([10],), ([0],)]),
}


@pytest.mark.parametrize("case", list(ZERO))
def test_infer_zero(qa, case):
    """infer_zero_test.py test_<case>{1,3}_*: the identity models (dims [-1]
    or [-1, -1], 1 or 3 inputs) with every shape it sends, zero-sized
    dimensions included, batching (1 and 8) and not."""
    dtype, cases = ZERO[case]
    for shapes in cases:
        shapes = [list(s) for s in shapes]
        for bs in (1, 8):
            infer_zero(qa, "onnx", dtype, [[bs] + s for s in shapes], [[bs] + s for s in shapes], seed=bs)
        infer_zero(qa, "onnx_nobatch", dtype, shapes, shapes)


RESHAPE_TESTS = {  # infer_reshape_test.py, per dtype: (input shapes, output shapes, nobatch too) of its tests
    "ff": (np.float32, [([[1]], None, False), ([[1], [8]], None, False), ([[4, 4], [2], [2, 2, 3]], None, True),
                        ([[4, 4], [2], [2, 2, 3], [1]], [[16], [1, 2], [3, 2, 2], [1]], True)]),
    "ii": (np.int32, [([[2, 4, 5, 6]], None, True), ([[4, 1], [2]], [[1, 4], [1, 2]], True),
                      ([[1, 4, 1], [8], [2, 2, 3]], None, True)]),
    "oo": (OBJ, [([[1]], None, False)]),
}


@pytest.mark.parametrize("case", list(RESHAPE_TESTS))
def test_infer_reshape(variable, case):
    """infer_reshape_test.py test_<case>{1..4}: the qa_reshape_model_repository
    models, whose configs `reshape` the request's dims to the model's ([1]
    to a scalar row, [4, 4] to [16], -1 on both sides) and back."""
    dtype, tests = RESHAPE_TESTS[case]
    for ins, outs, nobatch in tests:
        outs = outs or ins
        for bs in (1, 8):
            infer_zero(variable, "onnx", dtype, [[bs] + s for s in ins], [[bs] + s for s in outs], seed=bs)
        if nobatch:
            infer_zero(variable, "onnx_nobatch", dtype, ins, outs)


# ------------------------------------------------------------------ the other suites' models
FIXTURES = Path(__file__).parent / "fixtures/triton_qa_infer"
QUEUE_DELAY_S = 1.5     # identity_2_float32's max_queue_delay (L0_optional_input's 5 s, shortened)


def _accelerator(name, **params):
    return ('optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "%s" %s } ] } }'
            % (name, " ".join(f'parameters {{ key: "{k}" value: "{v}" }}' for k, v in params.items())))


def _params(**params):
    return "\n".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }}}}' for k, v in params.items())


# L0_onnx_optimization/test.sh: what it appends to copies of
# onnx_float32_float32_float32 (instance_group { count: 5 }), and the word a
# refusal by anemone must name (None: it loads). Triton loads all but the
# last three (trt_cache_on, with an absolute cache path, is left out).
OPTIMIZATION = {
    "test": ("", None),
    "session_config": (_params(**{"session.use_device_allocator_for_initializers": "1"}), None),
    "cuda_config": (_params(cudnn_conv_algo_search="1", arena_extend_strategy="1",
                            gpu_mem_limit="18446744073709551614"), None),
    "cpu_config": (_params(intra_op_thread_count="1", enable_mem_arena="1", enable_mem_pattern="1",
                           **{"memory.enable_memory_arena_shrinkage": "cpu:0"}), None),
    "trt": (_accelerator("tensorrt"), None),
    "cuda_param_field": (_accelerator("cuda", cudnn_conv_use_max_workspace="0", use_ep_level_unified_stream="1"),
                         "cudnn_conv_use_max_workspace"),
    "trt_param": (_accelerator("tensorrt", precision_mode="FP16", trt_max_partition_iterations="1000",
                               trt_timing_cache_enable="1", max_workspace_size_bytes="1073741824"),
                  "trt_max_partition_iterations"),
    "trt_unknown_param": (_accelerator("tensorrt", precision_mode="FP16", segment_size="1"), "segment_size"),
    "trt_invalid_param": (_accelerator("tensorrt", precision_mode="FP16", max_workspace_size_bytes="abc"), "abc"),
    "unknown_gpu": (_accelerator("unknown_gpu"), "unknown_gpu"),
}


def _identity_graph(name, inputs, shape, out_shape=None, ty=T.FLOAT):
    return _graph(name, [helper.make_node("Identity", [i], [i.replace("INPUT", "OUTPUT")]) for i in inputs],
                  [(i, ty, shape) for i in inputs], [(i.replace("INPUT", "OUTPUT"), ty, out_shape or shape)
                                                     for i in inputs])


def write_misc_repository(repo):
    """The models of L0_io, L0_scalar_io, L0_initializer_as_input,
    L0_onnx_optimization, L0_backend_onnxruntime and L0_optional_input: their configs from fixtures/triton_qa_infer/misc,
    their ONNX files made here."""
    shutil.copytree(FIXTURES / "misc", repo)
    for name in ("identity_2_float32", "optional_identity"):   # Python identities (Triton's C++ `identity`)
        (repo / name / "1").mkdir()
        shutil.copy(FIXTURES / "identity_model.py", repo / name / "1" / "model.py")
    f32, io2 = np.float32, ["INPUT0", "INPUT1"]
    create_addsub_model(repo, 8, 1, [16], f32, f32, f32)
    create_addsub_model(repo, 8, 1, [16], OBJ, OBJ, OBJ)
    models = {
        "nop_TYPE_FP32_-1": _identity_graph("nop", io2, [None, "var_0"], [None, "var_1"]),
        "onnx_identity_2_float32": _identity_graph("i2", io2, [None, 1]),
        # gen_qa_ort_scalar_models: no shape at all; and rank-0 tensors.
        **{n: _identity_graph(n, ["INPUT"], None) for n in ("onnx_scalar_1dim", "onnx_scalar_2dim",
                                                            "onnx_scalar_1dim_dims2")},
        **{n: _identity_graph(n, ["INPUT"], []) for n in ("onnx_scalar_rank0", "onnx_scalar_reshape")},
        # L0_initializer_as_input/generate_test_model.py
        "add_with_initializer": _graph("init_input", [helper.make_node("Add", ["INPUT", "INITIALIZER"], ["OUTPUT"])],
                                       [("INPUT", T.FLOAT, [5, 5]), ("INITIALIZER", T.FLOAT, [5, 5])],
                                       [("OUTPUT", T.FLOAT, [5, 5])],
                                       [helper.make_tensor("INITIALIZER", T.FLOAT, [5, 5], [1.0] * 25)]),
        "onnx_bf16_bf16_bf16": _graph("bf16", [helper.make_node("Add", io2, ["OUTPUT0"]),
                                               helper.make_node("Sub", io2, ["OUTPUT1"])],
                                      [(i, T.BFLOAT16, [None, 16]) for i in io2],
                                      [(o, T.BFLOAT16, [None, 16]) for o in ("OUTPUT0", "OUTPUT1")]),
    }
    for name, graph in models.items():
        _save(graph, repo / name / "1" / "model.onnx")
    for variant, (lines, _) in OPTIMIZATION.items():   # L0_onnx_optimization's copies
        name = f"onnx_float32_float32_float32_{variant}"
        create_addsub_model(repo, 8, 1, [16], f32, f32, f32, name=name)
        (repo / name / "output0_labels.txt").write_text("".join(f"label{k}\n" for k in range(16)))
        (repo / name / "config.pbtxt").write_text(general_config(
            name, 8, [("INPUT0", f32, [16], None), ("INPUT1", f32, [16], None)],
            [("OUTPUT0", f32, [16], None, "output0_labels.txt"), ("OUTPUT1", f32, [16], None)],
            ("specific", [1, 3])) + "\ninstance_group { count: 5 }\n" + lines + "\n")
    return repo


# ------------------------------------------------------------------ L0_io, L0_scalar_io, L0_initializer_as_input
def _index(srv):
    return {r["name"]: r for r in requests.post(f"http://{srv.http}/v2/repository/index", timeout=30).json()}


def test_io_cpu_instance_and_fan_ensemble(misc):
    """L0_io/test.sh, its CPU rows (anemone has no GPU memory to copy to):
    the fp32 model as a KIND_CPU instance, only version 1 of its policy's
    [1, 3] present, its `fan_` ensemble through nop_TYPE_FP32_-1, and
    onnx_object_object_object, batch 1 and 8, every protocol."""
    for bs in (1, 8):
        for pf, d in (("onnx", np.float32), ("fan_onnx", np.float32), ("onnx", OBJ)):
            infer_exact(misc, pf, (bs, 16), bs, d, d, d, seed=bs)
    config = httpclient.InferenceServerClient(misc.http).get_model_config("onnx_float32_float32_float32")
    assert [g["kind"] for g in config["instance_group"]] == ["KIND_CPU"]
    with pytest.raises(InferenceServerException, match="Request for unknown model"):
        infer_exact(misc, "onnx", (1, 16), 1, np.float32, np.float32, np.float32, version="3")


def test_scalar_io(misc):
    """scalar_test.py test_scalar_io: models whose INPUT/OUTPUT carry no
    shape (ONNX Runtime reports them as scalars), configured [1] and [1, 1],
    answer the input as sent; so does a rank-0 model served as [1] through
    `reshape: { shape: [ ] }` (docs/FROM_TRITON.md: Triton refuses that one)."""
    for model, shape in (("onnx_scalar_1dim", [1]), ("onnx_scalar_2dim", [1, 1]), ("onnx_scalar_reshape", [1])):
        x = np.array([1], np.float32).reshape(shape)
        for proto in protocols():
            outs = infer(misc, proto, model, [("INPUT", x)], None)[3]
            assert [n for n, _ in outs] == ["OUTPUT"] and outs[0][1].shape == x.shape, (model, proto)
            np.testing.assert_allclose(outs[0][1], x)


def test_scalar_io_rank0_with_dims_1(misc):
    """L0_scalar_io's config (dims [1]) over a model whose input is a true
    rank-0 tensor: ONNX Runtime reports it exactly as it reports
    gen_qa_ort_scalar_models' shapeless input (shape []), so Triton's ONNX
    Runtime backend serves both alike. anemone refuses it: "dims [1] have 1
    dimension(s) but the model's shape [] has 0; set dims to [] or remove
    them" (and Triton's configs cannot say dims [] without batching) before
    it served a scalar given dims [1] as one element."""
    x = np.array([5], np.float32)
    for proto in protocols():
        np.testing.assert_allclose(infer(misc, proto, "onnx_scalar_rank0", [("INPUT", x)], None)[3][0][1], x)


def test_scalar_io_wrong_dims_refused(misc):
    """L0_scalar_io/test.sh rewrites onnx_scalar_1dim's dims to [2] and
    requires the server to fail loading it: Triton's ONNX Runtime backend
    reads a tensor the model gives no shape as a scalar. ONNX says such a
    tensor's shape is unknown, and anemone takes the config's dims for it
    (docs/FROM_TRITON.md, "an ONNX tensor with no shape"): it loads, and
    answers a [2]-shaped request with the input as sent."""
    assert _index(misc)["onnx_scalar_1dim_dims2"]["state"] == "READY"
    x = np.array([3, -4], np.float32)
    np.testing.assert_allclose(infer(misc, "http-json", "onnx_scalar_1dim_dims2", [("INPUT", x)], None)[3][0][1], x)


def test_initializer_as_input(misc):
    """qa/L0_initializer_as_input/test.py: INITIALIZER is a graph input and
    an initializer (ones), `optional: true` in the config. Without it OUTPUT
    = INPUT + 1, with it OUTPUT = INPUT + INITIALIZER (ONNX Runtime's Python
    API answers both so, listing it among get_overridable_initializers()),
    and Triton serves both. anemone does not take overridable initializers
    as inputs (docs/FROM_TRITON.md, "an ONNX graph input that also has an
    initializer"): the config that lists it is refused, naming it."""
    row = _index(misc)["add_with_initializer"]
    assert row["state"] == "UNAVAILABLE", row
    assert "INITIALIZER" in row["reason"] and "not an input of the model" in row["reason"], row


# ------------------------------------------------------------------ L0_optional_input
def _stats(srv, model):
    s = grpcclient.InferenceServerClient(srv.grpc).get_inference_statistics(model, "1").model_stats[0]
    return {"success": s.inference_stats.success.count, "inference": s.inference_count,
            "batches": {b.batch_size: b.compute_infer.count for b in s.batch_stats}}


def _delta(before, after):
    return {"success": after["success"] - before["success"], "inference": after["inference"] - before["inference"],
            "batches": {k: v - before["batches"].get(k, 0) for k, v in after["batches"].items()
                        if v != before["batches"].get(k, 0)}}


def _send_optional(srv, model, provided, answers):
    """optional_input_test.py check_response: INPUT0 = 1, INPUT1 = 0; each
    given input's output asked for, and equal to it."""
    data = {"INPUT0": np.ones((1, 1), np.float32), "INPUT1": np.zeros((1, 1), np.float32)}
    start = time.monotonic()
    try:
        inputs = [grpcclient.InferInput(n, [1, 1], "FP32") for n in provided]
        for t, n in zip(inputs, provided):
            t.set_data_from_numpy(data[n])
        result = grpcclient.InferenceServerClient(srv.grpc).infer(
            model, inputs, outputs=[grpcclient.InferRequestedOutput(n.replace("INPUT", "OUTPUT")) for n in provided])
        for n in provided:
            np.testing.assert_array_equal(result.as_numpy(n.replace("INPUT", "OUTPUT")), data[n])
        answers.append(("ok", time.monotonic() - start))
    except Exception as e:  # noqa: BLE001 - the test reports it
        answers.append(("error", e))


def run_optional(srv, model, provided_lists, spacing=0.0):
    answers, threads = [], []
    for provided in provided_lists:
        threads.append(threading.Thread(target=_send_optional, args=(srv, model, provided, answers)))
        threads[-1].start()
        time.sleep(spacing)
    for t in threads:
        t.join(60)
    assert [a[0] for a in answers] == ["ok"] * len(provided_lists), [(a[0], str(a[1])) for a in answers]
    return [a[1] for a in answers]


def test_optional_inputs_batched(misc):
    """optional_input_test.py test_all_inputs and test_optional_same_input:
    two requests giving the same inputs (both, then INPUT1 only) batch
    together after the queue delay (preferred batch 4 is never reached):
    one batch of 2 each time. tritonserver 2.51 (2026-12-05, the Python
    identity): the same, each answered after 1.5 s."""
    for provided in (("INPUT0", "INPUT1"), ("INPUT1",)):
        before = _stats(misc, "identity_2_float32")
        times = run_optional(misc, "identity_2_float32", [provided, provided])
        assert min(times) >= QUEUE_DELAY_S * 0.9, times
        assert _delta(before, _stats(misc, "identity_2_float32")) == {"success": 2, "inference": 2,
                                                                      "batches": {2: 1}}, provided


def test_optional_inputs_mixed(misc):
    """optional_input_test.py test_optional_mix_inputs(_2): INPUT0, INPUT1,
    INPUT0 and both inputs, 0.3 s apart, each answered with its own inputs.
    Triton sends a batch when the next request's inputs differ: four
    batches of 1 (tritonserver 2.51, 2026-12-05). anemone's batcher looks
    past a request of another shape (docs/FROM_TRITON.md, the dynamic
    batcher) and ran two batches of 2: only answers and totals are compared."""
    before = _stats(misc, "identity_2_float32")
    run_optional(misc, "identity_2_float32", [("INPUT0",), ("INPUT1",), ("INPUT0",), ("INPUT0", "INPUT1")], 0.3)
    delta = _delta(before, _stats(misc, "identity_2_float32"))
    assert delta["success"] == 4 and delta["inference"] == 4, delta
    assert sum(k * v for k, v in delta["batches"].items()) == 4, delta


def test_optional_inputs_ensemble(misc):
    """optional_input_test.py test_ensemble_optional_same_input and
    test_ensemble_optional_connecting_tensor: ensemble_identity_2_float32
    given only INPUT1, twice at once (identity_2_float32 runs one batch of
    2), and optional_connecting_tensor (two optional_identity steps; the
    second's INPUT1 is never produced) given only INPUT0 answers OUTPUT0 =
    INPUT0. tritonserver 2.51 (2026-12-05, Python identities): both so.
    anemone: 400 "missing input 'INPUT0' (FP32 [-1, 1])", "... 'INPUT1' ..."."""
    before = _stats(misc, "identity_2_float32")
    run_optional(misc, "ensemble_identity_2_float32", [("INPUT1",), ("INPUT1",)])
    assert _delta(before, _stats(misc, "identity_2_float32")) == {"success": 2, "inference": 2, "batches": {2: 1}}
    run_optional(misc, "optional_connecting_tensor", [("INPUT0",)])


def test_optional_inputs_onnx_need_every_input(misc):
    """The same optional inputs on an ONNX identity: docs/SERVING.md, "the
    ONNX engines need every input they declare, so for them a request that
    leaves an optional input out still gets 400, with a message that says
    so". Given both, it answers them."""
    x = httpclient.InferInput("INPUT0", [1, 1], "FP32")
    x.set_data_from_numpy(np.ones((1, 1), np.float32))
    with pytest.raises(InferenceServerException) as e:
        httpclient.InferenceServerClient(misc.http).infer("onnx_identity_2_float32", [x])
    assert e.value.status() == "400" and "optional" in e.value.message() and "INPUT1" in e.value.message()
    run_optional(misc, "onnx_identity_2_float32", [("INPUT0", "INPUT1")])


# ------------------------------------------------------------------ L0_onnx_optimization, _backend_onnxruntime, _batch_input
def test_onnx_optimization_and_refused_configs(misc):
    """L0_onnx_optimization/test.sh: the copies of the fp32 model (five
    instances) with ONNX Runtime parameters or an accelerator. Triton loads
    the first seven and refuses `segment_size`, `max_workspace_size_bytes:
    "abc"` and `unknown_gpu`. anemone loads the CPU-side ones (unknown keys
    ignored with a warning, TensorRT missing from this ONNX Runtime logged)
    and answers on them, and refuses by path the accelerator parameters it
    does not read, as docs/SERVING.md says ("Other parameters and names ...
    are refused by path"): CUDA's `cudnn_conv_use_max_workspace`, TensorRT's
    `trt_*`, which Triton takes.
    L0_backend_onnxruntime's onnx_bf16_bf16_bf16: anemone carries no
    bfloat16 (docs/CONFORMANCE.md), UNAVAILABLE naming TYPE_BF16."""
    index = _index(misc)
    for variant, (_, refused) in OPTIMIZATION.items():
        name = f"onnx_float32_float32_float32_{variant}"
        if refused is not None:
            assert index[name]["state"] == "UNAVAILABLE" and refused in index[name]["reason"], index[name]
            continue
        assert index[name]["state"] == "READY", index[name]
        for bs in (1, 8):
            a, b, out0, out1 = addsub_case(np.random.default_rng(bs), (bs, 16), np.float32, np.float32, np.float32)
            for proto in ("http-binary", "grpc"):
                outs = dict(infer(misc, proto, name, [("INPUT0", a), ("INPUT1", b)])[3])
                np.testing.assert_array_equal(outs["OUTPUT0"], out0, err_msg=variant)
                np.testing.assert_array_equal(outs["OUTPUT1"], out1, err_msg=variant)
    for model, words in (("onnx_bf16_bf16_bf16", ["TYPE_BF16"]),):
        assert index[model]["state"] == "UNAVAILABLE", index[model]
        assert all(w in index[model]["reason"] for w in words), (words, index[model]["reason"])


# ------------------------------------------------------------------ the generated models themselves
def test_models_agree_with_onnxruntime_python(repos):
    """Every generated add/sub, identity and reshape model, run in ONNX
    Runtime's Python API on inputs made as the tests make them, gives the
    numpy answers the tests expect of the servers: the references are right,
    and no served answer is compared with an engine's own."""
    import onnxruntime as ort
    rng, checked = np.random.default_rng(7), 0
    for repo, table in ((repos["qa"], [(c, [16]) for c, _, _ in FIXED]),
                        (repos["variable"], [(c, VARIABLE_SHAPES[c]) for c, _, _ in VARIABLE])):
        for c, shape in table:
            in_dt, o0, o1 = letters(c)
            for mb, full in ((8, [2, *shape]), (0, list(shape))):
                a, b, out0, out1 = addsub_case(rng, tuple(full), in_dt, o0, o1)
                for v in (1, 2, 3):
                    path = repo / addsub_name(mb, in_dt, o0, o1) / str(v) / "model.onnx"
                    if path.exists():
                        got = ort.InferenceSession(str(path)).run(None, {"INPUT0": a, "INPUT1": b})
                        for g, w in zip(got, (out1, out0) if v > 1 else (out0, out1)):
                            g = _as_out(g, OBJ) if g.dtype == OBJ else g
                            assert g.dtype == w.dtype and g.shape == w.shape, (path, g.dtype, g.shape)
                            np.testing.assert_array_equal(g, w, err_msg=str(path))
                        checked += 1
    for repo, table in ((repos["qa"], [(d, [s] * n, [s] * n) for d, s, n in IDENTITY]),
                        (repos["variable"], [(d, s, m) for d, s, m, _, _ in RESHAPE])):
        for dtype, shapes, model_shapes in table:
            for mb, prefix in ((8, "onnx"), (0, "onnx_nobatch")):
                path = repo / zero_name(prefix, len(shapes), dtype) / "1" / "model.onnx"
                if path.exists():
                    feeds = {}
                    for k, s in enumerate(model_shapes):
                        full = [2] * (mb > 0) + [3 if d == -1 else d for d in s]
                        feeds[f"INPUT{k}"] = np.full(full, "7", object) if dt(dtype) == OBJ else np.ones(full, dtype)
                    for k, g in enumerate(ort.InferenceSession(str(path)).run(None, feeds)):
                        np.testing.assert_array_equal(g, feeds[f"INPUT{k}"], err_msg=str(path))
                    checked += 1
    # 40 fixed models and 20 later versions, 22 variable ones, 14 identity and 13 reshape models.
    assert checked == 40 + 20 + 22 + 14 + 13
