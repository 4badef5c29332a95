//! Unit tests of the mapping on real `telltale_formats` output (the Ray Serve fixture and
//! small hand-written expositions).

use telltale_formats::prometheus::{Format, parse_text};

use super::*;

const RAY: &str = include_str!("../../../../formats/tests/fixtures/ray_serve_2.60_metrics.txt");

fn config(json: &str) -> Config {
    Config::parse(json).unwrap()
}

fn label<'a>(o: &'a Out, name: &str) -> Option<&'a str> {
    o.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn ray_fixture_maps_every_sample_with_target_labels() {
    let c = config(
        r#"{"targets":[{"url":"http://127.0.0.1:8080/metrics","name":"ray-head","labels":{"service":"ray"}}]}"#,
    );
    let exp = parse_text(RAY, Format::Text004).unwrap();
    let r = map_exposition(&c, &c.targets[0], exp, 42);
    assert_eq!(r.scraped, 1599);
    assert_eq!(r.samples.len(), 1599);
    let fds = r
        .samples
        .iter()
        .find(|o| o.name == "process_open_fds")
        .unwrap();
    assert_eq!(fds.value, 52.0);
    assert_eq!(fds.timestamp_ms, 42);
    assert_eq!(
        fds.labels,
        vec![
            ("instance".to_string(), "127.0.0.1:8080".to_string()),
            ("job".to_string(), "ray-head".to_string()),
            ("service".to_string(), "ray".to_string()),
        ]
    );
}

#[test]
fn allow_and_deny_filter_on_sample_and_family_names() {
    let c = config(
        r#"{"targets":[{"url":"http://h:1/m"}],"allow":["ray_serve_.*"],"deny":["ray_serve_health_check_latency_ms"]}"#,
    );
    let exp = parse_text(RAY, Format::Text004).unwrap();
    let r = map_exposition(&c, &c.targets[0], exp, 0);
    assert_eq!(r.scraped, 1599);
    assert!(!r.samples.is_empty());
    assert!(r.samples.iter().all(|o| o.name.starts_with("ray_serve_")));
    // The deny pattern names the family: its _bucket/_sum/_count series all go.
    assert!(
        !r.samples
            .iter()
            .any(|o| o.name.starts_with("ray_serve_health_check_latency_ms"))
    );
    let expected = RAY
        .lines()
        .filter(|l| {
            l.starts_with("ray_serve_") && !l.starts_with("ray_serve_health_check_latency_ms")
        })
        .count();
    assert_eq!(r.samples.len(), expected);
    // Anchored: `process` alone matches nothing.
    let c = config(r#"{"targets":[{"url":"http://h:1/m"}],"allow":["process"]}"#);
    let r = map_exposition(
        &c,
        &c.targets[0],
        parse_text(RAY, Format::Text004).unwrap(),
        0,
    );
    assert!(r.samples.is_empty());
}

#[test]
fn conflicting_scraped_labels_get_exported_prefix() {
    let c = config(
        r#"{"targets":[{"url":"http://10.0.0.1/metrics","name":"api","labels":{"env":"prod"}}]}"#,
    );
    let text = "# TYPE x gauge\nx{instance=\"pod-1\",job=\"inner\",exported_job=\"j0\",env=\"dev\",other=\"o\"} 3\n";
    let r = map_exposition(
        &c,
        &c.targets[0],
        parse_text(text, Format::Text004).unwrap(),
        0,
    );
    let o = &r.samples[0];
    assert_eq!(label(o, "instance"), Some("10.0.0.1:80"));
    assert_eq!(label(o, "job"), Some("api"));
    assert_eq!(label(o, "env"), Some("prod"));
    assert_eq!(label(o, "exported_instance"), Some("pod-1"));
    assert_eq!(label(o, "exported_env"), Some("dev"));
    assert_eq!(label(o, "other"), Some("o"));
    let mut names: Vec<_> = o.labels.iter().map(|(k, _)| k.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    names.dedup();
    assert_eq!(names.len(), o.labels.len());
    // Both `job` values survive: the target's as `job`, the two scraped ones prefixed.
    let jobs: Vec<_> = o
        .labels
        .iter()
        .filter(|(k, _)| k.ends_with("job"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(jobs.len(), 3, "{:?}", o.labels);
    assert!(jobs.contains(&"inner") && jobs.contains(&"j0") && jobs.contains(&"api"));
}

#[test]
fn up_semantics_and_counts() {
    let c = config(r#"{"targets":[{"url":"http://127.0.0.1:9/metrics"}],"deny":["b"]}"#);
    let t = &c.targets[0];
    let r = map_exposition(
        &c,
        t,
        parse_text("a 1\nb 2\nc 3\n", Format::Text004).unwrap(),
        5,
    );
    let up = target_metrics(t, Some(&r), 0.25, 5);
    let get = |ms: &[Out], n: &str| ms.iter().find(|o| o.name == n).unwrap().value;
    assert_eq!(get(&up, "up"), 1.0);
    assert_eq!(get(&up, "scrape_duration_seconds"), 0.25);
    assert_eq!(get(&up, "scrape_samples_scraped"), 3.0);
    assert_eq!(get(&up, "scrape_samples_post_filter"), 2.0);
    assert!(
        up.iter()
            .all(|o| o.labels == vec![("instance".into(), "127.0.0.1:9".into())])
    );
    let down = target_metrics(t, None, 0.01, 5);
    assert_eq!(get(&down, "up"), 0.0);
    assert_eq!(get(&down, "scrape_samples_scraped"), 0.0);
    assert_eq!(down.len(), 4);
}

#[test]
fn timestamps_are_honoured_or_replaced() {
    let text = "a 1 1700000000000\nb 2\n";
    let c = config(r#"{"targets":[{"url":"http://h:1/"}]}"#);
    let r = map_exposition(
        &c,
        &c.targets[0],
        parse_text(text, Format::Text004).unwrap(),
        99,
    );
    assert_eq!(r.samples[0].timestamp_ms, 1_700_000_000_000);
    assert_eq!(r.samples[1].timestamp_ms, 99);
    let c = config(r#"{"targets":[{"url":"http://h:1/"}],"honor_timestamps":false}"#);
    let r = map_exposition(
        &c,
        &c.targets[0],
        parse_text(text, Format::Text004).unwrap(),
        99,
    );
    assert_eq!(r.samples[0].timestamp_ms, 99);
}

#[test]
fn format_choice_and_config_errors() {
    let c = config(r#"{"targets":[{"url":"http://h:1/"}]}"#);
    assert_eq!(
        c.format
            .pick(Some("application/openmetrics-text; version=1.0.0")),
        Format::OpenMetrics
    );
    assert_eq!(c.format.pick(None), Format::Text004);
    let c = config(r#"{"targets":[{"url":"http://h:1/"}],"format":"openmetrics"}"#);
    assert_eq!(c.format.pick(Some("text/plain")), Format::OpenMetrics);
    for (json, needle) in [
        (r#"{"targets":[]}"#, "empty"),
        (r#"{"targets":[{"url":"https://h/"}]}"#, "http://"),
        (
            r#"{"targets":[{"url":"http://h:1/"}],"allow":["("]}"#,
            "not a valid regex",
        ),
        (
            r#"{"targets":[{"url":"http://h:1/"}],"format":"json"}"#,
            "unknown `format`",
        ),
        (
            r#"{"targets":[{"url":"http://h:1/","labels":{"a-b":"x"}}]}"#,
            "invalid label name",
        ),
        (r#"{"targets":[{"url":"http://h:1/"}],"nope":1}"#, "nope"),
    ] {
        let e = Config::parse(json).unwrap_err();
        assert!(e.contains(needle), "{json}: {e}");
    }
    assert_eq!(instance_of("http://[::1]/m").unwrap(), "[::1]:80");
    assert_eq!(instance_of("http://[::1]:9090/m").unwrap(), "[::1]:9090");
}
