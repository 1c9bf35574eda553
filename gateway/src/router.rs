//! Where a request goes: the runners holding its module's placement, picked
//! by the power of two choices on their reported load, with another replica
//! (or, failing that, any live runner) tried when one is lost or refuses.

use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_registry::{Manifest, Tenant};
use conduit_runner::ServeError;
use conduit_scheduler::{
    ClusterView, PLACE_SUBJECT, PlaceReply, PlaceRequest, Placement, RunnerRecord, ScaleHints,
};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// How the gateway routes.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Longest wait for a placement (the first request of a module, or all
    /// its runners lost), within the request's own deadline.
    pub placement_timeout: Duration,
    /// Attempts per request over distinct runners (pipelines are pure, so a
    /// retry is always safe).
    pub max_attempts: usize,
    /// How long a runner that failed at the transport level is skipped.
    pub suspect_for: Duration,
    /// Largest message a runner may answer with (its own limit applies
    /// first).
    pub max_message_bytes: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            placement_timeout: Duration::from_secs(10),
            max_attempts: 4,
            suspect_for: Duration::from_secs(3),
            max_message_bytes: 64 << 20,
        }
    }
}

/// The routing state of one gateway. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    view: ClusterView,
    config: RouteConfig,
    /// Runner address → a lazily connected channel.
    channels: Mutex<HashMap<String, Channel>>,
    /// Runner id → until when it is skipped.
    suspects: Mutex<HashMap<String, Instant>>,
    /// Requests this gateway has in flight per runner: its load as seen
    /// between two heartbeats.
    outstanding: Mutex<HashMap<String, u64>>,
    seed: AtomicU64,
    counters: Counters,
}

/// What the gateway has done, for `/metrics`.
#[derive(Debug)]
pub struct Counters {
    /// Requests forwarded (first attempts).
    pub forwarded: AtomicU64,
    /// Attempts retried on another runner.
    pub retries: AtomicU64,
    /// Placement requests sent to the scheduler.
    pub placement_requests: AtomicU64,
    /// Requests answered after waiting for a placement to name a runner
    /// (a module scaled to zero, or a fleet scaled from zero): their time
    /// to first response, in seconds.
    pub cold_starts: Histogram,
    /// Where `cold_starts` is registered (prometheus-client encodes it).
    registry: Registry,
}

impl Default for Counters {
    fn default() -> Self {
        let cold_starts = Histogram::new(conduit_runner::DURATION_BUCKETS);
        let mut registry = Registry::default();
        // prometheus-client ends the help text with a period.
        registry.register(
            "conduit_gateway_cold_start_seconds",
            "Time to first response of requests that waited for a placement (scale from \
             zero), from the gateway receiving them",
            cold_starts.clone(),
        );
        Self {
            forwarded: AtomicU64::default(),
            retries: AtomicU64::default(),
            placement_requests: AtomicU64::default(),
            cold_starts,
            registry,
        }
    }
}

impl Counters {
    /// The counters in Prometheus' text format, for the gateway's `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "conduit_gateway_forwarded_total",
                "Requests the gateway forwarded to a runner (first attempts).",
                &self.forwarded,
            ),
            (
                "conduit_gateway_retries_total",
                "Attempts the gateway retried on another runner.",
                &self.retries,
            ),
            (
                "conduit_gateway_placement_requests_total",
                "Placement requests the gateway sent to the scheduler.",
                &self.placement_requests,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        // Writing into a String cannot fail; no OpenMetrics `# EOF`: the
        // text goes on after it.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        out
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("view", &self.inner.view)
            .finish()
    }
}

/// One attempt's target, released (its outstanding count) when dropped.
pub struct Attempt {
    /// The runner.
    pub runner: RunnerRecord,
    router: Router,
    /// When routing began, if it had to wait for a placement to name a runner.
    waited_since: Option<Instant>,
}

impl Attempt {
    /// The runner answered: a request that waited for a placement counts
    /// as a cold start.
    pub fn served(&self) {
        if let Some(since) = self.waited_since {
            let c = &self.router.inner.counters;
            c.cold_starts.observe(since.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut out = self
            .router
            .inner
            .outstanding
            .lock()
            .expect("outstanding lock");
        if let Some(n) = out.get_mut(&self.runner.id) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Router {
    /// Routes by `view`.
    pub fn new(view: ClusterView, config: RouteConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                view,
                config,
                channels: Mutex::default(),
                suspects: Mutex::default(),
                outstanding: Mutex::default(),
                seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
                counters: Counters::default(),
            }),
        }
    }

    /// The view it routes by.
    pub fn view(&self) -> &ClusterView {
        &self.inner.view
    }

    /// Its configuration.
    pub fn config(&self) -> &RouteConfig {
        &self.inner.config
    }

    /// Its counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Whether it can route: the view is read and some runner is live.
    ///
    /// # Errors
    /// Why not, in words.
    pub fn health(&self) -> Result<(), String> {
        let view = &self.inner.view;
        if !view.synced() {
            return Err(format!(
                "the cluster state has not been read from NATS yet ({})",
                if view.cluster().linked() {
                    "linked"
                } else {
                    "not linked"
                }
            ));
        }
        if !view.any_live() {
            return Err("no live runner in the cluster".into());
        }
        Ok(())
    }

    /// A gRPC client of a runner.
    pub fn grpc(&self, runner: &RunnerRecord) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel(runner))
            .max_decoding_message_size(self.inner.config.max_message_bytes)
            .max_encoding_message_size(self.inner.config.max_message_bytes)
    }

    /// The (shared, lazily connected) channel to a runner's gRPC address.
    pub fn channel(&self, runner: &RunnerRecord) -> Channel {
        let mut channels = self.inner.channels.lock().expect("channels lock");
        channels
            .entry(runner.grpc.clone())
            .or_insert_with(|| {
                Endpoint::from_shared(format!("http://{}", runner.grpc))
                    .expect("runner addresses are host:port")
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .connect_lazy()
            })
            .clone()
    }

    /// Marks a runner as failing at the transport level: skipped for a while,
    /// and its channel dropped (a restarted runner gets a fresh connection).
    pub fn suspect(&self, runner: &RunnerRecord) {
        let until = Instant::now() + self.inner.config.suspect_for;
        self.inner
            .suspects
            .lock()
            .expect("suspects lock")
            .insert(runner.id.clone(), until);
        self.inner
            .channels
            .lock()
            .expect("channels lock")
            .remove(&runner.grpc);
    }

    fn suspected(&self, id: &str) -> bool {
        let mut s = self.inner.suspects.lock().expect("suspects lock");
        match s.get(id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                s.remove(id);
                false
            }
            None => false,
        }
    }

    /// The next runner to try for `manifest`, none of `tried`: a live,
    /// unsuspected holder of its placement by the power of two choices;
    /// else any live runner (it loads the module on its first request); else
    /// it waits (until `deadline`) for the scheduler to place it.
    ///
    /// # Errors
    /// [`ServeError::Unavailable`] when nothing can serve it in time, saying
    /// why; [`ServeError::Deadline`] when the deadline passes first.
    pub async fn next(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
        tried: &[String],
        deadline: Instant,
    ) -> Result<Attempt, ServeError> {
        let digest = manifest.digest.to_string();
        let entered = Instant::now();
        let wait_until = deadline.min(entered + self.inner.config.placement_timeout);
        let mut asked = false;
        let mut waited = false;
        let mut changes = self.inner.view.changes();
        loop {
            let placement = self.inner.view.placement(&digest);
            // Same bytes pushed with a larger replica hint: the scheduler
            // grows the shared placement (once per request at most).
            if let Some(p) = &placement
                && manifest.executor.replicas > p.replicas
                && !asked
            {
                asked = true;
                if let Ok(grown) = self.ask(tenant, manifest, wait_until).await {
                    self.inner.view.note_placement(&grown);
                    continue;
                }
            }
            if let Some(p) = &placement
                && let Some(r) = self.two_choices(self.holders(p, tried))
            {
                return Ok(self.attempt(r, waited.then_some(entered)));
            }
            if placement.is_none() && !asked {
                asked = true;
                match self.ask(tenant, manifest, wait_until).await {
                    Ok(p) => {
                        self.inner.view.note_placement(&p);
                        continue;
                    }
                    Err(e) if Instant::now() >= wait_until => return Err(e),
                    Err(e) => tracing::debug!(error = %e, "placement request failed"),
                }
            }
            // Its holders are lost or already tried: any other live runner
            // can serve it (cold) while the scheduler moves the placement.
            let pending = placement.as_ref().is_some_and(|p| p.runners.is_empty());
            if let Some(r) = self.two_choices(self.candidates(None, tried)) {
                return Ok(self.attempt(r, (waited || pending).then_some(entered)));
            }
            let now = Instant::now();
            if now >= wait_until {
                return Err(if now >= deadline {
                    ServeError::Deadline(format!(
                        "no runner could serve `{}` before the request's deadline",
                        manifest.name
                    ))
                } else {
                    ServeError::Unavailable(format!(
                        "no runner can serve `{}@{}` now: {} (waited {:?})",
                        manifest.name,
                        manifest.version,
                        self.why_none(tried),
                        self.inner.config.placement_timeout
                    ))
                });
            }
            waited = true;
            let _ = tokio::time::timeout(
                (wait_until - now).min(Duration::from_millis(200)),
                changes.changed(),
            )
            .await;
        }
    }

    fn why_none(&self, tried: &[String]) -> String {
        let live = self.inner.view.live_runners();
        if live.is_empty() {
            "no live runner in the cluster".into()
        } else if live.iter().all(|r| tried.contains(&r.id)) {
            format!("every live runner ({}) failed it", live.len())
        } else {
            "every live runner is draining or failing".into()
        }
    }

    /// A placement's holders to pick from: live, unsuspected, none of
    /// `tried`.
    /// - Draining holders only while some other holder has not loaded the
    ///   module yet (warm before cold: the scheduler keeps a draining runner
    ///   in the placement until its replacement is loaded).
    /// - A holder that has not loaded the module yet, while another has,
    ///   gets one request at a time from this gateway (the one that loads
    ///   it) until its heartbeat says it is loaded: a new replica is not
    ///   flooded with requests that would all wait for its cold load.
    fn holders(&self, p: &Placement, tried: &[String]) -> Vec<RunnerRecord> {
        let live: Vec<RunnerRecord> = self
            .inner
            .view
            .live_among(&p.runners)
            .into_iter()
            .filter(|r| !tried.contains(&r.id) && !self.suspected(&r.id))
            .collect();
        let loaded = |r: &RunnerRecord| r.loaded.iter().any(|d| d == &p.digest);
        let handing_over =
            live.iter().any(|r| r.draining) && live.iter().any(|r| !r.draining && !loaded(r));
        let mut pick: Vec<RunnerRecord> = live
            .into_iter()
            .filter(|r| handing_over || !r.draining)
            .collect();
        if pick.iter().any(loaded) && !pick.iter().all(loaded) {
            let out = self.inner.outstanding.lock().expect("outstanding lock");
            pick.retain(|r| loaded(r) || out.get(&r.id).copied().unwrap_or(0) == 0);
        }
        pick
    }

    /// Live, unsuspected, undrained runners of `ids` (all when `None`), none
    /// of `tried`.
    fn candidates(&self, ids: Option<&[String]>, tried: &[String]) -> Vec<RunnerRecord> {
        let live = match ids {
            // The common path: a placement's few holders, not the cluster.
            Some(ids) => self.inner.view.live_among(ids),
            None => self.inner.view.live_runners(),
        };
        live.into_iter()
            .filter(|r| !r.draining && !tried.contains(&r.id) && !self.suspected(&r.id))
            .collect()
    }

    /// Two at random, the less loaded of them (reported load plus this
    /// gateway's own requests in flight there).
    fn two_choices(&self, mut runners: Vec<RunnerRecord>) -> Option<RunnerRecord> {
        match runners.len() {
            0 => None,
            1 => runners.pop(),
            n => {
                let a = self.random(n);
                let mut b = self.random(n - 1);
                if b >= a {
                    b += 1;
                }
                let out = self.inner.outstanding.lock().expect("outstanding lock");
                let load = |r: &RunnerRecord| r.load() + *out.get(&r.id).unwrap_or(&0) as f64;
                let pick = if load(&runners[b]) < load(&runners[a]) {
                    b
                } else {
                    a
                };
                drop(out);
                Some(runners.swap_remove(pick))
            }
        }
    }

    fn random(&self, n: usize) -> usize {
        // xorshift64*: uniform enough to pick two of n, lock-free.
        let mut x = self
            .inner
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n
    }

    fn attempt(&self, runner: RunnerRecord, waited_since: Option<Instant>) -> Attempt {
        *self
            .inner
            .outstanding
            .lock()
            .expect("outstanding lock")
            .entry(runner.id.clone())
            .or_default() += 1;
        Attempt {
            runner,
            router: self.clone(),
            waited_since,
        }
    }

    /// Asks the active scheduler to place `manifest` (retrying while no
    /// scheduler leads, e.g. during a failover) until `until`.
    async fn ask(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
        until: Instant,
    ) -> Result<Placement, ServeError> {
        let request = PlaceRequest {
            digest: manifest.digest.to_string(),
            tenant: tenant.name.clone(),
            module: format!("{}@{}", manifest.name, manifest.version),
            replicas: manifest.executor.replicas,
            memory: manifest
                .size
                .saturating_mul(manifest.executor.instances.max(1) as u64),
            device: manifest.executor.device.clone(),
            scale: ScaleHints {
                min: manifest.executor.replicas,
                max: manifest.executor.max_replicas,
                target_busy_percent: manifest.executor.target_busy_percent,
                target_queue_ms: manifest.executor.target_queue_ms,
                idle_seconds: manifest.executor.idle_seconds,
            },
        };
        let body = serde_json::to_vec(&request).expect("a placement request encodes");
        let client = self.inner.view.cluster().client().clone();
        loop {
            let last;
            self.inner
                .counters
                .placement_requests
                .fetch_add(1, Ordering::Relaxed);
            let left = until.saturating_duration_since(Instant::now());
            let ask = client.request(PLACE_SUBJECT, body.clone().into());
            match tokio::time::timeout(left.min(Duration::from_secs(2)), ask).await {
                Ok(Ok(msg)) => match serde_json::from_slice::<PlaceReply>(&msg.payload) {
                    Ok(PlaceReply::Placed(p) | PlaceReply::Pending(p)) => return Ok(p),
                    Ok(PlaceReply::Refused(why)) => last = format!("the scheduler refused: {why}"),
                    Err(e) => last = format!("the scheduler's answer did not decode: {e}"),
                },
                Ok(Err(e)) => last = format!("no scheduler answered ({e})"),
                Err(_) => last = "the scheduler did not answer in time".into(),
            }
            if Instant::now() + Duration::from_millis(200) >= until {
                return Err(ServeError::Unavailable(format!(
                    "`{}@{}` has no placement: {last}",
                    manifest.name, manifest.version
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether a runner's answer means "try another runner": the runner is
/// gone (a transport failure) or refused the work for now
/// (RESOURCE_EXHAUSTED). Anything else, UNAVAILABLE from a live runner
/// included (a model unloaded there is unloaded everywhere), is the
/// request's own answer: retrying it would only run its steps again.
pub fn retryable(status: &tonic::Status) -> bool {
    transport_failure(status) || status.code() == tonic::Code::ResourceExhausted
}

/// Whether the failure was the runner's transport (it is gone): the runner
/// is skipped for a while.
pub fn transport_failure(status: &tonic::Status) -> bool {
    // Statuses made by the client's transport carry their cause; a runner's
    // own answers, decoded from the wire, carry none.
    if std::error::Error::source(status).is_some() {
        return true;
    }
    match status.code() {
        tonic::Code::Unknown | tonic::Code::Cancelled => true,
        tonic::Code::Unavailable => {
            let m = status.message();
            m.contains("transport") || m.contains("connect") || m.contains("connection")
        }
        _ => false,
    }
}
