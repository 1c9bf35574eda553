//! The runtime's side of the registry's validation seam: a component must
//! compile with this engine and target a Conduit world; a model must parse.

use conduit_executor::onnx_signature;
use conduit_executor::{Backends, Executor};
use conduit_registry::{Candidate, Kind, PipelineDef, ValidateFuture, Validated, Validator};
use conduit_runtime::Runtime;
use conduit_types::{Signature, TensorSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Validates pushes by loading components into a [`Runtime`] (which also
/// precompiles them into its disk cache, so the first call is fast) and
/// models into an executor of the backend their hints name.
#[derive(Debug, Clone)]
pub struct RuntimeValidator {
    runtime: Runtime,
    backends: Backends,
    pushes: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// Validations (compiling, `describe()`, loading a model) one tenant may
/// run at once; its further pushes wait up to [`PUSH_WAIT`] for a turn.
/// Pushes cost CPU and memory: one tenant's burst must not take them from
/// the others or from serving.
pub const MAX_VALIDATIONS_PER_TENANT: usize = 2;
/// How long a push waits for one of its tenant's validation turns.
pub const PUSH_WAIT: Duration = Duration::from_secs(60);

impl RuntimeValidator {
    /// Validates with `runtime` (components stay loaded in it) and
    /// `backends` (a model is loaded once to validate, then dropped; runners
    /// load models lazily on first use).
    pub fn new(runtime: Runtime, backends: Backends) -> Self {
        Self {
            runtime,
            backends,
            pushes: Arc::default(),
        }
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
    /// Removes the component's compiled artifact (memory and disk cache).
    fn forget(&self, digest: &conduit_registry::Digest) {
        let freed = self.runtime.forget(digest);
        tracing::debug!(%digest, freed, "compiled artifact forgotten");
    }

    fn derived_bytes(&self, digest: &conduit_registry::Digest) -> u64 {
        self.runtime.compiled_bytes(digest)
    }

    fn validate<'a>(&'a self, candidate: Candidate<'a>) -> ValidateFuture<'a> {
        Box::pin(async move {
            let turns = self
                .pushes
                .lock()
                .expect("push lock")
                .entry(candidate.tenant.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(MAX_VALIDATIONS_PER_TENANT)))
                .clone();
            let _turn = tokio::time::timeout(PUSH_WAIT, turns.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| {
                    format!(
                        "tenant `{}` has {MAX_VALIDATIONS_PER_TENANT} pushes being validated and \
                         none finished within {} s; retry later",
                        candidate.tenant,
                        PUSH_WAIT.as_secs()
                    )
                })?;
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
                    signature
                        .check_bounds()
                        .map_err(|e| format!("the model's signature {e}"))?;
                    let config = self
                        .backends
                        .config("validation", candidate.executor)
                        .map_err(|e| e.to_string())?;
                    let backend = self
                        .backends
                        .get(config.backend)
                        .map_err(|e| e.to_string())?;
                    let (bytes, sig) = (candidate.bytes.clone(), signature.clone());
                    let config = conduit_executor::ModelConfig {
                        instances: 1,
                        ..config
                    };
                    tokio::task::spawn_blocking(move || {
                        Executor::start(backend, &bytes, sig, config)
                    })
                    .await
                    .map_err(|e| format!("model load task failed: {e}"))?
                    .map_err(|e| e.to_string())?;
                    Ok(Validated {
                        signature: registry_signature(&signature),
                        world: String::new(),
                    })
                }
                // The registry resolved and type-checked it; what arrives is
                // the resolved form.
                Kind::Pipeline => {
                    let def = PipelineDef::from_bytes(&candidate.bytes)?;
                    Ok(Validated {
                        signature: def.signature(),
                        world: String::new(),
                    })
                }
            }
        })
    }
}
