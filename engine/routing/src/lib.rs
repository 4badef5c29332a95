//! The alert manager: between the alert state machine (`engine/alerts`) and the notifiers,
//! it decides who gets which notification, and when.
//!
//! Owns the routing tree, grouping (`group_wait`, `group_interval`, `repeat_interval`),
//! per-alert resolve, time intervals, silences, inhibition, acknowledgement, snooze and
//! escalation policies (Alertmanager's and PagerDuty's semantics; `docs/alerting.md`).
//! Invariants:
//! * **Time is a parameter.** Every method takes `now_ms`; nothing reads a clock, sleeps or
//!   spawns. [`AlertRouter::next_deadline`] says when [`AlertRouter::tick`] has work.
//! * **Every state is serializable.** [`AlertRouter::snapshot`] returns a [`RoutingState`]
//!   (serde) and [`AlertRouter::restore`] of it behaves exactly as the router it came from;
//!   the indexes (timers, inhibition sources, silences by label) are rebuilt, never stored.
//! * **Work per notification follows its route and group**, not the number of alerts:
//!   inhibition sources are indexed by rule and `equal` values, silences by one of their
//!   equality matchers, timers in an ordered set.
//! * A notifier gets one delivery per alert and status from one call, whatever the number
//!   of routes and levels that reach it.

mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use telltale_config::Config;
use telltale_config::alerting::{LevelCondition, Matcher, ResolveMode};
use telltale_model::{
    Acknowledgement, Alert, AlertStatus, Labels, Notification, NotificationReason, TimestampMs,
};

use tree::Tree;

/// How long an expired silence stays listed (Alertmanager's `--data.retention`, 120h).
pub const SILENCE_RETENTION_MS: i64 = 120 * 3600 * 1000;

/// One notification for one notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The notifier's config name.
    pub notifier: String,
    /// What it gets.
    pub notification: Notification,
    /// The group the notification belongs to (`ROUTE:{labels}`, Alertmanager's form);
    /// `escalation:POLICY` for escalation levels.
    pub group_key: String,
}

/// A configuration the router cannot use (the config's `check` refuses it first, with a
/// position; this is the engine's own guard).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("alerting: {0}")]
pub struct BuildError(pub String);

/// Why an operator's command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No firing alert has this fingerprint.
    #[error("no firing alert has the fingerprint `{0}`; `telltale alerts` lists them")]
    UnknownAlert(String),
    /// No silence has this id.
    #[error("no silence has the id `{0}`; `telltale silence list` lists them")]
    UnknownSilence(String),
    /// A silence with this id exists.
    #[error("a silence with the id `{0}` exists already")]
    DuplicateSilence(String),
    /// A matcher does not parse.
    #[error("{0}")]
    BadMatcher(String),
    /// Something else about the command is wrong; the message says what.
    #[error("{0}")]
    Invalid(String),
}

/// A silence as an operator creates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceSpec {
    /// Unique id (a ULID or a UUID, made by whoever creates it).
    pub id: String,
    /// Matchers (`name=value`, `!=`, `=~`, `!~`), all of which an alert must meet.
    pub matchers: Vec<String>,
    /// From when (ms since the epoch).
    pub starts_at_ms: TimestampMs,
    /// Until when; `None` only with `until_resolved`.
    pub ends_at_ms: Option<TimestampMs>,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Ends as soon as every alert it silenced has resolved (alertmanager#226/#3825).
    #[serde(default)]
    pub until_resolved: bool,
}

/// Something an operator does. Serialized (tagged by `op`) for the durable store's command
/// queue, which `telltale ack/silence/snooze` fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Acknowledge a firing alert: unacked escalation levels stop, repeats (the route's and
    /// the rule's) stop.
    Ack {
        /// The alert.
        fingerprint: String,
        /// Who and why.
        by: String,
        /// Why.
        comment: String,
    },
    /// Withdraw an acknowledgement: escalation starts over from level 1.
    Unack {
        /// The alert.
        fingerprint: String,
        /// Who.
        by: String,
    },
    /// Nothing about this alert until `until_ms`; then it is announced again if it still
    /// fires, and escalation starts over.
    Snooze {
        /// The alert.
        fingerprint: String,
        /// Until when.
        until_ms: TimestampMs,
        /// Who.
        by: String,
        /// Why.
        comment: String,
    },
    /// Add a silence.
    AddSilence(SilenceSpec),
    /// End a silence now.
    ExpireSilence {
        /// Its id.
        id: String,
    },
}

/// A silence and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// As created.
    pub spec: SilenceSpec,
    /// When it was ended early (by `ExpireSilence` or `until_resolved`).
    pub expired_at_ms: Option<TimestampMs>,
    /// The firing alerts it matched while active (for `until_resolved`).
    pub silenced: BTreeSet<String>,
}

impl Silence {
    fn end(&self) -> Option<TimestampMs> {
        match (self.expired_at_ms, self.spec.ends_at_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pending, active or expired at `now_ms`.
    pub fn state(&self, now_ms: TimestampMs) -> SilenceState {
        if self.end().is_some_and(|e| e <= now_ms) {
            SilenceState::Expired
        } else if now_ms < self.spec.starts_at_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }
}

/// Where a silence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Not started yet.
    Pending,
    /// Silencing.
    Active,
    /// Over (listed for [`SILENCE_RETENTION_MS`]).
    Expired,
}

/// Where an alert's escalation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// The policy's name.
    pub policy: String,
    /// The run of the levels, from 0 (`repeat.count` more may follow).
    pub run: u32,
    /// When this run started.
    pub run_start_ms: TimestampMs,
    /// The next level to come due (its index; `levels.len()` once the run is over).
    pub next_level: usize,
    /// The route (its key) whose policy this is.
    pub route: String,
}

/// One firing alert and what was done with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEntry {
    /// The last firing notification received for it.
    pub notification: Notification,
    /// The groups it belongs to.
    pub groups: Vec<String>,
    /// Who acknowledged it.
    pub ack: Option<Acknowledgement>,
    /// When the acknowledgement times out.
    pub ack_deadline_ms: Option<TimestampMs>,
    /// Snoozed until then.
    pub snoozed_until_ms: Option<TimestampMs>,
    /// Escalation, once it was first notified on a route with a policy.
    pub escalation: Option<Escalation>,
    /// Notifiers told about it by escalation levels (they get its resolve too).
    pub reached: BTreeSet<String>,
}

/// One aggregation group of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The route's key.
    pub route: String,
    /// Firing members.
    pub alerts: BTreeSet<String>,
    /// Members announced as firing by this group.
    pub notified: BTreeSet<String>,
    /// Resolves waiting for the next flush (`resolve: grouped`, or a muted route).
    pub pending_resolved: Vec<Notification>,
    /// When the group was created.
    pub created_ms: TimestampMs,
    /// When it was last flushed (its `group_interval` ticks count from there).
    pub last_flush_ms: Option<TimestampMs>,
    /// When it last sent anything (its `repeat_interval` counts from there).
    pub last_sent_ms: Option<TimestampMs>,
    /// When it flushes next.
    pub next_flush_ms: Option<TimestampMs>,
}

/// Everything the router knows, serializable for the durable store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingState {
    /// Firing alerts by fingerprint.
    pub alerts: BTreeMap<String, AlertEntry>,
    /// Groups by key.
    pub groups: BTreeMap<String, Group>,
    /// Silences by id.
    pub silences: BTreeMap<String, Silence>,
    /// Counter for notification ids made here (repeats, escalations, acks).
    pub seq: u64,
}

/// An alert as `telltale alerts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    /// The alert.
    pub alert: Alert,
    /// Its groups.
    pub groups: Vec<String>,
    /// Whether any group announced it yet.
    pub notified: bool,
    /// Active silences muting it.
    pub silenced_by: Vec<String>,
    /// A firing alert inhibiting it (its fingerprint).
    pub inhibited_by: Option<String>,
    /// Who acknowledged it.
    pub ack: Option<Acknowledgement>,
    /// Snoozed until then.
    pub snoozed_until_ms: Option<TimestampMs>,
    /// Escalation: policy, run, and how many levels of this run came due.
    pub escalation: Option<Escalation>,
}

/// A silence as `telltale silence list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceView {
    /// The silence.
    pub silence: Silence,
    /// Pending, active or expired.
    pub state: SilenceState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TimerKind {
    Group,
    Alert,
    Silence,
}

/// Inhibition sources of one rule with one set of `equal` values.
#[derive(Debug, Default, Clone)]
struct Sources {
    /// Sources that do not match the rule's target side.
    one_sided: BTreeSet<String>,
    /// Sources that match both sides (they cannot inhibit alerts that do too).
    two_sided: BTreeSet<String>,
}

/// The alert manager's state machine. See the crate documentation.
#[derive(Debug, Clone)]
pub struct AlertRouter {
    tree: Tree,
    st: RoutingState,
    timers: BTreeSet<(TimestampMs, TimerKind, String)>,
    scheduled: HashMap<(TimerKind, String), TimestampMs>,
    /// Per inhibit rule: `equal` values → firing sources.
    inhibit: Vec<HashMap<String, Sources>>,
    /// Silences (not expired) by one of their `name=value` matchers.
    silence_index: HashMap<(String, String), Vec<String>>,
    unindexed_silences: Vec<String>,
    silence_matchers: HashMap<String, Vec<Matcher>>,
}

/// Collects deliveries of one call, one per notifier, alert and status.
#[derive(Default)]
struct Out {
    list: Vec<Delivery>,
    seen: std::collections::HashSet<(String, String, AlertStatus)>,
}

impl Out {
    fn send(&mut self, notifiers: &[String], n: &Notification, group_key: &str) {
        for name in notifiers {
            let key = (name.clone(), n.alert.fingerprint.clone(), n.status);
            if self.seen.insert(key) {
                self.list.push(Delivery {
                    notifier: name.clone(),
                    notification: n.clone(),
                    group_key: group_key.to_string(),
                });
            }
        }
    }
}

/// The labels routes and matchers see: the alert's, with `alertname` and `severity` from
/// the alert itself when a producer did not copy them in.
fn match_labels(a: &Alert) -> Labels {
    if a.labels.contains_key("alertname") && a.labels.contains_key("severity") {
        return a.labels.clone();
    }
    let mut l = a.labels.clone();
    l.entry("alertname".into())
        .or_insert_with(|| a.rule.clone());
    l.entry("severity".into())
        .or_insert_with(|| a.severity.as_str().to_string());
    l
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl AlertRouter {
    /// A router for `config` (checked by `telltale_config::check` first), with no state.
    pub fn new(config: &Config) -> Result<AlertRouter, BuildError> {
        let tree = Tree::build(config)?;
        let inhibit = vec![HashMap::new(); tree.inhibit.len()];
        Ok(AlertRouter {
            tree,
            st: RoutingState::default(),
            timers: BTreeSet::new(),
            scheduled: HashMap::new(),
            inhibit,
            silence_index: HashMap::new(),
            unindexed_silences: Vec::new(),
            silence_matchers: HashMap::new(),
        })
    }

    /// A router for `config` continuing from a snapshot. Groups whose route no longer
    /// exists are dropped and their alerts grouped anew (as new groups at `now_ms`);
    /// escalations of a policy that no longer exists end. With an unchanged config it
    /// behaves exactly as the router the snapshot was taken from.
    pub fn restore(
        config: &Config,
        state: RoutingState,
        now_ms: TimestampMs,
    ) -> Result<AlertRouter, BuildError> {
        let mut r = AlertRouter::new(config)?;
        r.st = state;
        let tree = &r.tree;
        r.st.groups
            .retain(|_, g| tree.by_key.contains_key(&g.route));
        let policies: Vec<String> = tree.policies.iter().map(|p| p.name.clone()).collect();
        let fps: Vec<String> = r.st.alerts.keys().cloned().collect();
        for fp in &fps {
            let Some(entry) = r.st.alerts.get_mut(fp) else {
                continue;
            };
            if entry
                .escalation
                .as_ref()
                .is_some_and(|e| !policies.contains(&e.policy))
            {
                entry.escalation = None;
            }
            let labels = match_labels(&entry.notification.alert);
            let wanted = r.group_keys(&labels);
            let entry = r.st.alerts.get_mut(fp).expect("looked up above");
            entry.groups = wanted.iter().map(|(k, _)| k.clone()).collect();
            for (key, route) in wanted {
                let g = r.st.groups.entry(key).or_insert_with(|| Group {
                    route: r.tree.routes[route].key.clone(),
                    alerts: BTreeSet::new(),
                    notified: BTreeSet::new(),
                    pending_resolved: Vec::new(),
                    created_ms: now_ms,
                    last_flush_ms: None,
                    last_sent_ms: None,
                    next_flush_ms: Some(now_ms + r.tree.routes[route].group_wait_ms),
                });
                g.alerts.insert(fp.clone());
            }
            r.index_source(fp, true);
        }
        for g in r.st.groups.values_mut() {
            g.alerts.retain(|fp| r.st.alerts.contains_key(fp));
        }
        let keys: Vec<String> = r.st.groups.keys().cloned().collect();
        for k in keys {
            let t = r.st.groups[&k].next_flush_ms;
            r.schedule(TimerKind::Group, &k, t);
        }
        for fp in fps {
            r.reschedule_alert(&fp);
        }
        r.reindex_silences();
        let ids: Vec<String> = r.st.silences.keys().cloned().collect();
        for id in ids {
            r.schedule_silence(&id);
        }
        Ok(r)
    }

    /// The whole state, for the durable store.
    pub fn snapshot(&self) -> RoutingState {
        self.st.clone()
    }

    /// When [`tick`](Self::tick) has work next (ms since the epoch), if ever.
    pub fn next_deadline(&self) -> Option<TimestampMs> {
        self.timers.first().map(|(t, _, _)| *t)
    }

    /// Deliveries for a notice with no lifecycle (a scaling decision): the notifiers of the
    /// routes it matches, at once, unless a silence or an inhibition mutes it or its route
    /// is in a mute interval. It joins no group and leaves no state, so it is never
    /// repeated, escalated or resolved.
    pub fn route_event(&self, n: Notification, now_ms: TimestampMs) -> Vec<Delivery> {
        let labels = match_labels(&n.alert);
        if self.is_silenced(&labels, now_ms) || self.inhibited_by(&labels).is_some() {
            return Vec::new();
        }
        let mut out = Out::default();
        for (key, route) in self.group_keys(&labels) {
            if !self.tree.muted(route, now_ms) {
                out.send(&self.tree.routes[route].notifiers, &n, &key);
            }
        }
        out.list
    }

    /// Takes the alert state machine's notifications: firing ones join (or update) their
    /// groups, resolved ones leave them and are announced at once (`resolve: immediate`)
    /// to whoever was told they fired.
    pub fn on_notifications(
        &mut self,
        notes: Vec<Notification>,
        now_ms: TimestampMs,
    ) -> Vec<Delivery> {
        let mut out = Out::default();
        for n in notes {
            match n.status {
                AlertStatus::Firing => self.on_firing(n, now_ms, &mut out),
                AlertStatus::Resolved => self.on_resolved(n, now_ms, &mut out),
            }
        }
        // A new group with `group_wait: 0` (or a tick that came due meanwhile) sends now,
        // not at the caller's next tick.
        self.run_due(now_ms, &mut out);
        out.list
    }

    /// Runs every timer due at `now_ms`: group flushes and repeats, escalation levels, ack
    /// timeouts, snooze ends, silence expiry.
    pub fn tick(&mut self, now_ms: TimestampMs) -> Vec<Delivery> {
        let mut out = Out::default();
        self.run_due(now_ms, &mut out);
        out.list
    }

    /// Carries out an operator's command.
    pub fn apply(
        &mut self,
        cmd: Command,
        now_ms: TimestampMs,
    ) -> Result<Vec<Delivery>, CommandError> {
        let mut out = Out::default();
        match cmd {
            Command::Ack {
                fingerprint,
                by,
                comment,
            } => {
                let timeout = self.policy_of(&fingerprint)?.and_then(|p| p.ack_timeout_ms);
                let entry = self.entry_mut(&fingerprint)?;
                entry.ack = Some(Acknowledgement {
                    by,
                    comment,
                    at_ms: now_ms,
                });
                entry.ack_deadline_ms = timeout.map(|t| now_ms + t);
                self.notice(
                    &fingerprint,
                    NotificationReason::Acknowledged,
                    now_ms,
                    &mut out,
                );
                self.reschedule_alert(&fingerprint);
            }
            Command::Unack { fingerprint, by: _ } => {
                let entry = self.entry_mut(&fingerprint)?;
                if entry.ack.is_none() {
                    return Err(CommandError::Invalid(format!(
                        "alert `{fingerprint}` is not acknowledged"
                    )));
                }
                self.withdraw_ack(&fingerprint, now_ms, &mut out);
            }
            Command::Snooze {
                fingerprint,
                until_ms,
                by: _,
                comment: _,
            } => {
                if until_ms <= now_ms {
                    return Err(CommandError::Invalid(
                        "a snooze must end in the future; give a later time".into(),
                    ));
                }
                let entry = self.entry_mut(&fingerprint)?;
                entry.snoozed_until_ms = Some(until_ms);
                self.reschedule_alert(&fingerprint);
            }
            Command::AddSilence(spec) => self.add_silence(spec, now_ms)?,
            Command::ExpireSilence { id } => {
                let s = self
                    .st
                    .silences
                    .get_mut(&id)
                    .ok_or_else(|| CommandError::UnknownSilence(id.clone()))?;
                if s.state(now_ms) == SilenceState::Expired {
                    return Err(CommandError::Invalid(format!(
                        "silence `{id}` has expired already"
                    )));
                }
                s.expired_at_ms = Some(now_ms);
                self.reindex_silences();
                self.schedule_silence(&id);
            }
        }
        self.run_due(now_ms, &mut out);
        Ok(out.list)
    }

    /// Firing alerts with their routing status, by fingerprint.
    pub fn alerts(&self, now_ms: TimestampMs) -> Vec<AlertView> {
        self.st
            .alerts
            .iter()
            .map(|(fp, e)| {
                let labels = match_labels(&e.notification.alert);
                AlertView {
                    alert: e.notification.alert.clone(),
                    groups: e.groups.clone(),
                    notified: e.groups.iter().any(|g| {
                        self.st
                            .groups
                            .get(g)
                            .is_some_and(|g| g.notified.contains(fp))
                    }),
                    silenced_by: self.silenced_by(&labels, now_ms),
                    inhibited_by: self.inhibited_by(&labels),
                    ack: e.ack.clone(),
                    snoozed_until_ms: e.snoozed_until_ms.filter(|t| *t > now_ms),
                    escalation: e.escalation.clone(),
                }
            })
            .collect()
    }

    /// Every silence, expired ones for [`SILENCE_RETENTION_MS`].
    pub fn silences(&self, now_ms: TimestampMs) -> Vec<SilenceView> {
        self.st
            .silences
            .values()
            .map(|s| SilenceView {
                silence: s.clone(),
                state: s.state(now_ms),
            })
            .collect()
    }

    // ---- incoming notifications ----

    fn group_keys(&self, labels: &Labels) -> Vec<(String, usize)> {
        self.tree
            .matching(labels)
            .into_iter()
            .map(|r| {
                let mut key = self.tree.routes[r].key.clone();
                key.push(':');
                let gl = self.tree.group_labels(r, labels);
                let mut s = String::new();
                let _ = telltale_model::write_labels(&mut s, &gl);
                if s.is_empty() {
                    s.push_str("{}");
                }
                key.push_str(&s);
                (key, r)
            })
            .collect()
    }

    fn on_firing(&mut self, n: Notification, now_ms: TimestampMs, out: &mut Out) {
        let fp = n.alert.fingerprint.clone();
        if let Some(entry) = self.st.alerts.get_mut(&fp) {
            let reason = n.reason;
            entry.notification = n;
            entry.notification.reason = NotificationReason::StateChange;
            // The rule's own notices (its `repeat`, flapping, settled) go out at once to
            // whoever was told it fires; a plain update waits for the group. An
            // acknowledged alert is not repeated, whichever repeat it is.
            let acked_repeat = reason == NotificationReason::Repeat && entry.ack.is_some();
            if reason != NotificationReason::StateChange && !acked_repeat {
                let mut note = entry.notification.clone();
                note.reason = reason;
                note.alert.ack.clone_from(&entry.ack);
                let labels = match_labels(&note.alert);
                let groups = entry.groups.clone();
                if !self.suppressed(&fp, &labels, now_ms) {
                    for g in groups {
                        let Some(group) = self.st.groups.get_mut(&g) else {
                            continue;
                        };
                        if group.notified.contains(&fp) {
                            let route = self.tree.by_key[&group.route];
                            if !self.tree.muted(route, now_ms) {
                                out.send(&self.tree.routes[route].notifiers, &note, &g);
                                group.last_sent_ms = Some(now_ms);
                            }
                        }
                    }
                }
            }
            return;
        }
        let labels = match_labels(&n.alert);
        let groups = self.group_keys(&labels);
        let mut note = n;
        note.reason = NotificationReason::StateChange;
        self.st.alerts.insert(
            fp.clone(),
            AlertEntry {
                notification: note,
                groups: groups.iter().map(|(k, _)| k.clone()).collect(),
                ack: None,
                ack_deadline_ms: None,
                snoozed_until_ms: None,
                escalation: None,
                reached: BTreeSet::new(),
            },
        );
        self.index_source(&fp, true);
        self.track_until_resolved(&fp, &labels, now_ms);
        for (key, route) in groups {
            let r = &self.tree.routes[route];
            let g = self.st.groups.entry(key.clone()).or_insert_with(|| Group {
                route: r.key.clone(),
                alerts: BTreeSet::new(),
                notified: BTreeSet::new(),
                pending_resolved: Vec::new(),
                created_ms: now_ms,
                last_flush_ms: None,
                last_sent_ms: None,
                next_flush_ms: Some(now_ms + r.group_wait_ms),
            });
            g.alerts.insert(fp.clone());
            if let Some(last) = g.last_flush_ms {
                // A group that has flushed sends news at its next `group_interval` tick.
                let t = next_tick(last, r.group_interval_ms, now_ms);
                if g.next_flush_ms.is_none_or(|n| n > t) {
                    g.next_flush_ms = Some(t);
                }
            }
            let t = g.next_flush_ms;
            self.schedule(TimerKind::Group, &key, t);
        }
    }

    fn on_resolved(&mut self, n: Notification, now_ms: TimestampMs, out: &mut Out) {
        let fp = n.alert.fingerprint.clone();
        let Some(entry) = self.st.alerts.remove(&fp) else {
            // Never seen firing (or resolved twice): nobody was told it fired.
            return;
        };
        self.index_source_entry(&fp, &entry, false);
        self.release_until_resolved(&fp, now_ms);
        self.schedule(TimerKind::Alert, &fp, None);
        let reached: Vec<String> = entry.reached.iter().cloned().collect();
        let mut reached_sent = false;
        for key in &entry.groups {
            let Some(g) = self.st.groups.get_mut(key) else {
                continue;
            };
            g.alerts.remove(&fp);
            if !g.notified.remove(&fp) {
                // Resolved before its group ever announced it: nothing to take back
                // (Alertmanager never notifies an alert resolved within `group_wait`).
                self.after_change(key, now_ms);
                continue;
            }
            let route = self.tree.by_key[&g.route];
            let r = &self.tree.routes[route];
            if r.resolve == ResolveMode::Immediate && !self.tree.muted(route, now_ms) {
                out.send(&r.notifiers, &n, key);
                g.last_sent_ms = Some(now_ms);
                if !reached_sent {
                    out.send(&reached, &n, key);
                    reached_sent = true;
                }
            } else {
                g.pending_resolved.push(n.clone());
                let base = g.last_flush_ms.unwrap_or(g.created_ms);
                let t = next_tick(base, r.group_interval_ms, now_ms);
                if g.next_flush_ms.is_none_or(|x| x > t) {
                    g.next_flush_ms = Some(t);
                }
            }
            self.after_change(key, now_ms);
        }
        if !reached_sent && !reached.is_empty() {
            out.send(&reached, &n, "escalation");
        }
    }

    /// Drops an empty group, or (re)schedules it.
    fn after_change(&mut self, key: &str, _now_ms: TimestampMs) {
        let Some(g) = self.st.groups.get(key) else {
            return;
        };
        if g.alerts.is_empty() && g.pending_resolved.is_empty() {
            self.st.groups.remove(key);
            self.schedule(TimerKind::Group, key, None);
        } else {
            let t = g.next_flush_ms;
            self.schedule(TimerKind::Group, key, t);
        }
    }

    // ---- timers ----

    fn schedule(&mut self, kind: TimerKind, key: &str, at: Option<TimestampMs>) {
        let k = (kind, key.to_string());
        if let Some(old) = self.scheduled.get(&k) {
            if Some(*old) == at {
                return;
            }
            self.timers.remove(&(*old, kind, key.to_string()));
            self.scheduled.remove(&k);
        }
        if let Some(t) = at {
            self.timers.insert((t, kind, key.to_string()));
            self.scheduled.insert(k, t);
        }
    }

    fn run_due(&mut self, now_ms: TimestampMs, out: &mut Out) {
        while let Some((t, kind, key)) = self.timers.first().cloned() {
            if t > now_ms {
                break;
            }
            self.timers.remove(&(t, kind, key.clone()));
            self.scheduled.remove(&(kind, key.clone()));
            match kind {
                TimerKind::Group => self.flush(&key, now_ms, out),
                TimerKind::Alert => self.alert_timer(&key, now_ms, out),
                TimerKind::Silence => self.silence_timer(&key, now_ms),
            }
        }
    }

    fn flush(&mut self, key: &str, now_ms: TimestampMs, out: &mut Out) {
        let Some(g) = self.st.groups.get(key) else {
            return;
        };
        let route = self.tree.by_key[&g.route];
        let r = self.tree.routes[route].clone();
        if self.tree.muted(route, now_ms) {
            // Nothing goes out now; news waits for the first tick after the mute.
            let g = self.st.groups.get_mut(key).expect("looked up above");
            g.last_flush_ms = Some(now_ms);
            g.next_flush_ms = Some(now_ms + r.group_interval_ms);
            self.after_change(key, now_ms);
            return;
        }
        let mut sent = false;
        let pending = std::mem::take(
            &mut self
                .st
                .groups
                .get_mut(key)
                .expect("looked up above")
                .pending_resolved,
        );
        for n in &pending {
            out.send(&r.notifiers, n, key);
            sent = true;
        }
        let members: Vec<String> = self.st.groups[key].alerts.iter().cloned().collect();
        let repeat_due = self.st.groups[key]
            .last_sent_ms
            .is_some_and(|s| now_ms >= s + r.repeat_interval_ms);
        let mut waiting = false;
        let mut newly = Vec::new();
        for fp in &members {
            let Some(entry) = self.st.alerts.get(fp) else {
                continue;
            };
            let labels = match_labels(&entry.notification.alert);
            if self.suppressed(fp, &labels, now_ms) {
                if !self.st.groups[key].notified.contains(fp) {
                    waiting = true;
                }
                continue;
            }
            if !self.st.groups[key].notified.contains(fp) {
                out.send(&r.notifiers, &entry.notification, key);
                newly.push(fp.clone());
                sent = true;
            } else if repeat_due && entry.ack.is_none() {
                let note = self.derived(fp, NotificationReason::Repeat, now_ms);
                out.send(&r.notifiers, &note, key);
                sent = true;
            }
        }
        for fp in &newly {
            self.start_escalation(fp, route, now_ms, out);
        }
        let g = self.st.groups.get_mut(key).expect("looked up above");
        g.notified.extend(newly);
        g.last_flush_ms = Some(now_ms);
        // A repeat round that found every member acknowledged or held back still counts:
        // the next one is a whole `repeat_interval` away.
        if sent || repeat_due {
            g.last_sent_ms = Some(now_ms);
        }
        g.next_flush_ms = if waiting {
            // Members held back by a silence, an inhibition or a snooze are announced at
            // the first tick after that ends.
            Some(now_ms + r.group_interval_ms)
        } else if g.notified.is_empty() {
            None
        } else {
            let last = g.last_sent_ms.unwrap_or(now_ms);
            Some(next_tick(
                now_ms,
                r.group_interval_ms,
                last + r.repeat_interval_ms,
            ))
        };
        self.after_change(key, now_ms);
    }

    /// A copy of the alert's notification with a new id and `reason`.
    fn derived(
        &mut self,
        fp: &str,
        reason: NotificationReason,
        now_ms: TimestampMs,
    ) -> Notification {
        self.st.seq += 1;
        let random = ((self.st.seq as u128) << 64) | fnv(fp) as u128;
        let id = format!(
            "msg_{}",
            ulid::Ulid::from_parts(now_ms.max(0) as u64, random)
        );
        let entry = &self.st.alerts[fp];
        let mut n = entry.notification.clone();
        n.id = id;
        n.reason = reason;
        n.alert.ack.clone_from(&entry.ack);
        n
    }

    fn suppressed(&self, fp: &str, labels: &Labels, now_ms: TimestampMs) -> bool {
        self.st.alerts[fp]
            .snoozed_until_ms
            .is_some_and(|t| t > now_ms)
            || self.is_silenced(labels, now_ms)
            || self.inhibited_by(labels).is_some()
    }

    // ---- escalation, acks, snoozes ----

    fn policy_of(&self, fp: &str) -> Result<Option<&tree::Policy>, CommandError> {
        let e = self
            .st
            .alerts
            .get(fp)
            .ok_or_else(|| CommandError::UnknownAlert(fp.to_string()))?;
        if let Some(esc) = &e.escalation {
            return Ok(self.tree.policies.iter().find(|p| p.name == esc.policy));
        }
        Ok(e.groups.iter().find_map(|g| {
            let r = self.st.groups.get(g)?;
            let p = self.tree.routes[*self.tree.by_key.get(&r.route)?].escalation?;
            Some(&self.tree.policies[p])
        }))
    }

    fn entry_mut(&mut self, fp: &str) -> Result<&mut AlertEntry, CommandError> {
        self.st
            .alerts
            .get_mut(fp)
            .ok_or_else(|| CommandError::UnknownAlert(fp.to_string()))
    }

    fn start_escalation(&mut self, fp: &str, route: usize, now_ms: TimestampMs, out: &mut Out) {
        let Some(p) = self.tree.routes[route].escalation else {
            return;
        };
        let policy = self.tree.policies[p].name.clone();
        let key = self.tree.routes[route].key.clone();
        let Some(e) = self.st.alerts.get_mut(fp) else {
            return;
        };
        if e.escalation.is_some() {
            return;
        }
        e.escalation = Some(Escalation {
            policy,
            run: 0,
            run_start_ms: now_ms,
            next_level: 0,
            route: key,
        });
        self.alert_timer(fp, now_ms, out);
    }

    /// The escalation's next due time, stepping into the next run when one is over.
    fn escalation_due(&self, esc: &mut Escalation) -> Option<TimestampMs> {
        let p = self.tree.policies.iter().find(|p| p.name == esc.policy)?;
        if esc.next_level >= p.levels.len() {
            if esc.run >= p.repeat_count || p.levels.is_empty() {
                return None;
            }
            esc.run_start_ms += p.levels[p.levels.len() - 1].after_ms + p.repeat_wait_ms;
            esc.run += 1;
            esc.next_level = 0;
        }
        Some(esc.run_start_ms + p.levels[esc.next_level].after_ms)
    }

    fn alert_timer(&mut self, fp: &str, now_ms: TimestampMs, out: &mut Out) {
        let Some(entry) = self.st.alerts.get(fp) else {
            return;
        };
        if entry.ack_deadline_ms.is_some_and(|t| t <= now_ms) && entry.ack.is_some() {
            self.withdraw_ack(fp, now_ms, out);
        }
        if self.st.alerts[fp]
            .snoozed_until_ms
            .is_some_and(|t| t <= now_ms)
        {
            let e = self.st.alerts.get_mut(fp).expect("looked up above");
            e.snoozed_until_ms = None;
            let labels = match_labels(&e.notification.alert);
            if !self.suppressed(fp, &labels, now_ms) {
                self.notice(fp, NotificationReason::Repeat, now_ms, out);
            }
            self.restart_escalation(fp, now_ms);
        }
        // Escalation levels that came due.
        while let Some(mut esc) = self.st.alerts[fp].escalation.clone() {
            let Some(due) = self.escalation_due(&mut esc) else {
                self.st.alerts.get_mut(fp).expect("present").escalation = Some(esc);
                break;
            };
            if due > now_ms {
                self.st.alerts.get_mut(fp).expect("present").escalation = Some(esc);
                break;
            }
            let Some(policy) = self.tree.policies.iter().find(|p| p.name == esc.policy) else {
                break;
            };
            let level = policy.levels[esc.next_level].clone();
            let group_key = format!("escalation:{}", policy.name);
            esc.next_level += 1;
            let entry = &self.st.alerts[fp];
            let holds = match level.condition {
                LevelCondition::Unacked => entry.ack.is_none(),
                LevelCondition::Unresolved => true,
            };
            let labels = match_labels(&entry.notification.alert);
            let route_muted = self
                .tree
                .by_key
                .get(&esc.route)
                .is_some_and(|r| self.tree.muted(*r, now_ms));
            self.st.alerts.get_mut(fp).expect("present").escalation = Some(esc);
            // A level that comes due while the alert is silenced, inhibited, snoozed or
            // muted is skipped: those mean "nobody is to be paged now".
            if holds && !route_muted && !self.suppressed(fp, &labels, now_ms) {
                let note = self.derived(fp, NotificationReason::Escalation, now_ms);
                out.send(&level.notify, &note, &group_key);
                let e = self.st.alerts.get_mut(fp).expect("present");
                e.reached.extend(level.notify.iter().cloned());
            }
        }
        self.reschedule_alert(fp);
    }

    fn reschedule_alert(&mut self, fp: &str) {
        let Some(entry) = self.st.alerts.get(fp) else {
            self.schedule(TimerKind::Alert, fp, None);
            return;
        };
        let mut next: Option<TimestampMs> = None;
        let mut consider = |t: Option<TimestampMs>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(entry.ack.as_ref().and(entry.ack_deadline_ms));
        consider(entry.snoozed_until_ms);
        if let Some(mut esc) = entry.escalation.clone() {
            consider(self.escalation_due(&mut esc));
        }
        self.schedule(TimerKind::Alert, fp, next);
    }

    fn restart_escalation(&mut self, fp: &str, now_ms: TimestampMs) {
        if let Some(e) = self.st.alerts.get_mut(fp)
            && let Some(esc) = &mut e.escalation
        {
            esc.run = 0;
            esc.next_level = 0;
            esc.run_start_ms = now_ms;
        }
    }

    fn withdraw_ack(&mut self, fp: &str, now_ms: TimestampMs, out: &mut Out) {
        if let Some(e) = self.st.alerts.get_mut(fp) {
            e.ack = None;
            e.ack_deadline_ms = None;
        }
        self.notice(fp, NotificationReason::Unacknowledged, now_ms, out);
        self.restart_escalation(fp, now_ms);
        self.alert_timer(fp, now_ms, out);
    }

    /// Tells everyone who was told the alert fires (its groups' notifiers and the
    /// escalation levels reached) about an acknowledgement, its withdrawal, a snooze end.
    fn notice(&mut self, fp: &str, reason: NotificationReason, now_ms: TimestampMs, out: &mut Out) {
        let Some(entry) = self.st.alerts.get(fp) else {
            return;
        };
        let mut targets: Vec<(Vec<String>, String)> = Vec::new();
        for g in &entry.groups {
            if let Some(group) = self.st.groups.get(g)
                && (group.notified.contains(fp) || reason == NotificationReason::Repeat)
            {
                let route = self.tree.by_key[&group.route];
                if !self.tree.muted(route, now_ms) {
                    targets.push((self.tree.routes[route].notifiers.clone(), g.clone()));
                }
            }
        }
        let reached: Vec<String> = entry.reached.iter().cloned().collect();
        let note = self.derived(fp, reason, now_ms);
        for (notifiers, key) in targets {
            out.send(&notifiers, &note, &key);
        }
        out.send(&reached, &note, "escalation");
        if reason == NotificationReason::Repeat {
            let groups = self.st.alerts[fp].groups.clone();
            for g in groups {
                if let Some(group) = self.st.groups.get_mut(&g) {
                    group.notified.insert(fp.to_string());
                }
            }
        }
    }

    // ---- silences ----

    fn add_silence(&mut self, spec: SilenceSpec, now_ms: TimestampMs) -> Result<(), CommandError> {
        if spec.id.trim().is_empty() {
            return Err(CommandError::Invalid("a silence needs an id".into()));
        }
        if self.st.silences.contains_key(&spec.id) {
            return Err(CommandError::DuplicateSilence(spec.id));
        }
        if spec.matchers.is_empty() {
            return Err(CommandError::BadMatcher(
                "a silence needs at least one matcher, e.g. `alertname=\"DiskFull\"`".into(),
            ));
        }
        let matchers = telltale_config::alerting::parse_matchers(&spec.matchers)
            .map_err(CommandError::BadMatcher)?;
        if matchers.iter().all(|m| m.matches_value("")) {
            return Err(CommandError::BadMatcher(
                "these matchers also match an alert without those labels, so the silence \
                 would mute every alert; add a matcher that needs a value, e.g. \
                 `alertname=\"DiskFull\"`"
                    .into(),
            ));
        }
        match spec.ends_at_ms {
            None if !spec.until_resolved => {
                return Err(CommandError::Invalid(
                    "a silence needs an end time, or `until_resolved`".into(),
                ));
            }
            Some(e) if e <= spec.starts_at_ms.max(now_ms) => {
                return Err(CommandError::Invalid(
                    "the silence ends before it starts (or in the past); give a later end".into(),
                ));
            }
            _ => {}
        }
        let id = spec.id.clone();
        let mut silence = Silence {
            spec,
            expired_at_ms: None,
            silenced: BTreeSet::new(),
        };
        if silence.state(now_ms) == SilenceState::Active {
            for (fp, e) in &self.st.alerts {
                let labels = match_labels(&e.notification.alert);
                if matchers.iter().all(|m| m.matches(&labels)) {
                    silence.silenced.insert(fp.clone());
                }
            }
        }
        self.st.silences.insert(id.clone(), silence);
        self.reindex_silences();
        self.schedule_silence(&id);
        Ok(())
    }

    fn reindex_silences(&mut self) {
        self.silence_index.clear();
        self.unindexed_silences.clear();
        self.silence_matchers.clear();
        for (id, s) in &self.st.silences {
            if s.expired_at_ms.is_some() {
                continue;
            }
            let Ok(ms) = telltale_config::alerting::parse_matchers(&s.spec.matchers) else {
                continue;
            };
            let eq = ms
                .iter()
                .find(|m| m.op == telltale_config::alerting::MatchOp::Equal && !m.value.is_empty());
            match eq {
                Some(m) => self
                    .silence_index
                    .entry((m.name.clone(), m.value.clone()))
                    .or_default()
                    .push(id.clone()),
                None => self.unindexed_silences.push(id.clone()),
            }
            self.silence_matchers.insert(id.clone(), ms);
        }
    }

    /// Candidate silences for a label set: those indexed under one of its labels, and
    /// those with no equality matcher to index by.
    fn silence_candidates<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a String> {
        let indexed = if self.silence_index.is_empty() {
            None
        } else {
            Some(
                labels
                    .iter()
                    .filter_map(|(k, v)| self.silence_index.get(&(k.clone(), v.clone()))),
            )
        };
        indexed
            .into_iter()
            .flatten()
            .flatten()
            .chain(self.unindexed_silences.iter())
    }

    fn silence_matches(&self, id: &str, labels: &Labels, now_ms: TimestampMs) -> bool {
        self.st
            .silences
            .get(id)
            .is_some_and(|s| s.state(now_ms) == SilenceState::Active)
            && self
                .silence_matchers
                .get(id)
                .is_some_and(|ms| ms.iter().all(|m| m.matches(labels)))
    }

    fn is_silenced(&self, labels: &Labels, now_ms: TimestampMs) -> bool {
        self.silence_candidates(labels)
            .any(|id| self.silence_matches(id, labels, now_ms))
    }

    fn silenced_by(&self, labels: &Labels, now_ms: TimestampMs) -> Vec<String> {
        let mut v: Vec<String> = self
            .silence_candidates(labels)
            .filter(|id| self.silence_matches(id, labels, now_ms))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn track_until_resolved(&mut self, fp: &str, labels: &Labels, now_ms: TimestampMs) {
        for id in self.silenced_by(labels, now_ms) {
            if let Some(s) = self.st.silences.get_mut(&id) {
                s.silenced.insert(fp.to_string());
            }
        }
    }

    fn release_until_resolved(&mut self, fp: &str, now_ms: TimestampMs) {
        let mut ended = Vec::new();
        for (id, s) in self.st.silences.iter_mut() {
            if s.silenced.remove(fp)
                && s.spec.until_resolved
                && s.silenced.is_empty()
                && s.state(now_ms) == SilenceState::Active
            {
                s.expired_at_ms = Some(now_ms);
                ended.push(id.clone());
            }
        }
        if !ended.is_empty() {
            self.reindex_silences();
            for id in ended {
                self.schedule_silence(&id);
            }
        }
    }

    fn schedule_silence(&mut self, id: &str) {
        let at = self
            .st
            .silences
            .get(id)
            .and_then(|s| match s.expired_at_ms {
                // Ended: listed for the retention, then dropped.
                Some(t) => Some(t + SILENCE_RETENTION_MS),
                None => s.spec.ends_at_ms,
            });
        self.schedule(TimerKind::Silence, id, at);
    }

    fn silence_timer(&mut self, id: &str, now_ms: TimestampMs) {
        let Some(s) = self.st.silences.get_mut(id) else {
            return;
        };
        if s.expired_at_ms.is_none() {
            s.expired_at_ms = s.spec.ends_at_ms.or(Some(now_ms));
            self.reindex_silences();
            self.schedule_silence(id);
        } else {
            self.st.silences.remove(id);
            self.schedule(TimerKind::Silence, id, None);
        }
    }

    // ---- inhibition ----

    fn index_source(&mut self, fp: &str, add: bool) {
        if let Some(entry) = self.st.alerts.get(fp).cloned() {
            self.index_source_entry(fp, &entry, add);
        }
    }

    fn index_source_entry(&mut self, fp: &str, entry: &AlertEntry, add: bool) {
        let labels = match_labels(&entry.notification.alert);
        for (i, rule) in self.tree.inhibit.iter().enumerate() {
            if !rule.source.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            let two_sided = rule.target.iter().all(|m| m.matches(&labels));
            let key = rule.equal_key(&labels);
            let sources = self.inhibit[i].entry(key.clone()).or_default();
            let set = if two_sided {
                &mut sources.two_sided
            } else {
                &mut sources.one_sided
            };
            if add {
                set.insert(fp.to_string());
            } else {
                set.remove(fp);
                if sources.one_sided.is_empty() && sources.two_sided.is_empty() {
                    self.inhibit[i].remove(&key);
                }
            }
        }
    }

    /// The firing alert that inhibits a label set, if any (Alertmanager's rule: an alert
    /// matching both sides of a rule is not inhibited by sources that do too, so an alert
    /// never inhibits itself).
    fn inhibited_by(&self, labels: &Labels) -> Option<String> {
        for (i, rule) in self.tree.inhibit.iter().enumerate() {
            if !rule.target.iter().all(|m| m.matches(labels)) {
                continue;
            }
            let Some(sources) = self.inhibit[i].get(&rule.equal_key(labels)) else {
                continue;
            };
            let two_sided = rule.source.iter().all(|m| m.matches(labels));
            let found = sources.one_sided.iter().next().or(if two_sided {
                None
            } else {
                sources.two_sided.iter().next()
            });
            if let Some(fp) = found {
                return Some(fp.clone());
            }
        }
        None
    }
}

/// The first tick of a grid of `interval` anchored at `anchor` that is at or after `at`
/// and after `anchor`.
fn next_tick(anchor: TimestampMs, interval: TimestampMs, at: TimestampMs) -> TimestampMs {
    if at <= anchor {
        return anchor + interval;
    }
    let n = (at - anchor + interval - 1) / interval;
    anchor + n.max(1) * interval
}

#[cfg(test)]
mod tests;
