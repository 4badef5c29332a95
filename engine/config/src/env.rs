//! `${NAME}` and `${NAME:-default}` substitution from the environment, done on the text
//! before parsing so any value (a secret, a URL, a port) can come from the environment.
//! `$${` writes a literal `${`. Comments are left alone, so a commented-out placeholder
//! does not demand its variable.
//!
//! Substitution shifts columns on the lines it touches; [`Substituted::original_position`]
//! maps a position in the substituted text back to the text the operator wrote.

use std::path::Path;

use telltale_diagnostics::{Diagnostic, Diagnostics, Position};

/// The text after substitution and what is needed to map positions back.
#[derive(Debug)]
pub(crate) struct Substituted {
    pub(crate) text: String,
    /// Per replacement: (line, column where it starts in the new text, new length,
    /// original length), columns in characters.
    edits: Vec<(usize, usize, usize, usize)>,
}

impl Substituted {
    /// Maps a position in the substituted text to the original text.
    pub(crate) fn original_position(&self, p: Position) -> Position {
        // Edits are recorded in order, with starts in new-text columns.
        let mut shift: isize = 0;
        for &(line, start, new_len, old_len) in &self.edits {
            if line != p.line || p.column < start {
                continue;
            }
            if p.column < start + new_len {
                // Inside a substituted value: point at the placeholder.
                return Position {
                    line: p.line,
                    column: (start as isize + shift) as usize,
                };
            }
            shift += old_len as isize - new_len as isize;
        }
        Position {
            line: p.line,
            column: (p.column as isize + shift).max(1) as usize,
        }
    }
}

/// Substitutes placeholders using `lookup`; every unset variable without a default is
/// reported with its position.
pub(crate) fn substitute(
    source: &str,
    file: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Substituted, Diagnostics> {
    let mut text = String::with_capacity(source.len());
    let mut edits = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in source.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let comment_start = comment_start(line);
        let chars: Vec<char> = line.chars().collect();
        // Columns shift by earlier edits on this line; track the new text's column.
        let mut new_col = 1usize;
        let mut i = 0usize;
        while i < chars.len() {
            let in_comment = comment_start.is_some_and(|c| i >= c);
            if !in_comment
                && chars[i] == '$'
                && chars.get(i + 1) == Some(&'$')
                && chars.get(i + 2) == Some(&'{')
            {
                text.push_str("${");
                edits.push((line_no, new_col, 2, 3));
                new_col += 2;
                i += 3;
                continue;
            }
            if !in_comment && chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    problems.push(
                        Diagnostic::new(
                            file,
                            Some(source),
                            Some(Position {
                                line: line_no,
                                column: i + 1,
                            }),
                            "unterminated `${` placeholder",
                        )
                        .with_hint("write `${NAME}`, or `$${` for a literal `${`"),
                    );
                    break;
                };
                let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner.as_str(), None),
                };
                let original_len = close + 3;
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                let value = if !valid {
                    problems.push(
                        Diagnostic::new(
                            file,
                            Some(source),
                            Some(Position { line: line_no, column: i + 1 }),
                            format!("`${{{inner}}}` is not a valid placeholder"),
                        )
                        .with_hint("variable names use letters, digits and `_`: `${NAME}` or `${NAME:-default}`"),
                    );
                    String::new()
                } else {
                    match (lookup(name), default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => d.to_string(),
                        (None, None) => {
                            problems.push(
                                Diagnostic::new(
                                    file,
                                    Some(source),
                                    Some(Position { line: line_no, column: i + 1 }),
                                    format!("environment variable `{name}` is not set"),
                                )
                                .with_hint(format!(
                                    "export {name}=... before starting telltale, or give a default: `${{{name}:-value}}`"
                                )),
                            );
                            String::new()
                        }
                    }
                };
                let value_len = value.chars().count();
                text.push_str(&value);
                edits.push((line_no, new_col, value_len, original_len));
                new_col += value_len;
                i += original_len;
                continue;
            }
            text.push(chars[i]);
            new_col += 1;
            i += 1;
        }
    }
    if problems.is_empty() {
        Ok(Substituted { text, edits })
    } else {
        Err(Diagnostics(problems))
    }
}

/// The character index where a YAML comment starts on this line, if any: a `#` at the
/// start or after whitespace, outside quotes.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.chars().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return Some(i),
            None => {}
        }
        prev = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "SHORT" => Some("ab".into()),
            "LONG" => Some("0123456789".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_defaults_escapes_and_skips_comments() {
        let s = substitute(
            "a: ${SHORT} # ${NOPE}\nb: ${NOPE:-dflt}\nc: $${LITERAL}\n",
            Path::new("f"),
            lookup,
        )
        .unwrap();
        assert_eq!(s.text, "a: ab # ${NOPE}\nb: dflt\nc: ${LITERAL}\n");
    }

    #[test]
    fn reports_unset_variables_with_position() {
        let err = substitute(
            "x: 1\nurl: http://${HOST}:${PORT}/\n",
            Path::new("f"),
            lookup,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("f:2:13: error: environment variable `HOST` is not set"),
            "{err}"
        );
        assert!(
            err.contains("f:2:21: error: environment variable `PORT` is not set"),
            "{err}"
        );
    }

    #[test]
    fn maps_positions_back() {
        let s = substitute("k: ${LONG} ${SHORT} zz\n", Path::new("f"), lookup).unwrap();
        assert_eq!(s.text, "k: 0123456789 ab zz\n");
        // `zz` is at column 18 in the new text and column 21 in the original.
        let p = s.original_position(Position {
            line: 1,
            column: 18,
        });
        assert_eq!(p.column, 21);
        // Inside the long value: the placeholder's start.
        let p = s.original_position(Position { line: 1, column: 8 });
        assert_eq!(p.column, 4);
    }
}
