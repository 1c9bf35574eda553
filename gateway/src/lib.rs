//! `conduit gateway`: a cluster's one KServe v2 address (gRPC and HTTP) for
//! clients that hold no session — tritonclient, perf_analyzer, curl.
//!
//! Per request it authenticates the caller and resolves the model (both
//! cached, from the registry), takes one of the tenant's concurrent-request
//! permits (the same per-tenant limit as a runner's), and forwards the
//! request unchanged (pinned to the resolved version) to a runner holding the
//! model's placement ([`Router`]): the power of two choices on reported load,
//! another replica when a runner is lost or refuses, any live runner when
//! every holder is gone, and a placement asked of the scheduler when the
//! model has none. It keeps no state of its own: run as many as you like.
//!
//! Sessions ([`GatewaySessions`]) are opened here and then run on their
//! runner, point to point.

mod grpc;
mod http;
mod router;
mod session;
mod statistics;

pub use grpc::GatewayService;
pub use http::router as http_router;
pub use router::{Counters, RouteConfig, Router, retryable, transport_failure};
pub use session::GatewaySessions;

use conduit_runner::{HoldGuardLayer, ModelKey, Serving, accept_limited, incoming, serve_router};
use conduit_scheduler::ClusterView;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// A gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    /// Authentication, resolution, per-tenant limits and listings (over the
    /// registry); it never runs a module.
    pub serving: Serving,
    /// Where requests go.
    pub router: Router,
    http: http::HttpClient,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("router", &self.router)
            .finish()
    }
}

impl Gateway {
    /// A gateway over `serving` (built on the registry) and `view`.
    pub fn new(serving: Serving, view: ClusterView, config: RouteConfig) -> Self {
        Self {
            serving,
            router: Router::new(view, config),
            http: http::client(),
        }
    }

    /// Whether it can serve: the registry link is up, the cluster state is
    /// read, and some runner is live.
    ///
    /// # Errors
    /// Why not, in words.
    pub fn health(&self) -> Result<(), String> {
        self.serving.health()?;
        self.router.health()
    }

    /// Counts one inference request in the gateway's `/metrics` (success,
    /// failure by reason, latency as the gateway saw it, in
    /// `conduit_inference_request_duration_seconds` too; the runners'
    /// `/metrics` hold the queue, compute and batch details): call the
    /// returned closure with the failure's code, if any, when it is
    /// answered.
    pub fn count(
        &self,
        tenant: &conduit_registry::Tenant,
        manifest: &conduit_registry::Manifest,
    ) -> impl FnOnce(Option<tonic::Code>) + use<> {
        let key = ModelKey {
            tenant: tenant.name.clone(),
            model: manifest.name.clone(),
            version: manifest.version.clone(),
        };
        let serving = self.serving.clone();
        serving.metrics().begin(&key);
        let started = std::time::Instant::now();
        move |failed| match failed {
            None => serving.metrics().relayed(&key, started.elapsed()),
            Some(code) => {
                let reason = match code {
                    tonic::Code::Unavailable => "unavailable",
                    tonic::Code::DeadlineExceeded => "deadline",
                    tonic::Code::ResourceExhausted => "overloaded",
                    _ => "other",
                };
                serving.metrics().failure(&key, reason, started.elapsed());
            }
        }
    }

    /// Serves KServe v2 gRPC on `grpc` and HTTP on `http` until `shutdown`.
    ///
    /// # Errors
    /// When a server fails.
    pub async fn serve(
        &self,
        grpc: TcpListener,
        http: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let limits = self.serving.config().connections;
        let grpc = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // As on a runner: client faults on the wire are INVALID_ARGUMENT
            // and every status message is capped.
            .layer(conduit_proto::ClientFaultLayer)
            .layer(HoldGuardLayer)
            .add_service(GatewayService::new(self.clone()).into_server())
            .add_service(GatewaySessions::new(GatewayService::new(self.clone())).into_server())
            .serve_with_incoming_shutdown(
                incoming(accept_limited(grpc, limits.max_connections)),
                stopped(stop_rx.clone()),
            );
        let rest = async {
            match http {
                Some(l) => serve_router(l, http_router(self.clone()), limits, stopped(stop_rx))
                    .await
                    .map_err(|e| format!("HTTP server: {e}")),
                None => Ok(()),
            }
        };
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let (grpc, rest, ()) = tokio::join!(grpc, rest, signal);
        grpc.map_err(|e| format!("gRPC server: {e}"))?;
        rest
    }
}
