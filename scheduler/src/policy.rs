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
//!
//! At scale (10,000 runners, 100,000 placements) a decision must not walk
//! the placements nor sort the runners: [`Planned`] is built once per
//! reconcile tick and updated per decision, and [`Planned::choose`] reads
//! its compact copy of the runners, keeping the best few in one pass
//! (`conduit-bench placement` measures it). [`choose`] makes the same
//! decision from the records themselves.

use crate::records::{Placement, RunnerRecord};
use std::cmp::Ordering;
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

/// Memory placed on a runner but not loaded there yet, as [`choose`] reads
/// it: a [`Planned`] index, or the map [`planned_memory`] returns.
pub trait PlannedMemory {
    /// Bytes placed on `runner` and not loaded there yet (0 when none).
    fn planned_on(&self, runner: &str) -> u64;
}

impl PlannedMemory for HashMap<String, u64> {
    fn planned_on(&self, runner: &str) -> u64 {
        self.get(runner).copied().unwrap_or(0)
    }
}

/// What a tick's placement decisions share: the live runners as the policy
/// reads them (free memory, load, draining, devices, loaded digests), and
/// the memory placed on each but not loaded there yet (placements name it;
/// its heartbeat does not list the digest as loaded).
///
/// Intended use in the scheduler: **build** it with [`Planned::new`] once
/// per reconcile tick, from one snapshot of the view's placements and live
/// runners (this picks up heartbeats, runners that came or left, and
/// placements other writers changed); **decide** with [`Planned::choose`]
/// (the same answer as [`choose`] on that snapshot, without touching the
/// records); after each decision that writes a placement, **update** it
/// with [`Planned::apply`] (the record as it was, the record written), so
/// that the next decision in the same tick counts what this one placed.
/// Heartbeats that arrive within the tick are seen at the next build.
///
/// The index remembers what each digest added (a placement per digest, as
/// in the bucket), so an update takes back exactly that: it never drifts,
/// even when `old` is not the record the index last saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Planned {
    /// Runner id → its slot; slots follow the ids' order.
    slots: HashMap<String, u32>,
    /// Per slot: the runner's id.
    ids: Vec<String>,
    /// Per slot: what a decision reads of the runner.
    rows: Vec<Row>,
    /// Digest → the slots that have it loaded, ascending.
    loaded: HashMap<String, Vec<u32>>,
    /// Device kind (`cuda`) → the slots with a device of that kind, ascending.
    kinds: HashMap<String, Vec<u32>>,
    /// Digest → what its placement added: (slot, bytes) per copy.
    by_digest: HashMap<String, Vec<(u32, u64)>>,
}

/// One runner, as a decision reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Row {
    /// Memory free by its heartbeat.
    free: u64,
    /// Memory placed on it and not loaded there yet.
    planned: u64,
    load: f64,
    draining: bool,
}

impl Planned {
    /// The index of `placements` over `runners`, the live ones (ids are
    /// unique, as in the view; a placement's runner that is not among them
    /// counts nothing). One pass over each: what a reconcile tick pays once.
    pub fn new(placements: &[Placement], runners: &[RunnerRecord]) -> Self {
        let mut order: Vec<&RunnerRecord> = runners.iter().collect();
        order.sort_by(|a, b| a.id.cmp(&b.id));
        let mut planned = Self {
            slots: HashMap::with_capacity(order.len()),
            ids: Vec::with_capacity(order.len()),
            rows: Vec::with_capacity(order.len()),
            loaded: HashMap::new(),
            kinds: HashMap::new(),
            by_digest: HashMap::with_capacity(placements.len()),
        };
        for (slot, r) in order.into_iter().enumerate() {
            let slot = slot as u32;
            planned.slots.insert(r.id.clone(), slot);
            planned.ids.push(r.id.clone());
            planned.rows.push(Row {
                free: r.memory_free(),
                planned: 0,
                load: r.load(),
                draining: r.draining,
            });
            for d in &r.loaded {
                push_slot(planned.loaded.entry(d.clone()).or_default(), slot);
            }
            for d in &r.devices {
                push_slot(planned.kinds.entry(kind(d).to_string()).or_default(), slot);
            }
        }
        for p in placements {
            planned.add(p);
        }
        planned
    }

    /// Bytes placed on `runner` and not loaded there yet (0 when none).
    pub fn get(&self, runner: &str) -> u64 {
        self.slots
            .get(runner)
            .map_or(0, |&s| self.rows[s as usize].planned)
    }

    /// Updates the index for one placement a decision changed: `old` is
    /// the record before (`None` for a new module), `new` the record
    /// written (`None` when it is removed). Its runners are those of the
    /// build (one that joined since counts from the next build). Costs a
    /// few hash look-ups: no placement and no runner is walked.
    pub fn apply(&mut self, old: Option<&Placement>, new: Option<&Placement>) {
        if let Some(old) = old {
            self.remove(&old.digest);
        }
        if let Some(new) = new {
            self.remove(&new.digest);
            self.add(new);
        }
    }

    /// Every runner with memory planned on it, and how much.
    pub fn to_map(&self) -> HashMap<String, u64> {
        self.ids
            .iter()
            .zip(&self.rows)
            .filter(|(_, r)| r.planned > 0)
            .map(|(id, r)| (id.clone(), r.planned))
            .collect()
    }

    /// The runners that should hold a module: what [`choose`] answers for
    /// the runners this index was built from, read from its compact copy
    /// of them (one pass over a few bytes per runner; the runners with the
    /// device only, when it asks for one).
    pub fn choose(&self, demand: &Demand<'_>, current: &[String]) -> Vec<String> {
        let mut chosen = Vec::new();
        let mut taken = Vec::new();
        for id in current {
            if chosen.len() >= demand.replicas {
                break;
            }
            if let Some(&s) = self.slots.get(id.as_str())
                && !self.rows[s as usize].draining
            {
                chosen.push(id.clone());
                taken.push(s);
            }
        }
        if chosen.len() >= demand.replicas {
            return chosen;
        }
        let best = Best::new(demand.replicas - chosen.len());
        let best = if demand.device.is_empty() || demand.device == "cpu" {
            self.keep_best(best, demand, &taken, 0..self.rows.len() as u32)
        } else {
            let with = self.kinds.get(kind(demand.device)).map_or(&[][..], |v| v);
            self.keep_best(best, demand, &taken, with.iter().copied())
        };
        chosen.extend(
            best.into_best()
                .into_iter()
                .map(|k| self.ids[k.tie as usize].clone()),
        );
        chosen
    }

    /// The best of `slots` (ascending) for `demand`, `taken` aside.
    fn keep_best(
        &self,
        mut best: Best<u32>,
        demand: &Demand<'_>,
        taken: &[u32],
        slots: impl Iterator<Item = u32>,
    ) -> Best<u32> {
        let holders = self.loaded.get(demand.digest).map_or(&[][..], |v| v);
        let mut next_holder = holders.iter().copied().peekable();
        for s in slots {
            while next_holder.next_if(|&h| h < s).is_some() {}
            let away = next_holder.peek() != Some(&s);
            let row = self.rows[s as usize];
            if row.draining
                || (away && demand.memory > row.free)
                || best.passes_over(away, row.load)
            {
                continue;
            }
            let free = row.free.saturating_sub(row.planned);
            if (away && demand.memory > free) || taken.contains(&s) {
                continue;
            }
            best.offer(Key {
                away,
                load: row.load,
                free,
                tie: s,
            });
        }
        best
    }

    fn add(&mut self, p: &Placement) {
        if p.memory == 0 {
            return;
        }
        let holders = self.loaded.get(&p.digest).map_or(&[][..], |v| v);
        let mut counted = Vec::new();
        for id in &p.runners {
            if let Some(&s) = self.slots.get(id.as_str())
                && !holders.contains(&s)
            {
                self.rows[s as usize].planned += p.memory;
                counted.push((s, p.memory));
            }
        }
        if !counted.is_empty() {
            self.by_digest
                .entry(p.digest.clone())
                .or_default()
                .extend(counted);
        }
    }

    fn remove(&mut self, digest: &str) {
        for (s, memory) in self.by_digest.remove(digest).unwrap_or_default() {
            let row = &mut self.rows[s as usize];
            row.planned = row.planned.saturating_sub(memory);
        }
    }
}

impl PlannedMemory for Planned {
    fn planned_on(&self, runner: &str) -> u64 {
        self.get(runner)
    }
}

/// Adds `slot` to an ascending list (slots arrive in order; once each).
fn push_slot(slots: &mut Vec<u32>, slot: u32) {
    if slots.last() != Some(&slot) {
        slots.push(slot);
    }
}

/// Memory placed on each runner but not loaded there yet (placements name
/// it; its heartbeat does not list the digest as loaded). One pass over
/// every placement: per reconcile tick, not per decision (see [`Planned`]).
pub fn planned_memory(placements: &[Placement], runners: &[RunnerRecord]) -> HashMap<String, u64> {
    Planned::new(placements, runners).to_map()
}

/// The runner with this id: a binary search when `runners` is sorted by id,
/// a scan when that misses (unsorted, or not there).
fn find_runner<'r>(runners: &'r [RunnerRecord], id: &str) -> Option<&'r RunnerRecord> {
    match runners.binary_search_by(|r| r.id.as_str().cmp(id)) {
        Ok(i) => Some(&runners[i]),
        Err(_) => runners.iter().find(|r| r.id == id),
    }
}

/// A runner that passes the filters, with its ordering key.
struct Key<T> {
    /// Not loaded here yet (loaded ones first).
    away: bool,
    load: f64,
    /// Free memory less what is planned on it.
    free: u64,
    /// The last tie-break: its id's order.
    tie: T,
}

impl<T: Ord> Key<T> {
    /// Not loaded here last, then the least loaded, then the tightest fit,
    /// then the id.
    fn order(&self, other: &Self) -> Ordering {
        self.away
            .cmp(&other.away)
            .then(self.load.total_cmp(&other.load))
            .then(self.free.cmp(&other.free))
            .then(self.tie.cmp(&other.tie))
    }
}

/// Up to this many wanted, the best are kept sorted as the runners go by
/// (O(runners · k)); above it, all are kept and selected (O(runners)).
const TOP_K_INLINE: usize = 16;

/// The best `wanted` runners offered, best first: one pass, no sort of all.
struct Best<T> {
    wanted: usize,
    kept: Vec<Key<T>>,
}

impl<T: Ord> Best<T> {
    fn new(wanted: usize) -> Self {
        let inline = wanted <= TOP_K_INLINE;
        Self {
            wanted,
            kept: Vec::with_capacity(if inline { wanted + 1 } else { 0 }),
        }
    }

    fn inline(&self) -> bool {
        self.wanted <= TOP_K_INLINE
    }

    /// Whether a runner with this affinity and load cannot be among the
    /// best whatever its free memory (so that is not looked up).
    fn passes_over(&self, away: bool, load: f64) -> bool {
        self.inline()
            && self.kept.len() == self.wanted
            && self.kept.last().is_some_and(|worst| {
                away.cmp(&worst.away).then(load.total_cmp(&worst.load)) == Ordering::Greater
            })
    }

    fn offer(&mut self, key: Key<T>) {
        if !self.inline() {
            self.kept.push(key);
            return;
        }
        let i = self
            .kept
            .partition_point(|k| k.order(&key) == Ordering::Less);
        if i < self.wanted {
            self.kept.insert(i, key);
            self.kept.truncate(self.wanted);
        }
    }

    fn into_best(mut self) -> Vec<Key<T>> {
        if !self.inline() {
            if self.kept.len() > self.wanted {
                self.kept
                    .select_nth_unstable_by(self.wanted - 1, Key::order);
                self.kept.truncate(self.wanted);
            }
            self.kept.sort_unstable_by(Key::order);
        }
        self.kept
    }
}

/// The runners that should hold a module: `current` holders first (those
/// still live), then the best new ones, `demand.replicas` in all (fewer when
/// not enough runners qualify).
///
/// One pass over `runners` keeping the best few, never a sort of all of
/// them; a runner that cannot beat the ones kept is passed over before its
/// planned memory is looked up. `current` is looked up by id (a binary
/// search when `runners` is sorted by id). [`Planned::choose`] gives the
/// same answer without reading the records.
pub fn choose(
    demand: &Demand<'_>,
    current: &[String],
    runners: &[RunnerRecord],
    planned: &impl PlannedMemory,
) -> Vec<String> {
    let mut chosen: Vec<String> = current
        .iter()
        .filter(|id| find_runner(runners, id).is_some_and(|r| !r.draining))
        .take(demand.replicas)
        .cloned()
        .collect();
    if chosen.len() >= demand.replicas {
        return chosen;
    }
    let mut best = Best::new(demand.replicas - chosen.len());
    for (at, r) in runners.iter().enumerate() {
        if r.draining || !has_device(r, demand.device) || chosen.contains(&r.id) {
            continue;
        }
        let away = !r.loaded.iter().any(|d| d == demand.digest);
        let unplanned = r.memory_free();
        if away && demand.memory > unplanned {
            continue; // no room even before what is planned on it
        }
        let load = r.load();
        if best.passes_over(away, load) {
            continue;
        }
        let free = unplanned.saturating_sub(planned.planned_on(&r.id));
        if away && demand.memory > free {
            continue;
        }
        best.offer(Key {
            away,
            load,
            free,
            tie: (r.id.as_str(), at),
        });
    }
    chosen.extend(best.into_best().into_iter().map(|k| k.tie.0.to_string()));
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
    let kind = kind(device);
    r.devices
        .iter()
        .any(|d| d == device || d.split(':').next() == Some(kind))
}

/// A device's kind: `cuda` for `cuda:0`.
fn kind(device: &str) -> &str {
    device.split(':').next().unwrap_or(device)
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

    /// The policy as it was: every candidate sorted (the reference the
    /// one-pass `choose` must agree with).
    fn choose_by_sorting(
        demand: &Demand<'_>,
        current: &[String],
        runners: &[RunnerRecord],
        planned: &HashMap<String, u64>,
    ) -> Vec<String> {
        let live: HashMap<&str, &RunnerRecord> =
            runners.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut chosen: Vec<String> = current
            .iter()
            .filter(|id| live.get(id.as_str()).is_some_and(|r| !r.draining))
            .take(demand.replicas)
            .cloned()
            .collect();
        if chosen.len() >= demand.replicas {
            return chosen;
        }
        let free = |r: &RunnerRecord| {
            r.memory_free()
                .saturating_sub(planned.get(&r.id).copied().unwrap_or(0))
        };
        let held = |r: &RunnerRecord| !r.loaded.iter().any(|d| d == demand.digest);
        let mut candidates: Vec<&RunnerRecord> = runners
            .iter()
            .filter(|r| !r.draining && !chosen.contains(&r.id))
            .filter(|r| has_device(r, demand.device))
            .filter(|r| !held(r) || demand.memory <= free(r))
            .collect();
        candidates.sort_by(|a, b| {
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

    /// Planned memory as it was computed: every placement, every time.
    fn planned_by_walking(
        placements: &[Placement],
        runners: &[RunnerRecord],
    ) -> HashMap<String, u64> {
        let by_id: HashMap<&str, &RunnerRecord> =
            runners.iter().map(|r| (r.id.as_str(), r)).collect();
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
        planned.retain(|_, m| *m > 0);
        planned
    }

    /// A small deterministic generator (splitmix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Runners with few distinct loads and sizes (many ties), some
    /// draining, some with a GPU, each with a few of `digests` loaded.
    fn fleet(rng: &mut Rng, n: usize, digests: usize) -> Vec<RunnerRecord> {
        (0..n)
            .map(|i| {
                let mut r = runner(&format!("r{:03}", rng.below(1000)), rng.below(4), 0);
                r.id.push_str(&format!("-{i}"));
                r.memory_total = 100 + 20 * rng.below(5);
                r.memory_used = 10 * rng.below(4);
                r.busy = [0.0, 0.5][rng.below(2) as usize];
                r.draining = rng.below(10) == 0;
                if rng.below(3) == 0 {
                    r.devices.push("cuda:0".into());
                }
                r.loaded = (0..rng.below(3))
                    .map(|_| format!("blake3:{}", rng.below(digests as u64)))
                    .collect();
                r
            })
            .collect()
    }

    fn placed(rng: &mut Rng, digest: usize, runners: &[RunnerRecord]) -> Placement {
        let mut ids: Vec<String> = (0..1 + rng.below(3))
            .map(|_| runners[rng.below(runners.len() as u64) as usize].id.clone())
            .collect();
        ids.dedup();
        if rng.below(8) == 0 {
            ids.push("gone".into()); // a runner that is not live
        }
        Placement {
            digest: format!("blake3:{digest}"),
            memory: 5 * rng.below(6),
            runners: ids,
            ..Placement::default()
        }
    }

    #[test]
    fn one_pass_choice_matches_sorting_every_candidate() {
        let mut rng = Rng(7);
        for round in 0..400 {
            let n = 1 + rng.below(40) as usize;
            let mut rs = fleet(&mut rng, n, 6);
            if round % 2 == 0 {
                rs.sort_by(|a, b| a.id.cmp(&b.id));
            }
            let placements: Vec<Placement> = (0..rng.below(30) as usize)
                .map(|d| placed(&mut rng, d, &rs))
                .collect();
            let planned = planned_by_walking(&placements, &rs);
            let digest = format!("blake3:{}", rng.below(6));
            let want = Demand {
                digest: &digest,
                // Past the inline top-k too.
                replicas: [1, 2, 3, 5, TOP_K_INLINE + 4][rng.below(5) as usize],
                memory: 10 * rng.below(12),
                device: ["", "cpu", "cuda", "cuda:0", "cuda:1", "tpu"][rng.below(6) as usize],
            };
            let current: Vec<String> = (0..rng.below(4))
                .map(|_| {
                    if rng.below(5) == 0 {
                        "gone".to_string()
                    } else {
                        rs[rng.below(rs.len() as u64) as usize].id.clone()
                    }
                })
                .collect();
            let index = Planned::new(&placements, &rs);
            let expected = choose_by_sorting(&want, &current, &rs, &planned);
            assert_eq!(
                choose(&want, &current, &rs, &planned),
                expected,
                "round {round}"
            );
            assert_eq!(
                choose(&want, &current, &rs, &index),
                expected,
                "round {round}"
            );
        }
    }

    #[test]
    fn the_planned_index_matches_walking_every_placement() {
        let mut rng = Rng(11);
        for _ in 0..50 {
            let rs = fleet(&mut rng, 30, 40);
            let placements: Vec<Placement> = (0..40).map(|d| placed(&mut rng, d, &rs)).collect();
            let index = Planned::new(&placements, &rs);
            let walked = planned_by_walking(&placements, &rs);
            assert_eq!(index.to_map(), walked);
            for r in &rs {
                assert_eq!(index.get(&r.id), walked.get(&r.id).copied().unwrap_or(0));
            }
            assert_eq!(planned_memory(&placements, &rs), walked);
        }
    }

    #[test]
    fn updates_per_decision_match_a_rebuild() {
        let mut rng = Rng(13);
        let mut rs = fleet(&mut rng, 50, 60);
        let mut placements: Vec<Option<Placement>> =
            (0..60).map(|d| Some(placed(&mut rng, d, &rs))).collect();
        let all = |ps: &[Option<Placement>]| ps.iter().flatten().cloned().collect::<Vec<_>>();
        let mut index = Planned::new(&all(&placements), &rs);
        // The order the runners come in does not matter.
        rs.reverse();
        for step in 0..2000 {
            let d = rng.below(60) as usize;
            let old = placements[d].clone();
            let new = match rng.below(4) {
                0 => None, // removed
                1 => {
                    // Chosen by the policy, as the scheduler does.
                    let digest = format!("blake3:{d}");
                    let want = Demand {
                        digest: &digest,
                        replicas: 1 + rng.below(3) as usize,
                        memory: 10,
                        device: ["", "cuda"][rng.below(2) as usize],
                    };
                    let held = old.as_ref().map_or(&[][..], |p| &p.runners);
                    let runners = index.choose(&want, held);
                    let planned = planned_by_walking(&all(&placements), &rs);
                    assert_eq!(runners, choose_by_sorting(&want, held, &rs, &planned));
                    Some(Placement {
                        memory: want.memory,
                        digest,
                        runners,
                        ..Placement::default()
                    })
                }
                _ => Some(placed(&mut rng, d, &rs)), // moved, resized
            };
            index.apply(old.as_ref(), new.as_ref());
            placements[d] = new;
            assert_eq!(index, Planned::new(&all(&placements), &rs), "step {step}");
        }
    }

    #[test]
    fn an_update_takes_back_what_was_counted_not_what_old_says() {
        let rs = [runner("a", 0, 100), runner("b", 0, 100)];
        let counted = Placement {
            digest: "blake3:aa".into(),
            memory: 30,
            runners: vec!["a".into()],
            ..Placement::default()
        };
        let mut index = Planned::new(std::slice::from_ref(&counted), &rs);
        // The caller's `old` is stale (another writer moved it since).
        let stale = Placement {
            runners: vec!["b".into()],
            memory: 70,
            ..counted.clone()
        };
        let new = Placement {
            runners: vec!["b".into()],
            ..counted
        };
        index.apply(Some(&stale), Some(&new));
        assert_eq!((index.get("a"), index.get("b")), (0, 30));
        index.apply(Some(&new), None);
        assert_eq!(index, Planned::new(&[], &rs));
    }

    #[test]
    fn loaded_copies_and_runners_not_live_count_nothing() {
        let mut a = runner("a", 0, 100);
        a.loaded = vec!["blake3:aa".into()];
        let rs = [a, runner("b", 0, 100)];
        let p = Placement {
            digest: "blake3:aa".into(),
            memory: 40,
            runners: vec!["a".into(), "b".into(), "gone".into()],
            ..Placement::default()
        };
        let mut index = Planned::new(&[], &rs);
        index.apply(None, Some(&p));
        assert_eq!(index.to_map(), HashMap::from([("b".to_string(), 40)]));
        assert_eq!(index, Planned::new(&[p], &rs));
    }
}
