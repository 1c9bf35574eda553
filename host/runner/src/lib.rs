//! The runner: what serves KServe v2 / Triton clients, assembled over the
//! sandbox (`conduit-runtime`), the model executors (`conduit-executor`) and
//! a module source (the registry in process, or over gRPC).
//!
//! - [`Node`] builds a runner (the CLI, the tests and the bench all use it);
//!   [`ModuleSource`] is the registry seam, [`RemoteSource`] its gRPC side.
//! - [`Catalog`] turns references into loaded components;
//!   [`RuntimeValidator`] is how the registry validates pushes.
//!
//! [`Serving`] turns `(tenant, model name, version)` into something that
//! runs — a model through its executor's batch queue, a component in the
//! sandbox, or a pipeline of both ([`engine`]) — with per-tenant limits and
//! Triton-style counters ([`Metrics`]). The gRPC ([`grpc`]) and HTTP
//! ([`http`]) front ends only translate; errors become statuses in one
//! place ([`ServeError`]).

mod catalog;
mod encoding;
mod engine;
mod error;
mod generational;
pub mod grpc;
mod held;
pub mod http;
mod json;
mod limits;
mod listen;
mod metrics;
mod node;
mod remote_source;
mod source;
mod validator;
pub mod wire;

pub use catalog::{Catalog, CatalogError};
pub use error::{ServeError, StatusClass};
use generational::Generational;
pub use held::{HeldBody, HoldGuard, HoldGuardLayer};
pub use limits::{ServingLimits, TenantServing};
pub use listen::{ConnectionLimits, Limited, accept_limited, incoming, serve_http};
pub use metrics::{Metrics, ModelCounters, ModelKey, RequestTiming};
pub use node::{Node, NodeConfig, NodeError};
pub use remote_source::{RemoteSource, RemoteSourceConfig};
pub use source::{ModuleSource, SourceFuture};
pub use validator::{RuntimeValidator, registry_signature};

use conduit_executor::{Backends, Executor, ModelCache};
use conduit_registry::{Kind, ListQuery, Manifest, PipelineDef, Tenant};
use conduit_runtime::{Component, Param, ParamValue, Runtime};
use conduit_types::{DataType, Digest, NamedTensors, Signature, TensorSpec};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// The KServe v2 / Triton protocol extensions served.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "parameters",
    "statistics",
];

/// How the data plane is configured.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// Per-tenant limits.
    pub limits: ServingLimits,
    /// Estimated memory all loaded models may take together, in bytes.
    pub model_memory_budget: u64,
    /// Largest request body (gRPC message or HTTP body), in bytes.
    pub max_request_bytes: usize,
    /// Largest answer, in bytes: every output counted in full (views that
    /// share storage and passed-through inputs too), checked before encoding;
    /// the HTTP JSON form is also capped while it is written.
    pub max_response_bytes: usize,
    /// Connection limits and timeouts of the front ends.
    pub connections: ConnectionLimits,
    /// A bearer key that may read `/metrics` (besides admin tenants' keys).
    /// `/metrics` names every tenant's models: it is never public.
    pub metrics_key: Option<String>,
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            limits: ServingLimits::default(),
            model_memory_budget: 8 << 30,
            max_request_bytes: 64 << 20,
            max_response_bytes: 64 << 20,
            connections: ConnectionLimits::default(),
            metrics_key: None,
        }
    }
}

/// One inference request, decoded by a front end.
#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    /// Model (or pipeline, or component) name.
    pub model: String,
    /// Version, tag or digest; empty: `latest`.
    pub version: String,
    /// The client's request id, echoed back.
    pub id: String,
    /// Input tensors.
    pub inputs: NamedTensors,
    /// Request parameters. For a pipeline, `step.param` goes to that step.
    pub params: Vec<Param>,
    /// Outputs to return; empty: all.
    pub outputs: Vec<String>,
    /// A client deadline shorter than the tenant's, if any.
    pub timeout: Option<Duration>,
    /// Time the front end spent decoding the request.
    pub decode: Duration,
    /// When the front end received it.
    pub received: Option<Instant>,
}

/// The answer to an [`InferRequest`].
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// Model name.
    pub model: String,
    /// The version that ran.
    pub version: String,
    /// The request id.
    pub id: String,
    /// Output tensors, in the signature's order.
    pub outputs: NamedTensors,
    /// Response parameters: `conduit.digest` (what ran) and, for a pipeline,
    /// `conduit.step.<name>` for every step (provenance).
    pub params: Vec<(String, String)>,
    /// Time spent in models and components.
    pub compute: Duration,
    /// The tenant's concurrency permit: a front end keeps it until the
    /// answer's last byte is sent, so slow readers count against the limit.
    pub guard: Option<RequestGuard>,
}

/// Holds one of a tenant's concurrent-request permits until dropped.
#[derive(Debug, Clone)]
pub struct RequestGuard(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// A model version as the repository extension lists it.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is unavailable.
    pub reason: String,
}

/// The data plane of one runner. Cheap to clone.
#[derive(Clone)]
pub struct Serving {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn ModuleSource>,
    runtime: Runtime,
    backends: Backends,
    models: ModelCache,
    pipelines: Mutex<HashMap<Digest, Arc<PipelineDef>>>,
    metrics: Metrics,
    config: ServingConfig,
    admission: Mutex<HashMap<String, Arc<Semaphore>>>,
    unloaded: RwLock<HashSet<(String, String)>>,
    /// Tenants using each loaded executor (by [`executor_key`]).
    model_users: Mutex<HashMap<Digest, HashSet<String>>>,
    /// (tenant, name, version) → manifest, valid while the source's
    /// generation is unchanged (also (tenant, "", reference)).
    resolved: Generational<(String, String, String), Manifest>,
    /// (tenant, name prefix) → every matching manifest, likewise.
    listed: Generational<(String, String), Arc<Vec<Manifest>>>,
    /// blake3(API key) → tenant, likewise.
    keys: Generational<[u8; 32], Tenant>,
    /// Calls made to the source (resolutions, listings, blobs, keys).
    source_reads: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A resolved target plus its metrics key.
struct Target {
    manifest: Manifest,
    key: ModelKey,
}

impl Serving {
    /// A data plane over the modules `source` names, running components in
    /// `runtime` and models in `backends`.
    pub fn new(
        source: Arc<dyn ModuleSource>,
        runtime: Runtime,
        backends: Backends,
        config: ServingConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                models: ModelCache::new(config.model_memory_budget),
                source,
                runtime,
                backends,
                pipelines: Mutex::default(),
                metrics: Metrics::default(),
                config,
                admission: Mutex::default(),
                unloaded: RwLock::default(),
                model_users: Mutex::default(),
                // A tenant can ask for any number of names: bounded.
                resolved: Generational::new(4096),
                listed: Generational::new(256),
                keys: Generational::new(4096),
                source_reads: Default::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServingConfig {
        &self.inner.config
    }

    /// Whether this runner can serve (readiness): its module source is
    /// linked and every loaded executor is healthy.
    ///
    /// # Errors
    /// Why not, in words.
    pub fn health(&self) -> Result<(), String> {
        self.inner.source.link()?;
        for executor in self.inner.models.executors() {
            executor.health().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The module source, for a read (counted).
    fn read(&self) -> &dyn ModuleSource {
        self.inner
            .source_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &*self.inner.source
    }

    /// Calls made to the module source so far: resolutions, listings, blob
    /// fetches, key checks. A warm, pinned pipeline makes none per request.
    pub fn source_reads(&self) -> u64 {
        self.inner
            .source_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The tenant an `authorization` header value (`Bearer <key>`) names.
    ///
    /// # Errors
    /// [`ServeError::Unauthenticated`] for a missing, malformed or unknown key.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Tenant, ServeError> {
        let key = conduit_registry::bearer_key(authorization)?;
        // Keys are checked with the source once per generation (a rotated
        // key moves it), then from here: no registry read per request.
        let hash = *blake3::hash(key.as_bytes()).as_bytes();
        let generation = self.inner.source.generation();
        let tenant = self
            .inner
            .keys
            .get_or_try(generation, hash, async {
                self.read().authenticate(key).await
            })
            .await?;
        Ok(tenant)
    }

    /// Whether an `authorization` header may read `/metrics`: the configured
    /// metrics key, or the API key of an admin tenant.
    ///
    /// # Errors
    /// [`ServeError::Unauthenticated`] otherwise (a tenant key included:
    /// the metrics name every tenant's models).
    pub async fn authorize_metrics(&self, authorization: Option<&str>) -> Result<(), ServeError> {
        let refused = || {
            ServeError::Unauthenticated(
                "/metrics needs `authorization: Bearer <key>` with the metrics key or an admin \
                 tenant's API key"
                    .into(),
            )
        };
        let key = conduit_registry::bearer_key(authorization).map_err(|_| refused())?;
        if let Some(expected) = &self.inner.config.metrics_key {
            let (a, b) = (
                blake3::hash(key.as_bytes()),
                blake3::hash(expected.as_bytes()),
            );
            // blake3::Hash compares in constant time.
            if a == b {
                return Ok(());
            }
        }
        match self.authenticate(authorization).await {
            Ok(tenant) if tenant.admin => Ok(()),
            _ => Err(refused()),
        }
    }

    /// What `name` at `version` (a version, tag, digest, or empty for
    /// `latest`) is for `tenant`.
    ///
    /// # Errors
    /// [`ServeError::NotFound`] when it does not exist for this tenant.
    pub async fn resolve(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<Manifest, ServeError> {
        if name.is_empty() {
            return Err(ServeError::InvalidInput("a model name is required".into()));
        }
        let key = (tenant.name.clone(), name.to_string(), version.to_string());
        self.cached(key, self.resolve_uncached(tenant, name, version))
            .await
    }

    /// What a reference (`name`, `name@version`, `name:tag`, a digest)
    /// resolves to for `tenant`: a pipeline's steps, a component's
    /// `model.infer`. Cached like [`Serving::resolve`].
    ///
    /// # Errors
    /// As the source reports them.
    pub async fn resolve_reference_cached(
        &self,
        tenant: &Tenant,
        reference: &str,
    ) -> Result<Manifest, ServeError> {
        // An empty name never reaches the cache through `resolve`: no clash.
        let key = (tenant.name.clone(), String::new(), reference.to_string());
        self.cached(key, async {
            Ok(self.read().resolve(tenant, reference).await?)
        })
        .await
    }

    /// The source is read (and the manifest parsed) once per reference and
    /// source generation, not on every request.
    async fn cached(
        &self,
        key: (String, String, String),
        resolve: impl std::future::Future<Output = Result<Manifest, ServeError>>,
    ) -> Result<Manifest, ServeError> {
        let generation = self.inner.source.generation();
        self.inner
            .resolved
            .get_or_try(generation, key, resolve)
            .await
    }

    async fn resolve_uncached(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<Manifest, ServeError> {
        if let Some(prefix) = triton_version(version) {
            // Triton numbers versions 1, 2, 3…; Conduit's are semver. `N`
            // (or `N.M`) names the highest release `N.x.y` (`N.M.y`).
            let releases = self.versions(tenant, name).await?;
            let best = releases.iter().rev().find(|m| {
                semver::Version::parse(&m.version).is_ok_and(|v| {
                    v.pre.is_empty()
                        && v.major == prefix.0
                        && prefix.1.is_none_or(|minor| v.minor == minor)
                })
            });
            if let Some(m) = best {
                return Ok(m.clone());
            }
            // A tag may be spelled like a number.
            return self
                .resolve_reference(tenant, name, version)
                .await
                .map_err(|e| match e {
                    ServeError::NotFound(_) => ServeError::NotFound(format!(
                        "model `{name}` version `{version}` not found: Conduit versions are semver \
                     or tags, and a Triton-style number `{version}` names the highest release \
                     {version}.x; `{name}` has {}",
                        if releases.is_empty() {
                            "no versions".to_string()
                        } else {
                            releases
                                .iter()
                                .map(|m| m.version.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )),
                    other => other,
                });
        }
        self.resolve_reference(tenant, name, version).await
    }

    async fn resolve_reference(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<Manifest, ServeError> {
        let manifest = self
            .read()
            .resolve_in_module(tenant, name, version)
            .await
            .map_err(|e| match e {
                conduit_registry::RegistryError::NotFound(_)
                | conduit_registry::RegistryError::InvalidArgument(_) => {
                    ServeError::NotFound(if version.is_empty() {
                        format!("model `{name}` not found")
                    } else {
                        format!("model `{name}` version `{version}` not found")
                    })
                }
                other => other.into(),
            })?;
        if manifest.name != name {
            return Err(ServeError::NotFound(format!(
                "{version} is `{}`, not model `{name}`",
                manifest.name
            )));
        }
        Ok(manifest)
    }

    async fn target(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<Target, ServeError> {
        let manifest = self.resolve(tenant, name, version).await?;
        if self.is_unloaded(&tenant.name, name) {
            return Err(ServeError::Unavailable(format!(
                "model `{name}` is unloaded; load it (RepositoryModelLoad) to serve it again"
            )));
        }
        let key = ModelKey {
            tenant: tenant.name.clone(),
            model: manifest.name.clone(),
            version: manifest.version.clone(),
        };
        Ok(Target { manifest, key })
    }

    fn is_unloaded(&self, tenant: &str, name: &str) -> bool {
        self.inner
            .unloaded
            .read()
            .expect("unloaded lock")
            .contains(&(tenant.to_string(), name.to_string()))
    }

    /// Whether `name` at `version` can serve now.
    ///
    /// # Errors
    /// [`ServeError::NotFound`] when it does not exist.
    pub async fn ready(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<bool, ServeError> {
        self.resolve(tenant, name, version).await?;
        Ok(!self.is_unloaded(&tenant.name, name))
    }

    /// Runs one inference request for `tenant`.
    ///
    /// # Errors
    /// Any [`ServeError`]; failures are counted by reason.
    pub async fn infer(
        &self,
        tenant: &Tenant,
        request: InferRequest,
    ) -> Result<InferResponse, ServeError> {
        // One span per request (its steps and executor batches nest in it):
        // what an OpenTelemetry layer exports as the request's trace.
        let span = tracing::info_span!(
            "infer",
            tenant = %tenant.name,
            model = %request.model,
            id = %request.id,
            version = tracing::field::Empty,
            digest = tracing::field::Empty,
        );
        self.infer_in_span(tenant, request, &span)
            .instrument(span.clone())
            .await
    }

    async fn infer_in_span(
        &self,
        tenant: &Tenant,
        request: InferRequest,
        span: &tracing::Span,
    ) -> Result<InferResponse, ServeError> {
        let started = request.received.unwrap_or_else(Instant::now);
        let target = match self.target(tenant, &request.model, &request.version).await {
            Ok(t) => t,
            Err(e) => {
                // An unknown name gets no series of its own: clients must
                // not be able to grow /metrics at will.
                let model = match e {
                    ServeError::NotFound(_) => "",
                    _ => request.model.as_str(),
                };
                self.inner.metrics.rejected(&tenant.name, model, e.reason());
                log_failure(&tenant.name, &request.model, "infer", &e);
                return Err(e);
            }
        };
        span.record("version", target.manifest.version.as_str());
        span.record("digest", tracing::field::display(&target.manifest.digest));
        let metrics = &self.inner.metrics;
        metrics.begin(&target.key);
        let result = self.infer_target(tenant, &target, request).await;
        match result {
            Ok((response, timing, rows, executions)) => {
                metrics.success(&target.key, rows, executions, started.elapsed(), timing);
                Ok(response)
            }
            Err(e) => {
                metrics.failure(&target.key, e.reason(), started.elapsed());
                log_failure(&tenant.name, &target.key.model, "infer", &e);
                Err(e)
            }
        }
    }

    /// Counts (and logs, once) a request that failed before it could run:
    /// it could not be decoded, or its body was too large. Counted as a
    /// failure of the model it names when that exists for `tenant`, with
    /// reason `decode` for a malformed request.
    pub async fn decode_failed(
        &self,
        tenant: &Tenant,
        model: &str,
        version: &str,
        error: &ServeError,
    ) {
        let reason = match error {
            ServeError::InvalidInput(_) => "decode",
            e => e.reason(),
        };
        match self.resolve(tenant, model, version).await {
            Ok(m) => {
                let key = ModelKey {
                    tenant: tenant.name.clone(),
                    model: m.name,
                    version: m.version,
                };
                self.inner.metrics.refused(&key, reason, Duration::ZERO);
            }
            Err(_) => self.inner.metrics.rejected(&tenant.name, "", reason),
        }
        log_failure(&tenant.name, model, "decode", error);
    }

    async fn infer_target(
        &self,
        tenant: &Tenant,
        target: &Target,
        request: InferRequest,
    ) -> Result<(InferResponse, RequestTiming, u64, u64), ServeError> {
        let limits = self.inner.config.limits.of(&tenant.name);
        let waited = Instant::now();
        let guard = RequestGuard(Arc::new(
            self.admit(&tenant.name, limits.max_concurrent_requests)?,
        ));
        let mut deadline = limits.request_deadline();
        if let Some(t) = request.timeout {
            deadline = deadline.min(t);
        }
        let deadline = Instant::now() + deadline;
        let manifest = &target.manifest;
        let signature = host_signature(&manifest.signature)?;
        check_request(&manifest.name, &signature, &request.inputs)?;
        for wanted in &request.outputs {
            if !signature.outputs.iter().any(|o| &o.name == wanted) {
                return Err(ServeError::InvalidInput(format!(
                    "model `{}` has no output `{wanted}`; its outputs are {}",
                    manifest.name,
                    list(&signature.outputs)
                )));
            }
        }
        let rows = rows_of(&request.inputs);
        let mut timing = RequestTiming {
            queue: waited.elapsed(),
            input: request.decode,
            ..RequestTiming::default()
        };
        let mut params = vec![("conduit.digest".to_string(), manifest.digest.to_string())];
        let ctx = engine::Ctx {
            serving: self.clone(),
            tenant: tenant.clone(),
            limits,
            deadline,
        };
        let run = async {
            match manifest.kind {
                Kind::Model => {
                    let step = engine::model_step(&ctx, manifest, request.inputs).await?;
                    Ok((step.outputs, step.timing, Vec::new()))
                }
                Kind::Component => {
                    let step =
                        engine::component_step(&ctx, manifest, request.inputs, request.params)
                            .await?;
                    Ok((step.outputs, step.timing, Vec::new()))
                }
                Kind::Pipeline => {
                    let def = self.pipeline(tenant, manifest).await?;
                    engine::run_pipeline(&ctx, def, request.inputs, &request.params).await
                }
            }
        };
        // Polled once before the deadline is armed: a step done at once (a
        // tiny model run inline) registers no timer, whose registration
        // would wake the runtime's I/O driver (an eventfd write and an
        // epoll round trip per request).
        let mut run = std::pin::pin!(run);
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(run.as_mut(), cx))
        })
        .await;
        let done = match first {
            std::task::Poll::Ready(done) => done,
            std::task::Poll::Pending => tokio::time::timeout_at(deadline.into(), run)
                .await
                .map_err(|_| {
                    ServeError::Deadline(format!(
                        "model `{}` did not finish within the request deadline",
                        manifest.name
                    ))
                })?,
        };
        let (outputs, step_timing, provenance) = done?;
        timing.queue += step_timing.queue;
        timing.infer = step_timing.compute;
        // A model counts its executor's batches; a component or pipeline
        // request is one execution (its steps are counted as themselves).
        let executions = match manifest.kind {
            Kind::Model => step_timing.executions,
            Kind::Component | Kind::Pipeline => 1,
        };
        let assembling = Instant::now();
        params.extend(provenance);
        let outputs = select_outputs(&manifest.name, &signature, outputs, &request.outputs)?;
        check_response_size(
            &manifest.name,
            &outputs,
            self.inner.config.max_response_bytes,
        )?;
        timing.output = assembling.elapsed();
        Ok((
            InferResponse {
                model: manifest.name.clone(),
                version: manifest.version.clone(),
                id: request.id,
                outputs,
                params,
                compute: step_timing.compute,
                guard: Some(guard),
            },
            timing,
            rows,
            executions,
        ))
    }

    fn admit(&self, tenant: &str, max: u32) -> Result<OwnedSemaphorePermit, ServeError> {
        let semaphore = self
            .inner
            .admission
            .lock()
            .expect("admission lock")
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(max as usize)))
            .clone();
        semaphore.try_acquire_owned().map_err(|_| {
            ServeError::Overloaded(format!(
                "tenant `{tenant}` has {max} requests in flight, its limit; retry later"
            ))
        })
    }

    /// The parsed pipeline of `manifest` (cached by digest).
    async fn pipeline(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<Arc<PipelineDef>, ServeError> {
        if let Some(def) = self
            .inner
            .pipelines
            .lock()
            .expect("pipelines lock")
            .get(&manifest.digest)
        {
            return Ok(def.clone());
        }
        let bytes = self.blob(tenant, manifest.digest).await?;
        let def = Arc::new(PipelineDef::from_bytes(&bytes).map_err(ServeError::Internal)?);
        self.inner
            .pipelines
            .lock()
            .expect("pipelines lock")
            .insert(manifest.digest, def.clone());
        Ok(def)
    }

    async fn blob(&self, tenant: &Tenant, digest: Digest) -> Result<bytes::Bytes, ServeError> {
        Ok(self.read().fetch(tenant, &digest).await?)
    }

    /// The loaded executor of a model manifest, loading it on first use.
    ///
    /// Executors are keyed by the model's bytes *and* how they are served
    /// ([`executor_key`]): a tenant (or a version) that pushes the same bytes
    /// with other batching settings gets its own executor, while identical
    /// settings share one loaded copy. Each tenant using one is recorded, so
    /// an unload only drops it when no other tenant still uses it.
    async fn executor(&self, tenant: &Tenant, manifest: &Manifest) -> Result<Executor, ServeError> {
        let context = format!("model `{}`", manifest.reference());
        let model_error = |error| ServeError::Model {
            context: context.clone(),
            error,
        };
        // Named by digest, not by the tenant's name: a shared executor's
        // messages must not show one tenant's module names to another.
        let config = self
            .inner
            .backends
            .config(&manifest.digest.short(), &manifest.executor)
            .map_err(model_error)?;
        let key = executor_key(&manifest.digest, &config);
        self.inner
            .model_users
            .lock()
            .expect("model users lock")
            .entry(key)
            .or_default()
            .insert(tenant.name.clone());
        if let Some(e) = self.inner.models.get(&key) {
            return Ok(e);
        }
        let budget = self.inner.config.model_memory_budget;
        if manifest.size > budget {
            return Err(ServeError::TooLarge(format!(
                "{context} is {} bytes, more than this runner's whole model memory budget of \
                 {budget} bytes: it can never load here",
                manifest.size
            )));
        }
        let backend = self
            .inner
            .backends
            .get(config.backend)
            .map_err(model_error)?;
        let signature = host_signature(&manifest.signature)?;
        let bytes = self.blob(tenant, manifest.digest).await?;
        let metrics_key = ModelKey {
            tenant: tenant.name.clone(),
            model: manifest.name.clone(),
            version: manifest.version.clone(),
        };
        let this = self.clone();
        // Counted inside the load: a request that waited for another's load
        // of the same model loaded nothing.
        self.inner
            .models
            .get_or_load(key, manifest.size, move || {
                let started = Instant::now();
                let executor = Executor::start(backend, &bytes, signature, config)?;
                this.inner
                    .metrics
                    .model_loaded(&metrics_key, started.elapsed());
                Ok(executor)
            })
            .await
            .map_err(model_error)
    }

    /// The loaded component of a manifest.
    async fn component(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<Arc<Component>, ServeError> {
        if let Some(c) = self.inner.runtime.get(&manifest.digest) {
            return Ok(c);
        }
        let bytes = self.blob(tenant, manifest.digest).await?;
        self.inner
            .runtime
            .load(&bytes)
            .await
            .map_err(|error| ServeError::Component {
                context: format!("component `{}`", manifest.reference()),
                error,
            })
    }

    /// Counters of `tenant`'s models (`name` empty: all; `version` empty: all),
    /// as Triton reports them: an entry for every servable version (zeroed
    /// when unused), not only for those that ran.
    ///
    /// # Errors
    /// [`ServeError::NotFound`] for an unknown name or version.
    pub async fn statistics(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<Vec<(ModelKey, ModelCounters)>, ServeError> {
        let mut version = version.to_string();
        if !name.is_empty() && !version.is_empty() {
            version = self.resolve(tenant, name, &version).await?.version;
        } else if !name.is_empty() {
            self.resolve(tenant, name, "").await?;
        }
        let mut counters: HashMap<ModelKey, ModelCounters> = self
            .inner
            .metrics
            .models(&tenant.name, name)
            .into_iter()
            .collect();
        let listed = if name.is_empty() {
            self.index(tenant, true)
                .await?
                .into_iter()
                .map(|e| (e.name, e.version))
                .collect::<Vec<_>>()
        } else {
            self.versions(tenant, name)
                .await?
                .into_iter()
                .map(|m| (m.name, m.version))
                .collect()
        };
        let mut out: Vec<(ModelKey, ModelCounters)> = listed
            .into_iter()
            .filter(|(_, v)| version.is_empty() || *v == version)
            .map(|(model, version)| {
                let key = ModelKey {
                    tenant: tenant.name.clone(),
                    model,
                    version,
                };
                let c = counters.remove(&key).unwrap_or_default();
                (key, c)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every version of `name` that `tenant` holds, lowest first.
    ///
    /// # Errors
    /// [`ServeError::Internal`] when the registry cannot be read.
    pub async fn versions(&self, tenant: &Tenant, name: &str) -> Result<Vec<Manifest>, ServeError> {
        let mut out: Vec<Manifest> = self
            .listing(tenant, name)
            .await?
            .iter()
            .filter(|m| m.name == name)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            match (
                semver::Version::parse(&a.version),
                semver::Version::parse(&b.version),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.version.cmp(&b.version),
            }
        });
        Ok(out)
    }

    /// Every model version of `tenant` (`ready_only`: skip unloaded ones).
    ///
    /// # Errors
    /// [`ServeError::Internal`] when the registry cannot be read.
    pub async fn index(
        &self,
        tenant: &Tenant,
        ready_only: bool,
    ) -> Result<Vec<IndexEntry>, ServeError> {
        let mut out = Vec::new();
        for m in self.listing(tenant, "").await?.iter() {
            let unloaded = self.is_unloaded(&tenant.name, &m.name);
            if ready_only && unloaded {
                continue;
            }
            out.push(IndexEntry {
                name: m.name.clone(),
                version: m.version.clone(),
                state: if unloaded { "UNAVAILABLE" } else { "READY" },
                reason: if unloaded {
                    "unloaded".into()
                } else {
                    String::new()
                },
            });
        }
        Ok(out)
    }

    /// Every module of `tenant` whose name starts with `prefix`, all pages,
    /// cached like resolutions (a runner apart from its registry answers
    /// metadata from here while the registry is down).
    async fn listing(
        &self,
        tenant: &Tenant,
        prefix: &str,
    ) -> Result<Arc<Vec<Manifest>>, ServeError> {
        let generation = self.inner.source.generation();
        let key = (tenant.name.clone(), prefix.to_string());
        let list = async {
            let mut out = Vec::new();
            let mut query = ListQuery {
                name_prefix: prefix.to_string(),
                page_size: 1000,
                ..ListQuery::default()
            };
            loop {
                let (page, next) = self.read().list(tenant, &query).await?;
                out.extend(page);
                if next.is_empty() {
                    return Ok::<_, ServeError>(Arc::new(out));
                }
                query.page_token = next;
            }
        };
        self.inner.listed.get_or_try(generation, key, list).await
    }

    /// Makes `name` servable again and loads its latest version (models
    /// into executors, components into the runtime, a pipeline's steps —
    /// which makes unloaded steps servable again too, as Triton loads an
    /// ensemble's composing models).
    ///
    /// `parameters` are the names of the request's load parameters:
    /// Triton's `config` and `file:…` overrides are refused (a model is
    /// served as registered), others are ignored.
    ///
    /// # Errors
    /// [`ServeError::InvalidInput`] for an override;
    /// [`ServeError::NotFound`] for an unknown model; load failures.
    pub async fn load<'a>(
        &self,
        tenant: &Tenant,
        name: &str,
        parameters: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServeError> {
        if let Some(k) = parameters
            .into_iter()
            .find(|k| *k == "config" || k.starts_with("file:"))
        {
            return Err(ServeError::InvalidInput(format!(
                "load parameter `{k}`: config overrides are not supported; Conduit serves \
                 `{name}` as registered (its executor settings are part of its manifest): push \
                 a new version with the settings you want"
            )));
        }
        let manifest = self.resolve(tenant, name, "").await?;
        self.inner
            .unloaded
            .write()
            .expect("unloaded lock")
            .remove(&(tenant.name.clone(), name.to_string()));
        self.warm(tenant, &manifest).await
    }

    async fn warm(&self, tenant: &Tenant, manifest: &Manifest) -> Result<(), ServeError> {
        match manifest.kind {
            Kind::Model => self.executor(tenant, manifest).await.map(drop),
            Kind::Component => self.component(tenant, manifest).await.map(drop),
            Kind::Pipeline => {
                let def = self.pipeline(tenant, manifest).await?;
                for step in &def.steps {
                    let m = self.step_manifest(tenant, step).await?;
                    self.inner
                        .unloaded
                        .write()
                        .expect("unloaded lock")
                        .remove(&(tenant.name.clone(), m.name.clone()));
                    Box::pin(self.warm(tenant, &m)).await?;
                }
                Ok(())
            }
        }
    }

    /// Stops serving `name` for `tenant` (requests get UNAVAILABLE until it
    /// is loaded again) and frees its model executors.
    ///
    /// # Errors
    /// [`ServeError::NotFound`] for an unknown model.
    pub async fn unload(&self, tenant: &Tenant, name: &str) -> Result<(), ServeError> {
        let manifest = self.resolve(tenant, name, "").await?;
        self.inner
            .unloaded
            .write()
            .expect("unloaded lock")
            .insert((tenant.name.clone(), name.to_string()));
        if manifest.kind == Kind::Model {
            let config = self
                .inner
                .backends
                .config(&manifest.digest.short(), &manifest.executor)
                .map_err(|e| ServeError::Internal(e.to_string()))?;
            let key = executor_key(&manifest.digest, &config);
            let mut users = self.inner.model_users.lock().expect("model users lock");
            let last = users.get_mut(&key).is_none_or(|u| {
                u.remove(&tenant.name);
                u.is_empty()
            });
            if last {
                users.remove(&key);
                self.inner.models.remove(&key);
            }
        }
        Ok(())
    }

    /// The Prometheus text of `/metrics`.
    pub fn render_metrics(&self) -> String {
        let cache = self.inner.models.stats();
        self.inner.metrics.render(&[
            (
                "conduit_models_loaded",
                "Models loaded in executors now.",
                cache.loaded as f64,
            ),
            (
                "conduit_models_loaded_bytes",
                "Estimated memory of the loaded models.",
                cache.bytes as f64,
            ),
            (
                "conduit_component_slots_in_use",
                "Sandbox instance slots taken (running, warm, tearing down).",
                self.inner.runtime.slots_in_use() as f64,
            ),
        ])
    }

    /// Triton's model configuration of `name` at `version`.
    ///
    /// # Errors
    /// [`ServeError::NotFound`] when it does not exist.
    pub async fn model_config(
        &self,
        tenant: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<conduit_proto::inference::ModelConfig, ServeError> {
        let m = self.resolve(tenant, name, version).await?;
        let (max_batch, delay_us) = match m.kind {
            Kind::Model => {
                let c = self
                    .inner
                    .backends
                    .config(&m.name, &m.executor)
                    .map_err(|e| ServeError::Internal(e.to_string()))?;
                (
                    c.batching.max_batch_size,
                    c.batching.max_queue_delay.as_micros() as u64,
                )
            }
            _ => (0, 0),
        };
        Ok(wire::model_config(&m, max_batch, delay_us))
    }

    /// The loaded executor of a model manifest, if loaded (for statistics).
    pub fn loaded_executor(&self, manifest: &Manifest) -> Option<Executor> {
        let config = self
            .inner
            .backends
            .config(&manifest.digest.short(), &manifest.executor)
            .ok()?;
        self.inner
            .models
            .get(&executor_key(&manifest.digest, &config))
    }
}

/// What identifies a loaded executor: the model's bytes and every setting
/// that changes how they are served (backend, device, threads, batching,
/// instances, queue), hashed into one digest.
pub fn executor_key(model: &Digest, config: &conduit_executor::ModelConfig) -> Digest {
    let settings = format!(
        "{model}|{:?}|{:?}|{}|{:?}|{:?}|{}|{}",
        config.backend,
        config.device,
        config.intra_threads,
        config.optimization,
        config.batching,
        config.instances,
        config.queue_capacity
    );
    Digest::of(settings.as_bytes())
}

/// Input `name` of a request as a tensor; when its bytes do not add up to
/// its datatype and shape but do to another element size, the message says
/// that the datatype and the data disagree (not only the byte counts).
///
/// # Errors
/// [`ServeError::InvalidInput`] naming the input.
fn request_tensor(
    name: &str,
    dtype: DataType,
    shape: Vec<i64>,
    data: bytes::Bytes,
) -> Result<conduit_types::Tensor, ServeError> {
    let (got, count) = (data.len(), conduit_types::element_count(&shape).ok());
    conduit_types::Tensor::new(dtype, shape.clone(), data).map_err(|e| {
        let mismatch = match (dtype.element_size(), count) {
            (Some(size), Some(n)) if n > 0 && got % n == 0 && got / n != size => {
                let others = match got / n {
                    1 => "BOOL, INT8 or UINT8",
                    2 => "INT16, UINT16, FP16 or BF16",
                    4 => "INT32, UINT32 or FP32",
                    8 => "INT64, UINT64 or FP64",
                    _ => "",
                };
                (!others.is_empty()).then(|| {
                    format!(
                        "input `{name}` is declared {dtype} ({size} bytes an element), but its \
                         {got} bytes for shape {shape:?} are {} bytes an element, as {others} \
                         data: the declared datatype does not match the data sent",
                        got / n
                    )
                })
            }
            _ => None,
        };
        ServeError::InvalidInput(mismatch.unwrap_or_else(|| format!("input `{name}`: {e}")))
    })
}

/// Refuses the Triton extensions this server does not offer, named by a
/// request tensor's parameter keys: shared memory, and on an output
/// classification (`class_count`). The same refusal over gRPC and HTTP.
///
/// # Errors
/// [`ServeError::Unsupported`] naming the tensor and the extension.
fn unsupported_extensions<'a>(
    mut keys: impl Iterator<Item = &'a String>,
    what: &str,
    name: &str,
) -> Result<(), ServeError> {
    let Some(key) = keys
        .find(|k| k.starts_with("shared_memory") || (what == "output" && *k == "classification"))
    else {
        return Ok(());
    };
    Err(ServeError::Unsupported(if key == "classification" {
        format!(
            "output `{name}` asks for classification (class_count), an extension this server \
             does not offer; request the output itself and take the top classes client-side"
        )
    } else {
        format!(
            "{what} `{name}` uses shared memory, an extension this server does not offer; send \
             the data in the request"
        )
    }))
}

/// A Triton-style version, `N` or `N.M` (digits only): its major and minor.
fn triton_version(version: &str) -> Option<(u64, Option<u64>)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (major, minor) = match version.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (version, None),
    };
    if !digits(major) || minor.is_some_and(|m| !digits(m)) {
        return None;
    }
    Some((major.parse().ok()?, minor.map(str::parse).transpose().ok()?))
}

/// The inferences a request asks for: its first input's first dimension
/// (1 without inputs or dimensions).
fn rows_of(inputs: &NamedTensors) -> u64 {
    inputs
        .first()
        .and_then(|(_, t)| t.shape().first().copied())
        .unwrap_or(1)
        .max(0) as u64
}

/// The one log line of a failed request: `warn` for what is the server's
/// fault (internal errors, a model or backend failing, unavailable), `debug`
/// for the client's (bad input, unknown model, limits, deadlines), `info`
/// for unavailable (an unloaded model, a backend down).
fn log_failure(tenant: &str, model: &str, phase: &'static str, e: &ServeError) {
    let class = e.class();
    // One line: a message never spans several.
    let message = e.to_string().replace('\n', " ");
    match class {
        StatusClass::Internal => tracing::warn!(
            tenant, model, phase, reason = e.reason(), code = ?class.grpc(),
            "request failed: {message}"
        ),
        StatusClass::Unavailable => tracing::info!(
            tenant, model, phase, reason = e.reason(), code = ?class.grpc(),
            "request failed: {message}"
        ),
        _ => tracing::debug!(
            tenant, model, phase, reason = e.reason(), code = ?class.grpc(),
            "request failed: {message}"
        ),
    }
}

/// The host form of a stored signature.
///
/// # Errors
/// [`ServeError::Internal`] for a datatype this host does not know.
pub fn host_signature(s: &conduit_registry::Signature) -> Result<Signature, ServeError> {
    let spec = |t: &conduit_registry::TensorSpec| -> Result<TensorSpec, ServeError> {
        Ok(TensorSpec {
            name: t.name.clone(),
            dtype: t.datatype.parse::<DataType>().map_err(|_| {
                ServeError::Internal(format!("stored datatype `{}` is unknown", t.datatype))
            })?,
            shape: t.shape.clone(),
        })
    };
    Ok(Signature {
        inputs: s.inputs.iter().map(spec).collect::<Result<_, _>>()?,
        outputs: s.outputs.iter().map(spec).collect::<Result<_, _>>()?,
    })
}

fn list(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks request tensors against a signature: every input present once,
/// none unknown, datatypes equal, ranks equal, fixed dimensions equal.
fn check_request(
    model: &str,
    signature: &Signature,
    inputs: &NamedTensors,
) -> Result<(), ServeError> {
    let mut seen = HashSet::new();
    for (name, tensor) in inputs {
        if !seen.insert(name.as_str()) {
            return Err(ServeError::InvalidInput(format!(
                "input `{name}` is given twice"
            )));
        }
        let Some(spec) = signature.inputs.iter().find(|s| &s.name == name) else {
            return Err(ServeError::InvalidInput(format!(
                "model `{model}` has no input `{name}`; its inputs are {}",
                list(&signature.inputs)
            )));
        };
        if tensor.dtype() != spec.dtype {
            return Err(ServeError::InvalidInput(format!(
                "input `{name}` of model `{model}` must be {}, got {}",
                spec.dtype,
                tensor.dtype()
            )));
        }
        if !spec.admits_shape(tensor.shape()) {
            return Err(ServeError::InvalidInput(format!(
                "input `{name}` of model `{model}` has shape {:?}, expected {:?} (-1: any)",
                tensor.shape(),
                spec.shape
            )));
        }
    }
    if let Some(missing) = signature
        .inputs
        .iter()
        .find(|s| !seen.contains(s.name.as_str()))
    {
        return Err(ServeError::InvalidInput(format!(
            "model `{model}` needs input `{}` ({} {:?}), which the request lacks",
            missing.name, missing.dtype, missing.shape
        )));
    }
    Ok(())
}

/// Refuses an answer over `max` bytes. Every output counts in full, with
/// its name and shape: a component can return many views of one tensor, and
/// each is encoded (and held by the transport) as a copy of its own.
fn check_response_size(model: &str, outputs: &NamedTensors, max: usize) -> Result<(), ServeError> {
    let mut total = 0usize;
    for (name, t) in outputs {
        total = total
            .saturating_add(t.byte_size())
            .saturating_add(name.len())
            .saturating_add(std::mem::size_of_val(t.shape()));
    }
    if total > max {
        return Err(ServeError::ResponseTooLarge(format!(
            "model `{model}` produced an answer of {total} bytes ({} outputs), over the response \
             limit of {max} bytes; ask for fewer outputs or rows",
            outputs.len()
        )));
    }
    Ok(())
}

/// The outputs in signature order, only those requested (all when none are).
fn select_outputs(
    model: &str,
    signature: &Signature,
    mut outputs: NamedTensors,
    wanted: &[String],
) -> Result<NamedTensors, ServeError> {
    let mut selected = Vec::with_capacity(signature.outputs.len());
    for spec in &signature.outputs {
        if !wanted.is_empty() && !wanted.contains(&spec.name) {
            continue;
        }
        let Some(i) = outputs.iter().position(|(n, _)| n == &spec.name) else {
            return Err(ServeError::Internal(format!(
                "model `{model}` returned no output `{}`, which its signature declares",
                spec.name
            )));
        };
        selected.push(outputs.swap_remove(i));
    }
    Ok(selected)
}

/// A KServe parameter as a WIT parameter.
pub fn param(name: impl Into<String>, value: ParamValue) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    #[test]
    fn triton_versions_are_numbers() {
        assert_eq!(triton_version("1"), Some((1, None)));
        assert_eq!(triton_version("12.3"), Some((12, Some(3))));
        for v in ["", "1.0.0", "latest", "v1", "1.", ".1", "blake3:00", "-1"] {
            assert_eq!(triton_version(v), None, "{v}");
        }
    }
}
