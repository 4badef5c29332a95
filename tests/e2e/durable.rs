//! The durable store across `kill -9`: alert state and undelivered notifications survive
//! a process that gets no chance to shut down.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Engine;

const WAIT: Duration = Duration::from_secs(60);

/// One webhook request: its `webhook-id`, the payload's `status`, and what was answered.
#[derive(Debug, Clone)]
struct Hit {
    id: String,
    status: String,
    answered: u16,
}

/// A loopback webhook receiver that answers every request with the status it is set to
/// (changeable while it runs) and records each request. It stops when dropped.
struct Hook {
    url: String,
    answer: Arc<AtomicU16>,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Hook {
    fn start(answer: u16) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let answer = Arc::new(AtomicU16::new(answer));
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (answer2, hits2, stop2) = (answer.clone(), hits.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let code = answer2.load(Ordering::SeqCst);
                if let Some((id, status)) = answer_one(stream, code) {
                    hits2.lock().unwrap().push(Hit {
                        id,
                        status,
                        answered: code,
                    });
                }
            }
        });
        Hook {
            url: format!("http://{addr}/hook"),
            answer,
            hits,
            stop,
            addr,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until a request satisfies `pred`; panics after `timeout`.
    fn wait_for(&self, timeout: Duration, what: &str, pred: impl Fn(&Hit) -> bool) -> Hit {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(h) = self.hits().into_iter().find(|h| pred(h)) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; got {:?}",
                self.hits()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Reads one request, answers `code`, and returns its `webhook-id` and payload status.
fn answer_one(mut stream: TcpStream, code: u16) -> Option<(String, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let reply =
        format!("HTTP/1.1 {code} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(reply.as_bytes());
    let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((
        headers.get("webhook-id")?.clone(),
        json["status"].as_str()?.to_string(),
    ))
}

/// No collectors (nothing to compile), fast ticks, and two webhooks: `up` and `down`,
/// which retries for a long time.
fn write_config(dir: &Path, up: &str, down: &str) -> std::path::PathBuf {
    let path = dir.join("telltale.yaml");
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/always.rhai"),
        "const RULE = #{ name: \"always\", severity: \"warning\" };\nfn evaluate() { alert(1.0) }\n",
    )
    .unwrap();
    std::fs::write(
        &path,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 1s
rules:
  dir: rules
notifiers:
  - name: up
    kind: webhook
    url: {up}
    timeout: 2s
    initial_backoff: 100ms
    max_backoff: 300ms
  - name: down
    kind: webhook
    url: {down}
    timeout: 2s
    max_attempts: 1000
    initial_backoff: 100ms
    max_backoff: 300ms
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn kill_9_neither_repeats_a_firing_alert_nor_loses_an_undelivered_notification() {
    let dir = tempfile::tempdir().unwrap();
    let up = Hook::start(200);
    let down = Hook::start(503);
    let config = write_config(dir.path(), &up.url, &down.url);
    let args = ["run", "-c", config.to_str().unwrap()];

    let mut engine = Engine::start(&args, dir.path(), &[]);
    let firing = up.wait_for(WAIT, "the firing notification", |h| h.status == "firing");
    // `down` answers 503: the same notification is being retried.
    down.wait_for(WAIT, "a second attempt at `down`", |_| {
        down.hits().iter().filter(|h| h.id == firing.id).count() >= 2
    });
    // `up`'s delivery is marked done right after its answer; give that write a moment.
    thread::sleep(Duration::from_secs(1));
    engine.kill_9();
    let before = engine.output();
    assert!(
        !before.contains("shutting down"),
        "no clean shutdown ran:\n{before}"
    );

    down.answer.store(200, Ordering::SeqCst);
    let mut engine = Engine::start(&args, dir.path(), &[]);
    let out = engine.wait_output(WAIT, "first evaluation");
    assert!(out.contains("alert state restored: 1 firing"), "{out}");
    let delivered = down.wait_for(WAIT, "the owed notification, answered 200", |h| {
        h.answered == 200
    });
    assert_eq!(
        delivered.id, firing.id,
        "the notification from before the kill, not a new one"
    );
    // Several evaluation ticks (200 ms each) after the restart: no second Firing.
    thread::sleep(Duration::from_millis(1500));
    let firings = |hook: &Hook| -> Vec<String> {
        hook.hits()
            .into_iter()
            .filter(|h| h.status == "firing" && h.answered == 200)
            .map(|h| h.id)
            .collect()
    };
    assert_eq!(
        firings(&up),
        std::slice::from_ref(&firing.id),
        "`up` was told once"
    );
    assert_eq!(
        firings(&down),
        std::slice::from_ref(&firing.id),
        "`down` was told once"
    );
    assert!(
        down.hits().iter().all(|h| h.id == firing.id),
        "{:?}",
        down.hits()
    );

    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
}
