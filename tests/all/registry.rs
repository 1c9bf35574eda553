//! The registry end to end: a real gRPC server on loopback with the real
//! runtime validating pushes, driven through the real client.

use crate::common::{TempDir, component_bytes, with_custom_section};
use conduit_registry::Code;
use conduit_registry::{
    Digest, ExecutorHints, Kind, ListQuery, PushProgress, Registry, RegistryClient, RegistryConfig,
    Tenant, TenantLimits,
};
use conduit_runner::{Catalog, RuntimeValidator};
use conduit_runtime::{CallContext, EngineConfig, Param, ParamValue, Runtime, RuntimeConfig};
use conduit_types::Tensor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A registry served on `127.0.0.1:0` for one test.
pub struct TestRegistry {
    pub url: String,
    pub admin_key: String,
    pub registry: Registry,
    pub runtime: Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
}

impl TestRegistry {
    pub async fn start() -> Self {
        Self::start_with(TenantLimits::default()).await
    }

    pub async fn start_with(limits: TenantLimits) -> Self {
        let dir = TempDir::new("conduit-registry");
        let runtime = Runtime::new(RuntimeConfig {
            engine: EngineConfig {
                max_instances: 64,
                ..EngineConfig::default()
            },
            cache_dir: Some(dir.path().join("cache")),
        })
        .unwrap();
        let config = RegistryConfig {
            root: dir.path().join("registry"),
            default_limits: limits,
        };
        let (registry, bootstrap) = Registry::open(
            config,
            Arc::new(RuntimeValidator::new(
                runtime.clone(),
                conduit_executor::Backends::detect(None),
            )),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(conduit_registry::serve(registry.clone(), listener, async {
            let _ = rx.await;
        }));
        Self {
            url,
            admin_key: bootstrap
                .expect("fresh registry bootstraps an admin")
                .api_key,
            registry,
            runtime,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn client(&self, key: &str) -> RegistryClient {
        RegistryClient::connect(&self.url, key).await.unwrap()
    }

    /// A new tenant: its stored record and a client with its key.
    pub async fn tenant(
        &self,
        name: &str,
        limits: Option<TenantLimits>,
    ) -> (Tenant, RegistryClient) {
        let admin = self.client(&self.admin_key).await;
        let limits = limits.unwrap_or_default();
        let key = admin
            .create_tenant(name, limits.max_upload_bytes, limits.max_stored_bytes)
            .await
            .unwrap();
        (
            self.registry.authenticate(&key).unwrap(),
            self.client(&key).await,
        )
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn push(
    client: &RegistryClient,
    name: &str,
    version: &str,
    bytes: &[u8],
    tags: &[&str],
) -> conduit_registry::Manifest {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    client
        .push(
            Kind::Component,
            name,
            version,
            bytes,
            &tags,
            &PushProgress::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("pushing {name}@{version}: {e}"))
        .0
}

fn code(e: conduit_registry::ClientError) -> (Code, String) {
    (e.code().unwrap_or(Code::Unknown), e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_resolve_list_tag_delete_and_collect() {
    let reg = TestRegistry::start().await;
    let c = reg.client(&reg.admin_key).await;
    let tok = component_bytes("bert-tokenizer");
    let m = push(&c, "tok", "1.0.0", &tok, &["prod"]).await;
    assert_eq!(m.digest, Digest::of(&tok));
    assert_eq!(m.size, tok.len() as u64);
    assert_eq!(m.kind, Kind::Component);
    assert_eq!(m.world, "op");
    assert_eq!(m.signature.inputs[0].name, "text");
    assert_eq!(m.signature.inputs[0].datatype, "BYTES");
    assert!(
        m.created_by.starts_with("default (key "),
        "{}",
        m.created_by
    );
    let mut tags = m.tags.clone();
    tags.sort();
    assert_eq!(tags, ["latest", "prod"]);

    // Every reference form resolves to the same manifest.
    for r in [
        "tok",
        "tok@1.0.0",
        "tok:prod",
        "default/tok:latest",
        &m.digest.to_string(),
    ] {
        assert_eq!(c.resolve(r).await.unwrap().digest, m.digest, "{r}");
    }
    // Same content, same version: deduplicated, nothing new.
    let (digest, dedup) = c.upload(&tok, &PushProgress::default()).await.unwrap();
    assert!(dedup);
    let (again, created) = c
        .put_manifest(
            Kind::Component,
            "tok",
            "1.0.0",
            &digest,
            &ExecutorHints::default(),
            &[],
            &[],
        )
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.created_at, m.created_at);

    // More versions; `latest` follows the highest release.
    let post = component_bytes("softmax-topk");
    push(
        &c,
        "tok",
        "1.2.0",
        &with_custom_section(&tok, "v", b"1.2.0"),
        &[],
    )
    .await;
    push(
        &c,
        "tok",
        "1.1.0",
        &with_custom_section(&tok, "v", b"1.1.0"),
        &[],
    )
    .await;
    push(
        &c,
        "tok",
        "2.0.0-rc.1",
        &with_custom_section(&tok, "v", b"rc"),
        &[],
    )
    .await;
    push(&c, "post", "0.1.0", &post, &[]).await;
    assert_eq!(c.resolve("tok").await.unwrap().version, "1.2.0");

    // Pagination visits each version exactly once.
    let mut seen = Vec::new();
    let mut query = ListQuery {
        page_size: 2,
        ..ListQuery::default()
    };
    loop {
        let (page, next) = c.list(&query).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|m| m.reference()));
        if next.is_empty() {
            break;
        }
        query.page_token = next;
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "post@0.1.0",
            "tok@1.0.0",
            "tok@1.1.0",
            "tok@1.2.0",
            "tok@2.0.0-rc.1"
        ]
    );
    let (only, _) = c
        .list(&ListQuery {
            name_prefix: "po".into(),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    let (models, _) = c
        .list(&ListQuery {
            kind: Some(Kind::Model),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(models.is_empty());

    // Tags move atomically and report where they were.
    let (moved, previous) = c.tag("tok@1.1.0", "prod").await.unwrap();
    assert_eq!(
        (moved.version.as_str(), previous.as_deref()),
        ("1.1.0", Some("1.0.0"))
    );
    assert_eq!(c.resolve("tok:prod").await.unwrap().version, "1.1.0");

    // Deleting a tagged version is refused, naming the tag.
    let (code_, msg) = code(c.delete("tok@1.1.0").await.unwrap_err());
    assert_eq!(code_, Code::FailedPrecondition);
    assert!(msg.contains("tag `prod`"), "{msg}");
    let (code_, msg) = code(c.delete("tok:prod").await.unwrap_err());
    assert_eq!(code_, Code::InvalidArgument, "{msg}");
    assert_eq!(c.untag("tok", "prod").await.unwrap(), "1.1.0");
    c.delete("tok@1.1.0").await.unwrap();
    assert_eq!(
        code(c.resolve("tok@1.1.0").await.unwrap_err()).0,
        Code::NotFound
    );
    assert_eq!(
        code(c.resolve("tok:prod").await.unwrap_err()).0,
        Code::NotFound
    );

    // Garbage collection keeps referenced blobs and fresh uploads, and removes
    // the deleted version's blob once the grace period is over.
    let orphan = c
        .upload(b"never registered", &PushProgress::default())
        .await
        .unwrap()
        .0;
    let report = c.collect_garbage(Some(3600)).await.unwrap();
    assert_eq!(report.blobs_removed, 0);
    let report = c.collect_garbage(Some(0)).await.unwrap();
    assert_eq!(report.blobs_removed, 2, "{report:?}"); // tok@1.1.0's blob and the orphan
    assert_eq!(
        code(c.download(&orphan).await.unwrap_err()).0,
        Code::NotFound
    );
    for r in ["tok@1.0.0", "tok@1.2.0", "tok@2.0.0-rc.1", "post@0.1.0"] {
        let m = c.resolve(r).await.unwrap();
        assert_eq!(
            Digest::of(&c.download(&m.digest).await.unwrap()),
            m.digest,
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let reg = TestRegistry::start().await;
    let (_, a) = reg.tenant("acme", None).await;
    let (b_tenant, b) = reg.tenant("globex", None).await;
    let tok = component_bytes("bert-tokenizer");
    let m = push(&a, "tok", "1.0.0", &tok, &["prod"]).await;
    assert_eq!(m.tenant, "acme");

    let digest = m.digest.to_string();
    for r in [
        "tok",
        "tok@1.0.0",
        "tok:prod",
        "acme/tok",
        "acme/tok@1.0.0",
        digest.as_str(),
    ] {
        let (c, msg) = code(b.resolve(r).await.unwrap_err());
        assert_eq!(c, Code::NotFound, "{r}: {msg}");
    }
    assert!(b.list(&ListQuery::default()).await.unwrap().0.is_empty());
    assert_eq!(
        code(b.tag("acme/tok@1.0.0", "mine").await.unwrap_err()).0,
        Code::NotFound
    );
    assert_eq!(
        code(b.tag("tok@1.0.0", "mine").await.unwrap_err()).0,
        Code::NotFound
    );
    assert_eq!(
        code(b.delete("tok@1.0.0").await.unwrap_err()).0,
        Code::NotFound
    );
    assert_eq!(code(b.delete(&digest).await.unwrap_err()).0, Code::NotFound);
    assert_eq!(
        code(b.untag("tok", "prod").await.unwrap_err()).0,
        Code::NotFound
    );
    assert_eq!(
        code(b.download(&m.digest).await.unwrap_err()).0,
        Code::NotFound
    );
    // Claiming another tenant's blob by digest does not work either.
    let err = b
        .put_manifest(
            Kind::Component,
            "stolen",
            "1.0.0",
            &m.digest,
            &ExecutorHints::default(),
            &[],
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(err).0, Code::NotFound);
    // Nor does running it.
    let catalog = Catalog::new(reg.runtime.clone(), Arc::new(reg.registry.clone()));
    let err = catalog.component(&b_tenant, "acme/tok").await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // Admin operations need an admin key.
    assert_eq!(
        code(b.create_tenant("evil", 0, 0).await.unwrap_err()).0,
        Code::PermissionDenied
    );
    assert_eq!(
        code(b.collect_garbage(Some(0)).await.unwrap_err()).0,
        Code::PermissionDenied
    );
    // The same bytes pushed by B are B's own module, deduplicated in storage.
    let mine = push(&b, "tok", "1.0.0", &tok, &[]).await;
    assert_eq!(mine.digest, m.digest);
    assert_eq!(mine.tenant, "globex");
    assert_eq!(a.resolve("tok").await.unwrap().tenant, "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_refused_while_another_module_references_it() {
    let reg = TestRegistry::start().await;
    let c = reg.client(&reg.admin_key).await;
    let post = component_bytes("softmax-topk");
    push(&c, "post", "1.0.0", &post, &[]).await;
    let user = with_custom_section(&post, "user", b"1");
    let (digest, _) = c.upload(&user, &PushProgress::default()).await.unwrap();
    let refs = ["post".to_string()]; // resolved and pinned at registration
    let (m, _) = c
        .put_manifest(
            Kind::Component,
            "user",
            "1.0.0",
            &digest,
            &ExecutorHints::default(),
            &[],
            &refs,
        )
        .await
        .unwrap();
    assert_eq!(m.references, ["post@1.0.0"]);
    // `latest` does not protect a version; the referrer does.
    let (code_, msg) = code(c.delete("post@1.0.0").await.unwrap_err());
    assert_eq!(code_, Code::FailedPrecondition);
    assert!(msg.contains("component user@1.0.0"), "{msg}");
    // A reference that does not resolve is refused at registration.
    let err = c
        .put_manifest(
            Kind::Component,
            "user",
            "1.0.1",
            &digest,
            &ExecutorHints::default(),
            &[],
            &["nope@1.0.0".into()],
        )
        .await
        .unwrap_err();
    assert_eq!(code(err).0, Code::NotFound);
    c.delete("user@1.0.0").await.unwrap();
    c.delete("post@1.0.0").await.unwrap();
}

fn route_params() -> Vec<Param> {
    vec![Param {
        name: "op".into(),
        value: ParamValue::String("route".into()),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_switch_under_load_fails_no_call() {
    let reg = TestRegistry::start().await;
    let (tenant, c) = reg.tenant("acme", None).await;
    let ops = component_bytes("tensor-ops");
    let v1 = push(&c, "probe", "1.0.0", &ops, &["prod"]).await.digest;
    let v2 = push(
        &c,
        "probe",
        "2.0.0",
        &with_custom_section(&ops, "v", b"2"),
        &[],
    )
    .await
    .digest;
    assert_ne!(v1, v2);

    let catalog = Catalog::new(reg.runtime.clone(), Arc::new(reg.registry.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..6 {
        let (catalog, tenant, stop, done) =
            (catalog.clone(), tenant.clone(), stop.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut i = 0.0f32;
            while !stop.load(Ordering::Relaxed) {
                i += 1.0;
                let begun = started.elapsed();
                let component = catalog
                    .component(&tenant, "probe:prod")
                    .await
                    .expect("resolving probe:prod");
                let x = Tensor::from_f32(vec![2], &[w as f32, i]).unwrap();
                let out = catalog
                    .runtime()
                    .process(
                        &component,
                        vec![("x".into(), x)],
                        &route_params(),
                        &CallContext::new("acme"),
                    )
                    .await
                    .expect("call across the tag switch");
                assert_eq!(out[0].1.to_f32().unwrap(), [w as f32, i]);
                calls.push((begun, component.digest()));
                done.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
            calls
        }));
    }
    // Counted, not timed: a slow machine only makes each phase take longer.
    let at_least = |n: usize| {
        let done = done.clone();
        async move {
            let give_up = Instant::now() + Duration::from_secs(60);
            while done.load(Ordering::Relaxed) < n && Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    at_least(50).await;
    c.tag("probe@2.0.0", "prod").await.unwrap();
    let switched = started.elapsed();
    let then = done.load(Ordering::Relaxed);
    at_least(then + 50).await;
    stop.store(true, Ordering::Relaxed);
    let mut calls = Vec::new();
    for w in workers {
        calls.extend(w.await.expect("worker: no call may fail"));
    }
    let before = calls.iter().filter(|(_, d)| *d == v1).count();
    let after = calls.iter().filter(|(_, d)| *d == v2).count();
    assert!(
        before > 10 && after > 10,
        "v1 calls {before}, v2 calls {after}"
    );
    // Every call that began after the tag moved ran the new version.
    for (begun, digest) in &calls {
        if *begun > switched {
            assert_eq!(
                *digest, v2,
                "call at {begun:?} (switch at {switched:?}) ran the old version"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_component_is_callable_at_once_and_compiled_once() {
    let reg = TestRegistry::start().await;
    let (tenant, c) = reg.tenant("acme", None).await;
    let catalog = Catalog::new(reg.runtime.clone(), Arc::new(reg.registry.clone()));
    let post = component_bytes("softmax-topk");
    let m = push(&c, "post", "1.0.0", &post, &[]).await;
    // Validation loaded it: the runner's first call needs no compilation.
    assert!(reg.runtime.get(&m.digest).is_some());
    let component = catalog.component(&tenant, "post@1.0.0").await.unwrap();
    let logits = Tensor::from_f32(vec![1, 3], &[1.0, 3.0, 2.0]).unwrap();
    let k = Param {
        name: "k".into(),
        value: ParamValue::Int64(1),
    };
    let out = reg
        .runtime
        .process(
            &component,
            vec![("logits".into(), logits.clone())],
            std::slice::from_ref(&k),
            &CallContext::new("acme"),
        )
        .await
        .unwrap();
    let indices = &out.iter().find(|(n, _)| n == "indices").unwrap().1;
    assert_eq!(indices.to_i64().unwrap(), [1]);

    // A second runner with an empty memory but the same disk cache loads
    // the compiled form instead of compiling again.
    let cold = Runtime::new(RuntimeConfig {
        engine: EngineConfig::default(),
        cache_dir: Some(reg._dir.path().join("cache")),
    })
    .unwrap();
    let cache_entries = std::fs::read_dir(reg._dir.path().join("cache"))
        .unwrap()
        .count();
    let other = Catalog::new(cold, Arc::new(reg.registry.clone()));
    other.component(&tenant, "post").await.unwrap();
    assert_eq!(
        std::fs::read_dir(reg._dir.path().join("cache"))
            .unwrap()
            .count(),
        cache_entries
    );
}
