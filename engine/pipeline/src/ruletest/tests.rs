use std::path::{Path, PathBuf};

use super::*;

/// A rule that fires while `cpu` is above 90, after holding 2 minutes.
const CPU_HOT: &str = r#"
const RULE = #{ name: "cpu_hot", severity: "warning", hold: "2m", summary: "CPU hot" };
fn evaluate() {
    let v = metric("cpu");
    if v > 90 { alert(v, #{}, `cpu at ${v}`) } else { [] }
}
"#;

/// One alert per `disk` series above 90, no hold, with the rule summary.
const DISK: &str = r#"
const RULE = #{ name: "disk", severity: "critical", labels: #{ team: "ops" }, summary: "disk full" };
fn evaluate() {
    let out = [];
    for s in series("disk") { if s.value > 90 { out.push(alert(s.value, s.labels)); } }
    out
}
"#;

/// Writes the rules and a test file into a new directory; returns it and the test file.
fn setup(test_yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cpu_hot.rhai"), CPU_HOT).unwrap();
    std::fs::write(dir.path().join("disk.rhai"), DISK).unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, test_yaml).unwrap();
    (dir, file)
}

fn ran(file: &Path) -> FileReport {
    match run_file(file) {
        FileOutcome::Ran(r) => r,
        FileOutcome::Invalid(d) => panic!("invalid: {}", Diagnostics(d)),
    }
}

fn invalid(file: &Path) -> Vec<Diagnostic> {
    match run_file(file) {
        FileOutcome::Invalid(d) => d,
        FileOutcome::Ran(r) => panic!("ran: {r}"),
    }
}

use telltale_diagnostics::Diagnostics;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l = Labels::new();
    for (k, v) in pairs {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

// `cpu` is 50 at 0s, then 95 from 1m on (`50 95x5`: one 50, six 95s). The rule first sees
// 95 at 1m (pending since 1m) and fires at 3m, when 3m − 1m reaches its 2m hold.
const CPU_SERIES: &str = r#"
    input_series:
      - series: cpu
        values: '50 95x5'
"#;

#[test]
fn an_alert_fires_after_its_hold_and_not_before() {
    let yaml = format!(
        r#"rule_files: [cpu_hot.rhai]
tests:
  - name: hold
{CPU_SERIES}
    alert_rule_test:
      - eval_time: 2m
        alertname: cpu_hot
      - eval_time: 3m
        alertname: cpu_hot
        exp_alerts:
          - exp_labels: {{ severity: warning }}
            exp_annotations: {{ summary: "cpu at 95.0" }}
      # Between steps: the state of the 3m step.
      - eval_time: 210s
        alertname: cpu_hot
        exp_alerts:
          - exp_labels: {{ alertname: cpu_hot, severity: warning }}
"#
    );
    let (_dir, file) = setup(&yaml);
    let r = ran(&file);
    assert!(r.passed(), "{r}");
    assert_eq!((r.tests, r.checks), (1, 3));
}

#[test]
fn failures_name_the_alert_its_labels_and_the_time() {
    let yaml = format!(
        r#"rule_files: [cpu_hot.rhai]
tests:
  - name: wrong
{CPU_SERIES}
    alert_rule_test:
      - eval_time: 2m
        alertname: cpu_hot
        exp_alerts:
          - exp_labels: {{ severity: warning }}
      - eval_time: 4m
        alertname: cpu_hot
      - eval_time: 5m
        alertname: cpu_hot
        exp_alerts:
          - exp_labels: {{ severity: warning }}
            exp_annotations: {{ summary: "CPU hot" }}
"#
    );
    let (_dir, file) = setup(&yaml);
    let r = ran(&file);
    let alert = labels(&[("alertname", "cpu_hot"), ("severity", "warning")]);
    let kinds: Vec<(Duration, Vec<Mismatch>)> = r
        .failures
        .iter()
        .map(|f| match &f.kind {
            FailureKind::Alerts {
                eval_time,
                mismatches,
                rule_file,
                ..
            } => {
                assert!(rule_file.ends_with("cpu_hot.rhai"));
                (*eval_time, mismatches.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                Duration::from_secs(120),
                vec![Mismatch::Missing {
                    labels: alert.clone(),
                    summary: None,
                    pending_since: Some(60_000),
                }]
            ),
            (
                Duration::from_secs(240),
                vec![Mismatch::Unexpected {
                    labels: alert.clone(),
                    value: 95.0,
                    summary: "cpu at 95.0".into(),
                    firing_since: 180_000,
                }]
            ),
            (
                Duration::from_secs(300),
                vec![Mismatch::OtherAnnotations {
                    labels: alert.clone(),
                    expected: "CPU hot".into(),
                    got: "cpu at 95.0".into(),
                }]
            ),
        ]
    );
    let text = r.to_string();
    assert!(text.contains("FAILED 1 of 1 test(s)"), "{text}");
    assert!(
        text.contains("test \"wrong\": at eval_time 2m, alertname cpu_hot"),
        "{text}"
    );
    assert!(
        text.contains(
            "expected but not firing: {alertname=\"cpu_hot\",severity=\"warning\"} (pending since 1m: its hold has not passed)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "firing but not expected: {alertname=\"cpu_hot\",severity=\"warning\"} value=95 summary=\"cpu at 95.0\" (firing since 3m)"
        ),
        "{text}"
    );
    assert!(
        text.contains("firing with other annotations: {alertname=\"cpu_hot\",severity=\"warning\"} summary=\"cpu at 95.0\", expected summary=\"CPU hot\""),
        "{text}"
    );
}

#[test]
fn stale_ends_a_series_and_missing_samples_fall_back_to_the_lookback() {
    // disk{mount="/"}: 95 at 0s and 1m, stale at 2m, then 95 again at 3m. No hold: it
    // fires at 0s, resolves at 2m (the series ended), fires again at 3m.
    // disk{mount="/data"}: 95 at 0s then nothing (`_x9`): the 5-minute lookback keeps
    // the 0s sample visible through 5m (0 ≥ 5m − 5m); at 6m it is gone. mount="/" keeps
    // its 3m sample visible until 8m.
    let yaml = r#"rule_files: [.]
tests:
  - input_series:
      - series: 'disk{mount="/"}'
        values: '95 95 stale 95'
      - series: 'disk{mount="/data"}'
        values: '95 _x9'
    alert_rule_test:
      - eval_time: 1m
        alertname: disk
        exp_alerts:
          - exp_labels: { severity: critical, team: ops, mount: / }
            exp_annotations: { summary: disk full }
          - exp_labels: { severity: critical, team: ops, mount: /data }
      - eval_time: 2m
        alertname: disk
        exp_alerts:
          - exp_labels: { severity: critical, team: ops, mount: /data }
      - eval_time: 3m
        alertname: disk
        exp_alerts:
          - exp_labels: { severity: critical, team: ops, mount: / }
          - exp_labels: { severity: critical, team: ops, mount: /data }
      - eval_time: 5m
        alertname: disk
        exp_alerts:
          - exp_labels: { severity: critical, team: ops, mount: / }
          - exp_labels: { severity: critical, team: ops, mount: /data }
      - eval_time: 6m
        alertname: disk
        exp_alerts:
          - exp_labels: { severity: critical, team: ops, mount: / }
      # The 3m sample of mount="/" is older than the lookback from 8m01s on.
      - eval_time: 9m
        alertname: disk
"#;
    let (_dir, file) = setup(yaml);
    let r = ran(&file);
    assert!(r.passed(), "{r}");
    assert_eq!(r.checks, 6);
}

#[test]
fn bad_notation_is_a_positioned_diagnostic() {
    let yaml = "rule_files: [cpu_hot.rhai]\ntests:\n  - input_series:\n      - series: cpu\n        values: '1+2x'\n";
    let (_dir, file) = setup(yaml);
    let d = invalid(&file);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].message.contains("expected a count after x"),
        "{}",
        d[0]
    );
    // Line 5, at the quoted scalar after `values: ` (column 17).
    assert_eq!(
        d[0].position,
        Some(Position {
            line: 5,
            column: 17
        })
    );
    assert!(
        d[0].to_string()
            .starts_with(&format!("{}:5:17: error:", file.display()))
    );
}

#[test]
fn an_unknown_annotation_key_is_an_error_naming_it() {
    let yaml = "rule_files: [cpu_hot.rhai]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        alertname: cpu_hot\n        exp_alerts:\n          - exp_annotations: { description: x }\n";
    let (_dir, file) = setup(yaml);
    let d = invalid(&file);
    assert!(
        d[0].message.contains("unknown field `description`"),
        "{}",
        d[0]
    );
    assert_eq!(d[0].position.map(|p| p.line), Some(7));
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("`summary`"))
    );
}

#[test]
fn rule_files_and_alert_names_are_checked_before_running() {
    let (_dir, file) = setup("rule_files: [nope.rhai]\ntests: []\n");
    let d = invalid(&file);
    assert!(
        d[0].message.contains("rule file `nope.rhai` not found"),
        "{}",
        d[0]
    );
    assert_eq!(d[0].position.map(|p| p.line), Some(1));

    let yaml = "rule_files: [cpu_hot.rhai]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        alertname: cpu_hto\n";
    let (_dir, file) = setup(yaml);
    let d = invalid(&file);
    assert!(d[0].message.contains("no rule named `cpu_hto`"), "{}", d[0]);
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `cpu_hot`?"));
    assert_eq!(d[0].position.map(|p| p.line), Some(5));

    let (dir, file) = setup("rule_files: [broken.rhai]\n");
    std::fs::write(
        dir.path().join("broken.rhai"),
        "const RULE = #{ name: \"x\" };\nfn evaluate() { [] }\n",
    )
    .unwrap();
    let d = invalid(&file);
    assert!(d[0].file.ends_with("broken.rhai"), "{}", d[0]);
}

#[test]
fn a_rule_that_fails_is_a_test_failure_with_its_error() {
    let (dir, file) = setup(
        "rule_files: [fails.rhai]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        alertname: fails\n",
    );
    std::fs::write(
        dir.path().join("fails.rhai"),
        "const RULE = #{ name: \"fails\", severity: \"info\" };\nfn evaluate() { metric(\"x\") * 2 }\n",
    )
    .unwrap();
    let r = ran(&file);
    assert_eq!(r.failures.len(), 1, "{r}");
    match &r.failures[0].kind {
        FailureKind::RuleError { at, error } => {
            assert_eq!(*at, Duration::ZERO);
            assert!(error.contains("fails.rhai:2:"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

/// A deadman: fires while `up` is below 1, and raises a `nodata` alert for a series that
/// stays silent for 2 minutes.
const UP: &str = r#"
const RULE = #{ name: "down", severity: "critical", nodata: "2m" };
fn evaluate() {
    let out = [];
    for s in series("up") { if s.value < 1 { out.push(alert(s.value, s.labels)); } }
    out
}
"#;

#[test]
fn a_nodata_rule_is_tested_as_the_engine_runs_it() {
    // `up{host="a"}` reports at 0, 1m and 2m, then nothing: silent since 2m, so from 4m on
    // (2m of silence) a nodata alert fires for it; `b` keeps reporting.
    let yaml = r#"rule_files: [up.rhai]
tests:
  - name: deadman
    interval: 1m
    input_series:
      - series: 'up{host="a"}'
        values: '1 1 1 _ _ _ _'
      - series: 'up{host="b"}'
        values: '1x6'
    alert_rule_test:
      - eval_time: 3m
        alertname: down
      - eval_time: 4m
        alertname: down
        exp_alerts:
          - exp_labels: { alertstate: nodata, host: a, metric: up, severity: critical }
            exp_annotations: { summary: 'no data from {host="a",metric="up"} for 2m' }
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("up.rhai"), UP).unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, yaml).unwrap();
    let r = ran(&file);
    assert!(r.passed(), "{r}");
    assert_eq!((r.tests, r.checks), (1, 2));
}
