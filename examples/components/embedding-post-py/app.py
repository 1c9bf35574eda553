"""`embedding-post-py`: the Python twin of `embedding-post`.

Turns a BERT encoder's `last_hidden_state` into sentence embeddings (mean
pooling over the attention mask, then L2 normalisation) and scores
consecutive pairs of sentences by cosine similarity; the math lives in
`pooling.py` (pure Python, shared with the benchmark's PyTriton backend).

Inputs: `last_hidden_state` FP32 `[batch, seq, hidden]`, `attention_mask`
INT64 `[batch, seq]`. Outputs: `embeddings` FP32 `[batch, hidden]`,
`similarity` FP32 `[batch / 2]` (rows 0·1, 2·3, …). `batch` must be a
positive even number.
"""

from array import array

from conduit_guest import DataType, InvalidInput, Processor, Signature, Tensor, export
from pooling import embed_and_score


class EmbeddingPost(Processor):
    def describe(self):
        return (
            Signature()
            .input("last_hidden_state", DataType.FP32, [-1, -1, -1])
            .input("attention_mask", DataType.INT64, [-1, -1])
            .output("embeddings", DataType.FP32, [-1, -1])
            .output("similarity", DataType.FP32, [-1])
        )

    def process(self, inputs, params):
        hidden = inputs.take("last_hidden_state")
        mask = inputs.take("attention_mask")
        hs, ms = hidden.shape, mask.shape
        if len(hs) != 3 or len(ms) != 2 or hs[0] != ms[0] or hs[1] != ms[1]:
            raise InvalidInput(
                f"last_hidden_state {list(hs)} and attention_mask {list(ms)} must be "
                "[batch, seq, hidden] and [batch, seq]"
            )
        if hidden.dtype != DataType.FP32:
            raise InvalidInput(f"last_hidden_state must be FP32, not {hidden.dtype.name}")
        if hs[0] < 2 or hs[0] % 2 != 0:
            raise InvalidInput(
                "similarity scores rows in pairs (0·1, 2·3, …): send a positive even number "
                f"of sentences, got {hs[0]}"
            )
        batch, seq, dim = hs

        # Read only each sequence's unmasked tokens: with padding to a fixed
        # length most of `last_hidden_state` is padding.
        def read_rows(b, lo, hi):
            rows = array("f")
            rows.frombytes(hidden.read_raw((b * seq + lo) * dim * 4, (hi - lo) * dim * 4))
            return rows

        emb, sims = embed_and_score(read_rows, mask.read_i64(), batch, seq, dim)
        return {
            "similarity": Tensor.from_f32([len(sims)], sims),
            "embeddings": Tensor.from_f32([batch, dim], emb),
        }


export(EmbeddingPost)
