//! The host functions rules read the store through (its read trait, [`SeriesRead`], and
//! nothing else). Their names and signatures are the public contract documented in
//! `rules/README.md`; change both together.
//!
//! Every store-reading function is registered as *volatile*: the optimiser
//! (`OptimizationLevel::Full`) would otherwise evaluate `metric("x")` once at compile time
//! and bake the answer into the rule. None of them may panic: a panic in a native function
//! unwinds through Rhai into the host. Errors are returned as Rhai runtime errors, which
//! Rhai positions at the call site.

use std::sync::Arc;
use std::time::Duration;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FLOAT, FuncRegistration, INT, ImmutableString, Map,
    Position, Variant,
};

use telltale_model::{Event, Labels, Point, TimestampMs, duration_ms, write_labels};
use telltale_store::disk::rollup::counter_step;
use telltale_store::disk::{Bucket, RangeData, Resolution};
use telltale_store::{PointRun, SeriesRead};

use super::sandbox::current_now_ms;

/// A Rhai result.
type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error from a host function.
pub(crate) fn rt_err(msg: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(msg.into()), Position::NONE).into()
}

/// Registers every host function and the absent-data comparisons.
pub(crate) fn register(engine: &mut Engine, store: Arc<dyn SeriesRead>) {
    register_store_functions(engine, &store);
    crate::promql::register(engine, &store);
    register_helpers(engine);
    register_absent_comparisons(engine);
}

/// How a window aggregate reduces the points of one series.
#[derive(Debug, Clone, Copy)]
enum Aggregate {
    Avg,
    Min,
    Max,
    P95,
    Rate,
}

impl Aggregate {
    fn fn_name(self) -> &'static str {
        match self {
            Aggregate::Avg => "avg_over",
            Aggregate::Min => "min_over",
            Aggregate::Max => "max_over",
            Aggregate::P95 => "p95_over",
            Aggregate::Rate => "rate",
        }
    }

    /// The aggregate of `points` (oldest first, non-empty), or `None` when it is undefined
    /// (a rate needs two points spanning some time).
    pub(crate) fn apply(self, points: &[Point]) -> Option<f64> {
        if points.is_empty() {
            return None;
        }
        match self {
            Aggregate::Avg => {
                Some(points.iter().map(|p| p.value).sum::<f64>() / points.len() as f64)
            }
            Aggregate::Min => points.iter().map(|p| p.value).reduce(f64::min),
            Aggregate::Max => points.iter().map(|p| p.value).reduce(f64::max),
            Aggregate::P95 => quantile(points.iter().map(|p| p.value).collect(), 0.95),
            Aggregate::Rate => counter_rate(points),
        }
    }
}

impl Aggregate {
    /// [`Aggregate::apply`] over points borrowed from the store, copying them only for the
    /// aggregates that need them in one slice (`p95` sorts them, `rate` reads pairs).
    fn apply_run(self, run: PointRun<'_>) -> Option<f64> {
        if run.is_empty() {
            return None;
        }
        let values = run.iter().map(|p| p.value);
        match self {
            // The same sums in the same order as over a slice: the same result, bit for bit.
            Aggregate::Avg => Some(values.sum::<f64>() / run.len() as f64),
            Aggregate::Min => values.reduce(f64::min),
            Aggregate::Max => values.reduce(f64::max),
            Aggregate::P95 | Aggregate::Rate => {
                self.apply(&run.iter().copied().collect::<Vec<Point>>())
            }
        }
    }

    /// The aggregate of roll-up buckets (oldest first): exact for `avg` (their sum over
    /// their count), `min` and `max`; `rate` is the counters' summed increase over the
    /// time the buckets cover; `p95` is the 95th percentile of the buckets' means (an
    /// approximation: roll-ups keep no distribution). `rules/README.md` says which
    /// window gets which.
    pub(crate) fn apply_buckets(self, buckets: &[Bucket], width_ms: i64) -> Option<f64> {
        let (first, last) = (buckets.first()?, buckets.last()?);
        match self {
            Aggregate::Avg => {
                let (sum, count) = buckets
                    .iter()
                    .fold((0.0, 0.0), |(s, c), b| (s + b.sum, c + b.count));
                (count > 0.0).then(|| sum / count)
            }
            Aggregate::Min => buckets.iter().map(|b| b.min).reduce(f64::min),
            Aggregate::Max => buckets.iter().map(|b| b.max).reduce(f64::max),
            Aggregate::P95 => quantile(buckets.iter().map(Bucket::mean).collect(), 0.95),
            Aggregate::Rate => {
                let span_s = (last.t + width_ms - first.t) as f64 / 1000.0;
                let increase: f64 = buckets.iter().map(|b| b.increase).sum();
                (span_s > 0.0).then(|| increase / span_s)
            }
        }
    }
}

/// The `q` quantile with linear interpolation between closest ranks (what Prometheus'
/// `quantile_over_time` and numpy's default do). NaNs sort last.
pub fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let (lo, hi) = (values.get(lower)?, values.get(upper)?);
    Some(lo + (hi - lo) * (rank - lower as f64))
}

/// Per-second increase of a counter over `points`: a decrease is a counter reset (the
/// counter restarted from 0), as in Prometheus. Divided by the time between the first and
/// the last point (no extrapolation to the window edges).
pub fn counter_rate(points: &[Point]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    let span_s = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    if span_s <= 0.0 {
        return None;
    }
    Some(counter_increase(points)? / span_s)
}

/// How much a counter rose over `points`: the sum of the rises between consecutive points,
/// a decrease counting as a restart from 0 (the store's roll-ups count it the same way,
/// `counter_step`), as Prometheus' `increase` does before it extrapolates. `None` with
/// fewer than two points.
pub(crate) fn counter_increase(points: &[Point]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    Some(
        points
            .windows(2)
            .map(|w| counter_step(Some(w[0].value), w[1].value))
            .sum(),
    )
}

/// Converts a Rhai map to a label set. Strings are taken as they are; numbers and booleans
/// are written out (`#{ cpu: 0 }` means `cpu="0"`); anything else is an error.
pub(crate) fn map_to_labels(map: &Map, what: &str) -> RhaiResult<Labels> {
    check_labels(map, what)?;
    Ok(map
        .iter()
        .map(|(k, v)| {
            let value = match v.read_lock::<ImmutableString>() {
                Some(s) => s.to_string(),
                None => v.to_string(),
            };
            (k.to_string(), value)
        })
        .collect())
}

/// What [`map_to_labels`] refuses, without building the labels: `alert()` checks its
/// labels where it is called, and they are converted once, when the rule returns.
fn check_labels(map: &Map, what: &str) -> RhaiResult<()> {
    match map
        .iter()
        .find(|(_, v)| !(v.is_string() || v.is_int() || v.is_float() || v.is_bool()))
    {
        Some((k, v)) => Err(rt_err(format!(
            "{what}: label `{k}` must be a string, got {}",
            v.type_name()
        ))),
        None => Ok(()),
    }
}

/// Converts a label set to a Rhai map.
pub(crate) fn labels_to_map(labels: &Labels) -> Map {
    labels
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect()
}

/// `{a="1"}` for error messages.
pub(crate) fn show_labels(labels: &Labels) -> String {
    let mut s = String::new();
    let _ = write_labels(&mut s, labels);
    if s.is_empty() { "{}".into() } else { s }
}

/// The error for a single-series function that matched several series.
pub(crate) fn too_many(call: &str, all: &[&Labels]) -> Box<EvalAltResult> {
    let mut shown: Vec<String> = all.iter().take(3).map(|l| show_labels(l)).collect();
    if all.len() > 3 {
        shown.push("...".into());
    }
    rt_err(format!(
        "{call} matches {} series ({}); add labels to pick one or use series()",
        all.len(),
        shown.join(", ")
    ))
}

/// `metric("x")` or `metric("x", #{..})` for messages.
pub(crate) fn describe_call(func: &str, name: &str, matcher: &Labels) -> String {
    if matcher.is_empty() {
        format!("{func}(\"{name}\")")
    } else {
        format!("{func}(\"{name}\", {})", show_labels(matcher))
    }
}

/// Reads a window argument: a duration string (`"5m"`) or a number of seconds.
pub(crate) fn parse_window(func: &str, window: &Dynamic) -> RhaiResult<Duration> {
    let d = if let Some(s) = window.read_lock::<ImmutableString>() {
        humantime::parse_duration(s.trim()).map_err(|e| {
            rt_err(format!(
                "{func}(): window \"{}\" is not a duration ({e}); write it like \"30s\", \"5m\" or \"1h\"", s.as_str()
            ))
        })?
    } else if let Ok(secs) = window.as_int() {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| rt_err(format!("{func}(): window must not be negative, got {secs}")))?
    } else if let Ok(secs) = window.as_float() {
        Duration::try_from_secs_f64(secs).map_err(|_| {
            rt_err(format!(
                "{func}(): window must be a non-negative number of seconds, got {secs}"
            ))
        })?
    } else {
        return Err(rt_err(format!(
            "{func}(): window must be a duration like \"5m\" or a number of seconds, got {}",
            window.type_name()
        )));
    };
    if d.is_zero() {
        return Err(rt_err(format!("{func}(): window must be longer than 0")));
    }
    Ok(d)
}

/// `metric()`: the latest value of the one matching series, `()` if none.
fn metric_value(store: &dyn SeriesRead, name: &str, matcher: &Labels) -> RhaiResult<Dynamic> {
    let now = current_now_ms();
    // One series, the common case, is read without copying its labels; the labels of
    // several are read for the message.
    match store.latest_count(name, matcher, now) {
        (0, _) => return Ok(Dynamic::UNIT),
        (1, Some(p)) => return Ok(Dynamic::from_float(p.value)),
        _ => {}
    }
    let hits = store.latest(name, matcher, now);
    match hits.as_slice() {
        [] => Ok(Dynamic::UNIT),
        [(_, p)] => Ok(Dynamic::from_float(p.value)),
        many => Err(too_many(
            &describe_call("metric", name, matcher),
            &many.iter().map(|(l, _)| l).collect::<Vec<_>>(),
        )),
    }
}

/// `series()`: `#{ labels, value }` for the latest value of every matching series.
fn series_values(store: &dyn SeriesRead, name: &str, matcher: &Labels) -> Array {
    let now = current_now_ms();
    store
        .latest(name, matcher, now)
        .into_iter()
        .map(|(labels, p)| {
            let mut m = Map::new();
            m.insert("labels".into(), Dynamic::from_map(labels_to_map(&labels)));
            m.insert("value".into(), Dynamic::from_float(p.value));
            Dynamic::from_map(m)
        })
        .collect()
}

/// A window aggregate over the one matching series, `()` if it has no points (or too few).
fn window_aggregate(
    store: &dyn SeriesRead,
    agg: Aggregate,
    name: &str,
    matcher: &Labels,
    window: &Dynamic,
) -> RhaiResult<Dynamic> {
    let window = parse_window(agg.fn_name(), window)?;
    let now: TimestampMs = current_now_ms();
    let since = now.saturating_sub(duration_ms(window));
    let mut matched: Vec<Labels> = Vec::new();
    let mut result: Option<f64> = None;
    if since < store.memory_from(now) {
        // Beyond the in-memory window: the durable store's tier for this window.
        let series = store
            .range(name, matcher, since, now, Resolution::Auto)
            .map_err(|e| {
                rt_err(format!(
                    "{}: cannot read history: {e}",
                    describe_call(agg.fn_name(), name, matcher)
                ))
            })?;
        for s in series {
            if matched.is_empty() {
                result = match &s.data {
                    RangeData::Points(points) => agg.apply(points),
                    RangeData::Buckets { tier, buckets } => {
                        agg.apply_buckets(buckets, tier.width_ms())
                    }
                };
            }
            matched.push(s.labels);
        }
    } else {
        // Read straight from the store's buffers: no copy of points or labels. Several
        // series are an error, whose message names them: read again for their labels.
        let mut count = 0usize;
        store.visit_window(name, matcher, since, now, &mut |_, points| {
            count += 1;
            if count == 1 {
                result = agg.apply_run(points);
            }
        });
        if count > 1 {
            store.visit_window(name, matcher, since, now, &mut |labels, _| {
                matched.push(labels.clone());
            });
        }
        if count == 1 {
            return Ok(result.map_or(Dynamic::UNIT, Dynamic::from_float));
        }
    }
    match matched.len() {
        0 => Ok(Dynamic::UNIT),
        1 => Ok(result.map_or(Dynamic::UNIT, Dynamic::from_float)),
        _ => Err(too_many(
            &describe_call(agg.fn_name(), name, matcher),
            &matched.iter().collect::<Vec<_>>(),
        )),
    }
}

/// `events()`: the analyzer events of kind `kind` whose labels include `matcher`, stamped
/// within `window` of now (inclusive), oldest first, each as `#{ time, kind, severity,
/// message, source, labels }`.
fn event_list(
    store: &dyn SeriesRead,
    kind: &str,
    matcher: &Labels,
    window: &Dynamic,
) -> RhaiResult<Array> {
    let window = parse_window("events", window)?;
    let now = current_now_ms();
    let since = now.saturating_sub(duration_ms(window));
    Ok(store
        .events(kind, matcher, since, now)
        .into_iter()
        .map(|e| Dynamic::from_map(event_map(e)))
        .collect())
}

/// One event as a rule sees it.
fn event_map(e: Event) -> Map {
    let mut m = Map::new();
    m.insert("time".into(), Dynamic::from_int(e.timestamp_ms));
    m.insert("kind".into(), e.kind.into());
    m.insert("severity".into(), e.severity.as_str().into());
    m.insert("message".into(), e.message.into());
    m.insert("source".into(), e.source.into());
    m.insert("labels".into(), Dynamic::from_map(labels_to_map(&e.labels)));
    m
}

/// Registers `fn_name(name)` and `fn_name(name, labels)`, both volatile, over `read`:
/// the pair every selection of series has (no labels selects the whole family).
pub(crate) fn register_selection<T: Variant + Clone>(
    engine: &mut Engine,
    fn_name: &'static str,
    store: &Arc<dyn SeriesRead>,
    read: impl Fn(&dyn SeriesRead, &str, &Labels) -> RhaiResult<T> + Send + Sync + Clone + 'static,
) {
    let (s, f) = (store.clone(), read.clone());
    FuncRegistration::new(fn_name)
        .with_volatility(true)
        .register_into_engine(engine, move |name: ImmutableString| {
            f(&*s, &name, &Labels::new())
        });
    let s = store.clone();
    // Named once here: formatting it on every call showed in the 10k-rule profile.
    let what = format!("{fn_name}()");
    FuncRegistration::new(fn_name)
        .with_volatility(true)
        .register_into_engine(engine, move |name: ImmutableString, labels: Map| {
            let matcher = map_to_labels(&labels, &what)?;
            read(&*s, &name, &matcher)
        });
}

/// Registers `fn_name(name, arg)` and `fn_name(name, labels, arg)`, both volatile, over
/// `read`: a selection that takes one more argument (a window, the labels to group by).
pub(crate) fn register_selection_with<A: Variant + Clone, T: Variant + Clone>(
    engine: &mut Engine,
    fn_name: &'static str,
    store: &Arc<dyn SeriesRead>,
    read: impl Fn(&dyn SeriesRead, &str, &Labels, A) -> RhaiResult<T> + Send + Sync + Clone + 'static,
) {
    let (s, f) = (store.clone(), read.clone());
    FuncRegistration::new(fn_name)
        .with_volatility(true)
        .register_into_engine(engine, move |name: ImmutableString, arg: A| {
            f(&*s, &name, &Labels::new(), arg)
        });
    let s = store.clone();
    let what = format!("{fn_name}()");
    FuncRegistration::new(fn_name)
        .with_volatility(true)
        .register_into_engine(engine, move |name: ImmutableString, labels: Map, arg: A| {
            let matcher = map_to_labels(&labels, &what)?;
            read(&*s, &name, &matcher, arg)
        });
}

fn register_store_functions(engine: &mut Engine, store: &Arc<dyn SeriesRead>) {
    register_selection(engine, "metric", store, metric_value);
    register_selection(engine, "series", store, |s, name, matcher| {
        Ok(series_values(s, name, matcher))
    });
    for agg in [
        Aggregate::Avg,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::P95,
        Aggregate::Rate,
    ] {
        register_selection_with(
            engine,
            agg.fn_name(),
            store,
            move |s, name, matcher, window: Dynamic| {
                window_aggregate(s, agg, name, matcher, &window)
            },
        );
    }

    let s = store.clone();
    FuncRegistration::new("label_values")
        .with_volatility(true)
        .register_into_engine(
            engine,
            move |name: ImmutableString, label: ImmutableString| -> RhaiResult<Array> {
                Ok(s.label_values(&name, &label)
                    .into_iter()
                    .map(Dynamic::from)
                    .collect())
            },
        );

    register_selection_with(
        engine,
        "events",
        store,
        |s, kind, matcher, window: Dynamic| event_list(s, kind, matcher, &window),
    );

    FuncRegistration::new("now_ms")
        .with_volatility(true)
        .register_into_engine(engine, || -> RhaiResult<INT> { Ok(current_now_ms()) });
}

/// Reads an alert value: a number.
fn alert_value(value: &Dynamic) -> RhaiResult<f64> {
    if let Ok(f) = value.as_float() {
        Ok(f)
    } else if let Ok(i) = value.as_int() {
        Ok(i as f64)
    } else if value.is_unit() {
        Err(rt_err(
            "alert(): value is () (no data: the metric is absent or the window is empty)",
        ))
    } else {
        Err(rt_err(format!(
            "alert(): value must be a number, got {}",
            value.type_name()
        )))
    }
}

/// Builds the alert map `#{ value, labels, summary }`.
fn alert_map(
    value: &Dynamic,
    labels: Option<Map>,
    summary: Option<ImmutableString>,
) -> RhaiResult<Map> {
    let mut m = Map::new();
    m.insert("value".into(), Dynamic::from_float(alert_value(value)?));
    if let Some(labels) = labels {
        // Checked now, so the error points at the alert() call rather than the return.
        check_labels(&labels, "alert()")?;
        m.insert("labels".into(), Dynamic::from_map(labels));
    }
    if let Some(summary) = summary {
        m.insert("summary".into(), Dynamic::from(summary));
    }
    Ok(m)
}

fn register_helpers(engine: &mut Engine) {
    engine.register_fn("alert", |value: Dynamic| alert_map(&value, None, None));
    engine.register_fn("alert", |value: Dynamic, labels: Map| {
        alert_map(&value, Some(labels), None)
    });
    engine.register_fn(
        "alert",
        |value: Dynamic, labels: Map, summary: ImmutableString| {
            alert_map(&value, Some(labels), Some(summary))
        },
    );
}

/// `()` (absent data) compares false against any number, so `if metric("x") > 90` is
/// simply false when `x` is missing instead of a type error.
fn register_absent_comparisons(engine: &mut Engine) {
    for op in [">", ">=", "<", "<="] {
        engine.register_fn(op, |_: (), _: INT| false);
        engine.register_fn(op, |_: (), _: FLOAT| false);
        engine.register_fn(op, |_: INT, _: ()| false);
        engine.register_fn(op, |_: FLOAT, _: ()| false);
        engine.register_fn(op, |_: (), _: ()| false);
    }
}

#[cfg(test)]
mod aggregate_tests {
    use super::*;

    #[test]
    fn an_aggregate_over_borrowed_points_is_the_aggregate_over_a_slice() {
        // Values 3, 1, 4, 1, 5 then a counter reset to 2, one second apart.
        let points: Vec<Point> = [3.0, 1.0, 4.0, 1.0, 5.0, 2.0]
            .iter()
            .enumerate()
            .map(|(i, &value)| Point {
                timestamp_ms: i as i64 * 1000,
                value,
            })
            .collect();
        let run = PointRun::from_slice(&points);
        for agg in [
            Aggregate::Avg,
            Aggregate::Min,
            Aggregate::Max,
            Aggregate::P95,
            Aggregate::Rate,
        ] {
            assert_eq!(agg.apply_run(run), agg.apply(&points), "{agg:?}");
        }
        // By hand: mean 16/6, min 1, max 5.
        assert_eq!(Aggregate::Avg.apply_run(run), Some(16.0 / 6.0));
        assert_eq!(Aggregate::Min.apply_run(run), Some(1.0));
        assert_eq!(Aggregate::Max.apply_run(run), Some(5.0));
        assert_eq!(Aggregate::Avg.apply_run(PointRun::from_slice(&[])), None);
    }
}
