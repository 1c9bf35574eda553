//! `conduit-bench load`: a load generator that speaks KServe v2 over gRPC or
//! HTTP to any server — Conduit and Triton by the same code path — in a
//! closed loop (`--concurrency N`) or an open loop (`--rate R`, Poisson
//! arrivals), with a warm-up, a fixed measuring window, a latency histogram
//! and throughput. Every answer is checked against the workload's reference
//! (a fast wrong answer is an error, not a sample).
//!
//! ```text
//! conduit-bench load --url 127.0.0.1:7070 --protocol grpc --model paraphrase \
//!     --key "$CONDUIT_API_KEY" --concurrency 4 --warmup-s 2 --duration-s 10 --json out.json
//! conduit-bench load --url 127.0.0.1:8000 --protocol http --model paraphrase --rate 20
//! conduit-bench load --self-test   # against an in-process Conduit, asserts zero errors
//! ```
//!
//! - [`workload`]: the requests and their checks;
//! - [`client`] over [`grpc`] and [`http`]: one client path per protocol;
//! - [`driver`]: the closed and open loops, and the window;
//! - [`histogram`], [`report`]: the numbers, printed and as JSON;
//! - [`self_test`]: the run against the bench's in-process server.

mod client;
mod driver;
mod grpc;
mod histogram;
mod http;
mod report;
mod self_test;
mod workload;

use anyhow::{Context, Result, bail, ensure};
use client::{Prepared, Protocol, Target};
use driver::Mode;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use workload::Workload;

const USAGE: &str = "usage: conduit-bench load --model NAME (--concurrency N | --rate R/s)
    [--url HOST:PORT] [--protocol grpc|http] [--model-version V] [--key KEY]
    [--workload paraphrase|minilm|add] [--warmup-s 2] [--duration-s 10] [--timeout-s 30]
    [--max-in-flight 4096] [--connections 1] [--seed 1] [--threads N]
    [--reference testdata/minilm_reference.json] [--json OUT.json [--timeline]]
  or: conduit-bench load --self-test [--components DIR] [--onnx FILE.onnx]";

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Server, protocol, model, key, timeout.
    pub target: Target,
    /// The request and its check.
    pub workload: Workload,
    /// Closed or open loop.
    pub mode: Mode,
    /// Time before the window opens.
    pub warmup: Duration,
    /// The window's length.
    pub duration: Duration,
    /// The MiniLM reference (`minilm` workload).
    pub reference: PathBuf,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Also write every request's send time and latency to the JSON.
    pub timeline: bool,
}

/// Runs `conduit-bench load ARGS…` (the arguments after `load`).
///
/// # Errors
/// Bad arguments, an unreachable server, a first answer that fails its
/// check, or no correct answer in the window; and for `--self-test`, any
/// error at all.
pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let mut args = args.peekable();
    let mut threads = None;
    let mut flags = Vec::new();
    while let Some(a) = args.next() {
        if a == "--threads" {
            threads = Some(args.next().context("--threads needs a number")?.parse()?);
        } else {
            flags.push(a);
        }
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("loadgen");
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let runtime = builder.build()?;
    if flags.iter().any(|f| f == "--self-test") {
        let mut components = PathBuf::from("target/wasm32-wasip2/release");
        let mut onnx = PathBuf::from("testdata/minilm/model.onnx");
        let mut it = flags.into_iter().filter(|f| f != "--self-test");
        while let Some(f) = it.next() {
            match f.as_str() {
                "--components" => components = it.next().context("--components DIR")?.into(),
                "--onnx" => onnx = it.next().context("--onnx FILE")?.into(),
                other => bail!("`{other}` does not go with --self-test\n{USAGE}"),
            }
        }
        return runtime.block_on(self_test::run(components, onnx));
    }
    let options = parse(flags.into_iter())?;
    runtime.block_on(run(options))
}

/// Prints the summary (and writes the JSON) of one run.
///
/// # Errors
/// As [`main`].
pub async fn run(o: Options) -> Result<()> {
    let tally = measure(&o).await?;
    println!("{}", report::summary(&o, &tally));
    if let Some(path) = &o.json {
        let text = serde_json::to_string_pretty(&report::json(&o, &tally))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(
        tally.latency.len() > 0,
        "no correct answer in the window ({} errors)",
        tally.error_count()
    );
    Ok(())
}

/// Checks one answer, then runs the load and returns what it recorded.
///
/// # Errors
/// An unreachable server or a first answer that fails its check.
async fn measure(o: &Options) -> Result<driver::Tally> {
    let case = o.workload.case(&o.reference)?;
    let prepared = Arc::new(Prepared::new(o.target.clone(), case)?);
    let fail = |f: client::Failure| anyhow::anyhow!("{}: {}", f.kind(), f.message());
    let mut first = client::Client::connect(&prepared).await.map_err(fail)?;
    first
        .infer(&prepared)
        .await
        .map_err(fail)
        .with_context(|| format!("first request to `{}`", o.target.model))?;
    drop(first);
    driver::run(prepared, o.mode, o.warmup, o.duration).await
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut protocol = Protocol::Grpc;
    let (mut url, mut model, mut version, mut key) = (None, None, String::new(), None);
    let (mut concurrency, mut rate) = (None, None);
    let (mut max_in_flight, mut connections, mut seed) = (4096, 1, 1);
    let (mut warmup, mut duration, mut timeout) = (2.0, 10.0, 30.0);
    let mut workload = None;
    let mut reference = PathBuf::from("testdata/minilm_reference.json");
    let mut json = None;
    let mut timeline = false;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--protocol" => {
                protocol = match value()?.as_str() {
                    "grpc" => Protocol::Grpc,
                    "http" => Protocol::Http,
                    other => bail!("--protocol is grpc or http, not `{other}`"),
                }
            }
            "--model" => model = Some(value()?),
            "--model-version" => version = value()?,
            "--key" => key = Some(value()?),
            "--concurrency" => concurrency = Some(value()?.parse::<usize>()?),
            "--rate" => rate = Some(value()?.parse::<f64>()?),
            "--max-in-flight" => max_in_flight = value()?.parse()?,
            "--connections" => connections = value()?.parse()?,
            "--seed" => seed = value()?.parse()?,
            "--warmup-s" => warmup = value()?.parse()?,
            "--duration-s" => duration = value()?.parse()?,
            "--timeout-s" => timeout = value()?.parse()?,
            "--workload" => workload = Some(Workload::parse(&value()?)?),
            "--reference" => reference = value()?.into(),
            "--json" => json = Some(PathBuf::from(value()?)),
            "--timeline" => timeline = true,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    let model = model.with_context(|| format!("--model is required\n{USAGE}"))?;
    let workload = match workload {
        Some(w) => w,
        None => Workload::parse(&model)
            .with_context(|| format!("say which --workload model `{model}` serves"))?,
    };
    let mode = match (concurrency, rate) {
        (Some(c), None) if c > 0 => Mode::Closed { concurrency: c },
        (None, Some(r)) if r > 0.0 && r.is_finite() => Mode::Open {
            rate: r,
            max_in_flight: max_in_flight.max(1),
            seed,
            connections,
        },
        _ => bail!("give either --concurrency N > 0 or --rate R > 0\n{USAGE}"),
    };
    let seconds = |s: f64, name: &str| {
        ensure!(s >= 0.0 && s.is_finite(), "{name} must be ≥ 0 seconds");
        Ok(Duration::from_secs_f64(s))
    };
    ensure!(duration > 0.0, "--duration-s must be > 0");
    ensure!(timeout > 0.0, "--timeout-s must be > 0");
    let default_url = match protocol {
        Protocol::Grpc => "127.0.0.1:7070",
        Protocol::Http => "127.0.0.1:7071",
    };
    Ok(Options {
        target: Target {
            protocol,
            address: url.unwrap_or_else(|| default_url.into()),
            model,
            version,
            key,
            timeout: seconds(timeout, "--timeout-s")?,
        },
        workload,
        mode,
        warmup: seconds(warmup, "--warmup-s")?,
        duration: seconds(duration, "--duration-s")?,
        reference,
        json,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> {
        s.split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_a_closed_and_an_open_loop() {
        let o = parse(args("--model paraphrase --concurrency 4 --key k")).unwrap();
        assert!(matches!(o.mode, Mode::Closed { concurrency: 4 }));
        assert_eq!(o.workload, Workload::Paraphrase);
        assert_eq!(o.target.address, "127.0.0.1:7070");
        assert_eq!(o.target.key.as_deref(), Some("k"));
        let o = parse(args(
            "--model enc --workload minilm --protocol http --rate 20.5 --duration-s 3",
        ))
        .unwrap();
        assert!(matches!(o.mode, Mode::Open { rate, .. } if rate == 20.5));
        assert_eq!(o.target.address, "127.0.0.1:7071");
        assert_eq!(o.duration, Duration::from_secs(3));
        for bad in [
            "--model paraphrase",
            "--model paraphrase --concurrency 2 --rate 3",
            "--model enc --concurrency 1",
            "--model add --rate 0",
            "--model add --concurrency 1 --protocol quic",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad}");
        }
    }
}
