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
//! - `locate` finds where a rule stopped at a limit, which Rhai does not report.
//! - [`watch::RuleWatcher`] reports changed files; [`RuleSet::apply_change`] reloads one.
//!
//! Invariant: a file that fails to compile never replaces a working version of itself, and
//! one rule failing (at compile time or run time) never stops the others.

pub mod functions;
mod locate;
pub mod metadata;
pub mod nodata;
mod policy;
mod promql;
pub mod sandbox;
mod scaling;
mod watch;

#[cfg(test)]
mod promql_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rhai::{
    AST, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Map, OptimizationLevel,
    Scope,
};
use sha2::{Digest, Sha256};

use telltale_config::RulesConfig;
use telltale_diagnostics::{Diagnostic, Position, did_you_mean};
use telltale_diagnostics::{LogLimit, Notice};
use telltale_model::{AlertCandidate, TimestampMs};
use telltale_store::SeriesRead;

pub use telltale_model::RuleMeta;
pub use watch::{RuleWatcher, WatchError};

use sandbox::{EvalContext, SandboxLimits};

/// The default rule set, built into the binary: `(file name, source)`.
pub(crate) const EMBEDDED_RULES: &[(&str, &str)] = &[
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
pub(crate) const EMBEDDED_DIR: &str = "<embedded>";

/// Whether `path` names a rule file: `*.rhai`, not hidden, not an editor backup.
pub(crate) fn is_rule_file(path: &Path) -> bool {
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

/// A failed evaluation of one rule. It renders as a [`Diagnostic`]: `file:line:column:
/// error: rule `name`: message`, the offending line with a caret, and a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// The rule's file.
    pub file: PathBuf,
    /// The rule's name.
    pub rule: String,
    /// What kind of failure.
    pub kind: RuleErrorKind,
    /// What went wrong, for people.
    pub message: String,
    /// Where in the file: the statement that failed or was running when a limit stopped
    /// the rule (for a bad return value, `fn evaluate`).
    pub position: Option<Position>,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// The line at `position`, for the snippet.
    pub source_line: Option<String>,
}

impl RuleError {
    /// The error as a diagnostic (what its `Display` prints).
    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            position: self.position,
            message: format!("rule `{}`: {}", self.rule, self.message),
            hint: self.hint.clone(),
            source_line: self.source_line.clone(),
        }
    }

    /// `file:line:column` (or just `file`).
    pub fn location(&self) -> String {
        telltale_diagnostics::location(&self.file, self.position)
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diagnostic().fmt(f)
    }
}

impl std::error::Error for RuleError {}

/// One rule's outcome on one tick.
#[derive(Debug, Clone)]
pub struct RuleResult {
    /// The rule.
    pub meta: Arc<RuleMeta>,
    /// Its alerts, or why it could not tell.
    pub outcome: Result<Vec<AlertCandidate>, RuleError>,
    /// How long `evaluate()` took.
    pub elapsed: Duration,
    /// A scaling rule's proposal this tick (its `outcome` then holds no alerts); `None`
    /// for alert rules, failures and "no opinion".
    pub scaling: Option<telltale_model::ScalingProposal>,
    /// For a rule with `nodata`: the series it reads that have been silent that long, each
    /// as its labels (plus `metric`, naming it) and the time of its newest point. Empty
    /// otherwise, and when the evaluation failed.
    pub silent: Vec<(telltale_model::Labels, TimestampMs)>,
}

/// What [`RuleSet::apply_change`] did with a changed file.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new rule was loaded.
    Added(Arc<RuleMeta>),
    /// A rule was recompiled. `renamed_from` is its previous name when the file now declares
    /// another one: the caller should resolve the old name's alerts
    /// (`AlertManager::rule_removed` in `telltale-alerts`).
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
    /// The source, for the snippets of runtime errors.
    source: Arc<str>,
    /// Where `fn evaluate` is declared.
    evaluate_at: Option<Position>,
    /// Which of this rule's failures get a log line (a new version starts afresh).
    log: Mutex<LogLimit>,
    /// The last limit error located by a second run (see [`locate`]), by Rhai's text of it:
    /// while the rule keeps stopping at the same limit it is not run twice per tick.
    located: Mutex<Option<(String, Option<locate::Stop>)>>,
    /// The series a rule with `nodata` has read (see [`nodata`]).
    tracker: nodata::Tracker,
}

/// The loaded rules and the engine that runs them.
pub struct RuleSet {
    engine: Engine,
    /// The engine that locates limit errors (see [`locate`]); built on first need.
    locator: OnceLock<Engine>,
    store: Arc<dyn SeriesRead>,
    limits: SandboxLimits,
    /// By file key (see [`RuleSet::key`]); iteration order is the evaluation order.
    rules: BTreeMap<PathBuf, LoadedRule>,
    /// Default rules left out by [`RuleSet::load_defaults_beside_loaded`]: (name, the
    /// file whose rule took the name).
    replaced_defaults: Vec<(String, PathBuf)>,
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
    /// An empty rule set whose rules will read `store` (through [`SeriesRead`] only: any
    /// store that implements it will do), sandboxed as `cfg` says.
    pub fn new(store: Arc<dyn SeriesRead>, cfg: &RulesConfig) -> RuleSet {
        let limits = SandboxLimits::from_config(cfg);
        RuleSet {
            // Rules read through a wrapper that notes what `nodata` rules select.
            engine: sandbox::build_engine(Arc::new(nodata::Recording(store.clone())), limits),
            locator: OnceLock::new(),
            store,
            limits,
            rules: BTreeMap::new(),
            replaced_defaults: Vec::new(),
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
        let evaluate_at = metadata::find_fn(source, "evaluate");
        match evaluate {
            Some(0) => {}
            Some(n) => {
                return Err(vec![
                    Diagnostic::new(
                        file,
                        Some(source),
                        evaluate_at,
                        format!("`evaluate` takes {n} parameters; it must take none"),
                    )
                    .with_hint("declare it as `fn evaluate() { ... }`"),
                ]);
            }
            None => {
                let names: Vec<&str> = ast.iter_functions().map(|f| f.name).collect();
                let close = did_you_mean("evaluate", names.iter().copied());
                let hint = match close {
                    Some(s) => format!("rename `{s}` to `evaluate`"),
                    None => "add `fn evaluate() { ... }` returning alert(value) or []".into(),
                };
                // Point at the likely misspelling; with none, no line is more to blame.
                let at = close.and_then(|s| metadata::find_fn(source, s));
                return Err(vec![
                    Diagnostic::new(file, Some(source), at, "no `fn evaluate()` in the rule")
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
            source: Arc::from(source),
            evaluate_at,
            log: Mutex::new(LogLimit::default()),
            located: Mutex::new(None),
            tracker: nodata::Tracker::default(),
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

    /// Loads the default rules built into the binary beside the rules already loaded (those
    /// of `rules.dir`, loaded first): a default whose `name` a loaded rule already has is
    /// left out, so an operator's file replaces a default by taking its name; the
    /// replacements are kept for the engine to log ([`RuleSet::replaced_defaults`]). Run
    /// after [`RuleSet::load_dir`]: a rule added later with a default's name is refused as
    /// a duplicate name until a restart.
    pub fn load_defaults_beside_loaded(&mut self) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        for (name, source) in EMBEDDED_RULES {
            let file = Path::new(EMBEDDED_DIR).join(name);
            // The default's name, read as `compile` reads it; a default that cannot be read
            // is left to `load_source`, which reports why.
            let default_name = self
                .engine
                .compile(*source)
                .ok()
                .and_then(|ast| metadata::read_meta(&ast, source, &file).ok())
                .map(|meta| meta.name);
            let replaced_by = default_name.as_ref().and_then(|n| {
                self.rules
                    .values()
                    .find(|r| &r.meta.name == n)
                    .map(|r| r.meta.file.clone())
            });
            match (default_name, replaced_by) {
                (Some(rule), Some(by)) => self.replaced_defaults.push((rule, by)),
                _ => diags.extend(self.load_source(&file, file.clone(), source)),
            }
        }
        diags
    }

    /// The default rules that rules of `rules.dir` replaced, by name, with the file of
    /// each replacement, as [`RuleSet::load_defaults_beside_loaded`] found them.
    pub fn replaced_defaults(&self) -> &[(String, PathBuf)] {
        &self.replaced_defaults
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

    /// Evaluates every rule at time `now_ms`; results come in rule order. A rule that
    /// fails or runs away is reported in its result; the others are unaffected. A large
    /// set is evaluated on as many threads as there are cores (the calling thread is one),
    /// each taking the next block of rules as it finishes one, so a thread the system
    /// holds up leaves its share to the others; each rule runs on one thread from start
    /// to end, so its limits, deadline and log lines are as when run alone.
    pub fn evaluate(&self, now_ms: TimestampMs) -> Vec<RuleResult> {
        let rules: Vec<&LoadedRule> = self.rules.values().collect();
        let threads = Self::eval_threads(rules.len());
        if threads <= 1 {
            return self.evaluate_run(&rules, now_ms);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        // Blocks of rules taken in turn, numbered so they can be put back in order.
        let work = || {
            let mut done: Vec<(usize, Vec<RuleResult>)> = Vec::new();
            loop {
                let block = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(run) = rules.chunks(Self::EVAL_BLOCK).nth(block) else {
                    return done;
                };
                done.push((block, self.evaluate_run(run, now_ms)));
            }
        };
        // Log lines from the other threads go where the caller's go: its subscriber
        // (a test's may be thread-local) and its span.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let span = tracing::Span::current();
        let mut blocks = std::thread::scope(|scope| {
            let spawned: Vec<_> = (1..threads)
                .filter_map(|_| {
                    let (dispatch, span, work) = (dispatch.clone(), span.clone(), &work);
                    // A thread the system refuses leaves its blocks to the others.
                    std::thread::Builder::new()
                        .name("telltale-rules".into())
                        .spawn_scoped(scope, move || {
                            tracing::dispatcher::with_default(&dispatch, || span.in_scope(work))
                        })
                        .ok()
                })
                .collect();
            let mut blocks = work();
            for thread in spawned {
                match thread.join() {
                    Ok(done) => blocks.extend(done),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            blocks
        });
        blocks.sort_unstable_by_key(|&(block, _)| block);
        blocks
            .into_iter()
            .flat_map(|(_, results)| results)
            .collect()
    }

    fn evaluate_one(&self, rule: &LoadedRule, now_ms: TimestampMs) -> RuleResult {
        let started = Instant::now();
        let _ctx = sandbox::enter(EvalContext {
            file: rule.file_label.clone(),
            now_ms,
            deadline: started + self.limits.timeout,
            quiet: false,
        });
        let run = || {
            catch_unwind(AssertUnwindSafe(|| {
                self.engine.call_fn_with_options::<Dynamic>(
                    CallFnOptions::new().eval_ast(false).rewind_scope(false),
                    &mut Scope::new(),
                    &rule.ast,
                    "evaluate",
                    (),
                )
            }))
        };
        let (call, selections) = match rule.meta.policy.nodata {
            Some(_) => nodata::recording(run),
            None => (run(), Vec::new()),
        };
        // A scaling rule returns a proposal, not alerts (scaling.rs).
        let mut proposal = None;
        let outcome = match call {
            Ok(Ok(value)) if rule.meta.scaling.is_some() => scaling::to_proposal(value)
                .map(|p| {
                    proposal = p;
                    Vec::new()
                })
                .map_err(|message| {
                    let hint = Some(scaling::RETURN_HINT.into());
                    self.rule_error(rule, RuleErrorKind::BadReturn, message, rule.evaluate_at, hint)
                }),
            Ok(Ok(value)) => to_candidates(value).map_err(|message| {
                self.rule_error(
                    rule,
                    RuleErrorKind::BadReturn,
                    message,
                    rule.evaluate_at,
                    Some("return alert(value) (or an array of alerts) when the condition holds, [] when it does not".into()),
                )
            }),
            Ok(Err(err)) => Err(self.runtime_error(rule, *err, now_ms)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                // Where: the last node the traced run reached before panicking again.
                let stop = self.locate(rule, "panic", now_ms);
                let position = stop
                    .as_ref()
                    .and_then(|s| locate::statement(&rule.ast, s.node))
                    .and_then(|s| sandbox::position_of(s.start));
                Err(self.rule_error(
                    rule,
                    RuleErrorKind::Panic,
                    format!("a host function panicked (a telltale bug): {what}"),
                    position,
                    Some("please report this with the rule file".into()),
                ))
            }
        };
        if outcome.is_ok() {
            *rule.located.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        log_outcome(rule, &outcome, Instant::now());
        // A failed evaluation says nothing about which series went quiet.
        let silent = match rule.meta.policy.nodata {
            Some(after) if outcome.is_ok() => {
                rule.tracker
                    .update(self.store.as_ref(), &selections, after, now_ms)
            }
            _ => Vec::new(),
        };
        RuleResult {
            meta: rule.meta.clone(),
            outcome,
            elapsed: started.elapsed(),
            scaling: proposal,
            silent,
        }
    }

    /// Evaluates `rules` one after the other on this thread.
    fn evaluate_run(&self, rules: &[&LoadedRule], now_ms: TimestampMs) -> Vec<RuleResult> {
        rules
            .iter()
            .map(|rule| self.evaluate_one(rule, now_ms))
            .collect()
    }

    /// How many threads evaluate `rules` rules: one per core, but each with at least
    /// `MIN_RULES_PER_THREAD` rules, so that starting a thread (tens of microseconds)
    /// stays small beside the rules it runs (a few microseconds each).
    fn eval_threads(rules: usize) -> usize {
        /// Cores, read once: the standard library reads the affinity mask and cgroup
        /// quota each time it is asked.
        static CORES: OnceLock<usize> = OnceLock::new();
        /// Below this many rules per thread, one thread is faster.
        const MIN_RULES_PER_THREAD: usize = 64;
        let cores =
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        cores.min(rules / MIN_RULES_PER_THREAD).max(1)
    }

    /// Rules a thread takes at a time: small enough that threads finish together, large
    /// enough that taking one (an atomic add) is nothing beside evaluating it.
    const EVAL_BLOCK: usize = 32;

    /// A [`RuleError`] of `rule`, with the snippet of the line at `position`.
    fn rule_error(
        &self,
        rule: &LoadedRule,
        kind: RuleErrorKind,
        message: String,
        position: Option<Position>,
        hint: Option<String>,
    ) -> RuleError {
        let source_line = position.and_then(|p| {
            rule.source
                .lines()
                .nth(p.line.saturating_sub(1))
                .map(str::to_string)
        });
        RuleError {
            file: rule.meta.file.clone(),
            rule: rule.meta.name.clone(),
            kind,
            message,
            position,
            hint,
            source_line,
        }
    }

    /// Turns a Rhai error into a [`RuleError`]: the innermost error is what went wrong;
    /// the calls it happened in are named, and the innermost known position is used. Limit
    /// errors carry neither (see [`locate`]): they are found by running the rule again.
    fn runtime_error(
        &self,
        rule: &LoadedRule,
        err: EvalAltResult,
        now_ms: TimestampMs,
    ) -> RuleError {
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
        // Innermost first.
        calls.reverse();

        let stop = if position.is_none() && err.is_system_exception() {
            self.locate(rule, &err.to_string(), now_ms)
        } else {
            None
        };
        let statement = stop
            .as_ref()
            .and_then(|s| locate::statement(&rule.ast, s.node));
        if let Some(stop) = &stop {
            if calls.is_empty() {
                calls = stop.calls.clone();
            }
            position = statement
                .as_ref()
                .and_then(|s| sandbox::position_of(s.start))
                .or_else(|| sandbox::position_of(stop.node));
        }

        let (kind, mut message, hint) = match &err {
            EvalAltResult::ErrorTooManyOperations(_) => (
                RuleErrorKind::OperationLimit,
                format!(
                    "stopped after {} operations (rules.max_operations): an endless loop?",
                    self.limits.max_operations
                ),
                Some("make sure every loop ends; a rule that needs more operations can get them from `rules.max_operations`".to_string()),
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
                    Some("the line shown is where it was when time ran out; make the rule do less, or raise `rules.timeout`".to_string()),
                )
            }
            EvalAltResult::ErrorStackOverflow(_) => (
                RuleErrorKind::ResourceLimit,
                format!(
                    "more than {} nested function calls: endless recursion?",
                    sandbox::MAX_CALL_LEVELS
                ),
                Some("a function that calls itself needs a condition that stops it".to_string()),
            ),
            EvalAltResult::ErrorDataTooLarge(what, _) => {
                let noun = statement.as_ref().and_then(|st| {
                    let in_scope = st.target.as_ref().and_then(|var| {
                        stop.as_ref()?
                            .scope
                            .as_ref()?
                            .iter()
                            .rev()
                            .find(|(name, _)| name == var)
                            .map(|(_, noun)| *noun)
                    });
                    in_scope.or(st.literal)
                });
                let (message, hint) = data_too_large(what, noun);
                (RuleErrorKind::ResourceLimit, message, Some(hint))
            }
            EvalAltResult::ErrorTooManyVariables(_) => (
                RuleErrorKind::ResourceLimit,
                "too many variables".to_string(),
                None,
            ),
            EvalAltResult::ErrorRuntime(value, _) => (
                RuleErrorKind::Runtime,
                value
                    .read_lock::<ImmutableString>()
                    .map_or_else(|| value.to_string(), |s| s.to_string()),
                None,
            ),
            _ => (RuleErrorKind::Runtime, err.to_string(), None),
        };
        if !calls.is_empty() {
            message.push_str(&format!(" (in {})", describe_calls(&calls)));
        }
        self.rule_error(rule, kind, message, position, hint)
    }

    /// Runs `rule` again on the tracing engine to find where it stopped (see [`locate`]),
    /// unless its previous failure was the same error (`key`, Rhai's text of it), whose
    /// place is reused. `None` when the second run did not stop at a limit (or panic) too:
    /// the store changed in between, and its place would describe another run.
    fn locate(&self, rule: &LoadedRule, key: &str, now_ms: TimestampMs) -> Option<locate::Stop> {
        let mut cached = rule.located.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, stop)) = cached.as_ref()
            && k == key
        {
            return stop.clone();
        }
        let engine = self
            .locator
            .get_or_init(|| sandbox::build_locator(self.store.clone(), self.limits));
        let _ctx = sandbox::enter(EvalContext {
            file: rule.file_label.clone(),
            now_ms,
            deadline: Instant::now() + self.limits.timeout,
            quiet: true,
        });
        let _trace = locate::start(
            rule.ast
                .iter_functions()
                .map(|f| f.name.to_string())
                .collect(),
        );
        let run = catch_unwind(AssertUnwindSafe(|| {
            engine.call_fn_with_options::<Dynamic>(
                CallFnOptions::new().eval_ast(false).rewind_scope(false),
                &mut Scope::new(),
                &rule.ast,
                "evaluate",
                (),
            )
        }));
        let stop = match run {
            Ok(Ok(_)) => None,
            Ok(Err(e)) if !e.is_system_exception() => None,
            Ok(Err(_)) | Err(_) => locate::finish(),
        };
        *cached = Some((key.to_string(), stop.clone()));
        stop
    }
}

/// Logs a rule's failure the first time, then only as [`LogLimit`] allows (a rule is
/// evaluated every tick, and a broken one fails every tick), and its recovery.
fn log_outcome(rule: &LoadedRule, outcome: &Result<Vec<AlertCandidate>, RuleError>, now: Instant) {
    let mut log = rule.log.lock().unwrap_or_else(PoisonError::into_inner);
    let name = &rule.meta.name;
    match outcome {
        Ok(_) => {
            if let Some(Notice::Recovered { failures, lasted }) = log.success(now) {
                tracing::info!(
                    rule = %name,
                    "rule `{name}` recovered after {failures} failed evaluation(s) over {}",
                    humantime::format_duration(round_to_secs(lasted))
                );
            }
        }
        // Compared by message, not position: a rule stopped by the deadline stops at a
        // different place every time, and that is still the same failure.
        Err(e) => match log.failure(now, &e.message) {
            Some(Notice::First | Notice::Changed { .. }) => tracing::warn!(rule = %name, "{e}"),
            Some(Notice::Reminder {
                repeats,
                since_last,
                failing_for,
            }) => tracing::warn!(
                rule = %name,
                "{}: rule `{name}` still failing: {repeats} more time(s) in the last {}, failing for {}: {}",
                e.location(),
                humantime::format_duration(round_to_secs(since_last)),
                humantime::format_duration(round_to_secs(failing_for)),
                e.message
            ),
            _ => {}
        },
    }
}

/// `d` without its fraction of a second, for log lines.
fn round_to_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// `f() in g() ×3 in h()`: the calls in progress, innermost first, repeats folded.
fn describe_calls(calls: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < calls.len() {
        let run = calls[i..].iter().take_while(|c| **c == calls[i]).count();
        parts.push(if run > 1 {
            format!("{}() ×{run}", calls[i])
        } else {
            format!("{}()", calls[i])
        });
        i += run;
    }
    parts.join(" in ")
}

/// The message and hint of a size limit error. `what` is Rhai's name of the limit
/// ("Length of string", "Size of array/BLOB", "Size of object map", "Size of BLOB"), which
/// is not the kind of value that grew: Rhai checks the text, items and entries of a whole
/// value, nested ones included, and the text first, so an array of strings that grows is
/// reported as "Length of string". `noun` is the kind of value found growing, when known.
fn data_too_large(what: &str, noun: Option<locate::Noun>) -> (String, String) {
    use locate::Noun;
    let text = sandbox::MAX_STRING_SIZE;
    let items = sandbox::MAX_ARRAY_SIZE;
    let entries = sandbox::MAX_MAP_SIZE;
    if what.contains("string") {
        let message = match noun {
            Some(Noun::String) => format!("string too large: longer than {text} bytes"),
            Some(n @ (Noun::Array | Noun::Map)) => format!(
                "{n} too large: the strings in it add up to more than {text} bytes",
                n = n.as_str()
            ),
            _ => format!(
                "too much text: more than {text} bytes in one value (a string, or the strings in an array or map together)"
            ),
        };
        (
            message,
            format!(
                "a value may hold at most {text} bytes of text, counting every string in it and in the arrays and maps it holds; look for a loop that keeps adding to it"
            ),
        )
    } else if what.contains("map") {
        let message = match noun {
            Some(n @ (Noun::Array | Noun::Blob)) => format!(
                "{n} too large: the maps in it add up to more than {entries} entries",
                n = n.as_str()
            ),
            Some(Noun::Map) => format!("map too large: more than {entries} entries"),
            _ => format!(
                "too many map entries: more than {entries} in one value (a map, or the maps in an array or map together)"
            ),
        };
        (
            message,
            format!(
                "a value may hold at most {entries} map entries, counting the entries of every map inside it; look for a loop that keeps adding to it"
            ),
        )
    } else if what.contains("array") || what.contains("BLOB") {
        let message = match noun {
            Some(Noun::Map) => {
                format!("map too large: the arrays in it add up to more than {items} items")
            }
            Some(Noun::Blob) => format!("BLOB too large: more than {items} bytes"),
            _ if what == "Size of BLOB" => format!("BLOB too large: more than {items} bytes"),
            Some(Noun::Array) => format!("array too large: more than {items} items"),
            _ => format!(
                "too many array items: more than {items} in one value (an array, or the arrays in an array or map together)"
            ),
        };
        (
            message,
            format!(
                "a value may hold at most {items} array items, counting the items of every array inside it; look for a loop that keeps adding to it"
            ),
        )
    } else {
        (
            format!("{what} too large"),
            "look for a loop that keeps adding to a value".to_string(),
        )
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
