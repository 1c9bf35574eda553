//! The client without async: every call blocks the calling thread on one
//! process-wide tokio runtime (two worker threads, started on first use),
//! where sessions' heartbeats run too. Do not call these from inside an
//! async runtime; use the async API there.

use crate::{ModelOptions, ModuleEntry, ModuleInfo, Registered, Result, RunOptions, Stats, Tensor};
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("conduit-client")
            .enable_all()
            .build()
            .expect("the client's runtime starts")
    })
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// [`crate::ModuleRepository`], blocking.
#[derive(Debug, Clone)]
pub struct ModuleRepository(crate::ModuleRepository);

impl ModuleRepository {
    /// See [`crate::ModuleRepository::connect`].
    ///
    /// # Errors
    /// As there.
    pub fn connect(addr: &str, api_key: &str) -> Result<Self> {
        block(crate::ModuleRepository::connect(addr, api_key)).map(Self)
    }

    /// See [`crate::ModuleRepository::register_component`].
    ///
    /// # Errors
    /// As there.
    pub fn register_component(
        &self,
        name: &str,
        version: &str,
        wasm: &[u8],
        tags: &[String],
    ) -> Result<Registered> {
        block(self.0.register_component(name, version, wasm, tags))
    }

    /// See [`crate::ModuleRepository::register_onnx`].
    ///
    /// # Errors
    /// As there.
    pub fn register_onnx(
        &self,
        name: &str,
        version: &str,
        onnx: &[u8],
        tags: &[String],
        options: &ModelOptions,
    ) -> Result<Registered> {
        block(self.0.register_onnx(name, version, onnx, tags, options))
    }

    /// See [`crate::ModuleRepository::register_pipeline`].
    ///
    /// # Errors
    /// As there.
    pub fn register_pipeline(
        &self,
        name: &str,
        version: &str,
        manifest_toml: &str,
        tags: &[String],
    ) -> Result<Registered> {
        block(self.0.register_pipeline(name, version, manifest_toml, tags))
    }

    /// See [`crate::ModuleRepository::add_tag`].
    ///
    /// # Errors
    /// As there.
    pub fn add_tag(&self, reference: &str, tag: &str) -> Result<()> {
        block(self.0.add_tag(reference, tag))
    }

    /// See [`crate::ModuleRepository::list`].
    ///
    /// # Errors
    /// As there.
    pub fn list(&self, prefix: &str) -> Result<Vec<ModuleEntry>> {
        block(self.0.list(prefix))
    }

    /// See [`crate::ModuleRepository::delete`].
    ///
    /// # Errors
    /// As there.
    pub fn delete(&self, reference: &str) -> Result<()> {
        block(self.0.delete(reference))
    }
}

/// [`crate::Session`], blocking.
#[derive(Debug, Clone)]
pub struct Session(crate::Session);

impl Session {
    /// See [`crate::Session::open`].
    ///
    /// # Errors
    /// As there.
    pub fn open(
        addr: &str,
        api_key: &str,
        modules: &[String],
        options: crate::SessionOptions,
    ) -> Result<Self> {
        block(crate::Session::open(addr, api_key, modules, options)).map(Self)
    }

    /// See [`crate::Session::module`].
    ///
    /// # Errors
    /// As there.
    pub fn module(&self, reference: &str) -> Result<Module> {
        block(self.0.module(reference)).map(Module)
    }

    /// See [`crate::Session::id`].
    pub fn id(&self) -> String {
        self.0.id()
    }

    /// See [`crate::Session::runner_address`].
    pub fn runner_address(&self) -> String {
        self.0.runner_address()
    }

    /// See [`crate::Session::runner_id`].
    pub fn runner_id(&self) -> String {
        self.0.runner_id()
    }

    /// See [`crate::Session::stats`].
    pub fn stats(&self) -> Stats {
        self.0.stats()
    }

    /// See [`crate::Session::logged_calls`].
    pub fn logged_calls(&self) -> usize {
        self.0.logged_calls()
    }

    /// See [`crate::Session::close`].
    ///
    /// # Errors
    /// As there.
    pub fn close(&self) -> Result<()> {
        block(self.0.close())
    }
}

/// [`crate::Module`], blocking.
#[derive(Debug, Clone)]
pub struct Module(crate::Module);

impl Module {
    /// See [`crate::Module::info`].
    pub fn info(&self) -> &ModuleInfo {
        self.0.info()
    }

    /// See [`crate::Module::run`].
    ///
    /// # Errors
    /// As there.
    pub fn run(&self, inputs: Vec<(String, Input)>) -> Result<Vec<(String, Value)>> {
        self.run_with(inputs, RunOptions::default())
    }

    /// See [`crate::Module::run_with`].
    ///
    /// # Errors
    /// As there.
    pub fn run_with(
        &self,
        inputs: Vec<(String, Input)>,
        options: RunOptions,
    ) -> Result<Vec<(String, Value)>> {
        let inputs = inputs.into_iter().map(|(n, i)| (n, i.into())).collect();
        let out = block(self.0.run_with(inputs, options))?;
        Ok(out.into_iter().map(|(n, v)| (n, Value(v))).collect())
    }
}

/// [`crate::Input`], blocking.
#[derive(Debug, Clone)]
pub enum Input {
    /// A tensor sent with the call.
    Tensor(Tensor),
    /// A value of this session: stays on the runner.
    Value(Value),
    /// A raw value id on the session's current runner.
    RemoteId(u64),
}

impl From<Input> for crate::Input {
    fn from(i: Input) -> Self {
        match i {
            Input::Tensor(t) => Self::Tensor(t),
            Input::Value(v) => Self::Value(v.0),
            Input::RemoteId(id) => Self::RemoteId(id),
        }
    }
}

impl From<Tensor> for Input {
    fn from(t: Tensor) -> Self {
        Self::Tensor(t)
    }
}

impl From<Value> for Input {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

/// [`crate::Value`], blocking.
#[derive(Debug, Clone)]
pub struct Value(crate::Value);

impl Value {
    /// See [`crate::Value::name`].
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// See [`crate::Value::datatype`].
    pub fn datatype(&self) -> &str {
        self.0.datatype()
    }

    /// See [`crate::Value::shape`].
    pub fn shape(&self) -> &[i64] {
        self.0.shape()
    }

    /// See [`crate::Value::remote_id`].
    pub fn remote_id(&self) -> Option<u64> {
        self.0.remote_id()
    }

    /// See [`crate::Value::fetch`].
    ///
    /// # Errors
    /// As there.
    pub fn fetch(&self) -> Result<Tensor> {
        block(self.0.fetch())
    }

    /// See [`crate::Value::release`].
    ///
    /// # Errors
    /// As there.
    pub fn release(&self) -> Result<()> {
        block(self.0.release())
    }
}
