//! The in-memory series store: the hot window every rule and analyzer reads.
//!
//! Bounded three ways: points older than the retention are pruned, each series keeps at
//! most `max_points_per_series` points (oldest dropped first), and new series beyond
//! `max_series` are refused and counted. A rejected sample never disturbs stored ones.
//!
//! Layout, chosen for ingest speed (a push of 10,000 samples must cost well under a
//! microsecond per sample):
//!
//! * every series lives in a slot of one `Vec` (freed slots are reused);
//! * a hash index (`hashbrown::HashTable` of slot numbers) finds a series from the hash of
//!   its name and labels; equality is then checked by comparing the incoming (borrowed)
//!   strings with the series' identity kept as one run of bytes, so a write to an existing
//!   series neither allocates nor chases a pointer per stored string;
//! * per metric name, a `BTreeMap` from label set to slot keeps the label order the read
//!   API promises; it is touched only when a series is created or removed;
//! * the series count is kept as it changes, not summed per batch.
//!
//! Writers that already hold a sample's parts (the ingest listeners) can pass borrowed
//! samples ([`StoreSample`]) with a hash computed once by [`SeriesStore::series_hash`];
//! the name and labels are copied only when the sample creates a series.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::model::{
    Labels, MetricName, Point, Sample, SeriesKey, SeriesWindow, TimestampMs, duration_ms,
};

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

/// The identity of a series, readable without owning it.
pub trait SeriesId {
    /// The metric name.
    fn name(&self) -> &str;
    /// The labels as (name, value) pairs, sorted by name and without duplicate names —
    /// exactly what iterating the equivalent [`Labels`] yields. The hash and equality of a
    /// series are computed over this sequence; a sample that breaks this costs a second
    /// lookup by its canonical form whenever it misses.
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone;

    /// An owned copy of the identity (for messages).
    fn to_key(&self) -> SeriesKey {
        SeriesKey {
            name: self.name().into(),
            labels: self
                .label_pairs()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A sample the store can take by reference: identity plus one point.
pub trait StoreSample: SeriesId {
    /// The point to store.
    fn point(&self) -> Point;

    /// The owned name and labels, taken only when the sample creates a series. Owned
    /// samples move theirs (the name's text stays shared with whoever else holds it);
    /// borrowed ones copy.
    fn into_key(self) -> (MetricName, Labels)
    where
        Self: Sized,
    {
        let key = self.to_key();
        (key.name, key.labels)
    }
}

impl SeriesId for SeriesKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl SeriesId for Sample {
    fn name(&self) -> &str {
        &self.name
    }
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl StoreSample for Sample {
    fn point(&self) -> Point {
        Point {
            timestamp_ms: self.timestamp_ms,
            value: self.value,
        }
    }
    fn into_key(self) -> (MetricName, Labels) {
        (self.name, self.labels)
    }
}

impl<T: SeriesId + ?Sized> SeriesId for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        (**self).label_pairs()
    }
}

impl<T: StoreSample + ?Sized> StoreSample for &T {
    fn point(&self) -> Point {
        (**self).point()
    }
}

/// Whether `id`'s label pairs are as [`SeriesId::label_pairs`] requires: sorted by name and
/// unique (otherwise its hash would not match the label set it is stored under).
fn canonical(id: &impl SeriesId) -> bool {
    id.label_pairs()
        .zip(id.label_pairs().skip(1))
        .all(|(a, b)| a.0 < b.0)
}

/// One stored series.
#[derive(Debug)]
struct Series {
    /// Shared with the family's key in [`Inner::families`] and with every
    /// [`SeriesKey`] the reads hand out.
    name: MetricName,
    labels: Labels,
    /// The identity as one run of bytes ([`identity_bytes`]), compared on every write.
    /// Comparing `name` and `labels` instead chases a pointer per string and per map node:
    /// a cache miss each once the store is larger than the cache, which dominated writes
    /// to existing series.
    key: Box<[u8]>,
    /// `SeriesStore::series_hash` of the identity, kept for the index's rehashing.
    hash: u64,
    points: VecDeque<Point>,
}

/// Ends each part of [`identity_bytes`]: 0xFF never occurs in UTF-8, so no name or label
/// can contain it and the encoding is unambiguous.
const PART_END: u8 = 0xFF;

/// The name, then each label's name and value, each followed by [`PART_END`].
fn identity_bytes(name: &str, labels: &Labels) -> Box<[u8]> {
    let len = name.len()
        + 1
        + labels
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
    let mut key = Vec::with_capacity(len);
    let mut push = |part: &str| {
        key.extend_from_slice(part.as_bytes());
        key.push(PART_END);
    };
    push(name);
    for (k, v) in labels.iter() {
        push(k);
        push(v);
    }
    key.into_boxed_slice()
}

/// `a == b` for the short strings of names and labels, without a call to `memcmp` per
/// string (which costs more than the comparison itself at these lengths).
#[inline]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl Series {
    fn is(&self, hash: u64, id: &impl SeriesId) -> bool {
        if self.hash != hash {
            return false;
        }
        let mut rest: &[u8] = &self.key;
        let mut take = |part: &str| match rest.split_at_checked(part.len()) {
            Some((head, [PART_END, tail @ ..])) if short_eq(head, part.as_bytes()) => {
                rest = tail;
                true
            }
            _ => false,
        };
        take(id.name()) && id.label_pairs().all(|(k, v)| take(k) && take(v)) && rest.is_empty()
    }
}

/// Everything behind the lock.
#[derive(Debug, Default)]
struct Inner {
    /// Series by slot number; `None` is a free slot (listed in `free`).
    slots: Vec<Option<Series>>,
    free: Vec<usize>,
    /// Slot numbers, hashed by their series' hash.
    index: HashTable<usize>,
    /// Metric name → label set → slot, for ordered reads.
    /// The key is the one [`MetricName`] every series of the family shares.
    families: HashMap<MetricName, BTreeMap<Labels, usize>>,
    /// Live series.
    len: usize,
}

impl Inner {
    fn find(&self, hash: u64, id: &impl SeriesId) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.is(hash, id))
            })
            .copied()
    }

    fn create(&mut self, hash: u64, name: MetricName, labels: Labels) -> usize {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        // One ordered insert with the slot number known (a label-set comparison per tree
        // level). Name and label set are shared, not copied: a new family keeps the
        // sample's name, and a series of a known family takes the family's, so all of a
        // family's series hold one allocation whatever their samples arrived with.
        let name = match self.families.entry(name) {
            Entry::Occupied(family) => {
                let name = family.key().clone();
                family.into_mut().insert(labels.clone(), slot);
                name
            }
            Entry::Vacant(family) => {
                let name = family.key().clone();
                family.insert(BTreeMap::from([(labels.clone(), slot)]));
                name
            }
        };
        self.slots[slot] = Some(Series {
            key: identity_bytes(&name, &labels),
            name,
            labels,
            hash,
            points: VecDeque::new(),
        });
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&i| {
            slots.get(i).and_then(Option::as_ref).map_or(0, |s| s.hash)
        });
        self.len += 1;
        slot
    }

    fn remove_slot(&mut self, slot: usize) -> bool {
        let Some(series) = self.slots.get_mut(slot).and_then(Option::take) else {
            return false;
        };
        if let Ok(entry) = self.index.find_entry(series.hash, |&i| i == slot) {
            entry.remove();
        }
        if let Some(family) = self.families.get_mut(&series.name) {
            family.remove(&series.labels);
            if family.is_empty() {
                self.families.remove(&series.name);
            }
        }
        self.free.push(slot);
        self.len -= 1;
        true
    }
}

/// Thread-safe in-memory store of recent samples.
#[derive(Debug)]
pub struct SeriesStore {
    inner: RwLock<Inner>,
    /// Keyed randomly per store, so label values sent over the network cannot be chosen to
    /// collide in the index.
    hasher: RandomState,
    limits: StoreLimits,
}

impl SeriesStore {
    /// An empty store with these bounds.
    pub fn new(limits: StoreLimits) -> SeriesStore {
        SeriesStore {
            inner: RwLock::new(Inner::default()),
            hasher: RandomState::new(),
            limits,
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The hash this store files a series under ([`SeriesStore::ingest_hashed`] needs it).
    /// Stable for the store's lifetime; differs between stores.
    pub fn series_hash(&self, id: &impl SeriesId) -> u64 {
        let mut h = self.hasher.build_hasher();
        id.name().hash(&mut h);
        for (k, v) in id.label_pairs() {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    /// [`series_hash`](SeriesStore::series_hash) together with a second 64-bit value from
    /// the same pass (the hasher's state continued by one more byte). The pair is a 128-bit
    /// fingerprint of the identity: two different series share it with a probability near
    /// 2^-128, and as the key is random per store a sender cannot aim for a collision.
    pub fn series_fingerprint(&self, id: &impl SeriesId) -> (u64, u64) {
        let mut h = self.hasher.build_hasher();
        id.name().hash(&mut h);
        for (k, v) in id.label_pairs() {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        let first = h.finish();
        h.write_u8(0x80);
        (first, h.finish())
    }

    /// Stores a batch. A sample with the same timestamp as its series' newest point
    /// replaces it; an older one is dropped.
    pub fn ingest(&self, samples: impl IntoIterator<Item = Sample>) -> IngestReport {
        // Hash before taking the lock: writers on other threads are not held up by it.
        let batch: Vec<(u64, Sample)> = samples
            .into_iter()
            .map(|s| (self.series_hash(&s), s))
            .collect();
        self.ingest_hashed(batch)
    }

    /// Stores a batch of (hash, sample) pairs, under one lock acquisition, as
    /// [`SeriesStore::ingest`] does. Each hash must be this store's
    /// [`series_hash`](SeriesStore::series_hash) of its sample.
    pub fn ingest_hashed<S: StoreSample>(
        &self,
        batch: impl IntoIterator<Item = (u64, S)>,
    ) -> IngestReport {
        let mut report = IngestReport::default();
        let mut inner = self.inner.write();
        'samples: for (hash, sample) in batch {
            debug_assert_eq!(hash, self.series_hash(&sample), "hash from another store");
            let point = sample.point();
            let slot = 'slot: {
                if let Some(slot) = inner.find(hash, &sample) {
                    break 'slot slot;
                }
                let (hash, name, labels) = if canonical(&sample) {
                    if inner.len >= self.limits.max_series {
                        report.dropped_series_limit += 1;
                        continue 'samples;
                    }
                    let (name, labels) = sample.into_key();
                    (hash, name, labels)
                } else {
                    // A writer broke the sorted-and-unique contract: its hash is not the
                    // one of the label set the series would be stored under, so the series
                    // would be unreachable and every later write would add another. Look
                    // it up again by its canonical form (rare: only on a miss).
                    let (name, labels) = sample.into_key();
                    let key = SeriesKey { name, labels };
                    let hash = self.series_hash(&key);
                    if let Some(slot) = inner.find(hash, &key) {
                        break 'slot slot;
                    }
                    if inner.len >= self.limits.max_series {
                        report.dropped_series_limit += 1;
                        continue 'samples;
                    }
                    (hash, key.name, key.labels)
                };
                inner.create(hash, name, labels)
            };
            let Some(series) = inner.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let points = &mut series.points;
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
        report
    }

    /// Removes these series with all their points (a pushed group deleted or expired);
    /// returns how many existed.
    pub fn remove_series(&self, keys: &[SeriesKey]) -> usize {
        if keys.is_empty() {
            return 0;
        }
        self.remove_hashed(keys.iter().map(|k| (self.series_hash(k), k)))
    }

    /// Removes series given as (hash, identity) pairs, hashes as for
    /// [`SeriesStore::ingest_hashed`]; returns how many existed.
    pub fn remove_hashed<K: SeriesId>(&self, keys: impl IntoIterator<Item = (u64, K)>) -> usize {
        let mut inner = self.inner.write();
        let mut removed = 0;
        for (hash, key) in keys {
            if let Some(slot) = inner.find(hash, &key) {
                removed += usize::from(inner.remove_slot(slot));
            }
        }
        removed
    }

    /// Drops points older than the retention and series left empty.
    pub fn prune(&self, now_ms: TimestampMs) {
        let cutoff = now_ms.saturating_sub(duration_ms(self.limits.retention));
        let mut inner = self.inner.write();
        let mut emptied = Vec::new();
        for (slot, series) in inner.slots.iter_mut().enumerate() {
            let Some(series) = series else { continue };
            let points = &mut series.points;
            while points.front().is_some_and(|p| p.timestamp_ms < cutoff) {
                points.pop_front();
            }
            if points.is_empty() {
                emptied.push(slot);
            }
        }
        for slot in emptied {
            inner.remove_slot(slot);
        }
    }

    /// Calls `f` with every series of `name` whose labels include `matcher`, in label
    /// order. The store is read-locked meanwhile: keep `f` short.
    pub fn for_each_series(
        &self,
        name: &str,
        matcher: &Labels,
        mut f: impl FnMut(&Labels, &VecDeque<Point>),
    ) {
        self.for_each_in_family(name, matcher, |_, labels, points| f(labels, points));
    }

    /// [`for_each_series`](SeriesStore::for_each_series), also passing the stored name,
    /// so that what a read hands out shares it instead of copying `name`.
    fn for_each_in_family(
        &self,
        name: &str,
        matcher: &Labels,
        mut f: impl FnMut(&MetricName, &Labels, &VecDeque<Point>),
    ) {
        let inner = self.inner.read();
        let Some((name, family)) = inner.families.get_key_value(name) else {
            return;
        };
        for (labels, &slot) in family {
            if matcher
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
                && let Some(series) = inner.slots.get(slot).and_then(Option::as_ref)
            {
                f(name, labels, &series.points);
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
        self.for_each_in_family(name, matcher, |name, labels, points| {
            let start = points.partition_point(|p| p.timestamp_ms < since_ms);
            if start < points.len() {
                out.push(SeriesWindow {
                    key: SeriesKey {
                        name: name.clone(),
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
        self.inner.read().len
    }

    /// Every stored metric name, sorted (shared with the store, not copied).
    pub fn metric_names(&self) -> Vec<MetricName> {
        let mut names: Vec<MetricName> = self.inner.read().families.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: i64) -> Sample {
        Sample::new(name, labels, value, ts)
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
    fn unsorted_labels_still_find_their_one_series() {
        let store = SeriesStore::new(StoreLimits::default());
        let write =
            |sample: Borrowed<'_>| store.ingest_hashed([(store.series_hash(&sample), sample)]);
        assert_eq!(
            write(Borrowed("m", &[("b", "2"), ("a", "1")], 1.0, 1)).accepted,
            1
        );
        assert_eq!(
            write(Borrowed("m", &[("b", "2"), ("a", "1")], 1.0, 2)).accepted,
            1
        );
        assert_eq!(
            write(Borrowed("m", &[("a", "1"), ("b", "2")], 1.0, 3)).accepted,
            1
        );
        assert_eq!(store.series_count(), 1, "one series, whatever the order");
        let w = store.window("m", &Labels::new(), 0);
        assert_eq!(w[0].points.len(), 3);
    }

    #[test]
    fn identity_check_tells_apart_what_concatenation_would_not() {
        let key = |name: &str, labels: &[(&str, &str)]| SeriesKey {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let stored = key("ab", &[("c", "d")]);
        let series = Series {
            key: identity_bytes(&stored.name, &stored.labels),
            name: stored.name.clone(),
            labels: stored.labels.clone(),
            hash: 7,
            points: VecDeque::new(),
        };
        // The hash is forced equal: only the byte comparison decides.
        assert!(series.is(7, &stored));
        assert!(!series.is(8, &stored), "another hash is another series");
        for other in [
            key("a", &[("bc", "d")]),
            key("abc", &[("", "d")]),
            key("ab", &[("cd", "")]),
            key("ab", &[("c", "d"), ("e", "f")]),
            key("ab", &[]),
            key("ab", &[("c", "dd")]),
            key("ab", &[("c", "")]),
        ] {
            assert!(!series.is(7, &other), "{other} is not {stored}");
        }
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
    fn a_family_shares_one_name_with_what_reads_hand_out() {
        let store = SeriesStore::new(StoreLimits::default());
        let first = sample("shared", &[("x", "1")], 1.0, 1);
        let name = first.name.clone();
        // The second series arrives with its own allocation of the same text.
        let second = sample("shared", &[("x", "2")], 2.0, 1);
        assert!(!second.name.ptr_eq(&name));
        store.ingest([first, second]);
        let windows = store.window("shared", &Labels::new(), 0);
        assert_eq!(windows.len(), 2);
        for w in &windows {
            assert!(
                w.key.name.ptr_eq(&name),
                "{} holds the family's name",
                w.key
            );
        }
        assert!(store.metric_names()[0].ptr_eq(&name));
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

    /// A borrowed sample, as the ingest listeners pass them; its label pairs come in the
    /// order given (maybe unsorted).
    struct Borrowed<'a>(&'a str, &'a [(&'a str, &'a str)], f64, i64);

    impl SeriesId for Borrowed<'_> {
        fn name(&self) -> &str {
            self.0
        }
        fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
            self.1.iter().copied()
        }
    }

    impl StoreSample for Borrowed<'_> {
        fn point(&self) -> Point {
            Point {
                timestamp_ms: self.3,
                value: self.2,
            }
        }
    }

    #[test]
    fn series_limit_counts_live_series_and_frees_slots() {
        let store = SeriesStore::new(StoreLimits {
            max_series: 3,
            ..StoreLimits::default()
        });
        let r = store.ingest((0..5).map(|i| sample("m", &[("i", &i.to_string())], 1.0, 1)));
        assert_eq!((r.accepted, r.dropped_series_limit), (3, 2));
        assert_eq!(store.series_count(), 3);
        // Existing series still take points when the store is full.
        let r = store.ingest([sample("m", &[("i", "0")], 2.0, 2)]);
        assert_eq!((r.accepted, r.dropped_series_limit), (1, 0));
        let r = store.ingest([sample("other", &[], 1.0, 2)]);
        assert_eq!(r.dropped_series_limit, 1);
        assert_eq!(
            store.metric_names(),
            vec!["m"],
            "a refused series leaves no family"
        );

        let gone = SeriesKey {
            name: "m".into(),
            labels: [("i".to_string(), "1".to_string())].into(),
        };
        assert_eq!(store.remove_series(&[gone]), 1);
        assert_eq!(store.series_count(), 2);
        // The freed slot takes a new series; the others are untouched.
        let r = store.ingest([sample("other", &[], 7.0, 3)]);
        assert_eq!(r.accepted, 1);
        assert_eq!(store.series_count(), 3);
        assert_eq!(
            store.inner.read().slots.len(),
            3,
            "no slot beyond the three"
        );
        assert_eq!(store.latest("other", &Labels::new(), 3)[0].1.value, 7.0);
        assert_eq!(store.label_values("m", "i"), vec!["0", "2"]);
        assert_eq!(store.window("m", &Labels::new(), 0)[0].points.len(), 2);
    }

    #[test]
    fn prune_removes_emptied_series_from_index_and_families() {
        let store = SeriesStore::new(StoreLimits {
            retention: Duration::from_secs(10),
            max_series: 2,
            ..StoreLimits::default()
        });
        store.ingest([
            sample("old", &[("a", "1")], 1.0, 1_000),
            sample("new", &[("a", "1")], 1.0, 15_000),
        ]);
        store.prune(20_000);
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.metric_names(), vec!["new"]);
        assert!(store.window("old", &Labels::new(), 0).is_empty());
        // The pruned series can come back (and counts against the limit again).
        let r = store.ingest([
            sample("old", &[("a", "1")], 2.0, 21_000),
            sample("third", &[], 1.0, 21_000),
        ]);
        assert_eq!((r.accepted, r.dropped_series_limit), (1, 1));
        assert_eq!(store.latest("old", &Labels::new(), 21_000)[0].1.value, 2.0);
    }

    #[test]
    fn borrowed_and_owned_samples_find_the_same_series() {
        let store = SeriesStore::new(StoreLimits::default());
        store.ingest([sample("cpu", &[("core", "0"), ("host", "a")], 1.0, 1)]);
        let b = Borrowed("cpu", &[("core", "0"), ("host", "a")], 2.0, 2);
        let r = store.ingest_hashed([(store.series_hash(&b), &b)]);
        assert_eq!(r.accepted, 1);
        assert_eq!(store.series_count(), 1, "same identity, same series");
        // Same labels under another name, and a subset of the labels, are other series.
        let c = Borrowed("cpu2", &[("core", "0"), ("host", "a")], 1.0, 2);
        let d = Borrowed("cpu", &[("core", "0")], 1.0, 2);
        store.ingest_hashed([(store.series_hash(&c), &c), (store.series_hash(&d), &d)]);
        assert_eq!(store.series_count(), 3);
        let w = store.window("cpu", &Labels::new(), 0);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].points.len(), 1, "{{core=0}} sorts first");
        assert_eq!(w[1].points.len(), 2, "two writes, one series");
        assert_eq!(
            store.remove_hashed([(store.series_hash(&b), &b)]),
            1,
            "removable by a borrowed key"
        );
        assert_eq!(store.series_count(), 2);
    }

    #[test]
    fn fingerprint_extends_the_index_hash() {
        let store = SeriesStore::new(StoreLimits::default());
        let a = Borrowed("m", &[("k", "v")], 1.0, 1);
        let b = Borrowed("m", &[("k", "w")], 1.0, 1);
        let (ha, ca) = store.series_fingerprint(&a);
        assert_eq!(ha, store.series_hash(&a), "first half is the index hash");
        assert_ne!(ha, ca);
        assert_eq!(store.series_fingerprint(&a), (ha, ca), "stable");
        assert_ne!(store.series_fingerprint(&b), (ha, ca));
    }

    #[test]
    fn many_series_read_back_in_label_order() {
        let store = SeriesStore::new(StoreLimits::default());
        // Written in reverse; reads must come back sorted by labels.
        store.ingest(
            (0..2000)
                .rev()
                .map(|i| sample("m", &[("k", &format!("{i:05}"))], i as f64, 1)),
        );
        store.ingest((0..2000).map(|i| sample("m", &[("k", &format!("{i:05}"))], i as f64, 2)));
        assert_eq!(store.series_count(), 2000);
        let mut seen = Vec::new();
        store.for_each_series("m", &Labels::new(), |labels, points| {
            assert_eq!(points.len(), 2);
            seen.push(labels["k"].clone());
        });
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 2000);
    }
}
