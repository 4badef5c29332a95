//! The pure part of the scraper: the checked configuration, name filters, the label merge
//! with Prometheus' `honor_labels: false` semantics and the per-target metrics. Nothing here
//! calls the host, so it is unit-tested natively on real `telltale_formats` output.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use telltale_formats::ParsedSample;
use telltale_formats::prometheus::{Exposition, Format};

/// The `Accept` header Prometheus sends: OpenMetrics preferred, 0.0.4 text as fallback.
pub const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    targets: Vec<RawTarget>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default = "default_true")]
    honor_timestamps: bool,
    #[serde(default)]
    format: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Which parser to use for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    /// By the response's `Content-Type` (what Prometheus does).
    Auto,
    /// Always this format.
    Fixed(Format),
}

impl FormatChoice {
    /// The format for a response with `content_type` (missing: 0.0.4 text).
    pub fn pick(self, content_type: Option<&str>) -> Format {
        match self {
            FormatChoice::Auto => Format::from_content_type(content_type.unwrap_or("")),
            FormatChoice::Fixed(f) => f,
        }
    }
}

/// One target to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The URL fetched.
    pub url: String,
    /// Labels put on every sample of this target, sorted by name: `instance` (`host:port`
    /// of the URL), `job` (the config's `name`, when set) and the config's extra `labels`.
    pub labels: Vec<(String, String)>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Targets, in config order.
    pub targets: Vec<Target>,
    /// A sample is kept only if one of these matches (when any are given).
    pub allow: Vec<Regex>,
    /// A sample is dropped if one of these matches.
    pub deny: Vec<Regex>,
    /// Use the exposition's timestamps (else every sample gets the scrape time).
    pub honor_timestamps: bool,
    /// How to pick the parser.
    pub format: FormatChoice,
}

impl Config {
    /// Parses and checks the JSON config; the message names the offending field.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: RawConfig = parse_raw(json)?;
        if raw.targets.is_empty() {
            return Err("`targets` is empty: list at least one {\"url\": ...}".into());
        }
        let format = match raw.format.as_deref() {
            None | Some("auto") => FormatChoice::Auto,
            Some("text") => FormatChoice::Fixed(Format::Text004),
            Some("openmetrics") => FormatChoice::Fixed(Format::OpenMetrics),
            Some(other) => {
                return Err(format!(
                    "unknown `format` `{other}`: use auto, text or openmetrics"
                ));
            }
        };
        let mut targets = Vec::with_capacity(raw.targets.len());
        for t in raw.targets {
            let instance = instance_of(&t.url)?;
            let mut labels: BTreeMap<String, String> = BTreeMap::new();
            labels.insert("instance".into(), instance);
            if let Some(name) = t.name.filter(|n| !n.is_empty()) {
                labels.insert("job".into(), name);
            }
            for (k, v) in t.labels {
                if !telltale_formats::is_valid_label_name(&k) || k.starts_with("__") {
                    return Err(format!("target `{}`: invalid label name `{k}`", t.url));
                }
                // Extra labels may override `instance`/`job`, as in Prometheus' static configs.
                labels.insert(k, v);
            }
            labels.retain(|_, v| !v.is_empty());
            targets.push(Target {
                url: t.url,
                labels: labels.into_iter().collect(),
            });
        }
        Ok(Config {
            targets,
            allow: compile("allow", &raw.allow)?,
            deny: compile("deny", &raw.deny)?,
            honor_timestamps: raw.honor_timestamps,
            format,
        })
    }

    /// Whether a sample called `sample` of family `family` passes the name filters. A
    /// pattern matches if it matches either name, so `http_request_duration_seconds` keeps
    /// the histogram's `_bucket`, `_sum` and `_count` series.
    pub fn keeps(&self, family: &str, sample: &str) -> bool {
        let hit = |r: &Regex| r.is_match(family) || r.is_match(sample);
        (self.allow.is_empty() || self.allow.iter().any(hit)) && !self.deny.iter().any(hit)
    }
}

/// The raw JSON config through the SDK's parser, its message kept as is.
fn parse_raw(json: &str) -> Result<RawConfig, String> {
    telltale_sdk::parse_config::<RawConfig>(json).map_err(|e| match e {
        telltale_sdk::PluginError::InvalidConfig(m) => m,
        other => format!("{other:?}"),
    })
}

/// Compiles name patterns: regular expressions (Rust `regex` syntax, like Prometheus'
/// RE2), anchored at both ends as Prometheus anchors relabelling regexes.
fn compile(field: &str, patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("`{field}` pattern `{p}` is not a valid regex: {e}"))
        })
        .collect()
}

/// `host:port` of an `http://` URL (port 80 when left out), as Prometheus' `instance`.
pub fn instance_of(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("target URL `{url}` must start with http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err(format!("target URL `{url}` has no host"));
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    Ok(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    })
}

/// One output sample, before it becomes the SDK's `Sample`.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// Series name.
    pub name: String,
    /// Labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// The scraped labels merged with the target's: a scraped label whose name the target
/// also sets is kept as `exported_<name>` (repeated until free), and the target's value
/// wins — Prometheus' `honor_labels: false`.
pub fn merge_labels(
    scraped: &[(String, String)],
    target: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = target.iter().cloned().collect();
    for (k, v) in scraped {
        let mut name = k.clone();
        while out.contains_key(&name) {
            name = format!("exported_{name}");
        }
        out.insert(name, v.clone());
    }
    out.into_iter().collect()
}

/// What one scrape of one target produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeResult {
    /// The scraped samples, filtered and relabelled.
    pub samples: Vec<Out>,
    /// Samples in the exposition before filtering.
    pub scraped: usize,
}

/// Turns a parsed exposition into output samples: filter by name, merge labels, stamp.
pub fn map_exposition(
    config: &Config,
    target: &Target,
    exposition: Exposition,
    now_ms: i64,
) -> ScrapeResult {
    let scraped = exposition.sample_count();
    let mut samples = Vec::with_capacity(scraped);
    for family in exposition.families {
        for s in family.samples {
            if !config.keeps(&family.name, &s.name) {
                continue;
            }
            samples.push(map_sample(config, target, s, now_ms));
        }
    }
    ScrapeResult { samples, scraped }
}

fn map_sample(config: &Config, target: &Target, s: ParsedSample, now_ms: i64) -> Out {
    let timestamp_ms = match s.timestamp_ms {
        Some(ts) if config.honor_timestamps => ts,
        _ => now_ms,
    };
    Out {
        labels: merge_labels(&s.labels, &target.labels),
        name: s.name,
        value: s.value,
        timestamp_ms,
    }
}

/// The per-target metrics Prometheus records for every scrape: `up` (1 when the target
/// answered 2xx with a parseable body, else 0), `scrape_duration_seconds`,
/// `scrape_samples_scraped` and `scrape_samples_post_filter` (both 0 when down).
pub fn target_metrics(
    target: &Target,
    result: Option<&ScrapeResult>,
    duration_s: f64,
    now_ms: i64,
) -> Vec<Out> {
    let (up, scraped, kept) = match result {
        Some(r) => (1.0, r.scraped as f64, r.samples.len() as f64),
        None => (0.0, 0.0, 0.0),
    };
    [
        ("up", up),
        ("scrape_duration_seconds", duration_s),
        ("scrape_samples_scraped", scraped),
        ("scrape_samples_post_filter", kept),
    ]
    .into_iter()
    .map(|(name, value)| Out {
        name: name.into(),
        labels: target.labels.clone(),
        value,
        timestamp_ms: now_ms,
    })
    .collect()
}

#[cfg(test)]
mod tests;
