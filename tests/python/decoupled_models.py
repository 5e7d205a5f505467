"""Decoupled test models for test_decoupled.py (model.py sources and configs)."""

STREAMS_CONFIG = """
backend: "python"
model_transaction_policy { decoupled: true }
model_warmup [ { name: "zeros" batch_size: 1 count: 2 inputs { key: "IN" value: { data_type: TYPE_INT32 dims: [ 3 ] zero_data: true } } } ]
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] }
]
"""

# What a request does is its `mode` parameter: `error` (an error response),
# `raise`, `return` (a list from execute()), `die` (the process ends after
# one response), `until_cancelled` (responses until is_cancelled(), then the
# count is kept), `report` (the counts kept), `bls` (add_sub called from a
# thread, once per value of IN: OUT = the sums).
STREAMS = '''
import json, os, threading, time
import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def out(values, index=0):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor("OUT", np.asarray(values, np.int32)),
        pb_utils.Tensor("IDX", np.array([index], np.uint32)),
    ])


class TritonPythonModel:
    def initialize(self, args):
        self.cancelled_after = []
        # Triton's helper, as TensorRT-LLM's model.py calls it.
        if not pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"])):
            raise pb_utils.TritonModelException("this model is decoupled; the helper said not")

    def execute(self, requests):
        for request in requests:
            mode = json.loads(request.parameters()).get("mode", "")
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            if mode == "error":
                error = pb_utils.TritonError("IN is not welcome", pb_utils.TritonError.INVALID_ARG)
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
            elif mode == "raise":
                raise ValueError("asked to raise")
            elif mode == "return":
                return [out(values)]
            elif mode == "die":
                sender.send(out(values))
                threading.Thread(target=lambda: (time.sleep(0.2), os._exit(3))).start()
            elif mode == "until_cancelled":
                threading.Thread(target=self.until_cancelled, args=(sender,)).start()
            elif mode == "report":
                sender.send(out(self.cancelled_after or [-1]), flags=FINAL)
            elif mode == "bls":
                threading.Thread(target=self.bls, args=(sender, values)).start()
            else:
                sender.send(out(values), flags=FINAL)
        return None

    def until_cancelled(self, sender):
        sent, deadline = 0, time.time() + 20
        while not sender.is_cancelled() and time.time() < deadline:
            sender.send(out([sent], sent))
            sent += 1
            time.sleep(0.01)
        self.cancelled_after.append(sent)
        sender.send(flags=FINAL)

    def bls(self, sender, values):
        for index, value in enumerate(values):
            request = pb_utils.InferenceRequest(
                model_name="add_sub",
                inputs=[pb_utils.Tensor("INPUT0", np.full(4, value, np.float32)),
                        pb_utils.Tensor("INPUT1", np.arange(4, dtype=np.float32))],
                requested_output_names=["OUTPUT0"],
            )
            response = request.exec()
            if response.has_error():
                sender.send(pb_utils.InferenceResponse(error=response.error()), flags=FINAL)
                return
            sums = pb_utils.get_output_tensor_by_name(response, "OUTPUT0").as_numpy()
            sender.send(out(sums.astype(np.int32), index))
        sender.send(flags=FINAL)
'''

BATCHED_CONFIG = """
backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 100000 }
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "BATCH" data_type: TYPE_UINT32 dims: [ 1 ] }
]
"""

# Two responses a request, IN then twice IN, each with the number of
# requests its execute() was given; sent from execute() itself.
BATCHED = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        batch = np.array([[len(requests)]], np.uint32)
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            for k, last in ((1, 0), (2, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)):
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("OUT", (x * k).astype(np.int32)),
                    pb_utils.Tensor("BATCH", batch),
                ]), flags=last)
        return None
'''

# Sends N responses of 16,384 FP32 values (64 KiB each) as fast as it can,
# until its client has gone; OUT's first value is the response's index.
FLOOD_CONFIG = """
name: "flood"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

FLOOD = '''
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            threading.Thread(target=self.flood, args=(request.get_response_sender(), n)).start()
        return None

    def flood(self, sender, n):
        block = np.zeros(16384, np.float32)
        for i in range(n):
            if sender.is_cancelled():
                break
            block[0] = i
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", block.copy())]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
'''
