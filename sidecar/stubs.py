"""Python stubs of the KServe v2 protos, generated on demand (nothing generated is committed).

`load()` compiles `proto/inference/*.proto` with `grpc_tools.protoc` into
`sidecar/_gen/<key>/` (gitignored), where `<key>` hashes the proto sources and the
grpcio-tools version: an edited proto or a new grpcio-tools gives a new directory, and
an up-to-date one is reused as is. Generation writes to a temporary directory and renames
it into place, so sidecars started at the same moment never see a half-written package.

    pb, config_pb, pb_grpc = stubs.load()
    pb.ModelInferRequest(model_name="add")
    config_pb.ModelConfig(name="add", max_batch_size=8)
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

SIDECAR_DIR = Path(__file__).resolve().parent
PROTO_ROOT = SIDECAR_DIR.parent / "proto"
PROTO_FILES = ("inference/grpc_service.proto", "inference/model_config.proto")
GEN_ROOT = Path(os.environ.get("CONDUIT_SIDECAR_GEN", SIDECAR_DIR / "_gen"))


class StubError(RuntimeError):
    """The stubs could not be generated (grpcio-tools missing, a proto that fails to compile)."""


def _key(proto_root: Path) -> str:
    try:
        import grpc_tools
        from importlib.metadata import version

        tools = version("grpcio-tools")
    except ImportError as e:
        raise StubError(
            f"grpcio-tools is not installed ({e}); run `make sidecar` "
            "(pip install -r scripts/requirements-sidecar.txt)"
        ) from e
    h = hashlib.sha256(f"grpcio-tools {tools} {grpc_tools.__file__}\n".encode())
    for name in PROTO_FILES:
        h.update(name.encode() + b"\0" + (proto_root / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _generate(proto_root: Path, dest: Path) -> None:
    from grpc_tools import protoc

    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=dest.parent))
    try:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(proto_root / name) for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise StubError(
                f"grpc_tools.protoc failed on {', '.join(PROTO_FILES)} under {proto_root}"
            )
        try:
            os.rename(tmp, dest)
        except OSError:
            # Another process renamed the same content into place first.
            if not (dest / "inference" / "grpc_service_pb2_grpc.py").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Earlier keys are stale: drop them (best effort; a running sidecar has its modules loaded).
    for old in dest.parent.iterdir():
        if old != dest and not old.name.startswith(".tmp-"):
            shutil.rmtree(old, ignore_errors=True)


def generate(proto_root: Path = PROTO_ROOT) -> Path:
    """Generates the stubs when missing or outdated; returns the directory to import them from.

    Raises StubError when grpcio-tools is missing or protoc fails.
    """
    dest = GEN_ROOT / _key(proto_root)
    if not (dest / "inference" / "grpc_service_pb2_grpc.py").exists():
        _generate(proto_root, dest)
    return dest


def load(proto_root: Path = PROTO_ROOT) -> tuple[ModuleType, ModuleType, ModuleType]:
    """Returns the `grpc_service_pb2`, `model_config_pb2` and `grpc_service_pb2_grpc` modules.

    Raises StubError when the stubs cannot be generated.
    """
    path = str(generate(proto_root))
    if path not in sys.path:
        sys.path.insert(0, path)
    pb = importlib.import_module("inference.grpc_service_pb2")
    config_pb = importlib.import_module("inference.model_config_pb2")
    pb_grpc = importlib.import_module("inference.grpc_service_pb2_grpc")
    return pb, config_pb, pb_grpc
