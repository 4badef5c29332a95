//! Influx line protocol: `POST /api/v2/write?precision=ns|us|ms|s` (InfluxDB 2) and
//! `POST /write?precision=n|u|ms|s|m|h` (InfluxDB 1). `org`, `bucket`, `db`, `rp` and the
//! other Influx parameters are accepted and ignored: Telltale has one store. 204 on success.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use telltale_formats::influx::{Precision, parse_lines_counted};

use super::http::{Style, Work, rejection_response, write};
use super::limits::{ParsedAt, Reason, Rejection, check_parsed, store_all};
use super::{Shared, Source};

/// The `reason` of `telltale_ingest_skipped_total` for lines whose fields are all strings.
pub(crate) const STRING_FIELDS: &str = "string_fields";

/// `POST /api/v2/write`.
pub(crate) async fn write_v2(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(shared, params, headers, body, &["ns", "us", "ms", "s"]).await
}

/// `POST /write` (InfluxDB 1.x).
pub(crate) async fn write_v1(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        shared,
        params,
        headers,
        body,
        &["n", "ns", "u", "us", "ms", "s", "m", "h"],
    )
    .await
}

async fn handle(
    shared: Arc<Shared>,
    params: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
    allowed: &'static [&'static str],
) -> Response {
    let precision = match params.get("precision").map(String::as_str) {
        None | Some("") => Ok(Precision::Nanoseconds),
        Some(p) if allowed.contains(&p) => {
            Precision::from_param(p).ok_or_else(|| bad_precision(p, allowed))
        }
        Some(p) => Err(bad_precision(p, allowed)),
    };
    let precision = match precision {
        Ok(p) => p,
        Err(r) => {
            shared.stats.request(Source::Influx, "rejected", None);
            shared.stats.rejected(Source::Influx, r.reason, 1);
            return rejection_response(Style::Json, &r);
        }
    };
    let work: Work = Box::new(move |shared: &Shared, text: &str, now| {
        let lines = parse_lines_counted(text, precision, now).map_err(|e| Rejection::parse(&e))?;
        let parsed = lines.samples;
        check_parsed(&shared.limits, &parsed, text)?;
        let samples: Vec<ParsedAt<'_>> = parsed.iter().map(|p| ParsedAt(p, now)).collect();
        let n = samples.len();
        let report = store_all(shared.writer(Source::Influx), &samples)?;
        shared.stats.dropped(Source::Influx, &report);
        // Counted only once the request is taken: a refused one leaves no trace at all.
        shared
            .stats
            .skipped(Source::Influx, STRING_FIELDS, lines.string_only_lines);
        Ok(n)
    });
    match write(&shared, Source::Influx, &headers, body, work).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => rejection_response(Style::Json, &r),
    }
}

fn bad_precision(p: &str, allowed: &[&str]) -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        Reason::Request,
        format!("invalid precision `{p}`"),
    )
    .hint(format!("use one of: {}", allowed.join(", ")))
}
