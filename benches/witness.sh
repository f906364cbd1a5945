#!/usr/bin/env bash
# Witnessing on against off (issue 15): two local `countersign witness serve` processes, one log
# data directory served alternately without and with `--witness-policy` (2 of 2), the same
# closed-loop append load each time (`countersign-bench append`), and from the witnessed runs the
# time from a checkpoint's publication to it carrying both cosignatures (the histogram
# `countersign_witness_cosign_latency_seconds`, read from /metrics: percentiles are bucket upper
# bounds, buckets doubling from 0.5 ms). Witnesses, log and load generator share the cores.
#
# Usage: benches/witness.sh [COUNT] [INTERVAL] [ROUNDS] [WORK_DIR]
#   COUNT decisions per run (default 20000), INTERVAL the --witness-interval (default 1s, the
#   serve default), ROUNDS off/on pairs (default 2).
# With DATABASE=postgres://… and TILES=s3://… (and the AWS_* variables) set, the log runs on
# the shared driver instead (one instance; the data directory then holds only its keys):
#   bash scripts/pg-server.sh start /tmp/pg && bash scripts/s3-server.sh start /tmp/s3
#   source /tmp/pg/env; source /tmp/s3/env
#   DATABASE=$COUNTERSIGN_TEST_DATABASE TILES=$COUNTERSIGN_TEST_S3_BUCKET/bench-$RANDOM \
#       benches/witness.sh 5000 100ms 2
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
COUNT="${1:-20000}"
INTERVAL="${2:-1s}"
ROUNDS="${3:-2}"
WORK="${4:-$(mktemp -d)}"
cargo build --release -p countersign -p countersign-benches
B="$CARGO_TARGET_DIR/release"
PORT=18190
URL="http://127.0.0.1:$PORT"
rm -rf "$WORK/data" "$WORK"/w?-data "$WORK"/w?.key
mkdir -p "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
}
trap cleanup EXIT
wait_for() {
    for _ in $(seq 200); do
        curl -fsS "$1" > /dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "no answer from $1" >&2
    return 1
}
SHARED=()
if [ -n "${DATABASE:-}" ]; then
    SHARED=(--database "$DATABASE" --tiles "${TILES:?TILES=s3://BUCKET/PREFIX with DATABASE}")
fi
serve() {
    "$B/countersign" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" "$@" \
        >> "$WORK/serve.log" 2>&1 &
    SERVER=$!
    wait_for "$URL/checkpoint"
}
stop_server() {
    kill "$SERVER"
    wait "$SERVER" 2> /dev/null || true
}

# The log's key, made by a first start.
serve
stop_server
LOG_VKEY="$(cat "$WORK/data/log.vkey")"
printf 'log %s\nquorum none\n' "$LOG_VKEY" > "$WORK/logs.policy"
POLICY="$WORK/witnesses.policy"
printf 'log %s\n' "$LOG_VKEY" > "$POLICY"
for i in 1 2; do
    V="$("$B/countersign" witness keygen --name "w$i.bench.test" --key-file "$WORK/w$i.key")"
    "$B/countersign" witness serve --key-file "$WORK/w$i.key" --logs "$WORK/logs.policy" \
        --listen "127.0.0.1:1818$i" --data-dir "$WORK/w$i-data" > "$WORK/w$i.log" 2>&1 &
    PIDS+=($!)
    wait_for "http://127.0.0.1:1818$i/health"
    printf 'witness w%s %s http://127.0.0.1:1818%s\n' "$i" "$V" "$i" >> "$POLICY"
done
printf 'group both all w1 w2\nquorum both\n' >> "$POLICY"

bench() {
    "$B/countersign-bench" append --url "$URL" --origin "http://localhost:$PORT" \
        --data-dir "$WORK/data" --count "$COUNT" --concurrency 64 \
        | grep -E "^append:" | sed -E 's/.* ([0-9]+) decisions\/s$/\1/'
}
percentile() { # $1 = quantile (0.5, 0.99); stdin: the histogram's bucket lines
    awk -v q="$1" '
        /_bucket\{/ { match($0, /le="[^"]+"/); le = substr($0, RSTART + 4, RLENGTH - 5);
                      n[++k] = $NF; b[k] = le }
        END { total = n[k]; for (i = 1; i <= k; i++) if (n[i] >= q * total) { print b[i]; exit } }'
}
echo "round | witnessing | decisions/s | cosigned checkpoints | p50 <= s | p99 <= s"
for r in $(seq "$ROUNDS"); do
    serve "${SHARED[@]}"
    OFF="$(bench)"
    stop_server
    echo "$r | off | $OFF | | |"
    serve "${SHARED[@]}" --witness-policy "$POLICY" --witness-interval "$INTERVAL"
    ON="$(bench)"
    sleep 2 # the last checkpoint's cosignatures
    H="$(curl -fsS "$URL/metrics" | grep '^countersign_witness_cosign_latency_seconds')"
    stop_server
    N="$(echo "$H" | grep '_count' | awk '{print $NF}')"
    echo "$r | on | $ON | $N | $(echo "$H" | percentile 0.5) | $(echo "$H" | percentile 0.99)"
done
curl -fsS "$URL/checkpoint" > /dev/null 2>&1 || true
