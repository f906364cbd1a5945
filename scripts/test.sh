#!/usr/bin/env bash
# Runs every check and test of the workspace, as CI does. Installs what it needs first.
#   ./scripts/test.sh            everything (about 5 minutes warm; a cold first build adds ~25)
# Slow load and soak runs are not part of it: see benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
mkdir -p "$CARGO_TARGET_DIR"

started=$SECONDS
step() {
    local name=$1
    shift
    echo "==> $name" >&2
    local t=$SECONDS
    "$@"
    echo "    $name: ok ($((SECONDS - t)) s)" >&2
}

step "rustfmt" cargo fmt --all --check
step "build" cargo build --workspace --all-targets --locked
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "verifier without std (no_std + alloc)" \
    cargo build -p countersign-verifier --no-default-features --locked
# The no_std proof: a bare-metal target has no std at all, so any dependency that needs it fails
# to build here.
step "verifier on a bare-metal target (thumbv7em-none-eabihf, no_std)" \
    cargo build -p countersign-verifier --no-default-features --target thumbv7em-none-eabihf --locked
step "verifier in WebAssembly (wasm32-unknown-unknown, release)" \
    cargo build -p countersign-verifier-wasm --target wasm32-unknown-unknown --release --locked
step "verifier in WebAssembly through its JavaScript loader (Node)" \
    env COUNTERSIGN_VERIFIER_WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/countersign_verifier_wasm.wasm" \
    node --test verifier/wasm/test/
step "the WebAssembly bundle benchmark runs (benches/wasm-bundle.mjs)" node benches/wasm-bundle.mjs
log_knows_no_front_end() {
    # The layering verifier <- log <- approvals <- binary, one way: the log's dependency graph
    # holds neither the front end nor the binary.
    local found
    found=$(cargo tree -p countersign-log -e normal,build --prefix none --locked |
        grep -E '^countersign(-approvals)? ' | sort -u || true)
    if [ -n "$found" ]; then
        echo "countersign-log depends on: $found" >&2
        return 1
    fi
}
step "the log depends on no front end" log_knows_no_front_end
step "no import circle within a crate; no axum below the front end's handlers" \
    python3 scripts/check-layers.py
step "verifier tests with the pure-Rust backend only" \
    cargo test -p countersign-verifier --locked
step "rustdoc" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
step "test vectors match their generator" \
    cargo run -q -p countersign-testvectors --locked -- --check
step "spec examples match the code" \
    cargo run -q -p countersign-spec-examples --locked -- --check
step "benchmarks compile and run once" \
    cargo bench --profile dev -p countersign-benches --bench verifier --locked -- --test
# The export test (log-server/cli/tests/it/export.rs) leaves its archives here, for the
# archive verifier and the report's browser test below: code that did not write them.
export COUNTERSIGN_EXPORT_ARCHIVES="$CARGO_TARGET_DIR/export-archives"
rm -rf "$COUNTERSIGN_EXPORT_ARCHIVES"
mkdir -p "$COUNTERSIGN_EXPORT_ARCHIVES"
# A real S3 server (SeaweedFS) for the tile mirror's tests (log-server/tests/it/mirror.rs), an
# Azure Blob Storage emulator (Azurite) for the shared driver's az:// test, and a real PostgreSQL
# for the shared driver's (log-server/tests/it/pg.rs), all stopped when this script exits.
S3_DIR=$(mktemp -d)
AZ_DIR=$(mktemp -d)
PG_DIR=$(mktemp -d)
trap 'bash scripts/s3-server.sh stop "$S3_DIR"; bash scripts/azure-server.sh stop "$AZ_DIR"; bash scripts/pg-server.sh stop "$PG_DIR"; rm -rf "$S3_DIR" "$AZ_DIR" "$PG_DIR"' EXIT
step "S3 server for the tile mirror tests (SeaweedFS)" bash scripts/s3-server.sh start "$S3_DIR"
source "$S3_DIR/env"
step "Azure Blob Storage emulator for the az:// test (Azurite)" bash scripts/azure-server.sh start "$AZ_DIR"
source "$AZ_DIR/env"
step "PostgreSQL for the shared driver tests" bash scripts/pg-server.sh start "$PG_DIR"
source "$PG_DIR/env"
step "workspace tests" cargo test --workspace --locked
real_exports_verify() {
    local a=$COUNTERSIGN_EXPORT_ARCHIVES key
    # Each archive beside its log's key (`<name>.vkey`); `quorum` holds 2-of-3 approvals.
    for x in remote offline range.tar quorum; do
        key=$(cat "$a/$x.vkey")
        cargo run -q -p countersign-verify --locked -- export "$a/$x" --log-key "$key" \
            --rp-id approve.test
    done
    key=$(cat "$a/remote.vkey")
    # One changed byte of a statement: exit 1, not 0 and not 2.
    cp -r "$a/remote" "$a/tampered"
    sed -i '1s/"approve"/"deny"/' "$a/tampered/statements.jsonl"
    local rc=0
    cargo run -q -p countersign-verify --locked -- export "$a/tampered" --log-key "$key" \
        --rp-id approve.test >/dev/null 2>&1 || rc=$?
    if [ "$rc" != 1 ]; then
        echo "a tampered archive exited $rc, not 1" >&2
        return 1
    fi
}
step "real exports verify with countersign-verify export" real_exports_verify
step "Go's sumdb/tlog and note check our vectors and a live log" bash scripts/go-check.sh
step "interop: openid-client and headless Chromium" \
    bash -c 'bash scripts/setup-interop.sh && cd interop && node --test'
step "MCP server with the official TypeScript client and the conformance suite" \
    bash integrations/mcp/test.sh
step "TypeScript SDK against a live server (ai, LangChain.js, LangGraph)" \
    bash integrations/typescript/test.sh
step "Python SDK against a live server (pytest)" bash integrations/python/test.sh
echo "all checks passed in $((SECONDS - started)) s" >&2
