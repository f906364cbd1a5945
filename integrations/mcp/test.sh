#!/usr/bin/env bash
# Tests of countersign-mcp with the official MCP TypeScript client (stdio and streamable HTTP,
# against a live countersign server) and the official MCP conformance suite (server scenarios).
# Idempotent set-up first, each step only when needed:
#   node >= 20                 the machine's Node.js
#   node_modules               `npm ci` from package-lock.json, when the lockfile changed
#   countersign-mcp            $CARGO_TARGET_DIR/debug/countersign-mcp, built when missing or older
#                              than its sources (skipped when COUNTERSIGN_MCP_BIN is set)
#   countersign                COUNTERSIGN_BIN, else $CARGO_TARGET_DIR/debug/countersign, built
#                              when missing
# Exits non-zero on any failure. Unit tests: `cargo test -p countersign-mcp`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
source scripts/env.sh

say() { echo "countersign-mcp test: $*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node and npm (Node.js 20 or later) are required"
    exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    say "Node.js $(node --version) is too old: 20 or later is needed"
    exit 1
fi

lock_sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
stamp="$here/node_modules/.countersign-lock-sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    say "npm ci in integrations/mcp/"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
fi

if [ -z "${COUNTERSIGN_MCP_BIN:-}" ]; then
    bin="$CARGO_TARGET_DIR/debug/countersign-mcp"
    if [ ! -x "$bin" ] || [ -n "$(find "$here/src" "$here/Cargo.toml" Cargo.lock -newer "$bin" -print -quit)" ]; then
        say "building countersign-mcp"
        cargo build -p countersign-mcp --locked
    fi
fi
if [ -z "${COUNTERSIGN_BIN:-}" ] && [ ! -x "$CARGO_TARGET_DIR/debug/countersign" ]; then
    say "building the countersign server"
    cargo build -p countersign --bin countersign --locked
fi

cd "$here"
node --test test/*.test.mjs
