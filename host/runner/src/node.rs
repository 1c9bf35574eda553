//! One runner node, assembled once: the sandbox runtime, the model backends,
//! a module source and the data plane over them, served over KServe v2 gRPC
//! and HTTP. `conduit dev`, `conduit registry`, `conduit runner`, the tests
//! and the bench all build their nodes here.

use super::grpc::InferenceService;
use super::session_grpc::SessionService;
use super::{
    HoldGuardLayer, ModuleSource, RemoteSource, RemoteSourceConfig, Serving, ServingConfig,
    accept_limited, incoming, serve_http,
};
use crate::RuntimeValidator;
use conduit_executor::Backends;
use conduit_registry::{
    Bootstrap, Registry, RegistryConfig, RegistryError, RegistryService, TenantLimits,
};
use conduit_runtime::{EngineConfig, Runtime, RuntimeConfig, RuntimeError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How a node is configured.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory: `registry/` (in process), `cache/` (compiled
    /// components), `blobs/` (a remote registry's modules).
    pub data_dir: PathBuf,
    /// The sandbox's settings.
    pub engine: EngineConfig,
    /// The data plane's settings.
    pub serving: ServingConfig,
    /// ONNX Runtime's shared library (default `$ORT_DYLIB_PATH`).
    pub ort_library: Option<PathBuf>,
    /// A KServe v2 server serving models pushed with `--backend remote`.
    pub sidecar: Option<String>,
}

impl NodeConfig {
    /// Defaults over `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            engine: EngineConfig::default(),
            serving: ServingConfig::default(),
            ort_library: None,
            sidecar: None,
        }
    }
}

/// Why a node could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory or a listener failed.
    #[error("{0}")]
    Io(String),
    /// The sandbox could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The registry could not be opened or reached.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The gRPC transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A runner node: its data plane and what it is made of.
#[derive(Debug, Clone)]
pub struct Node {
    /// The data plane.
    pub serving: Serving,
    /// The sandbox components run in.
    pub runtime: Runtime,
    /// The model backends.
    pub backends: Backends,
    /// The registry, when it runs in this process (`conduit dev`).
    pub registry: Option<Registry>,
    /// A fresh registry's admin tenant and key (shown once).
    pub bootstrap: Option<Bootstrap>,
    remote: Option<Arc<RemoteSource>>,
}

impl Node {
    /// A node with the registry in process, in `config.data_dir/registry`
    /// (created with an admin tenant when empty), its uploads validated by
    /// this node's runtime.
    ///
    /// # Errors
    /// [`NodeError`] when the directory, runtime or registry cannot open.
    pub fn local(config: NodeConfig, limits: TenantLimits) -> Result<Self, NodeError> {
        let (runtime, backends) = parts(&config)?;
        let (registry, bootstrap) = Registry::open(
            RegistryConfig {
                root: config.data_dir.join("registry"),
                default_limits: limits,
            },
            Arc::new(RuntimeValidator::new(runtime.clone(), backends.clone())),
        )?;
        let source: Arc<dyn ModuleSource> = Arc::new(registry.clone());
        Ok(Self {
            serving: Serving::new(source, runtime.clone(), backends.clone(), config.serving),
            runtime,
            backends,
            registry: Some(registry),
            bootstrap,
            remote: None,
        })
    }

    /// A node apart from its registry (`conduit runner --registry URL`):
    /// modules are pulled by digest into `config.data_dir/blobs` and served
    /// from there while the registry is down. Starts the registry watch in
    /// the current tokio runtime and returns without waiting for the link.
    ///
    /// # Errors
    /// [`NodeError`] for a bad URL or key, or when the runtime cannot start.
    pub fn remote(
        config: NodeConfig,
        url: &str,
        api_key: &str,
        timeout: Duration,
    ) -> Result<Self, NodeError> {
        let (runtime, backends) = parts(&config)?;
        let remote = Arc::new(RemoteSource::start(RemoteSourceConfig {
            url: url.to_string(),
            api_key: api_key.to_string(),
            blob_dir: config.data_dir.join("blobs"),
            timeout,
        })?);
        let source: Arc<dyn ModuleSource> = remote.clone();
        Ok(Self {
            serving: Serving::new(source, runtime.clone(), backends.clone(), config.serving),
            runtime,
            backends,
            registry: None,
            bootstrap: None,
            remote: Some(remote),
        })
    }

    /// Waits up to `timeout` for a remote registry's link (at once for a
    /// registry in process); whether it is up.
    pub async fn wait_linked(&self, timeout: Duration) -> bool {
        match &self.remote {
            Some(r) => r.wait_linked(timeout).await,
            None => true,
        }
    }

    /// Serves until `shutdown` completes: KServe v2 gRPC on `grpc` (with the
    /// registry's service beside it when the registry is in process) and,
    /// given a listener, KServe v2 HTTP and `/metrics` on `http`.
    ///
    /// # Errors
    /// [`NodeError::Transport`] or [`NodeError::Io`] when a server fails.
    pub async fn serve(
        &self,
        grpc: TcpListener,
        http: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let max = self.serving.config().connections.max_connections;
        let grpc = tonic::transport::Server::builder()
            // Dead peers are found by keep-alive pings; a tenant's permit
            // lasts until its answer is sent (HoldGuardLayer).
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // A client's broken framing or undecodable message answers
            // INVALID_ARGUMENT (tonic says INTERNAL, which we keep for our
            // own failures); every status message is capped.
            .layer(conduit_proto::ClientFaultLayer)
            .layer(HoldGuardLayer)
            .add_optional_service(
                self.registry
                    .clone()
                    .map(|r| RegistryService::new(r).into_server()),
            )
            .add_service(InferenceService::new(self.serving.clone()).into_server())
            .add_service(SessionService::new(self.serving.clone()).into_server())
            .serve_with_incoming_shutdown(
                incoming(accept_limited(grpc, max)),
                stopped(stop_rx.clone()),
            );
        let rest = async {
            match http {
                Some(l) => serve_http(l, self.serving.clone(), stopped(stop_rx))
                    .await
                    .map_err(|e| NodeError::Io(format!("HTTP server: {e}"))),
                None => Ok(()),
            }
        };
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        // Sessions whose lease ran out are dropped with their values.
        let sessions = self.serving.sessions().clone();
        let sweep = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                sessions.sweep();
            }
        });
        let (grpc, rest, ()) = tokio::join!(grpc, rest, signal);
        sweep.abort();
        grpc?;
        rest
    }

    /// Serves the registry alone (`conduit registry`) until `shutdown`.
    ///
    /// # Errors
    /// [`NodeError::Io`] for a node without a registry in process;
    /// [`NodeError::Transport`] when the server fails.
    pub async fn serve_registry(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), NodeError> {
        let registry = self
            .registry
            .clone()
            .ok_or_else(|| NodeError::Io("this node has no registry in process".into()))?;
        Ok(conduit_registry::serve(registry, listener, shutdown).await?)
    }
}

fn parts(config: &NodeConfig) -> Result<(Runtime, Backends), NodeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        NodeError::Io(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let runtime = Runtime::new(RuntimeConfig {
        engine: config.engine.clone(),
        cache_dir: Some(config.data_dir.join("cache")),
    })?;
    let backends = Backends::detect(config.ort_library.clone());
    let backends = match &config.sidecar {
        Some(url) => backends.with_remote(url.clone()),
        None => backends,
    };
    Ok((runtime, backends))
}
