//! A compiled, validated component, ready to instantiate.

use crate::abi::{Pre, WitVersion};
use crate::{Digest, GuestError, NamedTensors, RuntimeError, Signature, World};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;

/// The interface every component must export, in one of the served versions.
const PROCESSOR_EXPORT: &str = "conduit:compute/processor@";
const CONDUIT_PREFIX: &str = "conduit:compute/";
const MODEL_IMPORT: &str = "conduit:compute/model@";

/// A loaded component: compiled for this engine, linked, its signature read.
///
/// Cheap to share; the runtime keeps one per digest.
pub struct Component {
    pub(crate) digest: Digest,
    pub(crate) world: World,
    pub(crate) version: WitVersion,
    pub(crate) signature: Signature,
    pub(crate) pre: Pre,
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

    /// The version of `conduit:compute` it was built against.
    pub fn wit_version(&self) -> WitVersion {
        self.version
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
            .field("version", &self.version)
            .field("signature", &self.signature)
            .finish()
    }
}

/// Checks a compiled component's imports and exports against the Conduit
/// worlds of every served version, and says which world and version it targets.
///
/// # Errors
/// [`RuntimeError::WrongWorld`] when the processor export is missing, of a
/// version this host does not serve, or the component imports an interface
/// that is neither WASI nor `conduit:compute` of its export's version.
pub(crate) fn classify_world(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Result<(World, WitVersion), RuntimeError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let served = || {
        WitVersion::ALL
            .iter()
            .map(|v| format!("{PROCESSOR_EXPORT}{v}"))
            .collect::<Vec<_>>()
            .join("` or `")
    };
    let Some(export) = exports.iter().find(|e| e.starts_with(PROCESSOR_EXPORT)) else {
        return Err(RuntimeError::WrongWorld(format!(
            "it does not export `{}` (exports: [{}])",
            served(),
            exports.join(", ")
        )));
    };
    let version = WitVersion::ALL
        .into_iter()
        .find(|v| export[PROCESSOR_EXPORT.len()..] == *v.as_str())
        .ok_or_else(|| {
            RuntimeError::WrongWorld(format!(
                "it exports `{export}`; this host serves `{}`",
                served()
            ))
        })?;
    let mut world = World::Op;
    for (name, item) in ty.imports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(RuntimeError::WrongWorld(format!(
                "it imports `{name}`, which is not an interface"
            )));
        }
        if name.starts_with(CONDUIT_PREFIX) {
            if !name.contains(version.interface_suffix()) {
                return Err(RuntimeError::WrongWorld(format!(
                    "it exports `{export}` but imports `{name}`: a component targets one \
                     version of conduit:compute"
                )));
            }
            if name.starts_with(MODEL_IMPORT) {
                world = World::Pipeline;
            }
        } else if !name.starts_with("wasi:") {
            return Err(RuntimeError::WrongWorld(format!(
                "it imports `{name}`, which Conduit does not provide"
            )));
        }
    }
    Ok((world, version))
}
