#!/usr/bin/env bash
# Fuzzes anemone's decoders with cargo-fuzz (libFuzzer) on the stable
# toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags that
# cargo-fuzz passes (no nightly needed), and libfuzzer-sys builds libFuzzer
# from source with the C++ compiler.
#
# usage: scripts/fuzz.sh build                 build every target
#        scripts/fuzz.sh <target|all> <seconds> build, then run each target
#        scripts/fuzz.sh list                  the targets
# Targets (fuzz/fuzz_targets/): http_json, http_binary, grpc_infer,
# model_config, npy, coreml.
#
# Each run starts from the checked-in corpus fuzz/corpus/<target>/ (read
# only) and keeps what it learns in fuzz/work/<target>/ (not checked in);
# crashes go to fuzz/artifacts/<target>/. A crash stops the run and the script
# exits 1: copy the input into fuzz/corpus/<target>/ with the fix, and the
# CI replay (crates/anemone-server/tests/api/fuzz_replay.rs) keeps it fixed.
#
# The built binaries run standalone (libFuzzer is linked in), e.g. on another
# machine:   ./http_json -max_total_time=600 -rss_limit_mb=2048 -timeout=10 \
#                -jobs=16 -workers=16 work/ corpus/http_json/
# Needs: cargo install cargo-fuzz; a C++ compiler.
# FUZZ_SANITIZER (default none; address for ASan) picks the sanitizer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

targets=(http_json http_binary grpc_infer model_config npy coreml)
sanitizer="${FUZZ_SANITIZER:-none}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bindir="fuzz/target/$triple/release"

build() {
    RUSTC_BOOTSTRAP=1 cargo fuzz build --release --sanitizer "$sanitizer" "$@"
}

case "${1:-}" in
    list) printf '%s\n' "${targets[@]}"; exit 0 ;;
    build) build; echo "fuzz: binaries in $bindir"; exit 0 ;;
    all) run=("${targets[@]}") ;;
    "") sed -n '2,25p' "$0"; exit 2 ;;
    *)
        if [[ " ${targets[*]} " != *" $1 "* ]]; then
            echo "fuzz: unknown target '$1'; one of: ${targets[*]} or all" >&2
            exit 2
        fi
        run=("$1") ;;
esac
seconds="${2:?give the seconds to fuzz each target}"
build
status=0
for t in "${run[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    echo "fuzz: $t for $seconds s"
    log="fuzz/artifacts/$t/last-run.log"
    if "$bindir/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "fuzz/work/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE' "$log" | sed "s/^/fuzz: $t: /"
    else
        status=1
        tail -40 "$log"
        echo "fuzz: $t found a crash: see fuzz/artifacts/$t/" >&2
    fi
done
exit $status
