//! The console notifier: one readable line per notification on standard output, or the
//! webhook payload as one JSON line for machines.

use std::io::Write as _;

use crate::notifier::{Delivery, DeliveryFuture, Notifier};
use crate::payload::WebhookPayload;
use crate::preview::Preview;
use telltale_config::ConsoleConfig;
use telltale_model::{AlertStatus, Labels, Notification, write_labels};

/// Prints notifications to standard output.
#[derive(Debug, Clone)]
pub struct ConsoleNotifier {
    name: String,
    /// Print the JSON payload instead of a readable line.
    json: bool,
}

impl ConsoleNotifier {
    /// A console notifier named `name` (used in logs).
    pub fn new(name: &str, cfg: &ConsoleConfig) -> ConsoleNotifier {
        ConsoleNotifier {
            name: name.to_string(),
            json: cfg.json,
        }
    }

    /// The text printed for one notification (without the trailing newline).
    pub fn render(&self, n: &Notification) -> String {
        if self.json {
            String::from_utf8_lossy(&WebhookPayload::from_notification(n).to_json()).into_owned()
        } else {
            format_line(n)
        }
    }

    /// Writes one notification to stdout. Fails only when stdout is gone (closed pipe).
    pub fn write(&self, n: &Notification) -> std::io::Result<()> {
        let line = self.render(n);
        // Lock once so lines from different notifiers never interleave mid-line.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    }
}

impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "console"
    }

    /// One write, no retry: a stdout that is gone stays gone.
    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliveryFuture<'a> {
        let outcome = match self.write(n) {
            Ok(()) => Delivery::Delivered { attempts: 1 },
            Err(e) => {
                tracing::error!(notifier = %self.name, id = %n.id, error = %e, "cannot write to stdout");
                Delivery::Failed {
                    attempts: 1,
                    last: format!("cannot write to stdout: {e}"),
                }
            }
        };
        Box::pin(std::future::ready(outcome))
    }

    /// The line [`write`](ConsoleNotifier::write) prints.
    fn preview(&self, n: &Notification) -> Preview {
        Preview::Line(self.render(n))
    }
}

/// One readable line:
/// `FIRING   [warning] high_cpu{cpu="total"} value=97.2 — CPU at 97%`, or for a resolved alert
/// `RESOLVED [warning] high_cpu{cpu="total"} value=12 — CPU at 97% (fired for 5m 3s)`.
/// `alertname` and `severity` are left out of the printed labels: they are already on the line.
pub fn format_line(n: &Notification) -> String {
    let a = &n.alert;
    let status = match n.status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    };
    let shown: Labels = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "severity")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut labels = String::new();
    // Writing into a String cannot fail.
    let _ = write_labels(&mut labels, &shown);
    let mut line = format!(
        "{status:<8} [{}] {}{labels} value={}",
        a.severity,
        a.rule,
        format_value(a.value)
    );
    if !a.summary.is_empty() {
        line.push_str(" — ");
        line.push_str(&a.summary);
    }
    if let (AlertStatus::Resolved, Some(end)) = (n.status, a.resolved_at_ms) {
        let fired_ms = u64::try_from(end.saturating_sub(a.firing_since_ms)).unwrap_or(0);
        // Whole seconds: milliseconds are noise to a person reading a log.
        let fired = std::time::Duration::from_secs(fired_ms / 1000);
        line.push_str(&format!(
            " (fired for {})",
            humantime::format_duration(fired)
        ));
    }
    line
}

/// A value as a person wants to read it: at most three decimals, no trailing zeros,
/// `NaN`/`+Inf`/`-Inf` as Prometheus writes them, exponent form for very large or small ones.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-3..1e15).contains(&abs) {
        return format!("{v:.3e}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::notification;

    #[test]
    fn firing_line() {
        let n = notification("n1", 97.2, AlertStatus::Firing);
        assert_eq!(
            format_line(&n),
            r#"FIRING   [warning] high_cpu{cpu="total"} value=97.2 — CPU at 97%"#
        );
    }

    #[test]
    fn resolved_line() {
        let mut n = notification("n1", 12.0, AlertStatus::Resolved);
        n.alert.firing_since_ms = 1_700_000_000_000;
        n.alert.resolved_at_ms = Some(1_700_000_303_400);
        assert_eq!(
            format_line(&n),
            r#"RESOLVED [warning] high_cpu{cpu="total"} value=12 — CPU at 97% (fired for 5m 3s)"#
        );
    }

    #[test]
    fn no_labels_no_summary() {
        let mut n = notification("n1", f64::NAN, AlertStatus::Firing);
        n.alert.labels.retain(|k, _| k == "alertname");
        n.alert.summary.clear();
        assert_eq!(format_line(&n), "FIRING   [warning] high_cpu value=NaN");
    }

    #[test]
    fn values_read_well() {
        assert_eq!(format_value(97.2), "97.2");
        assert_eq!(format_value(0.1 + 0.2), "0.3");
        assert_eq!(format_value(100.0), "100");
        assert_eq!(format_value(-0.0001), "-1.000e-4");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(2e20), "2.000e20");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn preview_is_the_printed_line() {
        let n = notification("n1", 97.2, AlertStatus::Firing);
        let c = ConsoleNotifier::new("c", &ConsoleConfig { json: false });
        // The same line `firing_line` spells out by hand.
        assert_eq!(
            c.preview(&n).to_string(),
            r#"FIRING   [warning] high_cpu{cpu="total"} value=97.2 — CPU at 97%"#
        );
    }

    #[test]
    fn json_mode_prints_the_payload() {
        let n = notification("n1", 1.5, AlertStatus::Firing);
        let line = ConsoleNotifier::new("c", &ConsoleConfig { json: true }).render(&n);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], "n1");
        assert_eq!(v["alert"]["value"], 1.5);
    }
}
