//! End-to-end tests: the real `telltale` binary, real plugins built from `plugins/` and
//! `tests/plugins/`, real rule files on disk and a real HTTP receiver on 127.0.0.1.
//! Every wait is bounded; every process is killed when its test ends.

mod alerting;
mod author;
mod catalogue;
mod durable;
mod events;
mod faults;
mod gpu;
mod hostile;
mod ingest;
mod lifecycle;
mod notify_cli;
mod process;
mod process_exit;
mod prometheus;
mod python;
mod ray_scaling;
mod replay;
mod ruletest;
mod scaling_cli;
mod store;
mod supervision;
mod support;

use std::path::Path;
use std::time::Duration;

use support::{Engine, Receiver, assert_signed, save_atomically, telltale, test_plugin};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(60);

const FIRING_RULE: &str = r#"// fires while the system collector reports memory
const RULE = #{
    name: "memory_reported",
    severity: "warning",
    labels: #{ team: "e2e" },
    summary: "memory is reported",
};

fn evaluate() {
    let total = metric("system_memory_total_bytes");
    if total > 0 { alert(total, #{ source: "system" }) } else { [] }
}
"#;

const QUIET_RULE: &str = r#"// same rule, no longer firing
const RULE = #{
    name: "memory_reported",
    severity: "warning",
    labels: #{ team: "e2e" },
    summary: "memory is reported",
};

fn evaluate() {
    let total = metric("system_memory_total_bytes");
    if total < 0 { alert(total, #{ source: "system" }) } else { [] }
}
"#;

/// Line 9 has the error: a `let` without a value.
const BROKEN_RULE: &str = r#"// a save in the middle of an edit
const RULE = #{
    name: "memory_reported",
    severity: "warning",
    summary: "memory is reported",
};

fn evaluate() {
    let total = ;
    []
}
"#;

/// A config with the system collector, fast ticks, a rules dir and a signed webhook.
fn write_config(dir: &Path, hook_url: &str, extra_collectors: &str) -> std::path::PathBuf {
    let path = dir.join("telltale.yaml");
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        &path,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 5s
collectors:
  - name: system
    plugin: system
    interval: 200ms
    grants:
      system: true
      files: [/proc, /sys]
{extra_collectors}
rules:
  dir: rules
notifiers:
  - name: hook
    kind: webhook
    url: {hook_url}
    secret: ${{E2E_WEBHOOK_SECRET}}
    timeout: 2s
    initial_backoff: 100ms
    max_backoff: 500ms
"#
        ),
    )
    .unwrap();
    path
}

fn is_status(r: &support::Received, status: &str) -> bool {
    r.json()["status"] == status
}

#[test]
fn firing_rule_delivers_signed_payload_then_resolved_after_edit() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let config = write_config(dir.path(), &receiver.url, "");
    std::fs::write(dir.path().join("rules/memory.rhai"), FIRING_RULE).unwrap();
    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );

    // (a) a firing payload, correctly signed.
    let firing = receiver.wait_for(WAIT, "a firing notification", |r| is_status(r, "firing"));
    assert_signed(&firing, SECRET);
    let body = firing.json();
    assert_eq!(body["version"], "1");
    assert_eq!(body["id"], firing.header("webhook-id"));
    assert_eq!(body["alert"]["rule"], "memory_reported");
    assert_eq!(body["alert"]["severity"], "warning");
    assert_eq!(body["alert"]["labels"]["team"], "e2e");
    assert_eq!(body["alert"]["labels"]["source"], "system");
    assert_eq!(body["alert"]["labels"]["alertname"], "memory_reported");
    assert!(body["alert"]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(firing.header("content-type"), "application/json");
    assert_eq!(firing.path, "/hook");

    // (b) editing the rule so it no longer fires delivers the paired resolved payload.
    save_atomically(&dir.path().join("rules/memory.rhai"), QUIET_RULE);
    let resolved = receiver.wait_for(WAIT, "a resolved notification", |r| {
        is_status(r, "resolved")
    });
    assert_signed(&resolved, SECRET);
    let rbody = resolved.json();
    assert_eq!(rbody["alert"]["fingerprint"], body["alert"]["fingerprint"]);
    assert_ne!(rbody["id"], body["id"], "each notification has its own id");
    assert!(rbody["alert"]["resolved_at"].is_string());
    assert_eq!(
        receiver
            .all()
            .iter()
            .filter(|r| is_status(r, "firing"))
            .count(),
        1,
        "a firing alert is announced once"
    );

    let status = engine.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        engine.output()
    );
}

#[test]
fn broken_rule_save_keeps_previous_version_and_reports_position() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let config = write_config(dir.path(), &receiver.url, "");
    let rule = dir.path().join("rules/memory.rhai");
    std::fs::write(&rule, FIRING_RULE).unwrap();
    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );
    receiver.wait_for(WAIT, "a firing notification", |r| is_status(r, "firing"));

    // (c) a syntax error: reported with file:line:column, the old version stays active.
    save_atomically(&rule, BROKEN_RULE);
    // The error is several lines (position, snippet, note): wait for its last one, which
    // the output reader may take in after the first.
    let out = engine.wait_output(WAIT, "previous version");
    assert!(
        out.contains("memory.rhai:9:"),
        "names the position of the error:\n{out}"
    );
    // Several evaluation ticks later the alert is still firing: no resolved was sent.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !receiver.all().iter().any(|r| is_status(r, "resolved")),
        "a broken save must not resolve the alert"
    );
    assert!(engine.running());

    // The old version was still being evaluated: fixing the rule resolves the alert.
    save_atomically(&rule, QUIET_RULE);
    receiver.wait_for(WAIT, "a resolved notification", |r| {
        is_status(r, "resolved")
    });
}

/// Writes `text` as `file` and runs `telltale run` and `telltale check` on it: both must
/// fail before anything starts, with `expected` (after `FILE:`) on stderr. Returns the
/// two stderr texts for further checks.
fn refused_by_run_and_check(dir: &Path, file: &str, text: &str, expected: &str) -> Vec<String> {
    let config = dir.join(file);
    std::fs::write(&config, text).unwrap();
    let mut out = Vec::new();
    for cmd in ["run", "check"] {
        let result = telltale()
            .args([cmd, "-c", config.to_str().unwrap()])
            .env("XDG_DATA_HOME", dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(
            !result.status.success(),
            "{cmd} {file} must fail:\n{stderr}"
        );
        let expected = format!("{}:{expected}", config.display());
        assert!(
            stderr.contains(&expected),
            "{cmd}: missing {expected} in:\n{stderr}"
        );
        assert!(stderr.contains("nothing was started"), "{stderr}");
        out.push(stderr);
    }
    out
}

#[test]
fn unknown_config_key_exits_nonzero_with_position() {
    let dir = tempfile::tempdir().unwrap();
    for stderr in refused_by_run_and_check(
        dir.path(),
        "bad.yaml",
        "collectors:\n  - name: system\n    plugin: system\n    intervall: 5s\n",
        "4:5: error:",
    ) {
        assert!(stderr.contains("unknown field `intervall`"), "{stderr}");
        assert!(stderr.contains("did you mean `interval`?"), "{stderr}");
    }
}

/// `run` and `check` share one builder: a value that cannot work (here a rule limit of 0,
/// which Rhai would read as "unlimited") stops both, with the value's position, and `run`
/// does not start on a default in its place.
#[test]
fn run_and_check_refuse_a_semantic_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    refused_by_run_and_check(
        dir.path(),
        "zero.yaml",
        "collectors:\n  - name: system\n    plugin: system\nrules:\n  max_operations: 0\n",
        "5:3: error: rules.max_operations must be at least 1",
    );
}

/// Notifier settings are checked with the config, each problem at its position: the shape
/// from before `kind:` gets the rewrite, and a webhook `timeout` of zero is refused before
/// anything starts.
#[test]
fn notifier_config_errors_carry_positions() {
    let dir = tempfile::tempdir().unwrap();
    refused_by_run_and_check(
        dir.path(),
        "old.yaml",
        "notifiers:\n  - name: ops\n    webhook:\n      url: http://127.0.0.1:9/hook\n",
        "3:5: error: notifiers[0]: `webhook:` is now `kind: webhook`",
    );
    refused_by_run_and_check(
        dir.path(),
        "zero.yaml",
        "notifiers:\n  - name: ops\n    kind: webhook\n    url: http://127.0.0.1:9/hook\n    timeout: 0s\n",
        "5:5: error: webhook timeout must be longer than zero",
    );
}

#[test]
fn hung_plugin_is_stopped_at_its_deadline_while_others_keep_collecting() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let hang = test_plugin("hang");
    assert!(hang.exists(), "test plugin missing: {}", hang.display());
    let config = write_config(
        dir.path(),
        &receiver.url,
        &format!(
            "  - name: hang\n    plugin: {}\n    interval: 300ms\n    limits:\n      timeout: 250ms\n",
            hang.display()
        ),
    );
    // Fires only once the healthy collector has kept working through several hung calls.
    std::fs::write(
        dir.path().join("rules/survives.rhai"),
        r#"const RULE = #{ name: "survived_hang", severity: "info" };
fn evaluate() {
    let ok = metric("telltale_plugin_calls_total", #{ plugin: "system", outcome: "ok" });
    let hung = metric("telltale_plugin_calls_total", #{ plugin: "hang", outcome: "error" });
    if ok >= 10 && hung >= 3 { alert(hung) } else { [] }
}
"#,
    )
    .unwrap();
    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );
    let out = engine.wait_output(WAIT, "deadline");
    assert!(
        out.contains("hang"),
        "the deadline message names the plugin:\n{out}"
    );
    let firing = receiver.wait_for(WAIT, "the survived_hang alert", |r| is_status(r, "firing"));
    assert_eq!(firing.json()["alert"]["rule"], "survived_hang");
    assert!(engine.running(), "the engine keeps running");
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
}

#[test]
fn run_without_config_collects_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::start(&["run"], dir.path(), &[]);
    engine.wait_output(WAIT, "first collection");
    engine.wait_output(WAIT, "first evaluation");
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
    // The compiled-plugin cache was written under the data dir.
    let cache = dir.path().join("telltale/cache");
    assert!(
        std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0) > 0,
        "no compiled plugins cached in {}",
        cache.display()
    );
}

#[test]
fn check_accepts_the_defaults_and_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = telltale()
        .arg("check")
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let mut path = entry.unwrap().path();
        // An example with its own directory (`examples/chia-plotting/`) keeps its config
        // in `telltale.yaml` there.
        if path.join("telltale.yaml").is_file() {
            path = path.join("telltale.yaml");
        }
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = telltale()
                .args(["check", "-c", path.to_str().unwrap()])
                .env("XDG_DATA_HOME", dir.path())
                .env("TELLTALE_WEBHOOK_SECRET", SECRET)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no example configs found in {}",
        examples.display()
    );
}

#[test]
fn config_schema_is_json_schema() {
    let out = telltale().args(["config", "schema"]).output().unwrap();
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );
    assert!(schema["properties"]["collectors"].is_object());
}
