//! Tests against the real plugins: the standard ones embedded in the binary and the test
//! plugins that `build.rs` builds into `TELLTALE_TEST_PLUGINS_DIR`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use telltale_config::{ByteSize, HumanDuration};
use telltale_model::{Labels, Point, Sample, SeriesKey, SeriesWindow};

fn test_plugin(name: &str) -> PathBuf {
    PathBuf::from(telltale_standard_plugins::TEST_PLUGINS_DIR).join(format!("{name}.wasm"))
}

fn spec(instance: &str, source: PluginSource, config: &str, grants: Grants) -> PluginSpec {
    PluginSpec {
        instance: instance.to_string(),
        source,
        config_json: config.to_string(),
        grants,
        limits: PluginLimits::default(),
    }
}

fn system_spec(config: &str) -> PluginSpec {
    spec(
        "sys",
        PluginSource::Standard("system".into()),
        config,
        Grants {
            system: true,
            files: vec!["/proc".into(), "/sys".into()],
            ..Grants::default()
        },
    )
}

fn stats_spec(config: &str) -> PluginSpec {
    spec(
        "stats",
        PluginSource::Standard("window-stats".into()),
        config,
        Grants::default(),
    )
}

fn window(name: &str, labels: &[(&str, &str)], values: &[f64]) -> SeriesWindow {
    SeriesWindow {
        key: SeriesKey {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        points: values
            .iter()
            .enumerate()
            .map(|(i, &value)| Point {
                timestamp_ms: 1_700_000_000_000 + 1000 * i as i64,
                value,
            })
            .collect(),
    }
}

fn family<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// The host links every world of the contract, in the contract's order (which `plugin
/// inspect` tries them in), and each world type names its own entry.
#[test]
fn every_world_has_a_linker() {
    let host = PluginHost::new(None).unwrap();
    let linked: Vec<contract::WorldInfo> = host.inner.linkers.iter().map(|l| l.world).collect();
    assert_eq!(linked, contract::WORLDS);
    assert_eq!(Collector::CONTRACT, contract::COLLECTOR);
    assert_eq!(Analyzer::KIND, PluginKind::Analyzer);
}

#[tokio::test]
async fn system_plugin_emits_expected_families() {
    let host = PluginHost::new(None).unwrap();
    let mut sys = host.load::<Collector>(system_spec("null")).await.unwrap();
    assert_eq!(sys.name(), "sys");
    assert_eq!(sys.origin(), "<standard>/system");

    let first = sys.call(()).await.unwrap();
    assert!(
        family(&first, "system_cpu_usage_percent").is_empty(),
        "the first snapshot has no CPU interval"
    );
    tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL + Duration::from_millis(20)).await;
    let before = telltale_model::now_ms();
    let samples = sys.call(()).await.unwrap();

    let ts = samples[0].timestamp_ms;
    assert!(
        samples.iter().all(|s| s.timestamp_ms == ts),
        "one snapshot time"
    );
    assert!((before - 5_000..=before + 5_000).contains(&ts));

    let cpu = family(&samples, "system_cpu_usage_percent");
    let reference = sysinfo::System::new_with_specifics(
        sysinfo::RefreshKind::nothing()
            .with_cpu(sysinfo::CpuRefreshKind::nothing())
            .with_memory(sysinfo::MemoryRefreshKind::everything()),
    );
    assert_eq!(
        cpu.len(),
        reference.cpus().len() + 1,
        "total + one per core"
    );
    assert!(
        cpu.iter()
            .any(|s| s.labels.get("cpu").map(String::as_str) == Some("total"))
    );
    assert!(cpu.iter().all(|s| (0.0..=100.0).contains(&s.value)));

    for name in [
        "system_load_average_1m",
        "system_load_average_5m",
        "system_load_average_15m",
        "system_memory_total_bytes",
        "system_memory_available_bytes",
        "system_memory_used_bytes",
        "system_memory_used_percent",
        "system_swap_total_bytes",
        "system_swap_used_bytes",
        "system_uptime_seconds",
    ] {
        assert_eq!(family(&samples, name).len(), 1, "{name}");
    }
    let total = family(&samples, "system_memory_total_bytes")[0].value;
    assert!(total > 0.0);
    let expected = reference.total_memory() as f64;
    assert!(
        (total - expected).abs() / expected < 0.05,
        "{total} vs {expected}"
    );
    let used_pct = family(&samples, "system_memory_used_percent")[0].value;
    assert!((0.0..=100.0).contains(&used_pct));
    assert!(family(&samples, "system_uptime_seconds")[0].value > 0.0);

    for d in family(&samples, "system_disk_used_percent") {
        assert!((0.0..=100.0).contains(&d.value), "{d:?}");
        for label in ["mount", "device", "fs"] {
            assert!(d.labels.contains_key(label), "{d:?}");
        }
    }
    let rx = family(&samples, "system_network_received_bytes_total");
    assert!(
        rx.iter()
            .all(|s| s.labels.get("interface").map(String::as_str) != Some("lo")),
        "lo is excluded by default"
    );
}

#[tokio::test]
async fn window_stats_returns_correct_stats() {
    let host = PluginHost::new(None).unwrap();
    let mut stats = host
        .load::<Analyzer>(stats_spec(r#"{"window": "5m"}"#))
        .await
        .unwrap();
    let values = [7.0, 3.0, 10.0, 1.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0];
    let (samples, events) = stats
        .call(vec![
            window("latency_seconds", &[("job", "api")], &values),
            window("empty", &[], &[]),
        ])
        .await
        .unwrap();
    assert!(events.is_empty());
    assert_eq!(
        samples.len(),
        5,
        "the empty window emits nothing: {samples:?}"
    );
    let expected_labels = Labels::from([
        ("job".to_string(), "api".to_string()),
        ("window".to_string(), "5m".to_string()),
    ]);
    for (suffix, expected) in [
        ("mean", 5.5),
        ("min", 1.0),
        ("max", 10.0),
        ("p50", 5.5),
        ("p95", 9.55),
    ] {
        let name = format!("latency_seconds_window_{suffix}");
        let s = family(&samples, &name);
        assert_eq!(s.len(), 1, "{name}");
        assert!(
            (s[0].value - expected).abs() < 1e-9,
            "{name} = {}",
            s[0].value
        );
        assert_eq!(s[0].labels, expected_labels);
        assert_eq!(s[0].timestamp_ms, 1_700_000_000_000 + 9_000, "newest point");
    }

    let mut subset = host
        .load::<Analyzer>(stats_spec(r#"{"stats": ["p95"]}"#))
        .await
        .unwrap();
    let (samples, _) = subset.call(vec![window("x", &[], &values)]).await.unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].name, "x_window_p95");
    assert!(
        samples[0].labels.is_empty(),
        "no window label without config"
    );
}

#[tokio::test]
async fn hung_plugin_is_stopped_at_its_deadline_without_blocking_others() {
    let host = PluginHost::new(None).unwrap();
    let deadline = Duration::from_millis(200);
    let mut hang_spec = spec(
        "hang",
        PluginSource::File(test_plugin("hang")),
        "null",
        Grants::default(),
    );
    hang_spec.limits.timeout = HumanDuration(deadline);
    let mut hang = host.load::<Collector>(hang_spec).await.unwrap();
    let mut healthy = host.load::<Analyzer>(stats_spec("null")).await.unwrap();

    // This test runs on tokio's single-threaded runtime: the healthy call can only make
    // progress while the hung one is running if the hung one yields.
    let start = Instant::now();
    let (hung, healthy_done) = tokio::join!(
        async {
            let r = hang.call(()).await;
            (r, start.elapsed())
        },
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let r = healthy.call(vec![window("x", &[], &[1.0, 2.0])]).await;
            (r, start.elapsed())
        }
    );
    let (hung, hung_after) = hung;
    let (healthy_result, healthy_after) = healthy_done;
    assert_eq!(healthy_result.unwrap().0.len(), 5);
    // The property, not a timing: the healthy call finished while the hung one still ran.
    assert!(
        healthy_after < hung_after,
        "the healthy plugin waited for the hung one ({healthy_after:?} vs {hung_after:?})"
    );
    let err = hung.unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin `hang`: collect() exceeded its 200ms deadline and was stopped"
    );
    assert!(hung_after >= deadline, "{hung_after:?}");
    // Epoch ticks are 10 ms; the margin only absorbs a loaded machine's scheduling delays.
    assert!(
        hung_after < deadline + Duration::from_millis(750),
        "stopped {hung_after:?} after start"
    );
    assert!(!hang.is_live(), "a stopped instance is dropped");

    // The next call re-instantiates (and times out again, as this plugin always does)
    // instead of failing on the poisoned instance.
    let err = hang.call(()).await.unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");

    // And the host still serves healthy plugins.
    let (samples, _) = healthy.call(vec![window("y", &[], &[3.0])]).await.unwrap();
    assert_eq!(samples[0].value, 3.0);
}

#[tokio::test]
async fn system_import_without_grant_is_refused() {
    let host = PluginHost::new(None).unwrap();
    let mut s = system_spec("null");
    s.grants = Grants::default();
    let err = host.load::<Collector>(s).await.err().expect("refused");
    assert_eq!(
        err.to_string(),
        "plugin `sys` imports `telltale:plugin/system` but is not granted it; add \
         `grants: { system: true }` to its entry"
    );
}

#[tokio::test]
async fn load_errors_name_the_plugin_and_file() {
    let host = PluginHost::new(None).unwrap();

    let err = host
        .load::<Collector>(system_spec(r#"{"per_cores": true}"#))
        .await
        .err()
        .expect("bad config");
    assert!(matches!(err, PluginError::InvalidConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("per_cores"), "{err}");

    let err = host
        .load::<Collector>(stats_spec("null"))
        .await
        .err()
        .expect("wrong kind");
    assert!(
        err.to_string().contains("`window-stats` is a analyzer")
            || err
                .to_string()
                .contains("is a analyzer, configure it under `analyzers:`"),
        "{err}"
    );

    let err = host
        .load::<Collector>(spec(
            "nope",
            PluginSource::Standard("sytem".into()),
            "null",
            Grants::default(),
        ))
        .await
        .err()
        .expect("unknown");
    assert!(
        err.to_string()
            .contains("standard plugins: system, gpu, process, window-stats, prometheus"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let err = host
        .load::<Collector>(spec(
            "junk",
            PluginSource::File(junk.clone()),
            "null",
            Grants::default(),
        ))
        .await
        .err()
        .expect("junk");
    assert!(matches!(err, PluginError::Compile { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );

    // The hang plugin is a collector: loading it as an analyzer names what is missing.
    let err = host
        .load::<Analyzer>(spec(
            "hang",
            PluginSource::File(test_plugin("hang")),
            "null",
            Grants::default(),
        ))
        .await
        .err()
        .expect("wrong world");
    assert!(matches!(err, PluginError::Incompatible { .. }), "{err:?}");
}

#[tokio::test]
async fn memory_cap_stops_the_plugin_and_it_recovers() {
    let host = PluginHost::new(None).unwrap();
    let mut s = stats_spec("null");
    s.limits.memory = ByteSize(4 << 20);
    let mut stats = host.load::<Analyzer>(s).await.unwrap();
    // One million points are 16 MB once copied into the guest.
    let big: Vec<f64> = (0..1_000_000).map(f64::from).collect();
    let err = stats
        .call(vec![window("big", &[], &big)])
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err:?}");
    assert!(
        err.to_string().contains("memory limit 4 MiB exceeded"),
        "{err}"
    );
    let (samples, _) = stats
        .call(vec![window("small", &[], &[1.0, 3.0])])
        .await
        .unwrap();
    assert_eq!(samples[0].value, 2.0);
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cwasm_files = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect()
    };

    let t = Instant::now();
    let first = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    first.load::<Analyzer>(stats_spec("null")).await.unwrap();
    let compile_time = t.elapsed();
    assert_eq!(first.cache_stats().compiled, 1);
    let files = cwasm_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let digest = cache::ComponentCache::digest(find_standard("window-stats").unwrap().wasm);
    assert!(
        name.starts_with(&format!("{:02x}{:02x}", digest[0], digest[1])),
        "{name}"
    );

    // Loading again in the same process needs neither compiler nor disk.
    first.load::<Analyzer>(stats_spec("null")).await.unwrap();
    assert_eq!(first.cache_stats().memory_hits, 1);

    // A new process (host) loads the compiled file.
    let t = Instant::now();
    let second = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    let mut stats = second.load::<Analyzer>(stats_spec("null")).await.unwrap();
    let cached_time = t.elapsed();
    assert_eq!(
        second.cache_stats(),
        CacheStats {
            compiled: 0,
            disk_hits: 1,
            memory_hits: 0
        }
    );
    assert!(
        cached_time < compile_time,
        "cached {cached_time:?} vs compiled {compile_time:?}"
    );
    assert!(stats.call(vec![window("x", &[], &[1.0])]).await.is_ok());

    // A corrupted file is compiled again and replaced. (Replaced, not overwritten in
    // place: the live components above map the file, and truncating a mapped file under
    // them would crash the process, which the cache itself never does: it renames.)
    std::fs::remove_file(&files[0]).unwrap();
    std::fs::write(&files[0], b"garbage").unwrap();
    let third = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    let mut stats = third.load::<Analyzer>(stats_spec("null")).await.unwrap();
    assert_eq!(third.cache_stats().compiled, 1);
    assert_eq!(third.cache_stats().disk_hits, 0);
    assert!(stats.call(vec![window("x", &[], &[1.0])]).await.is_ok());
    assert_ne!(std::fs::read(&files[0]).unwrap(), b"garbage");
    let fourth = PluginHost::new(Some(dir.path().to_path_buf())).unwrap();
    fourth.load::<Analyzer>(stats_spec("null")).await.unwrap();
    assert_eq!(fourth.cache_stats().disk_hits, 1);
    assert_eq!(cwasm_files().len(), 1, "no temporary files left behind");
}

#[test]
fn plugin_source_is_standard_or_file() {
    let base = std::path::Path::new("/etc/telltale");
    assert_eq!(
        PluginSource::parse("system", base),
        PluginSource::Standard("system".into())
    );
    assert_eq!(
        PluginSource::parse("my.wasm", base),
        PluginSource::File("/etc/telltale/my.wasm".into())
    );
    assert_eq!(
        PluginSource::parse("plugins/x", base),
        PluginSource::File("/etc/telltale/plugins/x".into())
    );
    assert_eq!(
        PluginSource::parse("/opt/p.wasm", base),
        PluginSource::File("/opt/p.wasm".into())
    );
}

#[test]
fn standard_plugins_are_embedded() {
    let names: Vec<_> = standard_plugins().iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        ["system", "gpu", "process", "window-stats", "prometheus"]
    );
    for p in standard_plugins() {
        // A component starts with the wasm magic and the component-model layer.
        assert_eq!(&p.wasm[..4], b"\0asm", "{}", p.name);
        assert_eq!(&p.wasm[4..8], &[0x0d, 0x00, 0x01, 0x00], "{}", p.name);
    }
}

#[tokio::test]
async fn file_plugins_are_identified_without_rereading_until_they_change() {
    let cache_dir = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let path = plugins.path().join("plugin.wasm");
    std::fs::copy(test_plugin("counter"), &path).unwrap();
    let load = |host: PluginHost| {
        let path = path.clone();
        async move {
            let c = host
                .load::<Collector>(spec(
                    "p",
                    PluginSource::File(path),
                    "null",
                    Grants::default(),
                ))
                .await
                .unwrap();
            (host, c.source_sha256())
        }
    };

    let (first, digest) =
        load(PluginHost::new(Some(cache_dir.path().to_path_buf())).unwrap()).await;
    assert_eq!(first.cache_stats().compiled, 1);

    // A fresh host (a restart) finds the file unchanged through the index: no compile.
    let (second, again) =
        load(PluginHost::new(Some(cache_dir.path().to_path_buf())).unwrap()).await;
    assert_eq!(again, digest);
    assert_eq!(
        second.cache_stats(),
        CacheStats {
            compiled: 0,
            disk_hits: 1,
            memory_hits: 0
        }
    );

    // Replacing the file by rename (as installers and editors do) is noticed, even by the
    // host that has the old version in memory.
    let tmp = plugins.path().join("plugin.wasm.new");
    std::fs::copy(test_plugin("hang"), &tmp).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let (second, replaced) = load(second).await;
    assert_ne!(replaced, digest, "the new content was hashed");
    assert_eq!(second.cache_stats().compiled, 1);

    // Rewriting the same bytes changes the stamp but not the content: served from the
    // in-memory map after one read and hash, without compiling.
    std::fs::write(&path, std::fs::read(test_plugin("hang")).unwrap()).unwrap();
    let (second, same) = load(second).await;
    assert_eq!(same, replaced);
    assert_eq!(second.cache_stats().compiled, 1);
}

#[tokio::test]
async fn a_collectors_repeated_series_share_their_names_across_calls() {
    // Issue #3's per-sample cost: a series seen before is served from the previous call's
    // batch (the same batch again) or from the series cache (a rotated one), so its name is
    // the kept `MetricName` (a reference count), not a new allocation.
    let host = PluginHost::new(None).unwrap();
    let mut bench = host
        .load::<Collector>(spec(
            "bench",
            PluginSource::File(test_plugin("bench-samples")),
            r#"{"samples": 20}"#,
            Grants::default(),
        ))
        .await
        .unwrap();
    let first = bench.call(()).await.unwrap();
    let second = bench.call(()).await.unwrap();
    assert_eq!(first.len(), 20);
    assert_eq!(second.len(), 20);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((&a.name, &a.labels), (&b.name, &b.labels));
        assert!(a.name.ptr_eq(&b.name), "{} was copied, not shared", b.name);
    }
}
