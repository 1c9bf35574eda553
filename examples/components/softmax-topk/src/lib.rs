//! `softmax-topk`: softmax over the last dimension of `logits` FP32
//! `[batch, classes]`, then the `k` most probable classes of each row
//! (param `k`, default 5, clamped to `classes`).
//!
//! Outputs: `probabilities` FP32 `[batch, k]` (descending) and `indices`
//! INT64 `[batch, k]`. Ties keep the lower class index first.

/// `e^x` for `x` in `[-87.3, 88]` (clamped outside), within 2 ulp.
///
/// Branch-free (Cephes' range reduction and polynomial; rounding and the
/// 2ⁿ scale by the 1.5·2²³ trick, no float-to-int conversion) so that loops
/// over it vectorise, natively and in WASM.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n + 127 lands in the low mantissa bits of (n + 127 + 1.5·2²³); shifting
    // it into the exponent field gives 2ⁿ.
    y * f32::from_bits((n + (127.0 + ROUND)).to_bits() << 23)
}

/// Numerically stable softmax of one row, in place.
pub fn softmax(row: &mut [f32]) {
    const LANES: usize = 8;
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            max[l] = if c[l] > max[l] { c[l] } else { max[l] };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&max)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    row.iter_mut().for_each(|v| *v = exp(*v - max));
    let mut sum = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            sum[l] += c[l];
        }
    }
    let sum: f32 = sum.iter().chain(chunks.remainder()).sum();
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
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for r in 0..rows {
        row.copy_from_slice(&logits[r * classes..(r + 1) * classes]);
        softmax(&mut row);
        top_k(&row, k, &mut best);
        for &c in &best {
            probs.push(row[c]);
            indices.push(c as i64);
        }
    }
    (probs, indices)
}

/// The indices of the `k` largest values of `row`, largest first; among
/// equal values the lower index comes first.
fn top_k(row: &[f32], k: usize, best: &mut Vec<usize>) {
    best.clear();
    if k == 0 {
        return;
    }
    // Candidates must beat the current k-th value; compare `total_cmp` keys
    // (the float bits made monotonic) so the common case is one integer compare.
    let key = |v: f32| {
        let b = v.to_bits() as i32;
        b ^ (((b >> 31) as u32) >> 1) as i32
    };
    let mut threshold = i32::MIN;
    for (i, &v) in row.iter().enumerate() {
        let kv = key(v);
        if best.len() == k && kv <= threshold {
            continue;
        }
        // Insert after every kept value that is >= v (stable for ties).
        let at = best.partition_point(|&j| key(row[j]) >= kv);
        best.insert(at, i);
        best.truncate(k);
        if best.len() == k {
            threshold = key(row[best[k - 1]]);
        }
    }
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
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
    fn exp_is_accurate_over_the_softmax_range() {
        let mut x = -87.0f32;
        while x <= 10.0 {
            let (got, want) = (exp(x), (x as f64).exp());
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel < 3e-7, "exp({x}) = {got}, want {want} (rel {rel})");
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn top_k_matches_a_full_sort() {
        let row: Vec<f32> = (0..997).map(|i| ((i * 7919) % 211) as f32).collect();
        let mut best = Vec::new();
        top_k(&row, 17, &mut best);
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        assert_eq!(best, order[..17]);
    }

    #[test]
    fn ties_keep_lower_index_and_k_is_clamped() {
        let (p, i) = softmax_topk(&[1.0, 1.0, 1.0], 3, 10);
        assert_eq!(i, vec![0, 1, 2]);
        assert_eq!(p.len(), 3);
    }
}
