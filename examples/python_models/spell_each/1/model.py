"""Sends each code point of CODES as a response of its own, 100 ms apart,
from a thread, until the client has gone (the ensemble `spell`'s decoupled
step, as a model generating tokens would be)."""
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            codes = pb_utils.get_input_tensor_by_name(request, "CODES").as_numpy()
            threading.Thread(target=self.each, args=(request.get_response_sender(), codes), daemon=True).start()
        return None

    def each(self, sender, codes):
        for index, code in enumerate(codes):
            if index > 0:
                time.sleep(0.1)
            if sender.is_cancelled():
                break
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("CODE", np.array([code], np.int32))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
