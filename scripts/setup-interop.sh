#!/usr/bin/env bash
# Installs what the interop tests in interop/ need. Idempotent: when everything is present it
# only checks and exits 0 in well under a second.
#   node >= 20       the machine's Node.js (node's test runner, WebCrypto Ed25519)
#   chromium         Debian's Chromium for the browser test (npm cannot download browsers here;
#                    playwright-core drives /usr/bin/chromium)
#   openssl          the Auth0 test's TLS test CA (Debian's openssl, usually present)
#   interop/node_modules   `npm ci` from interop/package-lock.json (exact versions)
#   the WebAssembly verifier  $CARGO_TARGET_DIR/wasm32-unknown-unknown/release/, built if missing
#   the binaries           $CARGO_TARGET_DIR/debug/countersign and countersign-verify, built (dev
#                          profile) only if missing, or always with COUNTERSIGN_INTEROP_BUILD=1;
#                          skipped when COUNTERSIGN_BIN (and COUNTERSIGN_VERIFY_BIN) are set
# chromium-driver is not needed: playwright-core talks to Chromium over the DevTools protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup-interop: $*" >&2; }

# --- Node.js ---
apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Debian's nodejs and npm (none found on PATH)"
    apt_install nodejs npm || true
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node and npm are required (Node.js 20 or later) and could not be installed with apt"
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    say "Node.js $(node --version) is too old: the interop tests need 20 or later (Debian 13's"
    say "nodejs package is 20; on older releases install Node.js 20 from your usual source)"
    exit 1
fi

# --- Chromium (Debian package) ---
chromium_bin="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
    say "installing Debian's chromium"
    apt_install chromium
    [ -x "$chromium_bin" ] || { say "chromium did not install to $chromium_bin"; exit 1; }
fi

# --- openssl (the Auth0 test makes its TLS test CA and localhost certificate with it) ---
if ! command -v openssl >/dev/null 2>&1; then
    say "installing Debian's openssl"
    apt_install openssl
    command -v openssl >/dev/null 2>&1 || { say "openssl did not install"; exit 1; }
fi

# --- npm packages (exact versions from the lockfile) ---
lock_sum=$(sha256sum interop/package-lock.json | cut -d' ' -f1)
stamp=interop/node_modules/.countersign-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    say "npm ci in interop/"
    (cd interop && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
fi

# --- the binaries under test (dev profile) ---
build() { # build <env var that overrides it> <package> <binary>
    [ -z "${!1:-}" ] || return 0
    if [ ! -x "$CARGO_TARGET_DIR/debug/$3" ] || [ "${COUNTERSIGN_INTEROP_BUILD:-0}" = 1 ]; then
        say "building $3 (dev profile)"
        cargo build -p "$2" --bin "$3" --locked
    fi
}
source scripts/env.sh
build COUNTERSIGN_BIN countersign countersign
build COUNTERSIGN_VERIFY_BIN countersign-verify countersign-verify
# The verifier in WebAssembly, which the /verify and /log pages load (the server finds it in
# $CARGO_TARGET_DIR/wasm32-unknown-unknown/release/ beside its own build).
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/countersign_verifier_wasm.wasm"
if [ ! -f "$wasm" ] || [ "${COUNTERSIGN_INTEROP_BUILD:-0}" = 1 ]; then
    say "building the WebAssembly verifier"
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
    cargo build -p countersign-verifier-wasm --target wasm32-unknown-unknown --release --locked
fi
