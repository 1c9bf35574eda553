//! What a runner tells its cluster about itself (its heartbeat's payload),
//! warming what the scheduler places on it and releasing what it no longer
//! places here.

use crate::{ServeError, Serving};
use conduit_registry::Kind;
use conduit_types::Digest;
use std::time::{Duration, Instant};

/// Most module digests tracked (a tenant can touch any number): past it,
/// the idle ones are forgotten.
const MAX_TRACKED: usize = 4096;

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
    /// How each module requested here is used, cumulative since it was
    /// first requested (the caller turns two reports into rates).
    pub modules: Vec<ModuleUse>,
}

/// One module's use on this runner, cumulative.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleUse {
    /// The module.
    pub digest: Digest,
    /// Requests finished.
    pub requests: u64,
    /// Time at least one of its requests was in flight: its busy time.
    pub busy: Duration,
    /// Time its finished requests waited before running (admission and
    /// queues), summed.
    pub queued: Duration,
    /// Its requests in flight now.
    pub in_flight: u64,
    /// Since its last request started or finished.
    pub idle: Duration,
}

/// How one module is used here (kept per digest).
#[derive(Debug)]
pub(crate) struct Usage {
    warm: bool,
    requests: u64,
    busy: Duration,
    queued: Duration,
    in_flight: u64,
    busy_since: Option<Instant>,
    last: Instant,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            warm: false,
            requests: 0,
            busy: Duration::ZERO,
            queued: Duration::ZERO,
            in_flight: 0,
            busy_since: None,
            last: Instant::now(),
        }
    }
}

/// One request's use of a module: ended by [`InUse::done`], or when
/// dropped (the caller went away).
pub(crate) struct InUse {
    serving: Serving,
    digest: Digest,
    open: bool,
}

impl InUse {
    /// The request finished: `queued` is how long it waited; a success
    /// marks the module warm.
    pub(crate) fn done(mut self, queued: Duration, success: bool) {
        self.end(queued, success);
    }

    fn end(&mut self, queued: Duration, success: bool) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut usage = self.serving.inner.usage.lock().expect("usage lock");
        let Some(u) = usage.get_mut(&self.digest) else {
            return;
        };
        let now = Instant::now();
        u.in_flight = u.in_flight.saturating_sub(1);
        u.requests += 1;
        u.queued += queued;
        u.last = now;
        u.warm |= success;
        if u.in_flight == 0
            && let Some(since) = u.busy_since.take()
        {
            u.busy += now - since;
        }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.end(Duration::ZERO, false);
    }
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
        let now = Instant::now();
        let usage = self.inner.usage.lock().expect("usage lock");
        for (digest, u) in usage.iter() {
            if u.warm {
                report.loaded.push(*digest);
            }
            report.modules.push(ModuleUse {
                digest: *digest,
                requests: u.requests,
                busy: u.busy + u.busy_since.map_or(Duration::ZERO, |s| now - s),
                queued: u.queued,
                in_flight: u.in_flight,
                idle: now.saturating_duration_since(u.last),
            });
        }
        drop(usage);
        report.loaded.sort();
        report.modules.sort_by_key(|m| m.digest);
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

    /// Lets go of module `digest` here: it no longer counts as loaded, and
    /// when it is a model its executors are freed; when it is a pipeline,
    /// its definition is dropped and so are the executors of its step models
    /// that no other loaded pipeline uses and that are not loaded in their
    /// own right. A request for it later loads it again. Returns whether it
    /// was loaded.
    pub fn release(&self, digest: &Digest) -> bool {
        let was = {
            let mut usage = self.inner.usage.lock().expect("usage lock");
            match usage.get_mut(digest) {
                Some(u) if u.in_flight == 0 => usage.remove(digest).is_some_and(|u| u.warm),
                Some(u) => std::mem::replace(&mut u.warm, false),
                None => false,
            }
        };
        let (pipeline, others) = {
            let mut pipelines = self.inner.pipelines.lock().expect("pipelines lock");
            let def = pipelines.remove(digest);
            let others: Vec<Digest> = pipelines
                .values()
                .flat_map(|p| p.steps.iter().map(|s| s.digest))
                .collect();
            (def, others)
        };
        match pipeline {
            Some(def) => {
                let warm: Vec<Digest> = {
                    let usage = self.inner.usage.lock().expect("usage lock");
                    usage
                        .iter()
                        .filter(|(_, u)| u.warm)
                        .map(|(d, _)| *d)
                        .collect()
                };
                for step in def.steps.iter().filter(|s| s.kind == Kind::Model) {
                    if !others.contains(&step.digest) && !warm.contains(&step.digest) {
                        self.free_executors(&step.digest);
                    }
                }
            }
            None => self.free_executors(digest),
        }
        was
    }

    /// Frees the executors of model `digest`, if it is a model loaded here.
    fn free_executors(&self, digest: &Digest) {
        let Some(manifest) = self.inner.resolved.find(|m| &m.digest == digest) else {
            return;
        };
        if manifest.kind != Kind::Model {
            return;
        }
        if let Ok(config) = self
            .inner
            .backends
            .config(&manifest.digest.short(), &manifest.executor)
        {
            let key = crate::serving::executor_key(&manifest.digest, &config);
            self.inner
                .model_users
                .lock()
                .expect("model users lock")
                .remove(&key);
            self.inner.models.remove(&key);
        }
    }

    /// A request of module `digest` starts.
    pub(crate) fn begin_use(&self, digest: Digest) -> InUse {
        let mut usage = self.inner.usage.lock().expect("usage lock");
        if usage.len() >= MAX_TRACKED && !usage.contains_key(&digest) {
            usage.retain(|_, u| u.in_flight > 0 || u.warm);
            if usage.len() >= MAX_TRACKED {
                usage.retain(|_, u| u.in_flight > 0);
            }
        }
        let u = usage.entry(digest).or_default();
        let now = Instant::now();
        u.in_flight += 1;
        u.last = now;
        u.busy_since.get_or_insert(now);
        drop(usage);
        InUse {
            serving: self.clone(),
            digest,
            open: true,
        }
    }

    /// Remembers that `digest` is loaded here.
    pub(crate) fn note_warm(&self, digest: Digest) {
        let mut usage = self.inner.usage.lock().expect("usage lock");
        if usage.len() >= MAX_TRACKED && !usage.contains_key(&digest) {
            usage.retain(|_, u| u.in_flight > 0);
        }
        usage.entry(digest).or_default().warm = true;
    }
}
