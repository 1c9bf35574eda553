//! Conduit's wire contracts, generated from the `.proto` files beside this
//! crate (`proto/conduit/...`) at build time by a pure-Rust protobuf compiler.
//!
//! - [`registry::v1`]: the registry's control plane — streamed blob upload,
//!   manifests, resolve, list, tags, delete, garbage collection, tenants.
//! - [`inference`]: the data plane — KServe v2 (Open Inference Protocol)
//!   `GRPCInferenceService` with Triton's extensions, wire-compatible with
//!   tritonclient and perf_analyzer (`proto/inference/...`).

#![allow(missing_docs)] // generated code; the .proto files carry the docs

/// The registry control plane.
pub mod registry {
    /// Version 1 of the registry API (`conduit.registry.v1`).
    pub mod v1 {
        tonic::include_proto!("conduit.registry.v1");
    }
}

/// The KServe v2 / Triton data plane (`inference`): the
/// `GRPCInferenceService` client and server, the infer, metadata, statistics
/// and repository messages, and Triton's `ModelConfig`.
///
/// Raw tensor payloads (`raw_input_contents`, `raw_output_contents`) are
/// [`prost::bytes::Bytes`]; calls a server does not override answer
/// UNIMPLEMENTED.
pub mod inference {
    tonic::include_proto!("inference");
}
