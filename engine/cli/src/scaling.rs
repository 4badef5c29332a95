//! `telltale scaling`: the decisions scaling rules made, as the durable store recorded
//! them (`scaling_decisions`), with what each was based on and how applying it went.
//! Read beside a running engine, through the same read-only open as `telltale store
//! info`: nothing is created or changed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use telltale_model::{ScalingDecision, now_ms};
use telltale_pipeline::replay::{format_time, parse_time};
use telltale_store::disk::scaling::DecisionRow;

/// Shown for a row without an outcome: the table leaves it empty for a target without a
/// scaler (and, for the moment its scaler takes to answer, for one with a scaler).
const NO_ACTION: &str = "not applied: no scaler action";

/// The options of `telltale scaling`.
#[derive(Debug, Args)]
pub(crate) struct ScalingArgs {
    /// The configuration `telltale run` uses (default: the embedded one).
    #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
    config: Option<PathBuf>,
    /// Only the decisions for this target (a rule's `scaling.target`).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Only the decisions made at or after TIME: RFC 3339 (`2026-12-01T10:00:00Z`) or a
    /// duration before now (`-2h`).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
    /// Show at most N decisions, the newest.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    limit: u32,
    /// Print JSON (every field, the rule's inputs included).
    #[arg(long)]
    json: bool,
}

/// One decision as `--json` prints it: the decision's own fields, its time also in RFC
/// 3339, and the outcome as recorded (`null` when none was).
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    id: i64,
    time: String,
    #[serde(flatten)]
    decision: &'a ScalingDecision,
    outcome: Option<&'a str>,
}

/// `telltale scaling`: 0 when the decisions could be read (whether there are any), 1
/// otherwise.
pub(crate) fn main(args: &ScalingArgs) -> ExitCode {
    let since = match args.since.as_deref().map(|s| parse_time(s, now_ms())) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            eprintln!("error: --since {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = match crate::store::open(args.config.as_deref()) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    // One row past the limit tells whether older decisions were left out.
    let mut rows =
        match db.scaling_decisions(args.target.as_deref(), since, limit.saturating_add(1)) {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    let more = rows.len() > limit;
    rows.truncate(limit);
    if args.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no scaling decisions recorded{}", filters(args));
        return ExitCode::SUCCESS;
    }
    for row in &rows {
        println!("{}", line(row));
    }
    if more {
        println!(
            "(older decisions left out: the newest {limit} are shown; --limit N or --since TIME \
             shows others)"
        );
    }
    ExitCode::SUCCESS
}

/// One decision per line: when, which rule, the target and its change, the rule's
/// reason, and how applying it went.
fn line(row: &DecisionRow) -> String {
    let d = &row.decision;
    let outcome = match row.outcome.as_deref() {
        Some("applied") => "applied".to_string(),
        Some(error) => format!("failed: {}", one_line(error)),
        None => NO_ACTION.to_string(),
    };
    format!(
        "{}  {}  {} {} → {} (proposed {})  {}  [{outcome}]",
        format_time(d.time_ms),
        d.rule,
        d.target,
        d.current,
        d.desired,
        d.proposed,
        one_line(&d.reason),
    )
}

/// `text` on one line: a reason or a scaler's error may hold line breaks, which would
/// read as another decision.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the empty answer was filtered by, in the options' words.
fn filters(args: &ScalingArgs) -> String {
    let mut by = Vec::new();
    if let Some(t) = &args.target {
        by.push(format!("for target `{t}`"));
    }
    if let Some(s) = &args.since {
        by.push(format!("since {s}"));
    }
    if by.is_empty() {
        String::new()
    } else {
        format!(" {}", by.join(" "))
    }
}

fn print_json(rows: &[DecisionRow]) -> ExitCode {
    let rows: Vec<JsonRow<'_>> = rows
        .iter()
        .map(|r| JsonRow {
            id: r.id,
            time: format_time(r.decision.time_ms),
            decision: &r.decision,
            outcome: r.outcome.as_deref(),
        })
        .collect();
    match serde_json::to_string_pretty(&rows) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print the decisions as JSON: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn row(outcome: Option<&str>, reason: &str) -> DecisionRow {
        DecisionRow {
            id: 7,
            decision: ScalingDecision {
                rule: "scale_fe".into(),
                target: "fe".into(),
                current: 2,
                desired: 4,
                proposed: 5,
                reason: reason.into(),
                inputs: BTreeMap::from([("queued".into(), 80.0)]),
                // 2026-12-01T10:00:00Z: 20,788 days after the epoch, then 10 hours.
                time_ms: (20_788 * 86_400 + 10 * 3_600) * 1_000,
            },
            outcome: outcome.map(str::to_string),
        }
    }

    #[test]
    fn a_line_says_the_change_its_reason_and_how_applying_it_went() {
        assert_eq!(
            line(&row(Some("applied"), "80 requests queued")),
            "2026-12-01T10:00:00Z  scale_fe  fe 2 → 4 (proposed 5)  80 requests queued  [applied]"
        );
        assert_eq!(
            line(&row(Some("ray: HTTP 503\nretry later"), "a\n  b")),
            "2026-12-01T10:00:00Z  scale_fe  fe 2 → 4 (proposed 5)  a b  [failed: ray: HTTP 503 retry later]"
        );
        assert!(
            line(&row(None, "x")).ends_with("[not applied: no scaler action]"),
            "{}",
            line(&row(None, "x"))
        );
    }
}
