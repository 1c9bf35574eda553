#!/usr/bin/env python3
"""Builds the all-MiniLM-L6-v2 BERT encoder as an ONNX graph from its safetensors weights.

No torch: the graph is written node by node with `onnx.helper`, the weights come from
`safetensors` + `numpy`. Usage (from the repo root; `make onnx-model` runs both steps):

    .venv/bin/python scripts/minilm_to_onnx.py OUT.onnx               # build (+ check)
    .venv/bin/python scripts/minilm_to_onnx.py OUT.onnx --validate    # build, then validate
    .venv/bin/python scripts/minilm_to_onnx.py OUT.onnx --validate-only

The graph (opset 17, IR version 8, standard ONNX ops only, FP32 initializers):

    inputs   input_ids, attention_mask, token_type_ids   INT64 ["batch", "seq"]
    output   last_hidden_state                           FP32  ["batch", "seq", 384]

    embeddings  Gather(word, input_ids) + Slice(position, 0..seq) + Gather(token_type,
                token_type_ids) -> LayerNormalization(eps 1e-12)
    mask        (1 - Cast<float>(attention_mask)) * -10000, Unsqueeze to [batch, 1, 1, seq]
    6 x layer   Q/K/V = MatMul + Add; Reshape [b, s, 12, 64], Transpose to heads;
                Softmax(Q K^T * 0.125 + mask); context = P V, back to [b, s, 384];
                dense + residual -> LayerNormalization;
                dense -> GELU (0.5 x (1 + Erf(x / sqrt 2))) -> dense + residual -> LayerNormalization

No pooling or normalisation: those live in the WASM post-processing component. Linear
weights are stored transposed ([in, out], initializer name = HF name + ".T"); every other
initializer keeps its HF name. The file is byte-for-byte the same on every run; its sha256
is printed.

--validate runs onnxruntime on the file and the independent numpy forward pass
(scripts/minilm_numpy.py, float64, straight from the safetensors) on tokenized inputs: all
sentences of tests/data/minilm_sentences.json as one right-padded batch, plus two sentence
pairs (token_type_ids 1), then each sentence alone. It asserts max |onnx - numpy| <= 1e-4
over last_hidden_state at positions with attention_mask 1 (padded positions are not
compared: their values are unused), and that a sentence's outputs in the padded batch match
its unpadded single run. Semantic check: mean-pool over the mask, L2-normalise, cosine of
the labelled pairs; every paraphrase pair must beat every unrelated pair by >= 0.2.
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm_numpy  # noqa: E402  (the safetensors loader; the forward pass is used by --validate only)

OPSET = 17
IR_VERSION = 8  # goes with opset 17, so older runtimes load it too
PRODUCER = "conduit-minilm-to-onnx"
PRODUCER_VERSION = "1"
MASK_NEG = -10000.0  # additive mask for padded keys; exp(-1e4) is exactly 0 in fp32 (and fits fp16)
TOLERANCE = 1e-4
MARGIN = 0.2


class Graph:
    """Accumulates nodes / initializers with deterministic names."""

    def __init__(self):
        self.nodes = []
        self.inits = []
        self._init_names = set()

    def init(self, name, array):
        if name not in self._init_names:
            self._init_names.add(name)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const_f(self, name, value):
        return self.init(name, np.array(value, dtype=np.float32))

    def const_i(self, name, values):
        return self.init(name, np.array(values, dtype=np.int64))

    def op(self, op_type, inputs, name, **attrs):
        out = name + "_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out


def build(model_dir):
    cfg = minilm_numpy.load_config(os.path.join(model_dir, "config.json"))
    w = minilm_numpy.load_weights(os.path.join(model_dir, "model.safetensors"))
    hidden = int(cfg["hidden_size"])
    n_heads = int(cfg["num_attention_heads"])
    head_dim = hidden // n_heads
    eps = float(cfg["layer_norm_eps"])
    n_layers = int(cfg["num_hidden_layers"])
    assert hidden % n_heads == 0

    g = Graph()

    def weight(name):
        a = w[name]
        assert a.dtype == np.float32, (name, a.dtype)
        return g.init(name, a)

    def linear(x, hf_name, scope):  # HF weight [out, in] -> MatMul by W^T, then Add bias
        wt = g.init(hf_name + ".weight.T", w[hf_name + ".weight"].T.astype(np.float32))
        y = g.op("MatMul", [x, wt], scope + "/MatMul")
        return g.op("Add", [y, weight(hf_name + ".bias")], scope + "/Add")

    def layer_norm(x, hf_name, scope):
        return g.op("LayerNormalization", [x, weight(hf_name + ".weight"), weight(hf_name + ".bias")],
                    scope, axis=-1, epsilon=eps)

    # --- embeddings ---
    word = g.op("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"],
                "/embeddings/word_embeddings/Gather", axis=0)
    seq_len = g.op("Shape", ["input_ids"], "/embeddings/Shape", start=1, end=2)  # [1]: seq
    pos = g.op("Slice", [weight("embeddings.position_embeddings.weight"), g.const_i("const_zero_1d", [0]),
                         seq_len, g.const_i("const_zero_1d", [0])],
               "/embeddings/position_embeddings/Slice")  # [seq, hidden]: positions 0..seq-1
    ttype = g.op("Gather", [weight("embeddings.token_type_embeddings.weight"), "token_type_ids"],
                 "/embeddings/token_type_embeddings/Gather", axis=0)
    x = g.op("Add", [word, pos], "/embeddings/Add")
    x = g.op("Add", [x, ttype], "/embeddings/Add_1")
    x = layer_norm(x, "embeddings.LayerNorm", "/embeddings/LayerNorm")

    # --- additive attention mask [batch, 1, 1, seq] ---
    m = g.op("Cast", ["attention_mask"], "/mask/Cast", to=TensorProto.FLOAT)
    m = g.op("Sub", [g.const_f("const_one", 1.0), m], "/mask/Sub")
    m = g.op("Mul", [m, g.const_f("const_mask_neg", MASK_NEG)], "/mask/Mul")
    mask = g.op("Unsqueeze", [m, g.const_i("const_axes_1_2", [1, 2])], "/mask/Unsqueeze")

    heads_shape = g.const_i("const_heads_shape", [0, 0, n_heads, head_dim])
    merged_shape = g.const_i("const_merged_shape", [0, 0, hidden])
    scale = g.const_f("const_attn_scale", 1.0 / math.sqrt(head_dim))
    sqrt2 = g.const_f("const_sqrt2", math.sqrt(2.0))
    half = g.const_f("const_half", 0.5)
    one = g.const_f("const_one", 1.0)

    for i in range(n_layers):
        p, s = f"encoder.layer.{i}.", f"/encoder/layer.{i}"
        a = s + "/attention/self"

        def to_heads(t, name, perm):
            t = g.op("Reshape", [t, heads_shape], f"{a}/{name}/Reshape")
            return g.op("Transpose", [t], f"{a}/{name}/Transpose", perm=perm)

        q = to_heads(linear(x, p + "attention.self.query", a + "/query"), "query", [0, 2, 1, 3])  # [b,h,s,d]
        k = to_heads(linear(x, p + "attention.self.key", a + "/key"), "key", [0, 2, 3, 1])  # [b,h,d,s]
        v = to_heads(linear(x, p + "attention.self.value", a + "/value"), "value", [0, 2, 1, 3])  # [b,h,s,d]
        scores = g.op("MatMul", [q, k], a + "/scores/MatMul")  # [b,h,s,s]
        scores = g.op("Mul", [scores, scale], a + "/scores/Mul")
        scores = g.op("Add", [scores, mask], a + "/scores/Add")
        probs = g.op("Softmax", [scores], a + "/Softmax", axis=-1)
        ctx = g.op("MatMul", [probs, v], a + "/context/MatMul")  # [b,h,s,d]
        ctx = g.op("Transpose", [ctx], a + "/context/Transpose", perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merged_shape], a + "/context/Reshape")  # [b,s,hidden]

        o = s + "/attention/output"
        y = linear(ctx, p + "attention.output.dense", o + "/dense")
        y = g.op("Add", [y, x], o + "/residual/Add")
        x = layer_norm(y, p + "attention.output.LayerNorm", o + "/LayerNorm")

        h = linear(x, p + "intermediate.dense", s + "/intermediate/dense")
        e = g.op("Div", [h, sqrt2], s + "/intermediate/gelu/Div")
        e = g.op("Erf", [e], s + "/intermediate/gelu/Erf")
        e = g.op("Add", [e, one], s + "/intermediate/gelu/Add")
        e = g.op("Mul", [h, e], s + "/intermediate/gelu/Mul")
        h = g.op("Mul", [e, half], s + "/intermediate/gelu/Mul_1")

        y = linear(h, p + "output.dense", s + "/output/dense")
        y = g.op("Add", [y, x], s + "/output/residual/Add")
        x = layer_norm(y, p + "output.LayerNorm", s + "/output/LayerNorm")

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="/output/Identity"))

    ids_type = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])  # noqa: E731
    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2",
        [ids_type("input_ids"), ids_type("attention_mask"), ids_type("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", hidden])],
        initializer=g.inits,
        doc_string="BERT encoder of sentence-transformers/all-MiniLM-L6-v2 (no pooling); "
                   "built from model.safetensors by scripts/minilm_to_onnx.py",
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=PRODUCER, producer_version=PRODUCER_VERSION)
    model.ir_version = IR_VERSION
    return model


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(model, out):
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)  # never leave a half-written file that looks up to date


# ----------------------------------------------------------------------------- validation

def encode(tok, texts, pairs=None):
    """Right-padded batch: (input_ids, attention_mask, token_type_ids) int64 [batch, seq]."""
    tok.no_truncation()
    tok.no_padding()
    tok.enable_truncation(max_length=128)
    tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]")
    encs = tok.encode_batch(list(zip(texts, pairs)) if pairs else list(texts))
    arr = lambda key: np.array([getattr(e, key) for e in encs], dtype=np.int64)  # noqa: E731
    return arr("ids"), arr("attention_mask"), arr("type_ids")


def cosine_table(sentences_doc, embeddings):
    idx = {s["id"]: i for i, s in enumerate(sentences_doc["sentences"])}
    rows = []
    for pr in sentences_doc["pairs"]:
        ea, eb = embeddings[idx[pr["a"]]], embeddings[idx[pr["b"]]]
        rows.append((pr["a"], pr["b"], pr["label"], float(np.dot(ea, eb))))
    return rows


def check_margin(rows, margin=MARGIN):
    para = [c for *_, lab, c in rows if lab == "paraphrase"]
    unrel = [c for *_, lab, c in rows if lab == "unrelated"]
    assert para and unrel, "need paraphrase and unrelated pairs"
    gap = min(para) - max(unrel)
    return gap, gap >= margin


def validate(onnx_path, model_dir, sentences_path):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    with open(sentences_path, encoding="utf-8") as f:
        doc = json.load(f)
    texts = [s["text"] for s in doc["sentences"]]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ref = minilm_numpy.MiniLM.from_dir(model_dir)  # float64
    sessions = {}
    for label, level in (("ort-all-opts", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                         ("ort-no-opts", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        sessions[label] = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    print(f"validate: onnxruntime {ort.__version__}, numpy reference in float64")

    def run(sess, ids, am, tt):
        return sess.run(["last_hidden_state"],
                        {"input_ids": ids, "attention_mask": am, "token_type_ids": tt})[0]

    cases = [
        ("all sentences, one right-padded batch", encode(tok, texts)),
        ("two sentence pairs (token_type_ids 1), padded batch",
         encode(tok, [texts[0], texts[2]], [texts[1], texts[9]])),
    ]
    worst = 0.0
    batch_out = None
    for name, (ids, am, tt) in cases:
        want = ref.forward(ids, am, tt)
        keep = am.astype(bool)
        assert want.shape == ids.shape + (ref.hidden,)
        for label, sess in sessions.items():
            got = run(sess, ids, am, tt)
            assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape)
            diff = float(np.abs(got.astype(np.float64) - want)[keep].max())
            worst = max(worst, diff)
            print(f"validate: {name} {list(ids.shape)}, {int(keep.sum())} real tokens, "
                  f"{int((~keep).sum())} padded: max |{label} - numpy| = {diff:.3e}")
            if batch_out is None and label == "ort-all-opts":
                batch_out = (got, am)
    assert worst <= TOLERANCE, f"max abs diff {worst} > {TOLERANCE}"

    # Padding must not change the real positions: each sentence alone vs in the padded batch.
    got_b, am_b = batch_out
    pad_diff = 0.0
    for i, t in enumerate(texts):
        ids, am, tt = encode(tok, [t])
        alone = run(sessions["ort-all-opts"], ids, am, tt)[0]
        n = ids.shape[1]
        assert int(am_b[i].sum()) == n
        pad_diff = max(pad_diff, float(np.abs(alone - got_b[i, :n]).max()))
    print(f"validate: each sentence alone vs in the padded batch: max diff = {pad_diff:.3e}")
    assert pad_diff <= TOLERANCE, f"padding changes real positions by {pad_diff}"

    emb = minilm_numpy.mean_pool_normalize(got_b, am_b)
    rows = cosine_table(doc, emb)
    for a, b, lab, c in rows:
        print(f"validate: cos {c:+.4f}  {lab:10s}  {a} / {b}")
    gap, ok = check_margin(rows)
    print(f"validate: min(paraphrase) - max(unrelated) = {gap:.4f} (need >= {MARGIN})")
    assert ok, "paraphrase pairs do not clearly beat unrelated pairs"
    print(f"validate: OK, max abs diff {worst:.3e} <= {TOLERANCE} ({time.perf_counter() - t0:.1f} s)")
    return worst


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="ONNX file to write (or validate with --validate-only)")
    ap.add_argument("--model-dir", default="testdata/minilm")
    ap.add_argument("--sentences", default="tests/data/minilm_sentences.json")
    ap.add_argument("--validate", action="store_true", help="validate after building")
    ap.add_argument("--validate-only", action="store_true", help="validate OUT without rebuilding it")
    args = ap.parse_args(argv)

    if not args.validate_only:
        t0 = time.perf_counter()
        model = build(args.model_dir)
        write(model, args.out)
        print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes, {len(model.graph.node)} nodes, "
              f"{len(model.graph.initializer)} initializers, opset {OPSET}, IR {IR_VERSION} "
              f"({time.perf_counter() - t0:.1f} s)")
    print(f"sha256 {sha256_file(args.out)}  {args.out}")
    if args.validate or args.validate_only:
        validate(args.out, args.model_dir, args.sentences)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
