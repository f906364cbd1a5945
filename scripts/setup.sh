#!/usr/bin/env bash
# Installs what building and testing Countersign needs on a Debian machine with a Rust
# toolchain. Idempotent: a second run finds everything present and does nothing.
#   clang, libclang-dev  bindgen for the bundled RocksDB (librocksdb-sys)
#   ccache               caches the RocksDB C++ objects between builds and profiles
#   golang-go, golang-golang-x-mod-dev
#                        Go's sumdb/tlog and sumdb/note, the independent check of our vectors
#                        and log (scripts/go-check.sh, testvectors/go/)
#   postgresql           a throwaway PostgreSQL for the shared driver's tests (scripts/pg-server.sh);
#                        any installed major version will do
#   rustup targets wasm32-unknown-unknown (the verifier in WebAssembly, verifier/wasm) and
#                  thumbv7em-none-eabihf (a bare-metal target: the verifier builds without std)
set -euo pipefail

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need=()
for pkg in clang libclang-dev ccache golang-go golang-golang-x-mod-dev; do
    installed "$pkg" || need+=("$pkg")
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

targets=()
installed_targets=$(rustup target list --installed)
for t in wasm32-unknown-unknown thumbv7em-none-eabihf; do
    grep -qx "$t" <<<"$installed_targets" || targets+=("$t")
done
if ((${#targets[@]})); then
    echo "setup: adding rust targets ${targets[*]}" >&2
    rustup target add "${targets[@]}"
fi
