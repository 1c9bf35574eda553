//! Python guests: components written with the Python SDK (`guest-sdk-py/`)
//! and built by componentize-py (`make py-components`), served like Rust ones.
//!
//! Each Python component is ~17.5 MiB of wasm (CPython inside) and takes
//! ~4.5 s to compile on 2 idle cores, so each test loads it once. The tests
//! print what docs/components.md quotes (load and push times, call costs).

use crate::common::*;
use crate::serving::{Plane, expect_code, infer, outputs, push, raw_request};
use conduit_registry::{ExecutorHints, Kind, PushProgress};
use conduit_runtime::{CallContext, GuestError, RuntimeError, SandboxLimits};
use conduit_types::Tensor;
use std::time::Instant;
use tonic::Code;

/// `last_hidden_state` and `attention_mask` of `batch` rows: row `b` has
/// `1 + b % seq` unmasked tokens then padding, and row 1 has a masked hole.
fn encoder_outputs(batch: usize, seq: usize, dim: usize) -> Vec<(String, Tensor)> {
    let hidden: Vec<f32> = (0..batch * seq * dim)
        .map(|i| (((i * 7919) % 1013) as f32 / 101.3 - 5.0) * 0.37)
        .collect();
    let mut mask: Vec<i64> = (0..batch * seq)
        .map(|i| i64::from(i % seq <= (i / seq) % seq))
        .collect();
    if batch > 1 && seq > 2 {
        mask[seq] = 1;
        mask[seq + 1] = 0;
        mask[seq + 2] = 1;
    }
    let (b, s, d) = (batch as i64, seq as i64, dim as i64);
    vec![
        (
            "last_hidden_state".into(),
            Tensor::from_f32(vec![b, s, d], &hidden).unwrap(),
        ),
        (
            "attention_mask".into(),
            Tensor::from_i64(vec![b, s], &mask).unwrap(),
        ),
    ]
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let identical = got
        .iter()
        .zip(want)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    eprintln!("{what}: Python and Rust bit-identical: {identical}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-6, "{what}[{i}]: Python {a} vs Rust {b}");
    }
}

/// The Python `embedding-post-py` states the Rust `embedding-post`'s
/// signature and computes the same numbers; an odd batch is the same
/// `invalid-input`; a second call reuses the warm instance; a memory limit
/// below CPython's floor is a clear memory-limit error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_embedding_post_equals_the_rust_one() {
    // A runtime of its own: no other test's calls evict the warm instance.
    let rt = small_runtime(8);
    let started = Instant::now();
    let py = rt
        .load(&component_bytes("embedding-post-py"))
        .await
        .unwrap();
    eprintln!(
        "embedding-post-py: {} bytes, loaded (compiled + described) in {:?}",
        component_bytes("embedding-post-py").len(),
        started.elapsed()
    );
    let rust = rt.load(&component_bytes("embedding-post")).await.unwrap();
    assert_eq!(py.signature(), rust.signature());

    let tenant = CallContext::new("python-guest");
    let inputs = encoder_outputs(4, 9, 384);
    let (want, _) = rt.process_traced(&rust, inputs.clone(), &[], &tenant).await;
    let want = want.unwrap();
    let (first, _) = rt.process_traced(&py, inputs.clone(), &[], &tenant).await;
    let first = first.unwrap();
    for name in ["embeddings", "similarity"] {
        assert_eq!(output(&first, name).shape(), output(&want, name).shape());
        assert_close(
            name,
            &output(&first, name).to_f32().unwrap(),
            &output(&want, name).to_f32().unwrap(),
        );
    }
    // Warm: the second call reuses the first call's instance.
    let started = Instant::now();
    let (again, fresh) = rt.process_traced(&py, inputs, &[], &tenant).await;
    eprintln!(
        "embedding-post-py: warm call [4, 9, 384] in {:?}",
        started.elapsed()
    );
    assert!(!fresh, "the second call made a fresh instance");
    assert_eq!(again.unwrap(), first);

    // What a warm call costs: a pair of short sentences (12 and 13 tokens)
    // padded to 128, the median of 10 calls each.
    let mut pair = encoder_outputs(2, 128, 384);
    let mask: Vec<i64> = (0..256)
        .map(|i| i64::from(i % 128 < 12 + i / 128))
        .collect();
    pair[1].1 = Tensor::from_i64(vec![2, 128], &mask).unwrap();
    for (name, c) in [("embedding-post-py", &py), ("embedding-post", &rust)] {
        let mut times = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            let (out, _) = rt.process_traced(c, pair.clone(), &[], &tenant).await;
            out.unwrap();
            times.push(started.elapsed());
        }
        times.sort();
        eprintln!(
            "{name}: warm call [2, 128, 384] (12 + 13 tokens): median {:?}",
            times[5]
        );
    }

    // An odd batch: the Rust component's error, word for word.
    let odd = encoder_outputs(3, 4, 8);
    let py_err = rt
        .process(&py, odd.clone(), &[], &tenant)
        .await
        .unwrap_err();
    let rust_err = rt.process(&rust, odd, &[], &tenant).await.unwrap_err();
    match (&py_err, &rust_err) {
        (
            RuntimeError::Guest(GuestError::InvalidInput(p)),
            RuntimeError::Guest(GuestError::InvalidInput(r)),
        ) => assert_eq!(p, r),
        other => panic!("{other:?}"),
    }

    // CPython needs ~12 MiB of linear memory from its first instruction: a
    // limit below that is the sandbox's memory-limit error, and the host
    // goes on serving.
    let tight = CallContext::new("python-guest-tight").with_limits(SandboxLimits {
        memory_bytes: 8 << 20,
        ..SandboxLimits::default()
    });
    let err = rt
        .process(&py, encoder_outputs(2, 4, 8), &[], &tight)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::MemoryLimit { limit, .. } if limit == 8 << 20),
        "{err:?}"
    );
    rt.process(&py, encoder_outputs(2, 4, 8), &[], &tenant)
        .await
        .unwrap();
}

/// A Python exception is an `internal` error with its type and place, never
/// a trap; SDK errors keep their case; the instance (and its state) lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_exceptions_are_errors_not_traps() {
    let rt = small_runtime(8);
    let c = rt.load(&component_bytes("py-errors")).await.unwrap();
    let tenant = CallContext::new("python-errors");
    let x = || {
        vec![(
            "x".to_string(),
            Tensor::from_f32(vec![2], &[1.5, -2.0]).unwrap(),
        )]
    };
    let call = |mode: &'static str, extra: Vec<conduit_runtime::Param>| {
        let (rt, c, tenant) = (rt.clone(), c.clone(), tenant.clone());
        async move {
            let mut params = vec![str_param("mode", mode)];
            params.extend(extra);
            rt.process_traced(&c, x(), &params, &tenant).await
        }
    };

    let (out, _) = call("ok", vec![]).await;
    let out = out.unwrap();
    assert_eq!(output(&out, "y").to_f32().unwrap(), [3.0, -4.0]);
    assert_eq!(output(&out, "x").to_f32().unwrap(), [1.5, -2.0]);
    assert_eq!(output(&out, "calls").to_i64().unwrap(), [1]);

    let (err, _) = call("invalid", vec![]).await;
    assert!(
        matches!(&err, Err(RuntimeError::Guest(GuestError::InvalidInput(m))) if m == "mode `invalid` refuses x of shape [2]"),
        "{err:?}"
    );
    let (err, _) = call("raise", vec![]).await;
    match err {
        Err(RuntimeError::Guest(GuestError::Internal(m))) => assert!(
            m.starts_with("ZeroDivisionError: division by zero (at app.py:")
                && m.ends_with(" in process)"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // No filesystem at run time: importing a module the build did not load
    // is an error naming it (the SDK unhooks the path finder), not a trap.
    let (err, _) = call("import", vec![]).await;
    assert!(
        matches!(&err, Err(RuntimeError::Guest(GuestError::Internal(m))) if m.starts_with("ModuleNotFoundError: No module named 'colorsys'")),
        "{err:?}"
    );
    // Errors keep the instance: its state counts every call so far.
    let (out, fresh) = call("ok", vec![]).await;
    assert!(!fresh, "an error discarded the warm instance");
    assert_eq!(output(&out.unwrap(), "calls").to_i64().unwrap(), [5]);

    // Growing past the memory limit inside `process`: either Python's
    // MemoryError (an internal error) or the sandbox's memory-limit trap,
    // never a crash; the next call is served.
    let limited = CallContext::new("python-errors-limited").with_limits(SandboxLimits {
        memory_bytes: 32 << 20,
        ..SandboxLimits::default()
    });
    let params = [str_param("mode", "alloc"), int_param("bytes", 64 << 20)];
    let err = rt.process(&c, x(), &params, &limited).await.unwrap_err();
    eprintln!("py-errors: allocating past the memory limit: {err}");
    assert!(
        matches!(&err, RuntimeError::MemoryLimit { .. })
            || matches!(&err, RuntimeError::Guest(GuestError::Internal(m)) if m.starts_with("MemoryError")),
        "{err:?}"
    );
    let ok = [str_param("mode", "ok")];
    rt.process(&c, x(), &ok, &limited).await.unwrap();
}

const SENTENCES: [&str; 4] = [
    "The company Conduit is based in the Bay Area",
    "Conduit's headquarters are situated in Mountain View",
    "The company Conduit is based in the Bay Area",
    "Grandmother's apple pie needs more cinnamon",
];

fn texts(texts: &[&str]) -> Vec<(String, Tensor)> {
    vec![(
        "text".to_string(),
        Tensor::from_byte_strings(vec![texts.len() as i64, 1], texts).unwrap(),
    )]
}

/// Over real gRPC with the real model: `paraphrase-py` (Python post step)
/// answers what `paraphrase` (Rust post step) answers, and its errors have
/// the same codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paraphrase_py_serves_what_paraphrase_serves() {
    let plane = Plane::start("").await;
    let c = plane.registry_client(&plane.key).await;
    let tokenizer = component_bytes("bert-tokenizer");
    push(&c, Kind::Component, "tokenizer", "1.0.0", &tokenizer).await;
    let rust = component_bytes("embedding-post");
    let rust = push(&c, Kind::Component, "embedding-post", "1.0.0", &rust).await;
    let started = Instant::now();
    let py = component_bytes("embedding-post-py");
    let py = push(&c, Kind::Component, "embedding-post-py", "1.0.0", &py).await;
    eprintln!(
        "embedding-post-py: pushed (upload, compile, describe) in {:?}",
        started.elapsed()
    );
    assert_eq!(py.signature, rust.signature);
    assert_eq!(py.world, "op");
    let model = std::fs::read(workspace_root().join("testdata/minilm/model.onnx")).unwrap();
    let (digest, _) = c.upload(&model, &PushProgress::default()).await.unwrap();
    let hints = ExecutorHints {
        format: "onnx".into(),
        max_batch_size: 8,
        ..ExecutorHints::default()
    };
    c.put_manifest(Kind::Model, "minilm", "1.0.0", &digest, &hints, &[], &[])
        .await
        .unwrap();
    for name in ["paraphrase", "paraphrase-py"] {
        let toml = std::fs::read(workspace_root().join(format!("examples/pipelines/{name}.toml")))
            .unwrap();
        push(&c, Kind::Pipeline, name, "1.0.0", &toml).await;
    }

    let mut client = plane.infer_client().await;
    let request = |model: &str| raw_request(model, &texts(&SENTENCES));
    let want = outputs(
        &infer(&mut client, &plane.key, request("paraphrase"))
            .await
            .unwrap(),
    );
    let got = outputs(
        &infer(&mut client, &plane.key, request("paraphrase-py"))
            .await
            .unwrap(),
    );
    for name in ["embeddings", "similarity"] {
        assert_eq!(got[name].shape(), want[name].shape(), "{name}");
        assert_close(
            name,
            &got[name].to_f32().unwrap(),
            &want[name].to_f32().unwrap(),
        );
    }
    let sims = got["similarity"].to_f32().unwrap();
    assert!(
        sims[0] > sims[1] + 0.3,
        "paraphrases must score above unrelated: {sims:?}"
    );

    // Warm calls: the Python step's instance is reused.
    let started = Instant::now();
    for _ in 0..5 {
        infer(&mut client, &plane.key, request("paraphrase-py"))
            .await
            .unwrap();
    }
    eprintln!(
        "paraphrase-py: warm request (4 sentences) in {:?}",
        started.elapsed() / 5
    );

    expect_code(
        infer(
            &mut client,
            &plane.key,
            raw_request("paraphrase-py", &texts(&SENTENCES[..3])),
        )
        .await,
        Code::InvalidArgument,
        "send a positive even number of sentences, got 3",
    );
}

/// One model, `adder`: `sum = a + b` (FP32). Keeps the inputs it was given.
#[derive(Default)]
struct Adder {
    seen: std::sync::Mutex<conduit_types::NamedTensors>,
}

impl conduit_runtime::ModelBackend for Adder {
    fn infer(
        &self,
        name: &str,
        inputs: conduit_types::NamedTensors,
    ) -> conduit_runtime::InferFuture<'_> {
        let name = name.to_string();
        Box::pin(async move {
            if name != "adder" {
                return Err(GuestError::NotFound(format!("no model `{name}`")));
            }
            let get = |n: &str| {
                inputs
                    .iter()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, t)| t.to_f32().ok())
                    .ok_or_else(|| GuestError::InvalidInput(format!("FP32 `{n}` missing")))
            };
            let sum: Vec<f32> = get("a")?
                .iter()
                .zip(get("b")?)
                .map(|(a, b)| a + b)
                .collect();
            let shape = vec![sum.len() as i64];
            *self.seen.lock().unwrap() = inputs;
            let sum = Tensor::from_f32(shape, &sum).map_err(|e| GuestError::Internal(e.0))?;
            Ok(vec![("sum".to_string(), sum)])
        })
    }
}

/// A `pipeline`-world Python component calls a model through the host: an
/// input passes to it as its handle (the same storage), a tensor made in
/// Python as data (WIT 0.2 `named-value`), the model's output comes back as a
/// handle it returns unread, and an unknown model is the host's `not-found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_pipeline_component_calls_models_through_the_host() {
    let rt = small_runtime(8);
    let c = rt.load(&component_bytes("py-pipeline")).await.unwrap();
    assert_eq!(c.world(), conduit_types::World::Pipeline);
    let adder = std::sync::Arc::new(Adder::default());
    let ctx = CallContext::new("py-pipeline").with_models(adder.clone());
    let x = Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0]).unwrap();
    let (out, _) = rt
        .process_traced(&c, vec![("x".into(), x.clone())], &[], &ctx)
        .await;
    let out = out.unwrap();
    assert_eq!(output(&out, "y").to_f32().unwrap(), vec![2.0, 3.0, 4.0]);
    assert_eq!(output(&out, "z").to_f32().unwrap(), vec![3.0, 4.0, 5.0]);
    {
        let seen = adder.seen.lock().unwrap();
        let a = &seen.iter().find(|(n, _)| n == "a").unwrap().1;
        assert_eq!(
            a.data().as_ptr(),
            x.data().as_ptr(),
            "`a` must be x's handle"
        );
        let b = &seen.iter().find(|(n, _)| n == "b").unwrap().1;
        assert_eq!(b.to_f32().unwrap(), vec![1.0; 3]);
    }
    // The instance kept nothing: the next call reuses it.
    let (again, fresh) = rt
        .process_traced(&c, vec![("x".into(), x.clone())], &[], &ctx)
        .await;
    again.unwrap();
    assert!(!fresh, "a warm instance must serve the second call");
    let err = rt
        .process(
            &c,
            vec![("x".into(), x)],
            &[str_param("model", "nope")],
            &ctx,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Guest(GuestError::NotFound(m)) if m.contains("nope")),
        "{err:?}"
    );
}
