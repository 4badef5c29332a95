//! `telltale replay`: the rules evaluated over a database's history, printing when each
//! alert would have fired and resolved, without changing the database.

use std::path::Path;

use telltale_store::disk::Database;
use telltale_store::disk::codec::ChunkEncoder;

use crate::support::telltale;

/// 2026-12-01T10:00:00Z in ms: 20,788 days after the epoch (56 years to 2026 with 14
/// leap days: 20,454 days; then 334 days of January to November), then 10 hours.
const T0: i64 = (20_788 * 86_400 + 10 * 3_600) * 1_000;
const MINUTE: i64 = 60_000;

/// Fires while `mem` is above 90, after holding 2 minutes.
const RULE: &str = r#"const RULE = #{ name: "mem_high", severity: "warning", hold: "2m" };
fn evaluate() {
    let v = metric("mem");
    if v > 90 { alert(v, #{}, `mem at ${v}`) } else { [] }
}
"#;

/// A database with the series `mem{host="a"}` sampled every minute from T0 to T0 + 30m:
/// 50 until 10:04, 95 from 10:05 to 10:14, 50 again from 10:15. Written as the
/// persister writes sealed raw chunks (two of them), then closed.
fn history(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = Database::open(path).unwrap();
    let value = |m: i64| if (5..15).contains(&m) { 95.0 } else { 50.0 };
    let chunk = |minutes: std::ops::Range<i64>| {
        let mut enc = ChunkEncoder::new(1);
        for m in minutes.clone() {
            enc.push(T0 + m * MINUTE, &[value(m)]);
        }
        (
            T0 + minutes.start * MINUTE,
            T0 + (minutes.end - 1) * MINUTE,
            enc.len() as i64,
            enc.to_bytes(),
        )
    };
    db.with_state(|c| {
        c.execute(
            "INSERT INTO series (id, name, labels) VALUES (1, 'mem', '{\"host\":\"a\"}')",
            [],
        )?;
        for (start, end, count, data) in [chunk(0..12), chunk(12..31)] {
            c.execute(
                "INSERT INTO chunks (tier, series, start_ms, end_ms, count, data) VALUES (0, 1, ?1, ?2, ?3, ?4)",
                (start, end, count, data.as_slice()),
            )?;
        }
        Ok(())
    })
    .unwrap();
}

/// A config whose data directory is `data/` beside it, rules in `rules/` (without the
/// built-in ones), evaluated every minute.
fn setup(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("rules/mem_high.rhai"), RULE).unwrap();
    let config = dir.join("telltale.yaml");
    std::fs::write(
        &config,
        "engine:\n  data_dir: data\n  evaluation_interval: 1m\nrules:\n  dir: rules\n  defaults: false\n",
    )
    .unwrap();
    history(&dir.join("data/telltale.db"));
    config
}

fn replay(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = telltale()
        .arg("replay")
        .args(args)
        .current_dir(dir)
        .env("XDG_DATA_HOME", dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_prints_when_each_alert_fired_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let config = config.to_str().unwrap();
    let db = dir.path().join("data/telltale.db");
    let before = std::fs::read(&db).unwrap();

    // mem is first above 90 at 10:05 (pending), holds 2 minutes: FIRING at 10:07; back
    // to 50 at 10:15: RESOLVED then, with the last value it fired with. 31 steps of a
    // minute from 10:00 to 10:30.
    let (ok, stdout, stderr) = replay(
        dir.path(),
        &[
            "-c",
            config,
            "--from",
            "2026-12-01T10:00:00Z",
            "--to",
            "2026-12-01T10:30:00Z",
        ],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"2026-12-01T10:07:00Z FIRING mem_high{severity="warning"} value=95 summary="mem at 95.0""#,
            r#"2026-12-01T10:15:00Z RESOLVED mem_high{severity="warning"} value=95 summary="mem at 95.0""#,
            "replayed 1 rule(s) over 31 step(s) of 1m from 2026-12-01T10:00:00Z to 2026-12-01T10:30:00Z: 1 fired, 1 resolved, 0 still firing at the end",
        ],
        "{stdout}"
    );

    // Stopping at 10:10 with 30-second steps and the rules named on the command line: the
    // alert fired at 10:07 and is still firing (21 steps from 10:00 to 10:10).
    let rules = dir.path().join("rules");
    let (ok, stdout, stderr) = replay(
        dir.path(),
        &[
            "-c",
            config,
            "--from",
            "2026-12-01T10:00:00Z",
            "--to",
            "2026-12-01T10:10:00Z",
            "--step",
            "30s",
            "--rules",
            rules.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("2026-12-01T10:07:00Z FIRING mem_high"),
        "{stdout}"
    );
    assert!(
        stdout.contains("over 21 step(s) of 30s from 2026-12-01T10:00:00Z to 2026-12-01T10:10:00Z: 1 fired, 0 resolved, 1 still firing at the end"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"still firing: {alertname="mem_high",severity="warning"} since 2026-12-01T10:07:00Z"#
        ),
        "{stdout}"
    );

    // Read-only: the database is as it was and nothing was left beside it.
    assert_eq!(std::fs::read(&db).unwrap(), before);
    for sidecar in ["telltale.db-wal", "telltale.db-shm"] {
        assert!(
            !dir.path().join("data").join(sidecar).exists(),
            "{sidecar} left behind"
        );
    }
}

#[test]
fn replay_refuses_bad_times_and_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let config = config.to_str().unwrap();
    let (ok, _, stderr) = replay(dir.path(), &["-c", config, "--from", "yesterday"]);
    assert!(!ok);
    assert!(
        stderr.contains("--from `yesterday`: not a time"),
        "{stderr}"
    );
    let (ok, _, stderr) = replay(
        dir.path(),
        &[
            "-c",
            config,
            "--from",
            "2026-12-01T10:00:00Z",
            "--to",
            "2026-12-01T09:00:00Z",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("is before --from"), "{stderr}");

    std::fs::remove_file(dir.path().join("data/telltale.db")).unwrap();
    let (ok, _, stderr) = replay(dir.path(), &["-c", config, "--from", "-1h"]);
    assert!(!ok);
    assert!(
        stderr.contains("no database there (nothing was created)"),
        "{stderr}"
    );
    assert!(!dir.path().join("data/telltale.db").exists());
}
