//! Malformed input never panics: thousands of deterministic random edits (insert, delete,
//! replace a character with one that matters to the grammar) of valid inputs, fed to every
//! parser. Each must return `Ok` or an `Err` whose position lies inside the input.

use telltale_formats::ParseError;
use telltale_formats::influx::{Precision, parse_lines};
use telltale_formats::prometheus::{Format, parse_text};
use telltale_formats::statsd::{Aggregator, parse_datagram};

const RAY: &str = include_str!("fixtures/ray_serve_2.60_metrics.txt");

const OM: &str = "# TYPE foo histogram\n# HELP foo Help \\\" text\n\
foo_bucket{le=\"0.1\",a=\"x\\\\y\"} 8 # {trace_id=\"abc\"} 0.067 1605281325.25\n\
foo_bucket{le=\"+Inf\",a=\"x\\\\y\"} 17\nfoo_count{a=\"x\\\\y\"} 17\nfoo_sum{a=\"x\\\\y\"} 3.5\n\
foo_created{a=\"x\\\\y\"} 1520430000.123\n# TYPE c counter\n# UNIT c seconds\nc_total 1 1605281325\n# EOF\n";

const INFLUX: &str = "cpu,host=a\\ b,region=eu usage=1.5,cores=8i,ok=t,msg=\"a \\\"q\\\"\" 1700000000000000000\n\
mem,host=a used=12u\n# comment\n\nweather temp=-1.5e2 17\n";

const STATSD: &str =
    "a.b:1|c|@0.5|#env:prod,x\nq:+1|g\nt:1:2:3|ms|#a:b\nu:alice|s\nd:4|d|c:abc|T17\n";

/// Characters that matter to at least one grammar, plus ordinary and multi-byte ones.
const ALPHABET: &[char] = &[
    '{', '}', '"', ',', '=', '\\', ' ', '#', '\n', '\r', '\t', ':', '|', '@', '.', '+', '-', 'e',
    'i', 'u', 'a', '1', '0', 'é', '_',
];

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn mutate(input: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = input.chars().collect();
    for _ in 0..1 + rng.next(3) {
        let at = rng.next(chars.len().max(1));
        let c = ALPHABET[rng.next(ALPHABET.len())];
        match rng.next(3) {
            0 => chars.insert(at.min(chars.len()), c),
            1 if !chars.is_empty() => {
                chars.remove(at.min(chars.len() - 1));
            }
            _ if !chars.is_empty() => {
                let last = chars.len() - 1;
                chars[at.min(last)] = c;
            }
            _ => chars.push(c),
        }
    }
    chars.into_iter().collect()
}

/// The error's line exists (or is the one after the last) and its column is within it.
fn check_position(input: &str, e: &ParseError) {
    let lines: Vec<&str> = input.split('\n').collect();
    assert!(
        e.line >= 1 && e.line <= lines.len() + 1,
        "{e} for {input:?}"
    );
    if let Some(line) = lines.get(e.line - 1) {
        assert!(
            e.column >= 1 && e.column <= line.chars().count() + 1,
            "{e} for {input:?}"
        );
    }
    assert!(!e.message.is_empty());
}

/// `ROBUSTNESS_SCALE=50 cargo test --release --test robustness` runs 50 times as many edits.
fn scale() -> usize {
    std::env::var("ROBUSTNESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn run(
    seed: u64,
    iterations: usize,
    base: &str,
    mut parse: impl FnMut(&str) -> Option<ParseError>,
) {
    let mut rng = Rng(seed);
    let iterations = iterations * scale();
    let mut errors = 0;
    for _ in 0..iterations {
        let input = mutate(base, &mut rng);
        if let Some(e) = parse(&input) {
            check_position(&input, &e);
            errors += 1;
        }
    }
    // Most single edits of these inputs break them: the parsers must notice.
    assert!(
        errors > iterations / 4,
        "only {errors} of {iterations} edits rejected"
    );
}

#[test]
fn prometheus_never_panics() {
    // The first 120 lines of the real fixture keep a debug-build run short.
    let head: String = RAY.lines().take(120).map(|l| format!("{l}\n")).collect();
    run(1, 1500, &head, |s| parse_text(s, Format::Text004).err());
    run(2, 3000, OM, |s| parse_text(s, Format::OpenMetrics).err());
    run(3, 1500, OM, |s| parse_text(s, Format::Text004).err());
}

#[test]
fn influx_never_panics() {
    run(4, 3000, INFLUX, |s| {
        parse_lines(s, Precision::Nanoseconds, 0).err()
    });
}

#[test]
fn statsd_never_panics() {
    let mut agg = Aggregator::new(3);
    run(5, 3000, STATSD, |s| match parse_datagram(s) {
        Ok(metrics) => {
            for m in metrics {
                let _ = agg.add(m);
            }
            let _ = agg.flush(0);
            None
        }
        Err(e) => Some(e),
    });
}
