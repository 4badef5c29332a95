//! How a watched process ended, with the real binary: a Python parent forks children that
//! end with `exit 3`, by `SIGKILL`, and one it reaps at once, and leaves the first two
//! unreaped (zombies) for a few seconds. The process collector reads their status from
//! `/proc/PID/stat` and counts each exit by outcome; rules turn the figures into alerts
//! on a loopback webhook, which is how the test reads them back. The same config shows
//! the default rules loading beside `rules.dir`'s, one of them replaced by name.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::worker_name;
use crate::support::{Engine, Receiver, telltale};
use crate::{SECRET, WAIT, is_status, write_config};

/// The parent: three children renamed (`comm`) `NAMEe`, `NAMEk` and `NAMEr`, each alive
/// for a while so that the collector sees it run. `e` exits with status 3 and `k` is
/// killed by SIGKILL; both stay zombies until the parent reaps them 8 s after the fork.
/// `r` exits with status 5 and a thread reaps it at once: its status is never visible.
const PARENT: &str = r#"
import os, sys, threading, time
name = sys.argv[1]

def child(suffix, alive, end):
    pid = os.fork()
    if pid == 0:
        with open("/proc/self/comm", "w") as f:
            f.write(name + suffix)
        time.sleep(alive)
        end()
    return pid

e = child("e", 1.5, lambda: os._exit(3))
k = child("k", 2.0, lambda: os.kill(os.getpid(), 9))
r = child("r", 2.5, lambda: os._exit(5))
threading.Thread(target=os.waitpid, args=(r, 0)).start()
time.sleep(8)
os.waitpid(e, 0)
os.waitpid(k, 0)
"#;

/// One alert per outcome counted so far (value: the count) and per last exit code or
/// signal (value: the code or signal, labels `detail` and `name`).
const OUTCOMES_RULE: &str = r#"
const RULE = #{ name: "exit_outcomes", severity: "warning" };
fn evaluate() {
    let out = [];
    for s in series("process_group_exits_by_outcome_total", #{ group: "zx" }) {
        if s.value > 0.0 { out.push(alert(s.value, #{ outcome: s.labels.outcome })); }
    }
    for s in series("process_last_exit_code", #{ group: "zx" }) {
        out.push(alert(s.value, #{ detail: "code", name: s.labels.name }));
    }
    for s in series("process_last_exit_signal", #{ group: "zx" }) {
        out.push(alert(s.value, #{ detail: "signal", name: s.labels.name }));
    }
    out
}
"#;

/// Fires once the collector has reported the group (empty at first).
const COLLECTING_RULE: &str = r#"
const RULE = #{ name: "zx_collected", severity: "info" };
fn evaluate() {
    if metric("process_group_count", #{ group: "zx" }) != () { alert(1.0) } else { [] }
}
"#;

/// Named like a default rule: replaces it. Never fires.
const HIGH_LOAD_RULE: &str = r#"
const RULE = #{ name: "high_load", severity: "warning" };
fn evaluate() { [] }
"#;

/// Kills and reaps the parent if the test stops early.
struct Parent(Child);

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exits_are_counted_by_outcome_while_zombies_show_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let name = worker_name("zx");
    let config = write_config(
        dir.path(),
        &receiver.url,
        &format!(
            "  - name: procs\n    plugin: process\n    interval: 200ms\n    grants:\n      \
             processes: true\n      files: [/proc]\n    config:\n      groups:\n        \
             zx: [{{name: {name}e}}, {{name: {name}k}}, {{name: {name}r}}]\n"
        ),
    );
    std::fs::write(dir.path().join("rules/outcomes.rhai"), OUTCOMES_RULE).unwrap();
    std::fs::write(dir.path().join("rules/my_load.rhai"), HIGH_LOAD_RULE).unwrap();
    std::fs::write(dir.path().join("rules/collecting.rhai"), COLLECTING_RULE).unwrap();

    // `check` counts the rules: the directory's three and the five defaults less the
    // replaced `high_load`, so 7.
    let checked = telltale()
        .args(["check", "-c", config.to_str().unwrap()])
        .env("XDG_DATA_HOME", dir.path())
        .env("E2E_WEBHOOK_SECRET", SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && stdout.contains(", 7 rule(s),"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );
    engine.wait_output(WAIT, "replaces the default");
    assert!(
        engine.output().contains("rule high_load from ")
            && engine
                .output()
                .contains("my_load.rhai replaces the default"),
        "{}",
        engine.output()
    );
    // The collector has collected before the children start, so it sees them running
    // first (a zombie already there at its first collection would not be counted).
    receiver.wait_for(WAIT, "zx_collected firing", |r| {
        is_status(r, "firing") && r.json()["alert"]["rule"] == "zx_collected"
    });
    let parent = Parent(
        Command::new("python3")
            .args(["-c", PARENT, &name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the parent"),
    );

    let fired = |labels: &[(&str, &str)]| {
        let what = format!("exit_outcomes firing with {labels:?}");
        receiver
            .wait_for(WAIT, &what, |r| {
                let body = r.json();
                is_status(r, "firing")
                    && body["alert"]["rule"] == "exit_outcomes"
                    && labels
                        .iter()
                        .all(|(k, v)| body["alert"]["labels"][*k] == *v)
            })
            .json()["alert"]["value"]
            .clone()
    };
    // One exit of each outcome the children were made to have.
    assert_eq!(fired(&[("outcome", "error")]), 1.0);
    assert_eq!(fired(&[("outcome", "signal")]), 1.0);
    assert_eq!(fired(&[("outcome", "unknown")]), 1.0);
    let e = format!("{name}e");
    let k = format!("{name}k");
    assert_eq!(fired(&[("detail", "code"), ("name", e.as_str())]), 3.0);
    assert_eq!(fired(&[("detail", "signal"), ("name", k.as_str())]), 9.0);

    let out = engine.output();
    for needle in [
        format!("name={name}e pid="),
        "outcome=error exit_code=3".to_string(),
        format!("name={name}k pid="),
        "outcome=signal signal=9 signal_name=SIGKILL".to_string(),
        format!("name={name}r pid="),
    ] {
        assert!(out.contains(&needle), "no `{needle}` in the log:\n{out}");
    }
    let reaped_line = out
        .lines()
        .find(|l| l.contains(&format!("name={name}r pid=")))
        .expect("the reaped child's exit line");
    assert!(reaped_line.contains("outcome=unknown"), "{reaped_line}");
    // No clean exit happened: that outcome never fired.
    assert!(
        !receiver
            .all()
            .iter()
            .any(|r| r.json()["alert"]["labels"]["outcome"] == "clean"),
        "a clean exit was counted"
    );
    drop(parent);
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
}
