"""Python sequence models as Triton 2.51 runs them.

Each sequence stays on one model instance: a model of several instances
that keeps a sequence's state in itself (`self`, keyed by the correlation
ID: the usual way in Python) sees all of that sequence's requests, as in
Triton, and the sequences spread over the instances. Checked with many
clients at once, each sequence's running sums against numpy's.

Decoupled sequence models (`model_transaction_policy { decoupled: true }`
with `sequence_batching`), as Triton 2.51 runs them: a stateful model that
streams (a chat session, a streaming recogniser). Each request of a
sequence gets its control inputs (START, END, CORRID) and reaches the model
in its sequence's order; the sequence's next request runs as soon as the
one before returned from `execute`, while that one may still be sending
responses (Triton's Python backend releases a decoupled request when
`execute` returns: read off tritonserver 2.51 with this model). Sequences
are refused as for any sequence model (no START, no correlation ID, after
END), on the stream and without harming it. Implicit state
(`sequence_batching.state`) on a decoupled model is refused at load, with
what to do instead.
"""
import concurrent.futures as cf
import json
import queue
import urllib.error
import urllib.request

import numpy as np
import pytest
from serve_support import python_repository, start_serve, stop_serve, wait_ready
from stream_support import Stream, final, tensor

CONTROLS = """
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
"""


def config(name, strategy="", state="", count=1):
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
model_transaction_policy {{ decoupled: true }}
sequence_batching {{
  max_sequence_idle_microseconds: 5000000
  {strategy}
  {CONTROLS}
  {state}
}}
input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [
  {{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "PENDING" data_type: TYPE_INT32 dims: [ 1 ] }}
]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
"""


# A running sum per sequence, kept in the model keyed by the CORRID control
# (checked against the request's correlation_id()). Each request answers
# three responses, OUT = sum * 10 + i, 0.2 s apart, from a thread of its
# own, then the final flag; PENDING is how many earlier requests of its
# sequence were still sending when its execute began.
SOURCE = """
import threading
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums, self.sending, self.lock = {}, {}, threading.Lock()

    def execute(self, requests):
        for request in requests:
            value = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0][0])
            start = int(pb_utils.get_input_tensor_by_name(request, "START").as_numpy()[0][0])
            end = int(pb_utils.get_input_tensor_by_name(request, "END").as_numpy()[0][0])
            corrid = int(pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy()[0][0])
            flags = request.flags()
            if corrid != request.correlation_id() or bool(flags & 1) != bool(start) \\
                    or bool(flags & 2) != bool(end):
                raise pb_utils.TritonModelException(
                    f"controls {start} {end} {corrid} disagree with {request.correlation_id()} {flags}")
            with self.lock:
                if start:
                    self.sums[corrid] = 0
                self.sums[corrid] = self.sums.get(corrid, 0) + value
                total, pending = self.sums[corrid], self.sending.get(corrid, 0)
                self.sending[corrid] = pending + 1
            sender = request.get_response_sender()
            threading.Thread(target=self.stream, args=(sender, corrid, total, pending)).start()
        return None

    def stream(self, sender, corrid, total, pending):
        for i in range(3):
            time.sleep(0.2)
            sender.send(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([[total * 10 + i]], np.int32)),
                pb_utils.Tensor("PENDING", np.array([[pending]], np.int32)),
            ]))
        with self.lock:
            self.sending[corrid] -= 1
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

# Not decoupled, three instances, each keeping running sums in itself; it
# answers the sum and its process id.
STATEFUL_CONFIG = """
name: "stateful"
backend: "python"
max_batch_size: 8
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "PID" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: 3 kind: KIND_CPU } ]
"""

STATEFUL = """
import os
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sums = {}

    def execute(self, requests):
        time.sleep(0.005)
        answers = []
        for request in requests:
            value = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0][0])
            start = int(pb_utils.get_input_tensor_by_name(request, "START").as_numpy()[0][0])
            corrid = int(pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy()[0][0])
            if start:
                self.sums[corrid] = 0
            # A sequence this instance has not seen starts far off.
            self.sums[corrid] = self.sums.get(corrid, -1_000_000) + value
            answers.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", np.array([[self.sums[corrid]]], np.int32)),
                pb_utils.Tensor("PID", np.array([[os.getpid()]], np.int32)),
            ]))
        return answers
"""

STATE = """state [ { input_name: "SIN" output_name: "SOUT" data_type: TYPE_INT32 dims: [ 1 ] } ]"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("dseq"), models=(
        ("dseq", config("dseq"), SOURCE),
        ("dseq_oldest", config("dseq_oldest", "oldest { max_candidate_sequences: 4 }"), SOURCE),
        ("dseq_state", config("dseq_state", state=STATE), SOURCE),
        ("dseq_two", config("dseq_two", count=2), SOURCE),
        ("stateful", STATEFUL_CONFIG, STATEFUL),
        ("stateful_batched", STATEFUL_CONFIG.replace('"stateful"', '"stateful_batched"').replace(
            "max_sequence_idle_microseconds: 5000000",
            "max_sequence_idle_microseconds: 5000000\n  direct { max_queue_delay_microseconds: 2000 }"),
         STATEFUL),
    ))
    # dseq_state does not load: the server is ready with the others.
    proc, addresses = start_serve(repo, "--strict-readiness", "false")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def by_request(stream, finals):
    """Responses read off `stream` until `finals` requests ended, by request
    id: (OUT values, PENDING values, error)."""
    got = {}
    while finals:
        result, error = stream.next(timeout=20)
        if error is not None:
            raise AssertionError(f"unexpected error: {error.message()}")
        rid = result.get_response().id
        outs, pendings = got.setdefault(rid, ([], []))
        if final(result):
            finals -= 1
            continue
        outs.append(int(result.as_numpy("OUT")[0][0]))
        pendings.append(int(result.as_numpy("PENDING")[0][0]))
    return got


@pytest.mark.parametrize("model", ["stateful", "stateful_batched"])
def test_each_sequence_stays_on_one_instance_of_a_model_that_keeps_its_state(server, model):
    import tritonclient.http as httpclient

    rng = np.random.default_rng(7)
    sequences = {seq: rng.integers(-50, 50, size=10).tolist() for seq in range(501, 513)}
    pids = {}

    def run(seq):
        client = httpclient.InferenceServerClient(server["HTTP"])
        try:
            got = []
            for at, v in enumerate(sequences[seq]):
                i = httpclient.InferInput("IN", [1, 1], "INT32")
                i.set_data_from_numpy(np.array([[v]], np.int32))
                r = client.infer(model, [i], sequence_id=seq, sequence_start=at == 0,
                                 sequence_end=at == len(sequences[seq]) - 1)
                got.append(int(r.as_numpy("OUT")[0][0]))
                pids.setdefault(seq, set()).add(int(r.as_numpy("PID")[0][0]))
            return got
        finally:
            client.close()

    with cf.ThreadPoolExecutor(len(sequences)) as pool:
        got = dict(zip(sequences, pool.map(run, sequences)))
    for seq, values in sequences.items():
        assert got[seq] == np.cumsum(values).tolist(), seq
        assert len(pids[seq]) == 1, (seq, pids[seq])
    # The sequences spread over the three instances.
    assert len(set().union(*pids.values())) == 3, pids


@pytest.mark.parametrize("model", ["dseq", "dseq_oldest", "dseq_two"])
def test_each_sequence_runs_in_order_and_streams_its_own_responses(server, model):
    streams = [Stream(server), Stream(server)]
    try:
        sequences = {7001: [4, 5, 6], 9001: [100, -30]}
        for (seq, values), stream in zip(sequences.items(), streams):
            for at, v in enumerate(values):
                stream.send(model, [tensor("IN", np.array([[v]], np.int32))], request_id=f"{seq}-{at}",
                            sequence_id=seq, sequence_start=at == 0, sequence_end=at == len(values) - 1,
                            enable_empty_final_response=True)
        got = {}
        for (seq, values), stream in zip(sequences.items(), streams):
            got.update(by_request(stream, len(values)))
    finally:
        for stream in streams:
            stream.close()
    for seq, values in sequences.items():
        sums = np.cumsum(values)
        for at, total in enumerate(sums):
            outs, pendings = got[f"{seq}-{at}"]
            assert outs == [int(total) * 10 + i for i in range(3)], (seq, at, outs)
            # The request after the first ran while the one before it was
            # still streaming: its turn came when the earlier execute
            # returned, not at its final response (as in Triton).
            assert len(set(pendings)) == 1, pendings
            assert (pendings[0] == 0) if at == 0 else (pendings[0] >= 1), (seq, at, pendings)


def test_sequence_refusals_arrive_on_the_stream_which_goes_on(server):
    stream = Stream(server)
    try:
        one = [tensor("IN", np.array([[1]], np.int32))]
        stream.send("dseq", one, sequence_id=4242)
        _, error = stream.next()
        assert error is not None and "must specify the START flag" in error.message(), error
        stream.send("dseq", one)
        _, error = stream.next()
        assert "non-zero or non-empty correlation ID" in error.message(), error
        stream.send("dseq", one, request_id="a", sequence_id=4243, sequence_start=True, sequence_end=True,
                    enable_empty_final_response=True)
        assert by_request(stream, 1)["a"][0] == [10, 11, 12]
        # Ended: its next request must start it again.
        stream.send("dseq", one, sequence_id=4243)
        _, error = stream.next()
        assert "must specify the START flag" in error.message(), error
        with pytest.raises(queue.Empty):
            stream.next(timeout=0.3)
    finally:
        stream.close()


def test_one_answer_endpoints_refuse_it_with_501(server):
    body = json.dumps({"inputs": [{"name": "IN", "shape": [1, 1], "datatype": "INT32", "data": [1]}],
                       "parameters": {"sequence_id": 5, "sequence_start": True}}).encode()
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/models/dseq/infer", body,
                                     {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 501
    assert "is decoupled" in json.loads(refused.value.read())["error"]


def test_implicit_state_on_a_decoupled_model_is_refused_at_load_saying_what_to_do(server):
    request = urllib.request.Request(f"http://{server['HTTP']}/v2/repository/index", b"{}")
    index = json.loads(urllib.request.urlopen(request, timeout=10).read())
    entry = next(e for e in index if e["name"] == "dseq_state")
    assert entry["state"] == "UNAVAILABLE"
    assert "'sequence_batching.state'" in entry["reason"] and "correlation_id()" in entry["reason"], entry
    ready = {e["name"]: e["state"] for e in index}
    assert ready["dseq"] == ready["dseq_oldest"] == ready["stateful"] == "READY"
