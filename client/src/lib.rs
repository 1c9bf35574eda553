//! `conduit-client`: Conduit from Rust.
//!
//! - [`ModuleRepository`]: register components, ONNX models and pipelines,
//!   tag, list and delete them.
//! - [`Session`]: a point-to-point path to one runner. A [`Module`]'s
//!   outputs stay on the runner as [`Value`]s until fetched, so a chain of
//!   calls never moves intermediate tensors through the client; when the
//!   runner is lost the session reopens and replays (see [`session`]).
//! - [`blocking`]: the same API without async, for programs and bindings
//!   (the Python package) that have no runtime of their own.
//!
//! ```no_run
//! # async fn example() -> conduit_client::Result<()> {
//! use conduit_client::{Session, SessionOptions, Tensor};
//! let session = Session::open("127.0.0.1:7070", "key", &["paraphrase".into()],
//!     SessionOptions::default()).await?;
//! let paraphrase = session.module("paraphrase").await?;
//! let text = Tensor::from_byte_strings(vec![2, 1], ["a sentence", "another"]).unwrap();
//! let out = paraphrase.run(vec![("text".into(), text.into())]).await?;
//! let similarity = out[0].1.fetch().await?;
//! # let _ = similarity; Ok(()) }
//! ```

pub mod blocking;
mod error;
mod repository;
pub mod session;

pub use conduit_types::{DataType, Tensor, TensorError};
pub use error::{Error, ErrorKind, Result};
pub use repository::{ModelOptions, ModuleEntry, ModuleRepository, Registered};
pub use session::{
    Input, Module, ModuleInfo, Param, RunOptions, Session, SessionOptions, Stats, TensorSpec, Value,
};

/// `addr` as a URL: `host:port` gets `http://`.
pub(crate) fn url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}
