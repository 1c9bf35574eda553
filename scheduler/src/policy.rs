//! Placement policy: which runners should hold a module. Pure functions of
//! the view, so that they are tested without NATS.
//!
//! In order:
//! 1. **Keep** the live holders it has (no reload, no thrash), up to the
//!    replica count.
//! 2. **Affinity:** prefer runners that already hold it loaded (a runner that
//!    comes back, or one warmed before), then
//! 3. **device:** only runners with the device the module asks for, then
//! 4. **memory:** only runners with room for the module's estimate, counting
//!    what is placed on them but not loaded yet, then
//! 5. **load:** the least loaded, then the tightest fit (bin-packing: a big
//!    hole is left for a big model), then the id (stable answers).
//!
//! Nothing is ever evicted to make room: a module that fits nowhere is
//! refused with the reason, never placed by unloading others (the
//! ModelMesh thrash).

use crate::records::{Placement, RunnerRecord};
use std::collections::HashMap;

/// What a module asks of the runners that hold it.
#[derive(Debug, Clone, Default)]
pub struct Demand<'a> {
    /// Its digest.
    pub digest: &'a str,
    /// Replicas wanted.
    pub replicas: usize,
    /// Memory one copy takes.
    pub memory: u64,
    /// Device kind it needs (`cuda`, `cpu`); empty for any.
    pub device: &'a str,
}

/// Memory placed on each runner but not loaded there yet (placements name
/// it; its heartbeat does not list the digest as loaded).
pub fn planned_memory(placements: &[Placement], runners: &[RunnerRecord]) -> HashMap<String, u64> {
    let by_id: HashMap<&str, &RunnerRecord> = runners.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut planned = HashMap::new();
    for p in placements {
        for id in &p.runners {
            if let Some(r) = by_id.get(id.as_str())
                && !r.loaded.iter().any(|d| d == &p.digest)
            {
                *planned.entry(id.clone()).or_default() += p.memory;
            }
        }
    }
    planned
}

/// The runners that should hold a module: `current` holders first (those
/// still live), then the best new ones, `demand.replicas` in all (fewer when
/// not enough runners qualify).
pub fn choose(
    demand: &Demand<'_>,
    current: &[String],
    runners: &[RunnerRecord],
    planned: &HashMap<String, u64>,
) -> Vec<String> {
    let live: HashMap<&str, &RunnerRecord> = runners.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut chosen: Vec<String> = current
        .iter()
        .filter(|id| live.get(id.as_str()).is_some_and(|r| !r.draining))
        .take(demand.replicas)
        .cloned()
        .collect();
    if chosen.len() >= demand.replicas {
        return chosen;
    }
    let mut candidates: Vec<&RunnerRecord> = runners
        .iter()
        .filter(|r| !r.draining && !chosen.contains(&r.id))
        .filter(|r| has_device(r, demand.device))
        .filter(|r| {
            let holds = r.loaded.iter().any(|d| d == demand.digest);
            let free = r
                .memory_free()
                .saturating_sub(planned.get(&r.id).copied().unwrap_or(0));
            holds || demand.memory <= free
        })
        .collect();
    candidates.sort_by(|a, b| {
        let held = |r: &RunnerRecord| !r.loaded.iter().any(|d| d == demand.digest);
        let free = |r: &RunnerRecord| {
            r.memory_free()
                .saturating_sub(planned.get(&r.id).copied().unwrap_or(0))
        };
        held(a)
            .cmp(&held(b))
            .then(a.load().total_cmp(&b.load()))
            .then(free(a).cmp(&free(b)))
            .then(a.id.cmp(&b.id))
    });
    for r in candidates {
        if chosen.len() >= demand.replicas {
            break;
        }
        chosen.push(r.id.clone());
    }
    chosen
}

/// Why nothing could be chosen, for the refusal a client sees.
pub fn refusal(demand: &Demand<'_>, runners: &[RunnerRecord]) -> String {
    let open: Vec<&RunnerRecord> = runners.iter().filter(|r| !r.draining).collect();
    if open.is_empty() {
        return "no live runner (none has heartbeated within its TTL, or all are draining)".into();
    }
    let with_device: Vec<_> = open
        .iter()
        .filter(|r| has_device(r, demand.device))
        .collect();
    if with_device.is_empty() {
        return format!("no live runner has a `{}` device", demand.device);
    }
    let most = with_device
        .iter()
        .map(|r| r.memory_free())
        .max()
        .unwrap_or(0);
    format!(
        "no live runner has room: the module needs {} bytes, the most free on any runner is {most}",
        demand.memory
    )
}

fn has_device(r: &RunnerRecord, device: &str) -> bool {
    if device.is_empty() || device == "cpu" {
        return true;
    }
    let kind = device.split(':').next().unwrap_or(device);
    r.devices
        .iter()
        .any(|d| d == device || d.split(':').next() == Some(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(id: &str, load: u64, free: u64) -> RunnerRecord {
        RunnerRecord {
            id: id.into(),
            memory_total: free,
            queue_depth: load,
            devices: vec!["cpu".into()],
            ..RunnerRecord::default()
        }
    }

    fn demand(replicas: usize, memory: u64) -> Demand<'static> {
        Demand {
            digest: "blake3:aa",
            replicas,
            memory,
            device: "",
        }
    }

    #[test]
    fn the_least_loaded_runner_with_room_is_chosen() {
        let rs = [runner("a", 5, 100), runner("b", 1, 100), runner("c", 0, 10)];
        let got = choose(&demand(1, 50), &[], &rs, &HashMap::new());
        assert_eq!(got, ["b"], "c is idle but has no room");
        let got = choose(&demand(2, 50), &[], &rs, &HashMap::new());
        assert_eq!(got, ["b", "a"]);
    }

    #[test]
    fn live_holders_are_kept_and_lost_ones_replaced() {
        let rs = [
            runner("a", 9, 100),
            runner("b", 0, 100),
            runner("c", 1, 100),
        ];
        // `a` is busy but holds it: kept; `gone` is not live: replaced by `b`.
        let got = choose(
            &demand(2, 10),
            &["gone".into(), "a".into()],
            &rs,
            &HashMap::new(),
        );
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn a_runner_holding_it_loaded_wins_over_an_idle_one() {
        let mut back = runner("back", 3, 0);
        back.loaded = vec!["blake3:aa".into()];
        let rs = [runner("idle", 0, 100), back];
        let got = choose(&demand(1, 50), &[], &rs, &HashMap::new());
        assert_eq!(got, ["back"], "loaded already: no room needed, no reload");
    }

    #[test]
    fn planned_but_unloaded_memory_counts_against_room() {
        let rs = [runner("a", 0, 100), runner("b", 1, 100)];
        let placed = [Placement {
            digest: "blake3:bb".into(),
            memory: 80,
            runners: vec!["a".into()],
            ..Placement::default()
        }];
        let planned = planned_memory(&placed, &rs);
        assert_eq!(planned["a"], 80);
        assert_eq!(choose(&demand(1, 50), &[], &rs, &planned), ["b"]);
    }

    #[test]
    fn draining_runners_and_missing_devices_are_skipped() {
        let mut d = runner("d", 0, 100);
        d.draining = true;
        let mut gpu = runner("gpu", 3, 100);
        gpu.devices = vec!["cpu".into(), "cuda:0".into()];
        let rs = [d, runner("cpu", 0, 100), gpu];
        let mut want = demand(1, 10);
        want.device = "cuda:1";
        assert_eq!(choose(&want, &[], &rs, &HashMap::new()), ["gpu"]);
        assert_eq!(
            choose(&demand(3, 10), &["d".into()], &rs, &HashMap::new()),
            ["cpu", "gpu"]
        );
    }

    #[test]
    fn equal_runners_fill_the_tightest_fit_first() {
        let rs = [runner("big", 0, 1000), runner("small", 0, 60)];
        assert_eq!(choose(&demand(1, 50), &[], &rs, &HashMap::new()), ["small"]);
    }

    #[test]
    fn refusals_say_why() {
        assert!(refusal(&demand(1, 10), &[]).contains("no live runner"));
        let rs = [runner("a", 0, 10)];
        let r = refusal(&demand(1, 50), &rs);
        assert!(
            r.contains("needs 50 bytes") && r.contains("most free on any runner is 10"),
            "{r}"
        );
        let mut want = demand(1, 1);
        want.device = "cuda:0";
        assert!(refusal(&want, &rs).contains("`cuda:0` device"));
    }
}
