//! What can go wrong talking to the cluster's coordination layer.

/// Errors of the coordination layer (NATS JetStream).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// NATS could not be reached.
    #[error("cannot reach NATS at {url}: {message}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why.
        message: String,
    },
    /// A bucket could not be opened or created.
    #[error("cannot open the NATS key-value bucket `{bucket}`: {message}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// Why.
        message: String,
    },
    /// A key-value operation failed (the link is down, or NATS refused).
    #[error("NATS key-value {op} of `{key}` failed: {message}")]
    Kv {
        /// The operation.
        op: String,
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
    /// A compare-and-swap lost: someone else wrote the key first.
    #[error("`{0}` was changed by someone else first")]
    Conflict(String),
    /// A record did not decode (written by an incompatible version?).
    #[error("cannot decode the record `{key}`: {message}")]
    Decode {
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
}
