//! Push-ingest throughput: Influx line protocol (`POST /api/v2/write`) and Prometheus text
//! (`PUT /metrics/job/…`) over HTTP into the series store, through the real listener on
//! loopback inside this process, beside two baselines on the same bodies in the same run:
//!
//! * parse only (`telltale_formats`), the floor of any ingest path;
//! * parse + check + store in-process (no HTTP), the cost of the engine's own work.
//!
//! Then overload: many more concurrent senders than `max_in_flight`, a body over
//! `max_body`, and a flood of new series beyond `max_series_per_source`, showing that what
//! cannot be taken is refused rather than buffered and that peak RSS (VmHWM) stays put.
//!
//! Run: `cargo bench -p telltale-ingest --bench ingest` (about a minute once built); for profiling
//! one path, `INGEST_BENCH_ONLY=influx` or `=prom` runs only that HTTP measurement. The client
//! runs in the same process and shares the machine's cores with the server, so the HTTP
//! figures include the client's cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use telltale_config::IngestConfig;
use telltale_formats::influx::{Precision, parse_lines};
use telltale_formats::prometheus::{Format, parse_text};
use telltale_ingest::Ingest;
use telltale_model::Sample;
use telltale_store::{SeriesStore, StoreLimits};

/// Lines per request.
const LINES: usize = 10_000;
/// Requests per measured run.
const BATCHES: usize = 60;
/// Concurrent client connections (the machine has 2 cores).
const CONCURRENCY: usize = 2;
const T0_MS: i64 = 1_700_000_000_000;

/// 10,000 Influx lines, 2 fields each (20,000 samples) over 5,000 series per field.
fn influx_body(batch: usize) -> String {
    let mut s = String::with_capacity(LINES * 80);
    for i in 0..LINES {
        let ts = T0_MS + batch as i64 * 1000;
        s.push_str(&format!(
            "bench_cpu,host=h{},core={} user={}.5,system={}.25 {ts}\n",
            i % 500,
            (i / 500) % 10,
            i % 97,
            i % 13
        ));
    }
    s
}

/// 10,000 Prometheus text samples in 10 families of 1,000 series.
fn prom_body() -> String {
    let mut s = String::with_capacity(LINES * 70);
    for f in 0..10 {
        s.push_str(&format!(
            "# HELP bench_req_{f}_total Requests.\n# TYPE bench_req_{f}_total counter\n"
        ));
        for i in 0..LINES / 10 {
            s.push_str(&format!(
                "bench_req_{f}_total{{path=\"/api/v{}\",code=\"{}\"}} {}\n",
                i % 100,
                200 + i / 100,
                i * 3
            ));
        }
    }
    s
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn vm_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rate(samples: usize, took: Duration) -> f64 {
    samples as f64 / took.as_secs_f64()
}

fn to_samples(parsed: Vec<telltale_formats::ParsedSample>) -> Vec<Sample> {
    parsed
        .into_iter()
        .map(|p| Sample {
            name: p.name.into(),
            labels: p.labels.into_iter().collect(),
            value: p.value,
            timestamp_ms: p.timestamp_ms.unwrap_or(T0_MS),
        })
        .collect()
}

struct Server {
    url: String,
    store: Arc<SeriesStore>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn server(yaml: &str, limits: StoreLimits) -> Server {
    let cfg: IngestConfig = serde_yaml::from_str(yaml).expect("bench config");
    let store = Arc::new(SeriesStore::new(limits));
    let ingest = Ingest::bind(&cfg, Duration::from_secs(3600), store.clone())
        .await
        .expect("bind loopback");
    let url = format!("http://{}", ingest.http_addr().expect("addr"));
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(ingest.run(rx));
    Server {
        url,
        store,
        _stop: tx,
    }
}

/// Sends `bodies` (method, path, body) with `CONCURRENCY` workers; returns (status counts, time).
async fn send_all(
    client: &reqwest::Client,
    base: &str,
    requests: Vec<(reqwest::Method, String, Bytes)>,
    concurrency: usize,
) -> (std::collections::BTreeMap<u16, usize>, Duration) {
    let queue = Arc::new(parking_lot::Mutex::new(requests));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (queue, client, base) = (queue.clone(), client.clone(), base.to_string());
        workers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::<u16, usize>::new();
            loop {
                let next = queue.lock().pop();
                let Some((method, path, body)) = next else {
                    break;
                };
                let status = match client
                    .request(method, format!("{base}{path}"))
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                *seen.entry(status).or_default() += 1;
            }
            seen
        }));
    }
    let mut total = std::collections::BTreeMap::new();
    for w in workers {
        for (k, v) in w.await.expect("worker") {
            *total.entry(k).or_default() += v;
        }
    }
    (total, started.elapsed())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "ingest benchmark: {LINES} lines per request, {BATCHES} requests, {CONCURRENCY} client connections, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("peak RSS at start: {:.1} MiB", vm_hwm_mib());

    // ---- bodies -------------------------------------------------------------------
    let influx: Vec<Bytes> = (0..BATCHES).map(|b| Bytes::from(influx_body(b))).collect();
    let prom = Bytes::from(prom_body());
    let influx_samples = parse_lines(
        std::str::from_utf8(&influx[0]).unwrap(),
        Precision::Milliseconds,
        0,
    )
    .unwrap()
    .len();
    let prom_samples = parse_text(std::str::from_utf8(&prom).unwrap(), Format::Text004)
        .unwrap()
        .sample_count();
    println!(
        "bodies: influx {:.0} KiB / {influx_samples} samples; prometheus {:.0} KiB / {prom_samples} samples",
        influx[0].len() as f64 / 1024.0,
        prom.len() as f64 / 1024.0
    );

    // For profiling one path: INGEST_BENCH_ONLY=influx or =prom runs only that HTTP
    // measurement (no baselines, no overload part).
    let only = std::env::var("INGEST_BENCH_ONLY").unwrap_or_default();
    let (influx_parse, prom_parse, influx_local, prom_local) = if only.is_empty() {
        // ---- baseline 1: parse only ------------------------------------------------------
        let t = Instant::now();
        for b in &influx {
            std::hint::black_box(
                parse_lines(std::str::from_utf8(b).unwrap(), Precision::Milliseconds, 0).unwrap(),
            );
        }
        let influx_parse = rate(influx_samples * BATCHES, t.elapsed());
        let t = Instant::now();
        for _ in 0..BATCHES {
            std::hint::black_box(
                parse_text(std::str::from_utf8(&prom).unwrap(), Format::Text004).unwrap(),
            );
        }
        let prom_parse = rate(prom_samples * BATCHES, t.elapsed());

        // ---- baseline 2: parse + convert + store, in-process ------------------------------
        let store = SeriesStore::new(StoreLimits::default());
        let t = Instant::now();
        for b in &influx {
            let parsed =
                parse_lines(std::str::from_utf8(b).unwrap(), Precision::Milliseconds, 0).unwrap();
            store.ingest(to_samples(parsed));
        }
        let influx_local = rate(influx_samples * BATCHES, t.elapsed());
        let store = SeriesStore::new(StoreLimits::default());
        let t = Instant::now();
        for i in 0..BATCHES {
            let parsed = parse_text(std::str::from_utf8(&prom).unwrap(), Format::Text004)
                .unwrap()
                .into_samples();
            let mut samples = to_samples(parsed);
            for s in &mut samples {
                s.timestamp_ms = T0_MS + i as i64;
            }
            store.ingest(samples);
        }
        let prom_local = rate(prom_samples * BATCHES, t.elapsed());
        (influx_parse, prom_parse, influx_local, prom_local)
    } else {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    };

    // ---- HTTP ---------------------------------------------------------------------------
    let (influx_http, prom_http, hwm_after_http) = rt.block_on(async {
        let s = server(
            "http: { listen: \"127.0.0.1:0\" }\npushgateway: { republish: 1h }\n\
             limits: { max_series_per_source: 200000, max_series: 200000 }",
            StoreLimits {
                max_series: 200_000,
                ..StoreLimits::default()
            },
        )
        .await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .expect("client");
        // Warm-up: connections, allocator.
        send_all(
            &client,
            &s.url,
            vec![(
                reqwest::Method::POST,
                "/api/v2/write?precision=ms".into(),
                influx[0].clone(),
            )],
            1,
        )
        .await;
        let reqs = influx
            .iter()
            .rev()
            .map(|b| {
                (
                    reqwest::Method::POST,
                    "/api/v2/write?precision=ms".to_string(),
                    b.clone(),
                )
            })
            .collect();
        let reqs = if only == "prom" { Vec::new() } else { reqs };
        let (codes, took) = send_all(&client, &s.url, reqs, CONCURRENCY).await;
        assert!(
            only == "prom" || codes.get(&204) == Some(&BATCHES),
            "influx statuses: {codes:?}"
        );
        let influx_http = rate(influx_samples * BATCHES, took);
        // Prometheus text: PUT to 8 groups in turn (a PUT replaces its group).
        let reqs = (0..BATCHES)
            .map(|i| {
                (
                    reqwest::Method::PUT,
                    format!("/metrics/job/bench/instance/i{}", i % 8),
                    prom.clone(),
                )
            })
            .collect();
        let reqs = if only == "influx" { Vec::new() } else { reqs };
        let (codes, took) = send_all(&client, &s.url, reqs, CONCURRENCY).await;
        assert!(
            only == "influx" || codes.get(&200) == Some(&BATCHES),
            "pushgateway statuses: {codes:?}"
        );
        let prom_http = rate(prom_samples * BATCHES, took);
        println!(
            "store after the HTTP runs: {} series",
            s.store.series_count()
        );
        (influx_http, prom_http, vm_hwm_mib())
    });

    println!();
    println!(
        "{:<34}{:>16}{:>16}",
        "samples/s", "influx lines", "prometheus text"
    );
    println!(
        "{:<34}{:>16.0}{:>16.0}",
        "parse only (baseline)", influx_parse, prom_parse
    );
    println!(
        "{:<34}{:>16.0}{:>16.0}",
        "parse + store, in-process", influx_local, prom_local
    );
    println!(
        "{:<34}{:>16.0}{:>16.0}",
        "HTTP → store (real listener)", influx_http, prom_http
    );
    println!(
        "{:<34}{:>16.2}{:>16.2}",
        "ratio HTTP / parse only",
        influx_http / influx_parse,
        prom_http / prom_parse
    );
    println!(
        "{:<34}{:>16.2}{:>16.2}",
        "ratio HTTP / in-process",
        influx_http / influx_local,
        prom_http / prom_local
    );
    println!("goal: 1,000,000 samples/s over HTTP");
    println!("peak RSS after the throughput runs: {hwm_after_http:.1} MiB");

    if !only.is_empty() {
        return;
    }

    // ---- overload ------------------------------------------------------------------------
    rt.block_on(async {
        let s = server(
            "http: { listen: \"127.0.0.1:0\" }\nlimits: { max_in_flight: 2, max_series_per_source: 20000, max_series: 30000 }",
            StoreLimits {
                max_series: 30_000,
                ..StoreLimits::default()
            },
        )
        .await;
        let client = reqwest::Client::new();
        let before = vm_hwm_mib();
        // 64 senders, 2 slots: the rest are answered 429 at once, not queued.
        let reqs: Vec<_> = (0..256)
            .map(|i| (reqwest::Method::POST, "/api/v2/write?precision=ms".to_string(), influx[i % BATCHES].clone()))
            .collect();
        let (codes, took) = send_all(&client, &s.url, reqs, 64).await;
        println!();
        println!(
            "overload: 256 requests from 64 concurrent senders, max_in_flight 2: {codes:?} in {:.2}s",
            took.as_secs_f64()
        );
        println!(
            "  (status 0: the server answered 429 and closed the connection while the client was \
             still uploading; the body was never buffered)"
        );
        // A body over max_body (16 MiB) with its length declared: the answer comes after the
        // headers alone, before a byte of the body is sent or read.
        let status_line = {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let addr = s.url.trim_start_matches("http://").to_string();
            let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
            conn.write_all(
                b"POST /api/v2/write HTTP/1.1\r\nhost: bench\r\ncontent-length: 20971520\r\n\r\n",
            )
            .await
            .expect("headers");
            let mut buf = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
        };
        println!("a 20 MiB body (headers only sent): {status_line}");
        // New series beyond max_series_per_source (20,000): refused whole.
        let reqs: Vec<_> = (0..20)
            .map(|i| {
                let body: String = (0..5_000)
                    .map(|j| format!("flood,id=s{i}_{j} v=1 {}\n", T0_MS))
                    .collect();
                (reqwest::Method::POST, "/api/v2/write?precision=ms".to_string(), Bytes::from(body))
            })
            .collect();
        let (codes, _) = send_all(&client, &s.url, reqs, 2).await;
        let flood = s.store.label_values("flood_v", "id").len();
        println!(
            "series flood: 20 requests × 5,000 new series: {codes:?}; flood series stored: {flood} (limit 20,000)"
        );
        println!(
            "peak RSS: {before:.1} MiB before overload, {:.1} MiB after (current {:.1} MiB)",
            vm_hwm_mib(),
            vm_rss_mib()
        );
    });
}
