//! The Alertmanager webhook body (version 4), sent by webhooks with `format: alertmanager`.
//!
//! Field names and shapes follow Alertmanager's own types: `Message` in
//! `notify/webhook/webhook.go` (`version`, `groupKey`, `truncatedAlerts` beside the embedded
//! template `Data`) and `Data` / `Alert` / `KV` in `template/template.go`. Receivers written
//! for Alertmanager (and its Go structs) decode it unchanged.
//!
//! Telltale notifies per alert, not per group, so every body holds exactly one alert, and the
//! group is the one Alertmanager would form for a root route with `group_by: [alertname]`:
//! `groupKey` is `{}:{alertname="<alertname>"}` (the root route's key `{}`, a colon, and the
//! group's label set as Prometheus prints a label set), `groupLabels` is `{alertname}`, and
//! the common labels and annotations are the alert's own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::payload::rfc3339_ms;
use telltale_model::{AlertStatus, Notification};

/// What Go's zero `time.Time` marshals to: Alertmanager's `endsAt` of a firing alert.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The label Alertmanager groups by here, and the one [`group_key`] is made of.
const ALERTNAME: &str = "alertname";

/// The JSON body of an Alertmanager-format webhook POST.
///
/// Field order follows Go's encoding of `Message` (the embedded `Data` first); receivers do
/// not depend on it, but a byte-for-byte comparison with Alertmanager's output is easier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerMessage {
    /// The receiver: the notifier's name, with regular-expression metacharacters escaped as
    /// Alertmanager escapes them (`regexp.QuoteMeta`).
    pub receiver: String,
    /// `firing` or `resolved`: the status of the one alert.
    pub status: String,
    /// The alerts of the group: always exactly one.
    pub alerts: Vec<AlertmanagerAlert>,
    /// The labels the group is formed by: `{alertname}`.
    pub group_labels: BTreeMap<String, String>,
    /// The labels every alert of the group shares: the alert's labels.
    pub common_labels: BTreeMap<String, String>,
    /// The annotations every alert of the group shares: the alert's (`summary`).
    pub common_annotations: BTreeMap<String, String>,
    /// The configured `external_url` (empty when not set).
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Always `"4"`.
    pub version: String,
    /// Identifies the group; stable per alert name (see [`group_key`]).
    pub group_key: String,
    /// Alerts left out by a size limit: always 0 (one alert per body).
    pub truncated_alerts: u64,
}

/// One alert inside an [`AlertmanagerMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// All labels of the instance, `alertname` and `severity` included.
    pub labels: BTreeMap<String, String>,
    /// `summary`: the alert's one-line summary.
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing (RFC 3339, UTC).
    pub starts_at: String,
    /// When it resolved (RFC 3339, UTC), or [`ZERO_TIME`] while it fires.
    pub ends_at: String,
    /// Empty: a rule file is not a URL a receiver could link to.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Telltale's fingerprint of the instance (the same as in the v1 payload).
    pub fingerprint: String,
}

impl AlertmanagerMessage {
    /// The body of one notification for the notifier `receiver`, with `external_url` as the
    /// body's `externalURL`.
    pub fn from_notification(
        n: &Notification,
        receiver: &str,
        external_url: &str,
    ) -> AlertmanagerMessage {
        let a = &n.alert;
        let labels: BTreeMap<String, String> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let annotations = BTreeMap::from([("summary".to_string(), a.summary.clone())]);
        let status = n.status.as_str().to_string();
        let ends_at = match (n.status, a.resolved_at_ms) {
            (AlertStatus::Resolved, Some(ms)) => rfc3339_ms(ms),
            // A resolve without its time (not made by the alert manager, but possible in a
            // hand-made notification) reads as "no end known", as in Alertmanager.
            _ => ZERO_TIME.to_string(),
        };
        let group_labels: BTreeMap<String, String> = labels
            .get(ALERTNAME)
            .map(|v| (ALERTNAME.to_string(), v.clone()))
            .into_iter()
            .collect();
        AlertmanagerMessage {
            receiver: quote_meta(receiver),
            status: status.clone(),
            alerts: vec![AlertmanagerAlert {
                status,
                labels: labels.clone(),
                annotations: annotations.clone(),
                starts_at: rfc3339_ms(a.firing_since_ms),
                ends_at,
                generator_url: String::new(),
                fingerprint: a.fingerprint.clone(),
            }],
            group_key: group_key(&group_labels),
            group_labels,
            common_labels: labels,
            common_annotations: annotations,
            external_url: external_url.to_string(),
            version: "4".into(),
            truncated_alerts: 0,
        }
    }

    /// The body bytes sent on the wire (compact JSON).
    pub fn to_json(&self) -> Vec<u8> {
        // Strings and maps of strings always serialize; the fallback keeps this total.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// The group key Alertmanager's dispatcher gives a group of the root route: the route's key
/// (`{}`, the root has no matchers), `:`, and the group labels as Prometheus prints a label
/// set (`{name="value", ...}`, sorted by name, values quoted as Go's `%q` quotes them).
pub fn group_key(group_labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{}}:{{{}}}", pairs.join(", "))
}

/// A string as Go's `strconv.Quote` writes it, for the characters label values hold: `"`
/// and `\` escaped, control characters as escapes, everything printable kept.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `regexp.QuoteMeta`, which Alertmanager applies to the receiver's name in `Data`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::notification;
    use serde_json::json;

    /// The whole firing body, written out by hand from `testutil::notification`:
    /// firing_since_ms 1_700_000_060_250 is 2023-11-14T22:14:20.250Z (1_700_000_000 s is
    /// 2023-11-14T22:13:20Z, plus 60.25 s).
    #[test]
    fn a_firing_body_has_every_field() {
        let n = notification("01JFIRE", 97.2, AlertStatus::Firing);
        let body = AlertmanagerMessage::from_notification(&n, "ops", "https://tt.example.com");
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        let labels = json!({"alertname": "high_cpu", "severity": "warning", "cpu": "total"});
        assert_eq!(
            v,
            json!({
                "receiver": "ops",
                "status": "firing",
                "alerts": [{
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": "CPU at 97%"},
                    "startsAt": "2023-11-14T22:14:20.250Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": "fp123",
                }],
                "groupLabels": {"alertname": "high_cpu"},
                "commonLabels": labels,
                "commonAnnotations": {"summary": "CPU at 97%"},
                "externalURL": "https://tt.example.com",
                "version": "4",
                "groupKey": "{}:{alertname=\"high_cpu\"}",
                "truncatedAlerts": 0,
            })
        );
    }

    /// The resolved body: resolved_at_ms 1_700_000_360_000 is 2023-11-14T22:19:20.000Z
    /// (2023-11-14T22:13:20Z plus 360 s); startsAt is still the firing time.
    #[test]
    fn a_resolved_body_has_every_field() {
        let n = notification("01JRES", 1.0, AlertStatus::Resolved);
        let body = AlertmanagerMessage::from_notification(&n, "team.ops", "");
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        let labels = json!({"alertname": "high_cpu", "severity": "warning", "cpu": "total"});
        assert_eq!(
            v,
            json!({
                // `regexp.QuoteMeta("team.ops")`, as Alertmanager sends it.
                "receiver": "team\\.ops",
                "status": "resolved",
                "alerts": [{
                    "status": "resolved",
                    "labels": labels,
                    "annotations": {"summary": "CPU at 97%"},
                    "startsAt": "2023-11-14T22:14:20.250Z",
                    "endsAt": "2023-11-14T22:19:20.000Z",
                    "generatorURL": "",
                    "fingerprint": "fp123",
                }],
                "groupLabels": {"alertname": "high_cpu"},
                "commonLabels": labels,
                "commonAnnotations": {"summary": "CPU at 97%"},
                "externalURL": "",
                "version": "4",
                "groupKey": "{}:{alertname=\"high_cpu\"}",
                "truncatedAlerts": 0,
            })
        );
    }

    #[test]
    fn the_group_key_is_stable_per_alert_name_and_quoted_as_go_quotes() {
        let firing = AlertmanagerMessage::from_notification(
            &notification("a", 1.0, AlertStatus::Firing),
            "ops",
            "",
        );
        let resolved = AlertmanagerMessage::from_notification(
            &notification("b", 1.0, AlertStatus::Resolved),
            "ops",
            "",
        );
        assert_eq!(firing.group_key, resolved.group_key);
        let key = |v: &str| group_key(&BTreeMap::from([(ALERTNAME.to_string(), v.to_string())]));
        assert_eq!(
            key(r#"say "hi"\now"#),
            r#"{}:{alertname="say \"hi\"\\now"}"#
        );
        assert_eq!(key("a\nb\u{1}"), r#"{}:{alertname="a\nb\x01"}"#);
        assert_eq!(key("durée"), r#"{}:{alertname="durée"}"#);
        assert_eq!(group_key(&BTreeMap::new()), "{}:{}");
        assert_eq!(
            group_key(&BTreeMap::from([
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
            ])),
            r#"{}:{a="1", b="2"}"#
        );
    }

    #[test]
    fn quote_meta_escapes_what_go_escapes() {
        assert_eq!(quote_meta("ops"), "ops");
        assert_eq!(
            quote_meta(r"a.b+c*d?e(f)g|h[i]j{k}l^m$n\o-p_q"),
            r"a\.b\+c\*d\?e\(f\)g\|h\[i\]j\{k\}l\^m\$n\\o-p_q"
        );
    }
}
