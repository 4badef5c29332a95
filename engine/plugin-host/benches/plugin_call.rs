//! Cost of calling plugins, against native code doing the same work.
//!
//! * `system/plugin_collect` vs `system/native`: the standard `system` collector's
//!   `collect()` (host snapshot through the `system` import, samples built in the guest,
//!   lowered, checked and converted) against native code that refreshes the same sysinfo
//!   state and builds the same samples. `system/native_snapshot_only` shows how much of
//!   either is the snapshot itself.
//! * `window_stats/plugin_analyze` vs `window_stats/native`: `analyze()` of 10 windows ×
//!   300 points against the same statistics module (`plugins/window-stats/src/stats.rs`,
//!   included below) called natively, building the same samples.
//!
//! Run: `cargo bench -p telltale-plugin-host --bench plugin_call` (about 30 s).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};
use telltale_config::{Grants, PluginLimits};
use telltale_model::{Labels, Point, Sample, SeriesKey, SeriesWindow, now_ms};
use telltale_plugin_host::{Analyzer, Collector, PluginHost, PluginSource, PluginSpec};

/// The plugin's statistics, compiled natively: the baseline runs the very same math.
#[allow(dead_code, unused_imports)]
#[path = "../../../plugins/window-stats/src/stats.rs"]
mod stats;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn spec(instance: &str, plugin: &str, system: bool) -> PluginSpec {
    PluginSpec {
        instance: instance.to_string(),
        source: PluginSource::Standard(plugin.to_string()),
        config_json: "null".to_string(),
        grants: Grants {
            system,
            // The system plugin reads /proc and /sys besides the typed snapshot.
            files: if system {
                vec!["/proc".into(), "/sys".into()]
            } else {
                Vec::new()
            },
            ..Grants::default()
        },
        limits: PluginLimits::default(),
    }
}

/// Native equivalent of the host's system sampler plus the system plugin.
struct NativeSystem {
    system: System,
    disks: Disks,
    networks: Networks,
    last_cpu: Option<Instant>,
}

impl NativeSystem {
    fn new() -> NativeSystem {
        NativeSystem {
            system: System::new_with_specifics(
                RefreshKind::nothing()
                    .with_cpu(CpuRefreshKind::nothing())
                    .with_memory(MemoryRefreshKind::everything()),
            ),
            disks: Disks::new_with_refreshed_list(),
            networks: Networks::new_with_refreshed_list(),
            last_cpu: None,
        }
    }

    fn refresh(&mut self) {
        // Same rule as the host: CPU times are re-read at most every minimum interval.
        if self
            .last_cpu
            .is_none_or(|t| t.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL)
        {
            self.system
                .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage().with_frequency());
            self.last_cpu = Some(Instant::now());
        }
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
    }

    fn samples(&self) -> Vec<Sample> {
        let ts = now_ms();
        let mut out = Vec::new();
        let mut push = |name: &str, value: f64, labels: &[(&str, String)]| {
            out.push(Sample {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                value,
                timestamp_ms: ts,
            })
        };
        let s = &self.system;
        push(
            "system_cpu_usage_percent",
            f64::from(s.global_cpu_usage()),
            &[("cpu", "total".to_string())],
        );
        for (i, c) in s.cpus().iter().enumerate() {
            push(
                "system_cpu_usage_percent",
                f64::from(c.cpu_usage()),
                &[("cpu", i.to_string())],
            );
        }
        let load = System::load_average();
        push("system_load_average_1m", load.one, &[]);
        push("system_load_average_5m", load.five, &[]);
        push("system_load_average_15m", load.fifteen, &[]);
        let (total, avail, used) = (s.total_memory(), s.available_memory(), s.used_memory());
        push("system_memory_total_bytes", total as f64, &[]);
        push("system_memory_available_bytes", avail as f64, &[]);
        push("system_memory_used_bytes", used as f64, &[]);
        push(
            "system_memory_used_percent",
            used as f64 / total.max(1) as f64 * 100.0,
            &[],
        );
        push("system_swap_total_bytes", s.total_swap() as f64, &[]);
        push("system_swap_used_bytes", s.used_swap() as f64, &[]);
        if s.total_swap() > 0 {
            push(
                "system_swap_used_percent",
                s.used_swap() as f64 / s.total_swap() as f64 * 100.0,
                &[],
            );
        }
        for d in self.disks.list() {
            let fs = d.file_system().to_string_lossy().into_owned();
            if d.total_space() == 0 || fs == "tmpfs" || fs == "devtmpfs" || fs == "squashfs" {
                continue;
            }
            let labels = [
                ("mount", d.mount_point().to_string_lossy().into_owned()),
                ("device", d.name().to_string_lossy().into_owned()),
                ("fs", fs),
            ];
            let used = d.total_space().saturating_sub(d.available_space());
            push("system_disk_total_bytes", d.total_space() as f64, &labels);
            push(
                "system_disk_available_bytes",
                d.available_space() as f64,
                &labels,
            );
            push("system_disk_used_bytes", used as f64, &labels);
            push(
                "system_disk_used_percent",
                used as f64 / d.total_space() as f64 * 100.0,
                &labels,
            );
        }
        for (name, n) in self.networks.list() {
            if name == "lo" {
                continue;
            }
            let labels = [("interface", name.clone())];
            push(
                "system_network_received_bytes_total",
                n.total_received() as f64,
                &labels,
            );
            push(
                "system_network_transmitted_bytes_total",
                n.total_transmitted() as f64,
                &labels,
            );
        }
        push("system_uptime_seconds", System::uptime() as f64, &[]);
        out
    }
}

fn bench_system(c: &mut Criterion) {
    let rt = runtime();
    let host = PluginHost::new(None).expect("plugin host");
    let mut plugin = rt
        .block_on(host.load::<Collector>(spec("system", "system", true)))
        .expect("system plugin");
    let mut native = NativeSystem::new();

    let mut group = c.benchmark_group("system");
    group.bench_function("plugin_collect", |b| {
        b.iter(|| rt.block_on(plugin.call(())).expect("collect"))
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            native.refresh();
            native.samples()
        })
    });
    group.bench_function("native_snapshot_only", |b| b.iter(|| native.refresh()));
    group.finish();
}

fn windows() -> Vec<SeriesWindow> {
    (0..10)
        .map(|w| SeriesWindow {
            key: SeriesKey {
                name: "request_latency_seconds".into(),
                labels: Labels::from([
                    ("job".to_string(), "api".to_string()),
                    ("instance".to_string(), format!("node-{w}")),
                ]),
            },
            points: (0..300)
                .map(|i| Point {
                    timestamp_ms: 1_700_000_000_000 + i * 1000,
                    value: ((i * 7919 + w * 31) % 1000) as f64 / 10.0,
                })
                .collect(),
        })
        .collect()
}

/// The plugin's `analyze`, natively: same statistics, same output samples.
fn native_window_stats(windows: &[SeriesWindow]) -> Vec<Sample> {
    let mut out = Vec::new();
    for w in windows {
        let Some(newest) = w.points.iter().map(|p| p.timestamp_ms).max() else {
            continue;
        };
        let Some(summary) = stats::summarize(w.points.iter().map(|p| p.value)) else {
            continue;
        };
        for stat in stats::Stat::ALL {
            let mut labels = w.key.labels.clone();
            labels.insert("window".to_string(), "5m".to_string());
            out.push(Sample {
                name: format!("{}_window_{}", w.key.name, stat.name()).into(),
                labels,
                value: summary.get(stat),
                timestamp_ms: newest,
            });
        }
    }
    out
}

fn bench_window_stats(c: &mut Criterion) {
    let rt = runtime();
    let host = PluginHost::new(None).expect("plugin host");
    let mut plugin_spec = spec("stats", "window-stats", false);
    plugin_spec.config_json = r#"{"window": "5m"}"#.to_string();
    let mut plugin = rt
        .block_on(host.load::<Analyzer>(plugin_spec))
        .expect("window-stats plugin");
    let input = windows();

    let mut group = c.benchmark_group("window_stats");
    group.bench_function("plugin_analyze", |b| {
        b.iter(|| rt.block_on(plugin.call(input.clone())).expect("analyze"))
    });
    group.bench_function("native", |b| b.iter(|| native_window_stats(&input)));
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_system, bench_window_stats
}
criterion_main!(benches);
