"""The outputs a client asks for, as a Python model sees them
(`request.requested_output_names()`), read off tritonserver 2.51 side by
side: only those asked for, or every output the config lists when the
request names none; a model that computes only those may leave the others
out of its response. Over HTTP and gRPC, and through a dynamic batch whose
requests ask for different outputs.
"""
import json
import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready

# Answers, in NAMES, what its request asked for, and gives only those of
# A (X + 1) and B (X * 2).
PICKY = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            wanted = sorted(r.requested_output_names())
            tensors = [pb_utils.Tensor("NAMES", np.array([[json.dumps(wanted).encode()]] * len(x), np.object_))]
            if "A" in wanted:
                tensors.append(pb_utils.Tensor("A", x + 1))
            if "B" in wanted:
                tensors.append(pb_utils.Tensor("B", x * 2))
            out.append(pb_utils.InferenceResponse(tensors))
        return out
'''

# Gives A and NAMES, never B, whatever is asked.
STINGY = PICKY.replace('if "B" in wanted:', 'if False:')

CONFIG = """
backend: "python"
max_batch_size: 8
dynamic_batching { max_queue_delay_microseconds: 50000 }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [
  { name: "A" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "B" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "NAMES" data_type: TYPE_STRING dims: [ 1 ] }
]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("requested-outputs"), models=[("picky", CONFIG, PICKY), ("stingy", CONFIG.replace("max_batch_size: 8", "max_batch_size: 0").replace("dims: [ 1 ]", "dims: [ 1, 1 ]").replace("dynamic_batching { max_queue_delay_microseconds: 50000 }", ""), STINGY)])
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def infer(module, address, value, outputs, model="picky"):
    client = module.InferenceServerClient(address)
    x = module.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.array([[value]], np.float32))
    requested = None if outputs is None else [module.InferRequestedOutput(o) for o in outputs]
    return client.infer(model, [x], outputs=requested)


@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_an_output_asked_for_and_left_out_is_left_out_of_the_answer(server, protocol):
    """tritonserver 2.51 answers 200 without an output the model did not
    give, asked for or not (read side by side); anemone failed the request
    with 500 "execute() gave no output"."""
    module = httpclient if protocol == "HTTP" else grpcclient
    for ask in (["A", "B"], None, ["B"]):
        result = infer(module, server[protocol], 5.0, ask, model="stingy")
        assert result.as_numpy("B") is None, ask
        names = [o["name"] if isinstance(o, dict) else o.name for o in result.get_response()["outputs"]] \
            if protocol == "HTTP" else [o.name for o in result.get_response().outputs]
        assert names == (["A", "NAMES"] if ask is None else [o for o in ask if o != "B"]), (ask, names)
        if ask is None or "A" in ask:
            assert result.as_numpy("A").tolist() == [[6.0]], ask


@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_an_output_asked_for_twice_is_answered_once(server, protocol):
    """tritonserver 2.51 answers 200 with the output once; anemone answered
    400 "requested more than once"."""
    module = httpclient if protocol == "HTTP" else grpcclient
    result = infer(module, server[protocol], 2.0, ["A", "A"])
    names = [o["name"] for o in result.get_response()["outputs"]] if protocol == "HTTP" \
        else [o.name for o in result.get_response().outputs]
    assert names == ["A"], names
    assert result.as_numpy("A").tolist() == [[3.0]]


@pytest.mark.parametrize("protocol", ["HTTP", "gRPC"])
def test_a_model_sees_and_answers_only_the_outputs_asked_for(server, protocol):
    module = httpclient if protocol == "HTTP" else grpcclient
    result = infer(module, server[protocol], 3.0, ["B", "NAMES"])
    assert json.loads(result.as_numpy("NAMES")[0][0]) == ["B", "NAMES"]
    assert result.as_numpy("B").tolist() == [[6.0]]
    assert result.as_numpy("A") is None
    result = infer(module, server[protocol], 3.0, ["A"])
    assert result.as_numpy("A").tolist() == [[4.0]]
    assert result.as_numpy("B") is None and result.as_numpy("NAMES") is None
    # None named: every output the config lists.
    result = infer(module, server[protocol], 3.0, None)
    assert json.loads(result.as_numpy("NAMES")[0][0]) == ["A", "B", "NAMES"]
    assert (result.as_numpy("A").tolist(), result.as_numpy("B").tolist()) == ([[4.0]], [[6.0]])


def test_each_request_of_a_dynamic_batch_sees_its_own_outputs(server):
    asks = [["A", "NAMES"], ["B", "NAMES"], None, ["NAMES"]] * 2
    results = [None] * len(asks)

    def one(i):
        results[i] = infer(httpclient, server["HTTP"], float(i), asks[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for i, (ask, result) in enumerate(zip(asks, results)):
        names = json.loads(result.as_numpy("NAMES")[0][0])
        assert names == (["A", "B", "NAMES"] if ask is None else sorted(ask)), (i, names)
        if ask is None or "A" in ask:
            assert result.as_numpy("A").tolist() == [[i + 1.0]]
        if ask is None or "B" in ask:
            assert result.as_numpy("B").tolist() == [[i * 2.0]]
