//! The gateway's KServe v2 gRPC service: inference, model configuration and
//! loading are forwarded to the runners holding the model; statistics are
//! summed over every live runner; metadata, readiness and the repository
//! index are answered here (from the registry, cached), as any runner would.

use crate::{Gateway, Router, statistics};
use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_proto::inference::{self as pb, grpc_inference_service_server as server};
use conduit_registry::{Manifest, Tenant};
use conduit_runner::grpc::{InferenceService, grpc_timeout};
use conduit_runner::{ServeError, instant_after};
use conduit_scheduler::RunnerRecord;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

type Client = GrpcInferenceServiceClient<Channel>;

/// The gateway's gRPC inference service.
#[derive(Debug, Clone)]
pub struct GatewayService {
    gateway: Gateway,
    /// The same calls answered over the gateway's own data plane (which only
    /// authenticates, resolves and lists: it never runs a module).
    local: InferenceService,
}

/// Who is calling and with what key (forwarded as is).
pub(crate) struct Caller {
    pub(crate) tenant: Tenant,
    authorization: AsciiMetadataValue,
    deadline: Instant,
}

impl GatewayService {
    /// The gateway it serves.
    pub(crate) fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Serves `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        let local = InferenceService::new(gateway.serving.clone());
        Self { gateway, local }
    }

    /// As a tonic service.
    pub fn into_server(self) -> server::GrpcInferenceServiceServer<Self> {
        let max = self.gateway.serving.config().max_request_bytes;
        let max_out = self.gateway.router.config().max_message_bytes;
        server::GrpcInferenceServiceServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Deflate)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max_out)
    }

    pub(crate) async fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let header = metadata.get("authorization");
        let text = header.map(|v| v.to_str().unwrap_or(""));
        let tenant = self.gateway.serving.authenticate(text).await?;
        let limits = self.gateway.serving.config().limits.of(&tenant.name);
        let mut budget = limits.request_deadline();
        // A malformed grpc-timeout is the client's bug: INVALID_ARGUMENT.
        if let Some(t) = grpc_timeout(metadata)? {
            budget = budget.min(t);
        }
        Ok(Caller {
            tenant,
            authorization: header
                .cloned()
                .unwrap_or_else(|| AsciiMetadataValue::from_static("")),
            deadline: instant_after(Instant::now(), budget),
        })
    }

    /// Sends `message` to a runner serving `manifest`, and to another when
    /// that one is lost or refuses, until one answers or the attempts or the
    /// deadline run out.
    async fn forward<M: Clone, R>(
        &self,
        caller: &Caller,
        manifest: &Manifest,
        message: M,
        call: impl AsyncFn(Client, Request<M>) -> Result<Response<R>, Status>,
    ) -> Result<Response<R>, Status> {
        let (answer, _) = self
            .route(caller, manifest, message, Router::grpc, call)
            .await?;
        Ok(answer)
    }

    /// [`GatewayService::forward`] for any service of a runner: `client`
    /// makes its client, `call` calls it. Also says which runner answered.
    pub(crate) async fn route<C, M: Clone, R>(
        &self,
        caller: &Caller,
        manifest: &Manifest,
        message: M,
        client: fn(&Router, &RunnerRecord) -> C,
        call: impl AsyncFn(C, Request<M>) -> Result<Response<R>, Status>,
    ) -> Result<(Response<R>, RunnerRecord), Status> {
        let router = &self.gateway.router;
        let mut tried: Vec<String> = Vec::new();
        let mut last: Option<Status> = None;
        router.counters().forwarded.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..router.config().max_attempts {
            let target = match router
                .next(&caller.tenant, manifest, &tried, caller.deadline)
                .await
            {
                Ok(t) => t,
                // Out of runners: the last runner's own answer says more.
                Err(e) => return Err(last.unwrap_or_else(|| e.into())),
            };
            if attempt > 0 {
                router.counters().retries.fetch_add(1, Ordering::Relaxed);
            }
            let left = caller.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut request = Request::new(message.clone());
            request
                .metadata_mut()
                .insert("authorization", caller.authorization.clone());
            request.set_timeout(left);
            match call(client(router, &target.runner), request).await {
                Ok(response) => {
                    target.served();
                    return Ok((response, target.runner.clone()));
                }
                Err(status) if crate::router::retryable(&status) => {
                    if crate::router::transport_failure(&status) {
                        router.suspect(&target.runner);
                    }
                    tracing::debug!(runner = %target.runner.id, code = ?status.code(), message = status.message(), "retrying on another runner");
                    tried.push(target.runner.id.clone());
                    last = Some(status);
                }
                Err(status) => return Err(status),
            }
        }
        Err(last.unwrap_or_else(|| {
            ServeError::Deadline(format!(
                "`{}`: the request's deadline passed",
                manifest.name
            ))
            .into()
        }))
    }

    /// Sends `message` to every live runner at once; each runner's id and
    /// answer.
    async fn on_every_runner<M: Clone, R>(
        &self,
        caller: &Caller,
        message: M,
        call: impl AsyncFn(Client, Request<M>) -> Result<Response<R>, Status> + Clone,
    ) -> Vec<(String, Result<Response<R>, Status>)> {
        let router = &self.gateway.router;
        let calls = router.view().live_runners().into_iter().map(|runner| {
            let mut request = Request::new(message.clone());
            request
                .metadata_mut()
                .insert("authorization", caller.authorization.clone());
            request.set_timeout(caller.deadline.saturating_duration_since(Instant::now()));
            let client = router.grpc(&runner);
            let call = call.clone();
            async move { (runner.id, call(client, request).await) }
        });
        futures_util::future::join_all(calls).await
    }

    /// [`Self::on_every_runner`] where the first refusal is the answer, else
    /// the last success.
    async fn everywhere<M: Clone, R>(
        &self,
        caller: &Caller,
        message: M,
        call: impl AsyncFn(Client, Request<M>) -> Result<Response<R>, Status> + Clone,
    ) -> Result<Response<R>, Status> {
        let mut last = None;
        for (_, answer) in self.on_every_runner(caller, message, call).await {
            last = Some(answer?);
        }
        last.ok_or_else(|| ServeError::Unavailable("no live runner answered".into()).into())
    }

    async fn resolve(
        &self,
        caller: &Caller,
        name: &str,
        version: &str,
    ) -> Result<Manifest, Status> {
        Ok(self
            .gateway
            .serving
            .resolve(&caller.tenant, name, version)
            .await?)
    }
}

#[tonic::async_trait]
impl server::GrpcInferenceService for GatewayService {
    async fn server_live(
        &self,
        r: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        server::GrpcInferenceService::server_live(&self.local, r).await
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = self.gateway.health();
        if let Err(why) = &ready {
            tracing::debug!("not ready: {why}");
        }
        Ok(Response::new(pb::ServerReadyResponse {
            ready: ready.is_ok(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let message = request.into_inner();
        let manifest = match self.resolve(&caller, &message.name, &message.version).await {
            Ok(m) => m,
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Ok(Response::new(pb::ModelReadyResponse { ready: false }));
            }
            Err(s) => return Err(s),
        };
        // Asked of a runner serving it: unloading is a runner's state.
        match self
            .forward(&caller, &manifest, message, async |mut c, r| {
                c.model_ready(r).await
            })
            .await
        {
            Ok(answer) => Ok(answer),
            Err(s) if crate::router::retryable(&s) => {
                Ok(Response::new(pb::ModelReadyResponse { ready: false }))
            }
            Err(s) => Err(s),
        }
    }

    async fn server_metadata(
        &self,
        r: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        server::GrpcInferenceService::server_metadata(&self.local, r).await
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        server::GrpcInferenceService::model_metadata(&self.local, r).await
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let _permit = self.gateway.serving.admit_tenant(&caller.tenant)?;
        let mut message = request.into_inner();
        let manifest = self
            .resolve(&caller, &message.model_name, &message.model_version)
            .await?;
        // Pinned: every replica serves the version resolved here, even if a
        // tag moves while the request is retried.
        message.model_version = manifest.version.clone();
        let done = self.gateway.count(&caller.tenant, &manifest);
        let answer = self
            .forward(&caller, &manifest, message, async |mut c, r| {
                c.model_infer(r).await
            })
            .await;
        done(answer.as_ref().err().map(|s| s.code()));
        answer
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let message = request.into_inner();
        let manifest = self
            .resolve(&caller, &message.name, &message.version)
            .await?;
        self.forward(&caller, &manifest, message, async |mut c, r| {
            c.model_config(r).await
        })
        .await
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let message = request.into_inner();
        if !message.name.is_empty() {
            // An unknown model is NOT_FOUND here, as on a runner.
            self.resolve(&caller, &message.name, &message.version)
                .await?;
        }
        let answers = self
            .on_every_runner(&caller, message, async |mut c, r| {
                c.model_statistics(r).await
            })
            .await;
        let mut stats = Vec::new();
        for (id, answer) in answers {
            match answer {
                Ok(r) => stats.push(r.into_inner().model_stats),
                // A runner that never served the model has no entry for it.
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => tracing::debug!(runner = %id, error = %s, "statistics not read"),
            }
        }
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: statistics::merge(stats),
        }))
    }

    async fn repository_index(
        &self,
        r: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        server::GrpcInferenceService::repository_index(&self.local, r).await
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let message = request.into_inner();
        self.resolve(&caller, &message.model_name, "").await?;
        // Loaded wherever it may be routed: every live runner.
        self.everywhere(&caller, message, async |mut c, r| {
            c.repository_model_load(r).await
        })
        .await
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let message = request.into_inner();
        self.resolve(&caller, &message.model_name, "").await?;
        // Unloaded everywhere it may be loaded: every live runner.
        self.everywhere(&caller, message, async |mut c, r| {
            c.repository_model_unload(r).await
        })
        .await
    }
}
