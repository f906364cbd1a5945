#!/usr/bin/env bash
# The export archive verifier (`countersign-verify export`, spec/export.md) on a large archive:
# writes an archive of N decisions (ES256 passkeys; N/1000 withheld), verifies it with
# /usr/bin/time -v (wall time, CPU, peak RSS), and measures the bare ES256 assertion check rate
# on all cores with the same backend for comparison. Usage: benches/export.sh [N] [WORK_DIR]
# (REUSE=1 verifies the archive already in WORK_DIR/archive instead of writing a new one: a
# million decisions take about five minutes to write.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N="${1:-100000}"
WORK="${2:-$(mktemp -d)}"
cargo build --release -p countersign-verify --example export_archive --bin countersign-verify
R="$CARGO_TARGET_DIR/release"
if [ -n "${REUSE:-}" ] && [ -f "$WORK/archive/MANIFEST.json" ]; then
    KEY="$(sed -n 's/^  "log_key": "\(.*\)",$/\1/p' "$WORK/archive/MANIFEST.json")"
else
    rm -rf "$WORK/archive"
    KEY="$("$R/examples/export_archive" write "$WORK/archive" "$N" es256)"
fi
du -sh "$WORK/archive"
/usr/bin/time -v "$R/countersign-verify" export "$WORK/archive" --log-key "$KEY" \
    --rp-id approve.countersign.test 2> "$WORK/time.txt"
grep -E "Elapsed|User time|System time|Percent of CPU|Maximum resident" "$WORK/time.txt"
"$R/examples/export_archive" bare "$N"
