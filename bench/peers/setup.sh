#!/usr/bin/env bash
# Installs the peer servers (PyTriton, Ray Serve) into bench/peers/.venv.
#
#   bash bench/peers/setup.sh          # idempotent: a no-op once installed
#   FORCE=1 bash bench/peers/setup.sh  # reinstall from requirements.txt
#
# The venv is made from the Debian interpreter /usr/bin/python3.11, not from whatever
# `python3` is first on PATH (a pyenv 3.11.7 on the dev VM). PyTriton's Python-backend
# stub links the system libpython3.11.so.1.0 (3.11.2 here); if the venv's standard
# library comes from another 3.11.x, model loading fails with
# `'_thread.RLock' object has no attribute '_recursion_count'` (3.11.7's threading.py
# calling into 3.11.2's _thread). Same interpreter for both sides, no LD_LIBRARY_PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.installed-requirements.sha256"
py="${PEERS_PYTHON:-/usr/bin/python3.11}"

if [[ ! -x "$py" ]]; then
    echo "setup.sh: $py not found; install it (apt-get install python3.11 python3.11-venv" \
         "libpython3.11) or set PEERS_PYTHON to a python3.11 whose libpython3.11.so" \
         "is the one the dynamic loader finds" >&2
    exit 1
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -z "${FORCE:-}" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$venv/bin/python" -c 'import pytriton, ray.serve, onnxruntime, tokenizers' 2>/dev/null; then
    echo "bench/peers/.venv is up to date ($("$venv/bin/python" --version))"
    exit 0
fi

if [[ -x "$venv/bin/python" ]] &&
    [[ "$("$venv/bin/python" -c 'import sys; print(sys.base_prefix)')" != \
       "$("$py" -c 'import sys; print(sys.base_prefix)')" ]]; then
    echo "bench/peers/.venv was made from another interpreter; recreating it"
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    "$py" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --no-input -r "$req"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import pytriton, ray.serve, onnxruntime, tokenizers, numpy
print("pytriton", "ok;", "ray", __import__("ray").__version__, "; onnxruntime",
      onnxruntime.__version__, "; tokenizers", tokenizers.__version__, "; numpy", numpy.__version__)'
echo "$want" > "$stamp"
echo "bench/peers/.venv ready"
