//! The `RULE` keys that shape an alert's lifecycle beyond `hold` ([`AlertPolicy`]):
//! `keep_firing_for`, `thresholds` + `direction` (hysteresis), `flapping`, `nodata`,
//! `error_after`, `repeat` and `send_resolved`. Read from the literal like the other keys,
//! every problem positioned at the key's value. `rules/README.md` documents them; change
//! both together.

use std::path::Path;
use std::time::Duration;

use rhai::{Dynamic, ImmutableString, Map};

use telltale_diagnostics::{Diagnostic, Position, did_you_mean};
use telltale_model::{AlertPolicy, Direction, Flapping, Severity, Threshold};

use super::metadata::RuleLayout;

/// The policy keys; a test checks that `RULE_KEYS` (metadata.rs) lists each.
#[cfg(test)]
const POLICY_KEYS: [&str; 8] = [
    "keep_firing_for",
    "thresholds",
    "direction",
    "flapping",
    "nodata",
    "error_after",
    "repeat",
    "send_resolved",
];

/// Reads the policy keys of `map`. Problems are pushed to `errors`; the returned policy
/// then holds defaults where a key was wrong.
pub(crate) fn read_policy(
    map: &Map,
    layout: &RuleLayout,
    source: &str,
    file: &Path,
    decl: Option<Position>,
    errors: &mut Vec<Diagnostic>,
) -> AlertPolicy {
    let mut p = AlertPolicy::default();
    let at = |key: &str| layout.value(key).or(decl);
    let mut fail = |key: &str, msg: String, hint: &str| {
        errors.push(Diagnostic::new(file, Some(source), at(key), msg).with_hint(hint));
    };
    const DURATION_HINT: &str = "write it like \"30s\", \"5m\" or \"1h 30m\"";

    let duration = |key: &str, fail: &mut dyn FnMut(&str, String, &str)| -> Option<Duration> {
        let v = map.get(key)?;
        match parse_duration(key, v) {
            Ok(d) => Some(d),
            Err(msg) => {
                fail(key, msg, DURATION_HINT);
                None
            }
        }
    };
    if let Some(d) = duration("keep_firing_for", &mut fail) {
        p.keep_firing_for = d;
    }
    if let Some(d) = duration("error_after", &mut fail) {
        p.error_after = d;
    }
    if let Some(d) = duration("nodata", &mut fail) {
        if d.is_zero() {
            fail(
                "nodata",
                "RULE.nodata must be longer than 0s".into(),
                "give how long a series may stay silent, e.g. \"10m\"; leave the key out to turn it off",
            );
        } else {
            p.nodata = Some(d);
        }
    }

    if let Some(v) = map.get("direction") {
        match v
            .read_lock::<ImmutableString>()
            .as_deref()
            .map(|s| s.as_str())
        {
            Some("above") => p.direction = Direction::Above,
            Some("below") => p.direction = Direction::Below,
            _ => fail(
                "direction",
                format!(
                    "RULE.direction must be \"above\" or \"below\", found {}",
                    shown(v)
                ),
                "\"above\": high values are bad (the default); \"below\": low values are bad",
            ),
        }
    }

    if let Some(v) = map.get("thresholds") {
        match read_thresholds(v, p.direction) {
            Ok(t) => p.thresholds = t,
            Err(msg) => fail(
                "thresholds",
                msg,
                "write one entry per severity: #{ warning: #{ enter: 80, exit: 70 }, critical: #{ enter: 95, exit: 90 } }",
            ),
        }
    }

    if let Some(v) = map.get("flapping") {
        match read_flapping(v) {
            Ok(f) => p.flapping = f,
            Err(msg) => fail(
                "flapping",
                msg,
                "write `flapping: true` for Kapacitor's defaults (history 21, low 0.25, high 0.5) or #{ history: 21, low: 0.25, high: 0.5 }",
            ),
        }
    }

    if let Some(v) = map.get("repeat") {
        match read_repeat(v) {
            Ok(r) => p.repeat = r,
            Err(msg) => fail(
                "repeat",
                msg,
                "write one interval for every severity (\"4h\") or one per severity: #{ warning: \"4h\", critical: \"30m\" }",
            ),
        }
    }

    if let Some(v) = map.get("send_resolved") {
        match v.as_bool() {
            Ok(b) => p.send_resolved = b,
            Err(_) => fail(
                "send_resolved",
                format!(
                    "RULE.send_resolved must be true or false, found {}",
                    shown(v)
                ),
                "true (the default) sends a notification when an alert resolves",
            ),
        }
    }
    p
}

/// A duration string or a number of seconds, for `RULE.key`.
pub(crate) fn parse_duration(key: &str, v: &Dynamic) -> Result<Duration, String> {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        humantime::parse_duration(s.trim())
            .map_err(|e| format!("RULE.{key} \"{}\" is not a duration ({e})", s.as_str()))
    } else if let Ok(secs) = v.as_int() {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| format!("RULE.{key} must not be negative, found {secs}"))
    } else if let Ok(secs) = v.as_float() {
        Duration::try_from_secs_f64(secs).map_err(|_| {
            format!("RULE.{key} must be a non-negative number of seconds, found {secs}")
        })
    } else {
        Err(format!(
            "RULE.{key} must be a duration string, found {}",
            v.type_name()
        ))
    }
}

fn number(v: &Dynamic) -> Option<f64> {
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
        .filter(|f| f.is_finite())
}

fn shown(v: &Dynamic) -> String {
    if v.is_string() {
        format!("\"{v}\"")
    } else {
        v.type_name().to_string()
    }
}

/// `#{ warning: #{ enter: 80, exit: 70 }, ... }`, lowest severity first. The exit must not
/// be past the enter value (that would leave before entering).
fn read_thresholds(v: &Dynamic, direction: Direction) -> Result<Vec<Threshold>, String> {
    let Some(m) = v.read_lock::<Map>() else {
        return Err(format!(
            "RULE.thresholds must be a map of severities, found {}",
            v.type_name()
        ));
    };
    if m.is_empty() {
        return Err("RULE.thresholds is empty".into());
    }
    let mut out = Vec::with_capacity(m.len());
    for (k, pair) in m.iter() {
        let Some(severity) = Severity::parse(k) else {
            let hint = did_you_mean(k, ["info", "warning", "critical"])
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "RULE.thresholds: `{k}` is not a severity{hint}; use info, warning or critical"
            ));
        };
        let Some(pair) = pair.read_lock::<Map>() else {
            return Err(format!(
                "RULE.thresholds.{k} must be #{{ enter: .., exit: .. }}, found {}",
                pair.type_name()
            ));
        };
        for key in pair.keys() {
            if key != "enter" && key != "exit" {
                return Err(format!(
                    "RULE.thresholds.{k}: unknown key `{key}` (use `enter` and `exit`)"
                ));
            }
        }
        let Some(enter) = pair.get("enter").and_then(number) else {
            return Err(format!("RULE.thresholds.{k}.enter must be a number"));
        };
        // Without an exit there is no hysteresis: leave where it entered.
        let exit = match pair.get("exit") {
            None => enter,
            Some(e) => number(e).ok_or(format!("RULE.thresholds.{k}.exit must be a number"))?,
        };
        let backwards = match direction {
            Direction::Above => exit > enter,
            Direction::Below => exit < enter,
        };
        if backwards {
            let side = match direction {
                Direction::Above => "above",
                Direction::Below => "below",
            };
            return Err(format!(
                "RULE.thresholds.{k}: exit {exit} is {side} enter {enter}, so the alert would leave before it entered (direction: \"{side}\")"
            ));
        }
        out.push(Threshold {
            severity,
            enter,
            exit,
        });
    }
    out.sort_by_key(|t| t.severity);
    Ok(out)
}

/// `true` (defaults), `false` (off) or `#{ history, low, high }`.
fn read_flapping(v: &Dynamic) -> Result<Option<Flapping>, String> {
    if let Ok(b) = v.as_bool() {
        return Ok(b.then(Flapping::default));
    }
    let Some(m) = v.read_lock::<Map>() else {
        return Err(format!(
            "RULE.flapping must be true, false or a map, found {}",
            v.type_name()
        ));
    };
    let mut f = Flapping::default();
    for (k, val) in m.iter() {
        match k.as_str() {
            "history" => {
                let n = val.as_int().ok().filter(|n| (3..=1000).contains(n));
                f.history = n
                    .ok_or("RULE.flapping.history must be a whole number from 3 to 1000")?
                    as usize;
            }
            "low" => f.low = number(val).ok_or("RULE.flapping.low must be a number")?,
            "high" => f.high = number(val).ok_or("RULE.flapping.high must be a number")?,
            other => {
                return Err(format!(
                    "RULE.flapping: unknown key `{other}` (use history, low, high)"
                ));
            }
        }
    }
    if !(0.0 < f.low && f.low < f.high && f.high <= 1.0) {
        return Err(format!(
            "RULE.flapping needs 0 < low < high <= 1, found low {} and high {}",
            f.low, f.high
        ));
    }
    Ok(Some(f))
}

/// One interval for every severity, or a map of severity → interval.
fn read_repeat(v: &Dynamic) -> Result<[Option<Duration>; 3], String> {
    let positive = |key: &str, v: &Dynamic| -> Result<Duration, String> {
        let d = parse_duration(key, v)?;
        if d.is_zero() {
            return Err(format!(
                "RULE.{key} must be longer than 0s (leave it out for no repeats)"
            ));
        }
        Ok(d)
    };
    if let Some(m) = v.read_lock::<Map>() {
        let mut out = [None; 3];
        for (k, val) in m.iter() {
            let Some(sev) = Severity::parse(k) else {
                return Err(format!(
                    "RULE.repeat: `{k}` is not a severity; use info, warning or critical"
                ));
            };
            out[sev as usize] = Some(positive(&format!("repeat.{k}"), val)?);
        }
        Ok(out)
    } else {
        let d = positive("repeat", v)?;
        Ok([Some(d); 3])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str) -> Dynamic {
        rhai::Engine::new()
            .eval::<Dynamic>(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn thresholds_are_sorted_by_severity_and_checked_against_the_direction() {
        let t = read_thresholds(
            &eval("#{ critical: #{ enter: 95, exit: 90.5 }, warning: #{ enter: 80 } }"),
            Direction::Above,
        )
        .expect("valid");
        assert_eq!(
            t,
            [
                Threshold {
                    severity: Severity::Warning,
                    enter: 80.0,
                    exit: 80.0
                },
                Threshold {
                    severity: Severity::Critical,
                    enter: 95.0,
                    exit: 90.5
                }
            ]
        );
        let e = read_thresholds(
            &eval("#{ warning: #{ enter: 80, exit: 85 } }"),
            Direction::Above,
        )
        .expect_err("exit above enter");
        assert!(e.contains("would leave before it entered"), "{e}");
        assert!(
            read_thresholds(
                &eval("#{ warning: #{ enter: 10, exit: 20 } }"),
                Direction::Below
            )
            .is_ok()
        );
        let e = read_thresholds(&eval("#{ warn: #{ enter: 1 } }"), Direction::Above)
            .expect_err("bad severity");
        assert!(e.contains("did you mean `warning`"), "{e}");
        let e = read_thresholds(
            &eval("#{ warning: #{ enter: 1, exti: 0 } }"),
            Direction::Above,
        )
        .expect_err("typo");
        assert!(e.contains("unknown key `exti`"), "{e}");
    }

    #[test]
    fn every_policy_key_is_a_rule_key() {
        for k in POLICY_KEYS {
            assert!(super::super::metadata::RULE_KEYS.contains(&k), "{k}");
        }
    }

    fn meta_of(src: &str) -> Result<telltale_model::RuleMeta, Vec<Diagnostic>> {
        let ast = rhai::Engine::new().compile(src).expect("compiles");
        super::super::metadata::read_meta(&ast, src, Path::new("rules/t.rhai"))
    }

    #[test]
    fn a_rule_with_thresholds_needs_no_severity_and_errors_point_at_the_value() {
        let m = meta_of(
            r#"const RULE = #{ name: "mem", keep_firing_for: "2m", nodata: 600,
                thresholds: #{ warning: #{ enter: 80, exit: 70 }, critical: #{ enter: 95, exit: 90 } } };
               fn evaluate() { [] }"#,
        )
        .expect("valid");
        assert_eq!(m.severity, Severity::Warning, "the lowest threshold's");
        assert_eq!(m.policy.thresholds.len(), 2);
        assert_eq!(m.policy.keep_firing_for, Duration::from_secs(120));
        assert_eq!(m.policy.nodata, Some(Duration::from_secs(600)));
        assert_eq!(m.policy.error_after, AlertPolicy::DEFAULT_ERROR_AFTER);
        assert!(m.policy.send_resolved);

        let errs = meta_of(
            "const RULE = #{ name: \"x\", severity: \"info\",\n  keep_firing_for: \"soon\" };\nfn evaluate() { [] }",
        )
        .expect_err("bad duration");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .message
                .contains("RULE.keep_firing_for \"soon\" is not a duration")
        );
        assert_eq!(errs[0].position.map(|p| (p.line, p.column)), Some((2, 20)));

        let errs = meta_of(r#"const RULE = #{ name: "x" }; fn evaluate() { [] }"#)
            .expect_err("no severity, no thresholds");
        assert!(errs[0].message.contains("no `severity`"));
    }

    #[test]
    fn flapping_and_repeat_forms() {
        assert_eq!(
            read_flapping(&eval("true")).expect("ok"),
            Some(Flapping::default())
        );
        assert_eq!(read_flapping(&eval("false")).expect("ok"), None);
        let f = read_flapping(&eval("#{ history: 10, high: 0.6 }"))
            .expect("ok")
            .expect("on");
        assert_eq!((f.history, f.low, f.high), (10, 0.25, 0.6));
        assert!(read_flapping(&eval("#{ low: 0.7, high: 0.6 }")).is_err());
        assert!(read_flapping(&eval("#{ history: 1 }")).is_err());

        let r = read_repeat(&eval(r#"#{ critical: "30m", warning: 7200 }"#)).expect("ok");
        assert_eq!(
            r,
            [
                None,
                Some(Duration::from_secs(7200)),
                Some(Duration::from_secs(1800))
            ]
        );
        assert_eq!(
            read_repeat(&eval(r#""4h""#)).expect("ok"),
            [Some(Duration::from_secs(14_400)); 3]
        );
        assert!(read_repeat(&eval(r#""0s""#)).is_err());
    }
}
