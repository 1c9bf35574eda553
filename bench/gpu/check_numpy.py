#!/usr/bin/env python3
"""Checks minilm_torch.py on CPU against scripts/minilm_numpy.py (float64, independent).

Needs a Python with torch, numpy and safetensors (not the project's .venv, which has no
torch), the weights in testdata/minilm/ and, for the float16 file, bench/gpu/pack.sh run:

    /path/to/python-with-torch bench/gpu/check_numpy.py

float32 compute must match the numpy pass within 1e-4, with the original weights and with
the float16 ones (numpy on the same float16 weights); float16 compute is reported against
float32 (it sets how loose run.sh's GPU/CPU tolerance must be). Exits 1 on a mismatch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(HERE))

import minilm_torch  # noqa: E402
from minilm_numpy import MiniLM, load_config, load_weights  # noqa: E402

FP32 = ROOT / "testdata" / "minilm" / "model.safetensors"
FP16 = HERE / "out" / "minilm.fp16.safetensors"
TOL = 1e-4


def batch():
    rng = np.random.default_rng(1)
    ids = rng.integers(1996, 29600, size=(4, 64))
    ids[:, 0] = 101
    mask = np.ones_like(ids)
    mask[1, 40:] = 0  # padding
    ids[1, 39] = 102
    mask[3, 1:] = 0  # only [CLS]
    tt = np.zeros_like(ids)
    tt[2, 30:] = 1  # a second segment
    return ids, mask, tt


def run_torch(weights: Path, dtype):
    minilm_torch.WEIGHTS = weights
    model = minilm_torch.build("cpu", dtype)
    with torch.inference_mode():
        return model(*(torch.from_numpy(a) for a in batch())).numpy().astype(np.float64)


def main() -> int:
    cfg = load_config(ROOT / "testdata" / "minilm" / "config.json")
    ok = True
    files = [FP32] + ([FP16] if FP16.is_file() else [])
    if len(files) == 1:
        print(f"note: {FP16} is missing (run bench/gpu/pack.sh); checking fp32 weights only")
    for weights in files:
        ref = MiniLM(load_weights(str(weights)), cfg).forward(*batch())
        got = run_torch(weights, torch.float32)
        d = float(np.abs(got - ref).max())
        good = d <= TOL
        ok &= good
        print(f"{weights.name}: torch float32 vs numpy float64: max |diff| {d:.2e} "
              f"(<= {TOL:g}: {'ok' if good else 'FAIL'})")
        if weights == FP16:
            half = run_torch(weights, torch.float16)
            print(f"{weights.name}: torch float16 vs torch float32: max |diff| "
                  f"{float(np.abs(half - got).max()):.2e} (|out| up to {np.abs(got).max():.2f})")
    print("check_numpy: OK" if ok else "check_numpy: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
