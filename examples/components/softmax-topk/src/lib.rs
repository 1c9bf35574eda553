//! `softmax-topk`: softmax over the last dimension of `logits` FP32
//! `[batch, classes]`, then the `k` most probable classes of each row
//! (param `k`, default 5, clamped to `classes`).
//!
//! Outputs: `probabilities` FP32 `[batch, k]` (descending) and `indices`
//! INT64 `[batch, k]`. Ties keep the lower class index first.

/// Numerically stable softmax of one row, in place.
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax then top-`k` of each `classes`-long row of `logits`.
///
/// Returns `(probabilities, indices)`, each `[rows, k]` row-major.
///
/// ```
/// let (p, i) = softmax_topk::softmax_topk(&[1.0, 3.0, 2.0], 3, 2);
/// assert_eq!(i, vec![1, 2]);
/// assert!(p[0] > p[1]);
/// ```
pub fn softmax_topk(logits: &[f32], classes: usize, k: usize) -> (Vec<f32>, Vec<i64>) {
    let k = k.min(classes);
    let rows = logits.len().checked_div(classes).unwrap_or(0);
    let mut probs = Vec::with_capacity(rows * k);
    let mut indices = Vec::with_capacity(rows * k);
    let mut row = vec![0f32; classes];
    let mut order: Vec<usize> = Vec::with_capacity(classes);
    for r in 0..rows {
        row.copy_from_slice(&logits[r * classes..(r + 1) * classes]);
        softmax(&mut row);
        order.clear();
        order.extend(0..classes);
        let by_prob = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
        if k < classes {
            order.select_nth_unstable_by(k, by_prob);
        }
        order[..k].sort_unstable_by(by_prob);
        for &c in &order[..k] {
            probs.push(row[c]);
            indices.push(c as i64);
        }
    }
    (probs, indices)
}

#[cfg(target_arch = "wasm32")]
mod component {
    use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};

    struct SoftmaxTopK;

    impl Processor for SoftmaxTopK {
        fn describe() -> Signature {
            Signature::new()
                .input("logits", DataType::Fp32, [-1, -1])
                .output("probabilities", DataType::Fp32, [-1, -1])
                .output("indices", DataType::Int64, [-1, -1])
        }

        fn process(mut inputs: Inputs, params: Params) -> Result<Outputs, Error> {
            let logits = inputs.take("logits")?;
            let shape = logits.shape();
            let [batch, classes] = shape[..] else {
                return Err(Error::invalid_input(format!(
                    "logits must be [batch, classes], got {shape:?}"
                )));
            };
            let k = params.i64_or("k", 5)?;
            if k < 1 {
                return Err(Error::invalid_input(format!(
                    "parameter `k` must be at least 1, got {k}"
                )));
            }
            let k = (k as usize).min(classes as usize);
            let (probs, idx) = crate::softmax_topk(&logits.to_f32()?, classes as usize, k);
            let out_shape = [batch, k as i64];
            Ok(Outputs::new()
                .with("probabilities", Tensor::from_f32(&out_shape, probs)?)
                .with("indices", Tensor::from_i64(&out_shape, idx)?))
        }
    }

    conduit_guest::export!(SoftmaxTopK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_sum_to_one_and_are_sorted() {
        let logits = [0.5, -1.0, 2.0, 2.0, 10.0, 0.0];
        let (p, i) = softmax_topk(&logits, 3, 3);
        assert_eq!(i, vec![2, 0, 1, 1, 0, 2]);
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut row = logits[..3].to_vec();
        softmax(&mut row);
        assert!((row[2] - p[0]).abs() < 1e-7);
    }

    #[test]
    fn ties_keep_lower_index_and_k_is_clamped() {
        let (p, i) = softmax_topk(&[1.0, 1.0, 1.0], 3, 10);
        assert_eq!(i, vec![0, 1, 2]);
        assert_eq!(p.len(), 3);
    }
}
