"""The Python backend's `triton_python_backend_utils` (pb_utils) API, read side
by side with tritonserver 2.51 (CPU build, Python backend) on the same
repository of small Python models.

The models report what they observe of the API (as a JSON string output, or
as the status their answer gets), so the tests read pb_utils through the
server as a model author meets it: Tensor, the request's accessors,
InferenceResponse, TritonError codes and the status each gives the client,
TritonModelException, Logger, the dtype and config helpers, ModelConfig in
auto_complete_config, initialize's args, finalize, module globals between
instances, and execute returning the wrong types.

Each test runs anemone only (CI has no Triton); its docstring says what
tritonserver 2.51 did with the same model.py (read off a run of both
servers on 2026-12-05). The model.py files begin with the lines Triton's
Python-backend stub needs to find numpy (TPEER_SP); anemone ignores them.

Where the two differ and docs/SERVING.md or docs/FROM_TRITON.md document
anemone's behaviour, or anemone only takes more than Triton does (a tuple
from execute, a str error), the test checks anemone's behaviour; where they
differ and the docs claim Triton's behaviour or are silent, the test is
marked xfail(strict=True, reason="DEFECT: ...") so it fails loudly once fixed.
"""
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from serve_support import start_serve, stop_serve
from tritonclient.utils import InferenceServerException

PRELUDE = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import numpy as np
import triton_python_backend_utils as pb_utils
import json
'''

# Reports what it sees of pb_utils as one JSON string (OUT); each probe is
# {"ok": repr(value), "type": type name} or {"exc": exception type, "msg": ...}.
API = PRELUDE + r'''

def tr(f):
    try:
        v = f()
        return {"ok": repr(v), "type": type(v).__name__}
    except BaseException as e:
        return {"exc": type(e).__name__, "msg": str(e)[:300]}


class TritonPythonModel:
    def initialize(self, args):
        self.args = {k: v for k, v in args.items() if k != "model_config"}
        self.config = json.loads(args["model_config"])

    def execute(self, requests):
        out = []
        for r in requests:
            d = {"args": self.args}
            x = pb_utils.get_input_tensor_by_name(r, "X")
            d["missing_input"] = tr(lambda: pb_utils.get_input_tensor_by_name(r, "NOPE"))
            d["inputs"] = [t.name() for t in r.inputs()]
            for acc in ["request_id", "correlation_id", "flags", "parameters", "requested_output_names", "timeout"]:
                d["req_" + acc] = tr(lambda: getattr(r, acc)())
            d["bls_timeout"] = tr(lambda: pb_utils.InferenceRequest(
                model_name="m", inputs=[], requested_output_names=[], timeout=7).timeout())
            d["x"] = tr(lambda: (x.name(), x.shape(), x.is_cpu(), x.as_numpy().dtype.str, x.as_numpy().tolist()))
            d["dlpack"] = tr(lambda: pb_utils.Tensor.from_dlpack("Z", x.to_dlpack()).as_numpy().tolist())
            d["dlpack_name"] = tr(lambda: pb_utils.Tensor.from_dlpack("Z", x.to_dlpack()).name())
            d["np_from_dlpack"] = tr(lambda: np.from_dlpack(x).tolist())
            d["object_to_dlpack"] = tr(lambda: pb_utils.Tensor("T", np.array([b"a"], object)).to_dlpack())
            cons = {}
            for dt in ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
                       "float16", "float32", "float64"]:
                def mk(dt=dt):
                    a = (np.arange(6) % 3).astype(dt).reshape(2, 3)
                    t = pb_utils.Tensor("T", a)
                    return (t.name(), t.shape(), t.is_cpu(), t.as_numpy().dtype.str, t.as_numpy().tolist())
                cons[dt] = tr(mk)
            cons["object"] = tr(lambda: (lambda t: (t.shape(), t.as_numpy().tolist()))(
                pb_utils.Tensor("T", np.array([b"ab", b"", b"\x00\xff"], dtype=object))))
            d["construct"] = cons
            d["construct_complex"] = tr(lambda: pb_utils.Tensor("T", np.zeros(2, np.complex64)))
            d["n2t"] = {k: tr(lambda k=k: pb_utils.numpy_to_triton_type(getattr(np, k))) for k in
                        ["bool_", "uint8", "int32", "float16", "float32", "float64", "object_", "bytes_"]}
            d["t2n"] = {str(k): tr(lambda k=k: np.dtype(pb_utils.triton_to_numpy_type(k)).str) for k in [1, 2, 8, 10, 11, 12, 13]}
            d["tsn"] = {s: tr(lambda s=s: np.dtype(pb_utils.triton_string_to_numpy(s)).str) for s in
                        ["TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
                         "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING"]}
            d["ser"] = tr(lambda: pb_utils.serialize_byte_tensor(np.array([b"ab", "c"], dtype=object)))
            d["deser"] = tr(lambda: pb_utils.deserialize_bytes_tensor(b"\x02\x00\x00\x00ab\x01\x00\x00\x00c").tolist())
            d["in_cfg"] = pb_utils.get_input_config_by_name(self.config, "X")
            d["out_cfg"] = pb_utils.get_output_config_by_name(self.config, "OUT")
            d["in_cfg_missing"] = tr(lambda: pb_utils.get_input_config_by_name(self.config, "NOPE"))
            d["out_cfg_missing"] = tr(lambda: pb_utils.get_output_config_by_name(self.config, "NOPE"))
            d["decoupled"] = tr(lambda: pb_utils.using_decoupled_model_transaction_policy(self.config))
            d["consts"] = {n: tr(lambda n=n: getattr(pb_utils, n)) for n in
                           ["TRITONSERVER_REQUEST_FLAG_SEQUENCE_START", "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
                            "TRITONSERVER_RESPONSE_COMPLETE_FINAL", "TRITONSERVER_REQUEST_RELEASE_ALL",
                            "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE", "TRITONSERVER_MEMORY_CPU",
                            "TRITONSERVER_MEMORY_GPU"]}
            d["has"] = {n: hasattr(pb_utils, n) for n in ["PreferredMemory", "TRITON_STRING_TO_NUMPY"]}
            d["req_has"] = {n: hasattr(r, n) for n in ["set_release_flags", "timeout"]}
            d["error_codes"] = {n: int(getattr(pb_utils.TritonError, n)) for n in
                                ["UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED",
                                 "ALREADY_EXISTS", "CANCELLED"]}
            d["error_default"] = tr(lambda: (pb_utils.TritonError("m").message(), int(pb_utils.TritonError("m").code())))
            d["exc"] = tr(lambda: (str(pb_utils.TritonModelException("boom")),
                                   issubclass(pb_utils.TritonModelException, Exception)))
            d["model_dir"] = tr(lambda: pb_utils.get_model_dir())
            d["here"] = os.path.dirname(os.path.abspath(__file__))
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([json.dumps(d)], dtype=object))]))
        return out
'''

API_CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] },
        { name: "OPT" data_type: TYPE_INT32 dims: [ 1 ] optional: true } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] },
         { name: "OTHER" data_type: TYPE_FP32 dims: [ 1 ] } ]
'''

# Every numeric data type and BYTES out, computed from X (INT32).
DTYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]
NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
         "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
         "FP32": np.float32, "FP64": np.float64}
ECHO_TYPES = PRELUDE + r'''
TYPES = %r


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            ts = [pb_utils.Tensor("O_" + t, x.astype(pb_utils.triton_string_to_numpy("TYPE_" + t))) for t in TYPES]
            ts.append(pb_utils.Tensor("O_BYTES", np.array([str(v).encode() for v in x], dtype=object)))
            ts.append(pb_utils.Tensor("O_STR", np.array(["s%%d" %% v for v in x])))
            out.append(pb_utils.InferenceResponse(ts))
        return out
''' % (DTYPES,)
ECHO_TYPES_CONFIG = ('backend: "python"\nmax_batch_size: 0\ninput [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]\n'
                     'output [ ' + ", ".join(f'{{ name: "O_{t}" data_type: TYPE_{t} dims: [ -1 ] }}' for t in DTYPES)
                     + ', { name: "O_BYTES" data_type: TYPE_STRING dims: [ -1 ] }'
                     + ', { name: "O_STR" data_type: TYPE_STRING dims: [ -1 ] } ]\n')

CODES = ["UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED", "ALREADY_EXISTS", "CANCELLED"]

# Y = MODE; MODE picks what execute does (see the branches).
ERRS = PRELUDE + r'''
CODES = %r


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            m = int(pb_utils.get_input_tensor_by_name(r, "MODE").as_numpy()[0])
            y = pb_utils.Tensor("Y", np.array([float(m)], np.float32))
            ok = pb_utils.InferenceResponse([y])
            if m < 8:
                code = getattr(pb_utils.TritonError, CODES[m])
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("code " + CODES[m], code)))
            elif m == 10:
                raise pb_utils.TritonModelException("tme boom")
            elif m == 11:
                raise ValueError("ve boom")
            elif m == 12:
                return None
            elif m == 13:
                return ok
            elif m == 14:
                return []
            elif m == 15:
                return [y]
            elif m == 17:
                return (ok,)
            elif m == 18:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("default code")))
            elif m == 21:
                try:
                    t = pb_utils.Tensor("Y", np.array([1j], np.complex64))
                    out.append(pb_utils.InferenceResponse([t]))
                except pb_utils.TritonModelException as e:
                    out.append(pb_utils.InferenceResponse(
                        error=pb_utils.TritonError("caught: " + str(e), pb_utils.TritonError.INVALID_ARG)))
            elif m == 23:
                return [ok, ok]
            elif m == 27:
                out.append(pb_utils.InferenceResponse([y], parameters={"p": 1, "s": "x"}))
            else:
                out.append(ok)
        return out
''' % (CODES,)
ERRS_CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
'''

# Takes the request's response sender, then returns the response all the same.
SENDER_RETURN = PRELUDE + r'''

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            r.get_response_sender()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + 1)]))
        return out
'''
XY_CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
'''

LOGS = PRELUDE + r'''

class TritonPythonModel:
    def execute(self, requests):
        logger = pb_utils.Logger
        res = {}
        for m in ["log_info", "log_warn", "log_error", "log_verbose"]:
            try:
                getattr(logger, m)("LOGMARK " + m)
                res[m] = "ok"
            except Exception as e:
                res[m] = type(e).__name__
        for lv in ["INFO", "WARNING", "ERROR", "VERBOSE"]:
            try:
                logger.log("LOGMARK log-" + lv, getattr(logger, lv))
                res["log-" + lv] = "ok"
            except Exception as e:
                res["log-" + lv] = type(e).__name__ + ": " + str(e)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([json.dumps(res)], dtype=object))])
                for r in requests]
'''
STR_OUT_CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
'''

# Two instances; each tells its name, pid, its module's call count and what
# its module-level list holds.
INSTANCES = PRELUDE + r'''
import time
CALLS = 0
SHARED = []


class TritonPythonModel:
    def initialize(self, args):
        SHARED.append(args["model_instance_name"])
        self.name = args["model_instance_name"]

    def execute(self, requests):
        global CALLS
        CALLS += 1
        time.sleep(0.2)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array(
            [json.dumps([self.name, os.getpid(), CALLS, list(SHARED)])], dtype=object))]) for r in requests]
'''

# auto_complete_config that runs BODY on the given ModelConfig `c`; Y = 2 X;
# finalize() appends a line to finalized.txt in the model's folder.
def auto_complete(body):
    return PRELUDE + r'''

def _folder():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        c = auto_complete_model_config
''' + "\n".join("        " + line for line in body.strip().splitlines()) + r'''
        return c

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)]) for r in requests]

    def finalize(self):
        with open(os.path.join(_folder(), "finalized.txt"), "a") as f:
            f.write("finalized\n")
'''


FULL = '''c.set_max_batch_size(4)
c.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [-1]})
c.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [-1]})
c.add_input({"name": "OPT", "data_type": "TYPE_INT32", "dims": [1], "optional": True})
c.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]})
c.set_dynamic_batching()
c.set_model_transaction_policy(dict(decoupled=False))'''

# Models whose auto_complete_config raises: (config.pbtxt, body, what
# tritonserver 2.51's ValueError said, words anemone's reason must hold).
AC_FAILURES = {
    "ac_conflict_dims": ('backend: "python"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 3 ] } ]\n', FULL,
                         "model 'ac_conflict_dims', tensor 'X': the model expects dims [-1] but the model "
                         "configuration specifies dims [3]", ["ValueError", "[3]", "[-1]"]),
    "ac_conflict_type": ('backend: "python"\ninput [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]\n', FULL,
                         "configuration expects datatype TYPE_INT32 for input 'X', model provides TYPE_FP32",
                         ["ValueError", "TYPE_INT32", "TYPE_FP32"]),
    "ac_extra_prop": ('backend: "python"\n',
                      'c.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [-1], "format": "FORMAT_NONE"})\n'
                      'c.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]})',
                      "input 'X' ... contains property other than 'name', 'data_type', 'dims' and 'optional'.",
                      ["ValueError", "format"]),
    "ac_dup_dims": ('backend: "python"\n',
                    'c.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [-1]})\n'
                    'c.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})\n'
                    'c.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]})',
                    "tensor 'X': the model expects dims [2] but the model configuration specifies dims [-1]",
                    ["ValueError", "[2]", "[-1]"]),
    "ac_smaller_mbs": ('backend: "python"\nmax_batch_size: 8\n', FULL,
                       "configuration specified max_batch_size 8, but in auto-complete-config function ... "
                       "specified max_batch_size 4", ["ValueError", "8", "4"]),
    "ac_missing_dims": ('backend: "python"\n',
                        'c.add_input({"name": "X", "data_type": "TYPE_FP32"})\n'
                        'c.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]})',
                        "input 'X' ... is missing 'dims' property.", ["ValueError", "dims"]),
    "ac_seq_dyn": ('backend: "python"\nsequence_batching { }\n', FULL,
                   "Configuration specified scheduling_choice as 'sequence_batching', but auto-complete-config ... "
                   "tries to set scheduling_choice as 'dynamic_batching'",
                   ["ValueError", "sequence_batching", "dynamic_batching"]),
    "ac_decoupled_flip": ('backend: "python"\nmodel_transaction_policy { decoupled: true }\n', FULL,
                          "trying to change decoupled property in auto-complete-config ..., which is already set "
                          "to 'True'.", ["ValueError", "decoupled"]),
    "ac_returns_none": ('backend: "python"\n', FULL + "\nreturn None",
                        "auto_complete_config function in model 'ac_returns_none' must return a valid "
                        "pb.ModelConfig object.", ["auto_complete_config", "NoneType"]),
    "ac_txn_extra": ('backend: "python"\n', FULL + '\nc.set_model_transaction_policy({"decoupled": False, "other": 1})',
                     "model transaction property ... contains property other than 'decoupled'.",
                     ["ValueError", "other", "decoupled"]),
}

READY_MODELS = ["api", "echo_types", "errs", "sender_return", "logs", "instances", "ac_full", "ac_noconfig"]


def write_model(repo, name, config, source):
    d = Path(repo) / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    if config is not None:
        (d / "config.pbtxt").write_text(config)
    (d / "1" / "model.py").write_text(source)


def build_repository(repo):
    """The repository; the same one served on tritonserver 2.51."""
    write_model(repo, "api", API_CONFIG, API)
    write_model(repo, "echo_types", ECHO_TYPES_CONFIG, ECHO_TYPES)
    write_model(repo, "errs", ERRS_CONFIG, ERRS)
    write_model(repo, "sender_return", XY_CONFIG, SENDER_RETURN)
    write_model(repo, "logs", STR_OUT_CONFIG, LOGS)
    write_model(repo, "instances", STR_OUT_CONFIG + "instance_group [ { count: 2 kind: KIND_CPU } ]\n", INSTANCES)
    write_model(repo, "ac_full", 'backend: "python"\n', auto_complete(FULL))
    write_model(repo, "ac_noconfig", None, auto_complete(FULL))
    for name, (config, body, _, _) in AC_FAILURES.items():
        write_model(repo, name, config, auto_complete(body))
    return repo


class Served:
    def __init__(self, proc, http, grpc, repo, log):
        self.proc, self.http, self.grpc, self.repo, self.log = proc, http, grpc, repo, log

    def url(self, path):
        return f"http://{self.http}{path}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = build_repository(tmp_path_factory.mktemp("pb_utils_repo"))
    log = tmp_path_factory.mktemp("pb_utils_log") / "server.log"
    # A model that takes a sender and never sends its final flag holds its
    # instance this long (SERVING.md); 1 s keeps the test quick.
    saved = os.environ.get("ANEMONE_PYTHON_SENDER_WAIT_S")
    os.environ["ANEMONE_PYTHON_SENDER_WAIT_S"] = "1"
    try:
        proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*",
                                      "--log-file", str(log), "--log-verbose", "1")
    finally:
        if saved is None:
            os.environ.pop("ANEMONE_PYTHON_SENDER_WAIT_S")
        else:
            os.environ["ANEMONE_PYTHON_SENDER_WAIT_S"] = saved
    srv = Served(proc, addresses["HTTP"], addresses["gRPC"], repo, log)
    try:
        deadline = time.time() + 90
        for name in READY_MODELS:
            while True:
                try:
                    if requests.get(srv.url(f"/v2/models/{name}/ready"), timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.time() > deadline:
                    pytest.fail(f"model {name} was not ready within 90 s")
                time.sleep(0.1)
        yield srv
    finally:
        stop_serve(proc)


def infer_json(srv, model, inputs, **extra):
    body = {"inputs": inputs, **extra}
    return requests.post(srv.url(f"/v2/models/{model}/infer"), json=body, timeout=30)


def mode_request(srv, mode):
    """(HTTP status, HTTP body, gRPC status name or 'OK', gRPC message or Y) for errs' MODE."""
    r = infer_json(srv, "errs", [{"name": "MODE", "datatype": "INT32", "shape": [1], "data": [mode]}])
    client = grpcclient.InferenceServerClient(srv.grpc)
    i = grpcclient.InferInput("MODE", [1], "INT32")
    i.set_data_from_numpy(np.array([mode], np.int32))
    try:
        got = client.infer("errs", [i], client_timeout=30)
        grpc_answer = ("OK", got.as_numpy("Y").tolist())
    except InferenceServerException as e:
        grpc_answer = (e.status(), e.message())
    finally:
        client.close()
    return r.status_code, r.json(), grpc_answer[0], grpc_answer[1]


@pytest.fixture(scope="module")
def report(server):
    """The `api` model's report of one request, sent as tritonclient sends it."""
    x = np.array([1.5, -2.0, 3.25], np.float32)
    r = infer_json(server, "api", [{"name": "X", "datatype": "FP32", "shape": [3], "data": x.tolist()}],
                   id="rid-7", outputs=[{"name": "OUT"}],
                   parameters={"sequence_id": 42, "sequence_start": True, "pk": "pv", "n": 3, "timeout": 5000000})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    return json.loads(outputs["OUT"]["data"][0]), x


def ok(probe):
    assert "ok" in probe, f"the model's call raised: {probe}"
    return probe["ok"]


# ------------------------------------------------------------------ initialize


def test_initialize_args_keys(server, report):
    """initialize(args) gets Triton's keys (SERVING.md). tritonserver 2.51 gave
    the same seven keys: model_instance_device_id "0", model_instance_kind
    "CPU", model_instance_name "api_0", model_name, model_repository (the
    model's folder, as given on the command line), model_version "1", and
    model_config."""
    d, _ = report
    args = d["args"]
    assert sorted(args) == ["model_instance_device_id", "model_instance_kind", "model_instance_name",
                            "model_name", "model_repository", "model_version"]
    assert args["model_name"] == "api" and args["model_version"] == "1"
    assert args["model_instance_name"] == "api_0" and args["model_instance_kind"] == "CPU"
    assert args["model_instance_device_id"] == "0"
    assert Path(args["model_repository"]).resolve() == (server.repo / "api").resolve()


# ------------------------------------------------------------------- requests


def test_request_accessors(report):
    """The request's accessors (SERVING.md "Requests"). tritonserver 2.51, for
    id "rid-7", sequence_id 42 with sequence_start, parameters pk/n and
    requested output OUT: request_id() 'rid-7', correlation_id() 42, flags()
    1 (SEQUENCE_START), parameters() '{"pk":"pv","n":3}' (anemone: in name
    order, documented), requested_output_names() {'OUT'} (a set; anemone a
    list, documented), inputs() only X (the optional OPT left out), and
    get_input_tensor_by_name(r, "NOPE") None."""
    d, _ = report
    assert d["inputs"] == ["X"]
    assert ok(d["missing_input"]) == "None"
    assert ok(d["req_request_id"]) == "'rid-7'"
    assert ok(d["req_correlation_id"]) == "42"
    assert ok(d["req_flags"]) == "1"
    assert json.loads(eval(ok(d["req_parameters"]))) == {"pk": "pv", "n": 3}
    assert sorted(eval(ok(d["req_requested_output_names"]))) == ["OUT"]


def test_request_timeout_accessor(report):
    """tritonserver 2.51's InferenceRequest has timeout(): a BLS
    InferenceRequest(timeout=7).timeout() is 7. anemone's had no such
    method (AttributeError)."""
    d, _ = report
    assert ok(d["bls_timeout"]) == "7"


def test_a_received_requests_timeout(report):
    """tritonserver 2.51: the received request's timeout() is its `timeout`
    parameter in microseconds (5000000 here, on a model without dynamic
    batching)."""
    d, _ = report
    assert ok(d["req_timeout"]) == "5000000"


# ---------------------------------------------------------------------- Tensor


def test_tensor_of_every_dtype(report):
    """pb_utils.Tensor from numpy arrays of every Triton data type keeps name,
    shape, dtype and values; is_cpu() is True; the input tensor's as_numpy()
    is the request's values. tritonserver 2.51 gives the same for each
    (its triton_dtype() raises TypeError there, so it is not compared)."""
    d, x = report
    name, shape, is_cpu, dtype, values = eval(ok(d["x"]))
    assert (name, shape, is_cpu, dtype) == ("X", [3], True, "<f4")
    np.testing.assert_array_equal(np.array(values, np.float32), x)
    for dt, probe in d["construct"].items():
        if dt == "object":
            shape, values = eval(ok(probe))
            assert shape == [3] and values == [b"ab", b"", b"\x00\xff"]
            continue
        want = (np.arange(6) % 3).astype(dt).reshape(2, 3)
        name, shape, is_cpu, dtype, values = eval(ok(probe))
        assert (name, shape, is_cpu, dtype) == ("T", [2, 3], True, want.dtype.str), dt
        np.testing.assert_array_equal(np.array(values, dtype=dt), want)


def test_tensor_dlpack(report):
    """to_dlpack()/Tensor.from_dlpack(name, capsule) round-trip in host memory
    and np.from_dlpack(tensor) reads it (SERVING.md "pb_utils"); a tensor of
    strings cannot go to DLPack (TritonModelException). tritonserver 2.51:
    the same (its message: "DLPack does not have support for string
    tensors.")."""
    d, x = report
    np.testing.assert_array_equal(np.array(eval(ok(d["dlpack"])), np.float32), x)
    assert ok(d["dlpack_name"]) == "'Z'"
    np.testing.assert_array_equal(np.array(eval(ok(d["np_from_dlpack"])), np.float32), x)
    assert d["object_to_dlpack"]["exc"] == "TritonModelException"


def test_outputs_of_every_dtype_reach_the_client(server):
    """An answer with outputs of every data type (numbers from numpy's astype,
    BYTES from an object array and from a numpy str array) reaches the
    client with each type and value, over HTTP and gRPC. tritonserver 2.51:
    the same values and types over gRPC (over HTTP JSON it refuses FP16,
    a documented difference; a numpy str array, dtype <U, is refused there
    at Tensor() with "NumPy dtype is not supported."; anemone sends it as
    BYTES)."""
    x = np.array([0, 1, 7, 200, -3], np.int32)
    client = grpcclient.InferenceServerClient(server.grpc)
    i = grpcclient.InferInput("X", [5], "INT32")
    i.set_data_from_numpy(x)
    got = client.infer("echo_types", [i])
    client.close()
    r = infer_json(server, "echo_types", [{"name": "X", "datatype": "INT32", "shape": [5], "data": x.tolist()}])
    assert r.status_code == 200, r.text
    http = {o["name"]: o for o in r.json()["outputs"]}
    for t in DTYPES:
        want = x.astype(NUMPY[t])
        np.testing.assert_array_equal(got.as_numpy("O_" + t), want)
        assert got.as_numpy("O_" + t).dtype == want.dtype
        assert http["O_" + t]["datatype"] == t
        np.testing.assert_array_equal(np.array(http["O_" + t]["data"], dtype=NUMPY[t]), want)
    assert got.as_numpy("O_BYTES").tolist() == [str(v).encode() for v in x]
    assert got.as_numpy("O_STR").tolist() == [f"s{v}".encode() for v in x]
    assert http["O_BYTES"]["datatype"] == "BYTES" and http["O_BYTES"]["data"] == [str(v) for v in x]


def test_tensor_of_unsupported_dtype_raises_at_construction(server):
    """tritonserver 2.51's Tensor("Y", np.complex64 array) raises
    TritonModelException ("NumPy dtype is not supported.") in the model, which
    here catches it and answers TritonError(INVALID_ARG): the client gets 400
    "caught: ...". anemone's Tensor() takes the array, and the answer fails
    after execute with 500 naming complex64 (docs silent)."""
    status, body, grpc_status, message = mode_request(server, 21)
    assert status == 400 and body["error"].startswith("caught: "), body
    assert grpc_status == "StatusCode.INVALID_ARGUMENT"


# --------------------------------------------------------------- dtype helpers


def test_triton_string_to_numpy(report):
    """triton_string_to_numpy gives numpy's type for each config data type, as
    tritonserver 2.51's (TYPE_BOOL: bool; TYPE_STRING: object)."""
    d, _ = report
    for name, probe in d["tsn"].items():
        want = np.dtype(object if name == "TYPE_STRING" else NUMPY[name[5:]]).str
        assert eval(ok(probe)) == want, name


def test_dtype_helpers_use_tritons_numbers(report):
    """tritonserver 2.51's triton_python_backend_utils.py:
    numpy_to_triton_type(np.float32) is 11 (TRITONSERVER_TYPE_FP32), bool 1,
    uint8 2, int32 8, float16 10, float64 12, object_ and bytes_ 13; and
    triton_to_numpy_type(11) is np.float32 (1 bool, 2 uint8, 8 int32, 10
    float16, 12 float64, 13 object). anemone's return 'FP32' and take 'FP32'
    (triton_to_numpy_type(11) is None), so model code written for Triton
    compares wrongly. SERVING.md lists both helpers with no difference."""
    d, _ = report
    want = {"bool_": 1, "uint8": 2, "int32": 8, "float16": 10, "float32": 11, "float64": 12, "object_": 13,
            "bytes_": 13}
    assert {k: ok(v) for k, v in d["n2t"].items()} == {k: str(v) for k, v in want.items()}
    want_np = {"1": "|b1", "2": "|u1", "8": "<i4", "10": "<f2", "11": "<f4", "12": "<f8", "13": "|O"}
    assert {k: eval(ok(v)) for k, v in d["t2n"].items()} == want_np


def test_serialize_byte_tensor_returns_bytes(report):
    """tritonserver 2.51's serialize_byte_tensor(np.array([b"ab", "c"],
    object)) is the bytes b'\\x02\\x00\\x00\\x00ab\\x01\\x00\\x00\\x00c' (and
    () for an empty tensor, None for a numeric one); anemone's gives the same
    bytes as a numpy uint8 array, so `blob + b"..."` or `blob.decode()` in a
    Triton model fails. deserialize_bytes_tensor agrees ([b'ab', b'c'])."""
    d, _ = report
    assert eval(ok(d["deser"])) == [b"ab", b"c"]
    assert d["ser"]["type"] == "bytes"
    assert eval(ok(d["ser"])) == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"


# -------------------------------------------------------------- config helpers


def test_config_helpers(report):
    """get_input_config_by_name/get_output_config_by_name give the config's
    entry (as GET .../config shows it), None for an unknown name;
    using_decoupled_model_transaction_policy False. tritonserver 2.51 gave
    the same entries (its keys in the proto's order, anemone's sorted)."""
    d, _ = report
    assert d["in_cfg"] == {"name": "X", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [-1],
                           "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False,
                           "is_non_linear_format_io": False}
    assert d["out_cfg"] == {"name": "OUT", "data_type": "TYPE_STRING", "dims": [1], "label_filename": "",
                            "is_shape_tensor": False, "is_non_linear_format_io": False}
    assert ok(d["in_cfg_missing"]) == "None" and ok(d["out_cfg_missing"]) == "None"
    assert ok(d["decoupled"]) == "False"


def test_get_model_dir(report):
    """tritonserver 2.51's pb_utils.get_model_dir() is the folder of the
    loaded model.py, <repository>/api/1 (`repo/probe/1` for a relative
    --model-repository), so `os.path.join(get_model_dir(), "weights.bin")`
    finds a file beside model.py. anemone's is <repository>/api, one level
    up (SERVING.md lists get_model_dir() with no difference)."""
    d, _ = report
    assert Path(ok(d["model_dir"]).strip("'")).resolve() == Path(d["here"]).resolve()


# ------------------------------------------------------- module names, errors


def test_constants_and_error_codes(report):
    """The flag constants and TritonError's codes have Triton's values
    (tritonserver 2.51: SEQUENCE_START 1, SEQUENCE_END 2, COMPLETE_FINAL 1;
    UNKNOWN 0, INTERNAL 1, NOT_FOUND 2, INVALID_ARG 3, UNAVAILABLE 4,
    UNSUPPORTED 5, ALREADY_EXISTS 6, CANCELLED 7, as an enum); TritonError's
    default code is INTERNAL; TritonModelException is an Exception whose str
    is its message."""
    d, _ = report
    c = d["consts"]
    assert (ok(c["TRITONSERVER_REQUEST_FLAG_SEQUENCE_START"]), ok(c["TRITONSERVER_REQUEST_FLAG_SEQUENCE_END"]),
            ok(c["TRITONSERVER_RESPONSE_COMPLETE_FINAL"])) == ("1", "2", "1")
    assert d["error_codes"] == {n: i for i, n in enumerate(CODES)}
    assert eval(ok(d["error_default"])) == ("m", 1)
    assert eval(ok(d["exc"])) == ("boom", True)


def test_module_has_tritons_names(report):
    """tritonserver 2.51's pb_utils has TRITONSERVER_REQUEST_RELEASE_ALL (1)
    and TRITONSERVER_REQUEST_RELEASE_RESCHEDULE (2) with
    request.set_release_flags() (request rescheduling), PreferredMemory with
    TRITONSERVER_MEMORY_CPU/GPU (BLS output placement), and the dict
    TRITON_STRING_TO_NUMPY; a model.py naming any of them fails with
    AttributeError on anemone (docs silent)."""
    d, _ = report
    c = d["consts"]
    assert ok(c["TRITONSERVER_REQUEST_RELEASE_ALL"]) == "1"
    assert ok(c["TRITONSERVER_REQUEST_RELEASE_RESCHEDULE"]) == "2"
    assert "ok" in c["TRITONSERVER_MEMORY_CPU"] and "ok" in c["TRITONSERVER_MEMORY_GPU"]
    assert d["has"] == {"PreferredMemory": True, "TRITON_STRING_TO_NUMPY": True}
    assert d["req_has"]["set_release_flags"]


# (code, HTTP status, gRPC status) as tritonserver 2.51 answered TritonError(msg, code).
TRITON_STATUS = {
    "UNKNOWN": (400, "StatusCode.UNKNOWN"),
    "INTERNAL": (500, "StatusCode.INTERNAL"),
    "NOT_FOUND": (404, "StatusCode.NOT_FOUND"),
    "INVALID_ARG": (400, "StatusCode.INVALID_ARGUMENT"),
    "UNAVAILABLE": (503, "StatusCode.UNAVAILABLE"),
    "UNSUPPORTED": (501, "StatusCode.UNIMPLEMENTED"),
    "ALREADY_EXISTS": (400, "StatusCode.ALREADY_EXISTS"),
    "CANCELLED": (400, "StatusCode.CANCELLED"),
}
# anemone's answers where its gRPC status differs (SERVING.md "Errors"):
# the HTTP status is Triton's, the gRPC one the class anemone has for it.
ANEMONE_GRPC = {"UNKNOWN": "StatusCode.INVALID_ARGUMENT", "ALREADY_EXISTS": "StatusCode.INVALID_ARGUMENT",
                "CANCELLED": "StatusCode.INVALID_ARGUMENT"}


@pytest.mark.parametrize("code", CODES)
def test_triton_error_code_status(server, code):
    """InferenceResponse(error=TritonError("code X", TritonError.X)) answers the
    client with the status tritonserver 2.51 gives it (HTTP, gRPC): UNKNOWN
    400/UNKNOWN, INTERNAL 500/INTERNAL, NOT_FOUND 404/NOT_FOUND, INVALID_ARG
    400/INVALID_ARGUMENT, UNAVAILABLE 503/UNAVAILABLE, UNSUPPORTED
    501/UNIMPLEMENTED, ALREADY_EXISTS 400/ALREADY_EXISTS, CANCELLED
    400/CANCELLED, each with the message "code X". SERVING.md documents
    INTERNAL (500, prefixed `backend python failed:`), INVALID_ARG and
    UNAVAILABLE, and says TritonError has "Triton's codes"; it is silent on
    the others."""
    status, body, grpc_status, message = mode_request(server, CODES.index(code))
    http_status, triton_grpc = TRITON_STATUS[code]
    assert (status, grpc_status) == (http_status, ANEMONE_GRPC.get(code, triton_grpc)), body
    assert body["error"].endswith("code " + code) and message.endswith("code " + code)


def test_default_code_and_exceptions(server):
    """TritonError(msg) without a code, a TritonModelException and another
    exception raised in execute: 500 / INTERNAL naming the message (SERVING.md
    "Errors"). tritonserver 2.51: 500 "default code"; 500 "Failed to process
    the request(s) for model 'errs_0', message: TritonModelException: tme
    boom" (and the same for ValueError: ve boom)."""
    for mode, words in [(18, "default code"), (10, "TritonModelException: tme boom"), (11, "ValueError: ve boom")]:
        status, body, grpc_status, message = mode_request(server, mode)
        assert status == 500 and grpc_status == "StatusCode.INTERNAL", body
        assert words in body["error"] and words in message


@pytest.mark.parametrize("mode, words", [
    (12, "returned None"), (13, "not a list"), (14, "returned 0 responses"), (15, "Tensor"),
    (23, "returned 2 responses")])
def test_execute_returning_wrong_types(server, mode, words):
    """execute returning None, a lone InferenceResponse, [] or two responses
    for one request, or a Tensor in the list fails the request with 500 /
    INTERNAL saying what was wrong. tritonserver 2.51: 500 "Expected a list in
    the execute return, found type ...InferenceResponse", "Number of
    InferenceResponse objects do not match the number of InferenceRequest
    objects", "Expected an 'InferenceResponse' object in the execute function
    return list, found type ...Tensor"; for None (and for [None]) it holds the
    request without an answer (the model might still send it), where anemone
    answers at once."""
    status, body, grpc_status, message = mode_request(server, mode)
    assert status == 500 and grpc_status == "StatusCode.INTERNAL", body
    assert words in body["error"], body


def test_execute_returning_tuple_is_taken(server):
    """A tuple of responses is answered as a list would be (200, Y = 17).
    tritonserver 2.51 refuses it: 500 "Expected a list in the execute return,
    found type '<class 'tuple'>'" (anemone takes more than Triton here)."""
    status, body, grpc_status, y = mode_request(server, 17)
    assert status == 200 and grpc_status == "OK"
    np.testing.assert_array_equal(np.array(body["outputs"][0]["data"], np.float32), np.float32([17]))
    np.testing.assert_array_equal(np.array(y, np.float32), np.float32([17]))


def test_sender_taken_but_response_returned(server):
    """tritonserver 2.51 answers at once with the returned response (200, Y =
    X + 1) when execute calls request.get_response_sender() (without
    sending) and returns the response in its list. anemone waits
    ANEMONE_PYTHON_SENDER_WAIT_S (60 s by default, 1 s here) for the
    sender's final flag, holding the instance, then fails the request
    ("the model sent no final response"). SERVING.md's sender section
    covers sending through it, not taking it and returning."""
    x = np.array([1.0, 2.5], np.float32)
    t0 = time.time()
    r = infer_json(server, "sender_return", [{"name": "X", "datatype": "FP32", "shape": [2], "data": x.tolist()}])
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), x + 1)
    assert time.time() - t0 < 0.9


def test_response_parameters_are_sent(server):
    """InferenceResponse([y], parameters={...}): anemone answers 200 with Y and
    the response's `parameters`, as Triton's newer releases do (docs/SERVING.md,
    Python models; dropped before session 41). tritonserver 2.51's
    InferenceResponse takes no `parameters` (TypeError in the model, so 500)."""
    status, body, grpc_status, y = mode_request(server, 27)
    assert status == 200 and grpc_status == "OK", body
    assert body["parameters"] == {"p": 1, "s": "x"} and "parameters" not in body["outputs"][0], body
    np.testing.assert_array_equal(np.array(body["outputs"][0]["data"], np.float32), np.float32([27]))


def test_missing_output_is_left_out(server):
    """A model that leaves a config output (OTHER) out of its response is
    answered without it, as tritonserver 2.51 answers (SERVING.md "Requests";
    its "Answers" paragraph says the opposite, see the report)."""
    r = infer_json(server, "api", [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1.0]}])
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["OUT"]


# --------------------------------------------------------------------- Logger


def log_lines(srv, marker, seconds=5):
    deadline = time.time() + seconds
    while True:
        lines = [line for line in srv.log.read_text(errors="replace").splitlines() if marker in line]
        if lines or time.time() > deadline:
            return lines
        time.sleep(0.1)


def test_logger_levels(server):
    """Logger.log_info/log_warn/log_error/log_verbose go to the server's log
    at info, warn, error and debug (SERVING.md "Logs"), each line naming the
    model. tritonserver 2.51 writes them to its log as `I1205 ... model.py:17]
    "LOGMARK log_info"`, W for warn, E for error, and the verbose one as an
    I line only with --log-verbose 1."""
    r = infer_json(server, "logs", [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1.0]}])
    assert r.status_code == 200, r.text
    levels = {"log_info": "INFO", "log_warn": "WARN", "log_error": "ERROR", "log_verbose": "DEBUG"}
    for method, level in levels.items():
        lines = log_lines(server, f"LOGMARK {method}")
        assert lines, f"no log line for {method}"
        assert any(f" {level} " in line and "logs" in line for line in lines), lines


def test_logger_log_with_level(server):
    """Triton's documented `logger.log("Specific Msg!", logger.INFO)`:
    tritonserver 2.51's Logger has INFO, WARNING, ERROR, VERBOSE (and
    LogLevel), and log(msg, Logger.WARNING) writes a W line, ERROR an E line.
    anemone's Logger has none of them (its levels are in a module-level
    pb_utils.LogLevel, which Triton has not), and log() ignores its level."""
    r = infer_json(server, "logs", [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1.0]}])
    assert r.status_code == 200, r.text
    res = json.loads(r.json()["outputs"][0]["data"][0])
    assert all(res[f"log-{lv}"] == "ok" for lv in ["INFO", "WARNING", "ERROR", "VERBOSE"]), res
    assert any(" WARN " in line for line in log_lines(server, "LOGMARK log-WARNING"))
    assert any(" ERROR " in line for line in log_lines(server, "LOGMARK log-ERROR"))


# ----------------------------------------------------- auto_complete_config


@pytest.mark.parametrize("name", ["ac_full", "ac_noconfig"])
def test_auto_complete_config(server, name):
    """auto_complete_config's set_max_batch_size(4), add_input (X twice, the
    same: taken), add_input(optional OPT), add_output, set_dynamic_batching
    and set_model_transaction_policy(decoupled False) give the served config,
    with a config.pbtxt of only `backend: "python"` and with none (SERVING.md).
    tritonserver 2.51 served the same inputs, outputs, max_batch_size,
    dynamic_batching (preferred_batch_size [4], max_batch_size filled in as
    Triton's normalization does) and decoupled false; the model answers Y = 2 X."""
    cfg = requests.get(server.url(f"/v2/models/{name}/config"), timeout=10).json()
    assert cfg["max_batch_size"] == 4
    assert [(i["name"], i["data_type"], i["dims"], i.get("optional", False)) for i in cfg["input"]] == [
        ("X", "TYPE_FP32", [-1], False), ("OPT", "TYPE_INT32", [1], True)]
    assert [(o["name"], o["data_type"], o["dims"]) for o in cfg["output"]] == [("Y", "TYPE_FP32", [-1])]
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [4], cfg["dynamic_batching"]
    assert cfg["model_transaction_policy"] == {"decoupled": False}
    x = np.array([[1.0, -2.0]], np.float32)
    r = infer_json(server, name, [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": x.ravel().tolist()}])
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(1, 2), x * 2)


@pytest.mark.parametrize("name", sorted(AC_FAILURES))
def test_auto_complete_config_refusals(server, name):
    """A ModelConfig call that contradicts the config or itself (another
    dims or data_type, a property other than name/data_type/dims/optional,
    a missing dims, a smaller max_batch_size, dynamic batching over
    sequence_batching, flipping decoupled, a transaction property other than
    decoupled) or an auto_complete_config that returns None leaves the model
    UNAVAILABLE with its reason (SERVING.md). tritonserver 2.51: UNAVAILABLE
    for each, with the ValueError in the test's table."""
    index = requests.post(server.url("/v2/repository/index"), json={}, timeout=10).json()
    row = next(m for m in index if m["name"] == name)
    assert row["state"] == "UNAVAILABLE", row
    for word in AC_FAILURES[name][3]:
        assert word in row["reason"], (word, row["reason"])
    assert requests.get(server.url(f"/v2/models/{name}/ready"), timeout=10).status_code != 200


def test_finalize_runs_at_unload(server):
    """finalize() runs when the model is unloaded (SERVING.md). tritonserver
    2.51 calls it at unload and at shutdown (read off: finalized.txt written
    at its SIGTERM for both auto-completed models)."""
    marker = server.repo / "ac_noconfig" / "finalized.txt"
    assert not marker.exists()
    r = requests.post(server.url("/v2/repository/models/ac_noconfig/unload"), json={}, timeout=30)
    assert r.status_code == 200, r.text
    deadline = time.time() + 10
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "finalized\n"


def test_module_globals_are_per_instance(server):
    """Each instance of instance_group count 2 is a process of its own: module
    globals are not shared (each sees only its own name in the module-level
    list, and its own call count, 1, 2, 3 ...). tritonserver 2.51: the same
    (instances instances_0_0 and instances_0_1, two pids, three calls each
    for six requests, four at a time)."""
    def one(_):
        r = infer_json(server, "instances", [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1.0]}])
        assert r.status_code == 200, r.text
        return json.loads(r.json()["outputs"][0]["data"][0])

    with ThreadPoolExecutor(4) as ex:
        seen = list(ex.map(one, range(6)))
    names = {name for name, _, _, _ in seen}
    assert names == {"instances_0_0", "instances_0_1"}
    for name in names:
        mine = [s for s in seen if s[0] == name]
        assert len({pid for _, pid, _, _ in mine}) == 1
        assert all(shared == [name] for _, _, _, shared in mine)
        assert sorted(calls for _, _, calls, _ in mine) == list(range(1, len(mine) + 1))
    assert len({pid for _, pid, _, _ in seen}) == 2
