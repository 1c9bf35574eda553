//! The checks at the data plane's boundary: request tensors against a
//! signature, requested outputs, answer sizes, Triton version numbers, and
//! the one log line per failed request.

use crate::*;
use conduit_runtime::{Param, ParamValue};
use conduit_types::{DataType, NamedTensors, Signature, TensorSpec, clip};
use std::collections::HashSet;

/// Input `name` of a request as a tensor; when its bytes do not add up to
/// its datatype and shape but do to another element size, the message says
/// that the datatype and the data disagree (not only the byte counts).
///
/// # Errors
/// [`ServeError::InvalidInput`] naming the input.
pub(crate) fn request_tensor(
    name: &str,
    dtype: DataType,
    shape: Vec<i64>,
    data: bytes::Bytes,
) -> Result<conduit_types::Tensor, ServeError> {
    let (got, count) = (data.len(), conduit_types::element_count(&shape).ok());
    conduit_types::Tensor::new(dtype, shape.clone(), data).map_err(|e| {
        let mismatch = match (dtype.element_size(), count) {
            (Some(size), Some(n)) if n > 0 && got % n == 0 && got / n != size => {
                let others = match got / n {
                    1 => "BOOL, INT8 or UINT8",
                    2 => "INT16, UINT16, FP16 or BF16",
                    4 => "INT32, UINT32 or FP32",
                    8 => "INT64, UINT64 or FP64",
                    _ => "",
                };
                (!others.is_empty()).then(|| {
                    format!(
                        "input `{}` is declared {dtype} ({size} bytes an element), but its \
                         {got} bytes for shape {shape:?} are {} bytes an element, as {others} \
                         data: the declared datatype does not match the data sent",
                        clip(name),
                        got / n
                    )
                })
            }
            _ => None,
        };
        ServeError::InvalidInput(mismatch.unwrap_or_else(|| format!("input `{}`: {e}", clip(name))))
    })
}

/// Refuses the Triton extensions this server does not offer, named by a
/// request tensor's parameter keys: shared memory, and on an output
/// classification (`class_count`). The same refusal over gRPC and HTTP.
///
/// # Errors
/// [`ServeError::Unsupported`] naming the tensor and the extension.
pub(crate) fn unsupported_extensions<'a>(
    mut keys: impl Iterator<Item = &'a String>,
    what: &str,
    name: &str,
) -> Result<(), ServeError> {
    let Some(key) = keys
        .find(|k| k.starts_with("shared_memory") || (what == "output" && *k == "classification"))
    else {
        return Ok(());
    };
    let name = clip(name);
    Err(ServeError::Unsupported(if key == "classification" {
        format!(
            "output `{name}` asks for classification (class_count), an extension this server \
             does not offer; request the output itself and take the top classes client-side"
        )
    } else {
        format!(
            "{what} `{name}` uses shared memory, an extension this server does not offer; send \
             the data in the request"
        )
    }))
}

/// A Triton-style version, `N` or `N.M` (digits only): its major and minor.
pub(crate) fn triton_version(version: &str) -> Option<(u64, Option<u64>)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (major, minor) = match version.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (version, None),
    };
    if !digits(major) || minor.is_some_and(|m| !digits(m)) {
        return None;
    }
    Some((major.parse().ok()?, minor.map(str::parse).transpose().ok()?))
}

/// The inferences a request asks for: its first input's first dimension
/// (1 without inputs or dimensions).
pub(crate) fn rows_of(inputs: &NamedTensors) -> u64 {
    inputs
        .first()
        .and_then(|(_, t)| t.shape().first().copied())
        .unwrap_or(1)
        .max(0) as u64
}

/// The one log line of a failed request: `warn` for what is the server's
/// fault (internal errors, a model or backend failing, unavailable), `debug`
/// for the client's (bad input, unknown model, limits, deadlines), `info`
/// for unavailable (an unloaded model, a backend down).
pub(crate) fn log_failure(tenant: &str, model: &str, phase: &'static str, e: &ServeError) {
    let class = e.class();
    // One line: a message never spans several; a client's name is clipped
    // in the log as in the answer.
    let message = e.message().replace('\n', " ");
    let model = &*clip(model);
    match class {
        StatusClass::Internal => tracing::warn!(
            tenant, model, phase, reason = e.reason(), code = ?class.grpc(),
            "request failed: {message}"
        ),
        StatusClass::Unavailable => tracing::info!(
            tenant, model, phase, reason = e.reason(), code = ?class.grpc(),
            "request failed: {message}"
        ),
        _ => tracing::debug!(
            tenant, model, phase, reason = e.reason(), code = ?class.grpc(),
            "request failed: {message}"
        ),
    }
}

/// The host form of a stored signature.
///
/// # Errors
/// [`ServeError::Internal`] for a datatype this host does not know.
pub fn host_signature(s: &conduit_registry::Signature) -> Result<Signature, ServeError> {
    let spec = |t: &conduit_registry::TensorSpec| -> Result<TensorSpec, ServeError> {
        Ok(TensorSpec {
            name: t.name.clone(),
            dtype: t.datatype.parse::<DataType>().map_err(|_| {
                ServeError::Internal(format!("stored datatype `{}` is unknown", t.datatype))
            })?,
            shape: t.shape.clone(),
        })
    };
    Ok(Signature {
        inputs: s.inputs.iter().map(spec).collect::<Result<_, _>>()?,
        outputs: s.outputs.iter().map(spec).collect::<Result<_, _>>()?,
    })
}

pub(crate) fn list(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks request tensors against a signature: every input present once,
/// none unknown, datatypes equal, ranks equal, fixed dimensions equal.
pub(crate) fn check_request(
    model: &str,
    signature: &Signature,
    inputs: &NamedTensors,
) -> Result<(), ServeError> {
    let mut seen = HashSet::new();
    for (name, tensor) in inputs {
        let shown = || clip(name);
        if !seen.insert(name.as_str()) {
            return Err(ServeError::InvalidInput(format!(
                "input `{}` is given twice",
                shown()
            )));
        }
        let Some(spec) = signature.inputs.iter().find(|s| &s.name == name) else {
            return Err(ServeError::InvalidInput(format!(
                "model `{model}` has no input `{}`; its inputs are {}",
                shown(),
                list(&signature.inputs)
            )));
        };
        if tensor.dtype() != spec.dtype {
            return Err(ServeError::InvalidInput(format!(
                "input `{}` of model `{model}` must be {}, got {}",
                shown(),
                spec.dtype,
                tensor.dtype()
            )));
        }
        if !spec.admits_shape(tensor.shape()) {
            return Err(ServeError::InvalidInput(format!(
                "input `{}` of model `{model}` has shape {:?}, expected {:?} (-1: any)",
                shown(),
                tensor.shape(),
                spec.shape
            )));
        }
    }
    if let Some(missing) = signature
        .inputs
        .iter()
        .find(|s| !seen.contains(s.name.as_str()))
    {
        return Err(ServeError::InvalidInput(format!(
            "model `{model}` needs input `{}` ({} {:?}), which the request lacks",
            missing.name, missing.dtype, missing.shape
        )));
    }
    Ok(())
}

/// Refuses an answer over `max` bytes. Every output counts in full, with
/// its name and shape: a component can return many views of one tensor, and
/// each is encoded (and held by the transport) as a copy of its own.
pub(crate) fn check_response_size(
    model: &str,
    outputs: &NamedTensors,
    max: usize,
) -> Result<(), ServeError> {
    let mut total = 0usize;
    for (name, t) in outputs {
        total = total
            .saturating_add(t.byte_size())
            .saturating_add(name.len())
            .saturating_add(std::mem::size_of_val(t.shape()));
    }
    if total > max {
        return Err(ServeError::ResponseTooLarge(format!(
            "model `{model}` produced an answer of {total} bytes ({} outputs), over the response \
             limit of {max} bytes; ask for fewer outputs or rows",
            outputs.len()
        )));
    }
    Ok(())
}

/// The outputs in signature order, only those requested (all when none are).
pub(crate) fn select_outputs(
    model: &str,
    signature: &Signature,
    mut outputs: NamedTensors,
    wanted: &[String],
) -> Result<NamedTensors, ServeError> {
    let mut selected = Vec::with_capacity(signature.outputs.len());
    for spec in &signature.outputs {
        if !wanted.is_empty() && !wanted.contains(&spec.name) {
            continue;
        }
        let Some(i) = outputs.iter().position(|(n, _)| n == &spec.name) else {
            return Err(ServeError::Internal(format!(
                "model `{model}` returned no output `{}`, which its signature declares",
                spec.name
            )));
        };
        selected.push(outputs.swap_remove(i));
    }
    Ok(selected)
}

/// A KServe parameter as a WIT parameter.
pub fn param(name: impl Into<String>, value: ParamValue) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn triton_versions_are_numbers() {
        assert_eq!(triton_version("1"), Some((1, None)));
        assert_eq!(triton_version("12.3"), Some((12, Some(3))));
        for v in ["", "1.0.0", "latest", "v1", "1.", ".1", "blake3:00", "-1"] {
            assert_eq!(triton_version(v), None, "{v}");
        }
    }
}
