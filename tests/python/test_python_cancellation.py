"""A Python model that is not decoupled sees its request's client go
(`request.is_cancelled()`, SERVING.md "pb_utils"), as tritonserver 2.51's
does: the client closes its HTTP connection, cancels its gRPC call or lets
its deadline pass while `execute` runs, and the model, polling, sees it
within a few tens of ms; the other requests of the same batch are not told,
and are answered (checked against numpy).

The model, `watcher`, runs up to 1.5 s polling each request's
`is_cancelled()` (and its response sender's) every 10 ms, writes down when
each request (by its id) was first seen cancelled, and answers Y = 2 X.
"""
import json
import socket
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from serve_support import start_serve, stop_serve, wait_ready

CONFIG = """
backend: "python"
max_batch_size: 4
dynamic_batching { max_queue_delay_microseconds: 300000 }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
parameters { key: "log" value: { string_value: "LOG" } }
"""

MODEL = """
import json, time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.log = json.loads(args["model_config"])["parameters"]["log"]["string_value"]

    def execute(self, requests):
        t0 = time.monotonic()
        seen = {}
        while time.monotonic() - t0 < 1.5 and len(seen) < len(requests):
            for r in requests:
                if r.request_id() not in seen and (r.is_cancelled() or r.get_response_sender().is_cancelled()):
                    seen[r.request_id()] = round((time.monotonic() - t0) * 1000)
            time.sleep(0.01)
        with open(self.log, "a") as f:
            f.write(json.dumps({"batch": [r.request_id() for r in requests], "cancelled": seen}) + "\\n")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)])
                for r in requests]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("cancel_repo")
    log = repo.parent / f"{repo.name}.log"
    (repo / "watcher" / "1").mkdir(parents=True)
    (repo / "watcher" / "config.pbtxt").write_text(CONFIG.replace("LOG", str(log)))
    (repo / "watcher" / "1" / "model.py").write_text(MODEL)
    proc, addresses = start_serve(repo, "--metrics-port", "0")
    wait_ready(addresses["HTTP"])
    yield addresses, log
    stop_serve(proc)


def executes(log, rid, seconds=5):
    """The logged execute that held request `rid`, once it has ended."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                entry = json.loads(line)
                if rid in entry["batch"]:
                    return entry
        time.sleep(0.05)
    raise AssertionError(f"no execute held {rid}: {log.read_text() if log.exists() else 'no log'}")


def body(rid, x):
    return json.dumps({"id": rid, "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [x]}]})


def leave_after(http, rid, x, seconds):
    """Sends a request on a connection of its own and closes it unanswered."""
    host, port = http.rsplit(":", 1)
    payload = body(rid, x).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v2/models/watcher/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        time.sleep(seconds)


def test_a_client_that_closes_its_connection_is_seen_and_its_batch_mate_is_not(server):
    """Two requests in one execute (the queue delay gathers them): the one
    whose HTTP client closes its connection at 0.4 s is seen cancelled
    soon after, well before execute's 1.5 s; the other, whose
    client waits, is never seen cancelled and gets 2 X."""
    addresses, log = server
    http = addresses["HTTP"]
    leaving = threading.Thread(target=leave_after, args=(http, "leaves", 3.0, 0.4))
    leaving.start()
    time.sleep(0.05)
    answer = requests.post(f"http://{http}/v2/models/watcher/infer", data=body("stays", 5.0), timeout=10)
    leaving.join()
    assert answer.status_code == 200, answer.text
    out = answer.json()["outputs"][0]
    np.testing.assert_array_equal(np.array(out["data"], np.float32), np.float32(5.0) * 2)
    entry = executes(log, "stays")
    assert sorted(entry["batch"]) == ["leaves", "stays"], entry
    assert "stays" not in entry["cancelled"], entry
    # execute starts after the queue delay (0.3 s): the close comes ~0.1 s in.
    assert 20 <= entry["cancelled"].get("leaves", -1) <= 1300, entry


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_a_grpc_client_that_gives_up_is_seen(server, how):
    """gRPC: a 0.4 s deadline, or a call cancelled at 0.4 s, is seen by the
    model (tritonserver 2.51 turns is_cancelled() true within ~10 ms)."""
    addresses, log = server
    client = grpcclient.InferenceServerClient(addresses["gRPC"])
    x = grpcclient.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.array([[1.0]], np.float32))
    rid = f"grpc-{how}"
    if how == "deadline":
        with pytest.raises(Exception):
            client.infer("watcher", [x], request_id=rid, client_timeout=0.4)
    else:
        done = threading.Event()
        handle = client.async_infer("watcher", [x], callback=lambda result, error: done.set(), request_id=rid)
        time.sleep(0.4)
        handle.cancel()
        assert done.wait(5)
    entry = executes(log, rid)
    # The queue delay (0.3 s) comes first: it is seen some 60–100 ms into execute.
    assert 20 <= entry["cancelled"].get(rid, -1) <= 1300, entry
