//! `conduit`: the command-line front door. Subcommands parse arguments and
//! hand over to the library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use conduit_runtime::{CallContext, Param, ParamValue, Runtime, RuntimeConfig};
use conduit_types::Tensor;
use std::path::{Path, PathBuf};

mod cluster;
mod cluster_up;
mod infer;
mod modules;
mod oci;
mod print;
mod serve;

/// Serve ML pipelines: WebAssembly components beside native model executors.
#[derive(Parser)]
#[command(name = "conduit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tokenize a text (or a text pair) with the bert-tokenizer component and print the tensors.
    Tokenize {
        /// The tokenizer component.
        #[arg(
            long,
            default_value = "target/wasm32-wasip2/release/bert_tokenizer.wasm"
        )]
        component: PathBuf,
        /// Pad or truncate every row to this many tokens.
        #[arg(long, default_value_t = 128)]
        max_length: i64,
        /// Encode the texts as separate rows instead of one pair.
        #[arg(long)]
        separate: bool,
        /// The text.
        text: String,
        /// A second text: encoded with the first as a pair (`[CLS] A [SEP] B [SEP]`).
        pair: Option<String>,
    },
    /// Load a component and print its digest, world and signature.
    Describe {
        /// The component (`.wasm`).
        component: PathBuf,
    },
    /// Run Conduit on this machine: the registry (and runner) over one data directory.
    Dev(serve::ServeArgs),
    /// Run the registry alone.
    Registry(serve::ServeArgs),
    /// Run a runner apart from the registry: it pulls modules from `--registry`, caches them, and serves KServe v2.
    #[command(args_conflicts_with_subcommands = true)]
    Runner {
        #[command(subcommand)]
        command: Option<RunnerCommand>,
        #[command(flatten)]
        args: serve::RunnerArgs,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Run a cluster scheduler (NATS): placements, the leader lease; standbys wait their turn.
    Scheduler(cluster::SchedulerArgs),
    /// Run a cluster gateway: one KServe v2 address routing to the runners (NATS + registry).
    Gateway {
        #[command(flatten)]
        args: cluster::GatewayArgs,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// A cluster: its state, or a whole one started on this machine.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Upload a component, model or pipeline manifest and register it as NAME@VERSION.
    Push {
        #[command(flatten)]
        args: modules::PushArgs,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Call a model, component or pipeline over KServe v2 gRPC and print the outputs.
    Infer {
        #[command(flatten)]
        args: infer::InferArgs,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// List your modules.
    List {
        /// Only this kind.
        #[arg(long)]
        kind: Option<modules::PushKindOrPipeline>,
        /// Only names starting with this.
        #[arg(long, default_value = "")]
        name: String,
        /// Print the manifests as one JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Download a module's bytes, verified against its digest.
    Pull {
        /// `name`, `name@version`, `name:tag`, `name@blake3:<hex>` or `blake3:<hex>`.
        reference: String,
        /// Where to write them (atomically).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Push a component to an OCI registry as a wasm artifact (config
    /// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer);
    /// `push component oci://…` reads one back.
    Export {
        /// The component: `name`, `name@version`, `name:tag`, `name@blake3:<hex>` or `blake3:<hex>`.
        reference: String,
        /// `oci://REGISTRY/REPOSITORY[:TAG]` (no tag: the module's version). Credentials
        /// from CONDUIT_OCI_USERNAME and CONDUIT_OCI_PASSWORD; anonymous without.
        #[arg(value_name = "oci://REGISTRY/REPO:TAG", value_parser = oci::Location::parse)]
        target: oci::Location,
        #[command(flatten)]
        oci: oci::OciArgs,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Show one module version: signature, digest, tags, size.
    Inspect {
        /// `name`, `name@version`, `name:tag`, `name@blake3:<hex>` or `blake3:<hex>`
        /// (shared by several versions: the one registered first).
        reference: String,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Point a tag at a version (moves it atomically if it exists).
    Tag {
        /// The version to tag (`name@version`, `name:other-tag`, digest).
        reference: String,
        /// The tag.
        tag: String,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Remove a tag (`latest` is the registry's own and cannot be removed).
    Untag {
        /// Module name (`name` or `tenant/name`).
        name: String,
        /// The tag.
        tag: String,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Delete one version (refused while a tag other than `latest` or another module references it).
    Delete {
        /// `name@version`, `name@blake3:<hex>` or `blake3:<hex>` (refused when several versions hold it).
        reference: String,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Manage tenants (admin key).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
        #[command(flatten)]
        conn: modules::Connection,
    },
    /// Delete blobs no module references (admin key).
    Gc {
        /// Keep unregistered uploads younger than this many seconds (default 3600).
        #[arg(long)]
        grace_seconds: Option<u64>,
        #[command(flatten)]
        conn: modules::Connection,
    },
}

#[derive(Subcommand)]
enum RunnerCommand {
    /// Drain a cluster runner: nothing new is placed on it, its replicas are
    /// loaded elsewhere first, its requests finish, then it exits.
    Drain {
        /// The runner's id (`conduit cluster status` lists them).
        id: String,
        #[command(flatten)]
        nats: cluster::NatsArgs,
        /// Wait (at most this many seconds) until it has left the cluster.
        #[arg(long, num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print the leader, the live runners and the placements.
    Status {
        #[command(flatten)]
        nats: cluster::NatsArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start NATS, the registry, two schedulers, a gateway and N runners as
    /// local processes; Ctrl-C stops them all.
    Up(cluster_up::UpArgs),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its API key (once).
    Create {
        /// Tenant name (lowercase letters, digits, `-`).
        name: String,
        /// Largest single upload in bytes (0: the registry's default).
        #[arg(long, default_value_t = 0)]
        max_upload_bytes: u64,
        /// Total stored bytes (0: the registry's default).
        #[arg(long, default_value_t = 0)]
        max_stored_bytes: u64,
    },
    /// List every tenant (admin key).
    List,
    /// Delete a tenant (admin key); refused while it holds modules unless --force.
    Delete {
        /// Tenant name.
        name: String,
        /// Also delete its modules, tags and uploads.
        #[arg(long)]
        force: bool,
    },
    /// Replace an API key and print the new one once; the old key fails at once.
    RotateKey {
        /// Tenant (default: your own; another tenant needs an admin key).
        name: Option<String>,
    },
    /// Revoke a tenant's API key without printing a new one (admin key);
    /// `rotate-key NAME` issues a new one later.
    RevokeKey {
        /// Tenant name.
        name: String,
    },
    /// Show stored bytes, limits, module count and compiled-artifact bytes.
    Usage {
        /// Tenant (default: your own; another tenant needs an admin key).
        name: Option<String>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUIT_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    if let Err(e) = runtime.block_on(run(cli.command)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Tokenize {
            component,
            max_length,
            separate,
            text,
            pair,
        } => {
            let texts: Vec<&str> = std::iter::once(text.as_str())
                .chain(pair.as_deref())
                .collect();
            let shape = if separate || texts.len() == 1 {
                vec![texts.len() as i64]
            } else {
                vec![1, 2]
            };
            let input = Tensor::from_byte_strings(shape, &texts)?;
            let params = [Param {
                name: "max_length".into(),
                value: ParamValue::Int64(max_length),
            }];
            let outputs = process(&component, vec![("text".into(), input)], &params).await?;
            for name in ["input_ids", "attention_mask", "token_type_ids"] {
                if let Some((_, t)) = outputs.iter().find(|(n, _)| n == name) {
                    print!("{}", print::tensor(name, t));
                }
            }
        }
        Command::Describe { component } => {
            let runtime = Runtime::new(RuntimeConfig::default())?;
            let c = runtime.load(&read(&component)?).await?;
            println!("digest: {}", c.digest());
            println!("world:  {}", c.world());
            println!("wit:    conduit:compute@{}", c.wit_version());
            for spec in &c.signature().inputs {
                println!("input   {spec}");
            }
            for spec in &c.signature().outputs {
                println!("output  {spec}");
            }
        }
        Command::Dev(args) => serve::serve(args, true).await?,
        Command::Registry(args) => serve::serve(args, false).await?,
        Command::Runner {
            command: Some(RunnerCommand::Drain { id, nats, wait }),
            ..
        } => cluster::drain(nats, id, wait).await?,
        Command::Runner {
            command: None,
            args,
            conn,
        } => serve::runner(args, conn).await?,
        Command::Scheduler(args) => cluster::scheduler(args).await?,
        Command::Gateway { args, conn } => cluster::gateway(args, conn).await?,
        Command::Cluster { command } => match command {
            ClusterCommand::Status { nats, json } => cluster::status(nats, json).await?,
            ClusterCommand::Up(args) => cluster_up::up(args).await?,
        },
        Command::Push { args, conn } => modules::push(&conn, args).await?,
        Command::Infer { args, conn } => infer::infer(&conn, args).await?,
        Command::List {
            kind,
            name,
            json,
            conn,
        } => modules::list(&conn, kind, name, json).await?,
        Command::Pull {
            reference,
            output,
            conn,
        } => modules::pull(&conn, &reference, &output).await?,
        Command::Export {
            reference,
            target,
            oci,
            conn,
        } => modules::export(&conn, &reference, &target, &oci).await?,
        Command::Inspect {
            reference,
            json,
            conn,
        } => modules::inspect(&conn, &reference, json).await?,
        Command::Tag {
            reference,
            tag,
            conn,
        } => modules::tag(&conn, &reference, &tag).await?,
        Command::Untag { name, tag, conn } => modules::untag(&conn, &name, &tag).await?,
        Command::Delete { reference, conn } => modules::delete(&conn, &reference).await?,
        Command::Tenant { command, conn } => match command {
            TenantCommand::Create {
                name,
                max_upload_bytes,
                max_stored_bytes,
            } => modules::create_tenant(&conn, &name, max_upload_bytes, max_stored_bytes).await?,
            TenantCommand::List => modules::list_tenants(&conn).await?,
            TenantCommand::Delete { name, force } => {
                modules::delete_tenant(&conn, &name, force).await?;
            }
            TenantCommand::RotateKey { name } => {
                modules::rotate_key(&conn, name.as_deref(), true).await?;
            }
            TenantCommand::RevokeKey { name } => {
                modules::rotate_key(&conn, Some(&name), false).await?;
            }
            TenantCommand::Usage { name } => modules::usage(&conn, name.as_deref()).await?,
        },
        Command::Gc {
            grace_seconds,
            conn,
        } => modules::gc(&conn, grace_seconds).await?,
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read component {} (build it with `make components`)",
            path.display()
        )
    })
}

async fn process(
    path: &Path,
    inputs: Vec<(String, Tensor)>,
    params: &[Param],
) -> Result<Vec<(String, Tensor)>> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let component = runtime.load(&read(path)?).await?;
    Ok(runtime
        .process(&component, inputs, params, &CallContext::new("local"))
        .await?)
}
