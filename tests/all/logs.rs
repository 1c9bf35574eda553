//! The server's log as an operator reads it: a request that fails inside
//! ONNX Runtime leaves at most one plain line (no colour codes in a file, no
//! second copy from ONNX Runtime's own logger), so clients cannot flood it.

use crate::cli_registry::{Server, conduit, ok, text};
use crate::common::{TempDir, component_path, workspace_root};

#[test]
fn a_failed_model_call_logs_at_most_one_plain_line() {
    let dir = TempDir::new("conduit-logs");
    let server = Server::start("dev", dir.path(), true);
    let key = server.key.clone().unwrap();
    let model = workspace_root().join("testdata/minilm/model.onnx");
    ok(conduit(
        &server,
        &key,
        &[
            "push",
            "model",
            model.to_str().unwrap(),
            "--name",
            "minilm",
            "--version",
            "1.0.0",
        ],
    ));
    let before = server.stderr();
    // A token id past the vocabulary: the shapes and dtypes are right, so the
    // request reaches ONNX Runtime, whose Gather refuses the index.
    let requests = 5;
    for _ in 0..requests {
        let out = conduit(
            &server,
            &key,
            &[
                "infer",
                "minilm",
                "--input",
                "input_ids=[[101, 99999999, 102]]",
                "--input",
                "attention_mask=[[1, 1, 1]]",
                "--input",
                "token_type_ids=[[0, 0, 0]]",
            ],
        );
        assert!(!out.status.success(), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains("99999999"), "the client sees why: {err}");
    }
    // The server still answers a good request.
    ok(conduit(
        &server,
        &key,
        &[
            "infer",
            "minilm",
            "--input",
            "input_ids=[[101, 7592, 102]]",
            "--input",
            "attention_mask=[[1, 1, 1]]",
            "--input",
            "token_type_ids=[[0, 0, 0]]",
        ],
    ));
    let log = server.stderr();
    let log = &log[before.len()..];
    assert!(!log.contains('\u{1b}'), "colour codes in the log: {log:?}");
    let lines = log.lines().filter(|l| l.contains("99999999")).count();
    assert!(
        lines <= requests,
        "{lines} log lines for {requests} failed requests:\n{log}"
    );
}

/// `RUST_LOG` selects what is logged, and every event of a request carries
/// its span: the request (tenant, model, version, digest) and, inside a
/// pipeline, the step (step, module, version, digest).
#[test]
fn rust_log_shows_each_request_and_step_span() {
    let dir = TempDir::new("conduit-spans");
    let server = Server::start_with_env(
        "dev",
        dir.path(),
        true,
        &[],
        &[(
            "RUST_LOG",
            "warn,conduit_runner=info,conduit_executor=trace",
        )],
    );
    let key = server.key.clone().unwrap();
    let root = workspace_root();
    let model = root.join("testdata/minilm/model.onnx");
    let pipeline = root.join("examples/pipelines/paraphrase.toml");
    let (tokenizer, post) = (
        component_path("bert-tokenizer"),
        component_path("embedding-post"),
    );
    for (kind, file, name) in [
        ("component", &tokenizer, "tokenizer"),
        ("component", &post, "embedding-post"),
        ("model", &model, "minilm"),
        ("pipeline", &pipeline, "paraphrase"),
    ] {
        ok(conduit(
            &server,
            &key,
            &[
                "push",
                kind,
                file.to_str().unwrap(),
                "--name",
                name,
                "--version",
                "1.0.0",
            ],
        ));
    }
    ok(conduit(
        &server,
        &key,
        &[
            "infer",
            "paraphrase",
            "--input",
            r#"text=[["a cat"],["a dog"]]"#,
        ],
    ));
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("batch ran"))
        .unwrap_or_else(|| panic!("no executor event with RUST_LOG set:\n{log}"));
    for field in [
        "infer{",
        "tenant=default",
        "model=paraphrase",
        "version=1.0.0",
        "digest=blake3:",
        "step{step=",
        "module=minilm",
    ] {
        assert!(line.contains(field), "`{field}` missing from {line}");
    }
}
