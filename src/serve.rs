//! `conduit registry`, `conduit dev` and `conduit runner`: build a
//! [`Node`] and serve it — the registry alone, the registry with the KServe
//! v2 data plane beside it (gRPC on the registry's port, plus HTTP), or the
//! data plane apart from a registry it reaches over gRPC.

use anyhow::{Context, Result};
use conduit_registry::TenantLimits;
use conduit_runner::{ConnectionLimits, Node, NodeConfig, ServingConfig, ServingLimits};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of the data plane (`dev` and `runner`).
#[derive(clap::Args, Debug)]
pub struct PlaneArgs {
    /// ONNX Runtime shared library (libonnxruntime.so ≥ 1.31); default `$ORT_DYLIB_PATH`.
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// KServe v2 server on this host serving models pushed with `--backend remote`.
    #[arg(long)]
    pub sidecar: Option<String>,
    /// KServe v2 HTTP/REST address (also serves `/metrics`); default
    /// 127.0.0.1:7071 (`dev`), 127.0.0.1:7081 (`runner`).
    #[arg(long, env = "CONDUIT_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Per-tenant data-plane limits (TOML: `[default]`, `[tenants.NAME]`).
    #[arg(long)]
    pub limits: Option<PathBuf>,
    /// Memory all loaded models may take together, in MiB.
    #[arg(long, default_value_t = 8192)]
    pub model_memory_mib: u64,
    /// Largest inference request (gRPC message or HTTP body), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Largest inference answer, in bytes (every output counted in full).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_response_bytes: usize,
    /// Connections open at once on each data-plane listener.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// The bearer key `/metrics` requires (Prometheus `authorization`);
    /// admin tenants' API keys are accepted too. Unset: admin keys only.
    #[arg(long, env = "CONDUIT_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<String>,
}

/// Options of `conduit registry` and `conduit dev`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Data directory (registry database, blobs, compiled-component cache).
    #[arg(long, env = "CONDUIT_DATA_DIR", default_value = ".conduit")]
    pub data_dir: PathBuf,
    /// Control-plane (registry gRPC) address; `dev` serves KServe v2 gRPC on it too.
    #[arg(long, env = "CONDUIT_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Largest single upload a tenant may make, in bytes (default 2 GiB).
    #[arg(long, default_value_t = TenantLimits::default().max_upload_bytes)]
    pub max_upload_bytes: u64,
    /// Bytes a tenant may store in total (default 50 GiB).
    #[arg(long, default_value_t = TenantLimits::default().max_stored_bytes)]
    pub max_stored_bytes: u64,
    #[command(flatten)]
    pub plane: PlaneArgs,
}

/// Options of `conduit runner`.
#[derive(clap::Args, Debug)]
pub struct RunnerArgs {
    /// Data directory (pulled modules, compiled-component cache).
    #[arg(long, env = "CONDUIT_DATA_DIR", default_value = ".conduit-runner")]
    pub data_dir: PathBuf,
    /// KServe v2 gRPC address.
    #[arg(long, env = "CONDUIT_LISTEN", default_value = "127.0.0.1:7080")]
    pub listen: SocketAddr,
    /// How long one registry call may take, in seconds.
    #[arg(long, default_value_t = 5)]
    pub registry_timeout: u64,
    #[command(flatten)]
    pub plane: PlaneArgs,
    #[command(flatten)]
    pub nats: crate::cluster::NatsArgs,
    #[command(flatten)]
    pub member: crate::cluster::MemberArgs,
}

/// Where `conduit dev` keeps the admin key of its own data directory.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.key")
}

pub fn node_config(data_dir: &Path, plane: &PlaneArgs) -> Result<NodeConfig> {
    let limits = match &plane.limits {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            ServingLimits::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => ServingLimits::default(),
    };
    Ok(NodeConfig {
        serving: ServingConfig {
            limits,
            model_memory_budget: plane.model_memory_mib << 20,
            max_request_bytes: plane.max_request_bytes,
            max_response_bytes: plane.max_response_bytes,
            connections: ConnectionLimits {
                max_connections: plane.max_connections,
                ..ConnectionLimits::default()
            },
            metrics_key: plane.metrics_key.clone(),
        },
        ort_library: plane.ort_library.clone(),
        sidecar: plane.sidecar.clone(),
        ..NodeConfig::new(data_dir)
    })
}

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves until Ctrl-C or SIGTERM. `dev` also keeps the bootstrap admin key
/// in the data directory (mode 0600) so local tools can pick it up.
pub async fn serve(args: ServeArgs, dev: bool) -> Result<()> {
    let node = Node::local(
        node_config(&args.data_dir, &args.plane)?,
        TenantLimits {
            max_upload_bytes: args.max_upload_bytes,
            max_stored_bytes: args.max_stored_bytes,
        },
    )
    .with_context(|| format!("cannot open the registry in {}", args.data_dir.display()))?;
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let http = if dev {
        let default = SocketAddr::from(([127, 0, 0, 1], 7071));
        Some(bind(args.plane.http_listen.unwrap_or(default)).await?)
    } else {
        None
    };
    let key_file = dev_key_path(&args.data_dir);
    println!(
        "conduit {} serving {}",
        if dev { "dev" } else { "registry" },
        args.data_dir.display()
    );
    println!("  registry (gRPC): http://{addr}");
    if let Some(l) = &http {
        println!("  inference (KServe v2 gRPC): {addr}");
        println!("  inference (KServe v2 HTTP): http://{}", l.local_addr()?);
        println!("  metrics: http://{}/metrics", l.local_addr()?);
    }
    match &node.bootstrap {
        Some(b) => {
            // Written before the key is printed: whoever reads the key line
            // can rely on the file.
            if dev {
                write_private(&key_file, &b.api_key)?;
            }
            println!(
                "  admin tenant `{}` created; its API key (shown once):",
                b.tenant
            );
            println!("    export CONDUIT_API_KEY={}", b.api_key);
            if dev {
                println!("  (kept in {} for local tools)", key_file.display());
            }
        }
        None if dev && key_file.exists() => {
            println!("  admin API key: in {}", key_file.display());
        }
        None => {}
    }
    if dev {
        node.serve(listener, http, shutdown_signal()).await?;
    } else {
        node.serve_registry(listener, shutdown_signal()).await?;
    }
    println!("conduit stopped");
    Ok(())
}

/// `conduit runner`: the data plane apart from the registry at
/// `conn.registry`, pulling modules with each tenant's own key; `conn`'s key
/// (any tenant's) opens the registry's change watch.
pub async fn runner(args: RunnerArgs, conn: crate::modules::Connection) -> Result<()> {
    let key = conn.key()?;
    let node = Node::remote(
        node_config(&args.data_dir, &args.plane)?,
        &conn.registry,
        &key,
        Duration::from_secs(args.registry_timeout.max(1)),
    )?;
    let listener = bind(args.listen).await?;
    let default = SocketAddr::from(([127, 0, 0, 1], 7081));
    let http = bind(args.plane.http_listen.unwrap_or(default)).await?;
    println!("conduit runner serving {}", args.data_dir.display());
    println!("  registry: {}", conn.registry);
    println!("  inference (KServe v2 gRPC): {}", listener.local_addr()?);
    println!(
        "  inference (KServe v2 HTTP): http://{}",
        http.local_addr()?
    );
    println!("  metrics: http://{}/metrics", http.local_addr()?);
    let membership = match &args.nats.nats {
        Some(_) => Some(crate::cluster::join(
            &args.nats,
            &args.member,
            &node,
            listener.local_addr()?,
            http.local_addr()?,
            args.plane.model_memory_mib << 20,
        )?),
        None => None,
    };
    if !node.wait_linked(Duration::from_secs(5)).await {
        println!(
            "  registry not reachable yet: serving what {} has cached; retrying",
            args.data_dir.display()
        );
    }
    // SIGTERM (or `conduit runner drain ID`) drains: no new placements
    // here, the replicas loaded elsewhere first, requests in flight done;
    // then the record goes (gateways stop routing here) and the servers
    // stop, letting anything still in flight finish.
    let (left_tx, left_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = node.serving.clone();
    let drain_timeout = Duration::from_millis(args.member.drain_timeout_ms);
    let stop = async move {
        match &membership {
            Some(m) => {
                tokio::select! {
                    () = shutdown_signal() => {}
                    () = m.drain_requested() => {}
                }
                println!("  draining (at most {drain_timeout:?})");
                let started = std::time::Instant::now();
                let idle = || serving.load_report().in_flight == 0;
                // A second Ctrl-C / SIGTERM stops at once (requests in
                // flight still finish).
                tokio::select! {
                    drained = m.drain(drain_timeout, idle) => {
                        if drained {
                            println!("  drained in {:?}", started.elapsed());
                        } else {
                            println!("  drain timed out after {drain_timeout:?}; stopping anyway");
                        }
                    }
                    () = shutdown_signal() => println!("  asked again: stopping without draining"),
                }
            }
            None => shutdown_signal().await,
        }
        if let Some(m) = membership {
            m.leave().await;
        }
        let _ = left_tx.send(());
    };
    tokio::spawn(stop);
    node.serve(listener, Some(http), async move {
        let _ = left_rx.await;
    })
    .await?;
    println!("conduit stopped");
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{contents}")?;
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
