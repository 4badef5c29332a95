//! Parse speed, against the least work any parser of the same input must do.
//!
//! * `prometheus_ray`: [`parse_text`] on the real Ray Serve 2.60 exposition (600 KB, 1599
//!   samples with ~14 labels each) vs `naive_floor`: split into lines, skip comments, take the
//!   last whitespace-separated token and parse it as f64. The floor builds no names, labels
//!   or families, so `parse_text / naive_floor` is what the full, validating parser costs
//!   over merely reading the values.
//! * `influx_100k`: [`parse_lines`] on 100 000 generated lines (cpu, mem, http measurements,
//!   3-4 tags, 2-3 fields, nanosecond timestamps) vs `naive_floor`: split lines on spaces,
//!   split the field set on `,` and `=`, parse each value.
//!
//! Criterion reports time and one throughput per benchmark (MB/s for the Ray fixture,
//! samples/s for Influx); a summary with both figures and the ratios is printed at the end.
//!
//! Run: `cargo bench -p telltale-formats` (about 30 s once built).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use telltale_formats::influx::{Precision, parse_lines};
use telltale_formats::prometheus::{Format, parse_text};

const RAY: &str = include_str!("../tests/fixtures/ray_serve_2.60_metrics.txt");

/// The floor for the text format: find each sample line's value and parse it.
fn naive_prometheus(input: &str) -> (usize, f64) {
    let mut n = 0;
    let mut sum = 0.0;
    for line in input.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(v) = line
            .split_whitespace()
            .last()
            .and_then(|t| t.parse::<f64>().ok())
        {
            n += 1;
            sum += v;
        }
    }
    (n, sum)
}

/// The floor for line protocol: find each field's value and parse it.
fn naive_influx(input: &str) -> (usize, f64) {
    let mut n = 0;
    let mut sum = 0.0;
    for line in input.lines() {
        let Some(fields) = line.split(' ').nth(1) else {
            continue;
        };
        for field in fields.split(',') {
            if let Some((_, v)) = field.split_once('=')
                && let Ok(v) = v.trim_end_matches('i').parse::<f64>()
            {
                n += 1;
                sum += v;
            }
        }
    }
    (n, sum)
}

/// 100 000 realistic lines from a small deterministic generator (no rand dependency).
fn influx_lines() -> String {
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut out = String::with_capacity(14_000_000);
    let ts0: u64 = 1_700_000_000_000_000_000;
    for i in 0..100_000u64 {
        let host = next() % 200;
        let region = ["eu-west-1", "us-east-1", "ap-south-1"][(next() % 3) as usize];
        let ts = ts0 + i * 10_000_000;
        match i % 3 {
            0 => out.push_str(&format!(
                "cpu,host=server-{host:03},region={region},cpu=cpu{} usage_user={}.{:02},usage_system={}.{:02},usage_idle={}.{:02} {ts}\n",
                next() % 16,
                next() % 100,
                next() % 100,
                next() % 30,
                next() % 100,
                next() % 100,
                next() % 100
            )),
            1 => out.push_str(&format!(
                "mem,host=server-{host:03},region={region} used={}i,available_percent={}.{:03} {ts}\n",
                next() % 64_000_000_000,
                next() % 100,
                next() % 1000
            )),
            _ => out.push_str(&format!(
                "http_requests,host=server-{host:03},region={region},method={},status={} count={}i,latency_ms={}.{:03} {ts}\n",
                ["GET", "POST", "PUT"][(next() % 3) as usize],
                [200, 201, 404, 500][(next() % 4) as usize],
                next() % 100_000,
                next() % 2000,
                next() % 1000
            )),
        }
    }
    out
}

/// Median wall time of `runs` calls, for the summary.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let influx = influx_lines();
    let ray_samples = parse_text(RAY, Format::Text004)
        .expect("fixture parses")
        .sample_count();
    let influx_samples = parse_lines(&influx, Precision::Nanoseconds, 0)
        .expect("generated lines parse")
        .len();
    // The floors must see the same samples, or the comparison would be meaningless.
    assert_eq!(naive_prometheus(RAY).0, ray_samples);
    assert_eq!(naive_influx(&influx).0, influx_samples);

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let mut g = c.benchmark_group("prometheus_ray");
    g.throughput(Throughput::BytesDecimal(RAY.len() as u64));
    g.bench_function("parse_text", |b| {
        b.iter(|| parse_text(black_box(RAY), Format::Text004))
    });
    g.bench_function("naive_floor", |b| {
        b.iter(|| naive_prometheus(black_box(RAY)))
    });
    g.finish();

    let mut g = c.benchmark_group("influx_100k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(influx_samples as u64));
    g.bench_function("parse_lines", |b| {
        b.iter(|| parse_lines(black_box(&influx), Precision::Nanoseconds, 0))
    });
    g.bench_function("naive_floor", |b| {
        b.iter(|| naive_influx(black_box(&influx)))
    });
    g.finish();
    c.final_summary();

    // Both figures per input, and the ratio to the floor.
    println!("\nsummary (median of repeated runs):");
    let report = |what: &str, bytes: usize, samples: usize, full: Duration, floor: Duration| {
        let rate = |d: Duration| {
            (
                samples as f64 / d.as_secs_f64(),
                bytes as f64 / d.as_secs_f64() / 1e6,
            )
        };
        let (fs, fb) = rate(full);
        let (ns, nb) = rate(floor);
        println!(
            "  {what}: {samples} samples, {:.1} MB | parser {:.2} ms = {:.2} M samples/s, {:.0} MB/s | naive floor {:.2} ms = {:.2} M samples/s, {:.0} MB/s | parser/floor = {:.1}x",
            bytes as f64 / 1e6,
            full.as_secs_f64() * 1e3,
            fs / 1e6,
            fb,
            floor.as_secs_f64() * 1e3,
            ns / 1e6,
            nb,
            full.as_secs_f64() / floor.as_secs_f64()
        );
    };
    let full = median_time(51, || {
        black_box(parse_text(black_box(RAY), Format::Text004).ok());
    });
    let floor = median_time(51, || {
        black_box(naive_prometheus(black_box(RAY)));
    });
    report(
        "ray_serve_2.60 (0.0.4)",
        RAY.len(),
        ray_samples,
        full,
        floor,
    );
    let full = median_time(7, || {
        black_box(parse_lines(black_box(&influx), Precision::Nanoseconds, 0).ok());
    });
    let floor = median_time(7, || {
        black_box(naive_influx(black_box(&influx)));
    });
    report(
        "influx 100k lines",
        influx.len(),
        influx_samples,
        full,
        floor,
    );
}
