#!/usr/bin/env bash
# The Python SDK's tests against a live countersign server.
#
# Makes integrations/python/.venv (once), installs the pinned test set and the package in
# editable mode (only when requirements-test.txt or pyproject.toml changed), then runs pytest.
# The server binary: COUNTERSIGN_BIN, else $CARGO_TARGET_DIR/debug/countersign.
# Extra arguments go to pytest (e.g. ./test.sh -k langchain -x).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"

pick_python() {
    for p in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 || continue
        if "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "test.sh: no Python 3.11 or newer found (set PYTHON)" >&2
    return 1
}

if [ ! -x "$venv/bin/python" ]; then
    py="$(pick_python)"
    if ! "$py" -m venv "$venv" 2>/dev/null; then
        # Debian's own Python ships venv/ensurepip separately.
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            minor="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${minor}-venv" >/dev/null
        fi
        "$py" -m venv "$venv"
    fi
fi

stamp="$venv/.countersign-installed"
want="$(cat requirements-test.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi

# Default binary location, as the interop tests use it.
if [ -z "${COUNTERSIGN_BIN:-}" ]; then
    export COUNTERSIGN_BIN="${CARGO_TARGET_DIR:-$HOME/.cache/countersign/target}/debug/countersign"
fi
if [ ! -x "$COUNTERSIGN_BIN" ]; then
    echo "test.sh: server binary not found at $COUNTERSIGN_BIN (cargo build -p countersign --bin countersign, or set COUNTERSIGN_BIN)" >&2
    exit 1
fi

# The package ships py.typed: its annotations are part of its interface.
"$venv/bin/python" -m mypy --strict --cache-dir "$venv/.mypy_cache" src

exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
