//! Watching the rules directory for changed rule files, through [`telltale_watch`]
//! (a debounced, rename-safe watch on the directory that ignores reads).
//! The watcher only reports *which* rule files changed; [`super::RuleSet::apply_change`]
//! looks at the file as it is now, so the order and number of events do not matter.

use std::path::{Path, PathBuf};

use telltale_watch::{Changes, DirWatch};
use tokio::sync::mpsc;

use super::is_rule_file;

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
        source: telltale_watch::Error,
    },
}

/// A running watch on a rules directory. Dropping it stops the watch.
#[derive(Debug)]
pub struct RuleWatcher {
    dir: PathBuf,
    _watch: DirWatch,
}

impl RuleWatcher {
    /// Starts watching `dir` (not recursively). Changed rule-file paths (created,
    /// modified, renamed to or from, deleted) arrive on the receiver, each once per batch
    /// in path order; when the OS reports that events were lost, every rule file in the
    /// directory is sent.
    pub fn start(dir: &Path) -> Result<(RuleWatcher, mpsc::Receiver<PathBuf>), WatchError> {
        if !dir.is_dir() {
            return Err(WatchError::NotADirectory(dir.to_path_buf()));
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let rescan_dir = dir.to_path_buf();
        let handler = move |changes: Changes| {
            let paths = match changes {
                Changes::Paths(paths) => paths.into_iter().filter(|p| is_rule_file(p)).collect(),
                // Something may have been missed: let the reloader look at everything.
                Changes::Rescan => super::rule_files(&rescan_dir).unwrap_or_default(),
            };
            for path in paths {
                // This runs on the watch's own thread, never inside the runtime, so a
                // blocking send is allowed; it fails only when the receiver is gone.
                if tx.blocking_send(path).is_err() {
                    return;
                }
            }
        };
        let notify = |source| WatchError::Notify {
            path: dir.to_path_buf(),
            source,
        };
        let mut watch = DirWatch::start("rule watcher", handler).map_err(notify)?;
        watch.watch(dir).map_err(notify)?;
        Ok((
            RuleWatcher {
                dir: dir.to_path_buf(),
                _watch: watch,
            },
            rx,
        ))
    }

    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
