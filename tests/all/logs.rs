//! The server's log as an operator reads it: a request that fails inside
//! ONNX Runtime leaves at most one plain line (no colour codes in a file, no
//! second copy from ONNX Runtime's own logger), so clients cannot flood it.

use crate::cli_registry::{Server, conduit, ok, text};
use crate::common::{TempDir, workspace_root};

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
