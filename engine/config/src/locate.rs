//! Finds where a key path (`notifiers[1].url`) is written in block-style YAML.
//!
//! serde_yaml reports positions for structural errors but gives parsed values no spans, so
//! semantic checks that run after parsing use this walker to point at the right line. It
//! understands the block style operators write (nested mappings, `- ` sequences, keys on the
//! dash line) and falls back to the nearest enclosing element it could find.

use telltale_diagnostics::Position;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index, from 0.
    Index(usize),
}

impl Seg {
    /// A key step.
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// A line of the current region: its number, the column its content starts at (0-based,
/// after a virtual `- ` prefix has been stripped) and that content.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    number: usize,
    indent: usize,
    content: &'a str,
}

/// The position of the last element of `path` that could be found (the whole path when
/// possible), or `None` when not even the first key is there.
pub fn locate(source: &str, path: &[Seg]) -> Option<Position> {
    let mut region: Vec<Line> = source
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let content = raw.trim_start();
            if content.is_empty() || content.starts_with('#') || content == "---" {
                return None;
            }
            Some(Line {
                number: i + 1,
                indent: raw.len() - content.len(),
                content,
            })
        })
        .collect();
    let mut found = None;
    for seg in path {
        let Some(level) = region.first().map(|l| l.indent) else {
            break;
        };
        let hit = match seg {
            Seg::Key(key) => region.iter().position(|l| {
                l.indent == level
                    && (l.content.starts_with(&format!("{key}:"))
                        || l.content.starts_with(&format!("\"{key}\":"))
                        || l.content.starts_with(&format!("'{key}':")))
            }),
            Seg::Index(n) => region
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    l.indent == level && (l.content.starts_with("- ") || l.content == "-")
                })
                .nth(*n)
                .map(|(i, _)| i),
        };
        let Some(i) = hit else { break };
        let line = region[i];
        found = Some(Position {
            line: line.number,
            column: line.indent + 1,
        });
        // The children: following lines indented deeper than this one (plus, for a
        // sequence item, the rest of the dash line as a virtual first line).
        let mut children = Vec::new();
        if let Seg::Index(_) = seg {
            let rest = line.content[1..].trim_start();
            if !rest.is_empty() {
                children.push(Line {
                    number: line.number,
                    indent: line.indent + (line.content.len() - rest.len()),
                    content: rest,
                });
            }
        }
        children.extend(
            region[i + 1..]
                .iter()
                .take_while(|l| l.indent > line.indent)
                .copied(),
        );
        region = children;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
engine:
  retention: 1h
collectors:
  - name: a
    plugin: system
  # a comment
  - name: b
    plugin: ./b.wasm
    grants:
      files: [/proc]
notifiers:
  -
    name: x
    kind: webhook
    url: http://h/
";

    fn at(path: &[Seg]) -> Option<(usize, usize)> {
        locate(SRC, path).map(|p| (p.line, p.column))
    }

    #[test]
    fn finds_keys_items_and_dash_line_keys() {
        assert_eq!(
            at(&[Seg::key("engine"), Seg::key("retention")]),
            Some((2, 3))
        );
        assert_eq!(at(&[Seg::key("collectors"), Seg::Index(1)]), Some((7, 3)));
        assert_eq!(
            at(&[Seg::key("collectors"), Seg::Index(1), Seg::key("name")]),
            Some((7, 5))
        );
        assert_eq!(
            at(&[
                Seg::key("collectors"),
                Seg::Index(1),
                Seg::key("grants"),
                Seg::key("files")
            ]),
            Some((10, 7))
        );
        assert_eq!(
            at(&[Seg::key("notifiers"), Seg::Index(0), Seg::key("url")]),
            Some((15, 5))
        );
    }

    #[test]
    fn falls_back_to_the_nearest_found_element() {
        assert_eq!(
            at(&[Seg::key("collectors"), Seg::Index(0), Seg::key("interval")]),
            Some((4, 3))
        );
        assert_eq!(at(&[Seg::key("routes")]), None);
    }
}
