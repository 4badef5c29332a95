//! `telltale replay`: the rules evaluated over the durable store's history, step by step,
//! through the same alert state machine the engine runs, to show when each alert would have
//! fired and resolved.
//!
//! The database is opened read-only ([`ReadOnlyDatabase`]), so a replay never disturbs a
//! running engine and never creates a file. Rules read it through
//! [`HistoryView`], whose "now" is each step's time: nothing after it is seen.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use telltale_alerts::AlertManager;
use telltale_config::LoadedConfig;
use telltale_diagnostics::{Diagnostic, Diagnostics};
use telltale_model::{Alert, AlertStatus, TimestampMs, duration_ms, write_labels};
use telltale_rules::RuleSet;
use telltale_store::StoreLimits;
use telltale_store::disk::admin::ReadOnlyDatabase;
use telltale_store::disk::replay::HistoryView;

/// The most evaluation steps one replay may take: a year at 15 s is two million, which
/// would run for a long time; a longer `--step` says the same with fewer.
pub const MAX_STEPS: i64 = 1_000_000;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The first evaluation, in ms since the Unix epoch.
    pub from: TimestampMs,
    /// The last evaluation at or before this time.
    pub to: TimestampMs,
    /// Between evaluations (default: the config's `engine.evaluation_interval`).
    pub step: Option<Duration>,
    /// The rules directory in place of the config's `rules.dir`; the built-in rules run
    /// beside it unless the config's `rules.defaults` is off, as in the engine.
    pub rules_dir: Option<PathBuf>,
}

/// An alert fired or resolved during the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The step's time.
    pub at: TimestampMs,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The alert as it stood.
    pub alert: Alert,
}

/// `2026-12-01T10:15:00Z`; milliseconds only when the time has some.
pub fn format_time(ms: TimestampMs) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            AlertStatus::Firing => "FIRING",
            AlertStatus::Resolved => "RESOLVED",
        };
        let mut labels = String::new();
        let mut shown = self.alert.labels.clone();
        // The rule's name leads the line; the label would only repeat it.
        shown.remove("alertname");
        let _ = write_labels(&mut labels, &shown);
        write!(
            f,
            "{} {status} {}{labels} value={}",
            format_time(self.at),
            self.alert.rule,
            self.alert.value
        )?;
        if !self.alert.summary.is_empty() {
            write!(f, " summary={:?}", self.alert.summary)?;
        }
        Ok(())
    }
}

/// What a replay came to.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The first and last evaluation.
    pub first: TimestampMs,
    /// The last evaluation.
    pub last: TimestampMs,
    /// Between evaluations.
    pub step: Duration,
    /// How many evaluations.
    pub steps: u64,
    /// How many rules were evaluated.
    pub rules: usize,
    /// How many alerts fired, and resolved.
    pub fired: usize,
    /// How many resolved.
    pub resolved: usize,
    /// Each rule's first failure: when, and the error.
    pub rule_errors: Vec<(TimestampMs, String)>,
    /// The alerts still firing after the last step.
    pub firing_at_end: Vec<Alert>,
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replayed {} rule(s) over {} step(s) of {} from {} to {}: {} fired, {} resolved, {} still firing at the end",
            self.rules,
            self.steps,
            humantime::format_duration(self.step),
            format_time(self.first),
            format_time(self.last),
            self.fired,
            self.resolved,
            self.firing_at_end.len()
        )?;
        for a in &self.firing_at_end {
            let mut labels = String::new();
            let _ = write_labels(&mut labels, &a.labels);
            write!(
                f,
                "\n  still firing: {labels} since {}",
                format_time(a.firing_since_ms)
            )?;
        }
        for (at, e) in &self.rule_errors {
            write!(f, "\n  rule failed at {}: {e}", format_time(*at))?;
        }
        Ok(())
    }
}

/// Why a replay could not run.
#[derive(Debug)]
pub enum ReplayError {
    /// The options do not describe a replay (an empty span, a zero step, too many steps).
    Options(String),
    /// The rules did not load.
    Rules(Diagnostics),
    /// The database could not be opened or read.
    Store(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Options(m) | ReplayError::Store(m) => f.write_str(m),
            ReplayError::Rules(d) => write!(f, "{d}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Replays the rules over the history in `loaded`'s durable store, calling `on_transition`
/// with each alert that fires or resolves, in time order.
pub fn replay(
    loaded: &LoadedConfig,
    opts: &ReplayOptions,
    mut on_transition: impl FnMut(&Transition),
) -> Result<ReplayReport, ReplayError> {
    let cfg = &loaded.config;
    let step = opts.step.unwrap_or(cfg.engine.evaluation_interval.get());
    let step_ms = duration_ms(step);
    if step_ms <= 0 {
        return Err(ReplayError::Options(
            "--step must be at least 1ms".to_string(),
        ));
    }
    if opts.to < opts.from {
        return Err(ReplayError::Options(format!(
            "--to ({}) is before --from ({})",
            format_time(opts.to),
            format_time(opts.from)
        )));
    }
    let steps = (opts.to - opts.from) / step_ms + 1;
    if steps > MAX_STEPS {
        return Err(ReplayError::Options(format!(
            "{steps} steps of {} is more than {MAX_STEPS}; give a longer --step or a shorter span",
            humantime::format_duration(step)
        )));
    }

    let path = loaded.store_path();
    let db = ReadOnlyDatabase::open(&path).map_err(|e| {
        ReplayError::Store(format!(
            "cannot open the durable store: {e}\n  = hint: replay reads the database `telltale run -c CONFIG` writes (store.path under the data directory); give the same -c"
        ))
    })?;
    let view = Arc::new(
        HistoryView::new(
            db,
            opts.from,
            opts.to,
            StoreLimits::default().lookback,
            cfg.engine.retention.get(),
        )
        .map_err(|e| ReplayError::Store(e.to_string()))?,
    );

    // The rules as `Engine::build` loads them: the directory's, then the defaults beside
    // them unless `rules.defaults` is off.
    let mut rules = RuleSet::new(view.clone(), &cfg.rules);
    let mut diags: Vec<Diagnostic> = match opts.rules_dir.clone().or_else(|| loaded.rules_dir()) {
        Some(dir) if !dir.is_dir() => vec![Diagnostic::new(
            &dir,
            None,
            None,
            "the rules directory does not exist",
        )],
        Some(dir) => rules.load_dir(&dir),
        None => Vec::new(),
    };
    if cfg.rules.defaults {
        diags.extend(rules.load_defaults_beside_loaded());
    }
    if !diags.is_empty() {
        return Err(ReplayError::Rules(Diagnostics(diags)));
    }

    let mut alerts = AlertManager::new();
    let mut report = ReplayReport {
        first: opts.from,
        last: opts.from,
        step,
        steps: 0,
        rules: rules.rules().len(),
        fired: 0,
        resolved: 0,
        rule_errors: Vec::new(),
        firing_at_end: Vec::new(),
    };
    let mut failed: std::collections::HashSet<String> = Default::default();
    let mut t = opts.from;
    while t <= opts.to {
        view.set_now(t);
        let results = rules.evaluate(t);
        for r in &results {
            if let Err(e) = &r.outcome
                && failed.insert(r.meta.name.clone())
            {
                report.rule_errors.push((t, e.to_string()));
            }
        }
        // The engine's own step: condition, nodata and error alerts alike.
        let (notes, _) = crate::apply_results(&mut alerts, results, t);
        for n in notes {
            match n.status {
                AlertStatus::Firing => report.fired += 1,
                AlertStatus::Resolved => report.resolved += 1,
            }
            on_transition(&Transition {
                at: t,
                status: n.status,
                alert: n.alert,
            });
        }
        report.last = t;
        report.steps += 1;
        t += step_ms;
    }
    report.firing_at_end = alerts
        .active_states()
        .into_iter()
        .filter(|a| a.state != telltale_alerts::AlertState::Pending)
        .map(|a| a.alert)
        .collect();
    Ok(report)
}

/// Reads a time for `--from`/`--to`: RFC 3339 (`2026-12-01T10:00:00Z`), `now`, or a
/// duration before `now` (`-2h`, `-30m`).
pub fn parse_time(text: &str, now: TimestampMs) -> Result<TimestampMs, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(ago) = t.strip_prefix('-') {
        let d = humantime::parse_duration(ago.trim()).map_err(|e| {
            format!("`{text}`: not a duration before now ({e}); write it like `-2h` or `-30m`")
        })?;
        return Ok(now.saturating_sub(duration_ms(d)));
    }
    let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
        format!(
            "`{text}`: not a time ({e}); write RFC 3339 (`2026-12-01T10:00:00Z`), `now` or `-2h`"
        )
    })?;
    let ms = at.duration_since(UNIX_EPOCH).map(duration_ms).unwrap_or(0);
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339_now_or_before_now() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        // Two hours are 7,200,000 ms.
        assert_eq!(parse_time("-2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("-1h 30m", now), Ok(now - 5_400_000));
        // 2026-12-01T10:15:00Z: 20,788 days after the epoch (1970..2026 has 56 years,
        // 14 of them leap: 56·365 + 14 = 20,454 days to 2026-01-01, plus the 334 days of
        // January to November 2026), then 10 h 15 m.
        let want = (20_788 * 86_400 + 10 * 3600 + 15 * 60) * 1000;
        assert_eq!(parse_time("2026-12-01T10:15:00Z", now), Ok(want));
        assert_eq!(format_time(want), "2026-12-01T10:15:00Z");
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(
            parse_time("-2 fortnights", now)
                .unwrap_err()
                .contains("-2h")
        );
    }
}
