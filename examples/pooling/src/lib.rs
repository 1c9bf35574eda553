//! Sentence-embedding math: masked mean pooling, L2 normalisation and cosine
//! similarity, on plain slices so it runs the same natively and in a component.

/// Mean of the token vectors of each sequence, counting only tokens whose mask is non-zero.
///
/// `hidden` is `[batch, seq, dim]` row-major, `mask` is `[batch, seq]`.
/// Returns `[batch, dim]`. A sequence with no unmasked token pools to zeros.
///
/// ```
/// let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
/// let mask = [1, 1, 0];
/// assert_eq!(pooling::mean_pool(&hidden, &mask, 1, 3, 2), vec![2.0, 3.0]);
/// ```
pub fn mean_pool(hidden: &[f32], mask: &[i64], batch: usize, seq: usize, dim: usize) -> Vec<f32> {
    let mut out = vec![0f32; batch * dim];
    for b in 0..batch {
        let row = &mut out[b * dim..(b + 1) * dim];
        let mut count = 0f32;
        for s in 0..seq {
            if mask[b * seq + s] == 0 {
                continue;
            }
            count += 1.0;
            let token = &hidden[(b * seq + s) * dim..(b * seq + s + 1) * dim];
            for (acc, v) in row.iter_mut().zip(token) {
                *acc += v;
            }
        }
        let denom = count.max(1e-9);
        row.iter_mut().for_each(|v| *v /= denom);
    }
    out
}

/// The token range `[first, last + 1)` of a sequence's non-zero mask
/// entries, or `None` when every token is masked out.
///
/// Only these tokens' vectors take part in [`mean_pool`], so a caller that
/// reads a tensor piecewise (a component reading host memory) can read just
/// this range of each sequence instead of its padding too.
///
/// ```
/// assert_eq!(pooling::unmasked_span(&[1, 1, 0, 1, 0, 0]), Some((0, 4)));
/// assert_eq!(pooling::unmasked_span(&[0, 0]), None);
/// ```
pub fn unmasked_span(mask: &[i64]) -> Option<(usize, usize)> {
    let first = mask.iter().position(|&m| m != 0)?;
    let last = mask.iter().rposition(|&m| m != 0)?;
    Some((first, last + 1))
}

/// Scales each `dim`-long row of `rows` to unit L2 norm (rows of zeros stay zero).
pub fn l2_normalize(rows: &mut [f32], dim: usize) {
    for row in rows.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
}

/// Cosine similarity of consecutive row pairs `(0, 1), (2, 3), …` of `[n, dim]` rows.
///
/// Returns `n / 2` values; an odd last row has no partner and is skipped.
pub fn cosine_pairs(rows: &[f32], dim: usize) -> Vec<f32> {
    rows.chunks_exact(2 * dim)
        .map(|pair| {
            let (a, b) = pair.split_at(dim);
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|v| v * v).sum::<f32>().sqrt();
            let nb = b.iter().map(|v| v * v).sum::<f32>().sqrt();
            dot / (na * nb).max(1e-12)
        })
        .collect()
}

/// Sentence embeddings and pair scores from a BERT `last_hidden_state`:
/// [`mean_pool`], then [`l2_normalize`], then [`cosine_pairs`].
///
/// Returns `(embeddings [batch, dim], similarities [batch / 2])`.
pub fn embed_and_score(
    hidden: &[f32],
    mask: &[i64],
    batch: usize,
    seq: usize,
    dim: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut emb = mean_pool(hidden, mask, batch, seq, dim);
    l2_normalize(&mut emb, dim);
    let sims = cosine_pairs(&emb, dim);
    (emb, sims)
}

/// [`embed_and_score`] reading only each sequence's unmasked token range:
/// `span(b, lo, hi)` returns the `(hi - lo) * dim` hidden values of sequence
/// `b`'s tokens `lo..hi` (see [`unmasked_span`]). With padding to a fixed
/// length most of a `last_hidden_state` is padding; a caller whose reads
/// cost (a component copying host memory in) reads just what is pooled.
/// The result equals [`embed_and_score`] on the whole tensor, bit for bit.
///
/// # Errors
/// The first error `span` returns.
pub fn embed_and_score_spans<E>(
    mask: &[i64],
    batch: usize,
    seq: usize,
    dim: usize,
    mut span: impl FnMut(usize, usize, usize) -> Result<Vec<f32>, E>,
) -> Result<(Vec<f32>, Vec<f32>), E> {
    let mut emb = Vec::with_capacity(batch * dim);
    for b in 0..batch {
        let row_mask = &mask[b * seq..(b + 1) * seq];
        match unmasked_span(row_mask) {
            Some((lo, hi)) => {
                let tokens = span(b, lo, hi)?;
                emb.extend(mean_pool(&tokens, &row_mask[lo..hi], 1, hi - lo, dim));
            }
            None => emb.extend(std::iter::repeat_n(0.0, dim)),
        }
    }
    l2_normalize(&mut emb, dim);
    let sims = cosine_pairs(&emb, dim);
    Ok((emb, sims))
}

/// Little-endian FP32 bytes as values (a tensor's raw KServe v2 data).
pub fn f32s_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_only_masked_tokens() {
        let hidden = [1., 1., 3., 3., 9., 9., 2., 0., 4., 0., 6., 0.];
        let mask = [1, 1, 0, 1, 1, 1];
        assert_eq!(mean_pool(&hidden, &mask, 2, 3, 2), vec![2., 2., 4., 0.]);
        assert_eq!(mean_pool(&hidden, &[0; 6], 2, 3, 2), vec![0.; 4]);
    }

    #[test]
    fn pooling_a_span_equals_pooling_the_sequence() {
        let (seq, dim) = (6, 3);
        let hidden: Vec<f32> = (0..seq * dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let mask = [0, 1, 1, 0, 1, 0];
        let (lo, hi) = unmasked_span(&mask).unwrap();
        assert_eq!((lo, hi), (1, 5));
        let span = mean_pool(&hidden[lo * dim..hi * dim], &mask[lo..hi], 1, hi - lo, dim);
        assert_eq!(span, mean_pool(&hidden, &mask, 1, seq, dim));
    }

    #[test]
    fn reading_spans_equals_reading_everything() {
        let (batch, seq, dim) = (3, 5, 4);
        let hidden: Vec<f32> = (0..batch * seq * dim)
            .map(|i| (i as f32 * 0.91).cos())
            .collect();
        let mask = [1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        let spans = embed_and_score_spans::<()>(&mask, batch, seq, dim, |b, lo, hi| {
            Ok(hidden[(b * seq + lo) * dim..(b * seq + hi) * dim].to_vec())
        })
        .unwrap();
        assert_eq!(spans, embed_and_score(&hidden, &mask, batch, seq, dim));
        let bytes: Vec<u8> = hidden.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(f32s_from_le(&bytes), hidden);
    }

    #[test]
    fn normalises_and_compares() {
        let mut rows = vec![3., 4., 6., 8., 1., 0., 0., 1.];
        l2_normalize(&mut rows, 2);
        assert!((rows[0] - 0.6).abs() < 1e-6 && (rows[1] - 0.8).abs() < 1e-6);
        let sims = cosine_pairs(&rows, 2);
        assert!((sims[0] - 1.0).abs() < 1e-6, "{sims:?}");
        assert!(sims[1].abs() < 1e-6, "{sims:?}");
    }
}
