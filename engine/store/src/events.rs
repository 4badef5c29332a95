//! Analyzer events kept as data, so rules can react to them (`events()` in rules).
//!
//! Each source keeps its own log, bounded by a count (`max_events_per_source`: the oldest
//! go first, since a rule cares about what just happened) and by the store's retention
//! (pruned with the points). An event is kept as the analyzer returned it (kind, severity,
//! message, labels, time), in arrival order: an analyzer may report an event at a time
//! earlier than one it reported before (a change point found late in a window).

use std::collections::VecDeque;

use telltale_model::{Event, Labels, TimestampMs};

/// What became of one call's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventReport {
    /// Of these events, how many are kept.
    pub stored: usize,
    /// How many were dropped (older ones first, then the oldest of these) because the
    /// source would hold more than `max_events_per_source`.
    pub dropped: usize,
}

/// One source's events.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    /// In arrival order.
    events: VecDeque<Event>,
    /// Dropped over the cap since the source was registered.
    dropped: u64,
    /// Whether this source ever recorded events (then its drop count is published).
    recorded: bool,
    /// Whether the last call dropped any, so a lasting overflow is logged once.
    overflowing: bool,
}

impl EventLog {
    /// Appends `events`, dropping the oldest beyond `cap`. Says whether this call started
    /// an overflow (`Some(true)`) or ended one (`Some(false)`), for a log line the caller
    /// writes once the store's lock is released.
    pub(crate) fn record(&mut self, events: Vec<Event>, cap: usize) -> (EventReport, Option<bool>) {
        self.recorded = true;
        let (offered, held) = (events.len(), self.events.len());
        self.events.extend(events);
        let over = self.events.len().saturating_sub(cap);
        self.events.drain(..over);
        self.dropped += over as u64;
        let report = EventReport {
            // Older events go first; these are dropped only once they are all gone.
            stored: offered - over.saturating_sub(held).min(offered),
            dropped: over,
        };
        let change = if over > 0 && !self.overflowing {
            Some(true)
        } else if over == 0 && self.overflowing && offered > 0 {
            Some(false)
        } else {
            None
        };
        if over > 0 || offered > 0 {
            self.overflowing = over > 0;
        }
        (report, change)
    }

    /// Drops events stamped before `cutoff`.
    pub(crate) fn prune(&mut self, cutoff: TimestampMs) {
        self.events.retain(|e| e.timestamp_ms >= cutoff);
    }

    /// The events of `kind` whose labels include `matcher`, stamped in `since..=until`.
    pub(crate) fn matching<'a>(
        &'a self,
        kind: &'a str,
        matcher: &'a Labels,
        since: TimestampMs,
        until: TimestampMs,
    ) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| {
            e.kind == kind
                && (since..=until).contains(&e.timestamp_ms)
                && matcher
                    .iter()
                    .all(|(k, v)| e.labels.get(k).is_some_and(|x| x == v))
        })
    }

    /// Events held.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Events dropped over the cap.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether any were ever recorded.
    pub(crate) fn recorded(&self) -> bool {
        self.recorded
    }
}
