//! Limits, the checks that apply them, and the rejection every refused request gets.
//!
//! The order is fixed: parse everything, check everything, then store. A check never
//! stores, so a request refused here leaves the store untouched.

use axum::http::StatusCode;
use telltale_formats::ParsedSample;

use telltale_config::IngestLimitsConfig;
use telltale_model::{Labels, Point, TimestampMs};
use telltale_store::{Bound, IngestReport, Refusal, SeriesId, StoreSample, StoreWriter};

/// The ingest limits in effect (see `IngestLimitsConfig` for their meaning).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body in bytes.
    pub max_body: usize,
    /// Most samples per request.
    pub max_samples_per_request: usize,
    /// Most labels per sample.
    pub max_labels_per_sample: usize,
    /// Longest metric name.
    pub max_metric_name_length: usize,
    /// Longest label name.
    pub max_label_name_length: usize,
    /// Longest label value.
    pub max_label_value_length: usize,
    /// Most live series per source.
    pub max_series_per_source: usize,
    /// Most concurrent HTTP requests.
    pub max_in_flight: usize,
}

impl Limits {
    /// The limits a config section asks for.
    pub fn from_config(c: &IngestLimitsConfig) -> Limits {
        Limits {
            max_body: usize::try_from(c.max_body.0).unwrap_or(usize::MAX),
            max_samples_per_request: c.max_samples_per_request,
            max_labels_per_sample: c.max_labels_per_sample,
            max_metric_name_length: c.max_metric_name_length,
            max_label_name_length: c.max_label_name_length,
            max_label_value_length: c.max_label_value_length,
            max_series_per_source: c.max_series_per_source,
            max_in_flight: c.max_in_flight,
        }
    }
}

/// Why a request (or part of a datagram) was refused: the `reason` label of
/// `telltale_ingest_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Reason {
    /// Syntax or semantic error in the body.
    Parse,
    /// Not UTF-8, or a corrupt gzip body.
    Encoding,
    /// Body larger than `max_body`.
    BodySize,
    /// More samples than `max_samples_per_request`.
    Samples,
    /// More labels than `max_labels_per_sample`.
    Labels,
    /// A name or label value longer than allowed.
    Length,
    /// Would exceed `max_series_per_source` (or the Pushgateway's `max_groups`).
    SeriesLimit,
    /// The store holds its maximum number of series.
    StoreFull,
    /// Missing or wrong token.
    Unauthorized,
    /// Protobuf, a compression other than gzip, or another body the endpoint does not take.
    MediaType,
    /// `max_in_flight` requests already running.
    Overloaded,
    /// A pushed sample carried a timestamp (the Pushgateway refuses those too).
    Timestamp,
    /// A malformed Pushgateway path or query parameter.
    Request,
    /// A StatsD name sent with two types.
    TypeConflict,
    /// A connection's request line and headers did not arrive within `header_timeout`.
    HeaderTimeout,
    /// A body did not arrive within `body_timeout`.
    BodyTimeout,
    /// A body arrived slower than `min_body_rate`.
    BodyRate,
}

impl Reason {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Parse => "parse",
            Reason::Encoding => "encoding",
            Reason::BodySize => "body_size",
            Reason::Samples => "samples_per_request",
            Reason::Labels => "labels_per_sample",
            Reason::Length => "length",
            Reason::SeriesLimit => "series_limit",
            Reason::StoreFull => "store_full",
            Reason::Unauthorized => "unauthorized",
            Reason::MediaType => "media_type",
            Reason::Overloaded => "overloaded",
            Reason::Timestamp => "timestamp",
            Reason::Request => "request",
            Reason::TypeConflict => "type_conflict",
            Reason::HeaderTimeout => "header_timeout",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyRate => "body_rate",
        }
    }
}

/// A refused request: status, reason, a message naming the first problem, where it is, and
/// what to do about it.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) reason: Reason,
    pub(crate) message: String,
    /// 1-based line and column in the body, when known.
    pub(crate) position: Option<(usize, usize)>,
    /// JSON path (`samples[3].value`), for the JSON endpoint.
    pub(crate) path: Option<String>,
    /// How to fix it.
    pub(crate) hint: Option<String>,
}

impl Rejection {
    /// A rejection with a status and message and nothing else.
    pub(crate) fn new(status: StatusCode, reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            status,
            reason,
            message: message.into(),
            position: None,
            path: None,
            hint: None,
        }
    }

    /// A 400 at a position of the body.
    pub(crate) fn parse(err: &telltale_formats::ParseError) -> Self {
        Rejection {
            position: Some((err.line, err.column)),
            hint: Some("fix this line and send the whole request again".into()),
            ..Rejection::new(StatusCode::BAD_REQUEST, Reason::Parse, err.message.clone())
        }
    }

    /// Adds a hint.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message with its position: `line 3, column 17: expected …`.
    pub(crate) fn located_message(&self) -> String {
        match (self.position, &self.path) {
            (Some((l, c)), Some(p)) => format!("{p} (line {l}, column {c}): {}", self.message),
            (Some((l, c)), None) => format!("line {l}, column {c}: {}", self.message),
            (None, Some(p)) => format!("{p}: {}", self.message),
            (None, None) => self.message.clone(),
        }
    }
}

/// Finds the first line of `body` containing `needle`: (line, column), 1-based, column in
/// characters. Used to point limit violations at a line although the parsers return bare
/// samples; only on the error path.
pub(crate) fn locate(body: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    body.split('\n').enumerate().find_map(|(i, line)| {
        line.find(needle)
            .map(|at| (i + 1, line[..at].chars().count() + 1))
    })
}

/// Checks one sample's names against the limits. `index` names it in messages; `body`,
/// when given, is searched to point at the offending line.
pub(crate) fn check_sample(
    limits: &Limits,
    name: &str,
    labels: &Labels,
    index: usize,
    body: Option<&str>,
) -> Result<(), Rejection> {
    check_labels(
        limits,
        name,
        labels.len(),
        labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        index,
        body,
    )
}

/// [`check_sample`] on borrowed labels (`count` of them), so the ingest paths can check
/// parsed samples without building a label map first. Allocates only on the error path.
pub(crate) fn check_labels<'a>(
    limits: &Limits,
    name: &str,
    count: usize,
    labels: impl Iterator<Item = (&'a str, &'a str)>,
    index: usize,
    body: Option<&str>,
) -> Result<(), Rejection> {
    let at = |needle: &str| body.and_then(|b| locate(b, needle));
    if name.len() > limits.max_metric_name_length {
        return Err(Rejection {
            position: at(name),
            ..Rejection::new(
                StatusCode::BAD_REQUEST,
                Reason::Length,
                format!(
                    "sample {}: metric name `{}…` is {} bytes long; the limit is {}",
                    index + 1,
                    truncate(name, 40),
                    name.len(),
                    limits.max_metric_name_length
                ),
            )
        }
        .hint("shorten the name, or raise ingest.limits.max_metric_name_length"));
    }
    if count > limits.max_labels_per_sample {
        return Err(Rejection {
            position: at(name),
            ..Rejection::new(
                StatusCode::BAD_REQUEST,
                Reason::Labels,
                format!(
                    "sample {} (`{name}`) has {} labels; the limit is {}",
                    index + 1,
                    count,
                    limits.max_labels_per_sample
                ),
            )
        }
        .hint("send fewer labels, or raise ingest.limits.max_labels_per_sample"));
    }
    for (k, v) in labels {
        if k.len() > limits.max_label_name_length {
            return Err(Rejection {
                position: at(k),
                ..Rejection::new(
                    StatusCode::BAD_REQUEST,
                    Reason::Length,
                    format!(
                        "sample {} (`{name}`): label name `{}…` is {} bytes long; the limit is {}",
                        index + 1,
                        truncate(k, 40),
                        k.len(),
                        limits.max_label_name_length
                    ),
                )
            }
            .hint("shorten the label name, or raise ingest.limits.max_label_name_length"));
        }
        if v.len() > limits.max_label_value_length {
            return Err(Rejection {
                position: at(v),
                ..Rejection::new(
                    StatusCode::BAD_REQUEST,
                    Reason::Length,
                    format!(
                        "sample {} (`{name}`): the value of label `{k}` is {} bytes long; the limit is {}",
                        index + 1,
                        v.len(),
                        limits.max_label_value_length
                    ),
                )
            }
            .hint("shorten the value, or raise ingest.limits.max_label_value_length"));
        }
    }
    Ok(())
}

/// Refuses a request with more samples than allowed.
pub(crate) fn check_count(limits: &Limits, n: usize) -> Result<(), Rejection> {
    if n > limits.max_samples_per_request {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            Reason::Samples,
            format!(
                "the request holds {n} samples; the limit is {}",
                limits.max_samples_per_request
            ),
        )
        .hint("split it into smaller requests, or raise ingest.limits.max_samples_per_request"));
    }
    Ok(())
}

/// Checks parsed samples against every limit, in place: nothing is converted or stored.
pub(crate) fn check_parsed(
    limits: &Limits,
    parsed: &[ParsedSample],
    body: &str,
) -> Result<(), Rejection> {
    check_count(limits, parsed.len())?;
    for (i, p) in parsed.iter().enumerate() {
        check_labels(
            limits,
            &p.name,
            p.labels.len(),
            p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            i,
            Some(body),
        )?;
    }
    Ok(())
}

/// A parsed sample as the store takes it, by reference: samples without a timestamp get
/// the request's `now`. (The parsers keep labels sorted and unique, as the store needs.)
pub(crate) struct ParsedAt<'a>(pub(crate) &'a ParsedSample, pub(crate) TimestampMs);

impl SeriesId for ParsedAt<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.0.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl StoreSample for ParsedAt<'_> {
    fn point(&self) -> Point {
        Point {
            timestamp_ms: self.0.timestamp_ms.unwrap_or(self.1),
            value: self.0.value,
        }
    }
}

fn truncate(s: &str, chars: usize) -> &str {
    match s.char_indices().nth(chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Stores a request's samples through its listener's writer, all or none: the store checks
/// the series they would create against the listener's, the push listeners' and its own
/// bounds under one lock, so concurrent requests cannot both pass the check.
pub(crate) fn store_all<S: StoreSample>(
    writer: &StoreWriter,
    samples: &[S],
) -> Result<IngestReport, Rejection> {
    writer.ingest_all(samples).map_err(refused)
}

/// The answer to a write the store has no room for: 400 when the request is over its own
/// source's bound (sending it again will not help), 503 when the push listeners' share or
/// the store is full (room comes back as old series are pruned).
pub(crate) fn refused(r: Refusal) -> Rejection {
    let (status, reason, hint) = match (r.bound, r.source.as_str()) {
        (Bound::SourceSeries | Bound::SourceBytes, INGEST_GROUP) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::StoreFull,
            "retry later (old series are pruned after engine.retention), or raise \
             ingest.limits.max_series / ingest.limits.max_series_bytes (the push listeners' \
             share of the store)",
        ),
        (Bound::SourceSeries, _) => (
            StatusCode::BAD_REQUEST,
            Reason::SeriesLimit,
            "send fewer distinct label combinations, or raise \
             ingest.limits.max_series_per_source",
        ),
        (Bound::SourceBytes, _) => (
            StatusCode::BAD_REQUEST,
            Reason::SeriesLimit,
            "send fewer or shorter labels, or raise ingest.limits.max_series_bytes_per_source",
        ),
        (Bound::StoreSeries, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::StoreFull,
            "retry later (old series are pruned after engine.retention), or raise \
             engine.max_series",
        ),
        (Bound::StoreBytes, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::StoreFull,
            "retry later (old series are pruned after engine.retention), or raise \
             engine.max_series_bytes",
        ),
    };
    Rejection::new(status, reason, r.to_string()).hint(hint)
}

/// The store source whose bounds every push listener shares.
pub(crate) const INGEST_GROUP: &str = "ingest";
