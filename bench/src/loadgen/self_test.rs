//! `conduit-bench load --self-test`: the load generator against the bench's
//! in-process Conduit (registry + gRPC data plane, and the HTTP router on a
//! second listener, as `conduit dev` serves them). Pushes the `paraphrase`
//! pipeline and what it uses (and `add.onnx`), checks one answer of every
//! workload over both protocols, runs 2 s closed loop (c = 2) and 2 s open
//! loop (20 req/s) per protocol on `paraphrase` asserting zero errors and
//! drops, and checks that answers to the wrong model count as errors.

use super::client::{Protocol, Target};
use super::driver::{self, Mode};
use super::workload::Workload;
use super::{Options, report};
use crate::serving::server::{Server, push_file, read};
use anyhow::{Context, Result, ensure};
use conduit_registry::{ExecutorHints, Kind, RegistryClient};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The pipeline pushed as `paraphrase@1.0.0`.
const PIPELINE: &str = include_str!("../../../examples/pipelines/paraphrase.toml");
/// The tiny model of the `add` workload.
const ADD_MODEL: &str = "testdata/fixtures/add.onnx";
/// The MiniLM reference of the `minilm` workload.
const REFERENCE: &str = "testdata/minilm_reference.json";

/// Runs the self-test.
///
/// # Errors
/// Missing components or model, a server that does not start, or any
/// failed check.
pub async fn run(components: PathBuf, onnx: PathBuf) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("conduit-bench-load-{}", std::process::id()));
    let server = Server::start(scratch).await?;
    let result = scenarios(&server, &components, &onnx).await;
    let stopped = server.stop().await;
    result.and(stopped)
}

async fn scenarios(server: &Server, components: &Path, onnx: &Path) -> Result<()> {
    let registry = RegistryClient::connect(&server.url, &server.key).await?;
    let component = |name: &str| read(&components.join(format!("{name}.wasm")));
    let onnx_hints = ExecutorHints {
        format: "onnx".into(),
        ..ExecutorHints::default()
    };
    let pushes = [
        (Kind::Component, "tokenizer", component("bert_tokenizer")?),
        (
            Kind::Component,
            "embedding-post",
            component("embedding_post")?,
        ),
        (
            Kind::Model,
            "minilm",
            read(onnx).context("run `make onnx-model`")?,
        ),
        (Kind::Pipeline, "paraphrase", PIPELINE.as_bytes().to_vec()),
    ];
    for (kind, name, bytes) in pushes {
        let hints = match kind {
            Kind::Model => onnx_hints.clone(),
            _ => ExecutorHints::default(),
        };
        push_file(&registry, kind, name, &bytes, hints).await?;
    }
    let mut workloads = vec![Workload::Paraphrase];
    if Path::new(ADD_MODEL).exists() {
        push_file(
            &registry,
            Kind::Model,
            "add",
            &read(Path::new(ADD_MODEL))?,
            onnx_hints,
        )
        .await?;
        workloads.push(Workload::Add);
    } else {
        println!("(no {ADD_MODEL}: `add` skipped; `make fixtures`)");
    }
    if Path::new(REFERENCE).exists() {
        workloads.push(Workload::Minilm);
    } else {
        println!("(no {REFERENCE}: `minilm` skipped; `make minilm-reference`)");
    }

    let (http_address, stop_http, http_task) = serve_http(server).await?;
    let grpc_address = server.url.trim_start_matches("http://").to_string();
    let result = async {
        for protocol in [Protocol::Grpc, Protocol::Http] {
            let address = match protocol {
                Protocol::Grpc => grpc_address.clone(),
                Protocol::Http => http_address.clone(),
            };
            let options = |workload: Workload, mode: Mode, seconds: f64| Options {
                target: Target {
                    protocol,
                    address: address.clone(),
                    model: workload.name().into(),
                    version: String::new(),
                    key: Some(server.key.clone()),
                    timeout: Duration::from_secs(30),
                },
                workload,
                mode,
                warmup: Duration::from_millis(500),
                duration: Duration::from_secs_f64(seconds),
                reference: REFERENCE.into(),
                json: None,
                timeline: false,
            };
            let closed = |concurrency| Mode::Closed { concurrency };
            // One checked answer of each workload (loads each model, too).
            for &w in &workloads {
                let t = super::measure(&options(w, closed(1), 0.2)).await?;
                ensure!(
                    t.error_count() == 0,
                    "{} {}: {:?}",
                    protocol.name(),
                    w.name(),
                    t.errors
                );
            }
            let open = Mode::Open {
                rate: 20.0,
                max_in_flight: 4096,
                seed: 1,
                connections: 1,
            };
            for mode in [closed(2), open] {
                let o = options(Workload::Paraphrase, mode, 2.0);
                let t = super::measure(&o).await?;
                println!("{}", report::summary(&o, &t));
                ensure!(
                    t.error_count() == 0 && t.dropped == 0 && t.latency.len() > 0,
                    "{} errors, {} dropped, {} ok",
                    t.error_count(),
                    t.dropped,
                    t.latency.len()
                );
            }
            // The paraphrase request sent to `minilm`: every one an error.
            let mut wrong = options(Workload::Paraphrase, closed(1), 0.3);
            wrong.target.model = "minilm".into();
            let prepared = std::sync::Arc::new(super::client::Prepared::new(
                wrong.target.clone(),
                wrong.workload.case(&wrong.reference)?,
            )?);
            let t = driver::run(prepared, wrong.mode, Duration::ZERO, wrong.duration).await?;
            ensure!(
                t.latency.len() == 0 && t.error_count() > 0,
                "wrong model: {} ok, {:?}",
                t.latency.len(),
                t.errors
            );
            println!(
                "{}: the wrong model's {} answers all counted as errors ({:?})",
                protocol.name(),
                t.error_count(),
                t.errors.keys().collect::<Vec<_>>()
            );
        }
        anyhow::Ok(())
    }
    .await;
    let _ = stop_http.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    result?;
    stopped
        .context("the HTTP server did not stop")?
        .context("the HTTP server task")??;
    println!("load generator self-test: ok");
    Ok(())
}

/// Serves Conduit's KServe v2 HTTP router over the server's data plane on
/// `127.0.0.1:0`, on the server's runtime, as `conduit dev` does
/// (`TCP_NODELAY` on accepted sockets).
async fn serve_http(
    server: &Server,
) -> Result<(
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<()>>,
)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?.to_string();
    let router = conduit_runner::http::router(server.serving.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The server's runtime, as the gRPC handlers run there.
    let runtime = server
        .on_server(async { tokio::runtime::Handle::current() })
        .await?;
    let task = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await?;
        anyhow::Ok(())
    });
    Ok((address, stop, task))
}
