//! `BertNormalizer` and `BertPreTokenizer` of HF `tokenizers`, fused into one pass.
//!
//! all-MiniLM-L6-v2's `tokenizer.json` sets `clean_text`, `handle_chinese_chars` and
//! `lowercase`, with `strip_accents: null` (which follows `lowercase`, so accents are
//! stripped). Per character, in HF's order:
//!
//! 1. clean text: drop U+0000, U+FFFD and controls (Unicode `Cc`/`Cf`/`Co`, except
//!    `\t`, `\n`, `\r`); map whitespace (`char::is_whitespace`) to `' '`;
//! 2. pad CJK ideographs with spaces (`is_chinese_char`);
//! 3. NFD, then drop nonspacing marks (`Mn`);
//! 4. lowercase (`char::to_lowercase`, per character).
//!
//! The pre-tokenizer then splits on whitespace (dropped) and isolates punctuation (ASCII
//! punctuation or Unicode `P*`). The character classes come from the same
//! `unicode_categories` tables the `tokenizers` crate uses, so they agree exactly.
//!
//! Printable ASCII and `\t\n\r` take a fast path: they are NFD starters without
//! decompositions, so canonical reordering never crosses them, and a run of other
//! characters between two of them can be normalized on its own with the same result.

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

/// Receives pre-tokenized words (non-empty, normalized) one at a time.
pub(crate) trait WordSink {
    /// One word: a whitespace-separated chunk or a single punctuation character.
    fn word(&mut self, word: &str);
    /// Whether the sink wants no more words (input after this point may be skipped).
    fn full(&self) -> bool;
}

/// Normalizes `text` and splits it into words, feeding them to `sink`.
///
/// `buf` is scratch space for the current word. Stops early once `sink.full()`.
pub(crate) fn words(text: &str, buf: &mut String, sink: &mut impl WordSink) {
    buf.clear();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if sink.full() {
            buf.clear();
            return;
        }
        match CLASS[usize::from(bytes[i])] {
            WORD => {
                let start = i;
                i += 1;
                while i < bytes.len() && CLASS[usize::from(bytes[i])] == WORD {
                    i += 1;
                }
                let run = &text[start..i];
                let ends_word = i == bytes.len() || CLASS[usize::from(bytes[i])] != OTHER;
                if buf.is_empty() && ends_word && !run.bytes().any(|b| b.is_ascii_uppercase()) {
                    // A whole word, already normalized: no copy.
                    sink.word(run);
                } else {
                    let at = buf.len();
                    buf.push_str(run);
                    buf[at..].make_ascii_lowercase();
                }
            }
            SPACE => {
                flush(buf, sink);
                i += 1;
            }
            PUNC => {
                flush(buf, sink);
                sink.word(&text[i..i + 1]);
                i += 1;
            }
            _ => {
                let start = i;
                while i < bytes.len() && CLASS[usize::from(bytes[i])] == OTHER {
                    i += 1;
                }
                // `start..i` lies on char boundaries: it is delimited by ASCII bytes.
                for c in normalize_run(&text[start..i]) {
                    push_char(c, buf, sink);
                    if sink.full() {
                        buf.clear();
                        return;
                    }
                }
            }
        }
    }
    flush(buf, sink);
}

/// [`CLASS`] of printable ASCII that is neither whitespace nor punctuation.
const WORD: u8 = 0;
/// [`CLASS`] of `' '`, `\t`, `\n`, `\r`.
const SPACE: u8 = 1;
/// [`CLASS`] of ASCII punctuation.
const PUNC: u8 = 2;
/// [`CLASS`] of every other byte (controls, DEL, non-ASCII): the full pipeline.
const OTHER: u8 = 3;

/// The fast-path class of each byte. Printable ASCII and `\t\n\r` need no filtering,
/// NFD or accent stripping.
static CLASS: [u8; 256] = {
    let mut class = [OTHER; 256];
    let mut b = 0x20;
    while b < 0x7f {
        class[b] = if (b as u8).is_ascii_punctuation() {
            PUNC
        } else {
            WORD
        };
        b += 1;
    }
    class[b' ' as usize] = SPACE;
    class[b'\t' as usize] = SPACE;
    class[b'\n' as usize] = SPACE;
    class[b'\r' as usize] = SPACE;
    class
};

/// The full normalization pipeline over a run of characters.
fn normalize_run(run: &str) -> impl Iterator<Item = char> + '_ {
    run.chars()
        .filter(|&c| !(c == '\0' || c == '\u{fffd}' || is_control(c)))
        .map(|c| if is_whitespace(c) { ' ' } else { c })
        .flat_map(|c| {
            if is_chinese_char(c) {
                [' ', c, ' '].into_iter().take(3)
            } else {
                [c, c, c].into_iter().take(1)
            }
        })
        .nfd()
        .filter(|c| !c.is_mark_nonspacing())
        .flat_map(char::to_lowercase)
}

#[inline]
fn push_char(c: char, buf: &mut String, sink: &mut impl WordSink) {
    if c.is_whitespace() {
        flush(buf, sink);
    } else if is_bert_punc(c) {
        flush(buf, sink);
        let mut tmp = [0u8; 4];
        sink.word(c.encode_utf8(&mut tmp));
    } else {
        buf.push(c);
    }
}

#[inline]
fn flush(buf: &mut String, sink: &mut impl WordSink) {
    if !buf.is_empty() {
        sink.word(buf);
        buf.clear();
    }
}

/// Whitespace for `clean_text` (`\t\n\r` are also `Cc`, but count as whitespace).
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Controls removed by `clean_text`: `Cc`, `Cf`, `Co` except `\t\n\r`.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// The `BertPreTokenizer` punctuation class.
#[inline]
pub(crate) fn is_bert_punc(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && c.is_punctuation())
}

/// The CJK Unified Ideographs blocks HF pads with spaces (HF's exact ranges).
pub(crate) fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<String>);
    impl WordSink for Collect {
        fn word(&mut self, word: &str) {
            self.0.push(word.to_string());
        }
        fn full(&self) -> bool {
            false
        }
    }

    fn split(text: &str) -> Vec<String> {
        let mut sink = Collect(Vec::new());
        words(text, &mut String::new(), &mut sink);
        sink.0
    }

    #[test]
    fn basic() {
        assert_eq!(
            split("Hey friend!     How are you?!?"),
            ["hey", "friend", "!", "how", "are", "you", "?", "!", "?"]
        );
    }

    #[test]
    fn accents_cjk_controls() {
        assert_eq!(split("Crème Brûlée"), ["creme", "brulee"]);
        assert_eq!(split("野口 Rika"), ["野", "口", "rika"]);
        assert_eq!(split("a\u{0b}b\u{a0}c\u{200b}d\u{feff}"), ["ab", "cd"]);
        assert_eq!(split("e\u{301}\te\u{301}"), ["e", "e"]);
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split(" \t\u{3000} "), Vec::<String>::new());
    }
}
