#!/usr/bin/env bash
# The tract-cuda checks and figures, in one run on a CUDA machine (see
# docs/PERFORMANCE.md, "CUDA"). Expects, in $BIN (default .dev-cuda):
#   anemone      release build with --features cuda
#   cuda_bench   cargo build --release -p anemone-backends --features cuda --example cuda_bench
#   models       the models test binary: cargo test --release -p anemone-runtime --features cuda --test models --no-run (optional)
# and this repository's scripts/ (torch_reference.py, cuda_serve_check.py,
# gen_fixtures.py). Needs python3 with torch, onnx, onnxruntime and numpy.
# Writes logs under $OUT (default /tmp/cuda-out). MODELS (default
# "resnet18 encoder") picks the in-process models; SKIP_SERVE=1 stops after
# them (no models test, no served figures).
set -euo pipefail
BIN=${BIN:-.dev-cuda}
OUT=${OUT:-/tmp/cuda-out}
W=${W:-/tmp/cuda-work}
ITERS=${ITERS:-50}
mkdir -p "$OUT" "$W"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib
# cuDNN may come only with the Python wheels (nvidia-cudnn-cu13).
if ! ldconfig -p | grep -q 'libcudnn.so.9' && ! ls /usr/local/cuda/targets/x86_64-linux/lib/libcudnn.so.9* >/dev/null 2>&1; then
  d=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null || true)
  if [ -n "$d" ]; then export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; echo "cuDNN from $d"; fi
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
SCRIPTS=${SCRIPTS:-scripts}

echo "== probe without the CUDA libraries on the library path (must explain, not panic)"
probe=$(env LD_LIBRARY_PATH= CUDA_HOME=/nonexistent "$BIN/cuda_bench" /nonexistent 2>&1 || true)
printf '%s\n' "$probe" | head -2
if grep -q "panicked" <<<"$probe"; then echo "FAILED: the probe panicked without the CUDA libraries"; exit 1; fi

echo "== models, references, PyTorch and ONNX Runtime baselines"
python3 "$SCRIPTS/torch_reference.py" "$W" --iters "$ITERS" 2>&1 | tee "$OUT/torch_reference.log"

# cuda_bench exits non-zero when fp32 is outside the cuda:: tests' tolerance
# against the ONNX Runtime reference; both models run either way.
bench_status=0
for m in ${MODELS:-resnet18 encoder}; do
  echo "== in-process: $m"
  "$BIN/cuda_bench" "$W/$m" "$ITERS" 2>&1 | tee "$OUT/cuda_bench_$m.log" || bench_status=1
done
if [ "$bench_status" -ne 0 ]; then echo "FAILED: cuda_bench (see $OUT/cuda_bench_*.log)"; exit 1; fi
if [ -n "${SKIP_SERVE:-}" ]; then echo "== done (SKIP_SERVE: no served figures)"; exit 0; fi

if [ -x "$BIN/models" ] && [ -f "$SCRIPTS/gen_fixtures.py" ]; then
  echo "== tests: models cuda:: against the fixture references"
  # Only the two cases these tests read, generated (with their ONNX Runtime
  # references) into a directory of their own, which ANEMONE_FIXTURES names.
  FIXTURES="$W/fixtures"
  python3 -c "
import sys; from pathlib import Path; sys.path.insert(0, '$SCRIPTS'); import gen_fixtures as g
g.OUT = Path('$FIXTURES')
for n in ['resnet18', 'transformer_block']: g.CASES[n](n)" 2>&1 | tail -3
  status=0
  ANEMONE_FIXTURES="$FIXTURES" ANEMONE_REQUIRE_GPU=1 "$BIN/models" cuda:: --nocapture --test-threads=1 \
    > "$OUT/test_models_cuda.log" 2>&1 || status=$?
  grep -E "rel. L2|test |result|tract-cuda:|SKIPPED|panicked" "$OUT/test_models_cuda.log" | sort | uniq -c | sort -rn | head -30 || true
  if [ "$status" -ne 0 ]; then echo "FAILED: the cuda:: tests (exit status $status, log $OUT/test_models_cuda.log)"; exit "$status"; fi
fi

echo "== served: anemone serve + HTTP client + anemone bench"
R=$W/repo
for m in resnet18 encoder; do mkdir -p "$R/$m/1" && cp "$W/$m/model.onnx" "$R/$m/1/"; done
"$BIN/anemone" serve --model-repository "$R" > "$OUT/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do
  curl -sf http://127.0.0.1:8000/v2/health/ready >/dev/null && break
  sleep 1
done
grep -iE "tract-cuda|backend|error|warn" "$OUT/serve.log" | head -20 || true
curl -sf http://127.0.0.1:8000/v2/health/ready >/dev/null || { echo "FAILED: the server never became ready"; kill $SERVER; exit 1; }
curl -s http://127.0.0.1:8000/metrics | grep -iE "backend" | head -5 || true
python3 "$SCRIPTS/cuda_serve_check.py" "$W" resnet18 input logits
python3 "$SCRIPTS/cuda_serve_check.py" "$W" encoder x y
B="$BIN/anemone bench --protocol http-binary --warmup 20"
for spec in "resnet18 input 3,224,224" "encoder x 128,512"; do
  set -- $spec
  for c in 1 8; do echo "-- $1 batch 1, concurrency $c"; $B -m "$1" -c $c -n $((ITERS * 4)) --shape "$2=1,$3" 2>&1 | tail -6; done
  echo "-- $1 batch 32, concurrency 1"; $B -m "$1" -c 1 -n "$ITERS" --shape "$2=32,$3" 2>&1 | tail -6
done
kill $SERVER
wait $SERVER 2>/dev/null || true
echo "== done"
