//! The JSON batch endpoint, `POST /api/v1/samples`:
//!
//! ```json
//! {"samples": [{"name": "queue_depth", "labels": {"queue": "a"}, "value": 3, "timestamp_ms": 1700000000000}]}
//! ```
//!
//! `labels` and `timestamp_ms` are optional (no timestamp: the time of arrival); `value` is
//! a number or one of the strings `"NaN"`, `"+Inf"`, `"-Inf"`. Unknown keys are errors.
//! Errors name the JSON path (`samples[3].value`) and serde_json's line and column.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use telltale_formats::{is_valid_label_name, is_valid_metric_name};

use super::http::{Style, Work, rejection_response, write};
use super::limits::{Reason, Rejection, check_count, check_sample, store_all};
use super::{Shared, Source};
use telltale_model::{Labels, MetricName, Sample};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    samples: Vec<JsonSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSample {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: JsonValue,
    #[serde(default)]
    timestamp_ms: Option<i64>,
}

/// A number, or a Prometheus spelling of the values JSON cannot write (`"NaN"`, `"+Inf"`,
/// `"-Inf"`). Hand-written so a wrong value gets a message saying what is expected.
struct JsonValue(f64);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = JsonValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a number, or one of "NaN", "+Inf", "-Inf""#)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonValue, E> {
                Ok(JsonValue(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonValue, E> {
                Ok(JsonValue(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonValue, E> {
                Ok(JsonValue(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonValue, E> {
                match v {
                    "NaN" => Ok(JsonValue(f64::NAN)),
                    "+Inf" | "Inf" => Ok(JsonValue(f64::INFINITY)),
                    "-Inf" => Ok(JsonValue(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `POST /api/v1/samples`.
pub(crate) async fn write_json(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let work: Work = Box::new(|shared: &Shared, text: &str, now| {
        let samples = parse(shared, text, now)?;
        let n = samples.len();
        let report = store_all(shared.writer(Source::Json), &samples)?;
        shared.stats.dropped(Source::Json, &report);
        Ok(n)
    });
    match write(&shared, Source::Json, &headers, body, work).await {
        Ok(n) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"stored\":{n}}}"),
        )
            .into_response(),
        Err(r) => rejection_response(Style::Json, &r),
    }
}

/// Parses and checks a batch; nothing is stored.
fn parse(shared: &Shared, text: &str, now: i64) -> Result<Vec<Sample>, Rejection> {
    let syntax = |path: Option<String>, e: &serde_json::Error| {
        Rejection {
        position: (e.line() > 0).then(|| (e.line(), e.column())),
        path,
        hint: Some(
            r#"the body must be {"samples": [{"name": "...", "labels": {...}, "value": 1.0, "timestamp_ms": 123}]}"#
                .into(),
        ),
        ..Rejection::new(
            StatusCode::BAD_REQUEST,
            Reason::Parse,
            strip_position(&e.to_string()),
        )
    }
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let batch: Batch = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        syntax((path != ".").then_some(path), e.inner())
    })?;
    de.end().map_err(|e| syntax(None, &e))?;
    check_count(&shared.limits, batch.samples.len())?;
    let mut out: Vec<Sample> = Vec::with_capacity(batch.samples.len());
    for (i, s) in batch.samples.into_iter().enumerate() {
        let at = |field: &str, reason: Reason, message: String, hint: &str| Rejection {
            path: Some(format!("samples[{i}]{field}")),
            ..Rejection::new(StatusCode::BAD_REQUEST, reason, message).hint(hint)
        };
        if !is_valid_metric_name(&s.name) {
            return Err(at(
                ".name",
                Reason::Parse,
                format!("`{}` is not a valid metric name", s.name),
                "use letters, digits, `_` and `:`, not starting with a digit",
            ));
        }
        let value = s.value.0;
        let mut labels = Labels::new();
        for (k, v) in s.labels {
            if !is_valid_label_name(&k) || k.starts_with("__") {
                return Err(at(
                    &format!(".labels.{k}"),
                    Reason::Parse,
                    format!("`{k}` is not a valid label name"),
                    "use letters, digits and `_`, not starting with a digit or `__`",
                ));
            }
            // Prometheus treats an empty label value as no label at all.
            if !v.is_empty() {
                labels.insert(k, v);
            }
        }
        check_sample(&shared.limits, &s.name, &labels, i, None).map_err(|mut r| {
            r.path = Some(format!("samples[{i}]"));
            r
        })?;
        // Consecutive samples of one metric (its series one after another) share the
        // previous sample's name instead of each copying its own into a new allocation.
        let name = match out.last() {
            Some(prev) if prev.name == s.name => prev.name.clone(),
            _ => MetricName::from(s.name),
        };
        out.push(Sample {
            name,
            labels,
            value,
            timestamp_ms: s.timestamp_ms.unwrap_or(now),
        });
    }
    Ok(out)
}

/// serde_json appends ` at line L column C`; the position is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
