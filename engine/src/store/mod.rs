//! The in-memory series store: the hot window every rule and analyzer reads.
//!
//! Bounded three ways: points older than the retention are pruned, each series keeps at
//! most `max_points_per_series` points (oldest dropped first), and new series beyond
//! `max_series` are refused and counted. A rejected sample never disturbs stored ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use parking_lot::RwLock;

use crate::model::{Labels, Point, Sample, SeriesKey, SeriesWindow, TimestampMs, duration_ms};

/// How far back `latest` looks: a series silent for longer is treated as gone, as
/// Prometheus does with its lookback delta.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);

/// The store's bounds.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Points older than this (relative to the newest prune time) are dropped.
    pub retention: Duration,
    /// Points kept per series.
    pub max_points_per_series: usize,
    /// Series kept in all.
    pub max_series: usize,
    /// How old the newest point of a series may be for `latest` to return it.
    pub lookback: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            retention: Duration::from_secs(3600),
            max_points_per_series: 4096,
            max_series: 100_000,
            lookback: DEFAULT_LOOKBACK,
        }
    }
}

/// What happened to one batch of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Stored.
    pub accepted: usize,
    /// Refused: they would have created a series beyond `max_series`.
    pub dropped_series_limit: usize,
    /// Refused: older than the series' newest point.
    pub dropped_out_of_order: usize,
}

/// The series of one metric name, by label set.
type Family = BTreeMap<Labels, VecDeque<Point>>;

/// Thread-safe in-memory store of recent samples.
#[derive(Debug)]
pub struct SeriesStore {
    families: RwLock<HashMap<String, Family>>,
    limits: StoreLimits,
}

impl SeriesStore {
    /// An empty store with these bounds.
    pub fn new(limits: StoreLimits) -> SeriesStore {
        SeriesStore {
            families: RwLock::new(HashMap::new()),
            limits,
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Stores a batch. A sample with the same timestamp as its series' newest point
    /// replaces it; an older one is dropped.
    pub fn ingest(&self, samples: impl IntoIterator<Item = Sample>) -> IngestReport {
        let mut report = IngestReport::default();
        let mut families = self.families.write();
        let mut series_count: usize = families.values().map(|f| f.len()).sum();
        for sample in samples {
            let point = Point {
                timestamp_ms: sample.timestamp_ms,
                value: sample.value,
            };
            let family = families.entry(sample.name).or_default();
            let points = match family.get_mut(&sample.labels) {
                Some(points) => points,
                None => {
                    if series_count >= self.limits.max_series {
                        report.dropped_series_limit += 1;
                        continue;
                    }
                    series_count += 1;
                    family.entry(sample.labels).or_default()
                }
            };
            match points.back_mut() {
                Some(last) if last.timestamp_ms == point.timestamp_ms => *last = point,
                Some(last) if last.timestamp_ms > point.timestamp_ms => {
                    report.dropped_out_of_order += 1;
                    continue;
                }
                _ => {
                    if points.len() >= self.limits.max_points_per_series {
                        points.pop_front();
                    }
                    points.push_back(point);
                }
            }
            report.accepted += 1;
        }
        // Families emptied by a refused first sample would linger as empty maps.
        families.retain(|_, f| !f.is_empty());
        report
    }

    /// Removes these series with all their points (a pushed group deleted or expired);
    /// returns how many existed.
    pub fn remove_series(&self, keys: &[SeriesKey]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        let mut families = self.families.write();
        let mut removed = 0;
        for key in keys {
            if let Some(family) = families.get_mut(&key.name) {
                removed += usize::from(family.remove(&key.labels).is_some());
                if family.is_empty() {
                    families.remove(&key.name);
                }
            }
        }
        removed
    }

    /// Drops points older than the retention and series left empty.
    pub fn prune(&self, now_ms: TimestampMs) {
        let cutoff = now_ms.saturating_sub(duration_ms(self.limits.retention));
        let mut families = self.families.write();
        for family in families.values_mut() {
            for points in family.values_mut() {
                while points.front().is_some_and(|p| p.timestamp_ms < cutoff) {
                    points.pop_front();
                }
            }
            family.retain(|_, points| !points.is_empty());
        }
        families.retain(|_, f| !f.is_empty());
    }

    /// Calls `f` with every series of `name` whose labels include `matcher`, in label
    /// order. The store is read-locked meanwhile: keep `f` short.
    pub fn for_each_series(
        &self,
        name: &str,
        matcher: &Labels,
        mut f: impl FnMut(&Labels, &VecDeque<Point>),
    ) {
        let families = self.families.read();
        let Some(family) = families.get(name) else {
            return;
        };
        for (labels, points) in family {
            if matcher
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
            {
                f(labels, points);
            }
        }
    }

    /// The newest point of each selected series that is not older than the lookback.
    pub fn latest(
        &self,
        name: &str,
        matcher: &Labels,
        now_ms: TimestampMs,
    ) -> Vec<(Labels, Point)> {
        let oldest = now_ms.saturating_sub(duration_ms(self.limits.lookback));
        let mut out = Vec::new();
        self.for_each_series(name, matcher, |labels, points| {
            if let Some(p) = points.back().filter(|p| p.timestamp_ms >= oldest) {
                out.push((labels.clone(), *p));
            }
        });
        out
    }

    /// The points since `since_ms` (inclusive) of each selected series that has any.
    pub fn window(&self, name: &str, matcher: &Labels, since_ms: TimestampMs) -> Vec<SeriesWindow> {
        let mut out = Vec::new();
        self.for_each_series(name, matcher, |labels, points| {
            let start = points.partition_point(|p| p.timestamp_ms < since_ms);
            if start < points.len() {
                out.push(SeriesWindow {
                    key: SeriesKey {
                        name: name.to_string(),
                        labels: labels.clone(),
                    },
                    points: points.range(start..).copied().collect(),
                });
            }
        });
        out
    }

    /// The distinct values of `label` across the series of `name`, sorted.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        self.for_each_series(name, &Labels::new(), |labels, _| {
            if let Some(v) = labels.get(label) {
                values.push(v.clone());
            }
        });
        values.sort();
        values.dedup();
        values
    }

    /// How many series are stored.
    pub fn series_count(&self) -> usize {
        self.families.read().values().map(|f| f.len()).sum()
    }

    /// Every stored metric name, sorted.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.families.read().keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: i64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp_ms: ts,
        }
    }

    #[test]
    fn keeps_bounds_and_order() {
        let store = SeriesStore::new(StoreLimits {
            retention: Duration::from_secs(10),
            max_points_per_series: 3,
            max_series: 2,
            lookback: Duration::from_secs(5),
        });
        let r = store.ingest((0..5).map(|i| sample("a", &[], i as f64, 1000 * i)));
        assert_eq!(r.accepted, 5);
        let w = store.window("a", &Labels::new(), 0);
        assert_eq!(w[0].points.len(), 3, "oldest points dropped first");
        assert_eq!(w[0].points[0].value, 2.0);

        let r = store.ingest([sample("a", &[], 9.0, 0)]);
        assert_eq!(r.dropped_out_of_order, 1);
        let r = store.ingest([sample("a", &[], 9.0, 4000)]);
        assert_eq!(r.accepted, 1, "same timestamp replaces");
        assert_eq!(store.latest("a", &Labels::new(), 4000)[0].1.value, 9.0);

        store.ingest([sample("b", &[("x", "1")], 1.0, 4000)]);
        let r = store.ingest([sample("b", &[("x", "2")], 1.0, 4000)]);
        assert_eq!(r.dropped_series_limit, 1);
        assert_eq!(store.series_count(), 2);

        assert!(
            store.latest("a", &Labels::new(), 20_000).is_empty(),
            "stale beyond lookback"
        );
        store.prune(20_000);
        assert_eq!(store.series_count(), 0);
    }

    #[test]
    fn matches_label_subsets() {
        let store = SeriesStore::new(StoreLimits::default());
        store.ingest([
            sample("disk", &[("mount", "/"), ("fs", "ext4")], 1.0, 1),
            sample("disk", &[("mount", "/boot"), ("fs", "vfat")], 2.0, 1),
        ]);
        let m: Labels = [("fs".to_string(), "vfat".to_string())].into();
        let hits = store.latest("disk", &m, 1);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].1.value, 2.0);
        assert_eq!(store.label_values("disk", "mount"), vec!["/", "/boot"]);
    }

    #[test]
    fn removes_series() {
        let store = SeriesStore::new(StoreLimits::default());
        store.ingest([
            sample("pushed", &[("job", "a")], 1.0, 1),
            sample("pushed", &[("job", "b")], 2.0, 1),
        ]);
        let gone = SeriesKey {
            name: "pushed".into(),
            labels: [("job".to_string(), "a".to_string())].into(),
        };
        assert_eq!(store.remove_series(std::slice::from_ref(&gone)), 1);
        assert_eq!(store.remove_series(&[gone]), 0, "already gone");
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.label_values("pushed", "job"), vec!["b"]);
    }
}
