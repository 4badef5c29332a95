//! The stages' state in the durable store's database: what lets a restart, even after
//! `kill -9`, carry on where the last run stopped.
//!
//! * [`open`]: the database the configuration names (`store.path` under the data
//!   directory), or none when `store.enabled` is false.
//! * [`DbOutbox`]: `notify`'s [`Outbox`] over the `outbox` table, so a notification is on
//!   disk before a notifier gets it and is delivered by the next start if it was not.
//! * [`AlertPersistence`]: the alert state machine's pending and firing alerts in the
//!   `alerts` table, saved whenever they change and restored at start, so pending alerts
//!   keep their start and firing ones are not announced again.
//!
//! The store keeps JSON text; the encoding of each type is here (`notify` and `alerts`
//! may not depend on the store, nor it on them).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{info, warn};

use telltale_alerts::{ActiveAlert, AlertManager, AlertState};
use telltale_config::LoadedConfig;
use telltale_diagnostics::{Diagnostic, Diagnostics};
use telltale_model::{AlertStatus, Notification, TimestampMs, now_ms};
use telltale_notify::outbox::{self, Outbox, OutboxEntry, OutboxError, Outcome};
use telltale_store::disk::state::{AlertRow, OutboxRow};
use telltale_store::disk::{Database, DiskConfig};

use crate::supervise::FailureLog;

/// Opens the database `loaded` configures: `None` when `store.enabled` is false. Called
/// by `run`, never by `check`, so that checking a configuration creates no file. A
/// database that cannot be opened (not Telltale's, from a newer version, corrupt, on a
/// full disk) is an error naming the file and what to do.
pub(crate) fn open(loaded: &LoadedConfig) -> Result<Option<Arc<Database>>, Diagnostics> {
    let store = &loaded.config.store;
    if !store.enabled {
        return Ok(None);
    }
    let path = loaded.store_path();
    Database::open(&path).map(|db| Some(Arc::new(db))).map_err(|e| {
        Diagnostics(vec![
            Diagnostic::new(
                loaded.display_name(),
                None,
                None,
                format!("cannot open the durable store: {e}"),
            )
            .with_hint("or set `store.enabled: false` to run without one (nothing is kept across restarts)"),
        ])
    })
}

/// How the persister keeps history, from the `store:` section.
pub(crate) fn disk_config(store: &telltale_config::StoreConfig) -> DiskConfig {
    let r = &store.retention;
    DiskConfig {
        flush_interval: store.flush_interval.get(),
        checkpoint_interval: store.checkpoint_interval.get(),
        retention: [r.raw.get(), r.minute.get(), r.hour.get(), r.day.get()],
        max_disk: store.max_disk.0,
        timestamp_tolerance: store.timestamp_tolerance.get(),
    }
}

/// How long a done outbox entry is kept (for inspection) before it is deleted.
const OUTBOX_DONE_KEPT_MS: i64 = 24 * 3600 * 1000;

/// How often done entries older than [`OUTBOX_DONE_KEPT_MS`] are deleted.
const OUTBOX_PRUNE_EVERY_MS: i64 = 3600 * 1000;

/// The notification outbox in the database. Failures are logged here, each kind as
/// [`FailureLog`] allows (a full disk fails every write); the dispatcher carries on.
#[derive(Debug)]
pub(crate) struct DbOutbox {
    db: Arc<Database>,
    put_log: Mutex<FailureLog>,
    done_log: Mutex<FailureLog>,
    /// When done entries were last pruned (Unix ms; 0: not yet in this run).
    pruned_ms: Mutex<TimestampMs>,
}

impl DbOutbox {
    /// The outbox of `db`.
    pub(crate) fn new(db: Arc<Database>) -> DbOutbox {
        DbOutbox {
            db,
            put_log: Mutex::new(FailureLog::new("notification outbox")),
            done_log: Mutex::new(FailureLog::new("notification outbox")),
            pruned_ms: Mutex::new(0),
        }
    }

    /// Deletes old done entries at most once per [`OUTBOX_PRUNE_EVERY_MS`]: the table would
    /// otherwise grow by a row per notification forever.
    fn prune_now_and_then(&self, now: TimestampMs) {
        {
            let mut last = self
                .pruned_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.saturating_sub(*last) < OUTBOX_PRUNE_EVERY_MS {
                return;
            }
            *last = now;
        }
        match self.db.outbox_prune(now - OUTBOX_DONE_KEPT_MS) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                entries = n,
                "pruned delivered notifications from the outbox"
            ),
            Err(e) => warn!("notification outbox: cannot delete old entries: {e}"),
        }
    }
}

/// Logs one outbox failure through `log`, or its recovery.
fn note(log: &Mutex<FailureLog>, result: Result<(), String>) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(()) => log.success(),
        Err(message) => log.failure(&message),
    }
}

impl Outbox for DbOutbox {
    fn put(&self, n: &Notification, notifiers: &[&str]) -> Result<(), OutboxError> {
        let json = outbox::encode(n);
        let created_ms = now_ms();
        let rows: Vec<OutboxRow> = notifiers
            .iter()
            .map(|name| OutboxRow {
                notifier: name.to_string(),
                id: n.id.clone(),
                created_ms,
                notification: json.clone(),
            })
            .collect();
        let result = self.db.outbox_put(&rows).map_err(|e| e.to_string());
        note(
            &self.put_log,
            result.as_ref().map(|_| ()).map_err(|e| {
                format!(
                    "cannot write: {e}; notifications are still delivered, but at most once \
                     (one not delivered before a restart is lost)"
                )
            }),
        );
        result.map_err(OutboxError)
    }

    fn done(&self, notifier: &str, id: &str, outcome: Outcome) -> Result<(), OutboxError> {
        let now = now_ms();
        let result = self
            .db
            .outbox_done(notifier, id, now, outcome.as_str())
            .map(|_| ())
            .map_err(|e| e.to_string());
        note(
            &self.done_log,
            result.clone().map_err(|e| {
                format!("cannot mark a notification done: {e}; the next start delivers it again")
            }),
        );
        if result.is_ok() {
            self.prune_now_and_then(now);
        }
        result.map_err(OutboxError)
    }

    fn undone(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        let rows = self
            .db
            .outbox_undone()
            .map_err(|e| OutboxError(e.to_string()))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            match outbox::decode(&row.notification) {
                Ok(notification) => out.push(OutboxEntry {
                    notifier: row.notifier,
                    notification,
                }),
                Err(e) => {
                    warn!(
                        db = %self.db.path().display(),
                        notifier = %row.notifier,
                        id = %row.id,
                        error = %e,
                        "an outbox entry cannot be read; it is marked done and not delivered"
                    );
                    // Marked so that it is said once, not at every start.
                    let _ = self
                        .db
                        .outbox_done(&row.notifier, &row.id, now_ms(), "unreadable");
                }
            }
        }
        Ok(out)
    }
}

/// Moves the shutdown spool an older Telltale left in `data_dir` into `outbox`, once.
pub(crate) fn import_old_spool(data_dir: &Path, outbox: &dyn Outbox) {
    let path = data_dir.join("notification-spool.jsonl");
    match outbox::import_spool(&path, outbox) {
        Ok(0) => {}
        Ok(n) => info!(
            spool = %path.display(),
            entries = n,
            "moved the notification spool of an older version to the outbox (the file is renamed to .imported)"
        ),
        Err(e) => warn!("{e}; it is tried again at the next start"),
    }
}

/// An active alert as the JSON text stored in the `alerts` table (the outbox's convention
/// for a non-finite value).
fn encode_alert(a: &ActiveAlert) -> String {
    outbox::encode_with_alert_value(a, a.alert.value)
}

/// Reads what [`encode_alert`] wrote.
fn decode_alert(text: &str) -> Result<ActiveAlert, serde_json::Error> {
    outbox::decode_with_alert_value(text, |a: &mut ActiveAlert| &mut a.alert.value)
}

/// Keeps the `alerts` table equal to the alert state machine's pending and firing
/// alerts, written when an alert appears, fires, resolves or goes (not on every tick: the
/// value and summary of an alert change often and matter only in its notifications).
#[derive(Debug)]
pub(crate) struct AlertPersistence {
    db: Option<Arc<Database>>,
    /// What the table holds, as far as this run knows (see [`Key`]).
    saved: Vec<Key>,
    log: FailureLog,
}

impl AlertPersistence {
    /// Persistence in `db`; with `None` (the store disabled) every call does nothing.
    pub(crate) fn new(db: Option<Arc<Database>>) -> AlertPersistence {
        AlertPersistence {
            db,
            saved: Vec::new(),
            log: FailureLog::new("alert state"),
        }
    }

    /// Restores the saved alerts into `alerts` (pending ones keep their start, firing ones
    /// stay firing without a new notification). Alerts of rules not in `loaded_rules` (a
    /// rule file deleted or renamed while Telltale was stopped, or one that no longer
    /// compiles) are resolved as a reload would: the returned notifications are their
    /// Resolved ones, to send.
    pub(crate) fn restore(
        &mut self,
        alerts: &mut AlertManager,
        loaded_rules: &[&str],
        now: TimestampMs,
    ) -> Vec<Notification> {
        let Some(db) = &self.db else {
            return Vec::new();
        };
        let rows = match db.load_alerts() {
            Ok(rows) => rows,
            Err(e) => {
                warn!(
                    "alert state: cannot read it: {e}; starting with no alerts (firing ones are announced again)"
                );
                return Vec::new();
            }
        };
        let mut restored = Vec::with_capacity(rows.len());
        for row in rows {
            match decode_alert(&row.state) {
                Ok(a) => restored.push(a),
                Err(e) => warn!(
                    fingerprint = %row.fingerprint,
                    "alert state: a saved alert cannot be read ({e}); it is forgotten"
                ),
            }
        }
        let mut orphans: Vec<String> = restored
            .iter()
            .map(|a| a.alert.rule.clone())
            .filter(|rule| !loaded_rules.contains(&rule.as_str()))
            .collect();
        orphans.sort();
        orphans.dedup();
        let (pending, firing) = restored.iter().fold((0, 0), |(p, f), a| match a.state {
            AlertState::Pending => (p + 1, f),
            AlertState::Firing | AlertState::Recovering => (p, f + 1),
            AlertState::Inactive => (p, f),
        });
        if !restored.is_empty() {
            info!("alert state restored: {firing} firing, {pending} pending");
        }
        alerts.restore(restored);
        self.saved = keys(alerts);
        let mut out = Vec::new();
        for rule in orphans {
            let resolved = alerts.rule_removed(&rule, now);
            info!(
                "rule `{rule}` is not loaded any more: its restored alerts are dropped, {} firing one(s) resolve",
                resolved.len()
            );
            out.extend(resolved);
        }
        out
    }

    /// Saves the alerts if any appeared, changed state or went since the last save. A
    /// failed save is logged (as [`FailureLog`] allows) and tried again at the next call.
    pub(crate) fn save_if_changed(&mut self, alerts: &AlertManager) {
        let Some(db) = &self.db else {
            return;
        };
        let active = alerts.snapshot();
        let now = keys_of(&active);
        if now == self.saved {
            return;
        }
        let rows: Vec<AlertRow> = active
            .iter()
            .map(|a| AlertRow {
                fingerprint: a.alert.fingerprint.clone(),
                state: encode_alert(a),
            })
            .collect();
        match db.save_alerts(&rows) {
            Ok(()) => {
                self.saved = now;
                self.log.success();
            }
            Err(e) => self.log.failure(&format!(
                "cannot save: {e}; a restart now would forget the latest changes"
            )),
        }
    }
}

/// What decides whether the saved state is stale: each instance's fingerprint, state,
/// what receivers were told and whether it is flapping (not its value or flapping history,
/// which change every tick: losing those to a crash costs little).
type Key = (String, AlertState, Option<AlertStatus>, bool);

fn keys_of(alerts: &[ActiveAlert]) -> Vec<Key> {
    alerts
        .iter()
        .map(|a| {
            (
                a.alert.fingerprint.clone(),
                a.state,
                a.announced,
                a.flap.as_ref().is_some_and(|f| f.flapping),
            )
        })
        .collect()
}

fn keys(alerts: &AlertManager) -> Vec<Key> {
    keys_of(&alerts.snapshot())
}
