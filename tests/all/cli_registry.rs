//! The registry CLI end to end: a real `conduit dev` process on a temporary
//! data directory, driven by the real `conduit` client subcommands.
//!
//! Also home of the process harness ([`Server`]) that `crash.rs` reuses.

use crate::common::*;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to print its address, or to stop.
const STARTUP: Duration = Duration::from_secs(60);

/// A `conduit registry` or `conduit dev` process. Dropping it kills the
/// process, so a failing test never leaves a server behind.
pub struct Server {
    child: Option<Child>,
    /// The gRPC address it printed (`http://127.0.0.1:<port>`).
    pub url: String,
    /// `dev` only: the KServe v2 HTTP address it printed (`http://127.0.0.1:<port>`).
    pub http_url: String,
    /// The admin key it printed on first start (`None` on a restart).
    pub key: Option<String>,
    /// Everything it printed to stdout so far.
    pub stdout: Vec<String>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `conduit <subcommand> --data-dir <data_dir> --listen 127.0.0.1:0`
    /// and waits until it has printed its address (and, when `expect_key`,
    /// the bootstrap admin key).
    pub fn start(subcommand: &str, data_dir: &Path, expect_key: bool) -> Self {
        Self::start_with(subcommand, data_dir, expect_key, &[])
    }

    /// [`Server::start`] with extra arguments (`dev` also gets
    /// `--http-listen 127.0.0.1:0`).
    pub fn start_with(subcommand: &str, data_dir: &Path, expect_key: bool, extra: &[&str]) -> Self {
        Self::start_with_env(subcommand, data_dir, expect_key, extra, &[])
    }

    /// [`Server::start_with`] with environment variables (`RUST_LOG`…).
    pub fn start_with_env(
        subcommand: &str,
        data_dir: &Path,
        expect_key: bool,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        // `dev`, `runner` and `gateway` serve the data plane (with HTTP); a
        // runner's or gateway's `url` is its KServe v2 gRPC address.
        let dev = matches!(subcommand, "dev" | "runner" | "gateway");
        let runner = matches!(subcommand, "runner" | "gateway");
        let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
            .arg(subcommand)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(if dev {
                &["--http-listen", "127.0.0.1:0"][..]
            } else {
                &[]
            })
            .args(extra)
            .env_remove("CONDUIT_LOG")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning conduit");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut server = Self {
            child: Some(child),
            url: String::new(),
            http_url: String::new(),
            key: None,
            stdout: Vec::new(),
            lines,
            stderr,
        };
        let deadline = Instant::now() + STARTUP;
        while server.url.is_empty()
            || (dev && server.http_url.is_empty())
            || (expect_key && server.key.is_none())
        {
            let line = match server
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => line,
                Err(e) => panic!(
                    "conduit {subcommand} did not print its address ({e:?});\nstdout:\n{}\nstderr:\n{}",
                    server.stdout.join("\n"),
                    server.stderr()
                ),
            };
            if let Some(url) = line.trim().strip_prefix("registry (gRPC): ") {
                server.url = url.to_string();
            }
            if let Some(addr) = line
                .trim()
                .strip_prefix("inference (KServe v2 gRPC): ")
                .filter(|_| runner)
            {
                server.url = format!("http://{addr}");
            }
            if let Some(url) = line.trim().strip_prefix("inference (KServe v2 HTTP): ") {
                server.http_url = url.to_string();
            }
            if let Some(key) = line.trim().strip_prefix("export CONDUIT_API_KEY=") {
                server.key = Some(key.to_string());
            }
            server.stdout.push(line);
        }
        assert!(
            server.url.starts_with("http://127.0.0.1:"),
            "{}",
            server.url
        );
        server
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(line) = self.stdout.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + STARTUP;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with `{needle}` ({e:?});\nstdout:\n{}\nstderr:\n{}",
                    self.stdout.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// What it printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `kill -9`: no chance to flush, sync or clean up.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("server is running");
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert!(!status.success(), "a killed server cannot exit cleanly");
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status
    /// and the rest of its stdout.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("server is running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success());
        let deadline = Instant::now() + STARTUP;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("conduit did not stop within {STARTUP:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stdout not closed after exit"),
            }
        }
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client run of `conduit` against `server` with `key`.
pub(crate) fn conduit(server: &Server, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .env("CONDUIT_REGISTRY", &server.url)
        .env("CONDUIT_API_KEY", key)
        .env_remove("CONDUIT_LOG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running conduit")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The API key (`cdk_…`) a `tenant create` or `rotate-key` printed.
#[track_caller]
pub(crate) fn printed_key(out: &str) -> String {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("cdk_"))
        .unwrap_or_else(|| panic!("no key in:\n{out}"))
        .to_string()
}

/// Asserts success and returns stdout.
#[track_caller]
pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts exit code 1 with the error as the last stderr line, `error: ...`,
/// the only such line; returns that line.
#[track_caller]
pub(crate) fn fails(out: Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert_eq!(errors[0], last, "{stderr}");
    last.to_string()
}

/// The row of `list` output for `name` `version`.
pub(crate) fn row<'a>(list: &'a str, name: &str, version: &str) -> Option<&'a str> {
    list.lines().find(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.get(1) == Some(&name) && cols.get(2) == Some(&version)
    })
}

#[test]
fn registry_cli_end_to_end_against_conduit_dev() {
    let dir = TempDir::new("conduit-cli-registry");
    let data = dir.path().join(".conduit");
    let mut server = Server::start("dev", &data, true);
    let key = server.key.clone().unwrap();
    assert!(key.starts_with("cdk_"), "{key}");
    // `conduit dev` keeps the key once it has printed it.
    let kept = server.wait_for_line("(kept in ");
    assert!(kept.contains("admin.key"), "{kept}");
    let key_file = std::fs::read_to_string(data.join("admin.key")).unwrap();
    assert_eq!(key_file.trim(), key, "conduit dev keeps the admin key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "admin.key is private: {mode:o}");
    }

    let tok_path = component_path("bert-tokenizer");
    let tok = tok_path.to_str().unwrap();
    let tok_digest = conduit_registry::Digest::of(&std::fs::read(&tok_path).unwrap());
    let other_path = component_path("softmax-topk");
    let other = other_path.to_str().unwrap();
    let push = |file: &str, version: &str, extra: &[&str]| {
        let mut args = vec![
            "push",
            "component",
            file,
            "--name",
            "tok",
            "--version",
            version,
        ];
        args.extend_from_slice(extra);
        conduit(&server, &key, &args)
    };

    // Push, then the same push again.
    let out = ok(push(tok, "1.0.0", &["--tag", "prod"]));
    assert!(
        out.contains(&format!("pushed tok@1.0.0 {tok_digest}")),
        "{out}"
    );
    assert!(out.contains("prod"), "{out}");
    let out = ok(push(tok, "1.0.0", &["--tag", "prod"]));
    assert!(
        out.contains(&format!("unchanged tok@1.0.0 {tok_digest}")),
        "{out}"
    );

    // Versions are immutable.
    let err = fails(push(other, "1.0.0", &[]));
    assert!(err.contains("immutable"), "{err}");
    assert!(err.contains("tok@1.0.0"), "{err}");

    // A second version (same bytes: the upload is deduplicated).
    let out = push(tok, "1.1.0", &[]);
    assert!(text(&out.stderr).contains("already stored"), "{out:?}");
    let out = ok(out);
    assert!(out.contains("pushed tok@1.1.0"), "{out}");

    let list = ok(conduit(&server, &key, &["list"]));
    let v1 = row(&list, "tok", "1.0.0").unwrap_or_else(|| panic!("{list}"));
    let v11 = row(&list, "tok", "1.1.0").unwrap_or_else(|| panic!("{list}"));
    assert!(v1.starts_with("component") && v1.contains("prod"), "{list}");
    assert!(v11.contains("latest"), "{list}");
    assert!(v1.contains(&tok_digest.short()), "{list}");
    let filtered = ok(conduit(&server, &key, &["list", "--kind", "model"]));
    assert_eq!(filtered.lines().count(), 1, "header only:\n{filtered}");

    // Inspect, human and JSON.
    let out = ok(conduit(&server, &key, &["inspect", "tok@1.0.0"]));
    assert!(out.contains("default/tok@1.0.0 (component)"), "{out}");
    assert!(out.contains(&format!("digest:     {tok_digest}")), "{out}");
    assert!(out.contains("tags:       prod"), "{out}");
    assert!(out.contains("input       text: BYTES [-1, -1]"), "{out}");
    assert!(out.contains("output      input_ids: INT64"), "{out}");
    let out = ok(conduit(&server, &key, &["inspect", "tok@1.0.0", "--json"]));
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["digest"], tok_digest.to_string(), "{json}");
    assert_eq!(json["name"], "tok");
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["kind"], "component");
    assert_eq!(json["tags"], serde_json::json!(["prod"]));
    assert_eq!(json["signature"]["inputs"][0]["name"], "text");
    assert_eq!(json["signature"]["inputs"][0]["datatype"], "BYTES");
    // A bare name resolves through `latest`, which follows the highest version.
    let out = ok(conduit(&server, &key, &["inspect", "tok"]));
    assert!(out.contains("default/tok@1.1.0"), "{out}");

    // Move a tag.
    let out = ok(conduit(&server, &key, &["tag", "tok@1.1.0", "prod"]));
    assert!(out.contains("tok:prod → 1.1.0 (was 1.0.0)"), "{out}");
    let out = ok(conduit(&server, &key, &["inspect", "tok:prod"]));
    assert!(out.contains("default/tok@1.1.0"), "{out}");

    // A tagged version cannot be deleted; the error names the tag.
    let err = fails(conduit(&server, &key, &["delete", "tok@1.1.0"]));
    assert!(
        err.contains("tag `latest`") || err.contains("tag `prod`"),
        "{err}"
    );
    assert!(err.contains("untag"), "{err}");
    let out = ok(conduit(&server, &key, &["untag", "tok", "prod"]));
    assert!(out.contains("removed tok:prod (was 1.1.0)"), "{out}");
    let out = ok(conduit(&server, &key, &["delete", "tok@1.1.0"]));
    assert!(
        out.contains(&format!("deleted tok@1.1.0 {tok_digest}")),
        "{out}"
    );
    let list = ok(conduit(&server, &key, &["list"]));
    assert!(row(&list, "tok", "1.0.0").is_some(), "{list}");
    assert!(row(&list, "tok", "1.1.0").is_none(), "{list}");
    let err = fails(conduit(&server, &key, &["inspect", "tok@1.1.0"]));
    assert!(err.contains("not found"), "{err}");
    // `latest` named the deleted version; it fell back to the next highest.
    let out = ok(conduit(&server, &key, &["inspect", "tok"]));
    assert!(out.contains("default/tok@1.0.0"), "{out}");

    // A model that is not ONNX is refused at push.
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"\x07\x00 certainly not a model \xff\xff\xff").unwrap();
    let err = fails(conduit(
        &server,
        &key,
        &[
            "push",
            "model",
            garbage.to_str().unwrap(),
            "--name",
            "bad",
            "--version",
            "1.0.0",
        ],
    ));
    assert!(err.contains("ONNX"), "{err}");
    assert!(err.contains("bad@1.0.0"), "{err}");

    // Tenants: a new one sees nothing of `default`'s.
    let out = ok(conduit(&server, &key, &["tenant", "create", "acme"]));
    let acme = printed_key(&out);
    assert_ne!(acme, key);
    let list = ok(conduit(&server, &acme, &["list"]));
    assert_eq!(list.lines().count(), 1, "header only:\n{list}");
    for reference in [
        "tok",
        "tok@1.0.0",
        "default/tok@1.0.0",
        &tok_digest.to_string(),
    ] {
        let err = fails(conduit(&server, &acme, &["inspect", reference]));
        assert!(err.contains("not found"), "{reference}: {err}");
    }
    let err = fails(conduit(&server, &acme, &["tenant", "create", "evil"]));
    assert!(err.contains("admin"), "{err}");
    let err = fails(conduit(&server, &key, &["tenant", "create", "acme"]));
    assert!(err.contains("already exists"), "{err}");

    // A wrong key is refused in one clear line.
    let wrong = format!("cdk_{}", "0".repeat(64));
    let err = fails(conduit(&server, &wrong, &["list"]));
    assert!(err.contains("invalid API key"), "{err}");

    // Garbage collection (admin only) removes the unreferenced blob of the
    // garbage model (the refused softmax-topk push never uploaded a byte).
    let err = fails(conduit(&server, &acme, &["gc", "--grace-seconds", "0"]));
    assert!(err.contains("admin"), "{err}");
    let out = ok(conduit(&server, &key, &["gc", "--grace-seconds", "0"]));
    assert!(out.contains("removed 1 blobs"), "{out}");
    let out = ok(conduit(&server, &key, &["inspect", "tok@1.0.0"]));
    assert!(out.contains(&tok_digest.to_string()), "{out}");

    // Without CONDUIT_API_KEY, a local tool picks up `.conduit/admin.key`.
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["list", "--registry", &server.url])
        .env_remove("CONDUIT_API_KEY")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let list = ok(out);
    assert!(row(&list, "tok", "1.0.0").is_some(), "{list}");

    // An unreachable registry is one clear line too.
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["list", "--registry", "http://127.0.0.1:1"])
        .env("CONDUIT_API_KEY", &key)
        .output()
        .unwrap();
    let err = fails(out);
    assert!(err.contains("cannot reach the registry"), "{err}");

    // SIGTERM stops it cleanly.
    let (status, rest) = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        rest.iter().any(|l| l.contains("conduit stopped")),
        "{rest:?}"
    );
}
