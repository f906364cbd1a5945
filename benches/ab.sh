#!/usr/bin/env bash
# Alternates two release builds of the server and the load generator on this machine and prints
# each run's figures, so that a change is compared with what it replaces in the same session:
#
#   benches/ab.sh BEFORE_DIR AFTER_DIR [ROUNDS] [WORK_DIR]
#
# Each DIR holds the release binaries `countersign` and `countersign-bench` of one build, e.g.
#   cargo build --release --locked -p countersign -p countersign-benches --bins
#   mkdir -p /tmp/after && cp $CARGO_TARGET_DIR/release/countersign{,-bench} /tmp/after/
# (a build from before the three-crate redesign builds the binary with -p countersign-log).
#
# Per round and build, in the order A B, then B A in the next round (so neither build always
# runs first):
#   core      the log core in process against raw RocksDB, 300,000 entries (fresh directory);
#   batch     signed decisions over HTTP in batches of 128, 4 in flight, against the ES256 rate
#             (fresh data directory, server CPU per decision from /proc/PID/stat);
#   proofs    random inclusion proofs, 32 in flight, against one 1,000,001-leaf tree built once
#             by the AFTER build's `core` (both builds read the same files);
#   flows     complete CIBA flows, 32 in flight, 10% denied (fresh data directory); the
#             generator prints server CPU per flow in ES256 checks (`--server-pid`).
# AB_ONLY="core flows" runs only those. Everything binds to 127.0.0.1 and every server is stopped before the next run. Nothing else
# should run on the machine meanwhile: the figures are only comparable within one session.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,22p' "$0"; exit 2; }
A=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
ROUNDS=${3:-2}
W=${4:-$(mktemp -d /tmp/countersign-ab.XXXXXX)}
mkdir -p "$W"
PORT=18190
LOG="$W/ab.log"
echo "work directory $W; full output in $LOG" >&2

HZ=$(getconf CLK_TCK)
ticks() { # utime + stime of a process, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
per_op_us() { # TICKS COUNT
    echo $(($1 * 1000000 / HZ / $2))
}

serve() { # serve BIN DATA_DIR: starts a server in the background, waits for /healthz
    "$1/countersign" serve --data-dir "$2" --listen "127.0.0.1:$PORT" \
        --public-url "http://localhost:$PORT" >>"$W/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start; see $W/server.log" >&2
    return 1
}

stop() {
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
}

run_core() { # BUILD_DIR NAME
    rm -rf "$W/core"
    "$1/countersign-bench" core --dir "$W/core" --count 300000 2>>"$LOG" | tee -a "$LOG" |
        grep -E '^(raw RocksDB|log core)' | sed "s/^/[$2 core] /"
}

run_batch() {
    rm -rf "$W/batch"
    serve "$1" "$W/batch"
    local t0
    t0=$(ticks "$SERVER")
    "$1/countersign-bench" append --url "http://127.0.0.1:$PORT" --origin "http://localhost:$PORT" \
        --data-dir "$W/batch" --count 60000 --concurrency 4 --batch 128 2>>"$LOG" |
        tee -a "$LOG" | grep -E '^(append:|HTTP decisions)' | sed "s/^/[$2 batch] /"
    local t1
    t1=$(ticks "$SERVER")
    echo "[$2 batch] server CPU per decision, warm-up included: $(per_op_us $((t1 - t0)) 60000) us"
    stop
}

run_proofs() {
    serve "$1" "$W/tree1m/log"
    local t0
    t0=$(ticks "$SERVER")
    "$1/countersign-bench" read --url "http://127.0.0.1:$PORT" --kind inclusion --count 100000 \
        --concurrency 32 2>>"$LOG" | tee -a "$LOG" | grep -E '^read' | sed "s/^/[$2 proofs] /"
    local t1
    t1=$(ticks "$SERVER")
    echo "[$2 proofs] server CPU per proof: $(per_op_us $((t1 - t0)) 100000) us"
    stop
}

run_flows() {
    rm -rf "$W/flows"
    serve "$1" "$W/flows"
    local pid_arg=()
    if "$1/countersign-bench" flow --help | grep -q -- --server-pid; then
        pid_arg=(--server-pid "$SERVER")
    fi
    local t0
    t0=$(ticks "$SERVER")
    "$1/countersign-bench" flow --url "http://127.0.0.1:$PORT" --origin "http://localhost:$PORT" \
        --data-dir "$W/flows" --count 3000 --concurrency 32 "${pid_arg[@]}" 2>>"$LOG" |
        tee -a "$LOG" | grep -E '^(flow:|flows reach|server CPU|ES256)' | sed "s/^/[$2 flows] /"
    local t1
    t1=$(ticks "$SERVER")
    echo "[$2 flows] server CPU per flow, set-up included: $(per_op_us $((t1 - t0)) 3000) us"
    stop
}

if [[ " ${AB_ONLY:-proofs} " == *" proofs "* ]] && [ ! -d "$W/tree1m/log" ]; then
    echo "building the 1,000,001-leaf tree with the AFTER build" >&2
    "$B/countersign-bench" core --dir "$W/tree1m" --count 1000000 2>>"$LOG" | tee -a "$LOG" |
        grep -E '^(raw RocksDB|log core)' | sed "s/^/[after core 1M] /"
fi

for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for what in ${AB_ONLY:-core batch proofs flows}; do
        for x in $order; do
            if [ "$x" = A ]; then dir=$A name=before; else dir=$B name=after; fi
            echo "== round $r: $what, $name ($(uptime | sed 's/.*load average: //'))" | tee -a "$LOG"
            "run_$what" "$dir" "$name"
        done
    done
done
