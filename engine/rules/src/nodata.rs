//! Which series a rule reads, for its `nodata` alerts.
//!
//! The host functions read the store only through [`SeriesRead`]; the rules' engine is
//! given a [`Recording`] wrapper that notes every (name, matcher) a selection asked for
//! while a rule with `nodata` is evaluated on this thread (for other rules it costs one
//! thread-local look per read). After the evaluation, [`Tracker::update`] asks the store
//! for the newest point of each series those selections match and remembers it; a series
//! whose newest point is older than `nodata` is silent. A series the rule once read and
//! that then vanished from the store stays silent (its last time is remembered) until
//! it has been silent for a day beyond `nodata`, when it is forgotten.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use telltale_model::{Event, Labels, Point, SeriesWindow, TimestampMs, duration_ms};
use telltale_store::disk::{RangeSeries, Resolution, StoreError};
use telltale_store::{PointRun, SeriesRead};

/// The label that names the silent series' metric in a `nodata` alert.
pub const METRIC_LABEL: &str = "metric";

/// How long a silent series is remembered beyond its rule's `nodata`.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

thread_local! {
    /// The selections of the rule being evaluated on this thread, when it is recorded.
    static SELECTIONS: RefCell<Option<Vec<(String, Labels)>>> = const { RefCell::new(None) };
}

/// Notes a selection if a recording is on.
fn note(name: &str, matcher: &Labels) {
    let _ = SELECTIONS.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && let Some(list) = s.as_mut()
            && !list.iter().any(|(n, m)| n == name && m == matcher)
        {
            list.push((name.to_string(), matcher.clone()));
        }
    });
}

/// Runs `f` with every selection it makes recorded, and returns them.
pub(crate) fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<(String, Labels)>) {
    let _ = SELECTIONS.try_with(|s| *s.borrow_mut() = Some(Vec::new()));
    let out = f();
    let selections = SELECTIONS
        .try_with(|s| s.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_default();
    (out, selections)
}

/// A store that notes the selections made through it (see the module's doc).
pub(crate) struct Recording(pub Arc<dyn SeriesRead>);

impl SeriesRead for Recording {
    fn latest(&self, name: &str, matcher: &Labels, now_ms: TimestampMs) -> Vec<(Labels, Point)> {
        note(name, matcher);
        self.0.latest(name, matcher, now_ms)
    }

    fn latest_count(
        &self,
        name: &str,
        matcher: &Labels,
        now_ms: TimestampMs,
    ) -> (usize, Option<Point>) {
        note(name, matcher);
        self.0.latest_count(name, matcher, now_ms)
    }

    fn window(&self, name: &str, matcher: &Labels, since_ms: TimestampMs) -> Vec<SeriesWindow> {
        note(name, matcher);
        self.0.window(name, matcher, since_ms)
    }

    fn visit_window(
        &self,
        name: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
        f: &mut dyn FnMut(&Labels, PointRun<'_>),
    ) {
        note(name, matcher);
        self.0.visit_window(name, matcher, since_ms, until_ms, f)
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.0.label_values(name, label)
    }

    fn range(
        &self,
        name: &str,
        matcher: &Labels,
        from: TimestampMs,
        to: TimestampMs,
        resolution: Resolution,
    ) -> Result<Vec<RangeSeries>, StoreError> {
        note(name, matcher);
        self.0.range(name, matcher, from, to, resolution)
    }

    fn memory_from(&self, now_ms: TimestampMs) -> TimestampMs {
        self.0.memory_from(now_ms)
    }

    fn events(
        &self,
        kind: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
    ) -> Vec<Event> {
        self.0.events(kind, matcher, since_ms, until_ms)
    }
}

/// The series one rule has read, with the time of the newest point seen of each.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    seen: Mutex<HashMap<(String, Labels), TimestampMs>>,
}

impl Tracker {
    /// Takes in one evaluation's `selections` at `now_ms` and returns the series silent for
    /// `nodata` or longer: their labels (with [`METRIC_LABEL`] naming the metric) and the
    /// time of their newest point, sorted by labels.
    pub(crate) fn update(
        &self,
        store: &dyn SeriesRead,
        selections: &[(String, Labels)],
        nodata: Duration,
        now_ms: TimestampMs,
    ) -> Vec<(Labels, TimestampMs)> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, matcher) in selections {
            for (labels, point) in store.latest(name, matcher, now_ms) {
                let last = seen
                    .entry((name.clone(), labels))
                    .or_insert(point.timestamp_ms);
                *last = (*last).max(point.timestamp_ms);
            }
        }
        let nodata_ms = duration_ms(nodata);
        let forget_ms = nodata_ms + duration_ms(FORGET_AFTER);
        seen.retain(|_, last| now_ms - *last <= forget_ms);
        let mut silent: Vec<(Labels, TimestampMs)> = seen
            .iter()
            .filter(|(_, last)| now_ms - **last >= nodata_ms)
            .map(|((name, labels), last)| {
                let mut labels = labels.clone();
                labels
                    .entry(METRIC_LABEL.to_string())
                    .or_insert_with(|| name.clone());
                (labels, *last)
            })
            .collect();
        silent.sort();
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_model::Sample;
    use telltale_store::{SeriesStore, StoreLimits};

    fn host(h: &str) -> Labels {
        Labels::from([("host".to_string(), h.to_string())])
    }

    #[test]
    fn selections_are_recorded_only_inside_a_recording_and_once_each() {
        let store: Arc<dyn SeriesRead> = Arc::new(SeriesStore::new(StoreLimits::default()));
        let rec = Recording(store);
        rec.latest("a", &Labels::new(), 0);
        let ((), sel) = recording(|| {
            rec.latest("x", &host("1"), 0);
            rec.window("x", &host("1"), 0);
            rec.latest_count("y", &Labels::new(), 0);
        });
        assert_eq!(
            sel,
            [
                ("x".to_string(), host("1")),
                ("y".to_string(), Labels::new())
            ]
        );
        let ((), none) = recording(|| ());
        assert!(none.is_empty(), "the previous recording ended");
    }

    #[test]
    fn a_series_that_stops_is_silent_after_nodata_and_forgotten_a_day_later() {
        let store = SeriesStore::new(StoreLimits::default());
        let t0 = 1_700_000_000_000;
        let put = |h: &str, t: i64| {
            store.ingest([Sample::new("up", &[("host", h)], 1.0, t)]);
        };
        put("a", t0);
        put("b", t0);
        let tracker = Tracker::default();
        let sel = [("up".to_string(), Labels::new())];
        let nodata = Duration::from_secs(120);
        assert!(tracker.update(&store, &sel, nodata, t0).is_empty());
        // b keeps sending; a stops. At t0 + 119 s a is not silent yet (119 < 120).
        put("b", t0 + 119_000);
        assert!(
            tracker
                .update(&store, &sel, nodata, t0 + 119_000)
                .is_empty()
        );
        put("b", t0 + 120_000);
        let silent = tracker.update(&store, &sel, nodata, t0 + 120_000);
        let mut want = host("a");
        want.insert(METRIC_LABEL.into(), "up".into());
        assert_eq!(silent, [(want.clone(), t0)]);
        // Past the store's lookback `latest` no longer returns a: still silent, same time.
        let later = t0 + 3_600_000;
        put("b", later);
        assert_eq!(tracker.update(&store, &sel, nodata, later), [(want, t0)]);
        // It comes back: no longer silent.
        put("a", later + 1000);
        assert!(
            tracker
                .update(&store, &sel, nodata, later + 1000)
                .is_empty()
        );
        // Stops again and stays away for 120 s + a day: forgotten.
        let gone = later + 1000 + 120_000 + 24 * 3_600_000 + 1;
        put("b", gone);
        assert!(tracker.update(&store, &sel, nodata, gone).is_empty());
    }
}
