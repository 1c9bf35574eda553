#!/usr/bin/env python3
"""Runs the Conduit sidecar (sidecar/conduit_sidecar.py, copied unchanged by pack.sh) with
the stubs from kserve_stubs.py: where grpcio-tools is missing, as on the GPU machines, its
`stubs.load()` is replaced by the descriptor-set loader. Arguments go to the sidecar as is:

    python3 launch_sidecar.py --listen 127.0.0.1:0 --name minilm \\
        --torch-cuda minilm_torch.py:make [--torch-device cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sidecar"))
sys.path.insert(0, str(HERE))

import kserve_stubs  # noqa: E402
import stubs  # noqa: E402  (the sidecar's module; conduit_sidecar imports this same object)

if kserve_stubs.which() == "descriptor":

    def _load(proto_root=None):
        try:
            return kserve_stubs.load_descriptor()
        except kserve_stubs.StubLoadError as e:
            raise stubs.StubError(str(e)) from e

    stubs.load = _load

import conduit_sidecar  # noqa: E402

if __name__ == "__main__":
    sys.exit(conduit_sidecar.main(sys.argv[1:]))
