//! The persister: the one thread that writes samples to disk, and the shared state
//! ([`Disk`]) that reads of history go through.
//!
//! ```text
//! SeriesStore (memory) ──take_pending every flush_interval──▶ persister thread
//!     │                                                          ├─▶ heads (memory): open chunks, roll-ups filling
//!     │                                                          └─▶ `wal` row (one per flush, one transaction)
//!     │                                      every checkpoint_interval (or 64 MiB of wal):
//!     │                                                          ├─▶ `chunks`: sealed chunks
//!     │                                                          ├─▶ `heads`: changed heads
//!     │                                                          ├─▶ delete the `wal` rows they cover
//!     │                                                          └─▶ retention, max_disk, incremental vacuum
//! reads ──▶ Disk::read: `chunks` + heads (memory, else the `heads` row)
//! ```
//!
//! A restart replays the `wal` rows onto the heads of the last checkpoint, on the
//! persister's thread, while collection already runs: nothing is loaded at start but the
//! database's identity, and a head is read from its row only when its series is touched.
//!
//! When a write fails (disk full), the flush's row is kept in memory and written with the
//! next flush (up to [`BACKLOG_BYTES`]; beyond, the oldest are dropped and counted); a
//! successful checkpoint makes the backlog moot, since the heads it writes hold the same
//! samples. One log line when writing stops and one when it resumes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use telltale_model::{Labels, MetricName, Point, TimestampMs, now_ms};

use super::head::{Head, Sealed};
use super::rollup::Tier;
use super::wal;
use super::{Database, StoreError};
use crate::SeriesStore;

/// Write-ahead data kept in memory while the disk refuses it, at most.
pub const BACKLOG_BYTES: usize = 256 << 20;

/// A checkpoint is due early once this much write-ahead data accumulated, so a restart
/// never replays more (about ten million samples, a second or two of work).
const WAL_CHECKPOINT_BYTES: usize = 128 << 20;

/// A head that took no sample for this long is sealed (its open chunks written as they
/// are) and, once empty, leaves memory.
const IDLE_SEAL_MS: i64 = 3_600_000;

/// How the durable store keeps samples.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// How often new samples are written.
    pub flush_interval: Duration,
    /// How often flushed samples are folded into chunks.
    pub checkpoint_interval: Duration,
    /// How long each tier ([`Tier::ALL`] order) is kept.
    pub retention: [Duration; 4],
    /// The most the database may take on disk, in bytes.
    pub max_disk: u64,
    /// How far a sample's time may be moved onto its series' regular step on disk
    /// (`store.timestamp_tolerance`; zero: never).
    pub timestamp_tolerance: Duration,
}

impl Default for DiskConfig {
    fn default() -> Self {
        let day = 86_400;
        DiskConfig {
            flush_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(300),
            retention: [
                Duration::from_secs(2 * day),
                Duration::from_secs(30 * day),
                Duration::from_secs(365 * day),
                Duration::from_secs(3650 * day),
            ],
            max_disk: 10 << 30,
            timestamp_tolerance: Duration::ZERO,
        }
    }
}

/// Counters of the persister, read by the store's metrics.
#[derive(Debug, Default)]
pub(crate) struct DiskStats {
    pub samples_written: AtomicU64,
    pub errors_full: AtomicU64,
    pub errors_other: AtomicU64,
    pub full: AtomicBool,
    pub evicted: [AtomicU64; 4],
    pub dropped_backlog: AtomicU64,
    pub dropped_stale: AtomicU64,
}

/// The heads of every series touched since the start, and the chunks sealed since the
/// last checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    pub map: HashMap<i64, Head>,
    pub sealed: SealedChunks,
}

/// Chunks sealed since the last checkpoint, by series, tier and start: a read looks up
/// its one series while this holds every series' (thousands under heavy ingest).
#[derive(Debug, Default)]
pub(crate) struct SealedChunks(BTreeMap<(i64, Tier, TimestampMs), Sealed>);

impl SealedChunks {
    /// Takes the chunks `sealed` holds.
    pub fn take_from(&mut self, sealed: &mut Vec<Sealed>) {
        for c in sealed.drain(..) {
            self.0.insert((c.series, c.tier, c.start_ms), c);
        }
    }

    /// Those of `series` and `tier`, oldest first.
    pub fn of(&self, series: i64, tier: Tier) -> impl Iterator<Item = &Sealed> {
        self.0
            .range((series, tier, TimestampMs::MIN)..=(series, tier, TimestampMs::MAX))
            .map(|(_, c)| c)
    }

    /// A copy of all, for a checkpoint (reads still find them here until it commits).
    pub fn snapshot(&self) -> Vec<Sealed> {
        self.0.values().cloned().collect()
    }

    /// Forgets `chunks`, now written (chunks sealed meanwhile stay).
    pub fn written(&mut self, chunks: &[Sealed]) {
        for c in chunks {
            self.0.remove(&(c.series, c.tier, c.start_ms));
        }
    }

    /// Bytes of chunk data held.
    pub fn bytes(&self) -> usize {
        self.0.values().map(|c| c.data.len()).sum()
    }
}

/// The durable part of the store: shared by the persister thread and the reads.
#[derive(Debug)]
pub struct Disk {
    pub(crate) db: Arc<Database>,
    pub(crate) cfg: DiskConfig,
    pub(crate) heads: Mutex<Heads>,
    /// Idle read connections (a read takes one, or opens one).
    pub(crate) readers: Mutex<Vec<Connection>>,
    pub(crate) stats: DiskStats,
    /// Each family's series as the `series` table lists them, for reads.
    pub(crate) families: Mutex<FamilyCache>,
    /// The most pages the persister may write (0: SQLite's own bound): makes a full disk
    /// in tests where no small file system can be mounted ([`Disk::limit_pages`]).
    page_limit: AtomicU64,
}

/// The series of each family read so far, by name. `generation` changes whenever entries
/// are dropped, so a read that began before a new series was written does not put back a
/// list without it.
#[derive(Debug, Default)]
pub(crate) struct FamilyCache {
    pub generation: u64,
    pub by_name: HashMap<String, Arc<Vec<(i64, Labels)>>>,
}

/// Samples the in-memory store took since the last flush: the series it created (with
/// their in-memory ids) and every point it accepted.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub new: Vec<(u64, MetricName, Labels)>,
    pub points: Vec<(u64, Point)>,
    /// Series the in-memory store removed (after their points above): the persister
    /// forgets their in-memory ids. Their history stays.
    pub removed: Vec<u64>,
}

impl Pending {
    /// Points held at most ([`BACKLOG_BYTES`] worth); beyond, new points are not queued
    /// for disk (counted).
    pub const MAX_POINTS: usize = BACKLOG_BYTES / std::mem::size_of::<(u64, Point)>();
}

/// The label set as the `series` table keys it: a JSON object in the labels' order.
pub(crate) fn labels_json(labels: &Labels) -> String {
    let map: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// A label set read back from the `series` table.
pub(crate) fn labels_from_json(text: &str) -> Option<Labels> {
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(text).ok()?;
    Some(Labels::from_iter(map))
}

/// The running persister; [`PersisterHandle::stop`] makes it flush and checkpoint, then
/// waits for it.
#[derive(Debug)]
pub struct PersisterHandle {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PersisterHandle {
    /// Stops the persister after a last flush and checkpoint (so the next start replays
    /// nothing) and waits for it.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PersisterHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// A series' new row, written with the flush (or checkpoint) that first names it.
#[derive(Debug, Clone)]
struct NewSeries {
    id: i64,
    name: MetricName,
    labels: String,
}

/// A head as a checkpoint writes it: series, (oldest raw sample held, newest sample), bytes.
type HeadRow = (i64, (Option<i64>, Option<i64>), Vec<u8>);

/// Where an in-memory series goes on disk, and its group in the flush being built.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    id: i64,
    epoch: u32,
    group: usize,
}

/// One flush that has not reached disk yet.
#[derive(Debug)]
struct Unwritten {
    series: Vec<NewSeries>,
    wal: Vec<u8>,
    samples: u64,
}

/// The persister thread's own state.
struct Persister {
    disk: Arc<Disk>,
    store: Arc<SeriesStore>,
    conn: Connection,
    /// In-memory series id → disk series id (ids are the store's own counter, so a
    /// fast unkeyed hash is safe).
    by_uid: HashMap<u64, Mapped, foldhash::fast::RandomState>,
    /// Counts flushes, to tell this flush's groups from the last one's.
    epoch: u32,
    next_id: i64,
    /// Flushes not yet on disk, oldest first, and what they hold.
    backlog: VecDeque<Unwritten>,
    backlog_bytes: usize,
    /// The newest `wal` row written.
    last_wal_seq: Option<i64>,
    wal_bytes: usize,
    last_checkpoint: Instant,
    /// The newest sample time seen: retention counts back from it (never from later than
    /// now), so backfilled history is not deleted for being old and a clock jump forward
    /// does not wipe the store.
    newest_ms: TimestampMs,
    /// Whether max_disk eviction is under way (logged once per episode).
    evicting: bool,
    /// The page cap in force on `conn` ([`Disk::limit_pages`]).
    page_limit: u64,
    /// [`DiskConfig::timestamp_tolerance`] in milliseconds.
    tolerance_ms: i64,
    /// While the replay runs: what flushes wrote meanwhile, for the heads once the replay
    /// is done (older rows must reach a head before newer points, or they are stale).
    deferred: Option<Vec<(i64, Vec<Point>)>>,
}

impl Disk {
    /// Starts persisting `store`'s samples to `db`: attaches the disk to the store (so its
    /// reads reach history) and starts the persister thread, which first replays what
    /// the last run flushed after its last checkpoint.
    pub fn start(
        db: Arc<Database>,
        cfg: DiskConfig,
        store: &Arc<SeriesStore>,
    ) -> Result<PersisterHandle, StoreError> {
        let conn = db.connect()?;
        let err = |e| StoreError::from_sqlite(db.path(), e);
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)
            .map_err(err)?;
        let next_id: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM series", [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        let disk = Arc::new(Disk {
            db,
            cfg,
            heads: Mutex::new(Heads::default()),
            readers: Mutex::new(Vec::new()),
            stats: DiskStats::default(),
            families: Mutex::new(FamilyCache::default()),
            page_limit: AtomicU64::new(0),
        });
        store.attach_disk(disk.clone());
        let mut p = Persister {
            disk,
            store: store.clone(),
            conn,
            by_uid: HashMap::default(),
            epoch: 0,
            next_id,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            last_wal_seq: None,
            wal_bytes: 0,
            last_checkpoint: Instant::now(),
            newest_ms: TimestampMs::MIN,
            evicting: false,
            page_limit: 0,
            deferred: None,
            tolerance_ms: 0,
        };
        p.tolerance_ms = i64::try_from(p.disk.cfg.timestamp_tolerance.as_millis()).unwrap_or(0);
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("telltale-persist".into())
            .spawn(move || p.run(stopped))
            .map_err(|e| StoreError::Sqlite {
                path: std::path::PathBuf::from("persister thread"),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(PersisterHandle {
            stop,
            thread: Some(thread),
        })
    }

    /// The head of `series`: in memory, else read from its row (or new).
    pub(crate) fn head_mut<'a>(
        heads: &'a mut HashMap<i64, Head>,
        conn: &Connection,
        series: i64,
        tolerance_ms: i64,
    ) -> &'a mut Head {
        let head = heads.entry(series).or_insert_with(|| {
            let row: Option<Vec<u8>> = conn
                .query_row("SELECT data FROM heads WHERE series = ?1", [series], |r| {
                    r.get(0)
                })
                .optional()
                .unwrap_or_else(|e| {
                    tracing::warn!(series, error = %e, "cannot read a series' head; starting it afresh");
                    None
                });
            match row.map(|d| Head::from_bytes(series, &d)) {
                Some(Ok(mut h)) => {
                    // Loaded because a sample came: not idle.
                    h.last_arrival_ms = now_ms();
                    h
                }
                Some(Err(e)) => {
                    tracing::warn!(series, error = %e, "a series' saved head is unreadable; starting it afresh");
                    Head::new(series)
                }
                None => Head::new(series),
            }
        });
        head.tolerance_ms = tolerance_ms;
        head
    }

    /// Drops the cached series lists of these families (new series of them are written).
    fn forget_families<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut c = self.families.lock();
        c.generation += 1;
        for n in names {
            c.by_name.remove(n);
        }
    }

    /// The database.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Caps the database at `pages` pages from the next flush on (`None`: no cap but
    /// SQLite's own), so that tests can fill the "disk" without a small file system.
    #[doc(hidden)]
    pub fn limit_pages(&self, pages: Option<u64>) {
        self.page_limit.store(pages.unwrap_or(0), Ordering::Relaxed);
    }

    /// Bytes of memory the open heads and the chunks sealed since the last checkpoint
    /// hold (the persister's share of the engine's memory).
    pub fn memory_bytes(&self) -> usize {
        let heads = self.heads.lock();
        heads
            .map
            .values()
            .map(|h| h.heap_bytes() + std::mem::size_of::<Head>())
            .sum::<usize>()
            + heads.sealed.bytes()
    }

    /// Whether writing stopped for a full disk (and has not resumed).
    pub fn is_full(&self) -> bool {
        self.stats.full.load(Ordering::Relaxed)
    }
}

impl Persister {
    fn run(&mut self, stop: mpsc::Receiver<()>) {
        let flush = self.disk.cfg.flush_interval.max(Duration::from_millis(10));
        // Counted from the start, not from the replay's end: a replay takes seconds for a
        // large backlog of rows, and samples accepted meanwhile are owed to disk within
        // `flush_interval` all the same (a crash loop would otherwise lose every run).
        let mut next = Instant::now() + flush;
        self.replay(&mut next, flush);
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            let stopping = !matches!(
                stop.recv_timeout(wait),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            next = Instant::now() + flush;
            self.flush();
            if stopping
                || self.wal_bytes >= WAL_CHECKPOINT_BYTES
                || self.last_checkpoint.elapsed() >= self.disk.cfg.checkpoint_interval
            {
                self.checkpoint();
            }
            if stopping {
                break;
            }
        }
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(self.disk.db.path(), e)
    }

    /// Applies the `wal` rows of the last run to the heads, flushing at `next` (then every
    /// `flush`) meanwhile.
    fn replay(&mut self, next: &mut Instant, flush: Duration) {
        let started = Instant::now();
        let rows: Result<Vec<(i64, Vec<u8>)>, rusqlite::Error> = self
            .conn
            .prepare("SELECT seq, data FROM wal ORDER BY seq")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect());
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %self.err(e), "cannot read the write-ahead rows; history since the last checkpoint is missing");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }
        let mut samples = 0usize;
        let now = now_ms();
        let disk = self.disk.clone();
        let mut heads = disk.heads.lock();
        let heads = &mut *heads;
        self.deferred = Some(Vec::new());
        let mut sealed = Vec::new();
        for (seq, data) in &rows {
            let res = wal::for_each_series(data, &mut |series, points| {
                let head = Disk::head_mut(&mut heads.map, &self.conn, series, self.tolerance_ms);
                let added = head.add(points, now, &mut sealed);
                heads.sealed.take_from(&mut sealed);
                samples += added.accepted;
                if let Some(p) = points.last() {
                    self.newest_ms = self.newest_ms.max(p.timestamp_ms);
                }
            });
            if let Err(e) = res {
                tracing::warn!(seq, error = %e, "skipped a malformed write-ahead row");
            }
            // A flush meanwhile wrote newer rows: the checkpoint must still cover them.
            self.last_wal_seq = self.last_wal_seq.max(Some(*seq));
            self.wal_bytes += data.len();
            if Instant::now() >= *next {
                self.flush();
                *next = Instant::now() + flush;
            }
        }
        for (id, points) in self.deferred.take().unwrap_or_default() {
            let head = Disk::head_mut(&mut heads.map, &self.conn, id, self.tolerance_ms);
            let added = head.add(&points, now, &mut sealed);
            heads.sealed.take_from(&mut sealed);
            self.disk
                .stats
                .dropped_stale
                .fetch_add(added.stale as u64, Ordering::Relaxed);
            if let Some(p) = points.last() {
                self.newest_ms = self.newest_ms.max(p.timestamp_ms);
            }
        }
        tracing::info!(
            rows = rows.len(),
            samples,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "replayed the samples flushed after the last checkpoint"
        );
    }

    /// Takes what the in-memory store accepted since the last flush, adds it to the
    /// heads and writes it as one `wal` row (after any backlog).
    fn flush(&mut self) {
        let limit = self.disk.page_limit.load(Ordering::Relaxed);
        if limit != self.page_limit {
            let pages = if limit == 0 {
                u32::MAX as u64 - 1
            } else {
                limit
            };
            if self
                .conn
                .pragma_update(None, "max_page_count", pages as i64)
                .is_ok()
            {
                self.page_limit = limit;
            }
        }
        let pending = self.store.take_pending();
        let now = now_ms();
        let mut series = Vec::new();
        let mut created: HashMap<(MetricName, String), i64> = HashMap::new();
        for (uid, name, labels) in pending.new {
            let json = labels_json(&labels);
            let id = match created.get(&(name.clone(), json.clone())) {
                Some(&id) => id,
                None => match self.lookup(&name, &json) {
                    Some(id) => id,
                    None => {
                        let id = self.next_id;
                        self.next_id += 1;
                        created.insert((name.clone(), json.clone()), id);
                        series.push(NewSeries {
                            id,
                            name,
                            labels: json,
                        });
                        id
                    }
                },
            };
            self.by_uid.insert(
                uid,
                Mapped {
                    id,
                    epoch: 0,
                    group: 0,
                },
            );
        }
        // After the points: a series removed in this batch may still have some here.
        let removed = pending.removed;
        if pending.points.is_empty() && series.is_empty() {
            for uid in removed {
                self.by_uid.remove(&uid);
            }
            // Nothing new; what an earlier flush could not write is retried.
            self.write_backlog();
            return;
        }
        // Group by series, keeping each series' order (the in-memory store accepted them
        // in time order).
        // One lookup per point: the series' entry says which group it has this flush.
        self.epoch = self.epoch.wrapping_add(1);
        let mut groups: Vec<(i64, Vec<Point>)> = Vec::new();
        for (uid, p) in pending.points {
            let Some(m) = self.by_uid.get_mut(&uid) else {
                continue;
            };
            if m.epoch != self.epoch {
                m.epoch = self.epoch;
                m.group = groups.len();
                groups.push((m.id, Vec::new()));
            }
            groups[m.group].1.push(p);
        }
        for uid in removed {
            self.by_uid.remove(&uid);
        }
        let mut buf = Vec::new();
        let mut samples = 0u64;
        if let Some(deferred) = &mut self.deferred {
            // The replay holds the heads: the row is written now, the heads take it after.
            for (id, points) in &groups {
                samples += points.len() as u64;
                wal::put_series(&mut buf, *id, points);
            }
            deferred.extend(groups);
        } else {
            let mut heads = self.disk.heads.lock();
            let heads = &mut *heads;
            let mut sealed = Vec::new();
            for (id, points) in &groups {
                let head = Disk::head_mut(&mut heads.map, &self.conn, *id, self.tolerance_ms);
                let added = head.add(points, now, &mut sealed);
                heads.sealed.take_from(&mut sealed);
                if added.stale > 0 {
                    self.disk
                        .stats
                        .dropped_stale
                        .fetch_add(added.stale as u64, Ordering::Relaxed);
                }
                if added.accepted > 0 {
                    if let Some(p) = points.last() {
                        self.newest_ms = self.newest_ms.max(p.timestamp_ms);
                    }
                    samples += added.accepted as u64;
                    wal::put_series(&mut buf, *id, points);
                }
            }
        }
        self.backlog_bytes += buf.len();
        self.backlog.push_back(Unwritten {
            series,
            wal: buf,
            samples,
        });
        self.write_backlog();
    }

    /// The disk id of a series already in the `series` table.
    fn lookup(&self, name: &str, labels: &str) -> Option<i64> {
        self.conn
            .prepare_cached("SELECT id FROM series WHERE name = ?1 AND labels = ?2")
            .and_then(|mut st| st.query_row(params![name, labels], |r| r.get(0)).optional())
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "series lookup failed");
                None
            })
    }

    /// Writes the backlog, oldest first, each flush in its own transaction; stops at the
    /// first failure (kept for the next try).
    fn write_backlog(&mut self) {
        while let Some(u) = self.backlog.front() {
            let res = (|| -> rusqlite::Result<Option<i64>> {
                let tx = self.conn.transaction()?;
                insert_series(&tx, &u.series)?;
                let seq = if u.wal.is_empty() {
                    None
                } else {
                    tx.prepare_cached("INSERT INTO wal (data) VALUES (?1)")?
                        .execute([&u.wal])?;
                    Some(tx.last_insert_rowid())
                };
                tx.commit()?;
                Ok(seq)
            })();
            match res {
                Ok(seq) => {
                    let u = self.backlog.pop_front().expect("front exists");
                    if !u.series.is_empty() {
                        self.disk.forget_families(u.series.iter().map(|s| &*s.name));
                    }
                    self.backlog_bytes -= u.wal.len();
                    self.wal_bytes += u.wal.len();
                    if seq.is_some() {
                        self.last_wal_seq = seq;
                    }
                    self.disk
                        .stats
                        .samples_written
                        .fetch_add(u.samples, Ordering::Relaxed);
                    self.wrote();
                }
                Err(e) => {
                    self.failed(e);
                    break;
                }
            }
        }
        // Bounded: the oldest flushes go first (their samples stay in the heads, and a
        // checkpoint writes them if the disk comes back before a crash).
        while self.backlog_bytes > BACKLOG_BYTES && self.backlog.len() > 1 {
            if let Some(u) = self.backlog.pop_front() {
                self.backlog_bytes -= u.wal.len();
                self.disk
                    .stats
                    .dropped_backlog
                    .fetch_add(u.samples, Ordering::Relaxed);
                // Its series rows are still needed: they move to the next flush.
                if let Some(next) = self.backlog.front_mut() {
                    next.series.extend(u.series);
                }
            }
        }
    }

    /// A write succeeded: if writing had stopped, say it resumed.
    fn wrote(&self) {
        if self.disk.stats.full.swap(false, Ordering::Relaxed) {
            tracing::info!(path = %self.disk.db.path().display(), "the durable store writes again");
        }
    }

    /// A write failed: count it, and log when writing stops for a full disk (once).
    fn failed(&self, e: rusqlite::Error) {
        let e = self.err(e);
        if e.is_full() {
            self.disk.stats.errors_full.fetch_add(1, Ordering::Relaxed);
            if !self.disk.stats.full.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    error = %e,
                    "the durable store cannot write: the disk is full. Collection and alerting go on in memory; \
                     flushed samples are kept (up to {} MiB) and written when space returns",
                    BACKLOG_BYTES >> 20
                );
            }
        } else {
            let n = self.disk.stats.errors_other.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::error!(error = %e, failures = n + 1, "the durable store cannot write; retrying");
            }
        }
    }

    /// Seals idle heads, then writes the sealed chunks and changed heads and deletes the
    /// `wal` rows they cover, in one transaction; then enforces retention and `max_disk`.
    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let now = now_ms();
        let (sealed, changed, gone) = {
            let mut heads = self.disk.heads.lock();
            let heads = &mut *heads;
            let mut gone = Vec::new();
            let mut sealed = Vec::new();
            for (id, head) in heads.map.iter_mut() {
                let idle = now.saturating_sub(head.last_arrival_ms);
                if idle >= IDLE_SEAL_MS && !head.is_empty() {
                    head.seal_all(&mut sealed);
                }
                if idle >= 24 * IDLE_SEAL_MS && head.is_empty() && !head.dirty {
                    gone.push(*id);
                }
            }
            let changed: Vec<HeadRow> = heads
                .map
                .values_mut()
                .filter(|h| h.dirty)
                .map(|h| {
                    h.dirty = false;
                    (h.series(), h.span(), h.to_bytes())
                })
                .collect();
            for id in &gone {
                heads.map.remove(id);
            }
            heads.sealed.take_from(&mut sealed);
            (heads.sealed.snapshot(), changed, gone)
        };
        // The backlog's samples are in the heads written here: only its new series rows
        // are still needed.
        let series: Vec<NewSeries> = self.backlog.iter().flat_map(|u| u.series.clone()).collect();
        let upto = self.last_wal_seq;
        let res = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            insert_series(&tx, &series)?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO chunks (tier, series, start_ms, end_ms, count, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for c in &sealed {
                    ins.execute(params![
                        c.tier as i64,
                        c.series,
                        c.start_ms,
                        c.end_ms,
                        c.count as i64,
                        c.data
                    ])?;
                }
                let mut up = tx.prepare_cached(
                    "INSERT INTO heads (series, first_ms, last_ms, data) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (series) DO UPDATE SET first_ms = excluded.first_ms, last_ms = excluded.last_ms, data = excluded.data",
                )?;
                for (id, (first, last), data) in &changed {
                    up.execute(params![id, first, last, data])?;
                }
                let mut del = tx.prepare_cached("DELETE FROM heads WHERE series = ?1")?;
                for id in &gone {
                    del.execute([id])?;
                }
            }
            if let Some(seq) = upto {
                tx.execute("DELETE FROM wal WHERE seq <= ?1", [seq])?;
            }
            tx.commit()
        })();
        match res {
            Ok(()) => {
                self.disk.heads.lock().sealed.written(&sealed);
                if !series.is_empty() {
                    self.disk.forget_families(series.iter().map(|s| &*s.name));
                }
                self.wrote();
                let dropped: u64 = self.backlog.iter().map(|u| u.samples).sum();
                self.disk
                    .stats
                    .samples_written
                    .fetch_add(dropped, Ordering::Relaxed);
                self.backlog.clear();
                self.backlog_bytes = 0;
                self.wal_bytes = 0;
            }
            Err(e) => {
                self.failed(e);
                // The sealed chunks are still queued; the heads are marked for the next try.
                let mut heads = self.disk.heads.lock();
                for (id, _, _) in &changed {
                    if let Some(h) = heads.map.get_mut(id) {
                        h.dirty = true;
                    }
                }
                return;
            }
        }
        if let Err(e) = self.maintain(now) {
            self.failed(e);
        }
    }

    /// Retention per tier, then `max_disk`, then gives freed pages back to the file
    /// system.
    fn maintain(&mut self, now: TimestampMs) -> rusqlite::Result<()> {
        let reference = if self.newest_ms == TimestampMs::MIN {
            now
        } else {
            self.newest_ms.min(now)
        };
        for tier in Tier::ALL {
            let keep = self.disk.cfg.retention[tier as usize].as_millis() as i64;
            self.conn.execute(
                "DELETE FROM chunks WHERE tier = ?1 AND end_ms < ?2",
                params![tier as i64, reference.saturating_sub(keep)],
            )?;
        }
        self.enforce_max_disk()?;
        // Free pages (deleted chunks, and the `wal` rows each checkpoint deletes) go back
        // to the file system beyond a slack of a quarter of the pages in use (at least 1
        // MiB), which the next flushes reuse without growing the file again.
        let count: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))?;
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))?;
        let slack = ((count - free) / 4).max((1 << 20) / page.max(1));
        if free > slack {
            // A pragma that steps once per page freed: run it to the end.
            let mut st = self
                .conn
                .prepare(&format!("PRAGMA incremental_vacuum({})", free - slack))?;
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
        }
        Ok(())
    }

    /// Deletes the oldest chunks, raw first, until the database's used pages fit
    /// `max_disk`; returns how many.
    fn enforce_max_disk(&mut self) -> rusqlite::Result<usize> {
        let max = self.disk.cfg.max_disk;
        let used = |c: &Connection| -> rusqlite::Result<u64> {
            let page: i64 = c.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let count: i64 = c.pragma_query_value(None, "page_count", |r| r.get(0))?;
            let free: i64 = c.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
            Ok(((count - free).max(0) * page) as u64)
        };
        let mut deleted = 0;
        let mut over = used(&self.conn)?.saturating_sub(max);
        if over == 0 {
            if self.evicting {
                self.evicting = false;
                tracing::info!("the durable store fits `store.max_disk` again");
            }
            return Ok(0);
        }
        for tier in Tier::ALL {
            while over > 0 {
                // Delete what frees about the excess (by the tier's mean chunk size), at
                // least one chunk; the page count then says what is left.
                let avg: f64 = self.conn.query_row(
                    "SELECT coalesce(avg(length(data)) + 64, 0) FROM chunks WHERE tier = ?1",
                    [tier as i64],
                    |r| r.get(0),
                )?;
                if avg <= 0.0 {
                    break;
                }
                let n = ((over as f64 / avg).ceil() as i64).max(1);
                let gone = self.conn.execute(
                    "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE tier = ?1 ORDER BY end_ms LIMIT ?2)",
                    params![tier as i64, n],
                )?;
                if gone == 0 {
                    break;
                }
                deleted += gone;
                self.disk.stats.evicted[tier as usize].fetch_add(gone as u64, Ordering::Relaxed);
                if !self.evicting {
                    self.evicting = true;
                    tracing::warn!(
                        max_disk = max,
                        tier = tier.name(),
                        "the durable store reached `store.max_disk`: deleting its oldest chunks ({} tier first), counted in the evicted-chunks metric",
                        Tier::Raw.name()
                    );
                }
                over = used(&self.conn)?.saturating_sub(max);
            }
        }
        Ok(deleted)
    }
}

/// Inserts new series rows (ignoring ones a previous try already wrote).
fn insert_series(tx: &rusqlite::Transaction<'_>, series: &[NewSeries]) -> rusqlite::Result<()> {
    if series.is_empty() {
        return Ok(());
    }
    let mut st =
        tx.prepare_cached("INSERT OR IGNORE INTO series (id, name, labels) VALUES (?1, ?2, ?3)")?;
    for s in series {
        st.execute(params![s.id, &*s.name, s.labels])?;
    }
    Ok(())
}

impl Disk {
    /// The durable store's metrics as of `now`; `unqueued` is what the in-memory store
    /// could not queue for disk.
    pub(crate) fn own_metrics(
        &self,
        now: TimestampMs,
        unqueued: u64,
    ) -> Vec<telltale_model::Sample> {
        use telltale_model::{Sample, self_metrics};
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut out = vec![
            Sample::new(
                self_metrics::STORE_DISK_BYTES.name,
                &[],
                self.db.file_bytes() as f64,
                now,
            ),
            Sample::new(
                self_metrics::STORE_DISK_SAMPLES_WRITTEN.name,
                &[],
                get(&s.samples_written),
                now,
            ),
            Sample::new(
                self_metrics::STORE_DISK_WRITE_ERRORS.name,
                &[("reason", "full")],
                get(&s.errors_full),
                now,
            ),
            Sample::new(
                self_metrics::STORE_DISK_WRITE_ERRORS.name,
                &[("reason", "error")],
                get(&s.errors_other),
                now,
            ),
            Sample::new(
                self_metrics::STORE_DISK_FULL.name,
                &[],
                f64::from(u8::from(s.full.load(Ordering::Relaxed))),
                now,
            ),
            Sample::new(
                self_metrics::STORE_DISK_DROPPED.name,
                &[("reason", "backlog")],
                get(&s.dropped_backlog) + unqueued as f64,
                now,
            ),
            Sample::new(
                self_metrics::STORE_DISK_DROPPED.name,
                &[("reason", "stale")],
                get(&s.dropped_stale),
                now,
            ),
        ];
        for tier in Tier::ALL {
            out.push(Sample::new(
                self_metrics::STORE_DISK_EVICTED.name,
                &[("tier", tier.name())],
                get(&s.evicted[tier as usize]),
                now,
            ));
        }
        out
    }
}
