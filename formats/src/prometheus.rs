//! Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text format.
//!
//! [`parse_text`] reads a whole exposition (a `/metrics` response or a Pushgateway body)
//! into metric families with their samples, or fails with the first error's line and column.
//!
//! Histograms and summaries are exposed as separate series in the text formats already
//! (`_bucket{le=...}`, `_sum`, `_count`, `{quantile=...}`, and OpenMetrics `_created`,
//! `_gsum`, `_gcount`), so every sample line becomes exactly one [`ParsedSample`], which is
//! what Prometheus stores. Two normalisations follow Prometheus 3:
//!
//! * `le` label values of histogram buckets and `quantile` label values of summaries are
//!   rewritten in canonical float form (`1` → `1.0`, `1e6` → `1e+06`, `+inf` → `+Inf`), so
//!   the same bucket from two clients lands in one series;
//! * labels with an empty value are dropped, because Prometheus treats `a=""` as no `a`.
//!
//! What is checked (beyond plain syntax): metric and label names, duplicate labels in one
//! sample, label escapes (`\\`, `\"`, `\n` only), duplicate `# HELP`/`# TYPE`/`# UNIT` lines,
//! `# TYPE` after the family's samples, sample names that do not fit their family's type
//! (e.g. a bare `foo` under `# TYPE foo histogram`), missing `le`/`quantile` labels, and for
//! OpenMetrics: `# EOF` present and last, no blank lines or free comments, single-space
//! separators, families not interleaved, unit a suffix of the family name. Not checked:
//! bucket monotonicity, presence of the `+Inf` bucket, counter non-negativity (Prometheus
//! does not reject a scrape for those either).
//!
//! Not supported: the Prometheus 3 quoted UTF-8 metric/label names (`{"my.metric"}`),
//! native histograms (protobuf only anyway).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::names::{format_openmetrics_float, is_label_start, is_metric_start};
use crate::{MetricType, ParseError, ParsedSample, numbered_lines, parse_plain_float};

/// Which text format to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4`).
    Text004,
    /// OpenMetrics 1.0 text format (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// Picks the format from an HTTP `Content-Type` header value: OpenMetrics for
    /// `application/openmetrics-text`, 0.0.4 for anything else (which is what Prometheus does).
    ///
    /// ```
    /// use telltale_formats::prometheus::Format;
    /// assert_eq!(
    ///     Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    ///     Format::OpenMetrics
    /// );
    /// assert_eq!(Format::from_content_type("text/plain; version=0.0.4"), Format::Text004);
    /// ```
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// A parsed exposition: the metric families in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Families in the order they first appeared, each with its samples in input order.
    pub families: Vec<MetricFamily>,
}

impl Exposition {
    /// All samples of all families, in family order.
    pub fn samples(&self) -> impl Iterator<Item = &ParsedSample> {
        self.families.iter().flat_map(|f| f.samples.iter())
    }

    /// Total number of samples.
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    /// The family named `name` (the name on its `# TYPE` line), if present.
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Consumes the exposition, returning all samples in family order.
    pub fn into_samples(self) -> Vec<ParsedSample> {
        let mut out = Vec::with_capacity(self.sample_count());
        for f in self.families {
            out.extend(f.samples);
        }
        out
    }
}

/// One metric family: metadata plus its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// Family name, e.g. `http_request_duration_seconds` (without `_bucket` etc.).
    pub name: String,
    /// Declared type ([`MetricType::Untyped`] when there was no `# TYPE` line; OpenMetrics
    /// `unknown` maps to it too).
    pub metric_type: MetricType,
    /// Unescaped `# HELP` text.
    pub help: Option<String>,
    /// OpenMetrics `# UNIT` (never set for 0.0.4, where `# UNIT` is an ordinary comment).
    pub unit: Option<String>,
    /// The family's samples, one per sample line.
    pub samples: Vec<ParsedSample>,
    /// OpenMetrics exemplars attached to this family's samples.
    pub exemplars: Vec<Exemplar>,
}

/// An OpenMetrics exemplar (`# {trace_id="..."} 0.5 1700000000.0`) attached to a sample.
/// Exemplars are not series; they are kept apart so a caller may link traces or ignore them.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// Index into the family's `samples` of the sample this exemplar belongs to.
    pub sample_index: usize,
    /// Exemplar labels, sorted by name (empty values kept: these are not series labels).
    pub labels: Vec<(String, String)>,
    /// Exemplar value.
    pub value: f64,
    /// Exemplar timestamp in milliseconds, if given.
    pub timestamp_ms: Option<i64>,
}

/// Parses a whole text exposition.
///
/// Fails on the first error; nothing is returned for a rejected input.
///
/// ```
/// use telltale_formats::prometheus::{parse_text, Format};
/// use telltale_formats::MetricType;
///
/// let text = "# TYPE rpc_seconds histogram\n\
///             rpc_seconds_bucket{le=\"0.5\"} 3\n\
///             rpc_seconds_bucket{le=\"+Inf\"} 4\n\
///             rpc_seconds_sum 1.5\n\
///             rpc_seconds_count 4\n";
/// let exp = parse_text(text, Format::Text004)?;
/// let fam = exp.family("rpc_seconds").unwrap();
/// assert_eq!(fam.metric_type, MetricType::Histogram);
/// assert_eq!(fam.samples.len(), 4);
/// assert_eq!(fam.samples[0].label("le"), Some("0.5"));
///
/// let err = parse_text("up{job=\"a\" 1\n", Format::Text004).unwrap_err();
/// assert_eq!((err.line, err.column), (1, 12));
/// assert_eq!(err.message, "expected ',' or '}' after the value of label \"job\"");
/// # Ok::<(), telltale_formats::ParseError>(())
/// ```
pub fn parse_text(input: &str, format: Format) -> Result<Exposition, ParseError> {
    let mut p = Parser {
        families: Vec::new(),
        seen: Vec::new(),
        index: HashMap::new(),
        current: None,
        scratch: Vec::with_capacity(16),
    };
    let mut eof_line: Option<usize> = None;
    let mut last_line = (0usize, "");
    for (no, text) in numbered_lines(input) {
        last_line = (no, text);
        if eof_line.is_some() {
            return Err(ParseError::at(
                no,
                text,
                0,
                "unexpected content after '# EOF'; it must be the last line",
            ));
        }
        let line = Line::new(no, text, format);
        if p.line(&line)? {
            eof_line = Some(no);
        }
    }
    if format == Format::OpenMetrics && eof_line.is_none() {
        let (no, text) = last_line;
        let err = if input.is_empty() || input.ends_with('\n') {
            ParseError {
                line: no + 1,
                column: 1,
                message: "expected '# EOF' as the last line of OpenMetrics input".into(),
            }
        } else {
            ParseError::at(
                no,
                text,
                text.len(),
                "expected '# EOF' as the last line of OpenMetrics input",
            )
        };
        return Err(err);
    }
    Ok(Exposition {
        families: p.families,
    })
}

/// Which metadata lines a family has had, for duplicate detection.
#[derive(Default, Clone, Copy)]
struct Seen {
    help: bool,
    type_: bool,
    unit: bool,
}

/// One parsed label before it is turned into owned strings: name, value (borrowed unless it
/// had escapes), and the byte offset of the name for error messages.
type RawLabel<'a> = (&'a str, Cow<'a, str>, usize);

struct Parser<'a> {
    families: Vec<MetricFamily>,
    seen: Vec<Seen>,
    /// Family name → index in `families`. Borrowed from the input: no allocation per lookup.
    index: HashMap<&'a str, usize>,
    /// The family of the previous line; samples usually follow their family, so the common
    /// case is decided without a hash lookup.
    current: Option<usize>,
    /// Reused label buffer, so a sample line allocates only its output strings.
    scratch: Vec<RawLabel<'a>>,
}

/// A line being parsed, with its number for errors.
struct Line<'a> {
    no: usize,
    text: &'a str,
    b: &'a [u8],
    /// Bytes that matter (0.0.4 tolerates a trailing `\r`).
    len: usize,
    om: bool,
}

impl<'a> Line<'a> {
    fn new(no: usize, text: &'a str, format: Format) -> Self {
        let om = format == Format::OpenMetrics;
        let b = text.as_bytes();
        let len = if !om && b.last() == Some(&b'\r') {
            b.len() - 1
        } else {
            b.len()
        };
        Line {
            no,
            text,
            b,
            len,
            om,
        }
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.no, self.text, pos, msg)
    }

    #[inline]
    fn at(&self, pos: usize) -> Option<u8> {
        if pos < self.len {
            Some(self.b[pos])
        } else {
            None
        }
    }

    /// Skips blanks and tabs (0.0.4 only; OpenMetrics allows none where this is called).
    #[inline]
    fn skip_ws(&self, mut pos: usize) -> usize {
        if !self.om {
            while pos < self.len && (self.b[pos] == b' ' || self.b[pos] == b'\t') {
                pos += 1;
            }
        }
        pos
    }

    /// Consumes a token separator: one or more blanks/tabs in 0.0.4, exactly one space in
    /// OpenMetrics. Returns `None` if there is none.
    #[inline]
    fn separator(&self, pos: usize) -> Option<usize> {
        if self.om {
            (self.at(pos) == Some(b' ')).then_some(pos + 1)
        } else {
            let end = self.skip_ws_always(pos);
            (end > pos).then_some(end)
        }
    }

    #[inline]
    fn skip_ws_always(&self, mut pos: usize) -> usize {
        while pos < self.len && (self.b[pos] == b' ' || self.b[pos] == b'\t') {
            pos += 1;
        }
        pos
    }

    /// End of the token starting at `pos`: the next blank/tab or the end of the line.
    #[inline]
    fn token_end(&self, mut pos: usize) -> usize {
        while pos < self.len && self.b[pos] != b' ' && self.b[pos] != b'\t' {
            pos += 1;
        }
        pos
    }

    fn str(&self, from: usize, to: usize) -> &'a str {
        // Token boundaries are always at ASCII bytes, hence char boundaries.
        &self.text[from..to]
    }

    fn describe(&self, pos: usize) -> String {
        match self.text[pos.min(self.len)..self.len].chars().next() {
            Some(c) => quote_char(c),
            None => "end of line".to_string(),
        }
    }
}

impl<'a> Parser<'a> {
    /// Parses one line; returns true if it was OpenMetrics' `# EOF`.
    fn line(&mut self, l: &Line<'a>) -> Result<bool, ParseError> {
        let start = l.skip_ws(0);
        match l.at(start) {
            None => {
                if l.om {
                    return Err(l.err(
                        0,
                        "expected a metric line; blank lines are not allowed in OpenMetrics",
                    ));
                }
                Ok(false)
            }
            Some(b'#') => self.comment(l, start),
            Some(_) => {
                self.sample(l, start)?;
                Ok(false)
            }
        }
    }

    fn comment(&mut self, l: &Line<'a>, hash: usize) -> Result<bool, ParseError> {
        let kw_start = if l.om {
            if l.at(hash + 1) != Some(b' ') {
                return Err(l.err(
                    hash + 1,
                    "expected '# HELP', '# TYPE', '# UNIT' or '# EOF'; other comments are not allowed in OpenMetrics",
                ));
            }
            hash + 2
        } else {
            l.skip_ws_always(hash + 1)
        };
        let kw_end = l.token_end(kw_start);
        let kw = l.str(kw_start, kw_end);
        match kw {
            "HELP" | "TYPE" => {}
            "UNIT" if l.om => {}
            "EOF" if l.om => {
                if kw_end != l.len {
                    return Err(l.err(kw_end, "expected end of line after '# EOF'"));
                }
                return Ok(true);
            }
            _ if l.om => {
                return Err(l.err(
                    kw_start,
                    "expected HELP, TYPE, UNIT or EOF after '# '; other comments are not allowed in OpenMetrics",
                ));
            }
            // Any other comment is ignored in 0.0.4.
            _ => return Ok(false),
        }
        let Some(name_start) = l.separator(kw_end) else {
            return Err(l.err(kw_end, format!("expected a metric name after '# {kw}'")));
        };
        let name_end = scan_metric_name(l, name_start);
        if name_end == name_start {
            return Err(l.err(
                name_start,
                format!(
                    "expected a metric name after '# {kw}', found {}",
                    l.describe(name_start)
                ),
            ));
        }
        let name = l.str(name_start, name_end);
        // After the name: end of line, or a separator and the rest.
        let rest_start = if name_end == l.len {
            None
        } else if let Some(p) = l.separator(name_end) {
            Some(p)
        } else {
            return Err(l.err(
                name_end,
                format!(
                    "expected a space after metric name \"{name}\", found {}",
                    l.describe(name_end)
                ),
            ));
        };
        match kw {
            "HELP" => {
                let text = match rest_start {
                    Some(p) => unescape_help(l, p)?,
                    None => String::new(),
                };
                let fam = self.family_for_metadata(l, name, name_start)?;
                if self.seen[fam].help {
                    return Err(l.err(
                        hash,
                        format!("second HELP line for metric family \"{name}\""),
                    ));
                }
                if l.om && !self.families[fam].samples.is_empty() {
                    return Err(l.err(
                        hash,
                        format!("HELP line for \"{name}\" must come before its samples"),
                    ));
                }
                self.seen[fam].help = true;
                self.families[fam].help = Some(text);
            }
            "TYPE" => {
                let Some(ty_start) = rest_start else {
                    return Err(l.err(
                        name_end,
                        format!("expected a type after metric name \"{name}\""),
                    ));
                };
                let ty_end = l.token_end(ty_start);
                let ty_word = l.str(ty_start, ty_end);
                let ty = parse_type(ty_word, l.om).ok_or_else(|| {
                    let allowed = if l.om {
                        "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                    } else {
                        "counter, gauge, histogram, summary or untyped"
                    };
                    l.err(ty_start, format!("unknown metric type \"{ty_word}\"; expected {allowed}"))
                })?;
                let after = l.skip_ws(ty_end);
                if after != l.len {
                    return Err(l.err(
                        after,
                        format!("expected end of line after type \"{ty_word}\""),
                    ));
                }
                let fam = self.family_for_metadata(l, name, name_start)?;
                if self.seen[fam].type_ {
                    return Err(l.err(
                        hash,
                        format!("second TYPE line for metric family \"{name}\""),
                    ));
                }
                if !self.families[fam].samples.is_empty() {
                    return Err(l.err(
                        hash,
                        format!("TYPE line for \"{name}\" must come before its samples"),
                    ));
                }
                self.seen[fam].type_ = true;
                self.families[fam].metric_type = ty;
            }
            _ => {
                // UNIT (OpenMetrics only).
                let unit = match rest_start {
                    Some(p) => l.str(p, l.len),
                    None => "",
                };
                if let Some(bad) = unit
                    .bytes()
                    .position(|c| !(is_metric_start(c) || c.is_ascii_digit()))
                {
                    let p = rest_start.unwrap_or(l.len) + bad;
                    return Err(l.err(p, format!("invalid character {} in unit", l.describe(p))));
                }
                let unit_is_suffix = name
                    .strip_suffix(unit)
                    .is_some_and(|base| base.len() > 1 && base.ends_with('_'));
                if !unit.is_empty() && !unit_is_suffix {
                    return Err(l.err(
                        rest_start.unwrap_or(l.len),
                        format!("unit \"{unit}\" must be a suffix of the metric family name \"{name}\" (as \"_{unit}\")"),
                    ));
                }
                let fam = self.family_for_metadata(l, name, name_start)?;
                if self.seen[fam].unit {
                    return Err(l.err(
                        hash,
                        format!("second UNIT line for metric family \"{name}\""),
                    ));
                }
                if !self.families[fam].samples.is_empty() {
                    return Err(l.err(
                        hash,
                        format!("UNIT line for \"{name}\" must come before its samples"),
                    ));
                }
                self.seen[fam].unit = true;
                self.families[fam].unit = (!unit.is_empty()).then(|| unit.to_string());
            }
        }
        Ok(false)
    }

    /// The family a metadata line refers to, created if new. In OpenMetrics a family may not
    /// come back after another one started.
    fn family_for_metadata(
        &mut self,
        l: &Line<'a>,
        name: &'a str,
        pos: usize,
    ) -> Result<usize, ParseError> {
        if let Some(cur) = self.current
            && self.families[cur].name == name
        {
            return Ok(cur);
        }
        if let Some(&idx) = self.index.get(name) {
            if l.om {
                return Err(l.err(
                    pos,
                    format!("metric family \"{name}\" appeared earlier; families must not be interleaved in OpenMetrics"),
                ));
            }
            self.current = Some(idx);
            return Ok(idx);
        }
        Ok(self.new_family(name, MetricType::Untyped))
    }

    fn new_family(&mut self, name: &'a str, ty: MetricType) -> usize {
        let idx = self.families.len();
        self.families.push(MetricFamily {
            name: name.to_string(),
            metric_type: ty,
            help: None,
            unit: None,
            samples: Vec::new(),
            exemplars: Vec::new(),
        });
        self.seen.push(Seen::default());
        self.index.insert(name, idx);
        self.current = Some(idx);
        idx
    }

    fn sample(&mut self, l: &Line<'a>, start: usize) -> Result<(), ParseError> {
        let name_end = scan_metric_name(l, start);
        if name_end == start {
            let hint = if l.at(start) == Some(b'{') {
                " (quoted UTF-8 metric names are not supported)"
            } else {
                ""
            };
            return Err(l.err(
                start,
                format!("expected a metric name, found {}{hint}", l.describe(start)),
            ));
        }
        let name = l.str(start, name_end);
        let mut pos = name_end;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if l.at(pos) == Some(b'{') {
            pos = parse_labels(l, pos, &mut scratch)?;
        }
        let Some(value_start) = l.separator(pos) else {
            let what = if pos == name_end {
                format!(
                    "expected '{{' or a space after metric name \"{name}\", found {}",
                    l.describe(pos)
                )
            } else {
                format!(
                    "expected a space after the labels, found {}",
                    l.describe(pos)
                )
            };
            return Err(l.err(pos, what));
        };
        let value_end = l.token_end(value_start);
        if value_end == value_start {
            return Err(l.err(value_start, "expected a sample value"));
        }
        let value = parse_value(l.str(value_start, value_end)).ok_or_else(|| {
            l.err(
                value_start,
                format!(
                    "invalid sample value \"{}\"; expected a float, NaN, +Inf or -Inf",
                    l.str(value_start, value_end)
                ),
            )
        })?;
        pos = value_end;
        let mut timestamp_ms = None;
        let mut exemplar_at = None;
        // Trailing blanks are tolerated in 0.0.4 only; OpenMetrics has none.
        if let Some(next) = l.separator(pos).filter(|&n| n < l.len || !l.om) {
            if l.om && l.at(next) == Some(b'#') {
                exemplar_at = Some(next);
            } else if next < l.len {
                let ts_end = l.token_end(next);
                timestamp_ms = Some(parse_timestamp(l, next, ts_end)?);
                pos = ts_end;
                if let Some(next) = l.separator(pos).filter(|&n| n < l.len || !l.om) {
                    if l.om && l.at(next) == Some(b'#') {
                        exemplar_at = Some(next);
                    } else {
                        pos = next;
                    }
                }
            } else {
                pos = next;
            }
        }
        if exemplar_at.is_none() && pos != l.len {
            return Err(l.err(
                pos,
                format!("expected end of line, found {}", l.describe(pos)),
            ));
        }

        let fam = self.resolve_family(l, name, start)?;
        let family_name_len = self.families[fam].name.len();
        let ty = self.families[fam].metric_type;
        let suffix = &name[family_name_len..];
        // Which label carries a float that Prometheus normalises, if any.
        let special = match (ty, suffix) {
            (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => Some("le"),
            (MetricType::Summary, "") => Some("quantile"),
            _ => None,
        };
        let labels = finish_labels(l, &mut scratch, special, start, name)?;
        self.scratch = scratch;

        let family = &mut self.families[fam];
        family.samples.push(ParsedSample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
        if let Some(at) = exemplar_at {
            let sample_index = family.samples.len() - 1;
            let ex = parse_exemplar(l, at, sample_index)?;
            self.families[fam].exemplars.push(ex);
        }
        Ok(())
    }

    /// Finds (or creates) the family a sample named `name` belongs to.
    fn resolve_family(
        &mut self,
        l: &Line<'a>,
        name: &'a str,
        pos: usize,
    ) -> Result<usize, ParseError> {
        let om = l.om;
        if let Some(cur) = self.current
            && fits(&self.families[cur], name, om)
        {
            return Ok(cur);
        }
        let mut found = None;
        if let Some(&idx) = self.index.get(name)
            && fits(&self.families[idx], name, om)
        {
            found = Some(idx);
        }
        if found.is_none() {
            for suffix in KNOWN_SUFFIXES {
                if let Some(base) = name.strip_suffix(suffix)
                    && let Some(&idx) = self.index.get(base)
                    && fits(&self.families[idx], name, om)
                {
                    found = Some(idx);
                    break;
                }
            }
        }
        match found {
            Some(idx) => {
                if om && self.current != Some(idx) {
                    return Err(l.err(
                        pos,
                        format!(
                            "sample of metric family \"{}\" after another family started; families must not be interleaved in OpenMetrics",
                            self.families[idx].name
                        ),
                    ));
                }
                self.current = Some(idx);
                Ok(idx)
            }
            None => {
                if let Some(&idx) = self.index.get(name) {
                    // A family of this exact name exists but its type wants suffixed samples.
                    let f = &self.families[idx];
                    let expected: Vec<String> = allowed_suffixes(f.metric_type, om)
                        .iter()
                        .map(|s| format!("{}{s}", f.name))
                        .collect();
                    return Err(l.err(
                        pos,
                        format!(
                            "sample \"{name}\" does not fit {} family \"{}\"; expected {}",
                            type_word(f.metric_type, om),
                            f.name,
                            expected.join(", ")
                        ),
                    ));
                }
                Ok(self.new_family(name, MetricType::Untyped))
            }
        }
    }
}

/// Sample-name suffixes that can tie a sample to a family of another name.
const KNOWN_SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info",
];

fn allowed_suffixes(ty: MetricType, om: bool) -> &'static [&'static str] {
    match (ty, om) {
        (MetricType::Counter, true) => &["_total", "_created"],
        (MetricType::Histogram, true) => &["_bucket", "_sum", "_count", "_created"],
        (MetricType::Histogram, false) => &["_bucket", "_sum", "_count"],
        (MetricType::Summary, true) => &["", "_sum", "_count", "_created"],
        (MetricType::Summary, false) => &["", "_sum", "_count"],
        (MetricType::GaugeHistogram, _) => &["_bucket", "_gsum", "_gcount"],
        (MetricType::Info, _) => &["_info"],
        _ => &[""],
    }
}

fn fits(family: &MetricFamily, name: &str, om: bool) -> bool {
    let Some(suffix) = name.strip_prefix(family.name.as_str()) else {
        return false;
    };
    allowed_suffixes(family.metric_type, om).contains(&suffix)
}

fn type_word(ty: MetricType, om: bool) -> &'static str {
    if om && ty == MetricType::Untyped {
        "unknown"
    } else {
        ty.as_str()
    }
}

fn parse_type(word: &str, om: bool) -> Option<MetricType> {
    Some(match word {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" if !om => MetricType::Untyped,
        "unknown" if om => MetricType::Untyped,
        "gaugehistogram" if om => MetricType::GaugeHistogram,
        "info" if om => MetricType::Info,
        "stateset" if om => MetricType::StateSet,
        _ => return None,
    })
}

#[inline]
fn scan_metric_name(l: &Line<'_>, start: usize) -> usize {
    let mut pos = start;
    if pos < l.len && is_metric_start(l.b[pos]) {
        pos += 1;
        while pos < l.len && (is_metric_start(l.b[pos]) || l.b[pos].is_ascii_digit()) {
            pos += 1;
        }
    }
    pos
}

#[inline]
fn scan_label_name(l: &Line<'_>, start: usize) -> usize {
    let mut pos = start;
    if pos < l.len && is_label_start(l.b[pos]) {
        pos += 1;
        while pos < l.len && (is_label_start(l.b[pos]) || l.b[pos].is_ascii_digit()) {
            pos += 1;
        }
    }
    pos
}

/// Parses `{name="value",...}` starting at the `{`; returns the position after the `}`.
fn parse_labels<'a>(
    l: &Line<'a>,
    open: usize,
    out: &mut Vec<RawLabel<'a>>,
) -> Result<usize, ParseError> {
    let mut pos = open + 1;
    let mut after_comma = false;
    loop {
        pos = l.skip_ws(pos);
        if l.at(pos) == Some(b'}') {
            if after_comma && l.om {
                return Err(l.err(
                    pos,
                    "expected a label name after ','; OpenMetrics allows no trailing comma",
                ));
            }
            return Ok(pos + 1);
        }
        let name_start = pos;
        let name_end = scan_label_name(l, pos);
        if name_end == name_start {
            let hint = if l.at(pos) == Some(b'"') {
                " (quoted UTF-8 label names are not supported)"
            } else {
                ""
            };
            return Err(l.err(
                pos,
                format!(
                    "expected a label name or '}}', found {}{hint}",
                    l.describe(pos)
                ),
            ));
        }
        let name = l.str(name_start, name_end);
        pos = l.skip_ws(name_end);
        if l.at(pos) != Some(b'=') {
            return Err(l.err(
                pos,
                format!(
                    "expected '=' after label name \"{name}\", found {}",
                    l.describe(pos)
                ),
            ));
        }
        pos = l.skip_ws(pos + 1);
        if l.at(pos) != Some(b'"') {
            return Err(l.err(
                pos,
                format!(
                    "expected '\"' to start the value of label \"{name}\", found {}",
                    l.describe(pos)
                ),
            ));
        }
        let (value, end) = parse_quoted(l, pos + 1, name)?;
        out.push((name, value, name_start));
        pos = l.skip_ws(end);
        match l.at(pos) {
            Some(b',') => {
                pos += 1;
                after_comma = true;
            }
            Some(b'}') => return Ok(pos + 1),
            _ => {
                return Err(l.err(
                    pos,
                    format!("expected ',' or '}}' after the value of label \"{name}\""),
                ));
            }
        }
    }
}

/// Reads a label value after its opening quote; returns it and the position after the
/// closing quote. Borrows unless the value contains escapes.
fn parse_quoted<'a>(
    l: &Line<'a>,
    start: usize,
    label: &str,
) -> Result<(Cow<'a, str>, usize), ParseError> {
    let b = l.b;
    let mut pos = start;
    // Fast path: no escapes.
    while pos < l.len && b[pos] != b'"' && b[pos] != b'\\' {
        pos += 1;
    }
    if pos < l.len && b[pos] == b'"' {
        return Ok((Cow::Borrowed(l.str(start, pos)), pos + 1));
    }
    let mut owned = String::with_capacity(pos - start + 8);
    owned.push_str(l.str(start, pos));
    loop {
        if pos >= l.len {
            return Err(l.err(
                l.len,
                format!("expected '\"' to close the value of label \"{label}\""),
            ));
        }
        match b[pos] {
            b'"' => return Ok((Cow::Owned(owned), pos + 1)),
            b'\\' => {
                match l.at(pos + 1) {
                    Some(b'\\') => owned.push('\\'),
                    Some(b'"') => owned.push('"'),
                    Some(b'n') => owned.push('\n'),
                    _ => {
                        return Err(l.err(
                            pos,
                            format!("invalid escape {} in the value of label \"{label}\"; expected \\\\, \\\" or \\n", escape_desc(l, pos)),
                        ));
                    }
                }
                pos += 2;
            }
            _ => {
                let run = pos;
                while pos < l.len && b[pos] != b'"' && b[pos] != b'\\' {
                    pos += 1;
                }
                owned.push_str(l.str(run, pos));
            }
        }
    }
}

fn escape_desc(l: &Line<'_>, backslash: usize) -> String {
    match l.text[backslash + 1..l.len].chars().next() {
        Some(c) => format!("'\\{}'", quote_char(c).trim_matches('\'')),
        None => "'\\' at end of line".to_string(),
    }
}

/// A character quoted for an error message; control characters are escaped so the message
/// stays on one line.
pub(crate) fn quote_char(c: char) -> String {
    if c.is_control() {
        format!("'{}'", c.escape_default())
    } else {
        format!("'{c}'")
    }
}

/// Unescapes HELP text: `\\` and `\n` (and `\"` in OpenMetrics).
fn unescape_help(l: &Line<'_>, start: usize) -> Result<String, ParseError> {
    let raw = l.str(start, l.len);
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let b = l.b;
    let mut pos = start;
    let mut run = start;
    while pos < l.len {
        if b[pos] == b'\\' {
            out.push_str(l.str(run, pos));
            match l.at(pos + 1) {
                Some(b'\\') => out.push('\\'),
                Some(b'n') => out.push('\n'),
                Some(b'"') if l.om => out.push('"'),
                _ => {
                    let allowed = if l.om {
                        "\\\\, \\\" or \\n"
                    } else {
                        "\\\\ or \\n"
                    };
                    return Err(l.err(
                        pos,
                        format!(
                            "invalid escape {} in HELP text; expected {allowed}",
                            escape_desc(l, pos)
                        ),
                    ));
                }
            }
            pos += 2;
            run = pos;
        } else {
            pos += 1;
        }
    }
    out.push_str(l.str(run, l.len));
    Ok(out)
}

/// Parses a sample value: a decimal float, or Go's `ParseFloat` specials (case-insensitive
/// `NaN`, `Inf`, `+Inf`, `-Inf`, `Infinity`), which is what Prometheus accepts.
#[inline]
fn parse_value(s: &str) -> Option<f64> {
    if let Some(v) = parse_plain_float(s) {
        return Some(v);
    }
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    } else if s.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else {
        None
    }
}

/// Timestamps: integer milliseconds in 0.0.4; seconds (with fraction) in OpenMetrics,
/// converted to milliseconds (rounded to the nearest millisecond).
fn parse_timestamp(l: &Line<'_>, start: usize, end: usize) -> Result<i64, ParseError> {
    let s = l.str(start, end);
    let parsed = if l.om {
        om_seconds_to_ms(s)
    } else {
        s.parse::<i64>().ok()
    };
    parsed.ok_or_else(|| {
        let expected = if l.om {
            "seconds since the epoch (e.g. 1700000000.123)"
        } else {
            "integer milliseconds since the epoch"
        };
        l.err(
            start,
            format!("invalid timestamp \"{s}\"; expected {expected}"),
        )
    })
}

/// Converts OpenMetrics seconds to milliseconds exactly for plain decimals (no float
/// rounding surprises such as `…789` becoming `…788.9999`), via f64 for exponent forms.
fn om_seconds_to_ms(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac) = body.split_once('.').unwrap_or((body, ""));
    let plain = !(int_part.is_empty() && frac.is_empty())
        && int_part.bytes().all(|c| c.is_ascii_digit())
        && frac.bytes().all(|c| c.is_ascii_digit());
    if plain {
        let secs: i64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let fb = frac.as_bytes();
        let digit = |i: usize| fb.get(i).map_or(0, |d| i64::from(d - b'0'));
        let mut ms = digit(0) * 100 + digit(1) * 10 + digit(2);
        if digit(3) >= 5 {
            ms += 1;
        }
        let total = secs.checked_mul(1000)?.checked_add(ms)?;
        return Some(if neg { -total } else { total });
    }
    let f = parse_plain_float(s)?;
    let ms = (f * 1000.0).round();
    // The range check keeps the cast exact (no saturation to i64::MAX).
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

/// Sorts the raw labels, rejects duplicates, checks and normalises the `le`/`quantile`
/// label, drops empty values, and produces the owned label list.
fn finish_labels(
    l: &Line<'_>,
    raw: &mut [RawLabel<'_>],
    special: Option<&str>,
    line_start: usize,
    name: &str,
) -> Result<Vec<(String, String)>, ParseError> {
    // Exporters usually emit labels sorted already: check before sorting.
    if !raw.is_sorted_by(|a, b| a.0 <= b.0) {
        raw.sort_by(|a, b| a.0.cmp(b.0));
    }
    for w in raw.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(l.err(
                w[0].2.max(w[1].2),
                format!("duplicate label \"{}\"", w[0].0),
            ));
        }
    }
    let mut special_seen = special.is_none();
    let mut out = Vec::with_capacity(raw.len());
    for (k, v, pos) in raw.iter() {
        if Some(*k) == special {
            special_seen = true;
            let f = parse_value(v).ok_or_else(|| {
                l.err(
                    *pos,
                    format!("label \"{k}\" of \"{name}\" must be a float, found \"{v}\""),
                )
            })?;
            out.push((k.to_string(), format_openmetrics_float(f)));
        } else if !v.is_empty() {
            out.push((k.to_string(), v.to_string()));
        }
    }
    if !special_seen {
        let special = special.unwrap_or_default();
        return Err(l.err(
            line_start,
            format!("sample \"{name}\" needs a \"{special}\" label"),
        ));
    }
    Ok(out)
}

/// Parses an OpenMetrics exemplar starting at its `#`.
fn parse_exemplar(l: &Line<'_>, hash: usize, sample_index: usize) -> Result<Exemplar, ParseError> {
    if l.at(hash + 1) != Some(b' ') || l.at(hash + 2) != Some(b'{') {
        return Err(l.err(hash, "expected an exemplar '# {labels} value [timestamp]'"));
    }
    let mut raw = Vec::new();
    let mut pos = parse_labels(l, hash + 2, &mut raw)?;
    raw.sort_by(|a, b| a.0.cmp(b.0));
    for w in raw.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(l.err(
                w[0].2.max(w[1].2),
                format!("duplicate exemplar label \"{}\"", w[0].0),
            ));
        }
    }
    let Some(value_start) = l.separator(pos) else {
        return Err(l.err(
            pos,
            "expected a space and the exemplar value after its labels",
        ));
    };
    let value_end = l.token_end(value_start);
    let value = parse_value(l.str(value_start, value_end))
        .ok_or_else(|| l.err(value_start, "expected a float exemplar value"))?;
    pos = value_end;
    let mut timestamp_ms = None;
    if let Some(ts_start) = l.separator(pos) {
        let ts_end = l.token_end(ts_start);
        timestamp_ms = Some(parse_timestamp(l, ts_start, ts_end)?);
        pos = ts_end;
    }
    if pos != l.len {
        return Err(l.err(
            pos,
            format!(
                "expected end of line after the exemplar, found {}",
                l.describe(pos)
            ),
        ));
    }
    Ok(Exemplar {
        sample_index,
        labels: raw
            .into_iter()
            .map(|(k, v, _)| (k.to_string(), v.into_owned()))
            .collect(),
        value,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_conversion_is_exact() {
        assert_eq!(om_seconds_to_ms("1520879607.789"), Some(1_520_879_607_789));
        assert_eq!(om_seconds_to_ms("1520879607"), Some(1_520_879_607_000));
        assert_eq!(om_seconds_to_ms("1.2345"), Some(1235));
        assert_eq!(om_seconds_to_ms("-1.5"), Some(-1500));
        assert_eq!(om_seconds_to_ms("1.5e3"), Some(1_500_000));
        assert_eq!(om_seconds_to_ms("."), None);
        assert_eq!(om_seconds_to_ms("abc"), None);
        assert_eq!(om_seconds_to_ms("1e300"), None);
    }

    #[test]
    fn values_accept_go_specials_only() {
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1e-3"), Some(0.001));
        assert_eq!(parse_value("-0.5"), Some(-0.5));
        assert_eq!(parse_value("0x10"), None);
        assert_eq!(parse_value("1_000"), None);
        assert_eq!(parse_value(""), None);
        assert_eq!(parse_value("+nan"), None);
    }
}
