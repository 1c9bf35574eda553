//! The one `bindgen!` site: host bindings for both versions of the
//! `conduit:compute` worlds a component may target.
//!
//! Each is generated for the `pipeline` world, a superset of `op`: an `op`
//! component simply never calls the `model` import. Tensors are the host's
//! [`conduit_types::Tensor`] in both, so one resource table serves either.
#![allow(missing_docs)]

/// `conduit:compute@0.1.0` (`wit/0.1/`): still served, for components built
/// before 0.2.
pub mod v1 {
    wasmtime::component::bindgen!({
        world: "pipeline",
        path: "../../wit/0.1",
        imports: {
            "conduit:compute/model.infer": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "conduit:compute/types.tensor": conduit_types::Tensor,
        },
    });
}

/// `conduit:compute@0.2.0` (`wit/`): the current contract.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "pipeline",
        path: "../../wit",
        imports: {
            "conduit:compute/model.infer": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "conduit:compute/types.tensor": conduit_types::Tensor,
        },
    });
}

pub use v2::conduit::compute::types::{Param, ParamValue};
