//! Errors in things an operator wrote (config files, rule files), rendered the way
//! compilers do: `file:line:column: error: message`, the offending line with a caret, and a
//! hint that says how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a text file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// An error in a file a person wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// Where in it, when known.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// The offending source line, for the snippet.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `position` in `file`, whose text is `source` (used for the snippet).
    pub fn new(
        file: impl Into<PathBuf>,
        source: Option<&str>,
        position: Option<Position>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let source_line = match (source, position) {
            (Some(src), Some(pos)) => src
                .lines()
                .nth(pos.line.saturating_sub(1))
                .map(str::to_string),
            _ => None,
        };
        Diagnostic {
            file: file.into(),
            position,
            message: message.into(),
            hint: None,
            source_line,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// `file:line:column` (or just `file`).
    pub fn location(&self) -> String {
        location(&self.file, self.position)
    }
}

/// `file:line:column`, or `file` when the position is unknown.
pub fn location(file: &Path, position: Option<Position>) -> String {
    match position {
        Some(p) => format!("{}:{}:{}", file.display(), p.line, p.column),
        None => file.display().to_string(),
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.location(), self.message)?;
        if let (Some(line), Some(pos)) = (&self.source_line, self.position) {
            let gutter = pos.line.to_string();
            let pad = " ".repeat(gutter.len());
            write!(f, "\n{pad} |\n{gutter} | {line}\n{pad} | ")?;
            // Tabs keep their width in the caret line so the caret stays under the column.
            for c in line.chars().take(pos.column.saturating_sub(1)) {
                f.write_str(if c == '\t' { "\t" } else { " " })?;
            }
            f.write_str("^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Several diagnostics reported together (e.g. every problem `telltale check` found).
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_snippet_caret_and_hint() {
        let src = "engine:\n  retention: 1h\n  retenton: 2h\n";
        let d = Diagnostic::new(
            "telltale.yaml",
            Some(src),
            Some(Position { line: 3, column: 3 }),
            "unknown field `retenton`",
        )
        .with_hint("did you mean `retention`?");
        let text = d.to_string();
        assert_eq!(
            text,
            "telltale.yaml:3:3: error: unknown field `retenton`\n  |\n3 |   retenton: 2h\n  |   ^\n  = hint: did you mean `retention`?"
        );
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["retention", "log_level", "data_dir"];
        assert_eq!(did_you_mean("retenton", names), Some("retention"));
        assert_eq!(did_you_mean("zzz", names), None);
    }
}
