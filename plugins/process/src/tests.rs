//! Native tests over synthetic process tables: matching, config errors, rates across
//! collections, pid reuse and exit detection.

use telltale_sdk::processes::Process;
use telltale_sdk::{Collector, PluginError, Sample, Samples};

use super::*;
use crate::exit::{StatExit, parse_stat};
use crate::groups::{Exit, Groups};

/// A stat reader for tables without zombies: never called.
fn no_stat(pid: u32) -> Result<String, String> {
    panic!("/proc/{pid}/stat read for a table without zombies")
}

fn proc(pid: u32, name: &str, cmd: &str) -> Process {
    Process {
        pid,
        parent_pid: Some(1),
        name: name.to_string(),
        cmd: cmd.split_whitespace().map(str::to_string).collect(),
        exe: None,
        status: "Sleep".to_string(),
        cpu_percent: 0.0,
        cpu_time_ms: 0,
        rss_bytes: 1000,
        virtual_bytes: 5000,
        read_bytes: 0,
        written_bytes: 0,
        threads: Some(2),
        open_fds: Some(4),
        start_time_seconds: 1_700_000_000 + u64::from(pid),
        run_time_seconds: 10,
        user_id: Some(1000),
    }
}

fn groups(json: &str) -> Groups {
    let config: Config = telltale_sdk::parse_config(json).expect("config parses");
    Groups::compile(&config).expect("config compiles")
}

fn chia_groups() -> Groups {
    groups(r#"{"groups": {"madmax": ["chia_plot"], "bladebit": ["bladebit"], "chia": ["chia "]}}"#)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.name == *k && l.value == *v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} is ambiguous: {found:?}");
    found.first().copied()
}

#[test]
fn plain_matchers_take_the_exact_name_or_a_command_line_substring() {
    let g = chia_groups();
    assert_eq!(
        g.groups_of(&proc(1, "chia_plot", "./chia_plot -n 1")),
        ["madmax"]
    );
    assert_eq!(
        g.groups_of(&proc(2, "bladebit", "/opt/bladebit -t 8 diskplot")),
        ["bladebit"]
    );
    // The `chia` daemons run as python with `chia start ...` on the command line.
    assert_eq!(
        g.groups_of(&proc(
            3,
            "python3",
            "/venv/bin/python3 /venv/bin/chia start farmer"
        )),
        ["chia"],
        "`chia ` needs the space after it: `/venv/bin/chia start` has it"
    );
    assert_eq!(g.groups_of(&proc(3, "chia", "chia start farmer")), ["chia"]);
    // `chia_plot` must not land in `chia` (no space) and a bare name is not a substring.
    assert_eq!(g.groups_of(&proc(4, "chia_plot", "chia_plot")), ["madmax"]);
    assert!(g.groups_of(&proc(5, "bash", "bash")).is_empty());
    // A kernel thread: no command line, name only.
    assert_eq!(g.groups_of(&proc(6, "bladebit", "")), ["bladebit"]);
}

#[test]
fn explicit_matchers_look_only_where_they_say() {
    let g = groups(
        r#"{"groups": {
            "byname": [{"name": "worker"}],
            "bycmd": [{"cmdline": "--role worker"}],
            "byre": [{"regex": "^python3? \\S*serve\\.py( |$)"}]
        }}"#,
    );
    assert_eq!(
        g.groups_of(&proc(1, "worker", "x --role other")),
        ["byname"]
    );
    assert_eq!(
        g.groups_of(&proc(2, "python", "x worker")),
        Vec::<&str>::new()
    );
    assert_eq!(
        g.groups_of(&proc(3, "python", "app --role worker")),
        ["bycmd"]
    );
    assert_eq!(
        g.groups_of(&proc(4, "python3", "python3 /srv/serve.py --port 1")),
        ["byre"]
    );
    assert_eq!(
        g.groups_of(&proc(5, "python3", "python /srv/serve.py")),
        ["byre"]
    );
    assert!(
        g.groups_of(&proc(6, "python3", "python3 /srv/serve.pyc"))
            .is_empty()
    );
    assert!(
        g.groups_of(&proc(7, "sh", "sh -c python3 serve.py"))
            .is_empty()
    );
}

#[test]
fn a_process_can_be_in_several_groups() {
    let g = groups(r#"{"groups": {"a": ["plot"], "b": [{"name": "chia_plot"}]}}"#);
    assert_eq!(g.groups_of(&proc(1, "chia_plot", "chia_plot")), ["a", "b"]);
}

#[test]
fn bad_configs_are_refused_with_a_reason() {
    let err = |json: &str| match ProcessCollector::init(json) {
        Err(PluginError::InvalidConfig(m)) => m,
        Err(other) => panic!("{json}: wrong error {other:?}"),
        Ok(_) => panic!("{json}: accepted"),
    };
    assert!(err(r#"{"groups": {}}"#).contains("at least one group"));
    assert!(err(r#"{"groups": {"a": []}}"#).contains("`a` has no matchers"));
    assert!(err(r#"{"groups": {"a": [""]}}"#).contains("empty matcher"));
    assert!(err(r#"{"groups": {"a": [{"regex": "("}]}}"#).contains("invalid regex `(`"));
    err(r#"{"groups": {"a": [{"glob": "x"}]}}"#);
    err(r#"{"groups": {"a": ["x"]}, "per_proces": false}"#);
    err(r#"{}"#);
    assert!(ProcessCollector::init(r#"{"groups": {"a": ["x", {"regex": "y+"}]}}"#).is_ok());
}

#[test]
fn group_and_process_figures_with_rates_from_the_second_collection() {
    let g = chia_groups();
    let mut state = State::default();
    let mut a = proc(100, "chia_plot", "chia_plot -r 4");
    let mut b = proc(101, "chia_plot", "chia_plot -r 4");
    a.cpu_percent = 150.0;
    b.cpu_percent = 50.0;
    a.read_bytes = 1_000;
    a.written_bytes = 10_000;
    let other = proc(200, "sshd", "sshd");

    let first = state.collect(
        &g,
        true,
        &[a.clone(), b.clone(), other.clone()],
        10_000,
        &mut no_stat,
    );
    assert!(first.exits.is_empty());
    let s = &first.samples;
    assert_eq!(
        value(s, "process_group_count", &[("group", "madmax")]),
        Some(2.0)
    );
    assert_eq!(
        value(s, "process_group_count", &[("group", "bladebit")]),
        Some(0.0)
    );
    assert_eq!(
        value(s, "process_group_cpu_percent", &[("group", "madmax")]),
        Some(200.0)
    );
    assert_eq!(
        value(s, "process_group_memory_rss_bytes", &[("group", "madmax")]),
        Some(2000.0)
    );
    assert_eq!(
        value(
            s,
            "process_group_memory_virtual_bytes",
            &[("group", "madmax")]
        ),
        Some(10000.0)
    );
    assert_eq!(
        value(s, "process_group_threads", &[("group", "madmax")]),
        Some(4.0)
    );
    assert_eq!(
        value(s, "process_group_open_fds", &[("group", "madmax")]),
        Some(8.0)
    );
    assert_eq!(
        value(s, "process_group_open_fds", &[("group", "bladebit")]),
        None
    );
    assert_eq!(
        value(
            s,
            "process_group_written_bytes_total",
            &[("group", "madmax")]
        ),
        Some(10000.0)
    );
    assert_eq!(
        value(s, "process_group_exits_total", &[("group", "madmax")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            s,
            "process_cpu_percent",
            &[("pid", "100"), ("group", "madmax"), ("name", "chia_plot")]
        ),
        Some(150.0)
    );
    assert_eq!(
        value(s, "process_start_time_seconds", &[("pid", "100")]),
        Some(1_700_000_100.0)
    );
    assert!(
        s.iter().all(|x| !x.name.ends_with("_per_second")),
        "no rates at first"
    );
    assert!(
        s.iter().all(|x| x.labels.iter().all(|l| l.value != "200")),
        "sshd is unwatched"
    );
    assert!(s.iter().all(|x| x.timestamp_ms == 10_000));

    // Two seconds later: a read 4000 and wrote 1000 more; b did nothing.
    a.read_bytes += 4_000;
    a.written_bytes += 1_000;
    let c = proc(102, "chia_plot", "chia_plot -r 4");
    let second = state.collect(&g, true, &[a.clone(), b.clone(), c], 12_000, &mut no_stat);
    let s = &second.samples;
    assert_eq!(
        value(s, "process_read_bytes_per_second", &[("pid", "100")]),
        Some(2000.0)
    );
    assert_eq!(
        value(s, "process_written_bytes_per_second", &[("pid", "100")]),
        Some(500.0)
    );
    assert_eq!(
        value(s, "process_read_bytes_per_second", &[("pid", "101")]),
        Some(0.0)
    );
    assert_eq!(
        value(s, "process_read_bytes_per_second", &[("pid", "102")]),
        None,
        "new: no rate"
    );
    assert_eq!(
        value(
            s,
            "process_group_read_bytes_per_second",
            &[("group", "madmax")]
        ),
        Some(2000.0)
    );
    assert_eq!(
        value(
            s,
            "process_group_written_bytes_per_second",
            &[("group", "madmax")]
        ),
        Some(500.0)
    );
    assert_eq!(
        value(
            s,
            "process_group_read_bytes_per_second",
            &[("group", "chia")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(s, "process_group_count", &[("group", "madmax")]),
        Some(3.0)
    );

    // Without per-process figures only the group ones remain.
    let third = state.collect(&g, false, &[a, b], 13_000, &mut no_stat);
    assert!(
        third
            .samples
            .iter()
            .all(|x| x.name.starts_with("process_group_")
                || x.name == "process_last_exit_runtime_seconds")
    );
}

#[test]
fn an_exit_is_counted_logged_and_its_runtime_kept() {
    let g = chia_groups();
    let mut state = State::default();
    let mut a = proc(100, "chia_plot", "chia_plot");
    let b = proc(300, "bladebit", "bladebit");
    a.run_time_seconds = 3600;
    state.collect(&g, true, &[a.clone(), b.clone()], 1_000, &mut no_stat);
    a.run_time_seconds = 3605;
    state.collect(&g, true, &[a.clone(), b.clone()], 6_000, &mut no_stat);

    let after = state.collect(&g, true, std::slice::from_ref(&b), 11_000, &mut no_stat);
    assert_eq!(
        after.exits,
        [Exit {
            group: "madmax".to_string(),
            name: "chia_plot".to_string(),
            pid: 100,
            runtime_seconds: 3605,
            // Gone without being seen as a zombie: its parent reaped it in between.
            outcome: Outcome::Unknown,
            unknown_because: None,
        }]
    );
    assert_eq!(
        after.exits[0].log_line(),
        "process exited: group=madmax name=chia_plot pid=100 runtime_seconds=3605 outcome=unknown"
    );
    let s = &after.samples;
    assert_eq!(
        value(s, "process_group_count", &[("group", "madmax")]),
        Some(0.0)
    );
    assert_eq!(
        value(s, "process_group_exits_total", &[("group", "madmax")]),
        Some(1.0)
    );
    assert_eq!(
        value(s, "process_group_exits_total", &[("group", "bladebit")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            s,
            "process_last_exit_runtime_seconds",
            &[("group", "madmax"), ("name", "chia_plot")]
        ),
        Some(3605.0)
    );

    // Counted once: the next collection reports no new exit but keeps the figures.
    let later = state.collect(&g, true, std::slice::from_ref(&b), 16_000, &mut no_stat);
    assert!(later.exits.is_empty());
    assert_eq!(
        value(
            &later.samples,
            "process_group_exits_total",
            &[("group", "madmax")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &later.samples,
            "process_last_exit_runtime_seconds",
            &[("name", "chia_plot")]
        ),
        Some(3605.0)
    );

    // The pid reused by another process (other start time) is an exit of the first one.
    let mut reused = b.clone();
    reused.start_time_seconds += 50;
    let again = state.collect(&g, true, &[reused], 21_000, &mut no_stat);
    assert_eq!(again.exits.len(), 1);
    assert_eq!(again.exits[0].pid, 300);
    assert_eq!(
        value(
            &again.samples,
            "process_group_exits_total",
            &[("group", "bladebit")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &again.samples,
            "process_group_count",
            &[("group", "bladebit")]
        ),
        Some(1.0)
    );
}

#[test]
fn counters_going_backwards_give_no_rate() {
    let g = chia_groups();
    let mut state = State::default();
    let mut a = proc(100, "chia_plot", "chia_plot");
    a.read_bytes = 5_000;
    state.collect(&g, true, &[a.clone()], 1_000, &mut no_stat);
    a.read_bytes = 0; // e.g. the figure became unreadable
    let s = state.collect(&g, true, &[a], 2_000, &mut no_stat).samples;
    assert_eq!(
        value(&s, "process_read_bytes_per_second", &[("pid", "100")]),
        None
    );
    assert_eq!(
        value(
            &s,
            "process_group_read_bytes_per_second",
            &[("group", "madmax")]
        ),
        Some(0.0)
    );
}

#[test]
fn collect_outside_the_host_says_unavailable() {
    let mut c = ProcessCollector::init(r#"{"groups": {"a": ["x"]}}"#).expect("init");
    assert!(matches!(
        c.collect(&mut Samples::new()),
        Err(PluginError::Unavailable(_))
    ));
}

/// A `/proc/PID/stat` line as Linux writes it: pid, name in parentheses, state (field 3),
/// fields 4 to 51 (zeros here), then `exit_code` (field 52) when given.
fn stat_line(pid: u32, name: &str, state: &str, exit_code: Option<u32>) -> String {
    let mut line = format!("{pid} ({name}) {state}");
    for _ in 4..=51 {
        line.push_str(" 0");
    }
    if let Some(code) = exit_code {
        line.push_str(&format!(" {code}"));
    }
    line.push('\n');
    line
}

#[test]
fn wait_statuses_decode_to_outcomes() {
    // waitpid layout: exit status in bits 8..15, terminating signal in bits 0..6, core
    // dump flag in bit 7. So `exit 3` is 3 << 8 = 768, SIGKILL is 9, SIGABRT with a core
    // dump is 6 | 0x80 = 134.
    assert_eq!(Outcome::from_wait_status(0), Outcome::Clean);
    assert_eq!(Outcome::from_wait_status(768), Outcome::Error { code: 3 });
    assert_eq!(
        Outcome::from_wait_status(255 << 8),
        Outcome::Error { code: 255 }
    );
    assert_eq!(
        Outcome::from_wait_status(9),
        Outcome::Signal {
            signal: 9,
            core_dumped: false
        }
    );
    assert_eq!(
        Outcome::from_wait_status(134),
        Outcome::Signal {
            signal: 6,
            core_dumped: true
        }
    );
    // 0x7f is a stopped process's mark, never a dead one's.
    assert_eq!(Outcome::from_wait_status(0x137f), Outcome::Unknown);

    assert_eq!(Outcome::Clean.to_string(), "outcome=clean exit_code=0");
    assert_eq!(
        Outcome::Error { code: 3 }.to_string(),
        "outcome=error exit_code=3"
    );
    assert_eq!(
        Outcome::from_wait_status(9).to_string(),
        "outcome=signal signal=9 signal_name=SIGKILL"
    );
    assert_eq!(
        Outcome::from_wait_status(134).to_string(),
        "outcome=signal signal=6 signal_name=SIGABRT core_dumped=true"
    );
    assert_eq!(
        Outcome::from_wait_status(40).to_string(),
        "outcome=signal signal=40"
    );
}

#[test]
fn stat_lines_give_the_state_and_exit_code() {
    assert_eq!(
        parse_stat(&stat_line(7, "plotter", "Z", Some(768))),
        Some(StatExit::Dead(Outcome::Error { code: 3 }))
    );
    // The name may hold spaces and parentheses: fields count from the last `)`.
    assert_eq!(
        parse_stat(&stat_line(7, "a) Z (b", "Z", Some(9))),
        Some(StatExit::Dead(Outcome::from_wait_status(9)))
    );
    assert_eq!(
        parse_stat(&stat_line(7, "x) Z 1 (y", "S", Some(0))),
        Some(StatExit::NotDead)
    );
    // Before Linux 3.5 the line ends at field 44.
    let mut old = "7 (old) Z".to_string();
    for _ in 4..=44 {
        old.push_str(" 0");
    }
    assert_eq!(parse_stat(&old), Some(StatExit::DeadWithoutStatus));
    assert_eq!(parse_stat("no parenthesis here"), None);
    assert_eq!(
        parse_stat(&stat_line(7, "p", "Z", Some(0)).replace(" 0\n", " x\n")),
        None
    );
}

/// The kernel itself: children of this test left unreaped are zombies whose
/// `/proc/PID/stat` holds the status `wait` would return.
#[cfg(target_os = "linux")]
#[test]
fn a_real_zombie_shows_its_exit_status_until_reaped() {
    use std::process::{Command, Stdio};
    fn zombie_stat(pid: u32) -> StatExit {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
            match parse_stat(&text).expect("a stat line") {
                StatExit::NotDead if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }
    let mut exits3 = Command::new("sh")
        .args(["-c", "exit 3"])
        .stdin(Stdio::null())
        .spawn()
        .expect("sh");
    assert_eq!(
        zombie_stat(exits3.id()),
        StatExit::Dead(Outcome::Error { code: 3 })
    );
    assert_eq!(exits3.wait().expect("reaped").code(), Some(3));

    let mut killed = Command::new("sleep")
        .arg("100")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    killed.kill().expect("SIGKILL");
    assert_eq!(
        zombie_stat(killed.id()),
        StatExit::Dead(Outcome::Signal {
            signal: 9,
            core_dumped: false
        })
    );
    killed.wait().expect("reaped");
}

/// A reader over fixed stat lines that counts how often it is called.
struct Stats {
    lines: Vec<(u32, Result<String, String>)>,
    reads: u32,
}

impl Stats {
    fn new(lines: Vec<(u32, Result<String, String>)>) -> Stats {
        Stats { lines, reads: 0 }
    }

    fn read(&mut self, pid: u32) -> Result<String, String> {
        self.reads += 1;
        self.lines
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, line)| line.clone())
            .unwrap_or_else(|| Err(format!("no such file (pid {pid})")))
    }
}

fn zombie(mut p: Process) -> Process {
    p.status = "Zombie".to_string();
    // A zombie's command line reads empty; its run time keeps growing.
    p.cmd.clear();
    p.run_time_seconds += 100;
    p
}

#[test]
fn a_zombie_is_counted_once_with_its_outcome_and_not_as_running() {
    let g = chia_groups();
    let mut state = State::default();
    let mut a = proc(100, "chia_plot", "chia_plot -n 1");
    a.run_time_seconds = 3600;
    let b = proc(300, "bladebit", "bladebit diskplot");
    let mut stats = Stats::new(vec![
        (100, Ok(stat_line(100, "chia_plot", "Z", Some(3 << 8)))),
        (300, Ok(stat_line(300, "bladebit", "Z", Some(9)))),
    ]);
    let mut read = |pid| stats.read(pid);
    state.collect(&g, true, &[a.clone(), b.clone()], 1_000, &mut read);

    // a died with `exit 3`; its parent has not reaped it yet.
    let second = state.collect(&g, true, &[zombie(a.clone()), b.clone()], 2_000, &mut read);
    assert_eq!(
        second.exits,
        [Exit {
            group: "madmax".to_string(),
            name: "chia_plot".to_string(),
            pid: 100,
            runtime_seconds: 3600,
            outcome: Outcome::Error { code: 3 },
            unknown_because: None,
        }]
    );
    assert!(second.exits[0].is_failure());
    assert_eq!(
        second.exits[0].log_line(),
        "process exited: group=madmax name=chia_plot pid=100 runtime_seconds=3600 outcome=error exit_code=3"
    );
    let s = &second.samples;
    let madmax = [("group", "madmax")];
    assert_eq!(value(s, "process_group_count", &madmax), Some(0.0));
    assert_eq!(value(s, "process_cpu_percent", &[("pid", "100")]), None);
    assert_eq!(value(s, "process_group_exits_total", &madmax), Some(1.0));
    for (outcome, n) in [
        ("clean", 0.0),
        ("error", 1.0),
        ("signal", 0.0),
        ("unknown", 0.0),
    ] {
        assert_eq!(
            value(
                s,
                "process_group_exits_by_outcome_total",
                &[("group", "madmax"), ("outcome", outcome)]
            ),
            Some(n),
            "{outcome}"
        );
    }
    let last = [("group", "madmax"), ("name", "chia_plot")];
    assert_eq!(value(s, "process_last_exit_code", &last), Some(3.0));
    assert_eq!(value(s, "process_last_exit_signal", &last), None);
    assert_eq!(
        value(s, "process_last_exit_runtime_seconds", &last),
        Some(3600.0)
    );

    // Still a zombie, then reaped: neither is a new exit, and the stat is not read again.
    let third = state.collect(&g, true, &[zombie(a.clone()), b.clone()], 3_000, &mut read);
    let fourth = state.collect(&g, true, std::slice::from_ref(&b), 4_000, &mut read);
    assert!(third.exits.is_empty() && fourth.exits.is_empty());
    assert_eq!(
        value(&fourth.samples, "process_group_exits_total", &madmax),
        Some(1.0)
    );

    // b killed by SIGKILL.
    let fifth = state.collect(&g, true, &[zombie(b.clone())], 5_000, &mut read);
    assert_eq!(
        fifth.exits[0].outcome,
        Outcome::Signal {
            signal: 9,
            core_dumped: false
        }
    );
    let last_b = [("group", "bladebit"), ("name", "bladebit")];
    assert_eq!(
        value(&fifth.samples, "process_last_exit_signal", &last_b),
        Some(9.0)
    );
    assert_eq!(
        value(&fifth.samples, "process_last_exit_code", &last_b),
        None
    );
    assert_eq!(
        value(
            &fifth.samples,
            "process_group_exits_by_outcome_total",
            &[("group", "bladebit"), ("outcome", "signal")]
        ),
        Some(1.0)
    );

    assert_eq!(stats.reads, 2, "one read per zombie");
}

#[test]
fn zombies_older_than_the_plugin_are_not_counted_but_new_ones_are() {
    let g = chia_groups();
    let mut state = State::default();
    let old = zombie(proc(100, "chia_plot", ""));
    let mut stats = Stats::new(vec![
        (100, Ok(stat_line(100, "chia_plot", "Z", Some(9)))),
        (200, Ok(stat_line(200, "chia_plot", "Z", Some(0)))),
    ]);
    let mut read = |pid| stats.read(pid);
    let first = state.collect(&g, true, std::slice::from_ref(&old), 1_000, &mut read);
    let second = state.collect(&g, true, std::slice::from_ref(&old), 2_000, &mut read);
    let third = state.collect(&g, true, &[], 3_000, &mut read);
    assert!(first.exits.is_empty() && second.exits.is_empty() && third.exits.is_empty());

    // A plotter that started and ended between two collections is seen only dead (by
    // its name: its command line is empty); it finished cleanly.
    let quick = zombie(proc(200, "chia_plot", ""));
    let fourth = state.collect(&g, true, &[quick], 4_000, &mut read);
    assert_eq!(fourth.exits.len(), 1);
    assert_eq!(fourth.exits[0].outcome, Outcome::Clean);
    assert!(!fourth.exits[0].is_failure());
    let last = [("group", "madmax"), ("name", "chia_plot")];
    assert_eq!(
        value(&fourth.samples, "process_last_exit_code", &last),
        Some(0.0)
    );

    assert_eq!(stats.reads, 1, "the old zombie's stat is never read");
}

#[test]
fn a_zombie_matched_by_its_command_line_stays_in_its_group() {
    // The `chia` group matches `chia start farmer` by command line; dead, the command
    // line reads empty, and membership comes from the previous collection.
    let g = chia_groups();
    let mut state = State::default();
    let farmer = proc(400, "python3", "/venv/bin/chia start farmer");
    let mut stats = Stats::new(vec![(400, Err("`/proc` is not granted".to_string()))]);
    let mut read = |pid| stats.read(pid);
    state.collect(&g, true, std::slice::from_ref(&farmer), 1_000, &mut read);
    let after = state.collect(&g, true, &[zombie(farmer)], 2_000, &mut read);
    assert_eq!(after.exits.len(), 1);
    assert_eq!(after.exits[0].group, "chia");
    assert_eq!(after.exits[0].outcome, Outcome::Unknown);
    assert_eq!(
        after.exits[0].log_line(),
        "process exited: group=chia name=python3 pid=400 runtime_seconds=10 outcome=unknown \
         (cannot read /proc/400/stat: `/proc` is not granted)"
    );
    assert_eq!(
        value(
            &after.samples,
            "process_group_exits_by_outcome_total",
            &[("group", "chia"), ("outcome", "unknown")]
        ),
        Some(1.0)
    );
}
