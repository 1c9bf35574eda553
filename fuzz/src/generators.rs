//! Generators shared by the targets: names, datatypes, shapes, tensor data
//! and parameters that are mostly valid (so that a case gets past the first
//! check) and sometimes exactly wrong (so that every check is reached).

use arbitrary::{Result, Unstructured};
use conduit_types::DataType;

/// Tensor and parameter names: real ones, empty, odd and long.
pub const NAMES: &[&str] = &[
    "text",
    "x",
    "y",
    "ids",
    "mask",
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "last_hidden_state",
    "similarity",
    "embeddings",
    "timeout",
    "binary_data_output",
    "binary_data_size",
    "shared_memory_region",
    "classification",
    "tokenize.max_length",
    "",
    "a b",
    "é",
    "x\n",
    "\u{0}",
];

/// A name: usually one of [`NAMES`], sometimes arbitrary, sometimes long.
pub fn name(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => u.arbitrary::<String>()?,
        1 => u.choose(NAMES)?.repeat(u.int_in_range(1..=300)?),
        _ => u.choose(NAMES)?.to_string(),
    })
}

/// A datatype name: usually a KServe one, sometimes lowercase or unknown.
pub fn datatype_name(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=19u8)? {
        0 => u
            .choose(&["FP8", "STRING", "", "INT128", "TYPE_FP32", "fp32 "])?
            .to_string(),
        1 => u.choose(&DataType::ALL)?.as_str().to_ascii_lowercase(),
        2 => u.arbitrary::<String>()?,
        _ => u.choose(&DataType::ALL)?.as_str().to_string(),
    })
}

/// A shape: usually rank 0 to 3 with small dimensions; sometimes negative,
/// huge or of a rank over the limit.
pub fn shape(u: &mut Unstructured<'_>) -> Result<Vec<i64>> {
    let rank = if u.ratio(1, 20)? {
        u.int_in_range(4..=20)?
    } else {
        u.int_in_range(0..=3)?
    };
    (0..rank)
        .map(|_| {
            Ok(match u.int_in_range(0..=19u8)? {
                0 => *u.choose(&[-1, -2, i64::MIN, i64::MAX, 1 << 32, 1 << 62])?,
                1 => 0,
                _ => u.int_in_range(1..=4)?,
            })
        })
        .collect()
}

/// Elements a shape holds, if it is small enough to build.
pub fn small_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        let d = usize::try_from(d).ok()?;
        n.checked_mul(d).filter(|&n| n <= 4096)
    })
}

/// Raw KServe v2 bytes for `count` elements of `dtype`: exact most of the
/// time, a few bytes off sometimes.
pub fn raw_data(
    u: &mut Unstructured<'_>,
    dtype: Option<DataType>,
    count: usize,
) -> Result<Vec<u8>> {
    let mut out = match dtype.and_then(DataType::element_size) {
        Some(size) => {
            let mut v = vec![0u8; count * size];
            u.fill_buffer(&mut v)?;
            if dtype == Some(DataType::Bool) && u.ratio(3, 4)? {
                v.iter_mut().for_each(|b| *b &= 1);
            }
            v
        }
        None => {
            let mut v = Vec::new();
            for _ in 0..count {
                let item = element_bytes(u)?;
                v.extend_from_slice(&(item.len() as u32).to_le_bytes());
                v.extend_from_slice(&item);
            }
            v
        }
    };
    if u.ratio(1, 16)? {
        match u.int_in_range(0..=2u8)? {
            0 => out.truncate(out.len().saturating_sub(u.int_in_range(1..=4)?)),
            1 => {
                let n = u.int_in_range(1..=4)?.min(u.len());
                out.extend_from_slice(u.bytes(n)?);
            }
            _ => {
                // A BYTES length prefix that overruns.
                out.extend_from_slice(&u32::MAX.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// One `BYTES` element: text mostly, sometimes not UTF-8.
pub fn element_bytes(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    Ok(if u.ratio(1, 8)? {
        let n = u.int_in_range(0..=8)?;
        u.bytes(n.min(u.len()))?.to_vec()
    } else {
        u.choose(&[
            "",
            "A sentence.",
            "Conduit",
            "é",
            "\"quoted\"",
            "line\nbreak",
        ])?
        .as_bytes()
        .to_vec()
    })
}

/// A parameter value as a JSON value: booleans, integers of every range,
/// floats, strings, and now and then what a parameter may not be.
pub fn json_param(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    use serde_json::{Value, json};
    Ok(match u.int_in_range(0..=9u8)? {
        0 => Value::Bool(u.arbitrary()?),
        1 => json!(u.arbitrary::<i64>()?),
        2 => json!(u.arbitrary::<u64>()?),
        3 => json!(*u.choose(&[0i64, 1, -1, 1_000_000, i64::MAX])?),
        4 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 => Value::String(name(u)?),
        6 => json!([1, 2]),
        7 => json!({"a": 1}),
        8 => Value::Null,
        _ => Value::String(u.arbitrary()?),
    })
}

/// A parameter value JSON can carry as a KServe parameter: a boolean, an
/// integer, a float or a string.
pub fn scalar_param(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    use serde_json::{Value, json};
    Ok(match u.int_in_range(0..=5u8)? {
        0 => Value::Bool(u.arbitrary()?),
        1 => json!(u.arbitrary::<i64>()?),
        2 => json!(*u.choose(&[0i64, 1, -1, 1_000_000, i64::MAX])?),
        3 => json!(u.arbitrary::<u64>()?),
        4 => serde_json::Number::from_f64(u.arbitrary()?).map_or(json!(0.25), Value::Number),
        _ => Value::String(name(u)?),
    })
}

/// Writes `s` as a TOML basic string (quoted, escaped).
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
