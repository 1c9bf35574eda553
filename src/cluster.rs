//! The cluster's commands: `conduit scheduler`, `conduit gateway`, the
//! runner's membership (`conduit runner --nats URL`), `conduit cluster
//! status` and `conduit cluster up` (every role as a local process).

use crate::modules::Connection;
use crate::serve::{PlaneArgs, bind, node_config, shutdown_signal};
use anyhow::{Context, Result, bail};
use conduit_gateway::{Gateway, RouteConfig};
use conduit_runner::{Node, Serving};
use conduit_scheduler::autoscale::{Reading, model_load};
use conduit_scheduler::autoscale::{ReplicaPolicy, RunnerPolicy};
use conduit_scheduler::member::drain_subject;
use conduit_scheduler::{
    Actuator, Cluster, ClusterConfig, ClusterView, Host, HostLoad, KubeActuator, MemberConfig,
    Membership, Placement, SchedulerConfig, SchedulerMetrics, valid_id,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a process reaches the cluster's NATS.
#[derive(clap::Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS URL (JetStream on): the cluster's coordination.
    #[arg(long, env = "CONDUIT_NATS")]
    pub nats: Option<String>,
    /// A runner's record expires this long after its last heartbeat, in ms
    /// (used when the bucket is first created).
    #[arg(long, default_value_t = 3000)]
    pub runner_ttl_ms: u64,
    /// The scheduler lease expires this long after its last renewal, in ms
    /// (used when the bucket is first created).
    #[arg(long, default_value_t = 3000)]
    pub lease_ttl_ms: u64,
}

impl NatsArgs {
    fn config(&self, name: &str) -> Result<ClusterConfig> {
        let Some(url) = &self.nats else {
            bail!("--nats URL (or CONDUIT_NATS) is required");
        };
        Ok(ClusterConfig {
            runner_ttl: Duration::from_millis(self.runner_ttl_ms.max(500)),
            lease_ttl: Duration::from_millis(self.lease_ttl_ms.max(500)),
            ..ClusterConfig::new(url.clone(), name)
        })
    }
}

/// A runner's cluster options (`conduit runner --nats URL`).
#[derive(clap::Args, Debug, Clone)]
pub struct MemberArgs {
    /// Its id in the cluster (default `runner-<gRPC port>`).
    #[arg(long)]
    pub id: Option<String>,
    /// The host others reach it at (default: its listen address's host).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Devices it offers (repeatable; default `cpu`).
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Time between heartbeats, in ms.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_ms: u64,
    /// A module loaded here but no longer placed here is released after
    /// this long without a request, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub release_idle_ms: u64,
    /// Longest drain (SIGTERM or `conduit runner drain`): waiting for its
    /// replicas to load elsewhere and its requests to finish, in ms. Keep a
    /// Kubernetes pod's terminationGracePeriodSeconds above it.
    #[arg(long, default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
}

/// The runner as its membership sees it: load from its data plane, busy
/// fraction from its executors' compute time between two heartbeats.
struct RunnerHost {
    serving: Serving,
    last: Mutex<LastReading>,
}

/// The previous heartbeat's reading, to turn cumulative counters into rates.
struct LastReading {
    at: Instant,
    compute: Duration,
    modules: HashMap<String, Reading>,
}

impl Host for RunnerHost {
    fn load(&self) -> HostLoad {
        let report = self.serving.load_report();
        let mut last = self.last.lock().expect("host lock");
        let elapsed = last.at.elapsed();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let busy = (report.compute.saturating_sub(last.compute).as_secs_f64()
            / (secs * report.instances.max(1) as f64))
            .clamp(0.0, 1.0);
        let mut modules = HashMap::with_capacity(report.modules.len());
        let models = report
            .modules
            .iter()
            .map(|m| {
                let digest = m.digest.to_string();
                let now = Reading {
                    requests: m.requests,
                    busy: m.busy,
                    queued: m.queued,
                };
                let before = last.modules.get(&digest).copied();
                modules.insert(digest.clone(), now);
                model_load(digest, now, before, m.in_flight, m.idle, elapsed)
            })
            .collect();
        *last = LastReading {
            at: Instant::now(),
            compute: report.compute,
            modules,
        };
        HostLoad {
            models,
            queue_depth: report.queue_depth,
            busy,
            in_flight: report.in_flight,
            memory_used: report.memory_used,
            loaded: report.loaded.iter().map(ToString::to_string).collect(),
        }
    }

    fn warm(&self, p: Placement) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let serving = self.serving.clone();
        Box::pin(async move {
            let digest = p.digest.parse().map_err(|e| format!("{e}"))?;
            serving
                .warm_placed(&p.tenant, &digest)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn release(&self, digest: &str) {
        if let Ok(d) = digest.parse() {
            self.serving.release(&d);
        }
    }
}

/// Joins the cluster as a runner serving `grpc`/`http`.
pub fn join(
    nats: &NatsArgs,
    member: &MemberArgs,
    node: &Node,
    grpc: SocketAddr,
    http: SocketAddr,
    memory_total: u64,
) -> Result<Membership> {
    let id = member
        .id
        .clone()
        .unwrap_or_else(|| format!("runner-{}", grpc.port()));
    if !valid_id(&id) {
        bail!("--id `{id}`: use 1-64 letters, digits, `-` or `_`");
    }
    let host = match &member.advertise {
        Some(h) => h.clone(),
        None if grpc.ip().is_unspecified() => {
            bail!("listening on {grpc}: say with --advertise HOST how others reach this runner")
        }
        None => grpc.ip().to_string(),
    };
    let devices = if member.devices.is_empty() {
        vec!["cpu".to_string()]
    } else {
        member.devices.clone()
    };
    let config = MemberConfig {
        id: id.clone(),
        grpc: format!("{host}:{}", grpc.port()),
        http: format!("{host}:{}", http.port()),
        devices,
        memory_total,
        interval: Duration::from_millis(member.heartbeat_ms.max(50)),
        release_idle: Duration::from_millis(member.release_idle_ms),
    };
    let host = Arc::new(RunnerHost {
        serving: node.serving.clone(),
        last: Mutex::new(LastReading {
            at: Instant::now(),
            compute: Duration::ZERO,
            modules: HashMap::new(),
        }),
    });
    println!(
        "  cluster: {} as `{id}`",
        nats.nats.as_deref().unwrap_or("")
    );
    Ok(Membership::start(
        nats.config(&format!("runner {id}"))?,
        config,
        host,
    ))
}

/// `conduit scheduler` options.
#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Its id (unique among schedulers; default `scheduler-<pid>`).
    #[arg(long)]
    pub id: Option<String>,
    /// Replicas per module when its push hint (`conduit push --replicas`) says none.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Prometheus `/metrics` address (runners desired and live, replicas,
    /// scale events).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// The `kubernetes` actuator: the runner StatefulSet it scales (in-cluster
    /// credentials; needs get/patch on that set's `scale` only).
    #[arg(long, requires = "max_runners")]
    pub kube_statefulset: Option<String>,
    /// The StatefulSet's namespace (default: the pod's own).
    #[arg(long, requires = "kube_statefulset")]
    pub kube_namespace: Option<String>,
    #[command(flatten)]
    pub scale: ScaleArgs,
}

/// Autoscaling options (`conduit scheduler`, passed on by `conduit cluster up`).
/// Defaults suit production; tests compress them. See docs/autoscaling.md.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Runner autoscaling: the floor (0 scales to zero runners when nothing is placed).
    #[arg(long, default_value_t = 0)]
    pub min_runners: u32,
    /// Runner autoscaling: the ceiling. Unset: runner autoscaling off.
    #[arg(long)]
    pub max_runners: Option<u32>,
    /// Busy percentage a replica is kept under (a module's --target-busy wins).
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub target_busy: u32,
    /// Queue delay a module's requests are kept under, in ms.
    #[arg(long, default_value_t = 50)]
    pub target_queue_ms: u64,
    /// Most replicas per module (a module's --max-replicas wins).
    #[arg(long, default_value_t = 16)]
    pub max_replicas: u32,
    /// How long over target before a replica is added, in ms.
    #[arg(long, default_value_t = 3_000)]
    pub scale_up_after_ms: u64,
    /// How long under target before a replica is removed, in ms.
    #[arg(long, default_value_t = 60_000)]
    pub scale_down_after_ms: u64,
    /// After a replica change, how long before the next addition, in ms.
    #[arg(long, default_value_t = 5_000)]
    pub scale_up_cooldown_ms: u64,
    /// After a replica change, how long before the next removal, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub scale_down_cooldown_ms: u64,
    /// Most replicas one decision adds.
    #[arg(long, default_value_t = 4)]
    pub max_step_up: u32,
    /// A module with no request this long is scaled to zero, in ms (0: never;
    /// a module's --idle-seconds wins).
    #[arg(long, default_value_t = 600_000)]
    pub idle_after_ms: u64,
    /// Most runners one decision adds.
    #[arg(long, default_value_t = 8)]
    pub runner_max_step_up: u32,
    /// How long runners are in surplus before one is removed (drained), in ms.
    #[arg(long, default_value_t = 120_000)]
    pub runner_down_after_ms: u64,
    /// After a runner change, how long before one is removed, in ms.
    #[arg(long, default_value_t = 60_000)]
    pub runner_down_cooldown_ms: u64,
    /// How long a runner asked for may take to join, in ms.
    #[arg(long, default_value_t = 120_000)]
    pub runner_start_timeout_ms: u64,
    /// Longest a draining runner keeps a replica while its replacement loads, in ms.
    #[arg(long, default_value_t = 20_000)]
    pub handover_ms: u64,
}

impl ScaleArgs {
    fn apply(&self, config: &mut SchedulerConfig) {
        let ms = Duration::from_millis;
        config.replicas = ReplicaPolicy {
            target_busy: f64::from(self.target_busy) / 100.0,
            target_queue: ms(self.target_queue_ms),
            max_replicas: self.max_replicas.max(1),
            up_after: ms(self.scale_up_after_ms),
            down_after: ms(self.scale_down_after_ms),
            up_cooldown: ms(self.scale_up_cooldown_ms),
            down_cooldown: ms(self.scale_down_cooldown_ms),
            max_step_up: self.max_step_up.max(1),
            idle_after: ms(self.idle_after_ms),
        };
        config.runners = self.max_runners.map(|max| RunnerPolicy {
            min: self.min_runners,
            max: max.max(self.min_runners),
            max_step_up: self.runner_max_step_up.max(1),
            down_after: ms(self.runner_down_after_ms),
            down_cooldown: ms(self.runner_down_cooldown_ms),
            start_timeout: ms(self.runner_start_timeout_ms),
        });
        config.handover = ms(self.handover_ms);
    }

    /// The same options as command-line arguments (`cluster up` passes
    /// them on to its schedulers).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![format!("--min-runners={}", self.min_runners)];
        if let Some(max) = self.max_runners {
            a.push(format!("--max-runners={max}"));
        }
        for (name, value) in [
            ("target-busy", u64::from(self.target_busy)),
            ("target-queue-ms", self.target_queue_ms),
            ("max-replicas", u64::from(self.max_replicas)),
            ("scale-up-after-ms", self.scale_up_after_ms),
            ("scale-down-after-ms", self.scale_down_after_ms),
            ("scale-up-cooldown-ms", self.scale_up_cooldown_ms),
            ("scale-down-cooldown-ms", self.scale_down_cooldown_ms),
            ("max-step-up", u64::from(self.max_step_up)),
            ("idle-after-ms", self.idle_after_ms),
            ("runner-max-step-up", u64::from(self.runner_max_step_up)),
            ("runner-down-after-ms", self.runner_down_after_ms),
            ("runner-down-cooldown-ms", self.runner_down_cooldown_ms),
            ("runner-start-timeout-ms", self.runner_start_timeout_ms),
            ("handover-ms", self.handover_ms),
        ] {
            a.push(format!("--{name}={value}"));
        }
        a
    }
}

/// `conduit scheduler`: schedules while it holds the lease, stands by otherwise.
pub async fn scheduler(args: SchedulerArgs) -> Result<()> {
    let id = args
        .id
        .unwrap_or_else(|| format!("scheduler-{}", std::process::id()));
    if !valid_id(&id) {
        bail!("--id `{id}`: use 1-64 letters, digits, `-` or `_`");
    }
    let config = args.nats.config(&format!("scheduler {id}"))?;
    let cluster = connect(config).await?;
    println!("conduit scheduler `{id}` on {}", cluster.config().url);
    let mut scheduler = SchedulerConfig {
        default_replicas: args.replicas.clamp(1, 64),
        ..SchedulerConfig::new(id)
    };
    args.scale.apply(&mut scheduler);
    if let Some(r) = &scheduler.runners {
        println!("  runner autoscaling: {} to {} runners", r.min, r.max);
    }
    let actuator: Option<Arc<dyn Actuator>> = match args.kube_statefulset {
        Some(set) => {
            let a = KubeActuator::in_cluster(args.kube_namespace, set)
                .await
                .map_err(|e| anyhow::anyhow!("the kubernetes actuator: {e}"))?;
            println!("  actuator: kubernetes");
            Some(Arc::new(a))
        }
        None => None,
    };
    let metrics = Arc::new(SchedulerMetrics::default());
    if let Some(addr) = args.metrics_listen {
        let listener = bind(addr).await?;
        println!("  metrics: http://{}/metrics", listener.local_addr()?);
        let m = metrics.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the metrics server stopped");
            }
        });
    }
    conduit_scheduler::scheduler::run(cluster, scheduler, actuator, metrics, shutdown_signal())
        .await;
    println!("conduit stopped");
    Ok(())
}

/// `conduit runner drain ID`: asks a runner to drain and exit; with `wait`,
/// returns once it has left the cluster.
pub async fn drain(nats: NatsArgs, id: String, wait: Option<u64>) -> Result<()> {
    if !valid_id(&id) {
        bail!("runner id `{id}`: use 1-64 letters, digits, `-` or `_`");
    }
    let cluster = Cluster::connect(nats.config("drain")?)
        .await
        .context("cannot reach the cluster")?;
    let view = ClusterView::start(cluster.clone());
    let ask = cluster
        .client()
        .request(drain_subject(&id), bytes::Bytes::from_static(b"drain"));
    match tokio::time::timeout(Duration::from_secs(5), ask).await {
        Ok(Ok(_)) => println!("runner `{id}` is draining"),
        Ok(Err(e)) => bail!(
            "runner `{id}` did not take the drain request ({e}): is it live? see `conduit cluster status`"
        ),
        Err(_) => bail!("runner `{id}` did not answer the drain request within 5 s"),
    }
    let Some(secs) = wait else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen = false;
    while Instant::now() < deadline {
        match view.runner(&id) {
            Some(_) => seen = true,
            None if seen || view.synced() => {
                println!("runner `{id}` drained and left");
                return Ok(());
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("runner `{id}` was still in the cluster after {secs} s")
}

async fn connect(config: ClusterConfig) -> Result<Cluster> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Cluster::connect(config.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "cannot reach NATS yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `conduit gateway` options.
#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// KServe v2 gRPC address (Triton's default port).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// Data directory (its compiled-component cache stays empty: it runs nothing).
    #[arg(long, default_value = ".conduit-gateway")]
    pub data_dir: PathBuf,
    /// Longest wait for a model's placement, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub placement_timeout_ms: u64,
    #[command(flatten)]
    pub plane: PlaneArgs,
}

/// `conduit gateway`: one KServe v2 address in front of the runners.
pub async fn gateway(args: GatewayArgs, conn: Connection) -> Result<()> {
    let key = conn.key()?;
    let node = Node::remote(
        node_config(&args.data_dir, &args.plane)?,
        &conn.registry,
        &key,
        Duration::from_secs(5),
    )?;
    let cluster = connect(args.nats.config("gateway")?).await?;
    let view = ClusterView::start(cluster);
    let gateway = Gateway::new(
        node.serving.clone(),
        view,
        RouteConfig {
            placement_timeout: Duration::from_millis(args.placement_timeout_ms.max(100)),
            max_message_bytes: args.plane.max_response_bytes.saturating_add(1 << 20),
            ..RouteConfig::default()
        },
    );
    let grpc = bind(args.listen).await?;
    let default = SocketAddr::from(([127, 0, 0, 1], 8000));
    let http = bind(args.plane.http_listen.unwrap_or(default)).await?;
    println!("conduit gateway");
    println!("  registry: {}", conn.registry);
    println!("  inference (KServe v2 gRPC): {}", grpc.local_addr()?);
    println!(
        "  inference (KServe v2 HTTP): http://{}",
        http.local_addr()?
    );
    node.wait_linked(Duration::from_secs(5)).await;
    gateway
        .serve(grpc, Some(http), shutdown_signal())
        .await
        .map_err(anyhow::Error::msg)?;
    println!("conduit stopped");
    Ok(())
}

/// `conduit cluster status`: the leader, the runners and the placements.
pub async fn status(nats: NatsArgs, json: bool) -> Result<()> {
    let cluster = Cluster::connect(nats.config("status")?)
        .await
        .context("cannot read the cluster")?;
    let view = ClusterView::start(cluster.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !view.synced() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cluster.leader().await?;
    let runners = view.live_runners();
    let placements = view.placements();
    if json {
        let out = serde_json::json!({
            "leader": leader.map(|l| l.holder),
            "runners": runners,
            "placements": placements,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "leader: {}",
        leader.map_or("none".to_string(), |l| l.holder)
    );
    println!("runners: {}", runners.len());
    for r in &runners {
        println!(
            "  {:<16} grpc {:<21} load {:>6.2} busy {:>4.0}% memory {}/{} MiB loaded {}{}",
            r.id,
            r.grpc,
            r.load(),
            r.busy * 100.0,
            r.memory_used >> 20,
            r.memory_total >> 20,
            r.loaded.len(),
            if r.draining { " draining" } else { "" }
        );
    }
    println!("placements: {}", placements.len());
    for p in &placements {
        println!(
            "  {:<32} {} replicas {} on {}",
            p.module,
            p.digest,
            p.replicas,
            p.runners.join(", ")
        );
    }
    Ok(())
}
