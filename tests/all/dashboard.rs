//! The Grafana dashboard (`deploy/grafana/conduit.json`): well formed, and
//! every metric its queries use is exported by a running `conduit dev` (a
//! node that served a model, refused a request, saw a component trap and
//! holds a session) or by a
//! running `conduit cluster up` (its scheduler and gateway). A metric renamed
//! in the code without the dashboard, or a panel over a metric nothing
//! exports, fails here rather than as an empty graph.

use crate::autoscale::{ClusterUp, infer_add};
use crate::cli_registry::{Server, conduit, ok, text};
use crate::cluster::gateway_metrics;
use crate::common::*;
use conduit_client::blocking::{Input, Session};
use conduit_client::{SessionOptions, Tensor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

fn dashboard() -> Value {
    let path = workspace_root().join("deploy/grafana/conduit.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// Every PromQL query, by where it is: panel targets and query variables.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default().to_string();
            out.push((format!("panel `{}`", p["title"]), expr));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let query = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_default();
            out.push((format!("variable `{}`", v["name"]), query.to_string()));
        }
    }
    out
}

/// The metric names a PromQL expression reads: identifiers starting with
/// `conduit_`, outside string literals (label values, `le="+Inf"`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // Skip the string, escapes included.
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ident(c) && !c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // A Grafana variable (`$tenant`) is no metric.
            let variable = start > 0 && chars[start - 1] == '$';
            if word.starts_with("conduit_") && !variable {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Sample names in Prometheus text (HTTP headers before it are skipped:
/// they hold no `conduit_` line start), and the families with their type.
fn exported(scrape: &str) -> (HashSet<String>, BTreeMap<String, String>) {
    let mut samples = HashSet::new();
    let mut types = BTreeMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
        } else if line.starts_with("conduit_") {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_string());
        }
    }
    (samples, types)
}

/// Checks each `conduit_` line of a scrape is in the text format Prometheus
/// parses: `# HELP`/`# TYPE` once per family, known types, a family's type
/// before its samples, `name{label="value",…} number`.
fn check_text_format(what: &str, scrape: &str) {
    let body = scrape.split_once("\r\n\r\n").map_or(scrape, |(_, b)| b);
    let mut typed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut helped = HashSet::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{what}: type of {name}: {line}"
            );
            assert!(
                typed.insert(name, kind).is_none(),
                "{what}: a second TYPE of {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(helped.insert(name), "{what}: a second HELP of {name}");
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("{what}: no value: {line}"));
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "{what}: value of {line}"
            );
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (
                    n,
                    l.strip_suffix('}')
                        .unwrap_or_else(|| panic!("{what}: unclosed labels: {line}")),
                ),
                None => (series, ""),
            };
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && !name.starts_with(|c: char| c.is_ascii_digit()),
                "{what}: name of {line}"
            );
            check_labels(what, line, labels);
            let family = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.contains_key(f) && !typed.contains_key(name))
                })
                .unwrap_or(name);
            let kind = typed
                .get(family)
                .unwrap_or_else(|| panic!("{what}: no TYPE before {line}"));
            if name.ends_with("_bucket") && *kind == "histogram" {
                assert!(
                    labels.contains("le=\""),
                    "{what}: a bucket without le: {line}"
                );
            }
        }
    }
}

/// `a="x",b="y\"z"`: names and quoted, escaped values.
fn check_labels(what: &str, line: &str, labels: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("{what}: label without a quoted value: {line}"));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{what}: label name {name:?}: {line}"
        );
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    let escaped = chars.next().map(|(_, c)| c);
                    assert!(
                        matches!(escaped, Some('\\' | '"' | 'n')),
                        "{what}: bad escape: {line}"
                    );
                }
                Some((i, '"')) => break i,
                Some(_) => {}
                None => panic!("{what}: unterminated label value: {line}"),
            }
        };
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

#[test]
fn dashboard_is_well_formed() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 39,
        "schemaVersion {}",
        dash["schemaVersion"]
    );
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = dash["templating"]["list"].as_array().expect("templating");
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for v in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            v["datasource"]["uid"], "${datasource}",
            "variable {}",
            v["name"]
        );
    }

    let mut ids = HashSet::new();
    let mut graphs = 0;
    for p in panels(&dash) {
        let title = &p["title"];
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title}: no id"));
        assert!(ids.insert(id), "panel id {id} twice ({title})");
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        assert!(
            x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24)
                && grid["y"].is_u64()
                && grid["h"].as_u64().is_some_and(|h| h > 0),
            "panel {title}: gridPos {grid}"
        );
        if p["type"] == "row" {
            continue;
        }
        graphs += 1;
        assert!(
            title.as_str().is_some_and(|t| !t.is_empty()),
            "a panel without a title"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("panel {title}: no targets"));
        let mut refs = HashSet::new();
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "panel {title}: a target without expr"
            );
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            assert!(
                refs.insert(t["refId"].as_str().unwrap_or_default()),
                "panel {title}: refId {} twice",
                t["refId"]
            );
            assert!(
                !metric_names(expr).is_empty(),
                "panel {title}: `{expr}` reads no conduit_ metric"
            );
            if expr.contains("histogram_quantile") {
                assert!(
                    expr.contains("_bucket") && expr.contains("le"),
                    "panel {title}: a quantile over something else than buckets by le: {expr}"
                );
            }
        }
    }
    assert!(graphs >= 10, "{graphs} panels");

    // What the issue asks the dashboard to show.
    let all: Vec<String> = queries(&dash).into_iter().map(|(_, q)| q).collect();
    let all = all.join("\n");
    for wanted in [
        "conduit_inference_request_success_total",
        "conduit_inference_request_failure_total",
        "histogram_quantile(0.5, sum by (le, model) (rate(conduit_inference_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, model) (rate(conduit_inference_request_duration_seconds_bucket",
        "conduit_inference_queue_duration_seconds_bucket",
        "conduit_batch_size",
        "conduit_model_load_total",
        "conduit_scheduler_runners",
        "conduit_scheduler_runners_desired",
        "conduit_sessions_open",
        "conduit_session_value_bytes",
        "sum by (tenant)",
    ] {
        assert!(all.contains(wanted), "no query uses `{wanted}`");
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le, model) (rate(conduit_a_bucket{tenant=~\"$tenant\",x=\"conduit_not\"}[$__rate_interval]) unless on (instance) conduit_b_total))"
        ),
        BTreeSet::from([
            "conduit_a_bucket".to_string(),
            "conduit_b_total".to_string()
        ])
    );
    assert_eq!(
        metric_names("label_values(conduit_c, tenant) / conduit_d[5m] + $conduit_var"),
        BTreeSet::from(["conduit_c".to_string(), "conduit_d".to_string()])
    );
}

/// `conduit dev` after serving a model, refusing a request, a component
/// trap, and with a session open: its `/metrics`. The session is returned
/// to stay open.
fn node_scrape(dir: &TempDir) -> (Server, Session, String) {
    let server = Server::start("dev", dir.path(), true);
    let key = server.key.clone().unwrap();
    let add = workspace_root().join("testdata/fixtures/add.onnx");
    ok(conduit(
        &server,
        &key,
        &[
            "push",
            "model",
            add.to_str().unwrap(),
            "--name",
            "add",
            "--version",
            "1.0.0",
        ],
    ));
    let out = ok(conduit(
        &server,
        &key,
        &["infer", "add", "--input", "x=[[1,2,3,4]]"],
    ));
    assert!(out.contains("[2.0000, 4.0000, 6.0000, 8.0000]"), "{out}");
    // A refused request: a failure series with its reason.
    let refused = conduit(&server, &key, &["infer", "add", "--input", "x=[[1,2,3]]"]);
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
    // A component the sandbox stops: a trap counted for the tenant.
    let adversary = component_path("adversary");
    ok(conduit(
        &server,
        &key,
        &[
            "push",
            "component",
            adversary.to_str().unwrap(),
            "--name",
            "adversary",
            "--version",
            "1.0.0",
        ],
    ));
    let trapped = conduit(
        &server,
        &key,
        &[
            "infer",
            "adversary",
            "--input",
            "x=[1,2]",
            "--param",
            "attack=unreachable",
        ],
    );
    assert!(!trapped.status.success(), "{}", text(&trapped.stdout));
    // A session holding a value: the session gauges, per tenant too.
    let session = Session::open(
        &server.url,
        &key,
        &["add".to_string()],
        SessionOptions::default(),
    )
    .unwrap();
    let x = Tensor::from_f32(vec![1, 4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let kept = session
        .module("add")
        .unwrap()
        .run(vec![("x".into(), Input::from(x))])
        .unwrap();
    assert!(!kept.is_empty());
    let scrape = gateway_metrics(&server.http_url, &key);
    (server, session, scrape)
}

#[test]
fn every_metric_the_dashboard_reads_is_exported() {
    let dash = dashboard();
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, query) in queries(&dash) {
        for name in metric_names(&query) {
            used.entry(name).or_default().push(place.clone());
        }
    }

    let dir = TempDir::new("conduit-dashboard");
    let (node, session, node_text) = node_scrape(&dir);
    check_text_format("conduit dev", &node_text);

    // A cluster with runner autoscaling from zero (so the scheduler wants a
    // count, and scales): one request through its gateway, a cold start.
    let up = ClusterUp::start(
        "conduit-dashboard-cluster",
        &["--schedulers=1", "--min-runners=0", "--max-runners=1"],
    );
    up.push_add();
    infer_add(&up);
    let gateway_http = format!("http://127.0.0.1:{}", up.base);

    // The scheduler renders what its last tick saw: poll a little.
    let started = Instant::now();
    let missing = loop {
        let gateway_text = gateway_metrics(&gateway_http, &up.key);
        let scheduler_text = up.scheduler_metrics();
        let mut samples = HashSet::new();
        let mut types = BTreeMap::new();
        for scrape in [&node_text, &gateway_text, &scheduler_text] {
            let (s, t) = exported(scrape);
            samples.extend(s);
            types.extend(t);
        }
        let missing: Vec<String> = used
            .iter()
            .filter(|(name, _)| {
                // A sample of that exact name; a bucket of a histogram.
                !samples.contains(*name)
                    || name.strip_suffix("_bucket").is_some_and(|family| {
                        types.get(family).map(String::as_str) != Some("histogram")
                    })
            })
            .map(|(name, places)| format!("{name} (used by {})", places.join(", ")))
            .collect();
        if missing.is_empty() || started.elapsed() > Duration::from_secs(60) {
            check_text_format("the gateway", &gateway_text);
            check_text_format("the scheduler", &scheduler_text);
            if !missing.is_empty() {
                eprintln!(
                    "conduit dev:\n{node_text}\ngateway:\n{gateway_text}\nscheduler:\n{scheduler_text}"
                );
            }
            break missing;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        missing.is_empty(),
        "the dashboard reads metrics that neither a node nor a cluster exports:\n  {}",
        missing.join("\n  ")
    );
    drop(session);
    drop(node);
    up.interrupt();
}
