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
//!   the indexes (timers, inhibition sources, silences by label and by alert, each
//!   group's news and repeat queue) are rebuilt, never stored. [`RoutingState::version`]
//!   says which format it is ([`check_state_version`]).
//! * **Work per notification follows its route and group**, not the number of alerts nor
//!   a group's size: inhibition sources are indexed by rule and `equal` values, silences
//!   by one of their equality matchers (compiled once) and by the alerts they hold, a
//!   group's flush looks at its news and its due repeats only, timers in an ordered set.
//! * A notifier gets one delivery per alert and status from one call, whatever the number
//!   of routes and levels that reach it; a page or an announcement is kept over a notice.

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

/// The version of [`RoutingState`] this build writes. Fields added later carry
/// `#[serde(default)]`, so older states read as they are; a state written by a newer build
/// is refused by [`check_state_version`].
pub const STATE_VERSION: u32 = 1;

/// States saved before [`RoutingState::version`] existed are version 1.
fn first_state_version() -> u32 {
    1
}

/// Whether this build can continue from a saved state: a state of a newer version (written
/// by a newer engine) may mean things this build would misread, so it is refused.
pub fn check_state_version(state: &RoutingState) -> Result<(), String> {
    if state.version > STATE_VERSION {
        return Err(format!(
            "the saved alert-manager state is version {}, newer than the version {} this \
             engine reads (it was written by a newer Telltale); the alert manager starts \
             afresh, without the saved silences, acknowledgements, snoozes and escalations \
             (run the newer Telltale to keep them)",
            state.version, STATE_VERSION
        ));
    }
    Ok(())
}

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
    #[serde(default)]
    pub expired_at_ms: Option<TimestampMs>,
    /// The firing alerts it matched while active (for `until_resolved`).
    #[serde(default)]
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
    #[serde(default)]
    pub groups: Vec<String>,
    /// Who acknowledged it.
    #[serde(default)]
    pub ack: Option<Acknowledgement>,
    /// When the acknowledgement times out.
    #[serde(default)]
    pub ack_deadline_ms: Option<TimestampMs>,
    /// Snoozed until then.
    #[serde(default)]
    pub snoozed_until_ms: Option<TimestampMs>,
    /// Escalation, once it was first notified on a route with a policy.
    #[serde(default)]
    pub escalation: Option<Escalation>,
    /// Notifiers told about it by escalation levels (they get its resolve too).
    #[serde(default)]
    pub reached: BTreeSet<String>,
}

/// One aggregation group of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The route's key.
    pub route: String,
    /// Firing members.
    #[serde(default)]
    pub alerts: BTreeSet<String>,
    /// Members announced as firing by this group.
    #[serde(default)]
    pub notified: BTreeSet<String>,
    /// Per announced member, when its `repeat_interval` starts counting: the last
    /// announcement, repeat or rule notice about it from this group, or a repeat
    /// round that skipped it (acknowledged or held back). Per member, so that other
    /// members' news never postpones an alert's repeat.
    #[serde(default)]
    pub repeat_from_ms: BTreeMap<String, TimestampMs>,
    /// Resolves waiting for the next flush (`resolve: grouped`, or a muted route).
    #[serde(default)]
    pub pending_resolved: Vec<Notification>,
    /// When the group was created.
    pub created_ms: TimestampMs,
    /// When it was last flushed (its `group_interval` ticks count from there).
    #[serde(default)]
    pub last_flush_ms: Option<TimestampMs>,
    /// When it last sent anything (for operators; repeats count per member, from
    /// `repeat_from_ms`).
    #[serde(default)]
    pub last_sent_ms: Option<TimestampMs>,
    /// When it flushes next.
    #[serde(default)]
    pub next_flush_ms: Option<TimestampMs>,
}

/// Everything the router knows, serializable for the durable store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingState {
    /// The format's version ([`STATE_VERSION`] when written by this build; 1 for states
    /// saved before the field existed). See [`check_state_version`].
    #[serde(default = "first_state_version")]
    pub version: u32,
    /// Firing alerts by fingerprint.
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertEntry>,
    /// Groups by key.
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// Silences by id.
    #[serde(default)]
    pub silences: BTreeMap<String, Silence>,
    /// Counter for notification ids made here (repeats, escalations, acks).
    #[serde(default)]
    pub seq: u64,
}

impl Default for RoutingState {
    fn default() -> RoutingState {
        RoutingState {
            version: STATE_VERSION,
            alerts: BTreeMap::new(),
            groups: BTreeMap::new(),
            silences: BTreeMap::new(),
            seq: 0,
        }
    }
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
    /// Compiled matchers of the silences in the index (compiled once, when added).
    silence_matchers: HashMap<String, Vec<Matcher>>,
    /// Per alert, the silences whose `silenced` holds it (so a resolve touches only those).
    silences_of: HashMap<String, BTreeSet<String>>,
    /// Per group, its members not announced yet (a flush looks at these, not every member).
    news: HashMap<String, BTreeSet<String>>,
    /// Per group, its announced members by `repeat_from_ms`, earliest first.
    repeats: HashMap<String, BTreeSet<(TimestampMs, String)>>,
}

/// Collects deliveries of one call, one per notifier, alert and status.
#[derive(Default)]
struct Out {
    list: Vec<Delivery>,
    /// Index in `list` of the delivery for each notifier, alert and status.
    seen: HashMap<(String, String, AlertStatus), usize>,
}

/// Which of two deliveries about the same alert to one notifier in one call survives: an
/// announcement or an escalation page says more than a notice (repeat, acknowledgement,
/// flapping), so it replaces one; between equals the first stays.
fn importance(r: NotificationReason) -> u8 {
    match r {
        NotificationReason::StateChange | NotificationReason::Escalation => 1,
        _ => 0,
    }
}

impl Out {
    fn send(&mut self, notifiers: &[String], n: &Notification, group_key: &str) {
        for name in notifiers {
            let key = (name.clone(), n.alert.fingerprint.clone(), n.status);
            let delivery = Delivery {
                notifier: name.clone(),
                notification: n.clone(),
                group_key: group_key.to_string(),
            };
            match self.seen.get(&key) {
                None => {
                    self.seen.insert(key, self.list.len());
                    self.list.push(delivery);
                }
                Some(&i) => {
                    if importance(n.reason) > importance(self.list[i].notification.reason) {
                        self.list[i] = delivery;
                    }
                }
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
            silences_of: HashMap::new(),
            news: HashMap::new(),
            repeats: HashMap::new(),
        })
    }

    /// A router for `config` continuing from a snapshot (check its version first with
    /// [`check_state_version`]). Groups whose route no longer exists are dropped, and each
    /// alert is taken out of every group it no longer belongs to (a changed `group_by`)
    /// and grouped anew where needed (as new groups at `now_ms`); escalations of a policy
    /// that no longer exists end. With an unchanged config it behaves exactly as the
    /// router the snapshot was taken from.
    pub fn restore(
        config: &Config,
        state: RoutingState,
        now_ms: TimestampMs,
    ) -> Result<AlertRouter, BuildError> {
        let mut r = AlertRouter::new(config)?;
        r.st = state;
        r.st.version = STATE_VERSION;
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
                    repeat_from_ms: BTreeMap::new(),
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
        // A member stays only in the groups its alert belongs to now; a group left with
        // nothing to do is dropped.
        let alerts = &r.st.alerts;
        let belongs = |key: &str, fp: &String| {
            alerts
                .get(fp)
                .is_some_and(|e| e.groups.iter().any(|g| g == key))
        };
        for (key, g) in r.st.groups.iter_mut() {
            g.alerts.retain(|fp| belongs(key, fp));
            g.notified.retain(|fp| belongs(key, fp));
            let notified = &g.notified;
            g.repeat_from_ms.retain(|fp, _| notified.contains(fp));
            // States saved before `repeat_from_ms` counted repeats from the group's last send.
            let from = g.last_sent_ms.or(g.last_flush_ms).unwrap_or(g.created_ms);
            for fp in &g.notified {
                g.repeat_from_ms.entry(fp.clone()).or_insert(from);
            }
        }
        r.st.groups
            .retain(|_, g| !g.alerts.is_empty() || !g.pending_resolved.is_empty());
        for (key, g) in &r.st.groups {
            let news: BTreeSet<String> = g.alerts.difference(&g.notified).cloned().collect();
            if !news.is_empty() {
                r.news.insert(key.clone(), news);
            }
            if !g.repeat_from_ms.is_empty() {
                r.repeats.insert(
                    key.clone(),
                    g.repeat_from_ms
                        .iter()
                        .map(|(fp, t)| (*t, fp.clone()))
                        .collect(),
                );
            }
        }
        let keys: Vec<String> = r.st.groups.keys().cloned().collect();
        for k in keys {
            let busy = r.news.contains_key(&k) || r.repeats.contains_key(&k);
            let g = r.st.groups.get_mut(&k).expect("listed above");
            if g.next_flush_ms.is_none() && busy {
                g.next_flush_ms = Some(now_ms);
            }
            let t = g.next_flush_ms;
            r.schedule(TimerKind::Group, &k, t);
        }
        for fp in fps {
            r.reschedule_alert(&fp);
        }
        let ids: Vec<String> = r.st.silences.keys().cloned().collect();
        for id in ids {
            let s = r.st.silences[&id].clone();
            for fp in &s.silenced {
                r.silences_of
                    .entry(fp.clone())
                    .or_default()
                    .insert(id.clone());
            }
            if s.expired_at_ms.is_none() {
                if let Ok(ms) = telltale_config::alerting::parse_matchers(&s.spec.matchers) {
                    r.index_silence(&id, ms);
                }
                // An `until_resolved` silence that started while the engine was down takes
                // in the alerts already firing, as its start timer would have.
                if s.spec.until_resolved && s.state(now_ms) == SilenceState::Active {
                    r.take_in_firing(&id);
                }
            }
            r.schedule_silence(&id, now_ms);
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
    /// to whoever was told they fired. The rule's own notices (`repeat`, `flapping`, and a
    /// `settled` that stays firing) change no membership: they go out at once to whoever
    /// was told the alert fires; `settled` with status resolved is the alert's resolve. A
    /// `quiet` resolve (`send_resolved: false`) ends the alert here but reaches nobody.
    pub fn on_notifications(
        &mut self,
        notes: Vec<Notification>,
        now_ms: TimestampMs,
    ) -> Vec<Delivery> {
        let mut out = Out::default();
        for n in notes {
            match (n.status, n.reason) {
                (AlertStatus::Firing, _) => self.on_firing(n, now_ms, &mut out),
                (
                    AlertStatus::Resolved,
                    NotificationReason::StateChange | NotificationReason::Settled,
                ) => self.on_resolved(n, now_ms, &mut out),
                // `flapping` with status resolved says where the alert stood when it began
                // to flap: it did not end, so it stays firing here (and can be acked and
                // escalated while it flaps).
                (AlertStatus::Resolved, _) => {
                    let fp = n.alert.fingerprint.clone();
                    self.rule_notice(&fp, n, now_ms, &mut out);
                }
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
                if let Some(a) = &entry.ack {
                    // A second ack would re-send `acknowledged` and push the ack timeout.
                    return Err(CommandError::Invalid(format!(
                        "alert `{fingerprint}` is already acknowledged by {} at {}; \
                         `telltale unack` withdraws it",
                        a.by,
                        fmt_time(a.at_ms)
                    )));
                }
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
                self.unindex_silence(&id);
                self.schedule_silence(&id, now_ms);
            }
        }
        self.run_due(now_ms, &mut out);
        Ok(out.list)
    }

    /// The firing alert with this fingerprint, as last notified (no routing status: see
    /// [`AlertRouter::alerts`] for that).
    pub fn alert(&self, fingerprint: &str) -> Option<&Alert> {
        self.st
            .alerts
            .get(fingerprint)
            .map(|e| &e.notification.alert)
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
            let mut latest = n.clone();
            latest.reason = NotificationReason::StateChange;
            entry.notification = latest;
            // A plain update waits for the group; the rule's own notices go out at once.
            if n.reason != NotificationReason::StateChange {
                self.rule_notice(&fp, n, now_ms, out);
            }
            return;
        }
        // Not known yet (its firing never reached here, e.g. it began to flap at once):
        // it joins its groups as with a firing state change.
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
                repeat_from_ms: BTreeMap::new(),
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
            self.news.entry(key.clone()).or_default().insert(fp.clone());
            self.schedule(TimerKind::Group, &key, t);
        }
    }

    /// The rule's own notice about a known alert (its `repeat`, `flapping`, `settled`):
    /// at once, to the groups that announced it, unless it is acknowledged (for a repeat),
    /// held back (snooze, silence, inhibition) or its route muted. Membership is unchanged.
    fn rule_notice(&mut self, fp: &str, n: Notification, now_ms: TimestampMs, out: &mut Out) {
        let Some(entry) = self.st.alerts.get(fp) else {
            // Nobody was told it fires, so nobody is told about its flapping either.
            return;
        };
        if n.reason == NotificationReason::Repeat && entry.ack.is_some() {
            return;
        }
        let mut note = n;
        note.alert.ack.clone_from(&entry.ack);
        let labels = match_labels(&entry.notification.alert);
        if self.suppressed(fp, &labels, now_ms) {
            return;
        }
        for g in entry.groups.clone() {
            let Some(group) = self.st.groups.get(&g) else {
                continue;
            };
            if group.notified.contains(fp) {
                let route = self.tree.by_key[&group.route];
                if !self.tree.muted(route, now_ms) {
                    out.send(&self.tree.routes[route].notifiers, &note, &g);
                    self.mark_sent(&g, fp, now_ms);
                }
            }
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
            if !self.forget_member(key, &fp) || n.quiet {
                // Resolved before its group ever announced it: nothing to take back
                // (Alertmanager never notifies an alert resolved within `group_wait`). Or
                // its rule has `send_resolved: false`: it ends here, and nobody hears.
                self.after_change(key, now_ms);
                continue;
            }
            let Some(g) = self.st.groups.get_mut(key) else {
                continue;
            };
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
        if !n.quiet && !reached_sent && !reached.is_empty() {
            out.send(&reached, &n, "escalation");
        }
    }

    /// Takes an alert out of a group; whether the group had announced it.
    fn forget_member(&mut self, key: &str, fp: &str) -> bool {
        let Some(g) = self.st.groups.get_mut(key) else {
            return false;
        };
        g.alerts.remove(fp);
        if let Some(t) = g.repeat_from_ms.remove(fp)
            && let Some(q) = self.repeats.get_mut(key)
        {
            q.remove(&(t, fp.to_string()));
            if q.is_empty() {
                self.repeats.remove(key);
            }
        }
        let was = g.notified.remove(fp);
        self.not_news(key, fp);
        was
    }

    /// Records that the group told its notifiers about a member now: announced, and its
    /// `repeat_interval` counts from now.
    fn mark_sent(&mut self, key: &str, fp: &str, now_ms: TimestampMs) {
        if let Some(g) = self.st.groups.get_mut(key) {
            g.notified.insert(fp.to_string());
            g.last_sent_ms = Some(now_ms);
        }
        self.not_news(key, fp);
        self.repeat_from(key, fp, now_ms);
    }

    fn not_news(&mut self, key: &str, fp: &str) {
        if let Some(n) = self.news.get_mut(key) {
            n.remove(fp);
            if n.is_empty() {
                self.news.remove(key);
            }
        }
    }

    /// Restarts a member's `repeat_interval` at `now_ms`.
    fn repeat_from(&mut self, key: &str, fp: &str, now_ms: TimestampMs) {
        let Some(g) = self.st.groups.get_mut(key) else {
            return;
        };
        let q = self.repeats.entry(key.to_string()).or_default();
        if let Some(old) = g.repeat_from_ms.insert(fp.to_string(), now_ms) {
            q.remove(&(old, fp.to_string()));
        }
        q.insert((now_ms, fp.to_string()));
    }

    /// Drops an empty group, or (re)schedules it.
    fn after_change(&mut self, key: &str, _now_ms: TimestampMs) {
        let Some(g) = self.st.groups.get(key) else {
            return;
        };
        if g.alerts.is_empty() && g.pending_resolved.is_empty() {
            self.st.groups.remove(key);
            self.news.remove(key);
            self.repeats.remove(key);
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

    /// A group's tick: pending resolves, then its news (members not announced yet), then
    /// the repeats that came due. The work follows the news and the due repeats, not the
    /// number of members.
    fn flush(&mut self, key: &str, now_ms: TimestampMs, out: &mut Out) {
        let Some(g) = self.st.groups.get(key) else {
            return;
        };
        let route = self.tree.by_key[&g.route];
        let (notifiers, gi, ri) = {
            let r = &self.tree.routes[route];
            (
                r.notifiers.clone(),
                r.group_interval_ms,
                r.repeat_interval_ms,
            )
        };
        if self.tree.muted(route, now_ms) {
            // Nothing goes out now; news waits for the first tick after the mute.
            let g = self.st.groups.get_mut(key).expect("looked up above");
            g.last_flush_ms = Some(now_ms);
            g.next_flush_ms = Some(now_ms + gi);
            self.after_change(key, now_ms);
            return;
        }
        let pending = std::mem::take(
            &mut self
                .st
                .groups
                .get_mut(key)
                .expect("looked up above")
                .pending_resolved,
        );
        for n in &pending {
            out.send(&notifiers, n, key);
        }
        if !pending.is_empty() {
            self.st
                .groups
                .get_mut(key)
                .expect("looked up above")
                .last_sent_ms = Some(now_ms);
        }
        let news: Vec<String> = self
            .news
            .get(key)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default();
        let mut waiting = false;
        for fp in &news {
            let Some(entry) = self.st.alerts.get(fp) else {
                continue;
            };
            let labels = match_labels(&entry.notification.alert);
            if self.suppressed(fp, &labels, now_ms) {
                waiting = true;
                continue;
            }
            self.announce(key, fp, route, now_ms, out);
        }
        let due: Vec<String> = self
            .repeats
            .get(key)
            .map(|q| {
                q.iter()
                    .take_while(|(t, _)| t + ri <= now_ms)
                    .map(|(_, fp)| fp.clone())
                    .collect()
            })
            .unwrap_or_default();
        for fp in &due {
            let Some(entry) = self.st.alerts.get(fp) else {
                continue;
            };
            let labels = match_labels(&entry.notification.alert);
            if entry.ack.is_none() && !self.suppressed(fp, &labels, now_ms) {
                let note = self.derived(fp, NotificationReason::Repeat, now_ms);
                out.send(&notifiers, &note, key);
                self.mark_sent(key, fp, now_ms);
            } else {
                // Acknowledged or held back: this round counts all the same, so the next
                // one is a whole `repeat_interval` away.
                self.repeat_from(key, fp, now_ms);
            }
        }
        let next_repeat = self
            .repeats
            .get(key)
            .and_then(|q| q.first())
            .map(|(t, _)| next_tick(now_ms, gi, t + ri));
        let g = self.st.groups.get_mut(key).expect("looked up above");
        g.last_flush_ms = Some(now_ms);
        g.next_flush_ms = if waiting {
            // Members held back by a silence, an inhibition or a snooze are announced at
            // the first tick after that ends.
            Some(now_ms + gi)
        } else {
            next_repeat
        };
        self.after_change(key, now_ms);
    }

    /// A member's first notification from a group (reason `state_change`, with the state
    /// machine's id); its escalation starts with it.
    fn announce(&mut self, key: &str, fp: &str, route: usize, now_ms: TimestampMs, out: &mut Out) {
        let Some(entry) = self.st.alerts.get(fp) else {
            return;
        };
        let mut note = entry.notification.clone();
        note.alert.ack.clone_from(&entry.ack);
        out.send(&self.tree.routes[route].notifiers, &note, key);
        self.mark_sent(key, fp, now_ms);
        self.start_escalation(fp, route, now_ms, out);
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
            self.restart_escalation(fp, now_ms);
            self.snooze_ended(fp, now_ms, out);
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

    /// A snooze ended and the alert still fires: groups that announced it send it again
    /// (reason `repeat`, to the escalation levels reached too); groups that never did
    /// announce it now (reason `state_change`, starting its escalation). A muted route sends
    /// nothing: a reminder is skipped, an announcement waits for the group's first tick
    /// after the mute (the group keeps ticking while it holds news back).
    fn snooze_ended(&mut self, fp: &str, now_ms: TimestampMs, out: &mut Out) {
        let Some(entry) = self.st.alerts.get(fp) else {
            return;
        };
        let labels = match_labels(&entry.notification.alert);
        if self.suppressed(fp, &labels, now_ms) {
            // Still silenced or inhibited: what it held back goes out when that ends.
            return;
        }
        let groups = entry.groups.clone();
        let reached: Vec<String> = entry.reached.iter().cloned().collect();
        let note = self.derived(fp, NotificationReason::Repeat, now_ms);
        for key in groups {
            let Some(g) = self.st.groups.get(&key) else {
                continue;
            };
            let route = self.tree.by_key[&g.route];
            if self.tree.muted(route, now_ms) {
                continue;
            }
            if g.notified.contains(fp) {
                out.send(&self.tree.routes[route].notifiers, &note, &key);
                self.mark_sent(&key, fp, now_ms);
            } else {
                self.announce(&key, fp, route, now_ms, out);
            }
        }
        out.send(&reached, &note, "escalation");
    }

    /// Tells everyone who was told the alert fires (its groups' notifiers and the
    /// escalation levels reached) about an acknowledgement or its withdrawal. Nothing goes
    /// out while the alert is snoozed, silenced or inhibited: nothing about it does then.
    fn notice(&mut self, fp: &str, reason: NotificationReason, now_ms: TimestampMs, out: &mut Out) {
        let Some(entry) = self.st.alerts.get(fp) else {
            return;
        };
        let labels = match_labels(&entry.notification.alert);
        if self.suppressed(fp, &labels, now_ms) {
            return;
        }
        let mut targets: Vec<(Vec<String>, String)> = Vec::new();
        for g in &entry.groups {
            if let Some(group) = self.st.groups.get(g)
                && group.notified.contains(fp)
            {
                let route = self.tree.by_key[&group.route];
                if !self.tree.muted(route, now_ms) {
                    targets.push((self.tree.routes[route].notifiers.clone(), g.clone()));
                }
            }
        }
        let reached: Vec<String> = entry.reached.iter().cloned().collect();
        let note = self.derived(fp, reason, now_ms);
        // Not a reminder that it fires: its `repeat_interval` keeps counting.
        for (notifiers, key) in targets {
            out.send(&notifiers, &note, &key);
        }
        out.send(&reached, &note, "escalation");
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
        let silence = Silence {
            spec,
            expired_at_ms: None,
            silenced: BTreeSet::new(),
        };
        let active = silence.state(now_ms) == SilenceState::Active;
        let endless = silence.spec.until_resolved && silence.spec.ends_at_ms.is_none();
        if active
            && endless
            && !self.st.alerts.values().any(|e| {
                let labels = match_labels(&e.notification.alert);
                matchers.iter().all(|m| m.matches(&labels))
            })
        {
            // It would wait for a resolve that never comes, and swallow the next such
            // alert whenever it fires.
            return Err(CommandError::Invalid(format!(
                "silence `{id}` is `until_resolved` without an end time, but no firing alert \
                 matches it, so it would never end; check the matchers against `telltale \
                 alerts`, or give it an end time"
            )));
        }
        self.st.silences.insert(id.clone(), silence);
        self.index_silence(&id, matchers);
        if active {
            self.take_in_firing(&id);
        }
        self.schedule_silence(&id, now_ms);
        Ok(())
    }

    /// Adds the firing alerts a silence matches to its `silenced` (at its start).
    fn take_in_firing(&mut self, id: &str) {
        let Some(ms) = self.silence_matchers.get(id) else {
            return;
        };
        let hits: Vec<String> = self
            .st
            .alerts
            .iter()
            .filter(|(_, e)| {
                let labels = match_labels(&e.notification.alert);
                ms.iter().all(|m| m.matches(&labels))
            })
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in hits {
            self.track(id, &fp);
        }
    }

    fn track(&mut self, id: &str, fp: &str) {
        if let Some(s) = self.st.silences.get_mut(id) {
            s.silenced.insert(fp.to_string());
            self.silences_of
                .entry(fp.to_string())
                .or_default()
                .insert(id.to_string());
        }
    }

    /// Puts a silence (not expired) in the index with its compiled matchers.
    fn index_silence(&mut self, id: &str, ms: Vec<Matcher>) {
        match Self::index_key(&ms) {
            Some(k) => self
                .silence_index
                .entry(k)
                .or_default()
                .push(id.to_string()),
            None => self.unindexed_silences.push(id.to_string()),
        }
        self.silence_matchers.insert(id.to_string(), ms);
    }

    /// Takes an expired silence out of the index.
    fn unindex_silence(&mut self, id: &str) {
        let Some(ms) = self.silence_matchers.remove(id) else {
            return;
        };
        match Self::index_key(&ms) {
            Some(k) => {
                if let Some(v) = self.silence_index.get_mut(&k) {
                    v.retain(|x| x != id);
                    if v.is_empty() {
                        self.silence_index.remove(&k);
                    }
                }
            }
            None => self.unindexed_silences.retain(|x| x != id),
        }
    }

    /// The `name=value` a silence is indexed by: its first equality matcher with a value.
    fn index_key(ms: &[Matcher]) -> Option<(String, String)> {
        ms.iter()
            .find(|m| m.op == telltale_config::alerting::MatchOp::Equal && !m.value.is_empty())
            .map(|m| (m.name.clone(), m.value.clone()))
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
            self.track(&id, fp);
        }
    }

    /// The alert resolved: it leaves the silences that held it, and an `until_resolved`
    /// one left with none ends now.
    fn release_until_resolved(&mut self, fp: &str, now_ms: TimestampMs) {
        let Some(ids) = self.silences_of.remove(fp) else {
            return;
        };
        for id in ids {
            let Some(s) = self.st.silences.get_mut(&id) else {
                continue;
            };
            if s.silenced.remove(fp)
                && s.spec.until_resolved
                && s.silenced.is_empty()
                && s.state(now_ms) == SilenceState::Active
            {
                s.expired_at_ms = Some(now_ms);
                self.unindex_silence(&id);
                self.schedule_silence(&id, now_ms);
            }
        }
    }

    /// A silence's next timer: its start (when it takes in the alerts already firing), its
    /// end, or (ended) the end of its retention.
    fn schedule_silence(&mut self, id: &str, now_ms: TimestampMs) {
        let at = self
            .st
            .silences
            .get(id)
            .and_then(|s| match s.expired_at_ms {
                Some(t) => Some(t + SILENCE_RETENTION_MS),
                None if now_ms < s.spec.starts_at_ms => Some(s.spec.starts_at_ms),
                None => s.spec.ends_at_ms,
            });
        self.schedule(TimerKind::Silence, id, at);
    }

    fn silence_timer(&mut self, id: &str, now_ms: TimestampMs) {
        let Some(s) = self.st.silences.get_mut(id) else {
            return;
        };
        if s.expired_at_ms.is_some() {
            // Its retention is over.
            if let Some(s) = self.st.silences.remove(id) {
                for fp in &s.silenced {
                    if let Some(ids) = self.silences_of.get_mut(fp) {
                        ids.remove(id);
                        if ids.is_empty() {
                            self.silences_of.remove(fp);
                        }
                    }
                }
            }
            self.schedule(TimerKind::Silence, id, None);
            return;
        }
        if s.spec.ends_at_ms.is_some_and(|e| e <= now_ms) {
            s.expired_at_ms = s.spec.ends_at_ms;
            self.unindex_silence(id);
        } else if now_ms >= s.spec.starts_at_ms {
            // It starts: alerts already firing that it matches are now held by it, so an
            // `until_resolved` silence ends with them. One that finds none (and has no end
            // time) would never end: it ends at once.
            self.take_in_firing(id);
            let s = self.st.silences.get_mut(id).expect("looked up above");
            if s.spec.until_resolved && s.spec.ends_at_ms.is_none() && s.silenced.is_empty() {
                s.expired_at_ms = Some(now_ms);
                self.unindex_silence(id);
            }
        }
        self.schedule_silence(id, now_ms);
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

/// An instant for operators' messages: RFC 3339 in UTC.
fn fmt_time(ms: TimestampMs) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
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
