//! Per-model counters, Triton-style, for `/metrics` (Prometheus text) and
//! the statistics extension (`ModelStatistics`), with the latency and batch
//! size histograms beside them.
//!
//! One text, two writers. The counters and gauges are kept in
//! [`ModelCounters`] (which `ModelStatistics` reads too) and written here
//! line by line: their names (`conduit_inference_count`, the cumulative
//! `…_duration_us`) predate the OpenMetrics rule that a counter's samples end
//! in `_total`, which prometheus-client's encoder applies to every counter,
//! and dashboards and tests read them as they are. The histograms are
//! prometheus-client families ([`crate::histograms`]), encoded by it. Both
//! label a series by tenant, model and version, and only for a model that
//! exists: a request for an unknown name counts under model `""` in
//! `conduit_inference_request_failure_total` alone.

use crate::histograms::Histograms;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Which model a counter belongs to: tenant, model name, version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    /// Tenant.
    pub tenant: String,
    /// Model (or pipeline, or component) name.
    pub model: String,
    /// Version.
    pub version: String,
}

/// Accumulated counts and durations of one model version (durations in ns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCounters {
    /// Successful requests.
    pub success: u64,
    /// Total time of successful requests.
    pub success_ns: u64,
    /// Failed requests by reason.
    pub failures: BTreeMap<&'static str, u64>,
    /// Total time of failed requests.
    pub failure_ns: u64,
    /// Inferences performed (rows: a batch of 8 counts 8).
    pub inference_count: u64,
    /// Executions: for a model, the batches its executor ran (a request
    /// that joined another's batch adds none, one split in three adds
    /// three); for a component or pipeline, the requests run.
    pub exec_count: u64,
    /// Queue time.
    pub queue_ns: u64,
    /// Decoding inputs.
    pub compute_input_ns: u64,
    /// Running models and components.
    pub compute_infer_ns: u64,
    /// Assembling outputs.
    pub compute_output_ns: u64,
    /// Requests in flight now.
    pub pending: u64,
    /// Unix time (ms) of the last request.
    pub last_inference_ms: u64,
}

impl ModelCounters {
    /// All failures.
    pub fn failure(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Where one successful request's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTiming {
    /// Queued (tenant admission and model queues).
    pub queue: Duration,
    /// Decoding the request into tensors.
    pub input: Duration,
    /// Models and components running.
    pub infer: Duration,
    /// Building the response.
    pub output: Duration,
    /// For a model: rows of the executor batches the request led (see
    /// [`RunTiming::batch_rows`](conduit_executor::RunTiming)), observed in
    /// `conduit_batch_size`; 0 for anything else.
    pub batch_rows: u64,
}

#[derive(Debug, Default)]
struct State {
    models: HashMap<ModelKey, ModelCounters>,
    /// Model loads: (tenant, model, version) → (count, total ns).
    loads: HashMap<ModelKey, (u64, u64)>,
    /// Component calls needing a fresh instance, by tenant.
    instantiations: BTreeMap<String, u64>,
    /// Component traps by tenant and kind.
    traps: BTreeMap<(String, &'static str), u64>,
}

/// Counters and histograms of the data plane.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
    histograms: Histograms,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("metrics lock"))
    }

    /// Requests in flight now, over every model.
    pub fn pending_total(&self) -> u64 {
        self.with(|s| s.models.values().map(|c| c.pending).sum())
    }

    /// A request for `key` started.
    pub fn begin(&self, key: &ModelKey) {
        self.with(|s| s.models.entry(key.clone()).or_default().pending += 1);
    }

    /// A request for `key` succeeded, with `rows` inferences in
    /// `executions` executions.
    pub fn success(
        &self,
        key: &ModelKey,
        rows: u64,
        executions: u64,
        total: Duration,
        t: RequestTiming,
    ) {
        self.counted(key, rows, executions, total, t);
        self.histograms.answered(key, total);
        self.histograms.ran(key, &t, executions);
    }

    /// A request for `key` that another process ran (a gateway forwarded
    /// it) was answered after `total`: a success with its end-to-end time
    /// only (no queue, compute or batch to observe here).
    pub fn relayed(&self, key: &ModelKey, total: Duration) {
        self.counted(key, 0, 0, total, RequestTiming::default());
        self.histograms.answered(key, total);
    }

    fn counted(
        &self,
        key: &ModelKey,
        rows: u64,
        executions: u64,
        total: Duration,
        t: RequestTiming,
    ) {
        self.with(|s| {
            let c = s.models.entry(key.clone()).or_default();
            c.pending = c.pending.saturating_sub(1);
            c.success += 1;
            c.success_ns += ns(total);
            c.inference_count += rows;
            c.exec_count += executions;
            c.queue_ns += ns(t.queue);
            c.compute_input_ns += ns(t.input);
            c.compute_infer_ns += ns(t.infer);
            c.compute_output_ns += ns(t.output);
            c.last_inference_ms = now_ms();
        });
    }

    /// A request for `key` failed for `reason`.
    pub fn failure(&self, key: &ModelKey, reason: &'static str, total: Duration) {
        self.with(|s| {
            let c = s.models.entry(key.clone()).or_default();
            c.pending = c.pending.saturating_sub(1);
            *c.failures.entry(reason).or_default() += 1;
            c.failure_ns += ns(total);
            c.last_inference_ms = now_ms();
        });
    }

    /// A request failed before it named a model that exists (unknown model,
    /// bad key): counted under `model` as given, version empty.
    pub fn rejected(&self, tenant: &str, model: &str, reason: &'static str) {
        let key = ModelKey {
            tenant: tenant.to_string(),
            model: model.to_string(),
            version: String::new(),
        };
        self.refused(&key, reason, Duration::ZERO);
    }

    /// A request for `key` failed before it ran (it could not be decoded):
    /// a failure that was never pending.
    pub fn refused(&self, key: &ModelKey, reason: &'static str, total: Duration) {
        self.with(|s| {
            let c = s.models.entry(key.clone()).or_default();
            *c.failures.entry(reason).or_default() += 1;
            c.failure_ns += ns(total);
            if !key.version.is_empty() {
                c.last_inference_ms = now_ms();
            }
        });
    }

    /// A model was loaded into an executor, taking `took`.
    pub fn model_loaded(&self, key: &ModelKey, took: Duration) {
        self.with(|s| {
            let e = s.loads.entry(key.clone()).or_default();
            e.0 += 1;
            e.1 += ns(took);
        });
    }

    /// A component call for `tenant` needed a fresh instance.
    pub fn instantiated(&self, tenant: &str) {
        self.with(|s| *s.instantiations.entry(tenant.to_string()).or_default() += 1);
    }

    /// A component call for `tenant` trapped with `kind`.
    pub fn trapped(&self, tenant: &str, kind: &'static str) {
        self.with(|s| *s.traps.entry((tenant.to_string(), kind)).or_default() += 1);
    }

    /// Counters of every model of `tenant` (name `""`: all), sorted.
    pub fn models(&self, tenant: &str, name: &str) -> Vec<(ModelKey, ModelCounters)> {
        let mut out: Vec<_> = self.with(|s| {
            s.models
                .iter()
                .filter(|(k, _)| {
                    k.tenant == tenant
                        && !k.version.is_empty()
                        && (name.is_empty() || k.model == name)
                })
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect()
        });
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Everything, in the Prometheus text format (version 0.0.4), with the
    /// unlabelled gauges of `extra` (name, help, value) at the end.
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut histograms = String::new();
        self.histograms.encode(&mut histograms);
        let s = self.state.lock().expect("metrics lock");
        let mut models: Vec<_> = s.models.iter().collect();
        models.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::new();
        let labels = |k: &ModelKey| {
            format!(
                "tenant=\"{}\",model=\"{}\",version=\"{}\"",
                escape(&k.tenant),
                escape(&k.model),
                escape(&k.version)
            )
        };
        let mut family = |name: &str, kind: &str, help: &str, f: &dyn Fn(&ModelCounters) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (k, c) in &models {
                if k.version.is_empty() {
                    continue;
                }
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k), f(c));
            }
        };
        family(
            "conduit_inference_request_success_total",
            "counter",
            "Successful inference requests.",
            &|c| c.success,
        );
        family(
            "conduit_inference_count",
            "counter",
            "Inferences performed (a request of 8 rows counts 8).",
            &|c| c.inference_count,
        );
        family(
            "conduit_inference_exec_count",
            "counter",
            "Inference executions (for a model, batches run; a component or pipeline request counts one).",
            &|c| c.exec_count,
        );
        family(
            "conduit_inference_request_duration_us",
            "counter",
            "Cumulative end-to-end time of successful requests, in microseconds.",
            &|c| c.success_ns / 1000,
        );
        family(
            "conduit_inference_queue_duration_us",
            "counter",
            "Cumulative time requests queued, in microseconds.",
            &|c| c.queue_ns / 1000,
        );
        family(
            "conduit_inference_compute_input_duration_us",
            "counter",
            "Cumulative time decoding inputs, in microseconds.",
            &|c| c.compute_input_ns / 1000,
        );
        family(
            "conduit_inference_compute_infer_duration_us",
            "counter",
            "Cumulative time in models and components, in microseconds.",
            &|c| c.compute_infer_ns / 1000,
        );
        family(
            "conduit_inference_compute_output_duration_us",
            "counter",
            "Cumulative time building outputs, in microseconds.",
            &|c| c.compute_output_ns / 1000,
        );
        family(
            "conduit_inference_pending_request_count",
            "gauge",
            "Requests in flight.",
            &|c| c.pending,
        );
        out.push_str(&histograms);
        let name = "conduit_inference_request_failure_total";
        let _ = writeln!(
            out,
            "# HELP {name} Failed inference requests by reason.\n# TYPE {name} counter"
        );
        for (k, c) in &models {
            for (reason, n) in &c.failures {
                let _ = writeln!(out, "{name}{{{},reason=\"{reason}\"}} {n}", labels(k));
            }
        }
        let mut loads: Vec<_> = s.loads.iter().collect();
        loads.sort_by(|a, b| a.0.cmp(b.0));
        for (name, help, pick) in [
            (
                "conduit_model_load_total",
                "Model loads into an executor.",
                0usize,
            ),
            (
                "conduit_model_load_duration_us",
                "Cumulative model load time, in microseconds.",
                1,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, (n, t)) in &loads {
                let v = if pick == 0 { *n } else { t / 1000 };
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(k));
            }
        }
        let name = "conduit_component_instantiations_total";
        let _ = writeln!(
            out,
            "# HELP {name} Component calls that needed a fresh sandbox instance.\n# TYPE {name} counter"
        );
        for (tenant, n) in &s.instantiations {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {n}", escape(tenant));
        }
        let name = "conduit_component_traps_total";
        let _ = writeln!(
            out,
            "# HELP {name} Component calls the sandbox stopped, by kind.\n# TYPE {name} counter"
        );
        for ((tenant, kind), n) in &s.traps {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",kind=\"{kind}\"}} {n}",
                escape(tenant)
            );
        }
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Appends a gauge labelled by tenant (`values`: tenant → value).
pub(crate) fn tenant_gauge(out: &mut String, name: &str, help: &str, values: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (tenant, value) in values {
        let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {value}", escape(tenant));
    }
}

/// A label value as the text format wants it.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let key = ModelKey {
            tenant: "acme".into(),
            model: "para\"phrase".into(),
            version: "1.0.0".into(),
        };
        m.begin(&key);
        m.success(
            &key,
            2,
            1,
            Duration::from_micros(900),
            RequestTiming {
                infer: Duration::from_micros(700),
                batch_rows: 3,
                ..Default::default()
            },
        );
        m.begin(&key);
        m.failure(&key, "invalid_input", Duration::from_micros(5));
        m.trapped("acme", "timeout");
        m.rejected("acme", "", "not_found");
        let text = m.render(&[("conduit_models_loaded", "Models loaded.", 1.0)]);
        let labels = r#"tenant="acme",model="para\"phrase",version="1.0.0""#;
        for line in [
            format!("conduit_inference_request_success_total{{{labels}}} 1"),
            format!("conduit_inference_count{{{labels}}} 2"),
            format!("conduit_inference_compute_infer_duration_us{{{labels}}} 700"),
            format!(
                "conduit_inference_request_failure_total{{{labels},reason=\"invalid_input\"}} 1"
            ),
            format!("conduit_inference_pending_request_count{{{labels}}} 0"),
            r#"conduit_component_traps_total{tenant="acme",kind="timeout"} 1"#.to_string(),
            "conduit_models_loaded 1".to_string(),
            // The histograms: cumulative buckets, the sum in seconds.
            "# TYPE conduit_inference_request_duration_seconds histogram".to_string(),
            format!("conduit_inference_request_duration_seconds_count{{{labels}}} 1"),
            format!("conduit_inference_request_duration_seconds_sum{{{labels}}} 0.0009"),
            format!(
                "conduit_inference_request_duration_seconds_bucket{{le=\"0.0005\",{labels}}} 0"
            ),
            format!("conduit_inference_request_duration_seconds_bucket{{le=\"0.001\",{labels}}} 1"),
            format!("conduit_inference_request_duration_seconds_bucket{{le=\"+Inf\",{labels}}} 1"),
            format!("conduit_inference_queue_duration_seconds_bucket{{le=\"0.0001\",{labels}}} 1"),
            format!(
                "conduit_inference_compute_infer_duration_seconds_bucket{{le=\"0.001\",{labels}}} 1"
            ),
            format!("conduit_batch_size_bucket{{le=\"2.0\",{labels}}} 0"),
            format!("conduit_batch_size_bucket{{le=\"4.0\",{labels}}} 1"),
            format!("conduit_batch_size_count{{{labels}}} 1"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(m.models("acme", "")[0].1.success, 1);
        assert!(m.models("other", "").is_empty());
        // Failures and unknown names make no histogram series; the text
        // has no OpenMetrics end marker in its middle.
        let series = text
            .lines()
            .filter(|l| l.starts_with("conduit_inference_request_duration_seconds_count"))
            .count();
        assert_eq!(series, 1, "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_relayed_request_is_timed_end_to_end_only() {
        let m = Metrics::default();
        let key = ModelKey {
            tenant: "acme".into(),
            model: "add".into(),
            version: "1.0.0".into(),
        };
        m.begin(&key);
        m.relayed(&key, Duration::from_millis(3));
        let text = m.render(&[]);
        let labels = r#"tenant="acme",model="add",version="1.0.0""#;
        assert!(
            text.lines()
                .any(|l| l
                    == format!("conduit_inference_request_duration_seconds_count{{{labels}}} 1")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == format!("conduit_inference_request_success_total{{{labels}}} 1")),
            "{text}"
        );
        for family in [
            "conduit_inference_queue_duration_seconds",
            "conduit_inference_compute_infer_duration_seconds",
            "conduit_batch_size",
        ] {
            assert!(!text.contains(family), "{family} in\n{text}");
        }
    }

    #[test]
    fn a_split_request_counts_each_batch_it_led() {
        let m = Metrics::default();
        let key = ModelKey {
            tenant: "acme".into(),
            model: "add".into(),
            version: "1.0.0".into(),
        };
        m.begin(&key);
        m.success(
            &key,
            16,
            2,
            Duration::from_millis(1),
            RequestTiming {
                batch_rows: 16,
                ..Default::default()
            },
        );
        let text = m.render(&[]);
        let labels = r#"tenant="acme",model="add",version="1.0.0""#;
        for line in [
            format!("conduit_batch_size_count{{{labels}}} 2"),
            format!("conduit_batch_size_sum{{{labels}}} 16.0"),
            format!("conduit_batch_size_bucket{{le=\"8.0\",{labels}}} 2"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
