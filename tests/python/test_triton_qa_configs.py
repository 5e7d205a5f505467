"""Triton's own model-configuration test cases (its `qa/L0_model_config`)
against anemone.

Triton's server repository keeps, in `qa/L0_model_config/`, model folders
whose `config.pbtxt` is (mostly) deliberately wrong, each with `expected`
files: the error Triton's log must show, or, for its auto-complete cases
(`autofill_noplatform_success`), the config `GET .../config` must answer.
The cases are in `fixtures/triton_qa_configs/cases.txt`, unchanged, from
commit e1db8a603d863b1317ee859bdeea2be19959462e (see its header).

Of its 202 cases, 148 are for what anemone serves (ONNX Runtime models,
Python models, ensembles, and the platform-agnostic checks: instance
groups, batching, priorities, reshapes, dims, data types, missing fields,
`model_metrics`); 54 are skipped: TensorRT (31), OpenVINO (10), PyTorch
(4), Triton's custom `identity` backend's autofill (2), Triton's
`custom_parameters` for TensorRT (5) and its CLI deprecation messages (2).

Each case is run as Triton's `test.sh` runs it: the config as it is (for
`noautofill_platform` with `platform: "onnxruntime_onnx"` put in, as
`test.sh`'s `sed` does for that trial), a model that fits it generated
here (ONNX with the `onnx` package, or the case's `model.py`; Triton's
`identity` and `repeat` test backends become ONNX identity models and a
decoupled Python model), and the model loaded through `POST
/v2/repository/models/NAME/load` (`--model-control-mode explicit`):

- where Triton refuses, anemone must refuse, and its message must say what
  is wrong (name the field or the value: the words each case checks);
- where Triton accepts, anemone must load the model, and `GET
  /v2/models/NAME/config` must agree with Triton's `expected` config on
  what changes answers: `max_batch_size`, the inputs and outputs (names,
  data types, dims, `optional`), `dynamic_batching`,
  `model_transaction_policy`, and the instance groups' kind and count where
  the config names them.

Documented differences (docs/FROM_TRITON.md) are checked as documented:
without inputs in the config anemone leaves `max_batch_size: 0` where
Triton's ONNX Runtime backend sets 4 and `dynamic_batching`; `model_metrics`
loads with a warning (anemone has no such histograms).
"""
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from google.protobuf import json_format, text_format
from onnx import TensorProto, helper
from serve_support import start_serve
from tritonclient.grpc import model_config_pb2 as mc

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "fixtures/triton_qa_configs/cases.txt"


def _read_cases():
    files, path, lines = {}, None, []
    for line in CASES_FILE.read_text().split("\n"):
        if line.startswith("#### "):
            if path is not None:
                files[path] = "\n".join(lines)
            path, lines = line[5:], []
        elif path is not None:
            lines.append(line)
    files[path] = "\n".join(lines)
    return {p: t[:-1] if t.endswith("\n") else t for p, t in files.items()}


FILES = _read_cases()


def case_files(prefix):
    """{relative path: text} of the files under `prefix/`."""
    return {p[len(prefix) + 1:]: t for p, t in FILES.items() if p.startswith(prefix + "/")}


# ---------------------------------------------------------------- models

ONNX_TYPES = {
    "TYPE_BOOL": TensorProto.BOOL, "TYPE_UINT8": TensorProto.UINT8, "TYPE_UINT16": TensorProto.UINT16,
    "TYPE_UINT32": TensorProto.UINT32, "TYPE_UINT64": TensorProto.UINT64, "TYPE_INT8": TensorProto.INT8,
    "TYPE_INT16": TensorProto.INT16, "TYPE_INT32": TensorProto.INT32, "TYPE_INT64": TensorProto.INT64,
    "TYPE_FP16": TensorProto.FLOAT16, "TYPE_FP32": TensorProto.FLOAT, "TYPE_FP64": TensorProto.DOUBLE,
    "TYPE_STRING": TensorProto.STRING,
}


def parse_config(text):
    return text_format.Parse(text, mc.ModelConfig())


def _onnx_type(dt):
    name = mc.DataType.Name(dt)
    return ONNX_TYPES.get(name, TensorProto.FLOAT)


def _shape(tensor, batch, prefix):
    dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
    shape = [f"{prefix}{i}" if d == -1 else max(d, 0) for i, d in enumerate(dims)]
    return (["N"] if batch else []) + shape


def save_model(path, inputs, outputs, nodes, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def model_for_config(config, path):
    """An ONNX model whose inputs and outputs are the config's (the model's
    side of a `reshape`, a batch dimension in front when max_batch_size > 0).
    An output is a copy of the input at its place when their types and shapes
    agree, else the input's sum broadcast to the output's shape."""
    batch = config.max_batch_size > 0
    ins = [(t.name, _onnx_type(t.data_type), _shape(t, batch, f"i{k}_")) for k, t in enumerate(config.input)]
    outs = [(t.name, _onnx_type(t.data_type), _shape(t, batch, f"o{k}_")) for k, t in enumerate(config.output)]
    nodes, inits = [], []
    for k, (name, dtype, shape) in enumerate(outs):
        plain = lambda s: [d if isinstance(d, int) else -1 for d in s]
        same = [i for i in ins if i[1] == dtype and plain(i[2]) == plain(shape)]
        if same:
            nodes.append(helper.make_node("Identity", [same[min(k, len(same) - 1)][0]], [name]))
            continue
        src = ins[0]
        nodes.append(helper.make_node("Cast", [src[0]], [f"f{k}"], to=TensorProto.FLOAT))
        rank = len(src[2])
        axes = list(range(1 if batch else 0, rank))
        if axes:
            inits.append(helper.make_tensor(f"axes{k}", TensorProto.INT64, [len(axes)], axes))
            nodes.append(helper.make_node("ReduceSum", [f"f{k}", f"axes{k}"], [f"r{k}"], keepdims=0))
        else:
            nodes.append(helper.make_node("Identity", [f"f{k}"], [f"r{k}"]))
        target = [d if isinstance(d, int) else 1 for d in shape]
        if batch:
            target[0] = 1
        ones = ([0] if batch else []) + [1] * (len(shape) - (1 if batch else 0))
        inits.append(helper.make_tensor(f"ones{k}", TensorProto.INT64, [len(ones)], ones))
        inits.append(helper.make_tensor(f"to{k}", TensorProto.INT64, [len(target)], target))
        nodes.append(helper.make_node("Reshape", [f"r{k}", f"ones{k}"], [f"s{k}"]))
        nodes.append(helper.make_node("Expand", [f"s{k}", f"to{k}"], [f"e{k}"]))
        nodes.append(helper.make_node("Cast", [f"e{k}"], [name], to=dtype))
    save_model(path, [helper.make_tensor_value_info(n, t, s) for n, t, s in ins],
               [helper.make_tensor_value_info(n, t, s) for n, t, s in outs], nodes, inits)


def add_sub_int8_model(path, batch):
    """Triton's `qa_model_repository` ONNX model of these cases: INPUT0 and
    INPUT1 INT32 [.., 16], OUTPUT0 = INT8(INPUT0 + INPUT1), OUTPUT1 =
    INT8(INPUT0 - INPUT1), with a dynamic first dimension or none."""
    shape = (["var_0"] if batch else []) + [16]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT32, shape) for n in ("INPUT0", "INPUT1")]
    outs = [helper.make_tensor_value_info(n, TensorProto.INT8, (["var_1"] if batch else []) + [16])
            for n in ("OUTPUT0", "OUTPUT1")]
    nodes = [helper.make_node("Add", ["INPUT0", "INPUT1"], ["sum"]), helper.make_node("Sub", ["INPUT0", "INPUT1"], ["diff"]),
             helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=TensorProto.INT8),
             helper.make_node("Cast", ["diff"], ["OUTPUT1"], to=TensorProto.INT8)]
    save_model(path, ins, outs, nodes)


def identity_fp16_model(path):
    """Triton's `onnx_zero_1_float16` identity model, batch in front."""
    shape = ["N", "a", "b"]
    save_model(path, [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT16, shape)],
               [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT16, shape)],
               [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])])


PB_PREAMBLE = """import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
"""

REPEAT_PY = PB_PREAMBLE + """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    \"\"\"Stands for Triton's `repeat` test backend: decoupled, one response per IN element.\"\"\"

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            for i, v in enumerate(values):
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUT", np.array([v], np.int32)),
                    pb_utils.Tensor("IDX", np.array([i], np.uint32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def write_model_dir(root, name, config_text, files):
    """`root/name/config.pbtxt` (None: no config) and `files` ({relative path: text or builder})."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        (d / "config.pbtxt").write_text(config_text)
    for rel, content in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(p)
        elif content is None:
            p.mkdir(exist_ok=True)
        else:
            p.write_text(content)


# ---------------------------------------------------------------- cases

NOAUTOFILL_TRIAL = "onnxruntime_onnx"


def noautofill_config(text):
    """test.sh's `sed -i '/platform:/d'` and `echo "platform: \\"$TRIAL\\""`."""
    lines = [line for line in text.split("\n") if "platform:" not in line]
    return "\n".join(lines) + f'\nplatform: "{NOAUTOFILL_TRIAL}"\n'


def composing_config(text):
    """Triton's test backends, as anemone can serve them: `identity` becomes
    an ONNX model, `repeat` (decoupled) a Python model."""
    return text.replace('backend: "identity"', 'backend: "onnxruntime"').replace('backend: "repeat"', 'backend: "python"')


def _python_source(prefix, name):
    own = FILES.get(f"{prefix}/{name}/model.py")
    return own if own is not None else FILES["python_models/auto_complete/model.py"]


def single_model(path):
    """(name, config text or None, files) of a one-model case at `path`."""
    group, name = path.rsplit("/", 1)
    text = FILES.get(f"{path}/config.pbtxt")
    files = {}
    if group == "noautofill_platform":
        text = noautofill_config(text)
        files["1/model.onnx"] = lambda p, t=text: model_for_config(parse_config(t), p)
    elif group in ("autofill_noplatform/onnx", "autofill_noplatform_success/onnx"):
        if name == "cpu_instance":
            files["1/model.onnx"] = identity_fp16_model
        else:
            batch = name not in ("bad_max_batch_size", "no_config_no_batch")
            files["1/model.onnx"] = lambda p, b=batch: add_sub_int8_model(p, b)
    elif group in ("autofill_noplatform/python", "autofill_noplatform_success/python"):
        files["1/model.py"] = _python_source(group, name)
    elif group == "autofill_noplatform/ensemble":
        files["1"] = None
    elif group in ("autofill_noplatform/custom",):
        files["1"] = None
    elif group == "special_cases":
        files["1"] = None
        if name == "invalid_platform":
            files["1/model.onnx"] = lambda p, t=text: model_for_config(parse_config(t), p)
            files["output0_labels.txt"] = "".join(f"label{i}\n" for i in range(16))
        if name == "runtime_escape":
            files["dummy_runtime/libtriton_identity.so"] = ""
    elif group.startswith("model_metrics/"):
        text = FILES["python_models/async_execute_decouple/config.pbtxt"] + "\n" + FILES[f"{path}/partial.pbtxt"] + "\n"
        files["1/model.py"] = FILES["python_models/async_execute_decouple/model.py"]
    return name, text, files


def repository_models(path):
    """[(name, config text, files)] of a case that is a whole repository."""
    names = sorted({p.split("/")[0] for p in case_files(path) if "/" in p})
    out = []
    for name in names:
        text = FILES[f"{path}/{name}/config.pbtxt"]
        files = {}
        if 'platform: "ensemble"' in text:
            files["1"] = None
            if f"{path}/{name}/model.py" in FILES:  # test.sh copies it there; Triton ignores it
                files["1/model.py"] = FILES[f"{path}/{name}/model.py"]
        elif 'backend: "repeat"' in text:
            files["1/model.py"] = REPEAT_PY
        elif 'backend: "identity"' in text:
            files["1/model.onnx"] = lambda p, t=composing_config(text): model_for_config(parse_config(t), p)
        elif f"{path}/{name}/model.py" in FILES:
            files["1/model.py"] = FILES[f"{path}/{name}/model.py"]
        out.append((name, composing_config(text), files))
    return out


def expected_text(path, name=None):
    """The `expected*` files of a case (a repository case's at its top or in the model's folder)."""
    found = []
    for base in ([path] + ([f"{path}/{name}"] if name else [])):
        found += [t for p, t in case_files(base).items() if "/" not in p and p.startswith("expected")]
    return found


def _helper(name, mbs, ins, outs):
    tensors = lambda kind, spec: ", ".join(
        f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, d))} ] }}' for n, d in spec)
    text = (f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {mbs}\n'
            f'input [ {tensors("input", ins)} ]\noutput [ {tensors("output", outs)} ]\n')
    return name, text, {"1/model.onnx": lambda p, t=text: model_for_config(parse_config(t), p)}


# The composing models the one-model ensemble cases name (Triton's test has
# none of them: its checks fail first). They are given here, fitting the
# steps' maps, so that what is wrong is only what the case is about.
ENSEMBLE_HELPERS = [
    _helper("model_a", 8, [("model_a_input", [1, 28, 28])], [("model_a_output", [10, 1, 1])]),
    _helper("model_b", 8, [("model_b_input", [10, 1, 1])], [("model_b_output", [10, 1, 1])]),
    _helper("model_c", 8, [("model_c_input", [10, 1, 1])], [("model_c_output", [10, 1, 1])]),
    _helper("fp32_dim1_batch4", 4, [("input", [16])], [("output", [16])]),
    _helper("fp32_dim1_batch4_output3", 4, [("input", [16])], [(f"output{i}", [16]) for i in (1, 2, 3)]),
    _helper("fp32_dim1_batch4_input4", 4, [(f"input{i}", [16]) for i in (1, 2, 3, 4)], [("output", [16])]),
]


# ---------------------------------------------------------------- servers

# Which server (repository) a one-model case loads in. `strict` runs with
# --disable-auto-complete-config, as test.sh runs noautofill_platform and
# special_cases/invalid_platform; the others with auto-complete on, as
# test.sh's autofill runs. Names repeat across Triton's groups (an ONNX and a
# Python `unknown_input`), hence one repository per group.
def group_of(path):
    if path.startswith("noautofill_platform/") or path == "special_cases/invalid_platform":
        return "strict"
    if "/python/" in path or path.startswith("model_metrics/"):
        return "python"
    return "onnx"


@contextlib.contextmanager
def anemone(repo, log, *flags):
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--log-file", str(log), *flags)
    try:
        yield f"http://{addresses['HTTP']}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Servers:
    """One server per group, started on first use, over a repository holding
    every one-model case of the group."""

    def __init__(self, root, stack):
        self.root, self.stack, self.urls = root, stack, {}

    def url(self, group):
        if group not in self.urls:
            repo = self.root / group
            repo.mkdir()
            for path in SINGLE_PATHS:
                if group_of(path) == group:
                    write_model_dir(repo, *single_model(path))
            if group == "onnx":
                for helper in ENSEMBLE_HELPERS:
                    write_model_dir(repo, *helper)
            flags = ["--disable-auto-complete-config"] if group == "strict" else []
            self.urls[group] = self.stack.enter_context(anemone(repo, self.root / f"{group}.log", *flags))
        return self.urls[group]

    def log(self, group):
        return (self.root / f"{group}.log").read_text()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        yield Servers(tmp_path_factory.mktemp("qa"), stack)


def load(url, name):
    r = requests.post(f"{url}/v2/repository/models/{name}/load", timeout=120)
    return r.status_code, (r.json().get("error", "") if r.text else "")


def unload(url, name):
    requests.post(f"{url}/v2/repository/models/{name}/unload", timeout=60)


def ready(url, name):
    return requests.get(f"{url}/v2/models/{name}/ready", timeout=10).status_code == 200


def config_of(url, name):
    r = requests.get(f"{url}/v2/models/{name}/config", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def infer(url, name, inputs):
    body = {"inputs": [{"name": n, "datatype": dt, "shape": list(v.shape), "data": v.flatten().tolist()}
                       for n, dt, v in inputs]}
    r = requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}


def summary(config):
    """What changes answers, from a config as JSON (anemone's answer, or
    Triton's expected text through json_format): max_batch_size, inputs and
    outputs by name (data type, dims, optional), dynamic batching (preferred
    sizes), decoupled."""
    tensors = lambda key, extra: {
        t["name"]: (t.get("data_type", "TYPE_INVALID"), [int(d) for d in t.get("dims", [])]) + extra(t)
        for t in config.get(key, [])}
    batching = config.get("dynamic_batching")
    preferred = None if batching is None else sorted(int(s) for s in batching.get("preferred_batch_size", []))
    # A preferred size equal to max_batch_size changes no batch: Triton's
    # set_dynamic_batching() writes it, anemone leaves it out.
    if preferred == [int(config.get("max_batch_size", 0))]:
        preferred = []
    return {
        "max_batch_size": int(config.get("max_batch_size", 0)),
        "input": tensors("input", lambda t: (bool(t.get("optional", False)),)),
        "output": tensors("output", lambda t: ()),
        "dynamic_batching": preferred,
        "decoupled": bool((config.get("model_transaction_policy") or {}).get("decoupled", False)),
    }


def triton_summary(text):
    return summary(json_format.MessageToDict(parse_config(text), preserving_proto_field_name=True))


def assert_refused(url, name, status, message, words, case):
    assert status != 200, f"{case}: anemone loaded it, where Triton refuses it"
    assert not ready(url, name), f"{case}: refused, yet ready"
    for word in words:
        assert re.search(word, message, re.I), f"{case}: the refusal does not say {word!r}: {message}"


# ---------------------------------------------------------------- the cases Triton refuses

def defect(reason):
    return pytest.mark.xfail(strict=True, reason="DEFECT: " + reason)


NA, AN, EN, PY = "noautofill_platform", "autofill_noplatform", "autofill_noplatform/ensemble", "autofill_noplatform/python"
IO = r"(input|output) '(input|output)'"

# (case, words its refusal must say, marks). A word is a regular expression
# (case-insensitive): the field, the tensor, the value that is wrong.
REFUSED = [
    *[(f"{NA}/batch_input_{k}", ["batch_input"], ()) for k in
      ("less_source0", "less_source1", "less_source2", "less_source3", "many_source0", "many_source1",
       "many_source2", "many_source3", "unknown_source")],
    *[(f"{NA}/batch_output_{k}", ["batch_output"], ()) for k in
      ("duplicated_target", "less_source", "many_source", "unknown_source", "unknown_target")],
    (f"{NA}/control_kind_end_multiple", ["control_input", "END1|CONTROL_SEQUENCE_END"], ()),
    (f"{NA}/control_kind_ready_multiple", ["control_input", "READY1|CONTROL_SEQUENCE_READY"], ()),
    (f"{NA}/control_kind_start_multiple", ["control_input", "READY|CONTROL_SEQUENCE_START"], ()),
    (f"{NA}/control_tensor_multiple", ["START", "twice|multiple"], ()),
    (f"{NA}/control_tensor_no_value", ["int32_false_true"], ()),
    (f"{NA}/default_priority_level0", ["default_priority_level"], ()),
    (f"{NA}/default_priority_level1", ["default_priority_level", "5"], ()),
    # Also wrong: instance_group gpus [42]; anemone names that one.
    (f"{NA}/ensemble_scheduling_set", ["ensemble_scheduling|gpus"], ()),
    (f"{NA}/invalid_cpu", ["KIND_CPU", "gpus"], ()),
    (f"{NA}/invalid_gpu", ["gpus", "42"], ()),
    (f"{NA}/missing_datatype", ["data_type"], ()),
    (f"{NA}/negative_gpu", ["gpus", "-1"], ()),
    (f"{NA}/negative_max_batch_size", ["max_batch_size", "-2"], ()),
    (f"{NA}/preserve_ordering0", ["preserve_ordering", "priority"], ()),
    *[(f"{NA}/preserve_ordering{k}", ["preserve_ordering", "DELAY"], ())
      for k in (1, 2)],
    (f"{NA}/priority_level0", ["priority_queue_policy", r"\b0\b"], ()),
    (f"{NA}/priority_level1", ["priority_queue_policy", r"\b4\b"], ()),
    *[(f"{NA}/reshape_{k}", [IO, "reshape"], ()) for k in
      ("elementcount0", "elementcount1", "elementcount2", "elementcount3", "nobatch_variable0",
       "nobatch_variable1", "nobatch_variable2", "nobatch_variable3", "nobatch_variable4", "nobatch_variable5",
       "variable0", "variable1", "variable2", "variable3", "variable4", "variable5")],
    *[(f"{NA}/reshape_{k}", [IO, "reshape", r"\b0\b"], ()) for k in
      ("nobatch_zerodims0", "nobatch_zerodims1", "zerodims0", "zerodims1")],
    *[(f"{NA}/zerodims_{k}", [r"(input|output)", "dims", r"\b0\b"], ()) for k in
      ("input0", "input1", "output0", "output1")],
    (f"{AN}/common/no_version", ["version|model file"], ()),
    (f"{AN}/custom/no_delimiter", ["version|model file|backend"], ()),
    (f"{AN}/custom/unknown_backend.unknown", ["version|model file|backend"], ()),
    (f"{AN}/onnx/bad_input_dims", ["INPUT0", "dims"], ()),
    (f"{AN}/onnx/bad_max_batch_size", ["max_batch_size"], ()),
    (f"{AN}/onnx/bad_output_dims", ["OUTPUT1", "dims"], ()),
    (f"{AN}/onnx/too_few_inputs", ["INPUT0"], ()),
    (f"{AN}/onnx/too_many_inputs", ["INPUT_EXTRA"], ()),
    (f"{AN}/onnx/unknown_input", ["INPUT_UNKNOWN"], ()),
    (f"{AN}/onnx/unknown_output", ["OUTPUT_UNKNOWN"], ()),
    (f"{PY}/conflicting_max_batch_size", ["max_batch_size", r"\b6\b", r"\b4\b"], ()),
    (f"{PY}/conflicting_scheduler_sequence", ["sequence_batching", "dynamic_batching"], ()),
    (f"{PY}/input_mismatch_datatype", ["INPUT1", "TYPE_INT32"], ()),
    (f"{PY}/input_mismatch_dims", ["INPUT1", "16"], ()),
    (f"{PY}/input_missing_datatype", ["INPUT0", "data_type"], ()),
    (f"{PY}/input_missing_dims", ["INPUT1", "dims"], ()),
    (f"{PY}/input_missing_name", ["input", "name"], ()),
    (f"{PY}/input_wrong_property", ["INPUT1", "is_shape_tensor"], ()),
    (f"{PY}/model_transaction_policy_invalid_args", ["model_transaction_policy", "invalid"], ()),
    (f"{PY}/model_transaction_policy_mismatch", ["decoupled"], ()),
    (f"{PY}/no_return", ["auto_complete_config", "return"], ()),
    (f"{PY}/output_mismatch_datatype", ["OUTPUT0", "TYPE_INT32"], ()),
    (f"{PY}/output_mismatch_dims", ["OUTPUT1", "16"], ()),
    (f"{PY}/output_missing_datatype", ["OUTPUT0", "data_type"], ()),
    (f"{PY}/output_missing_dims", ["OUTPUT1", "dims"], ()),
    (f"{PY}/output_missing_name", ["output", "name"], ()),
    (f"{PY}/output_wrong_property", ["OUTPUT1", "is_shape_tensor"], ()),
    (f"{EN}/ensemble_scheduling_no_set", ["ensemble_scheduling"], ()),
    (f"{EN}/has_backend", ["backend"], ()),
    # Also wrong: gpus [42]; anemone names that one.
    (f"{EN}/instance_group_set", ["instance_group|gpus"], ()),
    (f"{EN}/model_warm_up_set", ["model_warmup"], ()),
    (f"{EN}/no_input_map", ["step.?1", "input_map"], ()),
    (f"{EN}/no_model_name", ["step.?1", "model_name"], ()),
    (f"{EN}/no_output_map", ["step.?1", "output_map"], ()),
    (f"{EN}/no_step", ["step"], ()),
    (f"{EN}/no_step_2", ["step"], ()),
    (f"{EN}/output_to_tensor_overmapped", ["temp_tensor_2"], ()),
    (f"{EN}/redundant_tensor_as_input", ["temp_tensor_5|temp_tensor_6"], ()),
    (f"{EN}/redundant_tensor_as_output", ["temp_tensor_2"], ()),
    (f"{EN}/tensor_to_input_overmapped", ["temp_tensor_5|input4"], ()),
    (f"{EN}/unreachable_input", ["data_2"], ()),
    (f"{EN}/unreachable_output", ["prob_2"], ()),
    (f"{EN}/unreachable_output_2", ["prob_2|cycle"], ()),
    (f"{EN}/unreachable_output_3", ["not_written_tensor"], ()),
    ("special_cases/invalid_platform", ["platform", "onnxruntim"], ()),
    ("special_cases/invalid_runtime", ["runtime", "identity"], ()),
    ("special_cases/runtime_escape", ["runtime", "identity"], ()),
]


@pytest.mark.parametrize("case,words", [pytest.param(c, w, marks=m, id=c) for c, w, m in REFUSED])
def test_a_config_triton_refuses_is_refused_saying_what_is_wrong(servers, case, words):
    """Triton's qa/L0_model_config case `case` (its `expected` file: the
    error tritonserver logs, and the model does not load): anemone must refuse
    it too, and say what is wrong (docs/FROM_TRITON.md: 'A field anemone cannot
    honour is refused by its path ... nothing is ignored silently')."""
    group = group_of(case)
    url = servers.url(group)
    name = single_model(case)[0]
    status, message = load(url, name)
    try:
        assert expected_text(case), "the case has Triton's expected message"
        assert_refused(url, name, status, message, words, case)
    finally:
        unload(url, name)


# ---------------------------------------------------------------- the cases Triton accepts

SU = "autofill_noplatform_success"
# Documented (docs/FROM_TRITON.md): without inputs in the config, Triton's
# ONNX Runtime backend sets max_batch_size 4 and dynamic_batching for a model
# with a dynamic first dimension; anemone leaves max_batch_size 0.
ORT_DEFAULT_BATCH = {f"{SU}/onnx/empty_config", f"{SU}/onnx/no_config"}

ACCEPTED = [
    (f"{SU}/onnx/cpu_instance", ()),
    (f"{SU}/onnx/empty_config", ()),
    (f"{SU}/onnx/no_config", ()),
    (f"{SU}/onnx/no_config_no_batch", ()),
    *[(f"{SU}/python/{k}", ()) for k in
      ("dynamic_batching", "dynamic_batching_no_op", "empty_config", "incomplete_input", "incomplete_output",
       "model_transaction_policy", "model_transaction_policy_decoupled_false", "optional_input",
       "unknown_input", "unknown_output")],
    (f"{SU}/python/model_transaction_policy_no_op", ()),
]


def expected_summary(case, name=None):
    texts = expected_text(case, name)
    assert texts, f"{case}: no expected config"
    want = triton_summary(texts[0])
    if case in ORT_DEFAULT_BATCH and want["max_batch_size"] > 0:
        want["max_batch_size"], want["dynamic_batching"] = 0, None
        for key in ("input", "output"):
            want[key] = {n: (t[0], [-1] + t[1]) + t[2:] for n, t in want[key].items()}
    return want


@pytest.mark.parametrize("case", [pytest.param(c, marks=m, id=c) for c, m in ACCEPTED])
def test_a_config_triton_completes_loads_and_is_completed_alike(servers, case):
    """Triton's qa/L0_model_config auto-complete case `case`
    (autofill_noplatform_success: tritonserver loads it and `GET .../config`
    answers the `expected` config): anemone must load it, and its config must
    agree on max_batch_size, the inputs and outputs (data type, dims,
    optional), dynamic_batching and decoupled (docs/SERVING.md: configs are
    'filled in as Triton 2.51 fills it'), less the documented ONNX Runtime
    default batch (docs/FROM_TRITON.md). Where the config names an instance
    group, its kind must be kept. The ONNX models answer as numpy computes."""
    url = servers.url(group_of(case))
    name = case.rsplit("/", 1)[1]
    status, message = load(url, name)
    try:
        assert status == 200, f"{case}: Triton loads it, anemone refuses: {message}"
        assert ready(url, name)
        got = config_of(url, name)
        assert summary(got) == expected_summary(case), got
        config_text = FILES.get(f"{case}/config.pbtxt") or ""
        if "KIND_CPU" in config_text:
            assert {g["kind"] for g in got["instance_group"]} == {"KIND_CPU"}, got["instance_group"]
        rng = np.random.default_rng(0)
        if name == "cpu_instance":
            x = rng.standard_normal((2, 3, 5)).astype(np.float16)
            out = infer(url, name, [("INPUT0", "FP16", x)])
            np.testing.assert_array_equal(out["OUTPUT0"].astype(np.float16), x)
        elif "/onnx/" in case:
            batch = name != "no_config_no_batch"
            shape = (3, 16) if batch else (16,)
            a, b = (rng.integers(-60, 60, shape, dtype=np.int32) for _ in range(2))
            out = infer(url, name, [("INPUT0", "INT32", a), ("INPUT1", "INT32", b)])
            np.testing.assert_array_equal(out["OUTPUT0"], (a + b).astype(np.int8))
            np.testing.assert_array_equal(out["OUTPUT1"], (a - b).astype(np.int8))
    finally:
        unload(url, name)


# ---------------------------------------------------------------- where anemone differs, not wrongly

@pytest.mark.parametrize("case", [f"{NA}/reshape_nobatch_empty0", f"{NA}/reshape_nobatch_empty1"])
def test_an_empty_reshape_on_a_model_without_batching_serves_the_scalar(servers, case):
    """Triton refuses `dims: [ 1 ] reshape { shape: [ ] }` on a model with
    max_batch_size 0 ('cannot have empty reshape for non-batching model as
    scalar tensors are not supported'; tritonserver 2.51 too). anemone takes
    it (docs/SERVING.md: a reshape is refused only when it cannot hold the same
    elements) and serves the model's scalar as [1]: the answer must be the
    numpy one (the model copies its input's value)."""
    url = servers.url("strict")
    name = case.rsplit("/", 1)[1]
    status, message = load(url, name)
    try:
        assert status == 200, message
        x = np.array([2.5], np.float32)
        out = infer(url, name, [("input", "FP32", x)])
        np.testing.assert_allclose(out["output"].astype(np.float32), x)
    finally:
        unload(url, name)


def test_an_ensemble_optimization_priority_is_a_hint_that_loads_with_a_warning(servers):
    """autofill_noplatform/ensemble/optimization_set: Triton (2.51 too)
    refuses `optimization { priority: PRIORITY_MAX }` on an ensemble.
    docs/SERVING.md lists `optimization { priority }` among Triton's hints
    that load with a warning naming them and change no answer; anemone keeps
    to that on an ensemble too."""
    url = servers.url("onnx")
    status, message = load(url, "optimization_set")
    try:
        assert status == 200, message
        assert re.search(r"optimization.*priority|priority.*optimization", servers.log("onnx"), re.I), \
            "no warning names optimization.priority"
    finally:
        unload(url, "optimization_set")


MODEL_METRICS = sorted({"/".join(p.split("/")[:3]) for p in FILES if p.startswith("model_metrics/")})


@pytest.mark.parametrize("case", MODEL_METRICS)
def test_model_metrics_loads_with_a_warning_whatever_it_says(servers, case):
    """qa/L0_model_config/model_metrics: Triton checks `model_metrics`
    (histogram buckets of its latency metrics) and refuses the six
    invalid_config cases. docs/FROM_TRITON.md: `model_metrics` is one of
    Triton's hints that 'load, and the load logs a warning naming them'
    (anemone has its own histograms), so all eight load here (Triton's
    async_execute_decouple Python model with the case's model_metrics)."""
    url = servers.url("python")
    name = case.rsplit("/", 1)[1]
    status, message = load(url, name)
    try:
        assert status == 200, message
        assert ready(url, name)
        assert re.search(rf"{name}.*model_metrics|model_metrics.*{name}", servers.log("python")), \
            "no warning names model_metrics for the model"
    finally:
        unload(url, name)


# ---------------------------------------------------------------- whole repositories (ensembles)

REPO_REFUSED = [
    (f"{EN}/circular_dependency", ["circular_dependency", "cycle"], ()),
    (f"{EN}/inconsistent_data_type", ["INT32", "FP32"], ()),
    (f"{EN}/inconsistent_shape", ["temp_tensor", "rank|shape|dim"], ()),
    (f"{EN}/invalid_batch_size", ["max_batch_size", r"\b3\b", r"\b2\b"], ()),
    (f"{EN}/invalid_decoupled_branching", ["decoupled"], ()),
    (f"{EN}/invalid_decoupled_branching_2", ["decoupled"], ()),
    (f"{EN}/invalid_input_map", ["invalid_input"], ()),
    (f"{EN}/invalid_output_map", ["invalid_output"], ()),
    (f"{EN}/no_required_version", ["simple", "version 2"], ()),
    (f"{EN}/no_required_version_2", ["simple", "version 2"], ()),
    (f"{EN}/no_required_version_3", ["simple", "version 2"], ()),
    (f"{EN}/non_existing_model", ["fp32_dim1_batch4_input4"], ()),
    (f"{EN}/self_circular_dependency", ["self_circular_dependency", "itself|cycle"], ()),
    (f"{EN}/unmapped_input", ["fp32_dim1_batch4_input4", "INPUT0"], ()),
]


@pytest.mark.parametrize("case,words", [pytest.param(c, w, marks=m, id=c) for c, w, m in REPO_REFUSED])
def test_an_ensemble_triton_refuses_is_refused_saying_what_is_wrong(tmp_path, case, words):
    """Triton's ensemble case `case`, a whole repository (Triton's `identity`
    test backend as ONNX identity models, its decoupled `repeat` as a
    decoupled Python model): tritonserver refuses the ensemble with its
    `expected` message; anemone must refuse it and name what is wrong
    (docs/ENSEMBLES.md, 'Validation at load')."""
    name = case.rsplit("/", 1)[1]
    for model in repository_models(case):
        write_model_dir(tmp_path / "repo", *model)
    with anemone(tmp_path / "repo", tmp_path / "log") as url:
        status, message = load(url, name)
        assert expected_text(case, name)
        assert_refused(url, name, status, message, words, case)


REPO_ACCEPTED = [
    (f"{SU}/ensemble/embedded_ensemble", (2, 16), ()),
    (f"{SU}/ensemble/inconsistent_shape", (2, 16), ()),
    (f"{SU}/ensemble/inconsistent_shape_2", (4, 16), ()),
    (f"{SU}/ensemble/unmapped_output", (2, 16), ()),
    # An ensemble without batching (dims [4]) whose steps are Python models
    # that batch (auto_complete_config: max_batch_size 4, dynamic
    # batching): tritonserver 2.51 loads it, and sends each step a batch of
    # one (test_ensemble.py runs such an ensemble).
    (f"{SU}/python/conflicting_scheduler_ensemble", None, ()),
]


@pytest.mark.parametrize("case,shape", [pytest.param(c, s, marks=m, id=c) for c, s, m in REPO_ACCEPTED])
def test_an_ensemble_triton_loads_loads_and_answers(tmp_path, case, shape):
    """Triton's auto-complete ensemble case `case`, a whole repository:
    tritonserver loads the ensemble and answers `expected` for its config;
    anemone must load it, agree on the config's inputs, outputs and
    max_batch_size, and answer through its identity steps with the tensor
    sent (numpy)."""
    name = case.rsplit("/", 1)[1]
    for model in repository_models(case):
        write_model_dir(tmp_path / "repo", *model)
    with anemone(tmp_path / "repo", tmp_path / "log") as url:
        status, message = load(url, name)
        assert status == 200, f"{case}: Triton loads it, anemone refuses: {message}"
        got, want = summary(config_of(url, name)), expected_summary(case, name)
        assert (got["max_batch_size"], got["input"], got["output"]) == \
            (want["max_batch_size"], want["input"], want["output"])
        if shape is not None:
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            out = infer(url, name, [("data", "FP32", x)])
            np.testing.assert_allclose(out["prob"].astype(np.float32), x, rtol=1e-6)


SINGLE_PATHS = ([c for c, _, _ in REFUSED] + [c for c, _ in ACCEPTED] + MODEL_METRICS
                + [f"{NA}/reshape_nobatch_empty0", f"{NA}/reshape_nobatch_empty1", f"{EN}/optimization_set"])


def test_the_cases_are_all_accounted_for():
    """Every one of Triton's 202 cases is run here (148) or named as skipped
    (54: TensorRT, OpenVINO, PyTorch, the custom identity backend, TensorRT
    custom_parameters, CLI messages) in the module docstring."""
    run = set(SINGLE_PATHS) | {c for c, _, _ in REPO_REFUSED} | {c for c, _, _ in REPO_ACCEPTED}
    assert len(run) == len(SINGLE_PATHS) + len(REPO_REFUSED) + len(REPO_ACCEPTED) == 148
    in_fixture = {"/".join(p.split("/")[:3 if p.startswith(("autofill", "model_metrics")) else 2])
                  for p in FILES if not p.startswith("python_models/")}
    assert run == in_fixture, sorted(in_fixture ^ run)
