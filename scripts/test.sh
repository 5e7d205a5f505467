#!/usr/bin/env bash
# Runs every test of anemone on a fresh machine: sets up the Python venv and
# the generated fixtures (scripts/setup.sh), then the whole Rust test suite,
# including the ONNX node-test conformance suite, the doctests, and one pass
# of each benchmark (criterion's test mode, so benches keep compiling and running).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
echo "test: cargo test (workspace, all targets)"
cargo test --workspace --all-targets --locked
echo "test: cargo test (doctests)"
cargo test --workspace --doc --locked
