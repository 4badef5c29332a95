//! The `alerting:` section: the alert manager's routing tree, inhibition rules, time
//! intervals and escalation policies (Alertmanager's names and defaults; `docs/alerting.md`),
//! and their checks.
//!
//! Matchers and time intervals are parsed here, once, into the forms the alert manager
//! (`engine/routing`) evaluates ([`Matcher`], [`TimeInterval`]), so the check and the engine
//! can never disagree about what a string means.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use jiff::tz::{Offset, TimeZone};
use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;
use telltale_model::{Labels, Severity};

use crate::locate::Seg;
use crate::types::{Config, HumanDuration};

/// `group_wait` when neither a route nor its parents set it (Alertmanager's default).
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// `group_interval` default (Alertmanager's).
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
/// `repeat_interval` default (Alertmanager's).
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// The alert manager: who gets which alert, when, and what mutes it.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// The root of the routing tree. It matches every alert; its children narrow down.
    /// Without it, every alert goes to every notifier, each alert its own group, at once.
    #[serde(default)]
    pub route: Option<RouteNode>,
    /// A firing alert matching `source_matchers` mutes the alerts matching
    /// `target_matchers` that have the same values of the `equal` labels.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named sets of time windows, for routes' `mute_time_intervals` and
    /// `active_time_intervals`.
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalsConfig>,
    /// Named escalation policies, for routes' `escalation`.
    #[serde(default)]
    pub escalation_policies: Vec<EscalationPolicyConfig>,
}

/// One node of the routing tree. Every field left out is inherited from the parent
/// (except `matchers`, `continue` and `routes`); the root's defaults are Alertmanager's.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteNode {
    /// The notifiers (Alertmanager's receivers) this route's alerts go to.
    #[serde(default)]
    pub notifiers: Option<Vec<String>>,
    /// Labels whose values split the route's alerts into groups; `['...']` groups by every
    /// label (each alert its own group); `[]` puts all of them in one group.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more alerts before its first notification (30s).
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
    /// How long a group waits before announcing alerts that joined it (5m).
    #[serde(default)]
    pub group_interval: Option<HumanDuration>,
    /// How often a group that still fires is announced again (4h).
    #[serde(default)]
    pub repeat_interval: Option<HumanDuration>,
    /// `immediate` (default): a resolved alert is announced at once, whatever its group;
    /// `grouped`: with the group's next notification, as Alertmanager does.
    #[serde(default)]
    pub resolve: Option<ResolveMode>,
    /// Label matchers, all of which an alert must meet: `name=value`, `name!=value`,
    /// `name=~regex`, `name!~regex` (regexes anchored; values may be double-quoted).
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Keep trying the following siblings after this route matched (default false).
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Names of `time_intervals` during which this route sends nothing.
    #[serde(default)]
    pub mute_time_intervals: Option<Vec<String>>,
    /// Names of `time_intervals` outside of which this route sends nothing.
    #[serde(default)]
    pub active_time_intervals: Option<Vec<String>>,
    /// The name of an escalation policy for this route's alerts.
    #[serde(default)]
    pub escalation: Option<String>,
    /// Child routes, tried in order; the first that matches takes the alert (and the next
    /// ones while `continue` is true). An alert no child takes stays with this route.
    #[serde(default)]
    pub routes: Vec<RouteNode>,
}

/// When a resolved alert is announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolveMode {
    /// At once, on its own (alertmanager#1510).
    #[default]
    Immediate,
    /// With the group's next notification (Alertmanager's behaviour).
    Grouped,
}

/// One inhibition rule.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// What a firing alert must match to mute others.
    pub source_matchers: Vec<String>,
    /// What a muted alert matches.
    pub target_matchers: Vec<String>,
    /// Labels whose values source and target must share (a missing label counts as empty).
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A named set of time windows (Alertmanager's `time_intervals` entry).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalsConfig {
    /// The name routes refer to.
    pub name: String,
    /// The windows; the set holds when any of them does.
    pub time_intervals: Vec<TimeIntervalConfig>,
}

/// One window: every field given must hold (an empty one always does).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    /// Times of day, `start_time` included, `end_time` excluded (`HH:MM`, up to `24:00`).
    #[serde(default)]
    pub times: Vec<TimeRangeConfig>,
    /// `monday`, or a range `monday:friday`.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `1`, `1:5`, or from the end: `-1` is the last day, `-3:-1` the last three.
    #[serde(default)]
    pub days_of_month: Vec<String>,
    /// `january`, `1`, or ranges `january:march`, `1:3`.
    #[serde(default)]
    pub months: Vec<String>,
    /// `2026` or `2026:2027`.
    #[serde(default)]
    pub years: Vec<String>,
    /// The zone the times are read in: `UTC` (default), `Local`, an IANA name such as
    /// `Europe/Berlin`, or a fixed offset such as `+02:00`.
    #[serde(default)]
    pub location: Option<String>,
}

/// A time-of-day range.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeConfig {
    /// `HH:MM`, included.
    pub start_time: String,
    /// `HH:MM`, excluded; `24:00` is the end of the day.
    pub end_time: String,
}

/// An escalation policy: who is told next when nobody reacts.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicyConfig {
    /// The name routes refer to.
    pub name: String,
    /// Ordered levels; `after` counts from the alert's first notification.
    pub levels: Vec<EscalationLevelConfig>,
    /// Run the levels again.
    #[serde(default)]
    pub repeat: Option<EscalationRepeatConfig>,
    /// How long an acknowledgement lasts: then it is withdrawn and escalation starts over.
    #[serde(default)]
    pub ack_timeout: Option<HumanDuration>,
}

/// One escalation level.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevelConfig {
    /// How long after the alert's first notification (or the start of a repeat loop).
    pub after: HumanDuration,
    /// The notifiers told at this level.
    pub notify: Vec<String>,
    /// `unacked` (default): only while nobody acknowledged; `unresolved`: while it fires.
    #[serde(default, rename = "if")]
    pub condition: LevelCondition,
}

/// When an escalation level still applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LevelCondition {
    /// While nobody acknowledged the alert.
    #[default]
    Unacked,
    /// While the alert fires, acknowledged or not.
    Unresolved,
}

/// How often the levels run again.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationRepeatConfig {
    /// How many more times.
    pub count: u32,
    /// The pause between the last level of one run and the start of the next.
    pub wait: HumanDuration,
}

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored)
    Regex,
    /// `!~` (anchored)
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// A parsed label matcher, `name op "value"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// How it compares.
    pub op: MatchOp,
    /// The value or the regex as written.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op.as_str())?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

impl Matcher {
    /// Parses `name=value`, `name!="value"`, `name=~"a|b"`, `name!~regex`, as Alertmanager
    /// writes them. The message says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let name_end = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        let name = &t[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "matcher `{text}` does not start with a label name; write it like \
                 `severity=\"critical\"` or `team=~\"db|web\"`"
            ));
        }
        let rest = t[name_end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(format!(
                "matcher `{text}` has no operator after `{name}`; use `=`, `!=`, `=~` or `!~`"
            ));
        };
        let value = unquote(rest.trim()).map_err(|e| format!("matcher `{text}`: {e}"))?;
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher `{text}`: the regex does not compile: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether a label value (`""` when the label is missing, as in Alertmanager) matches.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // Built only by `parse`, which compiles every regex.
            (_, None) => false,
        }
    }

    /// Whether a label set matches.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }
}

/// Reads a matcher value: double-quoted with `\"`, `\\`, `\n` escapes, or bare.
fn unquote(s: &str) -> Result<String, String> {
    let Some(inner) = s.strip_prefix('"') else {
        if s.contains('"') {
            return Err("a value with a `\"` must be quoted as a whole".into());
        }
        return Ok(s.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err("the closing `\"` is missing".into()),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c @ ('"' | '\\')) => out.push(c),
                // Regexes need their own escapes (`\d`, `\.`): keep them as written.
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("the closing `\"` is missing".into()),
            },
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(format!(
            "unexpected `{}` after the closing quote",
            chars.as_str().trim()
        ));
    }
    Ok(out)
}

/// Parses every matcher of a list.
pub fn parse_matchers(list: &[String]) -> Result<Vec<Matcher>, String> {
    list.iter().map(|m| Matcher::parse(m)).collect()
}

/// A compiled time window (one entry of a `time_intervals` set).
#[derive(Debug, Clone)]
pub struct TimeInterval {
    /// Minutes of the day, `[start, end)`.
    times: Vec<(u32, u32)>,
    /// 0 = Monday … 6 = Sunday, inclusive ranges.
    weekdays: Vec<(u8, u8)>,
    /// Inclusive ranges; negative counts from the end of the month.
    days_of_month: Vec<(i32, i32)>,
    /// 1 … 12, inclusive ranges.
    months: Vec<(u8, u8)>,
    /// Inclusive ranges.
    years: Vec<(i32, i32)>,
    tz: TimeZone,
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl TimeInterval {
    /// Compiles one window; the error names the field and the fix.
    pub fn compile(c: &TimeIntervalConfig) -> Result<TimeInterval, (&'static str, String)> {
        let mut times = Vec::new();
        for t in &c.times {
            let start = clock(&t.start_time).map_err(|e| ("times", e))?;
            let end = clock(&t.end_time).map_err(|e| ("times", e))?;
            if start >= end {
                return Err((
                    "times",
                    format!(
                        "start_time {} is not before end_time {}; a window over midnight is \
                         two entries (`{}`–`24:00` and `00:00`–`{}`)",
                        t.start_time, t.end_time, t.start_time, t.end_time
                    ),
                ));
            }
            times.push((start, end));
        }
        let named = |s: &str, names: &[&str], field: &'static str| -> Result<u8, String> {
            let l = s.trim().to_ascii_lowercase();
            if let Some(i) = names.iter().position(|n| *n == l) {
                return Ok(i as u8);
            }
            if field == "months"
                && let Ok(n) = l.parse::<u8>()
                && (1..=12).contains(&n)
            {
                return Ok(n - 1);
            }
            Err(format!(
                "`{s}` is not a {}; write e.g. `{}` or a range `{}:{}`",
                if field == "months" {
                    "month"
                } else {
                    "weekday"
                },
                names[0],
                names[0],
                names[names.len() - 1]
            ))
        };
        let mut weekdays = Vec::new();
        for w in &c.weekdays {
            let (a, b) = split_range(w);
            let a = named(a, &WEEKDAYS, "weekdays").map_err(|e| ("weekdays", e))?;
            let b = named(b, &WEEKDAYS, "weekdays").map_err(|e| ("weekdays", e))?;
            if a > b {
                return Err(("weekdays", format!("range `{w}` goes backwards")));
            }
            weekdays.push((a, b));
        }
        let mut months = Vec::new();
        for m in &c.months {
            let (a, b) = split_range(m);
            let a = named(a, &MONTHS, "months").map_err(|e| ("months", e))?;
            let b = named(b, &MONTHS, "months").map_err(|e| ("months", e))?;
            if a > b {
                return Err(("months", format!("range `{m}` goes backwards")));
            }
            months.push((a + 1, b + 1));
        }
        let mut days_of_month = Vec::new();
        for d in &c.days_of_month {
            let (a, b) = split_range(d);
            let parse = |s: &str| -> Result<i32, (&'static str, String)> {
                match s.trim().parse::<i32>() {
                    Ok(n) if n != 0 && (-31..=31).contains(&n) => Ok(n),
                    _ => Err((
                        "days_of_month",
                        format!("`{d}`: a day is 1…31, or -1…-31 from the end of the month"),
                    )),
                }
            };
            let (a, b) = (parse(a)?, parse(b)?);
            if (a > 0) == (b > 0) && a > b {
                return Err(("days_of_month", format!("range `{d}` goes backwards")));
            }
            days_of_month.push((a, b));
        }
        let mut years = Vec::new();
        for y in &c.years {
            let (a, b) = split_range(y);
            let parse = |s: &str| {
                s.trim().parse::<i32>().map_err(|_| {
                    (
                        "years",
                        format!("`{y}` is not a year or a range `2026:2027`"),
                    )
                })
            };
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(("years", format!("range `{y}` goes backwards")));
            }
            years.push((a, b));
        }
        let tz = match c.location.as_deref() {
            None => TimeZone::UTC,
            Some(l) => zone(l).map_err(|e| ("location", e))?,
        };
        Ok(TimeInterval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            tz,
        })
    }

    /// Whether the instant `now_ms` (milliseconds since the Unix epoch) is in the window.
    pub fn contains(&self, now_ms: i64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(now_ms) else {
            return false;
        };
        let z = ts.to_zoned(self.tz.clone());
        let minute = z.hour() as u32 * 60 + z.minute() as u32;
        if !self.times.is_empty() && !self.times.iter().any(|&(s, e)| s <= minute && minute < e) {
            return false;
        }
        let wd = z.weekday().to_monday_zero_offset() as u8;
        if !self.weekdays.is_empty() && !self.weekdays.iter().any(|&(a, b)| a <= wd && wd <= b) {
            return false;
        }
        let day = z.day() as i32;
        let len = z.days_in_month() as i32;
        let abs = |d: i32| if d < 0 { len + 1 + d } else { d };
        if !self.days_of_month.is_empty()
            && !self
                .days_of_month
                .iter()
                .any(|&(a, b)| abs(a) <= day && day <= abs(b))
        {
            return false;
        }
        let month = z.month() as u8;
        if !self.months.is_empty() && !self.months.iter().any(|&(a, b)| a <= month && month <= b) {
            return false;
        }
        let year = z.year() as i32;
        self.years.is_empty() || self.years.iter().any(|&(a, b)| a <= year && year <= b)
    }
}

fn split_range(s: &str) -> (&str, &str) {
    // `-3:-1` splits at the colon; a lone `-1` is a single day.
    match s.split_once(':') {
        Some((a, b)) => (a, b),
        None => (s, s),
    }
}

fn clock(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a time of day; write `HH:MM`, e.g. `09:00` or `24:00`");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A zone: `UTC`, `Local`, a fixed offset `+02:00` / `-0530`, or an IANA name.
fn zone(l: &str) -> Result<TimeZone, String> {
    let t = l.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(TimeZone::UTC);
    }
    if t.eq_ignore_ascii_case("local") {
        return TimeZone::try_system().map_err(|e| {
            format!("the system's time zone cannot be read ({e}); name the zone instead")
        });
    }
    if let Some(sign) = t.strip_prefix(['+', '-']).map(|_| t.starts_with('-')) {
        let digits: String = t[1..].chars().filter(|c| *c != ':').collect();
        let ok = digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit());
        let (h, m) = if ok {
            (
                digits[..2].parse::<i32>().unwrap_or(99),
                digits[2..].parse::<i32>().unwrap_or(99),
            )
        } else {
            (99, 99)
        };
        if h > 25 || m >= 60 {
            return Err(format!("`{l}` is not an offset; write it like `+02:00`"));
        }
        let secs = (h * 3600 + m * 60) * if sign { -1 } else { 1 };
        let offset = Offset::from_seconds(secs).map_err(|e| format!("`{l}`: {e}"))?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(t).map_err(|e| {
        format!("unknown time zone `{l}` ({e}); use an IANA name like `Europe/Berlin`, `UTC` or an offset like `+02:00`")
    })
}

/// The routing tree actually in force: the written `alerting.route`, or the deprecated flat
/// `routes:` list translated into children of a root that sends to every notifier (what
/// the flat list did for alerts no route matched), without grouping delays.
pub fn effective_route(config: &Config) -> RouteNode {
    if let Some(r) = config.alerting.route.clone() {
        return r;
    }
    let all: Vec<String> = config.notifiers.iter().map(|n| n.name.clone()).collect();
    let routes = config
        .routes
        .iter()
        .map(|r| {
            let mut matchers: Vec<String> = r
                .matchers
                .iter()
                .map(|(k, v)| {
                    Matcher {
                        name: k.clone(),
                        op: MatchOp::Equal,
                        value: v.clone(),
                        regex: None,
                    }
                    .to_string()
                })
                .collect();
            if let Some(min) = r.min_severity {
                let at_least: Vec<&str> = [Severity::Info, Severity::Warning, Severity::Critical]
                    .into_iter()
                    .filter(|s| *s >= min)
                    .map(Severity::as_str)
                    .collect();
                matchers.push(format!("severity=~\"{}\"", at_least.join("|")));
            }
            RouteNode {
                notifiers: Some(r.notifiers.clone()),
                matchers,
                continue_matching: r.continue_matching,
                ..RouteNode::default()
            }
        })
        .collect();
    RouteNode {
        notifiers: Some(all),
        group_by: Some(vec!["...".into()]),
        group_wait: Some(HumanDuration(Duration::ZERO)),
        routes,
        ..RouteNode::default()
    }
}

/// The warning for a config that still uses the flat `routes:` list, or `None`.
pub fn legacy_routes_warning(config: &Config) -> Option<String> {
    (!config.routes.is_empty() && config.alerting.route.is_none()).then(|| {
        "`routes:` is deprecated: it still works (each entry becomes a child of a root route \
         that sends to every notifier, `min_severity` a `severity` matcher), but move it to \
         `alerting.route.routes` (docs/alerting.md)"
            .to_string()
    })
}

/// Every problem in the `alerting:` section (and the flat `routes:` list's translation).
pub(crate) fn check(
    config: &Config,
    notifier_names: &HashSet<&str>,
    at: &mut dyn FnMut(&[Seg], String, &str),
) {
    let a = &config.alerting;
    let base = || vec![Seg::key("alerting")];
    let with = |mut p: Vec<Seg>, more: &[Seg]| {
        p.extend_from_slice(more);
        p
    };
    if a.route.is_some() && !config.routes.is_empty() {
        at(
            &[Seg::key("routes")],
            "`routes:` and `alerting.route` are both set".into(),
            "move the entries of `routes:` into `alerting.route.routes` as child routes \
             (`match: {k: v}` becomes `matchers: ['k=\"v\"']`)",
        );
    }

    let mut intervals = HashSet::new();
    for (i, set) in a.time_intervals.iter().enumerate() {
        let p = with(base(), &[Seg::key("time_intervals"), Seg::Index(i)]);
        if !intervals.insert(set.name.as_str()) {
            at(
                &with(p.clone(), &[Seg::key("name")]),
                format!("the time interval name `{}` is used twice", set.name),
                "time interval names must be unique",
            );
        }
        for (j, ti) in set.time_intervals.iter().enumerate() {
            if let Err((field, msg)) = TimeInterval::compile(ti) {
                at(
                    &with(
                        p.clone(),
                        &[Seg::key("time_intervals"), Seg::Index(j), Seg::key(field)],
                    ),
                    msg,
                    "",
                );
            }
        }
    }

    let unknown_notifier =
        |name: &str| match telltale_diagnostics::did_you_mean(name, notifier_names.iter().copied())
        {
            Some(best) => format!("did you mean `{best}`?"),
            None => "define it under `notifiers:`".to_string(),
        };

    let mut policies = HashSet::new();
    for (i, pol) in a.escalation_policies.iter().enumerate() {
        let p = with(base(), &[Seg::key("escalation_policies"), Seg::Index(i)]);
        if !policies.insert(pol.name.as_str()) {
            at(
                &with(p.clone(), &[Seg::key("name")]),
                format!("the escalation policy name `{}` is used twice", pol.name),
                "policy names must be unique",
            );
        }
        if pol.levels.is_empty() {
            at(
                &with(p.clone(), &[Seg::key("levels")]),
                format!("escalation policy `{}` has no levels", pol.name),
                "add e.g. `levels: [{after: 0s, notify: [ops]}, {after: 15m, notify: [lead]}]`",
            );
        }
        let mut last = Duration::ZERO;
        for (j, level) in pol.levels.iter().enumerate() {
            let lp = with(p.clone(), &[Seg::key("levels"), Seg::Index(j)]);
            if level.after.get() < last {
                at(
                    &with(lp.clone(), &[Seg::key("after")]),
                    format!(
                        "level {} comes after {} but the level before it after {}",
                        j + 1,
                        level.after,
                        HumanDuration(last)
                    ),
                    "order the levels by `after`",
                );
            }
            last = last.max(level.after.get());
            if level.notify.is_empty() {
                at(
                    &with(lp.clone(), &[Seg::key("notify")]),
                    format!("level {} notifies nobody", j + 1),
                    "name at least one notifier",
                );
            }
            for (k, n) in level.notify.iter().enumerate() {
                if !notifier_names.contains(n.as_str()) {
                    at(
                        &with(lp.clone(), &[Seg::key("notify"), Seg::Index(k)]),
                        format!("escalation level names an unknown notifier `{n}`"),
                        &unknown_notifier(n),
                    );
                }
            }
        }
        if let Some(r) = &pol.repeat
            && r.count > 0
            && r.wait.get().is_zero()
            && last.is_zero()
        {
            at(
                &with(p.clone(), &[Seg::key("repeat"), Seg::key("wait")]),
                "a repeat with `wait: 0s` and every level at `after: 0s` would send every \
                 run at once"
                    .into(),
                "give `wait` a duration such as `10m`",
            );
        }
        if pol.ack_timeout.is_some_and(|t| t.get().is_zero()) {
            at(
                &with(p.clone(), &[Seg::key("ack_timeout")]),
                "ack_timeout must be longer than zero".into(),
                "remove it to keep acknowledgements until the alert resolves",
            );
        }
    }

    for (i, rule) in a.inhibit_rules.iter().enumerate() {
        let p = with(base(), &[Seg::key("inhibit_rules"), Seg::Index(i)]);
        for (key, list) in [
            ("source_matchers", &rule.source_matchers),
            ("target_matchers", &rule.target_matchers),
        ] {
            if list.is_empty() {
                at(
                    &with(p.clone(), &[Seg::key(key)]),
                    format!("inhibit rule has no {key}"),
                    "an empty list would match every alert; name at least one, e.g. \
                     `['severity=\"critical\"']`",
                );
            }
            for (j, m) in list.iter().enumerate() {
                if let Err(e) = Matcher::parse(m) {
                    at(&with(p.clone(), &[Seg::key(key), Seg::Index(j)]), e, "");
                }
            }
        }
    }

    let root = effective_route(config);
    if let Some(route) = &a.route {
        let p = with(base(), &[Seg::key("route")]);
        if !route.matchers.is_empty() {
            at(
                &with(p.clone(), &[Seg::key("matchers")]),
                "the root route has matchers".into(),
                "the root takes every alert; put the matchers on a child route",
            );
        }
        if route.notifiers.is_none() && notifier_names.is_empty() {
            at(
                &p,
                "the root route names no notifiers".into(),
                "add `notifiers: [NAME]` naming an entry of `notifiers:`",
            );
        }
        check_route(route, p, true, &intervals, &policies, notifier_names, at);
    } else {
        // The translated flat list: only its matchers can be wrong here (its notifier
        // names are checked where it is written).
        for (i, r) in root.routes.iter().enumerate() {
            for m in &r.matchers {
                if let Err(e) = Matcher::parse(m) {
                    at(&[Seg::key("routes"), Seg::Index(i)], e, "");
                }
            }
        }
    }
}

fn check_route(
    route: &RouteNode,
    p: Vec<Seg>,
    root: bool,
    intervals: &HashSet<&str>,
    policies: &HashSet<&str>,
    notifier_names: &HashSet<&str>,
    at: &mut dyn FnMut(&[Seg], String, &str),
) {
    let unknown_notifier =
        |name: &str| match telltale_diagnostics::did_you_mean(name, notifier_names.iter().copied())
        {
            Some(best) => format!("did you mean `{best}`?"),
            None => "define it under `notifiers:`".to_string(),
        };
    let key = |k: &str| {
        let mut q = p.clone();
        q.push(Seg::key(k));
        q
    };
    let idx = |k: &str, i: usize| {
        let mut q = key(k);
        q.push(Seg::Index(i));
        q
    };
    if let Some(names) = &route.notifiers {
        for (i, n) in names.iter().enumerate() {
            if !notifier_names.contains(n.as_str()) {
                at(
                    &idx("notifiers", i),
                    format!("route names an unknown notifier `{n}`"),
                    &unknown_notifier(n),
                );
            }
        }
    }
    if let Some(g) = &route.group_by
        && g.iter().any(|l| l == "...")
        && g.len() > 1
    {
        at(
            &key("group_by"),
            "`...` groups by every label: it cannot be combined with other labels".into(),
            "write `group_by: ['...']` alone, or list the labels",
        );
    }
    for (k, d) in [
        ("group_interval", route.group_interval),
        ("repeat_interval", route.repeat_interval),
    ] {
        if d.is_some_and(|d| d.get().is_zero()) {
            at(
                &key(k),
                format!("{k} must be longer than zero"),
                "remove it to inherit the parent's (the root's default is Alertmanager's)",
            );
        }
    }
    for (i, m) in route.matchers.iter().enumerate() {
        if let Err(e) = Matcher::parse(m) {
            at(&idx("matchers", i), e, "");
        }
    }
    for k in ["mute_time_intervals", "active_time_intervals"] {
        let list = if k == "mute_time_intervals" {
            &route.mute_time_intervals
        } else {
            &route.active_time_intervals
        };
        for (i, n) in list.iter().flatten().enumerate() {
            if !intervals.contains(n.as_str()) {
                let hint = match telltale_diagnostics::did_you_mean(n, intervals.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "define it under `alerting.time_intervals`".into(),
                };
                at(&idx(k, i), format!("unknown time interval `{n}`"), &hint);
            }
        }
    }
    if let Some(e) = &route.escalation
        && !policies.contains(e.as_str())
    {
        let hint = match telltale_diagnostics::did_you_mean(e, policies.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "define it under `alerting.escalation_policies`".into(),
        };
        at(
            &key("escalation"),
            format!("unknown escalation policy `{e}`"),
            &hint,
        );
    }
    if root && route.continue_matching {
        at(
            &key("continue"),
            "the root route cannot `continue`: it has no siblings".into(),
            "remove it",
        );
    }
    for (i, child) in route.routes.iter().enumerate() {
        check_route(
            child,
            idx("routes", i),
            false,
            intervals,
            policies,
            notifier_names,
            at,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{err, parse_checked};

    const N: &str = "notifiers:\n  - {name: ops, kind: console}\n";

    #[test]
    fn matchers_parse_like_alertmanager() {
        let m = Matcher::parse("severity=~\"warning|critical\"").unwrap();
        assert_eq!(m.op, MatchOp::Regex);
        assert!(
            m.matches_value("critical") && !m.matches_value("xcritical"),
            "anchored"
        );
        let m = Matcher::parse("team != \"db\"").unwrap();
        assert!(m.matches_value("web") && !m.matches_value("db"));
        assert!(m.matches_value(""), "a missing label reads as empty");
        let m = Matcher::parse("host!~h[0-9]+").unwrap();
        assert!(m.matches_value("db1") && !m.matches_value("h12"));
        let m = Matcher::parse("path=\"a\\\"b\"").unwrap();
        assert_eq!(m.value, "a\"b");
        assert_eq!(m.to_string(), "path=\"a\\\"b\"");
        assert!(Matcher::parse("=x").unwrap_err().contains("label name"));
        assert!(Matcher::parse("a~x").unwrap_err().contains("operator"));
        assert!(
            Matcher::parse("a=~\"(\"")
                .unwrap_err()
                .contains("does not compile")
        );
        assert!(Matcher::parse("a=\"x").unwrap_err().contains("closing"));
    }

    #[test]
    fn time_interval_window() {
        let c = TimeIntervalConfig {
            times: vec![TimeRangeConfig {
                start_time: "09:00".into(),
                end_time: "17:00".into(),
            }],
            weekdays: vec!["monday:friday".into()],
            days_of_month: vec!["-7:-1".into()],
            months: vec!["january".into()],
            years: vec!["2024".into()],
            location: Some("Europe/Berlin".into()),
        };
        let w = TimeInterval::compile(&c).unwrap();
        // 2024-01-29 (a Monday, in the last 7 days of January) 08:30 UTC = 09:30 CET.
        let mon = 1_706_486_400_000 + 8 * 3_600_000 + 1_800_000;
        assert!(w.contains(mon));
        // 07:30 UTC = 08:30 CET: before the window.
        assert!(!w.contains(mon - 3_600_000));
        // Saturday 2024-01-27: wrong weekday.
        assert!(!w.contains(mon - 2 * 86_400_000));
        // 2024-01-01 is a Monday but not in the last 7 days.
        assert!(!w.contains(1_704_067_200_000 + 10 * 3_600_000));
        let bad = TimeIntervalConfig {
            times: vec![TimeRangeConfig {
                start_time: "22:00".into(),
                end_time: "06:00".into(),
            }],
            ..TimeIntervalConfig::default()
        };
        assert!(
            TimeInterval::compile(&bad)
                .unwrap_err()
                .1
                .contains("over midnight")
        );
    }

    #[test]
    fn a_full_section_checks_clean() {
        let src = format!(
            "{N}  - {{name: lead, kind: console}}
alerting:
  route:
    notifiers: [ops]
    group_by: [alertname]
    routes:
      - matchers: ['severity=\"critical\"']
        escalation: oncall
        mute_time_intervals: [nights]
  time_intervals:
    - name: nights
      time_intervals:
        - times: [{{start_time: '00:00', end_time: '06:00'}}]
  inhibit_rules:
    - source_matchers: ['severity=\"critical\"']
      target_matchers: ['severity=\"warning\"']
      equal: [host]
  escalation_policies:
    - name: oncall
      ack_timeout: 30m
      levels:
        - {{after: 0s, notify: [ops]}}
        - {{after: 15m, notify: [lead], if: unresolved}}
      repeat: {{count: 2, wait: 10m}}
"
        );
        parse_checked(&src).unwrap();
    }

    #[test]
    fn semantic_errors_name_the_place() {
        let text = err(&format!(
            "{N}alerting:\n  route:\n    notifiers: [ops]\n    routes:\n      - matchers: ['a=~\"(\"']\n        notifiers: [opz]\n        escalation: nope\n        mute_time_intervals: [never]\n"
        ));
        assert!(
            text.contains("t.yaml:7:9") && text.contains("does not compile"),
            "{text}"
        );
        assert!(
            text.contains("unknown notifier `opz`") && text.contains("did you mean `ops`?"),
            "{text}"
        );
        assert!(text.contains("unknown escalation policy `nope`"), "{text}");
        assert!(text.contains("unknown time interval `never`"), "{text}");
        let text = err(&format!(
            "{N}alerting:\n  escalation_policies:\n    - name: p\n      levels:\n        - {{after: 10m, notify: [ops]}}\n        - {{after: 5m, notify: [x]}}\n"
        ));
        assert!(text.contains("order the levels"), "{text}");
        assert!(text.contains("unknown notifier `x`"), "{text}");
        let text = err(&format!(
            "{N}routes:\n  - notifiers: [ops]\nalerting:\n  route:\n    notifiers: [ops]\n"
        ));
        assert!(text.contains("both set"), "{text}");
        let text = err(&format!("{N}alerting:\n  route:\n    grouop_by: [a]\n"));
        assert!(text.contains("unknown field `grouop_by`"), "{text}");
    }
}
