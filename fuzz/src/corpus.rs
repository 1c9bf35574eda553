//! The seed corpus: real requests and files, as the repository's tests,
//! examples and clients send them, written to `fuzz/corpus/<target>/seed-*`
//! by the `corpus_seeds_are_current` test (`CONDUIT_FUZZ_BLESS=1` rewrites
//! them). Other files in those folders (inputs a run found interesting,
//! fixed crashes) are kept as they are.

use crate::{http_encoding, kserve_json, onnx_signature as onnx};
use conduit_proto::inference::{
    InferParameter, InferTensorContents, ModelInferRequest,
    infer_parameter::ParameterChoice,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
};
use conduit_proto::registry::v1 as registry_pb;
use conduit_proto::session::v1 as session_pb;
use conduit_registry::{Digest, ExecutorHints, Kind, Manifest, Signature, TensorSpec};
use conduit_runner::encoding::{Coding, compress};
use conduit_types::Tensor;
use prost::Message;

/// One seed file.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target.
    pub target: &'static str,
    /// The file name (`seed-<name>`).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &str, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        target,
        name: format!("seed-{name}"),
        bytes: bytes.into(),
    }
}

/// The paraphrase pair of `tests/all/serving.rs`.
pub const PAIR: [&str; 2] = [
    "The company Conduit is based in the Bay Area",
    "Conduit's headquarters are situated in Mountain View",
];

/// `examples/pipelines/paraphrase.toml`.
pub const PARAPHRASE_TOML: &str = include_str!("../../examples/pipelines/paraphrase.toml");
/// `examples/limits.toml`.
pub const LIMITS_TOML: &str = include_str!("../../examples/limits.toml");

/// Every seed.
pub fn seeds() -> Vec<Seed> {
    let mut all = Vec::new();
    all.extend(json_seeds());
    all.extend(proto_seeds());
    all.extend(session_seeds());
    all.extend(pipeline_seeds());
    all.extend(reference_seeds());
    all.extend(manifest_seeds());
    all.extend(limits_seeds());
    all.extend(timeout_seeds());
    all.extend(onnx_seeds());
    all.extend(encoding_seeds());
    all
}

/// Bodies of `tests/all/isolation.rs`, the runner's HTTP and JSON tests,
/// and `conduit infer`.
fn json_seeds() -> Vec<Seed> {
    let t = "kserve_json";
    let plain =
        |name: &str, body: &str| seed(t, name, kserve_json::input(None, body.as_bytes(), &[]));
    let mut binary = Vec::new();
    binary.extend_from_slice(&1.5f32.to_le_bytes());
    binary.extend_from_slice(&(-2f32).to_le_bytes());
    binary.extend_from_slice(&[3, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 0]);
    binary.extend_from_slice(&0x3c00u16.to_le_bytes());
    let in_order = r#"{"id":"r1","inputs":[
            {"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}},
            {"name":"b","datatype":"INT32","shape":[1],"data":[9]},
            {"name":"c","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":11}},
            {"name":"d","datatype":"FP16","shape":[1],"parameters":{"binary_data_size":2}}
        ]}"#;
    let text = Tensor::from_byte_strings(vec![2, 1], PAIR).expect("a BYTES tensor");
    let text_json = r#"{"inputs":[{"name":"text","datatype":"BYTES","shape":[2,1],"parameters":{"binary_data_size":SIZE}}],"outputs":[{"name":"similarity","parameters":{"binary_data":true}},{"name":"embeddings"}],"parameters":{"binary_data_output":false}}"#
        .replace("SIZE", &text.byte_size().to_string());
    let x = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
    let mut x_data = 1f32.to_le_bytes().to_vec();
    x_data.extend_from_slice(&2f32.to_le_bytes());
    vec![
        plain(
            "isolation-attack",
            r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"parameters":{"attack":"big","mib":48}}"#,
        ),
        plain(
            "isolation-binary-output",
            r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"parameters":{"attack":"big","mib":32,"binary_data_output":true}}"#,
        ),
        plain(
            "http-nested",
            r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[[1,2]]}]}"#,
        ),
        plain(
            "conduit-infer-text",
            &format!(
                r#"{{"id":"cli","inputs":[{{"name":"text","datatype":"BYTES","shape":[2,1],"data":[[{:?}],[{:?}]]}}]}}"#,
                PAIR[0], PAIR[1]
            ),
        ),
        plain(
            "parameters-outputs-timeout",
            r#"{"inputs":[],"parameters":{"z":"s","binary_data_output":true,"timeout":1500,
                "flag":false,"big":18446744073709551615,"ratio":0.5,"neg":-3},
                "outputs":[{"name":"p"},{"name":"q","parameters":{"binary_data":false}}]}"#,
        ),
        plain(
            "every-integer-type",
            r#"{"inputs":[{"name":"a","datatype":"INT8","shape":[2],"data":[-128,127]},{"name":"b","datatype":"UINT16","shape":[1],"data":[65535]},{"name":"c","datatype":"INT64","shape":[1],"data":[-9223372036854775808]},{"name":"d","datatype":"UINT64","shape":[1],"data":[18446744073709551615]},{"name":"e","datatype":"BOOL","shape":[2],"data":[true,false]},{"name":"f","datatype":"FP64","shape":[1],"data":[0.1]}]}"#,
        ),
        seed(
            t,
            "binary-in-order",
            kserve_json::input(Some(in_order.len()), in_order.as_bytes(), &binary),
        ),
        seed(
            t,
            "tritonclient-binary-text",
            kserve_json::input(Some(text_json.len()), text_json.as_bytes(), text.data()),
        ),
        seed(
            t,
            "http-binary-x",
            kserve_json::input(Some(x.len()), x, &x_data),
        ),
    ]
}

/// Token ids of the paraphrase pair, as `tests/all/serving.rs` sends the
/// bare MiniLM model (shape [2, 8]).
fn tokens() -> Vec<(String, Tensor)> {
    let ids = [
        101, 1996, 2194, 18680, 2003, 2241, 1999, 102, 101, 18680, 1005, 1055, 4075, 2024, 4953,
        102,
    ];
    let mask = [1i64; 16];
    let types = [0i64; 16];
    [
        ("input_ids", &ids[..]),
        ("attention_mask", &mask[..]),
        ("token_type_ids", &types[..]),
    ]
    .into_iter()
    .map(|(n, v)| {
        (
            n.to_string(),
            Tensor::from_i64(vec![2, 8], v).expect("2 x 8"),
        )
    })
    .collect()
}

/// `tests/all/serving.rs`'s `raw_request`.
fn raw_request(model: &str, inputs: &[(String, Tensor)]) -> ModelInferRequest {
    ModelInferRequest {
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

fn text_request(model: &str, version: &str) -> ModelInferRequest {
    let t = Tensor::from_byte_strings(vec![2, 1], PAIR).expect("a BYTES tensor");
    let mut r = raw_request(model, &[("text".into(), t)]);
    r.model_version = version.into();
    r
}

fn int_param(i: i64) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::Int64Param(i)),
    }
}

/// The requests `tests/all/serving.rs` and `tests/all/isolation.rs` send.
fn proto_seeds() -> Vec<Seed> {
    let t = "kserve_proto";
    let mut typed = text_request("paraphrase", "");
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(InferTensorContents {
        bytes_contents: PAIR.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    });
    let mut embed = raw_request("embed", &tokens());
    embed.parameters.insert("repeat".into(), int_param(2));
    let mut branchy = text_request("branchy", "");
    let x = Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0]).expect("3 floats");
    branchy.inputs.push(InferInputTensor {
        name: "x".into(),
        datatype: "FP32".into(),
        shape: vec![3],
        ..Default::default()
    });
    branchy.raw_input_contents.push(x.data().clone());
    let mut attack = raw_request("adv", &[("x".into(), x)]);
    attack.parameters.insert(
        "attack".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam("big".into())),
        },
    );
    attack.parameters.insert("mib".into(), int_param(48));
    attack
        .parameters
        .insert("timeout".into(), int_param(1_500_000));
    attack.outputs.push(InferRequestedOutputTensor {
        name: "y".into(),
        ..Default::default()
    });
    let mut typed_ints = raw_request("minilm", &[]);
    typed_ints.inputs.push(InferInputTensor {
        name: "input_ids".into(),
        datatype: "INT64".into(),
        shape: vec![1, 3],
        contents: Some(InferTensorContents {
            int64_contents: vec![101, 7592, 102],
            ..Default::default()
        }),
        ..Default::default()
    });
    [
        ("paraphrase-text", text_request("paraphrase", "")),
        ("paraphrase-latest", text_request("paraphrase", "latest")),
        ("paraphrase-typed", typed),
        ("minilm-tokens", raw_request("minilm", &tokens())),
        ("embed-repeat", embed),
        ("branchy", branchy),
        ("isolation-attack", attack),
        ("minilm-typed-int64", typed_ints),
    ]
    .into_iter()
    .map(|(name, r)| seed(t, name, encode_sorted(r)))
    .collect()
}

/// `r` encoded with its parameters in name order (a `HashMap` encodes in
/// a random order; map entries may come as separate fields, which merge).
pub fn encode_sorted(mut r: ModelInferRequest) -> Vec<u8> {
    let mut params: Vec<_> = std::mem::take(&mut r.parameters).into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = r.encode_to_vec();
    for (k, v) in params {
        let one = ModelInferRequest {
            parameters: [(k, v)].into_iter().collect(),
            ..Default::default()
        };
        out.extend_from_slice(&one.encode_to_vec());
    }
    out
}

/// A session's `Run` of the paraphrase pipeline and of the bare model.
fn session_seeds() -> Vec<Seed> {
    let input = |name: &str, t: &Tensor| session_pb::RunInput {
        name: name.into(),
        source: Some(session_pb::run_input::Source::Tensor(session_pb::Tensor {
            datatype: t.dtype().as_str().into(),
            shape: t.shape().to_vec(),
            data: t.data().clone(),
        })),
    };
    let text = Tensor::from_byte_strings(vec![2, 1], PAIR).expect("a BYTES tensor");
    let text_run = session_pb::RunRequest {
        session_id: "s-1".into(),
        module: "paraphrase@1.0.0".into(),
        inputs: vec![input("text", &text)],
        fetch: vec!["similarity".into()],
        ..Default::default()
    };
    let mut values = tokens()
        .iter()
        .map(|(n, t)| input(n, t))
        .collect::<Vec<_>>();
    values.push(session_pb::RunInput {
        name: "attention_mask".into(),
        source: Some(session_pb::run_input::Source::ValueId(7)),
    });
    let model_run = session_pb::RunRequest {
        session_id: "s-1".into(),
        module: "minilm@1.0.0".into(),
        inputs: values,
        release: vec![3],
        ..Default::default()
    };
    vec![
        seed("session_run", "paraphrase-text", text_run.encode_to_vec()),
        seed("session_run", "minilm-tokens", model_run.encode_to_vec()),
    ]
}

/// `examples/pipelines/paraphrase.toml`, the registry's own test manifest,
/// and the branchy pipeline of `tests/all/serving.rs`.
fn pipeline_seeds() -> Vec<Seed> {
    let t = "pipeline_toml";
    let registry_test = r#"
description = "demo"
[[inputs]]
name = "text"
datatype = "BYTES"
shape = [-1, 1]
[[outputs]]
name = "score"
datatype = "FP32"
shape = [-1]
[[steps]]
name = "post"
uses = "post@1.0.0"
inputs = { hidden = "encode.hidden", mask = "tokenize.mask" }
[[steps]]
name = "encode"
uses = "enc:prod"
inputs = { ids = "tokenize.ids", mask = "tokenize.mask" }
[[steps]]
name = "tokenize"
uses = "tok"
follow = true
inputs = { text = "text" }
params = { max_length = 128, lower = true, scale = 0.5, mode = "x" }
"#;
    let branchy = PARAPHRASE_TOML.to_string()
        + "\n[[inputs]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [-1]\n\n[[outputs]]\nname = \"x\"\ndatatype = \"FP32\"\nshape = [-1]\nfrom = \"side.x\"\n\n[[steps]]\nname = \"side\"\nuses = \"ops@1.0.0\"\ninputs = { x = \"x\" }\n";
    vec![
        seed(t, "paraphrase", PARAPHRASE_TOML),
        seed(t, "registry-test", registry_test),
        seed(t, "branchy", branchy),
    ]
}

/// References as the CLI, the tests and KServe callers give them.
fn reference_seeds() -> Vec<Seed> {
    let d = Digest::of(b"conduit");
    [
        ("version", "tok@1.2.0".to_string()),
        ("tenant-tag", "acme/tok:prod".into()),
        ("bare", "bert-tokenizer".into()),
        ("digest", d.to_string()),
        ("content", format!("minilm@{d}")),
        ("prerelease", "acme/embedding-post@1.0.0-rc.1".into()),
        ("in-module-version", "paraphrase\n1.0.0".into()),
        ("in-module-tag", "paraphrase\nprod".into()),
        ("in-module-latest", "paraphrase\n".into()),
        ("in-module-digest", format!("paraphrase\n{d}")),
        ("bearer", "Bearer cdk_3f2a9c0d5e7b41a8".into()),
    ]
    .into_iter()
    .map(|(name, s)| seed("reference", name, s))
    .collect()
}

/// `conduit push` requests of a component, a model and a pipeline, and a
/// manifest as the registry stores it.
fn manifest_seeds() -> Vec<Seed> {
    let t = "registry_manifest";
    let push = |kind: registry_pb::Kind, name: &str, executor, tags: &[&str], refs: &[&str]| {
        registry_pb::PutManifestRequest {
            kind: kind as i32,
            name: name.into(),
            version: "1.0.0".into(),
            digest: Digest::of(name.as_bytes()).to_string(),
            executor,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            references: refs.iter().map(|s| s.to_string()).collect(),
        }
        .encode_to_vec()
    };
    let hints = registry_pb::ExecutorHints {
        format: "onnx".into(),
        backend: "ort".into(),
        device: "cpu".into(),
        max_batch_size: 8,
        max_queue_delay_us: 500,
        preferred_batch_sizes: vec![4, 8],
        instances: 1,
        ..Default::default()
    };
    let stored = Manifest {
        tenant: "default".into(),
        name: "minilm".into(),
        version: "1.0.0".into(),
        kind: Kind::Model,
        digest: Digest::of(b"minilm"),
        size: 90_309_664,
        signature: Signature {
            inputs: ["input_ids", "attention_mask", "token_type_ids"]
                .iter()
                .map(|n| TensorSpec {
                    name: (*n).into(),
                    datatype: "INT64".into(),
                    shape: vec![-1, -1],
                })
                .collect(),
            outputs: vec![TensorSpec {
                name: "last_hidden_state".into(),
                datatype: "FP32".into(),
                shape: vec![-1, -1, 384],
            }],
        },
        executor: ExecutorHints {
            format: "onnx".into(),
            max_batch_size: 8,
            max_queue_delay_us: 500,
            ..Default::default()
        },
        world: String::new(),
        references: Vec::new(),
        created_at: "2026-05-01T12:00:00Z".into(),
        created_by: "default (key 3f2a)".into(),
        tags: Vec::new(),
    };
    vec![
        seed(
            t,
            "push-component",
            push(
                registry_pb::Kind::Component,
                "tokenizer",
                None,
                &["prod"],
                &[],
            ),
        ),
        seed(
            t,
            "push-model",
            push(registry_pb::Kind::Model, "minilm", Some(hints), &[], &[]),
        ),
        seed(
            t,
            "push-pipeline",
            push(
                registry_pb::Kind::Pipeline,
                "paraphrase",
                None,
                &["prod"],
                &["tokenizer@1.0.0", "minilm@1.0.0"],
            ),
        ),
        seed(
            t,
            "stored-model",
            serde_json::to_vec_pretty(&stored).expect("serialises"),
        ),
    ]
}

/// `examples/limits.toml`, and the forms `host/runner/src/limits.rs`
/// documents and tests.
fn limits_seeds() -> Vec<Seed> {
    let t = "tenant_limits";
    vec![
        seed(t, "examples-limits", LIMITS_TOML),
        seed(
            t,
            "documented",
            "[default]\nmax_concurrent_requests = 64\nsandbox_memory_mib = 256\nsandbox_deadline_ms = 1000\nrequest_deadline_ms = 30000\nmax_sessions = 64\nsession_values_mib = 1024\nsession_lease_ms = 60000\n\n[tenants.acme]\nmax_concurrent_requests = 4\n",
        ),
        seed(
            t,
            "tenant-only",
            "[tenants.acme]\nsandbox_memory_mib = 64\nmax_sessions = 2\n",
        ),
    ]
}

/// `grpc-timeout` values tritonclient, grpcio and tonic send.
fn timeout_seeds() -> Vec<Seed> {
    [
        "1S",
        "100m",
        "30000000u",
        "2H",
        "99999999n",
        "5M",
        "1500000u",
    ]
    .into_iter()
    .map(|v| seed("grpc_timeout", v, v))
    .collect()
}

/// The models `scripts/make_fixtures.py` writes, built here with the same
/// graphs: `add` (x FLOAT [batch, 4] + a constant) and `identity_i64`.
fn onnx_seeds() -> Vec<Seed> {
    let add = onnx::model(
        "Add",
        vec![
            onnx::value_info("x", 1, &[Err("batch"), Ok(4)]),
            onnx::value_info("bias", 1, &[Ok(4)]),
        ],
        vec![onnx::value_info("y", 1, &[Err("batch"), Ok(4)])],
        vec![onnx::TensorProto {
            dims: vec![4],
            data_type: 1,
            name: "bias".into(),
        }],
    );
    let identity = onnx::model(
        "Identity",
        vec![onnx::value_info("ids", 7, &[Err("batch"), Err("seq")])],
        vec![onnx::value_info("ids_out", 7, &[Err("batch"), Err("seq")])],
        Vec::new(),
    );
    let minilm = onnx::model(
        "Gather",
        ["input_ids", "attention_mask", "token_type_ids"]
            .iter()
            .map(|n| onnx::value_info(n, 7, &[Err("batch_size"), Err("sequence_length")]))
            .collect(),
        vec![onnx::value_info(
            "last_hidden_state",
            1,
            &[Err("batch_size"), Err("sequence_length"), Ok(384)],
        )],
        Vec::new(),
    );
    vec![
        seed("onnx_signature", "add", add.encode_to_vec()),
        seed("onnx_signature", "identity-i64", identity.encode_to_vec()),
        seed("onnx_signature", "minilm-io", minilm.encode_to_vec()),
    ]
}

/// Request bodies as `tritonclient.http` compresses them, and the headers.
fn encoding_seeds() -> Vec<Seed> {
    let t = "http_encoding";
    let body = br#"{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[[1,2]]}]}"#;
    let gzip = compress(Coding::Gzip, body);
    let mut two = gzip.clone();
    two.extend_from_slice(&gzip);
    let deflate = compress(Coding::Deflate, body);
    // A raw RFC 1951 stream: the zlib body without its header and checksum.
    let raw = deflate[2..deflate.len() - 4].to_vec();
    let bomb = compress(Coding::Gzip, &vec![0u8; 1 << 16]);
    let limit = body.len() as u16;
    vec![
        seed(
            t,
            "gzip",
            http_encoding::body_input(Coding::Gzip, 4096, &gzip),
        ),
        seed(
            t,
            "gzip-two-members",
            http_encoding::body_input(Coding::Gzip, 4096, &two),
        ),
        seed(
            t,
            "deflate-zlib",
            http_encoding::body_input(Coding::Deflate, limit, &deflate),
        ),
        seed(
            t,
            "deflate-raw",
            http_encoding::body_input(Coding::Deflate, 4096, &raw),
        ),
        seed(
            t,
            "gzip-bomb",
            http_encoding::body_input(Coding::Gzip, 1000, &bomb),
        ),
        seed(
            t,
            "accept",
            http_encoding::header_input(b"gzip;q=0, deflate"),
        ),
        seed(t, "content", http_encoding::header_input(b"x-gzip")),
    ]
    .into_iter()
    .chain(std::iter::once(seed(
        t,
        "tensor-bytes",
        http_encoding::body_input(
            Coding::Deflate,
            u16::MAX,
            &compress(Coding::Deflate, &[0u8, 0, 128, 63].repeat(100)),
        ),
    )))
    .collect()
}
