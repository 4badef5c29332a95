//! The alert manager's place in the engine: between the rule state machine's
//! notifications and the dispatcher. `telltale-routing` decides who gets what and when
//! (routing tree, groups, silences, inhibition, acknowledgements, escalation); this module
//! feeds it, hands its deliveries to the dispatcher, applies the commands `telltale ack`,
//! `silence` and `snooze` leave in the durable store, and keeps its state there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

use telltale_config::Config;
use telltale_model::{Alert, AlertStatus, Notification, NotificationReason, TimestampMs};
use telltale_notify::DispatcherHandle;
use telltale_routing::{AlertRouter, Command, Delivery, RoutingState};
use telltale_store::disk::Database;

use crate::supervise::FailureLog;

/// The alert manager and where its state is kept.
pub(crate) struct Alerting {
    router: AlertRouter,
    db: Option<Arc<Database>>,
    /// Something changed since the state was last saved.
    dirty: bool,
    /// What changed is an alert that fired or resolved, or a delivery: saved at the next
    /// look (within a second), so `telltale alerts` and a restart see it.
    urgent: bool,
    /// When it was last saved (see [`Alerting::save_if_changed`]).
    saved_ms: TimestampMs,
    /// Commands applied whose answers are not in the store yet: written in the same
    /// transaction as the state they changed.
    answers: Vec<(i64, String)>,
    /// The last command applied this run, so a command whose answer could not be written
    /// yet is not applied twice.
    last_seq: i64,
    log: FailureLog,
}

/// How often, at most, a change made only by time (a group's next tick moved, nothing sent)
/// is saved. Alerts that fired or resolved, deliveries and commands are saved at the next
/// look, within a second.
/// (A restart that finds an older timer runs it at once, and it sends only what is due.)
const SAVE_EVERY_MS: TimestampMs = 60_000;

impl Alerting {
    /// The alert manager for `cfg`, continuing from the state the last run saved (when
    /// there is one and it can be read; otherwise it starts empty, said in the log).
    pub(crate) fn open(
        cfg: &Config,
        db: Option<Arc<Database>>,
        now: TimestampMs,
    ) -> anyhow::Result<Alerting> {
        if let Some(w) = telltale_config::alerting::legacy_routes_warning(cfg) {
            warn!("{w}");
        }
        let saved = match &db {
            Some(db) => match db.load_routing_state() {
                Ok(s) => s,
                Err(e) => {
                    warn!(
                        "alert manager state: cannot read it: {e}; starting afresh (silences and acknowledgements are lost)"
                    );
                    None
                }
            },
            None => None,
        };
        let restored = saved.and_then(|text| match serde_json::from_str::<RoutingState>(&text) {
            Ok(state) => match telltale_routing::check_state_version(&state) {
                Ok(()) => Some(state),
                Err(e) => {
                    warn!("alert manager state: {e}");
                    None
                }
            },
            Err(e) => {
                warn!("alert manager state: the saved state cannot be read ({e}); starting afresh");
                None
            }
        });
        let router = match restored {
            Some(state) => {
                let r = AlertRouter::restore(cfg, state, now)
                    .map_err(|e| anyhow::anyhow!("{}", e.0))
                    .context("cannot restore the alert manager")?;
                info!(
                    "alert manager state restored: {} alert(s), {} silence(s)",
                    r.alerts(now).len(),
                    r.silences(now).len()
                );
                r
            }
            None => AlertRouter::new(cfg)
                .map_err(|e| anyhow::anyhow!("{}", e.0))
                .context("cannot build the alert manager")?,
        };
        Ok(Alerting {
            router,
            db,
            dirty: false,
            urgent: false,
            saved_ms: now,
            answers: Vec::new(),
            last_seq: 0,
            log: FailureLog::new("alert manager state"),
        })
    }

    /// Routes what the state machine made at `now` and hands what is due to the
    /// dispatcher.
    pub(crate) fn route(
        &mut self,
        notes: Vec<Notification>,
        dispatcher: &DispatcherHandle,
        now: TimestampMs,
    ) {
        if notes.is_empty() {
            return;
        }
        self.dirty = true;
        self.urgent = true;
        let out = self.router.on_notifications(notes, now);
        dispatch(out, dispatcher);
    }

    /// Routes a notice that has no lifecycle (a scaling decision) and hands it to the
    /// dispatcher at once (see `AlertRouter::route_event`).
    pub(crate) fn route_event(
        &mut self,
        n: Notification,
        dispatcher: &DispatcherHandle,
        now: TimestampMs,
    ) {
        dispatch(self.router.route_event(n, now), dispatcher);
    }

    /// Runs what came due by `now` (group flushes, repeats, escalation levels, snooze and
    /// silence ends).
    pub(crate) fn tick(&mut self, dispatcher: &DispatcherHandle, now: TimestampMs) {
        if self.router.next_deadline().is_none_or(|t| t > now) {
            return;
        }
        let out = self.router.tick(now);
        // A group that had nothing new is rescheduled the same way after a restart; what
        // reached someone is saved soon.
        self.dirty = true;
        self.urgent |= !out.is_empty();
        dispatch(out, dispatcher);
    }

    /// Makes the router agree with the rule state machine after a start: a firing alert
    /// the router does not know (its state was lost, or saved before the alert's) joins
    /// it as new; an alert the router holds that no longer fires resolves, so whoever
    /// heard it fire hears it end.
    pub(crate) fn reconcile(
        &mut self,
        firing: Vec<Alert>,
        dispatcher: &DispatcherHandle,
        now: TimestampMs,
    ) {
        let held: HashMap<String, Alert> = self
            .router
            .alerts(now)
            .into_iter()
            .map(|v| (v.alert.fingerprint.clone(), v.alert))
            .collect();
        let firing_fps: HashSet<String> = firing.iter().map(|a| a.fingerprint.clone()).collect();
        let mut notes: Vec<Notification> = firing
            .into_iter()
            .filter(|a| !held.contains_key(&a.fingerprint))
            .map(|alert| Notification {
                id: telltale_alerts::notification_id(now),
                status: AlertStatus::Firing,
                reason: NotificationReason::StateChange,
                quiet: false,
                alert,
            })
            .collect();
        let joined = notes.len();
        let mut gone = 0;
        for (fp, mut alert) in held {
            if !firing_fps.contains(&fp) {
                alert.resolved_at_ms = Some(now);
                gone += 1;
                notes.push(Notification {
                    id: telltale_alerts::notification_id(now),
                    status: AlertStatus::Resolved,
                    reason: NotificationReason::StateChange,
                    quiet: false,
                    alert,
                });
            }
        }
        if joined + gone > 0 {
            info!(
                "alert manager state made to agree with the alerts: {joined} firing alert(s) it did not know, {gone} it held that no longer fire"
            );
        }
        self.route(notes, dispatcher, now);
    }

    /// Applies the commands operators left in the store, in order, then saves the state
    /// with their answers in one transaction (the command prints its answer only once its
    /// effect is on disk). Ack, unack and snooze given before the alert fired again (a
    /// command left while no engine ran) are refused: they were meant for an earlier
    /// firing.
    pub(crate) fn apply_commands(&mut self, dispatcher: &DispatcherHandle, now: TimestampMs) {
        let Some(db) = self.db.clone() else {
            return;
        };
        let pending = match db.pending_commands() {
            Ok(p) => p,
            Err(e) => {
                self.log
                    .failure(&format!("cannot read the command queue: {e}"));
                return;
            }
        };
        let applied = self.last_seq;
        for row in pending.into_iter().filter(|r| r.seq > applied) {
            self.last_seq = row.seq;
            let outcome = match serde_json::from_str::<Command>(&row.command) {
                Err(e) => format!("error: not a command this engine knows ({e})"),
                Ok(cmd) => {
                    let what = describe(&cmd);
                    match self.stale(&cmd, row.created_ms).map_or_else(
                        || self.router.apply(cmd, now).map_err(|e| e.to_string()),
                        Err,
                    ) {
                        Ok(out) => {
                            info!("{what}");
                            dispatch(out, dispatcher);
                            format!("ok: {what}")
                        }
                        Err(e) => {
                            warn!("refused: {what}: {e}");
                            format!("error: {e}")
                        }
                    }
                }
            };
            self.dirty = true;
            self.answers.push((row.seq, outcome));
        }
        if !self.answers.is_empty() {
            self.save(now);
        }
    }

    /// Why a command about one alert no longer applies: the alert started firing again
    /// after the command was given.
    fn stale(&self, cmd: &Command, given_ms: TimestampMs) -> Option<String> {
        let fp = match cmd {
            Command::Ack { fingerprint, .. }
            | Command::Unack { fingerprint, .. }
            | Command::Snooze { fingerprint, .. } => fingerprint,
            Command::AddSilence(_) | Command::ExpireSilence { .. } => return None,
        };
        let alert = self.router.alert(fp)?;
        (alert.firing_since_ms > given_ms).then(|| {
            format!(
                "alert `{fp}` started firing again at {}, after this command was given at {}; give it again for the new firing",
                telltale_notify::payload::rfc3339_ms(alert.firing_since_ms),
                telltale_notify::payload::rfc3339_ms(given_ms)
            )
        })
    }

    /// Saves the state if it changed: at once after alerts fired or resolved, deliveries,
    /// or commands; when only time moved it, once the last save is [`SAVE_EVERY_MS`] old. A
    /// failed save is logged (as [`FailureLog`] allows) and tried again at the next call.
    pub(crate) fn save_if_changed(&mut self, now: TimestampMs) {
        let due = self.urgent || !self.answers.is_empty() || now - self.saved_ms >= SAVE_EVERY_MS;
        if self.dirty && due {
            self.save(now);
        }
    }

    /// Saves the state now if it changed (at shutdown).
    pub(crate) fn save_now(&mut self, now: TimestampMs) {
        if self.dirty {
            self.save(now);
        }
    }

    fn save(&mut self, now: TimestampMs) {
        let Some(db) = &self.db else {
            return;
        };
        let text = match serde_json::to_string(&self.router.snapshot()) {
            Ok(t) => t,
            Err(e) => {
                self.log.failure(&format!("cannot encode: {e}"));
                return;
            }
        };
        match db.save_routing_state_and_answers(&text, &self.answers, now) {
            Ok(()) => {
                self.dirty = false;
                self.urgent = false;
                self.saved_ms = now;
                self.answers.clear();
                self.log.success();
            }
            Err(e) => self.log.failure(&format!(
                "cannot save: {e}; a restart now would forget the latest silences, acknowledgements and escalations, and the commands given meanwhile wait for their answer"
            )),
        }
    }
}

/// One line for the log and the command's answer.
fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Ack {
            fingerprint, by, ..
        } => format!("alert {fingerprint} acknowledged by {by}"),
        Command::Unack { fingerprint, by } => {
            format!("alert {fingerprint}: acknowledgement withdrawn by {by}")
        }
        Command::Snooze {
            fingerprint,
            until_ms,
            by,
            ..
        } => format!(
            "alert {fingerprint} snoozed by {by} until {}",
            telltale_notify::payload::rfc3339_ms(*until_ms)
        ),
        Command::AddSilence(s) => format!(
            "silence {} added by {} ({})",
            s.id,
            s.created_by,
            s.matchers.join(", ")
        ),
        Command::ExpireSilence { id } => format!("silence {id} expired"),
    }
}

/// Hands deliveries to the dispatcher: one call per notification, naming every notifier
/// it goes to, so the outbox keeps it once.
fn dispatch(out: Vec<Delivery>, dispatcher: &DispatcherHandle) {
    let mut by_id: Vec<(Notification, Vec<String>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // A quiet notification (a resolve the rule does not send) is for the alert manager's
    // state only; the router delivers none, and this makes sure of it.
    for d in out.into_iter().filter(|d| !d.notification.quiet) {
        match index.get(&d.notification.id) {
            Some(&i) => by_id[i].1.push(d.notifier),
            None => {
                index.insert(d.notification.id.clone(), by_id.len());
                by_id.push((d.notification, vec![d.notifier]));
            }
        }
    }
    for (n, targets) in by_id {
        let names: Vec<&str> = targets.iter().map(String::as_str).collect();
        dispatcher.send_to(n, &names);
    }
}
