//! The component runtime: load (compile, cache, validate, describe) and call.

use crate::bindings::{Param, Pipeline, PipelinePre, conduit::compute::types::NamedTensor};
use crate::component::{Component, classify_world};
use crate::engine::{EpochTicker, build_engine, compatibility_key};
use crate::linker::{DeniedImport, base_linker, component_linker};
use crate::model::NamedTensors;
use crate::state::{CallState, MemoryLimitExceeded, OutputBudgetExceeded, from_wit_error};
use crate::{Digest, EngineConfig, ModelBackend, RuntimeError, SandboxLimits, Signature};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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
/// Each call gets a fresh instance from the pooling allocator (no state
/// survives between requests or leaks across tenants); teardown happens on a
/// background thread, off the request path.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<CallState>,
    cache_dir: Option<PathBuf>,
    compat: String,
    max_memory: usize,
    max_instances: u32,
    components: RwLock<HashMap<Digest, Arc<Component>>>,
    admission: Arc<Semaphore>,
    waiting: AtomicU32,
    max_waiting: u32,
    reaper: mpsc::Sender<(Store<CallState>, OwnedSemaphorePermit)>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.inner.cache_dir)
            .field("max_instances", &self.inner.max_instances)
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
        let (reaper, stores) = mpsc::channel::<(Store<CallState>, OwnedSemaphorePermit)>();
        std::thread::Builder::new()
            .name("conduit-teardown".into())
            .spawn(move || {
                // Dropping a store returns its instance, memory and stack to the
                // pool; the permit is released only once the slot is free again.
                for (store, permit) in stores {
                    drop(store);
                    drop(permit);
                }
            })
            .map_err(|e| RuntimeError::Internal(format!("spawning teardown thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                compat: compatibility_key(&engine),
                _ticker: EpochTicker::start(engine.clone(), config.engine.epoch_tick),
                engine,
                linker,
                cache_dir: config.cache_dir,
                max_memory: config.engine.max_memory_bytes,
                max_instances: config.engine.max_instances,
                components: RwLock::default(),
                admission: Arc::new(Semaphore::new(config.engine.max_instances as usize)),
                waiting: AtomicU32::new(0),
                max_waiting: config.engine.max_waiting_calls,
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
        let (compiled, world, pre) =
            tokio::task::spawn_blocking(move || -> Result<_, RuntimeError> {
                let compiled = inner.compile(&digest, &owned)?;
                let world = classify_world(&inner.engine, &compiled)?;
                let linker = component_linker(&inner.linker, &compiled)?;
                let pre = linker
                    .instantiate_pre(&compiled)
                    .and_then(PipelinePre::new)
                    .map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))?;
                Ok((compiled, world, pre))
            })
            .await
            .map_err(|e| RuntimeError::Internal(format!("compile task failed: {e}")))??;
        drop(compiled);
        let label: Arc<str> = digest.short().into();
        let signature = self
            .describe(&pre, label.clone())
            .await
            .map_err(|e| RuntimeError::InvalidComponent(format!("describe() failed: {e}")))?;
        let component = Arc::new(Component {
            digest,
            world,
            signature,
            pre,
            label,
        });
        tracing::info!(component = %digest, %world, elapsed_ms = started.elapsed().as_millis() as u64, "component loaded");
        let mut map = self.inner.components.write().expect("component map lock");
        Ok(map.entry(digest).or_insert(component).clone())
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

    /// Instance slots taken right now (calls running plus instances being torn down).
    pub fn slots_in_use(&self) -> usize {
        self.inner.max_instances as usize - self.inner.admission.available_permits()
    }

    /// Forgets a loaded component (its disk-cache entry stays).
    pub fn unload(&self, digest: &Digest) -> bool {
        self.inner
            .components
            .write()
            .expect("component map lock")
            .remove(digest)
            .is_some()
    }

    /// Runs `component.process(inputs, params)` in a fresh sandboxed instance.
    ///
    /// `models` serves the component's `model.infer` calls (pipeline world);
    /// without it such calls return `unsupported`.
    ///
    /// # Errors
    /// [`RuntimeError::Guest`] when the component returns an error; a trap
    /// kind ([`RuntimeError::Timeout`], [`RuntimeError::MemoryLimit`],
    /// [`RuntimeError::StackOverflow`], [`RuntimeError::OutputTooLarge`],
    /// [`RuntimeError::Denied`], [`RuntimeError::Trap`]) when the sandbox stops
    /// it; [`RuntimeError::Overloaded`] when every instance slot is busy and
    /// either the wait queue is full or no slot frees up before the deadline.
    pub async fn process(
        &self,
        component: &Component,
        inputs: NamedTensors,
        params: &[Param],
        limits: &SandboxLimits,
        models: Option<Arc<dyn ModelBackend>>,
    ) -> Result<NamedTensors, RuntimeError> {
        let (mut store, permit) = self
            .new_store(component.label.clone(), limits, models)
            .await?;
        let result = call_process(&component.pre, &mut store, inputs, params).await;
        let outcome = match result {
            Ok(Ok(outputs)) => take_outputs(&mut store, outputs),
            Ok(Err(e)) => Err(RuntimeError::Guest(from_wit_error(e))),
            Err(e) => Err(classify_trap(e, store.data().limits())),
        };
        self.finish(store, permit);
        outcome
    }

    async fn describe(
        &self,
        pre: &PipelinePre<CallState>,
        label: Arc<str>,
    ) -> Result<Signature, RuntimeError> {
        let limits = SandboxLimits::default();
        let (mut store, permit) = self.new_store(label, &limits, None).await?;
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .conduit_compute_processor()
                .call_describe(&mut store)
                .await
        }
        .await;
        let outcome = result
            .map(Signature::from)
            .map_err(|e| classify_trap(e, store.data().limits()));
        self.finish(store, permit);
        outcome
    }

    /// Takes an instance slot, waiting (in a bounded queue) until `deadline`.
    async fn admit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, RuntimeError> {
        let inner = &self.inner;
        if let Ok(permit) = inner.admission.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let overloaded = || RuntimeError::Overloaded(inner.max_instances);
        if inner.waiting.fetch_add(1, Ordering::AcqRel) >= inner.max_waiting {
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
        limits: &SandboxLimits,
        models: Option<Arc<dyn ModelBackend>>,
    ) -> Result<(Store<CallState>, OwnedSemaphorePermit), RuntimeError> {
        let deadline = Instant::now() + limits.deadline;
        let permit = self.admit(deadline).await?;
        let mut limits = limits.clone();
        limits.memory_bytes = limits.memory_bytes.min(self.inner.max_memory);
        let mut store = Store::new(&self.inner.engine, CallState::new(label, limits, models));
        store.limiter(|s| s);
        // Check the deadline at every epoch tick, yielding to the executor in
        // between so a long call never monopolises a runtime thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(Trap::Interrupt))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok((store, permit))
    }

    fn finish(&self, store: Store<CallState>, permit: OwnedSemaphorePermit) {
        store.data().flush_logs();
        if let Err(mpsc::SendError((store, permit))) = self.inner.reaper.send((store, permit)) {
            drop(store);
            drop(permit);
        }
    }
}

async fn call_process(
    pre: &PipelinePre<CallState>,
    store: &mut Store<CallState>,
    inputs: NamedTensors,
    params: &[Param],
) -> wasmtime::Result<Result<Vec<NamedTensor>, crate::bindings::WitError>> {
    let instance: Pipeline = pre.instantiate_async(&mut *store).await?;
    let mut handles = Vec::with_capacity(inputs.len());
    for (name, tensor) in inputs {
        handles.push(NamedTensor {
            name,
            tensor: store.data_mut().table.push(tensor)?,
        });
    }
    instance
        .conduit_compute_processor()
        .call_process(&mut *store, &handles, params)
        .await
}

fn take_outputs(
    store: &mut Store<CallState>,
    outputs: Vec<NamedTensor>,
) -> Result<NamedTensors, RuntimeError> {
    let table = &mut store.data_mut().table;
    outputs
        .into_iter()
        .map(|o| {
            let tensor = table
                .delete(o.tensor)
                .map_err(|e| RuntimeError::Internal(format!("output `{}`: {e}", o.name)))?;
            Ok((o.name, tensor))
        })
        .collect()
}

/// Maps a wasmtime error from instantiation or a call to its kind.
fn classify_trap(e: wasmtime::Error, limits: &SandboxLimits) -> RuntimeError {
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return RuntimeError::MemoryLimit {
            limit: m.limit,
            requested: m.requested,
        };
    }
    if let Some(o) = e.downcast_ref::<OutputBudgetExceeded>() {
        return RuntimeError::OutputTooLarge(o.0.clone());
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
    if let Some(d) = e.downcast_ref::<DeniedImport>() {
        return RuntimeError::Denied(d.0.clone());
    }
    let lower = format!("{e}").to_ascii_lowercase();
    if lower.contains("concurrent") && lower.contains("limit") {
        return RuntimeError::Overloaded(0);
    }
    RuntimeError::Trap(format!("{e:#}"))
}

impl Inner {
    /// Compiles `bytes`, or loads the artifact a previous run cached for this engine.
    fn compile(
        &self,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<wasmtime::component::Component, RuntimeError> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", digest.hex(), self.compat)));
        if let Some(path) = &cached
            && path.exists()
        {
            // Read into memory rather than mmap the file: a cache entry that is
            // truncated or replaced under a running process must not crash it.
            let loaded = std::fs::read(path)
                .map_err(wasmtime::Error::from)
                .and_then(|artifact| {
                    // SAFETY: the artifact was written by `Component::serialize` of an
                    // engine with the same compatibility key (part of the file name),
                    // and wasmtime checks that key and the artifact's header again.
                    unsafe { wasmtime::component::Component::deserialize(&self.engine, &artifact) }
                });
            match loaded {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unreadable cached component: {e}");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(RuntimeError::InvalidComponent(
                "not a WebAssembly binary (missing the \\0asm header)".into(),
            ));
        }
        let component = wasmtime::component::Component::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        if let Some(path) = &cached
            && let Err(e) = write_atomically(path, &component)
        {
            tracing::warn!(path = %path.display(), "not caching compiled component: {e}");
        }
        Ok(component)
    }
}

fn write_atomically(
    path: &Path,
    component: &wasmtime::component::Component,
) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
