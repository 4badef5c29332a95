//! The durable store: one SQLite file (`rusqlite`, bundled) under the data directory.
//!
//! What it keeps: samples in compressed chunks with tiered retention ([`codec`], the
//! persister), alert state and the notification outbox ([`state`]). What it never does:
//! write to a file that is not its own. [`Database::open`] reads the file's identity
//! (SQLite's `application_id` and `user_version`) before anything writes to it, and
//! refuses, naming the file and what to do, a file that is not SQLite, a SQLite database
//! of another program, a database written by a newer Telltale, and a corrupt one.
//!
//! Connections: WAL journal (readers never block the writer nor it them) with
//! `synchronous=NORMAL`: a commit survives the process being killed (`kill -9`, OOM),
//! and a power loss can lose the last commits but never corrupts the file. Every
//! connection waits up to [`BUSY_TIMEOUT`] for another's write.

pub mod admin;
pub mod codec;
pub mod control;
mod head;
pub(crate) mod persist;
mod query;
pub mod replay;
pub mod rollup;
pub mod scaling;
mod schema;
pub mod state;
mod wal;

pub use persist::{BACKLOG_BYTES, Disk, DiskConfig, PersisterHandle};
pub use query::{RangeData, RangeSeries, Resolution};
pub use rollup::{Bucket, Tier};

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use schema::SCHEMA_VERSION;

/// `PRAGMA application_id` of a Telltale database ("TTdb"), so that `file(1)` and this
/// module can tell it from other SQLite files.
pub const APPLICATION_ID: i32 = 0x5454_6462;

/// How long a connection waits for another connection's write before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the database could not be opened or used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists and is not an SQLite database.
    #[error(
        "{path}: not a Telltale database (not an SQLite file at all); it was left untouched. \
         Move it away, or point `store.path` at another file"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// An SQLite database of another program.
    #[error(
        "{path}: an SQLite database of another program (application_id {found:#x}, \
         Telltale's is {APPLICATION_ID:#x}); it was left untouched. Point `store.path` at \
         another file"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its `application_id`.
        found: i32,
    },
    /// Written by a newer Telltale.
    #[error(
        "{path}: written by a newer Telltale (schema version {found}; this build knows up \
         to {supported}); it was left untouched. Run the newer Telltale, or restore a \
         backup made for schema version {supported}"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The newest this build can open.
        supported: u32,
    },
    /// SQLite says the file is damaged.
    #[error(
        "{path}: the database is corrupt ({detail}); it was left untouched. Restore a backup \
         (`telltale store backup` makes one), or move the file away to start empty \
         (`sqlite3 FILE .recover` may save part of it)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },
    /// The disk (or the database's size cap) is full.
    #[error("{path}: the disk is full ({detail})")]
    Full {
        /// The file.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },
    /// Any other SQLite or file-system failure.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: rusqlite::Error,
    },
    /// The database cannot serve this request as it is (missing, or not yet upgraded);
    /// `detail` says what to do.
    #[error("{path}: {detail}")]
    Unavailable {
        /// The file.
        path: PathBuf,
        /// What is missing and what to do.
        detail: String,
    },
    /// A migration failed.
    #[error("{path}: cannot bring the schema up to version {SCHEMA_VERSION}: {detail}")]
    Migration {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// What a database file says it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    /// Its schema version (`user_version`).
    pub version: u32,
    /// An empty database (a new or 0-byte file): it becomes Telltale's.
    pub fresh: bool,
}

/// Reads the identity of the database `conn` has open, by reads only, and refuses one
/// that is another program's (unless it is empty and `fresh_ok`) or a newer Telltale's.
pub(crate) fn identify(
    conn: &Connection,
    path: &Path,
    fresh_ok: bool,
) -> Result<Identity, StoreError> {
    let err = |e| StoreError::from_sqlite(path, e);
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(err)?;
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(err)?;
    let fresh = app_id == 0 && version == 0 && tables == 0;
    if !(fresh && fresh_ok) && app_id != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            found: app_id,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Identity { version, fresh })
}

impl StoreError {
    /// Sorts a SQLite failure on `path` into the variant an operator can act on.
    pub(crate) fn from_sqlite(path: &Path, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path,
                detail: e.to_string(),
            },
            Some(ErrorCode::DiskFull) => StoreError::Full {
                path,
                detail: e.to_string(),
            },
            _ => StoreError::Sqlite { path, source: e },
        }
    }

    /// Whether this is the disk (or the size cap) being full: writing may resume later.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full { .. })
    }
}

/// The open database file. Cheap to share (`Arc`); each user takes its own connection
/// ([`Database::connect`]) or the shared one for small state writes
/// ([`Database::with_state`]).
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    /// For alert state and the outbox: small writes from the evaluation loop and the
    /// notifier workers.
    state: Mutex<Connection>,
}

impl Database {
    /// Opens (creating it if missing, with its directory) the database at `path`, checks
    /// that it is Telltale's and not from a newer build, and brings its schema up to
    /// [`SCHEMA_VERSION`]. Nothing is written to a file that fails a check.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Sqlite {
                path: path.to_path_buf(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        }
        let err = |e| StoreError::from_sqlite(path, e);
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // Identity first, by reads only: a foreign or newer file is refused untouched.
        let Identity { fresh, .. } = identify(&conn, path, true)?;
        if !fresh {
            // The first page of every table: a damaged header or b-tree root shows
            // here, before anything is written, at a cost independent of the file's size
            // (`quick_check` reads every page: seconds for a large store, and the engine
            // must start in well under one). Damage deeper in shows as `Corrupt` when a
            // read or write reaches it.
            let tables: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND rootpage > 0")
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .map_err(err)?;
            for name in tables {
                let probe = format!("SELECT 1 FROM \"{}\" LIMIT 1", name.replace('"', "\"\""));
                conn.query_row(&probe, [], |_| Ok(()))
                    .optional()
                    .map_err(err)?;
            }
        } else {
            // Settings that only take effect before the first table: free pages go back
            // to the file system when retention deletes (`incremental_vacuum`).
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(err)?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(err)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        schema::migrations()
            .to_latest(&mut conn)
            .map_err(|e| match e {
                rusqlite_migration::Error::RusqliteError { err: e, .. } => {
                    StoreError::from_sqlite(path, e)
                }
                other => StoreError::Migration {
                    path: path.to_path_buf(),
                    detail: other.to_string(),
                },
            })?;
        Ok(Database {
            path: path.to_path_buf(),
            state: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the database takes on disk: its file and SQLite's write-ahead log.
    pub fn file_bytes(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        size(&self.path) + size(Path::new(&wal))
    }

    /// A new connection to the database, set up like every other (WAL, busy timeout).
    pub fn connect(&self) -> Result<Connection, StoreError> {
        let err = |e| StoreError::from_sqlite(&self.path, e);
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        Ok(conn)
    }

    /// Runs `f` on the shared state connection (alert state, outbox), mapping its
    /// failure to a [`StoreError`] naming the file.
    pub fn with_state<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.state.lock();
        f(&mut conn).map_err(|e| StoreError::from_sqlite(&self.path, e))
    }
}

#[cfg(test)]
mod tests;
