//! The one place that configures wasmtime: engine flags, the pooling
//! allocator, Cranelift, and the epoch ticker that enforces deadlines.

use crate::RuntimeError;
use crate::limits::EngineConfig;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// Core instances a component may contain (wit-component emits a few shims).
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Tables a component may contain.
const TABLES_PER_COMPONENT: u32 = 8;
/// Freed slots decommitted together: one batch of `madvise`s (and TLB
/// shootdowns) per 16 fresh instances made a fresh-instance call ~63 → ~45 µs.
const DECOMMIT_BATCH: usize = 16;
/// Elements per table (Rust guests keep a function table of a few hundred).
const TABLE_ELEMENTS: usize = 20_000;

/// Builds the engine every component in this process is compiled for and run on.
///
/// # Errors
/// [`RuntimeError::Internal`] when wasmtime rejects the configuration (for
/// example, the machine cannot reserve the pool's virtual memory).
pub fn build_engine(cfg: &EngineConfig) -> Result<Engine, RuntimeError> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(cfg.max_instances)
        .total_core_instances(cfg.max_instances * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(cfg.max_instances * 2)
        .max_memories_per_component(2)
        .total_tables(cfg.max_instances * TABLES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(cfg.max_instances)
        .max_memory_size(cfg.max_memory_bytes)
        .linear_memory_keep_resident(cfg.memory_keep_resident)
        .table_keep_resident(64 << 10)
        .decommit_batch_size(DECOMMIT_BATCH);

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        .epoch_interruption(true)
        .max_wasm_stack(cfg.max_wasm_stack)
        .async_stack_size(cfg.max_wasm_stack + (1 << 20))
        .wasm_component_model(true)
        // Component-model async (streams, futures) doubles per-call cost and no
        // Conduit world uses it.
        .concurrency_support(false)
        .memory_init_cow(true);
    Engine::new(&config)
        .map_err(|e| RuntimeError::Internal(format!("building wasmtime engine: {e}")))
}

/// A stable hash of everything that makes a precompiled artifact loadable by
/// this engine (wasmtime version, target, flags). Part of the disk-cache key.
pub fn compatibility_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Advances the engine's epoch every tick until dropped.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub fn start(engine: Engine, tick: std::time::Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("conduit-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
