//! What a component declares it consumes and produces.

use crate::DataType;
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

impl TensorSpec {
    /// Whether a tensor of this `shape` fits the declared one: same rank,
    /// every fixed dimension equal (`-1` admits any size).
    pub fn admits_shape(&self, shape: &[i64]) -> bool {
        shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .all(|(&got, &want)| want < 0 || got == want)
    }
}

/// The inputs and outputs of a component, as its `describe()` states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// Declared inputs.
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs.
    pub outputs: Vec<TensorSpec>,
}

/// The most tensors a signature may declare on each side (inputs, outputs).
pub const MAX_SIGNATURE_TENSORS: usize = 256;
/// The longest tensor name, in bytes.
pub const MAX_TENSOR_NAME_BYTES: usize = 128;

impl Signature {
    /// Checks what a signature may declare: at most
    /// [`MAX_SIGNATURE_TENSORS`] inputs and outputs, names of 1 to
    /// [`MAX_TENSOR_NAME_BYTES`] bytes without control characters, unique on
    /// each side, ranks up to [`MAX_RANK`](crate::MAX_RANK), dimensions ≥ -1.
    /// A signature is stored and read on every request: it must stay small.
    ///
    /// # Errors
    /// A one-line reason naming the first offending tensor.
    pub fn check_bounds(&self) -> Result<(), String> {
        for (side, specs) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            if specs.len() > MAX_SIGNATURE_TENSORS {
                return Err(format!(
                    "declares {} {side}; the limit is {MAX_SIGNATURE_TENSORS}",
                    specs.len()
                ));
            }
            for (i, spec) in specs.iter().enumerate() {
                let shown = crate::escape_controls(&spec.name);
                let shown: String = shown.chars().take(64).collect();
                if spec.name.is_empty() || spec.name.len() > MAX_TENSOR_NAME_BYTES {
                    return Err(format!(
                        "{side} tensor `{shown}` has a name of {} bytes; names are 1 to \
                         {MAX_TENSOR_NAME_BYTES} bytes",
                        spec.name.len()
                    ));
                }
                if spec.name.chars().any(char::is_control) {
                    return Err(format!(
                        "{side} tensor `{shown}` has control characters in its name"
                    ));
                }
                if specs[..i].iter().any(|s| s.name == spec.name) {
                    return Err(format!("{side} tensor `{shown}` is declared twice"));
                }
                if spec.shape.len() > crate::MAX_RANK {
                    return Err(format!(
                        "{side} tensor `{shown}` has rank {}; the limit is {}",
                        spec.shape.len(),
                        crate::MAX_RANK
                    ));
                }
                if spec.shape.iter().any(|&d| d < -1) {
                    return Err(format!(
                        "{side} tensor `{shown}` has a dimension below -1: {:?}",
                        spec.shape
                    ));
                }
            }
        }
        Ok(())
    }
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

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}{:?}", self.name, self.dtype, self.shape)
    }
}
