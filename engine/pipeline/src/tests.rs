//! The rule task's joints: a real rule set feeding the alert state machine, and that
//! state and the notification outbox kept in a real database across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use telltale_alerts::{AlertManager, AlertState};
use telltale_config::RulesConfig;
use telltale_model::{Alert, AlertStatus, Labels, Notification, Sample, Severity};
use telltale_notify::{Delivery, DeliveryFuture, Dispatcher, Notifier, Outbox};
use telltale_rules::{ReloadOutcome, RuleSet};
use telltale_store::disk::Database;
use telltale_store::{SeriesStore, StoreLimits};

use super::durable::{AlertPersistence, DbOutbox};
use super::{Engine, apply_results};

const T0: i64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write_rule(dir: &Path, file: &str, name: &str, body: &str) -> PathBuf {
    let p = dir.join(file);
    let src = format!(
        "const RULE = #{{ name: \"{name}\", severity: \"critical\", hold: \"10s\" }};\nfn evaluate() {{\n    {body}\n}}\n"
    );
    std::fs::write(&p, src).expect("write");
    p
}

#[test]
fn alert_state_survives_a_reload_and_a_failing_evaluation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    let path = write_rule(
        dir.path(),
        "temp.rhai",
        "hot",
        "let t = metric(\"temp\"); if t > 80 { alert(t) } else { [] }",
    );
    assert!(set.load_dir(dir.path()).is_empty());
    let mut am = AlertManager::new();
    let ingest = |v: f64, ts: i64| {
        store.ingest([Sample {
            name: "temp".into(),
            labels: Labels::new(),
            value: v,
            timestamp_ms: ts,
        }]);
    };

    ingest(90.0, T0);
    assert!(
        apply_results(&mut am, set.evaluate(T0), T0).0.is_empty(),
        "pending"
    );
    ingest(91.0, T0 + 10_000);
    let fired = apply_results(&mut am, set.evaluate(T0 + 10_000), T0 + 10_000).0;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].alert.severity, Severity::Critical);

    // Reload: new code (a different threshold), same rule name: the alert keeps firing.
    write_rule(
        dir.path(),
        "temp.rhai",
        "hot",
        "let t = metric(\"temp\"); if t > 85 { alert(t, #{}, `temp ${t}`) } else { [] }",
    );
    assert!(matches!(
        set.apply_change(&path),
        ReloadOutcome::Updated {
            renamed_from: None,
            ..
        }
    ));
    ingest(92.0, T0 + 20_000);
    assert!(
        apply_results(&mut am, set.evaluate(T0 + 20_000), T0 + 20_000)
            .0
            .is_empty()
    );
    assert_eq!(am.active()[0].summary, "temp 92.0");
    assert_eq!(am.active()[0].firing_since_ms, T0 + 10_000);

    // The rule breaks (two series now match metric("temp")): its alert stays as it was.
    store.ingest([Sample {
        name: "temp".into(),
        labels: labels(&[("sensor", "b")]),
        value: 10.0,
        timestamp_ms: T0 + 30_000,
    }]);
    ingest(10.0, T0 + 30_000);
    let results = set.evaluate(T0 + 30_000);
    assert!(results[0].outcome.is_err());
    let (sent, errors) = apply_results(&mut am, results, T0 + 30_000);
    assert!(sent.is_empty());
    assert_eq!(errors, 1);
    assert_eq!(am.active().len(), 1, "not resolved by a broken rule");

    // The rule file is deleted: its firing alert resolves.
    std::fs::remove_file(&path).expect("rm");
    let ReloadOutcome::Removed(name) = set.apply_change(&path) else {
        panic!("expected Removed");
    };
    let out = am.rule_removed(&name, T0 + 40_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, AlertStatus::Resolved);
    assert!(am.active().is_empty());
}

/// A database in a temporary directory, and its path (to open it again, as a restart does).
fn database() -> (tempfile::TempDir, PathBuf, Arc<Database>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("telltale.db");
    let db = Arc::new(Database::open(&path).expect("open"));
    (dir, path, db)
}

/// One "run" of the rule task's alert handling over `db`: restore, then one tick per
/// `(time, temperature)`, saving after each like the rule task. Returns every notification.
fn run_over(
    db: &Arc<Database>,
    set: &RuleSet,
    store: &SeriesStore,
    ticks: &[(i64, f64)],
) -> (AlertManager, Vec<Notification>) {
    let mut am = AlertManager::new();
    let mut saved = AlertPersistence::new(Some(db.clone()));
    let metas = set.rules();
    let names: Vec<&str> = metas.iter().map(|m| m.name.as_str()).collect();
    let mut sent = saved.restore(&mut am, &names, ticks.first().map_or(T0, |t| t.0));
    for &(t, v) in ticks {
        store.ingest([Sample::new("temp", &[], v, t)]);
        sent.extend(apply_results(&mut am, set.evaluate(t), t).0);
        saved.save_if_changed(&am);
    }
    (am, sent)
}

#[test]
fn alert_state_survives_restarts_through_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db_dir, path, db) = database();
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    // hold: 10s
    write_rule(
        dir.path(),
        "temp.rhai",
        "hot",
        "let t = metric(\"temp\"); if t > 80 { alert(t) } else { [] }",
    );
    assert!(set.load_dir(dir.path()).is_empty());

    // Seen at T0: pending.
    let (am, sent) = run_over(&db, &set, &store, &[(T0, 90.0)]);
    assert!(sent.is_empty());
    assert_eq!(am.active_states()[0].state, AlertState::Pending);

    // Restart (the database opened again, as after `kill -9`) 10 s after T0: the pending
    // timer kept its start, so the alert fires now instead of 10 s later.
    drop(db);
    let db = Arc::new(Database::open(&path).expect("reopen"));
    let (am, sent) = run_over(&db, &set, &store, &[(T0 + 10_000, 91.0)]);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, AlertStatus::Firing);
    assert_eq!(sent[0].alert.active_since_ms, T0);
    assert_eq!(am.active()[0].firing_since_ms, T0 + 10_000);

    // Restart while firing: no second Firing.
    let (am, sent) = run_over(&db, &set, &store, &[(T0 + 20_000, 92.0)]);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(am.active_states()[0].state, AlertState::Firing);
    assert_eq!(am.active()[0].firing_since_ms, T0 + 10_000);

    // It resolves (once), then a restart does not resend Resolved.
    let (_, sent) = run_over(&db, &set, &store, &[(T0 + 30_000, 10.0)]);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, AlertStatus::Resolved);
    let (am, sent) = run_over(&db, &set, &store, &[(T0 + 40_000, 10.0)]);
    assert!(sent.is_empty(), "{sent:?}");
    assert!(am.active().is_empty());
    assert!(db.load_alerts().expect("load").is_empty());
}

#[test]
fn restored_alerts_of_a_rule_that_is_gone_resolve_and_non_finite_values_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db_dir, _path, db) = database();
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    let rule = write_rule(
        dir.path(),
        "nan.rhai",
        "nan",
        "let t = metric(\"temp\"); if t > 80 { alert(0.0 / 0.0) } else { [] }",
    );
    assert!(set.load_dir(dir.path()).is_empty());
    let (_, sent) = run_over(&db, &set, &store, &[(T0, 90.0), (T0 + 10_000, 90.0)]);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].alert.value.is_nan());

    let mut am = AlertManager::new();
    let mut saved = AlertPersistence::new(Some(db.clone()));
    assert!(saved.restore(&mut am, &["nan"], T0 + 20_000).is_empty());
    assert!(
        am.active()[0].value.is_nan(),
        "NaN is not JSON, and still restored"
    );

    // The rule file was deleted while Telltale was stopped.
    std::fs::remove_file(&rule).expect("rm");
    let mut am = AlertManager::new();
    let mut saved = AlertPersistence::new(Some(db.clone()));
    let sent = saved.restore(&mut am, &[], T0 + 30_000);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, AlertStatus::Resolved);
    assert_eq!(sent[0].alert.resolved_at_ms, Some(T0 + 30_000));
    saved.save_if_changed(&am);
    assert!(db.load_alerts().expect("load").is_empty());
}

/// A notifier that records what it delivers.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl Notifier for Recorder {
    fn name(&self) -> &str {
        "rec"
    }

    fn kind(&self) -> &'static str {
        "recorder"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliveryFuture<'a> {
        Box::pin(async move {
            self.0.lock().expect("lock").push(n.id.clone());
            Delivery::Delivered { attempts: 1 }
        })
    }
}

fn note(id: &str, value: f64) -> Notification {
    Notification {
        id: id.into(),
        status: AlertStatus::Firing,
        reason: telltale_model::NotificationReason::StateChange,
        quiet: false,
        alert: Alert {
            fingerprint: "fp".into(),
            rule: "hot".into(),
            severity: Severity::Critical,
            labels: labels(&[("alertname", "hot")]),
            summary: "hot".into(),
            value,
            active_since_ms: T0,
            firing_since_ms: T0,
            resolved_at_ms: None,
            rule_file: "hot.rhai".into(),
            kind: telltale_model::AlertKind::Condition,
            ack: None,
        },
    }
}

#[tokio::test]
async fn the_database_outbox_delivers_what_is_owed_after_a_restart_and_nothing_twice() {
    let (_dir, path, db) = database();
    let outbox = DbOutbox::new(db.clone());
    // Left by a run that died before delivering: owed to `rec`, and to a notifier that is
    // no longer configured.
    outbox
        .put(&note("n1", f64::INFINITY), &["rec", "gone"])
        .expect("put");
    drop(outbox);
    drop(db);

    let db = Arc::new(Database::open(&path).expect("reopen"));
    let recorder = Arc::new(Recorder::default());
    let h = Dispatcher::with_notifiers(vec![recorder.clone()])
        .with_outbox(Arc::new(DbOutbox::new(db.clone())))
        .start();
    assert_eq!(h.send(note("n2", 1.0)), 1);
    let report = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.kept, report.lost), (0, 0));
    assert_eq!(*recorder.0.lock().expect("lock"), ["n1", "n2"]);
    let outcome = |n: &str, id: &str| db.outbox_outcome(n, id).expect("outcome");
    assert_eq!(outcome("rec", "n1"), Some(Some("delivered".into())));
    assert_eq!(outcome("rec", "n2"), Some(Some("delivered".into())));
    assert_eq!(outcome("gone", "n1"), Some(Some("dropped".into())));

    // The next start owes nothing.
    let recorder = Arc::new(Recorder::default());
    let h = Dispatcher::with_notifiers(vec![recorder.clone()])
        .with_outbox(Arc::new(DbOutbox::new(db.clone())))
        .start();
    h.shutdown(Duration::from_secs(5)).await;
    assert!(recorder.0.lock().expect("lock").is_empty());
}

#[test]
fn an_unreadable_outbox_entry_is_skipped_once() {
    let (_dir, _path, db) = database();
    db.outbox_put(&[telltale_store::disk::state::OutboxRow {
        notifier: "rec".into(),
        id: "bad".into(),
        created_ms: T0,
        notification: "{\"id\": 1}".into(),
    }])
    .expect("put");
    let outbox = DbOutbox::new(db.clone());
    assert!(outbox.undone().expect("undone").is_empty());
    assert_eq!(
        db.outbox_outcome("rec", "bad").expect("outcome"),
        Some(Some("unreadable".into()))
    );
}

/// Writes a config whose data directory is `dir/data`, with `store` as its store section.
fn load_config(dir: &Path, store: &str) -> telltale_config::LoadedConfig {
    let path = dir.join("telltale.yaml");
    std::fs::write(
        &path,
        format!("engine:\n  data_dir: data\nrules:\n  dir: rules\n{store}",),
    )
    .expect("write config");
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    telltale_config::load(&path).expect("load")
}

#[test]
fn build_does_not_create_the_database_and_opening_it_names_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = load_config(dir.path(), "");
    let db_file = dir.path().join("data/telltale.db");
    let mut engine = Engine::build(&loaded).expect("build");
    assert!(engine.database().is_none());
    assert!(!db_file.exists(), "`check` builds too: no database file");
    assert!(engine.open_database().expect("open").is_some());
    assert!(db_file.exists());
    assert_eq!(engine.database().map(|d| d.path()), Some(db_file.as_path()));

    // Disabled: nothing is opened nor created.
    let other = tempfile::tempdir().expect("tempdir");
    let loaded = load_config(other.path(), "store:\n  enabled: false\n");
    let mut engine = Engine::build(&loaded).expect("build");
    assert!(engine.open_database().expect("open").is_none());
    assert!(!other.path().join("data/telltale.db").exists());

    // Not a database: refused, naming the file.
    let bad = tempfile::tempdir().expect("tempdir");
    let loaded = load_config(bad.path(), "store:\n  path: notes.txt\n");
    std::fs::create_dir_all(bad.path().join("data")).expect("data dir");
    let notes = bad.path().join("data/notes.txt");
    std::fs::write(&notes, "my notes, not a database\n".repeat(100)).expect("write");
    let mut engine = Engine::build(&loaded).expect("build");
    let e = engine
        .open_database()
        .expect_err("not a database")
        .to_string();
    assert!(e.contains(&notes.display().to_string()), "{e}");
    assert!(e.contains("not a Telltale database"), "{e}");
}

#[test]
fn a_series_a_nodata_rule_reads_that_stops_gets_a_nodata_alert_until_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let mut set = RuleSet::new(store.clone(), &RulesConfig::default());
    std::fs::write(
        dir.path().join("hot.rhai"),
        "const RULE = #{ name: \"hot\", severity: \"warning\", nodata: \"60s\" };\n\
         fn evaluate() {\n    let out = [];\n    for s in series(\"temp\") { if s.value > 80 { out.push(alert(s.value, s.labels)); } }\n    out\n}\n",
    )
    .expect("write");
    assert!(set.load_dir(dir.path()).is_empty());
    let mut am = AlertManager::new();
    let put = |sensor: &str, ts: i64| {
        store.ingest([Sample::new("temp", &[("sensor", sensor)], 20.0, ts)]);
    };
    put("a", T0);
    put("b", T0);
    assert!(apply_results(&mut am, set.evaluate(T0), T0).0.is_empty());
    // `b` stops. 59 s later nothing; at 60 s its nodata alert fires.
    put("a", T0 + 59_000);
    assert!(
        apply_results(&mut am, set.evaluate(T0 + 59_000), T0 + 59_000)
            .0
            .is_empty()
    );
    put("a", T0 + 60_000);
    let out = apply_results(&mut am, set.evaluate(T0 + 60_000), T0 + 60_000).0;
    assert_eq!(out.len(), 1, "{out:?}");
    let a = &out[0].alert;
    assert_eq!(out[0].status, AlertStatus::Firing);
    assert_eq!(a.kind, telltale_model::AlertKind::Nodata);
    assert_eq!(
        a.labels,
        labels(&[
            ("alertname", "hot"),
            ("alertstate", "nodata"),
            ("metric", "temp"),
            ("sensor", "b"),
            ("severity", "warning"),
        ])
    );
    assert_eq!(
        a.summary,
        "no data from {metric=\"temp\",sensor=\"b\"} for 60s"
    );
    // It sends again: resolved.
    put("b", T0 + 70_000);
    put("a", T0 + 70_000);
    let out = apply_results(&mut am, set.evaluate(T0 + 70_000), T0 + 70_000).0;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, AlertStatus::Resolved);
}

/// The config the alert manager tests route with: one notifier, `rec`, no grouping delay.
fn alerting_config() -> telltale_config::Config {
    telltale_config::parse(
        "notifiers:\n  - {name: rec, kind: console}\nalerting:\n  route:\n    notifiers: [rec]\n    group_wait: 0s\n    group_by: ['...']\n",
        Path::new("t.yaml"),
    )
    .expect("config")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alert_manager_is_made_to_agree_with_the_alerts_at_start() {
    let (_dir, _path, db) = database();
    let cfg = alerting_config();
    let recorder = Arc::new(Recorder::default());
    let h = Dispatcher::with_notifiers(vec![recorder.clone()]).start();
    // The router's saved state knows `old` (firing), not `new`; the state machine has
    // `new` firing and `old` gone (the two were saved apart, and a crash came between).
    let mut old = note("old-fire", 1.0);
    old.alert.fingerprint = "old".into();
    old.alert.labels = labels(&[("alertname", "hot"), ("host", "old")]);
    let mut a = super::alerting::Alerting::open(&cfg, Some(db.clone()), T0).expect("open");
    a.route(vec![old.clone()], &h, T0);
    a.save_now(T0);
    let mut a = super::alerting::Alerting::open(&cfg, Some(db.clone()), T0 + 1000).expect("open");
    let mut new = note("new-fire", 1.0).alert;
    new.fingerprint = "new".into();
    new.labels = labels(&[("alertname", "hot"), ("host", "new")]);
    a.reconcile(vec![new], &h, T0 + 1000);
    let report = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.lost, 0);
    let seen = recorder.0.lock().expect("lock").clone();
    // `old-fire` at T0; then `new` announced, `old` resolved (new ids).
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], "old-fire");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_given_before_the_alert_fired_again_is_refused_and_each_is_applied_once() {
    let (_dir, path, db) = database();
    let cfg = alerting_config();
    let h = Dispatcher::with_notifiers(vec![Arc::new(Recorder::default())]).start();
    let mut a = super::alerting::Alerting::open(&cfg, Some(db.clone()), T0).expect("open");
    let mut n = note("fire", 1.0);
    n.alert.firing_since_ms = T0 + 60_000;
    a.route(vec![n], &h, T0 + 60_000);
    let queue = telltale_store::disk::control::CommandQueue::open(&path).expect("queue");
    let ack = |at: i64| {
        let cmd = telltale_routing::Command::Ack {
            fingerprint: "fp".into(),
            by: "ana".into(),
            comment: String::new(),
        };
        queue
            .submit(&serde_json::to_string(&cmd).expect("json"), at)
            .expect("submit")
    };
    // Left at T0 (before the alert's firing at T0 + 60 s), then one given now.
    let stale = ack(T0);
    let fresh = ack(T0 + 61_000);
    a.apply_commands(&h, T0 + 62_000);
    let stale_answer = queue.outcome(stale).expect("read").expect("answered");
    assert!(
        stale_answer.starts_with("error: alert `fp` started firing again at"),
        "{stale_answer}"
    );
    assert_eq!(
        queue.outcome(fresh).expect("read").as_deref(),
        Some("ok: alert fp acknowledged by ana")
    );
    // Applied once: a second look at the queue finds nothing to do (a second ack would be
    // refused as a duplicate or re-announced).
    a.apply_commands(&h, T0 + 63_000);
    assert_eq!(
        queue.outcome(fresh).expect("read").as_deref(),
        Some("ok: alert fp acknowledged by ana")
    );
    h.shutdown(Duration::from_secs(1)).await;
}
