//! The durable store's schema, as versioned migrations (`rusqlite_migration`, which keeps
//! the version in SQLite's `user_version`). Append a migration to change it; never edit
//! one that has shipped: databases in the field were made by it.

use rusqlite_migration::{M, Migrations};

/// Every migration, oldest first. The schema version of a database is how many of them it
/// has applied.
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        r#"
-- Every series ever written: its identity once, referred to by `id` everywhere else.
CREATE TABLE series (
    id     INTEGER PRIMARY KEY,
    name   TEXT NOT NULL,
    -- The label set as a JSON object with its keys in order (`model::Labels`' order).
    labels TEXT NOT NULL,
    UNIQUE (name, labels)
);

-- Compressed chunks of samples (tier 0) and of roll-up buckets (tiers 1-3: per minute,
-- hour, day), sealed: never changed again, only deleted by retention or `max_disk`.
CREATE TABLE chunks (
    id       INTEGER PRIMARY KEY,
    tier     INTEGER NOT NULL,
    series   INTEGER NOT NULL REFERENCES series (id),
    start_ms INTEGER NOT NULL,
    end_ms   INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    data     BLOB NOT NULL
);
CREATE INDEX chunks_by_series ON chunks (series, tier, end_ms);
CREATE INDEX chunks_by_age ON chunks (tier, end_ms);

-- Each series' open (not yet sealed) chunks and partial roll-up buckets, as of the last
-- checkpoint; with the `wal` rows after it, what a restart resumes from.
CREATE TABLE heads (
    series   INTEGER PRIMARY KEY REFERENCES series (id),
    -- The oldest sample of the open raw chunk (NULL when it is empty) and the newest
    -- sample of the series, for `store info` without decoding `data`.
    first_ms INTEGER,
    last_ms  INTEGER,
    data     BLOB NOT NULL
);

-- Samples flushed since the last checkpoint, one row per flush.
CREATE TABLE wal (
    seq  INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

-- Pending and firing alerts (JSON of `alerts::ActiveAlert`), so that a restart keeps
-- pending timers and does not announce firing alerts again.
CREATE TABLE alerts (
    fingerprint TEXT PRIMARY KEY,
    state       TEXT NOT NULL
);

-- Every notification, written before it is handed to a notifier and marked when that
-- notifier is done with it (delivered or given up).
CREATE TABLE outbox (
    notifier     TEXT NOT NULL,
    id           TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    notification TEXT NOT NULL,
    done_ms      INTEGER,
    outcome      TEXT,
    PRIMARY KEY (notifier, id)
);
CREATE INDEX outbox_undone ON outbox (created_ms) WHERE done_ms IS NULL;
"#,
    ),
    // 2: the decisions of scaling rules, with what they were based on (`disk/scaling.rs`).
    M::up(
        r#"
CREATE TABLE scaling_decisions (
    id       INTEGER PRIMARY KEY,
    time_ms  INTEGER NOT NULL,
    rule     TEXT NOT NULL,
    target   TEXT NOT NULL,
    current  INTEGER NOT NULL,
    desired  INTEGER NOT NULL,
    -- What the rule proposed on that tick, before stabilisation.
    proposed INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    -- The figures the rule based it on, as a JSON object of numbers.
    inputs   TEXT NOT NULL,
    -- How applying it went: NULL until the scaler answered (or when there is none),
    -- then `applied` or the error.
    outcome  TEXT
);
CREATE INDEX scaling_decisions_by_target ON scaling_decisions (target, time_ms);
"#,
    ),
    // 3: the alert manager's state, and the commands `telltale ack/silence/snooze` leave
    // for a running engine (`disk/control.rs`).
    M::up(
        r#"
-- Routing groups, silences, acknowledgements, snoozes and escalations: one JSON document
-- made and read by the pipeline (`telltale-routing`'s snapshot).
CREATE TABLE routing_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    saved_ms INTEGER NOT NULL,
    state    TEXT NOT NULL
);
-- Commands for the engine, applied in `seq` order; `outcome` says how it went.
CREATE TABLE commands (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms INTEGER NOT NULL,
    command    TEXT NOT NULL,
    applied_ms INTEGER,
    outcome    TEXT
);
CREATE INDEX commands_pending ON commands (seq) WHERE applied_ms IS NULL;
"#,
    ),
];

/// The migrations, for `to_latest`.
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// The schema version this build writes (and the newest it can open).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
