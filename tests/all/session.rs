//! Sessions through `conduit-client` against real servers: `conduit dev`
//! (register, run, chain values without fetching, bad input, leases), and a
//! cluster whose session runner is killed (reopen through the gateway,
//! replay, identical bits).

use crate::cli_registry::{Server, conduit, ok};
use crate::cluster::{
    free_port, nats_server, runner, scheduler, start_gateway, status, wait_until,
};
use crate::common::*;
use conduit_client::{
    ErrorKind, Input, ModelOptions, Module, ModuleRepository, Param, RunOptions, Session,
    SessionOptions, Tensor, Value,
};
use std::time::Duration;

const A: &str = "The company Conduit is based in the Bay Area";
const B: &str = "Conduit's headquarters are situated in Mountain View";
const C: &str = "Grandmother's apple pie needs more cinnamon";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn minilm() -> Vec<u8> {
    let path = workspace_root().join("testdata/minilm/model.onnx");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make onnx-model`)", path.display()))
}

/// Registers the paraphrase pipeline and its three steps.
pub(crate) async fn register_paraphrase(repo: &ModuleRepository) {
    let tags = ["prod".to_string()];
    let r = repo
        .register_component(
            "tokenizer",
            "1.0.0",
            &component_bytes("bert-tokenizer"),
            &tags,
        )
        .await
        .unwrap();
    assert!(
        r.digest.starts_with("blake3:") && r.reference == "tokenizer@1.0.0",
        "{r:?}"
    );
    repo.register_onnx("minilm", "1.0.0", &minilm(), &[], &ModelOptions::default())
        .await
        .unwrap();
    repo.register_component(
        "embedding-post",
        "1.0.0",
        &component_bytes("embedding-post"),
        &[],
    )
    .await
    .unwrap();
    let toml = std::fs::read_to_string(workspace_root().join("examples/pipelines/paraphrase.toml"))
        .unwrap();
    repo.register_pipeline("paraphrase", "1.0.0", &toml, &[])
        .await
        .unwrap();
}

fn text(pairs: &[&str]) -> Input {
    Tensor::from_byte_strings(vec![pairs.len() as i64, 1], pairs)
        .unwrap()
        .into()
}

fn named(outputs: &[(String, Value)], name: &str) -> Value {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output `{name}`"))
        .1
        .clone()
}

/// The pipeline's similarity of `pairs`, fetched.
async fn similarity(session: &Session, pairs: &[&str]) -> Vec<f32> {
    let paraphrase = session.module("paraphrase").await.unwrap();
    let out = paraphrase
        .run(vec![("text".into(), text(pairs))])
        .await
        .unwrap();
    named(&out, "similarity")
        .fetch()
        .await
        .unwrap()
        .to_f32()
        .unwrap()
}

/// The tokenizer run with the paraphrase pipeline's step parameters.
async fn tokenize_as_paraphrase_does(tokenize: &Module, pairs: &[&str]) -> Vec<(String, Value)> {
    tokenize
        .run_with(
            vec![("text".into(), text(pairs))],
            RunOptions {
                params: vec![
                    ("max_length".into(), Param::Int(256)),
                    ("padding".into(), Param::Str("longest".into())),
                ],
                ..RunOptions::default()
            },
        )
        .await
        .unwrap()
}

/// Tokenizer → MiniLM → embedding-post, passing values: only the text goes
/// in and the scores come out.
async fn chained(session: &Session, pairs: &[&str]) -> (Vec<f32>, Vec<Value>) {
    let tokenize = session.module("tokenizer:prod").await.unwrap();
    let encode = session.module("minilm@1.0.0").await.unwrap();
    let post = session.module("embedding-post").await.unwrap();
    let tokens = tokenize_as_paraphrase_does(&tokenize, pairs).await;
    let ids = named(&tokens, "input_ids");
    let mask = named(&tokens, "attention_mask");
    let types = named(&tokens, "token_type_ids");
    let hidden = encode
        .run(vec![
            ("input_ids".into(), (&ids).into()),
            ("attention_mask".into(), (&mask).into()),
            ("token_type_ids".into(), (&types).into()),
        ])
        .await
        .unwrap();
    let hidden = named(&hidden, "last_hidden_state");
    let scored = post
        .run(vec![
            ("last_hidden_state".into(), (&hidden).into()),
            ("attention_mask".into(), (&mask).into()),
        ])
        .await
        .unwrap();
    let scores = named(&scored, "similarity").fetch().await.unwrap();
    (scores.to_f32().unwrap(), vec![ids, mask, types, hidden])
}

#[test]
fn sessions_on_conduit_dev_run_chain_refuse_and_expire() {
    let dir = TempDir::new("conduit-session-dev");
    let dev = Server::start("dev", dir.path(), true);
    let key = dev.key.clone().unwrap();
    let other = {
        let out = ok(conduit(&dev, &key, &["tenant", "create", "acme"]));
        out.lines().last().unwrap().trim().to_string()
    };
    rt().block_on(async {
        let repo = ModuleRepository::connect(&dev.url, &key).await.unwrap();
        register_paraphrase(&repo).await;
        let listed = repo.list("").await.unwrap();
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert!(
            listed
                .iter()
                .any(|m| m.name == "tokenizer" && m.tags.contains(&"prod".to_string()))
        );
        let bad = ModuleRepository::connect(&dev.url, "cdk_nope")
            .await
            .unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::Unauthenticated, "{bad}");

        let session = Session::open(
            &dev.url,
            &key,
            &["paraphrase".into()],
            SessionOptions::default(),
        )
        .await
        .unwrap();
        assert!(session.runner_address().is_empty(), "dev answers itself");

        // The pipeline through a session, fetched.
        let scores = similarity(&session, &[A, B, A, C]).await;
        assert!(scores[0] - scores[1] > 0.3, "{scores:?}");

        // The same three steps chained by value: only the text crosses in
        // and the two scores out.
        let before = session.stats();
        let (chained_scores, _) = chained(&session, &[A, B, A, C]).await;
        let after = session.stats();
        let text_bytes = [A, B, A, C].iter().map(|s| 4 + s.len() as u64).sum::<u64>();
        assert_eq!(after.bytes_sent - before.bytes_sent, text_bytes);
        assert_eq!(after.bytes_received - before.bytes_received, 2 * 4);
        assert_eq!(
            chained_scores
                .iter()
                .map(|f| f.to_bits())
                .collect::<Vec<_>>(),
            scores.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            "chained steps equal the pipeline bit for bit"
        );

        // Bad input: a clear error, and the session still serves.
        let tokenize = session.module("tokenizer:prod").await.unwrap();
        let wrong = Tensor::from_f32(vec![1, 1], &[1.0]).unwrap();
        let e = tokenize
            .run(vec![("text".into(), wrong.into())])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let tokens = tokenize
            .run(vec![("text".into(), text(&[A]))])
            .await
            .unwrap();
        let ids = named(&tokens, "input_ids");
        ids.release().await.unwrap();
        let e = session
            .module("minilm@1.0.0")
            .await
            .unwrap()
            .run(vec![("input_ids".into(), ids.clone().into())])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueReleased, "{e}");
        assert_eq!(
            ids.fetch().await.unwrap_err().kind(),
            ErrorKind::ValueReleased
        );
        let e = session.module("nope").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

        // Another tenant's session cannot reach this one's values, even
        // by id.
        let mask = named(&tokens, "attention_mask");
        let id = mask.remote_id().unwrap();
        let acme = ModuleRepository::connect(&dev.url, &other).await.unwrap();
        acme.register_onnx("minilm", "1.0.0", &minilm(), &[], &ModelOptions::default())
            .await
            .unwrap();
        let theirs = Session::open(
            &dev.url,
            &other,
            &["minilm".into()],
            SessionOptions::default(),
        )
        .await
        .unwrap();
        let e = theirs.module("tokenizer").await.unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::NotFound,
            "another tenant's module: {e}"
        );
        let e = theirs
            .module("minilm")
            .await
            .unwrap()
            .run(vec![("attention_mask".into(), Input::RemoteId(id))])
            .await
            .unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::ValueNotFound,
            "another tenant's value: {e}"
        );
        theirs.close().await.unwrap();
        assert!(mask.fetch().await.is_ok(), "still there for its owner");
        assert_eq!(
            similarity(&session, &[A, B]).await[0].to_bits(),
            scores[0].to_bits()
        );

        // A lease that runs out: with replay off, the error says so.
        let lapsing = SessionOptions {
            lease: Some(Duration::from_millis(300)),
            heartbeat: false,
            replay: false,
            ..SessionOptions::default()
        };
        let short = Session::open(&dev.url, &key, &["paraphrase".into()], lapsing.clone())
            .await
            .unwrap();
        let out = short
            .module("paraphrase")
            .await
            .unwrap()
            .run(vec![("text".into(), text(&[A, B]))])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let e = named(&out, "similarity").fetch().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SessionExpired, "{e}");

        // With replay on, the same loss is repaired: reopened, recomputed,
        // the same bits.
        let replaying = Session::open(
            &dev.url,
            &key,
            &["paraphrase".into()],
            SessionOptions {
                replay: true,
                ..lapsing
            },
        )
        .await
        .unwrap();
        let out = replaying
            .module("paraphrase")
            .await
            .unwrap()
            .run(vec![("text".into(), text(&[A, B]))])
            .await
            .unwrap();
        let first_id = replaying.id();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = named(&out, "similarity")
            .fetch()
            .await
            .unwrap()
            .to_f32()
            .unwrap();
        assert_eq!(again[0].to_bits(), scores[0].to_bits());
        assert_ne!(replaying.id(), first_id, "a new session on the runner");
        assert_eq!(replaying.stats().replays, 1);

        // Closed: a clear error, fetched values stay readable.
        let kept = named(&out, "similarity");
        replaying.close().await.unwrap();
        assert!(kept.fetch().await.is_ok(), "fetched before close");
        let e = replaying.module("paraphrase").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SessionClosed, "{e}");
        session.close().await.unwrap();
    });
}

#[test]
fn a_session_replays_on_another_runner_when_its_runner_is_killed() {
    let dir = TempDir::new("conduit-session-cluster");
    let nats_port = free_port();
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let _nats = nats_server(nats_port, &dir.path().join("nats"));
    let registry = Server::start("registry", &dir.path().join("registry"), true);
    let key = registry.key.clone().unwrap();
    let _scheduler = scheduler(&nats, "scheduler-a", dir.path());
    let mut runners: Vec<(String, Server)> = ["r0", "r1"]
        .iter()
        .map(|id| {
            (
                id.to_string(),
                runner(dir.path(), &registry, &key, &nats, id),
            )
        })
        .collect();
    let gateway = start_gateway(&dir.path().join("gateway"), &registry, &key, &nats, &[]);
    wait_until("two runners and a leader", || {
        let s = status(&nats);
        s["leader"].is_string() && s["runners"].as_array().is_some_and(|r| r.len() == 2)
    });
    rt().block_on(async {
        let repo = ModuleRepository::connect(&registry.url, &key)
            .await
            .unwrap();
        register_paraphrase(&repo).await;
        let session = Session::open(
            &gateway.url,
            &key,
            &["paraphrase".into(), "tokenizer:prod".into()],
            SessionOptions::default(),
        )
        .await
        .unwrap();
        let first = session.runner_id();
        assert!(first == "r0" || first == "r1", "opened on {first:?}");
        assert!(
            !session.runner_address().is_empty(),
            "the gateway names the runner"
        );
        let expected = similarity(&session, &[A, B, A, C]).await;

        // Half a chain on the runner, nothing fetched.
        let tokenize = session.module("tokenizer:prod").await.unwrap();
        let encode = session.module("minilm@1.0.0").await.unwrap();
        let post = session.module("embedding-post").await.unwrap();
        let tokens = tokenize_as_paraphrase_does(&tokenize, &[A, B, A, C]).await;
        let mask = named(&tokens, "attention_mask");
        let hidden = encode
            .run(vec![
                ("input_ids".into(), named(&tokens, "input_ids").into()),
                ("attention_mask".into(), (&mask).into()),
                (
                    "token_type_ids".into(),
                    named(&tokens, "token_type_ids").into(),
                ),
            ])
            .await
            .unwrap();
        let hidden = named(&hidden, "last_hidden_state");

        // The session's runner dies.
        let at = runners.iter().position(|(id, _)| *id == first).unwrap();
        runners[at].1.kill_9();

        // The rest of the chain: reopened through the gateway on the other
        // runner, the logged calls replayed, the same bits.
        let scored = post
            .run(vec![
                ("last_hidden_state".into(), (&hidden).into()),
                ("attention_mask".into(), (&mask).into()),
            ])
            .await
            .unwrap();
        let scores = named(&scored, "similarity")
            .fetch()
            .await
            .unwrap()
            .to_f32()
            .unwrap();
        assert_ne!(session.runner_id(), first, "moved off the dead runner");
        assert_eq!(session.stats().replays, 1);
        assert_eq!(
            scores.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            "replayed results are identical"
        );
        session.close().await.unwrap();
    });
}
