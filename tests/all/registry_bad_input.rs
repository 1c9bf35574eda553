//! Bad pushes, data-driven from `tests/data/registry_bad_input.json`: each
//! case must fail with its gRPC code and message, store nothing, and leave
//! the registry serving with everything it held before intact.

use crate::common::{component_bytes, workspace_root};
use crate::registry::TestRegistry;
use conduit_proto::registry::v1 as pb;
use conduit_registry::{
    Code, Digest, ExecutorHints, Kind, ListQuery, PushProgress, RegistryClient, TenantLimits,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Suite {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    case: String,
    #[serde(default = "component")]
    kind: String,
    #[serde(default = "probe")]
    name: String,
    #[serde(default = "one")]
    version: String,
    file: String,
    #[serde(default = "normal")]
    upload: String,
    #[serde(default = "valid")]
    api_key: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    before: Vec<Before>,
    expect: String,
    #[serde(default)]
    message: String,
    created: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Limits {
    max_upload_bytes: Option<u64>,
    max_stored_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct Before {
    name: String,
    version: String,
    file: String,
}

fn component() -> String {
    "component".into()
}
fn probe() -> String {
    "probe".into()
}
fn one() -> String {
    "1.0.0".into()
}
fn normal() -> String {
    "normal".into()
}
fn valid() -> String {
    "valid".into()
}

fn file(name: &str) -> Vec<u8> {
    match name {
        "tokenizer" => component_bytes("bert-tokenizer"),
        "softmax" => component_bytes("softmax-topk"),
        "wrong-world" => component_bytes("wrong-world"),
        "text" => b"hello, I am not a module".to_vec(),
        "empty" => Vec::new(),
        "core-module" => b"\0asm\x01\0\0\0".to_vec(),
        "garbage-onnx" => {
            let path = workspace_root().join("testdata/fixtures/garbage.onnx");
            std::fs::read(&path)
                .unwrap_or_else(|_| panic!("{} is missing: run `make fixtures`", path.display()))
        }
        other => panic!("unknown file `{other}` in the case table"),
    }
}

fn kind(name: &str) -> Kind {
    match name {
        "component" => Kind::Component,
        "model" => Kind::Model,
        "pipeline" => Kind::Pipeline,
        other => panic!("unknown kind `{other}`"),
    }
}

fn header(size: u64, digest: &Digest) -> pb::UploadBlobRequest {
    pb::UploadBlobRequest {
        part: Some(pb::upload_blob_request::Part::Header(pb::UploadHeader {
            size,
            expected_digest: digest.to_string(),
        })),
    }
}

fn chunk(bytes: &[u8]) -> pb::UploadBlobRequest {
    pb::UploadBlobRequest {
        part: Some(pb::upload_blob_request::Part::Chunk(bytes.to_vec())),
    }
}

/// Runs one case's push; `Ok(created)` when it succeeded.
async fn run(case: &Case, client: &RegistryClient) -> Result<bool, conduit_registry::ClientError> {
    let bytes = file(&case.file);
    let digest = Digest::of(&bytes);
    let uploaded = match case.upload.as_str() {
        "normal" => client.upload(&bytes, &PushProgress::default()).await?.0,
        "skip" => digest,
        "truncated" => {
            let half = &bytes[..bytes.len() / 2];
            let r = client
                .upload_raw(vec![header(bytes.len() as u64, &digest), chunk(half)])
                .await?;
            r.digest.parse().expect("digest")
        }
        "mismatch" => {
            let other = Digest::of(b"something else");
            let r = client
                .upload_raw(vec![header(bytes.len() as u64, &other), chunk(&bytes)])
                .await?;
            r.digest.parse().expect("digest")
        }
        "overlong" => {
            let r = client
                .upload_raw(vec![header(bytes.len() as u64 - 1, &digest), chunk(&bytes)])
                .await?;
            r.digest.parse().expect("digest")
        }
        "no-header" => {
            let r = client.upload_raw(vec![chunk(&bytes)]).await?;
            r.digest.parse().expect("digest")
        }
        other => panic!("unknown upload mode `{other}`"),
    };
    let (_, created) = client
        .put_manifest(
            kind(&case.kind),
            &case.name,
            &case.version,
            &uploaded,
            &ExecutorHints::default(),
            &case.tags,
            &[],
        )
        .await?;
    Ok(created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_fail_clearly_and_harm_nothing() {
    let text = std::fs::read_to_string(workspace_root().join("tests/data/registry_bad_input.json"))
        .unwrap();
    let suite: Suite = serde_json::from_str(&text).unwrap();
    assert!(suite.cases.len() >= 20);
    let reg = TestRegistry::start().await;
    // Something stored before any bad input, checked after every case.
    let admin = reg.client(&reg.admin_key).await;
    let sentinel = crate::registry::push(
        &admin,
        "sentinel",
        "1.0.0",
        &component_bytes("softmax-topk"),
        &[],
    )
    .await;

    for (i, case) in suite.cases.iter().enumerate() {
        let defaults = TenantLimits::default();
        let limits = TenantLimits {
            max_upload_bytes: case
                .limits
                .max_upload_bytes
                .unwrap_or(defaults.max_upload_bytes),
            max_stored_bytes: case
                .limits
                .max_stored_bytes
                .unwrap_or(defaults.max_stored_bytes),
        };
        let (_, owner) = reg.tenant(&format!("case-{i}"), Some(limits)).await;
        for b in &case.before {
            crate::registry::push(&owner, &b.name, &b.version, &file(&b.file), &[]).await;
        }
        let (before, _) = owner.list(&ListQuery::default()).await.unwrap();
        let client = match case.api_key.as_str() {
            "valid" => owner.clone(),
            "missing" => reg.client("").await,
            "invalid" => {
                reg.client("cdk_0000000000000000000000000000000000000000000000000000000000000000")
                    .await
            }
            "basic" => {
                // The client always sends `Bearer`; send a raw header instead.
                let channel = tonic::transport::Endpoint::from_shared(reg.url.clone())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let mut raw = pb::registry_client::RegistryClient::new(channel);
                let mut request = tonic::Request::new(pb::ListRequest::default());
                request
                    .metadata_mut()
                    .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
                let status = raw.list(request).await.unwrap_err();
                assert_eq!(status.code(), Code::Unauthenticated, "{}", case.case);
                assert!(
                    status.message().contains(&case.message),
                    "{}: `{}`",
                    case.case,
                    status.message()
                );
                continue;
            }
            other => panic!("unknown api_key mode `{other}`"),
        };
        let result = run(case, &client).await;
        match (case.expect.as_str(), result) {
            ("ok", Ok(created)) => {
                if let Some(want) = case.created {
                    assert_eq!(created, want, "{}", case.case);
                }
            }
            ("ok", Err(e)) => panic!("{}: expected success, got {e}", case.case),
            (code, Ok(_)) => panic!("{}: expected {code}, but the push succeeded", case.case),
            (code, Err(e)) => {
                let got = format!("{:?}", e.code().unwrap_or(Code::Unknown));
                assert_eq!(got, code, "{}: {e}", case.case);
                assert!(
                    e.to_string().contains(&case.message),
                    "{}: `{e}` lacks `{}`",
                    case.case,
                    case.message
                );
                assert!(
                    !e.to_string().contains('\n'),
                    "{}: one line please: {e}",
                    case.case
                );
                // Nothing was registered.
                let (after, _) = owner.list(&ListQuery::default()).await.unwrap();
                assert_eq!(
                    after, before,
                    "{}: the failed push changed the tenant's modules",
                    case.case
                );
            }
        }
        // Still serving, and what was stored is intact.
        let m = admin.resolve("sentinel@1.0.0").await.unwrap();
        assert_eq!(m, sentinel, "{}", case.case);
        assert_eq!(
            Digest::of(&admin.download(&m.digest).await.unwrap()),
            m.digest,
            "{}",
            case.case
        );
    }
    // No partial upload is left behind in the store's scratch space.
    let tmp = reg.data_dir().join("registry/blobs/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "partial uploads left in {}",
        tmp.display()
    );
}
