# The response senders and the BLS response iterator of anemone's
# triton_python_backend_utils (InferenceResponseSender, ResponseIterator,
# and the sender of a model that is not decoupled), run in its namespace by
# anemone's stub.


class InferenceResponseSender:
    """Sends a decoupled model's responses to one request, from execute()
    or from any thread, before or after execute() returns: send(response,
    flags=0) for each, and flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL with
    (or without) the last one; nothing can be sent after it."""

    def __init__(self, emit, key, cancelled, ended):
        self._emit = emit
        self._key = key
        self._cancelled = cancelled
        self._ended = ended
        self._closed = False

    def send(self, response=None, flags=0):
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        if response is None and not final:
            raise TritonModelException(
                "send() needs a response, or flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL to end the request"
            )
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException(f"send() takes an InferenceResponse, not {type(response).__name__}")
        if final:
            self._closed = True
            self._ended(self._key)
        self._emit(self._key, response, final)

    def is_cancelled(self):
        """Whether the client has gone (it closed or cancelled its stream);
        told by anemone within 20 ms, read here without asking."""
        return self._cancelled(self._key)


class ResponseIterator:
    """The responses of InferenceRequest.exec(decoupled=True), each as it
    comes (iterate over it): an InferenceResponse each, the last one
    possibly empty (a model that sent the final flag alone), a failure as
    a response's error(). cancel() stops the request: the called model's
    is_cancelled() turns true, and the next response is an error with
    TritonError.CANCELLED, the last."""

    def __init__(self, pull, cancel):
        self._pull, self._cancel = pull, cancel
        self._done = self._cancelled = False
        # Every response so far: once an iteration has ended, the next one
        # goes over them again; one broken off goes on where it stopped, as
        # Triton's iterator does.
        self._seen = []
        self._at = 0
        self._ended = False

    def __iter__(self):
        if self._ended:
            self._at, self._ended = 0, False
        return self

    def __next__(self):
        if self._at < len(self._seen):
            self._at += 1
            return self._seen[self._at - 1]
        if self._done:
            self._ended = True
            raise StopIteration
        if self._cancelled:
            self._done = True
            response = InferenceResponse(error=TritonError("the request was cancelled", TritonError.CANCELLED))
        else:
            response, last = self._pull()
            self._done = last
        self._seen.append(response)
        self._at += 1
        return response

    def cancel(self):
        if not self._done and not self._cancelled:
            self._cancelled = True
            self._cancel()


class _OneResponseSender:
    """The response sender of a model that is not decoupled: one response,
    with the final flag (now or in a later send of the flag alone), from
    any thread, before or after execute() returns."""

    def __init__(self, told=None):
        import threading

        self._lock = threading.Lock()
        self._final = threading.Event()
        self._response = None
        self._told = told

    def send(self, response=None, flags=0):
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException(f"send() takes an InferenceResponse, not {type(response).__name__}")
        with self._lock:
            if self._final.is_set():
                raise TritonModelException("Unable to send response. Response sender has been closed.")
            if response is None and self._response is None:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send complete final before "
                    "sending a response."
                    if final else "send() needs a response"
                )
            if response is not None and self._response is not None:
                raise TritonModelException(
                    "Unable to send response. A model that is not decoupled sends one response per "
                    "request; make it decoupled (model_transaction_policy { decoupled: true }) to send more"
                )
            if response is not None:
                self._response = response
            if final:
                self._final.set()

    def is_cancelled(self):
        return self._told() if self._told is not None else False

    def _unused(self):
        """Whether nothing was sent through it."""
        with self._lock:
            return self._response is None and not self._final.is_set()

    def _close(self):
        """Closes the sender; True when it had not sent its final flag."""
        with self._lock:
            if self._final.is_set():
                return False
            self._final.set()
            self._response = None
            return True
