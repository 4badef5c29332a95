//! The standard `process` collector: groups of processes (a plotter, a daemon, a service)
//! watched per group and per process, with crash detection.
//!
//! It reads the host's process table through the `processes` capability (grant
//! `processes: true`) and the exit status of a dead watched process from its
//! `/proc/PID/stat` through the `files` capability (grant `files: [/proc]`; the `files`
//! capability reads only the counters of `/proc`, never a command line or environment,
//! and the process table already shows more than that). Every metric, with its type,
//! unit, labels and meaning, is listed in `plugins/process/metrics.yaml` (rendered in
//! `docs/metrics.md`).
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
//! The plugin remembers the members of each group. A member has exited when, at a
//! later collection, it is a zombie (it died and its parent has not reaped it yet) or it
//! is gone. The exit is counted once, the first time it is seen so, in
//! `process_group_exits_total{group}` and in
//! `process_group_exits_by_outcome_total{group,outcome}` (both emitted for every group
//! from the first collection on, starting at 0), with its outcome:
//!
//! * `clean`: it exited with status 0; `error`: with a nonzero status; `signal`: a
//!   signal ended it (`SIGKILL` from the out-of-memory killer, `SIGSEGV`, ...);
//! * `unknown`: it was never seen dead, or its status could not be read.
//!
//! `process_last_exit_runtime_seconds{group,name}` is how long the last exited process of
//! that name had run when last seen running, `process_last_exit_code{group,name}` its
//! exit status (when it exited by itself) and `process_last_exit_signal{group,name}` the
//! signal that ended it (when one did). Each exit is also logged, at warning level (info
//! for a clean one):
//! `process exited: group=madmax name=chia_plot pid=4242 runtime_seconds=3605 outcome=signal signal=9 signal_name=SIGKILL`.
//! A zombie is dead: it is not counted in `process_group_count` nor reported per process.
//!
//! ## When the outcome is known
//!
//! Only a process's parent is told how it ended (`wait`). Anyone else can read it only
//! while the process is a zombie: Linux (3.5 and later) keeps the wait status in field
//! 52 (`exit_code`) of `/proc/PID/stat` until the parent reaps the process. The plugin
//! reads it when it first sees a watched zombie. So the outcome is known when the parent
//! takes longer to reap than the time to the next collection, and `unknown` when the
//! parent reaps at once, which is what a shell, `chia plots create`, systemd and most
//! supervisors do: a plotter run from a terminal or a service usually exits `unknown`,
//! whatever the collection interval. The outcome is also `unknown` when the entry's
//! `files` grant does not cover `/proc` (the log line says why) and on other systems
//! than Linux.
//!
//! Where it matters (tell a crashed plotter from a finished one), run the process under
//! a parent that waits for it without reaping, sleeps a little more than the collection
//! interval, then reaps it: `examples/chia-plotting/README.md` has such a wrapper
//! (Python's `os.waitid(..., os.WEXITED | os.WNOWAIT)`). Otherwise rely on what the
//! plotter leaves behind: its log file and the count of finished plots. The kernel's
//! process-events connector (netlink) would report every exit with its status, but only
//! to a listener with `CAP_NET_ADMIN` in the initial namespaces, which the engine
//! usually lacks, and only through a contract change; it is not used.

pub mod exit;
pub mod groups;

use telltale_sdk::{Collector, PluginError, Samples, parse_config};

pub use exit::Outcome;
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
            let mut read_stat = |pid: u32| {
                telltale_sdk::files::read(&format!("/proc/{pid}/stat"))
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            };
            let collected =
                self.state
                    .collect(&self.groups, self.per_process, &table, now, &mut read_stat);
            for exit in &collected.exits {
                // A clean exit is news, not trouble: it is logged at info level.
                let level = if exit.is_failure() {
                    telltale_sdk::Level::Warn
                } else {
                    telltale_sdk::Level::Info
                };
                telltale_sdk::log(level, &exit.log_line());
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
