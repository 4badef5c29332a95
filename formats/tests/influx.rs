//! Influx line protocol parser tests: types, escapes, precision, naming, and every error.

use telltale_formats::influx::{Precision, parse_lines, parse_lines_counted};

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn field_types_naming_and_tags() {
    let body = "# comment line\n\
                \n\
                weather,zone=b,city=Paris temperature=21.5,humidity=40i,count=7u,raining=true,dry=F,note=\"hi, there\",value=-1.5e2 1700000000\r\n\
                http.requests,host=web-1,status-class=2xx total=3i\n";
    let s = parse_lines(body, Precision::Seconds, 99).expect("parses");
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "weather_temperature",
            "weather_humidity",
            "weather_count",
            "weather_raining",
            "weather_dry",
            "weather",
            "http_requests_total",
        ]
    );
    let values: Vec<f64> = s.iter().map(|s| s.value).collect();
    assert_eq!(values, [21.5, 40.0, 7.0, 1.0, 0.0, -150.0, 3.0]);
    assert_eq!(s[0].labels, labels(&[("city", "Paris"), ("zone", "b")]));
    assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(
        s[6].labels,
        labels(&[("host", "web-1"), ("status_class", "2xx")])
    );
    assert_eq!(s[6].timestamp_ms, Some(99));
}

#[test]
fn escapes() {
    let body = concat!(
        r#"my\ meas\,ure,tag\ key=tag\,val\=ue\ x,b=c\\d f\=ield\ 1=1,s="a \"quoted\" \\ string",g=2 5"#,
        "\n",
        "multi s=\"line one\nline two\",v=3 7\n",
        r#"back\slash,t=v\q x=1"#,
        "\n",
    );
    let s = parse_lines(body, Precision::Milliseconds, 0).expect("parses");
    assert_eq!(s[0].name, "my_meas_ure_f_ield_1");
    assert_eq!(
        s[0].labels,
        labels(&[("b", "c\\d"), ("tag_key", "tag,val=ue x")])
    );
    assert_eq!(s[1].name, "my_meas_ure_g");
    assert_eq!(s[1].timestamp_ms, Some(5));
    // A string field may contain a newline; the next line number still counts it.
    assert_eq!(s[2].name, "multi_v");
    assert_eq!(s[2].timestamp_ms, Some(7));
    // Backslashes before other characters are literal.
    assert_eq!(s[3].name, "back_slash_x");
    assert_eq!(s[3].label("t"), Some("v\\q"));
    let err = parse_lines("multi s=\"a\nb\",v=3 7\nbad\n", Precision::Seconds, 0).unwrap_err();
    assert_eq!((err.line, err.column), (3, 4));
    // A backslash before the newline inside a string still counts the line.
    let err = parse_lines("m s=\"a\\\nb\",v=3\nbad\n", Precision::Seconds, 0).unwrap_err();
    assert_eq!((err.line, err.column), (3, 4));
}

#[test]
fn precision_conversion() {
    let line = "m v=1 1700000000123456789\n";
    let ms = |p| parse_lines(line, p, 0).expect("parses")[0].timestamp_ms;
    assert_eq!(ms(Precision::Nanoseconds), Some(1_700_000_000_123));
    assert_eq!(ms(Precision::Microseconds), Some(1_700_000_000_123_456));
    let neg = parse_lines("m v=1 -1500000\n", Precision::Nanoseconds, 0).expect("parses");
    assert_eq!(neg[0].timestamp_ms, Some(-2));
    let h = parse_lines("m v=1 2\n", Precision::Hours, 0).expect("parses");
    assert_eq!(h[0].timestamp_ms, Some(7_200_000));
    assert_eq!(Precision::from_param("s"), Some(Precision::Seconds));
    assert_eq!(Precision::from_param("ms"), Some(Precision::Milliseconds));
    assert_eq!(Precision::default(), Precision::Nanoseconds);
}

#[test]
fn empty_and_comment_only_bodies() {
    assert!(
        parse_lines("", Precision::Seconds, 0)
            .expect("ok")
            .is_empty()
    );
    assert!(
        parse_lines("\n  \n# x\n", Precision::Seconds, 0)
            .expect("ok")
            .is_empty()
    );
}

/// Telegraf sends lines whose fields are all strings (`uptime_format`, container states)
/// in the same batch as numbers: they are skipped, counted, and cost nothing else.
#[test]
fn string_only_lines_are_skipped_and_counted() {
    let body = "system,host=a load1=0.5 1\n\
                system,host=a uptime_format=\"3 days, 2:01\" 1\n\
                docker,name=db state=\"running\",health=\"ok\"\n\
                multi s=\"line one\nline two\"\n\
                mem,host=a used=7i 1\n";
    let parsed = parse_lines_counted(body, Precision::Seconds, 0).expect("parses");
    let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["system_load1", "mem_used"]);
    assert_eq!(parsed.string_only_lines, 3);
    assert_eq!(
        parse_lines(body, Precision::Seconds, 0).expect("parses"),
        parsed.samples
    );
    // Nothing but strings: no samples, no error.
    let parsed = parse_lines_counted("m s=\"x\"\n", Precision::Seconds, 0).expect("parses");
    assert_eq!((parsed.samples.len(), parsed.string_only_lines), (0, 1));
}

#[test]
fn all_or_nothing() {
    let body = "ok v=1\nok v=2\nbroken v=\n";
    let err = parse_lines(body, Precision::Seconds, 0).unwrap_err();
    assert_eq!(err.line, 3);
}

/// (input, line, column, message)
const ERRORS: &[(&str, usize, usize, &str)] = &[
    (",t=1 v=1\n", 1, 1, "expected a measurement name"),
    ("m\n", 1, 2, "expected a space and the field set"),
    ("m \n", 1, 3, "expected a field set (field=value)"),
    ("m,=1 v=1\n", 1, 3, "expected a tag key"),
    ("m,t v=1\n", 1, 4, "expected '=' after tag key \"t\""),
    ("m,t= v=1\n", 1, 5, "expected a value for tag \"t\""),
    ("m,t=1,x=2,t=3 v=1\n", 1, 11, "duplicate tag key \"t\""),
    ("m,a.b=1,a_b=2 v=1\n", 1, 9, "duplicate tag key \"a_b\""),
    ("m =1\n", 1, 3, "expected a field key"),
    ("m v\n", 1, 4, "expected '=' after field key \"v\""),
    ("m v=\n", 1, 5, "expected a value for field \"v\""),
    ("m v=1,\n", 1, 7, "expected a field key"),
    (
        "m v=abc\n",
        1,
        5,
        "invalid value \"abc\" for field \"v\": expected a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string",
    ),
    (
        "m v=NaN\n",
        1,
        5,
        "invalid value \"NaN\" for field \"v\": expected a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string",
    ),
    (
        "m v=-inf\n",
        1,
        5,
        "invalid value \"-inf\" for field \"v\": expected a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string",
    ),
    (
        "m v=1e999\n",
        1,
        5,
        "invalid value \"1e999\" for field \"v\": float out of range",
    ),
    (
        "m v=1.5i\n",
        1,
        5,
        "invalid value \"1.5i\" for field \"v\": expected a 64-bit signed integer before 'i'",
    ),
    (
        "m v=-1u\n",
        1,
        5,
        "invalid value \"-1u\" for field \"v\": expected a 64-bit unsigned integer before 'u'",
    ),
    (
        "m v=yes\n",
        1,
        5,
        "invalid value \"yes\" for field \"v\": expected a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string",
    ),
    (
        "m v=\"open\n",
        1,
        5,
        "unterminated string value for field \"v\"; expected a closing '\"'",
    ),
    (
        "m v=\"a\"b\n",
        1,
        8,
        "expected ',', a space or end of line after the field value",
    ),
    (
        "m s=\"only\",t=\"strings\" 1\nm v=bad\n",
        2,
        5,
        "invalid value \"bad\" for field \"v\": expected a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string",
    ),
    (
        "m s=\"only strings, but a bad timestamp\" 1.5\n",
        1,
        41,
        "invalid timestamp \"1.5\"; expected an integer in seconds",
    ),
    (
        "m v=1 12.5\n",
        1,
        7,
        "invalid timestamp \"12.5\"; expected an integer in seconds",
    ),
    (
        "m v=1 99999999999999999\n",
        1,
        7,
        "timestamp 99999999999999999 seconds is out of range",
    ),
    (
        "m v=1 1 2\n",
        1,
        9,
        "expected end of line after the timestamp",
    ),
    (
        "m a.b=1,a_b=2\n",
        1,
        9,
        "field \"a_b\" gives the sample name \"m_a_b\" a second time in this line",
    ),
    (
        "m value=1,value=2\n",
        1,
        11,
        "field \"value\" gives the sample name \"m\" a second time in this line",
    ),
    (
        "ok v=1\n  # indented comment\nm,city=Zürich x=1 y\n",
        3,
        19,
        "invalid timestamp \"y\"; expected an integer in seconds",
    ),
];

#[test]
fn every_error_has_position_and_message() {
    for (input, line, column, message) in ERRORS {
        let err = match parse_lines(input, Precision::Seconds, 0) {
            Ok(s) => panic!("{input:?} parsed: {s:?}"),
            Err(e) => e,
        };
        assert_eq!(
            (err.line, err.column, err.message.as_str()),
            (*line, *column, *message),
            "input {input:?}"
        );
    }
}
