//! Alert rules: Rhai scripts, one rule per `.rhai` file, compiled into a sandboxed engine,
//! evaluated against the series store every tick, and recompiled one file at a time when
//! their files change.
//!
//! A rule file declares its metadata as a literal (`const RULE = #{ name, severity, hold,
//! labels, summary }`, read without running code, see [`metadata`]) and a function
//! `evaluate()` that returns zero or more alerts. The format and every host function are
//! documented for rule authors in `rules/README.md`.
//!
//! - [`RuleSet`] owns the engine and the compiled rules, keyed by file.
//! - [`sandbox`] builds the engine and enforces the limits (operations, deadline, sizes).
//! - [`functions`] are the host functions rules read the store with.
//! - [`watch::RuleWatcher`] reports changed files; [`RuleSet::apply_change`] reloads one.
//!
//! Invariant: a file that fails to compile never replaces a working version of itself, and
//! one rule failing (at compile time or run time) never stops the others.

pub mod functions;
pub mod metadata;
pub mod sandbox;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{
    AST, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Map, OptimizationLevel,
    Scope,
};
use sha2::{Digest, Sha256};

use crate::config::RulesConfig;
use crate::diagnostic::{Diagnostic, Position, did_you_mean, location};
use crate::model::{AlertCandidate, TimestampMs};
use crate::store::{SeriesStore, StoreLimits};

pub use metadata::RuleMeta;
pub use watch::{RuleWatcher, WatchError};

use sandbox::{EvalContext, SandboxLimits};

/// The default rule set, built into the binary: `(file name, source)`.
pub const EMBEDDED_RULES: &[(&str, &str)] = &[
    (
        "high_cpu.rhai",
        include_str!("../../../rules/high_cpu.rhai"),
    ),
    (
        "memory_high.rhai",
        include_str!("../../../rules/memory_high.rhai"),
    ),
    (
        "memory_critical.rhai",
        include_str!("../../../rules/memory_critical.rhai"),
    ),
    (
        "disk_full.rhai",
        include_str!("../../../rules/disk_full.rhai"),
    ),
    (
        "high_load.rhai",
        include_str!("../../../rules/high_load.rhai"),
    ),
];

/// The pseudo-directory embedded rules are shown under.
pub const EMBEDDED_DIR: &str = "<embedded>";

/// Whether `path` names a rule file: `*.rhai`, not hidden, not an editor backup.
pub fn is_rule_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && !name.ends_with('~') && path.extension().is_some_and(|e| e == "rhai")
}

/// Why a rule's evaluation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// A script error (type error, host function error, ...).
    Runtime,
    /// Stopped after `rules.max_operations` operations.
    OperationLimit,
    /// Stopped after running longer than `rules.timeout`.
    Deadline,
    /// Too deep recursion, too large a string/array/map.
    ResourceLimit,
    /// `evaluate()` returned something that is not alerts.
    BadReturn,
    /// A host function panicked (a bug in telltale, contained).
    Panic,
}

/// A failed evaluation of one rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{loc}: rule `{rule}`: {message}", loc = location(.file, *.position))]
pub struct RuleError {
    /// The rule's file.
    pub file: PathBuf,
    /// The rule's name.
    pub rule: String,
    /// What kind of failure.
    pub kind: RuleErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// Where in the file, when Rhai knows.
    pub position: Option<Position>,
}

/// One rule's outcome on one tick.
#[derive(Debug, Clone)]
pub struct RuleResult {
    /// The rule.
    pub meta: Arc<RuleMeta>,
    /// Its alerts, or why it could not tell.
    pub outcome: Result<Vec<AlertCandidate>, RuleError>,
    /// How long `evaluate()` took.
    pub elapsed: Duration,
}

/// What [`RuleSet::apply_change`] did with a changed file.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new rule was loaded.
    Added(Arc<RuleMeta>),
    /// A rule was recompiled. `renamed_from` is its previous name when the file now declares
    /// another one: the caller should resolve the old name's alerts
    /// ([`crate::alerts::AlertManager::rule_removed`]).
    Updated {
        /// The new metadata.
        rule: Arc<RuleMeta>,
        /// The previous rule name, when it changed.
        renamed_from: Option<String>,
    },
    /// The file is gone; this rule (by name) was unloaded.
    Removed(String),
    /// Nothing to do: same content, not a rule file, or a deleted file that held no rule.
    Unchanged,
    /// The file could not be loaded. `kept_previous`: its previous version is still active.
    Failed {
        /// Every problem found, positioned.
        diagnostics: Vec<Diagnostic>,
        /// Whether an earlier version of the file keeps running.
        kept_previous: bool,
    },
}

/// A compiled rule.
struct LoadedRule {
    meta: Arc<RuleMeta>,
    /// The file as shown in logs (`meta.file` as a string, shared with the sandbox).
    file_label: Arc<str>,
    ast: AST,
    hash: [u8; 32],
}

/// The loaded rules and the engine that runs them.
pub struct RuleSet {
    engine: Engine,
    limits: SandboxLimits,
    /// By file key (see [`RuleSet::key`]); iteration order is the evaluation order.
    rules: BTreeMap<PathBuf, LoadedRule>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("limits", &self.limits)
            .field("rules", &self.rules.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl RuleSet {
    /// An empty rule set whose rules will read `store`, sandboxed as `cfg` says.
    pub fn new(store: Arc<SeriesStore>, cfg: &RulesConfig) -> RuleSet {
        let limits = SandboxLimits::from_config(cfg);
        RuleSet {
            engine: sandbox::build_engine(store, limits),
            limits,
            rules: BTreeMap::new(),
        }
    }

    /// The map key of a file: its directory canonicalised (so the watcher's paths and
    /// `load_dir`'s agree however the directory was spelled), then its name.
    fn key(path: &Path) -> PathBuf {
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| path.to_path_buf()),
            _ => path.to_path_buf(),
        }
    }

    /// Compiles `source` (shown as `file`) and reads its metadata. The name must not be
    /// taken by a rule of another file (`own_key` is the file's own key).
    fn compile(
        &self,
        file: &Path,
        own_key: &Path,
        source: &str,
    ) -> Result<LoadedRule, Vec<Diagnostic>> {
        let ast = self
            .engine
            .compile(source)
            .map_err(|e| vec![metadata::parse_error_diagnostic(&e, source, file)])?;
        let meta = metadata::read_meta(&ast, source, file)?;

        let layout = metadata::scan_layout(source);
        if let Some((other_key, other)) = self
            .rules
            .iter()
            .find(|(k, r)| r.meta.name == meta.name && k.as_path() != own_key)
        {
            let _ = other_key;
            return Err(vec![
                Diagnostic::new(
                    file,
                    Some(source),
                    layout
                        .keys
                        .iter()
                        .find(|k| k.0 == "name")
                        .map(|k| k.2)
                        .or(layout.decl),
                    format!(
                        "rule name \"{}\" is already used by {}",
                        meta.name,
                        other.meta.file.display()
                    ),
                )
                .with_hint("rule names must be unique across files; rename one of them"),
            ]);
        }

        let evaluate = ast
            .iter_functions()
            .find(|f| f.name == "evaluate")
            .map(|f| f.params.len());
        match evaluate {
            Some(0) => {}
            Some(n) => {
                return Err(vec![
                    Diagnostic::new(
                        file,
                        Some(source),
                        None,
                        format!("`evaluate` takes {n} parameters; it must take none"),
                    )
                    .with_hint("declare it as `fn evaluate() { ... }`"),
                ]);
            }
            None => {
                let names: Vec<&str> = ast.iter_functions().map(|f| f.name).collect();
                let hint = match did_you_mean("evaluate", names.iter().copied()) {
                    Some(s) => format!("rename `{s}` to `evaluate`"),
                    None => "add `fn evaluate() { ... }` returning alert(value) or []".into(),
                };
                return Err(vec![
                    Diagnostic::new(file, Some(source), None, "no `fn evaluate()` in the rule")
                        .with_hint(hint),
                ]);
            }
        }

        // Metadata was read from the literal as written; now optimise for running. The
        // top-level statements never run (`eval_ast(false)`), so drop them.
        let mut ast = self
            .engine
            .optimize_ast(&Scope::new(), ast, OptimizationLevel::Full);
        ast.clear_statements();
        let label = file.display().to_string();
        ast.set_source(label.as_str());
        Ok(LoadedRule {
            meta: Arc::new(meta),
            file_label: Arc::from(label),
            ast,
            hash: sha256(source),
        })
    }

    /// Loads one file's source under `key`; diagnostics on failure.
    fn load_source(&mut self, file: &Path, key: PathBuf, source: &str) -> Vec<Diagnostic> {
        match self.compile(file, &key, source) {
            Ok(rule) => {
                self.rules.insert(key, rule);
                Vec::new()
            }
            Err(diags) => diags,
        }
    }

    /// Loads the default rules built into the binary, shown as `<embedded>/NAME.rhai`.
    pub fn load_embedded_defaults(&mut self) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        for (name, source) in EMBEDDED_RULES {
            let file = Path::new(EMBEDDED_DIR).join(name);
            diags.extend(self.load_source(&file, file.clone(), source));
        }
        diags
    }

    /// Loads every rule file (`*.rhai`, not hidden, not `~` backups) directly in `dir`, in
    /// name order; a name declared twice is loaded from the first file only.
    pub fn load_dir(&mut self, dir: &Path) -> Vec<Diagnostic> {
        let files = match rule_files(dir) {
            Ok(files) => files,
            Err(d) => return vec![d],
        };
        let mut diags = Vec::new();
        for path in files {
            match std::fs::read_to_string(&path) {
                Ok(source) => {
                    let key = Self::key(&path);
                    diags.extend(self.load_source(&path, key, &source));
                }
                Err(e) => diags.push(Diagnostic::new(
                    &path,
                    None,
                    None,
                    format!("cannot read rule file: {e}"),
                )),
            }
        }
        diags
    }

    /// Reloads one file after it was created, modified or deleted: only that file is
    /// recompiled. A file that fails keeps its previous version running.
    pub fn apply_change(&mut self, path: &Path) -> ReloadOutcome {
        if !is_rule_file(path) {
            return ReloadOutcome::Unchanged;
        }
        let key = Self::key(path);
        let source = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match self.rules.remove(&key) {
                    Some(old) => {
                        tracing::info!(rule = %old.meta.name, file = %path.display(), "rule file deleted; rule unloaded");
                        ReloadOutcome::Removed(old.meta.name.clone())
                    }
                    None => ReloadOutcome::Unchanged,
                };
            }
            Err(e) => {
                return ReloadOutcome::Failed {
                    diagnostics: vec![Diagnostic::new(
                        path,
                        None,
                        None,
                        format!("cannot read rule file: {e}"),
                    )],
                    kept_previous: self.rules.contains_key(&key),
                };
            }
        };
        let previous = self.rules.get(&key);
        if previous.is_some_and(|p| p.hash == sha256(&source)) {
            return ReloadOutcome::Unchanged;
        }
        let previous_name = previous.map(|p| p.meta.name.clone());
        match self.compile(path, &key, &source) {
            Ok(rule) => {
                let meta = rule.meta.clone();
                self.rules.insert(key, rule);
                match previous_name {
                    None => ReloadOutcome::Added(meta),
                    Some(old) => ReloadOutcome::Updated {
                        renamed_from: (old != meta.name).then_some(old),
                        rule: meta,
                    },
                }
            }
            Err(diagnostics) => ReloadOutcome::Failed {
                diagnostics,
                kept_previous: previous_name.is_some(),
            },
        }
    }

    /// The loaded rules' metadata, in evaluation order.
    pub fn rules(&self) -> Vec<Arc<RuleMeta>> {
        self.rules.values().map(|r| r.meta.clone()).collect()
    }

    /// Evaluates every rule at time `now_ms`, one after the other. A rule that fails or
    /// runs away is reported in its result; the others are unaffected.
    pub fn evaluate(&self, now_ms: TimestampMs) -> Vec<RuleResult> {
        self.rules
            .values()
            .map(|rule| self.evaluate_one(rule, now_ms))
            .collect()
    }

    fn evaluate_one(&self, rule: &LoadedRule, now_ms: TimestampMs) -> RuleResult {
        let started = Instant::now();
        let _ctx = sandbox::enter(EvalContext {
            file: rule.file_label.clone(),
            now_ms,
            deadline: started + self.limits.timeout,
        });
        let call = catch_unwind(AssertUnwindSafe(|| {
            self.engine.call_fn_with_options::<Dynamic>(
                CallFnOptions::new().eval_ast(false).rewind_scope(false),
                &mut Scope::new(),
                &rule.ast,
                "evaluate",
                (),
            )
        }));
        let outcome = match call {
            Ok(Ok(value)) => to_candidates(value).map_err(|message| RuleError {
                file: rule.meta.file.clone(),
                rule: rule.meta.name.clone(),
                kind: RuleErrorKind::BadReturn,
                message,
                position: None,
            }),
            Ok(Err(err)) => Err(self.runtime_error(&rule.meta, *err)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(RuleError {
                    file: rule.meta.file.clone(),
                    rule: rule.meta.name.clone(),
                    kind: RuleErrorKind::Panic,
                    message: format!("a host function panicked (a telltale bug): {what}"),
                    position: None,
                })
            }
        };
        if let Err(e) = &outcome {
            tracing::warn!(rule = %rule.meta.name, "{e}");
        }
        RuleResult {
            meta: rule.meta.clone(),
            outcome,
            elapsed: started.elapsed(),
        }
    }

    /// Turns a Rhai error into a [`RuleError`]: the innermost error is what went wrong;
    /// the calls it happened in are named, and the innermost known position is used.
    fn runtime_error(&self, meta: &RuleMeta, err: EvalAltResult) -> RuleError {
        let mut err = err;
        let mut calls: Vec<String> = Vec::new();
        let mut position = None;
        while let EvalAltResult::ErrorInFunctionCall(name, _source, inner, pos) = err {
            if name != "evaluate" {
                calls.push(name);
            }
            position = sandbox::position_of(pos).or(position);
            err = *inner;
        }
        let mut err = err;
        let pos = err.take_position();
        position = sandbox::position_of(pos).or(position);
        let (kind, mut message) = match &err {
            EvalAltResult::ErrorTooManyOperations(_) => (
                RuleErrorKind::OperationLimit,
                format!(
                    "stopped after {} operations (rules.max_operations): an endless loop?",
                    self.limits.max_operations
                ),
            ),
            EvalAltResult::ErrorTerminated(token, _)
                if token
                    .read_lock::<ImmutableString>()
                    .is_some_and(|t| t.as_str() == sandbox::DEADLINE_TOKEN) =>
            {
                (
                    RuleErrorKind::Deadline,
                    format!(
                        "stopped after running longer than {} (rules.timeout)",
                        humantime::format_duration(self.limits.timeout)
                    ),
                )
            }
            EvalAltResult::ErrorStackOverflow(_) => (
                RuleErrorKind::ResourceLimit,
                format!(
                    "more than {} nested function calls: endless recursion?",
                    sandbox::MAX_CALL_LEVELS
                ),
            ),
            EvalAltResult::ErrorDataTooLarge(..) | EvalAltResult::ErrorTooManyVariables(..) => {
                (RuleErrorKind::ResourceLimit, err.to_string())
            }
            EvalAltResult::ErrorRuntime(value, _) => (
                RuleErrorKind::Runtime,
                value
                    .read_lock::<ImmutableString>()
                    .map_or_else(|| value.to_string(), |s| s.to_string()),
            ),
            _ => (RuleErrorKind::Runtime, err.to_string()),
        };
        if !calls.is_empty() {
            calls.reverse();
            message.push_str(&format!(" (in {}())", calls.join("() in ")));
        }
        RuleError {
            file: meta.file.clone(),
            rule: meta.name.clone(),
            kind,
            message,
            position,
        }
    }
}

/// The rule files directly in `dir`, sorted by name.
fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diagnostic::new(dir, None, None, format!("cannot read rules directory: {e}"))
            .with_hint("check `rules.dir` in the config")
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_rule_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Validates every rule file in `dir` without evaluating anything (`telltale check`).
pub fn check_dir(dir: &Path, cfg: &RulesConfig) -> Vec<Diagnostic> {
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let mut set = RuleSet::new(store, cfg);
    set.load_dir(dir)
}

/// What `evaluate()` may return, for error messages.
const EXPECTED_RETURN: &str =
    "expected (), false, [], an alert map like #{ value: 95.0 } (see alert()) or an array of them";

/// Converts what `evaluate()` returned into alert candidates.
fn to_candidates(value: Dynamic) -> Result<Vec<AlertCandidate>, String> {
    if value.is_unit() {
        return Ok(Vec::new());
    }
    if let Ok(b) = value.as_bool() {
        return if b {
            Err(format!("evaluate() returned true; {EXPECTED_RETURN}"))
        } else {
            Ok(Vec::new())
        };
    }
    if value.is_array() {
        let array = value.into_array().unwrap_or_default();
        return array
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item.read_lock::<Map>() {
                Some(m) => {
                    to_candidate(&m).map_err(|e| format!("evaluate() returned array item {i}: {e}"))
                }
                None => Err(format!(
                    "evaluate() returned an array whose item {i} is {}; {EXPECTED_RETURN}",
                    item.type_name()
                )),
            })
            .collect();
    }
    if let Some(m) = value.read_lock::<Map>() {
        return to_candidate(&m)
            .map(|c| vec![c])
            .map_err(|e| format!("evaluate() returned an alert map: {e}"));
    }
    Err(format!(
        "evaluate() returned {}; {EXPECTED_RETURN}",
        value.type_name()
    ))
}

/// One alert map `#{ value, labels?, summary? }` to a candidate.
fn to_candidate(m: &Map) -> Result<AlertCandidate, String> {
    const KEYS: [&str; 3] = ["value", "labels", "summary"];
    if let Some(key) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        let hint = did_you_mean(key, KEYS)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(format!(
            "unknown key `{key}` (expected value, labels, summary){hint}"
        ));
    }
    let value = match m.get("value") {
        None => return Err("no `value`".into()),
        Some(v) if v.is_unit() => {
            return Err(
                "`value` is () (no data: the metric is absent or the window is empty)".into(),
            );
        }
        Some(v) => v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|t| format!("`value` must be a number, found {t}"))?,
    };
    let labels = match m.get("labels") {
        None => Default::default(),
        Some(v) => match v.read_lock::<Map>() {
            Some(l) => functions::map_to_labels(&l, "labels").map_err(|e| match *e {
                EvalAltResult::ErrorRuntime(msg, _) => msg.to_string(),
                other => other.to_string(),
            })?,
            None => return Err(format!("`labels` must be a map, found {}", v.type_name())),
        },
    };
    let summary = match m.get("summary") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(
            v.read_lock::<ImmutableString>()
                .map(|s| s.to_string())
                .ok_or_else(|| format!("`summary` must be a string, found {}", v.type_name()))?,
        ),
    };
    Ok(AlertCandidate {
        value,
        labels,
        summary,
    })
}
