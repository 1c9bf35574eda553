//! The registry seam: where a runner learns what references mean, whose keys
//! are whose, and fetches module bytes. The runner never holds a concrete
//! registry: `conduit dev` passes the registry in process, `conduit runner
//! --registry URL` a [`RemoteSource`](super::RemoteSource) over gRPC.

use bytes::Bytes;
use conduit_registry::{ListQuery, Manifest, Registry, RegistryError, Tenant};
use conduit_types::Digest;
use std::future::Future;
use std::pin::Pin;

/// What a [`ModuleSource`] call returns.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// Where a runner's modules come from.
///
/// Every call that names a tenant runs with that tenant's rights: the source
/// decides, never the runner. [`ModuleSource::fetch`] is only called with
/// digests of manifests resolved for the same tenant.
pub trait ModuleSource: Send + Sync + 'static {
    /// The tenant an API key names.
    fn authenticate<'a>(&'a self, api_key: &'a str) -> SourceFuture<'a, Tenant>;

    /// What a KServe v2 caller names with a model `name` and a `version`
    /// (empty for `latest`, a version, a tag or a digest), within `name`.
    fn resolve_in_module<'a>(
        &'a self,
        tenant: &'a Tenant,
        name: &'a str,
        version: &'a str,
    ) -> SourceFuture<'a, Manifest>;

    /// What a reference (`name`, `name@version`, `name:tag`, a digest)
    /// resolves to for `tenant`.
    fn resolve<'a>(&'a self, tenant: &'a Tenant, reference: &'a str) -> SourceFuture<'a, Manifest>;

    /// One page of `tenant`'s modules and the next page's token.
    fn list<'a>(
        &'a self,
        tenant: &'a Tenant,
        query: &'a ListQuery,
    ) -> SourceFuture<'a, (Vec<Manifest>, String)>;

    /// The bytes of a blob, verified against its digest.
    fn fetch<'a>(&'a self, tenant: &'a Tenant, digest: &'a Digest) -> SourceFuture<'a, Bytes>;

    /// A value that changes whenever a cached resolution or authentication
    /// may have gone stale. The runner caches both while it stays the same.
    fn generation(&self) -> u64;

    /// Whether the source can answer now (`Err` says why not): readiness.
    fn link(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The registry in process (`conduit dev`, the tests, the bench): its reads
/// take microseconds; blob reads go to a blocking thread.
impl ModuleSource for Registry {
    fn authenticate<'a>(&'a self, api_key: &'a str) -> SourceFuture<'a, Tenant> {
        Box::pin(async move { Registry::authenticate(self, api_key) })
    }

    fn resolve_in_module<'a>(
        &'a self,
        tenant: &'a Tenant,
        name: &'a str,
        version: &'a str,
    ) -> SourceFuture<'a, Manifest> {
        Box::pin(async move { Registry::resolve_in_module(self, tenant, name, version) })
    }

    fn resolve<'a>(&'a self, tenant: &'a Tenant, reference: &'a str) -> SourceFuture<'a, Manifest> {
        Box::pin(async move { Registry::resolve(self, tenant, reference) })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a Tenant,
        query: &'a ListQuery,
    ) -> SourceFuture<'a, (Vec<Manifest>, String)> {
        Box::pin(async move { Registry::list(self, tenant, query) })
    }

    fn fetch<'a>(&'a self, tenant: &'a Tenant, digest: &'a Digest) -> SourceFuture<'a, Bytes> {
        let (registry, tenant, digest) = (self.clone(), tenant.clone(), *digest);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || registry.blob(&tenant, &digest))
                .await
                .map_err(|e| RegistryError::Storage(format!("blob read task failed: {e}")))?
        })
    }

    fn generation(&self) -> u64 {
        Registry::generation(self)
    }
}
