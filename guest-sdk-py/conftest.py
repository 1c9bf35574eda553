"""Runs the SDK natively (CPython, no WebAssembly): componentize-py's
generated bindings for the `pipeline` world give the real WIT types, and the
tests stand in for the host's tensor handles."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BINDINGS = tempfile.mkdtemp(prefix="conduit-guest-bindings-")
atexit.register(shutil.rmtree, _BINDINGS, ignore_errors=True)
_CPY = os.environ.get("COMPONENTIZE_PY", os.path.join(ROOT, ".venv", "bin", "componentize-py"))
subprocess.run(
    [_CPY, "-q", "-d", os.path.join(ROOT, "wit"), "-w", "pipeline", "bindings", _BINDINGS],
    check=True,
)
sys.path[:0] = [
    _BINDINGS,
    os.path.join(ROOT, "guest-sdk-py"),
    os.path.join(ROOT, "examples", "components", "embedding-post-py"),
]
