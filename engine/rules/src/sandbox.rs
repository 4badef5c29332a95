//! The sandboxed Rhai engine every rule runs in, and the per-call context (which rule, what
//! time it is, when its time is up) that the engine's callbacks and host functions read.
//!
//! Why a thread-local for the context: Rhai's `on_progress` and `on_print` callbacks receive
//! no call context, yet the deadline and the log line must name the rule being run. Each rule
//! runs on one thread from start to end (`RuleSet::evaluate` may give runs of rules to
//! several threads, each evaluating its own one after the other), so a thread-local set
//! around each call (and restored by a guard, even on unwind) is exact. The engine itself is
//! shared by those threads: Rhai's `sync` feature makes it `Send + Sync`, and every callback
//! and host function registered here is too.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{Package, StandardPackage};
use rhai::{Dynamic, Engine, OptimizationLevel, Position};

use telltale_config::RulesConfig;
use telltale_model::{TimestampMs, now_ms};
use telltale_store::SeriesRead;

use super::functions;

/// The most nested function calls a rule may make (deep enough for ordinary helpers, shallow
/// enough that runaway recursion stops long before the host stack is in danger).
pub const MAX_CALL_LEVELS: usize = 32;
/// The deepest expression nesting at top level and inside functions. 32/16 rejects ordinary
/// rules (measured), 64/32 does not.
pub const MAX_EXPR_DEPTHS: (usize, usize) = (64, 32);
/// The longest string a rule may build.
pub const MAX_STRING_SIZE: usize = 64 * 1024;
/// The longest array a rule may build (large enough for `series()` over a big family).
pub const MAX_ARRAY_SIZE: usize = 100_000;
/// The largest object map a rule may build.
pub const MAX_MAP_SIZE: usize = 10_000;
/// How many operations pass between two wall-clock checks: reading the clock is cheap but
/// not free, and 1,024 operations take a few microseconds.
const DEADLINE_CHECK_EVERY: u64 = 1024;
/// The token a deadline stop carries, so the error can be told apart from other stops.
pub(crate) const DEADLINE_TOKEN: &str = "telltale:deadline";

/// What the callbacks need to know about the rule being evaluated right now.
#[derive(Debug, Clone)]
pub(crate) struct EvalContext {
    /// The rule's file as shown to people.
    pub file: Arc<str>,
    /// The evaluation time every host function uses (`now_ms()`, window ends).
    pub now_ms: TimestampMs,
    /// When the call must be stopped.
    pub deadline: Instant,
    /// Whether `print`/`debug` output is dropped: a run repeated to locate an error (see
    /// [`super::locate`]) already logged its output the first time.
    pub quiet: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<EvalContext>> = const { RefCell::new(None) };
}

/// Restores the previous context when dropped (also when a call unwinds).
pub(crate) struct ContextGuard {
    previous: Option<EvalContext>,
}

/// Makes `ctx` the current context until the returned guard is dropped.
pub(crate) fn enter(ctx: EvalContext) -> ContextGuard {
    let previous = CURRENT
        .try_with(|c| c.borrow_mut().replace(ctx))
        .ok()
        .flatten();
    ContextGuard { previous }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
    }
}

/// Applies `f` to the current context, if a rule is being evaluated on this thread. Never
/// panics (callbacks run inside Rhai, where a panic would unwind into the host).
fn read_current<R>(f: impl FnOnce(&EvalContext) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|c| c.as_ref().map(f)))
        .ok()
        .flatten()
}

/// The evaluation time: the current rule's `now_ms`, or the wall clock outside a rule.
pub(crate) fn current_now_ms() -> TimestampMs {
    read_current(|c| c.now_ms).unwrap_or_else(now_ms)
}

/// The file of the rule being evaluated, for log lines.
fn current_file() -> Arc<str> {
    read_current(|c| c.file.clone()).unwrap_or_else(|| Arc::from("<no rule>"))
}

/// Whether the current rule's output is dropped (see [`EvalContext::quiet`]).
fn quiet() -> bool {
    read_current(|c| c.quiet).unwrap_or(false)
}

/// Whether the current rule has run past its deadline.
fn deadline_passed() -> bool {
    read_current(|c| Instant::now() >= c.deadline).unwrap_or(false)
}

/// The limits a rule set runs under, taken from the config with unsafe values replaced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SandboxLimits {
    /// Rhai operations per `evaluate()` call (never 0: Rhai reads 0 as unlimited).
    pub max_operations: u64,
    /// Wall-clock time per `evaluate()` call.
    pub timeout: Duration,
}

impl SandboxLimits {
    /// Reads the config. Zero limits (which Rhai would read as "unlimited", or which
    /// would stop every rule at once) are refused by `telltale_config::check` before an
    /// engine is built; a zero here means a caller skipped that check.
    pub fn from_config(cfg: &RulesConfig) -> SandboxLimits {
        debug_assert!(cfg.max_operations > 0 && !cfg.timeout.get().is_zero());
        let max_operations = cfg.max_operations.max(1);
        let timeout = cfg.timeout.get();
        SandboxLimits {
            max_operations,
            timeout,
        }
    }
}

/// Builds the engine rules run in: the standard package only (no file, network or module
/// access exists in it), every limit set, `eval` and `import` refused at compile time,
/// undeclared variables refused at compile time, output to the log instead of stdout, and
/// the store functions registered.
pub(crate) fn build_engine(store: Arc<dyn SeriesRead>, limits: SandboxLimits) -> Engine {
    // `Engine::new()` would print to stdout and resolve modules from files: start raw.
    let mut engine = Engine::new_raw();
    engine.register_global_module(StandardPackage::new().as_shared_module());
    engine.set_module_resolver(DummyModuleResolver::new());
    engine.set_max_modules(0);
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(MAX_CALL_LEVELS);
    engine.set_max_expr_depths(MAX_EXPR_DEPTHS.0, MAX_EXPR_DEPTHS.1);
    engine.set_max_string_size(MAX_STRING_SIZE);
    engine.set_max_array_size(MAX_ARRAY_SIZE);
    engine.set_max_map_size(MAX_MAP_SIZE);
    engine.set_strict_variables(true);
    // A typo in a property name (`s.lables`) is an error, not a silent `()`.
    engine.set_fail_on_invalid_map_property(true);
    // Compile unoptimised so the `RULE` literal is read exactly as written; the AST is
    // optimised at `OptimizationLevel::Full` afterwards (see `RuleSet::compile`).
    engine.set_optimization_level(OptimizationLevel::None);

    engine.on_print(|text| {
        if quiet() {
            return;
        }
        tracing::info!(target: "telltale::rules", rule_file = %current_file(), "print: {text}");
    });
    engine.on_debug(|text, source, pos| {
        if quiet() {
            return;
        }
        let file = source.map_or_else(current_file, Arc::from);
        match (pos.line(), pos.position()) {
            (Some(line), Some(column)) => tracing::debug!(
                target: "telltale::rules",
                rule_file = %file, line, column, "debug: {text}"
            ),
            _ => tracing::debug!(target: "telltale::rules", rule_file = %file, "debug: {text}"),
        }
    });
    engine.on_progress(|ops| {
        if ops % DEADLINE_CHECK_EVERY == 0 && deadline_passed() {
            Some(Dynamic::from(DEADLINE_TOKEN))
        } else {
            None
        }
    });

    functions::register(&mut engine, store);
    engine
}

/// Builds the engine a rule that stopped at a limit is run again on, to find where it
/// stopped: the rule engine plus a tracing debugger ([`super::locate`] says why it is a
/// second engine).
pub(crate) fn build_locator(store: Arc<dyn SeriesRead>, limits: SandboxLimits) -> Engine {
    let mut engine = build_engine(store, limits);
    super::locate::install(&mut engine);
    engine
}

/// Whether a Rhai position is known.
pub(crate) fn position_of(pos: Position) -> Option<telltale_diagnostics::Position> {
    match (pos.line(), pos.position()) {
        (Some(line), Some(column)) => Some(telltale_diagnostics::Position { line, column }),
        (Some(line), None) => Some(telltale_diagnostics::Position { line, column: 1 }),
        _ => None,
    }
}
