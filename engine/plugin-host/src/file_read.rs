//! `files.read`: which files a `files` grant reaches, and how they are read so that no file
//! can hold a host thread, the engine's shutdown or a secret.
//!
//! Three rules, applied at the point of use whatever the grant says:
//!
//! * **Prefixes.** The path is resolved (`..`, symlinks) and must lie under a granted prefix.
//! * **procfs.** A file on a `proc` file system (wherever it is mounted) is read only if it
//!   is one of the counters a metrics collector needs ([`proc_verdict`]). `/proc` also holds
//!   every process's environment and command line (where operators put secrets), memory
//!   maps, the kernel log (whose read blocks and consumes it) and socket tables: a grant of
//!   `/proc` means "the metrics in /proc", not "everything the engine's user can read".
//! * **Regular files only, opened without blocking.** A FIFO, socket or device is refused
//!   after a non-blocking open (opening a FIFO for reading would otherwise wait for a
//!   writer for ever). The read itself runs on a blocking thread that the call gives up on at
//!   its deadline; while such a read has not returned, the plugin's next reads are refused
//!   rather than piling up stuck threads, and the engine's shutdown never waits for it.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::format_bytes;

/// Files at the top of a procfs mount a collector may read: system-wide counters.
const PROC_SYSTEM_FILES: &[&str] = &[
    "stat",
    "meminfo",
    "loadavg",
    "uptime",
    "vmstat",
    "diskstats",
    "cpuinfo",
    "swaps",
    "partitions",
    "schedstat",
    "softirqs",
    "interrupts",
];

/// Files of `/proc/PID/` (and `/proc/PID/task/TID/`) a collector may read: the process's
/// counters, without its environment, arguments, memory or open files. The mount tables
/// are in because disk metrics need them (the `system` plugin tells real mounts from bind
/// mounts with `mountinfo`); they name mount points and devices, not secrets.
const PROC_PROCESS_FILES: &[&str] = &[
    "stat",
    "statm",
    "status",
    "io",
    "comm",
    "schedstat",
    "mountinfo",
    "mounts",
];

/// Files of `/proc/net/` (and `/proc/PID/net/`): interface and protocol counters, without
/// the socket tables (`tcp`, `udp`, `unix`, ...) that list every connection.
const PROC_NET_FILES: &[&str] = &["dev", "snmp", "snmp6", "netstat", "sockstat", "sockstat6"];

/// The most reads, over all plugins, that may be stuck at once (running past their call's
/// deadline). Each holds one host thread; past this every plugin's reads are refused until
/// some return.
const MAX_BLOCKED_READS: usize = 16;

/// Reads that outlived their call's deadline and have not returned, engine-wide.
static STUCK_READS: AtomicUsize = AtomicUsize::new(0);

/// Whether one read has returned, and whether it was counted as stuck.
#[derive(Debug, Default)]
struct ReadState {
    done: bool,
    stuck: bool,
}

/// Held by the reading thread: when dropped (the read returned, or the job panicked) the
/// plugin may read again and a read counted as stuck is no longer.
struct ReadFinished {
    in_progress: Arc<Mutex<Option<(String, Instant)>>>,
    state: Arc<Mutex<ReadState>>,
}

impl Drop for ReadFinished {
    fn drop(&mut self) {
        *self.in_progress.lock() = None;
        let mut st = self.state.lock();
        st.done = true;
        if st.stuck {
            STUCK_READS.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One plugin's access to files: its granted prefixes, size cap and the read it has in
/// progress.
#[derive(Debug)]
pub(crate) struct FileAccess {
    instance: String,
    /// Granted prefixes, canonicalised when they exist.
    prefixes: Vec<PathBuf>,
    /// `limits.max_file_size`.
    max_file_size: u64,
    /// The path and start of a read that is still running on its thread, if any.
    in_progress: Arc<Mutex<Option<(String, Instant)>>>,
}

impl FileAccess {
    /// Access for `instance` to `prefixes` (resolved to absolute paths already).
    pub(crate) fn new(instance: &str, prefixes: &[PathBuf], max_file_size: u64) -> FileAccess {
        FileAccess {
            instance: instance.to_string(),
            prefixes: prefixes
                .iter()
                // A prefix that does not exist (yet) is kept as written: nothing under it
                // can be read until it exists, and then its canonical form may differ, so
                // granting it is at worst useless, never wider than intended.
                .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
                .collect(),
            max_file_size,
            in_progress: Arc::new(Mutex::new(None)),
        }
    }

    /// `files.read` as the guest sees it: the whole file, or a message saying why not.
    /// Returns within `timeout` whatever the file does.
    pub(crate) async fn read(
        self: &Arc<Self>,
        path: String,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let access = Arc::clone(self);
        let thread_path = path.clone();
        self.read_with(path, timeout, move || access.read_now(&thread_path))
            .await
    }

    /// Runs `job` (the read of `path`) on a thread of its own and waits for it at most
    /// `timeout`. Refused while an earlier read of this plugin has not returned, or while
    /// [`MAX_BLOCKED_READS`] reads engine-wide have outlived their call's deadline.
    pub(crate) async fn read_with(
        &self,
        path: String,
        timeout: Duration,
        job: impl FnOnce() -> Result<Vec<u8>, String> + Send + 'static,
    ) -> Result<Vec<u8>, String> {
        {
            let mut slot = self.in_progress.lock();
            if let Some((stuck, since)) = slot.as_ref() {
                return Err(format!(
                    "an earlier read of `{stuck}` has not returned after {:.1?} (the file \
                     blocks); this plugin's reads are refused until it does",
                    since.elapsed()
                ));
            }
            if STUCK_READS.load(Ordering::SeqCst) >= MAX_BLOCKED_READS {
                return Err(format!(
                    "{MAX_BLOCKED_READS} file reads of plugins are blocked in the host; \
                     reads are refused until they return"
                ));
            }
            *slot = Some((path.clone(), Instant::now()));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(Mutex::new(ReadState::default()));
        let finished = ReadFinished {
            in_progress: Arc::clone(&self.in_progress),
            state: Arc::clone(&state),
        };
        // A thread of its own, not tokio's blocking pool: a read that never returns must
        // not be waited for when the runtime shuts down.
        let spawned = std::thread::Builder::new()
            .name("telltale-file-read".into())
            .spawn(move || {
                // Released when the job returns or panics, and before the result is sent:
                // the caller may read again as soon as it has it.
                let finished = finished;
                let result = job();
                drop(finished);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            // The closure (and its guard) was dropped with the failed spawn.
            return Err(format!(
                "cannot read `{path}`: no thread to read it on: {e}"
            ));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!("cannot read `{path}`: the reading thread failed")),
            Err(_) => {
                let mut st = state.lock();
                if !st.done {
                    st.stuck = true;
                    STUCK_READS.fetch_add(1, Ordering::SeqCst);
                }
                Err(format!(
                    "reading `{path}` did not finish before the call's deadline: the file \
                     blocks (a hung file system?); later reads are refused until it returns"
                ))
            }
        }
    }

    /// Resolves, checks and reads `path` on the calling thread (which may block).
    pub(crate) fn read_now(&self, path: &str) -> Result<Vec<u8>, String> {
        if self.prefixes.is_empty() {
            return Err(format!(
                "plugin `{}` has no `files` grant; add `grants: {{ files: [\"/some/dir\"] }}` \
                 to its entry",
                self.instance
            ));
        }
        let requested = Path::new(path);
        if !requested.is_absolute() {
            return Err(format!("`{path}` is not an absolute path"));
        }
        // Canonicalise first: `..` and symlinks must not lead out of a granted prefix.
        let resolved = requested
            .canonicalize()
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        if !self.prefixes.iter().any(|p| resolved.starts_with(p)) {
            let granted: Vec<String> = self
                .prefixes
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(format!(
                "plugin `{}` may not read `{path}` (resolved to `{}`): it is not under a \
                 granted prefix ({}); to allow it, add its directory to the entry's \
                 `grants.files`",
                self.instance,
                resolved.display(),
                granted.join(", ")
            ));
        }
        if let Some(relative) = procfs_relative(&resolved)
            && let Err(why) = proc_verdict(&relative)
        {
            return Err(format!(
                "plugin `{}` may not read `{path}`: {why}; under /proc a `files` grant \
                 reaches only the metrics files listed in sdk/README.md",
                self.instance
            ));
        }
        let file = open_nonblocking(&resolved).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        if !meta.is_file() {
            return Err(format!(
                "`{path}` is not a regular file (it is {}); only regular files are read",
                file_kind(&meta)
            ));
        }
        // The checks above ran on the path; these on what was opened, in case a directory
        // on the path was swapped for a symlink in between (O_NOFOLLOW guards the last
        // component only): the kernel's name for the open file must be the checked one.
        let swapped = match opened_path(&file) {
            Some(opened) => opened != resolved,
            None => is_procfs_file(&file) && procfs_relative(&resolved).is_none(),
        };
        if swapped {
            return Err(format!("`{path}` changed while it was opened; not read"));
        }
        // Files under /proc report size 0, so the cap is enforced while reading.
        let mut data = Vec::new();
        file.take(self.max_file_size.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read `{path}`: {e}"))?;
        if data.len() as u64 > self.max_file_size {
            return Err(format!(
                "`{path}` is larger than limits.max_file_size = {}",
                format_bytes(self.max_file_size)
            ));
        }
        Ok(data)
    }
}

/// Opens for reading without following a final symlink (the path is already resolved) and
/// without blocking: a FIFO opens at once instead of waiting for a writer, and the kernel
/// log answers "would block" instead of waiting for a message.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    options.open(path)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// `PROC_SUPER_MAGIC` from `linux/magic.h`.
#[cfg(target_os = "linux")]
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

#[cfg(target_os = "linux")]
fn on_procfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a writable statfs.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let is_proc = rc == 0 && buf.f_type as i64 == PROC_SUPER_MAGIC;
    is_proc
}

#[cfg(target_os = "linux")]
fn is_procfs_file(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the lifetime of `file`; `buf` is writable.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut buf) };
    #[allow(clippy::unnecessary_cast)]
    let is_proc = rc == 0 && buf.f_type as i64 == PROC_SUPER_MAGIC;
    is_proc
}

/// The path the kernel has for an open file (`/proc/self/fd/N`), when it can say.
#[cfg(target_os = "linux")]
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn opened_path(_file: &File) -> Option<PathBuf> {
    None
}

#[cfg(not(target_os = "linux"))]
fn on_procfs(_path: &Path) -> bool {
    false
}

#[cfg(not(target_os = "linux"))]
fn is_procfs_file(_file: &File) -> bool {
    false
}

/// When `resolved` lies on a procfs mount, its components below the mount's root (found by
/// walking up while the parent is still procfs, so `/host/proc` in a container counts as
/// well as `/proc`); `None` when it is not on procfs.
fn procfs_relative(resolved: &Path) -> Option<Vec<String>> {
    if !on_procfs(resolved) {
        return None;
    }
    let mut root = resolved;
    while let Some(parent) = root.parent() {
        if !on_procfs(parent) {
            break;
        }
        root = parent;
    }
    let relative = resolved.strip_prefix(root).ok()?;
    Some(
        relative
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect(),
    )
}

/// Whether a file at `parts` below a procfs root may be read, and if not, why (the reason
/// names what the file would give away).
pub(crate) fn proc_verdict(parts: &[String]) -> Result<(), String> {
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let is_id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let allowed = match parts.as_slice() {
        [file] => PROC_SYSTEM_FILES.contains(file),
        ["pressure", _] => true,
        ["sys", rest @ ..] => !rest.is_empty(),
        ["net", file] => PROC_NET_FILES.contains(file),
        [pid, file] if is_id(pid) => PROC_PROCESS_FILES.contains(file),
        [pid, "net", file] if is_id(pid) => PROC_NET_FILES.contains(file),
        [pid, "task", tid, file] if is_id(pid) && is_id(tid) => PROC_PROCESS_FILES.contains(file),
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let last = parts.last().copied().unwrap_or("");
    let why = match last {
        "environ" => "it holds a process's environment, where secrets live",
        "cmdline" => "it holds a process's arguments, which may carry secrets",
        "mem" | "maps" | "smaps" | "smaps_rollup" | "pagemap" | "numa_maps" | "auxv" | "stack"
        | "syscall" | "kcore" | "kallsyms" => "it exposes memory contents or layout",
        "kmsg" => "reading it blocks and takes messages from the kernel log",
        "tcp" | "tcp6" | "udp" | "udp6" | "unix" | "raw" | "raw6" | "packet" => {
            "it lists every socket and connection"
        }
        _ => "it is not one of the metrics files a collector needs",
    };
    Err(format!("/proc/{}: {why}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    #[test]
    fn proc_policy_allows_metrics_and_refuses_the_rest() {
        for ok in [
            "stat",
            "meminfo",
            "pressure/cpu",
            "sys/fs/file-nr",
            "net/dev",
            "1/stat",
            "1/net/snmp",
            "42/task/43/status",
            "42/io",
            "1/mountinfo",
        ] {
            assert!(proc_verdict(&parts(ok)).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("self/environ", "environment"),
            ("1/environ", "environment"),
            ("1/cmdline", "arguments"),
            ("1/maps", "memory"),
            ("1/mem", "memory"),
            ("1/auxv", "memory"),
            ("1/stack", "memory"),
            ("1/syscall", "memory"),
            ("1/net/tcp", "socket"),
            ("net/unix", "socket"),
            ("kmsg", "kernel log"),
            ("kcore", "memory"),
            ("1/fd/3", "not one of"),
            ("1/task/2/environ", "environment"),
            ("sys", "not one of"),
            ("keys", "not one of"),
        ] {
            let err = proc_verdict(&parts(bad)).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.starts_with(&format!("/proc/{bad}")), "{err}");
        }
    }

    #[tokio::test]
    async fn reads_one_after_another_are_not_taken_for_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let access = Arc::new(FileAccess::new("reader", &[dir.path().to_path_buf()], 16));
        for _ in 0..100 {
            let read = access
                .read(file.to_str().unwrap().to_string(), Duration::from_secs(5))
                .await;
            assert_eq!(read.as_deref(), Ok(&b"x"[..]));
        }
    }
}
