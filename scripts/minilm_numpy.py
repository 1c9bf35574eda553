#!/usr/bin/env python3
"""An independent numpy forward pass of the HF BERT encoder (all-MiniLM-L6-v2).

It reads `model.safetensors` + `config.json` directly (never the ONNX file) and exists to
validate scripts/minilm_to_onnx.py. It is deliberately written differently from the graph:

- computes in float64 by default (weights upcast), so it is a "truth" for the float32 graph;
- Linear layers use the HF [out, in] weights as `x @ W.T + b` (the graph stores W.T);
- attention masks keys with `np.where(mask, scores, -inf)` (the graph adds (1-mask)*-1e4);
- layer norm is written out (mean / biased variance), GELU uses `math.erf` element-wise.

Importable (`from minilm_numpy import MiniLM, mean_pool_normalize`) or runnable:

    .venv/bin/python scripts/minilm_numpy.py [--model-dir testdata/minilm] "some text" ...

which prints the first values of last_hidden_state and the pooled embedding per text.
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file

# The weight names every BERT checkpoint has, minus a possible prefix ("bert.", ...).
_ANCHOR = "embeddings.word_embeddings.weight"


def load_weights(path):
    """Loads a safetensors file; returns {name without model prefix: np.ndarray}."""
    raw = load_file(path)
    prefixes = sorted(k[: -len(_ANCHOR)] for k in raw if k.endswith(_ANCHOR))
    if not prefixes:
        raise KeyError(f"{path}: no tensor named *{_ANCHOR}; keys: {sorted(raw)[:8]}...")
    prefix = prefixes[0]
    return {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}


def load_config(path):
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act {cfg['hidden_act']!r}: only erf GELU is implemented")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are implemented")
    return cfg


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu_erf(x):
    """HF `gelu` (exact): 0.5 * x * (1 + erf(x / sqrt(2)))."""
    e = _erf(x / math.sqrt(2.0)).astype(x.dtype)
    return 0.5 * x * (1.0 + e)


def layer_norm(x, gamma, beta, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def linear(x, w, b):
    """torch.nn.Linear with an HF weight of shape [out, in]."""
    return x @ w.T + b


class MiniLM:
    """BERT encoder forward pass; `forward` returns last_hidden_state [batch, seq, hidden]."""

    def __init__(self, weights, config, dtype=np.float64):
        self.cfg = config
        self.dtype = dtype
        self.w = {k: v.astype(dtype) for k, v in weights.items() if v.dtype.kind == "f"}
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])

    @classmethod
    def from_dir(cls, model_dir, dtype=np.float64):
        return cls(load_weights(os.path.join(model_dir, "model.safetensors")),
                   load_config(os.path.join(model_dir, "config.json")), dtype)

    def forward(self, input_ids, attention_mask, token_type_ids):
        w, eps = self.w, self.eps
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.asarray(attention_mask, dtype=np.int64) != 0
        tt = np.asarray(token_type_ids, dtype=np.int64)
        b, s = ids.shape

        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(s)][None, :, :]
             + w["embeddings.token_type_embeddings.weight"][tt])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

        nh, hd = self.heads, self.hidden // self.heads
        key_ok = mask[:, None, None, :]  # [b, 1, 1, s]: which keys each query may attend to
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def heads(t):  # [b, s, hidden] -> [b, nh, s, hd]
                return t.reshape(b, s, nh, hd).transpose(0, 2, 1, 3)

            q = heads(linear(x, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"]))
            k = heads(linear(x, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"]))
            v = heads(linear(x, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"]))
            scores = np.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(hd)
            scores = np.where(key_ok, scores, -np.inf)
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(axis=-1, keepdims=True)
            ctx = np.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3).reshape(b, s, nh * hd)

            attn = linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
            x = layer_norm(attn + x, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], eps)
            h = gelu_erf(linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            h = linear(h, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = layer_norm(h + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x


def mean_pool_normalize(hidden, attention_mask):
    """sentence-transformers pooling: mean over positions with mask 1, then L2-normalise.

    hidden [batch, seq, h], attention_mask [batch, seq] -> [batch, h] (float64)."""
    h = np.asarray(hidden, dtype=np.float64)
    m = np.asarray(attention_mask, dtype=np.float64)[:, :, None]
    pooled = (h * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def main(argv):
    import argparse

    from tokenizers import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("texts", nargs="+")
    ap.add_argument("--model-dir", default="testdata/minilm")
    args = ap.parse_args(argv)
    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=128)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    encs = tok.encode_batch(args.texts)
    ids = np.array([e.ids for e in encs])
    am = np.array([e.attention_mask for e in encs])
    tt = np.array([e.type_ids for e in encs])
    model = MiniLM.from_dir(args.model_dir)
    out = model.forward(ids, am, tt)
    emb = mean_pool_normalize(out, am)
    for t, o, e in zip(args.texts, out, emb):
        print(f"{t!r}: hidden[0,:4]={np.round(o[0, :4], 5).tolist()} emb[:4]={np.round(e[:4], 5).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
