//! Turning a rule's proposals, one per evaluation, into a replica count worth acting on.
//!
//! Two semantics, chosen per rule (`RULE.scaling.stabilization`), both with time as a
//! parameter:
//!
//! * **`window`** (the default): Kubernetes HPA's `behavior.scaleUp/scaleDown.
//!   stabilizationWindowSeconds` (`up_delay`, default 0s; `down_delay`, default 300s). Every
//!   proposal is remembered with its time. The up-recommendation is the *smallest* proposal
//!   within the last `up_delay`, the down-recommendation the *largest* within the last
//!   `down_delay` (the newest proposal always counts). The result starts at the current
//!   count, is raised to the up-recommendation if below it and lowered to the
//!   down-recommendation if above it (as `stabilizeRecommendationWithBehaviors` in
//!   `pkg/controller/podautoscaler/horizontal.go` does). So a scale-down follows the
//!   highest load of the last five minutes, and a spike shorter than `up_delay` raises
//!   nothing.
//! * **`delay`**: Ray Serve's `upscale_delay_s` / `downscale_delay_s`: the rule must
//!   propose more (or fewer) replicas than the current count on every evaluation for
//!   `up_delay` (`down_delay`); then the newest proposal is taken. A proposal equal to the
//!   current count, or in the other direction, starts the wait again. (Ray counts control
//!   loop iterations, `delay / period`; the elapsed time between the first proposal and
//!   now is the same thing measured in time.)
//!
//! Then, in both: HPA's `policies` reduced to one step per decision (`max_step_up`,
//! `max_step_down`: at most that many replicas added or removed by one decision), and
//! the result clamped to `[min, max]` (HPA's `minReplicas` / `maxReplicas`; Ray's
//! `min_replicas` / `max_replicas`). The clamp comes last, so a target below `min` is
//! raised to `min` whatever the step.

use std::collections::VecDeque;
use std::time::Duration;

use telltale_model::{ScalingSpec, Stabilization, TimestampMs, duration_ms};

/// The state of one target's stabilisation: the proposals it remembers (`window`) or the
/// direction it has been asked to go and since when (`delay`).
#[derive(Debug, Default, Clone)]
pub struct Stabilizer {
    /// `(time, proposal)`, oldest first, no older than the longer of the two delays.
    history: VecDeque<(TimestampMs, u32)>,
    /// Since when every proposal was above (`true`) or below (`false`) the current count.
    pending: Option<(bool, TimestampMs)>,
}

impl Stabilizer {
    /// A stabiliser that remembers nothing yet.
    pub fn new() -> Stabilizer {
        Stabilizer::default()
    }

    /// The replica count to go to at `now`, given the target's `current` count and the
    /// rule's `proposed` one. Equal to `current` when nothing should change.
    pub fn recommend(
        &mut self,
        spec: &ScalingSpec,
        current: u32,
        proposed: u32,
        now: TimestampMs,
    ) -> u32 {
        let stabilized = match spec.stabilization {
            Stabilization::Window => self.window(spec, current, proposed, now),
            Stabilization::Delay => self.delay(spec, current, proposed, now),
        };
        limit(spec, current, stabilized)
    }

    fn window(&mut self, spec: &ScalingSpec, current: u32, proposed: u32, now: TimestampMs) -> u32 {
        let keep = spec.up_delay.max(spec.down_delay);
        while self
            .history
            .front()
            .is_some_and(|(t, _)| *t <= now - duration_ms(keep))
        {
            self.history.pop_front();
        }
        let within = |delay: Duration| {
            let cutoff = now - duration_ms(delay);
            // HPA: `timestamp.After(cutoff)`, strictly; the newest proposal always counts.
            self.history
                .iter()
                .filter(move |(t, _)| *t > cutoff)
                .map(|(_, p)| *p)
                .chain(std::iter::once(proposed))
        };
        let up = within(spec.up_delay).min().unwrap_or(proposed);
        let down = within(spec.down_delay).max().unwrap_or(proposed);
        self.history.push_back((now, proposed));
        current.max(up).min(down)
    }

    fn delay(&mut self, spec: &ScalingSpec, current: u32, proposed: u32, now: TimestampMs) -> u32 {
        if proposed == current {
            self.pending = None;
            return current;
        }
        let up = proposed > current;
        let since = match self.pending {
            Some((dir, since)) if dir == up => since,
            _ => now,
        };
        let delay = if up { spec.up_delay } else { spec.down_delay };
        if now - since >= duration_ms(delay) {
            // Ray resets its decision counter once it acts.
            self.pending = None;
            proposed
        } else {
            self.pending = Some((up, since));
            current
        }
    }
}

/// The step limits, then `[min, max]`.
fn limit(spec: &ScalingSpec, current: u32, target: u32) -> u32 {
    let stepped = if target > current {
        spec.max_step_up
            .map_or(target, |s| target.min(current.saturating_add(s)))
    } else {
        spec.max_step_down
            .map_or(target, |s| target.max(current.saturating_sub(s)))
    };
    stepped.clamp(spec.min, spec.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn spec(stabilization: Stabilization, up_s: u64, down_s: u64) -> ScalingSpec {
        ScalingSpec {
            target: "t".into(),
            min: 1,
            max: 10,
            up_delay: Duration::from_secs(up_s),
            down_delay: Duration::from_secs(down_s),
            max_step_up: None,
            max_step_down: None,
            stabilization,
        }
    }

    /// Runs `(second, current, proposed)` ticks and returns each recommendation.
    fn run(spec: &ScalingSpec, ticks: &[(i64, u32, u32)]) -> Vec<u32> {
        let mut s = Stabilizer::new();
        ticks
            .iter()
            .map(|&(t, current, proposed)| s.recommend(spec, current, proposed, t * S))
            .collect()
    }

    #[test]
    fn window_scales_up_at_once_and_down_after_the_highest_of_the_window() {
        // HPA's defaults: up 0s, down 300s. Ticks every 60s; the target follows decisions.
        let sp = spec(Stabilization::Window, 0, 300);
        let got = run(
            &sp,
            &[
                // Up window: only this proposal, 5 > 2: up to 5.
                (0, 2, 5),
                // Down window (−240 s, 60 s]: {5, 3}, max 5: stay at 5.
                (60, 5, 3),
                // (−180 s, 120 s]: {5, 3, 3}: 5.
                (120, 5, 3),
                // (0 s, 300 s]: the 5 of 0 s is not after the cutoff: {3, 3, 3}: down to 3.
                (300, 5, 3),
                // Up window: {4} > 3: up to 4.
                (360, 3, 4),
            ],
        );
        assert_eq!(got, vec![5, 5, 5, 3, 4]);
    }

    #[test]
    fn window_up_delay_ignores_a_short_spike() {
        // up 60s, down 0s: the up-recommendation is the smallest proposal of the last
        // minute, so one tick of 8 among 2s moves nothing; 8 held for a minute does.
        let sp = spec(Stabilization::Window, 60, 0);
        let got = run(
            &sp,
            &[
                (0, 2, 2),
                (15, 2, 8), // (−45, 15]: {2, 8}: min 2 -> stay 2
                (30, 2, 2), // {2, 8, 2}: 2
                (45, 2, 8), // {2, 8, 2, 8}: 2
                (60, 2, 8), // (0, 60]: {8, 2, 8, 8}: 2 (the 30 s proposal still counts)
                (75, 2, 8), // (15, 75]: {2, 8, 8, 8}: 2
                (91, 2, 8), // (31, 91]: {8, 8, 8, 8}: 8
            ],
        );
        assert_eq!(got, vec![2, 2, 2, 2, 2, 2, 8]);
    }

    #[test]
    fn delay_waits_for_a_persistent_proposal_and_restarts_on_a_change_of_mind() {
        // Ray Serve: upscale_delay 30s, downscale_delay 60s, a tick every 10s.
        let sp = spec(Stabilization::Delay, 30, 60);
        let got = run(
            &sp,
            &[
                (0, 2, 4),   // up since 0: 0 s < 30 s -> 2
                (10, 2, 4),  // 10 s -> 2
                (20, 2, 2),  // equal: the wait restarts -> 2
                (30, 2, 5),  // up since 30 -> 2
                (60, 2, 6),  // 30 s >= 30 s -> the newest proposal, 6
                (70, 6, 3),  // down since 70 -> 6
                (100, 6, 7), // up: the down wait is gone; up since 100 -> 6
                (110, 6, 3), // down since 110 -> 6
                (170, 6, 3), // 60 s -> 3
            ],
        );
        assert_eq!(got, vec![2, 2, 2, 2, 6, 6, 6, 6, 3]);
    }

    #[test]
    fn steps_and_bounds_limit_every_decision() {
        let mut sp = spec(Stabilization::Delay, 0, 0);
        sp.min = 2;
        sp.max = 8;
        sp.max_step_up = Some(2);
        sp.max_step_down = Some(1);
        let got = run(
            &sp,
            &[
                (0, 2, 20), // up by at most 2: 4
                (1, 4, 20), // 6
                (2, 6, 20), // 8, and the max is 8
                (3, 8, 20), // 10 clamped to 8
                (4, 8, 0),  // down by at most 1: 7
                (5, 2, 0),  // 1 is below min: 2
                (6, 0, 0),  // a target at 0 proposed 0 is still raised to min, 2
            ],
        );
        assert_eq!(got, vec![4, 6, 8, 8, 7, 2, 2]);
    }
}
