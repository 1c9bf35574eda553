//! The on-disk cache of compiled components, keyed by the component's digest
//! and the engine's compatibility hash, so a restart (or a second process)
//! skips compilation.
//!
//! A compiled artifact is native code that `Component::deserialize` runs
//! without checking where it came from: wasmtime checks compatibility, not
//! integrity. So each artifact is sealed — prefixed with a keyed blake3 MAC
//! over the component's digest, the engine's compatibility key and the
//! artifact — under a secret key kept *beside* the cache directory
//! (`<cache>.key`, mode 0600). A file that does not verify (written by
//! someone without the key, truncated, or another component's artifact
//! copied over it) is discarded and the component recompiled, never run.

use crate::{Digest, RuntimeError};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes of the MAC that seals each cached artifact.
const SEAL: usize = blake3::OUT_LEN;

/// Compiles components, reusing artifacts a previous run cached for this engine.
pub(crate) struct Compiler {
    engine: Engine,
    /// The cache directory and the key that seals its artifacts; `None`
    /// without a cache (or when the key cannot be read or made).
    dir: Option<(PathBuf, [u8; 32])>,
    compat: String,
}

impl Compiler {
    pub(crate) fn new(engine: Engine, dir: Option<PathBuf>, compat: String) -> Self {
        let dir = dir.and_then(|dir| match cache_key(&dir) {
            Ok(key) => Some((dir, key)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "compiled components will not be cached: no cache key: {e}");
                None
            }
        });
        Self {
            engine,
            dir,
            compat,
        }
    }

    /// The MAC sealing `artifact` as the compiled form of `digest`.
    fn seal(&self, key: &[u8; 32], digest: &Digest, artifact: &[u8]) -> blake3::Hash {
        let mut mac = blake3::Hasher::new_keyed(key);
        mac.update(digest.hex().as_bytes());
        mac.update(b"\0");
        mac.update(self.compat.as_bytes());
        mac.update(b"\0");
        mac.update(artifact);
        mac.finalize()
    }

    /// The cached artifacts of `digest`, for any engine (a file name is
    /// `{hex}-{compatibility}.cwasm`).
    fn artifacts(&self, digest: &Digest) -> Vec<(PathBuf, u64)> {
        let Some((dir, _)) = &self.dir else {
            return Vec::new();
        };
        let prefix = format!("{}-", digest.hex());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".cwasm")
            })
            .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
            .collect()
    }

    /// Bytes the cached artifacts of `digest` take on disk.
    pub(crate) fn artifact_bytes(&self, digest: &Digest) -> u64 {
        self.artifacts(digest).iter().map(|(_, n)| n).sum()
    }

    /// Removes the cached artifacts of `digest`; returns the bytes freed.
    pub(crate) fn forget(&self, digest: &Digest) -> u64 {
        let mut freed = 0;
        for (path, size) in self.artifacts(digest) {
            match std::fs::remove_file(&path) {
                Ok(()) => freed += size,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "removing a compiled artifact: {e}")
                }
            }
        }
        freed
    }

    /// Compiles `bytes`, or loads the cached artifact for `digest`.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidComponent`] when the bytes are not a valid component.
    pub(crate) fn compile(&self, digest: &Digest, bytes: &[u8]) -> Result<Component, RuntimeError> {
        let cached = self.dir.as_ref().map(|(dir, key)| {
            (
                dir.join(format!("{}-{}.cwasm", digest.hex(), self.compat)),
                key,
            )
        });
        if let Some((path, key)) = &cached
            && path.exists()
        {
            // Read into memory rather than mmap the file: a cache entry that is
            // truncated or replaced under a running process must not crash it.
            let loaded = std::fs::read(path)
                .map_err(wasmtime::Error::from)
                .and_then(|file| {
                    if file.len() < SEAL {
                        return Err(wasmtime::Error::msg("shorter than its seal"));
                    }
                    let (mac, artifact) = file.split_at(SEAL);
                    // `blake3::Hash` compares in constant time.
                    if blake3::Hash::from_slice(mac).ok() != Some(self.seal(key, digest, artifact))
                    {
                        return Err(wasmtime::Error::msg(
                            "its seal does not verify: not written by this host for this component",
                        ));
                    }
                    // SAFETY: the seal proves the artifact was written by this
                    // host's `Component::serialize` for this component's digest and
                    // an engine with the same compatibility key (wasmtime checks
                    // that key and the artifact's header again).
                    unsafe { Component::deserialize(&self.engine, artifact) }
                });
            match loaded {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "discarding unreadable cached component: {e}");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(RuntimeError::InvalidComponent(
                "not a WebAssembly binary (missing the \\0asm header)".into(),
            ));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::InvalidComponent(format!("{e:#}")))?;
        if let Some((path, key)) = &cached {
            let written = component
                .serialize()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|artifact| {
                    let mac = self.seal(key, digest, &artifact);
                    write_atomically(path, &[mac.as_bytes(), &artifact[..]])
                });
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), "not caching compiled component: {e}");
            }
        }
        Ok(component)
    }
}

/// The key sealing the artifacts of the cache `dir`: read from `<dir>.key`,
/// or made (32 random bytes, mode 0600) on first use.
fn cache_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let mut path = dir.as_os_str().to_owned();
    path.push(".key");
    let path = PathBuf::from(path);
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| std::io::Error::other(format!("{} is not a 32-byte key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(mut file) => {
                    std::io::Write::write_all(&mut file, &key)?;
                    file.sync_all()?;
                    Ok(key)
                }
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => cache_key(dir),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Writes `parts` to a temporary file, then renames it into place.
fn write_atomically(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, parts.concat())?;
    std::fs::rename(&tmp, path)
}
