"""A code point as its upper-case letter (the ensemble `spell`'s last step,
as a detokenizer would be)."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            code = int(pb_utils.get_input_tensor_by_name(request, "CODE").as_numpy()[0])
            letter = np.array([chr(code).upper().encode("utf-8")], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LETTER", letter)]))
        return responses
