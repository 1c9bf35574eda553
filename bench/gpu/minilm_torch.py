"""all-MiniLM-L6-v2 (a BERT encoder) as a torch module, for the sidecar's --torch-cuda.

    python3 launch_sidecar.py --name minilm --torch-cuda minilm_torch.py:make
    python3 launch_sidecar.py --name minilm --torch-cuda minilm_torch.py:make --torch-device cpu

`make(device)` follows the sidecar's factory contract (sidecar/backends.py): it returns
`(module, inputs, outputs)` with inputs input_ids, attention_mask, token_type_ids (INT64
[-1, -1]) and output last_hidden_state (FP32 [-1, -1, hidden]).

Weights: `minilm.fp16.safetensors` next to this file (pack.sh writes it from
testdata/minilm/model.safetensors; names without a prefix: `embeddings.*`,
`encoder.layer.N.*`), read with a small reader of its own, since the safetensors package
need not be there; the config from `config.json` beside it when present, else MiniLM-L6's.
MINILM_WEIGHTS and MINILM_CONFIG name other files.

It computes in float16 on CUDA and float32 on CPU (MINILM_DTYPE=fp32|fp16|bf16 overrides
that); the output is always float32. The maths is HF's BertModel: absolute positions,
post-LayerNorm, erf GELU; padded keys get -10000 added to their attention scores (as the
original BERT), so a row whose mask is all zeros gives finite numbers, not NaN.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
WEIGHTS = Path(os.environ.get("MINILM_WEIGHTS", HERE / "minilm.fp16.safetensors"))
CONFIG = Path(os.environ.get("MINILM_CONFIG", HERE / "config.json"))

# all-MiniLM-L6-v2's config.json, for when none is shipped.
DEFAULT_CONFIG = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}

_ST_DTYPES = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
}

MASK_BIAS = -10000.0


def _log(msg: str) -> None:
    print(f"minilm_torch: {msg}", file=sys.stderr, flush=True)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """{name: CPU tensor} from a safetensors file (8-byte header length, JSON, data)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {meta['dtype']}, not supported")
        start, end = meta["data_offsets"]
        array = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize, offset=start)
        out[name] = torch.from_numpy(array.astype(dtype.newbyteorder("="))).reshape(meta["shape"])
    return out


def load_config(path: Path) -> dict:
    cfg = dict(DEFAULT_CONFIG)
    if path.is_file():
        cfg.update(json.loads(path.read_text(encoding="utf-8")))
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act {cfg['hidden_act']!r}: only erf GELU is implemented")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are implemented")
    return cfg


class Layer(nn.Module):
    """One BERT encoder layer (post-LN); q, k and v are one [3h, h] projection."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=eps)
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=eps)
        self.use_sdpa = hasattr(F, "scaled_dot_product_attention")

    def attention(self, q, k, v, bias):
        if self.use_sdpa:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
        return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v

    def forward(self, x, bias):
        b, s, h = x.shape
        q, k, v = (
            t.view(b, s, self.heads, self.head_dim).transpose(1, 2)
            for t in self.qkv(x).split(h, dim=-1)
        )
        ctx = self.attention(q, k, v, bias).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(self.attn_out(ctx) + x)
        return self.ln2(self.fc2(F.gelu(self.fc1(x))) + x)


class MiniLM(nn.Module):
    """BertModel without the pooler: (input_ids, attention_mask, token_type_ids) ->
    last_hidden_state, float32 [batch, seq, hidden]."""

    def __init__(self, cfg: dict):
        super().__init__()
        h = int(cfg["hidden_size"])
        self.hidden = h
        self.max_positions = int(cfg["max_position_embeddings"])
        self.word = nn.Embedding(int(cfg["vocab_size"]), h)
        self.position = nn.Embedding(self.max_positions, h)
        self.token_type = nn.Embedding(int(cfg["type_vocab_size"]), h)
        self.ln = nn.LayerNorm(h, eps=float(cfg["layer_norm_eps"]))
        self.layers = nn.ModuleList(
            Layer(h, int(cfg["num_attention_heads"]), int(cfg["intermediate_size"]),
                  float(cfg["layer_norm_eps"]))
            for _ in range(int(cfg["num_hidden_layers"]))
        )

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        if s > self.max_positions:
            raise ValueError(f"sequence length {s} exceeds {self.max_positions} positions")
        positions = torch.arange(s, device=input_ids.device)
        x = self.word(input_ids) + self.position(positions)[None] + self.token_type(token_type_ids)
        x = self.ln(x)
        keep = (attention_mask != 0)[:, None, None, :]  # [b, 1, 1, s]: keys each query may see
        bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, MASK_BIAS)
        for layer in self.layers:
            x = layer(x, bias)
        return x.float()

    @torch.no_grad()
    def load_hf(self, w: dict[str, torch.Tensor]) -> None:
        """Copies HF BERT weights (names without a prefix) into this module."""
        used = set()

        def take(name):
            used.add(name)
            if name not in w:
                raise KeyError(f"{WEIGHTS}: no tensor {name}")
            return w[name]

        def copy(param, name):
            t = take(name)
            if tuple(t.shape) != tuple(param.shape):
                raise ValueError(f"{name}: shape {tuple(t.shape)}, expected {tuple(param.shape)}")
            param.copy_(t)

        copy(self.word.weight, "embeddings.word_embeddings.weight")
        copy(self.position.weight, "embeddings.position_embeddings.weight")
        copy(self.token_type.weight, "embeddings.token_type_embeddings.weight")
        copy(self.ln.weight, "embeddings.LayerNorm.weight")
        copy(self.ln.bias, "embeddings.LayerNorm.bias")
        for i, layer in enumerate(self.layers):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            layer.qkv.weight.copy_(torch.cat([take(a + n + ".weight") for n in ("query", "key", "value")]))
            layer.qkv.bias.copy_(torch.cat([take(a + n + ".bias") for n in ("query", "key", "value")]))
            copy(layer.attn_out.weight, p + "attention.output.dense.weight")
            copy(layer.attn_out.bias, p + "attention.output.dense.bias")
            copy(layer.ln1.weight, p + "attention.output.LayerNorm.weight")
            copy(layer.ln1.bias, p + "attention.output.LayerNorm.bias")
            copy(layer.fc1.weight, p + "intermediate.dense.weight")
            copy(layer.fc1.bias, p + "intermediate.dense.bias")
            copy(layer.fc2.weight, p + "output.dense.weight")
            copy(layer.fc2.bias, p + "output.dense.bias")
            copy(layer.ln2.weight, p + "output.LayerNorm.weight")
            copy(layer.ln2.bias, p + "output.LayerNorm.bias")
        extra = ("pooler.", "embeddings.position_ids")  # HF pooler head; a constant buffer
        left = sorted(k for k in w if k not in used and not k.startswith(extra))
        if left:
            _log(f"unused weights: {left[:6]}{' ...' if len(left) > 6 else ''}")


def _strip_prefix(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    anchor = "embeddings.word_embeddings.weight"
    prefixes = sorted(k[: -len(anchor)] for k in w if k.endswith(anchor))
    if not prefixes:
        raise KeyError(f"{WEIGHTS}: no tensor named *{anchor}")
    return {k[len(prefixes[0]):]: v for k, v in w.items() if k.startswith(prefixes[0])}


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build(device: str = "cpu", dtype: torch.dtype | None = None) -> MiniLM:
    """The model, weights loaded, on `device` in `dtype` (default: fp16 on CUDA, fp32 else)."""
    dev = torch.device(device)
    if dtype is None:
        name = os.environ.get("MINILM_DTYPE")
        if name:
            if name not in _DTYPES:
                raise ValueError(f"MINILM_DTYPE={name!r}: want one of {sorted(_DTYPES)}")
            dtype = _DTYPES[name]
        else:
            dtype = torch.float16 if dev.type == "cuda" else torch.float32
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS} is missing: run bench/gpu/pack.sh and carry its out/")
    model = MiniLM(load_config(CONFIG))
    model.load_hf({k: v.float() for k, v in _strip_prefix(read_safetensors(WEIGHTS)).items()})
    return model.to(device=dev, dtype=dtype).eval()


def make(device: str):
    """The sidecar's factory: (module, inputs, outputs)."""
    model = build(device)
    dtype = next(model.parameters()).dtype
    # One small forward now, so a kernel that fails on this device/torch fails at load time
    # (the SDPA path falls back to the plain one) rather than on every request.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], device=device)
    mask = (ids != 0).long()
    with torch.inference_mode():
        try:
            out = model(ids, mask, torch.zeros_like(ids))
        except RuntimeError as e:
            if not model.layers[0].use_sdpa:
                raise
            _log(f"scaled_dot_product_attention failed ({e}); using plain attention")
            for layer in model.layers:
                layer.use_sdpa = False
            out = model(ids, mask, torch.zeros_like(ids))
    if not torch.isfinite(out).all():
        raise RuntimeError("the smoke forward pass gave non-finite values")
    where = device
    if torch.device(device).type == "cuda":
        where = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    else:
        where = f"{device} ({torch.get_num_threads()} threads)"
    _log(
        f"loaded {WEIGHTS.name} on {where}, {str(dtype).replace('torch.', '')}, "
        f"torch {torch.__version__}, attention: {'sdpa' if model.layers[0].use_sdpa else 'plain'}"
    )
    seq = [-1, -1]
    inputs = [("input_ids", "INT64", seq), ("attention_mask", "INT64", seq),
              ("token_type_ids", "INT64", seq)]
    outputs = [("last_hidden_state", "FP32", [-1, -1, model.hidden])]
    return model, inputs, outputs
