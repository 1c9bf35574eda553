//! Runner scaling's hands: an [`Actuator`] makes the fleet the size the
//! active scheduler wants (the [`ScaleRecord`] it keeps in the `leader`
//! bucket).
//!
//! - `local` (`conduit cluster up --min-runners/--max-runners`): runner
//!   child processes of `cluster up`, which outlives any one scheduler and
//!   stops every runner with the rest of the cluster;
//! - `kubernetes` ([`kube`](crate::kube)): the runner StatefulSet's
//!   `scale` subresource, patched by the active scheduler.
//!
//! Scaling down never kills: both stop a runner with SIGTERM (Kubernetes
//! sends it to the pods it removes), and a runner drains on SIGTERM — it
//! takes no new placements, its replicas are loaded elsewhere first, its
//! requests in flight finish, then it exits 0.

use crate::records::RunnerRecord;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// The fleet the active scheduler wants: the `scale` key of the `leader`
/// bucket, rewritten every tick (it expires with the lease when no
/// scheduler leads; actuators then keep the fleet as it is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleRecord {
    /// Runners wanted.
    pub desired: u32,
    /// Runners live (heartbeating, draining ones included) when decided.
    pub live: u32,
    /// The floor it keeps.
    pub min: u32,
    /// The ceiling it keeps.
    pub max: u32,
    /// Why `desired` is what it is, in words (the last decision).
    pub reason: String,
    /// The scheduler that wrote it.
    pub scheduler: String,
}

/// What an actuator could not do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActuatorError {
    /// The platform refused (Kubernetes RBAC: 401/403).
    #[error("the {platform} refused to scale the runners: {message}")]
    Forbidden {
        /// Who refused.
        platform: &'static str,
        /// Its message.
        message: String,
    },
    /// What it scales does not exist (a wrong StatefulSet name or namespace).
    #[error("{0}")]
    NotFound(String),
    /// A failure worth retrying on the next tick (the API unreachable,
    /// a conflict, a server error, a runner that would not start).
    #[error("{0}")]
    Transient(String),
}

/// Makes the runner fleet a given size.
pub trait Actuator: Send + Sync + 'static {
    /// Its name, for logs and metrics (`local`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Makes the fleet `desired` runners; `live` are the runners heartbeating
    /// now. Idempotent: called again with the same number it changes
    /// nothing. Returns the number of runners it has asked for (started or
    /// starting, not yet stopped).
    fn scale<'a>(
        &'a self,
        desired: u32,
        live: &'a [RunnerRecord],
    ) -> Pin<Box<dyn Future<Output = Result<u32, ActuatorError>> + Send + 'a>>;
}
