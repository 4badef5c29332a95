//! The alert state machine: turns what rules return each tick into firing, resolved and
//! other notifications, one alert instance at a time.
//!
//! ```text
//!             holds                holds for `hold`                stops holding
//! inactive ─────────▶ pending ─────────────────────▶ firing ───────────────────────▶ recovering
//!    ▲                   │ stops holding      notify firing  ▲ holds again (silent)     │ for `keep_firing_for`
//!    │                   ▼                                   └──────────────────────────┤
//!    └─────────────── (dropped)                         notify resolved ◀───────────────┘
//! ```
//!
//! An alert instance is identified by its rule name and full label set (its fingerprint).
//! State lives here, outside the rules' `RuleSet` (`telltale-rules`), so it survives rule
//! reloads: a reloaded rule with the same name keeps its alerts.
//!
//! What a rule's `RULE` map adds to that ([`AlertPolicy`], documented for operators in
//! `rules/README.md`):
//!
//! * **Hysteresis** (`thresholds`): the rule returns values, and each severity's instance
//!   starts when the value crosses its `enter` threshold and holds until it crosses back past
//!   `exit`. One rule may warn at 80 and page at 95; each severity is its own instance (its
//!   `severity` label differs), as two Prometheus rules would be.
//! * **Flapping** (Kapacitor's measure, [`flapping`]): every instance remembers whether its
//!   condition held on each of its last `history` evaluations; when the weighted share of
//!   changes passes `high` one `flapping` notification goes out and the following changes
//!   are not announced until the share falls below `low`, when one `settled` notification
//!   says where it ended.
//! * **No data and errors**: [`AlertManager::nodata`] raises one `nodata` instance per
//!   series the rule reads that went silent; [`AlertManager::rule_failed`] raises one `error`
//!   instance once the rule has failed for `error_after`. A failing rule's condition alerts
//!   stay as they are (a broken rule is not evidence that the problem went away).
//! * **Repeats** per severity while firing, and `send_resolved: false`.
//!
//! Time is a parameter of every method; nothing here reads the clock.

mod flapping;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use flapping::FlapHistory;
use telltale_model::{
    Alert, AlertCandidate, AlertKind, AlertPolicy, AlertStatus, Labels, Notification,
    NotificationReason, RuleMeta, Severity, TimestampMs, duration_ms,
};

/// The label that marks `nodata` and `error` instances (`alertstate="nodata"`), so routes,
/// silences and inhibitions can tell them from the condition's alerts.
pub const ALERTSTATE_LABEL: &str = "alertstate";

/// Where an alert instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Seen, waiting for its rule's `hold` to pass.
    Pending,
    /// Held long enough; a firing notification was made (unless it was flapping).
    Firing,
    /// Firing, but its condition stopped holding less than `keep_firing_for` ago.
    Recovering,
    /// Not active; kept only for its flapping history (never shown as an alert).
    Inactive,
}

impl AlertState {
    /// Whether the instance counts as firing (firing or recovering).
    pub fn is_firing(self) -> bool {
        matches!(self, AlertState::Firing | AlertState::Recovering)
    }
}

/// An alert instance the state machine tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Where it stands.
    pub state: AlertState,
    /// The alert (`firing_since_ms` is 0 until it fires).
    pub alert: Alert,
    /// The last evaluation at which its condition held.
    #[serde(default)]
    pub last_seen_ms: TimestampMs,
    /// When a firing (or repeat) notification was last made for it.
    #[serde(default)]
    pub last_sent_ms: TimestampMs,
    /// What receivers were last told: firing or resolved (`None`: nothing yet).
    #[serde(default)]
    pub announced: Option<AlertStatus>,
    /// Its flapping history, when the rule detects flapping.
    #[serde(default)]
    pub flap: Option<FlapHistory>,
}

/// The alerts of every rule, by rule name then fingerprint, and the rules that are failing.
#[derive(Debug, Default)]
pub struct AlertManager {
    rules: BTreeMap<String, HashMap<String, ActiveAlert>>,
    /// Rule name → since when it has been failing, and its latest error.
    failing: HashMap<String, (TimestampMs, String)>,
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
pub fn notification_id(now_ms: TimestampMs) -> String {
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
    fn alert_labels(meta: &RuleMeta, extra: &Labels, severity: Severity) -> Labels {
        let mut labels = meta.labels.clone();
        labels.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert("alertname".into(), meta.name.clone());
        labels.insert("severity".into(), severity.as_str().into());
        labels
    }

    /// Advances the alerts of one rule with what its `evaluate()` returned at `now_ms`.
    /// Returns the notifications to send, in a stable order. A successful evaluation also
    /// resolves the rule's `error` alert, if it had one.
    pub fn process(
        &mut self,
        meta: &RuleMeta,
        candidates: &[AlertCandidate],
        now_ms: TimestampMs,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        if self.failing.remove(&meta.name).is_some() {
            out.extend(self.settle_kind(meta, AlertKind::Error, &HashMap::new(), now_ms));
        }
        let holding = conditions(meta, candidates, self.rules.get(&meta.name));
        out.extend(self.settle_kind(meta, AlertKind::Condition, &holding, now_ms));
        sort_notifications(&mut out);
        out
    }

    /// The rule's `evaluate()` failed at `now_ms` with `message`. Its condition alerts stay
    /// as they are; once it has failed for its `error_after`, one `error` alert fires
    /// (severity: the rule's; summary: the error; resolved by the next success).
    pub fn rule_failed(
        &mut self,
        meta: &RuleMeta,
        message: &str,
        now_ms: TimestampMs,
    ) -> Vec<Notification> {
        let since = {
            let entry = self
                .failing
                .entry(meta.name.clone())
                .or_insert_with(|| (now_ms, String::new()));
            entry.1 = message.to_string();
            entry.0
        };
        let mut holding = HashMap::new();
        if now_ms.saturating_sub(since) >= duration_ms(meta.policy.error_after) {
            let labels = Self::alert_labels(
                meta,
                &Labels::from([(ALERTSTATE_LABEL.to_string(), "error".to_string())]),
                meta.severity,
            );
            let summary = format!(
                "rule `{}` ({}) has failed to evaluate since {}: {message}",
                meta.name,
                meta.file.display(),
                format_age(now_ms - since)
            );
            holding.insert(
                fingerprint(&meta.name, &labels),
                Holding {
                    labels,
                    severity: meta.severity,
                    value: f64::NAN,
                    summary,
                },
            );
        }
        let mut out = self.settle_kind(meta, AlertKind::Error, &holding, now_ms);
        sort_notifications(&mut out);
        out
    }

    /// The series `meta`'s rule reads that have sent nothing for its `nodata` time, each as
    /// its labels and the time of its newest sample: each gets a `nodata` alert, fired at
    /// once (the silence was its hold) and resolved when the series is no longer silent.
    /// Pass every silent series on every tick, `[]` when none.
    pub fn nodata(
        &mut self,
        meta: &RuleMeta,
        silent: &[(Labels, TimestampMs)],
        now_ms: TimestampMs,
    ) -> Vec<Notification> {
        let mut holding = HashMap::with_capacity(silent.len());
        for (series, last_ms) in silent {
            let mut extra = series.clone();
            extra.insert(ALERTSTATE_LABEL.into(), "nodata".into());
            let labels = Self::alert_labels(meta, &extra, meta.severity);
            let summary = if *last_ms > 0 {
                format!(
                    "no data from {} for {}",
                    describe(series),
                    format_age(now_ms - last_ms)
                )
            } else {
                format!("no data from {}", describe(series))
            };
            holding.insert(
                fingerprint(&meta.name, &labels),
                Holding {
                    labels,
                    severity: meta.severity,
                    value: if *last_ms > 0 {
                        (now_ms - last_ms) as f64 / 1000.0
                    } else {
                        f64::NAN
                    },
                    summary,
                },
            );
        }
        let mut out = self.settle_kind(meta, AlertKind::Nodata, &holding, now_ms);
        sort_notifications(&mut out);
        out
    }

    /// Moves every instance of `kind` of the rule forward: those in `holding` hold at
    /// `now_ms`, the others do not.
    fn settle_kind(
        &mut self,
        meta: &RuleMeta,
        kind: AlertKind,
        holding: &HashMap<String, Holding>,
        now_ms: TimestampMs,
    ) -> Vec<Notification> {
        let policy = &meta.policy;
        // Nodata and error instances have no hold (their own time was the hold).
        let hold_ms = match kind {
            AlertKind::Condition => duration_ms(meta.hold),
            AlertKind::Nodata | AlertKind::Error => 0,
        };
        let keep_ms = match kind {
            AlertKind::Condition => duration_ms(policy.keep_firing_for),
            AlertKind::Nodata | AlertKind::Error => 0,
        };
        let file = meta.file.display().to_string();
        let alerts = self.rules.entry(meta.name.clone()).or_default();
        let mut out = Vec::new();

        for (fp, h) in holding {
            let entry = alerts.entry(fp.clone()).or_insert_with(|| ActiveAlert {
                state: AlertState::Inactive,
                alert: Alert {
                    fingerprint: fp.clone(),
                    rule: meta.name.clone(),
                    severity: h.severity,
                    labels: h.labels.clone(),
                    summary: h.summary.clone(),
                    value: h.value,
                    active_since_ms: now_ms,
                    firing_since_ms: 0,
                    resolved_at_ms: None,
                    rule_file: file.clone(),
                    kind,
                    ack: None,
                },
                last_seen_ms: now_ms,
                last_sent_ms: 0,
                announced: None,
                flap: None,
            });
            // Updated every tick: the latest value and wording are what people should see.
            entry.alert.value = h.value;
            entry.alert.summary.clone_from(&h.summary);
            entry.alert.labels = h.labels.clone();
            entry.alert.severity = h.severity;
            entry.alert.rule_file.clone_from(&file);
            entry.last_seen_ms = now_ms;
            match entry.state {
                AlertState::Inactive => {
                    entry.state = AlertState::Pending;
                    entry.alert.active_since_ms = now_ms;
                    entry.alert.firing_since_ms = 0;
                    entry.alert.resolved_at_ms = None;
                }
                // It never stopped firing as far as receivers know.
                AlertState::Recovering => entry.state = AlertState::Firing,
                AlertState::Pending | AlertState::Firing => {}
            }
            if entry.state == AlertState::Pending
                && now_ms.saturating_sub(entry.alert.active_since_ms) >= hold_ms
            {
                entry.state = AlertState::Firing;
                entry.alert.firing_since_ms = now_ms;
            }
        }

        for (fp, entry) in alerts.iter_mut() {
            if entry.alert.kind != kind || holding.contains_key(fp) {
                continue;
            }
            match entry.state {
                AlertState::Pending => entry.state = AlertState::Inactive,
                AlertState::Firing | AlertState::Recovering => {
                    if now_ms.saturating_sub(entry.last_seen_ms) < keep_ms {
                        entry.state = AlertState::Recovering;
                    } else {
                        entry.state = AlertState::Inactive;
                        entry.alert.resolved_at_ms = Some(now_ms);
                    }
                }
                AlertState::Inactive => {}
            }
        }

        // What to tell receivers, and the flapping bookkeeping, in one pass.
        for (fp, entry) in alerts.iter_mut() {
            if entry.alert.kind != kind {
                continue;
            }
            let held = holding.contains_key(fp);
            // A reload may have turned flap detection on or off.
            let flap = match policy.flapping {
                Some(settings) => Some(
                    entry
                        .flap
                        .get_or_insert_with(|| FlapHistory::new(settings))
                        .record(held, settings),
                ),
                None => {
                    entry.flap = None;
                    None
                }
            };
            let status = entry.state.is_firing().then_some(AlertStatus::Firing);
            let status = status.or(match entry.announced {
                Some(AlertStatus::Firing) if entry.state == AlertState::Inactive => {
                    Some(AlertStatus::Resolved)
                }
                _ => None,
            });
            match flap {
                Some(flapping::Change::Started) => {
                    let now_status = if entry.state.is_firing() {
                        AlertStatus::Firing
                    } else {
                        AlertStatus::Resolved
                    };
                    out.push(note(
                        entry,
                        now_status,
                        NotificationReason::Flapping,
                        now_ms,
                    ));
                    continue;
                }
                Some(flapping::Change::Settled) => {
                    let now_status = if entry.state.is_firing() {
                        AlertStatus::Firing
                    } else {
                        AlertStatus::Resolved
                    };
                    if now_status == AlertStatus::Firing {
                        entry.last_sent_ms = now_ms;
                    }
                    out.push(note(entry, now_status, NotificationReason::Settled, now_ms));
                    entry.announced = Some(now_status);
                    continue;
                }
                Some(flapping::Change::Flapping) => continue,
                Some(flapping::Change::Steady) | None => {}
            }
            match status {
                Some(AlertStatus::Firing) if entry.announced != Some(AlertStatus::Firing) => {
                    entry.last_sent_ms = now_ms;
                    entry.announced = Some(AlertStatus::Firing);
                    out.push(note(
                        entry,
                        AlertStatus::Firing,
                        NotificationReason::StateChange,
                        now_ms,
                    ));
                }
                Some(AlertStatus::Firing) => {
                    let repeat = policy.repeat_for(entry.alert.severity).map(duration_ms);
                    if repeat.is_some_and(|r| r > 0 && now_ms - entry.last_sent_ms >= r) {
                        entry.last_sent_ms = now_ms;
                        out.push(note(
                            entry,
                            AlertStatus::Firing,
                            NotificationReason::Repeat,
                            now_ms,
                        ));
                    }
                }
                Some(AlertStatus::Resolved) => {
                    entry.announced = Some(AlertStatus::Resolved);
                    // Without `send_resolved` the resolve still goes to the alert manager,
                    // which must learn that the alert ended, marked for nobody else.
                    let mut n = note(
                        entry,
                        AlertStatus::Resolved,
                        NotificationReason::StateChange,
                        now_ms,
                    );
                    n.quiet = !policy.send_resolved;
                    out.push(n);
                }
                None => {}
            }
        }

        // An inactive instance is kept only while its history can still show flapping.
        alerts.retain(|_, a| {
            a.state != AlertState::Inactive
                || a.flap.as_ref().is_some_and(FlapHistory::worth_keeping)
        });
        if alerts.is_empty() {
            self.rules.remove(&meta.name);
        }
        out
    }

    /// The rule is gone (its file was deleted or it was renamed): its firing alerts
    /// resolve, its pending ones are dropped.
    pub fn rule_removed(&mut self, rule: &str, now_ms: TimestampMs) -> Vec<Notification> {
        self.failing.remove(rule);
        let Some(alerts) = self.rules.remove(rule) else {
            return Vec::new();
        };
        let mut out: Vec<Notification> = alerts
            .into_values()
            .filter(|a| a.announced == Some(AlertStatus::Firing))
            .map(|mut a| {
                a.alert.resolved_at_ms = Some(now_ms);
                note(
                    &a,
                    AlertStatus::Resolved,
                    NotificationReason::StateChange,
                    now_ms,
                )
            })
            .collect();
        sort_notifications(&mut out);
        out
    }

    /// Pending and firing alerts, by rule then labels. Pending ones have
    /// `firing_since_ms == 0`; [`AlertManager::active_states`] tells them apart.
    pub fn active(&self) -> Vec<Alert> {
        self.active_states().into_iter().map(|a| a.alert).collect()
    }

    /// Pending, firing and recovering alerts with their state, by rule then labels.
    pub fn active_states(&self) -> Vec<ActiveAlert> {
        let mut out: Vec<ActiveAlert> = self
            .rules
            .values()
            .flat_map(|m| m.values())
            .filter(|a| a.state != AlertState::Inactive)
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.alert.rule, &a.alert.labels).cmp(&(&b.alert.rule, &b.alert.labels)));
        out
    }

    /// Every instance tracked, inactive ones kept for their flapping history included, by
    /// rule then labels: the snapshot to persist for [`AlertManager::restore`].
    pub fn snapshot(&self) -> Vec<ActiveAlert> {
        let mut out: Vec<ActiveAlert> = self
            .rules
            .values()
            .flat_map(|m| m.values().cloned())
            .collect();
        out.sort_by(|a, b| (&a.alert.rule, &a.alert.labels).cmp(&(&b.alert.rule, &b.alert.labels)));
        out
    }

    /// Restores alerts saved with [`AlertManager::snapshot`] (e.g. across a restart), so
    /// firing alerts are not announced again and resolve properly later. Alerts saved before
    /// `announced` existed count as announced when they were firing.
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = ActiveAlert>) {
        for mut a in alerts {
            if a.announced.is_none() && a.state.is_firing() {
                a.announced = Some(AlertStatus::Firing);
                a.last_sent_ms = a.alert.firing_since_ms;
            }
            if a.last_seen_ms == 0 {
                a.last_seen_ms = a.alert.active_since_ms;
            }
            self.rules
                .entry(a.alert.rule.clone())
                .or_default()
                .insert(a.alert.fingerprint.clone(), a);
        }
    }
}

/// One instance whose condition holds on this tick.
#[derive(Debug)]
struct Holding {
    labels: Labels,
    severity: Severity,
    value: f64,
    summary: String,
}

/// The instances whose condition holds this tick, by fingerprint. Without thresholds each
/// candidate holds at the rule's severity. With thresholds each candidate is tried against
/// every severity's pair: an instance that is not active enters past `enter`; an active one
/// (pending, firing, recovering) holds until its value is past `exit`.
fn conditions(
    meta: &RuleMeta,
    candidates: &[AlertCandidate],
    current: Option<&HashMap<String, ActiveAlert>>,
) -> HashMap<String, Holding> {
    let policy: &AlertPolicy = &meta.policy;
    let mut out = HashMap::with_capacity(candidates.len());
    let mut add = |c: &AlertCandidate, severity: Severity, check: Option<(f64, f64)>| {
        let labels = AlertManager::alert_labels(meta, &c.labels, severity);
        let fp = fingerprint(&meta.name, &labels);
        if let Some((enter, exit)) = check {
            let active = current
                .and_then(|m| m.get(&fp))
                .is_some_and(|a| a.state != AlertState::Inactive);
            let holds = if active {
                !policy.direction.exited(c.value, exit)
            } else {
                policy.direction.entered(c.value, enter)
            };
            if !holds {
                return;
            }
        }
        let summary = c.summary.clone().unwrap_or_else(|| meta.summary.clone());
        out.insert(
            fp,
            Holding {
                labels,
                severity,
                value: c.value,
                summary,
            },
        );
    };
    for c in candidates {
        if policy.thresholds.is_empty() {
            add(c, meta.severity, None);
        } else {
            for t in &policy.thresholds {
                add(c, t.severity, Some((t.enter, t.exit)));
            }
        }
    }
    out
}

/// A notification about `entry` now.
fn note(
    entry: &ActiveAlert,
    status: AlertStatus,
    reason: NotificationReason,
    now_ms: TimestampMs,
) -> Notification {
    let mut alert = entry.alert.clone();
    if status == AlertStatus::Resolved && alert.resolved_at_ms.is_none() {
        alert.resolved_at_ms = Some(now_ms);
    }
    if status == AlertStatus::Firing {
        alert.resolved_at_ms = None;
    }
    Notification {
        id: notification_id(now_ms),
        status,
        reason,
        quiet: false,
        alert,
    }
}

/// `{mount="/data"}` for a summary (`{}` when the series has no labels).
fn describe(labels: &Labels) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = telltale_model::write_labels(&mut s, labels);
    if s.is_empty() { "{}".into() } else { s }
}

/// `90s`, `5m`, `2h 3m`: how long ago, for summaries.
fn format_age(ms: i64) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        _ => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// Deterministic order (the state maps are unordered): by rule then labels.
fn sort_notifications(n: &mut [Notification]) {
    n.sort_by(|a, b| (&a.alert.rule, &a.alert.labels).cmp(&(&b.alert.rule, &b.alert.labels)));
}

#[cfg(test)]
mod tests;
