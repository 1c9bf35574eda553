//! `conduit-bench autoscale`: autoscaling on a real local cluster
//! (`conduit cluster up` with the `local` actuator: every runner its own
//! process), measured from outside as a client sees it:
//!
//! 1. scale from zero: time to the first successful response of the
//!    paraphrase pipeline when no runner exists (runner start + pull +
//!    compile + load), and when a runner is up but the pipeline was scaled
//!    to zero (pull from its cache + load);
//! 2. no thrash: an open-loop step load (low → high → low) and a sawtooth on
//!    the paraphrase pipeline; per second: offered rate, p99 latency,
//!    replicas wanted, runners desired; the scale events and how often the
//!    replica count reversed direction. Written as an SVG plot
//!    (`--plot FILE`, default bench/results/autoscale.svg).
//!
//! `conduit-bench autoscale --conduit target/release/conduit --components
//! DIR [--quick] [--plot FILE]`. Timings are compressed (seconds, not
//! minutes) so that a run takes a few minutes; the shapes, not the absolute
//! times, are what carries over to production defaults.

use crate::cluster::{client, pct, request};
use anyhow::{Context, Result, bail, ensure};
use conduit_scheduler::{Cluster, ClusterConfig, ClusterView};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `conduit cluster up`, stopped (Ctrl-C) when dropped.
struct Up {
    child: Child,
    base: u16,
    key: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_base() -> Result<u16> {
    let p = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(p.saturating_sub(40).max(20_000))
}

impl Up {
    fn start(conduit: &Path, dir: &Path, args: &[String]) -> Result<Self> {
        let base = free_base()?;
        let path = format!(
            "{}:{}",
            std::fs::canonicalize(".venv/bin")
                .unwrap_or_else(|_| PathBuf::from(".venv/bin"))
                .display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::fs::File::create(dir.with_extension("out"))?;
        let child = Command::new(conduit)
            .args(["cluster", "up", "--port-base", &base.to_string(), "--dir"])
            .arg(dir)
            .args(args)
            .env("PATH", path)
            .env("CONDUIT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .context("starting conduit cluster up")?;
        let mut up = Self {
            child,
            base,
            key: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let printed = std::fs::read_to_string(dir.with_extension("out")).unwrap_or_default();
            if printed.contains("Ctrl-C stops the cluster") {
                break;
            }
            if let Ok(Some(s)) = up.child.try_wait() {
                bail!("cluster up exited ({s}):\n{printed}");
            }
            ensure!(
                Instant::now() < deadline,
                "cluster up did not come up:\n{printed}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        up.key = std::fs::read_to_string(dir.join("admin.key"))?
            .trim()
            .to_string();
        Ok(up)
    }

    fn gateway(&self) -> String {
        format!("http://127.0.0.1:{}", self.base + 1)
    }

    fn nats(&self) -> String {
        format!("nats://127.0.0.1:{}", self.base + 3)
    }

    fn push(
        &self,
        conduit: &Path,
        kind: &str,
        file: &Path,
        name: &str,
        extra: &[&str],
    ) -> Result<()> {
        let out = Command::new(conduit)
            .args(["push", kind])
            .arg(file)
            .args(["--name", name, "--version", "1.0.0"])
            .args(extra)
            .env(
                "CONDUIT_REGISTRY",
                format!("http://127.0.0.1:{}", self.base + 2),
            )
            .env("CONDUIT_API_KEY", &self.key)
            .output()?;
        ensure!(
            out.status.success(),
            "push {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The paraphrase pipeline and its steps.
    fn push_paraphrase(&self, conduit: &Path, wasm: &Path, extra: &[&str]) -> Result<()> {
        self.push(
            conduit,
            "component",
            &wasm.join("bert_tokenizer.wasm"),
            "tokenizer",
            extra,
        )?;
        self.push(
            conduit,
            "model",
            Path::new("testdata/minilm/model.onnx"),
            "minilm",
            extra,
        )?;
        self.push(
            conduit,
            "component",
            &wasm.join("embedding_post.wasm"),
            "embedding-post",
            extra,
        )?;
        self.push(
            conduit,
            "pipeline",
            Path::new("examples/pipelines/paraphrase.toml"),
            "paraphrase",
            extra,
        )
    }

    /// The first scheduler's `/metrics`.
    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let addr = format!("127.0.0.1:{}", self.base + 4);
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Compressed timings shared by both sections.
fn timings(min_runners: u32, max_runners: u32) -> Vec<String> {
    [
        format!("--min-runners={min_runners}"),
        format!("--max-runners={max_runners}"),
        "--schedulers=1".into(),
        "--max-replicas=3".into(),
        "--target-busy=50".into(),
        "--target-queue-ms=200".into(),
        "--scale-up-after-ms=2000".into(),
        "--scale-up-cooldown-ms=3000".into(),
        "--scale-down-after-ms=10000".into(),
        "--scale-down-cooldown-ms=5000".into(),
        "--idle-after-ms=4000".into(),
        "--runner-down-after-ms=3000".into(),
        "--runner-down-cooldown-ms=2000".into(),
        "--runner-arg=--release-idle-ms=1000".into(),
        "--runner-arg=--drain-timeout-ms=15000".into(),
    ]
    .into()
}

/// Sends paraphrase requests until one succeeds; the time it took.
async fn first_response(gateway: &str, key: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut c = client(gateway).await?;
    loop {
        match c.model_infer(request("paraphrase", key)).await {
            Ok(_) => return Ok(started.elapsed()),
            Err(e) if started.elapsed() < Duration::from_secs(120) => {
                tracing_free_log(&e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => bail!("paraphrase never answered: {e}"),
        }
    }
}

fn tracing_free_log(e: &tonic::Status) {
    if std::env::var_os("CONDUIT_BENCH_VERBOSE").is_some() {
        eprintln!("  (retrying: {} {})", e.code(), e.message());
    }
}

/// Waits until the cluster has no placement (and, with `runners`, no runner).
async fn wait_zero(view: &ClusterView, runners: bool, bound: Duration) -> Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        let empty = view.synced()
            && view.placements().is_empty()
            && (!runners || view.live_runners().is_empty());
        if empty {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the cluster did not scale to zero within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One second of the load run.
#[derive(Debug, Clone, Default)]
struct Second {
    offered: f64,
    ok: u64,
    failed: u64,
    p99_ms: f64,
    replicas: f64,
    runners: f64,
}

/// Open-loop load at `rate(t)` req/s for `duration`; per-second results,
/// latency measured from each request's scheduled send time.
async fn open_loop(up: &Up, duration: Duration, rate: impl Fn(f64) -> f64) -> Result<Vec<Second>> {
    let c = client(&up.gateway()).await?;
    let secs = duration.as_secs() as usize;
    let lat: Arc<Mutex<Vec<Vec<Duration>>>> = Arc::new(Mutex::new(vec![Vec::new(); secs + 1]));
    let failed: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; secs + 1]));
    let errors: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Arc::default();
    let (mut last_replicas, mut last_runners) = (0.0, 0.0);
    let mut out = vec![Second::default(); secs];
    let start = tokio::time::Instant::now();
    let mut next = 0.0f64;
    let mut sampled = 0usize;
    let mut tasks = Vec::new();
    while next < duration.as_secs_f64() {
        let at = start + Duration::from_secs_f64(next);
        // Sample the scheduler once a second.
        while sampled < secs && Duration::from_secs(sampled as u64) <= at - start {
            // A failed scrape keeps the last values (not a scale event).
            let m = up.metrics();
            if m.contains("conduit_scheduler_runners_desired") {
                last_replicas = metric(
                    &m,
                    "conduit_scheduler_replicas{module=\"paraphrase@1.0.0\",state=\"wanted\"}",
                );
                last_runners = metric(&m, "conduit_scheduler_runners_desired");
            }
            out[sampled].replicas = last_replicas;
            out[sampled].runners = last_runners;
            out[sampled].offered = rate(sampled as f64);
            sampled += 1;
        }
        tokio::time::sleep_until(at).await;
        let (mut c, key, lat, failed, errors) = (
            c.clone(),
            up.key.clone(),
            lat.clone(),
            failed.clone(),
            errors.clone(),
        );
        let slot = next as usize;
        tasks.push(tokio::spawn(async move {
            let r = c.model_infer(request("paraphrase", &key)).await;
            let took = at.elapsed();
            match r {
                Ok(_) => lat.lock().expect("lat")[slot].push(took),
                Err(e) => {
                    failed.lock().expect("failed")[slot] += 1;
                    let what: String = format!("{:?}: {}", e.code(), e.message())
                        .chars()
                        .take(160)
                        .collect();
                    *errors.lock().expect("errors").entry(what).or_default() += 1;
                }
            }
        }));
        next += 1.0 / rate(next).max(0.1);
    }
    for t in tasks {
        let _ = t.await;
    }
    for (what, n) in errors.lock().expect("errors").iter() {
        println!("  failed {n}×: {what}");
    }
    let lat = lat.lock().expect("lat");
    let failed = failed.lock().expect("failed");
    for (i, s) in out.iter_mut().enumerate() {
        let mut l = lat[i].clone();
        l.sort();
        s.ok = l.len() as u64;
        s.failed = failed[i];
        s.p99_ms = if l.is_empty() {
            0.0
        } else {
            pct(&l, 0.99) / 1e3
        };
    }
    Ok(out)
}

/// How often the wanted replica count changed direction (up then down, or
/// down then up): the thrash count.
fn reversals(seconds: &[Second]) -> usize {
    let mut last_dir = 0i8;
    let mut n = 0;
    for w in seconds.windows(2) {
        let d: i8 = match w[1].replicas.total_cmp(&w[0].replicas) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
        };
        if d != 0 {
            if last_dir != 0 && d != last_dir {
                n += 1;
            }
            last_dir = d;
        }
    }
    n
}

fn summarize(name: &str, seconds: &[Second]) {
    let ok: u64 = seconds.iter().map(|s| s.ok).sum();
    let failed: u64 = seconds.iter().map(|s| s.failed).sum();
    let changes = seconds
        .windows(2)
        .filter(|w| w[1].replicas != w[0].replicas)
        .count();
    let runner_changes = seconds
        .windows(2)
        .filter(|w| w[1].runners != w[0].runners)
        .count();
    let max_p99 = seconds.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    println!(
        "{name}: {ok} ok, {failed} failed; replica changes {changes} (direction reversals {}), runner changes {runner_changes}; worst 1-s p99 {max_p99:.0} ms",
        reversals(seconds)
    );
    println!("  t(s)  offered  ok/s  p99(ms)  replicas  runners");
    for (i, s) in seconds.iter().enumerate() {
        if i % 5 == 0
            || (i > 0
                && (s.replicas != seconds[i - 1].replicas || s.runners != seconds[i - 1].runners))
        {
            println!(
                "  {i:>4}  {:>7.0}  {:>4}  {:>7.0}  {:>8}  {:>7}",
                s.offered, s.ok, s.p99_ms, s.replicas, s.runners
            );
        }
    }
}

/// Two panels of one load run into an SVG: offered and served rate with
/// p99; replicas and runners.
fn svg_panel(out: &mut String, y0: f64, title: &str, seconds: &[Second]) {
    let (w, h, left) = (860.0, 150.0, 50.0);
    let n = seconds.len().max(2) as f64;
    let x = |i: usize| left + (i as f64) / (n - 1.0) * (w - left - 20.0);
    let max_rate = seconds
        .iter()
        .map(|s| s.offered.max(s.ok as f64))
        .fold(1.0, f64::max);
    let max_p99 = seconds.iter().map(|s| s.p99_ms).fold(1.0, f64::max);
    let max_count = seconds
        .iter()
        .map(|s| s.replicas.max(s.runners))
        .fold(1.0, f64::max)
        + 1.0;
    let line = |f: &dyn Fn(&Second) -> f64, max: f64, top: f64, color: &str, step: bool| {
        let mut pts = String::new();
        for (i, s) in seconds.iter().enumerate() {
            let y = top + h - f(s) / max * h;
            if step && i > 0 {
                let prev = top + h - f(&seconds[i - 1]) / max * h;
                pts.push_str(&format!("{:.1},{prev:.1} ", x(i)));
            }
            pts.push_str(&format!("{:.1},{y:.1} ", x(i)));
        }
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{pts}\"/>\n"
        )
    };
    out.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.0}\" font-size=\"13\">{title}: offered (grey) and served (blue) req/s, max {max_rate:.0}; p99 (red), max {max_p99:.0} ms</text>\n",
        y0 + 14.0
    ));
    let top = y0 + 20.0;
    out.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{h}\" fill=\"none\" stroke=\"#ccc\"/>\n",
        w - left - 20.0
    ));
    out.push_str(&line(&|s| s.offered, max_rate, top, "#999", false));
    out.push_str(&line(&|s| s.ok as f64, max_rate, top, "#1f77b4", false));
    out.push_str(&line(&|s| s.p99_ms, max_p99, top, "#d62728", false));
    let top2 = top + h + 30.0;
    out.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.0}\" font-size=\"13\">replicas wanted (green) and runners desired (purple), 0 to {max_count:.0}; x: seconds, 0 to {}</text>\n",
        top2 - 6.0,
        seconds.len()
    ));
    out.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top2}\" width=\"{}\" height=\"{h}\" fill=\"none\" stroke=\"#ccc\"/>\n",
        w - left - 20.0
    ));
    out.push_str(&line(&|s| s.replicas, max_count, top2, "#2ca02c", true));
    out.push_str(&line(&|s| s.runners, max_count, top2, "#9467bd", true));
}

fn write_svg(path: &Path, runs: &[(&str, &[Second])]) -> Result<()> {
    let height = 30.0 + runs.len() as f64 * 390.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"880\" height=\"{height:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, (title, seconds)) in runs.iter().enumerate() {
        svg_panel(&mut out, 10.0 + i as f64 * 390.0, title, seconds);
    }
    out.push_str("</svg>\n");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// Runs both sections and prints their tables.
pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let mut args = args;
    let mut conduit = PathBuf::from("target/release/conduit");
    let mut wasm = PathBuf::from("target/wasm32-wasip2/release");
    let mut plot = PathBuf::from("bench/results/autoscale.svg");
    let mut quick = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--conduit" => conduit = args.next().context("--conduit needs a file")?.into(),
            "--components" => {
                wasm = args
                    .next()
                    .context("--components needs a directory")?
                    .into()
            }
            "--plot" => plot = args.next().context("--plot needs a file")?.into(),
            "--quick" => quick = true,
            other => bail!(
                "unknown argument `{other}` (use --conduit FILE --components DIR [--plot FILE] [--quick])"
            ),
        }
    }
    let work = std::env::temp_dir().join(format!("conduit-bench-autoscale-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&conduit, &wasm, &work, &plot, quick));
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run(conduit: &Path, wasm: &Path, work: &Path, plot: &Path, quick: bool) -> Result<()> {
    println!(
        "## autoscale (conduit cluster up, local actuator; compressed timings; 2 shared cores)"
    );
    let samples = if quick { 2 } else { 3 };

    // 1a. From zero runners.
    let up = Up::start(conduit, &work.join("zero"), &timings(0, 2))?;
    let view = ClusterView::start(Cluster::connect(ClusterConfig::new(up.nats(), "bench")).await?);
    up.push_paraphrase(conduit, wasm, &[])?;
    let mut cold = Vec::new();
    for _ in 0..samples {
        wait_zero(&view, true, Duration::from_secs(90)).await?;
        cold.push(first_response(&up.gateway(), &up.key).await?);
    }
    drop(view);
    drop(up);
    // 1b. A runner up, the pipeline scaled to zero.
    let up = Up::start(conduit, &work.join("warm"), &timings(1, 2))?;
    let view = ClusterView::start(Cluster::connect(ClusterConfig::new(up.nats(), "bench")).await?);
    up.push_paraphrase(conduit, wasm, &[])?;
    first_response(&up.gateway(), &up.key).await?;
    let mut warm = Vec::new();
    for _ in 0..samples {
        wait_zero(&view, false, Duration::from_secs(60)).await?;
        // Past the runner's release delay: the module is unloaded there.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        warm.push(first_response(&up.gateway(), &up.key).await?);
    }
    let ms = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "scale from zero, paraphrase, first successful response: no runner {} s; a runner up, pipeline scaled to zero {} s",
        ms(&cold),
        ms(&warm)
    );

    // 2. No thrash: step and sawtooth on the same cluster (min 1 runner).
    let (low, high) = (5.0, 100.0);
    let unit = if quick { 0.5 } else { 1.0 };
    let phase = |s: f64| Duration::from_secs_f64(s * unit);
    let step_len = phase(100.0);
    let (a, b) = (20.0 * unit, 60.0 * unit);
    let step = open_loop(
        &up,
        step_len,
        move |t| if t >= a && t < b { high } else { low },
    )
    .await?;
    summarize(&format!("step load ({low} → {high} → {low} req/s)"), &step);
    let period = 20.0 * unit;
    let saw = open_loop(&up, phase(80.0), move |t| {
        let f = (t % period) / period;
        low + (high - low) * f
    })
    .await?;
    summarize(
        &format!("sawtooth ({low} ↗ {high} req/s, period {period} s)"),
        &saw,
    );
    write_svg(
        plot,
        &[
            (format!("step {low} → {high} → {low} req/s").as_str(), &step),
            (format!("sawtooth {low} ↗ {high} req/s").as_str(), &saw),
        ],
    )?;
    println!("plot: {}", plot.display());
    let events = up.metrics();
    let events: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("conduit_scheduler_scale_events_total{"))
        .collect();
    println!("scale events (whole run): {}", events.join("; "));
    println!(
        "{{\"autoscale\":{{\"from_zero_s\":[{}],\"scaled_to_zero_s\":[{}],\"step_reversals\":{},\"saw_reversals\":{},\"step_failed\":{},\"saw_failed\":{}}}}}",
        ms(&cold),
        ms(&warm),
        reversals(&step),
        reversals(&saw),
        step.iter().map(|s| s.failed).sum::<u64>(),
        saw.iter().map(|s| s.failed).sum::<u64>()
    );
    drop(view);
    Ok(())
}
