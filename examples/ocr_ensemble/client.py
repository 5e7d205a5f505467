#!/usr/bin/env python3
"""Send a text-like image through the `ocr` ensemble and check the answer
against ONNX Runtime running the three models in turn.

    .venv/bin/python examples/ocr_ensemble/client.py [--url localhost:8000] [--grpc localhost:8001]
"""

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from make_repository import text_like_image

REPO = Path(__file__).resolve().parent / "model_repository"


def reference(image):
    """preprocess -> det -> binarize, each by ONNX Runtime."""
    out = {"image": image}
    for model, (src, dst) in [("preprocess", ("image", "x")), ("det", ("x", "prob")),
                              ("binarize", ("prob", "mask"))]:
        session = ort.InferenceSession(str(REPO / model / "1" / "model.onnx"))
        (out[dst],) = session.run(None, {session.get_inputs()[0].name: out[src]})
    return out["prob"], out["mask"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="localhost:8000")
    parser.add_argument("--grpc", default="localhost:8001")
    args = parser.parse_args()
    image = text_like_image(np.random.default_rng(0), 1, 96, 160)
    prob, mask = reference(image)

    http = httpclient.InferenceServerClient(args.url)
    inp = httpclient.InferInput("image", list(image.shape), "UINT8")
    inp.set_data_from_numpy(image, binary_data=True)
    result = http.infer("ocr", [inp])
    np.testing.assert_allclose(result.as_numpy("prob"), prob, rtol=1e-4, atol=1e-4)
    print(f"HTTP: {int(result.as_numpy('mask').sum())} text pixels "
          f"(ONNX Runtime: {int(mask.sum())})")

    grpc = grpcclient.InferenceServerClient(args.grpc)
    inp = grpcclient.InferInput("image", list(image.shape), "UINT8")
    inp.set_data_from_numpy(image)
    result = grpc.infer("ocr", [inp])
    np.testing.assert_allclose(result.as_numpy("prob"), prob, rtol=1e-4, atol=1e-4)
    print(f"gRPC: {int(result.as_numpy('mask').sum())} text pixels")

    stats = http.get_inference_statistics("det")["model_stats"][0]["inference_stats"]
    print(f"det served {stats['success']['count']} requests of the ensemble")


if __name__ == "__main__":
    main()
