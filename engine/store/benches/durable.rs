//! The durable store's read, memory and start figures (issue #11), each beside a baseline
//! measured in the same run:
//!
//! * **reads**: 24 h of one series at 1 s (86,400 points) from the raw tier, and 30 days
//!   of one series from the per-minute tier (43,200 buckets), through
//!   `SeriesStore::range` on a store that has just started (so everything comes from
//!   disk), beside the same 86,400 points read from memory. Goals: ≤ 10 ms and ≤ 5 ms.
//! * **memory**: 100,000 series written every 10 s for two hours of sample time, with
//!   the persister on (48 h raw retention: nothing is deleted), beside the same load with
//!   the in-memory store alone; peak RSS of each (each in a child process of its own, so
//!   one's peak does not hide the other's).
//! * **start**: the real `telltale` binary (`target/release/telltale`; build it with
//!   `cargo build --release -p telltale`) on a database of about 1 GiB, from exec to the
//!   log line of its first collection, beside the same on an empty database. Goal: ≤ 500 ms.
//!
//! * **disk**: bytes per sample of the raw tier and of the whole database file (indexes,
//!   roll-ups, free pages included), overall and per metric family, beside Prometheus'
//!   published 1.3 bytes per sample. Of the committed capture of the `system` collector at
//!   1 s (an hour, `benches/data/system-1s.jsonl.gz`) written through the real persister,
//!   or of the database `DISK_DB` names (e.g. one a `telltale run` wrote);
//!   `DISK_TOLERANCE_MS=2` also writes the same samples again through a store with
//!   `store.timestamp_tolerance: 2ms` and prints its figures.
//!
//! Run: `cargo bench -p telltale-store --bench durable` (a few minutes: it writes the
//! databases first). `DURABLE_PARTS=reads,memory,start,disk` picks parts; `START_DB_MIB`
//! changes the large database's size (default 1024).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telltale_model::{Labels, Sample, now_ms};
use telltale_store::disk::{Database, Disk, DiskConfig, RangeData, Resolution, Tier};
use telltale_store::{SeriesStore, StoreLimits};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A value like a collector's: a gauge with one decimal that wanders.
fn gauge(k: i64) -> f64 {
    let x = (k as f64 / 300.0).sin() * 40.0 + ((k * 7919) % 13) as f64;
    (x * 10.0).round() / 10.0 + 50.0
}

fn open(path: &Path) -> (Arc<SeriesStore>, telltale_store::disk::PersisterHandle) {
    let db = Arc::new(Database::open(path).expect("open the database"));
    let store = Arc::new(SeriesStore::new(StoreLimits {
        max_series: 300_000,
        ..StoreLimits::default()
    }));
    let handle = Disk::start(db, DiskConfig::default(), &store).expect("start the persister");
    (store, handle)
}

/// Median and fastest of `runs` calls of `f`, in milliseconds.
fn time_ms(runs: usize, mut f: impl FnMut() -> usize) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    (times[runs / 2], times[0], n)
}

fn reads() {
    println!("== reads ==");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reads.db");
    let end = now_ms() / 1000 * 1000 - HOUR;
    {
        let (store, handle) = open(&path);
        // 24 h at 1 s of one series, 30 days at 10 s of another.
        let day0 = end - DAY;
        for chunk in 0..24 {
            let batch: Vec<Sample> = (chunk * 3600..(chunk + 1) * 3600)
                .map(|k| Sample::new("read_1s", &[("host", "a")], gauge(k), day0 + k * 1000))
                .collect();
            store.ingest(batch);
        }
        let month0 = end - 30 * DAY;
        let per = 30 * DAY / 10_000;
        for chunk in 0..30 {
            let batch: Vec<Sample> = (chunk * per / 30..(chunk + 1) * per / 30)
                .map(|k| Sample::new("read_10s", &[("host", "a")], gauge(k), month0 + k * 10_000))
                .collect();
            store.ingest(batch);
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.stop();
    }
    // A store that starts now: its memory holds nothing of this, every read is the disk's.
    let (store, handle) = open(&path);
    let all = Labels::new();
    let (raw_med, raw_min, raw_n) = time_ms(50, || {
        let r = store
            .range("read_1s", &all, end - DAY, end, Resolution::Tier(Tier::Raw))
            .expect("read");
        match &r[0].data {
            RangeData::Points(p) => p.len(),
            _ => 0,
        }
    });
    let (min_med, min_min, min_n) = time_ms(50, || {
        let r = store
            .range(
                "read_10s",
                &all,
                end - 30 * DAY,
                end,
                Resolution::Tier(Tier::Minute),
            )
            .expect("read");
        match &r[0].data {
            RangeData::Buckets { buckets, .. } => buckets.len(),
            _ => 0,
        }
    });
    handle.stop();
    // Baseline: the same 86,400 points from memory.
    let mem = SeriesStore::new(StoreLimits {
        max_points_per_series: 100_000,
        retention: Duration::from_secs(3 * 86_400),
        ..StoreLimits::default()
    });
    let day0 = end - DAY;
    mem.ingest(
        (0..86_400).map(|k| Sample::new("read_1s", &[("host", "a")], gauge(k), day0 + k * 1000)),
    );
    let (mem_med, mem_min, mem_n) = time_ms(50, || {
        let r = mem
            .range("read_1s", &all, end - DAY, end, Resolution::Auto)
            .expect("read");
        match &r[0].data {
            RangeData::Points(p) => p.len(),
            _ => 0,
        }
    });
    println!(
        "{:<52}{:>10}{:>10}{:>10}",
        "read (50 runs)", "points", "median ms", "best ms"
    );
    println!(
        "{:<52}{:>10}{:>10.2}{:>10.2}",
        "24 h at 1 s, raw tier, from disk", raw_n, raw_med, raw_min
    );
    println!(
        "{:<52}{:>10}{:>10.2}{:>10.2}",
        "30 days, 1m tier, from disk", min_n, min_med, min_min
    );
    println!(
        "{:<52}{:>10}{:>10.2}{:>10.2}",
        "baseline: 24 h at 1 s from memory", mem_n, mem_med, mem_min
    );
    println!(
        "ratio disk / memory (24 h raw): {:.1}; goals: 24 h raw ≤ 10 ms, 30 d of 1m ≤ 5 ms",
        raw_med / mem_med
    );
}

/// One child of the memory part: `disk` says whether the persister is on.
fn memory_child(disk: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let series = 100_000;
    let steps = 720; // two hours at 10 s
    let t0 = now_ms() / 1000 * 1000 - 3 * HOUR;
    let store = Arc::new(SeriesStore::new(StoreLimits {
        max_series: 300_000,
        ..StoreLimits::default()
    }));
    let handle = disk.then(|| {
        let db = Arc::new(Database::open(&dir.path().join("memory.db")).expect("open"));
        Disk::start(db, DiskConfig::default(), &store).expect("start")
    });
    let names: Vec<String> = (0..series).map(|i| format!("{i}")).collect();
    let started = Instant::now();
    for step in 0..steps {
        let t = t0 + step * 10_000;
        let batch: Vec<Sample> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Sample::new(
                    "mem_bench",
                    &[("host", &n[..n.len().min(3)]), ("id", n)],
                    gauge(step + i as i64),
                    t,
                )
            })
            .collect();
        store.ingest(batch);
    }
    let fed = started.elapsed();
    let heads = store.disk().map_or(0, |d| d.memory_bytes());
    let db_bytes = store.disk().map_or(0, |d| d.database().file_bytes());
    if let Some(h) = handle {
        h.stop();
    }
    println!(
        "{:<30}{:>12.0}{:>12.0}{:>14.1}{:>12.1}{:>10.1}",
        if disk {
            "with the durable store"
        } else {
            "memory only (baseline)"
        },
        status_mib("VmHWM:"),
        status_mib("VmRSS:"),
        heads as f64 / (1 << 20) as f64,
        db_bytes as f64 / (1 << 20) as f64,
        fed.as_secs_f64()
    );
}

fn memory() {
    println!("== memory: 100,000 series, a sample each every 10 s for 2 h of sample time ==");
    println!(
        "{:<30}{:>12}{:>12}{:>14}{:>12}{:>10}",
        "", "peak MiB", "RSS MiB", "heads MiB", "disk MiB", "feed s"
    );
    let exe = std::env::current_exe().expect("own path");
    for disk in [false, true] {
        let status = std::process::Command::new(&exe)
            .env("DURABLE_CHILD", if disk { "memory-disk" } else { "memory" })
            .status()
            .expect("child");
        assert!(status.success(), "memory child failed");
    }
}

/// Writes a Telltale database of about `mib` MiB: series with a day of chunks each, the
/// chunks' bytes taken from a real encoding of a gauge (repeated), so the file's layout
/// (rows, indexes, pages) is a real store's.
fn large_database(path: &Path, mib: u64) {
    let db = Database::open(path).expect("open");
    let mut enc = telltale_store::disk::codec::ChunkEncoder::new(1);
    let t0 = now_ms() - 2 * DAY;
    for k in 0..1024 {
        enc.push(t0 + k * 1000, &[gauge(k) * 1.000_1]);
    }
    let data = enc.to_bytes();
    let per_series = 84; // a day of 1,024-sample chunks at 1 s
    let chunk_span = 1024 * 1000;
    let target = mib << 20;
    let mut series = 0i64;
    while db.file_bytes() < target {
        db.with_state(|c| {
            let tx = c.transaction()?;
            for _ in 0..200 {
                series += 1;
                tx.execute(
                    "INSERT INTO series (id, name, labels) VALUES (?1, 'big', ?2)",
                    rusqlite::params![series, format!("{{\"id\":\"{series}\"}}")],
                )?;
                for j in 0..per_series {
                    let start = t0 + j * chunk_span;
                    tx.execute(
                        "INSERT INTO chunks (tier, series, start_ms, end_ms, count, data) VALUES (0, ?1, ?2, ?3, 1024, ?4)",
                        rusqlite::params![series, start, start + chunk_span - 1000, data],
                    )?;
                }
            }
            tx.commit()
        })
        .expect("fill");
    }
    db.with_state(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
        .expect("checkpoint");
}

/// Starts the binary on `data_dir` and returns the time from exec to its first
/// collection's log line.
fn time_to_first_collection(bin: &Path, data_dir: &Path) -> Duration {
    use std::io::BufRead;
    let config = data_dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "engine:\n  data_dir: {}\ncollectors:\n  - name: system\n    plugin: system\n    interval: 5s\n    grants:\n      system: true\n      files: [/proc, /sys]\n",
            data_dir.display()
        ),
    )
    .expect("config");
    let started = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args(["run", "-c"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn telltale");
    let out = child.stderr.take().expect("stderr");
    let mut took = None;
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if line.contains("first collection") {
            took = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    took.expect("the binary logged its first collection within 60 s")
}

fn start() {
    let mib: u64 = std::env::var("START_DB_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/telltale");
    if !bin.exists() {
        println!("== start: skipped: build the binary first: cargo build --release -p telltale ==");
        return;
    }
    println!("== start: exec to first collection, telltale run, real system collector ==");
    let big = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    large_database(&big.path().join("telltale.db"), mib);
    let size = std::fs::metadata(big.path().join("telltale.db")).map_or(0, |m| m.len());
    println!(
        "large database: {:.0} MiB written in {:.0} s",
        size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let empty = tempfile::tempdir().expect("tempdir");
    // The first start on each compiles nothing (the plugin cache is per data dir): warm
    // both once, then measure.
    let _ = time_to_first_collection(&bin, empty.path());
    let _ = time_to_first_collection(&bin, big.path());
    let mut small = Vec::new();
    let mut large = Vec::new();
    for _ in 0..5 {
        small.push(time_to_first_collection(&bin, empty.path()).as_secs_f64() * 1e3);
        large.push(time_to_first_collection(&bin, big.path()).as_secs_f64() * 1e3);
    }
    small.sort_by(f64::total_cmp);
    large.sort_by(f64::total_cmp);
    println!(
        "{:<44}{:>12}{:>12}",
        "exec → first collection (5 runs)", "median ms", "best ms"
    );
    println!(
        "{:<44}{:>12.0}{:>12.0}",
        "empty database (baseline)", small[2], small[0]
    );
    println!(
        "{:<44}{:>12.0}{:>12.0}",
        format!("{:.0} MiB database", size as f64 / (1 << 20) as f64),
        large[2],
        large[0]
    );
    println!(
        "ratio large / empty: {:.2}; goal ≤ 500 ms",
        large[2] / small[2]
    );
}

/// Writes the committed capture (JSON lines: name, labels, first timestamp then deltas,
/// values as written) through a store with the persister on, in call order.
fn database_from_capture(path: &Path) {
    use std::io::Read;
    #[derive(serde::Deserialize)]
    struct Line {
        name: String,
        labels: std::collections::BTreeMap<String, String>,
        t: Vec<i64>,
        v: Vec<String>,
    }
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/data/system-1s.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&file).expect("the committed capture"))
        .read_to_string(&mut text)
        .expect("gzip");
    let mut series: Vec<(Line, Vec<i64>)> = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line).expect("a capture line");
        let mut t = Vec::with_capacity(l.t.len());
        let mut at = 0i64;
        for (i, d) in l.t.iter().enumerate() {
            at = if i == 0 { *d } else { at + d };
            t.push(at);
        }
        series.push((l, t));
    }
    let (store, handle) = open(path);
    let calls = series.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    for k in 0..calls {
        let batch: Vec<Sample> = series
            .iter()
            .filter_map(|(l, t)| {
                let v: f64 = l.v.get(k)?.parse().ok()?;
                let labels: Vec<(&str, &str)> = l
                    .labels
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                Some(Sample::new(&l.name, &labels, v, *t.get(k)?))
            })
            .collect();
        store.ingest(batch);
    }
    handle.stop();
}

fn disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = match std::env::var_os("DISK_DB") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.path().join("capture.db");
            database_from_capture(&p);
            p
        }
    };
    println!("== disk: {} ==", path.display());
    analyze(&path);
    // The same samples written again through a store whose `timestamp_tolerance` is N ms.
    if let Some(ms) = std::env::var("DISK_TOLERANCE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let again = dir.path().join("tolerance.db");
        rewrite(&path, &again, Duration::from_millis(ms));
        println!();
        println!("== disk: the same samples with store.timestamp_tolerance = {ms}ms ==");
        analyze(&again);
    }
}

/// Reads every raw sample of `from` and writes it through a new store on `to` whose
/// persister aligns times within `tolerance`.
fn rewrite(from: &Path, to: &Path, tolerance: Duration) {
    let db = Database::open(from).expect("open");
    let families: Vec<String> = db
        .usage()
        .expect("usage")
        .families
        .into_iter()
        .map(|f| f.name)
        .collect();
    drop(db);
    let (src, src_handle) = open(from);
    let dst = Arc::new(SeriesStore::new(StoreLimits {
        max_series: 300_000,
        max_points_per_series: 1 << 20,
        ..StoreLimits::default()
    }));
    let cfg = DiskConfig {
        timestamp_tolerance: tolerance,
        ..DiskConfig::default()
    };
    let handle = Disk::start(Arc::new(Database::open(to).expect("open")), cfg, &dst)
        .expect("start the persister");
    for name in families {
        let series = src
            .range(
                &name,
                &Labels::new(),
                i64::MIN / 2,
                i64::MAX / 2,
                Resolution::Tier(Tier::Raw),
            )
            .expect("read");
        for s in series {
            let RangeData::Points(points) = s.data else {
                continue;
            };
            let labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            dst.ingest(
                points
                    .iter()
                    .map(|p| Sample::new(&name, &pairs, p.value, p.timestamp_ms)),
            );
        }
    }
    handle.stop();
    src_handle.stop();
}

/// Prints where the bytes of the database at `path` go.
fn analyze(path: &Path) {
    // The file as the engine leaves it at a stop (its write-ahead log folded in), before
    // this process opens it.
    let file = std::fs::metadata(path).map_or(0, |m| m.len());
    let db = Database::open(path).expect("open");
    let usage = db.usage().expect("usage");
    let samples: u64 = usage.families.iter().map(|f| f.samples).sum();
    let raw: u64 = usage.families.iter().map(|f| f.raw_bytes).sum();
    let rollup: u64 = usage.families.iter().map(|f| f.rollup_bytes).sum();
    let ours = |f: &telltale_store::disk::admin::FamilyUsage| !f.name.starts_with("telltale_");
    let (c_samples, c_raw): (u64, u64) = usage
        .families
        .iter()
        .filter(|f| ours(f))
        .fold((0, 0), |(s, b), f| (s + f.samples, b + f.raw_bytes));
    println!(
        "{:<52}{:>12}{:>14}{:>12}",
        "family", "samples", "raw bytes", "B/sample"
    );
    let mut fams = usage.families.clone();
    fams.sort_by(|a, b| {
        (b.raw_bytes as f64 / b.samples.max(1) as f64)
            .total_cmp(&(a.raw_bytes as f64 / a.samples.max(1) as f64))
    });
    for f in &fams {
        println!(
            "{:<52}{:>12}{:>14}{:>12.3}",
            f.name,
            f.samples,
            f.raw_bytes,
            f.raw_bytes as f64 / f.samples.max(1) as f64
        );
    }
    println!();
    println!("tables and indexes (pages):");
    for (name, bytes) in &usage.objects {
        println!("  {:<28}{:>12.1} KiB", name, *bytes as f64 / 1024.0);
    }
    let pages: u64 = usage.objects.iter().map(|(_, b)| b).sum();
    println!();
    println!("samples {samples} in {} families", usage.families.len());
    println!(
        "raw tier, chunk data only:            {:.3} B/sample ({} of them from the collector: {:.3})",
        raw as f64 / samples.max(1) as f64,
        c_samples,
        c_raw as f64 / c_samples.max(1) as f64
    );
    let chunk_pages: u64 = usage
        .objects
        .iter()
        .filter(|(n, _)| n.starts_with("chunks") || n == "heads")
        .map(|(_, b)| b)
        .sum();
    println!(
        "raw tier with its share of the chunk table, indexes and heads pages: {:.3} B/sample",
        chunk_pages as f64 * raw as f64 / (raw + rollup).max(1) as f64 / samples.max(1) as f64
    );
    println!(
        "roll-ups (minute, hour, day): {:.3} B/sample; all pages in use: {:.3} B/sample; the file: {:.3} B/sample",
        rollup as f64 / samples.max(1) as f64,
        pages as f64 / samples.max(1) as f64,
        file as f64 / samples.max(1) as f64
    );
    println!("baseline: Prometheus' published average, 1.3 B/sample (index included)");
}

fn main() {
    match std::env::var("DURABLE_CHILD").as_deref() {
        Ok("memory") => return memory_child(false),
        Ok("memory-disk") => return memory_child(true),
        _ => {}
    }
    let parts = std::env::var("DURABLE_PARTS").unwrap_or_else(|_| "reads,memory,start,disk".into());
    for part in parts.split(',') {
        match part.trim() {
            "reads" => reads(),
            "memory" => memory(),
            "start" => start(),
            "disk" => disk(),
            other => println!("unknown part {other:?} (reads, memory, start, disk)"),
        }
        println!();
    }
}
