"""A client's gRPC stream (tritonclient's start_stream / async_stream_infer)
for the stream tests: requests sent on it, and its (result, error) pairs
read back in arrival order."""
import queue
from functools import partial

import numpy as np
import pytest
import tritonclient.grpc as grpcclient


def tensor(name, values, datatype="INT32"):
    t = grpcclient.InferInput(name, list(np.shape(values)), datatype)
    t.set_data_from_numpy(np.asarray(values))
    return t


def final(result):
    """Whether a stream response is its request's last (`triton_final_response`)."""
    p = result.get_response().parameters.get("triton_final_response")
    return p is not None and p.bool_param


class Stream:
    """A client's stream, collecting (result, error) pairs in arrival order."""

    def __init__(self, addresses):
        self.client = grpcclient.InferenceServerClient(addresses["gRPC"])
        self.got = queue.Queue()
        self.client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), self.got))

    def send(self, model, inputs, **kw):
        self.client.async_stream_infer(model, inputs, **kw)

    def next(self, timeout=20):
        return self.got.get(timeout=timeout)

    def one(self, timeout=10):
        """The one answer of a request: nothing follows it."""
        got = self.next(timeout)
        with pytest.raises(queue.Empty):
            self.next(timeout=0.2)
        return got

    def until_final(self, count=None, timeout=20):
        """Responses until one is final (or `count` of them); errors end it too."""
        out = []
        while count is None or len(out) < count:
            result, error = self.next(timeout)
            out.append((result, error))
            if error is not None or (count is None and final(result)):
                break
        return out

    def close(self, cancel=False):
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()
