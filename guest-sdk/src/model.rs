//! Calling models from a `pipeline` component.

use crate::bindings::conduit::compute::model;
use crate::{Error, Inputs, Outputs};

/// Runs the model `name` (`name`, `name@version`, `name:tag` or a digest) on `inputs`.
///
/// Host-held tensors are passed as handles and the results come back as
/// handles: nothing is copied into or out of the component unless it made
/// the inputs or reads the results. Using this makes the component a
/// `pipeline`-world component.
///
/// # Errors
/// The host's [`Error`]: `NotFound` for an unknown model, `InvalidInput` for
/// tensors that do not match its signature, `ResourceExhausted` when its queue is full.
pub fn infer(name: &str, inputs: Outputs) -> Result<Inputs, Error> {
    model::infer(name, inputs.into_wit())
        .map(Inputs::from_wit)
        .map_err(Error::from)
}
