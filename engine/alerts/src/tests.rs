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
        scaling: None,
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

fn with_policy(mut m: RuleMeta, f: impl FnOnce(&mut telltale_model::AlertPolicy)) -> RuleMeta {
    f(&mut m.policy);
    m
}

/// (status, reason, severity label) of each notification, for compact assertions.
fn told(out: &[Notification]) -> Vec<(AlertStatus, NotificationReason, String)> {
    out.iter()
        .map(|n| (n.status, n.reason, n.alert.labels["severity"].clone()))
        .collect()
}

const FIRING: AlertStatus = AlertStatus::Firing;
const RESOLVED: AlertStatus = AlertStatus::Resolved;
const CHANGE: NotificationReason = NotificationReason::StateChange;

#[test]
fn keep_firing_for_bridges_a_gap_and_resolves_after_it() {
    let m = with_policy(meta("lat", 0), |p| {
        p.keep_firing_for = Duration::from_secs(60)
    });
    let mut am = AlertManager::new();
    assert_eq!(am.process(&m, &[cand(1.0, &[])], T0).len(), 1);
    // Gone for 59 s: recovering, nothing told.
    assert!(am.process(&m, &[], T0 + 30_000).is_empty());
    assert_eq!(am.active_states()[0].state, AlertState::Recovering);
    // Back: firing again, silently (it never resolved for receivers).
    assert!(am.process(&m, &[cand(2.0, &[])], T0 + 59_000).is_empty());
    assert_eq!(am.active_states()[0].state, AlertState::Firing);
    assert_eq!(
        am.active_states()[0].alert.firing_since_ms,
        T0,
        "one firing spell"
    );
    // Gone: 59.999 s after last seen still recovering, at 60 s resolved.
    assert!(am.process(&m, &[], T0 + 118_999).is_empty());
    let out = am.process(&m, &[], T0 + 119_000);
    assert_eq!(told(&out), [(RESOLVED, CHANGE, "warning".into())]);
    assert_eq!(out[0].alert.resolved_at_ms, Some(T0 + 119_000));
    assert!(am.active().is_empty());
}

#[test]
fn thresholds_give_hysteresis_per_severity() {
    // Warn at 80 (leave below 70), page at 95 (leave below 90); values by hand below.
    let m = with_policy(meta("mem", 0), |p| {
        p.thresholds = vec![
            telltale_model::Threshold {
                severity: Severity::Warning,
                enter: 80.0,
                exit: 70.0,
            },
            telltale_model::Threshold {
                severity: Severity::Critical,
                enter: 95.0,
                exit: 90.0,
            },
        ]
    });
    let mut am = AlertManager::new();
    let at = |v: f64| [cand(v, &[("host", "a")])];
    assert!(
        am.process(&m, &at(80.0), T0).is_empty(),
        "80 is not above 80"
    );
    assert_eq!(
        told(&am.process(&m, &at(85.0), T0 + 1)),
        [(FIRING, CHANGE, "warning".into())]
    );
    // Between exit and enter: stays, nothing new.
    assert!(am.process(&m, &at(72.0), T0 + 2).is_empty());
    assert_eq!(
        told(&am.process(&m, &at(96.0), T0 + 3)),
        [(FIRING, CHANGE, "critical".into())]
    );
    assert_eq!(
        am.active().len(),
        2,
        "both severities fire, as two rules would"
    );
    // 91: above the critical exit (90): both stay.
    assert!(am.process(&m, &at(91.0), T0 + 4).is_empty());
    // 89: the page resolves, the warning stays.
    assert_eq!(
        told(&am.process(&m, &at(89.0), T0 + 5)),
        [(RESOLVED, CHANGE, "critical".into())]
    );
    // 92: below the critical enter, so no page again.
    assert!(am.process(&m, &at(92.0), T0 + 6).is_empty());
    // 70 is not below 70; 69.9 is.
    assert!(am.process(&m, &at(70.0), T0 + 7).is_empty());
    assert_eq!(
        told(&am.process(&m, &at(69.9), T0 + 8)),
        [(RESOLVED, CHANGE, "warning".into())]
    );
    assert!(am.active().is_empty());
}

#[test]
fn below_thresholds_and_hold_per_severity() {
    let m = with_policy(meta("free", 60), |p| {
        p.direction = telltale_model::Direction::Below;
        p.thresholds = vec![telltale_model::Threshold {
            severity: Severity::Warning,
            enter: 10.0,
            exit: 20.0,
        }];
    });
    let mut am = AlertManager::new();
    assert!(am.process(&m, &[cand(5.0, &[])], T0).is_empty(), "pending");
    // 15 is not above the exit (20): still pending, and fires when the hold has passed.
    assert_eq!(am.process(&m, &[cand(15.0, &[])], T0 + 60_000).len(), 1);
    assert_eq!(
        told(&am.process(&m, &[cand(21.0, &[])], T0 + 70_000)),
        [(RESOLVED, CHANGE, "warning".into())]
    );
}

#[test]
fn a_flapping_alert_sends_one_notice_then_one_when_it_settles() {
    let m = with_policy(meta("lat", 0), |p| {
        p.flapping = Some(telltale_model::Flapping {
            history: 5,
            low: 0.25,
            high: 0.5,
        })
    });
    let mut am = AlertManager::new();
    let on = [cand(1.0, &[])];
    let mut all = Vec::new();
    // The sequence of `flapping.rs`'s test: T F T T T T (shares 0.275, 0.525, 0.75,
    // 0.675, 0.425, 0.2).
    let mut t = T0;
    for holds in [true, false, true, true, true, true] {
        all.push(told(&am.process(&m, if holds { &on } else { &[] }, t)));
        t += 1000;
    }
    assert_eq!(all[0], [(FIRING, CHANGE, "warning".into())]);
    // The resolve on the second tick is what made it flap: one flapping notice instead.
    assert_eq!(
        all[1],
        [(RESOLVED, NotificationReason::Flapping, "warning".into())]
    );
    assert!(all[2].is_empty() && all[3].is_empty() && all[4].is_empty());
    assert_eq!(
        all[5],
        [(FIRING, NotificationReason::Settled, "warning".into())]
    );
    // Settled firing, then a plain resolve later.
    let out = am.process(&m, &[], t);
    assert_eq!(told(&out), [(RESOLVED, CHANGE, "warning".into())]);
}

#[test]
fn a_storm_of_changes_while_flapping_is_not_announced() {
    let m = with_policy(meta("lat", 0), |p| {
        p.flapping = Some(telltale_model::Flapping::default())
    });
    let mut am = AlertManager::new();
    let mut notes = Vec::new();
    for i in 0..100 {
        let c = if i % 2 == 0 {
            vec![cand(1.0, &[])]
        } else {
            vec![]
        };
        notes.extend(am.process(&m, &c, T0 + i * 1000));
    }
    let flapping = notes
        .iter()
        .filter(|n| n.reason == NotificationReason::Flapping)
        .count();
    assert_eq!(flapping, 1, "{:?}", told(&notes));
    // Before it was detected a few changes went out (the history starts empty): far
    // fewer than the 100 state changes.
    assert!(notes.len() < 20, "{} notifications", notes.len());
}

#[test]
fn repeat_per_severity_while_firing() {
    let m = with_policy(meta("disk", 0), |p| {
        p.repeat[Severity::Warning as usize] = Some(Duration::from_secs(600))
    });
    let mut am = AlertManager::new();
    let c = [cand(1.0, &[])];
    assert_eq!(am.process(&m, &c, T0).len(), 1);
    assert!(am.process(&m, &c, T0 + 599_999).is_empty());
    let out = am.process(&m, &c, T0 + 600_000);
    assert_eq!(
        told(&out),
        [(FIRING, NotificationReason::Repeat, "warning".into())]
    );
    assert!(am.process(&m, &c, T0 + 1_000_000).is_empty());
    assert_eq!(am.process(&m, &c, T0 + 1_200_000).len(), 1);
    // No repeat for a severity without one.
    let crit = RuleMeta {
        severity: Severity::Critical,
        ..m.clone()
    };
    let mut am = AlertManager::new();
    am.process(&crit, &c, T0);
    assert!(am.process(&crit, &c, T0 + 3_600_000).is_empty());
}

#[test]
fn send_resolved_false_marks_the_resolve_quiet() {
    let m = with_policy(meta("x", 0), |p| p.send_resolved = false);
    let mut am = AlertManager::new();
    let fired = am.process(&m, &[cand(1.0, &[])], T0);
    assert_eq!(fired.len(), 1);
    assert!(!fired[0].quiet);
    // The alert manager still hears that it ended; nobody else does.
    let out = am.process(&m, &[], T0 + 1);
    assert_eq!(told(&out), [(RESOLVED, CHANGE, "warning".into())]);
    assert!(out[0].quiet);
    assert!(am.active().is_empty());
}

#[test]
fn a_rule_failing_for_error_after_raises_an_error_alert_until_it_succeeds() {
    let m = with_policy(meta("broken", 0), |p| {
        p.error_after = Duration::from_secs(120)
    });
    let mut am = AlertManager::new();
    assert_eq!(am.process(&m, &[cand(5.0, &[])], T0).len(), 1);
    // Fails: the condition alert stays; no error alert before 120 s.
    assert!(
        am.rule_failed(&m, "metric(\"x\") matches 2 series", T0 + 1000)
            .is_empty()
    );
    assert!(am.rule_failed(&m, "still", T0 + 120_999).is_empty());
    let out = am.rule_failed(&m, "metric(\"x\") matches 2 series", T0 + 121_000);
    assert_eq!(out.len(), 1);
    let e = &out[0].alert;
    assert_eq!(e.kind, AlertKind::Error);
    assert_eq!(e.labels[ALERTSTATE_LABEL], "error");
    assert!(e.summary.contains("rules/x.rhai"), "{}", e.summary);
    assert!(e.summary.contains("matches 2 series"), "{}", e.summary);
    assert!(e.summary.contains("since 2m"), "{}", e.summary);
    assert_eq!(am.active().len(), 2, "the condition alert is still firing");
    // Still failing: nothing more.
    assert!(am.rule_failed(&m, "x", T0 + 200_000).is_empty());
    // Succeeds without the condition: the error and the condition alert resolve.
    let out = am.process(&m, &[], T0 + 201_000);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|n| n.status == RESOLVED));
    // A new failure starts the clock again.
    assert!(am.rule_failed(&m, "x", T0 + 300_000).is_empty());
    assert!(am.rule_failed(&m, "x", T0 + 419_999).is_empty());
    assert_eq!(am.rule_failed(&m, "x", T0 + 420_000).len(), 1);
}

#[test]
fn nodata_alerts_fire_per_silent_series_and_resolve_when_it_returns() {
    let m = meta("lat", 300);
    let mut am = AlertManager::new();
    let a = labels(&[("host", "a")]);
    let b = labels(&[("host", "b")]);
    let out = am.nodata(&m, &[(a.clone(), T0 - 600_000), (b.clone(), 0)], T0);
    assert_eq!(out.len(), 2, "no hold: the silence was the wait");
    assert!(out.iter().all(|n| n.alert.kind == AlertKind::Nodata));
    assert_eq!(out[0].alert.labels[ALERTSTATE_LABEL], "nodata");
    assert_eq!(out[0].alert.labels["host"], "a");
    assert_eq!(out[0].alert.summary, "no data from {host=\"a\"} for 10m");
    assert_eq!(out[0].alert.value, 600.0);
    // The condition path does not touch nodata alerts.
    assert!(am.process(&m, &[], T0 + 1).is_empty());
    // b comes back.
    let out = am.nodata(&m, &[(a, T0 - 600_000)], T0 + 2);
    assert_eq!(told(&out), [(RESOLVED, CHANGE, "warning".into())]);
    assert_eq!(out[0].alert.labels["host"], "b");
}

#[test]
fn snapshot_keeps_announced_and_flapping_across_a_restore() {
    let m = with_policy(meta("lat", 0), |p| {
        p.flapping = Some(telltale_model::Flapping {
            history: 5,
            low: 0.25,
            high: 0.5,
        })
    });
    let mut am = AlertManager::new();
    am.process(&m, &[cand(1.0, &[])], T0);
    am.process(&m, &[], T0 + 1000); // flapping starts (see above)
    let saved = serde_json::to_string(&am.snapshot()).expect("serialize");
    let mut again = AlertManager::new();
    again.restore(serde_json::from_str::<Vec<ActiveAlert>>(&saved).expect("deserialize"));
    assert_eq!(again.snapshot(), am.snapshot());
    // Still flapping after the restore: the next change is not announced.
    assert!(again.process(&m, &[cand(1.0, &[])], T0 + 2000).is_empty());
}
