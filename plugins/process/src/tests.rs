//! Native tests over synthetic process tables: matching, config errors, rates across
//! collections, pid reuse and exit detection.

use telltale_sdk::processes::Process;
use telltale_sdk::{Collector, PluginError, Sample, Samples};

use super::*;
use crate::groups::{Exit, Groups};

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

    let first = state.collect(&g, true, &[a.clone(), b.clone(), other.clone()], 10_000);
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
    let second = state.collect(&g, true, &[a.clone(), b.clone(), c], 12_000);
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
    let third = state.collect(&g, false, &[a, b], 13_000);
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
    state.collect(&g, true, &[a.clone(), b.clone()], 1_000);
    a.run_time_seconds = 3605;
    state.collect(&g, true, &[a.clone(), b.clone()], 6_000);

    let after = state.collect(&g, true, std::slice::from_ref(&b), 11_000);
    assert_eq!(
        after.exits,
        [Exit {
            group: "madmax".to_string(),
            name: "chia_plot".to_string(),
            pid: 100,
            runtime_seconds: 3605,
        }]
    );
    assert_eq!(
        after.exits[0].log_line(),
        "process exited: group=madmax name=chia_plot pid=100 runtime_seconds=3605"
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
    let later = state.collect(&g, true, std::slice::from_ref(&b), 16_000);
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
    let again = state.collect(&g, true, &[reused], 21_000);
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
    state.collect(&g, true, &[a.clone()], 1_000);
    a.read_bytes = 0; // e.g. the figure became unreadable
    let s = state.collect(&g, true, &[a], 2_000).samples;
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
