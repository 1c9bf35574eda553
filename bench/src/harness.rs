//! A small timing harness: warm up, then time single iterations and report
//! percentiles. Numbers are only compared within one run (same machine state).

use std::time::{Duration, Instant};

/// Percentiles of one measured operation.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median time per iteration.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// Iterations measured.
    pub n: usize,
}

impl Stats {
    fn from(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.5),
            p90: at(0.9),
            n: samples.len(),
        }
    }
}

/// How long to measure each operation.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Warm-up time before measuring.
    pub warmup: Duration,
    /// Measuring time.
    pub measure: Duration,
    /// Upper bound on measured iterations.
    pub max_iters: usize,
}

/// Times a synchronous operation.
pub fn time_sync(budget: Budget, mut op: impl FnMut()) -> Stats {
    let end = Instant::now() + budget.warmup;
    while Instant::now() < end {
        op();
    }
    let mut samples = Vec::new();
    let end = Instant::now() + budget.measure;
    while Instant::now() < end && samples.len() < budget.max_iters {
        let t = Instant::now();
        op();
        samples.push(t.elapsed());
    }
    Stats::from(samples)
}

/// Times an asynchronous operation, awaited one at a time.
pub async fn time_async<F, Fut>(budget: Budget, mut op: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let end = Instant::now() + budget.warmup;
    while Instant::now() < end {
        op().await;
    }
    let mut samples = Vec::new();
    let end = Instant::now() + budget.measure;
    while Instant::now() < end && samples.len() < budget.max_iters {
        let t = Instant::now();
        op().await;
        samples.push(t.elapsed());
    }
    Stats::from(samples)
}

/// `d` in microseconds, for tables.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
