//! `conduit._native.ModuleRepository`: the registry calls of
//! [`conduit_client::blocking::ModuleRepository`], with the GIL released.

use conduit_client::blocking;
use conduit_client::{ModelOptions, ModuleEntry, Registered};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyDict;

use crate::errors::IntoPyResult;

/// A connection to a registry (`conduit dev`'s gRPC address, or a cluster's
/// registry).
#[pyclass(frozen, module = "conduit._native")]
pub struct ModuleRepository {
    inner: blocking::ModuleRepository,
}

fn registered<'py>(py: Python<'py>, r: Registered) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", r.name)?;
    d.set_item("version", r.version)?;
    d.set_item("digest", r.digest)?;
    d.set_item("reference", r.reference)?;
    d.set_item("created", r.created)?;
    d.set_item("tags", r.tags)?;
    Ok(d)
}

fn entry<'py>(py: Python<'py>, e: ModuleEntry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", e.name)?;
    d.set_item("version", e.version)?;
    d.set_item("kind", e.kind)?;
    d.set_item("digest", e.digest)?;
    d.set_item("tags", e.tags)?;
    d.set_item("size", e.size)?;
    Ok(d)
}

#[pymethods]
impl ModuleRepository {
    /// Connects to the registry at `addr` with `api_key`.
    #[new]
    fn new(py: Python<'_>, addr: &str, api_key: &str) -> PyResult<Self> {
        let inner = py
            .detach(|| blocking::ModuleRepository::connect(addr, api_key))
            .py(py)?;
        Ok(Self { inner })
    }

    /// Uploads a component; a dict of what was stored.
    fn register_component<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        version: &str,
        wasm: PyBackedBytes,
        tags: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = py
            .detach(|| self.inner.register_component(name, version, &wasm, &tags))
            .py(py)?;
        registered(py, r)
    }

    /// Uploads an ONNX model with its executor hints; a dict of what was
    /// stored.
    #[allow(clippy::too_many_arguments)]
    fn register_onnx<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        version: &str,
        onnx: PyBackedBytes,
        tags: Vec<String>,
        max_batch_size: u32,
        max_queue_delay_us: u64,
        backend: String,
        device: String,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = ModelOptions {
            max_batch_size,
            max_queue_delay_us,
            backend,
            device,
        };
        let r = py
            .detach(|| {
                self.inner
                    .register_onnx(name, version, &onnx, &tags, &options)
            })
            .py(py)?;
        registered(py, r)
    }

    /// Registers a pipeline from its TOML manifest; a dict of what was stored.
    fn register_pipeline<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        version: &str,
        manifest: &str,
        tags: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let r = py
            .detach(|| self.inner.register_pipeline(name, version, manifest, &tags))
            .py(py)?;
        registered(py, r)
    }

    /// Points `tag` at `reference`.
    fn add_tag(&self, py: Python<'_>, reference: &str, tag: &str) -> PyResult<()> {
        py.detach(|| self.inner.add_tag(reference, tag)).py(py)
    }

    /// Every module version whose name starts with `prefix`, as dicts.
    fn list<'py>(&self, py: Python<'py>, prefix: &str) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let entries = py.detach(|| self.inner.list(prefix)).py(py)?;
        entries.into_iter().map(|e| entry(py, e)).collect()
    }

    /// Deletes the module version `reference` names.
    fn delete(&self, py: Python<'_>, reference: &str) -> PyResult<()> {
        py.detach(|| self.inner.delete(reference)).py(py)
    }
}
