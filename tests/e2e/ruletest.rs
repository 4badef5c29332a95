//! `telltale test`: the rule tests shipped beside the default rules and the examples
//! pass (so CI runs them), and a failing or broken test file is reported as such.

use std::path::{Path, PathBuf};

use crate::support::telltale;

/// The test files in the repository.
fn shipped() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        "rules/tests/defaults.yaml",
        "examples/chia-plotting/rule-tests.yaml",
        "examples/feature-extraction/rule-tests.yaml",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect()
}

fn run(files: &[PathBuf]) -> (Option<i32>, String, String) {
    let out = telltale().arg("test").args(files).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_rule_tests_pass() {
    let files = shipped();
    let (code, stdout, stderr) = run(&files);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for f in &files {
        let line = format!("{}: ok, ", f.display());
        assert!(stdout.contains(&line), "missing `{line}`:\n{stdout}");
    }
}

const RULE: &str = r#"const RULE = #{ name: "queue_long", severity: "warning", hold: "2m" };
fn evaluate() {
    let out = [];
    for s in series("queue_length") {
        if s.value > 10 { out.push(alert(s.value, #{ queue: s.labels.queue }, `${s.labels.queue} is long`)); }
    }
    out
}
"#;

/// `jobs` is 20 from 0s (pending from 0s, firing at 2m); `mail` is 20 from 1m (firing at
/// 3m). The test expects `jobs` at 1m (still pending: not firing yet), nothing at 3m
/// (both fire), and `mail` with another summary at 4m.
const FAILING: &str = r#"rule_files: [queue_long.rhai]
tests:
  - name: queues
    input_series:
      - series: 'queue_length{queue="jobs"}'
        values: '20x5'
      - series: 'queue_length{queue="mail"}'
        values: '0 20x4'
    alert_rule_test:
      - eval_time: 1m
        alertname: queue_long
        exp_alerts:
          - exp_labels: { severity: warning, queue: jobs }
      - eval_time: 3m
        alertname: queue_long
      - eval_time: 4m
        alertname: queue_long
        exp_alerts:
          - exp_labels: { severity: warning, queue: jobs }
          - exp_labels: { severity: warning, queue: mail }
            exp_annotations: { summary: "mail is short" }
"#;

#[test]
fn a_failing_test_says_which_alert_at_what_time_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queue_long.rhai"), RULE).unwrap();
    let file = dir.path().join("failing.yaml");
    std::fs::write(&file, FAILING).unwrap();
    let (code, stdout, stderr) = run(std::slice::from_ref(&file));
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let rule = dir.path().join("queue_long.rhai");
    let want = format!(
        r#"{file}: FAILED 1 of 1 test(s)
  test "queues": at eval_time 1m, alertname queue_long ({rule}):
    expected but not firing: {{alertname="queue_long",queue="jobs",severity="warning"}} (pending since 0s: its hold has not passed)
  test "queues": at eval_time 3m, alertname queue_long ({rule}):
    firing but not expected: {{alertname="queue_long",queue="jobs",severity="warning"}} value=20 summary="jobs is long" (firing since 2m)
    firing but not expected: {{alertname="queue_long",queue="mail",severity="warning"}} value=20 summary="mail is long" (firing since 3m)
  test "queues": at eval_time 4m, alertname queue_long ({rule}):
    firing with other annotations: {{alertname="queue_long",queue="mail",severity="warning"}} summary="mail is long", expected summary="mail is short"
"#,
        file = file.display(),
        rule = rule.display(),
    );
    assert_eq!(stdout, want);

    // A passing file beside a failing one: both are reported, the exit says 1.
    let (code, stdout, _) = run(&[shipped()[0].clone(), file]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("defaults.yaml: ok, "), "{stdout}");
}

#[test]
fn a_bad_test_file_is_a_positioned_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queue_long.rhai"), RULE).unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "rule_files: [queue_long.rhai]\ntests:\n  - input_series:\n      - series: queue_length\n        values: '1+2x'\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(std::slice::from_ref(&file));
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:5:17: error: tests[0].input_series[0].values: values `1+2x`: expected a count after x",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("its tests did not run"), "{stderr}");
}
