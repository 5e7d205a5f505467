#!/usr/bin/env bash
# Request throughput under allocator settings (issue 11: memory against
# throughput): for each setting, one server pinned to SERVER_CPUS on a
# repository of `add` and PP-OCRv4 det, `anemone bench` from CLIENT_CPUS.
# Rows: `add` on ONNX Runtime at concurrency 32 over gRPC and HTTP binary (the
# allocator's locks under many small requests), ocr_det 1x3x320x320 at
# concurrency 4 over gRPC on ONNX Runtime and on tract (large activations),
# and the server's RSS at the end.
#
#   scripts/alloc_ab.sh BIN "SETTING A" "SETTING B" ...
#   e.g. scripts/alloc_ab.sh target/release/anemone "--malloc-arenas 0" "--malloc-arenas 2"
#
# Environment: ORT_DYLIB_PATH, SERVER_CPUS (0-1), CLIENT_CPUS (2-9),
# DURATION (6 s), ROUNDS (2). The figures are in docs/PERFORMANCE.md,
# "Memory per model".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: alloc_ab.sh BIN SETTING...}; shift
SERVER_CPUS=${SERVER_CPUS:-0-1}; CLIENT_CPUS=${CLIENT_CPUS:-2-9}
DURATION=${DURATION:-6}; ROUNDS=${ROUNDS:-2}
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
mkdir -p "$R/repo/add/1" "$R/repo/ocr_det/1"
cp examples/models/add/1/model.onnx "$R/repo/add/1/"
cp fixtures/generated/ocr_det/model.onnx "$R/repo/ocr_det/1/"
bench() { # url model protocol concurrency [shape]
  local extra=(); [[ -n "${5:-}" ]] && extra=(--shape "$5")
  taskset -c "$CLIENT_CPUS" "$BIN" bench --url "$1" -m "$2" --protocol "$3" -c "$4" -d "$DURATION" "${extra[@]}" 2>&1 \
    | awk '/^throughput/ {t=$2} /p99/ {p=$3" "$4} END {printf "%s req/s (p99 %s)", t, p}'
}
echo "| round | setting | engine | add gRPC c32 | add HTTP binary c32 | ocr_det gRPC c4 | RSS at the end |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for setting in "$@"; do
    for engine in onnxruntime tract-cpu; do
      # shellcheck disable=SC2086
      taskset -c "$SERVER_CPUS" "$BIN" serve --model-repository "$R/repo" --http-port 8700 --grpc-port 8701 \
        --metrics-port 8702 --log-level warn --backends "$engine" --strict $setting > "$R/serve.log" 2>&1 &
      pid=$!
      for _ in $(seq 600); do curl -sf localhost:8700/v2/health/ready > /dev/null && break; sleep 0.1; done
      curl -sf localhost:8700/v2/health/ready > /dev/null || { cat "$R/serve.log" >&2; exit 1; }
      a=-; b=-
      if [[ $engine = onnxruntime ]]; then
        DURATION=1 bench http://127.0.0.1:8701 add grpc 32 > /dev/null
        a=$(bench http://127.0.0.1:8701 add grpc 32)
        b=$(bench http://127.0.0.1:8700 add http-binary 32)
      fi
      DURATION=1 bench http://127.0.0.1:8701 ocr_det grpc 4 x=1,3,320,320 > /dev/null
      o=$(bench http://127.0.0.1:8701 ocr_det grpc 4 x=1,3,320,320)
      sleep 3
      rss=$(awk '/^VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$pid/status")
      echo "| $round | \`$setting\` | $engine | $a | $b | $o | $rss |"
      kill "$pid"; wait "$pid" 2> /dev/null || true
    done
  done
done
