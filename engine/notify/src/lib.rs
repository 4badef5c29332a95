//! The notify stage: delivers [`Notification`]s to notifiers (console, webhook).
//!
//! ```text
//! DispatcherHandle::send ──route──▶ [bounded queue] ──▶ worker (one per notifier) ──▶ dyn Notifier
//!                                                         │ on shutdown after the grace period
//!                                                         └──▶ spool file ──▶ re-queued by the next start
//! ```
//!
//! Each notifier has its own task and bounded queue, so a slow or dead receiver delays only
//! itself; within one notifier delivery is in order. [`DispatcherHandle::send`] never waits:
//! when a notifier's queue is full the notification is dropped for that notifier, logged and
//! counted. Delivery is at-least-once; receivers dedupe on the notification id.
//!
//! Every kind implements [`Notifier`] (name, kind, deliver one notification with its retries)
//! and [`notifier::build`] is the one place a configured kind becomes one; the dispatcher
//! knows no kind. The config is expected to have passed `telltale_config::check`, which
//! holds every rule about notifier settings (with positions): nothing here validates them
//! again.
//!
//! Files: [`notifier`] (the trait, [`Delivery`], the builder), [`payload`] (the versioned
//! JSON body and its schema), [`signing`] (Standard Webhooks signatures), [`webhook`] (HTTP
//! delivery and retries), [`console`], [`route`] (which notifiers get an alert), [`spool`]
//! (undelivered notifications across restarts).

pub mod console;
pub mod notifier;
pub mod payload;
pub mod route;
pub mod signing;
pub mod spool;
pub mod webhook;

#[cfg(test)]
mod testutil;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use telltale_config::{NotifierConfig, RouteConfig};
use telltale_model::Notification;

pub use console::ConsoleNotifier;
pub use notifier::{Delivery, DeliveryFuture, Notifier};
pub use payload::WebhookPayload;
pub use route::Router;
pub use signing::{SigningKey, verify};
pub use webhook::WebhookNotifier;

/// How many notifications may wait for one notifier before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// A notifier that could not be built (see [`notifier::build`]): only what the config's
/// check cannot know, such as an HTTP client that cannot be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("notifiers[{index}] (`{name}`): {message}")]
pub struct NotifyError {
    /// Position in the `notifiers` list.
    pub index: usize,
    /// Its `name`.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// Notifiers and routes, built and not yet running. See [`Dispatcher::start`].
#[derive(Debug)]
pub struct Dispatcher {
    notifiers: Vec<Arc<dyn Notifier>>,
    router: Router,
    spool_path: Option<PathBuf>,
    queue_capacity: usize,
}

impl Dispatcher {
    /// Builds every configured notifier ([`notifier::build`]) and the router. The notifiers
    /// and routes are expected to have passed `telltale_config::check` (names unique, routes
    /// naming configured notifiers, each kind's settings valid). `spool_path` is where
    /// undelivered notifications are kept across a restart (`None`: they are logged as lost).
    pub fn new(
        notifiers: &[NotifierConfig],
        routes: &[RouteConfig],
        spool_path: Option<PathBuf>,
    ) -> Result<Dispatcher, NotifyError> {
        let built = notifiers
            .iter()
            .enumerate()
            .map(|(i, cfg)| notifier::build(i, cfg).map(Arc::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dispatcher::with_notifiers(built, routes, spool_path))
    }

    /// A dispatcher over notifiers built elsewhere (any [`Notifier`], in the order that
    /// routes without a match fall back to).
    pub fn with_notifiers(
        notifiers: Vec<Arc<dyn Notifier>>,
        routes: &[RouteConfig],
        spool_path: Option<PathBuf>,
    ) -> Dispatcher {
        let names = notifiers.iter().map(|n| n.name().to_string()).collect();
        Dispatcher {
            router: Router::new(routes, names),
            notifiers,
            spool_path,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Changes the per-notifier queue capacity (at least 1).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Dispatcher {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// The configured notifier names, in configuration order.
    pub fn notifier_names(&self) -> Vec<&str> {
        self.notifiers.iter().map(|n| n.name()).collect()
    }

    /// Starts one worker task per notifier. Spooled notifications from a previous run are
    /// read, removed from disk and delivered first, to the notifier of the same name
    /// (entries for notifiers that no longer exist are skipped with a warning).
    /// Must be called inside a Tokio runtime.
    pub fn start(self) -> DispatcherHandle {
        let mut backlogs: HashMap<String, VecDeque<Arc<Notification>>> = HashMap::new();
        if let Some(path) = &self.spool_path {
            match spool::take(path) {
                Ok(entries) => {
                    let total = entries.len();
                    for e in entries {
                        if self.notifiers.iter().any(|n| n.name() == e.notifier) {
                            backlogs
                                .entry(e.notifier)
                                .or_default()
                                .push_back(Arc::new(e.notification));
                        } else {
                            tracing::warn!(
                                notifier = %e.notifier,
                                id = %e.notification.id,
                                alert = %e.notification.alert.rule,
                                "spooled notification skipped: no notifier of that name is configured any more"
                            );
                        }
                    }
                    if total > 0 {
                        tracing::info!(spool = %path.display(), entries = total, "re-queued spooled notifications");
                    }
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "cannot read the notification spool; it is left in place for the next start"
                ),
            }
        }
        let (abort_tx, abort_rx) = watch::channel(false);
        let mut workers = JoinSet::new();
        let mut senders = HashMap::new();
        let mut lanes = Vec::new();
        for notifier in &self.notifiers {
            let (tx, rx) = mpsc::channel(self.queue_capacity);
            let counters = Arc::new(Counters::default());
            lanes.push(Lane {
                name: notifier.name().to_string(),
                kind: notifier.kind(),
                counters: counters.clone(),
            });
            senders.insert(notifier.name().to_string(), tx);
            let backlog = backlogs.remove(notifier.name()).unwrap_or_default();
            workers.spawn(worker(
                notifier.clone(),
                backlog,
                rx,
                abort_rx.clone(),
                counters,
            ));
        }
        DispatcherHandle {
            inner: Arc::new(Inner {
                router: self.router,
                senders: RwLock::new(Some(senders)),
                lanes,
                workers: Mutex::new(Some(workers)),
                abort: abort_tx,
                spool_path: self.spool_path,
                capacity: self.queue_capacity,
            }),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Lane {
    name: String,
    kind: &'static str,
    counters: Arc<Counters>,
}

struct Inner {
    router: Router,
    /// `None` once shutdown began: nothing more is accepted.
    senders: RwLock<Option<HashMap<String, mpsc::Sender<Arc<Notification>>>>>,
    lanes: Vec<Lane>,
    /// Taken by the first shutdown.
    workers: Mutex<Option<JoinSet<WorkerResult>>>,
    abort: watch::Sender<bool>,
    spool_path: Option<PathBuf>,
    capacity: usize,
}

/// Counters of one notifier, for status pages and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifierStats {
    /// The notifier's name.
    pub name: String,
    /// The notifier's kind (`console`, `webhook`).
    pub kind: &'static str,
    /// Notifications delivered.
    pub delivered: u64,
    /// Notifications given up on (retries exhausted or rejected by the receiver).
    pub failed: u64,
    /// Notifications dropped because the queue was full or the dispatcher shut down.
    pub dropped: u64,
    /// Notifications waiting in the queue now (0 after shutdown).
    pub queued: usize,
}

/// What [`DispatcherHandle::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether the grace period ran out before every queue was empty.
    pub timed_out: bool,
    /// Notifications written to the spool for the next start.
    pub spooled: usize,
    /// Notifications lost: no spool configured, the spool could not be written, or a worker
    /// crashed.
    pub lost: usize,
    /// Final counters.
    pub stats: Vec<NotifierStats>,
}

/// A running dispatcher. Cheap to clone; all clones feed the same workers.
#[derive(Clone)]
pub struct DispatcherHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("notifiers", &self.inner.lanes)
            .finish_non_exhaustive()
    }
}

impl DispatcherHandle {
    /// Routes a notification and queues it for each target notifier. Never waits: a full
    /// queue drops the notification for that notifier (logged and counted in `dropped`).
    /// Returns how many notifiers it was queued for.
    pub fn send(&self, n: Notification) -> usize {
        let targets = self.inner.router.targets(&n.alert);
        if targets.is_empty() {
            tracing::debug!(id = %n.id, alert = %n.alert.rule, "no notifier to deliver to (none configured, or muted by a route)");
            return 0;
        }
        let n = Arc::new(n);
        let senders = self.inner.senders.read();
        let mut queued = 0;
        for name in targets {
            let Some(lane) = self.inner.lanes.iter().find(|l| l.name == name) else {
                continue;
            };
            let result = match senders.as_ref().and_then(|s| s.get(name)) {
                Some(tx) => tx.try_send(n.clone()).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "queue full",
                    mpsc::error::TrySendError::Closed(_) => "worker stopped",
                }),
                None => Err("dispatcher is shutting down"),
            };
            match result {
                Ok(()) => queued += 1,
                Err(reason) => {
                    lane.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        notifier = %name,
                        id = %n.id,
                        alert = %n.alert.rule,
                        status = n.status.as_str(),
                        reason,
                        capacity = self.inner.capacity,
                        "notification dropped"
                    );
                }
            }
        }
        queued
    }

    /// A snapshot of every notifier's counters, in configuration order.
    pub fn stats(&self) -> Vec<NotifierStats> {
        let senders = self.inner.senders.read();
        self.inner
            .lanes
            .iter()
            .map(|l| NotifierStats {
                name: l.name.clone(),
                kind: l.kind,
                delivered: l.counters.delivered.load(Ordering::Relaxed),
                failed: l.counters.failed.load(Ordering::Relaxed),
                dropped: l.counters.dropped.load(Ordering::Relaxed),
                queued: senders
                    .as_ref()
                    .and_then(|s| s.get(&l.name))
                    .map(|tx| tx.max_capacity() - tx.capacity())
                    .unwrap_or(0),
            })
            .collect()
    }

    /// Stops accepting notifications, lets workers deliver what is queued and in flight for
    /// up to `grace`, then stops them and appends everything still undelivered (queued or
    /// mid-retry) to the spool. Affects every clone of the handle; a second call returns an
    /// empty report.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        // Dropping the senders closes the queues: workers finish what is queued, then exit.
        drop(self.inner.senders.write().take());
        let workers = self.inner.workers.lock().take();
        let mut left: Vec<spool::SpoolEntry> = Vec::new();
        let mut lost = 0;
        let mut timed_out = false;
        if let Some(mut workers) = workers {
            let deadline = tokio::time::sleep(grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    joined = workers.join_next() => match joined {
                        Some(Ok((notifier, rest))) => left.extend(rest.into_iter().map(|n| spool::SpoolEntry {
                            notifier: notifier.clone(),
                            notification: Arc::unwrap_or_clone(n),
                        })),
                        Some(Err(e)) => {
                            // Its queue went with it; nothing to spool, and say so.
                            lost += 1;
                            tracing::error!(error = %e, "a notifier worker crashed; its queued notifications are lost");
                        }
                        None => break,
                    },
                    () = &mut deadline, if !timed_out => {
                        timed_out = true;
                        tracing::warn!(?grace, "shutdown grace period over; spooling undelivered notifications");
                        // Workers see this at their next await point and hand back what they hold.
                        let _ = self.inner.abort.send(true);
                    }
                }
            }
        }
        let mut spooled = 0;
        if !left.is_empty() {
            match &self.inner.spool_path {
                Some(path) => match spool::append(path, &left) {
                    Ok(()) => {
                        spooled = left.len();
                        tracing::info!(spool = %path.display(), entries = spooled, "undelivered notifications spooled for the next start");
                    }
                    Err(e) => {
                        lost += left.len();
                        tracing::error!(error = %e, lost = left.len(), "cannot write the notification spool; undelivered notifications are lost");
                    }
                },
                None => {
                    lost += left.len();
                    for e in &left {
                        tracing::error!(notifier = %e.notifier, id = %e.notification.id, alert = %e.notification.alert.rule, "undelivered at shutdown and no spool configured; lost");
                    }
                }
            }
        }
        ShutdownReport {
            timed_out,
            spooled,
            lost,
            stats: self.stats(),
        }
    }
}

/// What a worker hands back when it ends: its notifier's name and what it did not deliver.
type WorkerResult = (String, Vec<Arc<Notification>>);

/// Resolves once shutdown asks workers to stop; never if the dispatcher was dropped
/// without a shutdown (then the closed queue ends the worker instead).
async fn aborted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One notifier's loop: backlog (from the spool) first, then the queue, in order. Returns
/// what it could not deliver when told to stop.
async fn worker(
    notifier: Arc<dyn Notifier>,
    mut backlog: VecDeque<Arc<Notification>>,
    mut rx: mpsc::Receiver<Arc<Notification>>,
    mut abort: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> WorkerResult {
    let mut left = Vec::new();
    loop {
        let next = match backlog.pop_front() {
            Some(n) => n,
            None => tokio::select! {
                biased;
                () = aborted(&mut abort) => break,
                m = rx.recv() => match m {
                    Some(n) => n,
                    None => return (notifier.name().to_string(), left),
                },
            },
        };
        tokio::select! {
            biased;
            () = aborted(&mut abort) => {
                left.push(next);
                break;
            }
            outcome = notifier.deliver(&next) => {
                let c = match outcome {
                    Delivery::Delivered { .. } => &counters.delivered,
                    Delivery::Failed { .. } => &counters.failed,
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    left.extend(backlog);
    rx.close();
    while let Ok(n) = rx.try_recv() {
        left.push(n);
    }
    (notifier.name().to_string(), left)
}

#[cfg(test)]
mod tests;
