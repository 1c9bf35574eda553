//! `conduit scheduler`: one active (it holds the lease), any number of
//! standbys (they try to take it every third of its TTL).
//!
//! The active scheduler
//! - answers placement requests on [`PLACE_SUBJECT`](crate::PLACE_SUBJECT)
//!   (only it subscribes; a standby that takes over subscribes then);
//! - reconciles every tick: a placement whose runner is lost (its record
//!   expired) or draining gets a replacement, chosen by the
//!   [policy](crate::policy);
//! - writes every placement with compare-and-swap: two schedulers that both
//!   believe they lead (a partition, a slow renewal) can never overwrite each
//!   other's decision; the loser re-reads and decides again.
//!
//! A leader that cannot renew for a whole TTL (NATS down) steps down; it
//! never acts on a lease that may have passed to another.

use crate::PLACE_SUBJECT;
use crate::error::ClusterError;
use crate::kv::{Cluster, decode, encode};
use crate::policy::{self, Demand};
use crate::records::{PlaceReply, PlaceRequest, Placement};
use crate::view::ClusterView;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Its id (unique among schedulers).
    pub id: String,
    /// Replicas per module when its push hint says none.
    pub default_replicas: u32,
    /// How often the leader reconciles placements.
    pub tick: Duration,
}

impl SchedulerConfig {
    /// Defaults: one replica, a 0.5 s tick.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            default_replicas: 1,
            tick: Duration::from_millis(500),
        }
    }
}

/// Runs a scheduler until `shutdown` resolves; gives the lease up on the way
/// out so that a standby takes over at once.
pub async fn run(
    cluster: Cluster,
    config: SchedulerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let view = ClusterView::start(cluster.clone());
    let mut lease: Option<(u64, Instant)> = None;
    let mut requests: Option<async_nats::Subscriber> = None;
    let ttl = cluster.config().lease_ttl;
    let mut tick = tokio::time::interval(config.tick.min(ttl / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                lease = hold_lease(&cluster, &config.id, lease, ttl).await;
                match (&lease, &requests) {
                    (Some(_), None) => match cluster.client().queue_subscribe(PLACE_SUBJECT, "schedulers".into()).await {
                        Ok(sub) => requests = Some(sub),
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to placement requests"),
                    },
                    (None, Some(_)) => {
                        if let Some(mut sub) = requests.take() {
                            let _ = sub.unsubscribe().await;
                        }
                    }
                    _ => {}
                }
                if lease.is_some() && view.synced() {
                    reconcile(&cluster, &view).await;
                }
            }
            Some(msg) = next_request(&mut requests) => {
                let reply = match decode::<PlaceRequest>("place request", &msg.payload) {
                    Ok(req) => place(&cluster, &view, &config, &req).await,
                    Err(e) => PlaceReply::Refused(e.to_string()),
                };
                if let (Some(to), Ok(body)) = (msg.reply, encode(&reply)) {
                    let _ = cluster.client().publish(to, body).await;
                }
            }
        }
    }
    if let Some(mut sub) = requests.take() {
        let _ = sub.unsubscribe().await;
    }
    if let Some((rev, _)) = lease {
        match cluster.release_lease(rev).await {
            Ok(()) => tracing::info!(id = %config.id, "gave the scheduler lease up"),
            Err(e) => {
                tracing::warn!(error = %e, "could not give the lease up; it expires by itself")
            }
        }
    }
}

async fn next_request(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Takes, renews or loses the lease; `(revision, last renewal)` while held.
async fn hold_lease(
    cluster: &Cluster,
    id: &str,
    lease: Option<(u64, Instant)>,
    ttl: Duration,
) -> Option<(u64, Instant)> {
    match lease {
        Some((rev, renewed)) => match cluster.renew_lease(id, rev).await {
            Ok(Some(rev)) => Some((rev, Instant::now())),
            Ok(None) => {
                tracing::warn!(
                    id,
                    "lost the scheduler lease to another scheduler; standing by"
                );
                None
            }
            // Keep acting only while the lease cannot have expired: a
            // standby may take it after `ttl`.
            Err(e) if renewed.elapsed() < ttl * 2 / 3 => {
                tracing::warn!(error = %e, "cannot renew the scheduler lease; retrying");
                Some((rev, renewed))
            }
            Err(e) => {
                tracing::warn!(error = %e, id, "could not renew the lease in time; standing by");
                None
            }
        },
        None => match cluster.acquire_lease(id).await {
            Ok(Some(rev)) => {
                tracing::info!(id, "took the scheduler lease: scheduling");
                Some((rev, Instant::now()))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot reach the lease");
                None
            }
        },
    }
}

/// Answers one placement request: the existing placement when it has live
/// runners, a new one otherwise.
async fn place(
    cluster: &Cluster,
    view: &ClusterView,
    config: &SchedulerConfig,
    req: &PlaceRequest,
) -> PlaceReply {
    if !req.digest.starts_with("blake3:") {
        return PlaceReply::Refused(format!("`{}` is not a blake3 digest", req.digest));
    }
    let replicas = if req.replicas == 0 {
        config.default_replicas
    } else {
        req.replicas
    };
    for _ in 0..4 {
        let current = match cluster.placement(&req.digest).await {
            Ok(c) => c,
            Err(e) => return PlaceReply::Refused(e.to_string()),
        };
        let wanted = Placement {
            digest: req.digest.clone(),
            tenant: req.tenant.clone(),
            module: req.module.clone(),
            replicas,
            memory: req.memory,
            device: req.device.clone(),
            ..Placement::default()
        };
        match decide(cluster, view, current, wanted).await {
            Ok(p) if p.runners.is_empty() => {
                let runners = view.live_runners();
                return PlaceReply::Refused(policy::refusal(&demand(&p), &runners));
            }
            Ok(p) => return PlaceReply::Placed(p),
            Err(ClusterError::Conflict(_)) => continue,
            Err(e) => return PlaceReply::Refused(e.to_string()),
        }
    }
    PlaceReply::Refused("the placement kept changing under the scheduler; try again".into())
}

fn demand(p: &Placement) -> Demand<'_> {
    Demand {
        digest: &p.digest,
        replicas: p.replicas as usize,
        memory: p.memory,
        device: &p.device,
    }
}

/// Chooses runners for `wanted` (keeping `current`'s live ones) and writes
/// the placement if it changed.
async fn decide(
    cluster: &Cluster,
    view: &ClusterView,
    current: Option<(Placement, u64)>,
    mut wanted: Placement,
) -> Result<Placement, ClusterError> {
    let runners = view.live_runners();
    let placements = view.placements();
    let planned = policy::planned_memory(&placements, &runners);
    let (held, revision) = match &current {
        Some((p, rev)) => {
            // Placements are by content: modules with the same bytes share
            // one, sized for the largest replica hint that asked for it.
            wanted.replicas = p.replicas.max(wanted.replicas).max(1);
            wanted.module = p.module.clone();
            wanted.generation = p.generation;
            if wanted.tenant.is_empty() {
                wanted.tenant = p.tenant.clone();
            }
            (p.runners.clone(), Some(*rev))
        }
        None => (Vec::new(), None),
    };
    let chosen = policy::choose(&demand(&wanted), &held, &runners, &planned);
    if let Some((p, _)) = &current
        && ((chosen == p.runners && wanted.replicas == p.replicas) || chosen.is_empty())
    {
        return Ok(p.clone());
    }
    wanted.runners = chosen;
    wanted.generation += 1;
    if wanted.runners.is_empty() {
        return Ok(wanted);
    }
    cluster.write_placement(&wanted, revision).await?;
    tracing::info!(
        module = %wanted.module, digest = %wanted.digest, runners = ?wanted.runners,
        generation = wanted.generation, "placed"
    );
    view.note_placement(&wanted);
    Ok(wanted)
}

/// Moves placements off lost and draining runners, and tops up replicas.
async fn reconcile(cluster: &Cluster, view: &ClusterView) {
    let runners = view.live_runners();
    for p in view.placements() {
        let healthy = p
            .runners
            .iter()
            .filter(|id| runners.iter().any(|r| &r.id == *id && !r.draining))
            .count();
        if healthy == p.runners.len() && healthy >= p.replicas as usize {
            continue;
        }
        let current = match cluster.placement(&p.digest).await {
            Ok(Some(c)) => Some(c),
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read a placement");
                return;
            }
        };
        let wanted = Placement {
            runners: Vec::new(),
            ..p.clone()
        };
        match decide(cluster, view, current, wanted).await {
            Ok(_) | Err(ClusterError::Conflict(_)) => {}
            Err(e) => tracing::warn!(error = %e, digest = %p.digest, "cannot move a placement"),
        }
    }
}
