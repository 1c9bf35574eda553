//! KServe v2 gRPC inference requests: protobuf bytes through
//! `ModelInferRequest::decode` and `conduit_runner::wire::decode_request`
//! (with `contents_to_raw` and `param_from_proto` on their own too).
//!
//! Input format: an encoded `inference.ModelInferRequest`.
//!
//! Checks: no panic; a message re-encodes to one that decodes equal; a
//! refused request is `InvalidInput` / `Unsupported` with a bounded status
//! message; a decoded request keeps its model, version, id, inputs in order
//! and sorted parameters; it re-encodes (raw contents, and typed contents
//! where a field carries the datatype) and decodes to the same request.

use crate::check;
use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use conduit_proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest,
    infer_parameter::ParameterChoice,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
};
use conduit_runner::InferRequest;
use conduit_runner::wire::{contents_to_raw, decode_request, param_from_proto};
use conduit_runtime::ParamValue;
use conduit_types::{DataType, Tensor};
use prost::Message;
use std::collections::HashMap;

/// Tokens for mutations: field tags and datatype names.
pub const DICTIONARY: &[&[u8]] = &[
    b"BYTES",
    b"FP32",
    b"FP16",
    b"INT64",
    b"BOOL",
    b"UINT8",
    b"timeout",
    b"shared_memory_region",
    b"classification",
    b"binary_data",
    b"\x0a\x00",
    b"\x12\x00",
    b"\x1a\x00",
    b"\x22\x00",
    b"\x2a\x00",
    b"\x32\x00",
    b"\x3a\x00",
    b"\xff\xff\xff\xff\x0f",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
];

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(msg) = ModelInferRequest::decode(data) else {
        // prost's typed `DecodeError`; tonic answers it before the service.
        return;
    };
    let again = ModelInferRequest::decode(&*msg.encode_to_vec())
        .expect("a decoded message re-encodes to one that decodes");
    assert_eq!(
        float_bits(again),
        float_bits(msg.clone()),
        "a message changes through encode and decode"
    );
    run_request(msg);
}

/// `msg` with its float contents as bit patterns (NaN equals itself).
fn float_bits(mut msg: ModelInferRequest) -> (ModelInferRequest, Vec<Vec<u64>>) {
    let mut bits = Vec::new();
    for input in &mut msg.inputs {
        if let Some(c) = &mut input.contents {
            let f32s = std::mem::take(&mut c.fp32_contents);
            let f64s = std::mem::take(&mut c.fp64_contents);
            bits.push(f32s.iter().map(|f| u64::from(f.to_bits())).collect());
            bits.push(f64s.iter().map(|f| f.to_bits()).collect());
        }
    }
    let maps = std::iter::once(&mut msg.parameters)
        .chain(msg.inputs.iter_mut().map(|i| &mut i.parameters))
        .chain(msg.outputs.iter_mut().map(|o| &mut o.parameters));
    for p in maps.flat_map(|m| m.values_mut()) {
        if let Some(ParameterChoice::DoubleParam(d)) = p.parameter_choice {
            p.parameter_choice = Some(ParameterChoice::Uint64Param(d.to_bits()));
        }
    }
    (msg, bits)
}

/// Runs one decoded request through the runner's decoder.
pub fn run_request(msg: ModelInferRequest) {
    for input in &msg.inputs {
        if let (Ok(dtype), Some(c)) = (input.datatype.parse::<DataType>(), &input.contents)
            && let Ok(raw) = contents_to_raw(dtype, c)
            && let Some(size) = dtype.element_size()
        {
            assert_eq!(
                raw.len(),
                typed_count(dtype, c) * size,
                "typed {dtype} contents of {} elements gave {} bytes",
                typed_count(dtype, c),
                raw.len()
            );
        }
    }
    for (k, v) in &msg.parameters {
        let p = param_from_proto(k, v);
        assert_eq!(p.is_some(), v.parameter_choice.is_some());
        if let Some(p) = p {
            assert_eq!(&p.name, k);
        }
    }
    let req = match decode_request(msg.clone()) {
        Ok(r) => r,
        Err(e) => return check::serve_error("wire::decode_request", e),
    };
    assert_eq!(req.model, msg.model_name);
    assert_eq!(req.version, msg.model_version);
    assert_eq!(req.id, msg.id);
    assert_eq!(req.inputs.len(), msg.inputs.len());
    for ((name, t), input) in req.inputs.iter().zip(&msg.inputs) {
        assert_eq!(name, &input.name);
        assert_eq!(t.shape(), &input.shape[..]);
        assert_eq!(
            Ok(t.dtype()),
            input.datatype.parse::<DataType>().map_err(|_| ())
        );
    }
    let names: Vec<&String> = msg.outputs.iter().map(|o| &o.name).collect();
    assert_eq!(req.outputs.iter().collect::<Vec<_>>(), names);
    assert!(req.params.windows(2).all(|w| w[0].name <= w[1].name));
    for typed in [false, true] {
        let Some(encoded) = encode_request(&req, typed) else {
            continue;
        };
        let again = decode_request(encoded).unwrap_or_else(|e| {
            panic!("a decoded request, encoded again (typed contents: {typed}), is refused: {e}")
        });
        assert_same(&req, &again, typed);
    }
}

/// Elements in the typed field that carries `dtype`.
fn typed_count(dtype: DataType, c: &InferTensorContents) -> usize {
    use DataType as D;
    match dtype {
        D::Bool => c.bool_contents.len(),
        D::Int8 | D::Int16 | D::Int32 => c.int_contents.len(),
        D::Int64 => c.int64_contents.len(),
        D::Uint8 | D::Uint16 | D::Uint32 => c.uint_contents.len(),
        D::Uint64 => c.uint64_contents.len(),
        D::Fp32 => c.fp32_contents.len(),
        D::Fp64 => c.fp64_contents.len(),
        D::Bytes => c.bytes_contents.len(),
        D::Fp16 | D::Bf16 => 0,
    }
}

/// The request as a client would send it: raw contents, or typed contents
/// (`None` when a tensor has no typed field: FP16, BF16, or BOOL bytes
/// other than 0 and 1).
pub fn encode_request(req: &InferRequest, typed: bool) -> Option<ModelInferRequest> {
    let mut inputs = Vec::new();
    let mut raw = Vec::new();
    for (name, t) in &req.inputs {
        let contents = if typed {
            Some(typed_contents(t)?)
        } else {
            None
        };
        if !typed {
            raw.push(t.data().clone());
        }
        inputs.push(InferInputTensor {
            name: name.clone(),
            datatype: t.dtype().as_str().into(),
            shape: t.shape().to_vec(),
            parameters: HashMap::new(),
            contents,
        });
    }
    let parameters = req
        .params
        .iter()
        .map(|p| (p.name.clone(), param_proto(&p.value)))
        .collect();
    Some(ModelInferRequest {
        model_name: req.model.clone(),
        model_version: req.version.clone(),
        id: req.id.clone(),
        parameters,
        inputs,
        outputs: req
            .outputs
            .iter()
            .map(|name| InferRequestedOutputTensor {
                name: name.clone(),
                parameters: HashMap::new(),
            })
            .collect(),
        raw_input_contents: raw,
    })
}

fn param_proto(v: &ParamValue) -> InferParameter {
    let choice = match v {
        ParamValue::Bool(b) => ParameterChoice::BoolParam(*b),
        ParamValue::Int64(i) => ParameterChoice::Int64Param(*i),
        ParamValue::Uint64(u) => ParameterChoice::Uint64Param(*u),
        ParamValue::Double(d) => ParameterChoice::DoubleParam(*d),
        ParamValue::String(s) => ParameterChoice::StringParam(s.clone()),
    };
    InferParameter {
        parameter_choice: Some(choice),
    }
}

/// The typed contents that carry `t`, if a field can.
fn typed_contents(t: &Tensor) -> Option<InferTensorContents> {
    let mut c = InferTensorContents::default();
    match t.dtype() {
        DataType::Bool => {
            if t.data().iter().any(|&b| b > 1) {
                return None;
            }
            c.bool_contents = t.data().iter().map(|&b| b == 1).collect();
        }
        DataType::Int8 => c.int_contents = t.to_i8().ok()?.into_iter().map(i32::from).collect(),
        DataType::Int16 => c.int_contents = t.to_i16().ok()?.into_iter().map(i32::from).collect(),
        DataType::Int32 => c.int_contents = t.to_i32().ok()?,
        DataType::Int64 => c.int64_contents = t.to_i64().ok()?,
        DataType::Uint8 => c.uint_contents = t.data().iter().map(|&b| u32::from(b)).collect(),
        DataType::Uint16 => c.uint_contents = t.to_u16().ok()?.into_iter().map(u32::from).collect(),
        DataType::Uint32 => c.uint_contents = t.to_u32().ok()?,
        DataType::Uint64 => c.uint64_contents = t.to_u64().ok()?,
        DataType::Fp32 => c.fp32_contents = t.to_f32().ok()?,
        DataType::Fp64 => c.fp64_contents = t.to_f64().ok()?,
        DataType::Bytes => {
            c.bytes_contents = t.byte_strings().ok()?.iter().map(|b| b.to_vec()).collect();
        }
        DataType::Fp16 | DataType::Bf16 => return None,
    }
    Some(c)
}

fn assert_same(a: &InferRequest, b: &InferRequest, typed: bool) {
    let how = if typed {
        "typed contents"
    } else {
        "raw contents"
    };
    assert_eq!(a.model, b.model);
    assert_eq!(a.version, b.version);
    assert_eq!(a.id, b.id);
    assert_eq!(
        a.inputs, b.inputs,
        "inputs differ after a round trip with {how}"
    );
    assert_eq!(
        format!("{:?}", a.params),
        format!("{:?}", b.params),
        "parameters differ after a round trip with {how}"
    );
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.timeout, b.timeout);
}

/// A structured request: inputs with raw or typed contents that mostly fit
/// their datatype and shape, parameters (the request timeout among them),
/// requested outputs, now and then an extension this server refuses.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    Ok(request(u)?.encode_to_vec())
}

/// A structured request as an [`arbitrary::Arbitrary`] input, for a
/// libFuzzer target over decoded messages (`fuzz_targets/kserve_proto_structured.rs`).
#[derive(Debug, Clone)]
pub struct Request(pub ModelInferRequest);

impl<'a> arbitrary::Arbitrary<'a> for Request {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        request(u).map(Self)
    }
}

/// The structured request [`generate`] encodes.
pub fn request(u: &mut Unstructured<'_>) -> Result<ModelInferRequest> {
    let raw_mode = u.ratio(1, 2)?;
    let mut inputs = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let datatype = crate::generators::datatype_name(u)?;
        let dtype: Option<DataType> = datatype.parse().ok();
        let shape = crate::generators::shape(u)?;
        let count = crate::generators::small_count(&shape).unwrap_or(u.int_in_range(0..=3)?);
        let mut parameters = HashMap::new();
        if u.ratio(1, 12)? {
            parameters.insert("shared_memory_region".to_string(), param(u)?);
        }
        let contents = if raw_mode && !u.ratio(1, 20)? {
            raw.push(Bytes::from(crate::generators::raw_data(u, dtype, count)?));
            None
        } else if u.ratio(1, 10)? {
            None
        } else {
            Some(contents(u, dtype, count)?)
        };
        inputs.push(InferInputTensor {
            name: crate::generators::name(u)?,
            datatype,
            shape,
            parameters,
            contents,
        });
    }
    if u.ratio(1, 20)? {
        raw.push(Bytes::from_static(b"extra"));
    }
    let mut parameters = HashMap::new();
    for _ in 0..u.int_in_range(0..=3)? {
        parameters.insert(crate::generators::name(u)?, param(u)?);
    }
    let mut outputs = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let mut parameters = HashMap::new();
        if u.ratio(1, 8)? {
            let key = *u.choose(&["classification", "binary_data", "shared_memory_byte_size"])?;
            parameters.insert(key.to_string(), param(u)?);
        }
        outputs.push(InferRequestedOutputTensor {
            name: crate::generators::name(u)?,
            parameters,
        });
    }
    Ok(ModelInferRequest {
        model_name: crate::generators::name(u)?,
        model_version: u
            .choose(&["", "1", "1.0.0", "latest", "blake3:00"])?
            .to_string(),
        id: crate::generators::name(u)?,
        parameters,
        inputs,
        outputs,
        raw_input_contents: raw,
    })
}

fn param(u: &mut Unstructured<'_>) -> Result<InferParameter> {
    let choice = match u.int_in_range(0..=5u8)? {
        0 => None,
        1 => Some(ParameterChoice::BoolParam(u.arbitrary()?)),
        2 => Some(ParameterChoice::Int64Param(*u.choose(&[
            0,
            1,
            -1,
            1_000_000,
            i64::MAX,
            i64::MIN,
        ])?)),
        3 => Some(ParameterChoice::Uint64Param(u.arbitrary()?)),
        4 => Some(ParameterChoice::DoubleParam(u.arbitrary()?)),
        _ => Some(ParameterChoice::StringParam(crate::generators::name(u)?)),
    };
    Ok(InferParameter {
        parameter_choice: choice,
    })
}

/// Typed contents for `count` elements: in the datatype's field mostly,
/// in another field now and then.
fn contents(
    u: &mut Unstructured<'_>,
    dtype: Option<DataType>,
    count: usize,
) -> Result<InferTensorContents> {
    use DataType as D;
    let mut c = InferTensorContents::default();
    let count = if u.ratio(1, 16)? { count + 1 } else { count };
    let field = if u.ratio(1, 16)? {
        *u.choose(&DataType::ALL)?
    } else {
        dtype.unwrap_or(D::Fp32)
    };
    for _ in 0..count {
        match field {
            D::Bool => c.bool_contents.push(u.arbitrary()?),
            D::Int8 | D::Int16 | D::Int32 => c.int_contents.push(u.arbitrary()?),
            D::Int64 => c.int64_contents.push(u.arbitrary()?),
            D::Uint8 | D::Uint16 | D::Uint32 => c.uint_contents.push(u.arbitrary()?),
            D::Uint64 => c.uint64_contents.push(u.arbitrary()?),
            D::Fp32 | D::Fp16 | D::Bf16 => c.fp32_contents.push(u.arbitrary()?),
            D::Fp64 => c.fp64_contents.push(u.arbitrary()?),
            D::Bytes => c.bytes_contents.push(crate::generators::element_bytes(u)?),
        }
    }
    Ok(c)
}
