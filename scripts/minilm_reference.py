#!/usr/bin/env python3
"""Reference outputs of the all-MiniLM-L6-v2 ONNX model, from Python onnxruntime.

Usage (from the repo root; `make minilm-reference` runs it):

    .venv/bin/python scripts/minilm_reference.py testdata/minilm/model.onnx \
        tests/data/minilm_sentences.json testdata/minilm_reference.json

SENTENCES is {"sentences": [{"id", "text"}, ...], "pairs": [{"a", "b", "label"}, ...]}
(see tests/data/minilm_sentences.json). Each text is tokenized alone with
testdata/minilm/tokenizer.json (override with --tokenizer): [CLS] text [SEP], truncation
at max_length 128, NO padding. The model is run on each sentence alone (batch 1, seq = its
token count, so no padded positions exist), with onnxruntime's CPU provider at its default
graph optimisation level (ORT_ENABLE_ALL). The script also runs all sentences as one
right-padded batch and checks the real positions agree with the single runs (<= 1e-5).

OUT is one JSON object:

    {
      "model": str, "model_sha256": str,          # the ONNX file used
      "onnxruntime_version": str, "tokenizer": str,
      "max_length": 128, "hidden_size": 384,
      "sentences": [                              # same order as SENTENCES
        {
          "id": str, "text": str,
          "seq_len": n,                           # token count incl. [CLS]/[SEP]
          "input_ids": [n ints],
          "attention_mask": [n ints],             # all 1
          "token_type_ids": [n ints],             # all 0
          "last_hidden_state": [n*384 floats],    # row-major [seq, 384] (batch dim dropped)
          "embedding": [384 floats]               # mean over the mask, then L2-normalised
        }, ...
      ],
      "pairs": [{"a": id, "b": id, "label": "paraphrase"|"unrelated",
                 "cosine": float}, ...]           # dot product of the two embeddings
    }

Floats: last_hidden_state holds the float32 values onnxruntime returned, written as the
exact decimal of each float32 (parse as f32 to get the same bits). embedding and cosine are
computed in float64 from those float32 values. Consumers compare with tolerance 1e-4.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilm_numpy import mean_pool_normalize  # noqa: E402

MAX_LENGTH = 128


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("sentences")
    ap.add_argument("out")
    ap.add_argument("--tokenizer", default="testdata/minilm/tokenizer.json")
    args = ap.parse_args()

    with open(args.sentences, encoding="utf-8") as f:
        doc = json.load(f)
    tok = Tokenizer.from_file(args.tokenizer)
    tok.no_padding()
    tok.no_truncation()
    tok.enable_truncation(max_length=MAX_LENGTH, stride=0, strategy="longest_first", direction="right")
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])

    def run(ids, am, tt):
        return sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": am, "token_type_ids": tt})[0]

    rows, singles = [], []
    for s in doc["sentences"]:
        enc = tok.encode(s["text"], add_special_tokens=True)
        ids = np.array([enc.ids], dtype=np.int64)
        am = np.array([enc.attention_mask], dtype=np.int64)
        tt = np.array([enc.type_ids], dtype=np.int64)
        hidden = run(ids, am, tt)
        assert hidden.dtype == np.float32 and hidden.shape == ids.shape + (384,), hidden.shape
        singles.append(hidden[0])
        emb = mean_pool_normalize(hidden, am)[0]
        rows.append({
            "id": s["id"], "text": s["text"], "seq_len": int(ids.shape[1]),
            "input_ids": enc.ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.type_ids,
            "last_hidden_state": [float(v) for v in hidden[0].reshape(-1)],
            "embedding": [float(v) for v in emb],
        })

    # The same sentences as one right-padded batch: real positions must match the single runs.
    n = max(r["seq_len"] for r in rows)
    pad = lambda key: np.array([r[key] + [0] * (n - r["seq_len"]) for r in rows], dtype=np.int64)  # noqa: E731
    batch = run(pad("input_ids"), pad("attention_mask"), pad("token_type_ids"))
    diff = max(float(np.abs(batch[i, : r["seq_len"]] - singles[i]).max()) for i, r in enumerate(rows))
    assert diff <= 1e-5, f"padded batch differs from single runs by {diff}"

    index = {r["id"]: r for r in rows}
    pairs = []
    for p in doc["pairs"]:
        c = float(np.dot(np.array(index[p["a"]]["embedding"]), np.array(index[p["b"]]["embedding"])))
        pairs.append({"a": p["a"], "b": p["b"], "label": p["label"], "cosine": c})

    out = {
        "model": args.model, "model_sha256": sha256_file(args.model),
        "onnxruntime_version": ort.__version__, "tokenizer": args.tokenizer,
        "max_length": MAX_LENGTH, "hidden_size": 384,
        "sentences": rows, "pairs": pairs,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    for p in pairs:
        print(f"cos {p['cosine']:+.4f}  {p['label']:10s}  {p['a']} / {p['b']}")
    print(f"wrote {len(rows)} sentences ({sum(r['seq_len'] for r in rows)} tokens) to {args.out}; "
          f"padded-batch vs single max diff {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
