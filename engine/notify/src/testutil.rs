//! Test helpers: a sample notification, an outbox in memory that can be made to fail
//! like a full disk, and a tiny real HTTP/1.1 receiver on 127.0.0.1 whose replies are
//! scripted (status codes, headers, or never answering).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use telltale_model::{Alert, AlertStatus, Labels, Notification, Severity};

use crate::outbox::{self, Outbox, OutboxEntry, OutboxError, Outcome};

/// A `high_cpu{cpu="total"}` warning notification.
pub(crate) fn notification(id: &str, value: f64, status: AlertStatus) -> Notification {
    Notification {
        id: id.into(),
        status,
        reason: telltale_model::NotificationReason::StateChange,
        quiet: false,
        alert: Alert {
            fingerprint: "fp123".into(),
            rule: "high_cpu".into(),
            severity: Severity::Warning,
            labels: Labels::from([
                ("alertname".into(), "high_cpu".into()),
                ("severity".into(), "warning".into()),
                ("cpu".into(), "total".into()),
            ]),
            summary: "CPU at 97%".into(),
            value,
            active_since_ms: 1_700_000_000_000,
            firing_since_ms: 1_700_000_060_250,
            resolved_at_ms: (status == AlertStatus::Resolved).then_some(1_700_000_360_000),
            rule_file: "rules/cpu.rhai".into(),
            kind: telltale_model::AlertKind::Condition,
            ack: None,
        },
    }
}

/// One entry of a [`MemoryOutbox`].
#[derive(Debug)]
struct MemoryEntry {
    notifier: String,
    id: String,
    /// As [`outbox::encode`] writes it, so that tests go through the text form too.
    json: String,
    outcome: Option<Outcome>,
}

/// An [`Outbox`] in memory, with the durable one's rules (one entry per notifier and id,
/// undone in the order put), whose every call fails while [`MemoryOutbox::set_failing`]
/// says so.
#[derive(Debug, Default)]
pub(crate) struct MemoryOutbox {
    entries: Mutex<Vec<MemoryEntry>>,
    failing: AtomicBool,
}

impl MemoryOutbox {
    /// Makes every call fail (as a full disk would) or work again.
    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), OutboxError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(OutboxError("memory outbox: the disk is full (test)".into()));
        }
        Ok(())
    }

    /// `None`: no such entry; `Some(None)`: undone; `Some(Some(outcome))`: done.
    pub(crate) fn outcome(&self, notifier: &str, id: &str) -> Option<Option<Outcome>> {
        self.entries
            .lock()
            .iter()
            .find(|e| e.notifier == notifier && e.id == id)
            .map(|e| e.outcome)
    }

    /// How many entries there are, done or not.
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

impl Outbox for MemoryOutbox {
    fn put(&self, n: &Notification, notifiers: &[&str]) -> Result<(), OutboxError> {
        self.check()?;
        let mut entries = self.entries.lock();
        for name in notifiers {
            if !entries.iter().any(|e| e.notifier == *name && e.id == n.id) {
                entries.push(MemoryEntry {
                    notifier: name.to_string(),
                    id: n.id.clone(),
                    json: outbox::encode(n),
                    outcome: None,
                });
            }
        }
        Ok(())
    }

    fn done(&self, notifier: &str, id: &str, outcome: Outcome) -> Result<(), OutboxError> {
        self.check()?;
        if let Some(e) = self
            .entries
            .lock()
            .iter_mut()
            .find(|e| e.notifier == notifier && e.id == id && e.outcome.is_none())
        {
            e.outcome = Some(outcome);
        }
        Ok(())
    }

    fn undone(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        self.check()?;
        self.entries
            .lock()
            .iter()
            .filter(|e| e.outcome.is_none())
            .map(|e| {
                Ok(OutboxEntry {
                    notifier: e.notifier.clone(),
                    notification: outbox::decode(&e.json)
                        .map_err(|err| OutboxError(err.to_string()))?,
                })
            })
            .collect()
    }
}

/// What the receiver does with one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Answer with this status and these extra headers.
    Status(u16, Vec<(&'static str, String)>),
    /// Read the request, then never answer (holds the connection open).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A scripted HTTP receiver. Requests past the end of the script get `then`.
pub(crate) struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub(crate) async fn start(script: Vec<Reply>, then: Reply) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let got2 = got.clone();
        let task = tokio::spawn(async move {
            let mut hung = Vec::new();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let Some((headers, body)) = read_request(&mut sock).await else {
                    continue;
                };
                got2.lock().push(Received {
                    headers,
                    body,
                    at: Instant::now(),
                });
                let reply = script.lock().pop_front().unwrap_or_else(|| then.clone());
                match reply {
                    Reply::Status(code, extra) => {
                        let mut resp = format!(
                            "HTTP/1.1 {code} Scripted\r\ncontent-length: 2\r\nconnection: close\r\n"
                        );
                        for (k, v) in extra {
                            resp.push_str(&format!("{k}: {v}\r\n"));
                        }
                        resp.push_str("\r\nok");
                        let _ = sock.write_all(resp.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    }
                    Reply::Hang => hung.push(sock),
                }
            }
        });
        Receiver { url, got, task }
    }

    /// Requests so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.got.lock().clone()
    }

    /// Waits until at least `n` requests arrived; panics after `within`.
    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests within {within:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads one HTTP/1.1 request with a content-length body.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(HeaderMap, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1) {
        let (k, v) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
            HeaderValue::from_str(v.trim()).ok()?,
        );
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

/// A URL on 127.0.0.1 where connections are refused, and the guard that keeps it so: the
/// port stays bound (not listening) so no other test's receiver can take it meanwhile.
pub(crate) fn dead_url() -> (String, tokio::net::TcpSocket) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sock.local_addr().unwrap();
    (format!("http://{addr}/hook"), sock)
}
