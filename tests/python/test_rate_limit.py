"""Triton's rate limiter (`--rate-limit execution_count`), from a Triton
user's repository: instances whose groups share a resource never run at
once, across models and instances, while a model without a rate_limiter
runs beside them; without the flag the same repository runs them together
(as Triton does); a model that needs more of a resource than
`--rate-limit-resource` gives is UNAVAILABLE with the reason, and the
others serve. Compared with tritonserver 2.51 on the same repository
(docs/SERVING.md, "Rate limiter").
"""
import threading
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready

# Each request sleeps 0.15 s and answers when it started and ended.
SPAN = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            start = time.time()
            time.sleep(0.15)
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("START", np.array([start], np.float64)),
                pb_utils.Tensor("END", np.array([time.time()], np.float64)),
            ]))
        return out
'''


def config(rate_limiter=""):
    return f"""
backend: "python"
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "START" data_type: TYPE_FP64 dims: [ 1 ] }}, {{ name: "END" data_type: TYPE_FP64 dims: [ 1 ] }} ]
instance_group [ {{ count: 2 kind: KIND_CPU {rate_limiter} }} ]
"""


SHARED = 'rate_limiter { resources [ { name: "R" global: true count: 1 } ] priority: 1 }'
BIG = 'rate_limiter { resources [ { name: "R" global: true count: 2 } ] }'


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return python_repository(
        tmp_path_factory.mktemp("rate-limit"),
        models=[
            ("a", config(SHARED), SPAN),
            ("b", config(SHARED), SPAN),
            ("free", config(), SPAN),
        ],
    )


def spans(http, models, each=4):
    """Sends `each` requests to every model at once; their (model, start,
    end) spans."""
    got, errors = [], []

    def one(model):
        client = httpclient.InferenceServerClient(http)
        x = httpclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.zeros(1, np.float32))
        try:
            r = client.infer(model, [x])
            got.append((model, r.as_numpy("START")[0], r.as_numpy("END")[0]))
        except Exception as e:  # noqa: BLE001 - collected and asserted on
            errors.append(f"{model}: {e}")

    threads = [threading.Thread(target=one, args=(m,)) for m in models for _ in range(each)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(got) == each * len(models)
    return got


def overlaps(spans):
    """Pairs of spans that ran at the same time (by more than 10 ms)."""
    spans = sorted(spans, key=lambda s: s[1])
    return [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if b[1] < a[2] - 0.01]


def test_instances_sharing_a_resource_never_run_at_once_and_others_run_beside(repo):
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--rate-limit", "execution_count")
    try:
        wait_ready(addresses["HTTP"])
        limited = spans(addresses["HTTP"], ["a", "b"])
        assert overlaps(limited) == [], "a and b (2 instances each) share R, which has 1"
        assert {m for m, *_ in limited} == {"a", "b"}
        mixed = spans(addresses["HTTP"], ["a", "free"])
        assert overlaps([s for s in mixed if s[0] == "a"]) == []
        assert overlaps(mixed), "the model without a rate_limiter runs beside a"
    finally:
        stop_serve(proc)


def test_without_the_flag_the_rate_limiter_is_not_used(repo):
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        together = overlaps(spans(addresses["HTTP"], ["a", "b"]))
        assert together, "rate limiter off (Triton's default): the instances run together"
    finally:
        stop_serve(proc)


def test_a_model_that_needs_more_than_there_is_does_not_load_and_others_serve(repo, tmp_path):
    python_repository(tmp_path, models=[("a", config(SHARED), SPAN), ("big", config(BIG), SPAN)])
    proc, addresses = start_serve(
        tmp_path, "--metrics-port", "0", "--rate-limit", "execution_count", "--rate-limit-resource", "R:1"
    )
    try:
        client = httpclient.InferenceServerClient(addresses["HTTP"])
        # Not ready as a whole (a model failed), so wait for the loads to end.
        deadline = time.time() + 60
        while not all(m.get("state") in ("READY", "UNAVAILABLE") for m in client.get_model_repository_index()):
            assert time.time() < deadline, client.get_model_repository_index()
            time.sleep(0.2)
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert index["big"]["state"] == "UNAVAILABLE"
        reason = index["big"]["reason"]
        for part in ['"R" is limited to 1', "needs 2", "--rate-limit-resource R:2"]:
            assert part in reason, reason
        assert index["a"]["state"] == "READY"
        assert overlaps(spans(addresses["HTTP"], ["a"])) == []
    finally:
        stop_serve(proc)
