//! Conduit through NVIDIA's own clients: a real `conduit dev`, the paraphrase
//! pipeline pushed with the real CLI, then `tests/python/test_tritonclient.py`
//! drives it with `tritonclient` from PyPI (gRPC and HTTP; `make clients`).

use crate::cli_registry::{Server, conduit, ok, printed_key};
use crate::common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The server's request limit; the script sends twice as much.
pub(crate) const MAX_REQUEST_BYTES: &str = "1000000";

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `http://127.0.0.1:port` as `127.0.0.1:port`, the form tritonclient wants.
fn host_port(url: &str) -> &str {
    url.strip_prefix("http://").unwrap_or(url)
}

#[track_caller]
pub(crate) fn existing(root: &Path, relative: &str, make: &str) -> String {
    let path = root.join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make {make}`",
        path.display()
    );
    path.to_str().unwrap().to_string()
}

/// What `tests/python/test_tritonclient.py` needs besides the server: its
/// files, and a registry holding the modules it calls.
pub(crate) struct Suite {
    python: String,
    reference: String,
    sentences: String,
    /// The admin key the modules were pushed with.
    pub key: String,
    /// A second tenant's key: it holds none of them.
    other: String,
}

impl Suite {
    /// Checks the suite's files and tools exist, then pushes, with `key` to
    /// `registry` (`dev` or `registry`), what the script expects:
    /// components `tokenizer@1.0.0` and `embedding-post@1.0.0`, the model
    /// `minilm@1.0.0`, the pipeline `paraphrase@1.0.0`, a component `post`
    /// at 1.0.0, 2.0.0 and 1.2.0 (other components' bytes: only the versions
    /// matter; pushed out of order, for metadata `versions` and Triton-style
    /// numeric versions), and a tenant `other` with none of them.
    pub(crate) fn prepare(registry: &Server, key: &str) -> Self {
        let root = workspace_root();
        let python = existing(&root, ".venv/bin/python", "clients");
        let imports = Command::new(&python)
            .args(["-c", "import tritonclient.grpc, tritonclient.http"])
            .output()
            .expect("running python");
        assert!(
            imports.status.success(),
            "tritonclient is not installed in .venv: run `make clients`\n{}",
            show(&imports)
        );
        let model = existing(&root, "testdata/minilm/model.onnx", "onnx-model");
        let pipeline = root.join("examples/pipelines/paraphrase.toml");
        let component = |name: &str| component_path(name).to_str().unwrap().to_string();
        for (kind, file, name, version) in [
            (
                "component",
                component("bert-tokenizer"),
                "tokenizer",
                "1.0.0",
            ),
            (
                "component",
                component("embedding-post"),
                "embedding-post",
                "1.0.0",
            ),
            ("model", model, "minilm", "1.0.0"),
            (
                "pipeline",
                pipeline.to_str().unwrap().to_string(),
                "paraphrase",
                "1.0.0",
            ),
            ("component", component("embedding-post"), "post", "1.0.0"),
            ("component", component("tensor-ops"), "post", "2.0.0"),
            ("component", component("softmax-topk"), "post", "1.2.0"),
        ] {
            let out = ok(conduit(
                registry,
                key,
                &["push", kind, &file, "--name", name, "--version", version],
            ));
            assert!(out.contains(&format!("pushed {name}@{version}")), "{out}");
        }
        let other = printed_key(&ok(conduit(registry, key, &["tenant", "create", "other"])));
        Self {
            python,
            reference: existing(&root, "testdata/minilm_reference.json", "minilm-reference"),
            sentences: existing(
                &root,
                "tests/data/minilm_sentences.json",
                "minilm-reference",
            ),
            key: key.to_string(),
            other,
        }
    }
}

/// Runs the tritonclient suite (gRPC and HTTP) against `server` (`dev` or a
/// `runner`); panics with its output and the server's log unless it passes.
pub(crate) fn run_suite(suite: &Suite, server: &Server) {
    let root = workspace_root();
    let run = Command::new(&suite.python)
        .arg(root.join("tests/python/test_tritonclient.py"))
        .args(["--grpc", host_port(&server.url)])
        .args(["--http", host_port(&server.http_url)])
        .args(["--key", &suite.key, "--other-key", &suite.other])
        .args(["--reference", &suite.reference])
        .args(["--sentences", &suite.sentences])
        .args(["--max-request-bytes", MAX_REQUEST_BYTES])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("running the tritonclient suite");
    assert!(
        run.status.success(),
        "tests/python/test_tritonclient.py failed\n{}\nserver stderr:\n{}",
        show(&run),
        server.stderr()
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("checks passed"), "{stdout}");
}

#[test]
fn tritonclient_grpc_and_http_against_conduit_dev() {
    let dir = TempDir::new("conduit-tritonclient");
    let server = Server::start_with(
        "dev",
        &dir.path().join(".conduit"),
        true,
        &["--max-request-bytes", MAX_REQUEST_BYTES],
    );
    let suite = Suite::prepare(&server, server.key.as_deref().unwrap());
    run_suite(&suite, &server);

    let (status, _) = server.terminate();
    assert!(status.success(), "{status:?}");
}
