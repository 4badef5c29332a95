//! The operator's tools on a database file: what it holds (`telltale store info`) and a
//! consistent copy of it (`telltale store backup`), both safe beside a running engine.
//!
//! Both read through a read-only connection of their own: in WAL mode a reader neither
//! waits for the engine's writer nor holds it up, and a read-only connection can neither
//! create a database where none is nor change one. With the engine stopped (no `-wal`,
//! no `-shm`) the file is read as immutable, so that no `-wal` or `-shm` is left behind.
//! [`ReadOnlyDatabase::open`] checks the file's identity the way [`Database::open`] does,
//! by reads only; it skips `quick_check`, which reads every page: a damaged page shows as
//! [`StoreError::Corrupt`] when a figure or the copy reads it.
//!
//! The backup is `VACUUM INTO` rather than the online backup API: the backup API restarts
//! its copy whenever another connection commits, and the engine commits every
//! `flush_interval`, so a copy in steps of a large database could restart for ever (and in
//! one step it is no different from one read transaction). `VACUUM INTO` copies from one
//! read snapshot, which the writer never waits for, whatever the engine commits meanwhile,
//! and leaves out free pages. While it runs, the engine's checkpoints cannot go past the
//! snapshot, so its `-wal` file grows until the copy is done.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde::Serialize;

use super::{BUSY_TIMEOUT, Database, StoreError};

/// Why an operator's tool could not do its work. The database's own failures (foreign,
/// corrupt, too new, ...) are [`StoreError`]s; the rest concern the files around it.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No file where the database should be; nothing was created.
    #[error("{path}: no database there (nothing was created)")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The backup's destination exists already.
    #[error(
        "{path}: already exists; a backup never overwrites a file. Name a new file, or \
         move this one away first"
    )]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// A file operation around the database failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The copy could not be written; nothing was left at the destination.
    #[error("cannot back up to {dest}: {source}")]
    Copy {
        /// The destination.
        dest: PathBuf,
        /// What failed (naming the file it concerns).
        #[source]
        source: StoreError,
    },
    /// The copy was written but does not read back as the database it copies; it was
    /// removed.
    #[error(
        "{dest}: the copy failed its check ({detail}); it was removed. Check the disk it \
         was written to, and run the backup again"
    )]
    Unverified {
        /// The destination.
        dest: PathBuf,
        /// What the check found.
        detail: String,
    },
    /// The database itself refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one tier of chunks holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierInfo {
    /// The tier's name as in `store.retention`: `raw`, `minute`, `hour`, `day`.
    pub name: &'static str,
    /// Its number in the `chunks` table (0 for raw).
    pub tier: u8,
    /// Sealed chunks.
    pub chunks: u64,
    /// Samples (raw) or roll-up buckets (the others) in them.
    pub rows: u64,
    /// Compressed bytes of chunk data.
    pub bytes: u64,
    /// The start of the oldest chunk, in ms since the Unix epoch.
    pub oldest_start_ms: Option<i64>,
    /// The end of the newest chunk, in ms since the Unix epoch.
    pub newest_end_ms: Option<i64>,
}

/// Rows of a table and the bytes of their `data`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Rows {
    /// Rows.
    pub rows: u64,
    /// Bytes of their `data` column.
    pub bytes: u64,
}

/// What a database file holds, from one read snapshot (`telltale store info`).
#[derive(Debug, Clone, Serialize)]
pub struct StoreInfo {
    /// The database file.
    pub path: PathBuf,
    /// Bytes of the database file itself.
    pub file_bytes: u64,
    /// Bytes of its `-wal` file (0 when there is none): commits not yet copied into the
    /// database file.
    pub wal_file_bytes: u64,
    /// SQLite's page size.
    pub page_size: u64,
    /// Pages in the database.
    pub page_count: u64,
    /// Pages free for reuse (retention deletes until `incremental_vacuum` returns them).
    pub freelist_count: u64,
    /// The schema version (`user_version`).
    pub schema_version: u32,
    /// Series known to the database.
    pub series: u64,
    /// The tiers, finest first.
    pub tiers: Vec<TierInfo>,
    /// Open chunks and partial roll-ups as of the last checkpoint (not yet sealed).
    pub heads: Rows,
    /// Flushes since the last checkpoint (not yet folded into chunks).
    pub wal: Rows,
    /// The oldest sample kept (in chunks, heads or `wal` rows), in ms since the Unix
    /// epoch.
    pub oldest_sample_ms: Option<i64>,
    /// The newest sample on disk (as of the engine's last flush).
    pub newest_sample_ms: Option<i64>,
    /// Pending and firing alerts.
    pub alerts: u64,
    /// Notifications no notifier is done with yet.
    pub outbox_undone: u64,
}

/// The tiers of the `chunks` table: their number and name.
const TIERS: [(u8, &str); 4] = [(0, "raw"), (1, "minute"), (2, "hour"), (3, "day")];

/// What a backup did (`telltale store backup`).
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The database copied.
    pub source: PathBuf,
    /// The copy.
    pub dest: PathBuf,
    /// Bytes of the copy.
    pub bytes: u64,
    /// How long the copy and its check took.
    pub elapsed: Duration,
    /// The copy's schema version (the source's).
    pub schema_version: u32,
}

impl fmt::Display for BackupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backed up {:.1} MiB to {} in {:.1} s; schema version {}; integrity ok",
            self.bytes as f64 / (1u64 << 20) as f64,
            self.dest.display(),
            self.elapsed.as_secs_f64(),
            self.schema_version
        )
    }
}

/// An existing database opened for reading only, beside whatever else has it open. Meant
/// for one command's span: opened while the engine was stopped, it does not see what an
/// engine started afterwards writes.
#[derive(Debug)]
pub struct ReadOnlyDatabase {
    path: PathBuf,
    conn: Connection,
    schema_version: u32,
}

impl ReadOnlyDatabase {
    /// Opens the database at `path` for reading and checks that it is Telltale's and not
    /// from a newer build. Never creates a file: a missing one is [`AdminError::Missing`].
    pub fn open(path: &Path) -> Result<ReadOnlyDatabase, AdminError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AdminError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(AdminError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        if !meta.is_file() {
            return Err(AdminError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        // SQLite reads a zero-length file as an empty database, which would then pass for
        // "another program's"; it is no database at all.
        if meta.len() == 0 {
            return Err(StoreError::NotADatabase {
                path: path.to_path_buf(),
            }
            .into());
        }
        let conn = connect_read_only(path)?;
        let schema_version = identify(&conn, path)?;
        Ok(ReadOnlyDatabase {
            path: path.to_path_buf(),
            conn,
            schema_version,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its schema version.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The read-only connection, for the module's other read-only views (`replay.rs`).
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// What the database holds.
    pub fn info(&self) -> Result<StoreInfo, StoreError> {
        info(&self.conn, &self.path)
    }

    /// Writes a consistent copy of the database to `dest`, which must not exist, and checks
    /// that the copy is whole before reporting.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, AdminError> {
        backup(&self.conn, &self.path, dest)
    }
}

impl Database {
    /// What the database holds, read through a connection of its own so that the engine's
    /// writers go on meanwhile.
    pub fn info(&self) -> Result<StoreInfo, StoreError> {
        let conn = connect_read_only(&self.path)?;
        info(&conn, &self.path)
    }

    /// Writes a consistent copy of the database to `dest` (see [`ReadOnlyDatabase::backup`])
    /// while the engine goes on writing.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, AdminError> {
        let conn = connect_read_only(&self.path)?;
        backup(&conn, &self.path, dest)
    }
}

/// A read-only connection to the existing database at `path`, able to read it whether or
/// not an engine has it open, and leaving no file behind that was not there.
fn connect_read_only(path: &Path) -> Result<Connection, StoreError> {
    let err = |e| StoreError::from_sqlite(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // A reader of a WAL database shares the engine's `-shm` index. With the engine stopped
    // there is none (nor a `-wal`): a reader would create both and leave them behind,
    // owned by whoever ran the tool (root's, under `sudo`, would then stop the engine's
    // user from opening the database). Without them every commit is in the file itself,
    // so it is read as it is, without locks or shared memory.
    let running = sidecar(path, "-wal").exists() || sidecar(path, "-shm").exists();
    let conn = match immutable_uri(path).filter(|_| !running) {
        Some(uri) => Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI),
        None => Connection::open_with_flags(path, flags),
    }
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    // SQLite opens lazily: the first read is what finds a file that is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(err)?;
    Ok(conn)
}

/// `path` with `suffix` appended to its file name (SQLite's `-wal` and `-shm` files).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A `file:` URI opening `path` as immutable (no locks, no `-shm`); `None` for a path
/// that is not UTF-8.
fn immutable_uri(path: &Path) -> Option<String> {
    let absolute = std::path::absolute(path).ok()?;
    let mut uri = String::from("file:");
    for c in absolute.to_str()?.chars() {
        match c {
            // The characters a URI gives a meaning of its own.
            '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", u32::from(c))),
            _ => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Some(uri)
}

/// Checks the identity of the database `conn` has open, by reads only, as
/// [`Database::open`] does (an empty file is not a database here: nothing creates one);
/// returns its schema version.
fn identify(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    super::identify(conn, path, false).map(|i| i.version)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Every figure of [`StoreInfo`], from one read transaction.
fn info(conn: &Connection, path: &Path) -> Result<StoreInfo, StoreError> {
    let err = |e| StoreError::from_sqlite(path, e);
    // One snapshot: the figures add up even while the engine checkpoints meanwhile.
    let tx = conn.unchecked_transaction().map_err(err)?;
    let pragma = |name: &str| -> Result<u64, StoreError> {
        tx.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
            .map(|v| u64::try_from(v).unwrap_or(0))
            .map_err(err)
    };
    let page_size = pragma("page_size")?;
    let page_count = pragma("page_count")?;
    let freelist_count = pragma("freelist_count")?;
    let schema_version = u32::try_from(pragma("user_version")?).unwrap_or(u32::MAX);
    let count = |sql: &str| -> Result<u64, StoreError> {
        tx.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|v| u64::try_from(v).unwrap_or(0))
            .map_err(err)
    };
    let series = count("SELECT count(*) FROM series")?;
    let alerts = count("SELECT count(*) FROM alerts")?;
    let outbox_undone = count("SELECT count(*) FROM outbox WHERE done_ms IS NULL")?;
    let rows = |table: &str| -> Result<Rows, StoreError> {
        tx.query_row(
            &format!("SELECT count(*), coalesce(sum(length(data)), 0) FROM {table}"),
            [],
            |r| {
                Ok(Rows {
                    rows: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    bytes: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                })
            },
        )
        .map_err(err)
    };
    let heads = rows("heads")?;
    let wal = rows("wal")?;
    let mut tiers: Vec<TierInfo> = TIERS
        .iter()
        .map(|&(tier, name)| TierInfo {
            name,
            tier,
            chunks: 0,
            rows: 0,
            bytes: 0,
            oldest_start_ms: None,
            newest_end_ms: None,
        })
        .collect();
    let mut stmt = tx
        .prepare(
            "SELECT tier, count(*), coalesce(sum(count), 0), coalesce(sum(length(data)), 0),
                    min(start_ms), max(end_ms)
             FROM chunks GROUP BY tier",
        )
        .map_err(err)?;
    let mut found = stmt.query([]).map_err(err)?;
    while let Some(r) = found.next().map_err(err)? {
        let tier: i64 = r.get(0).map_err(err)?;
        // A tier this build does not know (a newer build's) has no line to go on.
        let Some(t) = tiers.iter_mut().find(|t| i64::from(t.tier) == tier) else {
            continue;
        };
        t.chunks = u64::try_from(r.get::<_, i64>(1).map_err(err)?).unwrap_or(0);
        t.rows = u64::try_from(r.get::<_, i64>(2).map_err(err)?).unwrap_or(0);
        t.bytes = u64::try_from(r.get::<_, i64>(3).map_err(err)?).unwrap_or(0);
        t.oldest_start_ms = r.get(4).map_err(err)?;
        t.newest_end_ms = r.get(5).map_err(err)?;
    }
    drop(found);
    drop(stmt);
    let (head_first, head_last): (Option<i64>, Option<i64>) = tx
        .query_row("SELECT min(first_ms), max(last_ms) FROM heads", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(err)?;
    let raw = tiers.iter().find(|t| t.tier == 0);
    let pick = |a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64| match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    };
    // Samples flushed since the last checkpoint are only in `wal` rows: their span
    // counts too (a running engine's newest sample is there).
    let (mut wal_first, mut wal_last) = (None::<i64>, None::<i64>);
    {
        let mut st = tx.prepare("SELECT data FROM wal").map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let data = r
                .get_ref(0)
                .map_err(err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            // A malformed row (a bug or damage) only leaves its samples out of the span.
            let _ = super::wal::for_each_series(data, &mut |_, points| {
                for p in points {
                    wal_first = Some(wal_first.map_or(p.timestamp_ms, |t| t.min(p.timestamp_ms)));
                    wal_last = Some(wal_last.map_or(p.timestamp_ms, |t| t.max(p.timestamp_ms)));
                }
            });
        }
    }
    let oldest_sample_ms = pick(
        pick(raw.and_then(|t| t.oldest_start_ms), head_first, i64::min),
        wal_first,
        i64::min,
    );
    let newest_sample_ms = pick(
        pick(raw.and_then(|t| t.newest_end_ms), head_last, i64::max),
        wal_last,
        i64::max,
    );
    tx.commit().map_err(err)?;
    Ok(StoreInfo {
        path: path.to_path_buf(),
        file_bytes: file_len(path),
        wal_file_bytes: file_len(&sidecar(path, "-wal")),
        page_size,
        page_count,
        freelist_count,
        schema_version,
        series,
        tiers,
        heads,
        wal,
        oldest_sample_ms,
        newest_sample_ms,
        alerts,
        outbox_undone,
    })
}

/// Removes the file at `path` when dropped, unless disarmed: a copy that failed half-way
/// must not be left looking like a backup.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `VACUUM INTO` a file beside `dest`, check it, then link it to `dest`, which must not
/// exist (at no moment is a partial copy under the name asked for).
fn backup(conn: &Connection, source: &Path, dest: &Path) -> Result<BackupReport, AdminError> {
    let started = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AdminError::Io { path, source }
    };
    if dest.symlink_metadata().is_ok() {
        return Err(AdminError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    let dest_abs = std::path::absolute(dest).map_err(io(dest))?;
    let (Some(dir), Some(name)) = (dest_abs.parent(), dest_abs.file_name()) else {
        return Err(AdminError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        });
    };
    if !dir.is_dir() {
        return Err(AdminError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the directory {} does not exist", dir.display()),
            ),
        });
    }
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = dir.join(partial_name);
    let Some(partial_text) = partial.to_str() else {
        return Err(AdminError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "SQLite takes the name of the copy as UTF-8 text",
            ),
        });
    };
    let mut cleanup = RemoveOnDrop(Some(&partial));
    conn.execute("VACUUM INTO ?1", [partial_text])
        .map_err(|e| {
            // Failing to make or fill the copy is the destination's fault; anything else
            // (a damaged page, say) is the database's.
            let whose = match e.sqlite_error_code() {
                Some(
                    ErrorCode::DiskFull
                    | ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
                    | ErrorCode::PermissionDenied,
                ) => dest,
                _ => source,
            };
            AdminError::Copy {
                dest: dest.to_path_buf(),
                source: StoreError::from_sqlite(whose, e),
            }
        })?;
    // SQLite does not sync the file `VACUUM INTO` writes; a backup must survive a crash.
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(dest))?;
    let schema_version = verify(&partial, dest)?;

    match std::fs::hard_link(&partial, &dest_abs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(AdminError::DestinationExists {
                path: dest.to_path_buf(),
            });
        }
        // A file system without hard links: rename, which would replace a file made
        // since the check at the start, so check once more just before.
        Err(_) => {
            if dest.symlink_metadata().is_ok() {
                return Err(AdminError::DestinationExists {
                    path: dest.to_path_buf(),
                });
            }
            std::fs::rename(&partial, &dest_abs).map_err(io(dest))?;
            cleanup.0 = None;
        }
    }
    drop(cleanup);
    // The new name must survive a crash too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(BackupReport {
        source: source.to_path_buf(),
        dest: dest.to_path_buf(),
        bytes: file_len(dest),
        elapsed: started.elapsed(),
        schema_version,
    })
}

/// Checks the copy at `partial` as [`Database::open`] would take it (Telltale's, not too
/// new) and whole (`PRAGMA integrity_check`); returns its schema version.
fn verify(partial: &Path, dest: &Path) -> Result<u32, AdminError> {
    let unverified = |detail: String| AdminError::Unverified {
        dest: dest.to_path_buf(),
        detail,
    };
    // The copy is in rollback-journal mode (what `VACUUM INTO` writes), so reading it
    // makes no `-wal` or `-shm` beside it.
    let conn = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| unverified(e.to_string()))?;
    let version = identify(&conn, partial).map_err(|e| unverified(e.to_string()))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check(20)")
        .map_err(|e| unverified(e.to_string()))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| unverified(e.to_string()))?;
    if lines != ["ok"] {
        return Err(unverified(lines.join("; ")));
    }
    Ok(version)
}

/// `n` bytes with a binary unit: `512 B`, `1.5 KiB`, `12.3 GiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds since the Unix epoch as a UTC time, `2024-05-01 12:00:00Z`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

impl fmt::Display for StoreInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), utc);
        writeln!(f, "database   {}", self.path.display())?;
        writeln!(
            f,
            "on disk    {} (file {}, -wal {})",
            human_bytes(self.file_bytes.saturating_add(self.wal_file_bytes)),
            human_bytes(self.file_bytes),
            human_bytes(self.wal_file_bytes)
        )?;
        writeln!(
            f,
            "pages      {} of {}, {} free ({})",
            self.page_count,
            human_bytes(self.page_size),
            self.freelist_count,
            human_bytes(self.freelist_count.saturating_mul(self.page_size))
        )?;
        writeln!(f, "schema     version {}", self.schema_version)?;
        writeln!(f, "series     {}", self.series)?;
        writeln!(
            f,
            "samples    oldest {}, newest {} (as of the last flush)",
            time(self.oldest_sample_ms),
            time(self.newest_sample_ms)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "tier         chunks           rows        data  oldest                newest"
        )?;
        for t in &self.tiers {
            writeln!(
                f,
                "{:<8} {:>10} {:>14} {:>11}  {:<20}  {}",
                t.name,
                t.chunks,
                t.rows,
                human_bytes(t.bytes),
                time(t.oldest_start_ms),
                time(t.newest_end_ms)
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "not yet in chunks: heads {} row(s) ({}), wal {} row(s) ({})",
            self.heads.rows,
            human_bytes(self.heads.bytes),
            self.wal.rows,
            human_bytes(self.wal.bytes)
        )?;
        writeln!(f, "alerts     {} pending or firing", self.alerts)?;
        write!(
            f,
            "outbox     {} notification(s) not yet delivered or given up",
            self.outbox_undone
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::disk::SCHEMA_VERSION;

    /// A database made the way the engine makes it, with `n` series.
    fn database(dir: &Path, n: usize) -> (PathBuf, Database) {
        let path = dir.join("telltale.db");
        let db = Database::open(&path).unwrap();
        db.with_state(|c| {
            for i in 0..n {
                c.execute(
                    "INSERT INTO series (name, labels) VALUES ('m', ?1)",
                    [format!("{{\"i\":\"{i}\"}}")],
                )?;
            }
            Ok(())
        })
        .unwrap();
        (path, db)
    }

    fn chunk(c: &Connection, tier: u8, start: i64, end: i64, count: i64, bytes: usize) {
        c.execute(
            "INSERT INTO chunks (tier, series, start_ms, end_ms, count, data)
             VALUES (?1, 1, ?2, ?3, ?4, ?5)",
            rusqlite::params![tier, start, end, count, vec![7u8; bytes]],
        )
        .unwrap();
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn info_adds_up_each_tier_and_what_is_not_yet_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = database(dir.path(), 3);
        db.with_state(|c| {
            chunk(c, 0, 1_700_000_000_000, 1_700_000_060_000, 120, 300);
            chunk(c, 0, 1_700_000_060_000, 1_700_000_120_000, 80, 200);
            chunk(c, 1, 1_699_000_000_000, 1_700_000_000_000, 60, 50);
            chunk(c, 3, 1_600_000_000_000, 1_600_086_400_000, 1, 10);
            c.execute_batch(
                "INSERT INTO heads (series, first_ms, last_ms, data)
                     VALUES (1, 1699999000000, 1700000180000, x'0102'), (2, NULL, 1700000170000, x'03');
                 INSERT INTO wal (data) VALUES (x'01020304');
                 INSERT INTO alerts VALUES ('f1', '{}');
                 INSERT INTO outbox VALUES ('hook', 'a', 1, '{}', NULL, NULL);
                 INSERT INTO outbox VALUES ('hook', 'b', 1, '{}', 2, 'delivered');",
            )
        })
        .unwrap();

        let ro = ReadOnlyDatabase::open(&path).unwrap();
        for info in [ro.info().unwrap(), db.info().unwrap()] {
            assert_eq!(info.schema_version, SCHEMA_VERSION);
            assert_eq!(info.series, 3);
            let names: Vec<&str> = info.tiers.iter().map(|t| t.name).collect();
            assert_eq!(names, ["raw", "minute", "hour", "day"]);
            let raw = &info.tiers[0];
            assert_eq!((raw.chunks, raw.rows, raw.bytes), (2, 200, 500));
            assert_eq!(raw.oldest_start_ms, Some(1_700_000_000_000));
            assert_eq!(raw.newest_end_ms, Some(1_700_000_120_000));
            assert_eq!((info.tiers[1].chunks, info.tiers[1].rows), (1, 60));
            let hour = &info.tiers[2];
            assert_eq!((hour.chunks, hour.rows, hour.bytes), (0, 0, 0));
            assert_eq!((hour.oldest_start_ms, hour.newest_end_ms), (None, None));
            assert_eq!(info.tiers[3].bytes, 10);
            assert_eq!(info.heads, Rows { rows: 2, bytes: 3 });
            assert_eq!(info.wal, Rows { rows: 1, bytes: 4 });
            // The heads' open data is older and newer than the sealed raw chunks.
            assert_eq!(info.oldest_sample_ms, Some(1_699_999_000_000));
            assert_eq!(info.newest_sample_ms, Some(1_700_000_180_000));
            assert_eq!((info.alerts, info.outbox_undone), (1, 1));
            assert!(info.page_size >= 512 && info.page_count > 0, "{info:?}");
            assert!(info.file_bytes > 0, "{info:?}");
            assert!(info.wal_file_bytes > 0, "the engine's -wal: {info:?}");

            let text = info.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("2023-11-14 22:13:20Z"), "{text}");
            assert!(text.contains("500 B"), "{text}");
            let json = serde_json::to_value(&info).unwrap();
            assert_eq!(json["tiers"][0]["rows"], 200);
            assert_eq!(json["outbox_undone"], 1);
        }
    }

    #[test]
    fn info_and_backup_read_a_stopped_engines_database_leaving_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = database(dir.path(), 2);
        drop(db);
        assert_eq!(files_in(dir.path()), ["telltale.db"], "closed cleanly");
        let before = std::fs::read(&path).unwrap();
        let ro = ReadOnlyDatabase::open(&path).unwrap();
        assert_eq!(ro.info().unwrap().series, 2);
        ro.backup(&dir.path().join("copy.db")).unwrap();
        drop(ro);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(
            files_in(dir.path()),
            ["copy.db", "telltale.db"],
            "no -wal or -shm is left behind"
        );
    }

    #[test]
    fn a_missing_database_is_an_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nothing.db");
        let e = ReadOnlyDatabase::open(&path).unwrap_err();
        assert!(matches!(e, AdminError::Missing { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn files_that_are_not_this_builds_database_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.db");
        std::fs::write(&text, "not a database\n".repeat(100)).unwrap();
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let (newer, db) = database(&dir.path().join("newer"), 0);
        drop(db);
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let before: Vec<Vec<u8>> = [&text, &empty, &foreign, &newer]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();

        let refused = |p: &Path| match ReadOnlyDatabase::open(p) {
            Err(AdminError::Store(e)) => e,
            other => panic!("{}: {other:?}", p.display()),
        };
        assert!(matches!(refused(&text), StoreError::NotADatabase { .. }));
        assert!(matches!(refused(&empty), StoreError::NotADatabase { .. }));
        assert!(matches!(
            refused(&foreign),
            StoreError::Foreign { found: 0, .. }
        ));
        assert!(matches!(refused(&newer), StoreError::TooNew { .. }));
        let after: Vec<Vec<u8>> = [&text, &empty, &foreign, &newer]
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        assert!(before == after, "a refused file was changed");
        assert_eq!(
            files_in(dir.path()),
            ["empty.db", "foreign.db", "newer", "notes.db"]
        );
    }

    #[test]
    fn a_backup_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, db) = database(dir.path(), 1);
        let dest = dir.path().join("precious.txt");
        std::fs::write(&dest, "keep me").unwrap();
        let e = db.backup(&dest).unwrap_err();
        assert!(matches!(e, AdminError::DestinationExists { .. }), "{e}");
        assert!(e.to_string().contains("precious.txt"), "{e}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "keep me");
        let e = db.backup(&dir.path().join("no/such/dir/b.db")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn a_backup_is_whole_while_another_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, db) = database(dir.path(), 1);
        // Enough data that the copy takes a while next to the writer.
        db.with_state(|c| {
            let tx = c.transaction()?;
            for i in 0..2000 {
                chunk(&tx, 0, i * 1000, i * 1000 + 999, 100, 2000);
            }
            tx.commit()
        })
        .unwrap();
        let committed = Arc::new(AtomicU64::new(2000));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (committed, stop) = (committed.clone(), stop.clone());
            let conn = db.connect().unwrap();
            std::thread::spawn(move || {
                let mut i = 2000;
                while !stop.load(Ordering::SeqCst) {
                    chunk(&conn, 0, i * 1000, i * 1000 + 999, 100, 2000);
                    i += 1;
                    committed.fetch_add(1, Ordering::SeqCst);
                }
                i
            })
        };
        while committed.load(Ordering::SeqCst) < 2050 {
            std::thread::yield_now();
        }
        let before = committed.load(Ordering::SeqCst);
        let dest = dir.path().join("backup.db");
        let report = ReadOnlyDatabase::open(&path)
            .unwrap()
            .backup(&dest)
            .unwrap();
        let during = committed.load(Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let total = writer.join().unwrap();
        assert!(during > before, "the writer went on during the backup");

        assert_eq!(report.schema_version, SCHEMA_VERSION);
        assert_eq!(report.bytes, std::fs::metadata(&dest).unwrap().len());
        assert!(report.to_string().starts_with("backed up "), "{report}");
        assert!(report.to_string().ends_with("integrity ok"), "{report}");
        let copy = Database::open(&dest).unwrap();
        let (ok, chunks): (String, i64) = copy
            .with_state(|c| {
                Ok((
                    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?,
                    c.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!(ok, "ok");
        let chunks = u64::try_from(chunks).unwrap();
        assert!(
            chunks >= before && chunks <= u64::try_from(total).unwrap(),
            "{before} <= {chunks} <= {total}"
        );
        drop(copy);
        let names = files_in(dir.path());
        assert!(
            !names.iter().any(|n| n.contains("partial")),
            "no partial copy is left: {names:?}"
        );
    }

    #[test]
    fn sizes_and_times_read_the_way_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59Z");
        assert_eq!(
            immutable_uri(Path::new("/a b/c?d#e%f.db")).as_deref(),
            Some("file:/a b/c%3Fd%23e%25f.db?immutable=1")
        );
    }
}

/// What each metric family costs on disk: samples and bytes of the raw tier (sealed
/// chunks plus the open chunks of the heads) and bytes of its roll-ups.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FamilyUsage {
    /// The metric name.
    pub name: String,
    /// Its series.
    pub series: u64,
    /// Samples in the raw tier.
    pub samples: u64,
    /// Encoded bytes of those samples.
    pub raw_bytes: u64,
    /// Encoded bytes of its roll-up buckets (all three tiers).
    pub rollup_bytes: u64,
}

/// Where the database's bytes go: per SQLite table and index (pages, from `dbstat`), and
/// per metric family.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Bytes of pages per table or index, largest first.
    pub objects: Vec<(String, u64)>,
    /// Families by name.
    pub families: Vec<FamilyUsage>,
}

impl Database {
    /// Where the database's bytes go ([`Usage`]). Reads every chunk's size and decodes
    /// every head: for benchmarks and capacity planning, not for a running engine's hot
    /// path.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let err = |e| StoreError::from_sqlite(&self.path, e);
        let conn = connect_read_only(&self.path)?;
        let mut objects: Vec<(String, u64)> = conn
            .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect()
            })
            .map_err(err)?;
        objects.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut families: BTreeMap<String, FamilyUsage> = BTreeMap::new();
        let mut st = conn
            .prepare(
                "SELECT s.name, count(DISTINCT s.id),
                        coalesce(sum(CASE WHEN c.tier = 0 THEN c.count END), 0),
                        coalesce(sum(CASE WHEN c.tier = 0 THEN length(c.data) END), 0),
                        coalesce(sum(CASE WHEN c.tier > 0 THEN length(c.data) END), 0)
                 FROM series s LEFT JOIN chunks c ON c.series = s.id GROUP BY s.name",
            )
            .map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let name: String = r.get(0).map_err(err)?;
            let get = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            families.insert(
                name.clone(),
                FamilyUsage {
                    name,
                    series: get(1).map_err(err)?,
                    samples: get(2).map_err(err)?,
                    raw_bytes: get(3).map_err(err)?,
                    rollup_bytes: get(4).map_err(err)?,
                },
            );
        }
        drop(rows);
        drop(st);
        let mut st = conn
            .prepare(
                "SELECT s.name, h.series, h.data FROM heads h JOIN series s ON s.id = h.series",
            )
            .map_err(err)?;
        let mut rows = st.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let name: String = r.get(0).map_err(err)?;
            let id: i64 = r.get(1).map_err(err)?;
            let data = r
                .get_ref(2)
                .map_err(err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            let Ok(head) = super::head::Head::from_bytes(id, data) else {
                continue;
            };
            let (n, raw, rollup) = head.open_sizes();
            let f = families.entry(name.clone()).or_insert_with(|| FamilyUsage {
                name,
                ..FamilyUsage::default()
            });
            f.samples += n as u64;
            f.raw_bytes += raw as u64;
            f.rollup_bytes += rollup as u64;
        }
        Ok(Usage {
            objects,
            families: families.into_values().collect(),
        })
    }
}
