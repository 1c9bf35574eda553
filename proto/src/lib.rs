//! Conduit's wire contracts, generated from the `.proto` files beside this
//! crate (`proto/conduit/...`) at build time by a pure-Rust protobuf compiler.
//!
//! - [`registry::v1`]: the registry's control plane — streamed blob upload,
//!   manifests, resolve, list, tags, delete, garbage collection, tenants.
//! - [`session::v1`]: sessions — open, run on tensors or remote values,
//!   fetch, release, close — between a client and one runner.
//! - [`inference`]: the data plane — KServe v2 (Open Inference Protocol)
//!   `GRPCInferenceService` with Triton's extensions, wire-compatible with
//!   tritonclient and perf_analyzer (`proto/inference/...`).
//!
//! [`ClientFaultLayer`] goes on every Conduit gRPC server: a request whose
//! framing is broken or whose message does not decode answers
//! INVALID_ARGUMENT (tonic says INTERNAL), and no status message passes
//! the cap of [`conduit_types::MAX_MESSAGE_BYTES`].

mod faults;

pub use faults::{ClientFaultLayer, ClientFaults};

/// The registry control plane.
#[allow(missing_docs)] // generated code; the .proto files carry the docs
pub mod registry {
    /// Version 1 of the registry API (`conduit.registry.v1`).
    pub mod v1 {
        tonic::include_proto!("conduit.registry.v1");
    }
}

/// Sessions: a client's point-to-point path to a runner, with remote values.
#[allow(missing_docs)] // generated code; the .proto files carry the docs
pub mod session {
    /// Version 1 of the session API (`conduit.session.v1`).
    pub mod v1 {
        tonic::include_proto!("conduit.session.v1");
    }
}

/// The KServe v2 / Triton data plane (`inference`): the
/// `GRPCInferenceService` client and server, the infer, metadata, statistics
/// and repository messages, and Triton's `ModelConfig`.
///
/// Raw tensor payloads (`raw_input_contents`, `raw_output_contents`) are
/// [`prost::bytes::Bytes`]; calls a server does not override answer
/// UNIMPLEMENTED.
#[allow(missing_docs)] // generated code; the .proto files carry the docs
pub mod inference {
    tonic::include_proto!("inference");
}
