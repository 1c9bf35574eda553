//! `embed-pipeline`: the programmable form of tokenize → encode → pool.
//!
//! Takes the tokenizer's outputs (`input_ids`, `attention_mask`,
//! `token_type_ids`, INT64 `[batch, seq]`), runs the encoder model named by
//! the `model` param (default `minilm`) through the host's `model.infer` —
//! passing the tensors as handles, so nothing is copied into this component —
//! then mean-pools and L2-normalises `last_hidden_state` and scores
//! consecutive pairs. Outputs `embeddings` FP32 `[batch, hidden]` and
//! `similarity` FP32 `[batch / 2]`.
//!
//! With the `repeat` param > 1 it runs the model that many times and checks
//! the runs agree (a determinism probe), showing control flow around models.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{
        DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor, infer,
    };

    struct EmbedPipeline;

    fn run_model(
        model: &str,
        ids: &Tensor,
        mask: &Tensor,
        types: &Tensor,
    ) -> Result<Tensor, Error> {
        let inputs = Outputs::new()
            .with("input_ids", ids.share())
            .with("attention_mask", mask.share())
            .with("token_type_ids", types.share());
        let mut outputs: Inputs = infer(model, inputs)?;
        outputs.take("last_hidden_state")
    }

    impl Processor for EmbedPipeline {
        fn describe() -> Signature {
            Signature::new()
                .input("input_ids", DataType::Int64, [-1, -1])
                .input("attention_mask", DataType::Int64, [-1, -1])
                .input("token_type_ids", DataType::Int64, [-1, -1])
                .output("embeddings", DataType::Fp32, [-1, -1])
                .output("similarity", DataType::Fp32, [-1])
        }

        fn process(mut inputs: Inputs, params: Params) -> Result<Outputs, Error> {
            let ids = inputs.take("input_ids")?;
            let mask = inputs.take("attention_mask")?;
            let types = inputs.take("token_type_ids")?;
            let model = params.str_or("model", "minilm")?.to_string();
            let repeat = params.i64_or("repeat", 1)?.clamp(1, 8);

            let hidden = run_model(&model, &ids, &mask, &types)?;
            let values = hidden.to_f32()?;
            for _ in 1..repeat {
                if run_model(&model, &ids, &mask, &types)?.to_f32()? != values {
                    return Err(Error::internal(format!(
                        "model `{model}` is not deterministic"
                    )));
                }
            }
            let shape = hidden.shape();
            let [batch, seq, dim] = shape[..] else {
                return Err(Error::invalid_input(format!(
                    "model `{model}` returned last_hidden_state of shape {shape:?}, expected [batch, seq, hidden]"
                )));
            };
            let (batch, seq, dim) = (batch as usize, seq as usize, dim as usize);
            let (emb, sims) = pooling::embed_and_score(&values, &mask.to_i64()?, batch, seq, dim);
            Ok(Outputs::new()
                .with("similarity", Tensor::from_f32(&[sims.len() as i64], sims)?)
                .with(
                    "embeddings",
                    Tensor::from_f32(&[batch as i64, dim as i64], emb)?,
                ))
        }
    }

    conduit_guest::export!(EmbedPipeline);
}
