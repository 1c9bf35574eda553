//! Serving (KServe v2 gRPC): the data plane measured the way a client sees
//! it, over real gRPC on loopback against an in-process server (registry +
//! `inference.GRPCInferenceService` on one tonic server, its own
//! multi-threaded tokio runtime; clients on the bench's runtime).
//!
//! 1. Closed-loop load at concurrency 1 and 8 (N clients, one connection
//!    each, sending `ModelInfer` back to back) against the `paraphrase`
//!    pipeline and against the bare `minilm` model given the tokenizer's
//!    outputs for the same pair: requests/s, p50 and p99.
//! 2. A runner apart from the registry: its cold start on the pipeline (pull,
//!    compile, load) and the registry calls a warm request makes (zero).
//! 3. Server-side overhead per request on a tiny model (`add.onnx`, one row):
//!    the executor called directly, `Serving::infer` in-process, and the
//!    gRPC round trip, at concurrency 1.
//!
//! Every scenario first checks one answer (the pair scores > 0.5, responses
//! carry `conduit.digest`); `--smoke` sends only a few requests each.

mod cold;
mod load;
mod overhead;
pub(crate) mod server;

use crate::PAIR;
use crate::harness::Budget;
use anyhow::{Context, Result, ensure};
use conduit_registry::{ExecutorHints, Kind, RegistryClient};
use conduit_runtime::{CallContext, Param, ParamValue};
use conduit_types::{NamedTensors, Tensor};
use load::{Window, closed_loop};
use server::{Server, check_digest, f32s, infer, output, push_file, read, request};
use std::path::Path;
use std::time::Duration;

/// The pipeline pushed as `paraphrase@1.0.0`.
const PIPELINE: &str = include_str!("../../../examples/pipelines/paraphrase.toml");
/// The tiny model of the overhead measurement.
const ADD_MODEL: &str = "testdata/fixtures/add.onnx";
/// The tokenizer outputs MiniLM takes.
const ENCODER_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// Runs the serving tables; with `overhead_json`, only the overhead table,
/// whose numbers also go to that file as JSON (for bench/suite.py).
pub async fn run(
    dir: &Path,
    model: &Path,
    budget: Budget,
    smoke: bool,
    overhead_json: Option<&Path>,
) -> Result<()> {
    let scratch =
        std::env::temp_dir().join(format!("conduit-bench-serving-{}", std::process::id()));
    let server = Server::start(scratch).await?;
    let result = scenarios(&server, dir, model, budget, smoke, overhead_json.is_none()).await;
    let stopped = server.stop().await;
    let o = result?;
    stopped?;
    if let Some(path) = overhead_json {
        let doc = serde_json::json!({
            "tool": "conduit-bench --overhead-json",
            "model": "add.onnx [1, 4] FP32, one row, concurrency 1",
            "data_plane_us": o.data_plane_us,
            "beyond_transport_floor_us": o.beyond_transport_floor_us,
            "round_trip_minus_executor_us": o.round_trip_minus_executor_us,
            "server_live_us": o.server_live_us,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn scenarios(
    server: &Server,
    dir: &Path,
    model: &Path,
    budget: Budget,
    smoke: bool,
    loads: bool,
) -> Result<overhead::Overhead> {
    // Register what the pipeline uses, then the pipeline, then `add`.
    let registry = RegistryClient::connect(&server.url, &server.key).await?;
    let tokenizer = read(&dir.join("bert_tokenizer.wasm"))?;
    let post = read(&dir.join("embedding_post.wasm"))?;
    let minilm = read(model).context("run `make onnx-model`")?;
    let add = read(Path::new(ADD_MODEL)).context("run `make fixtures`")?;
    let onnx = |backend: &str, max_batch_size: u32| ExecutorHints {
        format: "onnx".into(),
        backend: backend.into(),
        max_batch_size,
        ..ExecutorHints::default()
    };
    push_file(
        &registry,
        Kind::Component,
        "tokenizer",
        &tokenizer,
        ExecutorHints::default(),
    )
    .await?;
    push_file(
        &registry,
        Kind::Component,
        "embedding-post",
        &post,
        ExecutorHints::default(),
    )
    .await?;
    push_file(&registry, Kind::Model, "minilm", &minilm, onnx("", 0)).await?;
    // The table compares the pipeline with its parts at 128 padded tokens (the
    // model rows below): the example truncates at 256 and pads to the longest.
    let example = r#"params = { max_length = 256, padding = "longest" }"#;
    ensure!(
        PIPELINE.contains(example),
        "examples/pipelines/paraphrase.toml no longer has `{example}`"
    );
    let pipeline = PIPELINE.replace(example, "params = { max_length = 128 }");
    push_file(
        &registry,
        Kind::Pipeline,
        "paraphrase",
        pipeline.as_bytes(),
        ExecutorHints::default(),
    )
    .await?;
    // One row, no batching: no batch-fill wait in the numbers.
    let add_hints = onnx("ort", 1);
    push_file(&registry, Kind::Model, "add", &add, add_hints.clone()).await?;

    // The requests, and one checked answer each (this also loads them).
    let text = Tensor::from_byte_strings(vec![2, 1], PAIR)?;
    let pipeline_request = request("paraphrase", &vec![("text".to_string(), text.clone())]);
    let tokenizer_component = server.components.load(&tokenizer).await?;
    let tokens = server
        .components
        .process(
            &tokenizer_component,
            vec![("text".into(), text)],
            &[Param {
                name: "max_length".into(),
                value: ParamValue::Int64(128),
            }],
            &CallContext::new("bench"),
        )
        .await?;
    let tokens: NamedTensors = tokens
        .into_iter()
        .filter(|(name, _)| ENCODER_INPUTS.contains(&name.as_str()))
        .collect();
    ensure!(
        tokens.len() == ENCODER_INPUTS.len(),
        "the tokenizer returned {:?}",
        tokens.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let seq = tokens[0].1.shape().get(1).copied().unwrap_or(0);
    let minilm_request = request("minilm", &tokens);

    let mut client = server.client().await?;
    let answer = infer(&mut client, &server.authorization, pipeline_request.clone()).await?;
    check_digest(&answer)?;
    let (_, similarity) = output(&answer, "similarity")?;
    let similarity = f32s(similarity);
    ensure!(
        similarity.first().is_some_and(|&s| s > 0.5),
        "paraphrase pair scored {similarity:?}, expected > 0.5"
    );
    ensure!(
        answer
            .parameters
            .keys()
            .filter(|k| k.starts_with("conduit.step."))
            .count()
            == 3,
        "pipeline response lacks a `conduit.step.*` parameter per step: {:?}",
        answer.parameters.keys().collect::<Vec<_>>()
    );
    let answer = infer(&mut client, &server.authorization, minilm_request.clone()).await?;
    check_digest(&answer)?;
    let (shape, _) = output(&answer, "last_hidden_state")?;
    ensure!(
        shape == [2, seq, 384],
        "minilm last_hidden_state has shape {shape:?}, expected [2, {seq}, 384]"
    );

    if !loads {
        return overhead::overhead(server, &mut client, &add, &add_hints, budget, smoke).await;
    }
    cold::runner(server).await?;
    let window = if smoke {
        Window {
            warmup: Duration::ZERO,
            measure: Duration::from_secs(10),
            max_per_client: 2,
        }
    } else {
        // Long enough for many requests at concurrency 8 (~1 s each on
        // 2 cores): 10 s after 2 s of warm-up, or 3 s after 1 s (`--quick`).
        Window {
            warmup: (budget.warmup * 4).max(Duration::from_secs(1)),
            measure: (budget.measure * 5).max(Duration::from_secs(3)),
            max_per_client: usize::MAX,
        }
    };
    println!();
    let length = if smoke {
        format!("{} requests per client", window.max_per_client)
    } else {
        format!("{:.1} s each", window.measure.as_secs_f64())
    };
    println!(
        "| KServe v2 gRPC, loopback, closed loop ({length}) | clients | requests/s | p50 (ms) | p99 (ms) | requests |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let loads = [
        (
            "pipeline `paraphrase`, the pair as text [2, 1]",
            &pipeline_request,
        ),
        ("model `minilm`, the pair tokenized", &minilm_request),
    ];
    // Pipeline and model back to back at each concurrency: the machine's
    // state drifts less between the two rows compared.
    for clients in [1, 8] {
        for (label, request) in loads {
            let load = closed_loop(server, request, clients, window).await?;
            println!(
                "| {label} | {clients} | {:.1} | {:.1} | {:.1} | {} |",
                load.per_second,
                load.p50.as_secs_f64() * 1e3,
                load.p99.as_secs_f64() * 1e3,
                load.requests
            );
        }
    }
    println!(
        "(the pair's similarity: {:.3}; `minilm` inputs: [2, {seq}] INT64 each; executor hints: defaults)",
        similarity[0]
    );

    overhead::overhead(server, &mut client, &add, &add_hints, budget, smoke).await
}
