#!/usr/bin/env bash
# Triton's own load generator, perf_analyzer (C++), against a running server.
#
# perf_analyzer no longer ships on PyPI by itself (the `perf-analyzer`
# package is an empty stub); the tritonclient 2.41.0 wheel for Linux x86_64
# still carries the binary. This script downloads that wheel and the CUDA
# runtime it links (nvidia-cuda-runtime-cu12, used only to load it: no GPU
# is needed) into OUT_DIR once, checks for libb64 (Debian: `apt-get install
# libb64-0d`), and runs perf_analyzer with the arguments given.
#
#   scripts/triton_peer/perf_analyzer.sh [perf_analyzer arguments...]
#   PA_DIR=target/perf-analyzer (where it is installed)
#
# For example, against `anemone serve --model-repository examples/models`:
#   scripts/triton_peer/perf_analyzer.sh -m add -u 127.0.0.1:8001 -i grpc \
#       --shape x:1,4 --shape y:1,4 --concurrency-range 4
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${PA_DIR:-target/perf-analyzer}
PIP=${PIP:-.venv/bin/pip}
BIN=$OUT/tritonclient-2.41.0.data/data/bin/perf_analyzer
CUDART=$OUT/nvidia/cuda_runtime/lib
if [[ ! -x $BIN || ! -d $CUDART ]]; then
  [[ -x $PIP ]] || PIP="python3 -m pip"
  mkdir -p "$OUT/wheels"
  echo "perf_analyzer: downloading tritonclient 2.41.0 (its binary) and the CUDA runtime into $OUT" >&2
  $PIP download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
    -d "$OUT/wheels" "tritonclient==2.41.0" "nvidia-cuda-runtime-cu12==12.3.101"
  (cd "$OUT" && for w in wheels/*.whl; do python3 -m zipfile -e "$w" .; done)
  chmod +x "$BIN"
fi
export LD_LIBRARY_PATH=$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if missing=$(ldd "$BIN" | grep "not found"); then
  echo "perf_analyzer needs libraries this machine lacks:" >&2
  echo "$missing" >&2
  echo "(libb64.so.0d: on Debian or Ubuntu, apt-get install libb64-0d)" >&2
  exit 1
fi
exec "$BIN" "$@"
