//! The runner: what serves KServe v2 / Triton clients, assembled over the
//! sandbox (`conduit-runtime`), the model executors (`conduit-executor`) and
//! a module source (the registry in process, or over gRPC).
//!
//! - [`Node`] builds a runner (the CLI, the tests and the bench all use it);
//!   [`ModuleSource`] is the registry seam, [`RemoteSource`] its gRPC side.
//! - [`Catalog`] turns references into loaded components;
//!   [`RuntimeValidator`] is how the registry validates pushes.
//!
//! [`Serving`] turns `(tenant, model name, version)` into something that
//! runs — a model through its executor's batch queue, a component in the
//! sandbox, or a pipeline of both ([`engine`]) — with per-tenant limits,
//! Triton-style counters and latency and batch-size histograms
//! ([`Metrics`]); [`LoadReport`] is what a runner
//! in a cluster heartbeats. The gRPC ([`grpc`]) and HTTP
//! ([`http`]) front ends only translate; [`SessionService`] serves sessions,
//! whose outputs stay here as values ([`Sessions`]); errors become statuses in one
//! place ([`ServeError`]).

mod catalog;
mod checks;
pub mod encoding;
mod engine;
mod error;
mod generational;
pub mod grpc;
mod held;
mod histograms;
pub mod http;
pub mod json;
mod limits;
mod listen;
mod metrics;
mod node;
mod remote_source;
mod report;
mod serving;
mod session;
mod session_grpc;
mod source;
mod validator;
pub mod wire;

pub use catalog::{Catalog, CatalogError};
use checks::{
    check_request, check_response_size, list, log_failure, request_tensor, rows_of, select_outputs,
    triton_version, unsupported_extensions,
};
pub use checks::{host_signature, param};
pub use error::{ServeError, StatusClass};
use generational::Generational;
pub use held::{HeldBody, HoldGuard, HoldGuardLayer};
pub use histograms::{BATCH_BUCKETS, DURATION_BUCKETS};
pub use limits::{ServingLimits, TenantServing, instant_after};
pub use listen::{ConnectionLimits, Limited, accept_limited, incoming, serve_http, serve_router};
pub use metrics::{Metrics, ModelCounters, ModelKey, RequestTiming};
pub use node::{Node, NodeConfig, NodeError};
pub use remote_source::{RemoteSource, RemoteSourceConfig};
pub use report::{LoadReport, ModuleUse};
pub use serving::{
    EXTENSIONS, IndexEntry, InferRequest, InferResponse, RequestGuard, Serving, ServingConfig,
    executor_key,
};
pub use session::{
    Held, MAX_MODULES, MAX_VALUES, SessionBudget, SessionError, SessionFault, Sessions, StoredValue,
};
pub use session_grpc::{SessionService, tensor_from_proto, tensor_to_proto};
pub use source::{ModuleSource, SourceFuture};
pub use validator::{RuntimeValidator, registry_signature};
