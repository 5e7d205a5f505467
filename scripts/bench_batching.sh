#!/usr/bin/env bash
# The dynamic batching benchmark (issue 10): the `batching_mlp` fixture
# (1024 -> 2048 -> 1024 fp32 with ReLU, 16 MiB of weights) served twice by a
# release `anemone`, once without and once with `dynamic_batching`, each
# driven by `anemone bench` with batch-1 requests at concurrency 32. Prints
# throughput, p50 and p99 for both, and the average batch the server ran
# (inference_count / execution_count from its statistics), and the cores
# the server kept busy while the client ran (its user and system CPU time
# from /proc over the wall time; Linux only).
#
# Usage: scripts/bench_batching.sh [without] [with]   (default: both)
#
# Other models (the GPU figure serves ResNet-18 on tract-cuda this way):
#   MODEL_FILE   the ONNX file served                 [the batching_mlp fixture]
#   INPUT, INPUT_DIMS    its input and the dims after the batch   [x, 1024]
#   OUTPUT, OUTPUT_DIMS  its output and the dims after the batch  [y, 1024]
#   BIN          a prebuilt `anemone` to use instead of building one
#   SERVER_CPUS, CLIENT_CPUS   taskset CPU lists for the server and the
#                client (on a machine with cores to spare, so that the
#                client does not take the server's)            [unpinned]
#
# Triton's meaning of "off" (each instance runs one request at a time; anemone's
# side "without" lets requests overlap on an instance, docs/SERVING.md):
#   MAX_BATCH=1 PREFERRED=1 DELAY_US=0 scripts/bench_batching.sh with
#
# Settings (environment; defaults in brackets):
#   CONCURRENCY  clients, each with one request in flight          [32]
#   DURATION     seconds measured per side                         [20]
#   PROTOCOL     grpc, http or http-binary                          [grpc]
#   CLIENT       anemone (`anemone bench`) or perf_analyzer (Triton's, through
#                scripts/triton_peer/perf_analyzer.sh or PERF_ANALYZER; its
#                HTTP sends binary tensors)                        [anemone]
#   PA_ARGS      more perf_analyzer arguments, e.g. --shared-memory=system
#                (tensors through system shared memory, not the socket)  [none]
#   MAX_BATCH    the config's max_batch_size                        [32]
#   DELAY_US     dynamic_batching max_queue_delay_microseconds      [2000]
#   PREFERRED    dynamic_batching preferred_batch_size list         [16, 32]
#   BACKENDS     the model's `backends` parameter, e.g. onnxruntime [the server's default order]
#   THREADS, WORKERS   anemone serve --threads / --workers          [the server's defaults]
#   INSTANCES    instance_group count, on both sides                [1]
#   PARAMS       more model parameters, as KEY=VALUE pairs separated by
#                spaces, on both sides, e.g. tract-cuda.precision=tf32  [none]
#   HTTP_PORT, GRPC_PORT   where the server listens                 [18700, 18701]
#   KEEP         1 keeps the temporary repositories and logs        [0]
#   PROFILE      release, or debug to reuse a debug build (ONNX Runtime's
#                own speed does not change; anemone's overhead does)   [release]
#
# The side "with" needs the runtime's dynamic batcher: on a build without it,
# the model's config is refused at load and the script says so and goes on.
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-20}
PROTOCOL=${PROTOCOL:-grpc}
MAX_BATCH=${MAX_BATCH:-32}
DELAY_US=${DELAY_US:-2000}
PREFERRED=${PREFERRED:-16, 32}
BACKENDS=${BACKENDS:-}
HTTP_PORT=${HTTP_PORT:-18700}
GRPC_PORT=${GRPC_PORT:-18701}
SIDES=("$@")
[ ${#SIDES[@]} -eq 0 ] && SIDES=(without with)
for side in "${SIDES[@]}"; do
  case "$side" in without|with) ;; *) echo "unknown side '$side': give 'without' and/or 'with'" >&2; exit 2 ;; esac
done

model=${MODEL_FILE:-fixtures/generated/batching_mlp/model.onnx}
INPUT=${INPUT:-x}
INPUT_DIMS=${INPUT_DIMS:-1024}
OUTPUT=${OUTPUT:-y}
OUTPUT_DIMS=${OUTPUT_DIMS:-1024}
# taskset prefixes (taskset execs its command, so $! stays the server's pid).
server_pin=(); client_pin=()
[ -n "${SERVER_CPUS:-}" ] && server_pin=(taskset -c "$SERVER_CPUS")
[ -n "${CLIENT_CPUS:-}" ] && client_pin=(taskset -c "$CLIENT_CPUS")
if [ -z "${MODEL_FILE:-}" ] && [ ! -f "$model" ]; then
  echo "== generating the batching_mlp fixture"
  .venv/bin/python scripts/gen_fixtures.py --only batching_mlp
fi
PROFILE=${PROFILE:-release}
case "$PROFILE" in
  release) [ -z "${BIN:-}" ] && echo "== building release anemone"; profile_flag=--release ;;
  debug) [ -z "${BIN:-}" ] && echo "== building debug anemone (figures for a debug build)"; profile_flag= ;;
  *) echo "PROFILE is '$PROFILE'; give release or debug" >&2; exit 2 ;;
esac
if [ -n "${BIN:-}" ]; then
  bin=$BIN
  echo "== using $bin"
else
  CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build $profile_flag --locked -p anemone-cli >/dev/null
  bin=$PWD/target/$PROFILE/anemone
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/anemone-bench-batching.XXXXXX")
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A repository holding the MLP with the config of one side.
write_repo() {
  local side=$1 dir=$work/$1/repo
  mkdir -p "$dir/mlp/1"
  # A copy, not a link: links that lead out of a repository are refused.
  cp "$model" "$dir/mlp/1/model.onnx"
  {
    echo "name: \"mlp\""
    echo "max_batch_size: $MAX_BATCH"
    echo "input [ { name: \"$INPUT\" data_type: TYPE_FP32 dims: [ $INPUT_DIMS ] } ]"
    echo "output [ { name: \"$OUTPUT\" data_type: TYPE_FP32 dims: [ $OUTPUT_DIMS ] } ]"
    if [ "$side" = with ]; then
      echo "dynamic_batching {"
      echo "  preferred_batch_size: [ $PREFERRED ]"
      echo "  max_queue_delay_microseconds: $DELAY_US"
      echo "}"
    fi
    if [ -n "${INSTANCES:-}" ]; then
      echo "instance_group [ { count: $INSTANCES } ]"
    fi
    if [ -n "$BACKENDS" ]; then
      echo "parameters { key: \"backends\" value: { string_value: \"$BACKENDS\" } }"
    fi
    for kv in ${PARAMS:-}; do
      echo "parameters { key: \"${kv%%=*}\" value: { string_value: \"${kv#*=}\" } }"
    done
  } >"$dir/mlp/config.pbtxt"
  echo "$dir"
}

# Starts the server on a repository; fails (status 1) if it exits or is not
# ready in READY_SECS, with the end of its log.
serve() {
  local repo=$1 log=$2 args=()
  [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
  [ -n "${WORKERS:-}" ] && args+=(--workers "$WORKERS")
  ${server_pin[@]+"${server_pin[@]}"} "$bin" serve --model-repository "$repo" --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" \
    ${args[@]+"${args[@]}"} >"$log" 2>&1 &
  server=$!
  # Up to READY_SECS (default 180 s: a GPU engine's first load compiles kernels).
  # A model that failed to load (state UNAVAILABLE in the repository index)
  # ends the wait at once; its reason is in the log's tail below.
  for i in $(seq $((${READY_SECS:-180} * 10))); do
    if curl -sf "http://127.0.0.1:$HTTP_PORT/v2/models/mlp/ready" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$server" 2>/dev/null; then break; fi
    if [ $((i % 10)) = 0 ] && curl -sf -X POST "http://127.0.0.1:$HTTP_PORT/v2/repository/index" 2>/dev/null | grep -q '"UNAVAILABLE"'; then
      break
    fi
    sleep 0.1
  done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
  tail -n 5 "$log" >&2
  return 1
}

# The server's user + system CPU time so far, in clock ticks (-1 where
# /proc cannot say: not Linux, or the server is gone).
server_cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$server/stat" 2>/dev/null || echo -1
}

stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

case "$PROTOCOL" in grpc) url=http://127.0.0.1:$GRPC_PORT ;; *) url=http://127.0.0.1:$HTTP_PORT ;; esac
summary=()
for side in "${SIDES[@]}"; do
  echo "== $side dynamic_batching"
  repo=$(write_repo "$side")
  sed 's/^/   /' "$repo/mlp/config.pbtxt"
  if ! serve "$repo" "$work/$side/serve.log"; then
    echo "   the server did not get the model ready (above); no figures for '$side'"
    summary+=("$(printf '%-8s %s' "$side" "not served: see the reason above")")
    continue
  fi
  cpu_before=$(server_cpu_ticks); t_before=$(date +%s.%N)
  if [ "${CLIENT:-anemone}" = perf_analyzer ]; then
    # Triton's perf_analyzer: three windows of DURATION/3 s each (stability
    # not required), its CSV turned into the figures `anemone bench` reports.
    case "$PROTOCOL" in grpc) pa_proto=grpc; pa_url=127.0.0.1:$GRPC_PORT ;; *) pa_proto=http; pa_url=127.0.0.1:$HTTP_PORT ;; esac
    ${client_pin[@]+"${client_pin[@]}"} "${PERF_ANALYZER:-scripts/triton_peer/perf_analyzer.sh}" -m mlp -u "$pa_url" -i "$pa_proto" \
      --shape "$INPUT:$INPUT_DIMS" --concurrency-range "$CONCURRENCY" -p "$((DURATION * 1000 / 3))" -r 3 -s 100 \
      ${PA_ARGS:-} -f "$work/$side/pa.csv" >"$work/$side/pa.log" 2>&1 || tail -n 5 "$work/$side/pa.log" >&2
    python3 - "$work/$side/pa.csv" "$work/$side/bench.json" <<'EOF'
import csv, json, sys
r = list(csv.DictReader(open(sys.argv[1])))[-1]
json.dump({"throughput_rps": float(r["Inferences/Second"]), "errors": 0,
           "latency_us": {"p50": float(r["p50 latency"]), "p99": float(r["p99 latency"])}}, open(sys.argv[2], "w"))
EOF
  else
    ${client_pin[@]+"${client_pin[@]}"} "$bin" bench --protocol "$PROTOCOL" --url "$url" --model mlp --concurrency "$CONCURRENCY" \
      --duration "$DURATION" --warmup 64 --shape "$INPUT=1,$INPUT_DIMS" --json-report "$work/$side/bench.json"
  fi
  cpu_after=$(server_cpu_ticks); t_after=$(date +%s.%N)
  curl -sf "http://127.0.0.1:$HTTP_PORT/v2/models/mlp/stats" >"$work/$side/stats.json"
  stop
  cores=$(python3 -c "import os, sys; a, b, t0, t1 = map(float, sys.argv[1:]); print(f'{(b - a) / os.sysconf(\"SC_CLK_TCK\") / (t1 - t0):.1f}' if a >= 0 and b >= 0 else 'n/a')" \
    "$cpu_before" "$cpu_after" "$t_before" "$t_after")
  summary+=("$(python3 - "$side" "$work/$side/bench.json" "$work/$side/stats.json" "$cores" <<'EOF'
import json, sys
side, bench, stats, cores = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), sys.argv[4]
m = stats["model_stats"][0]
avg = m["inference_count"] / max(m["execution_count"], 1)
lat = bench["latency_us"] or {}
st = m.get("inference_stats", {})
def ms(k):
    s = st.get(k) or {}
    return s.get("ns", 0) / max(s.get("count", 0), 1) / 1e6
print(f"{side:8s} {bench['throughput_rps']:10.1f} {lat.get('p50', 0) / 1000:9.2f} {lat.get('p99', 0) / 1000:9.2f}"
      f" {avg:10.2f} {bench['errors']:7d} {ms('queue'):8.2f} {ms('compute_input'):8.2f} {ms('compute_infer'):8.2f}"
      f" {ms('compute_output'):8.2f} {cores:>9s}")
EOF
)")
done

echo
echo "== $(basename "$(dirname "$model")")/$(basename "$model"), batch-1 requests, concurrency $CONCURRENCY, $PROTOCOL, ${DURATION}s per side, $PROFILE build"
printf '%-8s %10s %9s %9s %10s %7s %8s %8s %8s %8s %9s\n' side "req/s" "p50 ms" "p99 ms" "avg batch" errors \
  "queue" "input" "infer" "output" "srv cores"
echo "(queue, input, infer, output: the server's mean per request, ms, from its statistics;"
echo " srv cores: the server's CPU time over the client's run, in cores kept busy)"
printf '%s\n' "${summary[@]}"
