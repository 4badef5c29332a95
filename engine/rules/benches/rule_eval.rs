//! Cost of one rule-evaluation cycle: 100 and 1,000 Rhai rules reading `metric()` and
//! `avg_over()` from a store of realistic series (300 points each), beside a native Rust
//! baseline that does the same store reads, arithmetic and alert building in the same run.
//! The ratio rhai/native is the price of scripting the rules.
//!
//! Then the scale case of issue #12: 10,000 rules, each reading one series by labels with
//! `metric()` and `avg_over(.., "5m")`, over 100,000 series (100 names × 1,000 series, 30
//! points at 10 s). Timed cycle by cycle (a cycle is long enough for a clock), it prints
//! the median cycle and whether the target, one cycle ≤ 50 ms, is met.
//!
//! Run: `cargo bench -p telltale-rules --bench rule_eval` (about a minute).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use telltale_config::RulesConfig;
use telltale_model::{AlertCandidate, Labels, MetricName, Sample};
use telltale_rules::RuleSet;
use telltale_store::{SeriesRead, SeriesStore, StoreLimits};

/// The evaluation time: 10 minutes from the start of the run, so that, as in an engine
/// that has run for longer than the window, the stores' in-memory windows cover the 5
/// minutes the rules read (`SeriesRead::memory_from`) and `avg_over` reads the points in
/// place (`visit_window`). A fixed time before the store was made would send every window
/// to `SeriesRead::range`, which copies them.
fn eval_time() -> i64 {
    static NOW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| telltale_model::now_ms() + 600_000)
}
/// Metric families in the store; each has `HOSTS` series of `POINTS` points.
const FAMILIES: usize = 100;
const HOSTS: usize = 4;
const POINTS: i64 = 300;
const WINDOW_MS: i64 = 300_000;
const THRESHOLD: f64 = 50.0;

/// 100 families × 4 hosts × 300 points at 1 s; values differ per series so some rules
/// fire and some do not.
fn build_store() -> Arc<SeriesStore> {
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    for f in 0..FAMILIES {
        for h in 0..HOSTS {
            let base = ((f * 7 + h * 13) % 100) as f64;
            store.ingest((0..POINTS).map(|i| Sample {
                name: format!("bench_metric_{f}_percent").into(),
                labels: Labels::from([
                    ("host".to_string(), format!("h{h}")),
                    ("region".to_string(), "eu".to_string()),
                ]),
                value: base + (i % 10) as f64,
                timestamp_ms: eval_time() - (POINTS - 1 - i) * 1000,
            }));
        }
    }
    store
}

/// The metric and host rule `i` reads.
fn target(i: usize) -> (String, String) {
    (
        format!("bench_metric_{}_percent", i % FAMILIES),
        format!("h{}", (i / FAMILIES) % HOSTS),
    )
}

/// Writes `n` rule files into `dir`, rule `i` reading the series `target(i)` names.
fn write_rules(dir: &Path, n: usize, target: impl Fn(usize) -> (String, String)) {
    for i in 0..n {
        let (name, host) = target(i);
        let src = format!(
            r#"const RULE = #{{ name: "bench_{i}", severity: "warning", hold: "1m" }};

fn evaluate() {{
    let now = metric("{name}", #{{ host: "{host}" }});
    let avg = avg_over("{name}", #{{ host: "{host}" }}, "5m");
    if avg > {THRESHOLD} && now > 0 {{
        alert(avg, #{{ host: "{host}" }}, `{name} at ${{avg}}`)
    }} else {{
        []
    }}
}}
"#
        );
        let path = dir.join(format!("bench_{i:05}.rhai"));
        if let Err(e) = std::fs::write(&path, src) {
            panic!("cannot write {}: {e}", path.display());
        }
    }
}

/// The same computation as the rule, in Rust, through the same store API (`SeriesRead`).
fn native_rule(store: &SeriesStore, name: &str, host: &str) -> Vec<AlertCandidate> {
    let matcher = Labels::from([("host".to_string(), host.to_string())]);
    let latest = store.latest(name, &matcher, eval_time());
    let [(_, now)] = latest.as_slice() else {
        return Vec::new();
    };
    let since = eval_time() - WINDOW_MS;
    let mut sum = 0.0;
    let mut count = 0usize;
    let mut matched = 0usize;
    store.visit_window(name, &matcher, since, eval_time(), &mut |_, points| {
        matched += 1;
        for p in points.iter() {
            sum += p.value;
            count += 1;
        }
    });
    if matched != 1 || count == 0 {
        return Vec::new();
    }
    let avg = sum / count as f64;
    if avg > THRESHOLD && now.value > 0.0 {
        vec![AlertCandidate {
            value: avg,
            labels: matcher,
            summary: Some(format!("{name} at {avg}")),
        }]
    } else {
        Vec::new()
    }
}

fn bench(c: &mut Criterion) {
    let store = build_store();
    let mut group = c.benchmark_group("rule_eval");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);

    for n in [100usize, 1000] {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        write_rules(dir.path(), n, target);
        let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
        let diags = set.load_dir(dir.path());
        assert!(diags.is_empty(), "bench rules must compile: {diags:?}");
        let targets: Vec<(String, String)> = (0..n).map(target).collect();

        // Both sides must agree before their speed is compared.
        let rhai_alerts: usize = set
            .evaluate(eval_time())
            .iter()
            .map(|r| match &r.outcome {
                Ok(c) => c.len(),
                Err(e) => panic!("bench rule failed: {e}"),
            })
            .sum();
        let native_alerts: usize = targets
            .iter()
            .map(|(m, h)| native_rule(&store, m, h).len())
            .sum();
        assert_eq!(rhai_alerts, native_alerts, "rhai and native disagree");
        eprintln!("{n} rules: {rhai_alerts} alerting per cycle");

        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("rhai", n), &n, |b, _| {
            b.iter(|| black_box(set.evaluate(black_box(eval_time()))));
        });
        group.bench_with_input(BenchmarkId::new("native", n), &n, |b, _| {
            b.iter(|| {
                let out: Vec<Vec<AlertCandidate>> = targets
                    .iter()
                    .map(|(m, h)| native_rule(&store, black_box(m), black_box(h)))
                    .collect();
                black_box(out)
            });
        });
    }
    group.finish();
}

/// The scale case: names, series per name, points per series and their spacing.
const BIG_FAMILIES: usize = 100;
const BIG_HOSTS: usize = 1000;
const BIG_POINTS: i64 = 30;
const BIG_STEP_MS: i64 = 10_000;
const BIG_RULES: usize = 10_000;
/// The issue's target for one cycle of `BIG_RULES` rules.
const TARGET: Duration = Duration::from_millis(50);

/// 100 names × 1,000 series × 30 points at 10 s (5 minutes), written point time by point
/// time as collectors do, each series' labels built once.
fn build_big_store() -> Arc<SeriesStore> {
    let store = Arc::new(SeriesStore::new(StoreLimits {
        max_series: 2 * BIG_FAMILIES * BIG_HOSTS,
        ..StoreLimits::default()
    }));
    let names: Vec<MetricName> = (0..BIG_FAMILIES)
        .map(|f| MetricName::from(format!("big_metric_{f}_percent").as_str()))
        .collect();
    let labels: Vec<Labels> = (0..BIG_HOSTS)
        .map(|h| {
            Labels::from([
                ("host".to_string(), format!("h{h:04}")),
                ("region".to_string(), ["eu", "us"][h % 2].to_string()),
            ])
        })
        .collect();
    for i in 0..BIG_POINTS {
        let timestamp_ms = eval_time() - (BIG_POINTS - 1 - i) * BIG_STEP_MS;
        for (f, name) in names.iter().enumerate() {
            let report = store.ingest(labels.iter().enumerate().map(|(h, labels)| Sample {
                name: name.clone(),
                labels: labels.clone(),
                value: ((f * 7 + h * 13) % 100) as f64 + (i % 10) as f64,
                timestamp_ms,
            }));
            assert_eq!(
                report.accepted, BIG_HOSTS,
                "the bench store must take every sample"
            );
        }
    }
    assert_eq!(store.series_count(), BIG_FAMILIES * BIG_HOSTS);
    store
}

/// The series rule `i` of the scale case reads: every rule a different one, spread over
/// each name's hosts.
fn big_target(i: usize) -> (String, String) {
    (
        format!("big_metric_{}_percent", i % BIG_FAMILIES),
        format!("h{:04}", (i / BIG_FAMILIES * 10) % BIG_HOSTS),
    )
}

/// Median, fastest and slowest of `times`.
fn summary(times: &mut [Duration]) -> (Duration, Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// The CPU time this process has used, all threads (also those that have ended), from
/// Linux's `/proc/self/stat` (user + system, in ticks of 1/100 s); `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which ends at the last ')': state is field 3, so
    // utime (14) and stime (15) are the 12th and 13th.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs `cycle` twice to warm up, then up to 20 times or for about 10 s, whichever comes
/// first, timing each run; also the CPU time per run, on average, where it can be read.
/// On a machine others share, wall time includes waiting for a core; CPU time does not.
fn time_cycles(mut cycle: impl FnMut()) -> (Vec<Duration>, Option<Duration>) {
    cycle();
    cycle();
    let started = Instant::now();
    let cpu_before = cpu_time();
    let mut times = Vec::new();
    while times.len() < 20 && (times.len() < 5 || started.elapsed() < Duration::from_secs(10)) {
        let t = Instant::now();
        cycle();
        times.push(t.elapsed());
    }
    let cpu = match (cpu_before, cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) / times.len() as u32),
        _ => None,
    };
    (times, cpu)
}

fn bench_scale(_: &mut Criterion) {
    let built = Instant::now();
    let store = build_big_store();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    write_rules(dir.path(), BIG_RULES, big_target);
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    let diags = set.load_dir(dir.path());
    assert!(diags.is_empty(), "bench rules must compile: {diags:?}");
    assert_eq!(set.rules().len(), BIG_RULES);
    eprintln!(
        "scale case: {} series, {BIG_RULES} rules built in {:.1} s",
        store.series_count(),
        built.elapsed().as_secs_f64()
    );
    let targets: Vec<(String, String)> = (0..BIG_RULES).map(big_target).collect();

    let results = set.evaluate(eval_time());
    let rhai_alerts: usize = results
        .iter()
        .map(|r| match &r.outcome {
            Ok(c) => c.len(),
            Err(e) => panic!("bench rule failed: {e}"),
        })
        .sum();
    // Results come in rule order (file name order: bench_00000 … bench_09999).
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r.meta.name,
            format!("bench_{i}"),
            "results out of rule order"
        );
    }
    let native_alerts: usize = targets
        .iter()
        .map(|(m, h)| native_rule(&store, m, h).len())
        .sum();
    assert_eq!(rhai_alerts, native_alerts, "rhai and native disagree");
    assert!(
        rhai_alerts > 0 && rhai_alerts < BIG_RULES,
        "some rules fire, not all"
    );

    let (mut times, cpu) = time_cycles(|| {
        black_box(set.evaluate(black_box(eval_time())));
    });
    let (median, fastest, slowest) = summary(&mut times);
    let (mut native_times, _) = time_cycles(|| {
        let out: Vec<Vec<AlertCandidate>> = targets
            .iter()
            .map(|(m, h)| native_rule(&store, black_box(m), black_box(h)))
            .collect();
        black_box(out);
    });
    let (native, _, _) = summary(&mut native_times);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let cpu = cpu.map_or_else(String::new, |c| {
        format!(", {:.1} ms of CPU per cycle", ms(c))
    });
    eprintln!(
        "rule_eval scale: {BIG_RULES} rules over {} series ({rhai_alerts} alerting): one \
         cycle takes {:.1} ms (median; fastest {:.1} ms, slowest {:.1} ms; native Rust \
         baseline {:.1} ms{cpu}) on {} cores; target <= {} ms: {}",
        store.series_count(),
        ms(median),
        ms(fastest),
        ms(slowest),
        ms(native),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        TARGET.as_millis(),
        if median <= TARGET { "MET" } else { "NOT MET" },
    );
}

criterion_group!(benches, bench, bench_scale);
criterion_main!(benches);
