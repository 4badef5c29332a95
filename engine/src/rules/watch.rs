//! Watching the rules directory for changed rule files.
//!
//! The watch is on the **directory**, not on each file: editors save by writing a temporary
//! file and renaming it over the original, which kills a watch on the file itself.
//! Events are debounced (~200 ms) so one save produces one reload. `Access` events are
//! dropped except `Close(Write)`, otherwise the reloader's own reads would trigger reloads.
//! The watcher only reports *which* rule files changed; [`super::RuleSet::apply_change`]
//! looks at the file as it is now, so the order and number of events do not matter.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

use super::is_rule_file;

/// How long events are collected before one batch is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Capacity of the change channel; a full channel makes the watcher thread wait.
const CHANNEL_CAPACITY: usize = 256;

/// Why the directory could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The path is not a directory (or does not exist).
    #[error("{}: not a directory; rules.dir must name a directory of .rhai files", .0.display())]
    NotADirectory(PathBuf),
    /// The OS watch could not be set up.
    #[error("cannot watch {}: {source}", .path.display())]
    Notify {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
}

/// A running watch on a rules directory. Dropping it stops the watch.
pub struct RuleWatcher {
    dir: PathBuf,
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for RuleWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleWatcher")
            .field("dir", &self.dir)
            .finish()
    }
}

impl RuleWatcher {
    /// Starts watching `dir` (not recursively). Changed rule-file paths (created,
    /// modified, renamed to or from, deleted) arrive on the receiver; when the OS reports
    /// that events were lost, every rule file in the directory is sent.
    pub fn start(dir: &Path) -> Result<(RuleWatcher, mpsc::Receiver<PathBuf>), WatchError> {
        if !dir.is_dir() {
            return Err(WatchError::NotADirectory(dir.to_path_buf()));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let rescan_dir = dir.to_path_buf();
        let handler = move |result: DebounceEventResult| {
            let paths = match result {
                Ok(events) => changed_paths(&events, &rescan_dir),
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(dir = %rescan_dir.display(), "rule watcher: {e}");
                    }
                    // Something may have been missed: let the reloader look at everything.
                    all_rule_files(&rescan_dir)
                }
            };
            for path in paths {
                // This runs on the debouncer's own thread, never inside the runtime, so a
                // blocking send is allowed; it fails only when the receiver is gone.
                if tx.blocking_send(path).is_err() {
                    return;
                }
            }
        };
        let mut debouncer =
            new_debouncer(DEBOUNCE, None, handler).map_err(|source| WatchError::Notify {
                path: dir.to_path_buf(),
                source,
            })?;
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Notify {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok((
            RuleWatcher {
                dir: dir.to_path_buf(),
                _debouncer: debouncer,
            },
            rx,
        ))
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The rule files one batch of events touched, each once, in path order.
fn changed_paths(events: &[notify_debouncer_full::DebouncedEvent], dir: &Path) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for event in events {
        if event.need_rescan() {
            out.extend(all_rule_files(dir));
            continue;
        }
        if may_change_content(&event.kind) {
            out.extend(event.paths.iter().filter(|p| is_rule_file(p)).cloned());
        }
    }
    out.into_iter().collect()
}

/// Whether an event may mean a file's content changed: anything but a read. `Access`
/// events other than `Close(Write)` are the reloader's own reads and would otherwise make
/// every reload trigger another one. Shared with the plugin-file watcher.
pub(crate) fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Every rule file in `dir` (for a rescan); empty when it cannot be read.
fn all_rule_files(dir: &Path) -> Vec<PathBuf> {
    super::rule_files(dir).unwrap_or_default()
}
