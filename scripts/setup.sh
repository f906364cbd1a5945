#!/usr/bin/env bash
# Installs what building and testing Countersign needs on a Debian machine with a Rust
# toolchain. Idempotent: a second run finds everything present and does nothing.
#   clang, libclang-dev  bindgen for the bundled RocksDB (librocksdb-sys)
#   ccache               caches the RocksDB C++ objects between builds and profiles
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v ccache >/dev/null 2>&1 || need+=(ccache)

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
