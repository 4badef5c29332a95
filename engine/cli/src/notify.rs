//! `telltale notify test|preview NAME`: one configured notifier, driven by hand with a
//! sample notification, so that an operator can check a receiver before an alert needs it.
//!
//! Neither touches the durable store or a running engine: the notifier is built from the
//! config alone, exactly as `telltale run` builds it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use telltale_config::{LoadedConfig, NotifierConfig};
use telltale_diagnostics::did_you_mean;
use telltale_model::{Alert, AlertKind, AlertStatus, Labels, Notification, Severity, now_ms};
use telltale_notify::{Delivery, Notifier, notifier};

/// `telltale notify ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum NotifyCommand {
    /// Send a sample notification through one notifier, once, with its usual retries, and
    /// say what the receiver answered. Exits 0 when delivered, 1 when not.
    Test {
        /// The notifier's `name` in the config's `notifiers:`.
        name: String,
        /// The YAML configuration file (default: the embedded one).
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
        /// Send the sample as a firing or a resolved alert.
        #[arg(long, value_enum, default_value_t = SampleStatus::Firing)]
        status: SampleStatus,
    },
    /// Print what one notifier would send for a sample notification, without sending it
    /// (secrets, and a URL's path and query, left out).
    Preview {
        /// The notifier's `name` in the config's `notifiers:`.
        name: String,
        /// The YAML configuration file (default: the embedded one).
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
        /// Show the sample as a firing or a resolved alert.
        #[arg(long, value_enum, default_value_t = SampleStatus::Firing)]
        status: SampleStatus,
    },
}

/// The sample's status.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SampleStatus {
    /// A firing alert.
    Firing,
    /// A resolved alert (fired for five minutes).
    Resolved,
}

/// Runs a `notify` command.
pub(crate) fn main(command: NotifyCommand) -> ExitCode {
    match command {
        NotifyCommand::Preview {
            name,
            config,
            status,
        } => preview(&name, config.as_deref(), status),
        NotifyCommand::Test {
            name,
            config,
            status,
        } => test(&name, config.as_deref(), status),
    }
}

fn preview(name: &str, config: Option<&Path>, status: SampleStatus) -> ExitCode {
    let n = match find(name, config) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let (notifier, kind) = n;
    let sample = sample(status);
    println!("notifier `{name}` ({kind}) would send:\n");
    println!("{}", notifier.preview(&sample));
    ExitCode::SUCCESS
}

fn test(name: &str, config: Option<&Path>, status: SampleStatus) -> ExitCode {
    crate::init_logging("warn");
    let (notifier, kind) = match find(name, config) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let rt = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let sample = sample(status);
    eprintln!(
        "sending a sample notification ({}) through `{name}` ({kind})...",
        sample.id
    );
    let outcome = rt.block_on(notifier.deliver(&sample));
    crate::stop_runtime(rt);
    match outcome {
        Delivery::Delivered { attempts } => {
            println!(
                "delivered after {attempts} attempt{}",
                if attempts == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Delivery::Failed { attempts, last } => {
            println!(
                "failed after {attempts} attempt{}: {last}",
                if attempts == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// Loads the config and builds the notifier called `name`, or says why not (an unknown
/// name lists the configured ones).
fn find(name: &str, config: Option<&Path>) -> Result<(Box<dyn Notifier>, &'static str), ExitCode> {
    let loaded: LoadedConfig = crate::load_config(config)?;
    let notifiers: &[NotifierConfig] = &loaded.config.notifiers;
    let Some((index, cfg)) = notifiers.iter().enumerate().find(|(_, n)| n.name == name) else {
        eprintln!(
            "error: {}",
            unknown(name, notifiers, &loaded.display_name())
        );
        return Err(ExitCode::FAILURE);
    };
    match notifier::build(index, cfg) {
        Ok(n) => {
            let kind = n.kind();
            Ok((n, kind))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The message for a name that is not a configured notifier.
fn unknown(name: &str, notifiers: &[NotifierConfig], file: &str) -> String {
    if notifiers.is_empty() {
        return format!(
            "no notifier `{name}`: {file} configures no notifiers (add one under `notifiers:`)"
        );
    }
    let names: Vec<&str> = notifiers.iter().map(|n| n.name.as_str()).collect();
    let mut msg = format!(
        "no notifier `{name}` in {file}; configured: {}",
        names.join(", ")
    );
    if let Some(close) = did_you_mean(name, names.iter().copied()) {
        msg.push_str(&format!(" (did you mean `{close}`?)"));
    }
    msg
}

/// A realistic sample: rule `sample`, severity warning, labels alertname/severity/host, a
/// fresh `msg_` id (a ULID, as the alert manager makes them) and the times of now.
fn sample(status: SampleStatus) -> Notification {
    let now = now_ms();
    // Fired five minutes ago, so a resolved sample reads "fired for 5m".
    let since = now - 5 * 60 * 1000;
    let status = match status {
        SampleStatus::Firing => AlertStatus::Firing,
        SampleStatus::Resolved => AlertStatus::Resolved,
    };
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let id = format!(
        "msg_{}",
        ulid::Ulid::from_parts(u64::try_from(now).unwrap_or(0), rand::random())
    );
    Notification {
        id,
        status,
        reason: telltale_model::NotificationReason::StateChange,
        quiet: false,
        alert: Alert {
            // Not a real alert's fingerprint: receivers that dedupe on it keep tests apart
            // from real alerts.
            fingerprint: "telltale-sample".into(),
            rule: "sample".into(),
            severity: Severity::Warning,
            labels: Labels::from([
                ("alertname".into(), "sample".into()),
                ("severity".into(), "warning".into()),
                ("host".into(), host),
            ]),
            summary: "This is a test notification from Telltale".into(),
            value: 42.0,
            active_since_ms: since,
            firing_since_ms: since,
            resolved_at_ms: (status == AlertStatus::Resolved).then_some(now),
            rule_file: "<telltale notify>".into(),
            kind: AlertKind::Condition,
            ack: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> Vec<NotifierConfig> {
        names
            .iter()
            .map(|n| NotifierConfig {
                name: (*n).into(),
                kind: telltale_config::NotifierKind::Console(Default::default()),
            })
            .collect()
    }

    #[test]
    fn unknown_names_list_the_configured_ones() {
        let ns = named(&["ops-webhook", "console"]);
        assert_eq!(
            unknown("ops-webhok", &ns, "t.yaml"),
            "no notifier `ops-webhok` in t.yaml; configured: ops-webhook, console \
             (did you mean `ops-webhook`?)"
        );
        assert_eq!(
            unknown("pager", &ns, "t.yaml"),
            "no notifier `pager` in t.yaml; configured: ops-webhook, console"
        );
        assert!(unknown("x", &[], "t.yaml").contains("configures no notifiers"));
    }

    #[test]
    fn the_sample_is_a_fresh_warning() {
        let a = sample(SampleStatus::Firing);
        let b = sample(SampleStatus::Resolved);
        assert!(a.id.starts_with("msg_") && a.id.len() == 4 + 26, "{}", a.id);
        assert_ne!(a.id, b.id);
        assert_eq!(a.alert.labels["alertname"], "sample");
        assert_eq!(a.alert.resolved_at_ms, None);
        // Resolved five minutes after it fired.
        let b_alert = &b.alert;
        assert_eq!(
            b_alert.resolved_at_ms.map(|r| r - b_alert.firing_since_ms),
            Some(300_000)
        );
    }
}
