//! KServe v2 protobuf messages to and from the data plane's types.

use super::{InferRequest, InferResponse, ModelCounters, ModelKey, ServeError, param};
use bytes::{BufMut, Bytes, BytesMut};
use conduit_proto::inference::{
    self as pb, InferParameter, InferStatistics, InferTensorContents, ModelInferRequest,
    ModelInferResponse, StatisticDuration, infer_parameter::ParameterChoice,
    model_infer_request::InferInputTensor, model_infer_response::InferOutputTensor,
};
use conduit_registry::{Kind, Manifest};
use conduit_runtime::{Param, ParamValue};
use conduit_types::{DataType, clip};
use std::collections::HashMap;
use std::time::Instant;

/// A KServe parameter as a WIT parameter.
pub fn param_from_proto(name: &str, p: &InferParameter) -> Option<Param> {
    let value = match p.parameter_choice.as_ref()? {
        ParameterChoice::BoolParam(b) => ParamValue::Bool(*b),
        ParameterChoice::Int64Param(i) => ParamValue::Int64(*i),
        ParameterChoice::StringParam(s) => ParamValue::String(s.clone()),
        ParameterChoice::DoubleParam(d) => ParamValue::Double(*d),
        ParameterChoice::Uint64Param(u) => ParamValue::Uint64(*u),
    };
    Some(param(name, value))
}

fn string_param(s: String) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(s)),
    }
}

/// The typed-contents fields a request filled, with their element counts.
fn filled(c: &InferTensorContents) -> Vec<(&'static str, usize)> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect()
}

/// The typed-contents field that carries `dtype`.
fn contents_field(dtype: DataType) -> &'static str {
    use DataType as D;
    match dtype {
        D::Bool => "bool_contents",
        D::Int8 | D::Int16 | D::Int32 => "int_contents",
        D::Int64 => "int64_contents",
        D::Uint8 | D::Uint16 | D::Uint32 => "uint_contents",
        D::Uint64 => "uint64_contents",
        D::Fp32 => "fp32_contents",
        D::Fp64 => "fp64_contents",
        D::Bytes => "bytes_contents",
        D::Fp16 | D::Bf16 => "raw_input_contents",
    }
}

/// Typed `contents` as raw KServe v2 bytes of `dtype`.
///
/// # Errors
/// A message when the contents field does not match the datatype.
pub fn contents_to_raw(dtype: DataType, c: &InferTensorContents) -> Result<Bytes, String> {
    let field = contents_field(dtype);
    let filled = filled(c);
    if let Some((other, n)) = filled.iter().find(|(f, _)| *f != field) {
        return Err(format!(
            "{dtype} data goes in `{field}`, but the request has {n} elements in `{other}`{}",
            if matches!(dtype, DataType::Fp16 | DataType::Bf16) {
                " (typed contents have no 16-bit floats)"
            } else {
                ""
            }
        ));
    }
    let mut out = BytesMut::new();
    match dtype {
        DataType::Bool => c
            .bool_contents
            .iter()
            .for_each(|&b| out.put_u8(u8::from(b))),
        // 8- and 16-bit elements travel in 32-bit fields: a value that does
        // not fit is refused (as over JSON), never wrapped.
        DataType::Int8 => narrow(dtype, &c.int_contents, |v: i8| out.put_i8(v))?,
        DataType::Int16 => narrow(dtype, &c.int_contents, |v: i16| out.put_i16_le(v))?,
        DataType::Int32 => c.int_contents.iter().for_each(|&v| out.put_i32_le(v)),
        DataType::Int64 => c.int64_contents.iter().for_each(|&v| out.put_i64_le(v)),
        DataType::Uint8 => narrow(dtype, &c.uint_contents, |v: u8| out.put_u8(v))?,
        DataType::Uint16 => narrow(dtype, &c.uint_contents, |v: u16| out.put_u16_le(v))?,
        DataType::Uint32 => c.uint_contents.iter().for_each(|&v| out.put_u32_le(v)),
        DataType::Uint64 => c.uint64_contents.iter().for_each(|&v| out.put_u64_le(v)),
        DataType::Fp32 => c.fp32_contents.iter().for_each(|&v| out.put_f32_le(v)),
        DataType::Fp64 => c.fp64_contents.iter().for_each(|&v| out.put_f64_le(v)),
        DataType::Bytes => {
            for b in &c.bytes_contents {
                let len = u32::try_from(b.len()).map_err(|_| "BYTES element over 4 GiB")?;
                out.put_u32_le(len);
                out.put_slice(b);
            }
        }
        DataType::Fp16 | DataType::Bf16 => {}
    }
    Ok(out.freeze())
}

/// Puts each of `values` as the narrower `T` of `dtype`.
///
/// # Errors
/// A message naming the first element out of `T`'s range.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    dtype: DataType,
    values: &[S],
    mut put: impl FnMut(T),
) -> Result<(), String> {
    for (k, &v) in values.iter().enumerate() {
        let v =
            T::try_from(v).map_err(|_| format!("element {k} ({v}) is out of range for {dtype}"))?;
        put(v);
    }
    Ok(())
}

/// Decodes a `ModelInferRequest`.
///
/// # Errors
/// [`ServeError::InvalidInput`] for unknown datatypes, contents that do not
/// match shapes, or a mix of raw and typed inputs.
pub fn decode_request(mut req: ModelInferRequest) -> Result<InferRequest, ServeError> {
    let started = Instant::now();
    let bad = ServeError::InvalidInput;
    let raw = std::mem::take(&mut req.raw_input_contents);
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(bad(format!(
            "raw_input_contents has {} entries for {} inputs; give every input raw, or none",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.into_iter().enumerate() {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            parameters,
        } = input;
        let dtype: DataType = datatype.parse().map_err(|_| {
            bad(format!(
                "input `{}` has unknown datatype `{}`",
                clip(&name),
                clip(&datatype)
            ))
        })?;
        super::unsupported_extensions(parameters.keys(), "input", &name)?;
        let data = match (raw.get(i), contents) {
            (Some(r), None) => r.clone(),
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "input `{}` has both raw_input_contents and typed contents",
                    clip(&name)
                )));
            }
            (None, Some(c)) => contents_to_raw(dtype, &c)
                .map_err(|m| bad(format!("input `{}`: {m}", clip(&name))))?,
            (None, None) => Bytes::new(),
        };
        let tensor = super::request_tensor(&name, dtype, shape, data)?;
        inputs.push((name, tensor));
    }
    let mut params: Vec<Param> = req
        .parameters
        .iter()
        .filter_map(|(k, v)| param_from_proto(k, v))
        .collect();
    params.sort_by(|a, b| a.name.cmp(&b.name));
    let timeout = params.iter().find_map(|p| match (&*p.name, &p.value) {
        // Triton's request `timeout` parameter, in microseconds.
        ("timeout", ParamValue::Int64(us)) if *us > 0 => {
            Some(std::time::Duration::from_micros(*us as u64))
        }
        _ => None,
    });
    Ok(InferRequest {
        model: req.model_name,
        version: req.model_version,
        id: req.id,
        inputs,
        params,
        outputs: req
            .outputs
            .into_iter()
            .map(|o| {
                super::unsupported_extensions(o.parameters.keys(), "output", &o.name)
                    .map(|()| o.name)
            })
            .collect::<Result<_, _>>()?,
        timeout,
        decode: started.elapsed(),
        received: None,
    })
}

/// Encodes an answer with raw output contents.
pub fn encode_response(resp: InferResponse) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut raw = Vec::with_capacity(resp.outputs.len());
    for (name, t) in resp.outputs {
        outputs.push(InferOutputTensor {
            name,
            datatype: t.dtype().as_str().to_string(),
            shape: t.shape().to_vec(),
            ..Default::default()
        });
        raw.push(t.data().clone());
    }
    ModelInferResponse {
        model_name: resp.model,
        model_version: resp.version,
        id: resp.id,
        parameters: resp
            .params
            .into_iter()
            .map(|(k, v)| (k, string_param(v)))
            .collect(),
        outputs,
        raw_output_contents: raw,
    }
}

/// Triton's datatype enum for a KServe datatype string.
pub fn config_dtype(datatype: &str) -> pb::DataType {
    use pb::DataType as D;
    match datatype {
        "BOOL" => D::TypeBool,
        "UINT8" => D::TypeUint8,
        "UINT16" => D::TypeUint16,
        "UINT32" => D::TypeUint32,
        "UINT64" => D::TypeUint64,
        "INT8" => D::TypeInt8,
        "INT16" => D::TypeInt16,
        "INT32" => D::TypeInt32,
        "INT64" => D::TypeInt64,
        "FP16" => D::TypeFp16,
        "FP32" => D::TypeFp32,
        "FP64" => D::TypeFp64,
        "BYTES" => D::TypeString,
        "BF16" => D::TypeBf16,
        _ => D::TypeInvalid,
    }
}

/// The platform string of a manifest kind.
pub fn platform(kind: Kind) -> &'static str {
    match kind {
        Kind::Model => "onnxruntime_onnx",
        Kind::Component => "conduit_component",
        Kind::Pipeline => "conduit_pipeline",
    }
}

/// Triton's `ModelConfig` for a manifest. A batching model reports its
/// maximum batch and dims without the batch dimension, as Triton does.
pub fn model_config(m: &Manifest, max_batch_size: usize, delay_us: u64) -> pb::ModelConfig {
    let batching = m.kind == Kind::Model
        && max_batch_size > 0
        && m.signature
            .inputs
            .iter()
            .chain(&m.signature.outputs)
            .all(|t| t.shape.first() == Some(&-1));
    let dims = |shape: &[i64]| {
        if batching {
            shape[1..].to_vec()
        } else {
            shape.to_vec()
        }
    };
    pb::ModelConfig {
        name: m.name.clone(),
        platform: platform(m.kind).into(),
        backend: match m.kind {
            Kind::Model => "onnxruntime".into(),
            _ => "conduit".into(),
        },
        max_batch_size: if batching { max_batch_size as i32 } else { 0 },
        input: m
            .signature
            .inputs
            .iter()
            .map(|t| pb::ModelInput {
                name: t.name.clone(),
                data_type: config_dtype(&t.datatype) as i32,
                dims: dims(&t.shape),
                ..Default::default()
            })
            .collect(),
        output: m
            .signature
            .outputs
            .iter()
            .map(|t| pb::ModelOutput {
                name: t.name.clone(),
                data_type: config_dtype(&t.datatype) as i32,
                dims: dims(&t.shape),
                ..Default::default()
            })
            .collect(),
        scheduling_choice: batching.then(|| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                max_queue_delay_microseconds: delay_us,
                ..Default::default()
            })
        }),
        parameters: HashMap::from([
            (
                "conduit.digest".to_string(),
                pb::ModelParameter {
                    string_value: m.digest.to_string(),
                },
            ),
            (
                "conduit.version".to_string(),
                pb::ModelParameter {
                    string_value: m.version.clone(),
                },
            ),
        ]),
        ..Default::default()
    }
}

fn duration(count: u64, ns: u64) -> Option<StatisticDuration> {
    Some(StatisticDuration { count, ns })
}

/// Triton's `ModelStatistics` from the counters.
pub fn statistics(key: &ModelKey, c: &ModelCounters) -> pb::ModelStatistics {
    let n = c.success;
    pb::ModelStatistics {
        name: key.model.clone(),
        version: key.version.clone(),
        last_inference: c.last_inference_ms,
        inference_count: c.inference_count,
        execution_count: c.exec_count,
        inference_stats: Some(InferStatistics {
            success: duration(n, c.success_ns),
            fail: duration(c.failure(), c.failure_ns),
            queue: duration(n, c.queue_ns),
            compute_input: duration(n, c.compute_input_ns),
            compute_infer: duration(n, c.compute_infer_ns),
            compute_output: duration(n, c.compute_output_ns),
            cache_hit: duration(0, 0),
            cache_miss: duration(0, 0),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_contents_become_raw_bytes() {
        let c = InferTensorContents {
            bytes_contents: vec![b"ab".to_vec(), b"".to_vec()],
            ..Default::default()
        };
        let raw = contents_to_raw(DataType::Bytes, &c).unwrap();
        assert_eq!(&raw[..], &[2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        let c = InferTensorContents {
            fp32_contents: vec![1.5],
            ..Default::default()
        };
        assert_eq!(
            &contents_to_raw(DataType::Fp32, &c).unwrap()[..],
            &1.5f32.to_le_bytes()
        );
        assert!(contents_to_raw(DataType::Fp16, &c).is_err());
    }

    #[test]
    fn decodes_and_rejects() {
        let input = |name: &str, dt: &str, shape: Vec<i64>| InferInputTensor {
            name: name.into(),
            datatype: dt.into(),
            shape,
            ..Default::default()
        };
        let ok = decode_request(ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![input("x", "INT64", vec![2])],
            raw_input_contents: vec![Bytes::from(vec![0u8; 16])],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.inputs[0].1.shape(), &[2]);
        let err = decode_request(ModelInferRequest {
            inputs: vec![input("x", "INT64", vec![3])],
            raw_input_contents: vec![Bytes::from(vec![0u8; 16])],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("input `x`"), "{err}");
        let err = decode_request(ModelInferRequest {
            inputs: vec![input("x", "FLOAT", vec![1])],
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown datatype `FLOAT`"),
            "{err}"
        );
    }

    #[test]
    fn misplaced_data_names_the_actual_problem() {
        // BYTES sent as int_contents: where BYTES data goes, not a count.
        let err = decode_request(ModelInferRequest {
            inputs: vec![InferInputTensor {
                name: "text".into(),
                datatype: "BYTES".into(),
                shape: vec![2],
                contents: Some(InferTensorContents {
                    int_contents: vec![1, 2],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "input `text`: BYTES data goes in `bytes_contents`, but the request has 2 elements \
             in `int_contents`"
        );
        // INT64 data declared INT32: the datatype, not the byte count.
        let int32_ids = |bytes: usize| {
            decode_request(ModelInferRequest {
                inputs: vec![InferInputTensor {
                    name: "ids".into(),
                    datatype: "INT32".into(),
                    shape: vec![3],
                    ..Default::default()
                }],
                raw_input_contents: vec![Bytes::from(vec![0u8; bytes])],
                ..Default::default()
            })
            .unwrap_err()
        };
        let err = int32_ids(24);
        let m = err.to_string();
        assert!(
            m.contains("declared INT32 (4 bytes an element)")
                && m.contains("8 bytes an element, as INT64, UINT64 or FP64 data")
                && m.contains("does not match the data"),
            "{m}"
        );
        // A size that fits no element width keeps the plain count.
        let err = int32_ids(13);
        assert!(err.to_string().contains("needs 12 bytes, got 13"), "{err}");
    }

    #[test]
    fn extensions_not_offered_are_refused_as_over_http() {
        use conduit_proto::inference::model_infer_request::InferRequestedOutputTensor;
        let class_count = InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(3)),
        };
        let err = decode_request(ModelInferRequest {
            outputs: vec![InferRequestedOutputTensor {
                name: "y".into(),
                parameters: HashMap::from([("classification".to_string(), class_count)]),
            }],
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ServeError::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("class_count"), "{err}");
        let region = InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam("r".into())),
        };
        let err = decode_request(ModelInferRequest {
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: "FP32".into(),
                parameters: HashMap::from([("shared_memory_region".to_string(), region)]),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("shared memory"), "{err}");
    }
}
