//! The cost of the plugin boundary, each figure beside a native baseline measured in the
//! same run (issue #3, item 10).
//!
//! * `collect_50/plugin` vs `collect_50/native`: `collect()` of the `bench-samples` test
//!   plugin returning 50 samples with 2 labels each, through the real [`PluginHost`]
//!   (call under deadline, lowering, output checks, conversion to `model::Sample`), against
//!   a native function building the same 50 samples. Goal: ≤ 10 µs median.
//! * `collect_n/{plugin,native}/N` for N = 50, 500, 5000 samples; the slope (ns per extra
//!   sample, goal ≤ 100 ns) is computed by the summary below, not by criterion.
//! * `start/PLUGIN/memory_cache`: `PluginHost::load` with the compiled
//!   component already in the host's memory (grant check, `InstancePre`, instantiate, `init`).
//!   `start/PLUGIN/disk_cache`: the same after [`PluginHost::clear_memory_cache`], so the
//!   `.cwasm` is mapped from the cache directory first (goal ≤ 5 ms). For `system`,
//!   `window-stats`, `bench-samples` and, when it has been built, the Python example.
//! * After criterion, a summary measured with a plain timing loop prints medians, the
//!   per-sample slope and the plugin/native ratios, and the cold compile (fresh host, empty
//!   cache directory) against the cached start of a fresh host, per plugin.
//!
//! The Python plugin is looked up in `TELLTALE_PYTHON_PLUGIN`, then where the e2e test
//! builds it (`<target>/tmp/python-collector/python-collector.wasm`); build it with
//! `examples/python-collector/build.sh DIR` or by running `cargo test -p telltale --test e2e python`.
//!
//! `TELLTALE_BENCH_COLLECT_ONLY=1` stops the summary after the `collect()` figures (for
//! profiling with `perf record`).
//!
//! Run: `cargo bench -p telltale-plugin-host --bench plugin_overhead` (about 80 s, 12 s of it compiling
//! the Python plugin cold). Figures and how to read them: `docs/benchmarks.md`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use telltale_config::{Grants, PluginLimits};
use telltale_model::{Labels, Sample, now_ms};
use telltale_plugin_host::{
    Analyzer, Collector, PluginHost, PluginInstance, PluginSource, PluginSpec,
};

/// Sample counts of the per-sample slope.
const SIZES: [usize; 3] = [50, 500, 5000];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn test_plugin(name: &str) -> PathBuf {
    PathBuf::from(telltale_standard_plugins::TEST_PLUGINS_DIR).join(format!("{name}.wasm"))
}

/// The Python example's component, if it has been built.
fn python_plugin() -> Option<PathBuf> {
    let path = std::env::var_os("TELLTALE_PYTHON_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("python-collector/python-collector.wasm")
        });
    path.is_file().then_some(path)
}

fn bench_samples_spec(samples: usize) -> PluginSpec {
    bench_samples_spec_with(samples, false, false)
}

/// With `discard`, the plugin builds its batch and returns none: the guest's own work.
/// With `rotate`, each call returns the same series in another order, so the host finds
/// them in its series cache rather than in the previous call's batch.
fn bench_samples_spec_with(samples: usize, discard: bool, rotate: bool) -> PluginSpec {
    PluginSpec {
        instance: format!("bench-{samples}"),
        source: PluginSource::File(test_plugin("bench-samples")),
        config_json: format!(
            r#"{{"samples": {samples}, "discard": {discard}, "rotate": {rotate}}}"#
        ),
        grants: Grants::default(),
        limits: PluginLimits::default(),
    }
}

/// What `bench-samples` returns, built natively: the same names, labels and values.
fn native_samples(n: usize) -> Vec<Sample> {
    let now = now_ms();
    (0..n)
        .map(|i| Sample {
            name: "bench_value".into(),
            labels: Labels::from([
                ("kind".to_string(), "bench".to_string()),
                ("series".to_string(), i.to_string()),
            ]),
            value: i as f64,
            timestamp_ms: now,
        })
        .collect()
}

/// A plugin whose start is measured.
struct StartCase {
    name: &'static str,
    spec: PluginSpec,
    analyzer: bool,
}

fn start_cases() -> Vec<StartCase> {
    let spec = |instance: &str, source: PluginSource, config: &str, grants: Grants| PluginSpec {
        instance: instance.to_string(),
        source,
        config_json: config.to_string(),
        grants,
        limits: PluginLimits::default(),
    };
    let mut cases = vec![
        StartCase {
            name: "system",
            spec: spec(
                "system",
                PluginSource::Standard("system".into()),
                "null",
                Grants {
                    system: true,
                    files: vec![PathBuf::from("/proc"), PathBuf::from("/sys")],
                    ..Grants::default()
                },
            ),
            analyzer: false,
        },
        StartCase {
            name: "window-stats",
            spec: spec(
                "stats",
                PluginSource::Standard("window-stats".into()),
                r#"{"window": "5m"}"#,
                Grants::default(),
            ),
            analyzer: true,
        },
        StartCase {
            name: "bench-samples",
            spec: bench_samples_spec(50),
            analyzer: false,
        },
    ];
    match python_plugin() {
        Some(path) => cases.push(StartCase {
            name: "python",
            spec: spec(
                "python",
                PluginSource::File(path),
                r#"{"prefix": "python"}"#,
                Grants {
                    files: vec![PathBuf::from("/proc")],
                    ..Grants::default()
                },
            ),
            analyzer: false,
        }),
        None => println!(
            "note: the Python plugin is not built; its start is not measured \
             (set TELLTALE_PYTHON_PLUGIN or run examples/python-collector/build.sh)"
        ),
    }
    cases
}

/// A started instance, kept alive until it is dropped outside the timed section.
#[allow(dead_code)] // held only to be dropped
enum Started {
    Collector(PluginInstance<Collector>),
    Analyzer(PluginInstance<Analyzer>),
}

async fn start(host: &PluginHost, case: &StartCase) -> Started {
    if case.analyzer {
        Started::Analyzer(
            host.load::<Analyzer>(case.spec.clone())
                .await
                .expect("analyzer"),
        )
    } else {
        Started::Collector(
            host.load::<Collector>(case.spec.clone())
                .await
                .expect("collector"),
        )
    }
}

fn bench_collect(c: &mut Criterion) {
    let rt = runtime();
    let host = PluginHost::new(None).expect("plugin host");

    let mut plugin = rt
        .block_on(host.load::<Collector>(bench_samples_spec(50)))
        .expect("bench-samples plugin");
    assert_eq!(rt.block_on(plugin.call(())).expect("collect").len(), 50);
    let mut group = c.benchmark_group("collect_50");
    group.bench_function("plugin", |b| {
        b.iter(|| rt.block_on(plugin.call(())).expect("collect"))
    });
    group.bench_function("native", |b| b.iter(|| native_samples(50)));
    group.finish();

    let mut group = c.benchmark_group("collect_n");
    for n in SIZES {
        let mut plugin = rt
            .block_on(host.load::<Collector>(bench_samples_spec(n)))
            .expect("bench-samples plugin");
        group.bench_with_input(BenchmarkId::new("plugin", n), &n, |b, _| {
            b.iter(|| rt.block_on(plugin.call(())).expect("collect"))
        });
        group.bench_with_input(BenchmarkId::new("native", n), &n, |b, &n| {
            b.iter(|| native_samples(n))
        });
    }
    group.finish();
}

fn bench_start(c: &mut Criterion) {
    let rt = runtime();
    let cache = tempfile::tempdir().expect("cache dir");
    let host = PluginHost::new(Some(cache.path().to_path_buf())).expect("plugin host");
    let mut group = c.benchmark_group("start");
    for case in start_cases() {
        // Compiles and writes the cache file once, outside the measurement.
        drop(rt.block_on(start(&host, &case)));
        group.bench_function(format!("{}/memory_cache", case.name), |b| {
            b.iter_with_large_drop(|| rt.block_on(start(&host, &case)))
        });
        group.bench_function(format!("{}/disk_cache", case.name), |b| {
            b.iter_with_large_drop(|| {
                host.clear_memory_cache();
                rt.block_on(start(&host, &case))
            })
        });
    }
    group.finish();
}

/// The median of `f`'s duration over repeated calls, for at least `budget` (and at least
/// `min_runs` calls), after `warm_up` calls. What `f` returns is dropped outside the
/// measurement (dropping a host joins its epoch thread, which sleeps up to a 10 ms tick).
fn median_of<T>(
    budget: Duration,
    min_runs: usize,
    warm_up: usize,
    mut f: impl FnMut() -> T,
) -> Duration {
    for _ in 0..warm_up {
        drop(f());
    }
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < min_runs || started.elapsed() < budget {
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed());
        drop(out);
    }
    times.sort();
    times[times.len() / 2]
}

/// CPU time this process has used so far, all threads, user + system, to the nanosecond.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The median CPU time (all threads) of one call of `f`, over at least `min_runs` calls
/// and `budget` of wall time; what `f` returns is dropped outside the measurement. Unlike
/// wall time it does not grow while other processes hold the cores.
fn cpu_median_of<T>(budget: Duration, min_runs: usize, mut f: impl FnMut() -> T) -> Duration {
    drop(f());
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < min_runs || started.elapsed() < budget {
        let before = process_cpu();
        let out = f();
        times.push(process_cpu() - before);
        drop(out);
    }
    times.sort();
    times[times.len() / 2]
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets the goal"
    } else {
        "MISSES the goal"
    }
}

/// Plain timing loops whose figures criterion does not compute: slope, ratios, cold compile.
fn summary() {
    let rt = runtime();
    let host = PluginHost::new(None).expect("plugin host");
    println!("\n== summary (medians of a plain timing loop, same run) ==");
    println!(
        "{:>6} {:>14} {:>14} {:>8} {:>16}",
        "N", "plugin", "native", "ratio", "guest alone"
    );
    let mut rows = Vec::new();
    let mut guest = Vec::new();
    let mut rotating = Vec::new();
    for n in SIZES {
        let mut plugin = rt
            .block_on(host.load::<Collector>(bench_samples_spec(n)))
            .expect("bench-samples plugin");
        let mut discarding = rt
            .block_on(host.load::<Collector>(bench_samples_spec_with(n, true, false)))
            .expect("bench-samples plugin");
        let mut rotated = rt
            .block_on(host.load::<Collector>(bench_samples_spec_with(n, false, true)))
            .expect("bench-samples plugin");
        let budget = Duration::from_millis(700);
        let p = median_of(budget, 20, 3, || {
            std::hint::black_box(rt.block_on(plugin.call(())).expect("collect"))
        });
        // Two calls per measurement: the host keeps a batch for the next comparison on
        // every other call when batches keep changing, so single calls alternate between
        // two costs and their median would pick one of them.
        let r = median_of(budget, 20, 3, || {
            let a = rt.block_on(rotated.call(())).expect("collect");
            let b = rt.block_on(rotated.call(())).expect("collect");
            std::hint::black_box((a, b))
        }) / 2;
        rotating.push(r);
        let nat = median_of(budget, 20, 3, || std::hint::black_box(native_samples(n)));
        let g = median_of(budget, 20, 3, || {
            std::hint::black_box(rt.block_on(discarding.call(())).expect("collect"))
        });
        println!(
            "{n:>6} {:>11.2} µs {:>11.2} µs {:>7.1}x {:>13.2} µs",
            ns(p) / 1e3,
            ns(nat) / 1e3,
            ns(p) / ns(nat),
            ns(g) / 1e3
        );
        rows.push((n, p, nat));
        guest.push(g);
    }
    // The fixed part of a call: deadline, async call, an empty list, output forwarding.
    let mut empty = rt
        .block_on(host.load::<Collector>(bench_samples_spec(0)))
        .expect("bench-samples plugin");
    let fixed = median_of(Duration::from_millis(500), 20, 3, || {
        std::hint::black_box(rt.block_on(empty.call(())).expect("collect"))
    });
    println!(
        "     0 {:>11.2} µs   (fixed cost of one call)",
        ns(fixed) / 1e3
    );
    let (n0, p0, nat0) = rows[0];
    let (n1, p1, nat1) = rows[rows.len() - 1];
    let extra = (n1 - n0) as f64;
    let slope_plugin = (ns(p1) - ns(p0)) / extra;
    let slope_native = (ns(nat1) - ns(nat0)) / extra;
    println!(
        "collect() of 50 samples: {:.2} µs median ({}: ≤ 10 µs)",
        ns(p0) / 1e3,
        verdict(ns(p0) <= 10_000.0)
    );
    println!(
        "per extra sample ({n0} → {n1}): plugin {slope_plugin:.1} ns, native {slope_native:.1} ns, \
         ratio {:.1}x; boundary cost {:.1} ns/sample ({}: ≤ 100 ns)",
        slope_plugin / slope_native,
        slope_plugin - slope_native,
        verdict(slope_plugin <= 100.0)
    );
    let slope_guest = (ns(guest[guest.len() - 1]) - ns(guest[0])) / extra;
    println!(
        "  of which the guest building its batch: {slope_guest:.1} ns/sample; lowering, \
         lifting, checks and conversion on the host: {:.1} ns/sample",
        slope_plugin - slope_guest
    );
    let slope_rotating = (ns(rotating[rotating.len() - 1]) - ns(rotating[0])) / extra;
    println!(
        "per extra sample when no batch repeats the previous one (same series, rotated; \
         each found in the series cache): {slope_rotating:.1} ns ({}: ≤ 100 ns); \
         {:.2} µs for 50",
        verdict(slope_rotating <= 100.0),
        ns(rotating[0]) / 1e3
    );
    if std::env::var_os("TELLTALE_BENCH_COLLECT_ONLY").is_some() {
        return;
    }

    println!("\nstart of one instance, per plugin (median; compile: fresh host, empty cache dir)");
    println!(
        "{:<14} {:>12} {:>14} {:>14} {:>14} {:>10}",
        "plugin", "wasm size", "cold compile", "fresh host +", "disk cache", "memory"
    );
    println!(
        "{:<14} {:>12} {:>14} {:>14} {:>14} {:>10}",
        "", "", "", "disk cache", "(same host)", "cache"
    );
    for case in start_cases() {
        let size = match &case.spec.source {
            PluginSource::File(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            PluginSource::Standard(name) => telltale_standard_plugins::find_standard(name)
                .map(|p| p.wasm.len() as u64)
                .unwrap_or(0),
        };
        // Large components compile for seconds: fewer runs for them.
        let big = size > 4 << 20;
        let cold = median_of(Duration::ZERO, if big { 1 } else { 3 }, 0, || {
            let dir = tempfile::tempdir().expect("cache dir");
            let fresh = PluginHost::new(Some(dir.path().to_path_buf())).expect("host");
            let started = rt.block_on(start(&fresh, &case));
            (started, fresh, dir)
        });
        let dir = tempfile::tempdir().expect("cache dir");
        let warm = PluginHost::new(Some(dir.path().to_path_buf())).expect("host");
        drop(rt.block_on(start(&warm, &case)));
        let budget = Duration::from_millis(if big { 1500 } else { 500 });
        let fresh_host = median_of(budget, 5, 1, || {
            let fresh = PluginHost::new(Some(dir.path().to_path_buf())).expect("host");
            let started = rt.block_on(start(&fresh, &case));
            (started, fresh)
        });
        let disk = median_of(budget, 5, 1, || {
            warm.clear_memory_cache();
            rt.block_on(start(&warm, &case))
        });
        let memory = median_of(budget, 5, 1, || rt.block_on(start(&warm, &case)));
        // The same disk-cache start in CPU time: what it costs when the machine is busy
        // with other work (wall time then includes waiting for a core).
        let disk_cpu = cpu_median_of(budget, 5, || {
            warm.clear_memory_cache();
            rt.block_on(start(&warm, &case))
        });
        // What a load costs when the stat-based file index misses: reading and hashing it.
        let key = median_of(budget, 5, 1, || {
            let wasm = match &case.spec.source {
                PluginSource::File(path) => std::fs::read(path).expect("read plugin"),
                PluginSource::Standard(_) => Vec::new(),
            };
            sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), &wasm))
        });
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "{:<14} {:>9.1} MB {:>14} {:>14} {:>14} {:>10}   cold/cached {:.0}x, {}",
            case.name,
            size as f64 / 1e6,
            ms(cold),
            ms(fresh_host),
            ms(disk),
            ms(memory),
            cold.as_secs_f64() / disk.as_secs_f64(),
            verdict(disk <= Duration::from_millis(5))
        );
        println!(
            "{:<14} disk-cache start in CPU time (all threads, median): {}, {}",
            "",
            ms(disk_cpu),
            verdict(disk_cpu <= Duration::from_millis(5))
        );
        if size > 1 << 20 {
            println!(
                "{:<14} reading + SHA-256 of the .wasm, when the file index misses (a changed \
                 file): {}",
                "",
                ms(key)
            );
        }
    }
    let host_new = median_of(Duration::from_millis(300), 5, 1, || {
        PluginHost::new(None).expect("host")
    });
    println!(
        "(PluginHost::new alone: {:.2} ms; the cached-start goal is ≤ 5 ms)",
        host_new.as_secs_f64() * 1e3
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1000))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_collect, bench_start
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each benchmark once
    // without it, and the summary's timing loops are not worth running there.
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
