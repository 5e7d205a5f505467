"""Ensembles with a decoupled step (Triton's decoupled ensembles), as a
Triton user writes them: a preprocessing step, a decoupled step that sends
one response per token, and a postprocessing step run on each response;
the ensemble streams one response per token, over gRPC and HTTP
generate_stream, checked against numpy; one answer is refused (501 /
UNIMPLEMENTED, as Triton); many clients each get their own stream; a
client that cancels stops the decoupled step (counted by its own custom
metric); a failing postprocessing step fails only its request; and the
configurations Triton refuses (an output or a step mixing the responses
with what came before, two decoupled steps) do not load, saying why.
"""
import json
import queue
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from tritonclient.utils import InferenceServerException

PRE = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("IDS", (x + 100).astype(np.int32)),
                pb_utils.Tensor("LEN", np.array([x.size], np.int32)),
            ]))
        return out
'''

PRE_CONFIG = """
name: "pre"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "IDS" data_type: TYPE_INT32 dims: [ -1 ] }, { name: "LEN" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

# One response per id, until cancelled; 20 ms apart when an id is below 100
# (a negative text).
GEN = '''
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.family = pb_utils.MetricFamily(
            name="gen_tokens_total", description="Tokens sent", kind=pb_utils.MetricFamily.COUNTER)
        self.tokens = self.family.Metric(labels={})

    def execute(self, requests):
        for r in requests:
            ids = pb_utils.get_input_tensor_by_name(r, "IDS").as_numpy()
            threading.Thread(target=self.generate, args=(r.get_response_sender(), ids)).start()
        return None

    def generate(self, sender, ids):
        slow = bool((ids < 100).any())
        for v in ids:
            if slow:
                time.sleep(0.02)
            if sender.is_cancelled():
                break
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TOK", np.array([v], np.int32))]))
            self.tokens.increment(1)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
'''

GEN_CONFIG = """
name: "gen"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IDS" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "TOK" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

# VALUE = 0.5 * TOK, WORD = "w<TOK>"; a token of 113 (text 13) fails.
POST = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            t = pb_utils.get_input_tensor_by_name(r, "TOK").as_numpy()
            if t[0] == 113:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("13 is unlucky")))
                continue
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("VALUE", (t * 0.5).astype(np.float32)),
                pb_utils.Tensor("WORD", np.array([f"w{t[0]}".encode()], np.object_)),
            ]))
        return out
'''

POST_CONFIG = """
name: "post"
backend: "python"
max_batch_size: 0
input [ { name: "TOK" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "VALUE" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "WORD" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

JOIN = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("C", pb_utils.get_input_tensor_by_name(r, "A").as_numpy()
                                                            + pb_utils.get_input_tensor_by_name(r, "B").as_numpy())])
                for r in requests]
'''

JOIN_CONFIG = """
name: "join"
backend: "python"
max_batch_size: 0
input [ { name: "A" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "C" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""

# Not decoupled: reads the ensemble `pipe` as a stream (exec(decoupled=True))
# and answers the words it got, joined.
READER = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            text = pb_utils.get_input_tensor_by_name(r, "TEXT")
            words = []
            for response in pb_utils.InferenceRequest(
                model_name="pipe", inputs=[text], requested_output_names=["WORD"]
            ).exec(decoupled=True):
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                word = pb_utils.get_output_tensor_by_name(response, "WORD")
                if word is not None:
                    words.append(word.as_numpy()[0].decode())
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("WORDS", np.array([" ".join(words).encode()], np.object_))]))
        return out
'''

READER_CONFIG = """
name: "reader"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "WORDS" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

STEPS = """
  { model_name: "pre" model_version: -1 input_map { key: "TEXT" value: "TEXT" }
    output_map { key: "IDS" value: "ids" } output_map { key: "LEN" value: "len" } },
  { model_name: "gen" model_version: -1 input_map { key: "IDS" value: "ids" } output_map { key: "TOK" value: "tok" } },
  { model_name: "post" model_version: -1 input_map { key: "TOK" value: "tok" }
    output_map { key: "VALUE" value: "VALUE" } output_map { key: "WORD" value: "WORD" } }
"""


def ensemble(name, outputs, steps):
    return f"""
name: "{name}"
platform: "ensemble"
max_batch_size: 0
input [ {{ name: "TEXT" data_type: TYPE_INT32 dims: [ -1 ] }} ]
output [ {outputs} ]
ensemble_scheduling {{ step [ {steps} ] }}
"""


VALUE_WORD = '{ name: "VALUE" data_type: TYPE_FP32 dims: [ 1 ] }, { name: "WORD" data_type: TYPE_STRING dims: [ 1 ] }'
LEN = '{ name: "LEN" data_type: TYPE_INT32 dims: [ 1 ] }'


def write_ensemble(repo, name, config):
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    examples = ("spell", "spell_codes", "spell_each", "spell_upper")
    repo = python_repository(tmp_path_factory.mktemp("decoupled_ensemble"), examples=examples, models=(
        ("pre", PRE_CONFIG, PRE), ("gen", GEN_CONFIG, GEN), ("post", POST_CONFIG, POST), ("join", JOIN_CONFIG, JOIN),
        ("reader", READER_CONFIG, READER),
    ))
    # pre's LEN is not mapped: a tensor nothing reads is refused, as Triton refuses it.
    write_ensemble(repo, "pipe", ensemble("pipe", VALUE_WORD, STEPS.replace(' output_map { key: "LEN" value: "len" }', "")))
    # Refused, as Triton refuses them: an ensemble output from before the
    # decoupled step; a step taking from both sides; two decoupled steps.
    write_ensemble(repo, "mixed_output", ensemble(
        "mixed_output", VALUE_WORD + ", " + LEN, STEPS.replace('value: "len"', 'value: "LEN"')))
    write_ensemble(repo, "mixed_step", ensemble("mixed_step", '{ name: "C" data_type: TYPE_INT32 dims: [ 1 ] }', """
  { model_name: "pre" model_version: -1 input_map { key: "TEXT" value: "TEXT" }
    output_map { key: "IDS" value: "ids" } output_map { key: "LEN" value: "len" } },
  { model_name: "gen" model_version: -1 input_map { key: "IDS" value: "ids" } output_map { key: "TOK" value: "tok" } },
  { model_name: "join" model_version: -1 input_map { key: "A" value: "tok" } input_map { key: "B" value: "len" }
    output_map { key: "C" value: "C" } }
"""))
    write_ensemble(repo, "two_decoupled", ensemble("two_decoupled", '{ name: "T2" data_type: TYPE_INT32 dims: [ 1 ] }', """
  { model_name: "gen" model_version: -1 input_map { key: "IDS" value: "TEXT" } output_map { key: "TOK" value: "t1" } },
  { model_name: "gen" model_version: -1 input_map { key: "IDS" value: "t1" } output_map { key: "TOK" value: "T2" } }
"""))
    proc, addresses = start_serve(repo, "--strict-readiness", "false")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def tensor(values):
    t = grpcclient.InferInput("TEXT", [len(values)], "INT32")
    t.set_data_from_numpy(np.asarray(values, np.int32))
    return t


def stream(server, values, **kw):
    """One request on its own stream: [(VALUE, WORD)] then the error, if any."""
    client = grpcclient.InferenceServerClient(server["gRPC"])
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer("pipe", [tensor(values)], enable_empty_final_response=True, **kw)
    out, error = [], None
    while True:
        result, error = got.get(timeout=30)
        if error is not None:
            break
        response = result.get_response()
        if response.outputs:
            out.append((float(result.as_numpy("VALUE")[0]), result.as_numpy("WORD")[0].decode()))
        if response.parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    return out, error


def metrics(server):
    with urllib.request.urlopen(f"http://{server['HTTP']}/metrics") as r:
        return r.read().decode()


def tokens_sent(server):
    for line in metrics(server).splitlines():
        if line.startswith("gen_tokens_total "):
            return float(line.split()[1])
    return 0.0


def expected(values):
    ids = np.asarray(values, np.int32) + 100
    return [(float(np.float32(t) * np.float32(0.5)), f"w{t}") for t in ids]


def test_each_token_is_postprocessed_and_streamed_in_order(server):
    values = np.random.default_rng(4).integers(200, 400, size=12)
    out, error = stream(server, values)
    assert error is None
    assert out == expected(values)


def test_generate_stream_gives_one_event_per_token(server):
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/models/pipe/generate_stream",
                                     data=json.dumps({"TEXT": [300, 301, 302]}).encode())
    with urllib.request.urlopen(request) as r:
        events = [json.loads(line[6:]) for line in r.read().decode().splitlines() if line.startswith("data: ")]
    assert [(e["VALUE"], e["WORD"]) for e in events] == expected([300, 301, 302])


def test_one_answer_is_refused_as_triton_refuses_it(server):
    body = json.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "INT32", "data": [1]}]}).encode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(f"http://{server['HTTP']}/v2/models/pipe/infer", data=body))
    assert e.value.code == 501
    assert "has a decoupled step" in json.load(e.value)["error"]
    with pytest.raises(InferenceServerException) as e:
        grpcclient.InferenceServerClient(server["gRPC"]).infer("pipe", [tensor([1])])
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"


def test_many_clients_each_get_their_own_stream(server):
    inputs = [list(range(200 + 10 * i, 200 + 10 * i + 2 + i % 4)) for i in range(12)]
    results = [None] * len(inputs)

    def run(i):
        results[i] = stream(server, inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for values, (out, error) in zip(inputs, results):
        assert error is None and out == expected(values)


def test_a_failing_round_fails_its_request_only(server):
    out, error = stream(server, [201, 13, 202])
    assert out == expected([201])
    assert "step 2 (model 'post')" in str(error) and "13 is unlucky" in str(error)
    assert stream(server, [203])[0] == expected([203])


def test_a_client_that_cancels_stops_the_decoupled_step(server):
    before = tokens_sent(server)
    client = grpcclient.InferenceServerClient(server["gRPC"])
    got = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    # Negative ids: 20 ms between tokens; 500 of them would take 10 s.
    client.async_stream_infer("pipe", [tensor(list(range(-600, -100)))])
    for _ in range(3):
        result, error = got.get(timeout=30)
        assert error is None
    client.stop_stream(cancel_requests=True)
    time.sleep(0.5)
    sent = tokens_sent(server) - before
    time.sleep(0.3)
    assert sent == tokens_sent(server) - before and sent < 100, sent


def test_what_triton_refuses_does_not_load_and_says_why(server):
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/repository/index", data=b"{}")
    with urllib.request.urlopen(request) as r:
        index = {m["name"]: m for m in json.load(r)}
    assert index["pipe"]["state"] == "READY"
    reasons = {
        "mixed_output": "ensemble output 'LEN' does not come from the responses of the decoupled step 1 (model 'gen')",
        "mixed_step": "step 2 (model 'join') takes tensors both from the responses of the decoupled step 1 (model 'gen')",
        "two_decoupled": "it has 2 decoupled steps",
    }
    for name, words in reasons.items():
        assert index[name]["state"] == "UNAVAILABLE" and words in index[name]["reason"], index[name]


def test_the_example_spells_a_text_letter_by_letter_as_it_goes(server):
    """examples/python_models/spell, as the README shows it: one event per
    letter, upper-cased, each sent as the decoupled step sends its code
    point (100 ms apart), not all at the end."""
    text = "héllo wörld"
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/models/spell/generate_stream",
                                     data=json.dumps({"TEXT": text}).encode())
    arrivals = []
    with urllib.request.urlopen(request) as r:
        for line in r:
            if line.startswith(b"data: "):
                arrivals.append((time.monotonic(), json.loads(line[6:])["LETTER"]))
    assert "".join(letter for _, letter in arrivals) == text.upper()
    assert arrivals[-1][0] - arrivals[0][0] > 0.5, "the letters came all at once"


def test_a_python_model_reads_the_ensembles_stream(server):
    client = grpcclient.InferenceServerClient(server["gRPC"])
    result = client.infer("reader", [tensor([205, 206, 207])])
    assert result.as_numpy("WORDS")[0].decode() == " ".join(word for _, word in expected([205, 206, 207]))
