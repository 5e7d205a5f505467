"""Counts down from IN, one answer a run of execute: the request is
rescheduled (TRITONSERVER_REQUEST_RELEASE_RESCHEDULE) until the count is
spent, as an iterative generator is (Triton's request rescheduling, with
sequence_batching { iterative_sequence: true }). What is left is kept by
the request's correlation ID, which the server gives each request."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.left = {}

    def execute(self, requests):
        for request in requests:
            key = request.correlation_id()
            if request.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START:
                self.left[key] = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            self.left[key] -= 1
            response = pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([self.left[key]], np.int32))])
            sender = request.get_response_sender()
            if self.left[key] <= 0:
                del self.left[key]
                sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                sender.send(response)
        return None
