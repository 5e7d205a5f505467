"""Python models for test_bls_streams.py: models that call others with
InferenceRequest.exec(decoupled=True)."""

# Not decoupled: sends IN to the model named by the parameter `target`
# (default: repeat) as a stream, and answers what it read: the sum of the
# OUT values, how many responses, how many of them empty, and the errors
# (code and message, one per line). Parameters: `cancel_at` (cancel once the
# sum reaches it), `read` (stop reading after so many responses, without
# cancelling), `add` (for each response, also ask add_sub, with exec(), for
# OUT + 1 while the stream is open), `delay_ms` (passed on).
SUM_STREAM = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            params = json.loads(request.parameters())
            values = pb_utils.get_input_tensor_by_name(request, "IN")
            stream = pb_utils.InferenceRequest(
                model_name=params.get("target", "repeat"), inputs=[pb_utils.Tensor("IN", values.as_numpy())],
                requested_output_names=params.get("outputs", "OUT,IDX").split(","),
                parameters={"delay_ms": params.get("delay_ms", 0)},
            ).exec(decoupled=True)
            total = count = empty = added = 0
            errors = []
            for response in stream:
                count += 1
                if response.has_error():
                    errors.append(f"{response.error().code()} {response.error().message()}")
                    continue
                out = pb_utils.get_output_tensor_by_name(response, "OUT")
                if out is None:
                    empty += 1
                    continue
                total += int(out.as_numpy().sum())
                if params.get("add"):
                    four = np.full(4, out.as_numpy().ravel()[0], np.float32)
                    summed = pb_utils.InferenceRequest(
                        model_name="add_sub",
                        inputs=[pb_utils.Tensor("INPUT0", four), pb_utils.Tensor("INPUT1", np.ones_like(four))],
                        requested_output_names=["OUTPUT0"],
                    ).exec()
                    added += int(pb_utils.get_output_tensor_by_name(summed, "OUTPUT0").as_numpy()[0])
                if "cancel_at" in params and total >= params["cancel_at"]:
                    stream.cancel()
                if "read" in params and count >= params["read"]:
                    break
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SUM", np.array([total], np.int64)),
                pb_utils.Tensor("COUNT", np.array([count], np.int64)),
                pb_utils.Tensor("EMPTY", np.array([empty], np.int64)),
                pb_utils.Tensor("ADDED", np.array([added], np.int64)),
                pb_utils.Tensor("ERRORS", np.array(["\\n".join(errors)], np.object_)),
            ]))
        return responses
'''

SUM_STREAM_CONFIG = """
name: "sum_stream"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "SUM" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "COUNT" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "EMPTY" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "ADDED" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "ERRORS" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

# Decoupled: passes each response of `target` (default repeat) on to its
# own client as it comes, OUT doubled, from a thread of its own; with
# `stop_after`, cancels the stream after so many and passes on the error
# that follows.
RELAY = '''
import json
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            params = json.loads(request.parameters())
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            threading.Thread(target=self.relay, args=(request.get_response_sender(), values, params)).start()
        return None

    def relay(self, sender, values, params):
        stream = pb_utils.InferenceRequest(
            model_name=params.get("target", "repeat"), inputs=[pb_utils.Tensor("IN", values)],
            requested_output_names=["OUT", "IDX"], parameters={"delay_ms": params.get("delay_ms", 0)},
        ).exec(decoupled=True)
        relayed = 0
        for response in stream:
            if response.has_error():
                sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                return
            out = pb_utils.get_output_tensor_by_name(response, "OUT")
            if out is None:
                continue
            idx = pb_utils.get_output_tensor_by_name(response, "IDX")
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out.as_numpy() * 2), idx]))
            relayed += 1
            if relayed == params.get("stop_after"):
                stream.cancel()
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
'''

RELAY_CONFIG = """
name: "relay"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] }
]
"""

# Decoupled: like repeat (one response per value of IN, delay_ms apart,
# until is_cancelled()), counting what it sent into a custom metric.
TICKER = '''
import json
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.family = pb_utils.MetricFamily(
            name="ticker_sent_total", description="Responses sent", kind=pb_utils.MetricFamily.COUNTER)
        self.sent = self.family.Metric(labels={})

    def execute(self, requests):
        for request in requests:
            delay = json.loads(request.parameters()).get("delay_ms", 0) / 1000
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            threading.Thread(target=self.tick, args=(request.get_response_sender(), values, delay)).start()
        return None

    def tick(self, sender, values, delay):
        for index, value in enumerate(values):
            time.sleep(delay)
            if sender.is_cancelled():
                break
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([value], np.int32)),
                pb_utils.Tensor("IDX", np.array([index], np.uint32)),
            ]))
            self.sent.increment(1)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
'''

TICKER_CONFIG = RELAY_CONFIG.replace('name: "relay"', 'name: "ticker"')
