//! Roll-up buckets: what the per-minute, per-hour and per-day tiers keep of the samples in
//! each interval, chosen so that every read the rules make can be answered from them:
//! count and sum (averages), min and max, the last value, and the counter increase (what
//! `rate` needs, with resets handled as Prometheus does: a drop means the counter
//! restarted from 0).
//!
//! Buckets merge exactly (a minute's buckets make the hour's), so the coarser tiers are
//! built from the finer ones and agree with them.

use telltale_model::TimestampMs;

/// The tiers of the durable store, finest first. The number is the `tier` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Every sample as collected.
    Raw = 0,
    /// One bucket per minute.
    Minute = 1,
    /// One bucket per hour.
    Hour = 2,
    /// One bucket per day (UTC).
    Day = 3,
}

impl Tier {
    /// Every tier, finest first.
    pub const ALL: [Tier; 4] = [Tier::Raw, Tier::Minute, Tier::Hour, Tier::Day];
    /// The roll-up tiers, finest first.
    pub const ROLLUPS: [Tier; 3] = [Tier::Minute, Tier::Hour, Tier::Day];

    /// The width of one bucket in milliseconds (0 for raw).
    pub const fn width_ms(self) -> i64 {
        match self {
            Tier::Raw => 0,
            Tier::Minute => 60_000,
            Tier::Hour => 3_600_000,
            Tier::Day => 86_400_000,
        }
    }

    /// The tier stored under `n` in the `tier` column.
    pub fn from_index(n: i64) -> Option<Tier> {
        Tier::ALL.get(usize::try_from(n).ok()?).copied()
    }

    /// Its name in messages and in `store info`.
    pub const fn name(self) -> &'static str {
        match self {
            Tier::Raw => "raw",
            Tier::Minute => "1m",
            Tier::Hour => "1h",
            Tier::Day => "1d",
        }
    }

    /// The start of the bucket that holds `t`.
    pub fn bucket_start(self, t: TimestampMs) -> TimestampMs {
        let w = self.width_ms();
        if w == 0 { t } else { t.div_euclid(w) * w }
    }

    /// Rows after which an open chunk of this tier is sealed: chunks large enough that
    /// the per-row cost of the table and its indexes is small beside the data, and small
    /// enough that every series' open chunk fits in memory (see the persister).
    pub(crate) const fn chunk_rows(self) -> usize {
        match self {
            Tier::Raw => 1024,
            // An hour of minutes, a day of hours, a month of days.
            Tier::Minute => 60,
            Tier::Hour => 24,
            Tier::Day => 31,
        }
    }
}

/// What one roll-up bucket keeps of the samples stamped in `[t, t + width)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's start.
    pub t: TimestampMs,
    /// Samples in it.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// The newest.
    pub last: f64,
    /// How much the series rose as a counter: the sum of its rises from the sample before
    /// each one (including the one before the bucket), a drop counting as a restart from 0.
    pub increase: f64,
}

impl Bucket {
    /// A bucket of one sample `v` at bucket start `t`, which rose `increase` from the one
    /// before.
    pub fn of(t: TimestampMs, v: f64, increase: f64) -> Bucket {
        Bucket {
            t,
            count: 1.0,
            sum: v,
            min: v,
            max: v,
            last: v,
            increase,
        }
    }

    /// Adds a later sample (or the bucket of later samples) to this bucket.
    pub fn merge(&mut self, later: &Bucket) {
        self.count += later.count;
        self.sum += later.sum;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.last = later.last;
        self.increase += later.increase;
    }

    /// The columns as the codec stores them ([`super::codec::ROLLUP_COLUMNS`]).
    pub fn columns(&self) -> [f64; 6] {
        [
            self.count,
            self.sum,
            self.min,
            self.max,
            self.last,
            self.increase,
        ]
    }

    /// The bucket a codec row holds.
    pub fn from_columns(t: TimestampMs, c: &[f64]) -> Option<Bucket> {
        match *c {
            [count, sum, min, max, last, increase] => Some(Bucket {
                t,
                count,
                sum,
                min,
                max,
                last,
                increase,
            }),
            _ => None,
        }
    }

    /// The mean of its samples.
    pub fn mean(&self) -> f64 {
        self.sum / self.count
    }
}

/// How much a counter rose from `prev` to `v`: a drop is a restart from 0.
pub fn counter_step(prev: Option<f64>, v: f64) -> f64 {
    match prev {
        Some(p) if v >= p => v - p,
        Some(_) => v,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_minutes_merge_into_the_hour_they_make() {
        let values = [3.0, 7.0, 1.0, 9.0, 2.0];
        let mut prev = None;
        let mut hour: Option<Bucket> = None;
        for (i, &v) in values.iter().enumerate() {
            let t = i as i64 * 60_000;
            let b = Bucket::of(Tier::Minute.bucket_start(t), v, counter_step(prev, v));
            prev = Some(v);
            match &mut hour {
                Some(h) => h.merge(&b),
                None => hour = Some(Bucket { t: 0, ..b }),
            }
        }
        let h = hour.unwrap();
        assert_eq!(
            (h.count, h.sum, h.min, h.max, h.last),
            (5.0, 22.0, 1.0, 9.0, 2.0)
        );
        // 3→7 (+4), 7→1 (reset: +1), 1→9 (+8), 9→2 (reset: +2).
        assert_eq!(h.increase, 15.0);
    }

    #[test]
    fn bucket_starts_are_aligned_for_times_before_the_epoch_too() {
        assert_eq!(Tier::Hour.bucket_start(3_600_000 + 5), 3_600_000);
        assert_eq!(Tier::Minute.bucket_start(-1), -60_000);
        assert_eq!(Tier::Raw.bucket_start(17), 17);
    }
}
