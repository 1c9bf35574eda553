//! KServe v2 gRPC (`inference.GRPCInferenceService`) over [`Serving`].
//!
//! Server health and metadata answer without a key (probes have none);
//! every model call needs `authorization: Bearer <key>`, which selects the
//! tenant. Errors map to codes in one place ([`ServeError::to_status`]).

use super::{Serving, wire};
use conduit_proto::inference::{self as pb, grpc_inference_service_server as server};
use conduit_registry::Tenant;
use std::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

/// The gRPC inference service.
#[derive(Debug, Clone)]
pub struct InferenceService {
    serving: Serving,
}

impl InferenceService {
    /// Serves `serving`.
    pub fn new(serving: Serving) -> Self {
        Self { serving }
    }

    /// As a tonic service, refusing messages over the configured request
    /// size. Serve it behind [`HoldGuardLayer`](super::HoldGuardLayer) so a
    /// tenant's permit lasts until its answer is sent.
    pub fn into_server(self) -> server::GrpcInferenceServiceServer<Self> {
        let config = self.serving.config();
        let (max_in, max_out) = (config.max_request_bytes, config.max_response_bytes);
        server::GrpcInferenceServiceServer::new(self)
            // tritonclient's `compression_algorithm`: the size limit below
            // holds for the decompressed message too (tonic stops inflating
            // at it). Answers go uncompressed, as Triton's by default.
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Deflate)
            .max_decoding_message_size(max_in)
            // A backstop: answers are checked against the limit before
            // encoding; this allows for the message's own framing.
            .max_encoding_message_size(max_out.saturating_add(1 << 20))
    }

    async fn tenant<T>(&self, request: &Request<T>) -> Result<Tenant, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or(""));
        Ok(self.serving.authenticate(header).await?)
    }
}

/// `grpc-timeout` as a duration (`<n><unit>`, unit one of H M S m u n).
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => std::time::Duration::from_secs(n * 3600),
        "M" => std::time::Duration::from_secs(n * 60),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl server::GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = self.serving.health();
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
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let ready = match self.serving.ready(&tenant, &r.name, &r.version).await {
            Ok(ready) => ready,
            Err(super::ServeError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "conduit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: super::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let m = self.serving.resolve(&tenant, &r.name, &r.version).await?;
        let versions = self.serving.versions(&tenant, &m.name).await?;
        let meta = |t: &conduit_registry::TensorSpec| pb::model_metadata_response::TensorMetadata {
            name: t.name.clone(),
            datatype: t.datatype.clone(),
            shape: t.shape.clone(),
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.clone(),
            versions: versions.into_iter().map(|v| v.version).collect(),
            platform: wire::platform(m.kind).into(),
            inputs: m.signature.inputs.iter().map(meta).collect(),
            outputs: m.signature.outputs.iter().map(meta).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let received = Instant::now();
        let tenant = self.tenant(&request).await?;
        let timeout = grpc_timeout(request.metadata());
        let request = request.into_inner();
        let (model, version) = (request.model_name.clone(), request.model_version.clone());
        let mut infer = match wire::decode_request(request) {
            Ok(infer) => infer,
            Err(e) => {
                self.serving
                    .decode_failed(&tenant, &model, &version, &e)
                    .await;
                return Err(e.into());
            }
        };
        infer.received = Some(received);
        if let Some(t) = timeout {
            infer.timeout = Some(infer.timeout.map_or(t, |mine| mine.min(t)));
        }
        let mut answer = self.serving.infer(&tenant, infer).await?;
        let guard = answer.guard.take();
        let mut response = Response::new(wire::encode_response(answer));
        if let Some(guard) = guard {
            response.extensions_mut().insert(guard);
        }
        Ok(response)
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let config = self
            .serving
            .model_config(&tenant, &r.name, &r.version)
            .await?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let stats = self
            .serving
            .statistics(&tenant, &r.name, &r.version)
            .await?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats.iter().map(|(k, c)| wire::statistics(k, c)).collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        let models = self.serving.index(&tenant, r.ready).await?;
        Ok(Response::new(pb::RepositoryIndexResponse {
            models: models
                .into_iter()
                .map(|m| pb::repository_index_response::ModelIndex {
                    name: m.name,
                    version: m.version,
                    state: m.state.into(),
                    reason: m.reason,
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        self.serving
            .load(
                &tenant,
                &r.model_name,
                r.parameters.keys().map(String::as_str),
            )
            .await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let tenant = self.tenant(&request).await?;
        let r = request.into_inner();
        self.serving.unload(&tenant, &r.model_name).await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}
