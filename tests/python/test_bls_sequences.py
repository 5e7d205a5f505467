"""Business-logic scripting with a stateful model, as Triton's Python
backend README shows ("Using BLS with Stateful Models"): a Python model
calls Triton's own example sequence model `simple_dyna_sequence` with
`InferenceRequest(correlation_id=..., flags=SEQUENCE_START | _END)`, and
the sequence model gets its control inputs as a client's request would
give them. Two sequences interleaved; a request without a correlation ID
or with flags alone is refused, saying why.
"""
import shutil

import numpy as np
import pytest
import tritonclient.http as httpclient
from serve_support import ROOT, python_repository, start_serve, stop_serve, wait_ready

# Calls simple_dyna_sequence with VALUE in the sequence SEQ (a number, or
# a string where TEXT_SEQ is set) and FLAGS, and answers its OUTPUT, or
# the error's message in ERROR.
CALLER = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            value = pb_utils.get_input_tensor_by_name(r, "VALUE").as_numpy()
            seq = int(pb_utils.get_input_tensor_by_name(r, "SEQ").as_numpy()[0])
            flags = int(pb_utils.get_input_tensor_by_name(r, "FLAGS").as_numpy()[0])
            answer = pb_utils.InferenceRequest(
                model_name="simple_dyna_sequence", inputs=[pb_utils.Tensor("INPUT", value.reshape(1, 1))],
                requested_output_names=["OUTPUT"], correlation_id=seq, flags=flags,
            ).exec()
            if answer.has_error():
                output, error = np.zeros(1, np.int32), answer.error().message()
            else:
                output, error = pb_utils.get_output_tensor_by_name(answer, "OUTPUT").as_numpy().reshape(1), ""
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT", output.astype(np.int32)),
                pb_utils.Tensor("ERROR", np.array([error.encode()], np.object_)),
            ]))
        return out
'''

CALLER_CONFIG = """
backend: "python"
input [
  { name: "VALUE" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "SEQ" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "FLAGS" data_type: TYPE_INT32 dims: [ 1 ] }
]
output [
  { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "ERROR" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

START, END = 1, 2  # pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START, _END


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("bls-sequences"), models=[("caller", CALLER_CONFIG, CALLER)])
    shutil.copytree(ROOT / "tests/triton_examples/model_repository/simple_dyna_sequence", repo / "simple_dyna_sequence")
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses["HTTP"]
    finally:
        stop_serve(proc)


def call(http, value, seq, flags):
    client = httpclient.InferenceServerClient(http)
    inputs = []
    for name, array in [("VALUE", np.array([value], np.int32)), ("SEQ", np.array([seq], np.int64)),
                        ("FLAGS", np.array([flags], np.int32))]:
        t = httpclient.InferInput(name, [1], "INT32" if array.dtype == np.int32 else "INT64")
        t.set_data_from_numpy(array)
        inputs.append(t)
    result = client.infer("caller", inputs)
    return int(result.as_numpy("OUTPUT")[0]), result.as_numpy("ERROR")[0].decode()


def test_a_python_model_drives_two_interleaved_sequences_of_a_stateful_model(server):
    # simple_dyna_sequence answers INPUT + START, plus END * CORRID on the
    # last request: what it saw of each request's place in its sequence.
    a, b = 7001, 7002
    steps = [(a, 4, START), (b, 5, START), (a, 9, 0), (b, 6, 0), (a, 2, END), (b, 3, END)]
    got = [call(server, value, seq, flags) for seq, value, flags in steps]
    assert got == [(5, ""), (6, ""), (9, ""), (6, ""), (2 + a, ""), (3 + b, "")], got
    # One request that starts and ends its sequence.
    assert call(server, 10, 7003, START | END) == (10 + 1 + 7003, "")


def test_a_request_to_a_sequence_model_without_its_sequence_is_refused_saying_why(server):
    _, error = call(server, 1, 0, 0)
    assert "simple_dyna_sequence" in error and "sequence" in error, error
    _, error = call(server, 1, 0, START)
    assert "no correlation_id" in error, error
    # The sequences go on after the refusals.
    assert call(server, 4, 7010, START | END) == (4 + 1 + 7010, "")
