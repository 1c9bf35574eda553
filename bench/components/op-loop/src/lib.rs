//! Runs an example op `iters` times inside one call, so the benchmark can
//! time WASM compute alone: (T(iters = N + 1) − T(iters = 1)) / N excludes
//! the call, the input reads and the output writes.
//!
//! Params: `op` = `tokenize` (input `text`: BYTES `[batch]`, `max_length`
//! 128) or `softmax-topk` (input `logits`: FP32 `[batch, classes]`, k = 5);
//! `iters` ≥ 1. Output `checksum`: INT64 `[1]`, derived from the last result
//! so the work cannot be optimised away.

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};
    use std::hint::black_box;

    struct OpLoop;

    impl Processor for OpLoop {
        fn describe() -> Signature {
            Signature::new()
                .input("text", DataType::Bytes, [-1])
                .output("checksum", DataType::Int64, [1])
        }

        fn process(mut inputs: Inputs, params: Params) -> Result<Outputs, Error> {
            let iters = params.i64_or("iters", 1)?.max(1);
            let checksum = match params.str_or("op", "tokenize")? {
                "tokenize" => {
                    let texts = inputs.take("text")?.to_strings()?;
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let mut sum = 0;
                    for _ in 0..iters {
                        let e = bert_tokenizer::encode_batch(black_box(&refs), None, 128);
                        sum = e.input_ids.iter().sum::<i64>();
                    }
                    sum
                }
                "softmax-topk" => {
                    let logits = inputs.take("logits")?;
                    let classes = *logits.shape().last().unwrap_or(&1) as usize;
                    let values = logits.to_f32()?;
                    let mut sum = 0;
                    for _ in 0..iters {
                        let (_, idx) = softmax_topk::softmax_topk(black_box(&values), classes, 5);
                        sum = idx.iter().sum::<i64>();
                    }
                    sum
                }
                other => return Err(Error::invalid_input(format!("unknown op `{other}`"))),
            };
            Ok(Outputs::new().with("checksum", Tensor::from_i64(&[1], vec![checksum])?))
        }
    }

    conduit_guest::export!(OpLoop);
}
