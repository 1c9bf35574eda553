//! A runner's membership (`conduit runner --nats URL`): it heartbeats its
//! record into the `runners` bucket, warms what the scheduler places on it,
//! releases what is no longer placed on it once idle, and answers drain
//! requests (`conduit runner drain ID`). The data plane never waits on any
//! of this: while NATS is down the runner serves on, and joins again when
//! NATS is back.

use crate::kv::{Cluster, ClusterConfig};
use crate::records::{MAX_MODEL_LOADS, ModelLoad, Placement, RunnerRecord};
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
    /// How each module was used since the last report.
    pub models: Vec<ModelLoad>,
}

/// The subject a runner takes drain requests on (`conduit runner drain ID`
/// sends one; the runner answers and starts draining).
pub fn drain_subject(id: &str) -> String {
    format!("conduit.runner.{id}.drain")
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
    /// Lets go of a module no longer placed here (frees its memory; a later
    /// request loads it again).
    fn release(&self, digest: &str);
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
    /// A module loaded here but not placed here is released after this long
    /// without a request.
    pub release_idle: Duration,
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
    /// Since when it drains.
    draining_since: Mutex<Option<std::time::Instant>>,
    cluster: Mutex<Option<Cluster>>,
    view: Mutex<Option<ClusterView>>,
    /// Notified when a drain request arrives.
    drain: tokio::sync::Notify,
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
            draining_since: Mutex::new(None),
            cluster: Mutex::new(None),
            view: Mutex::new(None),
            drain: tokio::sync::Notify::new(),
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
        self.shared.set_draining(draining);
    }

    /// Resolves when a drain request arrives (`conduit runner drain ID`).
    pub async fn drain_requested(&self) {
        self.shared.drain.notified().await;
    }

    /// Whether it is draining.
    pub fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Drains: marks it draining (the scheduler places nothing new here and
    /// loads its replicas elsewhere before taking them off it), then waits,
    /// at most `timeout`, until no placement names it and `idle()` says its
    /// requests in flight are done. Returns whether it drained in time.
    pub async fn drain(&self, timeout: Duration, idle: impl Fn() -> bool) -> bool {
        self.set_draining(true);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let view = self.shared.view.lock().expect("member lock").clone();
            let placed = view.as_ref().is_none_or(|v| {
                !v.synced()
                    || v.placements()
                        .iter()
                        .any(|p| p.runners.contains(&self.shared.id))
            });
            // Unlinked (NATS down or never reached): nobody can move the
            // replicas; only the requests in flight are waited for.
            let placed = placed && self.linked();
            if !placed && idle() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

impl Shared {
    fn set_draining(&self, draining: bool) {
        let mut since = self.draining_since.lock().expect("member lock");
        match (draining, since.is_some()) {
            (true, false) => *since = Some(std::time::Instant::now()),
            (false, _) => *since = None,
            _ => {}
        }
        self.draining.store(draining, Ordering::Relaxed);
    }

    fn draining_ms(&self) -> u64 {
        self.draining_since
            .lock()
            .expect("member lock")
            .map_or(0, |s| {
                u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX)
            })
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
    *shared.view.lock().expect("member lock") = Some(view.clone());
    let mut drains = match cluster.client().subscribe(drain_subject(&config.id)).await {
        Ok(sub) => Some(sub),
        Err(e) => {
            tracing::warn!(error = %e, "cannot take drain requests");
            None
        }
    };
    let warming: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut beat = 0u64;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(msg) = next_message(&mut drains) => {
                tracing::info!(id = %config.id, "drain requested");
                shared.set_draining(true);
                shared.drain.notify_one();
                if let Some(to) = msg.reply {
                    let _ = cluster.client().publish(to, "draining".into()).await;
                }
                continue;
            }
        }
        let mut load = host.load();
        if load.models.len() > MAX_MODEL_LOADS {
            load.models
                .sort_by(|a, b| b.busy.total_cmp(&a.busy).then(b.rate.total_cmp(&a.rate)));
            load.models.truncate(MAX_MODEL_LOADS);
        }
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
            models: load.models.clone(),
            draining: shared.draining.load(Ordering::Relaxed),
            draining_ms: shared.draining_ms(),
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
        let placements = view.placements();
        if view.synced() {
            release_unplaced(&*host, &config, &placements, &load);
        }
        for p in placements {
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

async fn next_message(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    use futures_util::StreamExt;
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Releases modules loaded here that no placement puts here, once idle for
/// `release_idle`: a replica scaled down or to zero, or a module served here
/// only while its own runners were lost.
fn release_unplaced(
    host: &dyn Host,
    config: &MemberConfig,
    placements: &[Placement],
    load: &HostLoad,
) {
    for digest in &load.loaded {
        let placed_here = placements
            .iter()
            .any(|p| &p.digest == digest && p.runners.contains(&config.id));
        if placed_here {
            continue;
        }
        let idle = load
            .models
            .iter()
            .find(|m| &m.digest == digest)
            .is_none_or(|m| {
                m.in_flight == 0 && m.idle_ms as u128 >= config.release_idle.as_millis()
            });
        if idle {
            tracing::info!(%digest, "released a module no longer placed here");
            host.release(digest);
        }
    }
}
