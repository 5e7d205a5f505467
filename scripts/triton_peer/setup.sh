#!/usr/bin/env bash
# Installs the real Triton (tritonserver 2.51 from the nvidia-pytriton 0.7.0
# wheel) into its own virtual environment, puts the Python backend's stub in
# place, and writes both servers' model repositories.
#   scripts/triton_peer/setup.sh OUT_DIR ORT_THREADS
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/triton-peer}; THREADS=${2:-2}
mkdir -p "$OUT"
VENV=$OUT/venv
PY=${PYTHON:-python3}
if [[ ! -x $VENV/bin/python ]]; then
  echo "installing Triton 2.51 (nvidia-pytriton 0.7.0) into $VENV" >&2
  "$PY" -m venv "$VENV"
  # The Python backend's stub is built against numpy 1.x.
  "$VENV/bin/pip" install -q "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime==1.31.1"
fi
SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
VER=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
TS=$SP/pytriton/tritonserver
STUB=$TS/python_backend_stubs/$VER/triton_python_backend_stub
[[ -f $STUB ]] || { echo "the wheel has no Python backend stub for Python $VER" >&2; exit 1; }
cmp -s "$STUB" "$TS/backends/python/triton_python_backend_stub" || cp "$STUB" "$TS/backends/python/"
echo "$SP" > "$OUT/site-packages"
"$VENV/bin/python" scripts/triton_peer/make_repos.py "$OUT" "$SP" "$THREADS" >&2
