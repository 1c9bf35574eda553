//! The one `bindgen!` site: host bindings for the `conduit:compute` worlds.
//!
//! Generated for the `pipeline` world, a superset of `op`: an `op` component
//! simply never calls the `model` import.
#![allow(missing_docs)]

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

pub use conduit::compute::types::{Error as WitError, Param, ParamValue};
