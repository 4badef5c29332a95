//! The alert manager's state and the commands operators leave for a running engine.
//!
//! `routing_state` holds one JSON document (the pipeline makes and reads it; this crate
//! knows nothing of its shape). `commands` is a queue: `telltale ack`, `silence`, `snooze`
//! insert a row through [`CommandQueue`] (a short-lived connection of their own, beside the
//! running engine), the engine applies pending rows in order and writes each one's outcome,
//! which the command waits for. A command left while no engine runs is applied by the next
//! start.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use super::{BUSY_TIMEOUT, Database, StoreError, identify};

/// How long an answered command stays in the queue.
const COMMANDS_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// The schema version that has the `routing_state` and `commands` tables.
const CONTROL_VERSION: u32 = 3;

/// One queued command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    /// Its place in the queue.
    pub seq: i64,
    /// When it was left, in Unix milliseconds.
    pub created_ms: i64,
    /// The command, as its owner's JSON.
    pub command: String,
}

impl Database {
    /// Replaces the saved alert-manager state.
    pub fn save_routing_state(&self, state: &str, now_ms: i64) -> Result<(), StoreError> {
        self.with_state(|conn| {
            conn.prepare_cached(
                "INSERT INTO routing_state (id, saved_ms, state) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET saved_ms = excluded.saved_ms, state = excluded.state",
            )?
            .execute(params![now_ms, state])
            .map(|_| ())
        })
    }

    /// Saves the alert-manager state and the outcomes of the commands applied to it
    /// (`(seq, outcome)`) in one transaction: a command is answered only once its effect
    /// is on disk, and a crash loses both or neither. Commands applied more than a week
    /// before `now_ms` are dropped (the queue is not a history).
    pub fn save_routing_state_and_answers(
        &self,
        state: &str,
        answers: &[(i64, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.with_state(|conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "INSERT INTO routing_state (id, saved_ms, state) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET saved_ms = excluded.saved_ms, state = excluded.state",
            )?
            .execute(params![now_ms, state])?;
            if !answers.is_empty() {
                let mut answer = tx.prepare_cached(
                    "UPDATE commands SET applied_ms = ?2, outcome = ?3 WHERE seq = ?1",
                )?;
                for (seq, outcome) in answers {
                    answer.execute(params![seq, now_ms, outcome])?;
                }
                tx.prepare_cached("DELETE FROM commands WHERE applied_ms < ?1")?
                    .execute([now_ms - COMMANDS_KEPT_MS])?;
            }
            tx.commit()
        })
    }

    /// The saved alert-manager state, if any.
    pub fn load_routing_state(&self) -> Result<Option<String>, StoreError> {
        self.with_state(|conn| {
            conn.query_row("SELECT state FROM routing_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Commands not yet applied, oldest first.
    pub fn pending_commands(&self) -> Result<Vec<CommandRow>, StoreError> {
        self.with_state(|conn| {
            conn.prepare_cached(
                "SELECT seq, created_ms, command FROM commands WHERE applied_ms IS NULL ORDER BY seq",
            )?
            .query_map([], |r| {
                Ok(CommandRow {
                    seq: r.get(0)?,
                    created_ms: r.get(1)?,
                    command: r.get(2)?,
                })
            })?
            .collect()
        })
    }

    /// Marks a command applied, with how it went (`ok: ...` or `error: ...`), and drops
    /// commands applied more than a week before `now_ms` (the queue is not a history).
    pub fn command_applied(&self, seq: i64, outcome: &str, now_ms: i64) -> Result<(), StoreError> {
        const KEEP_MS: i64 = COMMANDS_KEPT_MS;
        self.with_state(|conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached("UPDATE commands SET applied_ms = ?2, outcome = ?3 WHERE seq = ?1")?
                .execute(params![seq, now_ms, outcome])?;
            tx.prepare_cached("DELETE FROM commands WHERE applied_ms < ?1")?
                .execute([now_ms - KEEP_MS])?;
            tx.commit()
        })
    }
}

/// A connection for leaving commands to the engine that owns a database, and reading their
/// outcome. Opens an existing database only (never creates one) and refuses another
/// program's file, a newer Telltale's, or one no engine of this version has opened yet.
#[derive(Debug)]
pub struct CommandQueue {
    path: PathBuf,
    conn: Connection,
}

impl CommandQueue {
    /// Opens the queue of the database at `path`.
    pub fn open(path: &Path) -> Result<CommandQueue, StoreError> {
        let err = |e| StoreError::from_sqlite(path, e);
        if !path.is_file() {
            return Err(StoreError::Unavailable {
                path: path.to_path_buf(),
                detail: "no database here: start `telltale run` with this config first".into(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let identity = identify(&conn, path, false)?;
        if identity.version < CONTROL_VERSION {
            return Err(StoreError::Unavailable {
                path: path.to_path_buf(),
                detail: format!(
                    "the database is at schema version {}, which has no command queue: start `telltale run` of this version once to upgrade it",
                    identity.version
                ),
            });
        }
        Ok(CommandQueue {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// Leaves `command` (JSON) for the engine; returns its place in the queue.
    pub fn submit(&self, command: &str, now_ms: i64) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("INSERT INTO commands (created_ms, command) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![now_ms, command]))
            .map(|_| self.conn.last_insert_rowid())
            .map_err(|e| StoreError::from_sqlite(&self.path, e))
    }

    /// The outcome of the command at `seq` once the engine applied it.
    pub fn outcome(&self, seq: i64) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT outcome FROM commands WHERE seq = ?1 AND applied_ms IS NOT NULL",
                [seq],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| StoreError::from_sqlite(&self.path, e))
    }

    /// The saved alert-manager state, as the engine last wrote it.
    pub fn routing_state(&self) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT state FROM routing_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| StoreError::from_sqlite(&self.path, e))
    }
}

impl super::admin::ReadOnlyDatabase {
    /// The saved alert-manager state, as the engine last wrote it (`None` before the
    /// database has the table, or before anything was saved).
    pub fn routing_state(&self) -> Result<Option<String>, StoreError> {
        if self.schema_version() < CONTROL_VERSION {
            return Ok(None);
        }
        self.connection()
            .query_row("SELECT state FROM routing_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| StoreError::from_sqlite(self.path(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_left_by_another_connection_is_applied_in_order_and_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let db = Database::open(&path).expect("open");
        let q = CommandQueue::open(&path).expect("queue");
        let a = q.submit(r#"{"ack":"x"}"#, 10).expect("submit");
        let b = q.submit(r#"{"ack":"y"}"#, 11).expect("submit");
        assert!(a < b);
        let pending = db.pending_commands().expect("pending");
        assert_eq!(
            pending
                .iter()
                .map(|c| c.command.as_str())
                .collect::<Vec<_>>(),
            [r#"{"ack":"x"}"#, r#"{"ack":"y"}"#]
        );
        assert_eq!(q.outcome(a).expect("read"), None, "not applied yet");
        db.command_applied(a, "ok: acknowledged", 20)
            .expect("applied");
        assert_eq!(
            q.outcome(a).expect("read").as_deref(),
            Some("ok: acknowledged")
        );
        assert_eq!(db.pending_commands().expect("pending").len(), 1);
        // A week later the applied one is dropped with the next answer.
        db.command_applied(b, "error: unknown alert", 20 + 8 * 24 * 3600 * 1000)
            .expect("applied");
        assert_eq!(q.outcome(a).expect("read"), None);

        // State and answers in one transaction.
        let c = q.submit(r#"{"ack":"z"}"#, 30).expect("submit");
        db.save_routing_state_and_answers("{\"v\":0}", &[(c, "ok: z".into())], 40)
            .expect("save");
        assert_eq!(q.outcome(c).expect("read").as_deref(), Some("ok: z"));
        assert_eq!(
            db.load_routing_state().expect("load").as_deref(),
            Some("{\"v\":0}")
        );
        db.with_state(|c| c.execute("DELETE FROM routing_state", []).map(|_| ()))
            .expect("reset");
        assert_eq!(db.load_routing_state().expect("load"), None);
        db.save_routing_state("{\"v\":1}", 5).expect("save");
        db.save_routing_state("{\"v\":2}", 6).expect("save");
        assert_eq!(
            q.routing_state().expect("read").as_deref(),
            Some("{\"v\":2}")
        );
    }

    #[test]
    fn the_queue_never_creates_a_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.db");
        let e = CommandQueue::open(&path).expect_err("missing");
        assert!(e.to_string().contains("start `telltale run`"), "{e}");
        assert!(!path.exists());
    }
}
