//! The Conduit registry: the durable heart of Conduit.
//!
//! - Blobs are stored by their blake3 [`Digest`] in a [`BlobStore`] (the
//!   local directory [`LocalBlobStore`] by default), verified while they
//!   stream in, deduplicated, and written atomically.
//! - Module versions ([`Manifest`]s of kind component, model or pipeline)
//!   live in an embedded transactional store, namespaced per [`Tenant`],
//!   immutable, with tags that move atomically.
//! - Modules are validated before they are stored, through the [`Validator`]
//!   seam the runtime implements (the registry never links wasmtime).
//! - [`RegistryService`] serves it all over gRPC (`conduit.registry.v1`),
//!   each call authenticated by a bearer API key; [`RegistryClient`] is the
//!   client the CLI and runners use.
//!
//! ```no_run
//! use conduit_registry::{Candidate, Registry, RegistryConfig, TenantLimits, ValidateFuture, Validated, Validator};
//! use std::sync::Arc;
//!
//! struct AcceptAll;
//! impl Validator for AcceptAll {
//!     fn validate<'a>(&'a self, _: Candidate<'a>) -> ValidateFuture<'a> {
//!         Box::pin(async { Ok(Validated::default()) })
//!     }
//! }
//!
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RegistryConfig { root: "data".into(), default_limits: TenantLimits::default() };
//! let (registry, bootstrap) = Registry::open(config, Arc::new(AcceptAll))?;
//! if let Some(b) = bootstrap {
//!     println!("admin key for `{}`: {}", b.tenant, b.api_key);
//! }
//! # Ok(()) }
//! ```

mod blob;
mod client;
mod convert;
mod error;
mod local;
mod manifest;
mod names;
mod pipeline;
mod registry;
mod service;
mod store;
mod tenant;
mod validate;

pub use blob::{BlobError, BlobInfo, BlobStore, BlobWriter, Committed};
pub use client::{ClientError, PushProgress, RegistryClient};
pub use conduit_types::{Digest, DigestParseError};
pub use error::RegistryError;
pub use local::LocalBlobStore;
pub use manifest::{ExecutorHints, Kind, Manifest, Signature, TensorSpec, hint_limits};
pub use names::{
    Reference, check_name, check_tag, check_tenant, check_user_tag, parse_version, shown,
    split_tenant,
};
pub use pipeline::{ParamValue, PipelineDef, PipelineOutput, Step, StepInput, Wire};
pub use registry::{
    Bootstrap, GcReport, ListQuery, NewManifest, Registry, RegistryConfig, Upload, Usage,
};
pub use service::{RegistryService, serve};
pub use tenant::{Tenant, TenantLimits, bearer_key};
/// gRPC status codes, as [`ClientError::code`] reports them.
pub use tonic::Code;
pub use validate::{Candidate, ValidateFuture, Validated, Validator};
