#!/usr/bin/env bash
# Starts the Countersign server on its embedded store (./countersign-data by default),
# installing the build prerequisites first. Arguments go to `countersign serve`, e.g.
#   ./scripts/serve.sh --listen 127.0.0.1:8080 --data-dir ./countersign-data
# The first build compiles the bundled RocksDB (about 20 minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# The authorization_details types agents may ask for (discovery lists them); a server given
# none accepts any type. Set the variable (empty: any type), or pass --authorization-details-type,
# to change it.
export COUNTERSIGN_AUTHORIZATION_DETAILS_TYPES="${COUNTERSIGN_AUTHORIZATION_DETAILS_TYPES-payment_initiation}"
# The verifier compiled to WebAssembly, which the /verify and /log pages run in the browser; the
# server finds it beside its build (target/wasm32-unknown-unknown/release/).
cargo build --release --locked -p countersign-verifier-wasm --target wasm32-unknown-unknown
exec cargo run --release --locked -p countersign --bin countersign -- serve "$@"
