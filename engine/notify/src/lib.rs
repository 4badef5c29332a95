//! The notify stage: delivers [`Notification`]s to notifiers (console, webhook).
//!
//! ```text
//! DispatcherHandle::send_to ──▶ Outbox::put ──▶ [bounded queue] ──▶ worker (one per notifier) ──▶ dyn Notifier
//!                                       │                                   │ delivered, given up
//!                                       │                                   ▼
//!                                       │                              Outbox::done
//!                                       └──▶ what is not done when the process stops:
//!                                            re-queued by the next Dispatcher::start
//! ```
//!
//! Each notifier has its own task and bounded queue, so a slow or dead receiver delays only
//! itself; within one notifier delivery is in order. [`DispatcherHandle::send`] never waits
//! for a notifier: when a notifier's queue is full the notification is dropped for that
//! notifier, logged and counted. Delivery is at-least-once; receivers dedupe on the
//! notification id.
//!
//! Which notifiers get a notification is the alert manager's decision (`telltale-routing`,
//! the routing tree of the `alerting:` config); the dispatcher delivers where it is told.
//!
//! With an [`Outbox`] (the store's database, wired by the pipeline), every (notifier,
//! notification) pair is
//! written to it **before** it is queued and marked done when the notifier delivered it,
//! gave up on it, or never got it (a full queue). Whatever is not done when the process
//! stops (a shutdown past its grace period, a crash, `kill -9`) is delivered by the next
//! [`Dispatcher::start`], first and in order. An outbox that fails (a full disk) never
//! stops delivery: such a notification is delivered at most once. Without an outbox
//! (`store.enabled: false`) what is undelivered when the process stops is lost.
//!
//! Every kind implements [`Notifier`] (name, kind, deliver one notification with its retries)
//! and [`notifier::build`] is the one place a configured kind becomes one; the dispatcher
//! knows no kind. The config is expected to have passed `telltale_config::check`, which
//! holds every rule about notifier settings (with positions): nothing here validates them
//! again.
//!
//! Files: [`notifier`] (the trait, [`Delivery`], the builder), [`payload`] (the versioned
//! JSON body and its schema), [`signing`] (Standard Webhooks signatures), [`webhook`] (HTTP
//! delivery and retries), [`console`], [`preview`] (what a notifier would send), [`outbox`]
//! (the [`Outbox`] trait, the stored JSON form, the old spool's import).

pub mod alertmanager;
pub mod console;
pub mod notifier;
pub mod outbox;
pub mod payload;
pub mod preview;
pub mod signing;
pub mod webhook;

#[cfg(test)]
mod testutil;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use telltale_config::NotifierConfig;
use telltale_model::Notification;

pub use console::ConsoleNotifier;
pub use notifier::{Delivery, DeliveryFuture, Notifier};
pub use outbox::{Outbox, OutboxEntry, OutboxError, Outcome};
pub use payload::WebhookPayload;
pub use preview::{Preview, RequestPreview};
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

/// Notifiers, built and not yet running. See [`Dispatcher::start`].
#[derive(Debug)]
pub struct Dispatcher {
    notifiers: Vec<Arc<dyn Notifier>>,
    outbox: Option<Arc<dyn Outbox>>,
    queue_capacity: usize,
}

impl Dispatcher {
    /// Builds every configured notifier ([`notifier::build`]). The notifiers are expected
    /// to have passed `telltale_config::check` (names unique, each kind's settings valid).
    /// No outbox until [`Dispatcher::with_outbox`].
    pub fn new(notifiers: &[NotifierConfig]) -> Result<Dispatcher, NotifyError> {
        let built = notifiers
            .iter()
            .enumerate()
            .map(|(i, cfg)| notifier::build(i, cfg).map(Arc::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dispatcher::with_notifiers(built))
    }

    /// A dispatcher over notifiers built elsewhere (any [`Notifier`]), in configuration
    /// order.
    pub fn with_notifiers(notifiers: Vec<Arc<dyn Notifier>>) -> Dispatcher {
        Dispatcher {
            notifiers,
            outbox: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Keeps every routed notification in `outbox` until its notifier is done with it, and
    /// delivers what a previous run left undone there at [`Dispatcher::start`].
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Dispatcher {
        self.outbox = Some(outbox);
        self
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

    /// Starts one worker task per notifier. With an outbox, the entries a previous run left
    /// undone are delivered first, in order, each by the notifier of the same name; entries
    /// of notifiers no longer configured are logged and marked dropped. Must be called
    /// inside a Tokio runtime.
    pub fn start(self) -> DispatcherHandle {
        let mut backlogs = self.backlogs();
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
                self.outbox.clone(),
            ));
        }
        DispatcherHandle {
            inner: Arc::new(Inner {
                senders: RwLock::new(Some(senders)),
                lanes,
                workers: Mutex::new(Some(workers)),
                abort: abort_tx,
                outbox: self.outbox,
                capacity: self.queue_capacity,
            }),
        }
    }

    /// What the outbox holds undone, per configured notifier.
    fn backlogs(&self) -> HashMap<String, VecDeque<Queued>> {
        let mut backlogs: HashMap<String, VecDeque<Queued>> = HashMap::new();
        let Some(outbox) = &self.outbox else {
            return backlogs;
        };
        let entries = match outbox.undone() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "cannot read the notification outbox; what it holds stays there for the next start"
                );
                return backlogs;
            }
        };
        let total = entries.len();
        for e in entries {
            if self.notifiers.iter().any(|n| n.name() == e.notifier) {
                backlogs.entry(e.notifier).or_default().push_back(Queued {
                    n: Arc::new(e.notification),
                    kept: true,
                });
            } else {
                tracing::warn!(
                    notifier = %e.notifier,
                    id = %e.notification.id,
                    alert = %e.notification.alert.rule,
                    "undelivered notification from the previous run dropped: no notifier of that name is configured any more"
                );
                // On failure it stays undone and is skipped again next start, said again.
                let _ = outbox.done(&e.notifier, &e.notification.id, Outcome::Dropped);
            }
        }
        if total > 0 {
            let queued: usize = backlogs.values().map(VecDeque::len).sum();
            tracing::info!(
                entries = queued,
                "re-queued notifications the previous run did not deliver"
            );
        }
        backlogs
    }
}

/// A notification in a notifier's queue.
#[derive(Debug, Clone)]
struct Queued {
    n: Arc<Notification>,
    /// Whether the outbox holds it (so that an undelivered one is not lost at a stop).
    kept: bool,
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
    /// `None` once shutdown began: nothing more is accepted.
    senders: RwLock<Option<HashMap<String, mpsc::Sender<Queued>>>>,
    lanes: Vec<Lane>,
    /// Taken by the first shutdown.
    workers: Mutex<Option<JoinSet<WorkerResult>>>,
    abort: watch::Sender<bool>,
    outbox: Option<Arc<dyn Outbox>>,
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
    /// Undelivered notifications left undone in the outbox: the next start delivers them.
    pub kept: usize,
    /// Undelivered notifications lost: no outbox, or the outbox could not be written when
    /// they were sent. A crashed worker counts one here (what it held stays in the
    /// outbox, if any).
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
    /// [`DispatcherHandle::send_to`] every notifier.
    pub fn send(&self, n: Notification) -> usize {
        let all: Vec<&str> = self.inner.lanes.iter().map(|l| l.name.as_str()).collect();
        self.send_to(n, &all)
    }

    /// Writes a notification to the outbox (if any) for each notifier named in `targets`
    /// (the alert manager decided them), then queues it for each. Waits for no notifier: a
    /// full queue drops the notification for that notifier (logged, counted in `dropped`,
    /// marked dropped in the outbox). A name that is not a configured notifier is skipped
    /// (the config check refuses such names). Returns how many notifiers it was queued for.
    pub fn send_to(&self, n: Notification, targets: &[&str]) -> usize {
        if targets.is_empty() {
            tracing::debug!(id = %n.id, alert = %n.alert.rule, "no notifier to deliver to");
            return 0;
        }
        let n = Arc::new(n);
        let senders = self.inner.senders.read();
        let lanes: Vec<&Lane> = targets
            .iter()
            .filter_map(|name| self.inner.lanes.iter().find(|l| l.name == *name))
            .collect();
        let Some(senders) = senders.as_ref() else {
            for lane in lanes {
                self.dropped(lane, &n, "dispatcher is shutting down");
            }
            return 0;
        };
        let kept = match &self.inner.outbox {
            Some(outbox) => {
                let names: Vec<&str> = lanes.iter().map(|l| l.name.as_str()).collect();
                match outbox.put(&n, &names) {
                    Ok(()) => true,
                    Err(e) => {
                        // The outbox logged it (rate-limited); delivery goes on regardless.
                        tracing::debug!(id = %n.id, alert = %n.alert.rule, error = %e, "not in the outbox: delivered at most once");
                        false
                    }
                }
            }
            None => false,
        };
        let mut queued = 0;
        for lane in lanes {
            let item = Queued { n: n.clone(), kept };
            let result = match senders.get(&lane.name) {
                Some(tx) => tx.try_send(item).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "queue full",
                    mpsc::error::TrySendError::Closed(_) => "worker stopped",
                }),
                None => Err("worker stopped"),
            };
            match result {
                Ok(()) => queued += 1,
                Err(reason) => {
                    self.dropped(lane, &n, reason);
                    if kept && let Some(outbox) = &self.inner.outbox {
                        let _ = outbox.done(&lane.name, &n.id, Outcome::Dropped);
                    }
                }
            }
        }
        queued
    }

    /// Counts and logs a notification dropped for one notifier.
    fn dropped(&self, lane: &Lane, n: &Notification, reason: &str) {
        lane.counters.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            notifier = %lane.name,
            id = %n.id,
            alert = %n.alert.rule,
            status = n.status.as_str(),
            reason,
            capacity = self.inner.capacity,
            "notification dropped"
        );
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
    /// up to `grace`, then stops them. What is still undelivered (queued or mid-retry)
    /// stays undone in the outbox for the next start; without an outbox it is lost, and
    /// logged. Affects every clone of the handle; a second call returns an empty report.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        // Dropping the senders closes the queues: workers finish what is queued, then exit.
        drop(self.inner.senders.write().take());
        let workers = self.inner.workers.lock().take();
        let (mut kept, mut lost) = (0, 0);
        let mut timed_out = false;
        if let Some(mut workers) = workers {
            let deadline = tokio::time::sleep(grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    joined = workers.join_next() => match joined {
                        Some(Ok((notifier, rest))) => {
                            for q in rest {
                                if q.kept {
                                    kept += 1;
                                } else {
                                    lost += 1;
                                    tracing::error!(notifier = %notifier, id = %q.n.id, alert = %q.n.alert.rule, "undelivered at shutdown and not in an outbox; lost");
                                }
                            }
                        }
                        Some(Err(e)) => {
                            lost += 1;
                            tracing::error!(error = %e, "a notifier worker crashed; what it held is lost unless the outbox keeps it");
                        }
                        None => break,
                    },
                    () = &mut deadline, if !timed_out => {
                        timed_out = true;
                        tracing::warn!(?grace, "shutdown grace period over; stopping delivery");
                        // Workers see this at their next await point and hand back what they hold.
                        let _ = self.inner.abort.send(true);
                    }
                }
            }
        }
        if kept > 0 {
            tracing::info!(
                entries = kept,
                "undelivered notifications left in the outbox for the next start"
            );
        }
        ShutdownReport {
            timed_out,
            kept,
            lost,
            stats: self.stats(),
        }
    }
}

/// What a worker hands back when it ends: its notifier's name and what it did not deliver.
type WorkerResult = (String, Vec<Queued>);

/// Resolves once shutdown asks workers to stop; never if the dispatcher was dropped
/// without a shutdown (then the closed queue ends the worker instead).
async fn aborted(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One notifier's loop: backlog (from the outbox) first, then the queue, in order. Marks
/// each notification done in the outbox once delivered or given up. Returns what it could
/// not deliver when told to stop.
async fn worker(
    notifier: Arc<dyn Notifier>,
    mut backlog: VecDeque<Queued>,
    mut rx: mpsc::Receiver<Queued>,
    mut abort: watch::Receiver<bool>,
    counters: Arc<Counters>,
    outbox: Option<Arc<dyn Outbox>>,
) -> WorkerResult {
    let mut left = Vec::new();
    loop {
        let next = match backlog.pop_front() {
            Some(q) => q,
            None => tokio::select! {
                biased;
                () = aborted(&mut abort) => break,
                m = rx.recv() => match m {
                    Some(q) => q,
                    None => return (notifier.name().to_string(), left),
                },
            },
        };
        let outcome = tokio::select! {
            biased;
            () = aborted(&mut abort) => {
                left.push(next);
                break;
            }
            delivery = notifier.deliver(&next.n) => match delivery {
                Delivery::Delivered { .. } => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    Outcome::Delivered
                }
                Delivery::Failed { .. } => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    Outcome::Failed
                }
            },
        };
        if let Some(outbox) = outbox.as_ref().filter(|_| next.kept) {
            let (outbox, name, id) = (
                outbox.clone(),
                notifier.name().to_string(),
                next.n.id.clone(),
            );
            // A disk write; off the runtime's threads. Unmarked, it is delivered again by
            // the next start (at least once), and the outbox has logged why.
            let _ = tokio::task::spawn_blocking(move || outbox.done(&name, &id, outcome)).await;
        }
    }
    left.extend(backlog);
    rx.close();
    while let Ok(q) = rx.try_recv() {
        left.push(q);
    }
    (notifier.name().to_string(), left)
}

#[cfg(test)]
mod tests;
