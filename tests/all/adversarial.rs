//! Misbehaving components are contained, each with its own error kind, while
//! a well-behaved component keeps answering; bad binaries are rejected at load.

use crate::common::*;
use conduit_runtime::{RuntimeError, SandboxLimits};
use conduit_types::Tensor;
use std::time::Duration;

/// One attack: the `attack` param and a check on the error it must produce.
struct Case {
    attack: &'static str,
    kind: &'static str,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        attack: "loop",
        kind: "timeout",
        message: "deadline",
    },
    Case {
        attack: "memory",
        kind: "memory_limit",
        message: "memory limit of 67108864 bytes",
    },
    Case {
        attack: "recursion",
        kind: "stack_overflow",
        message: "stack",
    },
    Case {
        attack: "unreachable",
        kind: "trap",
        message: "unreachable",
    },
    Case {
        attack: "panic",
        kind: "trap",
        message: "unreachable",
    },
    Case {
        attack: "huge-output",
        kind: "output_too_large",
        message: "over the limit",
    },
    Case {
        attack: "many-handles",
        kind: "output_too_large",
        message: "handles",
    },
    Case {
        attack: "file",
        kind: "denied",
        message: "wasi:filesystem",
    },
    Case {
        attack: "socket",
        kind: "denied",
        message: "wasi:sockets",
    },
    Case {
        attack: "guest-error",
        kind: "guest_error",
        message: "rejects this input",
    },
];

/// The sandbox for the attacks that only a deadline stops (`loop`): short,
/// so the test is quick.
fn limits() -> SandboxLimits {
    SandboxLimits {
        memory_bytes: 64 << 20,
        deadline: Duration::from_millis(300),
        ..SandboxLimits::default()
    }
}

/// The sandbox for every other attack and the neighbour: a deadline no
/// loaded CI machine reaches, so each attack fails for its own reason, never
/// for being slow.
fn roomy_limits() -> SandboxLimits {
    SandboxLimits {
        deadline: Duration::from_secs(60),
        ..limits()
    }
}

fn x() -> Vec<(String, Tensor)> {
    vec![("x".into(), Tensor::from_f32(vec![2], &[1.0, 2.0]).unwrap())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attack_is_contained_with_its_own_error_kind() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();

    // A well-behaved neighbour keeps answering while the attacks run, and
    // until it has answered 20 times (bounded, not timed: a slow machine
    // only makes it take longer).
    let attacking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let neighbour = {
        let (c, attacking) = (c.clone(), attacking.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            let give_up = std::time::Instant::now() + Duration::from_secs(120);
            while (attacking.load(std::sync::atomic::Ordering::Acquire) || answered < 20)
                && std::time::Instant::now() < give_up
            {
                let out = runtime()
                    .process(&c, x(), &[], &ctx(roomy_limits(), None))
                    .await
                    .unwrap();
                assert_eq!(output(&out, "y").to_f32().unwrap(), vec![1.0, 2.0]);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answered
        })
    };

    let attacks: Vec<_> = CASES
        .iter()
        .map(|case| {
            let c = c.clone();
            tokio::spawn(async move {
                let params = [str_param("attack", case.attack)];
                let sandbox = if case.kind == "timeout" {
                    limits()
                } else {
                    roomy_limits()
                };
                let err = runtime()
                    .process(&c, x(), &params, &ctx(sandbox, None))
                    .await
                    .unwrap_err();
                (case, err)
            })
        })
        .collect();
    let mut results = Vec::new();
    for a in attacks {
        results.push(a.await.unwrap());
    }
    attacking.store(false, std::sync::atomic::Ordering::Release);
    for (case, err) in results {
        assert_eq!(
            err.kind(),
            case.kind,
            "attack `{}` gave {err:?}",
            case.attack
        );
        let text = err.to_string();
        assert!(
            text.contains(case.message),
            "attack `{}`: `{text}` lacks `{}`",
            case.attack,
            case.message
        );
        assert_eq!(err.is_trap(), case.kind != "guest_error", "{err:?}");
    }
    let answered = neighbour.await.unwrap();
    assert!(
        answered >= 20,
        "the neighbour answered only {answered} times"
    );
}

#[tokio::test]
async fn environment_and_host_files_are_invisible() {
    // SAFETY: tests in this binary do not read this variable concurrently.
    unsafe { std::env::set_var("CONDUIT_TEST_SECRET", "hunter2") };
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let out = rt
        .process(
            &c,
            x(),
            &[str_param("attack", "env")],
            &ctx(roomy_limits(), None),
        )
        .await
        .unwrap();
    let vars = output(&out, "y").to_f32().unwrap();
    assert_eq!(vars, vec![0.0], "the guest saw environment variables");
}

#[tokio::test]
async fn output_flood_is_capped_and_the_call_succeeds() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    let out = rt
        .process(
            &c,
            x(),
            &[str_param("attack", "stdout-flood")],
            &ctx(roomy_limits(), None),
        )
        .await
        .unwrap();
    assert_eq!(output(&out, "y").to_f32().unwrap(), vec![1.0, 2.0]);
}

#[tokio::test]
async fn bad_binaries_are_rejected_at_load() {
    let rt = runtime();
    let tokenizer = component_bytes("softmax-topk");
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "empty",
            vec![],
            "invalid_component",
            "missing the \\0asm header",
        ),
        (
            "text",
            b"hello, I am not wasm".to_vec(),
            "invalid_component",
            "not a WebAssembly binary",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "invalid_component",
            "module",
        ),
        (
            "truncated",
            tokenizer[..tokenizer.len() / 2].to_vec(),
            "invalid_component",
            "",
        ),
        (
            "flipped bytes",
            corrupt(&tokenizer),
            "invalid_component",
            "",
        ),
        (
            "wrong world",
            component_bytes("wrong-world"),
            "wrong_world",
            "conduit:compute/processor@0.2.0",
        ),
    ];
    for (name, bytes, kind, message) in cases {
        let err = rt.load(&bytes).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err:?}");
        assert!(
            err.to_string().contains(message),
            "{name}: `{err}` lacks `{message}`"
        );
    }
    // The runtime still serves after all of that.
    let c = rt.load(&tokenizer).await.unwrap();
    let x = Tensor::from_f32(vec![1, 2], &[0.0, 1.0]).unwrap();
    assert!(
        rt.process(
            &c,
            vec![("logits".into(), x)],
            &[],
            &ctx(roomy_limits(), None)
        )
        .await
        .is_ok()
    );
}

/// The component with a run of bytes in its code section overwritten.
fn corrupt(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let mid = b.len() / 3;
    for v in &mut b[mid..mid + 64] {
        *v = 0xff;
    }
    b
}

#[tokio::test]
async fn a_trapped_call_does_not_poison_the_component() {
    let rt = runtime();
    let c = rt.load(&component_bytes("adversary")).await.unwrap();
    for _ in 0..3 {
        let err = rt
            .process(
                &c,
                x(),
                &[str_param("attack", "unreachable")],
                &ctx(roomy_limits(), None),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Trap(_)), "{err:?}");
        let out = rt
            .process(&c, x(), &[], &ctx(roomy_limits(), None))
            .await
            .unwrap();
        assert_eq!(output(&out, "y").to_f32().unwrap(), vec![1.0, 2.0]);
    }
}
