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
//!
//! Plugins loaded from files are identified without reading them when possible: an index
//! (in memory, and under `<dir>/files/`) maps a path to its content hash together with the
//! file's identity (device, inode, size, modification and change times in nanoseconds).
//! While all of those match, the file is unchanged, so a cached start costs a `stat` and a
//! memory map instead of reading and hashing the whole component (18 MB for a Python one).
//! Replacing a file (a rename gives a new inode) or writing into it (new ctime) misses the
//! index, and the file is read and hashed again.

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

/// Where a component's WebAssembly comes from.
pub(crate) enum WasmSource {
    /// Bytes in hand (the standard plugins embedded in the binary).
    Bytes(&'static [u8]),
    /// A `.wasm` file.
    File(PathBuf),
}

/// Why a component could not be loaded.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The compiler refused it; the compiler's message.
    Compile(String),
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        let ns = |t: std::io::Result<std::time::SystemTime>| {
            t.ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128)
        };
        FileStamp {
            dev: 0,
            ino: 0,
            len: meta.len(),
            mtime_ns: ns(meta.modified()),
            ctime_ns: ns(meta.created()),
        }
    }

    fn encode(&self, digest: &[u8; 32]) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.dev,
            self.ino,
            self.len,
            self.mtime_ns,
            self.ctime_ns,
            hex(digest)
        )
    }

    fn decode(text: &str) -> Option<(FileStamp, [u8; 32])> {
        let mut f = text.split_whitespace();
        let stamp = FileStamp {
            dev: f.next()?.parse().ok()?,
            ino: f.next()?.parse().ok()?,
            len: f.next()?.parse().ok()?,
            mtime_ns: f.next()?.parse().ok()?,
            ctime_ns: f.next()?.parse().ok()?,
        };
        let hex_digest = f.next()?;
        let mut digest = [0u8; 32];
        if hex_digest.len() != 64 {
            return None;
        }
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex_digest.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some((stamp, digest))
    }
}

/// Turns wasm bytes into a [`Component`], as cheaply as the caches allow.
pub(crate) struct ComponentCache {
    engine: Engine,
    dir: Option<PathBuf>,
    engine_key: String,
    loaded: Mutex<HashMap<[u8; 32], Component>>,
    files: Mutex<HashMap<PathBuf, (FileStamp, [u8; 32])>>,
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
            files: Mutex::new(HashMap::new()),
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

    /// Loads a component and returns it with the SHA-256 of its WebAssembly. Blocking
    /// (reads, compiles or maps files): call it on a blocking thread.
    pub(crate) fn load_source(
        &self,
        source: &WasmSource,
    ) -> Result<(Component, [u8; 32]), LoadError> {
        match source {
            WasmSource::Bytes(wasm) => {
                let digest = Self::digest(wasm);
                Ok((
                    self.load_with_digest(wasm, digest)
                        .map_err(LoadError::Compile)?,
                    digest,
                ))
            }
            WasmSource::File(path) => {
                if let Some(digest) = self.known_digest(path) {
                    if let Some(c) = self.loaded.lock().get(&digest) {
                        self.memory_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok((c.clone(), digest));
                    }
                    if let Some(c) = self.cache_path(&digest).and_then(|p| self.deserialize(&p)) {
                        self.loaded.lock().insert(digest, c.clone());
                        return Ok((c, digest));
                    }
                }
                let wasm = std::fs::read(path).map_err(LoadError::Read)?;
                let digest = Self::digest(&wasm);
                let component = self
                    .load_with_digest(&wasm, digest)
                    .map_err(LoadError::Compile)?;
                self.remember_file(path, digest);
                Ok((component, digest))
            }
        }
    }

    /// The content hash of `path` from the index, while the file is unchanged.
    fn known_digest(&self, path: &Path) -> Option<[u8; 32]> {
        let stamp = FileStamp::of(&std::fs::metadata(path).ok()?);
        if let Some((known, digest)) = self.files.lock().get(path) {
            return (*known == stamp).then_some(*digest);
        }
        let text = std::fs::read_to_string(self.index_path(path)?).ok()?;
        let (known, digest) = FileStamp::decode(&text)?;
        (known == stamp).then_some(digest)
    }

    /// Records that `path` currently has content `digest`. The stamp is taken after the
    /// read: a file changed in between gets a stamp that will not match next time.
    fn remember_file(&self, path: &Path, digest: [u8; 32]) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let stamp = FileStamp::of(&meta);
        self.files
            .lock()
            .insert(path.to_path_buf(), (stamp, digest));
        if let Some(index) = self.index_path(path) {
            let written = index
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| store(&index, stamp.encode(&digest).as_bytes()));
            if let Err(e) = written {
                tracing::debug!(file = %index.display(), "cannot write the plugin file index: {e}");
            }
        }
    }

    /// The on-disk index entry for `path`.
    fn index_path(&self, path: &Path) -> Option<PathBuf> {
        let absolute = std::path::absolute(path).ok()?;
        let key = Self::digest(absolute.as_os_str().as_encoded_bytes());
        self.dir
            .as_ref()
            .map(|d| d.join("files").join(hex(&key[..16])))
    }

    /// Loads `wasm` as a component. The error is the compiler's message.
    pub(crate) fn load(&self, wasm: &[u8]) -> Result<Component, String> {
        self.load_with_digest(wasm, Self::digest(wasm))
    }

    /// Loads `wasm` (whose SHA-256 is `digest`) as a component. The error is the
    /// compiler's message.
    pub(crate) fn load_with_digest(
        &self,
        wasm: &[u8],
        digest: [u8; 32],
    ) -> Result<Component, String> {
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

    /// Maps a cache file written by this code; `None` (with a warning) when it cannot be
    /// loaded, so the caller compiles instead.
    fn deserialize(&self, path: &Path) -> Option<Component> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file is named after the content hash and engine settings and was
        // written by `store` below (atomically, so never half-written); wasmtime
        // additionally checks its header and engine compatibility.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    "cached plugin cannot be loaded ({e:#}); compiling it again"
                );
                None
            }
        }
    }

    fn load_through_disk(&self, wasm: &[u8], path: &Path) -> Result<Component, String> {
        if let Some(c) = self.deserialize(path) {
            return Ok(c);
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
