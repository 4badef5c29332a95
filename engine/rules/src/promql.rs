//! The host functions operators know from PromQL: `increase`, `histogram_quantile`, the
//! `*_by` label aggregations, `quantile_over`, `stddev_over`, `count_over`, `changes`,
//! `deriv`, `predict_linear`, `last_seen` and `absent`. Documented for rule authors in
//! `rules/README.md` (where each differs from Prometheus is said there).
//!
//! The math is in pure functions over a series' points ([`Point`], from memory or the raw
//! tier) or its roll-up buckets ([`Bucket`], windows the durable store answers from a
//! coarser tier), unit-tested here; the Rhai layer below only selects series and converts.
//! Like every host function they are registered as volatile, read the store through
//! [`SeriesRead`] only, and never panic.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map};

use telltale_model::{Labels, Point, TimestampMs, duration_ms};
use telltale_store::SeriesRead;
use telltale_store::disk::{Bucket, RangeData, Resolution, Tier};

use super::functions::{
    counter_increase, describe_call, labels_to_map, map_to_labels, parse_window, quantile,
    register_selection, register_selection_with, rt_err, show_labels, too_many,
};
use super::sandbox::current_now_ms;

/// A Rhai result.
type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// How far back `last_seen` reads the raw tier (its default retention, `store.retention`):
/// beyond it only roll-ups can still hold a series, and they say when only to the bucket.
const LAST_SEEN_RAW_REACH_MS: i64 = 48 * 3_600_000;

// ---------------------------------------------------------------------------------------
// The math: pure functions over one series' points or buckets (oldest first).
// ---------------------------------------------------------------------------------------

/// The counter increase roll-up buckets recorded (each bucket's rises, including the one
/// from the sample before it). `None` without buckets.
pub(crate) fn buckets_increase(buckets: &[Bucket]) -> Option<f64> {
    (!buckets.is_empty()).then(|| buckets.iter().map(|b| b.increase).sum())
}

/// The `q` quantile of `values` as Prometheus' `quantile_over_time` answers it: `-inf` for
/// `q < 0`, `+inf` for `q > 1`, linear interpolation between closest ranks otherwise;
/// `None` (Prometheus: NaN or no result) for no values or a NaN `q`.
pub(crate) fn quantile_of(values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() || q.is_nan() {
        None
    } else if q < 0.0 {
        Some(f64::NEG_INFINITY)
    } else if q > 1.0 {
        Some(f64::INFINITY)
    } else {
        quantile(values, q)
    }
}

/// Population standard deviation of the points' values (Prometheus' `stddev_over_time`).
pub(crate) fn stddev(points: &[Point]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let n = points.len() as f64;
    let mean = points.iter().map(|p| p.value).sum::<f64>() / n;
    let var = points.iter().map(|p| (p.value - mean).powi(2)).sum::<f64>() / n;
    Some(var.sqrt())
}

/// The standard deviation of the bucket means, each weighted by its count: the part of the
/// samples' population standard deviation that lies between buckets. Roll-ups keep no sum
/// of squares, so the variation inside each bucket is lost: by the law of total variance
/// this is never more than the true value.
pub(crate) fn stddev_buckets(buckets: &[Bucket]) -> Option<f64> {
    let count: f64 = buckets.iter().map(|b| b.count).sum();
    if count <= 0.0 {
        return None;
    }
    let mean = buckets.iter().map(|b| b.sum).sum::<f64>() / count;
    let var = buckets
        .iter()
        .filter(|b| b.count > 0.0)
        .map(|b| b.count * (b.mean() - mean).powi(2))
        .sum::<f64>()
        / count;
    Some(var.sqrt())
}

/// How many times the value changed between consecutive points (Prometheus' `changes`:
/// NaN to NaN is no change). `None` without points.
pub(crate) fn changes(points: &[Point]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    Some(
        points
            .windows(2)
            .filter(|w| !(w[0].value == w[1].value || (w[0].value.is_nan() && w[1].value.is_nan())))
            .count() as f64,
    )
}

/// A lower bound of the changes the buckets' samples made: a bucket counts one change when
/// its values differ (its minimum is below its maximum), or when they are all equal and
/// differ from the previous bucket's last value. Each bucket counts at most one, so a value
/// that flips often inside a bucket is undercounted.
pub(crate) fn changes_buckets(buckets: &[Bucket]) -> Option<f64> {
    let first = buckets.first()?;
    let mut n = f64::from(u8::from(first.min != first.max));
    for w in buckets.windows(2) {
        if w[1].min != w[1].max || w[1].last != w[0].last {
            n += 1.0;
        }
    }
    Some(n)
}

/// The least-squares line through `(x, y)` pairs: `(slope, value at x = 0)`. As
/// Prometheus' `linearRegression`: constant values give slope 0 (unless infinite); fewer
/// than two pairs, or all at one `x`, give `None`.
pub(crate) fn linear_regression(xy: &[(f64, f64)]) -> Option<(f64, f64)> {
    let (&(_, y0), true) = (xy.first()?, xy.len() >= 2) else {
        return None;
    };
    if xy.iter().all(|&(_, y)| y == y0) {
        return (!y0.is_infinite()).then_some((0.0, y0));
    }
    let n = xy.len() as f64;
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    // Centred sums: timestamps in seconds since the epoch squared lose every digit of a
    // short window.
    let sxx: f64 = xy.iter().map(|&(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|&(x, y)| (x - mx) * (y - my)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// `(seconds from origin, value)` of each point.
fn points_xy(points: &[Point], origin_ms: TimestampMs) -> Vec<(f64, f64)> {
    points
        .iter()
        .map(|p| ((p.timestamp_ms - origin_ms) as f64 / 1000.0, p.value))
        .collect()
}

/// `(seconds from origin, mean)` of each non-empty bucket, placed at its middle.
fn buckets_xy(buckets: &[Bucket], width_ms: i64, origin_ms: TimestampMs) -> Vec<(f64, f64)> {
    buckets
        .iter()
        .filter(|b| b.count > 0.0)
        .map(|b| {
            let mid = (b.t - origin_ms) as f64 + width_ms as f64 / 2.0;
            (mid / 1000.0, b.mean())
        })
        .collect()
}

/// Parses a bucket's `le` label: a number, or `+Inf`. `None` for anything else (Prometheus
/// ignores such a series).
pub(crate) fn parse_le(le: &str) -> Option<f64> {
    let le = le.trim();
    if le.eq_ignore_ascii_case("+inf") || le.eq_ignore_ascii_case("inf") {
        return Some(f64::INFINITY);
    }
    le.parse::<f64>().ok().filter(|v| !v.is_nan())
}

/// Prometheus' `histogram_quantile` over classic cumulative buckets `(upper bound, count)`
/// (in any order): `-inf` for `q < 0`, `+inf` for `q > 1`; `None` (Prometheus: NaN) for a
/// NaN `q`, no `+Inf` bucket, fewer than two buckets or no observations. Buckets of one
/// bound are added up and counts made monotonic (as Prometheus does for buckets scraped at
/// slightly different times). The quantile is interpolated linearly inside its bucket,
/// the lowest bucket starting at 0 (unless its bound is not above 0: then that bound); one
/// in the `+Inf` bucket is the highest finite bound.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last()?.0 != f64::INFINITY {
        return None;
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => merged.push((le, count)),
        }
    }
    let mut highest = f64::NEG_INFINITY;
    for b in &mut merged {
        highest = highest.max(b.1);
        b.1 = highest;
    }
    if merged.len() < 2 {
        return None;
    }
    let observations = merged.last()?.1;
    if observations <= 0.0 || observations.is_nan() {
        return None;
    }
    let rank = q * observations;
    let last = merged.len() - 1;
    let b = merged[..last].partition_point(|b| b.1 < rank);
    if b == last {
        return Some(merged[last - 1].0);
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return Some(merged[0].0);
    }
    let (start, below) = if b > 0 {
        (merged[b - 1].0, merged[b - 1].1)
    } else {
        (0.0, 0.0)
    };
    let (end, count) = (merged[b].0, merged[b].1 - below);
    Some(start + (end - start) * ((rank - below) / count))
}

/// How one window function reduces the points or buckets of one series.
#[derive(Debug, Clone, Copy)]
enum Over {
    Increase,
    Stddev,
    Count,
    Changes,
    Deriv,
}

impl Over {
    fn fn_name(self) -> &'static str {
        match self {
            Over::Increase => "increase",
            Over::Stddev => "stddev_over",
            Over::Count => "count_over",
            Over::Changes => "changes",
            Over::Deriv => "deriv",
        }
    }

    /// The answer for a window without points: a count is 0, the rest are undefined.
    fn when_empty(self) -> Dynamic {
        match self {
            Over::Count => Dynamic::from_float(0.0),
            _ => Dynamic::UNIT,
        }
    }

    fn apply(self, data: &WindowData, now: TimestampMs) -> Option<f64> {
        match (self, data) {
            (Over::Increase, WindowData::Points(p)) => counter_increase(p),
            (Over::Increase, WindowData::Buckets(b, _)) => buckets_increase(b),
            (Over::Stddev, WindowData::Points(p)) => stddev(p),
            (Over::Stddev, WindowData::Buckets(b, _)) => stddev_buckets(b),
            (Over::Count, WindowData::Points(p)) => Some(p.len() as f64),
            (Over::Count, WindowData::Buckets(b, _)) => Some(b.iter().map(|b| b.count).sum()),
            (Over::Changes, WindowData::Points(p)) => changes(p),
            (Over::Changes, WindowData::Buckets(b, _)) => changes_buckets(b),
            (Over::Deriv, _) => linear_regression(&data.xy(now)).map(|(slope, _)| slope),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading the store.
// ---------------------------------------------------------------------------------------

/// One series' history over a window.
#[derive(Debug, Clone)]
pub(crate) enum WindowData {
    /// Every point (memory, or the raw tier).
    Points(Vec<Point>),
    /// Roll-up buckets and their width in milliseconds.
    Buckets(Vec<Bucket>, i64),
}

impl WindowData {
    /// `(seconds from origin, value)` pairs for a regression: points as they are, buckets
    /// as their means at their middles.
    fn xy(&self, origin_ms: TimestampMs) -> Vec<(f64, f64)> {
        match self {
            WindowData::Points(p) => points_xy(p, origin_ms),
            WindowData::Buckets(b, width) => buckets_xy(b, *width, origin_ms),
        }
    }

    /// The values a quantile is taken over: points, or bucket means (an approximation).
    fn values(&self) -> Vec<f64> {
        match self {
            WindowData::Points(p) => p.iter().map(|p| p.value).collect(),
            WindowData::Buckets(b, _) => b
                .iter()
                .filter(|b| b.count > 0.0)
                .map(Bucket::mean)
                .collect(),
        }
    }

    /// The counter increase over the window (reset-aware).
    fn increase(&self) -> Option<f64> {
        match self {
            WindowData::Points(p) => counter_increase(p),
            WindowData::Buckets(b, _) => buckets_increase(b),
        }
    }
}

impl From<RangeData> for WindowData {
    fn from(data: RangeData) -> WindowData {
        match data {
            RangeData::Points(p) => WindowData::Points(p),
            RangeData::Buckets { tier, buckets } => WindowData::Buckets(buckets, tier.width_ms()),
        }
    }
}

/// The evaluation time, and each selected series with its window (see [`read_window`]).
type Selected = (TimestampMs, Vec<(Labels, Option<WindowData>)>);

/// The series of `name` matching `matcher` with history in `[now - window, now]`, in label
/// order: each with its data when `all`, else only the first (the others' labels are for
/// the "matches several series" error). Memory when it holds the whole window, else the
/// durable store's tier for the window (as `avg_over` and `rate` read).
fn read_window(
    store: &dyn SeriesRead,
    call: &str,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
    all: bool,
) -> RhaiResult<Selected> {
    let func = call.split('(').next().unwrap_or(call);
    let window = parse_window(func, window)?;
    let now = current_now_ms();
    let since = now.saturating_sub(duration_ms(window));
    let mut out: Vec<(Labels, Option<WindowData>)> = Vec::new();
    if since < store.memory_from(now) {
        let series = store
            .range(name, matcher, since, now, Resolution::Auto)
            .map_err(|e| rt_err(format!("{call}: cannot read history: {e}")))?;
        for s in series {
            let keep = all || out.is_empty();
            out.push((s.labels, keep.then(|| s.data.into())));
        }
    } else {
        store.visit_window(name, matcher, since, now, &mut |labels, points| {
            let keep = all || out.is_empty();
            out.push((
                labels.clone(),
                keep.then(|| WindowData::Points(points.iter().copied().collect())),
            ));
        });
    }
    Ok((now, out))
}

/// The window of the one matching series: `None` when none has points in it, an error
/// naming them when several do.
fn one_series(
    store: &dyn SeriesRead,
    func: &str,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
) -> RhaiResult<Option<(TimestampMs, WindowData)>> {
    let call = describe_call(func, name, matcher);
    let (now, mut found) = read_window(store, &call, name, matcher, window, false)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().and_then(|(_, d)| d).map(|d| (now, d))),
        _ => Err(too_many(
            &call,
            &found.iter().map(|(l, _)| l).collect::<Vec<_>>(),
        )),
    }
}

/// A number argument (an integer or a float).
fn number(func: &str, what: &str, v: &Dynamic) -> RhaiResult<f64> {
    if let Ok(f) = v.as_float() {
        Ok(f)
    } else if let Ok(i) = v.as_int() {
        Ok(i as f64)
    } else {
        Err(rt_err(format!(
            "{func}(): {what} must be a number, got {}",
            v.type_name()
        )))
    }
}

fn float_or_unit(v: Option<f64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from_float)
}

fn over(
    store: &dyn SeriesRead,
    f: Over,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
) -> RhaiResult<Dynamic> {
    Ok(
        match one_series(store, f.fn_name(), name, matcher, window)? {
            None => f.when_empty(),
            Some((now, data)) => f
                .apply(&data, now)
                .map_or_else(|| f.when_empty(), Dynamic::from_float),
        },
    )
}

fn quantile_over(
    store: &dyn SeriesRead,
    q: &Dynamic,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
) -> RhaiResult<Dynamic> {
    let q = number("quantile_over", "q", q)?;
    let data = one_series(store, "quantile_over", name, matcher, window)?;
    Ok(float_or_unit(
        data.and_then(|(_, d)| quantile_of(d.values(), q)),
    ))
}

fn predict_linear(
    store: &dyn SeriesRead,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
    seconds: &Dynamic,
) -> RhaiResult<Dynamic> {
    let seconds = number("predict_linear", "seconds", seconds)?;
    let data = one_series(store, "predict_linear", name, matcher, window)?;
    // x is seconds from the evaluation time, so the intercept is the line's value now.
    Ok(float_or_unit(data.and_then(|(now, d)| {
        linear_regression(&d.xy(now)).map(|(slope, now_value)| now_value + slope * seconds)
    })))
}

/// `name` of a classic histogram's bucket series: as given when it ends in `_bucket`.
fn bucket_name(name: &str) -> String {
    if name.ends_with("_bucket") {
        name.to_string()
    } else {
        format!("{name}_bucket")
    }
}

fn histogram_quantile(
    store: &dyn SeriesRead,
    q: &Dynamic,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
) -> RhaiResult<Dynamic> {
    let q = number("histogram_quantile", "q", q)?;
    let name = bucket_name(name);
    let call = describe_call("histogram_quantile", &name, matcher);
    let (_, found) = read_window(store, &call, &name, matcher, window, true)?;
    // One histogram is the buckets that share every label but `le`.
    let mut histograms: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for (mut labels, data) in found {
        // Prometheus ignores a series without a (numeric) `le`.
        let Some(le) = labels.remove("le").as_deref().and_then(parse_le) else {
            continue;
        };
        let entry = histograms.entry(labels).or_default();
        // A bucket with too few points for an increase is left out, as Prometheus' rate()
        // leaves it out of the vector.
        if let Some(inc) = data.as_ref().and_then(WindowData::increase) {
            entry.push((le, inc));
        }
    }
    if histograms.len() > 1 {
        let sets: Vec<String> = histograms.keys().take(3).map(show_labels).collect();
        let more = if histograms.len() > 3 { ", ..." } else { "" };
        return Err(rt_err(format!(
            "{call} matches {} histograms ({}{more}); add labels to pick one",
            histograms.len(),
            sets.join(", ")
        )));
    }
    Ok(float_or_unit(
        histograms
            .into_values()
            .next()
            .and_then(|b| bucket_quantile(q, b)),
    ))
}

/// How the `*_by` functions combine the values of a group.
#[derive(Debug, Clone, Copy)]
enum By {
    Sum,
    Avg,
    Max,
    Min,
    Count,
}

impl By {
    fn fn_name(self) -> &'static str {
        match self {
            By::Sum => "sum_by",
            By::Avg => "avg_by",
            By::Max => "max_by",
            By::Min => "min_by",
            By::Count => "count_by",
        }
    }

    /// The aggregate of a group's values (never empty).
    fn apply(self, values: &[f64]) -> f64 {
        let sum = || values.iter().sum::<f64>();
        match self {
            By::Sum => sum(),
            By::Avg => sum() / values.len() as f64,
            By::Max => values.iter().copied().fold(f64::NAN, f64::max),
            By::Min => values.iter().copied().fold(f64::NAN, f64::min),
            By::Count => values.len() as f64,
        }
    }
}

/// `by`: an array of label names.
fn label_names(func: &str, by: &Array) -> RhaiResult<Vec<String>> {
    by.iter()
        .enumerate()
        .map(|(i, v)| {
            v.read_lock::<ImmutableString>()
                .map(|s| s.to_string())
                .ok_or_else(|| {
                    rt_err(format!(
                        "{func}(): `by` must be an array of label names like [\"host\"], item {i} is a {}",
                        v.type_name()
                    ))
                })
        })
        .collect()
}

/// The latest values of the matching series, grouped by the labels `by` names (a series
/// without one of them goes to the group without it, as in PromQL), as
/// `#{ labels, value }` sorted by labels.
fn aggregate_by(
    store: &dyn SeriesRead,
    agg: By,
    name: &str,
    matcher: &Labels,
    by: &Array,
) -> RhaiResult<Array> {
    let by = label_names(agg.fn_name(), by)?;
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for (labels, p) in store.latest(name, matcher, current_now_ms()) {
        let key: Labels = by
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        groups.entry(key).or_default().push(p.value);
    }
    Ok(groups
        .into_iter()
        .map(|(labels, values)| {
            let mut m = Map::new();
            m.insert("labels".into(), Dynamic::from_map(labels_to_map(&labels)));
            m.insert("value".into(), Dynamic::from_float(agg.apply(&values)));
            Dynamic::from_map(m)
        })
        .collect())
}

/// Whether no matching series has a sample in the window, or (without one) within the
/// store's lookback, the same test `metric()` applies.
fn absent(
    store: &dyn SeriesRead,
    name: &str,
    matcher: &Labels,
    window: Option<&Dynamic>,
) -> RhaiResult<bool> {
    let Some(window) = window else {
        return Ok(store.latest(name, matcher, current_now_ms()).is_empty());
    };
    let call = describe_call("absent", name, matcher);
    let (_, found) = read_window(store, &call, name, matcher, window, false)?;
    Ok(found.is_empty())
}

/// The newest timestamp of each series: its last point's, or its last bucket's start.
fn newest(series: Vec<telltale_store::disk::RangeSeries>) -> Vec<(Labels, TimestampMs)> {
    series
        .into_iter()
        .filter_map(|s| {
            let t = match &s.data {
                RangeData::Points(p) => p.last()?.timestamp_ms,
                RangeData::Buckets { buckets, .. } => buckets.last()?.t,
            };
            Some((s.labels, t))
        })
        .collect()
}

/// `last_seen()`: the newest sample's time of the one matching series, from the finest
/// place that holds any: memory, the raw tier (2 days, exact), then the roll-ups, nearest
/// spans first (the start of the newest minute up to 30 days back, of the newest hour up
/// to a year, of the newest day beyond). The roll-up tiers are searched span by span, not
/// coarse to fine, because a series that stopped leaves its last minute open: the hour and
/// day tiers never receive it.
fn last_seen(store: &dyn SeriesRead, name: &str, matcher: &Labels) -> RhaiResult<Dynamic> {
    let now = current_now_ms();
    let call = describe_call("last_seen", name, matcher);
    let mut found: Vec<(Labels, TimestampMs)> = Vec::new();
    store.visit_window(
        name,
        matcher,
        TimestampMs::MIN,
        now,
        &mut |labels, points| {
            if let Some(p) = points.iter().next_back() {
                found.push((labels.clone(), p.timestamp_ms));
            }
        },
    );
    let ago = |days: i64| now.saturating_sub(days * 86_400_000);
    let spans = [
        (now.saturating_sub(LAST_SEEN_RAW_REACH_MS), now, Tier::Raw),
        (ago(7), now, Tier::Minute),
        (ago(30), ago(7), Tier::Minute),
        (ago(365), ago(30), Tier::Hour),
        (0, ago(365), Tier::Day),
    ];
    for (from, to, tier) in spans {
        if !found.is_empty() {
            break;
        }
        let series = store
            .range(name, matcher, from, to, Resolution::Tier(tier))
            .map_err(|e| rt_err(format!("{call}: cannot read history: {e}")))?;
        found = newest(series);
    }
    match found.as_slice() {
        [] => Ok(Dynamic::UNIT),
        [(_, t)] => Ok(Dynamic::from_int(*t)),
        many => Err(too_many(
            &call,
            &many.iter().map(|(l, _)| l).collect::<Vec<_>>(),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Registration.
// ---------------------------------------------------------------------------------------

/// Registers the functions of this module, every one volatile (see `functions.rs`).
pub(crate) fn register(engine: &mut Engine, store: &Arc<dyn SeriesRead>) {
    for f in [
        Over::Increase,
        Over::Stddev,
        Over::Count,
        Over::Changes,
        Over::Deriv,
    ] {
        register_selection_with(
            engine,
            f.fn_name(),
            store,
            move |s, name, matcher, window: Dynamic| over(s, f, name, matcher, &window),
        );
    }
    register_quantile(engine, "quantile_over", store, quantile_over);
    register_quantile(engine, "histogram_quantile", store, histogram_quantile);

    let s = store.clone();
    FuncRegistration::new("predict_linear")
        .with_volatility(true)
        .register_into_engine(
            engine,
            move |name: ImmutableString, window: Dynamic, seconds: Dynamic| {
                if window.is_map() {
                    return Err(rt_err(
                        "predict_linear(): with labels it takes four arguments: predict_linear(name, labels, window, seconds)",
                    ));
                }
                predict_linear(&*s, &name, &Labels::new(), &window, &seconds)
            },
        );
    let s = store.clone();
    FuncRegistration::new("predict_linear")
        .with_volatility(true)
        .register_into_engine(
            engine,
            move |name: ImmutableString, labels: Map, window: Dynamic, seconds: Dynamic| {
                let matcher = map_to_labels(&labels, "predict_linear()")?;
                predict_linear(&*s, &name, &matcher, &window, &seconds)
            },
        );

    for agg in [By::Sum, By::Avg, By::Max, By::Min, By::Count] {
        register_selection_with(
            engine,
            agg.fn_name(),
            store,
            move |s, name, matcher, by: Array| aggregate_by(s, agg, name, matcher, &by),
        );
    }
    register_selection(engine, "last_seen", store, last_seen);
    register_selection(engine, "absent", store, |s, name, matcher| {
        absent(s, name, matcher, None)
    });
    register_selection_with(
        engine,
        "absent",
        store,
        |s, name, matcher, window: Dynamic| absent(s, name, matcher, Some(&window)),
    );
}

/// Registers `fn_name(q, name, window)` and `fn_name(q, name, labels, window)`: the
/// quantiles, whose `q` comes first as in PromQL.
fn register_quantile(
    engine: &mut Engine,
    fn_name: &'static str,
    store: &Arc<dyn SeriesRead>,
    read: fn(&dyn SeriesRead, &Dynamic, &str, &Labels, &Dynamic) -> RhaiResult<Dynamic>,
) {
    let s = store.clone();
    FuncRegistration::new(fn_name)
        .with_volatility(true)
        .register_into_engine(
            engine,
            move |q: Dynamic, name: ImmutableString, window: Dynamic| {
                read(&*s, &q, &name, &Labels::new(), &window)
            },
        );
    let s = store.clone();
    let what = format!("{fn_name}()");
    FuncRegistration::new(fn_name)
        .with_volatility(true)
        .register_into_engine(
            engine,
            move |q: Dynamic, name: ImmutableString, labels: Map, window: Dynamic| {
                let matcher = map_to_labels(&labels, &what)?;
                read(&*s, &q, &name, &matcher, &window)
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::counter_rate;

    fn p(t: i64, v: f64) -> Point {
        Point {
            timestamp_ms: t,
            value: v,
        }
    }

    fn bucket(t: i64, values: &[f64], increase: f64) -> Bucket {
        let mut b = Bucket::of(t, values[0], increase);
        for &v in &values[1..] {
            b.merge(&Bucket::of(t, v, 0.0));
        }
        b
    }

    #[test]
    fn increase_handles_resets_and_matches_rate_times_span() {
        assert_eq!(counter_increase(&[]), None);
        assert_eq!(counter_increase(&[p(0, 5.0)]), None);
        // 0, 10, 20, 5 (reset: +5), 15: 10 + 10 + 5 + 10 = 35.
        let pts = [
            p(0, 0.0),
            p(10_000, 10.0),
            p(20_000, 20.0),
            p(30_000, 5.0),
            p(40_000, 15.0),
        ];
        assert_eq!(counter_increase(&pts), Some(35.0));
        // rate is the same increase over the 40 s between first and last point.
        assert_eq!(counter_rate(&pts), Some(35.0 / 40.0));
        // Buckets: their increases summed, 3 + 0 + 7.
        let b = [
            bucket(0, &[1.0], 3.0),
            bucket(60_000, &[1.0], 0.0),
            bucket(120_000, &[8.0], 7.0),
        ];
        assert_eq!(buckets_increase(&b), Some(10.0));
        assert_eq!(buckets_increase(&[]), None);
    }

    #[test]
    fn quantile_of_follows_prometheus_outside_0_1() {
        assert_eq!(quantile_of(vec![], 0.5), None);
        assert_eq!(quantile_of(vec![1.0], f64::NAN), None);
        assert_eq!(quantile_of(vec![1.0, 2.0], -0.1), Some(f64::NEG_INFINITY));
        assert_eq!(quantile_of(vec![1.0, 2.0], 1.1), Some(f64::INFINITY));
        // 4 values, q = 0.25: rank 0.75 between 10 and 20 -> 17.5.
        assert_eq!(quantile_of(vec![40.0, 10.0, 30.0, 20.0], 0.25), Some(17.5));
    }

    #[test]
    fn stddev_of_points_and_buckets() {
        assert_eq!(stddev(&[]), None);
        assert_eq!(stddev(&[p(0, 3.0)]), Some(0.0));
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, /8 = 4.
        let pts: Vec<Point> = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| p(i as i64, v))
            .collect();
        assert_eq!(stddev(&pts), Some(2.0));
        // Buckets {2,4,4,4} (mean 3.5) and {5,5,7,9} (mean 6.5), overall mean 5: between
        // variance (4 * 1.5² + 4 * 1.5²) / 8 = 2.25 -> 1.5, below the true 2.
        let b = [
            bucket(0, &[2.0, 4.0, 4.0, 4.0], 0.0),
            bucket(60_000, &[5.0, 5.0, 7.0, 9.0], 0.0),
        ];
        assert_eq!(stddev_buckets(&b), Some(1.5));
        assert_eq!(stddev_buckets(&[]), None);
    }

    #[test]
    fn changes_of_points_and_buckets() {
        assert_eq!(changes(&[]), None);
        assert_eq!(changes(&[p(0, 1.0)]), Some(0.0));
        // 1 1 2 2 1 NaN NaN 3: 1->2, 2->1, 1->NaN, NaN->3 = 4 (NaN->NaN is none).
        let v = [1.0, 1.0, 2.0, 2.0, 1.0, f64::NAN, f64::NAN, 3.0];
        let pts: Vec<Point> = v.iter().enumerate().map(|(i, &v)| p(i as i64, v)).collect();
        assert_eq!(changes(&pts), Some(4.0));
        // Buckets: {1,1} none; {1,1} same last, none; {2,2} last differs: 1; {2,5,2}
        // values differ: 1 (though there were 2). Lower bound 2.
        let b = [
            bucket(0, &[1.0, 1.0], 0.0),
            bucket(1, &[1.0, 1.0], 0.0),
            bucket(2, &[2.0, 2.0], 0.0),
            bucket(3, &[2.0, 5.0, 2.0], 0.0),
        ];
        assert_eq!(changes_buckets(&b), Some(2.0));
        assert_eq!(changes_buckets(&[bucket(0, &[1.0, 2.0], 0.0)]), Some(1.0));
        assert_eq!(changes_buckets(&[]), None);
    }

    #[test]
    fn linear_regression_by_hand() {
        assert_eq!(linear_regression(&[]), None);
        assert_eq!(linear_regression(&[(0.0, 1.0)]), None);
        // Constant: slope 0, value kept; all at one x with different values: undefined.
        assert_eq!(
            linear_regression(&[(0.0, 4.0), (1.0, 4.0)]),
            Some((0.0, 4.0))
        );
        assert_eq!(linear_regression(&[(1.0, 1.0), (1.0, 2.0)]), None);
        // (0,1) (1,3) (2,2) (3,5): mx 1.5, my 2.75; sxx = 2.25+0.25+0.25+2.25 = 5;
        // sxy = (-1.5)(-1.75) + (-0.5)(0.25) + (0.5)(-0.75) + (1.5)(2.25) = 5.5;
        // slope 1.1, intercept 2.75 - 1.1 * 1.5 = 1.1.
        let (slope, at0) =
            linear_regression(&[(0.0, 1.0), (1.0, 3.0), (2.0, 2.0), (3.0, 5.0)]).expect("defined");
        assert!((slope - 1.1).abs() < 1e-12, "{slope}");
        assert!((at0 - 1.1).abs() < 1e-12, "{at0}");
        // Bucket means at their middles: minute buckets of means 10 and 16 starting at 0
        // and 60 s, origin at 120 s: x = -90, -30, so slope 6 / 60 = 0.1 per second.
        let b = [bucket(0, &[10.0], 0.0), bucket(60_000, &[16.0], 0.0)];
        let xy = buckets_xy(&b, 60_000, 120_000);
        assert_eq!(xy, vec![(-90.0, 10.0), (-30.0, 16.0)]);
        let (slope, now) = linear_regression(&xy).expect("defined");
        assert!(
            (slope - 0.1).abs() < 1e-12 && (now - 19.0).abs() < 1e-12,
            "{slope} {now}"
        );
    }

    #[test]
    fn bucket_quantile_follows_prometheus() {
        let inf = f64::INFINITY;
        // 100 observations: 20 <= 0.1, 70 <= 0.5, 90 <= 1, 100 in all.
        let h = vec![(0.5, 70.0), (inf, 100.0), (0.1, 20.0), (1.0, 90.0)];
        // q 0.5: rank 50, in (0.1, 0.5] holding 50: 0.1 + 0.4 * 30/50 = 0.34.
        let v = bucket_quantile(0.5, h.clone()).expect("q 0.5");
        assert!((v - 0.34).abs() < 1e-12, "{v}");
        // q 0.1: rank 10 in the lowest bucket, from 0: 0.1 * 10/20 = 0.05.
        let v = bucket_quantile(0.1, h.clone()).expect("q 0.1");
        assert!((v - 0.05).abs() < 1e-12, "{v}");
        // q 0.95: rank 95 in the +Inf bucket: the highest finite bound, 1.
        assert_eq!(bucket_quantile(0.95, h.clone()), Some(1.0));
        // q 0.9: rank 90 is exactly the count of le=1: 0.5 + 0.5 * 20/20 = 1.
        assert_eq!(bucket_quantile(0.9, h.clone()), Some(1.0));
        assert_eq!(bucket_quantile(-0.5, h.clone()), Some(f64::NEG_INFINITY));
        assert_eq!(bucket_quantile(1.5, h.clone()), Some(f64::INFINITY));
        assert_eq!(bucket_quantile(f64::NAN, h.clone()), None);
        // No +Inf bucket, no observations, a lone bucket: NaN in Prometheus, None here.
        assert_eq!(bucket_quantile(0.5, vec![(0.1, 1.0), (1.0, 2.0)]), None);
        assert_eq!(bucket_quantile(0.5, vec![(0.1, 0.0), (inf, 0.0)]), None);
        assert_eq!(bucket_quantile(0.5, vec![(inf, 5.0)]), None);
        assert_eq!(bucket_quantile(0.5, vec![]), None);
        // A lowest bound at or below 0 is returned as it is: rank 2 of 4 in le=0.
        assert_eq!(
            bucket_quantile(0.5, vec![(0.0, 3.0), (inf, 4.0)]),
            Some(0.0)
        );
        // Non-monotonic counts (le=1 below le=0.5) are raised: le=1 counts 70 too, so
        // q 0.8 (rank 80) falls in +Inf: the highest finite bound.
        let h = vec![(0.5, 70.0), (1.0, 60.0), (inf, 100.0)];
        assert_eq!(bucket_quantile(0.8, h), Some(1.0));
        // Two series of one bound are added up: le=1 holds 2 + 2 of 8, q 0.25 (rank 2):
        // 0 + 1 * 2/4 = 0.5.
        assert_eq!(
            bucket_quantile(0.25, vec![(1.0, 2.0), (1.0, 2.0), (inf, 8.0)]),
            Some(0.5)
        );
    }

    #[test]
    fn le_labels_parse_like_prometheus() {
        assert_eq!(parse_le("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_le("0.25"), Some(0.25));
        assert_eq!(parse_le("1e3"), Some(1000.0));
        assert_eq!(parse_le("fast"), None);
        assert_eq!(parse_le("NaN"), None);
    }

    #[test]
    fn by_aggregates() {
        let v = [3.0, 1.0, 2.0];
        assert_eq!(By::Sum.apply(&v), 6.0);
        assert_eq!(By::Avg.apply(&v), 2.0);
        assert_eq!(By::Max.apply(&v), 3.0);
        assert_eq!(By::Min.apply(&v), 1.0);
        assert_eq!(By::Count.apply(&v), 3.0);
        assert_eq!(By::Max.apply(&[f64::NAN, 2.0]), 2.0, "NaN is passed over");
    }

    #[test]
    fn count_over_buckets_sums_their_counts() {
        let b = WindowData::Buckets(
            vec![
                bucket(0, &[1.0, 2.0], 0.0),
                bucket(60_000, &[1.0, 2.0, 3.0], 0.0),
            ],
            60_000,
        );
        assert_eq!(Over::Count.apply(&b, 0), Some(5.0));
        assert_eq!(Over::Count.apply(&WindowData::Points(vec![]), 0), Some(0.0));
    }
}
