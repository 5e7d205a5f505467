#!/usr/bin/env bash
# Set up the Python venv (.venv), install the ONNX Runtime library
# (third_party/onnxruntime) and generate test fixtures (fixtures/generated,
# Core ML ones in fixtures/generated/coreml).
# Idempotent: re-running is cheap when nothing changed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
REQS="$REPO/scripts/requirements.txt"
MODEL_REQS="$REPO/scripts/requirements-models.txt"
STAMP="$VENV/.anemone-stamp"

if [[ ! -x "$PY" ]]; then
    echo "setup: creating venv at .venv"
    python3 -m venv "$VENV"
fi

wanted="$(cat "$REQS" "$MODEL_REQS")"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" ]]; then
    echo "setup: python packages up to date"
else
    echo "setup: installing python packages"
    rm -f "$STAMP"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -r "$MODEL_REQS"
    printf '%s' "$wanted" > "$STAMP"
fi

cd "$REPO"
# The onnxruntime backend's library (third_party/onnxruntime/lib), from the PyPI wheel.
PYTHON="$PY" scripts/install-onnxruntime.sh --required

if "$PY" scripts/gen_fixtures.py --check; then
    echo "setup: fixtures up to date"
else
    echo "setup: generating fixtures"
    "$PY" scripts/gen_fixtures.py --force
    echo "setup: fixtures done"
fi
if "$PY" scripts/gen_coreml_fixtures.py --check; then
    echo "setup: Core ML fixtures up to date"
else
    echo "setup: generating Core ML fixtures"
    "$PY" scripts/gen_coreml_fixtures.py --force
fi
