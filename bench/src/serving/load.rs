//! Timing loops: N gRPC clients in a closed loop, and two operations
//! timed alternately so that machine drift cancels in their difference.

use super::server::{Server, infer};
use crate::harness::{Budget, us};
use anyhow::{Result, ensure};
use conduit_proto::inference::ModelInferRequest;
use std::time::{Duration, Instant};

/// What one closed-loop run measured (the requests that finished in the
/// window).
pub(super) struct Load {
    pub(super) requests: usize,
    pub(super) per_second: f64,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
}

/// How long (or how many requests) each closed-loop run lasts.
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub(super) warmup: Duration,
    pub(super) measure: Duration,
    /// Requests per client at most (smoke: a handful).
    pub(super) max_per_client: usize,
}

/// `clients` clients, one connection each, sending `request` back to back.
pub(super) async fn closed_loop(
    server: &Server,
    request: &ModelInferRequest,
    clients: usize,
    window: Window,
) -> Result<Load> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(server.client().await?);
    }
    let measure_from = Instant::now() + window.warmup;
    let end = measure_from + window.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in connections {
        let (request, authorization) = (request.clone(), server.authorization.clone());
        tasks.spawn(async move {
            // Latencies of the requests that finished inside the window.
            let mut latencies = Vec::new();
            let mut sent = 0;
            while Instant::now() < end && sent < window.max_per_client {
                let started = Instant::now();
                infer(&mut client, &authorization, request.clone()).await?;
                sent += 1;
                let finished = Instant::now();
                if (measure_from..=end).contains(&finished) {
                    latencies.push(finished - started);
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined??);
    }
    ensure!(!all.is_empty(), "no request finished in the window");
    all.sort_unstable();
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    // The whole window, or less when every client stopped early (smoke).
    let elapsed = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from);
    Ok(Load {
        requests: all.len(),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    })
}

/// Two operations timed alternately, call by call.
pub(super) struct Pair {
    /// p50 and p90 of the first.
    a: (Duration, Duration),
    /// p50 and p90 of the second.
    b: (Duration, Duration),
    /// Median of (second − first) over the pairs, in µs.
    diff: f64,
    /// Pairs measured.
    pub(super) n: usize,
}

impl Pair {
    /// The median over rounds of each number.
    pub(super) fn median(rounds: &[Pair]) -> ((Duration, Duration), (Duration, Duration), f64) {
        fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
            v.sort_by(|x, y| x.partial_cmp(y).expect("comparable"));
            v[v.len() / 2]
        }
        let of = |f: fn(&Pair) -> Duration| mid(rounds.iter().map(f).collect());
        (
            (of(|p| p.a.0), of(|p| p.a.1)),
            (of(|p| p.b.0), of(|p| p.b.1)),
            mid(rounds.iter().map(|p| p.diff).collect()),
        )
    }
}

/// Times `a` and `b` alternately (warm-up, then the budget), so that both
/// see the same machine state; machine drift cancels in the differences.
pub(super) async fn paired<A, B, FA, FB>(budget: Budget, mut a: A, mut b: B) -> Pair
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: std::future::Future<Output = ()>,
    FB: std::future::Future<Output = ()>,
{
    let end = Instant::now() + budget.warmup;
    while Instant::now() < end {
        a().await;
        b().await;
    }
    let (mut ta, mut tb, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    let end = Instant::now() + budget.measure;
    while Instant::now() < end && ta.len() < budget.max_iters {
        let t = Instant::now();
        a().await;
        let da = t.elapsed();
        let t = Instant::now();
        b().await;
        let db = t.elapsed();
        ta.push(da);
        tb.push(db);
        diff.push(us(db) - us(da));
    }
    let n = ta.len();
    let pct = |mut v: Vec<Duration>| {
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.9))
    };
    diff.sort_by(f64::total_cmp);
    Pair {
        a: pct(ta),
        b: pct(tb),
        diff: diff[n / 2],
        n,
    }
}
