"""anemone's `triton_python_backend_utils`: the part of Triton's Python
backend utilities that a model.py uses to read its requests and write its
answers, over anemone's Python process (anemone_python_stub.py).

What is here: Tensor (as_numpy, name, is_cpu), InferenceRequest's accessors
(inputs, request_id, correlation_id, parameters, requested_output_names,
flags), InferenceResponse (output_tensors, has_error, error), TritonError
with Triton's codes, TritonModelException, Logger, the config helpers
(get_input_config_by_name, get_output_config_by_name,
get_input_tensor_by_name, get_output_tensor_by_name) and the dtype helpers
(triton_string_to_numpy, numpy_to_triton_type, triton_to_numpy_type,
serialize_byte_tensor, deserialize_bytes_tensor), and business-logic
scripting (InferenceRequest(...).exec() and async_exec()), DLPack in host
memory (Tensor.to_dlpack, Tensor.from_dlpack), ModelConfig for a
model's auto_complete_config, a decoupled model's InferenceResponseSender,
streams from decoupled models (exec(decoupled=True), ResponseIterator),
and custom metrics (MetricFamily, Metric) for the server's /metrics, which
triton_python_backend_metrics.py adds to this module. ModelConfig, the
config helpers and Logger are in triton_python_backend_config.py, which
follows this file in the same module.
"""
import json
import struct
import sys

import numpy as np

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_GPU = 1

# Triton's data type names (config and KServe) and numpy's types.
_CONFIG_TO_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}
# The wire's names: KServe's, as requests carry them.
_WIRE_TO_NUMPY = {k[5:].replace("STRING", "BYTES"): v for k, v in _CONFIG_TO_NUMPY.items()}
_NUMPY_TO_WIRE = {np.dtype(v): k for k, v in _WIRE_TO_NUMPY.items() if v is not np.object_}
# Triton's TRITONSERVER_DataType numbers, as its numpy_to_triton_type gives them.
_WIRE_NUMBERS = {"BOOL": 1, "UINT8": 2, "UINT16": 3, "UINT32": 4, "UINT64": 5, "INT8": 6, "INT16": 7,
                 "INT32": 8, "INT64": 9, "FP16": 10, "FP32": 11, "FP64": 12, "BYTES": 13}
_NUMBER_TO_NUMPY = {n: _WIRE_TO_NUMPY[name] for name, n in _WIRE_NUMBERS.items()}
# Triton's table of config type names to numpy types.
TRITON_STRING_TO_NUMPY = dict(_CONFIG_TO_NUMPY)


def triton_string_to_numpy(triton_type_string):
    """numpy's type for a config data type (`TYPE_FP32`) or a KServe one (`FP32`)."""
    if triton_type_string in _CONFIG_TO_NUMPY:
        return _CONFIG_TO_NUMPY[triton_type_string]
    return _WIRE_TO_NUMPY.get(triton_type_string)


def triton_to_numpy_type(data_type):
    """numpy's type for a TRITONSERVER_DataType number (11: np.float32), or
    None, as Triton's."""
    return _NUMBER_TO_NUMPY.get(data_type)


def numpy_to_triton_type(data_type):
    """The TRITONSERVER_DataType number of a numpy type (np.float32: 11;
    13 for strings), or None, as Triton's."""
    return _WIRE_NUMBERS.get(_wire_name(data_type))


def _wire_name(data_type):
    """The KServe data type name of a numpy type ('BYTES' for strings), or None."""
    try:
        dtype = np.dtype(data_type)
    except TypeError:
        return None
    if dtype == np.object_ or dtype.kind in "SU":
        return "BYTES"
    return _NUMPY_TO_WIRE.get(dtype)


def wire_datatype(array):
    """The KServe data type name an output array is sent as."""
    name = _wire_name(array.dtype)
    if name is None:
        raise TritonModelException(
            f"numpy dtype {array.dtype} has no Triton data type; convert the output to one of "
            + ", ".join(sorted(_WIRE_TO_NUMPY))
        )
    return name


def serialize_byte_tensor(input_tensor):
    """Triton's serialization of a BYTES tensor: each element's length (4
    bytes, little-endian) then its bytes, in C order; returned as bytes
    (`()` for an empty tensor, None for a numeric one), as Triton's."""
    if input_tensor.size == 0:
        return ()
    if input_tensor.dtype != np.object_ and input_tensor.dtype.kind not in "SU":
        return None
    parts = []
    for item in input_tensor.flatten(order="C"):
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif isinstance(item, (np.bytes_, bytes, bytearray)):
            item = bytes(item)
        else:
            item = str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(item)))
        parts.append(item)
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor):
    """The elements of a serialized BYTES tensor as a 1-D object array of bytes."""
    data = bytes(encoded_tensor)
    items, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        items.append(data[offset:offset + length])
        offset += length
    return np.array(items, dtype=np.object_)


class TritonError(Exception):
    """An error for one request's answer (`InferenceResponse(error=...)`)."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message, code=INTERNAL):
        super().__init__(message)
        self._message = message
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code


class TritonModelException(Exception):
    """Raised by these utilities for a model's mistake."""

    def __init__(self, message):
        super().__init__(message)
        self._message = message

    def message(self):
        return self._message


class Tensor:
    """A named tensor: an input of a request or an output of an answer."""

    def __init__(self, name, data, *args, **kwargs):
        # As Triton's binding: a name that is not a string, or no data, is
        # a TypeError.
        if not isinstance(name, str) or data is None:
            raise TypeError(
                f"Tensor(name, data): name is a str and data a numpy array (got "
                f"{type(name).__name__}, {type(data).__name__})"
            )
        if not isinstance(data, np.ndarray):
            raise TritonModelException(
                f"Tensor '{name}': the data must be a numpy array (got {type(data).__name__}); "
                "for a DLPack tensor (torch), use pb_utils.Tensor.from_dlpack"
            )
        if data.dtype.kind in "SU":
            data = data.astype(np.object_)
        if _wire_name(data.dtype) is None:
            # As Triton's, at construction, where the model can catch it.
            raise TritonModelException("NumPy dtype is not supported.")
        self._name = name
        self._array = data

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    def is_cpu(self):
        return True

    def shape(self):
        return list(self._array.shape)

    def triton_dtype(self):
        return numpy_to_triton_type(self._array.dtype)

    def to_dlpack(self):
        """A DLPack capsule of the tensor (host memory), for
        torch.utils.dlpack.from_dlpack and the like."""
        if self._array.dtype == np.object_:
            raise TritonModelException("DLPack does not have support for string tensors.")
        return np.ascontiguousarray(self._array).__dlpack__()

    def __dlpack__(self, stream=None):
        return self.to_dlpack()

    def __dlpack_device__(self):
        return (1, 0)

    @staticmethod
    def from_dlpack(name, tensor):
        """A Tensor from a DLPack capsule or an object that exports one (a
        torch tensor, a numpy array): its values, copied to host memory if
        they are on a device (through the object's .cpu())."""
        if tensor is None:
            raise TritonModelException(f"Tensor.from_dlpack('{name}'): no tensor (None) given")
        source = tensor
        if not hasattr(source, "__dlpack__"):
            source = _Capsule(tensor)
        try:
            array = np.from_dlpack(source)
        except (RuntimeError, BufferError, TypeError, ValueError) as e:
            if hasattr(tensor, "cpu"):
                array = np.from_dlpack(tensor.cpu())
            else:
                raise TritonModelException(
                    f"Tensor.from_dlpack('{name}'): {e}; anemone takes tensors in host memory"
                ) from e
        return Tensor(name, np.array(array, copy=True))


# Set by anemone's stub while execute() runs: sends a request to another
# model and returns its InferenceResponse; _bls_threadsafe when it may be
# called from any thread (a decoupled model's).
_bls = None
_bls_threadsafe = False


class _Capsule:
    """A bare DLPack capsule, as numpy's from_dlpack takes it (host memory)."""

    def __init__(self, capsule):
        self._capsule = capsule

    def __dlpack__(self, stream=None, **kwargs):
        return self._capsule

    def __dlpack_device__(self):
        return (1, 0)


def _text(name):
    return name.decode("utf-8") if isinstance(name, (bytes, bytearray)) else name


_UNSET = object()


def _check_request_args(kwargs):
    """InferenceRequest's arguments, checked as Triton's binding checks
    them: a wrong type is a TypeError, an input that is not a Tensor a
    TritonModelException."""
    text = (str, bytes, bytearray)
    # Required, as in Triton's binding (its keyword-only constructor).
    missing = [k for k in ("model_name", "inputs", "requested_output_names") if k not in kwargs]
    if missing:
        raise TypeError(
            "InferenceRequest() missing required argument(s): " + ", ".join(missing)
            + "; give model_name=..., inputs=[...] and requested_output_names=[...]"
        )
    kinds = {
        "model_name": text, "request_id": (str,), "correlation_id": (int, str), "model_version": (int,),
        "flags": (int,), "timeout": (int,), "parameters": (str, dict),
    }
    for key, allowed in kinds.items():
        if key in kwargs and not isinstance(kwargs[key], allowed):
            raise TypeError(f"InferenceRequest({key}=...) does not take {type(kwargs[key]).__name__}")
    for key in ("inputs", "requested_output_names"):
        if key in kwargs and not isinstance(kwargs[key], (list, tuple)):
            raise TypeError(f"InferenceRequest({key}=...) takes a list, not {type(kwargs[key]).__name__}")
    if any(not isinstance(n, text) for n in kwargs.get("requested_output_names", [])):
        raise TypeError("InferenceRequest(requested_output_names=...) takes a list of str")
    if any(not isinstance(t, Tensor) for t in kwargs.get("inputs", [])):
        raise TritonModelException("InferenceRequest(inputs=...): every input must be a pb_utils.Tensor")


class InferenceRequest:
    """One request as execute() receives it, or a request the model builds
    to send another model of the server (`exec()`, Triton's business-logic
    scripting): InferenceRequest(model_name=..., inputs=[...],
    requested_output_names=[...], model_version=-1, timeout=0)."""

    def __init__(self, *args, **kwargs):
        _check_request_args(kwargs)
        self._inputs = kwargs.get("inputs", [])
        self._request_id = kwargs.get("request_id", "")
        self._correlation_id = kwargs.get("correlation_id", 0)
        # Names given as bytes (a TYPE_STRING input's element) are strings,
        # as Triton's binding makes them.
        self._requested = [_text(n) for n in kwargs.get("requested_output_names", [])]
        self._parameters = kwargs.get("parameters", "{}")
        self._flags = kwargs.get("flags", 0)
        self._model_name = _text(kwargs.get("model_name", ""))
        self._model_version = int(kwargs.get("model_version", -1))
        self._timeout = int(kwargs.get("timeout", 0))

    def inputs(self):
        return list(self._inputs)

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        return self._correlation_id

    def requested_output_names(self):
        return list(self._requested)

    def parameters(self):
        """The request's parameters as a JSON object, e.g. '{"k":1}'; '{}' when
        it has none (the ones the server acts on, such as priority and
        timeout, are not among them, as in Triton)."""
        if isinstance(self._parameters, str):
            return self._parameters
        return json.dumps(self._parameters, separators=(",", ":"))

    def flags(self):
        return self._flags

    def set_flags(self, flags):
        """The request's sequence flags (TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
        _END), as Triton's set_flags."""
        if not isinstance(flags, int):
            raise TypeError(f"set_flags() takes an int, not {type(flags).__name__}")
        self._flags = flags

    def model_name(self):
        return self._model_name

    def timeout(self):
        """The timeout a request built here was given, in microseconds (0:
        none); a received request's is not passed to the model by anemone."""
        return self._timeout

    def set_release_flags(self, flags):
        """Triton's request rescheduling: with
        TRITONSERVER_REQUEST_RELEASE_RESCHEDULE the request runs again in a
        later execute (a model with sequence_batching { iterative_sequence:
        true }); a model that is not decoupled returns None for it this time."""
        if not isinstance(flags, int):
            raise TypeError(f"set_release_flags() takes an int, not {type(flags).__name__}")
        self._release_flags = flags

    def release_flags(self):
        return getattr(self, "_release_flags", TRITONSERVER_REQUEST_RELEASE_ALL)

    def _rescheduled(self):
        return bool(self.release_flags() & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)

    def is_cancelled(self):
        """Whether the request's client has gone (closed its connection,
        cancelled, or its deadline passed), as anemone tells it within 20 ms."""
        sender = getattr(self, "_response_sender", None)
        if sender is not None:
            return sender.is_cancelled()
        told = getattr(self, "_told_cancelled", None)
        return told() if told is not None else False

    def get_response_sender(self):
        """The request's InferenceResponseSender: a decoupled model's sends
        any number of responses; another model's sends the request's one
        response, with flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL (execute
        then returns None), as in Triton."""
        sender = getattr(self, "_response_sender", None)
        if sender is None:
            sender = self._response_sender = _OneResponseSender(getattr(self, "_told_cancelled", None))
        return sender

    def exec(self, decoupled=False):
        """Runs this request on model `model_name` and returns its
        InferenceResponse; a failure is the response's error(), as in Triton.
        With decoupled=True, a ResponseIterator of the model's responses as
        they come (a decoupled model's any number, the last possibly empty;
        another model's one)."""
        if _bls is None:
            raise TritonModelException("InferenceRequest.exec() can be called only while execute() or initialize() runs")
        return _bls(self, bool(decoupled))

    async def async_exec(self, decoupled=False):
        """exec(), awaited: in a decoupled model on a thread of the event
        loop's executor, so that its other coroutines run meanwhile; in
        another model, exec() itself (its calls go one at a time)."""
        if _bls_threadsafe:
            import asyncio

            return await asyncio.get_running_loop().run_in_executor(None, self.exec, decoupled)
        return self.exec(decoupled)


class PreferredMemory:
    """Where a BLS call's outputs should go (Triton's); anemone's are in CPU
    memory whatever is asked."""

    def __init__(self, preferred_memory_type=TRITONSERVER_MEMORY_CPU, preferred_device_id=0):
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


def _check_response_parameters(parameters):
    """A response's parameters as Triton's binding checks them: None, or a
    dict of str keys to bool, int or str values."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise TritonModelException(f"Expect dict, got {type(parameters)}")
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(f"Expect parameters keys to have type str, found type {type(key)}")
        if not isinstance(value, (bool, int, str)):
            raise TritonModelException(
                f"Expect parameters values to have type bool/int/str, found type {type(value)}"
            )


class InferenceResponse:
    """The answer to one request: its output tensors, or an error."""

    def __init__(self, output_tensors=_UNSET, error=None, parameters=None):
        # As Triton's binding: output_tensors=None is a TypeError, a None in
        # it a TritonModelException.
        if output_tensors is None:
            raise TypeError("InferenceResponse(output_tensors=...) takes a list of pb_utils.Tensor, not None")
        self._outputs = [] if output_tensors is _UNSET else list(output_tensors)
        if any(not isinstance(t, Tensor) for t in self._outputs):
            raise TritonModelException("InferenceResponse: every output tensor must be a pb_utils.Tensor")
        if error is not None and not isinstance(error, TritonError):
            error = TritonError(str(error))
        self._error = error
        _check_response_parameters(parameters)
        self._parameters = parameters

    def parameters(self):
        """The response's parameters as a JSON object ('{}' without any)."""
        if isinstance(self._parameters, str):
            return self._parameters
        return json.dumps(self._parameters or {}, separators=(",", ":"))

    def output_tensors(self):
        return list(self._outputs)

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


def get_input_tensor_by_name(inference_request, name):
    """The request's input `name`, or None."""
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response, name):
    """The answer's output `name`, or None."""
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_model_dir():
    """The folder of the model's version, where its model.py is, as Triton's."""
    import os

    return os.environ.get("ANEMONE_PYTHON_MODEL_DIR", "")
