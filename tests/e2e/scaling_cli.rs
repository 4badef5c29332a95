//! `telltale scaling` as an operator runs it: the decisions the durable store recorded,
//! newest first, read beside an engine that has the database open, filtered by target
//! and time, as text and as JSON; and the errors that say what to fix when there is no
//! database to read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use telltale_model::ScalingDecision;
use telltale_store::disk::Database;

use crate::support::{telltale, text};

/// 2026-12-01T10:00:00Z in ms: 20,788 days after the epoch (56 years to 2026 with 14
/// leap days: 20,454 days; then 334 days of January to November), then 10 hours.
const T0: i64 = (20_788 * 86_400 + 10 * 3_600) * 1_000;
const MINUTE: i64 = 60_000;

/// A config whose data directory is `data/` beside it, plus `store`.
fn config(dir: &Path, name: &str, store: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("engine:\n  data_dir: data\n{store}")).unwrap();
    path
}

fn decision(
    target: &str,
    (current, desired, proposed): (u32, u32, u32),
    minute: i64,
    queued: f64,
) -> ScalingDecision {
    ScalingDecision {
        rule: format!("scale_{target}"),
        target: target.into(),
        current,
        desired,
        proposed,
        reason: format!("{queued} requests queued"),
        inputs: BTreeMap::from([("queued".into(), queued)]),
        time_ms: T0 + minute * MINUTE,
    }
}

/// The decisions the engine would have recorded, in the order it made them, through the
/// store's own API: `fe` scaled up at 10:00 (applied), `batch` at 10:02 (no scaler: no
/// outcome), `fe` again at 10:05 (its scaler failed). Left open, as a running engine
/// leaves it.
fn database(path: &Path) -> Database {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = Database::open(path).unwrap();
    let up = db
        .record_scaling(&decision("fe", (1, 3, 3), 0, 60.0))
        .unwrap();
    db.scaling_outcome(up, "applied").unwrap();
    db.record_scaling(&decision("batch", (4, 2, 1), 2, 0.0))
        .unwrap();
    let failed = db
        .record_scaling(&decision("fe", (3, 5, 6), 5, 120.0))
        .unwrap();
    db.scaling_outcome(
        failed,
        "scaler `fe`: Ray Serve answered HTTP 503: Service Unavailable",
    )
    .unwrap();
    db
}

/// Runs `telltale scaling ARGS` in `dir`, with the default data directory there too.
fn scaling(dir: &Path, args: &[&str]) -> Output {
    telltale()
        .arg("scaling")
        .args(args)
        .current_dir(dir)
        .env("XDG_DATA_HOME", dir)
        .output()
        .unwrap()
}

#[test]
fn scaling_lists_the_recorded_decisions_beside_a_running_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "telltale.yaml", "");
    let cfg = cfg.to_str().unwrap();
    let db = database(&dir.path().join("data/telltale.db"));

    // Every decision, newest first; the times are T0 + 5, 2 and 0 minutes.
    let out = scaling(dir.path(), &["-c", cfg]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "2026-12-01T10:05:00Z  scale_fe  fe 3 → 5 (proposed 6)  120 requests queued  \
             [failed: scaler `fe`: Ray Serve answered HTTP 503: Service Unavailable]",
            "2026-12-01T10:02:00Z  scale_batch  batch 4 → 2 (proposed 1)  0 requests queued  \
             [not applied: no scaler action]",
            "2026-12-01T10:00:00Z  scale_fe  fe 1 → 3 (proposed 3)  60 requests queued  \
             [applied]",
        ],
        "{stdout}"
    );

    // One target, and a limit that leaves the older one out and says so.
    let out = scaling(dir.path(), &["-c", cfg, "--target", "fe", "--limit", "1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("2026-12-01T10:05:00Z  scale_fe  fe 3 → 5"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("(older decisions left out"),
        "{stdout}"
    );

    // --since keeps what was decided at or after it: 10:02 and 10:05.
    let out = scaling(dir.path(), &["-c", cfg, "--since", "2026-12-01T10:02:00Z"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let times: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        times,
        ["2026-12-01T10:05:00Z", "2026-12-01T10:02:00Z"],
        "{stdout}"
    );

    // A relative --since, as the seconds from 10:03:30 to now: only 10:05 is after it
    // (the 90 s on either side absorb the time the command takes to start).
    let now = telltale_model::now_ms();
    let cut = T0 + 3 * MINUTE + 30_000;
    assert!(now > cut, "the clock reads before 2026-12-01T10:03:30Z");
    let ago = format!("-{}s", (now - cut) / 1_000);
    let out = scaling(dir.path(), &["-c", cfg, "--since", &ago]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let times: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(times, ["2026-12-01T10:05:00Z"], "{ago}: {stdout}");

    // A target with no decisions: said, not an error.
    let out = scaling(dir.path(), &["-c", cfg, "--target", "nobody"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "no scaling decisions recorded for target `nobody`"
    );

    // JSON: every field of every decision, the inputs included, outcome null where the
    // table has none.
    let out = scaling(dir.path(), &["-c", cfg, "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(
        rows[0],
        serde_json::json!({
            "id": 3,
            "time": "2026-12-01T10:05:00Z",
            "time_ms": T0 + 5 * MINUTE,
            "rule": "scale_fe",
            "target": "fe",
            "current": 3,
            "desired": 5,
            "proposed": 6,
            "reason": "120 requests queued",
            "inputs": {"queued": 120.0},
            "outcome": "scaler `fe`: Ray Serve answered HTTP 503: Service Unavailable",
        })
    );
    assert_eq!(rows[1]["target"], "batch");
    assert_eq!(rows[1]["outcome"], serde_json::Value::Null);
    assert_eq!(rows[2]["outcome"], "applied");
    assert_eq!(rows[2]["inputs"]["queued"], 60.0);

    // --json with --target: only that target's rows.
    let out = scaling(dir.path(), &["-c", cfg, "--json", "--target", "batch"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let targets: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["batch"]);

    // With the engine stopped the same rows read, and nothing is left beside the file.
    drop(db);
    let out = scaling(dir.path(), &["-c", cfg, "--target", "fe"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["telltale.db"]);
}

#[test]
fn scaling_says_what_to_fix_when_there_is_no_database_to_read() {
    let dir = tempfile::tempdir().unwrap();

    // A disabled store: the config named, and the fix.
    let cfg = config(dir.path(), "off.yaml", "store:\n  enabled: false\n");
    let out = scaling(dir.path(), &["-c", cfg.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("the store is disabled in"), "{stderr}");
    assert!(stderr.contains("off.yaml"), "{stderr}");
    assert!(stderr.contains("remove `store.enabled: false`"), "{stderr}");

    // No database yet: the file named, where its path came from, and nothing created.
    let cfg = config(dir.path(), "telltale.yaml", "");
    let out = scaling(dir.path(), &["-c", cfg.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let missing = dir.path().join("data/telltale.db");
    assert!(
        stderr.contains(&format!("{}: no database there", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("`engine.data_dir` in"), "{stderr}");
    assert!(!missing.exists(), "telltale scaling created the database");

    // A --since that is no time: refused before anything is opened, with the forms.
    let out = scaling(
        dir.path(),
        &["-c", cfg.to_str().unwrap(), "--since", "yesterday"],
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("--since `yesterday`"), "{stderr}");
    assert!(stderr.contains("-2h"), "{stderr}");
}
