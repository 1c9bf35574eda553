//! `conduit._native`: the pyo3 half of the `conduit` Python package, a thin
//! layer over [`conduit_client::blocking`].
//!
//! The pure-Python package (`python/conduit/`) is the public API; this module
//! only moves things across: tensors as `(datatype, shape, data)` with `data`
//! a `bytes` object (shared, no copy) or a C-contiguous `uint8` buffer
//! (copied once, into the immutable payload a replay resends); fetched tensors
//! as a [`Buffer`] that numpy views in place; errors as the exception classes
//! of `conduit._errors`, by [`conduit_client::ErrorKind`]. Every call that
//! waits on the network releases the GIL.
//!
//! ```python
//! from conduit import _native
//! s = _native.Session("127.0.0.1:7070", key, ["paraphrase"], None, True, True, 60.0)
//! out = dict(s.module("paraphrase").run([("text", ("BYTES", [2, 1], data))], {}))
//! datatype, shape, buf = out["similarity"].fetch()
//! ```

mod buffer;
mod errors;
mod repository;
mod session;

use pyo3::prelude::*;

pub use buffer::Buffer;
pub use repository::ModuleRepository;
pub use session::{Module, Session, Value};

/// The module `conduit._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Buffer>()?;
    m.add_class::<ModuleRepository>()?;
    m.add_class::<Session>()?;
    m.add_class::<Module>()?;
    m.add_class::<Value>()?;
    Ok(())
}
