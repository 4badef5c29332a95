//! Small helpers the stage tasks use to retry without hammering and to log repeated
//! failures without flooding.

use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Exponential backoff for reloading a plugin that failed to load.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    next_try: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
            next_try: None,
        }
    }

    /// Whether the next attempt may happen now.
    pub(crate) fn ready(&self) -> bool {
        self.next_try.is_none_or(|t| Instant::now() >= t)
    }

    /// Records a failure; returns how long until the next attempt.
    pub(crate) fn fail(&mut self) -> Duration {
        let wait = self.current;
        self.next_try = Some(Instant::now() + wait);
        self.current = (self.current * 2).min(self.max);
        wait
    }

    /// Records a success.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
        self.next_try = None;
    }
}

/// Logs the first failure of a run of failures, a reminder at most once a minute while it
/// lasts (or at once when the error changes), and the recovery.
#[derive(Debug)]
pub(crate) struct FailureLog {
    what: String,
    consecutive: u64,
    last_message: String,
    last_logged: Option<Instant>,
}

const REMIND_EVERY: Duration = Duration::from_secs(60);

impl FailureLog {
    pub(crate) fn new(what: &str) -> FailureLog {
        FailureLog {
            what: what.to_string(),
            consecutive: 0,
            last_message: String::new(),
            last_logged: None,
        }
    }

    pub(crate) fn failure(&mut self, message: &str) {
        self.consecutive += 1;
        let changed = message != self.last_message;
        let due = self.last_logged.is_none_or(|t| t.elapsed() >= REMIND_EVERY);
        if changed || due {
            if self.consecutive == 1 {
                warn!("{}: {message}", self.what);
            } else {
                warn!(
                    "{}: {message} ({} consecutive failures)",
                    self.what, self.consecutive
                );
            }
            self.last_logged = Some(Instant::now());
            self.last_message = message.to_string();
        }
    }

    pub(crate) fn success(&mut self) {
        if self.consecutive > 0 {
            info!(
                "{}: recovered after {} failure(s)",
                self.what, self.consecutive
            );
        }
        self.consecutive = 0;
        self.last_message.clear();
        self.last_logged = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(3));
        assert!(b.ready());
        assert_eq!(b.fail(), Duration::from_secs(1));
        assert!(!b.ready());
        assert_eq!(b.fail(), Duration::from_secs(2));
        assert_eq!(b.fail(), Duration::from_secs(3));
        assert_eq!(b.fail(), Duration::from_secs(3));
        b.reset();
        assert!(b.ready());
        assert_eq!(b.fail(), Duration::from_secs(1));
    }
}
