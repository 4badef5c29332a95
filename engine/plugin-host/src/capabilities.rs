//! What a plugin may do beyond computing: the host imports (`host`, `system`, `files`; `http`,
//! `processes` and `gpu` live in their own modules), their implementations, and the load-time
//! check of a component's imports against the contract version and the grants of its
//! configuration entry.

use std::sync::Arc;
use std::time::Instant;

#[cfg(test)]
use std::path::PathBuf;

use parking_lot::Mutex;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{files, host, system, types};
use super::contract::{self, PACKAGE, accepted_versions, version_accepted};
use super::error::PluginError;
use super::file_read::FileAccess;
use super::gpu::GpuSampler;
use super::http::HttpClient;
use super::instance::StoreState;
use super::processes::ProcessSampler;
use telltale_config::{Grants, PluginLimits};

/// The longest message `host.log` forwards; longer ones are cut (at a character boundary).
pub(crate) const MAX_LOG_MESSAGE: usize = 4096;

/// The host-wide state capabilities read from, shared by every instance.
#[derive(Debug)]
pub(crate) struct Samplers {
    /// The system snapshot (grant `system`).
    pub(crate) system: Arc<SystemSampler>,
    /// The process table (grant `processes`).
    pub(crate) processes: Arc<ProcessSampler>,
    /// NVML, initialised on first use (grant `gpu`).
    pub(crate) gpu: Arc<GpuSampler>,
}

impl Samplers {
    /// Samplers that read nothing until first used.
    pub(crate) fn new() -> Samplers {
        Samplers {
            system: Arc::new(SystemSampler::new()),
            processes: Arc::new(ProcessSampler::new()),
            gpu: Arc::new(GpuSampler::new()),
        }
    }
}

/// What one plugin instance is allowed to do, and the host state its imports use.
#[derive(Debug)]
pub(crate) struct Capabilities {
    /// The instance's configured name, attached to everything it logs.
    pub(crate) instance: String,
    /// The system sampler, present only with `grants.system`.
    pub(crate) system: Option<Arc<SystemSampler>>,
    /// The process sampler, present only with `grants.processes`.
    pub(crate) processes: Option<Arc<ProcessSampler>>,
    /// The GPU sampler, present only with `grants.gpu`.
    pub(crate) gpu: Option<Arc<GpuSampler>>,
    /// The HTTP client, present only with `grants.http`.
    pub(crate) http: Option<HttpClient>,
    /// `files.read`: the granted prefixes and the read in progress.
    pub(crate) files: Arc<FileAccess>,
}

impl Capabilities {
    /// Capabilities for `instance` from its grants and limits. Relative file prefixes must
    /// already be resolved (see `PluginSpec`). Fails on a grant that cannot be used as
    /// written (an `http` entry that is not `HOST:PORT`).
    pub(crate) fn new(
        instance: &str,
        grants: &Grants,
        limits: &PluginLimits,
        samplers: &Samplers,
    ) -> Result<Self, PluginError> {
        let http = if grants.http.is_empty() {
            None
        } else {
            Some(
                HttpClient::new(instance, &grants.http, limits.max_http_body.0).map_err(
                    |message| PluginError::InvalidGrant {
                        instance: instance.to_string(),
                        message,
                    },
                )?,
            )
        };
        Ok(Capabilities {
            instance: instance.to_string(),
            system: grants.system.then(|| Arc::clone(&samplers.system)),
            processes: grants.processes.then(|| Arc::clone(&samplers.processes)),
            gpu: grants.gpu.then(|| Arc::clone(&samplers.gpu)),
            http,
            files: Arc::new(FileAccess::new(
                instance,
                &grants.files,
                limits.max_file_size.0,
            )),
        })
    }
}

/// Checks a component's imports before anything is linked, so that a misconfiguration is
/// reported once, clearly, before anything runs:
///
/// * a `telltale:plugin` import of a version [`version_accepted`] refuses is refused,
///   naming both versions;
/// * an unknown `telltale:plugin` interface, or a package other than `telltale:plugin` and
///   `wasi`, is refused, naming the import;
/// * a capability import the entry does not grant is refused, naming the grant to add.
///
/// WASI imports are left to the linker (see [`unresolved_import`]).
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
    instance: &str,
    origin: &str,
    grants: &Grants,
) -> Result<(), PluginError> {
    let accepted = accepted_versions();
    for (name, _) in component.component_type().imports(engine) {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        let (package, interface) = path.split_once('/').unwrap_or((path, ""));
        if package == "wasi" || package.starts_with("wasi:") {
            continue;
        }
        if package != PACKAGE {
            return Err(PluginError::UnknownImport {
                instance: instance.to_string(),
                origin: origin.to_string(),
                import: name.to_string(),
                hint: format!(
                    "a plugin may import only `{PACKAGE}/*@{accepted}` \
                     and WASI 0.2 interfaces"
                ),
            });
        }
        if !version_accepted(version) {
            return Err(PluginError::WrongVersion {
                instance: instance.to_string(),
                origin: origin.to_string(),
                import: name.to_string(),
                found: if version.is_empty() {
                    "(no version)".to_string()
                } else {
                    version.to_string()
                },
                accepted: accepted.clone(),
            });
        }
        // The grants and the interfaces they unlock are one table (`telltale_config::GRANTS`),
        // which `plugin inspect` reads too, so what it says and what the loader does cannot
        // drift apart.
        let grant = contract::grant_for(interface);
        if grant.is_none() && !contract::UNGRANTED_INTERFACES.contains(&interface) {
            let known: Vec<String> = contract::interfaces().map(|i| format!("`{i}`")).collect();
            return Err(PluginError::UnknownImport {
                instance: instance.to_string(),
                origin: origin.to_string(),
                import: name.to_string(),
                hint: format!(
                    "the interfaces of {PACKAGE}@{accepted} are {}",
                    known.join(", ")
                ),
            });
        }
        if let Some(grant) = grant
            && !(grant.granted)(grants)
        {
            return Err(PluginError::NotGranted {
                instance: instance.to_string(),
                interface: path.to_string(),
                grant: grant.yaml.to_string(),
            });
        }
    }
    Ok(())
}

/// Explains a linker failure caused by an import the host does not provide (a WASI
/// interface outside the p2 set, such as `wasi:http`): `None` when the error is about
/// something else (missing exports, type mismatches).
pub(crate) fn unresolved_import(
    err: &wasmtime::Error,
    instance: &str,
    origin: &str,
) -> Option<PluginError> {
    // wasmtime's message: "component imports instance `NAME`, but a matching
    // implementation was not found in the linker".
    let top = err.to_string();
    let rest = top.strip_prefix("component imports ")?;
    if !rest.contains("a matching implementation was not found") {
        return None;
    }
    let start = rest.find('`')? + 1;
    let len = rest[start..].find('`')?;
    let import = &rest[start..start + len];
    Some(PluginError::UnknownImport {
        instance: instance.to_string(),
        origin: origin.to_string(),
        import: import.to_string(),
        hint: format!(
            "this host provides `{PACKAGE}/*@{}` and the WASI 0.2 \
             interfaces of wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random and \
             wasi:sockets ({:#})",
            accepted_versions(),
            err.root_cause()
        ),
    })
}

/// The host's view of the machine, shared by every instance granted `system`. One sysinfo
/// state for all of them: CPU usage is measured between consecutive refreshes.
#[derive(Debug)]
pub(crate) struct SystemSampler {
    state: Mutex<Option<SamplerState>>,
}

#[derive(Debug)]
struct SamplerState {
    system: System,
    disks: Disks,
    networks: Networks,
    /// When CPU times were last read; `None` until the first refresh.
    last_cpu_refresh: Option<Instant>,
    /// Whether the CPU usage currently held covers a real interval.
    cpu_valid: bool,
}

impl SystemSampler {
    /// A sampler that reads nothing until the first snapshot.
    pub(crate) fn new() -> SystemSampler {
        SystemSampler {
            state: Mutex::new(None),
        }
    }

    /// Refreshes and returns a snapshot. Blocking (reads /proc, calls statvfs): run it on a
    /// blocking thread.
    pub(crate) fn snapshot(&self) -> system::SystemSnapshot {
        let mut guard = self.state.lock();
        let state = guard.get_or_insert_with(|| SamplerState {
            system: System::new_with_specifics(
                RefreshKind::nothing()
                    .with_cpu(CpuRefreshKind::nothing())
                    .with_memory(MemoryRefreshKind::everything()),
            ),
            disks: Disks::new_with_refreshed_list(),
            networks: Networks::new_with_refreshed_list(),
            last_cpu_refresh: None,
            cpu_valid: false,
        });

        // CPU usage is the busy share of the time between two refreshes; refreshes closer
        // than sysinfo's minimum interval give noise, so keep the previous figures then.
        let now = Instant::now();
        match state.last_cpu_refresh {
            Some(last) if now.duration_since(last) < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL => {}
            previous => {
                state.system.refresh_cpu_specifics(
                    CpuRefreshKind::nothing().with_cpu_usage().with_frequency(),
                );
                state.cpu_valid = previous.is_some();
                state.last_cpu_refresh = Some(now);
            }
        }
        state.system.refresh_memory();
        state.disks.refresh(true);
        state.networks.refresh(true);

        let sys = &state.system;
        let cores = sys.cpus();
        let mean_freq = if cores.is_empty() {
            0
        } else {
            cores.iter().map(|c| c.frequency()).sum::<u64>() / cores.len() as u64
        };
        let mut cpus = Vec::with_capacity(cores.len() + 1);
        cpus.push(system::Cpu {
            name: "total".to_string(),
            usage_percent: sys.global_cpu_usage(),
            frequency_mhz: mean_freq,
        });
        cpus.extend(cores.iter().enumerate().map(|(i, c)| system::Cpu {
            name: i.to_string(),
            usage_percent: c.cpu_usage(),
            frequency_mhz: c.frequency(),
        }));

        let load = System::load_average();
        let mut disks: Vec<system::Disk> = state
            .disks
            .list()
            .iter()
            .map(|d| system::Disk {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                device: d.name().to_string_lossy().into_owned(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
                removable: d.is_removable(),
            })
            .collect();
        disks.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        let mut networks: Vec<system::Network> = state
            .networks
            .list()
            .iter()
            .map(|(name, n)| system::Network {
                interface: name.clone(),
                received_bytes: n.total_received(),
                transmitted_bytes: n.total_transmitted(),
                received_packets: n.total_packets_received(),
                transmitted_packets: n.total_packets_transmitted(),
                receive_errors: n.total_errors_on_received(),
                transmit_errors: n.total_errors_on_transmitted(),
            })
            .collect();
        networks.sort_by(|a, b| a.interface.cmp(&b.interface));

        system::SystemSnapshot {
            timestamp_ms: telltale_model::now_ms(),
            cpus,
            memory: system::Memory {
                total_bytes: sys.total_memory(),
                available_bytes: sys.available_memory(),
                used_bytes: sys.used_memory(),
                free_bytes: sys.free_memory(),
                swap_total_bytes: sys.total_swap(),
                swap_used_bytes: sys.used_swap(),
            },
            load: system::LoadAverage {
                one: load.one,
                five: load.five,
                fifteen: load.fifteen,
            },
            disks,
            networks,
            uptime_seconds: System::uptime(),
            cpu_usage_valid: state.cpu_valid,
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut.
fn truncate_message(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …(truncated)");
    }
    s
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    async fn log(&mut self, level: host::Level, message: String) {
        let message = truncate_message(message, MAX_LOG_MESSAGE);
        if !self.log.admit(message.len()) {
            return;
        }
        let plugin = self.caps.instance.as_str();
        match level {
            host::Level::Trace => tracing::trace!(plugin, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    async fn now_ms(&mut self) -> i64 {
        telltale_model::now_ms()
    }
}

impl system::Host for StoreState {
    async fn snapshot(&mut self) -> system::SystemSnapshot {
        // Components without the grant are refused at load time (`check_grants`), so a
        // missing sampler here means an engine bug; answer with an empty snapshot rather
        // than crash the host.
        let Some(sampler) = self.caps.system.clone() else {
            tracing::error!(plugin = %self.caps.instance, "system.snapshot called without the grant");
            return empty_snapshot();
        };
        match tokio::task::spawn_blocking(move || sampler.snapshot()).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::error!(plugin = %self.caps.instance, "system snapshot failed: {e}");
                empty_snapshot()
            }
        }
    }
}

impl files::Host for StoreState {
    async fn read(&mut self, path: String) -> Result<Vec<u8>, String> {
        let files = Arc::clone(&self.caps.files);
        files.read(path, self.deadline.remaining()).await
    }
}

fn empty_snapshot() -> system::SystemSnapshot {
    system::SystemSnapshot {
        timestamp_ms: telltale_model::now_ms(),
        cpus: Vec::new(),
        memory: system::Memory {
            total_bytes: 0,
            available_bytes: 0,
            used_bytes: 0,
            free_bytes: 0,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
        },
        load: system::LoadAverage {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        },
        disks: Vec::new(),
        networks: Vec::new(),
        uptime_seconds: 0,
        cpu_usage_valid: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(prefixes: Vec<PathBuf>) -> Capabilities {
        let grants = Grants {
            files: prefixes,
            ..Grants::default()
        };
        Capabilities::new(
            "reader",
            &grants,
            &PluginLimits::default(),
            &Samplers::new(),
        )
        .unwrap()
    }

    #[test]
    fn file_size_is_capped_by_the_configured_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("small"), vec![b'x'; 1024]).unwrap();
        std::fs::write(dir.path().join("big"), vec![b'x'; 1025]).unwrap();
        let grants = Grants {
            files: vec![dir.path().to_path_buf()],
            ..Grants::default()
        };
        let limits = PluginLimits {
            max_file_size: telltale_config::ByteSize(1024),
            ..PluginLimits::default()
        };
        let c = Capabilities::new("reader", &grants, &limits, &Samplers::new()).unwrap();
        let small = dir.path().join("small");
        assert_eq!(
            c.files.read_now(small.to_str().unwrap()).unwrap().len(),
            1024
        );
        let big = dir.path().join("big");
        let err = c.files.read_now(big.to_str().unwrap()).unwrap_err();
        assert!(
            err.ends_with("is larger than limits.max_file_size = 1 KiB"),
            "{err}"
        );
        // /proc files report size 0: the cap holds while reading.
        #[cfg(target_os = "linux")]
        {
            let grants = Grants {
                files: vec![PathBuf::from("/proc")],
                ..Grants::default()
            };
            let limits = PluginLimits {
                max_file_size: telltale_config::ByteSize(16),
                ..PluginLimits::default()
            };
            let c = Capabilities::new("reader", &grants, &limits, &Samplers::new()).unwrap();
            let err = c.files.read_now("/proc/self/status").unwrap_err();
            assert!(err.contains("limits.max_file_size = 16 bytes"), "{err}");
        }
    }

    #[test]
    fn invalid_http_grants_are_refused_with_the_syntax() {
        let grants = Grants {
            http: vec!["http://localhost:9100/metrics".into()],
            ..Grants::default()
        };
        let err = Capabilities::new(
            "scraper",
            &grants,
            &PluginLimits::default(),
            &Samplers::new(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("plugin `scraper`: invalid grant:"), "{msg}");
        assert!(msg.contains("`HOST:PORT`"), "{msg}");
    }

    #[test]
    fn files_are_read_only_under_granted_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let secret = dir.path().join("secret");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(allowed.join("ok.txt"), b"hello").unwrap();
        std::fs::write(secret.join("key.txt"), b"s3cret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(secret.join("key.txt"), allowed.join("link.txt")).unwrap();

        let c = caps(vec![allowed.clone()]);
        assert_eq!(
            c.files
                .read_now(allowed.join("ok.txt").to_str().unwrap())
                .unwrap(),
            b"hello"
        );
        // `..` escape.
        let dotdot = format!("{}/../secret/key.txt", allowed.display());
        let err = c.files.read_now(&dotdot).unwrap_err();
        assert!(err.contains("not under a granted prefix"), "{err}");
        // Symlink escape.
        #[cfg(unix)]
        {
            let err = c
                .files
                .read_now(allowed.join("link.txt").to_str().unwrap())
                .unwrap_err();
            assert!(err.contains("not under a granted prefix"), "{err}");
        }
        assert!(c.files.read_now("relative/path").is_err());
        assert!(
            c.files.read_now(allowed.to_str().unwrap()).is_err(),
            "a directory"
        );

        let none = caps(Vec::new());
        let err = none
            .files
            .read_now(allowed.join("ok.txt").to_str().unwrap())
            .unwrap_err();
        assert!(err.contains("no `files` grant"), "{err}");
    }

    #[test]
    fn log_messages_are_capped() {
        let long = "é".repeat(MAX_LOG_MESSAGE);
        let cut = truncate_message(long, MAX_LOG_MESSAGE);
        assert!(cut.len() <= MAX_LOG_MESSAGE + 20);
        assert!(cut.ends_with("(truncated)"));
    }

    #[test]
    fn snapshot_reports_memory_and_cpu_validity() {
        let sampler = SystemSampler::new();
        let first = sampler.snapshot();
        assert!(!first.cpu_usage_valid);
        assert!(first.memory.total_bytes > 0);
        assert_eq!(first.cpus[0].name, "total");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let second = sampler.snapshot();
        assert!(second.cpu_usage_valid);
        assert!((0.0..=100.0).contains(&second.cpus[0].usage_percent));
    }
}
