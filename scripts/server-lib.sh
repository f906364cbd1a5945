# Sourced by the throwaway test servers' scripts (s3-server.sh, azure-server.sh): the command
# line `start|stop DIR`, and stopping a server by the PID in its pid file.

# Reads `start|stop DIR` into $cmd and $dir, or prints the usage and exits 2.
server_args() {
    cmd=${1:-}
    dir=${2:-}
    case "$cmd" in
    start | stop) ;;
    *) cmd= ;;
    esac
    if [ -z "$cmd" ] || [ -z "$dir" ]; then
        echo "usage: $0 start|stop DIR" >&2
        exit 2
    fi
}

# Stops the process whose PID is in FILE (TERM, then KILL after 5 s) and removes FILE.
stop_pidfile() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
}
