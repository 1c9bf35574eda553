//! Hostile clients over real gRPC and HTTP on loopback (issue #20, found by
//! a black-box fuzz run): an absurd garbage-collection grace, 17,000-character
//! names, datatypes, tensor names, digests and references, bodies that are
//! not the protobuf message, broken gRPC framing, malformed `grpc-timeout`.
//! Each gets its documented code with a message under the cap, never
//! INTERNAL or a panic, and the server goes on serving.

use crate::cli_registry::Server;
use crate::cluster::{free_port, nats_server, start_gateway};
use crate::common::*;
use crate::registry::TestRegistry;
use crate::serving::{Plane, authed, infer, push, raw_request};
use conduit_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use conduit_proto::inference::infer_parameter::ParameterChoice;
use conduit_proto::inference::{self as pb, model_infer_request::InferInputTensor};
use conduit_proto::registry::v1 as rpb;
use conduit_proto::session::v1 as spb;
use conduit_registry::Kind;
use conduit_types::{MAX_MESSAGE_BYTES, Tensor};
use std::io::{Read, Write};
use std::pin::Pin;
use tonic::Code;
use tonic::codegen::{Body as _, Service as _, http};
use tonic::transport::Channel;

/// 17,000 characters: past grpcio's 16 KiB metadata limit on its own.
fn long(c: char) -> String {
    std::iter::repeat_n(c, 17_000).collect()
}

/// `status` has `code` and a message under the cap (its client would
/// otherwise drop it).
#[track_caller]
fn capped(status: &tonic::Status, code: Code) {
    let start: String = status.message().chars().take(200).collect();
    assert_eq!(status.code(), code, "{start}");
    assert!(
        status.message().len() <= MAX_MESSAGE_BYTES,
        "a message of {} bytes",
        status.message().len()
    );
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> tonic::Status {
    let status = result.expect_err("refused");
    capped(&status, code);
    status
}

/// As [`refused`], with either of two codes (the registry says
/// INVALID_ARGUMENT for a reference it cannot parse, NOT_FOUND for one it
/// can but does not hold).
#[track_caller]
fn refused_either<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Status {
    let status = result.expect_err("refused");
    let code = match status.code() {
        Code::InvalidArgument => Code::InvalidArgument,
        _ => Code::NotFound,
    };
    capped(&status, code);
    status
}

async fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One length-prefixed gRPC message: `flag`, a declared length, the bytes.
fn frame(flag: u8, declared: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&declared.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A well-formed message of any of our request types: field 1, a string
/// (`model_name`, `reference`, `session_id`…).
fn field_one(text: &str) -> Vec<u8> {
    let mut out = vec![0x0a, u8::try_from(text.len()).unwrap()];
    out.extend_from_slice(text.as_bytes());
    out
}

/// Bodies a client gets wrong, each with what it does wrong.
fn garbage() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let good = field_one("adversary");
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap();
    // Eleven 0xff: a varint longer than any, whatever the message type.
    let not_protobuf = [0xff; 11];
    vec![
        (
            "a body that is not protobuf",
            frame(0, len(&not_protobuf), &not_protobuf),
            None,
        ),
        (
            "the compressed flag without grpc-encoding",
            frame(1, len(&good), &good),
            None,
        ),
        ("compressed flag 2", frame(2, len(&good), &good), None),
        (
            "a length prefix past the data",
            frame(0, len(&good) + 100, &good),
            None,
        ),
        ("a body that ends inside a prefix", vec![0, 0, 0], None),
        (
            "a gzip message that does not inflate",
            frame(1, len(&good), &good),
            Some("gzip"),
        ),
    ]
}

/// Sends `body` as it is (no framing of ours) to `path` on `url` over
/// HTTP/2; the status the server answered.
async fn raw_call(
    url: &str,
    path: &str,
    key: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> tonic::Status {
    let mut channel = channel(url).await;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("{url}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"));
    if let Some(e) = encoding {
        request = request.header("grpc-encoding", e);
    }
    let request = request
        .body(tonic::body::Body::new(axum::body::Body::from(body)))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    // A status alone comes in the headers (trailers-only)…
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    // … else in the trailers, after any message.
    let mut body = response.into_body();
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    return tonic::Status::from_header_map(trailers).expect("a grpc-status");
                }
            }
            Some(Err(status)) => return status,
            None => panic!("{path}: the answer ended without a status"),
        }
    }
}

/// Every garbage body to `path` answers INVALID_ARGUMENT (a compressed
/// one only where the service accepts compression: the inference service;
/// the others answer UNIMPLEMENTED to any `grpc-encoding`).
async fn garbage_is_invalid_argument(url: &str, path: &str, key: &str) {
    let compressed = path.starts_with("/inference.");
    for (what, body, encoding) in garbage() {
        if encoding.is_some() && !compressed {
            continue;
        }
        let status = raw_call(url, path, key, encoding, body).await;
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path}, {what}: {}",
            status.message()
        );
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
    }
}

fn adversary_request(attack: &str) -> pb::ModelInferRequest {
    let x = Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap();
    let mut r = raw_request("adversary", &[("x".to_string(), x)]);
    r.parameters.insert(
        "attack".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam(attack.into())),
        },
    );
    r
}

/// `conduit dev`'s port (registry, inference, sessions) with the adversary
/// component pushed.
async fn plane() -> Plane {
    let plane = Plane::start("").await;
    let c = plane.registry_client(&plane.key).await;
    push(
        &c,
        Kind::Component,
        "adversary",
        "1.0.0",
        &component_bytes("adversary"),
    )
    .await;
    plane
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_takes_any_grace() {
    let registry = TestRegistry::start().await;
    let admin = registry.client(&registry.admin_key).await;
    let (digest, _) = admin
        .upload(b"kept bytes", &conduit_registry::PushProgress::default())
        .await
        .unwrap();
    // A grace reaching back past the epoch: nothing is old enough to go
    // (it was `SystemTime::now() - grace`, a panic answered as INTERNAL).
    for grace in [u64::MAX, (1 << 63) + 2_000_000_000, 1 << 62] {
        let report = admin.collect_garbage(Some(grace)).await.unwrap();
        assert_eq!(report.blobs_removed, 0, "grace {grace}");
        assert!(report.blobs_kept >= 1, "grace {grace}");
    }
    assert_eq!(admin.download(&digest).await.unwrap(), b"kept bytes");
    // An ordinary grace still works afterwards.
    admin.collect_garbage(Some(3600)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_client_text_is_clipped() {
    let plane = plane().await;
    let key = plane.key.clone();
    let mut client = plane.infer_client().await;
    let name = long('m');

    // The model name, its version, an input's datatype and name.
    let mut r = adversary_request("none");
    r.model_name = name.clone();
    let s = refused(infer(&mut client, &key, r).await, Code::NotFound);
    assert!(s.message().contains("(cut)"), "{}", s.message());
    let s = refused(
        client
            .model_metadata(authed(
                &key,
                pb::ModelMetadataRequest {
                    name: name.clone(),
                    version: String::new(),
                },
            ))
            .await,
        Code::NotFound,
    );
    assert!(s.message().contains("(cut)"), "{}", s.message());
    let mut r = adversary_request("none");
    r.model_version = long('v');
    refused(infer(&mut client, &key, r).await, Code::NotFound);
    let mut r = adversary_request("none");
    r.inputs[0].datatype = long('D');
    refused(infer(&mut client, &key, r).await, Code::InvalidArgument);
    let mut r = adversary_request("none");
    r.inputs[0].name = long('x');
    refused(infer(&mut client, &key, r).await, Code::InvalidArgument);
    let mut r = adversary_request("none");
    r.inputs = vec![InferInputTensor {
        name: long('y'),
        datatype: "FP32".into(),
        shape: vec![1],
        parameters: [("shared_memory_region".to_string(), Default::default())].into(),
        ..Default::default()
    }];
    r.raw_input_contents.clear();
    let s = refused(infer(&mut client, &key, r).await, Code::Unimplemented);
    assert!(s.message().contains("(cut)"), "{}", s.message());
    let s = refused(
        client
            .repository_model_load(authed(
                &key,
                pb::RepositoryModelLoadRequest {
                    model_name: name.clone(),
                    parameters: [("file:".to_string() + &name, Default::default())].into(),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert!(s.message().contains("(cut)"), "{}", s.message());

    // The registry: a reference, a digest, a tag.
    let mut registry = rpb::registry_client::RegistryClient::new(channel(&plane.url).await);
    for reference in [
        format!("adversary:{}", long('t')),
        format!("adversary@{}", long('1')),
        name.clone(),
        format!("blake3:{}", long('f')),
    ] {
        refused_either(
            registry
                .resolve(authed(&key, rpb::ResolveRequest { reference }))
                .await,
        );
    }
    refused(
        registry
            .put_manifest(authed(
                &key,
                rpb::PutManifestRequest {
                    kind: rpb::Kind::Component.into(),
                    name: "adversary".into(),
                    version: "2.0.0".into(),
                    digest: format!("blake3:{}", long('0')),
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    refused(
        registry
            .tag(authed(
                &key,
                rpb::TagRequest {
                    reference: "adversary@1.0.0".into(),
                    tag: long('t'),
                },
            ))
            .await,
        Code::InvalidArgument,
    );

    // Sessions: a module reference, a session id.
    let mut sessions = spb::session_client::SessionClient::new(channel(&plane.url).await);
    refused(
        sessions
            .open(authed(
                &key,
                spb::OpenRequest {
                    modules: vec![name.clone()],
                    ..Default::default()
                },
            ))
            .await,
        Code::NotFound,
    );
    refused(
        sessions
            .heartbeat(authed(
                &key,
                spb::HeartbeatRequest {
                    session_id: long('s'),
                },
            ))
            .await,
        Code::NotFound,
    );

    // HTTP: the same clip, the same cap.
    for (path, body) in [
        (
            format!("/v2/models/{name}/infer"),
            r#"{"inputs":[]}"#.to_string(),
        ),
        (
            "/v2/models/adversary/infer".to_string(),
            format!(
                r#"{{"inputs":[{{"name":"{}","datatype":"{}","shape":[1],"data":[1]}}]}}"#,
                long('x'),
                long('D')
            ),
        ),
    ] {
        let (status, answer) = http_post(plane.http, &path, &key, &body).await;
        assert!(matches!(status, 400 | 404), "{status}");
        let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let message = json["error"].as_str().unwrap();
        assert!(
            message.len() <= MAX_MESSAGE_BYTES && message.contains("(cut)"),
            "{message}"
        );
    }

    // And it serves.
    infer(&mut client, &key, adversary_request("none"))
        .await
        .unwrap();
}

/// One HTTP/1.1 request on a fresh connection: the status and the body.
async fn http_post(addr: std::net::SocketAddr, path: &str, key: &str, body: &str) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_garbage_on_the_wire_is_invalid_argument() {
    let plane = plane().await;
    let key = plane.key.clone();
    // One port, every service behind the same layer.
    for path in [
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelMetadata",
        "/conduit.session.v1.Session/Open",
        "/conduit.registry.v1.Registry/Resolve",
        "/conduit.registry.v1.Registry/UploadBlob",
    ] {
        garbage_is_invalid_argument(&plane.url, path, &key).await;
    }
    // A unary call with no message at all.
    let s = raw_call(
        &plane.url,
        "/inference.GRPCInferenceService/ModelInfer",
        &key,
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());

    // A good request afterwards still works, and a trap stays INTERNAL: it
    // is the server's failure, not the client's.
    let mut client = plane.infer_client().await;
    let ok = infer(&mut client, &key, adversary_request("none"))
        .await
        .unwrap();
    assert_eq!(ok.outputs[0].name, "y");
    let trap = refused(
        infer(&mut client, &key, adversary_request("unreachable")).await,
        Code::Internal,
    );
    assert!(trap.message().contains("trapped"), "{}", trap.message());
    // The same good request in raw framing, too.
    let s = raw_call(
        &plane.url,
        "/inference.GRPCInferenceService/ServerLive",
        &key,
        None,
        frame(0, 0, &[]),
    )
    .await;
    assert_eq!(s.code(), Code::Ok, "{}", s.message());

    // `conduit registry` alone: its own server, the same answers.
    let registry = TestRegistry::start().await;
    for path in [
        "/conduit.registry.v1.Registry/Resolve",
        "/conduit.registry.v1.Registry/UploadBlob",
    ] {
        garbage_is_invalid_argument(&registry.url, path, &registry.admin_key).await;
    }
    registry
        .client(&registry.admin_key)
        .await
        .collect_garbage(Some(3600))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_must_follow_the_spec() {
    let plane = plane().await;
    let key = plane.key.clone();
    let mut client = plane.infer_client().await;
    let with_timeout = |value: &str| {
        let mut r = authed(&key, adversary_request("none"));
        r.metadata_mut()
            .insert("grpc-timeout", value.parse().unwrap());
        r
    };
    // The spec's largest value is a deadline like any other.
    client.model_infer(with_timeout("99999999H")).await.unwrap();
    client.model_infer(with_timeout("30000m")).await.unwrap();
    for bad in ["123456789S", "1x", "S", "-5S"] {
        let s = refused(
            client.model_infer(with_timeout(bad)).await,
            Code::InvalidArgument,
        );
        assert!(s.message().contains("grpc-timeout"), "{}", s.message());
    }
    // The session service parses it too, before anything else.
    let mut sessions = spb::session_client::SessionClient::new(channel(&plane.url).await);
    let mut run = authed(&key, spb::RunRequest::default());
    run.metadata_mut()
        .insert("grpc-timeout", "123456789S".parse().unwrap());
    refused(sessions.run(run).await, Code::InvalidArgument);
    client.model_infer(with_timeout("10S")).await.unwrap();
}

/// The gateway (a real `conduit gateway` over NATS and `conduit registry`,
/// no runner needed): the same layer, the same clipping, the same
/// `grpc-timeout` check.
#[test]
fn the_gateway_refuses_client_garbage_as_invalid_argument() {
    let dir = TempDir::new("conduit-hostile-gateway");
    let nats_port = free_port();
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let _nats = nats_server(nats_port, &dir.path().join("nats"));
    let registry = Server::start("registry", &dir.path().join("registry"), true);
    let key = registry.key.clone().unwrap();
    let gateway = start_gateway(&dir.path().join("gateway"), &registry, &key, &nats, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for path in [
            "/inference.GRPCInferenceService/ModelInfer",
            "/conduit.session.v1.Session/Open",
        ] {
            garbage_is_invalid_argument(&gateway.url, path, &key).await;
        }
        let mut client = GrpcInferenceServiceClient::new(channel(&gateway.url).await);
        let mut r = adversary_request("none");
        r.model_name = long('m');
        let s = refused(infer(&mut client, &key, r).await, Code::NotFound);
        assert!(s.message().contains("(cut)"), "{}", s.message());
        let mut r = authed(&key, adversary_request("none"));
        r.metadata_mut()
            .insert("grpc-timeout", "123456789S".parse().unwrap());
        refused(client.model_infer(r).await, Code::InvalidArgument);
        // And it serves.
        let live = client
            .server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(live.live);
    });
}

/// Executor hints are resources the host pays for: 2^32 - 1 instances made
/// the first call spawn threads without end, and a u64::MAX batch delay made
/// a model never answer. Registration refuses both and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_hints_past_their_ceilings_are_refused() {
    let registry = TestRegistry::start().await;
    let admin = registry.client(&registry.admin_key).await;
    let bytes = component_bytes("adversary");
    let (digest, _) = admin
        .upload(&bytes, &conduit_registry::PushProgress::default())
        .await
        .unwrap();
    let hints = [
        (
            conduit_registry::ExecutorHints {
                instances: u32::MAX,
                ..Default::default()
            },
            "executor instances is 4294967295; at most 64",
        ),
        (
            conduit_registry::ExecutorHints {
                max_queue_delay_us: u64::MAX,
                ..Default::default()
            },
            "max_queue_delay_us",
        ),
        (
            conduit_registry::ExecutorHints {
                max_batch_size: 4,
                preferred_batch_sizes: vec![8],
                ..Default::default()
            },
            "preferred batch size 8 is outside 1..=4",
        ),
    ];
    for (hint, says) in hints {
        let e = admin
            .put_manifest(Kind::Component, "hinted", "1.0.0", &digest, &hint, &[], &[])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    assert!(admin.resolve("hinted").await.is_err(), "nothing stored");
    admin
        .put_manifest(
            Kind::Component,
            "hinted",
            "1.0.0",
            &digest,
            &conduit_registry::ExecutorHints::default(),
            &[],
            &[],
        )
        .await
        .unwrap();
}
