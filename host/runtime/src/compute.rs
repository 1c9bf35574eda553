//! The compute pool: guest code runs on threads of its own, never on the
//! threads that accept connections and decode requests, and each tenant may
//! run only a few calls there at once.
//!
//! Calls are tasks on a dedicated Tokio runtime. Guest code yields at every
//! epoch tick (see `arm_deadline`), so runnable calls take turns on the
//! pool's threads; a per-tenant cap on running calls keeps one tenant's many
//! heavy or looping calls from filling the run queue ahead of another
//! tenant's cheap one. A tenant's calls past its cap wait, in order, within
//! their deadline.

use crate::RuntimeError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
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

    /// Runs the future `work(share)` makes on the pool for `tenant`, once one
    /// of the tenant's running slots is free; `share` holds that slot and can
    /// give it up while the call waits on something other than guest code.
    /// Dropping the returned future cancels the work.
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
        let runtime = self.runtime.as_ref().expect("compute pool is running");
        let share = Share {
            slots,
            permit: Arc::new(std::sync::Mutex::new(Some(permit))),
        };
        let work = work(share.clone());
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
