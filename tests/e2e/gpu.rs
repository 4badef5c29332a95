//! The `gpu` collector end to end on a machine without an NVIDIA driver or library (these
//! machines): the real binary, the embedded plugin, the real NVML load failing.
//!
//! * `telltale plugin run gpu --grant gpu` prints the "unavailable" reason once and exits 0
//!   with no samples;
//! * `telltale run` with the gpu and system collectors: the system collector keeps
//!   collecting, the gpu collector stays `running` with only successful calls (no backoff,
//!   no quarantine), and the log has exactly one "unavailable" line. A rule over both
//!   (the system's memory and the gpu plugin's own call counters) fires to a loopback
//!   webhook, which proves the pipeline kept going.

use std::path::Path;
use std::time::Duration;

use crate::support::{Engine, Receiver, telltale};

const WAIT: Duration = Duration::from_secs(60);

/// Skips the test (with a note) where an NVIDIA driver exists: these tests are about its
/// absence.
fn has_nvidia_driver() -> bool {
    let present = Path::new("/proc/driver/nvidia").exists();
    if present {
        eprintln!("skipped: this machine has an NVIDIA driver");
    }
    present
}

#[test]
fn plugin_run_reports_unavailable_once_and_succeeds() {
    if has_nvidia_driver() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = telltale()
        .args([
            "plugin",
            "run",
            "gpu",
            "--grant",
            "gpu",
            "--count",
            "2",
            "--interval",
            "100ms",
            "--json",
        ])
        .env("XDG_DATA_HOME", dir.path())
        .env("RUST_LOG", "info")
        .output()
        .expect("run telltale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    assert!(out.status.success(), "exit {}:\n{all}", out.status);
    assert_eq!(
        all.matches("unavailable: NVML library not found (libnvidia-ml.so.1)")
            .count(),
        1,
        "the reason, once:\n{all}"
    );
    assert!(
        !stdout.contains("\"name\""),
        "no samples without a GPU:\n{stdout}"
    );

    // Without the grant it is refused, naming the grant.
    let refused = telltale()
        .args(["plugin", "run", "gpu"])
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .expect("run telltale");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("gpu: true"), "{err}");
}

#[test]
fn run_without_gpu_leaves_everything_else_undisturbed() {
    if has_nvidia_driver() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    // Fires once the system collector has reported memory and the gpu collector has had
    // at least 3 successful calls, none failed, and is running.
    std::fs::write(
        dir.path().join("rules/both.rhai"),
        r#"const RULE = #{ name: "both_collecting", severity: "info" };
fn evaluate() {
    let mem = metric("system_memory_total_bytes");
    let ok = metric("telltale_plugin_calls_total", #{ plugin: "gpu", outcome: "ok" });
    let bad = metric("telltale_plugin_calls_total", #{ plugin: "gpu", outcome: "error" });
    let up = metric("telltale_plugin_state", #{ plugin: "gpu", state: "running" });
    if mem == () || ok == () || bad == () || up == () { return []; }
    if mem > 0.0 && ok >= 3.0 && bad == 0.0 && up == 1.0 { alert(ok) } else { [] }
}
"#,
    )
    .unwrap();
    let config = dir.path().join("telltale.yaml");
    std::fs::write(
        &config,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 2s
collectors:
  - name: gpu
    plugin: gpu
    interval: 200ms
    grants: {{ gpu: true }}
  - name: system
    plugin: system
    interval: 200ms
    grants: {{ system: true, files: [/proc, /sys] }}
rules:
  dir: rules
notifiers:
  - name: hook
    kind: webhook
    url: {}
    timeout: 2s
    initial_backoff: 100ms
    max_backoff: 500ms
"#,
            receiver.url
        ),
    )
    .unwrap();
    let mut engine = Engine::start(&["run", "-c", config.to_str().unwrap()], dir.path(), &[]);
    let firing = receiver.wait_for(WAIT, "the both_collecting alert", |r| {
        let body = r.json();
        body["status"] == "firing" && body["alert"]["rule"] == "both_collecting"
    });
    assert!(firing.json()["alert"]["value"].as_f64().unwrap_or(0.0) >= 3.0);
    // Let it run a while longer: still one line, still no state change.
    std::thread::sleep(Duration::from_millis(1500));
    let out = engine.output();
    assert!(engine.running(), "telltale exited:\n{out}");
    assert_eq!(
        out.matches("unavailable: ").count(),
        1,
        "exactly one unavailable line:\n{out}"
    );
    assert!(
        out.contains("unavailable: NVML library not found (libnvidia-ml.so.1)"),
        "{out}"
    );
    for bad in [
        "collector `gpu`: running -> backing_off",
        "collector `gpu`: backing_off",
        "quarantined",
    ] {
        assert!(!out.contains(bad), "`{bad}` in:\n{out}");
    }
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit {status}:\n{}", engine.output());
}
