//! `conduit scheduler`: one active (it holds the lease), any number of
//! standbys (they try to take it every third of its TTL).
//!
//! The active scheduler
//! - answers placement requests on [`PLACE_SUBJECT`](crate::PLACE_SUBJECT)
//!   (only it subscribes; a standby that takes over subscribes then);
//! - reconciles every tick: a placement whose runner is lost (its record
//!   expired) or draining gets a replacement, chosen by the
//!   [policy](crate::policy); a draining runner keeps its replica until the
//!   replacement has loaded it (warm before cold), at most `handover`;
//! - autoscales ([`autoscale`](crate::autoscale)): each module's replicas
//!   follow its saturation, an idle module is scaled to zero, and with
//!   runner autoscaling on, the fleet the placements need is written as the
//!   [`ScaleRecord`] actuators follow (the Kubernetes one is called here);
//! - writes every placement with compare-and-swap: two schedulers that both
//!   believe they lead (a partition, a slow renewal) can never overwrite each
//!   other's decision; the loser re-reads and decides again.
//!
//! A leader that cannot renew for a whole TTL (NATS down) steps down; it
//! never acts on a lease that may have passed to another.

use crate::PLACE_SUBJECT;
use crate::actuator::{Actuator, ScaleRecord};
use crate::autoscale::{
    ReplicaPolicy, ReplicaScaler, RunnerPolicy, RunnerScaler, Signal, runners_needed,
};
use crate::error::ClusterError;
use crate::kv::{Cluster, decode, encode};
use crate::metrics::SchedulerMetrics;
use crate::policy::{self, Demand, Planned};
use crate::records::{PlaceReply, PlaceRequest, Placement, RunnerRecord};
use crate::view::ClusterView;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
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
    /// Replica autoscaling.
    pub replicas: ReplicaPolicy,
    /// Runner autoscaling; `None` leaves the fleet as it is (modules that
    /// fit nowhere are refused rather than waiting for a runner).
    pub runners: Option<RunnerPolicy>,
    /// Longest a draining runner keeps a replica while its replacement loads.
    pub handover: Duration,
}

impl SchedulerConfig {
    /// Defaults: one replica, a 0.5 s tick, [`ReplicaPolicy::default`], no
    /// runner autoscaling, a 20 s handover.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            default_replicas: 1,
            tick: Duration::from_millis(500),
            replicas: ReplicaPolicy::default(),
            runners: None,
            handover: Duration::from_secs(20),
        }
    }
}

/// What the leader remembers between ticks (a new leader starts afresh:
/// its timers restart, which only delays its first scale-down).
#[derive(Debug, Default)]
struct Leading {
    replicas: ReplicaScaler,
    runners: RunnerScaler,
    /// Why the fleet is the size it is (the last runner decision).
    reason: String,
    /// The actuator's last error, logged once until it changes.
    actuator_error: Option<String>,
    /// What the actuator was last asked for, and when it answered.
    actuated: Option<(u32, Instant)>,
    /// The placement index decisions use: rebuilt from the view every tick,
    /// updated by every placement written since.
    planned: Option<Planned>,
    /// Live runners not draining, as of the last tick.
    open: u32,
}

impl Leading {
    /// Takes this tick's snapshot of the view.
    fn snapshot(&mut self, runners: &[RunnerRecord], placements: &[Placement]) {
        self.planned = Some(Planned::new(placements, runners));
        self.open = runners.iter().filter(|r| !r.draining).count() as u32;
    }
}

/// How often an actuator is asked again for an unchanged size (it may have
/// been changed behind the scheduler's back: `kubectl scale`).
const ACTUATE_EVERY: Duration = Duration::from_secs(10);

/// Runs a scheduler until `shutdown` resolves; gives the lease up on the way
/// out so that a standby takes over at once. `actuator` (Kubernetes) is
/// called by the leader with the fleet it wants; `metrics` is what its
/// `/metrics` renders.
pub async fn run(
    cluster: Cluster,
    config: SchedulerConfig,
    actuator: Option<Arc<dyn Actuator>>,
    metrics: Arc<SchedulerMetrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let view = ClusterView::start(cluster.clone());
    let mut leading: Option<Leading> = None;
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
                metrics.set_leader(lease.is_some());
                if lease.is_none() {
                    leading = None;
                }
                if lease.is_some() && view.synced() {
                    let state = leading.get_or_insert_with(Leading::default);
                    let runners = view.live_runners();
                    let placements = view.placements();
                    state.snapshot(&runners, &placements);
                    reconcile(&cluster, &view, &config, state, &metrics, &runners, placements).await;
                    // After this tick's decisions (a module scaled to zero is
                    // gone): one copy for sizing the fleet and the metrics.
                    let placements = view.placements();
                    if config.runners.is_some() {
                        scale_runners(&cluster, &config, state, &metrics, actuator.as_deref(), &runners, &placements).await;
                    } else {
                        // A fixed fleet: no desired count, the runners still shown.
                        let draining = runners.iter().filter(|r| r.draining).count() as u32;
                        metrics.set_runners(None, runners.len() as u32, draining);
                    }
                    metrics.set_placements(&placements);
                }
            }
            Some(msg) = next_request(&mut requests) => {
                let reply = match decode::<PlaceRequest>("place request", &msg.payload) {
                    Ok(req) => {
                        let state = leading.get_or_insert_with(Leading::default);
                        if state.planned.is_none() {
                            state.snapshot(&view.live_runners(), &view.placements());
                        }
                        place(&cluster, &view, &config, state, &req).await
                    }
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
    state: &mut Leading,
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
    let mut scale = req.scale.clone();
    scale.min = replicas;
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
            scale: scale.clone(),
            ..Placement::default()
        };
        let pending_ok = may_wait_for_runners(config, state.open);
        match decide(
            cluster,
            view,
            config,
            state,
            current,
            wanted,
            Grow::AtLeast,
            pending_ok,
        )
        .await
        {
            Ok(p) if p.runners.is_empty() && pending_ok => return PlaceReply::Pending(p),
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

/// Whether a module no runner can take now may wait for one to start:
/// runner autoscaling is on and the fleet is under its ceiling (or has no
/// open runner at all).
fn may_wait_for_runners(config: &SchedulerConfig, open: u32) -> bool {
    config
        .runners
        .as_ref()
        .is_some_and(|policy| open < policy.max.max(policy.min) || open == 0)
}

/// How [`decide`] treats `wanted.replicas` against the current placement's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grow {
    /// The larger of the two (a placement request: same bytes share one
    /// placement, sized for the largest hint that asked).
    AtLeast,
    /// Exactly `wanted`'s (the autoscaler's decision).
    Exactly,
}

/// Chooses runners for `wanted` (keeping `current`'s live ones) and writes
/// the placement if it changed. A placement no runner can take is written
/// with no runners only when `pending_ok` (runners are being started).
///
/// Decides on the tick's snapshot (`state.planned`: runners' loads as of
/// the last tick, memory planned as of every decision since), so that one
/// decision costs the runners it compares, not a copy of the cluster.
#[allow(clippy::too_many_arguments)]
async fn decide(
    cluster: &Cluster,
    view: &ClusterView,
    config: &SchedulerConfig,
    state: &mut Leading,
    current: Option<(Placement, u64)>,
    mut wanted: Placement,
    grow: Grow,
    pending_ok: bool,
) -> Result<Placement, ClusterError> {
    let planned = state
        .planned
        .get_or_insert_with(|| Planned::new(&view.placements(), &view.live_runners()));
    let (held, revision) = match &current {
        Some((p, rev)) => {
            if grow == Grow::AtLeast {
                wanted.replicas = p.replicas.max(wanted.replicas);
                if wanted.scale.max < p.scale.max {
                    wanted.scale = p.scale.clone();
                }
            }
            wanted.replicas = wanted.replicas.max(1);
            wanted.module = p.module.clone();
            wanted.generation = p.generation;
            if wanted.tenant.is_empty() {
                wanted.tenant = p.tenant.clone();
            }
            (p.runners.clone(), Some(*rev))
        }
        None => (Vec::new(), None),
    };
    let mut chosen = planned.choose(&demand(&wanted), &held);
    keep_handing_over(view, &mut chosen, &held, &wanted.digest, config.handover);
    if let Some((p, _)) = &current
        && chosen == p.runners
        && wanted.replicas == p.replicas
        && wanted.scale == p.scale
    {
        return Ok(p.clone());
    }
    if chosen.is_empty() && !pending_ok {
        return Ok(Placement {
            runners: Vec::new(),
            ..current.map_or(wanted, |(p, _)| p)
        });
    }
    wanted.runners = chosen;
    wanted.generation += 1;
    cluster.write_placement(&wanted, revision).await?;
    planned.apply(current.as_ref().map(|(p, _)| p), Some(&wanted));
    tracing::info!(
        module = %wanted.module, digest = %wanted.digest, runners = ?wanted.runners,
        generation = wanted.generation, "placed"
    );
    view.note_placement(&wanted);
    Ok(wanted)
}

/// Warm before cold: a draining runner stays among a module's holders
/// until every other holder has loaded the module, or `handover` has passed
/// since it started draining (its replacement's first request loads it
/// then). With no other holder at all it stays until it leaves.
fn keep_handing_over(
    view: &ClusterView,
    chosen: &mut Vec<String>,
    held: &[String],
    digest: &str,
    handover: Duration,
) {
    let draining: Vec<RunnerRecord> = view
        .live_among(held)
        .into_iter()
        .filter(|r| r.draining)
        .collect();
    if draining.is_empty() {
        return;
    }
    let replacements = view.live_among(chosen);
    let replacements_loaded = replacements.len() == chosen.len()
        && replacements
            .iter()
            .all(|r| r.loaded.iter().any(|d| d == digest));
    for r in draining {
        let waited = Duration::from_millis(r.draining_ms);
        if (chosen.is_empty() || (!replacements_loaded && waited < handover))
            && !chosen.contains(&r.id)
        {
            chosen.push(r.id.clone());
        }
    }
}

/// Autoscales every placement's replicas; moves placements off lost and
/// draining runners and tops up their replicas.
async fn reconcile(
    cluster: &Cluster,
    view: &ClusterView,
    config: &SchedulerConfig,
    state: &mut Leading,
    metrics: &SchedulerMetrics,
    runners: &[RunnerRecord],
    placements: Vec<Placement>,
) {
    let now = Instant::now();
    let by_id: HashMap<&str, &RunnerRecord> = runners.iter().map(|r| (r.id.as_str(), r)).collect();
    let placed: HashSet<&str> = placements.iter().map(|p| p.digest.as_str()).collect();
    state.replicas.retain(|d| placed.contains(d));
    let pending_ok = may_wait_for_runners(config, state.open);
    for p in &placements {
        let holders: Vec<&RunnerRecord> = p
            .runners
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).copied())
            .filter(|r| !r.draining)
            .collect();
        let signal = Signal::gather(&p.digest, &holders);
        let mut replicas = p.replicas;
        if let Some(change) = state.replicas.decide(&config.replicas, p, &signal, now) {
            if change.to == 0 {
                match cluster.placement(&p.digest).await {
                    Ok(Some((_, rev))) => match cluster.remove_placement(&p.digest, rev).await {
                        Ok(()) => {
                            if let Some(planned) = &mut state.planned {
                                planned.apply(Some(p), None);
                            }
                            metrics.event("replicas", &change);
                            tracing::info!(module = %p.module, digest = %p.digest, "scaled to zero (idle)");
                        }
                        Err(e) => tracing::debug!(error = %e, "cannot remove a placement"),
                    },
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read a placement"),
                }
                continue;
            }
            tracing::info!(
                module = %p.module, from = change.from, to = change.to, reason = change.reason.as_str(),
                busy = signal.busy, queue_ms = signal.queue_ms, "scaling replicas"
            );
            metrics.event("replicas", &change);
            replicas = change.to;
        }
        let healthy = holders.len();
        if replicas == p.replicas && healthy == p.runners.len() && healthy >= p.replicas as usize {
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
            replicas,
            ..p.clone()
        };
        match decide(
            cluster,
            view,
            config,
            state,
            current,
            wanted,
            Grow::Exactly,
            pending_ok,
        )
        .await
        {
            Ok(_) | Err(ClusterError::Conflict(_)) => {}
            Err(e) => tracing::warn!(error = %e, digest = %p.digest, "cannot move a placement"),
        }
    }
}

/// Sizes the fleet: decides, writes the [`ScaleRecord`] actuators follow,
/// and calls `actuator` when the scheduler holds one.
async fn scale_runners(
    cluster: &Cluster,
    config: &SchedulerConfig,
    state: &mut Leading,
    metrics: &SchedulerMetrics,
    actuator: Option<&dyn Actuator>,
    runners: &[RunnerRecord],
    placements: &[Placement],
) {
    let Some(policy) = &config.runners else {
        return;
    };
    let now = Instant::now();
    let open = runners.iter().filter(|r| !r.draining).count() as u32;
    let draining = runners.len() as u32 - open;
    let needed = runners_needed(placements, runners);
    if let Some(change) = state.runners.decide(policy, open, needed, now) {
        state.reason = format!(
            "{} → {} runners ({}: {} placements need {needed})",
            change.from,
            change.to,
            change.reason.as_str(),
            placements.len()
        );
        tracing::info!(
            from = change.from,
            to = change.to,
            reason = change.reason.as_str(),
            needed,
            "scaling runners"
        );
        metrics.event("runners", &change);
    }
    if state.runners.starting_late(policy, open, now) {
        tracing::warn!(
            desired = ?state.runners.desired(), live = open, timeout = ?policy.start_timeout,
            "runners asked for have not joined within the start timeout; asking again"
        );
        state.runners.asked_again(now);
    }
    let desired = state.runners.desired().unwrap_or(open);
    metrics.set_runners(Some(desired), runners.len() as u32, draining);
    let record = ScaleRecord {
        desired,
        live: runners.len() as u32,
        min: policy.min,
        max: policy.max,
        reason: state.reason.clone(),
        scheduler: config.id.clone(),
    };
    if let Err(e) = cluster.write_scale(&record).await {
        tracing::debug!(error = %e, "cannot write the scale record");
    }
    let due = state
        .actuated
        .is_none_or(|(n, at)| n != desired || at.elapsed() >= ACTUATE_EVERY);
    if let Some(a) = actuator
        && due
    {
        match a.scale(desired, runners).await {
            Ok(_) => {
                state.actuator_error = None;
                state.actuated = Some((desired, Instant::now()));
            }
            Err(e) => {
                metrics.actuator_failed();
                let e = e.to_string();
                if state.actuator_error.as_ref() != Some(&e) {
                    tracing::warn!(actuator = a.name(), error = %e, "cannot scale the runners; retrying every tick");
                    state.actuator_error = Some(e);
                }
            }
        }
    }
}
