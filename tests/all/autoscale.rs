//! Autoscaling on a real local cluster (`conduit cluster up` with the
//! `local` actuator), with compressed timings: from zero runners, a first
//! request scales the fleet up; load grows replicas and runners; a runner
//! drained under load loses no request; load gone shrinks replicas, then
//! the module and the fleet to zero; a request after zero is served again.
//! Deadlines are generous polls, never timing asserts.

use crate::cli_registry::text;
use crate::cluster::{Load, free_port, gateway_metrics, live_runners, status};
use crate::common::*;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A `conduit cluster up` process, killed when dropped.
pub(crate) struct ClusterUp {
    pub child: Child,
    pub base: u16,
    pub key: String,
    pub dir: TempDir,
    /// What it printed so far.
    pub printed: Vec<String>,
    lines: Receiver<String>,
}

impl Drop for ClusterUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ClusterUp {
    /// Starts `conduit cluster up ARGS` on free ports in a fresh directory
    /// and waits until it says it is up. The port range is picked while
    /// other tests bind ephemeral ports too: when one of its ports was taken
    /// in between (the cluster says "in use"), it tries another range, at
    /// most three times.
    pub(crate) fn start(name: &str, args: &[&str]) -> Self {
        let mut tries = 0;
        loop {
            tries += 1;
            match Self::try_start(name, args) {
                Ok(up) => return up,
                Err(why) if tries < 3 && why.contains("in use") => {
                    eprintln!("cluster up: a port was taken, trying another range:\n{why}");
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn try_start(name: &str, args: &[&str]) -> Result<Self, String> {
        let dir = TempDir::new(name);
        let base = free_port().saturating_sub(20).max(20_000);
        let venv_bin = workspace_root().join(".venv/bin");
        let path = format!(
            "{}:{}",
            venv_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args(["cluster", "up", "--port-base", &base.to_string(), "--dir"])
            .arg(dir.path().join("cluster"))
            .args(args)
            .env("PATH", path)
            .env_remove("CONDUIT_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting conduit cluster up");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut up = Self {
            child,
            base,
            key: String::new(),
            dir,
            printed: Vec::new(),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !up
            .printed
            .iter()
            .any(|l| l.contains("Ctrl-C stops the cluster"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match up.lines.recv_timeout(left) {
                Ok(line) => up.printed.push(line),
                Err(e) => {
                    let _ = up.child.kill();
                    let mut err = String::new();
                    if let Some(mut s) = up.child.stderr.take() {
                        use std::io::Read;
                        let _ = s.read_to_string(&mut err);
                    }
                    return Err(format!(
                        "cluster up did not come up ({e:?}):\n{}\n{err}",
                        up.printed.join("\n")
                    ));
                }
            }
        }
        let key = std::fs::read_to_string(up.dir.path().join("cluster/admin.key")).unwrap();
        up.key = key.trim().to_string();
        Ok(up)
    }

    /// `conduit ARGS` against this cluster: the registry for pushes, the
    /// gateway (gRPC) for inference.
    pub(crate) fn conduit(&self, registry: bool, args: &[&str]) -> Output {
        let port = if registry {
            self.base + 2
        } else {
            self.base + 1
        };
        Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args(args)
            .env("CONDUIT_REGISTRY", format!("http://127.0.0.1:{port}"))
            .env("CONDUIT_API_KEY", &self.key)
            .env_remove("CONDUIT_LOG")
            .output()
            .unwrap()
    }

    /// Pushes the `add` test model (`add@1.0.0`) to its registry.
    pub(crate) fn push_add(&self) {
        let add = workspace_root().join("testdata/fixtures/add.onnx");
        let pushed = self.conduit(
            true,
            &[
                "push",
                "model",
                add.to_str().unwrap(),
                "--name",
                "add",
                "--version",
                "1.0.0",
            ],
        );
        assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    }

    pub(crate) fn nats(&self) -> String {
        format!("nats://127.0.0.1:{}", self.base + 3)
    }

    pub(crate) fn gateway_grpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.base + 1)
    }

    /// The first scheduler's `/metrics`.
    pub(crate) fn scheduler_metrics(&self) -> String {
        use std::io::{Read, Write};
        let addr = format!("127.0.0.1:{}", self.base + 4);
        let Ok(mut stream) = std::net::TcpStream::connect(&addr) else {
            return String::new();
        };
        let _ = write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    /// Ctrl-C: every process stops and the command exits 0.
    pub(crate) fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let stopped = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(60),
                "cluster up did not stop on Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{status:?}");
    }
}

/// Polls `done` every 200 ms for at most `bound`.
fn wait_for(
    what: &str,
    bound: Duration,
    mut done: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < bound,
            "{what}: not within {bound:?}\n{}",
            state()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A metric's value in Prometheus text (the first series whose name and
/// labels start with `series`).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn replicas_of(nats: &str, module: &str) -> (u64, usize) {
    let s = status(nats);
    s["placements"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["module"] == module))
        .map(|p| {
            (
                p["replicas"].as_u64().unwrap_or(0),
                p["runners"].as_array().map_or(0, Vec::len),
            )
        })
        .unwrap_or((0, 0))
}

/// `conduit infer add` through the gateway answers right.
pub(crate) fn infer_add(up: &ClusterUp) {
    let out = up.conduit(false, &["infer", "add", "--input", "x=[[1,2,3,4]]"]);
    assert!(
        text(&out.stdout).contains("[2.0000, 4.0000, 6.0000, 8.0000]"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn autoscaling_follows_load_to_zero_and_back_and_drains_without_loss() {
    let up = ClusterUp::start(
        "conduit-autoscale",
        &[
            "--schedulers=1",
            "--min-runners=0",
            "--max-runners=3",
            "--max-replicas=3",
            "--target-busy=30",
            "--scale-up-after-ms=1000",
            "--scale-up-cooldown-ms=1500",
            "--scale-down-after-ms=2000",
            "--scale-down-cooldown-ms=1000",
            "--idle-after-ms=8000",
            "--runner-down-after-ms=2000",
            "--runner-down-cooldown-ms=1000",
            "--handover-ms=5000",
            "--runner-arg=--release-idle-ms=2000",
            "--runner-arg=--drain-timeout-ms=20000",
        ],
    );
    let nats = up.nats();
    let long = Duration::from_secs(90);
    let show = || format!("{:#}\n{}", status(&nats), up.scheduler_metrics());
    assert!(live_runners(&nats).is_empty(), "min 0: no runner yet");

    up.push_add();

    // Scale from zero: the first request waits for a runner to start.
    infer_add(&up);
    assert_eq!(live_runners(&nats).len(), 1, "{}", show());
    let gw_http = format!("http://127.0.0.1:{}", up.base);
    let cold = gateway_metrics(&gw_http, &up.key);
    assert!(
        metric(&cold, "conduit_gateway_cold_start_seconds_count") >= 1.0,
        "{cold}"
    );

    // Load: replicas grow to the ceiling, and runners with them.
    let load = Load::start(&up.gateway_grpc(), &up.key);
    wait_for(
        "3 replicas of add on 3 runners under load",
        long,
        || replicas_of(&nats, "add@1.0.0") == (3, 3) && live_runners(&nats).len() == 3,
        show,
    );
    let m = up.scheduler_metrics();
    assert!(
        metric(
            &m,
            "conduit_scheduler_scale_events_total{kind=\"replicas\",direction=\"up\",reason=\"busy\"}"
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "conduit_scheduler_runners_desired"), 3.0, "{m}");

    // Drain one holder under load: nothing is lost; a replacement joins.
    let victim = live_runners(&nats)[0].clone();
    let drained = up.conduit(
        false,
        &["runner", "drain", &victim, "--nats", &nats, "--wait", "60"],
    );
    assert!(
        drained.status.success(),
        "{}\n{}\n{}",
        text(&drained.stdout),
        text(&drained.stderr),
        show()
    );
    wait_for(
        "a replacement runner holds the drained one's replica",
        long,
        || {
            let live = live_runners(&nats);
            live.len() == 3 && !live.contains(&victim) && replicas_of(&nats, "add@1.0.0") == (3, 3)
        },
        show,
    );
    load.wait_more(200);
    let (served, failed, first) = load.finish();
    assert_eq!(failed, 0, "{served} served; first failure: {first:?}");
    // It drained (its replica handed over), not timed out.
    let log = std::fs::read_to_string(up.dir.path().join(format!("cluster/logs/{victim}.log")))
        .unwrap_or_default();
    assert!(log.contains("drained in"), "{victim}'s log:\n{log}");

    // Load gone: replicas shrink to the floor, the module goes to zero, and
    // the fleet with it.
    wait_for(
        "no placement and no runner once idle",
        long,
        || {
            status(&nats)["placements"]
                .as_array()
                .is_some_and(Vec::is_empty)
                && live_runners(&nats).is_empty()
        },
        show,
    );
    let m = up.scheduler_metrics();
    for (series, at_least) in [
        (
            "conduit_scheduler_scale_events_total{kind=\"replicas\",direction=\"down\",reason=\"underused\"}",
            1.0,
        ),
        (
            "conduit_scheduler_scale_events_total{kind=\"replicas\",direction=\"zero\",reason=\"idle\"}",
            1.0,
        ),
        (
            "conduit_scheduler_scale_events_total{kind=\"runners\",direction=\"up\",reason=\"unplaced\"}",
            1.0,
        ),
        (
            "conduit_scheduler_scale_events_total{kind=\"runners\",direction=\"down\",reason=\"surplus\"}",
            2.0,
        ),
        (
            "conduit_scheduler_scale_events_total{kind=\"runners\",direction=\"zero\",reason=\"surplus\"}",
            1.0,
        ),
    ] {
        assert!(metric(&m, series) >= at_least, "{series} < {at_least}\n{m}");
    }
    assert_eq!(metric(&m, "conduit_scheduler_runners_desired"), 0.0, "{m}");

    // After zero: the next request is served (a fresh runner, a fresh load).
    infer_add(&up);
    let after = gateway_metrics(&gw_http, &up.key);
    assert!(
        metric(&after, "conduit_gateway_cold_start_seconds_count") >= 2.0,
        "{after}"
    );
    up.interrupt();
}
