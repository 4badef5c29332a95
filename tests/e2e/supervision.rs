//! Supervision and plugin reload, end to end: the real binary, the real `hang` and
//! `counter` test plugins, real files replaced on disk, SIGHUP, and rules over Telltale's
//! own `telltale_plugin_*` metrics firing to a loopback webhook receiver.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Engine, Receiver, test_plugin};

const WAIT: Duration = Duration::from_secs(60);

fn is_firing(r: &crate::support::Received, rule: &str) -> bool {
    let body = r.json();
    body["status"] == "firing" && body["alert"]["rule"] == rule
}

fn is_resolved(r: &crate::support::Received, rule: &str) -> bool {
    let body = r.json();
    body["status"] == "resolved" && body["alert"]["rule"] == rule
}

/// A config with one collector entry (`collector`, indented as a list item), fast rule
/// evaluation, a rules dir and an unsigned webhook.
fn write_config(dir: &Path, hook_url: &str, collector: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    let path = dir.join("telltale.yaml");
    std::fs::write(
        &path,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 2s
collectors:
{collector}
rules:
  dir: rules
notifiers:
  - name: hook
    kind: webhook
    url: {hook_url}
    timeout: 2s
    initial_backoff: 100ms
    max_backoff: 500ms
"#
        ),
    )
    .unwrap();
    path
}

/// Copies `from` over `to` the way deploy tools install files: a temporary file in the
/// same directory, renamed over the destination.
fn install_atomically(to: &Path, bytes: &[u8]) {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn failing_plugin_backs_off_is_quarantined_and_sighup_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let hang = test_plugin("hang");
    assert!(hang.exists(), "test plugin missing: {}", hang.display());
    let config = write_config(
        dir.path(),
        &receiver.url,
        &format!(
            r#"  - name: hang
    plugin: {}
    interval: 100ms
    limits:
      timeout: 200ms
    supervision:
      initial_backoff: 500ms
      max_backoff: 1s
      quarantine_after: 3"#,
            hang.display()
        ),
    );
    std::fs::write(
        dir.path().join("rules/quarantine.rhai"),
        r#"const RULE = #{ name: "hang_quarantined", severity: "warning" };
fn evaluate() {
    let q = metric("telltale_plugin_state", #{ plugin: "hang", state: "quarantined" });
    if q == 1.0 { alert(q) } else { [] }
}
"#,
    )
    .unwrap();
    let started = Instant::now();
    let mut engine = Engine::start(&["run", "-c", config.to_str().unwrap()], dir.path(), &[]);

    engine.wait_output(WAIT, "collector `hang`: running -> backing_off");
    let out = engine.wait_output(WAIT, "collector `hang`: backing_off -> quarantined after 3");
    // Three failures, three transition lines, each with the reason; no per-call spam.
    assert!(out.contains("deadline"), "the reason is logged:\n{out}");
    assert_eq!(
        count(&out, "exceeded its 200ms deadline"),
        3,
        "one line per transition:\n{out}"
    );
    assert!(
        out.contains(&hang.display().to_string()),
        "says which file to change:\n{out}"
    );
    // 3 calls of 200ms plus waits of 500ms and 1s: well within 15s even on a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(15 + 10),
        "quarantine took {:?}",
        started.elapsed()
    );
    let firing = receiver.wait_for(WAIT, "the hang_quarantined alert", |r| {
        is_firing(r, "hang_quarantined")
    });
    assert_eq!(firing.json()["alert"]["value"], 1.0);

    // Quarantined means no calls: the error count stays put for a while.
    let quiet = engine.output();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        count(&engine.output(), "exceeded its 200ms deadline"),
        count(&quiet, "exceeded its 200ms deadline"),
        "a quarantined plugin is not called"
    );

    // The operator reloads: a fresh start, so it is called (and fails) again.
    engine.signal("HUP");
    engine.wait_output(WAIT, "reload requested (SIGHUP)");
    let out = engine.wait_output(WAIT, "collector `hang`: quarantined -> running");
    assert!(engine.running(), "SIGHUP does not stop the engine:\n{out}");
    receiver.wait_for(WAIT, "hang_quarantined resolved after SIGHUP", |r| {
        is_resolved(r, "hang_quarantined")
    });
    let deadline = Instant::now() + WAIT;
    while count(&engine.output(), "collector `hang`: running -> backing_off") < 2 {
        assert!(
            Instant::now() < deadline,
            "no new failure after SIGHUP:\n{}",
            engine.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
}

#[test]
fn replaced_plugin_file_is_swapped_in_and_a_broken_one_keeps_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let (hang, counter) = (test_plugin("hang"), test_plugin("counter"));
    assert!(
        counter.exists(),
        "test plugin missing: {}",
        counter.display()
    );
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    let plugin = dir.path().join("plugins/swap.wasm");
    std::fs::copy(&hang, &plugin).unwrap();
    let config = write_config(
        dir.path(),
        &receiver.url,
        r#"  - name: swap
    plugin: plugins/swap.wasm
    interval: 200ms
    limits:
      timeout: 200ms
    supervision:
      initial_backoff: 100ms
      quarantine_after: 2"#,
    );
    std::fs::write(
        dir.path().join("rules/counter.rhai"),
        r#"const RULE = #{ name: "counter_counts", severity: "info" };
fn evaluate() {
    let n = metric("test_counter_calls_total");
    if n >= 3.0 { alert(n) } else { [] }
}
"#,
    )
    .unwrap();
    let mut engine = Engine::start(&["run", "-c", config.to_str().unwrap()], dir.path(), &[]);

    // The version on disk hangs: it ends up quarantined.
    engine.wait_output(WAIT, "collector `swap`: backing_off -> quarantined");

    // A healthy version is installed: loaded without a restart, released from quarantine.
    install_atomically(&plugin, &std::fs::read(&counter).unwrap());
    let out = engine.wait_output(WAIT, "collector `swap`: loaded the new version of");
    assert!(out.contains("swap.wasm"), "names the file:\n{out}");
    engine.wait_output(WAIT, "collector `swap`: quarantined -> running");
    let firing = receiver.wait_for(WAIT, "the counter_counts alert", |r| {
        is_firing(r, "counter_counts")
    });
    assert!(firing.json()["alert"]["value"].as_f64().unwrap() >= 3.0);

    // Garbage is installed: the error names the file, the counter keeps counting.
    install_atomically(&plugin, b"this is not a WebAssembly component");
    let out = engine.wait_output(WAIT, "collector `swap`: cannot load the new version of");
    let line = out
        .lines()
        .find(|l| l.contains("cannot load the new version"))
        .unwrap();
    assert!(line.contains("swap.wasm"), "names the file: {line}");
    assert!(
        line.contains("the previous version keeps running"),
        "says what happens: {line}"
    );
    // Probe the counter now, then require it to grow by 5 more calls.
    std::fs::write(
        dir.path().join("rules/probe.rhai"),
        r#"const RULE = #{ name: "probe", severity: "info" };
fn evaluate() { alert(metric("test_counter_calls_total")) }
"#,
    )
    .unwrap();
    let probe = receiver.wait_for(WAIT, "the probe alert", |r| is_firing(r, "probe"));
    let seen = probe.json()["alert"]["value"].as_f64().unwrap();
    std::fs::write(
        dir.path().join("rules/still.rhai"),
        format!(
            r#"const RULE = #{{ name: "still_counting", severity: "info" }};
fn evaluate() {{
    let n = metric("test_counter_calls_total");
    if n >= {} {{ alert(n) }} else {{ [] }}
}}
"#,
            seen + 5.0
        ),
    )
    .unwrap();
    receiver.wait_for(
        WAIT,
        "the counter to keep counting after the broken file",
        |r| is_firing(r, "still_counting"),
    );

    let out = engine.output();
    assert_eq!(
        count(
            &out,
            concat!("telltale ", env!("CARGO_PKG_VERSION"), " running")
        ),
        1,
        "the engine never restarted:\n{out}"
    );
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
}
