//! The model executors: ONNX Runtime (and tract, with `--features tract`)
//! on real ONNX files, dynamic batching under concurrent load, the model
//! cache's memory budget, and the real all-MiniLM-L6-v2 against Python
//! onnxruntime's outputs.

use crate::common::workspace_root;
use conduit_executor::onnx_signature;
use conduit_executor::{
    Backend, BatchConfig, Device, Executor, ExecutorError, ModelCache, ModelConfig, OrtBackend,
};
use conduit_types::{Digest, NamedTensors, Tensor};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// ONNX Runtime from `ORT_DYLIB_PATH` (`make test` sets it to the library of
/// the onnxruntime wheel in `.venv`).
pub fn ort() -> Arc<dyn Backend> {
    Arc::new(OrtBackend::new(None).unwrap_or_else(|e| {
        panic!("{e}\n(run the tests with `make test`, which installs onnxruntime and sets ORT_DYLIB_PATH)")
    }))
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = workspace_root().join("testdata/fixtures").join(name);
    std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run `make fixtures`", path.display()))
}

pub fn minilm() -> Vec<u8> {
    let path = workspace_root().join("testdata/minilm/model.onnx");
    std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run `make onnx-model`", path.display()))
}

pub fn start(
    backend: Arc<dyn Backend>,
    bytes: &[u8],
    config: ModelConfig,
) -> Result<Executor, ExecutorError> {
    let signature = onnx_signature(bytes).expect("fixture parses");
    Executor::start(backend, bytes, signature, config)
}

/// Batching up to `max` rows, waiting `delay_us` for them.
pub fn batching(max: usize, delay_us: u64) -> ModelConfig {
    ModelConfig {
        batching: BatchConfig {
            max_batch_size: max,
            max_queue_delay: Duration::from_micros(delay_us),
            preferred_batch_sizes: vec![],
        },
        ..ModelConfig::default()
    }
}

fn x(rows: usize, base: f32) -> NamedTensors {
    let v: Vec<f32> = (0..rows * 4).map(|i| base + i as f32).collect();
    vec![(
        "x".into(),
        Tensor::from_f32(vec![rows as i64, 4], &v).unwrap(),
    )]
}

fn y(out: &NamedTensors) -> Vec<f32> {
    out.iter()
        .find(|(n, _)| n == "y")
        .expect("output y")
        .1
        .to_f32()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_results_equal_single_results_under_concurrent_load() {
    let add = fixture("add.onnx");
    let single = start(ort(), &add, batching(1, 0)).unwrap();
    let batched = start(ort(), &add, batching(8, 2_000)).unwrap();
    let bias = y(&single
        .infer(vec![(
            "x".into(),
            Tensor::from_f32(vec![1, 4], &[0.0; 4]).unwrap(),
        )])
        .await
        .unwrap());

    let mut tasks = Vec::new();
    for i in 0..64 {
        let (single, batched) = (single.clone(), batched.clone());
        tasks.push(tokio::spawn(async move {
            let rows = 1 + i % 3;
            let input = x(rows, i as f32 * 10.0);
            let alone = single.infer(input.clone()).await.unwrap();
            let together = batched.infer(input.clone()).await.unwrap();
            (input, alone, together)
        }));
    }
    for t in tasks {
        let (input, alone, together) = t.await.unwrap();
        assert_eq!(y(&alone), y(&together));
        let xs = input[0].1.to_f32().unwrap();
        let want: Vec<f32> = xs
            .iter()
            .enumerate()
            .map(|(i, v)| v + bias[i % 4])
            .collect();
        assert_eq!(y(&together), want);
        assert_eq!(together[0].1.shape(), input[0].1.shape());
    }
    let stats = batched.stats();
    assert_eq!(stats.requests, 64);
    assert!(stats.batches < 64, "no batch formed: {stats:?}");
    // Without batching every row ran alone (multi-row requests were split).
    let single = single.stats();
    assert_eq!(single.batches, single.rows);
    assert_eq!(single.rows, 1 + (0..64).map(|i| 1 + i % 3).sum::<u64>());
}

/// A request that cannot share a batch, to an idle model whose runs are
/// short, runs on the caller's thread (no queue wait, no thread hand-off);
/// one that could share a batch, or a model not yet timed, is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatchable_requests_to_a_fast_idle_model_run_inline() {
    let add = fixture("add.onnx");
    // The bound on recent runs is raised: on a loaded test machine even
    // `add` may average more than the default 100 µs.
    let config = ModelConfig {
        inline_below: Duration::from_secs(10),
        ..batching(1, 0)
    };
    let single = start(ort(), &add, config.clone()).unwrap();
    let (first, timing) = single.infer_timed(x(1, 1.0)).await.unwrap();
    assert!(timing.queue > Duration::ZERO, "an untimed model is queued");
    for i in 0..20 {
        let (out, timing) = single.infer_timed(x(1, 1.0)).await.unwrap();
        assert_eq!(y(&out), y(&first), "run {i}");
        assert_eq!(timing.queue, Duration::ZERO, "run {i} was queued");
    }
    // Rows beyond the batch are split and queued (a multi-row request is
    // parts of several batches, each waiting for a worker).
    let (out, timing) = single.infer_timed(x(3, 0.0)).await.unwrap();
    assert_eq!(out[0].1.shape(), [3, 4]);
    assert!(timing.queue > Duration::ZERO);
    let stats = single.stats();
    assert_eq!((stats.requests, stats.rows), (24, 24));
    assert_eq!(stats.failures, 0);

    // A batching model queues a one-row request: others may join its batch.
    let batched = start(
        ort(),
        &add,
        ModelConfig {
            inline_below: Duration::from_secs(10),
            ..batching(8, 0)
        },
    )
    .unwrap();
    for _ in 0..5 {
        let (_, timing) = batched.infer_timed(x(1, 1.0)).await.unwrap();
        assert!(timing.queue > Duration::ZERO);
    }
    // A bound of zero always queues.
    let queued = start(
        ort(),
        &add,
        ModelConfig {
            inline_below: Duration::ZERO,
            ..batching(1, 0)
        },
    )
    .unwrap();
    for _ in 0..5 {
        let (_, timing) = queued.infer_timed(x(1, 1.0)).await.unwrap();
        assert!(timing.queue > Duration::ZERO);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_max_batch_is_split_and_joined() {
    let add = fixture("add.onnx");
    let small = start(ort(), &add, batching(4, 0)).unwrap();
    let big = start(ort(), &add, batching(64, 0)).unwrap();
    let input = x(10, 1.0);
    let split = small.infer(input.clone()).await.unwrap();
    assert_eq!(split[0].1.shape(), [10, 4]);
    assert_eq!(y(&split), y(&big.infer(input).await.unwrap()));
    assert_eq!(small.stats().batches, 3); // 4 + 4 + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_rejected_before_the_queue() {
    let ids = start(ort(), &fixture("identity_i64.onnx"), ModelConfig::default()).unwrap();
    let ok = ids
        .infer(vec![(
            "ids".into(),
            Tensor::from_i64(vec![2, 3], &[1, 2, 3, 4, 5, 6]).unwrap(),
        )])
        .await
        .unwrap();
    assert_eq!(ok[0].0, "ids_out");
    assert_eq!(ok[0].1.to_i64().unwrap(), [1, 2, 3, 4, 5, 6]);
    let cases: Vec<(NamedTensors, &str)> = vec![
        (vec![], "missing input `ids`"),
        (
            vec![("ids".into(), Tensor::from_f32(vec![1, 1], &[1.0]).unwrap())],
            "must be INT64, got FP32",
        ),
        (
            vec![("ids".into(), Tensor::from_i64(vec![3], &[1, 2, 3]).unwrap())],
            "shape",
        ),
        (
            vec![
                ("ids".into(), Tensor::from_i64(vec![1, 1], &[1]).unwrap()),
                ("other".into(), Tensor::from_i64(vec![1, 1], &[1]).unwrap()),
            ],
            "unknown input `other`",
        ),
    ];
    for (inputs, message) in cases {
        let err = ids.infer(inputs).await.unwrap_err();
        assert!(matches!(err, ExecutorError::InvalidInput(_)), "{err:?}");
        assert!(
            err.to_string().contains(message),
            "`{err}` lacks `{message}`"
        );
    }
    assert_eq!(ids.stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_overloaded_not_unbounded() {
    let config = ModelConfig {
        name: "minilm".into(),
        queue_capacity: 2,
        batching: BatchConfig {
            max_batch_size: 1,
            ..BatchConfig::default()
        },
        ..ModelConfig::default()
    };
    let model = start(ort(), &minilm(), config).unwrap();
    let seq = 256;
    let ids: Vec<i64> = (0..seq).map(|i| 1000 + i).collect();
    let input: NamedTensors = ["input_ids", "attention_mask", "token_type_ids"]
        .into_iter()
        .zip([ids, vec![1; seq as usize], vec![0; seq as usize]])
        .map(|(n, v)| (n.to_string(), Tensor::from_i64(vec![1, seq], &v).unwrap()))
        .collect();
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let (model, input) = (model.clone(), input.clone());
            tokio::spawn(async move { model.infer(input).await })
        })
        .collect();
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(ExecutorError::Overloaded { capacity: 2, .. })))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(overloaded > 0 && ok > 0, "{overloaded} overloaded, {ok} ok");
    assert_eq!(overloaded + ok, 12);
    // Once the queue drains, it serves again.
    assert!(model.infer(input).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_evicts_idle_models_never_busy_ones() {
    let add = fixture("add.onnx");
    let ids = fixture("identity_i64.onnx");
    let budget = add.len().max(ids.len()) as u64 + 10; // room for one model
    let cache = ModelCache::new(budget);
    let load = |bytes: Vec<u8>| move || start(ort(), &bytes, ModelConfig::default());
    let (da, di) = (Digest::of(&add), Digest::of(&ids));
    let a = cache
        .get_or_load(da, add.len() as u64, load(add.clone()))
        .await
        .unwrap();
    drop(a);
    let i = cache
        .get_or_load(di, ids.len() as u64, load(ids.clone()))
        .await
        .unwrap();
    let stats = cache.stats();
    assert_eq!(
        (stats.loaded, stats.loads, stats.evictions),
        (1, 2, 1),
        "{stats:?}"
    );
    assert!(cache.get(&da).is_none());
    // `i` is held (in use): loading `add` again cannot evict it.
    let err = cache
        .get_or_load(da, add.len() as u64, load(add.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::MemoryBudget(_)), "{err}");
    drop(i);
    cache
        .get_or_load(da, add.len() as u64, load(add))
        .await
        .unwrap();
    assert_eq!(cache.stats().evictions, 2);
}

#[tokio::test]
async fn unusable_devices_and_libraries_are_clear_errors() {
    let config = ModelConfig {
        device: Device::Cuda(0),
        ..ModelConfig::default()
    };
    let err = start(ort(), &fixture("add.onnx"), config).unwrap_err();
    assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("cuda:0"), "{err}");
    // ONNX Runtime is per process: once loaded, another library is refused
    // by name (the first-load errors are unit tests of the host crate).
    let err = OrtBackend::new(Some("/nonexistent/libonnxruntime.so".into())).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    let signature = onnx_signature(&fixture("add.onnx")).unwrap();
    let err = Executor::start(
        ort(),
        &fixture("garbage.onnx"),
        signature,
        ModelConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ExecutorError::Load { backend: "ort", .. }),
        "{err:?}"
    );
}

#[derive(Deserialize)]
pub struct Reference {
    pub sentences: Vec<Sentence>,
    pub pairs: Vec<Pair>,
}

#[derive(Deserialize)]
pub struct Sentence {
    pub id: String,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub last_hidden_state: Vec<f32>,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub label: String,
}

pub fn reference() -> Reference {
    let path = workspace_root().join("testdata/minilm_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run `make minilm-reference`", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs every reference sentence through `model` (alone, and all at once in
/// batches of up to 8 via concurrent requests) and checks the hidden states
/// against Python onnxruntime's within 1e-4, then the paraphrase ordering.
pub async fn matches_python_onnxruntime(model: Executor) {
    let reference = reference();
    let mut tasks = Vec::new();
    for s in &reference.sentences {
        let n = s.input_ids.len() as i64;
        let inputs: NamedTensors = vec![
            (
                "input_ids".into(),
                Tensor::from_i64(vec![1, n], &s.input_ids).unwrap(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_i64(vec![1, n], &s.attention_mask).unwrap(),
            ),
            (
                "token_type_ids".into(),
                Tensor::from_i64(vec![1, n], &s.token_type_ids).unwrap(),
            ),
        ];
        let model = model.clone();
        tasks.push(tokio::spawn(async move { model.infer(inputs).await }));
    }
    let mut embeddings = std::collections::HashMap::new();
    for (s, task) in reference.sentences.iter().zip(tasks) {
        let out = task.await.unwrap().unwrap();
        let hidden = out
            .iter()
            .find(|(n, _)| n == "last_hidden_state")
            .unwrap()
            .1
            .to_f32()
            .unwrap();
        assert_eq!(hidden.len(), s.last_hidden_state.len(), "{}", s.id);
        let worst = hidden
            .iter()
            .zip(&s.last_hidden_state)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{}: max |Δ| {worst} > 1e-4", s.id);
        let n = s.input_ids.len();
        let mut e = pooling::mean_pool(&hidden, &s.attention_mask, 1, n, 384);
        pooling::l2_normalize(&mut e, 384);
        let worst = e
            .iter()
            .zip(&s.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{}: embedding max |Δ| {worst}", s.id);
        embeddings.insert(s.id.clone(), e);
    }
    let cosine = |a: &str, b: &str| -> f32 {
        embeddings[a]
            .iter()
            .zip(&embeddings[b])
            .map(|(x, y)| x * y)
            .sum()
    };
    let para: Vec<f32> = reference
        .pairs
        .iter()
        .filter(|p| p.label == "paraphrase")
        .map(|p| cosine(&p.a, &p.b))
        .collect();
    let unrelated: Vec<f32> = reference
        .pairs
        .iter()
        .filter(|p| p.label == "unrelated")
        .map(|p| cosine(&p.a, &p.b))
        .collect();
    let lowest_para = para.iter().copied().fold(f32::MAX, f32::min);
    let highest_unrelated = unrelated.iter().copied().fold(f32::MIN, f32::max);
    assert!(
        lowest_para > highest_unrelated + 0.3,
        "paraphrases {para:?} vs unrelated {unrelated:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ort_minilm_matches_python_onnxruntime() {
    let config = ModelConfig {
        name: "minilm".into(),
        ..ModelConfig::default()
    };
    matches_python_onnxruntime(start(ort(), &minilm(), config).unwrap()).await;
}

#[cfg(feature = "tract")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tract_minilm_matches_python_onnxruntime() {
    let config = ModelConfig {
        name: "minilm".into(),
        backend: conduit_executor::BackendKind::Tract,
        ..ModelConfig::default()
    };
    let tract: Arc<dyn Backend> = Arc::new(conduit_executor::TractBackend::new());
    matches_python_onnxruntime(start(tract, &minilm(), config).unwrap()).await;
}
