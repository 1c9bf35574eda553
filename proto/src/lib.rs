//! Conduit's wire contracts, generated from the `.proto` files beside this
//! crate (`proto/conduit/...`) at build time by a pure-Rust protobuf compiler.
//!
//! - [`registry::v1`]: the registry's control plane — streamed blob upload,
//!   manifests, resolve, list, tags, delete, garbage collection, tenants.

#![allow(missing_docs)] // generated code; the .proto files carry the docs

/// The registry control plane.
pub mod registry {
    /// Version 1 of the registry API (`conduit.registry.v1`).
    pub mod v1 {
        tonic::include_proto!("conduit.registry.v1");
    }
}
