//! Tensor payloads across the boundary, both ways, without a copy where the
//! data is immutable.

use std::ffi::c_int;

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

/// A received tensor payload, read-only, exposed through the buffer protocol:
/// `numpy.frombuffer(buf, dtype)` views it in place, and the array keeps it
/// alive.
#[pyclass(frozen, module = "conduit._native")]
pub struct Buffer {
    data: Bytes,
}

impl Buffer {
    /// Wraps `data` (shared, not copied).
    pub fn new(data: Bytes) -> Self {
        Self { data }
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// # Safety
    /// `view` is the `Py_buffer` CPython asks this object to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no Py_buffer to fill"));
        }
        let data = &slf.get().data;
        let len = ffi::Py_ssize_t::try_from(data.len())
            .map_err(|_| PyBufferError::new_err("tensor too large for a buffer"))?;
        // SAFETY: `view` is a valid Py_buffer (checked non-null) that CPython
        // owns for this call; the bytes live as long as `slf`, whose reference
        // PyBuffer_FillInfo stores in `view.obj`; read-only, so a writable
        // request fails with BufferError.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut std::ffi::c_void,
                len,
                1,
                flags,
            )
        };
        if rc == -1 {
            Err(PyErr::fetch(slf.py()))
        } else {
            Ok(())
        }
    }

    fn __repr__(&self) -> String {
        format!("<conduit._native.Buffer {} bytes>", self.data.len())
    }
}

/// The payload of an input: a `bytes` object is shared (immutable, so a
/// replay resends what was given); any other buffer (a numpy array's bytes) is
/// copied once, since its owner may change it after the call.
pub fn payload(data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if data.is_instance_of::<PyBytes>() {
        let shared: PyBackedBytes = data.extract()?;
        return Ok(Bytes::from_owner(shared));
    }
    let buf = PyBuffer::<u8>::get(data)?;
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "tensor data must be a C-contiguous uint8 buffer",
        ));
    }
    Ok(Bytes::from(buf.to_vec(data.py())?))
}
