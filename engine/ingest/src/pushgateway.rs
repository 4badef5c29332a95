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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hashbrown::HashTable;
use telltale_formats::is_valid_label_name;
use telltale_formats::prometheus::{Format, parse_text};
use tracing::info;

use super::http::{Style, Work, rejection_response, write};
use super::limits::{Reason, Rejection, check_count, check_labels, locate, refused};
use super::{Shared, Source};
use telltale_model::{Labels, MetricName, Point, SeriesKey, TimestampMs, duration_ms};
use telltale_store::{Fingerprint, IngestReport, SeriesId, StoreSample, StoreWriter};

/// Name of the per-group series holding the time of the last successful push, in seconds.
pub(crate) const PUSH_TIME: &str = "push_time_seconds";

/// The pushed groups.
pub(crate) struct PushRegistry {
    groups: HashMap<Labels, Group>,
    /// Series of all groups (`Group::series` summed), kept as groups change.
    series: usize,
    expire_after: Duration,
    max_groups: usize,
    /// The store writer of the Pushgateway source, which pushed series are accounted to.
    writer: StoreWriter,
    /// `ingest.limits.max_series_per_source`: the series of all groups together.
    max_series: usize,
}

/// One pushed series: its own labels (sorted, without those the grouping key overrides),
/// value and the store's fingerprint of the full identity (grouping labels merged in),
/// computed once when the push is parsed and handed back to the store on every write and
/// removal afterwards (so the store does not hash it again). [`KeySet`] compares the
/// fingerprints instead of the strings: comparing the strings of a 10,000-series group
/// meant a cache miss per string (the old group is scattered over the heap) and cost more
/// than parsing the push. The grouping labels are merged in when the identity is read
/// ([`InGroup`]), not copied into every sample.
pub(crate) struct PushedSample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    fingerprint: Fingerprint,
}

/// A pushed series' identity before it has a fingerprint: its own labels and the group's.
struct Identity<'a> {
    name: &'a str,
    labels: &'a [(String, String)],
    grouping: &'a Labels,
}

impl SeriesId for Identity<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        merged(self.labels, self.grouping)
    }
}

/// A pushed sample in its group (whose grouping labels complete its identity), stamped
/// with the time of a store write.
struct InGroup<'a> {
    sample: &'a PushedSample,
    grouping: &'a Labels,
    now: TimestampMs,
}

impl SeriesId for InGroup<'_> {
    fn name(&self) -> &str {
        &self.sample.name
    }
    fn label_pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        merged(&self.sample.labels, self.grouping)
    }
    fn fingerprint(&self) -> Option<Fingerprint> {
        Some(self.sample.fingerprint)
    }
}

impl StoreSample for InGroup<'_> {
    fn point(&self) -> Point {
        Point {
            timestamp_ms: self.now,
            value: self.sample.value,
        }
    }
}

/// A sample's own labels and the grouping labels as one sorted sequence. The two never
/// share a name (the sample's own label of a grouping name is dropped when it is parsed).
fn merged<'a>(
    own: &'a [(String, String)],
    grouping: &'a Labels,
) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
    let mut a = own.iter().map(|(k, v)| (k.as_str(), v.as_str())).peekable();
    let mut b = grouping
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 < y.0 => a.next(),
        (Some(_), Some(_)) | (None, _) => b.next(),
        (Some(_), None) => a.next(),
    })
}

/// Pushed families by name.
type Families = BTreeMap<String, Vec<PushedSample>>;

struct Group {
    /// Family name → its samples (their own labels; the grouping labels are merged in
    /// when a sample's identity is read, and timestamps are set on write).
    families: Families,
    /// `push_time_seconds` with the grouping labels.
    push_time: PushedSample,
    pushed_ms: TimestampMs,
    /// Samples in `families`, plus one for `push_time`.
    series: usize,
}

impl Group {
    /// Every series of the group, `push_time_seconds` last.
    fn all(&self) -> impl Iterator<Item = &PushedSample> {
        self.families
            .values()
            .flatten()
            .chain(std::iter::once(&self.push_time))
    }

    /// Every sample of the group, stamped `now`.
    fn stamped<'a>(
        &'a self,
        grouping: &'a Labels,
        now: TimestampMs,
    ) -> impl Iterator<Item = InGroup<'a>> {
        self.all().map(move |sample| InGroup {
            sample,
            grouping,
            now,
        })
    }
}

/// A set of pushed series, compared by their 128-bit fingerprint, not by their strings:
/// two different series share one with a probability near 2^-128, and the key is random
/// per store, so a sender cannot aim for a collision.
struct KeySet<'a>(HashTable<&'a PushedSample>);

impl<'a> KeySet<'a> {
    fn new<'b>(samples: impl Iterator<Item = &'b PushedSample>) -> KeySet<'b> {
        let mut table = HashTable::with_capacity(samples.size_hint().0);
        for s in samples {
            if let hashbrown::hash_table::Entry::Vacant(v) = table.entry(
                s.fingerprint.digest(),
                |x: &&PushedSample| same(x, s),
                |x| x.fingerprint.digest(),
            ) {
                v.insert(s);
            }
        }
        KeySet(table)
    }

    fn contains(&self, s: &PushedSample) -> bool {
        self.0
            .find(s.fingerprint.digest(), |x| same(x, s))
            .is_some()
    }

    fn iter(&self) -> impl Iterator<Item = &'a PushedSample> + '_ {
        self.0.iter().copied()
    }
}

/// Same series: equal 128-bit fingerprints. The hash is keyed randomly per store, so two
/// different series collide with a probability near 2^-128 and a sender cannot make them
/// collide on purpose.
fn same(a: &PushedSample, b: &PushedSample) -> bool {
    a.fingerprint == b.fingerprint
}

/// Whether every family of `pushed` holds, in the same order, the same series as the
/// family of that name in `old` (and, for a PUT, `old` has no other family): then the push
/// adds and removes no series. The common case (a job pushing the same metrics each run)
/// is decided by one sequential pass instead of two hash sets over both groups.
fn same_series_in_order(old: &Families, pushed: &Families, replace_all: bool) -> bool {
    if replace_all && old.len() != pushed.len() {
        return false;
    }
    pushed.iter().all(|(name, new)| {
        old.get(name).is_some_and(|old| {
            old.len() == new.len() && old.iter().zip(new).all(|(a, b)| same(a, b))
        })
    })
}

/// A pushed sample of the group `grouping`, with the store's fingerprint of its identity.
fn fingerprinted(
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    grouping: &Labels,
    writer: &StoreWriter,
) -> PushedSample {
    let fingerprint = writer.fingerprint(&Identity {
        name: &name,
        labels: &labels,
        grouping,
    });
    PushedSample {
        name,
        labels,
        value,
        fingerprint,
    }
}

impl PushRegistry {
    /// An empty registry.
    pub(crate) fn new(
        expire_after: Duration,
        max_groups: usize,
        writer: StoreWriter,
        max_series: usize,
    ) -> Self {
        PushRegistry {
            groups: HashMap::new(),
            series: 0,
            expire_after,
            max_groups,
            writer,
            max_series,
        }
    }

    /// Live groups.
    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Applies a PUT (`replace_all`) or POST to a group and writes the result to the store.
    /// Every check happens before the first change; nothing pushed is copied. Returns the
    /// samples taken and the replaced group, for the caller to drop once the registry lock
    /// is released (freeing 10,000 samples is not free).
    fn apply(
        &mut self,
        grouping: Labels,
        families: Families,
        replace_all: bool,
        now: TimestampMs,
    ) -> Result<(usize, Option<Group>, IngestReport), Rejection> {
        let max_series = self.max_series;
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
        // A POST keeps the old group's families the push does not name.
        let kept: Vec<&Vec<PushedSample>> = match (old, replace_all) {
            (Some(old), false) => old
                .families
                .iter()
                .filter(|(name, _)| !families.contains_key(*name))
                .map(|(_, samples)| samples)
                .collect(),
            _ => Vec::new(),
        };
        let push_time = match old {
            Some(old) => PushedSample {
                value: now as f64 / 1000.0,
                ..clone_pushed(&old.push_time)
            },
            None => fingerprinted(
                PUSH_TIME.to_string(),
                Vec::new(),
                now as f64 / 1000.0,
                &grouping,
                &self.writer,
            ),
        };
        let new_series = pushed + kept.iter().map(|f| f.len()).sum::<usize>() + 1;
        let old_series = old.map_or(0, |g| g.series);
        let total = self.series - old_series + new_series;
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
        let new_view = || {
            families
                .values()
                .flatten()
                .chain(kept.iter().copied().flatten())
                .chain(std::iter::once(&push_time))
        };
        let unchanged =
            old.is_some_and(|old| same_series_in_order(&old.families, &families, replace_all));
        // The old group's series the push no longer names, removed in the same step as the
        // write (and credited to its room), so a refused push leaves the group as it was.
        let removals = if unchanged {
            Vec::new()
        } else {
            let new_keys = KeySet::new(new_view());
            let old_keys = KeySet::new(old.into_iter().flat_map(Group::all));
            old_keys
                .iter()
                .filter(|s| !new_keys.contains(s))
                .map(|sample| in_group(sample, &grouping))
                .collect()
        };
        let report = self
            .writer
            .replace(removals, || {
                new_view().map(|sample| InGroup {
                    sample,
                    grouping: &grouping,
                    now,
                })
            })
            .map_err(refused)?;
        drop(kept);
        let mut families = families;
        let mut replaced = None;
        if let Some(mut old) = self.groups.remove(&grouping) {
            self.series -= old.series;
            if !replace_all {
                for (name, samples) in std::mem::take(&mut old.families) {
                    families.entry(name).or_insert(samples);
                }
            }
            replaced = Some(old);
        }
        self.series += new_series;
        self.groups.insert(
            grouping,
            Group {
                families,
                push_time,
                pushed_ms: now,
                series: new_series,
            },
        );
        Ok((pushed, replaced, report))
    }

    /// Removes a group and its series.
    fn delete(&mut self, grouping: &Labels) {
        if let Some(g) = self.groups.remove(grouping) {
            self.series -= g.series;
            self.writer.remove(g.stamped(grouping, 0));
        }
    }
}

fn in_group<'a>(sample: &'a PushedSample, grouping: &'a Labels) -> InGroup<'a> {
    InGroup {
        sample,
        grouping,
        now: 0,
    }
}

fn clone_pushed(s: &PushedSample) -> PushedSample {
    PushedSample {
        name: s.name.clone(),
        labels: s.labels.clone(),
        value: s.value,
        fingerprint: s.fingerprint,
    }
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
                name: MetricName::default(),
                labels: key.clone()
            },
            humantime::format_duration(reg.expire_after)
        );
        reg.delete(&key);
    }
    // Under the registry lock, so a concurrent push cannot be overwritten by older values.
    let report = reg
        .writer
        .ingest(reg.groups.iter().flat_map(|(k, g)| g.stamped(k, now)));
    shared.stats.dropped(Source::Pushgateway, &report);
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
        let (grouping, cleared) = grouping?;
        if delete {
            shared.push.lock().delete(&grouping);
            return Ok(0);
        }
        let format = format_of(&content_type)?;
        let families = parse_body(shared, text, format, &grouping, &cleared)?;
        let (pushed, replaced, report) =
            shared
                .push
                .lock()
                .apply(grouping, families, replace_all, now)?;
        drop(replaced);
        shared.stats.dropped(Source::Pushgateway, &report);
        Ok(pushed)
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
/// `cleared` names the grouping labels the path gives an empty value: a sample's own label
/// of that name is dropped too (the grouping key wins, and empty means no label).
fn parse_body(
    shared: &Shared,
    text: &str,
    format: Format,
    grouping: &Labels,
    cleared: &[String],
) -> Result<Families, Rejection> {
    let exposition = parse_text(text, format).map_err(|e| Rejection::parse(&e))?;
    check_count(&shared.limits, exposition.sample_count())?;
    let mut families = Families::new();
    let mut index = 0;
    for fam in exposition.families {
        let out = families.entry(fam.name).or_default();
        out.reserve(fam.samples.len());
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
            let mut labels = s.labels;
            // The grouping key wins over a sample's own label (Pushgateway semantics).
            labels.retain(|(k, _)| !grouping.contains_key(k) && !cleared.contains(k));
            check_labels(
                &shared.limits,
                &s.name,
                labels.len() + grouping.len(),
                merged(&labels, grouping),
                index,
                Some(text),
            )?;
            index += 1;
            out.push(fingerprinted(
                s.name,
                labels,
                s.value,
                grouping,
                shared.writer(Source::Pushgateway),
            ));
        }
    }
    Ok(families)
}

/// Parses `/metrics/job/<job>{/<label>/<value>}` into the grouping labels (those with a
/// value), and the names of those the path gives an empty value (`<label>@base64/=`).
pub(crate) fn parse_grouping(path: &str) -> Result<(Labels, Vec<String>), Rejection> {
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
    let cleared = labels
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    labels.retain(|_, v| !v.is_empty());
    Ok((labels, cleared))
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
