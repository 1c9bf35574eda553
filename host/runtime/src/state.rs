//! Per-call store data: the resource table, WASI context, limits and budgets.

use crate::budget::{Account, BudgetScope};
use crate::capture::{CapturedOutput, LogBudget, Stream};
use crate::{ModelBackend, SandboxLimits};
use conduit_types::Tensor;
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

/// The trap raised when a growth would pass the tenant's or the host's
/// instance-memory budget (many instances together, not this one alone).
#[derive(Debug, thiserror::Error)]
#[error("the {scope} instance-memory budget of {limit} bytes is exhausted")]
pub(crate) struct MemoryBudgetExhausted {
    pub scope: &'static str,
    pub limit: usize,
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
    /// Tensor handles in the table now (inputs, created, views), across calls.
    live_tensors: usize,
    /// What this store's memories hold, charged to the tenant and the host.
    account: Option<Account>,
    pub(crate) component: Arc<str>,
    pub(crate) log_budget: LogBudget,
    outputs: [CapturedOutput; 2],
    pub(crate) models: Option<Arc<dyn ModelBackend>>,
    random: WasiRandomCtx,
}

impl CallState {
    /// State for a new store of `component`; each call's limits and models
    /// are set by [`CallState::begin_call`].
    pub(crate) fn new(component: Arc<str>) -> Self {
        let limits = SandboxLimits::default();
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
            live_tensors: 0,
            account: None,
            component,
            log_budget,
            outputs: [stdout, stderr],
            models: None,
            random: WasiRandomCtx::default(),
        }
    }

    /// Charges this store's memory growth to `account` (set once, at creation).
    pub(crate) fn charge_to(&mut self, account: Account) {
        self.account = Some(account);
    }

    /// Tensor handles the guest holds now. A component that returns with
    /// handles still open (kept in a global across calls) is not reused.
    pub(crate) fn live_tensors(&self) -> usize {
        self.live_tensors
    }

    /// Hands a request tensor to the guest (a handle, no budget: the host
    /// already holds and counted the request).
    pub(crate) fn push_input(&mut self, tensor: Tensor) -> Result<Resource<Tensor>> {
        let handle = self.table.push(tensor)?;
        self.live_tensors += 1;
        Ok(handle)
    }

    /// Takes a tensor out of the table (dropped by the guest, returned as an
    /// output, or passed to a model).
    pub(crate) fn remove_tensor(&mut self, handle: Resource<Tensor>) -> Result<Tensor> {
        let tensor = self.table.delete(handle)?;
        self.live_tensors = self.live_tensors.saturating_sub(1);
        Ok(tensor)
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
        self.charge_bytes(tensor.byte_size())?;
        self.push_view(tensor)
    }

    /// Charges a tensor the guest returned as data (0.2) to the call's
    /// budget: its bytes, its shape and one handle, as `create` would.
    pub(crate) fn charge_created(&mut self, tensor: &Tensor) -> Result<()> {
        self.charge_bytes(tensor.byte_size())?;
        self.charge_handle(tensor)
    }

    /// Stores a tensor that shares existing storage: it counts as a handle,
    /// and its shape (the host's own copy) counts against the byte budget.
    pub(crate) fn push_view(&mut self, tensor: Tensor) -> Result<Resource<Tensor>> {
        self.charge_handle(&tensor)?;
        let handle = self.table.push(tensor)?;
        self.live_tensors += 1;
        Ok(handle)
    }

    fn charge_bytes(&mut self, bytes: usize) -> Result<()> {
        self.created_bytes = self.created_bytes.saturating_add(bytes);
        if self.created_bytes > self.limits.max_output_bytes {
            return Err(wasmtime::Error::new(OutputBudgetExceeded(format!(
                "created {} bytes of tensors, over the limit of {}",
                self.created_bytes, self.limits.max_output_bytes
            ))));
        }
        Ok(())
    }

    fn charge_handle(&mut self, tensor: &Tensor) -> Result<()> {
        self.created_tensors += 1;
        if self.created_tensors > self.limits.max_tensors {
            return Err(wasmtime::Error::new(OutputBudgetExceeded(format!(
                "created more than {} tensor handles",
                self.limits.max_tensors
            ))));
        }
        self.created_bytes += std::mem::size_of_val(tensor.shape());
        if self.created_bytes > self.limits.max_output_bytes {
            return Err(wasmtime::Error::new(OutputBudgetExceeded(format!(
                "created {} bytes of tensors and shapes, over the limit of {}",
                self.created_bytes, self.limits.max_output_bytes
            ))));
        }
        Ok(())
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
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > self.limits.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limits.memory_bytes,
                requested: desired,
            }));
        }
        if let Some(account) = &mut self.account {
            account.grow(current, desired).map_err(|scope| {
                let (scope, limit) = match scope {
                    BudgetScope::Tenant => ("tenant's", account.tenant_limit()),
                    BudgetScope::Host => ("host's", account.host_limit()),
                };
                wasmtime::Error::new(MemoryBudgetExhausted { scope, limit })
            })?;
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
