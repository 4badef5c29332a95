//! Alert state and the notification outbox: the two small tables that let a restart carry
//! on where the last run stopped, even after `kill -9`.
//!
//! Both hold JSON text made and read by their owners (the pipeline's adapters over
//! `alerts` and `notify`), so this crate knows neither type. Every method is one
//! transaction on the shared state connection ([`Database::with_state`]).

use std::collections::HashSet;

use rusqlite::{OptionalExtension as _, params};

use super::{Database, StoreError};

/// One saved alert: its fingerprint and its state as its owner's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// The alert instance's fingerprint (the table's key).
    pub fingerprint: String,
    /// The alert's state, as JSON.
    pub state: String,
}

/// One outbox entry: a notification one notifier owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The notifier's configured name.
    pub notifier: String,
    /// The notification's id (unique per notification; with `notifier`, the key).
    pub id: String,
    /// When the entry was written, in Unix milliseconds: what "oldest first" goes by.
    pub created_ms: i64,
    /// The notification, as JSON.
    pub notification: String,
}

impl Database {
    /// Replaces the saved alerts with `alerts`: present ones are written (inserted or
    /// updated), every other saved one is deleted. One transaction, so a crash leaves
    /// either the previous set or this one.
    pub fn save_alerts(&self, alerts: &[AlertRow]) -> Result<(), StoreError> {
        self.with_state(|conn| {
            let tx = conn.transaction()?;
            {
                let keep: HashSet<&str> = alerts.iter().map(|a| a.fingerprint.as_str()).collect();
                let saved: Vec<String> = tx
                    .prepare_cached("SELECT fingerprint FROM alerts")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut delete = tx.prepare_cached("DELETE FROM alerts WHERE fingerprint = ?1")?;
                for fp in saved.iter().filter(|fp| !keep.contains(fp.as_str())) {
                    delete.execute([fp])?;
                }
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO alerts (fingerprint, state) VALUES (?1, ?2)
                     ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state
                     WHERE state IS NOT excluded.state",
                )?;
                for a in alerts {
                    upsert.execute([&a.fingerprint, &a.state])?;
                }
            }
            tx.commit()
        })
    }

    /// The saved alerts, by fingerprint.
    pub fn load_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        self.with_state(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT fingerprint, state FROM alerts ORDER BY fingerprint")?;
            stmt.query_map([], |r| {
                Ok(AlertRow {
                    fingerprint: r.get(0)?,
                    state: r.get(1)?,
                })
            })?
            .collect()
        })
    }

    /// Writes outbox entries, undone. An entry whose key (notifier, id) is already there
    /// is left as it is: the same notification put twice is still owed (or done) once.
    pub fn outbox_put(&self, rows: &[OutboxRow]) -> Result<(), StoreError> {
        self.with_state(|conn| {
            let tx = conn.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT OR IGNORE INTO outbox (notifier, id, created_ms, notification)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for r in rows {
                    put.execute(params![r.notifier, r.id, r.created_ms, r.notification])?;
                }
            }
            tx.commit()
        })
    }

    /// Marks one entry done at `done_ms` with `outcome` (a short word such as
    /// `delivered`, `failed` or `dropped`). Returns whether an undone entry was marked: an
    /// entry that was never written (its put failed) or is already done is left alone.
    pub fn outbox_done(
        &self,
        notifier: &str,
        id: &str,
        done_ms: i64,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        self.with_state(|conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE outbox SET done_ms = ?3, outcome = ?4
                     WHERE notifier = ?1 AND id = ?2 AND done_ms IS NULL",
                )?
                .execute(params![notifier, id, done_ms, outcome])?;
            Ok(n > 0)
        })
    }

    /// The entries not done yet, oldest first (entries written in the same millisecond in
    /// the order they were written).
    pub fn outbox_undone(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.with_state(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT notifier, id, created_ms, notification FROM outbox
                 WHERE done_ms IS NULL ORDER BY created_ms, rowid",
            )?;
            stmt.query_map([], |r| {
                Ok(OutboxRow {
                    notifier: r.get(0)?,
                    id: r.get(1)?,
                    created_ms: r.get(2)?,
                    notification: r.get(3)?,
                })
            })?
            .collect()
        })
    }

    /// The outcome of one entry: `None` if there is no such entry, `Some(None)` while it
    /// is undone, `Some(Some(outcome))` once done.
    pub fn outbox_outcome(
        &self,
        notifier: &str,
        id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        self.with_state(|conn| {
            conn.prepare_cached("SELECT outcome FROM outbox WHERE notifier = ?1 AND id = ?2")?
                .query_row([notifier, id], |r| r.get(0))
                .optional()
        })
    }

    /// Deletes the entries done before `cutoff_ms`; undone ones are never deleted.
    /// Returns how many went.
    pub fn outbox_prune(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.with_state(|conn| {
            conn.prepare_cached("DELETE FROM outbox WHERE done_ms IS NOT NULL AND done_ms < ?1")?
                .execute([cutoff_ms])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("telltale.db")).unwrap();
        (dir, db)
    }

    fn alert(fp: &str, state: &str) -> AlertRow {
        AlertRow {
            fingerprint: fp.into(),
            state: state.into(),
        }
    }

    fn row(notifier: &str, id: &str, created_ms: i64) -> OutboxRow {
        OutboxRow {
            notifier: notifier.into(),
            id: id.into(),
            created_ms,
            notification: format!(r#"{{"id":"{id}"}}"#),
        }
    }

    #[test]
    fn saving_alerts_replaces_the_whole_set_and_survives_reopening() {
        let (dir, db) = open();
        assert!(db.load_alerts().unwrap().is_empty());
        db.save_alerts(&[alert("b", "{\"s\":1}"), alert("a", "{\"s\":2}")])
            .unwrap();
        assert_eq!(
            db.load_alerts().unwrap(),
            [alert("a", "{\"s\":2}"), alert("b", "{\"s\":1}")]
        );
        // `a` changes, `b` goes, `c` is new.
        db.save_alerts(&[alert("a", "{\"s\":3}"), alert("c", "{}")])
            .unwrap();
        drop(db);
        let db = Database::open(&dir.path().join("telltale.db")).unwrap();
        assert_eq!(
            db.load_alerts().unwrap(),
            [alert("a", "{\"s\":3}"), alert("c", "{}")]
        );
        db.save_alerts(&[]).unwrap();
        assert!(db.load_alerts().unwrap().is_empty());
    }

    #[test]
    fn a_failed_save_leaves_the_previous_set() {
        let (_dir, db) = open();
        db.save_alerts(&[alert("a", "1")]).unwrap();
        // A trigger makes the second row of the next save fail mid-transaction.
        db.with_state(|c| {
            c.execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.fingerprint = 'z'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
        })
        .unwrap();
        let e = db
            .save_alerts(&[alert("y", "2"), alert("z", "3")])
            .unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert!(
            e.to_string().contains(&db.path().display().to_string()),
            "{e}"
        );
        assert_eq!(db.load_alerts().unwrap(), [alert("a", "1")]);
    }

    #[test]
    fn the_outbox_lists_undone_entries_oldest_first_until_marked() {
        let (_dir, db) = open();
        db.outbox_put(&[row("ops", "n2", 20), row("pager", "n2", 20)])
            .unwrap();
        db.outbox_put(&[row("ops", "n1", 10), row("ops", "n3", 20)])
            .unwrap();
        let keys = |rows: Vec<OutboxRow>| -> Vec<(String, String)> {
            rows.into_iter().map(|r| (r.notifier, r.id)).collect()
        };
        let k = |n: &str, i: &str| (n.to_string(), i.to_string());
        assert_eq!(
            keys(db.outbox_undone().unwrap()),
            [
                k("ops", "n1"),
                k("ops", "n2"),
                k("pager", "n2"),
                k("ops", "n3")
            ],
            "by creation time, then in the order written"
        );
        assert_eq!(db.outbox_undone().unwrap()[0], row("ops", "n1", 10));

        assert!(db.outbox_done("ops", "n2", 30, "delivered").unwrap());
        assert!(
            !db.outbox_done("ops", "n2", 31, "failed").unwrap(),
            "done once"
        );
        assert!(!db.outbox_done("ops", "missing", 31, "dropped").unwrap());
        assert_eq!(
            db.outbox_outcome("ops", "n2").unwrap(),
            Some(Some("delivered".into()))
        );
        assert_eq!(db.outbox_outcome("ops", "n1").unwrap(), Some(None));
        assert_eq!(db.outbox_outcome("ops", "missing").unwrap(), None);

        // Putting a done entry again does not make it owed again.
        db.outbox_put(&[row("ops", "n2", 40)]).unwrap();
        assert_eq!(
            keys(db.outbox_undone().unwrap()),
            [k("ops", "n1"), k("pager", "n2"), k("ops", "n3")]
        );
    }

    #[test]
    fn pruning_deletes_only_entries_done_before_the_cutoff() {
        let (_dir, db) = open();
        db.outbox_put(&[row("ops", "a", 1), row("ops", "b", 2), row("ops", "c", 3)])
            .unwrap();
        db.outbox_done("ops", "a", 100, "delivered").unwrap();
        db.outbox_done("ops", "b", 200, "failed").unwrap();
        assert_eq!(db.outbox_prune(150).unwrap(), 1);
        assert_eq!(db.outbox_outcome("ops", "a").unwrap(), None);
        assert_eq!(
            db.outbox_outcome("ops", "b").unwrap(),
            Some(Some("failed".into()))
        );
        assert_eq!(db.outbox_prune(i64::MAX).unwrap(), 1);
        assert_eq!(db.outbox_undone().unwrap(), [row("ops", "c", 3)]);
    }
}
