//! Write Conduit components in a few lines.
//!
//! A component implements [`Processor`] and registers it with [`export!`]. The
//! SDK wraps the `conduit:compute` WIT bindings: tensors are host-held handles
//! ([`Tensor`]) read as typed vectors, or data the component made and returns
//! with the call's result; inputs are taken by name ([`Inputs`]),
//! parameters read with defaults ([`Params`]), and every failure is an
//! [`Error`] that reaches the caller as a typed status.
//!
//! ```
//! use conduit_guest::{DataType, Error, Inputs, Outputs, Params, Processor, Signature, Tensor};
//!
//! struct Scale;
//!
//! impl Processor for Scale {
//!     fn describe() -> Signature {
//!         Signature::new()
//!             .input("x", DataType::Fp32, [-1])
//!             .output("y", DataType::Fp32, [-1])
//!     }
//!
//!     fn process(mut inputs: Inputs, params: Params) -> Result<Outputs, Error> {
//!         let x = inputs.take("x")?;
//!         let factor = params.f64_or("factor", 2.0)? as f32;
//!         let y: Vec<f32> = x.to_f32()?.iter().map(|v| v * factor).collect();
//!         Ok(Outputs::new().with("y", Tensor::from_f32(x.shape(), y)?))
//!     }
//! }
//!
//! conduit_guest::export!(Scale);
//! ```
//!
//! Components are built for `wasm32-wasip2`
//! (`cargo build --release --target wasm32-wasip2`); the output is a component.
//! A component that calls [`infer`] targets the `pipeline` world; one that
//! does not is an `op`. Components built with this SDK target
//! `conduit:compute@0.2.0` (one host call to read an input, none to return
//! an output).

#[doc(hidden)]
pub mod bindings {
    //! The generated WIT bindings (used by [`export!`](crate::export)).
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        world: "pipeline",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_conduit_world",
        default_bindings_module: "conduit_guest::bindings",
    });
}

mod error;
mod io;
mod log;
mod model;
mod params;
mod signature;
mod tensor;

pub use error::Error;
pub use io::{Inputs, Outputs};
pub use log::{debug, error, info, warn};
pub use model::infer;
pub use params::Params;
pub use signature::{Signature, TensorSpec};
pub use tensor::{DataType, Tensor, TensorData};

/// What a component implements: its signature and its per-request work.
pub trait Processor {
    /// The tensors this component consumes and produces. Called at registration.
    fn describe() -> Signature;

    /// Runs one request.
    ///
    /// # Errors
    /// Whatever [`Error`] the component chooses; it reaches the caller as a typed status.
    fn process(inputs: Inputs, params: Params) -> Result<Outputs, Error>;
}

/// Exports a [`Processor`] implementation as the component's `conduit:compute/processor`.
///
/// Use once per component crate, at the crate root: `conduit_guest::export!(MyOp);`.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[doc(hidden)]
        struct __ConduitProcessor;

        impl $crate::bindings::exports::conduit::compute::processor::Guest for __ConduitProcessor {
            fn describe() -> $crate::bindings::conduit::compute::types::Signature {
                $crate::__private::describe::<$ty>()
            }

            fn process(
                inputs: ::std::vec::Vec<$crate::bindings::conduit::compute::types::NamedTensor>,
                params: ::std::vec::Vec<$crate::bindings::conduit::compute::types::Param>,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::bindings::conduit::compute::types::NamedValue>,
                $crate::bindings::conduit::compute::types::Error,
            > {
                $crate::__private::process::<$ty>(inputs, params)
            }
        }

        $crate::bindings::__export_conduit_world!(
            __ConduitProcessor with_types_in $crate::bindings
        );
    };
}

#[doc(hidden)]
pub mod __private {
    //! Glue called by [`export!`](crate::export); not a stable API.
    use crate::bindings::conduit::compute::types as wit;
    use crate::{Inputs, Params, Processor};

    /// Calls `P::describe` and converts it to the WIT record.
    pub fn describe<P: Processor>() -> wit::Signature {
        P::describe().into_wit()
    }

    /// Calls `P::process` with the SDK's wrappers.
    pub fn process<P: Processor>(
        inputs: Vec<wit::NamedTensor>,
        params: Vec<wit::Param>,
    ) -> Result<Vec<wit::NamedValue>, wit::Error> {
        P::process(Inputs::from_wit(inputs), Params::from_wit(params))
            .map(|outputs| outputs.into_wit())
            .map_err(|e| e.into_wit())
    }
}
