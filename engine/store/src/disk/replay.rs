//! [`HistoryView`]: a database's stored history read as rules read the live store
//! ([`SeriesRead`]), as of a time the caller moves forward: what `telltale replay`
//! evaluates rules over.
//!
//! It reads through a [`ReadOnlyDatabase`] (never creating or changing a file, safe beside
//! a running engine), inside one read transaction, so the whole replay sees one snapshot
//! whatever the engine checkpoints meanwhile (the engine's `-wal` file grows until the
//! replay is done, as during a backup). Every sample flushed is seen: sealed chunks, the
//! open heads as of the last checkpoint and the `wal` rows flushed since.
//!
//! Each metric name's raw samples in the replay's span (from [`RAW_REACH_MS`] before its
//! start, so that windows up to that long are exact from the first step) are read once, on
//! the first read of the name, and kept. Every read is cut at the evaluation time (the
//! "now" of the step, [`HistoryView::set_now`]): nothing later is seen. Windows reaching
//! further back than the in-memory window (`memory`) go through [`SeriesRead::range`], as
//! in the engine: raw samples up to 6 hours, then per-minute (3 days), per-hour (90 days)
//! and per-day roll-ups; a tier with nothing for a series (dropped by retention) gives way
//! to the next coarser one. Roll-ups are read from chunks and heads only, so a window of
//! more than 6 hours leaves out what was flushed since the last checkpoint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;
use rusqlite::params;

use telltale_model::{Event, Labels, MetricName, Point, SeriesKey, SeriesWindow, TimestampMs};

use super::admin::ReadOnlyDatabase;
use super::head::{Head, decode_buckets};
use super::persist::labels_from_json;
use super::query::{RangeData, RangeSeries, Resolution};
use super::rollup::{Bucket, Tier};
use super::{StoreError, codec, wal};
use crate::read::{PointRun, SeriesRead};

/// How far before the replay's start raw samples are read: the longest window the
/// engine reads raw samples for.
pub const RAW_REACH_MS: i64 = 6 * 3_600_000;

/// The longest window read at each roll-up tier before the next coarser one (as the
/// live store's automatic choice).
const TIER_SPAN_MS: [(Tier, i64); 3] = [
    (Tier::Raw, RAW_REACH_MS),
    (Tier::Minute, 3 * 86_400_000),
    (Tier::Hour, 90 * 86_400_000),
];

/// One series of a family: its id in the database, labels and raw samples.
#[derive(Debug)]
struct Stored {
    id: i64,
    labels: Labels,
    points: Vec<Point>,
}

/// A database's history as a [`SeriesRead`], as of a time the caller sets.
#[derive(Debug)]
pub struct HistoryView {
    path: PathBuf,
    db: Mutex<ReadOnlyDatabase>,
    /// The raw samples read: `[load_from, load_to]`.
    load_from: TimestampMs,
    load_to: TimestampMs,
    /// By metric name, series in label order.
    families: Mutex<HashMap<String, Arc<Vec<Stored>>>>,
    /// What the `wal` rows hold in the span, by series id (read at open).
    wal: HashMap<i64, Vec<Point>>,
    now: AtomicI64,
    lookback_ms: i64,
    memory_ms: i64,
}

impl HistoryView {
    /// A view of `db` for evaluations from `from` to `to`. `lookback` is how old the
    /// newest point of a series may be for `latest` to return it (the store's lookback);
    /// `memory` is the engine's in-memory window (`engine.retention`): windows reaching
    /// further back are read as [`SeriesRead::range`] reads them.
    pub fn new(
        db: ReadOnlyDatabase,
        from: TimestampMs,
        to: TimestampMs,
        lookback: std::time::Duration,
        memory: std::time::Duration,
    ) -> Result<HistoryView, StoreError> {
        let path = db.path().to_path_buf();
        let err = |e| StoreError::from_sqlite(&path, e);
        // One snapshot for the whole replay.
        db.connection().execute_batch("BEGIN").map_err(err)?;
        let load_from = from.saturating_sub(RAW_REACH_MS);
        let mut wal: HashMap<i64, Vec<Point>> = HashMap::new();
        {
            let mut st = db
                .connection()
                .prepare("SELECT data FROM wal ORDER BY seq")
                .map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let data = row
                    .get_ref(0)
                    .map_err(err)?
                    .as_blob()
                    .map_err(|e| err(e.into()))?;
                // A malformed row (damage or a bug) leaves its samples out, as a restart
                // of the engine would.
                let _ = wal::for_each_series(data, &mut |series, points| {
                    wal.entry(series).or_default().extend(
                        points
                            .iter()
                            .filter(|p| p.timestamp_ms >= load_from && p.timestamp_ms <= to),
                    );
                });
            }
        }
        Ok(HistoryView {
            path,
            db: Mutex::new(db),
            load_from,
            load_to: to,
            families: Mutex::new(HashMap::new()),
            wal,
            now: AtomicI64::new(from),
            lookback_ms: telltale_model::duration_ms(lookback),
            memory_ms: telltale_model::duration_ms(memory),
        })
    }

    /// Sets the evaluation time: no read sees anything stamped after it.
    pub fn set_now(&self, now: TimestampMs) {
        self.now.store(now, Ordering::Relaxed);
    }

    fn now(&self) -> TimestampMs {
        self.now.load(Ordering::Relaxed)
    }

    /// The series of `name` with their raw samples in the span, read on first use.
    fn family(&self, name: &str) -> Result<Arc<Vec<Stored>>, StoreError> {
        if let Some(f) = self.families.lock().get(name) {
            return Ok(f.clone());
        }
        let err = |e| StoreError::from_sqlite(&self.path, e);
        let db = self.db.lock();
        let conn = db.connection();
        let mut series: Vec<Stored> = Vec::new();
        {
            let mut st = conn
                .prepare_cached("SELECT id, labels FROM series WHERE name = ?1")
                .map_err(err)?;
            let mut rows = st.query([name]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let id: i64 = row.get(0).map_err(err)?;
                let text: String = row.get(1).map_err(err)?;
                if let Some(labels) = labels_from_json(&text) {
                    series.push(Stored {
                        id,
                        labels,
                        points: Vec::new(),
                    });
                }
            }
        }
        let corrupt = |e: codec::CodecError| StoreError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        for s in &mut series {
            let mut st = conn
                .prepare_cached(
                    "SELECT data FROM chunks WHERE series = ?1 AND tier = 0 AND end_ms >= ?2 AND start_ms <= ?3 ORDER BY end_ms",
                )
                .map_err(err)?;
            let mut rows = st
                .query(params![s.id, self.load_from, self.load_to])
                .map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let data = row
                    .get_ref(0)
                    .map_err(err)?
                    .as_blob()
                    .map_err(|e| err(e.into()))?;
                codec::decode_points(data, self.load_from, self.load_to, &mut s.points)
                    .map_err(corrupt)?;
            }
            drop(rows);
            if let Some(head) = self.head(conn, s.id)? {
                head.raw_points(self.load_from, self.load_to, &mut s.points)
                    .map_err(corrupt)?;
            }
            if let Some(points) = self.wal.get(&s.id) {
                s.points.extend_from_slice(points);
            }
            // Chunks, head and wal rows do not overlap, but a sample written twice (a
            // crash between a checkpoint and its wal deletion) must not count twice.
            s.points.sort_by_key(|p| p.timestamp_ms);
            s.points.dedup_by_key(|p| p.timestamp_ms);
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let family = Arc::new(series);
        self.families
            .lock()
            .insert(name.to_string(), family.clone());
        Ok(family)
    }

    /// Series `id`'s saved head, if it has one.
    fn head(&self, conn: &rusqlite::Connection, id: i64) -> Result<Option<Head>, StoreError> {
        let err = |e| StoreError::from_sqlite(&self.path, e);
        let mut st = conn
            .prepare_cached("SELECT data FROM heads WHERE series = ?1")
            .map_err(err)?;
        let mut rows = st.query([id]).map_err(err)?;
        match rows.next().map_err(err)? {
            Some(row) => {
                let data = row
                    .get_ref(0)
                    .map_err(err)?
                    .as_blob()
                    .map_err(|e| err(e.into()))?;
                Head::from_bytes(id, data)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path: self.path.clone(),
                        detail: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Series `id`'s roll-up buckets of `tier` starting in `[from, to]`: chunks, then head.
    fn buckets(
        &self,
        id: i64,
        tier: Tier,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<Bucket>, StoreError> {
        let err = |e| StoreError::from_sqlite(&self.path, e);
        let corrupt = |e: codec::CodecError| StoreError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let db = self.db.lock();
        let conn = db.connection();
        let mut out = Vec::new();
        let mut st = conn
            .prepare_cached(
                "SELECT data FROM chunks WHERE series = ?1 AND tier = ?2 AND end_ms >= ?3 AND start_ms <= ?4 ORDER BY end_ms",
            )
            .map_err(err)?;
        let mut rows = st.query(params![id, tier as i64, from, to]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let data = row
                .get_ref(0)
                .map_err(err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            decode_buckets(data, from, to, &mut out).map_err(corrupt)?;
        }
        drop(rows);
        if let Some(head) = self.head(conn, id)? {
            head.buckets(tier, from, to, &mut out).map_err(corrupt)?;
        }
        out.sort_by_key(|b| b.t);
        out.dedup_by_key(|b| b.t);
        Ok(out)
    }

    /// The selected series of `name`; none when the database cannot be read (the
    /// methods of [`SeriesRead`] that cannot fail then see no data).
    fn selected(&self, name: &str, matcher: &Labels) -> Vec<(Arc<Vec<Stored>>, usize)> {
        let Ok(family) = self.family(name) else {
            return Vec::new();
        };
        (0..family.len())
            .filter(|&i| {
                matcher
                    .iter()
                    .all(|(k, v)| family[i].labels.get(k).is_some_and(|x| x == v))
            })
            .map(|i| (family.clone(), i))
            .collect()
    }
}

/// The points of `points` stamped in `[from, to]`.
fn slice(points: &[Point], from: TimestampMs, to: TimestampMs) -> &[Point] {
    let start = points.partition_point(|p| p.timestamp_ms < from);
    let end = points.partition_point(|p| p.timestamp_ms <= to);
    &points[start..end.max(start)]
}

impl SeriesRead for HistoryView {
    fn latest(&self, name: &str, matcher: &Labels, now_ms: TimestampMs) -> Vec<(Labels, Point)> {
        let oldest = now_ms.saturating_sub(self.lookback_ms);
        self.selected(name, matcher)
            .into_iter()
            .filter_map(|(f, i)| {
                let s = &f[i];
                let p = slice(&s.points, oldest, now_ms).last()?;
                Some((s.labels.clone(), *p))
            })
            .collect()
    }

    fn window(&self, name: &str, matcher: &Labels, since_ms: TimestampMs) -> Vec<SeriesWindow> {
        let now = self.now();
        self.selected(name, matcher)
            .into_iter()
            .filter_map(|(f, i)| {
                let s = &f[i];
                let points = slice(&s.points, since_ms, now);
                (!points.is_empty()).then(|| SeriesWindow {
                    key: SeriesKey {
                        name: MetricName::from(name),
                        labels: s.labels.clone(),
                    },
                    points: points.to_vec(),
                })
            })
            .collect()
    }

    fn visit_window(
        &self,
        name: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
        f: &mut dyn FnMut(&Labels, PointRun<'_>),
    ) {
        let until = until_ms.min(self.now());
        for (family, i) in self.selected(name, matcher) {
            let s = &family[i];
            let points = slice(&s.points, since_ms, until);
            if !points.is_empty() {
                f(&s.labels, PointRun::from_slice(points));
            }
        }
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        // The series the engine would hold in memory at `now`: those with a sample in
        // its in-memory window.
        let now = self.now();
        let mut values: Vec<String> = self
            .selected(name, &Labels::new())
            .into_iter()
            .filter(|(f, i)| !slice(&f[*i].points, now - self.memory_ms, now).is_empty())
            .filter_map(|(f, i)| f[i].labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    fn range(
        &self,
        name: &str,
        matcher: &Labels,
        from: TimestampMs,
        to: TimestampMs,
        resolution: Resolution,
    ) -> Result<Vec<RangeSeries>, StoreError> {
        let to = to.min(self.now());
        let family = self.family(name)?;
        let span = to.saturating_sub(from);
        let first = match resolution {
            Resolution::Tier(t) => t,
            Resolution::Auto => TIER_SPAN_MS
                .iter()
                .find(|(_, reach)| span <= *reach)
                .map_or(Tier::Day, |(t, _)| *t),
        };
        let mut out = Vec::new();
        for s in family.iter().filter(|s| {
            matcher
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == v))
        }) {
            let data = if first == Tier::Raw && from >= self.load_from {
                RangeData::Points(slice(&s.points, from, to).to_vec())
            } else {
                // The picked tier, or a coarser one when retention dropped it.
                let mut data = RangeData::Points(Vec::new());
                for tier in Tier::ROLLUPS.into_iter().filter(|t| *t >= first) {
                    let buckets = self.buckets(s.id, tier, from, to)?;
                    if !buckets.is_empty() {
                        data = RangeData::Buckets { tier, buckets };
                        break;
                    }
                }
                data
            };
            if !data.is_empty() {
                out.push(RangeSeries {
                    labels: s.labels.clone(),
                    data,
                });
            }
        }
        Ok(out)
    }

    fn memory_from(&self, now_ms: TimestampMs) -> TimestampMs {
        now_ms.saturating_sub(self.memory_ms)
    }

    fn events(
        &self,
        _kind: &str,
        _matcher: &Labels,
        _since_ms: TimestampMs,
        _until_ms: TimestampMs,
    ) -> Vec<Event> {
        // Analyzer events live in memory only; the database keeps none.
        Vec::new()
    }
}
