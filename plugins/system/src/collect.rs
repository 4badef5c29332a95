//! One collection: reads the kernel's files through a [`Files`] source, compares their
//! counters with those of the previous collection, and turns both into samples.
//!
//! Everything here is plain Rust over strings, so the native unit tests drive it with a
//! fake `/proc` and `/sys`; the WebAssembly build passes the host's `files.read` and
//! `system.snapshot` imports instead.
//!
//! Rates (`*_per_second`, CPU mode percentages, disk busy and pressure percentages) need two
//! collections: the first one after the plugin starts (or after the host re-instantiated it)
//! emits gauges and `_total` counters only. A counter that went backwards (an interface was
//! re-created, a device re-attached) gets no rate for that one interval.

use std::collections::{HashMap, HashSet};

use telltale_sdk::system::SystemSnapshot;
use telltale_sdk::{Label, Level, Sample};

use crate::Config;
use crate::procfs::{self, CpuTimes, Mount};

/// Where the collector reads kernel files from.
pub trait Files {
    /// The whole file at `path` as text.
    fn read(&self, path: &str) -> Result<String, String>;
}

/// File systems that hold no user data (memory-backed, virtual or kernel interfaces);
/// their "disks" are noise. `overlay` is handled apart: it is kept as the root of a
/// container and left out elsewhere (container runtimes mount one per container).
pub const PSEUDO_FILE_SYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// How often (in collections) the list of temperature sensors is read again: sensor
/// drivers may load after Telltale starts, and scanning every time would cost dozens of
/// file reads per collection.
const SENSOR_RESCAN_EVERY: u32 = 60;

/// The counters of the previous collection.
#[derive(Debug, Default)]
struct Previous {
    at_ms: i64,
    uptime: Option<f64>,
    cpus: HashMap<String, CpuTimes>,
    counters: HashMap<String, u64>,
}

/// One temperature input found under `/sys/class/hwmon`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sensor {
    input: String,
    chip: String,
    sensor: String,
}

/// What the collector keeps between collections. It lives in the plugin instance, so it is
/// lost when the host re-instantiates the plugin, and the next collection starts afresh.
#[derive(Debug, Default)]
pub struct State {
    prev: Option<Previous>,
    page_size: Option<u64>,
    sensors: Vec<Sensor>,
    collections_since_scan: Option<u32>,
    warned: HashSet<String>,
}

/// The samples of one collection under construction, and the counters seen in it.
struct Out<'a> {
    ts: i64,
    samples: Vec<Sample>,
    elapsed: Option<f64>,
    prev: Option<&'a HashMap<String, u64>>,
    counters: HashMap<String, u64>,
}

/// How a counter's increase becomes a sample.
#[derive(Clone, Copy)]
enum Rate<'n> {
    /// The increase per second, under this name.
    PerSecond(&'n str),
    /// The increase per second × 100, capped to 0–100 (the counter measures time, so this
    /// is the share of the interval), under this name.
    Percent(&'n str),
}

impl Out<'_> {
    fn gauge(&mut self, name: &str, value: f64, labels: &[(&str, &str)]) {
        if !value.is_finite() {
            return;
        }
        self.samples.push(Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| Label {
                    name: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            value,
            timestamp_ms: self.ts,
        });
    }

    /// Emits counter `name` (`raw × scale`) and, from the second collection on, its rate.
    fn counter(&mut self, name: &str, raw: u64, scale: f64, rate: Rate, labels: &[(&str, &str)]) {
        self.gauge(name, raw as f64 * scale, labels);
        let (Rate::PerSecond(rate_name) | Rate::Percent(rate_name)) = rate;
        let key = series_key(name, labels);
        let previous = self.prev.and_then(|p| p.get(&key)).copied();
        self.counters.insert(key, raw);
        let (Some(previous), Some(elapsed)) = (previous, self.elapsed) else {
            return;
        };
        // A counter that went down was reset (device re-attached, interface re-created):
        // there is no meaningful increase for this interval.
        let Some(increase) = raw.checked_sub(previous) else {
            return;
        };
        let per_second = increase as f64 * scale / elapsed;
        let value = match rate {
            Rate::Percent(_) => (per_second * 100.0).clamp(0.0, 100.0),
            _ => per_second,
        };
        self.gauge(rate_name, value, labels);
    }
}

/// A map key naming one series.
fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut key = name.to_string();
    for (k, v) in labels {
        key.push('\u{1f}');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

/// Seconds between two collections. The wall clock (`now_ms`, millisecond resolution) is
/// preferred; when it disagrees with the kernel's monotonic uptime (10 ms resolution) by
/// more than their resolutions allow, the wall clock was stepped and uptime is used.
/// `None` when no interval can be trusted (uptime went backwards: a restored snapshot).
pub fn elapsed_seconds(
    prev_ms: i64,
    now_ms: i64,
    prev_uptime: Option<f64>,
    uptime: Option<f64>,
) -> Option<f64> {
    let wall = (now_ms - prev_ms) as f64 / 1000.0;
    match (prev_uptime, uptime) {
        (Some(a), Some(b)) => {
            let mono = b - a;
            if mono < 0.0 {
                None
            } else if wall > 0.0 && (wall - mono).abs() <= 0.03 + 0.02 * mono {
                Some(wall)
            } else if mono > 0.0 {
                Some(mono)
            } else {
                None
            }
        }
        _ => (wall > 0.0).then_some(wall),
    }
}

/// Whether `mount` is one of `excluded` or below one of them (by path component).
pub fn mount_excluded(mount: &str, excluded: &[String]) -> bool {
    excluded.iter().any(|e| {
        let e = e.trim_end_matches('/');
        mount == e
            || e.is_empty() && mount == "/"
            || mount
                .strip_prefix(e)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Whether `name` matches one of `patterns` (exact, or a prefix with a trailing `*`).
pub fn name_excluded(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|e| match e.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == e,
    })
}

/// The mounts worth reporting: real file systems, each device once.
///
/// Pseudo file systems are left out, `overlay` too unless it is `/` (a container's root).
/// Bind mounts show the same device (`major:minor`) again: the mount of the file system's
/// own root (`root` = `/`) is kept, else the shortest mount point.
pub fn real_mounts<'m>(mounts: &'m [Mount], exclude: &[String]) -> Vec<&'m Mount> {
    let mut chosen: Vec<&Mount> = Vec::new();
    for m in mounts {
        if PSEUDO_FILE_SYSTEMS.contains(&m.fs_type.as_str())
            || (m.fs_type == "overlay" && m.mount_point != "/")
            || mount_excluded(&m.mount_point, exclude)
        {
            continue;
        }
        let rank = |m: &Mount| (m.root != "/", m.mount_point.len());
        match chosen.iter_mut().find(|c| c.device_id == m.device_id) {
            Some(c) if rank(m) < rank(c) => *c = m,
            Some(_) => {}
            None => chosen.push(m),
        }
    }
    chosen.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    chosen
}

impl State {
    /// Reads `path`, logging the first failure for each path (later ones are expected to
    /// repeat). `quiet` files are optional (pressure, sensors): their absence is not logged.
    fn read(&mut self, files: &dyn Files, path: &str, quiet: bool) -> Option<String> {
        match files.read(path) {
            Ok(text) => Some(text),
            Err(e) => {
                if !quiet && self.warned.insert(path.to_string()) {
                    telltale_sdk::log(
                        Level::Warn,
                        &format!(
                            "cannot read {path} ({e}); its metrics are left out or taken from the system snapshot"
                        ),
                    );
                }
                None
            }
        }
    }

    /// Runs one collection at `now_ms`. `snapshot` gives disk sizes (a guest cannot call
    /// `statvfs`) and the fallbacks for files that cannot be read.
    pub fn collect(
        &mut self,
        cfg: &Config,
        files: &dyn Files,
        snapshot: &SystemSnapshot,
        now_ms: i64,
    ) -> Vec<Sample> {
        let proc_root = cfg.proc_root.trim_end_matches('/').to_string();
        let p = |rel: &str| format!("{proc_root}/{rel}");

        let uptime = self
            .read(files, &p("uptime"), false)
            .and_then(|t| procfs::parse_uptime(&t));
        let prev = self.prev.take();
        let elapsed = prev
            .as_ref()
            .and_then(|prev| elapsed_seconds(prev.at_ms, now_ms, prev.uptime, uptime));
        let mut out = Out {
            ts: now_ms,
            samples: Vec::with_capacity(256),
            elapsed,
            prev: prev.as_ref().map(|p| &p.counters),
            counters: HashMap::new(),
        };

        // CPU, load, scheduler counters.
        let stat = self
            .read(files, &p("stat"), false)
            .map(|t| procfs::parse_stat(&t));
        let mut cpus = HashMap::new();
        match &stat {
            Some(stat) => {
                let empty = HashMap::new();
                let prev_cpus = prev.as_ref().map_or(&empty, |p| &p.cpus);
                cpu_samples(&mut out, cfg, stat, prev_cpus, &mut cpus);
            }
            None => snapshot_cpu_samples(&mut out, cfg, snapshot),
        }
        let load = self
            .read(files, &p("loadavg"), false)
            .and_then(|t| procfs::parse_loadavg(&t))
            .unwrap_or([snapshot.load.one, snapshot.load.five, snapshot.load.fifteen]);
        out.gauge("system_load_average_1m", load[0], &[]);
        out.gauge("system_load_average_5m", load[1], &[]);
        out.gauge("system_load_average_15m", load[2], &[]);

        // Memory and swap.
        match self.read(files, &p("meminfo"), false) {
            Some(text) => memory_samples(&mut out, &procfs::parse_meminfo(&text)),
            None => snapshot_memory_samples(&mut out, snapshot),
        }
        if let Some(vmstat) = self.read(files, &p("vmstat"), false) {
            let page = self.page_size(files, &proc_root);
            let v = procfs::parse_key_values(&vmstat);
            for (key, total, rate) in [
                (
                    "pswpin",
                    "system_swap_in_bytes_total",
                    "system_swap_in_bytes_per_second",
                ),
                (
                    "pswpout",
                    "system_swap_out_bytes_total",
                    "system_swap_out_bytes_per_second",
                ),
            ] {
                if let Some(&pages) = v.get(key) {
                    out.counter(total, pages, page as f64, Rate::PerSecond(rate), &[]);
                }
            }
        }

        // Disks: usage per mount, I/O per device.
        match self.read(files, &p("self/mountinfo"), false) {
            Some(text) => {
                let mounts = procfs::parse_mountinfo(&text);
                for m in real_mounts(&mounts, &cfg.exclude_mounts) {
                    if let Some(d) = snapshot
                        .disks
                        .iter()
                        .find(|d| d.mount_point == m.mount_point)
                    {
                        disk_usage_samples(
                            &mut out,
                            &m.mount_point,
                            &m.source,
                            &m.fs_type,
                            d.total_bytes,
                            d.available_bytes,
                        );
                    }
                }
            }
            None => {
                for d in &snapshot.disks {
                    if !PSEUDO_FILE_SYSTEMS.contains(&d.file_system.as_str())
                        && !mount_excluded(&d.mount_point, &cfg.exclude_mounts)
                    {
                        disk_usage_samples(
                            &mut out,
                            &d.mount_point,
                            &d.device,
                            &d.file_system,
                            d.total_bytes,
                            d.available_bytes,
                        );
                    }
                }
            }
        }
        if let Some(text) = self.read(files, &p("diskstats"), false) {
            disk_io_samples(&mut out, cfg, &procfs::parse_diskstats(&text));
        }

        // Network interfaces.
        match self.read(files, &p("net/dev"), false) {
            Some(text) => {
                for n in procfs::parse_net_dev(&text) {
                    if !name_excluded(&n.interface, &cfg.exclude_interfaces) {
                        network_samples(&mut out, &n.interface, n.rx, n.tx);
                    }
                }
            }
            None => {
                for n in &snapshot.networks {
                    if !name_excluded(&n.interface, &cfg.exclude_interfaces) {
                        let rx = [n.received_bytes, n.received_packets, n.receive_errors, 0];
                        let tx = [
                            n.transmitted_bytes,
                            n.transmitted_packets,
                            n.transmit_errors,
                            0,
                        ];
                        network_samples(&mut out, &n.interface, rx, tx);
                    }
                }
            }
        }

        self.temperature_samples(&mut out, cfg, files);

        // Pressure stall information (Linux 4.20+, when enabled).
        for resource in ["cpu", "memory", "io"] {
            let Some(text) = self.read(files, &p(&format!("pressure/{resource}")), true) else {
                continue;
            };
            for line in procfs::parse_pressure(&text) {
                let labels = [("resource", resource), ("kind", line.kind.as_str())];
                out.counter(
                    "system_pressure_stalled_seconds_total",
                    line.total_us,
                    1e-6,
                    Rate::Percent("system_pressure_percent"),
                    &labels,
                );
                for (window, avg) in ["10s", "60s", "300s"].iter().zip(line.averages) {
                    out.gauge(
                        "system_pressure_average_percent",
                        avg,
                        &[
                            ("resource", resource),
                            ("kind", line.kind.as_str()),
                            ("window", window),
                        ],
                    );
                }
            }
        }

        // Uptime and boot time.
        let uptime_value = uptime.unwrap_or(snapshot.uptime_seconds as f64);
        out.gauge("system_uptime_seconds", uptime_value, &[]);
        let boot = stat
            .as_ref()
            .and_then(|s| s.boot_time)
            .map(|b| b as f64)
            .unwrap_or_else(|| (now_ms as f64 / 1000.0 - uptime_value).round());
        out.gauge("system_boot_time_seconds", boot, &[]);

        let Out {
            samples, counters, ..
        } = out;
        self.prev = Some(Previous {
            at_ms: now_ms,
            uptime,
            cpus,
            counters,
        });
        samples
    }

    /// The page size, found once from the host process's own RSS figures (4 KiB when they
    /// cannot be read).
    fn page_size(&mut self, files: &dyn Files, proc_root: &str) -> u64 {
        if let Some(size) = self.page_size {
            return size;
        }
        let status = files.read(&format!("{proc_root}/self/status"));
        let statm = files.read(&format!("{proc_root}/self/statm"));
        let size = match (status, statm) {
            (Ok(status), Ok(statm)) => procfs::page_size(&status, &statm),
            _ => None,
        }
        .unwrap_or(4096);
        self.page_size = Some(size);
        size
    }

    /// Reads every known temperature sensor, scanning for sensors on the first collection
    /// and every [`SENSOR_RESCAN_EVERY`] collections after.
    fn temperature_samples(&mut self, out: &mut Out, cfg: &Config, files: &dyn Files) {
        let due = match self.collections_since_scan {
            None => true,
            Some(n) => n + 1 >= SENSOR_RESCAN_EVERY,
        };
        if due {
            self.sensors = scan_sensors(files, cfg.sys_root.trim_end_matches('/'));
            self.collections_since_scan = Some(0);
        } else {
            self.collections_since_scan = self.collections_since_scan.map(|n| n + 1);
        }
        for s in &self.sensors {
            // A sensor may fail to read at times (EIO, ENODATA): skip it this time.
            let Ok(text) = files.read(&s.input) else {
                continue;
            };
            if let Ok(milli) = text.trim().parse::<i64>() {
                out.gauge(
                    "system_temperature_celsius",
                    milli as f64 / 1000.0,
                    &[("chip", s.chip.as_str()), ("sensor", s.sensor.as_str())],
                );
            }
        }
    }
}

/// Finds `temp*_input` files under `SYS/class/hwmon/hwmon*` without listing directories
/// (the `files` capability reads files only): probes increasing indices and stops after a
/// few missing ones in a row.
fn scan_sensors(files: &dyn Files, sys_root: &str) -> Vec<Sensor> {
    const MAX_CHIPS: u32 = 64;
    const MAX_CHIP_GAP: u32 = 4;
    const MAX_TEMPS: u32 = 128;
    const MAX_TEMP_GAP: u32 = 8;
    let mut sensors: Vec<Sensor> = Vec::new();
    let mut chip_names: Vec<String> = Vec::new();
    let mut misses = 0;
    for i in 0..MAX_CHIPS {
        let base = format!("{sys_root}/class/hwmon/hwmon{i}");
        let Ok(name) = files.read(&format!("{base}/name")) else {
            misses += 1;
            if misses >= MAX_CHIP_GAP {
                break;
            }
            continue;
        };
        misses = 0;
        let name = name.trim().to_string();
        // Two chips of one driver (two NVMe drives) get the hwmon index to tell them apart.
        let chip = if chip_names.contains(&name) {
            format!("{name}@hwmon{i}")
        } else {
            name.clone()
        };
        chip_names.push(name);
        let mut temp_misses = 0;
        let mut labels: Vec<String> = Vec::new();
        for t in 1..=MAX_TEMPS {
            let input = format!("{base}/temp{t}_input");
            if files.read(&input).is_err() {
                temp_misses += 1;
                if temp_misses >= MAX_TEMP_GAP {
                    break;
                }
                continue;
            }
            temp_misses = 0;
            let mut sensor = files
                .read(&format!("{base}/temp{t}_label"))
                .map(|l| l.trim().to_string())
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("temp{t}"));
            if labels.contains(&sensor) {
                sensor = format!("{sensor} (temp{t})");
            }
            labels.push(sensor.clone());
            sensors.push(Sensor {
                input,
                chip: chip.clone(),
                sensor,
            });
        }
    }
    sensors
}

fn cpu_samples(
    out: &mut Out,
    cfg: &Config,
    stat: &procfs::Stat,
    prev_cpus: &HashMap<String, CpuTimes>,
    cpus: &mut HashMap<String, CpuTimes>,
) {
    let cores = stat.cpus.iter().filter(|(n, _)| n != "total").count();
    out.gauge("system_cpu_cores", cores as f64, &[]);
    for (name, times) in &stat.cpus {
        if name != "total" && !cfg.per_core {
            continue;
        }
        let Some(before) = prev_cpus.get(name) else {
            cpus.insert(name.clone(), *times);
            continue;
        };
        // `iowait` is known to go backwards on some kernels: clamp each delta at 0.
        let deltas: Vec<u64> = times
            .values()
            .iter()
            .zip(before.values())
            .map(|(now, then)| now.saturating_sub(then))
            .collect();
        let total: u64 = deltas.iter().sum();
        if total == 0 {
            // Not one tick passed: keep the older reading so the next interval is measurable.
            cpus.insert(name.clone(), *before);
            continue;
        }
        cpus.insert(name.clone(), *times);
        let pct = |d: u64| d as f64 / total as f64 * 100.0;
        for (mode, d) in CpuTimes::MODES.iter().zip(&deltas) {
            out.gauge(
                "system_cpu_percent",
                pct(*d),
                &[("cpu", name.as_str()), ("mode", mode)],
            );
        }
        // Busy = everything but idle and iowait (an idle CPU waiting on I/O is not busy).
        let busy = 100.0 - pct(deltas[3] + deltas[4]);
        out.gauge(
            "system_cpu_usage_percent",
            busy.clamp(0.0, 100.0),
            &[("cpu", name.as_str())],
        );
    }
    let counters = [
        (
            stat.context_switches,
            "system_context_switches_total",
            "system_context_switches_per_second",
        ),
        (
            stat.processes_forked,
            "system_processes_forked_total",
            "system_processes_forked_per_second",
        ),
    ];
    for (value, total, rate) in counters {
        if let Some(v) = value {
            out.counter(total, v, 1.0, Rate::PerSecond(rate), &[]);
        }
    }
    if let Some(v) = stat.procs_running {
        out.gauge("system_processes_running", v as f64, &[]);
    }
    if let Some(v) = stat.procs_blocked {
        out.gauge("system_processes_blocked", v as f64, &[]);
    }
}

/// Busy percent from the host's snapshot, when `/proc/stat` cannot be read.
fn snapshot_cpu_samples(out: &mut Out, cfg: &Config, snapshot: &SystemSnapshot) {
    out.gauge(
        "system_cpu_cores",
        snapshot.cpus.iter().filter(|c| c.name != "total").count() as f64,
        &[],
    );
    if snapshot.cpu_usage_valid {
        for cpu in &snapshot.cpus {
            if cpu.name == "total" || cfg.per_core {
                out.gauge(
                    "system_cpu_usage_percent",
                    f64::from(cpu.usage_percent),
                    &[("cpu", cpu.name.as_str())],
                );
            }
        }
    }
}

/// `part / whole` in percent, 0 when `whole` is 0.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

fn memory_samples(out: &mut Out, m: &HashMap<&str, u64>) {
    let get = |k: &str| m.get(k).copied();
    let Some(total) = get("MemTotal") else {
        return;
    };
    let free = get("MemFree").unwrap_or(0);
    let buffers = get("Buffers").unwrap_or(0);
    let cached = get("Cached").unwrap_or(0);
    // MemAvailable exists since Linux 3.14; before, free + buffers + cache is the usual estimate.
    let available = get("MemAvailable").unwrap_or(free + buffers + cached);
    let used = total.saturating_sub(available);
    out.gauge("system_memory_total_bytes", total as f64, &[]);
    out.gauge("system_memory_available_bytes", available as f64, &[]);
    out.gauge("system_memory_used_bytes", used as f64, &[]);
    out.gauge("system_memory_free_bytes", free as f64, &[]);
    out.gauge("system_memory_cached_bytes", cached as f64, &[]);
    out.gauge("system_memory_buffers_bytes", buffers as f64, &[]);
    out.gauge("system_memory_used_percent", percent(used, total), &[]);
    let swap_total = get("SwapTotal").unwrap_or(0);
    let swap_free = get("SwapFree").unwrap_or(0);
    swap_samples(out, swap_total, swap_total.saturating_sub(swap_free));
}

fn swap_samples(out: &mut Out, total: u64, used: u64) {
    out.gauge("system_swap_total_bytes", total as f64, &[]);
    out.gauge("system_swap_used_bytes", used as f64, &[]);
    out.gauge(
        "system_swap_free_bytes",
        total.saturating_sub(used) as f64,
        &[],
    );
    // Without swap a "used percent" would be a misleading 0.
    if total > 0 {
        out.gauge("system_swap_used_percent", percent(used, total), &[]);
    }
}

/// Memory from the host's snapshot, when `/proc/meminfo` cannot be read (no cache or
/// buffer figures there).
fn snapshot_memory_samples(out: &mut Out, s: &SystemSnapshot) {
    let m = &s.memory;
    out.gauge("system_memory_total_bytes", m.total_bytes as f64, &[]);
    out.gauge(
        "system_memory_available_bytes",
        m.available_bytes as f64,
        &[],
    );
    out.gauge("system_memory_used_bytes", m.used_bytes as f64, &[]);
    out.gauge("system_memory_free_bytes", m.free_bytes as f64, &[]);
    out.gauge(
        "system_memory_used_percent",
        percent(m.used_bytes, m.total_bytes),
        &[],
    );
    swap_samples(out, m.swap_total_bytes, m.swap_used_bytes);
}

fn disk_usage_samples(
    out: &mut Out,
    mount: &str,
    device: &str,
    fs: &str,
    total: u64,
    available: u64,
) {
    if total == 0 {
        return;
    }
    let used = total.saturating_sub(available);
    let labels = [("mount", mount), ("device", device), ("fs", fs)];
    out.gauge("system_disk_total_bytes", total as f64, &labels);
    out.gauge("system_disk_available_bytes", available as f64, &labels);
    out.gauge("system_disk_used_bytes", used as f64, &labels);
    out.gauge("system_disk_used_percent", percent(used, total), &labels);
}

fn disk_io_samples(out: &mut Out, cfg: &Config, stats: &[procfs::DiskStat]) {
    let names: Vec<&str> = stats.iter().map(|d| d.name.as_str()).collect();
    for d in stats {
        let excluded = cfg
            .exclude_devices
            .iter()
            .any(|prefix| d.name.starts_with(prefix.as_str()));
        // Never-used devices (unattached loop devices, an idle zram) are noise.
        let unused = d.reads == 0 && d.writes == 0 && d.in_progress == 0;
        if excluded || unused || (!cfg.partitions && procfs::is_partition(&d.name, &names)) {
            continue;
        }
        let labels = [("device", d.name.as_str())];
        for (raw, scale, total, rate) in [
            (
                d.sectors_read,
                512.0,
                "system_disk_read_bytes_total",
                Rate::PerSecond("system_disk_read_bytes_per_second"),
            ),
            (
                d.sectors_written,
                512.0,
                "system_disk_written_bytes_total",
                Rate::PerSecond("system_disk_written_bytes_per_second"),
            ),
            (
                d.reads,
                1.0,
                "system_disk_reads_total",
                Rate::PerSecond("system_disk_reads_per_second"),
            ),
            (
                d.writes,
                1.0,
                "system_disk_writes_total",
                Rate::PerSecond("system_disk_writes_per_second"),
            ),
            (
                d.io_ticks_ms,
                1e-3,
                "system_disk_io_time_seconds_total",
                Rate::Percent("system_disk_busy_percent"),
            ),
        ] {
            out.counter(total, raw, scale, rate, &labels);
        }
        out.gauge("system_disk_io_in_progress", d.in_progress as f64, &labels);
    }
}

fn network_samples(out: &mut Out, interface: &str, rx: [u64; 4], tx: [u64; 4]) {
    let labels = [("interface", interface)];
    let names = [
        ("received_bytes", rx[0]),
        ("received_packets", rx[1]),
        ("receive_errors", rx[2]),
        ("receive_drops", rx[3]),
        ("transmitted_bytes", tx[0]),
        ("transmitted_packets", tx[1]),
        ("transmit_errors", tx[2]),
        ("transmit_drops", tx[3]),
    ];
    for (what, value) in names {
        let total = format!("system_network_{what}_total");
        let rate = format!("system_network_{what}_per_second");
        out.counter(&total, value, 1.0, Rate::PerSecond(&rate), &labels);
    }
}
