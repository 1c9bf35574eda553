//! The component runtime: load (compile, cache, validate, describe) and call.

use crate::NamedTensors;
use crate::abi::Pre;
use crate::bindings::Param;
use crate::budget::MemoryBudgets;
use crate::cache::Compiler;
use crate::component::{Component, classify_world};
use crate::compute::{ComputePool, Share};
use crate::engine::{EpochTicker, build_engine, compatibility_key};
use crate::linker::{DeniedImport, base_linker, component_linker};
use crate::model::ModelBackend;
use crate::pool::{PoolKey, Teardown, Warm, WarmPool};
use crate::state::{CallState, MemoryBudgetExhausted, MemoryLimitExceeded, OutputBudgetExceeded};
use crate::{CallContext, Digest, EngineConfig, RuntimeError, SandboxLimits, Signature};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// How to build a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Engine and pool settings.
    pub engine: EngineConfig,
    /// Where compiled components are cached (keyed by digest and engine); `None` disables it.
    pub cache_dir: Option<PathBuf>,
}

/// Runs WebAssembly components in the sandbox, many calls at once.
///
/// Calls run in instances from wasmtime's pooling allocator: a warm instance
/// of the same component and tenant when one is idle, else a fresh one.
/// Teardown happens on a background thread, off the request path.
///
/// The async methods expect a Tokio runtime with its time driver enabled
/// (`Builder::enable_all`): compilation runs on Tokio's blocking pool and
/// waiting for an instance slot is bounded by a Tokio timer.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<CallState>,
    compiler: Compiler,
    config: EngineConfig,
    components: RwLock<HashMap<Digest, Arc<Component>>>,
    warm: Arc<WarmPool>,
    admission: Arc<Semaphore>,
    budgets: MemoryBudgets,
    compute: ComputePool,
    waiting: AtomicU32,
    reaper: mpsc::Sender<Teardown>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine, linker, epoch ticker and teardown thread.
    ///
    /// # Errors
    /// [`RuntimeError::Internal`] when the engine cannot be built or the cache
    /// directory cannot be created.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = build_engine(&config.engine)?;
        let linker = base_linker(&engine)?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                RuntimeError::Internal(format!("creating cache directory {}: {e}", dir.display()))
            })?;
        }
        let (reaper, doomed) = mpsc::channel::<Teardown>();
        let warm = Arc::new(WarmPool::default());
        let (pool, ttl) = (warm.clone(), config.engine.idle_instance_ttl);
        std::thread::Builder::new()
            .name("conduit-teardown".into())
            .spawn(move || teardown_loop(&doomed, &pool, ttl))
            .map_err(|e| RuntimeError::Internal(format!("spawning teardown thread: {e}")))?;
        let compiler = Compiler::new(engine.clone(), config.cache_dir, compatibility_key(&engine));
        let budgets = MemoryBudgets::new(
            config.engine.instance_memory_budget,
            config.engine.tenant_instance_memory_budget,
        );
        let compute = ComputePool::new(
            config.engine.compute_threads,
            config.engine.max_running_per_tenant,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                _ticker: EpochTicker::start(engine.clone(), config.engine.epoch_tick),
                admission: Arc::new(Semaphore::new(config.engine.max_instances as usize)),
                engine,
                linker,
                compiler,
                config: config.engine,
                components: RwLock::default(),
                warm,
                budgets,
                compute,
                waiting: AtomicU32::new(0),
                reaper,
            }),
        })
    }

    /// Loads a component from its bytes: compiles it (or reads the compiled
    /// form from the disk cache), checks its world, and reads its signature.
    /// Loading the same bytes again returns the same component.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidComponent`] for bytes that are not a component
    /// (not wasm, corrupt, a core module) or whose `describe()` fails;
    /// [`RuntimeError::WrongWorld`] for a component that does not export the
    /// processor interface or imports something Conduit does not provide.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Component>, RuntimeError> {
        let digest = Digest::of(bytes);
        if let Some(c) = self.get(&digest) {
            return Ok(c);
        }
        let started = Instant::now();
        let inner = self.inner.clone();
        let owned = bytes.to_vec();
        let (world, version, pre) =
            tokio::task::spawn_blocking(move || -> Result<_, RuntimeError> {
                let compiled = inner.compiler.compile(&digest, &owned)?;
                let (world, version) = classify_world(&inner.engine, &compiled)?;
                let linker = component_linker(&inner.linker, &compiled)?;
                let pre = linker
                    .instantiate_pre(&compiled)
                    .and_then(|pre| Pre::new(version, pre))
                    .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
                Ok((world, version, pre))
            })
            .await
            .map_err(|e| RuntimeError::Internal(format!("compile task failed: {e}")))??;
        let label: Arc<str> = digest.short().into();
        let signature = self
            .describe(&pre, label.clone())
            .await
            .map_err(|e| RuntimeError::InvalidComponent(format!("describe() failed: {e}")))?;
        signature
            .check_bounds()
            .map_err(|e| RuntimeError::InvalidComponent(format!("describe(): {e}")))?;
        let component = Arc::new(Component {
            digest,
            world,
            version,
            signature,
            pre,
            label,
        });
        tracing::info!(component = %digest, %world, %version, elapsed_ms = started.elapsed().as_millis() as u64, "component loaded");
        let mut map = self.inner.components.write().expect("component map lock");
        Ok(map.entry(digest).or_insert(component).clone())
    }

    /// Forgets the component `digest`: drops it from memory (calls holding
    /// it finish on it) and removes its compiled artifact from the disk
    /// cache. Returns the bytes freed on disk.
    pub fn forget(&self, digest: &Digest) -> u64 {
        self.inner
            .components
            .write()
            .expect("component map lock")
            .remove(digest);
        self.inner.compiler.forget(digest)
    }

    /// Bytes the compiled artifact of `digest` takes in the disk cache.
    pub fn compiled_bytes(&self, digest: &Digest) -> u64 {
        self.inner.compiler.artifact_bytes(digest)
    }

    /// The loaded component with `digest`, if any.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Component>> {
        self.inner
            .components
            .read()
            .expect("component map lock")
            .get(digest)
            .cloned()
    }

    /// Forgets a loaded component and tears down its idle instances (its
    /// disk-cache entry stays). Calls in flight finish normally.
    pub fn unload(&self, digest: &Digest) -> bool {
        for warm in self.inner.warm.remove_component(digest) {
            self.teardown(warm);
        }
        self.inner
            .components
            .write()
            .expect("component map lock")
            .remove(digest)
            .is_some()
    }

    /// Instance slots taken right now (calls running, idle warm instances,
    /// and instances being torn down).
    pub fn slots_in_use(&self) -> usize {
        self.inner.config.max_instances as usize - self.inner.admission.available_permits()
    }

    /// Runs `component.process(inputs, params)` for `ctx.tenant` in the sandbox.
    ///
    /// The call runs on the compute pool (never on the caller's threads),
    /// within the tenant's share of it: it waits (up to 30 s) for a running
    /// slot of that share, then its deadline covers everything it does:
    /// waiting for an instance slot, instantiation, guest code and blocking
    /// WASI calls (a sleeping guest stops at its deadline like a looping one).
    ///
    /// # Errors
    /// [`RuntimeError::Guest`] when the component returns an error (outputs
    /// are not checked here: see [`Component::check_outputs`]); a trap kind
    /// ([`RuntimeError::Timeout`], [`RuntimeError::MemoryLimit`],
    /// [`RuntimeError::MemoryBudget`], [`RuntimeError::StackOverflow`],
    /// [`RuntimeError::OutputTooLarge`], [`RuntimeError::Denied`],
    /// [`RuntimeError::Trap`]) when the sandbox stops it;
    /// [`RuntimeError::Overloaded`] when every instance slot is busy and
    /// either the wait queue is full or nothing frees up before the deadline,
    /// or the tenant's share of the compute pool stays busy for 30 s.
    pub async fn process(
        &self,
        component: &Arc<Component>,
        inputs: NamedTensors,
        params: &[Param],
        ctx: &CallContext,
    ) -> Result<NamedTensors, RuntimeError> {
        self.process_traced(component, inputs, params, ctx).await.0
    }

    /// [`Runtime::process`], also saying whether the call needed a fresh
    /// instance (`true`) or reused a warm one.
    pub async fn process_traced(
        &self,
        component: &Arc<Component>,
        inputs: NamedTensors,
        params: &[Param],
        ctx: &CallContext,
    ) -> (Result<NamedTensors, RuntimeError>, bool) {
        let span =
            tracing::debug_span!("component", component = %component.label, tenant = %ctx.tenant);
        let limits = self.clamp(&ctx.limits);
        // Waiting for the tenant's share of the compute pool is queueing, not
        // running: it is bounded on its own, and the sandbox deadline starts
        // when the call runs.
        let queued_until = Instant::now() + limits.deadline.max(COMPUTE_QUEUE_WAIT);
        let (this, component, params, mut ctx2) = (
            self.clone(),
            component.clone(),
            params.to_vec(),
            ctx.clone(),
        );
        let work = move |share: Share| {
            // The call gives its compute slot back while it waits on a model.
            ctx2.models = ctx2
                .models
                .take()
                .map(|inner| Arc::new(SteppingAside { inner, share }) as Arc<dyn ModelBackend>);
            async move {
                let deadline = Instant::now() + limits.deadline;
                let mut fresh = false;
                let result = this
                    .process_inner(
                        &component, inputs, &params, &ctx2, &limits, deadline, &mut fresh,
                    )
                    .await;
                (result, fresh)
            }
            .instrument(span)
        };
        match self
            .inner
            .compute
            .run(&ctx.tenant, queued_until, work)
            .await
        {
            Ok(done) => done,
            Err(e) => (Err(e), false),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn process_inner(
        &self,
        component: &Component,
        inputs: NamedTensors,
        params: &[Param],
        ctx: &CallContext,
        limits: &SandboxLimits,
        deadline: Instant,
        fresh: &mut bool,
    ) -> Result<NamedTensors, RuntimeError> {
        let key: PoolKey = (component.digest, ctx.tenant.clone());
        let reuse = limits.reuse_instances;
        let warm = if reuse {
            self.inner.warm.take(&key)
        } else {
            None
        };
        let mut warm = match warm {
            Some(w) => w,
            None => {
                *fresh = true;
                self.instantiate(component, limits, ctx, deadline).await?
            }
        };
        prepare(&mut warm.store, limits, ctx, deadline);
        let call = warm.instance.process(&mut warm.store, inputs, params);
        // Epoch interruption stops guest code; this also stops a guest
        // blocked in a host call (a WASI sleep or poll) at the deadline.
        let result = tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::new(Trap::Interrupt)));
        warm.uses += 1;
        let (outcome, healthy) = match result {
            Ok(outcome) => (outcome, true),
            // A trapped (or interrupted) instance can never be entered again.
            Err(e) => (Err(classify_trap(e, limits)), false),
        };
        warm.store.data().flush_logs();
        // A guest that returns with tensor handles still open keeps them in
        // its globals: reusing it would let host memory grow call after call.
        let leftovers = warm.store.data().live_tensors();
        if leftovers > 0 {
            tracing::debug!(component = %component.label, leftovers, "instance kept tensors past its call; not reused");
        }
        if reuse && healthy && leftovers == 0 && warm.uses < self.inner.config.max_instance_reuses {
            if let Some(extra) =
                self.inner
                    .warm
                    .put(key, warm, self.inner.config.max_idle_per_component)
            {
                self.teardown(extra);
            }
        } else {
            self.teardown(warm);
        }
        outcome
    }

    /// A fresh instance of `component`, instantiated under the call's limits.
    async fn instantiate(
        &self,
        component: &Component,
        limits: &SandboxLimits,
        ctx: &CallContext,
        deadline: Instant,
    ) -> Result<Warm, RuntimeError> {
        let (mut store, permit) = self
            .new_store(component.label.clone(), &ctx.tenant, deadline)
            .await?;
        prepare(&mut store, limits, ctx, deadline);
        let made = tokio::time::timeout_at(deadline.into(), component.pre.instantiate(&mut store))
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::new(Trap::Interrupt)));
        match made {
            Ok(instance) => Ok(Warm {
                store,
                instance,
                permit,
                uses: 0,
                idle_since: Instant::now(),
            }),
            Err(e) => {
                let err = classify_trap(e, limits);
                self.teardown(Teardown { store, permit });
                Err(err)
            }
        }
    }

    /// Reads a component's signature in a fresh instance, on the compute
    /// pool, under its own deadline (instantiation and blocking calls included).
    async fn describe(&self, pre: &Pre, label: Arc<str>) -> Result<Signature, RuntimeError> {
        let limits = SandboxLimits {
            deadline: DESCRIBE_DEADLINE,
            ..SandboxLimits::default()
        };
        let deadline = Instant::now() + limits.deadline;
        let (this, pre) = (self.clone(), pre.clone());
        let work = async move {
            let tenant: Arc<str> = DESCRIBE_TENANT.into();
            let (mut store, permit) = this.new_store(label, &tenant, deadline).await?;
            arm_deadline(&mut store, deadline);
            let call = async {
                let instance = pre.instantiate(&mut store).await?;
                instance.describe(&mut store).await
            };
            let result = tokio::time::timeout_at(deadline.into(), call)
                .await
                .unwrap_or_else(|_| Err(wasmtime::Error::new(Trap::Interrupt)));
            let outcome = result.map_err(|e| classify_trap(e, &limits));
            store.data().flush_logs();
            this.teardown(Teardown { store, permit });
            outcome
        };
        let tenant: Arc<str> = DESCRIBE_TENANT.into();
        self.inner.compute.run(&tenant, deadline, |_| work).await?
    }

    /// Per-call limits within what the engine was built for.
    fn clamp(&self, limits: &SandboxLimits) -> SandboxLimits {
        let mut limits = limits.clone();
        limits.memory_bytes = limits.memory_bytes.min(self.inner.config.max_memory_bytes);
        limits
    }

    /// Takes an instance slot: evicting an idle warm instance if none is free,
    /// then waiting (in a bounded queue) until `deadline`.
    async fn admit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, RuntimeError> {
        let inner = &self.inner;
        if let Ok(permit) = inner.admission.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if let Some(idle) = inner.warm.evict_oldest() {
            // Free the idle instance's slot here (the allocator must see it
            // released before this call instantiates), then take it over.
            let Warm { store, permit, .. } = idle;
            drop(store);
            return Ok(permit);
        }
        let overloaded = || {
            RuntimeError::Overloaded(format!(
                "all {} instance slots are busy",
                inner.config.max_instances
            ))
        };
        if inner.waiting.fetch_add(1, Ordering::AcqRel) >= inner.config.max_waiting_calls {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(overloaded());
        }
        let acquired =
            tokio::time::timeout_at(deadline.into(), inner.admission.clone().acquire_owned()).await;
        inner.waiting.fetch_sub(1, Ordering::AcqRel);
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(overloaded()),
        }
    }

    async fn new_store(
        &self,
        label: Arc<str>,
        tenant: &Arc<str>,
        deadline: Instant,
    ) -> Result<(Store<CallState>, OwnedSemaphorePermit), RuntimeError> {
        let permit = self.admit(deadline).await?;
        let mut state = CallState::new(label);
        state.charge_to(self.inner.budgets.account(tenant));
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| s);
        Ok((store, permit))
    }

    /// Bytes of linear memory all instances hold now, and the host's budget for it.
    pub fn instance_memory(&self) -> (usize, usize) {
        (self.inner.budgets.used(), self.inner.budgets.limit())
    }

    fn teardown(&self, doomed: impl Into<Teardown>) {
        if let Err(mpsc::SendError(doomed)) = self.inner.reaper.send(doomed.into()) {
            drop(doomed);
        }
    }
}

/// `describe()` at push gets this long, instantiation included.
const DESCRIBE_DEADLINE: Duration = Duration::from_secs(1);
/// The compute-pool share and memory account that `describe()` runs under:
/// pushes of every tenant together take at most this share of the pool.
const DESCRIBE_TENANT: &str = "<describe>";

/// The teardown thread: drops stores sent to it (off the request path) and,
/// between them, expires warm instances idle for longer than `ttl`.
fn teardown_loop(doomed: &mpsc::Receiver<Teardown>, pool: &WarmPool, ttl: Duration) {
    let sweep_every = (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut last_sweep = Instant::now();
    loop {
        match doomed.recv_timeout(sweep_every) {
            // Dropping a store returns its instance, memory and stack to the
            // pool; the permit is released only once the slot is free again.
            Ok(Teardown { store, permit }) => {
                drop(store);
                drop(permit);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = Instant::now();
            for Warm { store, permit, .. } in pool.expire(ttl) {
                drop(store);
                drop(permit);
            }
        }
    }
}

/// Readies a store for the next call: its limits, models, budgets and deadline.
fn prepare(
    store: &mut Store<CallState>,
    limits: &SandboxLimits,
    ctx: &CallContext,
    deadline: Instant,
) {
    store
        .data_mut()
        .begin_call(limits.clone(), ctx.models.clone());
    arm_deadline(store, deadline);
}

/// Checks `deadline` at every epoch tick, yielding to the executor in
/// between so a long call never monopolises a runtime thread.
fn arm_deadline(store: &mut Store<CallState>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(Trap::Interrupt))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Maps a wasmtime error from instantiation or a call to its kind.
fn classify_trap(e: wasmtime::Error, limits: &SandboxLimits) -> RuntimeError {
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return RuntimeError::MemoryLimit {
            limit: m.limit,
            requested: m.requested,
        };
    }
    if let Some(b) = e.downcast_ref::<MemoryBudgetExhausted>() {
        return RuntimeError::MemoryBudget(b.to_string());
    }
    if let Some(o) = e.downcast_ref::<OutputBudgetExceeded>() {
        return RuntimeError::OutputTooLarge(o.0.clone());
    }
    if let Some(d) = e.downcast_ref::<DeniedImport>() {
        return RuntimeError::Denied(d.0.clone());
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => RuntimeError::Timeout(limits.deadline),
            Trap::StackOverflow => RuntimeError::StackOverflow,
            Trap::AllocationTooLarge => RuntimeError::MemoryLimit {
                limit: limits.memory_bytes,
                requested: 0,
            },
            other => RuntimeError::Trap(other.to_string()),
        };
    }
    let lower = format!("{e}").to_ascii_lowercase();
    if lower.contains("concurrent") && lower.contains("limit") {
        return RuntimeError::Overloaded(format!("{e}"));
    }
    RuntimeError::Trap(format!("{e:#}"))
}

/// How long a component call may wait for a running slot in its tenant's
/// share of the compute pool (the data plane's default request deadline;
/// a client that gives up sooner cancels the wait).
const COMPUTE_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// A call's models, giving the call's compute slot back while a model runs.
struct SteppingAside {
    inner: Arc<dyn ModelBackend>,
    share: Share,
}

impl ModelBackend for SteppingAside {
    fn infer(&self, name: &str, inputs: NamedTensors) -> crate::model::InferFuture<'_> {
        let wait = self.inner.infer(name, inputs);
        Box::pin(self.share.stepping_aside(wait))
    }
}
