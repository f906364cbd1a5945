#!/usr/bin/env bash
# Complete CIBA approval flows (`countersign-bench flow`: /bc-authorize, inbox, passkey decision,
# token) on the embedded store against the shared driver (issue 21 point 10): one embedded
# server, then one shared instance, then two shared instances with half the load on each (two
# load generators at once, their flows/s added), alternated for ROUNDS rounds, each on a fresh
# data directory, database and bucket prefix. PostgreSQL (scripts/pg-server.sh), SeaweedFS
# (scripts/s3-server.sh), the servers and the load generators share the machine's cores.
#
# Usage: benches/shared-flows.sh [COUNT] [CONCURRENCY] [ROUNDS] [WORK_DIR]
#   COUNT flows per run (default 2000), CONCURRENCY flows in flight (default 32), ROUNDS (2).
# Environment:
#   SERVER_BIN=PATH   the servers run this `countersign` (another build, for A/B runs against the
#                     same load generator); default the release build made here
#   STATEMENTS=1      PostgreSQL loads pg_stat_statements, and after each one-instance run the
#                     statements it executed are printed per flow (set-up of the bench's client
#                     and approvers included), most frequent first, with the total
#   PG_SOCKET=1       the instances reach PostgreSQL over its Unix socket instead of loopback TCP
#                     (a database on the same host; production's is usually on another)
#   PERF=FILE         the one-instance run is sampled by `perf record -g` into FILE.rROUND
#   SYSCALLS=1        the one-instance server's send and receive calls are counted (perf's
#                     syscall tracepoints) and printed per flow: its round trips, whatever the
#                     host's speed
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
COUNT="${1:-2000}"
C="${2:-32}"
ROUNDS="${3:-2}"
WORK="${4:-$(mktemp -d)}"
cargo build -q --release --locked -p countersign --bin countersign -p countersign-benches \
    --bin countersign-bench
B="$CARGO_TARGET_DIR/release"
SERVER="${SERVER_BIN:-$B/countersign}"
P1=18391
P2=18392
mkdir -p "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    bash scripts/s3-server.sh stop "$WORK/s3" || true
    bash scripts/pg-server.sh stop "$WORK/pg" || true
}
trap cleanup EXIT
bash scripts/pg-server.sh start "$WORK/pg"
bash scripts/s3-server.sh start "$WORK/s3"
source "$WORK/pg/env"
source "$WORK/s3/env"
if [ "${STATEMENTS:-}" = 1 ]; then
    psql -q -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" postgres
    bash scripts/pg-server.sh restart "$WORK/pg"
    psql -q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" postgres
fi
# Statements PostgreSQL executed since the last reset, per flow (COUNT), most frequent first.
statements() {
    psql -qAt -F ' | ' postgres -c "
        SELECT to_char(calls::numeric / $COUNT, 'FM990.00'),
               left(regexp_replace(query, '\s+', ' ', 'g'), 110)
        FROM pg_stat_statements WHERE calls >= $COUNT / 10 ORDER BY calls DESC LIMIT 16"
    psql -qAt postgres -c "
        SELECT 'all statements per flow: ' || to_char(sum(calls)::numeric / $COUNT, 'FM990.0')
        FROM pg_stat_statements"
}

wait_for() {
    for _ in $(seq 600); do
        curl -fsS "$1" > /dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "no answer from $1" >&2
    return 1
}
stop_servers() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    PIDS=()
}
# Unlimited client rate: the bench's one client is the whole load.
LIMITS=(--client-requests-per-minute 0 --client-max-pending 0)
PUBLIC="http://localhost:$P1"
serve() { # PORT DATA_DIR ARGS...
    local port=$1 dir=$2
    shift 2
    "$SERVER" serve --data-dir "$dir" --listen "127.0.0.1:$port" --public-url "$PUBLIC" \
        --rp-id localhost --allowed-origin "$PUBLIC" \
        "${LIMITS[@]}" "$@" >> "$WORK/serve.log" 2>&1 &
    PIDS+=($!)
    wait_for "http://127.0.0.1:$port/healthz"
}
# CPU seconds used so far by the processes named (utime + stime of each, from /proc).
ticks() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
pg_pids() { pgrep -u postgres -d ' ' postgres || true; }
weed_pid() { cat "$WORK/s3/weed.pid"; }
HZ=$(getconf CLK_TCK)
# Runs flows() and prints "flows/s server-ms pg-ms s3-ms" (CPU milliseconds per flow of the
# servers, PostgreSQL's backends and the S3 server).
measured() { # PORT DATA_DIR COUNT CONCURRENCY
    local s0 p0 w0 rate s1 p1 w1
    s0=$(ticks "${PIDS[@]}") p0=$(ticks $(pg_pids)) w0=$(ticks $(weed_pid))
    rate=$(flows "$@")
    s1=$(ticks "${PIDS[@]}") p1=$(ticks $(pg_pids)) w1=$(ticks $(weed_pid))
    awk -v r="$rate" -v n="$3" -v hz="$HZ" -v s=$((s1 - s0)) -v p=$((p1 - p0)) -v w=$((w1 - w0)) \
        'BEGIN { printf "%s %.2f %.2f %.2f\n", r, 1000 * s / hz / n, 1000 * p / hz / n, 1000 * w / hz / n }'
}
flows() { # PORT DATA_DIR COUNT CONCURRENCY: prints flows/s
    "$B/countersign-bench" flow --url "http://127.0.0.1:$1" --origin "$PUBLIC" --data-dir "$2" \
        --count "$3" --concurrency "$4" | grep -E "^flow:" | sed -E 's/.* ([0-9.]+) flows\/s.*/\1/'
}

echo "round | embedded flows/s (server CPU ms/flow) | shared, 1 instance (server / PostgreSQL / S3 CPU ms per flow) | shared, 2 instances | ratio 1 | ratio 2"
for r in $(seq "$ROUNDS"); do
    rm -rf "$WORK/e" "$WORK/keys" "$WORK/s1" "$WORK/s2"
    serve $P1 "$WORK/e"
    read -r embedded e_cpu _ _ < <(measured $P1 "$WORK/e" "$COUNT" "$C")
    stop_servers

    # Keys made once by an embedded start, copied to each instance.
    serve $P1 "$WORK/keys" --log-only
    stop_servers
    db="flows_${r}_$$"
    psql -q -c "CREATE DATABASE $db" postgres
    url="postgres://$PGUSER@$PGHOST:$PGPORT/$db"
    if [ "${PG_SOCKET:-}" = 1 ]; then
        url="postgres://$PGUSER@$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$COUNTERSIGN_TEST_PG_DIR/run"):$PGPORT/$db"
    fi
    tiles="$COUNTERSIGN_TEST_S3_BUCKET/flows-$r-$$"
    cp -r "$WORK/keys" "$WORK/s1"
    serve $P1 "$WORK/s1" --database "$url" --tiles "$tiles"
    if [ "${STATEMENTS:-}" = 1 ]; then
        psql -qAt -c "SELECT pg_stat_statements_reset()" postgres > /dev/null
    fi
    if [ -n "${PERF:-}" ]; then
        perf record -q -F 999 -g -o "$PERF.r$r" -p "${PIDS[0]}" 2> /dev/null &
        perf_pid=$!
    fi
    if [ "${SYSCALLS:-}" = 1 ]; then
        perf stat -x, -o "$WORK/syscalls" -p "${PIDS[0]}" -e syscalls:sys_enter_sendto \
            -e syscalls:sys_enter_recvfrom -e syscalls:sys_enter_writev &
        stat_pid=$!
    fi
    read -r one s_cpu s_pg s_s3 < <(measured $P1 "$WORK/s1" "$COUNT" "$C")
    if [ -n "${PERF:-}" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
    fi
    if [ "${SYSCALLS:-}" = 1 ]; then
        kill -INT "$stat_pid"
        wait "$stat_pid" || true
        awk -F, -v n="$COUNT" -v r="$r" '$3 ~ /syscalls/ {
            sub("syscalls:sys_enter_", "", $3); printf "round %s, one shared instance: %s %.1f per flow\n", r, $3, $1 / n }' \
            "$WORK/syscalls"
    fi
    stop_servers
    if [ "${STATEMENTS:-}" = 1 ]; then
        echo "round $r, one shared instance: statements per flow"
        statements
    fi

    db2="flows2_${r}_$$"
    psql -q -c "CREATE DATABASE $db2" postgres
    url2="${url%/*}/$db2"
    cp -r "$WORK/s1" "$WORK/s2"
    serve $P1 "$WORK/s1" --database "$url2" --tiles "$tiles-2"
    serve $P2 "$WORK/s2" --database "$url2" --tiles "$tiles-2"
    half=$((COUNT / 2))
    flows $P1 "$WORK/s1" "$half" $((C / 2)) > "$WORK/f1" &
    f1=$!
    flows $P2 "$WORK/s2" "$half" $((C / 2)) > "$WORK/f2" &
    f2=$!
    wait $f1 $f2
    two=$(awk '{ s += $1 } END { printf "%.1f", s }' "$WORK/f1" "$WORK/f2")
    stop_servers
    awk -v r="$r" -v e="$embedded" -v o="$one" -v t="$two" -v ec="$e_cpu" -v sc="$s_cpu" \
        -v sp="$s_pg" -v ss="$s_s3" 'BEGIN {
        printf "%s | %.1f (%.2f) | %.1f (%.2f / %.2f / %.2f) | %.1f | %.0f%% | %.0f%%\n",
            r, e, ec, o, sc, sp, ss, t, 100 * o / e, 100 * t / e }'
done
