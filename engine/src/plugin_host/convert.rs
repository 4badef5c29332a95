//! Conversions between the WIT types and the engine's [`model`](crate::model) types, with
//! the checks that keep a plugin's output from hurting the rest of the engine: the
//! configured caps on counts and lengths (`limits.max_*`), and valid metric and label names.

use crate::config::PluginLimits;
use crate::model::{Event, Labels, Sample, SeriesWindow, Severity};

use super::bindings::types;

/// The most events one call may return.
pub(crate) const MAX_EVENTS_PER_CALL: usize = 10_000;
/// The longest event kind.
pub(crate) const MAX_EVENT_KIND_LEN: usize = 64;
/// The longest event message.
pub(crate) const MAX_EVENT_MESSAGE_LEN: usize = 4096;

/// Why a plugin's output was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputError {
    /// A configured limit was broken (the message names it and its value): the plugin is
    /// treated as misbehaving and its instance discarded.
    Limit(String),
    /// The output is malformed (an invalid metric or label name): a bug, not a flood.
    Invalid(String),
}

/// The output caps of one instance, taken from its `limits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputLimits {
    pub(crate) max_samples: usize,
    pub(crate) max_name_bytes: usize,
    pub(crate) max_labels: usize,
    pub(crate) max_label_bytes: usize,
}

impl From<&PluginLimits> for OutputLimits {
    fn from(l: &PluginLimits) -> OutputLimits {
        OutputLimits {
            max_samples: l.max_samples,
            max_name_bytes: l.max_name_bytes,
            max_labels: l.max_labels,
            max_label_bytes: l.max_label_bytes,
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

/// `owner` names the sample or event in error messages; it is a closure because building
/// that string for every valid sample dominated the cost of a call.
fn convert_labels(
    labels: Vec<types::Label>,
    owner: impl Fn() -> String,
    limits: &OutputLimits,
) -> Result<Labels, OutputError> {
    if labels.len() > limits.max_labels {
        return Err(OutputError::Limit(format!(
            "returned {} with {} labels, more than limits.max_labels = {}",
            owner(),
            labels.len(),
            limits.max_labels
        )));
    }
    let mut out = Labels::new();
    for l in labels {
        if l.name.len() > limits.max_label_bytes {
            return Err(OutputError::Limit(format!(
                "returned {} with a {}-byte label name `{}`, longer than \
                 limits.max_label_bytes = {}",
                owner(),
                l.name.len(),
                shown(&l.name),
                limits.max_label_bytes
            )));
        }
        if !valid_label_name(&l.name) {
            return Err(OutputError::Invalid(format!(
                "{} has an invalid label name `{}` (expected [a-zA-Z_][a-zA-Z0-9_]*, \
                 not starting with `__`)",
                owner(),
                shown(&l.name)
            )));
        }
        if l.value.len() > limits.max_label_bytes {
            return Err(OutputError::Limit(format!(
                "returned {} whose label `{}` has a {}-byte value, longer than \
                 limits.max_label_bytes = {}",
                owner(),
                l.name,
                l.value.len(),
                limits.max_label_bytes
            )));
        }
        out.insert(l.name, l.value);
    }
    Ok(out)
}

/// Checks and converts the samples a plugin returned. The error names the offending sample
/// and, for a broken limit, the limit and its value.
pub(crate) fn samples_from_wit(
    samples: Vec<types::Sample>,
    limits: &OutputLimits,
) -> Result<Vec<Sample>, OutputError> {
    if samples.len() > limits.max_samples {
        return Err(OutputError::Limit(format!(
            "returned {} samples, more than limits.max_samples = {}",
            samples.len(),
            limits.max_samples
        )));
    }
    samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.len() > limits.max_name_bytes {
                return Err(OutputError::Limit(format!(
                    "returned sample #{i} with a {}-byte name `{}`, longer than \
                     limits.max_name_bytes = {}",
                    s.name.len(),
                    shown(&s.name),
                    limits.max_name_bytes
                )));
            }
            if !valid_metric_name(&s.name) {
                return Err(OutputError::Invalid(format!(
                    "sample #{i} has an invalid metric name `{}` (expected \
                     [a-zA-Z_:][a-zA-Z0-9_:]*)",
                    shown(&s.name)
                )));
            }
            let name = &s.name;
            let labels = convert_labels(s.labels, || format!("sample #{i} `{name}`"), limits)?;
            Ok(Sample {
                labels,
                name: s.name,
                value: s.value,
                timestamp_ms: s.timestamp_ms,
            })
        })
        .collect()
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
            name: w.key.name,
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
}
