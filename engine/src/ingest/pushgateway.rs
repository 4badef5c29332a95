//! Pushgateway-compatible endpoints, so `prometheus_client`'s `push_to_gateway` (PUT),
//! `pushadd_to_gateway` (POST) and `delete_from_gateway` (DELETE) work unchanged:
//!
//! * `PUT /metrics/job/<job>{/<label>/<value>}` replaces the whole group;
//! * `POST` replaces only the metric families (by name) present in the body;
//! * `DELETE` removes the group.
//!
//! The path is the grouping key. A segment `<label>@base64/<value>` carries a URL-safe
//! base64 value (padding optional; `=` alone is the empty value, which like any empty label
//! means "no label"). Grouping labels are added to every pushed sample and win over a
//! sample's own label of the same name. Pushed samples must not carry timestamps (the
//! Pushgateway refuses them too). Bodies are text 0.0.4, or OpenMetrics by Content-Type;
//! protobuf is refused with 415.
//!
//! Groups live in a [`PushRegistry`] and are written to the store on every push and again
//! on every republish tick, stamped "now", like a Pushgateway scraped by Prometheus; each
//! group also has a `push_time_seconds` series. A group not pushed for `expire_after`
//! expires. When a group is deleted, expires or loses series to a PUT/POST, those series
//! are removed from the store at once (as Prometheus' staleness would hide them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use telltale_formats::is_valid_label_name;
use telltale_formats::prometheus::{Format, parse_text};
use tracing::info;

use super::http::{Style, Work, rejection_response, write};
use super::limits::{Reason, Rejection, check_count, check_sample, check_store_capacity, locate};
use super::{Shared, Source};
use crate::model::{Labels, Sample, SeriesKey, TimestampMs, duration_ms};
use crate::store::SeriesStore;

/// Name of the per-group series holding the time of the last successful push, in seconds.
pub(crate) const PUSH_TIME: &str = "push_time_seconds";

/// The pushed groups.
pub(crate) struct PushRegistry {
    groups: HashMap<Labels, Group>,
    expire_after: Duration,
    max_groups: usize,
}

struct Group {
    /// Family name → its samples (grouping labels applied; timestamps are set on write).
    families: BTreeMap<String, Vec<Sample>>,
    pushed_ms: TimestampMs,
}

impl Group {
    fn series(&self) -> usize {
        self.families.values().map(Vec::len).sum::<usize>() + 1
    }

    fn keys<'a>(&'a self, grouping: &'a Labels) -> impl Iterator<Item = (&'a str, &'a Labels)> {
        self.families
            .values()
            .flatten()
            .map(|s| (s.name.as_str(), &s.labels))
            .chain(std::iter::once((PUSH_TIME, grouping)))
    }

    /// Every sample of the group plus `push_time_seconds`, stamped `now`.
    fn samples(&self, grouping: &Labels, now: TimestampMs, out: &mut Vec<Sample>) {
        for s in self.families.values().flatten() {
            out.push(Sample {
                timestamp_ms: now,
                ..s.clone()
            });
        }
        out.push(Sample {
            name: PUSH_TIME.to_string(),
            labels: grouping.clone(),
            value: self.pushed_ms as f64 / 1000.0,
            timestamp_ms: now,
        });
    }
}

impl PushRegistry {
    /// An empty registry.
    pub(crate) fn new(expire_after: Duration, max_groups: usize) -> Self {
        PushRegistry {
            groups: HashMap::new(),
            expire_after,
            max_groups,
        }
    }

    /// Live groups.
    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn series_count(&self) -> usize {
        self.groups.values().map(Group::series).sum()
    }

    /// Applies a PUT (`replace_all`) or POST to a group and writes the result to the store.
    /// Every check happens before the first change.
    fn apply(
        &mut self,
        grouping: Labels,
        families: BTreeMap<String, Vec<Sample>>,
        replace_all: bool,
        now: TimestampMs,
        store: &SeriesStore,
        max_series: usize,
    ) -> Result<usize, Rejection> {
        let old = self.groups.get(&grouping);
        if old.is_none() && self.groups.len() >= self.max_groups {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                Reason::SeriesLimit,
                format!(
                    "{} push groups exist, the most allowed; this push would create another",
                    self.groups.len()
                ),
            )
            .hint("delete groups no longer needed (DELETE /metrics/job/…), or raise ingest.pushgateway.max_groups"));
        }
        let pushed: usize = families.values().map(Vec::len).sum();
        let merged = match (old, replace_all) {
            (Some(old), false) => {
                let mut m = old.families.clone();
                m.extend(families);
                m
            }
            _ => families,
        };
        let group = Group {
            families: merged,
            pushed_ms: now,
        };
        let old_series = old.map_or(0, Group::series);
        let total = self.series_count() - old_series + group.series();
        if total > max_series {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                Reason::SeriesLimit,
                format!(
                    "pushed groups would hold {total} series; source `pushgateway` may have at most {max_series}"
                ),
            )
            .hint("push fewer series, delete unused groups, or raise ingest.limits.max_series_per_source"));
        }
        let old_keys: HashSet<(&str, &Labels)> =
            old.map(|g| g.keys(&grouping).collect()).unwrap_or_default();
        let new_keys: HashSet<(&str, &Labels)> = group.keys(&grouping).collect();
        let added = new_keys.difference(&old_keys).count();
        check_store_capacity(store, added)?;
        let removed: Vec<SeriesKey> = old_keys
            .difference(&new_keys)
            .map(|(n, l)| SeriesKey {
                name: n.to_string(),
                labels: (*l).clone(),
            })
            .collect();
        store.remove_series(&removed);
        let mut samples = Vec::with_capacity(group.series());
        group.samples(&grouping, now, &mut samples);
        store.ingest(samples);
        self.groups.insert(grouping, group);
        Ok(pushed)
    }

    /// Removes a group and its series.
    fn delete(&mut self, grouping: &Labels, store: &SeriesStore) {
        if let Some(g) = self.groups.remove(grouping) {
            store.remove_series(&keys_of(&g, grouping));
        }
    }
}

fn keys_of(g: &Group, grouping: &Labels) -> Vec<SeriesKey> {
    g.keys(grouping)
        .map(|(n, l)| SeriesKey {
            name: n.to_string(),
            labels: l.clone(),
        })
        .collect()
}

/// Re-stores every live group stamped `now`; drops groups not pushed for `expire_after`.
pub(crate) fn republish(shared: &Shared, now: TimestampMs) {
    let mut reg = shared.push.lock();
    let cutoff = now.saturating_sub(duration_ms(reg.expire_after));
    let expired: Vec<Labels> = reg
        .groups
        .iter()
        .filter(|(_, g)| g.pushed_ms < cutoff)
        .map(|(k, _)| k.clone())
        .collect();
    for key in expired {
        info!(
            "ingest: push group {} expired (no push for {})",
            SeriesKey {
                name: String::new(),
                labels: key.clone()
            },
            humantime::format_duration(reg.expire_after)
        );
        reg.delete(&key, &shared.store);
    }
    let mut samples = Vec::new();
    for (key, g) in &reg.groups {
        g.samples(key, now, &mut samples);
    }
    // Under the registry lock, so a concurrent push cannot be overwritten by older values.
    shared.store.ingest(samples);
}

/// `PUT`, `POST` or `DELETE /metrics/…`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let grouping = parse_grouping(uri.path());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let delete = method == Method::DELETE;
    let replace_all = method == Method::PUT;
    let work: Work = Box::new(move |shared: &Shared, text: &str, now| {
        let grouping = grouping?;
        if delete {
            shared.push.lock().delete(&grouping, &shared.store);
            return Ok(0);
        }
        let format = format_of(&content_type)?;
        let families = parse_body(shared, text, format, &grouping)?;
        shared.push.lock().apply(
            grouping,
            families,
            replace_all,
            now,
            &shared.store,
            shared.limits.max_series_per_source,
        )
    });
    match write(&shared, Source::Pushgateway, &headers, body, work).await {
        Ok(_) if delete => StatusCode::ACCEPTED.into_response(),
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => rejection_response(Style::Text, &r),
    }
}

fn format_of(content_type: &str) -> Result<Format, Rejection> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media.starts_with("application/vnd.google.protobuf") {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::MediaType,
            "the protobuf exposition format is not supported",
        )
        .hint("push the text format (Content-Type: text/plain; version=0.0.4) or OpenMetrics"));
    }
    Ok(Format::from_content_type(content_type))
}

/// Parses a pushed body into families with the grouping labels applied; checks limits.
fn parse_body(
    shared: &Shared,
    text: &str,
    format: Format,
    grouping: &Labels,
) -> Result<BTreeMap<String, Vec<Sample>>, Rejection> {
    let exposition = parse_text(text, format).map_err(|e| Rejection::parse(&e))?;
    check_count(&shared.limits, exposition.sample_count())?;
    let mut families: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut index = 0;
    for fam in exposition.families {
        let out = families.entry(fam.name).or_default();
        for s in fam.samples {
            if s.timestamp_ms.is_some() {
                return Err(Rejection {
                    position: locate(text, &s.name),
                    ..Rejection::new(
                        StatusCode::BAD_REQUEST,
                        Reason::Timestamp,
                        format!("sample `{}` carries a timestamp", s.name),
                    )
                }
                .hint("remove it: pushed samples are stamped when they are stored, as with the Pushgateway"));
            }
            let mut labels: Labels = s.labels.into_iter().collect();
            // The grouping key wins over a sample's own label (Pushgateway semantics).
            for (k, v) in grouping {
                labels.insert(k.clone(), v.clone());
            }
            check_sample(&shared.limits, &s.name, &labels, index, Some(text))?;
            index += 1;
            out.push(Sample {
                name: s.name,
                labels,
                value: s.value,
                timestamp_ms: 0,
            });
        }
    }
    Ok(families)
}

/// Parses `/metrics/job/<job>{/<label>/<value>}` into the grouping labels.
pub(crate) fn parse_grouping(path: &str) -> Result<Labels, Rejection> {
    let bad = |msg: String| {
        Rejection::new(StatusCode::BAD_REQUEST, Reason::Request, msg)
            .hint("the path must be /metrics/job/<job>{/<label>/<value>}; write a value with `/` as <label>@base64/<url-safe base64>")
    };
    let rest = path
        .strip_prefix("/metrics/")
        .ok_or_else(|| bad(format!("`{path}` is not a push path")))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    if !segments.len().is_multiple_of(2) {
        return Err(bad(format!(
            "label `{}` has no value",
            segments.last().copied().unwrap_or("")
        )));
    }
    let mut labels = Labels::new();
    for (i, pair) in segments.chunks(2).enumerate() {
        let name = percent_decode(pair[0]).map_err(&bad)?;
        let (name, b64) = match name.strip_suffix("@base64") {
            Some(n) => (n.to_string(), true),
            None => (name, false),
        };
        if i == 0 && name != "job" {
            return Err(bad(format!(
                "the path must start with /metrics/job/, not /metrics/{}",
                pair[0]
            )));
        }
        if !is_valid_label_name(&name) || name.starts_with("__") {
            return Err(bad(format!("`{name}` is not a valid label name")));
        }
        let value = if b64 {
            decode_base64(pair[1]).ok_or_else(|| {
                bad(format!(
                    "the value of `{name}` is not valid URL-safe base64"
                ))
            })?
        } else {
            percent_decode(pair[1]).map_err(&bad)?
        };
        if value.is_empty() {
            if name == "job" {
                return Err(bad("the job name must not be empty".into()));
            }
            if !b64 {
                return Err(bad(format!(
                    "the value of `{name}` is empty; write an empty value as `{name}@base64/=`"
                )));
            }
        }
        if labels.contains_key(&name) {
            return Err(bad(format!("label `{name}` appears twice in the path")));
        }
        // An empty label is no label (Prometheus semantics); the name is still reserved.
        labels.insert(name, value);
    }
    labels.retain(|_, v| !v.is_empty());
    Ok(labels)
}

fn percent_decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("`{s}` is not UTF-8 once percent-decoded"))
}

fn decode_base64(s: &str) -> Option<String> {
    let trimmed = s.trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()?;
    String::from_utf8(raw).ok()
}
