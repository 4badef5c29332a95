//! The series store: the in-memory hot window every rule and analyzer reads, the
//! analyzer events rules react to, and behind them the durable store ([`disk`]: history in
//! tiers, alert state and the notification outbox in one SQLite file), which the store
//! feeds every accepted sample and which its reads reach beyond the in-memory window
//! ([`SeriesRead::range`]).
//!
//! Used only through its API:
//!
//! * **writers** ([`StoreWriter`], from [`SeriesStore::writer`]): one per source (a
//!   collector, an analyzer, a push listener), holding the source's id; plain ingest,
//!   all-or-nothing ingest of a request, atomic replacement (the Pushgateway), removal, and
//!   [`StoreWriter::record_events`] for an analyzer's events;
//! * **reads** ([`SeriesRead`]): latest values, windows of points, label values, events;
//!   what rules' host functions and the analyzer tasks take;
//! * **maintenance** ([`SeriesStore::maintain`]): pruning in the store's own task.
//!
//! Bounded four ways: points older than the retention are pruned, each series keeps at
//! most `max_points_per_series` points (oldest dropped first), and new series beyond
//! `max_series` or beyond `max_series_bytes` (what their names and labels cost in memory,
//! [`series_cost`]) are refused and counted. Every series is accounted to the **source**
//! that created it, and each source has its own series and byte bounds, optionally within
//! a [`SourceGroup`]'s (the push listeners share one, so pushes alone cannot fill the
//! store). A rejected sample never disturbs stored ones. Events are kept per source, at
//! most `max_events_per_source` (the oldest go first, counted and logged once) and no
//! longer than the retention.
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
//!   API promises, and postings (label pair → slots, [`postings`]) find the series a
//!   matcher selects without testing every series of the name; both are touched only
//!   when a series is created or removed;
//! * the series count is kept as it changes, not summed per batch.
//!
//! Writers that already hold a sample's parts (the ingest listeners) pass borrowed samples
//! ([`StoreSample`]); the store hashes them before taking its lock, and copies the name and
//! labels only when a sample creates a series. A writer that writes the same series again
//! and again (the Pushgateway's groups) keeps each series' [`Fingerprint`], which the store
//! computed, and hands it back through [`SeriesId::fingerprint`] so it is not hashed again.
//! The hash itself never leaves this crate.

pub mod disk;
mod events;
mod postings;
mod read;
mod writer;

pub use events::EventReport;
pub use read::{PointRun, SeriesRead};
pub use writer::{SourceGroup, StoreWriter};

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::RwLock;

use telltale_model::self_metrics;
use telltale_model::{
    Event, Labels, MetricName, Point, Sample, SeriesKey, SeriesWindow, TimestampMs, duration_ms,
    now_ms, short_eq,
};

use events::EventLog;
use postings::Postings;

/// How far back `latest` looks: a series silent for longer is treated as gone, as
/// Prometheus does with its lookback delta.
pub(crate) const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);

/// The store's bounds.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Points older than this (relative to the newest prune time) are dropped.
    pub retention: Duration,
    /// Points kept per series.
    pub max_points_per_series: usize,
    /// Series kept in all.
    pub max_series: usize,
    /// What all series' identities may cost in memory together ([`series_cost`]).
    pub max_series_bytes: usize,
    /// How old the newest point of a series may be for `latest` to return it.
    pub lookback: Duration,
    /// Analyzer events kept per source; beyond it the oldest are dropped (and counted).
    pub max_events_per_source: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            retention: Duration::from_secs(3600),
            max_points_per_series: 4096,
            max_series: 100_000,
            max_series_bytes: 256 << 20,
            lookback: DEFAULT_LOOKBACK,
            max_events_per_source: 1000,
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
    /// Refused: the new series would have taken the store beyond `max_series_bytes`.
    pub dropped_bytes_limit: usize,
    /// Refused: the new series would have taken their source (or its group) beyond its
    /// series or byte bound.
    pub dropped_source_limit: usize,
    /// Refused: older than the series' newest point.
    pub dropped_out_of_order: usize,
}

impl IngestReport {
    fn count_refusal(&mut self, r: &Refusal) {
        match r.bound {
            Bound::StoreSeries => self.dropped_series_limit += 1,
            Bound::StoreBytes => self.dropped_bytes_limit += 1,
            Bound::SourceSeries | Bound::SourceBytes => self.dropped_source_limit += 1,
        }
    }

    /// Samples refused for want of room (any bound), not for being out of order.
    pub fn dropped_for_room(&self) -> usize {
        self.dropped_series_limit + self.dropped_bytes_limit + self.dropped_source_limit
    }
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

    /// The [`Fingerprint`] the store gave this identity ([`StoreWriter::fingerprint`]),
    /// when the writer kept it: the store then uses it instead of hashing the strings
    /// again. It must be the fingerprint of exactly this identity, from the same store.
    fn fingerprint(&self) -> Option<Fingerprint> {
        None
    }

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
    fn fingerprint(&self) -> Option<Fingerprint> {
        (**self).fingerprint()
    }
}

/// A series' identity as one store hashed it: 128 bits (the index hash and a second value
/// from the same pass), so two different series share one with a probability near
/// 2^-128, and as the key is random per store a sender cannot aim for a collision. Only
/// the store makes them ([`StoreWriter::fingerprint`]); a writer keeps them to skip
/// hashing a series it writes again, and may compare them instead of the strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The index hash.
    hash: u64,
    /// The hasher's state continued by one more byte.
    check: u64,
}

impl Fingerprint {
    /// 64 well-mixed bits of it, for the writer's own hash tables.
    pub fn digest(self) -> u64 {
        self.hash
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
    /// The source that created it (an index into [`Inner::sources`]).
    source: u32,
    /// Its [`series_cost`], given back to the source when it is removed.
    cost: usize,
    /// Never reused within the store's life (slots are): how the durable store's
    /// persister tells series apart in [`disk::Disk`]'s pending samples.
    uid: u64,
}

/// What one series' identity costs the store in memory, in bytes: its name and label text
/// twice (the `Labels` the reads share, and the identity run compared on writes), plus the
/// bookkeeping of a series (slot, index and family entries, point buffer header) and of
/// each label (two string headers and a map entry). An estimate, measured against the
/// allocator on a 64-bit build, that grows with the text as the real cost does.
pub fn series_cost(id: &impl SeriesId) -> usize {
    const SERIES_OVERHEAD: usize = 256;
    const LABEL_OVERHEAD: usize = 64;
    let text = id.name().len()
        + id.label_pairs()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    SERIES_OVERHEAD + 2 * text + LABEL_OVERHEAD * id.label_pairs().count()
}

/// One writer's series (or a group's), as the store accounts them: an index into
/// [`Inner::sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceId(u32);

impl SourceId {
    /// Writers that did not name themselves: bounded only by the store's totals.
    pub const UNATTRIBUTED: SourceId = SourceId(0);
}

/// Bounds on one source's (or group's) series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Series it may keep alive.
    pub max_series: usize,
    /// What they may cost together ([`series_cost`]).
    pub max_bytes: usize,
}

impl SourceLimits {
    /// No bounds beyond the store's own.
    pub const UNBOUNDED: SourceLimits = SourceLimits {
        max_series: usize::MAX,
        max_bytes: usize::MAX,
    };
}

/// A source's bounds and what it holds now.
#[derive(Debug)]
struct SourceUsage {
    name: String,
    limits: SourceLimits,
    /// The group whose bounds also apply (the push listeners share one).
    group: Option<u32>,
    series: usize,
    bytes: usize,
    /// The events it recorded (an analyzer's).
    events: EventLog,
}

/// Why new series were refused (all of a request's, or one sample's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Which bound.
    pub bound: Bound,
    /// The source (or group) whose bound it is; empty for the store's.
    pub source: String,
    /// What it holds now.
    pub have: usize,
    /// Its bound.
    pub max: usize,
    /// What the refused write would have added.
    pub adding: usize,
    /// The first series the refused write would have created, when known.
    pub first_new: Option<SeriesKey>,
}

/// The bound a [`Refusal`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The store's `max_series`.
    StoreSeries,
    /// The store's `max_series_bytes`.
    StoreBytes,
    /// A source's or group's series bound.
    SourceSeries,
    /// A source's or group's byte bound.
    SourceBytes,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (unit, whose) = match self.bound {
            Bound::StoreSeries => ("series", "the store".to_string()),
            Bound::StoreBytes => ("bytes of series", "the store".to_string()),
            Bound::SourceSeries => ("series", format!("source `{}`", self.source)),
            Bound::SourceBytes => ("bytes of series", format!("source `{}`", self.source)),
        };
        write!(
            f,
            "{whose} holds {} {unit} of at most {}; this would add {}",
            self.have, self.max, self.adding
        )?;
        match &self.first_new {
            Some(key) => write!(f, " (first new series: {key})"),
            None => Ok(()),
        }
    }
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

    /// Whether its labels include every pair of `matcher`, read from the identity bytes:
    /// one contiguous run, where `labels` costs a pointer per map node and per string (a
    /// cache miss each in a large store; a read by labels tests every candidate).
    fn selected_by(&self, matcher: &Labels) -> bool {
        // Name, then label names and values alternating, all in label-name order, as the
        // matcher's pairs are: one merge walk.
        let mut parts = self.key.split(|&b| b == PART_END).skip(1);
        'pairs: for (k, v) in matcher.iter() {
            while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                match name.cmp(k.as_bytes()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal if value == v.as_bytes() => continue 'pairs,
                    _ => return false,
                }
            }
            return false;
        }
        true
    }
}

/// The series of one metric name.
#[derive(Debug, Default)]
struct Family {
    /// Label set → slot, for reads in label order.
    series: BTreeMap<Labels, usize>,
    /// Label pair → slots ([`Inner::pair_hash`]), for reads by matcher.
    postings: Postings,
}

impl Family {
    /// Files the series in `slot` under its labels.
    fn insert(&mut self, pairs: &RandomState, labels: Labels, slot: usize) {
        for (k, v) in labels.iter() {
            self.postings.insert(pair_hash(pairs, k, v), slot);
        }
        self.series.insert(labels, slot);
    }

    /// Takes the series in `slot` off the family.
    fn remove(&mut self, pairs: &RandomState, labels: &Labels, slot: usize) {
        for (k, v) in labels.iter() {
            self.postings.remove(pair_hash(pairs, k, v), slot);
        }
        self.series.remove(labels);
    }

    /// The slots a read by `matcher` must test, when fewer than the whole family: the
    /// shortest postings list of the matcher's pairs (every series it selects carries each
    /// of them). `Some(&[])` when a pair is carried by no series, so nothing matches;
    /// `None` when the matcher is empty or its shortest list holds more than half the
    /// family, where walking the family in label order costs less than sorting the hits.
    fn candidates(&self, pairs: &RandomState, matcher: &Labels) -> Option<&[usize]> {
        let mut best: Option<&[usize]> = None;
        for (k, v) in matcher.iter() {
            let list = self.postings.get(pair_hash(pairs, k, v));
            if best.is_none_or(|b| list.len() < b.len()) {
                best = Some(list);
                if list.is_empty() {
                    break;
                }
            }
        }
        best.filter(|b| b.len() <= self.series.len() / 2)
    }
}

/// The hash postings file the label pair `name="value"` under.
fn pair_hash(pairs: &RandomState, name: &str, value: &str) -> u64 {
    let mut h = pairs.build_hasher();
    name.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// Everything behind the lock.
#[derive(Debug)]
struct Inner {
    /// Series by slot number; `None` is a free slot (listed in `free`).
    slots: Vec<Option<Series>>,
    free: Vec<usize>,
    /// Slot numbers, hashed by their series' hash.
    index: HashTable<usize>,
    /// Metric name → its series, for reads. The key is the one [`MetricName`] every
    /// series of the family shares.
    families: HashMap<MetricName, Family>,
    /// Keys [`pair_hash`]: random per store, so label values sent over the network cannot
    /// be chosen to pile up in one postings list.
    pairs: RandomState,
    /// Live series.
    len: usize,
    /// What all live series cost ([`series_cost`]).
    bytes: usize,
    /// Sources by [`SourceId`]; index 0 is [`SourceId::UNATTRIBUTED`].
    sources: Vec<SourceUsage>,
    /// The next [`Series::uid`].
    next_uid: u64,
    /// What the persister has not taken yet; `None` without a durable store.
    pending: Option<disk::persist::Pending>,
    /// Samples not queued for disk because the queue was full.
    pending_dropped: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            families: HashMap::new(),
            pairs: RandomState::new(),
            len: 0,
            bytes: 0,
            sources: vec![SourceUsage {
                name: "unattributed".to_string(),
                limits: SourceLimits::UNBOUNDED,
                group: None,
                series: 0,
                bytes: 0,
                events: EventLog::default(),
            }],
            next_uid: 0,
            pending: None,
            pending_dropped: 0,
        }
    }
}

impl Inner {
    /// Whether `series` new series costing `bytes` may be created for `source`.
    fn admit(
        &self,
        limits: &StoreLimits,
        source: u32,
        series: usize,
        bytes: usize,
    ) -> Result<(), Refusal> {
        if series == 0 {
            return Ok(());
        }
        let mut next = Some(source);
        while let Some(i) = next {
            let Some(u) = self.sources.get(i as usize) else {
                break;
            };
            let over = |have: usize, max: usize, adding: usize, bound| {
                (have.saturating_add(adding) > max).then(|| Refusal {
                    bound,
                    source: u.name.clone(),
                    have,
                    max,
                    adding,
                    first_new: None,
                })
            };
            if let Some(r) = over(u.series, u.limits.max_series, series, Bound::SourceSeries)
                .or_else(|| over(u.bytes, u.limits.max_bytes, bytes, Bound::SourceBytes))
            {
                return Err(r);
            }
            next = u.group;
        }
        let over = |have: usize, max: usize, adding: usize, bound| {
            (have.saturating_add(adding) > max).then_some(Refusal {
                bound,
                source: String::new(),
                have,
                max,
                adding,
                first_new: None,
            })
        };
        match over(self.len, limits.max_series, series, Bound::StoreSeries).or_else(|| {
            over(
                self.bytes,
                limits.max_series_bytes,
                bytes,
                Bound::StoreBytes,
            )
        }) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Adds `sign`·(1 series, `cost` bytes) to `source`, its group and the totals.
    fn account(&mut self, source: u32, cost: usize, add: bool) {
        let apply = |n: &mut usize, d: usize| {
            *n = if add { *n + d } else { n.saturating_sub(d) };
        };
        apply(&mut self.len, 1);
        apply(&mut self.bytes, cost);
        let mut next = Some(source);
        while let Some(i) = next {
            let Some(u) = self.sources.get_mut(i as usize) else {
                break;
            };
            apply(&mut u.series, 1);
            apply(&mut u.bytes, cost);
            next = u.group;
        }
    }

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

    fn create(
        &mut self,
        hash: u64,
        name: MetricName,
        labels: Labels,
        source: u32,
        cost: usize,
    ) -> usize {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        // One ordered insert with the slot number known (a label-set comparison per tree
        // level), and one postings insert per label. Name and label set are shared, not
        // copied: a new family keeps the sample's name, and a series of a known family
        // takes the family's, so all of a family's series hold one allocation whatever
        // their samples arrived with.
        let (name, family) = match self.families.entry(name) {
            Entry::Occupied(family) => (family.key().clone(), family.into_mut()),
            Entry::Vacant(family) => (family.key().clone(), family.insert(Family::default())),
        };
        family.insert(&self.pairs, labels.clone(), slot);
        let uid = self.next_uid;
        self.next_uid += 1;
        if let Some(p) = &mut self.pending {
            p.new.push((uid, name.clone(), labels.clone()));
        }
        self.slots[slot] = Some(Series {
            uid,
            key: identity_bytes(&name, &labels),
            name,
            labels,
            hash,
            points: VecDeque::new(),
            source,
            cost,
        });
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&i| {
            slots.get(i).and_then(Option::as_ref).map_or(0, |s| s.hash)
        });
        self.account(source, cost, true);
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
            family.remove(&self.pairs, &series.labels, slot);
            if family.series.is_empty() {
                self.families.remove(&series.name);
            }
        }
        self.free.push(slot);
        self.account(series.source, series.cost, false);
        if let Some(p) = &mut self.pending {
            p.removed.push(series.uid);
        }
        true
    }
}

/// Thread-safe in-memory store of recent samples and analyzer events.
#[derive(Debug)]
pub struct SeriesStore {
    inner: RwLock<Inner>,
    /// The durable store, once attached ([`disk::Disk::start`]).
    disk: std::sync::OnceLock<Arc<disk::Disk>>,
    /// When the store was made: the in-memory window holds nothing older.
    started_ms: TimestampMs,
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
            disk: std::sync::OnceLock::new(),
            started_ms: now_ms(),
            hasher: RandomState::new(),
            limits,
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The hash this store files a series under. Stable for the store's lifetime; differs
    /// between stores.
    fn series_hash(&self, id: &impl SeriesId) -> u64 {
        let mut h = self.hasher.build_hasher();
        id.name().hash(&mut h);
        for (k, v) in id.label_pairs() {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    /// [`series_hash`](SeriesStore::series_hash) together with a second 64-bit value from
    /// the same pass (the hasher's state continued by one more byte).
    fn fingerprint_of(&self, id: &impl SeriesId) -> Fingerprint {
        let mut h = self.hasher.build_hasher();
        id.name().hash(&mut h);
        for (k, v) in id.label_pairs() {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        let hash = h.finish();
        h.write_u8(0x80);
        Fingerprint {
            hash,
            check: h.finish(),
        }
    }

    /// The index hash of `id`: the one its writer kept, or computed now.
    fn hash_of(&self, id: &impl SeriesId) -> u64 {
        match id.fingerprint() {
            Some(f) => f.hash,
            None => self.series_hash(id),
        }
    }

    /// Stores a batch of the engine's own samples (its self-metrics), accounted to no
    /// source and bounded only by the store's totals. A sample with the same timestamp as
    /// its series' newest point replaces it; an older one is dropped. Everything else
    /// writes through a [`StoreWriter`].
    pub fn ingest(&self, samples: impl IntoIterator<Item = Sample>) -> IngestReport {
        self.ingest_from(SourceId::UNATTRIBUTED, samples)
    }

    /// [`SeriesStore::ingest`] for `source`: new series count against its bounds, and
    /// samples that would create a series beyond a bound are refused one by one and
    /// counted; the others are stored.
    fn ingest_from<S: StoreSample>(
        &self,
        source: SourceId,
        samples: impl IntoIterator<Item = S>,
    ) -> IngestReport {
        // Hash before taking the lock: writers on other threads are not held up by it.
        let batch: Vec<(u64, S)> = samples.into_iter().map(|s| (self.hash_of(&s), s)).collect();
        let mut inner = self.inner.write();
        self.write_batch(&mut inner, source, batch)
    }

    /// The write of [`SeriesStore::ingest_from`], under a lock the caller holds. Each hash
    /// is this store's [`series_hash`](SeriesStore::series_hash) of its sample.
    fn write_batch<S: StoreSample>(
        &self,
        inner: &mut Inner,
        source: SourceId,
        batch: impl IntoIterator<Item = (u64, S)>,
    ) -> IngestReport {
        let mut report = IngestReport::default();
        'samples: for (hash, sample) in batch {
            debug_assert_eq!(hash, self.series_hash(&sample), "hash from another store");
            let point = sample.point();
            let slot = 'slot: {
                if let Some(slot) = inner.find(hash, &sample) {
                    break 'slot slot;
                }
                let (hash, name, labels, cost) = if canonical(&sample) {
                    let cost = series_cost(&sample);
                    if let Err(r) = inner.admit(&self.limits, source.0, 1, cost) {
                        report.count_refusal(&r);
                        continue 'samples;
                    }
                    let (name, labels) = sample.into_key();
                    (hash, name, labels, cost)
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
                    let cost = series_cost(&key);
                    if let Err(r) = inner.admit(&self.limits, source.0, 1, cost) {
                        report.count_refusal(&r);
                        continue 'samples;
                    }
                    (hash, key.name, key.labels, cost)
                };
                inner.create(hash, name, labels, source.0, cost)
            };
            let Some(series) = inner.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let uid = series.uid;
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
            if let Some(p) = &mut inner.pending {
                if p.points.len() < disk::persist::Pending::MAX_POINTS {
                    p.points.push((uid, point));
                } else {
                    inner.pending_dropped += 1;
                }
            }
        }
        report
    }

    /// Stores every sample of a request for `source`, or none: if the series it would
    /// create do not fit the source's, its group's or the store's bounds, nothing is
    /// stored and the refusal says which bound.
    fn try_ingest_from<S: StoreSample>(
        &self,
        source: SourceId,
        samples: &[S],
    ) -> Result<IngestReport, Refusal> {
        // Hashed outside the lock, once (the write below walks the samples twice).
        let hashes: Vec<u64> = samples.iter().map(|s| self.hash_of(s)).collect();
        self.replace_hashed::<SeriesKey, _, _>(source, Vec::new(), || {
            hashes.iter().copied().zip(samples)
        })
    }

    /// [`StoreWriter::replace`] for `source`.
    fn replace_from<K: SeriesId, S: StoreSample, I: Iterator<Item = S>>(
        &self,
        source: SourceId,
        remove: impl IntoIterator<Item = K>,
        add: impl Fn() -> I,
    ) -> Result<IngestReport, Refusal> {
        let remove: Vec<(u64, K)> = remove.into_iter().map(|k| (self.hash_of(&k), k)).collect();
        self.replace_hashed(source, remove, || add().map(|s| (self.hash_of(&s), s)))
    }

    /// Removes the series `remove` names, then stores every sample `add` yields for
    /// `source`, or does nothing at all: the series the write would create, less those it
    /// removes, must fit the source's, its group's and the store's bounds. Check, removal
    /// and write happen under one lock, so no other writer can take the room between them.
    /// `add` is called twice (check, then write) and must yield the same samples both
    /// times; `remove` and `add` must not name the same series.
    fn replace_hashed<K: SeriesId, S: StoreSample, I: Iterator<Item = (u64, S)>>(
        &self,
        source: SourceId,
        remove: Vec<(u64, K)>,
        add: impl Fn() -> I,
    ) -> Result<IngestReport, Refusal> {
        let mut inner = self.inner.write();
        // New series, found by their hash; one named many times is created once. Sorted
        // and deduplicated at the end: a request may carry hundreds of thousands.
        let mut new: Vec<(u64, usize)> = Vec::new();
        let mut first_new = None;
        for (hash, sample) in add() {
            if inner.find(hash, &sample).is_some() {
                continue;
            }
            first_new.get_or_insert_with(|| sample.to_key());
            new.push((hash, series_cost(&sample)));
        }
        new.sort_unstable_by_key(|&(hash, _)| hash);
        new.dedup_by_key(|&mut (hash, _)| hash);
        let bytes: usize = new.iter().map(|&(_, cost)| cost).sum();
        let removed: Vec<usize> = remove
            .iter()
            .filter_map(|(hash, key)| inner.find(*hash, key))
            .collect();
        let freed: usize = removed
            .iter()
            .filter_map(|&slot| inner.slots.get(slot).and_then(Option::as_ref))
            .map(|series| series.cost)
            .sum();
        inner
            .admit(
                &self.limits,
                source.0,
                new.len().saturating_sub(removed.len()),
                bytes.saturating_sub(freed),
            )
            .map_err(|r| Refusal { first_new, ..r })?;
        for slot in removed {
            inner.remove_slot(slot);
        }
        Ok(self.write_batch(&mut inner, source, add()))
    }

    /// The source named `name` (created on first use), with these bounds from now on.
    /// `group`'s bounds apply to it as well. Naming the same source again (a reloaded
    /// plugin) gives the same id, so its series and events stay accounted to it.
    fn register(&self, name: &str, limits: SourceLimits, group: Option<SourceId>) -> SourceId {
        let mut inner = self.inner.write();
        let group = group.map(|g| g.0);
        if let Some(i) = inner.sources.iter().position(|u| u.name == name) {
            let u = &mut inner.sources[i];
            u.limits = limits;
            u.group = group;
            return SourceId(i as u32);
        }
        inner.sources.push(SourceUsage {
            name: name.to_string(),
            limits,
            group,
            series: 0,
            bytes: 0,
            events: EventLog::default(),
        });
        SourceId((inner.sources.len() - 1) as u32)
    }

    /// A group of sources named `name` whose series together stay within `limits` (the
    /// push listeners' share of the store). Naming it again gives the same group.
    pub fn group(&self, name: &str, limits: SourceLimits) -> SourceGroup {
        SourceGroup(self.register(name, limits, None))
    }

    /// The writer of the source named `name` (`collector:NAME`, `analyzer:NAME`,
    /// `ingest:SOURCE`): its new series count against `limits`, and against `group`'s
    /// when given. Naming the same source again (a reloaded plugin) gives a writer of the
    /// same source, so what it stored stays accounted to it.
    pub fn writer(
        self: &Arc<Self>,
        name: &str,
        limits: SourceLimits,
        group: Option<SourceGroup>,
    ) -> StoreWriter {
        let source = self.register(name, limits, group.map(|g| g.0));
        StoreWriter::new(self.clone(), source)
    }

    /// The series a source holds and what they cost.
    fn source_usage(&self, source: SourceId) -> (usize, usize) {
        let inner = self.inner.read();
        inner
            .sources
            .get(source.0 as usize)
            .map_or((0, 0), |u| (u.series, u.bytes))
    }

    /// What all series' identities cost ([`series_cost`]).
    pub fn series_bytes(&self) -> usize {
        self.inner.read().bytes
    }

    /// Removes these series with all their points (the engine's own series it no longer
    /// publishes); returns how many existed.
    pub fn remove_series(&self, keys: &[SeriesKey]) -> usize {
        self.remove_keys(keys)
    }

    /// Removes the series `keys` name; returns how many existed.
    fn remove_keys<K: SeriesId>(&self, keys: impl IntoIterator<Item = K>) -> usize {
        let keys: Vec<(u64, K)> = keys.into_iter().map(|k| (self.hash_of(&k), k)).collect();
        if keys.is_empty() {
            return 0;
        }
        let mut inner = self.inner.write();
        let mut removed = 0;
        for (hash, key) in keys {
            if let Some(slot) = inner.find(hash, &key) {
                removed += usize::from(inner.remove_slot(slot));
            }
        }
        removed
    }

    /// Keeps `events` for `source`, within `max_events_per_source`; logs when the source
    /// starts overflowing and when it stops, not on every call.
    fn record_events(&self, source: SourceId, events: Vec<Event>) -> EventReport {
        let cap = self.limits.max_events_per_source;
        let mut inner = self.inner.write();
        let Some(u) = inner.sources.get_mut(source.0 as usize) else {
            return EventReport::default();
        };
        let (report, change) = u.events.record(events, cap);
        let name = change.map(|_| u.name.clone());
        drop(inner);
        match (change, name) {
            (Some(true), Some(source)) => tracing::warn!(
                %source,
                "{} analyzer events dropped: the source holds the most the store keeps ({cap}); \
                 the oldest go first, counted in {} (logged again only \
                 after it stops)",
                report.dropped,
                self_metrics::STORE_EVENTS_DROPPED.name,
            ),
            (Some(false), Some(source)) => {
                tracing::info!(%source, "analyzer events fit in the store again")
            }
            _ => {}
        }
        report
    }

    /// Drops points and events older than the retention, and series left empty.
    /// [`SeriesStore::maintain`] calls it; tests call it with a time of their choosing.
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
        for u in &mut inner.sources {
            u.events.prune(cutoff);
        }
    }

    /// The store's own task: every `period`, prunes ([`SeriesStore::prune`]) and writes
    /// the store's metrics (`telltale_store_series`, `telltale_store_events`,
    /// `telltale_store_events_dropped_total`), until `stop` turns true or its sender goes away. The
    /// engine spawns it once, so no reader or writer ever pays for pruning.
    pub async fn maintain(
        self: Arc<Self>,
        period: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = now_ms();
                    self.prune(now);
                    let metrics = self.own_metrics(now);
                    self.ingest(metrics);
                }
                _ = stop.changed() => break,
            }
        }
    }

    /// Makes the store queue every accepted sample for `disk`'s persister and serve
    /// reads beyond the in-memory window from it. Once per store; a second disk is
    /// ignored.
    pub(crate) fn attach_disk(&self, disk: Arc<disk::Disk>) {
        if self.disk.set(disk).is_ok() {
            self.inner
                .write()
                .pending
                .get_or_insert_with(Default::default);
        }
    }

    /// The durable store, when one is attached.
    pub fn disk(&self) -> Option<&Arc<disk::Disk>> {
        self.disk.get()
    }

    /// What was accepted since the last call (the persister's flush).
    pub(crate) fn take_pending(&self) -> disk::persist::Pending {
        let mut inner = self.inner.write();
        match &mut inner.pending {
            Some(p) => std::mem::take(p),
            None => Default::default(),
        }
    }

    /// From when on the in-memory window is complete at `now`: the later of the store's
    /// start and the retention's reach. Reads from earlier go to the durable store.
    pub fn memory_from(&self, now: TimestampMs) -> TimestampMs {
        self.started_ms
            .max(now.saturating_sub(duration_ms(self.limits.retention)))
    }

    /// The history of each series of `name` whose labels include `matcher` in
    /// `[from, to]`, at `resolution`: the in-memory window when it covers the range
    /// (or there is no durable store), else the durable store's tier; at the raw tier,
    /// each series' in-memory samples, preceded by the disk's from before the first of
    /// them. Series in label order.
    pub fn range(
        &self,
        name: &str,
        matcher: &Labels,
        from: TimestampMs,
        to: TimestampMs,
        resolution: disk::Resolution,
    ) -> Result<Vec<disk::RangeSeries>, disk::StoreError> {
        use disk::{RangeData, RangeSeries, Resolution, Tier};
        let now = now_ms();
        let mem_from = self.memory_from(now);
        let memory = |from: TimestampMs| {
            let mut out: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
            self.for_each_series(name, matcher, |labels, points| {
                let start = points.partition_point(|p| p.timestamp_ms < from);
                let end = points.partition_point(|p| p.timestamp_ms <= to);
                if start < end {
                    out.insert(labels.clone(), points.range(start..end).copied().collect());
                }
            });
            out
        };
        let tier = match (self.disk.get(), resolution) {
            (None, _) => None,
            (Some(_), Resolution::Auto) if from >= mem_from => None,
            (Some(d), Resolution::Auto) => Some(d.cfg.pick(from, to, now)),
            (Some(_), Resolution::Tier(t)) => Some(t),
        };
        let (Some(disk), Some(tier)) = (self.disk.get(), tier) else {
            return Ok(memory(from)
                .into_iter()
                .map(|(labels, points)| RangeSeries {
                    labels,
                    data: RangeData::Points(points),
                })
                .collect());
        };
        // Raw: each series' points in memory (which also holds what the persister has
        // not flushed yet), and before the first of them, the disk's.
        let in_memory = if tier == Tier::Raw {
            memory(from)
        } else {
            BTreeMap::new()
        };
        let mut out: BTreeMap<Labels, RangeData> = disk.with_reader(|conn| {
            let mut out = BTreeMap::new();
            for (id, labels) in disk.select(conn, name, matcher)? {
                let until = match in_memory.get(&labels).and_then(|p| p.first()) {
                    Some(first) => to.min(first.timestamp_ms - 1),
                    None => to,
                };
                if from <= until {
                    out.insert(labels, disk.read(conn, id, tier, from, until)?);
                }
            }
            Ok(out)
        })?;
        for (labels, points) in in_memory {
            match out
                .entry(labels)
                .or_insert_with(|| RangeData::Points(Vec::new()))
            {
                RangeData::Points(p) => p.extend(points),
                RangeData::Buckets { .. } => {}
            }
        }
        Ok(out
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(labels, data)| RangeSeries { labels, data })
            .collect())
    }

    /// The store's metrics as of `now`.
    fn own_metrics(&self, now: TimestampMs) -> Vec<Sample> {
        let inner = self.inner.read();
        let mut out = vec![
            Sample::new(self_metrics::STORE_SERIES.name, &[], inner.len as f64, now),
            Sample::new(
                self_metrics::STORE_EVENTS.name,
                &[],
                inner.sources.iter().map(|u| u.events.len()).sum::<usize>() as f64,
                now,
            ),
        ];
        for u in inner.sources.iter().filter(|u| u.events.recorded()) {
            out.push(Sample::new(
                self_metrics::STORE_EVENTS_DROPPED.name,
                &[("source", u.name.as_str())],
                u.events.dropped() as f64,
                now,
            ));
        }
        if let Some(disk) = self.disk.get() {
            out.extend(disk.own_metrics(now, inner.pending_dropped));
        }
        out
    }

    /// Calls `f` with every series of `name` whose labels include `matcher`, in label
    /// order. The store is read-locked meanwhile: keep `f` short. (Other crates read
    /// through [`SeriesRead::visit_window`].)
    fn for_each_series(
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
        let selects = |labels: &Labels| {
            matcher
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
        };
        let Some(candidates) = family.candidates(&inner.pairs, matcher) else {
            for (labels, &slot) in &family.series {
                if selects(labels)
                    && let Some(series) = inner.slots.get(slot).and_then(Option::as_ref)
                {
                    f(name, labels, &series.points);
                }
            }
            return;
        };
        let series = |slot: usize| {
            inner
                .slots
                .get(slot)
                .and_then(Option::as_ref)
                .filter(|s| s.selected_by(matcher))
        };
        if let [slot] = candidates {
            // The common read, one series by its labels: no list to build.
            if let Some(s) = series(*slot) {
                f(name, &s.labels, &s.points);
            }
            return;
        }
        // Postings are in slot order; reads promise label order.
        let mut hits: Vec<&Series> = candidates.iter().filter_map(|&slot| series(slot)).collect();
        hits.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        for s in hits {
            f(name, &s.labels, &s.points);
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

    /// How many series [`latest`](SeriesStore::latest) would return, and the point of the
    /// first (in label order), copying no labels.
    pub fn latest_count(
        &self,
        name: &str,
        matcher: &Labels,
        now_ms: TimestampMs,
    ) -> (usize, Option<Point>) {
        let oldest = now_ms.saturating_sub(duration_ms(self.limits.lookback));
        let (mut count, mut first) = (0, None);
        self.for_each_series(name, matcher, |_, points| {
            if let Some(p) = points.back().filter(|p| p.timestamp_ms >= oldest) {
                count += 1;
                first.get_or_insert(*p);
            }
        });
        (count, first)
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

    /// The events of kind `kind` whose labels include `matcher`, stamped from `since_ms`
    /// to `until_ms` (both inclusive), oldest first, from every source.
    pub fn events(
        &self,
        kind: &str,
        matcher: &Labels,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
    ) -> Vec<Event> {
        let inner = self.inner.read();
        let mut out: Vec<Event> = inner
            .sources
            .iter()
            .flat_map(|u| u.events.matching(kind, matcher, since_ms, until_ms))
            .cloned()
            .collect();
        // Stable: events of one time keep their source's order, then their arrival order.
        out.sort_by_key(|e| e.timestamp_ms);
        out
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
            ..StoreLimits::default()
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
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer("test", SourceLimits::UNBOUNDED, None);
        let write = |sample: Borrowed<'_>| writer.ingest([sample]);
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
            source: 0,
            cost: 0,
            uid: 0,
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
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer("test", SourceLimits::UNBOUNDED, None);
        store.ingest([sample("cpu", &[("core", "0"), ("host", "a")], 1.0, 1)]);
        let b = Borrowed("cpu", &[("core", "0"), ("host", "a")], 2.0, 2);
        let r = writer.ingest([&b]);
        assert_eq!(r.accepted, 1);
        assert_eq!(store.series_count(), 1, "same identity, same series");
        // Same labels under another name, and a subset of the labels, are other series.
        let c = Borrowed("cpu2", &[("core", "0"), ("host", "a")], 1.0, 2);
        let d = Borrowed("cpu", &[("core", "0")], 1.0, 2);
        writer.ingest([&c, &d]);
        assert_eq!(store.series_count(), 3);
        let w = store.window("cpu", &Labels::new(), 0);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].points.len(), 1, "{{core=0}} sorts first");
        assert_eq!(w[1].points.len(), 2, "two writes, one series");
        assert_eq!(writer.remove([&b]), 1, "removable by a borrowed key");
        assert_eq!(store.series_count(), 2);
    }

    #[test]
    fn fingerprint_extends_the_index_hash() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer("test", SourceLimits::UNBOUNDED, None);
        let a = Borrowed("m", &[("k", "v")], 1.0, 1);
        let b = Borrowed("m", &[("k", "w")], 1.0, 1);
        let fa = writer.fingerprint(&a);
        assert_eq!(
            fa.hash,
            store.series_hash(&a),
            "first half is the index hash"
        );
        assert_ne!(fa.hash, fa.check);
        assert_eq!(writer.fingerprint(&a), fa, "stable");
        assert_ne!(writer.fingerprint(&b), fa);
        let other = Arc::new(SeriesStore::new(StoreLimits::default()));
        let elsewhere = other.writer("test", SourceLimits::UNBOUNDED, None);
        assert_ne!(elsewhere.fingerprint(&a), fa, "keyed per store");
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

    #[test]
    fn label_bytes_are_bounded_in_total_and_per_source() {
        // 64 labels of 1 KiB: the sample the hardening review used to grow the engine.
        let big = |i: usize| {
            let value = format!("{i:01024}");
            let names: Vec<String> = (0..64).map(|l| format!("l{l:02}")).collect();
            let labels: Vec<(&str, &str)> =
                names.iter().map(|n| (n.as_str(), value.as_str())).collect();
            Sample::new("big", &labels, 1.0, 1000)
        };
        let one = series_cost(&big(0));
        assert!(one > 2 * 64 * 1024, "{one}");

        // The store's byte bound: 10 such series fit, the 11th does not.
        let store = SeriesStore::new(StoreLimits {
            max_series_bytes: 10 * one,
            ..StoreLimits::default()
        });
        let r = store.ingest((0..11).map(big));
        assert_eq!(r.accepted, 10);
        assert_eq!(r.dropped_bytes_limit, 1);
        assert_eq!(store.series_bytes(), 10 * one);
        // Small series of others still fit while there is room, and removal gives it back.
        store.prune(1000 + 3_600_001);
        assert_eq!(store.series_bytes(), 0);

        // A source's bounds, inside a group's, inside the store's.
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let group = store.group(
            "push",
            SourceLimits {
                max_series: 3,
                max_bytes: usize::MAX,
            },
        );
        let a = store.writer(
            "push:a",
            SourceLimits {
                max_series: usize::MAX,
                max_bytes: 2 * one,
            },
            Some(group),
        );
        let b = store.writer("push:b", SourceLimits::UNBOUNDED, Some(group));
        let r = a.ingest((0..3).map(big));
        assert_eq!((r.accepted, r.dropped_source_limit), (2, 1));
        assert_eq!(a.usage(), (2, 2 * one));
        // b is bounded by what a left of the group.
        let r = b.ingest([
            sample("x", &[("i", "1")], 1.0, 1),
            sample("x", &[("i", "2")], 1.0, 1),
        ]);
        assert_eq!((r.accepted, r.dropped_source_limit), (1, 1));
        // An unattributed writer (the engine's own metrics) is bounded only by the store.
        let r = store.ingest((0..5).map(|i| sample("own", &[("i", &i.to_string())], 1.0, 1)));
        assert_eq!(r.accepted, 5);
        // Registering again by name keeps the source and its usage.
        let again = store.writer("push:a", SourceLimits::UNBOUNDED, Some(group));
        assert_eq!(again.source, a.source);
        assert_eq!(again.usage().0, 2);
        assert_eq!(store.source_usage(group.0).0, 3);
        // Removal gives the room back to the source and its group.
        let removed = a.remove([big(0).to_key()]);
        assert_eq!(removed, 1);
        assert_eq!(a.usage(), (1, one));
        assert_eq!(store.source_usage(group.0).0, 2);
    }

    #[test]
    fn a_request_is_stored_whole_or_not_at_all() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer(
            "push:json",
            SourceLimits {
                max_series: 3,
                max_bytes: usize::MAX,
            },
            None,
        );
        let batch = |ids: &[u32]| -> Vec<Sample> {
            ids.iter()
                .map(|i| sample("m", &[("i", &i.to_string())], 1.0, 1))
                .collect()
        };
        let write = |samples: Vec<Sample>| writer.ingest_all(&samples);
        // Two new series, one named twice: three samples, two series.
        assert_eq!(write(batch(&[1, 2, 2])).unwrap().accepted, 3);
        // Two more would make four: refused whole, nothing stored.
        let refusal = write(batch(&[1, 3, 4])).unwrap_err();
        assert_eq!(refusal.bound, Bound::SourceSeries);
        assert_eq!(
            refusal.to_string(),
            "source `push:json` holds 2 series of at most 3; this would add 2 (first new \
             series: m{i=\"3\"})"
        );
        assert_eq!(store.series_count(), 2);
        assert_eq!(store.window("m", &Labels::new(), 0)[0].points.len(), 1);
        // Existing series cost nothing.
        assert_eq!(write(batch(&[1, 2, 3])).unwrap().accepted, 3);
    }

    #[test]
    fn a_replacement_is_credited_with_what_it_removes_and_refused_whole() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer(
            "ingest:pushgateway",
            SourceLimits {
                max_series: 2,
                max_bytes: usize::MAX,
            },
            None,
        );
        let s = |i: u32| sample("g", &[("i", &i.to_string())], 1.0, 1);
        let put = |remove: &[Sample], add: &[Sample]| writer.replace(remove, || add.iter());
        assert_eq!(put(&[], &[s(1), s(2)]).unwrap().accepted, 2);
        // At the bound, renaming both series fits: the two removed make room for two.
        assert_eq!(put(&[s(1), s(2)], &[s(3), s(4)]).unwrap().accepted, 2);
        // Three for two does not, and nothing changes: 3 and 4 are still there.
        let refusal = put(&[s(3), s(4)], &[s(5), s(6), s(7)]).unwrap_err();
        assert_eq!(refusal.bound, Bound::SourceSeries);
        let left: Vec<String> = store
            .window("g", &Labels::new(), 0)
            .iter()
            .map(|w| w.key.labels.get("i").unwrap().clone())
            .collect();
        assert_eq!(left, ["3", "4"]);
        assert_eq!(writer.usage().0, 2);
    }

    /// A sample carrying its fingerprint, as the Pushgateway's groups keep them.
    struct Kept<'a>(Borrowed<'a>, Fingerprint);

    impl SeriesId for Kept<'_> {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
            self.0.label_pairs()
        }
        fn fingerprint(&self) -> Option<Fingerprint> {
            Some(self.1)
        }
    }

    impl StoreSample for Kept<'_> {
        fn point(&self) -> Point {
            self.0.point()
        }
    }

    #[test]
    fn a_kept_fingerprint_finds_the_series_it_was_made_for() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer("ingest:pushgateway", SourceLimits::UNBOUNDED, None);
        let labels = [("job", "a")];
        let fp = writer.fingerprint(&Borrowed("up", &labels, 0.0, 0));
        let kept = |v: f64, t: i64| Kept(Borrowed("up", &labels, v, t), fp);
        writer
            .replace::<Kept<'_>, _, _>([], || [kept(1.0, 1)].into_iter())
            .unwrap();
        assert_eq!(writer.ingest([kept(2.0, 2)]).accepted, 1);
        // The same series by its strings: one series of three points.
        store.ingest([sample("up", &labels, 3.0, 3)]);
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.window("up", &Labels::new(), 0)[0].points.len(), 3);
        assert_eq!(writer.remove([kept(0.0, 0)]), 1);
        assert_eq!(store.series_count(), 0);
    }

    fn event(kind: &str, labels: &[(&str, &str)], ts: i64) -> Event {
        Event {
            source: "shift".into(),
            kind: kind.into(),
            severity: telltale_model::Severity::Warning,
            message: format!("{kind} at {ts}"),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timestamp_ms: ts,
        }
    }

    fn times(events: &[Event]) -> Vec<i64> {
        events.iter().map(|e| e.timestamp_ms).collect()
    }

    #[test]
    fn events_are_selected_by_kind_labels_and_time_from_every_source() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let a = store.writer("analyzer:a", SourceLimits::UNBOUNDED, None);
        let b = store.writer("analyzer:b", SourceLimits::UNBOUNDED, None);
        let r = a.record_events(vec![
            event("level_shift", &[("host", "x"), ("dir", "up")], 3_000),
            event("level_shift", &[("host", "y")], 1_000),
            event("spike", &[("host", "x")], 2_000),
        ]);
        assert_eq!(
            r,
            EventReport {
                stored: 3,
                dropped: 0
            }
        );
        b.record_events(vec![event("level_shift", &[("host", "x")], 2_000)]);
        let all = store.events("level_shift", &Labels::new(), 0, 10_000);
        assert_eq!(
            times(&all),
            [1_000, 2_000, 3_000],
            "oldest first, across sources"
        );
        let host_x: Labels = [("host".to_string(), "x".to_string())].into();
        assert_eq!(
            times(&store.events("level_shift", &host_x, 0, 10_000)),
            [2_000, 3_000]
        );
        // Both ends of the time range are inclusive.
        assert_eq!(
            times(&store.events("level_shift", &host_x, 2_000, 2_999)),
            [2_000]
        );
        assert_eq!(
            times(&store.events("level_shift", &host_x, 3_000, 3_000)),
            [3_000]
        );
        assert!(
            store.events("level", &Labels::new(), 0, 10_000).is_empty(),
            "kind is exact"
        );
        let got = &store.events("spike", &Labels::new(), 0, 10_000)[0];
        assert_eq!(
            got,
            &event("spike", &[("host", "x")], 2_000),
            "kept as returned"
        );
        // The read trait sees the same.
        let read: &dyn SeriesRead = &*store;
        assert_eq!(read.events("level_shift", &host_x, 0, 10_000).len(), 2);
    }

    #[test]
    fn events_are_bounded_per_source_and_pruned_with_the_retention() {
        let store = Arc::new(SeriesStore::new(StoreLimits {
            retention: Duration::from_secs(10),
            max_events_per_source: 3,
            ..StoreLimits::default()
        }));
        let a = store.writer("analyzer:a", SourceLimits::UNBOUNDED, None);
        let b = store.writer("analyzer:b", SourceLimits::UNBOUNDED, None);
        a.record_events((1..=2).map(|t| event("e", &[], t * 1000)).collect());
        // Two more make four: the oldest goes.
        let r = a.record_events((3..=4).map(|t| event("e", &[], t * 1000)).collect());
        assert_eq!(
            r,
            EventReport {
                stored: 2,
                dropped: 1
            }
        );
        assert_eq!(
            times(&store.events("e", &Labels::new(), 0, i64::MAX)),
            [2_000, 3_000, 4_000]
        );
        // More than the cap in one call: the newest three are kept.
        let r = a.record_events((5..=9).map(|t| event("e", &[], t * 1000)).collect());
        assert_eq!(
            r,
            EventReport {
                stored: 3,
                dropped: 5
            }
        );
        // Another source has its own bound.
        b.record_events(vec![event("e", &[], 9_500)]);
        assert_eq!(
            times(&store.events("e", &Labels::new(), 0, i64::MAX)),
            [7_000, 8_000, 9_000, 9_500]
        );
        let metrics = store.own_metrics(20_000);
        let value = |name: &str, source: Option<&str>| {
            metrics
                .iter()
                .find(|s| s.name == name && s.labels.get("source").map(String::as_str) == source)
                .map(|s| s.value)
        };
        assert_eq!(value(self_metrics::STORE_EVENTS.name, None), Some(4.0));
        assert_eq!(
            value(self_metrics::STORE_EVENTS_DROPPED.name, Some("analyzer:a")),
            Some(6.0)
        );
        assert_eq!(
            value(self_metrics::STORE_EVENTS_DROPPED.name, Some("analyzer:b")),
            Some(0.0)
        );
        assert_eq!(
            value(
                self_metrics::STORE_EVENTS_DROPPED.name,
                Some("unattributed")
            ),
            None,
            "no events, no series"
        );
        // Retention 10 s at 18.5 s: events before 8.5 s go.
        store.prune(18_500);
        assert_eq!(
            times(&store.events("e", &Labels::new(), 0, i64::MAX)),
            [9_000, 9_500]
        );
        store.prune(100_000);
        assert!(store.events("e", &Labels::new(), 0, i64::MAX).is_empty());
    }

    #[test]
    fn visit_window_borrows_the_points_in_range() {
        let store = SeriesStore::new(StoreLimits {
            max_points_per_series: 4,
            ..StoreLimits::default()
        });
        // Six points into a buffer of four: the ring buffer wraps.
        store.ingest((1..=6).map(|t| sample("m", &[("k", "a")], t as f64, t * 1000)));
        store.ingest([sample("m", &[("k", "b")], 1.0, 1_000)]);
        let mut seen = Vec::new();
        SeriesRead::visit_window(
            &store,
            "m",
            &Labels::new(),
            4_000,
            5_000,
            &mut |labels, run| {
                seen.push((
                    labels["k"].clone(),
                    run.iter().map(|p| p.value).collect::<Vec<_>>(),
                ));
            },
        );
        assert_eq!(
            seen,
            [("a".to_string(), vec![4.0, 5.0])],
            "b has no point in range"
        );
    }

    /// The `k` labels of every series `read` selects from family `m`, in the order read.
    fn selected(store: &SeriesStore, matcher: &[(&str, &str)]) -> Vec<String> {
        let matcher: Labels = matcher
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        store.for_each_series("m", &matcher, |labels, _| out.push(labels["k"].clone()));
        out
    }

    #[test]
    fn matchers_select_through_the_postings_in_label_order() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        // Twelve series k=00..11; `zone` only on the even ones, `host` a or b (every
        // third is b), `region` eu on all: a pair shared by all, one by half, one by a
        // third, and `k` by one each.
        let labels = |i: usize| {
            let k = format!("{i:02}");
            let host = if i.is_multiple_of(3) { "b" } else { "a" };
            let mut l = vec![
                ("k", k),
                ("host", host.to_string()),
                ("region", "eu".into()),
            ];
            if i.is_multiple_of(2) {
                l.push(("zone", format!("z{}", i % 4)));
            }
            l
        };
        let put = |i: usize, t: i64| {
            let l = labels(i);
            let pairs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            sample("m", &pairs, i as f64, t)
        };
        // Created out of label order, so slot order differs from label order.
        store.ingest([7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6].map(|i| put(i, 1_000)));
        store.ingest([sample("other", &[("k", "00"), ("host", "b")], 1.0, 1_000)]);
        // Label order compares label by label in name order: host first (a before b),
        // then k.
        let all = [
            "01", "02", "04", "05", "07", "08", "10", "11", "00", "03", "06", "09",
        ];
        // No label: every series of the name; a pair on all: the same, in label order.
        assert_eq!(selected(&store, &[]), all);
        assert_eq!(selected(&store, &[("region", "eu")]), all);
        // One label naming one series, one naming several (i % 3 == 0: 0, 3, 6, 9).
        assert_eq!(selected(&store, &[("k", "05")]), ["05"]);
        assert_eq!(selected(&store, &[("host", "b")]), ["00", "03", "06", "09"]);
        // Several labels: the intersection (host b and zone z2: i % 3 == 0, i % 4 == 2: 6).
        assert_eq!(selected(&store, &[("host", "b"), ("zone", "z2")]), ["06"]);
        assert_eq!(
            selected(&store, &[("host", "a"), ("region", "eu"), ("zone", "z0")]),
            ["04", "08"]
        );
        // A label some series lack selects only those that have it with that value.
        assert_eq!(selected(&store, &[("zone", "z0")]), ["04", "08", "00"]);
        assert!(selected(&store, &[("k", "05"), ("zone", "z1")]).is_empty());
        // Absent values, absent labels, other names.
        assert!(selected(&store, &[("k", "99")]).is_empty());
        assert!(selected(&store, &[("nope", "x")]).is_empty());
        assert!(selected(&store, &[("host", "b"), ("nope", "x")]).is_empty());
        assert!(selected(&store, &[("k", "05"), ("host", "b")]).is_empty());
        assert_eq!(store.latest("other", &Labels::new(), 1_000).len(), 1);

        // Removal: the series leaves every list it was on.
        let writer = store.writer("w", SourceLimits::UNBOUNDED, None);
        let key = |i: usize| put(i, 0).to_key();
        assert_eq!(writer.remove([key(6), key(5)]), 2);
        assert_eq!(selected(&store, &[("host", "b")]), ["00", "03", "09"]);
        assert!(selected(&store, &[("k", "05")]).is_empty());
        assert!(selected(&store, &[("host", "b"), ("zone", "z2")]).is_empty());
        // A new series reuses a freed slot and is found under its own pairs only.
        store.ingest([sample("m", &[("k", "12"), ("host", "b")], 1.0, 2_000)]);
        assert_eq!(selected(&store, &[("host", "b")]), ["00", "03", "09", "12"]);
        assert!(selected(&store, &[("region", "eu"), ("k", "12")]).is_empty());
        // Replace: the removed series go, the added ones come, under one lock.
        writer
            .replace([key(0), key(3)], || {
                [sample(
                    "m",
                    &[("k", "13"), ("host", "b"), ("zone", "z2")],
                    1.0,
                    2_000,
                )]
                .into_iter()
            })
            .unwrap();
        assert_eq!(selected(&store, &[("host", "b")]), ["09", "12", "13"]);
        assert_eq!(selected(&store, &[("zone", "z2")]), ["02", "10", "13"]);
        // Prune (retention 1 h): everything stamped 1,000 goes, 12 and 13 stay.
        store.prune(2_000 + 3_600_000);
        assert_eq!(selected(&store, &[]), ["12", "13"]);
        assert_eq!(selected(&store, &[("host", "b")]), ["12", "13"]);
        assert!(selected(&store, &[("region", "eu")]).is_empty());
        assert!(selected(&store, &[("zone", "z0")]).is_empty());
        assert!(store.latest("other", &Labels::new(), 1_000).is_empty());
        // The family goes with its last series; recreated, its index starts empty.
        assert_eq!(writer.remove([key(12)]), 0, "labels differ from k=12's");
        store.prune(3_000 + 3_600_000);
        assert!(selected(&store, &[]).is_empty());
        assert!(store.inner.read().families.is_empty());
        store.ingest([put(1, 5_000)]);
        assert_eq!(selected(&store, &[("host", "a")]), ["01"]);
        assert!(selected(&store, &[("host", "b")]).is_empty());
    }

    #[test]
    fn latest_count_counts_what_latest_returns() {
        let store = SeriesStore::new(StoreLimits::default());
        let p = |v: f64, t: i64| Point {
            timestamp_ms: t,
            value: v,
        };
        // Lookback 300 s: at 500 s, a (newest point at 1 s) is gone, b and c are not.
        store.ingest([
            sample("m", &[("k", "c"), ("j", "x")], 3.0, 400_000),
            sample("m", &[("k", "a"), ("j", "x")], 1.0, 1_000),
            sample("m", &[("k", "b"), ("j", "y")], 2.0, 500_000),
        ]);
        let m = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let now = 500_000;
        // The first in label order: j="x",k="c" before j="y",k="b".
        assert_eq!(
            store.latest_count("m", &Labels::new(), now),
            (2, Some(p(3.0, 400_000)))
        );
        assert_eq!(
            store.latest_count("m", &m(&[("k", "b")]), now),
            (1, Some(p(2.0, 500_000)))
        );
        assert_eq!(store.latest_count("m", &m(&[("k", "a")]), now), (0, None));
        assert_eq!(store.latest_count("nope", &Labels::new(), now), (0, None));
        for matcher in [m(&[]), m(&[("j", "x")]), m(&[("k", "b")]), m(&[("k", "a")])] {
            let all = store.latest("m", &matcher, now);
            let want = (all.len(), all.first().map(|(_, p)| *p));
            assert_eq!(store.latest_count("m", &matcher, now), want, "{matcher:?}");
        }
    }

    #[test]
    fn selection_from_identity_bytes_is_selection_by_labels() {
        let store = SeriesStore::new(StoreLimits::default());
        store.ingest([sample(
            "m",
            &[("b", "x"), ("bb", "ab"), ("e", ""), ("k", "v")],
            1.0,
            1,
        )]);
        let inner = store.inner.read();
        let series = inner.slots.iter().flatten().next().unwrap();
        let m = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // Each case, and what `labels.get(k) == Some(v)` for every pair says, by hand.
        let cases: [(&[(&str, &str)], bool); 12] = [
            (&[], true),
            (&[("b", "x")], true),
            (&[("b", "x"), ("k", "v")], true),
            (&[("b", "x"), ("bb", "ab"), ("e", ""), ("k", "v")], true),
            (&[("e", "")], true),
            // A prefix of a name or a value is not a match, nor is a longer one.
            (&[("b", "a")], false),
            (&[("bb", "a")], false),
            (&[("bb", "abc")], false),
            (&[("kk", "v")], false),
            // Names before the first, between two, and after the last label.
            (&[("a", "x")], false),
            (&[("c", "x"), ("k", "v")], false),
            (&[("k", "v"), ("z", "")], false),
        ];
        for (pairs, want) in cases {
            let matcher = m(pairs);
            let by_labels = matcher
                .iter()
                .all(|(k, v)| series.labels.get(k).is_some_and(|x| x == v));
            assert_eq!(by_labels, want, "{pairs:?}");
            assert_eq!(series.selected_by(&matcher), want, "{pairs:?}");
        }
    }

    /// What a matcher selects through the postings is what testing every series selects,
    /// while series come and go. The reference is a plain scan of a model of the store.
    #[test]
    fn postings_agree_with_a_scan_under_churn() {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let writer = store.writer("w", SourceLimits::UNBOUNDED, None);
        // Labels of series i: k unique, a in 0..3, b in 0..5 (absent when i % 7 == 0).
        let labels = |i: u64| -> Vec<(String, String)> {
            let mut l = vec![
                ("k".to_string(), format!("{i:04}")),
                ("a".to_string(), (i % 3).to_string()),
            ];
            if !i.is_multiple_of(7) {
                l.push(("b".to_string(), (i % 5).to_string()));
            }
            l
        };
        let s = |i: u64, t: i64| Sample {
            name: "m".into(),
            labels: labels(i).into_iter().collect(),
            value: 0.0,
            timestamp_ms: t,
        };
        let mut live: std::collections::BTreeSet<u64> = Default::default();
        // A fixed pseudo-random walk (an LCG) over adds, removals and replacements.
        let mut x: u64 = 12345;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        for round in 0..400 {
            let i = next(200);
            match next(3) {
                0 => {
                    store.ingest([s(i, 1_000 + round)]);
                    live.insert(i);
                }
                1 => {
                    writer.remove([s(i, 0).to_key()]);
                    live.remove(&i);
                }
                _ => {
                    let j = next(200);
                    if i != j {
                        writer
                            .replace([s(i, 0).to_key()], || [s(j, 1_000 + round)].into_iter())
                            .unwrap();
                        live.remove(&i);
                        live.insert(j);
                    }
                }
            }
            if round % 20 != 0 {
                continue;
            }
            let matchers: Vec<Vec<(String, String)>> = vec![
                vec![],
                vec![("a".into(), "1".into())],
                vec![("b".into(), "3".into())],
                vec![("a".into(), "2".into()), ("b".into(), "4".into())],
                vec![("k".into(), format!("{:04}", next(200)))],
                vec![
                    ("k".into(), format!("{:04}", next(200))),
                    ("a".into(), "0".into()),
                ],
            ];
            for m in matchers {
                // In label order: the order of the label sets themselves.
                let mut want: Vec<(Labels, String)> = live
                    .iter()
                    .filter(|&&i| {
                        let l = labels(i);
                        m.iter().all(|p| l.contains(p))
                    })
                    .map(|&i| (labels(i).into_iter().collect(), format!("{i:04}")))
                    .collect();
                want.sort();
                let want: Vec<String> = want.into_iter().map(|(_, k)| k).collect();
                let pairs: Vec<(&str, &str)> =
                    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                assert_eq!(
                    selected(&store, &pairs),
                    want,
                    "round {round}, matcher {m:?}"
                );
            }
        }
        assert_eq!(store.series_count(), live.len());
    }

    #[tokio::test]
    async fn maintain_prunes_in_its_own_task_until_stopped() {
        let store = Arc::new(SeriesStore::new(StoreLimits {
            retention: Duration::from_secs(1),
            ..StoreLimits::default()
        }));
        store.ingest([sample("old", &[], 1.0, 1_000)]);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(store.clone().maintain(Duration::from_millis(10), stopped));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store
            .latest(self_metrics::STORE_SERIES.name, &Labels::new(), now_ms())
            .is_empty()
        {
            assert!(std::time::Instant::now() < deadline, "no maintenance ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(store.window("old", &Labels::new(), 0).is_empty(), "pruned");
        assert_eq!(
            store.latest(self_metrics::STORE_SERIES.name, &Labels::new(), now_ms())[0]
                .1
                .value,
            0.0,
            "counted after the prune"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
