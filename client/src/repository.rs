//! [`ModuleRepository`]: registering components, ONNX models and pipelines,
//! tagging, listing and deleting them, over the registry's control plane.

use crate::{Error, ErrorKind, Result};
use conduit_registry::{
    Digest, ExecutorHints, Kind, ListQuery, Manifest, PushProgress, RegistryClient,
};

/// How an ONNX model is run (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelOptions {
    /// Largest batch the executor forms (0: no batching).
    pub max_batch_size: u32,
    /// How long a request may wait for a batch to fill, in microseconds.
    pub max_queue_delay_us: u64,
    /// `ort`, `tract` or `remote`; empty: the runner's choice.
    pub backend: String,
    /// `cpu`, `cuda`, `tensorrt`; empty: the best one present.
    pub device: String,
}

/// A registered module version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `blake3:<hex>` of its bytes: its content id.
    pub digest: String,
    /// `name@version`.
    pub reference: String,
    /// False when this version already held these bytes.
    pub created: bool,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Whether the bytes were sent and stored: false when the registry
    /// already held them.
    pub uploaded: bool,
}

/// One listed module version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `component`, `model` or `pipeline`.
    pub kind: String,
    /// `blake3:<hex>`.
    pub digest: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Size of its bytes.
    pub size: u64,
}

impl From<Manifest> for ModuleEntry {
    fn from(m: Manifest) -> Self {
        Self {
            kind: m.kind.to_string(),
            digest: m.digest.to_string(),
            name: m.name,
            version: m.version,
            tags: m.tags,
            size: m.size,
        }
    }
}

impl From<(Manifest, bool)> for Registered {
    fn from((m, created): (Manifest, bool)) -> Self {
        Self {
            uploaded: false,
            reference: m.reference(),
            digest: m.digest.to_string(),
            name: m.name,
            version: m.version,
            created,
            tags: m.tags,
        }
    }
}

/// A tenant's modules in a registry (`conduit dev`'s address, or a
/// cluster's registry). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ModuleRepository {
    client: RegistryClient,
}

impl ModuleRepository {
    /// Connects to the registry at `addr` (`host:port` or a URL) as the
    /// tenant `api_key` names.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when it cannot be reached;
    /// [`ErrorKind::Unauthenticated`] for a key it does not know.
    pub async fn connect(addr: &str, api_key: &str) -> Result<Self> {
        let client = RegistryClient::connect(&crate::url(addr), api_key).await?;
        // A bad key fails here, not on the first push.
        client.whoami().await?;
        Ok(Self { client })
    }

    /// Over an existing registry client (the CLI's).
    pub fn from_client(client: RegistryClient) -> Self {
        Self { client }
    }

    /// The registry client underneath.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Registers `bytes` as `name@version` of `kind`: checks the push
    /// before a byte is sent (names, immutability, the tenant's limits),
    /// uploads unless this version already holds the bytes, validates and
    /// registers, pointing `tags` at it.
    ///
    /// # Errors
    /// As the registry reports them: INVALID_ARGUMENT for a module that does
    /// not validate (a pipeline that does not type-check), a version that
    /// exists with other bytes; RESOURCE_EXHAUSTED past the tenant's limits.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        kind: Kind,
        name: &str,
        version: &str,
        bytes: &[u8],
        hints: &ExecutorHints,
        tags: &[String],
        progress: &PushProgress,
    ) -> Result<Registered> {
        let digest = Digest::of(bytes);
        let exists = self
            .client
            .check_push(kind, name, version, tags, bytes.len() as u64, Some(&digest))
            .await?;
        let uploaded = !exists && !self.client.upload(bytes, progress).await?.1;
        let mut registered: Registered = self
            .client
            .put_manifest(kind, name, version, &digest, hints, tags, &[])
            .await?
            .into();
        registered.uploaded = uploaded;
        Ok(registered)
    }

    /// Registers a WebAssembly component (`.wasm` bytes).
    ///
    /// # Errors
    /// As [`ModuleRepository::register`].
    pub async fn register_component(
        &self,
        name: &str,
        version: &str,
        wasm: &[u8],
        tags: &[String],
    ) -> Result<Registered> {
        self.register(
            Kind::Component,
            name,
            version,
            wasm,
            &ExecutorHints::default(),
            tags,
            &PushProgress::default(),
        )
        .await
    }

    /// Registers an ONNX model.
    ///
    /// # Errors
    /// As [`ModuleRepository::register`].
    pub async fn register_onnx(
        &self,
        name: &str,
        version: &str,
        onnx: &[u8],
        tags: &[String],
        options: &ModelOptions,
    ) -> Result<Registered> {
        let hints = ExecutorHints {
            format: "onnx".into(),
            backend: options.backend.clone(),
            device: options.device.clone(),
            max_batch_size: options.max_batch_size,
            max_queue_delay_us: options.max_queue_delay_us,
            ..ExecutorHints::default()
        };
        self.register(
            Kind::Model,
            name,
            version,
            onnx,
            &hints,
            tags,
            &PushProgress::default(),
        )
        .await
    }

    /// Registers a pipeline from its TOML manifest (type-checked against its
    /// steps by the registry).
    ///
    /// # Errors
    /// As [`ModuleRepository::register`].
    pub async fn register_pipeline(
        &self,
        name: &str,
        version: &str,
        manifest_toml: &str,
        tags: &[String],
    ) -> Result<Registered> {
        self.register(
            Kind::Pipeline,
            name,
            version,
            manifest_toml.as_bytes(),
            &ExecutorHints::default(),
            tags,
            &PushProgress::default(),
        )
        .await
    }

    /// Points `tag` at what `reference` resolves to.
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn add_tag(&self, reference: &str, tag: &str) -> Result<()> {
        self.client.tag(reference, tag).await?;
        Ok(())
    }

    /// The tenant's module versions whose names start with `prefix`, in
    /// name order (every page).
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ModuleEntry>> {
        let mut query = ListQuery {
            name_prefix: prefix.to_string(),
            page_size: 1000,
            ..ListQuery::default()
        };
        let mut out = Vec::new();
        loop {
            let (page, next) = self.client.list(&query).await?;
            out.extend(page.into_iter().map(ModuleEntry::from));
            if next.is_empty() {
                return Ok(out);
            }
            if out.len() > 1_000_000 {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the registry keeps returning pages",
                ));
            }
            query.page_token = next;
        }
    }

    /// Deletes a version (refused while a tag or another module names it).
    ///
    /// # Errors
    /// As the registry reports them.
    pub async fn delete(&self, reference: &str) -> Result<()> {
        self.client.delete(reference).await?;
        Ok(())
    }
}
