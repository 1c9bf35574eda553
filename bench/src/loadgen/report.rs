//! What a run prints (one summary line, then the errors by kind) and what
//! `--json` writes (every number, and the latency CDF for plotting).

use super::Options;
use super::driver::{Mode, Tally};
use serde_json::{Value, json};

/// Send lag (µs, p99) beyond which the open loop's summary warns that the
/// generator itself fell behind.
const LATE_US: u64 = 1_000;

/// The quantiles the JSON's `cdf` lists: every percent, then the tail.
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    (1..=99)
        .map(|i| f64::from(i) / 100.0)
        .chain([0.995, 0.999, 0.9995, 0.9999, 1.0])
}

/// `c=N` or `rate=R/s`.
fn mode_label(mode: &Mode) -> String {
    match mode {
        Mode::Closed { concurrency } => format!("closed c={concurrency}"),
        Mode::Open { rate, .. } => format!("open {rate} req/s (Poisson)"),
    }
}

/// µs as milliseconds, with more decimals below 1 ms.
fn ms(us: u64) -> String {
    let ms = us as f64 / 1e3;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.2}")
    }
}

/// Correct answers per second over the window.
pub fn throughput(o: &Options, t: &Tally) -> f64 {
    t.ok_in_window as f64 / o.duration.as_secs_f64()
}

/// The summary line, then one line per error kind.
pub fn summary(o: &Options, t: &Tally) -> String {
    let h = &t.latency;
    let mut s = format!(
        "{} {} ({}) at {}, {}: {:.1} ok/s | latency ms p50 {} p90 {} p99 {} p99.9 {} max {} | {} sent, {} ok, {} errors, {} dropped | {:.1} s after {:.1} s warm-up",
        o.target.protocol.name(),
        o.target.model,
        o.workload.name(),
        o.target.host_port(),
        mode_label(&o.mode),
        throughput(o, t),
        ms(h.quantile(0.5)),
        ms(h.quantile(0.9)),
        ms(h.quantile(0.99)),
        ms(h.quantile(0.999)),
        ms(h.max()),
        t.sent,
        h.len(),
        t.error_count(),
        t.dropped,
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
    );
    if let Mode::Open { .. } = o.mode {
        let lag = t.send_lag.quantile(0.99);
        s += &format!(
            " | send lag ms p99 {} max {}",
            ms(lag),
            ms(t.send_lag.max())
        );
        if lag > LATE_US {
            s += &format!(
                "\n  warning: requests started up to {} ms after their scheduled time (p99): the generator lacked CPU, and its delay is in the latencies",
                ms(lag)
            );
        }
    }
    for (kind, (n, message)) in &t.errors {
        s += &format!("\n  error `{kind}` × {n}, e.g.: {message}");
    }
    s
}

/// Every number of the run, for `--json`.
pub fn json(o: &Options, t: &Tally) -> Value {
    let h = &t.latency;
    let (mode, concurrency, rate, max_in_flight, seed) = match o.mode {
        Mode::Closed { concurrency } => ("closed", Some(concurrency), None, None, None),
        Mode::Open {
            rate,
            max_in_flight,
            seed,
            ..
        } => ("open", None, Some(rate), Some(max_in_flight), Some(seed)),
    };
    let errors: serde_json::Map<String, Value> = t
        .errors
        .iter()
        .map(|(kind, (n, message))| (kind.clone(), json!({ "count": n, "example": message })))
        .collect();
    let cdf: Vec<Value> = cdf_quantiles()
        .map(|q| json!({ "q": q, "latency_us": h.quantile(q) }))
        .collect();
    json!({
        "tool": "conduit-bench load",
        "protocol": o.target.protocol.name(),
        "url": o.target.host_port(),
        "model": o.target.model,
        "model_version": o.target.version,
        "workload": o.workload.name(),
        "mode": mode,
        "concurrency": concurrency,
        "rate_rps": rate,
        "max_in_flight": max_in_flight,
        "seed": seed,
        "connections": t.connections,
        "warmup_s": o.warmup.as_secs_f64(),
        "duration_s": o.duration.as_secs_f64(),
        "timeout_s": o.target.timeout.as_secs_f64(),
        "sent": t.sent,
        "ok": h.len(),
        "errors_total": t.error_count(),
        "errors": errors,
        "dropped": t.dropped,
        "throughput_rps": throughput(o, t),
        "offered_rps": (t.sent + t.dropped) as f64 / o.duration.as_secs_f64(),
        "latency_us": {
            "min": h.min(),
            "mean": h.mean(),
            "p50": h.quantile(0.5),
            "p90": h.quantile(0.9),
            "p99": h.quantile(0.99),
            "p999": h.quantile(0.999),
            "max": h.max(),
        },
        "send_lag_us": {
            "p50": t.send_lag.quantile(0.5),
            "p99": t.send_lag.quantile(0.99),
            "max": t.send_lag.max(),
        },
        "cdf": cdf,
        "window_start_unix_s": t.window_start_unix,
        "timeline": o.timeline.then(|| timeline(t)),
    })
}

/// `[[sent_ms, latency_ms, ok], …]` by send time (`--timeline`).
fn timeline(t: &Tally) -> Value {
    let mut rows = t.timeline.clone();
    rows.sort_unstable();
    rows.iter()
        .map(|&(sent, latency, ok)| json!([sent as f64 / 1e3, latency as f64 / 1e3, ok]))
        .collect()
}
