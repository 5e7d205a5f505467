"""Responses per second over gRPC streams (ModelStreamInfer), as a Triton
user's client sees them: `clients` streams on threads of their own, each
sending `requests` requests one at a time, with
enable_empty_final_response. `repeat` (examples/python_models, decoupled)
gets `values` values and answers one response per value; `add_sub` gets two
FP32 [4] inputs and answers once. Prints responses per second and the
time to each request's first response (p50, p99). Point it at anemone or
at tritonserver serving the same models (docs/PERFORMANCE.md).

    .venv/bin/python scripts/triton_peer/stream_bench.py localhost:8001 repeat 4 30 200
    .venv/bin/python scripts/triton_peer/stream_bench.py localhost:8001 pipe 1 30 200 TEXT
"""
import sys, time, queue, threading
from functools import partial
import numpy as np
import tritonclient.grpc as g

url, model, clients, requests, values = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
# The INT32 input's name: `repeat`'s IN by default (a decoupled ensemble's may differ).
input_name = sys.argv[6] if len(sys.argv) > 6 else "IN"
firsts = []

def client(out):
    c = g.InferenceServerClient(url)
    q = queue.Queue()
    c.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), q))
    if model == "add_sub":
        a = g.InferInput("INPUT0", [4], "FP32"); a.set_data_from_numpy(np.ones(4, np.float32))
        b = g.InferInput("INPUT1", [4], "FP32"); b.set_data_from_numpy(np.ones(4, np.float32))
        inputs = [a, b]
    else:
        x = g.InferInput(input_name, [values], "INT32"); x.set_data_from_numpy(np.arange(values, dtype=np.int32))
        inputs = [x]
    got = 0
    for _ in range(requests):
        sent = time.perf_counter()
        c.async_stream_infer(model, inputs, enable_empty_final_response=True)
        first = None
        while True:
            r, e = q.get(timeout=60)
            assert e is None, e
            if first is None:
                first = time.perf_counter() - sent
            final = r.get_response().parameters["triton_final_response"].bool_param
            if r.get_response().outputs:
                got += 1
            if final:
                break
        firsts.append(first)
    c.stop_stream()
    out.append(got)

# warm-up
w = []; client(w)
firsts.clear()
out = []
threads = [threading.Thread(target=client, args=(out,)) for _ in range(clients)]
start = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
secs = time.perf_counter() - start
f = sorted(firsts)
print(f"{model} clients={clients} requests={clients*requests} responses={sum(out)} in {secs:.2f}s: {sum(out)/secs:.0f} responses/s; first response p50 {1e3*f[len(f)//2]:.2f} ms p99 {1e3*f[int(len(f)*0.99)-1]:.2f} ms")
