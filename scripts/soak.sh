#!/usr/bin/env bash
# Soak: runs `anemone serve` on two real models of fixtures/generated
# (`identity` over HTTP, `dynamic_batch` over gRPC, each model in a fresh
# repository), sends N requests in all at concurrency C (half of each over
# each protocol, with `anemone bench`), samples the server's RSS every second,
# then prints a table of the samples and a verdict:
#   - any failed request (any non-200 / non-OK answer) fails the soak;
#   - RSS growth from the end of the warm-up to the end of the run over
#     --max-growth-mib fails the soak (a leak);
#   - the server must exit 0 on SIGTERM.
#
# usage: scripts/soak.sh [-n REQUESTS] [-c CONCURRENCY] [--warmup N]
#                        [--max-growth-mib MIB] [--bin PATH]
# Defaults: 1000000 requests, concurrency 256, 20000 warm-up requests, 64 MiB,
# target/release/anemone if it exists, else target/debug/anemone
# (ANEMONE_BIN overrides). The CI step (scripts/test.sh) runs a short soak.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

requests=1000000
concurrency=256
warmup=20000
max_growth_mib=64
bin="${ANEMONE_BIN:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        -n) requests="$2"; shift 2 ;;
        -c) concurrency="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --max-growth-mib) max_growth_mib="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    bin=target/debug/anemone
    [ -x target/release/anemone ] && bin=target/release/anemone
fi
[ -x "$bin" ] || { echo "soak: no binary at $bin; build it with cargo build -p anemone-cli" >&2; exit 2; }
[ "$concurrency" -ge 2 ] || { echo "soak: -c must be at least 2 (one worker per protocol)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/anemone-soak.XXXXXX")
server=""
sampler=""
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for m in identity dynamic_batch; do
    [ -f "fixtures/generated/$m/model.onnx" ] || { echo "soak: fixtures/generated/$m missing; run scripts/setup.sh" >&2; exit 2; }
    mkdir -p "$work/repo/$m/1"
    cp "fixtures/generated/$m/model.onnx" "$work/repo/$m/1/model.onnx"
done

# Twice the client concurrency as the server's limit: a client sends its next
# request as soon as it has the answer, possibly before the server has
# released the permit of the last one; the soak is about leaks, not the limit
# (tests/api/overload.rs tests the limit).
"$bin" serve --model-repository "$work/repo" --http-port 0 --grpc-port 0 \
    --max-concurrency $((2 * concurrency)) >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 600); do
    grep -q '^gRPC listening on' "$work/serve.out" 2>/dev/null && grep -q '^dynamic_batch' "$work/serve.out" && grep -q '^identity' "$work/serve.out" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.err" >&2; echo "soak: the server exited" >&2; exit 1; }
    sleep 0.1
done
http=$(sed -n 's/^HTTP listening on //p' "$work/serve.out")
grpc=$(sed -n 's/^gRPC listening on //p' "$work/serve.out")
[ -n "$http" ] && [ -n "$grpc" ] || { cat "$work/serve.out" "$work/serve.err" >&2; echo "soak: the server never listened" >&2; exit 1; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
start=$(date +%s)
(
    while kill -0 "$server" 2>/dev/null; do
        echo "$(( $(date +%s) - start )) $(rss_kib)" >>"$work/rss"
        sleep 1
    done
) &
sampler=$!

bench() { # protocol model url requests concurrency report
    "$bin" bench --protocol "$1" --model "$2" --url "http://$3" -n "$4" -c "$5" \
        --warmup 10 --json-report "$6" >"$6.out" 2>&1
}
half=$((concurrency / 2))
echo "soak: $bin, warming up with $warmup requests"
bench http identity "$http" $((warmup / 2)) "$half" "$work/warm-http.json" &
w1=$!
bench grpc dynamic_batch "$grpc" $((warmup / 2)) $((concurrency - half)) "$work/warm-grpc.json" &
w2=$!
wait $w1 $w2 || { cat "$work"/warm-*.out >&2; echo "soak: warm-up failed" >&2; exit 1; }
base=$(rss_kib)
t0=$(date +%s)
echo "soak: $requests requests at concurrency $concurrency (HTTP $half on identity, gRPC $((concurrency - half)) on dynamic_batch); RSS after warm-up $((base / 1024)) MiB"
bench http identity "$http" $((requests / 2)) "$half" "$work/http.json" &
b1=$!
bench grpc dynamic_batch "$grpc" $((requests - requests / 2)) $((concurrency - half)) "$work/grpc.json" &
b2=$!
status=0
wait $b1 || status=1
wait $b2 || status=1
t1=$(date +%s)
sleep 1
final=$(rss_kib)
kill "$sampler" 2>/dev/null || true
sampler=""
kill -TERM "$server"
exit_code=0
wait "$server" || exit_code=$?
server=""

peak=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$work/rss")
echo
echo "RSS of the server, sampled every second (every ~5% of the samples shown):"
printf '%8s %10s\n' "t (s)" "RSS (MiB)"
lines=$(wc -l <"$work/rss")
step=$(( lines / 20 > 0 ? lines / 20 : 1 ))
awk -v step="$step" -v n="$lines" 'NR % step == 1 || step == 1 || NR == n {printf "%8d %10.1f\n", $1, $2 / 1024}' "$work/rss"
echo
python3 - "$work/http.json" "$work/grpc.json" <<'EOF'
import json, sys
print(f"{'protocol':<9} {'model':<14} {'ok':>9} {'errors':>7} {'req/s':>9} {'p50 us':>9} {'p99 us':>9}")
for path in sys.argv[1:]:
    try:
        r = json.load(open(path))
    except Exception as e:
        print(f"{path}: no report ({e})")
        continue
    lat = r.get("latency_us") or {}
    print(f"{r['protocol']:<9} {r['model']:<14} {r['requests']:>9} {r['errors']:>7} {r['throughput_rps']:>9} {lat.get('p50', '-'):>9} {lat.get('p99', '-'):>9}")
    if r["errors"]:
        print(f"  errors by status: {r['errors_by_status']}; first: {r['first_error']}")
EOF
errors=$(python3 -c '
import json, sys
t = 0
for p in sys.argv[1:]:
    try: t += json.load(open(p))["errors"]
    except Exception: t += 1
print(t)' "$work/http.json" "$work/grpc.json")
growth=$(( (final - base) / 1024 ))
echo
echo "wall time $((t1 - t0)) s; RSS after warm-up $((base / 1024)) MiB, at the end $((final / 1024)) MiB (growth $growth MiB, allowed $max_growth_mib), peak $((peak / 1024)) MiB; server exit code $exit_code"
verdict=PASS
[ "$status" -eq 0 ] || { verdict=FAIL; cat "$work"/http.json.out "$work"/grpc.json.out >&2; }
[ "$errors" -eq 0 ] || { verdict=FAIL; echo "soak: $errors unexpected errors" >&2; }
[ "$growth" -le "$max_growth_mib" ] || { verdict=FAIL; echo "soak: RSS grew $growth MiB (> $max_growth_mib): a leak?" >&2; }
[ "$exit_code" -eq 0 ] || { verdict=FAIL; echo "soak: the server exited $exit_code on SIGTERM" >&2; tail -20 "$work/serve.err" >&2; }
echo "verdict: $verdict"
[ "$verdict" = PASS ]
