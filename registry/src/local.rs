//! The embedded blob store: a local directory, written atomically.
//!
//! Layout: `<root>/blake3/<2 hex>/<64 hex>` for blobs, `<root>/tmp/` for
//! uploads in progress. A blob is written to a temporary file, fsynced,
//! renamed into place and its directory fsynced, so after a crash a blob is
//! either whole or absent; leftovers in `tmp/` are removed when the store opens.

use crate::Digest;
use crate::blob::{BlobError, BlobInfo, BlobStore, BlobWriter, Committed};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Blobs in a local directory.
#[derive(Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
    next_temp: AtomicU64,
}

impl LocalBlobStore {
    /// Opens (creating if needed) a store rooted at `root`, discarding any
    /// partial upload a previous process left behind.
    ///
    /// # Errors
    /// [`BlobError::Io`] when the directories cannot be created or cleaned.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| BlobError::io(tmp.display(), e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| BlobError::io(tmp.display(), e))?;
        fs::create_dir_all(root.join("blake3")).map_err(|e| BlobError::io(root.display(), e))?;
        sync_dir(&root)?;
        Ok(Self {
            root,
            next_temp: AtomicU64::new(0),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blake3").join(&hex[..2]).join(hex)
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BlobError::io(format!("syncing {}", dir.display()), e))
}

impl BlobStore for LocalBlobStore {
    fn writer(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let file = File::create(&temp).map_err(|e| BlobError::io(temp.display(), e))?;
        Ok(Box::new(LocalWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            temp,
            hasher: blake3::Hasher::new(),
            written: 0,
            root: self.root.clone(),
        }))
    }

    fn open(&self, digest: &Digest) -> Result<Option<Box<dyn Read + Send>>, BlobError> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::io(format!("opening {digest}"), e)),
        }
    }

    fn size(&self, digest: &Digest) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::io(format!("stat {digest}"), e)),
        }
    }

    fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(path.parent().expect("blob has a shard directory"))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::io(format!("deleting {digest}"), e)),
        }
    }

    fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let mut out = Vec::new();
        let top = self.root.join("blake3");
        let shards = fs::read_dir(&top).map_err(|e| BlobError::io(top.display(), e))?;
        for shard in shards {
            let shard = shard.map_err(|e| BlobError::io(top.display(), e))?.path();
            let entries = fs::read_dir(&shard).map_err(|e| BlobError::io(shard.display(), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| BlobError::io(shard.display(), e))?;
                let name = entry.file_name();
                // Anything that is not a digest-named file is not ours.
                let Ok(digest) = format!("blake3:{}", name.to_string_lossy()).parse() else {
                    continue;
                };
                let meta = entry
                    .metadata()
                    .map_err(|e| BlobError::io(entry.path().display(), e))?;
                out.push(BlobInfo {
                    digest,
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }
}

struct LocalWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    hasher: blake3::Hasher,
    written: u64,
    root: PathBuf,
}

impl BlobWriter for LocalWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let file = self.file.as_mut().expect("writer used after commit");
        file.write_all(chunk)
            .map_err(|e| BlobError::io(self.temp.display(), e))?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn commit(mut self: Box<Self>, expected: Option<&Digest>) -> Result<Committed, BlobError> {
        let digest = Digest::from_hasher(&self.hasher);
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(BlobError::DigestMismatch {
                expected: *expected,
                actual: digest,
            });
        }
        let file = self
            .file
            .take()
            .expect("committed once")
            .into_inner()
            .map_err(|e| BlobError::io(self.temp.display(), e.into_error()))?;
        let hex = digest.hex();
        let shard = self.root.join("blake3").join(&hex[..2]);
        let target = shard.join(&hex);
        if target.exists() {
            // Same bytes already stored: keep the old file, refresh its time so
            // a concurrent garbage collection sees it as fresh.
            drop(file);
            let _ = File::options()
                .append(true)
                .open(&target)
                .and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(Committed {
                digest,
                size: self.written,
                deduplicated: true,
            });
        }
        file.sync_all()
            .map_err(|e| BlobError::io(format!("syncing {}", self.temp.display()), e))?;
        drop(file);
        if !shard.exists() {
            fs::create_dir_all(&shard).map_err(|e| BlobError::io(shard.display(), e))?;
            sync_dir(&self.root.join("blake3"))?;
        }
        fs::rename(&self.temp, &target)
            .map_err(|e| BlobError::io(format!("renaming into {}", target.display()), e))?;
        sync_dir(&shard)?;
        Ok(Committed {
            digest,
            size: self.written,
            deduplicated: false,
        })
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Committed writers have renamed (or deduplicated) their file; for the
        // rest this removes the partial upload. Errors are moot here.
        let _ = fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempdir::TempDir, LocalBlobStore) {
        let dir = tempdir::TempDir::new();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn writes_whole_blobs_and_deduplicates() {
        let (_dir, store) = store();
        let mut w = store.writer().unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        let c = w.commit(None).unwrap();
        assert_eq!(c.digest, Digest::of(b"hello world"));
        assert!(!c.deduplicated);
        assert_eq!(store.get(&c.digest).unwrap().unwrap(), &b"hello world"[..]);
        let mut again = store.writer().unwrap();
        again.write(b"hello world").unwrap();
        assert!(again.commit(Some(&c.digest)).unwrap().deduplicated);
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.delete(&c.digest).unwrap());
        assert!(!store.has(&c.digest).unwrap());
    }

    #[test]
    fn mismatch_and_abandoned_writes_leave_nothing() {
        let (dir, store) = store();
        let mut w = store.writer().unwrap();
        w.write(b"abc").unwrap();
        let err = w.commit(Some(&Digest::of(b"xyz"))).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
        let mut w = store.writer().unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn open_discards_partial_uploads() {
        let (dir, store) = store();
        let mut w = store.writer().unwrap();
        w.write(b"left behind").unwrap();
        std::mem::forget(w); // as if the process died mid-upload
        drop(store);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 1);
        let _store = LocalBlobStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}

/// A scratch directory removed on drop (tests only).
#[cfg(test)]
pub(crate) mod tempdir {
    use std::path::{Path, PathBuf};

    /// A fresh directory under the system temp dir.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new() -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("conduit-registry-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
