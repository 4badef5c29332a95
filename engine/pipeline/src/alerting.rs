//! The alert manager's place in the engine: between the rule state machine's
//! notifications and the dispatcher. `telltale-routing` decides who gets what and when
//! (routing tree, groups, silences, inhibition, acknowledgements, escalation); this module
//! feeds it, hands its deliveries to the dispatcher, applies the commands `telltale ack`,
//! `silence` and `snooze` leave in the durable store, and keeps its state there.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use tracing::{info, warn};

use telltale_config::Config;
use telltale_model::{Notification, TimestampMs};
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
    log: FailureLog,
}

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
            Ok(state) => Some(state),
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
        self.dirty = true;
        let out = self.router.tick(now);
        dispatch(out, dispatcher);
    }

    /// Applies the commands operators left in the store, in order, and writes each one's
    /// outcome for the command to print.
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
        for row in pending {
            let outcome = match serde_json::from_str::<Command>(&row.command) {
                Err(e) => format!("error: not a command this engine knows ({e})"),
                Ok(cmd) => {
                    let what = describe(&cmd);
                    match self.router.apply(cmd, now) {
                        Ok(out) => {
                            self.dirty = true;
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
            if let Err(e) = db.command_applied(row.seq, &outcome, now) {
                self.log
                    .failure(&format!("cannot record a command's outcome: {e}"));
            }
        }
    }

    /// Saves the state if anything changed since the last save. A failed save is logged
    /// (as [`FailureLog`] allows) and tried again at the next call.
    pub(crate) fn save_if_changed(&mut self, now: TimestampMs) {
        let Some(db) = &self.db else {
            return;
        };
        if !self.dirty {
            return;
        }
        let text = match serde_json::to_string(&self.router.snapshot()) {
            Ok(t) => t,
            Err(e) => {
                self.log.failure(&format!("cannot encode: {e}"));
                return;
            }
        };
        match db.save_routing_state(&text, now) {
            Ok(()) => {
                self.dirty = false;
                self.log.success();
            }
            Err(e) => self.log.failure(&format!(
                "cannot save: {e}; a restart now would forget the latest silences, acknowledgements and escalations"
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
