//! Workloads: the request a run sends, and the check every response must
//! pass to count. The same request and check serve gRPC and HTTP, Conduit
//! and Triton alike; a response that fails its check is an error, never a
//! latency sample.

use crate::PAIR;
use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use std::path::Path;

/// The README pair's similarity, as all-MiniLM-L6-v2 + mean pooling +
/// cosine compute it (0.69649 in `testdata/minilm_reference.json`).
pub const PARAPHRASE_SIMILARITY: f32 = 0.6965;
/// How far a server's similarity may be from [`PARAPHRASE_SIMILARITY`].
pub const PARAPHRASE_TOLERANCE: f32 = 2e-3;
/// How far each `last_hidden_state` value may be from the reference.
pub const HIDDEN_TOLERANCE: f32 = 2e-3;
/// Tokens per row of the `minilm` workload.
const SEQ: usize = 128;
/// all-MiniLM-L6-v2's hidden size.
const HIDDEN: usize = 384;
/// The input of the `add` workload; `add.onnx` adds `[1, 2, 3, 4]`.
const ADD_X: [f32; 4] = [0.5, 1.5, 2.5, 3.5];
const ADD_BIAS: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

/// A tensor as it travels: KServe v2 name, datatype and shape, and its raw
/// little-endian bytes (BYTES: each element's 4-byte length, then its bytes).
#[derive(Clone, Debug)]
pub struct Wire {
    /// Tensor name.
    pub name: String,
    /// KServe v2 datatype (`FP32`, `INT64`, `BYTES`, …).
    pub datatype: String,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Raw contents.
    pub data: Bytes,
}

/// Which request to send and how to check its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// The README pair as `text` BYTES [2, 1]; `similarity` FP32 [1] must be
    /// [`PARAPHRASE_SIMILARITY`] ± [`PARAPHRASE_TOLERANCE`].
    Paraphrase,
    /// The pair tokenized to 3 × [2, 128] INT64; `last_hidden_state` FP32
    /// [2, 128, 384] must match `testdata/minilm_reference.json` on every
    /// real token, ± [`HIDDEN_TOLERANCE`].
    Minilm,
    /// `testdata/fixtures/add.onnx`: `x` FP32 [1, 4]; `y` must be `x + [1, 2, 3, 4]`.
    Add,
}

impl Workload {
    /// Parses `paraphrase`, `minilm` or `add`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "paraphrase" => Self::Paraphrase,
            "minilm" => Self::Minilm,
            "add" => Self::Add,
            other => bail!("unknown workload `{other}` (paraphrase | minilm | add)"),
        })
    }

    /// The workload's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Paraphrase => "paraphrase",
            Self::Minilm => "minilm",
            Self::Add => "add",
        }
    }

    /// Builds the request and its check; `reference` is the MiniLM reference
    /// file (read by `minilm` only).
    ///
    /// # Errors
    /// `minilm` when the reference cannot be read or disagrees with the
    /// tokenizer.
    pub fn case(self, reference: &Path) -> Result<Case> {
        Ok(match self {
            Self::Paraphrase => {
                let mut raw = Vec::new();
                for s in PAIR {
                    raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    raw.extend_from_slice(s.as_bytes());
                }
                Case {
                    inputs: vec![wire("text", "BYTES", vec![2, 1], raw)],
                    outputs: vec!["similarity".into()],
                    check: Check::Similarity,
                }
            }
            Self::Minilm => minilm(reference)?,
            Self::Add => Case {
                inputs: vec![wire("x", "FP32", vec![1, 4], le_f32(&ADD_X))],
                outputs: vec!["y".into()],
                check: Check::Sum,
            },
        })
    }
}

/// One request's inputs, the outputs it asks for, and the answer's check.
#[derive(Clone, Debug)]
pub struct Case {
    /// Inputs, in order.
    pub inputs: Vec<Wire>,
    /// Outputs requested (the server returns only these).
    pub outputs: Vec<String>,
    check: Check,
}

#[derive(Clone, Debug)]
enum Check {
    Similarity,
    /// Per row: the reference hidden states of its real tokens, row-major.
    Hidden([Vec<f32>; 2]),
    Sum,
}

impl Case {
    /// Checks an answer.
    ///
    /// # Errors
    /// A short description of what is wrong.
    pub fn check(&self, outputs: &[Wire]) -> Result<(), String> {
        match &self.check {
            Check::Similarity => {
                let s = f32_output(outputs, "similarity", &[1])?[0];
                if off(s, PARAPHRASE_SIMILARITY) > PARAPHRASE_TOLERANCE {
                    return Err(format!(
                        "similarity {s}, expected {PARAPHRASE_SIMILARITY} ± {PARAPHRASE_TOLERANCE}"
                    ));
                }
            }
            Check::Hidden(rows) => {
                let shape = [2, SEQ as i64, HIDDEN as i64];
                let h = f32_output(outputs, "last_hidden_state", &shape)?;
                for (r, want) in rows.iter().enumerate() {
                    let got = &h[r * SEQ * HIDDEN..][..want.len()];
                    let worst = got
                        .iter()
                        .zip(want)
                        .map(|(&a, &b)| off(a, b))
                        .fold(0.0f32, f32::max);
                    if worst > HIDDEN_TOLERANCE {
                        return Err(format!(
                            "last_hidden_state row {r} is {worst} from the reference (tolerance {HIDDEN_TOLERANCE})"
                        ));
                    }
                }
            }
            Check::Sum => {
                let y = f32_output(outputs, "y", &[1, 4])?;
                for (i, (y, (x, b))) in y.iter().zip(ADD_X.iter().zip(ADD_BIAS)).enumerate() {
                    if off(*y, x + b) > 1e-6 {
                        return Err(format!("y[{i}] = {y}, expected {}", x + b));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How far `got` is from `want`; infinite for NaN (which never compares
/// greater than a tolerance).
fn off(got: f32, want: f32) -> f32 {
    let d = (got - want).abs();
    if d.is_nan() { f32::INFINITY } else { d }
}

/// The FP32 values of output `name`, which must have `shape`.
fn f32_output(outputs: &[Wire], name: &str, shape: &[i64]) -> Result<Vec<f32>, String> {
    let o = outputs
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| format!("no output `{name}`"))?;
    if o.datatype != "FP32" || o.shape != shape {
        return Err(format!(
            "`{name}` is {} {:?}, expected FP32 {shape:?}",
            o.datatype, o.shape
        ));
    }
    let n: i64 = shape.iter().product();
    if o.data.len() != n as usize * 4 {
        return Err(format!("`{name}` has {} bytes for {n} FP32", o.data.len()));
    }
    Ok(o.data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn wire(name: &str, datatype: &str, shape: Vec<i64>, data: Vec<u8>) -> Wire {
    Wire {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        data: Bytes::from(data),
    }
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_i64(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The pair tokenized natively (the tokenizer component's code), and the
/// reference hidden states of its real tokens.
fn minilm(reference: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(reference).with_context(|| {
        format!(
            "reading {} (run `make minilm-reference`)",
            reference.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", reference.display()))?;
    let sentences = json["sentences"]
        .as_array()
        .context("reference has no `sentences`")?;
    let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = Vec::new();
    for s in PAIR {
        let entry = sentences
            .iter()
            .find(|e| e["text"] == s)
            .with_context(|| format!("reference lacks the sentence {s:?}"))?;
        let numbers = |key: &str| -> Result<Vec<f64>> {
            entry[key]
                .as_array()
                .with_context(|| format!("reference sentence has no `{key}`"))?
                .iter()
                .map(|v| v.as_f64().context("not a number"))
                .collect()
        };
        let e = bert_tokenizer::encode(s, None, SEQ);
        let want: Vec<i64> = numbers("input_ids")?.iter().map(|&v| v as i64).collect();
        ensure!(
            e.input_ids[..want.len()] == want[..]
                && e.attention_mask.iter().sum::<i64>() as usize == want.len(),
            "the tokenizer disagrees with the reference on {s:?}"
        );
        let hidden: Vec<f32> = numbers("last_hidden_state")?
            .iter()
            .map(|&v| v as f32)
            .collect();
        ensure!(
            hidden.len() == want.len() * HIDDEN,
            "reference hidden state of {s:?} has {} values",
            hidden.len()
        );
        ids.extend(e.input_ids);
        mask.extend(e.attention_mask);
        types.extend(e.token_type_ids);
        rows.push(hidden);
    }
    let shape = vec![2, SEQ as i64];
    let [a, b]: [Vec<f32>; 2] = rows.try_into().expect("two rows");
    Ok(Case {
        inputs: vec![
            wire("input_ids", "INT64", shape.clone(), le_i64(&ids)),
            wire("attention_mask", "INT64", shape.clone(), le_i64(&mask)),
            wire("token_type_ids", "INT64", shape, le_i64(&types)),
        ],
        outputs: vec!["last_hidden_state".into()],
        check: Check::Hidden([a, b]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, shape: Vec<i64>, values: &[f32]) -> Vec<Wire> {
        vec![wire(name, "FP32", shape, le_f32(values))]
    }

    #[test]
    fn paraphrase_checks_the_similarity() {
        let case = Workload::Paraphrase.case(Path::new("unused")).unwrap();
        assert_eq!(case.inputs[0].data.len(), 8 + PAIR[0].len() + PAIR[1].len());
        assert!(
            case.check(&answer("similarity", vec![1], &[0.6962]))
                .is_ok()
        );
        let wrong = case.check(&answer("similarity", vec![1], &[0.71]));
        assert!(wrong.unwrap_err().contains("expected 0.6965"));
        let nan = case.check(&answer("similarity", vec![1], &[f32::NAN]));
        assert!(nan.is_err());
        let shape = case.check(&answer("similarity", vec![2], &[0.6965, 0.6965]));
        assert!(shape.unwrap_err().contains("expected FP32 [1]"));
        assert!(case.check(&[]).unwrap_err().contains("no output"));
    }

    #[test]
    fn add_checks_the_sum() {
        let case = Workload::Add.case(Path::new("unused")).unwrap();
        assert!(
            case.check(&answer("y", vec![1, 4], &[1.5, 3.5, 5.5, 7.5]))
                .is_ok()
        );
        let wrong = case.check(&answer("y", vec![1, 4], &[1.5, 3.5, 5.5, 7.0]));
        assert_eq!(wrong.unwrap_err(), "y[3] = 7, expected 7.5");
    }

    /// The constant agrees with the reference file, where it was generated.
    #[test]
    fn minilm_reference_agrees() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/minilm_reference.json"
        ));
        if !path.exists() {
            eprintln!("skipped: no {} (make minilm-reference)", path.display());
            return;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cosine = json["pairs"][0]["cosine"].as_f64().unwrap() as f32;
        assert!((cosine - PARAPHRASE_SIMILARITY).abs() < 1e-4, "{cosine}");
        let case = Workload::Minilm.case(path).unwrap();
        assert_eq!(case.inputs.len(), 3);
        assert!(case.inputs.iter().all(|t| t.data.len() == 2 * SEQ * 8));
        let Check::Hidden(rows) = &case.check else {
            panic!("minilm checks hidden states")
        };
        let mut h = vec![0.0f32; 2 * SEQ * HIDDEN];
        for (r, row) in rows.iter().enumerate() {
            h[r * SEQ * HIDDEN..][..row.len()].copy_from_slice(row);
        }
        let shape = vec![2, SEQ as i64, HIDDEN as i64];
        assert!(
            case.check(&answer("last_hidden_state", shape.clone(), &h))
                .is_ok()
        );
        h[5] += 0.01;
        let wrong = case.check(&answer("last_hidden_state", shape, &h));
        assert!(wrong.unwrap_err().contains("row 0"));
    }
}
