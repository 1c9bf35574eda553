//! One loaded model served by worker threads behind a bounded queue.

use super::batch::{Counters, Instance, Job, Reply, account, worker};
use super::rows::{check_inputs, chunk, concat};
use super::{Backend, ExecutorError, ModelConfig};
use conduit_types::{NamedTensors, Signature};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Totals since the executor started (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Requests waiting in the queue now.
    pub pending: usize,
    /// Requests run.
    pub requests: u64,
    /// Rows run (the inference count).
    pub rows: u64,
    /// Batches run (the execution count).
    pub batches: u64,
    /// Time requests spent queued, summed.
    pub queue: Duration,
    /// Time batches spent running, summed.
    pub compute: Duration,
    /// Requests whose batch failed.
    pub failures: u64,
}

/// Where one request's time went inside an executor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTiming {
    /// Waiting in the queue for a batch to form and a worker to take it.
    pub queue: Duration,
    /// Running the batch the request was part of.
    pub compute: Duration,
    /// Batches this request led (was the first of): summed over requests,
    /// each batch run counts once — Triton's execution count.
    pub executions: u64,
    /// Rows of the batches this request led (summed, like `executions`; 0
    /// when it joined another's batch): with `executions`, the batch sizes
    /// the executor ran.
    pub batch_rows: u64,
}

/// A model served by `config.instances` worker threads, each with its own
/// copy loaded by the backend, fed by one bounded queue with dynamic
/// batching. Cheap to clone; the workers stop when the last clone drops.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// Largest input (bytes, all tensors) a request may run inline with.
const INLINE_MAX_BYTES: usize = 64 << 10;

struct Inner {
    config: ModelConfig,
    signature: Signature,
    backend: &'static str,
    queue: SyncSender<Job>,
    counters: Arc<Counters>,
    /// Every instance's model (see [`Executor::try_inline`]).
    instances: Vec<Instance>,
    size: u64,
    /// Queue entries each tenant holds now (see [`Executor::infer_for`]).
    shares: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("model", &self.inner.config.name)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Loads `bytes` once per instance (each on its own thread) and starts
    /// serving. Returns when every instance has loaded.
    ///
    /// # Errors
    /// The first instance's load error ([`ExecutorError::Load`],
    /// [`ExecutorError::Unavailable`]).
    pub fn start(
        backend: Arc<dyn Backend>,
        bytes: &[u8],
        signature: Signature,
        config: ModelConfig,
    ) -> Result<Self, ExecutorError> {
        let (tx, rx) = sync_channel::<Job>(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(Counters::default());
        let bytes: Arc<[u8]> = bytes.into();
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let instances = config.instances.max(1);
        for i in 0..instances {
            let (backend, bytes, signature, config) = (
                backend.clone(),
                bytes.clone(),
                signature.clone(),
                config.clone(),
            );
            let (rx, counters, loaded_tx) = (rx.clone(), counters.clone(), loaded_tx.clone());
            std::thread::Builder::new()
                .name(format!("conduit-model-{}-{i}", config.name))
                .spawn(move || match backend.load(&bytes, &signature, &config) {
                    Ok(model) => {
                        let model: Instance = Arc::new(Mutex::new(model));
                        let _ = loaded_tx.send(Ok(model.clone()));
                        drop(loaded_tx);
                        drop(bytes);
                        worker(model, rx, config.batching, counters);
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                    }
                })
                .map_err(|e| ExecutorError::Unavailable(format!("spawning a model thread: {e}")))?;
        }
        drop(loaded_tx);
        // One report per instance; a thread that died without reporting
        // (a panic in the backend) ends the iteration early.
        let mut loaded = Vec::with_capacity(instances);
        for result in loaded_rx.iter().take(instances) {
            loaded.push(result?); // dropping `tx` on error stops the instances that did load
        }
        if loaded.len() < instances {
            return Err(ExecutorError::Load {
                backend: backend.name(),
                message: "a model instance thread died while loading".into(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                backend: backend.name(),
                size: bytes.len() as u64,
                config,
                signature,
                queue: tx,
                counters,
                instances: loaded,
                shares: Mutex::default(),
            }),
        })
    }

    /// The model's declared inputs and outputs.
    pub fn signature(&self) -> &Signature {
        &self.inner.signature
    }

    /// How it is served.
    pub fn config(&self) -> &ModelConfig {
        &self.inner.config
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// Size of the model's bytes (the basis of its memory estimate).
    pub fn model_size(&self) -> u64 {
        self.inner.size
    }

    /// Whether anyone besides the cache holds it or requests are queued.
    pub(crate) fn in_use(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
            || self.inner.counters.pending.load(Ordering::Relaxed) > 0
    }

    /// Estimated resident memory: the weights once per instance.
    pub fn memory_estimate(&self) -> u64 {
        self.inner.size * self.inner.config.instances.max(1) as u64
    }

    /// Whether it can serve: some instance's thread is running and the last
    /// failed batch's health check passed.
    ///
    /// # Errors
    /// [`ExecutorError::Unavailable`] saying why not.
    pub fn health(&self) -> Result<(), ExecutorError> {
        let counters = &self.inner.counters;
        if counters.alive.load(Ordering::Acquire) == 0 {
            return Err(ExecutorError::Unavailable(format!(
                "model {}: no instance is running",
                self.inner.config.name
            )));
        }
        match &*counters.unhealthy.lock().expect("health lock") {
            Some(why) => Err(ExecutorError::Unavailable(format!(
                "model {}: {why}",
                self.inner.config.name
            ))),
            None => Ok(()),
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> ExecutorStats {
        let c = &self.inner.counters;
        ExecutorStats {
            pending: c.pending.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            queue: Duration::from_micros(c.queue_us.load(Ordering::Relaxed)),
            compute: Duration::from_micros(c.compute_us.load(Ordering::Relaxed)),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// Runs the model on `inputs` (batched with other requests when the model
    /// batches). A request with more rows than the maximum batch is split and
    /// its outputs joined.
    ///
    /// # Errors
    /// [`ExecutorError::InvalidInput`] when the tensors do not fit the
    /// signature; [`ExecutorError::Overloaded`] when the queue is full;
    /// [`ExecutorError::Backend`] when the run fails.
    pub async fn infer(&self, inputs: NamedTensors) -> Result<NamedTensors, ExecutorError> {
        self.infer_timed(inputs).await.map(|(outputs, _)| outputs)
    }

    /// [`Executor::infer`], also saying how long the request queued and how
    /// long its batch computed (summed over the parts of a split request).
    ///
    /// # Errors
    /// As [`Executor::infer`].
    pub async fn infer_timed(
        &self,
        inputs: NamedTensors,
    ) -> Result<(NamedTensors, RunTiming), ExecutorError> {
        self.run(None, inputs).await
    }

    /// [`Executor::infer_timed`] for `tenant`, within its fair share of the
    /// queue: one tenant may hold at most half of the queue's entries (a
    /// request split into batches takes one per batch), so a shared model
    /// always has room for the others.
    ///
    /// # Errors
    /// As [`Executor::infer`]; [`ExecutorError::InvalidInput`] for a request
    /// that needs more batches than a share holds (retrying cannot help);
    /// [`ExecutorError::Overloaded`] when the tenant's share is full.
    pub async fn infer_for(
        &self,
        tenant: &str,
        inputs: NamedTensors,
    ) -> Result<(NamedTensors, RunTiming), ExecutorError> {
        self.run(Some(tenant), inputs).await
    }

    /// Queue entries one tenant may hold at once.
    pub fn tenant_share(&self) -> usize {
        (self.inner.config.queue_capacity / 2).max(1)
    }

    async fn run(
        &self,
        tenant: Option<&str>,
        inputs: NamedTensors,
    ) -> Result<(NamedTensors, RunTiming), ExecutorError> {
        let rows = check_inputs(&self.inner.config.name, &self.inner.signature, &inputs)?;
        let max = self.inner.config.batching.max_batch_size.max(1);
        let batches = rows.map_or(1, |n| n.div_ceil(max).max(1));
        let _share = match tenant {
            Some(t) => Some(self.take_share(t, batches, rows.unwrap_or(1), max)?),
            None => None,
        };
        match rows {
            Some(n) if n > max => {
                let parts = chunk(&inputs, n, max)?;
                let mut receivers = Vec::with_capacity(parts.len());
                for part in parts {
                    let rows = part.first().map(|(_, t)| t.shape()[0] as usize);
                    receivers.push(self.submit(part, rows)?);
                }
                let mut outputs = Vec::with_capacity(receivers.len());
                let mut timing = RunTiming::default();
                for rx in receivers {
                    let (out, t) = self.wait(rx).await?;
                    timing.queue += t.queue;
                    timing.compute += t.compute;
                    timing.executions += t.executions;
                    timing.batch_rows += t.batch_rows;
                    outputs.push(out);
                }
                let refs: Vec<&NamedTensors> = outputs.iter().collect();
                Ok((concat(&refs)?, timing))
            }
            rows => {
                if let Some(done) = self.try_inline(&inputs, rows, max) {
                    return done;
                }
                let rx = self.submit(inputs, rows)?;
                self.wait(rx).await
            }
        }
    }

    /// Runs `inputs` on the calling thread when queueing cannot help: the
    /// request cannot share a batch (the model does not batch, or it fills
    /// one), nothing is queued ahead of it, an instance is idle, and the
    /// model is fast and the input small. This saves the two thread
    /// hand-offs of a queued request (caller → model thread → caller), which
    /// cost more than a tiny model's run (bench/README.md, "Where a tiny
    /// request's time goes"). `None`: queue it.
    fn try_inline(
        &self,
        inputs: &NamedTensors,
        rows: Option<usize>,
        max: usize,
    ) -> Option<Result<(NamedTensors, RunTiming), ExecutorError>> {
        let c = &self.inner.counters;
        let recent = c.recent_us.load(Ordering::Relaxed);
        if rows.is_some_and(|n| n != max)
            || recent == 0
            || recent > self.inner.config.inline_below.as_micros() as u64
            || c.pending.load(Ordering::Relaxed) > 0
            || inputs.iter().map(|(_, t)| t.data().len()).sum::<usize>() > INLINE_MAX_BYTES
        {
            return None;
        }
        let mut model = self
            .inner
            .instances
            .iter()
            .find_map(|m| m.try_lock().ok())
            .filter(|m| m.may_run_inline())?;
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.run(inputs)))
            .unwrap_or_else(|_| Err(ExecutorError::Backend("the backend panicked".into())));
        let compute = started.elapsed();
        account(
            model.as_ref(),
            c,
            1,
            rows.unwrap_or(1),
            0,
            compute.as_micros() as u64,
            result.as_ref().err(),
        );
        drop(model);
        Some(result.map(|outputs| {
            (
                outputs,
                RunTiming {
                    queue: Duration::ZERO,
                    compute,
                    executions: 1,
                    batch_rows: rows.unwrap_or(1) as u64,
                },
            )
        }))
    }

    fn take_share(
        &self,
        tenant: &str,
        batches: usize,
        rows: usize,
        max: usize,
    ) -> Result<Share, ExecutorError> {
        let cap = self.tenant_share();
        if batches > cap {
            return Err(ExecutorError::InvalidInput(format!(
                "a request of {rows} rows needs {batches} batches of at most {max}; one request \
                 may take at most {cap}: send fewer rows per request"
            )));
        }
        let mut shares = self.inner.shares.lock().expect("queue shares lock");
        let held = shares.entry(tenant.to_string()).or_default();
        if *held + batches > cap {
            return Err(ExecutorError::Overloaded {
                model: self.inner.config.name.clone(),
                capacity: cap,
            });
        }
        *held += batches;
        Ok(Share {
            inner: self.inner.clone(),
            tenant: tenant.to_string(),
            batches,
        })
    }

    fn submit(
        &self,
        inputs: NamedTensors,
        rows: Option<usize>,
    ) -> Result<oneshot::Receiver<Reply>, ExecutorError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            reply,
            enqueued: Instant::now(),
            span: tracing::Span::current(),
        };
        self.inner.counters.pending.fetch_add(1, Ordering::Relaxed);
        match self.inner.queue.try_send(job) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.inner.counters.pending.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ExecutorError::Overloaded {
                        model: self.inner.config.name.clone(),
                        capacity: self.inner.config.queue_capacity,
                    },
                    TrySendError::Disconnected(_) => {
                        ExecutorError::Closed(self.inner.config.name.clone())
                    }
                })
            }
        }
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<(NamedTensors, RunTiming), ExecutorError> {
        rx.await
            .map_err(|_| ExecutorError::Closed(self.inner.config.name.clone()))?
    }
}

/// A tenant's entries in a queue, given back when its request is done (or dropped).
struct Share {
    inner: Arc<Inner>,
    tenant: String,
    batches: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self.inner.shares.lock().expect("queue shares lock");
        if let Some(held) = shares.get_mut(&self.tenant) {
            *held = held.saturating_sub(self.batches);
            if *held == 0 {
                shares.remove(&self.tenant);
            }
        }
    }
}
