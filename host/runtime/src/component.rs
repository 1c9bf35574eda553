//! A compiled, validated component, ready to instantiate.

use crate::bindings::PipelinePre;
use crate::state::CallState;
use crate::{Digest, GuestError, NamedTensors, RuntimeError, Signature, World};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;

/// The interface every component must export.
pub(crate) const PROCESSOR_EXPORT: &str = "conduit:compute/processor@0.1.0";
const CONDUIT_PREFIX: &str = "conduit:compute/";
const CONDUIT_VERSION: &str = "@0.1.";
const MODEL_IMPORT: &str = "conduit:compute/model@0.1.";

/// A loaded component: compiled for this engine, linked, its signature read.
///
/// Cheap to share; the runtime keeps one per digest.
pub struct Component {
    pub(crate) digest: Digest,
    pub(crate) world: World,
    pub(crate) signature: Signature,
    pub(crate) pre: PipelinePre<CallState>,
    pub(crate) label: Arc<str>,
}

impl Component {
    /// The blake3 digest of the component's bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The world it targets.
    pub fn world(&self) -> World {
        self.world
    }

    /// Its `describe()` signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// `outputs` as `describe()` declared them: each name declared and
    /// returned once, with the declared dtype, rank and fixed dimensions.
    /// The data plane checks every component step with this (inputs are
    /// checked against the same signature before the call).
    ///
    /// # Errors
    /// [`RuntimeError::Guest`] (an internal error of the component) naming
    /// the first output that does not fit.
    pub fn check_outputs(&self, outputs: NamedTensors) -> Result<NamedTensors, RuntimeError> {
        let wrong = |m: String| Err(RuntimeError::Guest(GuestError::Internal(m)));
        for (i, (name, tensor)) in outputs.iter().enumerate() {
            if outputs[..i].iter().any(|(n, _)| n == name) {
                return wrong(format!("output `{name}` was returned twice"));
            }
            let Some(spec) = self.signature.outputs.iter().find(|s| &s.name == name) else {
                return wrong(format!(
                    "output `{name}` is not among the outputs describe() declares"
                ));
            };
            let fits = tensor.dtype() == spec.dtype && spec.admits_shape(tensor.shape());
            if !fits {
                return wrong(format!(
                    "output `{name}` is {}{:?}, but describe() declares {}{:?} (-1: any)",
                    tensor.dtype(),
                    tensor.shape(),
                    spec.dtype,
                    spec.shape
                ));
            }
        }
        Ok(outputs)
    }
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("digest", &self.digest)
            .field("world", &self.world)
            .field("signature", &self.signature)
            .finish()
    }
}

/// Checks a compiled component's imports and exports against the Conduit worlds.
///
/// # Errors
/// [`RuntimeError::WrongWorld`] when the processor export is missing or the
/// component imports an interface that is neither WASI nor `conduit:compute@0.1`.
pub(crate) fn classify_world(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Result<World, RuntimeError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports.iter().any(|e| e == PROCESSOR_EXPORT) {
        return Err(RuntimeError::WrongWorld(format!(
            "it does not export `{PROCESSOR_EXPORT}` (exports: [{}])",
            exports.join(", ")
        )));
    }
    let mut world = World::Op;
    for (name, item) in ty.imports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(RuntimeError::WrongWorld(format!(
                "it imports `{name}`, which is not an interface"
            )));
        }
        if name.starts_with(MODEL_IMPORT) {
            world = World::Pipeline;
        } else if name.starts_with(CONDUIT_PREFIX) {
            if !name.contains(CONDUIT_VERSION) {
                return Err(RuntimeError::WrongWorld(format!(
                    "it imports `{name}`; this host provides conduit:compute@0.1"
                )));
            }
        } else if !name.starts_with("wasi:") {
            return Err(RuntimeError::WrongWorld(format!(
                "it imports `{name}`, which Conduit does not provide"
            )));
        }
    }
    Ok(world)
}
