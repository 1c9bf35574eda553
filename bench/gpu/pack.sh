#!/usr/bin/env bash
# Packs what the GPU bench needs into bench/gpu/out/ (gitignored), to carry to a GPU machine:
#   minilm.fp16.safetensors   all-MiniLM-L6-v2's weights in float16 (~45 MB)
#   config.json               the model's config
#   sidecar/*.py              the Conduit sidecar, unchanged
#   proto/inference/*.proto   its protos, and proto/inference.desc (a FileDescriptorSet of
#                             them, so no grpcio-tools is needed there)
#   run.sh bench.py launch_sidecar.py kserve_stubs.py minilm_torch.py
# and checks that it stays under the 64 MiB that can be carried. Run it here (not there):
#   bash bench/gpu/pack.sh            # PYTHON=... for another Python with numpy, safetensors,
#                                     # grpcio-tools; MINILM_DIR=... for other weights
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
SRC=${MINILM_DIR:-$ROOT/testdata/minilm}
OUT=$HERE/out
LIMIT=$((64 * 1024 * 1024))

die() { echo "pack.sh: $*" >&2; exit 1; }

[ -x "$PY" ] || die "no Python at $PY (make venv, or set PYTHON)"
for f in model.safetensors config.json; do
    [ -f "$SRC/$f" ] || die "$SRC/$f is missing (scripts/fetch_model.sh fetches the model)"
done
for f in conduit_sidecar.py backends.py stubs.py tensors.py stats.py; do
    [ -f "$ROOT/sidecar/$f" ] || die "sidecar/$f is missing"
done
"$PY" -c 'import numpy, safetensors, grpc_tools' 2>/dev/null ||
    die "$PY lacks numpy, safetensors or grpcio-tools (make venv sidecar)"

rm -rf "$OUT"
mkdir -p "$OUT/sidecar" "$OUT/proto/inference"

echo "pack.sh: weights -> float16"
"$PY" - "$SRC/model.safetensors" "$OUT/minilm.fp16.safetensors" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import load_file, save_file

src, dst = sys.argv[1], sys.argv[2]
w = load_file(src)
out, dropped = {}, []
for name, a in w.items():
    if a.dtype.kind != "f":
        dropped.append(name)  # e.g. embeddings.position_ids: the model makes its own
        continue
    big = float(np.abs(a).max()) if a.size else 0.0
    if big > 65504:
        sys.exit(f"{name}: |max| {big} does not fit float16")
    out[name] = np.ascontiguousarray(a.astype(np.float16))
save_file(out, dst, metadata={"source": "all-MiniLM-L6-v2 model.safetensors, cast to float16"})
n = sum(a.size for a in out.values())
print(f"  {len(out)} tensors, {n / 1e6:.1f} M parameters" +
      (f"; left out (not float): {dropped}" if dropped else ""))
EOF
cp "$SRC/config.json" "$OUT/config.json"

cp "$ROOT"/sidecar/*.py "$OUT/sidecar/"
rm -f "$OUT/sidecar/smoke_test.py"  # needs onnxruntime fixtures; not used there
cp "$ROOT"/proto/inference/*.proto "$OUT/proto/inference/"
WELL_KNOWN=$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
"$PY" -m grpc_tools.protoc -I"$ROOT/proto" -I"$WELL_KNOWN" --include_imports \
    --descriptor_set_out="$OUT/proto/inference.desc" \
    inference/grpc_service.proto inference/model_config.proto

for f in run.sh bench.py launch_sidecar.py kserve_stubs.py minilm_torch.py README.md; do
    cp "$HERE/$f" "$OUT/$f"
done
chmod +x "$OUT/run.sh"

# The stand-in stubs must load and know every RPC the sidecar serves (checked here, where
# the sidecar's own stubs can be generated to compare against).
(cd "$OUT" && CONDUIT_BENCH_STUBS=descriptor "$PY" - <<'EOF'
import kserve_stubs
pb, config_pb, pb_grpc = kserve_stubs.load()
pb.ModelInferRequest(model_name="x").SerializeToString()
config_pb.DataType.Value("TYPE_FP32")
config_pb.ModelInstanceGroup.KIND_GPU
pb.ModelMetadataResponse.TensorMetadata(name="x")
for m in ("ModelInfer", "ModelStreamInfer", "ModelMetadata", "ModelConfig", "ServerLive"):
    assert hasattr(pb_grpc.GRPCInferenceServiceServicer, m), m
EOF
) || die "the descriptor-set stubs do not load"
find "$OUT" -name __pycache__ -prune -exec rm -rf {} +
chmod -R a+rX "$OUT"  # safetensors writes its file 0600

size=$(du -sb "$OUT" | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "pack.sh: $OUT: $(find "$OUT" -type f | wc -l) files, $size bytes ($(mib "$size")); limit $(mib "$LIMIT")"
if [ "$size" -ge "$LIMIT" ]; then
    die "out/ is over the 64 MiB that can be carried"
fi
# What travels beside it: the tracked and untracked-not-ignored files of the checkout.
if tree=$(cd "$ROOT" && git ls-files -co --exclude-standard -z 2>/dev/null |
    xargs -0 -r stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'); then
    total=$((size + tree))
    echo "pack.sh: with the working tree ($(mib "$tree")): $(mib "$total") of $(mib "$LIMIT")"
    [ "$total" -lt "$LIMIT" ] || echo "pack.sh: WARNING: out/ plus the working tree is over 64 MiB" >&2
fi
echo "pack.sh: done; carry bench/gpu/out and run: bash bench/gpu/out/run.sh"
