//! Requests as rows: checking them against a signature, concatenating
//! compatible requests on the batch dimension, splitting outputs back.

use super::ExecutorError;
use bytes::BytesMut;
use conduit_types::{NamedTensors, Signature, Tensor};

/// Checks `inputs` against `signature`: each declared input exactly once,
/// nothing else, declared dtype and rank, fixed dimensions equal. Returns the
/// number of rows when the model batches (every input's first dimension is
/// dynamic and all inputs agree on it), `None` otherwise.
pub(crate) fn check_inputs(
    model: &str,
    signature: &Signature,
    inputs: &NamedTensors,
) -> Result<Option<usize>, ExecutorError> {
    let bad = |m: String| ExecutorError::InvalidInput(format!("model `{model}`: {m}"));
    for (name, _) in inputs {
        if !signature.inputs.iter().any(|s| &s.name == name) {
            let expected: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(bad(format!(
                "unknown input `{name}` (inputs: {})",
                expected.join(", ")
            )));
        }
        if inputs.iter().filter(|(n, _)| n == name).count() > 1 {
            return Err(bad(format!("input `{name}` given twice")));
        }
    }
    let mut rows: Option<usize> = None;
    let mut batchable = true;
    for spec in &signature.inputs {
        let tensor = inputs
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, t)| t)
            .ok_or_else(|| bad(format!("missing input `{}`", spec.name)))?;
        if tensor.dtype() != spec.dtype {
            return Err(bad(format!(
                "input `{}` must be {}, got {}",
                spec.name,
                spec.dtype,
                tensor.dtype()
            )));
        }
        let shape = tensor.shape();
        let fits = shape.len() == spec.shape.len()
            && spec
                .shape
                .iter()
                .zip(shape)
                .all(|(want, got)| *want < 0 || want == got);
        if !fits {
            return Err(bad(format!(
                "input `{}` must have shape {:?} (-1: any), got {shape:?}",
                spec.name, spec.shape
            )));
        }
        match (spec.shape.first(), shape.first()) {
            (Some(-1), Some(&n)) => match rows {
                None => rows = Some(n as usize),
                Some(r) if r == n as usize => {}
                Some(r) => {
                    return Err(bad(format!(
                        "inputs disagree on the batch dimension ({r} vs {n} rows in `{}`)",
                        spec.name
                    )));
                }
            },
            _ => batchable = false,
        }
    }
    Ok(if batchable { rows } else { None })
}

/// What must match for two requests to share a batch: input names, types and
/// every dimension but the first (no padding: requests whose sequence
/// lengths differ run in separate batches).
pub(crate) fn compatible(a: &NamedTensors, b: &NamedTensors) -> bool {
    a.len() == b.len()
        && a.iter().all(|(name, ta)| {
            b.iter().any(|(n, tb)| {
                n == name && ta.dtype() == tb.dtype() && ta.shape().get(1..) == tb.shape().get(1..)
            })
        })
}

/// Concatenates requests on the first dimension (inputs in the first
/// request's order). The KServe layout is row-major, so this is a byte
/// concatenation, BYTES included.
pub(crate) fn concat(parts: &[&NamedTensors]) -> Result<NamedTensors, ExecutorError> {
    let first = parts[0];
    if parts.len() == 1 {
        return Ok(first.clone());
    }
    first
        .iter()
        .map(|(name, t0)| {
            let mut rows = 0;
            let mut data = BytesMut::new();
            for part in parts {
                let t = &part
                    .iter()
                    .find(|(n, _)| n == name)
                    .expect("compatible requests have the same inputs")
                    .1;
                rows += t.shape()[0];
                data.extend_from_slice(t.data());
            }
            let mut shape = t0.shape().to_vec();
            shape[0] = rows;
            Tensor::new(t0.dtype(), shape, data.freeze())
                .map(|t| (name.clone(), t))
                .map_err(|e| ExecutorError::Backend(format!("concatenating `{name}`: {e}")))
        })
        .collect()
}

/// Splits batch outputs back into one set per request of `rows` rows each.
pub(crate) fn split(
    outputs: NamedTensors,
    rows: &[usize],
) -> Result<Vec<NamedTensors>, ExecutorError> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: usize = rows.iter().sum();
    let mut out = vec![Vec::with_capacity(outputs.len()); rows.len()];
    for (name, t) in outputs {
        if t.shape().first().copied() != Some(total as i64) {
            return Err(ExecutorError::Backend(format!(
                "output `{name}` has shape {:?}, not {total} rows: the model does not batch on its first dimension",
                t.shape()
            )));
        }
        let mut start = 0;
        for (i, n) in rows.iter().enumerate() {
            let part = t
                .slice_rows(start, start + n)
                .map_err(|e| ExecutorError::Backend(format!("splitting `{name}`: {e}")))?;
            out[i].push((name.clone(), part));
            start += n;
        }
    }
    Ok(out)
}

/// Splits one request with more rows than `max` into requests of at most
/// `max` rows.
pub(crate) fn chunk(
    inputs: &NamedTensors,
    rows: usize,
    max: usize,
) -> Result<Vec<NamedTensors>, ExecutorError> {
    (0..rows)
        .step_by(max)
        .map(|start| {
            let end = (start + max).min(rows);
            inputs
                .iter()
                .map(|(n, t)| {
                    t.slice_rows(start, end)
                        .map(|t| (n.clone(), t))
                        .map_err(|e| ExecutorError::InvalidInput(format!("splitting `{n}`: {e}")))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_types::{DataType, TensorSpec};

    fn sig() -> Signature {
        Signature {
            inputs: vec![
                TensorSpec {
                    name: "ids".into(),
                    dtype: DataType::Int64,
                    shape: vec![-1, -1],
                },
                TensorSpec {
                    name: "mask".into(),
                    dtype: DataType::Int64,
                    shape: vec![-1, -1],
                },
            ],
            outputs: vec![],
        }
    }

    fn req(rows: i64, seq: i64, base: i64) -> NamedTensors {
        let n = (rows * seq) as usize;
        let v: Vec<i64> = (0..n as i64).map(|i| base + i).collect();
        vec![
            ("ids".into(), Tensor::from_i64(vec![rows, seq], &v).unwrap()),
            (
                "mask".into(),
                Tensor::from_i64(vec![rows, seq], &vec![1; n]).unwrap(),
            ),
        ]
    }

    #[test]
    fn checks_names_types_and_shapes() {
        let s = sig();
        assert_eq!(check_inputs("m", &s, &req(3, 5, 0)).unwrap(), Some(3));
        let mut missing = req(1, 2, 0);
        missing.pop();
        assert!(
            check_inputs("m", &s, &missing)
                .unwrap_err()
                .to_string()
                .contains("missing input `mask`")
        );
        let mut extra = req(1, 2, 0);
        extra.push(("x".into(), Tensor::from_f32(vec![1], &[0.0]).unwrap()));
        assert!(
            check_inputs("m", &s, &extra)
                .unwrap_err()
                .to_string()
                .contains("unknown input `x`")
        );
        let mut wrong = req(1, 2, 0);
        wrong[1].1 = Tensor::from_f32(vec![1, 2], &[0.0, 1.0]).unwrap();
        assert!(
            check_inputs("m", &s, &wrong)
                .unwrap_err()
                .to_string()
                .contains("must be INT64, got FP32")
        );
        let mut rank = req(1, 2, 0);
        rank[0].1 = Tensor::from_i64(vec![2], &[0, 1]).unwrap();
        assert!(
            check_inputs("m", &s, &rank)
                .unwrap_err()
                .to_string()
                .contains("shape")
        );
        let mut rows = req(2, 2, 0);
        rows[1].1 = Tensor::from_i64(vec![1, 4], &[1; 4]).unwrap();
        assert!(
            check_inputs("m", &s, &rows)
                .unwrap_err()
                .to_string()
                .contains("disagree")
        );
    }

    #[test]
    fn concat_then_split_round_trips() {
        let (a, b) = (req(2, 3, 0), req(1, 3, 100));
        assert!(compatible(&a, &b));
        assert!(!compatible(&a, &req(1, 4, 0)));
        let joined = concat(&[&a, &b]).unwrap();
        assert_eq!(joined[0].1.shape(), [3, 3]);
        let parts = split(joined, &[2, 1]).unwrap();
        assert_eq!(parts[0][0].1.to_i64().unwrap(), a[0].1.to_i64().unwrap());
        assert_eq!(parts[1][0].1.to_i64().unwrap(), b[0].1.to_i64().unwrap());
        let chunks = chunk(&req(5, 2, 0), 5, 2).unwrap();
        assert_eq!(
            chunks.iter().map(|c| c[0].1.shape()[0]).collect::<Vec<_>>(),
            [2, 2, 1]
        );
    }
}
