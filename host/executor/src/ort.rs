//! ONNX Runtime through `ort`, with the shared library loaded at run time
//! (`ORT_DYLIB_PATH` or an explicit path): CPU everywhere, CUDA and TensorRT
//! where the library has them.

use super::{Backend, Device, ExecutorError, LoadedModel, ModelConfig, OptLevel};
use conduit_types::{DataType, NamedTensors, Signature, Tensor};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor as OrtTensor};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where the host looks for ONNX Runtime when no path is configured.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// The ONNX Runtime backend. One environment per process (ONNX Runtime's
/// rule); one session per worker thread (`Session::run` takes `&mut self`).
#[derive(Clone)]
pub struct OrtBackend {
    env: Arc<Environment>,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend").finish_non_exhaustive()
    }
}

/// The process's ONNX Runtime, once loaded (failures are not kept, so a
/// corrected path can be tried again).
static ENV: Mutex<Option<(PathBuf, Arc<Environment>)>> = Mutex::new(None);

impl OrtBackend {
    /// Loads ONNX Runtime from `library`, or from `$ORT_DYLIB_PATH` when
    /// `None`. The first successful call fixes the library for the process.
    ///
    /// # Errors
    /// [`ExecutorError::Unavailable`] naming both the option and the variable
    /// when no library is configured, or when it fails to load.
    pub fn new(library: Option<PathBuf>) -> Result<Self, ExecutorError> {
        let path = library
            .or_else(|| std::env::var_os(ORT_DYLIB_ENV).map(PathBuf::from))
            .ok_or_else(|| {
                ExecutorError::Unavailable(format!(
                    "ONNX Runtime is not configured: pass --ort-library PATH or set {ORT_DYLIB_ENV} \
                     to libonnxruntime.so (`make venv` installs the onnxruntime wheel, which ships it)"
                ))
            })?;
        let mut env = ENV.lock().expect("ort environment lock");
        if let Some((first, env)) = env.as_ref() {
            return if *first == path {
                Ok(Self { env: env.clone() })
            } else {
                Err(ExecutorError::Unavailable(format!(
                    "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                    first.display(),
                    path.display()
                )))
            };
        }
        let unavailable = |e: String| {
            ExecutorError::Unavailable(format!(
                "{e} (set --ort-library or {ORT_DYLIB_ENV} to a libonnxruntime.so ≥ 1.31)"
            ))
        };
        let builder = ort::init_from(&path).map_err(|e| {
            unavailable(format!(
                "cannot load ONNX Runtime from {}: {e}",
                path.display()
            ))
        })?;
        let builder = builder
            .with_name("conduit")
            .with_logger(Arc::new(forward_log));
        let loaded = Arc::new(builder.build().map_err(|e| {
            unavailable(format!(
                "cannot start ONNX Runtime from {}: {e}",
                path.display()
            ))
        })?);
        *env = Some((path, loaded.clone()));
        Ok(Self { env: loaded })
    }
}

/// ONNX Runtime's log, into `tracing` (target `ort`) instead of its own
/// coloured lines on stderr. An ONNX Runtime *error* is also the error its
/// API call returns, which the data plane reports to the client and logs
/// once per failed request: it is logged here only at `debug`, so a client
/// sending bad tensors cannot flood the log with two lines per request.
fn forward_log(level: ort::logging::LogLevel, category: &str, id: &str, at: &str, message: &str) {
    use ort::logging::LogLevel;
    match level {
        LogLevel::Fatal => tracing::error!(target: "ort", category, id, at, "{message}"),
        LogLevel::Warning => tracing::warn!(target: "ort", category, id, at, "{message}"),
        LogLevel::Error | LogLevel::Info => {
            tracing::debug!(target: "ort", category, id, at, "{message}")
        }
        LogLevel::Verbose => tracing::trace!(target: "ort", category, id, at, "{message}"),
    }
}

fn load_err(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Load {
        backend: "ort",
        message: e.to_string(),
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "ort"
    }

    fn load(
        &self,
        bytes: &[u8],
        signature: &Signature,
        config: &ModelConfig,
    ) -> Result<Box<dyn LoadedModel>, ExecutorError> {
        // Builder errors carry the builder (not Send): keep only the message.
        let level = match config.optimization {
            OptLevel::Disabled => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        };
        // Sessions log warnings and worse: the custom logger receives
        // everything the session produces, and verbose logging on every run
        // costs time.
        let mut builder = Session::builder(&self.env)
            .map_err(load_err)?
            .with_log_level(ort::logging::LogLevel::Warning)
            .map_err(load_err)?
            .with_optimization_level(level)
            .map_err(load_err)?;
        if config.intra_threads > 0 {
            builder = builder
                .with_intra_threads(config.intra_threads)
                .map_err(load_err)?;
        }
        if let Device::Cuda(n) = config.device {
            let id = n as i32;
            builder = builder
                .with_execution_providers([
                    // TensorRT where the library has it, else CUDA; never a
                    // silent fall back to the CPU.
                    ort::ep::TensorRT::default().with_device_id(id).build(),
                    ort::ep::CUDA::default()
                        .with_device_id(id)
                        .build()
                        .error_on_failure(),
                ])
                .map_err(|e| {
                    ExecutorError::Unavailable(format!(
                        "device cuda:{n} is not usable with this ONNX Runtime: {e}"
                    ))
                })?;
        }
        let session = builder.commit_from_memory(bytes).map_err(load_err)?;
        Ok(Box::new(OrtModel {
            session,
            outputs: signature
                .outputs
                .iter()
                .map(|s| (s.name.clone(), s.dtype))
                .collect(),
        }))
    }
}

struct OrtModel {
    session: Session,
    outputs: Vec<(String, DataType)>,
}

fn run_err(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Backend(e.to_string())
}

fn to_ort(t: &Tensor) -> Result<DynValue, ExecutorError> {
    let shape = t.shape().to_vec();
    let bad = |e: conduit_types::TensorError| ExecutorError::InvalidInput(e.to_string());
    Ok(match t.dtype() {
        DataType::Fp32 => OrtTensor::from_array((shape, t.to_f32().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Fp64 => OrtTensor::from_array((shape, t.to_f64().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Int64 => OrtTensor::from_array((shape, t.to_i64().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Int32 => OrtTensor::from_array((shape, t.to_i32().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Int16 => OrtTensor::from_array((shape, t.to_i16().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Int8 => OrtTensor::from_array((shape, t.to_i8().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Uint8 => OrtTensor::from_array((shape, t.to_u8().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Uint16 => OrtTensor::from_array((shape, t.to_u16().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Uint32 => OrtTensor::from_array((shape, t.to_u32().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Uint64 => OrtTensor::from_array((shape, t.to_u64().map_err(bad)?))
            .map_err(run_err)?
            .into_dyn(),
        DataType::Bool => {
            let v: Vec<bool> = t.data().iter().map(|b| *b != 0).collect();
            OrtTensor::from_array((shape, v))
                .map_err(run_err)?
                .into_dyn()
        }
        other => {
            return Err(ExecutorError::InvalidInput(format!(
                "the ort backend does not take {other} inputs"
            )));
        }
    })
}

fn from_ort(name: &str, dtype: DataType, v: &DynValue) -> Result<Tensor, ExecutorError> {
    macro_rules! extract {
        ($ty:ty, $from:ident) => {{
            let (shape, data) = v.try_extract_tensor::<$ty>().map_err(run_err)?;
            Tensor::$from(shape.to_vec(), data)
        }};
    }
    let t = match dtype {
        DataType::Fp32 => extract!(f32, from_f32),
        DataType::Fp64 => extract!(f64, from_f64),
        DataType::Int64 => extract!(i64, from_i64),
        DataType::Int32 => extract!(i32, from_i32),
        DataType::Int16 => extract!(i16, from_i16),
        DataType::Int8 => extract!(i8, from_i8),
        DataType::Uint8 => extract!(u8, from_u8),
        DataType::Uint16 => extract!(u16, from_u16),
        DataType::Uint32 => extract!(u32, from_u32),
        DataType::Uint64 => extract!(u64, from_u64),
        DataType::Bool => {
            let (shape, data) = v.try_extract_tensor::<bool>().map_err(run_err)?;
            let bytes: Vec<u8> = data.iter().map(|b| u8::from(*b)).collect();
            Tensor::new(DataType::Bool, shape.to_vec(), bytes.into())
        }
        other => {
            return Err(ExecutorError::Backend(format!(
                "output `{name}` is {other}, which the ort backend does not return"
            )));
        }
    };
    t.map_err(|e| ExecutorError::Backend(format!("output `{name}`: {e}")))
}

impl LoadedModel for OrtModel {
    fn run(&mut self, inputs: &NamedTensors) -> Result<NamedTensors, ExecutorError> {
        let values = inputs
            .iter()
            .map(|(n, t)| Ok((n.as_str(), to_ort(t)?)))
            .collect::<Result<Vec<_>, ExecutorError>>()?;
        let outputs = self.session.run(values).map_err(run_err)?;
        self.outputs
            .iter()
            .map(|(name, dtype)| {
                let value = outputs.get(name).ok_or_else(|| {
                    ExecutorError::Backend(format!("the model produced no output `{name}`"))
                })?;
                Ok((name.clone(), from_ort(name, *dtype, value)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only ONNX Runtime use in this test binary: the first load fails,
    // and the error names both ways of configuring the library.
    #[test]
    fn a_missing_library_names_the_option_and_the_variable() {
        let err = OrtBackend::new(Some("/nonexistent/libonnxruntime.so".into())).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ExecutorError::Unavailable(_)), "{err:?}");
        assert!(
            msg.contains("--ort-library") && msg.contains(ORT_DYLIB_ENV),
            "{msg}"
        );
        assert!(msg.contains("/nonexistent/libonnxruntime.so"), "{msg}");
    }
}
