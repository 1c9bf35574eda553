//! The worker loop: take a request, gather compatible ones into a batch
//! until it is full, a preferred size, or the first request's delay runs
//! out; run it; send each caller its rows.

use super::rows::{compatible, concat, split};
use super::{BatchConfig, ExecutorError, LoadedModel, RunTiming};
use conduit_types::NamedTensors;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// What a worker sends back for one request.
pub(crate) type Reply = Result<(NamedTensors, RunTiming), ExecutorError>;

/// One request waiting for a worker.
pub(crate) struct Job {
    pub inputs: NamedTensors,
    /// Rows on the batch dimension; `None` for a model that does not batch.
    pub rows: Option<usize>,
    pub reply: oneshot::Sender<Reply>,
    pub enqueued: Instant,
    pub span: tracing::Span,
}

/// Counters shared by the workers of one executor.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub pending: std::sync::atomic::AtomicUsize,
    pub requests: std::sync::atomic::AtomicU64,
    pub rows: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
    pub queue_us: std::sync::atomic::AtomicU64,
    pub compute_us: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    /// Instances whose worker thread is running.
    pub alive: std::sync::atomic::AtomicUsize,
    /// Why the last instance to fail a batch cannot serve, if its health
    /// check says so (cleared by its next successful batch).
    pub unhealthy: Mutex<Option<String>>,
    /// Moving average (weight 1/2) of one batch's compute time in µs, plus
    /// one; 0 until a batch has run. Gates running a request inline
    /// (`Executor::try_inline`).
    pub recent_us: std::sync::atomic::AtomicU64,
}

/// One instance's loaded model: its worker locks it for each batch; a
/// request that can run at once may take an idle one instead.
pub(crate) type Instance = Arc<Mutex<Box<dyn LoadedModel>>>;

/// Counts a worker thread as alive until it ends, however it ends.
struct Alive<'a>(&'a Counters);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn worker(
    model: Instance,
    queue: Arc<Mutex<Receiver<Job>>>,
    batching: BatchConfig,
    counters: Arc<Counters>,
) {
    counters.alive.fetch_add(1, Ordering::AcqRel);
    let _alive = Alive(&counters);
    let mut carry: Option<Job> = None;
    loop {
        let batch = {
            let rx = queue.lock().expect("queue lock");
            match gather(&rx, carry.take(), &batching) {
                Some((batch, next)) => {
                    carry = next;
                    batch
                }
                None => return, // every sender is gone: the executor was dropped
            }
        };
        run(&model, batch, &counters);
    }
}

/// Forms one batch; returns it and a request that did not fit (it starts the
/// next batch). `None` when the queue is closed and empty.
fn gather(
    rx: &Receiver<Job>,
    carry: Option<Job>,
    cfg: &BatchConfig,
) -> Option<(Vec<Job>, Option<Job>)> {
    let first = match carry {
        Some(job) => job,
        None => rx.recv().ok()?,
    };
    let Some(mut rows) = first.rows else {
        return Some((vec![first], None));
    };
    let deadline = first.enqueued + cfg.max_queue_delay;
    let mut batch = vec![first];
    while rows < cfg.max_batch_size && !cfg.preferred_batch_sizes.contains(&rows) {
        let now = Instant::now();
        let next = if now >= deadline {
            // Out of time: take only what is already waiting.
            match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(deadline - now) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        };
        match next.rows {
            Some(n)
                if rows + n <= cfg.max_batch_size && compatible(&batch[0].inputs, &next.inputs) =>
            {
                rows += n;
                batch.push(next);
            }
            _ => return Some((batch, Some(next))),
        }
    }
    Some((batch, None))
}

fn run(instance: &Instance, mut batch: Vec<Job>, counters: &Counters) {
    // Callers that gave up (deadline, disconnect) get nothing computed.
    batch.retain(|job| !job.reply.is_closed());
    counters.pending.fetch_sub(batch.len(), Ordering::Relaxed);
    if batch.is_empty() {
        return;
    }
    let started = Instant::now();
    let queued: u64 = batch
        .iter()
        .map(|j| started.duration_since(j.enqueued).as_micros() as u64)
        .sum();
    let span = batch[0].span.clone();
    let _entered = span.enter();
    let rows: Vec<usize> = batch.iter().map(|j| j.rows.unwrap_or(1)).collect();
    let (result, compute) = {
        // A request running inline may hold the instance for one short run;
        // the lock is given back before anyone is answered, so a caller
        // woken by its answer finds the instance idle.
        let mut model = instance.lock().unwrap_or_else(|p| p.into_inner());
        let parts: Vec<&NamedTensors> = batch.iter().map(|j| &j.inputs).collect();
        let result = concat(&parts)
            .and_then(|inputs| model.run(&inputs))
            .and_then(|outputs| split(outputs, &rows));
        let compute = started.elapsed().as_micros() as u64;
        account(
            model.as_ref(),
            counters,
            batch.len(),
            rows.iter().sum(),
            queued,
            compute,
            result.as_ref().err(),
        );
        (result, compute)
    };
    tracing::trace!(
        requests = batch.len(),
        rows = rows.iter().sum::<usize>(),
        compute_us = compute,
        "batch ran"
    );
    match result {
        Ok(parts) => {
            let compute = std::time::Duration::from_micros(compute);
            let total_rows = rows.iter().sum::<usize>() as u64;
            for (i, (job, out)) in batch.into_iter().zip(parts).enumerate() {
                let timing = RunTiming {
                    queue: started.duration_since(job.enqueued),
                    compute,
                    executions: u64::from(i == 0),
                    batch_rows: if i == 0 { total_rows } else { 0 },
                };
                let _ = job.reply.send(Ok((out, timing)));
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Counts one batch (queued or inline) and keeps the executor's health: a
/// success clears it; a failure asks the model whether it can still serve
/// (bad input, or a broken engine such as a remote model's server gone).
pub(crate) fn account(
    model: &dyn LoadedModel,
    counters: &Counters,
    requests: usize,
    rows: usize,
    queued_us: u64,
    compute_us: u64,
    failed: Option<&ExecutorError>,
) {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters
        .requests
        .fetch_add(requests as u64, Ordering::Relaxed);
    counters.rows.fetch_add(rows as u64, Ordering::Relaxed);
    counters.queue_us.fetch_add(queued_us, Ordering::Relaxed);
    counters.compute_us.fetch_add(compute_us, Ordering::Relaxed);
    let prev = counters.recent_us.load(Ordering::Relaxed);
    let next = if prev == 0 {
        compute_us + 1
    } else {
        (prev + compute_us).div_ceil(2)
    };
    counters.recent_us.store(next, Ordering::Relaxed);
    match failed {
        None => *counters.unhealthy.lock().expect("health lock") = None,
        Some(_) => {
            counters
                .failures
                .fetch_add(requests as u64, Ordering::Relaxed);
            if let Err(why) = model.health() {
                *counters.unhealthy.lock().expect("health lock") = Some(why.to_string());
            }
        }
    }
}
