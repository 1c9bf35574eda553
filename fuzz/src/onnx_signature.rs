//! ONNX model signatures: uploaded model bytes through
//! `conduit_executor::onnx_signature`, then the checks the runner's
//! validator makes before a model is stored.
//!
//! Input format: the model file's bytes (a protobuf `onnx.ModelProto`).
//!
//! Checks: no panic; a refusal, as the registry reports a rejected push, has
//! a bounded status message; an accepted signature has inputs and outputs,
//! each named, with dimensions of -1 or more; if it passes `check_bounds`,
//! it converts to the registry's form and back unchanged.

use crate::check;
use arbitrary::{Result, Unstructured};
use conduit_executor::onnx_signature;
use conduit_registry::RegistryError;
use prost::Message;

/// Tokens for mutations: ONNX field tags, element types, op names.
pub const DICTIONARY: &[&[u8]] = &[
    b"\x08\x08",
    b"\x3a\x00",
    b"\x42\x02\x10\x11",
    b"\x5a\x00",
    b"\x62\x00",
    b"\x0a\x00",
    b"\x12\x00",
    b"\x08\x01",
    b"\x08\x0e",
    b"\x08\x11",
    b"\x08\xff\xff\xff\xff\x07",
    b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"Identity",
    b"batch",
];

/// Runs one input.
pub fn run(data: &[u8]) {
    let signature = match onnx_signature(data) {
        Ok(s) => s,
        Err(e) => return rejected(&e.to_string()),
    };
    assert!(!signature.inputs.is_empty() && !signature.outputs.is_empty());
    for spec in signature.inputs.iter().chain(&signature.outputs) {
        assert!(!spec.name.is_empty(), "an unnamed tensor was accepted");
        assert!(
            spec.shape.iter().all(|&d| d >= -1),
            "{spec}: a dimension below -1"
        );
    }
    if let Err(e) = signature.check_bounds() {
        return rejected(&format!("the model's signature {e}"));
    }
    let stored = conduit_runner::registry_signature(&signature);
    let back = conduit_runner::host_signature(&stored)
        .unwrap_or_else(|e| panic!("a stored model signature is refused by hosts: {e}"));
    assert_eq!(
        back, signature,
        "a signature changes through its stored form"
    );
}

/// A rejected push, as the registry answers it.
fn rejected(reason: &str) {
    let e = RegistryError::InvalidArgument(format!("model m@1.0.0 rejected: {reason}"));
    check::registry_error("onnx_signature", e);
}

// The subset of onnx.proto a signature reads (field numbers from
// github.com/onnx/onnx), for the generator and the corpus.

/// `ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// `ir_version`.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// `producer_name`.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// `graph`.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// `opset_import`.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    /// `domain`.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// `version`.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// `node`.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `initializer` (names only).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// `input`.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// `output`.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// `input`.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// `output`.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// `name`.
    #[prost(string, tag = "3")]
    pub name: String,
    /// `op_type`.
    #[prost(string, tag = "4")]
    pub op_type: String,
}

/// `TensorProto`: dims, type and name.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// `dims`.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// `data_type`.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// `name`.
    #[prost(string, tag = "8")]
    pub name: String,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `type`.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`: a tensor, or (as an empty message) a sequence.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    /// `value`.
    #[prost(oneof = "TypeValue", tags = "1, 4")]
    pub value: Option<TypeValue>,
}

/// `TypeProto.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TypeValue {
    /// `tensor_type`.
    #[prost(message, tag = "1")]
    TensorType(TypeProtoTensor),
    /// `sequence_type`, its element type left out.
    #[prost(message, tag = "4")]
    SequenceType(Empty),
}

/// A message without fields.
#[derive(Clone, PartialEq, Message)]
pub struct Empty {}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProtoTensor {
    /// `elem_type`.
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// `shape`.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    /// `dim`.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`.
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    /// `value`.
    #[prost(oneof = "DimValue", tags = "1, 2")]
    pub value: Option<DimValue>,
}

/// `Dimension.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimValue {
    /// `dim_value`.
    #[prost(int64, tag = "1")]
    Value(i64),
    /// `dim_param`.
    #[prost(string, tag = "2")]
    Param(String),
}

/// A tensor value: `name`, element type, dimensions (`Err`: symbolic).
pub fn value_info(
    name: &str,
    elem_type: i32,
    dims: &[std::result::Result<i64, &str>],
) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Ok(v) => DimValue::Value(*v),
                                Err(p) => DimValue::Param((*p).into()),
                            }),
                        })
                        .collect(),
                }),
            })),
        }),
    }
}

/// A one-node model: `op(inputs) -> outputs`, opset 17.
pub fn model(
    op: &str,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    initializer: Vec<TensorProto>,
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "conduit-fuzz".into(),
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: inputs.iter().map(|i| i.name.clone()).collect(),
                output: outputs.iter().map(|o| o.name.clone()).collect(),
                name: op.to_lowercase(),
                op_type: op.into(),
            }],
            name: op.to_lowercase(),
            initializer,
            input: inputs,
            output: outputs,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
    }
}

/// A structured model: tensors of every element type (supported or not),
/// shapes symbolic, fixed, negative, missing or long, sometimes a sequence,
/// an initializer listed as an input, a missing graph or node.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let values = |u: &mut Unstructured<'_>, n: usize| -> Result<Vec<ValueInfoProto>> {
        (0..n)
            .map(|_| {
                let name = if u.ratio(1, 10)? {
                    crate::generators::name(u)?
                } else {
                    format!(
                        "{}{}",
                        u.choose(&["x", "ids", "y", "input_ids", "last_hidden_state"])?,
                        u.int_in_range(0..=9u8)?
                    )
                };
                if u.ratio(1, 16)? {
                    return Ok(ValueInfoProto {
                        name,
                        r#type: Some(TypeProto {
                            value: u.ratio(1, 2)?.then_some(TypeValue::SequenceType(Empty {})),
                        }),
                    });
                }
                let elem_type = if u.ratio(1, 16)? {
                    u.int_in_range(-1..=30)?
                } else {
                    *u.choose(&[1, 7, 8, 9, 10, 11, 16])?
                };
                let rank = if u.ratio(1, 16)? {
                    u.int_in_range(17..=40)?
                } else {
                    u.int_in_range(0..=4)?
                };
                let dims: Vec<std::result::Result<i64, &str>> = (0..rank)
                    .map(|_| {
                        Ok(match u.int_in_range(0..=5u8)? {
                            0 => Err("batch"),
                            1 => Ok(*u.choose(&[-7, i64::MIN, i64::MAX, 0])?),
                            _ => Ok(u.int_in_range(1..=512)?),
                        })
                    })
                    .collect::<Result<_>>()?;
                let mut v = value_info(&name, elem_type, &dims);
                if u.ratio(1, 16)?
                    && let Some(TypeValue::TensorType(t)) =
                        v.r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    t.shape = None;
                }
                Ok(v)
            })
            .collect()
    };
    let n = if u.ratio(1, 20)? {
        0
    } else {
        u.int_in_range(1..=3)?
    };
    let inputs = values(u, n)?;
    let n = if u.ratio(1, 20)? {
        0
    } else {
        u.int_in_range(1..=3)?
    };
    let outputs = values(u, n)?;
    let initializer = if u.ratio(1, 4)? && !inputs.is_empty() {
        vec![TensorProto {
            dims: vec![4],
            data_type: 1,
            name: inputs[0].name.clone(),
        }]
    } else {
        Vec::new()
    };
    let mut m = model(
        u.choose(&["Add", "Identity", "MatMul"])?,
        inputs,
        outputs,
        initializer,
    );
    match u.int_in_range(0..=15u8)? {
        0 => m.graph = None,
        1 => m.ir_version = 0,
        2 => {
            if let Some(g) = m.graph.as_mut() {
                g.node.clear();
            }
        }
        _ => {}
    }
    Ok(m.encode_to_vec())
}
