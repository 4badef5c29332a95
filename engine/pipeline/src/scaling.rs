//! The scaling stage: the proposals of scaling rules, taken from each tick's rule results,
//! become decisions (`telltale_scaling::Autoscaler`), which are recorded in the durable
//! store with their inputs, announced to the notifiers like alerts, and applied by the
//! target's scaler when `scalers:` has one.
//!
//! It runs in a task of its own, fed through a bounded channel, so a scaler waiting on a
//! slow Ray dashboard (up to its timeout) never delays rule evaluation. A proposal that
//! finds the channel full is dropped: the next tick brings a newer one.
//!
//! A decision is announced as a firing `Alert` of the scaling rule (kind `condition`,
//! reason `state_change`, the rule's severity), summary `scale TARGET from 2 to 5:
//! REASON`, value the new count, labels the rule's plus `target`, `current` and `desired`,
//! so routes can send scaling decisions elsewhere (`target=~".+"`). It never resolves: a
//! decision is an event, not a state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use telltale_config::Config;
use telltale_model::{
    Alert, AlertKind, AlertStatus, Notification, NotificationReason, RuleMeta, ScalingDecision,
    ScalingProposal, TimestampMs,
};
use telltale_rules::RuleResult;
use telltale_scaling::{Autoscaler, Scaler};
use telltale_store::disk::Database;

/// Proposals waiting for the stage; at one per scaling rule per tick, more is a stuck
/// scaler.
const QUEUE: usize = 256;

/// One tick's proposal of one rule.
struct Offer {
    rule: Arc<RuleMeta>,
    proposal: ScalingProposal,
    now: TimestampMs,
}

/// The rule task's end of the stage.
pub(crate) struct ScalingHandle {
    tx: mpsc::Sender<Offer>,
    /// The stage's decisions, as notifications for the alert manager to route.
    notices: mpsc::Receiver<Notification>,
}

impl ScalingHandle {
    /// The next decision to notify; pending forever once the stage has stopped.
    pub(crate) async fn notice(&mut self) -> Notification {
        match self.notices.recv().await {
            Some(n) => n,
            None => std::future::pending().await,
        }
    }

    /// Hands the tick's scaling proposals to the stage (alert rules and failed rules have
    /// none).
    pub(crate) fn offer(&self, results: &[RuleResult], now: TimestampMs) {
        for r in results {
            let Some(proposal) = &r.scaling else { continue };
            let offer = Offer {
                rule: r.meta.clone(),
                proposal: proposal.clone(),
                now,
            };
            if self.tx.try_send(offer).is_err() {
                warn!(rule = %r.meta.name, "scaling stage busy (a slow scaler?): this tick's proposal is dropped");
            }
        }
    }
}

/// The stage's state.
pub(crate) struct ScalingStage {
    rx: mpsc::Receiver<Offer>,
    scalers: HashMap<String, Scaler>,
    autoscalers: HashMap<String, Autoscaler>,
    database: Option<Arc<Database>>,
    /// Decisions as notifications, to the rule task, which routes them through the alert
    /// manager like alerts (see `Alerting::route_event`).
    notices: mpsc::Sender<Notification>,
    /// The last problem logged per rule, so a problem that lasts is logged once.
    logged: HashMap<String, String>,
    /// Rules already told their target has no scaler.
    unscaled: HashSet<String>,
}

/// Builds the stage from the config's `scalers:`. A scaler that cannot be built (the
/// config's check refuses what would make it fail) is logged and left out.
pub(crate) fn stage(
    cfg: &Config,
    database: Option<Arc<Database>>,
) -> (ScalingHandle, ScalingStage) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (notices, notices_rx) = mpsc::channel(QUEUE);
    let mut scalers = HashMap::new();
    for c in &cfg.scalers {
        match Scaler::build(c) {
            Ok(s) => {
                scalers.insert(c.name.clone(), s);
            }
            Err(e) => error!("{e}; its decisions are recorded and notified only"),
        }
    }
    (
        ScalingHandle {
            tx,
            notices: notices_rx,
        },
        ScalingStage {
            rx,
            scalers,
            autoscalers: HashMap::new(),
            database,
            notices,
            logged: HashMap::new(),
            unscaled: HashSet::new(),
        },
    )
}

impl ScalingStage {
    /// Runs until `stop`.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                Some(offer) = self.rx.recv() => self.handle(offer).await,
                _ = stop.changed() => break,
            }
        }
    }

    /// Logs `problem` for `rule` unless it is the one logged last.
    fn problem(&mut self, rule: &str, problem: String) {
        if self.logged.get(rule) != Some(&problem) {
            warn!(rule = %rule, "{problem}");
            self.logged.insert(rule.to_string(), problem);
        }
    }

    async fn handle(&mut self, offer: Offer) {
        let Some(spec) = offer.rule.scaling.clone() else {
            return;
        };
        let rule = offer.rule.name.clone();
        let scaler = self.scalers.get(&spec.target).cloned();
        if scaler.is_none() && self.unscaled.insert(rule.clone()) {
            info!(rule = %rule, "scaling rule `{rule}`: no entry of `scalers:` is named `{}`; its decisions are recorded and notified, not applied", spec.target);
        }
        let decided = self
            .autoscalers
            .get(&rule)
            .and_then(Autoscaler::last_decided);
        let current = match (offer.proposal.current, &scaler) {
            (Some(c), _) => Some(c),
            (None, Some(s)) => match s.current().await {
                Ok(c) => c.or(decided),
                Err(e) => {
                    self.problem(&rule, format!("cannot read the current replica count: {e}"));
                    return;
                }
            },
            (None, None) => decided,
        };
        let Some(current) = current else {
            self.problem(
                &rule,
                format!(
                    "scaling rule `{rule}` gives no `current` and its target `{}` cannot report one: return current: from evaluate() (a ray_serve scaler reports it)",
                    spec.target
                ),
            );
            return;
        };
        self.logged.remove(&rule);
        let Some(decision) = self.autoscalers.entry(rule.clone()).or_default().step(
            &rule,
            &spec,
            &offer.proposal,
            current,
            offer.now,
        ) else {
            return;
        };
        info!(rule = %rule, target = %decision.target, "{}", telltale_scaling::summary(&decision));
        let id = self.record(&decision);
        // Only a stopping engine closes the channel; the decision is recorded meanwhile.
        let _ = self
            .notices
            .send(notification(&offer.rule, &decision))
            .await;
        let Some(scaler) = scaler else { return };
        let outcome = match scaler.apply(&decision).await {
            Ok(()) => {
                info!(rule = %rule, "{}: applied by scaler `{}`", telltale_scaling::summary(&decision), scaler.name());
                "applied".to_string()
            }
            Err(e) => {
                error!(rule = %rule, "cannot apply \"{}\": {e}", telltale_scaling::summary(&decision));
                if let Some(a) = self.autoscalers.get_mut(&rule) {
                    a.apply_failed();
                }
                e.to_string()
            }
        };
        if let (Some(db), Some(id)) = (&self.database, id)
            && let Err(e) = tokio::task::block_in_place(|| db.scaling_outcome(id, &outcome))
        {
            warn!("cannot record the outcome of a scaling decision: {e}");
        }
    }

    /// Writes the decision to the durable store, if there is one; its row id.
    fn record(&self, d: &ScalingDecision) -> Option<i64> {
        let db = self.database.as_ref()?;
        match tokio::task::block_in_place(|| db.record_scaling(d)) {
            Ok(id) => Some(id),
            Err(e) => {
                warn!("cannot record a scaling decision in the durable store: {e}");
                None
            }
        }
    }
}

/// The notification announcing decision `d` of `rule`.
pub(crate) fn notification(rule: &RuleMeta, d: &ScalingDecision) -> Notification {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    labels.insert("target".into(), d.target.clone());
    labels.insert("current".into(), d.current.to_string());
    labels.insert("desired".into(), d.desired.to_string());
    Notification {
        id: telltale_alerts::notification_id(d.time_ms),
        status: AlertStatus::Firing,
        reason: NotificationReason::StateChange,
        quiet: false,
        alert: Alert {
            fingerprint: telltale_alerts::fingerprint(&rule.name, &labels),
            rule: rule.name.clone(),
            severity: rule.severity,
            summary: telltale_scaling::summary(d),
            value: f64::from(d.desired),
            active_since_ms: d.time_ms,
            firing_since_ms: d.time_ms,
            resolved_at_ms: None,
            rule_file: rule.file.display().to_string(),
            kind: AlertKind::Condition,
            ack: None,
            labels,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use telltale_model::{AlertPolicy, Labels, ScalingSpec, Severity, Stabilization};

    use super::*;

    #[test]
    fn a_decision_is_announced_as_a_firing_alert_of_its_rule() {
        let rule = RuleMeta {
            name: "scale_fe".into(),
            severity: Severity::Info,
            hold: Duration::ZERO,
            labels: Labels::from_iter([("team".to_string(), "ml".to_string())]),
            summary: String::new(),
            file: PathBuf::from("rules/scale.rhai"),
            policy: AlertPolicy::default(),
            scaling: Some(ScalingSpec {
                target: "fe".into(),
                min: 1,
                max: 8,
                up_delay: Duration::ZERO,
                down_delay: Duration::from_secs(300),
                max_step_up: None,
                max_step_down: None,
                stabilization: Stabilization::Window,
            }),
        };
        let d = ScalingDecision {
            rule: "scale_fe".into(),
            target: "fe".into(),
            current: 2,
            desired: 5,
            proposed: 5,
            reason: "queue 120 > 40 per replica".into(),
            inputs: BTreeMap::new(),
            time_ms: 1_700_000_000_000,
        };
        let n = notification(&rule, &d);
        assert!(n.id.starts_with("msg_"), "{}", n.id);
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(
            n.alert.summary,
            "scale fe from 2 to 5: queue 120 > 40 per replica"
        );
        assert_eq!(n.alert.value, 5.0);
        assert_eq!(n.alert.kind, AlertKind::Condition);
        let labels: Vec<(&str, &str)> = n
            .alert
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("alertname", "scale_fe"),
                ("current", "2"),
                ("desired", "5"),
                ("severity", "info"),
                ("target", "fe"),
                ("team", "ml"),
            ]
        );
    }
}
