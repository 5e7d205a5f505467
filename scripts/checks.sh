#!/usr/bin/env bash
# The static checks, which run no test: clippy with -D warnings over every
# target (with the cuda feature on: it is also the type-check of the CUDA
# backend, which CI has no GPU to run), the type-check of the Apple-only code
# (scripts/check-apple.sh), and the API docs with -D warnings.
#
# scripts/test.sh starts this in the background once its build is done, so
# it runs beside the tests: see "--idle" below. By hand:
#   scripts/checks.sh            # in target/check, at normal priority
#   scripts/checks.sh --idle     # only on CPU time nothing else wants
#
# They build in a target folder of their own (CARGO_TARGET_DIR, else
# target/check): `cargo check`'s outputs are never shared with `cargo
# build`'s, so a folder of their own repeats only the build scripts and
# proc macros (clippy took 147 s in a folder of its own and 146 s in the
# shared one, on different days), and `cargo test` in target/ never waits
# on the folder's lock while these run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --idle: the idle scheduling class (SCHED_IDLE: this process and what it
# starts run only when a core would otherwise idle), else the lowest nice.
# The build and the tests then keep the cores whenever they want them.
if [ "${1:-}" = "--idle" ]; then
    chrt --idle -p 0 $$ >/dev/null 2>&1 || renice -n 19 -p $$ >/dev/null 2>&1 || true
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/check}"
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
fi

# Each step says when it began, counted from ANEMONE_TEST_STARTED (seconds
# since the epoch, set by scripts/test.sh) when given, else from this start.
STARTED="${ANEMONE_TEST_STARTED:-$(date +%s)}"
step() { echo "checks: $1 (at $(( $(date +%s) - STARTED )) s)"; }

step "cargo clippy -D warnings (all targets, cuda feature included)"
cargo clippy --workspace --all-targets --locked --features anemone-backends/cuda -- -D warnings
# In the same target folder as clippy: the dependencies it checked are
# reused (about a minute, against nearly four in a folder of its own). It
# also checks anemone-backends without its default ONNX Runtime, as
# anemone-server's library pulls it (the workspace build unifies features,
# and once hid a helper outside its feature gate).
step "type-check the Apple-only code (Core ML, tract-metal, ONNX Runtime's CoreML provider) and anemone-backends without ONNX Runtime"
scripts/check-apple.sh
step "cargo doc -D warnings (the API docs build, with no broken or private links)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --features anemone-backends/cuda
step "all passed"
