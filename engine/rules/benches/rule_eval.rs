//! Cost of one rule-evaluation cycle: 100 and 1,000 Rhai rules reading `metric()` and
//! `avg_over()` from a store of realistic series (300 points each), beside a native Rust
//! baseline that does the same store reads, arithmetic and alert building in the same run.
//! The ratio rhai/native is the price of scripting the rules.
//!
//! Run: `cargo bench -p telltale-rules --bench rule_eval` (well under a minute).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use telltale_config::RulesConfig;
use telltale_model::{AlertCandidate, Labels, Sample};
use telltale_rules::RuleSet;
use telltale_store::{SeriesRead, SeriesStore, StoreLimits};

const NOW: i64 = 1_700_000_000_000;
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
                timestamp_ms: NOW - (POINTS - 1 - i) * 1000,
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

/// Writes `n` rule files into `dir`.
fn write_rules(dir: &Path, n: usize) {
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
        let path = dir.join(format!("bench_{i:04}.rhai"));
        if let Err(e) = std::fs::write(&path, src) {
            panic!("cannot write {}: {e}", path.display());
        }
    }
}

/// The same computation as the rule, in Rust, through the same store API (`SeriesRead`).
fn native_rule(store: &SeriesStore, name: &str, host: &str) -> Vec<AlertCandidate> {
    let matcher = Labels::from([("host".to_string(), host.to_string())]);
    let latest = store.latest(name, &matcher, NOW);
    let [(_, now)] = latest.as_slice() else {
        return Vec::new();
    };
    let since = NOW - WINDOW_MS;
    let mut sum = 0.0;
    let mut count = 0usize;
    let mut matched = 0usize;
    store.visit_window(name, &matcher, since, NOW, &mut |_, points| {
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
        write_rules(dir.path(), n);
        let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
        let diags = set.load_dir(dir.path());
        assert!(diags.is_empty(), "bench rules must compile: {diags:?}");
        let targets: Vec<(String, String)> = (0..n).map(target).collect();

        // Both sides must agree before their speed is compared.
        let rhai_alerts: usize = set
            .evaluate(NOW)
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
            b.iter(|| black_box(set.evaluate(black_box(NOW))));
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

criterion_group!(benches, bench);
criterion_main!(benches);
