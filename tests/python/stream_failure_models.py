"""Python models for test_stream_failures.py (model.py sources and configs).

The streaming ensemble `pipe` is pre (once) -> gen (decoupled) -> post (per
response). TEXT reaches gen unchanged as IDS = [mode, tag, tokens...]:
mode picks what gen does, and a tag other than 0 has gen write one line per
response it sends (and `cancelled` when it saw its client gone, `final`
when it ended) to `<side>/gen-<tag>.log`, a side channel the tests read.
"""

# IDS = TEXT; a 666 in TEXT raises, a 667 answers an INVALID_ARG error.
PRE = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            if (x == 666).any():
                raise ValueError("pre cannot read 666")
            if (x == 667).any():
                out.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("pre refuses 667", pb_utils.TritonError.INVALID_ARG)))
                continue
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("IDS", x.astype(np.int32))]))
        return out
'''

PRE_CONFIG = """
name: "pre"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "IDS" data_type: TYPE_INT32 dims: [ -1 ] } ]
"""

# Modes: 0 one response per token; 1 three tokens, then an error response,
# then the final flag; 2 three tokens sent from execute(), which then
# raises; 3 one token per 20 ms until request.is_cancelled(); 4 (flood)
# tokens[0] responses of 16,384 INT32 (64 KiB, the first value the index),
# tokens[1] ms apart (0: as fast as it can), until sender.is_cancelled().
GEN = '''
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

SIDE = @SIDE@
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def tok(values):
    return pb_utils.InferenceResponse([pb_utils.Tensor("TOK", np.asarray(values, np.int32).reshape(-1))])


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "IDS").as_numpy().astype(np.int64)
            mode, tag, tokens = int(ids[0]), int(ids[1]), [int(t) for t in ids[2:]]
            sender = request.get_response_sender()
            if mode == 2:
                for t in tokens[:3]:
                    sender.send(tok([t]))
                raise RuntimeError("gen raised after 3 tokens")
            threading.Thread(target=self.run, args=(request, sender, mode, tag, tokens)).start()
        return None

    def run(self, request, sender, mode, tag, tokens):
        log = open(os.path.join(SIDE, f"gen-{tag}.log"), "a", buffering=1) if tag else None

        def note(line):
            if log is not None:
                log.write(line + "\\n")

        if mode == 1:
            for t in tokens[:3]:
                sender.send(tok([t]))
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("gen failed after 3 tokens")))
            sender.send(flags=FINAL)
            return
        if mode == 4:
            block = np.zeros(16384, np.int32)
            for i in range(tokens[0]):
                time.sleep(tokens[1] / 1000)
                if sender.is_cancelled():
                    note("cancelled")
                    break
                block[0] = i
                sender.send(tok(block.copy()))
                note("sent")
        else:
            for t in tokens:
                if mode == 3:
                    time.sleep(0.02)
                if request.is_cancelled():
                    note("cancelled")
                    break
                sender.send(tok([t]))
                note("sent")
        sender.send(flags=FINAL)
        note("final")
'''

GEN_CONFIG = """
name: "@NAME@"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IDS" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "TOK" data_type: TYPE_INT32 dims: [ -1 ] } ]
"""

# OUT = 2 * TOK; a token 13 (alone) raises.
POST = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            t = pb_utils.get_input_tensor_by_name(r, "TOK").as_numpy()
            if t.size == 1 and t[0] == 13:
                raise ValueError("post cannot take 13")
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", t * 2)]))
        return out
'''

POST_CONFIG = """
name: "post"
backend: "python"
max_batch_size: 0
input [ { name: "TOK" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] } ]
"""

PIPE_CONFIG = """
name: "pipe"
platform: "ensemble"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "pre" model_version: -1 input_map { key: "TEXT" value: "TEXT" } output_map { key: "IDS" value: "ids" } },
  { model_name: "gen" model_version: -1 input_map { key: "IDS" value: "ids" } output_map { key: "TOK" value: "tok" } },
  { model_name: "post" model_version: -1 input_map { key: "TOK" value: "tok" } output_map { key: "OUT" value: "OUT" } }
] }
"""

# Not decoupled. CMD is JSON: {"target", "input", "output", "values",
# "decoupled" (default true: exec(decoupled=True), else exec()), "fail"
# (answer the first error as this request's error)}. REPORT is JSON:
# {"responses": [{"out": [...]} | {"empty": true} | {"error": [code, msg]}],
# "exception": "Type: message" when exec or the iteration raised}.
CALLER = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def describe(response, output):
    if response.has_error():
        return {"error": [response.error().code(), response.error().message()]}
    t = pb_utils.get_output_tensor_by_name(response, output)
    return {"empty": True} if t is None else {"out": t.as_numpy().tolist()}


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            cmd = json.loads(pb_utils.get_input_tensor_by_name(r, "CMD").as_numpy()[0])
            report = {"responses": []}
            try:
                call = pb_utils.InferenceRequest(
                    model_name=cmd["target"], inputs=[pb_utils.Tensor(cmd["input"], np.array(cmd["values"], np.int32))],
                    requested_output_names=[cmd["output"]])
                if cmd.get("decoupled", True):
                    for response in call.exec(decoupled=True):
                        report["responses"].append(describe(response, cmd["output"]))
                else:
                    report["responses"].append(describe(call.exec(), cmd["output"]))
            except Exception as e:
                report["exception"] = f"{type(e).__name__}: {e}"
            errors = [x["error"][1] for x in report["responses"] if "error" in x] + [report.get("exception")]
            if cmd.get("fail") and any(errors):
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(next(e for e in errors if e))))
                continue
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("REPORT", np.array([json.dumps(report).encode()], np.object_))]))
        return out
'''

CALLER_CONFIG = """
name: "caller"
backend: "python"
max_batch_size: 0
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "REPORT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

# Not decoupled; its families are named after the model (`<model>_desc`...).
# CMD: `desc` (a family with a 2 MB description), `label`
# (a series with a 2 MB label value), `label_name` (a 2 MB label name),
# `escape` (a description and a label value with a newline, a quote and a
# backslash). Each keeps its family alive and answers {"ok": value} or
# {"error": "Type: message"}.
BIG_METRICS = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils

BIG = 2 * 1024 * 1024
ODD = 'a"b\\\\c\\nd'


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        self.kept = []

    def declare(self, cmd):
        counter = pb_utils.MetricFamily.COUNTER
        if cmd == "desc":
            family = pb_utils.MetricFamily(name=self.name + "_desc", description="d" * BIG, kind=counter)
            labels = {"k": "v"}
        elif cmd == "label":
            family = pb_utils.MetricFamily(name=self.name + "_label", description="big label value", kind=counter)
            labels = {"k": "v" * BIG}
        elif cmd == "label_name":
            family = pb_utils.MetricFamily(name=self.name + "_label_name", description="big label name", kind=counter)
            labels = {"k" * BIG: "v"}
        else:
            family = pb_utils.MetricFamily(name=self.name + "_escape", description="line one\\nline " + ODD, kind=counter)
            labels = {"k": ODD}
        metric = family.Metric(labels=labels)
        metric.increment(3)
        self.kept.append((family, metric))
        return metric.value()

    def execute(self, requests):
        out = []
        for r in requests:
            cmd = pb_utils.get_input_tensor_by_name(r, "CMD").as_numpy()[0].decode()
            try:
                answer = {"ok": self.declare(cmd)}
            except Exception as e:
                answer = {"error": f"{type(e).__name__}: {e}"[:2000]}
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([json.dumps(answer).encode()], np.object_))]))
        return out
'''

BIG_METRICS_CONFIG = """
name: "@NAME@"
backend: "python"
max_batch_size: 0
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

# Not decoupled: initialize() takes 0.5 s, and each request is answered
# through its response sender from a thread 0.5 s after execute() returned
# (Y = X + 1): both well inside the documented defaults (600 s, 60 s), and
# both failing if a bad setting were read as 0.
WAITER = '''
import threading
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(0.5)

    def execute(self, requests):
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            answer = pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 1)])
            sender = r.get_response_sender()
            threading.Thread(target=lambda s=sender, a=answer: (
                time.sleep(0.5), s.send(a, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL))).start()
        return None
'''

WAITER_CONFIG = """
name: "waiter"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
