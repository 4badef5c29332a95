//! `telltale store info` and `telltale store backup` as an operator runs them: on the
//! database a config points at, beside an engine that has it open, and refusing what is
//! not theirs to read or to overwrite.

use std::path::{Path, PathBuf};
use std::process::Output;

use telltale_store::disk::{Database, SCHEMA_VERSION};

use crate::support::{telltale, text};

/// A config whose data directory is `data/` beside it, with the store at `store_path`.
fn config(dir: &Path, name: &str, store: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("engine:\n  data_dir: data\n{store}")).unwrap();
    path
}

/// A database as the engine makes it, with two series, three raw chunks (250 samples),
/// one hour chunk and a firing alert; left open, as a running engine leaves it.
fn database(path: &Path) -> Database {
    let db = Database::open(path).unwrap();
    db.with_state(|c| {
        c.execute_batch(
            "INSERT INTO series (name, labels) VALUES ('cpu', '{}'), ('mem', '{}');
             INSERT INTO chunks (tier, series, start_ms, end_ms, count, data) VALUES
                 (0, 1, 1700000000000, 1700000060000, 100, zeroblob(400)),
                 (0, 2, 1700000000000, 1700000060000, 100, zeroblob(400)),
                 (0, 1, 1700000060000, 1700000120000, 50, zeroblob(200)),
                 (2, 1, 1699999200000, 1700002800000, 1, zeroblob(40));
             INSERT INTO alerts VALUES ('f1', '{}');",
        )
    })
    .unwrap();
    db
}

fn store(args: &[&str], dir: &Path) -> Output {
    telltale()
        .arg("store")
        .args(args)
        .current_dir(dir)
        .env("XDG_DATA_HOME", dir)
        .output()
        .unwrap()
}

#[test]
fn store_info_and_backup_read_the_database_a_running_engine_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "telltale.yaml", "");
    let db_path = dir.path().join("data/telltale.db");
    let db = database(&db_path);
    let cfg = cfg.to_str().unwrap();

    let out = store(&["info", "-c", cfg], dir.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&db_path.display().to_string()), "{stdout}");
    assert!(stdout.contains("series     2"), "{stdout}");
    assert!(stdout.contains("2023-11-14 22:13:20Z"), "{stdout}");
    assert!(stdout.contains("1 pending or firing"), "{stdout}");

    let out = store(&["info", "-c", cfg, "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out).1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema_version"], SCHEMA_VERSION);
    assert_eq!(json["tiers"][0]["name"], "raw");
    assert_eq!(json["tiers"][0]["chunks"], 3);
    assert_eq!(json["tiers"][0]["rows"], 250);
    assert_eq!(json["tiers"][0]["bytes"], 1000);
    assert_eq!(json["tiers"][2]["chunks"], 1);
    assert_eq!(json["alerts"], 1);

    let dest = dir.path().join("backup.db");
    let dest_arg = dest.to_str().unwrap();
    let out = store(&["backup", dest_arg, "-c", cfg], dir.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("backed up "), "{stdout}");
    assert!(
        stdout.contains(&format!("MiB to {dest_arg} in ")),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("schema version {SCHEMA_VERSION}; integrity ok")),
        "{stdout}"
    );
    let copy = Database::open(&dest).unwrap();
    let chunks: i64 = copy
        .with_state(|c| c.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(chunks, 4);
    drop(copy);

    // A second backup to the same file is refused and leaves it as it was.
    let before = std::fs::read(&dest).unwrap();
    let out = store(&["backup", dest_arg, "-c", cfg], dir.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "overwrote {dest_arg}");
    assert!(
        stderr.contains(&format!("{dest_arg}: already exists")),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);
    drop(db);
}

#[test]
fn store_commands_refuse_what_is_not_a_telltale_database_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();

    // Not SQLite at all: refused, and left exactly as it was, without -wal or -shm.
    let notes = dir.path().join("data/notes.txt");
    let words = "my notes, not a database\n".repeat(50);
    std::fs::write(&notes, &words).unwrap();
    let cfg = config(dir.path(), "notes.yaml", "store:\n  path: notes.txt\n");
    for args in [
        vec!["info", "-c", cfg.to_str().unwrap()],
        vec!["backup", "copy.db", "-c", cfg.to_str().unwrap()],
    ] {
        let out = store(&args, dir.path());
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains(&format!("{}: not a Telltale database", notes.display())),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), words);
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["notes.txt"]);

    // No database yet: the error names the file and where its path came from.
    let cfg = config(dir.path(), "missing.yaml", "");
    let out = store(&["info", "-c", cfg.to_str().unwrap()], dir.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let missing = dir.path().join("data/telltale.db");
    assert!(
        stderr.contains(&format!("{}: no database there", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("`engine.data_dir` in"), "{stderr}");
    assert!(!missing.exists(), "store info created the database");

    // A disabled store has no database to read.
    let cfg = config(dir.path(), "off.yaml", "store:\n  enabled: false\n");
    let out = store(&["info", "-c", cfg.to_str().unwrap()], dir.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("the store is disabled"), "{stderr}");
}
