//! Ingest self-metrics: counters per source, written to the store as `telltale_ingest_*`
//! series on every housekeeping tick so rules can watch the listeners like anything else.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

use super::Source;
use super::limits::Reason;
use telltale_model::{Sample, TimestampMs, self_metrics};

/// Counters of all sources. One short lock per request: cheap next to parsing a body.
#[derive(Default)]
pub(crate) struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    samples: [u64; 4],
    requests: BTreeMap<(Source, &'static str), u64>,
    rejected: BTreeMap<(Source, Reason), u64>,
    dropped: BTreeMap<(Source, &'static str), u64>,
    skipped: BTreeMap<(Source, &'static str), u64>,
    /// Refusals of the HTTP listener before a request reached an endpoint (so before its
    /// source is known), published with `source="http"`.
    http_rejected: BTreeMap<Reason, u64>,
    /// Values read from elsewhere (the kernel, the listener): name → value.
    gauges: BTreeMap<&'static str, f64>,
    duration_sum: [f64; 4],
    duration_count: [u64; 4],
}

impl Stats {
    /// Counts one request (or datagram) and its outcome (`ok`, `rejected`, `partial`).
    pub(crate) fn request(&self, source: Source, outcome: &'static str, took: Option<Duration>) {
        let mut s = self.inner.lock();
        *s.requests.entry((source, outcome)).or_default() += 1;
        if let Some(d) = took {
            s.duration_sum[source.index()] += d.as_secs_f64();
            s.duration_count[source.index()] += 1;
        }
    }

    /// Counts samples accepted.
    pub(crate) fn accepted(&self, source: Source, n: usize) {
        self.inner.lock().samples[source.index()] += n as u64;
    }

    /// Counts a refusal.
    pub(crate) fn rejected(&self, source: Source, reason: Reason, n: u64) {
        *self
            .inner
            .lock()
            .rejected
            .entry((source, reason))
            .or_default() += n;
    }

    /// Counts samples the store dropped although the request was accepted.
    pub(crate) fn dropped(&self, source: Source, report: &telltale_store::IngestReport) {
        if report.dropped_out_of_order == 0 && report.dropped_for_room() == 0 {
            return;
        }
        let mut s = self.inner.lock();
        for (reason, n) in [
            ("out_of_order", report.dropped_out_of_order),
            ("store_series_limit", report.dropped_series_limit),
            ("store_bytes_limit", report.dropped_bytes_limit),
            ("source_limit", report.dropped_source_limit),
        ] {
            if n > 0 {
                *s.dropped.entry((source, reason)).or_default() += n as u64;
            }
        }
    }

    /// Counts valid input that was not stored: `n` Influx lines without a numeric field
    /// (`reason="string_fields"`).
    pub(crate) fn skipped(&self, source: Source, reason: &'static str, n: usize) {
        if n == 0 {
            return;
        }
        *self
            .inner
            .lock()
            .skipped
            .entry((source, reason))
            .or_default() += n as u64;
    }

    /// Counts a connection the HTTP listener gave up on before it made a request.
    pub(crate) fn rejected_http(&self, reason: Reason) {
        *self.inner.lock().http_rejected.entry(reason).or_default() += 1;
    }

    /// Sets a self-metric whose value is kept elsewhere (a kernel counter, an open
    /// connection count): published as is, without labels.
    pub(crate) fn set(&self, name: &'static str, value: f64) {
        self.inner.lock().gauges.insert(name, value);
    }

    /// The counters as samples stamped `now`, plus `extra` gauges without labels.
    pub(crate) fn samples(&self, now: TimestampMs, extra: &[(&str, usize)]) -> Vec<Sample> {
        let s = self.inner.lock();
        let mut out = Vec::new();
        let mut push = |name: &str, labels: &[(&str, &str)], value: f64| {
            out.push(Sample::new(name, labels, value, now))
        };
        for src in Source::ALL {
            let i = src.index();
            let source = src.as_str();
            push(
                self_metrics::INGEST_SAMPLES.name,
                &[("source", source)],
                s.samples[i] as f64,
            );
            push(
                self_metrics::INGEST_REQUEST_DURATION_SUM.name,
                &[("source", source)],
                s.duration_sum[i],
            );
            push(
                self_metrics::INGEST_REQUEST_DURATION_COUNT.name,
                &[("source", source)],
                s.duration_count[i] as f64,
            );
        }
        for ((src, outcome), n) in &s.requests {
            push(
                self_metrics::INGEST_REQUESTS.name,
                &[("source", src.as_str()), ("outcome", outcome)],
                *n as f64,
            );
        }
        for ((src, reason), n) in &s.rejected {
            push(
                self_metrics::INGEST_REJECTED.name,
                &[("source", src.as_str()), ("reason", reason.as_str())],
                *n as f64,
            );
        }
        for ((src, reason), n) in &s.dropped {
            push(
                self_metrics::INGEST_DROPPED.name,
                &[("source", src.as_str()), ("reason", reason)],
                *n as f64,
            );
        }
        for ((src, reason), n) in &s.skipped {
            push(
                self_metrics::INGEST_SKIPPED.name,
                &[("source", src.as_str()), ("reason", reason)],
                *n as f64,
            );
        }
        for (reason, n) in &s.http_rejected {
            push(
                self_metrics::INGEST_REJECTED.name,
                &[("source", "http"), ("reason", reason.as_str())],
                *n as f64,
            );
        }
        for (name, v) in &s.gauges {
            push(name, &[], *v);
        }
        for (name, v) in extra {
            push(name, &[], *v as f64);
        }
        out
    }

    /// One counter, for tests.
    #[cfg(test)]
    pub(crate) fn rejected_count(&self, source: Source, reason: Reason) -> u64 {
        self.inner
            .lock()
            .rejected
            .get(&(source, reason))
            .copied()
            .unwrap_or(0)
    }

    /// Connection-level refusals of the HTTP listener, for tests.
    #[cfg(test)]
    pub(crate) fn http_rejected_count(&self, reason: Reason) -> u64 {
        self.inner
            .lock()
            .http_rejected
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }

    /// Lines skipped, for tests.
    #[cfg(test)]
    pub(crate) fn skipped_count(&self, source: Source, reason: &str) -> u64 {
        self.inner
            .lock()
            .skipped
            .iter()
            .filter(|((s, r), _)| *s == source && *r == reason)
            .map(|(_, n)| *n)
            .sum()
    }

    /// A value set with [`Stats::set`], for tests.
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.inner.lock().gauges.get(name).copied()
    }

    /// Samples accepted, for tests.
    #[cfg(test)]
    pub(crate) fn accepted_count(&self, source: Source) -> u64 {
        self.inner.lock().samples[source.index()]
    }
}
