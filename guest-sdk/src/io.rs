//! Named tensor collections: what `process` receives and returns.

use crate::bindings::conduit::compute::types as wit;
use crate::{Error, Tensor};

/// Named tensors handed to a component (a request's inputs, or a model's outputs).
#[derive(Debug, Default)]
pub struct Inputs {
    tensors: Vec<(String, Tensor)>,
}

impl Inputs {
    pub(crate) fn from_wit(tensors: Vec<wit::NamedTensor>) -> Self {
        Self {
            tensors: tensors
                .into_iter()
                .map(|t| (t.name, Tensor::from_host(t.dtype, t.shape, t.tensor)))
                .collect(),
        }
    }

    /// Removes and returns the tensor called `name`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the tensor when it is absent.
    pub fn take(&mut self, name: &str) -> Result<Tensor, Error> {
        match self.tensors.iter().position(|(n, _)| n == name) {
            Some(i) => Ok(self.tensors.swap_remove(i).1),
            None => Err(Error::invalid_input(format!(
                "missing input tensor `{name}`"
            ))),
        }
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The names of the tensors not yet taken.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// How many tensors are left.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensors are left.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

impl IntoIterator for Inputs {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;

    fn into_iter(self) -> Self::IntoIter {
        self.tensors.into_iter()
    }
}

/// Named tensors a component returns (or passes to a model with [`crate::infer`]).
#[derive(Debug, Default)]
pub struct Outputs {
    tensors: Vec<(String, Tensor)>,
}

impl Outputs {
    /// No tensors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tensor` as `name` (builder form).
    pub fn with(mut self, name: impl Into<String>, tensor: Tensor) -> Self {
        self.push(name, tensor);
        self
    }

    /// Adds `tensor` as `name`.
    pub fn push(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.push((name.into(), tensor));
    }

    /// How many tensors were added.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Handles pass back as handles; tensors made here cross as data, with
    /// the call's result (no host call each).
    pub(crate) fn into_wit(self) -> Vec<wit::NamedValue> {
        self.tensors
            .into_iter()
            .map(|(name, tensor)| wit::NamedValue {
                name,
                value: tensor.into_wit(),
            })
            .collect()
    }
}
