"""Python models for test_custom_metrics.py: their model.py sources and configs."""

# Two instances counting into the same series: the elements each request
# brings (a counter), its values (a histogram), the last request's sum (a
# gauge), and a gauge a thread of the model sets on its own every 5 ms,
# between requests. Y = 2 * X.
COUNTING = '''
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        labels = {"model": args["model_name"]}
        self.elements_family = pb_utils.MetricFamily(
            name="app_elements_total", description="Elements received", kind=pb_utils.MetricFamily.COUNTER)
        self.elements = self.elements_family.Metric(labels=labels)
        self.values_family = pb_utils.MetricFamily(
            name="app_values", description="Values received", kind=pb_utils.MetricFamily.HISTOGRAM)
        self.values = self.values_family.Metric(labels=labels, buckets=[-1.0, 0.0, 0.5, 1.0, 2.0])
        # The module-level kinds of older model.py files.
        self.sum_family = pb_utils.MetricFamily(
            name="app_last_sum", description="Sum of the last request", kind=pb_utils.GAUGE)
        self.last_sum = self.sum_family.Metric(labels=labels)
        self.beat_family = pb_utils.MetricFamily(
            name="app_heartbeat", description="Beats of a thread", kind=pb_utils.MetricFamily.GAUGE)
        self.beat = self.beat_family.Metric(labels={"instance": args["model_instance_name"]})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beats, daemon=True)
        self.thread.start()

    def beats(self):
        n = 0
        while not self.stop.wait(0.005):
            n += 1
            self.beat.set(n)

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            self.elements.increment(x.size)
            for v in x.ravel():
                self.values.observe(float(v))
            self.last_sum.set(float(x.sum()))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return responses

    def finalize(self):
        self.stop.set()
        self.thread.join()
'''

COUNTING_CONFIG = """
name: "counting"
backend: "python"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
"""

# Runs the check named by its CMD input and answers what came of it as JSON:
# {"ok": value} or {"error": "ExceptionType: message"} per step.
API = '''
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

M = pb_utils.MetricFamily
KEEP = {}


def attempt(fn):
    try:
        value = fn()
        return {"ok": value if isinstance(value, (int, float, str, type(None))) else repr(value)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def kinds():
    family = KEEP.setdefault("c", M(name="api_counter", description="a counter", kind=M.COUNTER))
    c = KEEP.setdefault("cm", family.Metric(labels={"k": "v"}))
    g_family = KEEP.setdefault("g", M(name="api_gauge", description="a gauge", kind=M.GAUGE))
    g = KEEP.setdefault("gm", g_family.Metric())
    h_family = KEEP.setdefault("h", M(name="api_hist", description="a histogram", kind=M.HISTOGRAM))
    h = KEEP.setdefault("hm", h_family.Metric(labels={}, buckets=[0.1, 1.0, 2.5]))
    return {
        "counter_start": attempt(c.value),
        "counter_increment": attempt(lambda: (c.increment(2023.0), c.value())[1]),
        "counter_decrement": attempt(lambda: c.increment(-23.5)),
        "counter_nan": attempt(lambda: c.increment(float("nan"))),
        "counter_set": attempt(lambda: c.set(1.0)),
        "counter_observe": attempt(lambda: c.observe(1.0)),
        "gauge": attempt(lambda: (g.increment(2023.0), g.increment(-23.5), g.value())[2]),
        "gauge_set": attempt(lambda: (g.set(999.9), g.value())[1]),
        "gauge_observe": attempt(lambda: g.observe(1.0)),
        "gauge_text": attempt(lambda: g.set("many")),
        "hist_value": attempt(h.value),
        "hist_increment": attempt(lambda: h.increment(1.0)),
        "hist_set": attempt(lambda: h.set(1.0)),
        "hist_observe": attempt(lambda: [h.observe(v) for v in (0.05, 1.5, 6.0)] and None),
    }


def declarations():
    h = KEEP.setdefault("h2", M(name="api_hist_args", description="d", kind=M.HISTOGRAM))
    g = KEEP.setdefault("g2", M(name="api_gauge_args", description="d", kind=M.GAUGE))
    out = {
        "hist_no_buckets": attempt(lambda: h.Metric(labels={})),
        "hist_buckets_none": attempt(lambda: h.Metric(labels={}, buckets=None)),
        "hist_unsorted": attempt(lambda: h.Metric(labels={}, buckets=[2.5, 0.1, 1.0])),
        "hist_repeated": attempt(lambda: h.Metric(labels={}, buckets=[1, 1, 2])),
        "hist_tuple": attempt(lambda: h.Metric(labels={}, buckets=(1, 2))),
        "hist_le_label": attempt(lambda: h.Metric(labels={"le": "x"}, buckets=[1])),
        "hist_empty": attempt(lambda: KEEP.setdefault("he", h.Metric(labels={"e": "1"}, buckets=[])) and None),
        "gauge_buckets": attempt(lambda: g.Metric(labels={}, buckets=[1.0])),
        "labels_list": attempt(lambda: g.Metric(labels=[("k", "v")])),
        "label_int": attempt(lambda: g.Metric(labels={"k": 1})),
        "label_name": attempt(lambda: g.Metric(labels={"bad-label": "v"})),
        "label_reserved": attempt(lambda: g.Metric(labels={"__name__": "v"})),
        "kind_text": attempt(lambda: M(name="api_kind", description="d", kind="counter")),
    }
    for name in ("bad-name", "1abc", "", "nv_inference_count", "anemone_x"):
        out["name " + name] = attempt(lambda: M(name=name, description="d", kind=M.GAUGE))
    out["name ok:colon"] = attempt(lambda: KEEP.setdefault("colon", M(name="api:colon", description="d", kind=M.GAUGE)) and None)
    out["kind_conflict"] = attempt(lambda: M(name="api_counter", description="d", kind=M.GAUGE))
    return out


def sharing():
    first = M(name="api_shared", description="first description", kind=M.COUNTER)
    second = M(name="api_shared", description="second description", kind=M.COUNTER)
    a = first.Metric(labels={"k": "same"})
    b = second.Metric(labels={"k": "same"})
    other = second.Metric(labels={"k": "other"})
    a.increment(7.5)
    shared = b.value()
    del first, a
    KEEP["shared"] = (second, b, other)
    return {"shared": shared, "other": other.value()}


def local():
    # A Metric made in each request, as a local: the same series each time.
    family = KEEP.setdefault("local", M(name="api_local", description="d", kind=M.COUNTER))
    metric = family.Metric(labels={"s": "ok"})
    before = metric.value()
    metric.increment(5)
    return {"before": before}


def release():
    KEEP.pop("shared", None)
    return {}


def die():
    os._exit(3)


CHECKS = {
    "kinds": kinds, "declarations": declarations, "sharing": sharing, "local": local, "release": release, "die": die,
}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            cmd = pb_utils.get_input_tensor_by_name(request, "CMD").as_numpy().ravel()[0].decode()
            result = json.dumps(CHECKS[cmd]())
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([result], dtype=np.object_))]))
        return responses
'''

API_CONFIG = """
name: "api"
backend: "python"
max_batch_size: 0
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

# A decoupled model counting its responses from the thread that sends them.
STREAMED = '''
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.family = pb_utils.MetricFamily(
            name="app_responses_total", description="Responses sent", kind=pb_utils.MetricFamily.COUNTER)
        self.sent = self.family.Metric(labels={"model": args["model_name"]})

    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy().ravel()[0])
            threading.Thread(target=self.send, args=(request.get_response_sender(), n)).start()
        return None

    def send(self, sender, n):
        for i in range(n):
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("I", np.array([i], dtype=np.int32))]))
            self.sent.increment(1)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
'''

STREAMED_CONFIG = """
name: "streamed"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "I" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
