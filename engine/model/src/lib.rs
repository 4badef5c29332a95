//! The data that passes between pipeline stages. Every type that crosses a stage boundary
//! lives here, so a stage never depends on another stage's internals.
//!
//! ```text
//! collectors ──Sample──▶ store ──SeriesWindow──▶ analyzers ──Sample/Event──▶ store
//!                          │
//!                          └──(rule functions)──▶ rules ──AlertCandidate──▶ alerts ──Notification──▶ notify
//! ```

pub mod self_metrics;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A label set. Sorted so that equal sets compare, hash and print the same way.
///
/// Shared behind an [`Arc`]: a series' label set is cloned on every hop (plugin output,
/// store, rule results, alerts), and a clone here is a reference-count increment instead
/// of copying every string. Reads go through [`Deref`] to the map; writes
/// ([`DerefMut`]) copy the map first only when it is shared (clone-on-write), so a
/// mutation never shows through another holder's copy. Equality and ordering look at the
/// pointer first, so comparing two clones of one set costs nothing.
///
/// ```
/// use telltale_model::Labels;
///
/// let mut a = Labels::from([("host".to_string(), "db1".to_string())]);
/// let b = a.clone(); // shares the map
/// a.insert("core".into(), "0".into()); // `a` gets its own copy
/// assert_eq!(b.len(), 1);
/// assert_eq!(a.get("core").map(String::as_str), Some("0"));
/// ```
#[derive(Clone, Default)]
pub struct Labels(Arc<BTreeMap<String, String>>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// Whether both are the same shared map (a clone of one another), without looking
    /// at the contents.
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The map, taken out of the [`Arc`] (copied only when it is shared).
    pub fn into_map(self) -> BTreeMap<String, String> {
        Arc::unwrap_or_clone(self.0)
    }
}

impl Deref for Labels {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Labels {
    fn deref_mut(&mut self) -> &mut Self::Target {
        Arc::make_mut(&mut self.0)
    }
}

impl std::hash::Hash for Labels {
    // By content, as equality is (the pointer check there is only a shortcut).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        self.ptr_eq(other) || self.0 == other.0
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        if self.ptr_eq(other) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        Labels(Arc::new(map))
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Labels {
        Labels(Arc::new(BTreeMap::from(pairs)))
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        Labels(Arc::new(iter.into_iter().collect()))
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_map().into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        BTreeMap::deserialize(deserializer).map(Labels::from)
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String>>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String>>::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, String>>::json_schema(generator)
    }

    fn inline_schema() -> bool {
        true
    }
}

/// A metric name, shared behind an [`Arc`].
///
/// Every sample carries its series' name, and the same few names recur in every call of
/// every collector: a clone here is a reference-count increment, where a `String` would
/// allocate and copy. It reads as a `&str` ([`Deref`]), compares, hashes and orders by
/// content (the pointer is checked first, so two clones compare for free), and
/// serializes as a plain string.
///
/// ```
/// use telltale_model::MetricName;
///
/// let name = MetricName::from("cpu_usage_percent");
/// let copy = name.clone(); // shares the text
/// assert_eq!(copy, "cpu_usage_percent");
/// assert!(name.ends_with("_percent"));
/// assert_eq!(name.to_string(), "cpu_usage_percent");
/// ```
#[derive(Clone)]
pub struct MetricName(Arc<str>);

impl MetricName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both share one allocation (a clone of one another), without looking at
    /// the text.
    pub fn ptr_eq(&self, other: &MetricName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for MetricName {
    fn default() -> MetricName {
        MetricName::from("")
    }
}

impl Deref for MetricName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for MetricName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for MetricName {
    // Sound because Eq, Ord and Hash below are those of the text.
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::hash::Hash for MetricName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that lookups by `&str` through `Borrow` find it.
        self.as_str().hash(state)
    }
}

impl PartialEq for MetricName {
    fn eq(&self, other: &MetricName) -> bool {
        self.ptr_eq(other) || self.0 == other.0
    }
}

impl Eq for MetricName {}

impl PartialOrd for MetricName {
    fn partial_cmp(&self, other: &MetricName) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MetricName {
    fn cmp(&self, other: &MetricName) -> std::cmp::Ordering {
        if self.ptr_eq(other) {
            return std::cmp::Ordering::Equal;
        }
        self.0.cmp(&other.0)
    }
}

impl PartialEq<str> for MetricName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for MetricName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for MetricName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<MetricName> for str {
    fn eq(&self, other: &MetricName) -> bool {
        self == &*other.0
    }
}

impl PartialEq<MetricName> for &str {
    fn eq(&self, other: &MetricName) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<MetricName> for String {
    fn eq(&self, other: &MetricName) -> bool {
        **self == *other.0
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for MetricName {
    fn from(name: &str) -> MetricName {
        MetricName(Arc::from(name))
    }
}

impl From<String> for MetricName {
    fn from(name: String) -> MetricName {
        MetricName(Arc::from(name))
    }
}

impl From<&String> for MetricName {
    fn from(name: &String) -> MetricName {
        MetricName::from(name.as_str())
    }
}

impl From<MetricName> for String {
    fn from(name: MetricName) -> String {
        name.as_str().to_string()
    }
}

impl Serialize for MetricName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<MetricName, D::Error> {
        // A visitor rather than `String`: a borrowed or transient string is copied once,
        // straight into the `Arc`.
        struct NameVisitor;

        impl serde::de::Visitor<'_> for NameVisitor {
            type Value = MetricName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metric name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<MetricName, E> {
                Ok(MetricName::from(name))
            }

            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<MetricName, E> {
                Ok(MetricName::from(name))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

impl JsonSchema for MetricName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        String::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Milliseconds since the Unix epoch, the time unit of every sample.
pub type TimestampMs = i64;

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(0)
}

/// Converts a duration to whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One observation of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Metric name, Prometheus conventions (`snake_case`, base units, `_total` for counters).
    /// A [`MetricName`], so copying a sample or handing its name to the next one of the
    /// same series shares the text instead of allocating.
    pub name: MetricName,
    /// The series' labels.
    pub labels: Labels,
    /// The observed value.
    pub value: f64,
    /// When it was observed.
    pub timestamp_ms: TimestampMs,
}

impl Sample {
    /// A sample from borrowed parts (the engine's own metrics, tests).
    ///
    /// ```
    /// use telltale_model::Sample;
    ///
    /// let s = Sample::new("queue_depth", &[("queue", "ingest")], 12.0, 1_000);
    /// assert_eq!(s.labels.get("queue").map(String::as_str), Some("ingest"));
    /// ```
    pub fn new(
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
        timestamp_ms: TimestampMs,
    ) -> Sample {
        Sample {
            name: MetricName::from(name),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp_ms,
        }
    }
}

/// The identity of a series: its metric name and label set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Metric name (shared with the samples and store entries of the same series).
    pub name: MetricName,
    /// Label set.
    pub labels: Labels,
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        write_labels(f, &self.labels)
    }
}

/// Writes `{a="1",b="2"}` (nothing for an empty set), escaping as Prometheus does.
pub fn write_labels(f: &mut impl fmt::Write, labels: &Labels) -> fmt::Result {
    if labels.is_empty() {
        return Ok(());
    }
    f.write_char('{')?;
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            f.write_char(',')?;
        }
        write!(f, "{k}=\"")?;
        for c in v.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')?;
    }
    f.write_char('}')
}

/// One point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// When it was observed.
    pub timestamp_ms: TimestampMs,
    /// The observed value.
    pub value: f64,
}

/// The recent history of one series, oldest point first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesWindow {
    /// Which series.
    pub key: SeriesKey,
    /// Its points inside the window, oldest first.
    pub points: Vec<Point>,
}

/// How much an alert or event matters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record; nobody needs to act.
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone must act now.
    Critical,
}

impl Severity {
    /// The lowercase name used in config, rules and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an analyzer noticed that is not a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The plugin instance (config `name`) that reported it.
    pub source: String,
    /// Short machine-readable kind, e.g. `change-point`.
    pub kind: String,
    /// How much it matters.
    pub severity: Severity,
    /// One human-readable sentence.
    pub message: String,
    /// Which series or thing it is about.
    pub labels: Labels,
    /// When it happened.
    pub timestamp_ms: TimestampMs,
}

/// One alert a rule's `evaluate()` returned on one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCandidate {
    /// The value that made the rule fire (shown to people, sent in payloads).
    pub value: f64,
    /// Labels that tell this alert apart from the rule's other alerts (merged over the
    /// rule's own labels).
    pub labels: Labels,
    /// A summary for this instance; the rule's summary is used when absent.
    pub summary: Option<String>,
}

/// Whether a notification announces a firing or a resolved alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The alert's condition has held for its hold duration.
    Firing,
    /// A firing alert's condition stopped holding.
    Resolved,
}

impl AlertStatus {
    /// The lowercase name used in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// Why a notification was made: the payload's `reason`. A receiver that only cares whether
/// an alert is firing reads `status`; `reason` says what happened to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationReason {
    /// The alert started firing or resolved.
    #[default]
    StateChange,
    /// Still firing: its repeat interval (the rule's `repeat`, or the route's
    /// `repeat_interval`) passed.
    Repeat,
    /// It changed state so often that it is flapping (Kapacitor's weighted measure): the
    /// changes that follow are not announced until it settles.
    Flapping,
    /// It stopped flapping; `status` is where it settled.
    Settled,
    /// An escalation policy's level reached further receivers (nobody acknowledged).
    Escalation,
    /// Someone acknowledged it (the alert's `ack` says who and why).
    Acknowledged,
    /// Someone withdrew an acknowledgement, or its `ack_timeout` passed.
    Unacknowledged,
}

impl NotificationReason {
    /// The snake_case name used in payloads and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationReason::StateChange => "state_change",
            NotificationReason::Repeat => "repeat",
            NotificationReason::Flapping => "flapping",
            NotificationReason::Settled => "settled",
            NotificationReason::Escalation => "escalation",
            NotificationReason::Acknowledged => "acknowledged",
            NotificationReason::Unacknowledged => "unacknowledged",
        }
    }
}

/// What an alert instance is about: the rule's condition, or the rule's own trouble.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// The rule's condition holds.
    #[default]
    Condition,
    /// A series the rule reads stopped arriving for the rule's `nodata` time (labels: the
    /// series' own, `metric` naming it, and `alertstate="nodata"`).
    Nodata,
    /// The rule kept failing to evaluate for its `error_after` time (the summary is the
    /// error, `rule_file` the file; label `alertstate="error"`).
    Error,
}

impl AlertKind {
    /// The lowercase name (the `alertstate` label of nodata and error alerts).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Condition => "condition",
            AlertKind::Nodata => "nodata",
            AlertKind::Error => "error",
        }
    }
}

/// Who acknowledged an alert, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Acknowledgement {
    /// Who (free text: a name, an e-mail address, a chat handle).
    pub by: String,
    /// Why, or what they are doing about it (may be empty).
    pub comment: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: TimestampMs,
}

/// The state of one alert instance at the moment a notification was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable identity of the instance: a hash of the rule name and the full label set.
    pub fingerprint: String,
    /// The rule's name (also the `alertname` label).
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Rule labels merged with the instance's labels, plus `alertname` and `severity`.
    pub labels: Labels,
    /// Human-readable summary.
    pub summary: String,
    /// The last value the rule reported.
    pub value: f64,
    /// When the condition was first seen (start of the pending period).
    pub active_since_ms: TimestampMs,
    /// When it started firing.
    pub firing_since_ms: TimestampMs,
    /// When it resolved (resolved notifications only).
    pub resolved_at_ms: Option<TimestampMs>,
    /// The file the rule came from (`<embedded>/NAME.rhai` for default rules).
    pub rule_file: String,
    /// What the alert is about: the condition (the usual case), missing data or a failing
    /// rule.
    #[serde(default)]
    pub kind: AlertKind,
    /// Who acknowledged it, when the alert manager's notification is about an acknowledged
    /// alert (its `acknowledged` notice, and escalation or repeats that still go out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Acknowledgement>,
}

/// One message for the notifiers: an alert started firing or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique per notification and stable across delivery retries (the webhook id and
    /// idempotency key).
    pub id: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// What happened: a state change, a repeat, flapping, an escalation, an acknowledgement.
    #[serde(default)]
    pub reason: NotificationReason,
    /// For the alert manager's state only, delivered to nobody: the resolve of an alert
    /// whose rule has `send_resolved: false` (the alert manager must still learn that it
    /// ended, or it would repeat and escalate it forever).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet: bool,
    /// The alert as it stood.
    pub alert: Alert,
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// The `collector` world: `init` + `collect`.
    Collector,
    /// The `analyzer` world: `init` + `analyze`.
    Analyzer,
}

impl PluginKind {
    /// `collector` or `analyzer`, as in the WIT world's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Collector => "collector",
            PluginKind::Analyzer => "analyzer",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's metadata: everything about it except its code.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    /// Unique rule name, `[a-zA-Z_][a-zA-Z0-9_]*` (the alert's `alertname`).
    pub name: String,
    /// Severity of every alert the rule raises.
    pub severity: Severity,
    /// How long a condition must hold before its alert fires (`hold:`, default 0).
    pub hold: Duration,
    /// Labels added to every alert of the rule.
    pub labels: Labels,
    /// Summary used when an alert does not bring its own (may be empty).
    pub summary: String,
    /// The file the rule came from (`<embedded>/NAME.rhai` for the built-in rules).
    pub file: PathBuf,
    /// How the rule's alerts behave between their conditions: keep-firing, hysteresis,
    /// flapping, missing data, errors, repeats.
    pub policy: AlertPolicy,
    /// For a scaling rule (`kind: "scaling"`), its settings; `None` for an alert rule.
    pub scaling: Option<ScalingSpec>,
}

/// The lifecycle settings of a rule's alerts (the `RULE` fields besides name, severity,
/// hold, labels and summary). `Default` is what a rule that sets none of them gets: the
/// Prometheus behaviour (fire after `hold`, resolve as soon as the condition stops).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPolicy {
    /// How long an alert keeps firing after its condition was last seen (`keep_firing_for`,
    /// Prometheus' name; default 0).
    pub keep_firing_for: Duration,
    /// Enter and exit thresholds per severity (`thresholds:`), lowest severity first. Empty
    /// means `evaluate()` decides alone and the rule's `severity` applies.
    pub thresholds: Vec<Threshold>,
    /// Which side of a threshold is bad (`direction:`, default above).
    pub direction: Direction,
    /// Flap detection (`flapping:`); `None` when off.
    pub flapping: Option<Flapping>,
    /// How long a series the rule reads may stay silent before a `nodata` alert
    /// (`nodata:`); `None` when off.
    pub nodata: Option<Duration>,
    /// How long the rule must keep failing before an `error` alert (`error_after:`).
    pub error_after: Duration,
    /// How often a firing alert is announced again, per severity (`repeat:`); `None` means
    /// once (the route's `repeat_interval` still applies).
    pub repeat: [Option<Duration>; 3],
    /// Whether resolved notifications are sent (`send_resolved:`, default true).
    pub send_resolved: bool,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            keep_firing_for: Duration::ZERO,
            thresholds: Vec::new(),
            direction: Direction::Above,
            flapping: None,
            nodata: None,
            error_after: AlertPolicy::DEFAULT_ERROR_AFTER,
            repeat: [None; 3],
            send_resolved: true,
        }
    }
}

impl AlertPolicy {
    /// `error_after` when the rule does not say: long enough that one failed scrape or a
    /// rule being edited does not page, short enough that a broken rule is noticed.
    pub const DEFAULT_ERROR_AFTER: Duration = Duration::from_secs(300);

    /// The repeat interval of a severity, if any.
    pub fn repeat_for(&self, severity: Severity) -> Option<Duration> {
        self.repeat[severity as usize]
    }
}

/// One severity's pair of thresholds: an alert of that severity starts when the value
/// crosses `enter` and ends only when it crosses back past `exit` (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The severity this pair raises.
    pub severity: Severity,
    /// Enter when the value is beyond this (above it for [`Direction::Above`]).
    pub enter: f64,
    /// Leave only when the value is back beyond this (below it for [`Direction::Above`]).
    pub exit: f64,
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// High values are bad: enter when `value > enter`, leave when `value < exit`.
    #[default]
    Above,
    /// Low values are bad: enter when `value < enter`, leave when `value > exit`.
    Below,
}

impl Direction {
    /// Whether `value` is past `enter` (for entering).
    pub fn entered(self, value: f64, enter: f64) -> bool {
        match self {
            Direction::Above => value > enter,
            Direction::Below => value < enter,
        }
    }
    /// Whether `value` is back past `exit` (for leaving).
    pub fn exited(self, value: f64, exit: f64) -> bool {
        match self {
            Direction::Above => value < exit,
            Direction::Below => value > exit,
        }
    }
}

/// Kapacitor's flap detection: the weighted share of state changes among the last
/// `history` evaluations (older ones weigh less); above `high` the alert is flapping, and
/// it settles below `low`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flapping {
    /// How many evaluations are remembered (Kapacitor's `.history`, default 21).
    pub history: usize,
    /// Settles below this share (default 0.25).
    pub low: f64,
    /// Starts flapping above this share (default 0.5).
    pub high: f64,
}

impl Default for Flapping {
    fn default() -> Self {
        Flapping {
            history: 21,
            low: 0.25,
            high: 0.5,
        }
    }
}

/// `a == b` for the short strings of names and labels, without a call to `memcmp` per
/// string (which costs more than the comparison itself at these lengths).
#[inline]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// How a scaling rule's proposals are smoothed before they become decisions
/// (`RULE.scaling.stabilization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stabilization {
    /// Kubernetes HPA's `stabilizationWindowSeconds`: scaling up goes to the smallest
    /// proposal of the last `up_delay`, scaling down to the largest of the last
    /// `down_delay`, so one spike or dip never moves the target.
    #[default]
    Window,
    /// Ray Serve's `upscale_delay_s` / `downscale_delay_s`: a proposal to go up (or down)
    /// must be made on every evaluation for `up_delay` (`down_delay`) before it is acted
    /// on, and then the newest proposal is taken.
    Delay,
}

impl Stabilization {
    /// The name written in `RULE.scaling.stabilization`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stabilization::Window => "window",
            Stabilization::Delay => "delay",
        }
    }
}

/// A scaling rule's settings: the `scaling: #{ .. }` map of its `RULE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSpec {
    /// What is scaled: the name of an entry of the config's `scalers:` that applies the
    /// decisions (without one, decisions are recorded and notified only).
    pub target: String,
    /// The fewest replicas a decision may ask for.
    pub min: u32,
    /// The most replicas a decision may ask for.
    pub max: u32,
    /// How long a proposal to scale up must stand before it is acted on (see
    /// [`Stabilization`]).
    pub up_delay: Duration,
    /// How long a proposal to scale down must stand before it is acted on.
    pub down_delay: Duration,
    /// The most replicas one decision adds; `None`: no limit.
    pub max_step_up: Option<u32>,
    /// The most replicas one decision removes; `None`: no limit.
    pub max_step_down: Option<u32>,
    /// How proposals are smoothed.
    pub stabilization: Stabilization,
}

/// What a scaling rule's `evaluate()` proposed on one tick: `#{ desired, current?, reason,
/// inputs? }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingProposal {
    /// How many replicas the rule thinks the target needs now (before stabilisation).
    pub desired: u32,
    /// How many the target has, if the rule knows; otherwise the scaler is asked.
    pub current: Option<u32>,
    /// Why, in one sentence (shown in notifications and recorded with the decision).
    pub reason: String,
    /// The figures the rule based its proposal on (`inputs: #{ queue: 120.0 }`), recorded
    /// with the decision.
    pub inputs: BTreeMap<String, f64>,
}

/// A change of a target's replica count that Telltale decided on: recorded in the durable
/// store, announced to the notifiers and applied by the target's scaler, if it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScalingDecision {
    /// The scaling rule that proposed it.
    pub rule: String,
    /// What is scaled (`RULE.scaling.target`).
    pub target: String,
    /// The replica count when the decision was made.
    pub current: u32,
    /// The replica count decided on (stabilised, limited by the step, within min and max).
    pub desired: u32,
    /// What the rule proposed on the tick of the decision, before stabilisation.
    pub proposed: u32,
    /// The rule's reason.
    pub reason: String,
    /// The figures the rule based its proposal on.
    #[serde(default)]
    pub inputs: BTreeMap<String, f64>,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: TimestampMs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_key_prints_like_prometheus() {
        let key = SeriesKey {
            name: "disk_used_percent".into(),
            labels: Labels::from([
                ("mount".into(), "/".into()),
                ("note".into(), "a \"b\"\n".into()),
            ]),
        };
        assert_eq!(
            key.to_string(),
            r#"disk_used_percent{mount="/",note="a \"b\"\n"}"#
        );
        let bare = SeriesKey {
            name: "up".into(),
            labels: Labels::new(),
        };
        assert_eq!(bare.to_string(), "up");
    }

    #[test]
    fn metric_name_behaves_as_its_text() {
        use std::collections::{BTreeMap, HashMap};
        let a = MetricName::from("up");
        let b = MetricName::from(String::from("up"));
        assert!(!a.ptr_eq(&b));
        assert_eq!(a, b);
        assert_eq!(a, "up");
        assert_eq!("up", a);
        let (small, large) = (MetricName::from("a"), MetricName::from("b"));
        assert!(small < large);
        // Lookups by `&str` find names stored as keys (Borrow agrees with Hash and Ord).
        let hashed: HashMap<MetricName, u8> = HashMap::from([(a.clone(), 1)]);
        assert_eq!(hashed.get("up"), Some(&1));
        let ordered: BTreeMap<MetricName, u8> = BTreeMap::from([(b, 2)]);
        assert_eq!(ordered.get("up"), Some(&2));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#""up""#);
        assert_eq!(serde_json::from_str::<MetricName>(&json).unwrap(), a);
        assert_eq!(format!("{a} {a:?}"), r#"up "up""#);
    }

    #[test]
    fn severity_round_trips() {
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert_eq!(Severity::parse("page"), None);
    }
}
