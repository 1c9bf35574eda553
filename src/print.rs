//! Human-readable tensor printing for the CLI.

use conduit_types::{DataType, Tensor};
use std::fmt::Write;

/// `name: DTYPE [shape]` then one line per row of the first dimension.
pub fn tensor(name: &str, t: &Tensor) -> String {
    let mut out = format!("{name}: {} {:?}\n", t.dtype(), t.shape());
    let values: Vec<String> = match t.dtype() {
        DataType::Int64 => t.to_i64().map(|v| v.iter().map(i64::to_string).collect()),
        DataType::Int32 => t.to_i32().map(|v| v.iter().map(i32::to_string).collect()),
        DataType::Fp32 => t
            .to_f32()
            .map(|v| v.iter().map(|x| format!("{x:.6}")).collect()),
        DataType::Fp64 => t
            .to_f64()
            .map(|v| v.iter().map(|x| format!("{x:.6}")).collect()),
        DataType::Bytes => t.byte_strings().map(|v| {
            v.iter()
                .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
                .collect()
        }),
        _ => Ok(vec![format!("<{} bytes>", t.byte_size())]),
    }
    .unwrap_or_default();
    let rows = t.shape().first().copied().unwrap_or(1).max(1) as usize;
    let per_row = values.len().div_ceil(rows).max(1);
    for row in values.chunks(per_row) {
        let _ = writeln!(out, "  [{}]", row.join(", "));
    }
    out
}
