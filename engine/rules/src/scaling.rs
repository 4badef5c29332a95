//! Scaling rules: `kind: "scaling"` in `RULE`, the `scaling: #{ .. }` settings beside it,
//! and what their `evaluate()` returns (`#{ desired, current?, reason, inputs? }`).
//!
//! A scaling rule raises no alerts: its result is a proposal of a replica count, which the
//! pipeline's scaling stage (`telltale-scaling`) stabilises into decisions. This file only
//! reads and checks what the rule author wrote, with positions, as `metadata` does for the
//! rest of `RULE`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rhai::{Dynamic, ImmutableString, Map};

use telltale_diagnostics::{Diagnostic, Position, did_you_mean};
use telltale_model::{ScalingProposal, ScalingSpec, Stabilization};

use super::metadata::RuleLayout;

/// Keys of `RULE.scaling`.
pub const SCALING_KEYS: [&str; 9] = [
    "target",
    "min",
    "max",
    "up_delay",
    "down_delay",
    "max_step",
    "max_step_up",
    "max_step_down",
    "stabilization",
];

/// Keys of the map a scaling rule's `evaluate()` returns.
const RETURN_KEYS: [&str; 4] = ["desired", "current", "reason", "inputs"];

/// The hint for a scaling rule's bad return value.
pub(crate) const RETURN_HINT: &str = "return #{ desired: 3, reason: \"...\" } (optionally with current: and inputs: #{ .. }), or [] for no opinion";

/// The hint for a malformed `scaling` map.
const SPEC_EXAMPLE: &str = "e.g. scaling: #{ target: \"my_scaler\", min: 1, max: 8, up_delay: \"0s\", down_delay: \"5m\", max_step: 2 }";

/// Down delay when the rule does not say: Kubernetes HPA's default
/// `scaleDown.stabilizationWindowSeconds` (300).
pub const DEFAULT_DOWN_DELAY: Duration = Duration::from_secs(300);

/// Reads `kind` and `scaling` of a `RULE` map. `None` for an alert rule (no `kind`, or
/// `kind: "alert"`) and when something is wrong, which is pushed to `errors` positioned in
/// `source`.
pub(crate) fn read_spec(
    map: &Map,
    layout: &RuleLayout,
    source: &str,
    file: &Path,
    decl: Option<Position>,
    errors: &mut Vec<Diagnostic>,
) -> Option<ScalingSpec> {
    let value_at = |key: &str| {
        layout
            .keys
            .iter()
            .find(|(k, ..)| k == key)
            .map(|(_, _, v)| *v)
            .or(decl)
    };
    let diag = |key: &str, msg: String| Diagnostic::new(file, Some(source), value_at(key), msg);

    let kind = match map.get("kind") {
        None => "alert".to_string(),
        Some(v) => match v.read_lock::<ImmutableString>() {
            Some(s) if matches!(s.as_str(), "alert" | "scaling") => s.to_string(),
            Some(s) => {
                errors.push(
                    diag("kind", format!("unknown rule kind \"{}\"", s.as_str()))
                        .with_hint("one of \"alert\" (the default) or \"scaling\""),
                );
                return None;
            }
            None => {
                errors.push(diag(
                    "kind",
                    format!("RULE.kind must be a string, found {}", v.type_name()),
                ));
                return None;
            }
        },
    };
    let spec = map.get("scaling");
    match (kind.as_str(), spec) {
        ("alert", None) => return None,
        ("alert", Some(_)) => {
            errors.push(
                diag(
                    "scaling",
                    "RULE.scaling is given but the rule is not a scaling rule".into(),
                )
                .with_hint("add `kind: \"scaling\"` to RULE, or remove `scaling`"),
            );
            return None;
        }
        (_, None) => {
            errors.push(
                diag(
                    "kind",
                    "a scaling rule needs `scaling: #{ .. }` in RULE".into(),
                )
                .with_hint(SPEC_EXAMPLE),
            );
            return None;
        }
        _ => {}
    }
    let spec = spec?;
    let Some(m) = spec.read_lock::<Map>().map(|m| m.clone()) else {
        errors.push(
            diag(
                "scaling",
                format!("RULE.scaling must be a map, found {}", spec.type_name()),
            )
            .with_hint(SPEC_EXAMPLE),
        );
        return None;
    };
    let before = errors.len();
    let mut err = |msg: String, hint: &str| {
        let d = diag("scaling", msg);
        errors.push(if hint.is_empty() {
            d
        } else {
            d.with_hint(hint)
        });
    };

    for key in m.keys() {
        if !SCALING_KEYS.contains(&key.as_str()) {
            let hint = match did_you_mean(key, SCALING_KEYS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("known keys: {}", SCALING_KEYS.join(", ")),
            };
            err(format!("unknown key `{key}` in RULE.scaling"), &hint);
        }
    }

    let target = match m.get("target") {
        None => {
            err(
                "RULE.scaling has no `target`".into(),
                "name what is scaled: an entry of `scalers:` in the config, e.g. target: \"feature_extractor\"",
            );
            None
        }
        Some(v) => match v.read_lock::<ImmutableString>() {
            Some(s) if !s.trim().is_empty() => Some(s.to_string()),
            Some(_) => {
                err("RULE.scaling.target must not be empty".into(), "");
                None
            }
            None => {
                err(
                    format!(
                        "RULE.scaling.target must be a string, found {}",
                        v.type_name()
                    ),
                    "",
                );
                None
            }
        },
    };

    let mut count = |key: &str, default: Option<u32>, least: u32| -> Option<u32> {
        match m.get(key) {
            None => default,
            Some(v) => match v.as_int().ok().and_then(|i| u32::try_from(i).ok()) {
                Some(n) if n >= least => Some(n),
                _ => {
                    err(
                        format!(
                            "RULE.scaling.{key} must be a whole number of at least {least}, found {v}"
                        ),
                        "",
                    );
                    None
                }
            },
        }
    };
    let min = count("min", Some(1), 0);
    let max = count("max", None, 1);
    let step = count("max_step", None, 1);
    let step_up = count("max_step_up", None, 1).or(step);
    let step_down = count("max_step_down", None, 1).or(step);
    if !m.contains_key("max") {
        err(
            "RULE.scaling has no `max`".into(),
            "give the most replicas a decision may ask for, e.g. max: 8",
        );
    }

    let mut duration = |key: &str, default: Duration| -> Duration {
        match m.get(key) {
            None => default,
            Some(v) => match parse_duration(v) {
                Ok(d) => d,
                Err(msg) => {
                    err(
                        format!("RULE.scaling.{key}: {msg}"),
                        "write it like \"0s\", \"30s\" or \"5m\"",
                    );
                    default
                }
            },
        }
    };
    let up_delay = duration("up_delay", Duration::ZERO);
    let down_delay = duration("down_delay", DEFAULT_DOWN_DELAY);

    let stabilization = match m.get("stabilization") {
        None => Stabilization::default(),
        Some(v) => match v
            .read_lock::<ImmutableString>()
            .as_deref()
            .map(|s| s.as_str())
        {
            Some("window") => Stabilization::Window,
            Some("delay") => Stabilization::Delay,
            _ => {
                err(
                    format!(
                        "RULE.scaling.stabilization must be \"window\" or \"delay\", found {v}"
                    ),
                    "\"window\" (Kubernetes HPA, the default) or \"delay\" (Ray Serve)",
                );
                Stabilization::default()
            }
        },
    };

    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        err(
            format!("RULE.scaling.min ({min}) is larger than RULE.scaling.max ({max})"),
            "",
        );
    }
    if errors.len() > before {
        return None;
    }
    Some(ScalingSpec {
        target: target?,
        min: min?,
        max: max?,
        up_delay,
        down_delay,
        max_step_up: step_up,
        max_step_down: step_down,
        stabilization,
    })
}

/// A duration string (`"5m"`) or a non-negative number of seconds.
fn parse_duration(v: &Dynamic) -> Result<Duration, String> {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        humantime::parse_duration(s.trim())
            .map_err(|e| format!("\"{}\" is not a duration ({e})", s.as_str()))
    } else if let Ok(secs) = v.as_int() {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| format!("must not be negative, found {secs}"))
    } else if let Ok(secs) = v.as_float() {
        Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("must be a non-negative number of seconds, found {secs}"))
    } else {
        Err(format!(
            "must be a duration string, found {}",
            v.type_name()
        ))
    }
}

/// Converts what a scaling rule's `evaluate()` returned: `()`, `false` or `[]` is no
/// opinion this tick (`None`); a map `#{ desired, current?, reason?, inputs? }` a proposal.
pub(crate) fn to_proposal(value: Dynamic) -> Result<Option<ScalingProposal>, String> {
    if value.is_unit() || value.as_bool() == Ok(false) {
        return Ok(None);
    }
    if value.is_array() && value.clone().into_array().is_ok_and(|a| a.is_empty()) {
        return Ok(None);
    }
    let Some(m) = value.read_lock::<Map>() else {
        return Err(format!(
            "a scaling rule's evaluate() returned {}; expected (), [] or a map #{{ desired, reason }}",
            value.type_name()
        ));
    };
    if let Some(key) = m.keys().find(|k| !RETURN_KEYS.contains(&k.as_str())) {
        let hint = did_you_mean(key, RETURN_KEYS)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(format!(
            "evaluate() returned a map with unknown key `{key}` (expected desired, current, reason, inputs){hint}"
        ));
    }
    let replicas = |key: &str, v: &Dynamic| -> Result<u32, String> {
        // A rule computing `queue / per_replica` gets a fraction: round up, as the HPA
        // does (`ceil(current * metric / target)`), so the load is covered.
        let n = if let Ok(i) = v.as_int() {
            i as f64
        } else if let Ok(f) = v.as_float() {
            f.ceil()
        } else if v.is_unit() {
            return Err(format!(
                "`{key}` is () (no data: the metric is absent or the window is empty)"
            ));
        } else {
            return Err(format!("`{key}` must be a number, found {}", v.type_name()));
        };
        if !(0.0..=f64::from(u32::MAX)).contains(&n) {
            return Err(format!(
                "`{key}` must be a replica count (0 or more), found {n}"
            ));
        }
        Ok(n as u32)
    };
    let desired = match m.get("desired") {
        None => return Err("evaluate() returned a map without `desired`".into()),
        Some(v) => replicas("desired", v)?,
    };
    let current = match m.get("current") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(replicas("current", v)?),
    };
    let reason = match m.get("reason") {
        None => String::new(),
        Some(v) => v
            .read_lock::<ImmutableString>()
            .map(|s| s.to_string())
            .ok_or_else(|| format!("`reason` must be a string, found {}", v.type_name()))?,
    };
    let mut inputs = BTreeMap::new();
    if let Some(v) = m.get("inputs") {
        let Some(im) = v.read_lock::<Map>() else {
            return Err(format!(
                "`inputs` must be a map of numbers, found {}",
                v.type_name()
            ));
        };
        for (k, x) in im.iter() {
            let n = x
                .as_float()
                .or_else(|_| x.as_int().map(|i| i as f64))
                .map_err(|t| format!("`inputs.{k}` must be a number, found {t}"))?;
            inputs.insert(k.to_string(), n);
        }
    }
    Ok(Some(ScalingProposal {
        desired,
        current,
        reason,
        inputs,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use telltale_config::RulesConfig;
    use telltale_model::Sample;
    use telltale_store::{SeriesStore, StoreLimits};

    use super::*;
    use crate::RuleSet;

    const T0: i64 = 1_700_000_000_000;

    fn rule_set() -> (Arc<SeriesStore>, RuleSet) {
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let set = RuleSet::new(store.clone(), &RulesConfig::default());
        (store, set)
    }

    fn src(scaling: &str, body: &str) -> String {
        format!(
            "const RULE = #{{\n    name: \"scale\",\n    severity: \"info\",\n    kind: \"scaling\",\n    scaling: {scaling},\n}};\n\nfn evaluate() {{\n    {body}\n}}\n"
        )
    }

    fn diags(text: &str) -> String {
        let (_, mut set) = rule_set();
        set.load_source(Path::new("s.rhai"), PathBuf::from("s.rhai"), text)
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn spec_is_read_with_defaults() {
        let (_, mut set) = rule_set();
        let d = set.load_source(
            Path::new("s.rhai"),
            PathBuf::from("s.rhai"),
            &src("#{ target: \"fe\", max: 8, max_step: 2 }", "[]"),
        );
        assert!(d.is_empty(), "{d:?}");
        let meta = &set.rules()[0];
        assert_eq!(
            meta.scaling,
            Some(ScalingSpec {
                target: "fe".into(),
                min: 1,
                max: 8,
                up_delay: Duration::ZERO,
                down_delay: Duration::from_secs(300),
                max_step_up: Some(2),
                max_step_down: Some(2),
                stabilization: Stabilization::Window,
            })
        );
        let full = "#{ target: \"fe\", min: 2, max: 5, up_delay: \"30s\", down_delay: 60, \
                    max_step: 3, max_step_down: 1, stabilization: \"delay\" }";
        let (_, mut set) = rule_set();
        let d = set.load_source(
            Path::new("s.rhai"),
            PathBuf::from("s.rhai"),
            &src(full, "[]"),
        );
        assert!(d.is_empty(), "{d:?}");
        let spec = set.rules()[0].scaling.clone().expect("a scaling rule");
        assert_eq!((spec.min, spec.max), (2, 5));
        assert_eq!(spec.up_delay, Duration::from_secs(30));
        assert_eq!(spec.down_delay, Duration::from_secs(60));
        // max_step_down overrides max_step; max_step_up inherits it.
        assert_eq!((spec.max_step_up, spec.max_step_down), (Some(3), Some(1)));
        assert_eq!(spec.stabilization, Stabilization::Delay);
    }

    #[test]
    fn alert_rules_have_no_spec() {
        let (_, mut set) = rule_set();
        let text = "const RULE = #{ name: \"a\", severity: \"info\" };\nfn evaluate() { [] }\n";
        assert!(
            set.load_source(Path::new("a.rhai"), PathBuf::from("a.rhai"), text)
                .is_empty()
        );
        assert_eq!(set.rules()[0].scaling, None);
    }

    #[test]
    fn bad_specs_are_positioned_with_hints() {
        let out = diags(&src("#{ target: \"fe\", max: 8, max_stp: 2 }", "[]"));
        // `scaling:` is on line 5, its value at column 14.
        assert!(
            out.contains("s.rhai:5:14: error: unknown key `max_stp` in RULE.scaling"),
            "{out}"
        );
        assert!(out.contains("did you mean `max_step`?"), "{out}");

        let out = diags(&src("#{ target: \"fe\", min: 4, max: 2 }", "[]"));
        assert!(
            out.contains("RULE.scaling.min (4) is larger than RULE.scaling.max (2)"),
            "{out}"
        );
        let out = diags(&src("#{ max: 2, down_delay: \"5 parsecs\" }", "[]"));
        assert!(out.contains("RULE.scaling has no `target`"), "{out}");
        assert!(
            out.contains("RULE.scaling.down_delay: \"5 parsecs\" is not a duration"),
            "{out}"
        );
        let out = diags(&src("#{ target: \"fe\", max: -1 }", "[]"));
        assert!(
            out.contains("RULE.scaling.max must be a whole number of at least 1, found -1"),
            "{out}"
        );
        let out = diags(&src(
            "#{ target: \"fe\", max: 2, stabilization: \"smooth\" }",
            "[]",
        ));
        assert!(out.contains("must be \"window\" or \"delay\""), "{out}");

        let text = "const RULE = #{ name: \"a\", severity: \"info\", kind: \"scale\" };\nfn evaluate() { [] }\n";
        let out = diags(text);
        // `const RULE = #{ ` (16) + `name: "a", ` (11) + `severity: "info", ` (18) + `kind: `
        // (6) = 51 characters before the value: column 52.
        assert!(
            out.contains("s.rhai:1:52: error: unknown rule kind \"scale\""),
            "{out}"
        );
        let text = "const RULE = #{ name: \"a\", severity: \"info\", kind: \"scaling\" };\nfn evaluate() { [] }\n";
        assert!(diags(text).contains("a scaling rule needs `scaling: #{ .. }`"));
        let text = "const RULE = #{ name: \"a\", severity: \"info\", scaling: #{ target: \"x\", max: 2 } };\nfn evaluate() { [] }\n";
        assert!(diags(text).contains("add `kind: \"scaling\"`"));
    }

    /// Evaluates a scaling rule whose `evaluate()` body is `body` against `store`.
    fn run(store_samples: &[Sample], body: &str) -> crate::RuleResult {
        let (store, mut set) = rule_set();
        store.ingest(store_samples.iter().cloned());
        let d = set.load_source(
            Path::new("s.rhai"),
            PathBuf::from("s.rhai"),
            &src("#{ target: \"fe\", max: 8 }", body),
        );
        assert!(d.is_empty(), "{d:?}");
        set.evaluate(T0).remove(0)
    }

    #[test]
    fn evaluate_returns_a_proposal() {
        let queue = [Sample::new("queue", &[], 120.0, T0 - 1000)];
        let r = run(
            &queue,
            r#"let q = metric("queue");
    #{ desired: q / 40.0, current: 2, reason: `queue ${q}`, inputs: #{ queue: q } }"#,
        );
        // 120 / 40 = 3 exactly; the alerts part of a scaling rule is always empty.
        assert_eq!(r.outcome.expect("no error"), Vec::new());
        let p = r.scaling.expect("a proposal");
        assert_eq!(p.desired, 3);
        assert_eq!(p.current, Some(2));
        assert_eq!(p.reason, "queue 120.0");
        assert_eq!(p.inputs, BTreeMap::from([("queue".to_string(), 120.0)]));
        // 130 / 40 = 3.25, rounded up to 4 replicas.
        let r = run(
            &[Sample::new("queue", &[], 130.0, T0 - 1000)],
            r#"#{ desired: metric("queue") / 40.0 }"#,
        );
        assert_eq!(r.scaling.expect("a proposal").desired, 4);
        assert!(run(&[], "[]").scaling.is_none());
        assert!(run(&[], "()").scaling.is_none());
    }

    #[test]
    fn bad_returns_are_errors() {
        let r = run(&[], r#"#{ desired: metric("absent") }"#);
        let e = r.outcome.expect_err("absent data is no replica count");
        assert!(e.message.contains("`desired` is ()"), "{}", e.message);
        assert!(r.scaling.is_none());
        let e = run(&[], "#{ desird: 2 }").outcome.expect_err("typo");
        assert!(
            e.message.contains("did you mean `desired`?"),
            "{}",
            e.message
        );
        let e = run(&[], "#{ desired: -2 }").outcome.expect_err("negative");
        assert!(e.message.contains("0 or more"), "{}", e.message);
        let e = run(&[], "alert(3.0)").outcome.expect_err("an alert map");
        assert!(e.message.contains("unknown key `value`"), "{}", e.message);
        let e = run(&[], "42").outcome.expect_err("a number");
        assert!(e.message.contains("returned i64"), "{}", e.message);
    }
}
