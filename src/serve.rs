//! `conduit registry` and `conduit dev`: open the data directory, wire the
//! runtime's validator into the registry, serve the control plane — and for
//! `dev`, the KServe v2 data plane (gRPC beside the registry, plus HTTP).

use anyhow::{Context, Result};
use conduit_host::executor::Backends;
use conduit_host::serving::{
    ConnectionLimits, HoldGuardLayer, Serving, ServingConfig, ServingLimits, grpc::InferenceService,
};
use conduit_host::{EngineConfig, Runtime, RuntimeConfig, RuntimeValidator};
use conduit_registry::{Registry, RegistryConfig, RegistryService, TenantLimits};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options shared by the serving subcommands.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Data directory (registry database, blobs, compiled-component cache).
    #[arg(long, env = "CONDUIT_DATA_DIR", default_value = ".conduit")]
    pub data_dir: PathBuf,
    /// Control-plane (registry gRPC) address.
    #[arg(long, env = "CONDUIT_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Largest single upload a tenant may make, in bytes (default 2 GiB).
    #[arg(long, default_value_t = TenantLimits::default().max_upload_bytes)]
    pub max_upload_bytes: u64,
    /// ONNX Runtime shared library (libonnxruntime.so ≥ 1.31); default `$ORT_DYLIB_PATH`.
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// KServe v2 server on this host serving models pushed with `--backend remote`.
    #[arg(long)]
    pub sidecar: Option<String>,
    /// Bytes a tenant may store in total (default 50 GiB).
    #[arg(long, default_value_t = TenantLimits::default().max_stored_bytes)]
    pub max_stored_bytes: u64,
    /// `dev`: KServe v2 HTTP/REST address (also serves `/metrics`).
    #[arg(long, env = "CONDUIT_HTTP_LISTEN", default_value = "127.0.0.1:7071")]
    pub http_listen: SocketAddr,
    /// `dev`: per-tenant data-plane limits (TOML: `[default]`, `[tenants.NAME]`).
    #[arg(long)]
    pub limits: Option<PathBuf>,
    /// `dev`: memory all loaded models may take together, in MiB.
    #[arg(long, default_value_t = 8192)]
    pub model_memory_mib: u64,
    /// `dev`: largest inference request (gRPC message or HTTP body), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// `dev`: largest inference answer, in bytes (every output counted in full).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_response_bytes: usize,
    /// `dev`: connections open at once on each data-plane listener.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// `dev`: the bearer key `/metrics` requires (Prometheus `authorization`);
    /// admin tenants' API keys are accepted too. Unset: admin keys only.
    #[arg(long, env = "CONDUIT_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<String>,
}

/// Where `conduit dev` keeps the admin key of its own data directory.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.key")
}

/// Serves until Ctrl-C or SIGTERM. `dev` also keeps the bootstrap admin key
/// in the data directory (mode 0600) so local tools can pick it up.
pub async fn serve(args: ServeArgs, dev: bool) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        engine: EngineConfig::default(),
        cache_dir: Some(args.data_dir.join("cache")),
    })?;
    let config = RegistryConfig {
        root: args.data_dir.join("registry"),
        default_limits: TenantLimits {
            max_upload_bytes: args.max_upload_bytes,
            max_stored_bytes: args.max_stored_bytes,
        },
    };
    let limits = match &args.limits {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            ServingLimits::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => ServingLimits::default(),
    };
    let backends = backends(&args);
    let (registry, bootstrap) = Registry::open(
        config,
        Arc::new(RuntimeValidator::new(runtime.clone(), backends.clone())),
    )
    .with_context(|| format!("cannot open the registry in {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let http = if dev {
        let l = tokio::net::TcpListener::bind(args.http_listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.http_listen))?;
        Some(l)
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
    match bootstrap {
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
    let Some(http) = http else {
        conduit_registry::serve(registry, listener, shutdown_signal()).await?;
        println!("conduit stopped");
        return Ok(());
    };
    let serving = Serving::new(
        registry.clone(),
        runtime,
        backends,
        ServingConfig {
            limits,
            model_memory_budget: args.model_memory_mib << 20,
            max_request_bytes: args.max_request_bytes,
            max_response_bytes: args.max_response_bytes,
            connections: ConnectionLimits {
                max_connections: args.max_connections,
                ..ConnectionLimits::default()
            },
            metrics_key: args.metrics_key.clone(),
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let connections = serving.config().connections;
    let grpc = tonic::transport::Server::builder()
        // Dead peers are found by keep-alive pings; a tenant's permit lasts
        // until its answer is sent (HoldGuardLayer).
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .layer(HoldGuardLayer)
        .add_service(RegistryService::new(registry).into_server())
        .add_service(InferenceService::new(serving.clone()).into_server())
        .serve_with_incoming_shutdown(
            conduit_host::serving::incoming(conduit_host::serving::accept_limited(
                listener,
                connections.max_connections,
            )),
            stopped(stop_rx.clone()),
        );
    let rest = conduit_host::serving::serve_http(http, serving, stopped(stop_rx));
    let signal = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let (grpc, rest, ()) = tokio::join!(grpc, rest, signal);
    grpc?;
    rest?;
    println!("conduit stopped");
    Ok(())
}

fn backends(args: &ServeArgs) -> Backends {
    let b = Backends::detect(args.ort_library.clone());
    match &args.sidecar {
        Some(url) => b.with_remote(url.clone()),
        None => b,
    }
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

async fn shutdown_signal() {
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
