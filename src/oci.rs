//! OCI artifacts for components, in the CNCF wasm OCI artifact layout
//! (<https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/>,
//! what `wkg oci push` writes and `wkg oci pull` reads): an OCI image
//! manifest whose config is `application/vnd.wasm.config.v0+json` and whose
//! one layer is the component, `application/wasm`.
//!
//! - [`Artifact::resolve`] + [`Artifact::download`] (`conduit push component
//!   oci://…`): the manifest is checked and the layer's declared size bounded
//!   before a byte of it is fetched; the layer is streamed, cut off past its
//!   declared size, and its sha256 verified against the manifest. The caller
//!   registers the bytes as usual (blake3, validation).
//! - [`push`] (`conduit export`): one component as such an artifact.
//!
//! The transport is `oci-client` (reqwest over rustls with the ring
//! provider). Plain HTTP only for a loopback registry or with `--insecure`;
//! credentials from `CONDUIT_OCI_USERNAME` / `CONDUIT_OCI_PASSWORD` (HTTP
//! basic, or the registry's token exchange), anonymous when neither is set.

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The scheme that marks an OCI reference where a file could stand.
pub const SCHEME: &str = "oci://";
/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config media type of a wasm artifact.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of its one layer: the component's bytes.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The largest layer `push component oci://` downloads, whatever the
/// tenant's upload limit (checked too, before the download).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// The largest config blob read (a few hundred bytes in practice).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Where the credentials come from.
pub const USERNAME_ENV: &str = "CONDUIT_OCI_USERNAME";
/// See [`USERNAME_ENV`].
pub const PASSWORD_ENV: &str = "CONDUIT_OCI_PASSWORD";

/// How to reach an OCI registry.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OciArgs {
    /// Plain HTTP to an OCI registry that is not on loopback (127.0.0.1,
    /// ::1 and localhost always get plain HTTP; others HTTPS by default).
    #[arg(long)]
    pub insecure: bool,
}

/// `oci://REGISTRY/REPOSITORY[:TAG|@sha256:…]`, parsed once at the edge.
#[derive(Debug, Clone)]
pub struct Location {
    reference: Reference,
    /// Whether the text named a tag or digest (else `latest` for a pull,
    /// the module's version for an export).
    explicit: bool,
}

impl Location {
    /// Parses `oci://REGISTRY/REPOSITORY[:TAG|@sha256:…]`.
    ///
    /// # Errors
    /// No `oci://`, a reference that does not parse, or one that names no
    /// registry (a bare `repo:tag` would silently mean Docker Hub).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix(SCHEME) {
            Some(rest) => Self::parse_rest(rest),
            None => Err(format!(
                "`{text}` is not an OCI reference (oci://REGISTRY/REPOSITORY[:TAG])"
            )),
        }
    }

    fn parse_rest(rest: &str) -> Result<Self, String> {
        let usage = "expected oci://REGISTRY/REPOSITORY[:TAG]";
        let reference: Reference = rest
            .parse()
            .map_err(|e| format!("`{SCHEME}{rest}`: {e} ({usage})"))?;
        let first = rest.split('/').next().unwrap_or_default();
        if !rest.contains('/') || first != reference.registry() {
            return Err(format!("`{SCHEME}{rest}` names no registry ({usage})"));
        }
        let last = rest.rsplit('/').next().unwrap_or_default();
        Ok(Self {
            explicit: last.contains([':', '@']),
            reference,
        })
    }

    /// The registry's `host[:port]`.
    fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// Whether plain HTTP may be used: a loopback registry, or `--insecure`.
    fn plain_http(&self, args: &OciArgs) -> bool {
        args.insecure || is_loopback(self.registry())
    }

    /// A client for this registry, with the caller's credentials.
    fn connect(&self, args: &OciArgs) -> Result<(Client, RegistryAuth)> {
        // reqwest builds its TLS configuration even for plain HTTP; rustls
        // takes the process's provider: ring, as the rest of the binary
        // (rustls 0.23.48 deprecates it for lacking post-quantum key
        // exchange, which only aws-lc-rs offers; the workspace keeps ring).
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if self.plain_http(args) {
                ClientProtocol::HttpsExcept(vec![self.registry().to_string()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            // A wasm artifact is one platform-free manifest, never an index.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).context("building the OCI client")?;
        Ok((client, auth_from_env()?))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.reference.whole())
    }
}

/// `host[:port]` is 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => registry
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(registry, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Basic credentials from the environment, or anonymous.
fn auth_from_env() -> Result<RegistryAuth> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (var(USERNAME_ENV), var(PASSWORD_ENV)) {
        (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user, password)),
        (None, None) => Ok(RegistryAuth::Anonymous),
        _ => bail!("set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither (anonymous)"),
    }
}

/// oci-client's error on one line (a registry's error envelope lists one
/// error a line), with a hint when the registry wants other credentials.
fn registry_error(e: OciDistributionError) -> anyhow::Error {
    let unauthorized = match &e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    };
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    let message = message.trim().replace('\n', "; ");
    if unauthorized {
        anyhow::anyhow!(
            "{message} (the registry wants credentials: {USERNAME_ENV} and {PASSWORD_ENV})"
        )
    } else {
        anyhow::anyhow!(message)
    }
}

/// A component artifact whose manifest and config were checked; its layer
/// is not downloaded yet.
pub struct Artifact {
    location: Location,
    client: Client,
    layer: OciDescriptor,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
}

impl Artifact {
    /// Fetches the manifest and config at `location` and checks the layout:
    /// an image manifest (not an index), config `CONFIG_MEDIA_TYPE`, exactly
    /// one `LAYER_MEDIA_TYPE` layer named by a sha256 digest, a config that
    /// names that layer and says `wasm`/`wasip2` where it says anything.
    ///
    /// # Errors
    /// The registry cannot be reached or refuses; the artifact is not a
    /// wasm component in that layout.
    pub async fn resolve(location: &Location, args: &OciArgs) -> Result<Self> {
        let (client, auth) = location.connect(args)?;
        let reference = &location.reference;
        let (manifest, manifest_digest) = client
            .pull_manifest(reference, &auth)
            .await
            .map_err(registry_error)
            .with_context(|| format!("fetching the manifest of {location}"))?;
        let manifest = match manifest {
            OciManifest::Image(m) => m,
            OciManifest::ImageIndex(_) => bail!(
                "{location} is an image index, not a wasm component artifact \
                 (one `{LAYER_MEDIA_TYPE}` layer)"
            ),
        };
        let layer = check_layout(location, &manifest)?;
        let config = fetch(&client, reference, &manifest.config, MAX_CONFIG_BYTES)
            .await
            .with_context(|| format!("fetching the config of {location}"))?;
        check_config(location, &config, &layer.digest)?;
        Ok(Self {
            location: location.clone(),
            client,
            layer,
            manifest_digest,
        })
    }

    /// The layer's size as the manifest declares it (what `download` will
    /// accept, at most).
    pub fn size(&self) -> u64 {
        u64::try_from(self.layer.size).unwrap_or(0)
    }

    /// `sha256:…` of the layer.
    pub fn layer_digest(&self) -> &str {
        &self.layer.digest
    }

    /// Downloads the layer: refused before a byte is fetched when its
    /// declared size passes [`MAX_COMPONENT_BYTES`] (the caller checks the
    /// registry's own limits first), cut off past its declared size, and
    /// verified against the manifest's sha256.
    ///
    /// # Errors
    /// Too large, the registry fails, the bytes are not the declared size or
    /// do not hash to the manifest's digest.
    pub async fn download(&self) -> Result<Vec<u8>> {
        if self.size() > MAX_COMPONENT_BYTES {
            bail!(
                "the layer of {} is {} bytes, over the limit of {MAX_COMPONENT_BYTES} bytes; \
                 nothing downloaded",
                self.location,
                self.size()
            );
        }
        fetch(
            &self.client,
            &self.location.reference,
            &self.layer,
            self.size(),
        )
        .await
        .with_context(|| format!("downloading the layer of {}", self.location))
    }
}

/// The one wasm layer of `manifest`, or why it is not a component artifact.
fn check_layout(location: &Location, manifest: &OciImageManifest) -> Result<OciDescriptor> {
    let not = "not a wasm component artifact";
    if let Some(media_type) = manifest.media_type.as_deref()
        && media_type != MANIFEST_MEDIA_TYPE
    {
        bail!("{location}: manifest media type `{media_type}`, not `{MANIFEST_MEDIA_TYPE}`: {not}");
    }
    let config_type = &manifest.config.media_type;
    if config_type != CONFIG_MEDIA_TYPE {
        bail!("{location}: config media type `{config_type}`, not `{CONFIG_MEDIA_TYPE}`: {not}");
    }
    let [layer] = manifest.layers.as_slice() else {
        bail!(
            "{location}: {} layers; a wasm component artifact has exactly one (`{LAYER_MEDIA_TYPE}`)",
            manifest.layers.len()
        );
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        bail!(
            "{location}: layer media type `{}`, not `{LAYER_MEDIA_TYPE}`: {not}",
            layer.media_type
        );
    }
    for (what, d) in [("layer", layer), ("config", &manifest.config)] {
        let hex = d.digest.strip_prefix("sha256:").unwrap_or_default();
        let sha256 = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !sha256 {
            bail!(
                "{location}: {what} digest `{}` is not `sha256:<64 hex>`",
                d.digest
            );
        }
        if d.size < 0 {
            bail!("{location}: {what} size {} is negative", d.size);
        }
    }
    Ok(layer.clone())
}

/// The config says `wasm`, `wasip2` and names `layer` where it says anything.
fn check_config(location: &Location, config: &[u8], layer: &str) -> Result<()> {
    let config: serde_json::Value = serde_json::from_slice(config)
        .with_context(|| format!("{location}: the config is not JSON"))?;
    let field = |name| config.get(name).and_then(serde_json::Value::as_str);
    if let Some(arch) = field("architecture")
        && arch != "wasm"
    {
        bail!("{location}: config architecture `{arch}`, not `wasm`");
    }
    if let Some(os) = field("os")
        && os != "wasip2"
    {
        bail!("{location}: config os `{os}`: not a component (`wasip2`)");
    }
    if let Some(digests) = config.get("layerDigests")
        && digests != &serde_json::json!([layer])
    {
        bail!("{location}: the config's layerDigests {digests} do not name the layer {layer}");
    }
    Ok(())
}

/// Streams the blob `descriptor` names, refusing more than `max` bytes or
/// other than its declared size; oci-client verifies its digest at the end
/// of the stream.
async fn fetch(
    client: &Client,
    reference: &Reference,
    descriptor: &OciDescriptor,
    max: u64,
) -> Result<Vec<u8>> {
    let declared = u64::try_from(descriptor.size).unwrap_or(u64::MAX);
    if declared > max {
        bail!(
            "{} is {declared} bytes, over the limit of {max}",
            descriptor.digest
        );
    }
    let mut stream = client
        .pull_blob_stream(reference, descriptor)
        .await
        .map_err(registry_error)?;
    if let Some(announced) = stream.content_length
        && announced != declared
    {
        bail!(
            "the registry announces {announced} bytes for {}, the manifest {declared}",
            descriptor.digest
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        // The last item is oci-client's digest check.
        let chunk =
            chunk.map_err(
                |e| match e.get_ref().and_then(|e| e.downcast_ref::<DigestError>()) {
                    Some(DigestError::VerificationError { expected, actual }) => anyhow::anyhow!(
                        "sha256 mismatch: the manifest names {expected}, the registry sent bytes \
                     hashing to {actual}; refused"
                    ),
                    _ => anyhow::Error::new(e),
                },
            )?;
        if (bytes.len() + chunk.len()) as u64 > declared {
            bail!(
                "the registry sent more than the {declared} bytes the manifest declares for {}",
                descriptor.digest
            );
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != declared {
        bail!(
            "the registry sent {} of the {declared} bytes of {}",
            bytes.len(),
            descriptor.digest
        );
    }
    Ok(bytes)
}

/// A component to export, with what its config says about it.
pub struct Export<'a> {
    /// Its module name (the layer's title is `NAME.wasm`).
    pub name: &'a str,
    /// Its version: the tag when the location names none, and the
    /// `org.opencontainers.image.version` annotation.
    pub version: &'a str,
    /// When it was registered (RFC 3339): the config's `created`, so that
    /// exporting the same version twice gives the same manifest.
    pub created: &'a str,
    /// The component's bytes.
    pub bytes: Vec<u8>,
}

/// What [`push`] pushed.
pub struct Pushed {
    /// Where (with the tag filled in).
    pub location: String,
    /// `sha256:…` of the manifest, as the registry reports it.
    pub manifest_digest: String,
    /// `sha256:…` of the layer.
    pub layer_digest: String,
}

/// Pushes `export` to `location` as a wasm component artifact: the layer,
/// a config (`created`, `architecture: wasm`, `os: wasip2`,
/// `layerDigests`, `component` with the component's top-level imports and
/// exports) and the manifest, tagged.
///
/// # Errors
/// The location names a digest (an export is tagged); the component does not
/// parse; the registry cannot be reached or refuses.
pub async fn push(location: &Location, args: &OciArgs, export: Export<'_>) -> Result<Pushed> {
    if location.reference.digest().is_some() {
        bail!("{location} names a digest: export to a tag (oci://REGISTRY/REPOSITORY[:TAG])");
    }
    let mut location = location.clone();
    if !location.explicit {
        let r = &location.reference;
        location.reference = Reference::with_tag(
            r.registry().to_string(),
            r.repository().to_string(),
            export.version.to_string(),
        );
    }
    let (imports, exports) = interfaces(&export.bytes)?;
    let layer = ImageLayer::new(
        export.bytes,
        LAYER_MEDIA_TYPE.to_string(),
        Some(BTreeMap::from([(
            "org.opencontainers.image.title".to_string(),
            format!("{}.wasm", export.name),
        )])),
    );
    let layer_digest = layer.sha256_digest();
    let config = serde_json::json!({
        "created": export.created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": { "exports": exports, "imports": imports },
    });
    let config = Config::new(
        serde_json::to_vec(&config)?,
        CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layers = [layer];
    let mut manifest = OciImageManifest::build(
        &layers,
        &config,
        Some(BTreeMap::from([
            (
                "org.opencontainers.image.version".to_string(),
                export.version.to_string(),
            ),
            (
                "org.opencontainers.image.created".to_string(),
                export.created.to_string(),
            ),
        ])),
    );
    manifest.media_type = Some(MANIFEST_MEDIA_TYPE.to_string());
    let (client, auth) = location.connect(args)?;
    let reference = &location.reference;
    client
        .push(reference, &layers, config, &auth, Some(manifest))
        .await
        .map_err(registry_error)
        .with_context(|| format!("pushing to {location}"))?;
    let manifest_digest = client
        .fetch_manifest_digest(reference, &auth)
        .await
        .map_err(registry_error)
        .with_context(|| format!("reading back the manifest digest of {location}"))?;
    Ok(Pushed {
        location: location.to_string(),
        manifest_digest,
        layer_digest,
    })
}

/// The component's top-level import and export names (`wasi:io/streams@0.2.0`,
/// `conduit:compute/processor@0.2.0`): what `wkg` lists in the config's
/// `component`, read without compiling.
fn interfaces(wasm: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.context("reading the component's imports and exports")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.push(import?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_registry() {
        let l = Location::parse("oci://127.0.0.1:5000/conduit/tok:1.0.0").unwrap();
        assert_eq!(l.registry(), "127.0.0.1:5000");
        assert!(l.explicit);
        assert_eq!(l.to_string(), "oci://127.0.0.1:5000/conduit/tok:1.0.0");
        let l = Location::parse("oci://ghcr.io/org/tok").unwrap();
        assert!(!l.explicit);
        let err = Location::parse("tok.wasm").unwrap_err();
        assert!(err.contains("not an OCI reference"), "{err}");
        let err = Location::parse("oci://tok:1.0.0").unwrap_err();
        assert!(err.contains("names no registry"), "{err}");
        let err = Location::parse("oci://org/tok").unwrap_err();
        assert!(err.contains("names no registry"), "{err}");
    }

    #[test]
    fn plain_http_only_on_loopback_or_when_asked() {
        for r in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
        let l = Location::parse("oci://registry.example.com/x:1").unwrap();
        assert!(!l.plain_http(&OciArgs::default()));
        assert!(l.plain_http(&OciArgs { insecure: true }));
    }
}
