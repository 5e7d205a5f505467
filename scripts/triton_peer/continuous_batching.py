#!/usr/bin/env python3
"""Request rescheduling under load, on the real Triton and on anemone: does
a new request join the generations already running (continuous batching),
or wait for them to end?

Both serve `generator`, a Python model with `sequence_batching {
iterative_sequence: true }`, `max_batch_size: 8` and one instance: each
`execute` takes 10 ms and gives every request in it one "token"; a request
asking for N tokens is rescheduled until it has them, then answered with the
number of requests in each `execute` it ran in. Requests arrive one every
`--gap` ms (`--requests` of them, `--tokens` tokens each), each on a thread
of its own over HTTP.

Prints, for each server, the requests' latency (mean, p50, max, from send
to answer) and the mean number of requests per `execute` a token was made
in. A server that runs rescheduled requests before taking new ones keeps
a new request waiting for a whole generation; one that re-queues them
lets it join at the next `execute`.

    .venv/bin/python scripts/triton_peer/continuous_batching.py \\
        --anemone target/debug/anemone [--peer target/triton-peer] [--anemone-before OLD_BINARY]

Needs the peer (scripts/triton_peer/setup.sh) for Triton's side; without
`--peer` only anemone runs. docs/PERFORMANCE.md has the figures.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from peer import ask, start_anemone, start_triton

MODEL = '''import os, sys
sp = os.environ.get("TPEER_SP")
if sp: sys.path.insert(0, sp)
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.sizes = {}

    def execute(self, requests):
        time.sleep(0.01)
        responses = []
        for request in requests:
            wanted = int(pb_utils.get_input_tensor_by_name(request, "TOKENS").as_numpy().ravel()[0])
            sizes = self.sizes.setdefault(request.correlation_id(), [])
            sizes.append(len(requests))
            if len(sizes) < wanted:
                request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                responses.append(None)
                continue
            del self.sizes[request.correlation_id()]
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("SIZES", np.array([sizes], dtype=np.int32))]))
        return responses
'''

CONFIG = '''name: "generator"
backend: "python"
max_batch_size: 8
input [ { name: "TOKENS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "SIZES" data_type: TYPE_INT32 dims: [ -1 ] } ]
sequence_batching { iterative_sequence: true }
instance_group [ { kind: KIND_CPU count: 1 } ]
'''


def load(http: str, requests: int, tokens: int, gap: float):
    """Latencies (s) and the requests per execute of every token made."""
    latencies, sizes = [None] * requests, [None] * requests
    body = json.dumps({"inputs": [{"name": "TOKENS", "shape": [1, 1], "datatype": "INT32",
                                   "data": [tokens]}]}).encode()

    def send(i):
        started = time.monotonic()
        req = urllib.request.Request(f"http://{http}/v2/models/generator/infer", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())
        latencies[i] = time.monotonic() - started
        sizes[i] = answer["outputs"][0]["data"]

    threads = []
    for i in range(requests):
        t = threading.Thread(target=send, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(gap)
    for t in threads:
        t.join(180)
    return latencies, [s for each in sizes for s in each]


def summary(latencies, sizes):
    ms = sorted(x * 1000 for x in latencies)
    return (f"latency mean {statistics.mean(ms):.0f} ms, p50 {statistics.median(ms):.0f} ms, "
            f"max {ms[-1]:.0f} ms; requests per execute {statistics.mean(sizes):.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--anemone", type=Path, required=True, help="the anemone binary")
    p.add_argument("--anemone-before", type=Path, help="another anemone binary to compare (an older build)")
    p.add_argument("--peer", type=Path, help="scripts/triton_peer/setup.sh's folder, for Triton's side")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--gap", type=float, default=25.0, help="milliseconds between two requests")
    args = p.parse_args()
    # anemone's Python models run on this interpreter (it has numpy).
    os.environ.setdefault("ANEMONE_PYTHON", sys.executable)
    out = Path(tempfile.mkdtemp(prefix="continuous-batching-"))
    repo = out / "repo"
    (repo / "generator" / "1").mkdir(parents=True)
    (repo / "generator" / "config.pbtxt").write_text(CONFIG)
    (repo / "generator" / "1" / "model.py").write_text(MODEL)
    print(f"{args.requests} requests of {args.tokens} tokens, one every {args.gap:.0f} ms; "
          f"10 ms an execute, max_batch_size 8, one instance (logs in {out})")
    sides = [("anemone", lambda r, h, g, log: start_anemone(args.anemone, r, h, g, log))]
    if args.anemone_before:
        sides.append(("anemone (before)", lambda r, h, g, log: start_anemone(args.anemone_before, r, h, g, log)))
    if args.peer:
        os.environ["TPEER_SP"] = (args.peer / "site-packages").read_text().split()[0]
        sides.append(("tritonserver 2.51", lambda r, h, g, log: start_triton(args.peer, r, h, g, log)))
    for name, start in sides:
        def questions(http, _grpc):
            load(http, 2, 2, 0.0)  # warm up the process
            return [("run", load(http, args.requests, args.tokens, args.gap / 1000))]
        (_, (latencies, sizes)), = ask(name.split()[0], start, repo, out, ["generator"], questions)
        print(f"{name:20} {summary(latencies, sizes)}")


if __name__ == "__main__":
    main()
