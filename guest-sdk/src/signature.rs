//! The signature a component states in `describe`.

use crate::DataType;
use crate::bindings::conduit::compute::types as wit;

/// One declared input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
}

/// Builder for the inputs and outputs a component declares.
///
/// ```
/// use conduit_guest::{DataType, Signature};
/// let sig = Signature::new()
///     .input("text", DataType::Bytes, [-1])
///     .output("input_ids", DataType::Int64, [-1, -1]);
/// assert_eq!(sig.inputs[0].name, "text");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    /// Declared inputs.
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// An empty signature.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an input.
    pub fn input(mut self, name: &str, dtype: DataType, shape: impl AsRef<[i64]>) -> Self {
        self.inputs.push(spec(name, dtype, shape.as_ref()));
        self
    }

    /// Declares an output.
    pub fn output(mut self, name: &str, dtype: DataType, shape: impl AsRef<[i64]>) -> Self {
        self.outputs.push(spec(name, dtype, shape.as_ref()));
        self
    }

    pub(crate) fn into_wit(self) -> wit::Signature {
        let conv = |s: TensorSpec| wit::TensorSpec {
            name: s.name,
            dtype: s.dtype,
            shape: s.shape,
        };
        wit::Signature {
            inputs: self.inputs.into_iter().map(conv).collect(),
            outputs: self.outputs.into_iter().map(conv).collect(),
        }
    }
}

fn spec(name: &str, dtype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
    }
}
