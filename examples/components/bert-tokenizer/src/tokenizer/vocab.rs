//! The WordPiece vocabulary, compiled into the binary by `build.rs`.
//!
//! Lookups probe static open-addressing tables (FNV-1a, linear probing); nothing is
//! parsed, hashed into a map or allocated at start-up.

use super::hash::fnv1a;

include!(concat!(env!("OUT_DIR"), "/vocab.rs"));

/// Every token, concatenated in id order.
static TOKENS: &str = include_str!(concat!(env!("OUT_DIR"), "/vocab_tokens.txt"));
/// `u32` LE start offsets of each token in [`TOKENS`], plus the end.
static OFFSETS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vocab_offsets.bin"));
/// Slots (`id + 1`, 0 = empty) keyed by the token as written.
static WORDS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vocab_words.bin"));
/// Slots keyed by the text after `##` of continuation tokens.
static CONT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vocab_cont.bin"));

/// Number of tokens in the vocabulary.
pub(crate) const fn len() -> usize {
    VOCAB_LEN
}

/// The text of token `id` (`None` outside the vocabulary).
pub(crate) fn token(id: u32) -> Option<&'static str> {
    let id = id as usize;
    if id >= VOCAB_LEN {
        return None;
    }
    let start = read_u32(OFFSETS, id) as usize;
    let end = read_u32(OFFSETS, id + 1) as usize;
    TOKENS.get(start..end)
}

/// The id of the word-initial token `piece`.
#[inline]
pub(crate) fn word_id(piece: &str) -> Option<u32> {
    probe(WORDS, WORDS_BITS, piece, 0)
}

/// The id of the continuation token `##piece`.
#[inline]
pub(crate) fn cont_id(piece: &str) -> Option<u32> {
    probe(CONT, CONT_BITS, piece, 2)
}

/// Longest key (bytes) in the word table: longer pieces cannot match.
pub(crate) const WORD_MAX: usize = WORDS_MAX_LEN;
/// Longest key (bytes, `##` excluded) in the continuation table.
pub(crate) const CONT_MAX: usize = CONT_MAX_LEN;

#[inline]
fn probe(table: &[u8], bits: u32, key: &str, skip: usize) -> Option<u32> {
    let mask = (1usize << bits) - 1;
    let mut i = fnv1a(key.as_bytes()) as usize & mask;
    loop {
        let slot = read_slot(table, i);
        if slot == 0 {
            return None;
        }
        let id = slot - 1;
        let start = read_u32(OFFSETS, id as usize) as usize + skip;
        let end = read_u32(OFFSETS, id as usize + 1) as usize;
        if TOKENS.as_bytes().get(start..end) == Some(key.as_bytes()) {
            return Some(id);
        }
        i = (i + 1) & mask;
    }
}

#[inline]
fn read_slot(table: &[u8], i: usize) -> u32 {
    if SLOT_BYTES == 2 {
        u32::from(u16::from_le_bytes([table[2 * i], table[2 * i + 1]]))
    } else {
        read_u32(table, i)
    }
}

#[inline]
fn read_u32(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_round_trips() {
        assert!(len() > 1000);
        for id in 0..len() as u32 {
            let tok = token(id).unwrap();
            // A later duplicate would shadow an earlier one; the vocabulary has none.
            assert_eq!(word_id(tok), Some(id), "token {id} {tok:?}");
            if let Some(rest) = tok.strip_prefix("##") {
                assert_eq!(cont_id(rest), Some(id), "token {id} {tok:?}");
            }
        }
        assert_eq!(word_id("definitely-not-a-token"), None);
        assert_eq!(cont_id("definitely-not-a-token"), None);
        assert_eq!(token(len() as u32), None);
    }

    #[test]
    fn special_ids() {
        assert_eq!(token(CLS_ID), Some("[CLS]"));
        assert_eq!(token(SEP_ID), Some("[SEP]"));
        assert_eq!(token(PAD_ID), Some("[PAD]"));
        assert_eq!(token(UNK_ID), Some("[UNK]"));
        assert_eq!(token(MASK_ID), Some("[MASK]"));
    }
}
