//! The gRPC control plane (`conduit.registry.v1.Registry`) over a
//! [`Registry`]. The one place registry errors become status codes.

use crate::convert::{hints_from_pb, kind_from_pb, manifest_to_pb, tenant_to_pb};
use crate::registry::{ListQuery, NewManifest, Registry};
use crate::{RegistryError, Tenant, TenantLimits, bearer_key};
use conduit_proto::registry::v1 as pb;
use conduit_proto::registry::v1::registry_server::RegistryServer;
use futures_core::Stream;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

/// Largest message the service accepts (upload chunks are far smaller).
const MAX_MESSAGE: usize = 16 << 20;
/// Chunk size of downloads.
const DOWNLOAD_CHUNK: usize = 1 << 20;

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        // The last guard: whatever a message echoes, no status leaves with
        // more than `MAX_MESSAGE_BYTES` of it (grpcio clients drop larger
        // metadata and report RESOURCE_EXHAUSTED instead).
        let message = conduit_types::cap_message(e.to_string());
        match e {
            RegistryError::Unauthenticated(_) => Status::unauthenticated(message),
            RegistryError::PermissionDenied(_) => Status::permission_denied(message),
            RegistryError::NotFound(_) => Status::not_found(message),
            RegistryError::InvalidArgument(_) => Status::invalid_argument(message),
            RegistryError::AlreadyExists(_) => Status::already_exists(message),
            RegistryError::FailedPrecondition(_) => Status::failed_precondition(message),
            RegistryError::QuotaExceeded(_) => Status::resource_exhausted(message),
            RegistryError::Unavailable(_) => Status::unavailable(message),
            RegistryError::Storage(_) => Status::internal(message),
        }
    }
}

/// The registry's gRPC service.
#[derive(Debug, Clone)]
pub struct RegistryService {
    registry: Registry,
}

impl RegistryService {
    /// Serves `registry`.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    /// The tonic server for this service, with Conduit's message limits.
    pub fn into_server(self) -> RegistryServer<Self> {
        RegistryServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Tenant, Status> {
        // A value that is not text reads as empty: a missing key.
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default());
        Ok(self.registry.authenticate(bearer_key(header)?)?)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Registry) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, Status> {
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || f(registry))
            .await
            .map_err(|e| Status::internal(format!("registry task failed: {e}")))?
            .map_err(Status::from)
    }
}

/// Serves the registry on `listener` until `shutdown` completes.
///
/// # Errors
/// When the transport fails.
pub async fn serve(
    registry: Registry,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        // A client's undecodable message or broken framing is
        // INVALID_ARGUMENT, not tonic's INTERNAL.
        .layer(conduit_proto::ClientFaultLayer)
        .add_service(RegistryService::new(registry).into_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

type GenerationStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::BlobChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn upload_blob(
        &self,
        request: Request<Streaming<pb::UploadBlobRequest>>,
    ) -> Result<Response<pb::UploadBlobResponse>, Status> {
        let caller = self.caller(&request)?;
        let mut stream = request.into_inner();
        let header = match stream.message().await?.and_then(|m| m.part) {
            Some(pb::upload_blob_request::Part::Header(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "an upload starts with a header message (size, expected digest)",
                ));
            }
        };
        let expected = match header.expected_digest.as_str() {
            "" => None,
            d => Some(
                d.parse()
                    .map_err(|e| Status::invalid_argument(format!("{e}")))?,
            ),
        };
        let mut upload = self.registry.begin_upload(&caller, header.size, expected)?;
        // A stream that breaks (client gone, transport error) drops the
        // upload, which discards its partial bytes.
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(pb::upload_blob_request::Part::Chunk(bytes)) => upload.write(&bytes)?,
                _ => {
                    return Err(Status::invalid_argument(
                        "only data chunks may follow the header",
                    ));
                }
            }
        }
        let committed = tokio::task::spawn_blocking(move || upload.finish())
            .await
            .map_err(|e| Status::internal(format!("upload task failed: {e}")))??;
        tracing::debug!(tenant = %caller.name, digest = %committed.digest, size = committed.size, "blob uploaded");
        Ok(Response::new(pb::UploadBlobResponse {
            digest: committed.digest.to_string(),
            size: committed.size,
            deduplicated: committed.deduplicated,
        }))
    }

    type DownloadBlobStream = ChunkStream;

    async fn download_blob(
        &self,
        request: Request<pb::DownloadBlobRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let caller = self.caller(&request)?;
        let digest = request
            .into_inner()
            .digest
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let bytes = self.blocking(move |r| r.blob(&caller, &digest)).await?;
        let chunks: Vec<Result<pb::BlobChunk, Status>> =
            (0..bytes.len().div_ceil(DOWNLOAD_CHUNK).max(1))
                .map(|i| {
                    let end = ((i + 1) * DOWNLOAD_CHUNK).min(bytes.len());
                    Ok(pb::BlobChunk {
                        data: bytes.slice(i * DOWNLOAD_CHUNK..end).to_vec(),
                    })
                })
                .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn put_manifest(
        &self,
        request: Request<pb::PutManifestRequest>,
    ) -> Result<Response<pb::PutManifestResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let kind = kind_from_pb(r.kind)?.ok_or_else(|| {
            Status::invalid_argument("kind is required: component, model or pipeline")
        })?;
        let digest = r
            .digest
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let request = NewManifest {
            kind,
            name: r.name,
            version: r.version,
            digest,
            executor: hints_from_pb(r.executor),
            tags: r.tags,
            references: r.references,
        };
        let (manifest, created) = self.registry.put_manifest(&caller, request).await?;
        Ok(Response::new(pb::PutManifestResponse {
            manifest: Some(manifest_to_pb(&manifest)),
            created,
        }))
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let caller = self.caller(&request)?;
        let m = self
            .registry
            .resolve(&caller, &request.into_inner().reference)?;
        Ok(Response::new(pb::ResolveResponse {
            manifest: Some(manifest_to_pb(&m)),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let query = ListQuery {
            kind: kind_from_pb(r.kind)?,
            name_prefix: r.name_prefix,
            page_size: r.page_size,
            page_token: r.page_token,
        };
        let (manifests, next_page_token) = self.registry.list(&caller, &query)?;
        Ok(Response::new(pb::ListResponse {
            manifests: manifests.iter().map(manifest_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn tag(
        &self,
        request: Request<pb::TagRequest>,
    ) -> Result<Response<pb::TagResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let (m, previous) = self
            .blocking(move |reg| reg.tag(&caller, &r.reference, &r.tag))
            .await?;
        Ok(Response::new(pb::TagResponse {
            manifest: Some(manifest_to_pb(&m)),
            previous_version: previous.unwrap_or_default(),
        }))
    }

    async fn untag(
        &self,
        request: Request<pb::UntagRequest>,
    ) -> Result<Response<pb::UntagResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let version = self
            .blocking(move |reg| reg.untag(&caller, &r.name, &r.tag))
            .await?;
        Ok(Response::new(pb::UntagResponse { version }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = self.caller(&request)?;
        let reference = request.into_inner().reference;
        let m = self
            .blocking(move |reg| reg.delete(&caller, &reference))
            .await?;
        Ok(Response::new(pb::DeleteResponse {
            manifest: Some(manifest_to_pb(&m)),
        }))
    }

    async fn collect_garbage(
        &self,
        request: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        let caller = self.caller(&request)?;
        let grace = Duration::from_secs(request.into_inner().grace_seconds.unwrap_or(3600));
        let report = self
            .blocking(move |reg| reg.collect_garbage(&caller, grace))
            .await?;
        Ok(Response::new(pb::CollectGarbageResponse {
            blobs_removed: report.blobs_removed,
            bytes_freed: report.bytes_freed,
            blobs_kept: report.blobs_kept,
        }))
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let limits = (r.max_upload_bytes != 0 || r.max_stored_bytes != 0).then(|| {
            let d = self.registry.default_limits();
            TenantLimits {
                max_upload_bytes: if r.max_upload_bytes == 0 {
                    d.max_upload_bytes
                } else {
                    r.max_upload_bytes
                },
                max_stored_bytes: if r.max_stored_bytes == 0 {
                    d.max_stored_bytes
                } else {
                    r.max_stored_bytes
                },
            }
        });
        let (tenant, api_key) = self
            .blocking(move |reg| reg.create_tenant(&caller, &r.name, limits))
            .await?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: tenant.name,
            api_key,
        }))
    }

    async fn check_push(
        &self,
        request: Request<pb::CheckPushRequest>,
    ) -> Result<Response<pb::CheckPushResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let kind = kind_from_pb(r.kind)?.ok_or_else(|| {
            Status::invalid_argument("kind is required: component, model or pipeline")
        })?;
        let digest = match r.digest.as_str() {
            "" => None,
            d => Some(
                d.parse()
                    .map_err(|e| Status::invalid_argument(format!("{e}")))?,
            ),
        };
        let exists = self.registry.check_push(
            &caller,
            kind,
            &r.name,
            &r.version,
            &r.tags,
            r.size,
            digest.as_ref(),
        )?;
        Ok(Response::new(pb::CheckPushResponse { exists }))
    }

    async fn usage(
        &self,
        request: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let u = self
            .blocking(move |reg| {
                reg.usage(&caller, Some(r.tenant.as_str()).filter(|t| !t.is_empty()))
            })
            .await?;
        Ok(Response::new(pb::UsageResponse {
            tenant: u.tenant,
            stored_bytes: u.stored_bytes,
            max_stored_bytes: u.limits.max_stored_bytes,
            max_upload_bytes: u.limits.max_upload_bytes,
            modules: u.modules,
            versions: u.versions,
            compiled_bytes: u.compiled_bytes,
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let caller = self.caller(&request)?;
        let tenants = self.registry.tenants(&caller)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.iter().map(tenant_to_pb).collect(),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let versions_deleted = self
            .blocking(move |reg| reg.delete_tenant(&caller, &r.name, r.force))
            .await?;
        Ok(Response::new(pb::DeleteTenantResponse { versions_deleted }))
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        let (tenant, api_key) = self
            .blocking(move |reg| {
                reg.rotate_key(&caller, Some(r.tenant.as_str()).filter(|t| !t.is_empty()))
            })
            .await?;
        Ok(Response::new(pb::RotateKeyResponse { tenant, api_key }))
    }

    async fn whoami(
        &self,
        request: Request<pb::WhoamiRequest>,
    ) -> Result<Response<pb::WhoamiResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(pb::WhoamiResponse {
            tenant: Some(tenant_to_pb(&caller)),
        }))
    }

    type WatchStream = GenerationStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<GenerationStream>, Status> {
        self.caller(&request)?;
        let changes = tokio_stream::wrappers::WatchStream::new(self.registry.subscribe());
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            changes,
            |generation| Ok(pb::WatchEvent { generation }),
        ))))
    }
}
