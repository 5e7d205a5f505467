#!/usr/bin/env bash
# The tract-cuda checks and figures, in one run on a CUDA machine (see
# docs/PERFORMANCE.md, "CUDA"). Expects, in $BIN (default .dev-cuda):
#   anemone      release build with --features cuda
#   cuda_bench   cargo build --release -p anemone-backends --features cuda --example cuda_bench
#   models       the models test binary built with --features anemone-backends/cuda (optional)
# and this repository's scripts/ (torch_reference.py, cuda_serve_check.py,
# gen_fixtures.py). Needs python3 with torch, onnx, onnxruntime and numpy.
# Writes logs under $OUT (default /tmp/cuda-out).
set -uo pipefail
BIN=${BIN:-.dev-cuda}
OUT=${OUT:-/tmp/cuda-out}
W=${W:-/tmp/cuda-work}
ITERS=${ITERS:-50}
mkdir -p "$OUT" "$W"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib
# cuDNN may come only with the Python wheels (nvidia-cudnn-cu13).
if ! ldconfig -p | grep -q 'libcudnn.so.9' && ! ls /usr/local/cuda/targets/x86_64-linux/lib/libcudnn.so.9* >/dev/null 2>&1; then
  d=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
  [ -n "$d" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d && echo "cuDNN from $d"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
SCRIPTS=${SCRIPTS:-scripts}

echo "== probe without the CUDA libraries on the library path (must explain, not panic)"
env LD_LIBRARY_PATH= CUDA_HOME=/nonexistent "$BIN/cuda_bench" /nonexistent 2>&1 | head -2

echo "== models, references, PyTorch and ONNX Runtime baselines"
python3 "$SCRIPTS/torch_reference.py" "$W" --iters "$ITERS" 2>&1 | tee "$OUT/torch_reference.log"

for m in resnet18 encoder; do
  echo "== in-process: $m"
  "$BIN/cuda_bench" "$W/$m" "$ITERS" 2>&1 | tee "$OUT/cuda_bench_$m.log"
done

if [ -x "$BIN/models" ] && [ -f "$SCRIPTS/gen_fixtures.py" ]; then
  echo "== tests: models cuda:: against the fixture references"
  # The test binary looks for fixtures where it was built.
  FIX_ROOT=${FIX_ROOT:-/work/wt-cuda}
  # (its path goes through crates/anemone-runtime/../.., which must exist)
  mkdir -p "$FIX_ROOT/scripts" "$FIX_ROOT/crates/anemone-runtime" && cp "$SCRIPTS/gen_fixtures.py" "$FIX_ROOT/scripts/"
  (cd "$FIX_ROOT" && python3 -c "
import sys; sys.path.insert(0, 'scripts'); import gen_fixtures as g
for n in ['resnet18', 'transformer_block']: g.CASES[n](n)
(g.OUT / '.stamp').write_text('partial, for the cuda tests\n')") 2>&1 | tail -3
  ANEMONE_REQUIRE_GPU=1 "$BIN/models" cuda:: --nocapture --test-threads=1 2>&1 | tee "$OUT/test_models_cuda.log" | grep -E "rel. L2|test |result|tract-cuda:|SKIPPED|panicked" | sort | uniq -c | sort -rn | head -30
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
grep -iE "tract-cuda|backend|error|warn" "$OUT/serve.log" | head -20
curl -s http://127.0.0.1:8000/metrics | grep -iE "backend" | head -5
python3 "$SCRIPTS/cuda_serve_check.py" "$W" resnet18 input logits
python3 "$SCRIPTS/cuda_serve_check.py" "$W" encoder x y
B="$BIN/anemone bench --protocol http-binary --warmup 20"
for spec in "resnet18 input 3,224,224" "encoder x 128,512"; do
  set -- $spec
  for c in 1 8; do echo "-- $1 batch 1, concurrency $c"; $B -m "$1" -c $c -n $((ITERS * 4)) --shape "$2=1,$3" 2>&1 | tail -6; done
  echo "-- $1 batch 32, concurrency 1"; $B -m "$1" -c 1 -n "$ITERS" --shape "$2=32,$3" 2>&1 | tail -6
done
kill $SERVER
wait $SERVER 2>/dev/null
echo "== done"
