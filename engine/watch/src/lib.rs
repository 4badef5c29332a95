//! Noticing when files an operator edits change on disk: rule files and plugin files.
//!
//! Owns the one way Telltale watches files, [`DirWatch`]. Invariants:
//! * The watch is on **directories**, never on files: editors, `cp` + `mv` and deploy
//!   tools replace a file by renaming another over it, which kills a watch on the file.
//! * Events are debounced ([`DEBOUNCE`]) so one save is reported once.
//! * Reads are never reported (`Access` events other than `Close(Write)`): the reloader's
//!   own reads would otherwise make every reload trigger another one.
//! * When the OS reports that events were lost, the handler is told to look at
//!   everything ([`Changes::Rescan`]) instead of being given a partial list.
//!
//! It only says *which* paths may have changed; callers look at the files as they are
//! now, so the order and number of reports do not matter.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// How long events are collected before one batch is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The error of the OS watch (`notify`'s).
pub type Error = notify::Error;

/// One debounced batch of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// These paths (in the watched directories) may have changed: created, written,
    /// renamed to or from, or deleted.
    Paths(BTreeSet<PathBuf>),
    /// Events were lost: any file in the watched directories may have changed.
    Rescan,
}

/// A running watch on some directories. Dropping it stops the watch.
pub struct DirWatch {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatch").finish_non_exhaustive()
    }
}

impl DirWatch {
    /// Starts a watch that watches nothing yet; add directories with [`DirWatch::watch`].
    /// `handler` runs on the watch's own thread (never inside an async runtime, so it may
    /// block) with each batch; `what` names the watch in the warnings it logs.
    pub fn start(
        what: &'static str,
        mut handler: impl FnMut(Changes) + Send + 'static,
    ) -> Result<DirWatch, Error> {
        let debouncer =
            new_debouncer(
                DEBOUNCE,
                None,
                move |result: DebounceEventResult| match result {
                    Ok(events) => {
                        if events.iter().any(|e| e.need_rescan()) {
                            return handler(Changes::Rescan);
                        }
                        let paths: BTreeSet<PathBuf> = events
                            .iter()
                            .filter(|e| may_change_content(&e.kind))
                            .flat_map(|e| e.paths.iter().cloned())
                            .collect();
                        if !paths.is_empty() {
                            handler(Changes::Paths(paths));
                        }
                    }
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!("{what}: {e}");
                        }
                        handler(Changes::Rescan);
                    }
                },
            )?;
        Ok(DirWatch { debouncer })
    }

    /// Watches `dir` (not recursively).
    pub fn watch(&mut self, dir: &Path) -> Result<(), Error> {
        self.debouncer.watch(dir, RecursiveMode::NonRecursive)
    }
}

/// Whether an event may mean a file's content changed: anything but a read.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A real directory and a real OS watch: an atomic rename over a file is reported,
    /// and reading a file is not.
    #[test]
    fn reports_a_rename_over_a_file_and_not_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, b"v1").unwrap();
        let (tx, rx) = mpsc::channel();
        let mut w = DirWatch::start("test watch", move |c| {
            let _ = tx.send(c);
        })
        .unwrap();
        w.watch(dir.path()).unwrap();

        let tmp = dir.path().join("f.txt.tmp");
        std::fs::write(&tmp, b"v2").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).expect("a batch");
        let Changes::Paths(paths) = got else {
            panic!("{got:?}")
        };
        assert!(paths.iter().any(|p| p.ends_with("f.txt")), "{paths:?}");

        // Drain, then read only: nothing is reported.
        while rx.recv_timeout(DEBOUNCE * 3).is_ok() {}
        let _ = std::fs::read(&file).unwrap();
        assert!(
            rx.recv_timeout(DEBOUNCE * 3).is_err(),
            "a read was reported"
        );
    }

    #[test]
    fn reads_are_not_changes() {
        assert!(!may_change_content(&EventKind::Access(AccessKind::Read)));
        assert!(!may_change_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(may_change_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change_content(&EventKind::Any));
    }
}
