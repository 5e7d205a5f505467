#!/usr/bin/env bash
# Runs compare.sh on the lent GPU machine's CPU cores, which has no network:
# everything comes in .dev-triton/ (see docs/PERFORMANCE.md, "Against the
# real Triton"):
#   triton.tar.xz   the nvidia-pytriton 0.7.0 wheel's tritonserver, Python
#                   backend, the Python 3.12 stub and its libraries
#   numpy-1.26.4-cp312.tar.xz  the stub needs numpy 1.x: the cp312 wheel,
#                   unpacked without its tests
#   wrk, libluajit-5.1.so.2    the HTTP client (Debian's wrk 4.1)
#   anemone.xz, libonnxruntime.so.1.31.1.xz   the release binary and its ORT
# and fixtures/generated/ocr_cls is carried with it.
# The server gets SERVER_CPUS (default 0-1, like the 2-core machine) and the
# clients CLIENT_CPUS (default 2-9).
set -euo pipefail
cd "$(dirname "$0")/../.."
D=$PWD/.dev-triton
W=${WORK:-/tmp/triton-peer}
rm -rf "$W"; mkdir -p "$W/site" "$W/bin"
tar -C "$W/site" -xJf "$D/triton.tar.xz"
mkdir -p "$W/np"; tar -C "$W/np" -xJf "$D/numpy-1.26.4-cp312.tar.xz"
TS=$W/site/pytriton/tritonserver
cp "$TS/python_backend_stubs/3.12/triton_python_backend_stub" "$TS/backends/python/"
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$D" "$D/wrk" > "$W/bin/wrk"
chmod +x "$W/bin/wrk" "$D/wrk"
xz -dc "$D/anemone.xz" > "$W/bin/anemone"; chmod +x "$W/bin/anemone"
xz -dc "$D/libonnxruntime.so.1.31.1.xz" > "$W/libonnxruntime.so.1.31.1"
export PATH=$W/bin:$PATH ORT_DYLIB_PATH=$W/libonnxruntime.so.1.31.1
VENV_SITE=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export TRITON_SITE=$W/site MODEL_SITES=$W/np:$VENV_SITE ANEMONE_BIN=$W/bin/anemone
export SERVER_CPUS=${SERVER_CPUS:-0-1} CLIENT_CPUS=${CLIENT_CPUS:-2-9} OUT=${OUT:-$W/out}
bash scripts/triton_peer/compare.sh
