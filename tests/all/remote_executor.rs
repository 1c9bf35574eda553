//! The remote executor against the real sidecar (`sidecar/conduit_sidecar.py`
//! on onnxruntime, `make sidecar`): the same outputs as the in-process ort
//! backend, alone and batched; a signature the served model does not match;
//! nothing listening; the sidecar dying under a running executor.

use crate::common::workspace_root;
use crate::executor::{batching, fixture, ort, start};
use conduit_executor::onnx_signature;
use conduit_executor::{Backend, ExecutorError, ModelConfig, RemoteBackend};
use conduit_types::{NamedTensors, Tensor};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A sidecar serving one fixture on a free loopback port; killed on drop,
/// panics included.
struct Sidecar {
    child: Child,
    url: String,
}

impl Sidecar {
    fn start(name: &str, onnx: &str) -> Self {
        let root = workspace_root();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `make sidecar`",
            python.display()
        );
        let model = root.join("testdata/fixtures").join(onnx);
        assert!(
            model.exists(),
            "{} is missing: run `make fixtures`",
            model.display()
        );
        let mut child = Command::new(python)
            .current_dir(&root)
            .arg("sidecar/conduit_sidecar.py")
            .args(["--listen", "127.0.0.1:0", "--name", name, "--onnx"])
            .arg(&model)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the sidecar");
        let (stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Forward the address, then keep draining until the sidecar exits.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut sidecar = Self {
            child,
            url: String::new(),
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => sidecar.url = format!("http://{addr}"),
            Err(_) => {
                sidecar.kill();
                panic!(
                    "the sidecar did not start (run `make sidecar`):\n{}",
                    errors.join().unwrap_or_default()
                );
            }
        }
        sidecar
    }

    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(RemoteBackend::new(&self.url))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `name`, batching up to `max` rows, waiting `delay_us` for them.
fn config(name: &str, max: usize, delay_us: u64) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        ..batching(max, delay_us)
    }
}

fn x(rows: usize, base: f32) -> NamedTensors {
    let v: Vec<f32> = (0..rows * 4).map(|i| base + i as f32 * 0.25).collect();
    vec![(
        "x".into(),
        Tensor::from_f32(vec![rows as i64, 4], &v).unwrap(),
    )]
}

fn y(out: &NamedTensors) -> (Vec<i64>, Vec<f32>) {
    assert_eq!(out.len(), 1, "one output: {out:?}");
    let (name, t) = &out[0];
    assert_eq!(name, "y");
    (t.shape().to_vec(), t.to_f32().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_outputs_equal_ort_outputs_alone_and_batched() {
    let sidecar = Sidecar::start("add", "add.onnx");
    let add = fixture("add.onnx");
    let local = start(ort(), &add, config("add", 1, 0)).unwrap();
    let remote = start(sidecar.backend(), &add, config("add", 8, 0)).unwrap();
    assert_eq!(remote.backend(), "remote");
    for rows in [1, 5] {
        let input = x(rows, rows as f32);
        let want = y(&local.infer(input.clone()).await.unwrap());
        assert_eq!(want.0, [rows as i64, 4]);
        assert_eq!(y(&remote.infer(input).await.unwrap()), want, "{rows} rows");
    }
    assert_eq!(remote.stats().batches, 2);

    let batched = start(sidecar.backend(), &add, config("add", 8, 2_000)).unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (local, batched) = (local.clone(), batched.clone());
        tasks.push(tokio::spawn(async move {
            let input = x(1 + i % 3, i as f32 * 10.0);
            let alone = local.infer(input.clone()).await.unwrap();
            let together = batched.infer(input).await.unwrap();
            (alone, together)
        }));
    }
    for t in tasks {
        let (alone, together) = t.await.unwrap();
        assert_eq!(y(&together), y(&alone));
    }
    let stats = batched.stats();
    assert_eq!((stats.requests, stats.failures), (32, 0));
    assert!(stats.batches < 32, "no batch formed: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_the_served_model_does_not_match_is_a_load_error() {
    let sidecar = Sidecar::start("add", "add.onnx");
    let ids = fixture("identity_i64.onnx");
    match start(sidecar.backend(), &ids, config("add", 8, 0)) {
        Err(ExecutorError::Load { backend, message }) => {
            assert_eq!(backend, "remote");
            assert!(message.contains("`ids`"), "{message}");
            assert!(message.contains(&sidecar.url), "{message}");
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    // A model name the server does not serve.
    match start(
        sidecar.backend(),
        &fixture("add.onnx"),
        config("other", 8, 0),
    ) {
        Err(ExecutorError::Unavailable(m)) => assert!(m.contains("`other`"), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unavailable_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // the listener closes here: nothing listens on `port`
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let backend = Arc::new(RemoteBackend::new(&url));
    match start(backend, &fixture("add.onnx"), config("add", 8, 0)) {
        Err(ExecutorError::Unavailable(m)) => {
            assert!(m.contains(&url) && m.contains("not reachable"), "{m}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// A plain test: the probe model owns a tokio runtime, which must not be
/// dropped inside another runtime's task.
#[test]
fn a_sidecar_that_dies_makes_requests_and_health_unavailable() {
    let mut sidecar = Sidecar::start("add", "add.onnx");
    let add = fixture("add.onnx");
    let backend = RemoteBackend::new(&sidecar.url);
    let executor = start(Arc::new(backend.clone()), &add, config("add", 8, 0)).unwrap();
    let probe = backend
        .load(&add, &onnx_signature(&add).unwrap(), &config("add", 8, 0))
        .unwrap();
    probe.health().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let infer = |input| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(15), executor.infer(input)).await
        })
        .expect("an answer, not a hang")
    };
    infer(x(2, 0.0)).unwrap();

    sidecar.kill();
    let started = Instant::now();
    match infer(x(2, 0.0)) {
        Err(ExecutorError::Unavailable(m)) => {
            assert!(m.contains(&sidecar.url) && m.contains("down"), "{m}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    match probe.health() {
        Err(ExecutorError::Unavailable(m)) => assert!(m.contains(&sidecar.url), "{m}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
