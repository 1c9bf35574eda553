//! The error a component returns instead of outputs.

use crate::bindings::conduit::compute::types as wit;
use std::fmt;

/// A structured component error; each kind maps to its own status code at the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request's tensors or parameters are wrong.
    InvalidInput(String),
    /// The request asks for something this component does not support.
    Unsupported(String),
    /// A referenced tensor, parameter or model does not exist.
    NotFound(String),
    /// A limit was reached; retrying later may succeed.
    ResourceExhausted(String),
    /// Anything else.
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidInput`] with `msg`.
    pub fn invalid_input(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    /// An [`Error::Unsupported`] with `msg`.
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::Unsupported(msg.into())
    }

    /// An [`Error::NotFound`] with `msg`.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    /// An [`Error::Internal`] with `msg`.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m)
            | Self::Unsupported(m)
            | Self::NotFound(m)
            | Self::ResourceExhausted(m)
            | Self::Internal(m) => m,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Error {
        match self {
            Self::InvalidInput(m) => wit::Error::InvalidInput(m),
            Self::Unsupported(m) => wit::Error::Unsupported(m),
            Self::NotFound(m) => wit::Error::NotFound(m),
            Self::ResourceExhausted(m) => wit::Error::ResourceExhausted(m),
            Self::Internal(m) => wit::Error::Internal(m),
        }
    }
}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::InvalidInput(m) => Self::InvalidInput(m),
            wit::Error::Unsupported(m) => Self::Unsupported(m),
            wit::Error::NotFound(m) => Self::NotFound(m),
            wit::Error::ResourceExhausted(m) => Self::ResourceExhausted(m),
            wit::Error::Internal(m) => Self::Internal(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::InvalidInput(_) => "invalid input",
            Self::Unsupported(_) => "unsupported",
            Self::NotFound(_) => "not found",
            Self::ResourceExhausted(_) => "resource exhausted",
            Self::Internal(_) => "internal error",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for Error {}
