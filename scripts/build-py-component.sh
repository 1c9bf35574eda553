#!/usr/bin/env bash
# Builds a Python Conduit component with componentize-py (docs/components.md,
# "Writing a component in Python").
#
#   scripts/build-py-component.sh [--world op|pipeline] SRC_DIR OUT.wasm
#
# SRC_DIR holds `app.py` (the module that calls conduit_guest.export) and any
# modules it imports; the SDK comes from guest-sdk-py/. The WIT is wit/ (the
# current `conduit:compute` version). componentize-py is the pinned one of the
# venv (scripts/requirements.txt; `make venv`), or $COMPONENTIZE_PY.
#
# componentize-py runs the app's imports and the Processor's __init__ at build
# time and snapshots the heap, so an exception there fails the build here.
# Builds are not bit-reproducible: the digest changes on every build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
world=op
if [ "${1:-}" = "--world" ]; then
    world="$2"
    shift 2
fi
if [ $# -ne 2 ]; then
    echo "usage: $0 [--world op|pipeline] SRC_DIR OUT.wasm" >&2
    exit 2
fi
src="$(cd "$1" && pwd)"
out="$2"
[ -f "$src/app.py" ] || { echo "$0: $src/app.py not found" >&2; exit 2; }

cpy="${COMPONENTIZE_PY:-$root/.venv/bin/componentize-py}"
[ -x "$cpy" ] || { echo "$0: $cpy not found: run \`make venv\`" >&2; exit 2; }

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# The SDK and the app directory on the Python path (componentize-py bundles
# only the modules the app imports); no stray bytecode in the sources, no
# Rust backtrace under a Python error at build time.
env -u VIRTUAL_ENV PYTHONDONTWRITEBYTECODE=1 RUST_BACKTRACE=0 \
    "$cpy" -q -d "$root/wit" -w "$world" componentize \
    -p "$root/guest-sdk-py" -p "$src" app -o "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "built $out ($(( $(stat -c %s "$out") / 1024 )) KiB, world $world)"
