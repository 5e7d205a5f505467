"""Triton's `qa/L0_batch_input` against anemone: its eight tests
(`batch_input_test.py`) on its ONNX models, ported.

The models are `qa/common/gen_qa_ragged_models.py`'s ONNX ones, written
here with the `onnx` package: `onnx_batch_input` (each request gets the
whole batch's RAGGED_INPUT, BATCH_AND_SIZE_INPUT and BATCH_INPUT, through a
MatMul of ones) and `onnx_batch_item` (BATCH_INPUT given back), and the
identity `onnx_nobatch_zero_1_float32` of `gen_qa_identity_models.py`.
Their configs are the generator's, changed as `test.sh` changes them with
`sed` (`ragged_acc_shape`, `batch_item_flatten`, `ragged_io`). As in
`batch_input_test.py`, the requests of each test go on one gRPC stream at
once (`async_stream_infer`) and run as one batch (a delay of 1 s, or a
full batch), so that each answer shows the batch. The expected values are
the QA's own. tritonserver runs these with its ONNX Runtime backend, which
the Triton peer here lacks (CPU, Python backend only).
"""
import queue
from functools import partial

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
from onnx import TensorProto as T
from onnx import helper as h
from serve_support import start_serve, stop_serve, wait_ready


def _save(nodes, name, inputs, outputs, path):
    model = h.make_model(h.make_graph(nodes, name, inputs, outputs), producer_name="triton",
                         opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


def batch_input_model(path):
    """gen_qa_ragged_models.create_onnx_modelfile: every output is
    [batch, n], each row a copy of an input flattened."""
    vi = h.make_tensor_value_info
    inputs = [vi(n, T.FLOAT, [None]) for n in ("RAGGED_INPUT", "BATCH_AND_SIZE_INPUT", "BATCH_INPUT")]
    outputs = [vi(n, T.FLOAT, [None, None]) for n in ("RAGGED_OUTPUT", "BATCH_AND_SIZE_OUTPUT", "BATCH_OUTPUT")]
    nodes = [
        h.make_node("Constant", [], ["shape"], value=h.make_tensor("const_shape", T.INT64, [2], [1, -1])),
        h.make_node("Constant", [], ["expander_shape"],
                    value=h.make_tensor("const_expander_shape", T.INT64, [2], [-1, 1])),
        h.make_node("Reshape", ["RAGGED_INPUT", "shape"], ["in_mat"]),
        h.make_node("Reshape", ["BATCH_AND_SIZE_INPUT", "shape"], ["bs_mat"]),
        h.make_node("Reshape", ["BATCH_INPUT", "shape"], ["batch_mat"]),
        h.make_node("Div", ["BATCH_AND_SIZE_INPUT", "BATCH_AND_SIZE_INPUT"], ["output_expander_int"]),
        h.make_node("Reshape", ["output_expander_int", "expander_shape"], ["output_expander"]),
        h.make_node("MatMul", ["output_expander", "in_mat"], ["RAGGED_OUTPUT"]),
        h.make_node("MatMul", ["output_expander", "bs_mat"], ["BATCH_AND_SIZE_OUTPUT"]),
        h.make_node("MatMul", ["output_expander", "batch_mat"], ["BATCH_OUTPUT"]),
    ]
    _save(nodes, "onnx_batch_input", inputs, outputs, path)


def batch_item_model(path):
    """gen_qa_ragged_models.create_onnx_itemshape_modelfile."""
    vi = h.make_tensor_value_info
    _save([h.make_node("Identity", ["BATCH_INPUT"], ["BATCH_OUTPUT"])], "onnx_batch_item",
          [vi("RAGGED_INPUT", T.FLOAT, [None]), vi("BATCH_INPUT", T.FLOAT, [None, 2])],
          [vi("BATCH_OUTPUT", T.FLOAT, [None, None])], path)


def identity_model(path):
    """gen_qa_identity_models' onnx_nobatch_zero_1_float32."""
    vi = h.make_tensor_value_info
    _save([h.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "onnx_nobatch_zero_1_float32",
          [vi("INPUT0", T.FLOAT, [None])], [vi("OUTPUT0", T.FLOAT, [None])], path)


# gen_qa_ragged_models.create_modelconfig("onnxruntime", "onnx"), max_batch 4.
BATCH_INPUT_CONFIG = """name: "onnx_batch_input"
backend: "onnxruntime"
max_batch_size: 4
version_policy: { latest { num_versions: 1 }}
input [ { name: "RAGGED_INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]
output [ { name: "RAGGED_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "BATCH_AND_SIZE_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "BATCH_OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
batch_input [
  { kind: BATCH_ELEMENT_COUNT target_name: "BATCH_AND_SIZE_INPUT" data_type: TYPE_FP32 source_input: "RAGGED_INPUT" },
  { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO target_name: "BATCH_INPUT" data_type: TYPE_FP32
    source_input: "RAGGED_INPUT" }
]
dynamic_batching { max_queue_delay_microseconds: 1000000 }
"""
# create_itemshape_modelconfig.
BATCH_ITEM_CONFIG = """name: "onnx_batch_item"
backend: "onnxruntime"
max_batch_size: 4
version_policy: { latest { num_versions: 1 }}
input [ { name: "RAGGED_INPUT" data_type: TYPE_FP32 dims: [ -1, -1 ] allow_ragged_batch: true } ]
output [ { name: "BATCH_OUTPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
batch_input [ { kind: BATCH_ITEM_SHAPE target_name: "BATCH_INPUT" data_type: TYPE_FP32 source_input: "RAGGED_INPUT" } ]
dynamic_batching { max_queue_delay_microseconds: 1000000 }
"""
# gen_qa_identity_models' config of onnx_nobatch_zero_1_float32.
IDENTITY_CONFIG = """name: "onnx_nobatch_zero_1_float32"
platform: "onnxruntime_onnx"
max_batch_size: 0
version_policy: { latest { num_versions: 1 }}
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


def sed_first(text, old, new):
    """`sed "0,/old/{s/old/new/}"`: the first occurrence only."""
    return text.replace(old, new, 1)


def repository(repo):
    """test.sh's `models` folder, each config changed as its sed lines do."""
    def put(name, config, make):
        (repo / name).mkdir()
        (repo / name / "config.pbtxt").write_text(config)
        make(repo / name / "1" / "model.onnx")

    put("ragged_element_count_acc_zero",
        BATCH_INPUT_CONFIG.replace("onnx_batch_input", "ragged_element_count_acc_zero"), batch_input_model)
    put("ragged_acc_shape",
        BATCH_INPUT_CONFIG.replace("onnx_batch_input", "ragged_acc_shape")
        .replace("BATCH_ELEMENT_COUNT", "BATCH_ACCUMULATED_ELEMENT_COUNT")
        .replace("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE"), batch_input_model)
    put("batch_item_flatten",
        sed_first(BATCH_INPUT_CONFIG.replace("onnx_batch_input", "batch_item_flatten"), "-1", "-1, -1")
        .replace("BATCH_ELEMENT_COUNT", "BATCH_ACCUMULATED_ELEMENT_COUNT")
        .replace("BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "BATCH_ITEM_SHAPE_FLATTEN"), batch_input_model)
    put("batch_item", BATCH_ITEM_CONFIG.replace("onnx_batch_item", "batch_item"), batch_item_model)
    ragged_io = (IDENTITY_CONFIG.replace("onnx_nobatch_zero_1_float32", "ragged_io")
                 .replace("max_batch_size: 0", "max_batch_size: 4")
                 .replace('name: "INPUT0"', 'name: "INPUT0"\nallow_ragged_batch: true')
                 + 'batch_output [{target_name: "OUTPUT0" kind: BATCH_SCATTER_WITH_INPUT_SHAPE '
                 'source_input: "INPUT0" }] dynamic_batching { max_queue_delay_microseconds: 1000000 }\n')
    put("ragged_io", ragged_io, identity_model)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("batch_input")
    repository(repo)
    proc, addresses = start_serve(repo)
    wait_ready(addresses["HTTP"])
    yield addresses
    stop_serve(proc)


def ragged_inputs(shapes, name):
    """BatchInputTest.set_inputs: a [1, n] request of n's, for each n."""
    out = []
    for (n,) in shapes:
        x = grpcclient.InferInput(name, [1, n], "FP32")
        x.set_data_from_numpy(np.full([1, n], n, np.float32))
        out.append([x])
    return out


def item_inputs(shapes, name):
    """set_inputs_for_batch_item: a request of each shape, filled with its first size."""
    out = []
    for shape in shapes:
        x = grpcclient.InferInput(name, shape, "FP32")
        x.set_data_from_numpy(np.full(shape, shape[0], np.float32))
        out.append([x])
    return out


def executions(server, model):
    stats = requests.get(f"http://{server['HTTP']}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    return stats["execution_count"], {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}


def stream(server, model, inputs, output):
    """The requests sent at once on one stream; the answers, in order.
    What makes the values mean anything is checked too: they ran as one
    call of 4 rows (4 requests, or 2 + 1 + 1 rows for the item shapes)."""
    before = executions(server, model)
    client = grpcclient.InferenceServerClient(server["gRPC"])
    answers = queue.Queue()
    client.start_stream(callback=partial(lambda q, result, error: q.put(error or result), answers))
    try:
        for i in inputs:
            client.async_stream_infer(model_name=model, inputs=i,
                                      outputs=[grpcclient.InferRequestedOutput(output)])
        got = [answers.get(timeout=60) for _ in inputs]
    finally:
        client.stop_stream()
    for g in got:
        assert not isinstance(g, Exception), g
    after = executions(server, model)
    assert after[0] - before[0] == 1, f"{model}: the requests did not run as one batch ({before} -> {after})"
    assert after[1].get(4, 0) - before[1].get(4, 0) == 1, (model, before, after)
    return [g.as_numpy(output) for g in got]


def test_ragged_output(server):
    got = stream(server, "ragged_io", ragged_inputs([[2], [4], [1], [3]], "INPUT0"), "OUTPUT0")
    for answer, v in zip(got, [2, 4, 1, 3]):
        np.testing.assert_array_equal(answer, np.asarray([[v] * v], np.float32))


def test_ragged_input(server):
    got = stream(server, "ragged_acc_shape", ragged_inputs([[2], [4], [1], [3]], "RAGGED_INPUT"), "RAGGED_OUTPUT")
    want = np.asarray([[2, 2, 4, 4, 4, 4, 1, 3, 3, 3]], np.float32)
    for answer in got:
        np.testing.assert_array_equal(answer, want)


def test_element_count(server):
    got = stream(server, "ragged_element_count_acc_zero", ragged_inputs([[2], [4], [1], [3]], "RAGGED_INPUT"),
                 "BATCH_AND_SIZE_OUTPUT")
    for answer in got:
        np.testing.assert_array_equal(answer, np.asarray([[2, 4, 1, 3]], np.float32))


def test_accumulated_element_count(server):
    got = stream(server, "ragged_acc_shape", ragged_inputs([[2], [4], [1], [3]], "RAGGED_INPUT"),
                 "BATCH_AND_SIZE_OUTPUT")
    for answer in got:
        np.testing.assert_array_equal(answer, np.asarray([[2, 6, 7, 10]], np.float32))


def test_accumulated_element_count_with_zero(server):
    got = stream(server, "ragged_element_count_acc_zero", ragged_inputs([[2], [4], [1], [3]], "RAGGED_INPUT"),
                 "BATCH_OUTPUT")
    for answer in got:
        np.testing.assert_array_equal(answer, np.asarray([[0, 2, 6, 7, 10]], np.float32))


def test_max_element_count_as_shape(server):
    got = stream(server, "ragged_acc_shape", ragged_inputs([[2], [4], [1], [3]], "RAGGED_INPUT"), "BATCH_OUTPUT")
    for answer in got:
        assert answer.shape == (1, 4), "the shape tells the largest element count in the batch"


def test_batch_item_shape_flatten(server):
    got = stream(server, "batch_item_flatten",
                 item_inputs([[1, 4, 1], [1, 1, 2], [1, 1, 2], [1, 2, 2]], "RAGGED_INPUT"), "BATCH_OUTPUT")
    for answer in got:
        np.testing.assert_array_equal(answer, np.asarray([[4, 1, 1, 2, 1, 2, 2, 2]], np.float32))


def test_batch_item_shape(server):
    got = stream(server, "batch_item", item_inputs([[2, 1, 2], [1, 1, 2], [1, 2, 2]], "RAGGED_INPUT"),
                 "BATCH_OUTPUT")
    want = [np.array([[1.0, 2.0], [1.0, 2.0]]), np.array([[1.0, 2.0]]), np.array([[2.0, 2.0]])]
    for answer, w in zip(got, want):
        np.testing.assert_allclose(answer, w)
