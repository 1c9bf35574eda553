//! `conduit-bench cluster`: the cluster as real processes on loopback
//! (nats-server, `conduit registry`, `conduit scheduler`, `conduit gateway`,
//! `conduit runner --nats`), measured from outside as a client sees it:
//!
//! 1. the gateway's overhead: p50 of a tiny model through the gateway minus
//!    p50 calling the runner directly, alternating blocks in one run;
//! 2. a runner `kill -9` under load: requests lost, p99 overall and in the
//!    failover window, and the time until the placement has moved;
//! 3. throughput with 1, 2 and 3 runners (8 closed-loop clients through the
//!    gateway; this machine's 2 cores bound it: every process shares them);
//! 4. KV churn: 1,000 simulated runners heartbeating every 0.5 s into one
//!    nats-server: put latency and the server's CPU.
//!
//! `conduit-bench cluster --conduit target/release/conduit --nats-server
//! .venv/bin/nats-server --components DIR [--quick]`.

use anyhow::{Context, Result, bail, ensure};
use conduit_proto::inference::model_infer_request::InferInputTensor;
use conduit_proto::inference::{
    InferTensorContents, ModelInferRequest,
    grpc_inference_service_client::GrpcInferenceServiceClient,
};
use conduit_scheduler::{Cluster, ClusterConfig, ClusterView, RunnerRecord};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Tools {
    conduit: PathBuf,
    nats: PathBuf,
    wasm: PathBuf,
    model: PathBuf,
    work: PathBuf,
}

/// One cluster: NATS, registry, a scheduler, a gateway, `n` runners.
struct Bed {
    nats_url: String,
    registry: String,
    gateway: String,
    runners: Vec<(String, Proc)>,
    key: String,
    _procs: Vec<Proc>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn spawn(tools: &Tools, log: &str, program: &Path, args: &[String]) -> Result<Child> {
    let log = std::fs::File::create(tools.work.join(format!("{log}.log")))?;
    Command::new(program)
        .args(args)
        .env("CONDUIT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

fn s(v: &str) -> String {
    v.to_string()
}

impl Bed {
    fn start(tools: &Tools, n: usize, tag: &str) -> Result<Self> {
        let dir = tools.work.join(tag);
        std::fs::create_dir_all(&dir)?;
        let nats_port = free_port()?;
        let nats_url = format!("nats://127.0.0.1:{nats_port}");
        let mut procs = vec![Proc(spawn(
            tools,
            &format!("{tag}-nats"),
            &tools.nats,
            &[
                s("-js"),
                s("-a"),
                s("127.0.0.1"),
                s("-p"),
                nats_port.to_string(),
                s("-sd"),
                dir.join("nats").display().to_string(),
            ],
        )?)];
        wait_port(nats_port)?;
        let reg_port = free_port()?;
        let registry = format!("http://127.0.0.1:{reg_port}");
        let log = dir.join("registry.out");
        let child = Command::new(&tools.conduit)
            .args([
                "registry",
                "--listen",
                &format!("127.0.0.1:{reg_port}"),
                "--data-dir",
            ])
            .arg(dir.join("registry"))
            .env("CONDUIT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()?;
        procs.push(Proc(child));
        wait_port(reg_port)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let key = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(k) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("export CONDUIT_API_KEY="))
            {
                break k.to_string();
            }
            ensure!(Instant::now() < deadline, "the registry printed no key");
            std::thread::sleep(Duration::from_millis(20));
        };
        procs.push(Proc(spawn(
            tools,
            &format!("{tag}-scheduler"),
            &tools.conduit,
            &[s("scheduler"), s("--nats"), nats_url.clone()],
        )?));
        let mut runners = Vec::new();
        for i in 0..n {
            let (g, h) = (free_port()?, free_port()?);
            let id = format!("r{i}");
            let child = spawn(
                tools,
                &format!("{tag}-{id}"),
                &tools.conduit,
                &[
                    s("runner"),
                    s("--nats"),
                    nats_url.clone(),
                    s("--id"),
                    id.clone(),
                    s("--registry"),
                    registry.clone(),
                    s("--api-key"),
                    key.clone(),
                    s("--data-dir"),
                    dir.join(&id).display().to_string(),
                    s("--listen"),
                    format!("127.0.0.1:{g}"),
                    s("--http-listen"),
                    format!("127.0.0.1:{h}"),
                ],
            )?;
            wait_port(g)?;
            runners.push((format!("http://127.0.0.1:{g}"), Proc(child)));
        }
        let (g, h) = (free_port()?, free_port()?);
        procs.push(Proc(spawn(
            tools,
            &format!("{tag}-gateway"),
            &tools.conduit,
            &[
                s("gateway"),
                s("--nats"),
                nats_url.clone(),
                s("--registry"),
                registry.clone(),
                s("--api-key"),
                key.clone(),
                s("--data-dir"),
                dir.join("gateway").display().to_string(),
                s("--listen"),
                format!("127.0.0.1:{g}"),
                s("--http-listen"),
                format!("127.0.0.1:{h}"),
            ],
        )?));
        wait_port(g)?;
        let bed = Self {
            nats_url,
            registry,
            gateway: format!("http://127.0.0.1:{g}"),
            runners,
            key,
            _procs: procs,
        };
        Ok(bed)
    }

    fn push(
        &self,
        tools: &Tools,
        kind: &str,
        file: &Path,
        name: &str,
        replicas: usize,
    ) -> Result<()> {
        let out = Command::new(&tools.conduit)
            .args(["push", kind])
            .arg(file)
            .args([
                "--name",
                name,
                "--version",
                "1.0.0",
                "--replicas",
                &replicas.to_string(),
            ])
            .env("CONDUIT_REGISTRY", &self.registry)
            .env("CONDUIT_API_KEY", &self.key)
            .output()?;
        ensure!(
            out.status.success(),
            "push {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn push_all(&self, tools: &Tools, replicas: usize) -> Result<()> {
        self.push(
            tools,
            "model",
            &PathBuf::from("testdata/fixtures/add.onnx"),
            "add",
            replicas,
        )?;
        self.push(
            tools,
            "component",
            &tools.wasm.join("bert_tokenizer.wasm"),
            "tokenizer",
            replicas,
        )?;
        self.push(tools, "model", &tools.model, "minilm", replicas)?;
        self.push(
            tools,
            "component",
            &tools.wasm.join("embedding_post.wasm"),
            "embedding-post",
            replicas,
        )?;
        self.push(
            tools,
            "pipeline",
            &PathBuf::from("examples/pipelines/paraphrase.toml"),
            "paraphrase",
            replicas,
        )
    }
}

pub(crate) async fn client(url: &str) -> Result<GrpcInferenceServiceClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(GrpcInferenceServiceClient::new(channel))
}

pub(crate) fn request(model: &str, key: &str) -> tonic::Request<ModelInferRequest> {
    let input = if model == "add" {
        InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            contents: Some(InferTensorContents {
                fp32_contents: vec![1.0, 2.0, 3.0, 4.0],
                ..Default::default()
            }),
            ..Default::default()
        }
    } else {
        InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![2, 1],
            contents: Some(InferTensorContents {
                bytes_contents: crate::PAIR.iter().map(|t| t.as_bytes().to_vec()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    };
    let mut r = tonic::Request::new(ModelInferRequest {
        model_name: model.into(),
        inputs: vec![input],
        ..Default::default()
    });
    r.set_timeout(Duration::from_secs(30));
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    r
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Closed loop: `clients` callers for `duration`; (latencies, failures).
async fn closed_loop(
    url: &str,
    key: &str,
    model: &str,
    clients: usize,
    duration: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Result<(Vec<(Instant, Duration)>, u64)> {
    let c = client(url).await?;
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (mut c, key, model, stop) =
            (c.clone(), key.to_string(), model.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), 0u64);
            while Instant::now() < end && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
            {
                let t = Instant::now();
                match c.model_infer(request(&model, &key)).await {
                    Ok(_) => lat.push((t, t.elapsed())),
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (l, f) = t.await?;
        all.extend(l);
        failed += f;
    }
    Ok((all, failed))
}

async fn warm(url: &str, key: &str, model: &str) -> Result<()> {
    let mut c = client(url).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.model_infer(request(model, key)).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => bail!("{model} never answered: {e}"),
        }
    }
}

/// Runs the cluster section and prints its table.
pub fn main(args: impl Iterator<Item = String>) -> Result<()> {
    let mut args = args;
    let (mut conduit, mut nats, mut wasm, mut quick) = (
        PathBuf::from("target/release/conduit"),
        PathBuf::from(".venv/bin/nats-server"),
        PathBuf::from("target/wasm32-wasip2/release"),
        false,
    );
    while let Some(a) = args.next() {
        match a.as_str() {
            "--conduit" => conduit = args.next().context("--conduit needs a file")?.into(),
            "--nats-server" => nats = args.next().context("--nats-server needs a file")?.into(),
            "--components" => {
                wasm = args
                    .next()
                    .context("--components needs a directory")?
                    .into()
            }
            "--quick" => quick = true,
            other => bail!(
                "unknown argument `{other}` (use --conduit FILE --nats-server FILE --components DIR [--quick])"
            ),
        }
    }
    let work = std::env::temp_dir().join(format!("conduit-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let tools = Tools {
        conduit,
        nats,
        wasm,
        model: PathBuf::from("testdata/minilm/model.onnx"),
        work: work.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&tools, quick));
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run(tools: &Tools, quick: bool) -> Result<()> {
    let secs = |s: u64| Duration::from_secs(if quick { s.div_ceil(3) } else { s });
    println!("## cluster (processes on loopback; this machine's cores are shared by all of them)");

    // 1. The gateway's overhead on a tiny model.
    let bed = Bed::start(tools, 1, "overhead")?;
    bed.push(
        tools,
        "model",
        &PathBuf::from("testdata/fixtures/add.onnx"),
        "add",
        1,
    )?;
    warm(&bed.gateway, &bed.key, "add").await?;
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    let mut d = client(&bed.runners[0].0).await?;
    let mut g = client(&bed.gateway).await?;
    let block = if quick { 200 } else { 1000 };
    for _ in 0..if quick { 3 } else { 5 } {
        for (c, out) in [(&mut d, &mut direct), (&mut g, &mut via)] {
            for _ in 0..block {
                let t = Instant::now();
                c.model_infer(request("add", &bed.key)).await?;
                out.push(t.elapsed());
            }
        }
    }
    direct.sort();
    via.sort();
    let (pd, pg) = (pct(&direct, 0.5), pct(&via, 0.5));
    println!(
        "gateway overhead (add.onnx, 1 client): direct p50 {pd:.1} µs, via gateway p50 {pg:.1} µs, added {:.1} µs ({:.2}x); p99 {:.1} vs {:.1} µs",
        pg - pd,
        pg / pd,
        pct(&direct, 0.99),
        pct(&via, 0.99)
    );
    drop(bed);

    // 2. A runner kill -9 under load.
    let mut bed = Bed::start(tools, 3, "kill")?;
    bed.push(
        tools,
        "model",
        &PathBuf::from("testdata/fixtures/add.onnx"),
        "add",
        2,
    )?;
    warm(&bed.gateway, &bed.key, "add").await?;
    let view = ClusterView::start(
        Cluster::connect(ClusterConfig::new(bed.nats_url.clone(), "bench")).await?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let placed = loop {
        if let Some(p) = view
            .placements()
            .into_iter()
            .find(|p| p.module == "add@1.0.0" && p.runners.len() == 2)
        {
            break p;
        }
        ensure!(
            Instant::now() < deadline,
            "add was not placed on two runners"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = placed.runners[0].clone();
    let index: usize = victim.trim_start_matches('r').parse()?;
    let load = tokio::spawn({
        let (url, key) = (bed.gateway.clone(), bed.key.clone());
        async move {
            closed_loop(
                &url,
                &key,
                "add",
                8,
                Duration::from_secs(if quick { 5 } else { 8 }),
                None,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    let (_, mut proc) = bed.runners.remove(index);
    proc.0.kill()?;
    let _ = proc.0.wait();
    let moved = loop {
        if view
            .placement(&placed.digest)
            .is_some_and(|p| !p.runners.contains(&victim) && p.runners.len() == 2)
        {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(30) {
            bail!("the placement did not move in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (lat, failed) = load.await??;
    let mut all: Vec<Duration> = lat.iter().map(|(_, d)| *d).collect();
    let mut window: Vec<Duration> = lat
        .iter()
        .filter(|(t, _)| *t >= killed && *t < killed + moved)
        .map(|(_, d)| *d)
        .collect();
    all.sort();
    window.sort();
    println!(
        "runner kill -9 under load (8 clients, add.onnx, 2 replicas of 3 runners): {} requests, {failed} lost; p99 {:.0} µs overall, {:.0} µs in the failover window ({} requests); placement moved {:.2} s after the kill",
        all.len(),
        pct(&all, 0.99),
        pct(&window, 0.99),
        window.len(),
        moved.as_secs_f64()
    );
    drop(view);
    drop(bed);

    // 3. Throughput with 1, 2, 3 runners.
    for n in 1..=3 {
        let bed = Bed::start(tools, n, &format!("tput{n}"))?;
        bed.push_all(tools, n)?;
        for model in ["add", "paraphrase"] {
            warm(&bed.gateway, &bed.key, model).await?;
            // Every replica warm before measuring.
            closed_loop(
                &bed.gateway,
                &bed.key,
                model,
                8,
                Duration::from_secs(1),
                None,
            )
            .await?;
            let d = secs(if model == "add" { 3 } else { 6 });
            let (lat, failed) = closed_loop(&bed.gateway, &bed.key, model, 8, d, None).await?;
            let mut l: Vec<Duration> = lat.iter().map(|(_, d)| *d).collect();
            l.sort();
            println!(
                "throughput {n} runner(s), {model}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {failed} failed",
                l.len() as f64 / d.as_secs_f64(),
                pct(&l, 0.5),
                pct(&l, 0.99)
            );
        }
    }

    // 4. KV churn: 1,000 simulated runners.
    let nats_port = free_port()?;
    let mut nats = Proc(spawn(
        tools,
        "churn-nats",
        &tools.nats,
        &[
            s("-js"),
            s("-a"),
            s("127.0.0.1"),
            s("-p"),
            nats_port.to_string(),
            s("-sd"),
            tools.work.join("churn").display().to_string(),
        ],
    )?);
    wait_port(nats_port)?;
    let cluster = Cluster::connect(ClusterConfig::new(
        format!("nats://127.0.0.1:{nats_port}"),
        "churn",
    ))
    .await?;
    let cpu = || -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", nats.0.id()))?;
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        Ok(ticks / 100.0)
    };
    let duration = secs(10);
    let before = cpu()?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..1000u64 {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut record = RunnerRecord {
                id: format!("sim-{i}"),
                grpc: format!("10.0.{}.{}:7080", i / 250, i % 250),
                memory_total: 16 << 30,
                devices: vec!["cpu".into()],
                ..RunnerRecord::default()
            };
            let mut lat = Vec::new();
            // Spread over the interval, as independent runners would be.
            tokio::time::sleep(Duration::from_micros(i * 500)).await;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                record.beat += 1;
                let t = Instant::now();
                if cluster.heartbeat(&record).await.is_ok() {
                    lat.push(t.elapsed());
                }
            }
            lat
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let used = cpu()? - before;
    lat.sort();
    println!(
        "KV churn, 1,000 runners heartbeating every 0.5 s: {:.0} puts/s, put p50 {:.0} µs, p99 {:.0} µs; nats-server CPU {:.0}% of one core",
        lat.len() as f64 / elapsed,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        100.0 * used / elapsed
    );
    let _ = nats.0.kill();
    Ok(())
}
