//! How a model is run: backend, device, threads, batching.

use super::ExecutorError;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    /// ONNX Runtime (`ort`): the production engine, CPU/CUDA/TensorRT.
    #[default]
    Ort,
    /// tract: pure Rust, CPU; serves where no shared library is available.
    Tract,
    /// A KServe v2 server on the same host (a sidecar).
    Remote,
}

impl BackendKind {
    /// `ort`, `tract` or `remote`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ort => "ort",
            Self::Tract => "tract",
            Self::Remote => "remote",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = ExecutorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ort" | "onnxruntime" => Ok(Self::Ort),
            "tract" => Ok(Self::Tract),
            "remote" => Ok(Self::Remote),
            other => Err(ExecutorError::InvalidInput(format!(
                "unknown backend `{other}` (ort, tract or remote)"
            ))),
        }
    }
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA device N (ONNX Runtime's CUDA execution provider).
    Cuda(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = ExecutorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    ExecutorError::InvalidInput(format!("unknown device `{s}` (cpu or cuda:N)"))
                }),
        }
    }
}

/// Graph optimisation level (ONNX Runtime's; tract always optimises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptLevel {
    /// No graph optimisation.
    Disabled,
    /// Basic (constant folding, redundant node elimination).
    Basic,
    /// Extended (node fusions).
    Extended,
    /// Everything, including layout optimisations.
    #[default]
    All,
}

/// Dynamic batching of one model's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows in one batch; 1 disables batching. Requests with more rows
    /// are split.
    pub max_batch_size: usize,
    /// How long the first request of a batch may wait for others.
    pub max_queue_delay: Duration,
    /// Batch sizes to dispatch at once when reached (Triton's
    /// `preferred_batch_size`): a batch that reaches one leaves without
    /// waiting for the delay to run out.
    pub preferred_batch_sizes: Vec<usize>,
}

impl Default for BatchConfig {
    /// Batches of up to 8 rows, waiting at most 500 µs.
    fn default() -> Self {
        Self {
            max_batch_size: 8,
            max_queue_delay: Duration::from_micros(500),
            preferred_batch_sizes: Vec::new(),
        }
    }
}

/// Everything about how one model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Name for logs and errors.
    pub name: String,
    /// Engine.
    pub backend: BackendKind,
    /// Device.
    pub device: Device,
    /// Threads inside one run (0: the engine's default).
    pub intra_threads: usize,
    /// Graph optimisation level.
    pub optimization: OptLevel,
    /// Dynamic batching.
    pub batching: BatchConfig,
    /// Worker threads, each with its own copy of the loaded model.
    pub instances: usize,
    /// Requests that may wait in the queue before new ones are refused.
    pub queue_capacity: usize,
    /// A request that cannot share a batch runs on the caller's thread,
    /// skipping the queue's two thread hand-offs, while an instance is idle,
    /// nothing is queued, and recent runs averaged at most this (default
    /// 100 µs, about what the hand-offs cost; zero: always queue).
    pub inline_below: Duration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "model".into(),
            backend: BackendKind::default(),
            device: Device::default(),
            intra_threads: 0,
            optimization: OptLevel::default(),
            batching: BatchConfig::default(),
            instances: 1,
            queue_capacity: 1024,
            inline_below: Duration::from_micros(100),
        }
    }
}
