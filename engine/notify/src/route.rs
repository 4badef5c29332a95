//! Routing: which notifiers get which alert.
//!
//! Routes are tried in order. An alert goes to the notifiers of the first route that
//! matches it; when that route has `continue: true` the following routes are tried too, and
//! so on until a matching route without `continue`. An alert that no route matches goes to
//! every notifier, so a configuration without routes notifies everyone and nothing is
//! silently dropped. A matching route with an empty notifier list therefore mutes alerts.

use telltale_config::RouteConfig;
use telltale_model::{Alert, Labels, Severity};

/// A validated list of routes plus the fallback (all notifiers).
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    all: Vec<String>,
}

#[derive(Debug, Clone)]
struct Route {
    matchers: Labels,
    min_severity: Option<Severity>,
    notifiers: Vec<String>,
    continue_matching: bool,
}

impl Route {
    fn matches(&self, alert: &Alert) -> bool {
        if self.min_severity.is_some_and(|min| alert.severity < min) {
            return false;
        }
        self.matchers
            .iter()
            .all(|(k, want)| match alert.labels.get(k) {
                Some(have) => have == want,
                // `alertname` and `severity` are documented as labels; fall back to the alert's
                // own fields in case a producer did not copy them into the label set.
                None => match k.as_str() {
                    "alertname" => alert.rule == *want,
                    "severity" => alert.severity.as_str() == want,
                    _ => false,
                },
            })
    }
}

impl Router {
    /// Builds a router. `all` is every notifier's name, in configuration order (the
    /// fallback). Route notifier names are not checked here: the config's check refuses a
    /// route naming an unknown notifier, with its position.
    pub fn new(routes: &[RouteConfig], all: Vec<String>) -> Router {
        Router {
            routes: routes
                .iter()
                .map(|r| Route {
                    matchers: r.matchers.clone(),
                    min_severity: r.min_severity,
                    notifiers: r.notifiers.clone(),
                    continue_matching: r.continue_matching,
                })
                .collect(),
            all,
        }
    }

    /// The notifiers an alert goes to, each once, in the order routes name them.
    pub fn targets(&self, alert: &Alert) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut matched = false;
        for route in &self.routes {
            if !route.matches(alert) {
                continue;
            }
            matched = true;
            for name in &route.notifiers {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
            if !route.continue_matching {
                break;
            }
        }
        if !matched {
            out = self.all.iter().map(String::as_str).collect();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::notification;
    use telltale_model::AlertStatus;

    fn route(m: &[(&str, &str)], min: Option<Severity>, n: &[&str], cont: bool) -> RouteConfig {
        RouteConfig {
            matchers: m
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            min_severity: min,
            notifiers: n.iter().map(|s| s.to_string()).collect(),
            continue_matching: cont,
        }
    }

    fn alert(sev: Severity, team: &str) -> Alert {
        let mut a = notification("x", 1.0, AlertStatus::Firing).alert;
        a.severity = sev;
        a.labels.insert("severity".into(), sev.as_str().into());
        a.labels.insert("team".into(), team.into());
        a
    }

    fn all() -> Vec<String> {
        vec!["console".into(), "ops".into(), "db".into(), "pager".into()]
    }

    #[test]
    fn no_routes_means_everyone() {
        let r = Router::new(&[], all());
        assert_eq!(
            r.targets(&alert(Severity::Info, "a")),
            ["console", "ops", "db", "pager"]
        );
    }

    #[test]
    fn first_match_wins_without_continue() {
        let r = Router::new(
            &[
                route(&[("team", "db")], None, &["db"], false),
                route(&[], None, &["ops"], false),
            ],
            all(),
        );
        assert_eq!(r.targets(&alert(Severity::Info, "db")), ["db"]);
        assert_eq!(r.targets(&alert(Severity::Info, "web")), ["ops"]);
    }

    #[test]
    fn continue_adds_later_matches_and_dedupes() {
        let r = Router::new(
            &[
                route(&[], Some(Severity::Critical), &["pager", "ops"], true),
                route(&[("team", "db")], None, &["db", "ops"], true),
                route(&[("team", "nope")], None, &["console"], false),
                route(&[], None, &["ops"], false),
                route(&[], None, &["console"], false),
            ],
            all(),
        );
        assert_eq!(
            r.targets(&alert(Severity::Critical, "db")),
            ["pager", "ops", "db"]
        );
        // Not critical: the first route does not match and does not stop the search.
        assert_eq!(r.targets(&alert(Severity::Warning, "db")), ["db", "ops"]);
        assert_eq!(r.targets(&alert(Severity::Warning, "web")), ["ops"]);
    }

    #[test]
    fn min_severity_and_unmatched_fallback() {
        let r = Router::new(
            &[route(&[], Some(Severity::Warning), &["pager"], false)],
            all(),
        );
        assert_eq!(r.targets(&alert(Severity::Critical, "a")), ["pager"]);
        assert_eq!(r.targets(&alert(Severity::Warning, "a")), ["pager"]);
        assert_eq!(r.targets(&alert(Severity::Info, "a")).len(), 4);
    }

    #[test]
    fn alertname_and_severity_match_without_labels() {
        let r = Router::new(
            &[route(
                &[("alertname", "high_cpu"), ("severity", "critical")],
                None,
                &["db"],
                false,
            )],
            all(),
        );
        let mut a = alert(Severity::Critical, "a");
        a.labels.clear();
        assert_eq!(r.targets(&a), ["db"]);
        a.rule = "other".into();
        assert_eq!(r.targets(&a).len(), 4);
    }

    #[test]
    fn empty_notifier_list_mutes() {
        let r = Router::new(&[route(&[("team", "noisy")], None, &[], false)], all());
        assert!(r.targets(&alert(Severity::Critical, "noisy")).is_empty());
    }
}
