//! The configuration file's shape. Every struct rejects unknown keys so that a typo is an
//! error with a position, never a silently ignored setting.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::notifiers::NotifierConfig;
use telltale_model::{Labels, Severity};

use crate::grants::Grants;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Engine-wide settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Collector plugins: what to gather and how often.
    #[serde(default)]
    pub collectors: Vec<CollectorConfig>,
    /// Analyzer plugins: derived samples and events from windows of stored samples.
    #[serde(default)]
    pub analyzers: Vec<AnalyzerConfig>,
    /// Where the Rhai rules come from and how they are sandboxed.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Where notifications go: each entry a `name`, a `kind` (`console`, `webhook`) and the
    /// kind's settings beside them.
    #[serde(default)]
    pub notifiers: Vec<NotifierConfig>,
    /// Which notifiers get which alerts. An alert goes to the notifiers of the first
    /// matching route (and of later ones while `continue` is true); an alert no route
    /// matches goes to every notifier.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The alert manager: routing tree, grouping, inhibition, time intervals, escalation
    /// policies (`docs/alerting.md`). Supersedes the flat `routes:` list.
    #[serde(default)]
    pub alerting: crate::alerting::AlertingConfig,
    /// Push ingest: Pushgateway, Influx line protocol and JSON over HTTP, StatsD over UDP.
    /// Off unless present; each listener is on when its own subsection is present.
    #[serde(default)]
    pub ingest: Option<IngestConfig>,
    /// The durable store: history in tiers, alert state and the notification outbox, in
    /// one SQLite file.
    #[serde(default)]
    pub store: StoreConfig,
    /// What applies the decisions of scaling rules: each entry a `name` (a rule's
    /// `RULE.scaling.target`) and a `kind` (`webhook`, `ray_serve`) with its settings.
    #[serde(default)]
    pub scalers: Vec<crate::scalers::ScalerConfig>,
}

/// The durable store (one SQLite file). The hot window rules read every tick stays in
/// memory (`engine.retention`); this is what survives a restart and what reads beyond
/// that window come from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Keep history, alert state and notifications on disk. With `false` nothing is
    /// written: history is the in-memory window only, and a restart forgets alerts and
    /// undelivered notifications.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// The database file; relative paths are under `engine.data_dir`.
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// How often new samples are written to disk: a crash loses at most this much.
    #[serde(default = "defaults::flush_interval")]
    pub flush_interval: HumanDuration,
    /// How often the samples flushed since the last checkpoint are folded into
    /// compressed chunks (a restart replays at most this much).
    #[serde(default = "defaults::checkpoint_interval")]
    pub checkpoint_interval: HumanDuration,
    /// How long each tier is kept.
    #[serde(default)]
    pub retention: TierRetention,
    /// On disk, a sample stamped within this much of its series' regular step (the last
    /// stored time plus the interval before it) is stored on the step, as Prometheus does
    /// with scrape times (`--scrape.timestamp-tolerance`, 2ms): jitter of a millisecond
    /// or two otherwise costs several bits a sample. Stored times never drift from the
    /// written ones by more than this; values are never changed. 0s (the default) stores
    /// every time exactly.
    #[serde(default = "defaults::timestamp_tolerance")]
    pub timestamp_tolerance: HumanDuration,
    /// The most the database file may take on disk. Beyond it the oldest raw chunks are
    /// deleted first (then the oldest per-minute ones, and so on), logged once and
    /// counted in `telltale_store_disk_evicted_chunks_total`.
    #[serde(default = "defaults::max_disk")]
    pub max_disk: ByteSize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            path: defaults::store_path(),
            flush_interval: defaults::flush_interval(),
            checkpoint_interval: defaults::checkpoint_interval(),
            retention: TierRetention::default(),
            timestamp_tolerance: defaults::timestamp_tolerance(),
            max_disk: defaults::max_disk(),
        }
    }
}

/// How long each tier of the durable store keeps its data.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierRetention {
    /// Every sample as collected.
    #[serde(default = "defaults::raw_retention")]
    pub raw: HumanDuration,
    /// Per-minute roll-ups (count, sum, min, max, last, counter increase).
    #[serde(default = "defaults::minute_retention")]
    pub minute: HumanDuration,
    /// Per-hour roll-ups.
    #[serde(default = "defaults::hour_retention")]
    pub hour: HumanDuration,
    /// Per-day roll-ups.
    #[serde(default = "defaults::day_retention")]
    pub day: HumanDuration,
}

impl Default for TierRetention {
    fn default() -> Self {
        TierRetention {
            raw: defaults::raw_retention(),
            minute: defaults::minute_retention(),
            hour: defaults::hour_retention(),
            day: defaults::day_retention(),
        }
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Directory for the compiled-plugin cache and the durable store (`store.path`). Default:
    /// `$XDG_DATA_HOME/telltale`, else `~/.local/share/telltale`, else `./telltale-data`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// How often rules are evaluated.
    #[serde(default = "defaults::evaluation_interval")]
    pub evaluation_interval: HumanDuration,
    /// How long samples are kept in memory.
    #[serde(default = "defaults::retention")]
    pub retention: HumanDuration,
    /// The most points kept per series (older points are dropped first).
    #[serde(default = "defaults::max_points_per_series")]
    pub max_points_per_series: usize,
    /// The most series kept; samples of new series beyond it are dropped and counted.
    #[serde(default = "defaults::max_series")]
    pub max_series: usize,
    /// What all series' names and labels may cost in memory together (an estimate: the
    /// text twice plus bookkeeping per series and label); new series beyond it are dropped
    /// and counted, so a source of huge label sets cannot exhaust memory within
    /// `max_series`.
    #[serde(default = "defaults::max_series_bytes")]
    pub max_series_bytes: ByteSize,
    /// On SIGINT/SIGTERM, how long in-flight notifications may take; the rest stays in the
    /// durable store's outbox and the next start delivers it.
    #[serde(default = "defaults::shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or an `env_logger`-style
    /// directive list). `RUST_LOG` overrides it.
    #[serde(default = "defaults::log_level")]
    pub log_level: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: None,
            evaluation_interval: defaults::evaluation_interval(),
            retention: defaults::retention(),
            max_points_per_series: defaults::max_points_per_series(),
            max_series: defaults::max_series(),
            max_series_bytes: defaults::max_series_bytes(),
            shutdown_grace: defaults::shutdown_grace(),
            log_level: defaults::log_level(),
        }
    }
}

/// Hard limits of one plugin instance. A call that breaks one fails with a message naming
/// the plugin, the limit and its value, and the instance is discarded.
///
/// The sample limits are checked once the returned list has been copied out of the plugin.
/// That copy cannot be larger than what the plugin could build inside its linear memory,
/// which `memory` bounds, so the host's transient copy is at most a small multiple of
/// `memory`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// The longest one call (`init`, `collect`, `analyze`) may run before it is stopped.
    #[serde(default = "defaults::plugin_timeout")]
    pub timeout: HumanDuration,
    /// The most linear memory the plugin may hold, all memories together (e.g. `64MiB`).
    #[serde(default = "defaults::plugin_memory")]
    pub memory: ByteSize,
    /// The most samples one call may return.
    #[serde(default = "defaults::plugin_max_samples")]
    pub max_samples: usize,
    /// The longest metric name a sample may have, in bytes.
    #[serde(default = "defaults::plugin_max_name_bytes")]
    pub max_name_bytes: usize,
    /// The most labels one sample (or event) may have.
    #[serde(default = "defaults::plugin_max_labels")]
    pub max_labels: usize,
    /// The longest label name or label value, in bytes.
    #[serde(default = "defaults::plugin_max_label_bytes")]
    pub max_label_bytes: usize,
    /// The most stdout + stderr output kept per call (forwarded to the log with the
    /// plugin's name); the rest is dropped with a note.
    #[serde(default = "defaults::plugin_max_output_bytes")]
    pub max_output_bytes: ByteSize,
    /// The most bytes of `host.log` messages kept per call (forwarded to the engine's log),
    /// each message counting 128 bytes more than its text (the line the engine writes);
    /// later messages of the call are dropped and counted in one warning.
    #[serde(default = "defaults::plugin_max_log_bytes")]
    pub max_log_bytes: ByteSize,
    /// The most series the plugin's samples may keep alive in the store; samples of new
    /// series beyond it are dropped and counted (`reason="source_limit"`).
    #[serde(default = "defaults::plugin_max_series")]
    pub max_series: usize,
    /// What those series' names and labels may cost in memory (see
    /// `engine.max_series_bytes`).
    #[serde(default = "defaults::plugin_max_series_bytes")]
    pub max_series_bytes: ByteSize,
    /// The largest file one `files.read` returns (grant `files`).
    #[serde(default = "defaults::plugin_max_file_size")]
    pub max_file_size: ByteSize,
    /// The largest response body one `http.get` returns (grant `http`).
    #[serde(default = "defaults::plugin_max_http_body")]
    pub max_http_body: ByteSize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: defaults::plugin_timeout(),
            memory: defaults::plugin_memory(),
            max_samples: defaults::plugin_max_samples(),
            max_name_bytes: defaults::plugin_max_name_bytes(),
            max_labels: defaults::plugin_max_labels(),
            max_label_bytes: defaults::plugin_max_label_bytes(),
            max_output_bytes: defaults::plugin_max_output_bytes(),
            max_log_bytes: defaults::plugin_max_log_bytes(),
            max_series: defaults::plugin_max_series(),
            max_series_bytes: defaults::plugin_max_series_bytes(),
            max_file_size: defaults::plugin_max_file_size(),
            max_http_body: defaults::plugin_max_http_body(),
        }
    }
}

/// How a failing plugin instance is restarted and when it is given up on. A call that
/// crashes, runs past its deadline or breaks a limit (and a failed load) is a failure: the
/// instance is discarded and the next call waits `initial_backoff`, doubling after each
/// further consecutive failure up to `max_backoff`. After `quarantine_after` consecutive
/// failures the instance is quarantined: not called again until its `.wasm` file changes
/// or the engine gets SIGHUP. A successful call resets all of it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    /// The wait after the first failure.
    #[serde(default = "defaults::supervision_initial_backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest wait between attempts.
    #[serde(default = "defaults::supervision_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Consecutive failures after which the instance is quarantined; 0 never quarantines.
    #[serde(default = "defaults::supervision_quarantine_after")]
    pub quarantine_after: u32,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            initial_backoff: defaults::supervision_initial_backoff(),
            max_backoff: defaults::supervision_max_backoff(),
            quarantine_after: defaults::supervision_quarantine_after(),
        }
    }
}

/// One collector plugin instance.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// A unique name for this instance (used in logs and self-metrics).
    pub name: String,
    /// A standard plugin's name (`system`) or the path of a `.wasm` component.
    pub plugin: String,
    /// How often `collect()` is called.
    #[serde(default = "defaults::collect_interval")]
    pub interval: HumanDuration,
    /// Limits of this instance.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Capabilities granted to this instance.
    #[serde(default)]
    pub grants: Grants,
    /// Backoff and quarantine of this instance when it keeps failing.
    #[serde(default)]
    pub supervision: SupervisionConfig,
    /// Passed to the plugin's `init` as JSON; its shape is the plugin's own.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub config: serde_json::Value,
}

/// One analyzer plugin instance.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerConfig {
    /// A unique name for this instance.
    pub name: String,
    /// A standard plugin's name (`window-stats`) or the path of a `.wasm` component.
    pub plugin: String,
    /// How often `analyze()` is called.
    #[serde(default = "defaults::analyze_interval")]
    pub interval: HumanDuration,
    /// How much history each series window holds.
    #[serde(default = "defaults::analyze_window")]
    pub window: HumanDuration,
    /// Which series to pass in: `metric_name` or `metric_name{label="value",...}`.
    pub inputs: Vec<Selector>,
    /// Limits of this instance.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Backoff and quarantine of this instance when it keeps failing.
    #[serde(default)]
    pub supervision: SupervisionConfig,
    /// Passed to the plugin's `init` as JSON; its shape is the plugin's own.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub config: serde_json::Value,
}

/// What every plugin entry has, whatever its world (`collectors:`, `analyzers:`): the plugin
/// host loads a plugin from it and the engine supervises the instance by it, so each
/// world's entry type implements this once instead of every user reading its fields.
pub trait PluginEntry {
    /// The instance's unique name (in logs, errors and self-metrics).
    fn name(&self) -> &str;
    /// `plugin:`: a standard plugin's name or the path of a `.wasm` component.
    fn plugin(&self) -> &str;
    /// `config:`, passed to the plugin's `init` as JSON.
    fn config(&self) -> &serde_json::Value;
    /// `limits:`.
    fn limits(&self) -> &PluginLimits;
    /// `supervision:`.
    fn supervision(&self) -> &SupervisionConfig;
    /// `grants:`; `None` for a world whose entries have none (analyzers import only
    /// `host`).
    fn grants(&self) -> Option<&Grants>;
}

impl PluginEntry for CollectorConfig {
    fn name(&self) -> &str {
        &self.name
    }
    fn plugin(&self) -> &str {
        &self.plugin
    }
    fn config(&self) -> &serde_json::Value {
        &self.config
    }
    fn limits(&self) -> &PluginLimits {
        &self.limits
    }
    fn supervision(&self) -> &SupervisionConfig {
        &self.supervision
    }
    fn grants(&self) -> Option<&Grants> {
        Some(&self.grants)
    }
}

impl PluginEntry for AnalyzerConfig {
    fn name(&self) -> &str {
        &self.name
    }
    fn plugin(&self) -> &str {
        &self.plugin
    }
    fn config(&self) -> &serde_json::Value {
        &self.config
    }
    fn limits(&self) -> &PluginLimits {
        &self.limits
    }
    fn supervision(&self) -> &SupervisionConfig {
        &self.supervision
    }
    fn grants(&self) -> Option<&Grants> {
        None
    }
}

/// Where rules come from and how they are sandboxed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Directory of `.rhai` rule files, watched for changes. Its rules run beside the
    /// default rules built into the binary (see `defaults`); without it only the defaults
    /// run.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Load the default rules built into the binary (memory, CPU, load, disk full) beside
    /// the rules of `dir`. A rule of `dir` with the `name` of a default rule replaces that
    /// default. `false` runs the rules of `dir` only (or none, without `dir`).
    #[serde(default = "defaults::yes")]
    pub defaults: bool,
    /// The longest one rule's `evaluate()` may run.
    #[serde(default = "defaults::rule_timeout")]
    pub timeout: HumanDuration,
    /// The most Rhai operations one evaluation may perform.
    #[serde(default = "defaults::rule_max_operations")]
    pub max_operations: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: None,
            defaults: true,
            timeout: defaults::rule_timeout(),
            max_operations: defaults::rule_max_operations(),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label equalities an alert must have (`severity` and `alertname` are labels too).
    /// Empty matches everything.
    #[serde(default, rename = "match")]
    pub matchers: Labels,
    /// Only alerts at least this severe.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Notifier names.
    pub notifiers: Vec<String>,
    /// Keep looking at later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

/// A duration written the way people write them: `250ms`, `10s`, `5m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format_args!(
                    "invalid duration `{s}` ({e}); write it like `500ms`, `10s`, `5m` or `1h`"
                ))
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as `500ms`, `10s`, `5m`, `1h 30m`.",
            "pattern": "^\\s*[0-9]+\\s*[a-zµ]+(\\s*[0-9]+\\s*[a-zµ]+)*\\s*$"
        })
    }
}

/// A size in bytes: a number, or a number with a unit (`64MiB`, `512KiB`, `1GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `123`, `64MiB`, `256 MiB`, `1.5GiB`, `100MB`, `4k` (units are case-insensitive,
    /// `k`/`KB` are powers of 1000 and `KiB` powers of 1024, the `B` is optional). The
    /// arithmetic is `parse-size`'s: exact to the byte, fractions rounded to the nearest
    /// byte, too large a size refused rather than wrapped; the messages are ours.
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        // parse-size reads the unit from the last bytes, so surrounding blanks must go first;
        // it wants a digit before the point, which `.5GiB` (accepted before it) lacks.
        let t = s.trim();
        let digits = if t.starts_with('.') {
            std::borrow::Cow::Owned(format!("0{t}"))
        } else {
            std::borrow::Cow::Borrowed(t)
        };
        match parse_size::parse_size(digits.as_bytes()) {
            Ok(n) => Ok(ByteSize(n)),
            Err(parse_size::Error::PosOverflow) => Err(format!(
                "invalid size `{s}`: too large (the most is 16EiB, 2^64 - 1 bytes)"
            )),
            Err(_) => Err(Self::refusal(s)),
        }
    }

    /// Why `s` is not a size, in the words an operator needs: parse-size only says "invalid
    /// digit", so tell a bad number from a bad unit by splitting where the number ends.
    fn refusal(s: &str) -> String {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.parse::<f64>().is_err() {
            return format!("invalid size `{s}`: expected a number such as `64MiB`");
        }
        format!(
            "invalid size unit `{}` in `{s}`: use B, KiB, MiB, GiB, KB, MB or GB",
            unit.trim().to_ascii_lowercase()
        )
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size in bytes, or with a unit: `64MiB`, `512KiB`, `1GB`.",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9.][0-9._]*\\s*([kKmMgGtTpPeE]i?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

/// Selects series by metric name and label equalities: `name` or `name{a="1",b="2"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Metric name.
    pub name: String,
    /// Labels the series must have (others may be present).
    pub labels: Labels,
}

impl Selector {
    /// Parses `name` or `name{label="value",...}`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        let (name, rest) = match s.find('{') {
            Some(i) => (&s[..i], Some(&s[i..])),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!(
                "invalid selector `{s}`: expected a metric name (letters, digits, `_`, `:`), \
                 optionally followed by {{label=\"value\",...}}"
            ));
        }
        let mut labels = Labels::new();
        if let Some(rest) = rest {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("invalid selector `{s}`: missing closing `}}`"))?;
            let mut chars = inner.chars().peekable();
            loop {
                while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    break;
                }
                let key: String = std::iter::from_fn(|| {
                    chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_')
                })
                .collect();
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if key.is_empty() || chars.next() != Some('=') {
                    return Err(format!(
                        "invalid selector `{s}`: expected label=\"value\" inside the braces"
                    ));
                }
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if chars.next() != Some('"') {
                    return Err(format!(
                        "invalid selector `{s}`: the value of `{key}` must be in double quotes"
                    ));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => break,
                        },
                        Some(c) => value.push(c),
                        None => {
                            return Err(format!(
                                "invalid selector `{s}`: unterminated value of `{key}`"
                            ));
                        }
                    }
                }
                labels.insert(key, value);
            }
        }
        Ok(Selector {
            name: name.to_string(),
            labels,
        })
    }

    /// Whether a series with these labels is selected (name checked separately).
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Selector::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Selector {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Selector".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A metric name, optionally with label equalities: `name{label=\"value\"}`."
        })
    }
}

/// Push ingest (see `docs/ingest.md`). Each listener runs only when its subsection is
/// present; `ingest: { http: {}, statsd: {} }` runs both on their loopback defaults.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// The HTTP listener: Pushgateway, Influx (`/api/v2/write`, `/write`) and JSON
    /// (`/api/v1/samples`) endpoints.
    #[serde(default)]
    pub http: Option<IngestHttpConfig>,
    /// The StatsD/DogStatsD UDP listener.
    #[serde(default)]
    pub statsd: Option<IngestStatsdConfig>,
    /// How pushed Pushgateway groups live.
    #[serde(default)]
    pub pushgateway: PushgatewayConfig,
    /// Bounds on what one request or source may send.
    #[serde(default)]
    pub limits: IngestLimitsConfig,
}

/// The ingest HTTP listener.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestHttpConfig {
    /// Address to listen on. Loopback by default: expose it deliberately, with a token.
    #[serde(default = "ingest_defaults::http_listen")]
    pub listen: std::net::SocketAddr,
    /// When set, every write needs `Authorization: Bearer <token>` (or `Token <token>`, or
    /// HTTP Basic with the token as password). Use `${ENV_VAR}` to keep it out of the file.
    #[serde(default)]
    pub token: Option<String>,
    /// How long a client may take to send a request's line and headers, counted from the
    /// connection's start or the end of its previous request, so an idle keep-alive
    /// connection is closed after it too. `0s`: no limit.
    #[serde(default = "ingest_defaults::header_timeout")]
    pub header_timeout: HumanDuration,
    /// How long a request body may take to arrive, counted from the end of its headers;
    /// a request over it is answered 408. `0s`: no limit.
    #[serde(default = "ingest_defaults::body_timeout")]
    pub body_timeout: HumanDuration,
    /// The slowest a body may arrive, in bytes per second, once `body_rate_grace` has
    /// passed: `t` seconds after the grace at least `min_body_rate × t` bytes must be in,
    /// or the request is answered 408. `0`: no floor.
    #[serde(default = "ingest_defaults::min_body_rate")]
    pub min_body_rate: ByteSize,
    /// How long a body may take before `min_body_rate` applies.
    #[serde(default = "ingest_defaults::body_rate_grace")]
    pub body_rate_grace: HumanDuration,
    /// The most connections open at once; further ones wait in the kernel's accept queue
    /// until one closes, so idle clients cannot exhaust file descriptors.
    #[serde(default = "ingest_defaults::max_connections")]
    pub max_connections: usize,
}

impl Default for IngestHttpConfig {
    fn default() -> Self {
        IngestHttpConfig {
            listen: ingest_defaults::http_listen(),
            token: None,
            header_timeout: ingest_defaults::header_timeout(),
            body_timeout: ingest_defaults::body_timeout(),
            min_body_rate: ingest_defaults::min_body_rate(),
            body_rate_grace: ingest_defaults::body_rate_grace(),
            max_connections: ingest_defaults::max_connections(),
        }
    }
}

/// The StatsD UDP listener.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestStatsdConfig {
    /// Address to listen on (UDP).
    #[serde(default = "ingest_defaults::statsd_listen")]
    pub listen: std::net::SocketAddr,
    /// How often aggregated values are written to the store.
    #[serde(default = "ingest_defaults::statsd_flush_interval")]
    pub flush_interval: HumanDuration,
    /// A series without updates is reported (gauges repeat, counters report 0) for this
    /// long, then forgotten.
    #[serde(default = "ingest_defaults::statsd_expire_after")]
    pub expire_after: HumanDuration,
    /// The socket's receive buffer (`SO_RCVBUF`) asked of the kernel: what a burst may
    /// queue before the kernel drops datagrams. The kernel caps it at
    /// `net.core.rmem_max`; the size granted is logged at start. `0`: the system default.
    #[serde(default = "ingest_defaults::statsd_receive_buffer")]
    pub receive_buffer: ByteSize,
}

impl Default for IngestStatsdConfig {
    fn default() -> Self {
        IngestStatsdConfig {
            listen: ingest_defaults::statsd_listen(),
            flush_interval: ingest_defaults::statsd_flush_interval(),
            expire_after: ingest_defaults::statsd_expire_after(),
            receive_buffer: ingest_defaults::statsd_receive_buffer(),
        }
    }
}

/// How pushed Pushgateway groups live.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushgatewayConfig {
    /// A group not pushed for this long is dropped, and its series removed from the store.
    #[serde(default = "ingest_defaults::push_expire_after")]
    pub expire_after: HumanDuration,
    /// How often the pushed values are written to the store again (stamped now), as a
    /// scrape of a Pushgateway would. Default: the engine's evaluation interval.
    #[serde(default)]
    pub republish: Option<HumanDuration>,
    /// The most groups kept; a push creating one more is refused.
    #[serde(default = "ingest_defaults::push_max_groups")]
    pub max_groups: usize,
}

impl Default for PushgatewayConfig {
    fn default() -> Self {
        PushgatewayConfig {
            expire_after: ingest_defaults::push_expire_after(),
            republish: None,
            max_groups: ingest_defaults::push_max_groups(),
        }
    }
}

/// Bounds on ingest. A request over any of them is refused whole.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestLimitsConfig {
    /// The largest request body (413 beyond).
    #[serde(default = "ingest_defaults::max_body")]
    pub max_body: ByteSize,
    /// The most samples one request (or one Pushgateway group) may carry.
    #[serde(default = "ingest_defaults::max_samples_per_request")]
    pub max_samples_per_request: usize,
    /// The most labels one sample may have (grouping labels included).
    #[serde(default = "ingest_defaults::max_labels_per_sample")]
    pub max_labels_per_sample: usize,
    /// The longest metric name, in bytes.
    #[serde(default = "ingest_defaults::max_name_length")]
    pub max_metric_name_length: usize,
    /// The longest label name, in bytes.
    #[serde(default = "ingest_defaults::max_name_length")]
    pub max_label_name_length: usize,
    /// The longest label value, in bytes.
    #[serde(default = "ingest_defaults::max_label_value_length")]
    pub max_label_value_length: usize,
    /// The most distinct series one source (`pushgateway`, `influx`, `json`, `statsd`) may
    /// keep alive; a request that would create more is refused.
    #[serde(default = "ingest_defaults::max_series_per_source")]
    pub max_series_per_source: usize,
    /// What one source's series may cost in memory (see `engine.max_series_bytes`).
    #[serde(default = "ingest_defaults::max_series_bytes_per_source")]
    pub max_series_bytes_per_source: ByteSize,
    /// The most series all push sources together may keep alive. Default: half of
    /// `engine.max_series`; must stay below it, so the rest is always left to collectors
    /// and analyzers.
    #[serde(default)]
    pub max_series: Option<usize>,
    /// What all pushed series may cost together. Default: half of
    /// `engine.max_series_bytes`; must stay below it.
    #[serde(default)]
    pub max_series_bytes: Option<ByteSize>,
    /// The most HTTP requests processed at once; more are answered 429 at once, not queued,
    /// so memory stays bounded under overload.
    #[serde(default = "ingest_defaults::max_in_flight")]
    pub max_in_flight: usize,
}

impl Default for IngestLimitsConfig {
    fn default() -> Self {
        IngestLimitsConfig {
            max_body: ingest_defaults::max_body(),
            max_samples_per_request: ingest_defaults::max_samples_per_request(),
            max_labels_per_sample: ingest_defaults::max_labels_per_sample(),
            max_metric_name_length: ingest_defaults::max_name_length(),
            max_label_name_length: ingest_defaults::max_name_length(),
            max_label_value_length: ingest_defaults::max_label_value_length(),
            max_series_per_source: ingest_defaults::max_series_per_source(),
            max_series_bytes_per_source: ingest_defaults::max_series_bytes_per_source(),
            max_series: None,
            max_series_bytes: None,
            max_in_flight: ingest_defaults::max_in_flight(),
        }
    }
}

/// Defaults of the `ingest:` section.
pub mod ingest_defaults {
    use super::{ByteSize, HumanDuration};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    /// 127.0.0.1:9091, the Pushgateway's port, on loopback.
    pub fn http_listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 9091))
    }
    /// 127.0.0.1:8125, the StatsD port, on loopback.
    pub fn statsd_listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 8125))
    }
    pub(crate) fn statsd_flush_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub(crate) fn statsd_expire_after() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub(crate) fn statsd_receive_buffer() -> ByteSize {
        ByteSize(8 << 20)
    }
    // Long enough for a client's keep-alive connection to outlive a typical push interval
    // (hyper closes idle connections after it too), short enough to free a stalled one.
    pub(crate) fn header_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub(crate) fn body_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    pub(crate) fn min_body_rate() -> ByteSize {
        ByteSize(4 << 10)
    }
    pub(crate) fn body_rate_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub(crate) fn max_connections() -> usize {
        256
    }
    pub(crate) fn push_expire_after() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    pub(crate) fn push_max_groups() -> usize {
        10_000
    }
    pub(crate) fn max_body() -> ByteSize {
        ByteSize(16 << 20)
    }
    pub(crate) fn max_samples_per_request() -> usize {
        500_000
    }
    pub(crate) fn max_labels_per_sample() -> usize {
        64
    }
    pub(crate) fn max_name_length() -> usize {
        256
    }
    pub(crate) fn max_label_value_length() -> usize {
        4096
    }
    pub(crate) fn max_series_per_source() -> usize {
        50_000
    }
    pub(crate) fn max_series_bytes_per_source() -> ByteSize {
        ByteSize(64 << 20)
    }
    pub(crate) fn max_in_flight() -> usize {
        4
    }
}

/// Default values, named so the schema and the docs can point at them.
pub mod defaults {
    use super::{ByteSize, HumanDuration};
    use std::time::Duration;

    pub(crate) fn evaluation_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub(crate) fn yes() -> bool {
        true
    }
    pub(crate) fn store_path() -> std::path::PathBuf {
        std::path::PathBuf::from("telltale.db")
    }
    pub(crate) fn flush_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub(crate) fn checkpoint_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub(crate) fn raw_retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(48 * 3600))
    }
    pub(crate) fn minute_retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(30 * 86400))
    }
    pub(crate) fn hour_retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(365 * 86400))
    }
    pub(crate) fn day_retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(10 * 365 * 86400))
    }
    pub(crate) fn timestamp_tolerance() -> HumanDuration {
        HumanDuration(Duration::ZERO)
    }
    pub(crate) fn max_disk() -> ByteSize {
        ByteSize(10 << 30)
    }
    pub(crate) fn retention() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    pub(crate) fn max_points_per_series() -> usize {
        4096
    }
    pub(crate) fn max_series() -> usize {
        100_000
    }
    pub(crate) fn shutdown_grace() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub(crate) fn log_level() -> String {
        "info".into()
    }
    pub(crate) fn plugin_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(2))
    }
    pub(crate) fn plugin_memory() -> ByteSize {
        ByteSize(64 << 20)
    }
    pub(crate) fn plugin_max_samples() -> usize {
        100_000
    }
    pub(crate) fn plugin_max_name_bytes() -> usize {
        256
    }
    pub(crate) fn plugin_max_labels() -> usize {
        64
    }
    pub(crate) fn plugin_max_label_bytes() -> usize {
        1024
    }
    pub(crate) fn plugin_max_output_bytes() -> ByteSize {
        ByteSize(64 << 10)
    }
    pub(crate) fn max_series_bytes() -> ByteSize {
        ByteSize(256 << 20)
    }
    pub(crate) fn plugin_max_series() -> usize {
        50_000
    }
    pub(crate) fn plugin_max_series_bytes() -> ByteSize {
        ByteSize(64 << 20)
    }
    pub(crate) fn plugin_max_log_bytes() -> ByteSize {
        ByteSize(64 << 10)
    }
    pub(crate) fn plugin_max_file_size() -> ByteSize {
        ByteSize(16 << 20)
    }
    pub(crate) fn plugin_max_http_body() -> ByteSize {
        ByteSize(8 << 20)
    }
    pub(crate) fn collect_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub(crate) fn analyze_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub(crate) fn analyze_window() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub(crate) fn rule_timeout() -> HumanDuration {
        HumanDuration(Duration::from_millis(250))
    }
    pub(crate) fn rule_max_operations() -> u64 {
        1_000_000
    }
    pub(crate) fn supervision_initial_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub(crate) fn supervision_max_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub(crate) fn supervision_quarantine_after() -> u32 {
        5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn selector_parses_name_and_labels() {
        let s = Selector::parse(r#"cpu_percent{cpu="total", host = "a\"b"}"#).unwrap();
        assert_eq!(s.name, "cpu_percent");
        assert_eq!(s.labels.get("cpu").unwrap(), "total");
        assert_eq!(s.labels.get("host").unwrap(), "a\"b");
        assert!(Selector::parse("up").unwrap().labels.is_empty());
        assert!(Selector::parse("9up").is_err());
        assert!(Selector::parse("up{a=b}").is_err());
        assert!(Selector::parse("up{a=\"b\"").is_err());
    }

    /// What operators may write for a size, and what each means. Written down before the
    /// parser was handed to a crate, so that the switch could not narrow it.
    #[test]
    fn byte_sizes_parse() {
        for (text, bytes) in [
            ("512", 512),
            ("0", 0),
            ("64MiB", 64 << 20),
            ("256 MiB", 256 << 20),
            ("  64MiB  ", 64 << 20),
            ("1GB", 1_000_000_000),
            ("1.5GiB", 3 << 29),
            ("1.5GB", 1_500_000_000),
            ("0.5KiB", 512),
            ("4k", 4_000),
            ("4K", 4_000),
            ("4kb", 4_000),
            ("4KB", 4_000),
            ("4KiB", 4 << 10),
            ("4kib", 4 << 10),
            ("16m", 16_000_000),
            ("16mb", 16_000_000),
            ("16MiB", 16 << 20),
            ("2g", 2_000_000_000),
            ("2gib", 2 << 30),
            ("100b", 100),
            ("100B", 100),
            ("100 B", 100),
            ("8 KiB", 8 << 10),
            (".5k", 500),
            ("5.", 5),
            ("0.2 MiB", 209_715),
        ] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text:?}");
        }
    }

    /// What is refused, and the message an operator reads for it.
    #[test]
    fn byte_sizes_refused() {
        for (text, message) in [
            (
                "12 parsecs",
                "invalid size unit `parsecs` in `12 parsecs`: use B, KiB, MiB, GiB, KB, MB or GB",
            ),
            (
                "64 MiBs",
                "invalid size unit `mibs` in `64 MiBs`: use B, KiB, MiB, GiB, KB, MB or GB",
            ),
            (
                "MiB",
                "invalid size `MiB`: expected a number such as `64MiB`",
            ),
            ("", "invalid size ``: expected a number such as `64MiB`"),
            ("-1", "invalid size `-1`: expected a number such as `64MiB`"),
            (
                "1.2.3MB",
                "invalid size `1.2.3MB`: expected a number such as `64MiB`",
            ),
            (
                "lots",
                "invalid size `lots`: expected a number such as `64MiB`",
            ),
        ] {
            assert_eq!(ByteSize::parse(text), Err(message.to_string()), "{text:?}");
        }
    }

    /// What parse-size adds to the syntax above: larger units, digit grouping, and a size
    /// too large for 64 bits refused instead of silently capped.
    #[test]
    fn byte_sizes_beyond_the_original_syntax() {
        assert_eq!(ByteSize::parse("1TiB"), Ok(ByteSize(1 << 40)));
        assert_eq!(ByteSize::parse("2TB"), Ok(ByteSize(2_000_000_000_000)));
        assert_eq!(ByteSize::parse("1_048_576"), Ok(ByteSize(1 << 20)));
        assert_eq!(
            ByteSize::parse("99999999999GB"),
            Err(
                "invalid size `99999999999GB`: too large (the most is 16EiB, 2^64 - 1 bytes)"
                    .to_string()
            )
        );
    }

    #[test]
    fn byte_sizes_deserialize_from_numbers_and_text() {
        let v: BTreeMap<String, ByteSize> =
            serde_yaml::from_str("a: 1048576\nb: 64MiB\nc: '1 GB'\n").unwrap();
        assert_eq!(v["a"], ByteSize(1 << 20));
        assert_eq!(v["b"], ByteSize(64 << 20));
        assert_eq!(v["c"], ByteSize(1_000_000_000));
        let e = serde_yaml::from_str::<BTreeMap<String, ByteSize>>("a: 64 MiBs\n").unwrap_err();
        assert!(e.to_string().contains("invalid size unit `mibs`"), "{e}");
    }
}
