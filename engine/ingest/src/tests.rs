//! Tests of the ingest endpoints against a real server on 127.0.0.1 (port 0), with a real
//! HTTP client and real UDP datagrams. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::limits::Reason;
use super::*;
use telltale_config::IngestConfig;
use telltale_model::{Labels, now_ms};
use telltale_store::{SeriesStore, StoreLimits};

struct Server {
    url: String,
    udp: Option<SocketAddr>,
    store: Arc<SeriesStore>,
    shared: Arc<Shared>,
    client: reqwest::Client,
    _stop: watch::Sender<bool>,
}

async fn start(yaml: &str) -> Server {
    let cfg: IngestConfig = serde_yaml::from_str(yaml).expect("test config");
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let ingest = Ingest::bind(&cfg, Duration::from_secs(3600), store.clone())
        .await
        .expect("bind");
    let url = format!("http://{}", ingest.http_addr().expect("http addr"));
    let udp = ingest.statsd_addr();
    let shared = ingest.shared.clone();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(ingest.run(rx));
    Server {
        url,
        udp,
        store,
        shared,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        _stop: tx,
    }
}

const BASIC: &str = "http: { listen: \"127.0.0.1:0\" }";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Server {
    fn value(&self, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        let hits = self.store.latest(name, &labels(pairs), now_ms() + 1000);
        match hits.as_slice() {
            [] => None,
            [(_, p)] => Some(p.value),
            many => panic!("{name}: {} series match", many.len()),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    async fn put(&self, path: &str, body: &str) -> (u16, String) {
        self.send(reqwest::Method::PUT, path, TEXT, body).await
    }

    async fn post(&self, path: &str, content_type: &str, body: &str) -> (u16, String) {
        self.send(reqwest::Method::POST, path, content_type, body)
            .await
    }
}

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_put_post_delete_like_the_pushgateway() {
    let s = start(BASIC).await;
    let inst = base64::engine::general_purpose::URL_SAFE.encode("host/a b");
    let path = format!("/metrics/job/nightly/instance@base64/{inst}");
    let body = "# TYPE jobs_done counter\njobs_done 3\n\
                # TYPE queue gauge\nqueue{job=\"sneaky\",q=\"x\"} 7\n";
    assert_eq!(s.put(&path, body).await, (200, String::new()));
    let g = [("job", "nightly"), ("instance", "host/a b")];
    assert_eq!(s.value("jobs_done", &g), Some(3.0));
    // The grouping key wins over a sample's own `job` label.
    assert_eq!(
        s.value("queue", &[("job", "nightly"), ("q", "x")]),
        Some(7.0)
    );
    assert!(s.value("queue", &[("job", "sneaky")]).is_none());
    let pushed = s.value("push_time_seconds", &g).expect("push time");
    assert!((pushed - now_ms() as f64 / 1000.0).abs() < 60.0);

    // POST replaces only the families it carries.
    let (code, _) = s
        .post(&path, TEXT, "# TYPE jobs_done counter\njobs_done 4\n")
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.value("jobs_done", &g), Some(4.0));
    assert_eq!(s.value("queue", &[("q", "x")]), Some(7.0), "kept by POST");

    // PUT replaces the group: `queue` goes from the store at once.
    assert_eq!(s.put(&path, "jobs_done 5\n").await.0, 200);
    assert_eq!(s.value("jobs_done", &g), Some(5.0));
    assert!(s.value("queue", &[("q", "x")]).is_none(), "removed by PUT");

    // Another group of the same job is separate; an empty value via `@base64/=` is no label.
    // The path's empty `stage` also clears the sample's own `stage` (the key wins).
    assert_eq!(
        s.put(
            "/metrics/job/nightly/stage@base64/=",
            "jobs_done{stage=\"build\"} 1\n"
        )
        .await
        .0,
        200
    );
    assert!(
        s.store.label_values("jobs_done", "stage").is_empty(),
        "{:?}",
        s.store.label_values("jobs_done", "stage")
    );
    assert_eq!(
        s.store.label_values("jobs_done", "instance"),
        vec!["host/a b"]
    );
    assert_eq!(s.shared.push.lock().group_count(), 2);

    let (code, _) = s.send(reqwest::Method::DELETE, &path, TEXT, "").await;
    assert_eq!(code, 202);
    assert!(s.value("jobs_done", &g).is_none(), "deleted");
    assert!(s.value("push_time_seconds", &g).is_none());
    assert_eq!(s.value("jobs_done", &[("job", "nightly")]), Some(1.0));
    assert_eq!(s.shared.stats.accepted_count(Source::Pushgateway), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_refuses_bad_requests_whole() {
    let s = start(BASIC).await;
    // The first line is valid, the second is not: nothing is stored.
    let (code, body) = s.put("/metrics/job/j", "good 1\nbad{le=\"x\" 2\n").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with("line 2, column 12:"), "{body}");
    assert!(
        body.contains("nothing of this request was stored"),
        "{body}"
    );
    assert!(s.value("good", &[]).is_none());
    assert_eq!(s.shared.push.lock().group_count(), 0);

    let (code, body) = s.put("/metrics/job/j", "a 1\nts 2 1700000000000\n").await;
    assert_eq!(code, 400);
    assert!(
        body.contains("line 2, column 1: sample `ts` carries a timestamp"),
        "{body}"
    );

    let (code, body) = s
        .send(
            reqwest::Method::PUT,
            "/metrics/job/j",
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
            "\u{1}",
        )
        .await;
    assert_eq!(code, 415);
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");

    for (path, needle) in [
        ("/metrics/job/j/instance", "label `instance` has no value"),
        ("/metrics/jobs/j", "must start with /metrics/job/"),
        ("/metrics/job/j/x@base64/!!!", "not valid URL-safe base64"),
        ("/metrics/job/j/x/1/x/2", "appears twice"),
        ("/metrics/job@base64/=", "job name must not be empty"),
    ] {
        let (code, body) = s.put(path, "a 1\n").await;
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    // OpenMetrics by Content-Type: `# EOF` is required.
    let om = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let (code, body) = s.post("/metrics/job/om", om, "a_total 1\n").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        s.post("/metrics/job/om", om, "a_total 1\n# EOF\n").await.0,
        200
    );
    assert_eq!(s.value("a_total", &[("job", "om")]), Some(1.0));
    assert_eq!(
        s.shared
            .stats
            .rejected_count(Source::Pushgateway, Reason::Parse),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_series_budget_follows_put_post_delete() {
    // 6 series for the source, `push_time_seconds` included (one per group).
    let s = start("http: { listen: \"127.0.0.1:0\" }\nlimits: { max_series_per_source: 6 }").await;
    // Pushed series in the store (the self-metrics live there too).
    let pushed = |s: &Server| {
        ["a", "b", "c", "d", "e", "push_time_seconds"]
            .iter()
            .map(|n| s.store.window(n, &Labels::new(), 0).len())
            .sum::<usize>()
    };
    let three = "a{i=\"1\"} 1\na{i=\"2\"} 1\nb 1\n";
    assert_eq!(s.put("/metrics/job/one", three).await.0, 200); // 4 series
    // Re-pushing the same group replaces its series, it does not add to them.
    assert_eq!(s.put("/metrics/job/one", three).await.0, 200);
    assert_eq!(s.put("/metrics/job/one", three).await.0, 200);
    let (code, body) = s.put("/metrics/job/two", "c 1\nd 1\n").await; // would be 7
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("would hold 7 series"), "{body}");
    assert!(s.value("c", &[]).is_none(), "nothing of it stored");
    // POST replaces family `a` (2 series → 1) and keeps `b`: 3 series in group one.
    assert_eq!(
        s.post("/metrics/job/one", TEXT, "a{i=\"3\"} 3\n").await.0,
        200
    );
    assert!(s.value("a", &[("i", "1")]).is_none(), "replaced by POST");
    assert_eq!(s.value("a", &[("i", "3")]), Some(3.0));
    assert_eq!(s.value("b", &[("job", "one")]), Some(1.0), "kept by POST");
    assert_eq!(pushed(&s), 3);
    assert_eq!(s.put("/metrics/job/two", "c 1\nd 1\n").await.0, 200); // 3 + 3
    assert_eq!(pushed(&s), 6);
    let (code, _) = s.put("/metrics/job/three", "e 1\n").await;
    assert_eq!(code, 400, "full");
    // DELETE gives the group's series back to the budget and removes them from the store.
    let (code, _) = s
        .send(reqwest::Method::DELETE, "/metrics/job/one", TEXT, "")
        .await;
    assert_eq!(code, 202);
    assert_eq!(pushed(&s), 3);
    assert_eq!(s.put("/metrics/job/three", "e 1\n").await.0, 200);
    assert_eq!(pushed(&s), 5);
    assert!(
        s.value("a", &[("i", "3")]).is_none(),
        "deleted with its group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_pushes_of_the_same_shape_keep_exactly_their_series() {
    let s = start(BASIC).await;
    let series = |s: &Server| {
        let mut v = s.store.label_values("a", "i");
        v.extend(s.store.label_values("b", "i"));
        v
    };
    // The same series in the same order: values move, nothing else changes.
    assert_eq!(
        s.put("/metrics/job/j", "a{i=\"1\"} 1\na{i=\"2\"} 2\n")
            .await
            .0,
        200
    );
    assert_eq!(
        s.put("/metrics/job/j", "a{i=\"1\"} 5\na{i=\"2\"} 6\n")
            .await
            .0,
        200
    );
    assert_eq!(s.value("a", &[("i", "2")]), Some(6.0));
    assert_eq!(series(&s), vec!["1", "2"]);
    // Same family, same count, one series different: the vanished one goes.
    assert_eq!(
        s.put("/metrics/job/j", "a{i=\"1\"} 7\na{i=\"3\"} 8\n")
            .await
            .0,
        200
    );
    assert_eq!(series(&s), vec!["1", "3"]);
    // Same order but one family fewer (PUT): its series go.
    assert_eq!(
        s.put("/metrics/job/j", "a{i=\"1\"} 1\nb{i=\"9\"} 1\n")
            .await
            .0,
        200
    );
    assert_eq!(series(&s), vec!["1", "9"]);
    assert_eq!(s.put("/metrics/job/j", "a{i=\"1\"} 2\n").await.0, 200);
    assert_eq!(series(&s), vec!["1"], "family b left with the PUT");
    // POST of an unchanged family keeps the others.
    assert_eq!(
        s.post("/metrics/job/j", TEXT, "b{i=\"9\"} 3\n").await.0,
        200
    );
    assert_eq!(
        s.post("/metrics/job/j", TEXT, "b{i=\"9\"} 4\n").await.0,
        200
    );
    assert_eq!(series(&s), vec!["1", "9"]);
    assert_eq!(s.value("b", &[("i", "9")]), Some(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_groups_are_republished_then_expire() {
    let s = start(
        "http: { listen: \"127.0.0.1:0\" }\npushgateway: { republish: 50ms, expire_after: 400ms }",
    )
    .await;
    assert_eq!(s.put("/metrics/job/short", "alive 1\n").await.0, 200);
    let first = s.store.window("alive", &Labels::new(), 0)[0].points.len();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let later = s.store.window("alive", &Labels::new(), 0)[0].points.len();
    assert!(later >= first + 2, "republished: {first} → {later} points");
    // Self-metrics are written on the same tick.
    assert_eq!(s.value("telltale_ingest_push_groups", &[]), Some(1.0));
    assert_eq!(
        s.value(
            "telltale_ingest_samples_total",
            &[("source", "pushgateway")]
        ),
        Some(1.0)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(s.value("alive", &[]).is_none(), "expired and removed");
    assert_eq!(s.shared.push.lock().group_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_v2_and_v1_with_precision() {
    let s = start(BASIC).await;
    let (code, body) = s
        .post(
            "/api/v2/write?org=o&bucket=b&precision=s",
            "text/plain",
            "cpu,host=a usage=12.5,cores=8i 1700000000\n",
        )
        .await;
    assert_eq!((code, body.as_str()), (204, ""));
    let w = s.store.window("cpu_usage", &labels(&[("host", "a")]), 0);
    assert_eq!(w[0].points[0].timestamp_ms, 1_700_000_000_000);
    assert_eq!(w[0].points[0].value, 12.5);
    assert_eq!(
        s.store.window("cpu_cores", &Labels::new(), 0)[0].points[0].value,
        8.0
    );

    // v1: minutes; v2 does not take them.
    let (code, _) = s
        .post("/write?db=x&precision=m", "", "mem value=1 28333334\n")
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        s.store.window("mem", &Labels::new(), 0)[0].points[0].timestamp_ms,
        28_333_334 * 60_000
    );
    let (code, body) = s
        .post("/api/v2/write?precision=m", "", "mem value=1\n")
        .await;
    assert_eq!(code, 400);
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["code"], "invalid");
    assert!(j["hint"].as_str().unwrap().contains("ns, us, ms, s"));

    // A malformed request: 400 with line and column, nothing stored, then a valid one works.
    let (code, body) = s
        .post(
            "/api/v2/write",
            "",
            "fresh,host=a value=1\nfresh,host=b value=abc\n",
        )
        .await;
    assert_eq!(code, 400);
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (j["line"].as_u64(), j["column"].as_u64()),
        (Some(2), Some(20))
    );
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2, column 20:"),
        "{j}"
    );
    assert_eq!(j["error"], j["message"], "Influx v1 clients read `error`");
    assert!(
        s.value("fresh", &[]).is_none(),
        "nothing of the bad request"
    );
    let (code, _) = s.post("/api/v2/write", "", "fresh,host=b value=2\n").await;
    assert_eq!(code, 204);
    assert_eq!(s.value("fresh", &[]), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_batches_and_their_errors() {
    let s = start(BASIC).await;
    let (code, body) = s
        .post(
            "/api/v1/samples",
            "application/json",
            r#"{"samples": [
                {"name": "cache_hits", "labels": {"cache": "l1", "empty": ""}, "value": 10},
                {"name": "cache_ratio", "value": "NaN", "timestamp_ms": 1700000000000}
            ]}"#,
        )
        .await;
    assert_eq!((code, body.as_str()), (200, r#"{"stored":2}"#));
    assert_eq!(s.value("cache_hits", &[("cache", "l1")]), Some(10.0));
    assert_eq!(
        s.store.label_values("cache_hits", "empty"),
        Vec::<String>::new(),
        "an empty label is no label"
    );
    let w = s.store.window("cache_ratio", &Labels::new(), 0);
    assert!(w[0].points[0].value.is_nan());

    for (body, path, position) in [
        (
            "{\"samples\": [{\"name\": \"a\", \"value\": 1},\n {\"name\": \"b\", \"value\": true}]}",
            Some("samples[1].value"),
            Some((2, 28)),
        ),
        (
            "{\"samples\": [{\"name\": \"a\", \"valeu\": 1}]}",
            Some("samples[0].valeu"),
            Some((1, 34)),
        ),
        ("{\"samples\": [", Some("samples"), Some((1, 13))),
        (
            "{\"samples\": [{\"name\": \"9lives\", \"value\": 1}]}",
            Some("samples[0].name"),
            None,
        ),
        (
            "{\"samples\": [{\"name\": \"a\", \"labels\": {\"__x\": \"1\"}, \"value\": 1}]}",
            Some("samples[0].labels.__x"),
            None,
        ),
        (
            "{\"samples\": [{\"name\": \"a\", \"value\": \"lots\"}]}",
            Some("samples[0].value"),
            Some((1, 42)),
        ),
    ] {
        let (code, resp) = s.post("/api/v1/samples", "application/json", body).await;
        assert_eq!(code, 400, "{body}: {resp}");
        let j: serde_json::Value = serde_json::from_str(&resp).unwrap();
        assert_eq!(j["path"].as_str(), path, "{body}: {resp}");
        let pos = j["line"]
            .as_u64()
            .map(|l| (l as usize, j["column"].as_u64().unwrap() as usize));
        assert_eq!(pos, position, "{body}: {resp}");
    }
    assert!(s.value("a", &[]).is_none());
    assert!(s.value("b", &[]).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_whole_requests() {
    let s = start(
        "http: { listen: \"127.0.0.1:0\" }\nlimits: { max_body: 1KiB, max_samples_per_request: 3, \
         max_labels_per_sample: 2, max_label_value_length: 8, max_series_per_source: 4 }",
    )
    .await;
    let big = "x value=1\n".repeat(200);
    let (code, body) = s.post("/api/v2/write", "", &big).await;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("ingest.limits.max_body"), "{body}");

    let (code, body) = s
        .post("/api/v2/write", "", "a v=1\nb v=1\nc v=1\nd v=1\n")
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("4 samples; the limit is 3"), "{body}");

    let (code, body) = s
        .post("/api/v2/write", "", "ok v=1\nlong,t=123456789 v=1\n")
        .await;
    assert_eq!(code, 400);
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (j["line"].as_u64(), j["column"].as_u64()),
        (Some(2), Some(8)),
        "{j}"
    );
    assert_eq!(j["reason"], "length");
    assert!(s.value("ok_v", &[]).is_none());

    let (code, body) = s.post("/api/v2/write", "", "m,a=1,b=2,c=3 v=1\n").await;
    assert_eq!(code, 400);
    assert!(body.contains("has 3 labels; the limit is 2"), "{body}");

    // Series per source: 4 allowed; re-sending existing series is fine, a fifth is refused.
    assert_eq!(
        s.post("/api/v2/write", "", "s,i=1 v=1\ns,i=2 v=1\ns,i=3 v=1\n")
            .await
            .0,
        204
    );
    let (code, body) = s
        .post("/api/v2/write", "", "s,i=1 v=2\ns,i=4 v=2\ns,i=5 v=2\n")
        .await;
    assert_eq!(code, 400);
    assert!(
        body.contains(
            "source `ingest:influx` holds 3 series of at most 4; this would add 2 (first new \
             series: s_v{i=\\\"4\\\"})"
        ),
        "{body}"
    );
    assert_eq!(
        s.value("s_v", &[("i", "1")]),
        Some(1.0),
        "nothing of it stored"
    );
    assert_eq!(
        s.post("/api/v2/write", "", "s,i=1 v=3\ns,i=4 v=3\n")
            .await
            .0,
        204
    );
    assert_eq!(s.shared.writer(Source::Influx).usage().0, 4);
    assert_eq!(
        s.shared
            .stats
            .rejected_count(Source::Influx, Reason::SeriesLimit),
        1
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("compress");
    enc.finish().expect("compress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_taken_and_bounded_when_decompressed() {
    let s = start("http: { listen: \"127.0.0.1:0\" }\nlimits: { max_body: 4KiB }").await;
    let send = |path: &'static str, encoding: &'static str, body: Vec<u8>| {
        let req = s
            .client
            .post(format!("{}{path}", s.url))
            .header("content-encoding", encoding)
            .header("content-type", TEXT)
            .body(body);
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.text().await.expect("body"))
        }
    };
    // Influx lines as Telegraf sends them.
    let (code, body) = send(
        "/api/v2/write?precision=s",
        "gzip",
        gzip(b"zipped,host=a v=1.5\n"),
    )
    .await;
    assert_eq!(code, 204, "{body}");
    assert_eq!(s.value("zipped_v", &[("host", "a")]), Some(1.5));
    // A Pushgateway push, compressed.
    let (code, body) = send("/metrics/job/zip", "gzip", gzip(b"pushed_zipped 7\n")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.value("pushed_zipped", &[("job", "zip")]), Some(7.0));

    // A bomb: 1 MiB of lines compresses to far less than the 4 KiB limit, but the
    // limit applies to what it inflates to. Refused, nothing stored.
    let bomb = gzip(&b"bomb v=1\n".repeat(1 << 17));
    assert!(bomb.len() < 4096, "compressed to {} bytes", bomb.len());
    let (code, body) = send("/api/v2/write", "gzip", bomb).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("decompresses to more than the limit of 4096 bytes"),
        "{body}"
    );
    assert!(s.value("bomb_v", &[]).is_none());

    // Not gzip at all, a truncated stream, and an encoding we do not take.
    let (code, body) = send("/api/v2/write", "gzip", b"plain v=1\n".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not valid gzip"), "{body}");
    let mut cut = gzip(b"cut v=1\n");
    cut.truncate(cut.len() - 6);
    assert_eq!(send("/api/v2/write", "gzip", cut).await.0, 400);
    assert!(s.value("cut_v", &[]).is_none());
    let (code, body) = send("/api/v2/write", "br", b"x".to_vec()).await;
    assert_eq!(code, 415, "{body}");
    assert_eq!(
        s.shared
            .stats
            .rejected_count(Source::Influx, Reason::BodySize),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_not_buffered() {
    let s = start("http: { listen: \"127.0.0.1:0\" }\nlimits: { max_in_flight: 1 }").await;
    // A request whose body never completes holds the only slot.
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /api/v2/write HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nslow v=1",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, body) = s.post("/api/v2/write", "", "x v=1\n").await;
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("max_in_flight"), "{body}");
    drop(slow);
    // The slot comes back once the slow client goes away.
    let mut ok = false;
    for _ in 0..50 {
        if s.post("/api/v2/write", "", "x v=1\n").await.0 == 204 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the slot was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_when_configured() {
    let s = start("http: { listen: \"127.0.0.1:0\", token: s3cret }").await;
    let url = format!("{}/api/v2/write", s.url);
    let send = |auth: Option<String>| {
        let mut req = s.client.post(&url).body("t v=1\n");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None).await, 401);
    assert_eq!(send(Some("Bearer nope".into())).await, 401);
    assert!(s.value("t_v", &[]).is_none());
    assert_eq!(send(Some("Bearer s3cret".into())).await, 204);
    assert_eq!(send(Some("Token s3cret".into())).await, 204);
    let basic = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
    assert_eq!(send(Some(format!("Basic {basic}"))).await, 204);
    // Health endpoints stay open.
    let health = s
        .client
        .get(format!("{}/-/healthy", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_datagrams_are_aggregated_and_flushed() {
    let s = start(
        "http: { listen: \"127.0.0.1:0\" }\nstatsd: { listen: \"127.0.0.1:0\", flush_interval: 100ms }",
    )
    .await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = s.udp.expect("udp addr");
    sock.send_to(
        b"hits:1|c|#env:prod\nhits:2|c|@0.5|#env:prod\nthis is not statsd\nlat:10|ms\nlat:30|ms\ntemp:20|g\n",
        to,
    )
    .await
    .unwrap();
    sock.send_to(b"temp:-5|g\nusers:alice|s\nusers:bob|s\nusers:alice|s", to)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.value("users", &[]).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.value("hits", &[("env", "prod")]), Some(5.0));
    assert_eq!(s.value("lat_count", &[]), Some(2.0));
    assert_eq!(s.value("lat_max", &[]), Some(30.0));
    assert_eq!(s.value("temp", &[]), Some(15.0));
    assert_eq!(s.value("users", &[]), Some(2.0));
    assert_eq!(
        s.shared.stats.rejected_count(Source::Statsd, Reason::Parse),
        1
    );
    assert_eq!(s.shared.stats.accepted_count(Source::Statsd), 9);
}

#[test]
fn grouping_paths_decode_like_the_pushgateway() {
    use super::pushgateway::parse_grouping;
    let (g, cleared) =
        parse_grouping("/metrics/job/a%20b/path@base64/L3Zhci90bXA/x@base64/=/").unwrap();
    assert_eq!(g, labels(&[("job", "a b"), ("path", "/var/tmp")]));
    assert_eq!(cleared, vec!["x".to_string()]);
    let (g, cleared) = parse_grouping("/metrics/job@base64/am9iLzE=").unwrap();
    assert_eq!(g, labels(&[("job", "job/1")]));
    assert!(cleared.is_empty());
}

mod hardening;
