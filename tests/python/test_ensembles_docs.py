"""Ensembles as docs/ENSEMBLES.md describes them, tested as a Triton user
moving a repository over would meet them: configuration (`input_map` /
`output_map`, versions, nesting, fields refused), validation at load (each
message of the table, all problems in one message), loading, unloading and
readiness (explicit mode, `unload_dependents`), execution (chains, fan-out /
fan-in, ONNX and Python steps, concurrent steps, batching of steps, the
status of a failed step), a decoupled step (streaming), statistics,
Prometheus and the response cache.

ONNX models are built here with the onnx package (`add`: x, y [b, 4] ->
sum, diff; `vers`: y = x + version); Python models are written as text.
Every number served is compared with numpy.
"""
import json
import queue
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from serve_support import start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

# ---------------------------------------------------------------- models


def _save(graph, path):
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def add_model(path):
    ins = [h.make_tensor_value_info(n, T.FLOAT, ["b", 4]) for n in ("x", "y")]
    outs = [h.make_tensor_value_info(n, T.FLOAT, ["b", 4]) for n in ("sum", "diff")]
    _save(h.make_graph([h.make_node("Add", ["x", "y"], ["sum"]), h.make_node("Sub", ["x", "y"], ["diff"])],
                       "add", ins, outs), path)


def plus_model(path, k):
    """y = x + k."""
    _save(h.make_graph([h.make_node("Add", ["x", "k"], ["y"])], "plus",
                       [h.make_tensor_value_info("x", T.FLOAT, ["b", 4])],
                       [h.make_tensor_value_info("y", T.FLOAT, ["b", 4])],
                       initializer=[nh.from_array(np.array([k], np.float32), "k")]), path)


ADD_CONFIG = """backend: "onnxruntime"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

VERS_CONFIG = """backend: "onnxruntime"
max_batch_size: 8
version_policy: { all { } }
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

# Y = X * X; a request holding 13 fails ("13 is unlucky").
PY_SQ = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if (x == 13).any():
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("13 is unlucky")))
                continue
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x * x).astype(np.float32))]))
        return out
'''

PY_1IO = """backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

# Y = X * K, K written in the file (rewritten by a test to load it again).
PY_K = '''
import numpy as np
import triton_python_backend_utils as pb_utils

K = {k}


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", (pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * K).astype(np.float32))]) for r in requests]
'''

# Y = X as it is (any shape).
PY_IDENT = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
'''

# Sleeps 0.5 s, then Y = X * 3 (two copies: independent steps).
PY_SLEEP = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.5)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", (pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 3).astype(np.float32))]) for r in requests]
'''

# Dynamic batching: Y = X + 1, N = how many requests the execute call got.
PY_BATCH = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        n = len(requests)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", (x + 1).astype(np.float32)),
                pb_utils.Tensor("N", np.full((x.shape[0], 1), n, np.int32)),
            ]))
        return out
'''

PY_BATCH_CONFIG = """backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 400000 }
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

# Answers the outputs it was asked for, joined, in NAMES; A and B are X.
PY_OUTS = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            names = ",".join(sorted(r.requested_output_names()))
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("A", x), pb_utils.Tensor("B", x),
                pb_utils.Tensor("NAMES", np.array([names.encode()], np.object_)),
            ]))
        return out
'''

PY_OUTS_CONFIG = """backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "A" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "NAMES" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

# Decoupled: X [1] = n; n responses TOK = 0..n-1, then the final flag alone
# (an error response first when n < 0).
GEN = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "X").as_numpy()[0])
            sender = r.get_response_sender()
            if n < 0:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("no negative lengths")))
            for i in range(n):
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TOK", np.array([i], np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

GEN_CONFIG = """backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "TOK" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

# V = TOK * 2.5
POST = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "V", (pb_utils.get_input_tensor_by_name(r, "TOK").as_numpy() * 2.5).astype(np.float32))])
            for r in requests]
'''

POST_CONFIG = """backend: "python"
input [ { name: "TOK" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "V" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

# ---------------------------------------------------------------- ensembles


def tensors(kind, spec):
    """`input [ ... ]` from [(name, TYPE, dims)]."""
    return f"{kind} [ " + ", ".join(
        f'{{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}' for n, t, d in spec) + " ]\n"


def step(model, inputs, outputs, version=-1):
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'{{ model_name: "{model}" model_version: {version} {ins} {outs} }}'


def ensemble(inputs, outputs, steps, max_batch_size=8, extra=""):
    return (f'platform: "ensemble"\nmax_batch_size: {max_batch_size}\n' + tensors("input", inputs)
            + tensors("output", outputs) + extra + "ensemble_scheduling { step [ " + ", ".join(steps) + " ] }\n")


F4 = ("TYPE_FP32", [4])
XY = [("x", *F4), ("y", *F4)]
ADD_XY = {"x": "x", "y": "y"}

# out = (x + y) + y: the doc's Rust example, as a config.
CHAIN = ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "s"}), step("add", {"x": "s", "y": "y"}, {"sum": "out"})])
# Fan-out and fan-in over ONNX and Python steps: S = x + y (also read by a
# step), D = x - y, out = S^2 + D^2.
FAN = ensemble(XY, [("out", *F4), ("S", *F4)], [
    step("add", ADD_XY, {"sum": "S", "diff": "d"}),
    step("py_sq", {"X": "S"}, {"Y": "s2"}),
    step("py_sq", {"X": "d"}, {"Y": "d2"}),
    step("add", {"x": "s2", "y": "d2"}, {"sum": "out"}),
])
# An ensemble as a step of another (named to load before the inner one
# alphabetically): out = ((x + y) + y)^2.
NESTED = ensemble(XY, [("out", *F4)], [step("chain", ADD_XY, {"out": "c"}), step("py_sq", {"X": "c"}, {"Y": "out"})])

ONE = [("x", *F4)]
OUT_Y = [("y", *F4)]

# Runs the steps' Python model py_sq: a request holding 13 fails at step 1.
FAILING = ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "s"}), step("py_sq", {"X": "s"}, {"Y": "out"})])
FAIL_FIRST = ensemble([("X", *F4)], [("Y", *F4)], [step("py_sq", {"X": "X"}, {"Y": "Y"})])

BROKEN = {
    "bad_two_producers": (ensemble(XY, [("out", *F4)], [
        step("add", ADD_XY, {"sum": "out"}), step("add", ADD_XY, {"sum": "out"})]),
        ["tensor 'out' has two producers: step 0 (model 'add') output 'sum' and step 1 (model 'add') output 'sum'"]),
    "bad_input_producer": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "x", "diff": "out"})]),
                           ["tensor 'x' has two producers: the ensemble's input and step 0 (model 'add') output 'sum'"]),
    "bad_cycle": (ensemble(XY, [("out", *F4)], [
        step("add", {"x": "b", "y": "y"}, {"sum": "a"}), step("add", {"x": "a", "y": "y"}, {"sum": "b", "diff": "out"})]),
        ["the steps form a cycle: step 0 (model 'add'), step 1 (model 'add') each wait for another's output"]),
    "bad_unfed": (ensemble(XY, [("out", *F4)], [
        step("add", ADD_XY, {"sum": "s"}), step("add", {"x": "norm", "y": "y"}, {"sum": "out"})]),
        ["step 1 (model 'add'): input 'x' is mapped from tensor 'norm', which is neither an ensemble input nor any step's output"]),
    "bad_dtype": (ensemble([("x", "TYPE_INT32", [4]), ("y", *F4)], [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]),
                  ["step 0 (model 'add'): tensor 'x' (INT32 [-1, 4]) cannot feed input 'x' (FP32 [", "the data types differ"]),
    "bad_rank": (ensemble([("x", "TYPE_FP32", [2, 4]), ("y", *F4)], [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]),
                 ["step 0 (model 'add'): tensor 'x'", "the ranks differ (3 against 2); with max_batch_size > 0 the batch dimension counts"]),
    "bad_dim": (ensemble([("x", "TYPE_FP32", [5]), ("y", *F4)], [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]),
                ["step 0 (model 'add'): tensor 'x'", "dimension 1 differs (5 against 4)"]),
    "bad_no_producer": (ensemble(XY, [("out", *F4), ("extra", *F4)], [step("add", ADD_XY, {"sum": "out"})]),
                        ["ensemble output 'extra' is not produced by any step"]),
    "bad_unmapped": (ensemble(XY, [("out", *F4)], [step("add", {"x": "x"}, {"sum": "out"})]),
                     ["step 0 (model 'add'): the model's input 'y' is not mapped; add it to the step's input_map"]),
    "bad_no_such_output": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"z": "out"})]),
                           ["output_map names output 'z', which the model does not have; its outputs are 'sum', 'diff'"]),
    "bad_no_such_input": (ensemble(XY, [("out", *F4)], [step("add", {"x": "x", "y": "y", "q": "x"}, {"sum": "out"})]),
                          ["input_map names input 'q', which the model does not have"]),
    "bad_ghost": (ensemble(XY, [("out", *F4)], [step("ghost", ADD_XY, {"sum": "out"})]),
                  # The doc's excerpt says "model 'ghost' is not in the model repository".
                  ["composing model 'ghost' could not be loaded, so the ensemble cannot be: ", "'ghost'",
                   "not in the repository"]),
    "bad_batch": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})], max_batch_size=16),
                  ["the ensemble's max_batch_size is 16 but the model's is 8"]),
    # Every problem in one message.
    "bad_many": (ensemble(XY, [("out", *F4), ("extra", *F4)], [step("add", {"x": "x"}, {"z": "out"})]),
                 ["output_map names output 'z'", "the model's input 'y' is not mapped", "ensemble output 'extra' is not produced"]),
    # Fields of an engine, refused on an ensemble.
    "bad_instance_group": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})],
                                    extra="instance_group [ { count: 2 kind: KIND_CPU } ]\n"), ["instance_group"]),
    "bad_warmup": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})], extra=(
        'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } }'
        ' inputs { key: "y" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]\n')), ["model_warmup"]),
    "bad_default_filename": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})],
                                      extra='default_model_filename: "model.onnx"\n'), ["default_model_filename"]),
    "bad_backend": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})], extra='backend: "onnxruntime"\n'),
                    ["backend"]),
    "bad_dynamic_batching": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})],
                                      extra="dynamic_batching { }\n"), ["oneof 'scheduling_choice'"]),
    "bad_namespace": (ensemble(XY, [("out", *F4)], [
        step("add", ADD_XY, {"sum": "out"}).replace('model_version', 'model_namespace: "ns" model_version')]),
        ["model_namespace"]),
    # SERVING.md: an ensemble's own inputs and outputs take no reshape.
    "bad_reshape": (ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]).replace(
        'name: "x" data_type: TYPE_FP32 dims: [ 4 ]', 'name: "x" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 2, 2 ] }'),
        ["input 'x'", "reshape"]),
    # A nested ensemble must be asked for as -1.
    "bad_nested_pinned": (ensemble(XY, [("out", *F4)], [step("chain", ADD_XY, {"out": "out"}, version=1)]), ["chain"]),
    # A streaming ensemble is not a step of another.
    "bad_nested_stream": (ensemble([("X", "TYPE_INT32", [1])], [("V", "TYPE_FP32", [1])],
                                   [step("e_stream", {"X": "X"}, {"V": "V"})], max_batch_size=0),
                          ["step 0 (model 'e_stream')", "has a decoupled step"]),
}


def write(repo, name, config, version_dir="1"):
    d = repo / name
    d.mkdir(parents=True, exist_ok=True)
    if version_dir:
        (d / version_dir).mkdir(exist_ok=True)
    (d / "config.pbtxt").write_text(config)


def python_model(repo, name, config, source):
    write(repo, name, config)
    (repo / name / "1" / "model.py").write_text(source)


def onnx_model(repo, name, config, build):
    write(repo, name, config)
    build(repo / name / "1" / "model.onnx")


def build_repository(repo):
    onnx_model(repo, "add", ADD_CONFIG, add_model)
    for copy in ("add_stats", "add_c", "m1", "m2", "m3", "m4", "m5"):
        onnx_model(repo, copy, ADD_CONFIG, add_model)
    write(repo, "vers", VERS_CONFIG)
    for v in (1, 2):
        plus_model(repo / "vers" / str(v) / "model.onnx", float(v))
    python_model(repo, "py_sq", PY_1IO, PY_SQ)
    python_model(repo, "py_ident", PY_1IO, PY_IDENT)
    python_model(repo, "py_k", PY_1IO, PY_K.format(k=2.0))
    python_model(repo, "py_sleep", PY_1IO, PY_SLEEP)
    python_model(repo, "py_sleep2", PY_1IO, PY_SLEEP)
    python_model(repo, "py_batch", PY_BATCH_CONFIG, PY_BATCH)
    python_model(repo, "py_outs", PY_OUTS_CONFIG, PY_OUTS)
    python_model(repo, "gen", GEN_CONFIG, GEN)
    python_model(repo, "slow_init", PY_1IO, PY_SQ.replace(
        "class TritonPythonModel:", "class TritonPythonModel:\n    def initialize(self, args):\n        import time\n        time.sleep(1.5)\n"))
    python_model(repo, "post", POST_CONFIG, POST)

    write(repo, "chain", CHAIN)
    write(repo, "fan", FAN)
    write(repo, "a_nested", NESTED)
    write(repo, "e_pinned", ensemble(ONE, OUT_Y, [step("vers", {"x": "x"}, {"y": "y"}, version=1)]))
    write(repo, "e_latest", ensemble(ONE, OUT_Y, [step("vers", {"x": "x"}, {"y": "y"})]))
    write(repo, "e_batch4", ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})], max_batch_size=4))
    write(repo, "e_v3", ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]), version_dir="3")
    write(repo, "e_noversion", ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]), version_dir=None)
    write(repo, "e_fail", FAILING)
    write(repo, "e_fail_first", FAIL_FIRST)
    # A request of another size than add's [4]: refused by a step fed from
    # the request (400), or from another step (500).
    var = ("TYPE_FP32", [-1])
    write(repo, "e_refuse_direct", ensemble([("x", *var), ("y", *var)], [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]))
    write(repo, "e_refuse_inner", ensemble([("x", *var), ("y", *var)], [("out", *F4)], [
        step("py_ident", {"X": "x"}, {"Y": "xi"}), step("add", {"x": "xi", "y": "y"}, {"sum": "out"})]))
    write(repo, "e_parallel", ensemble([("X", *F4)], [("A", *F4), ("B", *F4)], [
        step("py_sleep", {"X": "X"}, {"Y": "A"}), step("py_sleep2", {"X": "X"}, {"Y": "B"})]))
    write(repo, "e_batched", ensemble([("X", *F4)], [("Y", *F4), ("N", "TYPE_INT32", [1])],
                                      [step("py_batch", {"X": "X"}, {"Y": "Y", "N": "N"})]))
    write(repo, "e_outs", ensemble([("X", "TYPE_FP32", [1])], [("NAMES", "TYPE_STRING", [1])],
                                   [step("py_outs", {"X": "X"}, {"NAMES": "NAMES"})], max_batch_size=0))
    write(repo, "e_stats", ensemble(XY, [("out", *F4)], [
        step("add_stats", ADD_XY, {"sum": "s"}), step("add_stats", {"x": "s", "y": "y"}, {"sum": "out"})]))
    cache = "response_cache { enable: true }\n"
    write(repo, "e_cache", ensemble(XY, [("out", *F4)], [step("add_c", ADD_XY, {"sum": "out"})], extra=cache))
    write(repo, "e_cache_k", ensemble([("X", *F4)], [("Y", *F4)], [step("py_k", {"X": "X"}, {"Y": "Y"})], extra=cache))
    # Loading and unloading: ens_a uses m1, m2; ens_b uses m2; ens_c uses m3.
    write(repo, "ens_a", ensemble(XY, [("out", *F4)], [step("m1", ADD_XY, {"sum": "s"}), step("m2", {"x": "s", "y": "y"}, {"sum": "out"})]))
    write(repo, "ens_b", ensemble(XY, [("out", *F4)], [step("m2", ADD_XY, {"sum": "out"})]))
    write(repo, "ens_c", ensemble(XY, [("out", *F4)], [step("m3", ADD_XY, {"sum": "out"})]))
    # A slow step, then m4 (unloaded meanwhile by a test): out = 3X + X.
    write(repo, "e_slow_then", ensemble([("X", *F4)], [("out", *F4)], [
        step("py_sleep", {"X": "X"}, {"Y": "s"}), step("m4", {"x": "s", "y": "X"}, {"sum": "out"})]))
    # max_batch_size 0 over a batched step: the ensemble's dims are full shapes.
    write(repo, "e_unbatched", ensemble([("x", "TYPE_FP32", [3, 4]), ("y", "TYPE_FP32", [3, 4])],
                                        [("out", "TYPE_FP32", [3, 4])], [step("add", ADD_XY, {"sum": "out"})], max_batch_size=0))
    # Not loaded at start: its one model takes 1.5 s to initialise.
    write(repo, "ens_slow", ensemble([("X", *F4)], [("Y", *F4)], [step("slow_init", {"X": "X"}, {"Y": "Y"})]))
    python_model(repo, "py_r", PY_1IO, PY_IDENT)
    write(repo, "e_r", ensemble([("X", *F4)], [("Y", *F4)], [step("py_r", {"X": "X"}, {"Y": "Y"})]))
    # Not loaded at start: an ensemble over an ensemble over m5; an ensemble
    # naming itself; two naming each other.
    write(repo, "n_outer", ensemble(XY, [("out", *F4)], [step("n_inner", ADD_XY, {"out": "out"})]))
    write(repo, "n_inner", ensemble(XY, [("out", *F4)], [step("m5", ADD_XY, {"sum": "out"})]))
    write(repo, "e_self", ensemble(XY, [("out", *F4)], [step("e_self", ADD_XY, {"out": "out"})]))
    write(repo, "e_mut1", ensemble(XY, [("out", *F4)], [step("e_mut2", ADD_XY, {"out": "out"})]))
    write(repo, "e_mut2", ensemble(XY, [("out", *F4)], [step("e_mut1", ADD_XY, {"out": "out"})]))
    # Streaming: gen (decoupled) then post per token.
    write(repo, "e_stream", ensemble([("X", "TYPE_INT32", [1])], [("V", "TYPE_FP32", [1])], [
        step("gen", {"X": "X"}, {"TOK": "tok"}), step("post", {"TOK": "tok"}, {"V": "V"})], max_batch_size=0,
        extra="response_cache { enable: true }\n").replace(
        "ensemble_scheduling {", "ensemble_scheduling { max_inflight_requests: 2"))
    for name, (config, _) in BROKEN.items():
        write(repo, name, config)
    return repo


STARTUP = ["add", "add_stats", "add_c", "m1", "m2", "vers", "py_sq", "py_ident", "py_k", "py_sleep", "py_sleep2",
           "py_batch", "py_outs", "gen", "post", "chain", "fan", "a_nested", "e_pinned", "e_latest", "e_batch4", "e_v3",
           "e_noversion", "e_fail", "e_fail_first", "e_refuse_direct", "e_refuse_inner", "e_parallel", "e_batched",
           "e_outs", "e_stats", "m4", "e_unbatched", "e_slow_then", "e_cache", "e_cache_k", "ens_a", "ens_b", "e_stream"] + list(BROKEN)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = build_repository(tmp_path_factory.mktemp("ensembles_docs"))
    # Explicit mode, everything but m3 and ens_c loaded at start.
    flags = ["--model-control-mode", "explicit", "--strict-readiness", "false",
             "--cache-config", "local,size=1048576"]
    for name in STARTUP:
        flags += ["--load-model", name]
    proc, addresses = start_serve(repo, *flags)
    try:
        client = httpclient.InferenceServerClient(addresses["HTTP"])
        deadline = time.time() + 120
        while not all(client.is_model_ready(m) for m in ["fan", "a_nested", "e_stream", "e_cache_k"]):
            assert time.time() < deadline, "the ensembles were not ready within 120 s"
            time.sleep(0.2)
        addresses["repo"] = repo
        yield addresses
    finally:
        stop_serve(proc)


# ---------------------------------------------------------------- helpers


def index(server):
    r = requests.post(f"http://{server['HTTP']}/v2/repository/index", json={}, timeout=10)
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()}


def http(server):
    return httpclient.InferenceServerClient(server["HTTP"])


def grpc(server):
    return grpcclient.InferenceServerClient(server["gRPC"])


def inputs(module, **arrays):
    out = []
    for name, a in arrays.items():
        dtype = {np.float32: "FP32", np.int32: "INT32"}[a.dtype.type]
        t = module.InferInput(name, list(a.shape), dtype)
        t.set_data_from_numpy(a)
        out.append(t)
    return out


def infer_json(server, model, arrays, parameters=None):
    """A raw HTTP JSON request; the `requests` response."""
    body = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": {np.float32: "FP32", np.int32: "INT32"}[a.dtype.type],
                        "data": a.flatten().tolist()} for n, a in arrays.items()]}
    if parameters:
        body["parameters"] = parameters
    return requests.post(f"http://{server['HTTP']}/v2/models/{model}/infer", json=body, timeout=30)


def stats(server, model):
    s = requests.get(f"http://{server['HTTP']}/v2/models/{model}/stats", timeout=10).json()["model_stats"]
    assert len(s) == 1, s
    return s[0]


def success(server, model):
    return stats(server, model)["inference_stats"]["success"]["count"]


def rng_xy(seed, batch=2):
    r = np.random.default_rng(seed)
    return (r.standard_normal((batch, 4)).astype(np.float32), r.standard_normal((batch, 4)).astype(np.float32))


# ---------------------------------------------------------------- configuration and execution


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_chain_computes_the_docs_rust_example(server, protocol):
    """"out = (x + y) + y": the doc's Rust example `pair`, as a config of
    two steps of `add`, the second fed by the first's `sum` (input_map: key =
    the model's input, value = the ensemble tensor)."""
    module, c = (httpclient, http(server)) if protocol == "http" else (grpcclient, grpc(server))
    x, y = rng_xy(1, batch=3)
    got = c.infer("chain", inputs(module, x=x, y=y)).as_numpy("out")
    np.testing.assert_allclose(got, (x + y) + y, rtol=1e-6)


def test_fan_out_and_fan_in_over_onnx_and_python_steps(server):
    """Independent steps read one tensor (S read by a Python step and by the
    response: "a tensor read by several steps (or by a step and the
    response) is copied for all but the last reader"), and a last ONNX step
    joins them: out = (x+y)^2 + (x-y)^2."""
    x, y = rng_xy(2, batch=4)
    result = http(server).infer("fan", inputs(httpclient, x=x, y=y))
    s, d = x + y, x - y
    np.testing.assert_allclose(result.as_numpy("S"), s, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("out"), s * s + d * d, rtol=1e-5)


def test_an_ensemble_as_a_step_of_another(server):
    """"A step's model may itself be an ensemble": a_nested runs the ensemble
    `chain` then a Python step; it loads at start-up although its name sorts
    before `chain`'s."""
    x, y = rng_xy(3)
    got = http(server).infer("a_nested", inputs(httpclient, x=x, y=y)).as_numpy("out")
    np.testing.assert_allclose(got, ((x + y) + y) ** 2, rtol=1e-5)


def test_model_version_minus_one_is_the_latest_and_a_number_pins_one(server):
    """"`model_version: -1` is the latest loaded version; a positive number
    pins one": `vers` version v computes x + v, both versions loaded."""
    x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
    c = http(server)
    np.testing.assert_allclose(c.infer("e_latest", inputs(httpclient, x=x)).as_numpy("y"), x + 2, rtol=1e-6)
    np.testing.assert_allclose(c.infer("e_pinned", inputs(httpclient, x=x)).as_numpy("y"), x + 1, rtol=1e-6)


def test_the_ensemble_is_served_as_its_highest_version_directory_or_1(server):
    """"anemone serves the ensemble as its highest version directory, or 1
    without one"; the metadata's platform is `ensemble` (SERVING.md), its
    tensors with the batch dimension as -1."""
    c = http(server)
    meta = c.get_model_metadata("e_v3")
    assert meta["versions"] == ["3"] and meta["platform"] == "ensemble", meta
    assert c.is_model_ready("e_v3", "3")
    x, y = rng_xy(5)
    np.testing.assert_allclose(c.infer("e_v3", inputs(httpclient, x=x, y=y), model_version="3").as_numpy("out"), x + y)
    meta = c.get_model_metadata("e_noversion")
    assert meta["versions"] == ["1"], meta
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"x": [-1, 4], "y": [-1, 4]}, meta
    np.testing.assert_allclose(c.infer("e_noversion", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)


def test_outputs_of_a_model_that_are_not_mapped_are_not_asked_for(server):
    """"Outputs of a model that are not mapped are not asked for": the
    Python step sees only NAMES among its requested outputs (as Triton's
    ensemble scheduler asks only for the output_map's keys)."""
    got = http(server).infer("e_outs", inputs(httpclient, X=np.ones(1, np.float32))).as_numpy("NAMES")[0]
    assert got == b"NAMES", got


def test_independent_steps_run_concurrently(server):
    """"every step whose inputs are ready is sent at once, so independent
    steps run concurrently": two steps of 0.5 s each on two models answer
    in well under 1 s."""
    c = http(server)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    c.infer("e_parallel", inputs(httpclient, X=x))  # warm
    start = time.monotonic()
    result = c.infer("e_parallel", inputs(httpclient, X=x))
    took = time.monotonic() - start
    np.testing.assert_allclose(result.as_numpy("A"), x * 3)
    np.testing.assert_allclose(result.as_numpy("B"), x * 3)
    assert took < 0.9, f"two independent 0.5 s steps took {took:.2f} s: they ran one after the other"


def test_steps_of_concurrent_ensemble_requests_are_batched_together(server):
    """"dynamic batching (steps of concurrent ensemble requests are batched
    together)": four ensemble requests at once reach the step's model in
    fewer executions than requests; every row is its own request's."""
    xs = [np.full((1, 4), i, np.float32) for i in range(4)]
    before = stats(server, "py_batch")

    def one(x):
        r = http(server).infer("e_batched", inputs(httpclient, X=x))
        return r.as_numpy("Y"), int(r.as_numpy("N")[0, 0])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, xs))
    for x, (y, _) in zip(xs, results):
        np.testing.assert_allclose(y, x + 1)
    assert max(n for _, n in results) > 1, results
    after = stats(server, "py_batch")
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 4
    assert after["execution_count"] - before["execution_count"] < 4, (before["execution_count"], after["execution_count"])


def test_a_batch_through_an_ensemble_and_its_max_batch_size(server):
    """"with max_batch_size > 0 the batch dimension is implied": a batch of
    4 through e_batch4 is answered row by row; 5 is refused (400) as a
    model refuses it ("The ensemble's own inputs are validated first ...
    with the same 400 messages as a model's")."""
    x, y = rng_xy(6, batch=4)
    np.testing.assert_allclose(http(server).infer("e_batch4", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)
    x, y = rng_xy(6, batch=5)
    r = infer_json(server, "e_batch4", {"x": x, "y": y})
    assert r.status_code == 400, r.text
    assert "4" in r.json()["error"] and "5" in r.json()["error"], r.text


def _normalise(message, model):
    # The ONNX model names its batch dimension `b`; the ensemble's is -1.
    return message.replace(f"'{model}'", "'M'").replace(model, "M").replace("[b, ", "[-1, ")


@pytest.mark.parametrize("case", ["name", "dtype", "shape", "missing"])
def test_the_ensembles_inputs_are_validated_with_a_models_messages(server, case):
    """"The ensemble's own inputs are validated first (names, types, shapes,
    max_batch_size), with the same 400 messages as a model's": the same bad
    request to `e_noversion` (x, y [4] -> add) and to `add` itself."""
    x, y = rng_xy(7)
    arrays = {
        "name": {"x": x, "zz": y},
        "dtype": {"x": x.astype(np.int32), "y": y},
        "shape": {"x": np.zeros((2, 5), np.float32), "y": y},
        "missing": {"x": x},
    }[case]
    got = {m: infer_json(server, m, arrays) for m in ("e_noversion", "add")}
    for m, r in got.items():
        assert r.status_code == 400, (m, r.text)
    assert _normalise(got["e_noversion"].json()["error"], "e_noversion") == _normalise(got["add"].json()["error"], "add")


# ---------------------------------------------------------------- a step that fails


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_step_failing_at_run_time_names_the_step_and_the_server_keeps_serving(server, protocol):
    """"The first step that fails fails the request ...: `ensemble 'ocr'
    step 1 (model 'det') failed: <the step's error>`", the steps after it
    not run; the next request is answered."""
    x = np.array([[6, 0, 0, 0]], np.float32)
    y = np.array([[7, 1, 2, 3]], np.float32)  # sum holds 13
    before = success(server, "py_sq")
    if protocol == "http":
        r = infer_json(server, "e_fail", {"x": x, "y": y})
        assert r.status_code == 500, r.text
        message = r.json()["error"]
    else:
        with pytest.raises(InferenceServerException) as e:
            grpc(server).infer("e_fail", inputs(grpcclient, x=x, y=y))
        assert e.value.status() == "StatusCode.INTERNAL", e.value
        message = e.value.message()
    assert "ensemble 'e_fail' step 1 (model 'py_sq') failed: " in message and "13 is unlucky" in message, message
    assert success(server, "py_sq") == before
    x, y = rng_xy(8)
    np.testing.assert_allclose(http(server).infer("e_fail", inputs(httpclient, x=x, y=y)).as_numpy("out"), (x + y) ** 2,
                               rtol=1e-5)


def test_a_step_refusing_the_requests_own_input_is_the_clients_fault(server):
    """"an input a step refuses is the client's fault (400) only when the
    step's inputs all came from the request; when they came from another
    step it is the ensemble's (500)": add refuses 5 columns."""
    x = np.ones((1, 5), np.float32)
    direct = infer_json(server, "e_refuse_direct", {"x": x, "y": x})
    assert direct.status_code == 400, direct.text
    assert "ensemble 'e_refuse_direct' step 0 (model 'add') failed" in direct.json()["error"], direct.text
    inner = infer_json(server, "e_refuse_inner", {"x": x, "y": x})
    assert inner.status_code == 500, inner.text
    assert "ensemble 'e_refuse_inner' step 1 (model 'add') failed" in inner.json()["error"], inner.text
    x, y = rng_xy(9, batch=1)
    np.testing.assert_allclose(http(server).infer("e_refuse_inner", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)


def test_a_failed_request_counts_once_in_the_ensembles_fail(server):
    """Statistics: "A failed ensemble request counts once in `fail`" (the
    documented difference from Triton's two), and the failed step's model
    counts its own failure."""
    x = np.array([[13, 0, 0, 0]], np.float32)
    before = stats(server, "e_fail_first")["inference_stats"]
    step_before = stats(server, "py_sq")["inference_stats"]
    for _ in range(2):
        assert infer_json(server, "e_fail_first", {"X": x}).status_code == 500
    after = stats(server, "e_fail_first")["inference_stats"]
    step_after = stats(server, "py_sq")["inference_stats"]
    assert after["fail"]["count"] - before["fail"]["count"] == 2, (before, after)
    assert after["success"]["count"] == before["success"]["count"]
    assert step_after["fail"]["count"] - step_before["fail"]["count"] == 2


# ---------------------------------------------------------------- statistics and metrics


def test_statistics_of_the_ensemble_and_of_its_steps(server):
    """Statistics: "Each composing model counts the ensemble's calls in its
    own statistics": e_stats runs add_stats twice per request; the ensemble
    has its own `success`, `inference_count`/`execution_count` per request
    (by batch size), and `queue` and `compute_*` summed over its steps."""
    before_e, before_s = stats(server, "e_stats"), stats(server, "add_stats")
    c = http(server)
    for batch in (1, 3, 3):
        x, y = rng_xy(10 + batch, batch=batch)
        np.testing.assert_allclose(c.infer("e_stats", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + 2 * y, rtol=1e-6)
    e, s = stats(server, "e_stats"), stats(server, "add_stats")
    d = lambda a, b, *path: _get(a, *path) - _get(b, *path)  # noqa: E731
    assert d(e, before_e, "inference_stats", "success", "count") == 3
    assert d(s, before_s, "inference_stats", "success", "count") == 6
    assert d(e, before_e, "inference_count") == 7 and d(e, before_e, "execution_count") == 3
    assert d(s, before_s, "inference_count") == 14 and d(s, before_s, "execution_count") == 6
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in e["batch_stats"]}
    old = {b["batch_size"]: b["compute_infer"]["count"] for b in before_e["batch_stats"]}
    assert sizes.get(3, 0) - old.get(3, 0) == 2 and sizes.get(1, 0) - old.get(1, 0) == 1, e["batch_stats"]
    for what in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert d(e, before_e, "inference_stats", what, "count") == 3, what
        assert d(e, before_e, "inference_stats", what, "ns") == d(s, before_s, "inference_stats", what, "ns"), what
    # The whole pipeline's duration holds its steps'.
    assert d(e, before_e, "inference_stats", "success", "ns") >= d(s, before_s, "inference_stats", "compute_infer", "ns")


def _get(d, *path):
    for p in path:
        d = d[p]
    return d


def test_grpc_statistics_of_an_ensemble(server):
    """`gRPC ModelStatistics` carries the same counts as HTTP's."""
    want = stats(server, "e_stats")
    got = grpc(server).get_inference_statistics("e_stats", as_json=True)["model_stats"][0]
    assert int(got["inference_stats"]["success"]["count"]) == want["inference_stats"]["success"]["count"]
    assert int(got["execution_count"]) == want["execution_count"]


def metric(server, family, model):
    text = requests.get(f"http://{server['HTTP']}/metrics", timeout=10).text
    m = re.search(rf'^{family}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_prometheus_counts_the_ensemble_and_each_step(server):
    """"Each composing model counts the ensemble's calls in its own
    statistics (... Prometheus)", and the ensemble has its own series."""
    fam = "anemone_inference_request_success_total"
    before = (metric(server, fam, "fan") or 0, metric(server, fam, "py_sq") or 0, metric(server, fam, "add") or 0)
    x, y = rng_xy(12)
    for _ in range(2):
        http(server).infer("fan", inputs(httpclient, x=x, y=y))
    after = (metric(server, fam, "fan"), metric(server, fam, "py_sq"), metric(server, fam, "add"))
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (2, 4, 4), (before, after)


# ---------------------------------------------------------------- the response cache


def test_a_cache_hit_runs_no_step(server):
    """"`response_cache { enable: true }` caches the ensemble's answers at
    the top level (needs `--cache-config`): a hit runs no step at all";
    counted as the ensemble's `cache_hit` / `cache_miss`."""
    x, y = rng_xy(13)
    c = http(server)
    before_e, before_s = stats(server, "e_cache")["inference_stats"], success(server, "add_c")
    before_exec = stats(server, "e_cache")["execution_count"]
    for _ in range(3):
        np.testing.assert_allclose(c.infer("e_cache", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)
    e = stats(server, "e_cache")["inference_stats"]
    assert success(server, "add_c") - before_s == 1, "the step ran for a cached answer"
    assert e["cache_hit"]["count"] - before_e["cache_hit"]["count"] == 2
    assert e["cache_miss"]["count"] - before_e["cache_miss"]["count"] == 1
    assert e["success"]["count"] - before_e["success"]["count"] == 3
    # SERVING.md: a hit "runs no engine, so it adds nothing to
    # execution_count, inference_count or the compute durations".
    after = stats(server, "e_cache")
    assert after["execution_count"] == 1 + before_exec, (before_exec, after["execution_count"])


def test_a_request_in_a_sequence_is_never_answered_from_the_cache(server):
    """"A request in a sequence (`sequence_id`) is never answered from the
    cache: its steps run"."""
    x, y = rng_xy(14)
    c = http(server)
    c.infer("e_cache", inputs(httpclient, x=x, y=y))  # cached now
    before_e, before_s = stats(server, "e_cache")["inference_stats"], success(server, "add_c")
    for start in (True, False):
        got = c.infer("e_cache", inputs(httpclient, x=x, y=y), sequence_id=77, sequence_start=start,
                      sequence_end=not start).as_numpy("out")
        np.testing.assert_allclose(got, x + y)
    assert success(server, "add_c") - before_s == 2
    assert stats(server, "e_cache")["inference_stats"]["cache_hit"]["count"] == before_e["cache_hit"]["count"]


def test_a_cached_answer_is_never_one_a_reloaded_step_gave(server):
    """"A cached answer is never one that a step's model since loaded again
    gave": py_k (Y = X * K) is loaded again with another K; the cached
    ensemble then answers with the new K."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    c = http(server)
    for _ in range(2):
        np.testing.assert_allclose(c.infer("e_cache_k", inputs(httpclient, X=x)).as_numpy("Y"), x * 2)
    hits = stats(server, "e_cache_k")["inference_stats"]["cache_hit"]["count"]
    assert hits >= 1
    (server["repo"] / "py_k" / "1" / "model.py").write_text(PY_K.format(k=5.0))
    c.load_model("py_k")
    np.testing.assert_allclose(c.infer("py_k", inputs(httpclient, X=x)).as_numpy("Y"), x * 5)
    np.testing.assert_allclose(c.infer("e_cache_k", inputs(httpclient, X=x)).as_numpy("Y"), x * 5)
    assert c.is_model_ready("e_cache_k")


# ---------------------------------------------------------------- loading, unloading, readiness


def test_unloading_a_composing_model_makes_the_ensemble_unavailable_until_it_is_back(server):
    """Readiness: with m1 unloaded ens_a "stays known but the index shows it
    UNAVAILABLE with `composing model 'm1' of step 0 (model 'm1') is not
    loaded; load it again to serve the ensemble`, `GET
    /v2/models/{ensemble}/ready` is not 200, and requests get 503 with that
    reason. Loading the model again makes the ensemble ready again"."""
    c = http(server)
    x, y = rng_xy(15)
    np.testing.assert_allclose(c.infer("ens_a", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + 2 * y, rtol=1e-6)
    c.unload_model("m1")
    try:
        reason = "composing model 'm1' of step 0 (model 'm1') is not loaded; load it again to serve the ensemble"
        entry = index(server)["ens_a"]
        assert entry["state"] == "UNAVAILABLE" and reason in entry.get("reason", ""), entry
        assert requests.get(f"http://{server['HTTP']}/v2/models/ens_a/ready", timeout=10).status_code != 200
        r = infer_json(server, "ens_a", {"x": x, "y": y})
        assert r.status_code == 503 and reason in r.json()["error"], r.text
        # The other ensemble on m2 alone serves on.
        np.testing.assert_allclose(c.infer("ens_b", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)
    finally:
        c.load_model("m1")
    assert c.is_model_ready("ens_a") and index(server)["ens_a"]["state"] == "READY"
    np.testing.assert_allclose(c.infer("ens_a", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + 2 * y, rtol=1e-6)


def test_loading_an_ensemble_loads_its_composing_models(server):
    """"Loading an ensemble (... with `POST
    /v2/repository/models/{ensemble}/load` in explicit mode) first loads each
    composing model that is not loaded": ens_c and m3 were not loaded at
    start; before that, a request to it is Triton's 404."""
    r = infer_json(server, "ens_c", dict(zip("xy", rng_xy(16))))
    assert r.status_code == 404, r.text
    assert "Request for unknown model: 'ens_c' is not found" in r.json()["error"], r.text
    assert "state" not in index(server)["m3"] or index(server)["m3"]["state"] != "READY"
    c = http(server)
    c.load_model("ens_c")
    assert c.is_model_ready("ens_c") and c.is_model_ready("m3")
    x, y = rng_xy(16)
    np.testing.assert_allclose(c.infer("ens_c", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)


def _unload(server, model, dependents):
    body = {} if dependents is None else {"parameters": {"unload_dependents": dependents}}
    r = requests.post(f"http://{server['HTTP']}/v2/repository/models/{model}/unload", json=body, timeout=30)
    assert r.status_code == 200, r.text


def _state(server, model):
    return index(server)[model].get("state")


def test_unload_dependents_keeps_the_models_another_loaded_ensemble_uses(server):
    """"`unload_dependents` unloads an ensemble *and* its composing models,
    except those another loaded ensemble still uses ... Without it (or
    `false`), only the ensemble is unloaded"; "The server lists
    `model_repository(unload_dependents)` in `GET /v2`'s extensions"."""
    assert "model_repository(unload_dependents)" in requests.get(f"http://{server['HTTP']}/v2", timeout=10).json()["extensions"]
    c = http(server)
    c.load_model("ens_a")
    _unload(server, "ens_a", False)
    assert [_state(server, m) for m in ("ens_a", "m1", "m2")] == ["UNAVAILABLE", "READY", "READY"]
    c.load_model("ens_a")
    assert c.is_model_ready("ens_a") and c.is_model_ready("ens_b")
    _unload(server, "ens_a", True)
    # m2 stays: ens_b, still loaded, uses it.
    assert [_state(server, m) for m in ("ens_a", "m1", "m2", "ens_b")] == ["UNAVAILABLE", "UNAVAILABLE", "READY", "READY"]
    x, y = rng_xy(17)
    np.testing.assert_allclose(c.infer("ens_b", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)
    c.load_model("ens_a")
    assert c.is_model_ready("ens_a") and c.is_model_ready("m1")


def test_unload_dependents_on_a_plain_model_changes_nothing(server):
    """"On a plain model the parameter changes nothing": m3 goes, ens_c
    (which uses it) stays known, UNAVAILABLE, and comes back with m3."""
    c = http(server)
    c.load_model("ens_c")
    _unload(server, "m3", True)
    assert _state(server, "m3") == "UNAVAILABLE"
    entry = index(server)["ens_c"]
    assert entry["state"] == "UNAVAILABLE" and "composing model 'm3'" in entry["reason"], entry
    assert _state(server, "add") == "READY"
    c.load_model("m3")
    assert c.is_model_ready("ens_c")


def test_unload_dependents_over_grpc_keeps_shared_models(server):
    """The gRPC form (`bool_param unload_dependents`), with the same rule:
    m2, used by ens_b, stays."""
    g = grpc(server)
    g.load_model("ens_a")
    g.unload_model("ens_a", unload_dependents=True)
    states = {m.name: m.state for m in g.get_model_repository_index().models}
    assert (states["ens_a"], states["m1"], states["m2"]) == ("UNAVAILABLE", "UNAVAILABLE", "READY"), states
    g.load_model("ens_a")
    assert g.is_model_ready("ens_a")


def test_a_composing_model_that_disappears_mid_request_gives_503(server):
    """"A composing model that disappeared mid-request gives 503":
    e_slow_then runs py_sleep (0.5 s) then m4; m4 is unloaded while the
    first step runs. The server serves on once m4 is back."""
    c = http(server)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(c.infer("e_slow_then", inputs(httpclient, X=x)).as_numpy("out"), 4 * x)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(infer_json, server, "e_slow_then", {"X": x})
        time.sleep(0.2)
        c.unload_model("m4")
        r = pending.result()
    try:
        assert r.status_code == 503, r.text
        assert "ensemble 'e_slow_then' step 1 (model 'm4') failed" in r.json()["error"], r.text
    finally:
        c.load_model("m4")
    np.testing.assert_allclose(c.infer("e_slow_then", inputs(httpclient, X=x)).as_numpy("out"), 4 * x)


# ---------------------------------------------------------------- validation at load


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_ensemble_is_unavailable_with_its_reason(server, name):
    """Validation at load: "Every problem is reported in one message, each
    naming the step, model and tensor; the ensemble is then UNAVAILABLE with
    that reason in `POST /v2/repository/index`, and everything else keeps
    serving" (the table's messages; the fields refused on an ensemble;
    SERVING.md's reshape; a nested ensemble pinned to a version; a streaming
    ensemble as a step)."""
    entry = index(server)[name]
    assert entry.get("state") == "UNAVAILABLE", entry
    for words in BROKEN[name][1]:
        assert words in entry.get("reason", ""), (words, entry)
    r = infer_json(server, name, dict(zip("xy", rng_xy(18))))
    assert r.status_code in (400, 404, 503), r.text
    x, y = rng_xy(18)
    np.testing.assert_allclose(http(server).infer("chain", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + 2 * y, rtol=1e-6)


def test_all_problems_in_one_message(server):
    """"Every problem is reported in one message": bad_many has three."""
    reason = index(server)["bad_many"]["reason"]
    assert "(1)" in reason and "(2)" in reason and "(3)" in reason, reason


# ---------------------------------------------------------------- a decoupled step: the ensemble streams


def stream_run(server, n, **kw):
    """One e_stream request of n tokens on its own gRPC stream: the
    (result, error) pairs until the final one (or 0.5 s of silence)."""
    c = grpc(server)
    got = queue.Queue()
    c.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        c.async_stream_infer("e_stream", inputs(grpcclient, X=np.array([n], np.int32)), **kw)
        out = []
        while True:
            try:
                result, error = got.get(timeout=0.5 if not kw.get("enable_empty_final_response") else 20)
            except queue.Empty:
                break
            out.append((result, error))
            if error is not None:
                break
            p = result.get_response().parameters.get("triton_final_response")
            if p is not None and p.bool_param:
                break
        return out
    finally:
        c.stop_stream()


def test_the_streaming_ensemble_sends_one_response_per_token_then_an_empty_final(server):
    """"the steps its responses feed run once per response, each round sent
    to the client as one response with the ensemble's outputs"; "The step's
    final flag alone ends the ensemble's stream with an empty final response
    (sent only when the client asked for empty final responses)"."""
    out = stream_run(server, 4, enable_empty_final_response=True)
    assert all(e is None for _, e in out), out
    values = [r.as_numpy("V") for r, _ in out[:-1]]
    np.testing.assert_allclose(np.concatenate(values), np.arange(4, dtype=np.float32) * 2.5)
    last = out[-1][0].get_response()
    assert not last.outputs and last.parameters["triton_final_response"].bool_param, last


def test_without_empty_final_responses_only_the_rounds_come(server):
    """"... sent only when the client asked for empty final responses": the
    client gets the 3 rounds and nothing else."""
    out = stream_run(server, 3)
    assert all(e is None for _, e in out), out
    assert len(out) == 3, [r.get_response() for r, _ in out]
    np.testing.assert_allclose(np.concatenate([r.as_numpy("V") for r, _ in out]), np.arange(3, dtype=np.float32) * 2.5)


def test_a_streaming_ensemble_counts_once_and_never_uses_the_cache(server):
    """"The request counts once in the ensemble's statistics, when it ends.
    The response cache is not used for such an ensemble" (e_stream enables
    it, and sets max_inflight_requests, which "is accepted")."""
    before = stats(server, "e_stream")["inference_stats"]
    gen_before = success(server, "gen")
    for _ in range(2):
        out = stream_run(server, 3, enable_empty_final_response=True)
        assert len(out) == 4 and all(e is None for _, e in out), out
    after = stats(server, "e_stream")["inference_stats"]
    assert after["success"]["count"] - before["success"]["count"] == 2, (before, after)
    assert after["cache_hit"]["count"] == before["cache_hit"]["count"] == 0
    assert success(server, "gen") - gen_before == 2


def test_generate_stream_on_the_streaming_ensemble(server):
    """HTTP `generate_stream` answers a streaming ensemble, one event per
    token; `/infer` is refused with 501, saying to use a stream."""
    r = requests.post(f"http://{server['HTTP']}/v2/models/e_stream/generate_stream", json={"X": [5]}, timeout=30)
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    got = np.array([e["V"] if not isinstance(e["V"], list) else e["V"][0] for e in events], np.float32)
    np.testing.assert_allclose(got, np.arange(5, dtype=np.float32) * 2.5)
    r = infer_json(server, "e_stream", {"X": np.array([2], np.int32)})
    assert r.status_code == 501 and "stream" in r.json()["error"], r.text


# ---------------------------------------------------------------- more of the request path


def test_the_outputs_asked_for_and_the_request_id(server):
    """A request asking for one of the ensemble's outputs gets that one (S
    is read by a step too, so the step must still get it); the request's
    `id` comes back, as from a model."""
    x, y = rng_xy(19)
    body = {"id": "req-7", "inputs": [{"name": n, "shape": [2, 4], "datatype": "FP32", "data": a.flatten().tolist()}
                                      for n, a in (("x", x), ("y", y))],
            "outputs": [{"name": "out"}]}
    r = requests.post(f"http://{server['HTTP']}/v2/models/fan/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc.get("id") == "req-7", doc
    assert [o["name"] for o in doc["outputs"]] == ["out"], doc
    got = np.array(doc["outputs"][0]["data"], np.float32).reshape(2, 4)
    np.testing.assert_allclose(got, (x + y) ** 2 + (x - y) ** 2, rtol=1e-5)
    body["outputs"] = [{"name": "S"}]
    doc = requests.post(f"http://{server['HTTP']}/v2/models/fan/infer", json=body, timeout=30).json()
    assert [o["name"] for o in doc["outputs"]] == ["S"], doc
    np.testing.assert_allclose(np.array(doc["outputs"][0]["data"], np.float32).reshape(2, 4), x + y, rtol=1e-6)


def test_a_nested_ensemble_counts_in_its_own_statistics(server):
    """"an ensemble request is one request to each step's model": the inner
    ensemble `chain`, a step of a_nested, counts one request per call, and
    its model `add` two."""
    before = (success(server, "a_nested"), success(server, "chain"), success(server, "add"))
    x, y = rng_xy(20)
    http(server).infer("a_nested", inputs(httpclient, x=x, y=y))
    after = (success(server, "a_nested"), success(server, "chain"), success(server, "add"))
    assert tuple(a - b for a, b in zip(after, before)) == (1, 1, 2), (before, after)


def test_an_unbatched_ensemble_over_a_batched_step(server):
    """With max_batch_size 0 the ensemble's dims are whole shapes; a [3, 4]
    tensor feeds add's [batch, 4] (-1 and named dimensions match any size)."""
    x, y = rng_xy(21, batch=3)
    np.testing.assert_allclose(http(server).infer("e_unbatched", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)
    r = infer_json(server, "e_unbatched", {"x": np.zeros((2, 4), np.float32), "y": np.zeros((2, 4), np.float32)})
    assert r.status_code == 400, r.text


def test_a_plain_ensemble_on_a_grpc_stream_answers_once(server):
    """A non-decoupled ensemble asked on gRPC ModelStreamInfer gives one
    response, as a model does."""
    c = grpc(server)
    got = queue.Queue()
    c.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        x, y = rng_xy(22)
        c.async_stream_infer("chain", inputs(grpcclient, x=x, y=y))
        result, error = got.get(timeout=20)
        assert error is None, error
        np.testing.assert_allclose(result.as_numpy("out"), x + 2 * y, rtol=1e-6)
        with pytest.raises(queue.Empty):
            got.get(timeout=0.3)
    finally:
        c.stop_stream()


def test_the_config_endpoint_shows_the_ensemble_scheduling(server):
    """The ensemble's config, as Triton's model config endpoint gives it:
    platform `ensemble` and its steps with their maps."""
    config = http(server).get_model_config("chain")
    assert config["platform"] == "ensemble" and config["max_batch_size"] == 8, config
    steps = config["ensemble_scheduling"]["step"]
    assert [(s["model_name"], s["model_version"], s["input_map"], s["output_map"]) for s in steps] == [
        ("add", -1, {"x": "x", "y": "y"}, {"sum": "s"}), ("add", -1, {"x": "s", "y": "y"}, {"sum": "out"})], steps


def test_a_request_while_the_ensemble_loads_is_refused_never_wrong(server):
    """"A request that arrives while an ensemble is loading gets 503 (`is
    loading`) or, before the load began, 404 (`Request for unknown model: 'm'
    is not found`, Triton's words); never a wrong answer": ens_slow's model
    takes 1.5 s to initialise; requests sent meanwhile."""
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    seen = []
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(requests.post, f"http://{server['HTTP']}/v2/repository/models/ens_slow/load", json={},
                              timeout=60)
        while not loading.done():
            r = infer_json(server, "ens_slow", {"X": x})
            seen.append((r.status_code, r.text))
            time.sleep(0.05)
        assert loading.result().status_code == 200, loading.result().text
    r = infer_json(server, "ens_slow", {"X": x})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32), x.flatten() ** 2)
    codes = {code for code, _ in seen}
    assert codes <= {200, 404, 503}, seen
    for code, text in seen:
        if code == 404:
            assert "Request for unknown model: 'ens_slow' is not found" in text, text
        if code == 503:
            assert "is loading" in text, text
        if code == 200:
            np.testing.assert_allclose(np.array(json.loads(text)["outputs"][0]["data"], np.float32), x.flatten() ** 2)
    assert 503 in codes, seen


# ---------------------------------------------------------------- a decoupled step faster than the steps after it

BURST = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.cancelled = 0

    def execute(self, requests):
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "X").as_numpy()[0])
            sender = r.get_response_sender()
            for i in range(n):
                if sender.is_cancelled():
                    break
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("T", np.full(1024, i, np.float32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

SLOW_POST = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.02)
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "V", np.array([pb_utils.get_input_tensor_by_name(r, "T").as_numpy().sum()], np.float32))]) for r in requests]
'''


@pytest.fixture(scope="module")
def burst_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("ensembles_burst")
    python_model(repo, "burst", """backend: "python"
model_transaction_policy { decoupled: true }
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "T" data_type: TYPE_FP32 dims: [ 1024 ] } ]
""", BURST)
    python_model(repo, "slow_post", """backend: "python"
input [ { name: "T" data_type: TYPE_FP32 dims: [ 1024 ] } ]
output [ { name: "V" data_type: TYPE_FP32 dims: [ 1 ] } ]
""", SLOW_POST)
    # Loaded at start in mode none: an ensemble over an ensemble named after it.
    onnx_model(repo, "add", ADD_CONFIG, add_model)
    write(repo, "a_outer", ensemble(XY, [("out", *F4)], [step("z_inner", ADD_XY, {"out": "o"}), step("add", {"x": "o", "y": "y"}, {"sum": "out"})]))
    write(repo, "z_inner", ensemble(XY, [("out", *F4)], [step("add", ADD_XY, {"sum": "out"})]))
    write(repo, "e_burst", ensemble([("X", "TYPE_INT32", [1])], [("V", "TYPE_FP32", [1])], [
        step("burst", {"X": "X"}, {"T": "T"}), step("slow_post", {"T": "T"}, {"V": "V"})], max_batch_size=0))
    proc, addresses = start_serve(repo, "--max-stream-buffer-bytes", "65536")
    try:
        c = httpclient.InferenceServerClient(addresses["HTTP"])
        deadline = time.time() + 60
        while not c.is_model_ready("e_burst"):
            assert time.time() < deadline, "e_burst was not ready within 60 s"
            time.sleep(0.2)
        yield addresses
    finally:
        stop_serve(proc)


def test_a_decoupled_step_faster_than_the_steps_after_it_ends_with_an_overload_naming_them(burst_server):
    """"a step that sends faster than the later steps take its responses
    fills that buffer, and the request then ends with an overload error
    naming the ensemble and the step" (--max-stream-buffer-bytes 64 KiB;
    4 KiB responses, 500 of them, each taking the next step 20 ms). A
    short stream within the buffer streams every round, checked against
    numpy; the server serves on after the overload."""
    c = grpc(burst_server)
    got = queue.Queue()
    c.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        c.async_stream_infer("e_burst", inputs(grpcclient, X=np.array([500], np.int32)))
        rounds, error = 0, None
        while error is None:
            result, error = got.get(timeout=30)
            if error is None:
                assert float(result.as_numpy("V")[0]) == 1024.0 * rounds
                rounds += 1
        assert rounds < 500
        message = str(error)
        assert "ensemble 'e_burst'" in message and "step 0 (model 'burst')" in message, message
        assert "max-stream-buffer-bytes" in message, message
        c.async_stream_infer("e_burst", inputs(grpcclient, X=np.array([3], np.int32)))
        values = [got.get(timeout=30) for _ in range(3)]
        assert all(e is None for _, e in values), values
        assert [float(r.as_numpy("V")[0]) for r, _ in values] == [0.0, 1024.0, 2048.0]
    finally:
        c.stop_stream()


# ---------------------------------------------------------------- an evicted composing model

BIG = 262144  # floats: 1 MiB of weights


def big_model(path, k):
    """y = x + table[:4], the table 1 MiB of k."""
    nodes = [h.make_node("Slice", ["table", "starts", "ends"], ["head"]), h.make_node("Add", ["x", "head"], ["y"])]
    _save(h.make_graph(nodes, "big", [h.make_tensor_value_info("x", T.FLOAT, ["b", 4])],
                       [h.make_tensor_value_info("y", T.FLOAT, ["b", 4])],
                       initializer=[nh.from_array(np.full(BIG, k, np.float32), "table"),
                                    nh.from_array(np.array([0], np.int64), "starts"),
                                    nh.from_array(np.array([4], np.int64), "ends")]), path)


BIG_CONFIG = """max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
parameters { key: "backends" value: { string_value: "onnxruntime" } }
parameters { key: "strict" value: { string_value: "true" } }
"""


@pytest.fixture(scope="module")
def evicting_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("ensembles_evict")
    for name, k in (("big1", 1.0), ("big2", 2.0)):
        onnx_model(repo, name, BIG_CONFIG, lambda p, k=k: big_model(p, k))
    write(repo, "e_big", ensemble(ONE, OUT_Y, [step("big1", {"x": "x"}, {"y": "y"})], extra="response_cache { enable: true }\n"))
    proc, addresses = start_serve(repo, "--memory-budget", "1600KiB", "--eviction", "lru", "--cache-config", "local,size=1MiB",
                                  "--strict-readiness", "false")
    try:
        wait_ready(addresses["HTTP"])
        assert index(addresses)["e_big"]["state"] == "READY", index(addresses)
        yield addresses
    finally:
        stop_serve(proc)


def test_an_evicted_composing_model_keeps_the_ensemble_ready_and_runs_uncached(evicting_server):
    """Readiness: "An ensemble is READY only while every composing model is
    loaded (an evicted one counts: the step's request loads it again)";
    SERVING.md: "an ensemble whose step's model is evicted runs uncached until
    the model is back", and a model loaded again never answers from what the
    one it replaced cached. big1 and big2 (1 MiB each) share a 1600 KiB
    budget: a request for one evicts the other."""
    s = evicting_server
    x = np.random.default_rng(23).standard_normal((1, 4)).astype(np.float32)

    def run():
        r = infer_json(s, "e_big", {"x": x})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(1, 4), x + 1)

    run()
    run()  # a hit now
    base = success(s, "big1")
    run()
    assert success(s, "big1") == base, "a cache hit ran the step"
    r = infer_json(s, "big2", {"x": x})
    assert r.status_code == 200, r.text
    assert index(s)["big1"]["state"] == "UNAVAILABLE" and "evicted" in index(s)["big1"]["reason"], index(s)
    assert index(s)["e_big"]["state"] == "READY", index(s)["e_big"]
    assert requests.get(f"http://{s['HTTP']}/v2/models/e_big/ready", timeout=10).status_code == 200
    run()  # big1 evicted: runs, uncached, loading big1 again
    assert index(s)["big1"]["state"] == "READY"
    assert success(s, "big1") == base + 1
    run()  # a new load of big1: the old answer is not used
    assert success(s, "big1") == base + 2
    run()
    assert success(s, "big1") == base + 2


def test_at_start_up_in_mode_none_ensembles_load_after_the_models_they_use(burst_server):
    """"At start-up (every control mode) plain models load first,
    concurrently, then ensembles": in mode none, a_outer (whose step is the
    ensemble z_inner, named after it) is READY and right: out = (x+y)+y."""
    entry = index(burst_server)["a_outer"]
    assert entry["state"] == "READY", entry
    x, y = rng_xy(24)
    np.testing.assert_allclose(http(burst_server).infer("a_outer", inputs(httpclient, x=x, y=y)).as_numpy("out"),
                               x + 2 * y, rtol=1e-6)


def test_unload_dependents_through_a_nested_ensemble(server):
    """Loading n_outer loads the ensemble n_inner and its model m5 ("first
    loads each composing model that is not loaded", recursively); unloading
    n_outer with unload_dependents takes the models loaded along with it."""
    c = http(server)
    c.load_model("n_outer")
    assert all(c.is_model_ready(m) for m in ("n_outer", "n_inner", "m5"))
    x, y = rng_xy(25)
    np.testing.assert_allclose(c.infer("n_outer", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + y)
    _unload(server, "n_outer", True)
    assert [_state(server, m) for m in ("n_outer", "n_inner", "m5")] == ["UNAVAILABLE"] * 3


def test_an_ensemble_that_contains_itself_is_refused(server):
    """Ensembles must form a DAG across ensembles too: one naming itself,
    and two naming each other, are refused at load, saying so; the server
    serves on."""
    r = requests.post(f"http://{server['HTTP']}/v2/repository/models/e_self/load", json={}, timeout=30)
    assert r.status_code == 400 and "itself" in r.json()["error"], r.text
    r = requests.post(f"http://{server['HTTP']}/v2/repository/models/e_mut1/load", json={}, timeout=30)
    assert r.status_code == 400 and "cycle" in r.json()["error"], r.text
    assert _state(server, "e_self") == "UNAVAILABLE" and _state(server, "e_mut1") == "UNAVAILABLE"
    x, y = rng_xy(26)
    np.testing.assert_allclose(http(server).infer("chain", inputs(httpclient, x=x, y=y)).as_numpy("out"), x + 2 * y, rtol=1e-6)


def test_a_decoupled_step_that_sends_nothing_ends_with_the_empty_final_alone(server):
    """A generator of no tokens: the stream is the empty final response
    alone (asked for), and the request still counts once."""
    before = success(server, "e_stream")
    out = stream_run(server, 0, enable_empty_final_response=True)
    assert len(out) == 1 and out[0][1] is None, out
    last = out[0][0].get_response()
    assert not last.outputs and last.parameters["triton_final_response"].bool_param, last
    assert success(server, "e_stream") == before + 1


def test_an_error_from_the_decoupled_step_ends_the_stream_with_it(server):
    """"A round that fails ends the request with that step's error": the
    decoupled step's own error response, named as step 0 (model 'gen');
    the next stream works."""
    out = stream_run(server, -1, enable_empty_final_response=True)
    assert out and out[-1][1] is not None, out
    message = str(out[-1][1])
    assert "ensemble 'e_stream' step 0 (model 'gen')" in message and "no negative lengths" in message, message
    out = stream_run(server, 2, enable_empty_final_response=True)
    np.testing.assert_allclose(np.concatenate([r.as_numpy("V") for r, _ in out[:-1]]), [0.0, 2.5])


def test_loading_a_loaded_ensemble_loads_its_unloaded_composing_model(server):
    """"Loading an ensemble (... with `POST
    /v2/repository/models/{ensemble}/load` in explicit mode) first loads each
    composing model that is not loaded": ens_a is loaded, m1 (its step 0)
    was unloaded; loading ens_a must bring m1 back, or not answer 200."""
    c = http(server)
    c.load_model("ens_a")
    c.unload_model("m1")
    try:
        assert _state(server, "ens_a") == "UNAVAILABLE"
        r = requests.post(f"http://{server['HTTP']}/v2/repository/models/ens_a/load", json={}, timeout=30)
        assert r.status_code == 200, r.text
        assert _state(server, "m1") == "READY", index(server)["m1"]
        assert _state(server, "ens_a") == "READY", index(server)["ens_a"]
    finally:
        c.load_model("m1")
    assert c.is_model_ready("ens_a")


def test_an_ensemble_is_checked_again_when_a_composing_model_changes(server):
    """"The ensemble is checked against the composing models as loaded":
    py_r (Y = X) is loaded again as Z = X, so e_r's output_map {Y: Y} no
    longer matches it. e_r must then not be READY (the validation message:
    "output_map names output 'Y', which the model does not have"), and a
    request is not the client's fault."""
    c = http(server)
    c.load_model("e_r")
    x = np.random.default_rng(27).standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_allclose(c.infer("e_r", inputs(httpclient, X=x)).as_numpy("Y"), x)
    repo = server["repo"]
    (repo / "py_r" / "config.pbtxt").write_text(PY_1IO.replace('"Y"', '"Z"'))
    (repo / "py_r" / "1" / "model.py").write_text(PY_IDENT.replace('"Y"', '"Z"'))
    c.load_model("py_r")
    np.testing.assert_allclose(c.infer("py_r", inputs(httpclient, X=x)).as_numpy("Z"), x)
    r = infer_json(server, "e_r", {"X": x})
    assert r.status_code != 400, r.text
    entry = index(server)["e_r"]
    assert entry["state"] != "READY" and "output 'Y'" in entry.get("reason", ""), entry
