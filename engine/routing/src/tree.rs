//! The `alerting:` section compiled for evaluation: the routing tree flattened into a
//! vector (children by index), matchers and time intervals parsed, inheritance applied.

use std::collections::HashMap;

use telltale_config::Config;
use telltale_config::alerting::{
    self, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, LevelCondition,
    Matcher, ResolveMode, RouteNode, TimeInterval,
};
use telltale_model::{Labels, duration_ms};

use crate::BuildError;

/// How a route splits its alerts into groups.
#[derive(Debug, Clone)]
pub(crate) enum GroupBy {
    /// `['...']`: every label, so every alert is its own group.
    All,
    /// The values of these labels (an empty list: one group).
    Labels(Vec<String>),
}

/// One route with its inherited settings.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// `{}` for the root, `PARENT/INDEX{matchers}` below: unique, and readable in group keys.
    pub key: String,
    pub matchers: Vec<Matcher>,
    pub continue_matching: bool,
    pub children: Vec<usize>,
    pub notifiers: Vec<String>,
    pub group_by: GroupBy,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    pub resolve: ResolveMode,
    /// Indices into [`Tree::intervals`].
    pub mute: Vec<usize>,
    pub active: Vec<usize>,
    /// Index into [`Tree::policies`].
    pub escalation: Option<usize>,
}

/// One escalation level, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Level {
    pub after_ms: i64,
    pub notify: Vec<String>,
    pub condition: LevelCondition,
}

/// One escalation policy, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub levels: Vec<Level>,
    pub repeat_count: u32,
    pub repeat_wait_ms: i64,
    pub ack_timeout_ms: Option<i64>,
}

/// One inhibition rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// The `equal` labels' values, missing ones as empty (Alertmanager's reading).
    pub fn equal_key(&self, labels: &Labels) -> String {
        let mut k = String::new();
        for l in &self.equal {
            k.push_str(labels.get(l).map_or("", String::as_str));
            k.push('\u{0}');
        }
        k
    }
}

/// The compiled `alerting:` section.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// Index 0 is the root.
    pub routes: Vec<Route>,
    pub by_key: HashMap<String, usize>,
    /// Named sets of windows.
    pub intervals: Vec<(String, Vec<TimeInterval>)>,
    pub policies: Vec<Policy>,
    pub inhibit: Vec<InhibitRule>,
}

impl Tree {
    pub fn build(config: &Config) -> Result<Tree, BuildError> {
        let a = &config.alerting;
        let mut intervals = Vec::new();
        for set in &a.time_intervals {
            let mut windows = Vec::new();
            for w in &set.time_intervals {
                windows.push(TimeInterval::compile(w).map_err(|(field, e)| {
                    BuildError(format!("time interval `{}`: {field}: {e}", set.name))
                })?);
            }
            intervals.push((set.name.clone(), windows));
        }
        let mut policies = Vec::new();
        for p in &a.escalation_policies {
            policies.push(Policy {
                name: p.name.clone(),
                levels: p
                    .levels
                    .iter()
                    .map(|l| Level {
                        after_ms: duration_ms(l.after.get()),
                        notify: l.notify.clone(),
                        condition: l.condition,
                    })
                    .collect(),
                repeat_count: p.repeat.as_ref().map_or(0, |r| r.count),
                repeat_wait_ms: p.repeat.as_ref().map_or(0, |r| duration_ms(r.wait.get())),
                ack_timeout_ms: p.ack_timeout.map(|d| duration_ms(d.get())),
            });
        }
        let mut inhibit = Vec::new();
        for r in &a.inhibit_rules {
            inhibit.push(InhibitRule {
                source: alerting::parse_matchers(&r.source_matchers).map_err(BuildError)?,
                target: alerting::parse_matchers(&r.target_matchers).map_err(BuildError)?,
                equal: r.equal.clone(),
            });
        }
        let mut tree = Tree {
            routes: Vec::new(),
            by_key: HashMap::new(),
            intervals,
            policies,
            inhibit,
        };
        let root = alerting::effective_route(config);
        let all: Vec<String> = config.notifiers.iter().map(|n| n.name.clone()).collect();
        let inherited = Route {
            key: "{}".into(),
            matchers: Vec::new(),
            continue_matching: false,
            children: Vec::new(),
            notifiers: all,
            group_by: GroupBy::Labels(Vec::new()),
            group_wait_ms: duration_ms(DEFAULT_GROUP_WAIT),
            group_interval_ms: duration_ms(DEFAULT_GROUP_INTERVAL),
            repeat_interval_ms: duration_ms(DEFAULT_REPEAT_INTERVAL),
            resolve: ResolveMode::Immediate,
            mute: Vec::new(),
            active: Vec::new(),
            escalation: None,
        };
        tree.add(&root, &inherited, "{}".into())?;
        Ok(tree)
    }

    fn add(&mut self, node: &RouteNode, parent: &Route, key: String) -> Result<usize, BuildError> {
        let names = |list: &Option<Vec<String>>, inherited: &Vec<usize>| match list {
            None => Ok(inherited.clone()),
            Some(l) => l
                .iter()
                .map(|n| {
                    self.intervals
                        .iter()
                        .position(|(name, _)| name == n)
                        .ok_or_else(|| BuildError(format!("unknown time interval `{n}`")))
                })
                .collect(),
        };
        let route = Route {
            key: key.clone(),
            matchers: alerting::parse_matchers(&node.matchers).map_err(BuildError)?,
            continue_matching: node.continue_matching,
            children: Vec::new(),
            notifiers: node
                .notifiers
                .clone()
                .unwrap_or_else(|| parent.notifiers.clone()),
            group_by: match &node.group_by {
                None => parent.group_by.clone(),
                Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
                Some(g) => GroupBy::Labels(g.clone()),
            },
            group_wait_ms: node
                .group_wait
                .map_or(parent.group_wait_ms, |d| duration_ms(d.get())),
            group_interval_ms: node
                .group_interval
                .map_or(parent.group_interval_ms, |d| duration_ms(d.get()))
                .max(1),
            repeat_interval_ms: node
                .repeat_interval
                .map_or(parent.repeat_interval_ms, |d| duration_ms(d.get()))
                .max(1),
            resolve: node.resolve.unwrap_or(parent.resolve),
            mute: names(&node.mute_time_intervals, &parent.mute)?,
            active: names(&node.active_time_intervals, &parent.active)?,
            escalation: match &node.escalation {
                None => parent.escalation,
                Some(p) => Some(
                    self.policies
                        .iter()
                        .position(|x| &x.name == p)
                        .ok_or_else(|| BuildError(format!("unknown escalation policy `{p}`")))?,
                ),
            },
        };
        let index = self.routes.len();
        self.routes.push(route.clone());
        self.by_key.insert(key.clone(), index);
        for (i, child) in node.routes.iter().enumerate() {
            let matchers: Vec<String> = alerting::parse_matchers(&child.matchers)
                .map_err(BuildError)?
                .iter()
                .map(ToString::to_string)
                .collect();
            let child_key = format!("{key}/{i}{{{}}}", matchers.join(","));
            let c = self.add(child, &route, child_key)?;
            self.routes[index].children.push(c);
        }
        Ok(index)
    }

    /// The routes an alert goes to (Alertmanager's `Route.Match`): a route whose matchers
    /// hold takes the alert unless one of its children does; children are tried in order
    /// and the first match stops the search unless it has `continue`.
    pub fn matching(&self, labels: &Labels) -> Vec<usize> {
        let mut out = Vec::new();
        self.match_into(0, labels, &mut out);
        out
    }

    fn match_into(&self, i: usize, labels: &Labels, out: &mut Vec<usize>) -> bool {
        let r = &self.routes[i];
        if !r.matchers.iter().all(|m| m.matches(labels)) {
            return false;
        }
        let before = out.len();
        for &c in &r.children {
            if self.match_into(c, labels, out) && !self.routes[c].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(i);
        }
        true
    }

    /// Whether a route sends nothing at `now_ms` (a mute interval holds, or it has active
    /// intervals and none holds).
    pub fn muted(&self, route: usize, now_ms: i64) -> bool {
        let r = &self.routes[route];
        let holds = |set: &usize| self.intervals[*set].1.iter().any(|w| w.contains(now_ms));
        r.mute.iter().any(holds) || (!r.active.is_empty() && !r.active.iter().any(holds))
    }

    /// The labels a route groups an alert by, written `{a="1",b="2"}`.
    pub fn group_labels(&self, route: usize, labels: &Labels) -> Labels {
        match &self.routes[route].group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}
