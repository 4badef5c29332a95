//! Notifier entries through the whole loader: parsing (positions from serde_yaml) and the
//! semantic check (positions from `locate`).

use std::time::Duration;

use super::*;
use crate::Config;

/// Parses and checks `src` as the engine does.
fn load(src: &str) -> Result<Config, String> {
    crate::tests::parse_checked(src).map_err(|d| d.to_string())
}

use crate::tests::err;

fn webhook(n: &NotifierConfig) -> &WebhookConfig {
    match &n.kind {
        NotifierKind::Webhook(w) => w,
        other => panic!("not a webhook: {other:?}"),
    }
}

#[test]
fn kinds_with_their_settings_beside_the_name() {
    let c = load(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "    secret: whsec_c2VjcmV0\n",
        "    headers: { x-team: ops, x-priority: 1 }\n",
        "    timeout: 2s\n",
        "    max_attempts: 3\n",
        "  - name: console\n",
        "    kind: console\n",
        "  - { name: json, kind: console, json: true }\n",
    ))
    .unwrap();
    let names: Vec<&str> = c.notifiers.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["ops", "console", "json"]);
    let w = webhook(&c.notifiers[0]);
    assert_eq!(w.url, "https://hooks.example.com/telltale");
    assert_eq!(w.secret.as_deref(), Some("whsec_c2VjcmV0"));
    // A number is taken as the header's text, as any string setting would take it.
    assert_eq!(w.headers["x-priority"], "1");
    assert_eq!(w.timeout.get(), Duration::from_secs(2));
    assert_eq!(w.max_attempts, 3);
    assert_eq!(w.max_backoff.get(), Duration::from_secs(60), "default");
    assert!(matches!(
        c.notifiers[1].kind,
        NotifierKind::Console(ConsoleConfig { json: false })
    ));
    assert!(matches!(
        c.notifiers[2].kind,
        NotifierKind::Console(ConsoleConfig { json: true })
    ));
}

#[test]
fn keys_in_any_order() {
    let c = load(concat!(
        "notifiers:\n",
        "  - url: http://127.0.0.1:9/hook\n",
        "    timeout: 3s\n",
        "    kind: webhook\n",
        "    max_attempts: 2\n",
        "    name: late\n",
    ))
    .unwrap();
    assert_eq!(c.notifiers[0].name, "late");
    let w = webhook(&c.notifiers[0]);
    assert_eq!(w.url, "http://127.0.0.1:9/hook");
    assert_eq!(w.timeout.get(), Duration::from_secs(3));
    assert_eq!(w.max_attempts, 2);
}

#[test]
fn the_old_shape_says_how_to_rewrite_it() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    webhook:\n",
        "      url: https://hooks.example.com/telltale\n",
    ));
    assert!(
        text.starts_with(
            "t.yaml:3:5: error: notifiers[0]: `webhook:` is now `kind: webhook`, with its \
             settings beside `name`: replace `webhook:` by `kind: webhook` and move the \
             settings under it up one level"
        ),
        "{text}"
    );
    assert!(text.contains("3 |     webhook:"), "{text}");
    let text = err("notifiers:\n  - name: console\n    console: {}\n");
    assert!(
        text.starts_with("t.yaml:3:5: error: notifiers[0]: `console:` is now `kind: console`"),
        "{text}"
    );
}

#[test]
fn an_unknown_setting_is_named_at_its_line() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "    timout: 5s\n",
    ));
    assert!(
        text.starts_with("t.yaml:5:5: error: notifiers[0]: unknown field `timout`"),
        "{text}"
    );
    assert!(text.contains("did you mean `timeout`?"), "{text}");
    // Written before `kind`, the key waits for it; the error still names its line.
    let text = err(concat!(
        "notifiers:\n",
        "  - name: c\n",
        "    jsn: true\n",
        "    kind: console\n",
    ));
    assert!(
        text.starts_with("t.yaml:3:5: error: notifiers[0]: unknown field `jsn`"),
        "{text}"
    );
    assert!(text.contains("did you mean `json`?"), "{text}");
}

#[test]
fn a_bad_value_is_reported_at_the_value() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "    initial_backoff: 5 parsecs\n",
    ));
    assert!(text.starts_with("t.yaml:5:22: error:"), "{text}");
    assert!(text.contains("invalid duration `5 parsecs`"), "{text}");
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "    max_attempts: many\n",
    ));
    assert!(text.starts_with("t.yaml:5:19: error:"), "{text}");
    assert!(text.contains("invalid type"), "{text}");
    // Written before `kind`, the value is read later, away from serde_yaml's positions; the
    // message quotes the key, and the loader finds its line.
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    max_attempts: many\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
    ));
    assert!(
        text.starts_with(
            "t.yaml:3:5: error: notifiers[0]: invalid type: string \"many\", expected u32 \
             (in `max_attempts`)"
        ),
        "{text}"
    );
}

#[test]
fn unknown_or_missing_kind() {
    let text = err("notifiers:\n  - name: mail\n    kind: email\n");
    assert!(
        text.starts_with(
            "t.yaml:3:11: error: notifiers[0].kind: unknown variant `email`, expected \
             `console` or `webhook`"
        ),
        "{text}"
    );
    let text = err("notifiers:\n  - name: n\n");
    assert!(
        text.starts_with(
            "t.yaml:2:5: error: notifiers[0]: missing field `kind` (one of `console`, `webhook`)"
        ),
        "{text}"
    );
    assert!(text.contains("add `kind:` to this entry"), "{text}");
    let text = err("notifiers:\n  - kind: console\n");
    assert!(text.contains("missing field `name`"), "{text}");
    let text = err("notifiers:\n  - name: c\n    kind: console\n    kind: webhook\n");
    assert!(text.contains("duplicate field `kind`"), "{text}");
    let text = err("notifiers:\n  - name: c\n    kind: console\n    name: d\n");
    assert!(text.contains("duplicate field `name`"), "{text}");
}

#[test]
fn a_zero_webhook_timeout_is_refused_at_its_position() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: console\n",
        "    kind: console\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "    timeout: 0s\n",
    ));
    assert!(
        text.starts_with("t.yaml:7:5: error: webhook timeout must be longer than zero"),
        "{text}"
    );
    assert!(text.contains("7 |     timeout: 0s"), "{text}");
    assert!(text.contains("the default (10s)"), "{text}");
}

#[test]
fn a_backoff_cap_below_its_start_is_refused_not_raised() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "    max_backoff: 500ms\n",
    ));
    assert!(
        text.starts_with(
            "t.yaml:5:5: error: max_backoff (500ms) is shorter than initial_backoff (1s)"
        ),
        "{text}"
    );
}

#[test]
fn every_webhook_problem_is_reported_at_its_key() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: ops\n",
        "    kind: webhook\n",
        "    url: ftp://example.com/x\n",
        "    secret: whsec_%%%\n",
        "    headers:\n",
        "      webhook-id: mine\n",
        "      bad header: x\n",
        "    max_attempts: 0\n",
        "  - name: ''\n",
        "    kind: webhook\n",
        "    url: htp//nowhere\n",
    ));
    for expected in [
        "t.yaml:4:5: error: webhook url scheme `ftp` is not http or https",
        "t.yaml:5:5: error: webhook secret: the part after `whsec_` is not valid base64",
        "t.yaml:7:7: error: header `webhook-id` is set by Telltale itself",
        "t.yaml:8:7: error: `bad header` is not a valid header name",
        "t.yaml:9:5: error: max_attempts must be at least 1",
        "t.yaml:10:5: error: a notifier's name must not be empty",
        "t.yaml:12:5: error: webhook url `htp//nowhere` is not a valid URL",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn the_checks_and_the_notifier_share_the_rules() {
    let mut w = WebhookConfig {
        url: "http://127.0.0.1:9/x".into(),
        secret: Some("whsec_c2VjcmV0".into()),
        headers: [("X-Team".to_string(), "ops".to_string())].into(),
        timeout: crate::HumanDuration(Duration::from_secs(1)),
        max_attempts: 1,
        initial_backoff: crate::HumanDuration(Duration::from_secs(1)),
        max_backoff: crate::HumanDuration(Duration::from_secs(1)),
        format: webhook::WebhookFormat::Telltale,
        external_url: String::new(),
    };
    assert!(w.problems().is_empty());
    assert_eq!(w.endpoint().unwrap().as_str(), "http://127.0.0.1:9/x");
    assert_eq!(w.signing_key().unwrap().as_deref(), Some(&b"secret"[..]));
    assert_eq!(w.extra_headers().unwrap()["x-team"], "ops");
    // A secret without the prefix is the key itself.
    w.secret = Some("plain".into());
    assert_eq!(w.signing_key().unwrap().as_deref(), Some(&b"plain"[..]));
    w.secret = Some("whsec_".into());
    assert_eq!(w.signing_key(), Err(webhook::SecretError::Empty));
    w.headers.insert("Content-Type".into(), "text/plain".into());
    let p = w.extra_headers().unwrap_err();
    assert_eq!(p.name, "Content-Type");
    assert_eq!(w.problems().len(), 2, "{:?}", w.problems());
}

#[test]
fn the_schema_is_a_tagged_union() {
    let schema = crate::json_schema();
    assert_eq!(
        schema["properties"]["notifiers"]["items"]["$ref"],
        "#/$defs/NotifierConfig"
    );
    let branches = schema["$defs"]["NotifierConfig"]["oneOf"]
        .as_array()
        .expect("one branch per kind");
    let mut kinds = Vec::new();
    for b in branches {
        assert_eq!(b["properties"]["name"]["type"], "string", "{b}");
        assert_eq!(b["required"][0], "name", "{b}");
        assert_eq!(b["required"][1], "kind", "{b}");
        // A key of another kind (or a typo) is refused in every branch.
        assert_eq!(b["additionalProperties"], false, "{b}");
        kinds.push(b["properties"]["kind"]["const"].as_str().unwrap());
    }
    assert_eq!(kinds, ["console", "webhook"]);
    let webhook = &branches[1]["properties"];
    for key in ["url", "secret", "headers", "timeout", "max_attempts"] {
        assert!(webhook.get(key).is_some(), "{key} missing from {webhook}");
    }
}

#[test]
fn the_format_defaults_to_telltale_and_takes_alertmanager() {
    let c = load(concat!(
        "notifiers:\n",
        "  - name: plain\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/telltale\n",
        "  - name: am\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/am\n",
        "    format: alertmanager\n",
        "    external_url: https://telltale.example.com\n",
    ))
    .unwrap();
    let plain = webhook(&c.notifiers[0]);
    assert_eq!(plain.format, webhook::WebhookFormat::Telltale);
    assert_eq!(plain.external_url, "");
    let am = webhook(&c.notifiers[1]);
    assert_eq!(am.format, webhook::WebhookFormat::Alertmanager);
    assert_eq!(am.external_url, "https://telltale.example.com");
}

#[test]
fn an_unknown_format_is_refused_at_its_position_with_the_allowed_values() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: am\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/am\n",
        "    format: prometheus\n",
    ));
    // Line 5, column 13: the value after `    format: ` (12 characters).
    assert!(
        text.starts_with(
            "t.yaml:5:13: error: notifiers[0].format: unknown variant `prometheus`, expected \
             `telltale` or `alertmanager`"
        ),
        "{text}"
    );
    assert!(text.contains("5 |     format: prometheus"), "{text}");
}

#[test]
fn external_url_needs_the_alertmanager_format_and_a_url() {
    let text = err(concat!(
        "notifiers:\n",
        "  - name: v1\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/v1\n",
        "    external_url: https://telltale.example.com\n",
        "  - name: am\n",
        "    kind: webhook\n",
        "    url: https://hooks.example.com/am\n",
        "    format: alertmanager\n",
        "    external_url: telltale.example.com\n",
    ));
    for expected in [
        "t.yaml:5:5: error: external_url is only sent with `format: alertmanager`",
        "t.yaml:10:5: error: external_url `telltale.example.com` is not an http(s) URL",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn the_schema_lists_the_formats() {
    let schema = crate::json_schema();
    let text = schema.to_string();
    let branches = schema["$defs"]["NotifierConfig"]["oneOf"]
        .as_array()
        .unwrap();
    let webhook = &branches[1]["properties"];
    assert!(webhook.get("format").is_some(), "{webhook}");
    assert_eq!(webhook["external_url"]["type"], "string", "{webhook}");
    assert!(text.contains("\"alertmanager\""), "{text}");
    assert!(text.contains("\"telltale\""), "{text}");
}
