//! Session `Run` requests: protobuf bytes through `RunRequest::decode` and
//! every tensor input through `conduit_runner::tensor_from_proto`, the
//! decoding the session service does before it looks anything up.
//!
//! Input format: an encoded `conduit.session.v1.RunRequest`.
//!
//! Checks: no panic; a refused tensor is `InvalidInput` with a bounded
//! status message; an accepted one matches its datatype and shape, and
//! `tensor_to_proto` gives back the same message (the datatype in its
//! canonical spelling).

use crate::check;
use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use conduit_proto::session::v1 as pb;
use conduit_runner::{tensor_from_proto, tensor_to_proto};
use conduit_types::DataType;
use prost::Message;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(msg) = pb::RunRequest::decode(data) else {
        return;
    };
    for input in msg.inputs {
        let Some(pb::run_input::Source::Tensor(t)) = input.source else {
            continue;
        };
        match tensor_from_proto(&input.name, t.clone()) {
            Err(e) => check::serve_error("tensor_from_proto", e),
            Ok(tensor) => {
                let dtype: DataType = t.datatype.parse().expect("accepted, so known");
                assert_eq!(tensor.dtype(), dtype);
                assert_eq!(tensor.shape(), &t.shape[..]);
                let back = tensor_to_proto(&tensor);
                assert_eq!(
                    back,
                    pb::Tensor {
                        datatype: dtype.as_str().into(),
                        ..t
                    },
                    "tensor_to_proto(tensor_from_proto(t)) differs from t"
                );
            }
        }
    }
}

/// A structured `RunRequest`: tensors that mostly fit, value ids, fetches.
pub fn generate(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut inputs = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let source = match u.int_in_range(0..=9u8)? {
            0 => None,
            1 => Some(pb::run_input::Source::ValueId(u.arbitrary()?)),
            _ => {
                let datatype = crate::generators::datatype_name(u)?;
                let shape = crate::generators::shape(u)?;
                let count =
                    crate::generators::small_count(&shape).unwrap_or(u.int_in_range(0..=3)?);
                let data = crate::generators::raw_data(u, datatype.parse().ok(), count)?;
                Some(pb::run_input::Source::Tensor(pb::Tensor {
                    datatype,
                    shape,
                    data: Bytes::from(data),
                }))
            }
        };
        inputs.push(pb::RunInput {
            name: crate::generators::name(u)?,
            source,
        });
    }
    Ok(pb::RunRequest {
        session_id: crate::generators::name(u)?,
        module: u.choose(&["tok@1.0.0", "blake3:00", ""])?.to_string(),
        inputs,
        fetch: vec![crate::generators::name(u)?],
        parameters: Default::default(),
        release: Vec::new(),
    }
    .encode_to_vec())
}
