//! What a runner tells its cluster about itself (its heartbeat's payload),
//! and warming what the scheduler places on it.

use crate::{ServeError, Serving};
use conduit_types::Digest;
use std::time::Duration;

/// Most module digests remembered as warm (a tenant can touch any number).
const MAX_WARM: usize = 4096;

/// A runner's load, as of now.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests queued in its model executors.
    pub queue_depth: u64,
    /// Requests in flight on its data plane.
    pub in_flight: u64,
    /// Compute time its executors have spent since start (their busy time:
    /// the caller turns two reports into a busy fraction).
    pub compute: Duration,
    /// Executor instances (threads) loaded.
    pub instances: u64,
    /// Estimated memory its loaded models take, in bytes.
    pub memory_used: u64,
    /// Digests of the modules it has served or warmed (their executors,
    /// components and pipelines are loaded, unless evicted since).
    pub loaded: Vec<Digest>,
}

impl Serving {
    /// Its load now.
    pub fn load_report(&self) -> LoadReport {
        let mut report = LoadReport {
            in_flight: self.inner.metrics.pending_total(),
            ..LoadReport::default()
        };
        for e in self.inner.models.executors() {
            let stats = e.stats();
            report.queue_depth += stats.pending as u64;
            report.compute += stats.compute;
            report.instances += e.config().instances.max(1) as u64;
            report.memory_used += e.memory_estimate();
        }
        report.loaded = self
            .inner
            .warm
            .lock()
            .expect("warm lock")
            .iter()
            .copied()
            .collect();
        report.loaded.sort();
        report
    }

    /// Loads module `digest` of `tenant` ahead of its first request, with
    /// that tenant's rights: only when this runner has seen the tenant's key
    /// (a runner never holds rights its callers did not bring).
    ///
    /// # Errors
    /// [`ServeError::Unauthenticated`] when no key of `tenant` is known
    /// here; resolution and load failures.
    pub async fn warm_placed(&self, tenant: &str, digest: &Digest) -> Result<(), ServeError> {
        let Some(tenant) = self.inner.keys.find(|t| t.name == tenant) else {
            return Err(ServeError::Unauthenticated(format!(
                "no request of tenant `{tenant}` has reached this runner yet"
            )));
        };
        let manifest = self
            .resolve_reference_cached(&tenant, &digest.to_string())
            .await?;
        self.warm(&tenant, &manifest).await?;
        self.note_warm(manifest.digest);
        Ok(())
    }

    /// Remembers that `digest` is loaded here.
    pub(crate) fn note_warm(&self, digest: Digest) {
        let mut warm = self.inner.warm.lock().expect("warm lock");
        if warm.contains(&digest) {
            return;
        }
        if warm.len() >= MAX_WARM {
            warm.clear();
        }
        warm.insert(digest);
    }
}
