//! `embedding-post`: turns a BERT encoder's `last_hidden_state` into sentence
//! embeddings (mean pooling over the attention mask, then L2 normalisation)
//! and scores consecutive pairs of sentences by cosine similarity.
//!
//! Inputs: `last_hidden_state` FP32 `[batch, seq, hidden]`, `attention_mask`
//! INT64 `[batch, seq]`. Outputs: `embeddings` FP32 `[batch, hidden]`,
//! `similarity` FP32 `[batch / 2]` (rows 0·1, 2·3, …).
//!
//! `batch` must be a positive even number: every row has a partner to be
//! scored against. Any other row count is an `invalid-input` error, never an
//! empty or partial `similarity`.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};

    struct EmbeddingPost;

    impl Processor for EmbeddingPost {
        fn describe() -> Signature {
            Signature::new()
                .input("last_hidden_state", DataType::Fp32, [-1, -1, -1])
                .input("attention_mask", DataType::Int64, [-1, -1])
                .output("embeddings", DataType::Fp32, [-1, -1])
                .output("similarity", DataType::Fp32, [-1])
        }

        fn process(mut inputs: Inputs, _params: Params) -> Result<Outputs, Error> {
            let hidden = inputs.take("last_hidden_state")?;
            let mask = inputs.take("attention_mask")?;
            let (hs, ms) = (hidden.shape(), mask.shape());
            if hs.len() != 3 || ms.len() != 2 || hs[0] != ms[0] || hs[1] != ms[1] {
                return Err(Error::invalid_input(format!(
                    "last_hidden_state {hs:?} and attention_mask {ms:?} must be [batch, seq, hidden] and [batch, seq]"
                )));
            }
            if hidden.dtype() != DataType::Fp32 {
                return Err(Error::invalid_input(format!(
                    "last_hidden_state must be FP32, not {}",
                    hidden.dtype().as_str()
                )));
            }
            if hs[0] < 2 || hs[0] % 2 != 0 {
                return Err(Error::invalid_input(format!(
                    "similarity scores rows in pairs (0·1, 2·3, …): send a positive even number of \
                     sentences, got {}",
                    hs[0]
                )));
            }
            let (batch, seq, dim) = (hs[0] as usize, hs[1] as usize, hs[2] as usize);
            // Read only each sequence's unmasked tokens: with padding to a
            // fixed length most of `last_hidden_state` is padding (a pair of
            // short sentences at 128 tokens: ~40 KB read instead of 393 KB).
            let (emb, sims) =
                pooling::embed_and_score_spans(&mask.to_i64()?, batch, seq, dim, |b, lo, hi| {
                    let raw = hidden.read_raw(
                        ((b * seq + lo) * dim * 4) as u64,
                        ((hi - lo) * dim * 4) as u64,
                    )?;
                    Ok::<_, Error>(pooling::f32s_from_le(&raw))
                })?;
            Ok(Outputs::new()
                .with("similarity", Tensor::from_f32(&[sims.len() as i64], sims)?)
                .with(
                    "embeddings",
                    Tensor::from_f32(&[batch as i64, dim as i64], emb)?,
                ))
        }
    }

    conduit_guest::export!(EmbeddingPost);
}
