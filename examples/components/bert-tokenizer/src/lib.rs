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
//! Parameter:
//! - `max_length`: integer, default 128, `2..=512` (at least 3 for pairs). Each row is
//!   truncated (longest first) and padded to exactly this many tokens.
//!
//! Outputs, each `INT64 [batch, max_length]` (declared `[-1, -1]`):
//! - `input_ids`, `attention_mask`, `token_type_ids`.
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

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

/// Default `max_length` when the request has no such parameter.
pub const DEFAULT_MAX_LENGTH: usize = 128;
/// Largest `max_length` accepted (all-MiniLM-L6-v2 has 512 positions).
pub const MAX_MAX_LENGTH: usize = 512;
