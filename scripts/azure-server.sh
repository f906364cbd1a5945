#!/usr/bin/env bash
# A throwaway Azure Blob Storage server for the tests: Azurite (npm package azurite, Microsoft's
# emulator) on a free loopback port, its data under DIR, stopped by PID.
#   scripts/azure-server.sh start DIR   starts it (installing azurite, and azure-storage-blob
#                                       from PyPI to create the container, if missing), creates
#                                       the container countersign-test, writes DIR/env (the
#                                       AZURE_* variables object_store reads, and
#                                       COUNTERSIGN_TEST_AZ_CONTAINER) to source
#   scripts/azure-server.sh stop DIR    stops it
# The account is the emulator's well-known development account (devstoreaccount1).
set -euo pipefail
# shellcheck source=scripts/server-lib.sh
source "$(dirname "$0")/server-lib.sh"
server_args "$@"
# The last release that runs on Node.js 20 (3.36 and later need Node.js 21 or 22).
AZURITE_VERSION=3.35.0
AZURE_BLOB_VERSION=12.31.1
cache="${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}/azurite-$AZURITE_VERSION"
# The emulator's published development account and key (Azurite's README, "Default Storage
# Account"); not a secret.
account=devstoreaccount1
account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

stop() {
    stop_pidfile "$dir/azurite.pid"
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi

if [ ! -x "$cache/node_modules/.bin/azurite-blob" ]; then
    echo "azure-server: installing azurite@$AZURITE_VERSION" >&2
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
fi
if ! python3 -c 'import azure.storage.blob' 2>/dev/null; then
    echo "azure-server: installing azure-storage-blob==$AZURE_BLOB_VERSION" >&2
    python3 -m pip install -q --disable-pip-version-check \
        "azure-storage-blob==$AZURE_BLOB_VERSION" >&2
fi

mkdir -p "$dir/data"
stop
port=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
')
nohup "$cache/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$dir/data" --skipApiVersionCheck --disableProductStyleUrl \
    >"$dir/azurite.log" 2>&1 &
echo $! >"$dir/azurite.pid"
endpoint="http://127.0.0.1:$port"
# Ready when the container can be made (or is there).
ok=
for _ in $(seq 150); do
    if python3 - "$endpoint" "$account" "$account_key" >"$dir/create.log" 2>&1 <<'PY'; then
import sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
endpoint, account, key = sys.argv[1:4]
conn = (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{account};")
try:
    BlobServiceClient.from_connection_string(conn).create_container("countersign-test")
except ResourceExistsError:
    pass
PY
        ok=1
        break
    fi
    if ! kill -0 "$(cat "$dir/azurite.pid")" 2>/dev/null; then
        echo "azure-server: azurite exited; its log:" >&2
        tail -20 "$dir/azurite.log" >&2
        exit 1
    fi
    sleep 0.2
done
if [ -z "$ok" ]; then
    echo "azure-server: not ready after 30 s; the last try:" >&2
    tail -5 "$dir/create.log" >&2
    stop
    exit 1
fi
cat >"$dir/env" <<ENV
export AZURE_STORAGE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL=$endpoint
export AZURE_STORAGE_ACCOUNT_NAME=$account
export AZURE_STORAGE_ACCOUNT_KEY=$account_key
export COUNTERSIGN_TEST_AZ_CONTAINER=az://countersign-test
ENV
echo "azure-server: Azurite $AZURITE_VERSION at $endpoint (pid $(cat "$dir/azurite.pid"))" >&2
