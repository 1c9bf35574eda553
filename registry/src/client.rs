//! A client of the registry's control plane, for the CLI, runners and tests.

use crate::convert::{hints_to_pb, kind_to_pb, manifest_from_pb, tenant_from_pb};
use crate::{
    Digest, ExecutorHints, GcReport, Kind, ListQuery, Manifest, RegistryError, Tenant,
    TenantLimits, Usage,
};
use conduit_proto::registry::v1 as pb;
use conduit_proto::registry::v1::registry_client::RegistryClient as Raw;
use futures_core::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

/// Bytes per upload message.
const CHUNK: usize = 256 << 10;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry could not be reached.
    #[error("cannot reach the registry at {url}: {message}")]
    Connect {
        /// Where we tried.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry answered with an error.
    #[error("{message}")]
    Status {
        /// gRPC status code.
        code: Code,
        /// The registry's message.
        message: String,
    },
    /// The registry sent something this client cannot read.
    #[error("unexpected reply from the registry: {0}")]
    Protocol(String),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        Self::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

impl From<RegistryError> for ClientError {
    fn from(e: RegistryError) -> Self {
        Self::Protocol(e.to_string())
    }
}

impl ClientError {
    /// The gRPC status code, when the registry answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Upload progress, shared with whoever draws a progress bar.
#[derive(Debug, Default, Clone)]
pub struct PushProgress {
    sent: Arc<AtomicU64>,
}

impl PushProgress {
    /// Bytes handed to the transport so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Streams the header then the chunks, counting bytes as the transport
/// takes them (HTTP/2 flow control makes that track the server's pace).
struct UploadStream {
    messages: std::vec::IntoIter<(pb::UploadBlobRequest, u64)>,
    progress: PushProgress,
}

impl Stream for UploadStream {
    type Item = pb::UploadBlobRequest;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.messages.next().map(|(m, n)| {
            self.progress.sent.fetch_add(n, Ordering::Relaxed);
            m
        }))
    }
}

/// A connection to a registry, authenticated with one API key.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    raw: Raw<Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl RegistryClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:7070`) with `api_key`.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the registry cannot be reached or the
    /// key is not valid header text.
    pub async fn connect(url: &str, api_key: &str) -> Result<Self, ClientError> {
        let connect = |message: String| ClientError::Connect {
            url: url.to_string(),
            message,
        };
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| connect(e.to_string()))?
            .connect()
            .await
            .map_err(|e| {
                connect(format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ))
            })?;
        Self::over(channel, api_key).map_err(connect)
    }

    /// A client of `url` that connects on first use and reconnects after a
    /// failure by itself (a runner starts, and keeps serving its caches,
    /// while the registry is down). Calls fail after `timeout` without an
    /// answer, connecting included.
    ///
    /// # Errors
    /// [`ClientError::Connect`] for a malformed URL or key.
    pub fn lazy(
        url: &str,
        api_key: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, ClientError> {
        let connect = |message: String| ClientError::Connect {
            url: url.to_string(),
            message,
        };
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| connect(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Self::over(channel, api_key).map_err(connect)
    }

    /// A client over `channel` with `api_key`, and Conduit's message limits.
    fn over(channel: Channel, api_key: &str) -> Result<Self, String> {
        Ok(Self {
            raw: Raw::new(channel)
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
            authorization: Self::header(api_key)?,
        })
    }

    /// The same connection, authenticated with another key (a runner calls
    /// the registry with each tenant's own key, never with more rights).
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the key is not valid header text.
    pub fn with_key(&self, api_key: &str) -> Result<Self, ClientError> {
        Ok(Self {
            raw: self.raw.clone(),
            authorization: Self::header(api_key).map_err(ClientError::Protocol)?,
        })
    }

    fn header(
        api_key: &str,
    ) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, String> {
        format!("Bearer {api_key}")
            .parse()
            .map_err(|_| "the API key has characters not allowed in a header".to_string())
    }

    /// The tenant this client's key names (`key_hash` holds the key's
    /// public id only).
    ///
    /// # Errors
    /// [`Code::Unauthenticated`] for an unknown key.
    pub async fn whoami(&self) -> Result<Tenant, ClientError> {
        let reply = self
            .raw
            .clone()
            .whoami(self.request(pb::WhoamiRequest {}))
            .await?
            .into_inner();
        reply
            .tenant
            .map(tenant_from_pb)
            .ok_or_else(|| ClientError::Protocol("a Whoami reply without a tenant".into()))
    }

    /// The registry's change counter: its current value first, then every
    /// new one, until the stream breaks.
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn watch(&self) -> Result<tonic::Streaming<pb::WatchEvent>, ClientError> {
        Ok(self
            .raw
            .clone()
            .watch(self.request(pb::WatchRequest {}))
            .await?
            .into_inner())
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", self.authorization.clone());
        r
    }

    /// Uploads `bytes` (digest checked by the server), reporting progress.
    ///
    /// # Errors
    /// As the registry reports them (quota, mismatch, authentication).
    pub async fn upload(
        &self,
        bytes: &[u8],
        progress: &PushProgress,
    ) -> Result<(Digest, bool), ClientError> {
        let expected = Digest::of(bytes);
        let header = pb::UploadBlobRequest {
            part: Some(pb::upload_blob_request::Part::Header(pb::UploadHeader {
                size: bytes.len() as u64,
                expected_digest: expected.to_string(),
            })),
        };
        let messages: Vec<_> = std::iter::once((header, 0))
            .chain(bytes.chunks(CHUNK).map(|c| {
                (
                    pb::UploadBlobRequest {
                        part: Some(pb::upload_blob_request::Part::Chunk(c.to_vec())),
                    },
                    c.len() as u64,
                )
            }))
            .collect();
        let stream = UploadStream {
            messages: messages.into_iter(),
            progress: progress.clone(),
        };
        let reply = self
            .raw
            .clone()
            .upload_blob(self.request(stream))
            .await?
            .into_inner();
        let digest: Digest = reply
            .digest
            .parse()
            .map_err(|e| ClientError::Protocol(format!("{e}")))?;
        if digest != expected {
            return Err(ClientError::Protocol(format!(
                "registry stored {digest}, expected {expected}"
            )));
        }
        Ok((digest, reply.deduplicated))
    }

    /// Uploads raw upload messages as given (for tests of malformed streams).
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn upload_raw(
        &self,
        messages: Vec<pb::UploadBlobRequest>,
    ) -> Result<pb::UploadBlobResponse, ClientError> {
        let stream = UploadStream {
            messages: messages
                .into_iter()
                .map(|m| (m, 0))
                .collect::<Vec<_>>()
                .into_iter(),
            progress: PushProgress::default(),
        };
        Ok(self
            .raw
            .clone()
            .upload_blob(self.request(stream))
            .await?
            .into_inner())
    }

    /// Downloads a blob.
    ///
    /// # Errors
    /// [`Code::NotFound`] when the tenant has no such blob.
    pub async fn download(&self, digest: &Digest) -> Result<Vec<u8>, ClientError> {
        let mut stream = self
            .raw
            .clone()
            .download_blob(self.request(pb::DownloadBlobRequest {
                digest: digest.to_string(),
            }))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Registers a version over an uploaded blob; returns the manifest and
    /// whether it was new.
    ///
    /// # Errors
    /// As the registry reports them (validation, immutability, names).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_manifest(
        &self,
        kind: Kind,
        name: &str,
        version: &str,
        digest: &Digest,
        executor: &ExecutorHints,
        tags: &[String],
        references: &[String],
    ) -> Result<(Manifest, bool), ClientError> {
        let reply = self
            .raw
            .clone()
            .put_manifest(self.request(pb::PutManifestRequest {
                kind: kind_to_pb(kind) as i32,
                name: name.to_string(),
                version: version.to_string(),
                digest: digest.to_string(),
                executor: Some(hints_to_pb(executor)),
                tags: tags.to_vec(),
                references: references.to_vec(),
            }))
            .await?
            .into_inner();
        Ok((manifest(reply.manifest)?, reply.created))
    }

    /// Checks the push ([`RegistryClient::check_push`]), uploads `bytes`
    /// unless this version holds them already, and registers them as
    /// `name@version`.
    ///
    /// # Errors
    /// As [`RegistryClient::check_push`], [`RegistryClient::upload`] and
    /// [`RegistryClient::put_manifest`].
    pub async fn push(
        &self,
        kind: Kind,
        name: &str,
        version: &str,
        bytes: &[u8],
        tags: &[String],
        progress: &PushProgress,
    ) -> Result<(Manifest, bool), ClientError> {
        let digest = Digest::of(bytes);
        let exists = self
            .check_push(kind, name, version, tags, bytes.len() as u64, Some(&digest))
            .await?;
        if !exists {
            self.upload(bytes, progress).await?;
        }
        self.put_manifest(
            kind,
            name,
            version,
            &digest,
            &ExecutorHints::default(),
            tags,
            &[],
        )
        .await
    }

    /// Resolves a reference.
    ///
    /// # Errors
    /// [`Code::NotFound`] when nothing matches in the tenant's namespace.
    pub async fn resolve(&self, reference: &str) -> Result<Manifest, ClientError> {
        let reply = self
            .raw
            .clone()
            .resolve(self.request(pb::ResolveRequest {
                reference: reference.to_string(),
            }))
            .await?;
        manifest(reply.into_inner().manifest)
    }

    /// One page of the tenant's modules and the token of the next page
    /// (empty on the last).
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn list(&self, query: &ListQuery) -> Result<(Vec<Manifest>, String), ClientError> {
        let reply = self
            .raw
            .clone()
            .list(self.request(pb::ListRequest {
                kind: query.kind.map_or(pb::Kind::Unspecified, kind_to_pb) as i32,
                name_prefix: query.name_prefix.clone(),
                page_size: query.page_size,
                page_token: query.page_token.clone(),
            }))
            .await?
            .into_inner();
        let manifests = reply
            .manifests
            .into_iter()
            .map(manifest_from_pb)
            .collect::<Result<_, _>>()?;
        Ok((manifests, reply.next_page_token))
    }

    /// Points `tag` at what `reference` resolves to; returns the manifest and
    /// the previous version of the tag.
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn tag(
        &self,
        reference: &str,
        tag: &str,
    ) -> Result<(Manifest, Option<String>), ClientError> {
        let reply = self
            .raw
            .clone()
            .tag(self.request(pb::TagRequest {
                reference: reference.to_string(),
                tag: tag.to_string(),
            }))
            .await?
            .into_inner();
        let previous = Some(reply.previous_version).filter(|v| !v.is_empty());
        Ok((manifest(reply.manifest)?, previous))
    }

    /// Removes a tag; returns the version it pointed at.
    ///
    /// # Errors
    /// [`Code::NotFound`] when there is no such tag.
    pub async fn untag(&self, name: &str, tag: &str) -> Result<String, ClientError> {
        let reply = self
            .raw
            .clone()
            .untag(self.request(pb::UntagRequest {
                name: name.to_string(),
                tag: tag.to_string(),
            }))
            .await?;
        Ok(reply.into_inner().version)
    }

    /// Deletes one version.
    ///
    /// # Errors
    /// [`Code::FailedPrecondition`] while a tag or module references it.
    pub async fn delete(&self, reference: &str) -> Result<Manifest, ClientError> {
        let reply = self
            .raw
            .clone()
            .delete(self.request(pb::DeleteRequest {
                reference: reference.to_string(),
            }))
            .await?;
        manifest(reply.into_inner().manifest)
    }

    /// Collects garbage (admin only).
    ///
    /// # Errors
    /// [`Code::PermissionDenied`] for a non-admin key.
    pub async fn collect_garbage(
        &self,
        grace_seconds: Option<u64>,
    ) -> Result<GcReport, ClientError> {
        let r = self
            .raw
            .clone()
            .collect_garbage(self.request(pb::CollectGarbageRequest { grace_seconds }))
            .await?
            .into_inner();
        Ok(GcReport {
            blobs_removed: r.blobs_removed,
            bytes_freed: r.bytes_freed,
            blobs_kept: r.blobs_kept,
        })
    }

    /// Creates a tenant (admin only); returns its API key.
    ///
    /// # Errors
    /// [`Code::PermissionDenied`] for a non-admin key,
    /// [`Code::AlreadyExists`] when the name is taken.
    pub async fn create_tenant(
        &self,
        name: &str,
        max_upload_bytes: u64,
        max_stored_bytes: u64,
    ) -> Result<String, ClientError> {
        let r = self
            .raw
            .clone()
            .create_tenant(self.request(pb::CreateTenantRequest {
                name: name.to_string(),
                max_upload_bytes,
                max_stored_bytes,
            }))
            .await?;
        Ok(r.into_inner().api_key)
    }

    /// Runs the cheap checks of a push (names, version, tags, existing
    /// version, limits) before any byte is sent; returns whether this
    /// version exists with this content already.
    ///
    /// # Errors
    /// As the registry reports them.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_push(
        &self,
        kind: Kind,
        name: &str,
        version: &str,
        tags: &[String],
        size: u64,
        digest: Option<&Digest>,
    ) -> Result<bool, ClientError> {
        let r = self
            .raw
            .clone()
            .check_push(self.request(pb::CheckPushRequest {
                kind: kind_to_pb(kind) as i32,
                name: name.to_string(),
                version: version.to_string(),
                tags: tags.to_vec(),
                size,
                digest: digest.map(ToString::to_string).unwrap_or_default(),
            }))
            .await?;
        Ok(r.into_inner().exists)
    }

    /// What a tenant (the caller when `None`) stores and may store.
    ///
    /// # Errors
    /// [`Code::PermissionDenied`] for another tenant without an admin key.
    pub async fn usage(&self, tenant: Option<&str>) -> Result<Usage, ClientError> {
        let u = self
            .raw
            .clone()
            .usage(self.request(pb::UsageRequest {
                tenant: tenant.unwrap_or_default().to_string(),
            }))
            .await?
            .into_inner();
        Ok(Usage {
            tenant: u.tenant,
            stored_bytes: u.stored_bytes,
            limits: TenantLimits {
                max_upload_bytes: u.max_upload_bytes,
                max_stored_bytes: u.max_stored_bytes,
            },
            modules: u.modules,
            versions: u.versions,
            compiled_bytes: u.compiled_bytes,
        })
    }

    /// Every tenant (admin only).
    ///
    /// # Errors
    /// [`Code::PermissionDenied`] for a non-admin key.
    pub async fn tenants(&self) -> Result<Vec<pb::TenantInfo>, ClientError> {
        let r = self
            .raw
            .clone()
            .list_tenants(self.request(pb::ListTenantsRequest {}))
            .await?;
        Ok(r.into_inner().tenants)
    }

    /// Deletes a tenant (admin only); returns how many versions went with it.
    ///
    /// # Errors
    /// [`Code::FailedPrecondition`] while it holds modules and not `force`.
    pub async fn delete_tenant(&self, name: &str, force: bool) -> Result<u64, ClientError> {
        let r = self
            .raw
            .clone()
            .delete_tenant(self.request(pb::DeleteTenantRequest {
                name: name.to_string(),
                force,
            }))
            .await?;
        Ok(r.into_inner().versions_deleted)
    }

    /// Replaces a tenant's key (the caller's own when `None`); returns the
    /// tenant and its new key.
    ///
    /// # Errors
    /// [`Code::PermissionDenied`] for another tenant without an admin key.
    pub async fn rotate_key(&self, tenant: Option<&str>) -> Result<(String, String), ClientError> {
        let r = self
            .raw
            .clone()
            .rotate_key(self.request(pb::RotateKeyRequest {
                tenant: tenant.unwrap_or_default().to_string(),
            }))
            .await?
            .into_inner();
        Ok((r.tenant, r.api_key))
    }
}

fn manifest(m: Option<pb::Manifest>) -> Result<Manifest, ClientError> {
    let m = m.ok_or_else(|| ClientError::Protocol("reply without a manifest".into()))?;
    Ok(manifest_from_pb(m)?)
}
