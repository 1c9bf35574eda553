//! What the cluster's key-value buckets hold: JSON records, one per key.

use serde::{Deserialize, Serialize};

/// One runner's entry in the `runners` bucket: where it serves and how
/// loaded it is. Refreshed every heartbeat; the bucket's TTL expires it
/// when the runner stops heartbeating.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerRecord {
    /// The runner's id (also its key).
    pub id: String,
    /// Its KServe v2 gRPC address, `host:port`.
    pub grpc: String,
    /// Its KServe v2 HTTP address, `host:port`.
    pub http: String,
    /// Devices it serves on (`cpu`, `cuda:0`…).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Memory it may fill with models, in bytes.
    pub memory_total: u64,
    /// Memory its loaded models take now (their estimates), in bytes.
    pub memory_used: u64,
    /// Requests queued in its executors now.
    pub queue_depth: u64,
    /// Fraction of its executor instances busy (0..=1), since the last heartbeat.
    pub busy: f64,
    /// Requests in flight on its data plane now.
    #[serde(default)]
    pub in_flight: u64,
    /// Digests of the modules loaded (warm) on it.
    #[serde(default)]
    pub loaded: Vec<String>,
    /// How each module it serves is used, since its last heartbeat (the
    /// busiest first, at most [`MAX_MODEL_LOADS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelLoad>,
    /// Set while it drains: nothing new is placed on it.
    #[serde(default)]
    pub draining: bool,
    /// How long it has been draining, in ms.
    #[serde(default)]
    pub draining_ms: u64,
    /// Heartbeats sent since it started (a restart starts again at 0).
    pub beat: u64,
}

impl RunnerRecord {
    /// The load the gateway and the scheduler compare: queued and in-flight
    /// requests, plus the busy fraction as a tie-breaker.
    pub fn load(&self) -> f64 {
        (self.queue_depth + self.in_flight) as f64 + self.busy
    }

    /// Memory still free for models.
    pub fn memory_free(&self) -> u64 {
        self.memory_total.saturating_sub(self.memory_used)
    }
}

/// Most [`ModelLoad`]s one heartbeat carries (a runner serving more
/// modules reports its busiest).
pub const MAX_MODEL_LOADS: usize = 256;

/// How one module is used on one runner, between two of its heartbeats:
/// what replica autoscaling decides on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelLoad {
    /// The module's digest.
    pub digest: String,
    /// Requests finished per second.
    pub rate: f64,
    /// Fraction of the time at least one of its requests was in flight.
    pub busy: f64,
    /// Mean time its requests waited before running, in ms.
    pub queue_ms: f64,
    /// Its requests in flight now.
    pub in_flight: u64,
    /// Since its last request, in ms.
    pub idle_ms: u64,
}

/// A module's autoscaling targets: its push hints, each 0 for the
/// scheduler's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleHints {
    /// Replicas it keeps while in use (`--replicas`).
    #[serde(default)]
    pub min: u32,
    /// Most replicas (`--max-replicas`).
    #[serde(default)]
    pub max: u32,
    /// Busy percentage a replica is kept under (`--target-busy`).
    #[serde(default)]
    pub target_busy_percent: u32,
    /// Queue delay its requests are kept under, in ms (`--target-queue-ms`).
    #[serde(default)]
    pub target_queue_ms: u32,
    /// Idle seconds before it is scaled to zero (`--idle-seconds`).
    #[serde(default)]
    pub idle_seconds: u32,
}

/// One entry in the `placements` bucket: which runners hold a module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The module's digest, `blake3:<hex>`.
    pub digest: String,
    /// The tenant whose request asked for it (runners warm it with that
    /// tenant's rights when they hold its key).
    pub tenant: String,
    /// `name@version`, for people reading the bucket.
    pub module: String,
    /// How many runners should hold it.
    pub replicas: u32,
    /// The memory one copy takes, estimated from its bytes.
    pub memory: u64,
    /// The device it needs (its push hint), empty for any.
    #[serde(default)]
    pub device: String,
    /// The runners holding it, by id (empty while it waits for a runner to
    /// start: a scale from zero).
    pub runners: Vec<String>,
    /// Moves on every change the scheduler writes.
    pub generation: u64,
    /// Its autoscaling targets.
    #[serde(default)]
    pub scale: ScaleHints,
}

/// What a gateway asks the scheduler when a module has no placement yet
/// (a NATS request on [`PLACE_SUBJECT`](crate::PLACE_SUBJECT)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceRequest {
    /// The module's digest.
    pub digest: String,
    /// The asking tenant.
    pub tenant: String,
    /// `name@version`.
    pub module: String,
    /// Replicas wanted; 0 for the scheduler's default.
    pub replicas: u32,
    /// The memory one copy takes.
    pub memory: u64,
    /// The device it needs (its push hint), empty for any.
    #[serde(default)]
    pub device: String,
    /// Its autoscaling targets (push hints).
    #[serde(default)]
    pub scale: ScaleHints,
}

/// The scheduler's answer to a [`PlaceRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlaceReply {
    /// Where it is placed now.
    Placed(Placement),
    /// Why it cannot be placed (no live runner, none with room).
    Refused(String),
    /// Recorded, but no runner can hold it yet: runners are being started
    /// for it (the gateway waits for the placement to name one).
    Pending(Placement),
}

/// The `leader` bucket's one entry: who schedules now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The active scheduler's id.
    pub holder: String,
}

/// The KV key of a digest (`blake3:<hex>` → `<hex>`; KV keys cannot hold `:`).
pub fn digest_key(digest: &str) -> String {
    digest.strip_prefix("blake3:").unwrap_or(digest).to_string()
}

/// Whether `id` is a valid runner or scheduler id: 1–64 of `[A-Za-z0-9_-]`
/// (it becomes a KV key and a log file name).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kv_safe() {
        assert!(valid_id("runner-1"));
        assert!(valid_id("a_B-9"));
        for bad in ["", "a.b", "a b", "a:b", "a/b", "*", ">", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn digest_keys_drop_the_scheme() {
        assert_eq!(digest_key("blake3:ab12"), "ab12");
        assert_eq!(digest_key("ab12"), "ab12");
    }

    #[test]
    fn load_counts_queued_and_in_flight_work() {
        let r = RunnerRecord {
            queue_depth: 2,
            in_flight: 3,
            busy: 0.5,
            ..RunnerRecord::default()
        };
        assert_eq!(r.load(), 5.5);
    }
}
