"""anemone's Python process: runs one instance of a Triton Python model
(model.py with its TritonPythonModel class) for anemone's `python` backend.

anemone starts it as `python -u -c BOOT MODEL_PY`, BOOT running this file's
source from the environment (ANEMONE_PYTHON_STUB), and speaks
to it over the process's standard input and output, which this script takes
for itself at once: what the model prints goes to standard error, which
anemone logs. Each message, both ways, is one frame: its length (4 bytes,
little-endian), then the length of a JSON header (4 bytes), the header, and
the tensors' bytes one after the other, as the header lists them (numbers
little-endian in C order; BYTES elements each as a 4-byte length and the
bytes, Triton's serialization).

anemone -> here: {"op": "init", "args": {...}}, {"op": "execute",
"requests": [...]}, {"op": "finalize"}. Here -> anemone: {"ok": true, ...}
or {"ok": false, "error": "...", "traceback": "..."}.

A decoupled model (model_transaction_policy { decoupled: true }) sends its
responses as they come, from any thread: {"op": "response", "key": K,
"final": bool, "response": {...} or null}, K being the request's key from
its execute frame. Its process reads frames on a thread of its own
(Frames), so that a request to another model can be sent from any thread;
and anemone tells it which requests' clients have gone ({"op":
"cancelled", "key": K}), which is_cancelled() reads.

A request to another model ({"op": "bls", "call": N}) is answered with the
same "call"; one asking for a stream ("decoupled": true, from
exec(decoupled=True)) with every response as it comes, "more": true on
all but the last, until the process cancels it ({"op": "bls_cancel",
"call": N}). A model that is not decoupled reads its answers on demand
(Direct), keeping other open calls' frames for them.
"""
import importlib.util
import inspect
import json
import os
import signal
import sys
import threading
import traceback
from functools import partial
from types import SimpleNamespace


# The frames' reading and writing, and Frames and Direct (the model's
# incoming frames, by a thread of their own or on demand): from the
# environment too, run in this module's namespace.
exec(_anemone_code("ANEMONE_PYTHON_FRAMES", "anemone_stub_frames.py"), globals())
# The model's requests to anemone (BLS requests and model loading), the
# same way.
exec(_anemone_code("ANEMONE_PYTHON_CALLS", "anemone_stub_calls.py"), globals())
# The model shares the json module: what it changes there (json.dumps =
# ...) must not reach anemone's frames, so the stub keeps its functions.
json = SimpleNamespace(dumps=json.dumps, loads=json.loads)


def decode_tensor(pb_utils, np, spec, data):
    dtype = pb_utils.triton_string_to_numpy(spec["datatype"])
    if dtype is None:
        raise ValueError(f"unknown data type {spec['datatype']}")
    shape = spec["shape"]
    if spec["datatype"] == "BYTES":
        array = pb_utils.deserialize_bytes_tensor(data)
    else:
        array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    return array.reshape(shape)


def encode_tensor(pb_utils, np, tensor):
    array = tensor.as_numpy()
    # Before ascontiguousarray, which makes a 0-d array 1-d.
    shape = list(array.shape)
    datatype = pb_utils.wire_datatype(array)
    if datatype == "BYTES":
        blob = bytes(pb_utils.serialize_byte_tensor(array))
    else:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        blob = array.tobytes()
    return {"name": tensor.name(), "datatype": datatype, "shape": shape, "byte_size": len(blob)}, blob


class Sequence:
    """A sequence model's correlation ID and flags, read from the control
    inputs the server gives each request (CONTROL_SEQUENCE_CORRID, _START,
    _END), for InferenceRequest.correlation_id() and flags()."""

    def __init__(self, model_config):
        self.names = {}
        self.controls = []
        batching = model_config.get("sequence_batching", {})
        # An iterative model's controls are given here (no sequence batcher runs for it).
        self.iterative = bool(batching.get("iterative_sequence"))
        self.batched = int(model_config.get("max_batch_size", 0) or 0) > 0
        for entry in batching.get("control_input", []):
            for control in entry.get("control", []):
                self.names[control.get("kind")] = entry.get("name")
                self.controls.append((control.get("kind"), entry.get("name"), control))

    def given(self, pb_utils, np, correlation_id, flags):
        """An iterative model's control inputs for one run, as Triton's
        sequence batcher fills them: the correlation ID in its data type,
        START and END from the run's flags, READY true, each of shape [1]
        ([1, 1] with a batch dimension)."""
        out = []
        for kind, name, control in self.controls:
            if kind == "CONTROL_SEQUENCE_CORRID":
                dtype = control.get("data_type", "TYPE_UINT64")
                if dtype == "TYPE_STRING":
                    array = np.array([str(correlation_id).encode()], dtype=object)
                else:
                    array = np.array([int(correlation_id or 0)], dtype=pb_utils.triton_string_to_numpy(dtype))
            else:
                on = {"CONTROL_SEQUENCE_START": flags & 1, "CONTROL_SEQUENCE_END": flags & 2,
                      "CONTROL_SEQUENCE_READY": 1}.get(kind)
                values = [(control.get(key), dtype) for key, dtype in (
                    ("int32_false_true", np.int32), ("fp32_false_true", np.float32), ("bool_false_true", np.bool_))]
                values = [(v, dtype) for v, dtype in values if v]
                if on is None or not values:
                    continue
                array = np.array([values[0][0][1 if on else 0]], dtype=values[0][1])
            out.append(pb_utils.Tensor(name, array.reshape((1, 1) if self.batched else (1,))))
        return out

    def read(self, inputs):
        if not self.names:
            return 0, 0
        by_name = {t.name(): t.as_numpy() for t in inputs}

        def value(kind):
            array = by_name.get(self.names.get(kind))
            return None if array is None or array.size == 0 else array.ravel()[0]

        corrid = value("CONTROL_SEQUENCE_CORRID")
        if isinstance(corrid, bytes):
            corrid = corrid.decode("utf-8", "replace")
        elif corrid is not None:
            corrid = int(corrid)
        flags = (1 if value("CONTROL_SEQUENCE_START") else 0) | (2 if value("CONTROL_SEQUENCE_END") else 0)
        return (0 if corrid is None else corrid), flags


def encode_response(pb_utils, np, response, blobs):
    """A response's header ({"error", "code", "outputs", "parameters"}); its
    tensors' bytes go to blobs."""
    if response.has_error():
        err = response.error()
        return {"error": err.message(), "code": err.code(), "outputs": []}
    outputs = []
    for tensor in response.output_tensors():
        spec_, blob = encode_tensor(pb_utils, np, tensor)
        outputs.append(spec_)
        blobs.append(blob)
    header = {"error": None, "outputs": outputs}
    parameters = response._parameters
    if parameters:
        header["parameters"] = json.loads(parameters) if isinstance(parameters, str) else parameters
    return header


def response_emitter(pb_utils, np, proto_out):
    """Sends a decoupled model's response to request `key` (from any thread)."""

    def emit(key, response, final):
        blobs = []
        header = None if response is None else encode_response(pb_utils, np, response, blobs)
        write_frame(proto_out, {"op": "response", "key": key, "final": final, "response": header}, blobs)

    return emit


def cancel_reader(frames):
    """Whether request `key`'s client has gone (as anemone told), and a way
    to forget a request that has ended."""
    return (lambda key: key in frames.cancelled), frames.cancelled.discard


class Coroutines:
    """A model's coroutines (async def execute, initialize or finalize), run
    on one event loop of the process, on a thread of its own, as Triton
    runs them: awaited to the end (wait), or, a decoupled model's execute,
    left running while the next requests come (start)."""

    def __init__(self):
        import asyncio

        self.asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="anemone-asyncio", daemon=True).start()

    def wait(self, coroutine):
        return self.asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def start(self, coroutine, done):
        """Runs it; done(error message or None) once it has ended."""

        def ended(future):
            error = future.exception()
            if error is not None:
                done(f"{type(error).__name__}: {error}")
            elif future.result() is not None:
                done("the execute function must return None")
            else:
                done(None)

        self.asyncio.run_coroutine_threadsafe(coroutine, self.loop).add_done_callback(ended)


def awaited(runner, result):
    """A model's call's result, its coroutine awaited if it returned one."""
    if not inspect.iscoroutine(result):
        return result
    if "coroutines" not in runner:
        runner["coroutines"] = Coroutines()
    return runner["coroutines"].wait(result)


# How long the instance of a model that is not decoupled waits, after
# execute() returned, for a response sender's final flag (Triton waits
# without end, the request held; here the instance would be held too).
def _sender_wait_s():
    text = os.environ.get("ANEMONE_PYTHON_SENDER_WAIT_S", "60")
    try:
        return max(0.0, float(text))
    except ValueError:
        sys.stderr.write(f"ANEMONE_PYTHON_SENDER_WAIT_S={text!r} is not a number of seconds; 60 is used\n")
        return 60.0


SENDER_WAIT_S = _sender_wait_s()


def sent_responses(pb_utils, requests, returned, instance_name):
    """The responses of a model that is not decoupled: those execute()
    returned, or, for the requests whose response sender it took, the one
    response sent through it (from execute or a thread of the model's,
    before or after execute returned: waited for until its final flag, as
    Triton does). None when execute returned None and took no sender."""
    senders = [getattr(r, "_response_sender", None) for r in requests]
    if not any(senders):
        return returned
    responses = []
    given = isinstance(returned, (list, tuple)) and len(returned) == len(requests)
    for i, (request, sender) in enumerate(zip(requests, senders)):
        # A sender taken but unused, with the response returned: the
        # returned one answers at once, as Triton's does.
        if sender is not None and given and returned[i] is not None and sender._unused():
            sender._close()
            responses.append(returned[i])
            continue
        if sender is None:
            if given:
                responses.append(returned[i])
                continue
            error = pb_utils.TritonError(
                "execute() neither returned nor sent this request's response; send it with "
                "request.get_response_sender().send(response, flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL)"
            )
            responses.append(pb_utils.InferenceResponse(error=error))
            continue
        waited = 0
        while waited < SENDER_WAIT_S and not sender._final.wait(min(10, SENDER_WAIT_S - waited)):
            waited += min(10, SENDER_WAIT_S - waited)
            pb_utils.Logger.log_warn(
                f"Python model '{instance_name}' has sent no final response to request "
                f"'{request.request_id()}' after {waited:g} s (the instance waits for it, "
                f"{SENDER_WAIT_S:g} s at most); a model that is not decoupled sends each request's "
                "one response with flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL"
            )
        if sender._close():
            error = pb_utils.TritonError(
                f"the model sent no final response within {SENDER_WAIT_S:g} s of execute() returning; "
                "a model that is not decoupled sends each request's one response with "
                "flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL"
            )
            responses.append(pb_utils.InferenceResponse(error=error))
        else:
            responses.append(sender._response)
    return responses


def fail_open(pb_utils, requests, instance_name, error):
    """A decoupled model's async execute ended in error: its requests still
    open get the error as their last response."""
    if error is None:
        return
    message = f"Python model '{instance_name}' failed in its async execute: {error}"
    sys.stderr.write(message + "\n")
    for request in requests:
        sender = request._response_sender
        if not sender._closed:
            try:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except Exception:  # noqa: BLE001: closed meanwhile
                pass


def failure(stage, error):
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    message = getattr(error, "message", None)
    message = message() if callable(message) else str(error)
    return {"ok": False, "error": f"{stage}: {type(error).__name__}: {message}", "traceback": text}


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_forking = threading.local()


def _left_to_anemone(signum, frame):
    """SIGINT and SIGTERM: anemone ends this process (main)."""


def _block_signals():
    """Before a fork, in the thread that forks: _SIGNALS wait."""
    _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


def _unblock_signals():
    """After a fork, in the model's process: the mask as it was."""
    mask = getattr(_forking, "mask", None)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _restore_signals(previous):
    """In a process the model forks: the handlers Python started with,
    then the mask as it was (a signal sent meanwhile is taken now)."""
    for signum, handler in previous.items():
        try:
            signal.signal(signum, handler)
        except (ValueError, OSError):
            pass
    _unblock_signals()


def watch_parent():
    """Ends this process once anemone is gone (the parent changes: anemone
    exited, even killed), also while a model's execute() never returns,
    when nothing else would end it."""
    import time

    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def close_quietly(*files):
    for f in files:
        try:
            f.close()
        except OSError:
            pass


def main():
    # As Triton's stub does: SIGINT and SIGTERM sent to the whole process
    # group (a terminal's Ctrl-C, an init that forwards signals to the
    # group) are for anemone to act on, which ends this process after the
    # model's finalize(). Without this, Ctrl-C killed every model process
    # before its finalize ran. A handler that does nothing, not SIG_IGN,
    # which a program the model starts would inherit through exec; and a
    # process the model forks gets the usual handlers back, since
    # multiprocessing's Pool.terminate() (on leaving `with Pool()`) ends its
    # workers with SIGTERM and waits for them. The two signals are blocked
    # across the fork, so that one sent to the child before its handlers
    # are back is not lost to ours.
    previous = {signum: signal.signal(signum, _left_to_anemone) for signum in _SIGNALS}
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_block_signals,
            after_in_parent=_unblock_signals,
            after_in_child=partial(_restore_signals, previous),
        )
    model_py = sys.argv[1]
    # As in Triton's embedded interpreter: the model sees no command line
    # (unittest.main() in a model reads it).
    sys.argv = [""]
    threading.Thread(target=watch_parent, name="anemone-parent-watch", daemon=True).start()
    # The protocol takes the standard streams; the model's prints go to stderr.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    if hasattr(os, "register_at_fork"):
        # A process the model forks (without exec) does not keep anemone's
        # pipes open: if the model's process dies, anemone reads its end at
        # once, though the child lives on. The child's BLS requests go
        # through the model's process (_ForkProxy), not these pipes.
        os.register_at_fork(after_in_child=partial(close_quietly, proto_in, proto_out))
    sys.path.insert(0, os.path.dirname(os.path.abspath(model_py)))
    try:
        import types

        import numpy as np

        # anemone's triton_python_backend_utils, from the environment too.
        pb_utils = types.ModuleType("triton_python_backend_utils")
        pb_utils.__file__ = "triton_python_backend_utils.py"
        sys.modules["triton_python_backend_utils"] = pb_utils
        for variable, file_name in (("ANEMONE_PYTHON_UTILS", "triton_python_backend_utils.py"),
                                    ("ANEMONE_PYTHON_UTILS_CONFIG", "triton_python_backend_config.py"),
                                    ("ANEMONE_PYTHON_UTILS_METRICS", "triton_python_backend_metrics.py"),
                                    ("ANEMONE_PYTHON_UTILS_MODELS", "triton_python_backend_models.py"),
                                    ("ANEMONE_PYTHON_UTILS_RESPONSES", "triton_python_backend_responses.py")):
            exec(_anemone_code(variable, file_name), pb_utils.__dict__)
        metrics_fd = os.environ.pop("ANEMONE_PYTHON_METRICS_FD", None)
        if metrics_fd is not None:
            pb_utils._metrics = pb_utils._MetricsChannel(int(metrics_fd))

        # Imported as a module of its version's folder (Triton imports
        # "<version>.model"), so that `from . import helper` finds a file
        # beside it; under a name of anemone's own, which nothing else takes.
        package = types.ModuleType("_anemone_model_version")
        package.__path__ = [os.path.dirname(os.path.abspath(model_py))]
        package.__package__ = package.__name__
        sys.modules[package.__name__] = package
        stem = os.path.splitext(os.path.basename(model_py))[0]
        spec = importlib.util.spec_from_file_location(f"{package.__name__}.{stem}", model_py)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        sys.modules["model"] = module
        spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        channel = {"frames": Direct(proto_in, proto_out)}
        pb_utils._bls = bls_sender(pb_utils, np, channel)
        pb_utils._control = control_sender(pb_utils, np, channel)
    except BaseException as e:  # noqa: BLE001: every failure goes back to anemone
        header, _ = read_frame(proto_in)
        write_frame(proto_out, failure("importing model.py", e))
        return 1
    initialized = False
    runner = {}
    sequence = Sequence({})
    decoupled, instance_name = False, ""
    while True:
        if pb_utils._metrics is not None:
            pb_utils._metrics.flush()
        header, data = channel["frames"].next()
        if header is None:
            # anemone has gone (stopped, or killed): finalize all the same.
            if initialized and hasattr(model, "finalize"):
                channel["finalizing"] = True
                awaited(runner, model.finalize())
            return 0
        op = header.get("op")
        if op == "init":
            try:
                config = json.loads(header["args"]["model_config"])
                sequence = Sequence(config)
                instance_name = header["args"].get("model_instance_name", "")
                decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))
                if decoupled:
                    channel["frames"] = Frames(proto_in, proto_out)
                    pb_utils._bls_threadsafe = True
                    emit = response_emitter(pb_utils, np, proto_out)
                    cancelled, ended = cancel_reader(channel["frames"])
                if hasattr(model, "initialize"):
                    channel["frames"].begin_execute()
                    try:
                        awaited(runner, model.initialize(header["args"]))
                    finally:
                        channel["frames"].end_execute()
                initialized = True
                write_frame(proto_out, {"ok": True})
            except BaseException as e:  # noqa: BLE001
                write_frame(proto_out, failure("initialize", e))
                return 1
        elif op == "execute":
            try:
                requests, offset = [], 0
                for r in header["requests"]:
                    inputs = []
                    for t in r["inputs"]:
                        size = t["byte_size"]
                        inputs.append(pb_utils.Tensor(t["name"], decode_tensor(pb_utils, np, t, data[offset:offset + size])))
                        offset += size
                    correlation_id, flags = sequence.read(inputs)
                    # The request's own sequence, when it names one (any model, as in Triton).
                    correlation_id = r.get("correlation_id") or correlation_id
                    flags = r.get("flags") or flags
                    if sequence.iterative:
                        inputs += sequence.given(pb_utils, np, correlation_id, flags)
                    request = pb_utils.InferenceRequest(
                        inputs=inputs, request_id=r.get("request_id", ""),
                        correlation_id=correlation_id,
                        requested_output_names=r.get("requested_output_names", []),
                        parameters=r.get("parameters", "{}"), flags=flags,
                        model_name=r.get("model_name", ""), timeout=r.get("timeout_us", 0),
                    )
                    if decoupled:
                        request._response_sender = pb_utils.InferenceResponseSender(emit, r["key"], cancelled, ended)
                    elif "key" in r:
                        request._told_cancelled = partial(channel["frames"].is_cancelled, r["key"])
                    requests.append(request)
                channel["frames"].begin_execute()
                try:
                    responses = model.execute(requests)
                    if decoupled and inspect.iscoroutine(responses):
                        # Its requests are answered as it runs; the next come meanwhile.
                        if "coroutines" not in runner:
                            runner["coroutines"] = Coroutines()
                        runner["coroutines"].start(responses, partial(fail_open, pb_utils, requests, instance_name))
                        responses = None
                    else:
                        responses = awaited(runner, responses)
                finally:
                    channel["frames"].end_execute()
                # Requests to run again (set_release_flags(RESCHEDULE)), by index.
                rescheduled = [i for i, r in enumerate(requests) if r._rescheduled()]
                if decoupled:
                    if responses is not None:
                        raise pb_utils.TritonModelException(
                            f"Python model '{instance_name}' is using the decoupled mode and the execute "
                            "function must return None; send responses through "
                            "request.get_response_sender()"
                        )
                    write_frame(proto_out, {"ok": True, "responses": [], "rescheduled": rescheduled})
                    continue
                if rescheduled and isinstance(responses, (list, tuple)) and len(responses) == len(requests):
                    for i in rescheduled:
                        if responses[i] is not None:
                            # Triton's words (its typo too), which its tests look for.
                            raise pb_utils.TritonModelException(
                                "Expected a None object in the execute function return list for "
                                f"reschduled request, found type '{type(responses[i])}'."
                            )
                responses = sent_responses(pb_utils, requests, responses, instance_name)
                if not isinstance(responses, (list, tuple)) or len(responses) != len(requests):
                    if responses is None:
                        got = "None"
                    elif isinstance(responses, (list, tuple)):
                        got = f"{len(responses)} responses"
                    else:
                        got = f"a {type(responses).__name__}, not a list,"
                    raise pb_utils.TritonModelException(
                        f"execute() returned {got} for {len(requests)} requests; return a list with one "
                        "InferenceResponse per request, in order, or send each request's one response "
                        "with request.get_response_sender().send(response, "
                        "flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL) (or make the model decoupled: "
                        "model_transaction_policy { decoupled: true })"
                    )
                answers, blobs = [], []
                for i, response in enumerate(responses):
                    if i in rescheduled:
                        answers.append({"error": None, "outputs": [], "rescheduled": True})
                        continue
                    answers.append(encode_response(pb_utils, np, response, blobs))
                if pb_utils._metrics is not None:
                    pb_utils._metrics.flush(settled=True)
                write_frame(proto_out, {"ok": True, "responses": answers}, blobs)
            except BaseException as e:  # noqa: BLE001
                write_frame(proto_out, failure("execute", e))
        elif op == "auto_complete":
            try:
                complete = getattr(type(model), "auto_complete_config", None)
                config = None
                if complete is not None:
                    given = header["config"]
                    for key, empty in (("input", []), ("output", []), ("max_batch_size", 0)):
                        given.setdefault(key, empty)
                    result = complete(pb_utils.ModelConfig(json.dumps(given)))
                    if not isinstance(result, pb_utils.ModelConfig):
                        raise pb_utils.TritonModelException(
                            f"auto_complete_config returned {type(result).__name__}; return the "
                            "ModelConfig it was given (auto_complete_model_config)"
                        )
                    config = result.as_dict()
                write_frame(proto_out, {"ok": True, "config": config})
            except BaseException as e:  # noqa: BLE001
                write_frame(proto_out, failure("auto_complete_config", e))
        elif op == "finalize":
            try:
                if hasattr(model, "finalize"):
                    channel["finalizing"] = True
                    awaited(runner, model.finalize())
                write_frame(proto_out, {"ok": True})
            except BaseException as e:  # noqa: BLE001
                # anemone does not wait for this answer: the log says it.
                pb_utils.Logger.log_error(f"finalize() raised {type(e).__name__}: {e}")
                write_frame(proto_out, failure("finalize", e))
            return 0
        else:
            write_frame(proto_out, {"ok": False, "error": f"unknown operation {op!r}", "traceback": ""})


if __name__ == "__main__":
    sys.exit(main())
