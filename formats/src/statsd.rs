//! StatsD and DogStatsD datagrams, and their aggregation into samples per flush interval.
//!
//! One datagram holds one or more newline-separated lines:
//!
//! ```text
//! <name>:<value>[:<value>...]|<type>[|@<sample rate>][|#<tag>[:<value>],...][|c:<container>][|T<unix seconds>]
//! ```
//!
//! * types: `c` counter, `g` gauge (a value written with a leading `+` or `-` is a delta),
//!   `ms` timer, `h` histogram, `d` distribution, `s` set (the value is any string);
//! * `@rate` in (0, 1]: the client sent only that fraction of the events;
//! * `#tags`: DogStatsD tags, `key:value` (split at the first `:`) or a bare `key`, whose value
//!   is then `""`;
//! * several values in one line (`name:1:2:3|d`, DogStatsD protocol 1.1) give one metric each;
//! * `|c:` container ids and `|T` timestamps (DogStatsD 1.2/1.3) are validated and ignored:
//!   the aggregator timestamps everything at flush time;
//! * blank lines and a trailing `\r` are tolerated. Events (`_e{...}`) and service checks
//!   (`_sc|...`) are rejected with an explicit message.
//!
//! [`parse_datagram`] is all-or-nothing like the other parsers; since UDP has no reply, the
//! caller typically counts the error and drops the datagram.
//!
//! [`Aggregator`] implements the flush-interval semantics of statsd: feed it metrics with
//! [`Aggregator::add`], call [`Aggregator::flush`] once per interval.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::names::{format_openmetrics_float, sanitize_label_name, sanitize_metric_name};
use crate::prometheus::quote_char;
use crate::{ParseError, ParsedSample, numbered_lines, parse_plain_float};

/// One StatsD metric line (or one value of a multi-value line).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsdMetric {
    /// Metric name as sent (e.g. `api.requests`); sanitised only when aggregated.
    pub name: String,
    /// Type and value.
    pub value: StatsdValue,
    /// `@rate` if given, in (0, 1].
    pub sample_rate: Option<f64>,
    /// DogStatsD tags in the order sent; a tag without `:` has the value `""`.
    pub tags: Vec<(String, String)>,
}

/// Type and value of a [`StatsdMetric`].
#[derive(Debug, Clone, PartialEq)]
pub enum StatsdValue {
    /// `|c`: add this much.
    Counter(f64),
    /// `|g`: set the gauge, or change it by `value` when `delta` (written `+N` / `-N`).
    Gauge {
        /// The value, negative for a `-N` delta.
        value: f64,
        /// True when written with a leading sign.
        delta: bool,
    },
    /// `|ms`: a timing in milliseconds.
    Timer(f64),
    /// `|h`: a histogram observation.
    Histogram(f64),
    /// `|d`: a distribution observation.
    Distribution(f64),
    /// `|s`: a member of a set (unique values are counted).
    Set(String),
}

/// Parses one datagram.
///
/// ```
/// use telltale_formats::statsd::{parse_datagram, StatsdValue};
///
/// let m = parse_datagram("api.requests:1|c|@0.5|#env:prod,canary\nqueue.depth:-3|g\n")?;
/// assert_eq!(m.len(), 2);
/// assert_eq!(m[0].name, "api.requests");
/// assert_eq!(m[0].value, StatsdValue::Counter(1.0));
/// assert_eq!(m[0].sample_rate, Some(0.5));
/// assert_eq!(m[0].tags, vec![("env".into(), "prod".into()), ("canary".into(), "".into())]);
/// assert_eq!(m[1].value, StatsdValue::Gauge { value: -3.0, delta: true });
///
/// let err = parse_datagram("ok:1|c\nlatency:12|x\n").unwrap_err();
/// assert_eq!((err.line, err.column), (2, 12));
/// # Ok::<(), telltale_formats::ParseError>(())
/// ```
pub fn parse_datagram(input: &str) -> Result<Vec<StatsdMetric>, ParseError> {
    let mut out = Vec::new();
    for (no, raw) in numbered_lines(input) {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        parse_line(no, line, &mut out)?;
    }
    Ok(out)
}

fn parse_line(no: usize, line: &str, out: &mut Vec<StatsdMetric>) -> Result<(), ParseError> {
    let err = |pos: usize, msg: String| ParseError::at(no, line, pos, msg);
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(err(
            0,
            "DogStatsD events (_e) and service checks (_sc) are not supported; only metrics".into(),
        ));
    }
    let b = line.as_bytes();
    let Some(colon) = line.find([':', '|']) else {
        return Err(err(
            line.len(),
            "expected ':' and a value after the metric name".into(),
        ));
    };
    if b[colon] == b'|' {
        return Err(err(
            colon,
            "expected ':' and a value after the metric name".into(),
        ));
    }
    let name = &line[..colon];
    if name.is_empty() {
        return Err(err(0, "expected a metric name before ':'".into()));
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control() || matches!(c, '@' | '#' | ','))
    {
        return Err(err(
            i,
            format!("invalid character {} in metric name", quote_char(c)),
        ));
    }
    let values_start = colon + 1;
    let Some(bar) = line[values_start..].find('|').map(|i| values_start + i) else {
        return Err(err(
            line.len(),
            "expected '|' and a metric type after the value".into(),
        ));
    };
    let values = &line[values_start..bar];

    // Sections after the value: type first, then the optional ones.
    let mut sections = line[bar + 1..].split('|');
    let ty = sections.next().unwrap_or("");
    let ty_pos = bar + 1;
    let kind = match ty {
        "c" => Kind::Counter,
        "g" => Kind::Gauge,
        "ms" => Kind::Timer,
        "h" => Kind::Histogram,
        "d" => Kind::Distribution,
        "s" => Kind::Set,
        _ => {
            return Err(err(
                ty_pos,
                format!("unknown metric type \"{ty}\"; expected c, g, ms, h, d or s"),
            ));
        }
    };
    let mut sample_rate = None;
    let mut tags: Option<Vec<(String, String)>> = None;
    let mut seen_container = false;
    let mut seen_ts = false;
    let mut pos = ty_pos + ty.len();
    for section in sections {
        let at = pos + 1;
        pos = at + section.len();
        let dup = |what: &str| err(at, format!("second {what} section"));
        if let Some(rate) = section.strip_prefix('@') {
            if sample_rate.is_some() {
                return Err(dup("sample rate"));
            }
            match parse_plain_float(rate) {
                Some(r) if r > 0.0 && r <= 1.0 => sample_rate = Some(r),
                _ => {
                    return Err(err(
                        at + 1,
                        format!("invalid sample rate \"{rate}\"; expected a number in (0, 1]"),
                    ));
                }
            }
        } else if let Some(list) = section.strip_prefix('#') {
            if tags.is_some() {
                return Err(dup("tags"));
            }
            tags = Some(parse_tags(list, at + 1, &err)?);
        } else if section.starts_with("c:") {
            if seen_container {
                return Err(dup("container id"));
            }
            seen_container = true;
        } else if let Some(ts) = section.strip_prefix('T') {
            if seen_ts {
                return Err(dup("timestamp"));
            }
            seen_ts = true;
            if ts.is_empty() || !ts.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err(
                    at + 1,
                    format!("invalid timestamp \"{ts}\"; expected unix seconds"),
                ));
            }
        } else {
            return Err(err(
                at,
                format!(
                    "unknown section \"{section}\"; expected @<sample rate>, #<tags>, c:<container id> or T<timestamp>"
                ),
            ));
        }
    }
    let tags = tags.unwrap_or_default();

    if kind == Kind::Set {
        // Set members are strings and may contain ':' themselves: no multi-value split.
        if values.is_empty() {
            return Err(err(values_start, "expected a set member before '|'".into()));
        }
        out.push(StatsdMetric {
            name: name.to_string(),
            value: StatsdValue::Set(values.to_string()),
            sample_rate,
            tags,
        });
        return Ok(());
    }
    let mut vpos = values_start;
    for raw in values.split(':') {
        let value = parse_plain_float(raw)
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                let shown = if raw.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("\"{raw}\"")
                };
                err(
                    vpos,
                    format!("invalid value {shown}; expected a finite number"),
                )
            })?;
        let value = match kind {
            Kind::Counter => StatsdValue::Counter(value),
            Kind::Gauge => StatsdValue::Gauge {
                value,
                delta: raw.starts_with(['+', '-']),
            },
            Kind::Timer => StatsdValue::Timer(value),
            Kind::Histogram => StatsdValue::Histogram(value),
            Kind::Distribution => StatsdValue::Distribution(value),
            // Sets returned early above; keep the member as written all the same.
            Kind::Set => StatsdValue::Set(raw.to_string()),
        };
        out.push(StatsdMetric {
            name: name.to_string(),
            value,
            sample_rate,
            tags: tags.clone(),
        });
        vpos += raw.len() + 1;
    }
    Ok(())
}

fn parse_tags(
    list: &str,
    start: usize,
    err: &impl Fn(usize, String) -> ParseError,
) -> Result<Vec<(String, String)>, ParseError> {
    let mut tags = Vec::new();
    let mut pos = start;
    for tag in list.split(',') {
        let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
        if k.is_empty() {
            return Err(err(pos, "expected a tag name".into()));
        }
        tags.push((k.to_string(), v.to_string()));
        pos += tag.len() + 1;
    }
    Ok(tags)
}

/// The StatsD type of a series, for detecting a name sent with two types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Distribution,
    Set,
}

impl Kind {
    fn of(v: &StatsdValue) -> Kind {
        match v {
            StatsdValue::Counter(_) => Kind::Counter,
            StatsdValue::Gauge { .. } => Kind::Gauge,
            StatsdValue::Timer(_) => Kind::Timer,
            StatsdValue::Histogram(_) => Kind::Histogram,
            StatsdValue::Distribution(_) => Kind::Distribution,
            StatsdValue::Set(_) => Kind::Set,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
            Kind::Histogram => "histogram",
            Kind::Distribution => "distribution",
            Kind::Set => "set",
        }
    }
}

/// Why [`Aggregator::add`] refused a metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// The name, once sanitised, was already used with another StatsD type.
    #[error("metric \"{name}\" was sent as a {was} and now as a {now}; one name, one type")]
    TypeConflict {
        /// Sanitised metric name.
        name: String,
        /// Type seen first.
        was: &'static str,
        /// Type of the refused metric.
        now: &'static str,
    },
}

/// Series identity inside the aggregator: sanitised name plus sanitised, sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

#[derive(Debug)]
struct Series {
    state: State,
    /// Number of the interval (flush count) of the last update, for expiry.
    last_update: u64,
}

#[derive(Debug)]
enum State {
    Counter(f64),
    Gauge(f64),
    /// Observations of this interval, and the summed weights (1 / sample rate).
    Timing {
        values: Vec<f64>,
        count: f64,
        sum: f64,
    },
    Set(HashSet<String>),
}

/// Aggregates StatsD metrics per flush interval, the way statsd does, into samples.
///
/// Output of [`Aggregator::flush`] (names sanitised with [`crate::sanitize_metric_name`],
/// so `api.requests` becomes `api_requests`; tag keys with [`crate::sanitize_label_name`];
/// tags without a value are dropped, since an empty label is no label in Prometheus; for a
/// tag key sent twice the last value wins):
///
/// * counter → `<name>`: the sum of the interval's increments, each divided by its sample
///   rate (an increase per interval, not a running total); a known counter without updates
///   reports 0;
/// * gauge → `<name>`: the current value, deltas applied to the previous value (0 if none);
///   re-reported every flush until it expires;
/// * timer, histogram, distribution → `<name>_count` and `<name>_sum` (weighted by 1 / sample
///   rate), `<name>_min`, `<name>_max`, and `<name>{quantile="0.5"|"0.9"|"0.99"}`
///   (nearest-rank percentiles of the received values); only for intervals with data;
/// * set → `<name>`: the number of distinct members received in the interval; only for
///   intervals with data.
///
/// After its last update a series is reported for `expire_after_flushes` more flushes (gauges
/// repeat their value, counters report 0), then forgotten, and so is its name's type.
///
/// ```
/// use telltale_formats::statsd::{parse_datagram, Aggregator};
///
/// let mut agg = Aggregator::new(10);
/// for m in parse_datagram("hits:1|c|@0.1\nhits:2|c\nlat:10|ms\nlat:30|ms\n")? {
///     agg.add(m).unwrap();
/// }
/// let out = agg.flush(1_000);
/// let get = |name: &str| out.iter().find(|s| s.name == name).map(|s| s.value);
/// assert_eq!(get("hits"), Some(12.0));
/// assert_eq!(get("lat_count"), Some(2.0));
/// assert_eq!(get("lat_max"), Some(30.0));
/// # Ok::<(), telltale_formats::ParseError>(())
/// ```
#[derive(Debug)]
pub struct Aggregator {
    series: HashMap<SeriesKey, Series>,
    /// Sanitised name → type, to refuse a name used with two types.
    kinds: HashMap<String, (Kind, usize)>,
    flushes: u64,
    expire_after_flushes: u64,
}

/// Quantiles reported for timers, histograms and distributions.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

impl Aggregator {
    /// A new aggregator that forgets series after `expire_after_flushes` flushes without an
    /// update (at least 1).
    pub fn new(expire_after_flushes: u64) -> Self {
        Aggregator {
            series: HashMap::new(),
            kinds: HashMap::new(),
            flushes: 0,
            expire_after_flushes: expire_after_flushes.max(1),
        }
    }

    /// Number of series currently tracked.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Adds one metric to the current interval.
    pub fn add(&mut self, m: StatsdMetric) -> Result<(), AggregateError> {
        let kind = Kind::of(&m.value);
        // The parser guarantees a non-empty name.
        let name = sanitize_metric_name(&m.name).unwrap_or_else(|| "_".to_string());
        if let Some((was, _)) = self.kinds.get(&name)
            && *was != kind
        {
            return Err(AggregateError::TypeConflict {
                name,
                was: was.word(),
                now: kind.word(),
            });
        }
        let mut labels: Vec<(String, String)> = Vec::with_capacity(m.tags.len());
        for (k, v) in m.tags {
            if v.is_empty() {
                continue;
            }
            let Some(k) = sanitize_label_name(&k) else {
                continue;
            };
            labels.retain(|(old, _)| *old != k);
            labels.push((k, v));
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let weight = 1.0 / m.sample_rate.unwrap_or(1.0);
        let flushes = self.flushes;
        let key: SeriesKey = (name.clone(), labels);
        let series = match self.series.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let state = match kind {
                    Kind::Counter => State::Counter(0.0),
                    Kind::Gauge => State::Gauge(0.0),
                    Kind::Set => State::Set(HashSet::new()),
                    _ => State::Timing {
                        values: Vec::new(),
                        count: 0.0,
                        sum: 0.0,
                    },
                };
                self.kinds.entry(name).or_insert((kind, 0)).1 += 1;
                e.insert(Series {
                    state,
                    last_update: flushes,
                })
            }
        };
        series.last_update = flushes;
        match (&mut series.state, m.value) {
            (State::Counter(total), StatsdValue::Counter(v)) => *total += v * weight,
            (State::Gauge(g), StatsdValue::Gauge { value, delta }) => {
                *g = if delta { *g + value } else { value };
            }
            (
                State::Timing { values, count, sum },
                StatsdValue::Timer(v) | StatsdValue::Histogram(v) | StatsdValue::Distribution(v),
            ) => {
                values.push(v);
                *count += weight;
                *sum += v * weight;
            }
            (State::Set(members), StatsdValue::Set(v)) => {
                members.insert(v);
            }
            // Kinds are checked per name above, and a key includes the name.
            _ => {}
        }
        Ok(())
    }

    /// Ends the interval: returns its samples, all stamped `now_ms`, and resets per-interval
    /// state.
    pub fn flush(&mut self, now_ms: i64) -> Vec<ParsedSample> {
        let mut out = Vec::new();
        let sample = |name: String, labels: Vec<(String, String)>, value: f64| ParsedSample {
            name,
            labels,
            value,
            timestamp_ms: Some(now_ms),
        };
        for ((name, labels), series) in &mut self.series {
            match &mut series.state {
                State::Counter(total) => {
                    out.push(sample(name.clone(), labels.clone(), *total));
                    *total = 0.0;
                }
                State::Gauge(g) => out.push(sample(name.clone(), labels.clone(), *g)),
                State::Timing { values, count, sum } => {
                    if values.is_empty() {
                        continue;
                    }
                    values.sort_by(f64::total_cmp);
                    let n = values.len();
                    out.push(sample(format!("{name}_count"), labels.clone(), *count));
                    out.push(sample(format!("{name}_sum"), labels.clone(), *sum));
                    out.push(sample(format!("{name}_min"), labels.clone(), values[0]));
                    out.push(sample(format!("{name}_max"), labels.clone(), values[n - 1]));
                    for q in QUANTILES {
                        // Nearest rank: the smallest value with at least q of the data at or below it.
                        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
                        let mut l = labels.clone();
                        l.push(("quantile".to_string(), format_openmetrics_float(q)));
                        l.sort_by(|a, b| a.0.cmp(&b.0));
                        out.push(sample(name.clone(), l, values[rank - 1]));
                    }
                    values.clear();
                    *count = 0.0;
                    *sum = 0.0;
                }
                State::Set(members) => {
                    if !members.is_empty() {
                        out.push(sample(name.clone(), labels.clone(), members.len() as f64));
                        members.clear();
                    }
                }
            }
        }
        self.flushes += 1;
        let (flushes, expiry) = (self.flushes, self.expire_after_flushes);
        let kinds = &mut self.kinds;
        self.series.retain(|(name, _), s| {
            // Flushes since the one that reported the last update.
            let keep = flushes - s.last_update <= expiry;
            if !keep && let Some(entry) = kinds.get_mut(name) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    kinds.remove(name);
                }
            }
            keep
        });
        // Deterministic order for callers and tests: by name, then labels.
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
        out
    }
}
