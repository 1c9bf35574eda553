//! ONNX model metadata: the graph's inputs and outputs, read from `ModelProto`
//! bytes without an ONNX runtime.
//!
//! Only the subset of `onnx.proto` needed for the signature is declared here;
//! prost skips every other field (weights in `raw_data`, attributes, docs).
//! Field numbers follow `onnx/onnx.proto` in github.com/onnx/onnx.

use conduit_types::{DataType, Signature, TensorSpec};
use prost::Message;
use std::collections::HashSet;

/// Why bytes could not be read as an ONNX model's signature. Each message is
/// one line meant for the person who uploaded the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelParseError {
    /// The file is empty.
    #[error("not an ONNX model: the file is empty")]
    Empty,
    /// The bytes are not a protobuf `ModelProto`.
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    /// `ir_version` is missing or zero, so this is not an ONNX model.
    #[error("not an ONNX model: ir_version is missing or 0")]
    NoIrVersion,
    /// The model carries no graph.
    #[error("ONNX model has no graph")]
    NoGraph,
    /// The graph has no nodes.
    #[error("ONNX graph has no nodes")]
    NoNodes,
    /// The graph has no inputs besides its initializers.
    #[error("ONNX graph has no inputs")]
    NoInputs,
    /// The graph has no outputs.
    #[error("ONNX graph has no outputs")]
    NoOutputs,
    /// A graph input or output has an empty name.
    #[error("ONNX {role} #{index} has no name")]
    Unnamed {
        /// `"input"` or `"output"`.
        role: &'static str,
        /// Position among the graph's inputs or outputs, from 0.
        index: usize,
    },
    /// A graph input or output is a sequence, map or other non-tensor type.
    #[error("ONNX {role} `{name}` is not a tensor")]
    NotATensor {
        /// `"input"` or `"output"`.
        role: &'static str,
        /// The tensor's name.
        name: String,
    },
    /// A graph input or output declares no shape (not even a rank).
    #[error("ONNX {role} `{name}` has no shape")]
    NoShape {
        /// `"input"` or `"output"`.
        role: &'static str,
        /// The tensor's name.
        name: String,
    },
    /// A graph input or output has an element type Conduit does not serve.
    #[error(
        "ONNX tensor `{name}` has unsupported element type {elem_type} ({})",
        elem_type_name(*elem_type)
    )]
    UnsupportedElemType {
        /// The tensor's name.
        name: String,
        /// The `TensorProto.DataType` number.
        elem_type: i32,
    },
}

/// Reads the signature of an ONNX model: the graph's inputs (less those that
/// are initializers, i.e. weights with defaults) and its outputs.
///
/// A dimension with a `dim_value` keeps it; a symbolic `dim_param`, an unset
/// dimension or a negative value becomes `-1` (dynamic). Element types map to
/// [`DataType`] by name (`FLOAT` → `Fp32`, `STRING` → `Bytes`, …).
///
/// # Errors
///
/// Returns a [`ModelParseError`] if the bytes are empty or not a protobuf
/// `ModelProto`, if `ir_version` is 0, if the model has no graph or the graph
/// no nodes, inputs or outputs, or if an input or output is unnamed, not a
/// tensor, has no shape, or has an element type without a [`DataType`]
/// (complex, 8-bit and smaller floats, 4- and 2-bit integers).
pub fn onnx_signature(bytes: &[u8]) -> Result<Signature, ModelParseError> {
    if bytes.is_empty() {
        return Err(ModelParseError::Empty);
    }
    let model = ModelProto::decode(bytes)?;
    if model.ir_version == 0 {
        return Err(ModelParseError::NoIrVersion);
    }
    let graph = model.graph.ok_or(ModelParseError::NoGraph)?;
    if graph.node.is_empty() {
        return Err(ModelParseError::NoNodes);
    }
    let initializers: HashSet<&str> = graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    let inputs = graph
        .input
        .iter()
        .enumerate()
        .filter(|(_, v)| !initializers.contains(v.name.as_str()))
        .map(|(i, v)| tensor_spec("input", i, v))
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() {
        return Err(ModelParseError::NoInputs);
    }
    let outputs = graph
        .output
        .iter()
        .enumerate()
        .map(|(i, v)| tensor_spec("output", i, v))
        .collect::<Result<Vec<_>, _>>()?;
    if outputs.is_empty() {
        return Err(ModelParseError::NoOutputs);
    }
    Ok(Signature { inputs, outputs })
}

fn tensor_spec(
    role: &'static str,
    index: usize,
    value: &ValueInfoProto,
) -> Result<TensorSpec, ModelParseError> {
    let name = &value.name;
    if name.is_empty() {
        return Err(ModelParseError::Unnamed { role, index });
    }
    let Some(type_proto::Value::TensorType(tensor)) =
        value.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(ModelParseError::NotATensor {
            role,
            name: name.clone(),
        });
    };
    let dtype =
        data_type(tensor.elem_type).ok_or_else(|| ModelParseError::UnsupportedElemType {
            name: name.clone(),
            elem_type: tensor.elem_type,
        })?;
    let shape = tensor
        .shape
        .as_ref()
        .ok_or_else(|| ModelParseError::NoShape {
            role,
            name: name.clone(),
        })?;
    let shape = shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) if v >= 0 => v,
            _ => -1,
        })
        .collect();
    Ok(TensorSpec {
        name: name.clone(),
        dtype,
        shape,
    })
}

/// `TensorProto.DataType` number → Conduit's data type.
fn data_type(elem_type: i32) -> Option<DataType> {
    Some(match elem_type {
        1 => DataType::Fp32,
        2 => DataType::Uint8,
        3 => DataType::Int8,
        4 => DataType::Uint16,
        5 => DataType::Int16,
        6 => DataType::Int32,
        7 => DataType::Int64,
        8 => DataType::Bytes,
        9 => DataType::Bool,
        10 => DataType::Fp16,
        11 => DataType::Fp64,
        12 => DataType::Uint32,
        13 => DataType::Uint64,
        16 => DataType::Bf16,
        _ => return None,
    })
}

/// `TensorProto.DataType` number → its ONNX name, for error messages.
fn elem_type_name(elem_type: i32) -> &'static str {
    const NAMES: [&str; 29] = [
        "UNDEFINED",
        "FLOAT",
        "UINT8",
        "INT8",
        "UINT16",
        "INT16",
        "INT32",
        "INT64",
        "STRING",
        "BOOL",
        "FLOAT16",
        "DOUBLE",
        "UINT32",
        "UINT64",
        "COMPLEX64",
        "COMPLEX128",
        "BFLOAT16",
        "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ",
        "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ",
        "UINT4",
        "INT4",
        "FLOAT4E2M1",
        "FLOAT8E8M0",
        "UINT2",
        "INT2",
        "FLOAT6E2M3",
        "FLOAT6E3M2",
    ];
    usize::try_from(elem_type)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
        .unwrap_or("unknown")
}

// The subset of onnx.proto (proto2) read here. Unset optional scalars decode
// as their zero value, which is what the checks above expect.

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
}

/// Only the name: dims, data and the rest are skipped.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

/// Only `tensor_type`: a sequence, map or optional leaves `value` unset.
#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(oneof = "type_proto::Value", tags = "1")]
    value: Option<type_proto::Value>,
}

mod type_proto {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Value {
        #[prost(message, tag = "1")]
        TensorType(super::TypeProtoTensor),
    }
}

#[derive(Clone, PartialEq, Message)]
struct TypeProtoTensor {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(oneof = "dimension::Value", tags = "1, 2")]
    value: Option<dimension::Value>,
}

mod dimension {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Value {
        #[prost(int64, tag = "1")]
        DimValue(i64),
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A dimension: `Ok(n)` is `dim_value`, `Err(p)` is `dim_param`.
    fn dim(d: Result<i64, &str>) -> Dimension {
        Dimension {
            value: Some(match d {
                Ok(v) => dimension::Value::DimValue(v),
                Err(p) => dimension::Value::DimParam(p.into()),
            }),
        }
    }

    fn value_info(name: &str, elem_type: i32, dims: Option<Vec<Dimension>>) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(TypeProtoTensor {
                    elem_type,
                    shape: dims.map(|dim| TensorShapeProto { dim }),
                })),
            }),
        }
    }

    fn node(op_type: &str, input: &[&str], output: &[&str]) -> NodeProto {
        NodeProto {
            input: input.iter().map(|s| s.to_string()).collect(),
            output: output.iter().map(|s| s.to_string()).collect(),
            name: op_type.to_lowercase(),
            op_type: op_type.into(),
        }
    }

    /// `y = x + w` with `x: FLOAT[batch, ?, 4]` and `w` an initializer that is
    /// also listed as a graph input (the pre-IR-4 convention).
    fn add_model() -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "conduit-test".into(),
            graph: Some(GraphProto {
                node: vec![node("Add", &["x", "w"], &["y"])],
                name: "add".into(),
                initializer: vec![TensorProto { name: "w".into() }],
                input: vec![
                    value_info(
                        "x",
                        1,
                        Some(vec![
                            dim(Err("batch")),
                            Dimension { value: None },
                            dim(Ok(4)),
                        ]),
                    ),
                    value_info("w", 1, Some(vec![dim(Ok(4))])),
                ],
                output: vec![value_info(
                    "y",
                    1,
                    Some(vec![dim(Err("batch")), dim(Ok(-7)), dim(Ok(4))]),
                )],
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
        }
    }

    fn spec(name: &str, dtype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn parse(model: &ModelProto) -> Result<Signature, ModelParseError> {
        onnx_signature(&model.encode_to_vec())
    }

    fn graph_mut(model: &mut ModelProto) -> &mut GraphProto {
        model.graph.as_mut().unwrap()
    }

    #[test]
    fn onnx_round_trip_dynamic_dims_and_initializers() {
        let sig = parse(&add_model()).unwrap();
        assert_eq!(sig.inputs, vec![spec("x", DataType::Fp32, &[-1, -1, 4])]);
        assert_eq!(sig.outputs, vec![spec("y", DataType::Fp32, &[-1, -1, 4])]);
    }

    #[test]
    fn onnx_scalar_has_empty_shape() {
        let mut model = add_model();
        graph_mut(&mut model).input[0] = value_info("x", 7, Some(vec![]));
        assert_eq!(
            parse(&model).unwrap().inputs,
            vec![spec("x", DataType::Int64, &[])]
        );
    }

    #[test]
    fn onnx_every_dtype_maps() {
        let table = [
            (1, DataType::Fp32),
            (2, DataType::Uint8),
            (3, DataType::Int8),
            (4, DataType::Uint16),
            (5, DataType::Int16),
            (6, DataType::Int32),
            (7, DataType::Int64),
            (8, DataType::Bytes),
            (9, DataType::Bool),
            (10, DataType::Fp16),
            (11, DataType::Fp64),
            (12, DataType::Uint32),
            (13, DataType::Uint64),
            (16, DataType::Bf16),
        ];
        // Every Conduit data type is reachable from exactly one ONNX type.
        let mut seen: Vec<DataType> = table.iter().map(|&(_, d)| d).collect();
        seen.sort_by_key(|d| format!("{d:?}"));
        seen.dedup();
        assert_eq!(seen.len(), DataType::ALL.len());
        for (elem_type, dtype) in table {
            let mut model = add_model();
            graph_mut(&mut model).input[0] = value_info("x", elem_type, Some(vec![dim(Ok(2))]));
            let sig = parse(&model).unwrap();
            assert_eq!(
                sig.inputs,
                vec![spec("x", dtype, &[2])],
                "elem_type {elem_type}"
            );
        }
    }

    #[test]
    fn onnx_unsupported_dtypes_are_named() {
        for (elem_type, name) in [
            (0, "UNDEFINED"),
            (14, "COMPLEX64"),
            (15, "COMPLEX128"),
            (17, "FLOAT8E4M3FN"),
            (22, "INT4"),
            (99, "unknown"),
            (-3, "unknown"),
        ] {
            let mut model = add_model();
            graph_mut(&mut model).output[0] = value_info("y", elem_type, Some(vec![]));
            let err = parse(&model).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("ONNX tensor `y` has unsupported element type {elem_type} ({name})")
            );
        }
    }

    #[test]
    fn onnx_structural_errors() {
        type Edit = fn(&mut ModelProto);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |m| m.ir_version = 0,
                "not an ONNX model: ir_version is missing or 0",
            ),
            (|m| m.graph = None, "ONNX model has no graph"),
            (|m| graph_mut(m).node.clear(), "ONNX graph has no nodes"),
            (
                |m| graph_mut(m).input.truncate(0),
                "ONNX graph has no inputs",
            ),
            // Only the initializer is left: still no real inputs.
            (
                |m| drop(graph_mut(m).input.remove(0)),
                "ONNX graph has no inputs",
            ),
            (|m| graph_mut(m).output.clear(), "ONNX graph has no outputs"),
            (
                |m| graph_mut(m).input[0].name.clear(),
                "ONNX input #0 has no name",
            ),
            (
                |m| graph_mut(m).output[0].r#type = None,
                "ONNX output `y` is not a tensor",
            ),
            (
                |m| graph_mut(m).input[0].r#type = Some(TypeProto { value: None }),
                "ONNX input `x` is not a tensor",
            ),
            (
                |m| graph_mut(m).input[0] = value_info("x", 1, None),
                "ONNX input `x` has no shape",
            ),
            (
                |m| graph_mut(m).output[0] = value_info("y", 1, None),
                "ONNX output `y` has no shape",
            ),
        ];
        for (edit, want) in cases {
            let mut model = add_model();
            edit(&mut model);
            assert_eq!(parse(&model).unwrap_err().to_string(), want);
        }
    }

    /// A sequence-typed input (`TypeProto.sequence_type`, field 4) is skipped
    /// by prost as an unknown field and reported as not a tensor.
    #[test]
    fn onnx_sequence_input_is_not_a_tensor() {
        use prost::encoding::{bytes, int64, string};
        // ValueInfoProto { name: "x", type: TypeProto { sequence_type: {} } }
        let mut sequence_x = Vec::new();
        string::encode(1, &"x".to_string(), &mut sequence_x);
        bytes::encode(2, &vec![4 << 3 | 2, 0], &mut sequence_x);
        let mut graph = add_model().graph.unwrap();
        graph.input.remove(0);
        let mut graph_bytes = graph.encode_to_vec();
        bytes::encode(11, &sequence_x, &mut graph_bytes);
        let mut model = Vec::new();
        int64::encode(1, &8, &mut model);
        bytes::encode(7, &graph_bytes, &mut model);
        let err = onnx_signature(&model).unwrap_err();
        assert_eq!(err.to_string(), "ONNX input `x` is not a tensor");
    }

    /// A small deterministic generator (xorshift64*), so the garbage is the
    /// same on every run.
    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn onnx_garbage_is_rejected() {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
        let mut inputs: Vec<(String, Vec<u8>)> = vec![
            ("empty".into(), vec![]),
            ("text".into(), b"hello world".to_vec()),
            ("wasm".into(), wasm),
            ("zeros".into(), vec![0; 64]),
            ("ones".into(), vec![0xff; 64]),
        ];
        for seed in 1..=64 {
            inputs.push((
                format!("random seed {seed}"),
                pseudo_random(seed, 1 + 61 * seed as usize),
            ));
        }
        for (what, bytes) in inputs {
            let err = onnx_signature(&bytes).expect_err(&what);
            let msg = err.to_string();
            assert!(!msg.contains('\n'), "{what}: multi-line message {msg:?}");
        }
        assert_eq!(
            onnx_signature(b"").unwrap_err().to_string(),
            "not an ONNX model: the file is empty"
        );
        assert!(
            onnx_signature(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .to_string()
                .starts_with("not an ONNX model: "),
        );
    }

    #[test]
    fn onnx_truncated_model_is_rejected() {
        let model = add_model();
        let bytes = model.encode_to_vec();
        // Fields encode in tag order, so the graph ends where opset_import begins;
        // cutting anywhere before that loses (part of) the graph.
        let graph_end = ModelProto {
            opset_import: vec![],
            ..model
        }
        .encoded_len();
        assert!(graph_end < bytes.len());
        for len in 0..graph_end {
            assert!(
                onnx_signature(&bytes[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
        // Cutting inside opset_import is a decode error too.
        assert!(onnx_signature(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Flip and overwrite bytes of a valid model: any result is fine, a panic
    /// is not.
    #[test]
    fn onnx_mutated_model_never_panics() {
        let bytes = add_model().encode_to_vec();
        let noise = pseudo_random(7, bytes.len() * 8);
        for (i, &b) in noise.iter().enumerate() {
            let mut m = bytes.clone();
            let at = i % m.len();
            m[at] = if i % 2 == 0 {
                m[at] ^ (1 << (b % 8))
            } else {
                b
            };
            let _ = onnx_signature(&m);
        }
    }

    fn fixtures_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fixtures")
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = fixtures_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "ONNX fixture {} is missing ({e}): run `make fixtures`",
                path.display()
            )
        })
    }

    /// The models written by `scripts/make_fixtures.py` with the `onnx` package.
    #[test]
    fn onnx_fixtures_parse() {
        let add = onnx_signature(&fixture("add.onnx")).unwrap();
        assert_eq!(add.inputs, vec![spec("x", DataType::Fp32, &[-1, 4])]);
        assert_eq!(add.outputs, vec![spec("y", DataType::Fp32, &[-1, 4])]);

        let identity = onnx_signature(&fixture("identity_i64.onnx")).unwrap();
        assert_eq!(
            identity.inputs,
            vec![spec("ids", DataType::Int64, &[-1, -1])]
        );
        assert_eq!(
            identity.outputs,
            vec![spec("ids_out", DataType::Int64, &[-1, -1])]
        );

        let garbage = fixture("garbage.onnx");
        assert_eq!(garbage.len(), 4096);
        let err = onnx_signature(&garbage).unwrap_err();
        assert!(err.to_string().starts_with("not an ONNX model: "), "{err}");
    }
}
