//! The example components agree with the same Rust run natively, and the
//! pipeline-world example drives models through the `model` import.

use crate::common::*;
use conduit_runtime::{GuestError, InferFuture, ModelBackend, RuntimeError, SandboxLimits};
use conduit_types::{NamedTensors, Tensor};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test]
async fn softmax_topk_matches_native() {
    let rt = runtime();
    let c = rt.load(&component_bytes("softmax-topk")).await.unwrap();
    let logits: Vec<f32> = (0..4 * 1000)
        .map(|i| ((i * 7919) % 1000) as f32 / 97.0 - 5.0)
        .collect();
    let x = Tensor::from_f32(vec![4, 1000], &logits).unwrap();
    let out = rt
        .process(
            &c,
            vec![("logits".into(), x)],
            &[int_param("k", 7)],
            &ctx(SandboxLimits::default(), None),
        )
        .await
        .unwrap();
    let (p, i) = softmax_topk::softmax_topk(&logits, 1000, 7);
    assert_eq!(output(&out, "indices").to_i64().unwrap(), i);
    let got = output(&out, "probabilities").to_f32().unwrap();
    for (a, b) in got.iter().zip(&p) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
    }
    assert_eq!(output(&out, "probabilities").shape(), &[4, 7]);
}

fn hidden_state(batch: usize, seq: usize, dim: usize) -> Vec<f32> {
    (0..batch * seq * dim)
        .map(|i| ((i * 31 % 17) as f32 - 8.0) / 3.0)
        .collect()
}

#[tokio::test]
async fn embedding_post_matches_native_pooling() {
    let (batch, seq, dim) = (4, 6, 384);
    let hidden = hidden_state(batch, seq, dim);
    let mask: Vec<i64> = (0..batch * seq)
        .map(|i| i64::from(i % seq < 2 + i / seq))
        .collect();
    let rt = runtime();
    let c = rt.load(&component_bytes("embedding-post")).await.unwrap();
    let out = rt
        .process(
            &c,
            vec![
                (
                    "last_hidden_state".into(),
                    Tensor::from_f32(vec![4, 6, 384], &hidden).unwrap(),
                ),
                (
                    "attention_mask".into(),
                    Tensor::from_i64(vec![4, 6], &mask).unwrap(),
                ),
            ],
            &[],
            &ctx(SandboxLimits::default(), None),
        )
        .await
        .unwrap();
    let mut want = pooling::mean_pool(&hidden, &mask, batch, seq, dim);
    pooling::l2_normalize(&mut want, dim);
    let got = output(&out, "embeddings").to_f32().unwrap();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
    let sims = output(&out, "similarity").to_f32().unwrap();
    assert_eq!(sims, pooling::cosine_pairs(&want, dim));
    assert_eq!(sims.len(), 2);
}

/// A deterministic stand-in encoder for the `model` import until the
/// executors land: `last_hidden_state[b, s, d] = (id * (d + 1)) mod 7`.
struct ToyEncoder {
    calls: AtomicUsize,
    /// When set, each call answers only once this many calls are inside the
    /// model at the same time (as rows gather into one batch), or fails
    /// after 30 s.
    gather: Option<(usize, AtomicUsize)>,
}

impl ToyEncoder {
    fn new() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            gather: None,
        }
    }
}

impl ModelBackend for ToyEncoder {
    fn infer(&self, name: &str, inputs: NamedTensors) -> InferFuture<'_> {
        let name = name.to_string();
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some((want, inside)) = &self.gather {
                inside.fetch_add(1, Ordering::SeqCst);
                let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while inside.load(Ordering::SeqCst) < *want {
                    if std::time::Instant::now() > give_up {
                        return Err(GuestError::Internal(format!(
                            "only {} of {want} calls reached the model together",
                            inside.load(Ordering::SeqCst)
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            if name != "toy" {
                return Err(GuestError::NotFound(format!("no model `{name}`")));
            }
            let ids = inputs
                .iter()
                .find(|(n, _)| n == "input_ids")
                .ok_or_else(|| GuestError::InvalidInput("input_ids missing".into()))?
                .1
                .clone();
            let (batch, seq, dim) = (ids.shape()[0], ids.shape()[1], 8i64);
            let values: Vec<f32> = ids
                .to_i64()
                .map_err(|e| GuestError::InvalidInput(e.0))?
                .iter()
                .flat_map(|&id| (0..dim).map(move |d| ((id * (d + 1)) % 7) as f32))
                .collect();
            let t = Tensor::from_f32(vec![batch, seq, dim], &values)
                .map_err(|e| GuestError::Internal(e.0))?;
            Ok(vec![("last_hidden_state".to_string(), t)])
        })
    }
}

#[tokio::test]
async fn pipeline_component_calls_models_through_the_host() {
    let rt = runtime();
    let c = rt.load(&component_bytes("embed-pipeline")).await.unwrap();
    let backend = Arc::new(ToyEncoder::new());
    let ids = [101i64, 7, 9, 102, 101, 7, 9, 102];
    let inputs = || {
        vec![
            (
                "input_ids".to_string(),
                Tensor::from_i64(vec![2, 4], &ids).unwrap(),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_i64(vec![2, 4], &[1; 8]).unwrap(),
            ),
            (
                "token_type_ids".to_string(),
                Tensor::from_i64(vec![2, 4], &[0; 8]).unwrap(),
            ),
        ]
    };
    let params = [str_param("model", "toy"), int_param("repeat", 3)];
    let out = rt
        .process(
            &c,
            inputs(),
            &params,
            &ctx(SandboxLimits::default(), Some(backend.clone())),
        )
        .await
        .unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), 3);
    let sims = output(&out, "similarity").to_f32().unwrap();
    assert!(
        (sims[0] - 1.0).abs() < 1e-6,
        "identical sentences must score 1: {sims:?}"
    );
    assert_eq!(output(&out, "embeddings").shape(), &[2, 8]);

    // Model errors reach the component, which reports them as its own.
    let err = rt
        .process(
            &c,
            inputs(),
            &[str_param("model", "absent")],
            &ctx(SandboxLimits::default(), Some(backend)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Guest(GuestError::NotFound(m)) if m.contains("absent")),
        "{err:?}"
    );
    // Without a model backend the import answers `unsupported`.
    let err = rt
        .process(&c, inputs(), &[], &ctx(SandboxLimits::default(), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Guest(GuestError::Unsupported(_))),
        "{err:?}"
    );
}

/// Two rows of `[CLS] [SEP]`, as the encoder takes them.
fn two_tokens() -> Vec<(String, Tensor)> {
    let tensor = |v: [i64; 4]| Tensor::from_i64(vec![2, 2], &v).unwrap();
    vec![
        ("input_ids".to_string(), tensor([101, 102, 101, 102])),
        ("attention_mask".to_string(), tensor([1; 4])),
        ("token_type_ids".to_string(), tensor([0; 4])),
    ]
}

/// A call waiting on a model gives its compute slot back: a tenant whose
/// share of the pool is one running call still gets several calls into the
/// model at once (one batch), instead of one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_on_a_model_free_their_compute_slot() {
    let rt = runtime_with(conduit_runtime::EngineConfig {
        compute_threads: 2,
        max_running_per_tenant: 1,
        // Warm instances stay: a slot they kept would never come back.
        idle_instance_ttl: std::time::Duration::from_secs(600),
        ..Default::default()
    });
    let c = rt.load(&component_bytes("embed-pipeline")).await.unwrap();
    let backend = Arc::new(ToyEncoder {
        gather: Some((3, AtomicUsize::new(0))),
        ..ToyEncoder::new()
    });
    let limits = SandboxLimits {
        deadline: std::time::Duration::from_secs(60),
        ..SandboxLimits::default()
    };
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (rt, c, backend, limits) = (rt.clone(), c.clone(), backend.clone(), limits.clone());
            tokio::spawn(async move {
                let inputs = two_tokens();
                rt.process(
                    &c,
                    inputs,
                    &[str_param("model", "toy")],
                    &ctx(limits, Some(backend)),
                )
                .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // The slot goes back when a call ends, even though its warm instance
    // keeps the call's model handle: the next call runs (a slot kept by a
    // warm instance would leave it `overloaded`).
    let backend = Arc::new(ToyEncoder::new());
    for _ in 0..3 {
        let inputs = two_tokens();
        rt.process(
            &c,
            inputs,
            &[str_param("model", "toy")],
            &ctx(SandboxLimits::default(), Some(backend.clone())),
        )
        .await
        .unwrap();
    }
}
