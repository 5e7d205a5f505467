#!/usr/bin/env python3
"""What memory layout and precision buy ResNet-18 on this GPU, in PyTorch.

A diagnostic for tract-cuda's convolutions (docs/PERFORMANCE.md, "CUDA"):
the same ResNet-18 as scripts/torch_reference.py (BatchNorm folded by
cuDNN's heuristics as PyTorch eager does not: this times eager), timed with
CUDA events (GPU time of the model alone, median of ITERS after warm-up) in
TF32 and fp16, with NCHW tensors and with channels-last (NHWC) ones, at
each batch size; then the top kernels of one batch-16 call per setting
(torch.profiler), which show whether cuDNN transposes NCHW tensors around
tensor-core kernels.

    python3 scripts/torch_layouts.py [--batches 1,8,16,32] [--iters 50]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch_reference import ResNet18, gpu_median_ms, randomise_batchnorm  # noqa: E402


def settings():
    for dtype in (torch.float32, torch.float16):
        for layout in (torch.contiguous_format, torch.channels_last):
            yield dtype, layout


def name(dtype, layout):
    d = "tf32" if dtype == torch.float32 else "fp16"
    return f"{d} {'NHWC' if layout == torch.channels_last else 'NCHW'}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,16,32")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--kernels-batch", type=int, default=16)
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    base = ResNet18()
    randomise_batchnorm(base, gen)
    base.eval()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    print("\n| setting | " + " | ".join(f"batch {b} ms" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    models = {}
    for dtype, layout in settings():
        m = ResNet18()
        m.load_state_dict(base.state_dict())
        m = m.eval().to(dev, dtype=dtype).to(memory_format=layout)
        models[(dtype, layout)] = m
        row = []
        for b in batches:
            x = torch.randn(b, 3, 224, 224, device=dev, dtype=dtype).to(memory_format=layout)
            with torch.no_grad():
                row.append(gpu_median_ms(lambda: m(x), args.iters))
        print(f"| {name(dtype, layout)} | " + " | ".join(f"{t:.3f}" for t in row) + " |")

    from torch.profiler import ProfilerActivity, profile

    b = args.kernels_batch
    for (dtype, layout), m in models.items():
        x = torch.randn(b, 3, 224, 224, device=dev, dtype=dtype).to(memory_format=layout)
        with torch.no_grad():
            for _ in range(5):
                m(x)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                m(x)
                torch.cuda.synchronize()
        print(f"\nkernels, batch {b}, {name(dtype, layout)}:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=90))


if __name__ == "__main__":
    main()
