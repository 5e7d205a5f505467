"""SCALED = X * FACTOR (the config's parameter FACTOR)."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.factor = np.float32(config["parameters"]["FACTOR"]["string_value"])

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor("SCALED", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * self.factor)
            ])
            for r in requests
        ]
