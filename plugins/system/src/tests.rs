//! Native tests of a whole collection over a fake `/proc` and `/sys`: values, rates over
//! two collections, counter resets, restarts, fallbacks to the snapshot, and the config.

use std::cell::RefCell;
use std::collections::HashMap;

use telltale_sdk::Sample;
use telltale_sdk::system::{Cpu, Disk, LoadAverage, Memory, Network, SystemSnapshot};

use super::*;
use crate::collect::{Files, State, elapsed_seconds, real_mounts};
use crate::procfs::{CpuTimes, parse_mountinfo};

/// A fake file tree: path → contents.
#[derive(Default)]
struct Fake(RefCell<HashMap<String, String>>);

impl Fake {
    fn set(&self, path: &str, text: &str) {
        self.0
            .borrow_mut()
            .insert(path.to_string(), text.to_string());
    }
}

impl Files for Fake {
    fn read(&self, path: &str) -> Result<String, String> {
        self.0
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| format!("cannot read `{path}`: No such file or directory"))
    }
}

const T0: i64 = 1_767_000_000_000;

fn stat(cpu0: [u64; 8], cpu1: [u64; 8], ctxt: u64, forks: u64) -> String {
    let line = |name: &str, v: [u64; 8]| {
        format!(
            "{name} {} {} {} {} {} {} {} {} 0 0\n",
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
        )
    };
    let total: Vec<u64> = cpu0.iter().zip(cpu1).map(|(a, b)| a + b).collect();
    let total: [u64; 8] = total.try_into().unwrap();
    format!(
        "{}{}{}intr 1 2 3\nctxt {ctxt}\nbtime 1766990000\nprocesses {forks}\nprocs_running 2\nprocs_blocked 1\n",
        line("cpu", total),
        line("cpu0", cpu0),
        line("cpu1", cpu1)
    )
}

fn net_dev(eth_rx_bytes: u64, eth_tx_bytes: u64) -> String {
    format!(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  \
         eth0: {eth_rx_bytes} 100 1 2 0 0 0 0 {eth_tx_bytes} 50 3 4 0 0 0 0\n"
    )
}

fn diskstats(vda_sectors_read: u64, vda_io_ticks: u64) -> String {
    format!(
        "   7       0 loop0 10 0 80 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
         254       0 vda 1000 0 {vda_sectors_read} 0 500 0 4000 0 1 {vda_io_ticks} 0 0 0 0 0 0 0\n \
         254       1 vda1 900 0 7000 0 400 0 3000 0 0 1000 0 0 0 0 0 0 0\n \
         253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
}

const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
60 27 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw
61 27 8:17 / /mnt/backup rw,relatime - xfs /dev/sdb1 rw
";

/// A complete fake tree at collection one.
fn tree() -> Fake {
    let f = Fake::default();
    f.set("/proc/uptime", "1000.00 1900.00\n");
    f.set(
        "/proc/stat",
        &stat(
            [100, 0, 50, 800, 50, 0, 0, 0],
            [200, 10, 40, 700, 0, 0, 50, 0],
            5000,
            300,
        ),
    );
    f.set("/proc/loadavg", "0.50 0.25 0.10 2/300 4242\n");
    f.set(
        "/proc/meminfo",
        "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 300 kB\nSwapTotal: 400 kB\nSwapFree: 300 kB\n",
    );
    f.set("/proc/vmstat", "nr_free_pages 1\npswpin 10\npswpout 20\n");
    f.set("/proc/self/status", "VmRSS:\t 4096 kB\n");
    f.set("/proc/self/statm", "2000 1024 100 1 0 10 0\n");
    f.set("/proc/self/mountinfo", MOUNTINFO);
    f.set("/proc/diskstats", &diskstats(2000, 10_000));
    f.set("/proc/net/dev", &net_dev(10_000, 5_000));
    f.set(
        "/proc/pressure/cpu",
        "some avg10=1.00 avg60=2.00 avg300=3.00 total=1000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    f.set(
        "/proc/pressure/io",
        "some avg10=0.50 avg60=0.25 avg300=0.10 total=500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=200000\n",
    );
    // No /proc/pressure/memory: a missing resource is skipped.
    f.set("/sys/class/hwmon/hwmon0/name", "nvme\n");
    f.set("/sys/class/hwmon/hwmon0/temp1_input", "41850\n");
    f.set("/sys/class/hwmon/hwmon0/temp1_label", "Composite\n");
    f.set("/sys/class/hwmon/hwmon1/name", "coretemp\n");
    f.set("/sys/class/hwmon/hwmon1/temp1_input", "50000\n");
    f.set("/sys/class/hwmon/hwmon1/temp1_label", "Package id 0\n");
    f.set("/sys/class/hwmon/hwmon1/temp3_input", "48000\n"); // a gap: temp2 missing
    f.set("/sys/class/hwmon/hwmon2/name", "nvme\n");
    f.set("/sys/class/hwmon/hwmon2/temp1_input", "39000\n");
    f
}

fn snapshot() -> SystemSnapshot {
    let disk = |mount: &str, device: &str, fs: &str, total, available| Disk {
        mount_point: mount.into(),
        device: device.into(),
        file_system: fs.into(),
        total_bytes: total,
        available_bytes: available,
        removable: false,
    };
    SystemSnapshot {
        timestamp_ms: T0,
        cpus: ["total", "0", "1"]
            .iter()
            .map(|n| Cpu {
                name: n.to_string(),
                usage_percent: 25.0,
                frequency_mhz: 2000,
            })
            .collect(),
        memory: Memory {
            total_bytes: 2000,
            available_bytes: 500,
            used_bytes: 1500,
            free_bytes: 100,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
        },
        load: LoadAverage {
            one: 9.0,
            five: 8.0,
            fifteen: 7.0,
        },
        disks: vec![
            disk("/", "/dev/vda", "ext4", 1000, 250),
            disk("/data", "/dev/vda", "ext4", 1000, 250),
            disk("/dev/shm", "tmpfs", "tmpfs", 100, 100),
            disk("/mnt/backup", "/dev/sdb1", "xfs", 4000, 1000),
        ],
        networks: vec![Network {
            interface: "eth9".into(),
            received_bytes: 7,
            transmitted_bytes: 8,
            received_packets: 1,
            transmitted_packets: 2,
            receive_errors: 0,
            transmit_errors: 0,
        }],
        uptime_seconds: 77,
        cpu_usage_valid: true,
    }
}

fn config(json: &str) -> Config {
    parse_config(json).unwrap()
}

/// The value of the one sample called `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.name == *k && l.value == *v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} is ambiguous: {found:?}");
    found.first().copied()
}

fn count(samples: &[Sample], name: &str) -> usize {
    samples.iter().filter(|s| s.name == name).count()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn first_collection_has_gauges_and_totals_but_no_rates() {
    let f = tree();
    let mut state = State::default();
    let s = state.collect(&config("null"), &f, &snapshot(), T0);
    assert!(s.iter().all(|x| x.timestamp_ms == T0));
    if let Some(rate) = s.iter().find(|x| {
        x.name.ends_with("_per_second")
            || ["system_cpu_percent", "system_cpu_usage_percent"].contains(&x.name.as_str())
            || x.name == "system_disk_busy_percent"
            || x.name == "system_pressure_percent"
    }) {
        panic!("a rate in the first collection: {rate:?}");
    }
    assert_eq!(value(&s, "system_cpu_cores", &[]), Some(2.0));
    assert_eq!(value(&s, "system_load_average_5m", &[]), Some(0.25));
    assert_eq!(
        value(&s, "system_context_switches_total", &[]),
        Some(5000.0)
    );
    assert_eq!(value(&s, "system_processes_forked_total", &[]), Some(300.0));
    assert_eq!(value(&s, "system_processes_running", &[]), Some(2.0));
    assert_eq!(value(&s, "system_processes_blocked", &[]), Some(1.0));

    assert_eq!(value(&s, "system_memory_total_bytes", &[]), Some(1024000.0));
    assert_eq!(
        value(&s, "system_memory_available_bytes", &[]),
        Some(614400.0)
    );
    assert_eq!(value(&s, "system_memory_used_bytes", &[]), Some(409600.0));
    assert_eq!(value(&s, "system_memory_free_bytes", &[]), Some(204800.0));
    assert_eq!(value(&s, "system_memory_cached_bytes", &[]), Some(307200.0));
    assert_eq!(value(&s, "system_memory_buffers_bytes", &[]), Some(51200.0));
    assert_eq!(value(&s, "system_memory_used_percent", &[]), Some(40.0));
    assert_eq!(value(&s, "system_swap_total_bytes", &[]), Some(409600.0));
    assert_eq!(value(&s, "system_swap_used_bytes", &[]), Some(102400.0));
    assert_eq!(value(&s, "system_swap_free_bytes", &[]), Some(307200.0));
    assert_eq!(value(&s, "system_swap_used_percent", &[]), Some(25.0));
    assert_eq!(value(&s, "system_swap_in_bytes_total", &[]), Some(40960.0));
    assert_eq!(value(&s, "system_swap_out_bytes_total", &[]), Some(81920.0));

    // Disks: `/` and `/mnt/backup`; `/data` is a bind mount of `/`'s device, tmpfs and
    // proc are pseudo file systems.
    let mounts: Vec<&str> = s
        .iter()
        .filter(|x| x.name == "system_disk_used_percent")
        .map(|x| x.labels[0].value.as_str())
        .collect();
    assert_eq!(mounts, ["/", "/mnt/backup"]);
    let root = [("mount", "/"), ("device", "/dev/vda"), ("fs", "ext4")];
    assert_eq!(value(&s, "system_disk_used_percent", &root), Some(75.0));
    assert_eq!(value(&s, "system_disk_used_bytes", &root), Some(750.0));

    // Disk I/O: vda only (loop excluded, vda1 is a partition, zram0 never used).
    assert_eq!(count(&s, "system_disk_read_bytes_total"), 1);
    let vda = [("device", "vda")];
    assert_eq!(
        value(&s, "system_disk_read_bytes_total", &vda),
        Some(2000.0 * 512.0)
    );
    assert_eq!(
        value(&s, "system_disk_written_bytes_total", &vda),
        Some(4000.0 * 512.0)
    );
    assert_eq!(value(&s, "system_disk_reads_total", &vda), Some(1000.0));
    assert_eq!(value(&s, "system_disk_writes_total", &vda), Some(500.0));
    assert_eq!(
        value(&s, "system_disk_io_time_seconds_total", &vda),
        Some(10.0)
    );
    assert_eq!(value(&s, "system_disk_io_in_progress", &vda), Some(1.0));

    // Network: lo excluded by default.
    assert_eq!(count(&s, "system_network_received_bytes_total"), 1);
    let eth = [("interface", "eth0")];
    assert_eq!(
        value(&s, "system_network_received_bytes_total", &eth),
        Some(10000.0)
    );
    assert_eq!(
        value(&s, "system_network_receive_drops_total", &eth),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "system_network_transmit_errors_total", &eth),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "system_network_transmit_drops_total", &eth),
        Some(4.0)
    );

    // Temperatures: chips told apart, labels read, gaps skipped.
    let t = |chip, sensor| {
        value(
            &s,
            "system_temperature_celsius",
            &[("chip", chip), ("sensor", sensor)],
        )
    };
    assert_eq!(t("nvme", "Composite"), Some(41.85));
    assert_eq!(t("coretemp", "Package id 0"), Some(50.0));
    assert_eq!(t("coretemp", "temp3"), Some(48.0));
    assert_eq!(t("nvme@hwmon2", "temp1"), Some(39.0));
    assert_eq!(count(&s, "system_temperature_celsius"), 4);

    // Pressure: counters and the kernel's averages; memory's file is missing.
    let cpu_some = [("resource", "cpu"), ("kind", "some")];
    assert_eq!(
        value(&s, "system_pressure_stalled_seconds_total", &cpu_some),
        Some(1.0)
    );
    assert_eq!(count(&s, "system_pressure_stalled_seconds_total"), 4);
    assert_eq!(
        value(
            &s,
            "system_pressure_average_percent",
            &[("resource", "io"), ("kind", "some"), ("window", "60s")]
        ),
        Some(0.25)
    );

    assert_eq!(value(&s, "system_uptime_seconds", &[]), Some(1000.0));
    assert_eq!(
        value(&s, "system_boot_time_seconds", &[]),
        Some(1766990000.0)
    );
}

#[test]
fn second_collection_adds_exact_rates() {
    let f = tree();
    let cfg = config("null");
    let mut state = State::default();
    state.collect(&cfg, &f, &snapshot(), T0);

    // Two seconds later, on both clocks.
    f.set("/proc/uptime", "1002.00 1903.00\n");
    // cpu0: +60 user +20 system +100 idle +20 iowait = 200 ticks;
    // cpu1: +10 nice +30 steal +160 idle = 200 ticks.
    f.set(
        "/proc/stat",
        &stat(
            [160, 0, 70, 900, 70, 0, 0, 0],
            [200, 20, 40, 860, 0, 0, 50, 30],
            7000,
            310,
        ),
    );
    f.set("/proc/vmstat", "pswpin 15\npswpout 20\n");
    f.set("/proc/diskstats", &diskstats(2000 + 4096, 10_000 + 500));
    f.set("/proc/net/dev", &net_dev(10_000 + 3000, 5_000));
    f.set(
        "/proc/pressure/cpu",
        "some avg10=1.00 avg60=2.00 avg300=3.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    let s = state.collect(&cfg, &f, &snapshot(), T0 + 2000);

    let cpu = |c, mode| value(&s, "system_cpu_percent", &[("cpu", c), ("mode", mode)]).unwrap();
    assert!(close(cpu("0", "user"), 30.0));
    assert!(close(cpu("0", "system"), 10.0));
    assert!(close(cpu("0", "idle"), 50.0));
    assert!(close(cpu("0", "iowait"), 10.0));
    assert!(close(cpu("1", "nice"), 5.0));
    assert!(close(cpu("1", "steal"), 15.0));
    assert!(close(cpu("total", "user"), 15.0));
    for c in ["total", "0", "1"] {
        let sum: f64 = CpuTimes::MODES.iter().map(|m| cpu(c, m)).sum();
        assert!(close(sum, 100.0), "cpu {c} sums to {sum}");
    }
    assert_eq!(count(&s, "system_cpu_percent"), 3 * 8);
    let busy = |c| value(&s, "system_cpu_usage_percent", &[("cpu", c)]).unwrap();
    assert!(close(busy("0"), 40.0));
    assert!(close(busy("1"), 20.0));
    assert!(close(busy("total"), 30.0));

    assert_eq!(
        value(&s, "system_context_switches_per_second", &[]),
        Some(1000.0)
    );
    assert_eq!(
        value(&s, "system_processes_forked_per_second", &[]),
        Some(5.0)
    );
    assert_eq!(
        value(&s, "system_swap_in_bytes_per_second", &[]),
        Some(5.0 * 4096.0 / 2.0)
    );
    assert_eq!(
        value(&s, "system_swap_out_bytes_per_second", &[]),
        Some(0.0)
    );

    let vda = [("device", "vda")];
    assert_eq!(
        value(&s, "system_disk_read_bytes_per_second", &vda),
        Some(4096.0 * 512.0 / 2.0)
    );
    assert_eq!(value(&s, "system_disk_reads_per_second", &vda), Some(0.0));
    assert!(close(
        value(&s, "system_disk_busy_percent", &vda).unwrap(),
        25.0
    ));

    let eth = [("interface", "eth0")];
    assert_eq!(
        value(&s, "system_network_received_bytes_per_second", &eth),
        Some(1500.0)
    );
    assert_eq!(
        value(&s, "system_network_transmitted_bytes_per_second", &eth),
        Some(0.0)
    );
    assert_eq!(count(&s, "system_network_receive_drops_per_second"), 1);

    let cpu_some = [("resource", "cpu"), ("kind", "some")];
    assert!(close(
        value(&s, "system_pressure_percent", &cpu_some).unwrap(),
        25.0
    ));
    assert_eq!(
        value(
            &s,
            "system_pressure_percent",
            &[("resource", "io"), ("kind", "full")]
        ),
        Some(0.0)
    );
}

#[test]
fn counter_reset_and_restart_emit_no_rates() {
    let f = tree();
    let cfg = config("null");
    let mut state = State::default();
    state.collect(&cfg, &f, &snapshot(), T0);
    f.set("/proc/uptime", "1001.00 1900.00\n");
    // eth0 was re-created: its counters start again from small values.
    f.set("/proc/net/dev", &net_dev(10, 5));
    let s = state.collect(&cfg, &f, &snapshot(), T0 + 1000);
    let eth = [("interface", "eth0")];
    assert_eq!(
        value(&s, "system_network_received_bytes_per_second", &eth),
        None
    );
    assert_eq!(
        value(&s, "system_network_received_bytes_total", &eth),
        Some(10.0)
    );
    assert!(value(&s, "system_disk_reads_per_second", &[("device", "vda")]).is_some());

    // The next interval has a rate again, from the new baseline.
    f.set("/proc/uptime", "1002.00 1900.00\n");
    f.set("/proc/net/dev", &net_dev(110, 5));
    let s = state.collect(&cfg, &f, &snapshot(), T0 + 2000);
    assert_eq!(
        value(&s, "system_network_received_bytes_per_second", &eth),
        Some(100.0)
    );

    // A fresh instance (after a trap the host re-instantiates) starts without rates.
    let mut fresh = State::default();
    let s = fresh.collect(&cfg, &f, &snapshot(), T0 + 3000);
    assert_eq!(count(&s, "system_network_received_bytes_per_second"), 0);
    assert_eq!(count(&s, "system_cpu_percent"), 0);
}

#[test]
fn cpu_percentages_wait_for_a_tick() {
    let f = tree();
    let cfg = config("null");
    let mut state = State::default();
    state.collect(&cfg, &f, &snapshot(), T0);
    // No tick passed (collections 5 ms apart): no CPU figures, and the baseline is kept...
    let s = state.collect(&cfg, &f, &snapshot(), T0 + 5);
    assert_eq!(count(&s, "system_cpu_percent"), 0);
    // ...so the next collection measures from the first one.
    f.set(
        "/proc/stat",
        &stat(
            [200, 0, 50, 800, 50, 0, 0, 0],
            [200, 10, 40, 800, 0, 0, 50, 0],
            5000,
            300,
        ),
    );
    let s = state.collect(&cfg, &f, &snapshot(), T0 + 1000);
    let user0 = value(&s, "system_cpu_percent", &[("cpu", "0"), ("mode", "user")]);
    assert_eq!(user0, Some(100.0));
}

#[test]
fn per_core_off_and_exclusions() {
    let f = tree();
    let cfg = config(
        r#"{"per_core": false, "exclude_interfaces": [], "exclude_mounts": ["/mnt"],
            "exclude_devices": [], "partitions": true}"#,
    );
    let mut state = State::default();
    state.collect(&cfg, &f, &snapshot(), T0);
    f.set(
        "/proc/stat",
        &stat(
            [110, 0, 50, 890, 50, 0, 0, 0],
            [200, 10, 40, 800, 0, 0, 50, 0],
            5000,
            300,
        ),
    );
    let s = state.collect(&cfg, &f, &snapshot(), T0 + 1000);
    let cpus: Vec<&str> = s
        .iter()
        .filter(|x| x.name == "system_cpu_usage_percent")
        .map(|x| x.labels[0].value.as_str())
        .collect();
    assert_eq!(cpus, ["total"]);
    assert_eq!(value(&s, "system_cpu_cores", &[]), Some(2.0));
    assert_eq!(
        count(&s, "system_network_received_bytes_total"),
        2,
        "lo kept"
    );
    assert_eq!(
        count(&s, "system_disk_used_percent"),
        1,
        "/mnt/backup excluded"
    );
    let devices: Vec<&str> = s
        .iter()
        .filter(|x| x.name == "system_disk_reads_total")
        .map(|x| x.labels[0].value.as_str())
        .collect();
    assert_eq!(devices, ["loop0", "vda", "vda1"], "zram0 never did I/O");
}

#[test]
fn without_files_the_snapshot_stands_in() {
    let f = Fake::default();
    let mut state = State::default();
    let s = state.collect(&config("null"), &f, &snapshot(), T0);
    assert_eq!(value(&s, "system_cpu_cores", &[]), Some(2.0));
    assert_eq!(count(&s, "system_cpu_usage_percent"), 3);
    assert_eq!(count(&s, "system_cpu_percent"), 0);
    assert_eq!(value(&s, "system_load_average_1m", &[]), Some(9.0));
    assert_eq!(value(&s, "system_memory_total_bytes", &[]), Some(2000.0));
    assert_eq!(value(&s, "system_memory_used_percent", &[]), Some(75.0));
    assert_eq!(count(&s, "system_swap_used_percent"), 0, "no swap");
    assert_eq!(count(&s, "system_memory_cached_bytes"), 0);
    // Without mountinfo there is nothing to deduplicate bind mounts with.
    assert_eq!(count(&s, "system_disk_used_percent"), 3);
    assert_eq!(
        value(
            &s,
            "system_network_received_bytes_total",
            &[("interface", "eth9")]
        ),
        Some(7.0)
    );
    assert_eq!(value(&s, "system_uptime_seconds", &[]), Some(77.0));
    assert_eq!(
        value(&s, "system_boot_time_seconds", &[]),
        Some((T0 / 1000 - 77) as f64)
    );
    assert_eq!(count(&s, "system_temperature_celsius"), 0);
    assert_eq!(count(&s, "system_pressure_percent"), 0);
}

#[test]
fn other_roots_are_read() {
    let f = Fake::default();
    for (path, text) in tree().0.borrow().iter() {
        let moved = path
            .replacen("/proc/", "/host/proc/", 1)
            .replacen("/sys/", "/host/sys/", 1);
        f.set(&moved, text);
    }
    let cfg = config(r#"{"proc_root": "/host/proc/", "sys_root": "/host/sys"}"#);
    let s = State::default().collect(&cfg, &f, &snapshot(), T0);
    assert_eq!(value(&s, "system_memory_total_bytes", &[]), Some(1024000.0));
    assert_eq!(count(&s, "system_temperature_celsius"), 4);
}

#[test]
fn elapsed_prefers_the_wall_clock_unless_it_was_stepped() {
    assert_eq!(elapsed_seconds(0, 2000, Some(10.0), Some(12.0)), Some(2.0));
    // Uptime has 10 ms resolution: a small disagreement keeps the finer wall clock.
    assert_eq!(
        elapsed_seconds(0, 2004, Some(10.0), Some(12.01)),
        Some(2.004)
    );
    // The wall clock jumped an hour: uptime is used.
    assert_eq!(
        elapsed_seconds(0, 3_602_000, Some(10.0), Some(12.0)),
        Some(2.0)
    );
    assert_eq!(elapsed_seconds(0, -5000, Some(10.0), Some(12.0)), Some(2.0));
    // Uptime went backwards (a restored VM snapshot): no trustworthy interval.
    assert_eq!(elapsed_seconds(0, 2000, Some(10.0), Some(5.0)), None);
    // Without uptime the wall clock is all there is.
    assert_eq!(elapsed_seconds(0, 1500, None, None), Some(1.5));
    assert_eq!(elapsed_seconds(0, 0, None, None), None);
}

#[test]
fn real_mounts_leave_out_pseudo_overlay_and_binds() {
    let text = "\
1 0 0:50 / / rw - overlay overlay rw,lowerdir=/a
2 1 0:51 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw
3 1 8:1 /var/lib/docker/containers/c/hostname /etc/hostname rw - ext4 /dev/sda1 rw
4 1 8:1 /var/lib/docker/containers/c/hosts /etc/hosts rw - ext4 /dev/sda1 rw
5 1 0:52 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
6 1 0:53 / /mnt/nfs rw - nfs4 server:/export rw
7 1 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro
8 1 259:2 / /home rw - btrfs /dev/nvme0n1p2 rw
9 1 259:2 / /home2 rw - btrfs /dev/nvme0n1p2 rw
";
    let mounts = parse_mountinfo(text);
    let chosen: Vec<&str> = real_mounts(&mounts, &["/mnt".to_string()])
        .iter()
        .map(|m| m.mount_point.as_str())
        .collect();
    assert_eq!(chosen, ["/", "/etc/hosts", "/home"]);
}

#[test]
fn config_is_checked() {
    match SystemCollector::init(r#"{"per_cores": true}"#) {
        Err(PluginError::InvalidConfig(msg)) => assert!(msg.contains("per_cores"), "{msg}"),
        other => panic!("unexpected {:?}", other.err()),
    }
    match SystemCollector::init(r#"{"proc_root": "proc"}"#) {
        Err(PluginError::InvalidConfig(msg)) => assert!(msg.contains("absolute"), "{msg}"),
        other => panic!("unexpected {:?}", other.err()),
    }
    let c = SystemCollector::init("null").ok().unwrap();
    assert!(c.config.per_core);
    assert_eq!(c.config.exclude_interfaces, ["lo"]);
    assert_eq!(c.config.exclude_devices, ["loop", "ram"]);
    assert_eq!(
        (c.config.proc_root.as_str(), c.config.sys_root.as_str()),
        ("/proc", "/sys")
    );
}
