#!/usr/bin/env python3
"""Models, inputs, references and baseline timings for the tract-cuda figures.

Run on a CUDA machine with torch, onnx and onnxruntime (scripts/cuda_bench.sh
does). For each model it writes DIR/<model>/:

    model.onnx       exported from the torch module below (dynamic batch)
    in_b<N>.npy      a random input of batch N
    ref_b<N>.npy     ONNX Runtime CPU output for that input (the reference)

and prints, per batch size, the median time of PyTorch eager on the GPU (fp32,
torch's default TF32 settings, and again with TF32 off for convolutions and
matrix products: keys `torch_fp32_*`; timed with CUDA events after warm-up) and of
ONNX Runtime on the CPU, plus PyTorch's error against the reference. The same
architecture and weights run everywhere: the ONNX file is exported from the
module that PyTorch times.

    python3 scripts/torch_reference.py DIR [--iters N] [--batches 1,16,32] [--models resnet18]
"""

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCHES = (1, 32)


# ----------------------------------------------------------------------------- models

class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout, written out so nothing but torch is needed."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, cout in enumerate([64, 128, 256, 512]):
            for j in range(2):
                layers.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layers(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class EncoderLayer(nn.Module):
    """Pre-LN transformer encoder layer, attention written out (no fused kernels)."""

    def __init__(self, d, heads, dff):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, dff), nn.Linear(dff, d)

    def forward(self, x):
        b, s, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
        x = x + self.out((att @ v).transpose(1, 2).reshape(b, s, d))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class Encoder(nn.Module):
    def __init__(self, d=512, heads=8, dff=2048, layers=4):
        super().__init__()
        self.layers = nn.Sequential(*[EncoderLayer(d, heads, dff) for _ in range(layers)])

    def forward(self, x):
        return self.layers(x)


def randomise_batchnorm(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) * 0.4 + 0.8)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.05)


MODELS = {
    # name: (constructor, input name, output name, input shape without batch)
    "resnet18": (ResNet18, "input", "logits", (3, 224, 224)),
    "encoder": (Encoder, "x", "y", (128, 512)),
}


# ----------------------------------------------------------------------------- helpers

def export(model, example, path, in_name, out_name):
    dyn = {in_name: {0: "batch"}, out_name: {0: "batch"}}
    try:
        torch.onnx.export(model, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
    except TypeError:  # a torch without the `dynamo` argument
        torch.onnx.export(model, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          dynamic_axes=dyn, opset_version=17)


def gpu_median_ms(fn, iters, warmup=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def host_median_ms(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def torch_concurrent(model, x, threads, calls):
    """calls/s of batch-1 calls from `threads` Python threads, one CUDA stream each, host round trip per call."""
    barrier = threading.Barrier(threads + 1)

    def work():
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(5):
                model(x.cuda(non_blocking=False)).cpu()
            barrier.wait()
            for _ in range(calls):
                model(x.cuda()).cpu()

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in ts:
        t.join()
    return threads * calls / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)),
                    help="batch sizes, comma-separated (default %(default)s)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="models, comma-separated (default %(default)s)")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, onnxruntime {ort.__version__}, "
          f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    results = []
    for name, (ctor, in_name, out_name, shape) in ((m, MODELS[m]) for m in models):
        out_dir = args.dir / name
        out_dir.mkdir(parents=True, exist_ok=True)
        model = ctor().eval()
        randomise_batchnorm(model, gen)
        with torch.inference_mode():
            export(model, torch.randn(2, *shape), out_dir / "model.onnx", in_name, out_name)
        sess = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        gpu_model = model.to(dev)
        for n in batches:
            x = rng.standard_normal((n, *shape)).astype(np.float32)
            np.save(out_dir / f"in_b{n}.npy", x)
            ref = sess.run(None, {in_name: x})[0]
            np.save(out_dir / f"ref_b{n}.npy", ref)
            xt = torch.from_numpy(x).to(dev)
            with torch.inference_mode():
                got = gpu_model(xt).cpu().numpy()
                torch_ms = gpu_median_ms(lambda: gpu_model(xt), args.iters)
                # Host in, host out, like a server call.
                torch_rt_ms = host_median_ms(lambda: gpu_model(torch.from_numpy(x).to(dev)).cpu(), args.iters)
                # The same in true fp32 (TF32 off for convolutions and matmuls).
                tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
                got32 = gpu_model(xt).cpu().numpy()
                fp32_ms = gpu_median_ms(lambda: gpu_model(xt), args.iters)
                fp32_rt_ms = host_median_ms(lambda: gpu_model(torch.from_numpy(x).to(dev)).cpu(), args.iters)
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
            ort_ms = host_median_ms(lambda: sess.run(None, {in_name: x}), max(3, args.iters // 5 if n > 1 else args.iters))
            row = dict(model=name, batch=n, torch_gpu_ms=torch_ms, torch_gpu_host_roundtrip_ms=torch_rt_ms,
                       ort_cpu_ms=ort_ms, torch_rel_l2_vs_ort=rel_l2(got, ref),
                       torch_fp32_gpu_ms=fp32_ms, torch_fp32_host_roundtrip_ms=fp32_rt_ms,
                       torch_fp32_rel_l2_vs_ort=rel_l2(got32, ref))
            results.append(row)
            print(json.dumps(row), flush=True)
        x1 = torch.from_numpy(rng.standard_normal((1, *shape)).astype(np.float32))
        for threads in (1, 4, 8):
            rate = torch_concurrent(gpu_model, x1, threads, args.iters)
            row = dict(model=name, batch=1, threads=threads, torch_gpu_calls_per_s=rate)
            results.append(row)
            print(json.dumps(row), flush=True)
        del gpu_model
        torch.cuda.empty_cache()
    (args.dir / "torch_reference.json").write_text(json.dumps(results, indent=1))
    print("\n| model | batch | PyTorch GPU ms, TF32 / fp32 (events) | PyTorch host round trip ms, TF32 / fp32 | ONNX Runtime CPU ms | PyTorch rel. L2 vs ORT, TF32 / fp32 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "torch_gpu_ms" in r:
            print(f"| {r['model']} | {r['batch']} | {r['torch_gpu_ms']:.3f} / {r['torch_fp32_gpu_ms']:.3f} "
                  f"| {r['torch_gpu_host_roundtrip_ms']:.3f} / {r['torch_fp32_host_roundtrip_ms']:.3f} "
                  f"| {r['ort_cpu_ms']:.2f} | {r['torch_rel_l2_vs_ort']:.1e} / {r['torch_fp32_rel_l2_vs_ort']:.1e} |")
    for r in results:
        if "threads" in r:
            print(f"torch concurrent {r['model']} batch 1, {r['threads']} threads: {r['torch_gpu_calls_per_s']:.0f} calls/s")


if __name__ == "__main__":
    sys.exit(main())
