//! The on-disk cache of precompiled components.
//!
//! An entry is keyed by the component's content digest and the engine's
//! compatibility hash (wasmtime version plus every setting that affects
//! code generation), so a restarted host deserializes in milliseconds
//! instead of recompiling, and a host with different settings never loads
//! an incompatible artifact.
//!
//! Loading an artifact maps native code into the process, so the cache
//! directory must be writable only by the host; it lives inside the data
//! directory, which the operator keeps private.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::Error;
use crate::model::Digest;

/// Where a component came from when it was prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled from the component's bytes.
    Compiled,
    /// Loaded from a precompiled artifact on disk.
    Cache,
}

#[derive(Debug)]
pub(crate) struct Cache {
    dir: Option<PathBuf>,
    compat: String,
    max_bytes: u64,
}

impl Cache {
    pub(crate) fn new(
        engine: &Engine,
        dir: Option<PathBuf>,
        max_bytes: u64,
    ) -> Result<Self, Error> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            dir,
            compat: format!("{:016x}", h.finish()),
            max_bytes,
        })
    }

    fn path(&self, dir: &Path, digest: &Digest) -> PathBuf {
        dir.join(format!("{}-{}.cwasm", digest.hex(), self.compat))
    }

    /// Loads the precompiled artifact for `digest`, or compiles `bytes`.
    /// Returns the component, where it came from and how long that took.
    /// Nothing is written here: the caller keeps a compiled component with
    /// [`Cache::keep`] once it has checked it, so a rejected component
    /// never leaves an artifact behind.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(Component, Source, std::time::Duration), Error> {
        let started = Instant::now();
        if let Some(dir) = &self.dir {
            let path = self.path(dir, digest);
            if path.exists() {
                // SAFETY: the file was written by `store` below from a
                // component this engine compiled; the cache directory is
                // private to the host (see the module docs), and wasmtime
                // checks the artifact's engine compatibility on load.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(c) => {
                        // The modification time is the recency the bound
                        // evicts by.
                        touch(&path);
                        return Ok((c, Source::Cache, started.elapsed()));
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable precompiled artifact");
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| {
            Error::Invalid(format!(
                "the component does not compile: {}",
                root_message(&e)
            ))
        })?;
        Ok((component, Source::Compiled, started.elapsed()))
    }

    /// Stores the artifact of a compiled, accepted component, then trims
    /// the cache to its bound. The cache only saves compile time, so a
    /// failure here is logged and the component is used all the same.
    pub(crate) fn keep(&self, digest: &Digest, component: &Component) {
        let Some(dir) = &self.dir else {
            return;
        };
        let path = self.path(dir, digest);
        let stored = component
            .serialize()
            .map_err(|e| root_message(&e))
            .and_then(|artifact| store(&path, &artifact).map_err(|e| e.to_string()));
        match stored {
            Ok(()) => prune(dir, self.max_bytes, &path),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot store a precompiled artifact; the next start compiles the component again");
            }
        }
    }
}

/// Writes atomically: a crash mid-write leaves no truncated artifact, and
/// two writers of one artifact (threads or processes sharing the
/// directory) never share a temporary file.
fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::write(&tmp, artifact).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Marks an artifact as just used.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Deletes the least recently used artifacts in `dir` until they take at
/// most `max_bytes`, never `keep` (the one just written). Failures are
/// logged, not returned: a cache that cannot shrink still works.
fn prune(dir: &Path, max_bytes: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut artifacts: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
    if total <= max_bytes {
        return;
    }
    artifacts.sort();
    for (_, len, path) in artifacts {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => total = total.saturating_sub(len),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot evict a precompiled artifact");
            }
        }
    }
}

/// The whole chain of an error as one line.
pub(crate) fn root_message(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}
