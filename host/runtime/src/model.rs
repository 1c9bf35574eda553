//! The seam through which `pipeline` components call models.

use crate::{GuestError, NamedTensors};
use std::future::Future;
use std::pin::Pin;

/// A boxed future returned by [`ModelBackend::infer`].
pub type InferFuture<'a> =
    Pin<Box<dyn Future<Output = Result<NamedTensors, GuestError>> + Send + 'a>>;

/// Runs models on behalf of components that import `conduit:compute/model`.
///
/// The host wires one per call, scoped to the caller's tenant, backed by the
/// same executors and batch queues as declarative pipelines. Errors are
/// returned to the component as its WIT `error`, so it may handle them.
pub trait ModelBackend: Send + Sync {
    /// Runs the model `name` on `inputs`.
    fn infer(&self, name: &str, inputs: NamedTensors) -> InferFuture<'_>;
}
