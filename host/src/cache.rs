//! The on-disk cache of compiled components, keyed by the component's digest
//! and the engine's compatibility hash, so a restart (or a second process)
//! skips compilation.

use crate::{Digest, RuntimeError};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiles components, reusing artifacts a previous run cached for this engine.
pub(crate) struct Compiler {
    engine: Engine,
    dir: Option<PathBuf>,
    compat: String,
}

impl Compiler {
    pub(crate) fn new(engine: Engine, dir: Option<PathBuf>, compat: String) -> Self {
        Self {
            engine,
            dir,
            compat,
        }
    }

    /// The cached artifacts of `digest`, for any engine (a file name is
    /// `{hex}-{compatibility}.cwasm`).
    fn artifacts(&self, digest: &Digest) -> Vec<(PathBuf, u64)> {
        let Some(dir) = &self.dir else {
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
        let cached = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", digest.hex(), self.compat)));
        if let Some(path) = &cached
            && path.exists()
        {
            // Read into memory rather than mmap the file: a cache entry that is
            // truncated or replaced under a running process must not crash it.
            let loaded = std::fs::read(path)
                .map_err(wasmtime::Error::from)
                .and_then(|artifact| {
                    // SAFETY: the artifact was written by `Component::serialize` of an
                    // engine with the same compatibility key (part of the file name),
                    // and wasmtime checks that key and the artifact's header again.
                    unsafe { Component::deserialize(&self.engine, &artifact) }
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
        if let Some(path) = &cached
            && let Err(e) = write_atomically(path, &component)
        {
            tracing::warn!(path = %path.display(), "not caching compiled component: {e}");
        }
        Ok(component)
    }
}

/// Writes the artifact to a temporary file, then renames it into place.
fn write_atomically(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
