//! Latency and batch-size histograms per model version, through
//! `prometheus-client`: the distributions behind the Triton-style
//! cumulative counters of [`Metrics`](crate::Metrics), which give only
//! means. Labelled like those counters (`tenant`, `model`, `version`), and
//! only for requests that named a model that exists.
//!
//! | family | observed |
//! |---|---|
//! | `conduit_inference_request_duration_seconds` | per successful request, end to end |
//! | `conduit_inference_queue_duration_seconds` | per successful request run here, time queued |
//! | `conduit_inference_compute_infer_duration_seconds` | per successful request run here, time in models and components |
//! | `conduit_batch_size` | per executor batch a request of the model led, its rows |

use crate::metrics::{ModelKey, RequestTiming};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds: 100 µs to 30 s in
/// 1-2.5-5 steps (a tiny model answers in tens of µs, a BERT batch in tens
/// of ms, a cold pipeline in seconds).
pub const DURATION_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Upper bounds of the batch-size buckets, in rows: powers of two to 1024.
pub const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

type PerModel = Family<ModelKey, Histogram, fn() -> Histogram>;

fn durations() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn batches() -> Histogram {
    Histogram::new(BATCH_BUCKETS)
}

/// The histogram families, in their own registry.
#[derive(Debug)]
pub(crate) struct Histograms {
    registry: Registry,
    request: PerModel,
    queue: PerModel,
    compute: PerModel,
    batch: PerModel,
}

impl Default for Histograms {
    fn default() -> Self {
        let (request, queue, compute, batch) = (
            PerModel::new_with_constructor(durations),
            PerModel::new_with_constructor(durations),
            PerModel::new_with_constructor(durations),
            PerModel::new_with_constructor(batches),
        );
        let mut registry = Registry::default();
        // prometheus-client ends each help text with a period.
        registry.register(
            "conduit_inference_request_duration_seconds",
            "End-to-end time of successful requests, in seconds",
            request.clone(),
        );
        registry.register(
            "conduit_inference_queue_duration_seconds",
            "Time successful requests queued (tenant admission and model queues), in seconds",
            queue.clone(),
        );
        registry.register(
            "conduit_inference_compute_infer_duration_seconds",
            "Time successful requests spent in models and components, in seconds",
            compute.clone(),
        );
        registry.register(
            "conduit_batch_size",
            "Rows of each batch an executor ran, counted for the model version of the request \
             that led it",
            batch.clone(),
        );
        Self {
            registry,
            request,
            queue,
            compute,
            batch,
        }
    }
}

impl Histograms {
    /// A request for `key` succeeded after `total`.
    pub(crate) fn answered(&self, key: &ModelKey, total: Duration) {
        self.request.get_or_create(key).observe(total.as_secs_f64());
    }

    /// A request for `key` ran here (`executions` batches led, see
    /// [`RequestTiming::batch_rows`]).
    pub(crate) fn ran(&self, key: &ModelKey, t: &RequestTiming, executions: u64) {
        self.queue.get_or_create(key).observe(t.queue.as_secs_f64());
        self.compute
            .get_or_create(key)
            .observe(t.infer.as_secs_f64());
        if t.batch_rows > 0 && executions > 0 {
            // One batch led: its rows. A request split into several (more
            // rows than the maximum batch) reports their sum: each counts
            // the mean.
            let rows = t.batch_rows as f64 / executions as f64;
            let batch = self.batch.get_or_create(key);
            for _ in 0..executions {
                batch.observe(rows);
            }
        }
    }

    /// Appends the families with a series, in the text format (without the
    /// OpenMetrics `# EOF`: the rest of `/metrics` follows).
    pub(crate) fn encode(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}

/// `tenant`, `model`, `version` (prometheus-client escapes the values).
impl EncodeLabelSet for ModelKey {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [
            ("tenant", self.tenant.as_str()),
            ("model", self.model.as_str()),
            ("version", self.version.as_str()),
        ]
        .encode(encoder)
    }
}
