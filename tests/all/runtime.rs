//! The runtime on well-behaved components: loading, signatures, the tensor
//! handle API, concurrency, the disk cache, admission.

use crate::common::*;
use conduit_runtime::{RuntimeError, SandboxLimits};
use conduit_types::{DataType, Digest, Tensor, TensorSpec, World};
use std::sync::Arc;

#[tokio::test]
async fn loads_examples_and_reads_their_signatures() {
    let rt = runtime();
    let post = rt.load(&component_bytes("embedding-post")).await.unwrap();
    assert_eq!(post.world(), World::Op);
    assert_eq!(
        post.signature().inputs[0],
        TensorSpec {
            name: "last_hidden_state".into(),
            dtype: DataType::Fp32,
            shape: vec![-1, -1, -1]
        }
    );
    assert_eq!(post.signature().outputs.len(), 2);
    let pipeline = rt.load(&component_bytes("embed-pipeline")).await.unwrap();
    assert_eq!(pipeline.world(), World::Pipeline);
    let bytes = component_bytes("softmax-topk");
    let topk = rt.load(&bytes).await.unwrap();
    assert_eq!(topk.digest(), Digest::of(&bytes));
    // Loading the same bytes again yields the same loaded component.
    assert!(Arc::ptr_eq(&topk, &rt.load(&bytes).await.unwrap()));
}

async fn tensor_ops(
    op: &str,
    inputs: Vec<(String, Tensor)>,
    extra: Vec<conduit_runtime::Param>,
) -> Result<Vec<(String, Tensor)>, RuntimeError> {
    let rt = runtime();
    let c = rt.load(&component_bytes("tensor-ops")).await.unwrap();
    let mut params = vec![str_param("op", op)];
    params.extend(extra);
    rt.process(&c, inputs, &params, &ctx(SandboxLimits::default(), None))
        .await
}

#[tokio::test]
async fn routed_tensors_are_not_copied() {
    let x = Tensor::from_f32(vec![1024, 256], &vec![0.5; 1024 * 256]).unwrap();
    let out = tensor_ops("route", vec![("x".into(), x.clone())], vec![])
        .await
        .unwrap();
    let y = output(&out, "x");
    assert_eq!(y, &x);
    assert_eq!(
        y.data().as_ptr(),
        x.data().as_ptr(),
        "routing must share storage"
    );

    let out = tensor_ops(
        "slice",
        vec![("x".into(), x.clone())],
        vec![int_param("start", 3), int_param("end", 5)],
    )
    .await
    .unwrap();
    let y = output(&out, "x");
    assert_eq!(y.shape(), &[2, 256]);
    assert_eq!(
        y.data().as_ptr(),
        x.data()[3 * 256 * 4..].as_ptr(),
        "slices must share storage"
    );

    let out = tensor_ops("share", vec![("x".into(), x.clone())], vec![])
        .await
        .unwrap();
    assert_eq!(output(&out, "x_again").data().as_ptr(), x.data().as_ptr());
    let out = tensor_ops("reshape", vec![("x".into(), x.clone())], vec![])
        .await
        .unwrap();
    assert_eq!(output(&out, "x").shape(), &[1024 * 256]);
    assert_eq!(output(&out, "x").data().as_ptr(), x.data().as_ptr());
}

#[tokio::test]
async fn every_dtype_round_trips_through_the_component() {
    let cases = vec![
        Tensor::from_u8(vec![3], &[0, 1, 255]).unwrap(),
        Tensor::new(DataType::Bool, vec![2], bytes_of(&[1, 0])).unwrap(),
        Tensor::from_u16(vec![2], &[1, 65535]).unwrap(),
        Tensor::from_u32(vec![1, 2], &[7, u32::MAX]).unwrap(),
        Tensor::from_u64(vec![1], &[u64::MAX]).unwrap(),
        Tensor::from_i8(vec![2], &[-128, 127]).unwrap(),
        Tensor::from_i16(vec![2], &[-3, 3]).unwrap(),
        Tensor::from_i32(vec![2], &[i32::MIN, 5]).unwrap(),
        Tensor::from_i64(vec![2, 2], &[-1, 2, -3, i64::MAX]).unwrap(),
        Tensor::new(DataType::Fp16, vec![2], bytes_of(&[0x00, 0x3c, 0x00, 0xc0])).unwrap(),
        Tensor::new(DataType::Bf16, vec![1], bytes_of(&[0x80, 0x3f])).unwrap(),
        Tensor::from_f32(vec![3], &[1.5, -0.0, f32::INFINITY]).unwrap(),
        Tensor::from_f64(vec![1], &[std::f64::consts::PI]).unwrap(),
        Tensor::from_byte_strings(vec![3], ["héllo", "", "\u{0}bin"]).unwrap(),
        Tensor::from_f32(vec![0, 4], &[]).unwrap(),
    ];
    for op in ["copy", "raw"] {
        for t in &cases {
            let out = tensor_ops(op, vec![("x".into(), t.clone())], vec![])
                .await
                .unwrap();
            let y = output(&out, "x");
            assert_eq!(y, t, "{op} changed a {} tensor", t.dtype());
            if t.byte_size() > 0 {
                assert_ne!(
                    y.data().as_ptr(),
                    t.data().as_ptr(),
                    "{op} must make a new tensor"
                );
            }
        }
    }
    let out = tensor_ops("describe", vec![("x".into(), cases[8].clone())], vec![])
        .await
        .unwrap();
    let text = output(&out, "x").byte_strings().unwrap()[0].to_vec();
    assert_eq!(String::from_utf8(text).unwrap(), "INT64 [2, 2] 32");
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b)
}

#[tokio::test]
async fn bad_tensor_requests_are_guest_errors() {
    let x = Tensor::from_f32(vec![2, 2], &[0.0; 4]).unwrap();
    let err = tensor_ops(
        "slice",
        vec![("x".into(), x.clone())],
        vec![int_param("start", 1), int_param("end", 9)],
    )
    .await
    .unwrap_err();
    match err {
        RuntimeError::Guest(e) => {
            assert_eq!(e.kind(), "invalid_input");
            assert!(
                e.message().contains("outside a first dimension of 2"),
                "{e}"
            );
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    let err = tensor_ops("explode", vec![("x".into(), x)], vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Guest(e) if e.message().contains("unknown op `explode`")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_each_get_their_own_answer() {
    let rt = runtime();
    let c = rt.load(&component_bytes("softmax-topk")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let hot = i % 10;
            let mut logits = vec![0.0f32; 10];
            logits[hot] = 5.0;
            let x = Tensor::from_f32(vec![1, 10], &logits).unwrap();
            let out = runtime()
                .process(
                    &c,
                    vec![("logits".into(), x)],
                    &[int_param("k", 1)],
                    &ctx(SandboxLimits::default(), None),
                )
                .await
                .unwrap();
            assert_eq!(output(&out, "indices").to_i64().unwrap(), vec![hot as i64]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("conduit-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = || conduit_runtime::RuntimeConfig {
        engine: conduit_runtime::EngineConfig {
            max_instances: 4,
            ..Default::default()
        },
        cache_dir: Some(dir.clone()),
    };
    let bytes = component_bytes("softmax-topk");
    let first = conduit_runtime::Runtime::new(config()).unwrap();
    first.load(&bytes).await.unwrap();
    let cached: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0]
            .to_string_lossy()
            .contains(&Digest::of(&bytes).hex())
    );
    // A second runtime (same engine settings) loads from the cache and runs.
    let second = conduit_runtime::Runtime::new(config()).unwrap();
    let c = second.load(&bytes).await.unwrap();
    let x = Tensor::from_f32(vec![1, 2], &[0.0, 1.0]).unwrap();
    let out = second
        .process(
            &c,
            vec![("logits".into(), x)],
            &[],
            &ctx(SandboxLimits::default(), None),
        )
        .await
        .unwrap();
    assert_eq!(output(&out, "indices").to_i64().unwrap(), vec![1, 0]);
    // A corrupt cache entry is discarded and recompiled, never trusted.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let third = conduit_runtime::Runtime::new(config()).unwrap();
    assert!(third.load(&bytes).await.is_ok());
    // So is a valid artifact of *another* component put in its place (what
    // anyone who can write the cache directory could do to run their code
    // as this one): its seal does not verify, so it is recompiled.
    let other = component_bytes("adversary");
    third.load(&other).await.unwrap();
    let artifact = |d: &Digest| {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains(&d.hex()))
            .unwrap()
    };
    std::fs::copy(artifact(&Digest::of(&other)), artifact(&Digest::of(&bytes))).unwrap();
    let fourth = conduit_runtime::Runtime::new(config()).unwrap();
    let c = fourth.load(&bytes).await.unwrap();
    let outputs: Vec<_> = c
        .signature()
        .outputs
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert!(
        outputs.contains(&"indices".to_string()),
        "the swapped-in artifact ran: outputs {outputs:?}"
    );
    // An artifact whose seal was not made with this host's key is never
    // deserialized: it is discarded and written again, sealed.
    let path = artifact(&Digest::of(&bytes));
    let sealed = std::fs::read(&path).unwrap();
    let mut forged = sealed.clone();
    forged[0] ^= 0xff;
    std::fs::write(&path, &forged).unwrap();
    let fifth = conduit_runtime::Runtime::new(config()).unwrap();
    fifth.load(&bytes).await.unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        sealed,
        "the forged artifact was used, not replaced"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_file_name(format!(
        "{}.key",
        dir.file_name().unwrap().to_string_lossy()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_fails_fast_with_overloaded() {
    let rt = runtime_with(conduit_runtime::EngineConfig {
        max_instances: 2,
        max_waiting_calls: 0,
        // The slots, not the tenant's share of the compute pool, must be what fills.
        compute_threads: 4,
        max_running_per_tenant: 4,
        ..Default::default()
    });
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let slow = SandboxLimits {
        deadline: std::time::Duration::from_millis(1500),
        ..SandboxLimits::default()
    };
    let x = || vec![("x".to_string(), Tensor::from_f32(vec![1], &[1.0]).unwrap())];
    // The instance that ran `describe()` at load holds its slot until torn down.
    let start = std::time::Instant::now();
    while rt.slots_in_use() > 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "teardown never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let (rt, c, slow) = (rt.clone(), c.clone(), slow.clone());
            let inputs = x();
            tokio::spawn(async move {
                rt.process(&c, inputs, &[str_param("attack", "loop")], &ctx(slow, None))
                    .await
            })
        })
        .collect();
    let start = std::time::Instant::now();
    while rt.slots_in_use() < 2 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the busy calls never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let err = rt
        .process(&c, x(), &[], &ctx(SandboxLimits::default(), None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Overloaded(m) if m.contains("all 2 instance slots")),
        "{err:?}"
    );
    for b in busy {
        assert!(matches!(b.await.unwrap(), Err(RuntimeError::Timeout(_))));
    }
    // Once the slots are torn down the pool serves again.
    let mut ok = false;
    for _ in 0..500 {
        if rt
            .process(&c, x(), &[], &ctx(SandboxLimits::default(), None))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "the pool never recovered");
}

async fn counter(
    rt: &conduit_runtime::Runtime,
    c: &std::sync::Arc<conduit_runtime::Component>,
    ctx: &conduit_runtime::CallContext,
) -> f32 {
    let x = vec![("x".to_string(), Tensor::from_f32(vec![1], &[0.0]).unwrap())];
    let out = rt
        .process(c, x, &[str_param("attack", "counter")], ctx)
        .await
        .unwrap();
    output(&out, "y").to_f32().unwrap()[0]
}

#[tokio::test]
async fn warm_instances_never_cross_tenants_and_can_be_disabled() {
    let rt = small_runtime(8);
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let a = conduit_runtime::CallContext::new("tenant-a");
    let b = conduit_runtime::CallContext::new("tenant-b");
    // Within one tenant, calls reuse the warm instance (its state persists)…
    assert_eq!(counter(&rt, &c, &a).await, 1.0);
    assert_eq!(counter(&rt, &c, &a).await, 2.0);
    // …but another tenant never sees it.
    assert_eq!(counter(&rt, &c, &b).await, 1.0);
    assert_eq!(counter(&rt, &c, &a).await, 3.0);
    // Strict isolation: a fresh instance per call.
    let fresh = conduit_runtime::CallContext::new("tenant-a").with_limits(SandboxLimits {
        reuse_instances: false,
        ..SandboxLimits::default()
    });
    assert_eq!(counter(&rt, &c, &fresh).await, 1.0);
    assert_eq!(counter(&rt, &c, &fresh).await, 1.0);
    // A trap discards the instance: the next call starts from scratch.
    let x = vec![("x".to_string(), Tensor::from_f32(vec![1], &[0.0]).unwrap())];
    let trap = rt
        .process(&c, x, &[str_param("attack", "unreachable")], &b)
        .await;
    assert!(matches!(trap, Err(RuntimeError::Trap(_))));
    assert_eq!(counter(&rt, &c, &b).await, 1.0);
}

#[tokio::test]
async fn instances_are_recycled_after_max_reuses() {
    let rt = runtime_with(conduit_runtime::EngineConfig {
        max_instances: 4,
        max_instance_reuses: 3,
        ..Default::default()
    });
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let t = conduit_runtime::CallContext::new("t");
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(counter(&rt, &c, &t).await);
    }
    assert_eq!(seen, vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
}

#[tokio::test]
async fn idle_instances_are_evicted_when_the_pool_is_full() {
    let rt = runtime_with(conduit_runtime::EngineConfig {
        max_instances: 2,
        max_waiting_calls: 0,
        // The slots, not the tenant's share of the compute pool, must be what fills.
        compute_threads: 4,
        max_running_per_tenant: 4,
        ..Default::default()
    });
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    // Four tenants, two slots: each new tenant evicts an idle instance rather
    // than failing, so every call succeeds.
    for round in 0..3 {
        for tenant in ["a", "b", "c", "d"] {
            let n = counter(&rt, &c, &conduit_runtime::CallContext::new(tenant)).await;
            assert!(n >= 1.0, "round {round}, tenant {tenant}");
        }
    }
    assert!(rt.slots_in_use() <= 2);
}

#[tokio::test]
async fn unloading_forgets_the_component_but_not_calls_holding_it() {
    let rt = small_runtime(4);
    let bytes = component_bytes("adversary");
    let c = rt.load(&bytes).await.unwrap();
    let t = conduit_runtime::CallContext::new("t");
    assert_eq!(counter(&rt, &c, &t).await, 1.0);
    assert!(rt.unload(&c.digest()));
    assert!(rt.get(&c.digest()).is_none());
    assert!(!rt.unload(&c.digest()));
    // Its idle instance went with it: the next call starts fresh.
    assert_eq!(counter(&rt, &c, &t).await, 1.0);
    // Loading again gives a new component that serves as before.
    let again = rt.load(&bytes).await.unwrap();
    assert_eq!(again.digest(), c.digest());
    assert!(rt.get(&c.digest()).is_some());
}

#[tokio::test]
async fn components_built_against_wit_0_1_are_still_served() {
    use conduit_runtime::{CallContext, Param, ParamValue, WitVersion};
    let rt = small_runtime(4);
    let legacy = rt.load(&component_bytes("legacy-v01")).await.unwrap();
    assert_eq!(legacy.wit_version(), WitVersion::V0_1);
    assert_eq!(legacy.world(), World::Op);
    assert_eq!(legacy.signature().outputs[0].name, "y");
    let current = rt.load(&component_bytes("tensor-ops")).await.unwrap();
    assert_eq!(current.wit_version(), WitVersion::V0_2);

    let t = CallContext::new("t");
    let x = || {
        vec![(
            "x".to_string(),
            Tensor::from_f32(vec![3], &[1.0, -2.0, 4.0]).unwrap(),
        )]
    };
    let factor = |f: f64| Param {
        name: "factor".into(),
        value: ParamValue::Double(f),
    };
    let (out, fresh) = rt.process_traced(&legacy, x(), &[factor(0.5)], &t).await;
    assert!(fresh);
    let out = out.unwrap();
    assert_eq!(output(&out, "y").to_f32().unwrap(), vec![0.5, -1.0, 2.0]);
    assert_eq!(output(&out, "y").shape(), &[3]);
    // Its instance is reused like any other (it left no handles behind).
    let (out, fresh) = rt.process_traced(&legacy, x(), &[], &t).await;
    assert!(!fresh, "a 0.1 instance must be reused");
    assert_eq!(
        output(&out.unwrap(), "y").to_f32().unwrap(),
        vec![2.0, -4.0, 8.0]
    );
    // Its errors cross as before.
    let bad = Param {
        name: "factor".into(),
        value: ParamValue::String("two".into()),
    };
    match rt.process(&legacy, x(), &[bad], &t).await {
        Err(RuntimeError::Guest(e)) => {
            assert_eq!(e.kind(), "invalid_input");
            assert!(e.message().contains("must be a double"), "{e}");
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
}
