#!/usr/bin/env python3
"""Checks Triton's CUDA shared memory on a running `anemone serve`, on a GPU.

    python3 scripts/cuda_shm_check.py [URL]

The server serves examples/models (the `add` model: sum = x + y, diff = x - y,
FP32 [-1, 4]) at URL (http://127.0.0.1:8000). This script, another process
as CUDA IPC needs, allocates GPU memory with CuPy, exports it with
cudaIpcGetMemHandle, registers it over the HTTP API as tritonclient does
(`{"raw_handle": {"b64": ...}, "device_id": 0, "byte_size": N}`), and sends
requests whose inputs are read from that memory and whose outputs are written
into it. Each answer is read back from the GPU and compared with numpy's.
It also checks the refusals (a region larger than the memory behind its
handle, a GPU that does not exist) and that an unregistered region is no
longer used. With tritonclient installed, the same over gRPC with
tritonclient's own calls. Exits non-zero on the first difference.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

import cupy
import numpy as np

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        sys.exit(1)


class GpuBuffer:
    """`n` bytes of GPU memory, exported as a CUDA IPC handle."""

    def __init__(self, n):
        self.n = n
        self.ptr = cupy.cuda.runtime.malloc(n)
        self.handle = bytes(cupy.cuda.runtime.ipcGetMemHandle(self.ptr))

    def write(self, at, array):
        b = np.ascontiguousarray(array)
        cupy.cuda.runtime.memcpy(self.ptr + at, b.ctypes.data, b.nbytes,
                                 cupy.cuda.runtime.memcpyHostToDevice)

    def read(self, at, n, dtype=np.float32):
        out = np.empty(n // np.dtype(dtype).itemsize, dtype)
        cupy.cuda.runtime.memcpy(out.ctypes.data, self.ptr + at, n,
                                 cupy.cuda.runtime.memcpyDeviceToHost)
        return out

    def register(self, name, byte_size=None, device_id=0):
        return call("POST", f"/v2/cudasharedmemory/region/{name}/register", {
            "raw_handle": {"b64": base64.b64encode(self.handle).decode()},
            "device_id": device_id,
            "byte_size": self.n if byte_size is None else byte_size,
        })


def shm(region, n, offset=0):
    return {"shared_memory_region": region, "shared_memory_byte_size": n,
            "shared_memory_offset": offset}


def main():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = rng.standard_normal((3, 4)).astype(np.float32)
    n = x.nbytes  # 48

    inputs = GpuBuffer(4096)
    outputs = GpuBuffer(4096)
    inputs.write(0, x)
    inputs.write(1024, y)
    outputs.write(0, np.full(256, np.nan, np.float32))

    status, body = inputs.register("gpu_in")
    expect(status == 200, f"register the inputs' GPU memory: {status} {body}")
    status, body = outputs.register("gpu_out")
    expect(status == 200, f"register the outputs' GPU memory: {status} {body}")
    status, body = call("GET", "/v2/cudasharedmemory/status")
    expect(status == 200 and sorted(r["name"] for r in body) == ["gpu_in", "gpu_out"]
           and all(r["device_id"] == 0 and r["byte_size"] == 4096 for r in body),
           f"status lists both regions: {body}")

    # Both inputs from GPU memory, `sum` into GPU memory, `diff` in the answer.
    request = {
        "inputs": [
            {"name": "x", "shape": [3, 4], "datatype": "FP32", "parameters": shm("gpu_in", n)},
            {"name": "y", "shape": [3, 4], "datatype": "FP32",
             "parameters": shm("gpu_in", n, 1024)},
        ],
        "outputs": [
            {"name": "sum", "parameters": shm("gpu_out", n, 512)},
            {"name": "diff"},
        ],
    }
    status, body = call("POST", "/v2/models/add/infer", request)
    expect(status == 200, f"infer from and into GPU memory: {status}")
    out = {o["name"]: o for o in body["outputs"]}
    expect("data" not in out["sum"], "`sum` answered without data (it is in GPU memory)")
    got_sum = outputs.read(512, n).reshape(3, 4)
    expect(np.array_equal(got_sum, x + y), f"`sum` read back from the GPU equals numpy's x + y: {got_sum.ravel()[:4]}")
    got_diff = np.array(out["diff"]["data"], np.float32).reshape(3, 4)
    expect(np.array_equal(got_diff, x - y), "`diff` in the answer equals numpy's x - y")
    expect(np.isnan(outputs.read(0, 512)).all(), "bytes before the output's offset untouched")

    # A larger batch, written again in place: the server reads the new bytes.
    x2 = rng.standard_normal((8, 4)).astype(np.float32)
    inputs.write(0, x2)
    inputs.write(1024, x2)
    request2 = {
        "inputs": [
            {"name": "x", "shape": [8, 4], "datatype": "FP32", "parameters": shm("gpu_in", 128)},
            {"name": "y", "shape": [8, 4], "datatype": "FP32", "parameters": shm("gpu_in", 128, 1024)},
        ],
        "outputs": [{"name": "sum", "parameters": shm("gpu_out", 128, 2048)}],
    }
    status, _ = call("POST", "/v2/models/add/infer", request2)
    expect(status == 200 and np.array_equal(outputs.read(2048, 128).reshape(8, 4), 2 * x2),
           "new bytes in the same region: read again, the answer x + x")

    # Refusals.
    small = GpuBuffer(256)
    status, body = small.register("too_big", byte_size=4096)
    expect(status == 400 and "bytes of GPU memory its handle shares" in body["error"],
           f"a region larger than its memory is refused: {body}")
    status, body = inputs.register("no_gpu", device_id=99)
    expect(status == 400 and "not a GPU of this server's" in body["error"],
           f"a GPU that does not exist is refused: {body}")
    status, body = inputs.register("gpu_in")
    expect(status == 400 and "already registered" in body["error"], "a name registered twice is refused")
    request3 = dict(request, outputs=[{"name": "sum", "parameters": shm("gpu_out", 48, 4090)}])
    status, body = call("POST", "/v2/models/add/infer", request3)
    expect(status == 400 and "beyond" in body["error"], f"an output past the region's end is refused: {body}")

    # Unregistered: refused by name; the other region still serves.
    status, _ = call("POST", "/v2/cudasharedmemory/region/gpu_in/unregister")
    expect(status == 200, "unregister the inputs' region")
    status, body = call("POST", "/v2/models/add/infer", request)
    expect(status == 404 and "register it first" in body["error"], f"an unregistered region is no longer read: {status}")
    status, body = call("GET", "/v2/cudasharedmemory/status")
    expect([r["name"] for r in body] == ["gpu_out"], f"status after unregister: {body}")

    try:
        import tritonclient.grpc as grpcclient
    except ImportError as e:
        print(f"skip the gRPC part: tritonclient.grpc is not installed here ({e})")
    else:
        client = grpcclient.InferenceServerClient(BASE.split("://")[1].rsplit(":", 1)[0] + ":8001")
        client.register_cuda_shared_memory("grpc_in", base64.b64encode(inputs.handle), 0, inputs.n)
        regions = client.get_cuda_shared_memory_status(as_json=True)["regions"]
        expect(sorted(regions) == ["gpu_out", "grpc_in"], f"gRPC status: {sorted(regions)}")
        inputs.write(0, x)
        inputs.write(1024, y)
        gx = grpcclient.InferInput("x", [3, 4], "FP32")
        gx.set_shared_memory("grpc_in", n)
        gy = grpcclient.InferInput("y", [3, 4], "FP32")
        gy.set_shared_memory("grpc_in", n, offset=1024)
        gs = grpcclient.InferRequestedOutput("sum")
        gs.set_shared_memory("gpu_out", n, offset=3072)
        client.infer("add", [gx, gy], outputs=[gs])
        expect(np.array_equal(outputs.read(3072, n).reshape(3, 4), x + y),
               "gRPC (tritonclient): `sum` read back from the GPU equals numpy's x + y")
        client.unregister_cuda_shared_memory()
        expect(client.get_cuda_shared_memory_status(as_json=True).get("regions", {}) == {},
               "gRPC: unregister every CUDA region")

    call("POST", "/v2/cudasharedmemory/unregister")
    print("cuda shared memory check: all passed")


if __name__ == "__main__":
    main()
