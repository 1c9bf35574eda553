//! WordPiece: greedy longest-match-first over the static vocabulary.
//!
//! Same semantics as HF `tokenizers`' `WordPiece::tokenize`: a word of more than
//! [`MAX_INPUT_CHARS_PER_WORD`] characters, or one that cannot be covered entirely by
//! vocabulary pieces (the first as written, the rest as `##` continuations), becomes a
//! single `[UNK]`.

use super::vocab;

/// `max_input_chars_per_word` of all-MiniLM-L6-v2's `tokenizer.json`.
pub(crate) const MAX_INPUT_CHARS_PER_WORD: usize = 100;

/// Appends the ids of `word` (non-empty, normalized, pre-tokenized) to `out`.
pub(crate) fn tokenize(word: &str, out: &mut Vec<u32>) {
    if word.len() > MAX_INPUT_CHARS_PER_WORD && word.chars().count() > MAX_INPUT_CHARS_PER_WORD {
        out.push(vocab::UNK_ID);
        return;
    }
    let mark = out.len();
    let mut start = 0;
    while start < word.len() {
        let (max, lookup): (usize, fn(&str) -> Option<u32>) = if start == 0 {
            (vocab::WORD_MAX, vocab::word_id)
        } else {
            (vocab::CONT_MAX, vocab::cont_id)
        };
        // Pieces longer than the longest vocabulary key cannot match: start below it.
        let mut end = floor_char_boundary(word, start + max);
        let mut found = None;
        while start < end {
            if let Some(id) = lookup(&word[start..end]) {
                found = Some(id);
                break;
            }
            end = floor_char_boundary(word, end - 1);
        }
        match found {
            Some(id) => {
                out.push(id);
                start = end;
            }
            None => {
                out.truncate(mark);
                out.push(vocab::UNK_ID);
                return;
            }
        }
    }
}

/// The largest char boundary of `s` that is `<= i` (`s.len()` when `i` is past the end).
#[inline]
fn floor_char_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(word: &str) -> Vec<u32> {
        let mut out = Vec::new();
        tokenize(word, &mut out);
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
