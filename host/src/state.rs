//! Per-call store data and the host side of the `conduit:compute` imports.

use crate::bindings::conduit::compute::types::{self as wit, TensorData};
use crate::bindings::conduit::compute::{logging, model};
use crate::capture::{CapturedOutput, LogBudget, Stream};
use crate::tensor::{DataType, Tensor, TensorError, pack, unpack};
use crate::{GuestError, ModelBackend, SandboxLimits};
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The trap raised when a guest grows its memory past the call's cap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {requested})")]
pub(crate) struct MemoryLimitExceeded {
    pub limit: usize,
    pub requested: usize,
}

/// The trap raised when a guest creates more tensor data or handles than allowed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct OutputBudgetExceeded(pub String);

/// Everything one call's `Store` holds. Dropped off the request path.
pub(crate) struct CallState {
    pub table: ResourceTable,
    wasi: WasiCtx,
    limits: SandboxLimits,
    created_bytes: usize,
    created_tensors: usize,
    component: Arc<str>,
    log_budget: LogBudget,
    outputs: [CapturedOutput; 2],
    models: Option<Arc<dyn ModelBackend>>,
    random: WasiRandomCtx,
}

impl CallState {
    pub(crate) fn new(
        component: Arc<str>,
        limits: SandboxLimits,
        models: Option<Arc<dyn ModelBackend>>,
    ) -> Self {
        let log_budget = LogBudget::new(limits.max_log_bytes);
        let stdout = CapturedOutput::new(Stream::Stdout, component.clone(), log_budget.clone());
        let stderr = CapturedOutput::new(Stream::Stderr, component.clone(), log_budget.clone());
        // No preopened directories, no sockets, no environment, no arguments:
        // the filesystem and network interfaces are not even linked.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(false)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            limits,
            created_bytes: 0,
            created_tensors: 0,
            component,
            log_budget,
            outputs: [stdout, stderr],
            models,
            random: WasiRandomCtx::default(),
        }
    }

    /// The WASI random-number state (linked separately from the rest of WASI).
    pub(crate) fn random(&mut self) -> &mut WasiRandomCtx {
        &mut self.random
    }

    /// Prepares a (possibly reused) store for the next call.
    pub(crate) fn begin_call(
        &mut self,
        limits: SandboxLimits,
        models: Option<Arc<dyn ModelBackend>>,
    ) {
        self.log_budget.reset(limits.max_log_bytes);
        self.limits = limits;
        self.models = models;
        self.created_bytes = 0;
        self.created_tensors = 0;
    }

    /// Writes out partial lines and a note about dropped log bytes.
    pub(crate) fn flush_logs(&self) {
        for out in &self.outputs {
            out.flush();
        }
        let dropped = self.log_budget.dropped();
        if dropped > 0 {
            tracing::warn!(component = %self.component, dropped_bytes = dropped, "guest log output over the per-call cap was dropped");
        }
    }

    /// Stores a tensor the guest created, charging it to the call's budget.
    pub(crate) fn push_created(&mut self, tensor: Tensor) -> Result<Resource<Tensor>> {
        self.created_bytes += tensor.byte_size();
        self.created_tensors += 1;
        if self.created_bytes > self.limits.max_output_bytes {
            return Err(wasmtime::Error::new(OutputBudgetExceeded(format!(
                "created {} bytes of tensors, over the limit of {}",
                self.created_bytes, self.limits.max_output_bytes
            ))));
        }
        self.push_view(tensor)
    }

    /// Stores a tensor that shares existing storage (counts only as a handle).
    pub(crate) fn push_view(&mut self, tensor: Tensor) -> Result<Resource<Tensor>> {
        self.created_tensors += 1;
        if self.created_tensors > self.limits.max_tensors {
            return Err(wasmtime::Error::new(OutputBudgetExceeded(format!(
                "created more than {} tensor handles",
                self.limits.max_tensors
            ))));
        }
        Ok(self.table.push(tensor)?)
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > self.limits.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limits.memory_bytes,
                requested: desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        max: Option<usize>,
    ) -> Result<bool> {
        Ok(max.is_none_or(|m| desired <= m))
    }
}

pub(crate) fn to_wit_dtype(d: DataType) -> wit::Dtype {
    use wit::Dtype as W;
    match d {
        DataType::Bool => W::Bool,
        DataType::Uint8 => W::Uint8,
        DataType::Uint16 => W::Uint16,
        DataType::Uint32 => W::Uint32,
        DataType::Uint64 => W::Uint64,
        DataType::Int8 => W::Int8,
        DataType::Int16 => W::Int16,
        DataType::Int32 => W::Int32,
        DataType::Int64 => W::Int64,
        DataType::Fp16 => W::Fp16,
        DataType::Bf16 => W::Bf16,
        DataType::Fp32 => W::Fp32,
        DataType::Fp64 => W::Fp64,
        DataType::Bytes => W::Bytes,
    }
}

pub(crate) fn from_wit_dtype(d: wit::Dtype) -> DataType {
    use wit::Dtype as W;
    match d {
        W::Bool => DataType::Bool,
        W::Uint8 => DataType::Uint8,
        W::Uint16 => DataType::Uint16,
        W::Uint32 => DataType::Uint32,
        W::Uint64 => DataType::Uint64,
        W::Int8 => DataType::Int8,
        W::Int16 => DataType::Int16,
        W::Int32 => DataType::Int32,
        W::Int64 => DataType::Int64,
        W::Fp16 => DataType::Fp16,
        W::Bf16 => DataType::Bf16,
        W::Fp32 => DataType::Fp32,
        W::Fp64 => DataType::Fp64,
        W::Bytes => DataType::Bytes,
    }
}

pub(crate) fn to_wit_error(e: GuestError) -> wit::Error {
    match e {
        GuestError::InvalidInput(m) => wit::Error::InvalidInput(m),
        GuestError::Unsupported(m) => wit::Error::Unsupported(m),
        GuestError::NotFound(m) => wit::Error::NotFound(m),
        GuestError::ResourceExhausted(m) => wit::Error::ResourceExhausted(m),
        GuestError::Internal(m) => wit::Error::Internal(m),
    }
}

pub(crate) fn from_wit_error(e: wit::Error) -> GuestError {
    match e {
        wit::Error::InvalidInput(m) => GuestError::InvalidInput(m),
        wit::Error::Unsupported(m) => GuestError::Unsupported(m),
        wit::Error::NotFound(m) => GuestError::NotFound(m),
        wit::Error::ResourceExhausted(m) => GuestError::ResourceExhausted(m),
        wit::Error::Internal(m) => GuestError::Internal(m),
    }
}

fn invalid(e: TensorError) -> wit::Error {
    wit::Error::InvalidInput(e.0)
}

fn tensor_from_data(shape: Vec<i64>, data: TensorData) -> Result<Tensor, TensorError> {
    let (dtype, raw) = match data {
        TensorData::Bool(v) => (
            DataType::Bool,
            Bytes::from(v.into_iter().map(u8::from).collect::<Vec<_>>()),
        ),
        TensorData::Uint8(v) => (DataType::Uint8, Bytes::from(v)),
        TensorData::Uint16(v) => (DataType::Uint16, pack(v)),
        TensorData::Uint32(v) => (DataType::Uint32, pack(v)),
        TensorData::Uint64(v) => (DataType::Uint64, pack(v)),
        TensorData::Int8(v) => (DataType::Int8, pack(v)),
        TensorData::Int16(v) => (DataType::Int16, pack(v)),
        TensorData::Int32(v) => (DataType::Int32, pack(v)),
        TensorData::Int64(v) => (DataType::Int64, pack(v)),
        TensorData::Fp16(v) => (DataType::Fp16, pack(v)),
        TensorData::Bf16(v) => (DataType::Bf16, pack(v)),
        TensorData::Fp32(v) => (DataType::Fp32, pack(v)),
        TensorData::Fp64(v) => (DataType::Fp64, pack(v)),
        TensorData::Bytes(v) => return Tensor::from_byte_strings(shape, v),
    };
    Tensor::new(dtype, shape, raw)
}

fn tensor_to_data(t: &Tensor) -> TensorData {
    let raw = t.data();
    match t.dtype() {
        DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
        DataType::Uint16 => TensorData::Uint16(unpack(raw)),
        DataType::Uint32 => TensorData::Uint32(unpack(raw)),
        DataType::Uint64 => TensorData::Uint64(unpack(raw)),
        DataType::Int8 => TensorData::Int8(unpack(raw)),
        DataType::Int16 => TensorData::Int16(unpack(raw)),
        DataType::Int32 => TensorData::Int32(unpack(raw)),
        DataType::Int64 => TensorData::Int64(unpack(raw)),
        DataType::Fp16 => TensorData::Fp16(unpack(raw)),
        DataType::Bf16 => TensorData::Bf16(unpack(raw)),
        DataType::Fp32 => TensorData::Fp32(unpack(raw)),
        DataType::Fp64 => TensorData::Fp64(unpack(raw)),
        DataType::Bytes => TensorData::Bytes(
            t.byte_strings()
                .expect("BYTES tensors are validated at construction")
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
        ),
    }
}

impl wit::Host for CallState {}

impl wit::HostTensor for CallState {
    fn create(
        &mut self,
        shape: Vec<i64>,
        data: TensorData,
    ) -> Result<Result<Resource<Tensor>, wit::Error>> {
        match tensor_from_data(shape, data) {
            Ok(t) => Ok(Ok(self.push_created(t)?)),
            Err(e) => Ok(Err(invalid(e))),
        }
    }

    fn from_raw(
        &mut self,
        dtype: wit::Dtype,
        shape: Vec<i64>,
        raw: Vec<u8>,
    ) -> Result<Result<Resource<Tensor>, wit::Error>> {
        match Tensor::new(from_wit_dtype(dtype), shape, Bytes::from(raw)) {
            Ok(t) => Ok(Ok(self.push_created(t)?)),
            Err(e) => Ok(Err(invalid(e))),
        }
    }

    fn dtype(&mut self, this: Resource<Tensor>) -> Result<wit::Dtype> {
        Ok(to_wit_dtype(self.table.get(&this)?.dtype()))
    }

    fn shape(&mut self, this: Resource<Tensor>) -> Result<Vec<i64>> {
        Ok(self.table.get(&this)?.shape().to_vec())
    }

    fn byte_size(&mut self, this: Resource<Tensor>) -> Result<u64> {
        Ok(self.table.get(&this)?.byte_size() as u64)
    }

    fn read(&mut self, this: Resource<Tensor>) -> Result<TensorData> {
        Ok(tensor_to_data(self.table.get(&this)?))
    }

    fn read_raw(
        &mut self,
        this: Resource<Tensor>,
        offset: u64,
        len: u64,
    ) -> Result<Result<Vec<u8>, wit::Error>> {
        let data = self.table.get(&this)?.data();
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| Some(o..o.checked_add(l)?))
            .filter(|r| r.end <= data.len());
        Ok(match range {
            Some(r) => Ok(data[r].to_vec()),
            None => Err(wit::Error::InvalidInput(format!(
                "byte range {offset}+{len} is outside a tensor of {} bytes",
                data.len()
            ))),
        })
    }

    fn slice(
        &mut self,
        this: Resource<Tensor>,
        start: u64,
        end: u64,
    ) -> Result<Result<Resource<Tensor>, wit::Error>> {
        let sliced = self.table.get(&this)?.slice_rows(
            start.min(usize::MAX as u64) as usize,
            end.min(usize::MAX as u64) as usize,
        );
        match sliced {
            Ok(t) => Ok(Ok(self.push_view(t)?)),
            Err(e) => Ok(Err(invalid(e))),
        }
    }

    fn reshape(
        &mut self,
        this: Resource<Tensor>,
        shape: Vec<i64>,
    ) -> Result<Result<Resource<Tensor>, wit::Error>> {
        match self.table.get(&this)?.reshape(shape) {
            Ok(t) => Ok(Ok(self.push_view(t)?)),
            Err(e) => Ok(Err(invalid(e))),
        }
    }

    fn share(&mut self, this: Resource<Tensor>) -> Result<Resource<Tensor>> {
        let t = self.table.get(&this)?.clone();
        self.push_view(t)
    }

    fn drop(&mut self, this: Resource<Tensor>) -> Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl logging::Host for CallState {
    fn log(&mut self, level: logging::Level, message: String) -> Result<()> {
        let keep = self.log_budget.take(message.len());
        if keep == 0 {
            return Ok(());
        }
        let mut end = keep;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message[..end];
        let c = &*self.component;
        match level {
            logging::Level::Trace => tracing::trace!(component = c, "{msg}"),
            logging::Level::Debug => tracing::debug!(component = c, "{msg}"),
            logging::Level::Info => tracing::info!(component = c, "{msg}"),
            logging::Level::Warn => tracing::warn!(component = c, "{msg}"),
            logging::Level::Error => tracing::error!(component = c, "{msg}"),
        }
        Ok(())
    }
}

impl model::Host for CallState {
    async fn infer(
        &mut self,
        name: String,
        inputs: Vec<wit::NamedTensor>,
    ) -> Result<Result<Vec<wit::NamedTensor>, wit::Error>> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for input in inputs {
            tensors.push((input.name, self.table.delete(input.tensor)?));
        }
        let Some(models) = self.models.clone() else {
            return Ok(Err(wit::Error::Unsupported(format!(
                "cannot run model `{name}`: no model executor is available to this component"
            ))));
        };
        match models.infer(&name, tensors).await {
            Ok(outputs) => {
                let mut out = Vec::with_capacity(outputs.len());
                for (name, tensor) in outputs {
                    out.push(wit::NamedTensor {
                        name,
                        tensor: self.push_view(tensor)?,
                    });
                }
                Ok(Ok(out))
            }
            Err(e) => Ok(Err(to_wit_error(e))),
        }
    }
}
