//! Module manifests: what the registry knows about one version of a module.

use crate::Digest;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A WebAssembly component exporting `conduit:compute/processor`.
    Component,
    /// A model run by a native executor (ONNX).
    Model,
    /// A pipeline manifest over components and models.
    Pipeline,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Component => "component",
            Self::Model => "model",
            Self::Pipeline => "pipeline",
        })
    }
}

/// One named tensor a module consumes or produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// KServe v2 datatype (`FP32`, `INT64`, `BYTES`, …).
    pub datatype: String,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
}

/// A module's inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Inputs.
    pub inputs: Vec<TensorSpec>,
    /// Outputs.
    pub outputs: Vec<TensorSpec>,
}

/// How a model wants to be run. Every field is optional (empty / zero means
/// "the runner's default").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorHints {
    /// Model format, e.g. `onnx`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// Preferred backend: `ort`, `tract`, `remote`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backend: String,
    /// `cpu` or `cuda:N`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// Largest batch the executor may form.
    #[serde(default)]
    pub max_batch_size: u32,
    /// How long a request may wait for a batch to fill, in microseconds.
    #[serde(default)]
    pub max_queue_delay_us: u64,
    /// Batch sizes the executor prefers to form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_batch_sizes: Vec<u32>,
    /// Executor instances (threads) per loaded copy.
    #[serde(default)]
    pub instances: u32,
    /// Replicas a cluster keeps placed (any kind of module; a push hint);
    /// 0 for the scheduler's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas: u32,
    /// Most replicas autoscaling may give it; 0 for the scheduler's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_replicas: u32,
    /// Autoscaling adds a replica while its replicas are busy more than this
    /// percentage of the time; 0 for the scheduler's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub target_busy_percent: u32,
    /// … or while its requests wait longer than this, in ms; 0 for the
    /// scheduler's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub target_queue_ms: u32,
    /// Scaled to zero after this long without a request, in seconds; 0 for
    /// the scheduler's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_seconds: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The ranges registration accepts for [`ExecutorHints`]. Hints are a
/// tenant's word about resources the host pays for: every worker instance is
/// a thread holding a copy of the model, and a batch delay is time every
/// request of the model waits, so each has a ceiling a real deployment never
/// needs to pass.
pub mod hint_limits {
    /// Most executor instances (threads, each with its model) per loaded copy.
    pub const MAX_INSTANCES: u32 = 64;
    /// Largest batch an executor may form.
    pub const MAX_BATCH_SIZE: u32 = 65_536;
    /// Longest time a request may wait for its batch to fill: 10 s.
    pub const MAX_QUEUE_DELAY_US: u64 = 10_000_000;
    /// Most preferred batch sizes.
    pub const MAX_PREFERRED_BATCH_SIZES: usize = 32;
    /// Most replicas a module may ask a cluster for.
    pub const MAX_REPLICAS: u32 = 10_000;
    /// Longest queue-delay target for autoscaling: 1 hour.
    pub const MAX_TARGET_QUEUE_MS: u32 = 3_600_000;
    /// Longest text in `format`, `backend` and `device`.
    pub const MAX_TEXT: usize = 64;
}

impl ExecutorHints {
    /// Whether every hint is in the range registration accepts
    /// ([`hint_limits`]); the reason names the hint and its ceiling.
    pub fn check(&self) -> Result<(), String> {
        use hint_limits::*;
        for (what, text) in [
            ("format", &self.format),
            ("backend", &self.backend),
            ("device", &self.device),
        ] {
            if text.len() > MAX_TEXT {
                return Err(format!(
                    "executor {what} is {} bytes long; at most {MAX_TEXT}",
                    text.len()
                ));
            }
        }
        let over = |what: &str, n: u64, max: u64| -> Result<(), String> {
            if n > max {
                Err(format!("executor {what} is {n}; at most {max}"))
            } else {
                Ok(())
            }
        };
        over("instances", self.instances.into(), MAX_INSTANCES.into())?;
        over(
            "max_batch_size",
            self.max_batch_size.into(),
            MAX_BATCH_SIZE.into(),
        )?;
        over(
            "max_queue_delay_us",
            self.max_queue_delay_us,
            MAX_QUEUE_DELAY_US,
        )?;
        over("replicas", self.replicas.into(), MAX_REPLICAS.into())?;
        over(
            "max_replicas",
            self.max_replicas.into(),
            MAX_REPLICAS.into(),
        )?;
        over(
            "target_queue_ms",
            self.target_queue_ms.into(),
            MAX_TARGET_QUEUE_MS.into(),
        )?;
        if self.preferred_batch_sizes.len() > MAX_PREFERRED_BATCH_SIZES {
            return Err(format!(
                "{} preferred batch sizes; at most {MAX_PREFERRED_BATCH_SIZES}",
                self.preferred_batch_sizes.len()
            ));
        }
        let largest = match self.max_batch_size {
            0 => MAX_BATCH_SIZE,
            n => n,
        };
        if let Some(&bad) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&n| n == 0 || n > largest)
        {
            return Err(format!(
                "preferred batch size {bad} is outside 1..={largest}"
            ));
        }
        Ok(())
    }
}

/// One registered version of a module. Immutable once stored, except for
/// [`Manifest::tags`], which is filled in when the manifest is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Owning tenant.
    pub tenant: String,
    /// Module name within the tenant.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// What it is.
    pub kind: Kind,
    /// Digest of the module's bytes.
    pub digest: Digest,
    /// Size of the module's bytes.
    pub size: u64,
    /// Inputs and outputs, read at validation.
    pub signature: Signature,
    /// Executor hints (models).
    #[serde(default)]
    pub executor: ExecutorHints,
    /// The world a component targets (`op`, `pipeline`); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub world: String,
    /// Modules this one uses, pinned as `name@version`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// When it was registered (RFC 3339, UTC).
    pub created_at: String,
    /// Who registered it: `tenant (key <id>)`.
    pub created_by: String,
    /// Tags pointing at this version when read (not stored).
    #[serde(skip)]
    pub tags: Vec<String>,
}

impl Manifest {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// RFC 3339 (UTC, second precision) for a Unix time in seconds.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_737_599), "2026-11-26T23:59:59Z");
    }

    #[test]
    fn executor_hints_have_ceilings() {
        use super::{ExecutorHints, hint_limits::*};
        assert_eq!(ExecutorHints::default().check(), Ok(()));
        let ok = ExecutorHints {
            instances: MAX_INSTANCES,
            max_batch_size: 64,
            max_queue_delay_us: MAX_QUEUE_DELAY_US,
            preferred_batch_sizes: vec![8, 64],
            replicas: MAX_REPLICAS,
            max_replicas: MAX_REPLICAS,
            target_queue_ms: MAX_TARGET_QUEUE_MS,
            ..Default::default()
        };
        assert_eq!(ok.check(), Ok(()));
        let refused = |h: ExecutorHints| h.check().unwrap_err();
        let e = refused(ExecutorHints {
            instances: u32::MAX,
            ..Default::default()
        });
        assert_eq!(e, "executor instances is 4294967295; at most 64");
        assert!(
            refused(ExecutorHints {
                max_queue_delay_us: u64::MAX,
                ..Default::default()
            })
            .contains("max_queue_delay_us")
        );
        assert!(
            refused(ExecutorHints {
                max_batch_size: 8,
                preferred_batch_sizes: vec![16],
                ..Default::default()
            })
            .contains("preferred batch size 16 is outside 1..=8")
        );
        assert!(
            refused(ExecutorHints {
                preferred_batch_sizes: vec![0],
                ..Default::default()
            })
            .contains("preferred batch size 0")
        );
        assert!(
            refused(ExecutorHints {
                device: "x".repeat(65),
                ..Default::default()
            })
            .contains("device is 65 bytes")
        );
    }
}
