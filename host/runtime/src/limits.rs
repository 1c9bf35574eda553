//! Per-call sandbox limits and the engine-wide pool sizes they live within.

use std::time::Duration;

/// Limits applied to one component call (configurable per tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Linear memory a call may grow to, in bytes (capped by [`EngineConfig::max_memory_bytes`]).
    pub memory_bytes: usize,
    /// Wall-clock time a call may take, including instantiation.
    pub deadline: Duration,
    /// Bytes of tensors a call may create (outputs and intermediates).
    pub max_output_bytes: usize,
    /// Tensor handles a call may create.
    pub max_tensors: usize,
    /// Bytes of guest log records and stdout/stderr kept per call; the rest is dropped.
    pub max_log_bytes: usize,
    /// Reuse warm instances of a component for later calls of the same
    /// tenant (see [`EngineConfig::max_instance_reuses`]). `false` gives every
    /// call a fresh instance: strict isolation between requests, at ~70 µs more
    /// per call.
    pub reuse_instances: bool,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            deadline: Duration::from_secs(1),
            max_output_bytes: 64 << 20,
            max_tensors: 10_000,
            max_log_bytes: 64 << 10,
            reuse_instances: true,
        }
    }
}

/// How the one wasmtime engine is built: pool sizes, compilation, interruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Component instances alive at once (calls in flight plus those being torn down).
    pub max_instances: u32,
    /// The largest linear memory any call may have; per-call limits stay below it.
    pub max_memory_bytes: usize,
    /// Calls that may wait for a free instance slot; past that, calls fail
    /// fast with `Overloaded`. A waiting call still fails when its deadline passes.
    pub max_waiting_calls: u32,
    /// Idle warm instances kept per (component, tenant); more are torn down.
    pub max_idle_per_component: usize,
    /// Calls one instance serves before it is recycled (torn down for a fresh one).
    pub max_instance_reuses: u32,
    /// Bytes of each linear memory kept resident between uses (zeroed, not unmapped).
    pub memory_keep_resident: usize,
    /// WebAssembly stack for guest code, in bytes (deeper recursion is a stack overflow).
    pub max_wasm_stack: usize,
    /// How often the epoch advances; deadlines are checked (and long calls yield) per tick.
    pub epoch_tick: Duration,
    /// Idle warm instances older than this are torn down, returning their memory.
    pub idle_instance_ttl: Duration,
    /// Threads of the compute pool that runs guest code (off the request threads).
    pub compute_threads: usize,
    /// Component calls one tenant may run on the compute pool at once (default:
    /// half of `compute_threads`, at least 1); more wait (within their
    /// deadline), so one tenant can never hold every thread of the pool.
    pub max_running_per_tenant: usize,
    /// Linear memory all instances together may hold, in bytes.
    pub instance_memory_budget: usize,
    /// Linear memory the instances of one tenant may hold together, in bytes.
    pub tenant_instance_memory_budget: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            max_instances: 256,
            max_waiting_calls: 1024,
            max_idle_per_component: 8,
            max_instance_reuses: 1000,
            max_memory_bytes: 256 << 20,
            memory_keep_resident: 0,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(2),
            idle_instance_ttl: Duration::from_secs(10),
            compute_threads: threads,
            // Half the pool: however many calls one tenant sends, the other
            // half of the threads stays free for everyone else's.
            max_running_per_tenant: (threads / 2).max(1),
            instance_memory_budget: 6 << 30,
            tenant_instance_memory_budget: 2 << 30,
        }
    }
}
