//! WordPiece: greedy longest-match-first over the static vocabulary.
//!
//! Same semantics as HF `tokenizers`' `WordPiece::tokenize`: a word of more than
//! [`MAX_INPUT_CHARS_PER_WORD`] characters, or one that cannot be covered entirely by
//! vocabulary pieces (the first as written, the rest as `##` continuations), becomes a
//! single `[UNK]`.

use super::hash;
use super::vocab::{self, Table};

/// `max_input_chars_per_word` of all-MiniLM-L6-v2's `tokenizer.json`.
pub(crate) const MAX_INPUT_CHARS_PER_WORD: usize = 100;

/// Scratch for [`tokenize`]: `hashes[k]` is the hash of the `k`-byte piece being matched.
///
/// Kept by the caller across words, so it is not zeroed for every word (in WASM a
/// zeroing is a `memory.fill` call into the runtime).
pub(crate) type PrefixHashes = [u32; vocab::MAX_KEY + 1];

/// Appends the ids of `word` (non-empty, normalized, pre-tokenized) to `out`.
pub(crate) fn tokenize(word: &str, hashes: &mut PrefixHashes, out: &mut Vec<u32>) {
    if word.len() > MAX_INPUT_CHARS_PER_WORD && word.chars().count() > MAX_INPUT_CHARS_PER_WORD {
        out.push(vocab::UNK_ID);
        return;
    }
    let bytes = word.as_bytes();
    let mark = out.len();
    let mut start = 0;
    let mut table = Table::Words;
    while start < bytes.len() {
        // Pieces longer than the longest vocabulary key cannot match: start below it.
        let longest = table.max_len().min(bytes.len() - start);
        let piece = &bytes[start..start + longest];
        // The hash of every prefix of the piece, in one pass (FNV-1a runs left to
        // right) instead of once per candidate length.
        let mut h = hash::FNV_OFFSET;
        for (k, &b) in piece.iter().enumerate() {
            h = hash::fnv1a_step(h, b);
            hashes[k + 1] = h;
        }
        // Greedy longest match first, on char boundaries only.
        let mut len = longest;
        let found = loop {
            if len == 0 {
                break None;
            }
            if word.is_char_boundary(start + len)
                && let Some(id) = table.get(&piece[..len], hashes[len])
            {
                break Some(id);
            }
            len -= 1;
        };
        match found {
            Some(id) => {
                out.push(id);
                start += len;
                table = Table::Cont;
            }
            None => {
                out.truncate(mark);
                out.push(vocab::UNK_ID);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(word: &str) -> Vec<u32> {
        let mut out = Vec::new();
        tokenize(word, &mut [0; vocab::MAX_KEY + 1], &mut out);
        out
    }

    fn pieces(word: &str) -> Vec<&'static str> {
        ids(word)
            .into_iter()
            .map(|id| vocab::token(id).unwrap())
            .collect()
    }

    #[test]
    fn greedy_longest_match() {
        assert_eq!(pieces("hello"), ["hello"]);
        assert_eq!(pieces("tokenization"), ["token", "##ization"]);
        assert_eq!(pieces("baz"), ["ba", "##z"]);
    }

    #[test]
    fn unknown_words() {
        assert_eq!(ids(&"a".repeat(101)), [vocab::UNK_ID]);
        assert_ne!(ids(&"a".repeat(100)), [vocab::UNK_ID]);
        // 101 two-byte characters: > 100 chars.
        assert_eq!(ids(&"é".repeat(101)), [vocab::UNK_ID]);
        assert_eq!(ids("\u{1F9FF}\u{1F9FF}"), [vocab::UNK_ID]);
    }
}
