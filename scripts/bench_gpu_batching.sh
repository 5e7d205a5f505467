#!/usr/bin/env bash
# Issue 10's GPU figure, and what tract-cuda's page-locked input staging
# changes, in one run on the lent GPU machine (docs/PERFORMANCE.md, "Dynamic
# batching on the GPU"). Parts (PARTS, default "torch bench serve"):
#   torch  PyTorch eager's own ResNet-18 time at batch 1, 16 and 32 (what any
#          server on these kernels could gain by batching), with the inputs
#          and ONNX Runtime references the next part checks against;
#   bench  the in-process `cuda_bench` (CUDA_BENCH_QUICK: anemone fp32 and
#          tf32) once per staging in STAGINGS;
#   serve  ResNet-18 served on tract-cuda, batch-1 requests over gRPC, with
#          and without dynamic_batching (scripts/bench_batching_device.sh),
#          for each precision in PRECISIONS, concurrency in CONCURRENCIES
#          and staging in STAGINGS.
# STAGINGS: "default" (inputs copied into page-locked memory at admission),
# "gather" (ANEMONE_TRACT_CUDA_STAGING=gather: copied into a staging buffer
# when the call runs) and/or "pageable" (tract-cuda's own upload).
#
# Expects in $BIN_DIR (default .dev-stage): `anemone` (release, --features
# cuda), `cuda_bench` (its example, release) and `libonnxruntime.so.1.31.1`,
# each as-is or xz-compressed. Needs python3 with torch, onnx, onnxruntime
# and numpy. Logs go to $OUT (default /tmp/bench-gpu-batching).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${BIN_DIR:-.dev-stage}
OUT=${OUT:-/tmp/bench-gpu-batching}
W=${W:-/tmp/bench-gpu-batching-work}
PARTS=${PARTS:-torch bench serve}
STAGINGS=${STAGINGS:-default pageable}
PRECISIONS=${PRECISIONS:-fp32 tf32}
CONCURRENCIES=${CONCURRENCIES:-32 64}
mkdir -p "$OUT" "$W"
for f in "$BIN_DIR"/*.xz; do [ -e "$f" ] && xz -dkf "$f"; done
chmod +x "$BIN_DIR"/anemone "$BIN_DIR"/cuda_bench 2>/dev/null || true
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

staging_env() { case "$1" in pageable|gather) echo "$1" ;; *) echo "" ;; esac; }

if [[ " $PARTS " == *" torch "* ]]; then
  echo "== PyTorch eager, ResNet-18 at batch 1, 16, 32 (and the references)"
  python3 scripts/torch_reference.py "$W" --iters "${ITERS:-30}" --batches 1,16,32 --models resnet18 \
    2>&1 | tee "$OUT/torch.log" | grep -v '^{'
fi

if [[ " $PARTS " == *" bench "* ]]; then
  for s in $STAGINGS; do
    echo "== in-process, staging $s"
    ANEMONE_TRACT_CUDA_STAGING=$(staging_env "$s") CUDA_BENCH_QUICK=1 \
      "$BIN_DIR/cuda_bench" "$W/resnet18" "${ITERS:-30}" 2>&1 | tee "$OUT/cuda_bench_$s.log" \
      | grep -E '^\| anemone|staging|staged|^\| [0-9]|FAILED'
  done
fi

if [[ " $PARTS " == *" serve "* ]]; then
  for p in $PRECISIONS; do
    for c in $CONCURRENCIES; do
      for s in $STAGINGS; do
        preferred="16, 32"; delay=2000
        [ "$c" -ge 64 ] && { preferred="32"; delay=5000; }
        echo "== served: $p, concurrency $c, staging $s, preferred [$preferred], delay ${delay} us"
        ANEMONE_TRACT_CUDA_STAGING=$(staging_env "$s") SKIP_CPU=1 GPU_INSTANCES=${INSTANCES:-2} \
          CONCURRENCY=$c PREFERRED="$preferred" DELAY_US=$delay DURATION=${DURATION:-10} \
          PARAMS="tract-cuda.precision=$p" BIN_DIR=$BIN_DIR OUT=$OUT/serve-$p-$c-$s W=$W/serve \
          scripts/bench_batching_device.sh 2>&1 | tail -n 5 | tee -a "$OUT/serve.log"
      done
    done
  done
fi
