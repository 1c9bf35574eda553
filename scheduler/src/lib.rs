//! Conduit's cluster coordination, on NATS JetStream.
//!
//! - [`kv`]: the three buckets (`runners`, `placements`, `leader`) and the
//!   [`Cluster`] handle every role connects with;
//! - [`ClusterView`]: a live view of runners and placements (gateways route
//!   by it, the scheduler decides on it);
//! - [`policy`]: which runners should hold a module (pure, unit-tested), and
//!   [`policy::Planned`], the index decisions run on at scale;
//! - [`autoscale`]: how many replicas each module and how many runners the
//!   fleet should have (pure state machines, unit-tested and simulated);
//! - [`scheduler`]: `conduit scheduler` (leader lease, placement requests,
//!   moving placements off lost and draining runners, autoscaling);
//! - [`actuator`]: what makes the fleet the size the leader wants, and
//!   [`kube`], the Kubernetes one (the runner StatefulSet's `scale`);
//! - [`member`]: a runner's side (`conduit runner --nats URL`): heartbeats,
//!   warming what is placed on it, releasing what is not, draining;
//! - [`metrics`]: the scheduler's `/metrics`.
//!
//! Only records cross NATS; tensors go runner ↔ gateway ↔ client over gRPC
//! and HTTP. See `docs/cluster.md` and `docs/autoscaling.md`.

pub mod actuator;
pub mod autoscale;
mod error;
pub mod kube;
pub mod kv;
pub mod member;
pub mod metrics;
pub mod policy;
mod records;
pub mod scheduler;
mod view;

pub use actuator::{Actuator, ActuatorError, ScaleRecord};
pub use error::ClusterError;
pub use kube::KubeActuator;
pub use kv::{Cluster, ClusterConfig};
pub use member::{Host, HostLoad, MemberConfig, Membership};
pub use metrics::SchedulerMetrics;
pub use records::{
    Lease, MAX_MODEL_LOADS, ModelLoad, PlaceReply, PlaceRequest, Placement, RunnerRecord,
    ScaleHints, digest_key, valid_id,
};
pub use scheduler::SchedulerConfig;
pub use view::ClusterView;

/// The NATS subject a gateway asks the active scheduler for a placement on
/// (request/reply; JSON [`PlaceRequest`] → [`PlaceReply`]).
pub const PLACE_SUBJECT: &str = "conduit.scheduler.place";
