#!/usr/bin/env bash
# Side-by-side: anemone against the real Triton Inference Server 2.51 (from
# the nvidia-pytriton wheel), same models, same client, one server at a time.
#
#   scripts/triton_peer/compare.sh            # set up (first run) and measure
#
# Environment:
#   ANEMONE_BIN   anemone binary to measure (default: target/release/anemone,
#                 else target/debug/anemone)
#   DURATION      seconds per measurement (default 10)
#   THREADS       ONNX Runtime threads per session, both servers (default 2)
#   ANEMONE_ARGS  extra `anemone serve` flags (default: --backends
#                 onnxruntime,tract-cpu, the CPU-only default order, so a GPU
#                 on the machine is not used)
#   SERVER_CPUS   taskset CPU list for the server, e.g. 0-1 (default: none)
#   CLIENT_CPUS   taskset CPU list for the clients, e.g. 2-9 (default: none)
#   OUT           work folder (default target/triton-peer)
#   SERVERS       which servers, in order (default "triton anemone")
#   PIN_ORT       1 (default): anemone's ocr_cls is pinned to ONNX Runtime, as
#                 Triton's is; 0: anemone picks the engine itself
#   ROWS          which rows: all (default) or a space-separated subset of
#                 "add ocr_cls"
#   TRITON_SITE   a folder that already holds the wheel's pytriton/ and
#                 nvidia_pytriton.libs/ (skips setup.sh; see device.sh), with
#   MODEL_SITES   the folders (':'-separated) where the Python backend's
#                 models find numpy 1.x and onnxruntime
#
# Prints a markdown table and writes it with every raw figure (JSON lines)
# under $OUT/results.{md,jsonl}. The clients: wrk (HTTP JSON, and the
# GET /v2/health/live floor) and `anemone bench` (HTTP binary, gRPC).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/triton-peer}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
ROWS=${ROWS:-"add ocr_cls"}
BENCH_BIN=${BENCH_BIN:-}
if [[ -z "${ANEMONE_BIN:-}" ]]; then
  if [[ -x target/release/anemone ]]; then ANEMONE_BIN=$ROOT/target/release/anemone
  else ANEMONE_BIN=$ROOT/target/debug/anemone; fi
fi
BENCH_BIN=${BENCH_BIN:-$ANEMONE_BIN}
pin() { local cpus=$1; shift; if [[ -n "$cpus" ]]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

if [[ -n "${TRITON_SITE:-}" ]]; then
  SP=$TRITON_SITE
  python3 scripts/triton_peer/make_repos.py "$OUT" "${MODEL_SITES:?set MODEL_SITES with TRITON_SITE}" "$THREADS" >&2
else
  bash scripts/triton_peer/setup.sh "$OUT" "$THREADS"
  SP=$(cat "$OUT/site-packages")
fi
TS=$SP/pytriton/tritonserver
command -v wrk > /dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

HTTP=8600; GRPC=8601
RESULTS=$OUT/results.jsonl; : > "$RESULTS"
SERVER_PID=

stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=
  fi
  # The next server needs the ports: wait until nothing answers on them.
  for _ in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:$HTTP/v2/health/live" || return 0
    sleep 0.5
  done
  echo "something still answers on port $HTTP after the server stopped" >&2; exit 1
}
trap stop_server EXIT

# Starts "$@" in the background as the server, pinned to SERVER_CPUS, with
# its own PID in SERVER_PID (taskset execs the server, so signals reach it).
launch() { # log command...
  local log=$1; shift
  if [[ -n "${SERVER_CPUS:-}" ]]; then set -- taskset -c "$SERVER_CPUS" "$@"; fi
  "$@" > "$log" 2>&1 &
  SERVER_PID=$!
}

wait_ready() { # expected server name (GET /v2 "name"), log
  for _ in $(seq 1 240); do
    if ! kill -0 "$SERVER_PID" 2> /dev/null; then echo "$1 exited; log: $2" >&2; tail -20 "$2" >&2; exit 1; fi
    if curl -sf "http://127.0.0.1:$HTTP/v2/health/ready" > /dev/null; then
      local name
      name=$(curl -sf "http://127.0.0.1:$HTTP/v2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
      [[ $name == "$1" ]] || { echo "port $HTTP answers as '$name', not $1" >&2; exit 1; }
      return 0
    fi
    sleep 0.5
  done
  echo "$1 not ready after 120 s; log: $2" >&2; exit 1
}

start_triton() {
  LD_LIBRARY_PATH=$SP/nvidia_pytriton.libs launch "$OUT/triton.log" "$TS/bin/tritonserver" \
    --model-repository "$OUT/triton" --backend-directory "$TS/backends" \
    --http-port $HTTP --grpc-port $GRPC --allow-metrics false --log-verbose 0
  wait_ready triton "$OUT/triton.log"
}

start_anemone() {
  # shellcheck disable=SC2086
  launch "$OUT/anemone.log" "$ANEMONE_BIN" serve --model-repository "$OUT/anemone" \
    --http-port $HTTP --grpc-port $GRPC --threads "$THREADS" --log-level warn \
    ${ANEMONE_ARGS:---backends onnxruntime,tract-cpu}
  wait_ready anemone "$OUT/anemone.log"
}

record() { # server model protocol concurrency json
  python3 -c 'import json,sys; d=json.loads(sys.argv[5]); d.update(server=sys.argv[1], model=sys.argv[2], protocol=sys.argv[3], concurrency=int(sys.argv[4])); print(json.dumps(d))' "$@" >> "$RESULTS"
}

wrk_run() { # concurrency url [body]
  local c=$1 url=$2 body=${3:-} threads=$(( $1 < 4 ? $1 : 4 ))
  WRK_BODY=$body pin "${CLIENT_CPUS:-}" wrk -t"$threads" -c"$c" -d"${DURATION}s" \
    -s scripts/triton_peer/wrk_report.lua "$url" | tail -1
}

bench_run() { # model protocol concurrency port inputs...
  local model=$1 proto=$2 c=$3 port=$4; shift 4
  local args=()
  for i in "$@"; do args+=(-i "$i"); done
  pin "${CLIENT_CPUS:-}" "$BENCH_BIN" bench -m "$model" --protocol "$proto" \
    --url "http://127.0.0.1:$port" -c "$c" -d "$DURATION" --warmup 200 \
    "${args[@]}" --json-report "$OUT/bench.json" > /dev/null
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); l=d["latency_us"]; print(json.dumps(dict(requests=d["requests"], rps=d["throughput_rps"], mean_us=l["mean"], p50_us=l["p50"], p99_us=l["p99"], errors=d["errors"])))' "$OUT/bench.json"
}

inputs_of() {
  case $1 in
    add) echo "x=$OUT/requests/add_x.npy y=$OUT/requests/add_y.npy" ;;
    ocr_cls) echo "x=$OUT/requests/ocr_cls_x.npy" ;;
  esac
}

measure() { # server
  local server=$1
  echo "== $server" >&2
  for c in 1 32; do
    record "$server" health http "$c" "$(wrk_run "$c" "http://127.0.0.1:$HTTP/v2/health/live")"
  done
  for model in $ROWS; do
    # shellcheck disable=SC2046
    for c in 1 32; do
      record "$server" "$model" http "$c" \
        "$(wrk_run "$c" "http://127.0.0.1:$HTTP/v2/models/$model/infer" "$OUT/requests/$model.json")"
      record "$server" "$model" http-binary "$c" "$(bench_run "$model" http-binary "$c" $HTTP $(inputs_of "$model"))"
      record "$server" "$model" grpc "$c" "$(bench_run "$model" grpc "$c" $GRPC $(inputs_of "$model"))"
    done
  done
}

stop_server  # the ports must be free before the first server starts
for server in ${SERVERS:-triton anemone}; do
  "start_$server"; measure "$server"
  # Which engine served each model in the end (anemone may move a model
  # after its first requests): the metadata's platform, and the index.
  for model in $ROWS; do
    curl -s "http://127.0.0.1:$HTTP/v2/models/$model"; echo
  done > "$OUT/$server-models.jsonl"
  curl -s -X POST "http://127.0.0.1:$HTTP/v2/repository/index" > "$OUT/$server-index.json" || true
  stop_server
done

python3 scripts/triton_peer/table.py "$RESULTS" "$ANEMONE_BIN" | tee "$OUT/results.md"
