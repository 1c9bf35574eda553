//! Loaded models by digest, within a memory budget: loaded lazily on first
//! use, evicted least-recently-used when idle, never while in use.

use super::{Executor, ExecutorError};
use conduit_types::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the cache has done (for logs and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Models loaded now.
    pub loaded: usize,
    /// Their estimated memory.
    pub bytes: u64,
    /// Loads since start.
    pub loads: u64,
    /// Evictions since start.
    pub evictions: u64,
    /// Time spent loading, summed.
    pub load_time: Duration,
}

struct Entry {
    executor: Executor,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<Digest, Entry>,
    stats: CacheStats,
}

/// Loaded models keyed by the digest of their bytes (so tenants pushing the
/// same model share one loaded copy), bounded by a memory budget.
#[derive(Clone)]
pub struct ModelCache {
    state: Arc<Mutex<State>>,
    /// One lock per digest being loaded: two requests for one model load it
    /// once, while different models load side by side.
    loading: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
    budget: u64,
}

impl std::fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache")
            .field("budget", &self.budget)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ModelCache {
    /// A cache holding at most `budget` bytes of (estimated) model memory.
    pub fn new(budget: u64) -> Self {
        Self {
            state: Arc::default(),
            loading: Arc::default(),
            budget,
        }
    }

    /// The loaded model for `digest`, loading it with `load` (on a blocking
    /// thread) when absent. `size` is the model's byte size, to make room
    /// before loading.
    ///
    /// # Errors
    /// What `load` returns; [`ExecutorError::MemoryBudget`] when the model
    /// cannot fit because every loaded model is in use.
    pub async fn get_or_load<F>(
        &self,
        digest: Digest,
        size: u64,
        load: F,
    ) -> Result<Executor, ExecutorError>
    where
        F: FnOnce() -> Result<Executor, ExecutorError> + Send + 'static,
    {
        if let Some(e) = self.get(&digest) {
            return Ok(e);
        }
        let lock = self
            .loading
            .lock()
            .expect("model cache loading lock")
            .entry(digest)
            .or_default()
            .clone();
        let _one_load_per_model = lock.lock().await;
        let result = self.load_locked(digest, size, load).await;
        let mut loading = self.loading.lock().expect("model cache loading lock");
        // The last waiter removes the lock entry.
        if Arc::strong_count(&lock) <= 2 {
            loading.remove(&digest);
        }
        result
    }

    async fn load_locked<F>(
        &self,
        digest: Digest,
        size: u64,
        load: F,
    ) -> Result<Executor, ExecutorError>
    where
        F: FnOnce() -> Result<Executor, ExecutorError> + Send + 'static,
    {
        if let Some(e) = self.get(&digest) {
            return Ok(e);
        }
        self.make_room(size)?;
        let started = Instant::now();
        let executor = tokio::task::spawn_blocking(load)
            .await
            .map_err(|e| ExecutorError::Unavailable(format!("model load task failed: {e}")))??;
        let took = started.elapsed();
        let mut state = self.state.lock().expect("model cache lock");
        state.stats.loads += 1;
        state.stats.load_time += took;
        tracing::info!(model = %executor.config().name, %digest, backend = executor.backend(),
            load_ms = took.as_millis() as u64, bytes = executor.memory_estimate(), "model loaded");
        state.entries.insert(
            digest,
            Entry {
                executor: executor.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(executor)
    }

    /// The loaded model for `digest`, if loaded (marks it used).
    pub fn get(&self, digest: &Digest) -> Option<Executor> {
        let mut state = self.state.lock().expect("model cache lock");
        let entry = state.entries.get_mut(digest)?;
        entry.last_used = Instant::now();
        Some(entry.executor.clone())
    }

    /// Drops the loaded model for `digest` (requests holding it finish on
    /// it); `true` when it was loaded.
    pub fn remove(&self, digest: &Digest) -> bool {
        let mut state = self.state.lock().expect("model cache lock");
        state.entries.remove(digest).is_some()
    }

    /// Evicts idle models, least recently used first, until `incoming` more
    /// bytes fit in the budget.
    fn make_room(&self, incoming: u64) -> Result<(), ExecutorError> {
        let mut state = self.state.lock().expect("model cache lock");
        loop {
            let used: u64 = state
                .entries
                .values()
                .map(|e| e.executor.memory_estimate())
                .sum();
            if used + incoming <= self.budget {
                return Ok(());
            }
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| !e.executor.in_use())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(d, _)| *d);
            let Some(victim) = victim else {
                return Err(ExecutorError::MemoryBudget(format!(
                    "loading a {incoming}-byte model would exceed the model memory budget of {} bytes ({used} in use by busy models); retry later",
                    self.budget
                )));
            };
            let entry = state.entries.remove(&victim).expect("victim is present");
            state.stats.evictions += 1;
            tracing::info!(model = %entry.executor.config().name, digest = %victim,
                bytes = entry.executor.memory_estimate(), "model evicted");
        }
    }

    /// Every loaded executor.
    pub fn executors(&self) -> Vec<Executor> {
        let state = self.state.lock().expect("model cache lock");
        state.entries.values().map(|e| e.executor.clone()).collect()
    }

    /// Current totals.
    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock().expect("model cache lock");
        CacheStats {
            loaded: state.entries.len(),
            bytes: state
                .entries
                .values()
                .map(|e| e.executor.memory_estimate())
                .sum(),
            ..state.stats
        }
    }
}
