//! Rules calling the PromQL-style host functions (`promql.rs`) on a real store: in memory,
//! and through the durable store's tiers (a real database in a temporary directory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use telltale_model::{Labels, Sample};
use telltale_store::disk::{Database, Disk, DiskConfig};
use telltale_store::{SeriesStore, StoreLimits};

const T0: i64 = 1_700_000_000_000;

fn store() -> Arc<SeriesStore> {
    Arc::new(SeriesStore::new(StoreLimits::default()))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads a rule whose `evaluate()` body is `body` and evaluates it at `now`.
#[allow(clippy::result_large_err)]
fn eval(store: &Arc<SeriesStore>, body: &str, now: i64) -> Result<Vec<AlertCandidate>, RuleError> {
    let src = format!(
        "const RULE = #{{ name: \"t\", severity: \"warning\" }};\nfn evaluate() {{\n{body}\n}}\n"
    );
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    let diags = set.load_source(Path::new("t.rhai"), PathBuf::from("t.rhai"), &src);
    assert!(diags.is_empty(), "unexpected diagnostics: {diags:?}");
    let mut results = set.evaluate(now);
    assert_eq!(results.len(), 1);
    results.remove(0).outcome
}

/// The value of `alert(<expr>)` at T0.
#[allow(clippy::result_large_err)]
fn value(store: &Arc<SeriesStore>, expr: &str) -> Result<f64, RuleError> {
    Ok(eval(store, &format!("alert({expr})"), T0)?[0].value)
}

/// Whether `cond` holds at T0.
fn holds(store: &Arc<SeriesStore>, cond: &str) -> bool {
    !eval(
        store,
        &format!("if {cond} {{ alert(1) }} else {{ [] }}"),
        T0,
    )
    .expect("evaluates")
    .is_empty()
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

/// Series ending at T0: a counter with a reset, gauges with known statistics, a histogram
/// for two routes, and one stale series.
fn memory_store() -> Arc<SeriesStore> {
    let s = store();
    let at = |ago_s: i64| T0 - ago_s * 1000;
    // Counter 0, 10, 20, 5 (reset), 15 every 10 s: increase 10 + 10 + 5 + 10 = 35 in 40 s.
    for (i, v) in [0.0, 10.0, 20.0, 5.0, 15.0].into_iter().enumerate() {
        s.ingest([Sample::new("reqs_total", &[], v, at(40 - 10 * i as i64))]);
    }
    // 2, 4, 4, 4, 5, 5, 7, 9, one a second: mean 5, population stddev 2.
    for (i, v) in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
        .into_iter()
        .enumerate()
    {
        s.ingest([Sample::new("spread", &[], v, at(7 - i as i64))]);
    }
    // 1, 1, 2, 2, 1: two changes.
    for (i, v) in [1.0, 1.0, 2.0, 2.0, 1.0].into_iter().enumerate() {
        s.ingest([Sample::new("flips", &[], v, at(4 - i as i64))]);
    }
    // 1, 3, 2, 5 at -30, -20, -10, 0 s: least squares in steps of 10 s gives slope 1.1 a
    // step (promql.rs computes it), 0.11/s; the line is at 1.1 + 3 * 1.1 = 4.4 now.
    for (i, v) in [1.0, 3.0, 2.0, 5.0].into_iter().enumerate() {
        s.ingest([Sample::new("disk_used", &[], v, at(30 - 10 * i as i64))]);
    }
    // 40, 10, 30, 20: the 0.25 quantile is rank 0.75 between 10 and 20: 17.5.
    for (i, v) in [40.0, 10.0, 30.0, 20.0].into_iter().enumerate() {
        s.ingest([Sample::new("lat", &[], v, at(3 - i as i64))]);
    }
    // Histogram of route /a, at -10 min (outside a 5 m window), -4 min and now. In the
    // last 5 minutes the buckets rose: le=0.1 by 20, le=0.5 by 70 (a reset at T0: from
    // 500 to 70 counts 70), le=1 by 90, +Inf by 100.
    let hist = [
        ("0.1", [1000.0, 5.0, 25.0]),
        ("0.5", [1000.0, 430.0, 70.0]),
        ("1", [1000.0, 10.0, 100.0]),
        ("+Inf", [1000.0, 10.0, 110.0]),
    ];
    for (le, counts) in hist {
        for (ago, c) in [600, 240, 0].into_iter().zip(counts) {
            s.ingest([Sample::new(
                "http_latency_seconds_bucket",
                &[("route", "/a"), ("le", le)],
                c,
                at(ago),
            )]);
        }
    }
    // Route /b: one bucket pair, for the "several histograms" error.
    for le in ["1", "+Inf"] {
        for ago in [60, 0] {
            s.ingest([Sample::new(
                "http_latency_seconds_bucket",
                &[("route", "/b"), ("le", le)],
                (60 - ago) as f64,
                at(ago),
            )]);
        }
    }
    for (job, instance, v) in [("api", "a", 3.0), ("api", "b", 5.0), ("db", "c", 7.0)] {
        s.ingest([Sample::new(
            "inflight",
            &[("job", job), ("instance", instance)],
            v,
            at(1),
        )]);
    }
    s.ingest([Sample::new("inflight", &[("instance", "d")], 1.0, at(1))]);
    s.ingest([Sample::new("stale", &[], 1.0, at(3600))]);
    s
}

#[test]
fn increase_and_rate_handle_counter_resets_without_extrapolating() {
    let s = memory_store();
    assert_eq!(
        value(&s, "increase(\"reqs_total\", \"1m\")").expect("increase"),
        35.0
    );
    assert_eq!(
        value(&s, "increase(\"reqs_total\", #{}, 60)").expect("labels form"),
        35.0
    );
    close(
        value(&s, "rate(\"reqs_total\", \"1m\")").expect("rate"),
        35.0 / 40.0,
    );
    // A 25 s window holds 20 (-20 s), 5 (reset), 15: 5 + 10 = 15, not extrapolated to 25 s.
    assert_eq!(
        value(&s, "increase(\"reqs_total\", \"25s\")").expect("short"),
        15.0
    );
    // One point (5 s window) or none: ().
    assert!(holds(
        &s,
        "increase(\"reqs_total\", \"5s\") == () && increase(\"nope\", \"5m\") == ()"
    ));
    let err = value(&s, "increase(\"inflight\", \"5m\")").expect_err("ambiguous");
    assert!(
        err.message
            .starts_with("increase(\"inflight\") matches 4 series"),
        "{err}"
    );
}

#[test]
fn histogram_quantile_over_a_window() {
    let s = memory_store();
    let a = "#{ route: \"/a\" }";
    // Increases 20, 70, 90, 100 (see memory_store). q 0.5: rank 50 in (0.1, 0.5] holding
    // 50: 0.1 + 0.4 * 30 / 50 = 0.34. The name may be given with or without `_bucket`.
    close(
        value(
            &s,
            &format!("histogram_quantile(0.5, \"http_latency_seconds\", {a}, \"5m\")"),
        )
        .expect("q 0.5"),
        0.34,
    );
    close(
        value(
            &s,
            &format!("histogram_quantile(0.5, \"http_latency_seconds_bucket\", {a}, 300)"),
        )
        .expect("with _bucket"),
        0.34,
    );
    // q 0.1: rank 10 in the lowest bucket, from 0: 0.1 * 10 / 20 = 0.05.
    close(
        value(
            &s,
            &format!("histogram_quantile(0.1, \"http_latency_seconds\", {a}, \"5m\")"),
        )
        .expect("q 0.1"),
        0.05,
    );
    // q 0.95: rank 95 lies in +Inf: the highest finite bound.
    assert_eq!(
        value(
            &s,
            &format!("histogram_quantile(0.95, \"http_latency_seconds\", {a}, \"5m\")")
        )
        .expect("q 0.95"),
        1.0
    );
    // Out of range q: -inf and +inf, as Prometheus.
    let out = eval(
        &s,
        &format!(
            "let hi = histogram_quantile(2, \"http_latency_seconds\", {a}, \"5m\");\nlet lo = histogram_quantile(-1, \"http_latency_seconds\", {a}, \"5m\");\nalert(1, #{{ hi: `${{hi}}`, lo: `${{lo}}` }})"
        ),
        T0,
    )
    .expect("evaluates");
    assert_eq!(out[0].labels, labels(&[("hi", "inf"), ("lo", "-inf")]));
    // Over 1 minute each bucket has one point: no increase, no +Inf bucket: ().
    assert!(holds(
        &s,
        &format!("histogram_quantile(0.5, \"http_latency_seconds\", {a}, \"1m\") == ()")
    ));
    // Route /b's buckets rose 60 in both: all observations at or under 1, rank 30 of 60
    // in (0, 1]: 0.5. Without a route: an error naming both histograms.
    close(
        value(
            &s,
            "histogram_quantile(0.5, \"http_latency_seconds\", #{ route: \"/b\" }, \"5m\")",
        )
        .expect("route b"),
        0.5,
    );
    let err = value(
        &s,
        "histogram_quantile(0.5, \"http_latency_seconds\", \"5m\")",
    )
    .expect_err("two histograms");
    assert_eq!(
        err.message,
        "histogram_quantile(\"http_latency_seconds_bucket\") matches 2 histograms ({route=\"/a\"}, {route=\"/b\"}); add labels to pick one"
    );
    assert!(holds(
        &s,
        "histogram_quantile(0.5, \"nope\", #{}, \"5m\") == ()"
    ));
}

#[test]
fn aggregations_by_label() {
    let s = memory_store();
    // inflight: api/a 3, api/b 5, db/c 7, d (no job) 1. By job: {} 1, api 8, db 7 (sorted
    // by labels: the empty set first).
    let out = eval(
        &s,
        "let out = []; for g in sum_by(\"inflight\", #{}, [\"job\"]) { out.push(alert(g.value, g.labels)); } out",
        T0,
    )
    .expect("sum_by");
    let got: Vec<(Labels, f64)> = out.iter().map(|a| (a.labels.clone(), a.value)).collect();
    assert_eq!(
        got,
        vec![
            (labels(&[]), 1.0),
            (labels(&[("job", "api")]), 8.0),
            (labels(&[("job", "db")]), 7.0)
        ]
    );
    let api = "#{ job: \"api\" }";
    assert_eq!(
        value(&s, &format!("avg_by(\"inflight\", {api}, [])[0].value")).expect("avg"),
        4.0
    );
    assert_eq!(
        value(
            &s,
            &format!("max_by(\"inflight\", {api}, [\"job\"])[0].value")
        )
        .expect("max"),
        5.0
    );
    assert_eq!(
        value(&s, &format!("min_by(\"inflight\", {api}, [])[0].value")).expect("min"),
        3.0
    );
    assert_eq!(
        value(&s, "count_by(\"inflight\", []).len()").expect("one group"),
        1.0
    );
    assert_eq!(
        value(&s, "count_by(\"inflight\", [])[0].value").expect("count"),
        4.0
    );
    assert_eq!(value(&s, "sum_by(\"nope\", []).len()").expect("none"), 0.0);
    let err = value(&s, "sum_by(\"inflight\", #{}, [1]).len()").expect_err("bad by");
    assert!(
        err.message.contains(
            "sum_by(): `by` must be an array of label names like [\"host\"], item 0 is a i64"
        ),
        "{err}"
    );
}

#[test]
fn window_statistics() {
    let s = memory_store();
    close(
        value(&s, "quantile_over(0.25, \"lat\", \"1m\")").expect("quantile"),
        17.5,
    );
    close(
        value(&s, "quantile_over(1, \"lat\", #{}, \"1m\")").expect("max"),
        40.0,
    );
    assert_eq!(
        value(&s, "stddev_over(\"spread\", \"1m\")").expect("stddev"),
        2.0
    );
    assert_eq!(
        value(&s, "count_over(\"spread\", \"1m\")").expect("count"),
        8.0
    );
    // The last 3 s hold 5, 7, 9.
    assert_eq!(
        value(&s, "count_over(\"spread\", #{}, 2)").expect("count 2 s"),
        3.0
    );
    assert_eq!(
        value(&s, "count_over(\"nope\", \"1m\")").expect("none"),
        0.0
    );
    assert_eq!(
        value(&s, "changes(\"flips\", \"1m\")").expect("changes"),
        2.0
    );
    close(
        value(&s, "deriv(\"disk_used\", \"1m\")").expect("deriv"),
        0.11,
    );
    // The line is at 4.4 now and rises 0.11/s: 4.4 + 11 = 15.4 in 100 s.
    close(
        value(&s, "predict_linear(\"disk_used\", \"1m\", 100)").expect("predict"),
        15.4,
    );
    close(
        value(&s, "predict_linear(\"disk_used\", #{}, \"1m\", 0)").expect("predict now"),
        4.4,
    );
    let err = value(&s, "predict_linear(\"disk_used\", #{}, \"1m\")").expect_err("no seconds");
    assert!(
        err.message
            .contains("predict_linear(name, labels, window, seconds)"),
        "{err}"
    );
    assert!(holds(
        &s,
        "deriv(\"nope\", \"1m\") == () && stddev_over(\"nope\", \"1m\") == () && changes(\"nope\", \"1m\") == ()"
    ));
}

#[test]
fn absent_and_last_seen_in_memory() {
    let s = memory_store();
    // `stale` was last written an hour ago: beyond the 5 minute lookback.
    assert!(holds(
        &s,
        "absent(\"nope\") && absent(\"stale\") && !absent(\"reqs_total\")"
    ));
    assert!(holds(
        &s,
        "!absent(\"stale\", \"2h\") && absent(\"stale\", #{}, \"30m\")"
    ));
    assert!(holds(
        &s,
        "absent(\"inflight\", #{ job: \"web\" }) && !absent(\"inflight\", #{ job: \"db\" }, 60)"
    ));
    assert_eq!(
        value(&s, "last_seen(\"stale\")").expect("stale"),
        (T0 - 3_600_000) as f64
    );
    assert_eq!(
        value(&s, "last_seen(\"inflight\", #{ instance: \"d\" })").expect("d"),
        (T0 - 1000) as f64
    );
    assert!(holds(&s, "last_seen(\"nope\") == ()"));
    let err = value(&s, "last_seen(\"inflight\")").expect_err("ambiguous");
    assert!(
        err.message
            .starts_with("last_seen(\"inflight\") matches 4 series"),
        "{err}"
    );
}

/// A store with the durable store attached in `dir`.
fn disk_store(dir: &Path) -> (Arc<SeriesStore>, telltale_store::disk::PersisterHandle) {
    let db = Arc::new(Database::open(&dir.join("t.db")).expect("open"));
    let s = store();
    let handle = Disk::start(db, DiskConfig::default(), &s).expect("start");
    (s, handle)
}

#[test]
fn a_one_day_window_reads_the_minute_rollups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, handle) = disk_store(dir.path());
    let now = telltale_model::now_ms();
    let step = 600_000;
    // Two days of samples every 10 minutes, on minute boundaries (one per minute bucket).
    let first = (now - 2 * 86_400_000).div_euclid(60_000) * 60_000;
    let times: Vec<i64> = (0..)
        .map(|k| first + k * step)
        .take_while(|&t| t <= now)
        .collect();
    // A counter rising 5 a sample and wrapping to 0 after 295; a histogram whose le=1
    // bucket rises 3 a sample and +Inf 4; a gauge rising 0.01 a second.
    let counter = |k: usize| (k as f64 * 5.0) % 300.0;
    for (k, &t) in times.iter().enumerate() {
        s.ingest([
            Sample::new("c_total", &[], counter(k), t),
            Sample::new("h_bucket", &[("le", "1")], 3.0 * k as f64, t),
            Sample::new("h_bucket", &[("le", "+Inf")], 4.0 * k as f64, t),
            Sample::new("g", &[], (t - first) as f64 / 100_000.0, t),
        ]);
    }
    handle.stop();
    // "1d" reads the minute tier: the buckets starting in [now - 1 d, now], one sample
    // each; a bucket's increase is the rise from the sample before it (the one before the
    // window counts for the first), a wrap counting as a restart from 0.
    let from = now - 86_400_000;
    let inside: Vec<usize> = (0..times.len()).filter(|&k| times[k] >= from).collect();
    let want_increase: f64 = inside
        .iter()
        .map(|&k| {
            let (prev, cur) = (counter(k - 1), counter(k));
            if cur >= prev { cur - prev } else { cur }
        })
        .sum();
    let v = |expr: &str| eval(&s, &format!("alert({expr})"), now).expect("evaluates")[0].value;
    assert_eq!(v("increase(\"c_total\", \"1d\")"), want_increase);
    assert_eq!(v("count_over(\"c_total\", \"1d\")"), inside.len() as f64);
    // Buckets rose 3n and 4n: rank 0.5 * 4n = 2n lies in (0, 1] at 2n / 3n.
    close(v("histogram_quantile(0.5, \"h\", #{}, \"1d\")"), 2.0 / 3.0);
    // Bucket means of a line, each placed half a bucket late: the slope is unchanged.
    close(v("deriv(\"g\", \"1d\")"), 0.01);
    // Each bucket's one value differs from the previous bucket's: one change per bucket
    // but the first (whose predecessor lies outside the window).
    assert_eq!(v("changes(\"g\", \"1d\")"), (inside.len() - 1) as f64);
}

#[test]
fn last_seen_reaches_into_the_durable_store_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = telltale_model::now_ms();
    // `recent` stopped 3 hours ago (in the raw tier), `old` 5 days ago (only in roll-ups:
    // the raw tier reaches back 2 days), each a few samples a minute apart.
    let recent_last = now - 3 * 3_600_000 - 1_234;
    let old_last = (now - 5 * 86_400_000).div_euclid(60_000) * 60_000 + 17_000;
    {
        let (s, handle) = disk_store(dir.path());
        for k in 0..5 {
            s.ingest([
                Sample::new("recent", &[("host", "a")], 1.0, recent_last - k * 60_000),
                Sample::new("old", &[("host", "b")], 1.0, old_last - k * 60_000),
            ]);
        }
        handle.stop();
    }
    // A new engine: memory holds nothing of either.
    let (s, handle) = disk_store(dir.path());
    let v = |expr: &str| eval(&s, &format!("alert({expr})"), now).expect("evaluates")[0].value;
    assert_eq!(
        v("last_seen(\"recent\")"),
        recent_last as f64,
        "raw tier: exact"
    );
    // Roll-ups know the minute: the start of the newest sample's minute.
    assert_eq!(
        v("last_seen(\"old\", #{ host: \"b\" })"),
        (old_last - 17_000) as f64
    );
    assert!(
        eval(
            &s,
            "if last_seen(\"old\", #{ host: \"x\" }) == () { alert(1) } else { [] }",
            now
        )
        .expect("evaluates")
        .len()
            == 1
    );
    // And absent() over a window sees the history too.
    let out = eval(
        &s,
        "if !absent(\"recent\", \"4h\") && absent(\"recent\", \"2h\") { alert(1) } else { [] }",
        now,
    )
    .expect("evaluates");
    assert_eq!(out.len(), 1);
    handle.stop();
}

#[test]
fn readme_examples_of_these_functions_run() {
    // Every ```rhai block from `rate` to `label_values` in rules/README.md, run as a rule
    // body: on an empty store they must evaluate (absent data is () and compares false).
    let readme = include_str!("../../../rules/README.md");
    let start = readme.find("### `rate(").expect("rate section");
    let end = readme
        .find("### `label_values(")
        .expect("label_values section");
    let blocks: Vec<&str> = readme[start..end]
        .split("```rhai\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or(""))
        .collect();
    assert_eq!(blocks.len(), 8, "one example per section");
    let s = store();
    for block in blocks {
        let out = eval(&s, block, T0).unwrap_or_else(|e| panic!("{e}\nin:\n{block}"));
        // Only the deadman fires on an empty store.
        assert_eq!(out.len(), usize::from(block.contains("absent(")), "{block}");
    }
}

#[test]
fn the_feature_extraction_examples_p95_is_over_the_last_5_minutes() {
    // The example rule with its threshold lowered to 40 ms (as tests/e2e/prometheus.rs
    // does). Its histogram counted 1,000 requests long ago (all <= 10 ms), then in the last
    // 5 minutes 200 more: 67 <= 20 ms, all 200 <= 50 ms. Rank 190 of the 200 lies 123/133
    // of the way through (20, 50]; the old requests do not count.
    let src = include_str!("../../../examples/feature-extraction/rules/p95_latency.rhai")
        .replace("let threshold_ms = 500.0;", "let threshold_ms = 40.0;");
    let s = store();
    let hist = [
        ("10.0", 0.0),
        ("20.0", 67.0),
        ("50.0", 200.0),
        ("+Inf", 200.0),
    ];
    fn l(le: Option<&str>) -> Vec<(&str, &str)> {
        let mut v = vec![
            ("job", "ray-serve"),
            ("route", "/extract"),
            ("method", "GET"),
            ("status_code", "200"),
        ];
        v.extend(le.map(|le| ("le", le)));
        v
    }
    for (ago_s, base) in [(600, 0.0), (240, 1000.0), (0, 1000.0)] {
        let t = T0 - ago_s * 1000;
        for (le, new) in hist {
            let c = if ago_s == 0 { base + new } else { base };
            s.ingest([Sample::new(
                "ray_serve_http_request_latency_ms_bucket",
                &l(Some(le)),
                c,
                t,
            )]);
        }
        s.ingest([Sample::new(
            "ray_serve_http_request_latency_ms_count",
            &l(None),
            base,
            t,
        )]);
    }
    let mut set = RuleSet::new(s.clone(), &RulesConfig::default());
    let diags = set.load_source(
        Path::new("p95_latency.rhai"),
        PathBuf::from("p95_latency.rhai"),
        &src,
    );
    assert!(diags.is_empty(), "{diags:?}");
    let out = set.evaluate(T0).remove(0).outcome.expect("evaluates");
    assert_eq!(out.len(), 1);
    close(out[0].value, 20.0 + 30.0 * 123.0 / 133.0);
    assert_eq!(
        out[0].labels,
        labels(&[
            ("method", "GET"),
            ("route", "/extract"),
            ("status_code", "200")
        ])
    );
}
