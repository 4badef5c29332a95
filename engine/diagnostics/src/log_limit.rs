//! De-duplication for warnings that would otherwise repeat on every tick.
//!
//! Something evaluated periodically (a rule every `evaluation_interval`, a plugin every
//! collection) that keeps failing the same way would write the same warning every tick and
//! drown the log. [`LogLimit`] decides which occurrences are worth a line: the first one at
//! once, a short reminder at a growing interval while the same failure goes on, the new
//! message at once when it changes, and one line when it recovers. It only decides; the
//! caller writes the line, with its own fields and wording.
//!
//! Time is a parameter (an [`Instant`] the caller passes in) so the schedule can be tested
//! without sleeping.

use std::time::{Duration, Instant};

/// What the caller should log for one occurrence, as decided by [`LogLimit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The first failure after a success, or ever: log it in full.
    First,
    /// A failure whose message differs from the previous one: log it in full. `suppressed`
    /// is how many occurrences of the previous message went unlogged since its last line.
    Changed {
        /// Unlogged occurrences of the previous message.
        suppressed: u64,
    },
    /// The same failure again, and a reminder is due: log a short line.
    Reminder {
        /// Occurrences since the last line, this one included.
        repeats: u64,
        /// Time since the last line about this failure.
        since_last: Duration,
        /// Time since the failure began (its first occurrence in this run of failures).
        failing_for: Duration,
    },
    /// A success after failures: log the recovery.
    Recovered {
        /// Failures in the run that just ended.
        failures: u64,
        /// Time from the first failure of the run to this success.
        lasted: Duration,
    },
}

/// A run of consecutive failures.
#[derive(Debug, Clone)]
struct Run {
    /// The message of the latest failure (what "the same failure" is compared by).
    message: String,
    /// When the run's first failure happened.
    started: Instant,
    /// Failures in the run so far.
    failures: u64,
    /// Occurrences of `message` not logged since its last line.
    suppressed: u64,
    /// When the last line about this run was logged.
    last_logged: Instant,
    /// The wait before the next reminder; doubles after each one, up to the maximum.
    interval: Duration,
}

/// Decides which occurrences of a repeating failure to log: the first at once, reminders at
/// a growing interval while it goes on, a changed message at once, one line on recovery.
///
/// One `LogLimit` follows one source of failures (one rule, one plugin instance).
#[derive(Debug, Clone)]
pub struct LogLimit {
    first_reminder: Duration,
    max_reminder: Duration,
    run: Option<Run>,
}

impl Default for LogLimit {
    fn default() -> LogLimit {
        LogLimit::new(
            LogLimit::DEFAULT_FIRST_REMINDER,
            LogLimit::DEFAULT_MAX_REMINDER,
        )
    }
}

impl LogLimit {
    /// The wait before the first reminder: a failure checked every few seconds is worth a
    /// line now and then, not every tick.
    pub const DEFAULT_FIRST_REMINDER: Duration = Duration::from_secs(120);
    /// The longest wait between two reminders: a failure that lasts for days still shows
    /// up in any half-hour window of the log.
    pub const DEFAULT_MAX_REMINDER: Duration = Duration::from_secs(30 * 60);

    /// A limiter whose first reminder comes `first_reminder` after the line before it, each
    /// next one twice as late, never later than `max_reminder` (raised to `first_reminder`
    /// if smaller).
    pub fn new(first_reminder: Duration, max_reminder: Duration) -> LogLimit {
        LogLimit {
            first_reminder,
            max_reminder: max_reminder.max(first_reminder),
            run: None,
        }
    }

    /// Whether the last occurrence was a failure.
    pub fn is_failing(&self) -> bool {
        self.run.is_some()
    }

    /// Records a failure with `message` at `now`; returns what to log, if anything.
    pub fn failure(&mut self, now: Instant, message: &str) -> Option<Notice> {
        let Some(run) = &mut self.run else {
            self.run = Some(Run {
                message: message.to_string(),
                started: now,
                failures: 1,
                suppressed: 0,
                last_logged: now,
                interval: self.first_reminder,
            });
            return Some(Notice::First);
        };
        run.failures = run.failures.saturating_add(1);
        if run.message != message {
            let suppressed = run.suppressed;
            run.message = message.to_string();
            run.suppressed = 0;
            run.last_logged = now;
            // A new message starts its own schedule: its repeats have not been seen yet.
            run.interval = self.first_reminder;
            return Some(Notice::Changed { suppressed });
        }
        run.suppressed = run.suppressed.saturating_add(1);
        let since_last = now.saturating_duration_since(run.last_logged);
        if since_last < run.interval {
            return None;
        }
        let repeats = run.suppressed;
        run.suppressed = 0;
        run.last_logged = now;
        run.interval = run.interval.saturating_mul(2).min(self.max_reminder);
        Some(Notice::Reminder {
            repeats,
            since_last,
            failing_for: now.saturating_duration_since(run.started),
        })
    }

    /// Records a success at `now`; returns [`Notice::Recovered`] when it ends a run of
    /// failures.
    pub fn success(&mut self, now: Instant) -> Option<Notice> {
        self.run.take().map(|run| Notice::Recovered {
            failures: run.failures,
            lasted: now.saturating_duration_since(run.started),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    /// Fails with `message` every `tick` from `from` (exclusive) to `to` (inclusive) and
    /// returns the notices with their times relative to `t0`.
    fn fail_every(
        limit: &mut LogLimit,
        t0: Instant,
        from: Duration,
        to: Duration,
        tick: Duration,
        message: &str,
    ) -> Vec<(Duration, Notice)> {
        let mut out = Vec::new();
        let mut t = from + tick;
        while t <= to {
            if let Some(n) = limit.failure(t0 + t, message) {
                out.push((t, n));
            }
            t += tick;
        }
        out
    }

    #[test]
    fn first_failure_is_logged_and_repeats_are_not() {
        let t0 = Instant::now();
        let mut limit = LogLimit::new(2 * MIN, 30 * MIN);
        assert!(!limit.is_failing());
        assert_eq!(limit.failure(t0, "boom"), Some(Notice::First));
        assert!(limit.is_failing());
        let tick = Duration::from_secs(10);
        // Ten seconds apart for just under two minutes: all quiet.
        let notices = fail_every(&mut limit, t0, Duration::ZERO, 2 * MIN - tick, tick, "boom");
        assert!(notices.is_empty(), "{notices:?}");
    }

    #[test]
    fn reminders_double_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut limit = LogLimit::new(2 * MIN, 10 * MIN);
        assert_eq!(limit.failure(t0, "boom"), Some(Notice::First));
        let tick = Duration::from_secs(10);
        let notices = fail_every(&mut limit, t0, Duration::ZERO, 60 * MIN, tick, "boom");
        let times: Vec<u64> = notices.iter().map(|(t, _)| t.as_secs() / 60).collect();
        // 2, then +4, +8, then +16 capped at +10, and every 10 minutes from there.
        assert_eq!(times, [2, 6, 14, 24, 34, 44, 54]);
        // The first reminder counts the 12 failures since the first line (one per 10 s).
        assert_eq!(
            notices[0].1,
            Notice::Reminder {
                repeats: 12,
                since_last: 2 * MIN,
                failing_for: 2 * MIN,
            }
        );
        assert_eq!(
            notices[1].1,
            Notice::Reminder {
                repeats: 24,
                since_last: 4 * MIN,
                failing_for: 6 * MIN,
            }
        );
    }

    #[test]
    fn a_changed_message_is_logged_at_once_and_restarts_the_schedule() {
        let t0 = Instant::now();
        let mut limit = LogLimit::new(2 * MIN, 30 * MIN);
        assert_eq!(limit.failure(t0, "a"), Some(Notice::First));
        let s = Duration::from_secs(1);
        assert_eq!(limit.failure(t0 + s, "a"), None);
        assert_eq!(limit.failure(t0 + 2 * s, "a"), None);
        assert_eq!(
            limit.failure(t0 + 3 * s, "b"),
            Some(Notice::Changed { suppressed: 2 })
        );
        assert_eq!(limit.failure(t0 + 4 * s, "b"), None);
        // The reminder for "b" comes two minutes after "b" was logged, not after "a" was.
        assert_eq!(limit.failure(t0 + 2 * MIN + 2 * s, "b"), None);
        assert_eq!(
            limit.failure(t0 + 2 * MIN + 3 * s, "b"),
            Some(Notice::Reminder {
                repeats: 3,
                since_last: 2 * MIN,
                failing_for: 2 * MIN + 3 * s,
            })
        );
    }

    #[test]
    fn recovery_is_logged_once_and_a_new_failure_is_first_again() {
        let t0 = Instant::now();
        let mut limit = LogLimit::default();
        assert_eq!(
            limit.success(t0),
            None,
            "no failure, nothing to recover from"
        );
        assert_eq!(limit.failure(t0, "boom"), Some(Notice::First));
        assert_eq!(limit.failure(t0 + MIN, "boom"), None);
        assert_eq!(
            limit.success(t0 + 3 * MIN),
            Some(Notice::Recovered {
                failures: 2,
                lasted: 3 * MIN,
            })
        );
        assert!(!limit.is_failing());
        assert_eq!(limit.success(t0 + 4 * MIN), None);
        assert_eq!(limit.failure(t0 + 5 * MIN, "boom"), Some(Notice::First));
    }

    #[test]
    fn a_maximum_below_the_first_reminder_is_raised_to_it() {
        let t0 = Instant::now();
        let mut limit = LogLimit::new(2 * MIN, MIN);
        assert_eq!(limit.failure(t0, "x"), Some(Notice::First));
        let notices = fail_every(&mut limit, t0, Duration::ZERO, 7 * MIN, MIN, "x");
        let times: Vec<u64> = notices.iter().map(|(t, _)| t.as_secs() / 60).collect();
        assert_eq!(times, [2, 4, 6]);
    }
}
