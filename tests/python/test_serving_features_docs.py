"""Model features of docs/SERVING.md, tested as a new user reads them: the
config fields (`max_batch_size` 0 and > 0, `dims` with -1 and narrowed
sizes, a subset of outputs, `optional`), "Reshape", "Classification" with
`label_filename`, "Sequence models" (control inputs of every kind, the
correlation ID as a number or a string, implicit state from zeros or a
`data_file`, idle timeouts, a sequence that moves between HTTP and gRPC),
BYTES tensors into ONNX string models, and dynamic batches of requests of
different shapes.

Every model is built here with the onnx package (one Python model, where
the docs speak of Python models), and every served number is compared with
ONNX Runtime's Python API on the same file, or with numpy.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from serve_support import start_serve, stop_serve
from tritonclient.utils import InferenceServerException

# ---------------------------------------------------------------- models


def _save(nodes, ins, outs, path, inits=(), opset=13):
    m = h.make_model(h.make_graph(nodes, "m", ins, outs, initializer=list(inits)),
                     opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def _vi(name, t, shape):
    return h.make_tensor_value_info(name, t, shape)


W_RS = np.arange(12, dtype=np.float32).reshape(4, 3) / 7.0 - 0.5


def m_scale1d(path):
    """x [b] -> y = 3x + 1 [b]: a model that takes its batch as a vector."""
    _save([h.make_node("Mul", ["x", "three"], ["t"]), h.make_node("Add", ["t", "one"], ["y"])],
          [_vi("x", T.FLOAT, ["b"])], [_vi("y", T.FLOAT, ["b"])], path,
          [nh.from_array(np.array(3, np.float32), "three"), nh.from_array(np.array(1, np.float32), "one")])


def m_matmul(path):
    """x [n, 4] -> y = x @ W [n, 3]."""
    _save([h.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", T.FLOAT, ["n", 4])], [_vi("y", T.FLOAT, ["n", 3])],
          path, [nh.from_array(W_RS, "W")])


def m_ident23(path):
    """x [2, 3] -> y = x."""
    _save([h.make_node("Identity", ["x"], ["y"])], [_vi("x", T.FLOAT, [2, 3])], [_vi("y", T.FLOAT, [2, 3])], path)


def m_cls(path):
    """x [b, 5] -> probs = softmax(x) [b, 5], score = int32(x * 10) [b, 5]."""
    _save([h.make_node("Softmax", ["x"], ["probs"], axis=1), h.make_node("Mul", ["x", "ten"], ["t"]),
           h.make_node("Cast", ["t"], ["score"], to=T.INT32)],
          [_vi("x", T.FLOAT, ["b", 5])], [_vi("probs", T.FLOAT, ["b", 5]), _vi("score", T.INT32, ["b", 5])], path,
          [nh.from_array(np.array(10, np.float32), "ten")])


def m_add2(path, first="b"):
    """x, y [b, -1] -> sum = x + y, diff = x - y."""
    ins = [_vi(n, T.FLOAT, [first, "L"]) for n in ("x", "y")]
    outs = [_vi(n, T.FLOAT, [first, "L"]) for n in ("sum", "diff")]
    _save([h.make_node("Add", ["x", "y"], ["sum"]), h.make_node("Sub", ["x", "y"], ["diff"])], ins, outs, path)


def m_add_fixed_first(path):
    """x, y [1, 4]: a model whose first dimension is no batch dimension."""
    ins = [_vi(n, T.FLOAT, [1, 4]) for n in ("x", "y")]
    outs = [_vi(n, T.FLOAT, [1, 4]) for n in ("sum", "diff")]
    _save([h.make_node("Add", ["x", "y"], ["sum"]), h.make_node("Sub", ["x", "y"], ["diff"])], ins, outs, path)


def m_acc(path, batch=True, corrid=T.UINT64):
    """A running sum kept as implicit state, echoing its control inputs:
    y = S + x, S_out = y, c_start = START (FP32), c_end = int32(END (BOOL)),
    c_ready = READY (INT32), c_corr = CORRID."""
    lead = ["b"] if batch else []
    nodes = [h.make_node("Add", ["S", "x"], ["y"]), h.make_node("Identity", ["y"], ["S_out"]),
             h.make_node("Identity", ["START"], ["c_start"]), h.make_node("Cast", ["END"], ["c_end"], to=T.INT32),
             h.make_node("Identity", ["READY"], ["c_ready"]), h.make_node("Identity", ["CORRID"], ["c_corr"])]
    ins = [_vi("x", T.FLOAT, lead + [1]), _vi("S", T.FLOAT, lead + [1]), _vi("START", T.FLOAT, lead + [1]),
           _vi("END", T.BOOL, lead + [1]), _vi("READY", T.INT32, lead + [1]), _vi("CORRID", corrid, lead + [1])]
    outs = [_vi("y", T.FLOAT, lead + [1]), _vi("S_out", T.FLOAT, lead + [1]), _vi("c_start", T.FLOAT, lead + [1]),
            _vi("c_end", T.INT32, lead + [1]), _vi("c_ready", T.INT32, lead + [1]), _vi("c_corr", corrid, lead + [1])]
    _save(nodes, ins, outs, path)


def m_corr_str(path):
    """x [b, 1] FP32 and CORRID [b, 1] STRING -> y = x, id = CORRID."""
    _save([h.make_node("Identity", ["x"], ["y"]), h.make_node("Identity", ["CORRID"], ["id"])],
          [_vi("x", T.FLOAT, ["b", 1]), _vi("CORRID", T.STRING, ["b", 1])],
          [_vi("y", T.FLOAT, ["b", 1]), _vi("id", T.STRING, ["b", 1])], path)


def m_corr_int(path, t=T.INT32):
    """x [b, 1] FP32 and CORRID [b, 1] INT32 (or INT64) -> y = x + float(CORRID), c = CORRID."""
    _save([h.make_node("Cast", ["CORRID"], ["c"], to=T.FLOAT), h.make_node("Add", ["x", "c"], ["y"])],
          [_vi("x", T.FLOAT, ["b", 1]), _vi("CORRID", t, ["b", 1])], [_vi("y", T.FLOAT, ["b", 1])], path)


def m_strings(path):
    """s [b, L] STRING -> num = float(s) summed over L [b, 1], echo = s."""
    _save([h.make_node("Cast", ["s"], ["f"], to=T.FLOAT), h.make_node("ReduceSum", ["f", "one"], ["num"], keepdims=1),
           h.make_node("Identity", ["s"], ["echo"])],
          [_vi("s", T.STRING, ["b", "L"])], [_vi("num", T.FLOAT, ["b", 1]), _vi("echo", T.STRING, ["b", "L"])], path,
          [nh.from_array(np.array([1], np.int64), "one")])


BUILD = {"scale1d": m_scale1d, "matmul": m_matmul, "ident23": m_ident23, "cls": m_cls, "add2": m_add2,
         "add_fixed_first": m_add_fixed_first, "acc": m_acc, "acc_nb": lambda p: m_acc(p, batch=False),
         "acc_str": lambda p: m_acc(p, corrid=T.STRING), "corr_str": m_corr_str, "corr_i32": m_corr_int,
         "corr_i64": lambda p: m_corr_int(p, T.INT64),
         "strings": m_strings}

ORT = 'parameters { key: "backends" value: { string_value: "onnxruntime" } }\n'


def _acc_config(name, state="initial_state { data_type: TYPE_FP32 dims: [ 1 ] zero_data: true name: \"zero\" }",
                idle_us=60_000_000, batch=True, corr="TYPE_UINT64"):
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {4 if batch else 0}\n'
            f"sequence_batching {{\n  max_sequence_idle_microseconds: {idle_us}\n"
            + ("  direct { max_queue_delay_microseconds: 1000 }\n" if batch else "")
            + "  control_input [\n"
            '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },\n'
            '    { name: "END" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] },\n'
            '    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },\n'
            f'    {{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: {corr} }} ] }}\n'
            "  ]\n"
            f'  state [ {{ input_name: "S" output_name: "S_out" data_type: TYPE_FP32 dims: [ 1 ] {state} }} ]\n'
            "}\n"
            'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
            'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "c_start" data_type: TYPE_FP32 dims: [ 1 ] },\n'
            '  { name: "c_end" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "c_ready" data_type: TYPE_INT32 dims: [ 1 ] },\n'
            f'  {{ name: "c_corr" data_type: {corr} dims: [ 1 ] }} ]\n' + ORT)


IO_RS1 = ('input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]\n'
          'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]\n')
IO_CLS = ('input [ { name: "x" data_type: TYPE_FP32 dims: [ 5 ] } ]\n'
          'output [ { name: "probs" data_type: TYPE_FP32 dims: [ 5 ] label_filename: "LABELS" },\n'
          '  { name: "score" data_type: TYPE_INT32 dims: [ 5 ] } ]\n')
IO_ADD2 = ('input [ { name: "x" data_type: TYPE_FP32 dims: [ DIM ] }, { name: "y" data_type: TYPE_FP32 dims: [ DIM ] } ]\n'
           'output [ { name: "sum" data_type: TYPE_FP32 dims: [ DIM ] }, { name: "diff" data_type: TYPE_FP32 dims: [ DIM ] } ]\n')
SEQ_I32 = ('name: "corr_i32"\nmax_batch_size: 4\n'
           'sequence_batching { control_input [ { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_INT32 } ] } ] }\n'
           'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n')
SEQ_STR = ('name: "corr_str"\nmax_batch_size: 4\n'
           'sequence_batching { control_input [ { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] } ] }\n'
           'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
           'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "id" data_type: TYPE_STRING dims: [ 1 ] } ]\n' + ORT)

INIT_VALUE = 100.5
IDLE_MS = 300

# name: (model kind, config text or None for no config, {extra file: bytes})
SPECS = {
    # Reshape
    "rs_batch": ("scale1d", 'name: "rs_batch"\nmax_batch_size: 4\n' + IO_RS1 + "dynamic_batching { max_queue_delay_microseconds: 200000 }\n", {}),
    "rs_var": ("matmul", 'name: "rs_var"\nmax_batch_size: 0\n'
               'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] } } ]\n'
               'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n', {}),
    "rs_bad_count": ("ident23", 'name: "rs_bad_count"\nmax_batch_size: 0\n'
                     'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 2, 3 ] } } ]\n'
                     'output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]\n', {}),
    "rs_bad_zero": ("ident23", 'name: "rs_bad_zero"\nmax_batch_size: 0\n'
                    'input [ { name: "x" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 0, 3 ] } } ]\n'
                    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]\n', {}),
    "rs_bad_vars": ("matmul", 'name: "rs_bad_vars"\nmax_batch_size: 0\n'
                    'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] reshape { shape: [ -1, 2 ] } } ]\n'
                    'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n', {}),
    "rs_bad_model": ("matmul", 'name: "rs_bad_model"\nmax_batch_size: 0\n'
                     'input [ { name: "x" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 2, 3 ] } } ]\n'
                     'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n', {}),
    "rs_cls": ("ident23", 'name: "rs_cls"\nplatform: "onnxruntime_onnx"\nmax_batch_size : 0\n'
               'input [ { name: "x" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 6 ] reshape { shape: [ 2, 3 ] } } ]\n'
               'output [ { name: "y" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 2, 3 ] } label_filename: "l.txt" } ]\n',
               {"l.txt": b"a\nb\nc\nd\ne\nf\n"}),
    # Classification
    "cls": ("cls", 'name: "cls"\nmax_batch_size: 8\n' + IO_CLS.replace("LABELS", "labels.txt"),
            {"labels.txt": b"cat\ndog\nbird\n"}),
    "cls_nb": ("ident23", 'name: "cls_nb"\nmax_batch_size: 0\n'
               'input [ { name: "x" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]\n'
               'output [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 3 ] label_filename: "l.txt" } ]\n',
               {"l.txt": b"a\nb\nc\nd\ne\nf\n"}),
    "cls_blank": ("cls", 'name: "cls_blank"\nmax_batch_size: 8\n' + IO_CLS.replace("LABELS", "labels.txt"),
                  {"labels.txt": b"cat\n\ndog\nbird\nfish\n"}),
    "cls_missing": ("cls", 'name: "cls_missing"\nmax_batch_size: 8\n' + IO_CLS.replace("LABELS", "nope.txt"), {}),
    "cls_outside": ("cls", 'name: "cls_outside"\nmax_batch_size: 8\n' + IO_CLS.replace("LABELS", "../cls/labels.txt"), {}),
    "cls_not_utf8": ("cls", 'name: "cls_not_utf8"\nmax_batch_size: 8\n' + IO_CLS.replace("LABELS", "l.txt"),
                     {"l.txt": b"cat\n\xff\xfe\n"}),
    # max_batch_size, dims, outputs
    "nocfg": ("add2", None, {}),
    "narrow": ("add2", 'name: "narrow"\nmax_batch_size: 4\n'
               'input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
               'output [ { name: "sum" data_type: TYPE_FP32 dims: [ 3 ] } ]\n', {}),
    "fixed_first": ("add_fixed_first", 'name: "fixed_first"\nmax_batch_size: 4\n' + IO_ADD2.replace("DIM", "4"), {}),
    "ragged": ("add2", 'name: "ragged"\nmax_batch_size: 8\n' + IO_ADD2.replace("DIM", "-1")
               + "dynamic_batching { max_queue_delay_microseconds: 400000 }\n" + ORT, {}),
    "opt_onnx": ("add2", 'name: "opt_onnx"\nmax_batch_size: 4\n'
                 + IO_ADD2.replace("DIM", "-1").replace('name: "y" data_type: TYPE_FP32 dims: [ -1 ] }',
                                                        'name: "y" data_type: TYPE_FP32 dims: [ -1 ] optional: true }', 1), {}),
    # Strings
    "strings": ("strings", 'name: "strings"\nmax_batch_size: 8\n'
                'input [ { name: "s" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
                'output [ { name: "num" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "echo" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
                "dynamic_batching { max_queue_delay_microseconds: 400000 }\n" + ORT, {}),
    # Sequences
    "acc": ("acc", _acc_config("acc"), {}),
    "acc_file": ("acc", _acc_config("acc_file", 'initial_state { data_type: TYPE_FP32 dims: [ 1 ] data_file: "init.bin" name: "w" }'),
                 {"initial_state/init.bin": np.array([INIT_VALUE, -7.0], "<f4").tobytes()}),
    "acc_none": ("acc", _acc_config("acc_none", ""), {}),
    "acc_idle": ("acc", _acc_config("acc_idle", idle_us=IDLE_MS * 1000), {}),
    "acc_warm": ("acc", _acc_config("acc_warm", 'initial_state { data_type: TYPE_FP32 dims: [ 1 ] data_file: "init.bin" name: "w" }')
                 + 'model_warmup [ { name: "w" batch_size: 1 count: 3 inputs { key: "x" value: '
                   '{ data_type: TYPE_FP32 dims: [ 1 ] random_data: true } } } ]\n',
                 {"initial_state/init.bin": np.array([INIT_VALUE], "<f4").tobytes()}),
    "acc_nb": ("acc_nb", _acc_config("acc_nb", batch=False), {}),
    "acc_str": ("acc_str", _acc_config("acc_str", corr="TYPE_STRING"), {}),
    "corr_str": ("corr_str", SEQ_STR, {}),
    "corr_i32": ("corr_i32", SEQ_I32 + ORT, {}),
    "corr_i64": ("corr_i64", SEQ_I32.replace("corr_i32", "corr_i64").replace("TYPE_INT32", "TYPE_INT64") + ORT, {}),
}

OPT_PY_CONFIG = """name: "opt_py"
backend: "python"
max_batch_size: 0
input [ { name: "A" data_type: TYPE_FP32 dims: [ -1 ] optional: true }, { name: "B" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "GIVEN" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
OPT_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "A")
            b = pb_utils.get_input_tensor_by_name(r, "B").as_numpy()
            y = b * 2 if a is None else a.as_numpy() * 10 + b
            given = ",".join(sorted(t.name() for t in r.inputs())).encode()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", y.astype(np.float32)),
                                                   pb_utils.Tensor("GIVEN", np.array([given], dtype=np.object_))]))
        return out
'''

BAD = {"rs_bad_count", "rs_bad_zero", "rs_bad_vars", "rs_bad_model", "cls_missing", "cls_outside", "cls_not_utf8"}


def build(root):
    for name, (kind, config, files) in SPECS.items():
        (root / name / "1").mkdir(parents=True)
        BUILD[kind](root / name / "1" / "model.onnx")
        if config is not None:
            (root / name / "config.pbtxt").write_text(config)
        for rel, data in files.items():
            (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / name / rel).write_bytes(data)
    (root / "opt_py" / "1").mkdir(parents=True)
    (root / "opt_py" / "config.pbtxt").write_text(OPT_PY_CONFIG)
    (root / "opt_py" / "1" / "model.py").write_text(OPT_PY)
    return root


def index(http):
    return {m["name"]: m for m in requests.post(f"http://{http}/v2/repository/index", json={}, timeout=10).json()}


class Served:
    def __init__(self, repo, http, grpc):
        self.repo, self.http, self.grpc = repo, http, grpc
        self.index = {}

    def url(self, path):
        return f"http://{self.http}{path}"

    def infer(self, model, body):
        r = requests.post(self.url(f"/v2/models/{model}/infer"), json=body, timeout=60)
        return r.status_code, r.json()

    def clients(self):
        return [(httpclient, httpclient.InferenceServerClient(self.http)),
                (grpcclient, grpcclient.InferenceServerClient(self.grpc))]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    repo = build(tmp_path_factory.mktemp("features") / "repo")
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*")
    try:
        s = Served(repo, addresses["HTTP"], addresses["gRPC"])
        deadline = time.time() + 120
        names = set(SPECS) | {"opt_py"}
        while True:
            try:
                s.index = index(s.http)
                if all(s.index.get(n, {}).get("state") in ("READY", "UNAVAILABLE") for n in names):
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                pytest.fail(f"the models did not settle: {s.index}")
            time.sleep(0.2)
        yield s
    finally:
        stop_serve(proc)


def session(served, name):
    return ort.InferenceSession(str(served.repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


def body(*inputs, outputs=None, parameters=None):
    b = {"inputs": [{"name": n, "datatype": dt, "shape": list(np.shape(v)), "data": np.asarray(v).ravel().tolist()}
                    for n, dt, v in inputs]}
    if outputs is not None:
        b["outputs"] = outputs
    if parameters is not None:
        b["parameters"] = parameters
    return b


def output(answer, name, dtype=np.float32):
    (o,) = [o for o in answer["outputs"] if o["name"] == name]
    return np.array(o["data"], dtype).reshape(o["shape"])


def test_every_good_model_loads_and_every_bad_one_is_unavailable(served):
    """SERVING.md: a model whose config is refused is UNAVAILABLE with the
    reason in the index; the others serve."""
    states = {n: served.index[n].get("state") for n in list(SPECS) + ["opt_py"]}
    want = {n: "UNAVAILABLE" if n in BAD else "READY" for n in states}
    # fixed_first: decided by its own test.
    states.pop("fixed_first"), want.pop("fixed_first")
    assert states == want, {n: served.index[n] for n in states if states[n] != want[n]}


@pytest.mark.parametrize("model, words", [
    ("rs_bad_count", ["input 'x'", "[4]", "[2, 3]", "same elements"]),
    ("rs_bad_zero", ["input 'x'", "size 0"]),
    ("rs_bad_vars", ["input 'x'", "[-1, 4]", "[-1, 2]", "same elements"]),
    ("rs_bad_model", ["input 'x'", "reshape", "[n, 4]"]),
    ("cls_missing", ["nope.txt", "probs", "missing"]),
    ("cls_outside", ["../cls/labels.txt", "inside the model directory"]),
    ("cls_not_utf8", ["l.txt", "UTF-8"]),
    ("fixed_first", ["max_batch_size", "'x'", "first dimension"]),
])
def test_configs_that_cannot_work_fail_the_load_saying_which(served, model, words):
    """SERVING.md "Reshape": a reshape that cannot hold the same elements
    (`dims: [ 4 ] reshape { shape: [ 2, 3 ] }`, a size 0, other counts
    between the -1s) fails the load, saying which; the model's shape is
    checked against `reshape` at load. "Paths and file bounds": a
    `label_filename` must name a regular UTF-8 file inside the model's
    directory, or the model fails to load saying which file and why. And, as
    Triton refuses it, `max_batch_size` > 0 on a model whose first dimension
    is fixed (no batch dimension to batch on)."""
    row = served.index[model]
    assert row.get("state") == "UNAVAILABLE", row
    for w in words:
        assert w in row.get("reason", ""), (w, row)
    status, answer = served.infer(model, body(("x", "FP32", np.zeros((1, 4), np.float32))))
    assert status in (400, 404, 503), (status, answer)


# ---------------------------------------------------------------- reshape


def test_a_reshape_to_nothing_serves_a_vector_model_to_clients_sending_batch_by_1(served):
    """SERVING.md "Reshape": with `max_batch_size > 0`, `dims: [ 1 ] reshape
    { shape: [ ] }` serves a model that takes `[batch]` to clients that send
    `[batch, 1]`; dynamic batching works on the served shapes; the metadata
    shows `dims`; a request in the model's own shape gets 400 naming the
    input and its `dims`."""
    sess = session(served, "rs_batch")
    rng = np.random.default_rng(5)
    pieces = [rng.standard_normal((n, 1)).astype(np.float32) for n in (1, 2, 1, 3)]

    def one(k):
        x = pieces[k]
        module, client = served.clients()[k % 2]
        inp = module.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer("rs_batch", [inp]).as_numpy("y")

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(one, range(4)))
    for x, y in zip(pieces, got):
        (want,) = sess.run(None, {"x": x.reshape(-1)})
        assert y.shape == x.shape, y.shape
        np.testing.assert_allclose(y, want.reshape(-1, 1), rtol=1e-6)
    meta = requests.get(served.url("/v2/models/rs_batch"), timeout=10).json()
    assert [i["shape"] for i in meta["inputs"]] == [[-1, 1]] and [o["shape"] for o in meta["outputs"]] == [[-1, 1]], meta
    status, answer = served.infer("rs_batch", body(("x", "FP32", np.ones(2, np.float32))))
    assert status == 400 and "'x'" in answer["error"] and "[-1, 1]" in answer["error"], answer


def test_minus_one_on_both_sides_of_a_reshape_fills_in_order(served):
    """SERVING.md "Reshape": `dims: [ -1, 2, 2 ] reshape { shape: [ -1, 4 ] }`
    takes `[n, 2, 2]` to the model as `[n, 4]` (answers checked against ONNX
    Runtime on the reshaped input), over HTTP and gRPC; `[n, 4]` (the model's
    own shape) is 400 / INVALID_ARGUMENT naming the input and its dims."""
    sess = session(served, "rs_var")
    for module, client in served.clients():
        for n in (1, 3, 5):
            x = np.random.default_rng(n).standard_normal((n, 2, 2)).astype(np.float32)
            inp = module.InferInput("x", [n, 2, 2], "FP32")
            inp.set_data_from_numpy(x)
            got = client.infer("rs_var", [inp]).as_numpy("y")
            (want,) = sess.run(None, {"x": x.reshape(n, 4)})
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        inp = module.InferInput("x", [3, 4], "FP32")
        inp.set_data_from_numpy(np.ones((3, 4), np.float32))
        with pytest.raises(InferenceServerException) as e:
            client.infer("rs_var", [inp])
        assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT"), e.value
        assert "'x'" in e.value.message() and "[-1, 2, 2]" in e.value.message(), e.value.message()



def test_a_densenet_style_reshape_answers_in_dims_and_classifies(served):
    """SERVING.md "Reshape", Triton's quickstart `densenet_onnx` case: no
    batch dimension, the client sends and gets `dims` ([6]), the model
    takes and makes [2, 3] (`reshape`), and classification of the output
    ranks it with its labels, as Triton's quickstart client asks."""
    x = np.array([0.5, -1.0, 3.0, 2.0, 9.0, 1.0], np.float32)
    for module, client in served.clients():
        inp = module.InferInput("x", [6], "FP32")
        inp.set_data_from_numpy(x)
        r = client.infer("rs_cls", [inp])
        (want,) = session(served, "rs_cls").run(None, {"x": x.reshape(2, 3)})
        np.testing.assert_array_equal(r.as_numpy("y"), want.reshape(6))
        got = client.infer("rs_cls", [inp], outputs=[module.InferRequestedOutput("y", class_count=3)]).as_numpy("y")
        assert [s.decode() for s in got] == top_k(want.ravel().tolist(), 3, list("abcdef")), got


# ---------------------------------------------------------------- classification


def top_k(values, k, labels=(), fmt=lambda v: "%f" % v):
    """Triton's classification strings for one row: highest first, ties in
    index order, `value:index[:label]` (no label where the file has none)."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
    return [f"{fmt(values[i])}:{i}" + (f":{labels[i]}" if i < len(labels) and labels[i] else "") for i in order]


def test_classification_with_more_classes_asked_than_there_are_and_a_short_label_file(served):
    """SERVING.md "Classification": with a batch dimension each row is
    ranked on its own, the answer's shape is `[batch, min(N, classes)]`
    (N = 10 here, 5 classes); `:<label>` is added where the label file has a
    line for the index (3 lines for 5 classes); floats with six decimals,
    integers as themselves; ties keep index order. Over HTTP and gRPC
    (tritonclient's `class_count`), checked against ONNX Runtime's values."""
    sess = session(served, "cls")
    x = np.array([[1, 5, 3, 4, 2], [0.5, 0.5, -1, 2, 0.5]], np.float32)
    probs, score = sess.run(None, {"x": x})
    labels = ["cat", "dog", "bird"]
    for module, client in served.clients():
        inp = module.InferInput("x", [2, 5], "FP32")
        inp.set_data_from_numpy(x)
        outs = [module.InferRequestedOutput("probs", class_count=10), module.InferRequestedOutput("score", class_count=3)]
        r = client.infer("cls", [inp], outputs=outs)
        got = r.as_numpy("probs")
        assert got.shape == (2, 5), got.shape
        for row in range(2):
            assert [s.decode() for s in got[row]] == top_k(probs[row].tolist(), 10, labels), got[row]
        got = r.as_numpy("score")
        assert got.shape == (2, 3), got.shape
        for row in range(2):
            assert [s.decode() for s in got[row]] == top_k(score[row].tolist(), 3, fmt=str), got[row]
    # classification: 0 asks for the values themselves.
    status, answer = served.infer("cls", body(("x", "FP32", x), outputs=[{"name": "probs", "parameters": {"classification": 0}}]))
    assert status == 200, answer
    np.testing.assert_allclose(output(answer, "probs"), probs, rtol=1e-5)


def test_classification_without_a_batch_dimension_ranks_the_whole_tensor(served):
    """SERVING.md "Classification": without a batch dimension the whole
    tensor is one row, shape `[min(N, elements)]`, labels by flat index."""
    x = np.array([[1, 5, 3], [4, 2, 6]], np.float32)
    for module, client in served.clients():
        inp = module.InferInput("x", [2, 3], "FP32")
        inp.set_data_from_numpy(x)
        for k in (4, 9):
            got = client.infer("cls_nb", [inp], outputs=[module.InferRequestedOutput("y", class_count=k)]).as_numpy("y")
            assert got.shape == (min(k, 6),), got.shape
            assert [s.decode() for s in got] == top_k(x.ravel().tolist(), k, list("abcdef")), got


def test_an_empty_line_of_the_label_file_gives_no_label(served):
    """Triton's classification (server/src/classification.cc with core's
    InferenceResponse::ClassificationLabel) adds `:<label>` only for a
    non-empty label: an empty line of the label file gives `value:index`,
    as an index past the file's end does. SERVING.md: `:<label>` is added
    "where the output's `label_filename` gives one"."""
    x = np.array([[5, 4, 3, 2, 1]], np.float32)
    status, answer = served.infer("cls_blank", body(("x", "FP32", x), outputs=[{"name": "probs", "parameters": {"classification": 5}}]))
    assert status == 200, answer
    (probs,) = session(served, "cls_blank").run(["probs"], {"x": x})
    got = [o for o in answer["outputs"] if o["name"] == "probs"][0]["data"]
    assert got == top_k(probs[0].tolist(), 5, ["cat", "", "dog", "bird", "fish"]), got


# ---------------------------------------------------------------- sequences


def acc_reference(served, model, xs, corrid, first_state=0.0, batch=True):
    """What the `acc` model answers to `xs` as one sequence, run by ONNX
    Runtime with the controls Triton's sequence batcher gives (START on the
    first, END on the last, READY always, CORRID the id) and the state
    carried by hand from `first_state`."""
    sess = session(served, model)
    lead = (1, 1) if batch else (1,)
    state = np.full(lead, first_state, np.float32)
    out = []
    for i, x in enumerate(xs):
        feeds = {"x": np.full(lead, x, np.float32), "S": state,
                 "START": np.full(lead, float(i == 0), np.float32), "END": np.full(lead, i == len(xs) - 1, np.bool_),
                 "READY": np.ones(lead, np.int32),
                 "CORRID": np.full(lead, corrid, np.object_ if isinstance(corrid, str) else np.uint64)}
        y, state, c_start, c_end, c_ready, c_corr = sess.run(["y", "S_out", "c_start", "c_end", "c_ready", "c_corr"], feeds)
        out.append({"y": y, "c_start": c_start, "c_end": c_end, "c_ready": c_ready, "c_corr": c_corr})
    return out


def send_acc(module, client, model, x, batch=True, **sequence):
    shape = [1, 1] if batch else [1]
    inp = module.InferInput("x", shape, "FP32")
    inp.set_data_from_numpy(np.full(shape, x, np.float32))
    r = client.infer(model, [inp], **sequence)
    return {n: r.as_numpy(n) for n in ("y", "c_start", "c_end", "c_ready", "c_corr")}


def assert_same(got, want, what):
    for name in want:
        w = want[name]
        g = got[name]
        if w.dtype == np.object_:
            assert [v.decode() if isinstance(v, bytes) else v for v in g.ravel()] == list(w.ravel()), (what, name, g, w)
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{what}: {name}")


def test_control_inputs_of_every_kind_and_implicit_state_reach_the_model(served):
    """SERVING.md "Sequence models": START as `fp32_false_true`, END as
    `bool_false_true`, READY as `int32_false_true` (always true), CORRID as
    `TYPE_UINT64`, and the implicit state (`state`, zeros at a start), each
    answer equal to ONNX Runtime's run with the values Triton's sequence
    batcher gives; the control inputs and the state are left out of the
    metadata. Over HTTP and gRPC, ids past 2^32 kept whole."""
    xs = [1.5, -2.25, 4.0, 0.5]
    for k, (module, client) in enumerate(served.clients()):
        seq = 2**40 + 17 + k
        want = acc_reference(served, "acc", xs, seq)
        for i, x in enumerate(xs):
            got = send_acc(module, client, "acc", x, sequence_id=seq, sequence_start=i == 0, sequence_end=i == len(xs) - 1)
            assert_same(got, want[i], f"{module.__name__} request {i}")
    meta = requests.get(served.url("/v2/models/acc"), timeout=10).json()
    assert [i["name"] for i in meta["inputs"]] == ["x"], meta


def test_a_sequence_model_without_a_batch_dimension_gets_controls_of_shape_1(served):
    """SERVING.md: a control is one value a request (shape `[1]` after the
    batch dimension); with `max_batch_size: 0` there is none, so the model
    gets `[1]` (as Triton's GetBooleanOverrideInputs makes them). Answers
    equal ONNX Runtime's with those controls."""
    xs = [3.0, 4.5, -1.0]
    for k, (module, client) in enumerate(served.clients()):
        want = acc_reference(served, "acc_nb", xs, 900 + k, batch=False)
        for i, x in enumerate(xs):
            got = send_acc(module, client, "acc_nb", x, batch=False, sequence_id=900 + k,
                           sequence_start=i == 0, sequence_end=i == len(xs) - 1)
            assert_same(got, want[i], f"{module.__name__} request {i}")


def test_two_sequences_interleaved_and_one_moving_between_http_and_grpc(served):
    """A sequence is the server's, not a connection's: two sequences
    interleaved, one sending every request over the other protocol than the
    one before, each keeps its own state (numpy running sums)."""
    (hm, hc), (gm, gc) = served.clients()
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [10.0, -20.0, 30.0, -40.0, 50.0]
    for i in range(5):
        start, end = i == 0, i == 4
        m, c = [(hm, hc), (gm, gc)][i % 2]
        ya = send_acc(m, c, "acc", a[i], sequence_id=31337, sequence_start=start, sequence_end=end)["y"]
        m, c = [(gm, gc), (hm, hc)][i % 2]
        yb = send_acc(m, c, "acc", b[i], sequence_id=31338, sequence_start=start, sequence_end=end)["y"]
        assert float(ya[0][0]) == pytest.approx(sum(a[: i + 1])), (i, ya)
        assert float(yb[0][0]) == pytest.approx(sum(b[: i + 1])), (i, yb)


def test_initial_state_from_zeros_no_initial_state_and_a_data_file_with_extra_bytes(served):
    """SERVING.md "Implicit state": `zero_data: true` and no `initial_state`
    start at zeros (Triton leaves the latter undefined, anemone gives zeros);
    `data_file` reads `<model>/initial_state/<file>` little-endian, a longer
    file's extra bytes ignored: every sequence of `acc_file` starts from
    100.5, the first float of its 8-byte file."""
    for module, client in served.clients():
        for model, first in (("acc", 0.0), ("acc_none", 0.0), ("acc_file", INIT_VALUE)):
            for again in range(2):
                xs = [2.0, 3.0]
                want = acc_reference(served, model, xs, 55, first_state=first)
                for i, x in enumerate(xs):
                    got = send_acc(module, client, model, x, sequence_id=55, sequence_start=i == 0, sequence_end=i == 1)
                    assert_same(got, want[i], f"{model} pass {again} request {i}")


def test_a_start_on_an_open_sequence_begins_it_again_from_the_initial_state(served):
    """SERVING.md: "a start on an open sequence begins it again" (Triton
    logs the conflict and resets the state at START)."""
    for module, client in served.clients():
        assert float(send_acc(module, client, "acc_file", 1.0, sequence_id=66, sequence_start=True)["y"][0][0]) == INIT_VALUE + 1
        assert float(send_acc(module, client, "acc_file", 2.0, sequence_id=66)["y"][0][0]) == INIT_VALUE + 3
        again = send_acc(module, client, "acc_file", 4.0, sequence_id=66, sequence_start=True)
        assert float(again["y"][0][0]) == INIT_VALUE + 4 and float(again["c_start"][0][0]) == 1.0, again
        assert float(send_acc(module, client, "acc_file", 1.0, sequence_id=66, sequence_end=True)["y"][0][0]) == INIT_VALUE + 5


def refused(call, *words, code="INVALID_ARGUMENT"):
    with pytest.raises(InferenceServerException) as e:
        call()
    assert e.value.status() in ({"INVALID_ARGUMENT": "400", "UNAVAILABLE": "503"}[code], f"StatusCode.{code}"), e.value
    for w in words:
        assert w in e.value.message(), (w, e.value.message())
    return e.value


def test_requests_without_start_are_refused_and_an_idle_sequence_closes(served):
    """SERVING.md: a sequence's first request must have `sequence_start:
    true` (400 with Triton's message, also for a request with END only); a
    sequence is closed after `max_sequence_idle_microseconds` without a
    request, and its next request must start it again, from the initial
    state."""
    for k, (module, client) in enumerate(served.clients()):
        refused(lambda: send_acc(module, client, "acc", 1.0, sequence_id=4242 + k),
                "must specify the START flag on the first request of the sequence")
        refused(lambda: send_acc(module, client, "acc", 1.0, sequence_id=4242 + k, sequence_end=True),
                "must specify the START flag")
        seq = 700 + k
        assert float(send_acc(module, client, "acc_idle", 1.0, sequence_id=seq, sequence_start=True)["y"][0][0]) == 1.0
        time.sleep(IDLE_MS / 1000 / 3)
        assert float(send_acc(module, client, "acc_idle", 2.0, sequence_id=seq)["y"][0][0]) == 3.0
        time.sleep(IDLE_MS / 1000 * 2.5)
        refused(lambda: send_acc(module, client, "acc_idle", 1.0, sequence_id=seq), "must specify the START flag")
        assert float(send_acc(module, client, "acc_idle", 5.0, sequence_id=seq, sequence_start=True)["y"][0][0]) == 5.0


def test_a_string_corrid_takes_string_ids_and_a_uint64_one_number_ids(served):
    """SERVING.md: `CONTROL_SEQUENCE_CORRID` with `TYPE_STRING` gives the
    model a string id (`sequence_id` a string; UTF-8 kept), with
    `TYPE_UINT64` a number id; the other kind of id is refused with 400 /
    INVALID_ARGUMENT saying which the model takes (Triton 2.51 copies a
    number's bytes into a string tensor, or a string's into an integer one,
    instead)."""
    xs = [1.0, 2.0, 3.0]
    for k, (module, client) in enumerate(served.clients()):
        sid = f"seq-é-{k}"
        want = acc_reference(served, "acc_str", xs, sid)
        for i, x in enumerate(xs):
            got = send_acc(module, client, "acc_str", x, sequence_id=sid, sequence_start=i == 0, sequence_end=i == 2)
            assert_same(got, want[i], f"{module.__name__} request {i}")
        inp = module.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.ones((1, 1), np.float32))
        r = client.infer("corr_str", [inp], sequence_id="héllo wörld", sequence_start=True, sequence_end=True)
        assert r.as_numpy("id")[0][0].decode() == "héllo wörld"
        refused(lambda: send_acc(module, client, "acc_str", 1.0, sequence_id=42, sequence_start=True),
                "sequence_id 42 is a number", "send a string sequence_id")
        refused(lambda: send_acc(module, client, "acc", 1.0, sequence_id="abc", sequence_start=True),
                "is a string", "UINT64")
        refused(lambda: send_acc(module, client, "acc", 1.0, sequence_id=0, sequence_start=True),
                "must specify a non-zero or non-empty correlation ID")
        refused(lambda: send_acc(module, client, "acc_str", 1.0, sequence_id="", sequence_start=True),
                "must specify a non-zero or non-empty correlation ID")


def grpc_sequence_request(model, sid, start, end, x=1.0):
    from tritonclient.grpc import service_pb2

    r = service_pb2.ModelInferRequest(model_name=model)
    i = r.inputs.add()
    i.name, i.datatype = "x", "FP32"
    i.shape.extend([1, 1])
    r.raw_input_contents.append(np.array([[x]], np.float32).tobytes())
    if isinstance(sid, tuple):
        setattr(r.parameters["sequence_id"], sid[0], sid[1])
    else:
        r.parameters["sequence_id"].int64_param = sid
    r.parameters["sequence_start"].bool_param = start
    r.parameters["sequence_end"].bool_param = end
    return r


def test_a_negative_grpc_int64_id_is_the_uint64_it_was_cast_from(served):
    """SERVING.md: over gRPC an `int64_param` id below 0 is read as the
    uint64 it was cast from, as Triton reads it: -5 and 2^64 - 5 name one
    sequence, and the UINT64 CORRID control gets 2^64 - 5."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    with grpc.insecure_channel(served.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        a = stub.ModelInfer(grpc_sequence_request("acc", -5, True, False, 2.0))
        b = stub.ModelInfer(grpc_sequence_request("acc", ("uint64_param", 2**64 - 5), False, True, 3.0))
        for answer, y in ((a, 2.0), (b, 5.0)):
            outs = {o.name: answer.raw_output_contents[k] for k, o in enumerate(answer.outputs)}
            assert np.frombuffer(outs["y"], np.float32)[0] == y
            assert int(np.frombuffer(outs["c_corr"], np.uint64)[0]) == 2**64 - 5


def test_an_int32_corrid_takes_ids_that_fit_and_refuses_larger_ones(served):
    """SERVING.md, "Different from Triton": an id too large for a
    `TYPE_INT32` CORRID is refused with 400 naming the type (Triton gives
    the model its low 32 bits); one that fits reaches the model."""
    for module, client in served.clients():
        inp = module.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.full((1, 1), 0.5, np.float32))
        r = client.infer("corr_i32", [inp], sequence_id=2**31 - 1, sequence_start=True, sequence_end=True)
        (want,) = session(served, "corr_i32").run(None, {"x": np.full((1, 1), 0.5, np.float32),
                                                          "CORRID": np.full((1, 1), 2**31 - 1, np.int32)})
        np.testing.assert_array_equal(r.as_numpy("y"), want)
        refused(lambda: client.infer("corr_i32", [inp], sequence_id=2**31, sequence_start=True), "INT32")


def test_an_int64_corrid_gets_a_negative_grpc_id_as_triton_gives_it(served):
    """SERVING.md lists the CORRID types and, as the one difference from
    Triton, refusals for TYPE_UINT32 and TYPE_INT32. Triton's
    SequenceBatch::SetControlTensors memcpy's the id's 8 bytes into an INT64
    control, so the id tritonclient's C++ client sends as int64_param -5
    reaches the model as -5."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    with grpc.insecure_channel(served.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(grpc_sequence_request("corr_i64", -5, True, True, 0.0))
        assert np.frombuffer(answer.raw_output_contents[0], np.float32)[0] == -5.0


def test_warmup_of_a_sequence_model_leaves_no_state_behind(served):
    """SERVING.md "Warm-up": a sequence model's sample runs as a sequence of
    one request (START and END true, id 1), three times here; so a client's
    sequence 1 afterwards starts from the initial state (the data file's
    100.5), not from what the warm-up left."""
    for module, client in served.clients():
        want = acc_reference(served, "acc_warm", [1.0, 2.0], 1, first_state=INIT_VALUE)
        for i, x in enumerate([1.0, 2.0]):
            got = send_acc(module, client, "acc_warm", x, sequence_id=1, sequence_start=i == 0, sequence_end=i == 1)
            assert_same(got, want[i], f"{module.__name__} request {i}")


def _bad_requests(module):
    """Requests to `acc` that validation refuses: an input the model does not
    take (its state input), an output it does not serve, a wrong datatype,
    two rows."""
    def make(shape=(1, 1), dtype="FP32", extra=False):
        ins = [module.InferInput("x", list(shape), dtype)]
        ins[0].set_data_from_numpy(np.ones(shape, np.float32 if dtype == "FP32" else np.float64))
        if extra:
            ins.append(module.InferInput("S", [1, 1], "FP32"))
            ins[1].set_data_from_numpy(np.full((1, 1), 50, np.float32))
        return ins
    return [("unknown input", make(extra=True), None), ("unserved output", make(), ["S_out"]),
            ("wrong datatype", make(dtype="FP64"), None), ("two rows", make(shape=(2, 1)), None)]


def test_a_refused_start_request_opens_no_sequence(served):
    """Triton validates a request (inputs, outputs, datatypes) before the
    sequence batcher sees it, and its batch-size-1 check comes before the
    sequence is recorded (SequenceBatchScheduler::Enqueue), so a START
    request refused for any of these opens nothing: the sequence's next
    request without START is refused "must specify the START flag"."""
    failures = []
    for k, (module, client) in enumerate(served.clients()):
        for j, (what, inputs, outs) in enumerate(_bad_requests(module)):
            seq = 5000 + 10 * k + j
            outputs = [module.InferRequestedOutput(n) for n in outs] if outs else None
            refused(lambda: client.infer("acc", inputs, outputs=outputs, sequence_id=seq, sequence_start=True))
            try:
                send_acc(module, client, "acc", 1.0, sequence_id=seq)
                failures.append(f"{module.__name__}: {what}")
            except InferenceServerException as e:
                assert "must specify the START flag" in e.message(), e
    assert not failures, f"a refused START opened its sequence: {failures}"


def test_a_refused_end_request_leaves_its_sequence_open_with_its_state(served):
    """SERVING.md "Implicit state": "a failed request leaves it as it was";
    Triton refuses a request with an unknown input, an unserved output, a
    wrong datatype or two rows before its sequence batcher sees its END, so
    the sequence goes on: the next request adds to the running sum."""
    failures = []
    for k, (module, client) in enumerate(served.clients()):
        for j, (what, inputs, outs) in enumerate(_bad_requests(module)):
            seq = 6000 + 10 * k + j
            assert float(send_acc(module, client, "acc", 2.0, sequence_id=seq, sequence_start=True)["y"][0][0]) == 2.0
            outputs = [module.InferRequestedOutput(n) for n in outs] if outs else None
            refused(lambda: client.infer("acc", inputs, outputs=outputs, sequence_id=seq, sequence_end=True))
            try:
                y = float(send_acc(module, client, "acc", 3.0, sequence_id=seq, sequence_end=True)["y"][0][0])
                if y != 5.0:
                    failures.append(f"{module.__name__}: {what}: state lost ({y})")
            except InferenceServerException as e:
                failures.append(f"{module.__name__}: {what}: {e.message()[:60]}")
    assert not failures, failures


# ---------------------------------------------------------------- optional inputs


def test_an_onnx_model_needs_an_optional_input_and_says_so(served):
    """SERVING.md: `optional: true` on an ONNX model's input loads (and the
    config shows it), but the ONNX engines need every input they declare, so
    a request that leaves it out gets 400 / INVALID_ARGUMENT with a message
    that says so; with it, the answer is the model's."""
    config = requests.get(served.url("/v2/models/opt_onnx/config"), timeout=10).json()
    assert [i.get("optional", False) for i in config["input"]] == [False, True], config["input"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for module, client in served.clients():
        inp = module.InferInput("x", [2, 3], "FP32")
        inp.set_data_from_numpy(x)
        refused(lambda: client.infer("opt_onnx", [inp]), "'y'", "optional")
        other = module.InferInput("y", [2, 3], "FP32")
        other.set_data_from_numpy(x * 3)
        r = client.infer("opt_onnx", [inp, other])
        np.testing.assert_array_equal(r.as_numpy("sum"), x * 4)
        np.testing.assert_array_equal(r.as_numpy("diff"), -2 * x)


def test_a_python_model_gets_none_for_an_optional_input_left_out(served):
    """SERVING.md "What config.pbtxt may say" and "Python models": a request
    may leave out an input marked `optional: true` (here the first of two,
    on a model without a batch dimension): `get_input_tensor_by_name` gives
    None and `inputs()` lists only those given, as in Triton; a required
    input left out is still 400 naming it. Over HTTP and gRPC, checked with
    numpy."""
    a = np.array([1.5, -2.0, 3.0], np.float32)
    b = np.array([10.0, 20.0, 30.0], np.float32)
    for module, client in served.clients():
        ia = module.InferInput("A", [3], "FP32")
        ia.set_data_from_numpy(a)
        ib = module.InferInput("B", [3], "FP32")
        ib.set_data_from_numpy(b)
        r = client.infer("opt_py", [ib])
        np.testing.assert_array_equal(r.as_numpy("OUT"), b * 2)
        assert r.as_numpy("GIVEN")[0] == b"B"
        r = client.infer("opt_py", [ia, ib])
        np.testing.assert_array_equal(r.as_numpy("OUT"), a * 10 + b)
        assert r.as_numpy("GIVEN")[0] == b"A,B"
        refused(lambda: client.infer("opt_py", [ia]), "'B'")


# ---------------------------------------------------------------- strings


def test_bytes_into_an_onnx_string_model_batch_across_string_lengths(served):
    """SERVING.md: BYTES is one of the datatypes, and a dynamic batch takes
    the requests "whose inputs have the same dtypes and the same dimensions
    after the first": strings of different lengths in tensors of one shape
    share a batch; a tensor of another shape does not, and every client gets
    its own rows (numpy: each row's strings read as floats, summed; the echo
    the strings themselves, UTF-8 kept)."""
    def stats():
        s = requests.get(served.url("/v2/models/strings/stats"), timeout=10).json()["model_stats"][0]
        return s["execution_count"], s["inference_count"]

    rng = np.random.default_rng(11)
    pieces = []
    for k in range(6):
        cols = 3 if k < 4 else 2
        vals = np.round(rng.standard_normal((1, cols)) * 10 ** rng.integers(0, 4, (1, cols)), 3)
        pieces.append(np.array([[repr(float(v)) for v in row] for row in vals], dtype=np.object_))
    pieces.append(np.array([["1e3", "2.5", "7"], ["-0.125", "3", "4"]], dtype=np.object_))

    def one(k):
        x = pieces[k]
        module, client = served.clients()[k % 2]
        inp = module.InferInput("s", list(x.shape), "BYTES")
        inp.set_data_from_numpy(x)
        r = client.infer("strings", [inp])
        return r.as_numpy("num"), r.as_numpy("echo")

    before = stats()
    with ThreadPoolExecutor(len(pieces)) as pool:
        got = list(pool.map(one, range(len(pieces))))
    after = stats()
    for x, (num, echo) in zip(pieces, got):
        want = np.array([[sum(float(v) for v in row)] for row in x], np.float32)
        np.testing.assert_allclose(num, want, rtol=1e-6)
        assert [[v.decode() for v in row] for row in echo] == x.tolist()
    rows = sum(p.shape[0] for p in pieces)
    assert after[1] - before[1] == rows, (before, after)
    # Two shapes ([n, 3] and [n, 2]): at least 2 calls, far fewer than 7.
    assert 2 <= after[0] - before[0] < len(pieces), (before, after)


def test_a_string_an_onnx_model_cannot_cast_is_a_400(served):
    """SERVING.md "Errors": a string that is not a number where the model
    casts it to one is 400 / INVALID_ARGUMENT quoting the engine."""
    x = np.array([["1", "two", "3"]], dtype=np.object_)
    for module, client in served.clients():
        inp = module.InferInput("s", [1, 3], "BYTES")
        inp.set_data_from_numpy(x)
        refused(lambda: client.infer("strings", [inp]), "'s'", "onnxruntime")


# ---------------------------------------------------------------- max_batch_size, dims, outputs


def test_without_a_config_there_is_no_batch_dimension_and_no_limit_on_the_first(served):
    """SERVING.md "The repository": without `config.pbtxt` a model's dynamic
    dimensions are -1, `max_batch_size: 0` (FROM_TRITON.md: no batching, no
    limit on the request's first dimension, where Triton would set 4), and
    the config says so."""
    config = requests.get(served.url("/v2/models/nocfg/config"), timeout=10).json()
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config, config
    assert [i["dims"] for i in config["input"]] == [[-1, -1], [-1, -1]], config["input"]
    assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime", config
    x = np.random.default_rng(2).standard_normal((100, 3)).astype(np.float32)
    y = np.random.default_rng(3).standard_normal((100, 3)).astype(np.float32)
    for module, client in served.clients():
        ins = []
        for n, v in (("x", x), ("y", y)):
            t = module.InferInput(n, list(v.shape), "FP32")
            t.set_data_from_numpy(v)
            ins.append(t)
        r = client.infer("nocfg", ins)
        np.testing.assert_array_equal(r.as_numpy("sum"), x + y)
        np.testing.assert_array_equal(r.as_numpy("diff"), x - y)


def test_dims_narrow_a_dynamic_size_and_outputs_may_be_a_subset(served):
    """SERVING.md "What config.pbtxt may say": `dims` may fix a size the
    model leaves dynamic (requests checked against it, 400 naming the
    input; the metadata shows it); outputs may be a subset (only those are
    served and listed; a request naming no output gets them; one asking for
    another gets 400 naming the served ones); `max_batch_size` > 0: a batch
    larger, or of 0 rows, gets 400 naming the input."""
    meta = requests.get(served.url("/v2/models/narrow"), timeout=10).json()
    assert [(i["name"], i["shape"]) for i in meta["inputs"]] == [("x", [-1, 3]), ("y", [-1, 3])], meta
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [("sum", [-1, 3])], meta
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    status, answer = served.infer("narrow", body(("x", "FP32", x), ("y", "FP32", x * 2)))
    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["sum"], answer
    np.testing.assert_array_equal(output(answer, "sum"), x * 3)
    for inputs, words in [
        ((("x", "FP32", np.ones((1, 5), np.float32)), ("y", "FP32", np.ones((1, 5), np.float32))), ["'x'", "3"]),
        ((("x", "FP32", np.ones((5, 3), np.float32)), ("y", "FP32", np.ones((5, 3), np.float32))), ["'x'", "4"]),
        ((("x", "FP32", np.ones((0, 3), np.float32)), ("y", "FP32", np.ones((0, 3), np.float32))), ["'x'"]),
    ]:
        status, answer = served.infer("narrow", body(*inputs))
        assert status == 400 and all(w in answer["error"] for w in words), (inputs[0][2].shape, answer)
    status, answer = served.infer("narrow", body(("x", "FP32", x), ("y", "FP32", x), outputs=[{"name": "diff"}]))
    assert status == 400 and "'diff'" in answer["error"] and "sum" in answer["error"], answer


def test_requests_of_different_non_batch_sizes_each_get_their_own_rows(served):
    """SERVING.md "Queue, batching and instances": requests of different
    shapes are never mixed (inputs `[b, -1]`, requests of 2, 3 and 5
    columns sent at once, over HTTP and gRPC): each client gets exactly its
    rows (numpy), and like shapes share calls."""
    rng = np.random.default_rng(9)
    pieces = [(rng.standard_normal((r, c)).astype(np.float32), rng.standard_normal((r, c)).astype(np.float32))
              for r, c in [(1, 2), (2, 3), (1, 2), (3, 3), (1, 5), (2, 2), (1, 3), (1, 5)]]

    def one(k):
        x, y = pieces[k]
        module, client = served.clients()[k % 2]
        ins = []
        for n, v in (("x", x), ("y", y)):
            t = module.InferInput(n, list(v.shape), "FP32")
            t.set_data_from_numpy(v)
            ins.append(t)
        r = client.infer("ragged", ins)
        return r.as_numpy("sum"), r.as_numpy("diff")

    s0 = requests.get(served.url("/v2/models/ragged/stats"), timeout=10).json()["model_stats"][0]
    with ThreadPoolExecutor(len(pieces)) as pool:
        got = list(pool.map(one, range(len(pieces))))
    for (x, y), (s, d) in zip(pieces, got):
        np.testing.assert_array_equal(s, x + y)
        np.testing.assert_array_equal(d, x - y)
    s1 = requests.get(served.url("/v2/models/ragged/stats"), timeout=10).json()["model_stats"][0]
    assert s1["inference_count"] - s0["inference_count"] == sum(x.shape[0] for x, _ in pieces)
    assert 3 <= s1["execution_count"] - s0["execution_count"] < len(pieces), (s0["execution_count"], s1["execution_count"])
