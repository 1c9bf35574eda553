//! What a component declares it consumes and produces.

use crate::DataType;
use crate::bindings::conduit::compute::types as wit;
use crate::convert::from_wit_dtype;
use std::fmt;

/// One declared input or output tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
}

/// The inputs and outputs of a component, as its `describe()` states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// Declared inputs.
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs.
    pub outputs: Vec<TensorSpec>,
}

/// Which Conduit world a component targets, judged from its imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Tensors in, tensors out; imports only types and logging.
    Op,
    /// Also imports `conduit:compute/model` to call models.
    Pipeline,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Op => "op",
            Self::Pipeline => "pipeline",
        })
    }
}

impl From<wit::TensorSpec> for TensorSpec {
    fn from(s: wit::TensorSpec) -> Self {
        Self {
            name: s.name,
            dtype: from_wit_dtype(s.dtype),
            shape: s.shape,
        }
    }
}

impl From<wit::Signature> for Signature {
    fn from(s: wit::Signature) -> Self {
        Self {
            inputs: s.inputs.into_iter().map(Into::into).collect(),
            outputs: s.outputs.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}{:?}", self.name, self.dtype, self.shape)
    }
}
