//! The runtime's side of the registry's validation seam: a component must
//! compile with this engine and target a Conduit world; a model must parse.

use crate::{Runtime, Signature, TensorSpec, onnx_signature};
use conduit_registry::{Candidate, Kind, ValidateFuture, Validated, Validator};

/// Validates pushes by loading components into a [`Runtime`] (which also
/// precompiles them into its disk cache, so the first call is fast) and by
/// reading models' ONNX signatures.
#[derive(Debug, Clone)]
pub struct RuntimeValidator {
    runtime: Runtime,
}

impl RuntimeValidator {
    /// Validates with `runtime`; components stay loaded in it.
    pub fn new(runtime: Runtime) -> Self {
        Self { runtime }
    }
}

/// The registry's form of a signature.
pub fn registry_signature(s: &Signature) -> conduit_registry::Signature {
    let spec = |t: &TensorSpec| conduit_registry::TensorSpec {
        name: t.name.clone(),
        datatype: t.dtype.as_str().to_string(),
        shape: t.shape.clone(),
    };
    conduit_registry::Signature {
        inputs: s.inputs.iter().map(spec).collect(),
        outputs: s.outputs.iter().map(spec).collect(),
    }
}

impl Validator for RuntimeValidator {
    fn validate<'a>(&'a self, candidate: Candidate<'a>) -> ValidateFuture<'a> {
        Box::pin(async move {
            match candidate.kind {
                Kind::Component => {
                    let component = self
                        .runtime
                        .load(&candidate.bytes)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Validated {
                        signature: registry_signature(component.signature()),
                        world: component.world().to_string(),
                    })
                }
                Kind::Model => {
                    let format = candidate.executor.format.as_str();
                    if !matches!(format, "" | "onnx") {
                        return Err(format!(
                            "model format `{format}` is not supported (onnx is)"
                        ));
                    }
                    let signature = onnx_signature(&candidate.bytes).map_err(|e| e.to_string())?;
                    Ok(Validated {
                        signature: registry_signature(&signature),
                        world: String::new(),
                    })
                }
                Kind::Pipeline => {
                    Err("this runner cannot type-check pipeline manifests yet".into())
                }
            }
        })
    }
}
