//! Autoscaling decisions: how many replicas each module gets and how many
//! runners the fleet has. Pure state machines over what the runners report
//! (time is passed in), so that they are unit-tested and simulated without
//! NATS; the scheduler applies what they decide.
//!
//! **Replicas** follow each module's saturation. A module's signal is the
//! mean busy fraction of its replicas (the share of time at least one of its
//! requests is in flight on a runner) and the mean time its requests wait
//! before running.
//! - *Up* when the busy fraction is over its target, or the queue delay is
//!   over its target, for `up_after` without a break: a one-second burst adds
//!   nothing (a replica costs memory and a cold load).
//!   The step is proportional (`ceil(n × busy / target)`, as Kubernetes'
//!   HPA), at least one and at most `max_step_up`: one bad reading cannot
//!   blow the fleet up.
//! - *Down* by one replica when, for `down_after`, the survivors would stay
//!   under 80 % of the target carrying the load of the one removed
//!   (`busy × n / (n − 1)`) and the queue delay is under half its target.
//!   Judging the load after the removal, with a band under the target, is
//!   what keeps add/remove from oscillating (Ray Serve's complaint).
//! - *Cooldowns* after every change (`up_cooldown`, the longer
//!   `down_cooldown`): the effect of a change shows only once the new replica
//!   has loaded and the traffic has spread; deciding again before that
//!   counts the same saturation twice. Down waits longer than up because
//!   being short costs latency at once, being long only memory.
//! - *To zero* after `idle_after` without a request on any replica: the
//!   placement is removed; the module's next request waits (bounded by the
//!   gateway's placement timeout) for a new one.
//!
//! **Runners** follow the replicas: the fleet must hold, on distinct
//! runners, the most replicas any module wants, and every replica's memory.
//! Up at once (to the ceiling, `max_step_up` runners per decision; scaling
//! from zero waits for nothing), down by one runner at a time after
//! `down_after` of surplus and `down_cooldown` since the last change: each
//! runner removed is drained (its replicas loaded elsewhere first), and two
//! drains at once would move twice the replicas. Never under `min`, never
//! over `max`; to zero only when `min` is 0 and nothing is placed.

use crate::records::{ModelLoad, Placement, RunnerRecord, ScaleHints};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Replica autoscaling: the cluster's defaults and timings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaPolicy {
    /// Busy fraction a replica is kept under (a module's
    /// `--target-busy` overrides it).
    pub target_busy: f64,
    /// Queue delay its requests are kept under (`--target-queue-ms`).
    pub target_queue: Duration,
    /// Most replicas per module (`--max-replicas`).
    pub max_replicas: u32,
    /// How long over target before a replica is added.
    pub up_after: Duration,
    /// How long under target before one is removed.
    pub down_after: Duration,
    /// After any change, how long before another replica is added.
    pub up_cooldown: Duration,
    /// After any change, how long before one is removed.
    pub down_cooldown: Duration,
    /// Most replicas added by one decision.
    pub max_step_up: u32,
    /// Without a request this long, a module is scaled to zero
    /// (`--idle-seconds`); zero never scales to zero.
    pub idle_after: Duration,
}

impl Default for ReplicaPolicy {
    /// Targets 70 % busy / 50 ms queued; up after 3 s, down after 60 s;
    /// cooldowns 5 s / 30 s; at most 4 replicas added per decision and 16
    /// per module; to zero after 10 min idle.
    fn default() -> Self {
        Self {
            target_busy: 0.7,
            target_queue: Duration::from_millis(50),
            max_replicas: 16,
            up_after: Duration::from_secs(3),
            down_after: Duration::from_secs(60),
            up_cooldown: Duration::from_secs(5),
            down_cooldown: Duration::from_secs(30),
            max_step_up: 4,
            idle_after: Duration::from_secs(600),
        }
    }
}

/// What the replicas of one module report together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signal {
    /// Replicas reporting (live, not draining, holding it).
    pub replicas: u32,
    /// Mean busy fraction over them.
    pub busy: f64,
    /// Mean queue delay of their requests (weighted by rate), in ms.
    pub queue_ms: f64,
    /// Requests per second over all of them.
    pub rate: f64,
    /// Requests in flight over all of them.
    pub in_flight: u64,
    /// Since the last request on any of them (`None`: none reported one).
    pub idle: Option<Duration>,
}

impl Signal {
    /// Gathers module `digest`'s reports from the runners `holders` (the
    /// live, undrained runners holding it).
    pub fn gather(digest: &str, holders: &[&RunnerRecord]) -> Self {
        let mut s = Signal {
            replicas: holders.len() as u32,
            ..Signal::default()
        };
        let mut queue_weight = 0.0;
        for r in holders {
            let Some(m) = r.models.iter().find(|m| m.digest == digest) else {
                continue;
            };
            s.busy += m.busy.clamp(0.0, 1.0);
            s.rate += m.rate.max(0.0);
            s.in_flight += m.in_flight;
            let w = m.rate.max(1e-3);
            s.queue_ms += m.queue_ms.max(0.0) * w;
            queue_weight += w;
            let idle = Duration::from_millis(m.idle_ms);
            s.idle = Some(s.idle.map_or(idle, |i| i.min(idle)));
        }
        if s.replicas > 0 {
            s.busy /= f64::from(s.replicas);
        }
        if queue_weight > 0.0 {
            s.queue_ms /= queue_weight;
        }
        s
    }
}

/// Why a scale decision was made (a metric label: a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Replicas busier than the target.
    Busy,
    /// Requests waiting longer than the target.
    Queue,
    /// Under the floor (`--replicas`, `--min-runners`).
    Min,
    /// Over the ceiling.
    Max,
    /// Load well under the target.
    Underused,
    /// No request for the idle period: to zero.
    Idle,
    /// Replicas (or their memory) that no runner can hold yet.
    Unplaced,
    /// More runners than the replicas need.
    Surplus,
}

impl Reason {
    /// Its label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Busy => "busy",
            Reason::Queue => "queue",
            Reason::Min => "min",
            Reason::Max => "max",
            Reason::Underused => "underused",
            Reason::Idle => "idle",
            Reason::Unplaced => "unplaced",
            Reason::Surplus => "surplus",
        }
    }
}

/// A decision: the new count and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The count before.
    pub from: u32,
    /// The count after (0 for a module: remove its placement).
    pub to: u32,
    /// Why.
    pub reason: Reason,
}

#[derive(Debug, Clone)]
struct Track {
    over_since: Option<Instant>,
    under_since: Option<Instant>,
    changed: Option<Instant>,
    /// When first seen (a module never requested counts idle from here).
    seen: Instant,
}

impl Track {
    fn new(now: Instant) -> Self {
        Self {
            over_since: None,
            under_since: None,
            changed: None,
            seen: now,
        }
    }

    fn since_change(&self, now: Instant) -> Duration {
        self.changed
            .map_or(Duration::MAX, |c| now.saturating_duration_since(c))
    }

    fn changed(&mut self, now: Instant) {
        self.changed = Some(now);
        self.over_since = None;
        self.under_since = None;
    }
}

/// Replica autoscaling state, per module digest.
#[derive(Debug, Clone, Default)]
pub struct ReplicaScaler {
    tracks: HashMap<String, Track>,
}

impl ReplicaScaler {
    /// A scaler with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides module `p`'s replicas from `signal` at `now`; `None` keeps
    /// them. A `to` of 0 scales it to zero.
    pub fn decide(
        &mut self,
        policy: &ReplicaPolicy,
        p: &Placement,
        signal: &Signal,
        now: Instant,
    ) -> Option<Change> {
        let t = self
            .tracks
            .entry(p.digest.clone())
            .or_insert_with(|| Track::new(now));
        let hints = Targets::of(policy, &p.scale);
        let current = p.replicas;
        let change = |to: u32, reason| {
            Some(Change {
                from: current,
                to,
                reason,
            })
        };

        // To zero: nothing in flight, no request for the idle period.
        if !hints.idle_after.is_zero() && signal.in_flight == 0 {
            let idle = signal
                .idle
                .unwrap_or_else(|| now.saturating_duration_since(t.seen));
            if idle >= hints.idle_after {
                self.tracks.remove(&p.digest);
                return change(0, Reason::Idle);
            }
        }
        if current < hints.min {
            t.changed(now);
            return change(hints.min, Reason::Min);
        }
        if current > hints.max {
            t.changed(now);
            return change(hints.max, Reason::Max);
        }
        let busy = signal.busy;
        let queue = signal.queue_ms;
        let over_busy = busy > hints.busy;
        let over_queue = queue > hints.queue_ms;
        if over_busy || over_queue {
            t.under_since = None;
            let since = *t.over_since.get_or_insert(now);
            // Replicas still being placed (runners starting) already answer
            // this saturation: wait for them.
            let placed = signal.replicas >= current;
            if now.saturating_duration_since(since) >= policy.up_after
                && t.since_change(now) >= policy.up_cooldown
                && current < hints.max
                && placed
            {
                let n = f64::from(current.max(1));
                let by_busy = (n * busy / hints.busy).ceil() as u32;
                let step = by_busy
                    .saturating_sub(current)
                    .clamp(1, policy.max_step_up.max(1));
                let to = current.saturating_add(step).min(hints.max);
                t.changed(now);
                return change(
                    to,
                    if over_busy {
                        Reason::Busy
                    } else {
                        Reason::Queue
                    },
                );
            }
            return None;
        }
        t.over_since = None;
        let n = f64::from(signal.replicas.max(current).max(1));
        let after_removal = if n > 1.0 {
            busy * n / (n - 1.0)
        } else {
            f64::INFINITY
        };
        let under =
            current > hints.min && after_removal < hints.busy * 0.8 && queue < hints.queue_ms / 2.0;
        if !under {
            t.under_since = None;
            return None;
        }
        let since = *t.under_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= policy.down_after
            && t.since_change(now) >= policy.down_cooldown
        {
            t.changed(now);
            return change(current - 1, Reason::Underused);
        }
        None
    }

    /// Forgets modules no longer placed.
    pub fn retain(&mut self, placed: impl Fn(&str) -> bool) {
        self.tracks.retain(|d, _| placed(d));
    }
}

/// A module's effective targets: its hints, else the policy's defaults.
#[derive(Debug, Clone, Copy)]
struct Targets {
    min: u32,
    max: u32,
    busy: f64,
    queue_ms: f64,
    idle_after: Duration,
}

impl Targets {
    fn of(policy: &ReplicaPolicy, h: &ScaleHints) -> Self {
        let min = h.min.max(1);
        let max = if h.max == 0 {
            policy.max_replicas
        } else {
            h.max
        }
        .max(min);
        let busy = if h.target_busy_percent == 0 {
            policy.target_busy
        } else {
            f64::from(h.target_busy_percent.min(100)) / 100.0
        };
        let queue_ms = if h.target_queue_ms == 0 {
            policy.target_queue.as_secs_f64() * 1e3
        } else {
            f64::from(h.target_queue_ms)
        };
        let idle_after = if h.idle_seconds == 0 {
            policy.idle_after
        } else {
            Duration::from_secs(u64::from(h.idle_seconds))
        };
        Self {
            min,
            max,
            busy,
            queue_ms,
            idle_after,
        }
    }
}

/// Runner autoscaling: bounds and timings.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerPolicy {
    /// The floor (0: scale to zero when nothing is placed).
    pub min: u32,
    /// The ceiling.
    pub max: u32,
    /// Most runners added by one decision.
    pub max_step_up: u32,
    /// How long a surplus lasts before a runner is removed.
    pub down_after: Duration,
    /// After any change, how long before a runner is removed.
    pub down_cooldown: Duration,
    /// How long a runner asked for may take to heartbeat; past it the
    /// decision is logged as failing and asked again.
    pub start_timeout: Duration,
}

impl Default for RunnerPolicy {
    /// 0 to 8 runners; up to 8 added at once; down one at a time after 2
    /// minutes of surplus, a minute apart; runners given 2 minutes to start
    /// (image pull, model download).
    fn default() -> Self {
        Self {
            min: 0,
            max: 8,
            max_step_up: 8,
            down_after: Duration::from_secs(120),
            down_cooldown: Duration::from_secs(60),
            start_timeout: Duration::from_secs(120),
        }
    }
}

/// How many runners the placements need: on distinct runners, the most
/// replicas any placement wants; and room for every replica's memory at the
/// fleet's mean runner size. At least one while anything is placed.
pub fn runners_needed(placements: &[Placement], runners: &[RunnerRecord]) -> u32 {
    if placements.is_empty() {
        return 0;
    }
    let widest = placements.iter().map(|p| p.replicas).max().unwrap_or(0);
    let sizes: Vec<u64> = runners
        .iter()
        .map(|r| r.memory_total)
        .filter(|&m| m > 0)
        .collect();
    let by_memory = if sizes.is_empty() {
        0
    } else {
        let mean = sizes.iter().sum::<u64>() / sizes.len() as u64;
        let want: u128 = placements
            .iter()
            .map(|p| u128::from(p.memory) * u128::from(p.replicas))
            .sum();
        u32::try_from(want.div_ceil(u128::from(mean.max(1)))).unwrap_or(u32::MAX)
    };
    widest.max(by_memory).max(1)
}

/// Runner autoscaling state.
#[derive(Debug, Clone)]
pub struct RunnerScaler {
    desired: Option<u32>,
    surplus_since: Option<Instant>,
    changed: Option<Instant>,
    /// When `desired` last went over the live count.
    asked: Option<Instant>,
}

impl Default for RunnerScaler {
    fn default() -> Self {
        Self::new()
    }
}

impl RunnerScaler {
    /// A scaler that adopts the fleet as it finds it.
    pub fn new() -> Self {
        Self {
            desired: None,
            surplus_since: None,
            changed: None,
            asked: None,
        }
    }

    /// Runners wanted now (after the last decision).
    pub fn desired(&self) -> Option<u32> {
        self.desired
    }

    /// Decides the fleet's size: `live` runners heartbeat (draining ones not
    /// counted), `needed` is [`runners_needed`]. Returns the change, if any;
    /// [`RunnerScaler::desired`] has the result either way.
    pub fn decide(
        &mut self,
        policy: &RunnerPolicy,
        live: u32,
        needed: u32,
        now: Instant,
    ) -> Option<Change> {
        let max = policy.max.max(policy.min);
        let current = *self.desired.get_or_insert(live.clamp(policy.min, max));
        let target = needed.clamp(policy.min, max);
        if current < policy.min || current > max {
            let to = current.clamp(policy.min, max);
            return Some(self.set(
                current,
                to,
                if to > current {
                    Reason::Min
                } else {
                    Reason::Max
                },
                now,
            ));
        }
        if target > current {
            self.surplus_since = None;
            let to = current
                .saturating_add(policy.max_step_up.max(1))
                .min(target);
            self.asked = Some(now);
            return Some(self.set(current, to, Reason::Unplaced, now));
        }
        if target < current {
            let since = *self.surplus_since.get_or_insert(now);
            let cooled = self
                .changed
                .is_none_or(|c| now.saturating_duration_since(c) >= policy.down_cooldown);
            if now.saturating_duration_since(since) >= policy.down_after && cooled {
                self.surplus_since = None;
                return Some(self.set(current, current - 1, Reason::Surplus, now));
            }
        } else {
            self.surplus_since = None;
        }
        None
    }

    /// Whether runners asked for have not all heartbeated within the start
    /// timeout (the actuator is asked again, and the reason says so).
    pub fn starting_late(&self, policy: &RunnerPolicy, live: u32, now: Instant) -> bool {
        match (self.desired, self.asked) {
            (Some(d), Some(at)) => {
                live < d && now.saturating_duration_since(at) >= policy.start_timeout
            }
            _ => false,
        }
    }

    /// Restarts the start timeout (after asking the actuator again).
    pub fn asked_again(&mut self, now: Instant) {
        self.asked = Some(now);
    }

    fn set(&mut self, from: u32, to: u32, reason: Reason, now: Instant) -> Change {
        self.desired = Some(to);
        self.changed = Some(now);
        Change { from, to, reason }
    }
}

/// One module's cumulative counters on one runner, as read at a heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Requests finished.
    pub requests: u64,
    /// Time at least one request was in flight.
    pub busy: Duration,
    /// Time finished requests waited, summed.
    pub queued: Duration,
}

/// A module's [`ModelLoad`] from two cumulative readings of it on one
/// runner, `elapsed` apart (`before` is `None` at its first reading).
pub fn model_load(
    digest: String,
    now: Reading,
    before: Option<Reading>,
    in_flight: u64,
    idle: Duration,
    elapsed: Duration,
) -> ModelLoad {
    let before = before.unwrap_or(now);
    let secs = elapsed.as_secs_f64().max(1e-3);
    let done = now.requests.saturating_sub(before.requests);
    ModelLoad {
        digest,
        rate: done as f64 / secs,
        busy: (now.busy.saturating_sub(before.busy).as_secs_f64() / secs).clamp(0.0, 1.0),
        queue_ms: if done == 0 {
            0.0
        } else {
            now.queued.saturating_sub(before.queued).as_secs_f64() * 1e3 / done as f64
        },
        in_flight,
        idle_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReplicaPolicy {
        ReplicaPolicy {
            target_busy: 0.5,
            target_queue: Duration::from_millis(100),
            max_replicas: 8,
            up_after: Duration::from_secs(2),
            down_after: Duration::from_secs(10),
            up_cooldown: Duration::from_secs(3),
            down_cooldown: Duration::from_secs(5),
            max_step_up: 2,
            idle_after: Duration::from_secs(60),
        }
    }

    fn placement(replicas: u32) -> Placement {
        Placement {
            digest: "blake3:aa".into(),
            replicas,
            runners: (0..replicas).map(|i| format!("r{i}")).collect(),
            ..Placement::default()
        }
    }

    fn signal(replicas: u32, busy: f64) -> Signal {
        Signal {
            replicas,
            busy,
            rate: 10.0,
            in_flight: 1,
            idle: Some(Duration::ZERO),
            ..Signal::default()
        }
    }

    /// Runs the scaler every second for `secs` seconds from `t`, applying
    /// its changes to `p`; returns the changes.
    fn run(
        s: &mut ReplicaScaler,
        p: &mut Placement,
        t: &mut Instant,
        secs: u64,
        busy: impl Fn(u32) -> f64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for _ in 0..secs {
            *t += Duration::from_secs(1);
            let sig = signal(p.replicas, busy(p.replicas));
            if let Some(c) = s.decide(&policy(), p, &sig, *t) {
                p.replicas = c.to;
                changes.push(c);
            }
        }
        changes
    }

    #[test]
    fn a_short_burst_adds_nothing_a_sustained_one_does() {
        let (mut s, mut p, mut t) = (ReplicaScaler::new(), placement(1), Instant::now());
        assert!(
            run(&mut s, &mut p, &mut t, 1, |_| 1.0).is_empty(),
            "1 s over"
        );
        assert!(
            run(&mut s, &mut p, &mut t, 1, |_| 0.1).is_empty(),
            "then under"
        );
        let c = run(&mut s, &mut p, &mut t, 3, |_| 1.0);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].to, c[0].reason), (2, Reason::Busy));
    }

    #[test]
    fn steps_are_proportional_but_limited() {
        let (mut s, mut p, mut t) = (ReplicaScaler::new(), placement(4), Instant::now());
        // 4 replicas at 100 % against a 50 % target want 8: at most +2.
        let c = run(&mut s, &mut p, &mut t, 3, |_| 1.0);
        assert_eq!(c[0].to, 6, "{c:?}");
    }

    #[test]
    fn cooldown_spaces_the_steps() {
        let (mut s, mut p, mut t) = (ReplicaScaler::new(), placement(1), Instant::now());
        let start = t;
        let mut at = Vec::new();
        for _ in 0..12 {
            for c in run(&mut s, &mut p, &mut t, 1, |_| 1.0) {
                at.push(((t - start).as_secs(), c.to));
            }
        }
        // Over for 2 s (seen at the third tick), then one step per 3 s
        // cooldown: never two changes closer than it.
        assert_eq!(at.first(), Some(&(3, 2)), "{at:?}");
        assert!(
            at.windows(2)
                .all(|w| w[1].0 - w[0].0 >= 3 && w[1].1 > w[0].1),
            "{at:?}"
        );
        assert_eq!(at.len(), 4, "{at:?}");
    }

    #[test]
    fn a_steady_load_at_target_does_not_oscillate() {
        // Total work 1.2 replica-seconds per second, target 0.5: 3 replicas
        // carry it at 0.4 each; removing one would put 0.6 on the others.
        let (mut s, mut p, mut t) = (ReplicaScaler::new(), placement(1), Instant::now());
        let work = |n: u32| (1.2 / f64::from(n)).min(1.0);
        let changes = run(&mut s, &mut p, &mut t, 300, work);
        assert_eq!(p.replicas, 3, "{changes:?}");
        assert!(
            changes.iter().all(|c| c.to > c.from),
            "never down: {changes:?}"
        );
        assert_eq!(changes.len(), 2, "{changes:?}");
    }

    #[test]
    fn load_gone_shrinks_one_at_a_time_to_the_floor_then_to_zero() {
        let (mut s, mut t) = (ReplicaScaler::new(), Instant::now());
        let mut p = placement(4);
        p.scale.min = 2;
        let changes = run(&mut s, &mut p, &mut t, 40, |_| 0.0);
        assert_eq!(p.replicas, 2, "floor kept: {changes:?}");
        assert!(changes.iter().all(|c| c.from - c.to == 1));
        // No request at all for the idle period: to zero.
        let mut sig = signal(2, 0.0);
        sig.in_flight = 0;
        sig.idle = Some(Duration::from_secs(61));
        let c = s.decide(&policy(), &p, &sig, t).unwrap();
        assert_eq!((c.to, c.reason), (0, Reason::Idle));
    }

    #[test]
    fn a_request_in_flight_or_a_hint_keeps_it_from_zero() {
        let mut s = ReplicaScaler::new();
        let t = Instant::now();
        let mut p = placement(1);
        let mut sig = signal(1, 0.0);
        sig.idle = Some(Duration::from_secs(3600));
        assert_eq!(s.decide(&policy(), &p, &sig, t), None, "1 in flight");
        sig.in_flight = 0;
        p.scale.idle_seconds = 7200;
        assert_eq!(s.decide(&policy(), &p, &sig, t), None, "its own idle hint");
    }

    #[test]
    fn queue_delay_alone_adds_and_hints_bound_it() {
        let mut s = ReplicaScaler::new();
        let mut t = Instant::now();
        let mut p = placement(2);
        p.scale.max = 2;
        let mut sig = signal(2, 0.1);
        sig.queue_ms = 500.0;
        for _ in 0..10 {
            t += Duration::from_secs(1);
            assert_eq!(s.decide(&policy(), &p, &sig, t), None, "at its max");
        }
        p.scale.max = 0;
        t += Duration::from_secs(1);
        let c = s.decide(&policy(), &p, &sig, t).unwrap();
        assert_eq!((c.to, c.reason), (3, Reason::Queue));
    }

    #[test]
    fn no_new_replica_while_the_last_ones_wait_for_runners() {
        let mut s = ReplicaScaler::new();
        let mut t = Instant::now();
        let p = placement(3);
        for _ in 0..10 {
            t += Duration::from_secs(1);
            // Only 1 of 3 placed yet: its saturation is not news.
            assert_eq!(s.decide(&policy(), &p, &signal(1, 1.0), t), None);
        }
    }

    #[test]
    fn signals_average_over_the_replicas() {
        let holder = |id: &str, busy: f64, q: f64, rate: f64| RunnerRecord {
            id: id.into(),
            models: vec![ModelLoad {
                digest: "blake3:aa".into(),
                busy,
                queue_ms: q,
                rate,
                in_flight: 1,
                idle_ms: 5,
            }],
            ..RunnerRecord::default()
        };
        let (a, b) = (holder("a", 1.0, 10.0, 30.0), holder("b", 0.0, 0.0, 10.0));
        let c = RunnerRecord::default();
        let s = Signal::gather("blake3:aa", &[&a, &b, &c]);
        assert_eq!(s.replicas, 3);
        assert!((s.busy - 1.0 / 3.0).abs() < 1e-9);
        assert!((s.queue_ms - 7.5).abs() < 1e-9, "{}", s.queue_ms);
        assert_eq!((s.in_flight, s.rate), (2, 40.0));
        assert_eq!(s.idle, Some(Duration::from_millis(5)));
    }

    fn runners_policy() -> RunnerPolicy {
        RunnerPolicy {
            min: 0,
            max: 10,
            max_step_up: 3,
            down_after: Duration::from_secs(10),
            down_cooldown: Duration::from_secs(5),
            start_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn runners_grow_at_once_in_bounded_steps_and_shrink_one_by_one() {
        let pol = runners_policy();
        let mut s = RunnerScaler::new();
        let mut t = Instant::now();
        // From zero: one placement pending.
        assert_eq!(s.decide(&pol, 0, 1, t).map(|c| c.to), Some(1));
        assert_eq!(s.decide(&pol, 1, 8, t).map(|c| c.to), Some(4), "+3 at most");
        assert_eq!(s.decide(&pol, 4, 8, t).map(|c| c.to), Some(7));
        assert_eq!(
            s.decide(&pol, 7, 50, t).map(|c| c.to),
            Some(10),
            "the ceiling"
        );
        // Needs drop to 2: nothing for down_after, then one at a time.
        let mut seen = Vec::new();
        for _ in 0..60 {
            t += Duration::from_secs(1);
            if let Some(c) = s.decide(&pol, s.desired().unwrap(), 2, t) {
                seen.push((c.to, c.reason));
            }
        }
        assert!(seen.iter().all(|&(_, r)| r == Reason::Surplus));
        let to: Vec<u32> = seen.iter().map(|s| s.0).collect();
        assert_eq!(to[0], 9);
        assert!(to.windows(2).all(|w| w[0] - w[1] == 1), "{to:?}");
        assert!(to.len() <= 11, "at most one per 5 s after 10 s: {to:?}");
    }

    #[test]
    fn runners_go_to_zero_only_with_a_zero_floor() {
        let mut pol = runners_policy();
        let mut s = RunnerScaler::new();
        let mut t = Instant::now();
        s.decide(&pol, 2, 2, t);
        for _ in 0..40 {
            t += Duration::from_secs(1);
            s.decide(&pol, s.desired().unwrap(), 0, t);
        }
        assert_eq!(s.desired(), Some(0));
        pol.min = 1;
        assert_eq!(
            s.decide(&pol, 0, 0, t).map(|c| (c.to, c.reason)),
            Some((1, Reason::Min))
        );
    }

    #[test]
    fn late_runners_are_noticed() {
        let pol = runners_policy();
        let mut s = RunnerScaler::new();
        let t = Instant::now();
        s.decide(&pol, 0, 2, t);
        assert!(!s.starting_late(&pol, 0, t + Duration::from_secs(29)));
        assert!(s.starting_late(&pol, 1, t + Duration::from_secs(31)));
        assert!(!s.starting_late(&pol, 2, t + Duration::from_secs(31)));
    }

    #[test]
    fn needs_count_width_and_memory() {
        let r = |m: u64| RunnerRecord {
            memory_total: m,
            ..RunnerRecord::default()
        };
        let p = |replicas: u32, memory: u64| Placement {
            replicas,
            memory,
            ..Placement::default()
        };
        assert_eq!(runners_needed(&[], &[r(100)]), 0);
        assert_eq!(runners_needed(&[p(1, 10)], &[]), 1);
        assert_eq!(runners_needed(&[p(3, 10), p(1, 10)], &[r(100)]), 3);
        assert_eq!(runners_needed(&[p(2, 90), p(2, 90)], &[r(100), r(100)]), 4);
    }

    #[test]
    fn loads_are_rates_between_two_readings() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let now = Reading {
            requests: 30,
            busy: ms(1500),
            queued: ms(200),
        };
        let before = Reading {
            requests: 10,
            busy: ms(500),
            queued: Duration::ZERO,
        };
        let l = model_load("d".into(), now, Some(before), 2, Duration::ZERO, s(2));
        assert_eq!(l.rate, 10.0);
        assert!((l.busy - 0.5).abs() < 1e-9);
        assert!((l.queue_ms - 10.0).abs() < 1e-9);
        let first = model_load("d".into(), now, None, 0, s(3), s(1));
        assert_eq!((first.rate, first.busy, first.idle_ms), (0.0, 0.0, 3000));
    }
}
