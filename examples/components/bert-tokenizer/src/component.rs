//! The `conduit:compute` processor export (compiled for `wasm32` only).

use crate::{DEFAULT_MAX_LENGTH, MAX_MAX_LENGTH, encode_batch, trim_to_longest};
use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};

struct BertTokenizer;

impl Processor for BertTokenizer {
    fn describe() -> Signature {
        Signature::new()
            .input("text", DataType::Bytes, [-1, -1])
            .output("input_ids", DataType::Int64, [-1, -1])
            .output("attention_mask", DataType::Int64, [-1, -1])
            .output("token_type_ids", DataType::Int64, [-1, -1])
            .output("truncated", DataType::Int64, [-1])
    }

    fn process(mut inputs: Inputs, params: Params) -> Result<Outputs, Error> {
        let text = inputs.take("text")?;
        let max_length = params.i64_or("max_length", DEFAULT_MAX_LENGTH as i64)?;
        if !(2..=MAX_MAX_LENGTH as i64).contains(&max_length) {
            return Err(Error::invalid_input(format!(
                "parameter `max_length` must be between 2 and {MAX_MAX_LENGTH}, got {max_length}"
            )));
        }
        let max_length = max_length as usize;
        let longest = match params.str_or("padding", "max_length")? {
            "max_length" => false,
            "longest" => true,
            other => {
                return Err(Error::invalid_input(format!(
                    "parameter `padding` must be \"max_length\" or \"longest\", got {other:?}"
                )));
            }
        };

        let dtype = text.dtype();
        if dtype != DataType::Bytes {
            return Err(Error::invalid_input(format!(
                "input `text` must be BYTES, got {}",
                dtype.as_str()
            )));
        }
        let shape = text.shape();
        let (batch, width) = match *shape {
            [b] => (b, 1),
            [b, w @ (1 | 2)] => (b, w),
            [_, w] => {
                return Err(Error::invalid_input(format!(
                    "input `text` of shape [batch, {w}]: the second dimension must be 1 (texts) or 2 (text pairs)"
                )));
            }
            _ => {
                return Err(Error::invalid_input(format!(
                    "input `text` must have shape [batch] or [batch, 1|2], got {shape:?}"
                )));
            }
        };
        if width == 2 && max_length < 3 {
            return Err(Error::invalid_input(format!(
                "parameter `max_length` must be at least 3 for text pairs, got {max_length}"
            )));
        }
        let batch = usize::try_from(batch).map_err(|_| {
            Error::invalid_input(format!("input `text` has a negative dimension: {shape:?}"))
        })?;
        let width = width as usize;

        let raw = text.to_byte_strings()?;
        if raw.len() != batch * width {
            return Err(Error::invalid_input(format!(
                "input `text` holds {} strings, its shape {shape:?} needs {}",
                raw.len(),
                batch * width
            )));
        }
        let mut strings = Vec::with_capacity(raw.len());
        for (i, bytes) in raw.iter().enumerate() {
            let s = std::str::from_utf8(bytes).map_err(|e| {
                Error::invalid_input(format!(
                    "input `text` element [{}, {}] is not valid UTF-8: {e}",
                    i / width,
                    i % width
                ))
            })?;
            strings.push(s);
        }

        let encoding = if width == 2 {
            let (texts, pairs): (Vec<&str>, Vec<&str>) =
                strings.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
            encode_batch(&texts, Some(&pairs), max_length)
        } else {
            encode_batch(&strings, None, max_length)
        };

        let (encoding, length) = if longest {
            trim_to_longest(encoding, batch, max_length)
        } else {
            (encoding, max_length)
        };
        let out_shape = [batch as i64, length as i64];
        Ok(Outputs::new()
            .with(
                "input_ids",
                Tensor::from_i64(&out_shape, encoding.input_ids)?,
            )
            .with(
                "attention_mask",
                Tensor::from_i64(&out_shape, encoding.attention_mask)?,
            )
            .with(
                "token_type_ids",
                Tensor::from_i64(&out_shape, encoding.token_type_ids)?,
            )
            .with(
                "truncated",
                Tensor::from_i64(&[batch as i64], encoding.truncated)?,
            ))
    }
}

conduit_guest::export!(BertTokenizer);
