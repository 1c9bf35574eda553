//! `conduit-bench placement`: placement at scale (goal P6). The scheduler's
//! own placement policy (`conduit_scheduler::policy`) against 10,000
//! simulated runners and 100,000 placed modules in one process, no NATS:
//!
//! 1. builds the fleet (varied memory, loads, some `cuda:0`, a few loaded
//!    digests each, ~2% draining) and the placements (1–3 replicas, model
//!    sizes from 10 MB to 8 GiB, placed where they fit);
//! 2. times building the [`Planned`] index from scratch (what a reconcile
//!    tick pays once);
//! 3. times each decision for a new module as the scheduler is to make it:
//!    `Planned::choose`, then `Planned::apply` for the placement written:
//!    p50/p99/max against the goal (p99 ≤ 1 ms), also over the decisions
//!    no other process preempted (this machine may be shared);
//! 4. reports the process's peak RSS (VmHWM) against the goal (≤ 2 GiB),
//!    and checks the index updated per decision equals one rebuilt.
//!
//! Also shown, outside the decision: every tenth decision made again by
//! `policy::choose` over the records (it must agree), and what copying the
//! view's runners and placements costs (what `ClusterView::live_runners`
//! and `ClusterView::placements` clone per call).
//!
//! `conduit-bench placement [--runners N] [--placements N] [--decisions N]`.

use anyhow::{Context, Result, bail, ensure};
use conduit_scheduler::policy::{self, Demand, Planned};
use conduit_scheduler::{ModelLoad, Placement, RunnerRecord, ScaleHints};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The goal's decision p99, in µs.
const P99_GOAL_US: f64 = 1_000.0;
/// The goal's memory ceiling, in bytes.
const RSS_GOAL: u64 = 2 << 30;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// What to simulate.
#[derive(Debug, Clone, Copy)]
struct Options {
    runners: usize,
    placements: usize,
    decisions: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            runners: 10_000,
            placements: 100_000,
            decisions: 20_000,
        }
    }
}

/// Runs the section, prints its table and a JSON line.
pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let mut o = Options::default();
    let mut args = args;
    while let Some(a) = args.next() {
        let mut count = |what: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{what} needs a number"))?
                .replace('_', "")
                .parse()
                .with_context(|| format!("{what} needs a number"))
        };
        match a.as_str() {
            "--runners" => o.runners = count("--runners")?,
            "--placements" => o.placements = count("--placements")?,
            "--decisions" => o.decisions = count("--decisions")?,
            other => bail!(
                "unknown argument `{other}` (use [--runners N] [--placements N] [--decisions N])"
            ),
        }
    }
    ensure!(o.runners > 0, "--runners must be at least 1");
    let report = run(o)?;
    print_table(&report);
    println!("{}", report.json);
    Ok(())
}

/// One run's results.
struct Report {
    o: Options,
    generate: Duration,
    build: Vec<Duration>,
    decide: Summary,
    choose: Summary,
    update: Summary,
    on_core: Summary,
    not_preempted: usize,
    from_records: Summary,
    checked: usize,
    per_s: f64,
    placed: usize,
    short: usize,
    refused: usize,
    copy_runners: Duration,
    copy_placements: Duration,
    peak_rss: u64,
    json: Value,
}

/// Percentiles of per-decision times, in µs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            samples
                .get(((samples.len().max(1) - 1) as f64 * q).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    fn json(&self) -> Value {
        json!({ "p50_us": self.p50, "p99_us": self.p99, "max_us": self.max })
    }
}

fn run(o: Options) -> Result<Report> {
    let t = Instant::now();
    let mut rng = Rng(0x5eed_c0de);
    let (fleet, mut placements) = world(&mut rng, o);
    let runners = as_the_view_copies(&fleet, &mut rng);
    drop(fleet);
    let generate = t.elapsed();

    // What a reconcile tick pays once: the index from scratch.
    let mut build = Vec::new();
    let mut planned = Planned::default();
    for _ in 0..3 {
        let t = Instant::now();
        planned = black_box(Planned::new(&placements, &runners));
        build.push(t.elapsed());
    }
    build.sort_unstable();

    // What ClusterView clones on each call today (outside the decision).
    let copy = |f: &dyn Fn()| {
        let mut d: Vec<Duration> = (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        d.sort_unstable();
        d[1]
    };
    let copy_runners = copy(&|| {
        let mut v = runners.clone();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        black_box(v);
    });
    let copy_placements = copy(&|| {
        let mut v = placements.clone();
        v.sort_by(|a, b| a.digest.cmp(&b.digest));
        black_box(v);
    });

    // The new modules the decisions place, made before timing.
    let wanted: Vec<Placement> = (0..o.decisions)
        .map(|i| module(&mut rng, o.placements + i))
        .collect();
    let (mut decide, mut choose, mut update) = (
        Vec::with_capacity(o.decisions),
        Vec::with_capacity(o.decisions),
        Vec::with_capacity(o.decisions),
    );
    // Decisions during which no other process took the core.
    let mut on_core = Vec::with_capacity(o.decisions);
    let (mut placed, mut short, mut refused) = (0, 0, 0);
    placements.reserve(o.decisions);
    // Every tenth decision is also made from the records, as `choose`
    // over the runners (what a scheduler without the index's copy does):
    // timed apart, and it must agree.
    let mut from_records = Vec::new();
    for (i, mut w) in wanted.into_iter().enumerate() {
        let waited = waited_ns();
        let t0 = Instant::now();
        let demand = Demand {
            digest: &w.digest,
            replicas: w.replicas as usize,
            memory: w.memory,
            device: &w.device,
        };
        let chosen = planned.choose(&demand, &[]);
        let t1 = Instant::now();
        if i % 10 == 0 {
            let t = Instant::now();
            let again = policy::choose(&demand, &[], &runners, &planned);
            from_records.push(t.elapsed());
            ensure!(
                again == chosen,
                "decision {i}: the index chose {chosen:?}, the records {again:?}"
            );
        }
        let t2 = Instant::now();
        w.runners = chosen;
        w.generation += 1;
        planned.apply(None, Some(&w));
        let t3 = Instant::now();
        let took = (t1 - t0) + (t3 - t2);
        if waited.is_some() && waited_ns() == waited {
            on_core.push(took);
        }
        decide.push(took);
        choose.push(t1 - t0);
        update.push(t3 - t2);
        match w.runners.len() {
            0 => refused += 1,
            n if n < w.replicas as usize => short += 1,
            _ => placed += 1,
        }
        placements.push(w);
    }
    let per_s = o.decisions as f64 / decide.iter().sum::<Duration>().as_secs_f64();
    ensure!(
        planned == Planned::new(&placements, &runners),
        "the index updated per decision differs from one rebuilt from the placements"
    );
    let peak_rss = peak_rss();
    let not_preempted = on_core.len();
    let checked = from_records.len();
    let (decide, choose, update, on_core, from_records) = (
        Summary::of(&mut decide),
        Summary::of(&mut choose),
        Summary::of(&mut update),
        Summary::of(&mut on_core),
        Summary::of(&mut from_records),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let json = json!({
        "tool": "conduit-bench placement",
        "runners": o.runners,
        "placements": o.placements,
        "decisions": o.decisions,
        "decision_us": decide.json(),
        "decision_not_preempted_us": on_core.json(),
        "decisions_not_preempted": not_preempted,
        "choose_us": choose.json(),
        "choose_from_records_us": from_records.json(),
        "decisions_checked_against_records": checked,
        "planned_update_us": update.json(),
        "decisions_per_s": per_s,
        "planned_build_ms": { "median": ms(build[build.len() / 2]), "max": ms(build[build.len() - 1]) },
        "view_copy_ms": { "runners": ms(copy_runners), "placements": ms(copy_placements) },
        "outcomes": { "placed": placed, "fewer_replicas": short, "refused": refused },
        "generate_ms": ms(generate),
        "peak_rss_bytes": peak_rss,
        "index_matches_rebuild": true,
        "goals": {
            "p99_us": P99_GOAL_US, "p99_met": decide.p99 <= P99_GOAL_US,
            "rss_bytes": RSS_GOAL, "rss_met": peak_rss <= RSS_GOAL,
        },
    });
    Ok(Report {
        o,
        generate,
        build,
        decide,
        choose,
        update,
        on_core,
        not_preempted,
        from_records,
        checked,
        per_s,
        placed,
        short,
        refused,
        copy_runners,
        copy_placements,
        peak_rss,
        json,
    })
}

fn print_table(r: &Report) {
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let us = |s: &Summary| format!("{:.1} / {:.1} / {:.1} µs", s.p50, s.p99, s.max);
    println!(
        "## placement at scale: the scheduler's policy, {} runners, {} placements, {} decisions for new modules (built in {})",
        r.o.runners,
        r.o.placements,
        r.o.decisions,
        ms(r.generate)
    );
    println!(
        "| measure                                          | value                          | goal            |"
    );
    println!(
        "|--------------------------------------------------|-------------------------------:|-----------------|"
    );
    let row = |name: &str, value: String, goal: &str| {
        println!("| {name:<48} | {value:>30} | {goal:<15} |");
    };
    row(
        "decision p50 / p99 / max (choose + index update)",
        us(&r.decide),
        &format!("p99 ≤ 1 ms: {}", met(r.decide.p99 <= P99_GOAL_US)),
    );
    row(
        &format!(
            "  the {} not preempted (no wait for a core)",
            r.not_preempted
        ),
        us(&r.on_core),
        &format!("p99 ≤ 1 ms: {}", met(r.on_core.p99 <= P99_GOAL_US)),
    );
    row("  Planned::choose p50 / p99 / max", us(&r.choose), "");
    row("  Planned::apply p50 / p99 / max", us(&r.update), "");
    row(
        &format!("policy::choose over the records ({} same)", r.checked),
        us(&r.from_records),
        "",
    );
    row(
        "decisions/s (one core, back to back)",
        format!("{:.0}", r.per_s),
        "",
    );
    row(
        "Planned::new from scratch (per tick), median",
        ms(r.build[r.build.len() / 2]),
        "",
    );
    row(
        "outcomes: placed / fewer replicas / refused",
        format!("{} / {} / {}", r.placed, r.short, r.refused),
        "",
    );
    row(
        "view copies: runners / placements (untimed)",
        format!("{} / {}", ms(r.copy_runners), ms(r.copy_placements)),
        "",
    );
    row(
        "peak RSS (VmHWM)",
        format!("{:.0} MiB", r.peak_rss as f64 / MIB as f64),
        &format!("≤ 2 GiB: {}", met(r.peak_rss <= RSS_GOAL)),
    );
}

/// A small deterministic generator (splitmix64): the same world each run.
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
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi` on a log scale.
    fn log_between(&mut self, lo: u64, hi: u64) -> u64 {
        let (lo, hi) = ((lo as f64).ln(), (hi as f64).ln());
        (lo + (hi - lo) * self.unit()).exp() as u64
    }
}

/// A new module as a gateway's request makes it: a fresh digest, 1–3
/// replicas, a model size (half under 100 MB, a few of several GiB),
/// sometimes a GPU.
fn module(rng: &mut Rng, i: usize) -> Placement {
    let memory = match rng.below(100) {
        0..50 => rng.log_between(10 * MIB, 100 * MIB),
        50..85 => rng.log_between(100 * MIB, 500 * MIB),
        85..98 => rng.log_between(500 * MIB, 2 * GIB),
        _ => rng.log_between(2 * GIB, 8 * GIB),
    };
    Placement {
        digest: format!(
            "blake3:{:016x}{:016x}{:016x}{:016x}",
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next()
        ),
        tenant: format!("tenant-{}", rng.below(500)),
        module: format!("model-{i}@1.{}.0", rng.below(5)),
        replicas: match rng.below(100) {
            0..50 => 1,
            50..85 => 2,
            _ => 3,
        },
        memory,
        device: if rng.below(100) < 8 {
            "cuda".into()
        } else {
            String::new()
        },
        runners: Vec::new(),
        generation: 0,
        scale: ScaleHints {
            min: 1,
            max: 3,
            ..ScaleHints::default()
        },
    }
}

/// The fleet (sorted by id, as `ClusterView::live_runners` returns it)
/// and the placements on it.
fn world(rng: &mut Rng, o: Options) -> (Vec<RunnerRecord>, Vec<Placement>) {
    let mut runners: Vec<RunnerRecord> = (0..o.runners)
        .map(|i| {
            let idle = rng.below(5) == 0;
            let mut devices = vec!["cpu".to_string()];
            if rng.below(5) == 0 {
                devices.push("cuda:0".into());
                if rng.below(2) == 0 {
                    devices.push("cuda:1".into());
                }
            }
            RunnerRecord {
                id: format!("runner-{i:05}"),
                grpc: format!("10.{}.{}.{}:7080", i >> 16, (i >> 8) & 255, i & 255),
                http: format!("10.{}.{}.{}:7081", i >> 16, (i >> 8) & 255, i & 255),
                devices,
                memory_total: [16, 24, 32, 48, 64, 80, 96, 128][rng.below(8) as usize] * GIB,
                memory_used: 0,
                queue_depth: if idle { 0 } else { rng.below(4).pow(2) },
                busy: if idle { 0.0 } else { rng.unit() },
                in_flight: if idle { 0 } else { rng.below(8) },
                loaded: Vec::new(),
                models: Vec::new(),
                draining: false,
                draining_ms: 0,
                beat: rng.below(100_000),
            }
        })
        .collect();
    let gpus: Vec<usize> = (0..runners.len())
        .filter(|&i| runners[i].devices.len() > 1)
        .collect();
    let all: Vec<usize> = (0..runners.len()).collect();
    // What is placed on each runner, and how many of its modules it has
    // loaded (2–5; the rest are placed but not loaded yet).
    let mut committed = vec![0u64; runners.len()];
    let warm: Vec<usize> = (0..runners.len())
        .map(|_| 2 + rng.below(4) as usize)
        .collect();
    let mut placements = Vec::with_capacity(o.placements);
    for i in 0..o.placements {
        let mut p = module(rng, i);
        let pool = if p.device.is_empty() || gpus.is_empty() {
            &all
        } else {
            &gpus
        };
        for _ in 0..p.replicas {
            // Where it fits, a few tries each.
            let fit = (0..8)
                .map(|_| pool[rng.below(pool.len() as u64) as usize])
                .find(|&r| {
                    committed[r] + p.memory <= runners[r].memory_total
                        && !p.runners.contains(&runners[r].id)
                });
            let Some(r) = fit else { continue };
            committed[r] += p.memory;
            let runner = &mut runners[r];
            p.runners.push(runner.id.clone());
            if runner.loaded.len() < warm[r] {
                runner.loaded.push(p.digest.clone());
                runner.memory_used += p.memory;
                runner.models.push(ModelLoad {
                    digest: p.digest.clone(),
                    rate: rng.unit() * 50.0,
                    busy: rng.unit(),
                    queue_ms: rng.unit() * 5.0,
                    in_flight: rng.below(3),
                    idle_ms: rng.below(60_000),
                });
            }
        }
        p.generation = 1 + rng.below(20);
        placements.push(p);
    }
    // ~2% drain (still holding what is placed on them).
    for r in &mut runners {
        if rng.below(50) == 0 {
            r.draining = true;
            r.draining_ms = rng.below(30_000);
        }
    }
    (runners, placements)
}

/// The runners as `ClusterView::live_runners` hands them to a decision:
/// cloned from its map (in no particular order), then sorted by id. Each
/// record's strings then lie together on the heap, as in the scheduler.
fn as_the_view_copies(fleet: &[RunnerRecord], rng: &mut Rng) -> Vec<RunnerRecord> {
    let mut order: Vec<usize> = (0..fleet.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut runners: Vec<RunnerRecord> = order.iter().map(|&i| fleet[i].clone()).collect();
    runners.sort_by(|a, b| a.id.cmp(&b.id));
    runners
}

/// How long this thread has waited for a core so far (runnable, not
/// running), in ns: `/proc/thread-self/schedstat`'s second field. A
/// decision during which it grows was preempted (on a busy machine).
fn waited_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_world_places_and_its_index_stays_exact() {
        // `run` fails if the index updated per decision differs from a
        // rebuild; no timing is asserted.
        let r = run(Options {
            runners: 60,
            placements: 300,
            decisions: 200,
        })
        .expect("run");
        assert_eq!(r.placed + r.short + r.refused, 200);
        assert!(r.placed > 150, "{} of 200 placed", r.placed);
        assert_eq!(r.json["decisions"], 200);
        assert!(r.json["decision_us"]["p99_us"].as_f64().is_some());
    }

    #[test]
    fn the_world_is_what_the_goal_describes() {
        let mut rng = Rng(1);
        let (runners, placements) = world(
            &mut rng,
            Options {
                runners: 1_000,
                placements: 5_000,
                decisions: 0,
            },
        );
        let draining = runners.iter().filter(|r| r.draining).count();
        assert!((5..=50).contains(&draining), "{draining} draining");
        assert!(
            runners
                .iter()
                .any(|r| r.devices.iter().any(|d| d == "cuda:0"))
        );
        assert!(runners.iter().all(|r| r.memory_used <= r.memory_total));
        assert!(runners.iter().filter(|r| !r.loaded.is_empty()).count() > 900);
        assert!(placements.iter().all(|p| (1..=3).contains(&p.replicas)));
        assert!(placements.iter().filter(|p| !p.runners.is_empty()).count() > 4_900);
        assert!(
            runners.windows(2).all(|w| w[0].id < w[1].id),
            "sorted by id"
        );
    }
}
