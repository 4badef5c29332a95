//! The read side: [`SeriesRead`], what rules' host functions and the analyzer tasks read
//! through, so that a store other than this in-memory one (a durable store) can serve them.

use std::collections::VecDeque;

use telltale_model::{Event, Labels, Point, SeriesWindow, TimestampMs};

use super::SeriesStore;
use super::disk::{RangeSeries, Resolution, StoreError};

/// Reads of stored series and events. Every selection is a metric name (or event kind)
/// plus a label matcher: a series is selected when its labels include every pair of the
/// matcher. Series come in label order, points and events oldest first.
pub trait SeriesRead: Send + Sync {
    /// The newest point of each selected series, unless it is older than the store's
    /// lookback at `now_ms` (a series silent that long is treated as gone).
    fn latest(&self, name: &str, matcher: &Labels, now_ms: TimestampMs) -> Vec<(Labels, Point)>;

    /// How many series [`SeriesRead::latest`] would return, and the point of the first of
    /// them: all that a read of one series needs, without copying labels out of the store
    /// (in a large store, touching a series' labels is a cache miss of its own).
    fn latest_count(
        &self,
        name: &str,
        matcher: &Labels,
        now_ms: TimestampMs,
    ) -> (usize, Option<Point>) {
        let all = self.latest(name, matcher, now_ms);
        (all.len(), all.first().map(|(_, p)| *p))
    }

    /// The points stamped from `since_ms` on (inclusive) of each selected series that has
    /// any, copied out.
    fn window(&self, name: &str, matcher: &Labels, since_ms: TimestampMs) -> Vec<SeriesWindow>;

    /// Calls `f` with each selected series that has points stamped from `since_ms` to
    /// `until_ms` (both inclusive), and those points, borrowed: nothing is copied, and the
    /// store may be locked meanwhile, so keep `f` short.
    fn visit_window(
        &self,
        name: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
        f: &mut dyn FnMut(&Labels, PointRun<'_>),
    );

    /// The distinct values of `label` across the series of `name`, sorted.
    fn label_values(&self, name: &str, label: &str) -> Vec<String>;

    /// The history of each selected series in `[from, to]` (both inclusive) at
    /// `resolution`: the one query path of everything that reads beyond the in-memory
    /// window (rules' long windows, the API, reports). See [`SeriesStore::range`].
    fn range(
        &self,
        name: &str,
        matcher: &Labels,
        from: TimestampMs,
        to: TimestampMs,
        resolution: Resolution,
    ) -> Result<Vec<RangeSeries>, StoreError>;

    /// From when on [`SeriesRead::visit_window`] has every sample at `now`: windows that
    /// start earlier need [`SeriesRead::range`].
    fn memory_from(&self, now_ms: TimestampMs) -> TimestampMs;

    /// The analyzer events of kind `kind` whose labels include `matcher`, stamped from
    /// `since_ms` to `until_ms` (both inclusive), oldest first.
    fn events(
        &self,
        kind: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
    ) -> Vec<Event>;
}

/// Consecutive points of one series, oldest first, borrowed from the store. Two slices
/// because the store keeps a series' points in a ring buffer.
#[derive(Debug, Clone, Copy)]
pub struct PointRun<'a> {
    head: &'a [Point],
    tail: &'a [Point],
}

impl<'a> PointRun<'a> {
    /// The points `range` of `points` (indices, `start <= end <= len`).
    fn of(points: &'a VecDeque<Point>, start: usize, end: usize) -> PointRun<'a> {
        let (a, b) = points.as_slices();
        let cut = |i: usize| (i.min(a.len()), i.saturating_sub(a.len()));
        let ((a0, b0), (a1, b1)) = (cut(start), cut(end));
        PointRun {
            head: &a[a0..a1],
            tail: &b[b0..b1],
        }
    }

    /// The points of one slice, oldest first: for readers that keep a series' points
    /// contiguous (a rule test's input series, a replay's history).
    pub fn from_slice(points: &'a [Point]) -> PointRun<'a> {
        PointRun {
            head: points,
            tail: &[],
        }
    }

    /// How many points.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a Point> + Clone + 'a {
        self.head.iter().chain(self.tail)
    }
}

/// The indices `start..end` of the points stamped from `since_ms` to `until_ms` (both
/// inclusive). A window usually reaches past the oldest point or up to the newest: those
/// ends are read off the ends of the buffer, not searched for, since a binary search
/// touches a cache line per step and a rule reads a series that is rarely in the cache.
fn bounds(
    points: &VecDeque<Point>,
    since_ms: TimestampMs,
    until_ms: TimestampMs,
) -> (usize, usize) {
    let start = match points.front() {
        Some(p) if p.timestamp_ms < since_ms => {
            points.partition_point(|p| p.timestamp_ms < since_ms)
        }
        _ => 0,
    };
    let end = match points.back() {
        Some(p) if p.timestamp_ms > until_ms => {
            points.partition_point(|p| p.timestamp_ms <= until_ms)
        }
        _ => points.len(),
    };
    (start, end)
}

impl SeriesRead for SeriesStore {
    fn latest(&self, name: &str, matcher: &Labels, now_ms: TimestampMs) -> Vec<(Labels, Point)> {
        SeriesStore::latest(self, name, matcher, now_ms)
    }

    fn latest_count(
        &self,
        name: &str,
        matcher: &Labels,
        now_ms: TimestampMs,
    ) -> (usize, Option<Point>) {
        SeriesStore::latest_count(self, name, matcher, now_ms)
    }

    fn window(&self, name: &str, matcher: &Labels, since_ms: TimestampMs) -> Vec<SeriesWindow> {
        SeriesStore::window(self, name, matcher, since_ms)
    }

    fn visit_window(
        &self,
        name: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
        f: &mut dyn FnMut(&Labels, PointRun<'_>),
    ) {
        self.for_each_series(name, matcher, |labels, points| {
            let (start, end) = bounds(points, since_ms, until_ms);
            if start < end {
                f(labels, PointRun::of(points, start, end));
            }
        });
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        SeriesStore::label_values(self, name, label)
    }

    fn range(
        &self,
        name: &str,
        matcher: &Labels,
        from: TimestampMs,
        to: TimestampMs,
        resolution: Resolution,
    ) -> Result<Vec<RangeSeries>, StoreError> {
        SeriesStore::range(self, name, matcher, from, to, resolution)
    }

    fn memory_from(&self, now_ms: TimestampMs) -> TimestampMs {
        SeriesStore::memory_from(self, now_ms)
    }

    fn events(
        &self,
        kind: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
    ) -> Vec<Event> {
        SeriesStore::events(self, kind, matcher, since_ms, until_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_a_search_from_both_ends() {
        // Points at 10, 20, 30, 40; every window from 0..=50 to 0..=50 in steps of 5.
        let points: VecDeque<Point> = (1..=4)
            .map(|i| Point {
                timestamp_ms: i * 10,
                value: 0.0,
            })
            .collect();
        for since in (0..=50).step_by(5) {
            for until in (0..=50).step_by(5) {
                let want = (
                    points.partition_point(|p| p.timestamp_ms < since),
                    points.partition_point(|p| p.timestamp_ms <= until),
                );
                assert_eq!(bounds(&points, since, until), want, "{since}..={until}");
            }
        }
        // By hand: 20..=30 is points 1 and 2; 0..=100 all four; nothing in an empty buffer.
        assert_eq!(bounds(&points, 20, 30), (1, 3));
        assert_eq!(bounds(&points, 0, 100), (0, 4));
        assert_eq!(bounds(&VecDeque::new(), 0, 100), (0, 0));
    }

    #[test]
    fn a_run_across_the_ring_buffers_wrap_keeps_order() {
        let p = |t: i64| Point {
            timestamp_ms: t,
            value: t as f64,
        };
        // Pushing at the back after popping at the front wraps the buffer: two slices.
        let mut points: VecDeque<Point> = VecDeque::with_capacity(4);
        points.extend([p(0), p(1), p(2), p(3)]);
        points.pop_front();
        points.pop_front();
        points.push_back(p(4));
        points.push_back(p(5));
        let times = |r: PointRun<'_>| r.iter().map(|p| p.timestamp_ms).collect::<Vec<_>>();
        for start in 0..=points.len() {
            for end in start..=points.len() {
                let run = PointRun::of(&points, start, end);
                assert_eq!(run.len(), end - start);
                let want: Vec<i64> = (start..end).map(|i| i as i64 + 2).collect();
                assert_eq!(times(run), want, "{start}..{end}");
            }
        }
    }
}
