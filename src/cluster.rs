//! The cluster's commands: `conduit scheduler`, `conduit gateway`, the
//! runner's membership (`conduit runner --nats URL`), `conduit cluster
//! status` and `conduit cluster up` (every role as a local process).

use crate::modules::Connection;
use crate::serve::{PlaneArgs, bind, node_config, shutdown_signal};
use anyhow::{Context, Result, bail};
use conduit_gateway::{Gateway, RouteConfig};
use conduit_runner::{Node, Serving};
use conduit_scheduler::{
    Cluster, ClusterConfig, ClusterView, Host, HostLoad, MemberConfig, Membership, Placement,
    SchedulerConfig, valid_id,
};
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
}

/// The runner as its membership sees it: load from its data plane, busy
/// fraction from its executors' compute time between two heartbeats.
struct RunnerHost {
    serving: Serving,
    last: Mutex<(Instant, Duration)>,
}

impl Host for RunnerHost {
    fn load(&self) -> HostLoad {
        let report = self.serving.load_report();
        let mut last = self.last.lock().expect("host lock");
        let (at, compute) = *last;
        let elapsed = at.elapsed().as_secs_f64().max(1e-3);
        let busy = (report.compute.saturating_sub(compute).as_secs_f64()
            / (elapsed * report.instances.max(1) as f64))
            .clamp(0.0, 1.0);
        *last = (Instant::now(), report.compute);
        HostLoad {
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
    };
    let host = Arc::new(RunnerHost {
        serving: node.serving.clone(),
        last: Mutex::new((Instant::now(), Duration::ZERO)),
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
    let scheduler = SchedulerConfig {
        default_replicas: args.replicas.clamp(1, 64),
        ..SchedulerConfig::new(id)
    };
    conduit_scheduler::scheduler::run(cluster, scheduler, shutdown_signal()).await;
    println!("conduit stopped");
    Ok(())
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
