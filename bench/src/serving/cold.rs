//! A runner apart from the registry (`Node::remote`, the registry's gRPC
//! service on loopback), as `conduit runner --registry URL` runs: its cold
//! start on the paraphrase pipeline, and how often a warm, pinned pipeline
//! request calls the registry.

use super::server::Server;
use crate::PAIR;
use anyhow::{Context, Result, ensure};
use conduit_registry::Tenant;
use conduit_runner::{InferRequest, Node, NodeConfig, Serving};
use conduit_types::Tensor;
use std::path::Path;
use std::time::{Duration, Instant};

/// Warm requests whose registry calls are counted.
const WARM: u64 = 20;

async fn paraphrase(serving: &Serving, tenant: &Tenant) -> Result<Duration> {
    let text = Tensor::from_byte_strings(vec![2, 1], PAIR)?;
    let started = Instant::now();
    let answer = serving
        .infer(
            tenant,
            InferRequest {
                model: "paraphrase".into(),
                inputs: vec![("text".into(), text)],
                ..InferRequest::default()
            },
        )
        .await?;
    let took = started.elapsed();
    let similarity = answer
        .outputs
        .iter()
        .find(|(n, _)| n == "similarity")
        .context("no `similarity` output")?
        .1
        .to_f32()?;
    ensure!(
        similarity.first().is_some_and(|&s| s > 0.5),
        "paraphrase pair scored {similarity:?} on the runner"
    );
    Ok(took)
}

/// Starts a runner on `data_dir` against `server`'s registry; returns it,
/// its tenant, and the time from start to the first answer.
async fn start(server: &Server, data_dir: &Path) -> Result<(Node, Tenant, Duration)> {
    let started = Instant::now();
    let node = Node::remote(
        NodeConfig::new(data_dir),
        &server.url,
        &server.key,
        Duration::from_secs(10),
    )?;
    ensure!(
        node.wait_linked(Duration::from_secs(10)).await,
        "the runner did not reach the registry at {}",
        server.url
    );
    let tenant = node
        .serving
        .authenticate(Some(&format!("Bearer {}", server.key)))
        .await?;
    paraphrase(&node.serving, &tenant).await?;
    Ok((node, tenant, started.elapsed()))
}

/// Prints the runner table. The registry already holds `paraphrase` and its
/// steps (pushed by the caller).
pub(super) async fn runner(server: &Server) -> Result<()> {
    let mut local = Vec::new();
    for _ in 0..WARM {
        local.push(paraphrase(&server.serving, &server.tenant).await?);
    }
    local.sort();
    let warm_pipeline = local[local.len() / 2];
    let dir = server.scratch.join("runner");
    let _ = std::fs::remove_dir_all(&dir);
    let (node, tenant, cold) = start(server, &dir).await?;
    let reads = node.serving.source_reads();
    let mut warm = Vec::new();
    for _ in 0..WARM {
        warm.push(paraphrase(&node.serving, &tenant).await?);
    }
    let per_request = (node.serving.source_reads() - reads) as f64 / WARM as f64;
    warm.sort();
    drop(node);
    let (node, _, restart) = start(server, &dir).await?;
    drop(node);
    println!();
    println!(
        "| a runner apart from the registry (`Node::remote`, gRPC on loopback), pipeline `paraphrase` | value |"
    );
    println!("|---|---:|");
    println!(
        "| cold start, empty data dir: link + pull 4 blobs + compile 2 components + load the model + first answer | {:.0} ms |",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "| restart, blobs and compiled components on disk: link + load + first answer | {:.0} ms |",
        restart.as_secs_f64() * 1e3
    );
    println!(
        "| warm request, in process (p50 of {WARM}; the in-process registry's: {:.1} ms) | {:.1} ms |",
        warm_pipeline.as_secs_f64() * 1e3,
        warm[warm.len() / 2].as_secs_f64() * 1e3
    );
    println!("| registry calls per warm request (key, name, steps, blobs) | {per_request} |");
    ensure!(
        per_request == 0.0,
        "a warm, pinned pipeline called the registry {per_request} times per request"
    );
    Ok(())
}
