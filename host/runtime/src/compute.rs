//! The compute pool: guest code runs on threads of its own, not on the
//! threads that accept connections and decode requests (but for a call's
//! first slice, below), and each tenant may run only a few calls at once.
//!
//! Calls are tasks on a dedicated Tokio runtime. Guest code yields at every
//! epoch tick (see `arm_deadline`), so runnable calls take turns on the
//! pool's threads; a per-tenant cap on running calls keeps one tenant's many
//! heavy or looping calls from filling the run queue ahead of another
//! tenant's cheap one. A tenant's calls past its cap wait, in order, within
//! their deadline.
//!
//! **The first slice runs inline.** Handing a call to another thread costs
//! two thread wake-ups, 4–14 µs on a 2-core VM: more than a warm tokenizer
//! call itself. So a call that finds one of its tenant's slots free starts on
//! the caller's thread and runs there until it first yields: most calls
//! finish before that. One that yields — at the first epoch tick (at most
//! one tick, 2 ms by default), or to wait on a model — goes on as a task of
//! the pool. A request thread thus runs at most one tick of a call, and only
//! within the tenant's running slots.

use crate::RuntimeError;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Threads and per-tenant shares of the compute pool.
pub(crate) struct ComputePool {
    runtime: Option<tokio::runtime::Runtime>,
    per_tenant: usize,
    tenants: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

impl ComputePool {
    /// A pool of `threads` threads; each tenant runs at most `per_tenant` calls at once.
    ///
    /// # Errors
    /// [`RuntimeError::Internal`] when the threads cannot be started.
    pub(crate) fn new(threads: usize, per_tenant: usize) -> Result<Self, RuntimeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("conduit-guest")
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Internal(format!("starting the compute pool: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
            per_tenant: per_tenant.max(1),
            tenants: Mutex::default(),
        })
    }

    /// Runs the future `work(share)` makes for `tenant` once one of the
    /// tenant's running slots is free: its first slice on this thread when a
    /// slot is free at once, the rest (or all of it, after a wait) on the
    /// pool; `share` holds that slot and can give it up while the call waits
    /// on something other than guest code. Dropping the returned future
    /// cancels the work.
    ///
    /// # Errors
    /// [`RuntimeError::Overloaded`] when no slot of the tenant frees up before
    /// `deadline`; [`RuntimeError::Internal`] if the task panicked.
    pub(crate) async fn run<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
        &self,
        tenant: &Arc<str>,
        deadline: Instant,
        work: impl FnOnce(Share) -> F,
    ) -> Result<T, RuntimeError> {
        let slots = self
            .tenants
            .lock()
            .expect("compute pool lock")
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        // The first slice inline, when a slot is free now.
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            let share = Share::new(slots, permit);
            let mut work = Box::pin(work(share.clone()));
            // A panic stays this call's error, as it would in a pool task.
            let first = std::future::poll_fn(|cx| {
                let poll = std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx)));
                Poll::Ready(poll)
            })
            .await;
            match first {
                Ok(Poll::Ready(out)) => {
                    share.release();
                    return Ok(out);
                }
                Ok(Poll::Pending) => {}
                Err(_) => {
                    return Err(RuntimeError::Internal(
                        "component task failed: it panicked".into(),
                    ));
                }
            }
            // It yielded: the rest runs on the pool. (Every leaf future the
            // call awaits registers the pool task's waker when it is polled
            // there next; wasmtime's fiber moves with the future.)
            return self.spawn(share, work).await;
        }
        let permit = match tokio::time::timeout_at(deadline.into(), slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(RuntimeError::Overloaded(format!(
                    "tenant `{tenant}` has {} component calls running, its share of the compute \
                     pool, and none finished in time",
                    self.per_tenant
                )));
            }
        };
        let share = Share::new(slots, permit);
        let work = work(share.clone());
        self.spawn(share, work).await
    }

    /// Runs `work` as a task of the pool, releasing `share` when it is done.
    async fn spawn<T: Send + 'static>(
        &self,
        share: Share,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let runtime = self.runtime.as_ref().expect("compute pool is running");
        let task = AbortOnDrop(runtime.spawn(async move {
            let out = work.await;
            // Explicitly: clones of the share may outlive the call (in a warm
            // instance's state), the slot must not.
            share.release();
            out
        }));
        task.join().await
    }
}

/// One call's running slot in its tenant's share of the compute pool.
#[derive(Clone)]
pub(crate) struct Share {
    slots: Arc<Semaphore>,
    permit: Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
}

impl Share {
    fn new(slots: Arc<Semaphore>, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self {
            slots,
            permit: Arc::new(std::sync::Mutex::new(Some(permit))),
        }
    }

    /// Gives the slot back for good (the call is over).
    fn release(&self) {
        self.permit.lock().expect("share lock").take();
    }

    /// Awaits `wait` with the slot given back, and takes a slot again after:
    /// a call waiting on a model (`model.infer`) runs no guest code, and
    /// holding its slot would keep the tenant's other calls — the rest of the
    /// model's batch — from running.
    pub(crate) async fn stepping_aside<T>(&self, wait: impl Future<Output = T>) -> T {
        let held = self.permit.lock().expect("share lock").take();
        let stepped_aside = held.is_some();
        drop(held);
        let out = wait.await;
        if stepped_aside {
            // The call's own deadline (around the whole call) bounds this wait.
            if let Ok(permit) = self.slots.clone().acquire_owned().await {
                *self.permit.lock().expect("share lock") = Some(permit);
            }
        }
        out
    }
}

impl Drop for ComputePool {
    fn drop(&mut self) {
        // May run inside another runtime (the last `Runtime` handle dropped
        // in a task): never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A task that is cancelled when whoever awaits it goes away (a client that
/// hung up, a request past its deadline): its instance is torn down then.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, RuntimeError> {
        (&mut self.0)
            .await
            .map_err(|e| RuntimeError::Internal(format!("component task failed: {e}")))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
