//! Conduit's sandbox: user code as WebAssembly components, run in wasmtime
//! (the only crate that links it) beside the model executors.
//!
//! - [`Runtime`] loads components (compiled once, cached on disk by digest,
//!   validated against the `conduit:compute` worlds, `describe()` read) and
//!   calls them concurrently, each call in a pooled instance (warm, of the
//!   same tenant, or fresh) with a memory cap and a wall-clock deadline
//!   ([`SandboxLimits`], per call in a [`CallContext`]).
//! - [`Tensor`] is the host's tensor: shared bytes in the KServe v2 layout.
//!   Components receive handles; routing or slicing copies nothing.
//! - [`RuntimeError`] keeps guest errors apart from each kind of trap.
//!
//! ```no_run
//! use conduit_runtime::{CallContext, Runtime, RuntimeConfig, Tensor};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let component = runtime.load(&std::fs::read("bert_tokenizer.wasm")?).await?;
//! println!("{:?}", component.signature());
//! let text = Tensor::from_byte_strings(vec![1], ["Hello, world"])?;
//! let outputs = runtime
//!     .process(&component, vec![("text".into(), text)], &[], &CallContext::new("tenant-a"))
//!     .await?;
//! # Ok(()) }
//! ```

mod abi;
mod bindings;
mod budget;
mod cache;
mod call;
mod capture;
mod component;
mod compute;
mod convert;
mod engine;
mod error;
mod imports;
mod limits;
mod linker;
mod model;
mod pool;
mod runtime;
mod state;

pub use abi::WitVersion;
pub use bindings::{Param, ParamValue};
pub use call::CallContext;
pub use component::Component;
pub use conduit_types::{
    DataType, Digest, DigestParseError, MAX_RANK, MAX_SIGNATURE_TENSORS, MAX_TENSOR_NAME_BYTES,
    NamedTensors, Signature, Tensor, TensorError, TensorSpec, World, element_count,
};
pub use error::{GuestError, RuntimeError};
pub use limits::{EngineConfig, SandboxLimits};
pub use model::{InferFuture, ModelBackend};
pub use runtime::{Runtime, RuntimeConfig};
