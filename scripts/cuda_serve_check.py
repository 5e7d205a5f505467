#!/usr/bin/env python3
"""Checks models served by a running `anemone serve` against reference outputs.

    python3 scripts/cuda_serve_check.py DIR MODEL INPUT OUTPUT [URL]

DIR/<MODEL>/in_b1.npy is sent over the KServe v2 HTTP JSON API; the answer is
compared with DIR/<MODEL>/ref_b1.npy (ONNX Runtime CPU, from
scripts/torch_reference.py). Prints the relative L2 error and the backend the
server reports for the model; exits non-zero above 5e-3 (TF32 tolerance).
"""

import json
import sys
import urllib.request

import numpy as np


def main():
    d, model, inp, out = sys.argv[1:5]
    base = sys.argv[5] if len(sys.argv) > 5 else "http://127.0.0.1:8000"
    x = np.load(f"{d}/{model}/in_b1.npy")
    ref = np.load(f"{d}/{model}/ref_b1.npy")
    body = {"inputs": [{"name": inp, "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    req = urllib.request.Request(f"{base}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(req, timeout=120))
    o = next(o for o in answer["outputs"] if o["name"] == out)
    got = np.array(o["data"], np.float64).reshape(o["shape"])
    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    config = json.load(urllib.request.urlopen(f"{base}/v2/models/{model}/config", timeout=30))
    backend = config.get("backend") or config.get("parameters", {})
    print(f"serve check {model}: rel. L2 error {err:.2e} vs ONNX Runtime CPU; server says backend {backend!r}")
    return 0 if err < 5e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
