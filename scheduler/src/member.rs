//! A runner's membership (`conduit runner --nats URL`): it heartbeats its
//! record into the `runners` bucket and warms what the scheduler places on
//! it. The data plane never waits on any of this: while NATS is down the
//! runner serves on, and joins again when NATS is back.

use crate::kv::{Cluster, ClusterConfig};
use crate::records::{Placement, RunnerRecord};
use crate::view::ClusterView;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a placement that could not be warmed waits for another try.
const RETRY_WARM: Duration = Duration::from_secs(10);

/// What a runner reports about itself each heartbeat.
#[derive(Debug, Clone, Default)]
pub struct HostLoad {
    /// Requests queued in its executors.
    pub queue_depth: u64,
    /// Fraction of executor instances busy since the last report.
    pub busy: f64,
    /// Requests in flight on its data plane.
    pub in_flight: u64,
    /// Memory its loaded models take (their estimates), in bytes.
    pub memory_used: u64,
    /// Digests of the modules loaded.
    pub loaded: Vec<String>,
}

/// The runner, as membership sees it.
pub trait Host: Send + Sync + 'static {
    /// Its load now.
    fn load(&self) -> HostLoad;
    /// Loads a module placed on it ahead of its first request. Best effort:
    /// an `Err` is logged, and the first request loads it instead.
    fn warm(
        &self,
        placement: Placement,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

/// Who the runner is to the cluster.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// Its id: a KV key (see [`valid_id`](crate::valid_id)).
    pub id: String,
    /// Its KServe v2 gRPC address as others reach it.
    pub grpc: String,
    /// Its KServe v2 HTTP address as others reach it.
    pub http: String,
    /// Its devices.
    pub devices: Vec<String>,
    /// Memory it offers for models, in bytes.
    pub memory_total: u64,
    /// Time between heartbeats (default 0.5 s; keep it well under the
    /// runner TTL).
    pub interval: Duration,
}

/// A running membership; dropping it stops heartbeating (the record expires
/// by its TTL); [`Membership::leave`] removes it at once.
pub struct Membership {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

struct Shared {
    id: String,
    linked: AtomicBool,
    draining: AtomicBool,
    cluster: Mutex<Option<Cluster>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", &self.shared.id)
            .field("linked", &self.shared.linked.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Membership {
    /// Starts joining (in the background; connecting retries forever).
    pub fn start(cluster: ClusterConfig, config: MemberConfig, host: Arc<dyn Host>) -> Self {
        let shared = Arc::new(Shared {
            id: config.id.clone(),
            linked: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            cluster: Mutex::new(None),
        });
        let task = tokio::spawn(member(cluster, config, host, shared.clone()));
        Self { task, shared }
    }

    /// Whether its last heartbeat reached NATS.
    pub fn linked(&self) -> bool {
        self.shared.linked.load(Ordering::Relaxed)
    }

    /// Marks it draining: the scheduler places nothing new on it and moves
    /// what it holds.
    pub fn set_draining(&self, draining: bool) {
        self.shared.draining.store(draining, Ordering::Relaxed);
    }

    /// Stops heartbeating and removes its record, so that gateways stop
    /// routing to it at once.
    pub async fn leave(self) {
        self.task.abort();
        let cluster = self.shared.cluster.lock().expect("member lock").clone();
        if let Some(c) = cluster
            && let Err(e) = c.leave(&self.shared.id).await
        {
            tracing::debug!(error = %e, "could not remove the runner record; it expires by its TTL");
        }
    }
}

async fn member(
    cluster: ClusterConfig,
    config: MemberConfig,
    host: Arc<dyn Host>,
    shared: Arc<Shared>,
) {
    let mut backoff = Duration::from_millis(100);
    let cluster = loop {
        match Cluster::connect(cluster.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot join the cluster yet; serving meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    *shared.cluster.lock().expect("member lock") = Some(cluster.clone());
    tracing::info!(id = %config.id, url = %cluster.config().url, "joined the cluster");
    let view = ClusterView::start_placements_only(cluster.clone());
    let warming: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut beat = 0u64;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet = false;
    loop {
        tick.tick().await;
        let load = host.load();
        let record = RunnerRecord {
            id: config.id.clone(),
            grpc: config.grpc.clone(),
            http: config.http.clone(),
            devices: config.devices.clone(),
            memory_total: config.memory_total,
            memory_used: load.memory_used,
            queue_depth: load.queue_depth,
            busy: load.busy,
            in_flight: load.in_flight,
            loaded: load.loaded.clone(),
            draining: shared.draining.load(Ordering::Relaxed),
            beat,
        };
        match cluster.heartbeat(&record).await {
            Ok(()) => {
                if quiet {
                    tracing::info!("heartbeats reach NATS again");
                }
                quiet = false;
                beat += 1;
                shared.linked.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                if !quiet {
                    tracing::warn!(error = %e, "heartbeat failed; serving on, retrying");
                }
                quiet = true;
                shared.linked.store(false, Ordering::Relaxed);
            }
        }
        for p in view.placements() {
            if !p.runners.contains(&config.id) || load.loaded.contains(&p.digest) {
                continue;
            }
            if !warming
                .lock()
                .expect("warming lock")
                .insert(p.digest.clone())
            {
                continue;
            }
            // A failed warm-up (typically: no key of that tenant here yet)
            // is tried again after a while; meanwhile the first request
            // routed here loads it.
            let (host, warming) = (host.clone(), warming.clone());
            tokio::spawn(async move {
                let digest = p.digest.clone();
                let module = p.module.clone();
                match host.warm(p).await {
                    Ok(()) => tracing::info!(%module, %digest, "warmed a placement"),
                    Err(e) => {
                        tracing::debug!(%module, %digest, reason = %e, "placement not warmed yet; its first request loads it");
                        tokio::time::sleep(RETRY_WARM).await;
                        warming.lock().expect("warming lock").remove(&digest);
                    }
                }
            });
        }
    }
}
