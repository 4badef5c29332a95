//! The shutdown spool: notifications still undelivered when the grace period ends are
//! appended here as JSON lines (`{"notifier": ..., "notification": ...}`) and re-queued on
//! the next start, so a receiver outage across a restart loses nothing.
//!
//! Appending (never truncating) keeps entries a previous run could not take back; a
//! duplicate is harmless because delivery is at-least-once and receivers dedupe on the id.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use telltale_model::Notification;

/// One spooled delivery: which notifier still owes which notification.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolEntry {
    /// The notifier's configured name.
    pub notifier: String,
    /// The notification.
    pub notification: Notification,
}

/// The line format. `value` is kept separately when the alert's value is not finite,
/// because JSON has no NaN/Infinity and `model::Alert::value` cannot read back `null`.
#[derive(Serialize, Deserialize)]
struct Line {
    notifier: String,
    notification: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonfinite_value: Option<String>,
}

/// Why the spool could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file system error, with the file.
    #[error("spool {path}: {source}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Appends entries to the spool file (creating it and its directory), then syncs it.
pub fn append(path: &Path, entries: &[SpoolEntry]) -> Result<(), SpoolError> {
    let io = |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = String::new();
    for e in entries {
        let value = e.notification.alert.value;
        let line = Line {
            notifier: e.notifier.clone(),
            // Plain data into memory: cannot fail (NaN becomes null, restored on read).
            notification: serde_json::to_value(&e.notification).unwrap_or_default(),
            nonfinite_value: (!value.is_finite()).then(|| value.to_string()),
        };
        text.push_str(&serde_json::to_string(&line).unwrap_or_default());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    // The process is about to exit: make sure the data is on disk, not in the page cache.
    f.sync_all().map_err(io)
}

/// Reads and removes the spool file. A missing file is an empty spool. Lines that do not
/// parse are skipped with a warning naming the line; the rest is still returned.
pub fn take(path: &Path) -> Result<Vec<SpoolEntry>, SpoolError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SpoolError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        match parse_line(raw) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(
                spool = %path.display(),
                line = i + 1,
                error = %e,
                "skipping an unreadable spool entry"
            ),
        }
    }
    std::fs::remove_file(path).map_err(|source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(out)
}

fn parse_line(raw: &str) -> Result<SpoolEntry, serde_json::Error> {
    let mut line: Line = serde_json::from_str(raw)?;
    let value = match line.nonfinite_value.as_deref() {
        Some(v) => {
            // A placeholder so `Alert` deserializes; replaced right below.
            line.notification["alert"]["value"] = 0.into();
            v.parse::<f64>().unwrap_or(f64::NAN)
        }
        None => f64::NAN,
    };
    let mut notification: Notification = serde_json::from_value(line.notification)?;
    if line.nonfinite_value.is_some() {
        notification.alert.value = value;
    }
    Ok(SpoolEntry {
        notifier: line.notifier,
        notification,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::notification;
    use telltale_model::AlertStatus;

    #[test]
    fn round_trips_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/spool.jsonl");
        let a = SpoolEntry {
            notifier: "ops".into(),
            notification: notification("a", 97.5, AlertStatus::Firing),
        };
        let b = SpoolEntry {
            notifier: "pager".into(),
            notification: notification("b", f64::NEG_INFINITY, AlertStatus::Resolved),
        };
        append(&path, std::slice::from_ref(&a)).unwrap();
        append(&path, std::slice::from_ref(&b)).unwrap();
        let got = take(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], a);
        assert_eq!(got[1].notifier, "pager");
        assert_eq!(got[1].notification.alert.value, f64::NEG_INFINITY);
        assert!(!path.exists(), "take removes the file");
        assert!(take(&path).unwrap().is_empty());
    }

    #[test]
    fn nan_survives_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.jsonl");
        let n = SpoolEntry {
            notifier: "ops".into(),
            notification: notification("n", f64::NAN, AlertStatus::Firing),
        };
        append(&path, &[n]).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.insert_str(0, "{not json\n\n");
        std::fs::write(&path, text).unwrap();
        let got = take(&path).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].notification.alert.value.is_nan());
    }
}
