//! The metrics catalogue (`plugins/<name>/metrics.yaml`) against the real plugins.
//!
//! * Every standard plugin has a catalogue, and a test here that runs it (add yours to
//!   [`EXERCISED`] and write a `<plugin>_output_matches_catalogue` test like the ones below).
//! * Catalogue entries follow the naming conventions (counters end in `_total`, percentages
//!   in `_percent`, units in the name) and are listed once.
//! * Running the real plugin (embedded WebAssembly, through `PluginHost`): every emitted
//!   metric is in its catalogue with the same labels; every entry is emitted or says why
//!   not (`optional`); rate entries are absent from the first collection and present in the
//!   second.
//! * The `gpu` plugin emits nothing on these machines (no NVIDIA driver); its catalogue
//!   marks every entry optional for that reason.
//! * The `system` plugin's values agree with `/proc` read by this test around the same
//!   collection (exact for sizes, bracketed for counters and rates).
//! * Telltale's own metrics (`telltale_*`) are listed once, in `telltale_model::self_metrics`;
//!   no other engine source spells such a name, and every listed one is emitted somewhere.
//! * `docs/metrics.md` is generated from the catalogues and that list; this test fails when
//!   it is stale.
//!   Regenerate it with `TELLTALE_BLESS=1 cargo test -p telltale --test e2e catalogue`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use telltale_config::{AnalyzerConfig, CollectorConfig};
use telltale_model::{Point, Sample, SeriesKey, SeriesWindow, self_metrics};
use telltale_plugin_host::{Analyzer, Collector, PluginHost, PluginInstance, PluginSpec};
use telltale_standard_plugins::standard_plugins;

use crate::support::{StaticServer, closed_port, ray_fixture};

/// Standard plugins with an output test in this file.
const EXERCISED: &[&str] = &["system", "gpu", "window-stats", "prometheus", "process"];

/// Units a catalogue entry may have. Extend it when a plugin measures something new.
const UNITS: &[&str] = &[
    "none",
    "percent",
    "bytes",
    "bytes_per_second",
    "per_second",
    "seconds",
    "celsius",
    "watts",
    "hertz",
    "the input's",
];

/// One `metrics.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    plugin: String,
    kind: String,
    grants: String,
    summary: String,
    metrics: Vec<Entry>,
}

/// One metric of a catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    unit: String,
    labels: Vec<String>,
    #[serde(default)]
    rate: bool,
    #[serde(default)]
    optional: Option<String>,
    /// Stands for every series the plugin passes on from elsewhere (the `prometheus`
    /// scraper's scraped metrics): named `{scraped}`, type and unit `as scraped`; a sample
    /// no named entry matches is matched to it.
    #[serde(default)]
    passthrough: bool,
    help: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the cli crate lies in engine/cli of the repository")
        .to_path_buf()
}

/// Every `plugins/*/metrics.yaml`, by plugin name.
fn catalogues() -> BTreeMap<String, Catalogue> {
    let mut out = BTreeMap::new();
    let dir = repo().join("plugins");
    for entry in std::fs::read_dir(&dir).expect("plugins/ is readable") {
        let path = entry.expect("plugins/ entry").path().join("metrics.yaml");
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("catalogue is readable");
        let cat: Catalogue = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a valid catalogue: {e}", path.display()));
        assert!(
            out.insert(cat.plugin.clone(), cat).is_none(),
            "two catalogues for one plugin ({})",
            path.display()
        );
    }
    out
}

fn catalogue(plugin: &str) -> Catalogue {
    catalogues()
        .remove(plugin)
        .unwrap_or_else(|| panic!("no plugins/*/metrics.yaml for `{plugin}`"))
}

#[test]
fn every_standard_plugin_has_a_catalogue_and_a_test() {
    let cats = catalogues();
    for p in standard_plugins() {
        let cat = cats.get(p.name).unwrap_or_else(|| {
            panic!(
                "standard plugin `{}` has no catalogue: add plugins/{}/metrics.yaml",
                p.name, p.name
            )
        });
        assert_eq!(cat.kind, p.kind.to_string(), "kind of `{}`", p.name);
        assert!(
            EXERCISED.contains(&p.name),
            "standard plugin `{}` has a catalogue but no test running it against it in \
             tests/e2e/catalogue.rs",
            p.name
        );
    }
}

#[test]
fn catalogue_entries_follow_the_conventions() {
    for (plugin, cat) in catalogues() {
        let mut seen = BTreeSet::new();
        for e in &cat.metrics {
            let at = format!("{plugin}: {}", e.name);
            assert!(seen.insert(e.name.as_str()), "{at} is listed twice");
            if e.passthrough {
                assert_eq!(
                    e.name, "{scraped}",
                    "{at}: a passthrough entry is `{{scraped}}`"
                );
                assert_eq!(
                    (e.kind.as_str(), e.unit.as_str()),
                    ("as scraped", "as scraped")
                );
                assert!(!e.help.trim().is_empty(), "{at}: say what it means");
                continue;
            }
            let plain = e.name.replace("{input}", "x");
            assert!(
                plain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{at}: names are snake_case"
            );
            match e.kind.as_str() {
                "counter" => assert!(e.name.ends_with("_total"), "{at}: counters end in _total"),
                "gauge" => assert!(
                    !e.name.ends_with("_total"),
                    "{at}: only counters end in _total"
                ),
                other => panic!("{at}: type `{other}` is not gauge or counter"),
            }
            assert!(
                UNITS.contains(&e.unit.as_str()),
                "{at}: unknown unit `{}`",
                e.unit
            );
            let base = e.name.trim_end_matches("_total");
            let suffix = match e.unit.as_str() {
                "percent" => Some("_percent"),
                "bytes" => Some("_bytes"),
                "bytes_per_second" => Some("_bytes_per_second"),
                "per_second" => Some("_per_second"),
                "seconds" => Some("_seconds"),
                "celsius" => Some("_celsius"),
                "watts" => Some("_watts"),
                "hertz" => Some("_hertz"),
                _ => None,
            };
            if let Some(suffix) = suffix {
                assert!(
                    base.ends_with(suffix),
                    "{at}: unit {} needs the name to end in {suffix}",
                    e.unit
                );
            }
            if e.rate {
                assert_eq!(e.kind, "gauge", "{at}: a rate is a gauge");
            }
            let labels: BTreeSet<&String> = e.labels.iter().collect();
            assert_eq!(
                labels.len(),
                e.labels.len(),
                "{at}: a label is listed twice"
            );
            assert!(!e.help.trim().is_empty(), "{at}: say what it means");
            if let Some(why) = &e.optional {
                assert!(!why.trim().is_empty(), "{at}: say why it is optional");
            }
        }
    }
}

/// Checks `samples` against `cat`; returns the names of the entries they matched.
/// `inputs` are the series an analyzer was given (for `{input}` templates).
fn check_samples(cat: &Catalogue, samples: &[Sample], inputs: &[SeriesKey]) -> BTreeSet<String> {
    let mut matched = BTreeSet::new();
    for s in samples {
        let found = cat.metrics.iter().find_map(|e| {
            if e.name == s.name {
                return Some((e, None));
            }
            let (prefix, suffix) = e.name.split_once("{input}")?;
            inputs
                .iter()
                .find(|i| s.name == format!("{prefix}{}{suffix}", i.name))
                .map(|i| (e, Some(i)))
        });
        let found = found.or_else(|| {
            cat.metrics
                .iter()
                .find(|e| e.passthrough)
                .map(|e| (e, None))
        });
        let Some((entry, input)) = found else {
            panic!(
                "`{}` emits `{}`, which is not in its catalogue (plugins/{}/metrics.yaml)",
                cat.plugin, s.name, cat.plugin
            );
        };
        let mut required = BTreeSet::new();
        let mut allowed = BTreeSet::new();
        // A `{...}` label other than `{input}` (a target's extra labels, a scraped series'
        // own) stands for labels this test cannot name: any label is allowed.
        let mut any_label = false;
        for l in &entry.labels {
            if l == "{input}" {
                let input = input.expect("a `{input}` label needs an `{input}` name");
                let optional: Vec<&str> = entry
                    .labels
                    .iter()
                    .filter_map(|l| l.strip_suffix('?'))
                    .collect();
                for k in input.labels.keys() {
                    allowed.insert(k.clone());
                    if !optional.contains(&k.as_str()) {
                        required.insert(k.clone());
                    }
                }
            } else if l.trim_end_matches('?').starts_with('{') {
                any_label = true;
            } else if let Some(l) = l.strip_suffix('?') {
                allowed.insert(l.to_string());
            } else {
                required.insert(l.clone());
                allowed.insert(l.clone());
            }
        }
        let got: BTreeSet<String> = s.labels.keys().cloned().collect();
        assert!(
            required.is_subset(&got) && (any_label || got.is_subset(&allowed)),
            "`{}` has labels {got:?}; its catalogue entry says {:?}",
            s.name,
            entry.labels
        );
        if entry.passthrough {
            // Scraped values are the target's: NaN and infinities are legal there.
            matched.insert(entry.name.clone());
            continue;
        }
        assert!(s.value.is_finite(), "{s:?}");
        if entry.unit == "percent" {
            assert!(
                (0.0..=100.0).contains(&s.value),
                "a percentage out of 0-100: {s:?}"
            );
        }
        if entry.kind == "counter" {
            assert!(s.value >= 0.0, "a negative counter: {s:?}");
        }
        matched.insert(entry.name.clone());
    }
    matched
}

/// Asserts that every entry not `optional` was matched.
fn assert_all_emitted(cat: &Catalogue, matched: &BTreeSet<String>) {
    let missing: Vec<&str> = cat
        .metrics
        .iter()
        .filter(|e| e.optional.is_none() && !matched.contains(&e.name))
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "`{}` never emitted {missing:?}; emit them or mark them `optional: <why>` in \
         plugins/{}/metrics.yaml",
        cat.plugin,
        cat.plugin
    );
}

async fn system_plugin(config_json: &str) -> PluginInstance<Collector> {
    let yaml = format!(
        "name: system\nplugin: system\ngrants:\n  system: true\n  files: [/proc, /sys]\nconfig: {config_json}\n"
    );
    let cfg: CollectorConfig = serde_yaml::from_str(&yaml).expect("collector entry");
    let host = PluginHost::new(None).expect("plugin host");
    host.load::<Collector>(PluginSpec::new(&cfg, &repo()))
        .await
        .expect("the system plugin loads")
}

#[tokio::test]
async fn system_output_matches_catalogue() {
    let cat = catalogue("system");
    let mut plugin = system_plugin(r#"{"exclude_interfaces": []}"#).await;
    let first = plugin.call(()).await.expect("first collection");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = plugin.call(()).await.expect("second collection");

    let rates: BTreeSet<&str> = cat
        .metrics
        .iter()
        .filter(|e| e.rate)
        .map(|e| e.name.as_str())
        .collect();
    let early: Vec<&str> = first
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| rates.contains(n))
        .collect();
    assert!(early.is_empty(), "rates in the first collection: {early:?}");
    let second_names = check_samples(&cat, &second, &[]);
    for e in cat
        .metrics
        .iter()
        .filter(|e| e.rate && e.optional.is_none())
    {
        assert!(
            second_names.contains(&e.name),
            "the second collection lacks the rate {}",
            e.name
        );
    }
    let mut matched = check_samples(&cat, &first, &[]);
    matched.extend(second_names);
    assert_all_emitted(&cat, &matched);

    // An optional entry is allowed to be missing only for its stated reason, where this
    // test can tell.
    let swap_total = value_of(&second, "system_swap_total_bytes", &[]);
    assert_eq!(
        matched.contains("system_swap_used_percent"),
        swap_total > 0.0,
        "swap used percent exactly when there is swap"
    );
    assert_eq!(
        matched.contains("system_pressure_percent"),
        std::fs::read_to_string("/proc/pressure/cpu").is_ok(),
        "pressure figures exactly when /proc/pressure is readable"
    );
}

/// The `gpu` plugin against its catalogue. These machines have no NVIDIA driver, so it
/// emits nothing here, which its catalogue allows only because every entry says why it may
/// be absent; on a machine with a GPU its output is checked like any other plugin's. (The
/// mapping itself is tested on a recorded H100 snapshot in plugins/gpu/src/tests.rs.)
#[tokio::test]
async fn gpu_output_matches_catalogue() {
    let cat = catalogue("gpu");
    let cfg: CollectorConfig =
        serde_yaml::from_str("name: gpu\nplugin: gpu\ngrants: { gpu: true }\n")
            .expect("collector entry");
    let host = PluginHost::new(None).expect("plugin host");
    let mut plugin = host
        .load::<Collector>(PluginSpec::new(&cfg, &repo()))
        .await
        .expect("the gpu plugin loads");
    let samples = plugin
        .call(())
        .await
        .expect("collecting never fails for want of a GPU");
    let matched = check_samples(&cat, &samples, &[]);
    assert_all_emitted(&cat, &matched);
    let has_driver = Path::new("/proc/driver/nvidia").exists();
    if !has_driver {
        assert!(samples.is_empty(), "no GPU here, yet: {samples:?}");
        for e in &cat.metrics {
            let why = e.optional.as_deref().unwrap_or_default();
            assert!(
                why.contains("no NVIDIA GPU"),
                "gpu: {} must be optional for want of a GPU",
                e.name
            );
        }
    } else {
        assert!(matched.contains("gpu_memory_total_bytes"), "{samples:?}");
    }
}

fn samples_named<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// The value of the one sample named `name` with (at least) `labels`.
fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

fn label_values(samples: &[Sample], name: &str, label: &str) -> BTreeSet<String> {
    samples_named(samples, name)
        .iter()
        .filter_map(|s| s.labels.get(label).cloned())
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `KEY VALUE...` of /proc/stat.
fn proc_stat_field(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/stat has no {key}"))
}

/// `MemTotal:  123 kB` of /proc/meminfo, in bytes.
fn meminfo_bytes(text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("/proc/meminfo has no {key}"));
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024.0
}

/// Interface → received bytes, from /proc/net/dev.
fn net_rx_bytes(text: &str) -> HashMap<String, f64> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            Some((
                name.trim().to_string(),
                rest.split_whitespace().next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// A /proc reading taken just before and just after a collection.
struct Bracket {
    stat: (String, String),
    net: (String, String),
    diskstats: (String, String),
    started: Instant,
    ended: Instant,
}

async fn collect_bracketed(plugin: &mut PluginInstance<Collector>) -> (Vec<Sample>, Bracket) {
    let (stat, net, disk) = (
        read("/proc/stat"),
        read("/proc/net/dev"),
        read("/proc/diskstats"),
    );
    let started = Instant::now();
    let samples = plugin.call(()).await.expect("collection");
    let ended = Instant::now();
    let bracket = Bracket {
        stat: (stat, read("/proc/stat")),
        net: (net, read("/proc/net/dev")),
        diskstats: (disk, read("/proc/diskstats")),
        started,
        ended,
    };
    (samples, bracket)
}

fn assert_within(what: &str, value: f64, low: f64, high: f64) {
    assert!(
        low <= value && value <= high,
        "{what} = {value}, expected within [{low}, {high}]"
    );
}

#[tokio::test]
async fn system_values_agree_with_proc() {
    let mut plugin = system_plugin(r#"{"exclude_interfaces": [], "exclude_devices": []}"#).await;
    let (first, b1) = collect_bracketed(&mut plugin).await;
    // Traffic on the loopback interface between the collections, so its rate is not 0.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(&[7u8; 256 * 1024]).unwrap();
    });
    let (mut conn, _) = listener.accept().unwrap();
    std::io::copy(
        &mut std::io::Read::take(&mut conn, 256 * 1024),
        &mut std::io::sink(),
    )
    .unwrap();
    sender.join().unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (second, b2) = collect_bracketed(&mut plugin).await;

    // Memory and swap sizes: exact.
    let meminfo = read("/proc/meminfo");
    assert_eq!(
        value_of(&second, "system_memory_total_bytes", &[]),
        meminfo_bytes(&meminfo, "MemTotal")
    );
    assert_eq!(
        value_of(&second, "system_swap_total_bytes", &[]),
        meminfo_bytes(&meminfo, "SwapTotal")
    );
    let used_pct = value_of(&second, "system_memory_used_percent", &[]);
    assert!((0.0..=100.0).contains(&used_pct));

    // CPUs: one per cpuN line, each one's modes summing to 100.
    let cores: Vec<String> = b2
        .stat
        .1
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|k| k.strip_prefix("cpu"))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        value_of(&second, "system_cpu_cores", &[]),
        cores.len() as f64
    );
    let mut expected_cpus: BTreeSet<String> = cores.into_iter().collect();
    expected_cpus.insert("total".into());
    assert_eq!(
        label_values(&second, "system_cpu_usage_percent", "cpu"),
        expected_cpus
    );
    for cpu in &expected_cpus {
        let sum: f64 = samples_named(&second, "system_cpu_percent")
            .iter()
            .filter(|s| s.labels.get("cpu") == Some(cpu))
            .map(|s| s.value)
            .sum();
        assert!((sum - 100.0).abs() < 1.0, "cpu {cpu}: modes sum to {sum}");
        let busy = value_of(&second, "system_cpu_usage_percent", &[("cpu", cpu)]);
        let idle = value_of(
            &second,
            "system_cpu_percent",
            &[("cpu", cpu), ("mode", "idle")],
        );
        let iowait = value_of(
            &second,
            "system_cpu_percent",
            &[("cpu", cpu), ("mode", "iowait")],
        );
        assert!((busy + idle + iowait - 100.0).abs() < 1e-6, "cpu {cpu}");
    }

    // Counters lie between the readings taken just before and just after the collection.
    for (samples, b) in [(&first, &b1), (&second, &b2)] {
        for (metric, key) in [
            ("system_context_switches_total", "ctxt"),
            ("system_processes_forked_total", "processes"),
        ] {
            assert_within(
                metric,
                value_of(samples, metric, &[]),
                proc_stat_field(&b.stat.0, key),
                proc_stat_field(&b.stat.1, key),
            );
        }
        let (before, after) = (net_rx_bytes(&b.net.0), net_rx_bytes(&b.net.1));
        let emitted = label_values(samples, "system_network_received_bytes_total", "interface");
        let listed: BTreeSet<String> = after.keys().cloned().collect();
        assert_eq!(emitted, listed, "interfaces of /proc/net/dev");
        for (iface, low) in &before {
            assert_within(
                &format!("rx bytes of {iface}"),
                value_of(
                    samples,
                    "system_network_received_bytes_total",
                    &[("interface", iface)],
                ),
                *low,
                after[iface],
            );
        }
        let devices = label_values(samples, "system_disk_read_bytes_total", "device");
        for d in &devices {
            let sectors = |text: &str| -> f64 {
                text.lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .find(|f| f.get(2) == Some(&d.as_str()))
                    .and_then(|f| f.get(5)?.parse().ok())
                    .unwrap_or_else(|| panic!("{d} is not in /proc/diskstats"))
            };
            assert_within(
                &format!("read bytes of {d}"),
                value_of(samples, "system_disk_read_bytes_total", &[("device", d)]),
                sectors(&b.diskstats.0) * 512.0,
                sectors(&b.diskstats.1) * 512.0,
            );
        }
    }

    // Rates: the increase between the collections over their interval, bounded by the
    // readings around each collection and the times around each call (20 ms of slack for
    // the kernel's 10 ms uptime clock, which the plugin falls back on).
    let slack = 0.02;
    let longest = (b2.ended - b1.started).as_secs_f64() + slack;
    let shortest = (b2.started - b1.ended).as_secs_f64() - slack;
    let ctxt = |s: &str| proc_stat_field(s, "ctxt");
    assert_within(
        "context switches per second",
        value_of(&second, "system_context_switches_per_second", &[]),
        (ctxt(&b2.stat.0) - ctxt(&b1.stat.1)) / longest,
        (ctxt(&b2.stat.1) - ctxt(&b1.stat.0)) / shortest,
    );
    let lo = |s: &str| net_rx_bytes(s)["lo"];
    let lo_rate = value_of(
        &second,
        "system_network_received_bytes_per_second",
        &[("interface", "lo")],
    );
    assert_within(
        "lo received bytes per second",
        lo_rate,
        (lo(&b2.net.0) - lo(&b1.net.1)) / longest,
        (lo(&b2.net.1) - lo(&b1.net.0)) / shortest,
    );
    assert!(
        lo_rate > 100_000.0,
        "256 KiB went over lo in about a second: {lo_rate}"
    );

    // Disks: real mounts only, each a mount of this process's mount table.
    let mountinfo = read("/proc/self/mountinfo");
    let table: HashMap<String, String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split(' ').nth(4)?.replace("\\040", " ");
            Some((mount, right.split(' ').next()?.to_string()))
        })
        .collect();
    let mounts = label_values(&second, "system_disk_total_bytes", "mount");
    assert!(!mounts.is_empty(), "no disk usage at all");
    for m in &mounts {
        let fs = table
            .get(m)
            .unwrap_or_else(|| panic!("{m} is not in /proc/self/mountinfo"));
        assert!(
            ![
                "proc", "sysfs", "tmpfs", "devtmpfs", "cgroup", "cgroup2", "devpts", "squashfs"
            ]
            .contains(&fs.as_str()),
            "{m} is a {fs}, a pseudo file system"
        );
        let total = value_of(&second, "system_disk_total_bytes", &[("mount", m)]);
        let avail = value_of(&second, "system_disk_available_bytes", &[("mount", m)]);
        assert!(total > 0.0 && avail <= total, "{m}: {avail} of {total}");
    }
    if table
        .get("/")
        .is_some_and(|fs| !["tmpfs", "rootfs"].contains(&fs.as_str()))
    {
        assert!(
            mounts.contains("/"),
            "the root file system is reported: {mounts:?}"
        );
    }

    // Uptime and boot time.
    let uptime: f64 = read("/proc/uptime")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reported = value_of(&second, "system_uptime_seconds", &[]);
    assert!(
        reported <= uptime && uptime - reported < 5.0,
        "{reported} vs {uptime}"
    );
    assert_eq!(
        value_of(&second, "system_boot_time_seconds", &[]),
        proc_stat_field(&b2.stat.1, "btime")
    );

    // Pressure: the stall counters bracket like the others.
    if let Ok(after) = std::fs::read_to_string("/proc/pressure/io") {
        let total = |text: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with("some")).unwrap();
            line.rsplit("total=")
                .next()
                .unwrap()
                .trim()
                .parse::<f64>()
                .unwrap()
                / 1e6
        };
        let emitted = value_of(
            &second,
            "system_pressure_stalled_seconds_total",
            &[("resource", "io"), ("kind", "some")],
        );
        assert!(emitted <= total(&after), "{emitted} vs {after}");
        let pct = value_of(
            &second,
            "system_pressure_percent",
            &[("resource", "io"), ("kind", "some")],
        );
        assert!((0.0..=100.0).contains(&pct));
    }
}

#[tokio::test]
async fn window_stats_output_matches_catalogue() {
    let cat = catalogue("window-stats");
    let host = PluginHost::new(None).expect("plugin host");
    let inputs = vec![
        SeriesKey {
            name: "system_cpu_usage_percent".into(),
            labels: [("cpu".to_string(), "total".to_string())].into(),
        },
        SeriesKey {
            name: "queue_depth".into(),
            labels: [("window".to_string(), "old".to_string())].into(),
        },
    ];
    let windows: Vec<SeriesWindow> = inputs
        .iter()
        .map(|key| SeriesWindow {
            key: key.clone(),
            points: (0..10)
                .map(|i| Point {
                    timestamp_ms: 1_700_000_000_000 + i * 1000,
                    value: i as f64,
                })
                .collect(),
        })
        .collect();
    let mut matched = BTreeSet::new();
    for config in ["{window: 1m}", "{}"] {
        let yaml = format!("name: stats\nplugin: window-stats\ninputs: [x]\nconfig: {config}\n");
        let cfg: AnalyzerConfig = serde_yaml::from_str(&yaml).expect("analyzer entry");
        let mut plugin = host
            .load::<Analyzer>(PluginSpec::new(&cfg, &repo()))
            .await
            .expect("window-stats loads");
        let (samples, _) = plugin.call(windows.clone()).await.expect("analyze");
        assert_eq!(samples.len(), inputs.len() * 5);
        matched.extend(check_samples(&cat, &samples, &inputs));
    }
    assert_all_emitted(&cat, &matched);
}

#[tokio::test]
async fn prometheus_output_matches_catalogue() {
    let cat = catalogue("prometheus");
    let server = StaticServer::start(ray_fixture(), "text/plain; version=0.0.4; charset=utf-8");
    let down = closed_port();
    let yaml = format!(
        "name: ray\nplugin: prometheus\ngrants:\n  http: [\"{}\", \"{down}\"]\n\
         config:\n  targets:\n    - {{url: \"{}\", name: ray-head, labels: {{service: ray}}}}\n    \
         - {{url: \"http://{down}/metrics\"}}\n",
        server.host_port, server.url
    );
    let cfg: CollectorConfig = serde_yaml::from_str(&yaml).expect("collector entry");
    let host = PluginHost::new(None).expect("plugin host");
    let mut plugin = host
        .load::<Collector>(PluginSpec::new(&cfg, &repo()))
        .await
        .expect("the prometheus plugin loads");
    let samples = plugin.call(()).await.expect("collection");
    // 1599 scraped samples plus four per-target metrics for each of the two targets.
    assert_eq!(samples.len(), 1599 + 2 * 4);
    let matched = check_samples(&cat, &samples, &[]);
    assert_all_emitted(&cat, &matched);
    let up = [("instance", server.host_port.as_str()), ("job", "ray-head")];
    assert_eq!(value_of(&samples, "up", &up), 1.0);
    assert_eq!(value_of(&samples, "scrape_samples_scraped", &up), 1599.0);
    assert_eq!(
        value_of(&samples, "up", &[("instance", down.as_str())]),
        0.0
    );
    assert_eq!(
        value_of(&samples, "process_open_fds", &[("service", "ray")]),
        52.0
    );
}

#[tokio::test]
async fn process_output_matches_catalogue() {
    let cat = catalogue("process");
    let name = crate::process::worker_name("cat");
    let mut worker = crate::process::Worker::start(&name);
    let yaml = format!(
        "name: procs\nplugin: process\ngrants:\n  processes: true\n  files: [/proc]\nconfig:\n  groups:\n    \
         worker: [{{name: {name}}}]\n    none: [{{name: tt_no_such_proc}}]\n"
    );
    let cfg: CollectorConfig = serde_yaml::from_str(&yaml).expect("collector entry");
    let host = PluginHost::new(None).expect("plugin host");
    let mut plugin = host
        .load::<Collector>(PluginSpec::new(&cfg, &repo()))
        .await
        .expect("the process plugin loads");
    let first = plugin.call(()).await.expect("first collection");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = plugin.call(()).await.expect("second collection");
    worker.kill();
    let third = plugin.call(()).await.expect("third collection");

    let rates: BTreeSet<&str> = cat
        .metrics
        .iter()
        .filter(|e| e.rate)
        .map(|e| e.name.as_str())
        .collect();
    let early: Vec<&str> = first
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| rates.contains(n))
        .collect();
    assert!(early.is_empty(), "rates in the first collection: {early:?}");
    let mut matched = check_samples(&cat, &first, &[]);
    let second_names = check_samples(&cat, &second, &[]);
    for rate in &rates {
        assert!(
            second_names.contains(*rate),
            "the second collection lacks {rate}"
        );
    }
    matched.extend(second_names);
    matched.extend(check_samples(&cat, &third, &[]));
    assert_all_emitted(&cat, &matched);

    assert_eq!(
        value_of(&second, "process_group_count", &[("group", "worker")]),
        1.0
    );
    assert_eq!(
        value_of(&second, "process_group_count", &[("group", "none")]),
        0.0
    );
    assert_eq!(
        value_of(&third, "process_group_count", &[("group", "worker")]),
        0.0
    );
    assert_eq!(
        value_of(&third, "process_group_exits_total", &[("group", "worker")]),
        1.0
    );
    assert_eq!(
        value_of(&third, "process_group_exits_total", &[("group", "none")]),
        0.0
    );
    assert!(
        value_of(
            &third,
            "process_last_exit_runtime_seconds",
            &[("group", "worker"), ("name", name.as_str())]
        ) >= 1.0
    );
}

/// docs/metrics.md, as generated from the catalogues.
fn render_markdown(cats: &BTreeMap<String, Catalogue>) -> String {
    let cell = |s: &str| s.trim().replace('|', "\\|").replace('\n', " ");
    let mut md = String::from(
        "# Metrics catalogue\n\n\
         <!-- Generated from plugins/*/metrics.yaml and engine/model/src/self_metrics.rs; do \
         not edit.\n     Regenerate with\n     \
         TELLTALE_BLESS=1 cargo test -p telltale --test e2e catalogue -->\n\n\
         Every metric a standard plugin emits, with its type, unit, labels and meaning. The\n\
         source of truth is each plugin's `plugins/<name>/metrics.yaml`; \
         `tests/e2e/catalogue.rs` runs\nthe real plugins and fails when their output and \
         their catalogue differ.\n\n\
         Conventions (Prometheus): base units in the name (`_bytes`, `_seconds`), percentages \
         as\n`_percent` from 0 to 100, counters end in `_total` and only go up (until a \
         reboot or a\ndevice reset). **Rate** metrics are computed between two collections, \
         so the first\ncollection after a plugin (re)starts has none. **Optional** metrics \
         are left out where\nwhat they measure does not exist. Telltale's own metrics \
         (`telltale_*`) are\n[at the end](#telltales-own-metrics).\n",
    );
    for cat in cats.values() {
        md.push_str(&format!(
            "\n## `{}` ({})\n\n{}\n\nGrants: `{}`.\n\n\
             | Metric | Type | Unit | Labels | Meaning |\n|---|---|---|---|---|\n",
            cat.plugin,
            cat.kind,
            cell(&cat.summary),
            cat.grants
        ));
        for e in &cat.metrics {
            let labels = if e.labels.is_empty() {
                "—".to_string()
            } else {
                e.labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut meaning = cell(&e.help);
            if e.rate {
                meaning.push_str(" **Rate.**");
            }
            if let Some(why) = &e.optional {
                meaning.push_str(&format!(" **Optional:** {}.", cell(why)));
            }
            if e.passthrough {
                meaning.push_str(" **Passthrough:** stands for every scraped series.");
            }
            md.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                e.name,
                e.kind,
                if e.unit == "none" { "—" } else { &e.unit },
                labels,
                meaning
            ));
        }
    }
    md.push_str(
        "\n## Telltale's own metrics\n\n\
         What the engine writes about itself, in the same store, so rules can watch the \
         engine\nlike anything else. The list is `engine/model/src/self_metrics.rs`; the \
         stages emit these\nnames through its constants.\n",
    );
    let mut stages: Vec<&str> = Vec::new();
    for m in self_metrics::ALL {
        if !stages.contains(&m.stage) {
            stages.push(m.stage);
        }
    }
    for stage in stages {
        md.push_str(&format!(
            "\n### {stage}\n\n| Metric | Type | Unit | Labels | Meaning |\n|---|---|---|---|---|\n"
        ));
        for m in self_metrics::ALL.iter().filter(|m| m.stage == stage) {
            let labels = if m.labels.is_empty() {
                "—".to_string()
            } else {
                m.labels
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            md.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                m.name,
                m.kind,
                if m.unit == "none" { "—" } else { m.unit },
                labels,
                cell(m.help)
            ));
        }
    }
    md
}

/// The non-test Rust sources of the engine crates: test modules and test files are left
/// out, since tests spell names to check them.
fn engine_sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for krate in std::fs::read_dir(repo().join("engine"))
        .expect("engine/")
        .flatten()
    {
        walk(&krate.path().join("src"), &mut files);
    }
    files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name != "tests.rs"
                && !name.ends_with("_tests.rs")
                && !p.components().any(|c| c.as_os_str() == "tests")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read source");
            let code = match text.find("#[cfg(test)]\nmod tests {") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (p, code)
        })
        .collect()
}

#[test]
fn self_metric_names_live_in_one_place() {
    let listed: BTreeSet<&str> = self_metrics::ALL.iter().map(|m| m.name).collect();
    let mut problems = Vec::new();
    let sources = engine_sources();
    for (path, code) in &sources {
        if path.ends_with("model/src/self_metrics.rs") {
            continue;
        }
        for (i, _) in code.match_indices("\"telltale_") {
            let rest = &code[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            // Crate names, not metrics.
            if name == "telltale_sdk" || !rest[end..].starts_with('"') {
                continue;
            }
            problems.push(format!(
                "{}: spells the metric name `{name}`{}; use the constant in \
                 telltale_model::self_metrics",
                path.display(),
                if listed.contains(name) {
                    ""
                } else {
                    " (not even listed there)"
                }
            ));
        }
    }
    // Every listed metric is emitted by some stage, through its constant (a whole
    // identifier: `PLUGIN_CALL_DURATION` is not used by `PLUGIN_CALL_DURATION_SUM`).
    let listing = sources
        .iter()
        .find(|(p, _)| p.ends_with("model/src/self_metrics.rs"))
        .map(|(_, code)| code.as_str())
        .expect("self_metrics.rs among the engine sources");
    let used = |code: &str, ident: &str| {
        code.match_indices(ident).any(|(i, _)| {
            !code[i + ident.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    for m in self_metrics::ALL {
        let ident = self_metrics_ident(listing, m.name);
        if !sources
            .iter()
            .any(|(p, code)| !p.ends_with("model/src/self_metrics.rs") && used(code, &ident))
        {
            problems.push(format!(
                "{} is listed but no engine source uses `{ident}`: remove it from \
                 self_metrics.rs or emit it",
                m.name
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The constant's name for a metric name, found in `self_metrics.rs` (`listing`).
fn self_metrics_ident(listing: &str, name: &str) -> String {
    let needle = format!("= \"{name}\"");
    let line = listing
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("{name} not found in self_metrics.rs"));
    let ident = line.split_whitespace().next().unwrap_or_default();
    format!("self_metrics::{ident}")
}

#[test]
fn catalogue_docs_are_up_to_date() {
    let expected = render_markdown(&catalogues());
    let path = repo().join("docs/metrics.md");
    if std::env::var_os("TELLTALE_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("write docs/metrics.md");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/metrics.md differs from plugins/*/metrics.yaml; regenerate it with\n  \
         TELLTALE_BLESS=1 cargo test -p telltale --test e2e catalogue"
    );
}
