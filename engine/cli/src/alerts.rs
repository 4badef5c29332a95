//! `telltale alerts`, `ack`, `unack`, `snooze` and `silence`: an operator's hands on a
//! running engine's alert manager, through the durable store (until the HTTP API comes).
//!
//! Reads (`alerts`, `silence list`) open the database read-only and show the state the
//! engine last saved (it saves within a second of a change). Changes are left as commands
//! in the database's queue; the engine applies them within a second and writes each one's
//! outcome, which is printed. With no engine running a command waits in the queue and is
//! applied by the next `telltale run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use telltale_config::LoadedConfig;
use telltale_model::{TimestampMs, now_ms};
use telltale_routing::{AlertRouter, AlertView, Command, RoutingState, SilenceSpec};
use telltale_store::disk::admin::ReadOnlyDatabase;
use telltale_store::disk::control::CommandQueue;

/// How long a command waits for the engine's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Options every command here takes.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The configuration `telltale run` uses (default: the embedded one).
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "TELLTALE_CONFIG",
        global = true
    )]
    config: Option<PathBuf>,
}

/// Who does it: `--by`, else the user's login name.
#[derive(Debug, Args)]
pub(crate) struct Who {
    /// Who you are (default: $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Why, or what you are doing about it.
    #[arg(long, short = 'm', value_name = "TEXT", default_value = "")]
    comment: String,
}

impl Who {
    fn name(&self) -> String {
        self.by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The `silence` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SilenceCommand {
    /// Silence the alerts that match every MATCHER (`name=value`, `!=`, `=~`, `!~`), e.g.
    /// `telltale silence add 'alertname=disk_full' 'mount=~"/mnt/.*"' --for 2h`.
    Add {
        /// Alertmanager-style matchers, all of which an alert must meet.
        #[arg(value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long from now (`30m`, `2h`, `1d`).
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        duration: Option<String>,
        /// Until when (RFC 3339, e.g. `2026-12-04T08:00:00Z`).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// End as soon as every alert it silences has resolved (with --for/--until: at the
        /// earlier of the two).
        #[arg(long)]
        until_resolved: bool,
        #[command(flatten)]
        who: Who,
    },
    /// List the silences (active, pending and recently expired).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire {
        /// Its id (from `silence list`).
        id: String,
    },
}

/// `telltale alerts`.
pub(crate) fn list(target: &Target, json: bool) -> ExitCode {
    let (router, now) = match saved_router(target) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let alerts = router.alerts(now);
    if json {
        return print_json(&alerts);
    }
    if alerts.is_empty() {
        println!("no firing alerts");
        return ExitCode::SUCCESS;
    }
    for a in &alerts {
        println!("{}", alert_line(a, now));
    }
    ExitCode::SUCCESS
}

/// `telltale ack`, `unack`, `snooze`.
pub(crate) fn act(target: &Target, command: Command) -> ExitCode {
    submit(target, &command)
}

/// `telltale ack FINGERPRINT`.
pub(crate) fn ack(target: &Target, fingerprint: String, who: &Who) -> ExitCode {
    act(
        target,
        Command::Ack {
            fingerprint,
            by: who.name(),
            comment: who.comment.clone(),
        },
    )
}

/// `telltale unack FINGERPRINT`.
pub(crate) fn unack(target: &Target, fingerprint: String, who: &Who) -> ExitCode {
    act(
        target,
        Command::Unack {
            fingerprint,
            by: who.name(),
        },
    )
}

/// `telltale snooze FINGERPRINT --for D | --until T`.
pub(crate) fn snooze(
    target: &Target,
    fingerprint: String,
    duration: Option<&str>,
    until: Option<&str>,
    who: &Who,
) -> ExitCode {
    let until_ms = match end_time(duration, until, now_ms()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            eprintln!("error: say how long: --for 2h, or --until 2026-12-04T08:00:00Z");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    act(
        target,
        Command::Snooze {
            fingerprint,
            until_ms,
            by: who.name(),
            comment: who.comment.clone(),
        },
    )
}

/// `telltale silence ...`.
pub(crate) fn silence(target: &Target, command: SilenceCommand) -> ExitCode {
    match command {
        SilenceCommand::Add {
            matchers,
            duration,
            until,
            until_resolved,
            who,
        } => {
            let now = now_ms();
            let ends_at_ms = match end_time(duration.as_deref(), until.as_deref(), now) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if ends_at_ms.is_none() && !until_resolved {
                eprintln!(
                    "error: say when it ends: --for 2h, --until 2026-12-04T08:00:00Z, or --until-resolved"
                );
                return ExitCode::from(2);
            }
            // Time-ordered and unique: 48 bits of milliseconds, 80 random.
            let id = format!(
                "sil_{}",
                ulid::Ulid::from_parts(u64::try_from(now).unwrap_or(0), rand::random())
            );
            println!("silence {id}");
            submit(
                target,
                &Command::AddSilence(SilenceSpec {
                    id,
                    matchers,
                    starts_at_ms: now,
                    ends_at_ms,
                    created_by: who.name(),
                    comment: who.comment.clone(),
                    until_resolved,
                }),
            )
        }
        SilenceCommand::Expire { id } => submit(target, &Command::ExpireSilence { id }),
        SilenceCommand::List { json } => {
            let (router, now) = match saved_router(target) {
                Ok(r) => r,
                Err(code) => return code,
            };
            let silences = router.silences(now);
            if json {
                return print_json(&silences);
            }
            if silences.is_empty() {
                println!("no silences");
            }
            for s in &silences {
                let spec = &s.silence.spec;
                let ends = match spec.ends_at_ms {
                    Some(t) => rfc3339_ms(t),
                    None => "when its alerts resolve".into(),
                };
                println!(
                    "{}  {:?}  {}  until {}{}  by {}{}",
                    spec.id,
                    s.state,
                    spec.matchers.join(" "),
                    ends,
                    if spec.until_resolved && spec.ends_at_ms.is_some() {
                        " or when its alerts resolve"
                    } else {
                        ""
                    },
                    spec.created_by,
                    if spec.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", spec.comment)
                    }
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// One alert per line: fingerprint, name and labels, since when, and what the alert
/// manager does with it.
fn alert_line(a: &AlertView, now: TimestampMs) -> String {
    let al = &a.alert;
    let mut labels = String::new();
    let _ = telltale_model::write_labels(&mut labels, &al.labels);
    let mut status = Vec::new();
    if let Some(ack) = &a.ack {
        status.push(format!("acknowledged by {}", ack.by));
    }
    if let Some(t) = a.snoozed_until_ms.filter(|t| *t > now) {
        status.push(format!("snoozed until {}", rfc3339_ms(t)));
    }
    if !a.silenced_by.is_empty() {
        status.push(format!("silenced by {}", a.silenced_by.join(", ")));
    }
    if let Some(by) = &a.inhibited_by {
        status.push(format!("inhibited by {by}"));
    }
    if let Some(e) = &a.escalation {
        status.push(format!("escalation {e:?}"));
    }
    if !a.notified {
        status.push("not yet notified".into());
    }
    format!(
        "{}  {}{}  firing since {}  value={}{}",
        al.fingerprint,
        al.rule,
        labels,
        rfc3339_ms(al.firing_since_ms),
        al.value,
        if status.is_empty() {
            String::new()
        } else {
            format!("  [{}]", status.join("; "))
        }
    )
}

/// RFC 3339 UTC with seconds.
fn rfc3339_ms(ms: TimestampMs) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--for D` from `now`, or `--until T`, or neither.
fn end_time(
    duration: Option<&str>,
    until: Option<&str>,
    now: TimestampMs,
) -> Result<Option<TimestampMs>, String> {
    if let Some(d) = duration {
        let d = humantime::parse_duration(d.trim())
            .map_err(|e| format!("--for {d}: not a duration ({e}); write it like 30m or 2h"))?;
        return Ok(Some(now + d.as_millis() as i64));
    }
    if let Some(t) = until {
        let at = humantime::parse_rfc3339_weak(t.trim()).map_err(|e| {
            format!("--until {t}: not a time ({e}); write it like 2026-12-04T08:00:00Z")
        })?;
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("--until {t}: before 1970"))?
            .as_millis() as i64;
        if ms <= now {
            return Err(format!("--until {t} is in the past"));
        }
        return Ok(Some(ms));
    }
    Ok(None)
}

fn load(target: &Target) -> Result<LoadedConfig, ExitCode> {
    let loaded = crate::load_config(target.config.as_deref())?;
    if !loaded.config.store.enabled {
        eprintln!(
            "error: the store is disabled in {} (`store.enabled: false`): the alert manager keeps no state, so there is nothing to read or change from here",
            loaded.display_name()
        );
        return Err(ExitCode::FAILURE);
    }
    Ok(loaded)
}

/// The alert manager as the engine last saved it, and the time it is looked at.
fn saved_router(target: &Target) -> Result<(AlertRouter, TimestampMs), ExitCode> {
    let loaded = load(target)?;
    let now = now_ms();
    let path = loaded.store_path();
    let text = ReadOnlyDatabase::open(&path)
        .map_err(|e| e.to_string())
        .and_then(|db| db.routing_state().map_err(|e| e.to_string()));
    let state = match text {
        Ok(Some(t)) => serde_json::from_str::<RoutingState>(&t).map_err(|e| {
            eprintln!(
                "error: {}: the saved alert-manager state cannot be read: {e}",
                path.display()
            );
            ExitCode::FAILURE
        })?,
        Ok(None) => RoutingState::default(),
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    if let Err(e) = telltale_routing::check_state_version(&state) {
        eprintln!("error: {}: {e}", path.display());
        return Err(ExitCode::FAILURE);
    }
    let router = AlertRouter::restore(&loaded.config, state, now).map_err(|e| {
        eprintln!("error: {}", e.0);
        ExitCode::FAILURE
    })?;
    Ok((router, now))
}

/// Leaves `command` for the engine and prints its answer. Exit 0 when applied, 1 when
/// refused, 3 when no engine answered in time (it stays queued).
fn submit(target: &Target, command: &Command) -> ExitCode {
    let loaded = match load(target) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let path = loaded.store_path();
    let queue = match CommandQueue::open(&path) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match serde_json::to_string(command) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let seq = match queue.submit(&text, now_ms()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_answer(&queue, seq, &path)
}

fn wait_for_answer(queue: &CommandQueue, seq: i64, path: &Path) -> ExitCode {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        match queue.outcome(seq) {
            Ok(Some(outcome)) => {
                return match outcome.strip_prefix("error: ") {
                    Some(e) => {
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
                    None => {
                        println!("{}", outcome.strip_prefix("ok: ").unwrap_or(&outcome));
                        ExitCode::SUCCESS
                    }
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                eprintln!(
                    "queued: no engine answered within {}s; `telltale run` with this config applies it when it runs ({})",
                    ANSWER_WAIT.as_secs(),
                    path.display()
                );
                return ExitCode::from(3);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
