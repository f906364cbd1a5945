#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (Debian's postgresql package, see scripts/setup.sh): its
# data under DIR/data, listening on a free port of 127.0.0.1 only (its unix socket in DIR/run),
# `trust` authentication, stopped by PID.
#   scripts/pg-server.sh start DIR     starts a fresh server (any earlier one in DIR is stopped and
#                                      its data removed), creates the database countersign_test,
#                                      writes DIR/env (COUNTERSIGN_TEST_DATABASE and the PG*
#                                      variables psql reads) to source
#   scripts/pg-server.sh stop DIR      stops it; nothing to do when it is not running
#   scripts/pg-server.sh restart DIR   stops it and starts it again on the same data and port,
#                                      for tests of clients that must reconnect
# Run as root, the server runs as the postgres user (initdb refuses root).
set -euo pipefail
cmd=${1:-}
dir=${2:-}
usage() {
    echo "usage: $0 start|stop|restart DIR" >&2
    exit 2
}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    usage
fi
dir=$(realpath -m "$dir")
data="$dir/data"
run="$dir/run"
log="$dir/postgres.log"

# The newest installed major version, unless PG_BIN names one.
if [ -z "${PG_BIN:-}" ]; then
    PG_BIN=$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -1 | xargs -r dirname)
fi
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "pg-server: no PostgreSQL found under /usr/lib/postgresql: run scripts/setup.sh" >&2
    exit 1
fi

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

postmaster_pid() {
    [ -f "$data/postmaster.pid" ] || return 1
    local pid
    pid=$(head -1 "$data/postmaster.pid")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

stop() {
    local pid
    pid=$(postmaster_pid) || return 0
    # SIGINT is PostgreSQL's fast shutdown (sessions are ended, no waiting for clients);
    # SIGQUIT, its immediate one, if that takes longer than 10 s.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# Starts the server on the data directory and port already configured, and waits (30 s at
# most) until it accepts connections on its TCP port.
launch() {
    local port=$1
    if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$log" -s -w -t 30 start >/dev/null 2>&1; then
        for _ in $(seq 100); do
            "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres && return 0
            sleep 0.1
        done
    fi
    echo "pg-server: PostgreSQL is not accepting connections on 127.0.0.1:$port; its log:" >&2
    tail -20 "$log" >&2 || true
    stop
    exit 1
}

case "$cmd" in
stop)
    stop
    exit 0
    ;;
restart)
    if [ ! -f "$dir/port" ] || [ ! -f "$data/PG_VERSION" ]; then
        echo "pg-server: no server was started in $dir" >&2
        exit 1
    fi
    stop
    launch "$(cat "$dir/port")"
    exit 0
    ;;
start) ;;
*) usage ;;
esac

mkdir -p "$dir"
stop
rm -rf "$data" "$run" "$log" "$dir/port" "$dir/env"
mkdir -p "$data" "$run"
touch "$log"
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$data" "$run" "$log"
    # The postgres user needs to reach its directories inside DIR.
    chmod o+x "$dir"
    if ! runuser -u postgres -- test -w "$data"; then
        echo "pg-server: the postgres user cannot write $data (a parent directory is closed to it)" >&2
        exit 1
    fi
fi
if ! out=$(as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-sync --no-instructions 2>&1); then
    echo "pg-server: initdb failed:" >&2
    echo "$out" >&2
    exit 1
fi
# A free port, picked by the kernel (and released just before PostgreSQL binds it).
port=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
')
echo "$port" >"$dir/port"
cat >>"$data/postgresql.conf" <<CONF
# scripts/pg-server.sh: a test server, reachable from this machine only.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$run'
max_connections = 300
logging_collector = off
CONF
launch "$port"
"$PG_BIN/psql" -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c 'CREATE DATABASE countersign_test' >/dev/null
cat >"$dir/env" <<ENV
export COUNTERSIGN_TEST_DATABASE=postgres://postgres@127.0.0.1:$port/countersign_test
export COUNTERSIGN_TEST_PG_DIR=$dir
export PGHOST=127.0.0.1
export PGPORT=$port
export PGUSER=postgres
export PGDATABASE=countersign_test
ENV
echo "pg-server: PostgreSQL $(cat "$data/PG_VERSION") at 127.0.0.1:$port (pid $(postmaster_pid))" >&2
