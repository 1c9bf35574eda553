//! `conduit._native.Session`, `Module` and `Value`: the session calls of
//! [`conduit_client::blocking`], with the GIL released for each.

use std::time::Duration;

use conduit_client::blocking::{self, Input};
use conduit_client::{DataType, ErrorKind, Param, RunOptions, SessionOptions, Tensor};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::buffer::{Buffer, payload};
use crate::errors::{IntoPyResult, raise};

/// A session on one runner.
#[pyclass(frozen, module = "conduit._native")]
pub struct Session {
    inner: blocking::Session,
}

/// A module pinned in a session.
#[pyclass(frozen, module = "conduit._native")]
pub struct Module {
    inner: blocking::Module,
}

/// A remote value: an output kept on the runner.
#[pyclass(frozen, module = "conduit._native")]
pub struct Value {
    inner: blocking::Value,
}

#[pymethods]
impl Session {
    /// Opens a session over `modules` at `addr`; `lease_ms` `None` takes the
    /// server's lease.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        addr: &str,
        api_key: &str,
        modules: Vec<String>,
        lease_ms: Option<u64>,
        heartbeat: bool,
        replay: bool,
        timeout_s: f64,
    ) -> PyResult<Self> {
        let timeout = Duration::try_from_secs_f64(timeout_s)
            .map_err(|e| raise(py, ErrorKind::InvalidArgument, &format!("timeout: {e}")))?;
        let options = SessionOptions {
            lease: lease_ms.map(Duration::from_millis),
            heartbeat,
            replay,
            timeout,
            ..SessionOptions::default()
        };
        let inner = py
            .detach(|| blocking::Session::open(addr, api_key, &modules, options))
            .py(py)?;
        Ok(Self { inner })
    }

    /// The module `reference` names, pinned into the session if needed.
    fn module(&self, py: Python<'_>, reference: &str) -> PyResult<Module> {
        let inner = py.detach(|| self.inner.module(reference)).py(py)?;
        Ok(Module { inner })
    }

    /// The session's id.
    #[getter]
    fn id(&self) -> String {
        self.inner.id()
    }

    /// `host:port` of the runner holding it.
    #[getter]
    fn runner_address(&self) -> String {
        self.inner.runner_address()
    }

    /// The runner's id.
    #[getter]
    fn runner_id(&self) -> String {
        self.inner.runner_id()
    }

    /// Bytes sent and received, calls and replays, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.stats());
        let d = PyDict::new(py);
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("bytes_received", s.bytes_received)?;
        d.set_item("calls", s.calls)?;
        d.set_item("replays", s.replays)?;
        Ok(d)
    }

    /// Closes the session.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.close()).py(py)
    }
}

fn specs<'py>(
    py: Python<'py>,
    specs: &[conduit_client::TensorSpec],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for s in specs {
        let d = PyDict::new(py);
        d.set_item("name", &s.name)?;
        d.set_item("datatype", &s.datatype)?;
        d.set_item("shape", &s.shape)?;
        list.append(d)?;
    }
    Ok(list)
}

fn invalid(py: Python<'_>, message: String) -> PyErr {
    raise(py, ErrorKind::InvalidArgument, &message)
}

/// One input as the Python layer passes it: a [`Value`], an `int` (a raw
/// value id on the session's runner), or `(datatype, shape, data)`.
fn input(py: Python<'_>, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Input> {
    if let Ok(v) = obj.cast::<Value>() {
        return Ok(Input::Value(v.get().inner.clone()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(Input::RemoteId(obj.extract()?));
    }
    let t = obj.cast::<PyTuple>().map_err(|_| {
        invalid(
            py,
            format!("input `{name}`: expected a Value, a value id or (datatype, shape, data)"),
        )
    })?;
    let (datatype, shape, data): (String, Vec<i64>, Bound<'_, PyAny>) = t.extract()?;
    let dtype: DataType = datatype
        .parse()
        .map_err(|_| invalid(py, format!("input `{name}`: unknown datatype {datatype:?}")))?;
    let tensor = Tensor::new(dtype, shape, payload(&data)?)
        .map_err(|e| invalid(py, format!("input `{name}`: {e}")))?;
    Ok(Input::Tensor(tensor))
}

/// A request parameter: bool, int (64-bit), float or str.
fn param(py: Python<'_>, key: &str, v: &Bound<'_, PyAny>) -> PyResult<Param> {
    if v.is_instance_of::<PyBool>() {
        Ok(Param::Bool(v.extract()?))
    } else if v.is_instance_of::<PyInt>() {
        let i: i64 = v
            .extract()
            .map_err(|_| invalid(py, format!("parameter `{key}`: out of the 64-bit range")))?;
        Ok(Param::Int(i))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(Param::Double(v.extract()?))
    } else if v.is_instance_of::<PyString>() {
        Ok(Param::Str(v.extract()?))
    } else {
        Err(invalid(
            py,
            format!(
                "parameter `{key}`: a bool, int, float or str, not {}",
                v.get_type().name()?
            ),
        ))
    }
}

#[pymethods]
impl Module {
    /// The pinned module: reference, name, version, digest, kind, inputs and
    /// outputs (lists of dicts), as a dict.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = self.inner.info();
        let d = PyDict::new(py);
        d.set_item("reference", &i.reference)?;
        d.set_item("name", &i.name)?;
        d.set_item("version", &i.version)?;
        d.set_item("digest", &i.digest)?;
        d.set_item("kind", &i.kind)?;
        d.set_item("inputs", specs(py, &i.inputs)?)?;
        d.set_item("outputs", specs(py, &i.outputs)?)?;
        Ok(d)
    }

    /// Runs the module on `inputs` (`[(name, Value | int | (datatype, shape,
    /// data))]`) with `parameters`, returning the outputs named in `fetch`
    /// with their data in the same round trip; its outputs as
    /// `[(name, Value)]`.
    fn run(
        &self,
        py: Python<'_>,
        inputs: Vec<(String, Bound<'_, PyAny>)>,
        parameters: Bound<'_, PyDict>,
        fetch: Vec<String>,
    ) -> PyResult<Vec<(String, Value)>> {
        let mut given = Vec::with_capacity(inputs.len());
        for (name, obj) in &inputs {
            given.push((name.clone(), input(py, name, obj)?));
        }
        let mut params = Vec::with_capacity(parameters.len());
        for (k, v) in parameters.iter() {
            let key: String = k.extract()?;
            let p = param(py, &key, &v)?;
            params.push((key, p));
        }
        let options = RunOptions { fetch, params };
        let outputs = py.detach(|| self.inner.run_with(given, options)).py(py)?;
        Ok(outputs
            .into_iter()
            .map(|(name, inner)| (name, Value { inner }))
            .collect())
    }
}

#[pymethods]
impl Value {
    /// The output's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Its KServe v2 datatype name.
    #[getter]
    fn datatype(&self) -> &str {
        self.inner.datatype()
    }

    /// Its dimensions.
    #[getter]
    fn shape(&self) -> Vec<i64> {
        self.inner.shape().to_vec()
    }

    /// Its id on the session's current runner; `None` when it is not there
    /// now (released, or not yet recomputed after a replay).
    #[getter]
    fn id(&self) -> Option<u64> {
        self.inner.remote_id()
    }

    /// Fetches its tensor (once; cached): `(datatype, shape, Buffer)`.
    fn fetch(&self, py: Python<'_>) -> PyResult<(String, Vec<i64>, Buffer)> {
        let t = py.detach(|| self.inner.fetch()).py(py)?;
        Ok((
            t.dtype().as_str().to_string(),
            t.shape().to_vec(),
            Buffer::new(t.data().clone()),
        ))
    }

    /// Drops it on the runner.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.release()).py(py)
    }
}
