"""The `paraphrase` workload in plain Python, shared by both peer servers.

tokenize (HF `tokenizers`, testdata/minilm/tokenizer.json, truncation and fixed padding to
max_length 128, as the bert-tokenizer component and scripts/tokenizer_reference.py do)
→ all-MiniLM-L6-v2 (testdata/minilm/model.onnx, Python onnxruntime, CPU, default options
like Conduit's ort executor: ORT_ENABLE_ALL, intra-op threads = ORT's default)
→ masked mean pooling, L2 normalisation, cosine of rows (0, 1), (2, 3), … in float32, as
examples/pooling/src/lib.rs does.

    from paraphrase import Tokenizer, MiniLM, embed_and_score
    tok, model = Tokenizer(), MiniLM()
    ids, mask, types = tok(["a sentence", "another one"])
    emb, sims = embed_and_score(model(ids, mask, types), mask)
"""
import os
import pathlib

import numpy as np

# Conduit's tokenizer is single-threaded; HF's would spread a 2-text batch over rayon
# threads (and warns when a process that used them forks, as Ray's workers do).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER_JSON = REPO / "testdata" / "minilm" / "tokenizer.json"
MODEL_ONNX = REPO / "testdata" / "minilm" / "model.onnx"
MAX_LENGTH = 128
HIDDEN = 384


class Tokenizer:
    """Texts → (input_ids, attention_mask, token_type_ids), each INT64 [len(texts), length].

    `padding="max_length"`: length is max_length; `"longest"`: the longest row's (as the
    bert-tokenizer component's `padding = "longest"`).
    """

    def __init__(self, path=TOKENIZER_JSON, max_length=MAX_LENGTH, padding="max_length"):
        from tokenizers import Tokenizer as HfTokenizer

        tok = HfTokenizer.from_file(str(path))
        tok.no_truncation()
        tok.no_padding()
        tok.enable_truncation(max_length=max_length, stride=0, strategy="longest_first", direction="right")
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding is max_length or longest, not {padding!r}")
        tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]",
                           length=max_length if padding == "max_length" else None)
        self._tok = tok

    def __call__(self, texts):
        texts = [t.decode("utf-8") if isinstance(t, (bytes, bytearray, np.bytes_)) else str(t) for t in texts]
        encs = self._tok.encode_batch(texts, add_special_tokens=True)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        types = np.array([e.type_ids for e in encs], dtype=np.int64)
        return ids, mask, types


class MiniLM:
    """(input_ids, attention_mask, token_type_ids) INT64 [b, s] → last_hidden_state FP32 [b, s, 384]."""

    def __init__(self, path=MODEL_ONNX, intra_threads=0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_threads > 0:
            opts.intra_op_num_threads = intra_threads
        self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids, attention_mask, token_type_ids):
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
            "token_type_ids": np.ascontiguousarray(token_type_ids, dtype=np.int64),
        }
        return self._sess.run(["last_hidden_state"], feeds)[0]


def embed_and_score(hidden, mask):
    """examples/pooling/src/lib.rs `embed_and_score`, in float32.

    hidden FP32 [b, s, d], mask INT64 [b, s] → (embeddings FP32 [b, d], similarities FP32 [b // 2]).
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    m = (np.asarray(mask) != 0).astype(np.float32)
    count = np.maximum(m.sum(axis=1, keepdims=True), np.float32(1e-9))
    emb = np.einsum("bsd,bs->bd", hidden, m) / count
    norm = np.maximum(np.sqrt((emb * emb).sum(axis=1, keepdims=True)), np.float32(1e-12))
    emb = (emb / norm).astype(np.float32)
    pairs = emb.shape[0] // 2
    a, b = emb[0 : 2 * pairs : 2], emb[1 : 2 * pairs : 2]
    dot = (a * b).sum(axis=1)
    na = np.sqrt((a * a).sum(axis=1))
    nb = np.sqrt((b * b).sum(axis=1))
    sims = (dot / np.maximum(na * nb, np.float32(1e-12))).astype(np.float32)
    return emb, sims


def pad_rows(arrays, value=0):
    """Concatenates [n_i, s_i] arrays along rows, right-padding each to the longest s_i."""
    s = max(a.shape[1] for a in arrays)
    return np.concatenate([np.pad(a, ((0, 0), (0, s - a.shape[1])), constant_values=value) for a in arrays])
