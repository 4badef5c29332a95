//! Tests of the rule engine against a real store and real files in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use telltale_config::HumanDuration;
use telltale_model::{Labels, Sample, Severity};
use telltale_store::{SeriesStore, StoreLimits};

const T0: i64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sample(name: &str, l: &[(&str, &str)], value: f64, ts: i64) -> Sample {
    Sample::new(name, l, value, ts)
}

fn store() -> Arc<SeriesStore> {
    Arc::new(SeriesStore::new(StoreLimits::default()))
}

fn rule_set(store: &Arc<SeriesStore>) -> RuleSet {
    RuleSet::new(store.clone(), &RulesConfig::default())
}

/// A rule named `name` whose `evaluate()` body is `body`.
fn rule_src(name: &str, body: &str) -> String {
    format!(
        "const RULE = #{{ name: \"{name}\", severity: \"warning\" }};\n\nfn evaluate() {{\n    {body}\n}}\n"
    )
}

/// Loads `src` as a single rule and evaluates it at `now`.
// The error is inspected by the tests, never propagated: its size does not matter.
#[allow(clippy::result_large_err)]
fn eval_src(
    store: &Arc<SeriesStore>,
    src: &str,
    now: i64,
) -> Result<Vec<AlertCandidate>, RuleError> {
    let mut set = rule_set(store);
    let diags = set.load_source(Path::new("t.rhai"), PathBuf::from("t.rhai"), src);
    assert!(diags.is_empty(), "unexpected diagnostics: {diags:?}");
    let mut results = set.evaluate(now);
    assert_eq!(results.len(), 1);
    results.remove(0).outcome
}

/// The value of `alert(<expr>)`, or the error.
#[allow(clippy::result_large_err)]
fn eval_value(store: &Arc<SeriesStore>, expr: &str) -> Result<f64, RuleError> {
    let out = eval_src(store, &rule_src("t", &format!("alert({expr})")), T0)?;
    Ok(out[0].value)
}

/// Compiles `src` as file `file` and returns the diagnostics.
fn compile_diags(src: &str) -> Vec<Diagnostic> {
    let s = store();
    let mut set = rule_set(&s);
    set.load_source(Path::new("bad.rhai"), PathBuf::from("bad.rhai"), src)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write rule file");
    p
}

#[test]
fn compile_error_keeps_previous_version_and_is_positioned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "cpu.rhai", &rule_src("cpu", "alert(1.0)"));
    let s = store();
    let mut set = rule_set(&s);
    assert!(set.load_dir(dir.path()).is_empty());

    // Line 5 is `    let x = 1 +* 2;`: the `*` at column 16 is the error.
    let broken = "const RULE = #{ name: \"cpu\", severity: \"warning\" };\n\nfn evaluate() {\n    let y = 2;\n    let x = 1 +* 2;\n    alert(2.0)\n}\n";
    write(dir.path(), "cpu.rhai", broken);
    match set.apply_change(&path) {
        ReloadOutcome::Failed {
            diagnostics,
            kept_previous,
        } => {
            assert!(kept_previous);
            assert_eq!(diagnostics.len(), 1);
            let d = &diagnostics[0];
            assert_eq!(d.file, path);
            assert_eq!(
                d.position,
                Some(Position {
                    line: 5,
                    column: 16
                }),
                "{d}"
            );
            assert_eq!(d.source_line.as_deref(), Some("    let x = 1 +* 2;"));
            assert!(d.to_string().contains("cpu.rhai:5:16: error:"), "{d}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The previous version still runs.
    let results = set.evaluate(T0);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].outcome.as_ref().expect("ok")[0].value, 1.0);

    // Fixing the file replaces it.
    write(dir.path(), "cpu.rhai", &rule_src("cpu", "alert(3.0)"));
    assert!(matches!(
        set.apply_change(&path),
        ReloadOutcome::Updated {
            renamed_from: None,
            ..
        }
    ));
    assert_eq!(
        set.evaluate(T0)[0].outcome.as_ref().expect("ok")[0].value,
        3.0
    );
}

#[test]
fn apply_change_adds_updates_renames_and_removes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store();
    let mut set = rule_set(&s);
    assert!(set.load_dir(dir.path()).is_empty());
    assert!(set.rules().is_empty());

    let path = write(dir.path(), "a.rhai", &rule_src("a", "[]"));
    assert!(matches!(set.apply_change(&path), ReloadOutcome::Added(m) if m.name == "a"));
    assert!(matches!(set.apply_change(&path), ReloadOutcome::Unchanged));

    write(dir.path(), "a.rhai", &rule_src("a2", "[]"));
    match set.apply_change(&path) {
        ReloadOutcome::Updated { rule, renamed_from } => {
            assert_eq!(rule.name, "a2");
            assert_eq!(renamed_from.as_deref(), Some("a"));
        }
        other => panic!("expected Updated, got {other:?}"),
    }

    // Not rule files: ignored.
    let swp = write(dir.path(), ".a.rhai.swp", "junk");
    assert!(matches!(set.apply_change(&swp), ReloadOutcome::Unchanged));
    let backup = write(dir.path(), "a.rhai~", "junk");
    assert!(matches!(
        set.apply_change(&backup),
        ReloadOutcome::Unchanged
    ));

    std::fs::remove_file(&path).expect("rm");
    assert!(matches!(set.apply_change(&path), ReloadOutcome::Removed(n) if n == "a2"));
    assert!(set.rules().is_empty());
    assert!(set.evaluate(T0).is_empty());
    assert!(matches!(set.apply_change(&path), ReloadOutcome::Unchanged));

    // A file that never loaded fails without a previous version.
    let bad = write(
        dir.path(),
        "b.rhai",
        "const RULE = #{ name: \"b\" };\nfn evaluate() { [] }\n",
    );
    assert!(matches!(
        set.apply_change(&bad),
        ReloadOutcome::Failed {
            kept_previous: false,
            ..
        }
    ));
}

#[test]
fn load_dir_skips_temp_files_and_refuses_duplicate_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.rhai", &rule_src("same", "[]"));
    write(dir.path(), "b.rhai", &rule_src("same", "[]"));
    write(dir.path(), ".hidden.rhai", "not even rhai (");
    write(dir.path(), "c.rhai~", "not even rhai (");
    write(dir.path(), "notes.txt", "not even rhai (");
    let s = store();
    let mut set = rule_set(&s);
    let diags = set.load_dir(dir.path());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].file.ends_with("b.rhai"));
    assert!(diags[0].message.contains("already used by"), "{}", diags[0]);
    assert_eq!(
        diags[0].position,
        Some(Position {
            line: 1,
            column: 23
        })
    );
    assert_eq!(set.rules().len(), 1);
    assert!(set.rules()[0].file.ends_with("a.rhai"));

    let missing = set.load_dir(&dir.path().join("nope"));
    assert_eq!(missing.len(), 1);
    assert!(missing[0].message.contains("cannot read rules directory"));
}

#[test]
fn metadata_is_read_without_running_code() {
    let src = "// a comment\nconst RULE = #{\n    name: \"disk\",\n    severity: \"critical\",\n    hold: \"2m 30s\",\n    labels: #{ team: \"ops\" },\n    summary: \"disk full\",\n};\nfn evaluate() { [] }\n";
    let s = store();
    let mut set = rule_set(&s);
    assert!(
        set.load_source(Path::new("d.rhai"), PathBuf::from("d.rhai"), src)
            .is_empty()
    );
    let m = &set.rules()[0];
    assert_eq!(m.name, "disk");
    assert_eq!(m.severity, Severity::Critical);
    assert_eq!(m.hold, Duration::from_secs(150));
    assert_eq!(m.labels, labels(&[("team", "ops")]));
    assert_eq!(m.summary, "disk full");
    assert_eq!(m.file, PathBuf::from("d.rhai"));
}

#[test]
fn metadata_errors_are_positioned_with_hints() {
    // Missing name: at the `const`.
    let d = compile_diags("\n  const RULE = #{ severity: \"warning\" };\nfn evaluate() { [] }\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("no `name`"), "{}", d[0]);
    assert_eq!(d[0].position, Some(Position { line: 2, column: 3 }));
    assert!(d[0].hint.is_some());

    // Bad severity: at the value, with a suggestion.
    let d = compile_diags(
        "const RULE = #{\n  name: \"x\",\n  severity: \"warnin\",\n};\nfn evaluate() { [] }\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.contains("unknown severity \"warnin\""),
        "{}",
        d[0]
    );
    assert_eq!(
        d[0].position,
        Some(Position {
            line: 3,
            column: 13
        })
    );
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("\"warning\"")),
        "{:?}",
        d[0].hint
    );

    // Unknown key: at the key, did-you-mean.
    let d = compile_diags(
        "const RULE = #{\n  name: \"x\", severity: \"info\",\n  sumary: \"typo\",\n};\nfn evaluate() { [] }\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("unknown key `sumary`"));
    assert_eq!(d[0].position, Some(Position { line: 3, column: 3 }));
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `summary`?"));

    // `for:` does not even parse; the hint says what to write.
    let d = compile_diags(
        "const RULE = #{\n  name: \"x\", severity: \"info\",\n  for: \"5m\",\n};\nfn evaluate() { [] }\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].position.map(|p| p.line), Some(3), "{}", d[0]);
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("hold: \"5m\"")),
        "{}",
        d[0]
    );

    // A bad hold and a reserved label, reported together.
    let d = compile_diags(
        "const RULE = #{ name: \"x\", severity: \"info\", hold: \"5 parsecs\", labels: #{ severity: \"high\" } };\nfn evaluate() { [] }\n",
    );
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().any(|d| d.message.contains("RULE.hold")));
    assert!(d.iter().any(|d| d.message.contains("label `severity`")));

    // Invalid name, `let RULE`, a computed RULE, no RULE at all, no evaluate().
    let d = compile_diags(
        "const RULE = #{ name: \"high cpu\", severity: \"info\" };\nfn evaluate() { [] }\n",
    );
    assert!(d[0].message.contains("not a valid name"), "{}", d[0]);
    let d =
        compile_diags("let RULE = #{ name: \"x\", severity: \"info\" };\nfn evaluate() { [] }\n");
    assert!(d[0].message.contains("`let`"), "{}", d[0]);
    let d = compile_diags(
        "const RULE = #{ name: `x${1}`, severity: \"info\" };\nfn evaluate() { [] }\n",
    );
    assert!(d[0].message.contains("literal"), "{}", d[0]);
    let d = compile_diags("fn evaluate() { [] }\n");
    assert!(d[0].message.contains("no `const RULE"), "{}", d[0]);
    let d =
        compile_diags("const RULE = #{ name: \"x\", severity: \"info\" };\nfn evalute() { [] }\n");
    assert!(d[0].message.contains("no `fn evaluate()`"), "{}", d[0]);
    assert_eq!(d[0].hint.as_deref(), Some("rename `evalute` to `evaluate`"));
    assert_eq!(
        d[0].position,
        Some(Position { line: 2, column: 1 }),
        "{}",
        d[0]
    );
    let d = compile_diags(
        "const RULE = #{ name: \"x\", severity: \"info\" };\n\n  fn evaluate(x) { [] }\n",
    );
    assert!(d[0].message.contains("takes 1 parameters"), "{}", d[0]);
    assert_eq!(
        d[0].position,
        Some(Position { line: 3, column: 3 }),
        "{}",
        d[0]
    );
}

#[test]
fn eval_and_import_are_refused_at_compile_time() {
    let d = compile_diags(&rule_src("x", "eval(\"40 + 2\")"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].position.map(|p| p.line), Some(4));
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("`eval` is disabled")),
        "{}",
        d[0]
    );

    let d = compile_diags(&format!("import \"other\" as o;\n{}", rule_src("x", "[]")));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].position.map(|p| p.line), Some(1));
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("`import` is disabled")),
        "{}",
        d[0]
    );
}

#[test]
fn undeclared_variables_are_compile_errors_with_a_hint() {
    let d = compile_diags(
        "const LIMIT = 90;\nconst RULE = #{ name: \"x\", severity: \"info\" };\nfn evaluate() {\n  if metric(\"m\") > LIMIT { alert(1) } else { [] }\n}\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].position.map(|p| p.line), Some(4));
    assert!(
        d[0].hint
            .as_deref()
            .is_some_and(|h| h.contains("functions cannot see")),
        "{}",
        d[0]
    );
}

fn cpu_store() -> Arc<SeriesStore> {
    let s = store();
    // 300 points, one per second, ending at T0: value = i % 100 for cpu="total".
    s.ingest((0..300).map(|i| {
        sample(
            "cpu",
            &[("cpu", "total")],
            f64::from(i % 100),
            T0 - (299 - i64::from(i)) * 1000,
        )
    }));
    s.ingest([
        sample("cpu", &[("cpu", "0")], 10.0, T0),
        sample("cpu", &[("cpu", "1")], 20.0, T0),
        sample("mem", &[], 42.5, T0 - 1000),
        sample("stale", &[], 1.0, T0 - 3_600_000),
    ]);
    // A counter that resets: 0, 10, 20, 5 (reset), 15 over 40 s -> increase 10+10+5+10 = 35.
    for (i, v) in [0.0, 10.0, 20.0, 5.0, 15.0].iter().enumerate() {
        s.ingest([sample(
            "reqs_total",
            &[],
            *v,
            T0 - 40_000 + i as i64 * 10_000,
        )]);
    }
    s
}

#[test]
fn metric_reads_the_one_matching_series() {
    let s = cpu_store();
    assert_eq!(eval_value(&s, "metric(\"mem\")").expect("mem"), 42.5);
    assert_eq!(
        eval_value(&s, "metric(\"cpu\", #{ cpu: \"total\" })").expect("total"),
        99.0
    );
    assert_eq!(
        eval_value(&s, "metric(\"cpu\", #{ cpu: 1 })").expect("numbers as labels"),
        20.0
    );

    // Absent and stale (older than the lookback) are both ().
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "if metric(\"nope\") == () && metric(\"stale\") == () { alert(1) } else { [] }",
        ),
        T0,
    )
    .expect("ok");
    assert_eq!(out.len(), 1);

    let err = eval_value(&s, "metric(\"cpu\")").expect_err("ambiguous");
    assert_eq!(err.kind, RuleErrorKind::Runtime);
    assert_eq!(
        err.message,
        "metric(\"cpu\") matches 3 series ({cpu=\"0\"}, {cpu=\"1\"}, {cpu=\"total\"}); add labels to pick one or use series()"
    );
    assert_eq!(
        err.position,
        Some(Position {
            line: 4,
            column: 11
        }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("t.rhai:4:11: error: rule `t`: metric("),
        "{err}"
    );
}

#[test]
fn series_label_values_and_now_ms() {
    let s = cpu_store();
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "let out = []; for x in series(\"cpu\") { out.push(alert(x.value, x.labels)); } out",
        ),
        T0,
    )
    .expect("ok");
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].labels, labels(&[("cpu", "0")]));
    assert_eq!(out[0].value, 10.0);
    assert_eq!(out[2].labels, labels(&[("cpu", "total")]));

    let n = eval_value(&s, "series(\"cpu\", #{ cpu: \"1\" }).len()").expect("filtered");
    assert_eq!(n, 1.0);
    let n = eval_value(&s, "series(\"nope\").len()").expect("empty");
    assert_eq!(n, 0.0);

    let out = eval_src(&s, &rule_src("t", "alert(label_values(\"cpu\", \"cpu\").len(), #{ l: label_values(\"cpu\", \"cpu\")[2] })"), T0).expect("ok");
    assert_eq!(out[0].value, 3.0);
    assert_eq!(out[0].labels, labels(&[("l", "total")]));

    // now_ms() is the evaluation time, not the wall clock.
    assert_eq!(eval_value(&s, "now_ms()").expect("now"), T0 as f64);
}

#[test]
fn window_aggregates() {
    let s = cpu_store();
    let total = "\"cpu\", #{ cpu: \"total\" }";
    // Last 60 s: i in 239..=299 -> values 39..=99 (61 points, inclusive window start).
    let avg = eval_value(&s, &format!("avg_over({total}, \"1m\")")).expect("avg");
    assert!((avg - 69.0).abs() < 1e-9, "{avg}");
    assert_eq!(
        eval_value(&s, &format!("min_over({total}, 60)")).expect("min"),
        39.0
    );
    assert_eq!(
        eval_value(&s, &format!("max_over({total}, 60.0)")).expect("max"),
        99.0
    );
    // p95 of 39..=99 with linear interpolation: 39 + 0.95 * 60 = 96.
    let p95 = eval_value(&s, &format!("p95_over({total}, \"1m\")")).expect("p95");
    assert!((p95 - 96.0).abs() < 1e-9, "{p95}");
    // Evaluated at an earlier time, the window moves with it.
    let out = eval_src(
        &s,
        &rule_src("t", &format!("alert(max_over({total}, \"10s\"))")),
        T0 - 100_000,
    )
    .expect("past");
    assert_eq!(out[0].value, 99.0, "points i = 189..=199 hold 89..=99");

    // Counter with a reset: 35 over 40 s.
    let rate = eval_value(&s, "rate(\"reqs_total\", \"1m\")").expect("rate");
    assert!((rate - 35.0 / 40.0).abs() < 1e-9, "{rate}");

    // No points: (), which compares false.
    let out = eval_src(&s, &rule_src("t", "if avg_over(\"nope\", \"5m\") > 1 || rate(\"mem\", \"5m\") > 0 { alert(1) } else { [] }"), T0).expect("ok");
    assert!(out.is_empty());

    // Same single-series rule as metric(); bad windows are errors.
    let err = eval_value(&s, "avg_over(\"cpu\", \"1m\")").expect_err("ambiguous");
    assert!(
        err.message
            .starts_with("avg_over(\"cpu\") matches 3 series"),
        "{err}"
    );
    let err = eval_value(&s, &format!("avg_over({total}, \"5 parsecs\")")).expect_err("bad window");
    assert!(
        err.message
            .contains("window \"5 parsecs\" is not a duration"),
        "{err}"
    );
    let err = eval_value(&s, "avg_over(\"mem\", #{})").expect_err("forgot window");
    assert!(err.message.contains("window must be a duration"), "{err}");
}

/// A store holding three analyzer events: two `level_shift` (db1 at T0 - 120 s, db2 at
/// T0 - 30 s) from `shift`, one `spike` from `spikes`.
fn event_store() -> Arc<SeriesStore> {
    let s = store();
    let event = |kind: &str, host: &str, ago_s: i64, severity: Severity| telltale_model::Event {
        source: "shift".into(),
        kind: kind.into(),
        severity,
        message: format!("{kind} on {host}"),
        labels: labels(&[("host", host)]),
        timestamp_ms: T0 - ago_s * 1000,
    };
    let shift = s.writer(
        "analyzer:shift",
        telltale_store::SourceLimits::UNBOUNDED,
        None,
    );
    shift.record_events(vec![
        // Reported out of order: reads come back oldest first.
        event("level_shift", "db2", 30, Severity::Critical),
        event("level_shift", "db1", 120, Severity::Warning),
        // In the future of the evaluation time: outside every window.
        event("level_shift", "db1", -5, Severity::Info),
    ]);
    let spikes = s.writer(
        "analyzer:spikes",
        telltale_store::SourceLimits::UNBOUNDED,
        None,
    );
    spikes.record_events(vec![event("spike", "db1", 10, Severity::Info)]);
    s
}

#[test]
fn events_returns_the_events_of_a_kind_in_the_window_oldest_first() {
    let s = event_store();
    // Both level shifts are within 5 minutes; only db2's within 1 minute.
    assert_eq!(
        eval_value(&s, "events(\"level_shift\", \"5m\").len()").unwrap(),
        2.0
    );
    assert_eq!(
        eval_value(&s, "events(\"level_shift\", 60).len()").unwrap(),
        1.0
    );
    // The window's start is inclusive: db1's shift is exactly 120 s old.
    assert_eq!(
        eval_value(&s, "events(\"level_shift\", 120).len()").unwrap(),
        2.0
    );
    assert_eq!(
        eval_value(&s, "events(\"level_shift\", 119.9).len()").unwrap(),
        1.0
    );
    // Labels select by subset, as for series.
    assert_eq!(
        eval_value(
            &s,
            "events(\"level_shift\", #{ host: \"db1\" }, \"5m\").len()"
        )
        .unwrap(),
        1.0
    );
    assert_eq!(
        eval_value(&s, "events(\"nope\", \"1h\").len()").unwrap(),
        0.0
    );
    // Every field of the oldest: db1's, 120 s before T0.
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "let e = events(\"level_shift\", \"5m\")[0];
             alert(e.time, #{ kind: e.kind, severity: e.severity, source: e.source, host: e.labels.host }, e.message)",
        ),
        T0,
    )
    .expect("ok");
    assert_eq!(out[0].value, (T0 - 120_000) as f64);
    assert_eq!(
        out[0].labels,
        labels(&[
            ("host", "db1"),
            ("kind", "level_shift"),
            ("severity", "warning"),
            ("source", "shift"),
        ])
    );
    assert_eq!(out[0].summary.as_deref(), Some("level_shift on db1"));
    // Strings are strings to Rhai (comparable with literals).
    let n = eval_value(
        &s,
        "events(\"level_shift\", \"5m\").filter(|e| e.severity == \"critical\").len()",
    )
    .unwrap();
    assert_eq!(n, 1.0);
    // The README's example.
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "let shifts = events(\"level_shift\", #{ host: \"db1\" }, \"10m\");
             if shifts.len() > 0 {
                 let newest = shifts[shifts.len() - 1];
                 alert(shifts.len(), #{}, newest.message)
             } else { [] }",
        ),
        T0,
    )
    .expect("readme");
    assert_eq!(out[0].value, 1.0);
    // A window is required and checked like the others'.
    let err = eval_value(&s, "events(\"level_shift\", \"soon\").len()").expect_err("bad window");
    assert!(
        err.message
            .contains("events(): window \"soon\" is not a duration"),
        "{err}"
    );
    let err = eval_value(&s, "events(\"level_shift\", #{ host: [] }, \"1m\").len()")
        .expect_err("bad labels");
    assert!(
        err.message
            .contains("events(): label `host` must be a string"),
        "{err}"
    );

    // Read on every evaluation, not folded by the optimiser when the rule is compiled.
    let mut set = rule_set(&s);
    let src = rule_src("t", "alert(events(\"late\", \"1h\").len())");
    assert!(
        set.load_source(Path::new("t.rhai"), PathBuf::from("t.rhai"), &src)
            .is_empty()
    );
    assert_eq!(
        set.evaluate(T0)[0].outcome.as_ref().expect("ok")[0].value,
        0.0
    );
    s.writer(
        "analyzer:late",
        telltale_store::SourceLimits::UNBOUNDED,
        None,
    )
    .record_events(vec![telltale_model::Event {
        source: "late".into(),
        kind: "late".into(),
        severity: Severity::Info,
        message: String::new(),
        labels: Labels::new(),
        timestamp_ms: T0,
    }]);
    assert_eq!(
        set.evaluate(T0)[0].outcome.as_ref().expect("ok")[0].value,
        1.0
    );
}

#[test]
fn absent_data_compares_false() {
    let s = store();
    for cond in [
        "metric(\"x\") > 90",
        "metric(\"x\") >= 90",
        "metric(\"x\") < 90",
        "metric(\"x\") <= 90.5",
        "90 < metric(\"x\")",
        "1.5 >= metric(\"x\")",
        "metric(\"x\") > metric(\"y\")",
    ] {
        let out = eval_src(
            &s,
            &rule_src("t", &format!("if {cond} {{ alert(1) }} else {{ [] }}")),
            T0,
        )
        .unwrap_or_else(|e| panic!("{cond}: {e}"));
        assert!(out.is_empty(), "{cond} should be false");
    }
    // Arithmetic on absent data is still an error (it cannot mean anything).
    let err = eval_value(&s, "metric(\"x\") * 2").expect_err("unit arithmetic");
    assert_eq!(err.kind, RuleErrorKind::Runtime);
}

#[test]
fn return_values() {
    let s = store();
    for (body, n) in [
        ("()", 0),
        ("false", 0),
        ("[]", 0),
        ("#{ value: 1 }", 1),
        ("#{ value: 1.5, labels: #{ a: \"b\" }, summary: \"s\" }", 1),
        ("[alert(1), alert(2, #{ x: \"y\" }, \"two\")]", 2),
    ] {
        let out = eval_src(&s, &rule_src("t", body), T0).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(out.len(), n, "{body}");
    }
    let out = eval_src(&s, &rule_src("t", "alert(2, #{ x: \"y\" }, \"two\")"), T0).expect("ok");
    assert_eq!(
        out[0],
        AlertCandidate {
            value: 2.0,
            labels: labels(&[("x", "y")]),
            summary: Some("two".into())
        }
    );
    for (body, expect) in [
        ("\"firing\"", "returned string"),
        ("true", "returned true"),
        ("[1]", "item 0 is i64"),
        ("#{ value: 1, lables: #{} }", "did you mean `labels`?"),
        ("#{ summary: \"s\" }", "no `value`"),
    ] {
        let err = eval_src(&s, &rule_src("t", body), T0).expect_err(body);
        assert_eq!(err.kind, RuleErrorKind::BadReturn, "{body}");
        assert!(err.message.contains(expect), "{body}: {err}");
        // No return statement to point at: the position is `fn evaluate`.
        assert_eq!(
            err.position,
            Some(Position { line: 3, column: 1 }),
            "{body}"
        );
        assert!(
            err.to_string()
                .starts_with("t.rhai:3:1: error: rule `t`: evaluate() returned"),
            "{err}"
        );
    }
    let err =
        eval_src(&s, &rule_src("t", "alert(metric(\"absent\"))"), T0).expect_err("unit value");
    assert!(err.message.contains("no data"), "{err}");
}

#[test]
fn runaway_rule_is_stopped_by_the_operation_limit_and_others_still_run() {
    let s = store();
    let cfg = RulesConfig {
        max_operations: 100_000,
        ..RulesConfig::default()
    };
    let mut set = RuleSet::new(s.clone(), &cfg);
    assert!(
        set.load_source(
            Path::new("a_loop.rhai"),
            PathBuf::from("a_loop.rhai"),
            &rule_src("spin", "loop { }")
        )
        .is_empty()
    );
    assert!(
        set.load_source(
            Path::new("b_ok.rhai"),
            PathBuf::from("b_ok.rhai"),
            &rule_src("ok", "alert(7)")
        )
        .is_empty()
    );
    assert!(set.load_source(Path::new("c_rec.rhai"), PathBuf::from("c_rec.rhai"), "const RULE = #{ name: \"rec\", severity: \"info\" };\nfn f(n) { f(n + 1) }\nfn evaluate() { f(0) }\n").is_empty());
    let results = set.evaluate(T0);
    assert_eq!(results.len(), 3);
    let spin = results[0].outcome.as_ref().expect_err("stopped");
    assert_eq!(spin.kind, RuleErrorKind::OperationLimit);
    assert_eq!(spin.file, PathBuf::from("a_loop.rhai"));
    assert!(
        spin.to_string().starts_with("a_loop.rhai:4:5: error:"),
        "{spin}"
    );
    assert!(spin.message.contains("100000 operations"), "{spin}");
    assert_eq!(results[1].outcome.as_ref().expect("ok")[0].value, 7.0);
    let rec = results[2].outcome.as_ref().expect_err("recursion");
    assert_eq!(rec.kind, RuleErrorKind::ResourceLimit, "{rec}");
    assert!(rec.message.contains("nested function calls"), "{rec}");
    assert_eq!(
        rec.position,
        Some(Position {
            line: 2,
            column: 11
        }),
        "{rec}"
    );
}

#[test]
fn runaway_rule_is_stopped_by_the_deadline() {
    let s = store();
    let cfg = RulesConfig {
        max_operations: u64::MAX / 2,
        timeout: HumanDuration(Duration::from_millis(50)),
        ..RulesConfig::default()
    };
    let mut set = RuleSet::new(s.clone(), &cfg);
    assert!(
        set.load_source(
            Path::new("a.rhai"),
            PathBuf::from("a.rhai"),
            &rule_src("spin", "let i = 0; loop { i += 1; }")
        )
        .is_empty()
    );
    assert!(
        set.load_source(
            Path::new("b.rhai"),
            PathBuf::from("b.rhai"),
            &rule_src("ok", "alert(1)")
        )
        .is_empty()
    );
    let results = set.evaluate(T0);
    let err = results[0].outcome.as_ref().expect_err("deadline");
    assert_eq!(err.kind, RuleErrorKind::Deadline, "{err}");
    assert!(err.message.contains("50ms"), "{err}");
    // Where it was when time ran out: somewhere in the loop, all of which is on line 4.
    assert_eq!(err.position.map(|p| p.line), Some(4), "{err}");
    assert!(
        err.to_string().contains("let i = 0; loop { i += 1; }"),
        "{err}"
    );
    assert!(results[0].elapsed >= Duration::from_millis(50));
    assert!(
        results[0].elapsed < Duration::from_secs(2),
        "{:?}",
        results[0].elapsed
    );
    assert!(results[1].outcome.is_ok());
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PRINT_MARKER: &str = "marker-7f3a91";

/// Runs a rule that prints, with logs captured; returns the log text.
fn run_printing_rule() -> String {
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let out = eval_src(
            &store(),
            &rule_src(
                "noisy",
                &format!("print(\"{PRINT_MARKER}\"); debug(\"dbg-{PRINT_MARKER}\"); []"),
            ),
            T0,
        );
        assert!(out.is_ok());
    });
    buf.0
        .lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[test]
fn print_and_debug_go_to_the_log_with_the_rule_file() {
    let log = run_printing_rule();
    assert!(log.contains(&format!("print: {PRINT_MARKER}")), "{log}");
    assert!(log.contains("rule_file=t.rhai"), "{log}");
    assert!(
        log.contains(&format!("debug: \"dbg-{PRINT_MARKER}\"")),
        "{log}"
    );

    // And nothing reaches the process's real stdout: run this test's body in a child
    // process with output capture off and look at what it printed.
    if std::env::var_os("TELLTALE_PRINT_CHILD").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "tests::print_and_debug_go_to_the_log_with_the_rule_file",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TELLTALE_PRINT_CHILD", "1")
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
    assert!(
        !stdout.contains(PRINT_MARKER),
        "print() reached stdout: {stdout}"
    );
}

#[test]
fn embedded_defaults_load_and_fire_on_realistic_data() {
    let s = store();
    let mut set = rule_set(&s);
    let diags = set.load_embedded_defaults();
    assert!(
        diags.is_empty(),
        "{}",
        telltale_diagnostics::Diagnostics(diags)
    );
    let names: Vec<String> = set.rules().iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        names,
        [
            "disk_full",
            "high_cpu",
            "high_load",
            "memory_critical",
            "memory_high"
        ]
    );
    assert!(set.rules().iter().all(|m| m.file.starts_with(EMBEDDED_DIR)));

    // No data at all: nothing fires and nothing fails.
    for r in set.evaluate(T0) {
        assert_eq!(r.outcome.as_ref().map(Vec::len), Ok(0), "{}", r.meta.name);
    }

    // A busy, full, overloaded 4-core machine.
    for i in 0..300i64 {
        let ts = T0 - (299 - i) * 1000;
        s.ingest([
            sample("system_cpu_usage_percent", &[("cpu", "total")], 95.0, ts),
            sample("system_cpu_usage_percent", &[("cpu", "0")], 95.0, ts),
            sample("system_cpu_usage_percent", &[("cpu", "1")], 95.0, ts),
            sample("system_cpu_usage_percent", &[("cpu", "2")], 95.0, ts),
            sample("system_cpu_usage_percent", &[("cpu", "3")], 95.0, ts),
            sample("system_memory_used_percent", &[], 98.0, ts),
            sample("system_load_average_5m", &[], 12.0, ts),
            sample("system_disk_used_percent", &[("mount", "/")], 95.0, ts),
            sample("system_disk_used_percent", &[("mount", "/boot")], 20.0, ts),
            sample("system_disk_used_percent", &[("mount", "/data")], 91.0, ts),
        ]);
    }
    let results = set.evaluate(T0);
    let by_name = |n: &str| {
        results
            .iter()
            .find(|r| r.meta.name == n)
            .and_then(|r| r.outcome.clone().ok())
            .unwrap_or_else(|| panic!("{n} failed: {results:?}"))
    };
    assert_eq!(by_name("high_cpu")[0].value, 95.0);
    assert_eq!(by_name("memory_high")[0].value, 98.0);
    assert_eq!(by_name("memory_critical")[0].value, 98.0);
    assert_eq!(by_name("high_load")[0].value, 3.0, "12 / 4 cores");
    let disks = by_name("disk_full");
    let mounts: Vec<&str> = disks.iter().map(|d| d.labels["mount"].as_str()).collect();
    assert_eq!(mounts, ["/", "/data"]);
    assert_eq!(disks[0].summary.as_deref(), Some("/ is 95.0% full"));
}

#[test]
fn load_dir_reports_every_broken_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ok.rhai", &rule_src("ok", "[]"));
    write(
        dir.path(),
        "bad1.rhai",
        "const RULE = #{ name: \"b1\", severity: \"info\" };\nfn evaluate() { let = 1; }\n",
    );
    write(
        dir.path(),
        "bad2.rhai",
        "const RULE = #{ name: \"b2\" };\nfn evaluate() { [] }\n",
    );
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let diags = RuleSet::new(store, &RulesConfig::default()).load_dir(dir.path());
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert!(diags[0].file.ends_with("bad1.rhai"));
    assert_eq!(diags[0].position.map(|p| p.line), Some(2));
    assert!(diags[1].file.ends_with("bad2.rhai"));
    assert!(diags[1].message.contains("no `severity`"));
}

#[test]
fn optimizer_does_not_fold_store_reads() {
    // With OptimizationLevel::Full a non-volatile metric("m") would be computed once at
    // compile time (when the store is empty) and stay () forever.
    let s = store();
    let mut set = rule_set(&s);
    assert!(
        set.load_source(
            Path::new("t.rhai"),
            PathBuf::from("t.rhai"),
            &rule_src(
                "t",
                "if metric(\"m\") > 1 { alert(metric(\"m\")) } else { [] }"
            )
        )
        .is_empty()
    );
    assert!(set.evaluate(T0)[0].outcome.as_ref().expect("ok").is_empty());
    s.ingest([sample("m", &[], 5.0, T0)]);
    assert_eq!(
        set.evaluate(T0)[0].outcome.as_ref().expect("ok")[0].value,
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reports_writes_atomic_renames_and_deletes() {
    use tokio::time::timeout;

    let dir = tempfile::tempdir().expect("tempdir");
    let (_watcher, mut rx) = RuleWatcher::start(dir.path()).expect("watch");
    let s = store();
    let mut set = rule_set(&s);

    // Waits (at most 5 s) until `name` is reported; returns every path seen meanwhile.
    async fn wait_for(rx: &mut tokio::sync::mpsc::Receiver<PathBuf>, name: &str) -> Vec<PathBuf> {
        let mut seen = Vec::new();
        let found = timeout(Duration::from_secs(5), async {
            while let Some(p) = rx.recv().await {
                let hit = p.file_name().is_some_and(|n| n == name);
                seen.push(p);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            found,
            Ok(true),
            "{name} not reported within 5 s; saw {seen:?}"
        );
        seen
    }

    // 1. A new file.
    write(dir.path(), "notes.txt", "not a rule");
    write(dir.path(), "cpu.rhai", &rule_src("cpu", "alert(1)"));
    let seen = wait_for(&mut rx, "cpu.rhai").await;
    assert!(seen.iter().all(|p| is_rule_file(p)), "{seen:?}");
    let path = seen.last().cloned().expect("path");
    assert!(matches!(set.apply_change(&path), ReloadOutcome::Added(_)));

    // 2. An editor-style atomic save: write a temp file, rename it over the rule.
    let tmp = write(dir.path(), ".cpu.rhai.tmp", &rule_src("cpu", "alert(2)"));
    std::fs::rename(&tmp, dir.path().join("cpu.rhai")).expect("rename");
    let seen = wait_for(&mut rx, "cpu.rhai").await;
    let path = seen.last().cloned().expect("path");
    assert!(matches!(
        set.apply_change(&path),
        ReloadOutcome::Updated { .. }
    ));
    assert_eq!(
        set.evaluate(T0)[0].outcome.as_ref().expect("ok")[0].value,
        2.0
    );

    // 3. Delete.
    std::fs::remove_file(dir.path().join("cpu.rhai")).expect("rm");
    let seen = wait_for(&mut rx, "cpu.rhai").await;
    let path = seen.last().cloned().expect("path");
    assert!(matches!(set.apply_change(&path), ReloadOutcome::Removed(n) if n == "cpu"));
}

#[test]
fn watcher_refuses_a_missing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = RuleWatcher::start(&dir.path().join("nope")).expect_err("missing");
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn quantile_and_rate_helpers() {
    use telltale_model::Point;
    assert_eq!(functions::quantile(vec![], 0.95), None);
    assert_eq!(functions::quantile(vec![5.0], 0.95), Some(5.0));
    assert_eq!(
        functions::quantile(vec![1.0, 2.0, 3.0, 4.0, 5.0], 0.5),
        Some(3.0)
    );
    let p = |t: i64, v: f64| Point {
        timestamp_ms: t,
        value: v,
    };
    assert_eq!(functions::counter_rate(&[p(0, 1.0)]), None);
    assert_eq!(functions::counter_rate(&[p(0, 1.0), p(0, 2.0)]), None);
    assert_eq!(
        functions::counter_rate(&[p(0, 10.0), p(2000, 14.0)]),
        Some(2.0)
    );
    assert_eq!(
        functions::counter_rate(&[p(0, 10.0), p(1000, 3.0)]),
        Some(3.0)
    );
}

#[test]
fn readme_examples_run() {
    let s = cpu_store();
    let cores = eval_value(
        &s,
        "label_values(\"cpu\", \"cpu\").filter(|c| c != \"total\").len()",
    )
    .expect("cores");
    assert_eq!(cores, 2.0);
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "let v = metric(\"absent\"); if v == () { return []; } alert(v)",
        ),
        T0,
    )
    .expect("early return");
    assert!(out.is_empty());
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "let m = #{ a: 1 }; if \"b\" in m { alert(1) } else { alert(metric(\"mem\") != (), #{ core: 0 }, `x ${m.a}`) }",
        ),
        T0,
    );
    // `!=` on () is true, but alert(true) is not a number: an error naming alert().
    let err = out.expect_err("bool value");
    assert!(
        err.message.contains("alert(): value must be a number"),
        "{err}"
    );
    let err = eval_src(&s, &rule_src("t", "let m = #{ a: 1 }; alert(m.b)"), T0)
        .expect_err("missing property");
    assert_eq!(err.kind, RuleErrorKind::Runtime, "{err}");
}

#[test]
fn rule_set_and_watcher_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<RuleSet>();
    send_sync::<RuleResult>();
    send_sync::<ReloadOutcome>();
    send::<RuleWatcher>();
}

/// A rule file whose `evaluate()` is `body` (and whose other functions are `helpers`), with
/// every statement on its own line so that positions can be asserted.
fn hostile_src(name: &str, helpers: &str, body: &str) -> String {
    format!(
        "const RULE = #{{ name: \"{name}\", severity: \"warning\" }};\n\n{helpers}fn evaluate() {{\n{body}}}\n"
    )
}

/// A hostile rule and what its error must say.
struct Hostile {
    name: &'static str,
    /// Functions declared before `evaluate()`.
    helpers: &'static str,
    /// The body of `evaluate()`.
    body: &'static str,
    /// The position of the offending statement.
    line: usize,
    column: usize,
    kind: RuleErrorKind,
    /// A part of the message.
    message: &'static str,
    /// What the message must not say ("" for nothing).
    not: &'static str,
}

#[test]
fn hostile_rules_name_file_line_column_and_the_value_that_grew() {
    let cases = [
        Hostile {
            name: "endless_loop",
            helpers: "",
            body: "    let i = 0;\n    loop {\n        i += 1;\n    }\n",
            line: 6,
            column: 9,
            kind: RuleErrorKind::OperationLimit,
            message: "stopped after 1000000 operations",
            not: "",
        },
        Hostile {
            name: "deep_recursion",
            helpers: "fn deeper(n) {\n    deeper(n + 1)\n}\n\n",
            body: "    deeper(0)\n",
            line: 4,
            column: 5,
            kind: RuleErrorKind::ResourceLimit,
            message: "more than 32 nested function calls: endless recursion? (in deeper() ×32)",
            not: "",
        },
        Hostile {
            name: "long_string",
            helpers: "",
            body: "    let s = \"x\";\n    loop {\n        s += s;\n    }\n",
            line: 6,
            column: 9,
            kind: RuleErrorKind::ResourceLimit,
            message: "string too large: longer than 65536 bytes",
            not: "",
        },
        Hostile {
            name: "long_array",
            helpers: "",
            body: "    let a = [1];\n    loop {\n        a += a;\n    }\n",
            line: 6,
            column: 9,
            kind: RuleErrorKind::ResourceLimit,
            message: "array too large: more than 100000 items",
            not: "",
        },
        // The reported bug: Rhai checks the strings of an array against the string limit
        // first and calls it "Length of string"; the array is what grew.
        Hostile {
            name: "array_of_strings",
            helpers: "",
            body: "    let a = [];\n    loop {\n        a.push(\"0123456789abcdef0123456789abcdef\");\n    }\n",
            line: 6,
            column: 9,
            kind: RuleErrorKind::ResourceLimit,
            message: "array too large: the strings in it add up to more than 65536 bytes",
            not: "string too large",
        },
        Hostile {
            name: "big_map",
            helpers: "",
            body: "    let m = #{ a: 1 };\n    loop {\n        m = #{ a: m, b: m };\n    }\n",
            line: 6,
            column: 9,
            kind: RuleErrorKind::ResourceLimit,
            message: "map too large: more than 10000 entries",
            not: "",
        },
        // In a helper: the statement in the helper, and the helper named.
        Hostile {
            name: "grows_in_helper",
            helpers: "fn grow(a) {\n    a + a\n}\n\n",
            body: "    let a = [1];\n    loop {\n        a = grow(a);\n    }\n",
            line: 4,
            column: 5,
            kind: RuleErrorKind::ResourceLimit,
            message: "array too large: more than 100000 items (in grow())",
            not: "",
        },
    ];
    let s = store();
    for case in cases {
        let Hostile {
            name, line, column, ..
        } = case;
        let src = hostile_src(name, case.helpers, case.body);
        let mut set = rule_set(&s);
        let file = format!("{name}.rhai");
        let diags = set.load_source(Path::new(&file), PathBuf::from(&file), &src);
        assert!(diags.is_empty(), "{name}: {diags:?}");
        let err = set
            .evaluate(T0)
            .remove(0)
            .outcome
            .expect_err("a hostile rule fails");
        assert_eq!(err.kind, case.kind, "{name}: {err}");
        assert_eq!(
            err.position,
            Some(Position { line, column }),
            "{name}: {err}"
        );
        assert!(err.message.contains(case.message), "{name}: {err}");
        if !case.not.is_empty() {
            assert!(!err.message.contains(case.not), "{name}: {err}");
        }
        let text = err.to_string();
        let statement = src.lines().nth(line - 1).unwrap_or_default();
        assert!(
            text.starts_with(&format!("{file}:{line}:{column}: error: rule `{name}`: ")),
            "{text}"
        );
        assert!(text.contains(&format!("{line} | {statement}\n")), "{text}");
        assert!(text.contains("\n  = hint: "), "{text}");
    }
}

#[test]
fn too_deep_an_expression_is_a_positioned_compile_error() {
    let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
    let d = compile_diags(&rule_src("deep", &format!("let x = {deep};\n    []")));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].position.map(|p| p.line), Some(4), "{}", d[0]);
    assert!(
        d[0].message
            .contains("expression nested too deeply (the limit is 32 levels inside a function"),
        "{}",
        d[0]
    );
    assert!(d[0].hint.is_some(), "{}", d[0]);
}

/// Runs `f` with logs captured; returns the log text.
fn capture_logs(f: impl FnOnce()) -> String {
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    buf.0
        .lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[test]
fn a_failing_rule_is_logged_once_and_its_recovery_once() {
    let s = store();
    let mut set = rule_set(&s);
    let src = rule_src("flaky", "alert(metric(\"flaky_input\"))");
    assert!(
        set.load_source(Path::new("flaky.rhai"), PathBuf::from("flaky.rhai"), &src)
            .is_empty()
    );
    let log = capture_logs(|| {
        for i in 0..5 {
            assert!(set.evaluate(T0 + i * 1000)[0].outcome.is_err());
        }
        s.ingest([sample("flaky_input", &[], 1.0, T0 + 5000)]);
        assert!(set.evaluate(T0 + 5000)[0].outcome.is_ok());
        assert!(set.evaluate(T0 + 6000)[0].outcome.is_ok());
    });
    assert_eq!(log.matches("value is ()").count(), 1, "{log}");
    assert_eq!(log.matches("WARN").count(), 1, "{log}");
    assert!(log.contains("flaky.rhai:4:5: error: rule `flaky`"), "{log}");
    assert_eq!(
        log.matches("rule `flaky` recovered after 5 failed evaluation(s)")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn locating_a_limit_error_does_not_repeat_the_rules_output() {
    let log = capture_logs(|| {
        let err = eval_src(
            &store(),
            &rule_src(
                "loud",
                &format!("print(\"{PRINT_MARKER}\");\n    loop {{ }}"),
            ),
            T0,
        )
        .expect_err("stopped");
        assert_eq!(err.position, Some(Position { line: 5, column: 5 }), "{err}");
    });
    assert_eq!(log.matches(PRINT_MARKER).count(), 1, "{log}");
}

#[test]
fn a_seven_day_window_reads_the_hourly_rollups_of_the_durable_store() {
    use telltale_store::disk::{Database, Disk, DiskConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Database::open(&dir.path().join("t.db")).expect("open"));
    let s = store();
    let handle = Disk::start(db, DiskConfig::default(), &s).expect("start");
    let now = telltale_model::now_ms();
    let step = 600_000;
    let first = now - 8 * 86_400_000;
    let samples: Vec<Sample> = (0..)
        .map(|k| first + k * step)
        .take_while(|&t| t <= now)
        .map(|t| Sample::new("load", &[], ((t / step) % 17) as f64, t))
        .collect();
    let last_t = samples.last().map(|s| s.timestamp_ms).unwrap_or(0);
    s.ingest(samples.clone());
    // Stopping flushes and checkpoints; reads go on through the heads it leaves.
    handle.stop();
    // The hour buckets starting inside the window, holding every sample but the newest
    // (whose minute is still open).
    let from_hour = (now - 7 * 86_400_000 + 3_599_999).div_euclid(3_600_000) * 3_600_000;
    let kept: Vec<f64> = samples
        .iter()
        .filter(|s| s.timestamp_ms >= from_hour && s.timestamp_ms < last_t)
        .map(|s| s.value)
        .collect();
    let want = kept.iter().sum::<f64>() / kept.len() as f64;
    let got = eval_src(
        &s,
        &rule_src("t", "alert(avg_over(\"load\", #{}, \"7d\"))"),
        now,
    )
    .expect("evaluates")[0]
        .value;
    assert!(
        (got - want).abs() < 1e-9,
        "avg_over 7d = {got}, want {want}"
    );
    let max = eval_src(&s, &rule_src("t", "alert(max_over(\"load\", \"7d\"))"), now)
        .expect("evaluates")[0]
        .value;
    assert_eq!(max, 16.0);
}

#[test]
fn defaults_load_beside_a_directory_whose_rule_replaces_one_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `memory_high` is the name of a default rule: this file replaces it. `plotter` is new.
    let mine = write(
        dir.path(),
        "my_memory.rhai",
        &rule_src("memory_high", "alert(1)"),
    );
    write(dir.path(), "plotter.rhai", &rule_src("plotter", "[]"));
    let s = store();
    let mut set = rule_set(&s);
    assert!(set.load_dir(dir.path()).is_empty());
    let diags = set.load_defaults_beside_loaded();
    assert!(
        diags.is_empty(),
        "{}",
        telltale_diagnostics::Diagnostics(diags)
    );
    let mut names: Vec<(String, bool)> = set
        .rules()
        .iter()
        .map(|m| (m.name.clone(), m.file.starts_with(EMBEDDED_DIR)))
        .collect();
    names.sort();
    // The five defaults less the replaced one, plus the directory's two.
    assert_eq!(
        names,
        [
            ("disk_full".to_string(), true),
            ("high_cpu".to_string(), true),
            ("high_load".to_string(), true),
            ("memory_critical".to_string(), true),
            ("memory_high".to_string(), false),
            ("plotter".to_string(), false),
        ]
    );
    let memory_high = set
        .rules()
        .into_iter()
        .find(|m| m.name == "memory_high")
        .expect("loaded");
    assert_eq!(memory_high.file.file_name(), mine.file_name());
    assert_eq!(set.replaced_defaults().len(), 1);
    assert_eq!(set.replaced_defaults()[0].0, "memory_high");
    assert_eq!(set.replaced_defaults()[0].1.file_name(), mine.file_name());
    // The replacement is the one that runs: `alert(1)` fires with no data at all, the
    // default would not.
    let fired: Vec<String> = set
        .evaluate(T0)
        .into_iter()
        .filter(|r| r.outcome.as_ref().is_ok_and(|a| !a.is_empty()))
        .map(|r| r.meta.name.clone())
        .collect();
    assert_eq!(fired, ["memory_high"]);
}

#[test]
fn alert_labels_are_checked_at_the_call_and_converted_once_at_the_return() {
    let s = store();
    let out = eval_src(
        &s,
        &rule_src(
            "t",
            "alert(1, #{ cpu: 0, up: true, host: \"db1\", f: 1.5 })",
        ),
        T0,
    )
    .expect("valid labels");
    assert_eq!(
        out[0].labels,
        [("cpu", "0"), ("f", "1.5"), ("host", "db1"), ("up", "true")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Labels>()
    );
    let err = eval_src(
        &s,
        &rule_src("t", "let a = alert(1, #{ host: [] });\n    []"),
        T0,
    )
    .expect_err("a list is no label value");
    assert!(
        err.message
            .contains("alert(): label `host` must be a string, got array"),
        "{err}"
    );
    // The error points at the alert() call (line 4 of the file), not at the return.
    assert_eq!(err.position.map(|p| p.line), Some(4), "{err}");
}
