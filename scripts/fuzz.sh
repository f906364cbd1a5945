#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (cargo fuzz), one at a time, each for SECONDS_PER_TARGET
# (default 600), after replaying fuzz/regressions/. Not part of scripts/test.sh.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [target...]
#   scripts/fuzz.sh replay            # only replay fuzz/regressions/ (a few seconds)
#
# Prints per target: total execs, exec/s, cov and ft (libFuzzer's final stats) and corpus size,
# as a table; exits non-zero if a target crashed, naming the crash artifact. Environment:
# FUZZ_SANITIZER (default address), FUZZ_JOBS (default 1), FUZZ_LOG_DIR (default
# $HOME/.cache/countersign/fuzz-logs), FUZZ_BIN (a directory of already built targets: no build,
# for fuzzing one target while cargo builds another).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/env.sh
# The fuzz build has its own target directory: sanitizer flags would rebuild everything in the
# main one.
export CARGO_TARGET_DIR="$HOME/.cache/countersign/fuzz-target"
# cargo fuzz needs nightly options (-Zsanitizer, sancov passes); the stable toolchain takes them
# with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
SANITIZER="${FUZZ_SANITIZER:-address}"
JOBS="${FUZZ_JOBS:-1}"
LOGS="${FUZZ_LOG_DIR:-$HOME/.cache/countersign/fuzz-logs}"
mkdir -p "$LOGS"

VERIFIER_TARGETS=(entry cose_key attestation client_data statement bundle note_checkpoint tlog_proof
    tlog_policy approval_policy approval_decimal witness_request witness_add)
SERVER_TARGETS=(tile_path ciba_form)
ALL_TARGETS=("${VERIFIER_TARGETS[@]}" "${SERVER_TARGETS[@]}")

# Largest input per target: a little above what the parser accepts or real inputs reach.
max_len() {
    case "$1" in
        entry) echo 4096 ;;
        cose_key) echo 2200 ;;
        attestation) echo 8192 ;;
        client_data) echo 4200 ;;
        statement) echo 8192 ;;
        bundle) echo 16384 ;;
        note_checkpoint) echo 4096 ;;
        tlog_proof) echo 8192 ;;
        tlog_policy) echo 8192 ;;
        approval_policy) echo 8192 ;;
        approval_decimal) echo 128 ;;
        witness_request) echo 8192 ;;
        witness_add) echo 8192 ;;
        tile_path) echo 128 ;;
        ciba_form) echo 4096 ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

MODE=fuzz
SECONDS_PER_TARGET=600
if [[ $# -gt 0 && $1 == replay ]]; then
    MODE=replay
    shift
elif [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    SECONDS_PER_TARGET=$1
    shift
fi
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL_TARGETS[@]}")

# The server feature (RocksDB) only when a server target is asked for.
FEATURES=()
for t in "${TARGETS[@]}"; do
    for s in "${SERVER_TARGETS[@]}"; do
        [[ $t == "$s" ]] && FEATURES=(--features server)
    done
done

cd fuzz
python3 seed.py
if [[ -n ${FUZZ_BIN:-} ]]; then
    BIN=$FUZZ_BIN
else
    cargo fuzz build -s "$SANITIZER" "${FEATURES[@]}"
    BIN="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
fi

# Replay every regression input: each must now run clean.
failed=0
for t in "${TARGETS[@]}"; do
    dir="regressions/$t"
    [[ -d $dir ]] && compgen -G "$dir/*" >/dev/null || continue
    if "$BIN/$t" -rss_limit_mb=2048 "$dir"/* >"$LOGS/$t.replay.log" 2>&1; then
        echo "replay $t: $(ls "$dir" | wc -l) inputs ok"
    else
        echo "replay $t: FAILED (log: $LOGS/$t.replay.log)"
        failed=1
    fi
done
[[ $MODE == replay ]] && exit "$failed"

SUMMARY="$LOGS/summary-$(date -u +%Y%m%dT%H%M%SZ)-$$.txt"
printf '%-16s %12s %8s %7s %7s %8s  %s\n' target execs exec/s cov ft corpus result >"$SUMMARY"
for t in "${TARGETS[@]}"; do
    log="$LOGS/$t.log"
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "fuzzing $t for ${SECONDS_PER_TARGET}s (log: $log)"
    result=ok
    # corpus/<t> collects what libFuzzer finds; crashes land in artifacts/<t>/.
    # -jobs, even -jobs=1, makes libFuzzer fork workers that log to fuzz-N.log: only past 1.
    par=()
    [[ $JOBS -gt 1 ]] && par=(-jobs="$JOBS" -workers="$JOBS")
    if ! "$BIN/$t" "corpus/$t" -max_total_time="$SECONDS_PER_TARGET" "${par[@]}" \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len="$(max_len "$t")" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$ROOT/fuzz/artifacts/$t/" >"$log" 2>&1; then
        artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | cut -d' ' -f5)
        result="CRASH ${artifact:-see $log}"
        failed=1
    fi
    # With -jobs > 1 libFuzzer writes fuzz-N.log files; the stats come from the last line.
    [[ $JOBS -gt 1 ]] && cat fuzz-*.log >>"$log" 2>/dev/null && rm -f fuzz-*.log
    execs=$(grep -o 'stat::number_of_executed_units:[[:space:]]*[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
    rate=$(grep -o 'stat::average_exec_per_sec:[[:space:]]*[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
    last=$(grep -E '#[0-9]+.*(cov|ft):' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | awk '{print $2}')
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | awk '{print $2}')
    n=$(find "corpus/$t" -type f | wc -l)
    printf '%-16s %12s %8s %7s %7s %8s  %s\n' "$t" "$execs" "$rate" "${cov:--}" "${ft:--}" "$n" "$result" \
        | tee -a "$SUMMARY"
done
echo
cat "$SUMMARY"
exit "$failed"
