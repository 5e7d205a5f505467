#!/usr/bin/env bash
# What an infer adds over the health floor, two anemone binaries side by side
# on one machine (issue 16, goal 1): `add` at concurrency 1 over HTTP JSON,
# health and infer means from wrk, the binaries alternating, ROUNDS rounds,
# once with ONNX Runtime (named by `platform`) and once with tract-cpu.
#
#   scripts/triton_peer/floor_ab.sh OLD_BIN NEW_BIN
#
# Environment: ORT_DYLIB_PATH (the ONNX Runtime library), WRK (default wrk),
# SERVER_CPUS (default 0-1), CLIENT_CPUS (default 2-5; empty: unpinned),
# ROUNDS (2), DURATION (5 s per measurement), CONFIG (compare.sh's `add`
# config with max_batch_size 8 when 1, the default; only `platform` when 0).
# docs/PERFORMANCE.md ("The floor, old binary against new") has its figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=${1:?usage: floor_ab.sh OLD_BIN NEW_BIN}; NEW=${2:?usage: floor_ab.sh OLD_BIN NEW_BIN}
WRK=${WRK:-wrk}; ROUNDS=${ROUNDS:-2}; DURATION=${DURATION:-5}
SERVER_CPUS=${SERVER_CPUS-0-1}; CLIENT_CPUS=${CLIENT_CPUS-2-5}
pin() { local cpus=$1; shift; if [[ -n "$cpus" ]]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
mkdir -p "$R/ort/add/1" "$R/tract/add/1"
cp examples/models/add/1/model.onnx "$R/ort/add/1/"; cp examples/models/add/1/model.onnx "$R/tract/add/1/"
config() { # platform line
  if [[ "${CONFIG:-1}" = 1 ]]; then
    printf 'name: "add"\n%s\nmax_batch_size: 8\ninput [\n  { name: "x" data_type: TYPE_FP32 dims: [ 4 ] },\n  { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }\n]\noutput [\n  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] },\n  { name: "diff" data_type: TYPE_FP32 dims: [ 4 ] }\n]\n' "$1"
  else
    printf '%s\n' "$1"
  fi
}
config 'platform: "onnxruntime_onnx"' > "$R/ort/add/config.pbtxt"
config '' > "$R/tract/add/config.pbtxt"
printf '%s' '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"y","shape":[1,4],"datatype":"FP32","data":[10,20,30,40]}]}' > "$R/add.json"
wrk1() { WRK_BODY=${2:-} pin "$CLIENT_CPUS" "$WRK" -t1 -c1 -d"${DURATION}s" -s scripts/triton_peer/wrk_report.lua "$1" | tail -1; }
mean() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["mean_us"])' "$1"; }
echo "| round | binary | engine | health mean (µs) | infer mean (µs) | added (µs) |"
echo "|---|---|---|---:|---:|---:|"
for round in $(seq "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [[ $which = new ]] && bin=$NEW
    for engine in ort tract; do
      backends=onnxruntime,tract-cpu; [[ $engine = tract ]] && backends=tract-cpu
      args=(serve --model-repository "$R/$engine" --http-port 8600 --grpc-port 8601
        --metrics-port 8602 --threads 2 --log-level warn --backends "$backends")
      # Started directly (not through a function), so $! is the server's pid.
      if [[ -n "$SERVER_CPUS" ]]; then
        taskset -c "$SERVER_CPUS" "$bin" "${args[@]}" > "$R/serve.log" 2>&1 &
      else
        "$bin" "${args[@]}" > "$R/serve.log" 2>&1 &
      fi
      pid=$!
      ready=0
      for _ in $(seq 300); do curl -sf localhost:8600/v2/health/ready > /dev/null && { ready=1; break; }; sleep 0.1; done
      if [[ $ready = 0 ]]; then echo "the server ($which, $engine) never became ready:" >&2; cat "$R/serve.log" >&2; exit 1; fi
      WRK_BODY='' DURATION=2 wrk1 http://127.0.0.1:8600/v2/health/live > /dev/null
      h=$(mean "$(wrk1 http://127.0.0.1:8600/v2/health/live)")
      i=$(mean "$(wrk1 http://127.0.0.1:8600/v2/models/add/infer "$R/add.json")")
      python3 -c 'import sys; h,i=float(sys.argv[4]),float(sys.argv[5]); print(f"| {sys.argv[1]} | {sys.argv[2]} | {sys.argv[3]} | {h:.1f} | {i:.1f} | {i-h:.1f} |")' \
        "$round" "$which" "$engine" "$h" "$i"
      kill "$pid"; wait "$pid" 2> /dev/null || true
    done
  done
done
