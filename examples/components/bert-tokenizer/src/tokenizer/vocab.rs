//! The WordPiece vocabulary, compiled into the binary by `build.rs`.
//!
//! Lookups probe static open-addressing tables (FNV-1a, linear probing); nothing is
//! parsed, hashed into a map or allocated at start-up. Each slot carries a fingerprint
//! of its key's hash, so a probe reads the token text only when the fingerprints agree
//! (in practice: only for the match itself).

include!(concat!(env!("OUT_DIR"), "/vocab.rs"));

/// Every token, concatenated in id order.
static TOKENS: &str = include_str!(concat!(env!("OUT_DIR"), "/vocab_tokens.txt"));

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
    TOKENS.get(OFFSETS[id] as usize..OFFSETS[id + 1] as usize)
}

/// One of the two lookup tables.
#[derive(Clone, Copy)]
pub(crate) enum Table {
    /// Word-initial tokens, keyed as written.
    Words,
    /// Continuation tokens, keyed by their text after `##`.
    Cont,
}

impl Table {
    /// Longest key (bytes) in the table: longer pieces cannot match.
    #[inline]
    pub(crate) const fn max_len(self) -> usize {
        match self {
            Self::Words => WORDS_MAX_LEN,
            Self::Cont => CONT_MAX_LEN,
        }
    }

    /// The id of `key`, whose [`fnv1a`](super::hash::fnv1a) hash is `hash`.
    #[inline]
    pub(crate) fn get(self, key: &[u8], hash: u32) -> Option<u32> {
        match self {
            Self::Words => probe(&WORDS, hash, key, 0),
            Self::Cont => probe(&CONT, hash, key, 2),
        }
    }
}

/// The id of the word-initial token `piece`.
#[cfg(test)]
pub(crate) fn word_id(piece: &str) -> Option<u32> {
    Table::Words.get(piece.as_bytes(), super::hash::fnv1a(piece.as_bytes()))
}

/// The id of the continuation token `##piece`.
#[cfg(test)]
pub(crate) fn cont_id(piece: &str) -> Option<u32> {
    Table::Cont.get(piece.as_bytes(), super::hash::fnv1a(piece.as_bytes()))
}

/// The longest key that could possibly match in either table.
pub(crate) const MAX_KEY: usize = if WORDS_MAX_LEN > CONT_MAX_LEN {
    WORDS_MAX_LEN
} else {
    CONT_MAX_LEN
};

/// Looks `key` (hash `hash`) up in `table`, whose tokens start with `skip` bytes not in the key.
#[inline]
fn probe<const N: usize>(table: &[Slot; N], hash: u32, key: &[u8], skip: usize) -> Option<u32> {
    let mask = N - 1;
    let id_mask: Slot = (1 << ID_BITS) - 1;
    let fp = (hash >> (32 - ID_BITS)) as Slot;
    let mut i = hash as usize & mask;
    loop {
        let slot = table[i];
        if slot == 0 {
            return None;
        }
        if slot >> ID_BITS == fp {
            let id = (slot & id_mask) as usize - 1;
            let start = OFFSETS[id] as usize + skip;
            let end = OFFSETS[id + 1] as usize;
            if same(TOKENS.as_bytes().get(start..end), key) {
                return Some(id as u32);
            }
        }
        i = (i + 1) & mask;
    }
}

/// `token == Some(key)`, as an inline loop: keys are short, and slice equality would
/// call `memcmp` (a plain byte loop out of line in wasi-libc).
#[inline]
fn same(token: Option<&[u8]>, key: &[u8]) -> bool {
    let Some(token) = token else { return false };
    if token.len() != key.len() {
        return false;
    }
    let mut diff = 0;
    for (a, b) in token.iter().zip(key) {
        diff |= a ^ b;
    }
    diff == 0
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
