//! Native model executors beside the components.
//!
//! The seam is small: a [`Backend`] loads model bytes into a [`LoadedModel`],
//! which runs one batch of named tensors on the thread that owns it. An
//! [`Executor`] serves one loaded model: `instances` worker threads, each
//! with its own [`LoadedModel`], fed by one bounded queue, forming dynamic
//! batches. [`ModelCache`] keeps executors by digest within a memory budget.

mod backends;
mod batch;
mod cache;
mod config;
mod error;
mod onnx;
#[cfg(feature = "ort")]
mod ort;
mod queue;
mod remote;
mod rows;
#[cfg(feature = "tract")]
mod tract;

pub use backends::Backends;
pub use cache::{CacheStats, ModelCache};
pub use config::{BackendKind, BatchConfig, Device, ModelConfig, OptLevel};
pub use error::ExecutorError;
pub use onnx::{ModelParseError, onnx_signature};
#[cfg(feature = "ort")]
pub use ort::OrtBackend;
pub use queue::{Executor, ExecutorStats, RunTiming};
pub use remote::RemoteBackend;
#[cfg(feature = "tract")]
pub use tract::TractBackend;

use conduit_types::{NamedTensors, Signature};

/// A model loaded by a backend, owned by one worker thread.
pub trait LoadedModel: Send {
    /// Runs one batch: every input has the batch on its first dimension, and
    /// so must every output.
    ///
    /// # Errors
    /// [`ExecutorError::Backend`] when the engine fails on these inputs.
    fn run(&mut self, inputs: &NamedTensors) -> Result<NamedTensors, ExecutorError>;

    /// Whether it can still serve (a remote model's server may go away).
    ///
    /// # Errors
    /// [`ExecutorError::Unavailable`] saying why not.
    fn health(&self) -> Result<(), ExecutorError> {
        Ok(())
    }

    /// Whether a short run may happen on the caller's thread (an async
    /// runtime's worker) instead of this model's own: false for a model
    /// that blocks on I/O or on a runtime of its own.
    fn may_run_inline(&self) -> bool {
        true
    }
}

/// An inference engine: ONNX Runtime, tract, a remote server.
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and errors (`ort`, `tract`, `remote`).
    fn name(&self) -> &'static str;

    /// Loads `bytes` for one worker thread. `signature` is the model's
    /// declared inputs and outputs.
    ///
    /// # Errors
    /// [`ExecutorError::Load`] when the model does not load;
    /// [`ExecutorError::Unavailable`] when the configured device cannot be used.
    fn load(
        &self,
        bytes: &[u8],
        signature: &Signature,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, ExecutorError>;
}
