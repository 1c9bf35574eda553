//! The validation seam: the registry defines it, the runtime implements it,
//! so the registry never links wasmtime or an executor.

use crate::{Digest, ExecutorHints, Kind, Signature};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// What validation learned about a module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    /// Its inputs and outputs.
    pub signature: Signature,
    /// For components: the world they target (`op`, `pipeline`).
    pub world: String,
}

/// The module to validate.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Tenant pushing it.
    pub tenant: &'a str,
    /// What it claims to be.
    pub kind: Kind,
    /// Its bytes.
    pub bytes: Bytes,
    /// Executor hints (models).
    pub executor: &'a ExecutorHints,
}

/// The future [`Validator::validate`] returns.
pub type ValidateFuture<'a> = Pin<Box<dyn Future<Output = Result<Validated, String>> + Send + 'a>>;

/// Checks a module before the registry stores its manifest: a component must
/// compile and export the processor interface of a known world; a model must
/// load in an executor. The error is a one-line reason shown to the pusher.
pub trait Validator: Send + Sync + 'static {
    /// Validates `candidate`, returning its signature or why it is rejected.
    fn validate<'a>(&'a self, candidate: Candidate<'a>) -> ValidateFuture<'a>;

    /// Drops what validation derived from the blob `digest` (a component's
    /// compiled artifact): the registry calls it when no manifest names the
    /// digest any more — the module was rejected or deleted, or its blob
    /// collected. Derived files are caches, so forgetting too much only costs
    /// a recompilation. The default keeps nothing, so forgets nothing.
    fn forget(&self, digest: &Digest) {
        let _ = digest;
    }

    /// Bytes of what validation derived from `digest` and keeps (compiled
    /// artifacts on disk), reported in a tenant's usage. Default: 0.
    fn derived_bytes(&self, digest: &Digest) -> u64 {
        let _ = digest;
        0
    }
}
