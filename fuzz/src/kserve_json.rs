//! KServe v2 HTTP inference bodies: JSON, and Triton's binary tensor
//! extension (`Inference-Header-Content-Length`), through
//! `conduit_runner::json::{split_body, decode_request}`.
//!
//! Input format: an optional first line
//! `inference-header-content-length: <value>\n` (the header as the client
//! sent it), then the body.
//!
//! Checks: no panic; errors are `InvalidInput` / `Unsupported` with a
//! bounded status message; the split is exact; a decoded request re-encodes
//! (every tensor as binary data, and again as JSON `data` where JSON can
//! carry it) and decodes to the same request; and the decoded tensors,
//! answered as outputs with `json::encode_response`, decode back to the same
//! tensors.

use crate::check;
use arbitrary::{Result, Unstructured};
use bytes::{Bytes, BytesMut};
use conduit_runner::json::{OutputModes, decode_request, encode_response, split_body};
use conduit_runner::{InferRequest, InferResponse};
use conduit_runtime::ParamValue;
use conduit_types::{DataType, Tensor};
use serde_json::{Map, Value, json};

/// The header line that starts an input with a binary part.
pub const HEADER: &[u8] = b"inference-header-content-length: ";

/// Tokens for mutations.
pub const DICTIONARY: &[&[u8]] = &[
    b"inference-header-content-length: ",
    b"\"inputs\"",
    b"\"outputs\"",
    b"\"parameters\"",
    b"\"binary_data_size\"",
    b"\"binary_data\"",
    b"\"binary_data_output\"",
    b"\"shared_memory_region\"",
    b"\"classification\"",
    b"\"timeout\"",
    b"\"datatype\"",
    b"\"shape\"",
    b"\"data\"",
    b"\"name\"",
    b"\"id\"",
    b"\"BYTES\"",
    b"\"FP16\"",
    b"\"BF16\"",
    b"\"FP32\"",
    b"\"FP64\"",
    b"\"INT8\"",
    b"\"UINT64\"",
    b"\"BOOL\"",
    b"[[",
    b"]]",
    b"true",
    b"null",
    b"-1",
    b"1e400",
    b"\\u0000",
    b"\\ud800",
];

/// The header value and the body of an input.
pub fn split_input(data: &[u8]) -> (Option<String>, &[u8]) {
    match data.strip_prefix(HEADER) {
        Some(rest) => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let value = String::from_utf8_lossy(&rest[..end]).into_owned();
            (Some(value), rest.get(end + 1..).unwrap_or_default())
        }
        None => (None, data),
    }
}

/// An input in this target's format.
pub fn input(header: Option<usize>, json: &[u8], binary: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(n) = header {
        out.extend_from_slice(HEADER);
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(json);
    out.extend_from_slice(binary);
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (header, body) = split_input(data);
    let body = Bytes::copy_from_slice(body);
    let (json, binary) = match split_body(body.clone(), header.as_deref()) {
        Ok(parts) => parts,
        Err(e) => return check::serve_error("split_body", e),
    };
    assert_eq!(
        json.len() + binary.len(),
        body.len(),
        "the split loses bytes"
    );
    assert_eq!(&body[..json.len()], &json[..]);
    let (req, modes) = match decode_request(&json, binary) {
        Ok(decoded) => decoded,
        Err(e) => return check::serve_error("decode_request", e),
    };
    check_decoded(&req);
    for as_json in [false, true] {
        let (json, binary) = encode_request(&req, &modes, as_json);
        let again = decode_request(&json, Bytes::from(binary)).unwrap_or_else(|e| {
            panic!(
                "a decoded request, encoded again (JSON data: {as_json}), is refused: {e}\n  \
                 encoded: {}",
                check::preview(&String::from_utf8_lossy(&json))
            )
        });
        assert_same(&req, &modes, &again.0, &again.1, as_json);
    }
    answer_round_trip(&req, &modes);
}

/// What every decoded request satisfies.
fn check_decoded(req: &InferRequest) {
    assert!(
        req.params.windows(2).all(|w| w[0].name <= w[1].name),
        "parameters are not sorted"
    );
    let timeout = req.params.iter().find_map(|p| match (&*p.name, &p.value) {
        ("timeout", ParamValue::Int64(us)) if *us > 0 => {
            Some(std::time::Duration::from_micros(*us as u64))
        }
        _ => None,
    });
    assert_eq!(
        req.timeout, timeout,
        "the timeout is not the `timeout` parameter"
    );
    for (name, t) in &req.inputs {
        assert!(
            Tensor::new(t.dtype(), t.shape().to_vec(), t.data().clone()).is_ok(),
            "input `{name}` is not a valid tensor"
        );
    }
}

/// The request as a client would send it: JSON, then binary tensor data.
/// With `as_json`, tensors JSON can carry exactly go as `data`.
pub fn encode_request(
    req: &InferRequest,
    modes: &OutputModes,
    as_json: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut binary = Vec::new();
    let inputs: Vec<Value> = req
        .inputs
        .iter()
        .map(|(name, t)| {
            let mut input = json!({
                "name": name,
                "datatype": t.dtype().as_str(),
                "shape": t.shape(),
            });
            match as_json.then(|| json_data(t)).flatten() {
                Some(data) => input["data"] = data,
                None => {
                    input["parameters"] = json!({ "binary_data_size": t.byte_size() });
                    binary.extend_from_slice(t.data());
                }
            }
            input
        })
        .collect();
    let mut params = Map::new();
    for p in &req.params {
        params.insert(p.name.clone(), param_json(&p.value));
    }
    let absent = absent_name(req);
    params.insert(
        "binary_data_output".into(),
        Value::Bool(modes.binary(&absent)),
    );
    let outputs: Vec<Value> = req
        .outputs
        .iter()
        .map(|o| json!({ "name": o, "parameters": { "binary_data": modes.binary(o) } }))
        .collect();
    let body = json!({
        "id": req.id,
        "parameters": params,
        "inputs": inputs,
        "outputs": outputs,
    });
    (serde_json::to_vec(&body).expect("JSON serialises"), binary)
}

/// An output name the request does not use.
fn absent_name(req: &InferRequest) -> String {
    let mut name = String::from("\u{1}absent");
    while req.outputs.contains(&name) {
        name.push('_');
    }
    name
}

fn param_json(v: &ParamValue) -> Value {
    match v {
        ParamValue::Bool(b) => json!(b),
        ParamValue::Int64(i) => json!(i),
        ParamValue::Uint64(u) => json!(u),
        ParamValue::Double(d) => json!(d),
        ParamValue::String(s) => json!(s),
    }
}

/// The elements of `t` as JSON `data`, when JSON carries them exactly.
fn json_data(t: &Tensor) -> Option<Value> {
    let v = match t.dtype() {
        DataType::Bool => {
            if t.data().iter().any(|&b| b > 1) {
                return None;
            }
            json!(t.data().iter().map(|&b| b == 1).collect::<Vec<_>>())
        }
        DataType::Uint8 => json!(t.data().to_vec()),
        DataType::Uint16 => json!(t.to_u16().ok()?),
        DataType::Uint32 => json!(t.to_u32().ok()?),
        DataType::Uint64 => json!(t.to_u64().ok()?),
        DataType::Int8 => json!(t.to_i8().ok()?),
        DataType::Int16 => json!(t.to_i16().ok()?),
        DataType::Int32 => json!(t.to_i32().ok()?),
        DataType::Int64 => json!(t.to_i64().ok()?),
        DataType::Fp32 => {
            let v = t.to_f32().ok()?;
            if !v.iter().all(|x| x.is_finite()) {
                return None;
            }
            json!(v)
        }
        DataType::Fp64 => {
            let v = t.to_f64().ok()?;
            if !v.iter().all(|x| x.is_finite()) {
                return None;
            }
            json!(v)
        }
        DataType::Bytes => {
            let items = t.byte_strings().ok()?;
            let strs: Option<Vec<&str>> =
                items.iter().map(|b| std::str::from_utf8(b).ok()).collect();
            json!(strs?)
        }
        DataType::Fp16 | DataType::Bf16 => return None,
    };
    Some(v)
}

/// Whether two decoded requests are the same request.
fn assert_same(
    a: &InferRequest,
    a_modes: &OutputModes,
    b: &InferRequest,
    b_modes: &OutputModes,
    as_json: bool,
) {
    let how = if as_json {
        "as JSON data"
    } else {
        "as binary data"
    };
    assert_eq!(a.id, b.id, "id differs after a round trip {how}");
    assert_eq!(a.inputs, b.inputs, "inputs differ after a round trip {how}");
    assert_eq!(
        format!("{:?}", a.params),
        format!("{:?}", b.params),
        "parameters differ after a round trip {how}"
    );
    assert_eq!(
        a.outputs, b.outputs,
        "outputs differ after a round trip {how}"
    );
    assert_eq!(
        a.timeout, b.timeout,
        "timeout differs after a round trip {how}"
    );
    let absent = absent_name(a);
    for name in a.outputs.iter().chain([&absent]) {
        assert_eq!(
            a_modes.binary(name),
            b_modes.binary(name),
            "binary mode of `{name}` differs after a round trip {how}"
        );
    }
}

/// The decoded tensors answered as outputs: the encoded answer stays under
/// its limit, and read back as a request it holds the same tensors.
fn answer_round_trip(req: &InferRequest, modes: &OutputModes) {
    const MAX: usize = 1 << 20;
    let resp = InferResponse {
        model: "m".into(),
        version: "1".into(),
        id: req.id.clone(),
        outputs: req.inputs.clone(),
        params: vec![("conduit.digest".into(), "blake3:00".into())],
        compute: std::time::Duration::ZERO,
        guard: None,
    };
    let encoded = match encode_response(&resp, modes, MAX) {
        Ok(e) => e,
        Err(conduit_runner::ServeError::ResponseTooLarge(_)) => return,
        Err(e) => panic!("encoding an answer of decoded tensors failed: {e:?}"),
    };
    assert!(encoded.body.len() <= MAX, "the answer is over its limit");
    let json_len = encoded.json_len.unwrap_or(encoded.body.len());
    assert!(json_len <= encoded.body.len());
    let mut value: Value =
        serde_json::from_slice(&encoded.body[..json_len]).expect("the answer's JSON parses");
    // An answer reads as a request once its outputs are called inputs;
    // half floats go as JSON numbers in answers only (widened to FP32).
    let outputs = value["outputs"].take();
    let Value::Array(outputs) = outputs else {
        panic!("the answer has no outputs array");
    };
    assert_eq!(outputs.len(), resp.outputs.len());
    let mut binary = BytesMut::new();
    let (mut keep, mut inputs) = (Vec::new(), Vec::new());
    let mut offset = json_len;
    for (o, (name, t)) in outputs.into_iter().zip(&resp.outputs) {
        assert_eq!(o["name"], json!(name));
        let part = o["parameters"]["binary_data_size"].as_u64().map(|n| {
            let end = offset.saturating_add(n as usize);
            assert!(
                end <= encoded.body.len(),
                "binary output `{name}` overruns the body"
            );
            let part = &encoded.body[offset..end];
            offset = end;
            part
        });
        if part.is_none() && matches!(t.dtype(), DataType::Fp16 | DataType::Bf16) {
            continue;
        }
        binary.extend_from_slice(part.unwrap_or_default());
        keep.push((name.clone(), canonical(t)));
        inputs.push(o);
    }
    assert_eq!(
        offset,
        encoded.body.len(),
        "binary outputs do not fill the body"
    );
    let json = serde_json::to_vec(&json!({ "inputs": inputs })).expect("JSON serialises");
    let (decoded, _) = decode_request(&json, binary.freeze())
        .unwrap_or_else(|e| panic!("an encoded answer does not read back: {e}"));
    let decoded: Vec<(String, Tensor)> = decoded
        .inputs
        .iter()
        .map(|(n, t)| (n.clone(), canonical(t)))
        .collect();
    assert_eq!(
        decoded, keep,
        "answered tensors differ from the decoded ones"
    );
}

/// `t` with `BOOL` bytes as 0 or 1 (JSON answers carry any non-zero byte
/// as `true`).
fn canonical(t: &Tensor) -> Tensor {
    if t.dtype() != DataType::Bool {
        return t.clone();
    }
    let data: Vec<u8> = t.data().iter().map(|&b| u8::from(b != 0)).collect();
    Tensor::new(DataType::Bool, t.shape().to_vec(), Bytes::from(data)).expect("same length")
}

/// A structured request: inputs with data that mostly fits, as JSON or
/// binary, parameters and outputs.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut binary = Vec::new();
    let mut inputs = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let datatype = crate::generators::datatype_name(u)?;
        let dtype: Option<DataType> = datatype.parse().ok();
        let shape = crate::generators::shape(u)?;
        let count = crate::generators::small_count(&shape).unwrap_or(u.int_in_range(0..=3)?);
        let mut input = json!({
            "name": crate::generators::name(u)?,
            "datatype": datatype,
            "shape": shape,
        });
        if u.ratio(1, 2)? {
            let raw = crate::generators::raw_data(u, dtype, count)?;
            let size = if u.ratio(1, 10)? {
                json!(*u.choose(&[-1i64, 0, 1 << 40])?)
            } else {
                json!(raw.len())
            };
            input["parameters"] = json!({ "binary_data_size": size });
            binary.extend_from_slice(&raw);
        } else {
            input["data"] = json_elements(u, dtype, count, &shape)?;
        }
        if u.ratio(1, 12)? {
            input["parameters"]["shared_memory_region"] = json!("r");
        }
        inputs.push(input);
    }
    let mut params = Map::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let value = if u.ratio(1, 8)? {
            crate::generators::json_param(u)?
        } else {
            crate::generators::scalar_param(u)?
        };
        params.insert(crate::generators::name(u)?, value);
    }
    let mut outputs = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let mut o = json!({ "name": crate::generators::name(u)? });
        if u.ratio(1, 2)? {
            o["parameters"] = json!({ "binary_data": crate::generators::json_param(u)? });
        }
        outputs.push(o);
    }
    let mut body = json!({ "inputs": inputs });
    if u.ratio(1, 2)? {
        body["id"] = json!(crate::generators::name(u)?);
    }
    if !params.is_empty() {
        body["parameters"] = Value::Object(params);
    }
    if !outputs.is_empty() {
        body["outputs"] = json!(outputs);
    }
    let json = serde_json::to_vec(&body).expect("JSON serialises");
    let header = if binary.is_empty() && u.ratio(3, 4)? {
        None
    } else {
        let exact = json.len();
        Some(if u.ratio(1, 10)? {
            exact.saturating_add(u.int_in_range(0..=3)?)
        } else {
            exact
        })
    };
    Ok(input(header, &json, &binary))
}

/// JSON `data` for `count` elements: of the datatype's JSON kind mostly,
/// nested like the shape sometimes, out of range or of another kind now
/// and then.
fn json_elements(
    u: &mut Unstructured<'_>,
    dtype: Option<DataType>,
    count: usize,
    shape: &[i64],
) -> Result<Value> {
    // One element now and then of another kind, or out of range.
    let odd = if count > 0 && u.ratio(1, 8)? {
        Some(u.int_in_range(0..=count - 1)?)
    } else {
        None
    };
    let mut items = Vec::with_capacity(count);
    for k in 0..count {
        items.push(match (dtype, odd == Some(k)) {
            (_, true) if u.ratio(1, 2)? => crate::generators::json_param(u)?,
            (Some(DataType::Bool), false) => json!(u.arbitrary::<bool>()?),
            (Some(DataType::Bytes), false) => {
                json!(String::from_utf8_lossy(&crate::generators::element_bytes(
                    u
                )?))
            }
            (Some(DataType::Fp32 | DataType::Fp64 | DataType::Fp16 | DataType::Bf16), false) => {
                serde_json::Number::from_f64(u.arbitrary::<f32>()? as f64)
                    .map_or(json!(0.5), Value::Number)
            }
            (_, true) => json!(*u.choose(&mutate_edges())?),
            _ => json!(u.int_in_range(-3i64..=300)?),
        });
    }
    // Nest by the shape's first dimension, as clients often send it.
    if let [rows, ..] = shape
        && *rows > 0
        && shape.len() > 1
        && count.is_multiple_of(*rows as usize)
        && u.ratio(1, 2)?
    {
        let per = count / *rows as usize;
        let nested: Vec<Value> = items.chunks(per.max(1)).map(|c| json!(c)).collect();
        return Ok(json!(nested));
    }
    Ok(json!(items))
}

fn mutate_edges() -> [i128; 8] {
    [
        i8::MIN as i128,
        256,
        65536,
        i32::MIN as i128 - 1,
        u32::MAX as i128 + 1,
        i64::MIN as i128,
        u64::MAX as i128,
        -1,
    ]
}
