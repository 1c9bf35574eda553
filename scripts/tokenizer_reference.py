#!/usr/bin/env python3
"""Reference encodings for the bert-tokenizer component, from HF `tokenizers`.

Usage (from the repo root, after scripts/fetch_model.sh):

    .venv/bin/python scripts/tokenizer_reference.py tests/data/tokenizer_corpus.json \
        testdata/tokenizer_reference.json

CORPUS is a JSON array of {"text": str, "pair": str | null, "max_length": int}. OUT is a
JSON array, aligned with CORPUS, of {"input_ids", "attention_mask", "token_type_ids"}
(each a list of exactly max_length ints) and "truncated" (how many tokens truncation cut). The tokenizer is testdata/minilm/tokenizer.json
(override with --tokenizer). Truncation (longest_first) and fixed-length padding are set
explicitly for every case, overriding whatever tokenizer.json carries.
"""
import argparse
import json
import sys

from tokenizers import Tokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--tokenizer", default="testdata/minilm/tokenizer.json")
    args = ap.parse_args()

    tok = Tokenizer.from_file(args.tokenizer)
    with open(args.corpus, encoding="utf-8") as f:
        corpus = json.load(f)

    out = []
    for i, case in enumerate(corpus):
        n = int(case["max_length"])
        tok.no_truncation()
        tok.no_padding()
        tok.enable_truncation(max_length=n, stride=0, strategy="longest_first", direction="right")
        tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]", length=n)
        enc = tok.encode(case["text"], case.get("pair"), add_special_tokens=True)
        row = {
            "input_ids": list(enc.ids),
            "attention_mask": list(enc.attention_mask),
            "token_type_ids": list(enc.type_ids),
        }
        for k, v in row.items():
            if len(v) != n:
                print(f"case {i}: {k} has length {len(v)}, expected max_length {n} "
                      f"(max_length too small for the special tokens?)", file=sys.stderr)
                return 1
        # How many tokens truncation cut: the untruncated token count (special tokens
        # added) less the row's real tokens.
        tok.no_truncation()
        tok.no_padding()
        full = tok.encode(case["text"], case.get("pair"), add_special_tokens=True)
        row["truncated"] = len(full.ids) - sum(enc.attention_mask)
        out.append(row)

    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(out)} reference encodings to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
