//! Kapacitor's flap detection (`.flapping(low, high)` with `.history(n)`), per alert instance.
//!
//! Each evaluation records whether the instance's condition held. The measure is the share
//! of state changes between consecutive entries of the last `history` evaluations, each
//! change weighted by its age: the oldest pair weighs 0.8 and the weight grows by
//! `0.4 / (history - 1)` per step towards the newest (Kapacitor's `maxWeight` 1.2 and
//! `weightDiff` 1.5), and the weighted count is divided by `history - 1`. Above `high` the
//! instance is flapping; it settles when the measure falls below `low`. The history starts
//! as "did not hold", as Kapacitor's does.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use telltale_model::Flapping;

/// Kapacitor's weight of the newest change.
const MAX_WEIGHT: f64 = 1.2;
/// Kapacitor's ratio between the newest and the oldest weight.
const WEIGHT_DIFF: f64 = 1.5;

/// One instance's recent states and whether it is flapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlapHistory {
    /// Oldest first; always `history` entries long.
    states: VecDeque<bool>,
    /// Whether the instance is flapping now.
    pub flapping: bool,
}

/// What one more evaluation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Not flapping, and still not.
    Steady,
    /// It started flapping on this evaluation.
    Started,
    /// Flapping, and still.
    Flapping,
    /// It stopped flapping on this evaluation.
    Settled,
}

impl FlapHistory {
    /// A history of `settings.history` evaluations in which the condition never held.
    pub fn new(settings: Flapping) -> FlapHistory {
        FlapHistory {
            states: VecDeque::from(vec![false; settings.history.max(2)]),
            flapping: false,
        }
    }

    /// Records one evaluation and says what changed.
    pub(crate) fn record(&mut self, held: bool, settings: Flapping) -> Change {
        let len = settings.history.max(2);
        self.states.push_back(held);
        while self.states.len() > len {
            self.states.pop_front();
        }
        while self.states.len() < len {
            self.states.push_front(false);
        }
        let share = self.share();
        match (self.flapping, share) {
            (false, s) if s > settings.high => {
                self.flapping = true;
                Change::Started
            }
            (true, s) if s < settings.low => {
                self.flapping = false;
                Change::Settled
            }
            (true, _) => Change::Flapping,
            (false, _) => Change::Steady,
        }
    }

    /// The weighted share of changes (0 to about 1.2 × the plain share).
    pub fn share(&self) -> f64 {
        let n = self.states.len();
        if n < 2 {
            return 0.0;
        }
        let mut weight = MAX_WEIGHT / WEIGHT_DIFF;
        let step = (MAX_WEIGHT - weight) / (n - 1) as f64;
        let mut changes = 0.0;
        for (older, newer) in self.states.iter().zip(self.states.iter().skip(1)) {
            if older != newer {
                changes += weight;
            }
            weight += step;
        }
        changes / (n - 1) as f64
    }

    /// Whether an inactive instance must be kept: it is flapping, or its condition held
    /// within the history (so flapping could still be detected).
    pub(crate) fn worth_keeping(&self) -> bool {
        self.flapping || self.states.iter().any(|&s| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(history: usize) -> Flapping {
        Flapping {
            history,
            low: 0.25,
            high: 0.5,
        }
    }

    #[test]
    fn the_share_weighs_newer_changes_more() {
        // history 5: four pairs, weights 0.8, 0.9, 1.0, 1.1 (step 0.4 / 4 = 0.1).
        let s = settings(5);
        let mut h = FlapHistory::new(s);
        // [F F F F T]: one change, in the newest pair (weight 1.1) → 1.1 / 4.
        h.record(true, s);
        assert!((h.share() - 1.1 / 4.0).abs() < 1e-12, "{}", h.share());
        // [F F F T F]: changes in pairs 3 and 4 → (1.0 + 1.1) / 4.
        h.record(false, s);
        assert!((h.share() - 2.1 / 4.0).abs() < 1e-12, "{}", h.share());
        // The same change pattern further in the past weighs less: [T F F F F] → 0.8 / 4.
        let mut old = FlapHistory {
            states: VecDeque::from(vec![true, false, false, false, false]),
            flapping: false,
        };
        assert!((old.share() - 0.8 / 4.0).abs() < 1e-12);
        old.record(false, s);
        assert_eq!(old.share(), 0.0);
    }

    #[test]
    fn starts_above_high_and_settles_below_low() {
        let s = settings(5);
        let mut h = FlapHistory::new(s);
        // T: 1.1/4 = 0.275 (steady), F: 2.1/4 = 0.525 > 0.5 → started.
        assert_eq!(h.record(true, s), Change::Steady);
        assert_eq!(h.record(false, s), Change::Started);
        // [F F T F T]: (0.9 + 1.0 + 1.1)/4 = 0.75 → still flapping.
        assert_eq!(h.record(true, s), Change::Flapping);
        // Steady `true` from here: [F T F T T] 0.8+0.9+1.0 = 2.7/4 = 0.675;
        // [T F T T T] 0.8+0.9 = 1.7/4 = 0.425; [F T T T T] 0.8/4 = 0.2 < 0.25 → settled.
        assert_eq!(h.record(true, s), Change::Flapping);
        assert_eq!(h.record(true, s), Change::Flapping);
        assert_eq!(h.record(true, s), Change::Settled);
        assert!(!h.flapping);
        assert!(h.worth_keeping());
    }

    #[test]
    fn a_shorter_history_after_a_reload_keeps_the_newest_states() {
        let mut h = FlapHistory::new(settings(21));
        h.record(true, settings(21));
        h.record(true, settings(3));
        assert_eq!(h.states, VecDeque::from(vec![false, true, true]));
    }
}
