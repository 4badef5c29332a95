//! Reading a rule's `const RULE = #{...}` header without running any code, and turning
//! what is wrong with it (or with the script's syntax) into positioned diagnostics.
//!
//! Rhai hands out the literal's value (`AST::iter_literal_variables`) but not the positions
//! of its keys, so a small scanner that understands Rhai's comments and string literals
//! finds where `const RULE` and each key are written; diagnostics point there.

use std::path::Path;
use std::time::Duration;

use rhai::{AST, ImmutableString, Map, ParseError, ParseErrorType};

use telltale_diagnostics::{Diagnostic, Position, did_you_mean};
use telltale_model::{Labels, RuleMeta, Severity};

use super::sandbox::{MAX_EXPR_DEPTHS, position_of};

/// Keys the `RULE` map may have.
pub const RULE_KEYS: [&str; 15] = [
    "name",
    "severity",
    "hold",
    "labels",
    "summary",
    "kind",
    "scaling",
    // The lifecycle keys (policy.rs, `POLICY_KEYS`).
    "keep_firing_for",
    "thresholds",
    "direction",
    "flapping",
    "nodata",
    "error_after",
    "repeat",
    "send_resolved",
];
/// Labels the alert manager sets itself; a rule may not set them.
pub const RESERVED_LABELS: [&str; 3] = ["alertname", "severity", "alertstate"];

/// Whether `s` is a valid rule or label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where things are written in the `RULE` literal.
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleLayout {
    /// The `const` keyword of `const RULE`.
    pub decl: Option<Position>,
    /// Each top-level key of the map: name, key position, value position.
    pub keys: Vec<(String, Position, Position)>,
}

impl RuleLayout {
    pub(crate) fn key(&self, key: &str) -> Option<Position> {
        self.keys.iter().find(|k| k.0 == key).map(|k| k.1)
    }
    pub(crate) fn value(&self, key: &str) -> Option<Position> {
        self.keys.iter().find(|k| k.0 == key).map(|k| k.2)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(&'static str),
    Other,
}

/// Splits Rhai source into coarse tokens with positions, skipping comments and whitespace.
/// Only as precise as finding the `RULE` literal's keys needs.
fn tokenize(src: &str) -> Vec<(Tok, Position)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    // Advances over `n` chars keeping line/column right.
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if chars.get(*i) == Some(&'\n') {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let pos = Position { line, column: col };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
        } else if c == '/' && next == Some('*') {
            // Rhai block comments nest.
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    advance(&mut i, &mut line, &mut col, 2);
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    advance(&mut i, &mut line, &mut col, 2);
                    if depth == 0 {
                        break;
                    }
                } else {
                    advance(&mut i, &mut line, &mut col, 1);
                }
            }
        } else if c == '"' || c == '`' || c == '\'' {
            let quote = c;
            let mut text = String::new();
            advance(&mut i, &mut line, &mut col, 1);
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && quote != '`' {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                if let Some(&ch) = chars.get(i) {
                    text.push(ch);
                }
                advance(&mut i, &mut line, &mut col, 1);
            }
            advance(&mut i, &mut line, &mut col, 1);
            out.push((Tok::Str(text), pos));
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                word.push(chars[i]);
                advance(&mut i, &mut line, &mut col, 1);
            }
            out.push((Tok::Word(word), pos));
        } else {
            let punct = match (c, next) {
                ('#', Some('{')) => Some("#{"),
                ('{', _) => Some("{"),
                ('}', _) => Some("}"),
                ('[', _) => Some("["),
                (']', _) => Some("]"),
                ('(', _) => Some("("),
                (')', _) => Some(")"),
                (':', Some(':')) => Some("::"),
                (':', _) => Some(":"),
                ('=', Some('=')) => Some("=="),
                ('=', _) => Some("="),
                _ => None,
            };
            match punct {
                Some(p) => {
                    out.push((Tok::Punct(p), pos));
                    advance(&mut i, &mut line, &mut col, p.chars().count());
                }
                None => {
                    out.push((Tok::Other, pos));
                    advance(&mut i, &mut line, &mut col, 1);
                }
            }
        }
    }
    out
}

/// Finds `const RULE = #{ ... }` and the positions of its top-level keys.
pub(crate) fn scan_layout(src: &str) -> RuleLayout {
    let toks = tokenize(src);
    let mut layout = RuleLayout::default();
    let start = toks.windows(4).position(|w| {
        matches!(&w[0].0, Tok::Word(k) if k == "const" || k == "let")
            && matches!(&w[1].0, Tok::Word(n) if n == "RULE")
            && w[2].0 == Tok::Punct("=")
    });
    let Some(start) = start else {
        return layout;
    };
    layout.decl = Some(toks[start].1);
    if toks.get(start + 3).map(|t| &t.0) != Some(&Tok::Punct("#{")) {
        return layout;
    }
    let mut depth = 1usize;
    let mut i = start + 4;
    while i < toks.len() && depth > 0 {
        match &toks[i].0 {
            Tok::Punct("#{" | "{" | "[" | "(") => depth += 1,
            Tok::Punct("}" | "]" | ")") => depth -= 1,
            Tok::Word(k) | Tok::Str(k)
                if depth == 1 && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Punct(":")) =>
            {
                let value_pos = toks.get(i + 2).map_or(toks[i].1, |t| t.1);
                layout.keys.push((k.clone(), toks[i].1, value_pos));
            }
            _ => {}
        }
        i += 1;
    }
    layout
}

/// Where `fn name` is declared in `src` (its `fn` keyword), if it is.
pub(crate) fn find_fn(src: &str, name: &str) -> Option<Position> {
    tokenize(src)
        .windows(2)
        .find_map(|w| match (&w[0].0, &w[1].0) {
            (Tok::Word(f), Tok::Word(n)) if f == "fn" && n == name => Some(w[0].1),
            _ => None,
        })
}

/// The hint for a `RULE` that is missing or malformed.
const RULE_EXAMPLE: &str = "start the file with `const RULE = #{ name: \"my_rule\", severity: \"warning\" };` (optional keys: hold, labels, summary)";

/// Reads the `RULE` literal of a compiled (not yet optimised) rule. Every problem found is
/// returned, each positioned in `source`.
pub(crate) fn read_meta(ast: &AST, source: &str, file: &Path) -> Result<RuleMeta, Vec<Diagnostic>> {
    let layout = scan_layout(source);
    let diag = |pos: Option<Position>, msg: String| Diagnostic::new(file, Some(source), pos, msg);
    let decl = layout.decl.or(Some(Position { line: 1, column: 1 }));

    let literal = ast
        .iter_literal_variables(true, false)
        .find(|(name, ..)| *name == "RULE")
        .map(|(_, _, value)| value);
    let Some(value) = literal else {
        let as_let = ast
            .iter_literal_variables(false, true)
            .any(|(name, ..)| name == "RULE");
        let d = if as_let {
            diag(decl, "`RULE` is declared with `let`".into())
                .with_hint("declare it with `const RULE = #{ ... };`")
        } else if layout.decl.is_some() {
            diag(decl, "`RULE` must be a literal map".into()).with_hint(
                "write the values out (no variables, function calls or string interpolation): the metadata is read without running the script",
            )
        } else {
            diag(decl, "no `const RULE = #{ ... }` metadata".into()).with_hint(RULE_EXAMPLE)
        };
        return Err(vec![d]);
    };
    let Some(map) = value.read_lock::<Map>().map(|m| m.clone()) else {
        return Err(vec![
            diag(
                decl,
                format!("`RULE` must be a map, found {}", value.type_name()),
            )
            .with_hint(RULE_EXAMPLE),
        ]);
    };

    let mut errors = Vec::new();
    for key in map.keys() {
        if RULE_KEYS.contains(&key.as_str()) {
            continue;
        }
        let hint = if matches!(key.as_str(), "for" | "for_" | "duration" | "pending") {
            "the pending duration is called `hold` (`for` is a Rhai keyword): `hold: \"5m\"`"
                .to_string()
        } else if let Some(s) = did_you_mean(key, RULE_KEYS) {
            format!("did you mean `{s}`?")
        } else {
            format!("known keys: {}", RULE_KEYS.join(", "))
        };
        errors.push(
            diag(
                layout.key(key).or(decl),
                format!("unknown key `{key}` in RULE"),
            )
            .with_hint(hint),
        );
    }

    let str_field = |key: &str, errors: &mut Vec<Diagnostic>| -> Option<String> {
        let v = map.get(key)?;
        match v.read_lock::<ImmutableString>() {
            Some(s) => Some(s.to_string()),
            None => {
                errors.push(diag(
                    layout.value(key).or(decl),
                    format!("RULE.{key} must be a string, found {}", v.type_name()),
                ));
                None
            }
        }
    };

    let name = match str_field("name", &mut errors) {
        Some(n) if is_identifier(&n) => Some(n),
        Some(n) => {
            errors.push(
                diag(
                    layout.value("name").or(decl),
                    format!("rule name \"{n}\" is not a valid name"),
                )
                .with_hint(
                    "use letters, digits and `_`, not starting with a digit, e.g. \"high_cpu\"",
                ),
            );
            None
        }
        None if !map.contains_key("name") => {
            errors.push(
                diag(decl, "RULE has no `name`".into())
                    .with_hint("add `name: \"my_rule\"` (unique across rule files)"),
            );
            None
        }
        None => None,
    };

    let policy = super::policy::read_policy(&map, &layout, source, file, decl, &mut errors);
    let severity = match str_field("severity", &mut errors) {
        Some(s) => match Severity::parse(&s) {
            Some(sev) => Some(sev),
            None => {
                let names = ["info", "warning", "critical"];
                let hint = match did_you_mean(&s, names) {
                    Some(m) => format!("did you mean \"{m}\"? (one of info, warning, critical)"),
                    None => "one of \"info\", \"warning\", \"critical\"".into(),
                };
                errors.push(
                    diag(
                        layout.value("severity").or(decl),
                        format!("unknown severity \"{s}\""),
                    )
                    .with_hint(hint),
                );
                None
            }
        },
        // With thresholds the severities are theirs; `severity` then only names the level
        // of the rule's nodata and error alerts, and defaults to the lowest threshold's.
        None if !map.contains_key("severity") && !policy.thresholds.is_empty() => {
            policy.thresholds.first().map(|t| t.severity)
        }
        None if !map.contains_key("severity") => {
            errors.push(
                diag(decl, "RULE has no `severity`".into())
                    .with_hint("add `severity: \"warning\"` (info, warning or critical)"),
            );
            None
        }
        None => None,
    };

    let hold = match map.get("hold") {
        None => Duration::ZERO,
        Some(v) => match super::policy::parse_duration("hold", v) {
            Ok(d) => d,
            Err(msg) => {
                errors.push(
                    diag(layout.value("hold").or(decl), msg)
                        .with_hint("write it like \"30s\", \"5m\" or \"1h 30m\""),
                );
                Duration::ZERO
            }
        },
    };

    let mut labels = Labels::new();
    if let Some(v) = map.get("labels") {
        let pos = layout.value("labels").or(decl);
        match v.read_lock::<Map>() {
            None => errors.push(diag(
                pos,
                format!(
                    "RULE.labels must be a map like #{{ team: \"ops\" }}, found {}",
                    v.type_name()
                ),
            )),
            Some(m) => {
                for (k, v) in m.iter() {
                    if RESERVED_LABELS.contains(&k.as_str()) {
                        errors.push(
                            diag(pos, format!("label `{k}` is set by telltale itself"))
                                .with_hint("remove it: `alertname` is the rule name and `severity` comes from RULE.severity"),
                        );
                    } else if !is_identifier(k) {
                        errors.push(
                            diag(pos, format!("label name `{k}` is not valid")).with_hint(
                                "use letters, digits and `_`, not starting with a digit",
                            ),
                        );
                    } else if let Some(s) = v.read_lock::<ImmutableString>() {
                        labels.insert(k.to_string(), s.to_string());
                    } else {
                        errors.push(diag(
                            pos,
                            format!("label `{k}` must be a string, found {}", v.type_name()),
                        ));
                    }
                }
            }
        }
    }

    let summary = str_field("summary", &mut errors).unwrap_or_default();

    // `kind: "scaling"` and its `scaling: #{ .. }` (see scaling.rs).
    let scaling = super::scaling::read_spec(&map, &layout, source, file, decl, &mut errors);

    match (name, severity) {
        (Some(name), Some(severity)) if errors.is_empty() => Ok(RuleMeta {
            name,
            severity,
            hold,
            labels,
            summary,
            file: file.to_path_buf(),
            policy,
            scaling,
        }),
        _ => Err(errors),
    }
}

/// Turns a Rhai compile error into a diagnostic with a hint for the common mistakes.
pub(crate) fn parse_error_diagnostic(err: &ParseError, source: &str, file: &Path) -> Diagnostic {
    let pos = position_of(err.1);
    let line = pos.and_then(|p| source.lines().nth(p.line.saturating_sub(1)));
    let at = |p: Option<Position>| -> String {
        match (line, p) {
            (Some(l), Some(p)) => l.chars().skip(p.column.saturating_sub(1)).collect(),
            _ => String::new(),
        }
    };
    let rest = at(pos);
    let message = match &*err.0 {
        // Rhai's own words ("Expression exceeds maximum complexity") name no limit.
        ParseErrorType::ExprTooDeep => format!(
            "expression nested too deeply (the limit is {} levels inside a function, {} outside)",
            MAX_EXPR_DEPTHS.1, MAX_EXPR_DEPTHS.0
        ),
        other => other.to_string(),
    };
    let d = Diagnostic::new(file, Some(source), pos, message);
    let mentions = |word: &str| {
        rest.starts_with(word)
            || line
                .is_some_and(|l| l.contains(&format!("{word}(")) || l.contains(&format!("{word} ")))
    };
    let uses_for_key = line.is_some_and(|l| {
        let t = l.trim_start();
        t.starts_with("for") && t[3..].trim_start().starts_with(':')
    });
    if uses_for_key {
        return d.with_hint(
            "`for` is a Rhai keyword and cannot be a map key: write the pending duration as `hold: \"5m\"`",
        );
    }
    match &*err.0 {
        ParseErrorType::ExprTooDeep => d.with_hint(
            "split the expression: compute parts of it into variables with `let` first",
        ),
        ParseErrorType::VariableUndefined(name) => d.with_hint(format!(
            "declare `{name}` with `let` first; note that functions cannot see variables or constants declared outside them"
        )),
        _ if mentions("eval") => d.with_hint("`eval` is disabled in rules"),
        _ if mentions("import") => {
            d.with_hint("`import` is disabled in rules: put everything a rule needs in its file")
        }
        _ => d,
    }
}
