//! Conversions between the WIT types and the engine's [`model`](telltale_model) types, with
//! the checks that keep a plugin's output from hurting the rest of the engine: the
//! configured caps on counts and lengths (`limits.max_*`), and valid metric and label names.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;

use telltale_config::PluginLimits;
use telltale_model::short_eq;
use telltale_model::{Event, Labels, MetricName, Sample, SeriesWindow, Severity};

use super::bindings::types;

/// The most events one call may return.
pub(crate) const MAX_EVENTS_PER_CALL: usize = 10_000;
/// The longest event kind.
pub(crate) const MAX_EVENT_KIND_LEN: usize = 64;
/// The longest event message.
pub(crate) const MAX_EVENT_MESSAGE_LEN: usize = 4096;

/// Why a plugin's output was refused. (`pub` in this private module because the sealed
/// `world::Binding` trait names it; not exported.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputError {
    /// A configured limit was broken (the message names it and its value): the plugin is
    /// treated as misbehaving and its instance discarded.
    Limit(String),
    /// The output is malformed (an invalid metric or label name): a bug, not a flood.
    Invalid(String),
}

/// The output caps of one instance, taken from its `limits`. (`pub` for the same reason
/// as [`OutputError`].)
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    pub(crate) max_samples: usize,
    pub(crate) max_name_bytes: usize,
    pub(crate) max_labels: usize,
    pub(crate) max_label_bytes: usize,
    /// The most bytes the new series of one call may take once stored (see
    /// [`stored_bytes`]): the plugin's memory limit. Samples may share label ranges and
    /// overlapping spans, so a small batch can name far more text than it holds; this
    /// keeps the host's copy of it as bounded as the plugin's own memory.
    pub(crate) max_new_series_bytes: usize,
}

impl From<&PluginLimits> for OutputLimits {
    fn from(l: &PluginLimits) -> OutputLimits {
        OutputLimits {
            max_samples: l.max_samples,
            max_name_bytes: l.max_name_bytes,
            max_labels: l.max_labels,
            max_label_bytes: l.max_label_bytes,
            max_new_series_bytes: usize::try_from(l.memory.0).unwrap_or(usize::MAX),
        }
    }
}

/// A metric name in Prometheus' syntax: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label name in Prometheus' syntax, `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved (`__`).
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Shortens a name for an error message.
fn shown(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Checks a label count against `limits.max_labels`.
fn check_label_count(
    count: usize,
    owner: &impl Fn() -> String,
    limits: &OutputLimits,
) -> Result<(), OutputError> {
    if count > limits.max_labels {
        return Err(OutputError::Limit(format!(
            "returned {} with {count} labels, more than limits.max_labels = {}",
            owner(),
            limits.max_labels
        )));
    }
    Ok(())
}

/// Checks one label: its name's and value's lengths against `limits.max_label_bytes` and
/// its name's syntax.
fn check_label(
    name: &str,
    value: &str,
    owner: &impl Fn() -> String,
    limits: &OutputLimits,
) -> Result<(), OutputError> {
    if name.len() > limits.max_label_bytes {
        return Err(OutputError::Limit(format!(
            "returned {} with a {}-byte label name `{}`, longer than \
             limits.max_label_bytes = {}",
            owner(),
            name.len(),
            shown(name),
            limits.max_label_bytes
        )));
    }
    if !valid_label_name(name) {
        return Err(OutputError::Invalid(format!(
            "{} has an invalid label name `{}` (expected [a-zA-Z_][a-zA-Z0-9_]*, \
             not starting with `__`)",
            owner(),
            shown(name)
        )));
    }
    if value.len() > limits.max_label_bytes {
        return Err(OutputError::Limit(format!(
            "returned {} whose label `{name}` has a {}-byte value, longer than \
             limits.max_label_bytes = {}",
            owner(),
            value.len(),
            limits.max_label_bytes
        )));
    }
    Ok(())
}

/// Checks sample #`i`'s metric name: its length against `limits.max_name_bytes`, then its
/// syntax.
fn check_metric_name(i: usize, name: &str, limits: &OutputLimits) -> Result<(), OutputError> {
    if name.len() > limits.max_name_bytes {
        return Err(OutputError::Limit(format!(
            "returned sample #{i} with a {}-byte name `{}`, longer than \
             limits.max_name_bytes = {}",
            name.len(),
            shown(name),
            limits.max_name_bytes
        )));
    }
    if !valid_metric_name(name) {
        return Err(OutputError::Invalid(format!(
            "sample #{i} has an invalid metric name `{}` (expected \
             [a-zA-Z_:][a-zA-Z0-9_:]*)",
            shown(name)
        )));
    }
    Ok(())
}

/// `owner` names the sample or event in error messages; it is a closure because building
/// that string for every valid sample dominated the cost of a call.
fn convert_labels(
    labels: Vec<types::Label>,
    owner: impl Fn() -> String,
    limits: &OutputLimits,
) -> Result<Labels, OutputError> {
    check_label_count(labels.len(), &owner, limits)?;
    for l in &labels {
        check_label(&l.name, &l.value, &owner, limits)?;
    }
    Ok(labels.into_iter().map(|l| (l.name, l.value)).collect())
}

/// Checks and converts the samples an analyzer returned (`analysis.samples`). The error
/// names the offending sample and, for a broken limit, the limit and its value.
pub(crate) fn samples_from_wit(
    samples: Vec<types::Sample>,
    limits: &OutputLimits,
) -> Result<Vec<Sample>, OutputError> {
    check_sample_count(samples.len(), limits)?;
    samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            check_metric_name(i, &s.name, limits)?;
            let name = &s.name;
            let labels = convert_labels(s.labels, || format!("sample #{i} `{name}`"), limits)?;
            Ok(Sample {
                labels,
                name: s.name.into(),
                value: s.value,
                timestamp_ms: s.timestamp_ms,
            })
        })
        .collect()
}

fn check_sample_count(count: usize, limits: &OutputLimits) -> Result<(), OutputError> {
    if count > limits.max_samples {
        return Err(OutputError::Limit(format!(
            "returned {count} samples, more than limits.max_samples = {}",
            limits.max_samples
        )));
    }
    Ok(())
}

/// The most series a [`SeriesCache`] remembers before it starts over.
const SERIES_CACHE_MAX_ENTRIES: usize = 16_384;
/// The most bytes a [`SeriesCache`]'s entries may take (as [`stored_bytes`] counts them)
/// before it starts over: bounds the memory a plugin with many or long labels can pin.
const SERIES_CACHE_MAX_BYTES: usize = 16 << 20;
/// What one stored series costs beyond its text, and one stored label beyond its text:
/// string and map headers, allocation overhead, the cache entry. Estimates, on the high
/// side, so that many short labels are not counted as nearly free.
const SERIES_OVERHEAD_BYTES: usize = 96;
const LABEL_OVERHEAD_BYTES: usize = 96;

/// The bytes a new series takes once checked and cached: its name and labels twice (the
/// checked strings and the cache key) plus the overheads.
fn stored_bytes(name: &[u8], labels: &[(&[u8], &[u8])]) -> usize {
    let text = name.len() + labels.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    2 * text + SERIES_OVERHEAD_BYTES + LABEL_OVERHEAD_BYTES * labels.len()
}

/// Separates the pieces of a cache key. It never occurs in UTF-8, so two different
/// sequences of valid strings never make the same key.
const KEY_SEPARATOR: u8 = 0xFF;

/// The series one collector instance returned before, keyed by the raw bytes of the
/// metric name and label spans as the batch holds them, each mapped to the checked name
/// and label set. A collector returns mostly the same series on every call, so a series
/// seen before costs hashing its bytes where they lie in the batch, a lookup, a
/// comparison and two reference-count increments, instead of UTF-8, limit and syntax
/// checks plus building a label map.
///
/// Only checked series are stored, and the checks depend on nothing but those bytes and
/// the instance's limits (fixed for its life), so a hit needs no check again. Bounded by
/// entry count and bytes; when full it is emptied and refills from the next calls.
///
/// Before any of that, a batch is compared whole with the previous call's: most
/// collectors return the very same series in the same order every time, and then only the
/// `values` and `timestamps-ms` columns differ. The text and the two span columns equal
/// the previous ones, which were checked, so every sample's series is the one found
/// last time at the same position, for the cost of comparing those bytes. (`pub` for the
/// same reason as [`OutputError`].)
pub struct SeriesCache {
    table: HashTable<CachedSeries>,
    /// The entries' identity keys, back to back in the order they were added: one
    /// allocation, and the keys of series returned in the same order lie side by side.
    keys: Vec<u8>,
    hasher: foldhash::fast::RandomState,
    /// What the entries take, as [`stored_bytes`] counts it.
    bytes: usize,
    /// The last batch that converted, less its values and timestamps, with its series.
    previous: Option<PreviousBatch>,
}

/// One remembered series: where its identity bytes lie in [`SeriesCache::keys`] (name,
/// then `0xFF` label name `0xFF` label value for each label; `0xFF` never occurs in UTF-8,
/// so different series never share a key), their hash, and the checked name and labels.
struct CachedSeries {
    hash: u64,
    key_start: u32,
    key_len: u32,
    name: MetricName,
    labels: Labels,
}

/// The identity part of the last batch that converted (kept, not copied: it is the
/// batch's own buffers), and the series its samples resolved to, in order.
struct PreviousBatch {
    text: String,
    samples: Vec<u32>,
    labels: Vec<u32>,
    series: Vec<(MetricName, Labels)>,
}

impl PreviousBatch {
    /// Whether `batch` names the same series, in the same order, as this one did.
    fn same_series(&self, batch: &types::SampleBatch) -> bool {
        self.samples == batch.samples && self.labels == batch.labels && self.text == batch.text
    }
}

/// The most bytes of a batch (text, span columns and its series) that are kept for the next
/// call's comparison: a plugin returning a huge batch should not pin that much memory per
/// instance.
const PREVIOUS_MAX_BYTES: usize = 16 << 20;

impl Default for SeriesCache {
    /// An empty cache whose hash is seeded at random, so that a plugin cannot choose keys
    /// that collide (and make every lookup slow).
    fn default() -> SeriesCache {
        SeriesCache {
            table: HashTable::new(),
            keys: Vec::new(),
            hasher: foldhash::fast::RandomState::default(),
            bytes: 0,
            previous: None,
        }
    }
}

impl SeriesCache {
    /// How many series are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The hash of a series' identity, from its pieces where they lie in the batch.
    /// Each piece is hashed with its length, so no separators are needed; equality is
    /// decided by [`key_is`], not by the hash.
    fn hash(&self, name: &[u8], labels: &[(&[u8], &[u8])]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(name);
        for (label_name, value) in labels {
            h.write(label_name);
            h.write(value);
        }
        h.finish()
    }

    fn find(&self, hash: u64, name: &[u8], labels: &[(&[u8], &[u8])]) -> Option<&CachedSeries> {
        let keys = &self.keys;
        self.table.find(hash, |e| {
            e.hash == hash
                && keys
                    .get(e.key_start as usize..)
                    .and_then(|k| k.get(..e.key_len as usize))
                    .is_some_and(|key| key_is(key, name, labels))
        })
    }

    /// Remembers a checked series; `bytes` is what it takes ([`stored_bytes`]), `name_bytes`
    /// and `pieces` its identity as the batch held it.
    fn insert(
        &mut self,
        hash: u64,
        bytes: usize,
        name_bytes: &[u8],
        pieces: &[(&[u8], &[u8])],
        name: MetricName,
        labels: Labels,
    ) {
        if self.table.len() >= SERIES_CACHE_MAX_ENTRIES
            || self.bytes + bytes > SERIES_CACHE_MAX_BYTES
        {
            self.table.clear();
            self.keys.clear();
            self.bytes = 0;
        }
        self.bytes += bytes;
        let start = self.keys.len();
        write_key(&mut self.keys, name_bytes, pieces);
        // The keys are bounded by SERIES_CACHE_MAX_BYTES (plus one series), far below 4 GiB.
        let entry = CachedSeries {
            hash,
            key_start: u32::try_from(start).unwrap_or(u32::MAX),
            key_len: u32::try_from(self.keys.len() - start).unwrap_or(u32::MAX),
            name,
            labels,
        };
        self.table.insert_unique(hash, entry, |e| e.hash);
    }
}

/// Whether `key` is the identity of `name` with `labels` (see [`CachedSeries`]). The
/// pieces are short: compared byte by byte, not with a `memcmp` call each.
fn key_is(key: &[u8], name: &[u8], labels: &[(&[u8], &[u8])]) -> bool {
    let mut rest = key;
    let mut take = |piece: &[u8], separated: bool| {
        let tail = if separated {
            match rest {
                [KEY_SEPARATOR, tail @ ..] => tail,
                _ => return false,
            }
        } else {
            rest
        };
        match tail.split_at_checked(piece.len()) {
            Some((head, tail)) if short_eq(head, piece) => {
                rest = tail;
                true
            }
            _ => false,
        }
    };
    take(name, false)
        && labels
            .iter()
            .all(|(label_name, value)| take(label_name, true) && take(value, true))
        && rest.is_empty()
}

/// Appends the identity bytes of a series (see [`CachedSeries`]) to `key`.
fn write_key(key: &mut Vec<u8>, name: &[u8], labels: &[(&[u8], &[u8])]) {
    key.extend_from_slice(name);
    for (label_name, value) in labels {
        key.push(KEY_SEPARATOR);
        key.extend_from_slice(label_name);
        key.push(KEY_SEPARATOR);
        key.extend_from_slice(value);
    }
}

/// Numbers per sample in a batch's `samples` column, and per label record in its
/// `labels` column.
const STRIDE: usize = 4;

/// A piece of a batch's text: `len` bytes from `start`.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The name of a sample, from its four numbers.
    fn name(sample: &[u32]) -> Span {
        Span {
            start: sample[0],
            len: sample[1],
        }
    }

    /// The name of a label record, from its four numbers.
    fn label_name(label: &[u32]) -> Span {
        Span {
            start: label[0],
            len: label[1],
        }
    }

    /// The value of a label record, from its four numbers.
    fn label_value(label: &[u32]) -> Span {
        Span {
            start: label[2],
            len: label[3],
        }
    }
}

/// The bytes of `span` in `text`, if it lies inside.
fn span_bytes(text: &[u8], span: Span) -> Option<&[u8]> {
    let start = usize::try_from(span.start).ok()?;
    let end = start.checked_add(usize::try_from(span.len).ok()?)?;
    text.get(start..end)
}

/// What a span is, for error messages.
#[derive(Clone, Copy)]
enum SpanOf {
    Name,
    LabelName(usize),
    LabelValue(usize),
}

impl std::fmt::Display for SpanOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpanOf::Name => f.write_str("metric name"),
            SpanOf::LabelName(j) => write!(f, "label #{j}'s name"),
            SpanOf::LabelValue(j) => write!(f, "label #{j}'s value"),
        }
    }
}

/// Resolves a span of sample #`i`, or says why it is malformed.
fn resolve(text: &[u8], span: Span, i: usize, what: SpanOf) -> Result<&[u8], OutputError> {
    span_bytes(text, span).ok_or_else(|| {
        OutputError::Invalid(format!(
            "sample #{i}'s {what} is the span start {} + len {}, outside the batch's \
             {}-byte text",
            span.start,
            span.len,
            text.len()
        ))
    })
}

/// A span's bytes as text: they are a slice of a valid UTF-8 string, so they are valid
/// UTF-8 exactly when the span starts and ends on character boundaries.
fn as_str(bytes: &[u8], i: usize, what: SpanOf) -> Result<&str, OutputError> {
    std::str::from_utf8(bytes).map_err(|_| {
        OutputError::Invalid(format!(
            "sample #{i}'s {what} span does not start and end on UTF-8 character boundaries"
        ))
    })
}

/// Checks that a batch's columns agree: four numbers per sample in `samples`, one value
/// and one timestamp per sample, four numbers per label record in `labels`.
fn check_columns(batch: &types::SampleBatch) -> Result<(), OutputError> {
    let n = batch.values.len();
    let problem = if batch.samples.len() != n.saturating_mul(STRIDE) {
        format!(
            "has {} numbers in `samples` for {n} values (expected four per sample: \
             name-start, name-len, first-label, label-count)",
            batch.samples.len()
        )
    } else if batch.timestamps_ms.len() != n {
        format!(
            "has {} timestamps for {n} values (expected one per sample)",
            batch.timestamps_ms.len()
        )
    } else if !batch.labels.len().is_multiple_of(STRIDE) {
        format!(
            "has {} numbers in `labels`, not a multiple of four (name-start, name-len, \
             value-start, value-len per label)",
            batch.labels.len()
        )
    } else {
        return Ok(());
    };
    Err(OutputError::Invalid(format!("the sample batch {problem}")))
}

/// Checks and converts the batch a collector returned. A batch naming the same series as
/// the previous one takes them from there; otherwise every span is bounds-checked, and a
/// series not in `cache` is fully checked (UTF-8 boundaries, limits, name syntax) and
/// remembered. The error names the offending sample and, for a broken limit, the limit and
/// its value, with the same messages as for analyzers' samples.
pub(crate) fn samples_from_batch(
    batch: types::SampleBatch,
    limits: &OutputLimits,
    cache: &mut SeriesCache,
) -> Result<Vec<Sample>, OutputError> {
    check_sample_count(batch.values.len(), limits)?;
    check_columns(&batch)?;
    if let Some(previous) = &cache.previous
        && previous.same_series(&batch)
    {
        let values = batch.values.iter().zip(&batch.timestamps_ms);
        return Ok(previous
            .series
            .iter()
            .zip(values)
            .map(|((name, labels), (&value, &timestamp_ms))| Sample {
                name: name.clone(),
                labels: labels.clone(),
                value,
                timestamp_ms,
            })
            .collect());
    }
    let out = samples_from_spans(&batch, limits, cache)?;
    // A previous batch that did not match is dropped, and this one is not kept in its
    // place: a collector whose series change on every call would pay for keeping a batch
    // it never uses. After a change, the next call's batch is kept again.
    if cache.previous.take().is_some() {
        return Ok(out);
    }
    let kept = batch.text.len()
        + size_of::<u32>() * (batch.samples.len() + batch.labels.len())
        + size_of::<(MetricName, Labels)>() * out.len();
    cache.previous = (kept <= PREVIOUS_MAX_BYTES).then(|| PreviousBatch {
        text: batch.text,
        samples: batch.samples,
        labels: batch.labels,
        series: out
            .iter()
            .map(|s| (s.name.clone(), s.labels.clone()))
            .collect(),
    });
    Ok(out)
}

/// The conversion of a batch sample by sample, each series looked up in the cache.
fn samples_from_spans(
    batch: &types::SampleBatch,
    limits: &OutputLimits,
    cache: &mut SeriesCache,
) -> Result<Vec<Sample>, OutputError> {
    let text = batch.text.as_bytes();
    let mut out = Vec::with_capacity(batch.values.len());
    // The current sample's labels as (name, value) bytes, reused across samples.
    let mut pieces: Vec<(&[u8], &[u8])> = Vec::new();
    // What the series new to the cache take once stored, this call.
    let mut new_series_bytes = 0usize;
    // The name of the last new series, shared with the next ones of the same metric.
    let mut family: Option<MetricName> = None;
    let records = batch
        .samples
        .chunks_exact(STRIDE)
        .zip(&batch.values)
        .zip(&batch.timestamps_ms);
    for (i, ((s, &value), &timestamp_ms)) in records.enumerate() {
        let name = resolve(text, Span::name(s), i, SpanOf::Name)?;
        // Lengths are checked before anything is copied: a span may cover the whole
        // text, and a key built from unchecked spans would be unbounded.
        if name.len() > limits.max_name_bytes {
            return Err(refusal(text, i, name, &[], limits));
        }
        let count = s[3] as usize;
        if count > limits.max_labels {
            let name = String::from_utf8_lossy(name);
            check_label_count(count, &|| format!("sample #{i} `{name}`"), limits)?;
        }
        let first = s[2] as usize;
        let labels = first
            .checked_add(count)
            .and_then(|end| end.checked_mul(STRIDE))
            .and_then(|end| batch.labels.get(first * STRIDE..end))
            .ok_or_else(|| {
                OutputError::Invalid(format!(
                    "sample #{i} has the labels #{first} to #{} of a batch of {}",
                    first as u64 + count as u64,
                    batch.labels.len() / STRIDE
                ))
            })?;
        pieces.clear();
        for (j, l) in labels.chunks_exact(STRIDE).enumerate() {
            let label_name = resolve(text, Span::label_name(l), i, SpanOf::LabelName(j))?;
            let value = resolve(text, Span::label_value(l), i, SpanOf::LabelValue(j))?;
            if label_name.len() > limits.max_label_bytes || value.len() > limits.max_label_bytes {
                return Err(refusal(text, i, name, labels, limits));
            }
            pieces.push((label_name, value));
        }
        let hash = cache.hash(name, &pieces);
        let (name, labels) = match cache.find(hash, name, &pieces) {
            Some(e) => (e.name.clone(), e.labels.clone()),
            None => {
                let bytes = stored_bytes(name, &pieces);
                new_series_bytes = new_series_bytes.saturating_add(bytes);
                if new_series_bytes > limits.max_new_series_bytes {
                    return Err(OutputError::Limit(format!(
                        "returned new series that take more than {} bytes to store in one \
                         call (the plugin's limits.memory); sample #{i} `{}` passed it \
                         (samples sharing label ranges or overlapping spans multiply \
                         the text they name)",
                        limits.max_new_series_bytes,
                        shown(&String::from_utf8_lossy(name))
                    )));
                }
                let (mut checked_name, checked_labels) =
                    check_series(text, i, name, labels, limits)?;
                // New series mostly come in families: they share one name.
                match &family {
                    Some(shared) if *shared == checked_name => checked_name = shared.clone(),
                    _ => family = Some(checked_name.clone()),
                }
                cache.insert(
                    hash,
                    bytes,
                    name,
                    &pieces,
                    checked_name.clone(),
                    checked_labels.clone(),
                );
                (checked_name, checked_labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
            timestamp_ms,
        });
    }
    Ok(out)
}

/// The error of sample #`i`, which breaks a length limit: the full checks name the limit
/// and its value (they copy only labels that passed before the offending one).
fn refusal(
    text: &[u8],
    i: usize,
    name: &[u8],
    labels: &[u32],
    limits: &OutputLimits,
) -> OutputError {
    match check_series(text, i, name, labels, limits) {
        Err(e) => e,
        Ok(_) => OutputError::Invalid(format!("sample #{i} breaks a length limit")),
    }
}

/// Checks a series not seen before: every span on character boundaries, the name and
/// label limits and syntax (spans are already known to be in bounds). `labels` holds the
/// sample's label records, four numbers each.
fn check_series(
    text: &[u8],
    i: usize,
    name: &[u8],
    labels: &[u32],
    limits: &OutputLimits,
) -> Result<(MetricName, Labels), OutputError> {
    let name = as_str(name, i, SpanOf::Name)?;
    check_metric_name(i, name, limits)?;
    let owner = || format!("sample #{i} `{name}`");
    let mut pairs = Vec::with_capacity(labels.len() / STRIDE);
    for (j, l) in labels.chunks_exact(STRIDE).enumerate() {
        let ln = as_str(
            resolve(text, Span::label_name(l), i, SpanOf::LabelName(j))?,
            i,
            SpanOf::LabelName(j),
        )?;
        let lv = as_str(
            resolve(text, Span::label_value(l), i, SpanOf::LabelValue(j))?,
            i,
            SpanOf::LabelValue(j),
        )?;
        check_label(ln, lv, &owner, limits)?;
        pairs.push((ln.to_string(), lv.to_string()));
    }
    Ok((name.into(), pairs.into_iter().collect()))
}

/// Checks and converts the events an analyzer returned, attributing them to `source`.
pub(crate) fn events_from_wit(
    events: Vec<types::Event>,
    source: &str,
    limits: &OutputLimits,
) -> Result<Vec<Event>, OutputError> {
    if events.len() > MAX_EVENTS_PER_CALL {
        return Err(OutputError::Limit(format!(
            "returned {} events, more than the {MAX_EVENTS_PER_CALL} allowed per call",
            events.len()
        )));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.kind.is_empty() || e.kind.len() > MAX_EVENT_KIND_LEN {
                return Err(OutputError::Invalid(format!(
                    "event #{i} has kind `{}`; a kind is 1 to {MAX_EVENT_KIND_LEN} bytes",
                    shown(&e.kind)
                )));
            }
            if e.message.len() > MAX_EVENT_MESSAGE_LEN {
                return Err(OutputError::Limit(format!(
                    "returned event #{i} `{}` with a {}-byte message, longer than the \
                     {MAX_EVENT_MESSAGE_LEN} bytes allowed",
                    e.kind,
                    e.message.len()
                )));
            }
            let kind = &e.kind;
            let labels = convert_labels(e.labels, || format!("event #{i} `{kind}`"), limits)?;
            Ok(Event {
                source: source.to_string(),
                labels,
                kind: e.kind,
                severity: match e.severity {
                    types::Severity::Info => Severity::Info,
                    types::Severity::Warning => Severity::Warning,
                    types::Severity::Critical => Severity::Critical,
                },
                message: e.message,
                timestamp_ms: e.timestamp_ms,
            })
        })
        .collect()
}

/// Converts the engine's windows into the WIT type passed to `analyze`.
pub(crate) fn windows_to_wit(windows: Vec<SeriesWindow>) -> Vec<types::SeriesWindow> {
    windows
        .into_iter()
        .map(|w| types::SeriesWindow {
            name: w.key.name.into(),
            labels: w
                .key
                .labels
                .into_iter()
                .map(|(name, value)| types::Label { name, value })
                .collect(),
            points: w
                .points
                .into_iter()
                .map(|p| types::Point {
                    timestamp_ms: p.timestamp_ms,
                    value: p.value,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)]) -> types::Sample {
        types::Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| types::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            value: 1.0,
            timestamp_ms: 5,
        }
    }

    #[test]
    fn names_follow_prometheus() {
        assert!(valid_metric_name("system_cpu_usage_percent"));
        assert!(valid_metric_name("ns:rule_1"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("cpu-usage"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("cpu"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
    }

    fn limits() -> OutputLimits {
        OutputLimits::from(&PluginLimits::default())
    }

    #[test]
    fn invalid_samples_are_named_in_the_error() {
        let l = limits();
        let ok = samples_from_wit(vec![sample("up", &[("job", "a")])], &l).unwrap();
        assert_eq!(ok[0].labels.get("job").unwrap(), "a");
        let err =
            samples_from_wit(vec![sample("up", &[]), sample("bad name", &[])], &l).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("sample #1") && m.contains("`bad name`")),
            "{err:?}"
        );
        let err = samples_from_wit(vec![sample("up", &[("bad-label", "x")])], &l).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("`bad-label`")),
            "{err:?}"
        );
    }

    #[test]
    fn limits_are_named_with_their_configured_values() {
        let l = OutputLimits {
            max_samples: 3,
            max_name_bytes: 10,
            max_labels: 2,
            max_label_bytes: 5,
            ..limits()
        };
        let err = samples_from_wit(vec![sample("up", &[]); 4], &l).unwrap_err();
        assert_eq!(
            err,
            OutputError::Limit("returned 4 samples, more than limits.max_samples = 3".into())
        );
        let err = samples_from_wit(vec![sample("abcdefghijk", &[])], &l).unwrap_err();
        assert_eq!(
            err,
            OutputError::Limit(
                "returned sample #0 with a 11-byte name `abcdefghijk`, longer than \
                 limits.max_name_bytes = 10"
                    .into()
            )
        );
        let err = samples_from_wit(
            vec![sample("up", &[("a", "1"), ("b", "2"), ("c", "3")])],
            &l,
        )
        .unwrap_err();
        assert!(
            matches!(&err, OutputError::Limit(m) if m.contains("3 labels, more than limits.max_labels = 2")),
            "{err:?}"
        );
        let err = samples_from_wit(vec![sample("up", &[("a", "123456")])], &l).unwrap_err();
        assert!(
            matches!(&err, OutputError::Limit(m) if m.contains("label `a` has a 6-byte value, longer than limits.max_label_bytes = 5")),
            "{err:?}"
        );
        let err = samples_from_wit(vec![sample("up", &[("abcdef", "1")])], &l).unwrap_err();
        assert!(
            matches!(&err, OutputError::Limit(m) if m.contains("6-byte label name")),
            "{err:?}"
        );
        // Exactly at the limits is fine.
        samples_from_wit(vec![sample("abcdefghij", &[("abcde", "12345")]); 3], &l).unwrap();
    }

    /// A batch of `(name, labels)` samples, each string written once into the text, like
    /// the SDK writes it.
    fn batch(samples: &[(&str, &[(&str, &str)])]) -> types::SampleBatch {
        let mut text = String::new();
        let mut span = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            (start, s.len() as u32)
        };
        let mut out = Vec::new();
        let mut labels = Vec::new();
        for (name, ls) in samples.iter() {
            let (name_start, name_len) = span(name);
            let first_label = (labels.len() / STRIDE) as u32;
            for (n, v) in ls.iter() {
                let (name_start, name_len) = span(n);
                let (value_start, value_len) = span(v);
                labels.extend([name_start, name_len, value_start, value_len]);
            }
            out.extend([name_start, name_len, first_label, ls.len() as u32]);
        }
        types::SampleBatch {
            text,
            samples: out,
            values: (0..samples.len()).map(|i| i as f64).collect(),
            timestamps_ms: vec![7; samples.len()],
            labels,
        }
    }

    #[test]
    fn a_batch_converts_and_repeated_series_come_from_the_cache() {
        let l = limits();
        let mut cache = SeriesCache::default();
        let b = batch(&[
            ("up", &[("job", "a"), ("zone", "z1")]),
            ("up", &[]),
            ("up", &[("job", "b")]),
        ]);
        let first = samples_from_batch(b.clone(), &l, &mut cache).unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].name, "up");
        assert_eq!(first[0].labels.get("zone").map(String::as_str), Some("z1"));
        assert!(first[1].labels.is_empty());
        assert_eq!(first[2].value, 2.0);
        assert_eq!(first[2].timestamp_ms, 7);
        assert_eq!(cache.len(), 3);
        // The same series again: the same output, no new entries, and the label sets are
        // the cached ones (shared, not rebuilt).
        let second = samples_from_batch(b.clone(), &l, &mut cache).unwrap();
        assert_eq!(second, first);
        assert_eq!(cache.len(), 3);
        for (a, b) in first.iter().zip(&second) {
            assert!(
                a.labels.ptr_eq(&b.labels),
                "{:?} came from the cache",
                b.labels
            );
        }
        // A name and label value that would run together do not collide.
        let b2 = batch(&[("up", &[("job", "ab")]), ("up", &[("jo", "bab")])]);
        let out = samples_from_batch(b2.clone(), &l, &mut cache).unwrap();
        assert_eq!(out[0].labels.get("job").map(String::as_str), Some("ab"));
        assert_eq!(out[1].labels.get("jo").map(String::as_str), Some("bab"));
    }

    #[test]
    fn spans_over_the_whole_text_are_refused_before_anything_is_copied() {
        let l = limits();
        let mut cache = SeriesCache::default();
        // 1 MiB of text; every span of the sample covers all of it, 64 labels' worth.
        let text = "a".repeat(1 << 20);
        let whole = [0, text.len() as u32, 0, text.len() as u32];
        let b = |name_len: u32| types::SampleBatch {
            text: text.clone(),
            samples: vec![0, name_len, 0, 64],
            values: vec![1.0],
            timestamps_ms: vec![1],
            labels: whole.repeat(64),
        };
        let err = samples_from_batch(b(text.len() as u32), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Limit(m) if m.contains("limits.max_name_bytes")),
            "{err:?}"
        );
        let err = samples_from_batch(b(2), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Limit(m) if m.contains("limits.max_label_bytes")),
            "{err:?}"
        );
        // Nothing was built from the oversized spans.
        assert_eq!((cache.len(), cache.bytes), (0, 0));
    }

    #[test]
    fn a_batch_is_checked_like_a_list_of_samples() {
        let l = OutputLimits {
            max_samples: 3,
            max_name_bytes: 10,
            max_labels: 2,
            max_label_bytes: 5,
            ..limits()
        };
        let mut cache = SeriesCache::default();
        let mut check = |b: types::SampleBatch| samples_from_batch(b, &l, &mut cache).unwrap_err();
        assert_eq!(
            check(batch(&[("up", &[][..]); 4])),
            OutputError::Limit("returned 4 samples, more than limits.max_samples = 3".into())
        );
        assert_eq!(
            check(batch(&[("abcdefghijk", &[])])),
            OutputError::Limit(
                "returned sample #0 with a 11-byte name `abcdefghijk`, longer than \
                 limits.max_name_bytes = 10"
                    .into()
            )
        );
        let err = check(batch(&[("up", &[]), ("bad name", &[])]));
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("sample #1") && m.contains("`bad name`")),
            "{err:?}"
        );
        let err = check(batch(&[("up", &[("a", "1"), ("b", "2"), ("c", "3")])]));
        assert_eq!(
            err,
            OutputError::Limit(
                "returned sample #0 `up` with 3 labels, more than limits.max_labels = 2".into()
            )
        );
        let err = check(batch(&[("up", &[("a", "123456")])]));
        assert_eq!(
            err,
            OutputError::Limit(
                "returned sample #0 `up` whose label `a` has a 6-byte value, longer than \
                 limits.max_label_bytes = 5"
                    .into()
            )
        );
        let err = check(batch(&[("up", &[("bad-l", "x")])]));
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("`bad-l`")),
            "{err:?}"
        );
        // Exactly at the limits is fine.
        samples_from_batch(
            batch(&[("abcdefghij", &[("abcde", "12345")][..]); 3]),
            &l,
            &mut cache,
        )
        .unwrap();
    }

    #[test]
    fn malformed_spans_are_refused_not_trusted() {
        let l = limits();
        let mut cache = SeriesCache::default();
        // A name span past the end of the text.
        let mut b = batch(&[("up", &[("job", "a")])]);
        (b.samples[0], b.samples[1]) = (2, 100);
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("sample #0's metric name") && m.contains("outside the batch's 6-byte text")),
            "{err:?}"
        );
        // start + len overflowing u32 arithmetic.
        (b.samples[0], b.samples[1]) = (u32::MAX, u32::MAX);
        assert!(samples_from_batch(b.clone(), &l, &mut cache).is_err());
        // A label range past the end of the label list.
        let mut b = batch(&[("up", &[("job", "a")])]);
        b.samples[2] = 1;
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("labels #1 to #2 of a batch of 1")),
            "{err:?}"
        );
        // A first label near the top of u32 (the range end and its byte offset overflow a
        // 32-bit usize, and lie far outside the column on 64 bits).
        b.samples[2] = u32::MAX;
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("of a batch of 1")),
            "{err:?}"
        );
        // A span cutting a character in two.
        let mut b = batch(&[("up", &[("job", "é")])]);
        b.labels[3] = 1;
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("label #0's value span does not start and end on UTF-8")),
            "{err:?}"
        );
        assert_eq!(cache.len(), 0, "nothing invalid is remembered");
    }

    #[test]
    fn a_batch_naming_the_same_series_again_takes_them_from_the_previous_call() {
        let l = limits();
        let mut cache = SeriesCache::default();
        let b = batch(&[("up", &[("job", "a")]), ("load", &[])]);
        let first = samples_from_batch(b.clone(), &l, &mut cache).unwrap();
        // New values and timestamps, same series: the previous call's series, the new
        // numbers.
        let mut again = b.clone();
        again.values = vec![10.0, 20.0];
        again.timestamps_ms = vec![100, 200];
        cache.table.clear(); // proves the previous batch, not the cache, answered
        let second = samples_from_batch(again, &l, &mut cache).unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!((second[0].value, second[0].timestamp_ms), (10.0, 100));
        assert_eq!((second[1].value, second[1].timestamp_ms), (20.0, 200));
        assert_eq!(second[1].name, "load");
        assert!(second[0].labels.ptr_eq(&first[0].labels));
        assert_eq!(cache.len(), 0);
        // The same text with other spans is another batch: checked sample by sample.
        let mut swapped = b.clone();
        swapped.samples.swap(0, 4); // name spans of the two samples exchanged
        swapped.samples.swap(1, 5);
        let out = samples_from_batch(swapped, &l, &mut cache).unwrap();
        assert_eq!((out[0].name.as_str(), out[1].name.as_str()), ("load", "up"));
        assert_eq!(out[0].labels.get("job").map(String::as_str), Some("a"));
        assert!(out[1].labels.is_empty());
        // A batch that missed is not kept (a collector whose series always change would
        // pay for it on every call); the next one is.
        assert!(cache.previous.is_none());
        // A malformed batch is refused even when it follows a kept good one, and the good
        // one is still what the next identical batch is compared with.
        samples_from_batch(b.clone(), &l, &mut cache).unwrap();
        assert!(cache.previous.is_some());
        let mut bad = b.clone();
        bad.text = "up\u{0}jobaload".into();
        assert!(samples_from_batch(bad, &l, &mut cache).is_err());
        let mut bad = b.clone();
        bad.values.push(1.0);
        assert!(samples_from_batch(bad, &l, &mut cache).is_err());
        assert!(cache.previous.is_some(), "a refused batch changes nothing");
        cache.table.clear();
        assert_eq!(
            samples_from_batch(b.clone(), &l, &mut cache).unwrap(),
            first
        );
        assert_eq!(cache.len(), 0, "answered by the previous batch");
        // The same text and samples with other label records is another batch.
        let mut relabelled = b;
        relabelled.labels[2..4].copy_from_slice(&[6, 4]); // job="load"
        let out = samples_from_batch(relabelled, &l, &mut cache).unwrap();
        assert_eq!(out[0].labels.get("job").map(String::as_str), Some("load"));
    }

    #[test]
    fn a_known_series_in_a_changed_batch_comes_from_the_cache() {
        let l = limits();
        let mut cache = SeriesCache::default();
        let b = batch(&[("up", &[("job", "a")]), ("load", &[("cpu", "0")])]);
        let first = samples_from_batch(b, &l, &mut cache).unwrap();
        assert_eq!(cache.len(), 2);
        // The same series in the other order: the previous batch does not match, the
        // cache answers with the very same name and label set.
        let swapped = batch(&[("load", &[("cpu", "0")]), ("up", &[("job", "a")])]);
        let out = samples_from_batch(swapped, &l, &mut cache).unwrap();
        assert_eq!(cache.len(), 2, "no new entries");
        assert!(out[0].labels.ptr_eq(&first[1].labels));
        assert!(out[1].labels.ptr_eq(&first[0].labels));
        assert!(out[1].name.ptr_eq(&first[0].name));
        // New series of one metric share one name.
        let family = batch(&[("up", &[("job", "b")]), ("up", &[("job", "c")])]);
        let out = samples_from_batch(family, &l, &mut cache).unwrap();
        assert!(out[0].name.ptr_eq(&out[1].name));
    }

    fn key_of(name: &[u8], labels: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut key = Vec::new();
        write_key(&mut key, name, labels);
        key
    }

    #[test]
    fn cache_keys_compare_exactly() {
        let name: &[u8] = b"up";
        let labels: &[(&[u8], &[u8])] = &[(b"job", b"ab"), (b"zone", b"")];
        let key = key_of(name, labels);
        assert!(key_is(&key, name, labels));
        // Pieces that run together differently, a missing or an extra label, another
        // value, an empty value made non-empty: all different series.
        assert!(!key_is(&key, name, &[(b"jo", b"bab"), (b"zone", b"")]));
        assert!(!key_is(&key, b"upjob", &[(b"ab", b""), (b"zone", b"")]));
        assert!(!key_is(&key, name, &labels[..1]));
        assert!(!key_is(&key, name, &[labels[0], labels[1], (b"x", b"1")]));
        assert!(!key_is(&key, name, &[(b"job", b"ac"), (b"zone", b"")]));
        assert!(!key_is(&key, name, &[(b"job", b"ab"), (b"zone", b"x")]));
        assert!(!key_is(&key, b"u", labels));
        assert!(key_is(&key_of(b"", &[]), b"", &[]));
    }

    #[test]
    fn series_named_by_a_small_batch_cannot_make_the_host_copy_unbounded_text() {
        // 1,000 samples with their own short names, all sharing one range of 64 labels
        // whose names and values are one 1 KiB piece of text: a 6 KiB batch naming about
        // 130 MiB of series.
        let mut text = "l".repeat(1024);
        let mut samples = Vec::new();
        let n = 1000u32;
        for i in 0..n {
            let name = format!("m{i}");
            samples.extend([text.len() as u32, name.len() as u32, 0, 64]);
            text.push_str(&name);
        }
        let labels: Vec<u32> = (0..64).flat_map(|_| [0, 1024, 0, 1024]).collect();
        let b = types::SampleBatch {
            text,
            samples,
            values: vec![1.0; n as usize],
            timestamps_ms: vec![1; n as usize],
            labels,
        };
        let l = OutputLimits {
            max_label_bytes: 1024,
            max_labels: 64,
            max_new_series_bytes: 8 << 20,
            ..limits()
        };
        let mut cache = SeriesCache::default();
        // Not `unwrap_err`: printing a million-label success would drown the failure.
        let Err(err) = samples_from_batch(b, &l, &mut cache) else {
            panic!("a batch naming 130 MiB of series was accepted");
        };
        assert!(
            matches!(&err, OutputError::Limit(m) if m.contains("more than 8388608 bytes to store in one call")
                && m.contains("limits.memory")),
            "{err:?}"
        );
        assert!(cache.bytes <= SERIES_CACHE_MAX_BYTES, "{}", cache.bytes);
    }

    #[test]
    fn columns_that_disagree_are_refused() {
        let l = limits();
        let mut cache = SeriesCache::default();
        let good = batch(&[("up", &[("job", "a")]), ("up", &[])]);
        let mut b = good.clone();
        b.samples.pop();
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("7 numbers in `samples` for 2 values")),
            "{err:?}"
        );
        let mut b = good.clone();
        b.timestamps_ms.push(1);
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("3 timestamps for 2 values")),
            "{err:?}"
        );
        let mut b = good;
        b.labels.push(0);
        let err = samples_from_batch(b.clone(), &l, &mut cache).unwrap_err();
        assert!(
            matches!(&err, OutputError::Invalid(m) if m.contains("5 numbers in `labels`")),
            "{err:?}"
        );
    }

    #[test]
    fn the_series_cache_is_bounded() {
        let l = limits();
        let mut cache = SeriesCache::default();
        let names: Vec<String> = (0..SERIES_CACHE_MAX_ENTRIES + 10)
            .map(|i| format!("m{i}"))
            .collect();
        let samples: Vec<(&str, &[(&str, &str)])> =
            names.iter().map(|n| (n.as_str(), &[][..])).collect();
        let out = samples_from_batch(batch(&samples), &l, &mut cache).unwrap();
        assert_eq!(out.len(), SERIES_CACHE_MAX_ENTRIES + 10);
        assert!(cache.len() <= SERIES_CACHE_MAX_ENTRIES);
        assert_eq!(
            out[SERIES_CACHE_MAX_ENTRIES + 9].name,
            names[SERIES_CACHE_MAX_ENTRIES + 9]
        );
    }
}
