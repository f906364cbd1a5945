#!/usr/bin/env bash
# Checks our Merkle log, proofs, checkpoints and vectors with an implementation we did not write:
# Go's golang.org/x/mod/sumdb/tlog and sumdb/note (Debian golang-golang-x-mod-dev, installed by
# setup.sh), driven by testvectors/go (govec). Part of scripts/test.sh; about 30 s warm.
#   ./scripts/go-check.sh               build govec, then:
#     1. testvectors/known-answer/go-tlog.json is exactly what tlog computes (check-gen);
#     2. tlog and note accept our valid inclusion, consistency, checkpoint and bundle vectors
#        and refuse the invalid ones they can judge (check-vectors);
#     3. a real `countersign serve` on 127.0.0.1 with a temporary data dir gets 300 decisions
#        and 3 complete approval flows (countersign-bench); govec then verifies its checkpoint
#        signature, recomputes the tree hash from its tiles, checks every entry, a spread of
#        inclusion and consistency proofs, the flows' evidence bundles and their tlog-proof text
#        (check-log); with an S3 server (COUNTERSIGN_TEST_S3_BUCKET and AWS_*, as scripts/test.sh
#        sets them) the server also mirrors its tiles to a bucket (serve --tiles), and govec
#        checks the bucket's checkpoint and tiles, read anonymously, the same way;
#     4. countersign-verify tiles proves entries and consistency from the server's tiles and the
#        bucket's, over HTTP;
#     5. with a PostgreSQL server too (COUNTERSIGN_TEST_DATABASE), two instances of the shared
#        driver (serve --database --tiles) on one database and bucket take 300 appends each,
#        and govec checks the bucket, read anonymously, as in 3.
#   ./scripts/go-check.sh --regenerate  rewrite go-tlog.json with tlog (review the diff).
# Any failure in Go exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

# GOPATH mode against Debian's sources: no module proxy is needed or asked.
export GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS=
export GOCACHE="${GOCACHE:-$CARGO_TARGET_DIR/go-build}"
govec="$CARGO_TARGET_DIR/go/govec"
mkdir -p "$(dirname "$govec")"
unformatted=$(gofmt -l testvectors/go)
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }
(cd testvectors/go && go vet . && go build -o "$govec" .)

if [ "${1:-}" = "--regenerate" ]; then
    "$govec" gen testvectors/known-answer/go-tlog.json
    exit 0
fi
"$govec" check-gen testvectors/known-answer/go-tlog.json
"$govec" check-vectors testvectors

cargo build -q --locked -p countersign -p countersign-benches -p countersign-verify --bins
bin="$CARGO_TARGET_DIR/debug"
work=$(mktemp -d /tmp/countersign-go-check.XXXXXX)
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# With an S3 server (scripts/test.sh starts one), the log also mirrors its tiles to a bucket,
# which govec then reads anonymously instead of the server's tiles.
mirror=()
tiles_url=""
if [ -n "${COUNTERSIGN_TEST_S3_BUCKET:-}" ]; then
    prefix="go-check-$$-$RANDOM"
    mirror=(--tiles "$COUNTERSIGN_TEST_S3_BUCKET/$prefix")
    tiles_url="$AWS_ENDPOINT_URL/${COUNTERSIGN_TEST_S3_BUCKET#s3://}/$prefix"
fi
RUST_LOG=warn "$bin/countersign" serve --data-dir "$work/data" --listen "127.0.0.1:$port" \
    --public-url "http://localhost:$port" "${mirror[@]}" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
    curl -sf "$url/healthz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf "$url/healthz" >/dev/null || { echo "server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

"$bin/countersign-bench" append --url "$url" --data-dir "$work/data" --count 300 \
    --concurrency 8 >"$work/append.log" 2>&1 || { cat "$work/append.log" >&2; exit 1; }
curl -sf "$url/checkpoint" >"$work/early.checkpoint"
"$bin/countersign-bench" flow --url "$url" --origin "http://localhost:$port" \
    --data-dir "$work/data" --count 3 --concurrency 1 --evidence-dir "$work/evidence" \
    >"$work/flow.log" 2>&1 || { cat "$work/flow.log" >&2; exit 1; }

# The front end answers `?format=tlog-proof` with EvidenceBundle::decision_tlog_proof of the
# bundle it serves; countersign-verify --tlog-proof prints the same function's output.
vkey=$(cat "$work/data/log.vkey")
for b in "$work"/evidence/*.json; do
    "$bin/countersign-verify" --json bundle "$b" --log-key "$vkey" --rp-id localhost --tlog-proof |
        python3 -c 'import json, sys; v = json.load(sys.stdin); assert v["valid"], v; sys.stdout.write(v["tlog_proof"])' \
            >"${b%.json}.tlog-proof"
done

"$govec" check-log -url "$url" -vkey "$work/data/log.vkey" -evidence "$work/evidence"
if [ -n "$tiles_url" ]; then
    # The bucket catches up with the server's checkpoint (the mirror follows each publication).
    for _ in $(seq 1 300); do
        [ "$(curl -sf "$tiles_url/checkpoint" || true)" = "$(curl -sf "$url/checkpoint")" ] && break
        sleep 0.1
    done
    "$govec" check-log -url "$url" -vkey "$work/data/log.vkey" -tiles "$tiles_url"
fi

# countersign-verify tiles over HTTP, from the server and from the bucket: the first and last
# entries proven included, the checkpoint taken before the flows proven a prefix.
size=$(curl -sf "$url/checkpoint" | sed -n 2p)
for base in "$url" ${tiles_url:+"$tiles_url"}; do
    "$bin/countersign-verify" tiles "$base" --log-key "$vkey" --index 0 --index "$((size - 1))" \
        --trusted-checkpoint "$work/early.checkpoint" | sed -n '1p;$p'
done

# The shared driver (spec/shared-driver.md), with PostgreSQL and S3 servers (scripts/test.sh
# starts both): two instances from copies of the data directory's keys, on one database and
# one bucket, take appends side by side; Go's sumdb/tlog then checks the bucket, read
# anonymously, against one of them.
if [ -n "${COUNTERSIGN_TEST_DATABASE:-}" ] && [ -n "${COUNTERSIGN_TEST_S3_BUCKET:-}" ]; then
    db="gocheck_$$_$RANDOM"
    psql -q -d "$COUNTERSIGN_TEST_DATABASE" -c "CREATE DATABASE $db" >/dev/null
    db_url="${COUNTERSIGN_TEST_DATABASE%/*}/$db"
    prefix="go-check-shared-$$-$RANDOM"
    shared_tiles="$AWS_ENDPOINT_URL/${COUNTERSIGN_TEST_S3_BUCKET#s3://}/$prefix"
    instances=()
    urls=()
    for i in 1 2; do
        mkdir -p "$work/shared$i"
        cp "$work/data/log.key" "$work/data/log.vkey" "$work/data/admin.token" "$work/shared$i/"
        p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        # With the approval front end, as a deployment runs: one public URL for both.
        RUST_LOG=warn "$bin/countersign" serve --data-dir "$work/shared$i" \
            --listen "127.0.0.1:$p" --database "$db_url" --public-url https://approve.test \
            --tiles "$COUNTERSIGN_TEST_S3_BUCKET/$prefix" >"$work/shared$i.log" 2>&1 &
        instances+=($!)
        urls+=("http://127.0.0.1:$p")
    done
    stop_shared() { kill -TERM "${instances[@]}" 2>/dev/null || true; wait "${instances[@]}" 2>/dev/null || true; }
    for u in "${urls[@]}"; do
        for _ in $(seq 1 300); do curl -sf "$u/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
        curl -sf "$u/healthz" >/dev/null || { stop_shared; cat "$work"/shared*.log >&2; exit 1; }
    done
    pids=()
    for u in "${urls[@]}"; do
        "$bin/countersign-bench" append --url "$u" --data-dir "$work/shared1" --count 300 \
            --concurrency 8 >"$work/shared-append-${u##*:}.log" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p" || { stop_shared; cat "$work"/shared-append-*.log "$work"/shared*.log >&2; exit 1; }
    done
    "$govec" check-log -url "${urls[1]}" -vkey "$work/data/log.vkey" -tiles "$shared_tiles"
    stop_shared
    psql -q -d "$COUNTERSIGN_TEST_DATABASE" -c "DROP DATABASE $db" >/dev/null || true
fi
