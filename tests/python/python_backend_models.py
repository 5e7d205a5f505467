"""The model.py sources and configs that tests/python/test_python_backend.py
writes into its repository, beside the examples of examples/python_models."""

CRASH = '''
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "finalized")

    def execute(self, requests):
        out = []
        mixed = len({tuple(t.name() for t in r.inputs()) for r in requests})
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if x[0] < 0:
                os._exit(7)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("PID", np.array([os.getpid()], np.int64))]))
        return out

    def finalize(self):
        open(self.marker, "w").write("finalized")
'''

# Asks a model that is not there, and answers with the error exec() gave.
CALLS_NOBODY = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X")
            response = pb_utils.InferenceRequest(model_name="nobody", inputs=[x], requested_output_names=["Y"]).exec()
            assert response.has_error()
            out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("exec said: " + response.error().message())))
        return out
'''


# DLPack, as torch-based models use it: Y through a bare capsule, Z from an
# object that exports one.
DLPACK = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X")
            y = pb_utils.Tensor.from_dlpack("Y", x.to_dlpack())
            z = pb_utils.Tensor.from_dlpack("Z", np.from_dlpack(x) * 2)
            out.append(pb_utils.InferenceResponse([y, z]))
        return out
'''


# Reports which environment runs it: the wrapper script that stands for
# the environment's bin/python3 sets WHICH_ENV.
WHICH_ENV = '''
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        env = os.environ.get("WHICH_ENV", "none") + ":" + os.environ.get("LD_LIBRARY_PATH", "").split(":")[0]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("ENV", np.array([env], dtype=np.object_))]) for _ in requests]
'''


# A running sum per sequence, kept in Python by correlation ID (from the
# CORRID control) and reset by the START flag, as Triton's Python sequence
# models keep theirs.
RUNNING_SUM = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        out = []
        for r in requests:
            key = r.correlation_id()
            if r.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START:
                self.sums[key] = 0
            self.sums[key] += int(pb_utils.get_input_tensor_by_name(r, "X").as_numpy().sum())
            total = np.array([[self.sums[key]]], dtype=np.int32)
            if r.flags() & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END:
                del self.sums[key]
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", total)]))
        return out
'''

# Echoes each request's id and parameters, and counts the requests
# execute() has seen; a negative X is refused (INVALID_ARG) by itself.
ECHO_PARAMS = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.seen = 0

    def execute(self, requests):
        self.seen += len(requests)
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            if x[0, 0] < 0:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("X is negative", pb_utils.TritonError.INVALID_ARG)))
                continue
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("PARAMS", np.array([[r.parameters()]], dtype=np.object_)),
                pb_utils.Tensor("ID", np.array([[r.request_id()]], dtype=np.object_)),
                pb_utils.Tensor("BATCH", np.array([[len(requests)]], dtype=np.int32)),
                pb_utils.Tensor("SEEN", np.array([[self.seen]], dtype=np.int64)),
            ]))
        return out
'''

ECHO_PARAMS_CONFIG = """
backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 50000 }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [
  { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "ID" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "BATCH" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "SEEN" data_type: TYPE_INT64 dims: [ 1 ] }
]
"""

# Sends echo_params a request with parameters of its own (exec()).
FORWARDS_PARAMS = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X")
            answer = pb_utils.InferenceRequest(
                model_name="echo_params", inputs=[x], requested_output_names=["PARAMS"],
                parameters={"via": "exec", "n": 2},
            ).exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            out.append(pb_utils.InferenceResponse([pb_utils.get_output_tensor_by_name(answer, "PARAMS")]))
        return out
'''

# Declares its tensors, batch size and batching in auto_complete_config, as
# Triton's auto-complete example does; its config.pbtxt names only the backend.
AUTO_COMPLETE = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [3]})
        auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [3]})
        auto_complete_model_config.set_max_batch_size(4)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 3)])
                for r in requests]
'''

# Writes what initialize() is told of its instance, one line per instance.
INSTANCES = '''
import json, os
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        told = [args["model_instance_name"], args["model_instance_kind"], args["model_instance_device_id"]]
        with open(os.path.join(args["model_repository"], "instances.txt"), "a") as f:
            f.write(json.dumps(told) + "\\n")
        with open(os.path.join(args["model_repository"], "configs.txt"), "a") as f:
            f.write(json.dumps(json.loads(args["model_config"])) + "\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
'''

SEQUENCE_CONFIG = """
backend: "python"
max_batch_size: 1
sequence_batching {
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "SUM" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""


BAD_INIT = '''
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("cannot find weights.bin")

    def execute(self, requests):
        return []
'''

OPTIONAL_CONFIG = """
backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 300000 }
input [
  { name: "X" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "SCALE" data_type: TYPE_FP32 dims: [ 1 ] optional: true }
]
output [
  { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "GIVEN" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "BATCH" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "MIXED" data_type: TYPE_INT32 dims: [ 1 ] }
]
"""

# Y = X * SCALE, or X when the request left SCALE out; GIVEN names the
# inputs the request gave; BATCH is how many requests execute() got, MIXED
# how many different sets of inputs they gave.
OPTIONAL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        mixed = len({tuple(t.name() for t in r.inputs()) for r in requests})
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            scale = pb_utils.get_input_tensor_by_name(r, "SCALE")
            y = x * scale.as_numpy() if scale is not None else x
            given = ",".join(t.name() for t in r.inputs()).encode()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", y.astype(np.float32)),
                pb_utils.Tensor("GIVEN", np.full((x.shape[0], 1), given, dtype=np.object_)),
                pb_utils.Tensor("BATCH", np.full((x.shape[0], 1), len(requests), np.int32)),
                pb_utils.Tensor("MIXED", np.full((x.shape[0], 1), mixed, np.int32)),
            ]))
        return out
'''
