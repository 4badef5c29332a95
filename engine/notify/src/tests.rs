//! Dispatcher tests against real HTTP receivers on 127.0.0.1 and an outbox in memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::testutil::{MemoryOutbox, Receiver, Reply, dead_url, notification};
use super::*;
use telltale_config::{ConsoleConfig, HumanDuration, NotifierKind, WebhookConfig};
use telltale_model::AlertStatus;

const SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=";

fn webhook(name: &str, url: &str) -> NotifierConfig {
    NotifierConfig {
        name: name.into(),
        kind: NotifierKind::Webhook(WebhookConfig {
            url: url.into(),
            secret: Some(SECRET.into()),
            headers: BTreeMap::new(),
            timeout: HumanDuration(Duration::from_millis(300)),
            max_attempts: 3,
            initial_backoff: HumanDuration(Duration::from_millis(50)),
            max_backoff: HumanDuration(Duration::from_millis(100)),
            format: Default::default(),
            external_url: String::new(),
        }),
    }
}

fn console(name: &str) -> NotifierConfig {
    NotifierConfig {
        name: name.into(),
        kind: NotifierKind::Console(ConsoleConfig { json: false }),
    }
}

/// The webhook settings of a notifier made by [`webhook`].
fn settings(n: &mut NotifierConfig) -> &mut WebhookConfig {
    match &mut n.kind {
        NotifierKind::Webhook(w) => w,
        other => panic!("not a webhook: {other:?}"),
    }
}

fn ok() -> Reply {
    Reply::Status(200, vec![])
}

async fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn stat<'a>(stats: &'a [NotifierStats], name: &str) -> &'a NotifierStats {
    stats.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn notifiers_are_built_from_their_config_entries() {
    let config = telltale_config::parse(
        concat!(
            "notifiers:\n",
            "  - name: ops\n",
            "    kind: webhook\n",
            "    url: http://127.0.0.1:9/hook\n",
            "  - name: console\n",
            "    kind: console\n",
        ),
        std::path::Path::new("t.yaml"),
    )
    .unwrap();
    let d = Dispatcher::new(&config.notifiers).unwrap();
    assert_eq!(d.notifier_names(), ["ops", "console"]);
    let kinds: Vec<&str> = d.notifiers.iter().map(|n| n.kind()).collect();
    assert_eq!(kinds, ["webhook", "console"]);
}

/// The config's check keeps bad settings from getting here; one that does anyway is an
/// error naming the entry, never a panic.
#[test]
fn an_unchecked_bad_setting_is_an_error_not_a_panic() {
    let e = Dispatcher::new(&[console("c"), webhook("ops", "htp://x")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "notifiers[1] (`ops`): webhook url scheme `htp` is not http or https"
    );
    let mut bad_secret = webhook("hook", "http://127.0.0.1:9/");
    settings(&mut bad_secret).secret = Some("whsec_%%%".into());
    let e = Dispatcher::new(&[bad_secret]).unwrap_err();
    assert_eq!((e.index, e.name.as_str()), (0, "hook"));
    assert!(e.message.starts_with("webhook secret: "), "{e}");
}

/// A notifier of a kind the dispatcher has never heard of: it only needs the trait.
#[derive(Debug)]
struct Recorder {
    seen: parking_lot::Mutex<Vec<String>>,
}

impl Notifier for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn kind(&self) -> &'static str {
        "recorder"
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliveryFuture<'a> {
        Box::pin(async move {
            self.seen.lock().push(n.id.clone());
            if n.id.starts_with("bad") {
                Delivery::Failed {
                    attempts: 1,
                    last: "refused".into(),
                }
            } else {
                Delivery::Delivered { attempts: 1 }
            }
        })
    }
}

#[tokio::test]
async fn any_notifier_kind_gets_a_queue_and_counters() {
    let recorder = Arc::new(Recorder {
        seen: Default::default(),
    });
    let h = Dispatcher::with_notifiers(vec![recorder.clone()]).start();
    assert_eq!(h.send(notification("ok1", 1.0, AlertStatus::Firing)), 1);
    assert_eq!(h.send(notification("bad1", 1.0, AlertStatus::Firing)), 1);
    wait_until("both delivered", Duration::from_secs(5), || {
        recorder.seen.lock().len() == 2
    })
    .await;
    let report = h.shutdown(Duration::from_secs(1)).await;
    let s = stat(&report.stats, "recorder");
    assert_eq!((s.kind, s.delivered, s.failed), ("recorder", 1, 1));
    assert_eq!(*recorder.seen.lock(), ["ok1", "bad1"]);
}

#[tokio::test]
async fn delivers_in_order_and_counts() {
    let rx = Receiver::start(vec![], ok()).await;
    let d = Dispatcher::new(&[webhook("ops", &rx.url), console("console")]).unwrap();
    assert_eq!(d.notifier_names(), ["ops", "console"]);
    let h = d.start();
    for i in 0..5 {
        assert_eq!(
            h.send(notification(
                &format!("n{i}"),
                i as f64,
                AlertStatus::Firing
            )),
            2
        );
    }
    let got = rx.wait_for(5, Duration::from_secs(5)).await;
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["n0", "n1", "n2", "n3", "n4"]);
    for r in &got {
        verify(SECRET, &r.headers, &r.body).unwrap();
    }
    wait_until("counters", Duration::from_secs(5), || {
        let s = h.stats();
        stat(&s, "ops").delivered == 5 && stat(&s, "console").delivered == 5
    })
    .await;
    let report = h.shutdown(Duration::from_secs(1)).await;
    assert!(!report.timed_out);
    assert_eq!((report.kept, report.lost), (0, 0));
    assert_eq!(stat(&report.stats, "ops").kind, "webhook");
}

#[tokio::test]
async fn send_to_delivers_to_the_named_notifiers_only() {
    let pager = Receiver::start(vec![], ok()).await;
    let ops = Receiver::start(vec![], ok()).await;
    let h = Dispatcher::new(&[webhook("pager", &pager.url), webhook("ops", &ops.url)])
        .unwrap()
        .start();
    assert_eq!(
        h.send_to(
            notification("crit", 1.0, AlertStatus::Firing),
            &["pager", "ops"]
        ),
        2
    );
    assert_eq!(
        h.send_to(notification("warn", 1.0, AlertStatus::Firing), &["ops"]),
        1
    );
    // A name that is no notifier is skipped; no name at all delivers nowhere.
    assert_eq!(
        h.send_to(
            notification("odd", 1.0, AlertStatus::Firing),
            &["nobody", "ops"]
        ),
        1
    );
    assert_eq!(
        h.send_to(notification("none", 1.0, AlertStatus::Firing), &[]),
        0
    );
    // `send` is every notifier.
    assert_eq!(h.send(notification("all", 1.0, AlertStatus::Firing)), 2);
    let p = pager.wait_for(2, Duration::from_secs(5)).await;
    let o = ops.wait_for(4, Duration::from_secs(5)).await;
    let ids = |v: &[testutil::Received]| -> Vec<String> {
        v.iter()
            .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&p), ["crit", "all"]);
    assert_eq!(ids(&o), ["crit", "warn", "odd", "all"]);
    h.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_hanging_receiver_blocks_neither_the_caller_nor_other_notifiers() {
    let slow = Receiver::start(vec![], Reply::Hang).await;
    let fast = Receiver::start(vec![], ok()).await;
    let outbox = Arc::new(MemoryOutbox::default());
    let h = Dispatcher::new(&[webhook("slow", &slow.url), webhook("fast", &fast.url)])
        .unwrap()
        .with_outbox(outbox.clone())
        .with_queue_capacity(2)
        .start();
    let mut in_send = Duration::ZERO;
    for i in 0..10 {
        let t = Instant::now();
        h.send(notification(&format!("n{i}"), 1.0, AlertStatus::Firing));
        in_send += t.elapsed();
        // Give the workers a moment, so the fast lane keeps up and the slow one is stuck.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        in_send < Duration::from_millis(100),
        "send blocked: {in_send:?}"
    );
    fast.wait_for(10, Duration::from_secs(3)).await;
    let s = h.stats();
    // The slow lane holds one in flight and two queued; the rest were dropped and counted.
    assert_eq!(stat(&s, "slow").dropped, 7, "{s:?}");
    assert_eq!(stat(&s, "slow").queued, 2, "{s:?}");
    assert_eq!(stat(&s, "slow").delivered, 0);
    assert_eq!(stat(&s, "fast").dropped, 0, "{s:?}");
    let report = h.shutdown(Duration::from_millis(100)).await;
    assert!(report.timed_out);
    // The in-flight one and the two queued stay owed, for the next start.
    assert_eq!((report.kept, report.lost), (3, 0), "{report:?}");
    assert_eq!(stat(&report.stats, "fast").delivered, 10);
    let outcomes: Vec<_> = (0..10)
        .map(|i| outbox.outcome("slow", &format!("n{i}")))
        .collect();
    let dropped = Some(Some(Outcome::Dropped));
    assert_eq!(
        outcomes,
        [vec![Some(None); 3], vec![dropped; 7],].concat(),
        "a full queue's drops are marked done"
    );
    assert_eq!(outbox.outcome("fast", "n9"), Some(Some(Outcome::Delivered)));
}

#[tokio::test]
async fn without_an_outbox_what_is_undelivered_at_shutdown_is_lost_and_counted() {
    let slow = Receiver::start(vec![], Reply::Hang).await;
    let h = Dispatcher::new(&[webhook("slow", &slow.url)])
        .unwrap()
        .start();
    h.send(notification("n1", 1.0, AlertStatus::Firing));
    h.send(notification("n2", 1.0, AlertStatus::Firing));
    slow.wait_for(1, Duration::from_secs(3)).await;
    let report = h.shutdown(Duration::from_millis(100)).await;
    assert!(report.timed_out);
    assert_eq!((report.kept, report.lost), (0, 2), "{report:?}");
}

fn ids(got: &[testutil::Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn undelivered_notifications_are_delivered_after_a_restart_and_delivered_ones_are_not() {
    let outbox = Arc::new(MemoryOutbox::default());
    let (dead, _guard) = dead_url();
    let mut down = webhook("ops", &dead);
    // Still retrying when the grace period ends (not given up, which would count as failed).
    settings(&mut down).max_attempts = 100;
    let h = Dispatcher::new(&[down, console("gone")])
        .unwrap()
        .with_outbox(outbox.clone())
        .start();
    let mut nan = notification("n2", f64::NAN, AlertStatus::Resolved);
    nan.alert.summary = "resolved".into();
    h.send(notification("n1", 97.0, AlertStatus::Firing));
    h.send(nan);
    wait_until("the console delivered both", Duration::from_secs(5), || {
        stat(&h.stats(), "gone").delivered == 2
    })
    .await;
    let report = h.shutdown(Duration::from_millis(150)).await;
    assert!(report.timed_out);
    assert_eq!((report.kept, report.lost), (2, 0), "{report:?}");
    assert_eq!(outbox.outcome("ops", "n1"), Some(None));
    assert_eq!(outbox.outcome("gone", "n1"), Some(Some(Outcome::Delivered)));

    // Next start: same notifier name, receiver now up; the console notifier is gone.
    let up = Receiver::start(vec![], ok()).await;
    let h = Dispatcher::new(&[webhook("ops", &up.url)])
        .unwrap()
        .with_outbox(outbox.clone())
        .start();
    h.send(notification("n3", 1.0, AlertStatus::Firing));
    let got = up.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(
        ids(&got),
        ["n1", "n2", "n3"],
        "the owed ones first, in order"
    );
    let p: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert!(p["alert"]["value"].is_null());
    assert_eq!(p["status"], "resolved");
    for r in &got {
        verify(SECRET, &r.headers, &r.body).unwrap();
    }
    let report = h.shutdown(Duration::from_secs(2)).await;
    assert!(!report.timed_out);
    assert_eq!((report.kept, report.lost), (0, 0));
    assert_eq!(stat(&report.stats, "ops").delivered, 3);
    for id in ["n1", "n2", "n3"] {
        assert_eq!(
            outbox.outcome("ops", id),
            Some(Some(Outcome::Delivered)),
            "{id}"
        );
    }

    // A third start owes nothing: delivered notifications are not sent again.
    let h = Dispatcher::new(&[webhook("ops", &up.url)])
        .unwrap()
        .with_outbox(outbox.clone())
        .start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.shutdown(Duration::from_secs(1)).await;
    assert_eq!(up.received().len(), 3);
}

/// The process dies (its runtime is torn down with a delivery in flight, no shutdown): the
/// notification is still owed, and the next start delivers it.
#[test]
fn a_notification_owed_when_the_process_dies_is_delivered_by_the_next_start() {
    let outbox = Arc::new(MemoryOutbox::default());
    // The receivers outlive both "processes".
    let net = tokio::runtime::Runtime::new().unwrap();
    let hang = net.block_on(Receiver::start(vec![], Reply::Hang));
    let up = net.block_on(Receiver::start(vec![], ok()));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        let h = Dispatcher::new(&[webhook("ops", &hang.url)])
            .unwrap()
            .with_outbox(outbox.clone())
            .start();
        assert_eq!(h.send(notification("k1", 1.0, AlertStatus::Firing)), 1);
        hang.wait_for(1, Duration::from_secs(5)).await;
    });
    drop(first);
    assert_eq!(outbox.outcome("ops", "k1"), Some(None));

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let h = Dispatcher::new(&[webhook("ops", &up.url)])
            .unwrap()
            .with_outbox(outbox.clone())
            .start();
        let got = up.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(ids(&got), ["k1"]);
        let report = h.shutdown(Duration::from_secs(2)).await;
        assert_eq!(stat(&report.stats, "ops").delivered, 1);
    });
    assert_eq!(outbox.outcome("ops", "k1"), Some(Some(Outcome::Delivered)));
}

#[tokio::test]
async fn an_outbox_that_cannot_be_written_does_not_stop_delivery() {
    let outbox = Arc::new(MemoryOutbox::default());
    outbox.set_failing(true);
    let up = Receiver::start(vec![], ok()).await;
    let h = Dispatcher::new(&[webhook("ops", &up.url)])
        .unwrap()
        .with_outbox(outbox.clone())
        .start();
    assert_eq!(h.send(notification("f1", 1.0, AlertStatus::Firing)), 1);
    assert_eq!(ids(&up.wait_for(1, Duration::from_secs(5)).await), ["f1"]);
    // Working again: the next one is kept and marked as usual.
    outbox.set_failing(false);
    h.send(notification("f2", 1.0, AlertStatus::Firing));
    up.wait_for(2, Duration::from_secs(5)).await;
    wait_until("f2 marked", Duration::from_secs(5), || {
        outbox.outcome("ops", "f2") == Some(Some(Outcome::Delivered))
    })
    .await;
    assert_eq!(outbox.outcome("ops", "f1"), None, "never written");
    let report = h.shutdown(Duration::from_secs(1)).await;
    assert_eq!(stat(&report.stats, "ops").delivered, 2);

    // A notification that could not be written and is undelivered at shutdown is lost,
    // and counted so; one that was written stays owed.
    let (dead, _guard) = dead_url();
    let mut down = webhook("ops", &dead);
    settings(&mut down).max_attempts = 100;
    let h = Dispatcher::new(&[down])
        .unwrap()
        .with_outbox(outbox.clone())
        .start();
    h.send(notification("f3", 1.0, AlertStatus::Firing));
    outbox.set_failing(true);
    h.send(notification("f4", 1.0, AlertStatus::Firing));
    let report = h.shutdown(Duration::from_millis(150)).await;
    assert_eq!((report.kept, report.lost), (1, 1), "{report:?}");
    outbox.set_failing(false);
    assert_eq!(outbox.outcome("ops", "f3"), Some(None));
    assert_eq!(outbox.len(), 2);
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_retries_within_grace() {
    let rx = Receiver::start(vec![Reply::Status(500, vec![])], ok()).await;
    let h = Dispatcher::new(&[webhook("ops", &rx.url)]).unwrap().start();
    h.send(notification("r1", 1.0, AlertStatus::Firing));
    let report = h.shutdown(Duration::from_secs(5)).await;
    assert!(!report.timed_out);
    assert_eq!(stat(&report.stats, "ops").delivered, 1);
    assert_eq!(rx.received().len(), 2);
}

#[tokio::test]
async fn failures_are_counted_and_sends_after_shutdown_dropped() {
    let rx = Receiver::start(vec![], Reply::Status(401, vec![])).await;
    let h = Dispatcher::new(&[webhook("ops", &rx.url)]).unwrap().start();
    let clone = h.clone();
    h.send(notification("f1", 1.0, AlertStatus::Firing));
    wait_until("failure counted", Duration::from_secs(5), || {
        stat(&h.stats(), "ops").failed == 1
    })
    .await;
    h.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        clone.send(notification("late", 1.0, AlertStatus::Firing)),
        0
    );
    assert_eq!(stat(&clone.stats(), "ops").dropped, 1);
    assert_eq!(rx.received().len(), 1);
}

/// A mirror of the body Alertmanager's webhook notifier sends: `Message` in
/// `notify/webhook/webhook.go` (the embedded `template.Data` plus `version`, `groupKey`,
/// `truncatedAlerts`) and `Alert` in `template/template.go`. Every field is required and no
/// other is allowed, so a missing, extra or misnamed field fails the parse.
mod alertmanager_mirror {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(non_snake_case)]
    pub(super) struct Message {
        pub receiver: String,
        pub status: String,
        pub alerts: Vec<Alert>,
        pub groupLabels: BTreeMap<String, String>,
        pub commonLabels: BTreeMap<String, String>,
        pub commonAnnotations: BTreeMap<String, String>,
        pub externalURL: String,
        pub version: String,
        pub groupKey: String,
        pub truncatedAlerts: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(non_snake_case)]
    pub(super) struct Alert {
        pub status: String,
        pub labels: BTreeMap<String, String>,
        pub annotations: BTreeMap<String, String>,
        pub startsAt: String,
        pub endsAt: String,
        pub generatorURL: String,
        pub fingerprint: String,
    }
}

/// `format: alertmanager` from YAML through the dispatcher to a loopback receiver: the
/// bodies are Alertmanager's v4 shape, signed like v1 bodies, and retried like them (the
/// first answer is a 503).
#[tokio::test]
async fn alertmanager_format_end_to_end() {
    let rx = Receiver::start(vec![Reply::Status(503, vec![])], ok()).await;
    let yaml = format!(
        concat!(
            "notifiers:\n",
            "  - name: am\n",
            "    kind: webhook\n",
            "    url: {url}\n",
            "    secret: {secret}\n",
            "    format: alertmanager\n",
            "    external_url: https://telltale.example.com\n",
            "    initial_backoff: 50ms\n",
            "    max_backoff: 100ms\n",
        ),
        url = rx.url,
        secret = SECRET
    );
    let config = telltale_config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap();
    let h = Dispatcher::new(&config.notifiers).unwrap().start();
    h.send(notification("am1", 97.2, AlertStatus::Firing));
    h.send(notification("am2", 1.0, AlertStatus::Resolved));
    // 503, then the retried firing body, then the resolved one.
    let got = rx.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got[0].body, got[1].body, "a retry sends the same body");
    for r in &got {
        verify(SECRET, &r.headers, &r.body).unwrap();
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(got[1].headers["webhook-id"], "am1");
    assert_eq!(got[2].headers["webhook-id"], "am2");

    // Values by hand from `testutil::notification`: firing_since_ms 1_700_000_060_250 is
    // 2023-11-14T22:14:20.250Z, resolved_at_ms 1_700_000_360_000 is 2023-11-14T22:19:20.000Z.
    let labels: BTreeMap<String, String> = [
        ("alertname", "high_cpu"),
        ("cpu", "total"),
        ("severity", "warning"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let summary = BTreeMap::from([("summary".to_string(), "CPU at 97%".to_string())]);
    for (r, status, ends_at) in [
        (&got[1], "firing", "0001-01-01T00:00:00Z"),
        (&got[2], "resolved", "2023-11-14T22:19:20.000Z"),
    ] {
        let m: alertmanager_mirror::Message = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)));
        assert_eq!(m.version, "4");
        assert_eq!(m.groupKey, "{}:{alertname=\"high_cpu\"}");
        assert_eq!(m.truncatedAlerts, 0);
        assert_eq!(m.status, status);
        assert_eq!(m.receiver, "am");
        assert_eq!(
            m.groupLabels,
            BTreeMap::from([("alertname".to_string(), "high_cpu".to_string())])
        );
        assert_eq!(m.commonLabels, labels);
        assert_eq!(m.commonAnnotations, summary);
        assert_eq!(m.externalURL, "https://telltale.example.com");
        assert_eq!(m.alerts.len(), 1);
        let a = &m.alerts[0];
        assert_eq!(a.status, status);
        assert_eq!(a.labels, labels);
        assert_eq!(a.annotations, summary);
        assert_eq!(a.startsAt, "2023-11-14T22:14:20.250Z");
        assert_eq!(a.endsAt, ends_at);
        assert_eq!(a.generatorURL, "");
        assert_eq!(a.fingerprint, "fp123");
    }
    let report = h.shutdown(Duration::from_secs(1)).await;
    assert_eq!(stat(&report.stats, "am").delivered, 2);
}

/// The copy-paste example of docs/webhooks.md's "Alertmanager format" section passes the
/// config's check and builds an Alertmanager-format notifier.
#[test]
fn the_documented_alertmanager_example_is_a_valid_config() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/webhooks.md"),
    )
    .unwrap();
    let yaml = doc
        .split("## Alertmanager format")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("docs/webhooks.md has a yaml block under \"Alertmanager format\"");
    // The secret comes from the environment in the docs; a default keeps the test from
    // depending on it.
    let yaml = yaml.replace(
        "${TELLTALE_WEBHOOK_SECRET}",
        "${TELLTALE_WEBHOOK_SECRET:-whsec_c2VjcmV0}",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telltale.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = telltale_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    telltale_config::check(&loaded).unwrap_or_else(|e| panic!("{e}"));
    let config = loaded.config;
    let NotifierKind::Webhook(w) = &config.notifiers[0].kind else {
        panic!("{:?}", config.notifiers[0].kind)
    };
    assert_eq!(
        w.format,
        telltale_config::notifiers::webhook::WebhookFormat::Alertmanager
    );
    assert_eq!(w.external_url, "https://telltale.example.com");
    Dispatcher::new(&config.notifiers).unwrap();
}
