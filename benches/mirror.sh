#!/usr/bin/env bash
# The tile mirror (`serve --tiles`, spec/tiles-mirror.md) against no mirror: the same closed-loop
# append load (`countersign-bench append`, validated ES256 decisions) on a fresh log three ways
# (no mirror; mirrored to a local directory; mirrored to a SeaweedFS S3 server on this machine,
# started by scripts/s3-server.sh), then how long the bucket takes to hold the server's final
# checkpoint after the load ends, and how many objects it wrote. Server, S3 server and load
# generator share the cores.
#
# Usage: benches/mirror.sh [COUNT] [ROUNDS] [WORK_DIR]
#   COUNT decisions per run (default 50000), ROUNDS of the three runs (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
COUNT="${1:-50000}"
ROUNDS="${2:-2}"
WORK="${3:-$(mktemp -d)}"
cargo build -q --release -p countersign --bin countersign -p countersign-benches --bin countersign-bench
B="$CARGO_TARGET_DIR/release"
PORT=18290
URL="http://127.0.0.1:$PORT"
mkdir -p "$WORK"
SERVER=""
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null || true
    wait 2> /dev/null || true
    bash scripts/s3-server.sh stop "$WORK/s3" || true
}
trap cleanup EXIT
bash scripts/s3-server.sh start "$WORK/s3"
source "$WORK/s3/env"
BUCKET_URL="$AWS_ENDPOINT_URL/${COUNTERSIGN_TEST_S3_BUCKET#s3://}"

wait_for() {
    for _ in $(seq 400); do
        curl -fsS "$1" > /dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "no answer from $1" >&2
    return 1
}
metric() { curl -fsS "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

echo "round | mirror | decisions/s | bucket caught up after the load (s) | objects written | retried failures"
for r in $(seq "$ROUNDS"); do
    for mode in none dir s3; do
        rm -rf "$WORK/data" "$WORK/tiles"
        prefix="bench-$r-$$"
        case $mode in
        none) args=() ;;
        dir) args=(--tiles "file://$WORK/tiles") ;;
        s3) args=(--tiles "$COUNTERSIGN_TEST_S3_BUCKET/$prefix") ;;
        esac
        "$B/countersign" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --log-only \
            "${args[@]}" >> "$WORK/serve.log" 2>&1 &
        SERVER=$!
        wait_for "$URL/checkpoint"
        rate=$("$B/countersign-bench" append --url "$URL" --origin "http://localhost:$PORT" \
            --data-dir "$WORK/data" --count "$COUNT" --concurrency 64 |
            grep -E "^append:" | sed -E 's/.* ([0-9.]+) decisions\/s$/\1/')
        caught="" objects="" failures=""
        if [ "$mode" != none ]; then
            final=$(curl -fsS "$URL/checkpoint")
            t0=$(date +%s.%N)
            for _ in $(seq 6000); do
                case $mode in
                dir) got=$(cat "$WORK/tiles/checkpoint" 2> /dev/null || true) ;;
                s3) got=$(curl -fsS "$BUCKET_URL/$prefix/checkpoint" 2> /dev/null || true) ;;
                esac
                [ "$got" = "$final" ] && break
                sleep 0.01
            done
            caught=$(echo "$(date +%s.%N) - $t0" | bc)
            objects=$(metric countersign_tiles_mirror_objects_written_total)
            failures=$(metric countersign_tiles_mirror_write_failures_total)
        fi
        echo "$r | $mode | $rate | ${caught:--} | ${objects:--} | ${failures:--}"
        kill "$SERVER"
        wait "$SERVER" 2> /dev/null || true
        SERVER=""
    done
done
