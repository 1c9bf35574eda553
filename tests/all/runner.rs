//! A runner apart from its registry, as two processes through the real CLI:
//! `conduit registry` holds the modules, `conduit runner --registry URL`
//! pulls and serves them. NVIDIA's tritonclient drives the runner; then a
//! tag moves on the registry, the runner's compiled cache is tampered with,
//! and the registry is killed.

use crate::cli_registry::{Server, conduit, ok, text};
use crate::cli_registry_refs::push;
use crate::common::*;
use crate::tritonclient::{MAX_REQUEST_BYTES, Suite, run_suite};
use conduit_proto::inference::{
    ModelMetadataRequest, ServerReadyRequest,
    grpc_inference_service_client::GrpcInferenceServiceClient,
};
use std::time::{Duration, Instant};

/// How long a moved tag may take to reach the runner (the watch delivers it
/// in milliseconds; the bound leaves room for a loaded CI machine).
const TAG_BOUND: Duration = Duration::from_secs(5);

const PAIR: &str = r#"text=[["The company Conduit is based in the Bay Area"],["Conduit's headquarters are situated in Mountain View"]]"#;

fn start_runner(dir: &std::path::Path, registry: &Server, key: &str) -> Server {
    Server::start_with(
        "runner",
        dir,
        false,
        &[
            "--registry",
            &registry.url,
            "--api-key",
            key,
            "--max-request-bytes",
            MAX_REQUEST_BYTES,
        ],
    )
}

/// Runs `call` with a KServe v2 client of the runner at `url`.
fn on_runner<T>(
    url: &str,
    call: impl AsyncFnOnce(GrpcInferenceServiceClient<tonic::transport::Channel>) -> T,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .expect("connecting to the runner");
        call(GrpcInferenceServiceClient::new(channel)).await
    })
}

/// The input names of `name` at `version` as the runner describes it, or
/// the gRPC status.
fn inputs_of(
    url: &str,
    key: &str,
    name: &str,
    version: &str,
) -> Result<Vec<String>, tonic::Status> {
    on_runner(url, async |mut client| {
        let mut request = tonic::Request::new(ModelMetadataRequest {
            name: name.into(),
            version: version.into(),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        let reply = client.model_metadata(request).await?.into_inner();
        Ok(reply.inputs.into_iter().map(|t| t.name).collect())
    })
}

fn server_ready(url: &str) -> bool {
    on_runner(url, async |mut client| {
        client
            .server_ready(ServerReadyRequest {})
            .await
            .expect("ServerReady")
            .into_inner()
            .ready
    })
}

#[test]
fn runner_apart_from_the_registry() {
    let dir = TempDir::new("conduit-runner");

    // The registry holds everything; the runner has nothing yet.
    let mut registry = Server::start("registry", &dir.path().join("registry"), true);
    let key = registry.key.clone().unwrap();
    let suite = Suite::prepare(&registry, &key);
    let (ops, topk) = (component_path("tensor-ops"), component_path("softmax-topk"));
    for (file, name, version) in [
        (&ops, "mover", "1.0.0"),
        (&topk, "mover", "2.0.0"),
        (&ops, "never-served", "1.0.0"),
    ] {
        let out = push(&registry, &key, file.to_str().unwrap(), name, version);
        assert!(out.contains(&format!("pushed {name}@{version}")), "{out}");
    }
    ok(conduit(&registry, &key, &["tag", "mover@1.0.0", "prod"]));

    // NVIDIA's clients against the runner: the same suite `conduit dev` passes.
    let runner_dir = dir.path().join("runner");
    let runner = start_runner(&runner_dir, &registry, &key);
    run_suite(&suite, &runner);
    assert!(server_ready(&runner.url), "linked runner is ready");

    // A tag moved on the registry reaches the runner within the bound.
    let v1 = inputs_of(&runner.url, &key, "mover", "1.0.0").unwrap();
    let v2 = inputs_of(&runner.url, &key, "mover", "2.0.0").unwrap();
    assert_ne!(v1, v2, "the two versions must be told apart");
    assert_eq!(inputs_of(&runner.url, &key, "mover", "prod").unwrap(), v1);
    ok(conduit(&registry, &key, &["tag", "mover@2.0.0", "prod"]));
    let moved = Instant::now();
    while inputs_of(&runner.url, &key, "mover", "prod").unwrap() != v2 {
        assert!(
            moved.elapsed() < TAG_BOUND,
            "the runner still serves mover@1.0.0 as `prod` {TAG_BOUND:?} after the move"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A tampered compiled artifact is detected and recompiled, never run.
    let (status, _) = runner.terminate();
    assert!(status.success(), "{status:?}");
    let cache = runner_dir.join("cache");
    let mut tampered = 0;
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
            tampered += 1;
        }
    }
    assert!(tampered >= 2, "the runner cached its compiled components");
    let runner = start_runner(&runner_dir, &registry, &key);
    let out = ok(conduit(
        &runner,
        &key,
        &["infer", "paraphrase", "--input", PAIR],
    ));
    assert!(out.starts_with("paraphrase 1.0.0"), "{out}");
    assert!(
        runner.stderr().contains("discarding"),
        "the tampered artifacts were discarded:\n{}",
        runner.stderr()
    );

    // The registry dies: what the runner has cached keeps serving; what it
    // has not answers UNAVAILABLE at once, and readiness says why.
    registry.kill_9();
    let started = Instant::now();
    let out = conduit(&runner, &key, &["infer", "paraphrase", "--input", PAIR]);
    assert!(
        out.status.success(),
        "cached pipeline served with the registry down\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let status = inputs_of(&runner.url, &key, "never-served", "").unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("unreachable"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answers with the registry down must not wait on it: {:?}",
        started.elapsed()
    );
    assert!(!server_ready(&runner.url), "not ready without its registry");
    let (status, _) = runner.terminate();
    assert!(status.success(), "{status:?}");
}
