//! KServe v2 JSON to and from the data plane's types: inference requests and
//! responses (with Triton's binary tensor extension), and Triton's model
//! configuration and statistics. The JSON twin of [`super::wire`].

use super::{InferRequest, InferResponse, ServeError, param};
use bytes::{Bytes, BytesMut};
use conduit_proto::inference as pb;
use conduit_runtime::{Param, ParamValue};
use conduit_types::{DataType, Tensor, clip, element_count};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{Error as _, SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::fmt;
use std::time::{Duration, Instant};

/// The header of Triton's binary tensor extension: how many leading body
/// bytes are JSON (the rest are tensor bytes).
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A body split into its JSON and its binary tensor bytes, by the value of
/// [`HEADER_LENGTH`] (absent: all JSON).
///
/// # Errors
/// [`ServeError::InvalidInput`] when the header is not a number or exceeds
/// the body.
pub fn split_body(body: Bytes, json_len: Option<&str>) -> Result<(Bytes, Bytes), ServeError> {
    let Some(value) = json_len else {
        return Ok((body, Bytes::new()));
    };
    let n: usize = value.trim().parse().map_err(|_| {
        ServeError::InvalidInput(format!(
            "Inference-Header-Content-Length must be a byte count, got `{}`",
            clip(value)
        ))
    })?;
    if n > body.len() {
        return Err(ServeError::InvalidInput(format!(
            "Inference-Header-Content-Length is {n}, but the body has only {} bytes",
            body.len()
        )));
    }
    let binary = body.slice(n..);
    Ok((body.slice(..n), binary))
}

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Vec<OutputJson>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Flat>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Which outputs a client wants as binary data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputModes {
    /// The request's `binary_data_output`: the default for every output.
    all_binary: bool,
    /// Requested outputs and their own `binary_data`, if given.
    requested: Vec<(String, Option<bool>)>,
}

impl OutputModes {
    /// Whether output `name` goes as binary data.
    pub fn binary(&self, name: &str) -> bool {
        self.requested
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, b)| *b)
            .unwrap_or(self.all_binary)
    }
}

/// Decodes a JSON inference request whose binary inputs (those with
/// `parameters.binary_data_size`) lie, in input order, in `binary`. The
/// model, version and arrival time are the caller's to fill in.
///
/// # Errors
/// [`ServeError::InvalidInput`] for malformed JSON (with its line and
/// column), unknown datatypes, data that does not fit its datatype or shape,
/// or binary sizes that do not add up; [`ServeError::Unsupported`] for the
/// shared-memory and classification extensions.
pub fn decode_request(
    json: &[u8],
    binary: Bytes,
) -> Result<(InferRequest, OutputModes), ServeError> {
    let started = Instant::now();
    let bad = ServeError::InvalidInput;
    // Before serde: a body of another JSON type would be reported as the
    // first field's type mismatch ("expected a string").
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        first => {
            let got = match first {
                None => "an empty body".to_string(),
                Some(b'[') => "a JSON array".to_string(),
                Some(b'"') => "a JSON string".to_string(),
                Some(b'-' | b'0'..=b'9') => "a JSON number".to_string(),
                Some(b't' | b'f') => "a JSON boolean".to_string(),
                Some(b'n') => "JSON null".to_string(),
                Some(_) => "something that is not JSON".to_string(),
            };
            return Err(bad(format!(
                "the request body must be a JSON object (an inference request: \
                 {{\"inputs\": [...]}}), got {got}"
            )));
        }
    }
    let req: RequestJson = serde_json::from_slice(json).map_err(|e| {
        bad(format!(
            "malformed inference request JSON: {}",
            clip(&e.to_string())
        ))
    })?;
    let mut offset = 0usize;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let InputJson {
            name,
            shape,
            datatype,
            parameters,
            data,
        } = input;
        let shown = clip(&name);
        let dtype: DataType = datatype.parse().map_err(|_| {
            bad(format!(
                "input `{shown}` has unknown datatype `{}`",
                clip(&datatype)
            ))
        })?;
        super::unsupported_extensions(parameters.keys(), "input", &name)?;
        let size = parameters
            .get("binary_data_size")
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "input `{shown}`: binary_data_size must be a byte count, got {}",
                            clip(&v.to_string())
                        ))
                    })
            })
            .transpose()?;
        let raw = match (size, data) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "input `{shown}` has both `data` and binary_data_size; give one"
                )));
            }
            (Some(n), None) => {
                let left = binary.len() - offset;
                if n > left {
                    return Err(bad(format!(
                        "input `{shown}` declares {n} bytes of binary data, but only {left} \
                         remain after the JSON (is Inference-Header-Content-Length set?)"
                    )));
                }
                let raw = binary.slice(offset..offset + n);
                offset += n;
                raw
            }
            (None, Some(flat)) => {
                let want =
                    element_count(&shape).map_err(|e| bad(format!("input `{shown}`: {e}")))?;
                if flat.len() != want {
                    return Err(bad(format!(
                        "input `{shown}` has {} data elements; its shape {shape:?} needs {want}",
                        flat.len()
                    )));
                }
                flat.into_raw(dtype)
                    .map_err(|m| bad(format!("input `{shown}`: {m}")))?
            }
            (None, None) => {
                return Err(bad(format!(
                    "input `{shown}` has neither `data` nor parameters.binary_data_size"
                )));
            }
        };
        let tensor = super::request_tensor(&name, dtype, shape, raw)?;
        inputs.push((name, tensor));
    }
    if offset != binary.len() {
        return Err(bad(format!(
            "the body has {} bytes of binary data after the JSON that no input claims",
            binary.len() - offset
        )));
    }
    let mut modes = OutputModes::default();
    let mut params: Vec<Param> = Vec::with_capacity(req.parameters.len());
    for (key, value) in req.parameters {
        if key == "binary_data_output" {
            modes.all_binary = value.as_bool().ok_or_else(|| {
                bad(format!(
                    "parameter binary_data_output must be a boolean, got {}",
                    clip(&value.to_string())
                ))
            })?;
            continue;
        }
        let value = param_value(&value).ok_or_else(|| {
            bad(format!(
                "parameter `{}` must be a boolean, number or string, got {}",
                clip(&key),
                clip(&value.to_string())
            ))
        })?;
        params.push(param(key, value));
    }
    params.sort_by(|a, b| a.name.cmp(&b.name));
    let timeout = params.iter().find_map(|p| match (&*p.name, &p.value) {
        // Triton's request `timeout` parameter, in microseconds.
        ("timeout", ParamValue::Int64(us)) if *us > 0 => Some(Duration::from_micros(*us as u64)),
        _ => None,
    });
    let mut outputs = Vec::with_capacity(req.outputs.len());
    for o in req.outputs {
        super::unsupported_extensions(o.parameters.keys(), "output", &o.name)?;
        let binary = match o.parameters.get("binary_data") {
            None => None,
            Some(v) => Some(v.as_bool().ok_or_else(|| {
                bad(format!(
                    "output `{}`: binary_data must be a boolean, got {}",
                    clip(&o.name),
                    clip(&v.to_string())
                ))
            })?),
        };
        outputs.push(o.name.clone());
        modes.requested.push((o.name, binary));
    }
    Ok((
        InferRequest {
            id: req.id,
            inputs,
            params,
            outputs,
            timeout,
            decode: started.elapsed(),
            ..InferRequest::default()
        },
        modes,
    ))
}

/// A JSON parameter value as a WIT one (`None` for null, arrays, objects).
pub fn param_value(v: &Value) -> Option<ParamValue> {
    Some(match v {
        Value::Bool(b) => ParamValue::Bool(*b),
        Value::String(s) => ParamValue::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ParamValue::Int64(i)
            } else if let Some(u) = n.as_u64() {
                ParamValue::Uint64(u)
            } else {
                ParamValue::Double(n.as_f64()?)
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    })
}

/// A JSON number as parsed, before its datatype is known.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::I(v) => v.fmt(f),
            Self::U(v) => v.fmt(f),
            Self::F(v) => write!(f, "{v:?}"),
        }
    }
}

/// The elements of a JSON `data` array, flattened as they are parsed
/// (nested arrays are row-major), stored compactly: no `serde_json::Value`
/// per element. Strings are kept in the `BYTES` raw layout directly.
#[derive(Debug, Default, PartialEq)]
enum Flat {
    #[default]
    Empty,
    Bools(Vec<bool>),
    Ints(Vec<i64>),
    Nums(Vec<Num>),
    Strs {
        raw: BytesMut,
        count: usize,
    },
}

impl Flat {
    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Bools(v) => v.len(),
            Self::Ints(v) => v.len(),
            Self::Nums(v) => v.len(),
            Self::Strs { count, .. } => *count,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "nothing",
            Self::Bools(_) => "booleans",
            Self::Ints(_) | Self::Nums(_) => "numbers",
            Self::Strs { .. } => "strings",
        }
    }

    fn mixed<E: de::Error>(&self, got: &str) -> E {
        E::custom(format_args!("tensor data mixes {} and {got}", self.kind()))
    }

    fn push_bool<E: de::Error>(&mut self, b: bool) -> Result<(), E> {
        match self {
            Self::Empty => *self = Self::Bools(vec![b]),
            Self::Bools(v) => v.push(b),
            other => return Err(other.mixed("booleans")),
        }
        Ok(())
    }

    fn push_num<E: de::Error>(&mut self, n: Num) -> Result<(), E> {
        let as_int = match n {
            Num::I(i) => Some(i),
            Num::U(u) => i64::try_from(u).ok(),
            Num::F(_) => None,
        };
        match (&mut *self, as_int) {
            (Self::Empty, Some(i)) => *self = Self::Ints(vec![i]),
            (Self::Empty, None) => *self = Self::Nums(vec![n]),
            (Self::Ints(v), Some(i)) => v.push(i),
            (Self::Ints(v), None) => {
                let mut nums: Vec<Num> = v.iter().map(|&i| Num::I(i)).collect();
                nums.push(n);
                *self = Self::Nums(nums);
            }
            (Self::Nums(v), _) => v.push(n),
            (other, _) => return Err(other.mixed("numbers")),
        }
        Ok(())
    }

    fn push_str<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        let len = u32::try_from(s.len()).map_err(|_| E::custom("BYTES element over 4 GiB"))?;
        if let Self::Empty = self {
            *self = Self::Strs {
                raw: BytesMut::new(),
                count: 0,
            };
        }
        match self {
            Self::Strs { raw, count } => {
                raw.extend_from_slice(&len.to_le_bytes());
                raw.extend_from_slice(s.as_bytes());
                *count += 1;
                Ok(())
            }
            other => Err(other.mixed("strings")),
        }
    }

    /// The numbers, whatever their JSON form.
    fn numbers(&self) -> Vec<Num> {
        match self {
            Self::Ints(v) => v.iter().map(|&i| Num::I(i)).collect(),
            Self::Nums(v) => v.clone(),
            _ => Vec::new(),
        }
    }

    /// The elements as KServe v2 raw bytes of `dtype`.
    fn into_raw(self, dtype: DataType) -> Result<Bytes, String> {
        use DataType as D;
        match (dtype, self) {
            (_, Self::Empty) => Ok(Bytes::new()),
            (D::Bool, Self::Bools(v)) => {
                Ok(Bytes::from(v.into_iter().map(u8::from).collect::<Vec<_>>()))
            }
            (D::Bytes, Self::Strs { raw, .. }) => Ok(raw.freeze()),
            (D::Fp16 | D::Bf16, _) => Err(format!(
                "{dtype} data cannot be sent as JSON; send it as binary data \
                 (parameters.binary_data_size)"
            )),
            (D::Fp32, f @ (Self::Ints(_) | Self::Nums(_))) => {
                let mut out = Vec::with_capacity(f.len());
                for (k, n) in f.numbers().into_iter().enumerate() {
                    let v = as_f64(n) as f32;
                    if v.is_infinite() {
                        return Err(format!("element {k} ({n}) is out of range for FP32"));
                    }
                    out.push(v);
                }
                Ok(conduit_types::pack(out))
            }
            (D::Fp64, f @ (Self::Ints(_) | Self::Nums(_))) => Ok(conduit_types::pack(
                f.numbers().into_iter().map(as_f64).collect(),
            )),
            (D::Int8, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<i8>(dtype, &f),
            (D::Int16, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<i16>(dtype, &f),
            (D::Int32, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<i32>(dtype, &f),
            (D::Int64, Self::Ints(v)) => Ok(conduit_types::pack(v)),
            (D::Int64, f @ Self::Nums(_)) => integers::<i64>(dtype, &f),
            (D::Uint8, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<u8>(dtype, &f),
            (D::Uint16, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<u16>(dtype, &f),
            (D::Uint32, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<u32>(dtype, &f),
            (D::Uint64, f @ (Self::Ints(_) | Self::Nums(_))) => integers::<u64>(dtype, &f),
            (dtype, f) => Err(format!(
                "{dtype} data must be JSON {}, got {}",
                match dtype {
                    D::Bool => "booleans",
                    D::Bytes => "strings",
                    _ => "numbers",
                },
                f.kind()
            )),
        }
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::I(i) => i as f64,
        Num::U(u) => u as f64,
        Num::F(f) => f,
    }
}

fn integers<T>(dtype: DataType, flat: &Flat) -> Result<Bytes, String>
where
    T: bytemuck::Pod + Send + Sync + TryFrom<i64> + TryFrom<u64>,
{
    let mut out = Vec::with_capacity(flat.len());
    for (k, n) in flat.numbers().into_iter().enumerate() {
        let v = match n {
            Num::I(i) => T::try_from(i).ok(),
            Num::U(u) => T::try_from(u).ok(),
            Num::F(_) => {
                return Err(format!(
                    "element {k} is {n}, but {dtype} data must be integers"
                ));
            }
        };
        out.push(v.ok_or_else(|| format!("element {k} ({n}) is out of range for {dtype}"))?);
    }
    Ok(conduit_types::pack(out))
}

/// Parses a `data` value into a [`Flat`], recursing into nested arrays.
struct Elements<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor data: booleans, numbers or strings, in (nested) arrays")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_bool(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push_num(Num::I(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push_num(Num::U(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push_num(Num::F(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let flat = self.0;
        while seq.next_element_seed(Elements(&mut *flat))?.is_some() {}
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut flat = Flat::Empty;
        Elements(&mut flat).deserialize(d)?;
        Ok(flat)
    }
}

/// An encoded inference response.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The JSON, followed by the binary outputs if any.
    pub body: Bytes,
    /// The length of the JSON when binary outputs follow it (the value of
    /// [`HEADER_LENGTH`]); `None` when the body is all JSON.
    pub json_len: Option<usize>,
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    parameters: StringMap<'a>,
    outputs: Vec<OutputTensor<'a>>,
}

struct StringMap<'a>(&'a [(String, String)]);

impl StringMap<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for StringMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// A tensor's elements as a flat JSON array.
struct Data<'a>(&'a Tensor);

fn f16_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let sign = u32::from(negative) << 31;
    match exp {
        // Zero and subnormals: man * 2^-24.
        0 => {
            let v = man as f32 * f32::from_bits(0x3380_0000);
            if negative { -v } else { v }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        e => f32::from_bits(sign | ((e + 112) << 23) | (man << 13)),
    }
}

fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

fn halves(t: &Tensor) -> Vec<f32> {
    let bits: Vec<u16> = conduit_types::unpack(t.data());
    match t.dtype() {
        DataType::Bf16 => bits.into_iter().map(bf16_to_f32).collect(),
        _ => bits.into_iter().map(f16_to_f32).collect(),
    }
}

/// Whether JSON can carry `t` exactly: no NaN or infinity, and `BYTES`
/// elements that are UTF-8. Other tensors go as binary data.
fn json_safe(t: &Tensor) -> bool {
    match t.dtype() {
        DataType::Fp32 => t.to_f32().is_ok_and(|v| v.iter().all(|x| x.is_finite())),
        DataType::Fp64 => t.to_f64().is_ok_and(|v| v.iter().all(|x| x.is_finite())),
        DataType::Fp16 | DataType::Bf16 => halves(t).iter().all(|x| x.is_finite()),
        DataType::Bytes => t
            .byte_strings()
            .is_ok_and(|v| v.iter().all(|b| std::str::from_utf8(b).is_ok())),
        _ => true,
    }
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let e = S::Error::custom;
        match t.dtype() {
            DataType::Bool => s.collect_seq(t.data().iter().map(|&b| b != 0)),
            DataType::Uint8 => s.collect_seq(t.data().iter()),
            DataType::Uint16 => s.collect_seq(t.to_u16().map_err(e)?),
            DataType::Uint32 => s.collect_seq(t.to_u32().map_err(e)?),
            DataType::Uint64 => s.collect_seq(t.to_u64().map_err(e)?),
            DataType::Int8 => s.collect_seq(t.to_i8().map_err(e)?),
            DataType::Int16 => s.collect_seq(t.to_i16().map_err(e)?),
            DataType::Int32 => s.collect_seq(t.to_i32().map_err(e)?),
            DataType::Int64 => s.collect_seq(t.to_i64().map_err(e)?),
            DataType::Fp16 | DataType::Bf16 => s.collect_seq(halves(t)),
            DataType::Fp32 => s.collect_seq(t.to_f32().map_err(e)?),
            DataType::Fp64 => s.collect_seq(t.to_f64().map_err(e)?),
            DataType::Bytes => {
                let items = t.byte_strings().map_err(e)?;
                let strs = items
                    .into_iter()
                    .map(std::str::from_utf8)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(S::Error::custom)?;
                s.collect_seq(strs)
            }
        }
    }
}

/// Encodes an answer: outputs the client asked for as binary (and any JSON
/// cannot carry exactly) go after the JSON as raw bytes, in output order.
///
/// # Errors
/// [`ServeError::Internal`] when serialization fails.
pub fn encode_response(
    resp: &InferResponse,
    modes: &OutputModes,
    max_bytes: usize,
) -> Result<Encoded, ServeError> {
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut parts = Vec::new();
    for (name, t) in &resp.outputs {
        let binary = modes.binary(name) || !json_safe(t);
        outputs.push(OutputTensor {
            name,
            datatype: t.dtype().as_str(),
            shape: t.shape(),
            parameters: binary.then(|| BinarySize {
                binary_data_size: t.byte_size(),
            }),
            data: (!binary).then_some(Data(t)),
        });
        if binary {
            parts.push(t.data());
        }
    }
    let binary_len: usize = parts.iter().map(|p| p.len()).sum();
    let too_large = |what: &str| {
        ServeError::ResponseTooLarge(format!(
            "the answer of model `{}` {what} over the response limit of {max_bytes} bytes; ask \
             for fewer outputs or rows, or for binary outputs (binary_data)",
            resp.model
        ))
    };
    // JSON text can be several times the tensor bytes: written into a
    // capped buffer, never sized up front from what the tensors claim.
    let mut json = CappedWriter {
        buf: Vec::new(),
        left: max_bytes.saturating_sub(binary_len),
    };
    serde_json::to_writer(
        &mut json,
        &ResponseJson {
            model_name: &resp.model,
            model_version: &resp.version,
            id: &resp.id,
            parameters: StringMap(&resp.params),
            outputs,
        },
    )
    .map_err(|e| {
        if e.is_io() {
            too_large("in JSON is")
        } else {
            ServeError::Internal(format!("encoding the response as JSON: {e}"))
        }
    })?;
    let json = json.buf;
    if parts.is_empty() {
        return Ok(Encoded {
            body: Bytes::from(json),
            json_len: None,
        });
    }
    let json_len = json.len();
    let total = json_len.saturating_add(binary_len);
    if total > max_bytes {
        return Err(too_large("is"));
    }
    let mut body = BytesMut::with_capacity(total);
    body.extend_from_slice(&json);
    for p in parts {
        body.extend_from_slice(p);
    }
    Ok(Encoded {
        body: body.freeze(),
        json_len: Some(json_len),
    })
}

/// A `Vec` that refuses to grow past `left` more bytes.
struct CappedWriter {
    buf: Vec<u8>,
    left: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.left {
            return Err(std::io::Error::other("response limit reached"));
        }
        self.left -= data.len();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The name of a protobuf enum value, or its number when unknown (as the
/// protobuf JSON mapping prints it).
fn enum_name<E: TryFrom<i32>>(v: i32, name: impl Fn(E) -> &'static str) -> Value {
    E::try_from(v).map_or_else(|_| Value::from(v), |e| Value::from(name(e)))
}

fn data_type(v: i32) -> Value {
    enum_name(v, |d: pb::DataType| d.as_str_name())
}

fn reshape(r: &pb::ModelTensorReshape) -> Value {
    json!({ "shape": r.shape })
}

fn queue_policy(p: &pb::ModelQueuePolicy) -> Value {
    json!({
        "timeout_action": enum_name(p.timeout_action, |a: pb::model_queue_policy::TimeoutAction| a.as_str_name()),
        "default_timeout_microseconds": p.default_timeout_microseconds,
        "allow_timeout_override": p.allow_timeout_override,
        "max_queue_size": p.max_queue_size,
    })
}

/// Triton's model configuration as Triton's HTTP endpoint prints it: the
/// protobuf JSON mapping with proto field names, enums by name, every
/// scalar and list printed (defaults too), messages only when set, and
/// 64-bit integers as numbers.
pub fn model_config(c: &pb::ModelConfig) -> Value {
    use pb::model_version_policy::PolicyChoice;
    let mut o = Map::new();
    o.insert("name".into(), c.name.clone().into());
    o.insert("platform".into(), c.platform.clone().into());
    o.insert("backend".into(), c.backend.clone().into());
    o.insert("runtime".into(), c.runtime.clone().into());
    if let Some(p) = c
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref())
    {
        let policy = match p {
            PolicyChoice::Latest(l) => json!({ "latest": { "num_versions": l.num_versions } }),
            PolicyChoice::All(_) => json!({ "all": {} }),
            PolicyChoice::Specific(s) => json!({ "specific": { "versions": s.versions } }),
        };
        o.insert("version_policy".into(), policy);
    }
    o.insert("max_batch_size".into(), c.max_batch_size.into());
    let input = c.input.iter().map(|i| {
        let mut m = json!({
            "name": i.name,
            "data_type": data_type(i.data_type),
            "format": enum_name(i.format, |f: pb::model_input::Format| f.as_str_name()),
            "dims": i.dims,
            "is_shape_tensor": i.is_shape_tensor,
            "allow_ragged_batch": i.allow_ragged_batch,
            "optional": i.optional,
            "is_non_linear_format_io": i.is_non_linear_format_io,
        });
        if let (Some(r), Value::Object(m)) = (&i.reshape, &mut m) {
            m.insert("reshape".into(), reshape(r));
        }
        m
    });
    o.insert("input".into(), input.collect());
    let output = c.output.iter().map(|t| {
        let mut m = json!({
            "name": t.name,
            "data_type": data_type(t.data_type),
            "dims": t.dims,
            "label_filename": t.label_filename,
            "is_shape_tensor": t.is_shape_tensor,
            "is_non_linear_format_io": t.is_non_linear_format_io,
        });
        if let (Some(r), Value::Object(m)) = (&t.reshape, &mut m) {
            m.insert("reshape".into(), reshape(r));
        }
        m
    });
    o.insert("output".into(), output.collect());
    let groups = c.instance_group.iter().map(|g| {
        json!({
            "name": g.name,
            "kind": enum_name(g.kind, |k: pb::model_instance_group::Kind| k.as_str_name()),
            "count": g.count,
            "gpus": g.gpus,
            "profile": g.profile,
            "passive": g.passive,
            "host_policy": g.host_policy,
        })
    });
    o.insert("instance_group".into(), groups.collect());
    o.insert(
        "default_model_filename".into(),
        c.default_model_filename.clone().into(),
    );
    if let Some(pb::model_config::SchedulingChoice::DynamicBatching(b)) = &c.scheduling_choice {
        let mut m = Map::new();
        m.insert(
            "preferred_batch_size".into(),
            b.preferred_batch_size.clone().into(),
        );
        m.insert(
            "max_queue_delay_microseconds".into(),
            b.max_queue_delay_microseconds.into(),
        );
        m.insert("preserve_ordering".into(), b.preserve_ordering.into());
        m.insert("priority_levels".into(), b.priority_levels.into());
        m.insert(
            "default_priority_level".into(),
            b.default_priority_level.into(),
        );
        if let Some(p) = &b.default_queue_policy {
            m.insert("default_queue_policy".into(), queue_policy(p));
        }
        let priorities: Map<String, Value> = b
            .priority_queue_policy
            .iter()
            .map(|(k, p)| (k.to_string(), queue_policy(p)))
            .collect();
        m.insert("priority_queue_policy".into(), priorities.into());
        o.insert("dynamic_batching".into(), m.into());
    }
    let parameters: Map<String, Value> = c
        .parameters
        .iter()
        .map(|(k, p)| (k.clone(), json!({ "string_value": p.string_value })))
        .collect();
    o.insert("parameters".into(), parameters.into());
    if let Some(t) = &c.model_transaction_policy {
        o.insert(
            "model_transaction_policy".into(),
            json!({ "decoupled": t.decoupled }),
        );
    }
    if let Some(r) = &c.response_cache {
        o.insert("response_cache".into(), json!({ "enable": r.enable }));
    }
    Value::Object(o)
}

fn duration(d: Option<&pb::StatisticDuration>) -> Value {
    let d = d.copied().unwrap_or_default();
    json!({ "count": d.count, "ns": d.ns })
}

/// Triton's `{"model_stats": [...]}` for the statistics extension.
pub fn statistics(stats: &[pb::ModelStatistics]) -> Value {
    let model = |s: &pb::ModelStatistics| {
        let i = s.inference_stats.unwrap_or_default();
        json!({
            "name": s.name,
            "version": s.version,
            "last_inference": s.last_inference,
            "inference_count": s.inference_count,
            "execution_count": s.execution_count,
            "inference_stats": {
                "success": duration(i.success.as_ref()),
                "fail": duration(i.fail.as_ref()),
                "queue": duration(i.queue.as_ref()),
                "compute_input": duration(i.compute_input.as_ref()),
                "compute_infer": duration(i.compute_infer.as_ref()),
                "compute_output": duration(i.compute_output.as_ref()),
                "cache_hit": duration(i.cache_hit.as_ref()),
                "cache_miss": duration(i.cache_miss.as_ref()),
            },
            "batch_stats": s.batch_stats.iter().map(|b| json!({
                "batch_size": b.batch_size,
                "compute_input": duration(b.compute_input.as_ref()),
                "compute_infer": duration(b.compute_infer.as_ref()),
                "compute_output": duration(b.compute_output.as_ref()),
            })).collect::<Vec<_>>(),
            "memory_usage": s.memory_usage.iter().map(|m| json!({
                "type": m.r#type,
                "id": m.id,
                "byte_size": m.byte_size,
            })).collect::<Vec<_>>(),
            "response_stats": s.response_stats.iter().map(|(k, r)| (k.clone(), json!({
                "compute_infer": duration(r.compute_infer.as_ref()),
                "compute_output": duration(r.compute_output.as_ref()),
                "success": duration(r.success.as_ref()),
                "fail": duration(r.fail.as_ref()),
                "empty_response": duration(r.empty_response.as_ref()),
                "cancel": duration(r.cancel.as_ref()),
            }))).collect::<Map<_, _>>(),
        })
    };
    json!({ "model_stats": stats.iter().map(model).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Result<(InferRequest, OutputModes), ServeError> {
        decode_request(body.as_bytes(), Bytes::new())
    }

    fn one_input(datatype: &str, shape: &str, data: &str) -> Result<Tensor, ServeError> {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":{shape},"data":{data}}}]}}"#
        );
        decode(&body).map(|(r, _)| r.inputs[0].1.clone())
    }

    fn message(r: Result<impl fmt::Debug, ServeError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn json_data_becomes_every_datatype() {
        let t = one_input("BOOL", "[3]", "[true,false,true]").unwrap();
        assert_eq!(&t.data()[..], &[1, 0, 1]);
        let t = one_input("UINT8", "[2]", "[0,255]").unwrap();
        assert_eq!(t.to_u8().unwrap(), [0, 255]);
        let t = one_input("UINT16", "[2]", "[1,65535]").unwrap();
        assert_eq!(t.to_u16().unwrap(), [1, 65535]);
        let t = one_input("UINT32", "[1]", "[4294967295]").unwrap();
        assert_eq!(t.to_u32().unwrap(), [u32::MAX]);
        let t = one_input("UINT64", "[2]", "[18446744073709551615, 1]").unwrap();
        assert_eq!(t.to_u64().unwrap(), [u64::MAX, 1]);
        let t = one_input("INT8", "[2]", "[-128,127]").unwrap();
        assert_eq!(t.to_i8().unwrap(), [-128, 127]);
        let t = one_input("INT16", "[2]", "[-32768,32767]").unwrap();
        assert_eq!(t.to_i16().unwrap(), [-32768, 32767]);
        let t = one_input("INT32", "[2]", "[-5,7]").unwrap();
        assert_eq!(t.to_i32().unwrap(), [-5, 7]);
        let t = one_input("INT64", "[2]", "[-9223372036854775808,9223372036854775807]").unwrap();
        assert_eq!(t.to_i64().unwrap(), [i64::MIN, i64::MAX]);
        let t = one_input("FP32", "[3]", "[1.5,-2,0.1]").unwrap();
        assert_eq!(t.to_f32().unwrap(), [1.5, -2.0, 0.1]);
        let t = one_input("FP64", "[2]", "[1e300,3]").unwrap();
        assert_eq!(t.to_f64().unwrap(), [1e300, 3.0]);
        let t = one_input("BYTES", "[2]", r#"["héllo",""]"#).unwrap();
        assert_eq!(t.byte_strings().unwrap(), [&b"h\xc3\xa9llo"[..], b""]);
        // Raw layout: 4-byte little-endian length, then the bytes.
        assert_eq!(&t.data()[..4], &6u32.to_le_bytes());
        // Lower-case datatypes are accepted, as by the gRPC front end.
        assert_eq!(
            one_input("fp32", "[1]", "[2]").unwrap().dtype(),
            DataType::Fp32
        );
    }

    #[test]
    fn nested_and_empty_data_flatten_row_major() {
        let t = one_input("INT32", "[2,3]", "[[1,2,3],[4,5,6]]").unwrap();
        assert_eq!(t.to_i32().unwrap(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(t.shape(), &[2, 3]);
        let t = one_input("FP32", "[2,1,2]", "[[[1],[2.5]],[[3,4]]]").unwrap();
        assert_eq!(t.to_f32().unwrap(), [1.0, 2.5, 3.0, 4.0]);
        let t = one_input("BYTES", "[1,2]", r#"[["a","bc"]]"#).unwrap();
        assert_eq!(t.byte_strings().unwrap(), [&b"a"[..], b"bc"]);
        let t = one_input("FP16", "[0,4]", "[]").unwrap();
        assert_eq!(t.byte_size(), 0);
        // A bare scalar is one element.
        let t = one_input("INT64", "[]", "7").unwrap();
        assert_eq!(t.to_i64().unwrap(), [7]);
    }

    #[test]
    fn json_data_that_does_not_fit_is_refused() {
        let m = message(one_input("UINT8", "[1]", "[256]"));
        assert!(
            m.contains("element 0 (256) is out of range for UINT8"),
            "{m}"
        );
        let m = message(one_input("INT8", "[1]", "[-129]"));
        assert!(m.contains("out of range for INT8"), "{m}");
        let m = message(one_input("UINT32", "[2]", "[1,-1]"));
        assert!(m.contains("element 1 (-1)"), "{m}");
        let m = message(one_input("INT64", "[2]", "[1,2.5]"));
        assert!(
            m.contains("element 1 is 2.5, but INT64 data must be integers"),
            "{m}"
        );
        let m = message(one_input("FP32", "[2]", "[1,1e39]"));
        assert!(
            m.contains("element 1 (1e39) is out of range for FP32"),
            "{m}"
        );
        let m = message(one_input("INT64", "[1]", "[18446744073709551615]"));
        assert!(m.contains("out of range for INT64"), "{m}");
        let m = message(one_input("FP16", "[1]", "[1.0]"));
        assert!(m.contains("FP16 data cannot be sent as JSON"), "{m}");
        let m = message(one_input("BF16", "[1]", "[1.0]"));
        assert!(m.contains("binary_data_size"), "{m}");
        let m = message(one_input("BOOL", "[1]", "[1]"));
        assert!(
            m.contains("BOOL data must be JSON booleans, got numbers"),
            "{m}"
        );
        let m = message(one_input("BYTES", "[1]", "[1]"));
        assert!(m.contains("BYTES data must be JSON strings"), "{m}");
        let m = message(one_input("FP32", "[1]", r#"["1"]"#));
        assert!(
            m.contains("FP32 data must be JSON numbers, got strings"),
            "{m}"
        );
        let m = message(one_input("FP32", "[2]", "[1,true]"));
        assert!(m.contains("mixes numbers and booleans"), "{m}");
        let m = message(one_input("FP32", "[2]", "[1,null]"));
        assert!(m.contains("invalid type: null"), "{m}");
        let m = message(one_input("FP32", "[2,2]", "[1,2,3]"));
        assert!(
            m.contains("has 3 data elements; its shape [2, 2] needs 4"),
            "{m}"
        );
        let m = message(one_input("FP32", "[-1]", "[1]"));
        assert!(m.contains("negative dimension"), "{m}");
        let m = message(one_input("FLOAT", "[1]", "[1]"));
        assert!(m.contains("unknown datatype `FLOAT`"), "{m}");
        let m = message(decode(
            r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]}"#,
        ));
        assert!(
            m.contains("neither `data` nor parameters.binary_data_size"),
            "{m}"
        );
    }

    #[test]
    fn malformed_json_says_where() {
        let m = message(decode("{\"inputs\": [\n  {\"name\": }]}"));
        assert!(m.contains("malformed inference request JSON"), "{m}");
        assert!(m.contains("line 2 column"), "{m}");
        let m = message(decode(""));
        assert!(m.contains("must be a JSON object"), "{m}");
        assert!(m.contains("got an empty body"), "{m}");
        // Another JSON type names what was expected, not a field's type.
        for (body, got) in [("[1,2,3]", "a JSON array"), (" 7", "a JSON number")] {
            let m = message(decode(body));
            assert!(
                m.contains("must be a JSON object") && m.contains(got),
                "{m}"
            );
        }
        let m = message(decode(r#"{"outputs":[]}"#));
        assert!(m.contains("missing field `inputs`"), "{m}");
        // Deep nesting is refused by the parser, not by the stack.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let m = message(one_input("FP32", "[1]", &deep));
        assert!(m.contains("recursion limit exceeded"), "{m}");
    }

    #[test]
    fn binary_body_splits_at_the_header_length() {
        let body = Bytes::from_static(b"{\"a\":1}\x01\x02");
        let (json, binary) = split_body(body.clone(), Some("7")).unwrap();
        assert_eq!((&json[..], &binary[..]), (&b"{\"a\":1}"[..], &[1u8, 2][..]));
        let (json, binary) = split_body(body.clone(), None).unwrap();
        assert_eq!((json.len(), binary.len()), (9, 0));
        let (json, binary) = split_body(body.clone(), Some("9")).unwrap();
        assert_eq!((json.len(), binary.len()), (9, 0));
        let m = message(split_body(body.clone(), Some("10")));
        assert!(m.contains("is 10, but the body has only 9 bytes"), "{m}");
        let m = message(split_body(body, Some("-1")));
        assert!(m.contains("must be a byte count, got `-1`"), "{m}");
    }

    #[test]
    fn binary_inputs_are_taken_in_order() {
        let json = r#"{"id":"r1","inputs":[
            {"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},
            {"name":"b","datatype":"INT32","shape":[1],"data":[9]},
            {"name":"c","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":11}},
            {"name":"d","datatype":"FP16","shape":[1],"parameters":{"binary_data_size":2}}
        ]}"#;
        let mut binary = Vec::new();
        binary.extend_from_slice(&1.5f32.to_le_bytes());
        binary.extend_from_slice(&(-2f32).to_le_bytes());
        binary.extend_from_slice(&[3, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 0]);
        binary.extend_from_slice(&0x3c00u16.to_le_bytes());
        let (r, _) = decode_request(json.as_bytes(), Bytes::from(binary.clone())).unwrap();
        assert_eq!(r.id, "r1");
        let names: Vec<_> = r.inputs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(r.inputs[0].1.to_f32().unwrap(), [1.5, -2.0]);
        assert_eq!(r.inputs[1].1.to_i32().unwrap(), [9]);
        assert_eq!(r.inputs[2].1.byte_strings().unwrap(), [&b"abc"[..], b""]);
        assert_eq!(&r.inputs[3].1.data()[..], &[0x00, 0x3c]);

        let m = message(decode_request(
            json.as_bytes(),
            Bytes::from(binary[..20].to_vec()),
        ));
        assert!(
            m.contains("input `d` declares 2 bytes of binary data, but only 1 remain"),
            "{m}"
        );
        let mut longer = binary.clone();
        longer.push(0);
        let m = message(decode_request(json.as_bytes(), Bytes::from(longer)));
        assert!(
            m.contains("1 bytes of binary data after the JSON that no input claims"),
            "{m}"
        );
        let m = message(decode_request(json.as_bytes(), Bytes::new()));
        assert!(m.contains("Inference-Header-Content-Length"), "{m}");
        // The sizes must also fit the shapes.
        let bad = r#"{"inputs":[{"name":"a","datatype":"FP32","shape":[3],"parameters":{"binary_data_size":8}}]}"#;
        let m = message(decode_request(bad.as_bytes(), Bytes::from(vec![0u8; 8])));
        assert!(
            m.contains("input `a`: FP32 tensor of shape [3] needs 12 bytes, got 8"),
            "{m}"
        );
        let bad = r#"{"inputs":[{"name":"a","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":3}}]}"#;
        let m = message(decode_request(bad.as_bytes(), Bytes::from(vec![9u8; 3])));
        assert!(m.contains("truncated length"), "{m}");
        let bad = r#"{"inputs":[{"name":"a","datatype":"INT8","shape":[1],"data":[1],"parameters":{"binary_data_size":1}}]}"#;
        let m = message(decode_request(bad.as_bytes(), Bytes::from(vec![1u8])));
        assert!(m.contains("both `data` and binary_data_size"), "{m}");
        let bad = r#"{"inputs":[{"name":"a","datatype":"INT8","shape":[1],"parameters":{"binary_data_size":-1}}]}"#;
        let m = message(decode_request(bad.as_bytes(), Bytes::new()));
        assert!(
            m.contains("binary_data_size must be a byte count, got -1"),
            "{m}"
        );
    }

    #[test]
    fn parameters_outputs_and_timeout() {
        let (r, modes) = decode(
            r#"{"inputs":[],"parameters":{"z":"s","binary_data_output":true,"timeout":1500,
                "flag":false,"big":18446744073709551615,"ratio":0.5,"neg":-3},
                "outputs":[{"name":"p"},{"name":"q","parameters":{"binary_data":false}}]}"#,
        )
        .unwrap();
        let params: Vec<_> = r
            .params
            .iter()
            .map(|p| format!("{}={:?}", p.name, p.value))
            .collect();
        assert_eq!(
            params,
            [
                format!("big={:?}", ParamValue::Uint64(u64::MAX)),
                format!("flag={:?}", ParamValue::Bool(false)),
                format!("neg={:?}", ParamValue::Int64(-3)),
                format!("ratio={:?}", ParamValue::Double(0.5)),
                format!("timeout={:?}", ParamValue::Int64(1500)),
                format!("z={:?}", ParamValue::String("s".into())),
            ]
        );
        assert_eq!(r.timeout, Some(Duration::from_micros(1500)));
        assert_eq!(r.outputs, ["p", "q"]);
        assert!(modes.binary("p"));
        assert!(!modes.binary("q"));
        assert!(modes.binary("unlisted"));

        let (r, modes) =
            decode(r#"{"inputs":[],"outputs":[{"name":"p","parameters":{"binary_data":true}}]}"#)
                .unwrap();
        assert_eq!((r.timeout, r.id.as_str()), (None, ""));
        assert!(modes.binary("p") && !modes.binary("other"));

        let m = message(decode(r#"{"inputs":[],"parameters":{"k":[1]}}"#));
        assert!(
            m.contains("parameter `k` must be a boolean, number or string"),
            "{m}"
        );
        let m = message(decode(
            r#"{"inputs":[],"parameters":{"binary_data_output":1}}"#,
        ));
        assert!(m.contains("binary_data_output must be a boolean"), "{m}");
        let e =
            decode(r#"{"inputs":[],"outputs":[{"name":"p","parameters":{"classification":2}}]}"#)
                .unwrap_err();
        assert!(matches!(e, ServeError::Unsupported(_)), "{e}");
        let e = decode(
            r#"{"inputs":[{"name":"a","datatype":"INT8","shape":[1],"parameters":{"shared_memory_region":"r"}}]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ServeError::Unsupported(_)), "{e}");
    }

    fn response(outputs: Vec<(&str, Tensor)>) -> InferResponse {
        InferResponse {
            model: "m".into(),
            version: "1.0.0".into(),
            id: "r1".into(),
            outputs: outputs
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
            params: vec![("conduit.digest".into(), "blake3:00".into())],
            compute: Duration::ZERO,
            guard: None,
        }
    }

    fn parse(e: &Encoded) -> (Value, &[u8]) {
        let n = e.json_len.unwrap_or(e.body.len());
        (serde_json::from_slice(&e.body[..n]).unwrap(), &e.body[n..])
    }

    #[test]
    fn json_responses_carry_flat_data() {
        let outputs = vec![
            (
                "b",
                Tensor::new(DataType::Bool, vec![2], Bytes::from_static(&[1, 0])).unwrap(),
            ),
            ("u8", Tensor::from_u8(vec![2], &[0, 255]).unwrap()),
            ("u16", Tensor::from_u16(vec![1], &[65535]).unwrap()),
            ("u32", Tensor::from_u32(vec![1], &[7]).unwrap()),
            ("u64", Tensor::from_u64(vec![1], &[u64::MAX]).unwrap()),
            ("i8", Tensor::from_i8(vec![1], &[-1]).unwrap()),
            ("i16", Tensor::from_i16(vec![1], &[-300]).unwrap()),
            ("i32", Tensor::from_i32(vec![2, 2], &[1, 2, 3, 4]).unwrap()),
            ("i64", Tensor::from_i64(vec![1], &[i64::MIN]).unwrap()),
            ("f32", Tensor::from_f32(vec![2], &[0.1, -1.5]).unwrap()),
            ("f64", Tensor::from_f64(vec![1], &[0.1]).unwrap()),
            (
                "f16",
                Tensor::new(
                    DataType::Fp16,
                    vec![4],
                    conduit_types::pack(vec![0x3c00u16, 0xc000, 0x0001, 0x7bff]),
                )
                .unwrap(),
            ),
            (
                "bf16",
                Tensor::new(
                    DataType::Bf16,
                    vec![1],
                    conduit_types::pack(vec![0x3fc0u16]),
                )
                .unwrap(),
            ),
            (
                "s",
                Tensor::from_byte_strings(vec![2], ["héllo", ""]).unwrap(),
            ),
        ];
        let e = encode_response(&response(outputs), &OutputModes::default(), usize::MAX).unwrap();
        assert_eq!(e.json_len, None);
        let (v, rest) = parse(&e);
        assert!(rest.is_empty());
        assert_eq!(v["model_name"], "m");
        assert_eq!(v["model_version"], "1.0.0");
        assert_eq!(v["id"], "r1");
        assert_eq!(v["parameters"], json!({"conduit.digest": "blake3:00"}));
        let data: Vec<(String, Value)> = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["name"].as_str().unwrap().to_string(), o["data"].clone()))
            .collect();
        let expected = [
            ("b", json!([true, false])),
            ("u8", json!([0, 255])),
            ("u16", json!([65535])),
            ("u32", json!([7])),
            ("u64", json!([u64::MAX])),
            ("i8", json!([-1])),
            ("i16", json!([-300])),
            ("i32", json!([1, 2, 3, 4])),
            ("i64", json!([i64::MIN])),
            ("f32", json!([0.1, -1.5])),
            ("f64", json!([0.1])),
            ("f16", json!([1.0, -2.0, 5.960_464_5e-8, 65504.0])),
            ("bf16", json!([1.5])),
            ("s", json!(["héllo", ""])),
        ];
        for ((name, got), (want_name, want)) in data.iter().zip(expected) {
            assert_eq!((name.as_str(), got), (want_name, &want));
        }
        assert_eq!(v["outputs"][7]["shape"], json!([2, 2]));
        assert_eq!(v["outputs"][7]["datatype"], "INT32");
        assert!(v["outputs"][7].get("parameters").is_none());
        // FP32 prints as the shortest f32, not as its f64 widening.
        let text = std::str::from_utf8(&e.body).unwrap();
        assert!(text.contains("[0.1,-1.5]"), "{text}");
    }

    #[test]
    fn binary_outputs_follow_the_json_in_order() {
        let a = Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap();
        let b = Tensor::from_i64(vec![1], &[5]).unwrap();
        let c = Tensor::from_byte_strings(vec![1], ["xy"]).unwrap();
        let (_, modes) = decode(
            r#"{"inputs":[],"outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"},
                {"name":"c","parameters":{"binary_data":true}}]}"#,
        )
        .unwrap();
        let resp = response(vec![("a", a.clone()), ("b", b), ("c", c.clone())]);
        let e = encode_response(&resp, &modes, usize::MAX).unwrap();
        let (v, rest) = parse(&e);
        assert!(e.json_len.is_some());
        assert_eq!(
            v["outputs"][0]["parameters"],
            json!({"binary_data_size": 8})
        );
        assert!(v["outputs"][0].get("data").is_none());
        assert_eq!(v["outputs"][1]["data"], json!([5]));
        assert_eq!(
            v["outputs"][2]["parameters"],
            json!({"binary_data_size": 6})
        );
        assert_eq!(rest, [&a.data()[..], &c.data()[..]].concat());
    }

    #[test]
    fn outputs_json_cannot_carry_go_binary() {
        let nan = Tensor::from_f32(vec![2], &[1.0, f32::NAN]).unwrap();
        let inf16 = Tensor::new(
            DataType::Fp16,
            vec![1],
            conduit_types::pack(vec![0x7c00u16]),
        )
        .unwrap();
        let raw = Tensor::from_byte_strings(vec![1], [[0xffu8, 0xfe]]).unwrap();
        let ok = Tensor::from_f64(vec![1], &[2.0]).unwrap();
        let resp = response(vec![
            ("nan", nan.clone()),
            ("inf16", inf16.clone()),
            ("raw", raw.clone()),
            ("ok", ok),
        ]);
        let e = encode_response(&resp, &OutputModes::default(), usize::MAX).unwrap();
        let (v, rest) = parse(&e);
        for i in 0..3 {
            assert!(
                v["outputs"][i]["parameters"]["binary_data_size"].is_u64(),
                "{v}"
            );
        }
        assert_eq!(v["outputs"][3]["data"], json!([2.0]));
        assert_eq!(
            rest,
            [&nan.data()[..], &inf16.data()[..], &raw.data()[..]].concat()
        );
    }

    #[test]
    fn json_round_trips_through_decode() {
        let tensors = [
            Tensor::from_u64(vec![2], &[0, u64::MAX]).unwrap(),
            Tensor::from_i16(vec![3], &[i16::MIN, 0, i16::MAX]).unwrap(),
            Tensor::from_f32(vec![2], &[f32::MAX, f32::MIN_POSITIVE]).unwrap(),
            Tensor::from_f64(vec![1], &[std::f64::consts::PI]).unwrap(),
            Tensor::from_byte_strings(vec![2], ["a\"b\\c", "\u{1f600}"]).unwrap(),
            Tensor::new(DataType::Bool, vec![1], Bytes::from_static(&[1])).unwrap(),
        ];
        for t in tensors {
            let e = encode_response(
                &response(vec![("x", t.clone())]),
                &OutputModes::default(),
                usize::MAX,
            )
            .unwrap();
            let (v, _) = parse(&e);
            let out = &v["outputs"][0];
            let back = one_input(
                out["datatype"].as_str().unwrap(),
                &out["shape"].to_string(),
                &out["data"].to_string(),
            )
            .unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn half_floats_widen_exactly() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!(f16_to_f32(0x8000).is_sign_negative());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0400), 6.103_515_6e-5); // smallest normal
        assert_eq!(f16_to_f32(0x83ff), -6.097_555e-5); // largest subnormal
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    fn manifest(kind: conduit_registry::Kind) -> conduit_registry::Manifest {
        let spec = |name: &str, datatype: &str, shape: Vec<i64>| conduit_registry::TensorSpec {
            name: name.into(),
            datatype: datatype.into(),
            shape,
        };
        conduit_registry::Manifest {
            tenant: "t".into(),
            name: "resnet".into(),
            version: "1.2.0".into(),
            kind,
            digest: conduit_types::Digest::of(b"model"),
            size: 5,
            signature: conduit_registry::Signature {
                inputs: vec![spec("x", "FP32", vec![-1, 3, 224, 224])],
                outputs: vec![spec("y", "BYTES", vec![-1, 1000])],
            },
            executor: Default::default(),
            world: String::new(),
            references: Vec::new(),
            created_at: String::new(),
            created_by: String::new(),
            tags: Vec::new(),
        }
    }

    #[test]
    fn config_json_has_tritons_shape() {
        let m = manifest(conduit_registry::Kind::Model);
        let v = model_config(&super::super::wire::model_config(&m, 8, 250));
        assert_eq!(v["name"], "resnet");
        assert_eq!(v["platform"], "onnxruntime_onnx");
        assert_eq!(v["backend"], "onnxruntime");
        assert_eq!(v["max_batch_size"], 8);
        assert_eq!(
            v["input"],
            json!([{
                "name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [3, 224, 224],
                "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false,
                "is_non_linear_format_io": false,
            }])
        );
        assert_eq!(v["output"][0]["data_type"], "TYPE_STRING");
        assert_eq!(v["output"][0]["dims"], json!([1000]));
        assert_eq!(v["output"][0]["label_filename"], "");
        assert_eq!(v["dynamic_batching"]["max_queue_delay_microseconds"], 250);
        assert_eq!(v["dynamic_batching"]["preferred_batch_size"], json!([]));
        assert_eq!(
            v["parameters"]["conduit.version"],
            json!({"string_value": "1.2.0"})
        );
        assert_eq!(
            v["parameters"]["conduit.digest"]["string_value"],
            m.digest.to_string()
        );
        assert_eq!(v["instance_group"], json!([]));
        assert!(v.get("version_policy").is_none() && v.get("response_cache").is_none());

        let v = model_config(&super::super::wire::model_config(
            &manifest(conduit_registry::Kind::Pipeline),
            0,
            0,
        ));
        assert_eq!(v["max_batch_size"], 0);
        assert_eq!(v["input"][0]["dims"], json!([-1, 3, 224, 224]));
        assert!(v.get("dynamic_batching").is_none());

        let full = pb::ModelConfig {
            version_policy: Some(pb::ModelVersionPolicy {
                policy_choice: Some(pb::model_version_policy::PolicyChoice::Latest(
                    pb::model_version_policy::Latest { num_versions: 2 },
                )),
            }),
            instance_group: vec![pb::ModelInstanceGroup {
                kind: pb::model_instance_group::Kind::Gpu as i32,
                count: 1,
                gpus: vec![0],
                ..Default::default()
            }],
            input: vec![pb::ModelInput {
                data_type: 99,
                reshape: Some(pb::ModelTensorReshape { shape: vec![1] }),
                ..Default::default()
            }],
            response_cache: Some(pb::ModelResponseCache { enable: true }),
            ..Default::default()
        };
        let v = model_config(&full);
        assert_eq!(v["version_policy"], json!({"latest": {"num_versions": 2}}));
        assert_eq!(v["instance_group"][0]["kind"], "KIND_GPU");
        assert_eq!(v["instance_group"][0]["gpus"], json!([0]));
        assert_eq!(v["input"][0]["data_type"], 99);
        assert_eq!(v["input"][0]["reshape"], json!({"shape": [1]}));
        assert_eq!(v["response_cache"], json!({"enable": true}));
    }

    #[test]
    fn statistics_json_has_tritons_shape() {
        let key = super::super::ModelKey {
            tenant: "t".into(),
            model: "m".into(),
            version: "1.0.0".into(),
        };
        let counters = super::super::ModelCounters {
            success: 3,
            success_ns: 300,
            inference_count: 5,
            exec_count: 2,
            ..Default::default()
        };
        let v = statistics(&[super::super::wire::statistics(&key, &counters)]);
        let s = &v["model_stats"][0];
        assert_eq!(s["name"], "m");
        assert_eq!(s["version"], "1.0.0");
        assert_eq!(s["inference_count"], 5);
        assert_eq!(s["execution_count"], 2);
        assert_eq!(
            s["inference_stats"]["success"],
            json!({"count": 3, "ns": 300})
        );
        for k in [
            "fail",
            "queue",
            "compute_input",
            "compute_infer",
            "compute_output",
            "cache_hit",
            "cache_miss",
        ] {
            assert!(s["inference_stats"][k]["count"].is_u64(), "{k}: {s}");
            assert!(s["inference_stats"][k]["ns"].is_u64(), "{k}: {s}");
        }
        assert_eq!(s["batch_stats"], json!([]));
        assert_eq!(statistics(&[]), json!({"model_stats": []}));
    }
}
