//! The standard `system` collector: turns the host's typed system snapshot (grant `system`)
//! into samples for CPU, load, memory, swap, disks, network interfaces and uptime.
//!
//! Every sample carries the snapshot's timestamp. Config (JSON, every key optional):
//!
//! ```json
//! {"per_core": true, "exclude_mounts": ["/snap"], "exclude_interfaces": ["lo", "veth*"]}
//! ```
//!
//! * `per_core` (default `true`): also emit `system_cpu_usage_percent` per core
//!   (`cpu="0"`, `"1"`, ...), not only `cpu="total"`.
//! * `exclude_mounts` (default none): mount points to skip; an entry also excludes every
//!   mount below it (`/snap` excludes `/snap/core/1`).
//! * `exclude_interfaces` (default `["lo"]`): interface names to skip; a trailing `*`
//!   matches a prefix (`veth*`).
//!
//! Metrics (units in the name, Prometheus conventions):
//! `system_cpu_usage_percent{cpu}`, `system_load_average_1m|5m|15m`,
//! `system_memory_{total,available,used}_bytes`, `system_memory_used_percent`,
//! `system_swap_{total,used}_bytes`, `system_swap_used_percent` (only with swap),
//! `system_disk_{total,available,used}_bytes{mount,device,fs}`,
//! `system_disk_used_percent{mount,device,fs}`,
//! `system_network_{received,transmitted}_bytes_total{interface}`, `system_uptime_seconds`.
//! CPU usage is left out of the very first snapshot, which has no interval to measure.

use serde::Deserialize;
use telltale_sdk::system::{self, SystemSnapshot};
use telltale_sdk::{Collector, PluginError, Sample, parse_config, sample};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_true")]
    per_core: bool,
    #[serde(default)]
    exclude_mounts: Vec<String>,
    #[serde(default = "default_excluded_interfaces")]
    exclude_interfaces: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_excluded_interfaces() -> Vec<String> {
    vec!["lo".to_string()]
}

/// File systems that hold no user data (memory-backed or virtual); their "disks" are noise.
const PSEUDO_FILE_SYSTEMS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "squashfs",
    "proc",
    "sysfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "autofs",
    "nsfs",
    "efivarfs",
    "tracefs",
    "debugfs",
    "securityfs",
    "fusectl",
    "configfs",
    "mqueue",
    "hugetlbfs",
    "binfmt_misc",
    "pstore",
    "bpf",
];

struct SystemCollector {
    config: Config,
}

impl Collector for SystemCollector {
    fn init(config: &str) -> Result<Self, PluginError> {
        Ok(SystemCollector {
            config: parse_config(config)?,
        })
    }

    fn collect(&mut self) -> Result<Vec<Sample>, PluginError> {
        let snapshot = system::snapshot();
        Ok(build_samples(&snapshot, &self.config))
    }
}

telltale_sdk::export_collector!(SystemCollector);

/// `part / whole` in percent, 0 when `whole` is 0.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

/// Whether `mount` is one of `excluded` or below one of them.
fn mount_excluded(mount: &str, excluded: &[String]) -> bool {
    excluded.iter().any(|e| {
        let e = e.trim_end_matches('/');
        mount == e
            || e.is_empty() && mount == "/"
            || mount
                .strip_prefix(e)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Whether interface `name` matches one of `excluded` (exact, or prefix with a trailing `*`).
fn interface_excluded(name: &str, excluded: &[String]) -> bool {
    excluded.iter().any(|e| match e.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == e,
    })
}

/// Builds every sample of one snapshot.
fn build_samples(s: &SystemSnapshot, cfg: &Config) -> Vec<Sample> {
    let ts = s.timestamp_ms;
    let mut out = Vec::with_capacity(32 + s.cpus.len() + 6 * s.disks.len());
    let mut push = |sample: Sample| out.push(sample.at(ts));

    if s.cpu_usage_valid {
        for cpu in &s.cpus {
            if cpu.name == "total" || cfg.per_core {
                push(
                    sample("system_cpu_usage_percent", f64::from(cpu.usage_percent))
                        .label("cpu", cpu.name.as_str()),
                );
            }
        }
    }

    push(sample("system_load_average_1m", s.load.one));
    push(sample("system_load_average_5m", s.load.five));
    push(sample("system_load_average_15m", s.load.fifteen));

    let m = &s.memory;
    push(sample("system_memory_total_bytes", m.total_bytes as f64));
    push(sample(
        "system_memory_available_bytes",
        m.available_bytes as f64,
    ));
    push(sample("system_memory_used_bytes", m.used_bytes as f64));
    push(sample(
        "system_memory_used_percent",
        percent(m.used_bytes, m.total_bytes),
    ));
    push(sample("system_swap_total_bytes", m.swap_total_bytes as f64));
    push(sample("system_swap_used_bytes", m.swap_used_bytes as f64));
    if m.swap_total_bytes > 0 {
        push(sample(
            "system_swap_used_percent",
            percent(m.swap_used_bytes, m.swap_total_bytes),
        ));
    }

    for d in &s.disks {
        if d.total_bytes == 0
            || PSEUDO_FILE_SYSTEMS.contains(&d.file_system.as_str())
            || mount_excluded(&d.mount_point, &cfg.exclude_mounts)
        {
            continue;
        }
        let used = d.total_bytes.saturating_sub(d.available_bytes);
        let disk = |name: &str, value: f64| {
            sample(name, value)
                .label("mount", d.mount_point.as_str())
                .label("device", d.device.as_str())
                .label("fs", d.file_system.as_str())
        };
        push(disk("system_disk_total_bytes", d.total_bytes as f64));
        push(disk(
            "system_disk_available_bytes",
            d.available_bytes as f64,
        ));
        push(disk("system_disk_used_bytes", used as f64));
        push(disk(
            "system_disk_used_percent",
            percent(used, d.total_bytes),
        ));
    }

    for n in &s.networks {
        if interface_excluded(&n.interface, &cfg.exclude_interfaces) {
            continue;
        }
        push(
            sample(
                "system_network_received_bytes_total",
                n.received_bytes as f64,
            )
            .label("interface", n.interface.as_str()),
        );
        push(
            sample(
                "system_network_transmitted_bytes_total",
                n.transmitted_bytes as f64,
            )
            .label("interface", n.interface.as_str()),
        );
    }

    push(sample("system_uptime_seconds", s.uptime_seconds as f64));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_sdk::system::{Cpu, Disk, LoadAverage, Memory, Network};

    fn snapshot(cpu_valid: bool) -> SystemSnapshot {
        SystemSnapshot {
            timestamp_ms: 1_700_000_000_000,
            cpus: ["total", "0", "1"]
                .iter()
                .map(|n| Cpu {
                    name: n.to_string(),
                    usage_percent: 25.0,
                    frequency_mhz: 2000,
                })
                .collect(),
            memory: Memory {
                total_bytes: 1000,
                available_bytes: 400,
                used_bytes: 600,
                free_bytes: 300,
                swap_total_bytes: 0,
                swap_used_bytes: 0,
            },
            load: LoadAverage {
                one: 1.0,
                five: 0.5,
                fifteen: 0.25,
            },
            disks: vec![
                Disk {
                    mount_point: "/".into(),
                    device: "/dev/sda1".into(),
                    file_system: "ext4".into(),
                    total_bytes: 100,
                    available_bytes: 25,
                    removable: false,
                },
                Disk {
                    mount_point: "/run".into(),
                    device: "tmpfs".into(),
                    file_system: "tmpfs".into(),
                    total_bytes: 100,
                    available_bytes: 100,
                    removable: false,
                },
                Disk {
                    mount_point: "/snap/core/1".into(),
                    device: "/dev/loop0".into(),
                    file_system: "ext4".into(),
                    total_bytes: 100,
                    available_bytes: 0,
                    removable: false,
                },
            ],
            networks: ["lo", "eth0", "veth12"]
                .iter()
                .map(|n| Network {
                    interface: n.to_string(),
                    received_bytes: 10,
                    transmitted_bytes: 20,
                    received_packets: 1,
                    transmitted_packets: 2,
                    receive_errors: 0,
                    transmit_errors: 0,
                })
                .collect(),
            uptime_seconds: 42,
            cpu_usage_valid: cpu_valid,
        }
    }

    fn find<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
        samples.iter().filter(|s| s.name == name).collect()
    }

    #[test]
    fn builds_expected_families() {
        let cfg: Config =
            parse_config(r#"{"exclude_mounts": ["/snap"], "exclude_interfaces": ["lo", "veth*"]}"#)
                .unwrap();
        let samples = build_samples(&snapshot(true), &cfg);
        assert!(samples.iter().all(|s| s.timestamp_ms == 1_700_000_000_000));
        assert_eq!(find(&samples, "system_cpu_usage_percent").len(), 3);
        assert_eq!(find(&samples, "system_memory_used_percent")[0].value, 60.0);
        assert!(find(&samples, "system_swap_used_percent").is_empty());
        let disks = find(&samples, "system_disk_used_percent");
        assert_eq!(disks.len(), 1, "tmpfs and excluded mounts are skipped");
        assert_eq!(disks[0].value, 75.0);
        let rx = find(&samples, "system_network_received_bytes_total");
        assert_eq!(rx.len(), 1);
        assert_eq!(rx[0].labels[0].value, "eth0");
        assert_eq!(find(&samples, "system_uptime_seconds")[0].value, 42.0);
    }

    #[test]
    fn first_snapshot_has_no_cpu_usage_and_per_core_can_be_off() {
        let cfg: Config = parse_config("null").unwrap();
        assert!(cfg.per_core);
        let samples = build_samples(&snapshot(false), &cfg);
        assert!(find(&samples, "system_cpu_usage_percent").is_empty());
        let cfg: Config = parse_config(r#"{"per_core": false}"#).unwrap();
        let samples = build_samples(&snapshot(true), &cfg);
        assert_eq!(find(&samples, "system_cpu_usage_percent").len(), 1);
    }

    #[test]
    fn bad_config_is_invalid_config() {
        match parse_config::<Config>(r#"{"per_cores": true}"#) {
            Err(PluginError::InvalidConfig(msg)) => assert!(msg.contains("per_cores"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn mount_exclusion_is_by_path_component() {
        let ex = vec!["/snap".to_string()];
        assert!(mount_excluded("/snap", &ex));
        assert!(mount_excluded("/snap/core", &ex));
        assert!(!mount_excluded("/snapshots", &ex));
    }
}
