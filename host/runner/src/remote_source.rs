//! The registry over gRPC, as a runner apart from it (`conduit runner
//! --registry URL`) sees it.
//!
//! - **Keys:** each tenant's calls go out with that tenant's own API key
//!   (learned when the tenant's request authenticated), so the registry
//!   decides what a tenant may read; the runner's own key only opens the
//!   watch.
//! - **The watch:** one stream of the registry's change counter. Every new
//!   value, and every reconnect (changes may have been missed), moves
//!   [`ModuleSource::generation`], which drops the runner's cached
//!   resolutions and authentications (kept by `Serving`): a moved tag is
//!   served as soon as the event arrives.
//! - **The link down** (the watch broken): cached resolutions, keys and
//!   blobs keep serving as of the last sync; anything not cached fails at
//!   once with UNAVAILABLE (no call waits on a dead registry). The watch
//!   reconnects with backoff (0.1 s doubling to 2 s) and resynchronizes.
//! - **Blobs** are cached on disk by digest, verified with blake3 when
//!   fetched and again when read back (a corrupted file is fetched again).

use super::source::{ModuleSource, SourceFuture};
use bytes::Bytes;
use conduit_registry::{
    ClientError, Code, ListQuery, Manifest, Reference, RegistryClient, RegistryError, Tenant,
};
use conduit_types::Digest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a runner reaches its registry.
#[derive(Debug, Clone)]
pub struct RemoteSourceConfig {
    /// The registry's gRPC URL, e.g. `http://10.0.0.5:7070`.
    pub url: String,
    /// The runner's own API key (any tenant's): opens the change watch.
    pub api_key: String,
    /// Where fetched blobs are kept, by digest.
    pub blob_dir: PathBuf,
    /// How long one registry call may take, connecting included.
    pub timeout: Duration,
}

/// A [`ModuleSource`] over the registry's gRPC service, with a blob cache on
/// disk and a change watch. Dropping it stops the watch.
pub struct RemoteSource {
    shared: Arc<Shared>,
    watch: tokio::task::JoinHandle<()>,
}

struct Shared {
    url: String,
    base: RegistryClient,
    blob_dir: PathBuf,
    /// Moves on every registry change and every reconnect.
    view: AtomicU64,
    linked: AtomicBool,
    last_error: Mutex<String>,
    /// Tenant → a client carrying its latest key.
    clients: Mutex<HashMap<String, RegistryClient>>,
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSource")
            .field("url", &self.shared.url)
            .field("linked", &self.shared.linked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteSource {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl RemoteSource {
    /// Starts the watch (in the current tokio runtime) and returns at once:
    /// the registry may be down; [`ModuleSource::link`] says when it is up.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for a malformed URL or key;
    /// [`RegistryError::Storage`] when the blob directory cannot be made.
    pub fn start(config: RemoteSourceConfig) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(&config.blob_dir)
            .map_err(|e| RegistryError::Storage(format!("{}: {e}", config.blob_dir.display())))?;
        let base = RegistryClient::lazy(&config.url, &config.api_key, config.timeout)
            .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
        let shared = Arc::new(Shared {
            url: config.url,
            base,
            blob_dir: config.blob_dir,
            view: AtomicU64::new(0),
            linked: AtomicBool::new(false),
            last_error: Mutex::new("not connected yet".into()),
            clients: Mutex::default(),
        });
        let watch = tokio::spawn(watch(shared.clone()));
        Ok(Self { shared, watch })
    }

    /// Waits up to `timeout` for the link to come up; whether it did.
    pub async fn wait_linked(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while !self.shared.linked.load(Ordering::Acquire) {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Follows the registry's change counter for as long as the source lives.
async fn watch(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match shared.base.watch().await {
            Ok(mut stream) => {
                let mut first = true;
                let mut last = 0;
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            if first || event.generation != last {
                                shared.view.fetch_add(1, Ordering::AcqRel);
                            }
                            if first {
                                shared.linked.store(true, Ordering::Release);
                                tracing::info!(registry = %shared.url, "registry link up");
                                backoff = Duration::from_millis(100);
                                first = false;
                            }
                            last = event.generation;
                        }
                        Ok(None) => {
                            shared.lost("the registry closed the watch".into());
                            break;
                        }
                        Err(status) => {
                            shared.lost(status.message().to_string());
                            break;
                        }
                    }
                }
            }
            Err(e) => shared.lost(e.to_string()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Shared {
    fn lost(&self, why: String) {
        if self.linked.swap(false, Ordering::AcqRel) {
            tracing::warn!(registry = %self.url, "registry link down: {why}; serving what is cached");
        }
        *self.last_error.lock().expect("link error lock") = why;
    }

    fn down(&self, what: &str) -> RegistryError {
        RegistryError::Unavailable(format!(
            "{what}: the registry at {} is unreachable ({}); only modules this runner has \
             cached are served until it is back",
            self.url,
            self.last_error.lock().expect("link error lock")
        ))
    }

    fn check_link(&self, what: &str) -> Result<(), RegistryError> {
        if self.linked.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(self.down(what))
        }
    }

    fn client(&self, tenant: &Tenant) -> Result<RegistryClient, RegistryError> {
        self.clients
            .lock()
            .expect("clients lock")
            .get(&tenant.name)
            .cloned()
            .ok_or_else(|| {
                RegistryError::Unauthenticated(format!(
                    "no API key of tenant `{}` seen by this runner",
                    tenant.name
                ))
            })
    }

    fn error(&self, what: &str, e: ClientError) -> RegistryError {
        let message = e.to_string();
        match e.code() {
            None => self.down(what),
            Some(Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled) => self.down(what),
            Some(Code::Unauthenticated) => RegistryError::Unauthenticated(message),
            Some(Code::PermissionDenied) => RegistryError::PermissionDenied(message),
            Some(Code::NotFound) => RegistryError::NotFound(message),
            Some(Code::InvalidArgument) => RegistryError::InvalidArgument(message),
            Some(Code::AlreadyExists) => RegistryError::AlreadyExists(message),
            Some(Code::FailedPrecondition) => RegistryError::FailedPrecondition(message),
            Some(Code::ResourceExhausted) => RegistryError::QuotaExceeded(message),
            Some(_) => RegistryError::Storage(message),
        }
    }

    async fn resolve(&self, tenant: &Tenant, reference: &str) -> Result<Manifest, RegistryError> {
        let what = format!("cannot resolve `{reference}`");
        self.check_link(&what)?;
        self.client(tenant)?
            .resolve(reference)
            .await
            .map_err(|e| self.error(&what, e))
    }

    async fn fetch(&self, tenant: &Tenant, digest: &Digest) -> Result<Bytes, RegistryError> {
        let path = self.blob_dir.join(digest.hex());
        if let Some(bytes) = read_verified(&path, digest).await {
            return Ok(bytes);
        }
        let what = format!("module {} is not cached here", digest.short());
        self.check_link(&what)?;
        let bytes = self
            .client(tenant)?
            .download(digest)
            .await
            .map_err(|e| self.error(&what, e))?;
        if Digest::of(&bytes) != *digest {
            return Err(RegistryError::Storage(format!(
                "the registry sent bytes that do not hash to {digest}"
            )));
        }
        let bytes = Bytes::from(bytes);
        let (keep, dir) = (bytes.clone(), self.blob_dir.clone());
        // The cache is an optimisation: a failed write is logged, not fatal.
        let written = tokio::task::spawn_blocking(move || write_atomic(&dir, &path, &keep)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!("cannot cache blob {}: {e}", digest.short());
        }
        Ok(bytes)
    }
}

/// The cached blob at `path` if it hashes to `digest`; a file that does not
/// is removed.
async fn read_verified(path: &Path, digest: &Digest) -> Option<Bytes> {
    let (path, digest) = (path.to_path_buf(), *digest);
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path).ok()?;
        if Digest::of(&bytes) == digest {
            return Some(Bytes::from(bytes));
        }
        tracing::warn!(
            "cached blob {} does not match its digest; fetching it again",
            digest.short()
        );
        let _ = std::fs::remove_file(&path);
        None
    })
    .await
    .ok()
    .flatten()
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl ModuleSource for RemoteSource {
    fn authenticate<'a>(&'a self, api_key: &'a str) -> SourceFuture<'a, Tenant> {
        Box::pin(async move {
            // Not cached here: `Serving` keeps keys per generation.
            let s = &self.shared;
            s.check_link("cannot check the API key")?;
            let client = s
                .base
                .with_key(api_key)
                .map_err(|e| RegistryError::Unauthenticated(e.to_string()))?;
            let tenant = client
                .whoami()
                .await
                .map_err(|e| s.error("cannot check the API key", e))?;
            s.clients
                .lock()
                .expect("clients lock")
                .insert(tenant.name.clone(), client);
            Ok(tenant)
        })
    }

    fn resolve_in_module<'a>(
        &'a self,
        tenant: &'a Tenant,
        name: &'a str,
        version: &'a str,
    ) -> SourceFuture<'a, Manifest> {
        Box::pin(async move {
            let reference = Reference::in_module(name, version)?.to_string();
            self.shared.resolve(tenant, &reference).await
        })
    }

    fn resolve<'a>(&'a self, tenant: &'a Tenant, reference: &'a str) -> SourceFuture<'a, Manifest> {
        Box::pin(self.shared.resolve(tenant, reference))
    }

    fn list<'a>(
        &'a self,
        tenant: &'a Tenant,
        query: &'a ListQuery,
    ) -> SourceFuture<'a, (Vec<Manifest>, String)> {
        Box::pin(async move {
            let s = &self.shared;
            s.check_link("cannot list modules")?;
            s.client(tenant)?
                .list(query)
                .await
                .map_err(|e| s.error("cannot list modules", e))
        })
    }

    fn fetch<'a>(&'a self, tenant: &'a Tenant, digest: &'a Digest) -> SourceFuture<'a, Bytes> {
        Box::pin(self.shared.fetch(tenant, digest))
    }

    fn generation(&self) -> u64 {
        self.shared.view.load(Ordering::Acquire)
    }

    fn link(&self) -> Result<(), String> {
        if self.shared.linked.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(format!(
                "registry {} unreachable: {}",
                self.shared.url,
                self.shared.last_error.lock().expect("link error lock")
            ))
        }
    }
}
