//! [`Serving`]: the data plane of one runner, from `(tenant, model,
//! version)` to something that runs, with its caches, limits and counters.

use crate::*;
use conduit_executor::{Backends, Executor, ModelCache};
use conduit_registry::{Kind, ListQuery, Manifest, PipelineDef, Tenant};
use conduit_runtime::{Component, Param, Runtime};
use conduit_types::{Digest, NamedTensors, clip};
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) source: Arc<dyn ModuleSource>,
    pub(crate) runtime: Runtime,
    pub(crate) backends: Backends,
    pub(crate) models: ModelCache,
    pub(crate) pipelines: Mutex<HashMap<Digest, Arc<PipelineDef>>>,
    pub(crate) metrics: Metrics,
    pub(crate) config: ServingConfig,
    pub(crate) admission: Mutex<HashMap<String, Arc<Semaphore>>>,
    pub(crate) unloaded: RwLock<HashSet<(String, String)>>,
    /// Tenants using each loaded executor (by [`executor_key`]).
    pub(crate) model_users: Mutex<HashMap<Digest, HashSet<String>>>,
    /// (tenant, name, version) → manifest, valid while the source's
    /// generation is unchanged (also (tenant, "", reference)).
    pub(crate) resolved: Generational<(String, String, String), Manifest>,
    /// (tenant, name prefix) → every matching manifest, likewise.
    pub(crate) listed: Generational<(String, String), Arc<Vec<Manifest>>>,
    /// blake3(API key) → tenant, likewise.
    pub(crate) keys: Generational<[u8; 32], Tenant>,
    /// Calls made to the source (resolutions, listings, blobs, keys).
    pub(crate) source_reads: std::sync::atomic::AtomicU64,
    /// Per module digest: whether it is warm here and how it is used (see
    /// `report.rs`).
    pub(crate) usage: Mutex<HashMap<Digest, crate::report::Usage>>,
    /// Open sessions and their values.
    pub(crate) sessions: Sessions,
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
                usage: Mutex::default(),
                sessions: Sessions::default(),
            }),
        }
    }

    /// Open sessions and their values.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
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
    pub(crate) fn read(&self) -> &dyn ModuleSource {
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
    pub(crate) async fn cached(
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

    pub(crate) async fn resolve_uncached(
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
                        },
                        name = clip(name),
                        version = clip(version),
                    )),
                    other => other,
                });
        }
        self.resolve_reference(tenant, name, version).await
    }

    pub(crate) async fn resolve_reference(
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
                    let (name, version) = (clip(name), clip(version));
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
                "{} is `{}`, not model `{}`",
                clip(version),
                manifest.name,
                clip(name)
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

    pub(crate) fn is_unloaded(&self, tenant: &str, name: &str) -> bool {
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

    pub(crate) async fn infer_in_span(
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
        let using = self.begin_use(target.manifest.digest);
        let result = self.infer_target(tenant, &target, request).await;
        match result {
            Ok((response, timing, rows, executions)) => {
                metrics.success(&target.key, rows, executions, started.elapsed(), timing);
                using.done(timing.queue, true);
                Ok(response)
            }
            Err(e) => {
                using.done(Duration::ZERO, false);
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
        let deadline = instant_after(Instant::now(), deadline);
        let manifest = &target.manifest;
        let signature = host_signature(&manifest.signature)?;
        check_request(&manifest.name, &signature, &request.inputs)?;
        for wanted in &request.outputs {
            if !signature.outputs.iter().any(|o| &o.name == wanted) {
                return Err(ServeError::InvalidInput(format!(
                    "model `{}` has no output `{}`; its outputs are {}",
                    manifest.name,
                    clip(wanted),
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
            Kind::Model => {
                timing.batch_rows = step_timing.batch_rows;
                step_timing.executions
            }
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

    /// Takes one of `tenant`'s concurrent-request permits (its
    /// `max_concurrent_requests`), held until the guard drops: a gateway
    /// enforces the same per-tenant limit as a runner.
    ///
    /// # Errors
    /// [`ServeError::Overloaded`] when the tenant has that many in flight.
    pub fn admit_tenant(&self, tenant: &Tenant) -> Result<RequestGuard, ServeError> {
        let limits = self.inner.config.limits.of(&tenant.name);
        Ok(RequestGuard(Arc::new(
            self.admit(&tenant.name, limits.max_concurrent_requests)?,
        )))
    }

    pub(crate) fn admit(&self, tenant: &str, max: u32) -> Result<OwnedSemaphorePermit, ServeError> {
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
    pub(crate) async fn pipeline(
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

    pub(crate) async fn blob(
        &self,
        tenant: &Tenant,
        digest: Digest,
    ) -> Result<bytes::Bytes, ServeError> {
        Ok(self.read().fetch(tenant, &digest).await?)
    }

    /// The loaded executor of a model manifest, loading it on first use.
    ///
    /// Executors are keyed by the model's bytes *and* how they are served
    /// ([`executor_key`]): a tenant (or a version) that pushes the same bytes
    /// with other batching settings gets its own executor, while identical
    /// settings share one loaded copy. Each tenant using one is recorded, so
    /// an unload only drops it when no other tenant still uses it.
    pub(crate) async fn executor(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<Executor, ServeError> {
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
    pub(crate) async fn component(
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
    pub(crate) async fn listing(
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
                "load parameter `{}`: config overrides are not supported; Conduit serves \
                 `{}` as registered (its executor settings are part of its manifest): push \
                 a new version with the settings you want",
                clip(k),
                clip(name)
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

    pub(crate) async fn warm(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<(), ServeError> {
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
        let (sessions, session_bytes) = self.inner.sessions.totals();
        let mut out = self.inner.metrics.render(&[
            (
                "conduit_sessions_open",
                "Sessions open on this runner.",
                sessions as f64,
            ),
            (
                "conduit_session_value_bytes",
                "Bytes the values of open sessions hold.",
                session_bytes as f64,
            ),
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
        ]);
        // The same two per tenant (tenants with a session open here).
        let by_tenant = self.inner.sessions.by_tenant();
        let pick = |f: fn(&(String, u64, u64)) -> u64| -> Vec<(String, f64)> {
            by_tenant
                .iter()
                .map(|t| (t.0.clone(), f(t) as f64))
                .collect()
        };
        crate::metrics::tenant_gauge(
            &mut out,
            "conduit_tenant_sessions_open",
            "Sessions open on this runner, per tenant.",
            &pick(|t| t.1),
        );
        crate::metrics::tenant_gauge(
            &mut out,
            "conduit_tenant_session_value_bytes",
            "Bytes the values of a tenant's open sessions hold on this runner.",
            &pick(|t| t.2),
        );
        out
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
