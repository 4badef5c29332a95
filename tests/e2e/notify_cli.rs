//! `telltale notify preview|test NAME` through the real binary: the preview shows the
//! signed request without the secret or the URL's path, `test` delivers one signed sample
//! to a loopback receiver (exit 0) and reports a closed port (exit 1).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::{Receiver, assert_signed, closed_port, telltale, text};

const SECRET: &str = "whsec_bm90aWZ5LWNsaS1lMmUtc2VjcmV0";

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("telltale.yaml");
    std::fs::write(
        &path,
        format!(
            r#"notifiers:
  - name: ops
    kind: webhook
    url: "{url}"
    secret: "{SECRET}"
    timeout: 1s
    max_attempts: 2
    initial_backoff: 50ms
    max_backoff: 100ms
  - {{name: am, kind: webhook, url: "{url}", format: alertmanager}}
  - {{name: screen, kind: console}}
"#
        ),
    )
    .unwrap();
    path
}

fn notify(args: &[&str], config: &Path) -> Output {
    telltale()
        .arg("notify")
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn preview_shows_the_request_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "http://127.0.0.1:9/services/T0KEN?key=QUERY");
    let out = notify(&["preview", "ops"], &cfg);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("POST http://127.0.0.1:9/… (path hidden)"),
        "{stdout}"
    );
    assert!(stdout.contains("webhook-signature: v1,"), "{stdout}");
    assert!(stdout.contains("\"summary\": \"This is a test notification from Telltale\""));
    assert!(stdout.contains("\"version\": \"1\""), "{stdout}");
    for secret in ["T0KEN", "QUERY", SECRET, "bm90aWZ5"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }

    let out = notify(&["preview", "am", "--status", "resolved"], &cfg);
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    // Alertmanager's v4 body; no secret configured, so no signature.
    assert!(stdout.contains("\"version\": \"4\""), "{stdout}");
    assert!(stdout.contains("\"status\": \"resolved\""), "{stdout}");
    assert!(!stdout.contains("webhook-signature"), "{stdout}");

    let out = notify(&["preview", "screen"], &cfg);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("FIRING   [warning] sample{host="),
        "{stdout}"
    );
    assert!(stdout.contains("value=42 — This is a test notification from Telltale"));
}

#[test]
fn an_unknown_name_lists_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "http://127.0.0.1:9/hook");
    let out = notify(&["test", "opz"], &cfg);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("configured: ops, am, screen"), "{stderr}");
    assert!(stderr.contains("did you mean `ops`?"), "{stderr}");
}

#[test]
fn test_delivers_one_signed_sample() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &rx.url);
    let out = notify(&["test", "ops"], &cfg);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("delivered after 1 attempt"), "{stdout}");
    let req = rx.wait_for(Duration::from_secs(10), "the sample", |_| true);
    assert_signed(&req, SECRET);
    let body = req.json();
    assert_eq!(body["alert"]["rule"], "sample");
    assert_eq!(body["id"], req.header("webhook-id"));
    assert!(req.header("webhook-id").starts_with("msg_"));
    // The command has exited, so nothing more can arrive: exactly one request.
    assert_eq!(rx.all().len(), 1);
}

#[test]
fn test_against_a_closed_port_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("http://{}/hook", closed_port()));
    let out = notify(&["test", "ops"], &cfg);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // max_attempts: 2, connection errors are retried.
    assert!(stdout.contains("failed after 2 attempts"), "{stdout}");
    assert!(stdout.contains("connect"), "{stdout}");
}
