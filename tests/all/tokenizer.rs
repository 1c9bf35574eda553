//! The `bert-tokenizer` component equals the Python `tokenizers` library on
//! the corpus (reference produced by `make reference`).

use crate::common::*;
use conduit_runtime::SandboxLimits;
use conduit_types::Tensor;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    pair: Option<String>,
    max_length: i64,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Expected {
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    token_type_ids: Vec<i64>,
}

fn load_corpus() -> (Vec<Case>, Vec<Expected>) {
    let root = workspace_root();
    let corpus = std::fs::read_to_string(root.join("tests/data/tokenizer_corpus.json")).unwrap();
    let reference_path = root.join("testdata/tokenizer_reference.json");
    let reference = std::fs::read_to_string(&reference_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `make reference`",
            reference_path.display()
        )
    });
    let cases: Vec<Case> = serde_json::from_str(&corpus).unwrap();
    let expected: Vec<Expected> = serde_json::from_str(&reference).unwrap();
    assert_eq!(
        cases.len(),
        expected.len(),
        "corpus and reference differ in length"
    );
    assert!(cases.len() >= 200);
    (cases, expected)
}

fn rows(outputs: &[(String, Tensor)], row: usize, width: usize) -> Expected {
    let take = |name: &str| {
        output(outputs, name).to_i64().unwrap()[row * width..(row + 1) * width].to_vec()
    };
    Expected {
        input_ids: take("input_ids"),
        attention_mask: take("attention_mask"),
        token_type_ids: take("token_type_ids"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_matches_python_tokenizers_on_the_corpus() {
    let (cases, expected) = load_corpus();
    let rt = runtime();
    let c = rt.load(&component_bytes("bert-tokenizer")).await.unwrap();
    for (i, (case, want)) in cases.iter().zip(&expected).enumerate() {
        let text = match &case.pair {
            Some(pair) => {
                Tensor::from_byte_strings(vec![1, 2], [case.text.as_str(), pair.as_str()])
            }
            None => Tensor::from_byte_strings(vec![1], [case.text.as_str()]),
        }
        .unwrap();
        let out = rt
            .process(
                &c,
                vec![("text".into(), text)],
                &[int_param("max_length", case.max_length)],
                &ctx(SandboxLimits::default(), None),
            )
            .await
            .unwrap_or_else(|e| panic!("case {i} failed: {e}"));
        assert_eq!(output(&out, "input_ids").shape(), &[1, case.max_length]);
        let got = rows(&out, 0, case.max_length as usize);
        assert_eq!(
            &got, want,
            "case {i}: text {:?} pair {:?}",
            case.text, case.pair
        );
    }
}

/// The corpus texts `batch` in one call of the tokenizer `c`.
async fn tokenize_texts(
    rt: &conduit_runtime::Runtime,
    c: &std::sync::Arc<conduit_runtime::Component>,
    cases: &[Case],
    batch: &[usize],
    params: &[conduit_runtime::Param],
) -> Vec<(String, Tensor)> {
    let text = Tensor::from_byte_strings(
        vec![batch.len() as i64],
        batch.iter().map(|&i| cases[i].text.as_str()),
    )
    .unwrap();
    rt.process(
        c,
        vec![("text".into(), text)],
        params,
        &ctx(SandboxLimits::default(), None),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn batched_texts_equal_one_at_a_time() {
    let (cases, expected) = load_corpus();
    let batch: Vec<usize> = (0..cases.len())
        .filter(|&i| cases[i].pair.is_none() && cases[i].max_length == 128)
        .collect();
    assert!(batch.len() >= 50);
    let rt = runtime();
    let c = rt.load(&component_bytes("bert-tokenizer")).await.unwrap();
    let out = tokenize_texts(rt, &c, &cases, &batch, &[]).await;
    assert_eq!(
        output(&out, "attention_mask").shape(),
        &[batch.len() as i64, 128]
    );
    for (row, &i) in batch.iter().enumerate() {
        assert_eq!(rows(&out, row, 128), expected[i], "row {row} (case {i})");
    }
}

#[tokio::test]
async fn padding_to_the_longest_cuts_every_row_to_the_longest_text() {
    let (cases, expected) = load_corpus();
    let rt = runtime();
    let c = rt.load(&component_bytes("bert-tokenizer")).await.unwrap();
    let singles: Vec<usize> = (0..cases.len())
        .filter(|&i| cases[i].pair.is_none() && cases[i].max_length == 128)
        .collect();
    // Short texts (the longest row sets the width) and the whole set.
    for batch in [&singles[..3], &singles[..]] {
        let out = tokenize_texts(rt, &c, &cases, batch, &[str_param("padding", "longest")]).await;
        let longest = batch
            .iter()
            .map(|&i| expected[i].attention_mask.iter().sum::<i64>() as usize)
            .max()
            .unwrap();
        assert!(longest < 128 || batch.len() > 3, "a short batch is short");
        assert_eq!(
            output(&out, "input_ids").shape(),
            &[batch.len() as i64, longest as i64]
        );
        for (row, &i) in batch.iter().enumerate() {
            let want = &expected[i];
            let cut = |v: &Vec<i64>| v[..longest].to_vec();
            assert_eq!(
                rows(&out, row, longest),
                Expected {
                    input_ids: cut(&want.input_ids),
                    attention_mask: cut(&want.attention_mask),
                    token_type_ids: cut(&want.token_type_ids),
                },
                "row {row} (case {i})"
            );
            assert!(want.attention_mask[longest..].iter().all(|&m| m == 0));
        }
    }
}

#[tokio::test]
async fn bad_tokenizer_input_is_a_clear_guest_error() {
    let rt = runtime();
    let c = rt.load(&component_bytes("bert-tokenizer")).await.unwrap();
    let cases = vec![
        (Tensor::from_f32(vec![1], &[1.0]).unwrap(), vec![], "BYTES"),
        (
            Tensor::from_byte_strings(vec![1, 3], ["a", "b", "c"]).unwrap(),
            vec![],
            "2",
        ),
        (
            Tensor::from_byte_strings(vec![1], [&b"\xff\xfe"[..]]).unwrap(),
            vec![],
            "UTF-8",
        ),
        (
            Tensor::from_byte_strings(vec![1], ["ok"]).unwrap(),
            vec![int_param("max_length", 100_000)],
            "max_length",
        ),
        (
            Tensor::from_byte_strings(vec![1], ["ok"]).unwrap(),
            vec![str_param("padding", "shortest")],
            "padding",
        ),
    ];
    for (t, params, needle) in cases {
        let err = rt
            .process(
                &c,
                vec![("text".into(), t)],
                &params,
                &ctx(SandboxLimits::default(), None),
            )
            .await
            .unwrap_err();
        match &err {
            conduit_runtime::RuntimeError::Guest(g) => {
                assert_eq!(g.kind(), "invalid_input", "{err}");
                assert!(g.message().contains(needle), "`{g}` lacks `{needle}`");
            }
            other => panic!("expected a guest error, got {other:?}"),
        }
    }
}
