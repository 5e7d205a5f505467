"""Writes the seed corpus of each fuzz target into fuzz/corpus/<target>/.

Seeds are small valid (and nearly valid) inputs, so the fuzzer starts deep in
each decoder. Run from the repository root with the project's venv (it uses
tritonclient's protobuf classes for gRPC seeds):
    .venv/bin/python fuzz/make_seeds.py
Existing files are kept; seeds are named seed-*.
"""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def http_json():
    reqs = {
        "fp32": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        "nested": {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]}]},
        "bytes": {"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["ab", "c"]}]},
        "bool": {"inputs": [{"name": "b", "shape": [3], "datatype": "BOOL", "data": [True, False, True]}]},
        "fp16": {"inputs": [{"name": "h", "shape": [2], "datatype": "FP16", "data": [0.5, -1e5]}]},
        "params": {
            "id": "r1",
            "parameters": {"priority": 1, "timeout": 1000, "binary_data_output": True},
            "inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [255]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        },
        "huge_shape": {"inputs": [{"name": "x", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": []}]},
        "negative_shape": {"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": [1, 2]}]},
        "shm": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"shared_memory_region": "r"}}]},
    }
    for name, r in reqs.items():
        put("http_json", name, json.dumps(r))
    put("http_json", "deep", "[" * 5000 + "]" * 5000)


def http_binary():
    def body(header, binary):
        h = json.dumps(header).encode()
        return struct.pack("<H", len(h)) + h + binary

    fp = struct.pack("<4f", 1, 2, 3, 4)
    put("http_binary", "fp32", body({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}, fp))
    strings = struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"
    put("http_binary", "bytes", body({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(strings)}}]}, strings))
    lying = struct.pack("<I", 0xFFFFFFF0) + b"ab"
    put("http_binary", "bytes_lying_prefix", body({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(lying)}}]}, lying))
    put("http_binary", "two_inputs", body({"inputs": [
        {"name": "a", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
        {"name": "b", "shape": [1], "datatype": "BOOL", "data": [True]}]}, struct.pack("<2i", 1, -1)))
    put("http_binary", "size_too_big", body({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 18446744073709551615}}]}, fp))
    h = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}).encode()
    put("http_binary", "header_len_huge", struct.pack("<H", 0x8000) + h + fp[:4])


def grpc_infer():
    from tritonclient.grpc import service_pb2 as pb

    def req(**kw):
        return pb.ModelInferRequest(model_name="m", **kw).SerializeToString()

    T = pb.ModelInferRequest.InferInputTensor
    put("grpc_infer", "raw_fp32", req(inputs=[T(name="x", datatype="FP32", shape=[1, 4])], raw_input_contents=[struct.pack("<4f", 1, 2, 3, 4)]))
    put("grpc_infer", "raw_bytes", req(inputs=[T(name="s", datatype="BYTES", shape=[2])], raw_input_contents=[struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"]))
    put("grpc_infer", "contents_int", req(inputs=[T(name="x", datatype="INT32", shape=[3], contents=pb.InferTensorContents(int_contents=[1, 2, 3]))]))
    put("grpc_infer", "contents_bool", req(inputs=[T(name="b", datatype="BOOL", shape=[2], contents=pb.InferTensorContents(bool_contents=[True, False]))]))
    put("grpc_infer", "contents_bytes", req(inputs=[T(name="s", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"hello"]))]))
    put("grpc_infer", "raw_short", req(inputs=[T(name="x", datatype="FP64", shape=[1, 4])], raw_input_contents=[b"\0" * 7]))
    put("grpc_infer", "huge_shape", req(inputs=[T(name="x", datatype="FP32", shape=[1 << 40, 1 << 40])], raw_input_contents=[b""]))
    r = pb.ModelInferRequest(model_name="m", model_version="2", id="i",
                             inputs=[T(name="x", datatype="FP16", shape=[1])], raw_input_contents=[b"\0\0"])
    r.parameters["priority"].int64_param = 1
    r.parameters["timeout"].int64_param = 100
    r.outputs.add(name="y")
    put("grpc_infer", "params", r.SerializeToString())


def model_config():
    pbtxt = {
        "realistic": (ROOT / "crates/anemone-server/src/model_config/fixtures.rs").read_text().split('r#"', 1)[1].split('"#', 1)[0],
        "batching": 'max_batch_size: 8\ndynamic_batching {\n  max_queue_delay_microseconds: 20000\n  preferred_batch_size: [ 8 ]\n  priority_levels: 2\n  default_priority_level: 2\n  default_queue_policy { max_queue_size: 64 allow_timeout_override: true }\n  priority_queue_policy { key: 1 value: { max_queue_size: 2 timeout_action: DELAY } }\n}\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n',
        "params": 'parameters { key: "backends" value: { string_value: "tract-cpu,onnxruntime" } }\nparameters { key: "threads" value: { string_value: "4" } }\nversion_policy: { specific { versions: [1, 3] } }\n',
        "optional": 'input [ { name: "x" data_type: TYPE_STRING dims: [ -1 ] optional: true reshape: { shape: [ ] } } ]\noutput [ { name: "y" data_type: TYPE_BF16 dims: [ 2, -1 ] } ]\n',
    }
    for name, text in pbtxt.items():
        put("model_config", f"pbtxt-{name}", b"\0" + text.encode())
    js = {
        "basic": {"name": "m", "max_batch_size": 4, "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]},
        "batching": {"dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 100, "default_queue_policy": {"max_queue_size": 3}}, "max_batch_size": 4},
        "params": {"parameters": {"backends": {"string_value": "tract-cpu"}}, "default_model_filename": "model.onnx"},
    }
    for name, c in js.items():
        put("model_config", f"json-{name}", b"\1" + json.dumps(c).encode())


def npy():
    gen = ROOT / "fixtures" / "generated"
    n = 0
    for p in sorted(gen.glob("*/run0_*.npy")):
        if p.stat().st_size <= 4096:
            put("npy", f"{p.parent.name}-{p.name}", p.read_bytes())
            n += 1
        if n >= 16:
            break


def coreml():
    gen = ROOT / "fixtures" / "generated" / "coreml"
    for p in sorted(gen.glob("*.mlmodel")) + sorted((gen / "bad").glob("*.mlmodel")):
        if p.is_file() and p.stat().st_size <= 64 * 1024:
            put("coreml", p.name, p.read_bytes())
    for p in sorted(gen.glob("*.mlpackage")):
        spec = p / "Data" / "com.apple.CoreML" / "model.mlmodel"
        if spec.is_file() and spec.stat().st_size <= 64 * 1024:
            put("coreml", p.name, spec.read_bytes())


if __name__ == "__main__":
    for f in (http_json, http_binary, grpc_infer, model_config, npy, coreml):
        f()
    for d in sorted(CORPUS.iterdir()):
        print(d.name, len(list(d.iterdir())))
