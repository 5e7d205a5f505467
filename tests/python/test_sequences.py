"""Sequence models (Triton's `sequence_batching`) through tritonclient, over
HTTP and gRPC: the control inputs Triton's example models read, the rules
Triton enforces, sequences interleaved from many threads, and implicit
state on a real recurrent model (Silero VAD), each answer checked against
ONNX Runtime's Python API running the same file with the values Triton's
sequence batcher would give it.
"""
import shutil

import numpy as np
import pytest

from serve_support import ROOT, start_serve, stop_serve, wait_ready

EXAMPLES = ROOT / "tests/triton_examples"
FIXTURES = ROOT / "fixtures/generated"


def repository(into, names):
    repo = into / "model_repository"
    for name in names:
        shutil.copytree(EXAMPLES / "model_repository" / name, repo / name)
    return repo


IDLE_MS = 300


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    """The two sequence models, simple_sequence again with a short idle time
    and a warm-up sample (`simple_sequence_idle`), and an ensemble over
    simple_dyna_sequence."""
    tmp = tmp_path_factory.mktemp("sequences")
    repo = repository(tmp, ["simple_sequence", "simple_dyna_sequence"])
    idle = repo / "simple_sequence_idle"
    shutil.copytree(repo / "simple_sequence", idle)
    config = (idle / "config.pbtxt").read_text().replace('name: "simple_sequence"', 'name: "simple_sequence_idle"')
    config = config.replace("sequence_batching {", f"sequence_batching {{\n  max_sequence_idle_microseconds: {IDLE_MS * 1000}")
    # With a warm-up sample: it runs as a one-request sequence, the server
    # giving the control inputs (a failed warm-up would leave the server not ready).
    config += ('model_warmup [ { name: "one" batch_size: 1 inputs { key: "INPUT" '
               'value: { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true } } } ]\n')
    (idle / "config.pbtxt").write_text(config)
    # An ensemble whose one step is a sequence model: Triton passes the
    # ensemble request's sequence to its steps.
    (repo / "sequence_ensemble/1").mkdir(parents=True)
    (repo / "sequence_ensemble/config.pbtxt").write_text(ENSEMBLE)
    proc, addresses = start_serve(repo)
    wait_ready(addresses["HTTP"])
    yield repo, addresses
    stop_serve(proc)


ENSEMBLE = """
name: "sequence_ensemble"
platform: "ensemble"
max_batch_size: 8
input [ { name: "VALUE" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "RESULT" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "simple_dyna_sequence"
      model_version: -1
      input_map { key: "INPUT" value: "VALUE" }
      output_map { key: "OUTPUT" value: "RESULT" }
    }
  ]
}
"""


def test_an_ensemble_passes_its_sequence_to_its_steps(sequences):
    _, addresses = sequences
    for k, (module, client) in enumerate(clients(addresses)):
        seq = 500 + k
        got = []
        for i, value in enumerate([4, 9, 2]):
            inp = module.InferInput("VALUE", [1, 1], "INT32")
            inp.set_data_from_numpy(np.full((1, 1), value, dtype=np.int32))
            result = client.infer("sequence_ensemble", [inp], sequence_id=seq,
                                  sequence_start=i == 0, sequence_end=i == 2)
            got.append(int(result.as_numpy("RESULT")[0][0]))
        # simple_dyna_sequence: INPUT + START on the first, + END * CORRID on the last.
        assert got == [4 + 1, 9, 2 + seq], got


def clients(addresses):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return [
        (httpclient, httpclient.InferenceServerClient(addresses["HTTP"])),
        (grpcclient, grpcclient.InferenceServerClient(addresses["gRPC"])),
    ]


def send(module, client, model, value, **sequence):
    data = np.full((1, 1), value, dtype="int32")
    inp = module.InferInput("INPUT", [1, 1], "INT32")
    inp.set_data_from_numpy(data)
    return client.infer(model, [inp], **sequence).as_numpy("OUTPUT")


def test_dyna_sequence_gets_start_end_ready_and_its_id(sequences):
    """simple_dyna_sequence reads START, END, READY and CORRID: each answer is
    checked against ONNX Runtime's Python API running the same file with the
    control values Triton's sequence batcher gives (START on the first
    request, END on the last, READY always, CORRID the sequence's id)."""
    import onnxruntime as ort

    repo, addresses = sequences
    session = ort.InferenceSession(str(repo / "simple_dyna_sequence/1/model.onnx"))
    values = [0, 11, 7, 5, 3]
    for k, (module, client) in enumerate(clients(addresses)):
        seq = 4_000_000_000 + k  # beyond 32 bits: the UINT64 control keeps it
        for i, value in enumerate(values):
            start, end = i == 0, i == len(values) - 1
            got = send(module, client, "simple_dyna_sequence", value,
                       sequence_id=seq, sequence_start=start, sequence_end=end)
            one = lambda v, dt="int32": np.full((1, 1), v, dtype=dt)  # noqa: E731
            (want,) = session.run(None, {
                "INPUT": one(value), "START": one(int(start)), "END": one(int(end)),
                "READY": one(1), "CORRID": one(seq, "uint64"),
            })
            np.testing.assert_array_equal(got, want, err_msg=f"request {i} of sequence {seq}")


def test_sequence_rules_are_triton_s(sequences):
    from tritonclient.utils import InferenceServerException

    _, addresses = sequences
    for module, client in clients(addresses):
        grpc = module.__name__.endswith("grpc")

        def refused(needle, call):
            with pytest.raises(InferenceServerException) as e:
                call()
            assert needle in e.value.message(), e.value.message()
            assert e.value.status() == ("StatusCode.INVALID_ARGUMENT" if grpc else "400"), e.value.status()

        # The control inputs are the server's: not in the metadata, refused in a request.
        meta = client.get_model_metadata("simple_dyna_sequence")
        names = [i.name for i in meta.inputs] if grpc else [i["name"] for i in meta["inputs"]]
        assert names == ["INPUT"], names
        # A control input sent by the client is refused.
        start = module.InferInput("START", [1, 1], "INT32")
        start.set_data_from_numpy(np.ones((1, 1), dtype=np.int32))
        value = module.InferInput("INPUT", [1, 1], "INT32")
        value.set_data_from_numpy(np.ones((1, 1), dtype=np.int32))
        refused("input 'START' is given to the model by the server (a sequence_batching control or state "
                "input); requests do not send it: send only INPUT",
                lambda: client.infer("simple_sequence", [value, start], sequence_id=80, sequence_start=True))
        refused("must specify a non-zero or non-empty correlation ID",
                lambda: send(module, client, "simple_sequence", 1))
        refused("must specify the START flag on the first request",
                lambda: send(module, client, "simple_sequence", 1, sequence_id=77))
        # A string id is a sequence too (simple_sequence has no CORRID control) ...
        assert send(module, client, "simple_sequence", 5, sequence_id="s-1", sequence_start=True)[0][0] == 6
        assert send(module, client, "simple_sequence", 5, sequence_id="s-1", sequence_end=True)[0][0] == 5
        # ... which is closed after its END.
        refused("must specify the START flag",
                lambda: send(module, client, "simple_sequence", 5, sequence_id="s-1"))
        # A CORRID control of UINT64 cannot take a string id.
        refused("is a string, but the model's correlation ID control input is UINT64",
                lambda: send(module, client, "simple_dyna_sequence", 1, sequence_id="s-2", sequence_start=True))
        # One row a request.
        inp = module.InferInput("INPUT", [2, 1], "INT32")
        inp.set_data_from_numpy(np.ones((2, 1), dtype=np.int32))
        refused("must specify batch-size 1 due to requirements of sequence batcher",
                lambda: client.infer("simple_sequence", [inp], sequence_id=78, sequence_start=True))
        # A sequence idle for longer than max_sequence_idle_microseconds is closed.
        import time
        assert send(module, client, "simple_sequence_idle", 2, sequence_id=79, sequence_start=True)[0][0] == 3
        assert send(module, client, "simple_sequence_idle", 2, sequence_id=79)[0][0] == 2
        time.sleep(IDLE_MS / 1000 * 2)
        refused("must specify the START flag",
                lambda: send(module, client, "simple_sequence_idle", 2, sequence_id=79))
        # Other models ignore the sequence parameters, as Triton's do.
        client.get_model_metadata("simple_sequence")


def test_interleaved_sequences_from_many_threads(sequences):
    """Sequences sent at once from many threads, their requests interleaved
    in the server's batches: each answer is its own request's."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    _, addresses = sequences

    def one_sequence(seq):
        client = grpcclient.InferenceServerClient(addresses["gRPC"])
        got = []
        for i in range(6):
            value = seq * 10 + i
            got.append(int(send(grpcclient, client, "simple_dyna_sequence", value, sequence_id=seq,
                                sequence_start=i == 0, sequence_end=i == 5)[0][0]))
        # INPUT + START on the first; INPUT + END * CORRID on the last.
        want = [seq * 10 + i + (i == 0) + (seq if i == 5 else 0) for i in range(6)]
        assert got == want, (seq, got, want)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one_sequence, range(1, 33)))


# --- implicit state: Silero VAD, a recurrent model whose state the server keeps ---

VAD_CONFIG = """
name: "vad"
platform: "onnxruntime_onnx"
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  state [
    {
      input_name: "state"
      output_name: "stateN"
      data_type: TYPE_FP32
      dims: [ 2, 1, 128 ]
      initial_state { data_type: TYPE_FP32 dims: [ 2, 1, 128 ] zero_data: true name: "silence" }
    }
  ]
}
output [ { name: "output" data_type: TYPE_FP32 dims: [ 1, 1 ] } ]
"""


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vad")
    model = tmp / "repo/vad"
    (model / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "silero_vad/model.onnx", model / "1/model.onnx")
    (model / "config.pbtxt").write_text(VAD_CONFIG)
    proc, addresses = start_serve(tmp / "repo")
    wait_ready(addresses["HTTP"])
    yield model / "1/model.onnx", addresses
    stop_serve(proc)


@pytest.fixture(scope="module")
def vad_files(tmp_path_factory):
    """Silero VAD starting each sequence from a state read from a file
    (`initial_state { data_file }`), one whose file is too short, and one
    whose file name leads out of the model directory. The server is not
    ready (two models failed); it serves `vad_warm`."""
    import time

    import tritonclient.http as httpclient

    tmp = tmp_path_factory.mktemp("vad_files")
    path = FIXTURES / "silero_vad/model.onnx"
    warm = vad_state_after(path, np.sin(np.arange(3 * 512) / 5.0).astype(np.float32))
    for name, data, file in [("vad_warm", warm.astype("<f4").tobytes(), "warm.bin"),
                             ("vad_short", b"\0" * 1000, "warm.bin"),
                             ("vad_outside", b"", "../config.pbtxt")]:
        model = tmp / "repo" / name
        (model / "1").mkdir(parents=True)
        shutil.copy(path, model / "1/model.onnx")
        (model / "initial_state").mkdir()
        (model / "initial_state/warm.bin").write_bytes(data)
        (model / "config.pbtxt").write_text(
            VAD_CONFIG.replace('name: "vad"', f'name: "{name}"')
            .replace('zero_data: true name: "silence"', f'data_file: "{file}" name: "warm"'))
    proc, addresses = start_serve(tmp / "repo")
    client = httpclient.InferenceServerClient(addresses["HTTP"])
    deadline = time.time() + 120
    while True:
        try:
            states = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
            if states == {"vad_warm": "READY", "vad_short": "UNAVAILABLE", "vad_outside": "UNAVAILABLE"}:
                break
        except Exception:  # not answering yet
            pass
        assert time.time() < deadline, "the models did not settle within 120 s"
        time.sleep(0.2)
    yield path, warm, addresses
    stop_serve(proc)


def vad_state_after(path, audio, state=None):
    """The state ONNX Runtime's Python API leaves after `audio` (512-sample
    chunks) from `state` (zeros when None), and its answers."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))
    state = np.zeros((2, 1, 128), np.float32) if state is None else state
    for chunk in audio.reshape(-1, 512):
        _, state = session.run(None, {"input": chunk.reshape(1, -1), "state": state,
                                      "sr": np.array(16000, dtype=np.int64)})
    return state


def vad_chunk(module, client, chunk, model="vad", **sequence):
    audio = module.InferInput("input", [1, chunk.size], "FP32")
    audio.set_data_from_numpy(chunk.reshape(1, -1))
    sr = module.InferInput("sr", [], "INT64")
    sr.set_data_from_numpy(np.array(16000, dtype=np.int64))
    return client.infer(model, [audio, sr], **sequence).as_numpy("output")


def test_the_server_keeps_each_sequences_state(vad):
    """Two audio streams, their chunks interleaved, each its own sequence: the
    server feeds each chunk the state its own stream's previous chunk left
    (zeros at a start), so every answer equals ONNX Runtime's Python API
    run on that stream alone with the state carried by hand; a stream
    started again begins from silence."""
    import onnxruntime as ort

    path, addresses = vad
    session = ort.InferenceSession(str(path))
    rng = np.random.default_rng(7)
    streams = {
        "a": (rng.standard_normal((6, 512)) * 0.3).astype(np.float32),
        "b": np.sin(np.arange(6 * 512) / 9.0).reshape(6, 512).astype(np.float32) * 0.8,
    }
    want = {}
    for name, chunks in streams.items():
        state, outs = np.zeros((2, 1, 128), np.float32), []
        for chunk in chunks:
            out, state = session.run(None, {"input": chunk.reshape(1, -1), "state": state,
                                            "sr": np.array(16000, dtype=np.int64)})
            outs.append(out)
        want[name] = outs
    assert not np.allclose(want["a"][1], want["a"][0]), "the state must change the answer"
    for k, (module, client) in enumerate(clients(addresses)):
        ids = {"a": 100 + k, "b": f"stream-b-{k}"}
        meta = client.get_model_metadata("vad")
        names = [i.name for i in meta.inputs] if k else [i["name"] for i in meta["inputs"]]
        assert sorted(names) == ["input", "sr"], names
        for i in range(6):
            for name in ("a", "b"):
                got = vad_chunk(module, client, streams[name][i], sequence_id=ids[name],
                                sequence_start=i == 0, sequence_end=i == 5)
                np.testing.assert_allclose(got, want[name][i], rtol=1e-4, atol=1e-5,
                                           err_msg=f"stream {name}, chunk {i}")
            if i == 2:
                # Failed requests mid-stream leave the state as it was: one
                # refused by validation (FP64 audio), one the engine cannot
                # run (no samples: the model's reflection padding needs some;
                # on onnxruntime, since session 45, refused before the run:
                # the model has an LSTM, whose ONNX Runtime kernel ends the
                # process on some empty inputs), both the client's mistake
                # (400 / INVALID_ARGUMENT).
                from tritonclient.utils import InferenceServerException
                audio = module.InferInput("input", [1, 512], "FP64")
                audio.set_data_from_numpy(np.zeros((1, 512), np.float64))
                sr = module.InferInput("sr", [], "INT64")
                sr.set_data_from_numpy(np.array(16000, dtype=np.int64))
                with pytest.raises(InferenceServerException) as e:
                    client.infer("vad", [audio, sr], sequence_id=ids["a"])
                assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT"), e.value
                with pytest.raises(InferenceServerException) as e:
                    vad_chunk(module, client, np.zeros(0, np.float32), sequence_id=ids["a"])
                assert e.value.status() in ("400", "StatusCode.INVALID_ARGUMENT"), e.value
                said = e.value.message()
                assert "pad dimension with a value of 0" in said or "[1, 0] is empty" in said, e.value
        # A new sequence starts from the initial state again, not the last one.
        got = vad_chunk(module, client, streams["a"][0], sequence_id=ids["a"], sequence_start=True)
        np.testing.assert_allclose(got, want["a"][0], rtol=1e-4, atol=1e-5)
        got = vad_chunk(module, client, streams["a"][1], sequence_id=ids["a"], sequence_end=True)
        np.testing.assert_allclose(got, want["a"][1], rtol=1e-4, atol=1e-5)


def test_an_initial_state_from_a_data_file(vad_files):
    """`initial_state { data_file }`: each sequence of `vad_warm` starts from
    the state in `initial_state/warm.bin` (the state Silero VAD is left in
    after three chunks of a sine), so its answers equal ONNX Runtime's run
    from that state, and differ from a start from zeros; a file too short,
    or a name leading out of the model directory, leaves the model
    unavailable saying why, and the other models serve."""
    import onnxruntime as ort
    from tritonclient.utils import InferenceServerException

    path, warm, addresses = vad_files
    session = ort.InferenceSession(str(path))
    chunks = (np.random.default_rng(3).standard_normal((3, 512)) * 0.3).astype(np.float32)
    want, state = [], warm
    for chunk in chunks:
        out, state = session.run(None, {"input": chunk.reshape(1, -1), "state": state,
                                        "sr": np.array(16000, dtype=np.int64)})
        want.append(out)
    cold = session.run(None, {"input": chunks[0].reshape(1, -1), "state": np.zeros_like(warm),
                              "sr": np.array(16000, dtype=np.int64)})[0]
    assert not np.allclose(cold, want[0], atol=1e-4), "the file's state must change the answer"
    for k, (module, client) in enumerate(clients(addresses)):
        for again in range(2):  # a second sequence starts from the file's state too
            for i, chunk in enumerate(chunks):
                got = vad_chunk(module, client, chunk, model="vad_warm", sequence_id=7 + k,
                                sequence_start=i == 0, sequence_end=i == 2)
                np.testing.assert_allclose(got, want[i], rtol=1e-4, atol=1e-5,
                                           err_msg=f"client {k}, pass {again}, chunk {i}")
        index = client.get_model_repository_index()
        index = index if k == 0 else [{"name": m.name, "state": m.state, "reason": m.reason}
                                      for m in index.models]
        reasons = {m["name"]: (m.get("state"), m.get("reason", "")) for m in index}
        state, reason = reasons["vad_short"]
        assert state == "UNAVAILABLE", reasons
        assert "initial_state setting expects 1024 bytes, but the data provided from warm.bin " \
               "only has 1000 bytes" in reason, reason
        state, reason = reasons["vad_outside"]
        assert state == "UNAVAILABLE" and "must name a regular file in the model's 'initial_state' " \
               "folder" in reason, reasons
        with pytest.raises(InferenceServerException):
            vad_chunk(module, client, chunks[0], model="vad_short", sequence_id=1, sequence_start=True)


# --- implicit state of varying size: a state that grows a row a request ---

GROWING_CONFIG = """
name: "growing"
platform: "onnxruntime_onnx"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  direct { max_queue_delay_microseconds: 2000 }
  state [
    {
      input_name: "cache"
      output_name: "cache_out"
      data_type: TYPE_FP32
      dims: [ -1, 4 ]
      initial_state { data_type: TYPE_FP32 dims: [ 1, 4 ] zero_data: true name: "empty" }
    }
  ]
}
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "cache_out" data_type: TYPE_FP32 dims: [ -1, 4 ] }
]
"""


@pytest.fixture(scope="module")
def growing(tmp_path_factory):
    """A model whose state grows a row each request (a cache, as streaming
    transformers keep): `cache_out` = `cache` with `x` appended, `y` = the
    sum of the rows (so the sum of every `x` of the sequence so far)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["x", "one"], ["row"]),
            helper.make_node("Concat", ["cache", "row"], ["cache_out"], axis=1),
            helper.make_node("ReduceSum", ["cache_out", "one"], ["y"], keepdims=0),
        ],
        "growing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("cache", TensorProto.FLOAT, ["batch", "rows", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("cache_out", TensorProto.FLOAT, ["batch", "rows_out", 4])],
        [helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = tmp_path_factory.mktemp("growing")
    (tmp / "repo/growing/1").mkdir(parents=True)
    onnx.save(model, tmp / "repo/growing/1/model.onnx")
    (tmp / "repo/growing/config.pbtxt").write_text(GROWING_CONFIG)
    proc, addresses = start_serve(tmp / "repo")
    wait_ready(addresses["HTTP"])
    yield addresses
    stop_serve(proc)


def test_a_state_of_varying_size_grows_with_its_sequence(growing):
    """`dims: [ -1, 4 ]`: the state starts from initial_state's one row of
    zeros and takes the shape the model gives it (a row more each request).
    16 sequences from 8 threads, so that sequences whose caches have the
    same length share batches and others do not mix: every answer is the
    sum of its own sequence's inputs (numpy), and the state output, when
    asked for by name, has the sequence's own rows."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    def one_sequence(seq):
        module = httpclient if seq % 2 else grpcclient
        # Closed on this thread: an HTTP client left to the garbage collector
        # closes its gevent pool on whichever thread collects it, which fails
        # (PytestUnraisableExceptionWarning in a full run).
        with module.InferenceServerClient(growing["HTTP" if seq % 2 else "gRPC"]) as client:
            check_sequence(module, client, seq)

    def check_sequence(module, client, seq):
        rng = np.random.default_rng(seq)
        xs = rng.standard_normal((5 + seq % 3, 4)).astype(np.float32)
        for i, x in enumerate(xs):
            inp = module.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(x.reshape(1, 4))
            last = i == len(xs) - 1
            outputs = [module.InferRequestedOutput(n) for n in ("y", "cache_out")] if last else None
            result = client.infer("growing", [inp], outputs=outputs, sequence_id=1000 + seq,
                                  sequence_start=i == 0, sequence_end=last)
            np.testing.assert_allclose(result.as_numpy("y"), xs[: i + 1].sum(axis=0, keepdims=True),
                                       rtol=1e-5, atol=1e-5, err_msg=f"sequence {seq}, request {i}")
            if last:
                cache = result.as_numpy("cache_out")
                want = np.concatenate([np.zeros((1, 4), np.float32), xs])[None]
                np.testing.assert_array_equal(cache, want, err_msg=f"sequence {seq}")
            else:
                assert result.as_numpy("cache_out") is None, "the state is the server's"

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one_sequence, range(16)))
