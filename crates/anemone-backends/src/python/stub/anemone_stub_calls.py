"""The Python process's requests to anemone: pb_utils._bls (a request to
another model, answered whole or as a stream) and pb_utils._control (model
loading), over the process's frames. Run in anemone_python_stub.py's
namespace (it execs this file from ANEMONE_PYTHON_CALLS), whose
decode_tensor, encode_tensor and write_frame it uses."""
import json


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

    def send(request, decoupled=False):
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

    return send


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
