//! Isolation: a victim tenant's cheap component calls alone, then while an
//! attacker tenant runs each attack of docs/isolation.md at once, in one
//! run. Reported as the victim's p50/p99 and the ratio of its p99 under
//! attack to its p99 alone (goal ≤ 3×), with the process's peak RSS against
//! the configured instance-memory budget (goal: under it) and 0 deaths.

use anyhow::Result;
use conduit_runtime::{CallContext, Component, Param, ParamValue, Runtime, SandboxLimits};
use conduit_types::Tensor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One attack: the adversary's `attack` param, extra params, concurrent callers.
struct Attack {
    name: &'static str,
    attack: &'static str,
    mib: i64,
    callers: usize,
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "loops (8 callers)",
        attack: "loop",
        mib: 0,
        callers: 8,
    },
    Attack {
        name: "sleeps (32 callers)",
        attack: "sleep",
        mib: 0,
        callers: 32,
    },
    Attack {
        name: "memory bombs (8 × 200 MiB)",
        attack: "grow-and-spin",
        mib: 200,
        callers: 8,
    },
    Attack {
        name: "big outputs (4 × 48 MiB)",
        attack: "big",
        mib: 48,
        callers: 4,
    },
    Attack {
        name: "kept tensors (4 callers)",
        attack: "keep",
        mib: 0,
        callers: 4,
    },
    Attack {
        name: "huge ranks (4 callers)",
        attack: "rank",
        mib: 0,
        callers: 4,
    },
];

fn x() -> Vec<(String, Tensor)> {
    vec![(
        "x".into(),
        Tensor::from_f32(vec![4], &[1.0, 2.0, 3.0, 4.0]).expect("tensor"),
    )]
}

fn param(name: &str, value: ParamValue) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

/// Percentile `q` of sorted samples.
fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The victim's closed loop for `window`: sorted latencies and failures.
async fn victim(rt: &Runtime, c: &Arc<Component>, window: Duration) -> (Vec<Duration>, usize) {
    let ctx = CallContext::new("victim");
    let mut samples = Vec::new();
    let mut failed = 0;
    let end = Instant::now() + window;
    while Instant::now() < end {
        let t = Instant::now();
        match rt.process(c, x(), &[], &ctx).await {
            Ok(_) => samples.push(t.elapsed()),
            Err(_) => failed += 1,
        }
    }
    samples.sort_unstable();
    (samples, failed)
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

/// Runs the section; `window` is each measurement's length.
pub async fn run(rt: &Runtime, dir: &std::path::Path, window: Duration) -> Result<()> {
    let bytes = std::fs::read(dir.join("adversary.wasm"))?;
    let c = rt.load(&bytes).await?;
    // Warm up, then the baseline.
    victim(rt, &c, window / 4).await;
    let (alone, _) = victim(rt, &c, window).await;
    let (base50, base99) = (pct(&alone, 0.5), pct(&alone, 0.99));
    println!();
    println!("Isolation: the victim's cheap call alone and under each attack (one run)");
    println!();
    println!(
        "| victim's call during                 |   p50 (µs) |   p99 (µs) | p99 / alone | victim failures | attacker calls |"
    );
    println!(
        "|--------------------------------------|-----------:|-----------:|------------:|----------------:|---------------:|"
    );
    println!(
        "| nothing (alone)                      | {:>10.1} | {:>10.1} | {:>11.2} | {:>15} | {:>14} |",
        us(base50),
        us(base99),
        1.0,
        0,
        0
    );
    let mut worst: f64 = 1.0;
    for a in ATTACKS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut attackers = Vec::new();
        for _ in 0..a.callers {
            let (rt, c, stop) = (rt.clone(), c.clone(), stop.clone());
            let params = vec![
                param("attack", ParamValue::String(a.attack.into())),
                param("mib", ParamValue::Int64(a.mib)),
            ];
            attackers.push(tokio::spawn(async move {
                let ctx = CallContext::new("attacker").with_limits(SandboxLimits::default());
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = rt.process(&c, x(), &params, &ctx).await;
                    calls += 1;
                }
                calls
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (during, failed) = victim(rt, &c, window).await;
        stop.store(true, Ordering::Relaxed);
        let mut calls = 0;
        for t in attackers {
            calls += t.await.unwrap_or(0);
        }
        let (p50, p99) = (pct(&during, 0.5), pct(&during, 0.99));
        let ratio = p99.as_secs_f64() / base99.as_secs_f64();
        worst = worst.max(ratio);
        println!(
            "| {:<36} | {:>10.1} | {:>10.1} | {:>11.2} | {:>15} | {:>14} |",
            a.name,
            us(p50),
            us(p99),
            ratio,
            failed,
            calls
        );
    }
    let (held, budget) = rt.instance_memory();
    println!();
    println!(
        "worst victim p99 ratio {worst:.2} (goal ≤ 3); peak RSS {:.0} MiB vs instance-memory budget {:.0} MiB (instances hold {:.0} MiB now); 0 server deaths (this process served throughout)",
        peak_rss() as f64 / (1 << 20) as f64,
        budget as f64 / (1 << 20) as f64,
        held as f64 / (1 << 20) as f64,
    );
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
