//! The registry subcommands: push, list, inspect, tag, untag, delete,
//! tenant create, gc, export. Each calls [`RegistryClient`] and prints the
//! result.

use crate::oci;
use anyhow::{Context, Result, bail};
use conduit_registry::{
    Digest, ExecutorHints, Kind, ListQuery, Manifest, PushProgress, Reference, RegistryClient,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Where the registry is and who we are.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Registry address.
    #[arg(
        long,
        env = "CONDUIT_REGISTRY",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub registry: String,
    /// API key (`conduit dev` prints one and keeps it in .conduit/admin.key).
    #[arg(long, env = "CONDUIT_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
}

impl Connection {
    /// The API key; without one, `./.conduit/admin.key` (the file `conduit
    /// dev` writes) so a local session needs no setup.
    pub fn key(&self) -> Result<String> {
        match &self.api_key {
            Some(k) => Ok(k.clone()),
            None => {
                let path = crate::serve::dev_key_path(std::path::Path::new(".conduit"));
                std::fs::read_to_string(&path)
                    .map(|k| k.trim().to_string())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "no API key: set CONDUIT_API_KEY or pass --api-key (conduit dev prints one)"
                        )
                    })
            }
        }
    }

    /// Connects to the registry.
    pub async fn connect(&self) -> Result<RegistryClient> {
        Ok(RegistryClient::connect(&self.registry, &self.key()?).await?)
    }
}

/// Module kinds a user pushes from a file.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PushKind {
    /// A WebAssembly component (`.wasm`).
    Component,
    /// An ONNX model (`.onnx`).
    Model,
    /// A pipeline manifest (`.toml`), type-checked against its steps.
    Pipeline,
}

/// Where `conduit push` reads a module from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// A component artifact in an OCI registry.
    Oci(oci::Location),
}

impl Source {
    /// `oci://…` is an OCI reference; anything else a path.
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with(oci::SCHEME) {
            oci::Location::parse(text).map(Self::Oci)
        } else {
            Ok(Self::File(text.into()))
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Oci(location) => write!(f, "{location}"),
        }
    }
}

/// `conduit push` options.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// What the file is.
    pub kind: PushKind,
    /// The file, or `oci://REGISTRY/REPOSITORY[:TAG]`: a component in an OCI
    /// registry (the wasm artifact layout `wkg` writes).
    #[arg(value_name = "FILE|oci://REGISTRY/REPO:TAG", value_parser = Source::parse)]
    pub source: Source,
    /// Module name (lowercase letters, digits, `-`, `_`, `.`).
    #[arg(long)]
    pub name: String,
    /// Semantic version, immutable once pushed.
    #[arg(long)]
    pub version: String,
    /// Tags to point at this version (repeatable); `latest` follows the highest version.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Model backend hint: ort, tract or remote.
    #[arg(long)]
    pub backend: Option<String>,
    /// Model device hint: cpu or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Model dynamic batching: largest batch.
    #[arg(long)]
    pub max_batch: Option<u32>,
    /// Model dynamic batching: longest wait for a batch to fill, in µs.
    #[arg(long)]
    pub max_delay_us: Option<u64>,
    /// Replicas a cluster keeps placed (any kind); the scheduler's default when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub replicas: Option<u32>,
    /// Autoscaling: most replicas (any kind); the scheduler's default when absent.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_replicas: Option<u32>,
    /// Autoscaling: a replica busier than this percentage of the time gets company.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub target_busy: Option<u32>,
    /// Autoscaling: requests waiting longer than this (ms) add a replica.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=600_000))]
    pub target_queue_ms: Option<u32>,
    /// Autoscaling: scaled to zero after this many seconds without a request.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub idle_seconds: Option<u32>,
    #[command(flatten)]
    pub oci: oci::OciArgs,
}

impl PushArgs {
    /// The push hints every kind takes: replicas and autoscaling.
    fn scale_hints(&self) -> ExecutorHints {
        ExecutorHints {
            replicas: self.replicas.unwrap_or(0),
            max_replicas: self.max_replicas.unwrap_or(0),
            target_busy_percent: self.target_busy.unwrap_or(0),
            target_queue_ms: self.target_queue_ms.unwrap_or(0),
            idle_seconds: self.idle_seconds.unwrap_or(0),
            ..ExecutorHints::default()
        }
    }
}

/// `conduit push`.
pub async fn push(conn: &Connection, args: PushArgs) -> Result<()> {
    let scale = args.scale_hints();
    let (kind, executor) = match args.kind {
        PushKind::Component | PushKind::Pipeline => {
            if args.backend.is_some()
                || args.device.is_some()
                || args.max_batch.is_some()
                || args.max_delay_us.is_some()
            {
                bail!("--backend, --device, --max-batch and --max-delay-us apply to models only");
            }
            let kind = match args.kind {
                PushKind::Pipeline => Kind::Pipeline,
                _ => Kind::Component,
            };
            (kind, scale)
        }
        PushKind::Model => (
            Kind::Model,
            ExecutorHints {
                format: "onnx".into(),
                backend: args.backend.clone().unwrap_or_default(),
                device: args.device.clone().unwrap_or_default(),
                max_batch_size: args.max_batch.unwrap_or(0),
                max_queue_delay_us: args.max_delay_us.unwrap_or(0),
                ..scale
            },
        ),
    };
    let (client, bytes) = match &args.source {
        Source::File(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            (conn.connect().await?, bytes)
        }
        Source::Oci(location) => {
            if kind != Kind::Component {
                bail!(
                    "{location}: only components come from OCI registries (the wasm artifact \
                     layout); push a {kind} from a file"
                );
            }
            let client = conn.connect().await?;
            let bytes = pull_oci(&client, location, &args).await?;
            (client, bytes)
        }
    };
    let total = bytes.len() as u64;
    // Names, version, tags, immutability and limits are checked before a
    // byte is sent (conduit-client's register).
    let repository = conduit_client::ModuleRepository::from_client(client);
    let progress = PushProgress::default();
    let bar = progress_bar(progress.clone(), total);
    let registered = repository
        .register(
            kind,
            &args.name,
            &args.version,
            &bytes,
            &executor,
            &args.tags,
            &progress,
        )
        .await;
    bar.abort();
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
    let registered = registered?;
    eprintln!(
        "uploaded {} ({}){}",
        args.source,
        human_bytes(total),
        if registered.uploaded {
            ""
        } else {
            ", already stored"
        }
    );
    println!(
        "{} {} {}",
        if registered.created {
            "pushed"
        } else {
            "unchanged"
        },
        registered.reference,
        registered.digest
    );
    if !registered.tags.is_empty() {
        println!("tags: {}", registered.tags.join(", "));
    }
    Ok(())
}

/// The component at `location`: its manifest and config checked, its
/// declared size and the push checked by the registry (`CheckPush`: names,
/// version, tags, the tenant's upload and storage limits) before a byte of it
/// is downloaded, its sha256 verified.
async fn pull_oci(
    client: &RegistryClient,
    location: &oci::Location,
    args: &PushArgs,
) -> Result<Vec<u8>> {
    let artifact = oci::Artifact::resolve(location, &args.oci).await?;
    client
        .check_push(
            Kind::Component,
            &args.name,
            &args.version,
            &args.tags,
            artifact.size(),
            None,
        )
        .await
        .with_context(|| {
            format!(
                "refused before downloading the {}-byte layer of {location}",
                artifact.size()
            )
        })?;
    let bytes = artifact.download().await?;
    eprintln!(
        "pulled {location} ({}): manifest {}, layer {} verified",
        human_bytes(bytes.len() as u64),
        artifact.manifest_digest,
        artifact.layer_digest()
    );
    Ok(bytes)
}

fn progress_bar(progress: PushProgress, total: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        loop {
            let sent = progress.sent().min(total);
            let pct = (sent * 100).checked_div(total).unwrap_or(100);
            let filled = (pct / 4) as usize;
            eprint!(
                "\r  uploading [{}{}] {pct:>3}% {} / {}",
                "#".repeat(filled),
                " ".repeat(25 - filled),
                human_bytes(sent),
                human_bytes(total)
            );
            let _ = std::io::stderr().flush();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `conduit list`: a table, or with `json` one JSON array of manifests.
pub async fn list(
    conn: &Connection,
    kind: Option<PushKindOrPipeline>,
    name: String,
    json: bool,
) -> Result<()> {
    let client = conn.connect().await?;
    let mut query = ListQuery {
        kind: kind.map(PushKindOrPipeline::kind),
        name_prefix: name,
        page_size: 500,
        page_token: String::new(),
    };
    let mut all = Vec::new();
    let mut first = true;
    loop {
        let (page, next) = client.list(&query).await?;
        if json {
            all.extend(page);
        } else {
            if std::mem::take(&mut first) {
                println!(
                    "{:<10} {:<32} {:<12} {:<20} {:>10}  DIGEST",
                    "KIND", "NAME", "VERSION", "TAGS", "SIZE"
                );
            }
            for m in page {
                println!(
                    "{:<10} {:<32} {:<12} {:<20} {:>10}  {}",
                    m.kind.to_string(),
                    m.name,
                    m.version,
                    m.tags.join(","),
                    human_bytes(m.size),
                    m.digest.short()
                );
            }
        }
        if next.is_empty() {
            break;
        }
        query.page_token = next;
    }
    if json {
        let values = all.iter().map(manifest_json).collect::<Result<Vec<_>>>()?;
        println!("{}", serde_json::to_string_pretty(&values)?);
    }
    Ok(())
}

/// A manifest as `inspect --json` and `list --json` print it.
fn manifest_json(m: &Manifest) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(m)?;
    value["tags"] = serde_json::json!(m.tags);
    Ok(value)
}

/// Any module kind, for filters.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PushKindOrPipeline {
    /// Components.
    Component,
    /// Models.
    Model,
    /// Pipelines.
    Pipeline,
}

impl PushKindOrPipeline {
    fn kind(self) -> Kind {
        match self {
            Self::Component => Kind::Component,
            Self::Model => Kind::Model,
            Self::Pipeline => Kind::Pipeline,
        }
    }
}

/// `conduit inspect`.
pub async fn inspect(conn: &Connection, reference: &str, json: bool) -> Result<()> {
    let m = conn.connect().await?.resolve(reference).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&manifest_json(&m)?)?);
        return Ok(());
    }
    println!("{}/{} ({})", m.tenant, m.reference(), m.kind);
    println!("digest:     {}", m.digest);
    println!("size:       {} ({} bytes)", human_bytes(m.size), m.size);
    println!(
        "tags:       {}",
        if m.tags.is_empty() {
            "-".into()
        } else {
            m.tags.join(", ")
        }
    );
    if !m.world.is_empty() {
        println!("world:      {}", m.world);
    }
    println!("created:    {} by {}", m.created_at, m.created_by);
    for r in &m.references {
        println!("references: {r}");
    }
    if m.executor.replicas > 0 {
        println!("replicas:   {}", m.executor.replicas);
    }
    let e = &m.executor;
    if e.max_replicas + e.target_busy_percent + e.target_queue_ms + e.idle_seconds > 0 {
        let hint = |n: u32| {
            if n == 0 {
                "default".to_string()
            } else {
                n.to_string()
            }
        };
        println!(
            "autoscale:  max_replicas={} target_busy%={} target_queue_ms={} idle_seconds={}",
            hint(e.max_replicas),
            hint(e.target_busy_percent),
            hint(e.target_queue_ms),
            hint(e.idle_seconds)
        );
    }
    let e = &m.executor;
    if m.kind == Kind::Model {
        println!(
            "executor:   format={} backend={} device={} max_batch={} max_delay_us={}",
            e.format,
            or_default(&e.backend),
            or_default(&e.device),
            e.max_batch_size,
            e.max_queue_delay_us
        );
    }
    for t in &m.signature.inputs {
        println!(
            "input       {}: {} {:?}",
            printable(&t.name),
            t.datatype,
            t.shape
        );
    }
    for t in &m.signature.outputs {
        println!(
            "output      {}: {} {:?}",
            printable(&t.name),
            t.datatype,
            t.shape
        );
    }
    Ok(())
}

fn or_default(s: &str) -> &str {
    if s.is_empty() { "default" } else { s }
}

/// `conduit tag`.
pub async fn tag(conn: &Connection, reference: &str, tag: &str) -> Result<()> {
    let (m, previous) = conn.connect().await?.tag(reference, tag).await?;
    match previous {
        Some(p) if p != m.version => println!("{}:{tag} → {} (was {p})", m.name, m.version),
        _ => println!("{}:{tag} → {}", m.name, m.version),
    }
    Ok(())
}

/// `conduit untag`.
pub async fn untag(conn: &Connection, name: &str, tag: &str) -> Result<()> {
    let version = conn.connect().await?.untag(name, tag).await?;
    println!("removed {name}:{tag} (was {version})");
    Ok(())
}

/// `conduit delete`.
pub async fn delete(conn: &Connection, reference: &str) -> Result<()> {
    let m = conn.connect().await?.delete(reference).await?;
    println!("deleted {} {}", m.reference(), m.digest);
    Ok(())
}

/// `conduit tenant create`.
pub async fn create_tenant(
    conn: &Connection,
    name: &str,
    max_upload: u64,
    max_stored: u64,
) -> Result<()> {
    let key = conn
        .connect()
        .await?
        .create_tenant(name, max_upload, max_stored)
        .await?;
    println!("tenant `{name}` created; its API key (shown once):");
    println!("{key}");
    Ok(())
}

/// `conduit tenant list`.
pub async fn list_tenants(conn: &Connection) -> Result<()> {
    let tenants = conn.connect().await?.tenants().await?;
    println!(
        "{:<24} {:<6} {:<9} {:>12} {:>12}  CREATED",
        "TENANT", "ADMIN", "KEY", "MAX UPLOAD", "MAX STORED"
    );
    for t in tenants {
        println!(
            "{:<24} {:<6} {:<9} {:>12} {:>12}  {}",
            t.name,
            if t.admin { "yes" } else { "no" },
            t.key_id,
            human_bytes(t.max_upload_bytes),
            human_bytes(t.max_stored_bytes),
            t.created_at
        );
    }
    Ok(())
}

/// `conduit tenant delete`.
pub async fn delete_tenant(conn: &Connection, name: &str, force: bool) -> Result<()> {
    let versions = conn.connect().await?.delete_tenant(name, force).await?;
    println!("tenant `{name}` deleted with {versions} module versions");
    Ok(())
}

/// `conduit tenant rotate-key` (prints the new key) and `revoke-key` (does
/// not: the tenant is locked out until an admin rotates its key again).
pub async fn rotate_key(conn: &Connection, tenant: Option<&str>, show: bool) -> Result<()> {
    let (name, key) = conn.connect().await?.rotate_key(tenant).await?;
    if show {
        println!("new API key of tenant `{name}` (shown once; the old key no longer works):");
        println!("{key}");
    } else {
        println!(
            "the API key of tenant `{name}` is revoked; `conduit tenant rotate-key {name}` issues a new one"
        );
    }
    Ok(())
}

/// `conduit tenant usage`.
pub async fn usage(conn: &Connection, tenant: Option<&str>) -> Result<()> {
    let u = conn.connect().await?.usage(tenant).await?;
    println!("tenant:     {}", u.tenant);
    println!(
        "stored:     {} of {} ({} of {} bytes)",
        human_bytes(u.stored_bytes),
        human_bytes(u.limits.max_stored_bytes),
        u.stored_bytes,
        u.limits.max_stored_bytes
    );
    println!(
        "per upload: {} ({} bytes)",
        human_bytes(u.limits.max_upload_bytes),
        u.limits.max_upload_bytes
    );
    println!("modules:    {} ({} versions)", u.modules, u.versions);
    println!(
        "compiled:   {} ({} bytes, not charged)",
        human_bytes(u.compiled_bytes),
        u.compiled_bytes
    );
    Ok(())
}

/// `conduit pull`: the module's bytes, verified against its digest, written
/// to `out` atomically (a temporary file beside it, then a rename).
pub async fn pull(conn: &Connection, reference: &str, out: &std::path::Path) -> Result<()> {
    let client = conn.connect().await?;
    let m = client.resolve(reference).await?;
    let bytes = download(&client, &m).await?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let file_name = out
        .file_name()
        .with_context(|| format!("{} is not a file name", out.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.part",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, out)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("writing {}", out.display()));
    }
    println!(
        "pulled {} {} ({}) to {}",
        m.reference(),
        m.digest,
        human_bytes(m.size),
        out.display()
    );
    Ok(())
}

/// The bytes of `m`, verified against its digest.
async fn download(client: &RegistryClient, m: &Manifest) -> Result<Vec<u8>> {
    let bytes = client.download(&m.digest).await?;
    let got = Digest::of(&bytes);
    if got != m.digest {
        bail!(
            "downloaded bytes hash to {got}, not {}; nothing written",
            m.digest
        );
    }
    Ok(bytes)
}

/// `conduit export`: the component `reference` resolves to, pushed to
/// `location` as a wasm OCI artifact (see [`oci::push`]).
pub async fn export(
    conn: &Connection,
    reference: &str,
    location: &oci::Location,
    args: &oci::OciArgs,
) -> Result<()> {
    let client = conn.connect().await?;
    let m = client.resolve(reference).await?;
    if m.kind != Kind::Component {
        bail!(
            "{} is a {}: only components are exported as OCI artifacts",
            m.reference(),
            m.kind
        );
    }
    let bytes = download(&client, &m).await?;
    let export = oci::Export {
        name: &m.name,
        version: &m.version,
        created: &m.created_at,
        bytes,
    };
    let pushed = oci::push(location, args, export).await?;
    println!(
        "exported {} {} to {}",
        m.reference(),
        m.digest,
        pushed.location
    );
    println!("manifest: {}", pushed.manifest_digest);
    println!("layer:    {}", pushed.layer_digest);
    Ok(())
}

/// Splits a reference given to `infer` into the KServe v2 model name and
/// `model_version` (version, tag or digest; empty for `latest`), parsing it
/// once. A bare digest or a `tenant/` prefix is resolved through the
/// registry, which knows the name and whether the namespace is the caller's.
pub async fn model_and_version(
    conn: &Connection,
    reference: &str,
    version: &str,
) -> Result<(String, String)> {
    let bare = !reference.contains(['@', ':']);
    if !version.is_empty() && !bare {
        bail!("give the version once: in the reference (`{reference}`) or with --model-version");
    }
    let (tenant, parsed) = Reference::parse(reference)?;
    let name = match (tenant, parsed.name()) {
        (None, Some(name)) => name.to_string(),
        _ => conn.connect().await?.resolve(reference).await?.name,
    };
    let version = match parsed {
        _ if !version.is_empty() => version.to_string(),
        Reference::Version { version, .. } => version.to_string(),
        Reference::Tag { .. } if bare => String::new(),
        Reference::Tag { tag, .. } => tag,
        Reference::Digest(d) | Reference::Content { digest: d, .. } => d.to_string(),
    };
    Ok((name, version))
}

/// `conduit gc`.
pub async fn gc(conn: &Connection, grace_seconds: Option<u64>) -> Result<()> {
    let r = conn.connect().await?.collect_garbage(grace_seconds).await?;
    println!(
        "removed {} blobs ({}), kept {}",
        r.blobs_removed,
        human_bytes(r.bytes_freed),
        r.blobs_kept
    );
    Ok(())
}

/// `text` with control characters (escape sequences, newlines) written as
/// escapes: names come from other people's uploads and must not drive the
/// terminal or forge output lines.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}
