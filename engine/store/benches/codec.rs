//! The durable store's chunk codec on real collector output: bytes per sample of every
//! candidate coding (overall, per metric family, per kind of value), then encode and decode
//! speed of the chosen coding beside plain Gorilla XOR in the same run.
//!
//! Data: `STORE_BENCH_CAPTURE` names a capture of the `system` collector (JSON lines, one
//! sample each: `{"call":N,"labels":{..},"name":"..","timestamp_ms":..,"type":"sample",
//! "value":..}`, optionally gzipped) or a fixture made from one by
//! `scripts/store-bench-fixture.py`; by default the committed fixture
//! `benches/data/system-1s.jsonl.gz` (an hour at 1 s). Each series is cut into chunks of
//! `STORE_BENCH_CHUNK_ROWS` rows (default 1024, what the store seals raw chunks at).
//! Every chunk of every coding is decoded and compared bit for bit before any figure is
//! printed.
//!
//! Run: `cargo bench -p telltale-store --bench codec` (about 30 s once built).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use telltale_model::Point;
use telltale_store::disk::codec::{
    self, ChunkEncoder, Coding, ColumnMode, FloatCoding, decode_points,
};

/// What the issue asks of the store on this data: Prometheus' published average.
const TARGET_BYTES_PER_SAMPLE: f64 = 1.3;

/// One series of the capture, oldest point first.
struct Series {
    name: String,
    points: Vec<(i64, f64)>,
}

/// The candidates, baseline first; `Coding::DEFAULT` is the one the store writes.
const CANDIDATES: [(&str, Coding); 9] = [
    ("gorilla (baseline)", Coding::GORILLA),
    ("chimp", chimp(false, 0)),
    ("chimp+ring16", chimp(false, 4)),
    (
        "int+gorilla",
        Coding {
            integers: true,
            floats: FloatCoding::Gorilla,
        },
    ),
    ("int+chimp", chimp(true, 0)),
    ("int+chimp+ring8", chimp(true, 3)),
    ("int+chimp+ring16", chimp(true, 4)),
    ("int+chimp+ring32", chimp(true, 5)),
    ("int+chimp+ring64", chimp(true, 6)),
];

const fn chimp(integers: bool, ring_bits: u8) -> Coding {
    Coding {
        integers,
        floats: FloatCoding::Chimp { ring_bits },
    }
}

fn env_path() -> PathBuf {
    match std::env::var_os("STORE_BENCH_CAPTURE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/data/system-1s.jsonl.gz"),
    }
}

fn chunk_rows() -> usize {
    match std::env::var("STORE_BENCH_CHUNK_ROWS") {
        Ok(s) => match s.parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("STORE_BENCH_CHUNK_ROWS={s}: not a positive number"),
        },
        Err(_) => 1024,
    }
}

/// Reads a capture or a fixture, gzipped or not.
fn load(path: &Path) -> Vec<Series> {
    let raw = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => panic!("{}: {e} (set STORE_BENCH_CAPTURE)", path.display()),
    };
    let mut text = String::new();
    let read = if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_string(&mut text)
    } else {
        raw.as_slice().read_to_string(&mut text)
    };
    if let Err(e) = read {
        panic!("{}: {e}", path.display());
    }
    let first = text.lines().next().unwrap_or_default();
    let mut series = if first.contains("\"fixture\"") {
        load_fixture(&text)
    } else {
        load_capture(&text)
    };
    for s in &mut series {
        // As the store does: oldest first, the last of equal timestamps.
        s.points.sort_by_key(|p| p.0);
        let mut kept: Vec<(i64, f64)> = Vec::with_capacity(s.points.len());
        for &p in &s.points {
            match kept.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => kept.push(p),
            }
        }
        s.points = kept;
    }
    series
}

/// A number as written, parsed by the standard library (correctly rounded, so the bits are
/// the collector's): serde_json's default float parsing may be off by one unit.
fn exact_f64(text: &str) -> f64 {
    match text.trim().parse() {
        Ok(v) => v,
        Err(e) => panic!("value {text:?}: {e}"),
    }
}

/// The raw text of the `"value"` of a capture line.
fn value_text(line: &str) -> &str {
    let Some(at) = line.find("\"value\":") else {
        panic!("capture line without a value: {line}");
    };
    let rest = &line[at + 8..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    &rest[..end]
}

fn load_capture(text: &str) -> Vec<Series> {
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        name: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        timestamp_ms: i64,
    }
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut series: Vec<Series> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let l: Line = match serde_json::from_str(line) {
            Ok(l) => l,
            Err(e) => panic!("capture line {line}: {e}"),
        };
        if l.kind != "sample" {
            continue;
        }
        let v = exact_f64(value_text(line));
        let key = (l.name.clone(), format!("{:?}", l.labels));
        let i = *index.entry(key).or_insert_with(|| {
            series.push(Series {
                name: l.name.clone(),
                points: Vec::new(),
            });
            series.len() - 1
        });
        series[i].points.push((l.timestamp_ms, v));
    }
    series
}

fn load_fixture(text: &str) -> Vec<Series> {
    #[derive(serde::Deserialize)]
    struct Line {
        name: String,
        /// The first timestamp, then the deltas.
        t: Vec<i64>,
        /// Each value as the capture wrote it.
        v: Vec<String>,
    }
    let mut series = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let l: Line = match serde_json::from_str(line) {
            Ok(l) => l,
            Err(e) => panic!("fixture line {line}: {e}"),
        };
        assert_eq!(l.t.len(), l.v.len(), "fixture series {}", l.name);
        let mut t = 0i64;
        let points =
            l.t.iter()
                .zip(&l.v)
                .map(|(dt, v)| {
                    t += dt;
                    (t, exact_f64(v))
                })
                .collect();
        series.push(Series {
            name: l.name,
            points,
        });
    }
    series
}

/// A chunk's rows, and which series it belongs to.
struct Chunk<'a> {
    series: usize,
    points: &'a [(i64, f64)],
}

fn encode(points: &[(i64, f64)], coding: Coding) -> Vec<u8> {
    let mut enc = ChunkEncoder::with_coding(1, coding);
    for &(t, v) in points {
        enc.push(t, &[v]);
    }
    enc.to_bytes()
}

/// Decodes `data` and fails the benchmark unless every point comes back bit for bit.
fn verify(data: &[u8], points: &[(i64, f64)], what: &str) {
    let mut out = Vec::new();
    if let Err(e) = decode_points(data, i64::MIN, i64::MAX, &mut out) {
        panic!("{what}: {e}");
    }
    let same = out.len() == points.len()
        && out
            .iter()
            .zip(points)
            .all(|(p, &(t, v))| p.timestamp_ms == t && p.value.to_bits() == v.to_bits());
    assert!(same, "{what}: a chunk did not decode to what was encoded");
}

/// Bits Gorilla-style timestamp buckets would spend: `0` for a zero delta-of-delta, else a
/// prefix per bucket and that many bits of signed value; `widths` ends with the escape.
fn timestamp_bits(points: &[(i64, f64)], widths: &[u32]) -> u64 {
    let mut bits = 0;
    let mut prev_dt = 0i64;
    for w in points.windows(2) {
        let dt = w[1].0 - w[0].0;
        let dod = dt - prev_dt;
        prev_dt = dt;
        bits += if dod == 0 {
            1
        } else {
            let i = widths
                .iter()
                .position(|&b| b >= 64 || (-(1i64 << (b - 1)) < dod && dod <= 1i64 << (b - 1)))
                .unwrap_or(widths.len() - 1);
            (i as u64 + 2).min(widths.len() as u64) + u64::from(widths[i])
        };
    }
    bits
}

/// What kind of values a chunk held, from the mode its column ended in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Integer,
    Decimal,
    Float,
}

impl Kind {
    fn of(data: &[u8]) -> Kind {
        match codec::column_modes(data).as_deref() {
            Ok([ColumnMode::Integer { scale: 0, .. } | ColumnMode::Binary { .. }]) => Kind::Integer,
            Ok([ColumnMode::Integer { .. }]) => Kind::Decimal,
            _ => Kind::Float,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::Decimal => "decimal",
            Kind::Float => "float",
        }
    }
}

/// Bytes and samples, summed.
#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: u64,
    samples: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize, samples: usize) {
        self.bytes += bytes as u64;
        self.samples += samples as u64;
    }

    fn per_sample(self) -> f64 {
        self.bytes as f64 / self.samples.max(1) as f64
    }
}

/// Median of `runs` timings of `f`, in ns per point.
fn ns_per_point(points: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as f64 / points as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn report(series: &[Series], chunks: &[Chunk], path: &Path, rows: usize) {
    let samples: usize = chunks.iter().map(|c| c.points.len()).sum();
    let (t0, t1) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    println!("\n== Store chunk codec: {}", path.display());
    println!(
        "{} series, {samples} samples over {:.2} h, {} chunks of at most {rows} rows",
        series.len(),
        (t1 - t0) as f64 / 3.6e6,
        chunks.len()
    );

    // Every candidate over every chunk, each checked bit for bit.
    let default = CANDIDATES
        .iter()
        .position(|c| c.1 == Coding::DEFAULT)
        .unwrap_or(0);
    let mut total = vec![Tally::default(); CANDIDATES.len()];
    let mut family: BTreeMap<&str, Vec<Tally>> = BTreeMap::new();
    let mut kind_total: BTreeMap<Kind, Vec<Tally>> = BTreeMap::new();
    let mut family_kind: BTreeMap<(&str, Kind), u64> = BTreeMap::new();
    let mut series_per_family: BTreeMap<&str, usize> = BTreeMap::new();
    for s in series {
        *series_per_family.entry(&s.name).or_default() += 1;
    }
    for c in chunks {
        let name = series[c.series].name.as_str();
        let encoded: Vec<Vec<u8>> = CANDIDATES
            .iter()
            .map(|(label, coding)| {
                let data = encode(c.points, *coding);
                verify(&data, c.points, label);
                data
            })
            .collect();
        let kind = Kind::of(&encoded[default]);
        *family_kind.entry((name, kind)).or_default() += c.points.len() as u64;
        let fam = family
            .entry(name)
            .or_insert_with(|| vec![Tally::default(); CANDIDATES.len()]);
        let kt = kind_total
            .entry(kind)
            .or_insert_with(|| vec![Tally::default(); CANDIDATES.len()]);
        for (i, data) in encoded.iter().enumerate() {
            total[i].add(data.len(), c.points.len());
            fam[i].add(data.len(), c.points.len());
            kt[i].add(data.len(), c.points.len());
        }
    }

    // Timestamps alone: the same chunks with a constant value (one bit a row, taken off).
    let mut ts = Tally::default();
    let (mut gorilla_ts, mut prometheus_ts) = (0u64, 0u64);
    for c in chunks {
        let flat: Vec<(i64, f64)> = c.points.iter().map(|p| (p.0, 0.0)).collect();
        let bytes = encode(&flat, Coding::DEFAULT).len();
        ts.add(bytes - c.points.len() / 8, c.points.len());
        gorilla_ts += timestamp_bits(c.points, &[7, 9, 12, 32]);
        prometheus_ts += timestamp_bits(c.points, &[14, 17, 20, 64]);
    }

    println!("\nBytes per sample (whole chunks: header, timestamps and values):\n");
    println!("| coding | bytes/sample | vs baseline | KiB total |");
    println!("|---|---:|---:|---:|");
    for (i, (label, coding)) in CANDIDATES.iter().enumerate() {
        let mark = if *coding == Coding::DEFAULT {
            " **(chosen)**"
        } else {
            ""
        };
        println!(
            "| {label}{mark} | {:.3} | {:.2}× | {:.0} |",
            total[i].per_sample(),
            total[i].per_sample() / total[0].per_sample(),
            total[i].bytes as f64 / 1024.0
        );
    }
    println!(
        "\nTimestamps: {:.3} bytes/sample with the chosen buckets (header included); \
         Gorilla's buckets would take {:.3}, Prometheus' {:.3}.",
        ts.per_sample(),
        gorilla_ts as f64 / 8.0 / samples as f64,
        prometheus_ts as f64 / 8.0 / samples as f64,
    );

    println!("\nBy kind of value (from the mode the chosen coding ended each chunk in):\n");
    println!(
        "| kind | families | share of samples | share of bytes (chosen) | baseline | chosen |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, t) in &kind_total {
        let families = family_kind
            .iter()
            .filter(|((f, k), _)| k == kind && majority(&family_kind, f) == *kind)
            .count();
        println!(
            "| {} | {families} | {:.1} % | {:.1} % | {:.3} | {:.3} |",
            kind.label(),
            100.0 * t[default].samples as f64 / samples as f64,
            100.0 * t[default].bytes as f64 / total[default].bytes as f64,
            t[0].per_sample(),
            t[default].per_sample()
        );
    }

    println!(
        "\nPer family, bytes/sample of each coding (columns in the order of the first table), \
         most bytes under the chosen one first:\n"
    );
    let mut head = String::from("| family | series | kind | float share |");
    let mut rule = String::from("|---|---:|---|---:|");
    for (label, _) in CANDIDATES {
        head.push_str(&format!(" {} |", label.trim_end_matches(" (baseline)")));
        rule.push_str("---:|");
    }
    println!("{head}\n{rule}");
    let mut rows_out: Vec<(&str, &Vec<Tally>)> = family.iter().map(|(k, v)| (*k, v)).collect();
    rows_out.sort_by(|a, b| b.1[default].bytes.cmp(&a.1[default].bytes));
    for (name, t) in rows_out {
        let float = family_kind.get(&(name, Kind::Float)).copied().unwrap_or(0);
        let mut line = format!(
            "| {name} | {} | {} | {:.0} % |",
            series_per_family.get(name).copied().unwrap_or(0),
            majority(&family_kind, name).label(),
            100.0 * float as f64 / t[default].samples as f64,
        );
        for tally in t {
            line.push_str(&format!(" {:.2} |", tally.per_sample()));
        }
        println!("{line}");
    }

    let chosen = total[default].per_sample();
    let exact = kind_total.iter().filter(|(k, _)| **k != Kind::Float).fold(
        Tally::default(),
        |mut a, (_, t)| {
            a.add(t[default].bytes as usize, t[default].samples as usize);
            a
        },
    );
    println!(
        "\nTarget ≤ {TARGET_BYTES_PER_SAMPLE} bytes/sample: chosen coding {chosen:.3} → {}; \
         integer and decimal chunks alone {:.3}.",
        if chosen <= TARGET_BYTES_PER_SAMPLE {
            "met"
        } else {
            "missed"
        },
        exact.per_sample()
    );
}

/// Average bytes (struct and heap) of an open encoder of `columns` columns after `n` rows
/// of each series in `rows_of` (series with fewer rows are left out).
fn open_encoder_bytes(
    rows_of: &[Vec<(i64, Vec<f64>)>],
    columns: usize,
    n: usize,
    coding: Coding,
) -> f64 {
    let (mut bytes, mut count) = (0usize, 0usize);
    for rows in rows_of.iter().filter(|r| r.len() >= n) {
        let mut enc = ChunkEncoder::with_coding(columns, coding);
        for (t, v) in &rows[..n] {
            enc.push(*t, v);
        }
        bytes += size_of::<ChunkEncoder>() + enc.heap_bytes();
        count += 1;
    }
    bytes as f64 / count.max(1) as f64
}

/// Minute roll-ups of a series as the store builds them (count, sum, min, max, last,
/// increase; a drop of the value counts as a counter restart).
fn minute_buckets(points: &[(i64, f64)]) -> Vec<(i64, Vec<f64>)> {
    let mut out: Vec<(i64, Vec<f64>)> = Vec::new();
    let mut prev: Option<f64> = None;
    for &(t, v) in points {
        let start = t.div_euclid(60_000) * 60_000;
        let rise = match prev {
            Some(p) if v >= p => v - p,
            Some(_) => v,
            None => 0.0,
        };
        prev = Some(v);
        match out.last_mut() {
            Some((bt, c)) if *bt == start => {
                c[0] += 1.0;
                c[1] += v;
                c[2] = c[2].min(v);
                c[3] = c[3].max(v);
                c[4] = v;
                c[5] += rise;
            }
            _ => out.push((start, vec![1.0, v, v, v, v, rise])),
        }
    }
    out
}

/// Memory of open encoders (raw and roll-up) and bytes of roll-up chunks, per coding.
fn memory_and_rollups(series: &[Series], rows: usize) {
    let raw: Vec<Vec<(i64, Vec<f64>)>> = series
        .iter()
        .map(|s| s.points.iter().map(|&(t, v)| (t, vec![v])).collect())
        .collect();
    let minutes: Vec<Vec<(i64, Vec<f64>)>> =
        series.iter().map(|s| minute_buckets(&s.points)).collect();
    let buckets: usize = minutes
        .iter()
        .map(|m| m.chunks(60).map(<[_]>::len).sum::<usize>())
        .sum();
    println!(
        "\nOpen encoders, bytes each (struct and heap; × 100,000 series = MB ÷ 10), and \
         minute roll-ups ({buckets} buckets in 6-column chunks of 60):\n"
    );
    println!(
        "| coding | raw, 300 rows | raw, {rows} rows | roll-up, 30 rows | roll-up, 60 rows | roll-up bytes/bucket |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, coding) in CANDIDATES {
        let mut bytes = 0usize;
        for m in &minutes {
            for c in m.chunks(60) {
                let mut enc = ChunkEncoder::with_coding(codec::ROLLUP_COLUMNS, coding);
                for (t, v) in c {
                    enc.push(*t, v);
                }
                bytes += enc.encoded_len();
            }
        }
        let mark = match coding {
            Coding::DEFAULT => " **(raw)**",
            Coding::ROLLUP => " **(roll-ups)**",
            _ => "",
        };
        println!(
            "| {label}{mark} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
            open_encoder_bytes(&raw, 1, 300, coding),
            open_encoder_bytes(&raw, 1, rows, coding),
            open_encoder_bytes(&minutes, codec::ROLLUP_COLUMNS, 30, coding),
            open_encoder_bytes(&minutes, codec::ROLLUP_COLUMNS, 60, coding),
            bytes as f64 / buckets.max(1) as f64,
        );
    }
}

/// The kind most of a family's samples are.
fn majority(family_kind: &BTreeMap<(&str, Kind), u64>, family: &str) -> Kind {
    family_kind
        .iter()
        .filter(|((f, _), _)| *f == family)
        .max_by_key(|(_, n)| **n)
        .map_or(Kind::Float, |((_, k), _)| *k)
}

fn speed(chunks: &[Chunk]) {
    let points: usize = chunks.iter().map(|c| c.points.len()).sum();
    let runs = 11;
    println!("\nSpeed, median of {runs} passes over every chunk (release build):\n");
    println!("| coding | encode ns/point | decode ns/point | 86,400 points decoded |");
    println!("|---|---:|---:|---:|");
    let mut figures = Vec::new();
    for (label, coding) in [
        ("gorilla (baseline)", Coding::GORILLA),
        ("chosen", Coding::DEFAULT),
    ] {
        let encode_ns = ns_per_point(points, runs, || {
            for c in chunks {
                black_box(encode(black_box(c.points), coding));
            }
        });
        let data: Vec<Vec<u8>> = chunks.iter().map(|c| encode(c.points, coding)).collect();
        let mut out: Vec<Point> = Vec::with_capacity(4096);
        let decode_ns = ns_per_point(points, runs, || {
            for d in &data {
                out.clear();
                if let Err(e) = decode_points(black_box(d), i64::MIN, i64::MAX, &mut out) {
                    panic!("{e}");
                }
                black_box(&out);
            }
        });
        println!(
            "| {label} | {encode_ns:.1} | {decode_ns:.1} | {:.2} ms |",
            decode_ns * 86_400.0 / 1e6
        );
        figures.push((encode_ns, decode_ns));
    }
    println!(
        "\nchosen / baseline: encode {:.2}×, decode {:.2}×",
        figures[1].0 / figures[0].0,
        figures[1].1 / figures[0].1
    );
}

fn bench(c: &mut Criterion) {
    let path = env_path();
    let rows = chunk_rows();
    let series = load(&path);
    let chunks: Vec<Chunk> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.points.chunks(rows).map(move |p| Chunk {
                series: i,
                points: p,
            })
        })
        .collect();
    report(&series, &chunks, &path, rows);
    memory_and_rollups(&series, rows);
    speed(&chunks);

    let points: usize = chunks.iter().map(|c| c.points.len()).sum();
    let mut group = c.benchmark_group("codec");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(points as u64));
    for (label, coding) in [("gorilla", Coding::GORILLA), ("chosen", Coding::DEFAULT)] {
        group.bench_function(format!("encode/{label}"), |b| {
            b.iter(|| {
                for c in &chunks {
                    black_box(encode(black_box(c.points), coding));
                }
            })
        });
        let data: Vec<Vec<u8>> = chunks.iter().map(|c| encode(c.points, coding)).collect();
        let mut out: Vec<Point> = Vec::with_capacity(4096);
        group.bench_function(format!("decode/{label}"), |b| {
            b.iter(|| {
                for d in &data {
                    out.clear();
                    if let Err(e) = decode_points(black_box(d), i64::MIN, i64::MAX, &mut out) {
                        panic!("{e}");
                    }
                    black_box(&out);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
