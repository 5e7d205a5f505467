"""Python models whose `execute` is a coroutine (`async def execute`), as
Triton 2.51 runs them (compared side by side): a model that is not
decoupled has each call awaited to its end, one at a time per instance; a
decoupled model's calls run together on the process's event loop, its
requests answered as their coroutines go on; `await async_exec()` calls
another model from a coroutine; an `async def initialize` is awaited; a
decoupled coroutine that raises fails its open requests only.
"""
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready

SOURCE = '''
import asyncio
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def initialize(self, args):
        await asyncio.sleep(0)
        self.scale = 2.0
        self.decoupled = json.loads(args["model_config"]).get("model_transaction_policy", {}).get("decoupled", False)
        self.running = self.most = 0

    async def answer(self, request):
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x < 0).any():
                raise ValueError("X must not be negative")
            await asyncio.sleep(0.2)
            added = await pb_utils.InferenceRequest(
                model_name="add_sub", inputs=[pb_utils.Tensor("INPUT0", x), pb_utils.Tensor("INPUT1", x)],
                requested_output_names=["OUTPUT0"],
            ).async_exec()
            y = pb_utils.get_output_tensor_by_name(added, "OUTPUT0").as_numpy() * self.scale
            return pb_utils.InferenceResponse([
                pb_utils.Tensor("Y", y), pb_utils.Tensor("MOST", np.array([self.most], np.int32)),
            ])
        finally:
            self.running -= 1

    async def execute(self, requests):
        if not self.decoupled:
            return [await self.answer(r) for r in requests]
        for r in requests:
            sender = r.get_response_sender()
            sender.send(await self.answer(r), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
'''

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 4 ] }}, {{ name: "MOST" data_type: TYPE_INT32 dims: [ 1 ] }} ]
{policy}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("async_execute"), examples=("add_sub",), models=(
        ("awaited", CONFIG.format(name="awaited", policy=""), SOURCE),
        ("overlapping", CONFIG.format(name="overlapping", policy="model_transaction_policy { decoupled: true }"),
         SOURCE),
    ))
    proc, addresses = start_serve(repo)
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def test_an_async_execute_is_awaited_one_call_at_a_time(server):
    client = httpclient.InferenceServerClient(server["HTTP"], concurrency=4)
    xs = [np.arange(4, dtype=np.float32) + i for i in range(4)]
    handles = []
    for x in xs:
        t = httpclient.InferInput("X", [4], "FP32")
        t.set_data_from_numpy(x)
        handles.append(client.async_infer("awaited", [t]))
    results = [h.get_result() for h in handles]
    for x, result in zip(xs, results):
        np.testing.assert_array_equal(result.as_numpy("Y"), (x + x) * 2.0)
        # As Triton: the instance awaits each call before the next.
        assert result.as_numpy("MOST")[0] == 1


def test_a_decoupled_async_execute_runs_its_calls_together(server):
    client = grpcclient.InferenceServerClient(server["gRPC"])
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    xs = [np.full(4, i, dtype=np.float32) for i in range(4)] + [np.full(4, -1, dtype=np.float32)]
    for i, x in enumerate(xs):
        t = grpcclient.InferInput("X", [4], "FP32")
        t.set_data_from_numpy(x)
        client.async_stream_infer("overlapping", [t], request_id=str(i))
    answers, errors = {}, []
    for _ in xs:
        result, error = got.get(timeout=30)
        if error is not None:
            errors.append(str(error))
        else:
            answers[int(result.get_response().id)] = result
    client.stop_stream()
    # The coroutine that raised fails its own request only.
    assert len(errors) == 1 and "X must not be negative" in errors[0], errors
    assert sorted(answers) == [0, 1, 2, 3]
    for i, result in answers.items():
        np.testing.assert_array_equal(result.as_numpy("Y"), (xs[i] + xs[i]) * 2.0)
    # Their coroutines overlapped (each sleeps 200 ms; one at a time would be 1 at most).
    assert max(int(r.as_numpy("MOST")[0]) for r in answers.values()) >= 2
