//! OCI artifacts (issue #18) against a real OCI registry: Debian's
//! `docker-registry` (the CNCF distribution server, `make oci-registry`)
//! started on loopback, and a real `conduit dev`. `conduit export` writes the
//! CNCF wasm artifact layout (checked raw over HTTP: media types, one layer,
//! digests, sizes, the config `wkg` parses); `conduit push component
//! oci://…` reads it back, and reads an artifact laid out exactly as `wkg
//! oci push` (oci-wasm) writes one; malformed, tampered, missing and
//! oversized artifacts are refused with a clear error and nothing is
//! registered; credentials come from the environment.

use crate::cli_registry::{Server, fails, ok, row, text};
use crate::common::*;
use conduit_registry::Digest;
use sha2::Digest as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the registry may take to listen.
const STARTUP: Duration = Duration::from_secs(30);
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.wasm.config.v0+json";
const LAYER: &str = "application/wasm";
/// `conduit` / `s3cret`, bcrypt cost 4 (the registry checks every request).
const HTPASSWD: &str = "conduit:$2b$04$50YecC5TMdeParU4Qp0/ZOx1x2REgpcx4Hv5zmHzBQS0pbe4Yy13e";
const CREDENTIALS: [(&str, &str); 2] = [
    ("CONDUIT_OCI_USERNAME", "conduit"),
    ("CONDUIT_OCI_PASSWORD", "s3cret"),
];

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// A `docker-registry serve` process on 127.0.0.1 over a temporary
/// directory; killed on drop.
struct OciRegistry {
    child: Child,
    /// `127.0.0.1:<port>`.
    host: String,
    /// Everything it logged (one line per request).
    log: Arc<Mutex<String>>,
    dir: TempDir,
}

impl OciRegistry {
    /// Starts it, with htpasswd basic auth when `auth`.
    fn start(auth: bool) -> Self {
        let bin = find_binary("docker-registry").unwrap_or_else(|| {
            panic!(
                "`docker-registry` (Debian's package, the CNCF distribution server) is not \
                 installed: run `make oci-registry`"
            )
        });
        let dir = TempDir::new("conduit-oci-registry");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: conduit-test\n",
            dir.path().join("data").display()
        );
        if auth {
            std::fs::write(dir.path().join("htpasswd"), format!("{HTPASSWD}\n")).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: conduit-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning docker-registry");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on ") {
                    let addr = line[at + "listening on ".len()..]
                        .split(|c: char| c == '"' || c.is_whitespace())
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let host = match rx.recv_timeout(STARTUP) {
            Ok(host) => host,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "docker-registry did not listen within {STARTUP:?} ({e:?}):\n{}",
                    log.lock().unwrap()
                );
            }
        };
        assert!(host.starts_with("127.0.0.1:"), "{host}");
        Self {
            child,
            host,
            log,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// `oci://<host>/<repo>:<tag>`.
    fn oci(&self, repo_tag: &str) -> String {
        format!("oci://{}/{repo_tag}", self.host)
    }

    /// Where the filesystem driver keeps a blob's bytes.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// How many GETs of `path` it has answered.
    fn gets(&self, path: &str) -> usize {
        let uri = format!("http.request.uri=\"{path}\"");
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|l| {
                l.contains("response completed")
                    && l.contains("http.request.method=GET")
                    && l.contains(&uri)
            })
            .count()
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on `PATH` (or /usr/bin, /usr/sbin: where the package puts it).
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Raw HTTP to the registry (reqwest, which oci-client also uses, driven by
/// a runtime of its own).
struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    basic: Option<(&'static str, &'static str)>,
}

struct Response {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Http {
    fn new(basic: bool) -> Self {
        // reqwest builds a rustls configuration even for plain HTTP.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::new(),
            basic: basic.then_some((CREDENTIALS[0].1, CREDENTIALS[1].1)),
        }
    }

    fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response {
        let mut request = self.client.request(method, url).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((user, password)) = self.basic {
            request = request.basic_auth(user, Some(password));
        }
        self.runtime.block_on(async {
            let response = request.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.expect("HTTP body").to_vec();
            Response {
                status,
                headers,
                body,
            }
        })
    }

    fn get(&self, url: &str, accept: &str) -> Response {
        self.send(reqwest::Method::GET, url, &[("Accept", accept)], Vec::new())
    }

    /// Uploads `bytes` to `repo` (POST, then PUT with the digest); returns
    /// the digest.
    fn upload(&self, registry: &OciRegistry, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let started = self.send(
            reqwest::Method::POST,
            &registry.url(&format!("/v2/{repo}/blobs/uploads/")),
            &[],
            Vec::new(),
        );
        assert_eq!(started.status, 202, "{}", text(&started.body));
        let location = started.header("location");
        let location = if location.starts_with("http") {
            location.to_string()
        } else {
            registry.url(location)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = self.send(
            reqwest::Method::PUT,
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes.to_vec(),
        );
        assert_eq!(done.status, 201, "{}", text(&done.body));
        digest
    }

    /// PUTs `manifest` as `repo:tag`.
    fn put_manifest(&self, registry: &OciRegistry, repo: &str, tag: &str, manifest: &[u8]) {
        let r = self.send(
            reqwest::Method::PUT,
            &registry.url(&format!("/v2/{repo}/manifests/{tag}")),
            &[("Content-Type", MANIFEST)],
            manifest.to_vec(),
        );
        assert_eq!(r.status, 201, "{}", text(&r.body));
    }
}

/// A manifest in the wasm layout, with `config_type` for its config and
/// `layers` as (media type, digest, size).
fn manifest(config_type: &str, config: &[u8], layers: &[(&str, &str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(media_type, digest, size)| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "annotations": { "org.opencontainers.image.title": "ops.wasm" },
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": { "mediaType": config_type, "digest": sha256(config), "size": config.len() },
        "layers": layers,
        "annotations": { "org.opencontainers.image.version": "0.1.0" },
    }))
    .unwrap()
}

/// A config exactly as oci-wasm's `WasmConfig` (what `wkg oci push` uses)
/// serializes one: every field, `null`s included.
fn wkg_config(layer_digest: &str) -> Vec<u8> {
    format!(
        r#"{{"created":"2025-01-02T03:04:05.678901Z","author":null,"architecture":"wasm","os":"wasip2","layerDigests":["{layer_digest}"],"component":{{"exports":["conduit:compute/processor@0.1.0"],"imports":["conduit:compute/types@0.1.0"],"target":null}}}}"#
    )
    .into_bytes()
}

/// A `conduit` client run against `server` with `env` (OCI credentials).
fn conduit(server: &Server, key: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .env("CONDUIT_REGISTRY", &server.url)
        .env("CONDUIT_API_KEY", key)
        .env_remove("CONDUIT_LOG")
        .env_remove("RUST_LOG")
        .env_remove(CREDENTIALS[0].0)
        .env_remove(CREDENTIALS[1].0)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running conduit")
}

/// `conduit push component SOURCE --name NAME --version VERSION`.
fn push(
    server: &Server,
    key: &str,
    source: &str,
    name: &str,
    version: &str,
    env: &[(&str, &str)],
) -> Output {
    conduit(
        server,
        key,
        &[
            "push",
            "component",
            source,
            "--name",
            name,
            "--version",
            version,
        ],
        env,
    )
}

/// [`fails`], printing the error (`--nocapture` shows every refusal).
#[track_caller]
fn refused(out: Output) -> String {
    let err = fails(out);
    eprintln!("refused as expected: {err}");
    err
}

/// The `label:` line of `export`'s output, its value.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
        .trim()
}

#[test]
fn components_travel_through_a_real_oci_registry() {
    let registry = OciRegistry::start(false);
    let http = Http::new(false);
    let dir = TempDir::new("conduit-oci");
    let server = Server::start("dev", &dir.path().join(".conduit"), true);
    let key = server.key.clone().unwrap();
    let wasm_path = component_path("softmax-topk");
    let wasm = std::fs::read(&wasm_path).unwrap();
    let blake3 = Digest::of(&wasm);
    ok(push(
        &server,
        &key,
        wasm_path.to_str().unwrap(),
        "ops",
        "1.0.0",
        &[],
    ));

    // Export: no tag in the location, so the version is the tag.
    let out = ok(conduit(
        &server,
        &key,
        &["export", "ops@1.0.0", &registry.oci("conduit/ops")],
        &[],
    ));
    let target = registry.oci("conduit/ops:1.0.0");
    assert!(
        out.contains(&format!("exported ops@1.0.0 {blake3} to {target}")),
        "{out}"
    );
    let manifest_digest = field(&out, "manifest:").to_string();
    let layer_digest = field(&out, "layer:").to_string();
    assert_eq!(layer_digest, sha256(&wasm));

    // The manifest, raw: OCI image manifest, wasm config, one wasm layer.
    let m = http.get(&registry.url("/v2/conduit/ops/manifests/1.0.0"), MANIFEST);
    assert_eq!(m.status, 200, "{}", text(&m.body));
    assert_eq!(m.header("content-type"), MANIFEST);
    assert_eq!(m.header("docker-content-digest"), manifest_digest);
    assert_eq!(sha256(&m.body), manifest_digest);
    let json = m.json();
    assert_eq!(json["schemaVersion"], 2, "{json}");
    assert_eq!(json["mediaType"], MANIFEST, "{json}");
    assert_eq!(json["config"]["mediaType"], CONFIG, "{json}");
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{json}");
    assert_eq!(layers[0]["mediaType"], LAYER, "{json}");
    assert_eq!(layers[0]["digest"], layer_digest.as_str(), "{json}");
    assert_eq!(layers[0]["size"], wasm.len(), "{json}");
    assert_eq!(
        layers[0]["annotations"]["org.opencontainers.image.title"],
        "ops.wasm"
    );
    assert_eq!(
        json["annotations"]["org.opencontainers.image.version"],
        "1.0.0"
    );

    // The layer is the component, byte for byte.
    let layer = http.get(
        &registry.url(&format!("/v2/conduit/ops/blobs/{layer_digest}")),
        "*/*",
    );
    assert_eq!(layer.status, 200);
    assert_eq!(layer.body, wasm);

    // The config: its digest and size as the manifest says, and every field
    // oci-wasm's `WasmConfig` (what `wkg` parses) requires, in its form.
    let config_digest = json["config"]["digest"].as_str().unwrap();
    let c = http.get(
        &registry.url(&format!("/v2/conduit/ops/blobs/{config_digest}")),
        "*/*",
    );
    assert_eq!(c.status, 200);
    assert_eq!(sha256(&c.body), config_digest);
    assert_eq!(json["config"]["size"], c.body.len());
    let config = c.json();
    let inspect = ok(conduit(
        &server,
        &key,
        &["inspect", "ops@1.0.0", "--json"],
        &[],
    ));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(config["created"], inspect["created_at"], "{config}");
    let created = config["created"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "RFC 3339: {created}"
    );
    assert_eq!(config["architecture"], "wasm", "{config}");
    assert_eq!(config["os"], "wasip2", "{config}");
    assert_eq!(config["layerDigests"], serde_json::json!([layer_digest]));
    let exports = config["component"]["exports"].as_array().unwrap();
    assert!(
        exports.contains(&serde_json::json!("conduit:compute/processor@0.2.0")),
        "{config}"
    );
    let imports = config["component"]["imports"].as_array().unwrap();
    assert!(
        imports
            .iter()
            .all(|i| i.as_str().is_some_and(|s| s.contains(':'))),
        "{config}"
    );

    // The same version exported again is the same artifact.
    let again = ok(conduit(
        &server,
        &key,
        &["export", "ops@1.0.0", &target],
        &[],
    ));
    assert_eq!(field(&again, "manifest:"), manifest_digest);

    // Back in under another name: the same blake3 digest, validated as usual.
    let out = push(&server, &key, &target, "ops-oci", "2.0.0", &[]);
    let stderr = text(&out.stderr);
    let stdout = ok(out);
    assert!(
        stdout.contains(&format!("pushed ops-oci@2.0.0 {blake3}")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("pulled {target}")) && stderr.contains(&layer_digest),
        "{stderr}"
    );
    let inspect = ok(conduit(
        &server,
        &key,
        &["inspect", "ops-oci@2.0.0", "--json"],
        &[],
    ));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["digest"], blake3.to_string());
    assert_eq!(inspect["kind"], "component");

    // An artifact laid out exactly as `wkg oci push` writes one (oci-wasm's
    // config with its nulls, the layer titled, the version annotated).
    let wkg_wasm = with_custom_section(&wasm, "conduit-oci-test", b"wkg");
    let wkg_layer = http.upload(&registry, "wkg/ops", &wkg_wasm);
    let config = wkg_config(&wkg_layer);
    http.upload(&registry, "wkg/ops", &config);
    let good = manifest(
        CONFIG,
        &config,
        &[(LAYER, wkg_layer.as_str(), wkg_wasm.len())],
    );
    http.put_manifest(&registry, "wkg/ops", "0.1.0", &good);
    let stdout = ok(push(
        &server,
        &key,
        &registry.oci("wkg/ops:0.1.0"),
        "wkg-ops",
        "0.1.0",
        &[],
    ));
    assert!(
        stdout.contains(&format!("pushed wkg-ops@0.1.0 {}", Digest::of(&wkg_wasm))),
        "{stdout}"
    );

    // Malformed artifacts, PUT raw beside the good one: refused, with the
    // reason, before the layer is downloaded.
    let refused_tag = |tag: &str, manifest: &[u8], expected: &[&str]| {
        http.put_manifest(&registry, "wkg/ops", tag, manifest);
        let before = registry.gets(&format!("/v2/wkg/ops/blobs/{wkg_layer}"));
        let err = refused(push(
            &server,
            &key,
            &registry.oci(&format!("wkg/ops:{tag}")),
            "bad",
            "1.0.0",
            &[],
        ));
        for needle in expected {
            assert!(err.contains(needle), "`{needle}` not in: {err}");
        }
        assert_eq!(
            registry.gets(&format!("/v2/wkg/ops/blobs/{wkg_layer}")),
            before,
            "the layer was downloaded for `{tag}`: {err}"
        );
        err
    };
    refused_tag(
        "image-config",
        &manifest(
            "application/vnd.oci.image.config.v1+json",
            &config,
            &[(LAYER, wkg_layer.as_str(), wkg_wasm.len())],
        ),
        &[
            "config media type `application/vnd.oci.image.config.v1+json`",
            CONFIG,
            "not a wasm component artifact",
        ],
    );
    refused_tag(
        "two-layers",
        &manifest(
            CONFIG,
            &config,
            &[
                (LAYER, wkg_layer.as_str(), wkg_wasm.len()),
                (LAYER, wkg_layer.as_str(), wkg_wasm.len()),
            ],
        ),
        &["2 layers", "exactly one"],
    );
    refused_tag(
        "old-layer-type",
        &manifest(
            CONFIG,
            &config,
            &[(
                "application/vnd.wasm.content.layer.v1+wasm",
                wkg_layer.as_str(),
                wkg_wasm.len(),
            )],
        ),
        &["layer media type `application/vnd.wasm.content.layer.v1+wasm`"],
    );
    // The registry keeps whatever size a manifest declares: 300 MiB is over
    // the 256 MiB cap.
    refused_tag(
        "huge",
        &manifest(CONFIG, &config, &[(LAYER, wkg_layer.as_str(), 300 << 20)]),
        &[
            "314572800 bytes",
            "over the limit of 268435456 bytes",
            "nothing downloaded",
        ],
    );
    // A core module's config (`wasip1`): not a component.
    let module_config = text(&config).replace("wasip2", "wasip1").into_bytes();
    http.upload(&registry, "wkg/ops", &module_config);
    refused_tag(
        "module",
        &manifest(
            CONFIG,
            &module_config,
            &[(LAYER, wkg_layer.as_str(), wkg_wasm.len())],
        ),
        &["config os `wasip1`", "not a component"],
    );
    // A config that names another layer.
    let other_config = wkg_config(&sha256(b"another layer"));
    http.upload(&registry, "wkg/ops", &other_config);
    refused_tag(
        "other-config",
        &manifest(
            CONFIG,
            &other_config,
            &[(LAYER, wkg_layer.as_str(), wkg_wasm.len())],
        ),
        &["layerDigests", "do not name the layer"],
    );

    // Over the tenant's upload limit: the registry refuses the push before
    // the layer is downloaded.
    let small = ok(conduit(
        &server,
        &key,
        &["tenant", "create", "small", "--max-upload-bytes", "1000"],
        &[],
    ));
    let small_key = crate::cli_registry::printed_key(&small);
    let before = registry.gets(&format!("/v2/wkg/ops/blobs/{wkg_layer}"));
    let err = refused(push(
        &server,
        &small_key,
        &registry.oci("wkg/ops:0.1.0"),
        "ops",
        "1.0.0",
        &[],
    ));
    assert!(
        err.contains(&format!(
            "refused before downloading the {}-byte layer",
            wkg_wasm.len()
        )) && err.contains("limit of 1000 bytes per upload"),
        "{err}"
    );
    assert_eq!(
        registry.gets(&format!("/v2/wkg/ops/blobs/{wkg_layer}")),
        before
    );

    // A tampered layer: the registry's stored bytes changed under the same
    // digest (same length): the sha256 check refuses them.
    let tampered_wasm = with_custom_section(&wasm, "conduit-oci-test", b"tampered");
    let tampered_layer = http.upload(&registry, "tampered/ops", &tampered_wasm);
    let tampered_config = wkg_config(&tampered_layer);
    http.upload(&registry, "tampered/ops", &tampered_config);
    http.put_manifest(
        &registry,
        "tampered/ops",
        "1.0.0",
        &manifest(
            CONFIG,
            &tampered_config,
            &[(LAYER, tampered_layer.as_str(), tampered_wasm.len())],
        ),
    );
    let file = registry.blob_file(&tampered_layer);
    let mut stored = std::fs::read(&file).unwrap();
    assert_eq!(stored, tampered_wasm);
    *stored.last_mut().unwrap() ^= 0xff;
    std::fs::write(&file, &stored).unwrap();
    let err = refused(push(
        &server,
        &key,
        &registry.oci("tampered/ops:1.0.0"),
        "tampered",
        "1.0.0",
        &[],
    ));
    assert!(
        err.contains("sha256 mismatch")
            && err.contains(&format!("the manifest names {tampered_layer}"))
            && err.contains(&sha256(&stored)),
        "{err}"
    );

    // A missing layer: the manifest names a blob the registry deleted.
    let missing_wasm = with_custom_section(&wasm, "conduit-oci-test", b"missing");
    let missing_layer = http.upload(&registry, "missing/ops", &missing_wasm);
    let missing_config = wkg_config(&missing_layer);
    http.upload(&registry, "missing/ops", &missing_config);
    http.put_manifest(
        &registry,
        "missing/ops",
        "1.0.0",
        &manifest(
            CONFIG,
            &missing_config,
            &[(LAYER, missing_layer.as_str(), missing_wasm.len())],
        ),
    );
    let deleted = http.send(
        reqwest::Method::DELETE,
        &registry.url(&format!("/v2/missing/ops/blobs/{missing_layer}")),
        &[],
        Vec::new(),
    );
    assert_eq!(deleted.status, 202, "{}", text(&deleted.body));
    let err = refused(push(
        &server,
        &key,
        &registry.oci("missing/ops:1.0.0"),
        "missing",
        "1.0.0",
        &[],
    ));
    assert!(
        err.contains(&format!(
            "downloading the layer of {}",
            registry.oci("missing/ops:1.0.0")
        )) && err.contains("404"),
        "{err}"
    );

    // An unknown tag, a model from an OCI reference, a pipeline exported,
    // a location without a registry.
    let err = refused(push(
        &server,
        &key,
        &registry.oci("conduit/ops:9.9.9"),
        "nope",
        "1.0.0",
        &[],
    ));
    assert!(
        err.contains(&format!(
            "fetching the manifest of {}",
            registry.oci("conduit/ops:9.9.9")
        )),
        "{err}"
    );
    let err = refused(conduit(
        &server,
        &key,
        &[
            "push",
            "model",
            &target,
            "--name",
            "m",
            "--version",
            "1.0.0",
        ],
        &[],
    ));
    assert!(
        err.contains("only components come from OCI registries"),
        "{err}"
    );
    let pipeline = "[[inputs]]\nname = \"logits\"\ndatatype = \"FP32\"\nshape = [-1, -1]\n\n\
                    [[outputs]]\nname = \"probabilities\"\ndatatype = \"FP32\"\nshape = [-1, -1]\n\
                    from = \"s.probabilities\"\n\n[[steps]]\nname = \"s\"\nuses = \"ops@1.0.0\"\n\
                    inputs = { logits = \"logits\" }\n";
    let pipeline_path = dir.path().join("p.toml");
    std::fs::write(&pipeline_path, pipeline).unwrap();
    ok(conduit(
        &server,
        &key,
        &[
            "push",
            "pipeline",
            pipeline_path.to_str().unwrap(),
            "--name",
            "p",
            "--version",
            "1.0.0",
        ],
        &[],
    ));
    let err = refused(conduit(
        &server,
        &key,
        &["export", "p@1.0.0", &registry.oci("conduit/p:1.0.0")],
        &[],
    ));
    assert!(
        err.contains("p@1.0.0 is a pipeline: only components are exported"),
        "{err}"
    );
    let out = conduit(&server, &key, &["export", "ops", "oci://ops:1.0.0"], &[]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    assert!(text(&out.stderr).contains("names no registry"), "{out:?}");

    // Nothing refused was registered.
    let list = ok(conduit(&server, &key, &["list"], &[]));
    for name in ["bad", "tampered", "missing", "nope", "m"] {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{name} registered:\n{list}"
        );
    }
    for (name, version) in [("ops", "1.0.0"), ("ops-oci", "2.0.0"), ("wkg-ops", "0.1.0")] {
        assert!(row(&list, name, version).is_some(), "{list}");
    }
}

#[test]
fn oci_credentials_come_from_the_environment() {
    let registry = OciRegistry::start(true);
    let dir = TempDir::new("conduit-oci-auth");
    let server = Server::start("dev", &dir.path().join(".conduit"), true);
    let key = server.key.clone().unwrap();
    let wasm_path = component_path("softmax-topk");
    let wasm = std::fs::read(&wasm_path).unwrap();
    ok(push(
        &server,
        &key,
        wasm_path.to_str().unwrap(),
        "ops",
        "1.0.0",
        &[],
    ));
    let target = registry.oci("private/ops:1.0.0");

    // Anonymous: the registry says no, and the error says where.
    let err = refused(conduit(&server, &key, &["export", "ops", &target], &[]));
    assert!(
        err.contains(&format!("pushing to {target}"))
            && err.contains("401")
            && err.contains("the registry wants credentials: CONDUIT_OCI_USERNAME"),
        "{err}"
    );
    let err = refused(conduit(
        &server,
        &key,
        &["export", "ops", &target],
        &[CREDENTIALS[0]],
    ));
    assert!(
        err.contains("set both CONDUIT_OCI_USERNAME and CONDUIT_OCI_PASSWORD"),
        "{err}"
    );
    let wrong = [CREDENTIALS[0], ("CONDUIT_OCI_PASSWORD", "wrong")];
    let err = refused(conduit(&server, &key, &["export", "ops", &target], &wrong));
    assert!(
        err.contains(&format!("pushing to {target}"))
            && err.contains("the registry wants credentials"),
        "{err}"
    );

    // With the credentials: out and back in.
    ok(conduit(
        &server,
        &key,
        &["export", "ops", &target],
        &CREDENTIALS,
    ));
    let http = Http::new(true);
    let m = http.get(&registry.url("/v2/private/ops/manifests/1.0.0"), MANIFEST);
    assert_eq!(m.status, 200, "{}", text(&m.body));
    assert_eq!(m.json()["config"]["mediaType"], CONFIG);
    let err = refused(push(&server, &key, &target, "ops-back", "1.0.0", &[]));
    assert!(
        err.contains(&format!("fetching the manifest of {target}"))
            && err.contains("the registry wants credentials"),
        "{err}"
    );
    let out = ok(push(
        &server,
        &key,
        &target,
        "ops-back",
        "1.0.0",
        &CREDENTIALS,
    ));
    assert!(
        out.contains(&format!("pushed ops-back@1.0.0 {}", Digest::of(&wasm))),
        "{out}"
    );
}
