"""Ragged batching (docs/SERVING.md, "Ragged batching"): Triton's
`allow_ragged_batch` inputs, `batch_input` and `batch_output`, as a user
moving the example of Triton's user guide ("Ragged Batching") over
meets them.

The ONNX model `ragged` is built here: it takes the requests' elements as
one flat `INPUT [-1]` and answers `OUT = 2 * INPUT` cut back by each
request's shape (a batch output), plus, per request, every batch input kind
as a regular output (its element count, where its elements end and start,
the batch's largest count, its item shape) and its last element read
through the accumulated count. Each value is computed again with numpy from
the request alone, so a request that got another's rows, or a batch input
built wrong, fails. The model runs on tract-cpu and on ONNX Runtime.

A Python model with `allow_ragged_batch` gets requests of different
shapes in one `execute`, as tritonserver 2.51 gives them (measured on
2026-12-08: three requests of [1, 2], [1, 3], [1, 4] each saw 3 requests in
their execute; without it each saw 1); anemone refused the field before.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import requests
import tritonclient.grpc as grpcclient
from onnx import TensorProto as T
from onnx import helper as h
from serve_support import python_repository, start_serve, stop_serve

KINDS = [("COUNT", "BATCH_ELEMENT_COUNT"), ("END", "BATCH_ACCUMULATED_ELEMENT_COUNT"),
         ("ZSTART", "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO"), ("MAXT", "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE"),
         ("ITEM", "BATCH_ITEM_SHAPE"), ("ITEMF", "BATCH_ITEM_SHAPE_FLATTEN")]


def ragged_model(path):
    """INPUT [n] and the batch inputs -> OUT [n] (2 * INPUT), and per
    request (a row each): COUNT, END, START, MAXN, ITEM [1], ITEMF, LAST."""
    ins = [h.make_tensor_value_info("INPUT", T.FLOAT, ["n"])]
    ins += [h.make_tensor_value_info(n, T.INT32, ["b"]) for n in ("COUNT", "END", "ITEMF")]
    ins += [h.make_tensor_value_info("ZSTART", T.INT32, ["b1"]), h.make_tensor_value_info("MAXT", T.FLOAT, ["m"]),
            h.make_tensor_value_info("ITEM", T.INT32, ["b", 1])]
    outs = [h.make_tensor_value_info("OUT", T.FLOAT, ["n"])]
    outs += [h.make_tensor_value_info(n, T.INT32, ["b"]) for n in ("COUNT_OUT", "END_OUT", "START_OUT", "ITEMF_OUT")]
    outs += [h.make_tensor_value_info("MAXN", T.INT64, ["b"]), h.make_tensor_value_info("ITEM_OUT", T.INT32, ["b", 1]),
             h.make_tensor_value_info("LAST", T.FLOAT, ["b"])]
    nodes = [
        h.make_node("Add", ["INPUT", "INPUT"], ["OUT"]),
        h.make_node("Identity", ["COUNT"], ["COUNT_OUT"]),
        h.make_node("Identity", ["END"], ["END_OUT"]),
        h.make_node("Identity", ["ITEMF"], ["ITEMF_OUT"]),
        h.make_node("Identity", ["ITEM"], ["ITEM_OUT"]),
        # START: ZSTART without its last entry.
        h.make_node("Slice", ["ZSTART", "zero", "minus1", "zero"], ["START_OUT"]),
        # MAXN: MAXT's length, one per request.
        h.make_node("Shape", ["MAXT"], ["maxshape"]),
        h.make_node("Shape", ["COUNT"], ["b"]),
        h.make_node("Expand", ["maxshape", "b"], ["MAXN"]),
        # LAST: INPUT[END - 1].
        h.make_node("Cast", ["END"], ["end64"], to=T.INT64),
        h.make_node("Sub", ["end64", "one"], ["lastix"]),
        h.make_node("Gather", ["INPUT", "lastix"], ["LAST"], axis=0),
    ]
    inits = [h.make_tensor("zero", T.INT64, [1], [0]), h.make_tensor("minus1", T.INT64, [1], [-1]),
             h.make_tensor("one", T.INT64, [], [1])]
    m = h.make_model(h.make_graph(nodes, "ragged", ins, outs, initializer=inits),
                     opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def ragged_config(backend, batching):
    batch_inputs = ", ".join(
        f'{{ kind: {kind} target_name: "{name}" data_type: {"TYPE_FP32" if name == "MAXT" else "TYPE_INT32"} '
        'source_input: "INPUT" }' for name, kind in KINDS)
    scalars = ", ".join(f'{{ name: "{n}" data_type: TYPE_INT32 dims: [ 1 ] }}'
                        for n in ("COUNT_OUT", "END_OUT", "START_OUT", "ITEMF_OUT", "ITEM_OUT"))
    return (
        "max_batch_size: 16\n"
        'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
        f"batch_input [ {batch_inputs} ]\n"
        f'output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }}, {scalars}, '
        '{ name: "MAXN" data_type: TYPE_INT64 dims: [ 1 ] }, { name: "LAST" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'batch_output [ { target_name: "OUT" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "INPUT" } ]\n'
        f'parameters {{ key: "backends" value: {{ string_value: "{backend}" }} }}\n' + batching)


# A batch of three: held until three requests are queued (or 10 s pass).
THREE = "dynamic_batching { preferred_batch_size: [ 3 ] max_queue_delay_microseconds: 10000000 }\n"
ANY = "dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
SHORT = "dynamic_batching { max_queue_delay_microseconds: 300000 }\n"

PY_MODEL = '''import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            seen = np.array([[len(requests), x.shape[1], int(x.sum())]], dtype=np.int32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", seen)]))
        return out
'''
PY_CONFIG = ('backend: "python"\nmax_batch_size: 8\n'
             'input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
             'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 3 ] } ]\n' + THREE)

BAD = {
    "bad_no_batch": ('input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
                     'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "COUNT" data_type: TYPE_INT32 source_input: "INPUT" } ]\n',
                     ["needs a batch dimension", "max_batch_size"]),
    "bad_kind_type": ('max_batch_size: 4\ninput [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
                      'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "COUNT" data_type: TYPE_INT64 source_input: "INPUT" } ]\n',
                      ["batch_input[0]", "TYPE_INT32 or TYPE_FP32"]),
    "bad_source": ('max_batch_size: 4\ninput [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]\n'
                   'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "COUNT" data_type: TYPE_INT32 source_input: "IN" } ]\n',
                   ["source input 'IN'", "INPUT"]),
    "bad_flat": ('max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] allow_ragged_batch: true }, '
                 '{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
                 ["'x' is allow_ragged_batch", "shape [-1]", "[b, 4]"]),
}


def flat_model(path):
    """INPUT [n] and COUNT [b] -> OUT [n], for the configs that fail."""
    ins = [h.make_tensor_value_info("INPUT", T.FLOAT, ["n"]), h.make_tensor_value_info("COUNT", T.INT32, ["b"])]
    outs = [h.make_tensor_value_info("OUT", T.FLOAT, ["n"])]
    m = h.make_model(h.make_graph([h.make_node("Identity", ["INPUT"], ["OUT"])], "flat", ins, outs),
                     opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def add_model(path):
    ins = [h.make_tensor_value_info(n, T.FLOAT, ["b", 4]) for n in ("x", "y")]
    outs = [h.make_tensor_value_info("sum", T.FLOAT, ["b", 4])]
    m = h.make_model(h.make_graph([h.make_node("Add", ["x", "y"], ["sum"])], "add", ins, outs),
                     opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("ragged")
    models = {f"ragged_{b.replace('-', '_')}_{n}": ragged_config(b, batching)
              for b in ("tract-cpu", "onnxruntime") for n, batching in (("three", THREE), ("any", ANY))}
    models["ragged_alone"] = ragged_config("tract-cpu", "")
    for name, config in models.items():
        (repo / name / "1").mkdir(parents=True)
        ragged_model(repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(config)
    for name, (config, _) in BAD.items():
        (repo / name / "1").mkdir(parents=True)
        (flat_model if "INPUT" in config else add_model)(repo / name / "1" / "model.onnx")
        (repo / name / "config.pbtxt").write_text(config)
    python_repository(repo, models=[("py_ragged", PY_CONFIG, PY_MODEL),
                                    ("py_plain", PY_CONFIG.replace(" allow_ragged_batch: true", "").replace(THREE, SHORT), PY_MODEL)])
    proc, addresses = start_serve(repo)
    http = addresses["HTTP"]
    names = set(models) | set(BAD) | {"py_ragged", "py_plain"}
    # Not ready (some models fail on purpose): wait until each has a state.
    for _ in range(600):
        index = {m["name"]: m for m in requests.post(f"http://{http}/v2/repository/index", timeout=10).json()}
        if all(index.get(n, {}).get("state") in ("READY", "UNAVAILABLE") for n in names):
            break
        time.sleep(0.2)
    yield {"http": http, "grpc": addresses["gRPC"], "index": index}
    stop_serve(proc)


def infer(http, model, x):
    body = {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    r = requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in r.json()["outputs"]}


def check_own(x, got):
    """What a request gets whatever its batch: its own doubled elements in
    its shape, its element count and last element, its item shape, and a
    start and end that bracket its count."""
    np.testing.assert_allclose(got["OUT"], 2 * x)
    assert got["OUT"].shape == x.shape
    assert got["COUNT_OUT"].tolist() == [[x.size]]
    assert got["END_OUT"][0, 0] - got["START_OUT"][0, 0] == x.size
    assert got["ITEM_OUT"].tolist() == [[x.shape[1]]] and got["ITEMF_OUT"].tolist() == [[x.shape[1]]]
    assert got["LAST"].tolist() == [[x.ravel()[-1]]]
    assert got["MAXN"][0, 0] >= x.size


def stats(http, model):
    s = requests.get(f"http://{http}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    return {b["batch_size"]: b["compute_infer"]["count"] for b in s["batch_stats"]}


@pytest.mark.parametrize("backend", ["tract_cpu", "onnxruntime"])
def test_three_requests_of_different_lengths_run_as_one_batch_as_tritons_guide_says(server, backend):
    """The guide's example: requests of [1, 3], [1, 4] and [1, 5] run as
    one call whose INPUT holds the 12 elements and whose accumulated count
    is [3, 7, 12]; each request gets its own rows back."""
    model = f"ragged_{backend}_three"
    assert server["index"][model]["state"] == "READY", server["index"][model]
    xs = [np.arange(1, n + 1, dtype=np.float32).reshape(1, n) * (10 ** i) for i, n in enumerate((3, 4, 5))]
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda x: infer(server["http"], model, x), xs))
    assert stats(server["http"], model) == {3: 1}, "the three did not run as one batch"
    for x, got in zip(xs, answers):
        check_own(x, got)
        assert got["MAXN"].tolist() == [[5]], "the batch's largest element count"
    # Their places in the joined INPUT tile its 12 elements, in the order
    # they arrived ([3, 7, 12] when they came shortest first).
    places = sorted((int(a["START_OUT"][0, 0]), int(a["END_OUT"][0, 0])) for a in answers)
    assert places[0][0] == 0 and places[-1][1] == 12, places
    assert all(a[1] == b[0] for a, b in zip(places, places[1:])), places


@pytest.mark.parametrize("backend", ["tract_cpu", "onnxruntime"])
def test_many_clients_of_random_lengths_each_get_their_own_rows(server, backend):
    model = f"ragged_{backend}_any"
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((1, int(n))).astype(np.float32) for n in rng.integers(1, 40, size=64)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda x: infer(server["http"], model, x), xs))
    for x, got in zip(xs, answers):
        check_own(x, got)
    sizes = stats(server["http"], model)
    assert sum(n * c for n, c in sizes.items()) == 64, sizes


def test_a_ragged_model_without_dynamic_batching_runs_each_request_alone_and_over_grpc(server):
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    got = infer(server["http"], "ragged_alone", x)
    check_own(x, got)
    assert got["START_OUT"].tolist() == [[0]] and got["MAXN"].tolist() == [[6]]
    client = grpcclient.InferenceServerClient(server["grpc"])
    inp = grpcclient.InferInput("INPUT", [1, 6], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("ragged_alone", [inp])
    np.testing.assert_allclose(result.as_numpy("OUT"), 2 * x)
    meta = requests.get(f"http://{server['http']}/v2/models/ragged_alone", timeout=10).json()
    assert [i["name"] for i in meta["inputs"]] == ["INPUT"], "batch inputs are not the client's to send"
    assert meta["inputs"][0]["shape"] == [-1, -1]
    body = {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1, 6], "data": x.ravel().tolist()},
                       {"name": "COUNT", "datatype": "INT32", "shape": [1], "data": [6]}]}
    r = requests.post(f"http://{server['http']}/v2/models/ragged_alone/infer", json=body, timeout=30)
    assert r.status_code == 400 and "'COUNT' is given to the model by the server (a batch_input" in r.text, r.text
    assert {o["name"]: o["shape"] for o in meta["outputs"]}["OUT"] == [-1, -1]


def test_a_python_model_gets_requests_of_different_shapes_in_one_execute_as_tritons(server):
    http = server["http"]

    def send(model, n):
        body = {"inputs": [{"name": "IN", "datatype": "FP32", "shape": [1, n], "data": [1.0] * n}]}
        r = requests.post(f"http://{http}/v2/models/{model}/infer", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["outputs"][0]["data"]

    with ThreadPoolExecutor(3) as pool:
        ragged = list(pool.map(lambda n: send("py_ragged", n), (2, 3, 4)))
        # Without allow_ragged_batch, shapes that differ never share an
        # execute (a delay of 0.3 s would have gathered them).
        plain = list(pool.map(lambda n: send("py_plain", n), (2, 3, 4)))
    assert ragged == [[3, 2, 2], [3, 3, 3], [3, 4, 4]], ragged
    assert plain == [[1, 2, 2], [1, 3, 3], [1, 4, 4]], plain


@pytest.mark.parametrize("model", sorted(BAD))
def test_ragged_configs_that_cannot_work_fail_the_load_saying_what_to_change(server, model):
    row = server["index"][model]
    assert row["state"] == "UNAVAILABLE", row
    for word in BAD[model][1]:
        assert word in row["reason"], (word, row["reason"])
