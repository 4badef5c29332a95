//! Compiling components, through two caches: an in-memory map (a plugin loaded twice in one
//! process is compiled once) and, when the host has a cache directory, compiled artifacts
//! on disk, so that a restart loads plugins in about a tenth of a millisecond instead of
//! compiling them for tens of milliseconds (seconds for large components).
//!
//! A cache file is `<sha256 of the wasm bytes>-<hash of the engine's compilation
//! settings>.cwasm`: a different plugin or a differently configured/versioned engine never
//! reads another's file. Files are written atomically (temporary file + rename).
//! `Component::deserialize_file` trusts its input, so only files this code wrote under
//! these names are ever loaded; a file that fails to load is recompiled and overwritten.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How many plugin loads were served from where; see [`PluginHost::cache_stats`](super::PluginHost::cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled from WebAssembly (cache misses, or no cache directory).
    pub compiled: u64,
    /// Components loaded from a `.cwasm` file in the cache directory.
    pub disk_hits: u64,
    /// Components found already loaded in this process.
    pub memory_hits: u64,
}

/// Turns wasm bytes into a [`Component`], as cheaply as the caches allow.
pub(crate) struct ComponentCache {
    engine: Engine,
    dir: Option<PathBuf>,
    engine_key: String,
    loaded: Mutex<HashMap<[u8; 32], Component>>,
    compiled: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
}

/// Feeds `Hash` output into SHA-256, for a key that is stable across builds (std's
/// `DefaultHasher` is not guaranteed to be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is read with `finalize`
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl ComponentCache {
    /// A cache for `engine`, persisting to `dir` when given (which must exist).
    pub(crate) fn new(engine: Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        ComponentCache {
            engine,
            dir,
            engine_key,
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
        }
    }

    /// Counters of where loads were served from.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// Drops the in-memory map; the files on disk stay.
    pub(crate) fn forget_loaded(&self) {
        self.loaded.lock().clear();
    }

    /// The cache file a component with this content hash uses.
    pub(crate) fn cache_path(&self, digest: &[u8; 32]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", hex(digest), self.engine_key)))
    }

    /// The SHA-256 of `wasm`.
    pub(crate) fn digest(wasm: &[u8]) -> [u8; 32] {
        Sha256::digest(wasm).into()
    }

    /// Loads `wasm` as a component. Blocking (compiles or maps a file): call it on a
    /// blocking thread. The error is the compiler's message.
    pub(crate) fn load(&self, wasm: &[u8]) -> Result<Component, String> {
        let digest = Self::digest(wasm);
        if let Some(c) = self.loaded.lock().get(&digest) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c.clone());
        }
        let component = match self.cache_path(&digest) {
            None => {
                let c = Component::new(&self.engine, wasm).map_err(|e| format!("{e:#}"))?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                c
            }
            Some(path) => self.load_through_disk(wasm, &path)?,
        };
        self.loaded.lock().insert(digest, component.clone());
        Ok(component)
    }

    fn load_through_disk(&self, wasm: &[u8], path: &Path) -> Result<Component, String> {
        if path.is_file() {
            // SAFETY: the file is named after the content hash and engine settings and was
            // written by `store` below (atomically, so never half-written); wasmtime
            // additionally checks its header and engine compatibility.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(c) => {
                    self.disk_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(c);
                }
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    "cached plugin cannot be loaded ({e:#}); compiling it again"
                ),
            }
        }
        let artifact = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| format!("{e:#}"))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = store(path, &artifact) {
            // The cache is an optimisation: a read-only or full disk must not stop the plugin.
            tracing::warn!(file = %path.display(), "cannot write the plugin cache: {e}");
        }
        // SAFETY: `artifact` was produced by `precompile_component` of this very engine.
        unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|e| format!("{e:#}"))
    }
}

/// Writes `bytes` to `path` atomically: a unique temporary file in the same directory,
/// then a rename over the destination.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
