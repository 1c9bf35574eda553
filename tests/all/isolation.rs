//! Tenant isolation on the host: one case per way a guest or a tenant could
//! make the host hold or do too much (docs/isolation.md), each asserting its
//! clear error kind and that a victim is still served correctly afterwards.
//! Timing margins are wide and waits poll: CI machines are slow and shared.

use crate::common::*;
use crate::serving::{Plane, expect_code, infer, outputs, push, raw_request};
use conduit_proto::inference::{self as pb, infer_parameter::ParameterChoice};
use conduit_registry::{Kind, PushProgress};
use conduit_runner::ServingConfig;
use conduit_runtime::{CallContext, EngineConfig, Runtime, SandboxLimits};
use conduit_types::Tensor;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tonic::Code;

fn x() -> Vec<(String, Tensor)> {
    vec![("x".into(), Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap())]
}

fn limits(deadline_ms: u64) -> SandboxLimits {
    SandboxLimits {
        memory_bytes: 64 << 20,
        deadline: Duration::from_millis(deadline_ms),
        ..SandboxLimits::default()
    }
}

fn call_for(tenant: &str, limits: SandboxLimits) -> CallContext {
    CallContext::new(tenant).with_limits(limits)
}

/// Polls `ok` every 10 ms for up to `within`.
async fn eventually(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn victim_is_served(rt: &Runtime, tenant: &str) {
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let out = rt
        .process(&c, x(), &[], &call_for(tenant, limits(5_000)))
        .await
        .unwrap_or_else(|e| panic!("the victim `{tenant}` was not served: {e}"));
    assert_eq!(output(&out, "y").to_f32().unwrap(), vec![1.0, 2.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_guest_stops_at_its_deadline_like_a_looping_one() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    for attack in ["sleep", "loop"] {
        let started = Instant::now();
        let err = rt
            .process(
                &c,
                x(),
                &[str_param("attack", attack)],
                &ctx(limits(300), None),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "timeout", "{attack}: {err:?}");
        // The guest asked for 30 s; the deadline is 300 ms. Wide margin for CI.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{attack} ran {:?}",
            started.elapsed()
        );
    }
    victim_is_served(rt, "test").await;
}

#[tokio::test]
async fn tensors_kept_across_calls_never_accumulate() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    for _ in 0..5 {
        let out = rt
            .process(
                &c,
                x(),
                &[str_param("attack", "keep")],
                &ctx(limits(5_000), None),
            )
            .await
            .unwrap();
        // An instance that kept a tensor past its call is never reused: each
        // call sees only its own.
        assert_eq!(output(&out, "y").to_f32().unwrap(), vec![1.0]);
    }
}

#[tokio::test]
async fn outputs_returned_as_data_count_against_the_output_budget() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let small = SandboxLimits {
        max_output_bytes: 1 << 20,
        ..limits(5_000)
    };
    let attack = |mib: i64| [str_param("attack", "inline-output"), int_param("mib", mib)];
    // 2 MiB returned with the result (WIT 0.2), no `create` call: the same budget.
    let err = rt
        .process(&c, x(), &attack(2), &ctx(small.clone(), None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "output_too_large", "{err:?}");
    assert!(err.to_string().contains("over the limit"), "{err}");
    // Under the default budget the same call is served.
    let out = rt
        .process(&c, x(), &attack(2), &ctx(limits(5_000), None))
        .await
        .unwrap();
    assert_eq!(output(&out, "y").byte_size(), 2 << 20);
    victim_is_served(rt, "test").await;
}

#[tokio::test]
async fn shapes_outputs_and_signatures_are_bounded() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let cases = [
        ("rank", "rank 1000000"),
        ("wrong-output", "describe() declares FP32"),
        ("undeclared-output", "`z` is not among the outputs"),
    ];
    for (attack, message) in cases {
        // The data plane checks every component step's outputs this way.
        let err = rt
            .process(
                &c,
                x(),
                &[str_param("attack", attack)],
                &ctx(limits(5_000), None),
            )
            .await
            .and_then(|o| c.check_outputs(o))
            .unwrap_err();
        assert_eq!(err.kind(), "guest_error", "{attack}: {err:?}");
        assert!(err.to_string().contains(message), "{attack}: {err}");
    }
    let started = Instant::now();
    let err = rt
        .load(&component_bytes("huge-signature"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_component", "{err:?}");
    assert!(
        err.to_string().contains("200000 outputs; the limit is 256"),
        "{err}"
    );
    let err = rt
        .load(&component_bytes("slow-describe"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_component", "{err:?}");
    assert!(err.to_string().contains("deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    victim_is_served(rt, "test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_memory_is_budgeted_per_tenant_and_returned_when_idle() {
    let rt = runtime_with(EngineConfig {
        max_instances: 16,
        tenant_instance_memory_budget: 80 << 20,
        idle_instance_ttl: Duration::from_millis(300),
        // Two calls of one tenant at once, whatever this machine's cores.
        compute_threads: 4,
        max_running_per_tenant: 2,
        ..EngineConfig::default()
    });
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    // `greedy` holds ~48 MiB in a running call...
    let hog = tokio::spawn({
        let (rt, c) = (rt.clone(), c.clone());
        async move {
            rt.process(
                &c,
                x(),
                &[str_param("attack", "grow-and-spin"), int_param("mib", 48)],
                &call_for("greedy", limits(3_000)),
            )
            .await
        }
    });
    eventually(Duration::from_secs(30), "the hog grew", || {
        rt.instance_memory().0 >= 48 << 20
    })
    .await;
    // ...so its second instance cannot take another 48 MiB of its 80 MiB budget,
    let err = rt
        .process(
            &c,
            x(),
            &[str_param("attack", "grow"), int_param("mib", 48)],
            &call_for("greedy", limits(3_000)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "memory_budget", "{err:?}");
    assert!(err.to_string().contains("tenant's"), "{err}");
    // while another tenant's budget is its own.
    rt.process(
        &c,
        x(),
        &[str_param("attack", "grow"), int_param("mib", 48)],
        &call_for("victim", limits(3_000)),
    )
    .await
    .unwrap();
    assert_eq!(hog.await.unwrap().unwrap_err().kind(), "timeout");
    // Idle warm instances expire and give their memory back.
    eventually(Duration::from_secs(30), "idle memory returned", || {
        rt.instance_memory().0 == 0
    })
    .await;
    victim_is_served(&rt, "victim").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_looping_calls_do_not_starve_another() {
    let rt = runtime_with(EngineConfig {
        max_instances: 32,
        compute_threads: 2,
        max_running_per_tenant: 2,
        ..EngineConfig::default()
    });
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let loops: Vec<_> = (0..8)
        .map(|_| {
            let (rt, c) = (rt.clone(), c.clone());
            tokio::spawn(async move {
                rt.process(
                    &c,
                    x(),
                    &[str_param("attack", "loop")],
                    &call_for("greedy", limits(2_000)),
                )
                .await
            })
        })
        .collect();
    // While they loop, the victim's cheap calls keep answering.
    let mut answered = 0;
    let until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < until {
        victim_is_served(&rt, "victim").await;
        answered += 1;
    }
    assert!(answered >= 5, "the victim answered only {answered} times");
    for l in loops {
        let err = l.await.unwrap().unwrap_err();
        // Two ran into their deadline; the others waited for the tenant's
        // share of the compute pool until theirs.
        assert!(matches!(err.kind(), "timeout" | "overloaded"), "{err:?}");
    }
}

fn attack_request(attack: &str, mib: i64) -> pb::ModelInferRequest {
    let mut r = raw_request("adv", &x());
    r.parameters.insert(
        "attack".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam(attack.into())),
        },
    );
    r.parameters.insert(
        "mib".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(mib)),
        },
    );
    r
}

/// One HTTP/1.1 request on a fresh connection; the raw answer up to its headers.
fn http_post(addr: std::net::SocketAddr, path: &str, key: &str, body: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

fn status_of(s: &mut std::net::TcpStream) -> u16 {
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_capped_and_permits_last_until_sent() {
    let plane = Plane::start_with(
        ServingConfig {
            limits: conduit_runner::ServingLimits::from_toml(
                "[default]\nmax_concurrent_requests = 1\n",
            )
            .unwrap(),
            max_response_bytes: 40 << 20,
            ..ServingConfig::default()
        },
        EngineConfig::default(),
    )
    .await;
    let admin = plane.registry_client(&plane.key).await;
    push(
        &admin,
        Kind::Component,
        "adv",
        "1.0.0",
        &component_bytes("adversary"),
    )
    .await;
    let mut client = plane.infer_client().await;
    // Outputs that do not fit describe() are the component's error.
    expect_code(
        infer(&mut client, &plane.key, attack_request("wrong-output", 0)).await,
        Code::Internal,
        "describe() declares FP32",
    );
    // Over the cap: refused before encoding, on both transports, as a
    // deterministic (non-retryable) error.
    expect_code(
        infer(&mut client, &plane.key, attack_request("big", 48)).await,
        Code::OutOfRange,
        "over the response limit",
    );
    let body = r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"parameters":{"attack":"big","mib":48}}"#;
    let http = plane.http;
    let key = plane.key.clone();
    let status = tokio::task::spawn_blocking(move || {
        status_of(&mut http_post(http, "/v2/models/adv/infer", &key, body))
    })
    .await
    .unwrap();
    assert_eq!(status, 422);

    // A slow reader keeps its permit (limit 1) until its answer is read.
    let body = r#"{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"parameters":{"attack":"big","mib":32,"binary_data_output":true}}"#;
    let key = plane.key.clone();
    let mut slow = tokio::task::spawn_blocking(move || {
        let mut s = http_post(http, "/v2/models/adv/infer", &key, body);
        assert_eq!(status_of(&mut s), 200);
        s
    })
    .await
    .unwrap();
    expect_code(
        infer(&mut client, &plane.key, attack_request("none", 0)).await,
        Code::ResourceExhausted,
        "requests in flight",
    );
    tokio::task::spawn_blocking(move || {
        let mut sink = Vec::new();
        let _ = slow.set_read_timeout(Some(Duration::from_secs(60)));
        // Read to the end of the 32 MiB answer (the server keeps the connection).
        let mut buf = vec![0u8; 1 << 20];
        while sink.len() < 32 << 20 {
            match slow.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.extend_from_slice(&buf[..n.min(buf.len())]),
            }
        }
        drop(slow);
    })
    .await
    .unwrap();
    let mut ok = None;
    for _ in 0..300 {
        match infer(&mut client, &plane.key, attack_request("none", 0)).await {
            Ok(r) => {
                ok = Some(r);
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    let ok = ok.expect("the permit came back once the answer was read");
    assert_eq!(outputs(&ok)["y"].to_f32().unwrap(), [1.0, 2.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_connections_are_closed_and_bounded() {
    let plane = Plane::start_with(
        ServingConfig {
            connections: conduit_runner::ConnectionLimits {
                max_connections: 4,
                header_read_timeout: Duration::from_millis(500),
                body_progress_timeout: Duration::from_millis(500),
            },
            ..ServingConfig::default()
        },
        EngineConfig::default(),
    )
    .await;
    let (http, key) = (plane.http, plane.key.clone());
    tokio::task::spawn_blocking(move || {
        let closed_within = |s: &mut std::net::TcpStream, secs: u64| {
            s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
            let mut buf = Vec::new();
            let started = Instant::now();
            let _ = s.read_to_end(&mut buf);
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "still open after {secs} s"
            );
            String::from_utf8_lossy(&buf).into_owned()
        };
        // Four connections fill the limit; a fifth is closed at once.
        let mut idle: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(http).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut fifth = std::net::TcpStream::connect(http).unwrap();
        closed_within(&mut fifth, 5);
        // Idle connections are closed by the header timeout.
        for s in &mut idle {
            closed_within(s, 20);
        }
        // So is one that sends half a header.
        let mut half = std::net::TcpStream::connect(http).unwrap();
        half.write_all(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        closed_within(&mut half, 20);
        // A body that stalls gets a clear 400.
        let mut trickle = std::net::TcpStream::connect(http).unwrap();
        write!(
            trickle,
            "POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Length: 100\r\n\r\n{{\"in"
        )
        .unwrap();
        let answer = closed_within(&mut trickle, 20);
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("stalled"),
            "{answer}"
        );
        // The server still answers.
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert!(closed_within(&mut s, 20).starts_with("HTTP/1.1 200"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_and_metrics_reveal_nothing_across_tenants() {
    let plane = Plane::start("").await;
    let admin = plane.registry_client(&plane.key).await;
    let other_key = admin
        .create_tenant("other", 1 << 30, 1 << 32)
        .await
        .unwrap();
    let other = plane.registry_client(&other_key).await;
    let bytes = component_bytes("softmax-topk");
    let (_, dedup) = admin
        .upload(&bytes, &PushProgress::default())
        .await
        .unwrap();
    assert!(!dedup);
    // Another tenant uploading the same bytes learns nothing: "uploaded".
    let (_, dedup) = other
        .upload(&bytes, &PushProgress::default())
        .await
        .unwrap();
    assert!(!dedup, "dedup across tenants is visible");
    let (_, dedup) = other
        .upload(&bytes, &PushProgress::default())
        .await
        .unwrap();
    assert!(dedup, "a tenant's own re-upload is deduplicated");

    // /metrics: not for tenants, and unknown names make no series.
    let mut client = plane.infer_client().await;
    for i in 0..20 {
        let mut r = raw_request(&format!("no-such-model-{i}"), &x());
        r.model_version = String::new();
        expect_code(
            infer(&mut client, &other_key, r).await,
            Code::NotFound,
            "not found",
        );
    }
    let metrics = plane.serving.render_metrics();
    assert!(!metrics.contains("no-such-model"), "{metrics}");
    let http = plane.http;
    let (admin_key, tenant_key) = (plane.key.clone(), other_key.clone());
    tokio::task::spawn_blocking(move || {
        let get = |key: Option<&str>| {
            let mut s = std::net::TcpStream::connect(http).unwrap();
            let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
            )
            .unwrap();
            status_of(&mut s)
        };
        assert_eq!(get(None), 401);
        assert_eq!(get(Some(&tenant_key)), 401);
        assert_eq!(get(Some(&admin_key)), 200);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_executors_keep_each_tenants_settings_and_lifetime() {
    let plane = Plane::start("").await;
    let a = plane.registry_client(&plane.key).await;
    let b_key = a.create_tenant("b", 1 << 30, 1 << 32).await.unwrap();
    let b = plane.registry_client(&b_key).await;
    let model = std::fs::read(workspace_root().join("testdata/fixtures/add.onnx")).unwrap();
    let push_model = |c: conduit_registry::RegistryClient, delay_us: u64, max_batch: u32| {
        let model = model.clone();
        async move {
            let hints = conduit_registry::ExecutorHints {
                format: "onnx".into(),
                max_batch_size: max_batch,
                max_queue_delay_us: delay_us,
                ..Default::default()
            };
            let (digest, _) = c.upload(&model, &PushProgress::default()).await.unwrap();
            c.put_manifest(Kind::Model, "add", "1.0.0", &digest, &hints, &[], &[])
                .await
                .unwrap()
                .0
        }
    };
    // Same bytes, other batching settings: B's slow queue is not A's.
    let ma = push_model(a.clone(), 500, 8).await;
    let mb = push_model(b.clone(), 900_000, 8).await;
    let mut client = plane.infer_client().await;
    let req = |n: usize| {
        let t = Tensor::from_f32(vec![n as i64, 4], &vec![1.0; n * 4]).unwrap();
        let mut r = raw_request("add", &[("x".to_string(), t)]);
        r.model_version = String::new();
        r
    };
    infer(&mut client, &plane.key, req(1)).await.unwrap();
    infer(&mut client, &b_key, req(1)).await.unwrap();
    let ea = plane.serving.loaded_executor(&ma).expect("A's executor");
    let eb = plane.serving.loaded_executor(&mb).expect("B's executor");
    assert_eq!(
        ea.config().batching.max_queue_delay,
        Duration::from_micros(500)
    );
    assert_eq!(
        eb.config().batching.max_queue_delay,
        Duration::from_micros(900_000)
    );
    // B's unload frees B's executor only.
    client
        .repository_model_unload(crate::serving::authed(
            &b_key,
            pb::RepositoryModelUnloadRequest {
                model_name: "add".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(plane.serving.loaded_executor(&mb).is_none());
    assert!(plane.serving.loaded_executor(&ma).is_some());
    // B serves again once it loads its model.
    client
        .repository_model_load(crate::serving::authed(
            &b_key,
            pb::RepositoryModelLoadRequest {
                model_name: "add".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    infer(&mut client, &b_key, req(1)).await.unwrap();
    // One request may not take more than a fair share of a shared queue
    // (half of 1024 entries; one per batch of 8 rows here).
    expect_code(
        infer(&mut client, &b_key, req(4200)).await,
        Code::InvalidArgument,
        "needs 525 batches",
    );
    let out = infer(&mut client, &plane.key, req(2)).await.unwrap();
    assert_eq!(outputs(&out)["y"].shape(), [2, 4]);
}
