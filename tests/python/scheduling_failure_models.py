"""Python models for test_scheduling_failures.py (model.py sources and configs).

WORK is the rate limiter's work horse: each request's X is [seconds, tag];
execute() appends "<tag> <start time>" to `<side>/<model>.log` for every
request it got, sleeps the longest of their seconds, and answers each with
Y = [start, end, requests in this execute() call]. At the end, the test's
thread and process helpers.
"""
import os
import subprocess
import threading

WORK = '''
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

SIDE = @SIDE@


class TritonPythonModel:
    def initialize(self, args):
        self.log = os.path.join(SIDE, args["model_name"] + ".log")

    def execute(self, requests):
        start = time.time()
        xs = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy().reshape(-1) for r in requests]
        with open(self.log, "a") as f:
            for x in xs:
                f.write(f"{int(x[1])} {start}\\n")
        time.sleep(max(float(x[0]) for x in xs))
        y = np.array([[start, time.time(), len(requests)]], np.float64)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]) for _ in requests]
'''

# Decoupled: three responses, each Y = [start, now, index], then the final flag.
STREAM = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        start = time.time()
        for r in requests:
            sender = r.get_response_sender()
            for i in range(3):
                time.sleep(0.02)
                y = np.array([[start, time.time(), i]], np.float64)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''


def work_config(rate_limiter="", extra="", count=1, decoupled=False):
    policy = "model_transaction_policy { decoupled: true }\n" if decoupled else ""
    return f"""
backend: "python"
max_batch_size: 8
input [ {{ name: "X" data_type: TYPE_FP64 dims: [ 2 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP64 dims: [ 3 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU {rate_limiter} }} ]
{extra}
{policy}"""


def limiter(*resources, priority=None):
    """A rate_limiter block: each resource (name, count) or (name, count, global)."""
    items = ", ".join(
        f'{{ name: "{r[0]}" count: {r[1]}{" global: true" if len(r) > 2 and r[2] else ""} }}' for r in resources
    )
    prio = f" priority: {priority}" if priority is not None else ""
    return f"rate_limiter {{ resources [ {items} ]{prio} }}"


# Runs the command in CMD (JSON) and answers what came of it in OUT (JSON);
# a TritonModelException (or any exception) is answered as {"error": ...}.
MANAGER = '''
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

SIDE = @SIDE@


def later(name):
    # Called from a thread of the model's after execute() returned.
    time.sleep(0.3)
    try:
        pb_utils.load_model(name)
        line = f"ok {pb_utils.is_model_ready(name)}"
    except Exception as e:
        line = f"error {type(e).__name__}: {e}"
    with open(os.path.join(SIDE, "thread.log"), "a") as f:
        f.write(line + "\\n")


class TritonPythonModel:
    def run(self, cmd):
        if "ready" in cmd:
            return {"ready": pb_utils.is_model_ready(cmd["ready"], cmd.get("version", ""))}
        if "load" in cmd:
            pb_utils.load_model(cmd["load"], config=cmd.get("config", ""))
            return {"ok": True}
        if "unload" in cmd:
            pb_utils.unload_model(cmd["unload"], unload_dependents=cmd.get("deps", False))
            return {"ok": True}
        if "thread" in cmd:
            threading.Thread(target=later, args=(cmd["thread"],)).start()
            return {"ok": True}
        if "exec" in cmd:
            a = np.array([1, 2, 3, 4], np.float32)
            b = np.array([10, 20, 30, 40], np.float32)
            response = pb_utils.InferenceRequest(
                model_name=cmd["exec"], inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)],
                requested_output_names=["OUTPUT0"],
            ).exec()
            if response.has_error():
                return {"error": response.error().message()}
            return {"out": pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy().tolist()}
        raise ValueError(f"unknown command {cmd}")

    def execute(self, requests):
        out = []
        for r in requests:
            cmd = json.loads(pb_utils.get_input_tensor_by_name(r, "CMD").as_numpy()[0])
            try:
                answer = self.run(cmd)
            except Exception as e:
                answer = {"error": f"{type(e).__name__}: {e}"}
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([json.dumps(answer).encode()], np.object_)),
            ]))
        return out
'''

MANAGER_CONFIG = """
backend: "python"
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

ADD_IO = """
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

ENSEMBLE_CONFIG = """
platform: "ensemble"
max_batch_size: 0
""" + ADD_IO + """
ensemble_scheduling { step [ {
  model_name: "add_sub" model_version: -1
  input_map { key: "INPUT0" value: "INPUT0" } input_map { key: "INPUT1" value: "INPUT1" }
  output_map { key: "OUTPUT0" value: "OUTPUT0" } output_map { key: "OUTPUT1" value: "OUTPUT1" }
} ] }
"""

BROKEN = '''
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("broken on purpose 7731")

    def execute(self, requests):
        return []
'''

# add_sub that takes 1 s to initialize (appending to <side>/slowadd-init.log)
# and 1 s to answer.
SLOWADD = '''
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

SIDE = @SIDE@


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(1.0)
        with open(os.path.join(SIDE, "slowadd-init.log"), "a") as f:
            f.write("init\\n")

    def execute(self, requests):
        time.sleep(1.0)
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]))
        return out
'''

# Unloads add_sub in finalize(), writing what came of it to <side>/finalize.log.
FINALIZER = '''
import os

import numpy as np
import triton_python_backend_utils as pb_utils

SIDE = @SIDE@


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.zeros(1, np.float32))]) for _ in requests]

    def finalize(self):
        try:
            pb_utils.unload_model("add_sub")
            line = f"ok {pb_utils.is_model_ready('add_sub')}"
        except Exception as e:
            line = f"error {type(e).__name__}: {e}"
        with open(os.path.join(SIDE, "finalize.log"), "a") as f:
            f.write(line + "\\n")
'''

FINALIZER_CONFIG = """
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

# Decoupled: loads the model NAME names, answers OUT (JSON) and the final flag.
DLOADER = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            name = pb_utils.get_input_tensor_by_name(r, "NAME").as_numpy().reshape(-1)[0].decode()
            try:
                pb_utils.load_model(name)
                answer = {"ok": True, "ready": pb_utils.is_model_ready(name)}
            except Exception as e:
                answer = {"error": f"{type(e).__name__}: {e}"}
            out = np.array([json.dumps(answer).encode()], np.object_)
            r.get_response_sender().send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]),
                                         flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

DLOADER_CONFIG = """
backend: "python"
input [ { name: "NAME" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
model_transaction_policy { decoupled: true }
"""

# Runs CMD (JSON): a list of steps, each {"sleep": s} or a call {"model",
# "value", "corr"?, "flags"? (names: START, END), "output"?}; answers the
# list of the calls' results ({"out": v} | {"error": msg} | {"raised": msg}).
SEQCALLER = '''
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FLAGS = {"START": pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
         "END": pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END}


class TritonPythonModel:
    def call(self, step):
        kw = {}
        if "corr" in step:
            kw["correlation_id"] = step["corr"]
        if "flags" in step:
            kw["flags"] = sum(FLAGS[f] for f in step["flags"])
        output = step.get("output", "OUTPUT")
        try:
            response = pb_utils.InferenceRequest(
                model_name=step["model"], inputs=[pb_utils.Tensor("INPUT", np.array([[step["value"]]], np.int32))],
                requested_output_names=[output], **kw).exec()
        except Exception as e:
            return {"raised": f"{type(e).__name__}: {e}"}
        if response.has_error():
            return {"error": response.error().message()}
        value = pb_utils.get_output_tensor_by_name(response, output).as_numpy().reshape(-1)[0]
        return {"out": value.decode() if isinstance(value, bytes) else int(value)}

    def execute(self, requests):
        out = []
        for r in requests:
            results = []
            for step in json.loads(pb_utils.get_input_tensor_by_name(r, "CMD").as_numpy()[0]):
                if "sleep" in step:
                    time.sleep(step["sleep"])
                else:
                    results.append(self.call(step))
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([json.dumps(results).encode()], np.object_)),
            ]))
        return out
'''

SEQCALLER_CONFIG = """
backend: "python"
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 4 kind: KIND_CPU } ]
"""

# A Python sequence model whose CORRID control is a string: answers what it
# saw of each request (JSON in OUT).
STRSEQ = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def first(r, name):
    t = pb_utils.get_input_tensor_by_name(r, name)
    if t is None:
        return None
    v = t.as_numpy().reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else v.item()


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            seen = {"cid": r.correlation_id(), "flags": r.flags(), "CORRID": first(r, "CORRID"),
                    "START": first(r, "START"), "END": first(r, "END"), "INPUT": first(r, "INPUT")}
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([[json.dumps(seen).encode()]], np.object_)),
            ]))
        return out
'''

STRSEQ_CONFIG = """
backend: "python"
max_batch_size: 4
sequence_batching {
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }
  ]
}
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""


def in_thread(fn, *args):
    """Runs fn(*args) on a thread; returns (thread, box) where box gets 'ok' or 'error'."""
    box = {}

    def run():
        try:
            box["ok"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - asserted on
            box["error"] = e
        finally:
            close_clients()
    (t := threading.Thread(target=run, daemon=True)).start()
    return t, box


def joined(*threads, seconds=30):
    for t in threads:
        t.join(timeout=seconds)
        assert not t.is_alive(), f"a request did not end within {seconds} s (hang)"


def serve_briefly(binary, repo, *flags, env=None, seconds=20):
    """`binary serve` on `repo`: (exit status, stderr), or None if it kept running."""
    cmd = [str(binary), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
           "--metrics-port", "0", *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        _, err = proc.communicate(timeout=seconds)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None


import numpy as np  # noqa: E402 - the clients' helpers below
import tritonclient.http as httpclient  # noqa: E402


# tritonclient's HTTP client must be closed on the thread that made it: one
# closed by the garbage collector on another thread warns (gevent). Each
# thread's clients are kept here and closed by close_clients(), which
# in_thread runs as its thread ends and the tests run after each test.
_clients = threading.local()


def _client(addresses, timeout):
    return httpclient.InferenceServerClient(addresses["HTTP"], connection_timeout=timeout, network_timeout=timeout)


def http_client(addresses, timeout=30):
    client = _client(addresses, timeout)
    _clients.__dict__.setdefault("open", []).append(client)
    return client


def close_clients():
    """Closes the clients http_client made on this thread."""
    for client in _clients.__dict__.pop("open", []):
        client.close()


def work(addresses, model, seconds=0.0, tag=0, timeout=30, **kw):
    x = httpclient.InferInput("X", [1, 2], "FP64")
    x.set_data_from_numpy(np.array([[seconds, tag]], np.float64))
    client = _client(addresses, timeout)  # closed here, on its own thread
    try:
        return client.infer(model, [x], **kw).as_numpy("Y")[0]
    finally:
        client.close()
