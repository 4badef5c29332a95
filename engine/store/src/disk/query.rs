//! Reads of history: one path that picks the tier from the window ([`Resolution::Auto`]),
//! and reads a series' sealed chunks from the database and its open data from its head.

use rusqlite::{Connection, params};

use telltale_model::{Labels, Point, TimestampMs};

use super::head::{Head, decode_buckets};
use super::persist::{Disk, labels_from_json};
use super::rollup::{Bucket, Tier};
use super::{DiskConfig, StoreError};

/// How finely a range read returns history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The store picks from the window: every sample for windows up to 6 hours, minutes
    /// up to 3 days, hours up to 90 days, days beyond; a tier whose retention does not
    /// reach back to the window's start gives way to the next coarser one.
    Auto,
    /// This tier.
    Tier(Tier),
}

/// One series' history over a range.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its points or buckets, oldest first.
    pub data: RangeData,
}

/// Samples or roll-up buckets.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeData {
    /// Every sample (the raw tier, or the in-memory window).
    Points(Vec<Point>),
    /// Roll-up buckets of `tier` (each starting in the range).
    Buckets {
        /// Which tier.
        tier: Tier,
        /// The buckets.
        buckets: Vec<Bucket>,
    },
}

impl RangeData {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            RangeData::Points(p) => p.is_empty(),
            RangeData::Buckets { buckets, .. } => buckets.is_empty(),
        }
    }
}

/// The longest window [`Resolution::Auto`] reads at each tier.
const AUTO_SPAN_MS: [i64; 3] = [6 * 3_600_000, 3 * 86_400_000, 90 * 86_400_000];

impl DiskConfig {
    /// The tier [`Resolution::Auto`] reads for `[from, to]` at `now`.
    pub fn pick(&self, from: TimestampMs, to: TimestampMs, now: TimestampMs) -> Tier {
        let span = to.saturating_sub(from);
        for (i, tier) in [Tier::Raw, Tier::Minute, Tier::Hour]
            .into_iter()
            .enumerate()
        {
            let kept = self.retention[tier as usize].as_millis() as i64;
            if span <= AUTO_SPAN_MS[i] && from >= now.saturating_sub(kept) {
                return tier;
            }
        }
        Tier::Day
    }
}

impl Disk {
    /// Runs `f` on an idle read connection (opening one if none is idle).
    pub(crate) fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => self.db.connect()?,
        };
        let out = f(&conn).map_err(|e| StoreError::from_sqlite(self.db.path(), e));
        let mut idle = self.readers.lock();
        if idle.len() < 4 {
            idle.push(conn);
        }
        out
    }

    /// The stored series of `name` whose labels include `matcher`, in label order. A
    /// family's series are read and their labels parsed once, then kept until the
    /// persister writes a new series of that name ([`Disk::forget_families`]).
    pub(crate) fn select(
        &self,
        conn: &Connection,
        name: &str,
        matcher: &Labels,
    ) -> rusqlite::Result<Vec<(i64, Labels)>> {
        let (generation, cached) = {
            let c = self.families.lock();
            (c.generation, c.by_name.get(name).cloned())
        };
        let all = match cached {
            Some(all) => all,
            None => {
                let mut st =
                    conn.prepare_cached("SELECT id, labels FROM series WHERE name = ?1")?;
                let mut all: Vec<(i64, Labels)> = st
                    .query_map([name], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })?
                    .filter_map(|row| {
                        let (id, text) = row.ok()?;
                        Some((id, labels_from_json(&text)?))
                    })
                    .collect();
                all.sort_by(|a, b| a.1.cmp(&b.1));
                let all = std::sync::Arc::new(all);
                let mut c = self.families.lock();
                // Not if a new series was written meanwhile: this list may lack it.
                if c.generation == generation {
                    c.by_name.insert(name.to_string(), all.clone());
                }
                all
            }
        };
        Ok(all
            .iter()
            .filter(|(_, labels)| {
                matcher
                    .iter()
                    .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
            })
            .cloned()
            .collect())
    }

    /// Series `id`'s history of `tier` in `[from, to]`: its chunks, then its head.
    pub(crate) fn read(
        &self,
        conn: &Connection,
        id: i64,
        tier: Tier,
        from: TimestampMs,
        to: TimestampMs,
    ) -> rusqlite::Result<RangeData> {
        let corrupt = |e: super::codec::CodecError| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
        };
        let mut st = conn.prepare_cached(
            "SELECT data, end_ms FROM chunks WHERE series = ?1 AND tier = ?2 AND end_ms >= ?3 AND start_ms <= ?4 ORDER BY end_ms",
        )?;
        let mut rows = st.query(params![id, tier as i64, from, to])?;
        let mut points = Vec::new();
        let mut buckets = Vec::new();
        let decode = |data: &[u8], points: &mut Vec<Point>, buckets: &mut Vec<Bucket>| match tier {
            Tier::Raw => super::codec::decode_points(data, from, to, points),
            _ => decode_buckets(data, from, to, buckets),
        };
        // Chunks of one series and tier never overlap, and those still in memory are
        // newer than those written: a chunk in memory that starts before the last one
        // read here is one a checkpoint wrote since, already read.
        let mut written_until = TimestampMs::MIN;
        while let Some(row) = rows.next()? {
            decode(row.get_ref(0)?.as_blob()?, &mut points, &mut buckets).map_err(corrupt)?;
            written_until = row.get(1)?;
        }
        drop(rows);
        // Then what is in memory: chunks sealed since the last checkpoint (those a
        // checkpoint wrote meanwhile are skipped by their time) and the open head.
        let held = {
            let heads = self.heads.lock();
            for c in heads
                .sealed
                .of(id, tier)
                .filter(|c| c.start_ms > written_until && c.end_ms >= from && c.start_ms <= to)
            {
                decode(&c.data, &mut points, &mut buckets).map_err(corrupt)?;
            }
            heads.map.get(&id).map(|h| match tier {
                Tier::Raw => h.raw_points(from, to, &mut points),
                _ => h.buckets(tier, from, to, &mut buckets),
            })
        };
        match held {
            Some(r) => r.map_err(corrupt)?,
            None => {
                // Not touched since the start: its saved head is current.
                let mut st = conn.prepare_cached("SELECT data FROM heads WHERE series = ?1")?;
                let mut rows = st.query([id])?;
                if let Some(row) = rows.next()? {
                    let head = Head::from_bytes(id, row.get_ref(0)?.as_blob()?).map_err(corrupt)?;
                    match tier {
                        Tier::Raw => head.raw_points(from, to, &mut points),
                        _ => head.buckets(tier, from, to, &mut buckets),
                    }
                    .map_err(corrupt)?;
                }
            }
        }
        Ok(match tier {
            Tier::Raw => RangeData::Points(points),
            _ => RangeData::Buckets { tier, buckets },
        })
    }
}
