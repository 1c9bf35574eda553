//! The BERT tokenizer of all-MiniLM-L6-v2, equal to HF `tokenizers` with its
//! `tokenizer.json` plus `longest_first` truncation and fixed-length padding.
//!
//! Pipeline per sequence: split out the special tokens written literally in the text
//! (`[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`, `[MASK]`: HF's added tokens, matched
//! case-sensitively before normalization), then [`normalize`] (BertNormalizer +
//! BertPreTokenizer) and [`wordpiece`] the text between them. The ids are then
//! truncated (longest first, leaving room for the special tokens), wrapped by the
//! template `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` (type ids 0 for A, 1 for B and its
//! `[SEP]`) and padded with `[PAD]` (id 0, mask 0, type 0) to `max_length`.

mod hash;
mod normalize;
mod vocab;
mod wordpiece;

use normalize::WordSink;

/// Model inputs for one or more rows of `max_length` tokens each, row-major.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids: `[CLS]`, the tokens, `[SEP]` (…), then `[PAD]` (0).
    pub input_ids: Vec<i64>,
    /// 1 for real tokens (special tokens included), 0 for padding.
    pub attention_mask: Vec<i64>,
    /// 0 for the first sequence (and padding), 1 for the second of a pair.
    pub token_type_ids: Vec<i64>,
    /// Per row: how many tokens truncation cut (both sequences of a pair
    /// together); 0 when the row fit. What HF `tokenizers` returns as the
    /// overflowing tokens, counted.
    pub truncated: Vec<i64>,
}

impl Encoding {
    fn with_capacity(n: usize) -> Self {
        Self {
            input_ids: Vec::with_capacity(n),
            attention_mask: Vec::with_capacity(n),
            token_type_ids: Vec::with_capacity(n),
            truncated: Vec::new(),
        }
    }
}

/// Encodes `text` (and `pair`, as the second sequence) into one row of `max_length` tokens.
///
/// Matches HF `tokenizers` for every `max_length` at least as large as the special
/// tokens (2 for a single text, 3 for a pair). Below that HF overflows the row; here
/// the row is cut to `max_length` instead, so it always has exactly `max_length` tokens.
pub fn encode(text: &str, pair: Option<&str>, max_length: usize) -> Encoding {
    let mut out = Encoding::with_capacity(max_length);
    Scratch::default().encode_row(text, pair, max_length, &mut out);
    out
}

/// Encodes a batch: row `i` is `encode(texts[i], pairs.map(|p| p[i]), max_length)`.
///
/// The rows are concatenated (`texts.len() × max_length`, row-major).
///
/// # Panics
/// When `pairs` is given with a length other than `texts.len()`.
pub fn encode_batch(texts: &[&str], pairs: Option<&[&str]>, max_length: usize) -> Encoding {
    if let Some(pairs) = pairs {
        assert_eq!(
            pairs.len(),
            texts.len(),
            "encode_batch: {} texts but {} pairs",
            texts.len(),
            pairs.len()
        );
    }
    let mut out = Encoding::with_capacity(texts.len() * max_length);
    let mut scratch = Scratch::default();
    for (i, text) in texts.iter().enumerate() {
        scratch.encode_row(text, pairs.map(|p| p[i]), max_length, &mut out);
    }
    out
}

/// The text of vocabulary entry `id` (`None` when `id` is outside the vocabulary).
pub fn id_to_token(id: u32) -> Option<&'static str> {
    vocab::token(id)
}

/// The number of entries in the vocabulary (30522 for all-MiniLM-L6-v2).
pub fn vocab_size() -> usize {
    vocab::len()
}

/// Buffers reused across the rows of a batch.
#[derive(Default)]
struct Scratch {
    word: String,
    a: Vec<u32>,
    b: Vec<u32>,
}

impl Scratch {
    fn encode_row(
        &mut self,
        text: &str,
        pair: Option<&str>,
        max_length: usize,
        out: &mut Encoding,
    ) {
        let row_start = out.input_ids.len();
        let (len_a, len_b, cut) = match pair {
            None => {
                // A single sequence keeps its first `budget` ids: stop tokenizing after
                // them, and only a text that overflows is tokenized to its end, to count
                // what was cut.
                let budget = max_length.saturating_sub(2);
                tokenize(text, budget, &mut self.word, &mut self.a);
                let mut cut = 0;
                if self.a.len() > budget {
                    tokenize(text, usize::MAX, &mut self.word, &mut self.b);
                    cut = self.b.len() - budget;
                }
                (self.a.len().min(budget), 0, cut)
            }
            Some(pair) => {
                // Longest-first needs both true lengths (which side is longer).
                tokenize(text, usize::MAX, &mut self.word, &mut self.a);
                tokenize(pair, usize::MAX, &mut self.word, &mut self.b);
                let budget = max_length.saturating_sub(3);
                let (a, b) = truncate_pair(self.a.len(), self.b.len(), budget);
                (a, b, self.a.len() + self.b.len() - a - b)
            }
        };
        out.truncated.push(cut as i64);

        // The row: `[CLS] A [SEP]` (type 0), then `B [SEP]` (type 1), then padding, cut
        // to `max_length` when that cannot even hold the special tokens.
        let first = len_a + 2;
        let second = if pair.is_some() { len_b + 1 } else { 0 };
        let row_end = row_start + max_length;
        let real_end = (row_start + first + second).min(row_end);
        let first_end = (row_start + first).min(row_end);

        let ids = &mut out.input_ids;
        ids.push(i64::from(vocab::CLS_ID));
        ids.extend(self.a[..len_a].iter().map(|&id| i64::from(id)));
        ids.push(i64::from(vocab::SEP_ID));
        if pair.is_some() {
            ids.extend(self.b[..len_b].iter().map(|&id| i64::from(id)));
            ids.push(i64::from(vocab::SEP_ID));
        }
        ids.resize(row_end, i64::from(vocab::PAD_ID));

        out.attention_mask.resize(real_end, 1);
        out.attention_mask.resize(row_end, 0);
        out.token_type_ids.resize(first_end, 0);
        out.token_type_ids.resize(real_end, 1);
        out.token_type_ids.resize(row_end, 0);
    }
}

/// HF's `LongestFirst` truncation of a pair to `budget` ids: the kept lengths.
///
/// A literal port of `tokenizers::utils::truncation::truncate_encodings`, including
/// its rule that when both sides must be cut they get `budget / 2` each and the
/// longer one (the second when equal) gets the odd id left over.
fn truncate_pair(n_a: usize, n_b: usize, budget: usize) -> (usize, usize) {
    if n_a + n_b <= budget {
        return (n_a, n_b);
    }
    if budget == 0 {
        return (0, 0);
    }
    let swap = n_a > n_b;
    let mut n1 = n_a.min(n_b);
    let mut n2 = if n1 > budget { n1 } else { n1.max(budget - n1) };
    if n1 + n2 > budget {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
    }
    if swap {
        std::mem::swap(&mut n1, &mut n2);
    }
    (n_a.min(n1), n_b.min(n2))
}

/// Collects ids, stopping once more than `limit` have been produced.
struct Ids<'a> {
    ids: &'a mut Vec<u32>,
    limit: usize,
    hashes: wordpiece::PrefixHashes,
}

impl WordSink for Ids<'_> {
    fn word(&mut self, word: &str) {
        wordpiece::tokenize(word, &mut self.hashes, self.ids);
    }

    fn full(&self) -> bool {
        self.ids.len() > self.limit
    }
}

/// The ids of one sequence (no special tokens added); may stop early past `limit` ids.
fn tokenize(text: &str, limit: usize, word: &mut String, ids: &mut Vec<u32>) {
    ids.clear();
    let mut sink = Ids {
        ids,
        limit,
        hashes: [0; vocab::MAX_KEY + 1],
    };
    let mut rest = text;
    while let Some((before, id, after)) = split_special(rest) {
        normalize::words(before, word, &mut sink);
        if sink.full() {
            return;
        }
        sink.ids.push(id);
        rest = after;
    }
    normalize::words(rest, word, &mut sink);
}

/// The special tokens matched in raw text, as HF's added vocabulary does.
const SPECIAL: [(&str, u32); 5] = [
    ("[PAD]", vocab::PAD_ID),
    ("[UNK]", vocab::UNK_ID),
    ("[CLS]", vocab::CLS_ID),
    ("[SEP]", vocab::SEP_ID),
    ("[MASK]", vocab::MASK_ID),
];

/// The leftmost special token in `text`: (text before, its id, text after).
fn split_special(text: &str) -> Option<(&str, u32, &str)> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(p) = bytes[from..].iter().position(|&b| b == b'[') {
        let at = from + p;
        for (tok, id) in SPECIAL {
            if bytes[at..].starts_with(tok.as_bytes()) {
                return Some((&text[..at], id, &text[at + tok.len()..]));
            }
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_truncation_matches_hf_rule() {
        assert_eq!(truncate_pair(3, 4, 10), (3, 4));
        assert_eq!(truncate_pair(2, 20, 10), (2, 8));
        assert_eq!(truncate_pair(20, 2, 10), (8, 2));
        assert_eq!(truncate_pair(20, 30, 11), (5, 6));
        assert_eq!(truncate_pair(30, 20, 11), (6, 5));
        assert_eq!(truncate_pair(20, 20, 11), (5, 6));
        assert_eq!(truncate_pair(7, 8, 11), (5, 6));
        assert_eq!(truncate_pair(0, 30, 11), (0, 11));
        assert_eq!(truncate_pair(5, 5, 0), (0, 0));
    }

    #[test]
    fn shapes_and_specials() {
        let e = encode("Hello world", None, 8);
        assert_eq!(e.input_ids, [101, 7592, 2088, 102, 0, 0, 0, 0]);
        assert_eq!(e.attention_mask, [1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(e.token_type_ids, [0; 8]);

        let e = encode("hello", Some("world"), 6);
        assert_eq!(e.input_ids, [101, 7592, 102, 2088, 102, 0]);
        assert_eq!(e.token_type_ids, [0, 0, 0, 1, 1, 0]);

        let e = encode("a [SEP]b[MASK] [mask]", None, 12);
        assert_eq!(
            &e.input_ids[..9],
            [101, 1037, 102, 1038, 103, 1031, 7308, 1033, 102]
        );

        // Too short for the specials: cut, never longer than max_length.
        assert_eq!(encode("x", Some("y"), 2).input_ids, [101, 102]);
        assert_eq!(encode("x", None, 1).input_ids, [101]);
        assert!(encode("x", None, 0).input_ids.is_empty());
    }

    #[test]
    fn batch_is_rows_concatenated() {
        let texts = ["one", "two three", ""];
        let pairs = ["x", "", "y z"];
        let batch = encode_batch(&texts, Some(&pairs), 7);
        let mut rows = Encoding::default();
        for (t, p) in texts.iter().zip(pairs) {
            let r = encode(t, Some(p), 7);
            rows.input_ids.extend(r.input_ids);
            rows.attention_mask.extend(r.attention_mask);
            rows.token_type_ids.extend(r.token_type_ids);
            rows.truncated.extend(r.truncated);
        }
        assert_eq!(batch, rows);
        assert_eq!(batch.input_ids.len(), 21);
    }

    #[test]
    fn truncation_is_counted_per_row() {
        // 6 word pieces: a single text keeps max_length - 2 of them.
        let text = "one two three four five six";
        assert_eq!(encode(text, None, 8).truncated, [0]);
        assert_eq!(encode(text, None, 5).truncated, [3]);
        // A pair keeps max_length - 3 of its 6 + 2 pieces.
        assert_eq!(encode(text, Some("seven eight"), 11).truncated, [0]);
        assert_eq!(encode(text, Some("seven eight"), 7).truncated, [4]);
        let batch = encode_batch(&[text, "hi"], None, 5);
        assert_eq!(batch.truncated, [3, 0]);
    }
}
