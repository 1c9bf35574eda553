//! Model executors on all-MiniLM-L6-v2 (seq 128): in-process throughput at
//! batch 1, 8 and 32 for each backend, the executor queue against calling
//! the backend directly, and dynamic batching's gain at concurrency 16.

use crate::harness::{Budget, time_async, time_sync};
use anyhow::{Context, Result};
use conduit_executor::onnx_signature;
use conduit_executor::{Backend, BackendKind, Backends, BatchConfig, Executor, ModelConfig};
use conduit_types::{NamedTensors, Tensor};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn batch(rows: usize, seq: usize) -> NamedTensors {
    let ids: Vec<i64> = (0..rows * seq)
        .map(|i| 1000 + (i as i64 * 7) % 20000)
        .collect();
    let shape = vec![rows as i64, seq as i64];
    vec![
        (
            "input_ids".into(),
            Tensor::from_i64(shape.clone(), &ids).unwrap(),
        ),
        (
            "attention_mask".into(),
            Tensor::from_i64(shape.clone(), &vec![1; rows * seq]).unwrap(),
        ),
        (
            "token_type_ids".into(),
            Tensor::from_i64(shape, &vec![0; rows * seq]).unwrap(),
        ),
    ]
}

pub(crate) fn config(kind: BackendKind, max_batch: usize, delay: Duration) -> ModelConfig {
    ModelConfig {
        name: "minilm".into(),
        backend: kind,
        batching: BatchConfig {
            max_batch_size: max_batch,
            max_queue_delay: delay,
            preferred_batch_sizes: vec![],
        },
        ..ModelConfig::default()
    }
}

/// Rows per second from a per-iteration median.
fn rate(rows: usize, per_iter: Duration) -> f64 {
    rows as f64 / per_iter.as_secs_f64()
}

/// Runs the model tables.
pub async fn run(model: &Path, budget: Budget, smoke: bool) -> Result<()> {
    let bytes = std::fs::read(model)
        .with_context(|| format!("reading {} (run `make onnx-model`)", model.display()))?;
    let signature = onnx_signature(&bytes)?;
    let backends = Backends::detect(None);
    let seq = if smoke { 16 } else { 128 };
    let sizes: &[usize] = if smoke { &[1, 2] } else { &[1, 8, 32] };
    let budget = Budget {
        max_iters: budget.max_iters.min(if smoke { 2 } else { 200 }),
        ..budget
    };
    println!();
    println!(
        "| MiniLM, seq {seq}: backend, batch | direct (rows/s) | via queue (rows/s) | queue / direct |"
    );
    println!("|---|---:|---:|---:|");
    let mut kinds = vec![BackendKind::Ort];
    if backends.get(BackendKind::Tract).is_ok() {
        kinds.push(BackendKind::Tract);
    }
    for kind in kinds {
        let backend: Arc<dyn Backend> = backends.get(kind)?;
        for &rows in sizes {
            let input = batch(rows, seq);
            let mut direct =
                backend.load(&bytes, &signature, &config(kind, rows, Duration::ZERO))?;
            let d = time_sync(budget, || {
                direct.run(&input).expect("direct run");
            });
            drop(direct);
            let executor = Executor::start(
                backend.clone(),
                &bytes,
                signature.clone(),
                config(kind, rows, Duration::ZERO),
            )?;
            let q = time_async(budget, || async {
                executor.infer(input.clone()).await.expect("queued run");
            })
            .await;
            println!(
                "| {kind}, {rows} | {:.1} | {:.1} | {:.3} |",
                rate(rows, d.p50),
                rate(rows, q.p50),
                d.p50.as_secs_f64() / q.p50.as_secs_f64()
            );
        }
    }

    // Dynamic batching: 16 clients sending one sentence each, back to back.
    let clients = 16;
    let window = if smoke {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(4)
    };
    println!();
    println!(
        "| MiniLM ort, seq {seq}, {clients} concurrent clients, batch-1 requests | rows/s | p50 latency (ms) |"
    );
    println!("|---|---:|---:|");
    let ort = backends.get(BackendKind::Ort)?;
    let mut results = Vec::new();
    for (label, max_batch) in [
        ("no batching (max batch 1)", 1),
        ("dynamic batching (max 16, 2 ms)", 16),
    ] {
        let executor = Executor::start(
            ort.clone(),
            &bytes,
            signature.clone(),
            config(BackendKind::Ort, max_batch, Duration::from_millis(2)),
        )?;
        let (done, p50) = closed_loop(&executor, batch(1, seq), clients, window).await;
        let throughput = done as f64 / window.as_secs_f64();
        println!(
            "| {label} | {throughput:.1} | {:.1} |",
            p50.as_secs_f64() * 1e3
        );
        results.push(throughput);
    }
    println!(
        "| **batching gain** | **{:.2}×** | |",
        results[1] / results[0]
    );
    Ok(())
}

/// `clients` tasks each sending `input` back to back for `window`; returns
/// the requests completed and the median latency.
async fn closed_loop(
    executor: &Executor,
    input: NamedTensors,
    clients: usize,
    window: Duration,
) -> (usize, Duration) {
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (executor, input) = (executor.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                executor
                    .infer(input.clone())
                    .await
                    .expect("closed-loop request");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort();
    let p50 = all.get(all.len() / 2).copied().unwrap_or_default();
    (all.len(), p50)
}
