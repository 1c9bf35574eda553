//! Issue #13 through the real CLI against a real `conduit dev`: references
//! (digests within a module, ambiguous digests, version-shaped tags,
//! `latest`, every form in every command, one bearer parser), storage
//! accounting (checks before the upload, rejected and deleted modules stop
//! counting, compiled artifacts go with them), tenants and keys, `list
//! --json` and `pull`.

use crate::cli_registry::{Server, conduit, fails, ok, printed_key, row};
use crate::common::*;
use conduit_registry::Digest;
use std::path::{Path, PathBuf};

/// Writes `bytes` under `dir` as `name` and returns its path as text.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

pub(crate) fn push(server: &Server, key: &str, file: &str, name: &str, version: &str) -> String {
    ok(conduit(
        server,
        key,
        &[
            "push",
            "component",
            file,
            "--name",
            name,
            "--version",
            version,
        ],
    ))
}

/// A line of `conduit tenant usage` output, e.g. `stored:`, as its first
/// number in parentheses (bytes).
fn usage_bytes(out: &str, field: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in:\n{out}"));
    line.split('(')
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn compiled_artifacts(data: &Path, digest: &Digest) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("cache"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&digest.hex()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cli_references_resolve_within_the_named_module() {
    let dir = TempDir::new("conduit-cli-refs");
    let server = Server::start("dev", &dir.path().join(".conduit"), true);
    let key = server.key.clone().unwrap();
    let tok_path = component_path("bert-tokenizer");
    let tok = tok_path.to_str().unwrap();
    let d = Digest::of(&std::fs::read(&tok_path).unwrap());

    // Three modules share the tokenizer's bytes; a bare digest names the one
    // registered first, and pushing one that sorts earlier changes nothing.
    push(&server, &key, tok, "aa-ops", "1.0.0");
    push(&server, &key, tok, "zz-ops", "1.0.0");
    let out = ok(conduit(&server, &key, &["inspect", &d.to_string()]));
    assert!(out.contains("default/aa-ops@1.0.0"), "{out}");
    push(&server, &key, tok, "0-ops", "1.0.0");
    let out = ok(conduit(&server, &key, &["inspect", &d.to_string()]));
    assert!(out.contains("default/aa-ops@1.0.0"), "stable: {out}");
    let out = ok(conduit(&server, &key, &["inspect", &format!("zz-ops@{d}")]));
    assert!(out.contains("default/zz-ops@1.0.0"), "{out}");

    // A digest is resolved within the module `infer` names, in every form.
    let input = ["-i", r#"text=[["hello world"]]"#];
    let infer = |args: &[&str]| {
        let mut all = vec!["infer"];
        all.extend_from_slice(args);
        all.extend_from_slice(&input);
        conduit(&server, &key, &all)
    };
    let digest = d.to_string();
    let out = ok(infer(&["zz-ops", "--model-version", &digest]));
    assert!(out.starts_with("zz-ops 1.0.0"), "{out}");
    let out = ok(infer(&[&format!("zz-ops@{d}")]));
    assert!(out.starts_with("zz-ops 1.0.0"), "{out}");
    ok(conduit(&server, &key, &["tag", "zz-ops@1.0.0", "prod"]));
    for reference in [
        "zz-ops:prod",
        "zz-ops@1.0.0",
        "default/zz-ops:prod",
        "zz-ops",
    ] {
        let out = ok(infer(&[reference]));
        assert!(out.starts_with("zz-ops 1.0.0"), "{reference}: {out}");
    }
    let err = fails(infer(&["zz-ops:nope"]));
    assert!(err.contains("not found") && err.contains("nope"), "{err}");
    let err = fails(infer(&["zz-ops@1.0.0", "--model-version", "1.0.0"]));
    assert!(err.contains("give the version once"), "{err}");

    // An ambiguous digest is not deleted; the error names the candidates.
    let err = fails(conduit(&server, &key, &["delete", &digest]));
    for candidate in ["0-ops@1.0.0", "aa-ops@1.0.0", "zz-ops@1.0.0"] {
        assert!(err.contains(candidate), "{candidate}: {err}");
    }
    let out = ok(conduit(&server, &key, &["delete", &format!("aa-ops@{d}")]));
    assert!(out.contains("deleted aa-ops@1.0.0"), "{out}");

    // Tags may not look like versions; `latest` is the registry's own.
    for tag in ["1.0.0", "v2.0.0"] {
        let err = fails(conduit(&server, &key, &["tag", "zz-ops@1.0.0", tag]));
        assert!(err.contains("looks like a version"), "{tag}: {err}");
    }
    let err = fails(conduit(&server, &key, &["tag", "zz-ops@1.0.0", "latest"]));
    assert!(err.contains("maintained by the registry"), "{err}");
    let err = fails(conduit(&server, &key, &["untag", "zz-ops", "latest"]));
    assert!(err.contains("maintained by the registry"), "{err}");
    // `untag` takes the `tenant/` prefix like every other command.
    let out = ok(conduit(&server, &key, &["untag", "default/zz-ops", "prod"]));
    assert!(
        out.contains("removed default/zz-ops:prod (was 1.0.0)"),
        "{out}"
    );

    // `latest` is the highest release through pushes and deletes.
    let ops = component_bytes("softmax-topk");
    let version = |v: &str| file(dir.path(), v, &with_custom_section(&ops, "v", v.as_bytes()));
    let latest = || ok(conduit(&server, &key, &["inspect", "lat"]));
    push(&server, &key, &version("2.0.0-rc.1"), "lat", "2.0.0-rc.1");
    assert!(latest().contains("lat@2.0.0-rc.1"), "no release yet");
    push(&server, &key, &version("1.0.0"), "lat", "1.0.0");
    assert!(latest().contains("lat@1.0.0"), "a release wins");
    push(&server, &key, &version("1.5.0"), "lat", "1.5.0");
    push(&server, &key, &version("1.2.0"), "lat", "1.2.0");
    assert!(latest().contains("lat@1.5.0"), "a lower push leaves it");
    // A version whose only tag is `latest` may be deleted; `latest` moves.
    ok(conduit(&server, &key, &["delete", "lat@1.5.0"]));
    assert!(latest().contains("lat@1.2.0"), "{}", latest());
}

#[test]
fn cli_one_bearer_parser_for_every_service() {
    use conduit_proto::registry::v1 as pb;
    let dir = TempDir::new("conduit-cli-bearer");
    let server = Server::start("dev", &dir.path().join(".conduit"), true);
    let key = server.key.clone().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let registry = |header: Option<String>| {
        rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut raw = pb::registry_client::RegistryClient::new(channel);
            let mut request = tonic::Request::new(pb::ListRequest::default());
            if let Some(h) = header {
                request
                    .metadata_mut()
                    .insert("authorization", h.parse().unwrap());
            }
            raw.list(request)
                .await
                .map(drop)
                .map_err(|s| s.message().to_string())
        })
    };
    let http = |header: Option<String>| {
        let url = format!("{}/v2/models/nope", server.http_url);
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", &url]);
        if let Some(h) = header {
            cmd.args(["-H", &format!("authorization: {h}")]);
        }
        String::from_utf8_lossy(&cmd.output().expect("curl").stdout).into_owned()
    };
    // The scheme in any case.
    registry(Some(format!("bearer {key}"))).unwrap();
    registry(Some(format!("BEARER {key}"))).unwrap();
    for (header, message) in [
        (None, "missing API key"),
        (Some("Bearer ".to_string()), "missing API key"),
        (
            Some("Basic dXNlcjpwYXNz".to_string()),
            "malformed authorization header",
        ),
        (
            Some(format!("Bearer cdk_{}", "0".repeat(64))),
            "invalid API key",
        ),
    ] {
        let err = registry(header.clone()).unwrap_err();
        assert!(err.contains(message), "registry, {header:?}: {err}");
        let body = http(header.clone());
        assert!(body.contains(message), "KServe HTTP, {header:?}: {body}");
    }
    let body = http(Some(format!("bearer {key}")));
    assert!(body.contains("nope") && !body.contains("API key"), "{body}");
}

#[test]
fn cli_storage_is_checked_before_upload_and_released_at_once() {
    let dir = TempDir::new("conduit-cli-storage");
    let data = dir.path().join(".conduit");
    let server = Server::start("dev", &data, true);
    let admin = server.key.clone().unwrap();
    let out = ok(conduit(&server, &admin, &["tenant", "create", "acme"]));
    let key = printed_key(&out);
    let ops_path = component_path("softmax-topk");
    let ops = ops_path.to_str().unwrap();
    let size = std::fs::metadata(&ops_path).unwrap().len();
    let d = Digest::of(&std::fs::read(&ops_path).unwrap());
    let usage = || ok(conduit(&server, &key, &["tenant", "usage"]));
    let blobs = || walk(&data.join("blobs/blake3")).len();
    let before = blobs();

    // Names, versions and tags are checked before a byte is sent.
    for (args, message) in [
        (
            &["--name", "Bad_Name", "--version", "1.0.0"][..],
            "invalid character",
        ),
        (
            &["--name", "ops", "--version", "1.0"][..],
            "semantic version",
        ),
        (
            &["--name", "ops", "--version", "1.0.0", "--tag", "1.0.0"][..],
            "looks like a version",
        ),
    ] {
        let mut all = vec!["push", "component", ops];
        all.extend_from_slice(args);
        let err = fails(conduit(&server, &key, &all));
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert_eq!(blobs(), before, "nothing was uploaded");
    assert_eq!(usage_bytes(&usage(), "stored:"), 0);

    // A rejected module is charged nothing.
    let garbage = file(dir.path(), "garbage.wasm", b"\0asm not really a component");
    let err = fails(conduit(
        &server,
        &key,
        &[
            "push",
            "component",
            &garbage,
            "--name",
            "bad",
            "--version",
            "1.0.0",
        ],
    ));
    assert!(err.contains("rejected"), "{err}");
    assert_eq!(usage_bytes(&usage(), "stored:"), 0);

    // A registered one is charged, and so is its compiled artifact counted.
    push(&server, &key, ops, "ops", "1.0.0");
    push(&server, &key, ops, "ops", "1.1.0");
    let out = usage();
    assert_eq!(usage_bytes(&out, "stored:"), size, "counted once:\n{out}");
    assert!(out.contains("modules:    1 (2 versions)"), "{out}");
    let compiled = usage_bytes(&out, "compiled:");
    let artifacts = compiled_artifacts(&data, &d);
    assert!(
        !artifacts.is_empty() && compiled > 0,
        "{out}\n{artifacts:?}"
    );
    assert_eq!(
        compiled,
        artifacts
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum::<u64>()
    );
    // Existing versions are refused before the upload too.
    let other = file(
        dir.path(),
        "other.wasm",
        &with_custom_section(&std::fs::read(&ops_path).unwrap(), "x", b"y"),
    );
    let err = fails(conduit(
        &server,
        &key,
        &[
            "push",
            "component",
            &other,
            "--name",
            "ops",
            "--version",
            "1.0.0",
        ],
    ));
    assert!(err.contains("immutable"), "{err}");

    // Deleting the last version naming the blob stops the charge at once and
    // removes its compiled artifact.
    ok(conduit(&server, &key, &["delete", "ops@1.0.0"]));
    assert_eq!(
        usage_bytes(&usage(), "stored:"),
        size,
        "1.1.0 still names it"
    );
    ok(conduit(&server, &key, &["delete", "ops@1.1.0"]));
    let out = usage();
    assert_eq!(usage_bytes(&out, "stored:"), 0, "{out}");
    assert_eq!(usage_bytes(&out, "compiled:"), 0, "{out}");
    assert!(compiled_artifacts(&data, &d).is_empty());

    // Over the stored limit: refused before the upload.
    let out = ok(conduit(
        &server,
        &admin,
        &["tenant", "create", "tiny", "--max-stored-bytes", "1000"],
    ));
    let tiny = printed_key(&out);
    let before = blobs();
    let err = fails(conduit(
        &server,
        &tiny,
        &[
            "push",
            "component",
            ops,
            "--name",
            "ops",
            "--version",
            "1.0.0",
        ],
    ));
    assert!(err.contains("limit"), "{err}");
    assert_eq!(blobs(), before);
    // Usage of another tenant needs an admin key.
    let out = ok(conduit(&server, &admin, &["tenant", "usage", "tiny"]));
    assert!(out.contains("tenant:     tiny"), "{out}");
    let err = fails(conduit(&server, &tiny, &["tenant", "usage", "acme"]));
    assert!(err.contains("admin"), "{err}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn cli_tenants_keys_list_json_and_pull() {
    let dir = TempDir::new("conduit-cli-tenants");
    let server = Server::start("dev", &dir.path().join(".conduit"), true);
    let admin = server.key.clone().unwrap();
    let out = ok(conduit(&server, &admin, &["tenant", "create", "acme"]));
    let key = printed_key(&out);
    let ops_path = component_path("softmax-topk");
    let ops = ops_path.to_str().unwrap();
    push(&server, &key, ops, "ops", "1.0.0");

    // Tenants: admin only.
    let list = ok(conduit(&server, &admin, &["tenant", "list"]));
    assert!(list.lines().any(|l| l.starts_with("acme ")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("default ")), "{list}");
    let err = fails(conduit(&server, &key, &["tenant", "list"]));
    assert!(err.contains("admin"), "{err}");

    // `list --json`.
    let out = ok(conduit(&server, &key, &["list", "--json"]));
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 1, "{json}");
    assert_eq!(items[0]["name"], "ops");
    assert_eq!(items[0]["tags"], serde_json::json!(["latest"]));

    // `pull` writes the verified bytes; other tenants' modules stay hidden.
    let target = dir.path().join("pulled.wasm");
    let out = ok(conduit(
        &server,
        &key,
        &["pull", "acme/ops@1.0.0", "-o", target.to_str().unwrap()],
    ));
    assert!(out.contains("pulled ops@1.0.0"), "{out}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&ops_path).unwrap()
    );
    let err = fails(conduit(
        &server,
        &admin,
        &[
            "pull",
            "acme/ops",
            "-o",
            dir.path().join("no.wasm").to_str().unwrap(),
        ],
    ));
    assert!(err.contains("not found"), "{err}");
    assert!(!dir.path().join("no.wasm").exists());

    // Rotation: the new key is printed once, the old one fails at once.
    let out = ok(conduit(&server, &key, &["tenant", "rotate-key"]));
    let new = printed_key(&out);
    assert_ne!(new, key);
    let err = fails(conduit(&server, &key, &["list"]));
    assert!(err.contains("invalid API key"), "{err}");
    let list = ok(conduit(&server, &new, &["list"]));
    assert!(row(&list, "ops", "1.0.0").is_some(), "{list}");
    let err = fails(conduit(&server, &new, &["tenant", "rotate-key", "default"]));
    assert!(err.contains("admin"), "{err}");
    // Revocation (admin): no key works until an admin rotates again.
    let out = ok(conduit(&server, &admin, &["tenant", "revoke-key", "acme"]));
    assert!(out.contains("revoked") && !out.contains("cdk_"), "{out}");
    let err = fails(conduit(&server, &new, &["list"]));
    assert!(err.contains("invalid API key"), "{err}");

    // Deleting a tenant that holds modules needs --force.
    let err = fails(conduit(&server, &admin, &["tenant", "delete", "acme"]));
    assert!(
        err.contains("holds 1 module versions") && err.contains("--force"),
        "{err}"
    );
    let err = fails(conduit(&server, &admin, &["tenant", "delete", "default"]));
    assert!(err.contains("cannot delete itself"), "{err}");
    let out = ok(conduit(
        &server,
        &admin,
        &["tenant", "delete", "acme", "--force"],
    ));
    assert!(out.contains("deleted with 1 module versions"), "{out}");
    let list = ok(conduit(&server, &admin, &["tenant", "list"]));
    assert!(!list.lines().any(|l| l.starts_with("acme ")), "{list}");
    // The name is free again.
    ok(conduit(&server, &admin, &["tenant", "create", "acme"]));
}
