//! Telltale's own metrics: every `telltale_*` series the engine writes to its store, so
//! that rules watch the engine like anything else.
//!
//! The names are constants here and nowhere else: the stages emit them through these
//! constants, `docs/metrics.md` lists them from [`ALL`] (beside the plugins' catalogues;
//! `tests/e2e/catalogue.rs` fails when the page is stale), and a test of that file checks
//! that no engine source spells a `telltale_` metric name outside this module.

/// One self-metric: what the catalogue says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfMetric {
    /// The series name.
    pub name: &'static str,
    /// `gauge` or `counter` (Prometheus' meaning: a counter only goes up, until a
    /// restart of the engine).
    pub kind: &'static str,
    /// The unit (`none` for counts).
    pub unit: &'static str,
    /// The labels every series of it carries (some series carry fewer: see `help`).
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
    /// The stage that writes it (a heading in the catalogue).
    pub stage: &'static str,
}

macro_rules! self_metrics {
    ($( $(#[$doc:meta])* $id:ident = $name:literal, $kind:literal, $unit:literal, [$($label:literal),*], $stage:literal, $help:literal; )*) => {
        $(
            $(#[$doc])*
            pub const $id: SelfMetric = SelfMetric {
                name: $name,
                kind: $kind,
                unit: $unit,
                labels: &[$($label),*],
                help: $help,
                stage: $stage,
            };
        )*
        /// Every self-metric, in catalogue order.
        pub const ALL: &[SelfMetric] = &[$($id),*];
    };
}

self_metrics! {
    /// The state of a plugin instance, one series per state (1 for the current one).
    PLUGIN_STATE = "telltale_plugin_state", "gauge", "none", ["plugin", "kind", "state"], "plugins",
        "1 for the instance's current state (`running`, `backing_off`, `quarantined`), 0 for the others.";
    /// Whether the last call succeeded.
    PLUGIN_UP = "telltale_plugin_up", "gauge", "none", ["plugin", "kind"], "plugins",
        "1 when the instance is running and its last call succeeded, else 0.";
    /// Calls by outcome.
    PLUGIN_CALLS = "telltale_plugin_calls_total", "counter", "none", ["plugin", "kind", "outcome"], "plugins",
        "Calls by `outcome` (`ok`, `error`).";
    /// The last call's duration.
    PLUGIN_CALL_DURATION = "telltale_plugin_call_duration_seconds", "gauge", "seconds", ["plugin", "kind"], "plugins",
        "Duration of the last call.";
    /// Sum of call durations.
    PLUGIN_CALL_DURATION_SUM = "telltale_plugin_call_duration_seconds_sum", "counter", "seconds", ["plugin", "kind"], "plugins",
        "Total time spent in calls (with `_count`, the mean call duration).";
    /// Number of timed calls.
    PLUGIN_CALL_DURATION_COUNT = "telltale_plugin_call_duration_seconds_count", "counter", "none", ["plugin", "kind"], "plugins",
        "Calls timed in `_sum`.";
    /// Samples of the last call.
    PLUGIN_SAMPLES = "telltale_plugin_samples", "gauge", "none", ["plugin", "kind"], "plugins",
        "Samples the last call returned.";
    /// What the store refused of a plugin's output.
    PLUGIN_SAMPLES_DROPPED = "telltale_plugin_samples_dropped_total", "counter", "none", ["plugin", "kind", "reason"], "plugins",
        "Samples the store refused, by `reason` (`out_of_order`, `store_series_limit`, `store_bytes_limit`, `source_limit`).";
    /// Fresh instances after a failure.
    PLUGIN_RESTARTS = "telltale_plugin_restarts_total", "counter", "none", ["plugin", "kind"], "plugins",
        "Instances created again after a failure.";
    /// Reloads by outcome.
    PLUGIN_RELOADS = "telltale_plugin_reloads_total", "counter", "none", ["plugin", "kind", "outcome"], "plugins",
        "Reloads (changed file or SIGHUP) by `outcome` (`ok`, `failed`).";
    /// Failures in a row.
    PLUGIN_CONSECUTIVE_FAILURES = "telltale_plugin_consecutive_failures", "gauge", "none", ["plugin", "kind"], "plugins",
        "Failures in a row; quarantine follows at `supervision.quarantine_after`.";
    /// The newest failure.
    PLUGIN_LAST_ERROR = "telltale_plugin_last_error_timestamp_seconds", "gauge", "seconds", ["plugin", "kind", "reason", "error"], "plugins",
        "Unix time of the newest failure; `reason` (`timeout`, `trap`, `memory_limit`, `output_limit`, `failed`, …) and `error` (the message, cut to 240 characters) say what it was. Only the newest failure has a series.";

    /// Rules loaded.
    RULES_LOADED = "telltale_rules_loaded", "gauge", "none", [], "rules",
        "Rules loaded.";
    /// How long the last evaluation took.
    RULE_EVALUATION_DURATION = "telltale_rule_evaluation_duration_seconds", "gauge", "seconds", [], "rules",
        "Duration of the last evaluation of every rule.";
    /// Rules that failed in the last evaluation.
    RULE_ERRORS = "telltale_rule_errors", "gauge", "none", [], "rules",
        "Rules whose last evaluation failed.";
    /// Alerts by state.
    ALERTS = "telltale_alerts", "gauge", "none", ["state"], "rules",
        "Active alerts by `state` (`firing`, `pending`).";
    /// Series in the store.
    STORE_SERIES = "telltale_store_series", "gauge", "none", [], "store",
        "Series held in the store.";
    /// Analyzer events in the store.
    STORE_EVENTS = "telltale_store_events", "gauge", "none", [], "store",
        "Analyzer events held in the store (what rules read with `events()`).";
    /// Analyzer events dropped over the per-source cap.
    STORE_EVENTS_DROPPED = "telltale_store_events_dropped_total", "counter", "none", ["source"], "store",
        "Analyzer events dropped, oldest first, because their `source` (`analyzer:NAME`) already held the most the store keeps per source (1,000).";
    /// Size of the database file.
    STORE_DISK_BYTES = "telltale_store_disk_bytes", "gauge", "bytes", [], "store",
        "Bytes the durable store's database takes on disk (its file and SQLite's write-ahead log).";
    /// Samples written to disk.
    STORE_DISK_SAMPLES_WRITTEN = "telltale_store_disk_samples_written_total", "counter", "none", [], "store",
        "Samples the durable store wrote to disk (each reaches disk within `store.flush_interval`).";
    /// Failed writes.
    STORE_DISK_WRITE_ERRORS = "telltale_store_disk_write_errors_total", "counter", "none", ["reason"], "store",
        "Failed writes to the durable store by `reason` (`full`: the disk or the file's size cap is full; `error`: anything else). Writing is retried; collection and alerting go on in memory meanwhile.";
    /// Whether the disk is full.
    STORE_DISK_FULL = "telltale_store_disk_full", "gauge", "none", [], "store",
        "1 while the durable store cannot write because the disk is full, else 0.";
    /// Chunks deleted to stay under `max_disk`.
    STORE_DISK_EVICTED = "telltale_store_disk_evicted_chunks_total", "counter", "none", ["tier"], "store",
        "Chunks deleted, oldest first, to keep the database under `store.max_disk`, by `tier` (`raw`, `1m`, `1h`, `1d`).";
    /// Samples that never reached disk.
    STORE_DISK_DROPPED = "telltale_store_disk_dropped_samples_total", "counter", "none", ["reason"], "store",
        "Samples kept in memory but not written to disk, by `reason` (`backlog`: the writer fell too far behind or the disk stayed full beyond the backlog cap; `stale`: after a restart, older than what the disk already holds for the series).";

    /// Samples accepted per push source.
    INGEST_SAMPLES = "telltale_ingest_samples_total", "counter", "none", ["source"], "ingest",
        "Samples accepted.";
    /// Requests by outcome.
    INGEST_REQUESTS = "telltale_ingest_requests_total", "counter", "none", ["source", "outcome"], "ingest",
        "Requests (`ok`, `rejected`) and, for StatsD, datagrams (`ok`, `partial`, `rejected`).";
    /// Refusals by reason.
    INGEST_REJECTED = "telltale_ingest_rejected_total", "counter", "none", ["source", "reason"], "ingest",
        "Refusals by `reason` (`parse`, `body_size`, `series_limit`, `overloaded`, `body_timeout`, …; see docs/ingest.md); with `source=\"http\"`, connections refused before a request reached an endpoint (`header_timeout`).";
    /// Valid input that gave no sample.
    INGEST_SKIPPED = "telltale_ingest_skipped_total", "counter", "none", ["source", "reason"], "ingest",
        "Valid input of accepted requests that gave no sample (Influx lines whose fields are all strings: `string_fields`).";
    /// Samples of accepted requests the store dropped.
    INGEST_DROPPED = "telltale_ingest_dropped_total", "counter", "none", ["source", "reason"], "ingest",
        "Samples of accepted requests the store dropped (`out_of_order`, `store_series_limit`, `store_bytes_limit`, `source_limit`).";
    /// Sum of request durations.
    INGEST_REQUEST_DURATION_SUM = "telltale_ingest_request_duration_seconds_sum", "counter", "seconds", ["source"], "ingest",
        "Time spent on requests (StatsD: on datagrams).";
    /// Number of timed requests.
    INGEST_REQUEST_DURATION_COUNT = "telltale_ingest_request_duration_seconds_count", "counter", "none", ["source"], "ingest",
        "Requests timed in `_sum`.";
    /// Live Pushgateway groups.
    INGEST_PUSH_GROUPS = "telltale_ingest_push_groups", "gauge", "none", [], "ingest",
        "Live Pushgateway groups.";
    /// Open HTTP connections.
    INGEST_HTTP_CONNECTIONS = "telltale_ingest_http_connections", "gauge", "none", [], "ingest",
        "Open HTTP connections (at most `ingest.http.max_connections`).";
    /// The StatsD socket's receive buffer.
    INGEST_STATSD_RECEIVE_BUFFER = "telltale_ingest_statsd_receive_buffer_bytes", "gauge", "bytes", [], "ingest",
        "The StatsD socket's receive buffer as the kernel reports it (Linux reports twice what was asked).";
    /// Datagrams the kernel dropped.
    INGEST_STATSD_KERNEL_DROPS = "telltale_ingest_statsd_kernel_drops_total", "counter", "none", [], "ingest",
        "Datagrams the kernel dropped for the StatsD socket because its buffer was full (Linux only).";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("telltale_"), "{}", m.name);
            assert!(matches!(m.kind, "gauge" | "counter"), "{}", m.name);
            // `_sum` / `_count` pair with a histogram-like base and keep its name.
            let sum_or_count = m.name.ends_with("_sum") || m.name.ends_with("_count");
            assert_eq!(
                m.kind == "counter",
                m.name.ends_with("_total") || sum_or_count,
                "{}: counters end in _total (or _sum/_count), gauges do not",
                m.name
            );
            assert!(!m.help.is_empty(), "{}", m.name);
        }
    }
}
