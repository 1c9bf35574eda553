//! The registry: tenants, uploads, manifests, tags — every operation scoped
//! to the calling tenant.

use crate::blob::{BlobStore, BlobWriter, Committed};
use crate::manifest::{rfc3339, unix_now};
use crate::names::{
    Reference, check_name, check_tenant, check_user_tag, parse_version, shown, split_tenant,
};
use crate::store::{self, BY_DIGEST, KEYS, MANIFESTS, TAGS, TENANTS, UPLOADS, UploadRecord};
use crate::tenant::{hash_key, new_key};
use crate::validate::{Candidate, Validator};
use crate::{
    Digest, ExecutorHints, Kind, LocalBlobStore, Manifest, PipelineDef, RegistryError, Tenant,
    TenantLimits,
};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How to open a [`Registry`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Data directory: `registry.redb` and `blobs/` live here.
    pub root: PathBuf,
    /// Limits given to tenants created without their own.
    pub default_limits: TenantLimits,
}

/// The tenant created when a registry opens on an empty data directory.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// Its name (`default`); it is an admin.
    pub tenant: String,
    /// Its API key: shown once, stored only as a hash.
    pub api_key: String,
}

/// A request to register one module version.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// What it is.
    pub kind: Kind,
    /// Module name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// The uploaded blob.
    pub digest: Digest,
    /// Executor hints (models).
    pub executor: ExecutorHints,
    /// Tags to point at it (besides `latest`).
    pub tags: Vec<String>,
    /// Modules it uses; pinned to `name@version` at registration.
    pub references: Vec<String>,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only names starting with this.
    pub name_prefix: String,
    /// Page size (default 100, at most 1000).
    pub page_size: u32,
    /// Continue after this token.
    pub page_token: String,
}

/// What a tenant stores and may store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The tenant.
    pub tenant: String,
    /// Bytes charged: the distinct blobs its manifests name, plus its
    /// uploads no manifest names yet (until registered, rejected, or
    /// collected after the grace period).
    pub stored_bytes: u64,
    /// Its limits.
    pub limits: TenantLimits,
    /// Distinct module names.
    pub modules: u64,
    /// Module versions.
    pub versions: u64,
    /// Bytes of what validation derived from its modules and keeps
    /// (compiled components in the runtime's disk cache); not charged.
    pub compiled_bytes: u64,
}

/// What garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Bytes those blobs held.
    pub bytes_freed: u64,
    /// Blobs kept (referenced, or uploaded within the grace period).
    pub blobs_kept: u64,
}

/// The registry. Cheap to clone; safe to share across threads. Methods
/// block on disk I/O: call them from a blocking context (the gRPC service
/// uses `spawn_blocking`), except reads, which take microseconds.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    blobs: Arc<dyn BlobStore>,
    validator: Arc<dyn Validator>,
    config: RegistryConfig,
    /// Bumped after every change to what a reference resolves to (and to
    /// tenants and keys); watchers see every new value.
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("root", &self.inner.config.root)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry in `config.root` with the local blob store; on an
    /// empty directory, creates the admin tenant `default` and returns its key.
    ///
    /// # Errors
    /// [`RegistryError::Storage`] when the directory or database cannot be
    /// opened (e.g. another process holds it).
    pub fn open(
        config: RegistryConfig,
        validator: Arc<dyn Validator>,
    ) -> Result<(Self, Option<Bootstrap>), RegistryError> {
        let blobs = Arc::new(LocalBlobStore::open(config.root.join("blobs"))?);
        Self::open_with(config, blobs, validator)
    }

    /// Like [`Registry::open`] with another blob store.
    ///
    /// # Errors
    /// [`RegistryError::Storage`] when the database cannot be opened.
    pub fn open_with(
        config: RegistryConfig,
        blobs: Arc<dyn BlobStore>,
        validator: Arc<dyn Validator>,
    ) -> Result<(Self, Option<Bootstrap>), RegistryError> {
        std::fs::create_dir_all(&config.root)
            .map_err(|e| RegistryError::Storage(format!("{}: {e}", config.root.display())))?;
        let db = Database::create(config.root.join("registry.redb"))?;
        let txn = db.begin_write()?;
        for table in store::ALL_TABLES {
            txn.open_table(table)?;
        }
        txn.commit()?;
        let registry = Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                validator,
                config,
                generation: tokio::sync::watch::Sender::new(0),
            }),
        };
        let empty = registry
            .inner
            .db
            .begin_read()?
            .open_table(TENANTS)?
            .is_empty()?;
        let bootstrap = if empty {
            let limits = registry.inner.config.default_limits;
            let api_key = registry.insert_tenant("default", true, limits)?;
            tracing::info!("created admin tenant `default`");
            Some(Bootstrap {
                tenant: "default".into(),
                api_key,
            })
        } else {
            None
        };
        Ok((registry, bootstrap))
    }

    /// Limits given to tenants created without their own.
    pub fn default_limits(&self) -> TenantLimits {
        self.inner.config.default_limits
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// The tenant whose API key this is.
    ///
    /// # Errors
    /// [`RegistryError::Unauthenticated`] for an empty or unknown key.
    pub fn authenticate(&self, api_key: &str) -> Result<Tenant, RegistryError> {
        if api_key.is_empty() {
            return Err(RegistryError::Unauthenticated(
                "missing API key: send `authorization: Bearer <key>`".into(),
            ));
        }
        let txn = self.inner.db.begin_read()?;
        let keys = txn.open_table(KEYS)?;
        let tenants = txn.open_table(TENANTS)?;
        store::tenant_by_key(&keys, &tenants, &hash_key(api_key))?
            .ok_or_else(|| RegistryError::Unauthenticated("invalid API key".into()))
    }

    /// Creates a tenant (admin only) and returns it with its API key.
    ///
    /// # Errors
    /// [`RegistryError::PermissionDenied`] for a non-admin caller,
    /// [`RegistryError::InvalidArgument`] for a bad name,
    /// [`RegistryError::AlreadyExists`] when the name is taken.
    pub fn create_tenant(
        &self,
        caller: &Tenant,
        name: &str,
        limits: Option<TenantLimits>,
    ) -> Result<(Tenant, String), RegistryError> {
        admin_only(caller, "create tenants")?;
        check_tenant(name)?;
        let key = self.insert_tenant(
            name,
            false,
            limits.unwrap_or(self.inner.config.default_limits),
        )?;
        let tenant = self.authenticate(&key)?;
        tracing::info!(tenant = name, by = %caller.name, "tenant created");
        Ok((tenant, key))
    }

    fn insert_tenant(
        &self,
        name: &str,
        admin: bool,
        limits: TenantLimits,
    ) -> Result<String, RegistryError> {
        let key = new_key()
            .map_err(|e| RegistryError::Storage(format!("no randomness for a key: {e}")))?;
        let tenant = Tenant {
            name: name.to_string(),
            admin,
            key_hash: hash_key(&key),
            limits,
            created_at: rfc3339(unix_now()),
        };
        let txn = self.inner.db.begin_write()?;
        {
            let mut tenants = txn.open_table(TENANTS)?;
            if tenants.get(name)?.is_some() {
                return Err(RegistryError::AlreadyExists(format!(
                    "tenant `{name}` already exists"
                )));
            }
            store::put(&mut tenants, name, &tenant)?;
            txn.open_table(KEYS)?
                .insert(tenant.key_hash.as_str(), name.as_bytes())?;
        }
        txn.commit()?;
        Ok(key)
    }

    /// Every tenant, by name (admin only).
    ///
    /// # Errors
    /// [`RegistryError::PermissionDenied`] for a non-admin caller.
    pub fn tenants(&self, caller: &Tenant) -> Result<Vec<Tenant>, RegistryError> {
        admin_only(caller, "list tenants")?;
        let txn = self.inner.db.begin_read()?;
        let tenants = txn.open_table(TENANTS)?;
        store::scan(&tenants, "", None)?
            .into_iter()
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }

    /// Replaces the API key of `tenant` (the caller's own when `None`): the
    /// old key fails from the next call on. Returns the tenant's name and
    /// its new key (shown once). Rotating is also how a leaked key is
    /// revoked.
    ///
    /// # Errors
    /// [`RegistryError::PermissionDenied`] when a non-admin names another
    /// tenant; [`RegistryError::NotFound`] for an unknown tenant.
    pub fn rotate_key(
        &self,
        caller: &Tenant,
        tenant: Option<&str>,
    ) -> Result<(String, String), RegistryError> {
        let name = tenant.unwrap_or(&caller.name);
        if name != caller.name {
            admin_only(caller, "rotate another tenant's key")?;
        }
        let key = new_key()
            .map_err(|e| RegistryError::Storage(format!("no randomness for a key: {e}")))?;
        let txn = self.inner.db.begin_write()?;
        {
            let mut tenants = txn.open_table(TENANTS)?;
            let mut t: Tenant = store::get(&tenants, name)?.ok_or_else(|| {
                RegistryError::NotFound(format!("tenant `{}` not found", shown(name)))
            })?;
            let mut keys = txn.open_table(KEYS)?;
            keys.remove(t.key_hash.as_str())?;
            t.key_hash = hash_key(&key);
            keys.insert(t.key_hash.as_str(), name.as_bytes())?;
            store::put(&mut tenants, name, &t)?;
        }
        txn.commit()?;
        // Runners drop the old key from their caches.
        self.changed();
        tracing::info!(tenant = name, by = %caller.name, "API key rotated");
        Ok((name.to_string(), key))
    }

    /// Deletes tenant `name` and its key (admin only). Refused while it
    /// holds module versions unless `force`, which deletes them with their
    /// tags and the tenant's uploads. Returns how many versions went.
    ///
    /// # Errors
    /// [`RegistryError::PermissionDenied`] for a non-admin caller;
    /// [`RegistryError::FailedPrecondition`] for the caller's own tenant, or
    /// one holding modules without `force`; [`RegistryError::NotFound`].
    pub fn delete_tenant(
        &self,
        caller: &Tenant,
        name: &str,
        force: bool,
    ) -> Result<u64, RegistryError> {
        admin_only(caller, "delete tenants")?;
        if name == caller.name {
            return Err(RegistryError::FailedPrecondition(
                "a tenant cannot delete itself; use another admin key".into(),
            ));
        }
        let txn = self.inner.db.begin_write()?;
        let (versions, digests) = {
            let mut tenants = txn.open_table(TENANTS)?;
            let t: Tenant = store::get(&tenants, name)?.ok_or_else(|| {
                RegistryError::NotFound(format!("tenant `{}` not found", shown(name)))
            })?;
            let mut manifests = txn.open_table(MANIFESTS)?;
            let owned = store::scan(&manifests, &format!("{name}/"), None)?;
            if !owned.is_empty() && !force {
                return Err(RegistryError::FailedPrecondition(format!(
                    "tenant `{name}` holds {} module versions; delete them first, or pass --force",
                    owned.len()
                )));
            }
            let mut digests = std::collections::HashSet::new();
            for (k, v) in &owned {
                digests.insert(serde_json::from_slice::<Manifest>(v)?.digest);
                manifests.remove(k.as_str())?;
            }
            let mut tags = txn.open_table(TAGS)?;
            for (k, _) in store::scan(&tags, &format!("{name}/"), None)? {
                tags.remove(k.as_str())?;
            }
            let mut by_digest = txn.open_table(BY_DIGEST)?;
            for (k, _) in store::scan(&by_digest, &format!("{name}|"), None)? {
                by_digest.remove(k.as_str())?;
            }
            let mut uploads = txn.open_table(UPLOADS)?;
            for (k, _) in store::scan(&uploads, &store::upload_key(name, ""), None)? {
                if let Some(d) = k.split('|').nth(1).and_then(|d| d.parse().ok()) {
                    digests.insert(d);
                }
                uploads.remove(k.as_str())?;
            }
            txn.open_table(KEYS)?.remove(t.key_hash.as_str())?;
            tenants.remove(name)?;
            let unreferenced: Vec<Digest> = digests
                .into_iter()
                .filter(|d| !referenced_anywhere(&by_digest, d).unwrap_or(true))
                .collect();
            (owned.len() as u64, unreferenced)
        };
        txn.commit()?;
        self.changed();
        for d in &digests {
            self.inner.validator.forget(d);
        }
        tracing::info!(tenant = name, by = %caller.name, versions, "tenant deleted");
        Ok(versions)
    }

    /// What `tenant` (the caller when `None`; another tenant: admin only)
    /// stores and may store.
    ///
    /// # Errors
    /// [`RegistryError::PermissionDenied`] when a non-admin names another
    /// tenant; [`RegistryError::NotFound`] for an unknown tenant.
    pub fn usage(&self, caller: &Tenant, tenant: Option<&str>) -> Result<Usage, RegistryError> {
        let name = tenant.unwrap_or(&caller.name);
        if name != caller.name {
            admin_only(caller, "see another tenant's usage")?;
        }
        let txn = self.inner.db.begin_read()?;
        let t: Tenant = store::get(&txn.open_table(TENANTS)?, name)?.ok_or_else(|| {
            RegistryError::NotFound(format!("tenant `{}` not found", shown(name)))
        })?;
        let stored_bytes = stored_in(&txn.open_table(UPLOADS)?, name)?;
        let manifests = store::scan(&txn.open_table(MANIFESTS)?, &format!("{name}/"), None)?;
        let mut names = std::collections::HashSet::new();
        let mut digests = std::collections::HashSet::new();
        for (_, v) in &manifests {
            let m: Manifest = serde_json::from_slice(v)?;
            names.insert(m.name);
            digests.insert(m.digest);
        }
        Ok(Usage {
            tenant: t.name,
            stored_bytes,
            limits: t.limits,
            modules: names.len() as u64,
            versions: manifests.len() as u64,
            compiled_bytes: digests
                .iter()
                .map(|d| self.inner.validator.derived_bytes(d))
                .sum(),
        })
    }

    /// The checks of a push that need no bytes — name, version, tags, a
    /// version that exists with other content, the tenant's limits — so a
    /// client can run them before uploading. Returns whether this version
    /// exists with this content already (the push would change nothing).
    ///
    /// # Errors
    /// As [`Registry::put_manifest`] and [`Registry::begin_upload`] for the
    /// same request.
    #[allow(clippy::too_many_arguments)]
    pub fn check_push(
        &self,
        caller: &Tenant,
        kind: Kind,
        name: &str,
        version: &str,
        tags: &[String],
        size: u64,
        digest: Option<&Digest>,
    ) -> Result<bool, RegistryError> {
        check_name(name)?;
        let version = parse_version(version)?.to_string();
        for tag in tags {
            check_user_tag(tag)?;
        }
        let txn = self.inner.db.begin_read()?;
        let key = store::manifest_key(&caller.name, name, &version);
        if let Some(existing) = store::get::<Manifest>(&txn.open_table(MANIFESTS)?, &key)? {
            // A pipeline's stored digest is of its resolved form, not of the
            // file: only the full push can tell whether it is the same.
            if kind == Kind::Pipeline && existing.kind == kind {
                return Ok(false);
            }
            if existing.kind == kind && digest == Some(&existing.digest) {
                return Ok(true);
            }
            return Err(RegistryError::AlreadyExists(format!(
                "{} already exists as {} {}; versions are immutable, push a new version",
                existing.reference(),
                existing.kind,
                existing.digest
            )));
        }
        let uploads = txn.open_table(UPLOADS)?;
        let held = match digest {
            Some(d) => store::get::<UploadRecord>(
                &uploads,
                &store::upload_key(&caller.name, &d.to_string()),
            )?
            .is_some(),
            None => false,
        };
        if !held {
            check_quota(caller, stored_in(&uploads, &caller.name)?, size)?;
        }
        Ok(false)
    }

    /// Starts an upload of `size` bytes for `caller`; when `expected` is
    /// given the bytes must hash to it.
    ///
    /// # Errors
    /// [`RegistryError::QuotaExceeded`] when `size` is over the tenant's
    /// per-upload limit; [`RegistryError::Storage`] on I/O failure.
    pub fn begin_upload(
        &self,
        caller: &Tenant,
        size: u64,
        expected: Option<Digest>,
    ) -> Result<Upload, RegistryError> {
        check_quota(caller, self.stored_bytes(&caller.name)?, size)?;
        Ok(Upload {
            registry: self.clone(),
            tenant: caller.clone(),
            writer: self.inner.blobs.writer()?,
            declared: size,
            expected,
        })
    }

    fn stored_bytes(&self, tenant: &str) -> Result<u64, RegistryError> {
        stored_in(&self.inner.db.begin_read()?.open_table(UPLOADS)?, tenant)
    }

    /// Charges an upload to `tenant`; says whether the tenant already held
    /// these bytes (only then is the upload reported as deduplicated: whether
    /// *another* tenant holds them is never revealed).
    fn record_upload(&self, tenant: &Tenant, committed: Committed) -> Result<bool, RegistryError> {
        let digest = committed.digest.to_string();
        let known;
        let txn = self.inner.db.begin_write()?;
        {
            let mut uploads = txn.open_table(UPLOADS)?;
            let key = store::upload_key(&tenant.name, &digest);
            known = store::get::<UploadRecord>(&uploads, &key)?.is_some();
            if !known {
                let stored = stored_in(&uploads, &tenant.name)?;
                let limit = tenant.limits.max_stored_bytes;
                if stored.saturating_add(committed.size) > limit {
                    return Err(RegistryError::QuotaExceeded(format!(
                        "tenant `{}` stores {stored} bytes; {} more would exceed its limit of {limit}",
                        tenant.name, committed.size
                    )));
                }
            }
            let record = UploadRecord {
                size: committed.size,
                uploaded_at: unix_now(),
            };
            store::put(&mut uploads, &key, &record)?;
        }
        txn.commit()?;
        Ok(known)
    }

    /// Validates and registers a module version. Pushing the same content
    /// under the same version again is a no-op (`created == false`).
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for bad names or a module that fails
    /// validation; [`RegistryError::NotFound`] when the blob was not uploaded
    /// by this tenant or a reference does not resolve;
    /// [`RegistryError::AlreadyExists`] when the version exists with other
    /// content.
    pub async fn put_manifest(
        &self,
        caller: &Tenant,
        request: NewManifest,
    ) -> Result<(Manifest, bool), RegistryError> {
        check_name(&request.name)?;
        let version = parse_version(&request.version)?.to_string();
        for tag in &request.tags {
            check_user_tag(tag)?;
        }
        request
            .executor
            .check()
            .map_err(|why| RegistryError::InvalidArgument(format!("{why} (docs/registry.md)")))?;
        let request = match request.kind {
            Kind::Pipeline => self.resolve_pipeline(caller, request).await?,
            _ => request,
        };
        let tenant = caller.name.as_str();
        let digest = request.digest.to_string();
        let key = store::manifest_key(tenant, &request.name, &version);
        let (size, references) = {
            let txn = self.inner.db.begin_read()?;
            let manifests = txn.open_table(MANIFESTS)?;
            if let Some(existing) = store::get::<Manifest>(&manifests, &key)? {
                return self.same_version(caller, existing, &request);
            }
            let upload = store::get::<UploadRecord>(
                &txn.open_table(UPLOADS)?,
                &store::upload_key(tenant, &digest),
            )?
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "blob {digest} has not been uploaded by tenant `{tenant}`"
                ))
            })?;
            let mut pinned = Vec::new();
            for r in &request.references {
                pinned.push(self.resolve(caller, r)?.reference());
            }
            (upload.size, pinned)
        };
        let bytes = {
            let (blobs, d) = (self.inner.blobs.clone(), request.digest);
            blocking(move || Ok(blobs.get(&d)?)).await?
        }
        .ok_or_else(|| {
            RegistryError::NotFound(format!(
                "blob {digest} is no longer stored; upload it again"
            ))
        })?;
        let validated = self
            .inner
            .validator
            .validate(Candidate {
                tenant,
                kind: request.kind,
                bytes,
                executor: &request.executor,
            })
            .await;
        let validated = match validated {
            Ok(v) => v,
            Err(reason) => {
                // Rejected bytes cost the tenant nothing: its upload record
                // goes unless one of its manifests names the blob, and what
                // validation compiled goes unless any manifest does.
                let (this, caller, digest) = (self.clone(), caller.clone(), request.digest);
                blocking(move || this.release(&caller.name, &digest)).await?;
                return Err(RegistryError::InvalidArgument(format!(
                    "{} {}@{version} rejected: {reason}",
                    request.kind, request.name
                )));
            }
        };
        let manifest = Manifest {
            tenant: tenant.to_string(),
            name: request.name.clone(),
            version: version.clone(),
            kind: request.kind,
            digest: request.digest,
            size,
            signature: validated.signature,
            executor: request.executor.clone(),
            world: validated.world,
            references,
            created_at: rfc3339(unix_now()),
            created_by: format!("{tenant} (key {})", caller.key_id()),
            tags: Vec::new(),
        };
        let (this, caller) = (self.clone(), caller.clone());
        blocking(move || this.commit_manifest(&caller, &key, manifest, &request)).await
    }

    /// Resolves and type-checks the pipeline manifest (TOML) the caller
    /// uploaded, stores its resolved form (every step pinned to a digest) as
    /// a blob of the caller's, and returns the request for that blob: the
    /// pipeline's digest is the digest of what it runs.
    async fn resolve_pipeline(
        &self,
        caller: &Tenant,
        mut request: NewManifest,
    ) -> Result<NewManifest, RegistryError> {
        let source = self.blob(caller, &request.digest).map_err(|_| {
            RegistryError::NotFound(format!(
                "blob {} has not been uploaded by tenant `{}`",
                request.digest, caller.name
            ))
        })?;
        let def = PipelineDef::resolve(&source, |r| self.resolve(caller, r))?;
        let bytes = def.to_bytes();
        let (this, tenant) = (self.clone(), caller.clone());
        let committed = blocking(move || {
            let mut upload = this.begin_upload(&tenant, bytes.len() as u64, None)?;
            upload.write(&bytes)?;
            upload.finish()
        })
        .await?;
        request.digest = committed.digest;
        request.references = def.steps.iter().map(|s| s.pinned.clone()).collect();
        request.references.sort();
        request.references.dedup();
        Ok(request)
    }

    /// Stores a validated manifest with its index entry and tags, in one
    /// transaction (blocks on `fsync`).
    fn commit_manifest(
        &self,
        caller: &Tenant,
        key: &str,
        manifest: Manifest,
        request: &NewManifest,
    ) -> Result<(Manifest, bool), RegistryError> {
        let tenant = caller.name.as_str();
        let digest = request.digest.to_string();
        let version = manifest.version.clone();
        let txn = self.inner.db.begin_write()?;
        {
            let mut manifests = txn.open_table(MANIFESTS)?;
            if let Some(existing) = store::get::<Manifest>(&manifests, key)? {
                // A concurrent push of the same version won the race.
                drop(manifests);
                drop(txn);
                return self.same_version(caller, existing, request);
            }
            if !self.inner.blobs.has(&request.digest)? {
                return Err(RegistryError::NotFound(format!(
                    "blob {digest} was garbage-collected during the push; upload it again"
                )));
            }
            store::put(&mut manifests, key, &manifest)?;
            let mut by_digest = txn.open_table(BY_DIGEST)?;
            // The entry's value orders the versions sharing this content by
            // registration: a bare digest names the first (see `resolve_in`).
            let seq = content_versions(&by_digest, tenant, &request.digest, None)?
                .last()
                .map_or(0, |(seq, _)| seq + 1)
                .max(unix_nanos());
            by_digest.insert(
                store::digest_key(tenant, &digest, &manifest.reference()).as_str(),
                seq.to_string().as_bytes(),
            )?;
            let mut tags = txn.open_table(TAGS)?;
            for tag in &request.tags {
                tags.insert(
                    store::tag_key(tenant, &request.name, tag).as_str(),
                    version.as_bytes(),
                )?;
            }
            refresh_latest(&manifests, &mut tags, tenant, &request.name)?;
        }
        txn.commit()?;
        self.changed();
        tracing::info!(tenant, module = %manifest.reference(), kind = %manifest.kind, digest = %manifest.digest, "registered");
        Ok((self.resolve(caller, &manifest.reference())?, true))
    }

    fn same_version(
        &self,
        caller: &Tenant,
        existing: Manifest,
        request: &NewManifest,
    ) -> Result<(Manifest, bool), RegistryError> {
        if existing.digest != request.digest || existing.kind != request.kind {
            return Err(RegistryError::AlreadyExists(format!(
                "{} already exists as {} {}; versions are immutable, push a new version",
                existing.reference(),
                existing.kind,
                existing.digest
            )));
        }
        for tag in &request.tags {
            self.tag(caller, &existing.reference(), tag)?;
        }
        Ok((self.resolve(caller, &existing.reference())?, false))
    }

    /// A counter bumped after every change to manifests and tags: a
    /// resolution cached at one generation is valid while it stays the same.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// A receiver that sees every new [`Registry::generation`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    fn changed(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Resolves `name`, `name@version`, `name:tag` or a digest (optionally
    /// `tenant/`-prefixed) to one manifest of the caller's.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for a malformed reference,
    /// [`RegistryError::NotFound`] when nothing in the caller's namespace
    /// matches (including references into other tenants' namespaces).
    pub fn resolve(&self, caller: &Tenant, reference: &str) -> Result<Manifest, RegistryError> {
        let txn = self.inner.db.begin_read()?;
        let manifests = txn.open_table(MANIFESTS)?;
        let tags = txn.open_table(TAGS)?;
        let by_digest = txn.open_table(BY_DIGEST)?;
        resolve_in(&caller.name, reference, &manifests, &tags, &by_digest)
    }

    /// Resolves what KServe v2 callers name with a model name and a
    /// `model_version` (empty for `latest`, a version, a tag, or a digest),
    /// always within module `name`: a digest several modules share names
    /// `name`'s version with that content.
    ///
    /// # Errors
    /// As [`Registry::resolve`].
    pub fn resolve_in_module(
        &self,
        caller: &Tenant,
        name: &str,
        version: &str,
    ) -> Result<Manifest, RegistryError> {
        let reference = Reference::in_module(name, version)?;
        let txn = self.inner.db.begin_read()?;
        let manifests = txn.open_table(MANIFESTS)?;
        let tags = txn.open_table(TAGS)?;
        let by_digest = txn.open_table(BY_DIGEST)?;
        lookup(
            &caller.name,
            &reference,
            &reference.to_string(),
            &manifests,
            &tags,
            &by_digest,
        )
    }

    /// Lists the caller's module versions in name order.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for a bad page token;
    /// [`RegistryError::Storage`] on failure.
    pub fn list(
        &self,
        caller: &Tenant,
        query: &ListQuery,
    ) -> Result<(Vec<Manifest>, String), RegistryError> {
        let page = match query.page_size {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let prefix = format!("{}/{}", caller.name, query.name_prefix);
        let after = if query.page_token.is_empty() {
            None
        } else if query.page_token.starts_with(&format!("{}/", caller.name)) {
            Some(query.page_token.as_str())
        } else {
            return Err(RegistryError::InvalidArgument("invalid page token".into()));
        };
        let txn = self.inner.db.begin_read()?;
        let manifests = txn.open_table(MANIFESTS)?;
        let tags = txn.open_table(TAGS)?;
        let mut out = Vec::new();
        let mut last_key = String::new();
        let mut next = String::new();
        for (key, value) in store::scan(&manifests, &prefix, after)? {
            let mut m: Manifest = serde_json::from_slice(&value)?;
            if query.kind.is_some_and(|k| k != m.kind) {
                continue;
            }
            if out.len() == page {
                next = last_key;
                break;
            }
            m.tags = store::tags_of(&tags, &m.tenant, &m.name, &m.version)?;
            out.push(m);
            last_key = key;
        }
        Ok((out, next))
    }

    /// Points `tag` at the version `reference` resolves to, atomically;
    /// returns that manifest and the version the tag pointed at before.
    ///
    /// # Errors
    /// As [`Registry::resolve`], plus [`RegistryError::InvalidArgument`] for
    /// a bad tag.
    pub fn tag(
        &self,
        caller: &Tenant,
        reference: &str,
        tag: &str,
    ) -> Result<(Manifest, Option<String>), RegistryError> {
        check_user_tag(tag)?;
        let txn = self.inner.db.begin_write()?;
        let (manifest, previous) = {
            let manifests = txn.open_table(MANIFESTS)?;
            let mut tags = txn.open_table(TAGS)?;
            let by_digest = txn.open_table(BY_DIGEST)?;
            let m = resolve_in(&caller.name, reference, &manifests, &tags, &by_digest)?;
            let key = store::tag_key(&caller.name, &m.name, tag);
            let previous = tags
                .insert(key.as_str(), m.version.as_bytes())?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            (m, previous)
        };
        txn.commit()?;
        self.changed();
        tracing::info!(tenant = %caller.name, module = %manifest.name, tag, to = %manifest.version, from = ?previous, "tag moved");
        Ok((self.resolve(caller, &manifest.reference())?, previous))
    }

    /// Removes `tag` from module `name` (optionally `tenant/name`); returns
    /// the version it pointed at. `latest` is the registry's own and cannot
    /// be removed.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for a bad name or tag, or `latest`;
    /// [`RegistryError::NotFound`] when the tag does not exist.
    pub fn untag(&self, caller: &Tenant, name: &str, tag: &str) -> Result<String, RegistryError> {
        let (prefix, name) = split_tenant(name)?;
        check_name(name)?;
        check_user_tag(tag)?;
        let not_found = || RegistryError::NotFound(format!("tag `{tag}` of `{name}` not found"));
        if prefix.is_some_and(|p| p != caller.name) {
            return Err(not_found());
        }
        let txn = self.inner.db.begin_write()?;
        let version = txn
            .open_table(TAGS)?
            .remove(store::tag_key(&caller.name, name, tag).as_str())?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned())
            .ok_or_else(not_found)?;
        txn.commit()?;
        self.changed();
        Ok(version)
    }

    /// Deletes one version (named `name@version`, `name@blake3:…` or by
    /// digest). `latest` is the registry's own tag, not a user's: it does not
    /// protect a version, and moves to the highest remaining one (or goes,
    /// with the last version). The tenant stops being charged for the blob
    /// at once when no other version of its names it; the blob itself stays
    /// until garbage collection.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for a tag reference (deletion names
    /// one version exactly); [`RegistryError::NotFound`];
    /// [`RegistryError::FailedPrecondition`] for a digest several versions
    /// hold (naming them), or while a user tag or another module references
    /// the version (naming the referrer).
    pub fn delete(&self, caller: &Tenant, reference: &str) -> Result<Manifest, RegistryError> {
        let (_, parsed) = Reference::parse(reference)?;
        if let Reference::Tag { name, tag } = &parsed {
            return Err(RegistryError::InvalidArgument(format!(
                "delete takes `name@version` or a digest, not the tag reference `{name}:{tag}`"
            )));
        }
        let tenant = caller.name.as_str();
        let txn = self.inner.db.begin_write()?;
        let manifest = {
            let mut manifests = txn.open_table(MANIFESTS)?;
            let mut tags = txn.open_table(TAGS)?;
            let mut by_digest = txn.open_table(BY_DIGEST)?;
            let m = resolve_in(tenant, reference, &manifests, &tags, &by_digest)?;
            if let Reference::Digest(d) | Reference::Content { digest: d, .. } = &parsed {
                let candidates = content_versions(&by_digest, tenant, d, parsed.name())?;
                if candidates.len() > 1 {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "{} is the content of {} versions ({}); delete one by `name@version`",
                        shown(reference),
                        candidates.len(),
                        listing(candidates.iter().map(|(_, r)| r.as_str()))
                    )));
                }
            }
            if let Some(tag) = m.tags.iter().find(|t| *t != "latest") {
                return Err(RegistryError::FailedPrecondition(format!(
                    "{} is referenced by tag `{tag}`; move or remove the tag first (`conduit untag {} {tag}`)",
                    m.reference(),
                    m.name
                )));
            }
            let me = m.reference();
            for (_, value) in store::scan(&manifests, &format!("{tenant}/"), None)? {
                let other: Manifest = serde_json::from_slice(&value)?;
                if other.references.contains(&me) {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "{me} is referenced by {} {}; delete that first",
                        other.kind,
                        other.reference()
                    )));
                }
            }
            manifests.remove(store::manifest_key(tenant, &m.name, &m.version).as_str())?;
            by_digest.remove(store::digest_key(tenant, &m.digest.to_string(), &me).as_str())?;
            refresh_latest(&manifests, &mut tags, tenant, &m.name)?;
            m
        };
        txn.commit()?;
        self.changed();
        tracing::info!(tenant, module = %manifest.reference(), "deleted");
        self.release(tenant, &manifest.digest)?;
        Ok(manifest)
    }

    /// After a manifest named `digest` for the last time (deleted) or never
    /// did (rejected): drops `tenant`'s upload record unless one of its
    /// manifests names the digest, and what validation derived from it
    /// unless any manifest does.
    fn release(&self, tenant: &str, digest: &Digest) -> Result<(), RegistryError> {
        let txn = self.inner.db.begin_write()?;
        let unreferenced = {
            let by_digest = txn.open_table(BY_DIGEST)?;
            if content_versions(&by_digest, tenant, digest, None)?.is_empty() {
                txn.open_table(UPLOADS)?
                    .remove(store::upload_key(tenant, &digest.to_string()).as_str())?;
            }
            !referenced_anywhere(&by_digest, digest)?
        };
        txn.commit()?;
        if unreferenced {
            self.inner.validator.forget(digest);
        }
        Ok(())
    }

    /// The bytes of a blob the caller uploaded (and so may reference).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the caller has no such blob.
    pub fn blob(&self, caller: &Tenant, digest: &Digest) -> Result<Bytes, RegistryError> {
        let txn = self.inner.db.begin_read()?;
        let uploads = txn.open_table(UPLOADS)?;
        let key = store::upload_key(&caller.name, &digest.to_string());
        let missing = || RegistryError::NotFound(format!("blob {digest} not found"));
        if store::get::<UploadRecord>(&uploads, &key)?.is_none() {
            return Err(missing());
        }
        self.inner.blobs.get(digest)?.ok_or_else(missing)
    }

    /// Deletes blobs that no manifest references and that were not uploaded
    /// within `grace` (admin only).
    ///
    /// # Errors
    /// [`RegistryError::PermissionDenied`] for a non-admin caller.
    pub fn collect_garbage(
        &self,
        caller: &Tenant,
        grace: Duration,
    ) -> Result<GcReport, RegistryError> {
        admin_only(caller, "collect garbage")?;
        // `None`: the grace reaches back past the epoch (a client may send
        // any u64 of seconds), so nothing is old enough to go. Keeping
        // everything is what such a grace means; refusing it would need a
        // bound of our own choosing, and `SystemTime - grace` would panic.
        let cutoff = SystemTime::now().checked_sub(grace);
        let cutoff_secs = unix_now().checked_sub(grace.as_secs());
        let mut report = GcReport::default();
        // The write transaction keeps pushes out while blobs are judged; a
        // push that committed its blob but not yet its upload record is
        // protected by the blob's fresh modification time.
        let txn = self.inner.db.begin_write()?;
        let mut removed = std::collections::HashSet::new();
        {
            let by_digest = txn.open_table(BY_DIGEST)?;
            let mut uploads = txn.open_table(UPLOADS)?;
            // Which tenant's manifests name which digest.
            let mut named = std::collections::HashSet::new();
            for entry in by_digest.iter()? {
                let (k, _) = entry?;
                let mut parts = k.value().split('|');
                if let (Some(t), Some(d)) = (parts.next(), parts.next()) {
                    named.insert((t.to_string(), d.to_string()));
                }
            }
            let referenced: std::collections::HashSet<Digest> =
                named.iter().filter_map(|(_, d)| d.parse().ok()).collect();
            let mut recent = std::collections::HashSet::new();
            let mut records: Vec<(String, Digest, bool)> = Vec::new();
            for entry in uploads.iter()? {
                let (k, v) = entry?;
                let record: UploadRecord = serde_json::from_slice(v.value())?;
                let key = k.value().to_string();
                let Some((tenant, digest)) = key.split_once('|') else {
                    continue;
                };
                let Ok(parsed) = digest.parse() else {
                    continue;
                };
                let fresh = cutoff_secs.is_none_or(|c| record.uploaded_at > c);
                if fresh {
                    recent.insert(parsed);
                }
                // An upload none of its tenant's manifests names stops
                // counting once it is past the grace period.
                let stale = !fresh && !named.contains(&(tenant.to_string(), digest.to_string()));
                records.push((key, parsed, stale));
            }
            for blob in self.inner.blobs.list()? {
                if referenced.contains(&blob.digest)
                    || recent.contains(&blob.digest)
                    || cutoff.is_none_or(|c| blob.modified > c)
                {
                    report.blobs_kept += 1;
                    continue;
                }
                if self.inner.blobs.delete(&blob.digest)? {
                    report.blobs_removed += 1;
                    report.bytes_freed += blob.size;
                    removed.insert(blob.digest);
                }
            }
            for (key, digest, stale) in records {
                if stale || removed.contains(&digest) || !self.inner.blobs.has(&digest)? {
                    uploads.remove(key.as_str())?;
                }
            }
        }
        txn.commit()?;
        self.changed();
        for digest in &removed {
            self.inner.validator.forget(digest);
        }
        tracing::info!(?report, "garbage collected");
        Ok(report)
    }
}

/// The version `latest` should name among `versions`: the highest release,
/// or the highest pre-release when there is no release.
fn highest(versions: impl Iterator<Item = semver::Version>) -> Option<semver::Version> {
    versions.max_by(|a, b| (a.pre.is_empty(), a).cmp(&(b.pre.is_empty(), b)))
}

/// Refuses `size` more bytes over `tenant`'s per-upload or stored limit.
fn check_quota(tenant: &Tenant, stored: u64, size: u64) -> Result<(), RegistryError> {
    let limit = tenant.limits.max_upload_bytes;
    if size > limit {
        return Err(RegistryError::QuotaExceeded(format!(
            "upload of {size} bytes exceeds tenant `{}`'s limit of {limit} bytes per upload",
            tenant.name
        )));
    }
    if stored.saturating_add(size) > tenant.limits.max_stored_bytes {
        return Err(RegistryError::QuotaExceeded(format!(
            "tenant `{}` stores {stored} bytes; {size} more would exceed its limit of {}",
            tenant.name, tenant.limits.max_stored_bytes
        )));
    }
    Ok(())
}

fn admin_only(caller: &Tenant, what: &str) -> Result<(), RegistryError> {
    if caller.admin {
        Ok(())
    } else {
        Err(RegistryError::PermissionDenied(format!(
            "only an admin tenant may {what}"
        )))
    }
}

/// Points `tenant/name:latest` at the highest of its versions (see
/// [`highest`]), or removes it when none is left.
fn refresh_latest(
    manifests: &impl ReadableTable<&'static str, &'static [u8]>,
    tags: &mut redb::Table<'_, &'static str, &'static [u8]>,
    tenant: &str,
    name: &str,
) -> Result<(), RegistryError> {
    let prefix = store::manifest_key(tenant, name, "");
    let versions = store::scan(manifests, &prefix, None)?
        .into_iter()
        .filter_map(|(k, _)| semver::Version::parse(&k[prefix.len()..]).ok());
    let key = store::tag_key(tenant, name, "latest");
    match highest(versions) {
        Some(v) => tags.insert(key.as_str(), v.to_string().as_bytes())?,
        None => tags.remove(key.as_str())?,
    };
    Ok(())
}

/// The versions of `tenant` (of module `name`, when given) whose content is
/// `digest`, as `(registration order, name@version)`, first registered first.
fn content_versions(
    by_digest: &impl ReadableTable<&'static str, &'static [u8]>,
    tenant: &str,
    digest: &Digest,
    name: Option<&str>,
) -> Result<Vec<(u128, String)>, RegistryError> {
    let prefix = store::digest_key(tenant, &digest.to_string(), "");
    let scan_prefix = match name {
        Some(n) => format!("{prefix}{n}@"),
        None => prefix.clone(),
    };
    let mut out: Vec<(u128, String)> = store::scan(by_digest, &scan_prefix, None)?
        .into_iter()
        // Entries written before the order was recorded hold nothing: 0.
        .map(|(k, v)| {
            let seq = std::str::from_utf8(&v)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (seq, k[prefix.len()..].to_string())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Whether any tenant's manifest names `digest`.
fn referenced_anywhere(
    by_digest: &impl ReadableTable<&'static str, &'static [u8]>,
    digest: &Digest,
) -> Result<bool, RegistryError> {
    let needle = format!("|{digest}|");
    for entry in by_digest.iter()? {
        if entry?.0.value().contains(&needle) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// At most five items, then how many more.
fn listing<'a>(items: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = items.len();
    let mut out: Vec<&str> = items.take(5).collect();
    let more = format!("and {} more", n.saturating_sub(5));
    if n > 5 {
        out.push(&more);
    }
    out.join(", ")
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Runs blocking storage work off the async worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Storage(format!("storage task failed: {e}")))?
}

/// Bytes of the blobs `tenant` has uploaded, each counted once.
fn stored_in(
    uploads: &impl ReadableTable<&'static str, &'static [u8]>,
    tenant: &str,
) -> Result<u64, RegistryError> {
    Ok(store::scan(uploads, &store::upload_key(tenant, ""), None)?
        .iter()
        .map(|(_, v)| serde_json::from_slice::<UploadRecord>(v).map_or(0, |r| r.size))
        .fold(0u64, u64::saturating_add))
}

fn resolve_in(
    tenant: &str,
    reference: &str,
    manifests: &impl ReadableTable<&'static str, &'static [u8]>,
    tags: &impl ReadableTable<&'static str, &'static [u8]>,
    by_digest: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Manifest, RegistryError> {
    let (prefix, parsed) = Reference::parse(reference)?;
    if prefix.is_some_and(|p| p != tenant) {
        // Another tenant's namespace looks exactly like an empty one.
        return Err(RegistryError::NotFound(format!(
            "`{}` not found",
            shown(reference)
        )));
    }
    lookup(tenant, &parsed, reference, manifests, tags, by_digest)
}

/// The manifest `parsed` names in `tenant`'s namespace; `shown_as` is how
/// the caller wrote it, for the error.
fn lookup(
    tenant: &str,
    parsed: &Reference,
    shown_as: &str,
    manifests: &impl ReadableTable<&'static str, &'static [u8]>,
    tags: &impl ReadableTable<&'static str, &'static [u8]>,
    by_digest: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Manifest, RegistryError> {
    let not_found = || RegistryError::NotFound(format!("`{}` not found", shown(shown_as)));
    let key = match parsed {
        Reference::Version { name, version } => {
            store::manifest_key(tenant, name, &version.to_string())
        }
        Reference::Tag { name, tag } => {
            let version = tags
                .get(store::tag_key(tenant, name, tag).as_str())?
                .ok_or_else(not_found)?;
            store::manifest_key(tenant, name, &String::from_utf8_lossy(version.value()))
        }
        // Several versions may hold the same bytes: the first registered
        // answers, so pushing another never changes what a digest names.
        Reference::Digest(d) | Reference::Content { digest: d, .. } => {
            let (_, reference) = content_versions(by_digest, tenant, d, parsed.name())?
                .into_iter()
                .next()
                .ok_or_else(not_found)?;
            format!("{tenant}/{reference}")
        }
    };
    store::manifest_with_tags(manifests, tags, &key)?.ok_or_else(not_found)
}

/// An upload in progress. Dropping it without [`Upload::finish`] discards it.
pub struct Upload {
    registry: Registry,
    tenant: Tenant,
    writer: Box<dyn BlobWriter>,
    declared: u64,
    expected: Option<Digest>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("tenant", &self.tenant.name)
            .field("declared", &self.declared)
            .field("written", &self.writer.written())
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends the next bytes.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] when the stream carries more than
    /// the declared size; [`RegistryError::Storage`] on I/O failure.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        let total = self
            .writer
            .written()
            .saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        if total > self.declared {
            return Err(RegistryError::InvalidArgument(format!(
                "upload carries more than the {} bytes its header declared",
                self.declared
            )));
        }
        Ok(self.writer.write(chunk)?)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.writer.written()
    }

    /// Checks size and digest, stores the blob durably and records that the
    /// tenant uploaded it. Blocks on `fsync`.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgument`] for a truncated stream or a digest
    /// mismatch; [`RegistryError::QuotaExceeded`] when the tenant's stored
    /// bytes would exceed its limit.
    pub fn finish(self) -> Result<Committed, RegistryError> {
        let received = self.writer.written();
        if received != self.declared {
            return Err(RegistryError::InvalidArgument(format!(
                "upload truncated: received {received} of {} declared bytes",
                self.declared
            )));
        }
        let mut committed = self.writer.commit(self.expected.as_ref())?;
        committed.deduplicated = self.registry.record_upload(&self.tenant, committed)?;
        Ok(committed)
    }
}
