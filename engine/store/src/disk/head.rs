//! A series' head: its open raw chunk and, per roll-up tier, the open chunk of closed
//! buckets and the bucket still filling. Samples enter here (from a flush, or from the
//! write-ahead rows at a restart); full chunks leave as [`Sealed`] for the next
//! checkpoint to write. The whole head is what the `heads` table keeps at a checkpoint.

use telltale_model::{Point, TimestampMs};

use super::codec::{self, ChunkEncoder, CodecError, ROLLUP_COLUMNS};
use super::rollup::{Bucket, Tier, counter_step};

/// A raw chunk spanning longer than this is sealed even if not full, so retention (which
/// deletes whole chunks) never keeps data much past its time.
const RAW_CHUNK_SPAN_MS: i64 = 6 * 3_600_000;

/// The format of a serialized head.
const HEAD_VERSION: u8 = 1;

/// A chunk ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub series: i64,
    pub tier: Tier,
    pub start_ms: TimestampMs,
    pub end_ms: TimestampMs,
    pub count: usize,
    pub data: Vec<u8>,
}

/// One roll-up tier of a head.
#[derive(Debug, Clone)]
struct TierHead {
    tier: Tier,
    /// Closed buckets not yet sealed in a chunk.
    chunk: ChunkEncoder,
    /// The bucket still filling.
    open: Option<Bucket>,
    /// The end of the newest bucket closed: a sample before it (only possible after the
    /// head closed its buckets for being idle) cannot join it any more.
    closed_until: TimestampMs,
}

impl TierHead {
    fn new(tier: Tier) -> TierHead {
        TierHead {
            tier,
            chunk: ChunkEncoder::new(ROLLUP_COLUMNS),
            open: None,
            closed_until: TimestampMs::MIN,
        }
    }
}

/// What adding samples to a head did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Added {
    /// Became part of the head.
    pub accepted: usize,
    /// Not newer than the head's newest sample (a restart let an old sample through the
    /// in-memory store, which starts empty): dropped.
    pub stale: usize,
    /// Too late for a bucket already closed: kept raw, missing from the roll-ups.
    pub late_for_rollup: usize,
}

/// The open state of one series.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    series: i64,
    raw: ChunkEncoder,
    /// The newest sample's time and value (across sealed chunks).
    last: Option<Point>,
    rollups: [TierHead; 3],
    /// Changed since the last checkpoint.
    pub dirty: bool,
    /// When (wall clock) it last took a sample: heads idle for long are sealed.
    pub last_arrival_ms: TimestampMs,
    /// `store.timestamp_tolerance`: a sample stamped within this many milliseconds of the
    /// series' regular step (the last stored time plus its interval) is stored on the
    /// step; a time further off is stored as written. So each stored time is within the
    /// tolerance of the written one and nothing drifts; 0 stores every time exactly.
    pub tolerance_ms: i64,
    /// The series' regular interval as stored (0: not known yet).
    step_ms: i64,
}

impl Head {
    /// An empty head of `series`.
    pub fn new(series: i64) -> Head {
        Head {
            series,
            raw: ChunkEncoder::new(1),
            last: None,
            rollups: Tier::ROLLUPS.map(TierHead::new),
            dirty: false,
            last_arrival_ms: 0,
            tolerance_ms: 0,
            step_ms: 0,
        }
    }

    /// The series' id.
    pub fn series(&self) -> i64 {
        self.series
    }

    /// `p` with its time on the series' regular step when it is within
    /// `tolerance_ms` of it (see [`Head::tolerance_ms`]); else `p` as it is.
    fn aligned(&self, p: Point) -> Point {
        match self.last {
            Some(l) if self.tolerance_ms > 0 && self.step_ms > 0 => {
                let on_step = l.timestamp_ms + self.step_ms;
                if (p.timestamp_ms - on_step).abs() <= self.tolerance_ms {
                    Point {
                        timestamp_ms: on_step,
                        ..p
                    }
                } else {
                    p
                }
            }
            _ => p,
        }
    }

    /// Adds `points` (oldest first; a run of equal timestamps keeps its last, as the
    /// in-memory store does), sealing chunks into `sealed` as they fill.
    pub fn add(
        &mut self,
        points: &[Point],
        now_ms: TimestampMs,
        sealed: &mut Vec<Sealed>,
    ) -> Added {
        let mut added = Added::default();
        for (i, p) in points.iter().enumerate() {
            if points
                .get(i + 1)
                .is_some_and(|next| next.timestamp_ms == p.timestamp_ms)
            {
                continue;
            }
            let p = &self.aligned(*p);
            if self.last.is_some_and(|l| p.timestamp_ms <= l.timestamp_ms) {
                added.stale += 1;
                continue;
            }
            if self.raw.first_t().is_some_and(|first| {
                self.raw.len() >= Tier::Raw.chunk_rows()
                    || p.timestamp_ms - first >= RAW_CHUNK_SPAN_MS
            }) {
                self.seal_raw(sealed);
            }
            self.raw.push(p.timestamp_ms, &[p.value]);
            let step = counter_step(self.last.map(|l| l.value), p.value);
            if let Some(l) = self.last {
                // The step follows a changed interval, not a sample's jitter: only a time
                // more than a quarter of the step off it sets a new step.
                let gap = p.timestamp_ms - l.timestamp_ms;
                if self.step_ms == 0 || (gap - self.step_ms).abs() > self.step_ms / 4 {
                    // Intervals are set in round numbers (1s, 15s): a gap within the
                    // tolerance of a multiple of 10 ms is taken as that multiple, or a
                    // jittered first gap (1,001 ms) would make every aligned time creep.
                    let round = (gap + 5).div_euclid(10) * 10;
                    self.step_ms = if (gap - round).abs() <= self.tolerance_ms && round > 0 {
                        round
                    } else {
                        gap
                    };
                }
            }
            self.last = Some(*p);
            if !self.roll(p, step, sealed) {
                added.late_for_rollup += 1;
            }
            added.accepted += 1;
        }
        if added.accepted > 0 {
            self.dirty = true;
            self.last_arrival_ms = now_ms;
        }
        added
    }

    /// Feeds one sample to the roll-up tiers; false if it came too late for its minute.
    fn roll(&mut self, p: &Point, step: f64, sealed: &mut Vec<Sealed>) -> bool {
        let minute = Tier::Minute.bucket_start(p.timestamp_ms);
        if minute < self.rollups[0].closed_until {
            return false;
        }
        let mut carry = Some(Bucket::of(minute, p.value, step));
        for i in 0..self.rollups.len() {
            let Some(b) = carry.take() else { break };
            carry = self.merge_into(i, b, sealed);
        }
        true
    }

    /// Merges `b` (a sample's or a finer tier's closed bucket) into tier `i`'s open
    /// bucket; returns the bucket this closed, for the next tier.
    fn merge_into(&mut self, i: usize, b: Bucket, sealed: &mut Vec<Sealed>) -> Option<Bucket> {
        let series = self.series;
        let th = &mut self.rollups[i];
        let start = th.tier.bucket_start(b.t);
        if start < th.closed_until {
            // A finer bucket closed late (after this tier closed for idleness): dropped
            // here rather than breaking the chunk's time order.
            return None;
        }
        match &mut th.open {
            Some(open) if open.t == start => {
                open.merge(&b);
                None
            }
            _ => {
                let closed = th.open.replace(Bucket { t: start, ..b });
                if let Some(c) = closed {
                    Self::close(series, th, c, sealed);
                }
                closed
            }
        }
    }

    /// Writes a closed bucket to its tier's chunk, sealing the chunk when full.
    fn close(series: i64, th: &mut TierHead, c: Bucket, sealed: &mut Vec<Sealed>) {
        th.chunk.push(c.t, &c.columns());
        th.closed_until = c.t + th.tier.width_ms();
        if th.chunk.len() >= th.tier.chunk_rows() {
            Self::seal(series, th.tier, &mut th.chunk, ROLLUP_COLUMNS, sealed);
        }
    }

    fn seal(
        series: i64,
        tier: Tier,
        chunk: &mut ChunkEncoder,
        columns: usize,
        sealed: &mut Vec<Sealed>,
    ) {
        if let (Some(start_ms), Some(last)) = (chunk.first_t(), chunk.last_t()) {
            let width = tier.width_ms();
            sealed.push(Sealed {
                series,
                tier,
                start_ms,
                // A bucket covers its whole width: the chunk ends where its last one does.
                end_ms: if width == 0 { last } else { last + width - 1 },
                count: chunk.len(),
                data: chunk.to_bytes(),
            });
        }
        *chunk = ChunkEncoder::new(columns);
    }

    fn seal_raw(&mut self, sealed: &mut Vec<Sealed>) {
        Self::seal(self.series, Tier::Raw, &mut self.raw, 1, sealed);
    }

    /// Closes every open bucket and seals every open chunk (the series went quiet): the
    /// head is left empty but for its last sample.
    pub fn seal_all(&mut self, sealed: &mut Vec<Sealed>) {
        self.seal_raw(sealed);
        let series = self.series;
        // Finest first: a closing minute feeds its hour before the hour closes.
        for i in 0..self.rollups.len() {
            if let Some(c) = self.rollups[i].open.take() {
                Self::close(series, &mut self.rollups[i], c, sealed);
                let mut carry = Some(c);
                for j in i + 1..self.rollups.len() {
                    let Some(b) = carry.take() else { break };
                    carry = self.merge_into(j, b, sealed);
                }
            }
            let th = &mut self.rollups[i];
            Self::seal(series, th.tier, &mut th.chunk, ROLLUP_COLUMNS, sealed);
        }
        self.dirty = true;
    }

    /// The oldest sample in the open raw chunk and the newest sample of the series.
    pub fn span(&self) -> (Option<TimestampMs>, Option<TimestampMs>) {
        (self.raw.first_t(), self.last.map(|p| p.timestamp_ms))
    }

    /// Samples and encoded bytes of the open raw chunk, and encoded bytes of the open
    /// roll-up chunks (what `store` usage figures attribute to each tier).
    pub fn open_sizes(&self) -> (usize, usize, usize) {
        let rollups = self.rollups.iter().map(|t| t.chunk.encoded_len()).sum();
        (self.raw.len(), self.raw.encoded_len(), rollups)
    }

    /// Whether nothing is open (all sealed).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
            && self
                .rollups
                .iter()
                .all(|t| t.chunk.is_empty() && t.open.is_none())
    }

    /// Appends the head's raw points stamped in `[from, to]` to `out`.
    pub fn raw_points(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        out: &mut Vec<Point>,
    ) -> Result<(), CodecError> {
        if self.raw.is_empty() {
            return Ok(());
        }
        codec::decode_points(&self.raw.to_bytes(), from, to, out)
    }

    /// Appends the head's buckets of `tier` (closed ones, then the one filling) whose
    /// start is in `[from, to]` to `out`.
    pub fn buckets(
        &self,
        tier: Tier,
        from: TimestampMs,
        to: TimestampMs,
        out: &mut Vec<Bucket>,
    ) -> Result<(), CodecError> {
        let Some(th) = self.rollups.iter().find(|t| t.tier == tier) else {
            return Ok(());
        };
        if !th.chunk.is_empty() {
            decode_buckets(&th.chunk.to_bytes(), from, to, out)?;
        }
        if let Some(b) = th.open.filter(|b| b.t >= from && b.t <= to) {
            out.push(b);
        }
        Ok(())
    }

    /// Bytes of memory the head holds beyond its own size.
    pub fn heap_bytes(&self) -> usize {
        self.raw.heap_bytes()
            + self
                .rollups
                .iter()
                .map(|t| t.chunk.heap_bytes())
                .sum::<usize>()
    }

    /// The head as the `heads` table keeps it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![HEAD_VERSION];
        match self.last {
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.timestamp_ms.to_le_bytes());
                out.extend_from_slice(&p.value.to_bits().to_le_bytes());
            }
            None => out.push(0),
        }
        put_chunk(&mut out, &self.raw);
        for th in &self.rollups {
            put_chunk(&mut out, &th.chunk);
            out.extend_from_slice(&th.closed_until.to_le_bytes());
            match th.open {
                Some(b) => {
                    out.push(1);
                    out.extend_from_slice(&b.t.to_le_bytes());
                    for c in b.columns() {
                        out.extend_from_slice(&c.to_bits().to_le_bytes());
                    }
                }
                None => out.push(0),
            }
        }
        out
    }

    /// A head read back from the `heads` table.
    pub fn from_bytes(series: i64, data: &[u8]) -> Result<Head, CodecError> {
        let mut r = Bytes { data, at: 0 };
        if r.u8()? != HEAD_VERSION {
            return Err(CodecError::Malformed("unknown head version"));
        }
        let mut head = Head::new(series);
        if r.u8()? == 1 {
            head.last = Some(Point {
                timestamp_ms: r.i64()?,
                value: f64::from_bits(r.i64()? as u64),
            });
        }
        head.raw = r.chunk(1)?;
        for th in &mut head.rollups {
            th.chunk = r.chunk(ROLLUP_COLUMNS)?;
            th.closed_until = r.i64()?;
            if r.u8()? == 1 {
                let t = r.i64()?;
                let mut cols = [0.0; 6];
                for c in &mut cols {
                    *c = f64::from_bits(r.i64()? as u64);
                }
                th.open = Bucket::from_columns(t, &cols);
            }
        }
        Ok(head)
    }
}

/// Appends the buckets of a roll-up chunk whose start is in `[from, to]` to `out`.
pub(crate) fn decode_buckets(
    data: &[u8],
    from: TimestampMs,
    to: TimestampMs,
    out: &mut Vec<Bucket>,
) -> Result<(), CodecError> {
    codec::decode(data, &mut |t, cols| {
        if t > to {
            return false;
        }
        if t >= from
            && let Some(b) = Bucket::from_columns(t, cols)
        {
            out.push(b);
        }
        true
    })
}

fn put_chunk(out: &mut Vec<u8>, chunk: &ChunkEncoder) {
    if chunk.is_empty() {
        out.extend_from_slice(&0u32.to_le_bytes());
    } else {
        let bytes = chunk.to_bytes();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
}

struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let s = self
            .data
            .get(self.at..self.at.saturating_add(n))
            .ok_or(CodecError::Malformed("head is truncated"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| CodecError::Malformed("head is truncated"))?;
        Ok(i64::from_le_bytes(b))
    }
    fn chunk(&mut self, columns: usize) -> Result<ChunkEncoder, CodecError> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| CodecError::Malformed("head is truncated"))?;
        let len = u32::from_le_bytes(b) as usize;
        if len == 0 {
            return Ok(ChunkEncoder::new(columns));
        }
        ChunkEncoder::resume(self.take(len)?)
    }
}

#[cfg(test)]
mod tests;
