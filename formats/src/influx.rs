//! InfluxDB line protocol, as posted to `/api/v2/write` (v2) and `/write` (v1).
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! Each numeric field becomes one [`ParsedSample`]:
//!
//! * name: `<measurement>_<field>`, or just `<measurement>` for a field named `value`, then
//!   mapped onto the Prometheus charset by [`crate::sanitize_metric_name`] (every character
//!   outside `[a-zA-Z0-9_:]` becomes `_`, a leading digit gets a `_` prefix): `cpu.load,host=a
//!   short-term=0.5` gives `cpu_load_short_term{host="a"}`;
//! * labels: the tags, keys sanitised by [`crate::sanitize_label_name`], sorted;
//! * value: floats as written; integers (`12i`) and unsigned integers (`12u`) converted to
//!   f64; booleans (`t`, `T`, `true`, `True`, `TRUE`, and the `f` forms) as 1 and 0;
//! * timestamp: the line's timestamp converted from the request precision to milliseconds
//!   (rounded down), or `default_ts_ms` when the line has none.
//!
//! String fields (`msg="hello"`) are validated and skipped, because Telltale stores numbers
//! only. A line whose fields are all strings is valid but gives no sample: it is skipped
//! too (Telegraf mixes such lines into its batches), and [`parse_lines_counted`] says how
//! many were, so the caller can count what it did not store.
//!
//! Escapes follow the Influx spec: in measurements `\,` and `\ `; in tag keys, tag values and
//! field keys `\,`, `\=` and `\ `; everywhere `\\` is one backslash, and a backslash before
//! any other character is kept literally. In string field values `\"` and `\\`. A quoted
//! string may span lines. Blank lines and lines starting with `#` are skipped; a trailing
//! `\r` is tolerated.
//!
//! Strictness beyond the spec: `NaN`/`Inf` floats, empty tag values, duplicate tag keys and
//! two fields giving the same sample name are errors (Influx would reject or overwrite).

use std::borrow::Cow;

use crate::names::{metric_char, push_sanitized, sanitize_label_name, sanitize_metric_name};
use crate::{ParseError, ParsedSample, parse_plain_float};

/// Timestamp unit of a write request (`precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default of both APIs).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (v1 `/write` only).
    Minutes,
    /// Hours (v1 `/write` only).
    Hours,
}

impl Precision {
    /// Parses a `precision` parameter: v2 spellings `ns`, `us`, `ms`, `s` and v1 spellings
    /// `n`, `u`, `ms`, `s`, `m`, `h`.
    ///
    /// ```
    /// use telltale_formats::influx::Precision;
    /// assert_eq!(Precision::from_param("us"), Some(Precision::Microseconds));
    /// assert_eq!(Precision::from_param("n"), Some(Precision::Nanoseconds));
    /// assert_eq!(Precision::from_param("fortnight"), None);
    /// ```
    pub fn from_param(s: &str) -> Option<Precision> {
        Some(match s {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "nanoseconds",
            Precision::Microseconds => "microseconds",
            Precision::Milliseconds => "milliseconds",
            Precision::Seconds => "seconds",
            Precision::Minutes => "minutes",
            Precision::Hours => "hours",
        }
    }

    /// Converts a timestamp in this unit to milliseconds (rounding down), `None` on overflow.
    fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(t.div_euclid(1_000_000)),
            Precision::Microseconds => Some(t.div_euclid(1_000)),
            Precision::Milliseconds => Some(t),
            Precision::Seconds => t.checked_mul(1_000),
            Precision::Minutes => t.checked_mul(60_000),
            Precision::Hours => t.checked_mul(3_600_000),
        }
    }
}

/// Parses a whole line-protocol body. All or nothing: on error nothing is returned, and the
/// error names the first bad line and column.
///
/// ```
/// use telltale_formats::influx::{parse_lines, Precision};
///
/// let body = "cpu,host=a,region=eu usage_user=12.5,cores=8i 1700000000000000000\n\
///             temp value=21.5\n";
/// let samples = parse_lines(body, Precision::Nanoseconds, 42)?;
/// assert_eq!(samples.len(), 3);
/// assert_eq!(samples[0].name, "cpu_usage_user");
/// assert_eq!(samples[0].label("host"), Some("a"));
/// assert_eq!(samples[0].timestamp_ms, Some(1_700_000_000_000));
/// assert_eq!(samples[1].name, "cpu_cores");
/// assert_eq!(samples[1].value, 8.0);
/// assert_eq!(samples[2].name, "temp");
/// assert_eq!(samples[2].timestamp_ms, Some(42));
///
/// let err = parse_lines("cpu usage=abc\n", Precision::Seconds, 0).unwrap_err();
/// assert_eq!((err.line, err.column), (1, 11));
/// # Ok::<(), telltale_formats::ParseError>(())
/// ```
pub fn parse_lines(
    input: &str,
    precision: Precision,
    default_ts_ms: i64,
) -> Result<Vec<ParsedSample>, ParseError> {
    parse_lines_counted(input, precision, default_ts_ms).map(|lines| lines.samples)
}

/// What [`parse_lines_counted`] found in a body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedLines {
    /// The samples, in input order.
    pub samples: Vec<ParsedSample>,
    /// Valid lines that gave no sample because every field was a string.
    pub string_only_lines: usize,
}

/// [`parse_lines`], also counting the lines skipped because all their fields are strings.
///
/// ```
/// use telltale_formats::influx::{parse_lines_counted, Precision};
///
/// let body = "system,host=a load1=0.4 1\n\
///             system,host=a uptime_format=\"3 days, 2:01\" 1\n";
/// let parsed = parse_lines_counted(body, Precision::Seconds, 0)?;
/// assert_eq!(parsed.samples.len(), 1);
/// assert_eq!(parsed.string_only_lines, 1);
/// # Ok::<(), telltale_formats::ParseError>(())
/// ```
pub fn parse_lines_counted(
    input: &str,
    precision: Precision,
    default_ts_ms: i64,
) -> Result<ParsedLines, ParseError> {
    let mut p = Cursor {
        s: input,
        b: input.as_bytes(),
        pos: 0,
        line_no: 1,
        line_start: 0,
    };
    let mut out = ParsedLines::default();
    let mut scratch = Scratch::default();
    while p.pos < p.b.len() {
        parse_line(&mut p, precision, default_ts_ms, &mut out, &mut scratch)?;
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Line number of `pos` (quoted strings may contain newlines, so this is tracked here
    /// rather than by splitting the input into lines).
    line_no: usize,
    line_start: usize,
}

impl Cursor<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        let line_end = self.s[self.line_start..]
            .find('\n')
            .map_or(self.s.len(), |i| self.line_start + i);
        ParseError::at(
            self.line_no,
            &self.s[self.line_start..line_end.max(pos)],
            pos - self.line_start,
            msg,
        )
    }

    /// At a line end (or end of input), tolerating one `\r` before the `\n`.
    #[inline]
    fn at_eol(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.b.get(self.pos + 1), None | Some(b'\n')),
            _ => false,
        }
    }

    /// Consumes the line end and starts the next line.
    fn next_line(&mut self) {
        while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        if self.pos < self.b.len() {
            self.pos += 1;
            self.line_no += 1;
            self.line_start = self.pos;
        }
    }

    #[inline]
    fn skip_spaces(&mut self) {
        while self.pos < self.b.len() && (self.b[self.pos] == b' ' || self.b[self.pos] == b'\t') {
            self.pos += 1;
        }
    }

    /// Scans a key/tag/measurement token up to an unescaped stop byte (or line end);
    /// returns the raw slice and whether it contains a backslash.
    #[inline]
    fn scan(&mut self, stops: &[u8]) -> (usize, usize, bool) {
        let start = self.pos;
        let mut escaped = false;
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            if c == b'\\' {
                escaped = true;
                // An escape consumes the next byte unless it is a line end.
                if matches!(self.b.get(self.pos + 1), Some(&n) if n != b'\n') {
                    self.pos += 2;
                } else {
                    self.pos += 1;
                }
                continue;
            }
            if c == b'\n' || stops.contains(&c) || (c == b'\r' && self.at_eol()) {
                break;
            }
            self.pos += 1;
        }
        (start, self.pos, escaped)
    }
}

/// Buffers reused from line to line, so a line allocates only what it returns.
#[derive(Default)]
struct Scratch {
    /// Tags of the line: sanitised key, value, byte offset of the key (for errors).
    tags: Vec<(String, String, usize)>,
    /// Numeric fields of the line: sample name, value, byte range of the key (for errors).
    fields: Vec<(String, f64, usize, usize)>,
}

/// Removes the escapes `\<c>` for `c` in `escapable` (plus `\\`); other backslashes stay.
/// Borrows when there is no backslash.
fn unescape<'a>(raw: &'a str, escaped: bool, escapable: &[u8]) -> Cow<'a, str> {
    if !escaped {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && (n == '\\' || (n.is_ascii() && escapable.contains(&(n as u8))))
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn parse_line(
    p: &mut Cursor<'_>,
    precision: Precision,
    default_ts_ms: i64,
    out: &mut ParsedLines,
    scratch: &mut Scratch,
) -> Result<(), ParseError> {
    p.skip_spaces();
    if p.at_eol() || p.peek() == Some(b'#') {
        p.next_line();
        return Ok(());
    }

    // Measurement.
    let (m_start, m_end, m_esc) = p.scan(b", ");
    if m_end == m_start {
        return Err(p.err_at(m_start, "expected a measurement name"));
    }
    let measurement = unescape(&p.s[m_start..m_end], m_esc, b", ");
    // Non-empty, so sanitising cannot fail.
    let base_name = sanitize_metric_name(&measurement).unwrap_or_default();

    // Tags.
    let tags = &mut scratch.tags;
    tags.clear();
    while p.peek() == Some(b',') {
        p.pos += 1;
        let (k_start, k_end, k_esc) = p.scan(b",= ");
        if k_end == k_start {
            return Err(p.err_at(k_start, "expected a tag key"));
        }
        let key_raw = unescape(&p.s[k_start..k_end], k_esc, b",= ");
        if p.peek() != Some(b'=') {
            return Err(p.err_at(p.pos, format!("expected '=' after tag key \"{key_raw}\"")));
        }
        p.pos += 1;
        let (v_start, v_end, v_esc) = p.scan(b", ");
        if v_end == v_start {
            return Err(p.err_at(v_start, format!("expected a value for tag \"{key_raw}\"")));
        }
        let value = unescape(&p.s[v_start..v_end], v_esc, b",= ").into_owned();
        // Non-empty, so sanitising cannot fail.
        let key = sanitize_label_name(&key_raw).unwrap_or_default();
        tags.push((key, value, k_start));
    }
    if p.peek() != Some(b' ') {
        return Err(p.err_at(p.pos, "expected a space and the field set"));
    }
    p.skip_spaces();
    if p.at_eol() {
        return Err(p.err_at(p.pos, "expected a field set (field=value)"));
    }
    if !tags.is_sorted_by(|a, b| a.0 <= b.0) {
        tags.sort_by(|a, b| a.0.cmp(&b.0));
    }
    for w in tags.windows(2) {
        if w[0].0 == w[1].0 {
            // Reported at the later of the two, where the reader sees the repetition.
            let at = w[0].2.max(w[1].2);
            return Err(p.err_at(at, format!("duplicate tag key \"{}\"", w[0].0)));
        }
    }
    let labels: Vec<(String, String)> = tags.drain(..).map(|(k, v, _)| (k, v)).collect();

    // Fields.
    let fields = &mut scratch.fields;
    fields.clear();
    loop {
        let (k_start, k_end, k_esc) = p.scan(b",= ");
        if k_end == k_start {
            return Err(p.err_at(k_start, "expected a field key"));
        }
        let key = unescape(&p.s[k_start..k_end], k_esc, b",= ");
        if p.peek() != Some(b'=') {
            return Err(p.err_at(p.pos, format!("expected '=' after field key \"{key}\"")));
        }
        p.pos += 1;
        let v_start = p.pos;
        if p.peek() == Some(b'"') {
            skip_string(p, &key)?;
        } else {
            while p.pos < p.b.len() && !matches!(p.b[p.pos], b',' | b' ' | b'\n') {
                p.pos += 1;
            }
            // Leave a `\r` that ends the line to the line-end handling.
            if p.pos > v_start && p.b[p.pos - 1] == b'\r' && p.peek().is_none_or(|c| c == b'\n') {
                p.pos -= 1;
            }
            let raw = &p.s[v_start..p.pos];
            if raw.is_empty() {
                return Err(p.err_at(v_start, format!("expected a value for field \"{key}\"")));
            }
            let value = parse_field_value(raw).map_err(|why| {
                p.err_at(
                    v_start,
                    format!("invalid value \"{raw}\" for field \"{key}\": {why}"),
                )
            })?;
            let name = if key == "value" {
                base_name.clone()
            } else {
                let mut name = String::with_capacity(base_name.len() + 1 + key.len());
                name.push_str(&base_name);
                name.push('_');
                push_sanitized(&mut name, &key, metric_char);
                name
            };
            fields.push((name, value, k_start, k_end));
        }
        match p.peek() {
            Some(b',') => p.pos += 1,
            _ => break,
        }
    }

    // Timestamp.
    let mut ts_ms = default_ts_ms;
    if !p.at_eol() && !matches!(p.peek(), Some(b' ' | b'\t')) {
        // Only reachable after a quoted string: `s="x"y`.
        return Err(p.err_at(
            p.pos,
            "expected ',', a space or end of line after the field value",
        ));
    }
    if !p.at_eol() {
        p.skip_spaces();
        if !p.at_eol() {
            let t_start = p.pos;
            while p.pos < p.b.len() && !matches!(p.b[p.pos], b' ' | b'\t' | b'\n' | b'\r') {
                p.pos += 1;
            }
            let raw = &p.s[t_start..p.pos];
            let t: i64 = raw.parse().map_err(|_| {
                p.err_at(
                    t_start,
                    format!(
                        "invalid timestamp \"{raw}\"; expected an integer in {}",
                        precision.name()
                    ),
                )
            })?;
            ts_ms = precision.to_ms(t).ok_or_else(|| {
                p.err_at(
                    t_start,
                    format!("timestamp {raw} {} is out of range", precision.name()),
                )
            })?;
            p.skip_spaces();
            if !p.at_eol() {
                return Err(p.err_at(p.pos, "expected end of line after the timestamp"));
            }
        }
    }

    // Checked in full above, like any line, so a skipped line is still a valid one.
    if fields.is_empty() {
        out.string_only_lines += 1;
        p.next_line();
        return Ok(());
    }
    // Two fields giving one sample name (`a.b` and `a_b`, or a repeated key) would store two
    // values for one series and timestamp: refuse rather than pick one.
    for i in 1..fields.len() {
        if fields[..i].iter().any(|f| f.0 == fields[i].0) {
            let (name, k_start, k_end) = (&fields[i].0, fields[i].2, fields[i].3);
            let key = &p.s[k_start..k_end];
            return Err(p.err_at(
                k_start,
                format!(
                    "field \"{key}\" gives the sample name \"{name}\" a second time in this line"
                ),
            ));
        }
    }
    let last = fields.len() - 1;
    let mut labels = Some(labels);
    for (i, (name, value, _, _)) in fields.drain(..).enumerate() {
        // The last field takes the labels, the others clone them.
        let labels = if i == last {
            labels.take()
        } else {
            labels.clone()
        };
        out.samples.push(ParsedSample {
            name,
            labels: labels.unwrap_or_default(),
            value,
            timestamp_ms: Some(ts_ms),
        });
    }
    p.next_line();
    Ok(())
}

/// Skips a quoted string field value (opening quote at `p.pos`), which may span lines.
fn skip_string(p: &mut Cursor<'_>, key: &str) -> Result<(), ParseError> {
    let open = p.pos;
    let (open_line, open_start) = (p.line_no, p.line_start);
    p.pos += 1;
    while p.pos < p.b.len() {
        match p.b[p.pos] {
            // An escape skips the next byte, but never a line end (the line count must see it).
            b'\\' if p.b.get(p.pos + 1) != Some(&b'\n') => p.pos += 2,
            b'"' => {
                p.pos += 1;
                return Ok(());
            }
            b'\n' => {
                p.pos += 1;
                p.line_no += 1;
                p.line_start = p.pos;
            }
            _ => p.pos += 1,
        }
    }
    // Report at the opening quote: that is where the reader has to look.
    p.line_no = open_line;
    p.line_start = open_start;
    Err(p.err_at(
        open,
        format!("unterminated string value for field \"{key}\"; expected a closing '\"'"),
    ))
}

/// Classifies and converts an unquoted field value.
fn parse_field_value(raw: &str) -> Result<f64, &'static str> {
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(1.0),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(0.0),
        _ => {}
    }
    if let Some(int) = raw.strip_suffix('i') {
        return int
            .parse::<i64>()
            .map(|v| v as f64)
            .map_err(|_| "expected a 64-bit signed integer before 'i'");
    }
    if let Some(uint) = raw.strip_suffix('u') {
        return uint
            .parse::<u64>()
            .map(|v| v as f64)
            .map_err(|_| "expected a 64-bit unsigned integer before 'u'");
    }
    match parse_plain_float(raw) {
        Some(v) if v.is_finite() => Ok(v),
        Some(_) => Err("float out of range"),
        None => Err(
            "expected a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string",
        ),
    }
}
