#!/usr/bin/env python3
"""Makes the same system shared memory calls to the real Triton and to
anemone, and compares what each answers (docs/SERVING.md#shared-memory).

Both serve `add` (x + y, x - y on FP32 [batch, 4]): Triton in its Python
backend, anemone the ONNX file of examples/models/add. The calls, made with
tritonclient over HTTP (status codes) and gRPC (status codes), on regions
created with tritonclient.utils.shared_memory: registrations (good, twice,
a key that opens nothing, past the object's end, an offset that is not a
multiple of the page size, no key), status of a known and an unknown
region, inferences with inputs and outputs in shared memory (whose outputs
are read back and checked against numpy), and every mistake of
docs/SERVING.md's table, then unregistering.

Prints one line a call with both answers. Exit status 1 when they differ
other than as documented in docs/SERVING.md (where Triton answers 500 /
INTERNAL or ALREADY_EXISTS and anemone 400 / INVALID_ARGUMENT, and where
anemone takes an offset Triton's mmap refuses), or when an output read back
is wrong.

Usage: shared_memory.py PEER_DIR ANEMONE_BIN
  PEER_DIR is scripts/triton_peer/setup.sh's output; run this with its
  venv's python (it has tritonclient and numpy).
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

import add_model
import peer

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(sys.argv[1]).resolve()
ANEMONE = Path(sys.argv[2]).resolve()
OUT = PEER / "shared-memory"
PID = os.getpid()
IN, OUT_KEY = f"/peer-shm-in-{PID}", f"/peer-shm-out-{PID}"
X = np.array([[1.5, -2, 3.25, 8]], np.float32)
Y = np.array([[10, 20.5, -30, 0.125]], np.float32)

# label -> (Triton's answers, anemone's), each documented in docs/SERVING.md.
# Triton refuses an offset that is not page-aligned with 500 or 400 from one
# run to the next.
DOCUMENTED = {
    "register: no such object": (("500",), "400"),
    "register: past the object's end": (("500",), "400"),
    "register: offset not page-aligned": (("500", "400"), "200"),
    "infer: via the unaligned region": (("404",), "200"),
    "infer: output slice too small": (("500",), "400"),
    "infer: byte size as a string": (("500",), "400"),
    "grpc register: twice": (("ALREADY_EXISTS",), "INVALID_ARGUMENT"),
    "grpc register: no such object": (("INTERNAL",), "INVALID_ARGUMENT"),
    "grpc register: empty name": (("INTERNAL",), "INVALID_ARGUMENT"),
}


def repos() -> tuple[Path, Path]:
    shutil.rmtree(OUT, ignore_errors=True)
    triton, anemone = OUT / "triton/add", OUT / "anemone/add"
    sites = (PEER / "site-packages").read_text().split()
    for d in (triton, anemone):
        (d / "1").mkdir(parents=True)
    (triton / "config.pbtxt").write_text(add_model.config("add", 'backend: "python"', ""))
    (triton / "1/model.py").write_text(add_model.model_py(sites))
    (anemone / "config.pbtxt").write_text(add_model.config("add", "", ""))
    shutil.copy(ROOT / "examples/models/add/1/model.onnx", anemone / "1/model.onnx")
    return triton.parent, anemone.parent


def tensor(name, region, offset, size, data=None):
    t = {"name": name, "shape": [1, 4], "datatype": "FP32",
         "parameters": {"shared_memory_region": region, "shared_memory_byte_size": size,
                        "shared_memory_offset": offset}}
    if data is not None:
        t["data"] = data
    return t


def output(name, region, offset, size):
    return {"name": name, "parameters": {"shared_memory_region": region, "shared_memory_byte_size": size,
                                         "shared_memory_offset": offset}}


def calls(http: str, grpc: str, h_out, messages: dict) -> list[tuple[str, str]]:
    """Every call, in order: (label, answer); error messages go in `messages`."""
    done = []

    def call(label, method, path, body=None):
        status, answer = peer.request(f"{http}{path}", body, method)
        messages[label] = answer.get("error", "") if isinstance(answer, dict) else ""
        done.append((label, str(status)))

    def register(label, name, key, offset, size):
        call(label, "POST", f"/v2/systemsharedmemory/region/{name}/register",
             {"key": key, "offset": offset, "byte_size": size})

    def infer(label, inputs, outputs=None, check=None):
        body = {"inputs": inputs}
        if outputs:
            body["outputs"] = outputs
        call(label, "POST", "/v2/models/add/infer", body)
        if check and done[-1][1] == "200":
            for offset, want in check:
                got = shm.get_contents_as_numpy(h_out, np.float32, [1, 4], offset=offset)
                if not np.array_equal(got, want):
                    done[-1] = (label, f"200 but {got.tolist()} != {want.tolist()}")
            h_out_clear()

    def h_out_clear():
        shm.set_shared_memory_region(h_out, [np.zeros(16, np.float32)])

    call("unregister all (start)", "POST", "/v2/systemsharedmemory/unregister")
    register("register: in", "in", IN, 0, 64)
    register("register: out", "out", OUT_KEY, 0, 64)
    register("register: twice", "in", IN, 0, 64)
    register("register: no such object", "r", f"/peer-shm-none-{PID}", 0, 64)
    register("register: past the object's end", "r", IN, 0, 1 << 20)
    register("register: offset not page-aligned", "odd", IN, 16, 48)
    call("register: no key", "POST", "/v2/systemsharedmemory/region/r/register", {"byte_size": 8})
    call("status: a region", "GET", "/v2/systemsharedmemory/region/in/status")
    call("status: unknown", "GET", "/v2/systemsharedmemory/region/zz/status")
    infer("infer: all in shared memory", [tensor("x", "in", 0, 16), tensor("y", "in", 16, 16)],
          [output("sum", "out", 0, 16), output("diff", "out", 16, 16)], [(0, X + Y), (16, X - Y)])
    infer("infer: one output in the answer", [tensor("x", "in", 0, 16), tensor("y", "in", 16, 16)],
          [{"name": "sum"}, output("diff", "out", 32, 16)], [(32, X - Y)])
    infer("infer: via the unaligned region", [tensor("x", "odd", 0, 16), tensor("y", "in", 16, 16)])
    infer("infer: output slice too small", [tensor("x", "in", 0, 16), tensor("y", "in", 16, 16)],
          [output("sum", "out", 0, 8)])
    infer("infer: input size unlike its shape", [tensor("x", "in", 0, 12), tensor("y", "in", 16, 16)])
    infer("infer: past the region", [tensor("x", "in", 56, 16), tensor("y", "in", 16, 16)])
    infer("infer: unknown region", [tensor("x", "zz", 0, 16), tensor("y", "in", 16, 16)])
    infer("infer: no byte size", [{**tensor("x", "in", 0, 16), "parameters": {"shared_memory_region": "in"}},
                                  tensor("y", "in", 16, 16)])
    bad = tensor("x", "in", 0, 16)
    bad["parameters"]["shared_memory_byte_size"] = "16"
    infer("infer: byte size as a string", [bad, tensor("y", "in", 16, 16)])
    infer("infer: data and a region", [tensor("x", "in", 0, 16, data=X.ravel().tolist()), tensor("y", "in", 16, 16)])

    g = grpcclient.InferenceServerClient(grpc)

    def grpc_call(label, fn):
        try:
            fn()
            done.append((label, "OK"))
        except InferenceServerException as e:
            messages[label] = e.message()
            done.append((label, str(e.status()).replace("StatusCode.", "")))

    grpc_call("grpc register: twice", lambda: g.register_system_shared_memory("in", IN, 64))
    grpc_call("grpc register: no such object", lambda: g.register_system_shared_memory("g", f"/peer-shm-none-{PID}", 8))
    grpc_call("grpc register: empty name", lambda: g.register_system_shared_memory("", IN, 64))
    grpc_call("grpc status: unknown", lambda: g.get_system_shared_memory_status("zz"))

    def grpc_infer():
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_shared_memory("in", 16, 0)
        y = grpcclient.InferInput("y", [1, 4], "FP32")
        y.set_data_from_numpy(Y)
        s = grpcclient.InferRequestedOutput("sum")
        s.set_shared_memory("out", 16, 0)
        r = g.infer("add", [x, y], outputs=[s, grpcclient.InferRequestedOutput("diff")])
        got = shm.get_contents_as_numpy(h_out, np.float32, [1, 4])
        raw = [len(c) for c in r.get_response().raw_output_contents]
        if not np.array_equal(got, X + Y) or not np.array_equal(r.as_numpy("diff"), X - Y) or raw != [0, 16]:
            raise InferenceServerException(f"wrong answer: {got} {raw}", status="WRONG")
    grpc_call("grpc infer: x and sum in shared memory", grpc_infer)
    grpc_call("grpc unregister: unknown", lambda: g.unregister_system_shared_memory("zz"))
    call("unregister: in", "POST", "/v2/systemsharedmemory/region/in/unregister")
    infer("infer: after unregister", [tensor("x", "in", 0, 16), tensor("y", "out", 16, 16)])
    call("unregister: all", "POST", "/v2/systemsharedmemory/unregister")
    call("status: all, at the end", "GET", "/v2/systemsharedmemory/status")
    return done


def run(name: str, start, repo: Path, h_out, messages: dict) -> list[tuple[str, str]]:
    http, grpc = peer.free_port(), peer.free_port()
    proc = start(repo, http, grpc, OUT / f"{name}.log")
    base = f"http://127.0.0.1:{http}"
    try:
        peer.wait_ready(base, proc, name, OUT / f"{name}.log", ["add"])
        return calls(base, f"127.0.0.1:{grpc}", h_out, messages)
    finally:
        peer.stop(proc)


def main() -> None:
    triton_repo, anemone_repo = repos()
    h_in = shm.create_shared_memory_region("in", IN, 64)
    h_out = shm.create_shared_memory_region("out", OUT_KEY, 64)
    try:
        shm.set_shared_memory_region(h_in, [X, Y])
        t_said, a_said = {}, {}
        t = run("triton", lambda r, h, g, log: peer.start_triton(PEER, r, h, g, log), triton_repo, h_out, t_said)
        a = run("anemone", lambda r, h, g, log: peer.start_anemone(ANEMONE, r, h, g, log), anemone_repo, h_out,
                a_said)
    finally:
        shm.destroy_shared_memory_region(h_in)
        shm.destroy_shared_memory_region(h_out)
    differ = False
    print(f"{'call':42} {'triton':>18} {'anemone':>18}")
    for (label, ta), (_, aa) in zip(t, a):
        if ta == aa:
            mark = ""
        elif ta in DOCUMENTED.get(label, ((), ""))[0] and aa == DOCUMENTED[label][1]:
            mark = "   (documented)"
        else:
            mark = "   <- differs"
            differ = True
        print(f"{label:42} {ta:>18} {aa:>18}{mark}")
        if ta != aa:
            print(f"    triton:  {t_said.get(label, '')}\n    anemone: {a_said.get(label, '')}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
