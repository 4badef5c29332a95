use super::*;

#[test]
fn a_new_database_gets_the_schema_and_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/telltale.db");
    drop(Database::open(&path).unwrap());
    let db = Database::open(&path).unwrap();
    let version: u32 = db
        .with_state(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.db");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no -wal or -shm file is made beside it");
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Foreign { found: 0, .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_database_from_a_newer_telltale_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.db");
    drop(Database::open(&path).unwrap());
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
            .unwrap();
    }
    let e = Database::open(&path).unwrap_err().to_string();
    assert!(
        e.contains(&format!("schema version {}", SCHEMA_VERSION + 3))
            && e.contains(&format!("knows up to {SCHEMA_VERSION}")),
        "{e}"
    );
}

#[test]
fn a_corrupt_database_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.db");
    {
        let db = Database::open(&path).unwrap();
        db.with_state(|c| {
            c.execute_batch(
                "PRAGMA wal_checkpoint(TRUNCATE);
                 INSERT INTO series (name, labels) VALUES ('x', '{}');",
            )
        })
        .unwrap();
        db.with_state(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))
            .unwrap();
    }
    // Scribble over everything after the first page (the schema's b-tree pages).
    let mut bytes = std::fs::read(&path).unwrap();
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = Database::open(&path).unwrap_err();
    assert!(
        matches!(e, StoreError::Corrupt { .. } | StoreError::NotADatabase { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("left untouched"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
