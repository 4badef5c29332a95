//! Prometheus name rules: validation for formats that must already be valid (Prometheus
//! text), sanitisation for formats that have their own, looser naming (Influx, StatsD).

/// True if `name` is a valid Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// ```
/// assert!(telltale_formats::is_valid_metric_name("node_cpu:rate5m"));
/// assert!(!telltale_formats::is_valid_metric_name("5xx"));
/// ```
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && is_metric_start(b[0])
        && b[1..]
            .iter()
            .all(|&c| is_metric_start(c) || c.is_ascii_digit())
}

/// True if `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// ```
/// assert!(telltale_formats::is_valid_label_name("le"));
/// assert!(!telltale_formats::is_valid_label_name("a:b"));
/// ```
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && is_label_start(b[0])
        && b[1..]
            .iter()
            .all(|&c| is_label_start(c) || c.is_ascii_digit())
}

#[inline]
pub(crate) fn is_metric_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

#[inline]
pub(crate) fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

/// Maps an arbitrary name onto the Prometheus metric-name charset: every character outside
/// `[a-zA-Z0-9_:]` (including each non-ASCII character) becomes `_`, and a leading digit gets
/// a `_` prefix. Returns `None` for an empty name.
///
/// ```
/// assert_eq!(telltale_formats::sanitize_metric_name("cpu.load-1m").as_deref(), Some("cpu_load_1m"));
/// assert_eq!(telltale_formats::sanitize_metric_name("5xx").as_deref(), Some("_5xx"));
/// ```
pub fn sanitize_metric_name(name: &str) -> Option<String> {
    sanitize(name, metric_char)
}

/// Maps an arbitrary name onto the Prometheus label-name charset `[a-zA-Z0-9_]` (first
/// character not a digit), like [`sanitize_metric_name`] but without `:`.
///
/// ```
/// assert_eq!(telltale_formats::sanitize_label_name("host-name").as_deref(), Some("host_name"));
/// ```
pub fn sanitize_label_name(name: &str) -> Option<String> {
    sanitize(name, |c| is_label_start(c) || c.is_ascii_digit())
}

fn sanitize(name: &str, allowed: impl Fn(u8) -> bool) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(name.len() + 1);
    if name.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    push_sanitized(&mut out, name, allowed);
    Some(out)
}

/// Appends `s` to `out`, replacing every character not `allowed` with `_` (no digit rule:
/// for appending to a name that already has a valid start).
pub(crate) fn push_sanitized(out: &mut String, s: &str, allowed: impl Fn(u8) -> bool) {
    // Most names are already valid: copy them in one go.
    if s.bytes().all(&allowed) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if c.is_ascii() && allowed(c as u8) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
}

/// The metric-name charset test, for [`push_sanitized`].
pub(crate) fn metric_char(c: u8) -> bool {
    is_metric_start(c) || c.is_ascii_digit()
}

/// Formats a float the way Prometheus 3 normalises `le` and `quantile` label values
/// (Go's `formatOpenMetricsFloat`): shortest round-trip digits, exponent form when the
/// decimal exponent is below -4 or at least 6 (`1e+06`, two-digit exponent with sign), and a
/// `.0` appended to integers (`1` → `1.0`); `+Inf`, `-Inf`, `NaN` spelled that way.
pub(crate) fn format_openmetrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        // Also catches -0.0, which Go prints as "0.0" here too (f == 0 branch).
        return "0.0".to_string();
    }
    let exp_form = format!("{f:e}"); // e.g. "1.5e6", "-1e-5": shortest round-trip digits
    let (mantissa, exp) = match exp_form.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (exp_form.as_str(), 0),
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let mut s = format!("{f}");
        if !s.contains('.') {
            s.push_str(".0");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_float_matches_go_formatting() {
        let cases = [
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.0, "0.0"),
            (0.005, "0.005"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (100000.0, "100000.0"),
            (1_000_000.0, "1e+06"),
            (1.5e6, "1.5e+06"),
            (1e100, "1e+100"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(format_openmetrics_float(f), want, "formatting {f}");
        }
    }

    #[test]
    fn sanitising_and_validation() {
        assert_eq!(sanitize_metric_name("a.b:c").as_deref(), Some("a_b:c"));
        assert_eq!(sanitize_label_name("a.b:c").as_deref(), Some("a_b_c"));
        assert_eq!(
            sanitize_metric_name("température").as_deref(),
            Some("temp_rature")
        );
        assert_eq!(sanitize_metric_name(""), None);
        assert!(is_valid_metric_name(":a1"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_label_name("1a"));
        assert!(is_valid_label_name("__name__"));
    }
}
