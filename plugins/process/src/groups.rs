//! The plugin's logic as pure functions over a process table: matching processes to
//! groups, per-process byte rates, group sums and exit detection. Nothing here calls the
//! host (a zombie's `/proc/PID/stat` is read through a function the caller passes), so
//! native tests drive it with synthetic tables.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;
use serde::Deserialize;
use telltale_sdk::processes::Process;
use telltale_sdk::{Sample, sample};

use crate::exit::{Outcome, StatExit, parse_stat};

/// The `status` the host reports for a process that has exited and waits for its parent
/// to reap it.
const ZOMBIE: &str = "Zombie";

/// The plugin's configuration (see the crate docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Group name → matchers; a process is in a group when any matcher matches it.
    pub groups: BTreeMap<String, Vec<Matcher>>,
    /// Emit per-process metrics as well as per-group ones.
    #[serde(default = "default_true")]
    pub per_process: bool,
}

fn default_true() -> bool {
    true
}

/// How one matcher of a group recognises a process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Matcher {
    /// The name equals it exactly, or the command line contains it.
    Plain(String),
    /// One of the explicit forms.
    Explicit(ExplicitMatcher),
}

/// A matcher that says what it looks at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum ExplicitMatcher {
    /// The process name equals it exactly.
    Name(String),
    /// The command line (arguments joined by spaces) contains it.
    Cmdline(String),
    /// The regular expression matches the command line.
    Regex(String),
}

/// A matcher ready to use (its regex compiled).
#[derive(Debug, Clone)]
enum Compiled {
    NameOrCmdline(String),
    Name(String),
    Cmdline(String),
    Regex(Regex),
}

impl Compiled {
    fn matches(&self, name: &str, cmdline: &str) -> bool {
        match self {
            Compiled::NameOrCmdline(s) => name == s || cmdline.contains(s.as_str()),
            Compiled::Name(s) => name == s,
            Compiled::Cmdline(s) => cmdline.contains(s.as_str()),
            Compiled::Regex(re) => re.is_match(cmdline),
        }
    }
}

/// The configured groups, compiled.
#[derive(Debug, Clone)]
pub struct Groups {
    groups: Vec<(String, Vec<Compiled>)>,
}

impl Groups {
    /// Checks and compiles `config`; the error says which group and matcher is wrong.
    pub fn compile(config: &Config) -> Result<Groups, String> {
        if config.groups.is_empty() {
            return Err("`groups` needs at least one group".to_string());
        }
        let mut groups = Vec::new();
        for (group, matchers) in &config.groups {
            if group.is_empty() {
                return Err("a group name is empty".to_string());
            }
            if matchers.is_empty() {
                return Err(format!("group `{group}` has no matchers"));
            }
            let mut compiled = Vec::new();
            for m in matchers {
                compiled.push(match m {
                    Matcher::Plain(s) | Matcher::Explicit(ExplicitMatcher::Cmdline(s))
                        if s.is_empty() =>
                    {
                        // An empty substring matches every process: surely a mistake.
                        return Err(format!("group `{group}` has an empty matcher"));
                    }
                    Matcher::Plain(s) => Compiled::NameOrCmdline(s.clone()),
                    Matcher::Explicit(ExplicitMatcher::Name(s)) => Compiled::Name(s.clone()),
                    Matcher::Explicit(ExplicitMatcher::Cmdline(s)) => Compiled::Cmdline(s.clone()),
                    Matcher::Explicit(ExplicitMatcher::Regex(re)) => Compiled::Regex(
                        Regex::new(re)
                            .map_err(|e| format!("group `{group}`: invalid regex `{re}`: {e}"))?,
                    ),
                });
            }
            groups.push((group.clone(), compiled));
        }
        Ok(Groups { groups })
    }

    /// The names of the groups `process` belongs to, in name order.
    pub fn groups_of<'a>(&'a self, process: &Process) -> Vec<&'a str> {
        let cmdline = process.cmd.join(" ");
        self.groups
            .iter()
            .filter(|(_, ms)| ms.iter().any(|m| m.matches(&process.name, &cmdline)))
            .map(|(g, _)| g.as_str())
            .collect()
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|(g, _)| g.as_str())
    }
}

/// A process as the plugin recognises it across collections: a pid is reused by the
/// kernel, a pid with its start time is not.
type Identity = (u32, u64);

/// What the plugin remembers of a process between collections.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    read_bytes: u64,
    written_bytes: u64,
    run_time_seconds: u64,
    at_ms: i64,
}

/// A watched process that was gone at a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// The group it belonged to.
    pub group: String,
    /// Its name.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// How long it had run when it was last seen, in seconds.
    pub runtime_seconds: u64,
    /// How it ended, as far as the plugin could see.
    pub outcome: Outcome,
    /// Why the outcome is unknown although the process was seen dead (its
    /// `/proc/PID/stat` could not be read or had no status); `None` otherwise.
    pub unknown_because: Option<String>,
}

impl Exit {
    /// The line written to the engine's log:
    /// `process exited: group=madmax name=chia_plot pid=4242 runtime_seconds=3605
    /// outcome=signal signal=9 signal_name=SIGKILL`.
    pub fn log_line(&self) -> String {
        let mut line = format!(
            "process exited: group={} name={} pid={} runtime_seconds={} {}",
            self.group, self.name, self.pid, self.runtime_seconds, self.outcome
        );
        if let Some(why) = &self.unknown_because {
            line.push_str(" (");
            line.push_str(why);
            line.push(')');
        }
        line
    }

    /// Whether it ended badly, or might have: every outcome but a clean exit.
    pub fn is_failure(&self) -> bool {
        self.outcome != Outcome::Clean
    }
}

/// The result of one collection.
#[derive(Debug, Default)]
pub struct Collection {
    /// The samples to report.
    pub samples: Vec<Sample>,
    /// The watched processes that exited since the previous collection.
    pub exits: Vec<Exit>,
}

/// What the plugin keeps between collections.
#[derive(Debug, Default)]
pub struct State {
    /// Whether a collection happened before (group rates start from the second).
    collected: bool,
    /// Group → its members at the previous collection.
    members: BTreeMap<String, HashMap<Identity, Seen>>,
    /// Group → exits counted so far.
    exits_total: BTreeMap<String, u64>,
    /// (group, outcome label) → exits counted so far.
    exits_by_outcome: BTreeMap<(String, &'static str), u64>,
    /// (group, name) → runtime and outcome of the last member of that name that exited.
    last_exit: BTreeMap<(String, String), (u64, Outcome)>,
    /// (group, process) of the zombies at the previous collection: their exits are
    /// counted (or, at the first collection, predate the plugin), so the next sightings
    /// and their disappearance are not counted again.
    zombies: HashSet<(String, Identity)>,
}

/// Sums over the members of one group.
#[derive(Debug, Default)]
struct Sums {
    count: u64,
    cpu: f64,
    rss: u64,
    vms: u64,
    read: u64,
    written: u64,
    read_rate: f64,
    written_rate: f64,
    threads: u64,
    fds: Option<u64>,
}

impl State {
    /// Collects from `table` (the host's process list) taken at `now_ms`. `read_stat`
    /// returns the text of `/proc/PID/stat` (or why it cannot), read for each watched
    /// process that is a zombie the first time it is seen as one.
    pub fn collect(
        &mut self,
        groups: &Groups,
        per_process: bool,
        table: &[Process],
        now_ms: i64,
        read_stat: &mut dyn FnMut(u32) -> Result<String, String>,
    ) -> Collection {
        let mut out = Collection::default();
        let mut current: BTreeMap<String, HashMap<Identity, Seen>> = groups
            .names()
            .map(|g| (g.to_string(), HashMap::new()))
            .collect();
        let mut sums: BTreeMap<String, Sums> = groups
            .names()
            .map(|g| (g.to_string(), Sums::default()))
            .collect();

        let mut zombies: HashSet<(String, Identity)> = HashSet::new();
        for p in table {
            let id = (p.pid, p.start_time_seconds);
            if p.status == ZOMBIE {
                self.dead(groups, p, id, &mut zombies, &mut out, read_stat);
                continue;
            }
            let in_groups = groups.groups_of(p);
            if in_groups.is_empty() {
                continue;
            }
            for group in in_groups {
                let previous = self.members.get(group).and_then(|m| m.get(&id));
                let rates = previous.and_then(|prev| {
                    let dt = (now_ms - prev.at_ms) as f64 / 1000.0;
                    // Counters that went backwards mean the figure became unreadable (or
                    // a bug); no rate rather than a nonsense one.
                    (dt > 0.0
                        && p.read_bytes >= prev.read_bytes
                        && p.written_bytes >= prev.written_bytes)
                        .then(|| {
                            (
                                (p.read_bytes - prev.read_bytes) as f64 / dt,
                                (p.written_bytes - prev.written_bytes) as f64 / dt,
                            )
                        })
                });
                let s = sums.entry(group.to_string()).or_default();
                s.count += 1;
                s.cpu += f64::from(p.cpu_percent);
                s.rss += p.rss_bytes;
                s.vms += p.virtual_bytes;
                s.read += p.read_bytes;
                s.written += p.written_bytes;
                if let Some((r, w)) = rates {
                    s.read_rate += r;
                    s.written_rate += w;
                }
                s.threads += u64::from(p.threads.unwrap_or(0));
                if let Some(fds) = p.open_fds {
                    s.fds = Some(s.fds.unwrap_or(0) + u64::from(fds));
                }
                if per_process {
                    out.samples.extend(process_samples(group, p, rates, now_ms));
                }
                current.entry(group.to_string()).or_default().insert(
                    id,
                    Seen {
                        name: p.name.clone(),
                        read_bytes: p.read_bytes,
                        written_bytes: p.written_bytes,
                        run_time_seconds: p.run_time_seconds,
                        at_ms: now_ms,
                    },
                );
            }
        }

        // Exits not seen dead: a member of the previous collection that is neither
        // running nor a zombie now was reaped in between; how it ended is unknown.
        let mut vanished: Vec<Exit> = Vec::new();
        for (group, before) in &self.members {
            let now = current.get(group);
            let mut gone: Vec<(&Identity, &Seen)> = before
                .iter()
                .filter(|(id, _)| {
                    now.is_none_or(|m| !m.contains_key(*id))
                        && !zombies.contains(&(group.clone(), **id))
                })
                .collect();
            gone.sort_by_key(|(id, _)| **id);
            for ((pid, _), seen) in gone {
                vanished.push(Exit {
                    group: group.clone(),
                    name: seen.name.clone(),
                    pid: *pid,
                    runtime_seconds: seen.run_time_seconds,
                    outcome: Outcome::Unknown,
                    unknown_because: None,
                });
            }
        }
        for exit in vanished {
            self.count(exit, &mut out);
        }

        for (group, s) in &sums {
            let g = |name: &str, value: f64| {
                sample(name, value)
                    .label("group", group.as_str())
                    .at(now_ms)
            };
            out.samples.push(g("process_group_count", s.count as f64));
            out.samples.push(g("process_group_cpu_percent", s.cpu));
            out.samples
                .push(g("process_group_memory_rss_bytes", s.rss as f64));
            out.samples
                .push(g("process_group_memory_virtual_bytes", s.vms as f64));
            out.samples
                .push(g("process_group_read_bytes_total", s.read as f64));
            out.samples
                .push(g("process_group_written_bytes_total", s.written as f64));
            if self.collected {
                out.samples
                    .push(g("process_group_read_bytes_per_second", s.read_rate));
                out.samples
                    .push(g("process_group_written_bytes_per_second", s.written_rate));
            }
            out.samples
                .push(g("process_group_threads", s.threads as f64));
            if let Some(fds) = s.fds {
                out.samples.push(g("process_group_open_fds", fds as f64));
            }
            let exits = self.exits_total.get(group).copied().unwrap_or(0);
            out.samples
                .push(g("process_group_exits_total", exits as f64));
            for outcome in Outcome::LABELS {
                let n = self
                    .exits_by_outcome
                    .get(&(group.clone(), outcome))
                    .copied()
                    .unwrap_or(0);
                out.samples.push(
                    sample("process_group_exits_by_outcome_total", n as f64)
                        .label("group", group.as_str())
                        .label("outcome", outcome)
                        .at(now_ms),
                );
            }
        }
        for ((group, name), (runtime, outcome)) in &self.last_exit {
            let s = |metric: &str, value: f64| {
                sample(metric, value)
                    .label("group", group.as_str())
                    .label("name", name.as_str())
                    .at(now_ms)
            };
            out.samples
                .push(s("process_last_exit_runtime_seconds", *runtime as f64));
            if let Some(code) = outcome.code() {
                out.samples
                    .push(s("process_last_exit_code", f64::from(code)));
            }
            if let Some(signal) = outcome.signal() {
                out.samples
                    .push(s("process_last_exit_signal", f64::from(signal)));
            }
        }

        self.members = current;
        self.zombies = zombies;
        self.collected = true;
        out
    }
}

impl State {
    /// A zombie in the table: the exit of a watched process, counted the first time it is
    /// seen dead with the status the kernel keeps for it. It belongs to the groups its
    /// name and command line match and to those it was a member of when last seen running
    /// (the command line of a process first seen dead is empty). A zombie already there
    /// at the plugin's first collection died before the plugin watched it: not counted.
    fn dead(
        &mut self,
        groups: &Groups,
        p: &Process,
        id: Identity,
        zombies: &mut HashSet<(String, Identity)>,
        out: &mut Collection,
        read_stat: &mut dyn FnMut(u32) -> Result<String, String>,
    ) {
        let mut in_groups: Vec<String> = groups
            .groups_of(p)
            .into_iter()
            .map(str::to_string)
            .collect();
        for (group, members) in &self.members {
            if members.contains_key(&id) && !in_groups.contains(group) {
                in_groups.push(group.clone());
            }
        }
        in_groups.sort();
        let mut read: Option<(Outcome, Option<String>)> = None;
        for group in in_groups {
            let key = (group, id);
            let already = self.zombies.contains(&key) || !self.collected;
            let seen = self.members.get(&key.0).and_then(|m| m.get(&id));
            if !already {
                let (outcome, unknown_because) = read
                    .get_or_insert_with(|| outcome_from_stat(p.pid, read_stat))
                    .clone();
                let exit = Exit {
                    group: key.0.clone(),
                    name: seen.map_or_else(|| p.name.clone(), |s| s.name.clone()),
                    pid: p.pid,
                    // A zombie's run time keeps growing; the last figure seen running is
                    // its real one.
                    runtime_seconds: seen.map_or(p.run_time_seconds, |s| s.run_time_seconds),
                    outcome,
                    unknown_because,
                };
                self.count(exit, out);
            }
            zombies.insert(key);
        }
    }

    /// Counts `exit` in the totals and the last-exit figures, and reports it.
    fn count(&mut self, exit: Exit, out: &mut Collection) {
        *self.exits_total.entry(exit.group.clone()).or_default() += 1;
        *self
            .exits_by_outcome
            .entry((exit.group.clone(), exit.outcome.label()))
            .or_default() += 1;
        self.last_exit.insert(
            (exit.group.clone(), exit.name.clone()),
            (exit.runtime_seconds, exit.outcome),
        );
        out.exits.push(exit);
    }
}

/// How the zombie `pid` ended, from its `/proc/PID/stat`, with the reason when that
/// cannot be told.
fn outcome_from_stat(
    pid: u32,
    read_stat: &mut dyn FnMut(u32) -> Result<String, String>,
) -> (Outcome, Option<String>) {
    let why = match read_stat(pid).map(|text| parse_stat(&text)) {
        Ok(Some(StatExit::Dead(outcome))) => return (outcome, None),
        Ok(Some(StatExit::DeadWithoutStatus)) => {
            "this kernel's /proc/PID/stat has no exit status (Linux 3.5 or later has)".to_string()
        }
        Ok(Some(StatExit::NotDead)) => "reaped before its status was read".to_string(),
        Ok(None) => format!("/proc/{pid}/stat is not a stat line"),
        Err(e) => format!("cannot read /proc/{pid}/stat: {e}"),
    };
    (Outcome::Unknown, Some(why))
}

/// The per-process samples of `p` as a member of `group`.
fn process_samples(
    group: &str,
    p: &Process,
    rates: Option<(f64, f64)>,
    now_ms: i64,
) -> Vec<Sample> {
    let pid = p.pid.to_string();
    let s = |name: &str, value: f64| {
        sample(name, value)
            .label("group", group)
            .label("pid", pid.as_str())
            .label("name", p.name.as_str())
            .at(now_ms)
    };
    let mut out = vec![
        s("process_cpu_percent", f64::from(p.cpu_percent)),
        s("process_memory_rss_bytes", p.rss_bytes as f64),
        s("process_memory_virtual_bytes", p.virtual_bytes as f64),
        s("process_read_bytes_total", p.read_bytes as f64),
        s("process_written_bytes_total", p.written_bytes as f64),
        s("process_start_time_seconds", p.start_time_seconds as f64),
        s("process_run_time_seconds", p.run_time_seconds as f64),
    ];
    if let Some((r, w)) = rates {
        out.push(s("process_read_bytes_per_second", r));
        out.push(s("process_written_bytes_per_second", w));
    }
    if let Some(t) = p.threads {
        out.push(s("process_threads", f64::from(t)));
    }
    if let Some(f) = p.open_fds {
        out.push(s("process_open_fds", f64::from(f)));
    }
    out
}
