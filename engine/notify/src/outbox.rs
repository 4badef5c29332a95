//! The outbox: every (notifier, notification) pair the dispatcher routes is written here
//! before it is queued, and marked done when its notifier is finished with it. What is
//! not done when the process stops (a shutdown past its grace period, a crash, `kill -9`)
//! is queued again by the next [`Dispatcher::start`](crate::Dispatcher::start).
//!
//! The dispatcher only knows the [`Outbox`] trait; the durable implementation (over the
//! store's database) lives in the pipeline, which may depend on both. [`encode`] and
//! [`decode`] are the one JSON form of a notification at rest, and [`import_spool`] takes
//! over the shutdown spool file older versions wrote.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use telltale_model::Notification;

/// How a notifier finished with an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it.
    Delivered,
    /// Given up after the notifier's retries, or refused for good by the receiver.
    Failed,
    /// Never handed to the notifier: its queue was full, or the notifier is no longer
    /// configured.
    Dropped,
}

impl Outcome {
    /// `delivered`, `failed` or `dropped`: the word stored with a done entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// One undone entry: a notification one notifier still owes.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The notifier's configured name.
    pub notifier: String,
    /// The notification.
    pub notification: Notification,
}

/// Why the outbox could not be read or written (its implementation's words, which name
/// the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutboxError(pub String);

/// Where notifications wait until their notifier is done with them, across restarts.
///
/// The dispatcher calls [`put`](Outbox::put) from [`DispatcherHandle::send`](crate::DispatcherHandle::send)
/// before queueing, [`done`](Outbox::done) from the notifier's worker (on a blocking
/// thread), and [`undone`](Outbox::undone) once, at start. A failure never stops
/// delivery: an entry that could not be written is delivered anyway, at most once (a
/// restart before its delivery loses it), and one that could not be marked is delivered
/// again by the next start. Implementations log their own failures, rate-limited (a
/// full disk fails every write) and saying so, since only they know what failed.
pub trait Outbox: std::fmt::Debug + Send + Sync {
    /// Writes one notification as owed by each of `notifiers`, in one transaction. An
    /// entry already there (same notifier and notification id) is left as it is.
    fn put(&self, notification: &Notification, notifiers: &[&str]) -> Result<(), OutboxError>;

    /// Marks one entry done with `outcome`. An entry that is missing (its put failed) or
    /// already done is left alone, without an error.
    fn done(&self, notifier: &str, id: &str, outcome: Outcome) -> Result<(), OutboxError>;

    /// The entries not done yet, oldest first (per notifier, in the order they were put).
    fn undone(&self) -> Result<Vec<OutboxEntry>, OutboxError>;
}

/// The key that carries a non-finite `alert.value` beside the notification's JSON: JSON
/// has no NaN or infinity (serde writes `null`, which `model::Alert::value` cannot read
/// back).
const NONFINITE_KEY: &str = "nonfinite_value";

/// A notification as JSON text for an outbox: its serde form, plus `"nonfinite_value"`
/// (`"NaN"`, `"inf"`, `"-inf"`) at the top level when the alert's value is not finite.
pub fn encode(n: &Notification) -> String {
    encode_with_alert_value(n, n.alert.value)
}

/// Reads what [`encode`] wrote (and what the old spool's lines held).
pub fn decode(text: &str) -> Result<Notification, serde_json::Error> {
    decode_with_alert_value(text, |n: &mut Notification| &mut n.alert.value)
}

/// `value` (anything holding an alert, whose `alert.value` is `alert_value`) as JSON text,
/// with a non-finite `alert_value` kept at the top level under `"nonfinite_value"`: JSON
/// has no NaN or infinity, serde writes `null`, and `model::Alert::value` cannot read that
/// back. The format of the outbox and of the durable store's saved alerts.
pub fn encode_with_alert_value<T: serde::Serialize>(value: &T, alert_value: f64) -> String {
    // Plain data into memory: cannot fail (a non-finite value becomes null, kept aside).
    let mut json = serde_json::to_value(value).unwrap_or_default();
    if !alert_value.is_finite()
        && let Some(obj) = json.as_object_mut()
    {
        obj.insert(NONFINITE_KEY.into(), alert_value.to_string().into());
    }
    json.to_string()
}

/// Reads what [`encode_with_alert_value`] wrote; `alert_value` says where the value goes.
pub fn decode_with_alert_value<T: serde::de::DeserializeOwned>(
    text: &str,
    alert_value: impl FnOnce(&mut T) -> &mut f64,
) -> Result<T, serde_json::Error> {
    decode_value(serde_json::from_str(text)?, alert_value)
}

fn decode_value<T: serde::de::DeserializeOwned>(
    mut json: serde_json::Value,
    alert_value: impl FnOnce(&mut T) -> &mut f64,
) -> Result<T, serde_json::Error> {
    let nonfinite = json
        .as_object_mut()
        .and_then(|o| o.remove(NONFINITE_KEY))
        .map(|v| {
            v.as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        });
    if nonfinite.is_some()
        && let Some(alert) = json.get_mut("alert").and_then(|a| a.as_object_mut())
    {
        // A placeholder so the alert deserializes; replaced right below.
        alert.insert("value".into(), 0.into());
    }
    let mut out: T = serde_json::from_value(json)?;
    if let Some(v) = nonfinite {
        *alert_value(&mut out) = v;
    }
    Ok(out)
}

/// Why [`import_spool`] could not take a spool file over.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading or renaming the file failed.
    #[error("notification spool {path}: {source}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Writing its entries to the outbox failed; the file was left in place.
    #[error("notification spool {path}: cannot move its entries to the outbox: {source}")]
    Outbox {
        /// The spool file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: OutboxError,
    },
}

/// One line of the spool file older versions wrote at shutdown.
#[derive(Deserialize)]
struct SpoolLine {
    notifier: String,
    notification: serde_json::Value,
    #[serde(default)]
    nonfinite_value: Option<String>,
}

/// Takes over the shutdown spool an older version left at `path` (JSON lines
/// `{"notifier", "notification", "nonfinite_value"?}`): its entries are put in `outbox`,
/// in file order, and the file is renamed to `<path>.imported` so it is read only once.
/// Returns how many entries moved (`Ok(0)` when there is no file). Unreadable lines are
/// skipped with a warning naming the line. If the outbox refuses an entry, the file stays
/// for the next start (entries already moved are not owed twice: the outbox keeps one per
/// notifier and id).
pub fn import_spool(path: &Path, outbox: &dyn Outbox) -> Result<usize, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut moved = 0;
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<SpoolLine>(raw).and_then(|mut line| {
            if let (Some(v), Some(obj)) = (line.nonfinite_value, line.notification.as_object_mut())
            {
                obj.insert(NONFINITE_KEY.into(), v.into());
            }
            Ok((
                line.notifier,
                decode_value(line.notification, |n: &mut Notification| &mut n.alert.value)?,
            ))
        });
        match parsed {
            Ok((notifier, n)) => {
                outbox
                    .put(&n, &[notifier.as_str()])
                    .map_err(|source| ImportError::Outbox {
                        path: path.to_path_buf(),
                        source,
                    })?;
                moved += 1;
            }
            Err(e) => tracing::warn!(
                spool = %path.display(),
                line = i + 1,
                error = %e,
                "skipping an unreadable spool entry"
            ),
        }
    }
    let mut done = path.as_os_str().to_owned();
    done.push(".imported");
    std::fs::rename(path, &done).map_err(io)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{MemoryOutbox, notification};
    use telltale_model::AlertStatus;

    #[test]
    fn encode_and_decode_keep_non_finite_values() {
        for v in [97.5, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            let n = notification("a", v, AlertStatus::Firing);
            assert_eq!(decode(&encode(&n)).unwrap(), n, "{v}");
        }
        let n = notification("n", f64::NAN, AlertStatus::Resolved);
        let text = encode(&n);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(json["alert"]["value"].is_null(), "{text}");
        assert_eq!(json["nonfinite_value"], "NaN");
        let back = decode(&text).unwrap();
        assert!(back.alert.value.is_nan());
        assert_eq!(back.id, "n");
        assert!(decode("{\"id\": 1}").is_err());
    }

    #[test]
    fn an_old_spool_is_imported_once_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notification-spool.jsonl");
        let a = notification("a", 97.5, AlertStatus::Firing);
        let b = notification("b", f64::NEG_INFINITY, AlertStatus::Resolved);
        // The exact lines the spool of earlier versions wrote.
        let mut b_json = serde_json::to_value(&b).unwrap();
        b_json["alert"]["value"] = serde_json::Value::Null;
        let text = format!(
            "{}\n{{not json\n\n{}\n",
            serde_json::json!({"notifier": "ops", "notification": a}),
            serde_json::json!({"notifier": "pager", "notification": b_json, "nonfinite_value": "-inf"}),
        );
        std::fs::write(&path, text).unwrap();
        let outbox = MemoryOutbox::default();
        assert_eq!(import_spool(&path, &outbox).unwrap(), 2);
        let got = outbox.undone().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].notifier.as_str(), &got[0].notification),
            ("ops", &a)
        );
        assert_eq!(got[1].notifier, "pager");
        assert_eq!(got[1].notification.alert.value, f64::NEG_INFINITY);
        assert!(!path.exists());
        assert!(
            dir.path()
                .join("notification-spool.jsonl.imported")
                .exists()
        );
        assert_eq!(
            import_spool(&path, &outbox).unwrap(),
            0,
            "nothing left to import"
        );
    }

    #[test]
    fn a_spool_the_outbox_refuses_stays_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notification-spool.jsonl");
        let a = notification("a", 1.0, AlertStatus::Firing);
        std::fs::write(
            &path,
            format!(
                "{}\n",
                serde_json::json!({"notifier": "ops", "notification": a})
            ),
        )
        .unwrap();
        let outbox = MemoryOutbox::default();
        outbox.set_failing(true);
        let e = import_spool(&path, &outbox).unwrap_err();
        assert!(matches!(e, ImportError::Outbox { .. }), "{e}");
        assert!(path.exists());
        outbox.set_failing(false);
        assert_eq!(import_spool(&path, &outbox).unwrap(), 1);
    }
}
