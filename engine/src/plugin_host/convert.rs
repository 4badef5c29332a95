//! Conversions between the WIT types and the engine's [`model`](crate::model) types, with
//! the checks that keep a plugin's output from hurting the rest of the engine: caps on
//! counts and lengths, and valid metric and label names.

use crate::model::{Event, Labels, Sample, SeriesWindow, Severity};

use super::bindings::types;

/// The most samples one call may return.
pub(crate) const MAX_SAMPLES_PER_CALL: usize = 100_000;
/// The most events one call may return.
pub(crate) const MAX_EVENTS_PER_CALL: usize = 10_000;
/// The longest metric name.
pub(crate) const MAX_NAME_LEN: usize = 200;
/// The most labels one sample or event may have.
pub(crate) const MAX_LABELS: usize = 64;
/// The longest label name.
pub(crate) const MAX_LABEL_NAME_LEN: usize = 100;
/// The longest label value.
pub(crate) const MAX_LABEL_VALUE_LEN: usize = 1024;
/// The longest event kind.
pub(crate) const MAX_EVENT_KIND_LEN: usize = 64;
/// The longest event message.
pub(crate) const MAX_EVENT_MESSAGE_LEN: usize = 4096;

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

fn convert_labels(labels: Vec<types::Label>, owner: &str) -> Result<Labels, String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{owner} has {} labels; at most {MAX_LABELS} are allowed",
            labels.len()
        ));
    }
    let mut out = Labels::new();
    for l in labels {
        if l.name.len() > MAX_LABEL_NAME_LEN || !valid_label_name(&l.name) {
            return Err(format!(
                "{owner} has an invalid label name `{}` (expected [a-zA-Z_][a-zA-Z0-9_]*, \
                 at most {MAX_LABEL_NAME_LEN} bytes, not starting with `__`)",
                shown(&l.name)
            ));
        }
        if l.value.len() > MAX_LABEL_VALUE_LEN {
            return Err(format!(
                "{owner}: the value of label `{}` is {} bytes long; at most \
                 {MAX_LABEL_VALUE_LEN} are allowed",
                l.name,
                l.value.len()
            ));
        }
        out.insert(l.name, l.value);
    }
    Ok(out)
}

/// Checks and converts the samples a plugin returned. The error names the offending sample.
pub(crate) fn samples_from_wit(samples: Vec<types::Sample>) -> Result<Vec<Sample>, String> {
    if samples.len() > MAX_SAMPLES_PER_CALL {
        return Err(format!(
            "{} samples in one call; at most {MAX_SAMPLES_PER_CALL} are allowed",
            samples.len()
        ));
    }
    samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.len() > MAX_NAME_LEN || !valid_metric_name(&s.name) {
                return Err(format!(
                    "sample #{i} has an invalid metric name `{}` (expected \
                     [a-zA-Z_:][a-zA-Z0-9_:]*, at most {MAX_NAME_LEN} bytes)",
                    shown(&s.name)
                ));
            }
            let owner = format!("sample #{i} `{}`", s.name);
            Ok(Sample {
                labels: convert_labels(s.labels, &owner)?,
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
) -> Result<Vec<Event>, String> {
    if events.len() > MAX_EVENTS_PER_CALL {
        return Err(format!(
            "{} events in one call; at most {MAX_EVENTS_PER_CALL} are allowed",
            events.len()
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.kind.is_empty() || e.kind.len() > MAX_EVENT_KIND_LEN {
                return Err(format!(
                    "event #{i} has kind `{}`; a kind is 1 to {MAX_EVENT_KIND_LEN} bytes",
                    shown(&e.kind)
                ));
            }
            if e.message.len() > MAX_EVENT_MESSAGE_LEN {
                return Err(format!(
                    "event #{i} `{}` has a {}-byte message; at most {MAX_EVENT_MESSAGE_LEN} \
                     are allowed",
                    e.kind,
                    e.message.len()
                ));
            }
            let owner = format!("event #{i} `{}`", e.kind);
            Ok(Event {
                source: source.to_string(),
                labels: convert_labels(e.labels, &owner)?,
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

    #[test]
    fn invalid_samples_are_named_in_the_error() {
        let ok = samples_from_wit(vec![sample("up", &[("job", "a")])]).unwrap();
        assert_eq!(ok[0].labels.get("job").unwrap(), "a");
        let err = samples_from_wit(vec![sample("up", &[]), sample("bad name", &[])]).unwrap_err();
        assert!(
            err.contains("sample #1") && err.contains("`bad name`"),
            "{err}"
        );
        let err = samples_from_wit(vec![sample("up", &[("bad-label", "x")])]).unwrap_err();
        assert!(err.contains("`bad-label`"), "{err}");
        let many = vec![sample("up", &[]); MAX_SAMPLES_PER_CALL + 1];
        assert!(samples_from_wit(many).unwrap_err().contains("at most"));
    }
}
