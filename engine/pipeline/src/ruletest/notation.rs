//! promtool's notation for test input, as pure functions: the expanding value notation
//! (`'1+2x3 _ stale'`) and series selectors (`name{a="b"}`).
//!
//! The value notation, exactly as `promtool test rules` reads it
//! (`docs/configuration/unit_testing_rules.md`):
//!
//! | item | expands to |
//! |---|---|
//! | `a` | one value |
//! | `a+bxn` | `a a+b a+2b … a+nb` (n + 1 values) |
//! | `a-bxn` | `a a-b … a-nb` (n + 1 values) |
//! | `axn` | `a` n + 1 times (`a+0xn`) |
//! | `_` | one missing sample |
//! | `_xn` | n missing samples |
//! | `stale` | a staleness marker: the series ends until a value follows |
//!
//! Items are separated by white space; sample k of a series is stamped k × `interval`.

use telltale_model::Labels;

/// One step of an input series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// A sample with this value.
    Value(f64),
    /// No sample at this step (`_`).
    Missing,
    /// A staleness marker (`stale`): the series has ended.
    Stale,
}

/// Why a `values` string or a series selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationError {
    /// Where in the string the problem is, in characters from 0.
    pub offset: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for NotationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

/// The most steps one `values` string may expand to: a typo such as `1x100000000` would
/// otherwise take all the memory there is.
pub const MAX_STEPS: usize = 1_000_000;

fn err(offset: usize, message: impl Into<String>) -> NotationError {
    NotationError {
        offset,
        message: message.into(),
    }
}

/// Expands a `values` string into its steps, oldest first.
pub fn parse_values(text: &str) -> Result<Vec<Slot>, NotationError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() {
                end = i;
                break;
            }
            chars.next();
        }
        // Offsets are in characters, for the column shown to people.
        let at = text[..start].chars().count();
        expand_item(&text[start..end], at, &mut out)?;
        if out.len() > MAX_STEPS {
            return Err(err(
                at,
                format!("more than {MAX_STEPS} steps; is a count too large?"),
            ));
        }
    }
    Ok(out)
}

/// Expands one white-space-free item, found at character `at` of the string.
fn expand_item(item: &str, at: usize, out: &mut Vec<Slot>) -> Result<(), NotationError> {
    if item == "stale" {
        out.push(Slot::Stale);
        return Ok(());
    }
    if let Some(rest) = item.strip_prefix('_') {
        if rest.is_empty() {
            out.push(Slot::Missing);
            return Ok(());
        }
        let Some(count) = rest.strip_prefix('x') else {
            return Err(err(
                at + 1,
                format!("`{item}`: after `_` expected `x` and a count (like `_x3`)"),
            ));
        };
        let n = parse_count(count, at + 2)?;
        out.extend(std::iter::repeat_n(Slot::Missing, n));
        return Ok(());
    }
    let (start, len) = number_prefix(item).ok_or_else(|| {
        err(
            at,
            format!("`{item}`: expected a number, `_` or `stale` (values look like `1 2 3`, `1+2x10`, `5x3`, `_`, `stale`)"),
        )
    })?;
    let rest = &item[len..];
    if rest.is_empty() {
        out.push(Slot::Value(start));
        return Ok(());
    }
    let rest_at = at + item[..len].chars().count();
    let (step, count_text, count_at) = if let Some(count) = rest.strip_prefix('x') {
        (0.0, count, rest_at + 1)
    } else if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        let after = &rest[1..];
        let (b, blen) = unsigned_number_prefix(after).ok_or_else(|| {
            err(
                rest_at + 1,
                format!("`{item}`: expected a step after `{sign}` (like `1{sign}2x10`)"),
            )
        })?;
        let tail = &after[blen..];
        let x_at = rest_at + 1 + after[..blen].chars().count();
        let Some(count) = tail.strip_prefix('x') else {
            return Err(err(
                x_at,
                format!("`{item}`: expected `x` and a count after the step (like `1{sign}2x10`)"),
            ));
        };
        (if sign == '-' { -b } else { b }, count, x_at + 1)
    } else {
        return Err(err(
            rest_at,
            format!(
                "`{item}`: unexpected `{rest}` after the number; write `a+bxn`, `a-bxn` or `axn`"
            ),
        ));
    };
    let n = parse_count(count_text, count_at)?;
    if n >= MAX_STEPS {
        return Err(err(
            count_at,
            format!("`{item}`: more than {MAX_STEPS} steps; is the count too large?"),
        ));
    }
    // a + k·b computed afresh for each k (not by repeated addition), so `0.1+0.1x9` ends
    // on the same float as 0.1 + 9 × 0.1 written out.
    out.extend((0..=n).map(|k| Slot::Value(start + k as f64 * step)));
    Ok(())
}

/// A repeat count: digits only.
fn parse_count(text: &str, at: usize) -> Result<usize, NotationError> {
    if text.is_empty() {
        return Err(err(at, "expected a count after x"));
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(err(
            at,
            format!("expected a count after x, a whole number, got `{text}`"),
        ));
    }
    text.parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_STEPS)
        .ok_or_else(|| {
            err(
                at,
                format!("count `{text}` is too large (at most {MAX_STEPS})"),
            )
        })
}

/// The signed number at the start of `s` and its length in bytes.
fn number_prefix(s: &str) -> Option<(f64, usize)> {
    let sign_len = usize::from(s.starts_with('+') || s.starts_with('-'));
    let (v, len) = unsigned_number_prefix(&s[sign_len..])?;
    Some((if s.starts_with('-') { -v } else { v }, sign_len + len))
}

/// The unsigned number at the start of `s` (`12`, `1.5`, `.5`, `1e3`, `Inf`, `NaN`) and
/// its length in bytes. An `x` never belongs to a number, so `1x3` is `1` then `x3`.
fn unsigned_number_prefix(s: &str) -> Option<(f64, usize)> {
    for word in ["Inf", "inf", "NaN", "nan"] {
        if let Some(rest) = s.strip_prefix(word)
            && !rest.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            let v = if word.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                f64::INFINITY
            };
            return Some((v, word.len()));
        }
    }
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > from
    };
    let whole = digits(&mut i);
    let mut frac = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac = digits(&mut i);
        if !frac && !whole {
            return None;
        }
    }
    if !whole && !frac {
        return None;
    }
    // An exponent only when digits follow, so `1e` is the number 1 then garbage.
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if digits(&mut j) {
            i = j;
        }
    }
    s[..i].parse::<f64>().ok().map(|v| (v, i))
}

/// Parses a series selector: `name` or `name{label="value", ...}` (Prometheus notation;
/// `\"`, `\\` and `\n` escapes in values).
pub fn parse_selector(text: &str) -> Result<(String, Labels), NotationError> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let ident = |i: &mut usize, metric: bool| -> String {
        let from = *i;
        while *i < chars.len() {
            let c = chars[*i];
            let ok = c == '_'
                || c.is_ascii_alphabetic()
                || (metric && c == ':')
                || (*i > from && c.is_ascii_digit());
            if !ok {
                break;
            }
            *i += 1;
        }
        chars[from..*i].iter().collect()
    };
    skip_ws(&mut i);
    let name = ident(&mut i, true);
    if name.is_empty() {
        return Err(err(
            i,
            "expected a metric name (like `system_cpu_usage_percent{cpu=\"total\"}`)",
        ));
    }
    let mut labels = Labels::new();
    skip_ws(&mut i);
    if i < chars.len() && chars[i] == '{' {
        i += 1;
        loop {
            skip_ws(&mut i);
            if i < chars.len() && chars[i] == '}' {
                i += 1;
                break;
            }
            let key = ident(&mut i, false);
            if key.is_empty() {
                return Err(err(i, "expected a label name or `}`"));
            }
            skip_ws(&mut i);
            if i >= chars.len() || chars[i] != '=' {
                return Err(err(
                    i,
                    format!(
                        "expected `=` after label `{key}` (only `=` matchers describe a series)"
                    ),
                ));
            }
            i += 1;
            skip_ws(&mut i);
            if i >= chars.len() || chars[i] != '"' {
                return Err(err(i, format!("expected a quoted value for label `{key}`")));
            }
            let open = i;
            i += 1;
            let mut value = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err(open, "unterminated label value: a `\"` is missing")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => value.push('\n'),
                            Some(c @ ('"' | '\\')) => value.push(*c),
                            _ => {
                                return Err(err(
                                    i,
                                    "unknown escape in a label value (use `\\\"`, `\\\\` or `\\n`)",
                                ));
                            }
                        }
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(err(open, format!("label `{key}` is given twice")));
            }
            skip_ws(&mut i);
            match chars.get(i) {
                Some(',') => i += 1,
                Some('}') => {
                    i += 1;
                    break;
                }
                _ => return Err(err(i, "expected `,` or `}` after a label value")),
            }
        }
    }
    skip_ws(&mut i);
    if i < chars.len() {
        return Err(err(
            i,
            format!(
                "unexpected `{}` after the selector",
                chars[i..].iter().collect::<String>()
            ),
        ));
    }
    Ok((name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Slot::{Missing, Stale, Value};

    fn values(text: &str) -> Vec<Slot> {
        match parse_values(text) {
            Ok(v) => v,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn nums(v: &[f64]) -> Vec<Slot> {
        v.iter().map(|x| Value(*x)).collect()
    }

    /// Every example of ANCHORS.md section 1 (promtool's docs), expanded by hand.
    #[test]
    fn the_documented_examples_expand_as_promtool_does() {
        assert_eq!(values("-2+4x3"), nums(&[-2.0, 2.0, 6.0, 10.0]));
        assert_eq!(values(" 1-2x4"), nums(&[1.0, -1.0, -3.0, -5.0, -7.0]));
        assert_eq!(values(" 1x4"), nums(&[1.0, 1.0, 1.0, 1.0, 1.0]));
        assert_eq!(
            values(" 1 _x3 stale"),
            vec![Value(1.0), Missing, Missing, Missing, Stale]
        );
    }

    #[test]
    fn the_general_forms_expand_to_n_plus_one_values() {
        // a+bxn → a, a+b, …, a+nb: 0+10x2 is 0 10 20.
        assert_eq!(values("0+10x2"), nums(&[0.0, 10.0, 20.0]));
        // a-bxn: 5-0.5x2 is 5 4.5 4.
        assert_eq!(values("5-0.5x2"), nums(&[5.0, 4.5, 4.0]));
        // axn is a+0xn.
        assert_eq!(values("7x0"), nums(&[7.0]));
        assert_eq!(values("1+0x2"), values("1x2"));
        // Items concatenate in order; `_` is one missing sample.
        assert_eq!(
            values("1 2 _ 3 stale 4"),
            vec![
                Value(1.0),
                Value(2.0),
                Missing,
                Value(3.0),
                Stale,
                Value(4.0)
            ]
        );
        assert_eq!(values(""), vec![]);
        assert_eq!(values("1e3 .5 +2"), nums(&[1000.0, 0.5, 2.0]));
        assert_eq!(values("_x0"), vec![]);
    }

    #[test]
    fn steps_are_computed_from_the_start_not_accumulated() {
        // 0.1 added nine times is 0.9999999999999999; 0.1 + 9 × 0.1 is exactly 1.
        let v = values("0.1+0.1x9");
        assert_eq!(v.last(), Some(&Value(1.0)));
    }

    #[test]
    fn bad_notation_says_what_was_expected_and_where() {
        let e = parse_values("1+2x").unwrap_err();
        assert_eq!(e.message, "expected a count after x");
        assert_eq!(e.offset, 4);
        let e = parse_values("0 1+x3").unwrap_err();
        assert!(e.message.contains("expected a step after `+`"), "{e}");
        assert_eq!(e.offset, 4);
        let e = parse_values("1+2").unwrap_err();
        assert!(e.message.contains("expected `x` and a count"), "{e}");
        let e = parse_values("1x2.5").unwrap_err();
        assert!(e.message.contains("whole number"), "{e}");
        let e = parse_values("high").unwrap_err();
        assert!(
            e.message.contains("expected a number, `_` or `stale`"),
            "{e}"
        );
        let e = parse_values("_3").unwrap_err();
        assert!(e.message.contains("`_x3`"), "{e}");
        let e = parse_values("1x99999999999").unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
        let e = parse_values("1y").unwrap_err();
        assert!(e.message.contains("unexpected `y`"), "{e}");
    }

    #[test]
    fn selectors_read_names_and_labels() {
        let (name, labels) = parse_selector(r#"disk{mount="/", device="sda1"}"#).unwrap();
        assert_eq!(name, "disk");
        assert_eq!(labels.get("mount").map(String::as_str), Some("/"));
        assert_eq!(labels.get("device").map(String::as_str), Some("sda1"));
        let (name, labels) = parse_selector("up").unwrap();
        assert_eq!((name.as_str(), labels.len()), ("up", 0));
        let (_, labels) = parse_selector(r#"x{a="q\"uote\\",}"#).unwrap();
        assert_eq!(labels.get("a").map(String::as_str), Some("q\"uote\\"));
        assert_eq!(parse_selector("ns:rate_5m{}").unwrap().0, "ns:rate_5m");
    }

    #[test]
    fn bad_selectors_are_refused() {
        for (text, want) in [
            ("", "expected a metric name"),
            ("{a=\"b\"}", "expected a metric name"),
            ("x{a=b}", "quoted value"),
            ("x{a!=\"b\"}", "expected `=`"),
            ("x{a=\"b\"", "expected `,` or `}`"),
            ("x{a=\"b", "unterminated"),
            ("x{a=\"1\",a=\"2\"}", "twice"),
            ("x y", "unexpected `y`"),
        ] {
            let e = parse_selector(text).unwrap_err();
            assert!(e.message.contains(want), "{text:?}: {e}");
        }
    }
}
