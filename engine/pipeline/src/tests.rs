//! The rule task's joints: a real rule set feeding the alert state machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use telltale_alerts::AlertManager;
use telltale_config::RulesConfig;
use telltale_model::{AlertStatus, Labels, Sample, Severity};
use telltale_rules::{ReloadOutcome, RuleSet};
use telltale_store::{SeriesStore, StoreLimits};

use super::apply_results;

const T0: i64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write_rule(dir: &Path, file: &str, name: &str, body: &str) -> PathBuf {
    let p = dir.join(file);
    let src = format!(
        "const RULE = #{{ name: \"{name}\", severity: \"critical\", hold: \"10s\" }};\nfn evaluate() {{\n    {body}\n}}\n"
    );
    std::fs::write(&p, src).expect("write");
    p
}

#[test]
fn alert_state_survives_a_reload_and_a_failing_evaluation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    let path = write_rule(
        dir.path(),
        "temp.rhai",
        "hot",
        "let t = metric(\"temp\"); if t > 80 { alert(t) } else { [] }",
    );
    assert!(set.load_dir(dir.path()).is_empty());
    let mut am = AlertManager::new();
    let ingest = |v: f64, ts: i64| {
        store.ingest([Sample {
            name: "temp".into(),
            labels: Labels::new(),
            value: v,
            timestamp_ms: ts,
        }]);
    };

    ingest(90.0, T0);
    assert!(
        apply_results(&mut am, set.evaluate(T0), T0).0.is_empty(),
        "pending"
    );
    ingest(91.0, T0 + 10_000);
    let fired = apply_results(&mut am, set.evaluate(T0 + 10_000), T0 + 10_000).0;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].alert.severity, Severity::Critical);

    // Reload: new code (a different threshold), same rule name: the alert keeps firing.
    write_rule(
        dir.path(),
        "temp.rhai",
        "hot",
        "let t = metric(\"temp\"); if t > 85 { alert(t, #{}, `temp ${t}`) } else { [] }",
    );
    assert!(matches!(
        set.apply_change(&path),
        ReloadOutcome::Updated {
            renamed_from: None,
            ..
        }
    ));
    ingest(92.0, T0 + 20_000);
    assert!(
        apply_results(&mut am, set.evaluate(T0 + 20_000), T0 + 20_000)
            .0
            .is_empty()
    );
    assert_eq!(am.active()[0].summary, "temp 92.0");
    assert_eq!(am.active()[0].firing_since_ms, T0 + 10_000);

    // The rule breaks (two series now match metric("temp")): its alert stays as it was.
    store.ingest([Sample {
        name: "temp".into(),
        labels: labels(&[("sensor", "b")]),
        value: 10.0,
        timestamp_ms: T0 + 30_000,
    }]);
    ingest(10.0, T0 + 30_000);
    let results = set.evaluate(T0 + 30_000);
    assert!(results[0].outcome.is_err());
    let (sent, errors) = apply_results(&mut am, results, T0 + 30_000);
    assert!(sent.is_empty());
    assert_eq!(errors, 1);
    assert_eq!(am.active().len(), 1, "not resolved by a broken rule");

    // The rule file is deleted: its firing alert resolves.
    std::fs::remove_file(&path).expect("rm");
    let ReloadOutcome::Removed(name) = set.apply_change(&path) else {
        panic!("expected Removed");
    };
    let out = am.rule_removed(&name, T0 + 40_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, AlertStatus::Resolved);
    assert!(am.active().is_empty());
}
