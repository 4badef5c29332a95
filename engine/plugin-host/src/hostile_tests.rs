//! Tests of the capabilities and limits against real plugins: the hostile test plugins of
//! `tests/plugins/` (built by `build.rs`), a real HTTP server on 127.0.0.1, real files.
//! Each case checks that the failure is contained, that its message names the plugin and
//! the limit, and that the instance is usable (re-instantiated) afterwards.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use telltale_config::{ByteSize, HumanDuration};
use telltale_model::Sample;

fn test_plugin(name: &str) -> PathBuf {
    PathBuf::from(telltale_standard_plugins::TEST_PLUGINS_DIR).join(format!("{name}.wasm"))
}

fn spec(instance: &str, plugin: &str, config: serde_json::Value, grants: Grants) -> PluginSpec {
    PluginSpec {
        instance: instance.to_string(),
        source: PluginSource::File(test_plugin(plugin)),
        config_json: config.to_string(),
        grants,
        limits: PluginLimits::default(),
    }
}

fn value(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} in {samples:?}"))
        .value
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 server on 127.0.0.1 with fixed routes.

/// Routes: `/ok` (200, `hello`), `/big` (2 KiB with a length), `/stream-big` (2 KiB without
/// a length), `/to/<url>` (302 to the URL), `/slow` (answers after 3 s). Records the paths
/// it was asked for. Its accept thread lives as long as the test process (bounded work).
struct Server {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen2 = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen2);
                thread::spawn(move || serve(stream, &seen));
            }
        });
        Server { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn grant(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    seen.lock().unwrap().push(path.clone());
    let big = "x".repeat(2048);
    let response = if path == "/ok" {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-accept: {}\r\nconnection: close\r\n\r\nhello",
            headers.get("accept").map(String::as_str).unwrap_or("")
        )
    } else if path == "/big" {
        format!("HTTP/1.1 200 OK\r\ncontent-length: 2048\r\nconnection: close\r\n\r\n{big}")
    } else if path == "/stream-big" {
        format!("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{big}")
    } else if let Some(to) = path.strip_prefix("/to/") {
        format!(
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
    } else if path == "/slow" {
        thread::sleep(Duration::from_secs(3));
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
    } else {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes());
}

fn http_grants(grants: &[String]) -> Grants {
    Grants {
        http: grants.to_vec(),
        ..Grants::default()
    }
}

async fn fetch(
    host: &PluginHost,
    url: &str,
    grants: &[String],
    limits: PluginLimits,
) -> Result<Vec<Sample>, PluginError> {
    let mut s = spec(
        "fetch",
        "fetch",
        serde_json::json!({ "url": url }),
        http_grants(grants),
    );
    s.limits = limits;
    let mut plugin = host.load::<Collector>(s).await?;
    plugin.call(()).await
}

#[tokio::test]
async fn http_reaches_granted_hosts_only() {
    let host = PluginHost::new(None).unwrap();
    let server = Server::start();
    let other = Server::start();
    let granted = vec![server.grant()];

    // Granted: the response comes back; the plugin's request header reached the server.
    let samples = fetch(&host, &server.url("/ok"), &granted, PluginLimits::default())
        .await
        .unwrap();
    assert_eq!(value(&samples, "fetch_status_code"), 200.0);
    assert_eq!(value(&samples, "fetch_body_bytes"), 5.0);

    // Same server by another name: not granted, refused before connecting.
    let port = server.addr.port();
    let before = server.seen().len();
    let err = fetch(
        &host,
        &format!("http://localhost:{port}/ok"),
        &granted,
        PluginLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "`localhost:{port}` is not granted to plugin `fetch`; to allow it, add it to the \
             entry: `grants: {{ http: [\"localhost:{port}\"] }}`"
        )),
        "{err}"
    );
    assert_eq!(server.seen().len(), before, "no request was sent");

    // A redirect to an ungranted server is not followed.
    let err = fetch(
        &host,
        &server.url(&format!("/to/{}", other.url("/ok"))),
        &granted,
        PluginLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("redirect refused"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("`{}` is not granted", other.grant())),
        "{err}"
    );
    assert!(other.seen().is_empty(), "the other server was never asked");

    // A redirect within the grants is followed.
    let samples = fetch(
        &host,
        &server.url(&format!("/to/{}", server.url("/ok"))),
        &granted,
        PluginLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(value(&samples, "fetch_status_code"), 200.0);

    // Only http and https.
    let err = fetch(
        &host,
        "file:///etc/passwd",
        &granted,
        PluginLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("only http and https"), "{err}");
}

#[tokio::test]
async fn http_body_is_capped_and_slow_servers_meet_the_deadline() {
    let host = PluginHost::new(None).unwrap();
    let server = Server::start();
    let granted = vec![server.grant()];
    let small = PluginLimits {
        max_http_body: ByteSize(1024),
        ..PluginLimits::default()
    };
    for path in ["/big", "/stream-big"] {
        let err = fetch(&host, &server.url(path), &granted, small.clone())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("the response body is larger than limits.max_http_body = 1 KiB"),
            "{path}: {err}"
        );
    }
    // Exactly at the cap is fine.
    let exact = PluginLimits {
        max_http_body: ByteSize(2048),
        ..PluginLimits::default()
    };
    let samples = fetch(&host, &server.url("/stream-big"), &granted, exact)
        .await
        .unwrap();
    assert_eq!(value(&samples, "fetch_body_bytes"), 2048.0);

    // The server answers after 3 s; the call's 300 ms deadline bounds the request.
    let deadline = Duration::from_millis(300);
    let limits = PluginLimits {
        timeout: HumanDuration(deadline),
        ..PluginLimits::default()
    };
    let start = Instant::now();
    let err = fetch(&host, &server.url("/slow"), &granted, limits)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            PluginError::Failed { .. } | PluginError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("plugin `fetch`"), "{err}");
    assert!(
        took < deadline + Duration::from_millis(700),
        "the request outlived the deadline: {took:?}"
    );
}

#[tokio::test]
async fn capability_imports_need_their_grant() {
    let host = PluginHost::new(None).unwrap();
    let err = host
        .load::<Collector>(spec(
            "fetch",
            "fetch",
            serde_json::json!({ "url": "http://127.0.0.1:1/" }),
            Grants::default(),
        ))
        .await
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "plugin `fetch` imports `telltale:plugin/http` but is not granted it; add \
         `grants: { http: [\"HOST:PORT\"] }` to its entry"
    );
    let err = host
        .load::<Collector>(spec(
            "snoop",
            "snoop",
            serde_json::json!({ "mode": "host" }),
            Grants::default(),
        ))
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("add `grants: { files: [\"/some/dir\"] }`"),
        "{err}"
    );
}

#[tokio::test]
async fn processes_reach_the_plugin_with_its_grant_only() {
    let host = PluginHost::new(None).unwrap();
    let me = std::process::id();
    let err = host
        .load::<Collector>(spec(
            "ps",
            "ps",
            serde_json::json!({ "pid": me }),
            Grants::default(),
        ))
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .ends_with("add `grants: { processes: true }` to its entry"),
        "{err}"
    );
    let grants = Grants {
        processes: true,
        ..Grants::default()
    };
    let mut ps = host
        .load::<Collector>(spec("ps", "ps", serde_json::json!({ "pid": me }), grants))
        .await
        .unwrap();
    let samples = ps.call(()).await.unwrap();
    assert!(value(&samples, "ps_processes") >= 2.0);
    assert!(value(&samples, "ps_rss_bytes") > f64::from(1 << 20));
    assert!(value(&samples, "ps_virtual_bytes") >= value(&samples, "ps_rss_bytes"));
    assert!(value(&samples, "ps_cmd_args") >= 1.0);
    assert!(value(&samples, "ps_parent_pid") >= 0.0);
    let start = value(&samples, "ps_start_time_seconds");
    let now = telltale_model::now_ms() as f64 / 1000.0;
    assert!(
        start > now - 3600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
    #[cfg(target_os = "linux")]
    {
        assert!(value(&samples, "ps_threads") >= 1.0);
        assert!(value(&samples, "ps_open_fds") >= 3.0);
    }
    let rss = samples.iter().find(|s| s.name == "ps_rss_bytes").unwrap();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        rss.labels.get("exe").map(String::as_str),
        Some(exe.to_str().unwrap())
    );
}

// ---------------------------------------------------------------------------------------
// Imports the host does not provide, and other contract versions.

/// The `hang` test plugin with every occurrence of `from` replaced by `to` (same length),
/// written to `dir`: a real component importing something else.
fn patched_hang(dir: &std::path::Path, from: &str, to: &str) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(test_plugin("hang")).unwrap();
    let mut found = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from.as_bytes() {
            bytes[i..i + from.len()].copy_from_slice(to.as_bytes());
            found += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(found > 0, "{from} not found in hang.wasm");
    let path = dir.join(format!("{}.wasm", to.replace([':', '/', '@', '.'], "_")));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn unknown_imports_and_other_versions_are_refused_clearly() {
    let host = PluginHost::new(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let load = |path: PathBuf| {
        let host = host.clone();
        async move {
            host.load::<Collector>(PluginSpec {
                instance: "odd".into(),
                source: PluginSource::File(path),
                config_json: "null".into(),
                grants: Grants::default(),
                limits: PluginLimits::default(),
            })
            .await
        }
    };
    let types = "telltale:plugin/types@0.3.0";

    let path = patched_hang(dir.path(), types, "telltale:plugin/types@0.4.0");
    let err = load(path.clone()).await.err().expect("refused");
    assert!(matches!(err, PluginError::WrongVersion { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin `odd`: {} was built for telltale:plugin@0.4.0 (it imports \
             `telltale:plugin/types@0.4.0`); this host accepts telltale:plugin@0.3.x: rebuild \
             the plugin against this host's WIT (`sdk/wit`) or a matching telltale-sdk",
            path.display()
        )
    );

    let path = patched_hang(dir.path(), types, "telltale:plugin/tyxes@0.3.0");
    let err = load(path).await.err().expect("refused");
    assert!(matches!(err, PluginError::UnknownImport { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("imports `telltale:plugin/tyxes@0.3.0`, which this host does not provide")
            && msg.contains("`processes`"),
        "{msg}"
    );

    let path = patched_hang(dir.path(), types, "acmecorp:plugin/types@0.3.0");
    let err = load(path).await.err().expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("imports `acmecorp:plugin/types@0.3.0`, which this host does not provide")
            && msg.contains("telltale:plugin/*@0.3.x"),
        "{msg}"
    );

    // A later 0.3 patch version is the same contract: accepted.
    let path = patched_hang(dir.path(), types, "telltale:plugin/types@0.3.9");
    load(path).await.expect("0.3.9 is accepted");

    // The previous minor (`collect` returned a `sample-batch` of records) is refused the
    // same way.
    let path = patched_hang(dir.path(), types, "telltale:plugin/types@0.2.0");
    let err = load(path).await.err().expect("refused");
    assert!(matches!(err, PluginError::WrongVersion { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("was built for telltale:plugin@0.2.0")
            && err
                .to_string()
                .contains("this host accepts telltale:plugin@0.3.x"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Hostile plugins: each contained, named, and usable again afterwards.

#[tokio::test]
async fn a_huge_allocation_hits_the_memory_limit() {
    let host = PluginHost::new(None).unwrap();
    let mut alloc = host
        .load::<Collector>(spec(
            "alloc",
            "alloc",
            serde_json::Value::Null,
            Grants::default(),
        ))
        .await
        .unwrap();
    let start = Instant::now();
    let err = alloc.call(()).await.unwrap_err();
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin `alloc`: memory limit 64 MiB exceeded in collect(); the plugin was stopped"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(!alloc.is_live());

    // A small allocation within the limit works.
    let mut ok = host
        .load::<Collector>(spec(
            "alloc-small",
            "alloc",
            serde_json::json!({ "mib": 1 }),
            Grants::default(),
        ))
        .await
        .unwrap();
    let samples = ok.call(()).await.unwrap();
    assert_eq!(value(&samples, "alloc_bytes"), f64::from(1 << 20));
}

#[tokio::test]
async fn unbounded_recursion_is_a_contained_trap() {
    let host = PluginHost::new(None).unwrap();
    let mut recurse = host
        .load::<Collector>(spec(
            "recurse",
            "recurse",
            serde_json::Value::Null,
            Grants::default(),
        ))
        .await
        .unwrap();
    for _ in 0..2 {
        let err = recurse.call(()).await.unwrap_err();
        assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("plugin `recurse`: collect() crashed: ")
                && msg.contains("call stack exhausted"),
            "{msg}"
        );
        assert!(!recurse.is_live());
    }
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let host = PluginHost::new(None).unwrap();
    let mut panic = host
        .load::<Collector>(spec(
            "panic",
            "panic",
            serde_json::Value::Null,
            Grants::default(),
        ))
        .await
        .unwrap();
    let err = panic.call(()).await.unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("plugin `panic`: collect() crashed: panicked at ")
            && msg.contains("the panic plugin gave up after 1 call(s)"),
        "{msg}"
    );
}

#[tokio::test]
async fn floods_are_refused_naming_the_limit_and_its_value() {
    let host = PluginHost::new(None).unwrap();
    let run = |config: serde_json::Value, limits: PluginLimits| {
        let host = host.clone();
        async move {
            let mut s = spec("flood", "flood", config, Grants::default());
            s.limits = limits;
            let mut flood = host.load::<Collector>(s).await.unwrap();
            let err = flood.call(()).await.unwrap_err();
            assert!(!flood.is_live(), "a flooding instance is discarded");
            err
        }
    };
    // Room to build the flood: memory, and time on a loaded machine.
    let roomy = PluginLimits {
        memory: ByteSize(512 << 20),
        timeout: HumanDuration(Duration::from_secs(30)),
        ..PluginLimits::default()
    };

    let err = run(serde_json::json!({ "samples": 1_000_000 }), roomy.clone()).await;
    assert!(matches!(err, PluginError::LimitExceeded { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin `flood`: collect() returned 1000000 samples, more than limits.max_samples = 100000"
    );

    let err = run(
        serde_json::json!({ "samples": 1, "name_bytes": 1 << 20 }),
        roomy.clone(),
    )
    .await;
    let msg = err.to_string();
    assert!(
        msg.contains("returned sample #0 with a 1048576-byte name")
            && msg.contains("longer than limits.max_name_bytes = 256"),
        "{msg}"
    );

    let err = run(
        serde_json::json!({ "samples": 1, "label_value_bytes": 10 << 20 }),
        roomy.clone(),
    )
    .await;
    let msg = err.to_string();
    assert!(
        msg.contains(
            "label `blob` has a 10485760-byte value, longer than limits.max_label_bytes = 1024"
        ),
        "{msg}"
    );

    // Millions of samples under the default 64 MiB cannot even be built: the memory limit
    // stops the plugin first, which is what bounds the host's copy of any returned list.
    let err = run(
        serde_json::json!({ "samples": 5_000_000 }),
        PluginLimits {
            timeout: HumanDuration(Duration::from_secs(30)),
            ..PluginLimits::default()
        },
    )
    .await;
    assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err:?}");

    // Configured limits are the ones applied.
    let tight = PluginLimits {
        max_samples: 10,
        ..PluginLimits::default()
    };
    let err = run(serde_json::json!({ "samples": 11 }), tight).await;
    assert!(
        err.to_string()
            .ends_with("returned 11 samples, more than limits.max_samples = 10"),
        "{err}"
    );
}

#[tokio::test]
async fn excess_output_is_dropped_and_the_call_still_succeeds() {
    let host = PluginHost::new(None).unwrap();
    let mut s = spec(
        "chatty",
        "flood",
        serde_json::json!({ "samples": 1, "output_bytes": 1 << 20 }),
        Grants::default(),
    );
    s.limits.max_output_bytes = ByteSize(4 << 10);
    let mut chatty = host.load::<Collector>(s).await.unwrap();
    let start = Instant::now();
    let samples = chatty.call(()).await.unwrap();
    assert_eq!(samples.len(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn forbidden_files_are_refused_through_wasi_and_the_host_import() {
    let host = PluginHost::new(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("allowed.txt"), "fine").unwrap();
    let grants = Grants {
        files: vec![dir.path().to_path_buf()],
        ..Grants::default()
    };
    for mode in ["wasi", "host"] {
        let mut snoop = host
            .load::<Collector>(spec(
                "snoop",
                "snoop",
                serde_json::json!({ "mode": mode }),
                grants.clone(),
            ))
            .await
            .unwrap();
        let err = snoop.call(()).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "plugin `snoop`: collect() failed: reading /etc/passwd through {mode} was refused"
            )),
            "{msg}"
        );
        assert!(!msg.contains("LEAKED"), "{msg}");
        if mode == "host" {
            assert!(
                msg.contains("plugin `snoop` may not read `/etc/passwd`"),
                "{msg}"
            );
        }
    }
    // The granted directory is readable through the host import (and only through it).
    let inside = dir.path().join("allowed.txt");
    for (mode, leaked) in [("host", true), ("wasi", false)] {
        let mut snoop = host
            .load::<Collector>(spec(
                "snoop",
                "snoop",
                serde_json::json!({ "mode": mode, "path": inside }),
                grants.clone(),
            ))
            .await
            .unwrap();
        let msg = snoop.call(()).await.unwrap_err().to_string();
        assert_eq!(msg.contains("LEAKED 4 bytes"), leaked, "{mode}: {msg}");
    }
}

#[tokio::test]
async fn slow_calls_succeed_under_the_deadline_and_stop_over_it() {
    let host = PluginHost::new(None).unwrap();
    let deadline = Duration::from_millis(300);
    let run = |ms: u64, mode: &'static str| {
        let host = host.clone();
        async move {
            let mut s = spec(
                "slow",
                "slow",
                serde_json::json!({ "ms": ms, "mode": mode }),
                Grants::default(),
            );
            s.limits.timeout = HumanDuration(deadline);
            let mut slow = host.load::<Collector>(s).await.unwrap();
            let start = Instant::now();
            let result = slow.call(()).await;
            (result, start.elapsed())
        }
    };
    for mode in ["spin", "sleep"] {
        let (result, _) = run(50, mode).await;
        let samples = result.unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(value(&samples, "slow_elapsed_ms") >= 50.0);
    }
    // Spinning is stopped at the deadline by the epoch check.
    let (result, took) = run(5_000, "spin").await;
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `slow`: collect() exceeded its 300ms deadline and was stopped"
    );
    assert!(took < deadline + Duration::from_millis(200), "{took:?}");
    // Sleeping in a host call is stopped too (within the grace period).
    let (result, took) = run(5_000, "sleep").await;
    assert!(
        matches!(result, Err(PluginError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        took < deadline + limits::DEADLINE_GRACE + Duration::from_millis(300),
        "{took:?}"
    );
}

/// The hand-written `tables` plugin (`tests/plugins/tables/tables.wat`, a core module),
/// wrapped into a component of the `collector` world as the Rust toolchain would.
fn tables_component(dir: &std::path::Path) -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut module = wat::parse_file(root.join("tests/plugins/tables/tables.wat")).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_file(root.join("sdk/wit/plugin.wit")).unwrap();
    let world = resolve.select_world(&[package], Some("collector")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .unwrap()
        .encode()
        .unwrap();
    let path = dir.join("tables.wasm");
    std::fs::write(&path, component).unwrap();
    path
}

#[tokio::test]
async fn tables_count_against_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = PluginHost::new(None).unwrap();
    let mut s = spec(
        "tables",
        "tables",
        serde_json::Value::Null,
        Grants::default(),
    );
    s.source = PluginSource::File(tables_component(dir.path()));
    s.limits.memory = ByteSize(16 << 20);
    let mut tables = host.load::<Collector>(s).await.unwrap();
    // 100 tables of 2^20 elements would hold about 800 MiB of host memory; under a
    // 16 MiB cap the second one is refused and the instance stopped.
    for _ in 0..2 {
        let err = tables.call(()).await.unwrap_err();
        assert!(matches!(err, PluginError::MemoryLimit { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "plugin `tables`: memory limit 16 MiB exceeded in collect(); the plugin was stopped"
        );
        assert!(!tables.is_live());
    }
}

#[tokio::test]
async fn proc_grants_reach_metrics_files_and_never_secrets() {
    if !std::path::Path::new("/proc/self/environ").exists() {
        return; // not Linux
    }
    let host = PluginHost::new(None).unwrap();
    let run = |path: String, grant: &'static str| {
        let host = host.clone();
        async move {
            let grants = Grants {
                files: vec![PathBuf::from(grant)],
                ..Grants::default()
            };
            let mut snoop = host
                .load::<Collector>(spec(
                    "snoop",
                    "snoop",
                    serde_json::json!({ "mode": "host", "path": path }),
                    grants,
                ))
                .await
                .unwrap();
            snoop.call(()).await.unwrap_err().to_string()
        }
    };
    // What collectors need is readable.
    for ok in [
        "/proc/stat",
        "/proc/meminfo",
        "/proc/self/stat",
        "/proc/self/mountinfo",
        "/proc/net/dev",
        "/proc/1/status",
    ] {
        let msg = run(ok.to_string(), "/proc").await;
        assert!(msg.contains("LEAKED"), "{ok}: {msg}");
    }
    // Secrets, memory and socket tables are not, even under a grant of `/`.
    let me = std::process::id();
    for (bad, why) in [
        ("/proc/self/environ".to_string(), "environment"),
        (format!("/proc/{me}/environ"), "environment"),
        ("/proc/1/environ".to_string(), "environment"),
        ("/proc/self/cmdline".to_string(), "arguments"),
        ("/proc/self/maps".to_string(), "memory"),
        ("/proc/self/stack".to_string(), "memory"),
        ("/proc/self/syscall".to_string(), "memory"),
        ("/proc/self/auxv".to_string(), "memory"),
        ("/proc/net/tcp".to_string(), "socket"),
        ("/proc/kmsg".to_string(), "kernel log"),
    ] {
        for grant in ["/proc", "/"] {
            let msg = run(bad.clone(), grant).await;
            assert!(!msg.contains("LEAKED"), "{bad} under {grant}: {msg}");
            // Some of these do not exist or are root-only on every machine; those that
            // exist must be refused by the policy, with the reason.
            if std::path::Path::new(&bad).exists() {
                assert!(msg.contains("may not read"), "{bad}: {msg}");
                assert!(msg.contains(why), "{bad}: {msg}");
            }
        }
    }
    // `/proc/self/root` leads back to `/`: the prefix check sees the real path.
    let msg = run("/proc/self/root/etc/hostname".to_string(), "/proc").await;
    assert!(msg.contains("not under a granted prefix"), "{msg}");
}

/// Makes a FIFO at `path`.
#[cfg(unix)]
fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[cfg(unix)]
#[tokio::test]
async fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let host = PluginHost::new(None).unwrap();
    let mut s = spec(
        "snoop",
        "snoop",
        serde_json::json!({ "mode": "host", "path": fifo }),
        Grants {
            files: vec![dir.path().to_path_buf()],
            ..Grants::default()
        },
    );
    s.limits.timeout = HumanDuration(Duration::from_secs(2));
    let mut snoop = host.load::<Collector>(s).await.unwrap();
    let start = Instant::now();
    let msg = snoop.call(()).await.unwrap_err().to_string();
    assert!(
        msg.contains("is not a regular file (it is a FIFO)"),
        "{msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_read_that_blocks_is_abandoned_at_the_deadline_and_not_repeated() {
    // A FIFO opened *blocking* stands in for a file whose read never returns (a hung
    // network file system): the reader thread blocks in `open` until a writer comes.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let access = Arc::new(file_read::FileAccess::new(
        "stuck",
        &[dir.path().to_path_buf()],
        1024,
    ));
    let path = fifo.to_str().unwrap().to_string();
    let blocking = {
        let path = path.clone();
        move || std::fs::read(&path).map_err(|e| e.to_string())
    };
    let start = Instant::now();
    let err = access
        .read_with(path.clone(), Duration::from_millis(200), blocking)
        .await
        .unwrap_err();
    assert!(
        err.contains("did not finish before the call's deadline"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // The thread is still stuck: the next read is refused at once instead of adding one.
    let err = access
        .read(path.clone(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.contains("has not returned"), "{err}");
    // A writer releases it; reads work again.
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(writer);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let result = access.read(path.clone(), Duration::from_secs(1)).await;
        match result {
            Err(e) if e.contains("has not returned") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                assert!(e.contains("not a regular file"), "{e}");
                break;
            }
            Ok(_) => panic!("a FIFO was read"),
        }
    }
}

/// Collects what `tracing` logs on this thread while the guard lives.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn host_log_is_capped_per_call_and_the_drop_reported() {
    let capture = LogCapture::default();
    let _guard = capture.install();
    let host = PluginHost::new(None).unwrap();
    let mut s = spec(
        "logger",
        "flood",
        // 1 MiB of log lines in one call; the cap is 4 KiB.
        serde_json::json!({ "samples": 1, "log_bytes": 1 << 20 }),
        Grants::default(),
    );
    s.limits.max_log_bytes = ByteSize(4 << 10);
    let mut logger = host.load::<Collector>(s).await.unwrap();
    for _ in 0..2 {
        let samples = logger.call(()).await.unwrap();
        assert_eq!(samples.len(), 1);
    }
    let text = capture.text();
    let kept = text
        .lines()
        .filter(|l| l.contains(&"y".repeat(100)))
        .count();
    // 17 messages of 100 bytes (plus 128 per line) fit in 4 KiB, per call.
    assert_eq!(kept, 34, "{} bytes of log", text.len());
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("logged more than limits.max_log_bytes"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains(
            "collect() logged more than limits.max_log_bytes = 4 KiB; 10468 message(s) \
             (1046800 bytes) dropped"
        ),
        "{}",
        warnings[0]
    );
    assert!(text.len() < 64 << 10, "{} bytes of log", text.len());
}

#[test]
fn empty_log_messages_are_not_free() {
    let mut budget = instance::LogBudget::new(64 << 10);
    let admitted = (0..1_000_000).take_while(|_| budget.admit(0)).count();
    assert_eq!(admitted as u64, (64 << 10) / instance::LOG_LINE_COST);
}
