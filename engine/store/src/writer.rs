//! The write side: a [`StoreWriter`] per source. Ingest listeners, collector and analyzer
//! tasks write only through one, so every series and event is accounted to the source
//! that made it, and the index (its hashing included) stays inside this crate.

use std::sync::Arc;

use telltale_model::Event;

use super::{
    EventReport, Fingerprint, IngestReport, Refusal, SeriesId, SeriesStore, SourceId, StoreSample,
};

/// A group of sources whose series are bounded together as well as one by one (the push
/// listeners' share of the store). Made by [`SeriesStore::group`]; refusals for its bounds
/// name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceGroup(pub(crate) SourceId);

/// One source's way into the store, made by [`SeriesStore::writer`]. Cheap to clone (the
/// clones write for the same source).
///
/// Samples can be owned ([`telltale_model::Sample`]) or borrowed (any [`StoreSample`]):
/// the store hashes them before it takes its lock and copies a name and labels only when
/// they create a series. A sample that carries a [`Fingerprint`] from
/// [`StoreWriter::fingerprint`] is not hashed again.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    store: Arc<SeriesStore>,
    pub(crate) source: SourceId,
}

impl StoreWriter {
    pub(crate) fn new(store: Arc<SeriesStore>, source: SourceId) -> StoreWriter {
        StoreWriter { store, source }
    }

    /// Stores a batch. Samples that would create a series beyond the source's, its
    /// group's or the store's bounds are refused one by one and counted; the others are
    /// stored. A sample with the same timestamp as its series' newest point replaces it;
    /// an older one is dropped and counted.
    pub fn ingest<S: StoreSample>(&self, samples: impl IntoIterator<Item = S>) -> IngestReport {
        self.store.ingest_from(self.source, samples)
    }

    /// Stores every sample of a request, or none: if the series it would create do not fit
    /// the source's, its group's or the store's bounds, nothing is stored and the refusal
    /// says which bound. Checked and written under one lock, so concurrent requests cannot
    /// both pass the check.
    pub fn ingest_all<S: StoreSample>(&self, samples: &[S]) -> Result<IngestReport, Refusal> {
        self.store.try_ingest_from(self.source, samples)
    }

    /// Removes the series `remove` names, then stores every sample `add` yields, or does
    /// nothing at all: the series the write would create, less those it removes, must fit
    /// the source's, its group's and the store's bounds. Check, removal and write happen
    /// under one lock, so no other writer can take the room between them (a Pushgateway
    /// push replacing a group's series).
    ///
    /// `add` is called twice (check, then write) and must yield the same samples both
    /// times; `remove` and `add` must not name the same series. Both walks happen under
    /// the lock, so give the samples their [`Fingerprint`] (a sample without one is
    /// hashed on each walk).
    pub fn replace<K: SeriesId, S: StoreSample, I: Iterator<Item = S>>(
        &self,
        remove: impl IntoIterator<Item = K>,
        add: impl Fn() -> I,
    ) -> Result<IngestReport, Refusal> {
        self.store.replace_from(self.source, remove, add)
    }

    /// Removes the series `keys` name, with all their points (a pushed group deleted or
    /// expired); returns how many existed.
    pub fn remove<K: SeriesId>(&self, keys: impl IntoIterator<Item = K>) -> usize {
        self.store.remove_keys(keys)
    }

    /// The store's fingerprint of `id`, for a writer that keeps its series to write them
    /// again (returned through [`SeriesId::fingerprint`]) or to compare them.
    pub fn fingerprint(&self, id: &impl SeriesId) -> Fingerprint {
        self.store.fingerprint_of(id)
    }

    /// Keeps an analyzer's events, accounted to this source: at most the store's
    /// `max_events_per_source` (the oldest go first; a lasting overflow is logged once and
    /// counted in `telltale_store_events_dropped_total`), and no longer than the retention. Rules read them with `events()`.
    pub fn record_events(&self, events: Vec<Event>) -> EventReport {
        if events.is_empty() {
            return EventReport::default();
        }
        self.store.record_events(self.source, events)
    }

    /// The series this source holds and what they cost
    /// ([`series_cost`](super::series_cost)).
    pub fn usage(&self) -> (usize, usize) {
        self.store.source_usage(self.source)
    }
}
