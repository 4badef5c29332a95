//! StatsD / DogStatsD parser and aggregator tests.

use telltale_formats::ParsedSample;
use telltale_formats::statsd::{
    AggregateError, Aggregator, StatsdMetric, StatsdValue, parse_datagram,
};

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn all_types_rates_tags_and_extensions() {
    let d = "page.views:3|c\n\
             temp:+1.5|g\n\
             temp:-2|g\n\
             temp:20|g|#room:kitchen\n\
             db.query:12.5|ms|@0.25|#db:main,replica\n\
             payload:512|h\n\
             latency:1:2:3|d|#svc:api:v2\n\
             users:alice:1|s\n\
             x:1|c|c:abc123|T1700000000\r\n\
             \n";
    let m = parse_datagram(d).expect("parses");
    let values: Vec<&StatsdValue> = m.iter().map(|m| &m.value).collect();
    assert_eq!(
        values,
        [
            &StatsdValue::Counter(3.0),
            &StatsdValue::Gauge {
                value: 1.5,
                delta: true
            },
            &StatsdValue::Gauge {
                value: -2.0,
                delta: true
            },
            &StatsdValue::Gauge {
                value: 20.0,
                delta: false
            },
            &StatsdValue::Timer(12.5),
            &StatsdValue::Histogram(512.0),
            &StatsdValue::Distribution(1.0),
            &StatsdValue::Distribution(2.0),
            &StatsdValue::Distribution(3.0),
            &StatsdValue::Set("alice:1".into()),
            &StatsdValue::Counter(1.0),
        ]
    );
    assert_eq!(m[3].tags, tags(&[("room", "kitchen")]));
    assert_eq!(m[4].sample_rate, Some(0.25));
    assert_eq!(m[4].tags, tags(&[("db", "main"), ("replica", "")]));
    // A tag value may itself contain ':' (split at the first one).
    assert_eq!(m[8].tags, tags(&[("svc", "api:v2")]));
    assert_eq!(m[10].name, "x");
    assert!(parse_datagram("").expect("empty").is_empty());
}

/// (input, line, column, message)
const ERRORS: &[(&str, usize, usize, &str)] = &[
    (
        "requests\n",
        1,
        9,
        "expected ':' and a value after the metric name",
    ),
    (
        "requests|c\n",
        1,
        9,
        "expected ':' and a value after the metric name",
    ),
    (":1|c\n", 1, 1, "expected a metric name before ':'"),
    (
        "my metric:1|c\n",
        1,
        3,
        "invalid character ' ' in metric name",
    ),
    (
        "a:1\n",
        1,
        4,
        "expected '|' and a metric type after the value",
    ),
    (
        "ok:1|c\nlatency:12|x\n",
        2,
        12,
        "unknown metric type \"x\"; expected c, g, ms, h, d or s",
    ),
    (
        "a:1|\n",
        1,
        5,
        "unknown metric type \"\"; expected c, g, ms, h, d or s",
    ),
    (
        "a:abc|c\n",
        1,
        3,
        "invalid value \"abc\"; expected a finite number",
    ),
    (
        "a:|c\n",
        1,
        3,
        "invalid value nothing; expected a finite number",
    ),
    (
        "a:NaN|g\n",
        1,
        3,
        "invalid value \"NaN\"; expected a finite number",
    ),
    (
        "a:1:x:3|d\n",
        1,
        5,
        "invalid value \"x\"; expected a finite number",
    ),
    ("a:|s\n", 1, 3, "expected a set member before '|'"),
    (
        "a:1|c|@0\n",
        1,
        8,
        "invalid sample rate \"0\"; expected a number in (0, 1]",
    ),
    (
        "a:1|c|@1.5\n",
        1,
        8,
        "invalid sample rate \"1.5\"; expected a number in (0, 1]",
    ),
    ("a:1|c|@0.5|@0.5\n", 1, 12, "second sample rate section"),
    ("a:1|c|#x,,y\n", 1, 10, "expected a tag name"),
    ("a:1|c|#:v\n", 1, 8, "expected a tag name"),
    ("a:1|c|#a|#b\n", 1, 10, "second tags section"),
    (
        "a:1|c|Tsoon\n",
        1,
        8,
        "invalid timestamp \"soon\"; expected unix seconds",
    ),
    (
        "a:1|c|zzz\n",
        1,
        7,
        "unknown section \"zzz\"; expected @<sample rate>, #<tags>, c:<container id> or T<timestamp>",
    ),
    (
        "a:1|c\n_e{5,4}:title|text\n",
        2,
        1,
        "DogStatsD events (_e) and service checks (_sc) are not supported; only metrics",
    ),
    (
        "_sc|db|0\n",
        1,
        1,
        "DogStatsD events (_e) and service checks (_sc) are not supported; only metrics",
    ),
];

#[test]
fn every_error_has_position_and_message() {
    for (input, line, column, message) in ERRORS {
        let err = match parse_datagram(input) {
            Ok(m) => panic!("{input:?} parsed: {m:?}"),
            Err(e) => e,
        };
        assert_eq!(
            (err.line, err.column, err.message.as_str()),
            (*line, *column, *message),
            "input {input:?}"
        );
    }
}

fn feed(agg: &mut Aggregator, datagram: &str) {
    for m in parse_datagram(datagram).expect("parses") {
        agg.add(m).expect("accepted");
    }
}

fn find<'a>(
    out: &'a [ParsedSample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a ParsedSample> {
    let want = tags(labels);
    out.iter().find(|s| s.name == name && s.labels == want)
}

#[test]
fn aggregator_flush_semantics() {
    let mut agg = Aggregator::new(2);
    feed(
        &mut agg,
        "api.hits:1|c|@0.1|#env:prod\n\
         api.hits:2|c|#env:prod\n\
         api.hits:5|c|#env:dev,canary\n\
         q:10|g\nq:+5|g\nq:-3|g\n\
         lat:1|ms\nlat:2|ms\nlat:3|ms\nlat:4|ms\nlat:100|ms|@0.5\n\
         who:a|s\nwho:b|s\nwho:a|s\n",
    );
    let out = agg.flush(5_000);
    assert!(out.iter().all(|s| s.timestamp_ms == Some(5_000)));
    assert_eq!(
        find(&out, "api_hits", &[("env", "prod")]).map(|s| s.value),
        Some(12.0)
    );
    // Tags without a value are dropped (an empty label is no label).
    assert_eq!(
        find(&out, "api_hits", &[("env", "dev")]).map(|s| s.value),
        Some(5.0)
    );
    assert_eq!(find(&out, "q", &[]).map(|s| s.value), Some(12.0));
    let v = |name: &str, l: &[(&str, &str)]| find(&out, name, l).map(|s| s.value);
    assert_eq!(v("lat_count", &[]), Some(6.0));
    assert_eq!(v("lat_sum", &[]), Some(210.0));
    assert_eq!(v("lat_min", &[]), Some(1.0));
    assert_eq!(v("lat_max", &[]), Some(100.0));
    assert_eq!(v("lat", &[("quantile", "0.5")]), Some(3.0));
    assert_eq!(v("lat", &[("quantile", "0.9")]), Some(100.0));
    assert_eq!(v("lat", &[("quantile", "0.99")]), Some(100.0));
    assert_eq!(v("who", &[]), Some(2.0));
    assert_eq!(out.len(), 2 + 1 + 7 + 1);

    // Next interval: counters report 0, gauges repeat, timers and sets are silent.
    feed(&mut agg, "q:+1|g\n");
    let out = agg.flush(6_000);
    assert_eq!(
        find(&out, "api_hits", &[("env", "prod")]).map(|s| s.value),
        Some(0.0)
    );
    assert_eq!(find(&out, "q", &[]).map(|s| s.value), Some(13.0));
    assert!(find(&out, "lat_count", &[]).is_none());
    assert!(find(&out, "who", &[]).is_none());
    assert_eq!(out.len(), 3);

    // Expiry: reported for 2 more flushes after the last update, then forgotten.
    let out = agg.flush(7_000);
    assert_eq!(out.len(), 3, "two counters and q: {out:?}");
    let out = agg.flush(8_000);
    assert_eq!(
        out.len(),
        1,
        "only q (updated one flush later) is left: {out:?}"
    );
    assert_eq!(out[0].name, "q");
    assert!(agg.flush(9_000).is_empty());
    assert_eq!(agg.series_count(), 0);
    // A forgotten name may come back with another type.
    feed(&mut agg, "lat:1|g\n");
    assert_eq!(agg.flush(10_000)[0].value, 1.0);
}

#[test]
fn aggregator_refuses_type_conflicts() {
    let mut agg = Aggregator::new(5);
    feed(&mut agg, "jobs.done:1|c\n");
    let gauge = StatsdMetric {
        name: "jobs-done".into(),
        value: StatsdValue::Gauge {
            value: 1.0,
            delta: false,
        },
        sample_rate: None,
        tags: Vec::new(),
    };
    assert_eq!(
        agg.add(gauge),
        Err(AggregateError::TypeConflict {
            name: "jobs_done".into(),
            was: "counter",
            now: "gauge",
        })
    );
}
