//! Strict, fast parsers for the metric formats Telltale ingests.
//!
//! * [`prometheus`]: Prometheus text exposition 0.0.4 and OpenMetrics 1.0 text, as served by
//!   `/metrics` endpoints and pushed to a Pushgateway.
//! * [`influx`]: InfluxDB line protocol (`/api/v2/write`, `/write`).
//! * [`statsd`]: StatsD / DogStatsD datagrams, plus an [`statsd::Aggregator`] that turns them
//!   into samples once per flush interval.
//!
//! The crate does no I/O, spawns no threads and depends on nothing but `std` and `thiserror`,
//! so the same code runs in the engine and inside the WebAssembly (wasm32-wasip2) scraper
//! plugin. It deliberately does not depend on the engine: every parser produces the small,
//! self-contained [`ParsedSample`], which the engine converts to its own types.
//!
//! Every parser is all-or-nothing: it either returns everything in the input or a
//! [`ParseError`] naming the first bad line and column, so a caller never stores half of a
//! rejected request.
//!
//! ```
//! use telltale_formats::prometheus::{parse_text, Format};
//!
//! let exposition = parse_text(
//!     "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 1027\n",
//!     Format::Text004,
//! )?;
//! let sample = &exposition.families[0].samples[0];
//! assert_eq!(sample.name, "http_requests_total");
//! assert_eq!(sample.labels, vec![("code".to_string(), "200".to_string())]);
//! assert_eq!(sample.value, 1027.0);
//! # Ok::<(), telltale_formats::ParseError>(())
//! ```

#![forbid(unsafe_code)]

pub mod influx;
mod names;
pub mod prometheus;
pub mod statsd;

pub use names::{
    is_valid_label_name, is_valid_metric_name, sanitize_label_name, sanitize_metric_name,
};

/// One sample as a Prometheus-compatible store would keep it: a series identity (name plus
/// labels) and a value, with an optional timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// Series name, e.g. `http_request_duration_seconds_bucket`.
    pub name: String,
    /// Labels sorted by name, without duplicates. Labels with an empty value are left out,
    /// because Prometheus treats an empty label exactly like a missing one.
    pub labels: Vec<(String, String)>,
    /// The value; Prometheus formats may carry `NaN` and infinities.
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the input carried a timestamp (or the parser
    /// was given a default, as the Influx parser is).
    pub timestamp_ms: Option<i64>,
}

impl ParsedSample {
    /// The value of label `name`, if present.
    ///
    /// ```
    /// # use telltale_formats::ParsedSample;
    /// let s = ParsedSample {
    ///     name: "up".into(),
    ///     labels: vec![("job".into(), "node".into())],
    ///     value: 1.0,
    ///     timestamp_ms: None,
    /// };
    /// assert_eq!(s.label("job"), Some("node"));
    /// assert_eq!(s.label("instance"), None);
    /// ```
    pub fn label(&self, name: &str) -> Option<&str> {
        // Labels are sorted, but they are few: a linear scan beats a binary search here.
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The type of a metric family, as declared by a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Classic histogram: `_bucket{le=...}`, `_sum`, `_count` series.
    Histogram,
    /// Summary: `{quantile=...}`, `_sum`, `_count` series.
    Summary,
    /// No type declared (`untyped` in 0.0.4, `unknown` in OpenMetrics).
    Untyped,
    /// OpenMetrics gauge histogram: `_bucket{le=...}`, `_gsum`, `_gcount` series.
    GaugeHistogram,
    /// OpenMetrics info metric: one `_info` series with value 1.
    Info,
    /// OpenMetrics state set: one series per state, label named after the family.
    StateSet,
}

impl MetricType {
    /// The keyword used on a `# TYPE` line (`unknown` for [`MetricType::Untyped`] in
    /// OpenMetrics, `untyped` in 0.0.4: this returns the 0.0.4 spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

impl std::fmt::Display for MetricType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syntax or consistency error, located at the first offending character.
///
/// `line` and `column` are 1-based; `column` counts characters (not bytes), so it matches what
/// an editor shows. The message says what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was wrong / expected, e.g. `expected '=' after label name "code"`.
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte offset `byte_offset` of `line_text` (line number `line`,
    /// 1-based). The column is computed here, only on the error path, so the parsers never
    /// count characters while things go well.
    pub(crate) fn at(
        line: usize,
        line_text: &str,
        byte_offset: usize,
        message: impl Into<String>,
    ) -> Self {
        let end = byte_offset.min(line_text.len());
        // `byte_offset` is always a char boundary in our parsers (they stop on ASCII bytes),
        // but stay safe if it is not: count the chars that start before it.
        let column = line_text
            .char_indices()
            .take_while(|(i, _)| *i < end)
            .count()
            + 1;
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// Iterates over the lines of `input` with their 1-based numbers, splitting on `\n` only.
/// A final `\n` does not produce an extra empty line.
pub(crate) fn numbered_lines(input: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = input.strip_suffix('\n').unwrap_or(input);
    // An empty input has no lines at all (not one empty line).
    let skip_all = input.is_empty();
    body.split('\n')
        .enumerate()
        .filter(move |_| !skip_all)
        .map(|(i, l)| (i + 1, l))
}

/// Parses a decimal float as written by metric clients, rejecting the spellings Rust accepts
/// but the formats do not (`inf`, `infinity`, `nan` in any case): the caller handles the
/// Prometheus spellings `NaN`, `+Inf`, `-Inf` itself where they are allowed.
pub(crate) fn parse_plain_float(s: &str) -> Option<f64> {
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None;
    }
    // After an optional sign, Rust would still take "inf"/"nan": require a digit or '.'.
    let rest = if first == b'-' || first == b'+' {
        &s[1..]
    } else {
        s
    };
    let next = *rest.as_bytes().first()?;
    if !(next.is_ascii_digit() || next == b'.') {
        return None;
    }
    s.parse::<f64>().ok()
}
