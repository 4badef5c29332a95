//! The decisions of scaling rules (`scaling_decisions`): each one with the proposal and
//! figures it was based on, and how applying it went, so an operator can see afterwards
//! why a target was scaled. Written by the pipeline's scaling stage, one row per decision,
//! on the shared state connection; read by `telltale scaling` through a
//! [`ReadOnlyDatabase`], beside the running engine.

use rusqlite::{Connection, params};

use telltale_model::{ScalingDecision, TimestampMs};

use super::admin::ReadOnlyDatabase;
use super::{Database, StoreError};

/// The schema version that added the table (migration 2 in `schema.rs`).
const SCALING_VERSION: u32 = 2;

/// A recorded decision and how applying it went.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    /// The row's id (for [`Database::scaling_outcome`]).
    pub id: i64,
    /// The decision as it was made.
    pub decision: ScalingDecision,
    /// `None` until its scaler answered (and for a target without one); then `applied`
    /// or the error.
    pub outcome: Option<String>,
}

impl Database {
    /// Records `decision`; returns its row id.
    pub fn record_scaling(&self, decision: &ScalingDecision) -> Result<i64, StoreError> {
        // A map of numbers always encodes; an empty object is the fallback for safety.
        let inputs = serde_json::to_string(&decision.inputs).unwrap_or_else(|_| "{}".into());
        self.with_state(|conn| {
            conn.prepare_cached(
                "INSERT INTO scaling_decisions
                 (time_ms, rule, target, current, desired, proposed, reason, inputs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                decision.time_ms,
                decision.rule,
                decision.target,
                decision.current,
                decision.desired,
                decision.proposed,
                decision.reason,
                inputs,
            ])?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// Records how applying decision `id` went (`applied`, or the error).
    pub fn scaling_outcome(&self, id: i64, outcome: &str) -> Result<(), StoreError> {
        self.with_state(|conn| {
            conn.prepare_cached("UPDATE scaling_decisions SET outcome = ?2 WHERE id = ?1")?
                .execute(params![id, outcome])?;
            Ok(())
        })
    }

    /// The newest `limit` decisions for `target` (every target when `None`), newest first.
    pub fn scaling_decisions(
        &self,
        target: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        self.with_state(|conn| select(conn, target, None, limit))
    }
}

impl ReadOnlyDatabase {
    /// The newest `limit` decisions for `target` (every target when `None`) made at or
    /// after `since_ms` (any time when `None`), newest first. A database whose schema
    /// predates the table (no engine of this build has opened it yet) has none; a
    /// read-only reader leaves its schema as it is.
    pub fn scaling_decisions(
        &self,
        target: Option<&str>,
        since_ms: Option<TimestampMs>,
        limit: usize,
    ) -> Result<Vec<DecisionRow>, StoreError> {
        if self.schema_version() < SCALING_VERSION {
            return Ok(Vec::new());
        }
        select(self.connection(), target, since_ms, limit)
            .map_err(|e| StoreError::from_sqlite(self.path(), e))
    }
}

/// The one query both readers share, so that the engine's and the operator's views of
/// the table cannot drift apart.
fn select(
    conn: &Connection,
    target: Option<&str>,
    since_ms: Option<TimestampMs>,
    limit: usize,
) -> rusqlite::Result<Vec<DecisionRow>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT id, time_ms, rule, target, current, desired, proposed, reason, inputs,
                outcome
         FROM scaling_decisions
         WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR time_ms >= ?2)
         ORDER BY time_ms DESC, id DESC LIMIT ?3",
    )?;
    stmt.query_map(params![target, since_ms, limit], |r| {
        let inputs: String = r.get(8)?;
        Ok(DecisionRow {
            id: r.get(0)?,
            decision: ScalingDecision {
                time_ms: r.get(1)?,
                rule: r.get(2)?,
                target: r.get(3)?,
                current: r.get(4)?,
                desired: r.get(5)?,
                proposed: r.get(6)?,
                reason: r.get(7)?,
                // Written by `record_scaling`; a row edited by hand reads as no inputs.
                inputs: serde_json::from_str(&inputs).unwrap_or_default(),
            },
            outcome: r.get(9)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn decision(target: &str, current: u32, desired: u32, time_ms: i64) -> ScalingDecision {
        ScalingDecision {
            rule: "scale_fe".into(),
            target: target.into(),
            current,
            desired,
            proposed: desired + 1,
            reason: format!("queue {}", desired * 40),
            inputs: BTreeMap::from([("queue".into(), f64::from(desired) * 40.0)]),
            time_ms,
        }
    }

    #[test]
    fn decisions_are_recorded_with_inputs_and_outcome_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telltale.db");
        let db = Database::open(&path).unwrap();
        let first = db.record_scaling(&decision("fe", 1, 3, 1_000)).unwrap();
        db.record_scaling(&decision("other", 2, 1, 2_000)).unwrap();
        let third = db.record_scaling(&decision("fe", 3, 5, 3_000)).unwrap();
        db.scaling_outcome(first, "applied").unwrap();
        db.scaling_outcome(third, "scaler `ray`: no answer within 10s")
            .unwrap();
        drop(db);

        let db = Database::open(&path).unwrap();
        let fe = db.scaling_decisions(Some("fe"), 10).unwrap();
        assert_eq!(fe.len(), 2);
        // Newest first.
        assert_eq!(fe[0].decision, decision("fe", 3, 5, 3_000));
        assert_eq!(
            fe[0].outcome.as_deref(),
            Some("scaler `ray`: no answer within 10s")
        );
        assert_eq!(fe[1].decision, decision("fe", 1, 3, 1_000));
        assert_eq!(fe[1].decision.inputs["queue"], 120.0);
        assert_eq!(fe[1].outcome.as_deref(), Some("applied"));
        let all = db.scaling_decisions(None, 2).unwrap();
        let targets: Vec<&str> = all.iter().map(|r| r.decision.target.as_str()).collect();
        assert_eq!(targets, ["fe", "other"]);
        assert_eq!(all[1].outcome, None);
    }

    #[test]
    fn a_read_only_reader_filters_by_target_and_time_beside_the_open_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telltale.db");
        // Left open while the reader reads, as a running engine leaves it.
        let db = Database::open(&path).unwrap();
        let first = db.record_scaling(&decision("fe", 1, 3, 1_000)).unwrap();
        db.record_scaling(&decision("other", 2, 1, 2_000)).unwrap();
        let third = db.record_scaling(&decision("fe", 3, 5, 3_000)).unwrap();
        db.record_scaling(&decision("fe", 5, 4, 4_000)).unwrap();
        db.scaling_outcome(first, "applied").unwrap();
        db.scaling_outcome(third, "HTTP 500").unwrap();

        let ro = ReadOnlyDatabase::open(&path).unwrap();
        let times = |rows: Vec<DecisionRow>| -> Vec<i64> {
            rows.iter().map(|r| r.decision.time_ms).collect()
        };
        // Every target, newest first.
        assert_eq!(
            times(ro.scaling_decisions(None, None, 10).unwrap()),
            [4_000, 3_000, 2_000, 1_000]
        );
        // `fe` only; `since` keeps the decision made exactly then (3,000 ≥ 3,000).
        assert_eq!(
            times(ro.scaling_decisions(Some("fe"), Some(3_000), 10).unwrap()),
            [4_000, 3_000]
        );
        // The limit keeps the newest: 4,000 of the three `fe` rows.
        assert_eq!(
            times(ro.scaling_decisions(Some("fe"), None, 1).unwrap()),
            [4_000]
        );
        assert!(
            ro.scaling_decisions(Some("nobody"), None, 10)
                .unwrap()
                .is_empty()
        );
        // Rows read whole, outcomes as recorded (none for the newest: no answer yet).
        let fe = ro.scaling_decisions(Some("fe"), None, 10).unwrap();
        assert_eq!(fe[0].decision, decision("fe", 5, 4, 4_000));
        assert_eq!(fe[0].outcome, None);
        assert_eq!(fe[1].outcome.as_deref(), Some("HTTP 500"));
        assert_eq!(fe[2].id, first);
        assert_eq!(fe[2].decision.inputs["queue"], 120.0);
        assert_eq!(fe[2].outcome.as_deref(), Some("applied"));
        // The engine's own reader sees the same rows.
        assert_eq!(db.scaling_decisions(Some("fe"), 10).unwrap(), fe);
    }

    #[test]
    fn a_database_from_before_the_table_has_no_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telltale.db");
        // A database as an engine of schema version 1 left it.
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "application_id", super::super::APPLICATION_ID)
            .unwrap();
        super::super::schema::migrations()
            .to_version(&mut conn, 1)
            .unwrap();
        drop(conn);

        let ro = ReadOnlyDatabase::open(&path).unwrap();
        assert_eq!(ro.schema_version(), 1);
        assert!(ro.scaling_decisions(None, None, 10).unwrap().is_empty());
        // The table really is absent: reading it without the version check fails.
        assert!(select(ro.connection(), None, None, 10).is_err());
    }
}
