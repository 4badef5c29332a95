//! Reload requests for plugin tasks: a changed `.wasm` file on disk, or an operator's
//! SIGHUP.
//!
//! The watch is on the **directories** of the configured plugin files, not the files: a
//! file watch dies when the file is replaced by a rename (how editors, `cp` to a temporary
//! name + `mv`, and deploy tools install files). Events are debounced and reads
//! filtered out by [`telltale_watch`], as for rule files, and broadcast as
//! [`Reload::File`] with the file's canonical path; each plugin task compares it with its
//! own [`watch_key`] and re-checks the file's content, so extra events are harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tokio::sync::broadcast;
use tracing::warn;

use telltale_watch::{Changes, DirWatch};

/// A request to a plugin task to load its plugin again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reload {
    /// This plugin file (canonical path) may have changed.
    File(PathBuf),
    /// The operator asked every plugin to reload (SIGHUP): quarantines are lifted.
    Operator,
}

/// How many reload requests may wait per task before the oldest are dropped (a task that
/// lags re-checks its file, so nothing is lost).
pub(crate) const RELOAD_CHANNEL: usize = 64;

/// The path the watcher reports for `file`: its directory made canonical (symlinks and
/// `..` resolved) joined with its file name. `None` when the directory does not exist.
pub(crate) fn watch_key(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(dir.canonicalize().ok()?.join(name))
}

/// A running watch on the directories of the plugin files. Dropping it stops the watch.
pub(crate) struct PluginWatcher {
    _watch: DirWatch,
}

impl PluginWatcher {
    /// Watches the directory of every file in `files` (canonical paths, see
    /// [`watch_key`]) and broadcasts changes to them on `tx`. Directories that cannot be
    /// watched are logged and skipped; `None` when no watch could be set up at all.
    pub(crate) fn start(
        files: &BTreeSet<PathBuf>,
        tx: broadcast::Sender<Reload>,
    ) -> Option<PluginWatcher> {
        let mut by_dir: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for f in files {
            if let Some(dir) = f.parent() {
                by_dir
                    .entry(dir.to_path_buf())
                    .or_default()
                    .insert(f.clone());
            }
        }
        if by_dir.is_empty() {
            return None;
        }
        let watched = files.clone();
        let handler = move |changes: Changes| {
            let changed: Vec<PathBuf> = match changes {
                Changes::Paths(paths) => {
                    paths.into_iter().filter(|p| watched.contains(p)).collect()
                }
                // Something may have been missed: let every task look at its file.
                Changes::Rescan => watched.iter().cloned().collect(),
            };
            for path in changed {
                // Fails only when no task listens any more (shutting down).
                let _ = tx.send(Reload::File(path));
            }
        };
        let mut watch = match DirWatch::start("plugin file watcher", handler) {
            Ok(w) => w,
            Err(e) => {
                warn!("plugin files will not be reloaded on change: {e}");
                return None;
            }
        };
        let mut any = false;
        for (dir, files) in &by_dir {
            match watch.watch(dir) {
                Ok(()) => any = true,
                Err(e) => warn!(
                    dir = %dir.display(),
                    "cannot watch {} for changes ({e}); reload with SIGHUP instead",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        any.then_some(PluginWatcher { _watch: watch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use telltale_watch::DEBOUNCE;

    /// A real directory, real files, a real OS watch: an atomic rename over a plugin file
    /// is reported under the file's key; other files in the directory are not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_a_renamed_over_plugin_file_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("p.wasm");
        std::fs::write(&plugin, b"v1").unwrap();
        let key = watch_key(&plugin).unwrap();
        let (tx, mut rx) = broadcast::channel(RELOAD_CHANNEL);
        let _w = PluginWatcher::start(&BTreeSet::from([key.clone()]), tx).unwrap();

        std::fs::write(dir.path().join("other.wasm"), b"x").unwrap();
        let tmp = dir.path().join("p.wasm.tmp");
        std::fs::write(&tmp, b"v2").unwrap();
        std::fs::rename(&tmp, &plugin).unwrap();

        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a change within 10s")
            .unwrap();
        assert_eq!(got, Reload::File(key));
        // Nothing about the other file, even after another debounce period.
        let more = tokio::time::timeout(DEBOUNCE * 3, rx.recv()).await;
        assert!(
            !matches!(&more, Ok(Ok(Reload::File(p))) if p.ends_with("other.wasm")),
            "{more:?}"
        );
    }

    #[test]
    fn keys_resolve_relative_dirs_and_need_an_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a");
        std::fs::create_dir(&sub).unwrap();
        let via_dotdot = sub.join("../a/x.wasm");
        assert_eq!(
            watch_key(&via_dotdot).unwrap(),
            dir.path().canonicalize().unwrap().join("a/x.wasm")
        );
        assert!(watch_key(&dir.path().join("missing/x.wasm")).is_none());
    }
}
