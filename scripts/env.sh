# Sourced by the project's scripts: one persistent target directory for every build (the bundled
# RocksDB takes about 20 minutes to compile on two cores), and ccache in front of the C++ compiler.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/countersign/target}"
if command -v ccache >/dev/null 2>&1; then
    export CC="${CC:-ccache cc}" CXX="${CXX:-ccache c++}"
    export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
fi
