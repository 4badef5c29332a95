//! Pure parsers for the Linux kernel files the collector reads (`/proc/stat`,
//! `/proc/meminfo`, `/proc/vmstat`, `/proc/loadavg`, `/proc/uptime`,
//! `/proc/self/mountinfo`, `/proc/diskstats`, `/proc/net/dev`, `/proc/pressure/*`).
//!
//! Every function takes the file's text and returns what it understood; lines it does not
//! understand are skipped rather than failing the whole file, because the kernel adds
//! fields over time and a partial reading is worth more than none. Formats are those of
//! `man 5 proc` and the kernel's Documentation/ (iostats, accounting/psi).

use std::collections::HashMap;

/// Cumulative CPU times of one CPU line of `/proc/stat`, in clock ticks (USER_HZ).
///
/// `user` and `nice` already include `guest` and `guest_nice` (the kernel counts guest time
/// twice), so those two are not kept: the eight fields below sum to the elapsed time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time in user mode.
    pub user: u64,
    /// Time in user mode at low priority.
    pub nice: u64,
    /// Time in kernel mode.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Idle time while I/O was outstanding.
    pub iowait: u64,
    /// Time servicing hardware interrupts.
    pub irq: u64,
    /// Time servicing soft interrupts.
    pub softirq: u64,
    /// Time stolen by the hypervisor for other guests.
    pub steal: u64,
}

impl CpuTimes {
    /// The modes in the order of [`CpuTimes::values`], as `mode` label values.
    pub const MODES: [&'static str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];

    /// The fields in the order of [`CpuTimes::MODES`].
    pub fn values(&self) -> [u64; 8] {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
    }
}

/// What the collector uses of `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stat {
    /// The aggregate line as `"total"` first, then one entry per online core (`"0"`, `"1"`, ...).
    pub cpus: Vec<(String, CpuTimes)>,
    /// `ctxt`: context switches since boot.
    pub context_switches: Option<u64>,
    /// `processes`: forks since boot.
    pub processes_forked: Option<u64>,
    /// `procs_running`: tasks runnable now.
    pub procs_running: Option<u64>,
    /// `procs_blocked`: tasks blocked on I/O now.
    pub procs_blocked: Option<u64>,
    /// `btime`: boot time, seconds since the Unix epoch.
    pub boot_time: Option<u64>,
}

/// Parses `/proc/stat`.
pub fn parse_stat(text: &str) -> Stat {
    let mut stat = Stat::default();
    let mut total = None;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(id) = key.strip_prefix("cpu") {
            // Missing trailing fields (old kernels) count as 0.
            let mut v = [0u64; 8];
            for slot in &mut v {
                match fields.next().map(str::parse) {
                    Some(Ok(n)) => *slot = n,
                    Some(Err(_)) => continue,
                    None => break,
                }
            }
            let times = CpuTimes {
                user: v[0],
                nice: v[1],
                system: v[2],
                idle: v[3],
                iowait: v[4],
                irq: v[5],
                softirq: v[6],
                steal: v[7],
            };
            if id.is_empty() {
                total = Some(times);
            } else if id.bytes().all(|b| b.is_ascii_digit()) {
                stat.cpus.push((id.to_string(), times));
            }
            continue;
        }
        let value = fields.next().and_then(|v| v.parse().ok());
        match key {
            "ctxt" => stat.context_switches = value,
            "processes" => stat.processes_forked = value,
            "procs_running" => stat.procs_running = value,
            "procs_blocked" => stat.procs_blocked = value,
            "btime" => stat.boot_time = value,
            _ => {}
        }
    }
    if let Some(total) = total {
        stat.cpus.insert(0, ("total".to_string(), total));
    }
    stat
}

/// Parses `KEY: VALUE [kB]` lines (`/proc/meminfo`) into bytes; values in `kB` (which the
/// kernel means as KiB) are multiplied by 1024.
pub fn parse_meminfo(text: &str) -> HashMap<&str, u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let value = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        out.insert(key.trim(), value);
    }
    out
}

/// Parses `KEY VALUE` lines (`/proc/vmstat`).
pub fn parse_key_values(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_ascii_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// Parses `/proc/loadavg` into the 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut parts = text.split_ascii_whitespace().map(str::parse::<f64>);
    Some([
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    ])
}

/// Parses `/proc/uptime` into seconds since boot.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
}

/// Parses `VmRSS` of `/proc/self/status` and the resident pages of `/proc/self/statm` into
/// the page size, which a WebAssembly guest cannot ask for. Both figures describe the same
/// process a moment apart, so the ratio is snapped to the nearest power of two.
pub fn page_size(status: &str, statm: &str) -> Option<u64> {
    let rss_bytes = *parse_meminfo(status).get("VmRSS")?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    if pages == 0 || rss_bytes == 0 {
        return None;
    }
    let ratio = rss_bytes as f64 / pages as f64;
    // Page sizes Linux uses: 4 KiB to 64 KiB.
    [4096u64, 8192, 16384, 65536]
        .into_iter()
        .min_by(|a, b| {
            let da = (ratio / *a as f64).ln().abs();
            let db = (ratio / *b as f64).ln().abs();
            da.total_cmp(&db)
        })
        .filter(|p| (ratio / *p as f64 - 1.0).abs() < 0.25)
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the mounted device (`st_dev`): equal for bind mounts of one file system.
    pub device_id: String,
    /// The directory of the file system that is mounted (`/` unless a bind mount of a subtree).
    pub root: String,
    /// Where it is mounted, unescaped.
    pub mount_point: String,
    /// The file system type (`ext4`, `overlay`, `fuse.sshfs`, ...).
    pub fs_type: String,
    /// The mount source (`/dev/sda1`, `server:/export`, `tmpfs`), unescaped.
    pub source: String,
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount tables.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`:
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let _id = l.next()?;
            let _parent = l.next()?;
            let device_id = l.next()?.to_string();
            let root = unescape_octal(l.next()?);
            let mount_point = unescape_octal(l.next()?);
            let mut r = right.split(' ');
            let fs_type = r.next()?.to_string();
            let source = unescape_octal(r.next().unwrap_or(""));
            Some(Mount {
                device_id,
                root,
                mount_point,
                fs_type,
                source,
            })
        })
        .collect()
}

/// One line of `/proc/diskstats` (the fields the collector uses; see the kernel's
/// Documentation/admin-guide/iostats.rst).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStat {
    /// The device's kernel name (`sda`, `nvme0n1p1`).
    pub name: String,
    /// Reads completed.
    pub reads: u64,
    /// 512-byte sectors read (always 512, whatever the device's sector size).
    pub sectors_read: u64,
    /// Writes completed.
    pub writes: u64,
    /// 512-byte sectors written.
    pub sectors_written: u64,
    /// I/Os in flight now.
    pub in_progress: u64,
    /// Milliseconds the device had I/O in flight.
    pub io_ticks_ms: u64,
}

/// Parses `/proc/diskstats`.
pub fn parse_diskstats(text: &str) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            Some(DiskStat {
                name: f[2].to_string(),
                reads: n(3)?,
                sectors_read: n(5)?,
                writes: n(7)?,
                sectors_written: n(9)?,
                in_progress: n(11)?,
                io_ticks_ms: n(12)?,
            })
        })
        .collect()
}

/// Whether `name` is a partition of another device in `names`: `sda1` of `sda`,
/// `nvme0n1p2` and `mmcblk0p1` of `nvme0n1` and `mmcblk0`. Partitions are left out of
/// disk I/O because their traffic is already counted in their disk's.
pub fn is_partition(name: &str, names: &[&str]) -> bool {
    names.iter().any(|parent| {
        *parent != name
            && name.strip_prefix(parent).is_some_and(|rest| {
                let digits = rest.strip_prefix('p').unwrap_or(rest);
                !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    // The kernel separates the number with `p` exactly when the disk's
                    // name ends in a digit (`nvme0n1p1`, but `sda1`).
                    && (rest.starts_with('p')
                        == parent.as_bytes().last().is_some_and(u8::is_ascii_digit))
            })
    })
}

/// One interface of `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    /// The interface name.
    pub interface: String,
    /// Receive: bytes, packets, errors, drops.
    pub rx: [u64; 4],
    /// Transmit: bytes, packets, errors, drops.
    pub tx: [u64; 4],
}

/// Parses `/proc/net/dev` (two header lines, then `NAME: 8 receive fields 8 transmit fields`).
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if f.len() < 16 {
                return None;
            }
            Some(NetDev {
                interface: name.trim().to_string(),
                rx: [f[0], f[1], f[2], f[3]],
                tx: [f[8], f[9], f[10], f[11]],
            })
        })
        .collect()
}

/// One line of a `/proc/pressure/*` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Pressure {
    /// `some` (at least one task stalled) or `full` (all non-idle tasks stalled).
    pub kind: String,
    /// The kernel's running averages over 10, 60 and 300 seconds, in percent.
    pub averages: [f64; 3],
    /// Total stall time since boot, in microseconds.
    pub total_us: u64,
}

/// Parses a `/proc/pressure/{cpu,memory,io}` file:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`.
pub fn parse_pressure(text: &str) -> Vec<Pressure> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_ascii_whitespace();
            let kind = parts.next()?.to_string();
            let mut averages = [None; 3];
            let mut total = None;
            for part in parts {
                let (k, v) = part.split_once('=')?;
                match k {
                    "avg10" => averages[0] = v.parse().ok(),
                    "avg60" => averages[1] = v.parse().ok(),
                    "avg300" => averages[2] = v.parse().ok(),
                    "total" => total = v.parse().ok(),
                    _ => {}
                }
            }
            Some(Pressure {
                kind,
                averages: [averages[0]?, averages[1]?, averages[2]?],
                total_us: total?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "\
cpu  249916 8293 30681 200154 1017 0 176 207 0 0
cpu0 120280 4696 15053 104731 308 0 47 102 0 0
cpu1 129636 3596 15627 95423 709 0 129 105 0 0
intr 11419836 0 9 0 0 0 0 0 0 0
ctxt 21947394
btime 1767000000
processes 65383
procs_running 3
procs_blocked 1
softirq 3392207 0 1039542 13 59568 0 0 39 1227019 0 1066026
";

    #[test]
    fn stat_cpus_and_counters() {
        let s = parse_stat(STAT);
        assert_eq!(s.cpus.len(), 3);
        assert_eq!(s.cpus[0].0, "total");
        assert_eq!(s.cpus[2].0, "1");
        assert_eq!(
            s.cpus[1].1,
            CpuTimes {
                user: 120280,
                nice: 4696,
                system: 15053,
                idle: 104731,
                iowait: 308,
                irq: 0,
                softirq: 47,
                steal: 102,
            }
        );
        assert_eq!(s.context_switches, Some(21947394));
        assert_eq!(s.processes_forked, Some(65383));
        assert_eq!(s.procs_running, Some(3));
        assert_eq!(s.procs_blocked, Some(1));
        assert_eq!(s.boot_time, Some(1767000000));
    }

    #[test]
    fn stat_with_short_cpu_lines_pads_with_zero() {
        let s = parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\n");
        assert_eq!(s.cpus[0].1.idle, 4);
        assert_eq!(s.cpus[0].1.steal, 0);
        assert_eq!(s.context_switches, None);
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       24669048 kB\nMemFree:         1000 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(m["MemTotal"], 24669048 * 1024);
        assert_eq!(m["MemFree"], 1024000);
        assert_eq!(m["HugePages_Total"], 0);
    }

    #[test]
    fn vmstat_loadavg_uptime() {
        let v = parse_key_values("pswpin 12\npswpout 34\nbroken\n");
        assert_eq!((v["pswpin"], v["pswpout"]), (12, 34));
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 2/345 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("0.5"), None);
        assert_eq!(parse_uptime("2460.74 2001.54\n"), Some(2460.74));
        assert_eq!(parse_uptime("x"), None);
    }

    #[test]
    fn page_size_from_rss_ratio() {
        let status = "Name:\ttelltale\nVmRSS:\t   40960 kB\n";
        assert_eq!(page_size(status, "100 10240 20 1 0 50 0"), Some(4096));
        // RSS moved a little between the two reads: still 4 KiB.
        assert_eq!(page_size(status, "100 10200 20 1 0 50 0"), Some(4096));
        assert_eq!(page_size(status, "100 640 20 1 0 50 0"), Some(65536));
        assert_eq!(page_size(status, "100 0 0"), None);
        assert_eq!(page_size("Name: x\n", "100 640"), None);
    }

    #[test]
    fn mountinfo_with_optional_fields_and_escapes() {
        let text = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
22 27 0:21 / /proc rw,relatime - proc proc rw
90 27 8:1 /data /mnt/my\\040disk rw shared:5 master:1 - xfs /dev/sdb1 rw
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].device_id, "254:0");
        assert_eq!(m[0].mount_point, "/");
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(m[0].source, "/dev/vda");
        assert_eq!(m[2].mount_point, "/mnt/my disk");
        assert_eq!(m[2].root, "/data");
        assert_eq!(m[2].fs_type, "xfs");
    }

    #[test]
    fn octal_unescape_edge_cases() {
        assert_eq!(unescape_octal("a\\040b"), "a b");
        assert_eq!(unescape_octal("a\\134b"), "a\\b");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
        assert_eq!(unescape_octal("\\999"), "\\999");
    }

    #[test]
    fn diskstats_fields() {
        let d = parse_diskstats(
            "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n \
             254       0 vda 315793 10874 11556546 526936 20918 61212 20009160 69008 2 22768 598385 14683 67 5980096 2423 397 16\n\
             bad line\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[1],
            DiskStat {
                name: "vda".into(),
                reads: 315793,
                sectors_read: 11556546,
                writes: 20918,
                sectors_written: 20009160,
                in_progress: 2,
                io_ticks_ms: 22768,
            }
        );
    }

    #[test]
    fn partitions_are_recognised() {
        let names = [
            "sda",
            "sda1",
            "sda10",
            "nvme0n1",
            "nvme0n1p1",
            "mmcblk0",
            "mmcblk0p2",
            "vda",
            "md0",
            "dm-0",
            "loop1",
        ];
        let parts: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| is_partition(n, &names))
            .collect();
        assert_eq!(parts, ["sda1", "sda10", "nvme0n1p1", "mmcblk0p2"]);
        // Without its disk in the list a partition is reported on its own.
        assert!(!is_partition("sdb1", &["sdb1"]));
    }

    #[test]
    fn net_dev_lines() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1574272   12539    0    0    0     0          0         0  1574272   12539    0    0    0     0       0          0
  eth0:164628699    8286    3    4    0     0          0         0   564014    5152    5    6    0     0       0          0
";
        let n = parse_net_dev(text);
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].interface, "eth0");
        assert_eq!(n[1].rx, [164628699, 8286, 3, 4]);
        assert_eq!(n[1].tx, [564014, 5152, 5, 6]);
    }

    #[test]
    fn pressure_lines() {
        let p = parse_pressure(
            "some avg10=90.03 avg60=70.77 avg300=30.90 total=276888015\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].kind, "some");
        assert_eq!(p[0].averages, [90.03, 70.77, 30.90]);
        assert_eq!(p[0].total_us, 276888015);
        assert_eq!(p[1].kind, "full");
        assert!(parse_pressure("some avg10=1\n").is_empty());
    }
}
