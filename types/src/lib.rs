//! Conduit's shared vocabulary, used by every crate: content digests,
//! tensors (shared bytes in the KServe v2 layout) and their data types,
//! signatures with the one bounds check. No crate converts these: the
//! registry, the sandbox, the executors and the data plane all use them.

mod digest;
mod signature;
mod tensor;
mod text;

pub use digest::{Digest, DigestParseError};
pub use signature::{MAX_SIGNATURE_TENSORS, MAX_TENSOR_NAME_BYTES, Signature, TensorSpec, World};
pub use tensor::{DataType, MAX_RANK, Tensor, TensorError, element_count, pack, unpack};
pub use text::{CLIP_CHARS, MAX_MESSAGE_BYTES, cap_message, clip, escape_controls};

/// Named tensors, as passed to and from models and components.
pub type NamedTensors = Vec<(String, Tensor)>;
