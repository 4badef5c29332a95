//! The plugin's logic as pure functions over a process table: matching processes to
//! groups, per-process byte rates, group sums and exit detection. Nothing here calls the
//! host, so native tests drive it with synthetic tables.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde::Deserialize;
use telltale_sdk::processes::Process;
use telltale_sdk::{Sample, sample};

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
}

impl Exit {
    /// The line written to the engine's log.
    pub fn log_line(&self) -> String {
        format!(
            "process exited: group={} name={} pid={} runtime_seconds={}",
            self.group, self.name, self.pid, self.runtime_seconds
        )
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
    /// (group, name) → runtime of the last member of that name that exited.
    last_exit_runtime: BTreeMap<(String, String), u64>,
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
    /// Collects from `table` (the host's process list) taken at `now_ms`.
    pub fn collect(
        &mut self,
        groups: &Groups,
        per_process: bool,
        table: &[Process],
        now_ms: i64,
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

        for p in table {
            let in_groups = groups.groups_of(p);
            if in_groups.is_empty() {
                continue;
            }
            let id = (p.pid, p.start_time_seconds);
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

        // Exits: a member of the previous collection that is not in this one.
        for (group, before) in &self.members {
            let now = current.get(group);
            let mut gone: Vec<(&Identity, &Seen)> = before
                .iter()
                .filter(|(id, _)| now.is_none_or(|m| !m.contains_key(*id)))
                .collect();
            gone.sort_by_key(|(id, _)| **id);
            for ((pid, _), seen) in gone {
                *self.exits_total.entry(group.clone()).or_default() += 1;
                self.last_exit_runtime
                    .insert((group.clone(), seen.name.clone()), seen.run_time_seconds);
                out.exits.push(Exit {
                    group: group.clone(),
                    name: seen.name.clone(),
                    pid: *pid,
                    runtime_seconds: seen.run_time_seconds,
                });
            }
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
        }
        for ((group, name), runtime) in &self.last_exit_runtime {
            out.samples.push(
                sample("process_last_exit_runtime_seconds", *runtime as f64)
                    .label("group", group.as_str())
                    .label("name", name.as_str())
                    .at(now_ms),
            );
        }

        self.members = current;
        self.collected = true;
        out
    }
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
