//! The two load shapes, measured over one window after a warm-up:
//!
//! - **closed loop**: N clients, one connection each, each sending its next
//!   request when the last one is answered;
//! - **open loop**: requests arrive as a Poisson process at R per second,
//!   each sent on schedule whatever the others are doing. A scheduler thread
//!   sleeps until each arrival and spawns its request, and latency counts
//!   from the *scheduled* time, so a slow server cannot slow the arrivals
//!   down and hide its own queueing (no coordinated omission). At most
//!   `max_in_flight` requests are outstanding; arrivals beyond are dropped
//!   and counted.
//!
//! A request counts in the window when it was sent (scheduled) inside it;
//! each such request is awaited to its end, so a slow answer shows as a
//! high latency, never as a missing sample. Throughput counts the correct
//! answers that *arrived* inside the window.

use super::client::{Client, Failure, Pool, Prepared};
use super::histogram::Histogram;
use anyhow::{Result, anyhow};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Closed or open loop.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `concurrency` clients sending back to back.
    Closed {
        /// Clients (each with its own connection).
        concurrency: usize,
    },
    /// Poisson arrivals.
    Open {
        /// Mean arrivals per second.
        rate: f64,
        /// Arrivals finding this many requests outstanding are dropped.
        max_in_flight: usize,
        /// Seed of the arrival process.
        seed: u64,
        /// Connections opened up front (HTTP opens more as needed).
        connections: usize,
    },
}

/// The measuring window: `[from, end)`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// End of the warm-up.
    pub from: Instant,
    /// End of the measurement.
    pub end: Instant,
    /// `from` in seconds since the Unix epoch.
    pub from_unix: f64,
}

impl Window {
    fn new(warmup: Duration, duration: Duration) -> Self {
        let from = Instant::now() + warmup;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            from,
            end: from + duration,
            from_unix: now_unix + warmup.as_secs_f64(),
        }
    }

    fn contains(&self, t: Instant) -> bool {
        (self.from..self.end).contains(&t)
    }
}

/// What one run recorded.
#[derive(Default, Clone)]
pub struct Tally {
    /// Latency (µs) of the correct answers to requests sent in the window.
    pub latency: Histogram,
    /// Requests sent (scheduled) in the window.
    pub sent: u64,
    /// Correct answers that arrived in the window.
    pub ok_in_window: u64,
    /// Failed requests sent in the window, by kind: count and first message.
    pub errors: BTreeMap<String, (u64, String)>,
    /// Open loop: arrivals in the window dropped at the in-flight cap.
    pub dropped: u64,
    /// Open loop: how late requests started after their scheduled time (µs).
    pub send_lag: Histogram,
    /// Connections open at the end (HTTP's open loop opens more as needed).
    pub connections: usize,
    /// Every request sent in the window: (send time after the window opened,
    /// latency, answered correctly), in µs, in no particular order.
    pub timeline: Vec<(u64, u64, bool)>,
    /// When the window opened, in seconds since the Unix epoch (to line the
    /// timeline up with other events, e.g. a push during the run).
    pub window_start_unix: f64,
}

impl Tally {
    fn record(&mut self, w: &Window, sent: Instant, done: Instant, r: &Result<(), Failure>) {
        if w.contains(sent) {
            self.sent += 1;
            self.timeline
                .push((micros(sent - w.from), micros(done - sent), r.is_ok()));
            match r {
                Ok(()) => self.latency.record(micros(done - sent)),
                Err(f) => {
                    let e = self.errors.entry(f.kind()).or_insert((0, f.message()));
                    e.0 += 1;
                }
            }
        }
        if r.is_ok() && (w.from..=w.end).contains(&done) {
            self.ok_in_window += 1;
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.latency.merge(&other.latency);
        self.send_lag.merge(&other.send_lag);
        self.sent += other.sent;
        self.ok_in_window += other.ok_in_window;
        self.dropped += other.dropped;
        self.connections += other.connections;
        self.timeline.extend_from_slice(&other.timeline);
        for (kind, (n, message)) in &other.errors {
            self.errors
                .entry(kind.clone())
                .or_insert((0, message.clone()))
                .0 += n;
        }
    }

    /// Failed requests, all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

/// Runs `mode` against the prepared request: `warmup`, then `duration`.
///
/// # Errors
/// When the first connections cannot be opened.
pub async fn run(
    p: Arc<Prepared>,
    mode: Mode,
    warmup: Duration,
    duration: Duration,
) -> Result<Tally> {
    match mode {
        Mode::Closed { concurrency } => closed(p, concurrency, warmup, duration).await,
        Mode::Open {
            rate,
            max_in_flight,
            seed,
            connections,
        } => {
            let pool = Pool::new(&p, connections)
                .await
                .map_err(|f| anyhow!("{}: {}", f.kind(), f.message()))?;
            let pool = Arc::new(pool);
            let mut tally =
                open(p, pool.clone(), rate, max_in_flight, seed, warmup, duration).await?;
            tally.connections = pool.connections();
            Ok(tally)
        }
    }
}

async fn closed(
    p: Arc<Prepared>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<Tally> {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let c = Client::connect(&p)
            .await
            .map_err(|f| anyhow!("{}: {}", f.kind(), f.message()))?;
        clients.push(c);
    }
    let window = Window::new(warmup, duration);
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let p = p.clone();
        tasks.spawn(async move {
            let mut tally = Tally {
                connections: 1,
                ..Tally::default()
            };
            loop {
                let sent = Instant::now();
                if sent >= window.end {
                    break;
                }
                let r = client.infer(&p).await;
                tally.record(&window, sent, Instant::now(), &r);
                if matches!(r, Err(Failure::Connect(_))) {
                    // The server is gone: count, but do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tally
        });
    }
    let mut all = Tally {
        window_start_unix: window.from_unix,
        ..Tally::default()
    };
    while let Some(t) = tasks.join_next().await {
        all.merge(&t?);
    }
    Ok(all)
}

async fn open(
    p: Arc<Prepared>,
    pool: Arc<Pool>,
    rate: f64,
    max_in_flight: usize,
    seed: u64,
    warmup: Duration,
    duration: Duration,
) -> Result<Tally> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let handle = tokio::runtime::Handle::current();
    let window = Window::new(warmup, duration);
    let start = window.from - warmup;
    let scheduler = {
        let (tally, in_flight) = (tally.clone(), in_flight.clone());
        std::thread::Builder::new()
            .name("loadgen-arrivals".into())
            .spawn(move || {
                let mut rng = XorShift::new(seed);
                let mut next = start;
                loop {
                    next += Duration::from_secs_f64(rng.exponential(rate));
                    if next >= window.end {
                        break;
                    }
                    let now = Instant::now();
                    if next > now {
                        // ~50–100 µs late at worst (timer slack), where a
                        // tokio timer would round up to whole milliseconds.
                        std::thread::sleep(next - now);
                    }
                    if in_flight.load(Ordering::Acquire) >= max_in_flight {
                        if window.contains(next) {
                            tally.lock().expect("tally lock").dropped += 1;
                        }
                        continue;
                    }
                    in_flight.fetch_add(1, Ordering::AcqRel);
                    let (p, pool, tally, in_flight) =
                        (p.clone(), pool.clone(), tally.clone(), in_flight.clone());
                    let scheduled = next;
                    handle.spawn(async move {
                        let began = Instant::now();
                        let r = pool.infer(&p).await;
                        let done = Instant::now();
                        {
                            let mut t = tally.lock().expect("tally lock");
                            t.record(&window, scheduled, done, &r);
                            if window.contains(scheduled) {
                                t.send_lag.record(micros(began - scheduled));
                            }
                        }
                        in_flight.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            })?
    };
    tokio::task::spawn_blocking(move || scheduler.join())
        .await?
        .map_err(|_| anyhow!("the arrival thread panicked"))?;
    // Every request ends by its timeout at the latest.
    while in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut t = tally.lock().expect("tally lock").clone();
    t.window_start_unix = window.from_unix;
    Ok(t)
}

/// xorshift64*: a small, seeded, good-enough generator for arrival times.
pub struct XorShift(u64);

impl XorShift {
    /// A generator; every seed (0 included) gives a valid state.
    pub fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential inter-arrival time, in seconds, at `rate` per second.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_poisson_and_reproducible() {
        let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let n = 200_000;
        let gaps: Vec<f64> = (0..n).map(|_| a.exponential(50.0)).collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.02).abs() < 0.02 * 0.01, "mean gap {mean}");
        // Exponential: the variance is the mean squared.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((var / (mean * mean) - 1.0).abs() < 0.03, "variance {var}");
        assert!(gaps.iter().all(|g| g.is_finite() && *g >= 0.0));
    }

    #[test]
    fn the_window_decides_what_counts() {
        let w = Window::new(Duration::from_secs(1), Duration::from_secs(1));
        let mut t = Tally::default();
        let before = w.from - Duration::from_millis(10);
        let inside = w.from + Duration::from_millis(10);
        let ms = Duration::from_millis(5);
        t.record(&w, before, before + ms, &Ok(()));
        t.record(&w, before, inside, &Ok(()));
        t.record(&w, inside, inside + ms, &Ok(()));
        t.record(&w, inside, w.end + ms, &Ok(()));
        t.record(&w, inside, inside + ms, &Err(Failure::Timeout));
        t.record(
            &w,
            inside,
            inside + ms,
            &Err(Failure::Wrong("similarity 0.1".into())),
        );
        assert_eq!((t.sent, t.latency.len(), t.ok_in_window), (4, 2, 2));
        assert_eq!(t.error_count(), 2);
        assert_eq!(t.errors["wrong answer"], (1, "similarity 0.1".into()));
        let mut all = Tally::default();
        all.merge(&t);
        all.merge(&t);
        assert_eq!((all.sent, all.error_count()), (8, 4));
    }
}
