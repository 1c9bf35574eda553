//! The Helm chart (`deploy/helm/conduit`) against the code it deploys.
//!
//! `scripts/check_chart.py` renders the chart with Helm's own engine and validates every
//! manifest (`make deploy-check`, a prerequisite of `make test`); here what it renders
//! meets the Rust side:
//!
//! - the scheduler's Role is exactly `conduit_scheduler::kube::rbac_rules` of the runner
//!   StatefulSet the chart renders, bound to the scheduler's ServiceAccount, and the
//!   scheduler's arguments name that set and the release namespace;
//! - every role started with the chart's own container arguments (listen addresses moved
//!   to loopback, `$(POD_NAME)` filled in as Kubernetes would) forms a working cluster,
//!   and the scheduler's `kubernetes` actuator, pointed through a kubeconfig at a fake
//!   API server, makes only calls that the chart's Role grants, judged by RBAC's own
//!   matching (verb, API group, resource with subresource, name, namespace).
//!
//! No Kubernetes cluster exists here: the fake API server serves the runner set's `scale`
//! subresource and answers anything else 403, as the API server would under that Role.

use crate::cluster::{free_port, nats_server};
use crate::common::{TempDir, workspace_root};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The release namespace and runner set the chart's default values render
/// (`check_chart.py` renders release `conduit` in namespace `conduit`).
const NAMESPACE: &str = "conduit";
const RUNNER_SET: &str = "conduit-runner";
/// The runner set's `scale` subresource, the one object the scheduler may touch.
const SCALE_PATH: &str = "/apis/apps/v1/namespaces/conduit/statefulsets/conduit-runner/scale";
/// Generous bound for the cluster to come up (polls, never timing asserts).
const CONVERGE: Duration = Duration::from_secs(60);

/// Runs `scripts/check_chart.py FLAG` (the chart rendered by Helm) and parses its JSON.
fn chart(flag: &str) -> Value {
    let python = workspace_root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(workspace_root().join("scripts/check_chart.py"))
        .arg(flag)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {}: {e} (run `make deploy-check`)",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "check_chart.py {flag} failed (run `make deploy-check` first):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check_chart.py prints JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// Whether RBAC `rules` of a Role in `role_ns` allow a request, by the API server's
/// own matching: the verb (from the method, and for GET whether a name is given),
/// the API group, the resource with its subresource (`statefulsets/scale`) and the
/// object's name each listed by one rule (`*` matches anything; no resourceNames
/// matches every name).
fn allowed(
    rules: &Value,
    role_ns: &str,
    method: &str,
    path: &str,
    query: &str,
) -> Result<(), String> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return Err(format!("{method} {path}: not a resource path")),
    };
    let ["namespaces", ns, resource, tail @ ..] = rest else {
        return Err(format!(
            "{method} {path}: not namespaced (a Role grants nothing there)"
        ));
    };
    if *ns != role_ns {
        return Err(format!(
            "{method} {path}: namespace {ns}, the Role is in {role_ns}"
        ));
    }
    let (name, resource) = match tail {
        [] => (None, (*resource).to_owned()),
        [name] => (Some(*name), (*resource).to_owned()),
        [name, sub] => (Some(*name), format!("{resource}/{sub}")),
        _ => return Err(format!("{method} {path}: not a resource path")),
    };
    let verb = match (method, name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if query.contains("watch=") => "watch",
        ("GET", None) => "list",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return Err(format!("{method} {path}: no RBAC verb")),
    };
    let lists = |list: &Value, want: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == want || v == "*"))
    };
    let granted = rules.as_array().expect("rules").iter().any(|r| {
        lists(&r["verbs"], verb)
            && lists(&r["apiGroups"], group)
            && lists(&r["resources"], &resource)
            && match (&r["resourceNames"], name) {
                (Value::Null, _) => true,
                (Value::Array(names), _) if names.is_empty() => true,
                (names, Some(n)) => lists(names, n),
                (_, None) => false,
            }
    });
    if granted {
        Ok(())
    } else {
        Err(format!(
            "{verb} {group}/{resource} {name:?} in {ns} ({method} {path}) is not granted by {rules}"
        ))
    }
}

#[test]
fn the_charts_role_is_exactly_what_the_kube_actuator_needs() {
    let rules = chart("--print-role-rules");
    let facts = chart("--print-args");
    let set = facts["runner_statefulset"].as_str().unwrap();
    assert_eq!(set, RUNNER_SET, "the default values' runner StatefulSet");
    assert_eq!(
        rules,
        serde_json::to_value(conduit_scheduler::kube::rbac_rules(set)).unwrap(),
        "the chart's Role must grant exactly conduit_scheduler::kube::rbac_rules({set})"
    );
    assert_eq!(facts["namespace"], NAMESPACE);
    assert_eq!(
        facts["role_subjects"],
        json!([{
            "kind": "ServiceAccount",
            "name": facts["scheduler_service_account"],
            "namespace": NAMESPACE,
        }]),
        "the Role is bound to the scheduler's ServiceAccount only"
    );
    let args = strings(&facts["args"]["scheduler"]);
    for want in [
        format!("--kube-statefulset={set}"),
        format!("--kube-namespace={NAMESPACE}"),
    ] {
        assert!(args.contains(&want), "scheduler args {args:?} lack {want}");
    }

    // The matcher the cluster test judges the actuator with refuses what RBAC would.
    let ok = |m: &str, p: &str| allowed(&rules, NAMESPACE, m, p, "");
    ok("GET", SCALE_PATH).unwrap();
    ok("PATCH", SCALE_PATH).unwrap();
    for (method, path) in [
        ("PUT", SCALE_PATH),
        (
            "GET",
            "/apis/apps/v1/namespaces/conduit/statefulsets/conduit-runner",
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/conduit/statefulsets/conduit-runner",
        ),
        ("GET", "/apis/apps/v1/namespaces/conduit/statefulsets"),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/conduit/statefulsets/conduit-registry/scale",
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/other/statefulsets/conduit-runner/scale",
        ),
        ("GET", "/api/v1/namespaces/conduit/pods"),
        ("GET", "/api/v1/namespaces/conduit/secrets/conduit-api-key"),
    ] {
        assert!(
            ok(method, path).is_err(),
            "{method} {path} must not be granted"
        );
    }
}

/// What the fake Kubernetes API server saw, and the runner set's size.
#[derive(Default)]
struct FakeApi {
    replicas: i64,
    calls: Vec<Call>,
}

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// Serves the runner set's `scale` subresource; anything else is refused with
/// 403, the answer the API server gives a ServiceAccount without the right.
async fn fake_api(
    State(api): State<Arc<Mutex<FakeApi>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let mut api = api.lock().unwrap();
    api.calls.push(call.clone());
    let scale = |replicas: i64| {
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": RUNNER_SET, "namespace": NAMESPACE},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas},
        })
    };
    let (status, answer) = match (call.method.as_str(), call.path.as_str()) {
        ("GET", SCALE_PATH) => (StatusCode::OK, scale(api.replicas)),
        ("PATCH", SCALE_PATH) => match call.body["spec"]["replicas"].as_i64() {
            Some(n) => {
                api.replicas = n;
                (StatusCode::OK, scale(n))
            }
            None => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"kind": "Status", "code": 422}),
            ),
        },
        _ => (
            StatusCode::FORBIDDEN,
            json!({
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "reason": "Forbidden",
                "message": format!("{} {} is forbidden", call.method, call.path),
                "code": 403,
            }),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// Starts the fake API server on loopback; its URL and what it records.
fn start_fake_api() -> (String, Arc<Mutex<FakeApi>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(FakeApi::default()));
    let app = axum::Router::new()
        .fallback(fake_api)
        .with_state(state.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(listener, app).await;
        });
    });
    (url, state)
}

/// One role of the chart, started as `conduit ARGS`; killed when dropped.
struct Role {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Role {
    fn start(name: &'static str, args: &[String], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_conduit"));
        cmd.args(args);
        // Only what the chart's pod spec gives it (plus ORT_DYLIB_PATH, set by the image).
        for var in [
            "CONDUIT_API_KEY",
            "CONDUIT_NATS",
            "CONDUIT_REGISTRY",
            "CONDUIT_LISTEN",
            "CONDUIT_HTTP_LISTEN",
            "CONDUIT_DATA_DIR",
            "CONDUIT_METRICS_KEY",
            "RUST_LOG",
            "KUBECONFIG",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CONDUIT_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting conduit");
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for mut pipe in [out, err] {
            let sink = log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Self { name, child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` until it holds; fails with every role's log when one exits or
/// the bound passes.
fn wait_until(what: &str, roles: &mut [&mut Role], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        if done() {
            return;
        }
        let exited = roles.iter_mut().find_map(|r| match r.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", r.name)),
            _ => None,
        });
        if exited.is_some() || Instant::now() > deadline {
            let logs: String = roles
                .iter()
                .map(|r| format!("\n--- {}\n{}", r.name, r.log()))
                .collect();
            panic!(
                "{what}: {}{logs}",
                exited.unwrap_or_else(|| format!("not within {CONVERGE:?}"))
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` over HTTP/1.1: the status and body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A series' value in Prometheus text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The chart's container args for `role` with what only a pod has replaced as a
/// pod would see it (`$(POD_NAME)`, its DNS name) or moved to loopback: each
/// `--flag=` in `local` gets that value; every other argument is kept verbatim.
fn localize(facts: &Value, role: &str, local: &[(&str, String)]) -> Vec<String> {
    let chart_args = strings(&facts["args"][role]);
    let mut seen = Vec::new();
    let args: Vec<String> = chart_args
        .iter()
        .map(|a| {
            let flag = a.split('=').next().unwrap();
            match local.iter().find(|(f, _)| *f == flag) {
                Some((f, v)) => {
                    seen.push(*f);
                    format!("{f}={v}")
                }
                None => a.clone(),
            }
        })
        .collect();
    for (flag, _) in local {
        assert!(
            seen.contains(flag),
            "the chart's {role} args {chart_args:?} lack {flag}"
        );
    }
    for a in &args {
        assert!(
            !a.contains("$(") && !a.contains("0.0.0.0"),
            "{role}: {a} left as the chart wrote it"
        );
    }
    args
}

#[test]
fn the_charts_arguments_run_a_cluster_whose_actuator_stays_within_its_role() {
    let rules = chart("--print-role-rules");
    let facts = chart("--print-args");
    let dir = TempDir::new("conduit-deploy");
    let loopback = || format!("127.0.0.1:{}", free_port());

    // The runner advertises its pod DNS name: <pod>.<headless service>.<namespace>.svc.
    let runner_args = strings(&facts["args"]["runner"]);
    let advertise = format!("--advertise=$(POD_NAME).{RUNNER_SET}.$(POD_NAMESPACE).svc.");
    assert!(
        runner_args.iter().any(|a| a.starts_with(&advertise)),
        "runner args {runner_args:?} must advertise the pod DNS name"
    );

    let nats_port = free_port();
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let _nats = nats_server(nats_port, &dir.path().join("nats"));

    // The registry: the chart's args; it prints the admin key the user puts in the
    // Secret (docs/deploy.md, "First install").
    let registry_addr = loopback();
    let registry_url = format!("http://{registry_addr}");
    let registry_dir = dir.path().join("registry");
    let mut registry = Role::start(
        "registry",
        &localize(
            &facts,
            "registry",
            &[
                ("--data-dir", registry_dir.display().to_string()),
                ("--listen", registry_addr.clone()),
            ],
        ),
        &[],
    );
    let mut key = String::new();
    let registry_log = registry.log.clone();
    wait_until(
        "the registry prints its admin key",
        &mut [&mut registry],
        || {
            let log = registry_log.lock().unwrap().clone();
            match log.split("export CONDUIT_API_KEY=").nth(1) {
                Some(rest) => {
                    key = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    !key.is_empty()
                }
                None => false,
            }
        },
    );

    // The scheduler with the kubernetes actuator, against the fake API server.
    let (api_url, api) = start_fake_api();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {api_url}\n\
             users:\n- name: fake\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {NAMESPACE}\n"
        ),
    )
    .unwrap();
    let metrics_addr = loopback();
    let mut scheduler = Role::start(
        "scheduler",
        &localize(
            &facts,
            "scheduler",
            &[
                ("--nats", nats.clone()),
                ("--id", "conduit-scheduler-0".into()),
                ("--metrics-listen", metrics_addr.clone()),
            ],
        ),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );

    let (runner_grpc, runner_http) = (loopback(), loopback());
    let mut runner = Role::start(
        "runner",
        &localize(
            &facts,
            "runner",
            &[
                ("--nats", nats.clone()),
                ("--registry", registry_url.clone()),
                (
                    "--data-dir",
                    dir.path().join("runner").display().to_string(),
                ),
                ("--listen", runner_grpc),
                ("--http-listen", runner_http.clone()),
                ("--id", format!("{RUNNER_SET}-0")),
                ("--advertise", "127.0.0.1".into()),
            ],
        ),
        &[("CONDUIT_API_KEY", key.as_str())],
    );
    let (gateway_grpc, gateway_http) = (loopback(), loopback());
    let mut gateway = Role::start(
        "gateway",
        &localize(
            &facts,
            "gateway",
            &[
                ("--nats", nats.clone()),
                ("--registry", registry_url.clone()),
                (
                    "--data-dir",
                    dir.path().join("gateway").display().to_string(),
                ),
                ("--listen", gateway_grpc),
                ("--http-listen", gateway_http.clone()),
            ],
        ),
        &[("CONDUIT_API_KEY", key.as_str())],
    );

    let mut roles = [&mut registry, &mut scheduler, &mut runner, &mut gateway];
    // The probes the chart wires answer as the chart expects.
    wait_until("the runner is ready (/v2/health/ready)", &mut roles, || {
        http_get(&runner_http, "/v2/health/ready").is_some_and(|(s, _)| s == 200)
    });
    wait_until(
        "the gateway is ready (/v2/health/ready)",
        &mut roles,
        || http_get(&gateway_http, "/v2/health/ready").is_some_and(|(s, _)| s == 200),
    );
    for (addr, role) in [(&runner_http, "runner"), (&gateway_http, "gateway")] {
        let live = http_get(addr, "/v2/health/live");
        assert_eq!(live.map(|(s, _)| s), Some(200), "{role} /v2/health/live");
    }
    // The leader scales the runner set to --min-runners through its scale
    // subresource, and publishes what KEDA's trigger would read.
    wait_until("the actuator scales the runner set", &mut roles, || {
        api.lock().unwrap().replicas >= 1
    });
    wait_until(
        "the scheduler's /metrics shows the leader's desired runners",
        &mut roles,
        || {
            http_get(&metrics_addr, "/metrics").is_some_and(|(s, text)| {
                s == 200
                    && metric(&text, "conduit_scheduler_leader") == Some(1.0)
                    && metric(&text, "conduit_scheduler_runners_desired").is_some_and(|d| d >= 1.0)
            })
        },
    );

    // Every call the actuator made is one the chart's Role grants.
    let calls = api.lock().unwrap().calls.clone();
    assert!(
        calls.iter().any(|c| c.method == "GET") && calls.iter().any(|c| c.method == "PATCH"),
        "the actuator read and patched the scale: {calls:?}"
    );
    for c in &calls {
        if let Err(e) = allowed(&rules, NAMESPACE, &c.method, &c.path, &c.query) {
            let logs: String = roles
                .iter()
                .map(|r| format!("\n--- {}\n{}", r.name, r.log()))
                .collect();
            panic!("the kubernetes actuator stepped outside the chart's Role: {e}{logs}");
        }
        if c.method == "PATCH" {
            assert_eq!(c.content_type, "application/merge-patch+json", "{c:?}");
            assert_eq!(
                c.body,
                json!({"spec": {"replicas": c.body["spec"]["replicas"]}}),
                "the patch touches spec.replicas only: {c:?}"
            );
        }
    }
}
