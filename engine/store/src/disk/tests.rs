use super::*;

#[test]
fn a_new_database_gets_the_schema_and_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/telltale.db");
    drop(Database::open(&path).unwrap());
    let db = Database::open(&path).unwrap();
    let version: u32 = db
        .with_state(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.db");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no -wal or -shm file is made beside it");
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { found: 0, .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_database_from_a_newer_telltale_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.db");
    drop(Database::open(&path).unwrap());
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
            .unwrap();
    }
    let e = Database::open(&path).unwrap_err().to_string();
    assert!(
        e.contains(&format!("schema version {}", SCHEMA_VERSION + 3))
            && e.contains(&format!("knows up to {SCHEMA_VERSION}")),
        "{e}"
    );
}

#[test]
fn a_corrupt_database_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.db");
    {
        let db = Database::open(&path).unwrap();
        db.with_state(|c| {
            c.execute_batch(
                "PRAGMA wal_checkpoint(TRUNCATE);
                 INSERT INTO series (name, labels) VALUES ('x', '{}');",
            )
        })
        .unwrap();
        db.with_state(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
            .unwrap();
    }
    // Scribble over everything after the first page (the schema's b-tree pages).
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Corrupt { .. } | StoreError::NotADatabase { .. }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("left untouched"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

mod persistence {
    use std::sync::Arc;
    use std::time::Duration;

    use telltale_model::{Labels, Sample, now_ms};

    use crate::disk::{
        Database, Disk, DiskConfig, PersisterHandle, RangeData, RangeSeries, Resolution, Tier,
    };
    use crate::{SeriesStore, StoreLimits};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn config() -> DiskConfig {
        DiskConfig {
            flush_interval: Duration::from_millis(20),
            checkpoint_interval: Duration::from_secs(3600),
            ..DiskConfig::default()
        }
    }

    fn start(path: &std::path::Path, cfg: DiskConfig) -> (Arc<SeriesStore>, PersisterHandle) {
        let db = Arc::new(Database::open(path).unwrap());
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let handle = Disk::start(db, cfg, &store).unwrap();
        (store, handle)
    }

    /// `n` samples of `name{i=..}` 1 s apart ending a minute ago, valued by `value(k)`.
    fn write(
        store: &SeriesStore,
        name: &str,
        series: usize,
        n: i64,
        value: impl Fn(i64) -> f64,
    ) -> i64 {
        let t0 = (now_ms() - n * 1000 - MIN) / HOUR * HOUR;
        for k in 0..n {
            let batch: Vec<Sample> = (0..series)
                .map(|i| Sample::new(name, &[("i", &i.to_string())], value(k), t0 + k * 1000))
                .collect();
            store.ingest(batch);
        }
        t0
    }

    fn read(store: &SeriesStore, name: &str, from: i64, to: i64, tier: Tier) -> Vec<RangeSeries> {
        store
            .range(name, &Labels::new(), from, to, Resolution::Tier(tier))
            .unwrap()
    }

    fn points(r: &RangeSeries) -> Vec<(i64, f64)> {
        match &r.data {
            RangeData::Points(p) => p.iter().map(|p| (p.timestamp_ms, p.value)).collect(),
            other => panic!("expected points, got {other:?}"),
        }
    }

    fn buckets(r: &RangeSeries) -> Vec<crate::disk::Bucket> {
        match &r.data {
            RangeData::Buckets { buckets, .. } => buckets.clone(),
            other => panic!("expected buckets, got {other:?}"),
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn history_survives_a_clean_restart_in_every_tier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, handle) = start(&path, config());
        let n = 3 * 3600;
        let t0 = write(&store, "cpu", 2, n, |k| (k % 100) as f64 + 0.5);
        handle.stop();
        drop(store);

        let (store, handle) = start(&path, config());
        let raw = read(&store, "cpu", t0, t0 + n * 1000, Tier::Raw);
        assert_eq!(raw.len(), 2);
        let p = points(&raw[0]);
        assert_eq!(p.len(), n as usize);
        assert!(
            p.iter()
                .enumerate()
                .all(|(k, &(t, v))| t == t0 + k as i64 * 1000 && v == (k % 100) as f64 + 0.5)
        );

        let minutes = buckets(&read(&store, "cpu", t0, t0 + n * 1000, Tier::Minute)[0]);
        assert_eq!(
            minutes.len(),
            180,
            "three hours of minutes, the last still open"
        );
        assert!(minutes.iter().all(|b| b.count == 60.0));
        let sum: f64 = (0..60).map(|k| (k % 100) as f64 + 0.5).sum();
        assert_eq!(minutes[0].sum, sum);
        let hours = buckets(&read(&store, "cpu", t0, t0 + n * 1000, Tier::Hour)[0]);
        let counts: Vec<f64> = hours.iter().map(|b| b.count).collect();
        // The hour tier takes minutes as they close: the last minute is still open.
        assert_eq!(counts, [3600.0, 3600.0, 3540.0]);
        assert_eq!(hours[0].min, 0.5);
        assert_eq!(hours[0].max, 99.5);
        handle.stop();
    }

    #[test]
    fn a_restart_replays_what_was_flushed_after_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, handle) = start(&path, config());
        let n = 600;
        let t0 = write(&store, "req_total", 1, n, |k| (k * 3) as f64);
        let disk = store.disk().unwrap().clone();
        wait_until("the flush", || {
            disk.stats
                .samples_written
                .load(std::sync::atomic::Ordering::Relaxed)
                == n as u64
        });
        // `store info` sees the flushed samples before any checkpoint (in `wal` rows).
        let info = disk.database().info().unwrap();
        assert_eq!(info.oldest_sample_ms, Some(t0));
        assert_eq!(info.newest_sample_ms, Some(t0 + (n - 1) * 1000));
        // A crash: the first persister never checkpoints (its interval is an hour) and
        // never stops; a second one opens the same file.
        std::mem::forget(handle);
        let (store2, handle2) = start(&path, config());
        let disk2 = store2.disk().unwrap().clone();
        wait_until("the replay", || !disk2.heads.lock().map.is_empty());
        let raw = read(&store2, "req_total", t0, t0 + n * 1000, Tier::Raw);
        assert_eq!(points(&raw[0]).len(), n as usize);
        let minutes = buckets(&read(&store2, "req_total", t0, t0 + n * 1000, Tier::Minute)[0]);
        // Increase per minute: 60 steps of 3 (the first minute has 59: no step before it).
        assert_eq!(minutes[0].increase, 177.0);
        assert!(minutes[1..].iter().all(|b| b.increase == 180.0));
        handle2.stop();
    }

    #[test]
    fn counter_resets_count_as_restarts_in_the_rollups() {
        let dir = tempfile::tempdir().unwrap();
        let (store, handle) = start(&dir.path().join("t.db"), config());
        // Rises by 1 a second, restarting from 0 every 100 s.
        let t0 = write(&store, "c_total", 1, 1200, |k| (k % 100) as f64);
        let disk = store.disk().unwrap().clone();
        wait_until("the flush", || {
            disk.stats
                .samples_written
                .load(std::sync::atomic::Ordering::Relaxed)
                == 1200
        });
        let minutes = buckets(&read(&store, "c_total", t0, t0 + 1200 * 1000, Tier::Minute)[0]);
        let total: f64 = minutes.iter().map(|b| b.increase).sum();
        // 1199 steps: 1188 rises of 1 and 11 restarts to 0 (each counted as +0).
        assert_eq!(total, 1188.0);
        handle.stop();
    }

    #[test]
    fn auto_resolution_reads_the_tier_of_the_window() {
        let cfg = DiskConfig::default();
        let now = 1_000 * 86_400_000;
        let pick = |window: i64| cfg.pick(now - window, now, now);
        assert_eq!(pick(HOUR), Tier::Raw);
        assert_eq!(pick(24 * HOUR), Tier::Minute);
        assert_eq!(pick(7 * 24 * HOUR), Tier::Hour);
        assert_eq!(pick(400 * 24 * HOUR), Tier::Day);
        // A 6 h window reaching past the raw tier's retention gives way to minutes.
        let short = DiskConfig {
            retention: [
                Duration::from_secs(3600),
                Duration::from_secs(86400 * 30),
                Duration::from_secs(86400 * 365),
                Duration::from_secs(86400 * 3650),
            ],
            ..DiskConfig::default()
        };
        assert_eq!(short.pick(now - 2 * HOUR, now, now), Tier::Minute);
    }

    #[test]
    fn over_max_disk_the_oldest_raw_chunks_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let cfg = DiskConfig {
            max_disk: 1 << 20,
            checkpoint_interval: Duration::from_millis(100),
            ..config()
        };
        let (store, handle) = start(&path, cfg);
        // Noisy values (about 8 bytes a sample): 40 series × 2 h is several MiB.
        let t0 = write(&store, "noise", 40, 2 * 3600, |k| {
            ((k as f64) * 1.618_033_988_7).sin()
        });
        let disk = store.disk().unwrap().clone();
        wait_until("eviction", || {
            disk.stats.evicted[Tier::Raw as usize].load(std::sync::atomic::Ordering::Relaxed) > 0
        });
        handle.stop();
        let db = Database::open(&path).unwrap();
        let (oldest_raw, minute_rows): (i64, i64) = db
            .with_state(|c| {
                c.query_row(
                    "SELECT (SELECT min(start_ms) FROM chunks WHERE tier = 0), (SELECT count(*) FROM chunks WHERE tier = 1)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert!(oldest_raw > t0, "the oldest raw chunks were deleted");
        assert!(minute_rows > 0, "the roll-ups stay while raw data can go");
        let used: i64 = db
            .with_state(|c| {
                c.query_row(
                    "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert!(used <= 1 << 20, "{used} bytes in use");
    }

    #[test]
    fn a_full_disk_stops_writing_without_losing_what_memory_holds_and_writing_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, handle) = start(&path, config());
        let disk = store.disk().unwrap().clone();
        let pages: i64 = disk
            .database()
            .with_state(|c| c.pragma_query_value(None, "page_count", |r| r.get(0)))
            .unwrap();
        disk.limit_pages(Some(pages as u64 + 2));
        let t0 = write(&store, "noise", 50, 600, |k| ((k as f64) * 0.731).cos());
        wait_until("the disk to fill", || disk.is_full());
        let metric = |name: &str| {
            store
                .own_metrics(now_ms())
                .into_iter()
                .find(|s| &*s.name == name)
                .map(|s| s.value)
        };
        assert_eq!(
            metric(telltale_model::self_metrics::STORE_DISK_FULL.name),
            Some(1.0)
        );
        // Reads still have everything (memory, and the heads the persister holds).
        assert_eq!(
            points(&read(&store, "noise", t0, t0 + 600_000, Tier::Raw)[0]).len(),
            600
        );
        disk.limit_pages(None);
        wait_until("writing to resume", || !disk.is_full());
        handle.stop();
        drop(store);
        let (store, handle) = start(&path, config());
        let raw = read(&store, "noise", t0, t0 + 600_000, Tier::Raw);
        assert_eq!(raw.len(), 50);
        assert!(raw.iter().all(|r| points(r).len() == 600));
        handle.stop();
    }

    #[test]
    fn usage_counts_every_sample_of_each_family_once_sealed_or_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, handle) = start(&path, config());
        // 1,500 samples: one sealed raw chunk of 1,024 and an open one of 476.
        write(&store, "a", 2, 1500, |k| k as f64);
        write(&store, "b", 1, 10, |k| k as f64 * 0.5);
        handle.stop();
        let db = Database::open(&path).unwrap();
        let usage = db.usage().unwrap();
        let fam: Vec<(&str, u64, u64)> = usage
            .families
            .iter()
            .map(|f| (f.name.as_str(), f.series, f.samples))
            .collect();
        assert_eq!(fam, [("a", 2, 3000), ("b", 1, 10)]);
        assert!(
            usage
                .families
                .iter()
                .all(|f| f.raw_bytes > 0 && f.rollup_bytes > 0)
        );
        assert!(
            usage
                .objects
                .iter()
                .any(|(name, bytes)| name == "chunks" && *bytes > 0)
        );
    }

    #[test]
    fn a_family_read_again_finds_the_series_written_since() {
        let dir = tempfile::tempdir().unwrap();
        let (store, handle) = start(&dir.path().join("t.db"), config());
        let t0 = write(&store, "grow", 1, 10, |k| k as f64);
        let disk = store.disk().unwrap().clone();
        let written = |n: u64| {
            wait_until("the flush", || {
                disk.stats
                    .samples_written
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == n
            })
        };
        written(10);
        let count = || {
            disk.with_reader(|c| disk.select(c, "grow", &Labels::new()))
                .unwrap()
                .len()
        };
        assert_eq!(count(), 1);
        assert_eq!(count(), 1, "read again from the cache");
        // A second series of the family: the cached list must not hide it.
        store.ingest([Sample::new("grow", &[("i", "9")], 1.0, t0)]);
        written(11);
        assert_eq!(count(), 2);
        handle.stop();
    }
}
