//! The standard `prometheus` scraper through the real binary: `telltale plugin run` against
//! a loopback server serving the Ray Serve 2.60 fixture (every sample, exact values, the
//! `Accept` header, a down target, the missing grant), and `telltale run` where a rule on a
//! scraped `ray_serve_*` metric fires to the webhook receiver.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Engine, Receiver, StaticServer, assert_signed, closed_port, ray_fixture, telltale,
};

/// Samples in the fixture (checked independently by the formats crate's tests).
const RAY_SAMPLES: usize = 1599;

/// Runs `telltale ARGS` with its own data dir, killing it after two minutes.
fn tt(data: &Path, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = telltale()
        .args(args)
        .env("XDG_DATA_HOME", data)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start telltale");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("telltale {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[serde_json::Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().expect("a number"))
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

#[test]
fn plugin_run_scrapes_the_ray_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let server = StaticServer::start(ray_fixture(), "text/plain; version=0.0.4; charset=utf-8");
    let down = closed_port();
    let config = format!(
        r#"{{"targets": [{{"url": "{}", "name": "ray-head", "labels": {{"service": "ray", "NodeAddress": "head"}}}},
                         {{"url": "http://{down}/metrics"}}]}}"#,
        server.url
    );
    let out = tt(
        dir.path(),
        &[
            "plugin",
            "run",
            "prometheus",
            "--config",
            &config,
            "--grant",
            &format!("http={}", server.host_port),
            "--grant",
            &format!("http={down}"),
            "--count",
            "2",
            "--interval",
            "100ms",
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let all = json_lines(&out);
    let samples: Vec<serde_json::Value> = all.iter().filter(|s| s["call"] == 1).cloned().collect();
    assert_eq!(
        samples.len(),
        RAY_SAMPLES + 2 * 4,
        "every sample plus 4 per target"
    );
    assert_eq!(
        all.len(),
        2 * samples.len(),
        "the second call scrapes the same"
    );

    let head = [("instance", server.host_port.as_str()), ("job", "ray-head")];
    assert_eq!(value(&samples, "up", &head), 1.0);
    assert_eq!(
        value(&samples, "scrape_samples_scraped", &head),
        RAY_SAMPLES as f64
    );
    assert_eq!(
        value(&samples, "scrape_samples_post_filter", &head),
        RAY_SAMPLES as f64
    );
    let took = value(&samples, "scrape_duration_seconds", &head);
    assert!(took > 0.0 && took < 2.0, "{took}");
    // The down target: up 0, no samples, and the others were still scraped.
    let gone = [("instance", down.as_str())];
    assert_eq!(value(&samples, "up", &gone), 0.0);
    assert_eq!(value(&samples, "scrape_samples_scraped", &gone), 0.0);
    assert!(
        stderr.matches("is down").count() == 1,
        "the failure is logged once, not on every call: {stderr}"
    );

    // Exact values, with the target's labels added.
    assert_eq!(
        value(&samples, "process_open_fds", &[("service", "ray")]),
        52.0
    );
    assert_eq!(
        value(
            &samples,
            "ray_serve_num_http_requests_total",
            &[("job", "ray-head")]
        ),
        200.0
    );
    assert_eq!(
        value(
            &samples,
            "ray_serve_http_request_latency_ms_bucket",
            &[("le", "20.0"), ("route", "/extract")]
        ),
        67.0
    );
    assert_eq!(
        value(
            &samples,
            "python_info",
            &[
                ("version", "3.11.7"),
                ("instance", server.host_port.as_str())
            ]
        ),
        1.0
    );
    // honor_labels: false: the scraped `NodeAddress` clashes with the target's.
    let s = samples
        .iter()
        .find(|s| s["name"] == "ray_serve_num_http_requests_total")
        .unwrap();
    assert_eq!(s["labels"]["NodeAddress"], "head");
    assert_eq!(s["labels"]["exported_NodeAddress"], "192.0.2.2");

    // Prometheus' content negotiation.
    let accepts = server.accepts();
    assert_eq!(
        accepts,
        ["application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"; 2]
    );
}

#[test]
fn plugin_run_filters_by_name_and_needs_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let server = StaticServer::start(ray_fixture(), "text/plain; version=0.0.4");
    let config = format!(
        r#"{{"targets": [{{"url": "{}"}}], "allow": ["ray_serve_.*"], "deny": [".*_bucket"]}}"#,
        server.url
    );
    let grant = format!("http={}", server.host_port);
    let args = ["plugin", "run", "prometheus", "--config", &config, "--json"];
    let out = tt(dir.path(), &[&args[..], &["--grant", &grant]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = json_lines(&out);
    let fixture = ray_fixture();
    let expected = fixture
        .lines()
        .filter(|l| l.starts_with("ray_serve_") && !l.contains("_bucket{"))
        .count();
    assert_eq!(samples.len(), expected + 4);
    let instance = [("instance", server.host_port.as_str())];
    assert_eq!(
        value(&samples, "scrape_samples_post_filter", &instance),
        expected as f64
    );
    assert_eq!(
        value(&samples, "scrape_samples_scraped", &instance),
        RAY_SAMPLES as f64
    );

    // Without the grant the plugin is refused at load, with the flag to add.
    let out = tt(dir.path(), &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not granted"), "{err}");
    assert!(err.contains("--grant http="), "{err}");
}

/// Fires while the scraped Ray Serve head has answered at least 200 HTTP requests.
const RAY_RULE: &str = r#"// a rule on a scraped Ray Serve counter
const RULE = #{
    name: "ray_requests_seen",
    severity: "warning",
    summary: "Ray Serve has served requests",
};

fn evaluate() {
    let n = metric("ray_serve_num_http_requests_total", #{ job: "ray-serve" });
    if n != () && n >= 200 { alert(n, #{ service: "ray" }) } else { [] }
}
"#;

#[test]
fn run_scrapes_and_a_rule_on_a_ray_metric_fires() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    // The latency histogram starts empty and the fixture's counts arrive in a later scrape,
    // so that the example's p95 over the last 5 minutes sees them as new observations.
    let empty_histogram: String = ray_fixture()
        .lines()
        .map(|l| match l.rsplit_once(' ') {
            Some((series, _)) if l.starts_with("ray_serve_http_request_latency_ms_bucket{") => {
                format!("{series} 0.0\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let server = StaticServer::start(empty_histogram, "text/plain; version=0.0.4");
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/ray.rhai"), RAY_RULE).unwrap();
    // The example's rules, run for real; the p95 threshold lowered so that it fires on the
    // fixture (whose p95 is 47.74 ms).
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/feature-extraction/rules");
    for entry in std::fs::read_dir(&example).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if path.ends_with("p95_latency.rhai") {
            assert!(text.contains("let threshold_ms = 500.0;"));
            text.replace("let threshold_ms = 500.0;", "let threshold_ms = 40.0;")
        } else {
            text
        };
        std::fs::write(
            dir.path().join("rules").join(path.file_name().unwrap()),
            text,
        )
        .unwrap();
    }
    let config = dir.path().join("telltale.yaml");
    std::fs::write(
        &config,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 5s
collectors:
  - name: ray
    plugin: prometheus
    interval: 200ms
    grants:
      http: ["{host_port}"]
    config:
      targets:
        - url: "{url}"
          name: ray-serve
rules:
  dir: rules
notifiers:
  - name: hook
    kind: webhook
    url: {hook}
    secret: ${{E2E_WEBHOOK_SECRET}}
    timeout: 2s
"#,
            host_port = server.host_port,
            url = server.url,
            hook = receiver.url
        ),
    )
    .unwrap();
    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );
    let firing = receiver.wait_for(Duration::from_secs(60), "a firing notification", |r| {
        r.json()["status"] == "firing" && r.json()["alert"]["rule"] == "ray_requests_seen"
    });
    assert_signed(&firing, SECRET);
    let body = firing.json();
    assert_eq!(body["alert"]["rule"], "ray_requests_seen");
    assert_eq!(body["alert"]["labels"]["service"], "ray");
    assert_eq!(body["alert"]["value"].as_f64(), Some(200.0));
    server.set_body(ray_fixture());

    // p95 from the `_bucket` series' increase since the empty scrapes: 200 requests, 67 at
    // or under 20 ms, all 200 at or under 50 ms, so rank 190 lies 123/133 of the way
    // through (20, 50].
    let p95 = receiver.wait_for(Duration::from_secs(60), "the example's p95 alert", |r| {
        r.json()["status"] == "firing" && r.json()["alert"]["rule"] == "ray_serve_p95_latency_high"
    });
    let body = p95.json();
    assert_eq!(body["alert"]["labels"]["route"], "/extract");
    let value = body["alert"]["value"].as_f64().unwrap();
    let expected = 20.0 + 30.0 * 123.0 / 133.0;
    assert!((value - expected).abs() < 1e-9, "{value} vs {expected}");
    // The endpoint is up and nothing queues: those example rules stay quiet.
    let fired: Vec<String> = receiver
        .all()
        .iter()
        .map(|r| r.json()["alert"]["rule"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        fired
            .iter()
            .all(|r| r == "ray_requests_seen" || r == "ray_serve_p95_latency_high"),
        "{fired:?}"
    );
    let status = engine.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        engine.output()
    );
}
