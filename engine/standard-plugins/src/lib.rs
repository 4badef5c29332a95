//! The standard plugins, built from `plugins/` for `wasm32-wasip2` by `build.rs` and
//! embedded in the binary: the one binary is the whole product.
//!
//! Owns the bytes of every standard plugin and the place the build put the test plugins
//! (`tests/plugins/*`), which other crates' tests load. It knows nothing about running a
//! plugin; `telltale-plugin-host` does that.

use telltale_model::PluginKind;

/// The directory holding the test plugins (`tests/plugins/NAME` built as `NAME.wasm`), for
/// the tests of other crates.
pub const TEST_PLUGINS_DIR: &str = env!("TELLTALE_TEST_PLUGINS_DIR");

/// A plugin shipped inside the binary.
#[derive(Debug)]
pub struct StandardPlugin {
    /// The name used in the config's `plugin:` field.
    pub name: &'static str,
    /// The world it implements.
    pub kind: PluginKind,
    /// One line saying what it does.
    pub description: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

static STANDARD_PLUGINS: [StandardPlugin; 5] = [
    StandardPlugin {
        name: "system",
        kind: PluginKind::Collector,
        description: "CPU, load, memory, swap, disks, network and uptime of this machine \
                      (needs `grants: { system: true, files: [/proc, /sys] }`)",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/system.wasm")),
    },
    StandardPlugin {
        name: "gpu",
        kind: PluginKind::Collector,
        description: "NVIDIA GPUs through NVML: utilisation, memory, temperature, power, fan, \
                      clocks, throttle reasons, ECC errors, per-process memory \
                      (needs `grants: { gpu: true }`; emits nothing without a driver)",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/gpu.wasm")),
    },
    StandardPlugin {
        name: "process",
        kind: PluginKind::Collector,
        description: "groups of processes (by name, command line or regex): count, CPU, \
                      memory, I/O, threads, fds per group and process, and exits \
                      (needs `grants: { processes: true, files: [/proc] }`)",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/process.wasm")),
    },
    StandardPlugin {
        name: "window-stats",
        kind: PluginKind::Analyzer,
        description: "mean, min, max, p50 and p95 of each input series over its window",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/window-stats.wasm")),
    },
    StandardPlugin {
        name: "prometheus",
        kind: PluginKind::Collector,
        description: "scrapes Prometheus text / OpenMetrics endpoints, with per-target `up` \
                      and scrape figures (needs `grants: { http: [\"HOST:PORT\"] }` naming \
                      every target)",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/prometheus.wasm")),
    },
];

/// Every standard plugin.
pub fn standard_plugins() -> &'static [StandardPlugin] {
    &STANDARD_PLUGINS
}

/// The standard plugin called `name`.
pub fn find_standard(name: &str) -> Option<&'static StandardPlugin> {
    STANDARD_PLUGINS.iter().find(|p| p.name == name)
}
