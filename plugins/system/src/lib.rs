//! The standard `system` collector: CPU (per core and mode), load, scheduler counters,
//! memory and swap, disk usage per real mount, disk I/O per device, network per
//! interface, temperatures, Linux pressure stall information, uptime and boot time.
//!
//! It reads the kernel's own files through the `files` capability (grant
//! `files: [/proc, /sys]`) and takes disk sizes from the host's typed snapshot (grant
//! `system: true`), because a WebAssembly guest cannot call `statvfs`. Where a file
//! cannot be read (another OS, a missing grant) the snapshot's figures stand in.
//!
//! Every metric, with its type, unit, labels and meaning, is listed in
//! `plugins/system/metrics.yaml` (rendered in `docs/metrics.md`); a test keeps the list
//! and the real output in step.
//!
//! Rates are computed from the counters of two consecutive collections over the time
//! between them: the first collection (also the first after the host re-instantiated the
//! plugin) emits no rates.
//!
//! Config (JSON, every key optional):
//!
//! ```json
//! {"per_core": true, "exclude_mounts": ["/snap"], "exclude_interfaces": ["lo", "veth*"],
//!  "exclude_devices": ["loop", "ram"], "partitions": false,
//!  "proc_root": "/proc", "sys_root": "/sys"}
//! ```
//!
//! * `per_core` (default `true`): also emit CPU figures per core (`cpu="0"`, ...), not only
//!   `cpu="total"`.
//! * `exclude_mounts` (default none): mount points to skip; an entry also excludes every
//!   mount below it (`/snap` excludes `/snap/core/1`).
//! * `exclude_interfaces` (default `["lo"]`): interface names to skip; a trailing `*`
//!   matches a prefix (`veth*`).
//! * `exclude_devices` (default `["loop", "ram"]`): block device name prefixes to skip in
//!   disk I/O. Devices that never did any I/O are skipped anyway.
//! * `partitions` (default `false`): also report disk I/O per partition (`sda1`), which
//!   is already counted in its disk's (`sda`).
//! * `proc_root`, `sys_root` (defaults `/proc`, `/sys`): where to read the kernel's files,
//!   e.g. a host's `/proc` mounted into a container at `/host/proc`; the grant must cover it.

pub mod collect;
pub mod procfs;

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, parse_config};

/// The plugin's configuration (see the crate docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Emit CPU figures per core too.
    #[serde(default = "default_true")]
    pub per_core: bool,
    /// Mount points (and everything below them) left out of disk usage.
    #[serde(default)]
    pub exclude_mounts: Vec<String>,
    /// Interface names (`*` suffix: prefix) left out of network figures.
    #[serde(default = "default_excluded_interfaces")]
    pub exclude_interfaces: Vec<String>,
    /// Block device name prefixes left out of disk I/O.
    #[serde(default = "default_excluded_devices")]
    pub exclude_devices: Vec<String>,
    /// Report disk I/O of partitions as well as of whole disks.
    #[serde(default)]
    pub partitions: bool,
    /// Where procfs is mounted.
    #[serde(default = "default_proc_root")]
    pub proc_root: String,
    /// Where sysfs is mounted.
    #[serde(default = "default_sys_root")]
    pub sys_root: String,
}

fn default_true() -> bool {
    true
}

fn default_excluded_interfaces() -> Vec<String> {
    vec!["lo".to_string()]
}

fn default_excluded_devices() -> Vec<String> {
    vec!["loop".to_string(), "ram".to_string()]
}

fn default_proc_root() -> String {
    "/proc".to_string()
}

fn default_sys_root() -> String {
    "/sys".to_string()
}

/// The collector: its config and the counters kept between collections.
struct SystemCollector {
    config: Config,
    state: collect::State,
}

/// Reads files through the host's `files` capability.
#[cfg(target_family = "wasm")]
struct HostFiles;

#[cfg(target_family = "wasm")]
impl collect::Files for HostFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        telltale_sdk::files::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl Collector for SystemCollector {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        for (key, root) in [
            ("proc_root", &config.proc_root),
            ("sys_root", &config.sys_root),
        ] {
            if !root.starts_with('/') {
                return Err(PluginError::InvalidConfig(format!(
                    "`{key}` must be an absolute path, got `{root}`"
                )));
            }
        }
        Ok(SystemCollector {
            config,
            state: collect::State::default(),
        })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        #[cfg(target_family = "wasm")]
        {
            let now = telltale_sdk::now_ms();
            let snapshot = telltale_sdk::system::snapshot();
            out.extend(self.state.collect(&self.config, &HostFiles, &snapshot, now));
            Ok(())
        }
        #[cfg(not(target_family = "wasm"))]
        {
            // Natively there is no host to read through; tests call `State::collect`.
            let _ = (&mut self.state, &self.config, out);
            Err(PluginError::Unavailable(
                "the system plugin runs inside the Telltale host only".to_string(),
            ))
        }
    }
}

telltale_sdk::export_collector!(SystemCollector);

#[cfg(test)]
mod tests;
