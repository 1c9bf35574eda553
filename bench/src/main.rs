//! Component benchmarks, reported as ratios measured in one run:
//!
//! 1. the component cost a request pays for a tiny input (instantiate + call),
//! 2. the tokenizer and softmax-top-k in WASM vs the same Rust natively, as
//!    whole calls and as compute alone (the op looped inside one call),
//! 3. 1 MiB and 16 MiB tensors through a component: routed (handle) vs copied,
//! 4. registration: push → first response, and a load from the compiled cache,
//! 5. model executors on all-MiniLM-L6-v2: throughput per backend and batch,
//!    the executor queue vs the backend called directly, batching's gain,
//! 6. serving over KServe v2 gRPC: closed-loop load on a pipeline and a
//!    model, and the data plane's overhead per request on a tiny model,
//! 7. isolation: a victim tenant's latency alone and under each attack.
//!
//! Run with `make bench` (or `cargo run --release -p conduit-bench -- --components DIR`).
//! `--quick` measures for less time; `--smoke` only checks every scenario
//! runs (used by `make test`, numbers meaningless).
//!
//! `conduit-bench load …` is a separate tool: a KServe v2 load generator
//! for any server (see the `loadgen` module and bench/README.md);
//! `conduit-bench cluster …` measures a cluster of real processes (see the
//! `cluster` module);
//! `conduit-bench autoscale …` measures autoscaling on a local cluster (see
//! the `autoscale` module);
//! `conduit-bench baseline …` measures the in-process limits the serving
//! suite compares against (see the `baseline` module);
//! `conduit-bench sharing …` simulates accelerator sharing through the
//! scheduler's own autoscaling code (see the `sharing` module);
//! `conduit-bench placement …` times the placement policy at 10,000 runners
//! and 100,000 placements in one process (see the `placement` module).

mod autoscale;
mod baseline;
mod cluster;
mod harness;
mod isolation;
mod loadgen;
mod models;
mod placement;
mod registration;
mod serving;
mod sharing;

use anyhow::{Context, Result, bail};
use conduit_runtime::{
    CallContext, Component, Param, ParamValue, Runtime, RuntimeConfig, SandboxLimits,
};
use conduit_types::Tensor;
use harness::{Budget, Stats, time_async, time_sync, us};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const PAIR: [&str; 2] = [
    "The company Conduit is based in the Bay Area",
    "Conduit's headquarters are situated in Mountain View",
];

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("load") {
        return loadgen::main(std::env::args().skip(2));
    }
    if std::env::args().nth(1).as_deref() == Some("cluster") {
        return cluster::main(std::env::args().skip(2));
    }
    if std::env::args().nth(1).as_deref() == Some("autoscale") {
        return autoscale::main(std::env::args().skip(2));
    }
    if std::env::args().nth(1).as_deref() == Some("baseline") {
        return baseline::main(std::env::args().skip(2));
    }
    if std::env::args().nth(1).as_deref() == Some("sharing") {
        return sharing::main(std::env::args().skip(2));
    }
    if std::env::args().nth(1).as_deref() == Some("placement") {
        return placement::main(std::env::args().skip(2));
    }
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("target/wasm32-wasip2/release");
    let mut quick = false;
    let mut smoke = false;
    let mut overhead_only = false;
    let mut serving_only = false;
    let mut isolation_only = false;
    let mut wasm_only = false;
    let mut baseline_dir: Option<PathBuf> = None;
    let mut overhead_json: Option<PathBuf> = None;
    let mut model = PathBuf::from("testdata/minilm/model.onnx");
    let mut engine = conduit_runtime::EngineConfig::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--components" => {
                dir = args
                    .next()
                    .context("--components needs a directory")?
                    .into()
            }
            "--model" => model = args.next().context("--model needs a file")?.into(),
            "--quick" => quick = true,
            "--smoke" => smoke = true,
            "--overhead-only" => overhead_only = true,
            "--serving-only" => serving_only = true,
            "--isolation-only" => isolation_only = true,
            "--wasm-only" => wasm_only = true,
            "--baseline-components" => {
                baseline_dir = Some(
                    args.next()
                        .context("--baseline-components needs a directory")?
                        .into(),
                )
            }
            "--overhead-json" => {
                overhead_json = Some(args.next().context("--overhead-json needs a file")?.into())
            }
            "--keep-resident" => {
                engine.memory_keep_resident = args
                    .next()
                    .context("--keep-resident needs bytes")?
                    .parse()?
            }
            other => bail!(
                "unknown argument `{other}` (use --components DIR [--model FILE.onnx] [--quick | --smoke] [--overhead-only | --wasm-only | --serving-only | --isolation-only | --overhead-json OUT] [--baseline-components DIR] [--keep-resident BYTES])"
            ),
        }
    }
    let budget = if smoke {
        Budget {
            warmup: Duration::from_millis(5),
            measure: Duration::from_millis(20),
            max_iters: 1_000,
        }
    } else if quick {
        Budget {
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(300),
            max_iters: 20_000,
        }
    } else {
        Budget {
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(2),
            max_iters: 200_000,
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if isolation_only {
        let runtime = Runtime::new(RuntimeConfig {
            engine,
            cache_dir: None,
        })?;
        return rt.block_on(isolation::run(&runtime, &dir, budget.measure));
    }
    if serving_only || overhead_json.is_some() {
        return rt.block_on(serving::run(
            &dir,
            &model,
            budget,
            smoke,
            overhead_json.as_deref(),
        ));
    }
    let only = if overhead_only {
        Only::Overhead
    } else if wasm_only {
        Only::Wasm
    } else {
        Only::All
    };
    rt.block_on(run(dir, baseline_dir, model, budget, engine, only, smoke))
}

struct Bench {
    runtime: Runtime,
    ctx: CallContext,
    fresh: CallContext,
    budget: Budget,
}

impl Bench {
    async fn load(&self, dir: &std::path::Path, name: &str) -> Result<Arc<Component>> {
        let path = dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path)
            .with_context(|| format!("reading {} (run `make components`)", path.display()))?;
        Ok(self.runtime.load(&bytes).await?)
    }

    async fn call(
        &self,
        c: &Arc<Component>,
        inputs: &[(String, Tensor)],
        params: &[Param],
    ) -> Stats {
        self.call_in(&self.ctx, c, inputs, params).await
    }

    async fn call_in(
        &self,
        ctx: &CallContext,
        c: &Arc<Component>,
        inputs: &[(String, Tensor)],
        params: &[Param],
    ) -> Stats {
        time_async(self.budget, || async {
            let out = self
                .runtime
                .process(c, inputs.to_vec(), params, ctx)
                .await
                .expect("component call");
            black_box(out);
        })
        .await
    }
}

fn param(name: &str, value: ParamValue) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

fn row(name: &str, s: Stats) {
    println!(
        "| {name:<52} | {:>10.1} | {:>10.1} | {:>8} |",
        us(s.p50),
        us(s.p90),
        s.n
    );
}

/// How much of the micro-benchmark to run.
#[derive(Clone, Copy, PartialEq)]
enum Only {
    /// Section 1: the component call's fixed cost.
    Overhead,
    /// Sections 1–3: the component runtime against native code.
    Wasm,
    /// Everything.
    All,
}

async fn run(
    dir: PathBuf,
    baseline_dir: Option<PathBuf>,
    model: PathBuf,
    budget: Budget,
    engine: conduit_runtime::EngineConfig,
    only: Only,
    smoke: bool,
) -> Result<()> {
    let bench = Bench {
        runtime: Runtime::new(RuntimeConfig {
            engine,
            cache_dir: None,
        })?,
        ctx: CallContext::new("bench"),
        fresh: CallContext::new("bench").with_limits(SandboxLimits {
            reuse_instances: false,
            ..SandboxLimits::default()
        }),
        budget,
    };
    println!(
        "| operation                                            |   p50 (µs) |   p90 (µs) |    iters |"
    );
    println!(
        "|------------------------------------------------------|-----------:|-----------:|---------:|"
    );

    // 1. Request-path cost of a component on a tiny input.
    let ops = bench.load(&dir, "tensor_ops").await?;
    let tiny = vec![(
        "x".to_string(),
        Tensor::from_f32(vec![4], &[1.0, 2.0, 3.0, 4.0])?,
    )];
    let route = [param("op", ParamValue::String("route".into()))];
    let overhead = bench.call(&ops, &tiny, &route).await;
    let fresh_overhead = bench.call_in(&bench.fresh, &ops, &tiny, &route).await;
    row("component call, tiny tensor, warm instance", overhead);
    row(
        "component call, tiny tensor, fresh instance",
        fresh_overhead,
    );
    if only == Only::Overhead {
        return Ok(());
    }

    // 2. WASM vs native: tokenizer.
    let tok = bench.load(&dir, "bert_tokenizer").await?;
    let pair = vec![(
        "text".to_string(),
        Tensor::from_byte_strings(vec![1, 2], PAIR)?,
    )];
    let len128 = [param("max_length", ParamValue::Int64(128))];
    let tok_pair_wasm = bench.call(&tok, &pair, &len128).await;
    let tok_pair_native = time_sync(budget, || {
        black_box(bert_tokenizer::encode(
            black_box(PAIR[0]),
            Some(black_box(PAIR[1])),
            128,
        ));
    });
    row("tokenizer, 1 pair, WASM (whole call)", tok_pair_wasm);
    row("tokenizer, 1 pair, native", tok_pair_native);
    // The same tokenizer built by another tree (e.g. against conduit:compute
    // 0.1), measured in this run: the boundary's cost, version against version.
    let tok_pair_baseline = match &baseline_dir {
        Some(other) => {
            let old = bench.load(other, "bert_tokenizer").await?;
            let s = bench.call(&old, &pair, &len128).await;
            row(
                &format!("tokenizer, 1 pair, WASM {} build", old.wit_version()),
                s,
            );
            Some((old.wit_version(), s))
        }
        None => None,
    };

    let corpus = batch_texts(32);
    let refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let batch = vec![(
        "text".to_string(),
        Tensor::from_byte_strings(vec![refs.len() as i64], &refs)?,
    )];
    let tok_batch_wasm = bench.call(&tok, &batch, &len128).await;
    let tok_batch_native = time_sync(budget, || {
        black_box(bert_tokenizer::encode_batch(black_box(&refs), None, 128));
    });
    row("tokenizer, 32 texts, WASM (whole call)", tok_batch_wasm);
    row("tokenizer, 32 texts, native", tok_batch_native);

    // 2b. WASM vs native: softmax + top-k over [32, 1000] logits.
    let topk = bench.load(&dir, "softmax_topk").await?;
    let logits: Vec<f32> = (0..32 * 1000)
        .map(|i| ((i * 7919) % 1000) as f32 / 97.0 - 5.0)
        .collect();
    let lt = vec![(
        "logits".to_string(),
        Tensor::from_f32(vec![32, 1000], &logits)?,
    )];
    let k5 = [param("k", ParamValue::Int64(5))];
    let topk_wasm = bench.call(&topk, &lt, &k5).await;
    let topk_native = time_sync(budget, || {
        black_box(softmax_topk::softmax_topk(black_box(&logits), 1000, 5));
    });
    row("softmax+top5, [32,1000], WASM (whole call)", topk_wasm);
    row("softmax+top5, [32,1000], native", topk_native);

    // 2c. Compute alone: the same ops looped N times inside one call.
    let op_loop = bench.load(&dir, "op_loop").await?;
    const N: i64 = 20;
    let looped = |op: &str, iters: i64| {
        [
            param("op", ParamValue::String(op.into())),
            param("iters", ParamValue::Int64(iters)),
        ]
    };
    let per_op = |once: Stats, many: Stats| Stats {
        p50: many.p50.saturating_sub(once.p50) / N as u32,
        p90: many.p90.saturating_sub(once.p90) / N as u32,
        n: many.n,
    };
    let tok_once = bench.call(&op_loop, &batch, &looped("tokenize", 1)).await;
    let tok_many = bench
        .call(&op_loop, &batch, &looped("tokenize", N + 1))
        .await;
    let tok_compute = per_op(tok_once, tok_many);
    row("tokenizer, 32 texts, WASM compute only", tok_compute);
    let sm_once = bench.call(&op_loop, &lt, &looped("softmax-topk", 1)).await;
    let sm_many = bench
        .call(&op_loop, &lt, &looped("softmax-topk", N + 1))
        .await;
    let sm_compute = per_op(sm_once, sm_many);
    row("softmax+top5, [32,1000], WASM compute only", sm_compute);

    // 3. Large tensors: routed handle vs copied through the guest.
    let mut transfer = Vec::new();
    for mib in [1usize, 16] {
        let n = (mib << 20) / 4;
        let big = vec![(
            "x".to_string(),
            Tensor::from_f32(vec![n as i64], &vec![0.25; n])?,
        )];
        let routed = bench.call(&ops, &big, &route).await;
        let copy = [param("op", ParamValue::String("copy".into()))];
        let copied = bench.call(&ops, &big, &copy).await;
        let copied_fresh = bench.call_in(&bench.fresh, &ops, &big, &copy).await;
        row(&format!("{mib} MiB FP32 tensor, routed (handle)"), routed);
        row(
            &format!("{mib} MiB FP32 tensor, copied in and out, warm"),
            copied,
        );
        row(
            &format!("{mib} MiB FP32 tensor, copied in and out, fresh"),
            copied_fresh,
        );
        transfer.push((mib, routed, copied));
    }

    let ratio = |a: Stats, b: Stats| us(a.p50) / us(b.p50);
    let net = |wasm: Stats| (us(wasm.p50) - us(overhead.p50)).max(0.0);
    println!();
    println!("| ratio (p50)                                          |   value |");
    println!("|------------------------------------------------------|--------:|");
    println!(
        "| component overhead, tiny input, warm instance (µs)   | {:>7.1} |",
        us(overhead.p50)
    );
    println!(
        "| component overhead, tiny input, fresh instance (µs)  | {:>7.1} |",
        us(fresh_overhead.p50)
    );
    println!(
        "| tokenizer 1 pair: WASM call / native                 | {:>7.2} |",
        ratio(tok_pair_wasm, tok_pair_native)
    );
    println!(
        "| tokenizer 1 pair: (WASM call - overhead) / native    | {:>7.2} |",
        net(tok_pair_wasm) / us(tok_pair_native.p50)
    );
    println!(
        "| tokenizer 32 texts: WASM call / native               | {:>7.2} |",
        ratio(tok_batch_wasm, tok_batch_native)
    );
    println!(
        "| tokenizer 32 texts: (WASM call - overhead) / native  | {:>7.2} |",
        net(tok_batch_wasm) / us(tok_batch_native.p50)
    );
    println!(
        "| tokenizer 32 texts: WASM compute only / native       | {:>7.2} |",
        ratio(tok_compute, tok_batch_native)
    );
    println!(
        "| softmax+top5: WASM call / native                     | {:>7.2} |",
        ratio(topk_wasm, topk_native)
    );
    println!(
        "| softmax+top5: WASM compute only / native             | {:>7.2} |",
        ratio(sm_compute, topk_native)
    );
    println!(
        "| softmax+top5: (WASM call - overhead) / native        | {:>7.2} |",
        net(topk_wasm) / us(topk_native.p50)
    );
    for (mib, routed, copied) in transfer {
        println!(
            "| {mib:>2} MiB: copied / routed                              | {:>7.1} |",
            ratio(copied, routed)
        );
    }
    println!(
        "| tokenizer 1 pair: WASM call - native (µs)            | {:>7.1} |",
        us(tok_pair_wasm.p50) - us(tok_pair_native.p50)
    );
    if let Some((version, old)) = tok_pair_baseline {
        println!(
            "| tokenizer 1 pair: WASM {version} build - native (µs)      | {:>7.1} |",
            us(old.p50) - us(tok_pair_native.p50)
        );
    }
    if only == Only::Wasm {
        return Ok(());
    }
    isolation::run(&bench.runtime, &dir, budget.measure).await?;
    registration_table(&dir, budget).await?;
    models::run(&model, budget, smoke).await?;
    serving::run(&dir, &model, budget, smoke, None).await
}

/// 4. Registration, measured `n` times on fresh data directories.
async fn registration_table(dir: &std::path::Path, budget: Budget) -> Result<()> {
    let path = dir.join("bert_tokenizer.wasm");
    let tokenizer = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let scratch = std::env::temp_dir().join(format!("conduit-bench-{}", std::process::id()));
    let n = if budget.measure < Duration::from_millis(100) {
        1
    } else {
        5
    };
    let mut samples = Vec::new();
    for _ in 0..n {
        samples.push(registration::measure(&tokenizer, &scratch).await?);
    }
    let stat = |f: fn(&registration::Sample) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(f).collect();
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    println!();
    println!(
        "| registration, tokenizer ({} KiB), {n} runs     | median (ms) | max (ms) | goal |",
        tokenizer.len() / 1024
    );
    println!(
        "|------------------------------------------------|------------:|---------:|-------:|"
    );
    type Row = (
        &'static str,
        fn(&registration::Sample) -> Duration,
        &'static str,
    );
    let rows: [Row; 3] = [
        (
            "push (upload + compile + describe + register)",
            |s| s.push,
            "",
        ),
        (
            "push → first response by reference",
            |s| s.push_to_first_response,
            "≤ 1000",
        ),
        (
            "second runner: load from the compiled cache",
            |s| s.cached_load,
            "≤ 20",
        ),
    ];
    for (name, f, goal) in rows {
        let (median, max) = stat(f);
        println!(
            "| {name:<46} | {:>11.1} | {:>8.1} | {goal:>6} |",
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// `n` varied sentences of ordinary length.
fn batch_texts(n: usize) -> Vec<String> {
    let subjects = [
        "The company",
        "Our team",
        "A researcher",
        "The new model",
        "Each runner",
    ];
    let verbs = ["serves", "tokenizes", "embeds", "schedules", "replays"];
    let objects = [
        "pipelines beside the accelerator",
        "sentences about Mountain View and the Bay Area",
        "requests from many tenants, café-style",
        "WebAssembly components in microseconds",
        "tensors without copying them",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} (#{i}).",
                subjects[i % 5],
                verbs[(i / 5) % 5],
                objects[(i * 3) % 5]
            )
        })
        .collect()
}
