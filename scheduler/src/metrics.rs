//! What the scheduler exports on `/metrics` (Prometheus text): the fleet it
//! wants against the fleet it has, replicas per module, and every scale
//! event with its reason.
//!
//! Labels are bounded: `kind` (replicas, runners), `direction` (up, down,
//! zero) and `reason` (a closed set: [`Reason`](crate::autoscale::Reason)); the per-module gauge
//! carries `module` (`name@version`) for the first [`MAX_MODULE_SERIES`]
//! placements only, the rest summed in `conduit_scheduler_replicas_total`.

use crate::autoscale::Change;
use crate::records::Placement;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Most per-module replica series rendered.
pub const MAX_MODULE_SERIES: usize = 500;

/// The scheduler's gauges and counters.
#[derive(Debug, Default)]
pub struct SchedulerMetrics {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    leader: bool,
    desired: Option<u32>,
    live: u32,
    draining: u32,
    placements: u32,
    pending: u32,
    replicas: BTreeMap<String, (u32, u32)>,
    events: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    actuator_errors: u64,
}

impl SchedulerMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("metrics lock"))
    }

    /// Whether this scheduler leads now.
    pub fn set_leader(&self, leader: bool) {
        self.with(|s| s.leader = leader);
    }

    /// The fleet: wanted (`None` without runner autoscaling), live and
    /// draining runners.
    pub fn set_runners(&self, desired: Option<u32>, live: u32, draining: u32) {
        self.with(|s| {
            s.desired = desired;
            s.live = live;
            s.draining = draining;
        });
    }

    /// The placements now: replicas wanted and held per module.
    pub fn set_placements(&self, placements: &[Placement]) {
        self.with(|s| {
            s.placements = placements.len() as u32;
            s.pending = placements.iter().filter(|p| p.runners.is_empty()).count() as u32;
            s.replicas = placements
                .iter()
                .take(MAX_MODULE_SERIES)
                .map(|p| (p.module.clone(), (p.replicas, p.runners.len() as u32)))
                .collect();
        });
    }

    /// Counts a scale event of `kind` (`replicas`, `runners`).
    pub fn event(&self, kind: &'static str, change: &Change) {
        let direction = if change.to == 0 {
            "zero"
        } else if change.to > change.from {
            "up"
        } else {
            "down"
        };
        self.with(|s| {
            *s.events
                .entry((kind, direction, change.reason.as_str()))
                .or_default() += 1
        });
    }

    /// Counts an actuator call that failed.
    pub fn actuator_failed(&self) {
        self.with(|s| s.actuator_errors += 1);
    }

    /// Scale events counted so far, by (kind, direction, reason).
    pub fn events(&self) -> BTreeMap<(&'static str, &'static str, &'static str), u64> {
        self.with(|s| s.events.clone())
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let s = self.state.lock().expect("metrics lock");
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            );
        };
        gauge(
            "conduit_scheduler_leader",
            "1 while this scheduler holds the lease.",
            f64::from(u8::from(s.leader)),
        );
        if let Some(d) = s.desired {
            gauge(
                "conduit_scheduler_runners_desired",
                "Runners the leader wants (what actuators follow).",
                f64::from(d),
            );
        }
        gauge(
            "conduit_scheduler_runners",
            "Runners heartbeating, draining ones included.",
            f64::from(s.live),
        );
        gauge(
            "conduit_scheduler_runners_draining",
            "Runners draining.",
            f64::from(s.draining),
        );
        gauge(
            "conduit_scheduler_placements",
            "Modules placed (scaled above zero).",
            f64::from(s.placements),
        );
        gauge(
            "conduit_scheduler_placements_pending",
            "Placements waiting for a runner to start.",
            f64::from(s.pending),
        );
        let total: u32 = s.replicas.values().map(|r| r.0).sum();
        gauge(
            "conduit_scheduler_replicas_total",
            "Replicas wanted over every module.",
            f64::from(total),
        );
        let name = "conduit_scheduler_replicas";
        let _ = writeln!(
            out,
            "# HELP {name} Replicas per module: wanted, and placed on runners.\n# TYPE {name} gauge"
        );
        for (module, (wanted, placed)) in &s.replicas {
            let m = module.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{module=\"{m}\",state=\"wanted\"}} {wanted}");
            let _ = writeln!(out, "{name}{{module=\"{m}\",state=\"placed\"}} {placed}");
        }
        let name = "conduit_scheduler_scale_events_total";
        let _ = writeln!(
            out,
            "# HELP {name} Scale decisions, by what was scaled, which way and why.\n# TYPE {name} counter"
        );
        for ((kind, direction, reason), n) in &s.events {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{kind}\",direction=\"{direction}\",reason=\"{reason}\"}} {n}"
            );
        }
        let name = "conduit_scheduler_actuator_errors_total";
        let _ = write!(
            out,
            "# HELP {name} Actuator calls that failed (retried every tick).\n# TYPE {name} counter\n{name} {}\n",
            s.actuator_errors
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::Reason;

    #[test]
    fn renders_events_with_bounded_labels() {
        let m = SchedulerMetrics::default();
        m.set_runners(Some(3), 2, 1);
        m.event(
            "replicas",
            &Change {
                from: 1,
                to: 2,
                reason: Reason::Busy,
            },
        );
        m.event(
            "replicas",
            &Change {
                from: 1,
                to: 0,
                reason: Reason::Idle,
            },
        );
        m.set_placements(&[Placement {
            module: "a\"b@1".into(),
            replicas: 2,
            runners: vec!["r".into()],
            ..Placement::default()
        }]);
        let text = m.render();
        assert!(
            text.contains("conduit_scheduler_runners_desired 3"),
            "{text}"
        );
        assert!(text.contains(
            "conduit_scheduler_scale_events_total{kind=\"replicas\",direction=\"up\",reason=\"busy\"} 1"
        ));
        assert!(text.contains("direction=\"zero\",reason=\"idle\"} 1"));
        assert!(
            text.contains("{module=\"a\\\"b@1\",state=\"placed\"} 1"),
            "{text}"
        );
    }
}
