//! The standard `process` collector: groups of processes (a plotter, a daemon, a service)
//! watched per group and per process, with crash detection.
//!
//! It reads the host's process table through the `processes` capability (grant
//! `processes: true`). Every metric, with its type, unit, labels and meaning, is listed in
//! `plugins/process/metrics.yaml` (rendered in `docs/metrics.md`).
//!
//! # Config
//!
//! ```json
//! {"groups": {
//!    "madmax":   ["chia_plot"],
//!    "bladebit": ["bladebit"],
//!    "chia":     ["chia "],
//!    "farmer":   [{"name": "chia_farmer"}, {"cmdline": "start farmer"}],
//!    "workers":  [{"regex": "^python3? .*worker\\.py( |$)"}]
//!  },
//!  "per_process": true}
//! ```
//!
//! * `groups` (required, at least one): group name → list of matchers. A process belongs
//!   to a group when ANY of the group's matchers matches it; it may belong to several
//!   groups (it is then counted, and reported per process, in each).
//! * A matcher is one of
//!   - a plain string `"s"`: the process name equals `s` exactly, OR the command line
//!     contains `s` (see below). `"chia "` (with its space) thus matches `chia start
//!     farmer` but not `chia_plot`;
//!   - `{"name": "s"}`: the process name equals `s` exactly (on Linux the name is `comm`,
//!     cut to 15 bytes by the kernel: match the first 15 bytes of a longer one);
//!   - `{"cmdline": "s"}`: the command line contains `s`;
//!   - `{"regex": "re"}`: the regular expression (Rust `regex` syntax, unanchored unless it
//!     says `^`/`$`) matches the command line.
//!
//!   The command line is the process's arguments joined by single spaces
//!   (`/usr/bin/chia_plot -n 1 -r 8`); it is empty for kernel threads and for processes
//!   the host may not inspect, so only name matchers see those.
//! * `per_process` (default `true`): also emit the per-process metrics (labels `group`,
//!   `pid`, `name`). Turn it off for groups with many short-lived members.
//!
//! Unknown keys, an empty `groups`, a group without matchers and an invalid regex are
//! refused at `init`.
//!
//! A plain-string or `cmdline` matcher also matches any process whose command line
//! merely mentions the string, e.g. `telltale plugin run process --config '{...}'`
//! itself, whose command line contains the config: use `{"name": ...}` there.
//!
//! # Rates and crash detection
//!
//! Byte rates are computed per process from its counters between two consecutive
//! collections (a process is recognised by pid and start time, so a reused pid is a new
//! process); a process seen for the first time has no rate yet, and the group rates are
//! absent from the plugin's first collection.
//!
//! The plugin remembers the members of each group. When a member is gone at the next
//! collection it counts an exit in `process_group_exits_total{group}` (emitted for every
//! group from the first collection on, starting at 0), sets
//! `process_last_exit_runtime_seconds{group,name}` to how long it had run when last seen,
//! and writes a warning to the engine's log:
//! `process exited: group=madmax name=chia_plot pid=4242 runtime_seconds=3605`.
//! A rule fires "critical process has crashed" on `process_group_count == 0` or on
//! `process_group_exits_total` increasing (see `examples/chia-plotting`). The plugin
//! cannot tell a crash from a clean exit: the process table has no exit status.

pub mod groups;

use telltale_sdk::{Collector, PluginError, Samples, parse_config};

pub use groups::{Config, Matcher, State};

/// The collector: the compiled groups and what it remembers between collections.
struct ProcessCollector {
    groups: groups::Groups,
    per_process: bool,
    state: State,
}

impl Collector for ProcessCollector {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        let groups = groups::Groups::compile(&config).map_err(PluginError::InvalidConfig)?;
        Ok(ProcessCollector {
            groups,
            per_process: config.per_process,
            state: State::default(),
        })
    }

    fn collect(&mut self, samples: &mut Samples) -> Result<(), PluginError> {
        #[cfg(target_family = "wasm")]
        {
            let now = telltale_sdk::now_ms();
            let table = telltale_sdk::processes::list();
            let collected = self
                .state
                .collect(&self.groups, self.per_process, &table, now);
            for exit in &collected.exits {
                telltale_sdk::log(telltale_sdk::Level::Warn, &exit.log_line());
            }
            samples.extend(&collected.samples);
            Ok(())
        }
        #[cfg(not(target_family = "wasm"))]
        {
            // Natively there is no host to read through; tests call `State::collect`.
            let _ = (&mut self.state, &self.groups, self.per_process, samples);
            Err(PluginError::Unavailable(
                "the process plugin runs inside the Telltale host only".to_string(),
            ))
        }
    }
}

telltale_sdk::export_collector!(ProcessCollector);

#[cfg(test)]
mod tests;
