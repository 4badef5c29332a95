//! The alert state machine: turns what rules return each tick into firing and resolved
//! notifications.
//!
//! ```text
//!             seen                 seen for `hold`
//! inactive ─────────▶ pending ─────────────────────▶ firing ──(not seen)──▶ resolved
//!                        │ (not seen)                        notify Firing      notify Resolved
//!                        ▼
//!                    dropped silently
//! ```
//!
//! An alert instance is identified by its rule name and full label set (its fingerprint).
//! State lives here, outside the rules' `RuleSet` (`telltale-rules`), so it survives rule
//! reloads: a reloaded rule with the same name keeps its alerts. A rule whose evaluation
//! failed keeps its alerts as they are (a broken rule is not evidence that the problem went
//! away).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use telltale_model::{
    Alert, AlertCandidate, AlertStatus, Labels, Notification, RuleMeta, TimestampMs, duration_ms,
};

/// Where an active alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Seen, waiting for its rule's `hold` to pass.
    Pending,
    /// Held long enough; a Firing notification was made.
    Firing,
}

/// An alert that is pending or firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Pending or firing.
    pub state: AlertState,
    /// The alert (`firing_since_ms` is 0 while pending).
    pub alert: Alert,
}

/// The alerts of every rule, by rule name then fingerprint.
#[derive(Debug, Default)]
pub struct AlertManager {
    rules: BTreeMap<String, HashMap<String, ActiveAlert>>,
}

/// The stable identity of an alert instance: hex of the first 8 bytes of SHA-256 over the
/// rule name and the full label set (sorted, each part length-prefixed so no two
/// different sets hash the same input).
pub fn fingerprint(rule: &str, labels: &Labels) -> String {
    let mut h = Sha256::new();
    let mut part = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    part(rule);
    for (k, v) in labels {
        part(k);
        part(v);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A new notification id: `msg_` and a ULID (26 characters of Crockford base32: 48-bit
/// millisecond time then 80 random bits), so ids sort by creation time and never collide in
/// practice.
pub(crate) fn notification_id(now_ms: TimestampMs) -> String {
    // `from_parts` keeps the low 48 bits of the time and the low 80 of the random part.
    let millis = u64::try_from(now_ms).unwrap_or(0);
    format!("msg_{}", ulid::Ulid::from_parts(millis, rand::random()))
}

impl AlertManager {
    /// No alerts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The labels of an alert: the rule's, overlaid by the candidate's, plus `alertname`
    /// and `severity` (which always win).
    fn alert_labels(meta: &RuleMeta, candidate: &AlertCandidate) -> Labels {
        let mut labels = meta.labels.clone();
        labels.extend(candidate.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert("alertname".into(), meta.name.clone());
        labels.insert("severity".into(), meta.severity.as_str().into());
        labels
    }

    /// Advances the alerts of one rule with what its `evaluate()` returned at `now_ms`.
    /// Returns the notifications to send (Firing for alerts that held for `hold`,
    /// Resolved for firing alerts no longer returned).
    pub fn process(
        &mut self,
        meta: &RuleMeta,
        candidates: &[AlertCandidate],
        now_ms: TimestampMs,
    ) -> Vec<Notification> {
        let hold_ms = duration_ms(meta.hold);
        let file = meta.file.display().to_string();
        let alerts = self.rules.entry(meta.name.clone()).or_default();
        let mut seen: HashMap<String, ()> = HashMap::with_capacity(candidates.len());
        let mut out = Vec::new();

        for candidate in candidates {
            let labels = Self::alert_labels(meta, candidate);
            let fp = fingerprint(&meta.name, &labels);
            let summary = candidate
                .summary
                .clone()
                .unwrap_or_else(|| meta.summary.clone());
            let entry = alerts.entry(fp.clone()).or_insert_with(|| ActiveAlert {
                state: AlertState::Pending,
                alert: Alert {
                    fingerprint: fp.clone(),
                    rule: meta.name.clone(),
                    severity: meta.severity,
                    labels: labels.clone(),
                    summary: summary.clone(),
                    value: candidate.value,
                    active_since_ms: now_ms,
                    firing_since_ms: 0,
                    resolved_at_ms: None,
                    rule_file: file.clone(),
                    kind: telltale_model::AlertKind::Condition,
                },
            });
            // Updated every tick: the latest value and wording are what people should see.
            entry.alert.value = candidate.value;
            entry.alert.summary = summary;
            entry.alert.labels = labels;
            entry.alert.severity = meta.severity;
            entry.alert.rule_file.clone_from(&file);
            if entry.state == AlertState::Pending
                && now_ms.saturating_sub(entry.alert.active_since_ms) >= hold_ms
            {
                entry.state = AlertState::Firing;
                entry.alert.firing_since_ms = now_ms;
                out.push(Notification {
                    id: notification_id(now_ms),
                    status: AlertStatus::Firing,
                    reason: telltale_model::NotificationReason::StateChange,
                    alert: entry.alert.clone(),
                });
            }
            seen.insert(fp, ());
        }

        let gone: Vec<String> = alerts
            .keys()
            .filter(|fp| !seen.contains_key(*fp))
            .cloned()
            .collect();
        for fp in gone {
            if let Some(active) = alerts.remove(&fp)
                && active.state == AlertState::Firing
            {
                out.push(resolved(active.alert, now_ms));
            }
        }
        if alerts.is_empty() {
            self.rules.remove(&meta.name);
        }
        sort_notifications(&mut out);
        out
    }

    /// The rule is gone (its file was deleted or it was renamed): its firing alerts
    /// resolve, its pending ones are dropped.
    pub fn rule_removed(&mut self, rule: &str, now_ms: TimestampMs) -> Vec<Notification> {
        let Some(alerts) = self.rules.remove(rule) else {
            return Vec::new();
        };
        let mut out: Vec<Notification> = alerts
            .into_values()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| resolved(a.alert, now_ms))
            .collect();
        sort_notifications(&mut out);
        out
    }

    /// Pending and firing alerts, by rule then labels. Pending ones have
    /// `firing_since_ms == 0`; [`AlertManager::active_states`] tells them apart.
    pub fn active(&self) -> Vec<Alert> {
        self.active_states().into_iter().map(|a| a.alert).collect()
    }

    /// Pending and firing alerts with their state, by rule then labels. Also the snapshot
    /// to persist for [`AlertManager::restore`].
    pub fn active_states(&self) -> Vec<ActiveAlert> {
        let mut out: Vec<ActiveAlert> = self
            .rules
            .values()
            .flat_map(|m| m.values().cloned())
            .collect();
        out.sort_by(|a, b| (&a.alert.rule, &a.alert.labels).cmp(&(&b.alert.rule, &b.alert.labels)));
        out
    }

    /// Restores alerts saved with [`AlertManager::active_states`] (e.g. across a restart),
    /// so firing alerts are not announced again and resolve properly later.
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = ActiveAlert>) {
        for a in alerts {
            self.rules
                .entry(a.alert.rule.clone())
                .or_default()
                .insert(a.alert.fingerprint.clone(), a);
        }
    }
}

/// The Resolved notification for a firing alert.
fn resolved(mut alert: Alert, now_ms: TimestampMs) -> Notification {
    alert.resolved_at_ms = Some(now_ms);
    Notification {
        id: notification_id(now_ms),
        status: AlertStatus::Resolved,
        reason: telltale_model::NotificationReason::StateChange,
        alert,
    }
}

/// Deterministic order (the state maps are unordered): by rule then labels.
fn sort_notifications(n: &mut [Notification]) {
    n.sort_by(|a, b| (&a.alert.rule, &a.alert.labels).cmp(&(&b.alert.rule, &b.alert.labels)));
}

#[cfg(test)]
mod tests;
