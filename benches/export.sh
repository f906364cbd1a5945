#!/usr/bin/env bash
# The export archive verifier (`countersign-verify export`, spec/export.md) on a large archive:
# writes an archive of N decisions (ES256 passkeys; N/1000 withheld), verifies it with
# /usr/bin/time -v (wall time, CPU, peak RSS), and measures the bare ES256 assertion check rate
# on all cores with the same backend for comparison: half of N checks just before the
# verification and half just after, so that a host whose speed drifts over minutes (as shared
# machines do: 25% between two runs a minute apart) weighs on both sides alike; the ratio is
# the verification's decisions/s over the bare rate of the two halves together. Usage:
# benches/export.sh [N] [WORK_DIR]
# (REUSE=1 verifies the archive already in WORK_DIR/archive instead of writing a new one: a
# million decisions take about five minutes to write. VERIFY_BIN=PATH verifies with another
# build of countersign-verify, for an A/B against the same bare checks.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N="${1:-100000}"
WORK="${2:-$(mktemp -d)}"
cargo build --release -p countersign-verify --example export_archive --bin countersign-verify
R="$CARGO_TARGET_DIR/release"
V="${VERIFY_BIN:-$R/countersign-verify}"
if [ -n "${REUSE:-}" ] && [ -f "$WORK/archive/MANIFEST.json" ]; then
    KEY="$(sed -n 's/^  "log_key": "\(.*\)",$/\1/p' "$WORK/archive/MANIFEST.json")"
else
    rm -rf "$WORK/archive"
    KEY="$("$R/examples/export_archive" write "$WORK/archive" "$N" es256)"
fi
du -sh "$WORK/archive"
HALF=$(( (N + 1) / 2 ))
BEFORE="$("$R/examples/export_archive" bare "$HALF")"
echo "before: $BEFORE"
/usr/bin/time -v "$V" export "$WORK/archive" --log-key "$KEY" \
    --rp-id approve.countersign.test 2> "$WORK/time.txt" | tee "$WORK/verify.out"
grep -E "Elapsed|User time|System time|Percent of CPU|Maximum resident" "$WORK/time.txt"
AFTER="$("$R/examples/export_archive" bare "$HALF")"
echo "after: $AFTER"
# The decisions checked (from the summary line) over the wall time, against the bare checks of
# both halves over their time.
python3 - "$WORK/time.txt" "$BEFORE" "$AFTER" "$WORK/verify.out" <<'PY'
import re, sys
timing, before, after = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", timing).group(1)
secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
decisions = int(re.search(r"(\d+) decisions", open(sys.argv[4]).read()).group(1))
bare = [re.match(r"(\d+) ES256 assertion checks on \d+ threads in ([\d.]+) s", b).groups()
        for b in (before, after)]
bare_rate = sum(int(n) for n, _ in bare) / sum(float(t) for _, t in bare)
rate = decisions / secs
print(f"verification: {decisions} decisions in {secs:.2f} s = {rate:,.0f}/s; bare ES256 "
      f"{bare_rate:,.0f}/s (before and after); ratio {rate / bare_rate:.2f} (target 0.80)")
PY
