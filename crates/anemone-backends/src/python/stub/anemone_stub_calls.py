"""The Python process's requests to anemone: pb_utils._bls (a request to
another model, answered whole or as a stream) and pb_utils._control (model
loading), over the process's frames. Run in anemone_python_stub.py's
namespace (it execs this file from ANEMONE_PYTHON_CALLS), whose
decode_tensor, encode_tensor and write_frame it uses."""
import json
import os
import sys


def bls_sender(pb_utils, np, channel):
    """pb_utils._bls: sends a request to another model through anemone and
    gives its answer (exec()), or its responses as they come
    (exec(decoupled=True)), through channel["frames"] (Direct, or a
    decoupled model's Frames, from any thread)."""

    def answer(header, data):
        if header is None:
            error = pb_utils.TritonError("anemone stopped while a request to another model was running")
            return pb_utils.InferenceResponse(error=error)
        if not header.get("ok"):
            error = pb_utils.TritonError(header.get("error", "the request failed"), header.get("code", 1))
            return pb_utils.InferenceResponse(error=error)
        outputs, offset = [], 0
        for t in header.get("outputs", []):
            size = t["byte_size"]
            outputs.append(pb_utils.Tensor(t["name"], decode_tensor(pb_utils, np, t, data[offset:offset + size])))
            offset += size
        return pb_utils.InferenceResponse(outputs, parameters=header.get("parameters") or None)

    owner = os.getpid()

    def send(request, decoupled=False):
        if os.getpid() != owner:
            # A process the model forked (multiprocessing): its parent, the
            # model's process, sends the request for it.
            return _forked_call(pb_utils, np, request, decoupled)
        headers, blobs = [], []
        for tensor in request.inputs():
            spec, blob = encode_tensor(pb_utils, np, tensor)
            headers.append(spec)
            blobs.append(blob)
        ask = {
            "op": "bls", "model_name": request.model_name(), "model_version": request._model_version,
            "inputs": headers, "requested_output_names": request.requested_output_names(),
            "timeout_us": request._timeout, "parameters": json.loads(request.parameters()),
            "correlation_id": _correlation_id(pb_utils, request.correlation_id()), "flags": int(request.flags()),
        }
        may_send(pb_utils, channel, "InferenceRequest.exec()")
        frames = channel["frames"]
        if decoupled:
            ask["decoupled"] = True
            pull, cancel = frames.ask_stream(ask, blobs)
            return pb_utils.ResponseIterator(lambda: _decoded(pull, answer), cancel)
        header, data = frames.ask(ask, blobs)
        if header is None:
            raise pb_utils.TritonModelException("anemone stopped while a request to another model was running")
        return answer(header, data)

    _ForkProxy.install(pb_utils, send)
    return send


class _ForkProxy:
    """BLS from processes the model forks (`multiprocessing.Pool` in
    execute, as Triton's QA test_multiprocess does). A forked process
    shares the model process's channel to anemone, which it must not write
    to; instead it sends its request over a Unix socket to a thread of the
    model's process, which sends it to anemone as the model's own and
    answers with the response (pickled: names, numpy arrays, the error).
    The socket is made before the first fork (os.register_at_fork)."""

    path = None
    send = None
    pb_utils = None

    @classmethod
    def install(cls, pb_utils, send):
        cls.send, cls.pb_utils = send, pb_utils
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=cls._listen)

    @classmethod
    def _listen(cls):
        import socket
        import tempfile
        import threading

        if cls.path is not None:
            return
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        folder = None
        if sys.platform.startswith("linux"):
            # An abstract name: nothing on disk, so nothing is left behind
            # when the process is killed (atexit does not run then).
            path = "\0anemone-bls-%d-%s" % (os.getpid(), os.urandom(8).hex())
        else:
            folder = tempfile.mkdtemp(prefix="anemone-bls-")
            path = os.path.join(folder, "fork.sock")
        server.bind(path)
        server.listen(64)
        cls.path = path

        def accept():
            while True:
                connection, _ = server.accept()
                threading.Thread(target=cls._serve, args=(connection,), daemon=True).start()

        threading.Thread(target=accept, name="anemone-bls-forks", daemon=True).start()

        if folder is not None:
            import atexit
            import shutil

            atexit.register(shutil.rmtree, folder, True)

    @classmethod
    def _serve(cls, connection):
        import pickle

        pb_utils = cls.pb_utils
        with connection:
            while True:
                asked = _receive(connection)
                if asked is None:
                    return
                try:
                    request = pb_utils.InferenceRequest(
                        model_name=asked["model_name"], model_version=asked["model_version"],
                        inputs=[pb_utils.Tensor(n, a) for n, a in asked["inputs"]],
                        requested_output_names=asked["requested_output_names"], timeout=asked["timeout"],
                        parameters=asked["parameters"], correlation_id=asked["correlation_id"],
                        flags=asked["flags"])
                    response = cls.send(request)
                    if response.has_error():
                        answer = {"error": response.error().message(), "code": response.error().code()}
                    else:
                        answer = {"outputs": [(t.name(), t.as_numpy()) for t in response.output_tensors()],
                                  "parameters": json.loads(response.parameters())}
                except Exception as e:  # the forked process raises it
                    answer = {"raise": f"{type(e).__name__}: {e}"}
                _send_pickled(connection, pickle.dumps(answer))


_FORKED = {"pid": None, "socket": None}


def _forked_call(pb_utils, np, request, decoupled):
    """A forked process's BLS request, sent through its parent (_ForkProxy)."""
    import pickle
    import socket

    if decoupled:
        raise pb_utils.TritonModelException(
            "exec(decoupled=True) is not supported from a process the model forked (nor in Triton); "
            "call it from the model's own process"
        )
    if _ForkProxy.path is None:
        raise pb_utils.TritonModelException("this process was not forked from the model's process; BLS is "
                                            "available there and in processes it forks")
    if _FORKED["pid"] != os.getpid():
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(_ForkProxy.path)
        _FORKED.update(pid=os.getpid(), socket=connection)
    connection = _FORKED["socket"]
    asked = {
        "model_name": request.model_name(), "model_version": request._model_version,
        "inputs": [(t.name(), t.as_numpy()) for t in request.inputs()],
        "requested_output_names": request.requested_output_names(), "timeout": request._timeout,
        "parameters": request.parameters(), "correlation_id": request.correlation_id(),
        "flags": int(request.flags()),
    }
    _send_pickled(connection, pickle.dumps(asked))
    answer = _receive(connection)
    if answer is None:
        raise pb_utils.TritonModelException("the model's process closed the channel of this forked process")
    if "raise" in answer:
        raise pb_utils.TritonModelException(answer["raise"])
    if "error" in answer:
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(answer["error"], answer["code"]))
    return pb_utils.InferenceResponse([pb_utils.Tensor(n, a) for n, a in answer["outputs"]],
                                      parameters=answer["parameters"] or None)


def _send_pickled(connection, data):
    connection.sendall(len(data).to_bytes(8, "little") + data)


def _receive(connection):
    """One length-prefixed pickled message, or None at the end."""
    import pickle

    def exactly(n):
        chunks = []
        while n:
            chunk = connection.recv(min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    size = exactly(8)
    if size is None:
        return None
    data = exactly(int.from_bytes(size, "little"))
    return None if data is None else pickle.loads(data)


def _correlation_id(pb_utils, value):
    """A BLS request's correlation_id for the wire: a string, or a whole
    number (0 to 2**64 - 1; 0: none); anything else is refused, never
    rounded."""
    import numbers

    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= int(value) < 1 << 64:
        return int(value)
    raise pb_utils.TritonModelException(
        f"correlation_id {value!r} is neither a whole number (0 to 2**64 - 1) nor a string"
    )


def may_send(pb_utils, channel, what):
    """Refuses a request to anemone that the channel cannot carry now: from
    finalize() (anemone no longer answers them, as Triton does not), or,
    in a model that is not decoupled, once initialize() or execute() has
    returned (a thread of the model's calling later would race the main
    loop for anemone's frames; see Direct)."""
    if channel.get("finalizing"):
        raise pb_utils.TritonModelException(f"{what} cannot be called from finalize(), as in Triton")
    if not getattr(channel["frames"], "open", True):
        raise pb_utils.TritonModelException(
            f"{what} was called after initialize() or execute() returned (from a thread of the "
            "model's own); in a model that is not decoupled, call it while they run, from any of its "
            "threads (a decoupled model may call it at any time)"
        )


def control_sender(pb_utils, np, channel):
    """pb_utils._control: a model loading request (load, unload, ready)
    through anemone; raises TritonModelException with its error. `ready`
    answers its READY tensor's value."""

    def send(action, model_name, **fields):
        may_send(pb_utils, channel, {"load": "load_model", "unload": "unload_model"}.get(action, "is_model_ready"))
        ask = {"op": "bls", "control": action, "model_name": model_name, **fields}
        header, data = channel["frames"].ask(ask, [])
        if header is None:
            raise pb_utils.TritonModelException("anemone stopped while a model loading request was running")
        if not header.get("ok"):
            raise pb_utils.TritonModelException(header.get("error", "the request failed"))
        outputs = header.get("outputs", [])
        if not outputs:
            return None
        return decode_tensor(pb_utils, np, outputs[0], data[:outputs[0]["byte_size"]]).ravel()[0]

    return send


def _decoded(pull, answer):
    """A stream's next response, and whether it is the last."""
    header, data = pull()
    return answer(header, data), header is None or not header.get("more")
