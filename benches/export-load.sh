#!/usr/bin/env bash
# Append latency while an auditor exports from the running server (issue 14's target: the append
# p99 with a concurrent `countersign export --url` within 2x its value without).
#
# Starts `countersign serve` on a fresh data directory, fills the log with PREFILL decisions
# (batches, as fast as it goes), then runs the same open-loop append load (RATE decisions/s,
# COUNT decisions, `countersign-bench append --rate`) three times: alone, with exports of the
# whole log running back to back for its whole duration, and alone again. The exporter runs
# at the same priority as everything else on the same cores unless EXPORT_NICE is set (e.g.
# EXPORT_NICE=19, as if it ran on the auditor's machine); the archives are written under
# EXPORT_DIR (default WORK_DIR; e.g. /dev/shm to keep their writes off the server's disk).
# EXPORT_BIN (default this tree's `countersign`) runs the exports with another build, to compare
# two exporters against the same server; SERVER_BIN likewise runs the server with another build.
#
# ROUNDS (default 1) alternates that many (with exports, alone) phases after the first alone one
# and compares the medians of their p99s.
#
# Usage: benches/export-load.sh [PREFILL] [RATE] [COUNT] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
PREFILL="${1:-100000}"
RATE="${2:-1500}"
COUNT="${3:-30000}"
WORK="${4:-$(mktemp -d)}"
PORT="${PORT:-18097}"
if [ -n "${TRACE_SYNCS:-}" ] && ! perf trace -s -e fsync true > /dev/null 2>&1; then
    echo "TRACE_SYNCS needs \`perf trace\` working here (Debian's linux-perf, run as root)" >&2
    exit 2
fi
cargo build --release -p countersign -p countersign-benches
B="$CARGO_TARGET_DIR/release"
URL="http://127.0.0.1:$PORT"
EXPORT_DIR="${EXPORT_DIR:-$WORK}"
rm -rf "$WORK/data" "$EXPORT_DIR"/export.* "$WORK/exports.txt"
mkdir -p "$WORK" "$EXPORT_DIR"
"${SERVER_BIN:-$B/countersign}" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
EXPORTER=
cleanup() {
    if [ -n "$EXPORTER" ]; then
        pkill -P "$EXPORTER" 2> /dev/null || true
        kill "$EXPORTER" 2> /dev/null || true
    fi
    kill "$SERVER" 2> /dev/null || true
    wait 2> /dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
    curl -fsS "$URL/checkpoint" > /dev/null 2>&1 && break
    sleep 0.1
done
bench() {
    "$B/countersign-bench" append --url "$URL" --origin "http://localhost:$PORT" \
        --data-dir "$WORK/data" "$@"
}
echo "== prefill: $PREFILL decisions"
bench --count "$PREFILL" --concurrency 4 --batch 128 | tail -2
"$B/countersign" auditor add export-bench --url "$URL" --data-dir "$WORK/data" \
    | grep -Eo '[A-Za-z0-9_-]{32,}' | head -1 > "$WORK/auditor.token"
chmod 600 "$WORK/auditor.token"

# TRACE_SYNCS=1 also times the server's fsync and fdatasync calls in each phase (`perf trace -s`,
# as root): how long the WAL syncs behind each acknowledged append took.
load() {
    local tracer=
    if [ -n "${TRACE_SYNCS:-}" ]; then
        rm -f "$WORK/syncs.txt"
        perf trace -s -e fsync,fdatasync -p "$SERVER" -o "$WORK/syncs.txt" &
        tracer=$!
        sleep 0.5
    fi
    bench --count "$COUNT" --rate "$RATE" --concurrency 64 | grep -E "decisions/s|latency" \
        | tee -a "$WORK/phases.txt"
    if [ -n "$tracer" ]; then
        kill -INT "$tracer" 2> /dev/null || true
        wait "$tracer" 2> /dev/null || true
        if [ ! -s "$WORK/syncs.txt" ]; then
            echo "  perf trace recorded nothing for this phase" | tee -a "$WORK/phases.txt"
            return
        fi
        awk '$1 == "fdatasync" || $1 == "fsync" { n[$1] += $2; t[$1] += $4; if ($7 > m[$1]) m[$1] = $7 }
            END { for (c in n) printf "  server %s: %d calls, avg %.2f ms, max %.2f ms\n", c, n[c], t[c] / n[c], m[c] }' \
            "$WORK/syncs.txt" | tee -a "$WORK/phases.txt"
    fi
}
p99s() { # the p99 of each phase of one kind, in ms, one per line
    awk -v kind="$1" '$1 == "==" { k = $2 } /p99/ && k == kind {
        for (i = 1; i <= NF; i++) if ($i == "p99") { print $(i + 1) } }' "$WORK/phases.txt"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rm -f "$WORK/phases.txt"
# ROUNDS rounds of (with exports, alone) after a first phase alone: the unloaded p99 of one load
# varies from run to run on a small virtual machine (2.8 to 6.3 ms in benches/README.md), so
# several phases of each kind, alternated, are compared by their medians.
ROUNDS="${ROUNDS:-1}"
echo "== alone $RATE/s for $COUNT decisions" | tee -a "$WORK/phases.txt"
load
for round in $(seq "$ROUNDS"); do
    echo "== with $RATE/s for $COUNT decisions, exports of the whole log back to back (round $round)" \
        | tee -a "$WORK/phases.txt"
    rm -f "$WORK/exports.txt"
    (
        n=0
        while true; do
            n=$((n + 1))
            start=$(date +%s.%N)
            ${EXPORT_NICE:+nice -n "$EXPORT_NICE"} "${EXPORT_BIN:-$B/countersign}" export --url "$URL" \
                --token-file "$WORK/auditor.token" --out "$EXPORT_DIR/export.$n" --quiet > /dev/null
            end=$(date +%s.%N)
            echo "export $n: $(du -sh "$EXPORT_DIR/export.$n" | cut -f1) in $(awk "BEGIN { printf \"%.1f\", $end - $start }") s" \
                >> "$WORK/exports.txt"
            rm -rf "$EXPORT_DIR/export.$n"
        done
    ) &
    EXPORTER=$!
    sleep 1
    load
    pkill -P "$EXPORTER" 2> /dev/null || true
    kill "$EXPORTER" 2> /dev/null || true
    wait "$EXPORTER" 2> /dev/null || true
    EXPORTER=
    rm -rf "$EXPORT_DIR"/export.*
    cat "$WORK/exports.txt" 2> /dev/null || echo "no export finished during the load"
    echo "== alone $RATE/s for $COUNT decisions (again)" | tee -a "$WORK/phases.txt"
    load
done
alone=$(p99s alone | median)
with=$(p99s with | median)
echo "== p99 alone: $(p99s alone | tr '\n' ' ')ms; with the exports: $(p99s with | tr '\n' ' ')ms"
echo "== medians: alone $alone ms, with $with ms: $(awk "BEGIN { printf \"%.2f\", $with / $alone }")x (target 2x)"
