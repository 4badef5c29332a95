//! Test support: the real `telltale` binary as a child process, a loopback HTTP receiver
//! that records webhook deliveries, and an independent Standard Webhooks verifier.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The binary under test.
pub fn telltale() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_telltale"));
    cmd.env_remove("RUST_LOG").env_remove("TELLTALE_CONFIG");
    cmd
}

/// A compiled test plugin (built by engine/standard-plugins/build.rs from tests/plugins/).
pub fn test_plugin(name: &str) -> PathBuf {
    Path::new(telltale_standard_plugins::TEST_PLUGINS_DIR).join(format!("{name}.wasm"))
}

/// Writes `contents` to `path` the way editors save: a temporary file renamed over it.
pub fn save_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("rhai.tmp~");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over the rule file");
}

/// One HTTP request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("webhook body is JSON")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing header {name}: {:?}", self.headers))
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers 200 to everything and records requests.
/// It stops when dropped.
pub struct Receiver {
    pub url: String,
    seen: Arc<(Mutex<Vec<Received>>, Condvar)>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let seen: Arc<(Mutex<Vec<Received>>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Some(req) = handle(stream) {
                    let (lock, cvar) = &*seen2;
                    lock.lock().unwrap().push(req);
                    cvar.notify_all();
                }
            }
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            seen,
            stop,
            addr,
        }
    }

    /// Waits until a request satisfies `pred`, returning it; panics after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Received) -> bool,
    ) -> Received {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        loop {
            if let Some(r) = seen.iter().find(|r| pred(r)) {
                return r.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received: {:#?}",
                    *seen
                );
            }
            seen = cvar.wait_timeout(seen, deadline - now).unwrap().0;
        }
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Received> {
        self.seen.0.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn handle(mut stream: TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    Some(Received {
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Checks a Standard Webhooks signature independently of the engine's signing code:
/// `v1,base64(HMAC-SHA256(base64decode(secret without whsec_), "id.timestamp.body"))`.
pub fn assert_signed(req: &Received, secret: &str) {
    let id = req.header("webhook-id");
    let ts = req.header("webhook-timestamp");
    let sig = req.header("webhook-signature");
    let key = base64::engine::general_purpose::STANDARD
        .decode(
            secret
                .strip_prefix("whsec_")
                .expect("test secret has the prefix"),
        )
        .expect("test secret is base64");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(format!("{id}.{ts}.{}", req.body).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert!(
        sig.split(' ').any(|s| s == expected),
        "signature mismatch: got {sig}, expected {expected}"
    );
    let ts: i64 = ts.parse().expect("numeric timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 300, "timestamp {ts} is not recent");
}

/// A running `telltale` process whose stderr is collected; killed when dropped.
pub struct Engine {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Engine {
    pub fn start(args: &[&str], data_home: &Path, envs: &[(&str, &str)]) -> Engine {
        let mut child = telltale()
            .args(args)
            .envs(envs.iter().copied())
            .env("XDG_DATA_HOME", data_home)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start telltale");
        let stderr = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut lines = BufReader::new(pipe);
                let mut line = String::new();
                while lines.read_line(&mut line).unwrap_or(0) > 0 {
                    sink.lock().unwrap().push_str(&line);
                    line.clear();
                }
            });
        }
        Engine { child, stderr }
    }

    /// Everything it printed so far (stderr and stdout interleaved by line).
    pub fn output(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until its output contains `needle`; panics after `timeout`.
    pub fn wait_output(&mut self, timeout: Duration, needle: &str) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.contains(needle) {
                return out;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("telltale exited ({status}) before printing {needle:?}; output:\n{out}");
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {needle:?}; output:\n{out}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGKILL (no shutdown of any kind: a crash) and waits, at most 10 s, until
    /// the process is gone.
    pub fn kill_9(&mut self) {
        self.signal("KILL");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.running() {
            assert!(
                std::time::Instant::now() < deadline,
                "still running after SIGKILL"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) without waiting for anything.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Sends SIGTERM and waits (bounded) for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "telltale did not exit within {timeout:?} of SIGTERM; output:\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers every GET with one fixed body (a
/// `/metrics` endpoint for the scraper tests) and remembers each request's `accept`
/// header. It stops when dropped.
pub struct StaticServer {
    /// `http://127.0.0.1:PORT/metrics`.
    pub url: String,
    /// `127.0.0.1:PORT`, as a grant names it.
    pub host_port: String,
    accepts: Arc<Mutex<Vec<String>>>,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl StaticServer {
    pub fn start(body: String, content_type: &'static str) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let accepts: Arc<Mutex<Vec<String>>> = Arc::default();
        let body = Arc::new(Mutex::new(body));
        let stop = Arc::new(AtomicBool::new(false));
        let (accepts2, body2, stop2) = (accepts.clone(), body.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let body = body2.lock().unwrap().clone();
                if let Some(req) = handle_static(stream, &body, content_type) {
                    accepts2.lock().unwrap().push(req);
                }
            }
        });
        StaticServer {
            url: format!("http://{addr}/metrics"),
            host_port: addr.to_string(),
            accepts,
            body,
            stop,
            addr,
        }
    }

    /// The `accept` headers of the requests served so far.
    pub fn accepts(&self) -> Vec<String> {
        self.accepts.lock().unwrap().clone()
    }

    /// Serves `body` from the next request on (a counter that grows between scrapes).
    pub fn set_body(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn handle_static(mut stream: TcpStream, body: &str, content_type: &str) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut accept = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("accept")
        {
            accept = v.trim().to_string();
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    Some(accept)
}

/// A loopback `host:port` nothing listens on (bound, then released).
pub fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").to_string()
}

/// The Ray Serve 2.60 `/metrics` fixture (1599 samples).
pub fn ray_fixture() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../formats/tests/fixtures/ray_serve_2.60_metrics.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A command's standard output and standard error, as text.
pub fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
