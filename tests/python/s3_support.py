"""Helpers for the object-storage tests: an S3-compatible server (moto, in
this process, so that its authentication can be switched on), a TCP proxy in
front of it that can cut downloads, ONNX models whose reference outputs come
from ONNX Runtime's Python API, and `anemone serve` with its log kept."""
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CuttingProxy:
    """Forwards TCP to `target`; while `cut_after` is set, a connection whose
    answers pass that many bytes is closed mid-answer (a network error in the
    middle of a download). Counts the GET requests it saw."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.cut_after = None
        self.cuts = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src, dst, answers):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if answers and self.cut_after is not None and sent + len(data) > self.cut_after:
                    dst.sendall(data[: max(0, self.cut_after - sent)])
                    self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


def offset_model(offset, padding_floats=0):
    """Y = X + offset (X: float32 [1, 4]). With padding, a large initializer
    of which four values are gathered (all zeros), so the file is large and
    the output the same."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])
    inits = [helper.make_tensor("c", TensorProto.FLOAT, [1, 4], [float(offset)] * 4)]
    nodes = []
    if padding_floats:
        inits.append(onnx.numpy_helper.from_array(np.zeros(padding_floats, np.float32), "pad"))
        inits.append(onnx.numpy_helper.from_array(np.arange(4, dtype=np.int64).reshape(1, 4), "idx"))
        nodes.append(helper.make_node("Gather", ["pad", "idx"], ["g"]))
        nodes.append(helper.make_node("Add", ["c", "g"], ["c2"]))
        nodes.append(helper.make_node("Add", ["X", "c2"], ["Y"]))
    else:
        nodes.append(helper.make_node("Add", ["X", "c"], ["Y"]))
    graph = helper.make_graph(nodes, "offset", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def reference(model_bytes, x):
    """The output of ONNX Runtime's Python API."""
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"X": x})[0]


def http_json(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Anemone:
    """`anemone serve` with its log (stderr) in a file."""

    def __init__(self, args, env, log_path):
        binary = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
        assert binary.exists(), f"{binary} is missing: build it with `cargo build --workspace --bin anemone`"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--http-port", "0", "--grpc-port", "0", "--exit-timeout-secs", "5", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, "ANEMONE_LOG": "info", **env},
        )
        self.http = None
        while self.http is None:
            line = self.proc.stdout.readline()
            if not line:
                self.status = self.proc.wait()
                return
            kind, _, rest = line.partition(" listening on ")
            if kind == "HTTP" and rest:
                self.http = "http://" + rest.strip()

    def text(self):
        self.log.flush()
        return Path(self.log_path).read_text()

    def infer(self, model, x, version=None):
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        status, body = http_json(self.http + path, {
            "inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.flatten().tolist()}]})
        assert status == 200, f"{model} v{version}: {status} {body}"
        out = body["outputs"][0]
        return np.array(out["data"], np.float32).reshape(out["shape"])

    def ready(self, model, version=None):
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as r:
                return r.status == 200
        except (urllib.error.HTTPError, urllib.error.URLError):
            return False

    def wait_for(self, what, predicate, timeout=60):
        deadline = time.time() + timeout
        while not predicate():
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log:\n{self.text()[-4000:]}")
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.status = self.proc.wait(timeout=30)
        self.log.close()
        return self.status
