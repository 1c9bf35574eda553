//! Client errors as Python exceptions: the classes live in `conduit._errors`
//! (one per [`ErrorKind`]), so the hierarchy is written once, in Python.

use conduit_client::{Error, ErrorKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The name `conduit._errors._from_kind` maps to a class.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "InvalidArgument",
        ErrorKind::NotFound => "NotFound",
        ErrorKind::Unauthenticated => "Unauthenticated",
        ErrorKind::PermissionDenied => "PermissionDenied",
        ErrorKind::ResourceExhausted => "ResourceExhausted",
        ErrorKind::Unavailable => "Unavailable",
        ErrorKind::DeadlineExceeded => "DeadlineExceeded",
        ErrorKind::SessionClosed => "SessionClosed",
        ErrorKind::SessionExpired => "SessionExpired",
        ErrorKind::ValueReleased => "ValueReleased",
        ErrorKind::ValueNotFound => "ValueNotFound",
        ErrorKind::ReplayFailed => "ReplayFailed",
        ErrorKind::Internal => "Internal",
    }
}

/// The `conduit` exception for an error of `kind` saying `message`.
pub fn raise(py: Python<'_>, kind: ErrorKind, message: &str) -> PyErr {
    let made = py
        .import("conduit._errors")
        .and_then(|m| m.getattr("_from_kind"))
        .and_then(|f| f.call1((kind_name(kind), message)));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        // Only when the package around this module is broken.
        Err(e) => PyRuntimeError::new_err(format!("{message} (and conduit._errors failed: {e})")),
    }
}

/// Converts a client [`Error`] into its exception.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    raise(py, e.kind(), e.message())
}

/// Results of client calls, converted with the GIL at hand.
pub trait IntoPyResult<T> {
    /// The value, or the error as its `conduit` exception.
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for conduit_client::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
