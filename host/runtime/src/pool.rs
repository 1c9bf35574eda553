//! Warm instances: instantiated components kept between calls of one tenant.
//!
//! A fresh instance per call costs ~70 µs on this class of machine (mostly
//! copy-on-write page faults and the TLB shootdowns of tearing the memory
//! down); reusing a warm one costs a few µs. Instances are keyed by
//! (component, tenant) so no state can cross tenants, recycled after a fixed
//! number of calls, never reused after a trap or when the guest kept tensor
//! handles past its call, evicted (oldest first) when the instance pool runs
//! out of slots, and expired after an idle time so their memory goes back.

use crate::Digest;
use crate::abi::Bound;
use crate::state::CallState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;

/// An instance with its store and the pool slot it occupies.
pub(crate) struct Warm {
    pub store: Store<CallState>,
    pub instance: Bound,
    pub permit: OwnedSemaphorePermit,
    pub uses: u32,
    pub idle_since: Instant,
}

/// A store on its way to the teardown thread, with the slot it frees.
pub(crate) struct Teardown {
    pub store: Store<CallState>,
    pub permit: OwnedSemaphorePermit,
}

impl From<Warm> for Teardown {
    fn from(w: Warm) -> Self {
        Self {
            store: w.store,
            permit: w.permit,
        }
    }
}

/// Which instances may serve a call.
pub(crate) type PoolKey = (Digest, Arc<str>);

/// Idle warm instances, by key.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<HashMap<PoolKey, Vec<Warm>>>,
}

impl WarmPool {
    /// Takes the most recently used idle instance for `key`.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<Warm> {
        self.idle
            .lock()
            .expect("warm pool lock")
            .get_mut(key)?
            .pop()
    }

    /// Keeps `warm` for reuse; returns it instead when `key` already has `max_idle`.
    pub(crate) fn put(&self, key: PoolKey, mut warm: Warm, max_idle: usize) -> Option<Warm> {
        let mut idle = self.idle.lock().expect("warm pool lock");
        let list = idle.entry(key).or_default();
        if list.len() >= max_idle {
            return Some(warm);
        }
        warm.idle_since = Instant::now();
        list.push(warm);
        None
    }

    /// Removes the instance idle the longest, to free its slot.
    pub(crate) fn evict_oldest(&self) -> Option<Warm> {
        let mut idle = self.idle.lock().expect("warm pool lock");
        let key = idle
            .iter()
            .filter_map(|(k, list)| list.first().map(|w| (w.idle_since, k.clone())))
            .min_by_key(|(since, _)| *since)?
            .1;
        let list = idle.get_mut(&key)?;
        let warm = list.remove(0);
        if list.is_empty() {
            idle.remove(&key);
        }
        Some(warm)
    }

    /// Removes every instance idle for longer than `ttl`, so that its memory
    /// (and its slot) goes back to the host.
    pub(crate) fn expire(&self, ttl: std::time::Duration) -> Vec<Warm> {
        let mut idle = self.idle.lock().expect("warm pool lock");
        let mut expired = Vec::new();
        idle.retain(|_, list| {
            // Oldest first: `put` appends.
            let keep_from = list
                .iter()
                .position(|w| w.idle_since.elapsed() < ttl)
                .unwrap_or(list.len());
            expired.extend(list.drain(..keep_from));
            !list.is_empty()
        });
        expired
    }

    /// Removes every idle instance of `digest` (when it is unloaded).
    pub(crate) fn remove_component(&self, digest: &Digest) -> Vec<Warm> {
        let mut idle = self.idle.lock().expect("warm pool lock");
        let keys: Vec<PoolKey> = idle.keys().filter(|(d, _)| d == digest).cloned().collect();
        keys.into_iter()
            .flat_map(|k| idle.remove(&k).unwrap_or_default())
            .collect()
    }
}
