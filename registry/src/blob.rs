//! The blob store seam: bytes by digest, written whole or not at all.

use crate::Digest;
use bytes::Bytes;
use std::io::Read;
use std::time::SystemTime;

/// A failure of the blob store itself (I/O), or bytes that do not match what
/// the writer promised.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes hash to something other than the expected digest.
    #[error("digest mismatch: expected {expected}, received bytes hash to {actual}")]
    DigestMismatch {
        /// What the uploader declared.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The store could not read or write.
    #[error("blob store: {0}")]
    Io(String),
}

impl BlobError {
    pub(crate) fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        Self::Io(format!("{what}: {e}"))
    }
}

/// One stored blob, as [`BlobStore::list`] reports it.
#[derive(Debug, Clone, Copy)]
pub struct BlobInfo {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (or re-uploaded).
    pub modified: SystemTime,
}

/// What [`BlobWriter::commit`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The digest of the bytes written.
    pub digest: Digest,
    /// How many bytes.
    pub size: u64,
    /// True when the store already held these bytes (nothing new was written).
    pub deduplicated: bool,
}

/// Content-addressed storage. Implementations must make a blob visible only
/// once it is whole and durable, so a crash leaves every blob whole or absent.
///
/// The local directory ([`crate::LocalBlobStore`]) is the embedded default;
/// an object store fits the same five operations.
pub trait BlobStore: Send + Sync + 'static {
    /// Starts writing a new blob; nothing is visible until [`BlobWriter::commit`].
    ///
    /// # Errors
    /// [`BlobError::Io`] when no temporary space can be made.
    fn writer(&self) -> Result<Box<dyn BlobWriter>, BlobError>;

    /// A reader over the blob's bytes, or `None` when it is absent.
    ///
    /// # Errors
    /// [`BlobError::Io`] when it exists but cannot be opened.
    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn Read + Send>>, BlobError>;

    /// The blob's size, or `None` when it is absent.
    ///
    /// # Errors
    /// [`BlobError::Io`] on a storage failure.
    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError>;

    /// Removes a blob; `false` when it was absent.
    ///
    /// # Errors
    /// [`BlobError::Io`] on a storage failure.
    fn delete(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// Every stored blob.
    ///
    /// # Errors
    /// [`BlobError::Io`] on a storage failure.
    fn list(&self) -> Result<Vec<BlobInfo>, BlobError>;

    /// Whether the blob is stored.
    ///
    /// # Errors
    /// [`BlobError::Io`] on a storage failure.
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(self.size(digest)?.is_some())
    }

    /// The whole blob in memory, or `None` when it is absent.
    ///
    /// # Errors
    /// [`BlobError::Io`] on a storage failure.
    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, BlobError> {
        let Some(mut reader) = self.open(digest)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        reader
            .read_to_end(&mut buf)
            .map_err(|e| BlobError::io(format!("reading {digest}"), e))?;
        Ok(Some(buf.into()))
    }
}

/// A blob being written: bytes are hashed as they arrive. Dropping a writer
/// without committing discards everything written.
pub trait BlobWriter: Send {
    /// Appends bytes.
    ///
    /// # Errors
    /// [`BlobError::Io`] on a storage failure.
    fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;

    /// Bytes written so far.
    fn written(&self) -> u64;

    /// Verifies the digest (when `expected` is given), makes the bytes
    /// durable and visible under their digest, and reports what was stored.
    ///
    /// # Errors
    /// [`BlobError::DigestMismatch`] (nothing is stored) or [`BlobError::Io`].
    fn commit(self: Box<Self>, expected: Option<&Digest>) -> Result<Committed, BlobError>;
}
