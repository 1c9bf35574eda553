//! The registry's errors. The one mapping to gRPC status codes is in
//! `service.rs`.

use crate::blob::BlobError;

/// Why a registry operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// No API key, or one the registry does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// The key is valid but may not do this (admin-only operations).
    #[error("{0}")]
    PermissionDenied(String),
    /// No such object in the caller's namespace (objects of other tenants
    /// are reported exactly like missing ones).
    #[error("{0}")]
    NotFound(String),
    /// Malformed input: names, versions, references, a truncated upload, a
    /// digest mismatch, or a module that fails validation.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object exists already with different content (versions are
    /// immutable), or a tenant name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// Refused in the current state, e.g. deleting a version a tag or
    /// another module references.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A tenant limit (upload size, stored bytes) would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The registry cannot be reached (a runner's link to it is down).
    #[error("{0}")]
    Unavailable(String),
    /// The registry's own storage failed.
    #[error("registry storage: {0}")]
    Storage(String),
}

impl From<BlobError> for RegistryError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::DigestMismatch { .. } => Self::InvalidArgument(e.to_string()),
            BlobError::Io(msg) => Self::Storage(msg),
        }
    }
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self {
                Self::Storage(e.to_string())
            }
        }
    )*};
}

storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);
