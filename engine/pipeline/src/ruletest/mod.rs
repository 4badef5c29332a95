//! Rule unit tests (`telltale test FILE.yaml...`) in `promtool test rules`' file format:
//! input series in the expanding notation ([`notation`]), evaluated from t = 0 at every
//! `evaluation_interval` through the same rules ([`RuleSet`]) and alert state machine
//! ([`AlertManager`]) the engine runs, and the alerts FIRING at each `eval_time` compared
//! with the expected ones. `docs/rule-tests.md` is the operator's guide.
//!
//! A test file is checked whole before anything runs: YAML, notation, rule files and
//! alert names are [`Diagnostic`]s (file:line:column), a file with any is not run
//! ([`FileOutcome::Invalid`]). A test that runs and does not hold is a [`TestFailure`]
//! that says which alert was expected and not firing, or firing and not expected, with its
//! labels and the time.

pub mod notation;
mod series;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use telltale_alerts::{ActiveAlert, AlertManager, AlertState};
use telltale_config::RulesConfig;
use telltale_diagnostics::{Diagnostic, Position, did_you_mean};
use telltale_model::{Labels, TimestampMs, duration_ms, write_labels};
use telltale_rules::{ReloadOutcome, RuleSet};

use notation::Slot;
use series::{InputSeries, TestSeries};

/// promtool's default `evaluation_interval`.
const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// A duration as promtool and the config write them (`30s`, `5m`, `1h30m`), or a number
/// of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like `30s`, `5m` or `1h30m`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|s| Dur(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("a duration cannot be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "`{v}` is not a duration ({e}); write it like `30s`, `5m` or `1h30m`"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A `values` string, expanded.
#[derive(Debug, Clone, Default)]
struct Values(Vec<Slot>);

// Both parse inside the visitor, so that serde_yaml positions an error at the string
// rather than at the mapping around it.
impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Values, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Values;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("values in the expanding notation, like '1+2x10 _ stale'")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Values, E> {
                notation::parse_values(text)
                    .map(Values)
                    .map_err(|e| E::custom(format!("values `{}`: {e}", text.trim())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Values, E> {
                Ok(Values(vec![Slot::Value(v as f64)]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Values, E> {
                Ok(Values(vec![Slot::Value(v as f64)]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Values, E> {
                Ok(Values(vec![Slot::Value(v)]))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `series` selector, parsed.
#[derive(Debug, Clone)]
struct Selector {
    text: String,
    name: String,
    labels: Labels,
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Selector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a series like 'name{label=\"value\"}'")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Selector, E> {
                let (name, labels) = notation::parse_selector(text)
                    .map_err(|e| E::custom(format!("series `{text}`: {e}")))?;
                Ok(Selector {
                    text: text.to_string(),
                    name,
                    labels,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A label value: a string, or a number or boolean written without quotes.
#[derive(Debug, Clone)]
struct LabelValue(String);

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LabelValue, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LabelValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label value (a string)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelValue, E> {
                Ok(LabelValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LabelValue, E> {
                Ok(LabelValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LabelValue, E> {
                Ok(LabelValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LabelValue, E> {
                Ok(LabelValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<LabelValue, E> {
                Ok(LabelValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<Dur>,
    #[serde(default)]
    tests: Vec<TestSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<Dur>,
    #[serde(default)]
    input_series: Vec<InputSpec>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    series: Selector,
    #[serde(default)]
    values: Values,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestSpec {
    eval_time: Dur,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlertSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlertSpec {
    #[serde(default)]
    exp_labels: BTreeMap<String, LabelValue>,
    #[serde(default)]
    exp_annotations: Option<ExpAnnotations>,
}

/// Telltale alerts have one annotation, their summary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAnnotations {
    #[serde(default)]
    summary: Option<String>,
}

/// What running one test file came to.
#[derive(Debug)]
pub enum FileOutcome {
    /// The file could not be used (YAML, notation, rule files, alert names): nothing ran.
    Invalid(Vec<Diagnostic>),
    /// Its tests ran.
    Ran(FileReport),
}

/// The tests of one file that ran.
#[derive(Debug)]
pub struct FileReport {
    /// The test file.
    pub file: PathBuf,
    /// How many tests (`tests[]` entries) it has.
    pub tests: usize,
    /// How many `alert_rule_test` checks ran.
    pub checks: usize,
    /// What did not hold, in test then time order.
    pub failures: Vec<TestFailure>,
}

impl FileReport {
    /// Whether every test passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One thing that did not hold in one test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFailure {
    /// Which test: its `name`, else `tests[i]`.
    pub test: String,
    /// What went wrong.
    pub kind: FailureKind,
}

/// Why a test failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// At `eval_time`, the firing alerts of `alertname` were not the expected ones.
    Alerts {
        /// The check's `eval_time`.
        eval_time: Duration,
        /// The check's alert name.
        alertname: String,
        /// The file of the rule of that name.
        rule_file: PathBuf,
        /// Each difference.
        mismatches: Vec<Mismatch>,
    },
    /// A rule failed to evaluate (first failure of each rule in a test).
    RuleError {
        /// When.
        at: Duration,
        /// The rule's error, as a diagnostic.
        error: String,
    },
}

/// One difference between the expected and the firing alerts.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// Expected but not firing. `pending_since`: it is pending (its hold has not passed).
    Missing {
        /// The expected labels.
        labels: Labels,
        /// The expected summary, when given.
        summary: Option<String>,
        /// When its pending period began, if it is pending.
        pending_since: Option<TimestampMs>,
    },
    /// Firing but not expected.
    Unexpected {
        /// Its labels.
        labels: Labels,
        /// Its value.
        value: f64,
        /// Its summary.
        summary: String,
        /// When it started firing.
        firing_since: TimestampMs,
    },
    /// Firing with the expected labels but another summary.
    OtherAnnotations {
        /// Its labels.
        labels: Labels,
        /// The expected summary.
        expected: String,
        /// The summary it has.
        got: String,
    },
}

/// `{a="1"}`, `{}` for none.
fn show(labels: &Labels) -> String {
    let mut s = String::new();
    let _ = write_labels(&mut s, labels);
    if s.is_empty() { "{}".into() } else { s }
}

/// A time since t = 0 as people write it (`0s`, `5m`, `1h 30m`).
fn show_time(ms: TimestampMs) -> String {
    if ms < 0 {
        return format!("-{}", show_time(-ms));
    }
    let d = Duration::from_millis(ms.unsigned_abs());
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing {
                labels,
                summary,
                pending_since,
            } => {
                write!(f, "expected but not firing: {}", show(labels))?;
                if let Some(s) = summary {
                    write!(f, " summary={s:?}")?;
                }
                if let Some(t) = pending_since {
                    write!(
                        f,
                        " (pending since {}: its hold has not passed)",
                        show_time(*t)
                    )?;
                }
                Ok(())
            }
            Mismatch::Unexpected {
                labels,
                value,
                summary,
                firing_since,
            } => write!(
                f,
                "firing but not expected: {} value={value} summary={summary:?} (firing since {})",
                show(labels),
                show_time(*firing_since)
            ),
            Mismatch::OtherAnnotations {
                labels,
                expected,
                got,
            } => write!(
                f,
                "firing with other annotations: {} summary={got:?}, expected summary={expected:?}",
                show(labels)
            ),
        }
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.passed() {
            return write!(
                f,
                "{file}: ok, {} test(s), {} check(s) passed",
                self.tests, self.checks
            );
        }
        let failed: BTreeSet<&str> = self.failures.iter().map(|t| t.test.as_str()).collect();
        write!(
            f,
            "{file}: FAILED {} of {} test(s)",
            failed.len(),
            self.tests
        )?;
        for t in &self.failures {
            match &t.kind {
                FailureKind::Alerts {
                    eval_time,
                    alertname,
                    rule_file,
                    mismatches,
                } => {
                    write!(
                        f,
                        "\n  test {}: at eval_time {}, alertname {alertname} ({}):",
                        t.test,
                        show_time(duration_ms(*eval_time)),
                        rule_file.display()
                    )?;
                    for m in mismatches {
                        write!(f, "\n    {m}")?;
                    }
                }
                FailureKind::RuleError { at, error } => {
                    write!(
                        f,
                        "\n  test {}: at {} a rule failed:\n    {}",
                        t.test,
                        show_time(duration_ms(*at)),
                        error.replace('\n', "\n    ")
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The first line of `source` holding `needle` after line `after` (1-based), as a
/// position at the needle: where a value read by serde was written.
fn find(source: &str, needle: &str, after: usize) -> Option<Position> {
    source
        .lines()
        .enumerate()
        .skip(after)
        .find_map(|(i, line)| {
            line.find(needle).map(|col| Position {
                line: i + 1,
                column: line[..col].chars().count() + 1,
            })
        })
}

/// A check ready to run: one `alert_rule_test` entry.
struct Check {
    eval_ms: TimestampMs,
    alertname: String,
    expected: Vec<(Labels, Option<String>)>,
}

/// A test ready to run.
struct PreparedTest {
    name: String,
    series: Vec<InputSeries>,
    checks: Vec<Check>,
}

/// A test file, parsed and checked.
struct Prepared {
    file: PathBuf,
    /// The files and directories of `rule_files`, resolved.
    rule_paths: Vec<PathBuf>,
    interval_ms: i64,
    tests: Vec<PreparedTest>,
}

/// Loads the rule files and directories into `rules`; a diagnostic for each problem.
fn load_rules(rules: &mut RuleSet, paths: &[PathBuf]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for path in paths {
        if path.is_dir() {
            diags.extend(rules.load_dir(path));
            continue;
        }
        match rules.apply_change(path) {
            ReloadOutcome::Failed { diagnostics, .. } => diags.extend(diagnostics),
            ReloadOutcome::Added(_) | ReloadOutcome::Updated { .. } => {}
            // The same file named twice: loaded already.
            ReloadOutcome::Unchanged | ReloadOutcome::Removed(_) => {}
        }
    }
    diags
}

/// Reads and checks a test file.
fn prepare(file: &Path) -> Result<Prepared, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        vec![Diagnostic::new(
            file,
            None,
            None,
            format!("cannot read the test file: {e}"),
        )]
    })?;
    let spec: FileSpec = serde_yaml::from_str(&source).map_err(|e| {
        let position = e.location().map(|l| Position {
            line: l.line(),
            column: l.column(),
        });
        let message = e.to_string();
        // serde_yaml appends " at line L column C"; the position says it already.
        let message = match message.find(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        let mut d = Diagnostic::new(file, Some(&source), position, message.clone());
        if message.contains("expected `summary`") {
            d = d.with_hint(
                "Telltale alerts have one annotation, `summary`: other annotation keys do not exist",
            );
        } else if message.contains("unknown field") {
            d = d.with_hint("see docs/rule-tests.md for the keys a test file has");
        }
        vec![d]
    })?;
    let mut diags = Vec::new();
    let at = |needle: &str| find(&source, needle, 0);
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));

    let interval = spec
        .evaluation_interval
        .map_or(DEFAULT_EVALUATION_INTERVAL, |d| d.0);
    if interval.is_zero() {
        diags.push(
            Diagnostic::new(
                file,
                Some(&source),
                at("evaluation_interval"),
                "evaluation_interval must be longer than 0",
            )
            .with_hint("write it like `1m` (the default) or `15s`"),
        );
    }

    // Rule files: relative to the test file; each must exist.
    let mut rule_paths = Vec::new();
    if spec.rule_files.is_empty() {
        diags.push(
            Diagnostic::new(
                file,
                Some(&source),
                at("rule_files"),
                "rule_files names no rule file",
            )
            .with_hint(
                "list the `.rhai` files (or directories of them) to test, relative to this file",
            ),
        );
    }
    for entry in &spec.rule_files {
        let path = base.join(entry);
        let problem = if !path.exists() {
            Some(format!(
                "rule file `{entry}` not found (looked for {})",
                path.display()
            ))
        } else if path.is_file() && path.extension().is_none_or(|e| e != "rhai") {
            Some(format!("`{entry}` is not a `.rhai` rule file"))
        } else {
            None
        };
        match problem {
            Some(message) => diags.push(
                Diagnostic::new(file, Some(&source), at(entry), message)
                    .with_hint("rule_files are relative to the test file's directory"),
            ),
            None => rule_paths.push(path),
        }
    }
    // Compile them once here, so that a broken rule is a bad file rather than a failure
    // in every test.
    let mut names: Vec<String> = Vec::new();
    if diags.is_empty() {
        let mut rules = RuleSet::new(
            Arc::new(TestSeries::new(Vec::new())),
            &RulesConfig::default(),
        );
        diags.extend(load_rules(&mut rules, &rule_paths));
        names = rules.rules().iter().map(|m| m.name.clone()).collect();
        if diags.is_empty() && names.is_empty() {
            diags.push(Diagnostic::new(
                file,
                Some(&source),
                at("rule_files"),
                "rule_files holds no rule (no `.rhai` file in the directories named)",
            ));
        }
    }

    let mut tests = Vec::new();
    // Where the previous lookup was found: later entries are written further down.
    let mut cursor = 0usize;
    for (i, t) in spec.tests.into_iter().enumerate() {
        let name = match &t.name {
            Some(n) => format!("{n:?}"),
            None => format!("tests[{i}]"),
        };
        let step = t.interval.map_or(interval, |d| d.0);
        if step.is_zero() {
            diags.push(Diagnostic::new(
                file,
                Some(&source),
                find(&source, "interval:", cursor),
                format!("test {name}: interval must be longer than 0"),
            ));
            continue;
        }
        let step_ms = duration_ms(step);
        let mut series: Vec<InputSeries> = Vec::new();
        for input in t.input_series {
            if let Some(p) = find(&source, &input.series.text, cursor) {
                cursor = p.line;
            }
            if series
                .iter()
                .any(|s| s.name == input.series.name && s.labels == input.series.labels)
            {
                diags.push(
                    Diagnostic::new(
                        file,
                        Some(&source),
                        find(&source, &input.series.text, cursor.saturating_sub(1)),
                        format!("test {name}: series `{}` is given twice", input.series.text),
                    )
                    .with_hint("write all its values in one `values` string"),
                );
                continue;
            }
            let points = input
                .values
                .0
                .iter()
                .enumerate()
                .filter_map(|(k, slot)| {
                    let t = k as i64 * step_ms;
                    match slot {
                        Slot::Value(v) => Some((t, Some(*v))),
                        Slot::Stale => Some((t, None)),
                        Slot::Missing => None,
                    }
                })
                .collect();
            series.push(InputSeries {
                name: input.series.name,
                labels: input.series.labels,
                points,
            });
        }
        let mut checks = Vec::new();
        for check in t.alert_rule_test {
            let pos = find(&source, &format!("alertname: {}", check.alertname), cursor)
                .or_else(|| find(&source, &check.alertname, cursor));
            if let Some(p) = pos {
                cursor = p.line;
            }
            if !names.is_empty() && !names.contains(&check.alertname) {
                let hint = match did_you_mean(&check.alertname, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the rules loaded are: {}", names.join(", ")),
                };
                diags.push(
                    Diagnostic::new(
                        file,
                        Some(&source),
                        pos,
                        format!(
                            "test {name}: no rule named `{}` in rule_files",
                            check.alertname
                        ),
                    )
                    .with_hint(hint),
                );
                continue;
            }
            let mut expected = Vec::new();
            for exp in check.exp_alerts {
                let mut labels = Labels::new();
                for (k, v) in exp.exp_labels {
                    labels.insert(k, v.0);
                }
                // As in promtool, `alertname` is implied; written, it must agree.
                match labels.get("alertname") {
                    Some(a) if *a != check.alertname => {
                        diags.push(Diagnostic::new(
                            file,
                            Some(&source),
                            pos,
                            format!(
                                "test {name}: exp_labels has alertname `{a}` in a test of `{}`",
                                check.alertname
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        labels.insert("alertname".into(), check.alertname.clone());
                    }
                }
                expected.push((labels, exp.exp_annotations.and_then(|a| a.summary)));
            }
            checks.push(Check {
                eval_ms: duration_ms(check.eval_time.0),
                alertname: check.alertname,
                expected,
            });
        }
        // In time order; checks of one time keep the order they were written in.
        checks.sort_by_key(|c| c.eval_ms);
        tests.push(PreparedTest {
            name,
            series,
            checks,
        });
    }
    if diags.is_empty() {
        Ok(Prepared {
            file: file.to_path_buf(),
            rule_paths,
            interval_ms: duration_ms(interval),
            tests,
        })
    } else {
        Err(diags)
    }
}

/// Runs the tests of one file.
pub fn run_file(file: &Path) -> FileOutcome {
    let prepared = match prepare(file) {
        Ok(p) => p,
        Err(d) => return FileOutcome::Invalid(d),
    };
    let mut report = FileReport {
        file: prepared.file.clone(),
        tests: prepared.tests.len(),
        checks: 0,
        failures: Vec::new(),
    };
    for test in prepared.tests {
        match run_test(&prepared.rule_paths, prepared.interval_ms, test) {
            Ok((checks, failures)) => {
                report.checks += checks;
                report.failures.extend(failures);
            }
            Err(d) => return FileOutcome::Invalid(d),
        }
    }
    FileOutcome::Ran(report)
}

/// Runs one test: every evaluation step from 0 to its last `eval_time`, checking each
/// `alert_rule_test` after the last step at or before its time. Returns how many checks
/// ran and what failed.
fn run_test(
    rule_paths: &[PathBuf],
    interval_ms: i64,
    test: PreparedTest,
) -> Result<(usize, Vec<TestFailure>), Vec<Diagnostic>> {
    let store = Arc::new(TestSeries::new(test.series));
    let mut rules = RuleSet::new(store.clone(), &RulesConfig::default());
    let diags = load_rules(&mut rules, rule_paths);
    if !diags.is_empty() {
        // The files changed since they were checked.
        return Err(diags);
    }
    let files: BTreeMap<String, PathBuf> = rules
        .rules()
        .iter()
        .map(|m| (m.name.clone(), m.file.clone()))
        .collect();
    let mut alerts = AlertManager::new();
    let mut failures = Vec::new();
    let mut failed_rules: HashSet<String> = HashSet::new();
    let end = test.checks.last().map_or(0, |c| c.eval_ms);
    let mut next = 0;
    let mut t: TimestampMs = 0;
    while t <= end {
        store.set_now(t);
        let results = rules.evaluate(t);
        for r in &results {
            if let Err(e) = &r.outcome
                && failed_rules.insert(r.meta.name.clone())
            {
                failures.push(TestFailure {
                    test: test.name.clone(),
                    kind: FailureKind::RuleError {
                        at: Duration::from_millis(t.unsigned_abs()),
                        error: e.to_string(),
                    },
                });
            }
        }
        // The engine's own step (a failed rule's alerts stay as they are; nodata and
        // error alerts are raised as in the engine).
        crate::apply_results(&mut alerts, results, t);
        let step_end = t.saturating_add(interval_ms);
        let states = alerts.active_states();
        while let Some(check) = test.checks.get(next).filter(|c| c.eval_ms < step_end) {
            let mismatches = compare(check, &states);
            if !mismatches.is_empty() {
                failures.push(TestFailure {
                    test: test.name.clone(),
                    kind: FailureKind::Alerts {
                        eval_time: Duration::from_millis(check.eval_ms.unsigned_abs()),
                        alertname: check.alertname.clone(),
                        rule_file: files.get(&check.alertname).cloned().unwrap_or_default(),
                        mismatches,
                    },
                });
            }
            next += 1;
        }
        t = step_end;
    }
    Ok((test.checks.len(), failures))
}

/// The differences between what `check` expects and the alerts of its name firing now.
fn compare(check: &Check, states: &[ActiveAlert]) -> Vec<Mismatch> {
    let of_rule: Vec<&ActiveAlert> = states
        .iter()
        .filter(|a| a.alert.rule == check.alertname)
        .collect();
    // Firing, as promtool counts it: every active state past pending.
    let mut firing: Vec<&ActiveAlert> = of_rule
        .iter()
        .copied()
        .filter(|a| a.state != AlertState::Pending)
        .collect();
    let mut out = Vec::new();
    for (labels, summary) in &check.expected {
        match firing.iter().position(|a| &a.alert.labels == labels) {
            Some(i) => {
                let a = firing.remove(i);
                if let Some(want) = summary
                    && *want != a.alert.summary
                {
                    out.push(Mismatch::OtherAnnotations {
                        labels: labels.clone(),
                        expected: want.clone(),
                        got: a.alert.summary.clone(),
                    });
                }
            }
            None => out.push(Mismatch::Missing {
                labels: labels.clone(),
                summary: summary.clone(),
                pending_since: of_rule
                    .iter()
                    .find(|a| a.state == AlertState::Pending && &a.alert.labels == labels)
                    .map(|a| a.alert.active_since_ms),
            }),
        }
    }
    out.extend(firing.into_iter().map(|a| Mismatch::Unexpected {
        labels: a.alert.labels.clone(),
        value: a.alert.value,
        summary: a.alert.summary.clone(),
        firing_since: a.alert.firing_since_ms,
    }));
    out
}

#[cfg(test)]
mod tests;
