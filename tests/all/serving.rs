//! The data plane end to end, in process: a real registry and runner behind
//! real tonic gRPC on loopback (registry + KServe v2 on one port), real
//! components built from source, the real MiniLM model.

use crate::common::*;
use bytes::Bytes;
use conduit_executor::{BackendKind, Backends, Executor};
use conduit_proto::inference::{
    self as pb, grpc_inference_service_client::GrpcInferenceServiceClient,
    infer_parameter::ParameterChoice, model_infer_request::InferInputTensor,
};
use conduit_registry::{ExecutorHints, Kind, PushProgress, Registry, RegistryClient};
use conduit_runner::{Node, NodeConfig, Serving, ServingConfig, ServingLimits};
use conduit_runtime::{CallContext, EngineConfig, Runtime};
use conduit_types::Tensor;
use std::collections::HashMap;
use tonic::Code;
use tonic::transport::Channel;

const PAIR: [&str; 2] = [
    "The company Conduit is based in the Bay Area",
    "Conduit's headquarters are situated in Mountain View",
];
const UNRELATED: [&str; 2] = [
    "The company Conduit is based in the Bay Area",
    "Grandmother's apple pie needs more cinnamon",
];

/// Registry + runner served on `127.0.0.1:0`: gRPC (registry and KServe
/// v2 on one port) and HTTP, as `conduit dev` serves them.
pub(crate) struct Plane {
    pub url: String,
    pub http: std::net::SocketAddr,
    pub key: String,
    pub registry: Registry,
    pub runtime: Runtime,
    pub serving: Serving,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    _dir: TempDir,
}

impl Plane {
    pub async fn start(limits: &str) -> Self {
        let config = ServingConfig {
            limits: ServingLimits::from_toml(limits).unwrap(),
            ..ServingConfig::default()
        };
        Self::start_with(
            config,
            EngineConfig {
                max_instances: 64,
                ..EngineConfig::default()
            },
        )
        .await
    }

    pub async fn start_with(config: ServingConfig, engine: EngineConfig) -> Self {
        let dir = TempDir::new("conduit-serving");
        let node = Node::local(
            NodeConfig {
                engine,
                serving: config,
                ..NodeConfig::new(dir.path())
            },
            Default::default(),
        )
        .unwrap();
        let (registry, runtime, serving) = (
            node.registry.clone().unwrap(),
            node.runtime.clone(),
            node.serving.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let bootstrap = node.bootstrap.clone();
        tokio::spawn(async move {
            node.serve(listener, Some(http_listener), async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
        Self {
            url,
            http,
            key: bootstrap.unwrap().api_key,
            registry,
            runtime,
            serving,
            stop: Some(tx),
            _dir: dir,
        }
    }

    pub async fn registry_client(&self, key: &str) -> RegistryClient {
        RegistryClient::connect(&self.url, key).await.unwrap()
    }

    pub async fn infer_client(&self) -> GrpcInferenceServiceClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        GrpcInferenceServiceClient::new(channel)
    }

    /// Pushes tokenizer, embedding-post and minilm as the paraphrase pipeline uses them.
    async fn push_paraphrase_parts(&self, c: &RegistryClient) {
        push(
            c,
            Kind::Component,
            "tokenizer",
            "1.0.0",
            &component_bytes("bert-tokenizer"),
        )
        .await;
        push(
            c,
            Kind::Component,
            "embedding-post",
            "1.0.0",
            &component_bytes("embedding-post"),
        )
        .await;
        let model = std::fs::read(workspace_root().join("testdata/minilm/model.onnx")).unwrap();
        let hints = ExecutorHints {
            format: "onnx".into(),
            max_batch_size: 8,
            ..ExecutorHints::default()
        };
        let (digest, _) = c.upload(&model, &PushProgress::default()).await.unwrap();
        c.put_manifest(Kind::Model, "minilm", "1.0.0", &digest, &hints, &[], &[])
            .await
            .unwrap();
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }
}

pub(crate) async fn push(
    c: &RegistryClient,
    kind: Kind,
    name: &str,
    version: &str,
    bytes: &[u8],
) -> conduit_registry::Manifest {
    c.push(kind, name, version, bytes, &[], &PushProgress::default())
        .await
        .unwrap_or_else(|e| panic!("pushing {name}@{version}: {e}"))
        .0
}

fn paraphrase_toml() -> String {
    std::fs::read_to_string(workspace_root().join("examples/pipelines/paraphrase.toml")).unwrap()
}

pub(crate) fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

fn text_request(model: &str, version: &str, texts: &[&str]) -> pb::ModelInferRequest {
    let t = Tensor::from_byte_strings(vec![texts.len() as i64, 1], texts).unwrap();
    pb::ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        inputs: vec![InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: t.shape().to_vec(),
            ..Default::default()
        }],
        raw_input_contents: vec![t.data().clone()],
        ..Default::default()
    }
}

pub(crate) fn raw_request(model: &str, inputs: &[(String, Tensor)]) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: inputs
            .iter()
            .map(|(name, t)| InferInputTensor {
                name: name.clone(),
                datatype: t.dtype().as_str().into(),
                shape: t.shape().to_vec(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|(_, t)| t.data().clone()).collect(),
        ..Default::default()
    }
}

pub(crate) fn outputs(r: &pb::ModelInferResponse) -> HashMap<String, Tensor> {
    r.outputs
        .iter()
        .zip(&r.raw_output_contents)
        .map(|(o, raw)| {
            let t = Tensor::new(o.datatype.parse().unwrap(), o.shape.clone(), raw.clone()).unwrap();
            (o.name.clone(), t)
        })
        .collect()
}

fn param(r: &pb::ModelInferResponse, key: &str) -> String {
    match r
        .parameters
        .get(key)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(ParameterChoice::StringParam(s)) => s,
        other => panic!("parameter {key}: {other:?} in {:?}", r.parameters),
    }
}

pub(crate) async fn infer(
    client: &mut GrpcInferenceServiceClient<Channel>,
    key: &str,
    request: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, tonic::Status> {
    client
        .model_infer(authed(key, request))
        .await
        .map(|r| r.into_inner())
}

pub(crate) fn expect_code(
    result: Result<pb::ModelInferResponse, tonic::Status>,
    code: Code,
    fragment: &str,
) {
    match result {
        Ok(_) => panic!("expected {code:?} ({fragment}), got a response"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(fragment),
                "{:?} lacks {fragment:?}",
                s.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_type_checked_pinned_and_protected() {
    let plane = Plane::start("").await;
    let c = plane.registry_client(&plane.key).await;
    plane.push_paraphrase_parts(&c).await;
    let good = paraphrase_toml();
    let refused = |text: String, code: Code, fragments: &'static [&'static str]| {
        let c = &c;
        async move {
            let err = c
                .push(
                    Kind::Pipeline,
                    "bad",
                    "1.0.0",
                    text.as_bytes(),
                    &[],
                    &PushProgress::default(),
                )
                .await
                .expect_err("must be refused");
            assert_eq!(err.code(), Some(code), "{err}");
            for f in fragments {
                assert!(err.to_string().contains(f), "{err} lacks {f:?}");
            }
        }
    };
    refused(
        good.replace(
            "last_hidden_state = \"encode.last_hidden_state\"",
            "last_hidden_state = \"tokenize.input_ids\"",
        ),
        Code::InvalidArgument,
        &[
            "step `post` input `last_hidden_state`",
            "datatype mismatch",
            "INT64",
            "FP32",
        ],
    )
    .await;
    refused(
        good.replace(", token_type_ids = \"tokenize.token_type_ids\"", ""),
        Code::InvalidArgument,
        &["step `encode` input `token_type_ids` is not wired"],
    )
    .await;
    refused(
        good.replace("shape = [-1, 1]", "shape = [-1]"),
        Code::InvalidArgument,
        &["step `tokenize` input `text`", "rank mismatch"],
    )
    .await;
    refused(
        good.replace("uses = \"minilm@1.0.0\"", "uses = \"minilm@2.0.0\""),
        Code::NotFound,
        &["pipeline step `encode` uses `minilm@2.0.0`"],
    )
    .await;
    refused(
        "[[steps]\n".into(),
        Code::InvalidArgument,
        &["TOML, line 1"],
    )
    .await;
    assert!(
        plane
            .registry
            .resolve(&plane.registry.authenticate(&plane.key).unwrap(), "bad")
            .is_err()
    );

    let (m, created) = c
        .push(
            Kind::Pipeline,
            "paraphrase",
            "1.0.0",
            good.as_bytes(),
            &[],
            &PushProgress::default(),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        m.references,
        ["embedding-post@1.0.0", "minilm@1.0.0", "tokenizer@1.0.0"]
    );
    assert_eq!(m.signature.inputs[0].name, "text");
    // The stored form is resolved: every step carries its digest.
    let stored = c.download(&m.digest).await.unwrap();
    let def = conduit_registry::PipelineDef::from_bytes(&stored).unwrap();
    let tok = c.resolve("tokenizer@1.0.0").await.unwrap();
    assert_eq!(def.steps[0].digest, tok.digest);
    // Pushing the same manifest again is a no-op.
    let (again, created) = c
        .push(
            Kind::Pipeline,
            "paraphrase",
            "1.0.0",
            good.as_bytes(),
            &[],
            &PushProgress::default(),
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.digest, m.digest);
    // A step version the pipeline runs cannot be deleted.
    let err = c.delete("tokenizer@1.0.0").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FailedPrecondition), "{err}");
    assert!(err.to_string().contains("paraphrase@1.0.0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_serves_what_its_steps_compute() {
    let plane = Plane::start("").await;
    let c = plane.registry_client(&plane.key).await;
    plane.push_paraphrase_parts(&c).await;
    let pipeline = push(
        &c,
        Kind::Pipeline,
        "paraphrase",
        "1.0.0",
        paraphrase_toml().as_bytes(),
    )
    .await;
    let mut client = plane.infer_client().await;

    let answer = infer(
        &mut client,
        &plane.key,
        text_request("paraphrase", "", &PAIR),
    )
    .await
    .unwrap();
    assert_eq!(
        (answer.model_name.as_str(), answer.model_version.as_str()),
        ("paraphrase", "1.0.0")
    );
    assert_eq!(
        param(&answer, "conduit.digest"),
        pipeline.digest.to_string()
    );
    let tok = c.resolve("tokenizer@1.0.0").await.unwrap();
    assert_eq!(
        param(&answer, "conduit.step.tokenize"),
        tok.digest.to_string()
    );
    for step in ["encode", "post"] {
        assert!(param(&answer, &format!("conduit.step.{step}")).starts_with("blake3:"));
    }
    let got = outputs(&answer);
    let similar = got["similarity"].to_f32().unwrap()[0];

    // Warm and pinned, the pipeline reads nothing from the registry: the
    // key, the name and every step resolve from the runner's caches.
    let reads = plane.serving.source_reads();
    for _ in 0..3 {
        infer(
            &mut client,
            &plane.key,
            text_request("paraphrase", "", &PAIR),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        plane.serving.source_reads() - reads,
        0,
        "registry reads by three warm requests"
    );

    // The same computation, step by step, outside the data plane.
    let tenant = CallContext::new("check");
    let tokenizer = plane
        .runtime
        .load(&component_bytes("bert-tokenizer"))
        .await
        .unwrap();
    let text = Tensor::from_byte_strings(vec![2, 1], PAIR).unwrap();
    let tokens = plane
        .runtime
        .process(
            &tokenizer,
            vec![("text".into(), text)],
            &[
                int_param("max_length", 256),
                str_param("padding", "longest"),
            ],
            &tenant,
        )
        .await
        .unwrap();
    assert_eq!(got["truncated_tokens"].to_i64().unwrap(), [0, 0]);
    assert_eq!(output(&tokens, "truncated").to_i64().unwrap(), [0, 0]);
    // The encoder takes the tokenizer's outputs but `truncated`.
    let tokens: Vec<(String, Tensor)> = tokens
        .into_iter()
        .filter(|(name, _)| name != "truncated")
        .collect();
    let model = std::fs::read(workspace_root().join("testdata/minilm/model.onnx")).unwrap();
    let backends = Backends::detect(None);
    let signature = conduit_executor::onnx_signature(&model).unwrap();
    let config = backends
        .config("minilm", &ExecutorHints::default())
        .unwrap();
    let executor = Executor::start(
        backends.get(BackendKind::Ort).unwrap(),
        &model,
        signature,
        config,
    )
    .unwrap();
    let hidden = executor.infer(tokens.clone()).await.unwrap();
    let post = plane
        .runtime
        .load(&component_bytes("embedding-post"))
        .await
        .unwrap();
    let mask = output(&tokens, "attention_mask").clone();
    let pooled = plane
        .runtime
        .process(
            &post,
            vec![
                (
                    "last_hidden_state".into(),
                    output(&hidden, "last_hidden_state").clone(),
                ),
                ("attention_mask".into(), mask),
            ],
            &[],
            &tenant,
        )
        .await
        .unwrap();
    assert_eq!(
        got["embeddings"].to_f32().unwrap(),
        output(&pooled, "embeddings").to_f32().unwrap()
    );
    assert_eq!(similar, output(&pooled, "similarity").to_f32().unwrap()[0]);

    let unrelated = infer(
        &mut client,
        &plane.key,
        text_request("paraphrase", "latest", &UNRELATED),
    )
    .await
    .unwrap();
    let other = outputs(&unrelated)["similarity"].to_f32().unwrap()[0];
    assert!(
        similar > 0.5 && other < 0.3 && similar - other > 0.3,
        "{similar} vs {other}"
    );

    // A row count the pipeline cannot pair is refused, never answered with an
    // empty or partial similarity.
    for texts in [&PAIR[..1], &[PAIR[0], PAIR[1], UNRELATED[1]][..]] {
        expect_code(
            infer(
                &mut client,
                &plane.key,
                text_request("paraphrase", "", texts),
            )
            .await,
            Code::InvalidArgument,
            "even number of sentences",
        );
    }
    // Truncation is visible: two long texts that differ only after 256
    // tokens say how much each lost (and so why they score alike).
    let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
    let (a, b) = (format!("{long} cats"), format!("{long} rockets"));
    let cut = infer(
        &mut client,
        &plane.key,
        text_request("paraphrase", "", &[&a, &b]),
    )
    .await
    .unwrap();
    let truncated = outputs(&cut)["truncated_tokens"].to_i64().unwrap();
    // 361 word pieces plus [CLS] and [SEP], 256 kept: 107 cut from each.
    assert_eq!(truncated, [107, 107]);

    // Version, tag and digest all name the same pipeline; only requested outputs come back.
    for version in ["1.0.0", "latest", &pipeline.digest.to_string()] {
        let mut r = text_request("paraphrase", version, &PAIR);
        r.outputs = vec![pb::model_infer_request::InferRequestedOutputTensor {
            name: "similarity".into(),
            ..Default::default()
        }];
        let a = infer(&mut client, &plane.key, r).await.unwrap();
        assert_eq!(a.outputs.len(), 1);
        assert_eq!(outputs(&a)["similarity"].to_f32().unwrap()[0], similar);
    }
    // Typed contents equal raw contents.
    let mut typed = text_request("paraphrase", "", &PAIR);
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(pb::InferTensorContents {
        bytes_contents: PAIR.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    });
    let a = infer(&mut client, &plane.key, typed).await.unwrap();
    assert_eq!(outputs(&a)["similarity"].to_f32().unwrap()[0], similar);

    // The bare model, and the programmable form: a `pipeline`-world
    // component calling the model twice through `model.infer`.
    let a = infer(&mut client, &plane.key, raw_request("minilm", &tokens))
        .await
        .unwrap();
    assert_eq!(
        outputs(&a)["last_hidden_state"].to_f32().unwrap(),
        output(&hidden, "last_hidden_state").to_f32().unwrap()
    );
    push(
        &c,
        Kind::Component,
        "embed",
        "1.0.0",
        &component_bytes("embed-pipeline"),
    )
    .await;
    let mut r = raw_request("embed", &tokens);
    r.parameters.insert(
        "repeat".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(2)),
        },
    );
    let a = infer(&mut client, &plane.key, r).await.unwrap();
    assert_eq!(
        outputs(&a)["embeddings"].to_f32().unwrap(),
        got["embeddings"].to_f32().unwrap()
    );

    // A DAG with an independent branch: both run, both outputs come back.
    push(
        &c,
        Kind::Component,
        "ops",
        "1.0.0",
        &component_bytes("tensor-ops"),
    )
    .await;
    let branchy = paraphrase_toml()
        + "\n[[inputs]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [-1]\n\n[[outputs]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [-1]\nfrom = \"side.x\"\n\n[[steps]]\nname = \"side\"\nuses = \"ops@1.0.0\"\ninputs = { x = \"x\" }\n";
    push(&c, Kind::Pipeline, "branchy", "1.0.0", branchy.as_bytes()).await;
    let mut r = text_request("branchy", "", &PAIR);
    let x = Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0]).unwrap();
    r.inputs.push(InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![3],
        ..Default::default()
    });
    r.raw_input_contents.push(x.data().clone());
    let a = infer(&mut client, &plane.key, r).await.unwrap();
    let o = outputs(&a);
    assert_eq!(o["x"].to_f32().unwrap(), [1.0, 2.0, 3.0]);
    assert_eq!(o["similarity"].to_f32().unwrap()[0], similar);
    assert!(param(&a, "conduit.step.side").starts_with("blake3:"));

    // Statistics, config and metrics see it all.
    let stats = client
        .model_statistics(authed(
            &plane.key,
            pb::ModelStatisticsRequest {
                name: "paraphrase".into(),
                version: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let s = &stats.model_stats[0];
    assert_eq!(
        (s.name.as_str(), s.version.as_str()),
        ("paraphrase", "1.0.0")
    );
    let inference = s.inference_stats.as_ref().unwrap();
    // 4 requests above, 3 warm ones counting registry reads.
    assert_eq!(inference.success.as_ref().unwrap().count, 10);
    assert!(inference.compute_infer.as_ref().unwrap().ns > 0);
    let config = client
        .model_config(authed(
            &plane.key,
            pb::ModelConfigRequest {
                name: "minilm".into(),
                version: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 8);
    assert_eq!(config.input[0].dims, [-1]);
    let metrics = plane.serving.render_metrics();
    assert!(
        metrics.contains("conduit_inference_request_success_total{tenant=\"default\",model=\"paraphrase\",version=\"1.0.0\"} 10"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_limits_and_bad_requests() {
    let limits = "[tenants.tight]\nmax_concurrent_requests = 1\nsandbox_deadline_ms = 2000\n";
    let plane = Plane::start(limits).await;
    let admin = plane.registry_client(&plane.key).await;
    let tight_key = admin
        .create_tenant("tight", 1 << 30, 1 << 32)
        .await
        .unwrap();
    let tight = plane.registry_client(&tight_key).await;
    push(
        &tight,
        Kind::Component,
        "adversary",
        "1.0.0",
        &component_bytes("adversary"),
    )
    .await;
    let mut client = plane.infer_client().await;
    let x = Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap();
    let call = |attack: &str| {
        let mut r = raw_request("adversary", &[("x".to_string(), x.clone())]);
        r.parameters.insert(
            "attack".into(),
            pb::InferParameter {
                parameter_choice: Some(ParameterChoice::StringParam(attack.into())),
            },
        );
        r
    };
    // A runaway call hits the tenant's sandbox deadline; while it runs, the
    // tenant's one concurrent slot is taken.
    let (mut c1, key1) = (client.clone(), tight_key.clone());
    let looping = tokio::spawn({
        let r = call("loop");
        async move { infer(&mut c1, &key1, r).await }
    });
    // Wait until it is in flight (not a fixed sleep: CI machines are slow).
    let started = std::time::Instant::now();
    while plane
        .serving
        .metrics()
        .models("tight", "adversary")
        .first()
        .is_none_or(|(_, c)| c.pending == 0)
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the looping call never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    expect_code(
        infer(&mut client, &tight_key, call("none")).await,
        Code::ResourceExhausted,
        "tenant `tight` has 1 requests in flight",
    );
    expect_code(looping.await.unwrap(), Code::DeadlineExceeded, "deadline");
    let ok = infer(&mut client, &tight_key, call("none")).await.unwrap();
    assert_eq!(outputs(&ok)["y"].to_f32().unwrap(), [1.0, 2.0]);
    expect_code(
        infer(&mut client, &tight_key, call("guest-error")).await,
        Code::InvalidArgument,
        "the adversary rejects this input",
    );
    expect_code(
        infer(&mut client, &tight_key, call("unreachable")).await,
        Code::Internal,
        "trapped",
    );

    // Isolation and authentication.
    expect_code(
        infer(&mut client, &plane.key, call("none")).await,
        Code::NotFound,
        "model `adversary` not found",
    );
    expect_code(
        infer(&mut client, "cdk_nope", call("none")).await,
        Code::Unauthenticated,
        "invalid API key",
    );
    expect_code(
        client
            .model_infer(call("none"))
            .await
            .map(|r| r.into_inner()),
        Code::Unauthenticated,
        "missing API key",
    );
    // Bad tensors.
    let mut wrong_type = call("none");
    wrong_type.inputs[0].datatype = "INT32".into();
    expect_code(
        infer(&mut client, &tight_key, wrong_type).await,
        Code::InvalidArgument,
        "must be FP32, got INT32",
    );
    let mut short = call("none");
    short.raw_input_contents[0] = Bytes::from_static(&[0, 0, 0]);
    expect_code(
        infer(&mut client, &tight_key, short).await,
        Code::InvalidArgument,
        "input `x`",
    );
    let mut missing = call("none");
    missing.inputs.clear();
    missing.raw_input_contents.clear();
    expect_code(
        infer(&mut client, &tight_key, missing).await,
        Code::InvalidArgument,
        "needs input `x`",
    );
    let mut unknown = call("none");
    unknown.model_version = "9.9.9".into();
    expect_code(
        infer(&mut client, &tight_key, unknown).await,
        Code::NotFound,
        "version `9.9.9` not found",
    );
    // Still serving.
    infer(&mut client, &tight_key, call("none")).await.unwrap();
    let metrics = plane.serving.render_metrics();
    for line in [
        "conduit_component_traps_total{tenant=\"tight\",kind=\"timeout\"} 1",
        "conduit_component_traps_total{tenant=\"tight\",kind=\"trap\"} 1",
        "conduit_inference_request_failure_total{tenant=\"tight\",model=\"adversary\",version=\"1.0.0\",reason=\"overloaded\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_tags_and_unload() {
    let plane = Plane::start("").await;
    let c = plane.registry_client(&plane.key).await;
    let tok = push(
        &c,
        Kind::Component,
        "tok",
        "1.0.0",
        &component_bytes("bert-tokenizer"),
    )
    .await;
    push(
        &c,
        Kind::Component,
        "tok",
        "2.0.0",
        &component_bytes("softmax-topk"),
    )
    .await;
    c.tag("tok@1.0.0", "prod").await.unwrap();
    let toml = "[[inputs]]\nname = \"text\"\ndatatype = \"BYTES\"\nshape = [-1, 1]\n\n[[outputs]]\nname = \"input_ids\"\ndatatype = \"INT64\"\nshape = [-1, -1]\n\n[[steps]]\nname = \"t\"\nuses = \"tok:prod\"\nfollow = true\ninputs = { text = \"text\" }\n";
    push(&c, Kind::Pipeline, "ids", "1.0.0", toml.as_bytes()).await;
    let mut client = plane.infer_client().await;
    let a = infer(&mut client, &plane.key, text_request("ids", "", &PAIR))
        .await
        .unwrap();
    assert_eq!(param(&a, "conduit.step.t"), tok.digest.to_string());
    // The tag moves to a version with another signature: refused, clearly.
    c.tag("tok@2.0.0", "prod").await.unwrap();
    expect_code(
        infer(&mut client, &plane.key, text_request("ids", "", &PAIR)).await,
        Code::FailedPrecondition,
        "follows `tok:prod`, now tok@2.0.0 whose signature differs",
    );
    c.tag("tok@1.0.0", "prod").await.unwrap();
    infer(&mut client, &plane.key, text_request("ids", "", &PAIR))
        .await
        .unwrap();

    // Unload: not ready, UNAVAILABLE; load: serving again.
    let ready = |client: &mut GrpcInferenceServiceClient<Channel>| {
        let mut client = client.clone();
        let key = plane.key.clone();
        async move {
            client
                .model_ready(authed(
                    &key,
                    pb::ModelReadyRequest {
                        name: "ids".into(),
                        version: String::new(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .ready
        }
    };
    assert!(ready(&mut client).await);
    client
        .repository_model_unload(authed(
            &plane.key,
            pb::RepositoryModelUnloadRequest {
                model_name: "ids".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(!ready(&mut client).await);
    expect_code(
        infer(&mut client, &plane.key, text_request("ids", "", &PAIR)).await,
        Code::Unavailable,
        "unloaded",
    );
    let index = client
        .repository_index(authed(&plane.key, pb::RepositoryIndexRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        index
            .models
            .iter()
            .any(|m| m.name == "ids" && m.state == "UNAVAILABLE")
    );
    client
        .repository_model_load(authed(
            &plane.key,
            pb::RepositoryModelLoadRequest {
                model_name: "ids".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(ready(&mut client).await);
    infer(&mut client, &plane.key, text_request("ids", "", &PAIR))
        .await
        .unwrap();
    let _ = &plane.runtime;
}

/// What a cluster runner reports and releases: a served pipeline counts as
/// loaded with its use (requests, busy time); released, its definition and
/// its step model's executors are freed (the report's memory drops to 0),
/// and the next request loads it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_pipeline_frees_its_models_and_loads_again() {
    let plane = Plane::start("").await;
    let c = plane.registry_client(&plane.key).await;
    plane.push_paraphrase_parts(&c).await;
    let pipeline = push(
        &c,
        Kind::Pipeline,
        "paraphrase",
        "1.0.0",
        paraphrase_toml().as_bytes(),
    )
    .await;
    let mut client = plane.infer_client().await;
    for _ in 0..3 {
        infer(
            &mut client,
            &plane.key,
            text_request("paraphrase", "", &PAIR),
        )
        .await
        .unwrap();
    }
    let report = plane.serving.load_report();
    assert!(report.loaded.contains(&pipeline.digest), "{report:?}");
    assert!(report.memory_used > 0, "minilm's executor is loaded");
    let used = report
        .modules
        .iter()
        .find(|m| m.digest == pipeline.digest)
        .expect("its use is reported");
    assert_eq!((used.requests, used.in_flight), (3, 0));
    assert!(!used.busy.is_zero());

    assert!(plane.serving.release(&pipeline.digest));
    let report = plane.serving.load_report();
    assert!(!report.loaded.contains(&pipeline.digest), "{report:?}");
    assert_eq!(report.memory_used, 0, "the step model's executor is freed");
    assert!(!plane.serving.release(&pipeline.digest), "released already");

    infer(
        &mut client,
        &plane.key,
        text_request("paraphrase", "", &PAIR),
    )
    .await
    .unwrap();
    let report = plane.serving.load_report();
    assert!(report.loaded.contains(&pipeline.digest));
    assert!(report.memory_used > 0, "loaded again");
}
