//! Compares the tokenizer with HF `tokenizers` on the shared corpus.
//!
//! Inputs (paths from the workspace root):
//! - `tests/data/tokenizer_corpus.json`: `[{"text", "pair", "max_length"}]`;
//! - `testdata/tokenizer_reference.json`: HF's encodings of it, made by
//!   `make reference` (`scripts/tokenizer_reference.py`).

use bert_tokenizer::{Encoding, encode, encode_batch, id_to_token};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(3)
        .expect("workspace root")
        .to_path_buf()
}

fn load(rel: &str, hint: &str) -> Value {
    let path = workspace_root().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): {hint}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("integer"))
        .collect()
}

fn tokens(ids: &[i64]) -> Vec<&'static str> {
    ids.iter()
        .map(|&id| {
            u32::try_from(id)
                .ok()
                .and_then(id_to_token)
                .unwrap_or("<?>")
        })
        .collect()
}

struct Case {
    text: String,
    pair: Option<String>,
    max_length: usize,
    want: Encoding,
}

fn cases() -> Vec<Case> {
    let corpus = load(
        "tests/data/tokenizer_corpus.json",
        "the corpus is committed in the repository",
    );
    let reference = load(
        "testdata/tokenizer_reference.json",
        "run `make reference` (scripts/fetch_model.sh, then .venv/bin/python \
         scripts/tokenizer_reference.py tests/data/tokenizer_corpus.json \
         testdata/tokenizer_reference.json) first",
    );
    let corpus = corpus.as_array().expect("corpus is a JSON array");
    let reference = reference.as_array().expect("reference is a JSON array");
    assert_eq!(
        corpus.len(),
        reference.len(),
        "testdata/tokenizer_reference.json is stale (its length differs from the corpus): run `make reference`"
    );
    corpus
        .iter()
        .zip(reference)
        .map(|(c, r)| Case {
            text: c["text"].as_str().expect("text").to_string(),
            pair: c["pair"].as_str().map(str::to_string),
            max_length: c["max_length"].as_u64().expect("max_length") as usize,
            want: Encoding {
                input_ids: ints(&r["input_ids"]),
                attention_mask: ints(&r["attention_mask"]),
                token_type_ids: ints(&r["token_type_ids"]),
                truncated: vec![r["truncated"].as_i64().expect(
                    "testdata/tokenizer_reference.json has no `truncated`: run `make reference`",
                )],
            },
        })
        .collect()
}

#[test]
fn matches_hf_tokenizers_on_the_corpus() {
    let cases = cases();
    assert!(cases.len() >= 220, "corpus too small: {}", cases.len());
    let mut failures = 0;
    for (i, case) in cases.iter().enumerate() {
        let got = encode(&case.text, case.pair.as_deref(), case.max_length);
        if got != case.want {
            failures += 1;
            if failures == 1 {
                eprintln!(
                    "first mismatch: case {i}: text {:?} pair {:?} max_length {}",
                    case.text, case.pair, case.max_length
                );
                eprintln!("  want ids   {:?}", case.want.input_ids);
                eprintln!("  got  ids   {:?}", got.input_ids);
                eprintln!("  want toks  {:?}", tokens(&case.want.input_ids));
                eprintln!("  got  toks  {:?}", tokens(&got.input_ids));
                eprintln!("  want mask  {:?}", case.want.attention_mask);
                eprintln!("  got  mask  {:?}", got.attention_mask);
                eprintln!("  want types {:?}", case.want.token_type_ids);
                eprintln!("  got  types {:?}", got.token_type_ids);
                eprintln!("  want cut   {:?}", case.want.truncated);
                eprintln!("  got  cut   {:?}", got.truncated);
            }
        }
    }
    assert_eq!(
        failures,
        0,
        "{failures} of {} cases differ from HF tokenizers",
        cases.len()
    );
}

#[test]
fn batches_equal_rows() {
    let cases = cases();
    for max_length in [16, 128] {
        let singles: Vec<&Case> = cases.iter().filter(|c| c.pair.is_none()).collect();
        let texts: Vec<&str> = singles.iter().map(|c| c.text.as_str()).collect();
        let batch = encode_batch(&texts, None, max_length);
        assert_eq!(batch.input_ids.len(), texts.len() * max_length);
        for (row, text) in texts.iter().enumerate() {
            let one = encode(text, None, max_length);
            let r = row * max_length..(row + 1) * max_length;
            assert_eq!(batch.input_ids[r.clone()], one.input_ids[..], "row {row}");
            assert_eq!(
                batch.attention_mask[r.clone()],
                one.attention_mask[..],
                "row {row}"
            );
            assert_eq!(batch.token_type_ids[r], one.token_type_ids[..], "row {row}");
        }

        let pairs: Vec<&Case> = cases.iter().filter(|c| c.pair.is_some()).collect();
        let a: Vec<&str> = pairs.iter().map(|c| c.text.as_str()).collect();
        let b: Vec<&str> = pairs.iter().map(|c| c.pair.as_deref().unwrap()).collect();
        let batch = encode_batch(&a, Some(&b), max_length);
        for row in 0..a.len() {
            let one = encode(a[row], Some(b[row]), max_length);
            let r = row * max_length..(row + 1) * max_length;
            assert_eq!(
                batch.input_ids[r.clone()],
                one.input_ids[..],
                "pair row {row}"
            );
            assert_eq!(
                batch.token_type_ids[r],
                one.token_type_ids[..],
                "pair row {row}"
            );
        }
    }
}
