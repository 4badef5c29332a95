//! Scaling decisions: what a scaling rule proposes each tick becomes, after stabilisation,
//! a [`ScalingDecision`] to record, announce and apply.
//!
//! Owns: the stabilisation of proposals ([`stabilize`]: Kubernetes HPA's windows or Ray
//! Serve's delays, with min/max and the largest step), when a stabilised recommendation is
//! a new decision ([`Autoscaler`]), and the scalers that apply decisions ([`action`]:
//! webhook, Ray Serve's REST API). Recording decisions (durable store) and announcing them
//! (notifiers) is the pipeline's glue (`engine/pipeline/src/scaling.rs`).
//!
//! Invariants:
//! * Time is a parameter: nothing here reads the clock, so every sequence is testable tick
//!   by tick.
//! * A decision is made once: a recommendation equal to the last decision is not decided
//!   again while the target's reported count catches up (Ray starts replicas in seconds to
//!   minutes; a rule's metric of healthy replicas lags more).
//! * A scaler's request is bounded by its timeout; its errors name the scaler, never a
//!   secret.

pub mod action;
pub mod stabilize;

use telltale_model::{ScalingDecision, ScalingProposal, ScalingSpec, TimestampMs};

pub use action::{Scaler, ScalerError};
pub use stabilize::Stabilizer;

/// One scaling rule's state: its stabiliser and its last decision.
#[derive(Debug, Default, Clone)]
pub struct Autoscaler {
    stabilizer: Stabilizer,
    /// The replica count last decided, until the target reports it (or a new decision).
    decided: Option<u32>,
}

impl Autoscaler {
    /// An autoscaler that has seen nothing yet.
    pub fn new() -> Autoscaler {
        Autoscaler::default()
    }

    /// Feeds one tick's proposal of rule `rule`, with the target's `current` count, at
    /// `now`. Returns a decision when the stabilised recommendation differs from `current`
    /// and from the last decision.
    pub fn step(
        &mut self,
        rule: &str,
        spec: &ScalingSpec,
        proposal: &ScalingProposal,
        current: u32,
        now: TimestampMs,
    ) -> Option<ScalingDecision> {
        let recommended = self
            .stabilizer
            .recommend(spec, current, proposal.desired, now);
        if recommended == current {
            // Reached (or never left): a later change is a new decision.
            self.decided = None;
            return None;
        }
        if self.decided == Some(recommended) {
            return None;
        }
        self.decided = Some(recommended);
        Some(ScalingDecision {
            rule: rule.to_string(),
            target: spec.target.clone(),
            current,
            desired: recommended,
            proposed: proposal.desired,
            reason: proposal.reason.clone(),
            inputs: proposal.inputs.clone(),
            time_ms: now,
        })
    }

    /// The last decision's count, while the target has not reported it: what a target
    /// that cannot report its count (a webhook) is taken to have.
    pub fn last_decided(&self) -> Option<u32> {
        self.decided
    }

    /// Forgets the last decision (its scaler failed to apply it), so the next tick decides
    /// again.
    pub fn apply_failed(&mut self) {
        self.decided = None;
    }
}

/// `scale TARGET from 2 to 5: REASON`: the summary of a decision's notification.
pub fn summary(d: &ScalingDecision) -> String {
    let mut s = format!("scale {} from {} to {}", d.target, d.current, d.desired);
    if !d.reason.is_empty() {
        s.push_str(": ");
        s.push_str(&d.reason);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use telltale_model::Stabilization;

    use super::*;

    fn spec() -> ScalingSpec {
        ScalingSpec {
            target: "fe".into(),
            min: 1,
            max: 8,
            up_delay: Duration::ZERO,
            down_delay: Duration::from_secs(60),
            max_step_up: Some(2),
            max_step_down: None,
            stabilization: Stabilization::Window,
        }
    }

    fn proposal(desired: u32) -> ScalingProposal {
        ScalingProposal {
            desired,
            current: None,
            reason: format!("wants {desired}"),
            inputs: BTreeMap::from([("queue".into(), f64::from(desired) * 40.0)]),
        }
    }

    #[test]
    fn decides_once_while_the_target_catches_up() {
        let sp = spec();
        let mut a = Autoscaler::new();
        let s = 1000;
        // Tick 0: current 1, wants 5, step 2 -> decide 3.
        let d = a.step("r", &sp, &proposal(5), 1, 0).expect("a decision");
        assert_eq!((d.current, d.desired, d.proposed), (1, 3, 5));
        assert_eq!(d.inputs["queue"], 200.0);
        assert_eq!(summary(&d), "scale fe from 1 to 3: wants 5");
        // Tick 10 s: the target still reports 1: 3 again, already decided.
        assert_eq!(a.step("r", &sp, &proposal(5), 1, 10 * s), None);
        // Tick 20 s: it reports 3: 3 + 2 = 5, a new decision.
        let d = a
            .step("r", &sp, &proposal(5), 3, 20 * s)
            .expect("a decision");
        assert_eq!((d.current, d.desired), (3, 5));
        // Tick 30 s: at 5, wanting 5: nothing.
        assert_eq!(a.step("r", &sp, &proposal(5), 5, 30 * s), None);
        // Tick 40 s: wants 2, but the down window (60 s) still holds 5s: nothing.
        assert_eq!(a.step("r", &sp, &proposal(2), 5, 40 * s), None);
        // Tick 91 s: the window (31 s, 91 s] holds 40 s (2) and now (2): down to 2.
        let d = a
            .step("r", &sp, &proposal(2), 5, 91 * s)
            .expect("a decision");
        assert_eq!((d.current, d.desired), (5, 2));
        // The scaler failed: the next tick decides the same again.
        a.apply_failed();
        let d = a
            .step("r", &sp, &proposal(2), 5, 92 * s)
            .expect("decided again");
        assert_eq!(d.desired, 2);
    }
}
