"""Sends each value of IN back as a response of its own (the request's
parameter delay_ms apart), from a thread, so
that execute() returns at once and the instance takes the next requests
while this one's responses are still going out."""
import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []
        self.lock = threading.Lock()

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            delay_ms = json.loads(request.parameters()).get("delay_ms", 0)
            if not isinstance(delay_ms, (int, float)) or delay_ms < 0:
                error = pb_utils.TritonError(
                    f"parameter delay_ms is {delay_ms!r}; give a number of milliseconds, 0 or more",
                    pb_utils.TritonError.INVALID_ARG,
                )
                request.get_response_sender().send(
                    pb_utils.InferenceResponse(error=error),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
                continue
            thread = threading.Thread(target=self.repeat, args=(request.get_response_sender(), values, delay_ms / 1000))
            thread.start()
            with self.lock:
                self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        # A decoupled model's execute() returns None.
        return None

    def repeat(self, sender, values, delay):
        for index, value in enumerate(values):
            if index > 0:
                time.sleep(delay)
            if sender.is_cancelled():
                break
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([value], np.int32)),
                pb_utils.Tensor("IDX", np.array([index], np.uint32)),
            ]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join()
