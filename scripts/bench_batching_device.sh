#!/usr/bin/env bash
# The dynamic batching figures on the lent GPU machine (issue 10), in one run:
#   1. the batching_mlp benchmark on ONNX Runtime with the server pinned to 2
#      cores and the client on 8 others (the client no longer takes the
#      server's cores, as it must on the 2-core VM);
#   2. ResNet-18 on tract-cuda, batch-1 requests at concurrency 32, with and
#      without dynamic_batching, and (unless TRITON_OFF=0) with each instance
#      running one request at a time, Triton's meaning of "off".
# Both go through scripts/bench_batching.sh with a prebuilt binary.
#
# Expects in $BIN_DIR (default .dev-cuda): `anemone` (release, --features cuda)
# and `libonnxruntime.so.1.31.1`, either as-is or xz-compressed (`*.xz`, how
# they fit the device tool's 64 MiB carry limit). Needs python3 with torch,
# onnx, onnxruntime and numpy (for the models). Logs and figures go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${BIN_DIR:-.dev-cuda}
OUT=${OUT:-/tmp/bench-batching-device}
W=${W:-/tmp/bench-batching-device-work}
mkdir -p "$OUT" "$W"
for f in "$BIN_DIR"/*.xz; do [ -e "$f" ] && xz -dkf "$f"; done
chmod +x "$BIN_DIR/anemone"
export ORT_DYLIB_PATH=$PWD/$BIN_DIR/libonnxruntime.so.1.31.1
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/targets/x86_64-linux/lib
# One cuDNN per process: the Python wheel's only when the system has none
# (two on the path fail with CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH).
if ! ldconfig -p | grep -q 'libcudnn.so.9' && ! ls /usr/local/cuda/targets/x86_64-linux/lib/libcudnn.so.9* >/dev/null 2>&1; then
  d=$(python3 -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null || true)
  if [ -n "$d" ]; then export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; echo "cuDNN from $d"; fi
fi
export PYTHONUNBUFFERED=1
nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

echo "== models"
# Made once per $W: later runs reuse them.
[ -f "$W/resnet18/model.onnx" ] && [ -f "$W/fixtures/batching_mlp/model.onnx" ] || python3 - "$W" <<'PY'
import sys; from pathlib import Path
sys.path.insert(0, "scripts")
import torch, torch_reference as t
w = Path(sys.argv[1]); (w / "resnet18").mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
cls, i, o, shape = t.MODELS["resnet18"]
m = cls().eval()
t.export(m, torch.randn(1, *shape), w / "resnet18" / "model.onnx", i, o)
import gen_fixtures as g
g.OUT = w / "fixtures"; g.OUT.mkdir(parents=True, exist_ok=True)
g.CASES["batching_mlp"]("batching_mlp")
PY
ls -la "$W/resnet18" "$W/fixtures/batching_mlp" | grep onnx

export BIN=$PWD/$BIN_DIR/anemone DURATION=${DURATION:-15}
[ "${SKIP_CPU:-0}" = 1 ] || {
echo "== CPU: batching_mlp on onnxruntime, server on cores 0-1, client on 2-9" | tee "$OUT/mlp.log"
MODEL_FILE=$W/fixtures/batching_mlp/model.onnx BACKENDS=onnxruntime THREADS=2 \
  SERVER_CPUS=0-1 CLIENT_CPUS=2-9 scripts/bench_batching.sh 2>&1 | tee -a "$OUT/mlp.log"
}

for n in ${GPU_INSTANCES:-1}; do
  echo "== GPU: resnet18 on tract-cuda, $n instance(s)" | tee -a "$OUT/resnet.log"
  MODEL_FILE=$W/resnet18/model.onnx BACKENDS=tract-cuda INPUT=input INPUT_DIMS=3,224,224 \
    OUTPUT=logits OUTPUT_DIMS=1000 INSTANCES=$n scripts/bench_batching.sh 2>&1 | tee -a "$OUT/resnet.log"
  # Triton's "off": the same instances, each running one request at a time.
  [ "${TRITON_OFF:-1}" = 1 ] || continue
  echo "== GPU: resnet18 on tract-cuda, $n instance(s), one request per instance at a time (Triton's off)" | tee -a "$OUT/resnet.log"
  MODEL_FILE=$W/resnet18/model.onnx BACKENDS=tract-cuda INPUT=input INPUT_DIMS=3,224,224 \
    OUTPUT=logits OUTPUT_DIMS=1000 INSTANCES=$n MAX_BATCH=1 PREFERRED=1 DELAY_US=0 \
    scripts/bench_batching.sh with 2>&1 | tee -a "$OUT/resnet.log"
done
