//! The webhook payload, version 1: what receivers get in the body of every POST.
//!
//! The type here is the single source of truth: the published JSON Schema
//! (`docs/webhook-payload-v1.schema.json`) is generated from it, and a test fails when the
//! committed file and the type drift apart. Within version 1 fields are only ever added
//! (receivers ignore unknown fields); renaming, removing or retyping a field means version 2.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use telltale_model::{
    AlertStatus, Labels, Notification, NotificationReason, Severity, TimestampMs,
};

/// The payload's version marker. A separate type so the schema pins it to the constant `"1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PayloadVersion {
    /// Version 1.
    #[serde(rename = "1")]
    V1,
}

/// The JSON body of a webhook POST (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Telltale webhook payload v1",
    description = "The JSON body Telltale POSTs to webhook receivers. Receivers must ignore \
                   fields they do not know: fields may be added within version 1."
)]
pub struct WebhookPayload {
    /// Payload format version; always `"1"` for this schema.
    pub version: PayloadVersion,
    /// The notification id: unique per notification and identical on every delivery attempt
    /// (also sent as the `webhook-id` header). Use it to drop duplicates.
    pub id: String,
    /// Whether the alert started firing or resolved.
    pub status: AlertStatus,
    /// What happened: `state_change` (it fired or resolved), `repeat`, `flapping`,
    /// `settled`, `escalation`, `acknowledged` or `unacknowledged`. Added within version 1:
    /// absent from payloads of older Telltales, where it means `state_change`.
    #[serde(default)]
    pub reason: NotificationReason,
    /// The alert as it stood when the notification was made.
    pub alert: PayloadAlert,
    /// Who sent it.
    pub sender: Sender,
}

/// The alert inside a payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayloadAlert {
    /// Stable identity of the alert instance (rule name + full label set). A firing and its
    /// resolved notification carry the same fingerprint.
    pub fingerprint: String,
    /// The rule's name (also the `alertname` label).
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// All labels of the instance, including `alertname` and `severity`.
    pub labels: Labels,
    /// Human-readable one-line summary.
    pub summary: String,
    /// The last value the rule reported; `null` when it was not a finite number (NaN or
    /// infinite), which JSON cannot represent.
    #[schemars(required, schema_with = "nullable_number")]
    pub value: Option<f64>,
    /// When the condition was first seen (RFC 3339, UTC, milliseconds).
    #[schemars(extend("format" = "date-time"))]
    pub active_since: String,
    /// When the alert started firing (RFC 3339, UTC, milliseconds).
    #[schemars(extend("format" = "date-time"))]
    pub firing_since: String,
    /// When it resolved (RFC 3339, UTC, milliseconds); `null` while firing.
    #[schemars(required, schema_with = "nullable_date_time")]
    pub resolved_at: Option<String>,
    /// The rule file the alert came from (`<embedded>/NAME.rhai` for built-in rules).
    pub rule_file: String,
    /// Who acknowledged the alert, when it is acknowledged (in `acknowledged` notifications
    /// and in repeats or escalations of an acknowledged alert); `null` otherwise. Added
    /// within version 1.
    #[serde(default)]
    #[schemars(required, schema_with = "nullable_ack")]
    pub ack: Option<PayloadAck>,
}

/// An acknowledgement inside a payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayloadAck {
    /// Who acknowledged it.
    pub by: String,
    /// What they said (may be empty).
    pub comment: String,
    /// When (RFC 3339, UTC, milliseconds).
    #[schemars(extend("format" = "date-time"))]
    pub at: String,
}

/// The sending Telltale instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sender {
    /// Always `telltale`.
    pub name: String,
    /// Telltale's version.
    pub version: String,
    /// The host name of the machine Telltale runs on (empty when unknown).
    pub host: String,
}

/// `number` or `null`; present in every payload.
fn nullable_number(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["number", "null"] })
}

/// A [`PayloadAck`] or `null`; present in every payload.
fn nullable_ack(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let ack = generator.subschema_for::<PayloadAck>();
    schemars::json_schema!({ "anyOf": [ack, { "type": "null" }] })
}

/// An RFC 3339 date-time string or `null`; present in every payload.
fn nullable_date_time(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "null"], "format": "date-time" })
}

impl WebhookPayload {
    /// Builds the payload of one notification.
    pub fn from_notification(n: &Notification) -> WebhookPayload {
        let a = &n.alert;
        WebhookPayload {
            version: PayloadVersion::V1,
            id: n.id.clone(),
            status: n.status,
            reason: n.reason,
            alert: PayloadAlert {
                fingerprint: a.fingerprint.clone(),
                rule: a.rule.clone(),
                severity: a.severity,
                labels: a.labels.clone(),
                summary: a.summary.clone(),
                value: a.value.is_finite().then_some(a.value),
                active_since: rfc3339_ms(a.active_since_ms),
                firing_since: rfc3339_ms(a.firing_since_ms),
                resolved_at: a.resolved_at_ms.map(rfc3339_ms),
                rule_file: a.rule_file.clone(),
                ack: a.ack.as_ref().map(|k| PayloadAck {
                    by: k.by.clone(),
                    comment: k.comment.clone(),
                    at: rfc3339_ms(k.at_ms),
                }),
            },
            sender: Sender::this(),
        }
    }

    /// The body bytes sent on the wire (compact JSON).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data (strings, maps, Option<f64>) into memory cannot fail; the
        // fallback keeps this total instead of panicking.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The JSON Schema of this payload, as published in `docs/webhook-payload-v1.schema.json`.
    pub fn json_schema() -> serde_json::Value {
        let mut schema = serde_json::to_value(schemars::schema_for!(WebhookPayload))
            .unwrap_or(serde_json::Value::Null);
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "$id".into(),
                "https://telltale.dev/schemas/webhook-payload-v1.schema.json".into(),
            );
        }
        schema
    }

    /// The schema as the committed file holds it: pretty JSON ending in a newline.
    pub fn json_schema_text() -> String {
        let mut s = serde_json::to_string_pretty(&Self::json_schema()).unwrap_or_default();
        s.push('\n');
        s
    }
}

impl Sender {
    /// This process: `telltale`, the crate version and the host name (looked up once).
    pub fn this() -> Sender {
        static HOST: OnceLock<String> = OnceLock::new();
        Sender {
            name: "telltale".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            host: HOST
                .get_or_init(|| sysinfo::System::host_name().unwrap_or_default())
                .clone(),
        }
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-03T10:15:00.250Z`). Times before 1970 are clamped to the epoch (they cannot
/// occur for alerts, and humantime does not format them).
pub fn rfc3339_ms(ms: TimestampMs) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::notification;

    fn sample(value: f64, status: AlertStatus) -> Notification {
        notification("01JTESTID", value, status)
    }

    #[test]
    fn payload_has_the_documented_shape() {
        let p = WebhookPayload::from_notification(&sample(97.25, AlertStatus::Firing));
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["version"], "1");
        assert_eq!(v["id"], "01JTESTID");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alert"]["severity"], "warning");
        assert_eq!(v["alert"]["value"], 97.25);
        assert_eq!(v["alert"]["labels"]["cpu"], "total");
        assert_eq!(v["alert"]["active_since"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["alert"]["firing_since"], "2023-11-14T22:14:20.250Z");
        assert!(v["alert"]["resolved_at"].is_null());
        assert!(v["alert"].as_object().unwrap().contains_key("resolved_at"));
        assert_eq!(v["sender"]["name"], "telltale");
        assert_eq!(v["sender"]["version"], env!("CARGO_PKG_VERSION"));

        let r = WebhookPayload::from_notification(&sample(1.0, AlertStatus::Resolved));
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["alert"]["resolved_at"], "2023-11-14T22:19:20.000Z");
    }

    #[test]
    fn non_finite_values_serialize_as_null() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let p = WebhookPayload::from_notification(&sample(x, AlertStatus::Firing));
            let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
            assert!(
                v["alert"]["value"].is_null(),
                "{x} -> {}",
                v["alert"]["value"]
            );
        }
    }

    /// Mirrors of the payload that reject unknown fields and require every field: a field
    /// added to the payload without updating the receivers' view (these mirrors, the schema
    /// and the docs) fails here.
    mod strict {
        use serde::Deserialize;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct Payload {
            pub version: String,
            pub id: String,
            pub status: String,
            pub reason: String,
            pub alert: Alert,
            pub sender: Sender,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct Alert {
            pub fingerprint: String,
            pub rule: String,
            pub severity: String,
            pub labels: std::collections::BTreeMap<String, String>,
            pub summary: String,
            pub value: serde_json::Value,
            pub active_since: String,
            pub firing_since: String,
            pub resolved_at: serde_json::Value,
            pub rule_file: String,
            pub ack: serde_json::Value,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct Sender {
            pub name: String,
            pub version: String,
            pub host: String,
        }
    }

    #[test]
    fn payload_round_trips_through_a_strict_reader() {
        for n in [
            sample(97.25, AlertStatus::Firing),
            sample(f64::NAN, AlertStatus::Resolved),
        ] {
            let p = WebhookPayload::from_notification(&n);
            let body = p.to_json();
            let strict: strict::Payload = serde_json::from_slice(&body).unwrap();
            assert_eq!(strict.version, "1");
            assert!(strict.alert.value.is_number() || strict.alert.value.is_null());
            let back: WebhookPayload = serde_json::from_slice(&body).unwrap();
            assert_eq!(back, p);
        }
    }

    /// A small JSON Schema checker for the keywords the generated schema uses (`type`,
    /// `properties`, `required`, `additionalProperties`, `enum`, `const`, `oneOf`, `anyOf`,
    /// `$ref` into `$defs`, `format: date-time`). `strict` additionally rejects any property
    /// the schema does not declare, so every field we send is documented.
    fn check(
        root: &serde_json::Value,
        schema: &serde_json::Value,
        v: &serde_json::Value,
        path: &str,
    ) -> Result<(), String> {
        use serde_json::Value;
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r
                .strip_prefix("#/$defs/")
                .ok_or(format!("{path}: unsupported $ref {r}"))?;
            return check(root, &root["$defs"][name], v, path);
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => return Err(format!("{path}: bad type keyword")),
            };
            let ok = types.iter().any(|t| match *t {
                "object" => v.is_object(),
                "string" => v.is_string(),
                "number" => v.is_number(),
                "integer" => v.is_i64() || v.is_u64(),
                "null" => v.is_null(),
                "boolean" => v.is_boolean(),
                "array" => v.is_array(),
                _ => false,
            });
            if !ok {
                return Err(format!("{path}: {v} is not of type {types:?}"));
            }
        }
        if let Some(c) = schema.get("const")
            && c != v
        {
            return Err(format!("{path}: {v} != const {c}"));
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            return Err(format!("{path}: {v} not in {e:?}"));
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                let n = alts
                    .iter()
                    .filter(|s| check(root, s, v, path).is_ok())
                    .count();
                if n == 0 || (key == "oneOf" && n != 1) {
                    return Err(format!("{path}: {v} matches {n} of {key}"));
                }
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(s) = v.as_str()
        {
            humantime::parse_rfc3339(s).map_err(|e| format!("{path}: `{s}`: {e}"))?;
        }
        // Only a schema that describes an object's members judges them: one made only of
        // `anyOf`/`oneOf` alternatives was judged by the alternative that matched.
        let describes_members = ["properties", "additionalProperties", "required"]
            .iter()
            .any(|k| schema.get(*k).is_some());
        if let Some(obj) = v.as_object().filter(|_| describes_members) {
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = req.as_str().unwrap_or_default();
                if !obj.contains_key(req) {
                    return Err(format!("{path}: missing required `{req}`"));
                }
            }
            for (k, x) in obj {
                let sub = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(root, s, x, &sub)?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Object(_)) => {
                            check(root, &schema["additionalProperties"], x, &sub)?
                        }
                        _ => return Err(format!("{sub}: not declared in the schema")),
                    },
                }
            }
        }
        Ok(())
    }

    fn published_schema_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/webhook-payload-v1.schema.json")
    }

    #[test]
    fn payloads_validate_against_the_published_schema() {
        let text = std::fs::read_to_string(published_schema_path()).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut acked = sample(97.25, AlertStatus::Firing);
        acked.reason = NotificationReason::Acknowledged;
        acked.alert.ack = Some(telltale_model::Acknowledgement {
            by: "alice".into(),
            comment: "on it".into(),
            at_ms: 1_700_000_000_250,
        });
        for n in [
            sample(97.25, AlertStatus::Firing),
            sample(f64::INFINITY, AlertStatus::Resolved),
            acked.clone(),
        ] {
            let body = WebhookPayload::from_notification(&n).to_json();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            check(&schema, &schema, &v, "$").unwrap();
        }
        let v: serde_json::Value =
            serde_json::from_slice(&WebhookPayload::from_notification(&acked).to_json()).unwrap();
        assert_eq!(v["reason"], "acknowledged");
        assert_eq!(
            v["alert"]["ack"],
            serde_json::json!({"by": "alice", "comment": "on it", "at": "2023-11-14T22:13:20.250Z"})
        );
        // The checker can fail: a wrong version, a missing field, an undeclared field.
        let good: serde_json::Value = serde_json::from_slice(
            &WebhookPayload::from_notification(&sample(1.0, AlertStatus::Firing)).to_json(),
        )
        .unwrap();
        let mut bad = good.clone();
        bad["version"] = "2".into();
        assert!(check(&schema, &schema, &bad, "$").is_err());
        let mut bad = good.clone();
        bad["alert"].as_object_mut().unwrap().remove("resolved_at");
        assert!(check(&schema, &schema, &bad, "$").is_err());
        let mut bad = good.clone();
        bad["alert"]["firing_since"] = "yesterday".into();
        assert!(check(&schema, &schema, &bad, "$").is_err());
        let mut bad = good;
        bad["extra"] = 1.into();
        assert!(check(&schema, &schema, &bad, "$").is_err());
    }

    /// The committed schema must be what the type generates. To regenerate after changing
    /// the payload type:
    /// `TELLTALE_UPDATE_SCHEMA=1 cargo test -p telltale --lib notify::payload::tests::published_schema_is_in_sync`.
    #[test]
    fn published_schema_is_in_sync() {
        let path = published_schema_path();
        let want = WebhookPayload::json_schema_text();
        if std::env::var_os("TELLTALE_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date with notify::payload::WebhookPayload; regenerate it with \
             `TELLTALE_UPDATE_SCHEMA=1 cargo test -p telltale --lib notify::payload::tests::published_schema_is_in_sync` and commit it",
            path.display()
        );
    }
}
