//! What every notifier kind provides ([`Notifier`]), and the one place a configured kind
//! becomes one ([`build`]).
//!
//! Adding a kind (email, Slack, …) is an arm in `telltale_config::NotifierKind` with its
//! settings module, a module here with a type implementing [`Notifier`], and its arm in
//! [`build`] (the compiler asks for it). The dispatcher, its queues, the outbox and the
//! routes work on `dyn Notifier` and do not change.

use std::future::Future;
use std::pin::Pin;

use telltale_config::{NotifierConfig, NotifierKind};
use telltale_model::Notification;

use crate::NotifyError;
use crate::console::ConsoleNotifier;
use crate::preview::Preview;
use crate::webhook::WebhookNotifier;

/// The end result of delivering one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver took it.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// Given up (attempts exhausted or a permanent error).
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last status or error, for logs and status pages.
        last: String,
    },
}

/// The future of one [`Notifier::deliver`] call: boxed so that the trait stays usable as
/// `dyn Notifier` (an `async fn` in a trait is not).
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;

/// One configured notifier: something that delivers notifications somewhere.
///
/// The dispatcher gives each notifier its own task and bounded queue and calls
/// [`deliver`](Notifier::deliver) once per notification, in order, never two at a time. So
/// that the dispatcher's guarantees hold, an implementation:
///
/// - retries inside `deliver` what is worth retrying (the dispatcher does not retry; a
///   [`Delivery::Failed`] is counted and the notification is not tried again), and bounds
///   the whole call (attempts, timeouts, backoff capped);
/// - sends the same notification id on every attempt (`n.id`; receivers dedupe on it);
/// - is cancel-safe: at shutdown, after the grace period, the future is dropped mid-delivery
///   and the notification stays undone in the outbox, to be delivered again on the next
///   start;
/// - logs its own failures with the notifier's name, the alert and the notification id (it
///   knows what is worth saying: an HTTP status, a closed pipe, …).
pub trait Notifier: std::fmt::Debug + Send + Sync {
    /// The configured name (routes and the outbox refer to the notifier by it).
    fn name(&self) -> &str;

    /// The kind, as written after `kind:` in the config (`console`, `webhook`).
    fn kind(&self) -> &'static str;

    /// Delivers one notification, retries included, and says how it ended.
    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliveryFuture<'a>;

    /// What [`deliver`](Notifier::deliver) would send for `n`, without sending it and
    /// without any secret (see [`crate::preview`]). A kind that cannot say returns
    /// [`Preview::Unavailable`], the default.
    fn preview(&self, n: &Notification) -> Preview {
        let _ = n;
        Preview::Unavailable { kind: self.kind() }
    }
}

/// Turns one configured notifier into its [`Notifier`]. `index` is the entry's place in
/// `notifiers`, for the error. The config is expected to have passed
/// `telltale_config::check`; what can still fail here is only knowable now (an HTTP client
/// that cannot be built).
pub fn build(index: usize, cfg: &NotifierConfig) -> Result<Box<dyn Notifier>, NotifyError> {
    let err = |message: String| NotifyError {
        index,
        name: cfg.name.clone(),
        message,
    };
    Ok(match &cfg.kind {
        NotifierKind::Console(c) => Box::new(ConsoleNotifier::new(&cfg.name, c)),
        NotifierKind::Webhook(w) => Box::new(WebhookNotifier::new(&cfg.name, w).map_err(err)?),
    })
}
