#!/usr/bin/env bash
# GPU vs CPU throughput of all-MiniLM-L6-v2 through the Conduit sidecar. Runs ON the GPU
# machine, from the folder bench/gpu/pack.sh wrote (bench/gpu/out/), with that machine's
# python3 (torch + grpcio + protobuf + numpy); nothing is installed or fetched.
#   bash bench/gpu/out/run.sh                  # ~1.5 min: load, check, 2 x (3 s + 20 s) load
#   bash bench/gpu/out/run.sh --seconds 10     # options: python3 bench.py --help
#   PYTHON=/opt/torch/.venv/bin/python3 bash bench/gpu/out/run.sh
#   bash bench/gpu/out/run.sh --cpu-only       # the CPU half alone (no GPU needed)
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

PY=${PYTHON:-python3}
if [[ "$PY" == */* ]]; then  # a path: make it absolute before the cd below
    [ -x "$PY" ] || die "PYTHON=$PY is not an executable file"
    PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
fi
command -v "$PY" >/dev/null 2>&1 || die "no '$PY' on PATH; set PYTHON to the python3 that has torch"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "$HERE/minilm.fp16.safetensors" ] && [ -f "$HERE/out/run.sh" ]; then
    exec bash "$HERE/out/run.sh" "$@"  # started as bench/gpu/run.sh: use the packed copy
fi
cd "$HERE"
for f in bench.py launch_sidecar.py kserve_stubs.py minilm_torch.py minilm.fp16.safetensors \
    proto/inference.desc sidecar/conduit_sidecar.py; do
    [ -f "$f" ] || die "$HERE/$f is missing: run bench/gpu/pack.sh here first, then carry bench/gpu/out"
done
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
        sed 's/^/nvidia-smi: /' || true
else
    echo "run.sh: no nvidia-smi on PATH (fine with --cpu-only)"
fi
exec "$PY" -u bench.py "$@"
