//! Push ingest with the durable store behind it: Influx line protocol over HTTP into the
//! series store **with persistence on** (every sample reaches the SQLite file within the
//! flush interval), sustained for a minute, beside the same load into the in-memory store
//! alone, in the same process. Prints samples/s of each, their ratio, what reached disk,
//! and peak RSS.
//!
//! Run: `cargo bench -p telltale-ingest --bench ingest_durable` (about two and a half
//! minutes once built). `DURABLE_BENCH_SECS` changes the sustained time (default 60);
//! `DURABLE_BENCH_ONLY=disk` skips the in-memory baseline.
//!
//! Load: 10,000 series (500 hosts × 10 cores × 2 fields), 10,000 lines (20,000 samples)
//! per request, 2 client connections, each request one new point per series, 20 ms of
//! sample time apart. Bodies are built from a template per request (only the timestamp
//! changes), by the client, in this process: the figures include the client's cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use telltale_config::IngestConfig;
use telltale_ingest::Ingest;
use telltale_store::disk::{Database, Disk, DiskConfig};
use telltale_store::{SeriesStore, StoreLimits};

const LINES: usize = 10_000;
const CONCURRENCY: usize = 2;
/// Sample time between two requests' points.
const STEP_MS: i64 = 20;

/// The request's lines up to each timestamp, then the timestamps' positions: a body is
/// the parts joined with the request's timestamp.
struct Template {
    parts: Vec<String>,
}

impl Template {
    fn new(batch: usize) -> Template {
        let parts = (0..LINES)
            .map(|i| {
                format!(
                    "bench_cpu,host=h{},core={} user={}.5,system={}.25 ",
                    i % 500,
                    (i / 500) % 10,
                    (i + batch) % 97,
                    (i * 7 + batch) % 13
                )
            })
            .collect();
        Template { parts }
    }

    fn body(&self, ts: i64) -> Bytes {
        let ts = ts.to_string();
        let mut s = String::with_capacity(self.parts.len() * (ts.len() + 48));
        for p in &self.parts {
            s.push_str(p);
            s.push_str(&ts);
            s.push('\n');
        }
        Bytes::from(s)
    }
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

struct Run {
    samples_per_s: f64,
    requests: usize,
    failed: usize,
    hwm_mib: f64,
}

/// Sends requests for `secs` seconds into a fresh store (with `disk` attached when
/// given); returns the rate of samples accepted.
async fn run(secs: u64, disk: Option<(&std::path::Path, DiskConfig)>) -> (Run, Arc<SeriesStore>) {
    let cfg: IngestConfig = serde_yaml::from_str(
        "http: { listen: \"127.0.0.1:0\" }\nlimits: { max_series_per_source: 200000, max_series: 200000 }",
    )
    .expect("bench config");
    let store = Arc::new(SeriesStore::new(StoreLimits {
        max_series: 200_000,
        ..StoreLimits::default()
    }));
    let persister = disk.map(|(path, cfg)| {
        let db = Arc::new(Database::open(path).expect("open the database"));
        Disk::start(db, cfg, &store).expect("start the persister")
    });
    let ingest = Ingest::bind(&cfg, Duration::from_secs(3600), store.clone())
        .await
        .expect("bind loopback");
    let url = format!(
        "http://{}/api/v2/write?precision=ms",
        ingest.http_addr().expect("addr")
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(ingest.run(stop_rx));
    let templates: Arc<Vec<Template>> = Arc::new((0..8).map(Template::new).collect());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let t0 = telltale_model::now_ms() - 3_600_000;
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, templates, next, failed) = (
            client.clone(),
            url.clone(),
            templates.clone(),
            next.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let body = templates[i % templates.len()].body(t0 + i as i64 * STEP_MS);
                match client.post(&url).body(body).send().await {
                    Ok(r) if r.status().as_u16() == 204 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let took = started.elapsed();
    let requests = next.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(p) = persister {
        // The last flush and checkpoint, off the runtime's threads.
        tokio::task::spawn_blocking(move || p.stop())
            .await
            .expect("persister stops");
    }
    let samples = (requests - failed) * LINES * 2;
    (
        Run {
            samples_per_s: samples as f64 / took.as_secs_f64(),
            requests,
            failed,
            hwm_mib: vm_hwm_mib(),
        },
        store,
    )
}

fn main() {
    let secs: u64 = std::env::var("DURABLE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let only_disk = std::env::var("DURABLE_BENCH_ONLY").is_ok_and(|v| v == "disk");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "durable ingest benchmark: {LINES} Influx lines (2 fields) per request, {CONCURRENCY} connections, {secs} s each, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let (disk, store) = rt.block_on(run(secs, Some((&path, DiskConfig::default()))));
    let disk_db = store.disk().expect("attached").database().clone();
    let info = disk_db.info().expect("store info");
    let file_mib = disk_db.file_bytes() as f64 / (1 << 20) as f64;
    drop(store);
    println!(
        "with persistence: {:.0} samples/s ({} requests, {} failed); peak RSS {:.0} MiB; database {:.1} MiB",
        disk.samples_per_s, disk.requests, disk.failed, disk.hwm_mib, file_mib
    );
    println!("{info}");
    if only_disk {
        return;
    }
    let (mem, _) = rt.block_on(run(secs, None));
    println!(
        "memory only:      {:.0} samples/s ({} requests, {} failed); peak RSS so far {:.0} MiB",
        mem.samples_per_s, mem.requests, mem.failed, mem.hwm_mib
    );
    println!(
        "ratio persisted / memory only: {:.2}   goal: ≥ 1,000,000 samples/s with persistence",
        disk.samples_per_s / mem.samples_per_s
    );
}
