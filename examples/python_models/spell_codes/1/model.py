"""A text's characters as Unicode code points (the ensemble `spell`'s first
step, as a tokenizer would be)."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().ravel()[0].decode("utf-8")
            codes = np.array([ord(c) for c in text], dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("CODES", codes)]))
        return responses
