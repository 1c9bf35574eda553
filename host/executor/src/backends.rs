//! The backends a runner has, chosen per model from its executor hints.

use super::{Backend, BackendKind, BatchConfig, Device, ExecutorError, ModelConfig};
use conduit_registry::ExecutorHints;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The model backends available in this process.
#[derive(Clone, Default)]
pub struct Backends {
    ort: Option<Arc<dyn Backend>>,
    ort_error: Option<String>,
    tract: Option<Arc<dyn Backend>>,
    remote: Option<Arc<dyn Backend>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("ort", &self.ort.is_some())
            .field("tract", &self.tract.is_some())
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

impl Backends {
    /// Every backend this build has: ONNX Runtime when its library loads
    /// (from `ort_library`, else `$ORT_DYLIB_PATH`), tract when built with
    /// the `tract` feature. A missing ONNX Runtime is not an error here: its
    /// reason is reported when a model asks for it.
    pub fn detect(ort_library: Option<PathBuf>) -> Self {
        let mut b = Self::default();
        #[cfg(feature = "ort")]
        match super::OrtBackend::new(ort_library) {
            Ok(ort) => b.ort = Some(Arc::new(ort)),
            Err(e) => b.ort_error = Some(e.to_string()),
        }
        #[cfg(not(feature = "ort"))]
        {
            let _ = ort_library;
            b.ort_error = Some("this build has no ONNX Runtime backend (feature `ort`)".into());
        }
        #[cfg(feature = "tract")]
        {
            b.tract = Some(Arc::new(super::TractBackend::new()));
        }
        b
    }

    /// Adds the remote backend: models with `--backend remote` are served by
    /// the KServe v2 server (sidecar) at `url`, under their own name.
    pub fn with_remote(mut self, url: impl Into<String>) -> Self {
        self.remote = Some(Arc::new(super::RemoteBackend::new(url)));
        self
    }

    /// The backend for `kind`.
    ///
    /// # Errors
    /// [`ExecutorError::Unavailable`] saying why it is not available.
    pub fn get(&self, kind: BackendKind) -> Result<Arc<dyn Backend>, ExecutorError> {
        match kind {
            BackendKind::Ort => self.ort.clone().ok_or_else(|| {
                ExecutorError::Unavailable(
                    self.ort_error
                        .clone()
                        .unwrap_or_else(|| "ONNX Runtime is not available".into()),
                )
            }),
            BackendKind::Tract => self.tract.clone().ok_or_else(|| {
                ExecutorError::Unavailable(
                    "this build has no tract backend (build with the `tract` feature)".into(),
                )
            }),
            BackendKind::Remote => self.remote.clone().ok_or_else(|| {
                ExecutorError::Unavailable(
                    "the remote backend needs a sidecar address (--sidecar URL on this runner)"
                        .into(),
                )
            }),
        }
    }

    /// The default backend: ONNX Runtime when it loaded, else tract.
    pub fn default_kind(&self) -> BackendKind {
        if self.ort.is_none() && self.tract.is_some() {
            BackendKind::Tract
        } else {
            BackendKind::Ort
        }
    }

    /// The serving configuration a model's executor hints ask for.
    ///
    /// # Errors
    /// [`ExecutorError::InvalidInput`] for an unknown backend or device, or
    /// a hint out of the range registration accepts (a manifest stored
    /// before the registry checked them must not spawn 2^32 threads here).
    pub fn config(&self, name: &str, hints: &ExecutorHints) -> Result<ModelConfig, ExecutorError> {
        hints.check().map_err(ExecutorError::InvalidInput)?;
        let defaults = ModelConfig::default();
        let batch = BatchConfig::default();
        Ok(ModelConfig {
            name: name.to_string(),
            backend: match hints.backend.as_str() {
                "" => self.default_kind(),
                b => b.parse()?,
            },
            device: match hints.device.as_str() {
                "" => Device::Cpu,
                d => d.parse()?,
            },
            batching: BatchConfig {
                max_batch_size: match hints.max_batch_size {
                    0 => batch.max_batch_size,
                    n => n as usize,
                },
                max_queue_delay: match hints.max_queue_delay_us {
                    0 => batch.max_queue_delay,
                    us => Duration::from_micros(us),
                },
                preferred_batch_sizes: hints
                    .preferred_batch_sizes
                    .iter()
                    .map(|&n| n as usize)
                    .collect(),
            },
            instances: match hints.instances {
                0 => defaults.instances,
                n => n as usize,
            },
            ..defaults
        })
    }
}
