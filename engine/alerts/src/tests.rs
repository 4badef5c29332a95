//! Tests of the alert state machine. Fed by a real rule set, it is tested in
//! `telltale-pipeline`, which joins the two.

use std::path::PathBuf;

use std::time::Duration;

use super::*;
use telltale_model::Severity;

const T0: i64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, hold_s: u64) -> RuleMeta {
    RuleMeta {
        name: name.into(),
        severity: Severity::Warning,
        hold: Duration::from_secs(hold_s),
        labels: labels(&[("team", "ops"), ("mount", "rule-default")]),
        summary: "rule summary".into(),
        file: PathBuf::from("rules/x.rhai"),
        policy: Default::default(),
    }
}

fn cand(value: f64, l: &[(&str, &str)]) -> AlertCandidate {
    AlertCandidate {
        value,
        labels: labels(l),
        summary: None,
    }
}

#[test]
fn pending_then_firing_after_hold_then_resolved() {
    let m = meta("disk", 60);
    let mut am = AlertManager::new();
    let c = [cand(91.0, &[("mount", "/")])];

    assert!(am.process(&m, &c, T0).is_empty(), "pending first");
    let active = am.active_states();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].state, AlertState::Pending);
    assert_eq!(active[0].alert.firing_since_ms, 0);

    assert!(
        am.process(&m, &[cand(92.0, &[("mount", "/")])], T0 + 59_999)
            .is_empty()
    );
    let fired = am.process(&m, &[cand(93.0, &[("mount", "/")])], T0 + 60_000);
    assert_eq!(fired.len(), 1);
    let n = &fired[0];
    assert_eq!(n.status, AlertStatus::Firing);
    assert_eq!(n.alert.value, 93.0, "value updated every tick");
    assert_eq!(n.alert.active_since_ms, T0);
    assert_eq!(n.alert.firing_since_ms, T0 + 60_000);
    assert_eq!(n.alert.summary, "rule summary");
    assert_eq!(n.alert.rule, "disk");
    assert_eq!(n.alert.rule_file, "rules/x.rhai");
    assert_eq!(
        n.alert.labels,
        labels(&[
            ("alertname", "disk"),
            ("mount", "/"),
            ("severity", "warning"),
            ("team", "ops")
        ]),
        "rule labels overlaid by candidate labels, plus alertname and severity"
    );
    assert_eq!(n.alert.fingerprint, fingerprint("disk", &n.alert.labels));

    // Still firing: no repeat.
    assert!(am.process(&m, &c, T0 + 70_000).is_empty());
    assert_eq!(am.active()[0].value, 91.0);

    let resolved = am.process(&m, &[], T0 + 80_000);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(resolved[0].alert.fingerprint, n.alert.fingerprint);
    assert_eq!(resolved[0].alert.resolved_at_ms, Some(T0 + 80_000));
    assert_eq!(resolved[0].alert.firing_since_ms, T0 + 60_000);
    assert_ne!(resolved[0].id, n.id);
    assert!(am.active().is_empty());
    assert!(am.process(&m, &[], T0 + 90_000).is_empty(), "resolved once");
}

#[test]
fn zero_hold_fires_on_first_sight_and_instances_are_independent() {
    let m = meta("disk", 0);
    let mut am = AlertManager::new();
    let mut c1 = cand(95.0, &[("mount", "/")]);
    c1.summary = Some("root full".into());
    let c2 = cand(99.0, &[("mount", "/data")]);
    let out = am.process(&m, &[c1.clone(), c2.clone()], T0);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|n| n.status == AlertStatus::Firing));
    assert_eq!(out[0].alert.summary, "root full");
    assert_eq!(out[1].alert.summary, "rule summary");
    assert_ne!(out[0].alert.fingerprint, out[1].alert.fingerprint);

    // Only /data recovers.
    let out = am.process(&m, &[c1], T0 + 1000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, AlertStatus::Resolved);
    assert_eq!(out[0].alert.labels["mount"], "/data");
    assert_eq!(am.active().len(), 1);
}

#[test]
fn pending_that_disappears_is_dropped_silently() {
    let m = meta("cpu", 300);
    let mut am = AlertManager::new();
    assert!(am.process(&m, &[cand(95.0, &[])], T0).is_empty());
    assert!(am.process(&m, &[], T0 + 10_000).is_empty());
    assert!(am.active().is_empty());
    // Seen again later: the hold starts over.
    assert!(am.process(&m, &[cand(95.0, &[])], T0 + 20_000).is_empty());
    assert!(
        am.process(&m, &[cand(95.0, &[])], T0 + 310_000).is_empty(),
        "290 s < hold"
    );
    assert_eq!(am.process(&m, &[cand(95.0, &[])], T0 + 320_000).len(), 1);
}

#[test]
fn rule_removed_resolves_firing_and_drops_pending() {
    let fast = meta("fast", 0);
    let slow = meta("slow", 600);
    let mut am = AlertManager::new();
    am.process(&fast, &[cand(1.0, &[])], T0);
    am.process(&slow, &[cand(1.0, &[])], T0);
    assert_eq!(am.active().len(), 2);
    let out = am.rule_removed("fast", T0 + 5);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, AlertStatus::Resolved);
    assert!(am.rule_removed("slow", T0 + 5).is_empty());
    assert!(am.rule_removed("never", T0 + 5).is_empty());
    assert!(am.active().is_empty());
}

#[test]
fn notification_ids_are_unique_ulids() {
    let ids: Vec<String> = (0..1000).map(|i| notification_id(T0 + i)).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    for id in &ids {
        assert_eq!(id.len(), 30, "{id}");
        assert!(id.starts_with("msg_"));
        assert!(
            id[4..]
                .bytes()
                .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)),
            "{id}"
        );
    }
    // Time-ordered: a later millisecond sorts later.
    assert!(notification_id(T0) < notification_id(T0 + 1));
    // The time part is the ULID encoding of the millisecond (10 chars), as before the
    // switch to the `ulid` crate: 1_700_000_000_000 ms is `01HF7YAT00`.
    assert_eq!(&notification_id(0)[4..14], "0000000000");
    assert_eq!(&notification_id(1_700_000_000_000)[4..14], "01HF7YAT00");
    assert_eq!(&notification_id(-5)[4..14], "0000000000");
}

#[test]
fn fingerprints_are_stable_and_label_sensitive() {
    let a = fingerprint("r", &labels(&[("a", "1"), ("b", "2")]));
    assert_eq!(a, fingerprint("r", &labels(&[("b", "2"), ("a", "1")])));
    assert_eq!(a.len(), 16);
    assert_ne!(a, fingerprint("r2", &labels(&[("a", "1"), ("b", "2")])));
    assert_ne!(a, fingerprint("r", &labels(&[("a", "1"), ("b", "3")])));
    // Length-prefixing: moving text between key and value changes the hash.
    assert_ne!(
        fingerprint("r", &labels(&[("ab", "c")])),
        fingerprint("r", &labels(&[("a", "bc")]))
    );
}

#[test]
fn restored_state_resolves_without_firing_again() {
    let m = meta("cpu", 0);
    let mut am = AlertManager::new();
    assert_eq!(am.process(&m, &[cand(95.0, &[])], T0).len(), 1);
    let saved = serde_json::to_string(&am.active_states()).expect("serialize");

    let mut restarted = AlertManager::new();
    restarted.restore(serde_json::from_str::<Vec<ActiveAlert>>(&saved).expect("deserialize"));
    assert!(
        restarted
            .process(&m, &[cand(96.0, &[])], T0 + 1000)
            .is_empty(),
        "already firing"
    );
    let out = restarted.process(&m, &[], T0 + 2000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, AlertStatus::Resolved);
}

#[test]
fn the_alert_manager_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<AlertManager>();
}
