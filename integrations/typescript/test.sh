#!/usr/bin/env bash
# Builds @countersign/sdk and runs its tests against a live countersign server.
# Idempotent: `npm ci` only when node_modules is missing or older than package-lock.json.
# The server binary: COUNTERSIGN_BIN, else $CARGO_TARGET_DIR/debug/countersign
# (CARGO_TARGET_DIR defaults to ~/.cache/countersign/target).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

bin="${COUNTERSIGN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/countersign/target}/debug/countersign}"
if [ ! -x "$bin" ]; then
  echo "test.sh: no server binary at $bin (cargo build -p countersign, or set COUNTERSIGN_BIN)" >&2
  exit 1
fi

rm -rf dist
npx --no-install tsc -p tsconfig.json
# The public types, as a TypeScript user sees them through the package's exports.
npx --no-install tsc -p test/types/tsconfig.json
node --test --test-concurrency=2 test/*.test.mjs
