//! The store a rule test's rules read: the test's `input_series`, all known in advance,
//! served as they would have been at the evaluation time.
//!
//! The engine's in-memory store cannot stand in for it: it holds what has arrived so far
//! (so its newest point is the latest), while a test knows every point from the start.
//! Here every read is cut at the evaluation time: nothing later is seen, as in the engine
//! where it has not arrived yet. A staleness marker ends its series: `latest` sees nothing
//! from it on (until a value follows), and windows leave the marker out.

use std::sync::atomic::{AtomicI64, Ordering};

use telltale_model::{
    Event, Labels, MetricName, Point, SeriesKey, SeriesWindow, TimestampMs, duration_ms,
};
use telltale_store::disk::{RangeData, RangeSeries, Resolution, StoreError};
use telltale_store::{PointRun, SeriesRead, StoreLimits};

/// One input series: `None` values are staleness markers.
#[derive(Debug, Clone)]
pub(crate) struct InputSeries {
    pub name: String,
    pub labels: Labels,
    /// Oldest first, one per timestamp.
    pub points: Vec<(TimestampMs, Option<f64>)>,
}

/// The series of one test, read as of [`TestSeries::set_now`].
#[derive(Debug)]
pub(crate) struct TestSeries {
    /// By name then labels, so reads return series in label order as the store does.
    series: Vec<InputSeries>,
    /// The evaluation time: reads that take no time of their own (`window`,
    /// `label_values`) see nothing after it.
    now: AtomicI64,
    lookback_ms: i64,
}

/// How long a series with no point stays in `label_values`: the engine's in-memory
/// retention by default (`engine.retention`, 1 hour).
const LISTED_FOR_MS: i64 = 3_600_000;

impl TestSeries {
    /// The store of `series` (same name and labels twice is the caller's error to refuse).
    pub fn new(mut series: Vec<InputSeries>) -> TestSeries {
        series.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        TestSeries {
            series,
            now: AtomicI64::new(0),
            lookback_ms: duration_ms(StoreLimits::default().lookback),
        }
    }

    /// Sets the evaluation time.
    pub fn set_now(&self, now: TimestampMs) {
        self.now.store(now, Ordering::Relaxed);
    }

    fn now(&self) -> TimestampMs {
        self.now.load(Ordering::Relaxed)
    }

    fn selected<'a>(
        &'a self,
        name: &'a str,
        matcher: &'a Labels,
    ) -> impl Iterator<Item = &'a InputSeries> + 'a {
        self.series.iter().filter(move |s| {
            s.name == name
                && matcher
                    .iter()
                    .all(|(k, v)| s.labels.get(k).is_some_and(|x| x == v))
        })
    }

    /// The values (markers left out) of `s` stamped in `[from, min(to, now)]`.
    fn points_in(&self, s: &InputSeries, from: TimestampMs, to: TimestampMs) -> Vec<Point> {
        let to = to.min(self.now());
        s.points
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .filter_map(|&(t, v)| {
                v.map(|value| Point {
                    timestamp_ms: t,
                    value,
                })
            })
            .collect()
    }
}

impl SeriesRead for TestSeries {
    fn latest(&self, name: &str, matcher: &Labels, now_ms: TimestampMs) -> Vec<(Labels, Point)> {
        let oldest = now_ms.saturating_sub(self.lookback_ms);
        self.selected(name, matcher)
            .filter_map(|s| {
                let &(t, v) = s.points.iter().rev().find(|(t, _)| *t <= now_ms)?;
                // A marker as the newest point: the series has ended.
                let value = v?;
                (t >= oldest).then(|| {
                    (
                        s.labels.clone(),
                        Point {
                            timestamp_ms: t,
                            value,
                        },
                    )
                })
            })
            .collect()
    }

    fn window(&self, name: &str, matcher: &Labels, since_ms: TimestampMs) -> Vec<SeriesWindow> {
        self.selected(name, matcher)
            .filter_map(|s| {
                let points = self.points_in(s, since_ms, TimestampMs::MAX);
                (!points.is_empty()).then(|| SeriesWindow {
                    key: SeriesKey {
                        name: MetricName::from(s.name.as_str()),
                        labels: s.labels.clone(),
                    },
                    points,
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
        for s in self.selected(name, matcher) {
            let points = self.points_in(s, since_ms, until_ms);
            if !points.is_empty() {
                f(&s.labels, PointRun::from_slice(&points));
            }
        }
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let now = self.now();
        let empty = Labels::new();
        let mut values: Vec<String> = self
            .selected(name, &empty)
            .filter(|s| !self.points_in(s, now - LISTED_FOR_MS, now).is_empty())
            .filter_map(|s| s.labels.get(label).cloned())
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
        _resolution: Resolution,
    ) -> Result<Vec<RangeSeries>, StoreError> {
        // Every point of a test is "in memory": no roll-ups, whatever the window.
        Ok(self
            .selected(name, matcher)
            .filter_map(|s| {
                let points = self.points_in(s, from, to);
                (!points.is_empty()).then(|| RangeSeries {
                    labels: s.labels.clone(),
                    data: RangeData::Points(points),
                })
            })
            .collect())
    }

    fn memory_from(&self, _now_ms: TimestampMs) -> TimestampMs {
        TimestampMs::MIN
    }

    fn events(
        &self,
        _kind: &str,
        _matcher: &Labels,
        _since_ms: TimestampMs,
        _until_ms: TimestampMs,
    ) -> Vec<Event> {
        // The notation has no way to write analyzer events.
        Vec::new()
    }
}
