//! The alert lifecycle through the real binary: a rule with enter/exit thresholds
//! (hysteresis) and `nodata`, fed by pushes the test controls, delivered to a real loopback
//! receiver.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::support::{Engine, Receiver};

const WAIT: Duration = Duration::from_secs(60);

/// Warns above 80 until below 70; a series silent for 2 s gets a nodata alert.
const MEM_RULE: &str = r#"
const RULE = #{
    name: "mem",
    thresholds: #{ warning: #{ enter: 80, exit: 70 } },
    nodata: "2s",
};
fn evaluate() {
    let out = [];
    for s in series("e2e_mem") { out.push(alert(s.value, s.labels)); }
    out
}
"#;

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free tcp port")
        .port()
}

/// Pushes `e2e_mem{host="a"} = value` as an Influx line to the engine on `port`, with a
/// plain HTTP/1.1 request; panics unless it is taken (204).
fn push(port: u16, value: f64) {
    let body = format!("e2e_mem,host=a value={value}\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the engine");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "POST /api/v2/write?precision=ms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
}

/// Keeps pushing `value` every 300 ms (so the series never goes silent) until `done` or
/// `timeout`.
fn hold(port: u16, value: f64, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done() {
        push(port, value);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Whether the receiver got a notification of `status` about the mem rule's condition
/// alert (`nodata`: about its nodata alert instead).
fn got(receiver: &Receiver, status: &str, nodata: bool) -> usize {
    receiver
        .all()
        .iter()
        .filter(|r| {
            let j = r.json();
            j["alert"]["rule"] == "mem"
                && j["status"] == status
                && (j["alert"]["labels"]["alertstate"] == "nodata") == nodata
        })
        .count()
}

#[test]
fn thresholds_hold_an_alert_between_enter_and_exit_and_a_silent_series_gets_nodata() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let http = free_tcp_port();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/mem.rhai"), MEM_RULE).unwrap();
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
rules:
  dir: rules
  defaults: false
notifiers:
  - {{name: hook, kind: webhook, url: "{url}", timeout: 2s}}
alerting:
  route:
    notifiers: [hook]
    group_wait: 0s
    group_by: ['...']
"#,
            url = receiver.url
        ),
    )
    .unwrap();
    let mut engine = Engine::start(&["run", "-c", config.to_str().unwrap()], dir.path(), &[]);
    engine.wait_output(WAIT, "ingest: HTTP listening");

    // 85 > 80: the warning fires.
    hold(http, 85.0, WAIT, || got(&receiver, "firing", false) > 0);
    let fired = receiver.wait_for(WAIT, "the warning", |r| {
        r.json()["alert"]["rule"] == "mem" && r.json()["status"] == "firing"
    });
    let j = fired.json();
    assert_eq!(j["alert"]["labels"]["severity"], "warning", "{j}");
    assert_eq!(j["alert"]["labels"]["host"], "a", "{j}");
    // 75: below the enter value but not below the exit value: it stays (2 s, ten ticks).
    hold(http, 75.0, Duration::from_secs(2), || false);
    assert_eq!(
        got(&receiver, "resolved", false),
        0,
        "{:#?}",
        receiver.all()
    );
    // 65 < 70: resolved.
    hold(http, 65.0, WAIT, || got(&receiver, "resolved", false) > 0);
    assert_eq!(got(&receiver, "resolved", false), 1);
    assert_eq!(got(&receiver, "firing", false), 1, "one firing in all");

    // Silent for 2 s: the nodata alert fires, naming the series.
    let nodata = receiver.wait_for(WAIT, "the nodata alert", |r| {
        r.json()["alert"]["labels"]["alertstate"] == "nodata" && r.json()["status"] == "firing"
    });
    let j = nodata.json();
    assert_eq!(j["alert"]["labels"]["metric"], "e2e_mem", "{j}");
    assert_eq!(j["alert"]["labels"]["host"], "a", "{j}");
    assert!(
        j["alert"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("no data from {host=\"a\",metric=\"e2e_mem\"} for ")),
        "{j}"
    );
    // It sends again: the nodata alert resolves, and 65 raises nothing.
    hold(http, 65.0, WAIT, || got(&receiver, "resolved", true) > 0);
    engine.terminate(WAIT);
    assert_eq!(got(&receiver, "firing", false), 1, "{:#?}", receiver.all());
}
