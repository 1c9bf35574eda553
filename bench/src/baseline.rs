//! `conduit-bench baseline`: the in-process numbers the serving suite
//! (`bench/suite.py`) compares Conduit against, as JSON.
//!
//! - `model` (goal P1): all-MiniLM-L6-v2 called directly through ONNX Runtime
//!   — `LoadedModel::run` in a loop: no queue, no server, no tensors copied —
//!   on the paraphrase pair's real tokens repeated to B rows, for each B.
//! - `steps` (goal P3): one paraphrase request's pre- and post-processing.
//!   "WASM" is the tokenizer and embedding-post components called as the
//!   pipeline engine calls them (`Runtime::process` on a warm instance,
//!   tensors in and out); "native" is the same Rust (`bert_tokenizer`,
//!   `pooling`) as a native step would run it — read the input tensors (for
//!   the post-processing, only the unmasked tokens, as the component does),
//!   compute, build the output tensors; "native compute" is the function
//!   alone on values already decoded.
//!
//! ```text
//! conduit-bench baseline [--what model,steps] [--batch 2,8] [--warmup-s 2]
//!     [--duration-s 10] [--steps-s 2] [--components DIR] [--model FILE.onnx] [--json OUT]
//! ```

use anyhow::{Context, Result, bail, ensure};
use conduit_executor::onnx_signature;
use conduit_executor::{Backend, BackendKind, Backends};
use conduit_runtime::{CallContext, Param, ParamValue, Runtime, RuntimeConfig};
use conduit_types::{NamedTensors, Tensor};
use serde_json::{Value, json};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEQ: usize = 128;
const HIDDEN: usize = 384;

struct Options {
    model_runs: bool,
    steps: bool,
    batches: Vec<usize>,
    warmup: Duration,
    duration: Duration,
    steps_for: Duration,
    components: PathBuf,
    model: PathBuf,
    json: Option<PathBuf>,
}

/// Runs `conduit-bench baseline ARGS…` (the arguments after `baseline`).
///
/// # Errors
/// Bad arguments, a missing model or component, or an answer that is wrong.
pub fn main(mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut o = Options {
        model_runs: true,
        steps: true,
        batches: vec![2, 8],
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        steps_for: Duration::from_secs(2),
        components: "target/wasm32-wasip2/release".into(),
        model: "testdata/minilm/model.onnx".into(),
        json: None,
    };
    let secs = |v: String| -> Result<Duration> {
        let s: f64 = v.parse()?;
        ensure!(s > 0.0 && s.is_finite(), "seconds must be > 0");
        Ok(Duration::from_secs_f64(s))
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--what" => {
                let what = value()?;
                o.model_runs = what.split(',').any(|w| w == "model");
                o.steps = what.split(',').any(|w| w == "steps");
                ensure!(o.model_runs || o.steps, "--what is model, steps or both");
            }
            "--batch" => {
                o.batches = value()?
                    .split(',')
                    .map(|b| b.parse::<usize>().context("--batch takes rows, e.g. 2,8"))
                    .collect::<Result<_>>()?;
                ensure!(
                    o.batches.iter().all(|&b| b >= 2 && b % 2 == 0),
                    "--batch sizes are even (pairs of rows)"
                );
            }
            "--warmup-s" => o.warmup = secs(value()?)?,
            "--duration-s" => o.duration = secs(value()?)?,
            "--steps-s" => o.steps_for = secs(value()?)?,
            "--components" => o.components = value()?.into(),
            "--model" => o.model = value()?.into(),
            "--json" => o.json = Some(value()?.into()),
            other => bail!(
                "unknown argument `{other}` (--what model,steps --batch 2,8 --warmup-s S --duration-s S --steps-s S --components DIR --model FILE --json OUT)"
            ),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut doc = json!({ "tool": "conduit-bench baseline", "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()) });
    if o.model_runs {
        doc["model"] = model_loop(&o)?;
    }
    if o.steps {
        doc["steps"] = rt.block_on(steps(&o))?;
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The pair's tokens, `rows / 2` times over.
fn pair_batch(rows: usize) -> Result<NamedTensors> {
    let e = bert_tokenizer::encode_batch(&crate::PAIR, None, SEQ);
    let repeat = |v: &[i64]| v.repeat(rows / 2);
    let shape = vec![rows as i64, SEQ as i64];
    Ok(vec![
        (
            "input_ids".into(),
            Tensor::from_i64(shape.clone(), &repeat(&e.input_ids))?,
        ),
        (
            "attention_mask".into(),
            Tensor::from_i64(shape.clone(), &repeat(&e.attention_mask))?,
        ),
        (
            "token_type_ids".into(),
            Tensor::from_i64(shape, &repeat(&e.token_type_ids))?,
        ),
    ])
}

/// Percentiles (nearest rank) of µs samples.
fn percentiles(mut us: Vec<f64>) -> Value {
    us.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    json!({ "count": us.len(), "p50_us": at(0.5), "p90_us": at(0.9), "p99_us": at(0.99) })
}

fn model_loop(o: &Options) -> Result<Value> {
    let bytes = std::fs::read(&o.model)
        .with_context(|| format!("reading {} (run `make onnx-model`)", o.model.display()))?;
    let signature = onnx_signature(&bytes)?;
    let backend: Arc<dyn Backend> = Backends::detect(None).get(BackendKind::Ort)?;
    let mut out = Vec::new();
    for &rows in &o.batches {
        let input = pair_batch(rows)?;
        let config = crate::models::config(BackendKind::Ort, rows, Duration::ZERO);
        let mut model = backend.load(&bytes, &signature, &config)?;
        let first = model.run(&input)?;
        let hidden = first
            .iter()
            .find(|(n, _)| n == "last_hidden_state")
            .context("no last_hidden_state")?
            .1
            .to_f32()?;
        let (_, sims) = pooling::embed_and_score(
            &hidden[..2 * SEQ * HIDDEN],
            &pair_batch(2)?[1].1.to_i64()?,
            2,
            SEQ,
            HIDDEN,
        );
        ensure!(
            sims[0] > 0.5,
            "the pair scored {} (a wrong model?)",
            sims[0]
        );
        let end = Instant::now() + o.warmup;
        while Instant::now() < end {
            black_box(model.run(&input)?);
        }
        let (mut samples, start) = (Vec::new(), Instant::now());
        while start.elapsed() < o.duration {
            let t = Instant::now();
            black_box(model.run(&input)?);
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let window = start.elapsed().as_secs_f64();
        let rows_per_s = (rows * samples.len()) as f64 / window;
        let calls = samples.len();
        let latency = percentiles(samples);
        println!(
            "rust ort in process, batch {rows}: {rows_per_s:.1} rows/s ({:.1} pairs/s), p50 {:.1} ms",
            rows_per_s / 2.0,
            latency["p50_us"].as_f64().unwrap_or(0.0) / 1e3
        );
        out.push(json!({
            "batch": rows, "calls": calls, "window_s": window, "rows_per_s": rows_per_s,
            "pairs_per_s": rows_per_s / 2.0, "latency_us": latency,
        }));
    }
    Ok(Value::Array(out))
}

/// Times `op` call by call for `budget` after a quarter of it as warm-up.
async fn timed<F, Fut>(budget: Duration, mut op: F) -> Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let end = Instant::now() + budget / 4;
    while Instant::now() < end {
        op().await?;
    }
    let (mut samples, start) = (Vec::new(), Instant::now());
    while start.elapsed() < budget && samples.len() < 200_000 {
        let t = Instant::now();
        op().await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(percentiles(samples))
}

async fn steps(o: &Options) -> Result<Value> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let ctx = CallContext::new("baseline");
    let load = |name: &str| {
        let path = o.components.join(format!("{name}.wasm"));
        std::fs::read(&path)
            .with_context(|| format!("reading {} (make components)", path.display()))
    };
    let tokenizer = runtime.load(&load("bert_tokenizer")?).await?;
    let post = runtime.load(&load("embedding_post")?).await?;
    let max_length = [Param {
        name: "max_length".into(),
        value: ParamValue::Int64(SEQ as i64),
    }];

    // The pre-processing step: text [2, 1] → three INT64 [2, 128].
    let text = vec![(
        "text".to_string(),
        Tensor::from_byte_strings(vec![2, 1], crate::PAIR)?,
    )];
    let tokens = runtime
        .process(&tokenizer, text.clone(), &max_length, &ctx)
        .await?;
    let native = pair_batch(2)?;
    for (name, tensor) in &native {
        let got = tokens.iter().find(|(n, _)| n == name).context("output")?;
        ensure!(
            got.1.to_i64()? == tensor.to_i64()?,
            "WASM and native tokenizers disagree on `{name}`"
        );
    }
    let pre_wasm = timed(o.steps_for, || async {
        black_box(
            runtime
                .process(&tokenizer, text.clone(), &max_length, &ctx)
                .await?,
        );
        Ok(())
    })
    .await?;
    let pre_native = timed(o.steps_for, || async {
        let t = &text[0].1;
        let strings: Vec<&str> = t
            .byte_strings()?
            .into_iter()
            .map(std::str::from_utf8)
            .collect::<Result<_, _>>()?;
        let e = bert_tokenizer::encode_batch(&strings, None, SEQ);
        let shape = vec![strings.len() as i64, SEQ as i64];
        black_box([
            Tensor::from_i64(shape.clone(), &e.input_ids)?,
            Tensor::from_i64(shape.clone(), &e.attention_mask)?,
            Tensor::from_i64(shape, &e.token_type_ids)?,
        ]);
        Ok(())
    })
    .await?;
    let pre_compute = timed(o.steps_for, || async {
        black_box(bert_tokenizer::encode_batch(
            black_box(&crate::PAIR),
            None,
            SEQ,
        ));
        Ok(())
    })
    .await?;

    // The post-processing step on the model's real output for the pair.
    let bytes = std::fs::read(&o.model)
        .with_context(|| format!("reading {} (run `make onnx-model`)", o.model.display()))?;
    let signature = onnx_signature(&bytes)?;
    let backend = Backends::detect(None).get(BackendKind::Ort)?;
    let config = crate::models::config(BackendKind::Ort, 2, Duration::ZERO);
    let hidden = backend
        .load(&bytes, &signature, &config)?
        .run(&native)?
        .into_iter()
        .find(|(n, _)| n == "last_hidden_state")
        .context("no last_hidden_state")?
        .1;
    let mask = native[1].1.clone();
    let post_in = vec![
        ("last_hidden_state".to_string(), hidden.clone()),
        ("attention_mask".to_string(), mask.clone()),
    ];
    let out = runtime.process(&post, post_in.clone(), &[], &ctx).await?;
    let wasm_sims = out
        .iter()
        .find(|(n, _)| n == "similarity")
        .context("no similarity output")?
        .1
        .to_f32()?;
    let (_, sims) = pooling::embed_and_score(&hidden.to_f32()?, &mask.to_i64()?, 2, SEQ, HIDDEN);
    ensure!(
        wasm_sims == sims && sims[0] > 0.5,
        "WASM {wasm_sims:?} and native {sims:?} post-processing disagree"
    );
    let post_wasm = timed(o.steps_for, || async {
        black_box(runtime.process(&post, post_in.clone(), &[], &ctx).await?);
        Ok(())
    })
    .await?;
    // The same algorithm as the component: only the unmasked tokens' values
    // are read out of the tensor's bytes.
    let post_native = timed(o.steps_for, || async {
        let raw = hidden.data();
        let (emb, sims) =
            pooling::embed_and_score_spans(&mask.to_i64()?, 2, SEQ, HIDDEN, |b, lo, hi| {
                let at = |t: usize| (b * SEQ + t) * HIDDEN * 4;
                Ok::<_, anyhow::Error>(pooling::f32s_from_le(&raw[at(lo)..at(hi)]))
            })?;
        black_box([
            Tensor::from_f32(vec![2, HIDDEN as i64], &emb)?,
            Tensor::from_f32(vec![1], &sims)?,
        ]);
        Ok(())
    })
    .await?;
    let (h, m) = (hidden.to_f32()?, mask.to_i64()?);
    let post_compute = timed(o.steps_for, || async {
        black_box(pooling::embed_and_score(
            black_box(&h),
            black_box(&m),
            2,
            SEQ,
            HIDDEN,
        ));
        Ok(())
    })
    .await?;
    let p50 = |v: &Value| v["p50_us"].as_f64().unwrap_or(f64::NAN);
    for (name, wasm, native, compute) in [
        ("tokenize", &pre_wasm, &pre_native, &pre_compute),
        ("embedding-post", &post_wasm, &post_native, &post_compute),
    ] {
        println!(
            "step {name}: WASM {:.1} µs, native step {:.1} µs, native compute {:.1} µs (p50) → WASM / native {:.2}",
            p50(wasm),
            p50(native),
            p50(compute),
            p50(wasm) / p50(native)
        );
    }
    Ok(json!({
        "tokenize": { "wasm": pre_wasm, "native": pre_native, "native_compute": pre_compute },
        "post": { "wasm": post_wasm, "native": post_native, "native_compute": post_compute },
    }))
}
