//! The standard `process` collector with the real binary: following a child process this
//! test starts and kills (`telltale run` with rules firing to a loopback webhook), and
//! `telltale plugin run process` listing it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Engine, Receiver, telltale};
use crate::{SECRET, WAIT, is_status, write_config};

/// A `sleep 1000` started from a copy of the `sleep` binary with a distinctive name, so
/// its process name (`comm`) is that name. Killed when dropped.
pub(crate) struct Worker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Worker {
    /// Starts the worker under the process name `name` (at most 15 bytes: Linux's `comm`).
    pub(crate) fn start(name: &str) -> Worker {
        assert!(name.len() <= 15, "Linux cuts process names to 15 bytes");
        let dir = tempfile::tempdir().expect("temp dir");
        let sleep = which_sleep();
        let exe: PathBuf = dir.path().join(name);
        std::fs::copy(&sleep, &exe).expect("copy the sleep binary");
        let child = Command::new(&exe)
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the worker");
        Worker { child, _dir: dir }
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it and reaps it (so it is gone from the process table, not a zombie).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn which_sleep() -> PathBuf {
    ["/bin/sleep", "/usr/bin/sleep"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("a sleep binary in /bin or /usr/bin")
        .to_path_buf()
}

/// A worker name unique to this test run and `role`: tests run in parallel (here and in
/// other checkouts on the same machine) and each must see only its own worker.
pub(crate) fn worker_name(role: &str) -> String {
    format!("tt{role}{}", std::process::id())
}

const RUNNING_RULE: &str = r#"// fires while the worker group has exactly one process
const RULE = #{ name: "worker_running", severity: "info", summary: "the worker runs" };
fn evaluate() {
    let n = metric("process_group_count", #{ group: "worker" });
    if n == 1.0 { alert(n) } else { [] }
}
"#;

const CRASHED_RULE: &str = r#"// a critical process has crashed: none left, or one exited
const RULE = #{ name: "worker_crashed", severity: "critical", summary: "the worker crashed" };
fn evaluate() {
    let n = metric("process_group_count", #{ group: "worker" });
    let exits = metric("process_group_exits_total", #{ group: "worker" });
    if n == () || exits == () { return []; }
    if n == 0.0 || exits > 0.0 { alert(exits, #{ group: "worker" }) } else { [] }
}
"#;

#[test]
fn run_follows_a_child_process_and_alerts_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let worker_name = worker_name("run");
    let mut worker = Worker::start(&worker_name);
    let config = write_config(
        dir.path(),
        &receiver.url,
        &format!(
            "  - name: procs\n    plugin: process\n    interval: 200ms\n    grants:\n      processes: true\n      files: [/proc]\n    config:\n      groups:\n        worker: [{{name: {worker_name}}}]\n"
        ),
    );
    std::fs::write(dir.path().join("rules/running.rhai"), RUNNING_RULE).unwrap();
    std::fs::write(dir.path().join("rules/crashed.rhai"), CRASHED_RULE).unwrap();
    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );

    let running = receiver.wait_for(WAIT, "worker_running firing", |r| {
        is_status(r, "firing") && r.json()["alert"]["rule"] == "worker_running"
    });
    assert_eq!(running.json()["alert"]["value"], 1.0);
    // Let it be seen for a few collections (so its runtime is at least 1 s) before the kill.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !receiver
            .all()
            .iter()
            .any(|r| r.json()["alert"]["rule"] == "worker_crashed"),
        "no crash alert while the worker runs"
    );

    let pid = worker.pid();
    worker.kill();
    let crashed = receiver.wait_for(WAIT, "worker_crashed firing", |r| {
        is_status(r, "firing") && r.json()["alert"]["rule"] == "worker_crashed"
    });
    let body = crashed.json();
    assert_eq!(body["alert"]["severity"], "critical");
    assert_eq!(body["alert"]["value"], 1.0, "one exit counted");
    receiver.wait_for(WAIT, "worker_running resolved", |r| {
        is_status(r, "resolved") && r.json()["alert"]["rule"] == "worker_running"
    });

    let needle =
        format!("process exited: group=worker name={worker_name} pid={pid} runtime_seconds=");
    let out = engine.wait_output(WAIT, &needle);
    let line = out
        .lines()
        .find(|l| l.contains(&needle))
        .expect("the exit line");
    let runtime: u64 = line
        .split("runtime_seconds=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no runtime in {line}"));
    assert!(
        (1..60).contains(&runtime),
        "runtime {runtime}s for a worker that ran a few seconds: {line}"
    );
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
}

#[test]
fn plugin_run_lists_the_child_process() {
    let listed = worker_name("ls");
    let worker = Worker::start(&listed);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(r#"{{"groups": {{"worker": [{{"name": "{listed}"}}]}}}}"#);
    let out = telltale()
        .args([
            "plugin",
            "run",
            "process",
            "--grant",
            "processes",
            "--grant",
            "files=/proc",
        ])
        .args(["--config", &config, "--count", "1", "--json"])
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let find = |name: &str| {
        samples
            .iter()
            .filter(|s| s["name"] == name)
            .collect::<Vec<_>>()
    };
    let count = find("process_group_count");
    assert_eq!(count.len(), 1, "{stdout}");
    assert_eq!(count[0]["value"], 1.0);
    assert_eq!(count[0]["labels"]["group"], "worker");
    let rss = find("process_memory_rss_bytes");
    assert_eq!(rss.len(), 1, "{stdout}");
    assert_eq!(rss[0]["labels"]["pid"], worker.pid().to_string());
    assert_eq!(rss[0]["labels"]["name"], listed.as_str());
    assert!(rss[0]["value"].as_f64().unwrap() > 0.0);
    // Its start time is within the last minute.
    let start = find("process_start_time_seconds")[0]["value"]
        .as_f64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&start),
        "start {start}, now {now}"
    );
}
