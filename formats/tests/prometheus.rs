//! Prometheus text 0.0.4 / OpenMetrics parser tests: the real Ray Serve 2.60 exposition,
//! format features, and every error with its position and message.

use telltale_formats::MetricType;
use telltale_formats::prometheus::{Format, parse_text};

const RAY: &str = include_str!("fixtures/ray_serve_2.60_metrics.txt");

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Figures counted independently of the parser, with
/// `grep -c '^# TYPE'` (148 families: 112 gauge, 18 counter, 18 histogram) and
/// `grep -v '^#' | grep -c .` (1599 sample lines, 866 of them in histograms).
#[test]
fn ray_fixture_counts() {
    let exp = parse_text(RAY, Format::Text004).expect("the Ray fixture parses");
    assert_eq!(exp.families.len(), 148);
    assert_eq!(exp.sample_count(), 1599);
    let count = |t: MetricType| exp.families.iter().filter(|f| f.metric_type == t).count();
    assert_eq!(count(MetricType::Gauge), 112);
    assert_eq!(count(MetricType::Counter), 18);
    assert_eq!(count(MetricType::Histogram), 18);
    assert_eq!(count(MetricType::Untyped), 0);
    let hist_samples: usize = exp
        .families
        .iter()
        .filter(|f| f.metric_type == MetricType::Histogram)
        .map(|f| f.samples.len())
        .sum();
    assert_eq!(hist_samples, 866);
    assert!(exp.families.iter().all(|f| f.help.is_some()));
}

/// Every `# TYPE` line of the fixture names a family of that type, in file order.
#[test]
fn ray_fixture_every_type_line_is_a_family() {
    let exp = parse_text(RAY, Format::Text004).expect("parses");
    let declared: Vec<(&str, &str)> = RAY
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|rest| rest.split_once(' ').expect("name and type"))
        .collect();
    assert_eq!(declared.len(), exp.families.len());
    for ((name, ty), fam) in declared.iter().zip(&exp.families) {
        assert_eq!(*name, fam.name);
        assert_eq!(*ty, fam.metric_type.as_str(), "type of {name}");
    }
    // Every sample line is accounted for, in order, with its own name.
    let names: Vec<&str> = RAY
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().expect("name"))
        .collect();
    let parsed: Vec<&str> = exp.samples().map(|s| s.name.as_str()).collect();
    assert_eq!(names, parsed);
}

#[test]
fn ray_fixture_exact_samples() {
    let exp = parse_text(RAY, Format::Text004).expect("parses");

    // Line 924: a histogram bucket with 14 labels written, 3 of them empty (dropped).
    let fam = exp
        .family("ray_serve_deployment_processing_latency_ms")
        .expect("histogram family");
    assert_eq!(fam.metric_type, MetricType::Histogram);
    assert_eq!(
        fam.help.as_deref(),
        Some("The latency for queries to be processed.")
    );
    assert_eq!(fam.samples.len(), 22);
    let bucket = &fam.samples[4];
    assert_eq!(
        bucket.name,
        "ray_serve_deployment_processing_latency_ms_bucket"
    );
    assert_eq!(
        bucket.labels,
        labels(&[
            ("Component", "core_worker"),
            ("NodeAddress", "192.0.2.2"),
            ("SessionName", "session_2026-11-23_04-20-12_700605_23540"),
            ("Version", "2.60.0"),
            (
                "WorkerId",
                "4a10ca2f32d24cdc656080536b8ba6c7306090ddd4de14290bfd2544"
            ),
            ("application", "default"),
            ("deployment", "FeatureExtractor"),
            ("le", "20.0"),
            (
                "otel_scope_name",
                "ray._private.telemetry.open_telemetry_metric_recorder"
            ),
            ("replica", "fsdp3jmr"),
            ("route", "/extract"),
        ])
    );
    assert_eq!(bucket.value, 200.0);
    assert_eq!(bucket.timestamp_ms, None);
    assert_eq!(fam.samples[19].label("le"), Some("+Inf"));
    // Ray writes `_count` before `_sum`.
    assert_eq!(
        fam.samples[20].name,
        "ray_serve_deployment_processing_latency_ms_count"
    );
    assert_eq!(fam.samples[20].value, 200.0);
    assert_eq!(
        fam.samples[21].name,
        "ray_serve_deployment_processing_latency_ms_sum"
    );
    assert_eq!(fam.samples[21].value, 3000.0);

    // A counter (line 1880).
    let c = exp
        .family("ray_serve_num_http_requests_total")
        .expect("counter family");
    assert_eq!(c.metric_type, MetricType::Counter);
    assert_eq!(c.samples.len(), 1);
    assert_eq!(c.samples[0].value, 200.0);
    assert_eq!(c.samples[0].label("status_code"), Some("200"));
    assert_eq!(c.samples[0].label("method"), Some("GET"));

    // Gauges with exponents (lines 24 and 1349).
    let rss = exp.family("process_resident_memory_bytes").expect("gauge");
    assert_eq!(rss.metric_type, MetricType::Gauge);
    assert_eq!(rss.samples[0].value, 1.3131776e8);
    assert!(rss.samples[0].labels.is_empty());
    let mem = exp.family("ray_node_mem_used_host").expect("gauge");
    assert_eq!(mem.samples[0].value, 1.15859456e9);
    assert_eq!(mem.samples[0].label("IsHeadNode"), Some("true"));

    // Label values with spaces, commas, quotes and parentheses (line 1821).
    let poll = exp
        .family("ray_serve_long_poll_host_transmission_counter_total")
        .expect("counter");
    let s = poll
        .samples
        .iter()
        .find(|s| {
            s.label("namespace_or_state")
                == Some("(LongPollNamespace.DEPLOYMENT_TARGETS, Deployment(name='FeatureExtractor', app='default'))")
        })
        .expect("sample with the comma-and-space label");
    assert_eq!(s.value, 4.0);

    // Labels come out sorted everywhere.
    assert!(
        exp.samples()
            .all(|s| s.labels.is_sorted_by(|a, b| a.0 < b.0))
    );
    // No empty label values survive.
    assert!(
        exp.samples()
            .all(|s| s.labels.iter().all(|(_, v)| !v.is_empty()))
    );
}

#[test]
fn escapes_timestamps_specials_and_normalisation() {
    let text = "# HELP msdos_file_access_time_seconds Access time \\\\ of files\\nsecond line\n\
                # TYPE msdos_file_access_time_seconds gauge\n\
                msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                \t  # a free comment, ignored\n\
                \n\
                metric_without_timestamp_and_labels 12.47\n\
                something_weird{problem=\"division by zero\"} +Inf -3982045\n\
                nan_metric NaN\n\
                neg_inf   -Inf\t1395066363000  \r\n\
                # TYPE rpc_duration_seconds summary\n\
                rpc_duration_seconds{quantile=\"0.01\"} 3102\n\
                rpc_duration_seconds{quantile=\"1\"} 76656\n\
                rpc_duration_seconds_sum 1.7560473e+07\n\
                rpc_duration_seconds_count 2693\n\
                # TYPE h histogram\n\
                h_bucket{ le = \"1\" , } 1\n\
                h_bucket{le=\"1e6\"} 2\n\
                h_bucket{le=\"+inf\"} 3\n";
    let exp = parse_text(text, Format::Text004).expect("parses");
    let f = exp
        .family("msdos_file_access_time_seconds")
        .expect("family");
    assert_eq!(
        f.help.as_deref(),
        Some("Access time \\ of files\nsecond line")
    );
    assert_eq!(
        f.samples[0].labels,
        labels(&[
            ("error", "Cannot find file:\n\"FILE.TXT\""),
            ("path", "C:\\DIR\\FILE.TXT"),
        ])
    );
    assert_eq!(f.samples[0].value, 1.458255915e9);

    let weird = exp.family("something_weird").expect("untyped family");
    assert_eq!(weird.metric_type, MetricType::Untyped);
    assert_eq!(weird.samples[0].value, f64::INFINITY);
    assert_eq!(weird.samples[0].timestamp_ms, Some(-3982045));
    assert!(
        exp.family("nan_metric").expect("nan").samples[0]
            .value
            .is_nan()
    );
    let neg = &exp.family("neg_inf").expect("neg").samples[0];
    assert_eq!(
        (neg.value, neg.timestamp_ms),
        (f64::NEG_INFINITY, Some(1395066363000))
    );

    let summary = exp.family("rpc_duration_seconds").expect("summary");
    assert_eq!(summary.metric_type, MetricType::Summary);
    assert_eq!(summary.samples.len(), 4);
    assert_eq!(summary.samples[1].label("quantile"), Some("1.0"));

    let h = exp.family("h").expect("histogram");
    let les: Vec<_> = h.samples.iter().filter_map(|s| s.label("le")).collect();
    assert_eq!(les, ["1.0", "1e+06", "+Inf"]);
}

#[test]
fn non_contiguous_families_are_merged_in_004() {
    let text = "# TYPE a counter\na 1\nb 2\na{x=\"y\"} 3\n";
    let exp = parse_text(text, Format::Text004).expect("parses");
    assert_eq!(exp.families.len(), 2);
    assert_eq!(exp.family("a").expect("a").samples.len(), 2);
    assert_eq!(
        exp.into_samples()
            .iter()
            .map(|s| s.value)
            .collect::<Vec<_>>(),
        [1.0, 3.0, 2.0]
    );
}

#[test]
fn empty_input_is_an_empty_exposition() {
    assert_eq!(
        parse_text("", Format::Text004).expect("ok").families.len(),
        0
    );
    assert_eq!(
        parse_text("\n\n# hi\n", Format::Text004)
            .expect("ok")
            .families
            .len(),
        0
    );
}

const OM: &str = "# TYPE acme_http_router_request_seconds summary\n\
# UNIT acme_http_router_request_seconds seconds\n\
# HELP acme_http_router_request_seconds Latency \\\"quoted\\\" through all of ACME's HTTP request router.\n\
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
# TYPE go_goroutines gauge\n\
go_goroutines 69 1605281325.123\n\
# TYPE process_cpu_seconds counter\n\
# UNIT process_cpu_seconds seconds\n\
process_cpu_seconds_total 4.20072246e+06\n\
process_cpu_seconds_created 1605281325.0\n\
# TYPE foo histogram\n\
foo_bucket{le=\"0.01\"} 0\n\
foo_bucket{le=\"0.1\"} 8 # {trace_id=\"KOO5S4vxi0o\",span=\"a\"} 0.067 1605281325.25\n\
foo_bucket{le=\"+Inf\"} 17 # {} 9.5\n\
foo_count 17\n\
foo_sum 324789.3\n\
foo_created 1520430000.123\n\
# TYPE q gaugehistogram\n\
q_bucket{le=\"1\"} 1\n\
q_bucket{le=\"+Inf\"} 2\n\
q_gcount 2\n\
q_gsum 3.5\n\
# TYPE build info\n\
build_info{version=\"1.2\"} 1\n\
# TYPE door stateset\n\
door{door=\"open\"} 1\n\
door{door=\"closed\"} 0\n\
# TYPE mystery unknown\n\
mystery 3\n\
# EOF\n";

#[test]
fn openmetrics_families_units_exemplars_created() {
    let exp = parse_text(OM, Format::OpenMetrics).expect("parses");
    assert_eq!(exp.families.len(), 8);
    assert_eq!(exp.sample_count(), 20);

    let s = exp
        .family("acme_http_router_request_seconds")
        .expect("summary");
    assert_eq!(s.metric_type, MetricType::Summary);
    assert_eq!(s.unit.as_deref(), Some("seconds"));
    assert_eq!(
        s.help.as_deref(),
        Some("Latency \"quoted\" through all of ACME's HTTP request router.")
    );
    assert_eq!(
        s.samples[2].name,
        "acme_http_router_request_seconds_created"
    );
    assert_eq!(s.samples[2].value, 1605281325.0);

    let g = &exp.family("go_goroutines").expect("gauge").samples[0];
    assert_eq!(g.timestamp_ms, Some(1_605_281_325_123));

    let c = exp.family("process_cpu_seconds").expect("counter");
    assert_eq!(c.metric_type, MetricType::Counter);
    assert_eq!(c.samples[0].name, "process_cpu_seconds_total");
    assert_eq!(c.samples[1].name, "process_cpu_seconds_created");

    let h = exp.family("foo").expect("histogram");
    assert_eq!(h.samples.len(), 6);
    assert_eq!(h.exemplars.len(), 2);
    assert_eq!(h.exemplars[0].sample_index, 1);
    assert_eq!(
        h.exemplars[0].labels,
        labels(&[("span", "a"), ("trace_id", "KOO5S4vxi0o")])
    );
    assert_eq!(h.exemplars[0].value, 0.067);
    assert_eq!(h.exemplars[0].timestamp_ms, Some(1_605_281_325_250));
    assert_eq!(h.exemplars[1].sample_index, 2);
    assert_eq!(h.exemplars[1].timestamp_ms, None);
    assert_eq!(h.samples[5].timestamp_ms, None);
    assert_eq!(h.samples[5].value, 1520430000.123);

    assert_eq!(
        exp.family("q").expect("gh").metric_type,
        MetricType::GaugeHistogram
    );
    assert_eq!(
        exp.family("q").expect("gh").samples[0].label("le"),
        Some("1.0")
    );
    assert_eq!(
        exp.family("build").expect("info").samples[0].name,
        "build_info"
    );
    assert_eq!(
        exp.family("door").expect("stateset").metric_type,
        MetricType::StateSet
    );
    assert_eq!(
        exp.family("mystery").expect("unknown").metric_type,
        MetricType::Untyped
    );
}

#[test]
fn openmetrics_eof_without_final_newline() {
    let exp = parse_text("a 1\n# EOF", Format::OpenMetrics).expect("parses");
    assert_eq!(exp.sample_count(), 1);
}

/// (input, format, line, column, message)
const ERRORS: &[(&str, Format, usize, usize, &str)] = &[
    (
        "up{job=\"a\" 1\n",
        Format::Text004,
        1,
        12,
        "expected ',' or '}' after the value of label \"job\"",
    ),
    (
        "up{job=\"a\n",
        Format::Text004,
        1,
        10,
        "expected '\"' to close the value of label \"job\"",
    ),
    (
        "up{job=\"a\\t\"} 1\n",
        Format::Text004,
        1,
        10,
        "invalid escape '\\t' in the value of label \"job\"; expected \\\\, \\\" or \\n",
    ),
    (
        "up{job=a} 1\n",
        Format::Text004,
        1,
        8,
        "expected '\"' to start the value of label \"job\", found 'a'",
    ),
    (
        "up{job} 1\n",
        Format::Text004,
        1,
        7,
        "expected '=' after label name \"job\", found '}'",
    ),
    (
        "up{1job=\"a\"} 1\n",
        Format::Text004,
        1,
        4,
        "expected a label name or '}', found '1'",
    ),
    (
        "up{\"job\"=\"a\"} 1\n",
        Format::Text004,
        1,
        4,
        "expected a label name or '}', found '\"' (quoted UTF-8 label names are not supported)",
    ),
    (
        "up{a=\"1\",b=\"2\",a=\"3\"} 1\n",
        Format::Text004,
        1,
        16,
        "duplicate label \"a\"",
    ),
    (
        "ok 1\nup\n",
        Format::Text004,
        2,
        3,
        "expected '{' or a space after metric name \"up\", found end of line",
    ),
    (
        "up-time 1\n",
        Format::Text004,
        1,
        3,
        "expected '{' or a space after metric name \"up\", found '-'",
    ),
    (
        "up{}x 1\n",
        Format::Text004,
        1,
        5,
        "expected a space after the labels, found 'x'",
    ),
    (
        "1up 1\n",
        Format::Text004,
        1,
        1,
        "expected a metric name, found '1'",
    ),
    (
        "{\"up\"} 1\n",
        Format::Text004,
        1,
        1,
        "expected a metric name, found '{' (quoted UTF-8 metric names are not supported)",
    ),
    (
        "up one\n",
        Format::Text004,
        1,
        4,
        "invalid sample value \"one\"; expected a float, NaN, +Inf or -Inf",
    ),
    (
        "up 0x1F\n",
        Format::Text004,
        1,
        4,
        "invalid sample value \"0x1F\"; expected a float, NaN, +Inf or -Inf",
    ),
    (
        "up 1 12.5\n",
        Format::Text004,
        1,
        6,
        "invalid timestamp \"12.5\"; expected integer milliseconds since the epoch",
    ),
    (
        "up 1 2 3\n",
        Format::Text004,
        1,
        8,
        "expected end of line, found '3'",
    ),
    (
        "# TYPE up counter\n# TYPE up gauge\n",
        Format::Text004,
        2,
        1,
        "second TYPE line for metric family \"up\"",
    ),
    (
        "# HELP up a\n# HELP up b\n",
        Format::Text004,
        2,
        1,
        "second HELP line for metric family \"up\"",
    ),
    (
        "up 1\n# TYPE up gauge\n",
        Format::Text004,
        2,
        1,
        "TYPE line for \"up\" must come before its samples",
    ),
    (
        "# TYPE up gauges\n",
        Format::Text004,
        1,
        11,
        "unknown metric type \"gauges\"; expected counter, gauge, histogram, summary or untyped",
    ),
    (
        "# TYPE up unknown\n",
        Format::Text004,
        1,
        11,
        "unknown metric type \"unknown\"; expected counter, gauge, histogram, summary or untyped",
    ),
    (
        "# TYPE up\n",
        Format::Text004,
        1,
        10,
        "expected a type after metric name \"up\"",
    ),
    (
        "# TYPE up gauge extra\n",
        Format::Text004,
        1,
        17,
        "expected end of line after type \"gauge\"",
    ),
    (
        "# TYPE 9up gauge\n",
        Format::Text004,
        1,
        8,
        "expected a metric name after '# TYPE', found '9'",
    ),
    (
        "# HELP up bad \\q escape\n",
        Format::Text004,
        1,
        15,
        "invalid escape '\\q' in HELP text; expected \\\\ or \\n",
    ),
    (
        "# TYPE h histogram\nh_bucket 1\n",
        Format::Text004,
        2,
        1,
        "sample \"h_bucket\" needs a \"le\" label",
    ),
    (
        "# TYPE h histogram\nh_bucket{le=\"big\"} 1\n",
        Format::Text004,
        2,
        10,
        "label \"le\" of \"h_bucket\" must be a float, found \"big\"",
    ),
    (
        "# TYPE h histogram\nh 1\n",
        Format::Text004,
        2,
        1,
        "sample \"h\" does not fit histogram family \"h\"; expected h_bucket, h_sum, h_count",
    ),
    (
        "# TYPE s summary\ns{x=\"1\"} 1\n",
        Format::Text004,
        2,
        1,
        "sample \"s\" needs a \"quantile\" label",
    ),
    // OpenMetrics specifics.
    (
        "a 1\n",
        Format::OpenMetrics,
        2,
        1,
        "expected '# EOF' as the last line of OpenMetrics input",
    ),
    (
        "a 1",
        Format::OpenMetrics,
        1,
        4,
        "expected '# EOF' as the last line of OpenMetrics input",
    ),
    (
        "",
        Format::OpenMetrics,
        1,
        1,
        "expected '# EOF' as the last line of OpenMetrics input",
    ),
    (
        "# EOF\na 1\n",
        Format::OpenMetrics,
        2,
        1,
        "unexpected content after '# EOF'; it must be the last line",
    ),
    (
        "# EOF\n\n",
        Format::OpenMetrics,
        2,
        1,
        "unexpected content after '# EOF'; it must be the last line",
    ),
    (
        "a 1\n\n# EOF\n",
        Format::OpenMetrics,
        2,
        1,
        "expected a metric line; blank lines are not allowed in OpenMetrics",
    ),
    (
        "# hello\n# EOF\n",
        Format::OpenMetrics,
        1,
        3,
        "expected HELP, TYPE, UNIT or EOF after '# '; other comments are not allowed in OpenMetrics",
    ),
    (
        "#TYPE a gauge\n# EOF\n",
        Format::OpenMetrics,
        1,
        2,
        "expected '# HELP', '# TYPE', '# UNIT' or '# EOF'; other comments are not allowed in OpenMetrics",
    ),
    (
        "a  1\n# EOF\n",
        Format::OpenMetrics,
        1,
        3,
        "expected a sample value",
    ),
    (
        "a 1 \n# EOF\n",
        Format::OpenMetrics,
        1,
        4,
        "expected end of line, found ' '",
    ),
    (
        "a{x=\"1\",} 1\n# EOF\n",
        Format::OpenMetrics,
        1,
        9,
        "expected a label name after ','; OpenMetrics allows no trailing comma",
    ),
    (
        "a 1 1e999\n# EOF\n",
        Format::OpenMetrics,
        1,
        5,
        "invalid timestamp \"1e999\"; expected seconds since the epoch (e.g. 1700000000.123)",
    ),
    (
        "# TYPE a untyped\n# EOF\n",
        Format::OpenMetrics,
        1,
        10,
        "unknown metric type \"untyped\"; expected counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown",
    ),
    (
        "# TYPE a_seconds gauge\n# UNIT a_seconds bytes\n# EOF\n",
        Format::OpenMetrics,
        2,
        18,
        "unit \"bytes\" must be a suffix of the metric family name \"a_seconds\" (as \"_bytes\")",
    ),
    (
        "# TYPE c counter\nc 1\n# EOF\n",
        Format::OpenMetrics,
        2,
        1,
        "sample \"c\" does not fit counter family \"c\"; expected c_total, c_created",
    ),
    (
        "# TYPE a gauge\na 1\nb 1\na 2\n# EOF\n",
        Format::OpenMetrics,
        4,
        1,
        "sample of metric family \"a\" after another family started; families must not be interleaved in OpenMetrics",
    ),
    (
        "a 1\nb 1\n# TYPE a gauge\n# EOF\n",
        Format::OpenMetrics,
        3,
        8,
        "metric family \"a\" appeared earlier; families must not be interleaved in OpenMetrics",
    ),
    (
        "a 1\n# HELP a late\n# EOF\n",
        Format::OpenMetrics,
        2,
        1,
        "HELP line for \"a\" must come before its samples",
    ),
    (
        "# HELP a x \\t\n# EOF\n",
        Format::OpenMetrics,
        1,
        12,
        "invalid escape '\\t' in HELP text; expected \\\\, \\\" or \\n",
    ),
    (
        "a_total 1 # {x=\"1\"}\n# EOF\n",
        Format::OpenMetrics,
        1,
        20,
        "expected a space and the exemplar value after its labels",
    ),
    (
        "a_total 1 #{x=\"1\"} 1\n# EOF\n",
        Format::OpenMetrics,
        1,
        11,
        "expected an exemplar '# {labels} value [timestamp]'",
    ),
    (
        "a 1 # {x=\"1\"} 1\n",
        Format::Text004,
        1,
        5,
        "invalid timestamp \"#\"; expected integer milliseconds since the epoch",
    ),
    (
        "# EOF junk\n",
        Format::OpenMetrics,
        1,
        6,
        "expected end of line after '# EOF'",
    ),
    // Columns count characters, not bytes.
    (
        "up{city=\"Zürich\" x} 1\n",
        Format::Text004,
        1,
        18,
        "expected ',' or '}' after the value of label \"city\"",
    ),
];

#[test]
fn every_error_has_position_and_message() {
    for (input, format, line, column, message) in ERRORS {
        let err = match parse_text(input, *format) {
            Ok(exp) => panic!("{input:?} ({format:?}) parsed: {exp:?}"),
            Err(e) => e,
        };
        assert_eq!(
            (err.line, err.column, err.message.as_str()),
            (*line, *column, *message),
            "input {input:?} ({format:?})"
        );
        assert_eq!(
            err.to_string(),
            format!("line {line}, column {column}: {message}")
        );
    }
}

#[test]
fn format_from_content_type() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0"),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_content_type("text/plain"), Format::Text004);
    assert_eq!(Format::from_content_type(""), Format::Text004);
}
