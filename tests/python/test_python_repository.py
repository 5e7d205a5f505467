"""A repository of Python models as tritonserver 2.51 reads it (side by side).

A model folder with a `model.py` and no config (or a config that names no
backend, platform or file, as a load request's override may) is a Python
model, its config filled in by its `auto_complete_config`.

The repository index as tritonserver 2.51 answers it:
a model serving several versions (`version_policy { all { } }`) has a row
per version, and an unloaded model is UNAVAILABLE with the reason
"unloaded" (Triton has no UNLOADED state), over HTTP and gRPC."""
import json
import urllib.request

import numpy as np
import tritonclient.http as httpclient

import tritonclient.grpc as grpcclient
from serve_support import start_serve, stop_serve, wait_ready

CONFIG = """
backend: "python"
version_policy: { all { } }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

SOURCE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]) for r in requests]
"""


def http_index(http):
    request = urllib.request.Request(f"http://{http}/v2/repository/index", b"{}")
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_a_row_per_version_and_unavailable_once_unloaded(tmp_path):
    for version in (1, 2):
        (tmp_path / "vp" / str(version)).mkdir(parents=True)
        (tmp_path / "vp" / str(version) / "model.py").write_text(SOURCE)
    (tmp_path / "vp" / "config.pbtxt").write_text(CONFIG)
    proc, addresses = start_serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "vp")
    try:
        wait_ready(addresses["HTTP"])
        grpc = grpcclient.InferenceServerClient(addresses["gRPC"])
        rows = [(r["name"], r["version"], r["state"]) for r in http_index(addresses["HTTP"])]
        assert sorted(rows) == [("vp", "1", "READY"), ("vp", "2", "READY")], rows
        rows = [(m.name, m.version, m.state) for m in grpc.get_model_repository_index().models]
        assert sorted(rows) == [("vp", "1", "READY"), ("vp", "2", "READY")], rows
        grpc.unload_model("vp")
        [row] = http_index(addresses["HTTP"])
        assert (row["name"], row["state"], row["reason"]) == ("vp", "UNAVAILABLE", "unloaded"), row
        [model] = grpc.get_model_repository_index().models
        assert (model.state, model.reason) == ("UNAVAILABLE", "unloaded"), model
    finally:
        stop_serve(proc)


AUTO = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [3]})
        auto_complete_model_config.add_output({"name": "C", "data_type": "TYPE_FP32", "dims": [3]})
        auto_complete_model_config.set_max_batch_size(4)
        return auto_complete_model_config

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "C", pb_utils.get_input_tensor_by_name(r, "A").as_numpy() * 2)]) for r in requests]
"""


def test_a_model_py_without_a_config_naming_its_backend_is_a_python_model(tmp_path):
    for name in ("noconf", "override"):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.py").write_text(AUTO)
    proc, addresses = start_serve(tmp_path, "--model-control-mode", "explicit", "--load-model", "noconf")
    try:
        wait_ready(addresses["HTTP"])
        client = httpclient.InferenceServerClient(addresses["HTTP"])
        config = client.get_model_config("noconf")
        assert (config["backend"], config["max_batch_size"]) == ("python", 4), config
        a = np.array([[1.5, -2, 3]], np.float32)
        i = httpclient.InferInput("A", [1, 3], "FP32")
        i.set_data_from_numpy(a)
        np.testing.assert_array_equal(client.infer("noconf", [i]).as_numpy("C"), a * 2)
        # A load request whose config names no backend: the same.
        client.load_model("override", config=json.dumps({"max_batch_size": 4}))
        config = client.get_model_config("override")
        assert (config["backend"], config["max_batch_size"]) == ("python", 4), config
        np.testing.assert_array_equal(client.infer("override", [i]).as_numpy("C"), a * 2)
    finally:
        stop_serve(proc)


SLOW = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(2)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]) for r in requests]
"""


def test_a_load_whose_client_went_away_still_ends_and_the_next_load_goes_on(tmp_path):
    import requests

    (tmp_path / "slow" / "1").mkdir(parents=True)
    (tmp_path / "slow" / "1" / "model.py").write_text(SLOW)
    (tmp_path / "slow" / "config.pbtxt").write_text(CONFIG.replace("version_policy: { all { } }", ""))
    proc, addresses = start_serve(tmp_path, "--model-control-mode", "explicit")
    try:
        wait_ready(addresses["HTTP"])
        url = f"http://{addresses['HTTP']}/v2/repository/models/slow/load"
        # The client gives up while initialize() runs. The load used to stop
        # there, leaving the model LOADING for ever and every later load
        # waiting; it goes on, as in Triton.
        try:
            requests.post(url, timeout=0.5)
        except requests.exceptions.Timeout:
            pass
        else:
            raise AssertionError("the load answered before initialize() could have ended")
        import time
        deadline = time.time() + 30
        while http_index(addresses["HTTP"])[0]["state"] != "READY":
            assert time.time() < deadline, http_index(addresses["HTTP"])
            time.sleep(0.2)
        r = requests.post(url, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        stop_serve(proc)


SLEEPY_CONFIG = """
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 3 kind: KIND_CPU } ]
"""

# Each execute notes when it ran in a file of its own, then sleeps.
SLEEPY = """
import os
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.log = os.path.join(os.path.dirname(__file__), "..", "ran")
        os.makedirs(self.log, exist_ok=True)

    def execute(self, requests):
        began = time.monotonic()
        time.sleep(0.8)
        with open(os.path.join(self.log, f"{os.getpid()}-{began}"), "w") as f:
            f.write(f"{began} {time.monotonic()}")
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]) for r in requests]
"""


def test_each_python_instance_runs_on_a_thread_of_its_own(tmp_path):
    """As in Triton: a Python model's instances run at once, whatever the
    server's worker threads (one per core: they ran 2 at a time here), and
    a slow model keeps none from another model's requests."""
    import concurrent.futures as cf

    for name in ("sleepy", "quick"):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.py").write_text(SLEEPY if name == "sleepy" else AUTO)
    (tmp_path / "sleepy" / "config.pbtxt").write_text(SLEEPY_CONFIG)
    proc, addresses = start_serve(tmp_path, "--workers", "2")
    try:
        wait_ready(addresses["HTTP"])

        def call(model):
            client = httpclient.InferenceServerClient(addresses["HTTP"])
            try:
                if model == "quick":
                    i = httpclient.InferInput("A", [1, 3], "FP32")
                    i.set_data_from_numpy(np.ones((1, 3), np.float32))
                    return client.infer("quick", [i]).as_numpy("C").tolist()
                i = httpclient.InferInput("X", [1], "FP32")
                i.set_data_from_numpy(np.array([4.0], np.float32))
                return client.infer("sleepy", [i]).as_numpy("Y").tolist()
            finally:
                client.close()

        with cf.ThreadPoolExecutor(4) as pool:
            slow = [pool.submit(call, "sleepy") for _ in range(3)]
            import time
            time.sleep(0.3)
            quick = pool.submit(call, "quick")
            assert quick.result(timeout=30) == [[2.0, 2.0, 2.0]]
            # The other model answered while the slow ones still ran.
            assert not any(f.done() for f in slow), "the slow requests ended before the quick one"
            assert [f.result(timeout=30) for f in slow] == [[4.0]] * 3
        runs = []
        for f in (tmp_path / "sleepy" / "ran").iterdir():
            began, ended = map(float, f.read_text().split())
            runs.append((began, ended, f.name.split("-")[0]))
        assert len(runs) == 3 and len({pid for *_, pid in runs}) == 3, runs
        # All three ran at once, one on each instance.
        assert max(b for b, _, _ in runs) < min(e for _, e, _ in runs), runs
    finally:
        stop_serve(proc)
