//! Supervision of plugin instances, and a helper to log repeated failures without flooding.
//!
//! [`Supervisor`] is a pure state machine: the caller passes the current [`Instant`] in, so
//! the backoff schedule is tested without sleeping. A plugin instance is in one of three
//! [`PluginState`]s:
//!
//! ```text
//!            failure (< quarantine_after in a row)        failure (the Nth in a row)
//!  running ──────────────────────────────▶ backing_off ─────────────────────▶ quarantined
//!     ▲  ◀────── success after the wait ──────┘  ▲ │ failure: wait doubles       │
//!     │                                          └─┘ (capped at max_backoff)     │
//!     └──────────── release: file changed on disk, or SIGHUP ────────────────────┘
//! ```
//!
//! Only failures that discard the instance count: a crash, a missed deadline, a broken limit,
//! a failed load or restart. Errors a healthy plugin reports itself (`failed`,
//! `unavailable`) do not: the plugin is called again on its next tick, and [`FailureLog`]
//! keeps the log readable.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use telltale_config::SupervisionConfig;
use telltale_diagnostics::{LogLimit, Notice};

/// Where a supervised plugin instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PluginState {
    /// Called on every tick.
    Running,
    /// Failed recently: not called until its backoff has passed.
    BackingOff,
    /// Failed too often in a row: not called until its file changes or an operator reloads.
    Quarantined,
}

impl PluginState {
    /// Every state, in the order the `state` label values are published.
    pub(crate) const ALL: [PluginState; 3] = [
        PluginState::Running,
        PluginState::BackingOff,
        PluginState::Quarantined,
    ];

    /// The `state` label value: `running`, `backing_off`, `quarantined`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PluginState::Running => "running",
            PluginState::BackingOff => "backing_off",
            PluginState::Quarantined => "quarantined",
        }
    }
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The backoff and quarantine settings, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The wait after the first failure.
    pub(crate) initial_backoff: Duration,
    /// The longest wait (not below `initial_backoff`: `telltale_config::check` refuses that).
    pub(crate) max_backoff: Duration,
    /// Consecutive failures that quarantine; 0 never quarantines.
    pub(crate) quarantine_after: u32,
}

impl From<&SupervisionConfig> for Policy {
    fn from(c: &SupervisionConfig) -> Policy {
        Policy {
            initial_backoff: c.initial_backoff.get(),
            // A cap below the first wait would shrink the schedule; treat it as "no growth".
            max_backoff: c.max_backoff.get(),
            quarantine_after: c.quarantine_after,
        }
    }
}

impl Policy {
    /// The wait after the `n`th consecutive failure (1-based): `initial · 2^(n-1)`, capped.
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// A change of state worth one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// A failure; the next call waits `wait`. `from` is `Running` for the first failure of a
    /// run, `BackingOff` for a failed retry.
    BackingOff {
        /// The state before.
        from: PluginState,
        /// How long until the next call.
        wait: Duration,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// The failure that used up the budget.
    Quarantined {
        /// The state before.
        from: PluginState,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// A call succeeded after failures.
    Recovered {
        /// The failures it recovered from.
        failures: u32,
    },
    /// Released by a reload (file changed, or SIGHUP) from a state other than `Running`.
    Released {
        /// The state before.
        from: PluginState,
    },
}

/// The supervision state machine of one plugin instance. Time is passed in.
#[derive(Debug)]
pub(crate) struct Supervisor {
    policy: Policy,
    state: PluginState,
    consecutive: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

impl Supervisor {
    /// A running supervisor.
    pub(crate) fn new(policy: Policy) -> Supervisor {
        Supervisor {
            policy,
            state: PluginState::Running,
            consecutive: 0,
            retry_at: None,
            last_error: None,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> PluginState {
        self.state
    }

    /// Failures since the last success (or release).
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// The message of the latest failure, kept after recovery.
    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether the plugin may be called at `now`.
    pub(crate) fn may_call(&self, now: Instant) -> bool {
        match self.state {
            PluginState::Running => true,
            PluginState::BackingOff => self.retry_at.is_none_or(|t| now >= t),
            PluginState::Quarantined => false,
        }
    }

    /// Records a successful call.
    pub(crate) fn success(&mut self) -> Option<Transition> {
        let failures = self.consecutive;
        let was = self.state;
        self.state = PluginState::Running;
        self.consecutive = 0;
        self.retry_at = None;
        (failures > 0 || was != PluginState::Running).then_some(Transition::Recovered { failures })
    }

    /// Records a failure that discarded the instance, at `now`.
    pub(crate) fn failure(&mut self, now: Instant, error: &str) -> Transition {
        self.consecutive = self.consecutive.saturating_add(1);
        self.last_error = Some(error.to_string());
        let from = self.state;
        if self.policy.quarantine_after > 0 && self.consecutive >= self.policy.quarantine_after {
            self.state = PluginState::Quarantined;
            self.retry_at = None;
            return Transition::Quarantined {
                from,
                failures: self.consecutive,
            };
        }
        let wait = self.policy.backoff(self.consecutive);
        self.state = PluginState::BackingOff;
        self.retry_at = Some(now + wait);
        Transition::BackingOff {
            from,
            wait,
            failures: self.consecutive,
        }
    }

    /// A fresh start (a new version of the file, or an operator's reload): running, with
    /// no failures counted. Returns the transition when it was not running.
    pub(crate) fn release(&mut self) -> Option<Transition> {
        let from = self.state;
        self.state = PluginState::Running;
        self.consecutive = 0;
        self.retry_at = None;
        (from != PluginState::Running).then_some(Transition::Released { from })
    }
}

/// Logs the errors a healthy plugin reports itself: the first of a run at once, then as
/// [`LogLimit`] allows (a reminder at one minute, doubling to 30), a changed error at once,
/// and the recovery.
#[derive(Debug)]
pub(crate) struct FailureLog {
    what: String,
    limit: LogLimit,
}

impl FailureLog {
    pub(crate) fn new(what: &str) -> FailureLog {
        FailureLog {
            what: what.to_string(),
            limit: LogLimit::new(Duration::from_secs(60), LogLimit::DEFAULT_MAX_REMINDER),
        }
    }

    pub(crate) fn failure(&mut self, message: &str) {
        match self.limit.failure(Instant::now(), message) {
            Some(Notice::First | Notice::Changed { .. }) => warn!("{}: {message}", self.what),
            Some(Notice::Reminder {
                repeats,
                failing_for,
                ..
            }) => warn!(
                "{}: {message} (still failing: {repeats} more time(s), for {})",
                self.what,
                humantime::format_duration(Duration::from_secs(failing_for.as_secs()))
            ),
            Some(Notice::Recovered { .. }) | None => {}
        }
    }

    pub(crate) fn success(&mut self) {
        if let Some(Notice::Recovered { failures, .. }) = self.limit.success(Instant::now()) {
            info!("{}: recovered after {failures} failure(s)", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy(quarantine_after: u32) -> Policy {
        Policy {
            initial_backoff: S,
            max_backoff: 4 * S,
            quarantine_after,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy(0);
        let waits: Vec<_> = (1..=6).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 4, 4, 4]);
        // No overflow on absurd counts.
        assert_eq!(p.backoff(u32::MAX), 4 * S);
    }

    #[test]
    fn a_failure_skips_calls_until_the_backoff_passed() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(0));
        assert!(s.may_call(t0));
        assert_eq!(
            s.failure(t0, "boom"),
            Transition::BackingOff {
                from: PluginState::Running,
                wait: S,
                failures: 1
            }
        );
        assert_eq!(s.state(), PluginState::BackingOff);
        assert!(!s.may_call(t0));
        assert!(!s.may_call(t0 + S - Duration::from_millis(1)));
        assert!(s.may_call(t0 + S));
        // The retry fails too: twice the wait, from the time of that failure.
        let t1 = t0 + S;
        assert!(matches!(
            s.failure(t1, "boom"),
            Transition::BackingOff { from: PluginState::BackingOff, wait, failures: 2 } if wait == 2 * S
        ));
        assert!(!s.may_call(t1 + S));
        assert!(s.may_call(t1 + 2 * S));
        assert_eq!(s.last_error(), Some("boom"));
    }

    #[test]
    fn quarantined_after_n_consecutive_failures_and_stays_there() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(3));
        assert!(matches!(s.failure(t0, "a"), Transition::BackingOff { .. }));
        assert!(matches!(s.failure(t0, "b"), Transition::BackingOff { .. }));
        assert_eq!(
            s.failure(t0, "c"),
            Transition::Quarantined {
                from: PluginState::BackingOff,
                failures: 3
            }
        );
        assert_eq!(s.state(), PluginState::Quarantined);
        assert_eq!(s.consecutive_failures(), 3);
        // No amount of waiting releases it.
        assert!(!s.may_call(t0 + Duration::from_secs(86_400)));
        assert_eq!(s.last_error(), Some("c"));
    }

    #[test]
    fn success_resets_the_count_and_the_schedule() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(3));
        s.failure(t0, "a");
        s.failure(t0, "b");
        assert_eq!(s.success(), Some(Transition::Recovered { failures: 2 }));
        assert_eq!(s.state(), PluginState::Running);
        assert_eq!(s.consecutive_failures(), 0);
        assert!(s.may_call(t0));
        // A success while healthy is no transition.
        assert_eq!(s.success(), None);
        // The next run of failures starts over: first wait again, two more before quarantine.
        assert!(matches!(
            s.failure(t0, "x"),
            Transition::BackingOff { wait, failures: 1, .. } if wait == S
        ));
        assert!(matches!(s.failure(t0, "y"), Transition::BackingOff { .. }));
        assert!(matches!(s.failure(t0, "z"), Transition::Quarantined { .. }));
    }

    #[test]
    fn release_gives_a_quarantined_plugin_a_fresh_chance() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(2));
        s.failure(t0, "a");
        s.failure(t0, "b");
        assert_eq!(s.state(), PluginState::Quarantined);
        assert_eq!(
            s.release(),
            Some(Transition::Released {
                from: PluginState::Quarantined
            })
        );
        assert!(s.may_call(t0));
        assert_eq!(s.consecutive_failures(), 0);
        // The full budget again: one failure backs off, the second quarantines.
        assert!(matches!(
            s.failure(t0, "c"),
            Transition::BackingOff { wait, .. } if wait == S
        ));
        assert!(matches!(s.failure(t0, "d"), Transition::Quarantined { .. }));
        // Releasing a running plugin is no transition.
        s.release();
        assert_eq!(s.release(), None);
    }

    #[test]
    fn zero_never_quarantines() {
        // (A `max_backoff` below `initial_backoff` used to be raised here in silence; the
        // config check now refuses it with its position, see telltale-config's tests.)
        let t0 = Instant::now();
        let mut s = Supervisor::new(policy(0));
        for _ in 0..100 {
            assert!(matches!(s.failure(t0, "e"), Transition::BackingOff { .. }));
        }
    }

    #[test]
    fn defaults_are_safe() {
        let p = Policy::from(&SupervisionConfig::default());
        assert_eq!(p.initial_backoff, S);
        assert_eq!(p.max_backoff, Duration::from_secs(300));
        assert_eq!(p.quarantine_after, 5);
    }
}
