//! Analyzer events as data, end to end: samples pushed over the JSON ingest endpoint, the
//! real `level-shift` test analyzer (`tests/plugins/level-shift`) reporting a `level_shift`
//! event when their level moves, the store keeping it, and a rule reading it with
//! `events()` firing to a loopback webhook receiver.

use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{Engine, Receiver, test_plugin};

const WAIT: Duration = Duration::from_secs(60);

/// Fires while a level shift of `e2e_queue_depth` was reported in the last minute,
/// carrying the event's fields into the alert.
const SHIFT_RULE: &str = r#"
const RULE = #{ name: "level_shifted", severity: "warning", summary: "a level shift" };
fn evaluate() {
    let shifts = events("level_shift", #{ metric: "e2e_queue_depth" }, "1m");
    if shifts.len() == 0 { return []; }
    let e = shifts[shifts.len() - 1];
    alert(shifts.len(), #{ queue: e.labels.queue, analyzer: e.source, event_severity: e.severity }, e.message)
}
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A JSON ingest body: `e2e_queue_depth{queue="jobs"}` = `value` at each time.
fn body(value: f64, times: impl Iterator<Item = i64>) -> String {
    let samples: Vec<serde_json::Value> = times
        .map(|t| {
            serde_json::json!({
                "name": "e2e_queue_depth",
                "labels": { "queue": "jobs" },
                "value": value,
                "timestamp_ms": t,
            })
        })
        .collect();
    serde_json::json!({ "samples": samples }).to_string()
}

fn post(rt: &tokio::runtime::Runtime, url: &str, body: String) {
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await
            .expect("request to the engine")
            .status()
            .as_u16()
    });
    assert_eq!(status, 200, "the engine took the samples");
}

#[test]
fn an_analyzer_event_reaches_a_rule_and_fires_an_alert() {
    let plugin = test_plugin("level-shift");
    assert!(plugin.exists(), "test plugin missing: {}", plugin.display());
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let http = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free tcp port")
        .port();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/shift.rhai"), SHIFT_RULE).unwrap();
    let config = dir.path().join("telltale.yaml");
    std::fs::write(
        &config,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 2s
ingest:
  http:
    listen: 127.0.0.1:{http}
analyzers:
  - name: shift
    plugin: {plugin}
    interval: 200ms
    window: 1m
    inputs:
      - e2e_queue_depth
    config:
      threshold: 5
      recent: 3
rules:
  dir: rules
notifiers:
  - name: hook
    kind: webhook
    url: {url}
    timeout: 2s
    initial_backoff: 100ms
    max_backoff: 500ms
"#,
            plugin = plugin.display(),
            url = receiver.url
        ),
    )
    .unwrap();
    let mut engine = Engine::start(&["run", "-c", config.to_str().unwrap()], dir.path(), &[]);
    engine.wait_output(WAIT, "ingest: HTTP listening");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{http}/api/v1/samples");

    // A flat level: the analyzer is called on it (several times) and reports nothing.
    let t0 = now_ms() - 20_000;
    post(&rt, &url, body(10.0, (0..5).map(|i| t0 + i * 1000)));
    engine.wait_output(WAIT, "first evaluation");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        receiver.all().is_empty(),
        "no event, no alert:\n{}",
        engine.output()
    );

    // The level moves from 10 to 100: one event, which the rule turns into an alert.
    post(&rt, &url, body(100.0, (5..8).map(|i| t0 + i * 1000)));
    let firing = receiver.wait_for(WAIT, "level_shifted firing", |r| {
        let j = r.json();
        j["status"] == "firing" && j["alert"]["rule"] == "level_shifted"
    });
    let alert = &firing.json()["alert"];
    assert_eq!(alert["value"], 1.0, "one event: {alert}");
    assert_eq!(alert["labels"]["queue"], "jobs", "{alert}");
    assert_eq!(alert["labels"]["analyzer"], "shift", "{alert}");
    assert_eq!(alert["labels"]["event_severity"], "warning", "{alert}");
    assert_eq!(
        alert["summary"], "e2e_queue_depth moved from 10 to 100",
        "the event's message: {alert}"
    );
    let status = engine.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        engine.output()
    );
}
