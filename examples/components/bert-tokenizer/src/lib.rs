//! `bert-tokenizer`: the pre-processing component of the all-MiniLM-L6-v2 pipeline.
//!
//! A pure-Rust BERT WordPiece tokenizer that reproduces HF `tokenizers` with
//! all-MiniLM-L6-v2's `tokenizer.json` (BertNormalizer with lowercasing and accent
//! stripping, BertPreTokenizer, WordPiece, `[CLS] A [SEP] B [SEP]` template),
//! `longest_first` truncation and padding to a fixed length. The 30522-entry
//! vocabulary is compiled in by `build.rs` from `vocab.txt` (see
//! `$CONDUIT_MODEL_DIR`, default `testdata/minilm`): start-up costs nothing.
//!
//! # Component contract (`wasm32-wasip2`, world `op`)
//!
//! Input:
//! - `text`: `BYTES` (UTF-8), declared `[-1, -1]`. Either `[batch, 2]` (text pairs: row
//!   `i` is `(text, pair)`), `[batch, 1]`, or rank 1 `[batch]` (single texts; also
//!   accepted although the declared rank is 2).
//!
//! Parameters:
//! - `max_length`: integer, default 128, `2..=512` (at least 3 for pairs). Each row is
//!   truncated (longest first) to at most this many tokens.
//! - `padding`: `"max_length"` (default: every row padded to exactly `max_length`) or
//!   `"longest"` (rows padded to the longest row of the request, as HF `tokenizers`
//!   without a padding length does). An encoder's cost grows with the sequence length:
//!   two short sentences padded to their longest are ~16 tokens, not 128.
//!
//! Outputs, each `INT64 [batch, length]` (declared `[-1, -1]`), `length` being
//! `max_length` or the longest row's:
//! - `input_ids`, `attention_mask`, `token_type_ids`;
//!
//! and `truncated`, `INT64 [batch]`: how many tokens truncation cut from each row
//! (0 when it fit), so a caller can see that a long text was shortened.
//!
//! Wrong dtype, rank or second dimension, non-UTF-8 text and out-of-range parameters
//! are `invalid-input` errors.
//!
//! # Native use
//!
//! [`encode`] and [`encode_batch`] are plain Rust (used by benchmarks and tests); the
//! component glue is compiled only for `wasm32` with the default `component` feature, so
//! linking this crate natively (or into another component without that feature) adds
//! no export symbols.

mod tokenizer;

pub use tokenizer::{Encoding, encode, encode_batch, id_to_token, vocab_size};

/// Cuts the rows of a right-padded batch encoding (`batch` rows of `width`
/// tokens) to the longest row's real tokens (at least 1 column); returns the
/// encoding and its new width. Rows are unchanged up to that width: each
/// row's real tokens come first, then padding.
///
/// ```
/// let e = bert_tokenizer::encode_batch(&["a b c d e", "hi"], None, 16);
/// let (short, width) = bert_tokenizer::trim_to_longest(e.clone(), 2, 16);
/// assert_eq!(width, 7); // [CLS] a b c d e [SEP]
/// assert_eq!(short.input_ids[..7], e.input_ids[..7]);
/// assert_eq!(short.input_ids[7..], e.input_ids[16..23]);
/// ```
pub fn trim_to_longest(encoding: Encoding, batch: usize, width: usize) -> (Encoding, usize) {
    let longest = encoding
        .attention_mask
        .chunks_exact(width.max(1))
        .map(|row| row.iter().rposition(|&m| m != 0).map_or(0, |i| i + 1))
        .max()
        .unwrap_or(0)
        .max(1);
    if longest >= width {
        return (encoding, width);
    }
    let cut = |v: Vec<i64>| -> Vec<i64> {
        v.chunks_exact(width)
            .take(batch)
            .flat_map(|row| row[..longest].iter().copied())
            .collect()
    };
    let trimmed = Encoding {
        input_ids: cut(encoding.input_ids),
        attention_mask: cut(encoding.attention_mask),
        token_type_ids: cut(encoding.token_type_ids),
        truncated: encoding.truncated,
    };
    (trimmed, longest)
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

/// Default `max_length` when the request has no such parameter.
pub const DEFAULT_MAX_LENGTH: usize = 128;
/// Largest `max_length` accepted (all-MiniLM-L6-v2 has 512 positions).
pub const MAX_MAX_LENGTH: usize = 512;
