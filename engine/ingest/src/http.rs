//! The ingest HTTP listener: routes, authentication, bounded body reading, and the one
//! request path every write endpoint shares (auth → in-flight permit → bounded body →
//! gzip (bounded too) → UTF-8 → parse + check + store → response and self-metrics).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::debug;

use super::conn::{self, Patience, body_cut};
use super::limits::{Reason, Rejection};
use super::{Shared, Source, influx, json, pushgateway};
use telltale_model::{TimestampMs, now_ms};

/// Bodies larger than this are parsed on the blocking pool so a big request does not hold
/// up the async workers (small ones are parsed in place: a thread hop costs more).
const BLOCKING_THRESHOLD: usize = 64 << 10;

/// Serves `shared` on `listener` until `stop` completes, with the connection and timeout
/// bounds of `patience` (`conn.rs`).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    patience: Patience,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    conn::serve(listener, router(shared.clone()), shared, patience, stop).await;
}

/// Every ingest route.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/metrics/{*grouping}",
            put(pushgateway::handle)
                .post(pushgateway::handle)
                .delete(pushgateway::handle),
        )
        .route("/api/v2/write", post(influx::write_v2))
        .route("/write", post(influx::write_v1))
        .route("/api/v1/samples", post(json::write_json))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }))
        .route(
            "/health",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"name":"telltale","status":"pass"}"#,
                )
            }),
        )
        .route(
            "/ping",
            get(|| async { StatusCode::NO_CONTENT }).head(|| async { StatusCode::NO_CONTENT }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found; ingest endpoints: PUT/POST/DELETE /metrics/job/<job>{/<label>/<value>}, \
                 POST /api/v2/write, POST /write, POST /api/v1/samples (see docs/ingest.md)\n",
            )
        })
        .with_state(shared)
}

/// How an endpoint writes its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Plain text, as the Pushgateway answers.
    Text,
    /// JSON with `code`/`message` (Influx v2), `error` (Influx v1) and our own fields.
    Json,
}

/// Work done on a whole, UTF-8 body: parse, check, store; returns the samples stored.
pub(crate) type Work =
    Box<dyn FnOnce(&Shared, &str, TimestampMs) -> Result<usize, Rejection> + Send + 'static>;

/// The shared request path. Counts the request in the self-metrics whatever the outcome.
pub(crate) async fn write(
    shared: &Arc<Shared>,
    source: Source,
    headers: &HeaderMap,
    body: Body,
    work: Work,
) -> Result<usize, Rejection> {
    let started = Instant::now();
    let result = write_inner(shared, headers, body, work).await;
    let took = Some(started.elapsed());
    match &result {
        Ok(n) => {
            shared.stats.request(source, "ok", took);
            shared.stats.accepted(source, *n);
        }
        Err(r) => {
            debug!(
                source = source.as_str(),
                "ingest request refused: {}",
                r.located_message()
            );
            shared.stats.request(source, "rejected", took);
            shared.stats.rejected(source, r.reason, 1);
        }
    }
    result
}

async fn write_inner(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
    work: Work,
) -> Result<usize, Rejection> {
    check_auth(shared, headers)?;
    // Take a slot before reading the body: beyond `max_in_flight` requests are refused at
    // once instead of being buffered, which keeps memory bounded under overload.
    let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
        return Err(Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            Reason::Overloaded,
            format!(
                "{} ingest requests are already being processed",
                shared.limits.max_in_flight
            ),
        )
        .hint("retry after a short pause, send fewer concurrent requests, or raise ingest.limits.max_in_flight"));
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().map(str::trim))
    {
        None => false,
        Some(Ok(e)) if e.is_empty() || e.eq_ignore_ascii_case("identity") => false,
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => true,
        Some(enc) => {
            return Err(Rejection::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Reason::MediaType,
                format!(
                    "Content-Encoding `{}` is not supported",
                    enc.unwrap_or("(not text)")
                ),
            )
            .hint("send the body uncompressed or gzip-compressed"));
        }
    };
    let max = shared.limits.max_body;
    let too_large = move |what: String| {
        Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, Reason::BodySize, what)
            .hint("split the data into smaller requests, or raise ingest.limits.max_body")
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|len| *len > max as u64)
    {
        return Err(too_large(format!(
            "the body is {len} bytes; the limit is {max} bytes"
        )));
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(format!(
                "the body is larger than the limit of {max} bytes"
            )));
        }
        Err(e) => {
            if let Some(cut) = body_cut(&*e) {
                return Err(Rejection::new(
                    StatusCode::REQUEST_TIMEOUT,
                    cut.reason,
                    cut.to_string(),
                )
                .hint(
                    "send the body right after the headers; for a slow link raise \
                     ingest.http.body_timeout or lower ingest.http.min_body_rate",
                ));
            }
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                Reason::Request,
                format!("cannot read the request body: {e}"),
            ));
        }
    };
    let shared = shared.clone();
    let run = move || {
        let _permit = permit;
        let bytes = if gzip {
            gunzip(&bytes, max, too_large)?.into()
        } else {
            bytes
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| utf8_rejection(&bytes, e))?;
        work(&shared, text, now_ms())
    };
    // A small gzip body may inflate to `max_body`: decompress it off the async workers too.
    if gzip || bytes_len_hint(headers) > BLOCKING_THRESHOLD {
        tokio::task::spawn_blocking(run).await.map_err(|e| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Reason::Request,
                format!("the request could not be processed: {e}"),
            )
        })?
    } else {
        run()
    }
}

/// Decompresses a gzip body (all members, as Go's and Python's readers do), refusing it
/// as soon as it inflates beyond `max` bytes: the limit bounds the decompressed size, so a
/// small "gzip bomb" costs at most `max` bytes of memory (the buffer grows by doubling but
/// never past `max`, where `read_to_end` could double it to twice the limit).
fn gunzip(
    compressed: &[u8],
    max: usize,
    too_large: impl Fn(String) -> Rejection,
) -> Result<Vec<u8>, Rejection> {
    use std::io::Read as _;
    let invalid = |e: std::io::Error| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            Reason::Encoding,
            format!("the body is not valid gzip: {e}"),
        )
        .hint("send a complete gzip stream, or drop the Content-Encoding header")
    };
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(max));
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(e)),
        };
        let len = out.len() + n;
        if len > max {
            return Err(too_large(format!(
                "the body decompresses to more than the limit of {max} bytes"
            )));
        }
        if len > out.capacity() {
            let target = out.capacity().saturating_mul(2).clamp(len, max);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// The declared body length, 0 when unknown (chunked bodies are parsed in place).
fn bytes_len_hint(headers: &HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn utf8_rejection(bytes: &[u8], e: std::str::Utf8Error) -> Rejection {
    let valid = &bytes[..e.valid_up_to()];
    let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    Rejection {
        position: Some((line, column)),
        ..Rejection::new(
            StatusCode::BAD_REQUEST,
            Reason::Encoding,
            "the body is not valid UTF-8",
        )
    }
    .hint("send UTF-8 text")
}

/// Refuses a request without the configured token.
pub(crate) fn check_auth(shared: &Shared, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(token) = &shared.token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            let (scheme, cred) = v.split_once(' ')?;
            let cred = cred.trim();
            match scheme.to_ascii_lowercase().as_str() {
                "bearer" | "token" => Some(cred.to_string()),
                "basic" => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(cred)
                        .ok()?;
                    let text = String::from_utf8(raw).ok()?;
                    text.split_once(':').map(|(_, p)| p.to_string())
                }
                _ => None,
            }
        });
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            Reason::Unauthorized,
            "the token is wrong",
        )),
        None => Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            Reason::Unauthorized,
            "this listener needs a token",
        )
        .hint("send `Authorization: Bearer <token>` (ingest.http.token)")),
    }
}

/// Compares without an early exit, so response time does not reveal the matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The response for a refused request.
pub(crate) fn rejection_response(style: Style, r: &Rejection) -> Response {
    let mut response = match style {
        Style::Text => {
            let mut text = r.located_message();
            if let Some(h) = &r.hint {
                text.push_str("\nhint: ");
                text.push_str(h);
            }
            text.push_str("\nnothing of this request was stored\n");
            (r.status, text).into_response()
        }
        Style::Json => {
            let code = match r.status {
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
                StatusCode::TOO_MANY_REQUESTS => "too many requests",
                StatusCode::REQUEST_TIMEOUT => "request timeout",
                StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                s if s.is_server_error() => "internal error",
                _ => "invalid",
            };
            let message = r.located_message();
            let mut body = serde_json::json!({
                "code": code,
                "message": message,
                "error": message,
                "reason": r.reason.as_str(),
                "stored": 0,
            });
            if let Some((line, column)) = r.position {
                body["line"] = line.into();
                body["column"] = column.into();
            }
            if let Some(p) = &r.path {
                body["path"] = p.clone().into();
            }
            if let Some(h) = &r.hint {
                body["hint"] = h.clone().into();
            }
            (
                r.status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    };
    let headers = response.headers_mut();
    match r.status {
        StatusCode::UNAUTHORIZED => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"telltale ingest\""),
            );
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The rest of the body is not read: the connection cannot carry another request.
        StatusCode::REQUEST_TIMEOUT => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(body: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_never_holds_more_than_the_limit() {
        let max = 1 << 20;
        let too_large =
            |m: String| Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, Reason::BodySize, m);
        // A body of exactly the limit inflates from ~1 KiB: taken, in a buffer of the limit.
        let out = gunzip(&gzip(&vec![b'a'; max]), max, too_large).unwrap();
        assert_eq!(out.len(), max);
        assert!(out.capacity() <= max, "capacity {} > {max}", out.capacity());
        // One byte more: refused.
        let err = gunzip(&gzip(&vec![b'a'; max + 1]), max, too_large).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        // Not gzip: 400.
        let err = gunzip(b"plain text", max, too_large).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
