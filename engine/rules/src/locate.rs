//! Where a rule was when a limit stopped it, and what kind of value grew too large.
//!
//! Why this is needed: Rhai treats its limit errors (too many operations, a run stopped by
//! the deadline, stack overflow, data too large) as *system exceptions*, and every script
//! function such an error leaves overwrites its position with the position of its own call
//! (rhai 1.27, `call_script_fn`: `err.set_position(pos)`), down to `evaluate()`, which
//! `call_fn` calls at `Position::NONE`. Unlike other errors they are not wrapped in
//! `ErrorInFunctionCall` either. So a limit error reaches the host with no position and no
//! chain of calls, whatever function it happened in.
//!
//! Why not track the position on every run: the only hook Rhai has that sees each node is
//! its debugger, and while one is registered Rhai copies every argument of every function
//! call for the debugger's call stack (a method call on a 100,000-item array copies the
//! array), which no rule should pay for. So the normal engine runs without it, and a rule
//! that stopped at a limit is run once more on a second engine ([`install`]) whose debugger
//! records the position of each node as it is evaluated, per call level. When the error
//! leaves the innermost function, the trace is frozen: the last node of that level is where
//! the limit tripped, the debugger's call stack is the chain of calls in progress, and the
//! variables of the innermost script function tell which kind of value grew (Rhai names the
//! limit, not the value: the text of an array of strings is checked against the string
//! limit, and reported as "Length of string"). The second run reads the same store at the same
//! evaluation time, so it stops at the same place; a deadline stop is the exception, and
//! stops wherever its time runs out, which is still inside the code that ran away.

use std::cell::RefCell;

use rhai::debugger::{DebuggerCommand, DebuggerEvent};
use rhai::{AST, ASTNode, Dynamic, Engine, EvalContext, Expr, FnCallExpr, Position, Stmt};

/// The kind of a value, as error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noun {
    /// A string.
    String,
    /// An array.
    Array,
    /// A BLOB (byte array).
    Blob,
    /// An object map.
    Map,
}

impl Noun {
    /// The kind of `value`, when it is one a size limit applies to.
    fn of(value: &Dynamic) -> Option<Noun> {
        if value.is_string() {
            Some(Noun::String)
        } else if value.is_array() {
            Some(Noun::Array)
        } else if value.is_blob() {
            Some(Noun::Blob)
        } else if value.is_map() {
            Some(Noun::Map)
        } else {
            None
        }
    }

    /// The word for people.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Noun::String => "string",
            Noun::Array => "array",
            Noun::Blob => "BLOB",
            Noun::Map => "map",
        }
    }
}

/// Where a traced run stopped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    /// The node being evaluated at the innermost call level when the run stopped.
    pub node: Position,
    /// The script functions in progress, innermost first, `evaluate()` left out.
    pub calls: Vec<String>,
    /// The variables of the innermost script function in progress that hold a string,
    /// array, BLOB or map, with their kinds.
    pub scope: Option<Vec<(String, Noun)>>,
}

/// The state of a traced run.
struct Trace {
    /// The script functions of the rule, to tell them from native functions on the call
    /// stack.
    script_fns: Vec<String>,
    /// The position of the last node evaluated at each call level still in progress.
    levels: Vec<Position>,
    /// Set when the error leaves its first function.
    stop: Option<Stop>,
}

thread_local! {
    static TRACE: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// Ends tracing when dropped (also when the traced run unwinds).
pub(crate) struct TraceGuard(());

impl Drop for TraceGuard {
    fn drop(&mut self) {
        let _ = TRACE.try_with(|t| t.try_borrow_mut().map(|mut t| t.take()));
    }
}

/// Starts tracing the runs on this thread; `script_fns` are the rule's function names.
pub(crate) fn start(script_fns: Vec<String>) -> TraceGuard {
    let _ = TRACE.try_with(|t| {
        t.try_borrow_mut().map(|mut t| {
            *t = Some(Trace {
                script_fns,
                levels: Vec::new(),
                stop: None,
            })
        })
    });
    TraceGuard(())
}

/// Where the traced run stopped: at its error, or (when it ended without leaving a function
/// with an error, as a panic does) at the last node it evaluated.
pub(crate) fn finish() -> Option<Stop> {
    let trace = TRACE
        .try_with(|t| t.try_borrow_mut().ok().and_then(|mut t| t.take()))
        .ok()
        .flatten()?;
    trace.stop.or_else(|| {
        let node = trace.levels.iter().rev().copied().find(|p| !p.is_none())?;
        Some(Stop {
            node,
            ..Stop::default()
        })
    })
}

/// Registers the tracing debugger on `engine` (see the module docs for why this is a
/// separate engine).
pub(crate) fn install(engine: &mut Engine) {
    // `register_debugger` is marked deprecated only to flag it as a volatile API (its
    // note says so); Cargo.lock holds rhai at 1.27.0, and the hostile-rule tests in
    // `rules/tests.rs` fail if its behaviour changes.
    #[allow(deprecated)]
    engine.register_debugger(|_, debugger| debugger, on_event);
}

/// The debugger callback: records each node, freezes the trace when the error leaves its
/// first function. It never fails and never stops the run (the limits do that).
fn on_event(
    ctx: EvalContext,
    event: DebuggerEvent,
    _node: ASTNode,
    _source: Option<&str>,
    pos: Position,
) -> Result<DebuggerCommand, Box<rhai::EvalAltResult>> {
    let _ = TRACE.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut()
            && let Some(trace) = t.as_mut()
        {
            match event {
                DebuggerEvent::FunctionExitWithError(_) => trace.error_exit(&ctx),
                DebuggerEvent::FunctionExitWithValue(_) | DebuggerEvent::End => {}
                _ => trace.step(ctx.call_level(), pos),
            }
        }
    });
    // Step into everything: the next node, at whatever level, calls back again.
    Ok(DebuggerCommand::StepInto)
}

impl Trace {
    /// A node at `level` is being evaluated.
    fn step(&mut self, level: usize, pos: Position) {
        if self.stop.is_some() || pos.is_none() {
            return;
        }
        // Deeper levels belong to calls that have returned.
        self.levels.resize(level + 1, Position::NONE);
        self.levels[level] = pos;
    }

    /// A function is being left with an error.
    fn error_exit(&mut self, ctx: &EvalContext) {
        // The callback only runs while the debugger is set, so `debugger()` (which panics
        // when it is not) is safe here.
        let frames = ctx.global_runtime_state().debugger().call_stack();
        let is_script = |name: &str| self.script_fns.iter().any(|f| f == name);
        let top_is_script = frames.last().is_some_and(|f| is_script(f.fn_name.as_str()));
        if self.stop.is_none() {
            // The error's own level and the levels of the calls around it; nothing deeper.
            let level = ctx.call_level();
            let node = self
                .levels
                .iter()
                .take(level + 1)
                .rev()
                .copied()
                .find(|p| !p.is_none())
                .unwrap_or(Position::NONE);
            // The bottom frame is `evaluate()`, called by the host.
            let calls = frames
                .iter()
                .skip(1)
                .filter(|f| is_script(f.fn_name.as_str()))
                .rev()
                .map(|f| f.fn_name.to_string())
                .collect();
            self.stop = Some(Stop {
                node,
                calls,
                scope: None,
            });
        }
        // The first script function the error leaves still has its variables in scope (a
        // native function's exit event comes with an empty scope).
        if top_is_script
            && let Some(stop) = &mut self.stop
            && stop.scope.is_none()
        {
            stop.scope = Some(
                ctx.scope()
                    .iter_raw()
                    .filter_map(|(name, _, value)| Noun::of(value).map(|n| (name.to_string(), n)))
                    .collect(),
            );
        }
    }
}

/// The statement a node belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    /// Where the statement starts (`a` of `a.push(x)`, `s` of `s += t`).
    pub start: Position,
    /// The innermost array, map or interpolated-string literal around the node, if any.
    pub literal: Option<Noun>,
    /// The variable the statement assigns to or calls a method on, if any.
    pub target: Option<String>,
}

/// Finds the innermost statement of `ast` holding the node at `node`.
pub(crate) fn statement(ast: &AST, node: Position) -> Option<Statement> {
    if node.is_none() {
        return None;
    }
    let mut found = None;
    ast.walk(&mut |path: &[ASTNode]| {
        if path.last().is_none_or(|leaf| leaf.position() != node) {
            return true;
        }
        let Some((at, stmt)) = path.iter().enumerate().rev().find_map(|(i, n)| match n {
            ASTNode::Stmt(s) => Some((i, *s)),
            _ => None,
        }) else {
            return true;
        };
        let literal = path[at..].iter().rev().find_map(|n| match n {
            ASTNode::Expr(Expr::Array(..)) => Some(Noun::Array),
            ASTNode::Expr(Expr::Map(..)) => Some(Noun::Map),
            ASTNode::Expr(Expr::InterpolatedString(..)) => Some(Noun::String),
            _ => None,
        });
        found = Some(Statement {
            start: statement_start(stmt),
            literal,
            target: target_of(stmt),
        });
        false
    });
    found
}

/// Where `stmt` starts: Rhai positions an assignment, a method call and a binary operator
/// at the operator, but people read a statement from its first character.
fn statement_start(stmt: &Stmt) -> Position {
    let start = match stmt {
        Stmt::Assignment(x) => expr_start(&x.1.lhs),
        Stmt::Expr(e) => expr_start(e),
        Stmt::FnCall(x, _) => left_operand(x).map_or(Position::NONE, expr_start),
        _ => Position::NONE,
    };
    start.or_else(stmt.position())
}

/// Where `expr` starts: its left operand for an operator (`a + b`), else what Rhai says.
fn expr_start(expr: &Expr) -> Position {
    match expr {
        Expr::FnCall(x, ..) => left_operand(x).map_or_else(|| expr.start_position(), expr_start),
        _ => expr.start_position(),
    }
}

/// The left operand of a binary operator call.
fn left_operand(call: &FnCallExpr) -> Option<&Expr> {
    // `op_token` is not always set (not after optimisation); an operator's name is its
    // symbol, which no function name can be.
    let is_operator = !call
        .name
        .starts_with(|c: char| c.is_alphanumeric() || c == '_');
    if is_operator && call.args.len() == 2 {
        call.args.first()
    } else {
        None
    }
}

/// The variable whose value the statement grows: the one it assigns to, calls a method on
/// or indexes, or the left operand of the operator it computes (`a + b` makes a value of
/// `a`'s kind).
fn target_of(stmt: &Stmt) -> Option<String> {
    match stmt {
        Stmt::Assignment(x) => root_variable(&x.1.lhs),
        Stmt::Expr(e) => grown_variable(e),
        Stmt::FnCall(x, _) => left_operand(x).and_then(grown_variable),
        Stmt::Var(x, ..) => grown_variable(&x.1),
        _ => None,
    }
}

/// The variable whose kind of value `expr` builds, when it is one of `a.f(...)`, `a[i]` and
/// `a + b` (left operand first).
fn grown_variable(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Dot(..) | Expr::Index(..) => root_variable(expr),
        Expr::FnCall(x, ..) => left_operand(x).and_then(grown_variable),
        Expr::Variable(..) => root_variable(expr),
        _ => None,
    }
}

/// The variable at the root of `a`, `a.b`, `a[i].c(...)`.
fn root_variable(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Variable(x, ..) => Some(x.1.to_string()),
        Expr::Dot(x, ..) | Expr::Index(x, ..) => root_variable(&x.lhs),
        _ => None,
    }
}
