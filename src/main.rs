//! `conduit`: the command-line front door. Subcommands parse arguments and
//! hand over to the library crates.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use conduit_host::{CallContext, Param, ParamValue, Runtime, RuntimeConfig, Tensor};
use std::path::{Path, PathBuf};

mod print;

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
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
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
            for spec in &c.signature().inputs {
                println!("input   {spec}");
            }
            for spec in &c.signature().outputs {
                println!("output  {spec}");
            }
        }
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
